//! Reverse accumulation on the implicit graph (the note's "back-propagation").
//!
//! Shapes, and how the note's Jacobian products map onto the API: for a scalar
//! `z` and a tensor `w` of shape `[n]`, the note writes `∂z/∂w` as a row
//! `(1, n)`; chainrule stores it as a tensor of `w`'s shape `[n]`. The chain
//! rule `(1,n) = (1,k)(k,n)` is what each op's VJP rule computes: given the
//! adjoint of its output (the `(1,k)` row, stored in the output's shape) it
//! returns the adjoint of each input (the `(1,n)` row, stored in the input's
//! shape), without ever forming the `(k,n)` Jacobian. For a non-scalar output
//! `y` of shape `[m]`, `backward_with(grad = v)` computes `vᵀ ∂y/∂x`, one row
//! of the `(m,n)` Jacobian per unit vector `v`.

pub(crate) mod engine;
pub(crate) mod node;

pub use engine::{grad, grad_with, grad_with_stats, BackwardOptions, BackwardStats};

use std::cell::Cell;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread are recorded for backward.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode of this thread when dropped.
pub struct GradModeGuard {
    previous: bool,
}

impl GradModeGuard {
    /// Sets this thread's grad mode until the guard is dropped.
    pub fn new(enabled: bool) -> Self {
        let previous = GRAD_ENABLED.with(|g| g.replace(enabled));
        GradModeGuard { previous }
    }
}

impl Drop for GradModeGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Runs `f` with recording turned off on this thread (like `torch.no_grad`).
///
/// ```
/// use chainrule::{autograd::no_grad, Tensor};
/// let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
/// let y = no_grad(|| &w * 2.0);
/// assert!(!y.needs_grad());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = GradModeGuard::new(false);
    f()
}
