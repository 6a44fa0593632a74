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
//! per level: its `Dual` part holds the highest level's tangent and the
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
use crate::layout::Layout;
use crate::ops::Prim;
use crate::storage::FloatElement;
use crate::tensor::{Tensor, TensorImpl};
use crate::DType;
use smallvec::SmallVec;
use std::rc::Rc;
use std::sync::Arc;

/// The forward-mode part of a tensor: its tangent at `level`, and the tensor
/// without it.
#[derive(Clone)]
pub(crate) struct Dual {
    pub level: u32,
    parts: Parts,
}

#[derive(Clone)]
enum Parts {
    Tensors {
        primal: Tensor,
        tangent: Tensor,
    },
    /// What an op on numbers makes (see `DualInterpreter::on_numbers`): a
    /// 0-d float value that carries nothing else (no node, no other level),
    /// held in the handle's own buffer, and its tangent as a number (in
    /// `f64`, exact for `f32`). One handle per op instead of three; the
    /// tensors are made when something asks for them.
    Number {
        tangent: f64,
    },
}

impl Dual {
    pub(crate) fn new(level: u32, primal: Tensor, tangent: Tensor) -> Dual {
        Dual {
            level,
            parts: Parts::Tensors { primal, tangent },
        }
    }

    /// The tensor without this level: `of` is the handle carrying `self`.
    pub(crate) fn primal(&self, of: &Tensor) -> Tensor {
        match &self.parts {
            Parts::Tensors { primal, .. } => primal.clone(),
            Parts::Number { .. } => {
                Tensor::from_parts(of.storage().clone(), Layout::scalar(), None)
            }
        }
    }

    /// The tangent at this level: `of` is the handle carrying `self`.
    pub(crate) fn tangent(&self, of: &Tensor) -> Tensor {
        match &self.parts {
            Parts::Tensors { tangent, .. } => tangent.clone(),
            Parts::Number { tangent } => Tensor::number(*tangent, of.dtype(), None),
        }
    }

    /// The primal when it is a tensor of its own (a number's has no lower
    /// level to carry).
    fn lower(&self) -> Option<&Tensor> {
        match &self.parts {
            Parts::Tensors { primal, .. } => Some(primal),
            Parts::Number { .. } => None,
        }
    }

    /// The same, with a primal that gives up ownership of a leaf's gradient
    /// slot (see [`Tensor::for_saving`]).
    pub(crate) fn for_saving(&self) -> Dual {
        match &self.parts {
            Parts::Tensors { primal, tangent } => {
                Dual::new(self.level, primal.for_saving(), tangent.clone())
            }
            Parts::Number { .. } => self.clone(),
        }
    }

    /// The same, as tensors (for a handle that is about to carry more than
    /// a number: a node). `of` is the handle carrying `self`.
    pub(crate) fn as_tensors(&self, of: &Tensor) -> Dual {
        Dual::new(self.level, self.primal(of), self.tangent(of))
    }
}

/// One open level as an interpreter: it claims the ops on tensors carrying
/// its tangent, computes the primal result below, and the tangent by the
/// op's JVP rule.
struct DualInterpreter {
    level: u32,
}

impl Interpreter for DualInterpreter {
    fn claims(&self, inputs: &[&Tensor]) -> bool {
        inputs.iter().any(|t| carries(t, self.level))
    }

    fn process(&self, prim: &Prim, inputs: &[&Tensor]) -> Result<Tensor> {
        if let Some(out) = self.on_numbers(prim, inputs) {
            return Ok(out);
        }
        let stripped: SmallVec<[Tensor; 3]> = inputs.iter().map(|t| strip(t, self.level)).collect();
        let refs: SmallVec<[&Tensor; 3]> = stripped.iter().collect();
        let tangents: SmallVec<[Option<Tensor>; 3]> =
            inputs.iter().map(|t| tangent_at(t, self.level)).collect();
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

impl DualInterpreter {
    /// An elementwise op on 0-d values while this level alone is open
    /// (nothing records, batches or traces them): the value and the
    /// tangent computed on numbers, with the tensor rules' arithmetic (the
    /// same bits), so the op makes only the handles it returns. `None`
    /// sends it to the tensor rules.
    fn on_numbers(&self, prim: &Prim, inputs: &[&Tensor]) -> Option<Tensor> {
        if !prim.on_numbers() || crate::interp::open_levels() != 1 {
            return None;
        }
        match inputs.first()?.dtype() {
            DType::F32 => self.on_numbers_in::<f32>(prim, inputs),
            DType::F64 => self.on_numbers_in::<f64>(prim, inputs),
            _ => None,
        }
    }

    fn on_numbers_in<T: FloatElement>(&self, prim: &Prim, inputs: &[&Tensor]) -> Option<Tensor> {
        let mut args = [T::zero(); 2];
        let mut tangents = [None; 2];
        for (i, t) in inputs.iter().enumerate().take(2) {
            (args[i], tangents[i]) = self.number_and_tangent::<T>(t)?;
        }
        let (value, tangent) = prim.jvp_numbers(args, tangents)?;
        #[cfg(test)]
        RAN_ON_NUMBERS.with(|c| c.set(c.get() + 1));
        let out = Tensor(Arc::new(TensorImpl {
            storage: T::small(&[value]),
            layout: Layout::scalar(),
            node: None,
            grad_slot: None,
            batch: None,
            dual: Some(Dual {
                level: self.level,
                parts: Parts::Number {
                    tangent: tangent.f64(),
                },
            }),
        }));
        Some(out)
    }

    /// The number of a 0-d `t` of element type `T` and its tangent at this
    /// level, when `t` carries nothing else (no node, no other layer).
    fn number_and_tangent<T: FloatElement>(&self, t: &Tensor) -> Option<(T, Option<T>)> {
        let plain = |t: &Tensor| {
            t.ndim() == 0 && t.dtype() == T::DTYPE && t.node().is_none() && !t.has_layer()
        };
        match &t.0.dual {
            None if plain(t) => Some((t.element::<T>(), None)),
            Some(d) if d.level != self.level => None,
            Some(Dual {
                parts: Parts::Number { tangent },
                ..
            }) if t.dtype() == T::DTYPE => Some((t.element::<T>(), Some(T::from_f64(*tangent)))),
            Some(Dual {
                parts: Parts::Tensors { primal, tangent },
                ..
            }) if plain(primal) && plain(tangent) => {
                Some((primal.element::<T>(), Some(tangent.element::<T>())))
            }
            _ => None,
        }
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
    ///
    /// ```
    /// use chainrule::{forward::DualLevel, Tensor};
    /// let level = DualLevel::new();
    /// let x = level.make_dual(&Tensor::scalar(3.0f64), &Tensor::scalar(1.0f64)).unwrap();
    /// let (y, dy) = level.unpack(&x.square()); // d(x²)/dx = 2x
    /// assert_eq!((y.item(), dy.unwrap().item()), (9.0, 6.0));
    /// ```
    #[allow(clippy::new_without_default)] // opening a level is an action, not a default value
    pub fn new() -> DualLevel {
        let level = crate::interp::fresh_id();
        crate::interp::push(level, Rc::new(DualInterpreter { level }));
        DualLevel { level }
    }

    /// `primal` carrying `tangent` at this level. The tangent has the primal's
    /// shape and dtype. Whatever `primal` already carries (its reverse-mode
    /// node, its tangents at other levels) is kept.
    ///
    /// ```
    /// use chainrule::{forward::DualLevel, Tensor};
    /// let level = DualLevel::new();
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// assert!(level.make_dual(&x, &Tensor::scalar(1.0f64)).is_err()); // not x's shape
    /// let xd = level.make_dual(&x, &Tensor::from_vec(vec![1.0f64, -1.0], &[2])).unwrap();
    /// assert_eq!(level.unpack(&(&xd * 3.0)).1.unwrap().to_vec::<f64>(), [3.0, -3.0]);
    /// ```
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
    ///
    /// ```
    /// use chainrule::{forward::DualLevel, Tensor};
    /// let level = DualLevel::new();
    /// let x = level.make_dual(&Tensor::scalar(2.0f64), &Tensor::scalar(1.0f64)).unwrap();
    /// let (value, tangent) = level.unpack(&(&x * &x));
    /// assert_eq!((value.item(), tangent.unwrap().item()), (4.0, 4.0));
    /// assert!(level.unpack(&Tensor::scalar(5.0f64)).1.is_none()); // does not depend on x
    /// ```
    pub fn unpack(&self, t: &Tensor) -> (Tensor, Option<Tensor>) {
        (strip(t, self.level), tangent_at(t, self.level))
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
        node: primal.link().cloned(),
        grad_slot: primal.0.grad_slot.clone(),
        batch: None,
        dual: Some(Dual::new(level, primal.clone(), tangent)),
    }));
    crate::interp::same_value(&primal, &out);
    out
}

/// The tangent `t` carries at `level`, if any.
pub(crate) fn tangent_at(t: &Tensor, level: u32) -> Option<Tensor> {
    let mut cur = t;
    while let Some(d) = &cur.0.dual {
        if d.level == level {
            return Some(d.tangent(cur));
        }
        cur = d.lower()?;
    }
    None
}

/// Whether `t` carries a tangent at `level` (without making it).
fn carries(t: &Tensor, level: u32) -> bool {
    let mut cur = t;
    while let Some(d) = &cur.0.dual {
        if d.level == level {
            return true;
        }
        match d.lower() {
            Some(lower) => cur = lower,
            None => return false,
        }
    }
    false
}

/// `t` without its tangent at `level` (cheap when `level` is its highest).
pub(crate) fn strip(t: &Tensor, level: u32) -> Tensor {
    match &t.0.dual {
        None => t.clone(),
        Some(d) if d.level == level => d.primal(t),
        Some(d) => match d.lower() {
            Some(lower) if carries(lower, level) => {
                wrap(strip(lower, level), d.level, d.tangent(t))
            }
            _ => t.clone(),
        },
    }
}

/// Whether `t` carries a tangent at an open level.
pub(crate) fn has_tangent(t: &Tensor) -> bool {
    let mut cur = t;
    while let Some(d) = &cur.0.dual {
        if is_active(d.level) {
            return true;
        }
        match d.lower() {
            Some(lower) => cur = lower,
            None => return false,
        }
    }
    false
}

/// The dual tensor `t` with its primal replaced by `f(primal)` (same level,
/// same tangent).
pub(crate) fn map_primal(t: &Tensor, f: impl FnOnce(&Tensor) -> Tensor) -> Tensor {
    let d = t.0.dual.as_ref().expect("a dual tensor");
    wrap(f(&d.primal(t)), d.level, d.tangent(t))
}

#[cfg(test)]
thread_local! {
    /// How many ops ran on numbers on this thread (what the tests watch).
    static RAN_ON_NUMBERS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many ops `f` ran on numbers.
    fn ran_on_numbers(f: impl FnOnce()) -> usize {
        let before = RAN_ON_NUMBERS.with(|c| c.get());
        f();
        RAN_ON_NUMBERS.with(|c| c.get()) - before
    }

    /// 0-d ops under one level run on numbers; anything else (a node, a
    /// second level, a non-scalar) goes to the tensor rules.
    #[test]
    fn only_plain_scalar_ops_of_a_lone_level_run_on_numbers() {
        let x = Tensor::scalar(0.5f64);
        let one = Tensor::scalar(1.0f64);
        let level = DualLevel::new();
        let xd = level.make_dual(&x, &one).unwrap();
        assert_eq!(ran_on_numbers(|| drop((xd.sin(), &xd * &x))), 2);
        let tracked = level.make_dual(&x.requires_grad(), &one).unwrap();
        assert_eq!(ran_on_numbers(|| drop(tracked.sin())), 0);
        let v = Tensor::from_vec(vec![0.5f64], &[1]);
        let vd = level.make_dual(&v, &v.ones_like()).unwrap();
        assert_eq!(ran_on_numbers(|| drop(vd.sin())), 0);
        let inner = DualLevel::new();
        assert_eq!(ran_on_numbers(|| drop(xd.sin())), 0);
        drop(inner);
    }

    /// A value made on numbers (one handle holding the value and the
    /// tangent as a number) reads the same as one made by the tensor rules
    /// wherever it goes next: unpacked, under a second level, inside
    /// derivatives of either mode over the other.
    #[test]
    fn values_made_on_numbers_read_as_tensor_duals() {
        let (x0, sx, cx) = (0.5f64, 0.5f64.sin(), 0.5f64.cos());
        let level = DualLevel::new();
        let x = level
            .make_dual(&Tensor::scalar(x0), &Tensor::scalar(1.0f64))
            .unwrap();
        let y = x.sin() * &x; // on numbers: y = x sin x, y' = sin x + x cos x
        let (dy, y_value) = (sx + x0 * cx, sx * x0);
        assert!(matches!(
            y.0.dual.as_ref().map(|d| &d.parts),
            Some(Parts::Number { .. })
        ));
        let (v, t) = level.unpack(&y);
        assert_eq!((v.item(), t.unwrap().item()), (y_value, dy));
        assert!(!v.has_layer());

        // Under a second level: the tensor rules, both tangents carried.
        let inner = DualLevel::new();
        let z = inner.make_dual(&y, &Tensor::scalar(2.0f64)).unwrap();
        let w = &z * &z;
        let (w_outer, w_inner) = inner.unpack(&w);
        assert_eq!(w_inner.unwrap().item(), 2.0 * y_value * 2.0);
        drop(inner);
        let (w_value, w_dot) = level.unpack(&w_outer);
        assert_eq!(w_value.item(), y_value * y_value);
        assert!((w_dot.unwrap().item() - 2.0 * y_value * dy).abs() < 1e-15);

        drop(level);

        // Forward over reverse and reverse over forward on 0-d values:
        // (x sin x)'' = 2 cos x − x sin x.
        let f = |t: &Tensor| t.sin() * t;
        let second = 2.0 * cx - x0 * sx;
        let at = Tensor::scalar(x0);
        let one = Tensor::scalar(1.0f64);
        let fwd_rev = crate::func::jvp(|t| crate::func::grad(f, t).unwrap(), &at, &one).unwrap();
        let rev_fwd = crate::func::grad(|t| crate::func::jvp(f, t, &one).unwrap().1, &at).unwrap();
        assert!((fwd_rev.1.item() - second).abs() < 1e-14);
        assert!((rev_fwd.item() - second).abs() < 1e-14);
    }
}
