//! In-place updates (`x += &y`, `x.sub_(&y)`…): a running statistic, a
//! counter, a loss summed over a loop. A leaf requiring a gradient is
//! refused, as PyTorch refuses it (the gradient is of its value as it was
//! made); a tensor computed in the graph is updated as `x = &x + &y` would
//! (recorded, so the derivative sees it). Tensors are values here: the
//! update writes into the buffer when nothing else holds it and nothing
//! records it, else gives this handle a new one; other handles never see
//! a change (PyTorch's views would).

use super::binary::{add_scaled_into, BinaryOp};
use crate::error::{or_panic, Error, Result};
use crate::tensor::Tensor;
use crate::DType;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// Declares each update: `method / try_method, Trait::trait_method, BinaryOp, |a, b| new value`.
macro_rules! in_place {
    ($( $(#[$doc:meta])* $method:ident / $try_method:ident, $trait:ident :: $trait_method:ident, $op:ident, |$a:ident, $b:ident| $new:expr; )*) => {
        impl Tensor {
            $(
                $(#[$doc])*
                ///
                /// A leaf requiring a gradient is refused:
                #[doc = concat!(
                    "```\n",
                    "use chainrule::Tensor;\n",
                    "let mut w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();\n",
                    "assert!(w.", stringify!($try_method), "(&Tensor::scalar(1.0f64)).is_err());\n",
                    "```"
                )]
                pub fn $try_method(&mut self, other: &Tensor) -> Result<()> {
                    updatable(stringify!($method), BinaryOp::$op, self, other)?;
                    // Owned, so that a buffer no other view shares is written in place.
                    let ($a, $b) = (std::mem::replace(self, Tensor::scalar(false)), other);
                    *self = $new;
                    Ok(())
                }

                /// Panicking form of the `try_` update.
                ///
                #[doc = concat!(
                    "```\n",
                    "use chainrule::Tensor;\n",
                    "let mut x = Tensor::from_vec(vec![4.0f64, 8.0], &[2]);\n",
                    "let before = x.clone();\n",
                    "x.", stringify!($method), "(&Tensor::scalar(2.0f64));\n",
                    "assert_eq!(x.shape(), &[2]);\n",
                    "assert_eq!(before.to_vec::<f64>(), [4.0, 8.0]); // other handles never change\n",
                    "```"
                )]
                #[track_caller]
                pub fn $method(&mut self, other: &Tensor) {
                    or_panic(self.$try_method(other))
                }
            )*
        }

        $(
            impl $trait<&Tensor> for Tensor {
                #[track_caller]
                fn $trait_method(&mut self, other: &Tensor) {
                    self.$method(other)
                }
            }
            impl $trait<Tensor> for Tensor {
                #[track_caller]
                fn $trait_method(&mut self, other: Tensor) {
                    self.$method(&other)
                }
            }
            impl $trait<f64> for Tensor {
                #[track_caller]
                fn $trait_method(&mut self, c: f64) {
                    // Of a float tensor's own dtype; an integer one refuses it.
                    let c = match self.dtype().is_float() {
                        true => Tensor::full(&[], c, self.dtype()),
                        false => Tensor::scalar(c),
                    };
                    self.$method(&c)
                }
            }
            impl $trait<i64> for Tensor {
                #[track_caller]
                fn $trait_method(&mut self, c: i64) {
                    let c = Tensor::scalar(c);
                    // An integer converts to any numeric dtype, as in `x * 2`.
                    let c = if self.dtype() == DType::Bool { c } else { c.to_dtype(self.dtype()) };
                    self.$method(&c)
                }
            }
        )*
    };
}

in_place! {
    /// `self += other` (broadcast into `self`'s shape), in place; refused
    /// for a tensor in the graph. Also `x += &y`, `x += 1.0`.
    add_ / try_add_, AddAssign::add_assign, Add, |a, b| match a.dtype().is_float() {
        true => add_scaled_into(a, 1.0, b),
        false => &a + b,
    };
    /// `self -= other`, in place. Also `x -= &y`.
    sub_ / try_sub_, SubAssign::sub_assign, Sub, |a, b| match a.dtype().is_float() {
        true => add_scaled_into(a, -1.0, b),
        false => &a - b,
    };
    /// `self *= other`, in place. Also `x *= &y`.
    mul_ / try_mul_, MulAssign::mul_assign, Mul, |a, b| &a * b;
    /// `self /= other`, in place. Also `x /= &y`.
    div_ / try_div_, DivAssign::div_assign, Div, |a, b| &a / b;
}

/// Whether `x` may be updated in place by `x op other`: not a leaf
/// requiring a gradient, of one dtype the op takes, keeping `x`'s shape.
/// Checked before anything changes, so a refused update leaves `x` as it was.
fn updatable(name: &'static str, op: BinaryOp, x: &Tensor, other: &Tensor) -> Result<()> {
    if x.is_leaf() {
        return Err(Error::invalid(
            name,
            "a leaf that requires a gradient cannot be updated in place (its gradient \
             is of the value it was made with); update its detached value, or write \
             `let y = &x + &z`",
        ));
    }
    op.out_dtype(super::same_dtype(name, x, other)?)?;
    let shape = super::binary::broadcast_shape(name, x.shape(), other.shape())?;
    if shape != x.shape() {
        return Err(Error::shapes_detail(
            name,
            x.shape(),
            other.shape(),
            "the result must keep the updated tensor's shape",
        ));
    }
    Ok(())
}
