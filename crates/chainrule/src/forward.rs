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
//! **Batched tangents.** A tangent may have one extra leading axis (`(B,) +
//! primal shape`): B directions pushed through one pass. [`crate::func::jacfwd`]
//! and [`crate::func::hessian`] use it to get a whole Jacobian from one forward
//! pass. Every JVP rule handles the extra axis; at most one level per thread
//! is batched at a time.
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
use crate::ops::Prim;
use crate::tensor::{Tensor, TensorImpl};
use smallvec::SmallVec;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// The forward-mode part of a tensor: its tangent at `level`, and the tensor
/// without it.
#[derive(Clone)]
pub(crate) struct Dual {
    pub level: u32,
    pub primal: Tensor,
    pub tangent: Tensor,
}

thread_local! {
    /// The levels open on this thread, innermost last.
    static ACTIVE: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    static NEXT_LEVEL: Cell<u32> = const { Cell::new(1) };
    /// The batched level open on this thread, if any.
    static BATCHED: Cell<Option<u32>> = const { Cell::new(None) };
}

fn is_active(level: u32) -> bool {
    ACTIVE.with(|a| a.borrow().contains(&level))
}

/// Whether a batched level is open on this thread (batched tangents don't nest).
pub(crate) fn batched_level_open() -> bool {
    BATCHED.with(|b| b.get().is_some())
}

/// A forward-mode level: tensors made dual through it carry tangents that
/// every op propagates until the level is dropped (like PyTorch's
/// `forward_ad.dual_level`). Levels nest; drop them in reverse order of
/// creation (as scopes do).
pub struct DualLevel {
    level: u32,
    batched: bool,
}

impl DualLevel {
    /// Opens a fresh level on this thread.
    #[allow(clippy::new_without_default)] // opening a level is an action, not a default value
    pub fn new() -> DualLevel {
        let level = NEXT_LEVEL.with(|n| {
            let l = n.get();
            n.set(l + 1);
            l
        });
        ACTIVE.with(|a| a.borrow_mut().push(level));
        DualLevel {
            level,
            batched: false,
        }
    }

    /// A level whose tangents carry a leading batch axis (one pass pushes B
    /// directions); `None` when a batched level is already open on this thread.
    pub(crate) fn new_batched() -> Option<DualLevel> {
        if batched_level_open() {
            return None;
        }
        let mut level = DualLevel::new();
        level.batched = true;
        BATCHED.with(|b| b.set(Some(level.level)));
        Some(level)
    }

    /// `primal` carrying `tangent` at this level. The tangent has the primal's
    /// shape and dtype. Whatever `primal` already carries (its reverse-mode
    /// node, its tangents at other levels) is kept.
    pub fn make_dual(&self, primal: &Tensor, tangent: &Tensor) -> Result<Tensor> {
        let batch_ok = self.batched
            && tangent.ndim() == primal.ndim() + 1
            && tangent.shape()[1..] == *primal.shape();
        if tangent.shape() != primal.shape() && !batch_ok {
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

    /// This level's tangent of `t` (zeros of the primal's shape — or with the
    /// batch axis, for a batched level of `batch` directions — when `t` does
    /// not depend on this level).
    pub(crate) fn tangent_or_zeros(&self, t: &Tensor, batch: Option<usize>) -> Tensor {
        match tangent_at(t, self.level) {
            Some(tan) => tan.clone(),
            None => {
                let mut shape: Vec<usize> = batch.into_iter().collect();
                shape.extend_from_slice(t.shape());
                Tensor::zeros(&shape, t.dtype())
            }
        }
    }
}

impl Drop for DualLevel {
    fn drop(&mut self) {
        let _ = ACTIVE.try_with(|a| {
            let mut a = a.borrow_mut();
            if let Some(i) = a.iter().rposition(|&l| l == self.level) {
                a.remove(i);
            }
        });
        if self.batched {
            let _ = BATCHED.try_with(|b| b.set(None));
        }
    }
}

/// `primal` carrying `tangent` at `level` (same buffer, same node).
fn wrap(primal: Tensor, level: u32, tangent: Tensor) -> Tensor {
    let traced = crate::graph::trace::active().then(|| primal.clone());
    let out = Tensor(Arc::new(TensorImpl {
        storage: primal.storage().clone(),
        layout: primal.layout().clone(),
        node: primal.node().cloned(),
        grad_slot: primal.0.grad_slot.clone(),
        dual: Some(Dual {
            level,
            primal,
            tangent,
        }),
    }));
    if let Some(p) = traced {
        crate::graph::trace::alias(&p, &out);
    }
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
    highest_open_level(t).is_some()
}

fn highest_open_level(t: &Tensor) -> Option<u32> {
    let mut cur = t;
    let mut best: Option<u32> = None;
    while let Some(d) = &cur.0.dual {
        if best.is_none_or(|b| d.level > b) && is_active(d.level) {
            best = Some(d.level);
        }
        cur = &d.primal;
    }
    best
}

/// `t` as a fresh reverse-mode leaf at every level of its dual chain, so
/// that the primal seen by each level's rules is tracked too.
pub(crate) fn as_leaf(t: &Tensor) -> Tensor {
    match &t.0.dual {
        None => Tensor::new_leaf(t.storage().clone(), t.layout().clone()),
        Some(d) => wrap(as_leaf(&d.primal), d.level, d.tangent.clone()),
    }
}

/// Forward mode's half of [`crate::ops::record`]: gives `out` (computed from
/// the inputs' values) the tangent of every open level its inputs carry.
pub(crate) fn attach_tangents(
    prim: &Prim,
    inputs: &[&Tensor],
    out: Tensor,
) -> crate::Result<Tensor> {
    let Some(level) = inputs.iter().filter_map(|t| highest_open_level(t)).max() else {
        return Ok(out);
    };
    let stripped: SmallVec<[Tensor; 3]> = inputs.iter().map(|t| strip(t, level)).collect();
    let tangents: SmallVec<[Option<Tensor>; 3]> = inputs
        .iter()
        .map(|t| tangent_at(t, level).cloned())
        .collect();
    let refs: SmallVec<[&Tensor; 3]> = stripped.iter().collect();
    // The output without this level: lower levels attached first, so that a
    // rule reading the output sees it with those levels' tangents.
    let primal_out = attach_tangents(prim, &refs, out)?;
    Ok(match prim.jvp(&stripped, &primal_out, &tangents)? {
        Some(t) => wrap(primal_out, level, t),
        None => primal_out,
    })
}

/// How many leading batch axes a tangent has beyond its primal's shape (0 or 1).
pub(crate) fn batch_axes(tangent: &Tensor, primal: &Tensor) -> usize {
    tangent.ndim() - primal.ndim()
}

/// The batch axes of a tangent (empty when unbatched).
pub(crate) fn batch_prefix<'a>(tangent: &'a Tensor, primal: &Tensor) -> &'a [usize] {
    &tangent.shape()[..batch_axes(tangent, primal)]
}

/// `prefix + shape`.
pub(crate) fn prefixed(prefix: &[usize], shape: &[usize]) -> Vec<usize> {
    prefix.iter().chain(shape).copied().collect()
}

/// A tangent of a `primal_ndim`-d input made ready to broadcast against an
/// `out_ndim`-d result: an unbatched tangent broadcasts as its primal does; a
/// batched one gets unit axes between its batch axis and its primal axes.
pub(crate) fn lift(t: &Tensor, primal: &Tensor, out_ndim: usize) -> Tensor {
    let k = batch_axes(t, primal);
    if k == 0 || primal.ndim() == out_ndim {
        return t.clone();
    }
    let mut shape: Vec<usize> = t.shape()[..k].to_vec();
    shape.extend(std::iter::repeat_n(1, out_ndim - primal.ndim()));
    shape.extend_from_slice(primal.shape());
    t.reshape(&shape)
}

/// `t` broadcast to `prefix + shape` when it is not already that shape (a term
/// of a JVP that involves only a broadcast input).
pub(crate) fn fit(t: Tensor, prefix: &[usize], shape: &[usize]) -> Tensor {
    let full = prefixed(prefix, shape);
    if t.shape() == full.as_slice() {
        t
    } else {
        t.broadcast_to(&full)
    }
}

/// The batch prefix of a two-input rule's tangents (at least one present).
pub(crate) fn pair_prefix(
    a: &Tensor,
    b: &Tensor,
    ta: &Option<Tensor>,
    tb: &Option<Tensor>,
) -> Vec<usize> {
    match (ta, tb) {
        (Some(t), _) => batch_prefix(t, a).to_vec(),
        (None, Some(t)) => batch_prefix(t, b).to_vec(),
        (None, None) => unreachable!("a JVP runs only when some input has a tangent"),
    }
}

/// The sum of a two-input rule's tangent terms (at least one present).
pub(crate) fn sum_terms(da: Option<Tensor>, db: Option<Tensor>) -> Tensor {
    match (da, db) {
        (Some(x), Some(y)) => x + y,
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => unreachable!("a JVP runs only when some input has a tangent"),
    }
}

/// The batch prefix shared by the present tangents of a rule's inputs.
pub(crate) fn common_prefix(inputs: &[Tensor], tangents: &[Option<Tensor>]) -> Vec<usize> {
    inputs
        .iter()
        .zip(tangents)
        .find_map(|(x, t)| t.as_ref().map(|t| batch_prefix(t, x).to_vec()))
        .unwrap_or_default()
}
