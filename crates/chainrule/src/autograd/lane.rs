//! Backward's scalar lane: gradients of 0-d values wait in the frontier as
//! numbers, so passing one on makes no tensor handle. The rules of
//! elementwise ops on 0-d values run on numbers in a segment's sweep (see
//! `engine/sweep.rs`), where nothing could tell the difference: no
//! gradient graph is recorded (`create_graph` off) and no level is open.
//! The arithmetic is the tensor rules' own (the same element functions, in
//! the same order), so the gradients are the same bits (tested in
//! `tests/numbers.rs`).

use crate::storage::StorageElement;
use crate::tensor::Tensor;
use crate::DType;

/// A gradient in the frontier: a tensor, or the number of a 0-d one.
#[derive(Clone)]
pub(crate) enum Grad {
    Tensor(Tensor),
    F32(f32),
    F64(f64),
}

/// The one number of a plain 0-d tensor of element type `T`.
fn number<T: StorageElement>(t: &Tensor) -> Option<T> {
    (t.ndim() == 0 && t.dtype() == T::DTYPE && !t.has_layer()).then(|| t.element::<T>())
}

/// The number of a gradient on numbers, or of a plain 0-d float tensor
/// (`f64`, exact for `f32`).
pub(crate) fn number_of(g: &Grad) -> Option<f64> {
    match g {
        Grad::F32(v) => Some(*v as f64),
        Grad::F64(v) => Some(*v),
        Grad::Tensor(t) => match t.dtype() {
            DType::F32 => number::<f32>(t).map(f64::from),
            DType::F64 => number::<f64>(t),
            _ => None,
        },
    }
}

impl Grad {
    pub fn into_tensor(self) -> Tensor {
        match self {
            Grad::Tensor(t) => t,
            Grad::F32(v) => Tensor::from_element(v),
            Grad::F64(v) => Tensor::from_element(v),
        }
    }

    /// `self + other`, as numbers when both are.
    pub fn add(self, other: Grad) -> Grad {
        match (self, other) {
            (Grad::F32(a), Grad::F32(b)) => Grad::F32(a + b),
            (Grad::F64(a), Grad::F64(b)) => Grad::F64(a + b),
            (a, b) => Grad::Tensor(crate::ops::binary::add_into(
                a.into_tensor(),
                &b.into_tensor(),
            )),
        }
    }
}
