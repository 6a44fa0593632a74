//! A segment's visit in a backward pass: one sweep down its entries, from
//! the highest with a gradient to the first (see [`crate::autograd::segment`]).
//! Each value's adjoint waits at its position, complete when the sweep gets
//! there (only later entries read it). Imports pass theirs on to the
//! frontier.

use super::{accumulate, Pass};
use crate::autograd::lane::{self, Grad};
use crate::autograd::node::{Link, Node};
use crate::autograd::segment::{
    number_grad, DotEntry, DotOperands, Entry, OpEntry, Segment, NO_INPUT,
};
use crate::error::{Error, Result};
use crate::storage::FloatElement;
use crate::tensor::Tensor;
use crate::DType;
use smallvec::SmallVec;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type Seeds = SmallVec<[(u32, Grad); 2]>;

impl Pass<'_> {
    /// Visits `seg` (the segment of `node`) with the gradients of its values.
    pub(super) fn sweep(&mut self, node: &Node, seg: &Segment, seeds: Seeds) -> Result<()> {
        seg.mark_swept();
        let top = seeds.iter().map(|&(at, _)| at).max().unwrap_or(0);
        let useful = self.useful_entries(node, seg, top);
        let numbers: Option<SmallVec<[(u32, f64); 2]>> = self
            .lane
            .then(|| {
                seeds
                    .iter()
                    .map(|(at, g)| Some((*at, lane::number_of(g)?)))
                    .collect()
            })
            .flatten();
        let swept = match numbers {
            Some(numbers) => self.sweep_numbers(node, seg, top, &numbers, useful.as_deref()),
            None => self.sweep_tensors(node, seg, top, seeds, useful.as_deref()),
        };
        if let Some(useful) = useful {
            self.frontier.s.useful = useful;
        }
        swept
    }

    /// Under pruning, which entries up to `top` lead to a requested
    /// gradient (an import the search found useful, a target, or an op
    /// reading one of them).
    fn useful_entries(&mut self, node: &Node, seg: &Segment, top: u32) -> Option<Vec<bool>> {
        let pruning = self.pruning.as_ref()?;
        let targets = self.targets.entries_of(node);
        let mut useful = std::mem::take(&mut self.frontier.s.useful);
        useful.clear();
        useful.reserve(top as usize + 1);
        for at in 0..=top {
            let leads = match seg.entry(at) {
                Entry::Import { link, .. } => pruning.useful(&link.node),
                Entry::Op(OpEntry { inputs, .. }) | Entry::Dot(DotEntry { inputs, .. }) => {
                    inputs.iter().any(|&i| i != NO_INPUT && useful[i as usize])
                }
            };
            useful.push(leads || targets.contains(&at));
        }
        Some(useful)
    }

    /// Which inputs of an op entry need a gradient.
    fn needs(prim_arity: usize, inputs: &[u32; 2], useful: Option<&[bool]>) -> [bool; 2] {
        std::array::from_fn(|j| {
            j < prim_arity && inputs[j] != NO_INPUT && useful.is_none_or(|u| u[inputs[j] as usize])
        })
    }

    /// The sweep on numbers: adjoints as `f64` (exact for `f32`, whose
    /// arithmetic is done in `f32`), rules on numbers, nothing allocated
    /// but the array.
    fn sweep_numbers(
        &mut self,
        node: &Node,
        seg: &Segment,
        top: u32,
        seeds: &[(u32, f64)],
        useful: Option<&[bool]>,
    ) -> Result<()> {
        let len = top as usize + 1;
        // The thread's arrays (given back below; an error drops them).
        let mut adjoint = std::mem::take(&mut self.frontier.s.adjoint);
        let mut reached = std::mem::take(&mut self.frontier.s.reached);
        adjoint.clear();
        adjoint.resize(len, 0.0);
        reached.clear();
        reached.resize(len, false);
        for &(at, g) in seeds {
            let i = at as usize;
            add_number(&mut adjoint[i], &mut reached[i], g, dtype_at(seg, at));
        }
        for at in (0..=top).rev() {
            let i = at as usize;
            if !reached[i] {
                continue;
            }
            let g = adjoint[i];
            match seg.entry(at) {
                Entry::Import { link, dtype } => {
                    self.found(node, at, || number_grad(g, *dtype).into_tensor());
                    if self.wanted(&link.node) {
                        self.frontier.give(link, number_grad(g, *dtype));
                    }
                }
                Entry::Op(e) => {
                    self.found(node, at, || number_grad(g, e.dtype).into_tensor());
                    self.stats.nodes_reached += 1;
                    let needs = Self::needs(e.op.arity(), &e.inputs, useful);
                    if needs == [false, false] {
                        continue;
                    }
                    self.stats.rules_run += 1;
                    self.stats.rules_on_numbers += 1;
                    self.take_saved(e)?;
                    let grads = match e.dtype {
                        DType::F32 => rule_on::<f32>(e, g),
                        _ => rule_on::<f64>(e, g),
                    };
                    for j in 0..2 {
                        if needs[j] {
                            let k = e.inputs[j] as usize;
                            add_number(&mut adjoint[k], &mut reached[k], grads[j], e.dtype);
                        }
                    }
                }
                Entry::Dot(d) => {
                    self.found(node, at, || number_grad(g, d.dtype).into_tensor());
                    self.dot_rule(seg, d, useful, |operands, needs| {
                        std::array::from_fn(|j| {
                            let (storage, layout) = operands.get(1 - j);
                            needs[j].then(|| {
                                crate::ops::matmul::dot_vjp_on_number(g, d.dtype, storage, &layout)
                            })
                        })
                    })?;
                }
            }
        }
        self.frontier.s.adjoint = adjoint;
        self.frontier.s.reached = reached;
        Ok(())
    }

    /// The sweep on tensors, where a gradient graph is recorded or a level
    /// is open: each rule is the op's tensor rule, on its values rebuilt
    /// as 0-d tensors linked to their positions (so that what it records
    /// differentiates back into this segment).
    fn sweep_tensors(
        &mut self,
        node: &Node,
        seg: &Segment,
        top: u32,
        seeds: Seeds,
        useful: Option<&[bool]>,
    ) -> Result<()> {
        // SAFETY: every segment node lives in an `Arc` that the pass's
        // roots keep alive (see `NodePtr`); this takes one more reference.
        let this = unsafe {
            Arc::increment_strong_count(node);
            Arc::from_raw(node as *const Node)
        };
        let link = |at: u32| Link {
            node: this.clone(),
            at,
        };
        let mut adjoint: Vec<Option<Tensor>> = vec![None; top as usize + 1];
        for (at, g) in seeds {
            accumulate(&mut adjoint[at as usize], g.into_tensor());
        }
        let levels_open = crate::interp::levels_open();
        let recording = crate::autograd::is_grad_enabled();
        for at in (0..=top).rev() {
            let Some(g) = adjoint[at as usize].take() else {
                continue;
            };
            self.found(node, at, || g.clone());
            let e = match seg.entry(at) {
                Entry::Import { link, .. } => {
                    if self.wanted(&link.node) {
                        self.frontier.give(link, Grad::Tensor(g));
                    }
                    continue;
                }
                Entry::Dot(d) => {
                    self.dot_rule(seg, d, useful, |operands, needs| {
                        let [a, b] = operands_in_graph(seg, d, operands);
                        let mut grads = crate::ops::matmul::vjp(&a, &b, &g, &needs).into_iter();
                        std::array::from_fn(|_| grads.next().flatten())
                    })?;
                    continue;
                }
                Entry::Op(e) => e,
            };
            self.stats.nodes_reached += 1;
            let arity = e.op.arity();
            let needs = Self::needs(arity, &e.inputs, useful);
            if needs == [false, false] {
                continue;
            }
            self.stats.rules_run += 1;
            self.take_saved(e)?;
            let args: SmallVec<[Tensor; 2]> = (0..arity)
                .map(|j| {
                    let place = (e.inputs[j] != NO_INPUT).then(|| link(e.inputs[j]));
                    Tensor::number(e.values[j], e.dtype, place)
                })
                .collect();
            // As for a node's rule: with a level open the rule recomputes
            // the output, so that it carries what the levels attach.
            let output = (e.op.saves_output() && !levels_open)
                .then(|| Tensor::number(e.values[2], e.dtype, recording.then(|| link(at))));
            let grads =
                e.op.prim()
                    .vjp(&args, output.as_ref(), &g, &needs[..arity])?;
            for (j, gj) in grads.into_iter().enumerate() {
                if let (true, Some(gj)) = (needs[j], gj) {
                    accumulate(&mut adjoint[e.inputs[j] as usize], gj);
                }
            }
        }
        Ok(())
    }

    /// Marks an entry's saved numbers as used, unless the graph is
    /// retained; an error if an earlier pass used them.
    fn take_saved(&self, e: &OpEntry) -> Result<()> {
        if e.freed.load(Ordering::Relaxed) {
            return Err(Error::GraphFreed { op: e.op.name() });
        }
        if !self.retain_graph {
            e.freed.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl Pass<'_> {
    /// Runs a dot entry's rule: `rule(operands, needs)` is the gradient of
    /// each operand that needs one, which goes to the frontier at the
    /// import it came from (a vector's gradient has no place in the
    /// sweep's numbers).
    fn dot_rule(
        &mut self,
        seg: &Segment,
        d: &DotEntry,
        useful: Option<&[bool]>,
        rule: impl FnOnce(&DotOperands, [bool; 2]) -> [Option<Tensor>; 2],
    ) -> Result<()> {
        self.stats.nodes_reached += 1;
        let needs = Self::needs(2, &d.inputs, useful);
        if needs == [false, false] {
            return Ok(());
        }
        self.stats.rules_run += 1;
        let grads = d.with_operands(self.retain_graph, |operands| rule(operands, needs))?;
        for (j, gj) in grads.into_iter().enumerate() {
            let Some(gj) = gj else { continue };
            let Entry::Import { link, .. } = seg.entry(d.inputs[j]) else {
                unreachable!("a dot's operands are imports");
            };
            self.frontier.give(link, Grad::Tensor(gj));
        }
        Ok(())
    }
}

/// A dot entry's operands as the tensor rule reads them: each from an
/// import in its place in the graph, so that what the rule records
/// (under `create_graph`) differentiates back to it.
fn operands_in_graph(seg: &Segment, d: &DotEntry, operands: &DotOperands) -> [Tensor; 2] {
    std::array::from_fn(|j| {
        let link = match d.inputs[j] {
            NO_INPUT => None,
            at => match seg.entry(at) {
                Entry::Import { link, .. } => Some(link.clone()),
                _ => unreachable!("a dot's operands are imports"),
            },
        };
        let (storage, layout) = operands.get(j);
        Tensor::from_parts(storage.clone(), layout, link)
    })
}

/// The element type of the value at `at`.
fn dtype_at(seg: &Segment, at: u32) -> DType {
    match seg.entry(at) {
        Entry::Op(OpEntry { dtype, .. })
        | Entry::Import { dtype, .. }
        | Entry::Dot(DotEntry { dtype, .. }) => *dtype,
    }
}

/// Adds `g` to an adjoint in `dtype`'s arithmetic (the first one sets it).
#[inline]
fn add_number(adjoint: &mut f64, reached: &mut bool, g: f64, dtype: DType) {
    if !*reached {
        *reached = true;
        *adjoint = g;
    } else if dtype == DType::F32 {
        *adjoint = (*adjoint as f32 + g as f32) as f64;
    } else {
        *adjoint += g;
    }
}

/// An op entry's rule on numbers of type `T`: its inputs' adjoints.
#[inline]
fn rule_on<T: FloatElement>(e: &OpEntry, g: f64) -> [f64; 2] {
    let [x, b, y] = e.values.map(T::of);
    let y = e.op.saves_output().then_some(y);
    e.op.vjp_numbers([x, b], y, T::of(g)).map(|v| v.f64())
}
