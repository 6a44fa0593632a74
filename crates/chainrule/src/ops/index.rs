//! Indexing primitives (index_select, gather, and their adjoints) and `where`.

use super::binary::broadcast_pair;
use super::movement::sum_to;
use super::{bind, same_dtype, Prim};
use crate::axis::Axis;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::elementwise::zip3;
use crate::kernels::index as k;
use crate::layout::broadcast_shapes;
use crate::storage::{with_dtype, with_scalar};
use crate::tensor::Tensor;
use smallvec::{smallvec, SmallVec};
use std::sync::Arc;

/// `(outer, axis length, inner)` of a shape split at `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

fn with_axis(shape: &[usize], axis: usize, len: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[axis] = len;
    s
}

pub(crate) fn index_select(x: &Tensor, axis: usize, index: Arc<[usize]>) -> Tensor {
    bind(Prim::IndexSelect { axis, index }, &[x]).expect("indices were checked")
}

pub(crate) fn index_add(g: &Tensor, axis: usize, index: Arc<[usize]>, size: usize) -> Tensor {
    bind(Prim::IndexAdd { axis, index, size }, &[g]).expect("indices were checked")
}

pub(crate) fn gather(x: &Tensor, axis: usize, index: Arc<[usize]>) -> Tensor {
    bind(Prim::Gather { axis, index }, &[x]).expect("indices were checked")
}

pub(crate) fn scatter_add(g: &Tensor, axis: usize, index: Arc<[usize]>, size: usize) -> Tensor {
    bind(Prim::ScatterAdd { axis, index, size }, &[g]).expect("indices were checked")
}

/// The kernels of the four indexing primitives.
pub(crate) fn index_select_forward(x: &Tensor, axis: usize, index: &[usize]) -> Tensor {
    let x = x.contiguous();
    let (outer, len, inner) = split(x.shape(), axis);
    let shape = with_axis(x.shape(), axis, index.len());
    with_scalar!(x.dtype(), T => Tensor::from_buffer(
        k::index_select(x.buffer::<T>(), outer, len, inner, index), &shape))
}

pub(crate) fn index_add_forward(g: &Tensor, axis: usize, index: &[usize], size: usize) -> Tensor {
    let g = g.contiguous();
    let (outer, _, inner) = split(g.shape(), axis);
    let shape = with_axis(g.shape(), axis, size);
    with_dtype!(g.dtype(), T => Tensor::from_buffer(
        k::index_add(g.buffer::<T>(), outer, size, inner, index), &shape))
}

pub(crate) fn gather_forward(x: &Tensor, axis: usize, index: &[usize]) -> Tensor {
    let x = x.contiguous();
    let (outer, len, inner) = split(x.shape(), axis);
    let shape = with_axis(x.shape(), axis, gathered_len(x.shape(), axis, index.len()));
    with_scalar!(x.dtype(), T => Tensor::from_buffer(
        k::gather(x.buffer::<T>(), outer, len, inner, index), &shape))
}

pub(crate) fn scatter_add_forward(g: &Tensor, axis: usize, index: &[usize], size: usize) -> Tensor {
    let g = g.contiguous();
    let (outer, _, inner) = split(g.shape(), axis);
    let shape = with_axis(g.shape(), axis, size);
    with_dtype!(g.dtype(), T => Tensor::from_buffer(
        k::scatter_add(g.buffer::<T>(), outer, size, inner, index), &shape))
}

/// How many entries `gather` picks along `axis` with `n` indices.
pub(crate) fn gathered_len(shape: &[usize], axis: usize, n: usize) -> usize {
    let (outer, _, inner) = split(shape, axis);
    n / (outer * inner).max(1)
}

/// The shape with `axis` set to `len`.
pub(crate) fn with_axis_len(shape: &[usize], axis: usize, len: usize) -> Vec<usize> {
    with_axis(shape, axis, len)
}

/// The kernel of `where` (its dtype rule has admitted the operands: a
/// bool condition, or a float mask of the branches' dtype).
pub(crate) fn where_forward(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dtype = same_dtype("where", a, b)?;
    let (la, lb) = broadcast_pair("where", a, b)?;
    let shape = where_shape(cond.shape(), &la.shape)?;
    crate::limits::check_alloc("where", &shape, dtype)?;
    let lc = cond.layout().broadcast_to(&shape).unwrap();
    let (la, lb) = (
        la.broadcast_to(&shape).unwrap(),
        lb.broadcast_to(&shape).unwrap(),
    );
    let out = match cond.dtype() {
        DType::Bool => with_scalar!(dtype, T => Tensor::from_buffer(
            zip3(cond.buffer::<bool>(), &lc, a.buffer::<T>(), &la, b.buffer::<T>(), &lb,
                 |c, x, y| if c { x } else { y }),
            &shape)),
        _ => with_dtype!(dtype, T => Tensor::from_buffer(
            zip3(cond.buffer::<T>(), &lc, a.buffer::<T>(), &la, b.buffer::<T>(), &lb,
                 |c, x, y| if c != T::zero() { x } else { y }),
            &shape)),
    };
    Ok(out)
}

/// `a` where `cond` holds, else `b`, for derivative rules: `cond` is a bool
/// tensor or a float mask (see [`Prim::Mask`]) of the branches' dtype.
pub(crate) fn select(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    crate::error::or_panic(bind(Prim::Where, &[&constant_condition(cond), a, b]))
}

/// The condition cut from the graph (a bool one never is in it).
fn constant_condition(cond: &Tensor) -> Tensor {
    match cond.dtype() {
        DType::Bool => cond.clone(),
        _ => cond.detach(),
    }
}

/// The shape of `where(cond, ·)` given the branches' common shape.
pub(crate) fn where_shape(cond: &[usize], branches: &[usize]) -> Result<Vec<usize>> {
    broadcast_shapes(cond, branches)
        .map(|s| s.to_vec())
        .ok_or_else(|| {
            Error::shapes_detail("where", cond, branches, "condition does not broadcast")
        })
}

pub(crate) fn where_vjp(
    inputs: &[Tensor],
    g: &Tensor,
    needs: &[bool],
) -> SmallVec<[Option<Tensor>; 2]> {
    let (cond, a, b) = (&inputs[0], &inputs[1], &inputs[2]);
    let zero = Tensor::zeros(&[], g.dtype());
    smallvec![
        None,
        needs[1].then(|| sum_to(&select(cond, g, &zero), a.shape())),
        needs[2].then(|| sum_to(&select(cond, &zero, g), b.shape())),
    ]
}

/// The JVP of `where`: the branches' tangents selected by the same condition.
pub(crate) fn where_jvp(inputs: &[Tensor], out: &Tensor, tangents: &[Option<Tensor>]) -> Tensor {
    let zero = Tensor::zeros(&[], out.dtype());
    let branch = |i: usize| tangents[i].clone().unwrap_or_else(|| zero.clone());
    let t = select(&inputs[0], &branch(1), &branch(2));
    if t.shape() == out.shape() {
        t
    } else {
        t.broadcast_to(out.shape())
    }
}

/// `index` repeated once per entry of the leading axes `prefix` (a gather's
/// indices tile the axes before its own).
pub(crate) fn repeat_index(index: &Arc<[usize]>, copies: usize) -> Arc<[usize]> {
    if copies == 1 {
        return index.clone();
    }
    index
        .iter()
        .copied()
        .cycle()
        .take(index.len() * copies)
        .collect()
}

fn check_indices(op: &'static str, index: &[usize], len: usize) -> Result<()> {
    match index.iter().find(|&&i| i >= len) {
        Some(i) => Err(Error::invalid(
            op,
            format!("index {i} is out of range for an axis of length {len}"),
        )),
        None => Ok(()),
    }
}

impl Tensor {
    /// The entries `index` along `axis` (like `torch.index_select`).
    pub fn try_index_select(&self, axis: impl Axis, index: &[usize]) -> Result<Tensor> {
        let axis = crate::axis::resolve("index_select", axis, self.shape())?;
        check_indices("index_select", index, self.shape()[axis])?;
        let mut shape = self.shape().to_vec();
        shape[axis] = index.len();
        crate::limits::check_alloc("index_select", &shape, self.dtype())?;
        Ok(index_select(self, axis, index.into()))
    }

    /// `out[.., j, ..] = self[.., index[.., j, ..], ..]` along `axis`, like
    /// `torch.gather`: `index` holds, row-major, a tensor of `self`'s shape
    /// but with `k = index.len() / (other axes)` entries along `axis`. With
    /// logits `(n, c)` and labels `[n]`, `gather(1, labels)` is `(n, 1)`.
    pub fn try_gather(&self, axis: impl Axis, index: &[usize]) -> Result<Tensor> {
        let axis = crate::axis::resolve("gather", axis, self.shape())?;
        let (outer, len, inner) = split(self.shape(), axis);
        if outer * inner == 0 || !index.len().is_multiple_of(outer * inner) {
            return Err(Error::invalid(
                "gather",
                format!(
                    "{} indices do not tile shape {:?} along axis {axis}",
                    index.len(),
                    self.shape()
                ),
            ));
        }
        check_indices("gather", index, len)?;
        crate::limits::check_alloc("gather", &[index.len()], self.dtype())?;
        Ok(gather(self, axis, index.into()))
    }

    /// `a` where the `bool` tensor `cond` holds, else `b`; all three
    /// broadcast. No gradient flows to `cond`.
    pub fn try_where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        same_dtype("where", a, b)?;
        if cond.dtype() != DType::Bool {
            return Err(Error::dtype(
                "where",
                cond.dtype(),
                "a bool condition (a comparison's result)",
            ));
        }
        let branches = super::binary::broadcast_shape("where", a.shape(), b.shape())?;
        let shape = where_shape(cond.shape(), &branches)?;
        crate::limits::check_alloc("where", &shape, a.dtype())?;
        bind(Prim::Where, &[cond, a, b])
    }

    #[track_caller]
    pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
        crate::error::or_panic(Self::try_where_(cond, a, b))
    }

    /// Panicking form of [`Tensor::try_index_select`].
    #[track_caller]
    pub fn index_select(&self, axis: impl Axis, index: &[usize]) -> Tensor {
        crate::error::or_panic(self.try_index_select(axis, index))
    }

    /// Panicking form of [`Tensor::try_gather`].
    #[track_caller]
    pub fn gather(&self, axis: impl Axis, index: &[usize]) -> Tensor {
        crate::error::or_panic(self.try_gather(axis, index))
    }
}
