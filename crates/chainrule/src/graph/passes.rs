//! Graph passes, each a small rewrite that returns a new graph (nodes stay in
//! evaluation order): pruning, common-subexpression elimination, constant
//! folding, algebraic simplification; and the memory plan.

use super::{apply, GOp, Graph, Node, NodeId};
use crate::error::Result;
use crate::ops::{BinaryOp, Param, Prim, ReduceOp, UnaryOp};
use crate::Tensor;
use rustc_hash::FxHashMap;

/// What makes two nodes the same computation (with their inputs and shape).
#[derive(PartialEq, Eq, Hash)]
enum CseKey {
    Prim(Prim),
    /// A small constant, by its values.
    Value(crate::DType, Vec<u64>),
    /// A large constant, by its buffer.
    Buffer(usize),
}

/// What [`Graph::optimize`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Nodes in the graph before the passes.
    pub nodes_before: usize,
    /// Nodes in the optimized graph.
    pub nodes_after: usize,
    /// Nodes dropped by the first [`Graph::prune`], which no output depends on.
    pub pruned: usize,
    /// Nodes removed by common-subexpression elimination (and the pruning after it).
    pub merged: usize,
    /// Nodes removed by constant folding (and the pruning after it).
    pub folded: usize,
    /// Nodes removed by algebraic simplification (and the pruning after it).
    pub simplified: usize,
}

/// Rebuilds a graph node by node. `rewrite` returns the new id of a node
/// (`None`: copy it with its inputs remapped).
fn rebuild(
    g: &Graph,
    mut rewrite: impl FnMut(&mut Graph, &Node, &[NodeId]) -> Option<NodeId>,
) -> Graph {
    let mut out = Graph {
        examples: g.examples.clone(),
        ..Graph::default()
    };
    let mut map: Vec<NodeId> = Vec::with_capacity(g.nodes.len());
    for node in &g.nodes {
        let inputs: Vec<NodeId> = node.inputs.iter().map(|i| map[i.0 as usize]).collect();
        let id = match rewrite(&mut out, node, &inputs) {
            Some(id) => id,
            None => out.push(node.op.clone(), inputs, &node.shape, node.dtype),
        };
        map.push(id);
    }
    out.inputs = g.inputs.iter().map(|i| map[i.0 as usize]).collect();
    out.outputs = g.outputs.iter().map(|i| map[i.0 as usize]).collect();
    checked(out)
}

/// `g`, checked in debug builds (every pass must keep a graph well formed).
fn checked(g: Graph) -> Graph {
    #[cfg(debug_assertions)]
    if let Err(e) = g.check() {
        panic!("a graph pass produced an ill-formed graph: {e}\n{g}");
    }
    g
}

impl Graph {
    /// Drops the nodes no output depends on (the note's pruning of unneeded
    /// branches, at the graph level). Inputs are kept, so feeds stay valid.
    pub fn prune(&self) -> Graph {
        let mut needed = vec![false; self.nodes.len()];
        for o in &self.outputs {
            needed[o.0 as usize] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if needed[i] {
                for j in &self.nodes[i].inputs {
                    needed[j.0 as usize] = true;
                }
            }
        }
        for i in &self.inputs {
            needed[i.0 as usize] = true;
        }
        let mut out = Graph {
            examples: self.examples.clone(),
            ..Graph::default()
        };
        let mut map = vec![NodeId(u32::MAX); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            if needed[i] {
                let inputs = node.inputs.iter().map(|j| map[j.0 as usize]).collect();
                map[i] = out.push(node.op.clone(), inputs, &node.shape, node.dtype);
            }
        }
        out.inputs = self.inputs.iter().map(|i| map[i.0 as usize]).collect();
        out.outputs = self.outputs.iter().map(|i| map[i.0 as usize]).collect();
        checked(out)
    }

    /// Merges nodes that compute the same op on the same inputs.
    pub fn eliminate_common_subexpressions(&self) -> Graph {
        // A loop primitive hashes by its address, which the caches inside
        // it (its derived loops, its native code) leave as it is.
        #[allow(clippy::mutable_key_type)]
        let mut seen: FxHashMap<(CseKey, Vec<NodeId>, Vec<usize>), NodeId> = FxHashMap::default();
        rebuild(self, |out, node, inputs| {
            let key = match &node.op {
                GOp::Input(_) => return None,
                GOp::Constant(t) if t.numel() <= 64 => CseKey::Value(t.dtype(), bits(t)),
                GOp::Constant(t) => CseKey::Buffer(std::sync::Arc::as_ptr(&t.0) as usize),
                GOp::Prim(p) => CseKey::Prim(p.clone()),
            };
            let key = (key, inputs.to_vec(), node.shape.clone());
            if let Some(&id) = seen.get(&key) {
                return Some(id);
            }
            let id = out.push(node.op.clone(), inputs.to_vec(), &node.shape, node.dtype);
            seen.insert(key, id);
            Some(id)
        })
    }

    /// Evaluates every node whose inputs are all constants, once, now.
    pub fn fold_constants(&self) -> Result<Graph> {
        let mut failure = None;
        let g = rebuild(self, |out, node, inputs| {
            if matches!(node.op, GOp::Input(_) | GOp::Constant(_)) || inputs.is_empty() {
                return None;
            }
            let values: Option<Vec<Tensor>> = inputs
                .iter()
                .map(|i| match &out.node(*i).op {
                    GOp::Constant(t) => Some(t.clone()),
                    _ => None,
                })
                .collect();
            let values = values?;
            let refs: Vec<&Tensor> = values.iter().collect();
            let _off = crate::autograd::GradModeGuard::new(false);
            match apply(node, &refs) {
                Ok(v) => Some(out.push(GOp::Constant(v), Vec::new(), &node.shape, node.dtype)),
                Err(e) => {
                    failure.get_or_insert(e);
                    None
                }
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(g),
        }
    }

    /// Algebraic identities: `x·1`, `x+0`, `x−0`, scaling by 1, shifting by
    /// 0, reshapes and broadcasts to the same shape, a transpose of a
    /// transpose, a copy of a fresh buffer, and the sum of a broadcast (which
    /// is a multiplication by the number of copies).
    pub fn simplify(&self) -> Graph {
        rebuild(self, simplify_node)
    }

    /// All the passes, repeated until none changes the graph.
    pub fn optimize(&self) -> Graph {
        self.optimize_with_report().0
    }

    /// [`Graph::optimize`] and what each pass did.
    pub fn optimize_with_report(&self) -> (Graph, PassReport) {
        let mut report = PassReport {
            nodes_before: self.nodes.len(),
            ..PassReport::default()
        };
        let mut g = self.prune();
        report.pruned += self.nodes.len() - g.nodes.len();
        loop {
            let before = g.nodes.len();
            let simplified = g.simplify().prune();
            report.simplified += g.nodes.len().saturating_sub(simplified.nodes.len());
            let folded = match simplified.fold_constants() {
                Ok(f) => f.prune(),
                Err(_) => simplified.clone(),
            };
            report.folded += simplified.nodes.len().saturating_sub(folded.nodes.len());
            let merged = folded.eliminate_common_subexpressions().prune();
            report.merged += folded.nodes.len().saturating_sub(merged.nodes.len());
            g = merged;
            if g.nodes.len() == before {
                break;
            }
        }
        let g = g.share_loop_passes().prune();
        report.nodes_after = g.nodes.len();
        (g, report)
    }

    /// A loop whose stacking loop (its reverse mode's forward pass, on the
    /// same inputs) is in the graph too is read from it: the forward pass
    /// runs once, not twice. The stacking loop moves up to the loop's place
    /// (it has the same inputs, so they come before it).
    fn share_loop_passes(&self) -> Graph {
        let loop_of = |n: &Node| match &n.op {
            GOp::Prim(Prim::Loop(l)) => Some(l.0.clone()),
            _ => None,
        };
        // Each loop's stacking loop node, when there is one.
        let mut stacked_by: Vec<Option<usize>> = vec![None; self.nodes.len()];
        for (i, a) in self.nodes.iter().enumerate() {
            let Some(la) = loop_of(a) else { continue };
            stacked_by[i] = self.nodes[i + 1..].iter().position(|b| {
                b.inputs == a.inputs && loop_of(b).is_some_and(|lb| la.is_stacked_by(&lb))
            });
            stacked_by[i] = stacked_by[i].map(|j| i + 1 + j);
        }
        if stacked_by.iter().all(Option::is_none) {
            return self.clone();
        }
        let mut moved: FxHashMap<usize, NodeId> = FxHashMap::default();
        let mut index = 0;
        rebuild(self, |out, node, inputs| {
            let i = index;
            index += 1;
            if let Some(&id) = moved.get(&i) {
                return Some(id);
            }
            let j = stacked_by[i]?;
            let b = &self.nodes[j];
            let stacked = out.push(b.op.clone(), inputs.to_vec(), &b.shape, b.dtype);
            moved.insert(j, stacked);
            let GOp::Prim(Prim::Loop(l)) = &node.op else {
                unreachable!("only loops are stacked")
            };
            Some(primal_of_stacked(
                out,
                stacked,
                l.0.stacked_layout(),
                node.dtype,
            ))
        })
    }
}

/// A loop's output read from its stacking loop's output `stacked` (see
/// `Loop::stacked_layout`): the final carry, then each step's outputs.
fn primal_of_stacked(
    g: &mut Graph,
    stacked: NodeId,
    (n, steps, p, step): (usize, usize, usize, usize),
    dtype: crate::DType,
) -> NodeId {
    let narrow = |axis, start, len| Prim::Narrow { axis, start, len };
    let carry = g.push(GOp::Prim(narrow(0, 0, n)), vec![stacked], &[n], dtype);
    if p == 0 {
        return carry;
    }
    let all = g.push(
        GOp::Prim(narrow(0, n, steps * step)),
        vec![stacked],
        &[steps * step],
        dtype,
    );
    let shape = [steps, step];
    let rows = g.push(
        GOp::Prim(Prim::Reshape(shape[..].into())),
        vec![all],
        &shape,
        dtype,
    );
    let outs = g.push(GOp::Prim(narrow(1, 0, p)), vec![rows], &[steps, p], dtype);
    let outs = g.push(GOp::Prim(Prim::Contiguous), vec![outs], &[steps, p], dtype);
    let flat = [steps * p];
    let outs = g.push(
        GOp::Prim(Prim::Reshape(flat[..].into())),
        vec![outs],
        &flat,
        dtype,
    );
    let total = [n + steps * p];
    g.push(
        GOp::Prim(Prim::Concat { axis: 0 }),
        vec![carry, outs],
        &total,
        dtype,
    )
}

/// A small constant's elements as bits (integers exactly, not through `f64`).
fn bits(t: &Tensor) -> Vec<u64> {
    match t.dtype().is_float() {
        true => t.to_vec::<f64>().iter().map(|v| v.to_bits()).collect(),
        false => t.to_vec::<i64>().iter().map(|&v| v as u64).collect(),
    }
}

fn constant_value(g: &Graph, id: NodeId) -> Option<f64> {
    match &g.node(id).op {
        GOp::Constant(t) => {
            let v = t.to_vec_f64();
            let first = *v.first()?;
            v.iter().all(|&x| x == first).then_some(first)
        }
        _ => None,
    }
}

fn prim_of(g: &Graph, id: NodeId) -> Option<&Prim> {
    match &g.node(id).op {
        GOp::Prim(p) => Some(p),
        _ => None,
    }
}

/// `cond`, a comparison of `dtype` values, as their mask (see [`Prim::Mask`]).
fn as_mask(g: &mut Graph, cond: NodeId, dtype: crate::DType) -> Option<NodeId> {
    let Some(Prim::Compare(op)) = prim_of(g, cond) else {
        return None;
    };
    let (op, node) = (*op, g.node(cond));
    let (inputs, shape) = (node.inputs.clone(), node.shape.clone());
    (g.node(inputs[0]).dtype == dtype)
        .then(|| g.push(GOp::Prim(Prim::Mask(op)), inputs.to_vec(), &shape, dtype))
}

fn simplify_node(out: &mut Graph, node: &Node, inputs: &[NodeId]) -> Option<NodeId> {
    let GOp::Prim(prim) = &node.op else {
        return None;
    };
    let same_shape = |i: usize| out.node(inputs[i]).shape == node.shape;
    match prim {
        Prim::Binary(BinaryOp::Mul) => {
            for (c, x) in [(0, 1), (1, 0)] {
                if constant_value(out, inputs[c]) == Some(1.0) && same_shape(x) {
                    return Some(inputs[x]);
                }
            }
            None
        }
        Prim::Binary(BinaryOp::Add) => {
            for (c, x) in [(0, 1), (1, 0)] {
                if constant_value(out, inputs[c]) == Some(0.0) && same_shape(x) {
                    return Some(inputs[x]);
                }
            }
            merge_disjoint_pads(out, node, inputs)
        }
        Prim::Binary(BinaryOp::Sub) | Prim::Binary(BinaryOp::Div) => {
            let unit = if matches!(prim, Prim::Binary(BinaryOp::Sub)) {
                0.0
            } else {
                1.0
            };
            (constant_value(out, inputs[1]) == Some(unit) && same_shape(0)).then_some(inputs[0])
        }
        // A comparison choosing between floats, or converted to one, is a
        // mask of their dtype (which a compiled kernel keeps in registers).
        Prim::Where => {
            let mask = as_mask(out, inputs[0], node.dtype)?;
            let op = GOp::Prim(Prim::Where);
            Some(out.push(
                op,
                vec![mask, inputs[1], inputs[2]],
                &node.shape,
                node.dtype,
            ))
        }
        Prim::Cast(to) if to.is_float() => as_mask(out, inputs[0], *to),
        Prim::Unary(UnaryOp::Scale { c }) if c.0 == 1.0 => Some(inputs[0]),
        Prim::Unary(UnaryOp::Shift { c }) if c.0 == 0.0 => Some(inputs[0]),
        Prim::Reshape(_) | Prim::BroadcastTo(_) if same_shape(0) => Some(inputs[0]),
        Prim::Pad { .. } if same_shape(0) => Some(inputs[0]),
        Prim::Reshape(to) => {
            // A reshape of a reshape is one reshape of the original.
            match prim_of(out, inputs[0]) {
                Some(Prim::Reshape(_)) => {
                    let src = out.node(inputs[0]).inputs[0];
                    if out.node(src).shape == node.shape {
                        return Some(src);
                    }
                    let op = GOp::Prim(Prim::Reshape(to.clone()));
                    Some(out.push(op, vec![src], &node.shape, node.dtype))
                }
                _ => None,
            }
        }
        Prim::Permute(outer) => {
            if outer.iter().enumerate().all(|(i, &p)| i == p) {
                return Some(inputs[0]);
            }
            let Some(Prim::Permute(inner)) = prim_of(out, inputs[0]) else {
                return None;
            };
            // permute(permute(x, q), p) = permute(x, q∘p)
            let composed: crate::layout::Dims = outer.iter().map(|&p| inner[p]).collect();
            let src = out.node(inputs[0]).inputs[0];
            if composed.iter().enumerate().all(|(i, &p)| i == p) {
                return Some(src);
            }
            Some(out.push(
                GOp::Prim(Prim::Permute(composed)),
                vec![src],
                &node.shape,
                node.dtype,
            ))
        }
        Prim::Contiguous => {
            // These ops' results are fresh row-major buffers (an elementwise
            // op's may repeat its inputs' expanded axes: `Prim::sunk`).
            let fresh = matches!(
                prim_of(out, inputs[0]),
                Some(Prim::Matmul | Prim::Reduce { .. } | Prim::Contiguous)
            );
            fresh.then_some(inputs[0])
        }
        Prim::Reduce {
            op: ReduceOp::Sum,
            axes,
            keepdim,
        } => {
            // sum over the broadcast axes of broadcast(x) = count · x
            let Some(Prim::BroadcastTo(_)) = prim_of(out, inputs[0]) else {
                return None;
            };
            let src = out.node(inputs[0]).inputs[0];
            let (xs, bs) = (&out.node(src).shape, &out.node(inputs[0]).shape);
            if xs.len() != bs.len() {
                return None;
            }
            let exact = (0..bs.len()).all(|a| {
                if axes.contains(&a) {
                    xs[a] == 1
                } else {
                    xs[a] == bs[a]
                }
            });
            if !exact {
                return None;
            }
            let count: usize = axes.iter().map(|&a| bs[a]).product();
            let xshape = xs.clone();
            let scaled = out.push(
                GOp::Prim(Prim::Unary(UnaryOp::Scale {
                    c: Param(count as f64),
                })),
                vec![src],
                &xshape,
                node.dtype,
            );
            Some(if *keepdim || xshape == node.shape {
                scaled
            } else {
                out.push(
                    GOp::Prim(Prim::Reshape(node.shape.as_slice().into())),
                    vec![scaled],
                    &node.shape,
                    node.dtype,
                )
            })
        }
        _ => None,
    }
}

/// `pad(a) + pad(b)` along one axis with blocks that do not overlap is one
/// pad of the blocks concatenated in order, zeros between them. The VJP of
/// taking a tensor apart (`narrow` per coefficient in Horner's rule, per
/// parameter column in bundle adjustment) is a sum of one full-size pad per
/// piece, each an interpreted node; a chain of them becomes one concat
/// (the gaps fill as the chain goes on, and a pad of the whole axis drops).
fn merge_disjoint_pads(out: &mut Graph, node: &Node, inputs: &[NodeId]) -> Option<NodeId> {
    let (axis, size, mut pieces) = padded_pieces(out, node, inputs[0])?;
    let (axis_b, size_b, more) = padded_pieces(out, node, inputs[1])?;
    if (axis, size) != (axis_b, size_b) {
        return None;
    }
    pieces.extend(more);
    pieces.sort_by_key(|&(start, _)| start);
    // (start, end, block) in order.
    let spans: Vec<(usize, usize, NodeId)> = pieces
        .iter()
        .map(|&(s, id)| (s, s + out.node(id).shape[axis], id))
        .collect();
    if spans.windows(2).any(|w| w[0].1 > w[1].0) {
        return None; // overlapping blocks add up: not a concatenation
    }
    let start = spans[0].0;
    let (mut parts, mut at) = (Vec::new(), start);
    for (s, end, id) in spans {
        if s > at {
            parts.push(zeros(out, node, axis, s - at));
        }
        parts.push(id);
        at = end;
    }
    let mut shape = node.shape.clone();
    shape[axis] = at - start;
    let concat = out.push(GOp::Prim(Prim::Concat { axis }), parts, &shape, node.dtype);
    let pad = GOp::Prim(Prim::Pad { axis, start, size });
    Some(out.push(pad, vec![concat], &node.shape, node.dtype))
}

/// A pad as (axis, output size, [(start, block)]).
type PaddedPieces = (usize, usize, Vec<(usize, NodeId)>);

/// A pad of `node`'s shape and dtype as its pieces: a block that is a
/// concatenation along the axis gives its pieces, less the zero gaps an
/// earlier merge put between them.
fn padded_pieces(out: &Graph, node: &Node, id: NodeId) -> Option<PaddedPieces> {
    let &Prim::Pad { axis, start, size } = prim_of(out, id)? else {
        return None;
    };
    let n = out.node(id);
    if n.shape != node.shape || n.dtype != node.dtype {
        return None;
    }
    let block = n.inputs[0];
    let pieces = match prim_of(out, block) {
        Some(&Prim::Concat { axis: c }) if c == axis => {
            let mut at = start;
            let mut pieces = Vec::new();
            for &piece in &out.node(block).inputs {
                if !is_zero_gap(out, piece) {
                    pieces.push((at, piece));
                }
                at += out.node(piece).shape[axis];
            }
            pieces
        }
        _ => vec![(start, block)],
    };
    Some((axis, size, pieces))
}

/// Zeros of `node`'s shape but `len` along `axis`: a broadcast scalar, no
/// buffer (see [`is_zero_gap`]).
fn zeros(out: &mut Graph, node: &Node, axis: usize, len: usize) -> NodeId {
    let mut shape = node.shape.clone();
    shape[axis] = len;
    let zero = Tensor::zeros(&[], node.dtype);
    let scalar = out.push(GOp::Constant(zero), Vec::new(), &[], node.dtype);
    let op = GOp::Prim(Prim::BroadcastTo(shape.as_slice().into()));
    out.push(op, vec![scalar], &shape, node.dtype)
}

fn is_zero_gap(g: &Graph, id: NodeId) -> bool {
    matches!(prim_of(g, id), Some(Prim::BroadcastTo(_)))
        && g.node(g.node(id).inputs[0]).shape.is_empty()
        && constant_value(g, g.node(id).inputs[0]) == Some(0.0)
}

/// When each value can be released, and the peak memory that gives.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// After node `i` runs, these values are no longer needed.
    pub(crate) free_after: Vec<Vec<NodeId>>,
    /// The most bytes of computed values alive at once under the plan
    /// (constants excluded; views count with the buffer they share).
    pub planned_peak_bytes: usize,
    /// The bytes of every computed value, all kept to the end (no plan).
    pub unplanned_bytes: usize,
}

/// Whether a primitive's result shares its input's buffer.
fn is_view(op: &GOp) -> bool {
    matches!(
        op,
        GOp::Prim(Prim::Reshape(_) | Prim::Permute(_) | Prim::BroadcastTo(_) | Prim::Narrow { .. })
    )
}

impl Graph {
    /// Last-use analysis: every value is released right after its last
    /// consumer runs; outputs live to the end.
    pub fn memory_plan(&self) -> MemoryPlan {
        let n = self.nodes.len();
        let mut last_use: Vec<usize> = (0..n).collect();
        for (i, node) in self.nodes.iter().enumerate() {
            for j in &node.inputs {
                last_use[j.0 as usize] = last_use[j.0 as usize].max(i);
            }
        }
        for o in &self.outputs {
            last_use[o.0 as usize] = n;
        }
        let mut free_after: Vec<Vec<NodeId>> = vec![Vec::new(); n];
        for (i, &l) in last_use.iter().enumerate() {
            if l < n {
                free_after[l].push(NodeId(i as u32));
            }
        }
        // Bytes: a view shares its source's buffer, which lives as long as
        // the longest-lived value sharing it.
        let bytes = |node: &Node| node.shape.iter().product::<usize>() * node.dtype.size();
        let mut owner: Vec<usize> = (0..n).collect();
        for (i, node) in self.nodes.iter().enumerate() {
            if is_view(&node.op) {
                owner[i] = owner[node.inputs[0].0 as usize];
            }
        }
        let mut buffer_end = vec![0usize; n];
        for i in 0..n {
            buffer_end[owner[i]] = buffer_end[owner[i]].max(last_use[i]);
        }
        let mut delta = vec![0isize; n + 2];
        let mut unplanned = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            if owner[i] != i || matches!(node.op, GOp::Constant(_)) {
                continue;
            }
            let b = bytes(node);
            unplanned += b;
            delta[i] += b as isize;
            delta[buffer_end[i] + 1] -= b as isize;
        }
        let (mut live, mut peak) = (0isize, 0isize);
        for d in &delta {
            live += d;
            peak = peak.max(live);
        }
        MemoryPlan {
            free_after,
            planned_peak_bytes: peak as usize,
            unplanned_bytes: unplanned,
        }
    }
}
