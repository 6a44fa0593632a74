//! Partitioning a graph into fused kernels and interpreted nodes, in one
//! pass over its nodes in order.
//!
//! - An elementwise node joins the open kernel of its shape that computes one
//!   of its inputs, or opens a new one: a chain of elementwise ops becomes
//!   one loop, its intermediates kept in registers.
//! - A reduction (and a dot product of two vectors) joins the kernel that
//!   computes its input and folds it as the loop runs; its result is in
//!   memory once that kernel has run.
//! - A movement op (permute, narrow, broadcast, reshape of a contiguous
//!   value) is a view: kernels read through it with strides, nothing is
//!   copied.
//! - A concatenation or a zero padding whose readers are all kernels of its
//!   shape is not built: each reading kernel splits its loop at the pieces'
//!   bounds, and each part of the loop reads its piece in place (or the
//!   constant zero), as XLA fuses them into their consumers. Any other
//!   reader has it built by the interpreter.
//! - Anything else (matmul, gathers, custom ops…) runs through the
//!   interpreter. A value it reads is stored by its kernel, which is then
//!   closed: it runs before the interpreted node.
//!
//! Values that leave their kernel (read by another kernel with another
//! shape, by the interpreter, or returned) get a buffer; buffers share slots
//! of one arena when their lifetimes do not overlap.

use super::kernel::{Instr, Kernel};
use super::stream::{self, Stream};
use crate::graph::{GOp, Graph, NodeId};
use crate::layout::Layout;
use crate::ops::{BinaryOp, Prim, ReduceOp};
use crate::DType;

/// The most nodes one kernel takes: a longer chain is split into kernels
/// of this size, which bounds the code generator's time per function.
const MAX_KERNEL_NODES: usize = 512;

/// Where a node's value is while a compiled graph runs.
#[derive(Clone, Debug)]
pub(crate) enum Place {
    /// Computed inside kernel `k`, kept in registers.
    InKernel(usize),
    /// The graph's `k`-th input, as fed.
    Fed(usize),
    /// The node's constant.
    Constant,
    /// Written by a kernel into an arena slot.
    Arena,
    /// Computed by the interpreter.
    Interpreted,
    /// A strided view of another node's memory.
    View { of: NodeId, layout: Layout },
    /// A concatenation or padding along `axis` that only kernels read, each
    /// part of their loop from one piece.
    Pieces { axis: usize, pieces: Vec<Piece> },
}

/// One piece of a [`Place::Pieces`] value: elements `start .. start + len`
/// along its axis, read from memory or zeros.
#[derive(Clone, Debug)]
pub(crate) struct Piece {
    pub start: usize,
    pub len: usize,
    /// The memory it is read from and how it lies there (the piece's shape);
    /// `None`: zeros.
    pub source: Option<(NodeId, Layout)>,
}

/// One step of a compiled graph.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// Kernel `kernel`, its operands in the memory of these nodes.
    Kernel {
        kernel: usize,
        operands: Vec<NodeId>,
    },
    Interpret(NodeId),
    /// Stream `k` of the plan (one pass over a large matrix).
    Stream(usize),
}

/// A partitioned graph, ready for code generation.
pub(crate) struct Plan {
    pub place: Vec<Place>,
    pub steps: Vec<Step>,
    pub kernels: Vec<Kernel>,
    pub streams: Vec<Stream>,
    /// Per node in the arena: its slot.
    pub slot: Vec<Option<usize>>,
    /// Each arena slot's dtype and length in elements.
    pub slots: Vec<(DType, usize)>,
}

/// A kernel while the pass collects its members.
struct Group {
    shape: Vec<usize>,
    members: Vec<NodeId>,
    /// Whether its position among the steps is still open (nothing outside
    /// has read its memory yet).
    open: bool,
    /// The axis along which its loop is split to read [`Place::Pieces`]
    /// values, and where.
    split: Option<(usize, Vec<usize>)>,
    /// The axes its reductions fold (a loop split along one would restart
    /// the fold).
    reduced: Vec<usize>,
}

struct Partition<'g> {
    g: &'g Graph,
    place: Vec<Place>,
    stored: Vec<bool>,
    groups: Vec<Group>,
    /// Steps in order: a kernel by group index, or an interpreted node.
    order: Vec<Result<usize, NodeId>>,
    fuse: bool,
    streams: Vec<Stream>,
    /// Per node: the stream that computes it.
    streamed: Vec<Option<usize>>,
}

/// How the pass treats a node.
enum Kind {
    Elementwise,
    Reduction,
    View,
    /// Concatenation and padding: [`Place::Pieces`] when it can be.
    Pieces,
    Interpreted,
}

fn kind(g: &Graph, id: NodeId) -> Kind {
    let node = g.node(id);
    let GOp::Prim(p) = &node.op else {
        return Kind::View; // inputs and constants: memory of their own
    };
    let input = |k: usize| g.node(node.inputs[k]);
    // Kernels hold floats; integer and bool values go through memory.
    if !node.dtype.is_float() || node.inputs.iter().any(|&i| !g.node(i).dtype.is_float()) {
        return Kind::Interpreted;
    }
    match p {
        Prim::Unary(_)
        | Prim::Binary(_)
        | Prim::Mask(_)
        | Prim::Where
        | Prim::Cast(_)
        | Prim::Contiguous => Kind::Elementwise,
        Prim::Reduce { .. } => Kind::Reduction,
        Prim::Matmul if input(0).shape.len() == 1 && input(1).shape.len() == 1 => Kind::Reduction,
        Prim::Permute(_)
        | Prim::BroadcastTo(_)
        | Prim::Narrow { .. }
        | Prim::StopGradient
        | Prim::Reshape(_) => Kind::View,
        Prim::Concat { .. } | Prim::Pad { .. } => Kind::Pieces,
        _ => Kind::Interpreted,
    }
}

impl<'g> Partition<'g> {
    fn group_of(&self, id: NodeId) -> Option<usize> {
        match self.place[id.0 as usize] {
            Place::InKernel(k) => Some(k),
            _ => None,
        }
    }

    /// Gives `id` memory (a kernel that computes it stores it) and fixes the
    /// position of that kernel: it runs before whatever reads the memory.
    fn materialize(&mut self, id: NodeId) {
        match self.place[id.0 as usize] {
            Place::InKernel(k) => {
                self.stored[id.0 as usize] = true;
                self.close(k);
            }
            Place::Pieces { .. } => {
                // Built where it is first needed: its pieces are in memory.
                self.place[id.0 as usize] = Place::Interpreted;
                self.order.push(Err(id));
            }
            _ => {}
        }
    }

    fn close(&mut self, k: usize) {
        if self.groups[k].open {
            self.groups[k].open = false;
            self.order.push(Ok(k));
        }
    }

    /// The memory behind `id` and how `id` lies in it.
    fn memory(&self, id: NodeId) -> (NodeId, Layout) {
        match &self.place[id.0 as usize] {
            Place::View { of, layout } => (*of, layout.clone()),
            _ => (id, Layout::contiguous(&self.g.node(id).shape)),
        }
    }

    fn node(&mut self, id: NodeId) {
        let i = id.0 as usize;
        let node = self.g.node(id);
        if let Some(k) = self.streamed[i] {
            // The stream runs where its first node (X w) was: everything it
            // reads is computed before that.
            if self.streams[k].p == id {
                let reads: Vec<NodeId> = self.streams[k].reads().collect();
                reads.into_iter().for_each(|j| self.materialize(j));
                self.order.push(Err(id));
            }
            self.place[i] = Place::Interpreted;
            return;
        }
        match (&node.op, kind(self.g, id)) {
            (GOp::Input(_), _) => {
                let k = self.g.inputs.iter().position(|&j| j == id);
                self.place[i] = Place::Fed(k.expect("inputs are listed"));
            }
            (GOp::Constant(_), _) => self.place[i] = Place::Constant,
            (_, Kind::View) => self.view(id),
            (_, Kind::Pieces) if self.fuse => self.pieces(id),
            (_, Kind::Elementwise) => self.join(id, &node.shape.clone()),
            (_, Kind::Reduction) => {
                let shape = self.g.node(node.inputs[0]).shape.clone();
                self.join(id, &shape);
                self.stored[i] = true;
            }
            (_, Kind::Interpreted | Kind::Pieces) => {
                for &j in &node.inputs {
                    self.materialize(j);
                }
                self.place[i] = Place::Interpreted;
                self.order.push(Err(id));
            }
        }
    }

    /// Places a concatenation or padding as [`Place::Pieces`], its pieces in
    /// memory.
    fn pieces(&mut self, id: NodeId) {
        let node = self.g.node(id);
        let length = |j: NodeId, axis: usize| self.g.node(j).shape[axis];
        let (axis, parts): (usize, Vec<(usize, Option<NodeId>)>) = match &node.op {
            GOp::Prim(Prim::Concat { axis }) => (
                *axis,
                node.inputs
                    .iter()
                    .map(|&j| (length(j, *axis), Some(j)))
                    .collect(),
            ),
            GOp::Prim(Prim::Pad { axis, start, size }) => {
                let len = length(node.inputs[0], *axis);
                let after = size - start - len;
                (
                    *axis,
                    vec![(*start, None), (len, Some(node.inputs[0])), (after, None)],
                )
            }
            _ => unreachable!("only concatenations and paddings are pieces"),
        };
        let mut pieces = Vec::with_capacity(parts.len());
        let mut start = 0;
        for (len, source) in parts {
            if len > 0 {
                let source = source.map(|j| {
                    self.materialize(j);
                    self.memory(j)
                });
                pieces.push(Piece { start, len, source });
            }
            start += len;
        }
        self.place[id.0 as usize] = Place::Pieces { axis, pieces };
    }

    fn in_pieces(&self, j: NodeId) -> bool {
        matches!(self.place[j.0 as usize], Place::Pieces { .. })
    }

    /// Whether kernel `k` (over `shape`, about to take a node that folds
    /// `folds`) can read `j` in pieces: `j` has its shape, and a split along
    /// `j`'s axis agrees with the kernel's split and crosses no fold.
    fn splits_at_pieces(&self, j: NodeId, shape: &[usize], k: usize, folds: &[usize]) -> bool {
        let Place::Pieces { axis, .. } = &self.place[j.0 as usize] else {
            return false;
        };
        let group = &self.groups[k];
        self.g.node(j).shape == shape
            && !folds.contains(axis)
            && !group.reduced.contains(axis)
            && group.split.as_ref().is_none_or(|(a, _)| a == axis)
    }

    /// Splits kernel `k`'s loop at the bounds of `j`'s pieces.
    fn split_at_pieces(&mut self, k: usize, j: NodeId) {
        let Place::Pieces { axis, pieces } = &self.place[j.0 as usize] else {
            unreachable!("checked by splits_at_pieces")
        };
        let (axis, starts) = (*axis, pieces.iter().map(|p| p.start));
        let split = self.groups[k]
            .split
            .get_or_insert_with(|| (axis, Vec::new()));
        split.1.extend(starts);
    }

    /// Whether open kernels `a` and `b` can be one loop: their splits agree.
    fn mergeable(&self, a: usize, b: usize) -> bool {
        let (a, b) = (&self.groups[a], &self.groups[b]);
        let crosses = |x: &Group, y: &Group| {
            x.split
                .as_ref()
                .is_some_and(|(axis, _)| y.reduced.contains(axis))
        };
        let axes_agree = match (&a.split, &b.split) {
            (Some((x, _)), Some((y, _))) => x == y,
            _ => true,
        };
        axes_agree && !crosses(a, b) && !crosses(b, a)
    }

    fn view(&mut self, id: NodeId) {
        let node = self.g.node(id);
        let x = node.inputs[0];
        self.materialize(x);
        let (of, l) = self.memory(x);
        let layout = match &node.op {
            GOp::Prim(Prim::Permute(p)) => Some(l.permute(p)),
            GOp::Prim(Prim::BroadcastTo(s)) => l.broadcast_to(s),
            GOp::Prim(Prim::Narrow { axis, start, len }) => Some(l.narrow(*axis, *start, *len)),
            GOp::Prim(Prim::StopGradient) => Some(l),
            GOp::Prim(Prim::Reshape(s)) => l.reshape_strided(s),
            _ => None,
        };
        match layout {
            Some(layout) => self.place[id.0 as usize] = Place::View { of, layout },
            None => {
                self.place[id.0 as usize] = Place::Interpreted;
                self.order.push(Err(id));
            }
        }
    }

    /// Puts `id` in a kernel over `shape`: the open one that computes an
    /// input of the same shape, else a new one. Inputs it cannot read in
    /// registers (or in pieces) get memory.
    fn join(&mut self, id: NodeId, shape: &[usize]) {
        let node = self.g.node(id);
        let folds = folded_axes(self.g, id);
        let in_registers = |p: &Self, j: NodeId| {
            p.group_of(j).is_some_and(|k| {
                p.fuse
                    && p.groups[k].open
                    && p.groups[k].shape == shape
                    && p.g.node(j).shape == shape
                    && !matches!(kind(p.g, j), Kind::Reduction)
                    && p.groups[k]
                        .split
                        .as_ref()
                        .is_none_or(|(a, _)| !folds.contains(a))
            })
        };
        let mut target: Option<usize> = None;
        for &j in &node.inputs {
            let full = self
                .group_of(j)
                .is_some_and(|k| self.groups[k].members.len() >= MAX_KERNEL_NODES);
            if in_registers(self, j) && !full {
                let k = self.group_of(j).expect("in a kernel");
                target = match target {
                    Some(t) if t != k && self.mergeable(t, k) => Some(self.merge(t, k)),
                    Some(t) => Some(t), // k's value is stored below
                    None => Some(k),
                };
            }
        }
        for &j in &node.inputs {
            if !self.in_pieces(j) && (self.group_of(j) != target || !in_registers(self, j)) {
                self.materialize(j);
            }
        }
        if target.is_some_and(|t| !self.groups[t].open) {
            // Storing an input closed the kernel: read everything from memory.
            target = None;
            for &j in &node.inputs {
                if !self.in_pieces(j) {
                    self.materialize(j);
                }
            }
        }
        let k = target.unwrap_or_else(|| {
            self.groups.push(Group {
                shape: shape.to_vec(),
                members: Vec::new(),
                open: true,
                split: None,
                reduced: Vec::new(),
            });
            self.groups.len() - 1
        });
        // Values in pieces: read in place where the loop can split at their
        // bounds (one after the other: the first fixes the split's axis),
        // built by the interpreter otherwise.
        for &j in &node.inputs {
            if self.in_pieces(j) {
                if self.splits_at_pieces(j, shape, k, &folds) {
                    self.split_at_pieces(k, j);
                } else {
                    self.materialize(j);
                }
            }
        }
        self.groups[k].reduced.extend(folds);
        self.groups[k].members.push(id);
        self.place[id.0 as usize] = Place::InKernel(k);
        if !self.fuse {
            self.close(k);
        }
    }

    /// Merges two open kernels (neither has been read from memory yet, so
    /// one loop can compute both), the smaller into the larger so that a
    /// long graph merges in O(n log n); returns the one that remains.
    fn merge(&mut self, a: usize, b: usize) -> usize {
        let (into, from) = if self.groups[a].members.len() >= self.groups[b].members.len() {
            (a, b)
        } else {
            (b, a)
        };
        let moved = std::mem::take(&mut self.groups[from].members);
        for &m in &moved {
            self.place[m.0 as usize] = Place::InKernel(into);
        }
        self.groups[into].members.extend(moved);
        let reduced = std::mem::take(&mut self.groups[from].reduced);
        self.groups[into].reduced.extend(reduced);
        if let Some((axis, bounds)) = self.groups[from].split.take() {
            let split = self.groups[into]
                .split
                .get_or_insert_with(|| (axis, Vec::new()));
            split.1.extend(bounds);
        }
        self.groups[from].open = false; // empty: emits nothing
        into
    }
}

/// The axes of its kernel's loop that node `id` folds: a reduction's axes,
/// a dot product's one; none for an elementwise op.
fn folded_axes(g: &Graph, id: NodeId) -> Vec<usize> {
    match &g.node(id).op {
        GOp::Prim(Prim::Reduce { axes, .. }) => axes.to_vec(),
        GOp::Prim(Prim::Matmul) => vec![0],
        _ => Vec::new(),
    }
}

/// Partitions `g` (`fuse = false`: one kernel per node) and lays out the
/// kernels and the arena.
pub(crate) fn plan(g: &Graph, fuse: bool) -> Plan {
    let n = g.nodes.len();
    let streams = if fuse { stream::find(g) } else { Vec::new() };
    let mut streamed = vec![None; n];
    for (k, s) in streams.iter().enumerate() {
        s.computes().for_each(|j| streamed[j.0 as usize] = Some(k));
    }
    let mut p = Partition {
        g,
        place: vec![Place::Constant; n],
        stored: vec![false; n],
        groups: Vec::new(),
        order: Vec::new(),
        fuse,
        streams,
        streamed,
    };
    for i in 0..n {
        p.node(NodeId(i as u32));
    }
    for &o in &g.outputs {
        p.materialize(o);
    }
    for k in 0..p.groups.len() {
        p.close(k);
    }
    for i in 0..n {
        if p.stored[i] {
            p.place[i] = Place::Arena;
        }
    }
    let mut kernels = Vec::new();
    let mut steps = Vec::new();
    for s in &p.order {
        match *s {
            Ok(k) if p.groups[k].members.is_empty() => {}
            Ok(k) => {
                for segment in segments(&p.groups[k]) {
                    let (kernel, operands) = lower(&p, &p.groups[k], segment);
                    steps.push(Step::Kernel {
                        kernel: kernels.len(),
                        operands,
                    });
                    kernels.push(kernel);
                }
            }
            Err(id) => steps.push(match p.streamed[id.0 as usize] {
                Some(k) => Step::Stream(k),
                None => Step::Interpret(id),
            }),
        }
    }
    let (slot, slots) = arena(g, &p.place, &steps, &p.streams);
    Plan {
        place: p.place,
        steps,
        kernels,
        streams: p.streams,
        slot,
        slots,
    }
}

/// The parts of a group's loop: the whole, or the stretches between the
/// bounds of the pieces it reads, as (axis, start, length).
fn segments(group: &Group) -> Vec<Option<(usize, usize, usize)>> {
    let Some((axis, bounds)) = &group.split else {
        return vec![None];
    };
    let n = group.shape[*axis];
    let mut cuts: Vec<usize> = bounds.iter().copied().chain([0, n]).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| Some((*axis, w[0], w[1] - w[0])))
        .collect()
}

/// The kernel of a group over one segment of its loop (all of it for
/// `None`), and the node whose memory each operand is.
fn lower(
    p: &Partition,
    group: &Group,
    segment: Option<(usize, usize, usize)>,
) -> (Kernel, Vec<NodeId>) {
    let g = p.g;
    // Every layout over the group's shape, restricted to the segment.
    let part = |l: Layout| match segment {
        Some((axis, start, len)) => l.narrow(axis, start, len),
        None => l,
    };
    let mut shape = group.shape.clone();
    if let Some((axis, _, len)) = segment {
        shape[axis] = len;
    }
    let mut k = Kernel::new(&shape);
    let mut operands: Vec<NodeId> = Vec::new();
    // Sparse: a dense vector per kernel would cost the graph's length each.
    let mut value: rustc_hash::FxHashMap<NodeId, usize> = Default::default();
    let mut operand = |k: &mut Kernel, of: NodeId, layout: &Layout, dtype: DType| {
        operands.push(of);
        k.operand(layout, dtype)
    };
    let mut members = group.members.clone();
    members.sort(); // graph order: every member after its inputs
    for m in members {
        let node = g.node(m);
        let mut args = Vec::new();
        for &j in &node.inputs {
            let v = match value.get(&j) {
                Some(&v) => v,
                _ => {
                    // Loaded once per kernel, however many members read it.
                    let dtype = g.node(j).dtype;
                    let v = match &p.place[j.0 as usize] {
                        Place::Pieces { pieces, .. } => {
                            let (axis, start, len) = segment.expect("pieces split the loop");
                            let piece = pieces
                                .iter()
                                .find(|q| q.start <= start && start < q.start + q.len)
                                .expect("the pieces cover the axis");
                            match &piece.source {
                                Some((of, l)) => {
                                    let l = l.narrow(axis, start - piece.start, len);
                                    let o = operand(&mut k, *of, &l, dtype);
                                    k.push(Instr::Load(o), dtype)
                                }
                                None => k.push(Instr::Const(0.0), dtype),
                            }
                        }
                        _ => {
                            let (of, l) = p.memory(j);
                            let l = l.broadcast_to(&group.shape).expect("shapes were checked");
                            let o = operand(&mut k, of, &part(l), dtype);
                            k.push(Instr::Load(o), dtype)
                        }
                    };
                    value.insert(j, v);
                    v
                }
            };
            args.push(v);
        }
        let GOp::Prim(prim) = &node.op else {
            unreachable!("kernels hold primitives")
        };
        let dt = node.dtype;
        let v = match prim {
            Prim::Unary(op) => k.push(Instr::Unary(*op, args[0]), dt),
            Prim::Binary(op) => k.push(Instr::Binary(*op, args[0], args[1]), dt),
            Prim::Mask(op) => k.push(Instr::Compare(*op, args[0], args[1]), dt),
            Prim::Where => k.push(Instr::Where(args[0], args[1], args[2]), dt),
            Prim::Cast(to) => k.push(Instr::Cast(*to, args[0]), dt),
            Prim::Contiguous => args[0],
            Prim::Reduce { op, axes, .. } => {
                let l = reduced_layout(&group.shape, axes);
                let o = operand(&mut k, m, &part(l), dt);
                k.push(
                    Instr::Reduce {
                        op: *op,
                        operand: o,
                        value: args[0],
                    },
                    dt,
                );
                continue;
            }
            Prim::Matmul => {
                let product = k.push(Instr::Binary(BinaryOp::Mul, args[0], args[1]), dt);
                let l = reduced_layout(&group.shape, &[0]);
                let o = operand(&mut k, m, &part(l), dt);
                let sum = ReduceOp::Sum;
                k.push(
                    Instr::Reduce {
                        op: sum,
                        operand: o,
                        value: product,
                    },
                    dt,
                );
                continue;
            }
            _ => unreachable!("only elementwise ops and reductions join kernels"),
        };
        value.insert(m, v);
        if p.stored[m.0 as usize] {
            let l = Layout::contiguous(&node.shape);
            let o = operand(&mut k, m, &part(l), dt);
            k.push(
                Instr::Store {
                    operand: o,
                    value: v,
                },
                dt,
            );
        }
    }
    k.collapse();
    (k, operands)
}

/// The layout, over the input's shape, of a reduction's row-major output:
/// stride 0 along the reduced axes.
fn reduced_layout(shape: &[usize], axes: &[usize]) -> Layout {
    let kept: Vec<usize> = (0..shape.len())
        .map(|a| if axes.contains(&a) { 1 } else { shape[a] })
        .collect();
    let mut l = Layout::contiguous(&kept);
    for &a in axes {
        l.strides[a] = 0;
    }
    l.shape = shape.iter().copied().collect();
    l
}

/// Assigns arena slots: a buffer takes a free slot of its dtype (the
/// smallest that fits, else the largest, grown) and frees it after its last
/// reader. Returned values keep theirs.
fn arena(
    g: &Graph,
    place: &[Place],
    steps: &[Step],
    streams: &[Stream],
) -> (Vec<Option<usize>>, Vec<(DType, usize)>) {
    let n = g.nodes.len();
    let base = |j: NodeId| match &place[j.0 as usize] {
        Place::View { of, .. } => *of,
        _ => j,
    };
    let mut last_use = vec![0usize; n];
    let mut born = vec![usize::MAX; n];
    for (s, step) in steps.iter().enumerate() {
        let (reads, writes): (Vec<NodeId>, Vec<NodeId>) = match step {
            Step::Kernel { operands, .. } => (operands.clone(), operands.clone()),
            Step::Interpret(id) => (
                g.node(*id).inputs.iter().map(|&j| base(j)).collect(),
                vec![],
            ),
            Step::Stream(k) => (streams[*k].reads().map(base).collect(), vec![]),
        };
        for j in reads {
            last_use[j.0 as usize] = s;
        }
        for j in writes {
            born[j.0 as usize] = born[j.0 as usize].min(s);
        }
    }
    for &o in &g.outputs {
        last_use[base(o).0 as usize] = usize::MAX;
    }
    // Per step: the arena buffers it creates and those it reads last.
    let mut created: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    let mut ending: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    for i in 0..n {
        if born[i] != usize::MAX && matches!(place[i], Place::Arena) {
            created[born[i]].push(i);
            if last_use[i] < steps.len() {
                ending[last_use[i]].push(i);
            }
        }
    }
    let mut slot = vec![None; n];
    let mut slots: Vec<(DType, usize)> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for s in 0..steps.len() {
        for &i in &created[s] {
            let (dtype, len) = (g.nodes[i].dtype, g.nodes[i].shape.iter().product::<usize>());
            let fits = free
                .iter()
                .enumerate()
                .filter(|(_, &f)| slots[f].0 == dtype)
                .min_by_key(|(_, &f)| (slots[f].1 < len, slots[f].1.abs_diff(len)));
            let f = match fits {
                Some((at, _)) => free.swap_remove(at),
                None => {
                    slots.push((dtype, 0));
                    slots.len() - 1
                }
            };
            slots[f].1 = slots[f].1.max(len);
            slot[i] = Some(f);
        }
        for &i in &ending[s] {
            free.extend(slot[i]);
        }
    }
    (slot, slots)
}
