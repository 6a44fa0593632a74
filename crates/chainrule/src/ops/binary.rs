//! Elementwise binary primitives with NumPy broadcasting. The adjoint of a
//! broadcast input is summed back to its shape once, in [`sum_to`].

use super::movement::sum_to;
use super::{panicking, record, same_dtype, Prim};
use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::kernels::elementwise::zip;
use crate::layout::{broadcast_shapes, Layout};
use crate::storage::{with_dtype, StorageElement};
use crate::tensor::Tensor;
use smallvec::{smallvec, SmallVec};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `a^b`, both tensors.
    Pow,
    Maximum,
    Minimum,
}

use BinaryOp::*;

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            Add => "add",
            Sub => "sub",
            Mul => "mul",
            Div => "div",
            Pow => "pow",
            Maximum => "maximum",
            Minimum => "minimum",
        }
    }

    fn forward<T: Element>(self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
        match self {
            Add => zip(a, la, b, lb, |x, y| x + y),
            Sub => zip(a, la, b, lb, |x, y| x - y),
            Mul => zip(a, la, b, lb, |x, y| x * y),
            Div => zip(a, la, b, lb, |x, y| x / y),
            Pow => zip(a, la, b, lb, |x, y| x.powf(y)),
            // NaN propagates from either side, as in PyTorch.
            Maximum => zip(
                a,
                la,
                b,
                lb,
                |x, y| if x >= y || x.is_nan() { x } else { y },
            ),
            Minimum => zip(
                a,
                la,
                b,
                lb,
                |x, y| if x <= y || x.is_nan() { x } else { y },
            ),
        }
    }

    /// Adjoints of `a` and `b` (each summed back to its own shape).
    pub(crate) fn vjp(
        self,
        a: &Tensor,
        b: &Tensor,
        g: &Tensor,
        needs: &[bool],
    ) -> SmallVec<[Option<Tensor>; 2]> {
        let (ga, gb): (Option<Tensor>, Option<Tensor>) = match self {
            Add => (Some(g.clone()), Some(g.clone())),
            Sub => (Some(g.clone()), needs[1].then(|| g.neg())),
            Mul => (needs[0].then(|| g * b), needs[1].then(|| g * a)),
            Div => (
                needs[0].then(|| g / b),
                needs[1].then(|| -(g * a) / b.square()),
            ),
            Pow => (
                needs[0].then(|| g * &pow_partial_base(a, b)),
                needs[1].then(|| g * &pow_partial_exponent(a, b, &a.pow(b))),
            ),
            Maximum | Minimum => {
                let (to_a, to_b) = self.extremum_shares(a, b);
                (needs[0].then(|| g * &to_a), needs[1].then(|| g * &to_b))
            }
        };
        let fit = |t: Option<Tensor>, like: &Tensor, need: bool| {
            t.filter(|_| need).map(|t| sum_to(&t, like.shape()))
        };
        smallvec![fit(ga, a, needs[0]), fit(gb, b, needs[1])]
    }

    /// The JVP: `ȧ ∂out/∂a + ḃ ∂out/∂b` (elementwise), each term broadcast to
    /// the output's shape (after the batch axis, for batched tangents).
    pub(crate) fn jvp(
        self,
        a: &Tensor,
        b: &Tensor,
        out: &Tensor,
        ta: &Option<Tensor>,
        tb: &Option<Tensor>,
    ) -> Tensor {
        use crate::forward::{fit, lift, pair_prefix, sum_terms};
        let prefix = pair_prefix(a, b, ta, tb);
        let n = out.ndim();
        let ta = ta.as_ref().map(|t| lift(t, a, n));
        let tb = tb.as_ref().map(|t| lift(t, b, n));
        let (da, db): (Option<Tensor>, Option<Tensor>) = match self {
            Add => (ta, tb),
            Sub => (ta, tb.map(|t| t.neg())),
            Mul => (ta.map(|t| &t * b), tb.map(|t| a * &t)),
            Div => (ta.map(|t| &t / b), tb.map(|t| -(&t * out) / b)),
            Pow => (
                ta.map(|t| &t * &pow_partial_base(a, b)),
                tb.map(|t| &t * &pow_partial_exponent(a, b, out)),
            ),
            Maximum | Minimum => {
                let (to_a, to_b) = self.extremum_shares(a, b);
                (ta.map(|t| &t * &to_a), tb.map(|t| &t * &to_b))
            }
        };
        fit(sum_terms(da, db), &prefix, out.shape())
    }

    /// `∂out/∂a` and `∂out/∂b` of maximum or minimum (constants): 1 to the
    /// side that wins, ½ each at a tie, and, as in PyTorch, 1 to both sides
    /// when either is NaN (no comparison holds then).
    fn extremum_shares(self, a: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
        let (a, b) = (a.detach(), b.detach());
        let (a_loses, b_loses) = match self {
            Maximum => (a.lt(&b), a.gt(&b)),
            _ => (a.gt(&b), a.lt(&b)),
        };
        let half_tie = a.eq_elem(&b) * 0.5;
        (1.0 - &(a_loses + &half_tie), 1.0 - &(b_loses + &half_tie))
    }
}

/// `∂(aᵇ)/∂a = b·aᵇ⁻¹`, taken as 0 where `b = 0` (`a⁰` is constant; PyTorch's
/// convention, which also avoids `0·0⁻¹ = NaN` at `a = 0`).
fn pow_partial_base(a: &Tensor, b: &Tensor) -> Tensor {
    let zero_exponent = b.detach().eq_elem(&Tensor::zeros(&[], b.dtype()));
    let d = b * &a.pow(&(b - 1.0));
    Tensor::where_(&zero_exponent, &Tensor::zeros(&[], d.dtype()), &d)
}

/// `∂(aᵇ)/∂b = aᵇ·ln a` given `out = aᵇ`, taken as 0 where `a = 0` and
/// `b ≥ 0` (PyTorch's convention: the limit from `a > 0` of `0ᵇ ln a` is 0
/// for `b > 0`). Negative `a` gives NaN (`ln a`), as in PyTorch.
fn pow_partial_exponent(a: &Tensor, b: &Tensor, out: &Tensor) -> Tensor {
    let zero = Tensor::zeros(&[], a.dtype());
    let (a0, b0) = (a.detach(), b.detach());
    let at_zero = a0.eq_elem(&zero) * b0.ge(&zero);
    let d = out * &a.log();
    Tensor::where_(&at_zero, &Tensor::zeros(&[], d.dtype()), &d)
}

impl BinaryOp {
    /// The op on two values of `dtype`, through the same kernel (see
    /// `UnaryOp::eval_scalar`).
    pub(crate) fn eval_scalar(self, a: f64, b: f64, dtype: crate::DType) -> f64 {
        let l = Layout::contiguous(&[]);
        with_dtype!(dtype, T => self.forward(&[T::of(a)], &l, &[T::of(b)], &l)[0].f64())
    }
}

/// Both operands broadcast to their common shape, or a shape error naming `op`.
pub(crate) fn broadcast_pair(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(Layout, Layout)> {
    if a.shape() == b.shape() {
        // Same shape: as large as an existing view, but a broadcast view's
        // buffer is smaller than its shape.
        if a.layout().contiguous_range().is_none() {
            crate::limits::check_alloc(op, a.shape(), a.dtype())?;
        }
        return Ok((a.layout().clone(), b.layout().clone()));
    }
    let shape = broadcast_shapes(a.shape(), b.shape())
        .ok_or_else(|| Error::shapes_detail(op, a.shape(), b.shape(), "they do not broadcast"))?;
    crate::limits::check_alloc(op, &shape, a.dtype())?;
    Ok((
        a.layout().broadcast_to(&shape).unwrap(),
        b.layout().broadcast_to(&shape).unwrap(),
    ))
}

pub(crate) fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    let dtype = same_dtype(op.name(), a, b)?;
    let (la, lb) = broadcast_pair(op.name(), a, b)?;
    let out = with_dtype!(dtype, T => Tensor::from_buffer(
        op.forward(a.buffer::<T>(), &la, b.buffer::<T>(), &lb), &la.shape));
    Ok(record(|| Prim::Binary(op), &[a, b], out, false))
}

/// `acc + g` for gradient accumulation: in place when `acc` is a plain
/// buffer nobody else holds and nothing is being recorded, else a new tensor.
pub(crate) fn add_into(acc: Tensor, g: &Tensor) -> Tensor {
    add_scaled_into(acc, 1.0, g)
}

/// `acc + alpha·g` (an optimizer's update), in place under the conditions of
/// [`add_into`].
pub(crate) fn add_scaled_into(mut acc: Tensor, alpha: f64, g: &Tensor) -> Tensor {
    let plain = acc.shape() == g.shape()
        && acc.dtype() == g.dtype()
        && acc.layout().contiguous_range() == Some(0..acc.numel())
        && !acc.needs_grad()
        && acc.0.dual.is_none()
        && g.0.dual.is_none()
        && !crate::autograd::is_grad_enabled()
        && !crate::graph::trace::active();
    if plain {
        if let Some(inner) = std::sync::Arc::get_mut(&mut acc.0) {
            let done = with_dtype!(g.dtype(), T => match T::unique_mut(&mut inner.storage) {
                Some(buf) => {
                    let (src, lg) = (g.buffer::<T>(), g.layout());
                    if alpha == 1.0 {
                        match lg.contiguous_range() {
                            Some(r) => buf.iter_mut().zip(&src[r]).for_each(|(a, &b)| *a += b),
                            None => buf.iter_mut().zip(lg.offsets()).for_each(|(a, o)| *a += src[o]),
                        }
                    } else {
                        let alpha = T::of(alpha);
                        match lg.contiguous_range() {
                            Some(r) => buf.iter_mut().zip(&src[r]).for_each(|(a, &b)| *a += alpha * b),
                            None => buf.iter_mut().zip(lg.offsets()).for_each(|(a, o)| *a += alpha * src[o]),
                        }
                    }
                    true
                }
                None => false,
            });
            if done {
                return acc;
            }
        }
    }
    if alpha == 1.0 {
        acc.add(g)
    } else {
        acc.add(&(g * alpha))
    }
}

/// A comparison, as a constant tensor of 0s and 1s in the operands' dtype.
fn compare(op: &'static str, a: &Tensor, b: &Tensor, f: fn(f64, f64) -> bool) -> Result<Tensor> {
    let dtype = same_dtype(op, a, b)?;
    let (la, lb) = broadcast_pair(op, a, b)?;
    let out = with_dtype!(dtype, T => {
        let (one, zero) = (T::one(), T::zero());
        Tensor::from_buffer(
            zip(a.buffer::<T>(), &la, b.buffer::<T>(), &lb, |x, y| if f(x.f64(), y.f64()) { one } else { zero }),
            &la.shape,
        )
    });
    if crate::graph::trace::active() {
        use crate::graph::{CompareOp, GOp};
        let c = match op {
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => CompareOp::Eq,
        };
        crate::graph::trace::op(GOp::Compare(c), &[a, b], &out);
    }
    Ok(out)
}

impl Tensor {
    pub fn try_add(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, Add)
    }
    pub fn try_sub(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, Sub)
    }
    pub fn try_mul(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, Mul)
    }
    pub fn try_div(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, Div)
    }
    pub fn try_pow(&self, exponent: &Tensor) -> Result<Tensor> {
        binary(self, exponent, Pow)
    }
    pub fn try_maximum(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, Maximum)
    }
    pub fn try_minimum(&self, other: &Tensor) -> Result<Tensor> {
        binary(self, other, Minimum)
    }
    pub fn try_gt(&self, other: &Tensor) -> Result<Tensor> {
        compare("gt", self, other, |x, y| x > y)
    }
    pub fn try_ge(&self, other: &Tensor) -> Result<Tensor> {
        compare("ge", self, other, |x, y| x >= y)
    }
    pub fn try_lt(&self, other: &Tensor) -> Result<Tensor> {
        compare("lt", self, other, |x, y| x < y)
    }
    pub fn try_le(&self, other: &Tensor) -> Result<Tensor> {
        compare("le", self, other, |x, y| x <= y)
    }
    pub fn try_eq_elem(&self, other: &Tensor) -> Result<Tensor> {
        compare("eq", self, other, |x, y| x == y)
    }

    /// `1` where `self > c`, else `0` (a constant).
    pub fn gt_scalar(&self, c: f64) -> Tensor {
        compare("gt", self, &Tensor::full(&[], c, self.dtype()), |x, y| {
            x > y
        })
        .expect("a scalar broadcasts against any shape")
    }
}

panicking! {
    /// Elementwise `self + other`, broadcasting. Also `&a + &b`.
    fn add => try_add(other: &Tensor);
    /// Elementwise `self - other`, broadcasting. Also `&a - &b`.
    fn sub => try_sub(other: &Tensor);
    /// Elementwise `self * other`, broadcasting. Also `&a * &b`.
    fn mul => try_mul(other: &Tensor);
    /// Elementwise `self / other`, broadcasting. Also `&a / &b`.
    fn div => try_div(other: &Tensor);
    /// Elementwise `self ^ exponent` with a tensor exponent (`self > 0` for a
    /// gradient with respect to the exponent).
    fn pow => try_pow(exponent: &Tensor);
    /// Elementwise maximum; at ties each side gets half the gradient.
    fn maximum => try_maximum(other: &Tensor);
    /// Elementwise minimum; at ties each side gets half the gradient.
    fn minimum => try_minimum(other: &Tensor);
    /// `1` where `self > other`, else `0` (a constant mask).
    fn gt => try_gt(other: &Tensor);
    /// `1` where `self >= other`, else `0`.
    fn ge => try_ge(other: &Tensor);
    /// `1` where `self < other`, else `0`.
    fn lt => try_lt(other: &Tensor);
    /// `1` where `self <= other`, else `0`.
    fn le => try_le(other: &Tensor);
    /// `1` where `self == other`, else `0`.
    fn eq_elem => try_eq_elem(other: &Tensor);
}
