//! The backward pass: one visit per node, in reverse topological order, with
//! an explicit stack (no recursion), so graphs of millions of nodes are fine.

mod ready;
mod sweep;

use super::lane::Grad;
use super::node::{Link, Node, NodeKind, OpNode};
use super::segment::{number_grad, Entry};
use super::GradModeGuard;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Options of [`Tensor::backward_with`] and [`grad_with`].
#[derive(Clone, Debug, Default)]
pub struct BackwardOptions {
    /// The adjoint of the output (`v` in `vᵀJ`); required when the output is
    /// not a single element, and then of the output's shape.
    pub grad: Option<Tensor>,
    /// Keep the saved intermediates so that backward can run again.
    pub retain_graph: bool,
    /// Record the backward computation itself, so the gradients it returns can
    /// be differentiated again (higher order). Implies keeping the graph.
    pub create_graph: bool,
}

/// What a backward pass did: the proof of pruning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackwardStats {
    /// Nodes the pass visited (leaves included): those reached from the
    /// output with a gradient, on a branch leading to a requested one.
    pub nodes_reached: usize,
    /// VJP rules run; a branch leading to no requested gradient runs none.
    pub rules_run: usize,
    /// Of `rules_run`, those run on plain numbers: elementwise ops on 0-d
    /// values, where no gradient graph is recorded and no transform is
    /// open (no tensor is made for their gradients).
    pub rules_on_numbers: usize,
}

/// The `pos`-th input of a node: `Some(None)` for one that carries no
/// gradient (a pruned edge; a segment's op entry), `None` past the last.
/// A segment's inputs are its imports.
fn child(n: &Node, pos: usize) -> Option<Option<&Node>> {
    match &n.kind {
        NodeKind::Op(op) => op.edges.get(pos).map(|e| e.as_ref().map(|l| &*l.node)),
        NodeKind::Segment(seg) => (pos < seg.len()).then(|| match seg.entry(pos as u32) {
            Entry::Import { link, .. } => Some(&*link.node),
            Entry::Op(_) | Entry::Dot(_) => None,
        }),
        NodeKind::Leaf { .. } => None,
    }
}

/// The nodes `n` reads (see [`child`]).
fn children(n: &Node) -> impl Iterator<Item = &Node> {
    (0..).map_while(move |pos| child(n, pos)).flatten()
}

/// A node borrowed for the length of a pass: everything reachable stays
/// alive through the roots' edges, which nothing removes while the pass
/// holds the roots.
type NodePtr = *const Node;

/// Which nodes lead to some target (the targets among them): those the
/// pass must visit; every other branch is pruned. Kept in the nodes' marks
/// when the pass runs alone (no table to build), else in hash sets.
enum Pruning {
    Marks {
        seen: u64,
        useful: u64,
    },
    Sets {
        seen: FxHashSet<NodePtr>,
        useful: FxHashSet<NodePtr>,
    },
}

impl Pruning {
    fn new(exclusive: bool) -> Pruning {
        if exclusive {
            // Two fresh pass numbers: what the search saw, and what leads on.
            let first = NEXT_PASS.fetch_add(2, Ordering::Relaxed);
            Pruning::Marks {
                seen: first,
                useful: first + 1,
            }
        } else {
            Pruning::Sets {
                seen: Default::default(),
                useful: Default::default(),
            }
        }
    }

    /// Whether this is the search's first sight of `node`.
    fn first_sight(&mut self, node: &Node) -> bool {
        match self {
            Pruning::Marks { seen, useful } => {
                let note = node.reach.get();
                let first = note != *seen && note != *useful;
                if first {
                    node.reach.replace(*seen);
                }
                first
            }
            Pruning::Sets { seen, .. } => seen.insert(node),
        }
    }

    fn set_useful(&mut self, node: &Node) {
        match self {
            Pruning::Marks { useful, .. } => {
                node.reach.replace(*useful);
            }
            Pruning::Sets { useful, .. } => {
                useful.insert(node);
            }
        }
    }

    fn useful(&self, node: &Node) -> bool {
        match self {
            Pruning::Marks { useful, .. } => node.reach.get() == *useful,
            Pruning::Sets { useful, .. } => useful.contains(&(node as NodePtr)),
        }
    }

    /// Finds the nodes above `roots` that lead to a target. A node shallower
    /// than every target cannot lead to one (it would be deeper than the
    /// target it reaches), so the search stops there.
    fn search<'n>(&mut self, roots: impl Iterator<Item = &'n Node>, targets: &Targets) {
        let Some(floor) = targets.min_depth() else {
            return;
        };
        // Post-order, with an explicit stack: a node is decided after its inputs.
        let mut stack: SmallVec<[(&Node, usize); 16]> = SmallVec::new();
        for root in roots {
            if root.depth() < floor || !self.first_sight(root) {
                continue;
            }
            stack.push((root, 0));
            while let Some((node, pos)) = stack.last_mut() {
                if let Some(edge) = child(node, *pos) {
                    *pos += 1;
                    if let Some(child) = edge {
                        if child.depth() >= floor && self.first_sight(child) {
                            stack.push((child, 0));
                        }
                    }
                    continue;
                }
                let (node, _) = stack.pop().unwrap();
                let leads = targets.contains(node) || children(node).any(|c| self.useful(c));
                if leads {
                    self.set_useful(node);
                }
            }
        }
    }
}

fn accumulate(slot: &mut Option<Tensor>, g: Tensor) {
    *slot = Some(match slot.take() {
        None => g,
        Some(existing) => crate::ops::binary::add_into(existing, &g),
    });
}

/// The gradients waiting at a node: its own, or, for a segment, those of
/// its values (summed by its sweep).
enum Pending {
    Grad(Grad),
    Seeds(SmallVec<[(u32, Grad); 2]>),
}

impl Pending {
    fn add(self, at: u32, g: Grad) -> Pending {
        match self {
            Pending::Grad(existing) => Pending::Grad(existing.add(g)),
            Pending::Seeds(mut seeds) => {
                seeds.push((at, g));
                Pending::Seeds(seeds)
            }
        }
    }
}

/// The nodes given a gradient and not yet visited, deepest first: a node
/// is visited after every node that consumes it (they are deeper), so its
/// gradient is complete then. Nodes of one depth are visited in the order
/// they were reached, so the order in which gradients are summed, and so
/// their last bits, never depend on where the nodes sit in memory. The
/// frontier is all the pass keeps, whatever the size of the graph.
///
/// Where a node's gradient waits: a slot of `grads`, found through the
/// node's own mark when this pass is the only one running in the process
/// (nearly always: no hashing), else through `slot_of`.
struct Frontier {
    /// The heap, the slots and the sweeps' arrays, lent by the thread
    /// (given back when the frontier is dropped).
    s: ManuallyDrop<Box<Scratch>>,
    arrivals: u64,
    /// This pass's number when it alone may mark nodes.
    exclusive: Option<u64>,
    slot_of: FxHashMap<NodePtr, u32>,
    _running: Running,
}

/// The initial capacity of a fresh scratch's frontier.
const FRONTIER_ROOM: usize = 8;

/// The vectors a pass works in, kept by its thread from one pass to the
/// next: a small pass (a few nodes, a short segment), as a training step
/// or `ex1` runs thousands of times, then allocates none of them.
#[derive(Default)]
struct Scratch {
    /// (depth, arrival, node, slot): deepest, then earliest reached, first.
    order: BinaryHeap<(u64, Reverse<u64>, usize, u32)>,
    grads: Vec<Option<Pending>>,
    free: Vec<u32>,
    /// A segment's sweep: its values' adjoints, which of them have one,
    /// and, under pruning, which lead to a requested gradient.
    adjoint: Vec<f64>,
    reached: Vec<bool>,
    useful: Vec<bool>,
}

thread_local! {
    /// The scratch of the thread's last pass (none while a pass is under
    /// way: a pass a rule runs inside another gets its own).
    static SCRATCH: Cell<Option<Box<Scratch>>> = const { Cell::new(None) };
}

impl Scratch {
    /// Above this many elements a vector is not kept (a very wide pass
    /// does not leave its memory with the thread).
    const KEPT_MAX: usize = 1 << 16;

    fn lend() -> Box<Scratch> {
        let kept = SCRATCH.try_with(Cell::take).ok().flatten();
        kept.unwrap_or_else(|| {
            let mut fresh = Box::<Scratch>::default();
            // Room for a frontier of a few nodes (most graphs' is narrow),
            // so that a small pass does not grow each vector step by step.
            fresh.order.reserve(FRONTIER_ROOM);
            fresh.grads.reserve(FRONTIER_ROOM);
            fresh.free.reserve(FRONTIER_ROOM);
            fresh
        })
    }

    fn give_back(mut self: Box<Scratch>) {
        let too_large = [
            self.order.capacity(),
            self.grads.capacity(),
            self.adjoint.capacity(),
            self.useful.capacity(),
        ]
        .iter()
        .any(|&c| c > Self::KEPT_MAX);
        if too_large {
            return;
        }
        // A pass that failed midway leaves gradients waiting: drop them.
        self.order.clear();
        self.grads.clear();
        self.free.clear();
        let _ = SCRATCH.try_with(|kept| kept.set(Some(self)));
    }
}

/// The values whose gradients a pass returns (a node, and the entry for a
/// segment's value), each with the positions in the caller's list it
/// fills: a short list scanned in place for the few targets a call names
/// (no hashing per visited node), a table for many.
enum Targets {
    Few(SmallVec<[(NodePtr, u32, usize); 4]>),
    Many {
        at: FxHashMap<(NodePtr, u32), SmallVec<[usize; 1]>>,
        nodes: FxHashSet<NodePtr>,
    },
}

impl Targets {
    /// Above this many targets, a visit's lookup hashes instead of scanning.
    const SCAN_MAX: usize = 16;

    fn new(targets: &[&Tensor]) -> Targets {
        let links = targets
            .iter()
            .enumerate()
            .filter_map(|(k, t)| t.link().map(|l| (Arc::as_ptr(&l.node), l.at, k)));
        if targets.len() <= Self::SCAN_MAX {
            return Targets::Few(links.collect());
        }
        let mut at: FxHashMap<(NodePtr, u32), SmallVec<[usize; 1]>> = FxHashMap::default();
        at.reserve(targets.len());
        for (n, i, k) in links {
            at.entry((n, i)).or_default().push(k);
        }
        let nodes = at.keys().map(|&(n, _)| n).collect();
        Targets::Many { at, nodes }
    }

    /// Whether a target is `node` or one of its values.
    fn contains(&self, node: &Node) -> bool {
        let node = node as NodePtr;
        match self {
            Targets::Few(list) => list.iter().any(|&(n, _, _)| n == node),
            Targets::Many { nodes, .. } => nodes.contains(&node),
        }
    }

    /// Calls `f` with each position the value at `at` of `node` fills.
    fn each_index(&self, node: &Node, at: u32, mut f: impl FnMut(usize)) {
        let node = node as NodePtr;
        match self {
            Targets::Few(list) => list
                .iter()
                .filter(|&&(n, i, _)| n == node && i == at)
                .for_each(|&(_, _, k)| f(k)),
            Targets::Many { at: map, .. } => map
                .get(&(node, at))
                .into_iter()
                .flatten()
                .for_each(|&k| f(k)),
        }
    }

    /// The entries of `node` that are targets (for a segment's sweep).
    fn entries_of(&self, node: &Node) -> SmallVec<[u32; 4]> {
        let node = node as NodePtr;
        match self {
            Targets::Few(list) => list
                .iter()
                .filter(|&&(n, _, _)| n == node)
                .map(|&(_, i, _)| i)
                .collect(),
            Targets::Many { at, .. } => at
                .keys()
                .filter(|&&(n, _)| n == node)
                .map(|&(_, i)| i)
                .collect(),
        }
    }

    /// The depth of the shallowest target (none when there are none).
    fn min_depth(&self) -> Option<u64> {
        // SAFETY (each `*n`): see `NodePtr`.
        match self {
            Targets::Few(list) => list.iter().map(|&(n, _, _)| unsafe { &*n }.depth()).min(),
            Targets::Many { nodes, .. } => nodes.iter().map(|&n| unsafe { &*n }.depth()).min(),
        }
    }
}

/// Backward passes (and graph walks) running now, on any thread.
static PASSES_RUNNING: AtomicUsize = AtomicUsize::new(0);
static NEXT_PASS: AtomicU64 = AtomicU64::new(1);

/// One pass or walk counted in `PASSES_RUNNING` while it lives.
struct Running {
    /// No other pass was running when this one started: it alone may mark
    /// nodes.
    alone: bool,
}

impl Running {
    fn start() -> Running {
        Running {
            alone: PASSES_RUNNING.fetch_add(1, Ordering::AcqRel) == 0,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Marks left by a pass that failed midway name a pass that is over.
        PASSES_RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Frontier {
    fn new() -> Frontier {
        let running = Running::start();
        let alone = running.alone;
        Frontier {
            _running: running,
            s: ManuallyDrop::new(Scratch::lend()),
            arrivals: 0,
            exclusive: alone.then(|| NEXT_PASS.fetch_add(1, Ordering::Relaxed)),
            slot_of: FxHashMap::default(),
        }
    }

    fn slot(&self, node: &Node) -> Option<u32> {
        match self.exclusive {
            Some(pass) => node.mark.get(pass),
            None => self.slot_of.get(&(node as NodePtr)).copied(),
        }
    }

    /// Gives the value at `link` the gradient `g` (summed with any it has).
    fn give(&mut self, link: &Link, g: Grad) {
        let node: &Node = &link.node;
        if let Some(slot) = self.slot(node) {
            let waiting = &mut self.s.grads[slot as usize];
            let pending = waiting.take().expect("a queued slot holds");
            *waiting = Some(pending.add(link.at, g));
            return;
        }
        let pending = match node.kind {
            NodeKind::Segment(_) => Pending::Seeds(smallvec::smallvec![(link.at, g)]),
            _ => Pending::Grad(g),
        };
        let slot = match self.s.free.pop() {
            Some(slot) => {
                self.s.grads[slot as usize] = Some(pending);
                slot
            }
            None => {
                self.s.grads.push(Some(pending));
                (self.s.grads.len() - 1) as u32
            }
        };
        match self.exclusive {
            Some(pass) => node.mark.set(pass, slot),
            None => {
                self.slot_of.insert(node, slot);
            }
        }
        self.arrivals += 1;
        let arrival = Reverse(self.arrivals);
        self.s
            .order
            .push((node.depth(), arrival, node as NodePtr as usize, slot));
    }

    fn next(&mut self) -> Option<(NodePtr, Pending)> {
        loop {
            let (_, _, ptr, slot) = self.s.order.pop()?;
            let node = ptr as NodePtr;
            match self.exclusive {
                // SAFETY: see `NodePtr`.
                Some(_) => unsafe { &*node }.mark.clear(),
                None => {
                    self.slot_of.remove(&node);
                }
            }
            self.s.free.push(slot);
            // A leaf visited early (see `ready`) leaves its entry behind.
            if let Some(g) = self.s.grads[slot as usize].take() {
                return Some((node, g));
            }
        }
    }

    /// The depth of the deepest node waiting, if any.
    fn deepest(&self) -> Option<u64> {
        self.s.order.peek().map(|&(depth, ..)| depth)
    }

    /// Takes the gradient waiting at a leaf out of the frontier (its entry
    /// stays, empty, until `next` passes it).
    fn take(&mut self, leaf: NodePtr) -> Option<Grad> {
        // SAFETY: see `NodePtr`.
        let slot = self.slot(unsafe { &*leaf })?;
        match self.s.grads[slot as usize].take()? {
            Pending::Grad(g) => Some(g),
            Pending::Seeds(_) => unreachable!("seeds wait only at segments"),
        }
    }
}

impl Drop for Frontier {
    fn drop(&mut self) {
        // SAFETY: `s` is not used again.
        unsafe { ManuallyDrop::take(&mut self.s) }.give_back();
    }
}

/// Runs backward from `roots` (each with its adjoint). With `targets`, returns
/// the gradient of each target (zeros when unreached) and touches no `.grad`;
/// without, accumulates into the `.grad` of every leaf reached.
pub(crate) fn run(
    roots: &[(&Tensor, Option<Tensor>)],
    targets: Option<&[&Tensor]>,
    prune: bool,
    retain_graph: bool,
    create_graph: bool,
    watch: Option<ready::Watched>,
) -> Result<(BackwardStats, Vec<Tensor>)> {
    let mut root_links: SmallVec<[Link; 1]> = SmallVec::with_capacity(roots.len());
    let mut seeds: SmallVec<[Grad; 1]> = SmallVec::with_capacity(roots.len());
    for (t, g) in roots {
        let link = t.link().ok_or_else(not_differentiable)?;
        // A segment being swept takes no deeper import (see `Segment::seal`).
        link.node.sealed_depth();
        root_links.push(link.clone());
        seeds.push(seed(t, g)?);
    }
    let frontier = Frontier::new();
    // With targets, only the branches leading to one are visited.
    let target_of = Targets::new(targets.unwrap_or(&[]));
    let pruning = (targets.is_some() && prune).then(|| {
        let mut pruning = Pruning::new(frontier.exclusive.is_some());
        pruning.search(root_links.iter().map(|l| &*l.node), &target_of);
        pruning
    });
    let mut pass = Pass {
        frontier,
        targets: &target_of,
        pruning,
        results: targets.map(|t| vec![None; t.len()]),
        stats: BackwardStats::default(),
        retain_graph: retain_graph || create_graph,
        create_graph,
        // Rules on 0-d values run on numbers where nothing could tell (see `lane`).
        lane: !create_graph && !crate::interp::levels_open(),
    };
    for (link, seed) in root_links.iter().zip(seeds) {
        if pass.wanted(&link.node) {
            pass.frontier.give(link, seed);
        }
    }
    let mut watch = match watch {
        Some(ready::Watched { leaves, on_ready }) => {
            let roots: SmallVec<[&Node; 1]> = root_links.iter().map(|l| &*l.node).collect();
            Some(ready::Watch::new(&roots, leaves, on_ready)?)
        }
        None => None,
    };
    let _mode = GradModeGuard::new(create_graph);
    loop {
        if let Some(watch) = &mut watch {
            watch.release(&mut pass)?;
        }
        let Some((node, pending)) = pass.frontier.next() else {
            break;
        };
        // SAFETY: see `NodePtr`.
        let node: &Node = unsafe { &*node };
        match (pending, &node.kind) {
            (Pending::Seeds(seeds), NodeKind::Segment(seg)) => pass.sweep(node, seg, seeds)?,
            (Pending::Grad(g), _) => pass.visit(node, g)?,
            (Pending::Seeds(_), _) => unreachable!("seeds wait only at segments"),
        }
    }
    let results = match (targets, pass.results) {
        (Some(ts), Some(results)) => results
            .into_iter()
            .zip(ts)
            .map(|(r, t)| r.unwrap_or_else(|| t.zeros_like()))
            .collect(),
        _ => Vec::new(),
    };
    Ok((pass.stats, results))
}

/// One backward pass under way.
struct Pass<'a> {
    frontier: Frontier,
    targets: &'a Targets,
    pruning: Option<Pruning>,
    /// With targets: the gradients found so far (no `.grad` is touched).
    results: Option<Vec<Option<Tensor>>>,
    stats: BackwardStats,
    retain_graph: bool,
    create_graph: bool,
    lane: bool,
}

impl Pass<'_> {
    fn wanted(&self, n: &Node) -> bool {
        self.pruning.as_ref().is_none_or(|p| p.useful(n))
    }

    /// Records `g` as the gradient of each target that is the value at
    /// `at` of `node`.
    fn found(&mut self, node: &Node, at: u32, g: impl Fn() -> Tensor) {
        if let Some(results) = &mut self.results {
            self.targets
                .each_index(node, at, |k| results[k] = Some(g()));
        }
    }

    /// Visits a leaf or an op's node with its complete gradient `g`.
    fn visit(&mut self, node: &Node, g: Grad) -> Result<()> {
        self.stats.nodes_reached += 1;
        self.found(node, 0, || g.clone().into_tensor());
        match &node.kind {
            NodeKind::Leaf { .. } => {
                // A leaf whose handles are all gone has no one to read its gradient.
                let slot = node.grad_slot().filter(|_| self.results.is_none());
                if let Some(slot) = slot {
                    let mut slot = slot.lock().unwrap();
                    let g = g.into_tensor();
                    let g = if self.create_graph { g } else { g.detach() };
                    accumulate(&mut slot, g);
                }
            }
            NodeKind::Op(op) => {
                let needs: SmallVec<[bool; 4]> = op
                    .edges
                    .iter()
                    .map(|e| e.as_ref().is_some_and(|l| self.wanted(&l.node)))
                    .collect();
                if !needs.contains(&true) {
                    return Ok(());
                }
                self.stats.rules_run += 1;
                let input_grads = run_rule(node, op, &g.into_tensor(), &needs, self.retain_graph)?;
                for ((edge, gi), need) in op.edges.iter().zip(input_grads).zip(&needs) {
                    if let (Some(child), Some(gi), true) = (edge, gi, need) {
                        self.frontier.give(child, Grad::Tensor(gi));
                    }
                }
            }
            NodeKind::Segment(_) => unreachable!("a segment is swept"),
        }
        Ok(())
    }
}

fn not_differentiable() -> Error {
    Error::Backward {
        msg: "the output does not require grad: no leaf it depends on was marked with \
              requires_grad (or it was computed under no_grad)"
            .into(),
    }
}

/// The adjoint a root starts from: `g` (of its shape and dtype), or 1 for
/// a single-element output (a number for a 0-d float one: a loss's seed
/// makes no tensor).
fn seed(t: &Tensor, g: &Option<Tensor>) -> Result<Grad> {
    match g {
        Some(g) if g.shape() != t.shape() || g.dtype() != t.dtype() => Err(Error::Backward {
            msg: format!(
                "output gradient has shape {:?} ({:?}) but the output has shape {:?} ({:?})",
                g.shape(),
                g.dtype(),
                t.shape(),
                t.dtype()
            ),
        }),
        Some(g) => Ok(Grad::Tensor(g.clone())),
        None if t.ndim() == 0 && t.dtype().is_float() => Ok(number_grad(1.0, t.dtype())),
        None if t.numel() == 1 => Ok(Grad::Tensor(t.ones_like())),
        None => Err(Error::Backward {
            msg: format!(
                "an output of shape {:?} is not a scalar: pass its gradient (a vector-Jacobian product) with backward_with",
                t.shape()
            ),
        }),
    }
}

/// Runs one node's VJP rule on its saved tensors, checks what it returns, and
/// frees the saved tensors unless the graph is retained.
fn run_rule(
    node: &Node,
    op: &OpNode,
    g: &Tensor,
    needs: &[bool],
    retain_graph: bool,
) -> Result<SmallVec<[Option<Tensor>; 2]>> {
    let mut saved_slot = op.saved.lock().unwrap();
    let saved = saved_slot
        .as_ref()
        .ok_or_else(|| Error::GraphFreed { op: op.prim.name() })?;
    // The output is rebuilt with its own node, so that a rule reading it stays
    // differentiable under create_graph. While any level is open (forward
    // mode, vmap, a trace) the rule recomputes it instead, so that it carries
    // what those levels attach (tangents, the batch axis), and so that a
    // traced graph computes it (common-subexpression elimination then merges
    // it with the forward's).
    let dual = crate::interp::levels_open();
    let output = saved
        .output
        .as_deref()
        .cloned()
        .filter(|_| !dual)
        .map(|(storage, layout)| {
            Tensor::from_parts(
                storage,
                layout,
                crate::autograd::is_grad_enabled().then(|| {
                    let ptr = node as *const Node;
                    // SAFETY: every node lives in an `Arc` (see `attach_node`) that is
                    // alive here; this takes one more reference to it.
                    Link::of(unsafe {
                        Arc::increment_strong_count(ptr);
                        Arc::from_raw(ptr)
                    })
                }),
            )
        });
    let inputs = &saved.inputs;
    let grads = op.prim.vjp(inputs, output.as_ref(), g, needs)?;
    for (j, gi) in grads.iter().enumerate() {
        if let (true, Some(gi)) = (needs[j], gi) {
            let input = &inputs[j];
            if gi.shape() != input.shape() || gi.dtype() != input.dtype() {
                // A custom op's rule is the user's code; any other is ours.
                let whose = if op.prim.user_defined() {
                    "custom op"
                } else {
                    "internal error: built-in op"
                };
                return Err(Error::Backward {
                    msg: format!(
                        "{whose} `{}`: its VJP returned a gradient of {:?} {:?} for an input of {:?} {:?}",
                        op.prim.name(),
                        gi.dtype(),
                        gi.shape(),
                        input.dtype(),
                        input.shape()
                    ),
                });
            }
        }
    }
    if !retain_graph {
        *saved_slot = None;
    }
    Ok(grads)
}

/// Whether the graph above `root` reaches a leaf requiring gradients other
/// than through `inputs` (so gradients with respect to `inputs` depend on
/// other leaves, and must be differentiable for an outer derivative). A
/// leaf whose handles are all gone (one an inner gradient traced and
/// dropped) counts for nothing: no derivative can be asked of it any more,
/// and counting it would keep every later result attached to this graph.
pub(crate) fn depends_on_other_leaves(root: &Tensor, inputs: &[Tensor]) -> bool {
    let Some(root) = root.node() else {
        return false;
    };
    let running = Running::start();
    let mut seen = Pruning::new(running.alone);
    // The walk stops at the inputs (at a segment's value it goes on, into
    // all of the segment: it then may answer yes where it could say no).
    for input in inputs.iter().filter_map(Tensor::node) {
        if !matches!(input.kind, NodeKind::Segment(_)) {
            seen.first_sight(input);
        }
    }
    let mut stack: Vec<&Node> = vec![root];
    while let Some(node) = stack.pop() {
        if !seen.first_sight(node) {
            continue;
        }
        if let NodeKind::Leaf { .. } = node.kind {
            if node.grad_slot().is_some() {
                return true;
            }
        }
        stack.extend(children(node));
    }
    false
}

/// The gradients of `outputs` (scalars) with respect to `inputs`, like
/// `torch.autograd.grad`: `.grad` fields are left alone, and an input the
/// outputs do not depend on gets zeros. Only the branches that lead to an
/// input are visited.
///
/// ```
/// use chainrule::{autograd, Tensor};
/// let x = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
/// let y = (&x * &x).sum();
/// let g = autograd::grad(&[&y], &[&x]).unwrap();
/// assert_eq!(g[0].to_vec::<f64>(), vec![6.0]);
/// ```
pub fn grad(outputs: &[&Tensor], inputs: &[&Tensor]) -> Result<Vec<Tensor>> {
    grad_with(outputs, inputs, &BackwardOptions::default())
}

/// [`grad`] with options (`grad` is the adjoint of a single output; with
/// several outputs each must be a scalar).
pub fn grad_with(
    outputs: &[&Tensor],
    inputs: &[&Tensor],
    opts: &BackwardOptions,
) -> Result<Vec<Tensor>> {
    Ok(grad_with_stats(outputs, inputs, opts)?.0)
}

/// [`grad_with`], also reporting what the pass visited (how many rules it
/// ran: the branches it pruned ran none).
pub fn grad_with_stats(
    outputs: &[&Tensor],
    inputs: &[&Tensor],
    opts: &BackwardOptions,
) -> Result<(Vec<Tensor>, BackwardStats)> {
    let roots: SmallVec<[(&Tensor, Option<Tensor>); 1]> = outputs
        .iter()
        .map(|&o| {
            (
                o,
                if outputs.len() == 1 {
                    opts.grad.clone()
                } else {
                    None
                },
            )
        })
        .collect();
    let (stats, grads) = run(
        &roots,
        Some(inputs),
        true,
        opts.retain_graph,
        opts.create_graph,
        None,
    )?;
    Ok((grads, stats))
}

/// [`grad_with`] for a graph whose every live leaf is one of `inputs` (see
/// [`depends_on_other_leaves`]): every branch leads to an input or to a
/// dropped leaf, so the search for branches to prune is skipped (one walk
/// of the graph fewer: on a tape of many small nodes, each walk is a cache
/// miss per node).
pub(crate) fn grad_without_search(
    output: &Tensor,
    inputs: &[&Tensor],
    opts: &BackwardOptions,
) -> Result<Vec<Tensor>> {
    let roots = [(output, opts.grad.clone())];
    let (_, grads) = run(
        &roots,
        Some(inputs),
        false,
        opts.retain_graph,
        opts.create_graph,
        None,
    )?;
    Ok(grads)
}

impl Tensor {
    /// Accumulates `∂self/∂leaf` into the `.grad` of every leaf this scalar
    /// depends on that requires gradients; frees the saved intermediates.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).requires_grad();
    /// let y = (&x * &x).sum();
    /// y.backward().unwrap();
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), [2.0, 4.0, 6.0]);
    /// assert!(y.backward().is_err()); // the graph was freed
    /// ```
    pub fn backward(&self) -> Result<()> {
        self.backward_with(&BackwardOptions::default()).map(|_| ())
    }

    /// `backward` with an explicit output gradient (for non-scalar outputs),
    /// `retain_graph` and `create_graph`; returns what the pass visited.
    ///
    /// ```
    /// use chainrule::{BackwardOptions, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    /// let y = &x * &x; // not a scalar: give the output's gradient
    /// let v = Tensor::from_vec(vec![1.0f64, 0.5], &[2]);
    /// y.backward_with(&BackwardOptions { grad: Some(v), ..Default::default() }).unwrap();
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), [2.0, 2.0]);
    /// ```
    pub fn backward_with(&self, opts: &BackwardOptions) -> Result<BackwardStats> {
        Ok(run(
            &[(self, opts.grad.clone())],
            None,
            true,
            opts.retain_graph,
            opts.create_graph,
            None,
        )?
        .0)
    }

    /// [`Tensor::backward`], calling `ready(i)` once for each leaf
    /// `watched[i]` as soon as its `.grad` is final for this pass, while
    /// the pass goes on through the rest of the graph (PyTorch's
    /// post-accumulate-grad hooks). A leaf is final once every node that
    /// reads it has been visited; one the output does not read is reported
    /// at the start (its `.grad` is left as it was). Data-parallel training
    /// (`distributed`) starts reducing a layer's gradients here.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let w1 = Tensor::from_vec(vec![2.0f64], &[1]).requires_grad();
    /// let w2 = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
    /// let loss = ((&w1 * 5.0).exp() * &w2).sum(); // w2 is read last, so final first
    /// let mut order = Vec::new();
    /// loss.backward_watching(&[w1.clone(), w2.clone()], &mut |i| order.push(i)).unwrap();
    /// assert_eq!(order, [1, 0]);
    /// assert!(w1.grad().is_some() && w2.grad().is_some());
    /// ```
    pub fn backward_watching(
        &self,
        watched: &[Tensor],
        ready: &mut dyn FnMut(usize),
    ) -> Result<()> {
        let watch = ready::Watched {
            leaves: watched,
            on_ready: ready,
        };
        run(&[(self, None)], None, true, false, false, Some(watch))?;
        Ok(())
    }
}
