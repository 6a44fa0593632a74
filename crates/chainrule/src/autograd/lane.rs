//! Backward's scalar lane: the VJP rules of elementwise ops on 0-d values
//! run on the numbers themselves, and their gradients wait in the frontier
//! as numbers, so a rule makes no tensor handle. A long chain of scalar ops
//! (the `chain` workload, the command's expressions) is all such rules.
//!
//! Taken only where nothing could tell the difference: no gradient graph is
//! recorded (`create_graph` off), no level is open (no tangent, batch or
//! trace to carry), and the inputs carry no layers. The arithmetic is the
//! tensor rules' own (the same element functions, in the same order), so the
//! gradients are the same bits (tested in `tests/numbers.rs`).

use super::node::{OpNode, Saved};
use crate::error::{Error, Result};
use crate::storage::StorageElement;
use crate::tensor::Tensor;
use crate::DType;
use smallvec::{smallvec, SmallVec};

/// A gradient in the frontier: a tensor, or the number of a 0-d one.
#[derive(Clone)]
pub(crate) enum Grad {
    Tensor(Tensor),
    F32(f32),
    F64(f64),
}

/// The element types the lane runs in.
trait LaneElement: crate::storage::FloatElement {
    fn grad(self) -> Grad;
    fn of_grad(g: &Grad) -> Option<Self>;
}

macro_rules! lane_element {
    ($t:ty, $variant:ident) => {
        impl LaneElement for $t {
            fn grad(self) -> Grad {
                Grad::$variant(self)
            }
            fn of_grad(g: &Grad) -> Option<$t> {
                match g {
                    Grad::$variant(v) => Some(*v),
                    Grad::Tensor(t) => number(t),
                    _ => None,
                }
            }
        }
    };
}

lane_element!(f32, F32);
lane_element!(f64, F64);

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

    fn dtype(&self) -> DType {
        match self {
            Grad::Tensor(t) => t.dtype(),
            Grad::F32(_) => DType::F32,
            Grad::F64(_) => DType::F64,
        }
    }
}

/// The adjoints of `op`'s inputs (where `needs` says) from the output's
/// adjoint `g`, when the rule can run on numbers; `None` sends it to the
/// tensor rule. The caller has checked that no graph is recorded and no
/// level is open.
pub(crate) fn rule(
    op: &OpNode,
    g: &Grad,
    needs: &[bool],
    retain_graph: bool,
) -> Option<Result<SmallVec<[Option<Grad>; 2]>>> {
    if !op.prim.on_numbers() {
        return None;
    }
    match g.dtype() {
        DType::F32 => rule_in::<f32>(op, g, needs, retain_graph),
        DType::F64 => rule_in::<f64>(op, g, needs, retain_graph),
        _ => None,
    }
}

fn rule_in<T: LaneElement>(
    op: &OpNode,
    g: &Grad,
    needs: &[bool],
    retain_graph: bool,
) -> Option<Result<SmallVec<[Option<Grad>; 2]>>> {
    let g = T::of_grad(g)?;
    let mut saved_slot = op.saved.lock().unwrap();
    let Some(saved) = saved_slot.as_ref() else {
        return Some(Err(Error::GraphFreed { op: op.prim.name() }));
    };
    // Only ops recorded on numbers (see `Saved::Numbers`); any other goes
    // to the tensor rules.
    let Saved::Numbers { dtype, values } = saved else {
        return None;
    };
    if *dtype != T::DTYPE {
        return None;
    }
    let [x, b, y] = values.map(T::of);
    let y = op.prim.saves_output().then_some(y);
    let [ga, gb] = op.prim.vjp_numbers([x, b], y, g)?;
    let grads = match op.edges.len() {
        1 => smallvec![Some(ga.grad())],
        _ => smallvec![needs[0].then(|| ga.grad()), needs[1].then(|| gb.grad())],
    };
    if !retain_graph {
        *saved_slot = None;
    }
    Some(Ok(grads))
}
