//! User-defined differentiable ops: the user supplies the forward, the JVP and
//! the VJP; chainrule records the op as one primitive, so it composes with
//! every mode (reverse, forward, higher order, the functional transforms).
//!
//! ```
//! use chainrule::custom::{apply, CustomOp};
//! use chainrule::{func, Result, Tensor};
//! use std::sync::Arc;
//!
//! /// `softplus(x) = ln(1 + eˣ)`, computed stably, with its derivative
//! /// `sigmoid(x)` given by hand.
//! struct Softplus;
//! impl CustomOp for Softplus {
//!     fn name(&self) -> &'static str { "softplus" }
//!     fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
//!         let x = &x[0];
//!         Ok(x.relu() + (-x.abs()).exp().add_scalar(1.0).log())
//!     }
//!     fn jvp(&self, x: &[Tensor], _y: &Tensor, t: &[Option<Tensor>]) -> Result<Tensor> {
//!         Ok(t[0].as_ref().unwrap() * &x[0].sigmoid())
//!     }
//!     fn vjp(&self, x: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
//!         Ok(vec![Some(g * &x[0].sigmoid())])
//!     }
//! }
//!
//! let softplus = |x: &Tensor| apply(Arc::new(Softplus), &[x]).unwrap().sum();
//! let x = Tensor::from_vec(vec![-1.0f64, 0.0, 2.0], &[3]);
//! let g = func::grad(softplus, &x).unwrap();
//! assert!((g.get(&[1]) - 0.5).abs() < 1e-15);
//! // Its second derivative comes from differentiating the user's rules.
//! let h = func::hessian(softplus, &x).unwrap();
//! assert!((h.get(&[1, 1]) - 0.25).abs() < 1e-15);
//! ```

use super::{bind, Prim};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;

/// A differentiable op defined by the user.
///
/// Write `jvp` and `vjp` with chainrule's own ops (not on raw numbers): then
/// they are differentiable in turn, and higher derivatives through the op work.
/// (The unwind-safety bounds keep [`Tensor`] unwind-safe; any `Sync` op
/// without a `Cell`-like field has them.)
pub trait CustomOp:
    Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe + 'static
{
    /// The op's name, shown in errors and graph dumps.
    fn name(&self) -> &'static str;

    /// The output from the inputs' values. The inputs are plain tensors (no
    /// graph, no tangents): what the op does inside is not recorded.
    fn forward(&self, inputs: &[Tensor]) -> Result<Tensor>;

    /// The output's tangent given each input's tangent (`None`: zero, and at
    /// least one is present), each of its input's shape. The result has the
    /// output's shape.
    fn jvp(
        &self,
        inputs: &[Tensor],
        output: &Tensor,
        tangents: &[Option<Tensor>],
    ) -> Result<Tensor>;

    /// Each input's adjoint given the output's adjoint `g` (of the output's
    /// shape), each of its input's shape; `None` for an input that gets none.
    fn vjp(&self, inputs: &[Tensor], output: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

/// A custom op as a primitive of the graph (equal to another when it is the
/// same op object).
#[derive(Clone)]
pub(crate) struct CustomPrim(pub Arc<dyn CustomOp>);

impl PartialEq for CustomPrim {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CustomPrim {}

impl std::hash::Hash for CustomPrim {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as *const () as usize).hash(state)
    }
}

impl fmt::Debug for CustomPrim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Custom({})", self.0.name())
    }
}

/// Runs `op` on `inputs`, recording it for reverse mode and propagating
/// tangents for forward mode like any built-in op.
pub fn apply(op: Arc<dyn CustomOp>, inputs: &[&Tensor]) -> Result<Tensor> {
    if inputs.is_empty() {
        return Err(Error::invalid(
            op.name(),
            "a custom op needs at least one input",
        ));
    }
    bind(Prim::Custom(CustomPrim(op)), inputs)
}

/// The kernel: the user's forward on the inputs' values.
pub(crate) fn forward(op: &CustomPrim, inputs: &[&Tensor]) -> Result<Tensor> {
    let op = &op.0;
    let plain: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    let out = guarded(op.name(), "forward", || op.forward(&plain))?;
    if let Some(x) = inputs.iter().find(|x| x.dtype() != out.dtype()) {
        return Err(Error::DTypeMismatch {
            op: op.name(),
            lhs: x.dtype(),
            rhs: out.dtype(),
        });
    }
    Ok(out.detach_untraced())
}

/// Runs one of the user's functions, turning its error or its panic into an
/// error naming the op (the user's code must not take the caller down).
fn guarded<T>(name: &'static str, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let failed = |e: Error| Error::invalid(name, format!("the custom op's {what} failed: {e}"));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(failed),
        Err(payload) => Err(Error::invalid(
            name,
            format!(
                "the custom op's {what} panicked: {}",
                crate::error::panic_message(&*payload)
            ),
        )),
    }
}

/// The output's tangent by the user's rule, checked.
pub(crate) fn jvp(
    op: &CustomPrim,
    inputs: &[Tensor],
    output: &Tensor,
    tangents: &[Option<Tensor>],
) -> Result<Option<Tensor>> {
    let name = op.0.name();
    let t = guarded(name, "JVP", || op.0.jvp(inputs, output, tangents))?;
    if t.shape() != output.shape() || t.dtype() != output.dtype() {
        return Err(Error::invalid(
            name,
            format!(
                "the custom op's JVP returned {:?} {:?} for an output of {:?} {:?}",
                t.dtype(),
                t.shape(),
                output.dtype(),
                output.shape()
            ),
        ));
    }
    Ok(Some(t))
}

/// The inputs' adjoints by the user's rule (the output recomputed when it was
/// not saved).
pub(crate) fn vjp(
    op: &CustomPrim,
    inputs: &[Tensor],
    output: Option<&Tensor>,
    g: &Tensor,
    needs: &[bool],
) -> Result<SmallVec<[Option<Tensor>; 2]>> {
    let output = match output {
        Some(y) => y.clone(),
        None => {
            let refs: Vec<&Tensor> = inputs.iter().collect();
            apply(op.0.clone(), &refs)?
        }
    };
    let grads = guarded(op.0.name(), "VJP", || op.0.vjp(inputs, &output, g))?;
    if grads.len() != inputs.len() {
        return Err(Error::Backward {
            msg: format!(
                "custom op `{}`: its VJP returned {} adjoints for {} inputs",
                op.0.name(),
                grads.len(),
                inputs.len()
            ),
        });
    }
    Ok(grads
        .into_iter()
        .zip(needs)
        .map(|(g, &need)| g.filter(|_| need))
        .collect())
}
