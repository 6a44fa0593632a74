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
//!   reader has it built by the interpreter. A piece that is a shifted
//!   stretch of a value the reading loop itself computes (`ode`'s
//!   `concat(1, z[..n−1])` with `z` the stage before) is not stored: the
//!   loop carries it from earlier iterations (backwards for a shift the
//!   other way), which fuses a whole integration step into one loop. So
//!   a narrow of a value still in a kernel stays a view of its registers
//!   until something reads it from memory.
//! - An `index_select` of floats whose readers are all kernels is not
//!   built either: each reading kernel loads the selected elements where
//!   they are (a gathered operand, indexed by the index's memory), as XLA
//!   fuses a gather into its consumer. Any other reader has it built by the
//!   interpreter.
//! - Anything else (matmul, other gathers, custom ops…) runs through the
//!   interpreter. A value it reads is stored by its kernel, which is then
//!   closed: it runs before the interpreted node.
//!
//! Values that leave their kernel (read by another kernel with another
//! shape, by the interpreter, or returned) get a buffer; buffers share slots
//! of one arena when their lifetimes do not overlap.

use super::kernel::{Gather, Instr, Kernel, Part, Split};
use super::stream::{self, Stream};
use crate::graph::{GOp, Graph, NodeId};
use crate::layout::{Dims, Layout};
use crate::ops::{BinaryOp, Prim, ReduceOp};
use crate::{DType, Tensor};

/// The most nodes one kernel takes: a longer chain is split into kernels
/// of this size, which bounds the code generator's time per function.
const MAX_KERNEL_NODES: usize = 512;

/// The longest chain of instructions a loop that carries values between its
/// iterations takes: about one step of `ode`'s RK4 (see
/// [`Partition::too_deep`]; 13 measured best of 4–52 there).
const MAX_CARRIED_CHAIN: usize = 13;

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
    /// Written by a kernel straight into its part of concatenation `of`'s
    /// slot, `offset` elements in (see [`write_in_place`]).
    Within { of: NodeId, offset: usize },
    /// Computed by the interpreter.
    Interpreted,
    /// A strided view of another node's memory.
    View { of: NodeId, layout: Layout },
    /// A concatenation or padding along `axis` that only kernels read, each
    /// part of their loop from one piece.
    Pieces { axis: usize, pieces: Vec<Piece> },
    /// An `index_select` that only kernels read, each by a [`Gathering`].
    Gathered,
}

/// How kernels read an `index_select` along `axis` in place: from `of`'s
/// memory (laid out as `layout`, the selected value's input) at the
/// positions in `index`'s memory.
#[derive(Clone, Debug)]
struct Gathering {
    of: NodeId,
    layout: Layout,
    index: NodeId,
    axis: usize,
}

/// Whether constant `t` is read where it lies, through its strides: when
/// it repeats elements of its buffer (a stride 0, as a tangent seed
/// expanded over a batch does), where making it contiguous would write out
/// every copy on each run, for a kernel to read them all back.
pub(crate) fn read_as_laid_out(t: &Tensor) -> bool {
    t.layout().repeats()
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
    /// When the piece is a shifted stretch of a value still in a kernel's
    /// registers (`ode`'s `concat(1, y[..n−1])`): that value and the shift
    /// (element `i` of the piece is element `i − shift` of the value). A
    /// reader in the same loop takes it from an earlier iteration; any other
    /// reader has the value stored first.
    pub carry: Option<(NodeId, isize)>,
}

/// One step of a compiled graph.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// Kernel `kernel`, its pointer table the memory of these nodes.
    Kernel {
        kernel: usize,
        operands: Vec<NodeId>,
        /// Indices computed at run time that the kernel gathers by, each
        /// with the length of the axis it indexes: checked before it runs.
        checks: Vec<(NodeId, usize)>,
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
    /// Concatenations whose pieces kernels write in place.
    pub in_place: usize,
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
    /// Once it reads a value carried from other iterations: whether from
    /// later ones (the loop then runs backwards).
    descending: Option<bool>,
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
    /// Per node in a kernel: the longest chain of its kernel's instructions
    /// that ends at it (values carried from other iterations included).
    depth: Vec<usize>,
    /// Per node: the last node that computes from it, through views and
    /// pieces (`usize::MAX` for outputs).
    last_read: Vec<usize>,
    /// The `index_select`s kernels read in place. A kernel of the same
    /// shape reads one so even once it is also built for another reader:
    /// the building may come after that kernel runs.
    gathers: rustc_hash::FxHashMap<NodeId, Gathering>,
}

/// How the pass treats a node.
enum Kind {
    Elementwise,
    Reduction,
    View,
    /// Concatenation and padding: [`Place::Pieces`] when it can be.
    Pieces,
    /// `index_select`: [`Place::Gathered`] when it can be.
    Gather,
    Interpreted,
}

fn kind(g: &Graph, id: NodeId) -> Kind {
    let node = g.node(id);
    let GOp::Prim(p) = &node.op else {
        return Kind::View; // inputs and constants: memory of their own
    };
    let input = |k: usize| g.node(node.inputs[k]);
    if matches!(p, Prim::IndexSelect { .. }) && node.dtype.is_float() {
        return Kind::Gather;
    }
    // Kernels hold floats; integer and bool values go through memory.
    if !node.dtype.is_float() || node.inputs.iter().any(|&i| !g.node(i).dtype.is_float()) {
        return Kind::Interpreted;
    }
    match p {
        _ if p.maps_elements() => Kind::Elementwise,
        Prim::Contiguous => Kind::Elementwise,
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
                // Built where it is first needed, from its pieces' memory.
                self.store_carried(id);
                self.place[id.0 as usize] = Place::Interpreted;
                self.order.push(Err(id));
            }
            Place::View { of, .. } => self.materialize(of),
            Place::Gathered => {
                // Built where it is first needed; its input is in memory.
                self.place[id.0 as usize] = Place::Interpreted;
                self.order.push(Err(id));
            }
            _ => {}
        }
    }

    /// Stores the values that pieces of `j` would carry (`j` is read from
    /// memory).
    fn store_carried(&mut self, j: NodeId) {
        for v in self.carried(j) {
            self.materialize(v);
        }
    }

    /// The values that pieces of `j` take from a kernel's registers.
    fn carried(&self, j: NodeId) -> Vec<NodeId> {
        match &self.place[j.0 as usize] {
            Place::Pieces { pieces, .. } => {
                pieces.iter().filter_map(|p| p.carry).map(|c| c.0).collect()
            }
            _ => Vec::new(),
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
            Place::Constant => match &self.g.node(id).op {
                GOp::Constant(t) if read_as_laid_out(t) => {
                    // Offsets from the element the run binds.
                    let mut l = t.layout().clone();
                    l.offset = 0;
                    (id, l)
                }
                _ => (id, Layout::contiguous(&self.g.node(id).shape)),
            },
            Place::Within { of, offset } => {
                let mut l = Layout::contiguous(&self.g.node(id).shape);
                l.offset = *offset;
                (*of, l)
            }
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
            (_, Kind::Gather) if self.fuse && self.gatherable(id) => self.gather(id),
            (_, Kind::Elementwise) => self.join(id, &node.shape.clone()),
            (_, Kind::Reduction) => {
                let shape = self.g.node(node.inputs[0]).shape.clone();
                self.join(id, &shape);
                self.stored[i] = true;
            }
            (_, Kind::Interpreted | Kind::Pieces | Kind::Gather) => {
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
                let carry = source.and_then(|j| self.shifted(j, id, axis, start));
                let source = source.map(|j| {
                    if carry.is_none() {
                        self.materialize(j);
                    }
                    self.memory(j)
                });
                pieces.push(Piece {
                    start,
                    len,
                    source,
                    carry,
                });
            }
            start += len;
        }
        self.place[id.0 as usize] = Place::Pieces { axis, pieces };
    }

    /// Whether `index_select` node `id` can be read in place: its index has
    /// memory of its own, and a constant one is in range (one computed at
    /// run time is checked before each kernel that gathers by it).
    fn gatherable(&self, id: NodeId) -> bool {
        let node = self.g.node(id);
        let GOp::Prim(Prim::IndexSelect { axis }) = node.op else {
            return false;
        };
        let (src, index) = (node.inputs[0], node.inputs[1]);
        let len = self.g.node(src).shape[axis];
        let in_range = match &self.g.node(index).op {
            GOp::Constant(t) => crate::ops::index::check_positions("index_select", t, len).is_ok(),
            _ => true,
        };
        let own_memory = matches!(
            self.place[index.0 as usize],
            Place::Fed(_) | Place::Constant | Place::Interpreted
        );
        in_range && own_memory && self.g.node(index).dtype == DType::I64
    }

    /// Places an `index_select` as [`Place::Gathered`], its input in memory.
    fn gather(&mut self, id: NodeId) {
        let node = self.g.node(id);
        let GOp::Prim(Prim::IndexSelect { axis }) = node.op else {
            unreachable!("only index_select gathers")
        };
        let (src, index) = (node.inputs[0], node.inputs[1]);
        self.materialize(src);
        let (of, layout) = self.memory(src);
        let gathering = Gathering {
            of,
            layout,
            index,
            axis,
        };
        self.gathers.insert(id, gathering);
        self.place[id.0 as usize] = Place::Gathered;
    }

    /// Whether kernels read `j` in place without its being built.
    fn read_in_place(&self, j: NodeId) -> bool {
        matches!(
            self.place[j.0 as usize],
            Place::Pieces { .. } | Place::Gathered
        )
    }

    /// Whether piece `j` of `whole` (at `start` along `axis`) is a shifted
    /// stretch of a value in an open kernel's registers, and which: `j` is
    /// a narrow, not yet stored, of a value of `whole`'s shape along `axis`,
    /// the only axis longer than 1 (a carried value is one register, not a
    /// row).
    fn shifted(
        &self,
        j: NodeId,
        whole: NodeId,
        axis: usize,
        start: usize,
    ) -> Option<(NodeId, isize)> {
        let node = self.g.node(j);
        let GOp::Prim(Prim::Narrow {
            axis: a,
            start: from,
            ..
        }) = node.op
        else {
            return None;
        };
        let v = node.inputs[0];
        let shape = &self.g.node(whole).shape;
        let one_axis = shape.iter().enumerate().all(|(b, &d)| b == axis || d == 1);
        let deferred = matches!(self.place[j.0 as usize], Place::View { of, .. } if of == v)
            && self.group_of(v).is_some_and(|k| self.groups[k].open);
        let shift = start as isize - from as isize;
        (a == axis && one_axis && deferred && shift != 0 && &self.g.node(v).shape == shape)
            .then_some((v, shift))
    }

    /// Whether kernel `k` can take the values `j`'s pieces carry from its
    /// own registers: all from one direction, the kernel's if it has one.
    fn carries_fit(&self, j: NodeId, k: usize) -> bool {
        let Place::Pieces { pieces, .. } = &self.place[j.0 as usize] else {
            return true;
        };
        let mut direction = self.groups[k].descending;
        for &(v, shift) in pieces.iter().filter_map(|p| p.carry.as_ref()) {
            if self.group_of(v) == Some(k) {
                let backwards = shift < 0;
                if direction.is_some_and(|d| d != backwards) {
                    return false;
                }
                direction = Some(backwards);
            }
        }
        true
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
        for (v, shift) in pieces.iter().filter_map(|p| p.carry).collect::<Vec<_>>() {
            if self.group_of(v) == Some(k) {
                self.groups[k].descending = Some(shift < 0);
            } else {
                self.materialize(v);
            }
        }
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
        let directions_agree = match (a.descending, b.descending) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        };
        axes_agree && directions_agree && !crosses(a, b) && !crosses(b, a)
    }

    fn view(&mut self, id: NodeId) {
        let node = self.g.node(id);
        let x = node.inputs[0];
        let in_open_kernel = self.group_of(x).is_some_and(|k| self.groups[k].open);
        if let (GOp::Prim(Prim::Narrow { axis, start, len }), true) = (&node.op, in_open_kernel) {
            // Stored only once read from memory: a piece may carry it in
            // registers instead.
            let layout = Layout::contiguous(&self.g.node(x).shape).narrow(*axis, *start, *len);
            self.place[id.0 as usize] = Place::View { of: x, layout };
            return;
        }
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
        for &j in &node.inputs {
            // Broadcast across the loop, a gather would load each element
            // again on every pass: built once, it is read as a row.
            if matches!(self.place[j.0 as usize], Place::Gathered) && self.g.node(j).shape != shape
            {
                self.materialize(j);
            }
        }
        let mut target: Option<usize> = None;
        for &j in &node.inputs {
            let full =
                |k: usize| self.groups[k].members.len() >= MAX_KERNEL_NODES || self.too_deep(id, k);
            let k = match self.group_of(j) {
                Some(k) if in_registers(self, j) && !full(k) => Some(k),
                _ => self.carrying_group(j, shape, &folds).filter(|&k| !full(k)),
            };
            if let Some(k) = k {
                target = match target {
                    Some(t) if t != k && self.mergeable(t, k) => Some(self.merge(t, k)),
                    Some(t) => Some(t), // k's value is stored below
                    None => Some(k),
                };
            }
        }
        for &j in &node.inputs {
            if !self.read_in_place(j) && (self.group_of(j) != target || !in_registers(self, j)) {
                self.materialize(j);
            }
        }
        if target.is_some_and(|t| !self.groups[t].open) {
            // Storing an input closed the kernel: read everything from memory.
            target = None;
            for &j in &node.inputs {
                if !self.read_in_place(j) {
                    self.materialize(j);
                }
            }
        }
        let mut k = target.unwrap_or_else(|| self.new_group(shape));
        self.take_pieces(id, k, &folds);
        if !self.groups[k].open {
            // Building a piece from memory stored a value of this kernel:
            // a new kernel, reading everything from memory.
            for &j in &node.inputs {
                if !self.read_in_place(j) {
                    self.materialize(j);
                }
            }
            k = self.new_group(shape);
            self.take_pieces(id, k, &folds);
        }
        self.groups[k].reduced.extend(folds);
        self.depth[id.0 as usize] = self.depth_in(id, k);
        self.groups[k].members.push(id);
        self.place[id.0 as usize] = Place::InKernel(k);
        if !self.fuse {
            self.close(k);
        }
    }

    /// The depth node `id` would have in kernel `k`.
    fn depth_in(&self, id: NodeId, k: usize) -> usize {
        let inputs = &self.g.node(id).inputs;
        let carried = inputs.iter().flat_map(|&j| self.carried(j));
        let deepest = inputs
            .iter()
            .copied()
            .chain(carried)
            .filter(|&j| self.group_of(j) == Some(k))
            .map(|j| self.depth[j.0 as usize])
            .max();
        1 + deepest.unwrap_or(0)
    }

    /// Whether node `id` would make kernel `k`'s chain too long for a loop
    /// whose iterations depend on each other. Within one element the chain
    /// is serial; the processor overlaps the next elements only if an
    /// iteration's body fits its reorder window. An integration fused across
    /// all its steps runs at the latency of its whole chain (3× slower on
    /// `ode` than a loop per stage); a step per loop overlaps. Past half
    /// that depth, the loop also ends where one value alone leaves it (a
    /// step's end), so that the next loops start at steps too.
    fn too_deep(&self, id: NodeId, k: usize) -> bool {
        let carries = self.groups[k].descending.is_some()
            || self
                .g
                .node(id)
                .inputs
                .iter()
                .any(|&j| self.carried(j).iter().any(|&v| self.group_of(v) == Some(k)));
        let depth = self.depth_in(id, k);
        carries
            && (depth > MAX_CARRIED_CHAIN
                || (depth > MAX_CARRIED_CHAIN / 2 && self.leaving(k, id) <= 1))
    }

    /// How many values of kernel `k` nodes from `id` on read: what a new
    /// kernel starting at `id` would read from memory.
    fn leaving(&self, k: usize, id: NodeId) -> usize {
        let members = self.groups[k].members.iter();
        members
            .filter(|m| self.last_read[m.0 as usize] >= id.0 as usize)
            .count()
    }

    fn new_group(&mut self, shape: &[usize]) -> usize {
        self.groups.push(Group {
            shape: shape.to_vec(),
            members: Vec::new(),
            open: true,
            split: None,
            reduced: Vec::new(),
            descending: None,
        });
        self.groups.len() - 1
    }

    /// The open kernel whose registers pieces of `j` can be carried from to
    /// a reader over `shape` folding `folds`, if any.
    fn carrying_group(&self, j: NodeId, shape: &[usize], folds: &[usize]) -> Option<usize> {
        let k = self.carried(j).into_iter().find_map(|v| self.group_of(v))?;
        let fits = self.fuse
            && self.groups[k].open
            && self.groups[k].shape == shape
            && self.splits_at_pieces(j, shape, k, folds)
            && self.carries_fit(j, k);
        fits.then_some(k)
    }

    /// Node `id`'s inputs in pieces, for kernel `k`: read in place where
    /// the loop can split at their bounds (one after the other: the first
    /// fixes the split's axis) and take what they carry, built by the
    /// interpreter otherwise.
    fn take_pieces(&mut self, id: NodeId, k: usize, folds: &[usize]) {
        let shape = self.groups[k].shape.clone();
        for j in self.g.node(id).inputs.clone() {
            if self.in_pieces(j) {
                if self.splits_at_pieces(j, &shape, k, folds) && self.carries_fit(j, k) {
                    self.split_at_pieces(k, j);
                } else {
                    self.materialize(j);
                }
            }
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
        self.groups[into].descending = self.groups[into]
            .descending
            .or(self.groups[from].descending);
        self.groups[from].open = false; // empty: emits nothing
        into
    }
}

/// Per node, the last node that computes from its value: views and pieces
/// only pass it on to their own readers.
fn last_reads(g: &Graph) -> Vec<usize> {
    let mut last = vec![0; g.nodes.len()];
    for &o in &g.outputs {
        last[o.0 as usize] = usize::MAX;
    }
    for r in (0..g.nodes.len()).rev() {
        let passes_on = matches!(
            kind(g, NodeId(r as u32)),
            Kind::View | Kind::Pieces | Kind::Gather
        ) && matches!(g.nodes[r].op, GOp::Prim(_));
        let read_at = if passes_on { last[r] } else { r };
        for j in &g.nodes[r].inputs {
            last[j.0 as usize] = last[j.0 as usize].max(read_at);
        }
    }
    last
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
        depth: vec![0; n],
        last_read: last_reads(g),
        gathers: Default::default(),
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
    let in_place = write_in_place(g, &mut p.place, &mut p.order);
    let mut kernels = Vec::new();
    let mut steps = Vec::new();
    for s in &p.order {
        match *s {
            Ok(k) if p.groups[k].members.is_empty() => {}
            Ok(k) => {
                let (kernel, operands, checks) = lower(&p, &p.groups[k]);
                steps.push(Step::Kernel {
                    kernel: kernels.len(),
                    operands,
                    checks,
                });
                kernels.push(kernel);
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
        in_place,
    }
}

/// Has the kernels that store every piece of a concatenation write each
/// straight into its part of the concatenation's slot, where the
/// interpreter would copy them there: `llsq`'s gradient joins 128 sums.
/// Only where each piece is one stretch of that slot (every axis before the
/// joined one has length 1), and stored once by a kernel (not an input, not
/// itself a joined concatenation, not a piece twice). Returns how many.
fn write_in_place(g: &Graph, place: &mut [Place], order: &mut Vec<Result<usize, NodeId>>) -> usize {
    let mut joined = 0;
    for (c, node) in g.nodes.iter().enumerate() {
        let GOp::Prim(Prim::Concat { axis }) = node.op else {
            continue;
        };
        let stored = |j: &NodeId| {
            matches!(place[j.0 as usize], Place::Arena)
                && !matches!(g.node(*j).op, GOp::Prim(Prim::Concat { .. }))
        };
        let mut distinct = node.inputs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if !matches!(place[c], Place::Interpreted)
            || node.shape[..axis].iter().any(|&d| d != 1)
            || distinct.len() != node.inputs.len()
            || !node.inputs.iter().all(stored)
        {
            continue;
        }
        let row: usize = node.shape[axis + 1..].iter().product();
        let of = NodeId(c as u32);
        let mut offset = 0;
        for &j in &node.inputs {
            place[j.0 as usize] = Place::Within { of, offset };
            offset += g.node(j).shape[axis] * row;
        }
        place[c] = Place::Arena;
        order.retain(|s| *s != Err(of));
        joined += 1;
    }
    joined
}

/// A group's loop cut at the bounds of the pieces it reads.
fn split(group: &Group) -> Option<Split> {
    let (axis, bounds) = group.split.as_ref()?;
    let mut starts: Vec<usize> = bounds.iter().copied().chain([0]).collect();
    starts.retain(|&b| b < group.shape[*axis]);
    starts.sort_unstable();
    starts.dedup();
    Some(Split {
        axis: *axis,
        starts,
        descending: group.descending == Some(true),
    })
}

/// The kernel of a group, the node whose memory each operand is, and the
/// run-time indices it gathers by (with their axes' lengths).
fn lower(p: &Partition, group: &Group) -> (Kernel, Vec<NodeId>, Vec<(NodeId, usize)>) {
    let g = p.g;
    let shape = group.shape.clone();
    let mut k = Kernel::new(&shape);
    k.split = split(group);
    let mut operands = Buffers::default();
    let mut checks = Vec::new();
    // Sparse: a dense vector per kernel would cost the graph's length each.
    let mut value: rustc_hash::FxHashMap<NodeId, usize> = Default::default();
    let operand = |k: &mut Kernel, operands: &mut Buffers, of, layout: &Layout, dtype| {
        k.operand(operands.of(of), layout, dtype)
    };
    let mut members = group.members.clone();
    members.sort(); // graph order: every member after its inputs
    for &m in &members {
        let node = g.node(m);
        let mut args = Vec::new();
        for &j in &node.inputs {
            let v = match value.get(&j) {
                Some(&v) => v,
                _ => {
                    // Loaded once per kernel, however many members read it.
                    let dtype = g.node(j).dtype;
                    // A gather of the loop's shape is read in place even
                    // when it is also built (see `Partition::gathers`).
                    let gathering = p.gathers.get(&j).filter(|_| g.node(j).shape == shape);
                    let v = match (&p.place[j.0 as usize], gathering) {
                        (_, Some(gathering)) => {
                            let o =
                                gathered(&mut k, &mut operands, gathering, &g.node(j).shape, dtype);
                            let Gathering {
                                index,
                                layout,
                                axis,
                                ..
                            } = gathering;
                            if !matches!(g.node(*index).op, GOp::Constant(_)) {
                                checks.push((*index, layout.shape[*axis]));
                            }
                            k.push(Instr::Load(o), dtype)
                        }
                        (Place::Pieces { pieces, .. }, None) => {
                            let carried = |v: &NodeId| {
                                members
                                    .binary_search(v)
                                    .ok()
                                    .and_then(|_| value.get(v).copied())
                            };
                            let parts = parts(&mut k, &mut operands, pieces, carried, dtype);
                            k.push(Instr::Piece(parts), dtype)
                        }
                        _ => {
                            let (of, l) = p.memory(j);
                            let l = l.broadcast_to(&group.shape).expect("shapes were checked");
                            let o = operand(&mut k, &mut operands, of, &l, dtype);
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
            Prim::Reduce { .. } | Prim::Matmul => {
                // A dot product is a sum of products over its first axis.
                let (op, axes, value) = match prim {
                    Prim::Reduce { op, axes, .. } => (*op, &axes[..], args[0]),
                    _ => {
                        let product = Instr::Binary(BinaryOp::Mul, args[0], args[1]);
                        (ReduceOp::Sum, &[0][..], k.push(product, dt))
                    }
                };
                // Folded into its memory, stride 0 along the folded axes.
                let (of, at) = p.memory(m);
                let mut l = reduced_layout(&group.shape, axes);
                l.offset += at.offset;
                let operand = operand(&mut k, &mut operands, of, &l, dt);
                k.push(Instr::Reduce { op, operand, value }, dt);
                continue;
            }
            _ => unreachable!("only elementwise ops and reductions join kernels"),
        };
        value.insert(m, v);
        if p.stored[m.0 as usize] {
            let (of, l) = p.memory(m);
            let o = operand(&mut k, &mut operands, of, &l, dt);
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
    checks.sort();
    checks.dedup();
    (k, operands.nodes, checks)
}

/// The operand of kernel `k` that reads a gather of `shape` in place.
fn gathered(
    k: &mut Kernel,
    operands: &mut Buffers,
    gathering: &Gathering,
    shape: &[usize],
    dtype: DType,
) -> usize {
    let Gathering {
        of: src,
        layout,
        index,
        axis,
    } = gathering;
    let (src, index, axis) = (*src, *index, *axis);
    let over_shape = |strides: Dims, offset: usize| {
        let l = Layout {
            shape: shape.iter().copied().collect(),
            strides,
            offset,
        };
        l.broadcast_to(&k.dims).expect("shapes were checked")
    };
    let mut strides = layout.strides.clone();
    strides[axis] = 0;
    let walk = over_shape(strides, layout.offset);
    let mut strides: Dims = smallvec::smallvec![0; shape.len()];
    strides[axis] = 1;
    let by = over_shape(strides, 0);
    let by = k.operand(operands.of(index), &by, DType::I64);
    // One walk of an index however many operands gather by it.
    let by = k.operands[..by]
        .iter()
        .position(|o| *o == k.operands[by])
        .map_or(by, |earlier| {
            k.operands.pop();
            earlier
        });
    let o = k.operand(operands.of(src), &walk, dtype);
    k.operands[o].gather = Some(Gather {
        by,
        step: layout.strides[axis] as isize,
    });
    o
}

/// The distinct memory a kernel walks, in its pointer table's order: one
/// entry per node, however many operands walk it.
#[derive(Default)]
struct Buffers {
    nodes: Vec<NodeId>,
    entry: rustc_hash::FxHashMap<NodeId, usize>,
}

impl Buffers {
    /// The pointer-table entry of `node`'s memory.
    fn of(&mut self, node: NodeId) -> usize {
        *self.entry.entry(node).or_insert_with(|| {
            self.nodes.push(node);
            self.nodes.len() - 1
        })
    }
}

/// What each segment of `k`'s split loop reads of a value in `pieces`:
/// its piece in place, zeros, or the value a piece carries from another
/// iteration (`carried`: its instruction, when this loop computes it).
fn parts(
    k: &mut Kernel,
    operands: &mut Buffers,
    pieces: &[Piece],
    carried: impl Fn(&NodeId) -> Option<usize>,
    dtype: DType,
) -> Vec<Part> {
    let split = k.split.clone().expect("pieces split the loop");
    let piece_at = |start: usize| {
        pieces
            .iter()
            .find(|q| q.start <= start && start < q.start + q.len)
            .expect("the pieces cover the axis")
    };
    let mut parts = Vec::with_capacity(split.starts.len());
    for &start in &split.starts {
        let piece = piece_at(start);
        let carry = piece
            .carry
            .and_then(|(v, shift)| Some((carried(&v)?, shift)));
        parts.push(match (carry, &piece.source) {
            (Some((value, shift)), _) => Part::Carry { value, shift },
            (None, Some((of, l))) => {
                // Walked from the loop's start: the piece's first element
                // sits at its start along the axis.
                let back = piece.start as isize * l.strides[split.axis] as isize;
                let buffer = operands.of(*of);
                Part::Load(k.operand_at(buffer, &l.strides, l.offset as isize - back, dtype))
            }
            (None, None) => Part::Const(0.0),
        });
    }
    parts
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
        Place::View { of, .. } | Place::Within { of, .. } => *of,
        _ => j,
    };
    let mut last_use = vec![0usize; n];
    let mut born = vec![usize::MAX; n];
    for (s, step) in steps.iter().enumerate() {
        let (reads, writes): (Vec<NodeId>, Vec<NodeId>) = match step {
            Step::Kernel { operands, .. } => {
                let bases: Vec<NodeId> = operands.iter().map(|&j| base(j)).collect();
                (bases.clone(), bases)
            }
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
