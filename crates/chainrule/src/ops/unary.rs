//! Elementwise unary primitives. Each row of the two `match`es below is one
//! op: its forward on one element, then its VJP. (The Jacobian of an
//! elementwise op is diagonal, so its JVP is the same product as its VJP.)

use super::{record, Prim};
use crate::dtype::Element;
use crate::kernels::elementwise::map;
use crate::layout::Layout;
use crate::storage::with_dtype;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sin,
    Cos,
    Tan,
    Tanh,
    Sqrt,
    Abs,
    Sigmoid,
    Relu,
    /// `x^p` for a constant `p`.
    Powf(f64),
    /// `c · x`.
    Scale(f64),
    /// `x + c`.
    Shift(f64),
}

use UnaryOp::*;

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            Neg => "neg",
            Exp => "exp",
            Log => "log",
            Sin => "sin",
            Cos => "cos",
            Tan => "tan",
            Tanh => "tanh",
            Sqrt => "sqrt",
            Abs => "abs",
            Sigmoid => "sigmoid",
            Relu => "relu",
            Powf(_) => "powf",
            Scale(_) => "mul_scalar",
            Shift(_) => "add_scalar",
        }
    }

    /// Rules that read the output (cheaper than recomputing it).
    fn saves_output(self) -> bool {
        matches!(self, Exp | Tan | Tanh | Sqrt | Sigmoid)
    }

    fn forward<T: Element>(self, src: &[T], l: &Layout) -> Vec<T> {
        match self {
            Neg => map(src, l, |x| -x),
            Exp => map(src, l, |x| x.exp()),
            Log => map(src, l, |x| x.ln()),
            Sin => map(src, l, |x| x.sin()),
            Cos => map(src, l, |x| x.cos()),
            Tan => map(src, l, |x| x.tan()),
            Tanh => map(src, l, |x| x.tanh()),
            Sqrt => map(src, l, |x| x.sqrt()),
            Abs => map(src, l, |x| x.abs()),
            Sigmoid => map(src, l, |x| {
                // Never exponentiates a large positive number.
                if x >= T::zero() {
                    T::one() / (T::one() + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (T::one() + e)
                }
            }),
            // NaN passes through, as in PyTorch.
            Relu => map(src, l, |x| {
                if x > T::zero() || x.is_nan() {
                    x
                } else {
                    T::zero()
                }
            }),
            Powf(2.0) => map(src, l, |x| x * x),
            Powf(p) => {
                let p = T::of(p);
                map(src, l, |x| x.powf(p))
            }
            Scale(c) => {
                let c = T::of(c);
                map(src, l, |x| x * c)
            }
            Shift(c) => {
                let c = T::of(c);
                map(src, l, |x| x + c)
            }
        }
    }

    /// `f'` on one element, given the output `y` for rules that save it and
    /// the input `x` otherwise: the fused first-order VJP below.
    fn derivative<T: Element>(self, v: T) -> T {
        let one = T::one();
        match self {
            Neg => -one,
            Exp => v,
            Log => one / v,
            Sin => v.cos(),
            Cos => -v.sin(),
            Tan => one + v * v,
            Tanh => one - v * v,
            Sqrt => T::of(0.5) / v,
            Abs => {
                if v > T::zero() {
                    one
                } else if v < T::zero() {
                    -one
                } else {
                    T::zero()
                }
            }
            Sigmoid => v * (one - v),
            Relu => {
                if v > T::zero() {
                    one
                } else {
                    T::zero()
                }
            }
            // x² is common (squared errors): no call to pow for it.
            Powf(2.0) => T::of(2.0) * v,
            // x⁰ is constant: 0, not 0·0⁻¹ = NaN at x = 0 (as PyTorch).
            Powf(0.0) => T::zero(),
            Powf(p) => T::of(p) * v.powf(T::of(p - 1.0)),
            Scale(c) => T::of(c),
            Shift(_) => one,
        }
    }

    /// `g · f'(x)`, with `y = f(x)` when [`UnaryOp::saves_output`] (`None`:
    /// recompute it). When the result need not be recorded (no grad mode, or
    /// nothing here needs a gradient or carries a tangent) this is one fused
    /// kernel; otherwise it is built from differentiable ops.
    pub(crate) fn vjp(self, x: &Tensor, y: Option<&Tensor>, g: &Tensor) -> Tensor {
        let v = if self.saves_output() { y } else { Some(x) };
        if let Some(v) = v {
            let plain = |t: &Tensor| t.0.dual.is_none() && !t.needs_grad();
            let fused = v.shape() == g.shape()
                && g.0.dual.is_none()
                && v.0.dual.is_none()
                && !crate::graph::trace::active()
                && (!crate::autograd::is_grad_enabled() || (plain(x) && plain(v) && plain(g)));
            if fused {
                return with_dtype!(g.dtype(), T => {
                    let out = crate::kernels::elementwise::zip(
                        v.buffer::<T>(), v.layout(), g.buffer::<T>(), g.layout(),
                        |v, g| g * self.derivative(v));
                    Tensor::from_buffer(out, g.shape())
                });
            }
        }
        self.differentiable_vjp(x, y, g)
    }

    /// The JVP: `ẏ = f'(x) ẋ`, the same product as the VJP (the Jacobian is
    /// diagonal). A batched tangent broadcasts against `f'(x)`.
    pub(crate) fn jvp(self, x: &Tensor, y: &Tensor, t: &Tensor) -> Tensor {
        self.vjp(x, Some(y), t)
    }

    pub(crate) fn differentiable_vjp(self, x: &Tensor, y: Option<&Tensor>, g: &Tensor) -> Tensor {
        let y = || match y {
            Some(y) => y.clone(),
            None => unary(x, self),
        };
        match self {
            Neg => g.neg(),
            Exp => g * &y(),
            Log => g / x,
            Sin => g * &x.cos(),
            Cos => -(g * &x.sin()),
            Tan => g * &(y().square() + 1.0),
            Tanh => g * &(1.0 - y().square()),
            Sqrt => (g / &y()) * 0.5,
            Abs => g * &x.sign(),
            Sigmoid => {
                let y = y();
                g * &(&y * &(1.0 - &y))
            }
            Relu => g * &x.gt_scalar(0.0),
            Powf(2.0) => g * &(x * 2.0),
            Powf(0.0) => g * 0.0,
            Powf(p) => g * &(x.powf(p - 1.0) * p),
            Scale(c) => g * c,
            Shift(_) => g.clone(),
        }
    }
}

impl UnaryOp {
    /// The op on one value of `dtype` (rounded as that dtype), through the
    /// same kernel: what a compiled graph uses for 0-d values.
    pub(crate) fn eval_scalar(self, x: f64, dtype: crate::DType) -> f64 {
        with_dtype!(dtype, T => self.forward(&[T::of(x)], &Layout::contiguous(&[]))[0].f64())
    }
}

pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Tensor {
    if x.layout().contiguous_range().is_none() {
        // A broadcast view can be far larger than its buffer.
        crate::error::or_panic(crate::limits::check_alloc(op.name(), x.shape(), x.dtype()));
    }
    let out = with_dtype!(x.dtype(), T => Tensor::from_buffer(op.forward(x.buffer::<T>(), x.layout()), x.shape()));
    record(|| Prim::Unary(op), &[x], out, op.saves_output())
}

/// A non-differentiable elementwise function (its output is a constant).
pub(crate) fn constant_map(x: &Tensor, f: impl Fn(f64) -> f64 + Sync) -> Tensor {
    with_dtype!(x.dtype(), T => Tensor::from_buffer(
        map(x.buffer::<T>(), x.layout(), |v| T::of(f(v.f64()))), x.shape()))
}

impl Tensor {
    pub fn neg(&self) -> Tensor {
        unary(self, Neg)
    }
    pub fn exp(&self) -> Tensor {
        unary(self, Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        unary(self, Log)
    }
    pub fn sin(&self) -> Tensor {
        unary(self, Sin)
    }
    pub fn cos(&self) -> Tensor {
        unary(self, Cos)
    }
    pub fn tan(&self) -> Tensor {
        unary(self, Tan)
    }
    pub fn tanh(&self) -> Tensor {
        unary(self, Tanh)
    }
    pub fn sqrt(&self) -> Tensor {
        unary(self, Sqrt)
    }
    pub fn abs(&self) -> Tensor {
        unary(self, Abs)
    }
    /// `1 / (1 + e^{-x})`, computed without overflow.
    pub fn sigmoid(&self) -> Tensor {
        unary(self, Sigmoid)
    }
    /// `max(x, 0)`; its derivative at 0 is taken as 0.
    pub fn relu(&self) -> Tensor {
        unary(self, Relu)
    }
    /// `x^p` for a constant exponent (see [`Tensor::pow`] for a tensor exponent).
    pub fn powf(&self, p: f64) -> Tensor {
        unary(self, Powf(p))
    }
    /// `x²`.
    pub fn square(&self) -> Tensor {
        unary(self, Powf(2.0))
    }
    /// `c · x`.
    pub fn mul_scalar(&self, c: f64) -> Tensor {
        unary(self, Scale(c))
    }
    /// `x + c`.
    pub fn add_scalar(&self, c: f64) -> Tensor {
        unary(self, Shift(c))
    }
    /// `-1`, `0` or `1` per element (a constant: no gradient flows through it).
    pub fn sign(&self) -> Tensor {
        let out = constant_map(self, |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        });
        if crate::graph::trace::active() {
            crate::graph::trace::op(crate::graph::GOp::Sign, &[self], &out);
        }
        out
    }
}
