//! Operator overloading: `+ - * /` and unary `-` for tensors (owned or
//! borrowed) and scalars (`f32`, `f64`, `i32`, `i64` on the right; `f64`,
//! `i64` on the left); `& | ^ !` for
//! `bool` tensors. They panic on shape or dtype mismatch, like
//! the named methods; use `try_add` & co. for a `Result`.

use crate::dtype::Scalar;
use crate::tensor::Tensor;
use std::ops::{Add, BitAnd, BitOr, BitXor, Div, Mul, Neg, Not, Sub};

macro_rules! tensor_tensor {
    ($trait:ident, $method:ident, $call:ident) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$call(self, rhs)
            }
        }
        impl $trait<Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$call(self, &rhs)
            }
        }
        impl $trait<&Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$call(&self, rhs)
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$call(&self, &rhs)
            }
        }
    };
}

tensor_tensor!(Add, add, add);
tensor_tensor!(Sub, sub, sub);
tensor_tensor!(Mul, mul, mul);
tensor_tensor!(Div, div, div);

/// The scalar types a tensor takes on the right of `+ - * /`: `f32`,
/// `f64`, `i32`, `i64`. One generic impl per operator (as ndarray's
/// `ScalarOperand`), so `x * 0.5 + &y` still infers: the product is a
/// `Tensor` whatever the literal's type turns out to be.
pub trait ScalarOperand: Scalar {}
impl ScalarOperand for f32 {}
impl ScalarOperand for f64 {}
impl ScalarOperand for i32 {}
impl ScalarOperand for i64 {}

/// `tensor op scalar` for every [`ScalarOperand`], and `scalar op tensor`
/// for `f64` and `i64` (a scalar on the left is the impl's `Self`, so a
/// second float or integer type there would leave a literal's type open).
/// On a float tensor either goes through one unary primitive (as `f64`);
/// on an integer tensor an integer becomes a 0-d tensor of its dtype; any
/// other pairing (a float with an integer tensor, any number with a bool
/// one) is a dtype mismatch, as between tensors.
macro_rules! tensor_scalar {
    ($trait:ident, $method:ident, $call:ident, |$t:ident, $c:ident| $tensor_first:expr, |$t2:ident, $c2:ident| $scalar_first:expr) => {
        impl<S: ScalarOperand> $trait<S> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, c: S) -> Tensor {
                if self.dtype().is_float() {
                    let ($t, $c) = (self, c.to_f64());
                    return $tensor_first;
                }
                with_exact_scalar(self, c, false, Tensor::$call)
            }
        }
        impl<S: ScalarOperand> $trait<S> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, c: S) -> Tensor {
                $trait::$method(&self, c)
            }
        }
        tensor_scalar!(@left $trait, $method, $call, |$t2, $c2| $scalar_first; f64, i64);
    };
    (@left $trait:ident, $method:ident, $call:ident, |$t2:ident, $c2:ident| $scalar_first:expr; $($s:ty),*) => {$(
        impl $trait<&Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                if rhs.dtype().is_float() {
                    let ($t2, $c2) = (rhs, self as f64);
                    return $scalar_first;
                }
                with_exact_scalar(rhs, self, true, Tensor::$call)
            }
        }
        impl $trait<Tensor> for $s {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                $trait::$method(self, &rhs)
            }
        }
    )*};
}

/// `t op c` (or `c op t` when `scalar_first`) for a tensor that is not a
/// float: the binary op with `c` as a 0-d tensor.
#[track_caller]
fn with_exact_scalar<S: Scalar>(
    t: &Tensor,
    c: S,
    scalar_first: bool,
    binary: fn(&Tensor, &Tensor) -> Tensor,
) -> Tensor {
    let c = match S::DTYPE.is_int() && t.dtype().is_int() {
        true => Tensor::scalar(c.to_i64()).to_dtype(t.dtype()),
        false => Tensor::scalar(c),
    };
    match scalar_first {
        true => binary(&c, t),
        false => binary(t, &c),
    }
}

tensor_scalar!(Add, add, add, |t, c| t.add_scalar(c), |t, c| t
    .add_scalar(c));
tensor_scalar!(Sub, sub, sub, |t, c| t.add_scalar(-c), |t, c| t
    .neg()
    .add_scalar(c));
tensor_scalar!(Mul, mul, mul, |t, c| t.mul_scalar(c), |t, c| t
    .mul_scalar(c));
tensor_scalar!(Div, div, div, |t, c| t.mul_scalar(1.0 / c), |t, c| t
    .powf(-1.0)
    .mul_scalar(c));

// `&`, `|`, `^` and `!` on `bool` tensors: `logical_and` & co.
tensor_tensor!(BitAnd, bitand, logical_and);
tensor_tensor!(BitOr, bitor, logical_or);
tensor_tensor!(BitXor, bitxor, logical_xor);

impl Not for &Tensor {
    type Output = Tensor;
    #[track_caller]
    fn not(self) -> Tensor {
        self.logical_not()
    }
}

impl Not for Tensor {
    type Output = Tensor;
    #[track_caller]
    fn not(self) -> Tensor {
        self.logical_not()
    }
}

impl Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
