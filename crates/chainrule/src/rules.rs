//! The library's elementwise ops as data: each row's name, its function
//! and its partial derivatives, written once against [`Value`]. The library
//! runs them on numbers (fused kernels) and tensors (recorded rules); a
//! front end can run them on its own terms. The `chainrule` command builds
//! its expression language from these rows: a new elementwise op reaches
//! its evaluation, its symbolic derivatives and its explanations by its row.
//!
//! ```
//! use chainrule::rules::{Elementwise, Partial};
//! let tanh = Elementwise::named("tanh").unwrap();
//! // d tanh(x)/dx = 1 − tanh(x)², read at the output y = tanh(x)
//! let (x, y) = (0.5f64, 0.5f64.tanh());
//! assert_eq!(tanh.partial(&x, &y), Some(Partial::Of(1.0 - y * y)));
//! ```

pub use crate::ops::value::{Partial, Value};

use crate::error::Result;
use crate::ops::{BinaryOp, UnaryOp};
use crate::tensor::Tensor;

/// An elementwise function of one tensor (a parameterless unary primitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elementwise(UnaryOp);

impl Elementwise {
    /// Every one, in the library's table order.
    pub fn all() -> Vec<Elementwise> {
        UnaryOp::parameterless()
            .into_iter()
            .map(Elementwise)
            .collect()
    }

    /// The one whose name is `name` (`"tanh"`, `"exp"`…), if any.
    pub fn named(name: &str) -> Option<Elementwise> {
        Self::all().into_iter().find(|e| e.name() == name)
    }

    /// Its name, as the library's table gives it (`"tanh"`).
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The op on a tensor (recorded like any other op).
    pub fn apply(self, x: &Tensor) -> Tensor {
        crate::ops::unary::unary(x, self.0)
    }

    /// `∂f/∂x` at `x`, where `y = f(x)` (rows read one or the other), or
    /// `None` where no derivative flows (`sign`).
    pub fn partial<N: Value>(self, x: &N, y: &N) -> Option<Partial<N>> {
        if !self.0.differentiable() {
            return None;
        }
        Some(self.0.partial_of(if self.0.saves_output() { y } else { x }))
    }
}

/// An elementwise function of two tensors, broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementwiseBinary(BinaryOp);

impl ElementwiseBinary {
    /// Every one, in the library's table order.
    pub fn all() -> Vec<ElementwiseBinary> {
        BinaryOp::ALL
            .iter()
            .copied()
            .map(ElementwiseBinary)
            .collect()
    }

    /// The one whose name is `name` (`"add"`, `"pow"`…), if any.
    pub fn named(name: &str) -> Option<ElementwiseBinary> {
        Self::all().into_iter().find(|e| e.name() == name)
    }

    /// Its name, as the library's table gives it (`"mul"`).
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The op on two tensors, or the error it gives (shapes, dtypes).
    pub fn apply(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        crate::ops::binary::binary(a, b, self.0)
    }

    /// `(∂f/∂a, ∂f/∂b)` at `a`, `b`, where `y = f(a, b)`.
    pub fn partials<N: Value>(self, a: &N, b: &N, y: &N) -> (Partial<N>, Partial<N>) {
        self.0.partials(a, b, y)
    }
}
