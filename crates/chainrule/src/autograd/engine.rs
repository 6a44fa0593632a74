//! The backward pass: one visit per node, in reverse topological order, with
//! an explicit stack (no recursion), so graphs of millions of nodes are fine.

use super::node::{Node, NodeKind, OpNode};
use super::GradModeGuard;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
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
    /// Nodes reached from the output (leaves included).
    pub nodes_reached: usize,
    /// VJP rules run; a branch leading to no requested gradient runs none.
    pub rules_run: usize,
}

const NO_CHILD: usize = usize::MAX;

fn edges_of(n: &Node) -> &[Option<Arc<Node>>] {
    match &n.kind {
        NodeKind::Op(op) => &op.edges,
        NodeKind::Leaf { .. } => &[],
    }
}

struct Visit<'a> {
    node: &'a Node,
    /// Post-order index of each edge's node (`NO_CHILD` for a pruned input).
    children: SmallVec<[usize; 2]>,
}

/// Post-order of the nodes reachable from `roots`: every node after all of its
/// inputs, so walking it backwards visits each node after all its consumers.
/// Also returns each node's position in that order.
fn topological_order(roots: &[Arc<Node>]) -> (Vec<Visit<'_>>, FxHashMap<*const Node, usize>) {
    let mut index: FxHashMap<*const Node, usize> = FxHashMap::default();
    let mut order: Vec<Visit> = Vec::new();
    // Borrowed nodes: everything reachable stays alive through the roots'
    // edges, which nothing removes while the caller holds the roots.
    let mut stack: Vec<(&Node, usize)> = Vec::new();
    for root in roots {
        if index.contains_key(&Arc::as_ptr(root)) {
            continue;
        }
        index.insert(Arc::as_ptr(root), NO_CHILD);
        stack.push((root, 0));
        while let Some((node, pos)) = stack.last_mut() {
            let edges = edges_of(node);
            if *pos < edges.len() {
                let edge = &edges[*pos];
                *pos += 1;
                if let Some(child) = edge {
                    if let std::collections::hash_map::Entry::Vacant(e) =
                        index.entry(Arc::as_ptr(child))
                    {
                        e.insert(NO_CHILD);
                        // SAFETY of the borrow's lifetime: see above.
                        let child: &Node = unsafe { &*Arc::as_ptr(child) };
                        stack.push((child, 0));
                    }
                }
            } else {
                let (node, _) = stack.pop().unwrap();
                let children = edges_of(node)
                    .iter()
                    .map(|e| e.as_ref().map_or(NO_CHILD, |c| index[&Arc::as_ptr(c)]))
                    .collect();
                *index.get_mut(&(node as *const Node)).unwrap() = order.len();
                order.push(Visit { node, children });
            }
        }
    }
    (order, index)
}

fn accumulate(slot: &mut Option<Tensor>, g: Tensor) {
    *slot = Some(match slot.take() {
        None => g,
        Some(existing) => crate::ops::binary::add_into(existing, &g),
    });
}

/// Runs backward from `roots` (each with its adjoint). With `targets`, returns
/// the gradient of each target (zeros when unreached) and touches no `.grad`;
/// without, accumulates into the `.grad` of every leaf reached.
pub(crate) fn run(
    roots: &[(&Tensor, Option<Tensor>)],
    targets: Option<&[&Tensor]>,
    retain_graph: bool,
    create_graph: bool,
) -> Result<(BackwardStats, Vec<Tensor>)> {
    let retain_graph = retain_graph || create_graph;
    let mut root_nodes = Vec::with_capacity(roots.len());
    let mut seeds = Vec::with_capacity(roots.len());
    for (t, g) in roots {
        let node = t.node().ok_or_else(|| Error::Backward {
            msg: "the output does not require grad: no leaf it depends on was marked with \
                  requires_grad (or it was computed under no_grad)"
                .into(),
        })?;
        let seed = match g {
            Some(g) if g.shape() != t.shape() || g.dtype() != t.dtype() => {
                return Err(Error::Backward {
                    msg: format!(
                        "output gradient has shape {:?} ({:?}) but the output has shape {:?} ({:?})",
                        g.shape(),
                        g.dtype(),
                        t.shape(),
                        t.dtype()
                    ),
                })
            }
            Some(g) => g.clone(),
            None if t.numel() == 1 => t.ones_like(),
            None => {
                return Err(Error::Backward {
                    msg: format!(
                        "an output of shape {:?} is not a scalar: pass its gradient (a vector-Jacobian product) with backward_with",
                        t.shape()
                    ),
                })
            }
        };
        root_nodes.push(node.clone());
        seeds.push(seed);
    }

    let (order, position) = topological_order(&root_nodes);

    // Which nodes lead to a requested gradient; without targets, every node
    // does (a node exists only above a leaf that requires grad).
    let mut target_of: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
    if let Some(ts) = targets {
        for (k, t) in ts.iter().enumerate() {
            if let Some(&i) = t.node().and_then(|n| position.get(&Arc::as_ptr(n))) {
                target_of.entry(i).or_default().push(k);
            }
        }
    }
    let needed: Vec<bool> = if targets.is_some() {
        let mut needed = vec![false; order.len()];
        for i in 0..order.len() {
            needed[i] = target_of.contains_key(&i)
                || order[i]
                    .children
                    .iter()
                    .any(|&c| c != NO_CHILD && needed[c]);
        }
        needed
    } else {
        vec![true; order.len()]
    };

    let mut results: Vec<Option<Tensor>> = vec![None; targets.map_or(0, |t| t.len())];
    let mut grads: Vec<Option<Tensor>> = vec![None; order.len()];
    for (node, seed) in root_nodes.iter().zip(seeds) {
        accumulate(&mut grads[position[&Arc::as_ptr(node)]], seed);
    }
    drop(position);

    let _mode = GradModeGuard::new(create_graph);
    let mut stats = BackwardStats {
        nodes_reached: order.len(),
        rules_run: 0,
    };
    for i in (0..order.len()).rev() {
        let Some(g) = grads[i].take() else { continue };
        if !needed[i] {
            continue;
        }
        if let Some(ks) = target_of.get(&i) {
            for &k in ks {
                results[k] = Some(g.clone());
            }
        }
        let visit = &order[i];
        match &visit.node.kind {
            NodeKind::Leaf { .. } => {
                // A leaf whose handles are all gone has no one to read its gradient.
                let slot = visit.node.grad_slot().filter(|_| targets.is_none());
                if let Some(slot) = slot {
                    let mut slot = slot.lock().unwrap();
                    let g = if create_graph { g } else { g.detach() };
                    accumulate(&mut slot, g);
                }
            }
            NodeKind::Op(op) => {
                let needs: SmallVec<[bool; 4]> = visit
                    .children
                    .iter()
                    .map(|&c| c != NO_CHILD && needed[c])
                    .collect();
                if !needs.iter().any(|&n| n) {
                    continue;
                }
                stats.rules_run += 1;
                let input_grads = run_rule(visit.node, op, &g, &needs, retain_graph)?;
                for (j, gi) in input_grads.into_iter().enumerate() {
                    if let (true, Some(gi)) = (needs[j], gi) {
                        accumulate(&mut grads[visit.children[j]], gi);
                    }
                }
            }
        }
    }
    let results = match targets {
        Some(ts) => results
            .into_iter()
            .zip(ts)
            .map(|(r, t)| r.unwrap_or_else(|| t.zeros_like()))
            .collect(),
        None => Vec::new(),
    };
    Ok((stats, results))
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
        .ok_or(Error::GraphFreed { op: op.prim.name() })?;
    // The output is rebuilt with its own node, so that a rule reading it stays
    // differentiable under create_graph. While any level is open (forward
    // mode, vmap, a trace) the rule recomputes it instead, so that it carries
    // what those levels attach (tangents, the batch axis), and so that a
    // traced graph computes it (common-subexpression elimination then merges
    // it with the forward's).
    let dual = crate::interp::levels_open();
    let output = saved
        .output
        .as_ref()
        .filter(|_| !dual)
        .map(|(storage, layout)| {
            Tensor::from_parts(
                storage.clone(),
                layout.clone(),
                crate::autograd::is_grad_enabled().then(|| {
                    let ptr = node as *const Node;
                    // SAFETY: every node lives in an `Arc` (see `attach_node`) that is
                    // alive here; this takes one more reference to it.
                    unsafe {
                        Arc::increment_strong_count(ptr);
                        Arc::from_raw(ptr)
                    }
                }),
            )
        });
    let grads = op.prim.vjp(&saved.inputs, output.as_ref(), g, needs)?;
    for (j, gi) in grads.iter().enumerate() {
        if let (true, Some(gi)) = (needs[j], gi) {
            let input = &saved.inputs[j];
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
/// other leaves, and must be differentiable for an outer derivative).
pub(crate) fn depends_on_other_leaves(root: &Tensor, inputs: &[Tensor]) -> bool {
    let Some(root) = root.node() else {
        return false;
    };
    let stop: rustc_hash::FxHashSet<*const Node> = inputs
        .iter()
        .filter_map(|t| t.node().map(Arc::as_ptr))
        .collect();
    let mut seen: rustc_hash::FxHashSet<*const Node> = Default::default();
    let mut stack: Vec<&Node> = vec![root];
    while let Some(node) = stack.pop() {
        let ptr = node as *const Node;
        if stop.contains(&ptr) || !seen.insert(ptr) {
            continue;
        }
        match &node.kind {
            NodeKind::Leaf { .. } => return true,
            NodeKind::Op(op) => stack.extend(op.edges.iter().flatten().map(|e| &**e)),
        }
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
    let roots: Vec<(&Tensor, Option<Tensor>)> = outputs
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
    let (stats, grads) = run(&roots, Some(inputs), opts.retain_graph, opts.create_graph)?;
    Ok((grads, stats))
}

impl Tensor {
    /// Accumulates `∂self/∂leaf` into the `.grad` of every leaf this scalar
    /// depends on that requires gradients; frees the saved intermediates.
    pub fn backward(&self) -> Result<()> {
        self.backward_with(&BackwardOptions::default()).map(|_| ())
    }

    /// `backward` with an explicit output gradient (for non-scalar outputs),
    /// `retain_graph` and `create_graph`; returns what the pass visited.
    pub fn backward_with(&self, opts: &BackwardOptions) -> Result<BackwardStats> {
        Ok(run(
            &[(self, opts.grad.clone())],
            None,
            opts.retain_graph,
            opts.create_graph,
        )?
        .0)
    }
}
