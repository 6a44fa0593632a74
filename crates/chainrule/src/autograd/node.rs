//! Nodes of the implicit (define-by-run) graph.
//!
//! A tensor that depends on a leaf requiring gradients carries an
//! `Arc<Node>`: the op that made it, edges to its inputs' nodes, and the
//! tensors its VJP rule needs (freed after backward unless retained). Tensors
//! that need no gradient carry no node, so nothing is recorded for them — the
//! first half of the note's pruning.

pub(crate) use super::segment::Segment;
use crate::layout::Layout;
use crate::ops::Prim;
use crate::storage::Storage;
use crate::tensor::Tensor;
use smallvec::SmallVec;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// Where `backward` accumulates a leaf's gradient.
pub(crate) type GradSlot = Mutex<Option<Tensor>>;

pub(crate) struct Node {
    pub kind: NodeKind,
    /// The node's depth: one more than its deepest input's (0 for a node
    /// without inputs). Every consumer of a node is deeper than it, so
    /// backward visits nodes in decreasing `depth`. Computed from the inputs
    /// alone, unlike a global creation counter: no shared atomic per op, and
    /// still an order for graphs built on several threads.
    /// A segment's depth changes as it records (see [`Segment::depth`]):
    /// read it through [`Node::depth`].
    depth: u64,
    /// Where a backward pass keeps this node's gradient (see `engine::Frontier`).
    pub mark: Mark,
    /// The last note of a backward pass's search for the branches that
    /// lead to requested gradients (see `engine::Pruning`); written, like
    /// `mark`, only by a pass that runs alone.
    pub reach: Reach,
    /// The tape's level: a leaf's is fresh when it is made (above every
    /// level open then: the gradient taken there differentiates through
    /// them); an op's is its inputs' highest. It orders the tape against
    /// the forward-mode and `vmap` levels (see [`crate::interp`]).
    pub level: u32,
    /// The node of the same value at the next lower level, if any: a value
    /// carries one node per tape level it is tracked at, highest first (a
    /// gradient inside a gradient, across a forward-mode level).
    pub below: Option<Link>,
}

/// Where a value sits in the reverse-mode graph: its node, and, for a value
/// recorded in a [`Segment`], its entry there (`at`; 0 for any other node).
#[derive(Clone)]
pub(crate) struct Link {
    pub node: Arc<Node>,
    pub at: u32,
}

impl Link {
    /// The value a node stands for on its own (not a segment's entry).
    pub fn of(node: Arc<Node>) -> Link {
        Link { node, at: 0 }
    }

    /// Whether `self` and `other` are the same value of the graph.
    pub fn same(&self, other: &Link) -> bool {
        Arc::ptr_eq(&self.node, &other.node) && self.at == other.at
    }
}

/// A backward pass's note on a node: the pass, and the slot where the
/// node's gradient waits. Written only by a pass that runs alone in the
/// process; a note of an earlier pass is stale (pass numbers never repeat).
#[derive(Default)]
pub(crate) struct Mark {
    pass: AtomicU64,
    slot: AtomicU32,
}

impl Mark {
    /// The slot, when `pass` wrote this note.
    #[inline]
    pub fn get(&self, pass: u64) -> Option<u32> {
        (self.pass.load(Ordering::Relaxed) == pass).then(|| self.slot.load(Ordering::Relaxed))
    }

    #[inline]
    pub fn set(&self, pass: u64, slot: u32) {
        self.slot.store(slot, Ordering::Relaxed);
        self.pass.store(pass, Ordering::Relaxed);
    }

    #[inline]
    pub fn clear(&self) {
        self.pass.store(0, Ordering::Relaxed);
    }
}

/// A pass number, written and read by a pass that runs alone.
#[derive(Default)]
pub(crate) struct Reach(AtomicU64);

impl Reach {
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Sets the note, returning the one it replaces.
    #[inline]
    pub fn replace(&self, pass: u64) -> u64 {
        let old = self.get();
        self.0.store(pass, Ordering::Relaxed);
        old
    }
}

/// `link`, or the first one below it of a level under `ceiling`.
pub(crate) fn under(mut link: Option<&Link>, ceiling: u32) -> Option<&Link> {
    while let Some(l) = link {
        if l.node.level < ceiling {
            return Some(l);
        }
        link = l.node.below.as_ref();
    }
    None
}

pub(crate) enum NodeKind {
    /// A tensor the user marked with `requires_grad`: `backward` accumulates
    /// into its slot. The slot is owned by the user's handles of the leaf
    /// (`TensorImpl::grad_slot`), not by the node: a gradient built with
    /// `create_graph` holds a graph that points back to this node, and a
    /// strong reference here would make that a cycle that is never freed.
    Leaf { grad: Weak<GradSlot> },
    /// The result of an op on tensors that need gradients.
    Op(OpNode),
    /// Many values at once: elementwise ops on 0-d values, recorded one
    /// after another on one thread (see [`Segment`]).
    Segment(Segment),
}

pub(crate) struct OpNode {
    pub prim: Prim,
    /// One per input: its place in the graph when it needs a gradient, else
    /// `None` (pruned).
    pub edges: SmallVec<[Option<Link>; 2]>,
    /// What the VJP rule reads; `None` once backward freed it.
    pub saved: Mutex<Option<Saved>>,
}

/// What an op's VJP rule reads: the inputs, and the output's buffer when
/// the rule reads it. The output is stored without its node so that the
/// node does not own itself; the engine rebuilds the tensor with this node
/// when it runs the rule. Boxed: most rules read no output, and their nodes
/// stay small. (Elementwise ops on plain 0-d values save their numbers on
/// a segment instead: see [`Segment`].)
pub(crate) struct Saved {
    pub inputs: SmallVec<[Tensor; 2]>,
    pub output: Option<Box<(Storage, Layout)>>,
}

impl Node {
    /// A fresh leaf and its gradient slot (to be owned by the leaf's handles).
    pub fn leaf() -> (Arc<Node>, Arc<GradSlot>) {
        let slot = Arc::new(Mutex::new(None));
        let kind = NodeKind::Leaf {
            grad: Arc::downgrade(&slot),
        };
        (Node::new(kind, crate::interp::fresh_id(), None), slot)
    }

    /// A node deeper than each of its inputs, with no backward pass's notes
    /// on it yet.
    pub fn new(kind: NodeKind, level: u32, below: Option<Link>) -> Arc<Node> {
        let depth = match &kind {
            NodeKind::Op(op) => op
                .edges
                .iter()
                .flatten()
                .map(|e| e.node.sealed_depth() + 1)
                .max(),
            NodeKind::Leaf { .. } | NodeKind::Segment(_) => None,
        };
        Arc::new(Node {
            kind,
            depth: depth.unwrap_or(0),
            mark: Mark::default(),
            reach: Reach::default(),
            level,
            below,
        })
    }

    /// The node's depth: every consumer of a node is deeper than it.
    #[inline]
    pub fn depth(&self) -> u64 {
        match &self.kind {
            NodeKind::Segment(seg) => seg.depth(),
            _ => self.depth,
        }
    }

    /// The depth, for a consumer being made: a segment's is fixed from now
    /// on (see [`Segment::seal`]).
    #[inline]
    pub fn sealed_depth(&self) -> u64 {
        match &self.kind {
            NodeKind::Segment(seg) => seg.seal(),
            _ => self.depth,
        }
    }

    /// The gradient slot of a leaf whose handles are still alive.
    pub fn grad_slot(&self) -> Option<Arc<GradSlot>> {
        match &self.kind {
            NodeKind::Leaf { grad } => grad.upgrade(),
            NodeKind::Op(_) | NodeKind::Segment(_) => None,
        }
    }

    /// The name of the op that made the value at `at` of this node.
    pub fn name(&self, at: u32) -> &'static str {
        match &self.kind {
            NodeKind::Leaf { .. } => "leaf",
            NodeKind::Op(op) => op.prim.name(),
            NodeKind::Segment(seg) => seg.name(at),
        }
    }
}

// ---------------------------------------------------------------------------
// Dropping without recursion.
//
// Dropping the output of a chain of a million ops would otherwise drop a
// million nested `Arc<Node>`s recursively and overflow the stack. Instead, a
// node whose last reference goes away is moved onto a per-thread queue, and
// one loop drops the queue's nodes one at a time; their own children land on
// the same queue.
// ---------------------------------------------------------------------------

thread_local! {
    static DROP_QUEUE: RefCell<Vec<Arc<Node>>> = const { RefCell::new(Vec::new()) };
    // No destructor: readable even while the thread's locals are destroyed.
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

/// The queue of threads whose own queue is gone: a thread's locals are
/// destroyed one by one when it ends, and one of them (its current
/// segment) may release a long graph after the queue went.
static ORPHANS: Mutex<Vec<Arc<Node>>> = Mutex::new(Vec::new());

/// `a`'s value for writing when `a` is its only handle: `Arc::get_mut`
/// without the atomic read-modify-write it spends on guarding against
/// `Weak` handles, for the types of which the crate makes none (nodes,
/// tensors). With one strong handle and no weak ones, no other thread can
/// reach the value, nor make a handle to it.
pub(crate) fn sole_mut<T>(a: &mut Arc<T>) -> Option<&mut T> {
    if Arc::strong_count(a) != 1 {
        return None;
    }
    // Pairs with the release of the handles dropped before ours.
    std::sync::atomic::fence(Ordering::Acquire);
    // SAFETY: see above; the pointer is the allocation's own (writable).
    Some(unsafe { &mut *(Arc::as_ptr(a) as *mut T) })
}

/// Releases one reference to a node without recursing into its inputs.
pub(crate) fn release(mut node: Arc<Node>) {
    if sole_mut(&mut node).is_none() {
        return; // other references remain: dropping ours frees nothing
    }
    // We hold the only reference, so no other thread can free it meanwhile.
    let mut node = Some(node);
    if DROP_QUEUE
        .try_with(|q| q.borrow_mut().extend(node.take()))
        .is_err()
    {
        return release_orphan(node.take().expect("not queued"));
    }
    if DRAINING.with(|d| d.replace(true)) {
        return; // an outer release on this thread is draining the queue
    }
    loop {
        let next = DROP_QUEUE.with(|q| q.borrow_mut().pop());
        match next {
            Some(n) => drop(n), // its Drop below queues its children
            None => break,
        }
    }
    DRAINING.with(|d| d.set(false));
}

/// [`release`] on a thread whose queue is gone (it is ending): the same
/// loop, through [`ORPHANS`].
fn release_orphan(node: Arc<Node>) {
    let orphans = || ORPHANS.lock().unwrap_or_else(PoisonError::into_inner);
    orphans().push(node);
    if DRAINING.with(|d| d.replace(true)) {
        return; // an outer release on this thread is draining
    }
    loop {
        // Children go to the thread's queue while it is still there.
        let next = orphans()
            .pop()
            .or_else(|| DROP_QUEUE.try_with(|q| q.borrow_mut().pop()).ok().flatten());
        match next {
            Some(n) => drop(n), // its Drop below queues its children
            None => break,
        }
    }
    DRAINING.with(|d| d.set(false));
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(below) = self.below.take() {
            release(below.node);
        }
        match &mut self.kind {
            NodeKind::Op(op) => {
                for edge in op.edges.drain(..).flatten() {
                    release(edge.node);
                }
                // Saved tensors hold nodes too; dropping them goes through
                // TensorImpl's Drop, which calls `release`.
                let saved = op.saved.get_mut().map(|s| s.take()).unwrap_or(None);
                drop(saved);
            }
            NodeKind::Segment(seg) => seg.clear(),
            NodeKind::Leaf { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a thread whose locals are being destroyed (no queue any more), a
    /// long graph is still freed by a loop, not by recursion.
    #[test]
    fn a_long_graph_released_without_the_thread_queue_does_not_recurse() {
        let x = Tensor::from_vec(vec![0.5f64], &[1]).requires_grad();
        let mut v = x.clone();
        for _ in 0..100_000 {
            v = v.sin(); // a node each (not 0-d)
        }
        let node = v.node().cloned().expect("tracked");
        drop(v);
        // What `release` does once `DROP_QUEUE` is gone.
        release_orphan(node);
        assert!(ORPHANS.lock().unwrap().is_empty());
        assert!(DROP_QUEUE.with(|q| q.borrow().is_empty()));
        assert!(!DRAINING.with(Cell::get));
    }
}
