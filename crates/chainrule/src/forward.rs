//! Forward accumulation (the note's forward mode) with dual tensors.
//!
//! A dual tensor carries a *tangent* beside its value: the directional
//! derivative `ẋ = ∂x/∂s` along some input direction `s`. Every op computes its
//! output's tangent from its inputs' tangents with its JVP rule (written next
//! to its forward and VJP rules), as the op runs. Nothing is recorded, so the
//! memory of a forward-mode derivative does not grow with the length of the
//! computation: the note's O(1) memory, against reverse mode's O(n).
//!
//! **Levels.** Each [`DualLevel`] is a fresh, numbered level, so forward mode
//! nests (a `jvp` inside a `jvp` gives second derivatives) without confusing
//! one level's tangent with another's. A tensor carries at most one tangent
//! per level: its [`Dual`] part holds the highest level's tangent and the
//! tensor *without* that level (its `primal`), which may carry lower levels in
//! turn. An op on dual inputs runs its JVP rule for the highest level on the
//! inputs stripped of that level; the rule's ops, running on tensors that
//! still carry the lower levels, propagate those levels by the same mechanism,
//! which yields the mixed (tangent-of-tangent) terms exactly.
//!
//! JVP rules are ordinary differentiable ops: reverse mode records them when
//! their inputs need gradients, so `grad` of a `jvp` works, and a reverse pass
//! run over dual tensors (`create_graph`) propagates tangents, so `jvp` of a
//! `grad` (forward-over-reverse Hessian-vector products) works too.
//!
//! Forward mode is one interpreter of the stack (`crate::interp`): each
//! open level claims the ops on tensors that carry its tangent. `jacfwd`
//! pushes many directions at once by `vmap` of `jvp` (see [`crate::func`]).
//!
//! ```
//! use chainrule::{forward::DualLevel, Tensor};
//! let x = Tensor::from_vec(vec![0.5f64, 2.0], &[2]);
//! let level = DualLevel::new();
//! let xd = level.make_dual(&x, &Tensor::ones(&[2], x.dtype())).unwrap();
//! let y = xd.sin() * &xd; // y = x sin x
//! let (value, dy) = level.unpack(&y);
//! let expected: Vec<f64> = [0.5f64, 2.0].iter().map(|v| v.sin() + v * v.cos()).collect();
//! assert_eq!(value.to_vec::<f64>(), [0.5f64.sin() * 0.5, 2.0f64.sin() * 2.0]);
//! for (d, e) in dy.unwrap().to_vec::<f64>().iter().zip(expected) {
//!     assert!((d - e).abs() < 1e-15);
//! }
//! ```

use crate::error::{Error, Result};
use crate::interp::Interpreter;
use crate::ops::Prim;
use crate::tensor::{Tensor, TensorImpl};
use smallvec::SmallVec;
use std::rc::Rc;
use std::sync::Arc;

/// The forward-mode part of a tensor: its tangent at `level`, and the tensor
/// without it.
#[derive(Clone)]
pub(crate) struct Dual {
    pub level: u32,
    pub primal: Tensor,
    pub tangent: Tensor,
}

/// One open level as an interpreter: it claims the ops on tensors carrying
/// its tangent, computes the primal result below, and the tangent by the
/// op's JVP rule.
struct DualInterpreter {
    level: u32,
}

impl Interpreter for DualInterpreter {
    fn claims(&self, inputs: &[&Tensor]) -> bool {
        inputs.iter().any(|t| tangent_at(t, self.level).is_some())
    }

    fn process(&self, prim: &Prim, inputs: &[&Tensor]) -> Result<Tensor> {
        let stripped: SmallVec<[Tensor; 3]> = inputs.iter().map(|t| strip(t, self.level)).collect();
        let refs: SmallVec<[&Tensor; 3]> = stripped.iter().collect();
        let tangents: SmallVec<[Option<Tensor>; 3]> = inputs
            .iter()
            .map(|t| tangent_at(t, self.level).cloned())
            .collect();
        if let Some(joint) = prim.value_and_tangent(&stripped, &tangents) {
            let (value, tangent) = joint?;
            return Ok(wrap(value, self.level, tangent));
        }
        let primal_out = crate::interp::bind(prim.clone(), &refs)?;
        Ok(match prim.jvp(&stripped, &primal_out, &tangents)? {
            Some(t) => wrap(primal_out, self.level, t),
            None => primal_out,
        })
    }
}

fn is_active(level: u32) -> bool {
    crate::interp::is_open(level)
}

/// A forward-mode level: tensors made dual through it carry tangents that
/// every op propagates until the level is dropped (like PyTorch's
/// `forward_ad.dual_level`). Levels nest; drop them in reverse order of
/// creation (as scopes do).
pub struct DualLevel {
    level: u32,
}

impl DualLevel {
    /// Opens a fresh level on this thread.
    #[allow(clippy::new_without_default)] // opening a level is an action, not a default value
    pub fn new() -> DualLevel {
        let level = crate::interp::fresh_id();
        crate::interp::push(level, Rc::new(DualInterpreter { level }));
        DualLevel { level }
    }

    /// `primal` carrying `tangent` at this level. The tangent has the primal's
    /// shape and dtype. Whatever `primal` already carries (its reverse-mode
    /// node, its tangents at other levels) is kept.
    pub fn make_dual(&self, primal: &Tensor, tangent: &Tensor) -> Result<Tensor> {
        if tangent.shape() != primal.shape() {
            return Err(Error::shapes_detail(
                "make_dual",
                primal.shape(),
                tangent.shape(),
                "the tangent must have the primal's shape",
            ));
        }
        crate::ops::same_dtype("make_dual", primal, tangent)?;
        let primal = strip(primal, self.level);
        Ok(wrap(primal, self.level, tangent.clone()))
    }

    /// The value of `t` without this level's tangent, and that tangent (`None`
    /// when `t` does not depend on this level's inputs: a zero tangent).
    pub fn unpack(&self, t: &Tensor) -> (Tensor, Option<Tensor>) {
        (strip(t, self.level), tangent_at(t, self.level).cloned())
    }
}

impl Drop for DualLevel {
    fn drop(&mut self) {
        crate::interp::pop(self.level);
    }
}

/// `primal` carrying `tangent` at `level` (same buffer, same node).
fn wrap(primal: Tensor, level: u32, tangent: Tensor) -> Tensor {
    let out = Tensor(Arc::new(TensorImpl {
        storage: primal.storage().clone(),
        layout: primal.layout().clone(),
        node: primal.node().cloned(),
        grad_slot: primal.0.grad_slot.clone(),
        batch: None,
        dual: Some(Dual {
            level,
            primal: primal.clone(),
            tangent,
        }),
    }));
    crate::interp::same_value(&primal, &out);
    out
}

/// The tangent `t` carries at `level`, if any.
pub(crate) fn tangent_at(t: &Tensor, level: u32) -> Option<&Tensor> {
    let mut cur = t;
    while let Some(d) = &cur.0.dual {
        if d.level == level {
            return Some(&d.tangent);
        }
        cur = &d.primal;
    }
    None
}

/// `t` without its tangent at `level` (cheap when `level` is its highest).
pub(crate) fn strip(t: &Tensor, level: u32) -> Tensor {
    match &t.0.dual {
        None => t.clone(),
        Some(d) if d.level == level => d.primal.clone(),
        Some(d) => {
            if tangent_at(&d.primal, level).is_none() {
                return t.clone();
            }
            wrap(strip(&d.primal, level), d.level, d.tangent.clone())
        }
    }
}

/// Whether `t` carries a tangent at an open level.
pub(crate) fn has_tangent(t: &Tensor) -> bool {
    let mut cur = t;
    while let Some(d) = &cur.0.dual {
        if is_active(d.level) {
            return true;
        }
        cur = &d.primal;
    }
    false
}

/// The dual tensor `t` with its primal replaced by `f(primal)` (same level,
/// same tangent).
pub(crate) fn map_primal(t: &Tensor, f: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
    let d = t.0.dual.as_ref().expect("a dual tensor");
    wrap(f(&d.primal), d.level, d.tangent.clone())
}
