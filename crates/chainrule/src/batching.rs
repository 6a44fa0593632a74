//! `vmap`'s interpreter: a function written for one example runs on a whole
//! batch at once.
//!
//! Inside [`crate::func::vmap`], each mapped input is a *batched* tensor: it
//! shows the shape one example sees, and carries the value of every example
//! with the batch axis first (its `physical` value). Each open `vmap` is a
//! level of the interpreter stack ([`crate::interp`]); it claims the ops on
//! tensors batched at its level and runs each op's batching rule
//! ([`crate::ops::Prim::batch`]) on the physical values: elementwise ops as
//! they are (after lining up the axes), reductions and movement ops on axes
//! shifted past the batch axis, matmul as a batched matmul, gathers with
//! their indices repeated per example, a custom op once per example. The
//! rules are ordinary ops, so every other mode sees them: `grad` of `vmap`,
//! `vmap` of `grad` (per-example gradients), `vmap` of `vmap`, `vmap` of
//! `jvp` (`jacfwd`), `vmap` of a pullback (`jacrev`), traced graphs.

use crate::error::{Error, Result};
use crate::interp::Interpreter;
use crate::layout::Layout;
use crate::ops::{BatchArg, Prim};
use crate::tensor::{Tensor, TensorImpl};
use crate::DType;
use smallvec::SmallVec;
use std::rc::Rc;
use std::sync::Arc;

/// The batched part of a tensor inside `vmap`.
#[derive(Clone)]
pub(crate) struct Batched {
    pub level: u32,
    /// Every example's value, the batch axis first.
    pub physical: Tensor,
}

struct BatchInterpreter {
    level: u32,
    size: usize,
}

impl Interpreter for BatchInterpreter {
    fn claims(&self, inputs: &[&Tensor]) -> bool {
        inputs.iter().any(|t| batched_at(t, self.level).is_some())
    }

    fn process(&self, prim: &Prim, inputs: &[&Tensor]) -> Result<Tensor> {
        // A mismatch names the shapes one example sees, as the user wrote them.
        let example: SmallVec<[(&[usize], DType); 3]> =
            inputs.iter().map(|t| (t.shape(), t.dtype())).collect();
        prim.shape(&example)?;
        let args: SmallVec<[BatchArg; 3]> = inputs
            .iter()
            .map(|t| match batched_at(t, self.level) {
                Some(p) => BatchArg {
                    value: p.clone(),
                    batched: true,
                },
                None => BatchArg {
                    value: (*t).clone(),
                    batched: false,
                },
            })
            .collect();
        let out = prim.batch(&args, self.size)?;
        Ok(wrap(out, self.level))
    }
}

fn batched_at(t: &Tensor, level: u32) -> Option<&Tensor> {
    t.0.batch
        .as_ref()
        .filter(|b| b.level == level)
        .map(|b| &b.physical)
}

/// `physical` (batch axis first) as a batched tensor of `level`.
fn wrap(physical: Tensor, level: u32) -> Tensor {
    let l = physical.layout();
    let layout = Layout {
        shape: l.shape[1..].into(),
        strides: l.strides[1..].into(),
        offset: l.offset,
    };
    Tensor(Arc::new(TensorImpl {
        storage: physical.storage().clone(),
        layout,
        node: None,
        dual: None,
        grad_slot: None,
        batch: Some(Batched { level, physical }),
    }))
}

/// Closes a level when dropped (also when the mapped function fails).
struct Open(u32);

impl Drop for Open {
    fn drop(&mut self) {
        crate::interp::pop(self.0);
    }
}

/// `axis` of `t` moved to position `to` (the others keep their order).
fn move_axis(t: &Tensor, axis: usize, to: usize) -> Result<Tensor> {
    if axis == to {
        return Ok(t.clone());
    }
    let mut perm: Vec<usize> = (0..t.ndim()).filter(|&a| a != axis).collect();
    perm.insert(to, axis);
    t.try_permute(&perm)
}

/// The common batch size of the mapped inputs.
fn batch_size(xs: &[Tensor], in_axes: &[Option<usize>]) -> Result<usize> {
    if in_axes.len() != xs.len() {
        return Err(Error::invalid(
            "vmap",
            format!("{} inputs but {} in_axes", xs.len(), in_axes.len()),
        ));
    }
    let mut size: Option<(usize, usize)> = None;
    for (i, (x, axis)) in xs.iter().zip(in_axes).enumerate() {
        let Some(axis) = *axis else { continue };
        crate::layout::check_axis("vmap", axis, x.shape())?;
        let n = x.shape()[axis];
        match size {
            Some((m, j)) if m != n => {
                return Err(Error::invalid(
                    "vmap",
                    format!("input {i} has {n} examples along axis {axis}, input {j} has {m}"),
                ))
            }
            _ => size = Some((n, i)),
        }
    }
    size.map(|(n, _)| n)
        .ok_or_else(|| Error::invalid("vmap", "no input is mapped (every in_axes entry is None)"))
}

/// `f` mapped over the inputs' `in_axes` (`None`: shared by every example),
/// the results stacked along `out_axis`.
pub(crate) fn call<F, R>(
    f: &F,
    xs: &[Tensor],
    in_axes: &[Option<usize>],
    out_axis: usize,
) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> R,
    R: crate::func::FnOutput,
{
    let size = batch_size(xs, in_axes)?;
    let level = crate::interp::fresh_id();
    let open = Open(level);
    crate::interp::push(level, Rc::new(BatchInterpreter { level, size }));
    let inputs = xs
        .iter()
        .zip(in_axes)
        .map(|(x, axis)| match axis {
            Some(a) => Ok(wrap(move_axis(x, *a, 0)?, level)),
            None => Ok(x.clone()),
        })
        .collect::<Result<Vec<_>>>()?;
    let y = f(&inputs).into_result()?;
    let physical = match batched_at(&y, level) {
        Some(p) => p.clone(),
        // The same value for every example.
        None => {
            let mut shape = vec![size];
            shape.extend_from_slice(y.shape());
            y.unsqueeze(0).broadcast_to(&shape)
        }
    };
    drop(open);
    if out_axis >= physical.ndim() {
        return Err(Error::axis("vmap", out_axis, physical.shape()));
    }
    move_axis(&physical, 0, out_axis)
}
