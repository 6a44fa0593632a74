//! What a derivative formula is written against. An elementwise op's partial
//! derivatives are written once, generic over [`Value`]: on one element they
//! are the fused kernel of a first-order backward pass; on tensors they are
//! the recorded rule, differentiable again (higher order, `create_graph`).

use super::binary::{mask_of, CompareOp};
use crate::dtype::Element;
use crate::tensor::Tensor;

/// A partial derivative: a constant, or a value computed from the op's
/// input or output.
#[derive(Clone, Debug, PartialEq)]
pub enum Partial<N> {
    /// The same constant at every element.
    Const(f64),
    /// A value computed from the op's input or output.
    Of(N),
}

/// The operations partial derivatives are written with: implemented for
/// `f32`, `f64` and [`Tensor`] here, and by any front end that wants the
/// library's derivatives in its own terms (the command's expressions print
/// them as formulas). On tensors, the masks (`positive`, `zero_mask`,
/// `less_than`…) are constants: no derivative flows through them.
pub trait Value: Clone {
    /// `self + o`.
    fn plus(&self, o: &Self) -> Self;
    /// `self * o`.
    fn times(&self, o: &Self) -> Self;
    /// `self / o`.
    fn over(&self, o: &Self) -> Self;
    /// `self * c` for a constant `c`.
    fn scale(&self, c: f64) -> Self;
    /// `self + c` for a constant `c`.
    fn shift(&self, c: f64) -> Self;
    /// `1 / self`.
    fn recip(&self) -> Self;
    /// `self²`.
    fn square(&self) -> Self;
    /// `e^self`.
    fn exp(&self) -> Self;
    /// `sin(self)`.
    fn sin(&self) -> Self;
    /// `cos(self)`.
    fn cos(&self) -> Self;
    /// The natural logarithm of `self`.
    fn ln(&self) -> Self;
    /// `1 / (1 + e^{-self})`.
    fn sigmoid(&self) -> Self;
    /// `tanh(self)`.
    fn tanh(&self) -> Self;
    /// `self^e`.
    fn power(&self, e: &Self) -> Self;
    /// `x^p` for a constant `p`.
    fn pow_const(&self, p: f64) -> Self;
    /// `-1`, `0` or `1`.
    fn sign(&self) -> Self;
    /// `1` where `> 0`, else `0` (NaN gives 0).
    fn positive(&self) -> Self;
    /// `1` where `lo ≤ x ≤ hi`, else `0`.
    fn within(&self, lo: f64, hi: f64) -> Self;
    /// `1` where `== 0`, else `0`.
    fn zero_mask(&self) -> Self;
    /// `1` where `self < o`, else `0`.
    fn less_than(&self, o: &Self) -> Self;
    /// `1` where `self == o`, else `0`.
    fn equal_to(&self, o: &Self) -> Self;
    /// `if_true` where `self ≠ 0`, else `if_false`.
    fn select(&self, if_true: &Self, if_false: &Self) -> Self;
    /// The constant `c`, of this value's type (a 0-d tensor for tensors).
    fn constant(&self, c: f64) -> Self;
}

impl<T: Element> Value for T {
    fn plus(&self, o: &Self) -> Self {
        *self + *o
    }
    fn times(&self, o: &Self) -> Self {
        *self * *o
    }
    fn over(&self, o: &Self) -> Self {
        *self / *o
    }
    fn scale(&self, c: f64) -> Self {
        *self * T::of(c)
    }
    fn shift(&self, c: f64) -> Self {
        *self + T::of(c)
    }
    fn recip(&self) -> Self {
        T::one() / *self
    }
    fn square(&self) -> Self {
        *self * *self
    }
    fn exp(&self) -> Self {
        num_traits::Float::exp(*self)
    }
    fn sin(&self) -> Self {
        num_traits::Float::sin(*self)
    }
    fn cos(&self) -> Self {
        num_traits::Float::cos(*self)
    }
    fn ln(&self) -> Self {
        num_traits::Float::ln(*self)
    }
    fn tanh(&self) -> Self {
        self.tanh_vectorizable()
    }
    fn sigmoid(&self) -> Self {
        crate::kernels::elementwise::sigmoid(*self)
    }
    fn power(&self, e: &Self) -> Self {
        num_traits::Float::powf(*self, *e)
    }
    fn pow_const(&self, p: f64) -> Self {
        num_traits::Float::powf(*self, T::of(p))
    }
    fn sign(&self) -> Self {
        crate::kernels::elementwise::sign(*self)
    }
    fn positive(&self) -> Self {
        mask(*self > T::zero())
    }
    fn within(&self, lo: f64, hi: f64) -> Self {
        mask(*self >= T::of(lo) && *self <= T::of(hi))
    }
    fn zero_mask(&self) -> Self {
        mask(*self == T::zero())
    }
    fn less_than(&self, o: &Self) -> Self {
        mask(*self < *o)
    }
    fn equal_to(&self, o: &Self) -> Self {
        mask(*self == *o)
    }
    fn select(&self, if_true: &Self, if_false: &Self) -> Self {
        if *self != T::zero() {
            *if_true
        } else {
            *if_false
        }
    }
    fn constant(&self, c: f64) -> Self {
        T::of(c)
    }
}

fn mask<T: Element>(b: bool) -> T {
    if b {
        T::one()
    } else {
        T::zero()
    }
}

impl Value for Tensor {
    fn plus(&self, o: &Self) -> Self {
        Tensor::add(self, o)
    }
    fn times(&self, o: &Self) -> Self {
        Tensor::mul(self, o)
    }
    fn over(&self, o: &Self) -> Self {
        Tensor::div(self, o)
    }
    fn scale(&self, c: f64) -> Self {
        self.mul_scalar(c)
    }
    fn shift(&self, c: f64) -> Self {
        self.add_scalar(c)
    }
    fn recip(&self) -> Self {
        self.reciprocal()
    }
    fn square(&self) -> Self {
        Tensor::square(self)
    }
    fn exp(&self) -> Self {
        Tensor::exp(self)
    }
    fn sin(&self) -> Self {
        Tensor::sin(self)
    }
    fn cos(&self) -> Self {
        Tensor::cos(self)
    }
    fn ln(&self) -> Self {
        self.log()
    }
    fn tanh(&self) -> Self {
        Tensor::tanh(self)
    }
    fn sigmoid(&self) -> Self {
        Tensor::sigmoid(self)
    }
    fn power(&self, e: &Self) -> Self {
        Tensor::pow(self, e)
    }
    fn pow_const(&self, p: f64) -> Self {
        self.powf(p)
    }
    fn sign(&self) -> Self {
        Tensor::sign(self)
    }
    fn positive(&self) -> Self {
        mask_of(self, &self.constant(0.0), CompareOp::Gt)
    }
    fn within(&self, lo: f64, hi: f64) -> Self {
        let x = self.detach();
        mask_of(&x, &x.constant(lo), CompareOp::Ge) * mask_of(&x, &x.constant(hi), CompareOp::Le)
    }
    fn zero_mask(&self) -> Self {
        mask_of(self, &self.constant(0.0), CompareOp::Eq)
    }
    fn less_than(&self, o: &Self) -> Self {
        mask_of(self, o, CompareOp::Lt)
    }
    fn equal_to(&self, o: &Self) -> Self {
        mask_of(self, o, CompareOp::Eq)
    }
    fn select(&self, if_true: &Self, if_false: &Self) -> Self {
        super::index::select(self, if_true, if_false)
    }
    fn constant(&self, c: f64) -> Self {
        Tensor::full(&[], c, self.dtype())
    }
}
