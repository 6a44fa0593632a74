//! Gradient checkpointing: a segment's intermediates are not kept for the
//! backward pass but recomputed when it reaches the segment. The note's
//! reverse mode stores every intermediate (O(n) memory); checkpointing `k`
//! segments stores only their boundaries and one segment's intermediates at a
//! time, for the price of running each segment's forward twice.

use super::{Module, Param, Parameters};
use crate::autograd::{self, BackwardOptions, GradModeGuard};
use crate::custom::{apply, CustomOp};
use crate::error::Result;
use crate::Tensor;
use std::sync::Arc;

type Segment = Arc<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// The segment as one op of the graph: its VJP reruns it with recording on.
struct Recompute {
    f: Segment,
}

// The segment is only called, never observed mid-panic.
impl std::panic::RefUnwindSafe for Recompute {}
impl std::panic::UnwindSafe for Recompute {}

impl CustomOp for Recompute {
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    fn forward(&self, inputs: &[Tensor]) -> Result<Tensor> {
        (self.f)(&inputs[0])
    }

    fn jvp(&self, inputs: &[Tensor], _y: &Tensor, tangents: &[Option<Tensor>]) -> Result<Tensor> {
        // `checkpoint` runs the segment directly for dual inputs, so this is
        // reached only through a custom use of the op: differentiate in x.
        let t = tangents[0]
            .clone()
            .unwrap_or_else(|| inputs[0].zeros_like());
        Ok(crate::func::jvp(|x: &Tensor| (self.f)(x), &inputs[0], &t)?.1)
    }

    fn vjp(&self, inputs: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // Under create_graph the engine records this rule: keep the recomputed
        // gradient connected to the segment's input.
        let create = autograd::is_grad_enabled();
        let _on = GradModeGuard::new(true);
        let x = if create {
            crate::autograd::track_at_fresh_level(&inputs[0])
        } else {
            inputs[0].detach().requires_grad()
        };
        let y = (self.f)(&x)?;
        if !y.needs_grad() {
            return Ok(inputs.iter().map(|_| None).collect());
        }
        let targets: Vec<&Tensor> = std::iter::once(&x).chain(&inputs[1..]).collect();
        let grads = autograd::grad_with(
            &[&y],
            &targets,
            &BackwardOptions {
                grad: Some(g.clone()),
                retain_graph: false,
                create_graph: create,
            },
        )?;
        Ok(grads.into_iter().map(Some).collect())
    }
}

/// `f(x)` with its intermediates recomputed during backward instead of
/// stored. `params` are the tensors `f` reads besides `x` that need
/// gradients (a layer's weights): they receive their gradients as usual.
///
/// `f` must compute the same thing when rerun; a dropout inside it would
/// draw a different mask.
pub fn checkpoint<F>(f: F, x: &Tensor, params: &[Tensor]) -> Result<Tensor>
where
    F: Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
{
    if !autograd::is_grad_enabled() || crate::forward::has_tangent(x) {
        // Nothing would be stored anyway (no recording, or forward mode).
        return f(x);
    }
    let inputs: Vec<&Tensor> = std::iter::once(x).chain(params).collect();
    apply(Arc::new(Recompute { f: Arc::new(f) }), &inputs)
}

/// A module whose forward is checkpointed as one segment (see [`checkpoint`]).
pub struct Checkpointed<M>(Arc<M>);

impl<M: Module + 'static> Checkpointed<M> {
    /// Wraps `inner`, whose forward then runs under [`checkpoint`].
    pub fn new(inner: M) -> Self {
        Checkpointed(Arc::new(inner))
    }
}

impl<M: Module + 'static> Module for Checkpointed<M> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let params: Vec<Tensor> = self.0.params().iter().map(Param::value).collect();
        let inner = self.0.clone();
        checkpoint(move |x: &Tensor| inner.forward(x), x, &params)
    }
}

impl<M: Module + 'static> Parameters for Checkpointed<M> {
    fn named_params(&self) -> Vec<(String, Param)> {
        self.0.named_params()
    }

    fn named_buffers(&self) -> Vec<(String, super::Buffer)> {
        self.0.named_buffers()
    }

    fn set_training(&self, training: bool) {
        self.0.set_training(training)
    }
}
