//! Elementwise binary primitives with NumPy broadcasting, one row each in
//! [`binary_ops!`]: the name, the methods, the function on two elements and
//! the two partial derivatives written once (generic over [`Value`]). The
//! VJP is `g ⊙ ∂y/∂a` summed back to `a`'s shape (in [`sum_to`]); the JVP is
//! `ȧ ⊙ ∂y/∂a + ḃ ⊙ ∂y/∂b`. Comparisons are rows of [`compare_ops!`]:
//! primitives through which no derivative flows.

use super::movement::sum_to;
use super::value::{Partial, Value};
use super::{bind, panicking, same_dtype, Prim};
use crate::dtype::{DType, Element, Int, Scalar};
use crate::error::{Error, Result};
use crate::kernels::elementwise::{accumulate, map, zip};
use crate::layout::{broadcast_shapes, Dims, Layout};
use crate::storage::{with_dtype, with_int, with_scalar, StorageElement};
use crate::tensor::Tensor;
use smallvec::{smallvec, SmallVec};
use Partial::{Const, Of};

/// Declares the binary ops. A row:
/// `Variant => "name", fn method / try_method, saves_output: bool,
///  f: |a, b| forward, d: |a, b, y| (∂y/∂a, ∂y/∂b);`
/// `saves_output` says whether the partials read `y` (the tape then saves it).
macro_rules! binary_ops {
    ($(
        $(#[$doc:meta])*
        $variant:ident => $name:literal, fn $method:ident / $try_method:ident, saves_output: $saves:literal,
        f: |$a:ident, $b:ident| $forward:expr,
        d: |$pa:ident, $pb:ident, $py:ident| $partials:expr;
    )*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum BinaryOp {
            $($variant),*
        }

        impl BinaryOp {
            /// Every binary elementwise op.
            pub(crate) const ALL: &'static [BinaryOp] = &[$(BinaryOp::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(BinaryOp::$variant => $name),* }
            }

            pub(crate) fn saves_output(self) -> bool {
                match self { $(BinaryOp::$variant => $saves),* }
            }

            fn forward<T: Element>(self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
                match self { $(BinaryOp::$variant => zip(a, la, b, lb, |$a: T, $b: T| $forward)),* }
            }

            /// The op with one operand a single value `s` (on the left
            /// when `left`) over a view of the other: a map, without the
            /// broadcast layouts [`zip`] needs.
            fn forward_scalar<T: Element>(self, s: T, left: bool, xs: &[T], lx: &Layout) -> Vec<T> {
                match self { $(BinaryOp::$variant => if left {
                    map(xs, lx, move |$b: T| { let $a: T = s; $forward })
                } else {
                    map(xs, lx, move |$a: T| { let $b: T = s; $forward })
                }),* }
            }

            /// The op on one pair of elements (what compiled code calls for
            /// the ops it does not lower to instructions).
            #[inline(always)]
            pub(crate) fn apply<T: Element>(self, left: T, right: T) -> T {
                match self { $(BinaryOp::$variant => { let ($a, $b): (T, T) = (left, right); $forward }),* }
            }

            /// `(∂y/∂a, ∂y/∂b)` at `a`, `b`, with `y` the output.
            #[allow(unused_variables)]
            pub(crate) fn partials<N: Value>(self, a: &N, b: &N, y: &N) -> (Partial<N>, Partial<N>) {
                match self {
                    $(BinaryOp::$variant => {
                        let ($pa, $pb, $py) = (a.clone(), b.clone(), y.clone());
                        $partials
                    })*
                }
            }
        }

        impl Tensor {
            $(
                /// The op, or an error instead of a panic: operands that do
                /// not broadcast, or of different dtypes.
                ///
                #[doc = concat!(
                    "```\n",
                    "use chainrule::Tensor;\n",
                    "let a = Tensor::from_vec(vec![0.5f64, 1.5, 2.5], &[3]);\n",
                    "let b = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);\n",
                    "let err = a.", stringify!($try_method), "(&b).unwrap_err();\n",
                    "assert!(err.to_string().contains(\"[3]\") && err.to_string().contains(\"[2]\"));\n",
                    "```"
                )]
                pub fn $try_method(&self, other: &Tensor) -> Result<Tensor> {
                    binary(self, other, BinaryOp::$variant)
                }
            )*
        }

        panicking! {
            $(
                $(#[$doc])*
                ///
                /// Elementwise, with NumPy broadcasting; its derivatives, by
                /// reverse mode, against central differences:
                #[doc = concat!(
                    "```\n",
                    "use chainrule::{func, Tensor};\n",
                    "let a = Tensor::from_vec(vec![0.5f64, 1.5, 2.5, 3.5], &[2, 2]);\n",
                    "let b = Tensor::from_vec(vec![1.25f64, 0.75], &[2]); // broadcast over rows\n",
                    "let f = |a: &Tensor, b: &Tensor| a.", stringify!($method), "(b);\n",
                    "assert_eq!(f(&a, &b).shape(), &[2, 2]);\n",
                    "let da = func::grad(|a: &Tensor| f(a, &b).sum(), &a).unwrap();\n",
                    "let db = func::grad(|b: &Tensor| f(&a, b).sum(), &b).unwrap();\n",
                    "assert_eq!((da.shape(), db.shape()), (&[2, 2][..], &[2][..]));\n",
                    "let h = 1e-6;\n",
                    "let fd = (f(&a, &b.add_scalar(h)).sum().item() - f(&a, &b.add_scalar(-h)).sum().item()) / (2.0 * h);\n",
                    "assert!((db.sum().item() - fd).abs() < 1e-6);\n",
                    "```"
                )]
                fn $method => $try_method(other: &Tensor);
            )*
        }
    };
}

binary_ops! {
    /// Elementwise `self + other`, broadcasting. Also `&a + &b`.
    Add => "add", fn add / try_add, saves_output: false,
        f: |a, b| a + b, d: |a, b, y| (Const(1.0), Const(1.0));
    /// Elementwise `self - other`, broadcasting. Also `&a - &b`.
    Sub => "sub", fn sub / try_sub, saves_output: false,
        f: |a, b| a - b, d: |a, b, y| (Const(1.0), Const(-1.0));
    /// Elementwise `self * other`, broadcasting. Also `&a * &b`.
    Mul => "mul", fn mul / try_mul, saves_output: false,
        f: |a, b| a * b, d: |a, b, y| (Of(b), Of(a));
    /// Elementwise `self / other`, broadcasting. Also `&a / &b`.
    Div => "div", fn div / try_div, saves_output: false,
        f: |a, b| a / b, d: |a, b, y| (Of(b.recip()), Of(a.over(&b.square()).scale(-1.0)));
    /// Elementwise `self ^ exponent` with a tensor exponent. The base's
    /// partial is 0 where the exponent is 0; the exponent's is 0 where the
    /// base is 0 and the exponent ≥ 0, NaN for a negative base (as PyTorch).
    Pow => "pow", fn pow / try_pow, saves_output: true,
        f: |a, b| a.powf(b),
        d: |a, b, y| {
            let zero = a.constant(0.0);
            let base = b.zero_mask().select(&zero, &b.times(&a.power(&b.shift(-1.0))));
            let exponent_nonnegative = zero.less_than(&b).plus(&b.zero_mask());
            let at_zero = a.zero_mask().times(&exponent_nonnegative);
            (Of(base), Of(at_zero.select(&zero, &y.times(&a.ln()))))
        };
    /// Elementwise maximum; at ties each side gets half the gradient, and
    /// both get it all where either is NaN (as PyTorch). NaN propagates.
    Maximum => "maximum", fn maximum / try_maximum, saves_output: false,
        f: |a, b| if a >= b || a.is_nan() { a } else { b },
        d: |a, b, y| extremum_shares(&a, &b, true);
    /// Elementwise minimum; ties and NaNs as [`Tensor::maximum`].
    Minimum => "minimum", fn minimum / try_minimum, saves_output: false,
        f: |a, b| if a <= b || a.is_nan() { a } else { b },
        d: |a, b, y| extremum_shares(&a, &b, false);
    /// The angle of the point `(other, self)`: `atan2(y = self, x = other)`.
    Atan2 => "atan2", fn atan2 / try_atan2, saves_output: false,
        f: |a, b| a.atan2(b),
        d: |a, b, y| {
            let r2 = a.square().plus(&b.square());
            (Of(b.over(&r2)), Of(a.over(&r2).scale(-1.0)))
        };
    /// `√(self² + other²)`, without overflow.
    Hypot => "hypot", fn hypot / try_hypot, saves_output: true,
        f: |a, b| a.hypot(b), d: |a, b, y| (Of(a.over(&y)), Of(b.over(&y)));
}

impl BinaryOp {
    /// The output's dtype for operands of `dtype`: every op on floats; the
    /// exact ones on integers; maximum and minimum (`or`, `and`) on bool.
    pub(crate) fn out_dtype(self, dtype: DType) -> Result<DType> {
        use BinaryOp::*;
        let takes = match dtype {
            DType::F32 | DType::F64 => true,
            DType::I32 | DType::I64 => matches!(self, Add | Sub | Mul | Maximum | Minimum),
            DType::Bool => matches!(self, Maximum | Minimum),
        };
        let expected = match self {
            _ if takes => return Ok(dtype),
            Add | Sub | Mul => "numbers (for bool: maximum is `or`, minimum is `and`)",
            _ => "f32 and f64",
        };
        Err(Error::dtype(self.name(), dtype, expected))
    }

    /// The kernel on integers (wrapping, as Rust's release builds and
    /// PyTorch do); the dtype rule admitted only these rows.
    fn forward_int<T: Int>(self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
        match self {
            BinaryOp::Add => zip(a, la, b, lb, T::wrapping_add),
            BinaryOp::Sub => zip(a, la, b, lb, T::wrapping_sub),
            BinaryOp::Mul => zip(a, la, b, lb, T::wrapping_mul),
            BinaryOp::Maximum => zip(a, la, b, lb, Ord::max),
            BinaryOp::Minimum => zip(a, la, b, lb, Ord::min),
            _ => unreachable!("{} on integers: refused by its dtype rule", self.name()),
        }
    }

    /// The kernel on bool: `or` and `and`.
    fn forward_bool(self, a: &[bool], la: &Layout, b: &[bool], lb: &Layout) -> Vec<bool> {
        match self {
            BinaryOp::Maximum => zip(a, la, b, lb, |x, y| x | y),
            BinaryOp::Minimum => zip(a, la, b, lb, |x, y| x & y),
            _ => unreachable!("{} on bool: refused by its dtype rule", self.name()),
        }
    }
}

/// `∂y/∂a` and `∂y/∂b` of maximum (or minimum): 1 to the side that wins, ½
/// each at a tie, and 1 to both sides when either is NaN (no comparison
/// holds then). Constants: masks carry no derivative.
fn extremum_shares<N: Value>(a: &N, b: &N, maximum: bool) -> (Partial<N>, Partial<N>) {
    let (a_loses, b_loses) = if maximum {
        (a.less_than(b), b.less_than(a))
    } else {
        (b.less_than(a), a.less_than(b))
    };
    let half_tie = a.equal_to(b).scale(0.5);
    let share = |loses: N| loses.plus(&half_tie).scale(-1.0).shift(1.0);
    (Of(share(a_loses)), Of(share(b_loses)))
}

impl BinaryOp {
    /// Adjoints of `a` and `b` (each summed back to its own shape); `y` is
    /// the output when the rule reads it.
    pub(crate) fn vjp(
        self,
        a: &Tensor,
        b: &Tensor,
        y: Option<&Tensor>,
        g: &Tensor,
        needs: &[bool],
    ) -> SmallVec<[Option<Tensor>; 2]> {
        // Rows that do not read the output never look at the stand-in `a`.
        let y = match y {
            Some(y) => y.clone(),
            None if self.saves_output() => binary(a, b, self).expect("it ran forward"),
            None => a.clone(),
        };
        let (pa, pb) = self.partials(a, b, &y);
        let term = |p: Partial<Tensor>, like: &Tensor| sum_to(&times(g, p), like.shape());
        smallvec![needs[0].then(|| term(pa, a)), needs[1].then(|| term(pb, b))]
    }

    /// The VJP on one pair of elements: `(g · ∂y/∂a, g · ∂y/∂b)`, with the
    /// tensor rule's arithmetic (`y` recomputed when the partials read it
    /// and it is absent).
    pub(crate) fn vjp_element<T: Element>(self, a: T, b: T, y: Option<T>, g: T) -> (T, T) {
        let y = match y {
            Some(y) => y,
            None if self.saves_output() => self.apply(a, b),
            None => a,
        };
        let (pa, pb) = self.partials(&a, &b, &y);
        (times(&g, pa), times(&g, pb))
    }

    /// The JVP: `ȧ ⊙ ∂y/∂a + ḃ ⊙ ∂y/∂b`, of the output's shape.
    pub(crate) fn jvp(
        self,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        ta: &Option<Tensor>,
        tb: &Option<Tensor>,
    ) -> Tensor {
        let (pa, pb) = self.partials(a, b, y);
        let da = ta.as_ref().map(|t| times(t, pa));
        let db = tb.as_ref().map(|t| times(t, pb));
        let sum = match (da, db) {
            (Some(x), Some(z)) => x + z,
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => return y.zeros_like(),
        };
        if sum.shape() == y.shape() {
            sum
        } else {
            sum.broadcast_to(y.shape())
        }
    }

    /// The JVP on one pair of elements, with [`BinaryOp::jvp`]'s arithmetic.
    pub(crate) fn jvp_element<T: Element>(
        self,
        a: T,
        b: T,
        y: T,
        ta: Option<T>,
        tb: Option<T>,
    ) -> T {
        let (pa, pb) = self.partials(&a, &b, &y);
        let da = ta.map(|t| times(&t, pa));
        let db = tb.map(|t| times(&t, pb));
        match (da, db) {
            (Some(x), Some(z)) => x + z,
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => T::zero(),
        }
    }

    /// The op on two values of `dtype`, through the same kernel (see
    /// `UnaryOp::eval_scalar`).
    pub(crate) fn eval_scalar(self, a: f64, b: f64, dtype: DType) -> f64 {
        let l = Layout::contiguous(&[]);
        with_dtype!(dtype, T => self.forward(&[T::of(a)], &l, &[T::of(b)], &l)[0].f64())
    }
}

/// `t ⊙ p` (a constant partial scales; 1 leaves `t` as it is), on tensors
/// and on single elements alike.
fn times<N: Value>(t: &N, p: Partial<N>) -> N {
    match p {
        Const(1.0) => t.clone(),
        Const(c) => t.scale(c),
        Of(p) => t.times(&p),
    }
}

/// The shape of `a op b`, or a shape error naming `op`.
pub(crate) fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    broadcast_shapes(a, b)
        .map(|s| s.to_vec())
        .ok_or_else(|| Error::shapes_detail(op, a, b, "they do not broadcast"))
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
    if a.ndim() == 0 || b.ndim() == 0 {
        return scalar_against(op, a, b);
    }
    let shape = broadcast_shape(op, a.shape(), b.shape())?;
    crate::limits::check_alloc(op, &shape, a.dtype())?;
    Ok((
        a.layout().broadcast_to(&shape).unwrap(),
        b.layout().broadcast_to(&shape).unwrap(),
    ))
}

/// [`broadcast_pair`] when one operand is 0-d (a gradient scaling a
/// tensor, a constant): the other's shape, with every stride of the 0-d
/// side zero, without the general shape arithmetic.
fn scalar_against(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(Layout, Layout)> {
    let (scalar, other) = if a.ndim() == 0 { (a, b) } else { (b, a) };
    if other.layout().contiguous_range().is_none() {
        crate::limits::check_alloc(op, other.shape(), other.dtype())?;
    }
    let spread = Layout {
        shape: Dims::from_slice(other.shape()),
        strides: smallvec![0; other.ndim()],
        offset: scalar.layout().offset,
    };
    Ok(if a.ndim() == 0 {
        (spread, b.layout().clone())
    } else {
        (a.layout().clone(), spread)
    })
}

/// `g * x` for each element `x` of the view `lx` of `xs`: the product of
/// a 0-d `g` with a tensor, on numbers.
pub(crate) fn scale<T: Element>(g: T, xs: &[T], lx: &Layout) -> Vec<T> {
    BinaryOp::Mul.forward_scalar(g, true, xs, lx)
}

/// A float op of a 0-d operand with a contiguous one (a gradient scaling
/// a vector, a constant added): a map over the contiguous one's elements.
/// `None` for any other pair.
fn scalar_against_run(a: &Tensor, b: &Tensor, op: BinaryOp, dtype: DType) -> Option<Tensor> {
    let left = match (a.ndim(), b.ndim()) {
        (0, n) if n > 0 => true,
        (n, 0) if n > 0 => false,
        _ => return None,
    };
    let (scalar, other) = if left { (a, b) } else { (b, a) };
    if !matches!(dtype, DType::F32 | DType::F64) || other.layout().contiguous_range().is_none() {
        return None;
    }
    Some(with_dtype!(dtype, T => Tensor::from_buffer(
        op.forward_scalar(scalar.element::<T>(), left, other.buffer::<T>(), other.layout()),
        other.shape(),
    )))
}

/// The kernel of a binary op (its dtype rule has admitted the operands).
pub(crate) fn forward(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    let dtype = same_dtype(op.name(), a, b)?;
    if a.ndim() == 0 && b.ndim() == 0 && dtype.is_float() {
        return Ok(with_dtype!(dtype, T => Tensor::from_element(
            op.apply(a.element::<T>(), b.element::<T>()))));
    }
    if let Some(out) = scalar_against_run(a, b, op, dtype) {
        return Ok(out);
    }
    let (la, lb) = broadcast_pair(op.name(), a, b)?;
    let out = match dtype {
        DType::F32 | DType::F64 => with_dtype!(dtype, T => Tensor::from_buffer(
            op.forward(a.buffer::<T>(), &la, b.buffer::<T>(), &lb), &la.shape)),
        DType::Bool => {
            Tensor::from_buffer(op.forward_bool(a.buffer(), &la, b.buffer(), &lb), &la.shape)
        }
        _ => with_int!(dtype, T => Tensor::from_buffer(
            op.forward_int(a.buffer::<T>(), &la, b.buffer::<T>(), &lb), &la.shape)),
    };
    Ok(out)
}

pub(crate) fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    bind(Prim::Binary(op), &[a, b])
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
        && super::quiet(&[&acc, g]);
    if plain {
        if let Some(inner) = std::sync::Arc::get_mut(&mut acc.0) {
            let done = with_dtype!(g.dtype(), T => match T::unique_mut(&mut inner.storage) {
                Some(buf) => {
                    accumulate(buf, g.buffer::<T>(), g.layout(), T::of(alpha));
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

/// Declares the comparisons: `Variant => "name", fn method / try_method, |a, b| test;`.
macro_rules! compare_ops {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, fn $method:ident / $try_method:ident, |$a:ident, $b:ident| $test:expr; )*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum CompareOp {
            $($variant),*
        }

        impl CompareOp {
            pub fn name(self) -> &'static str {
                match self { $(CompareOp::$variant => $name),* }
            }

            /// The name of the comparison as a float mask ([`Prim::Mask`]).
            pub fn mask_name(self) -> &'static str {
                match self { $(CompareOp::$variant => concat!($name, "_mask")),* }
            }

            fn forward<T: Scalar>(self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<bool> {
                match self {
                    $(CompareOp::$variant => zip(a, la, b, lb, |$a: T, $b: T| $test)),*
                }
            }

            fn forward_mask<T: Element>(self, a: &[T], la: &Layout, b: &[T], lb: &Layout) -> Vec<T> {
                let (one, zero) = (T::one(), T::zero());
                match self {
                    $(CompareOp::$variant => zip(a, la, b, lb, |$a: T, $b: T| if $test { one } else { zero })),*
                }
            }
        }

        impl Tensor {
            $(
                /// The comparison, or an error instead of a panic: operands
                /// that do not broadcast, or of different dtypes.
                ///
                #[doc = concat!(
                    "```\n",
                    "use chainrule::Tensor;\n",
                    "let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);\n",
                    "assert!(a.", stringify!($try_method), "(&Tensor::from_vec(vec![1.0f64, 2.0], &[2])).is_err());\n",
                    "assert!(a.", stringify!($try_method), "(&Tensor::from_vec(vec![1i64, 2, 3], &[3])).is_err());\n",
                    "```"
                )]
                pub fn $try_method(&self, other: &Tensor) -> Result<Tensor> {
                    bind(Prim::Compare(CompareOp::$variant), &[self, other])
                }
            )*
        }

        panicking! {
            $(
                $(#[$doc])*
                ///
                /// Elementwise, with NumPy broadcasting, to a `bool` tensor
                /// (through which no derivative flows):
                #[doc = concat!(
                    "```\n",
                    "use chainrule::{DType, Tensor};\n",
                    "let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);\n",
                    "let m = a.", stringify!($method), "(&Tensor::scalar(2.0f64));\n",
                    "assert_eq!((m.shape(), m.dtype()), (&[3][..], DType::Bool));\n",
                    "```"
                )]
                fn $method => $try_method(other: &Tensor);
            )*
        }
    };
}

compare_ops! {
    /// `true` where `self > other` (both of one dtype, broadcasting); a
    /// `bool` tensor, through which no gradient flows.
    Gt => "gt", fn gt / try_gt, |a, b| a > b;
    /// `true` where `self >= other`.
    Ge => "ge", fn ge / try_ge, |a, b| a >= b;
    /// `true` where `self < other`.
    Lt => "lt", fn lt / try_lt, |a, b| a < b;
    /// `true` where `self <= other`.
    Le => "le", fn le / try_le, |a, b| a <= b;
    /// `true` where `self == other`.
    Eq => "eq", fn eq_elem / try_eq_elem, |a, b| a == b;
    /// `true` where `self != other` (NaN is unequal to everything).
    Ne => "ne", fn ne_elem / try_ne_elem, |a, b| a != b;
}

/// The kernel of a comparison: `bool`.
pub(crate) fn compare(a: &Tensor, b: &Tensor, op: CompareOp) -> Result<Tensor> {
    let dtype = same_dtype(op.name(), a, b)?;
    let (la, lb) = broadcast_pair(op.name(), a, b)?;
    Ok(with_scalar!(dtype, T => Tensor::from_buffer(
        op.forward(a.buffer::<T>(), &la, b.buffer::<T>(), &lb), &la.shape)))
}

/// The kernel of a mask: 0s and 1s in the operands' float dtype.
pub(crate) fn mask(a: &Tensor, b: &Tensor, op: CompareOp) -> Result<Tensor> {
    let dtype = same_dtype(op.mask_name(), a, b)?;
    let (la, lb) = broadcast_pair(op.mask_name(), a, b)?;
    Ok(with_dtype!(dtype, T => Tensor::from_buffer(
        op.forward_mask(a.buffer::<T>(), &la, b.buffer::<T>(), &lb), &la.shape)))
}

/// `1` where `a op b`, else `0`, in their float dtype: a constant mask for
/// derivative rules (see [`Prim::Mask`]).
pub(crate) fn mask_of(a: &Tensor, b: &Tensor, op: CompareOp) -> Tensor {
    crate::error::or_panic(bind(Prim::Mask(op), &[a, b]))
}

impl Tensor {
    /// `true` where `self > c` (`c` converted to this tensor's dtype).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// assert_eq!(x.gt_scalar(1.5).to_vec::<bool>(), [false, true, true]);
    /// ```
    pub fn gt_scalar(&self, c: f64) -> Tensor {
        self.gt(&Tensor::full(&[], c, self.dtype()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 0-d operand against a contiguous one takes a map of its own
    /// ([`scalar_against_run`]): it must agree bit for bit with the op on
    /// each pair of 0-d values, on either side, in both float dtypes.
    #[test]
    fn a_scalar_against_a_run_is_the_op_on_each_pair() {
        let xs = [-2.5, -0.75, 0.0, 0.5, 1.25, 3.0, 7.5];
        for dtype in [DType::F32, DType::F64] {
            let x = Tensor::from_vec(xs.to_vec(), &[7]).to_dtype(dtype);
            let s = Tensor::scalar(1.5).to_dtype(dtype);
            for &op in BinaryOp::ALL {
                for left in [true, false] {
                    let (a, b) = if left { (&s, &x) } else { (&x, &s) };
                    let got = forward(a, b, op).unwrap().to_dtype(DType::F64);
                    for (i, got) in got.to_vec::<f64>().into_iter().enumerate() {
                        let xi = x.narrow(0, i, 1).reshape(&[]);
                        let (a, b) = if left { (&s, &xi) } else { (&xi, &s) };
                        let want = forward(a, b, op).unwrap().to_dtype(DType::F64).item();
                        assert!(
                            got.to_bits() == want.to_bits(),
                            "{} {dtype:?} left={left} at {i}: {got} vs {want}",
                            op.name()
                        );
                    }
                }
            }
        }
    }
}
