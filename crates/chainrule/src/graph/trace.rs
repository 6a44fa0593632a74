//! Tracing: while a trace is open on this thread, every primitive the tensor
//! API runs is also appended to a [`Graph`], with its inputs identified by
//! tensor identity. Tensors the trace has not seen become constants.
//!
//! The tracer is a watcher on the interpreter stack ([`crate::interp`]): it
//! claims no op, observes every kernel that runs (each primitive on values),
//! and follows the new handles other interpreters make for a value (nodes,
//! tangents, leaves).

use super::{GOp, Graph, NodeId};
use crate::interp::Interpreter;
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
    /// Its frame on the interpreter stack.
    frame: u32,
}

/// The tracer's frame on the interpreter stack.
struct Watcher;

impl Interpreter for Watcher {
    fn claims(&self, _inputs: &[&Tensor]) -> bool {
        false
    }

    fn watches(&self) -> bool {
        true
    }

    fn process(&self, prim: &Prim, inputs: &[&Tensor]) -> crate::Result<Tensor> {
        crate::interp::below_tape(prim, inputs)
    }

    fn observe(&self, prim: &Prim, inputs: &[&Tensor], out: &Tensor) {
        op(GOp::Prim(prim.clone()), inputs, out)
    }

    fn same_value(&self, of: &Tensor, handle: &Tensor) {
        alias(of, handle)
    }
}

thread_local! {
    static TRACER: RefCell<Option<Tracer>> = const { RefCell::new(None) };
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
        let frame = crate::interp::fresh_id();
        crate::interp::push(frame, std::rc::Rc::new(Watcher));
        *t = Some(Tracer {
            graph: Graph::default(),
            ids: FxHashMap::default(),
            alive: Vec::new(),
            frame,
        });
        Ok(())
    })
}

/// Closes the trace (also when the traced function failed).
pub(crate) fn end() -> Option<Tracer> {
    let tracer = TRACER.with(|t| t.borrow_mut().take());
    if let Some(t) = &tracer {
        crate::interp::pop(t.frame);
    }
    tracer
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
fn op(op: GOp, inputs: &[&Tensor], out: &Tensor) {
    with_tracer(|t| {
        let ids: Vec<NodeId> = inputs.iter().map(|x| t.node_of(x)).collect();
        let id = t.graph.push(op, ids, out.shape(), out.dtype());
        t.bind(out, id);
    })
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
