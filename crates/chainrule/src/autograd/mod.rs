//! Reverse accumulation on the implicit graph (the note's "back-propagation").
//!
//! Shapes, and how the note's Jacobian products map onto the API: for a scalar
//! `z` and a tensor `w` of shape `[n]`, the note writes `∂z/∂w` as a row
//! `(1, n)`; chainrule stores it as a tensor of `w`'s shape `[n]`. The chain
//! rule `(1,n) = (1,k)(k,n)` is what each op's VJP rule computes: given the
//! adjoint of its output (the `(1,k)` row, stored in the output's shape) it
//! returns the adjoint of each input (the `(1,n)` row, stored in the input's
//! shape), without ever forming the `(k,n)` Jacobian. For a non-scalar output
//! `y` of shape `[m]`, `backward_with(grad = v)` computes `vᵀ ∂y/∂x`, one row
//! of the `(m,n)` Jacobian per unit vector `v`.

pub(crate) mod engine;
mod lane;
pub(crate) mod node;
mod segment;

pub use engine::{grad, grad_with, grad_with_stats, BackwardOptions, BackwardStats};

use crate::dtype::Element;
use crate::error::Result;
use crate::interp::Interpreter;
use crate::ops::Prim;
use crate::storage::with_dtype;
use crate::tensor::Tensor;
use node::{Link, Node, NodeKind, OpNode, Saved};
use segment::{DotEntry, Entry, OpEntry};
use smallvec::SmallVec;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

/// Whether ops on this thread are recorded for backward.
pub fn is_grad_enabled() -> bool {
    crate::interp::grad_enabled()
}

/// The tape: reverse mode's interpreter. It gives the result of an op on
/// tensors that carry nodes a node of its own (the op, edges to the inputs'
/// nodes, what the VJP rule reads), which is all `backward` needs.
pub(crate) struct Tape;

/// The one tape (it keeps no state: the graph lives in the tensors' nodes).
pub(crate) static TAPE: Tape = Tape;

/// The highest tape level below `ceiling` among the inputs' nodes.
pub(crate) fn tape_level(inputs: &[&Tensor], ceiling: u32) -> Option<u32> {
    inputs
        .iter()
        .filter_map(|t| node::under(t.link(), ceiling).map(|l| l.node.level))
        .max()
}

impl Interpreter for Tape {
    fn claims(&self, inputs: &[&Tensor]) -> bool {
        crate::interp::tape_level(inputs).is_some()
    }

    fn process(&self, prim: &Prim, inputs: &[&Tensor]) -> Result<Tensor> {
        match crate::interp::tape_level(inputs) {
            Some(level) => self.record(prim, inputs, level, !crate::interp::levels_open()),
            None => crate::interp::below_tape(prim, inputs),
        }
    }
}

impl Tape {
    /// Runs `prim` and records it at `level` (`alone`: no other level is
    /// open, so the kernel computes the value directly).
    pub(crate) fn record(
        &self,
        prim: &Prim,
        inputs: &[&Tensor],
        level: u32,
        alone: bool,
    ) -> Result<Tensor> {
        let out = if alone {
            prim.forward(inputs)?
        } else {
            // Below, the op is computed from values this level's nodes do
            // not concern (the levels under it unwrap them).
            crate::interp::below_tape_level(level, prim, inputs)?
        };
        if !prim.differentiable() {
            return Ok(out);
        }
        if alone {
            if let Some(link) = on_segment(prim, inputs, &out, level) {
                return Ok(out.with_node(link));
            }
        }
        Ok(attach_node(prim.clone(), inputs, out, level))
    }
}

/// A new handle on `x` whose node is an identity on `x`'s, at a fresh level
/// (above every level open now): a gradient taken here targets it alone,
/// differentiates through the levels open now, and an enclosing gradient
/// still flows through it to `x`.
pub(crate) fn track_at_fresh_level(x: &Tensor) -> Tensor {
    let kind = NodeKind::Op(OpNode {
        prim: Prim::identity(),
        edges: smallvec::smallvec![x.link().cloned()],
        saved: Mutex::new(Some(Saved {
            inputs: smallvec::smallvec![x.for_saving()],
            output: None,
        })),
    });
    let node = Node::new(kind, crate::interp::fresh_id(), x.link().cloned());
    x.relabeled(Link::of(node))
}

/// Records an elementwise op on plain 0-d float values, or an inner product
/// of two plain float vectors, with no level open on this thread's segment
/// (see [`segment`]): no node of its own. `None` for any other op.
fn on_segment(prim: &Prim, inputs: &[&Tensor], out: &Tensor, level: u32) -> Option<Link> {
    let dtype = out.dtype();
    if !dtype.is_float() || out.link().is_some() {
        return None;
    }
    let link = |j: usize| inputs.get(j).and_then(|t| node::under(t.link(), level + 1));
    let links = [link(0), link(1)];
    if let Some(op) = prim.number_op() {
        let values = numbers_of(op.saves_output(), inputs, out)?;
        return Some(segment::record(dtype, links, level, |inputs| {
            Entry::Op(OpEntry {
                op,
                dtype,
                inputs,
                values,
                freed: AtomicBool::new(false),
            })
        }));
    }
    let plain_vector = |t: &&Tensor| t.ndim() == 1 && !t.has_layer() && t.dtype() == dtype;
    if !prim.is_matmul() || !inputs.iter().all(plain_vector) {
        return None;
    }
    Some(segment::record(dtype, links, level, |at| {
        Entry::Dot(DotEntry::new(dtype, at, inputs[0], inputs[1]))
    }))
}

fn attach_node(prim: Prim, inputs: &[&Tensor], out: Tensor, level: u32) -> Tensor {
    // Each input's node at this level or below (a higher one, of a gradient
    // taken further in, is not this op's concern).
    let edges: SmallVec<[Option<Link>; 2]> = inputs
        .iter()
        .map(|t| node::under(t.link(), level + 1).cloned())
        .collect();
    let saved = Saved {
        inputs: inputs.iter().map(|t| t.for_saving()).collect(),
        output: prim
            .saves_output()
            .then(|| Box::new((out.storage().clone(), out.layout().clone()))),
    };
    let kind = NodeKind::Op(OpNode {
        prim,
        edges,
        saved: Mutex::new(Some(saved)),
    });
    // `below`: what was recorded below this level for the same value.
    let node = Node::new(kind, level, out.link().cloned());
    out.with_node(Link::of(node))
}

/// What an elementwise op on plain 0-d values saves on a segment: the
/// inputs' numbers, and the output's when its rule reads it
/// (`saves_output`); `None` unless every input is a plain 0-d value of the
/// output's dtype.
fn numbers_of(saves_output: bool, inputs: &[&Tensor], out: &Tensor) -> Option<[f64; 3]> {
    let dtype = out.dtype();
    let mut values = [0.0; 3];
    for (v, t) in values.iter_mut().zip(inputs) {
        if t.ndim() != 0 || t.has_layer() || t.dtype() != dtype {
            return None;
        }
        *v = with_dtype!(dtype, T => t.element::<T>().f64());
    }
    if saves_output {
        values[2] = with_dtype!(dtype, T => out.element::<T>().f64());
    }
    Some(values)
}

/// Restores the previous grad mode of this thread when dropped.
pub struct GradModeGuard {
    previous: bool,
}

impl GradModeGuard {
    /// Sets this thread's grad mode until the guard is dropped.
    pub fn new(enabled: bool) -> Self {
        let previous = crate::interp::set_grad_enabled(enabled);
        GradModeGuard { previous }
    }
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        crate::interp::set_grad_enabled(self.previous);
    }
}

/// Runs `f` with recording turned off on this thread (like `torch.no_grad`).
///
/// ```
/// use chainrule::{autograd::no_grad, Tensor};
/// let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
/// let y = no_grad(|| &w * 2.0);
/// assert!(!y.needs_grad());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = GradModeGuard::new(false);
    f()
}
