//! Tracing: while a trace is open on this thread, every primitive the tensor
//! API runs is also appended to a [`Graph`], with its inputs identified by
//! tensor identity. Tensors the trace has not seen become constants.
//!
//! The tracer is a watcher on the interpreter stack ([`crate::interp`]): it
//! claims no op, observes every kernel that runs (each primitive on values),
//! and follows the new handles other interpreters make for a value (nodes,
//! tangents, leaves).
//!
//! Traces nest only out of sight of each other: a control-flow primitive
//! traces its body with the outer levels and traces hidden
//! ([`crate::interp::isolated`]), in *lifting* mode: a tensor from outside
//! the body that carries something (a node, a layer, a node of an outer
//! trace) becomes an input of the body (a capture), so that every mode sees
//! it as an input of the loop.

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
    /// A weak reference to every traced handle: it keeps the handle's
    /// address reserved, so that no new tensor reuses it while the trace is
    /// open, but not its value, which is freed as soon as the traced
    /// function drops it (a strong reference held every intermediate of
    /// the run at once).
    alive: Vec<std::sync::Weak<TensorImpl>>,
    /// Its frame on the interpreter stack.
    frame: u32,
    /// Lifting mode: the captured tensors, one input each (see the module note).
    pub captures: Option<Vec<Tensor>>,
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
    /// The open traces, innermost last (only the innermost one records).
    static TRACER: RefCell<Vec<Tracer>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn begin() -> Result<(), crate::Error> {
    open(None)
}

/// Opens a trace in lifting mode, under [`crate::interp::isolated`].
pub(crate) fn begin_lifting() -> Result<(), crate::Error> {
    open(Some(Vec::new()))
}

fn open(captures: Option<Vec<Tensor>>) -> Result<(), crate::Error> {
    if crate::interp::watched() {
        return Err(crate::Error::invalid(
            "graph",
            "a graph is already being traced on this thread (traces do not nest)",
        ));
    }
    let frame = crate::interp::fresh_id();
    crate::interp::push(frame, std::rc::Rc::new(Watcher));
    TRACER.with(|t| {
        t.borrow_mut().push(Tracer {
            graph: Graph::default(),
            ids: FxHashMap::default(),
            alive: Vec::new(),
            frame,
            captures,
        })
    });
    Ok(())
}

/// Closes the innermost trace (also when the traced function failed).
pub(crate) fn end() -> Option<Tracer> {
    let tracer = TRACER.with(|t| t.borrow_mut().pop());
    if let Some(t) = &tracer {
        crate::interp::pop(t.frame);
    }
    tracer
}

/// Whether an outer trace (not the innermost) knows `t`.
fn known_outside(traces: &[Tracer], t: &Tensor) -> bool {
    traces.iter().any(|tr| tr.lookup(t).is_some())
}

fn key(t: &Tensor) -> *const TensorImpl {
    Arc::as_ptr(&t.0)
}

impl Tracer {
    /// The node of `t`, adding it as a constant (or, lifting, a capture)
    /// when the trace has not seen it.
    fn node_of(&mut self, t: &Tensor, outside: bool) -> NodeId {
        if let Some(&id) = self.ids.get(&key(t)) {
            return id;
        }
        let lifted = outside || t.node().is_some() || t.has_layer();
        if let (Some(captures), true) = (&mut self.captures, lifted) {
            let name = format!("capture{}", captures.len());
            captures.push(t.clone());
            return self.placeholder(&name, t);
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
        self.alive.push(Arc::downgrade(&t.0));
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

/// Runs `f` on the innermost trace, told which outer traces there are.
fn with_tracer(f: impl FnOnce(&mut Tracer, &[Tracer])) {
    TRACER.with(|t| {
        if let Some((tracer, outer)) = t.borrow_mut().split_last_mut() {
            f(tracer, outer)
        }
    })
}

/// Registers a placeholder: `example` stands for the input `name`.
pub(crate) fn placeholder(name: &str, example: &Tensor) {
    with_tracer(|t, _| {
        t.placeholder(name, example);
    })
}

/// `out = op(inputs)` for an op of the graph.
fn op(op: GOp, inputs: &[&Tensor], out: &Tensor) {
    with_tracer(|t, outer| {
        let ids: Vec<NodeId> = inputs
            .iter()
            .map(|x| t.node_of(x, known_outside(outer, x)))
            .collect();
        let id = t.graph.push(op, ids, out.shape(), out.dtype());
        t.bind(out, id);
    })
}

/// `handle` is another handle on the value of `of` (detach, requires_grad…).
pub(crate) fn alias(of: &Tensor, handle: &Tensor) {
    with_tracer(|t, _| {
        if let Some(id) = t.lookup(of) {
            t.bind(handle, id);
        }
    })
}

/// The node of an output tensor of the traced function.
pub(crate) fn output(t: &Tensor) -> Option<NodeId> {
    let mut id = None;
    with_tracer(|tr, outer| id = Some(tr.node_of(t, known_outside(outer, t))));
    id
}

#[cfg(test)]
mod tests {
    use crate::graph::Graph;
    use crate::Tensor;
    use std::cell::Cell;
    use std::sync::Arc;

    /// An intermediate the traced function drops is freed at once, as in an
    /// eager run: the trace remembers its address, not its value.
    #[test]
    fn a_dropped_intermediate_is_freed_while_the_trace_is_open() {
        let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
        let freed = Cell::new(false);
        let graph = Graph::trace(&[("x", &x)], |xs| {
            let y = xs[0].exp();
            let z = &y * 2.0;
            let value = Arc::downgrade(&y.0);
            drop(y);
            freed.set(value.upgrade().is_none());
            Ok(vec![z.sum()])
        })
        .unwrap();
        assert!(freed.get(), "the trace kept the dropped intermediate alive");
        let out = graph.compile().run(&[("x", &x)]).unwrap();
        let want: f64 = [1.0f64, 2.0, 3.0].iter().map(|v| 2.0 * v.exp()).sum();
        assert!((out[0].item() - want).abs() < 1e-12);
    }
}
