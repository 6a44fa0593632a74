//! Gradients handed out as soon as they are final, while the pass goes on
//! (PyTorch's post-accumulate-grad hooks): data-parallel training starts
//! reducing a layer's gradients while backward still runs through the
//! layers below it.
//!
//! The frontier visits the deepest node first, so every leaf (depth 0)
//! would wait for the end of the pass. But a leaf's gradient is final once
//! every node that reads it has been visited, and nothing deeper than the
//! frontier's deepest node can still be reached: a leaf is final as soon
//! as the frontier holds nothing as deep as its shallowest reader.

use super::{children, NodePtr, Pass};
use crate::autograd::node::Node;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rustc_hash::{FxHashMap, FxHashSet};

/// The leaves a caller watches, and whom to tell when each is final.
pub(crate) struct Watched<'a> {
    pub(crate) leaves: &'a [Tensor],
    pub(crate) on_ready: &'a mut dyn FnMut(usize),
}

/// The watched leaves not yet final, and whom to tell.
pub(crate) struct Watch<'a> {
    /// (depth of the shallowest node reading the leaf, the leaf, its index
    /// among the watched), the deepest reader first from the end.
    waiting: Vec<(u64, NodePtr, usize)>,
    on_ready: &'a mut dyn FnMut(usize),
}

impl<'a> Watch<'a> {
    /// Finds the readers of `leaves` in the graph above `roots` (one walk).
    /// A leaf nothing reads is final from the start.
    pub(crate) fn new(
        roots: &[&Node],
        leaves: &[Tensor],
        on_ready: &'a mut dyn FnMut(usize),
    ) -> Result<Watch<'a>> {
        let mut index: FxHashMap<NodePtr, usize> = FxHashMap::default();
        for (k, leaf) in leaves.iter().enumerate() {
            let fresh = match leaf.node() {
                Some(node) if leaf.is_leaf() => index.insert(&**node, k).is_none(),
                _ => false,
            };
            if !fresh {
                return Err(Error::invalid(
                    "backward_watching",
                    format!(
                        "watched tensor {k} is not a leaf that requires grad, or is watched twice"
                    ),
                ));
            }
        }
        let mut shallowest = vec![u64::MAX; leaves.len()];
        let mut seen: FxHashSet<NodePtr> = FxHashSet::default();
        let mut stack: Vec<&Node> = roots.to_vec();
        while let Some(node) = stack.pop() {
            for child in children(node) {
                if let Some(&k) = index.get(&(child as NodePtr)) {
                    shallowest[k] = shallowest[k].min(node.depth());
                }
                if seen.insert(child) {
                    stack.push(child);
                }
            }
        }
        let mut waiting: Vec<(u64, NodePtr, usize)> = index
            .into_iter()
            .map(|(node, k)| (shallowest[k], node, k))
            .collect();
        // Unread leaves (u64::MAX) come out first; ties in watched order.
        waiting.sort_by_key(|&(depth, _, k)| (depth, std::cmp::Reverse(k)));
        Ok(Watch { waiting, on_ready })
    }

    /// Visits and reports every watched leaf that is final now: all of them
    /// once the frontier is empty.
    pub(crate) fn release(&mut self, pass: &mut Pass) -> Result<()> {
        while let Some(&(reader, node, k)) = self.waiting.last() {
            if pass.frontier.deepest().is_some_and(|d| d >= reader) {
                break;
            }
            self.waiting.pop();
            if let Some(g) = pass.frontier.take(node) {
                // SAFETY: the roots keep every node of the graph alive (see `NodePtr`).
                pass.visit(unsafe { &*node }, g)?;
            }
            (self.on_ready)(k);
        }
        Ok(())
    }
}
