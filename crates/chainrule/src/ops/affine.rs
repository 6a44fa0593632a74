//! `act(x·W + b)` as one op: the matrix product is added onto rows of the
//! bias and the activation runs on the result in place, so a layer makes
//! one buffer and passes over it once, instead of three buffers and three
//! passes (product, bias, activation). Backward keeps the output alone:
//! the activations fused are those whose derivative the output determines
//! (relu: its sign, which is its input's; tanh: `1 − y²`; sigmoid:
//! `y (1 − y)`), so the pre-activation `x·W + b` is never kept.

use super::{bind, panicking, BatchArg, Prim, UnaryOp};
use crate::error::{Error, Result};
use crate::kernels::matmul::matmul_accumulate;
use crate::storage::with_dtype;
use crate::tensor::Tensor;
use smallvec::{smallvec, SmallVec};

/// An activation between layers: of [`nn::mlp`](crate::nn::mlp), and after
/// the product in [`Tensor::try_affine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `max(·, 0)`, as [`Tensor::relu`].
    Relu,
    /// As [`Tensor::tanh`].
    Tanh,
    /// As [`Tensor::sigmoid`].
    Sigmoid,
    /// GELU, tanh form, as [`Tensor::gelu_tanh`].
    Gelu,
}

impl Activation {
    /// The elementwise op.
    fn unary(self) -> UnaryOp {
        match self {
            Activation::Relu => UnaryOp::Relu {},
            Activation::Tanh => UnaryOp::Tanh {},
            Activation::Sigmoid => UnaryOp::Sigmoid {},
            Activation::Gelu => UnaryOp::GeluTanh {},
        }
    }

    /// Whether an affine op fuses it: its derivative is a function of its
    /// output (GELU's is not).
    fn fuses(self) -> bool {
        self != Activation::Gelu
    }

    /// `g ⊙ act'(z)` from the output `y = act(z)`: the unary rule on the
    /// output, given as its operand both where it reads the output (tanh,
    /// sigmoid) and where it reads the input (relu: `y > 0` exactly where
    /// `z > 0`).
    fn backward(self, y: &Tensor, g: &Tensor) -> Tensor {
        debug_assert!(self.fuses());
        self.unary().vjp(y, Some(y), g)
    }
}

/// The op's name, by the activation it fuses.
pub(crate) fn op_name(act: Option<Activation>) -> &'static str {
    match act {
        None => "affine",
        Some(Activation::Relu) => "affine_relu",
        Some(Activation::Tanh) => "affine_tanh",
        Some(Activation::Sigmoid) => "affine_sigmoid",
        Some(Activation::Gelu) => unreachable!("GELU is not fused"),
    }
}

/// `act` of `z`, as its own op (recorded like any other).
fn activate(z: Tensor, act: Option<Activation>) -> Result<Tensor> {
    match act {
        None => Ok(z),
        Some(act) => bind(Prim::Unary(act.unary()), &[&z]),
    }
}

/// `g ⊙ act'(z)` for the output `y = act(z)` (read only with an
/// activation).
fn backward(act: Option<Activation>, y: Option<&Tensor>, g: &Tensor) -> Tensor {
    match (act, y) {
        (None, _) => g.clone(),
        (Some(act), Some(y)) => act.backward(y, g),
        (Some(_), None) => unreachable!("an activation's op saves its output"),
    }
}

impl Tensor {
    /// `act(self · weight + bias)` (no activation for `None`):
    /// [`nn::Linear`](crate::nn::Linear) and the activation after it. For a
    /// matrix `self` `(m, k)`, a weight `(k, n)` and a bias `(n,)` it is one
    /// op (see `ops/affine.rs`), the activation included but for GELU,
    /// which follows as its own; otherwise (other shapes, a bias that
    /// broadcasts, a graph being traced) `matmul`, `+` and the activation.
    ///
    /// ```
    /// use chainrule::nn::Activation;
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[1, 2]);
    /// let w = Tensor::from_vec(vec![1.0f64, -1.0, 1.0, -1.0], &[2, 2]);
    /// let b = Tensor::from_vec(vec![0.5f64, 0.5], &[2]);
    /// let y = x.try_affine(&w, &b, Some(Activation::Relu)).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [3.5, 0.0]);
    /// assert_eq!(y.op_name(), None); // no input requires grad
    /// assert!(x.try_affine(&x, &b, None).is_err()); // (1, 2)·(1, 2)
    /// ```
    pub fn try_affine(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        act: Option<Activation>,
    ) -> Result<Tensor> {
        let (fused, after) = match act {
            Some(a) if !a.fuses() => (None, act),
            _ => (act, None),
        };
        let z = if fuses(self, weight, bias) {
            bind(Prim::Affine(fused), &[self, weight, bias])?
        } else {
            activate(self.try_matmul(weight)?.try_add(bias)?, fused)?
        };
        activate(z, after)
    }
}

/// Whether `act(x·W + b)` runs as one op: for a matrix `x` `(m, k)`, a
/// weight `(k, n)` and a bias `(n,)` of one dtype, outside a graph trace
/// (which records the three ops its optimizer and compiler know, and
/// fuses them its own way). Otherwise the three ops run, with their
/// broadcasting and their errors.
fn fuses(x: &Tensor, w: &Tensor, b: &Tensor) -> bool {
    shape(x.shape(), w.shape(), b.shape()).is_ok()
        && w.dtype() == x.dtype()
        && b.dtype() == x.dtype()
        && !crate::interp::watched()
}

panicking! {
    /// Panicking form of [`Tensor::try_affine`].
    fn affine => try_affine(weight: &Tensor, bias: &Tensor, act: Option<Activation>);
}

/// The output shape `(m, n)` of `x (m, k) · w (k, n) + b (n,)`.
pub(crate) fn shape(x: &[usize], w: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let op = "affine";
    if x.len() != 2 || w.len() != 2 {
        return Err(Error::shapes_detail(
            op,
            x,
            w,
            "needs x (m, k) and weight (k, n)",
        ));
    }
    if x[1] != w[0] {
        let detail = format!("contraction sizes differ ({} vs {})", x[1], w[0]);
        return Err(Error::shapes_detail(op, x, w, detail));
    }
    if b != [w[1]] {
        return Err(Error::shapes_detail(
            op,
            w,
            b,
            "needs weight (k, n) and bias (n,)",
        ));
    }
    Ok(vec![x[0], w[1]])
}

// Kept out of `Prim::forward` (its GEMM dwarfs a call): inlined there, its
// body made the per-op path of every other op measurably slower.
#[inline(never)]
pub(crate) fn forward(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    act: Option<Activation>,
) -> Result<Tensor> {
    let shape = shape(x.shape(), w.shape(), b.shape())?;
    crate::limits::check_alloc("affine", &shape, x.dtype())?;
    let act = act.map(Activation::unary);
    Ok(with_dtype!(x.dtype(), T => {
        let buf = b.buffer::<T>();
        let bias: std::borrow::Cow<[T]> = match b.layout().contiguous_range() {
            Some(r) => std::borrow::Cow::Borrowed(&buf[r]),
            None => b.layout().offsets().map(|i| buf[i]).collect(),
        };
        let mut out: Vec<T> = crate::memory::vec_with_capacity(shape[0] * shape[1]);
        for _ in 0..shape[0] {
            out.extend_from_slice(&bias);
        }
        matmul_accumulate(&mut out, x.buffer::<T>(), x.layout(), w.buffer::<T>(), w.layout());
        if let Some(op) = act {
            op.forward_in_place(&mut out);
        }
        Tensor::from_buffer(out, &shape)
    }))
}

/// `x`, `w`, `b`'s gradients from the output `y` (with an activation) and
/// its gradient `g`.
pub(crate) fn vjp(
    inputs: &[Tensor],
    y: Option<&Tensor>,
    g: &Tensor,
    act: Option<Activation>,
    needs: &[bool],
) -> SmallVec<[Option<Tensor>; 2]> {
    let gz = backward(act, y, g);
    let (x, w) = (&inputs[0], &inputs[1]);
    smallvec![
        needs[0].then(|| gz.matmul(&w.t())),
        needs[1].then(|| x.t().matmul(&gz)),
        needs[2].then(|| gz.sum_axes(&[0], false)),
    ]
}

/// The output's tangent: `act'(y) ⊙ (ẋ·W + x·Ẇ + ḃ)`.
pub(crate) fn jvp(
    inputs: &[Tensor],
    y: &Tensor,
    tangents: &[Option<Tensor>],
    act: Option<Activation>,
) -> Result<Tensor> {
    let (x, w) = (&inputs[0], &inputs[1]);
    let terms = [
        tangents[0].as_ref().map(|t| t.matmul(w)),
        tangents[1].as_ref().map(|t| x.matmul(t)),
        tangents[2].clone(),
    ];
    let dz = terms
        .into_iter()
        .flatten()
        .reduce(|a, b| a + b)
        .expect("a JVP runs only when some input has a tangent");
    // A bias's tangent alone is a row: the output's tangent has every row.
    let dz = dz.try_broadcast_to(y.shape())?;
    Ok(backward(act, Some(y), &dz))
}

/// The batching rule: the op's three parts on the batched values (a
/// batched bias, `(B, n)`, broadcasts over the rows as `(B, 1, n)`).
pub(crate) fn batch(args: &[BatchArg], act: Option<Activation>) -> Result<Tensor> {
    let (x, w, b) = (&args[0].value, &args[1].value, &args[2].value);
    let b = match args[2].batched {
        true => b.try_unsqueeze(1)?,
        false => b.clone(),
    };
    activate(x.try_matmul(w)?.try_add(&b)?, act)
}
