//! Operator overloading: `+ - * /` and unary `-` for tensors (owned or
//! borrowed) and `f64` scalars. They panic on shape or dtype mismatch, like
//! the named methods; use `try_add` & co. for a `Result`.

use crate::tensor::Tensor;
use std::ops::{Add, Div, Mul, Neg, Sub};

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

/// `tensor op scalar` and `scalar op tensor`, each through one unary primitive.
macro_rules! tensor_scalar {
    ($trait:ident, $method:ident, |$t:ident, $c:ident| $tensor_first:expr, |$t2:ident, $c2:ident| $scalar_first:expr) => {
        impl $trait<f64> for &Tensor {
            type Output = Tensor;
            fn $method(self, $c: f64) -> Tensor {
                let $t = self;
                $tensor_first
            }
        }
        impl $trait<f64> for Tensor {
            type Output = Tensor;
            fn $method(self, $c: f64) -> Tensor {
                let $t = &self;
                $tensor_first
            }
        }
        impl $trait<&Tensor> for f64 {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                let ($t2, $c2) = (rhs, self);
                $scalar_first
            }
        }
        impl $trait<Tensor> for f64 {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                let ($t2, $c2) = (&rhs, self);
                $scalar_first
            }
        }
    };
}

tensor_scalar!(Add, add, |t, c| t.add_scalar(c), |t, c| t.add_scalar(c));
tensor_scalar!(Sub, sub, |t, c| t.add_scalar(-c), |t, c| t
    .neg()
    .add_scalar(c));
tensor_scalar!(Mul, mul, |t, c| t.mul_scalar(c), |t, c| t.mul_scalar(c));
tensor_scalar!(Div, div, |t, c| t.mul_scalar(1.0 / c), |t, c| t
    .powf(-1.0)
    .mul_scalar(c));

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
