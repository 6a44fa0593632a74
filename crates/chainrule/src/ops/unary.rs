//! Elementwise unary primitives, one row each in [`unary_ops!`]: the name,
//! the method, the function on one element, and its derivative written once
//! (generic over [`Value`]). From the derivative come the fused backward
//! kernel, the recorded VJP (differentiable again) and the JVP (the Jacobian
//! is diagonal, so both are the same product); batching maps the op over the
//! batch as it is.

use super::value::{Partial, Value};
use super::{bind, Param, Prim};
use crate::dtype::Element;
use crate::error::Result;
use crate::kernels::elementwise::{map, map_blocks, update_blocks, zip, BLOCK};
use crate::layout::Layout;
use crate::storage::with_dtype;
use crate::tensor::Tensor;
use Partial::{Const, Of};

/// What a derivative reads: the op's input `x`, its output `y` (saved by the
/// tape: cheaper than recomputing), or nothing (no derivative flows).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    Input,
    Output,
    Nothing,
}

/// An op's loop over the elements of a view (`map`) or of a slice in
/// place (`update`): of its element function, or by blocks where its row
/// gives a block form (`map_blocks` and `update_blocks` use it where the
/// dtype runs faster in blocks).
macro_rules! over_elements {
    (map $src:expr, $l:expr, |$x:ident: $t:ty| $f:expr) => {
        map($src, $l, |$x: $t| $f)
    };
    (map $src:expr, $l:expr, |$x:ident: $t:ty| $f:expr, |$xs:ident| $block:expr) => {
        map_blocks(
            $src,
            $l,
            #[inline(always)]
            |$xs: [$t; BLOCK]| $block,
            #[inline(always)]
            |$x: $t| $f,
        )
    };
    (update $slice:expr, |$x:ident: $t:ty| $f:expr) => {
        $slice.iter_mut().for_each(|v| {
            let $x: $t = *v;
            *v = $f
        })
    };
    (update $slice:expr, |$x:ident: $t:ty| $f:expr, |$xs:ident| $block:expr) => {
        update_blocks(
            $slice,
            #[inline(always)]
            |$xs: [$t; BLOCK]| $block,
            #[inline(always)]
            |$x: $t| $f,
        )
    };
}

/// Declares the unary ops. A row:
/// `Variant { params } => "name", fn method / try_method, f: |x| forward, reads: |v| ∂f/∂x;`
/// where `reads` is `Input` or `Output` (what `v` is) or `Nothing`, and the
/// parameters are `f64`s bound by name in both expressions. At its end, a
/// row may give `, block: |xs| ...`, the same function on a block of
/// [`BLOCK`] elements, for ops with a faster form on whole vectors.
macro_rules! unary_ops {
    ($(
        $(#[$doc:meta])*
        $variant:ident { $($param:ident),* } => $name:literal, fn $method:ident / $try_method:ident,
        f: |$x:ident| $forward:expr,
        $reads:ident: |$v:ident| $partial:expr $(, block: |$xs:ident| $block:expr)?;
    )*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum UnaryOp {
            $($variant { $($param: Param),* }),*
        }

        impl UnaryOp {
            pub fn name(self) -> &'static str {
                match self { $(UnaryOp::$variant { .. } => $name),* }
            }

            /// The op's parameters, as graphs print them.
            pub fn params(self) -> Vec<f64> {
                match self { $(UnaryOp::$variant { $($param),* } => vec![$($param.0),*]),* }
            }

            fn reads(self) -> Reads {
                match self { $(UnaryOp::$variant { .. } => Reads::$reads),* }
            }

            fn forward<T: Element>(self, src: &[T], l: &Layout) -> Vec<T> {
                match self {
                    $(UnaryOp::$variant { $($param),* } => {
                        $(let $param = $param.0;)*
                        over_elements!(map src, l, |$x: T| $forward $(, |$xs| $block)?)
                    })*
                }
            }

            /// The op on each element of `xs`, in place (an affine op's
            /// activation, on the buffer its product wrote; a compiled
            /// kernel's group of lanes): per op, a loop of its element
            /// function (or its block form) alone, at the CPU's vector width.
            pub(crate) fn forward_in_place<T: Element>(self, xs: &mut [T]) {
                match self {
                    $(UnaryOp::$variant { $($param),* } => {
                        $(let $param = $param.0;)*
                        crate::kernels::wide(
                            #[inline(always)]
                            || over_elements!(update xs, |$x: T| $forward $(, |$xs| $block)?),
                        )
                    })*
                }
            }

            /// The op on one element (what compiled code calls for the ops
            /// it does not lower to instructions). Inlined: a caller that
            /// names the op gets its element function alone, which may
            /// vectorize.
            #[inline(always)]
            pub(crate) fn apply<T: Element>(self, element: T) -> T {
                match self {
                    $(UnaryOp::$variant { $($param),* } => {
                        $(let $param = $param.0;)*
                        let $x: T = element;
                        $forward
                    })*
                }
            }

            /// `g · f'(v)` on raw buffers: the fused first-order VJP.
            #[allow(unused_variables)]
            fn fused_vjp<T: Element>(self, v: &[T], lv: &Layout, g: &[T], lg: &Layout) -> Vec<T> {
                match self {
                    $(UnaryOp::$variant { $($param),* } => {
                        $(let $param = $param.0;)*
                        zip(v, lv, g, lg, |$v: T, g: T| match $partial {
                            Const(c) => g * T::of(c),
                            Of(d) => g * d,
                        })
                    })*
                }
            }

            /// `g · f'(v)` on one element.
            #[allow(unused_variables)]
            #[inline(always)]
            fn fused_vjp_element<T: Element>(self, v: T, g: T) -> T {
                match self {
                    $(UnaryOp::$variant { $($param),* } => {
                        $(let $param = $param.0;)*
                        let $v = v;
                        match $partial {
                            Const(c) => g * T::of(c),
                            Of(d) => g * d,
                        }
                    })*
                }
            }

            /// `f'(v)`, written against any [`Value`]: on tensors it is
            /// the recorded rule (differentiable again).
            #[allow(unused_variables)]
            pub(crate) fn partial_of<N: Value>(self, operand: &N) -> Partial<N> {
                match self {
                    $(UnaryOp::$variant { $($param),* } => {
                        $(let $param = $param.0;)*
                        let $v: N = operand.clone();
                        $partial
                    })*
                }
            }

            /// The ops without parameters (the functions of one tensor).
            pub(crate) fn parameterless() -> Vec<UnaryOp> {
                let mut ops = Vec::new();
                $(
                    let params: &[&str] = &[$(stringify!($param)),*];
                    if params.is_empty() {
                        ops.push(UnaryOp::$variant { $($param: Param(0.0)),* });
                    }
                )*
                ops
            }
        }

        impl Tensor {
            $(
                $(#[$doc])*
                /// Panics for an integer or bool tensor (see the `try_` form).
                ///
                /// Elementwise; its derivative, by reverse mode, against
                /// central differences:
                #[doc = concat!(
                    "```\n",
                    "use chainrule::{func, Tensor};\n",
                    $("let ", stringify!($param), " = 0.5;\n",)*
                    "let x = Tensor::from_vec(vec![0.25f64, 0.75], &[2]);\n",
                    "let f = |x: &Tensor| x.", stringify!($method), "(", $(stringify!($param), ", ",)* ");\n",
                    "assert_eq!(f(&x).shape(), x.shape());\n",
                    "let dx = func::grad(|x: &Tensor| f(x).sum(), &x).unwrap();\n",
                    "let h = 1e-6;\n",
                    "let fd = (f(&x.add_scalar(h)).sum().item() - f(&x.add_scalar(-h)).sum().item()) / (2.0 * h);\n",
                    "assert!((dx.sum().item() - fd).abs() < 1e-6);\n",
                    "```"
                )]
                #[track_caller]
                pub fn $method(&self $(, $param: f64)*) -> Tensor {
                    crate::error::or_panic(self.$try_method($($param),*))
                }

                /// The op, or an error for an integer or bool tensor.
                ///
                #[doc = concat!(
                    "```\n",
                    "use chainrule::Tensor;\n",
                    $("let ", stringify!($param), " = 0.5;\n",)*
                    "let x = Tensor::from_vec(vec![0.25f64, 0.75], &[2]);\n",
                    "let y = x.", stringify!($try_method), "(", $(stringify!($param), ", ",)* ").unwrap();\n",
                    "assert_eq!(y.to_vec::<f64>(), x.", stringify!($method), "(", $(stringify!($param), ", ",)* ").to_vec::<f64>());\n",
                    "```"
                )]
                pub fn $try_method(&self $(, $param: f64)*) -> Result<Tensor> {
                    bind(Prim::Unary(UnaryOp::$variant { $($param: Param($param)),* }), &[self])
                }
            )*
        }
    };
}

unary_ops! {
    /// `-x`. Also `-&x`.
    Neg {} => "neg", fn neg / try_neg, f: |x| -x, Input: |x| Const(-1.0);
    Exp {} => "exp", fn exp / try_exp, f: |x| x.exp_vectorizable(), Output: |y| Of(y),
        block: |xs| Element::exp_block(xs);
    /// Natural logarithm.
    Log {} => "log", fn log / try_log, f: |x| x.ln(), Input: |x| Of(x.recip());
    Sin {} => "sin", fn sin / try_sin, f: |x| x.sin(), Input: |x| Of(x.cos());
    Cos {} => "cos", fn cos / try_cos, f: |x| x.cos(), Input: |x| Of(x.sin().scale(-1.0));
    Tan {} => "tan", fn tan / try_tan, f: |x| x.tan(), Output: |y| Of(y.square().shift(1.0));
    Tanh {} => "tanh", fn tanh / try_tanh, f: |x| x.tanh_vectorizable(), Output: |y| Of(y.square().scale(-1.0).shift(1.0));
    Sqrt {} => "sqrt", fn sqrt / try_sqrt, f: |x| x.sqrt(), Output: |y| Of(y.recip().scale(0.5));
    /// `1 / √x`.
    Rsqrt {} => "rsqrt", fn rsqrt / try_rsqrt, f: |x| x.sqrt().recip(), Output: |y| Of(y.square().times(&y).scale(-0.5));
    /// `1 / x`.
    Reciprocal {} => "reciprocal", fn reciprocal / try_reciprocal, f: |x| x.recip(), Output: |y| Of(y.square().scale(-1.0));
    /// `x²`.
    Square {} => "square", fn square / try_square, f: |x| x * x, Input: |x| Of(x.scale(2.0));
    /// `|x|`; its derivative at 0 is taken as 0.
    Abs {} => "abs", fn abs / try_abs, f: |x| x.abs(), Input: |x| Of(x.sign());
    /// `1 / (1 + e^{-x})`, computed without overflow.
    Sigmoid {} => "sigmoid", fn sigmoid / try_sigmoid, f: |x| crate::kernels::elementwise::sigmoid(x),
        Output: |y| Of(y.times(&y.scale(-1.0).shift(1.0)));
    /// `ln(1 + eˣ)`, computed without overflow.
    Softplus {} => "softplus", fn softplus / try_softplus,
        f: |x| x.max(T::zero()) + (-x.abs()).exp().ln_1p(),
        Input: |x| Of(x.sigmoid());
    /// `max(x, 0)`; NaN passes through, and the derivative at 0 is taken as 0.
    Relu {} => "relu", fn relu / try_relu,
        f: |x| if x > T::zero() || x.is_nan() { x } else { T::zero() },
        Input: |x| Of(x.positive());
    /// GELU, tanh form (GPT-2's, PyTorch's `approximate="tanh"`):
    /// `x/2 · (1 + tanh(√(2/π)(x + 0.044715 x³)))`.
    GeluTanh {} => "gelu_tanh", fn gelu_tanh / try_gelu_tanh,
        f: |x| {
            let u = T::of(GELU_C) * (x + T::of(GELU_A) * x * x * x);
            T::of(0.5) * x * (T::one() + u.tanh_vectorizable())
        },
        Input: |x| Of(gelu_tanh_derivative(&x));
    /// `ln(1 + x)`, accurate near 0.
    Log1p {} => "log1p", fn log1p / try_log1p, f: |x| x.ln_1p(), Input: |x| Of(x.shift(1.0).recip());
    /// `eˣ − 1`, accurate near 0.
    Expm1 {} => "expm1", fn expm1 / try_expm1, f: |x| x.exp_m1(), Output: |y| Of(y.shift(1.0));
    /// The error function.
    Erf {} => "erf", fn erf / try_erf, f: |x| x.erf(),
        Input: |x| Of(x.square().scale(-1.0).exp().scale(std::f64::consts::FRAC_2_SQRT_PI));
    /// `x^p` for a constant `p` (see [`Tensor::pow`] for a tensor exponent).
    /// The derivative of `x⁰` is 0, even at 0 (as PyTorch).
    Powf { p } => "powf", fn powf / try_powf, f: |x| x.powf(T::of(p)),
        Input: |x| if p == 0.0 { Const(0.0) } else { Of(x.pow_const(p - 1.0).scale(p)) };
    /// `c · x`.
    Scale { c } => "mul_scalar", fn mul_scalar / try_mul_scalar, f: |x| x * T::of(c), Input: |x| Const(c);
    /// `x + c`.
    Shift { c } => "add_scalar", fn add_scalar / try_add_scalar, f: |x| x + T::of(c), Input: |x| Const(1.0);
    /// `min(max(x, lo), hi)`; NaN passes through. The derivative is 1 where
    /// `lo ≤ x ≤ hi` (as PyTorch), else 0.
    Clamp { lo, hi } => "clamp", fn clamp / try_clamp,
        f: |x| {
            let x = if x >= T::of(lo) || x.is_nan() { x } else { T::of(lo) };
            if x <= T::of(hi) || x.is_nan() { x } else { T::of(hi) }
        },
        Input: |x| Of(x.within(lo, hi));
    /// `-1`, `0` or `1` per element: no derivative flows through it.
    Sign {} => "sign", fn sign / try_sign, f: |x| crate::kernels::elementwise::sign(x), Nothing: |x| Const(0.0);
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // √(2/π)
const GELU_A: f64 = 0.044715;

/// `d/dx [x (1 + t) / 2] = (1 + t) / 2 + x (1 − t²) u' / 2`, with
/// `u = c (x + a x³)`, `t = tanh(u)`.
#[inline(always)]
fn gelu_tanh_derivative<N: Value>(x: &N) -> N {
    let x2 = x.square();
    let t = x.plus(&x2.times(x).scale(GELU_A)).scale(GELU_C).tanh();
    let du = x2.scale(3.0 * GELU_A).shift(1.0).scale(GELU_C);
    let slope = t.square().scale(-1.0).shift(1.0).times(&du).times(x);
    t.shift(1.0).plus(&slope).scale(0.5)
}

impl UnaryOp {
    /// Whether a derivative flows through the op.
    pub(crate) fn differentiable(self) -> bool {
        self.reads() != Reads::Nothing
    }

    /// Rules that read the output (which the tape then saves).
    pub(crate) fn saves_output(self) -> bool {
        self.reads() == Reads::Output
    }

    /// The value the derivative reads.
    fn operand<'a>(self, x: &'a Tensor, y: Option<&'a Tensor>) -> Option<&'a Tensor> {
        if self.saves_output() {
            y
        } else {
            Some(x)
        }
    }

    /// `g · f'`: one fused kernel when nothing needs to see it (no mode
    /// records or carries anything for these tensors), else recorded ops.
    /// `y` is the output when the caller has it (`None`: recomputed).
    pub(crate) fn vjp(self, x: &Tensor, y: Option<&Tensor>, g: &Tensor) -> Tensor {
        let recomputed;
        let v = match self.operand(x, y) {
            Some(v) => v,
            None => {
                recomputed = unary(x, self);
                &recomputed
            }
        };
        if v.shape() == g.shape() && super::quiet(&[v, g]) {
            if g.ndim() == 0 {
                return with_dtype!(g.dtype(), T => Tensor::from_element(
                    self.fused_vjp_element(v.element::<T>(), g.element::<T>())));
            }
            return with_dtype!(g.dtype(), T => Tensor::from_buffer(
                self.fused_vjp(v.buffer::<T>(), v.layout(), g.buffer::<T>(), g.layout()),
                g.shape()));
        }
        match self.partial_of(v) {
            Const(1.0) => g.clone(),
            Const(c) => g.mul_scalar(c),
            Of(d) => g * &d,
        }
    }

    /// The VJP on one element: `g · f'(v)`, `v` being the input `x` or the
    /// output `y` (recomputed when absent), as the tensor rule reads it.
    pub(crate) fn vjp_element<T: Element>(self, x: T, y: Option<T>, g: T) -> T {
        let v = match self.reads() {
            Reads::Output => y.unwrap_or_else(|| self.apply(x)),
            Reads::Input | Reads::Nothing => x,
        };
        self.fused_vjp_element(v, g)
    }

    /// The JVP: `ẏ = f'(x) ẋ`, the same product as the VJP (the Jacobian is
    /// diagonal).
    pub(crate) fn jvp(self, x: &Tensor, y: &Tensor, t: &Tensor) -> Tensor {
        self.vjp(x, Some(y), t)
    }

    /// The op on one value of `dtype` (rounded as that dtype), through the
    /// same kernel: what a compiled graph uses for 0-d values.
    pub(crate) fn eval_scalar(self, x: f64, dtype: crate::DType) -> f64 {
        with_dtype!(dtype, T => self.forward(&[T::of(x)], &Layout::contiguous(&[]))[0].f64())
    }

    /// The printed form: the name and any parameters.
    pub(crate) fn describe(self) -> String {
        let params = self.params();
        if params.is_empty() {
            return self.name().to_string();
        }
        let p: Vec<String> = params.iter().map(|p| p.to_string()).collect();
        format!("{} {}", self.name(), p.join(" "))
    }
}

/// The kernel: the op on every element of `x` (a fresh row-major buffer).
pub(crate) fn forward(x: &Tensor, op: UnaryOp) -> Tensor {
    if x.ndim() == 0 {
        return with_dtype!(x.dtype(), T => Tensor::from_element(op.apply(x.element::<T>())));
    }
    if x.layout().contiguous_range().is_none() {
        // A broadcast view can be far larger than its buffer.
        crate::error::or_panic(crate::limits::check_alloc(op.name(), x.shape(), x.dtype()));
    }
    with_dtype!(x.dtype(), T => Tensor::from_buffer(op.forward(x.buffer::<T>(), x.layout()), x.shape()))
}

pub(crate) fn unary(x: &Tensor, op: UnaryOp) -> Tensor {
    crate::error::or_panic(bind(Prim::Unary(op), &[x]))
}
