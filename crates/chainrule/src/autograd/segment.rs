//! Segments: the tape of scalar ops.
//!
//! An elementwise op on plain 0-d values, recorded with no level open (the
//! ops of a long chain of scalar arithmetic, the command's expressions, the
//! last few ops of a loss), does not get a node of its own. It is written
//! as an [`Entry`] at the end of its thread's current segment: the op, its
//! inputs' positions in the segment, and the numbers its VJP rule reads. The
//! value's handle links to the segment and its position ([`Link`]). A value
//! from outside the segment (a leaf, a tensor op's result, another
//! segment's value) that such an op reads is first written as an
//! [`Entry::Import`] of it.
//!
//! Backward then visits the segment once: one sweep down its entries,
//! with the adjoints in a dense array indexed by position, instead of one
//! visit per node through the frontier; and nothing is allocated per op,
//! freed per op, or ordered by a heap. A value recorded here sees only
//! values recorded before it, so a position's adjoint is complete when the
//! sweep reaches it.
//!
//! Only the segment's thread writes to it, and only past its length, which
//! it publishes after each write: entries below the length never change
//! (but for their `freed` flags, which are atomic), so any thread may read
//! them, and the handles stay `Send + Sync`. A segment is full at a fixed
//! capacity; the thread then starts another, whose first entries import the
//! values it needs from the full one. The thread's current segment, once
//! no one else holds it, is cleared and written again from the start: a
//! training loop reuses the same memory on every step.

use super::lane::Grad;
use super::node::{release, sole_mut, Link, Node, NodeKind};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::ops::NumberOp;
use crate::storage::Storage;
use crate::tensor::Tensor;
use crate::DType;
use std::cell::{RefCell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An input position for an operand that carries no gradient (a constant).
pub(crate) const NO_INPUT: u32 = u32::MAX;

/// A thread's first segment holds this many entries; each next one twice
/// its predecessor's, up to [`MAX_ENTRIES`].
const MIN_ENTRIES: usize = 256;
/// 32 K entries (about 3 MiB): large enough that a chain of millions of
/// ops crosses few segments, small enough to be cleared and reused whole.
const MAX_ENTRIES: usize = 1 << 15;
/// The most entries one op writes: two imports and the op.
const ROOM_PER_OP: usize = 3;

pub(crate) enum Entry {
    /// An elementwise op on 0-d values.
    Op(OpEntry),
    /// A value from outside the segment.
    Import { link: Link, dtype: DType },
    /// An inner product of two vectors.
    Dot(DotEntry),
}

/// An op entry: its inputs' positions ([`NO_INPUT`] for a constant), and
/// the inputs' and output's numbers (in `f64`, exact for `f32`; the
/// output's only when the rule reads it).
// `Segment::clear` drops imports and dots alone.
const _: () = assert!(!std::mem::needs_drop::<OpEntry>());
// A segment of a long chain is mostly op entries: no other kind makes an
// entry larger (a dot boxes its operands).
const _: () = assert!(std::mem::size_of::<Entry>() == std::mem::size_of::<OpEntry>());

pub(crate) struct OpEntry {
    pub op: NumberOp,
    pub dtype: DType,
    pub inputs: [u32; 2],
    pub values: [f64; 3],
    /// Set by a backward pass that did not retain the graph.
    pub freed: AtomicBool,
}

/// An inner product of two vectors: its inputs' positions (imports, or
/// [`NO_INPUT`] for a constant) and their values, which its rule reads
/// (`g` times the other one) and a backward pass that does not retain the
/// graph frees. The values are buffers with no place in the graph:
/// dropping the entry never recurses into one. (Boxed, so that an entry
/// stays as small as an op's.) As an import keeps the node it reads, the
/// entry keeps its buffers while the segment lives: a dot never
/// differentiated holds them until the thread's next recorded op clears
/// the segment.
pub(crate) struct DotEntry {
    pub dtype: DType,
    pub inputs: [u32; 2],
    operands: Mutex<Option<Box<DotOperands>>>,
}

/// A dot's operands: `len` elements each, the `j`-th read from `storage[j]`
/// at `offset[j]`, `stride[j]` apart.
pub(crate) struct DotOperands {
    storage: [Storage; 2],
    offset: [usize; 2],
    stride: [usize; 2],
    len: usize,
}

impl DotOperands {
    /// The buffer and view of operand `j`.
    pub fn get(&self, j: usize) -> (&Storage, Layout) {
        let layout = Layout {
            shape: smallvec::smallvec![self.len],
            strides: smallvec::smallvec![self.stride[j]],
            offset: self.offset[j],
        };
        (&self.storage[j], layout)
    }
}

impl DotEntry {
    /// The entry of `<a, b>` (two vectors of `dtype` and one length) reading
    /// the values at `inputs`.
    pub fn new(dtype: DType, inputs: [u32; 2], a: &Tensor, b: &Tensor) -> DotEntry {
        let (la, lb) = (a.layout(), b.layout());
        let operands = DotOperands {
            storage: [a.storage().clone(), b.storage().clone()],
            offset: [la.offset, lb.offset],
            stride: [la.strides[0], lb.strides[0]],
            len: la.shape[0],
        };
        DotEntry {
            dtype,
            inputs,
            operands: Mutex::new(Some(Box::new(operands))),
        }
    }

    /// `rule` on the operands, which are then freed unless the graph is
    /// retained; an error if an earlier pass freed them.
    pub fn with_operands<R>(
        &self,
        retain_graph: bool,
        rule: impl FnOnce(&DotOperands) -> R,
    ) -> Result<R> {
        let mut slot = self.operands.lock().unwrap_or_else(|e| e.into_inner());
        let operands = slot.as_deref().ok_or(Error::GraphFreed { op: DOT_NAME })?;
        let out = rule(operands);
        if !retain_graph {
            *slot = None;
        }
        Ok(out)
    }
}

/// A dot entry's op, as a node of it would be named.
const DOT_NAME: &str = "matmul";

pub(crate) struct Segment {
    entries: Box<[UnsafeCell<MaybeUninit<Entry>>]>,
    /// How many entries are written (published with `Release`).
    len: AtomicU32,
    /// The depth (see [`Node::depth`]), and [`SEALED`].
    state: AtomicU64,
    /// The positions of the imports and dots, the only entries that need
    /// dropping: clearing a segment reads these, not every entry. Written
    /// only by the owning thread (in `push`), read only through `&mut self`.
    owners: UnsafeCell<Vec<u32>>,
    /// See [`Segment::mark_swept`].
    swept: AtomicBool,
}

/// Set in `state` once a consumer outside the segment has read its depth:
/// from then on the depth is fixed, and a deeper import starts a new
/// segment instead of deepening this one.
const SEALED: u64 = 1 << 63;

// SAFETY: entries below `len` are written once, before `len` is published
// past them, and read-only afterwards (their atomics aside); only the
// owning thread writes, and only at `len` (see `push`); `imports` is
// touched only by that thread and by `clear` (see the field).
unsafe impl Sync for Segment {}

// A panic midway through a write leaves the entry unpublished (past the
// length), so an observer after the unwind sees the segment as it was;
// Tensor handles stay unwind-safe, as before segments.
impl std::panic::RefUnwindSafe for Segment {}

impl Segment {
    fn with_capacity(capacity: usize) -> Segment {
        let entries = (0..capacity)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect();
        Segment {
            entries,
            len: AtomicU32::new(0),
            state: AtomicU64::new(0),
            owners: UnsafeCell::new(Vec::new()),
            swept: AtomicBool::new(false),
        }
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire) as usize
    }

    fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Whether one more op may be written: it fits (with its imports), and
    /// no backward pass has swept the segment.
    #[inline]
    fn takes_more(&self) -> bool {
        self.len.load(Ordering::Relaxed) as usize + ROOM_PER_OP <= self.capacity()
            && !self.swept.load(Ordering::Relaxed)
    }

    /// Notes that a backward pass swept the segment: the thread's next op
    /// starts a new one, so that a value kept from this step (a logged
    /// loss) keeps this step's graph alone, not the next steps' too.
    pub fn mark_swept(&self) {
        self.swept.store(true, Ordering::Relaxed);
    }

    /// The entry at `at`, which is below the length.
    #[inline]
    pub fn entry(&self, at: u32) -> &Entry {
        assert!((at as usize) < self.len(), "a segment's entry past its end");
        // SAFETY: written and published (see the `Sync` impl).
        unsafe { (*self.entries[at as usize].get()).assume_init_ref() }
    }

    /// Writes `e` at the end. Only the thread whose current segment this is
    /// calls it (see [`record`]), with room left.
    fn push(&self, e: Entry) -> u32 {
        let at = self.len.load(Ordering::Relaxed);
        if !matches!(e, Entry::Op(_)) {
            // SAFETY: only this thread writes the list, and no `&mut self`
            // (the only reader) exists while `&self` does.
            unsafe { (*self.owners.get()).push(at) };
        }
        // SAFETY: past `len`, so no reader looks here yet; one writer.
        unsafe { (*self.entries[at as usize].get()).write(e) };
        self.len.store(at + 1, Ordering::Release);
        at
    }

    pub fn depth(&self) -> u64 {
        self.state.load(Ordering::Acquire) & !SEALED
    }

    /// Fixes the depth (for a consumer outside the segment) and returns it.
    pub fn seal(&self) -> u64 {
        self.state.fetch_or(SEALED, Ordering::AcqRel) & !SEALED
    }

    /// Makes the segment at least `depth` deep, unless it is sealed
    /// shallower (then `false`).
    fn deepen(&self, depth: u64) -> bool {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & !SEALED >= depth {
                return true;
            }
            if state & SEALED != 0 {
                return false;
            }
            match self
                .state
                .compare_exchange(state, depth, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
    }

    /// The name of the op that made the value at `at`.
    pub fn name(&self, at: u32) -> &'static str {
        match self.entry(at) {
            Entry::Op(e) => e.op.name(),
            Entry::Import { link, .. } => link.node.name(link.at),
            Entry::Dot(_) => DOT_NAME,
        }
    }

    /// Drops every entry (their imports without recursion) and starts over.
    pub fn clear(&mut self) {
        *self.len.get_mut() = 0;
        // Op entries own nothing (their op is `Copy`): only imports and
        // dots drop.
        for at in self.owners.get_mut().drain(..) {
            // SAFETY: an owner's position is below the old length, so it
            // was written; each is read out once.
            let entry = unsafe { self.entries[at as usize].get_mut().assume_init_read() };
            if let Entry::Import { link, .. } = entry {
                release(link.node);
            }
        }
        *self.state.get_mut() = 0;
        *self.swept.get_mut() = false;
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.clear();
    }
}

thread_local! {
    /// The segment this thread records into (a node of kind `Segment`).
    static CURRENT: RefCell<Option<Arc<Node>>> = const { RefCell::new(None) };
}

/// Records an op of one float dtype at `level`, with no level open:
/// `links` are its inputs' places in the graph (`None`: a constant), and
/// `entry` makes its entry from their positions. Returns the output's
/// place.
pub(crate) fn record(
    dtype: DType,
    links: [Option<&Link>; 2],
    level: u32,
    entry: impl FnOnce([u32; 2]) -> Entry,
) -> Link {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        // Nearly always: the inputs are the current segment's own values
        // (or constants), and it has room.
        let fast = current.as_ref().filter(|node| {
            node.level == level
                && links.iter().flatten().all(|l| Arc::ptr_eq(&l.node, node))
                && Arc::strong_count(node) > 1
                && segment_of(node).takes_more()
        });
        let node = match fast {
            Some(node) => node,
            None => current_with_room(&mut current, level, &links),
        };
        let seg = segment_of(node);
        let mut inputs = [NO_INPUT; 2];
        for j in 0..2 {
            inputs[j] = match links[j] {
                None => NO_INPUT,
                Some(l) if Arc::ptr_eq(&l.node, node) => l.at,
                // `u * u` of an imported `u`: one import.
                Some(l) if j == 1 && links[0].is_some_and(|l0| l0.same(l)) => inputs[0],
                Some(l) => seg.push(Entry::Import {
                    link: l.clone(),
                    dtype,
                }),
            };
        }
        let at = seg.push(entry(inputs));
        Link {
            node: node.clone(),
            at,
        }
    })
}

/// The segment of a thread's current segment node.
#[inline]
fn segment_of(node: &Node) -> &Segment {
    match &node.kind {
        NodeKind::Segment(seg) => seg,
        _ => unreachable!("a thread's current segment is a segment node"),
    }
}

/// The thread's current segment, made ready for one more op at `level`
/// reading `links`: cleared if no one else holds it, replaced by a new one
/// if it is full, of another level, or sealed shallower than an import.
fn current_with_room<'a>(
    current: &'a mut Option<Arc<Node>>,
    level: u32,
    links: &[Option<&Link>; 2],
) -> &'a Arc<Node> {
    if let Some(node) = current.as_mut() {
        if let Some(sole) = sole_mut(node) {
            sole.level = level;
            if let NodeKind::Segment(seg) = &mut sole.kind {
                seg.clear();
            }
        }
    }
    let fits = current.as_ref().is_some_and(|node| {
        let seg = segment_of(node);
        node.level == level && seg.takes_more() && imports_fit(seg, node, links)
    });
    if !fits {
        // Twice the last one's room when that filled up (a long chain), the
        // same when it ended early (swept, of another level, sealed).
        let capacity = current.as_ref().map_or(MIN_ENTRIES, |node| {
            let seg = segment_of(node);
            match seg.len() + ROOM_PER_OP > seg.capacity() {
                true => (seg.capacity() * 2).min(MAX_ENTRIES),
                false => seg.capacity(),
            }
        });
        let seg = Segment::with_capacity(capacity);
        let fresh = Node::new(NodeKind::Segment(seg), level, None);
        let ok = imports_fit(segment_of(&fresh), &fresh, links);
        debug_assert!(ok, "a fresh segment takes any import");
        // The old segment lives on in its values and in the fresh one's imports.
        if let Some(old) = current.replace(fresh) {
            release(old);
        }
    }
    current.as_ref().expect("set above")
}

/// Deepens `seg` below every input from outside it; `false` if one is too
/// deep for it (it is sealed).
fn imports_fit(seg: &Segment, node: &Arc<Node>, links: &[Option<&Link>; 2]) -> bool {
    links
        .iter()
        .flatten()
        .filter(|l| !Arc::ptr_eq(&l.node, node))
        .all(|l| seg.deepen(l.node.sealed_depth() + 1))
}

/// A gradient as a number of `dtype` (held in `f64`, exact for `f32`).
pub(crate) fn number_grad(v: f64, dtype: DType) -> Grad {
    match dtype {
        DType::F32 => Grad::F32(v as f32),
        _ => Grad::F64(v),
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;
    use std::sync::Arc;

    fn same_segment(a: &Tensor, b: &Tensor) -> bool {
        Arc::ptr_eq(&a.link().unwrap().node, &b.link().unwrap().node)
    }

    #[test]
    fn backward_ends_a_segment_and_a_segment_held_by_no_value_is_reused() {
        let x = Tensor::scalar(1.0f64).requires_grad();
        let first = x.sin() * 2.0;
        let also_first = x.cos();
        assert!(same_segment(&first, &also_first));
        first.backward().unwrap();
        // A loss kept for logging keeps its own step's graph, not the next.
        let second = x.cos() * 3.0;
        assert!(!same_segment(&first, &second));
        // Once nothing holds it, the current segment is cleared and reused.
        let node = Arc::as_ptr(&second.link().unwrap().node);
        drop(second);
        let third = x.exp();
        assert_eq!(Arc::as_ptr(&third.link().unwrap().node), node);
        assert_eq!(third.link().unwrap().at, 1, "entry 0 imports x");
    }
}
