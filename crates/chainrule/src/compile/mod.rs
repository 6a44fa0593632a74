//! Compiling an explicit graph to native code: the planner ([`plan`]) fuses
//! chains of elementwise ops and the reductions that end them into kernels,
//! the code generator ([`codegen`], Cranelift) turns each kernel into one
//! loop nest (split where it reads a concatenation or padding in pieces,
//! carrying values between iterations for a shifted piece of its own, and
//! otherwise running four vector blocks of the innermost loop side by side),
//! and [`Program::run`] runs the kernels and, node by node, the
//! ops no kernel takes (matmul through the GEMM, gathers, custom ops…), all
//! in buffers of one arena allocated once and reused by every run (a
//! result the caller still holds is swapped for the one it returned before;
//! kernels write the pieces of a concatenation straight into its buffer).
//! A
//! product `Xᵀ f(X w)` over a matrix too large for the cache is one pass
//! over it ([`stream`]). Loops
//! ([`crate::control`]) with small bodies become native loops of their own
//! ([`recurrence`]), compiled with the graph.

mod codegen;
mod kernel;
mod plan;
pub(crate) mod recurrence;
mod stream;

use crate::error::Result;
use crate::graph::{apply, GOp, Graph, NodeId};
use crate::layout::Layout;
use crate::storage::Storage;
use crate::{DType, Tensor};
use plan::{Place, Step};
use smallvec::SmallVec;
use std::sync::Mutex;
use std::time::Instant;

/// What compiling a graph produced, for reports and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompileReport {
    /// Native kernels run (steps of the program).
    pub kernels: usize,
    /// Functions generated for them: kernels that differ only in their
    /// buffers share one.
    pub kernel_functions: usize,
    /// Graph nodes computed inside kernels.
    pub fused_nodes: usize,
    /// Nodes the interpreter runs (matmul, gathers, custom ops…).
    pub interpreted_nodes: usize,
    /// Nodes that are views (no work).
    pub views: usize,
    /// Concatenations and paddings read in place by the kernels that use
    /// them (their loops split at the pieces' bounds): never built.
    pub fused_pieces: usize,
    /// `index_select`s read in place by the kernels that use them (each
    /// loads the elements it selects): never built.
    pub fused_gathers: usize,
    /// Concatenations whose pieces the kernels that compute them write
    /// straight into place: never copied.
    pub concats_in_place: usize,
    /// Loops compiled to native loops (their body's values in registers),
    /// and loops whose body is interpreted step by step.
    pub native_loops: usize,
    /// Loops whose body is interpreted step by step.
    pub interpreted_loops: usize,
    /// Products `Xᵀ f(X w)` run as one pass over a large `X` (`compile::stream`).
    pub streams: usize,
    /// Arena slots and their total size in bytes.
    pub arena_slots: usize,
    /// Total size of the arena's slots, in bytes.
    pub arena_bytes: usize,
    /// Wall time of planning and code generation, in milliseconds.
    pub compile_ms: f64,
}

/// A graph lowered to native kernels and interpreted nodes.
pub(crate) struct Program {
    code: codegen::Code,
    place: Vec<Place>,
    steps: Vec<Step>,
    streams: Vec<stream::Stream>,
    slot: Vec<Option<usize>>,
    slots: Vec<(DType, usize)>,
    /// The nodes whose memory each run binds before the steps (inputs,
    /// constants, arena slots, then pieces written into those slots).
    bound: Vec<usize>,
    /// Per node with memory of its own (not in a kernel's registers, not a
    /// view): its number in a run's tables, which are then short where
    /// most nodes are fused (`u32::MAX`: none).
    index: Vec<u32>,
    /// How many nodes `index` numbers: the length of a run's tables.
    values: usize,
    /// The slots' buffers, reused by each run that finds them unshared.
    arena: Mutex<Arena>,
    pub report: CompileReport,
}

impl Program {
    /// Plans and generates code for `g` (`fuse = false`: a kernel per node).
    pub fn new(g: &Graph, fuse: bool) -> Result<Program> {
        let start = Instant::now();
        let plan = plan::plan(g, fuse);
        if std::env::var_os("CHAINRULE_DUMP_KERNELS").is_some() {
            dump_steps(g, &plan);
        }
        let code = codegen::compile(&plan.kernels)?;
        let loops: Vec<bool> = g
            .nodes
            .iter()
            .filter_map(|n| match &n.op {
                GOp::Prim(crate::ops::Prim::Loop(l)) => Some(l.0.native().is_some()),
                _ => None,
            })
            .collect();
        let count = |f: fn(&Place) -> bool| plan.place.iter().filter(|p| f(p)).count();
        let report = CompileReport {
            kernels: plan.kernels.len(),
            kernel_functions: code.functions,
            fused_nodes: count(|p| {
                matches!(p, Place::InKernel(_) | Place::Arena | Place::Within { .. })
            }) - plan.in_place,
            interpreted_nodes: count(|p| matches!(p, Place::Interpreted)),
            views: count(|p| matches!(p, Place::View { .. })),
            fused_pieces: count(|p| matches!(p, Place::Pieces { .. })),
            fused_gathers: count(|p| matches!(p, Place::Gathered)),
            concats_in_place: plan.in_place,
            native_loops: loops.iter().filter(|&&n| n).count(),
            interpreted_loops: loops.iter().filter(|&&n| !n).count(),
            streams: plan.streams.len(),
            arena_slots: plan.slots.len(),
            arena_bytes: plan.slots.iter().map(|(d, n)| d.size() * n).sum(),
            compile_ms: start.elapsed().as_secs_f64() * 1e3,
        };
        let mut bound: Vec<usize> = (0..plan.place.len())
            .filter(|&i| {
                matches!(
                    plan.place[i],
                    Place::Fed(_) | Place::Constant | Place::Arena | Place::Within { .. }
                )
            })
            .collect();
        // A piece's address is its concatenation's, bound first.
        bound.sort_by_key(|&i| matches!(plan.place[i], Place::Within { .. }));
        let mut index = vec![u32::MAX; plan.place.len()];
        let mut values = 0;
        for (i, p) in plan.place.iter().enumerate() {
            if !matches!(
                p,
                Place::InKernel(_) | Place::Pieces { .. } | Place::View { .. } | Place::Gathered
            ) {
                index[i] = values;
                values += 1;
            }
        }
        Ok(Program {
            code,
            bound,
            index,
            values: values as usize,
            place: plan.place,
            steps: plan.steps,
            streams: plan.streams,
            slot: plan.slot,
            slots: plan.slots,
            arena: Mutex::new(Arena::default()),
            report,
        })
    }

    /// Runs on `feeds` (one per graph input, in order, checked by the
    /// caller), returning the graph's outputs.
    pub fn run(&self, g: &Graph, feeds: &[&Tensor]) -> Result<Vec<Tensor>> {
        let mut own = Arena::default();
        let mut guard = self.arena.try_lock();
        // Busy (another thread runs this program): a private arena.
        let arena = match guard.as_deref_mut() {
            Ok(a) => a,
            Err(_) => &mut own,
        };
        self.prepare(arena)?;
        let arena = &mut arena.live;
        // Per node with memory of its own (numbered by `index`): its value
        // when not in the arena, and its first element.
        let mut memory: Vec<Option<Tensor>> = vec![None; self.values];
        let mut ptr: Vec<*mut u8> = vec![std::ptr::null_mut(); self.values];
        let at = |j: NodeId| self.index[j.0 as usize] as usize;
        for &i in &self.bound {
            let v = self.index[i] as usize;
            let t = match &self.place[i] {
                Place::Fed(k) => feeds[*k].contiguous(),
                Place::Constant => match &g.nodes[i].op {
                    GOp::Constant(t) if plan::read_as_laid_out(t) => t.clone(),
                    GOp::Constant(t) => t.contiguous(),
                    _ => unreachable!("constant nodes hold constants"),
                },
                Place::Arena => {
                    ptr[v] = arena[self.slot[i].expect("arena nodes have slots")].writable();
                    continue;
                }
                Place::Within { of, offset } => {
                    let bytes = offset * g.nodes[i].dtype.size();
                    // SAFETY: the piece lies inside its concatenation's slot.
                    ptr[v] = unsafe { ptr[at(*of)].add(bytes) };
                    continue;
                }
                _ => unreachable!("only these places are bound"),
            };
            ptr[v] = readable(&t);
            memory[v] = Some(t);
        }
        // The run-time indices that kernels gather by, once checked.
        let mut checked: SmallVec<[(NodeId, usize); 4]> = SmallVec::new();
        for step in &self.steps {
            match step {
                Step::Kernel {
                    kernel,
                    operands,
                    checks,
                } => {
                    for &(index, len) in checks {
                        if !checked.contains(&(index, len)) {
                            let values = self.tensor(g, index, &memory, arena);
                            crate::ops::index::check_positions("index_select", &values, len)?;
                            checked.push((index, len));
                        }
                    }
                    let table: SmallVec<[*mut u8; 16]> =
                        operands.iter().map(|&j| ptr[at(j)]).collect();
                    // SAFETY: every pointer is the start of a live buffer of
                    // the kernel's operand, large enough for the offsets the
                    // planner laid out; only arena buffers are written, and
                    // this run holds them unshared.
                    unsafe { (self.code.entries[*kernel])(table.as_ptr()) }
                }
                Step::Interpret(id) => {
                    let node = g.node(*id);
                    let args: SmallVec<[Tensor; 3]> = node
                        .inputs
                        .iter()
                        .map(|&j| self.tensor(g, j, &memory, arena))
                        .collect();
                    let refs: SmallVec<[&Tensor; 3]> = args.iter().collect();
                    let out = owned(apply(node, &refs)?);
                    ptr[at(*id)] = readable(&out);
                    memory[at(*id)] = Some(out);
                }
                Step::Stream(k) => {
                    let values = self.streams[*k].run(g, |j| self.tensor(g, j, &memory, arena));
                    for (j, t) in values {
                        ptr[at(j)] = readable(&t);
                        memory[at(j)] = Some(t);
                    }
                }
            }
        }
        Ok(g.outputs
            .iter()
            .map(|&o| self.tensor(g, o, &memory, arena))
            .collect())
    }

    /// Makes every arena slot exist, of its size, and unshared. A slot a
    /// caller still holds from the last run (its result) is swapped with the
    /// one returned by the run before, if the caller has let go of that:
    /// a loop that keeps the last result allocates nothing, where a fresh
    /// buffer would cost its pages' first-touch faults on every call.
    fn prepare(&self, arena: &mut Arena) -> Result<()> {
        let Arena { live, returned } = arena;
        if live.len() != self.slots.len() {
            live.clear();
            returned.clear();
        }
        returned.resize_with(self.slots.len(), || None);
        for (k, &(dtype, len)) in self.slots.iter().enumerate() {
            if k == live.len() {
                live.push(Slot::new(k, dtype, len)?);
            } else if !live[k].storage.is_unshared() {
                let spare = match returned[k].take() {
                    Some(s) if s.storage.is_unshared() => s,
                    _ => Slot::new(k, dtype, len)?,
                };
                returned[k] = Some(std::mem::replace(&mut live[k], spare));
            }
        }
        Ok(())
    }

    /// Node `j`'s value as a tensor (sharing the memory it is in).
    fn tensor(&self, g: &Graph, j: NodeId, memory: &[Option<Tensor>], arena: &[Slot]) -> Tensor {
        let i = j.0 as usize;
        let shape = &g.nodes[i].shape;
        match &self.place[i] {
            Place::View { of, layout } => {
                let base = self.tensor(g, *of, memory, arena);
                let mut l = layout.clone();
                l.offset += base.layout().offset;
                Tensor::from_parts(base.storage().clone(), l, None)
            }
            Place::Arena => {
                let s = &arena[self.slot[i].expect("arena nodes have slots")];
                let mut l = Layout::contiguous(shape);
                l.offset = s.offset;
                Tensor::from_parts(s.storage.clone(), l, None)
            }
            Place::Within { of, offset } => {
                let s = &arena[self.slot[of.0 as usize].expect("arena nodes have slots")];
                let mut l = Layout::contiguous(shape);
                l.offset = s.offset + offset;
                Tensor::from_parts(s.storage.clone(), l, None)
            }
            Place::InKernel(_) | Place::Pieces { .. } | Place::Gathered => {
                unreachable!("the planner stores what leaves a kernel")
            }
            _ => memory[self.index[i] as usize]
                .clone()
                .expect("computed before it is read"),
        }
    }
}

/// The buffers of a program's arena slots, and per slot the buffer a
/// caller held when it was last replaced.
#[derive(Default)]
struct Arena {
    live: Vec<Slot>,
    returned: Vec<Option<Slot>>,
}

/// Slots of at least this many bytes start at a cache line of a page that
/// depends on their number.
const PAGE: usize = 4096;

/// An arena slot's buffer, and the element its value starts at.
///
/// Allocators put blocks of one size at the same place in a page (mimalloc
/// packs 8 KB blocks 8 KB apart; glibc maps large ones page-aligned). A
/// kernel that reads many slots at the same index then finds them all in
/// the same sets of the 8-way L1 cache, and its stores alias its loads:
/// `ode`'s gradient (n=1000, s=100) ran 2× slower under mimalloc than
/// under glibc for that alone. So each slot starts at its own line of the
/// page, 37 lines on from the slot before (37 is odd: 64 slots in a row
/// get 64 different lines), for at most a page more memory per slot.
struct Slot {
    storage: Storage,
    offset: usize,
}

impl Slot {
    /// Slot `k`'s fresh buffer, zeroed, for `len` elements of `dtype`.
    fn new(k: usize, dtype: DType, len: usize) -> Result<Slot> {
        let size = dtype.size();
        let pad = if len * size >= PAGE { PAGE / size } else { 0 };
        crate::limits::check_alloc("compiled graph", &[len + pad], dtype)?;
        let mut storage = Storage::zeroed_heap(dtype, len + pad);
        let mut offset = 0;
        if pad > 0 {
            let at = storage
                .heap_ptr_mut()
                .expect("a fresh heap buffer is unshared") as usize;
            let line = (k * 37) % (PAGE / 64) * 64;
            offset = (line + PAGE - at % PAGE) % PAGE / size;
        }
        Ok(Slot { storage, offset })
    }

    /// Its first element, for writing; the caller has made it unshared.
    fn writable(&mut self) -> *mut u8 {
        let start = self
            .storage
            .heap_ptr_mut()
            .expect("arena slots are unshared heap buffers");
        // SAFETY: the buffer has `offset` elements before the value's.
        unsafe { start.add(self.offset * self.storage.dtype().size()) }
    }
}

/// The first element of a contiguous tensor, for reading.
pub(super) fn readable(t: &Tensor) -> *mut u8 {
    t.storage().ptr_at(t.layout().offset) as *mut u8
}

/// `t` contiguous in a buffer of its own: an interpreted op may return a
/// view of an input, which may live in an arena slot that a later kernel
/// overwrites.
fn owned(t: Tensor) -> Tensor {
    let shared = !t.storage().is_unshared();
    if shared || !t.is_contiguous() {
        crate::ops::movement::copy_of(&t)
    } else {
        t
    }
}

/// `CHAINRULE_DUMP_KERNELS`: the program's steps in order, for whoever
/// tunes the planner (which nodes the interpreter runs, at what shapes).
fn dump_steps(g: &Graph, plan: &plan::Plan) {
    for (k, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Kernel { kernel, .. } => {
                let dims = &plan.kernels[*kernel].dims;
                eprintln!("step {k}: kernel {kernel} over {dims:?}")
            }
            Step::Interpret(id) => {
                let node = g.node(*id);
                let shapes: Vec<&[usize]> =
                    node.inputs.iter().map(|&j| &g.node(j).shape[..]).collect();
                let (op, shape) = (node.op.name(), &node.shape);
                eprintln!("step {k}: interpret {op} {shapes:?} -> {shape:?}");
            }
            Step::Stream(s) => eprintln!("step {k}: stream {s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Slot, PAGE};
    use crate::graph::Graph;
    use crate::{DType, Tensor};

    /// 64 slots in a row start on 64 different lines of a page, each with
    /// room for its value after its offset; a small slot has no offset.
    #[test]
    fn consecutive_slots_start_on_different_lines_of_a_page() {
        let len = 1000;
        let mut lines: Vec<usize> = (0..64)
            .map(|k| {
                let mut slot = Slot::new(k, DType::F64, len).unwrap();
                let start = slot.storage.heap_ptr_mut().unwrap() as usize;
                let at = slot.writable() as usize;
                assert!(at >= start && at - start < PAGE, "slot {k}: {}", at - start);
                assert_eq!(slot.offset * 8, at - start);
                at % PAGE / 64
            })
            .collect();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), 64);
        assert_eq!(Slot::new(3, DType::F64, 100).unwrap().offset, 0);
    }

    /// A loop that keeps its last result alternates between two buffers for
    /// it, and never writes into the one its caller holds.
    #[test]
    fn a_loop_keeping_its_last_result_alternates_two_buffers() {
        let x = Tensor::rand_uniform(&[1000], -1.0, 1.0, 1, DType::F64);
        let feeds = [("x", &x)];
        let exe = Graph::trace(&feeds, |t| Ok(vec![(&t[0] * 2.0).exp()]))
            .unwrap()
            .compile();
        let address = |t: &Tensor| super::readable(t) as usize;
        let mut last = exe.run(&feeds).unwrap().remove(0);
        let expected = last.to_vec::<f64>();
        let mut seen = vec![address(&last)];
        for _ in 0..4 {
            let next = exe.run(&feeds).unwrap().remove(0);
            assert_ne!(address(&next), address(&last));
            assert_eq!(last.to_vec::<f64>(), expected);
            last = next;
            seen.push(address(&last));
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 2, "{seen:?}");
    }
}
