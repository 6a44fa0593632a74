//! The interpreter stack: how a primitive reaches the modes.
//!
//! Every primitive the tensor API runs goes through [`bind`], and each mode
//! is an [`Interpreter`]: the tape (reverse mode, [`crate::autograd`]), each
//! open forward-mode level ([`crate::forward`]), each open `vmap` level
//! ([`crate::batching`]) and the graph tracer ([`crate::graph`]). The
//! primitives know nothing of the modes: an op is a row of rules
//! ([`crate::ops::Prim`]) that the interpreters read.
//!
//! **Who processes an op.** The open levels sit on one thread-local stack,
//! innermost (most recently opened) on top. An interpreter *claims* an op
//! when an input carries its data (a tangent of its level, a batch axis of
//! its level). The topmost claiming level processes the op: it unwraps its
//! data from the inputs, binds the op again on what is underneath (lower
//! levels then claim in turn) and wraps the result; its rules are ordinary
//! ops, bound again from the top. When no level claims, the kernel runs on
//! the values, and watchers (the tracer) observe it.
//!
//! The tape (reverse mode) is not on the stack: its levels are its nodes'.
//! A leaf made inside a transform gets a level above every open one (the
//! gradient taken there differentiates through them), an op's node the
//! highest of its inputs'. When the inputs' nodes are of a higher level
//! than the innermost claiming level, the tape goes first: it records the
//! op on the handles it is given (so that the VJP rules run on values that
//! carry every lower level's data: the tangents of forward-over-reverse,
//! the batch of per-example gradients), and the value is computed below
//! with that level's nodes out of sight. Otherwise the level goes first,
//! and the tape records the op on the values it unwraps (`grad` of `jvp`,
//! `grad` of `vmap`).

use crate::error::Result;
use crate::ops::Prim;
use crate::tensor::Tensor;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A mode: what it does with each primitive that reaches it.
pub(crate) trait Interpreter {
    /// Whether some input carries this interpreter's data, so that it must
    /// process the op. Only values with a layer (a tangent, a batch) can
    /// carry it: an op on plain values asks no one.
    fn claims(&self, inputs: &[&Tensor]) -> bool;

    /// Runs `prim` on `inputs`: the value from below, with what this
    /// interpreter adds.
    fn process(&self, prim: &Prim, inputs: &[&Tensor]) -> Result<Tensor>;

    /// Whether this interpreter watches every kernel and every new handle
    /// ([`Interpreter::observe`], [`Interpreter::same_value`]): the tracer.
    fn watches(&self) -> bool {
        false
    }

    /// The kernel ran `prim` on `inputs`, giving `out` (watchers record it).
    fn observe(&self, _prim: &Prim, _inputs: &[&Tensor], _out: &Tensor) {}

    /// `handle` is a new handle on the value of `of` (a wrapper made by an
    /// interpreter, a leaf, a saved copy).
    fn same_value(&self, _of: &Tensor, _handle: &Tensor) {}
}

struct Frame {
    id: u32,
    interpreter: Rc<dyn Interpreter>,
}

struct State {
    grad_enabled: Cell<bool>,
    /// The open levels and watchers, innermost last.
    stack: RefCell<Vec<Frame>>,
    /// `stack.len()`, readable without a borrow.
    depth: Cell<usize>,
    /// How many frames watch every op (see [`Interpreter::watches`]).
    watchers: Cell<usize>,
    next_id: Cell<u32>,
    /// While the tape computes an op's value below its level: nodes of this
    /// level and above are not the concern of what runs there.
    tape_ceiling: Cell<u32>,
}

thread_local! {
    static STATE: State = const {
        State {
            grad_enabled: Cell::new(true),
            stack: RefCell::new(Vec::new()),
            depth: Cell::new(0),
            watchers: Cell::new(0),
            next_id: Cell::new(1),
            tape_ceiling: Cell::new(u32::MAX),
        }
    };
}

/// Where [`bind`] sends an op.
enum Route {
    /// The kernel, observed by the watchers when `true`.
    Kernel(bool),
    /// The tape, at this level; no other level open when `true`.
    Tape(u32, bool),
    Level(Rc<dyn Interpreter>),
}

/// Runs the primitive `prim` on `inputs` through the interpreters (the one
/// entry point of every primitive). One thread-local access decides where
/// it goes.
pub(crate) fn bind(prim: Prim, inputs: &[&Tensor]) -> Result<Tensor> {
    if plain(inputs) {
        return prim.forward(inputs);
    }
    let route = STATE.with(|s| {
        let tape = s
            .grad_enabled
            .get()
            .then(|| crate::autograd::tape_level(inputs, s.tape_ceiling.get()))
            .flatten();
        if s.depth.get() == 0 {
            return match tape {
                Some(t) => Route::Tape(t, true),
                None => Route::Kernel(false),
            };
        }
        match (tape, s.claiming(inputs)) {
            (Some(t), Some((id, _))) if t > id => Route::Tape(t, false),
            (Some(t), None) => Route::Tape(t, false),
            (_, Some((_, level))) => Route::Level(level),
            (None, None) => Route::Kernel(s.watchers.get() > 0),
        }
    });
    match route {
        Route::Kernel(false) => prim.forward(inputs),
        Route::Kernel(true) => kernel(&prim, inputs),
        Route::Tape(level, alone) => crate::autograd::TAPE.record(&prim, inputs, level, alone),
        Route::Level(level) => level.process(&prim, inputs),
    }
}

/// The tape's level for an op on `inputs`: the highest level of their nodes
/// (below the ceiling), when grad mode is on.
pub(crate) fn tape_level(inputs: &[&Tensor]) -> Option<u32> {
    STATE.with(|s| {
        if !s.grad_enabled.get() {
            return None;
        }
        crate::autograd::tape_level(inputs, s.tape_ceiling.get())
    })
}

/// What the tape records on: the op as the levels below it compute it.
pub(crate) fn below_tape(prim: &Prim, inputs: &[&Tensor]) -> Result<Tensor> {
    match claiming(inputs) {
        Some((_, level)) => level.process(prim, inputs),
        None => kernel(prim, inputs),
    }
}

/// [`below_tape`] for the tape at `level`: nodes of that level and above
/// are ignored while it runs.
pub(crate) fn below_tape_level(level: u32, prim: &Prim, inputs: &[&Tensor]) -> Result<Tensor> {
    struct Restore(u32);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = STATE.try_with(|s| s.tape_ceiling.set(self.0));
        }
    }
    let _restore = Restore(STATE.with(|s| s.tape_ceiling.replace(level)));
    below_tape(prim, inputs)
}

fn kernel(prim: &Prim, inputs: &[&Tensor]) -> Result<Tensor> {
    let out = prim.forward(inputs)?;
    for interpreter in watchers() {
        interpreter.observe(prim, inputs, &out);
    }
    Ok(out)
}

/// Whether no interpreter can see an op on `inputs`, known without a
/// thread-local access: no input carries a node (nothing for the tape) or
/// a layer (nothing any level claims), and no trace is open anywhere. Most
/// ops, also inside transforms (a rule's ops on plain values), are this.
fn plain(inputs: &[&Tensor]) -> bool {
    inputs.iter().all(|t| t.node().is_none() && !t.has_layer())
        && WATCHERS_ANYWHERE.load(Ordering::Relaxed) == 0
}

/// Whether some input carries a level's layer (a tangent, a batch).
fn layered(inputs: &[&Tensor]) -> bool {
    inputs.iter().any(|t| t.has_layer())
}

impl State {
    /// The innermost level that claims the op, with its number.
    fn claiming(&self, inputs: &[&Tensor]) -> Option<(u32, Rc<dyn Interpreter>)> {
        if self.depth.get() == 0 || !layered(inputs) {
            return None;
        }
        self.stack
            .borrow()
            .iter()
            .rev()
            .find(|f| f.interpreter.claims(inputs))
            .map(|f| (f.id, f.interpreter.clone()))
    }
}

/// [`State::claiming`] on this thread.
fn claiming(inputs: &[&Tensor]) -> Option<(u32, Rc<dyn Interpreter>)> {
    STATE.with(|s| s.claiming(inputs))
}

/// The frames that watch every op (none, most of the time: no allocation).
fn watchers() -> Vec<Rc<dyn Interpreter>> {
    STATE.with(|s| {
        if s.watchers.get() == 0 {
            return Vec::new();
        }
        s.stack
            .borrow()
            .iter()
            .filter(|f| f.interpreter.watches())
            .map(|f| f.interpreter.clone())
            .collect()
    })
}

/// Whether no interpreter would see an op on `inputs` (no node to record
/// under grad mode, no level claiming them, no trace watching): a rule may
/// then run as one fused kernel on raw buffers.
pub(crate) fn quiet(inputs: &[&Tensor]) -> bool {
    if plain(inputs) {
        return true;
    }
    STATE.with(|s| {
        let taped = s.grad_enabled.get()
            && crate::autograd::tape_level(inputs, s.tape_ceiling.get()).is_some();
        if taped || s.watchers.get() > 0 {
            return false;
        }
        s.claiming(inputs).is_none()
    })
}

/// Watching frames open on any thread: while there are none (no trace
/// anywhere, nearly always), [`same_value`] costs one load, no
/// thread-local access.
static WATCHERS_ANYWHERE: AtomicUsize = AtomicUsize::new(0);

/// Tells every interpreter that `handle` is a new handle on `of`'s value.
pub(crate) fn same_value(of: &Tensor, handle: &Tensor) {
    if WATCHERS_ANYWHERE.load(Ordering::Relaxed) == 0 {
        return;
    }
    for interpreter in watchers() {
        interpreter.same_value(of, handle);
    }
}

/// A fresh level number: larger than every level opened before on this thread.
pub(crate) fn fresh_id() -> u32 {
    STATE.with(|s| {
        let id = s.next_id.get();
        s.next_id.set(id + 1);
        id
    })
}

/// Opens a level (or watcher) `id` on top of the stack.
pub(crate) fn push(id: u32, interpreter: Rc<dyn Interpreter>) {
    STATE.with(|s| {
        let watches = interpreter.watches() as usize;
        s.stack.borrow_mut().push(Frame { id, interpreter });
        s.depth.set(s.depth.get() + 1);
        s.watchers.set(s.watchers.get() + watches);
        WATCHERS_ANYWHERE.fetch_add(watches, Ordering::Relaxed);
    })
}

/// Closes level `id` (wherever it is: levels close in any order).
pub(crate) fn pop(id: u32) {
    let _ = STATE.try_with(|s| {
        let mut stack = s.stack.borrow_mut();
        if let Some(i) = stack.iter().rposition(|f| f.id == id) {
            let frame = stack.remove(i);
            s.depth.set(stack.len());
            let watches = frame.interpreter.watches() as usize;
            s.watchers.set(s.watchers.get() - watches);
            WATCHERS_ANYWHERE.fetch_sub(watches, Ordering::Relaxed);
        }
    });
}

/// Whether level `id` is open on this thread.
pub(crate) fn is_open(id: u32) -> bool {
    STATE.with(|s| s.depth.get() > 0 && s.stack.borrow().iter().any(|f| f.id == id))
}

/// How many levels (forward mode, `vmap`) and traces are open on this thread.
pub(crate) fn open_levels() -> usize {
    STATE.with(|s| s.depth.get())
}

/// Whether any level (forward mode, `vmap`) or trace is open on this thread.
pub(crate) fn levels_open() -> bool {
    STATE.with(|s| s.depth.get() > 0)
}

pub(crate) fn grad_enabled() -> bool {
    STATE.with(|s| s.grad_enabled.get())
}

/// Sets grad mode, returning the previous setting.
pub(crate) fn set_grad_enabled(enabled: bool) -> bool {
    STATE.with(|s| s.grad_enabled.replace(enabled))
}

/// Runs `f` with every open level and watcher of this thread out of sight
/// (and grad mode on, the tape ceiling lifted): what a control-flow
/// primitive does to trace its body as a function of its own, or to run it
/// as a kernel. The values `f` reads keep their layers; no level processes
/// them until the stack is restored (also when `f` panics).
pub(crate) fn isolated<T>(f: impl FnOnce() -> T) -> T {
    struct Restore {
        stack: Vec<Frame>,
        watchers: usize,
        grad: bool,
        ceiling: u32,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = STATE.try_with(|s| {
                let stack = std::mem::take(&mut self.stack);
                // Watchers opened inside `f` and not closed would be lost here:
                // `f` closes what it opens (the tracer's `end`).
                s.depth.set(stack.len());
                *s.stack.borrow_mut() = stack;
                s.watchers.set(self.watchers);
                WATCHERS_ANYWHERE.fetch_add(self.watchers, Ordering::Relaxed);
                s.grad_enabled.set(self.grad);
                s.tape_ceiling.set(self.ceiling);
            });
        }
    }
    let _restore = STATE.with(|s| {
        let watchers = s.watchers.replace(0);
        WATCHERS_ANYWHERE.fetch_sub(watchers, Ordering::Relaxed);
        s.depth.set(0);
        Restore {
            stack: std::mem::take(&mut *s.stack.borrow_mut()),
            watchers,
            grad: s.grad_enabled.replace(true),
            ceiling: s.tape_ceiling.replace(u32::MAX),
        }
    });
    f()
}

/// Whether a watcher (an open trace) sees this thread's ops.
pub(crate) fn watched() -> bool {
    STATE.with(|s| s.watchers.get() > 0)
}
