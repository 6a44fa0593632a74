//! Tracing: while a trace is open on this thread, every primitive the tensor
//! API runs is also appended to a [`Graph`], with its inputs identified by
//! tensor identity. Tensors the trace has not seen become constants.
//!
//! The hooks are called from `ops::record` (every differentiable primitive),
//! from the non-differentiable elementwise functions (comparisons, `sign`)
//! and from the handle-making functions (`detach`, `requires_grad`, dual
//! wrapping), which give an existing value a new handle.

use super::{GOp, Graph, NodeId};
use crate::ops::Prim;
use crate::tensor::{Tensor, TensorImpl};
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::Arc;

pub(crate) struct Tracer {
    pub graph: Graph,
    /// Node of each traced handle (by the address of its `TensorImpl`).
    ids: FxHashMap<*const TensorImpl, NodeId>,
    /// Keeps every traced handle alive, so that no address is reused while
    /// the trace is open.
    alive: Vec<Tensor>,
}

thread_local! {
    static TRACER: RefCell<Option<Tracer>> = const { RefCell::new(None) };
}

/// Whether a trace is open on this thread (one thread-local read).
pub(crate) fn active() -> bool {
    TRACER.with(|t| t.borrow().is_some())
}

pub(crate) fn begin() -> Result<(), crate::Error> {
    TRACER.with(|t| {
        let mut t = t.borrow_mut();
        if t.is_some() {
            return Err(crate::Error::invalid(
                "graph",
                "a graph is already being traced on this thread (traces do not nest)",
            ));
        }
        *t = Some(Tracer {
            graph: Graph::default(),
            ids: FxHashMap::default(),
            alive: Vec::new(),
        });
        Ok(())
    })
}

/// Closes the trace (also when the traced function failed).
pub(crate) fn end() -> Option<Tracer> {
    TRACER.with(|t| t.borrow_mut().take())
}

fn key(t: &Tensor) -> *const TensorImpl {
    Arc::as_ptr(&t.0)
}

impl Tracer {
    /// The node of `t`, adding it as a constant when the trace has not seen it.
    fn node_of(&mut self, t: &Tensor) -> NodeId {
        if let Some(&id) = self.ids.get(&key(t)) {
            return id;
        }
        let id = self.graph.push(
            GOp::Constant(t.detach_untraced()),
            Vec::new(),
            t.shape(),
            t.dtype(),
        );
        self.bind(t, id);
        id
    }

    fn bind(&mut self, t: &Tensor, id: NodeId) {
        self.ids.insert(key(t), id);
        self.alive.push(t.clone());
    }

    /// The node of a tensor the trace has seen (placeholders, outputs).
    pub fn lookup(&self, t: &Tensor) -> Option<NodeId> {
        self.ids.get(&key(t)).copied()
    }

    pub fn placeholder(&mut self, name: &str, example: &Tensor) -> NodeId {
        let id = self.graph.push(
            GOp::Input(name.to_string()),
            Vec::new(),
            example.shape(),
            example.dtype(),
        );
        self.graph.inputs.push(id);
        self.graph.examples.push(example.detach_untraced());
        self.bind(example, id);
        id
    }
}

fn with_tracer(f: impl FnOnce(&mut Tracer)) {
    TRACER.with(|t| {
        if let Some(tracer) = t.borrow_mut().as_mut() {
            f(tracer)
        }
    })
}

/// Registers a placeholder: `example` stands for the input `name`.
pub(crate) fn placeholder(name: &str, example: &Tensor) {
    with_tracer(|t| {
        t.placeholder(name, example);
    })
}

/// `out = op(inputs)` for an op of the graph.
pub(crate) fn op(op: GOp, inputs: &[&Tensor], out: &Tensor) {
    with_tracer(|t| {
        let ids: Vec<NodeId> = inputs.iter().map(|x| t.node_of(x)).collect();
        let id = t.graph.push(op, ids, out.shape(), out.dtype());
        t.bind(out, id);
    })
}

/// `out = prim(inputs)` (from `ops::record`).
pub(crate) fn prim(prim: &Prim, inputs: &[&Tensor], out: &Tensor) {
    op(GOp::Prim(prim.clone()), inputs, out)
}

/// `handle` is another handle on the value of `of` (detach, requires_grad…).
pub(crate) fn alias(of: &Tensor, handle: &Tensor) {
    with_tracer(|t| {
        if let Some(id) = t.lookup(of) {
            t.bind(handle, id);
        }
    })
}

/// The node of an output tensor of the traced function.
pub(crate) fn output(t: &Tensor) -> Option<NodeId> {
    let mut id = None;
    with_tracer(|tr| id = Some(tr.node_of(t)));
    id
}
