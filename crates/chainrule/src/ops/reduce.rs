//! Reductions over axes: sum, max, min. Mean, logsumexp and friends are
//! composites (see `composite.rs`).

use super::{bind, panicking, Prim};
use crate::error::{Error, Result};
use crate::kernels::reduce::reduce;
use crate::layout::{check_axis, Dims};
use crate::storage::with_dtype;
use crate::storage::StorageElement;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ReduceOp {
    Sum,
    Max,
    Min,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }

    fn kernel<T: StorageElement>(self, x: &Tensor, axes: &[usize]) -> Vec<T> {
        let (src, l) = (x.buffer::<T>(), x.layout());
        match self {
            ReduceOp::Sum => reduce(src, l, axes, T::zero(), |a, b| a + b),
            // NaN propagates, as in NumPy.
            ReduceOp::Max => reduce(src, l, axes, T::neg_infinity(), |a, b| {
                if a >= b || a.is_nan() {
                    a
                } else {
                    b
                }
            }),
            ReduceOp::Min => reduce(src, l, axes, T::infinity(), |a, b| {
                if a <= b || a.is_nan() {
                    a
                } else {
                    b
                }
            }),
        }
    }

    /// The adjoint of the input: `g` spread back over the reduced axes; for
    /// max/min only onto the elements that attain it, split evenly at ties.
    pub(crate) fn vjp(
        self,
        x: &Tensor,
        y: Option<&Tensor>,
        g: &Tensor,
        axes: &[usize],
        keepdim: bool,
    ) -> Tensor {
        let kept_shape = keepdim_shape(x.shape(), axes);
        let g = if keepdim {
            g.clone()
        } else {
            g.reshape(&kept_shape)
        };
        match self {
            ReduceOp::Sum => g.broadcast_to(x.shape()),
            ReduceOp::Max | ReduceOp::Min => g * &self.share(x, y, axes),
        }
    }

    /// For max/min: which elements attain the extremum, each weighted by one
    /// over the number that tie (the weights along each reduced run sum to 1).
    /// A constant: the extremum's derivative flows only through the weights'
    /// product with the input's adjoint or tangent.
    fn share(self, x: &Tensor, y: Option<&Tensor>, axes: &[usize]) -> Tensor {
        let kept_shape = keepdim_shape(x.shape(), axes);
        let y = match y {
            Some(y) => y.detach(),
            None => {
                reduce_op(&x.detach(), self, axes, true).expect("axes were checked when the op ran")
            }
        };
        let (x, y) = (x.detach(), y.reshape(&kept_shape));
        // A NaN is the extremum of its run (NaN propagates): the NaNs of such
        // a run attain it, as in PyTorch.
        let is_nan = |t: &Tensor| 1.0 - &t.eq_elem(t);
        let hit = x.eq_elem(&y) + is_nan(&x) * is_nan(&y);
        let count = hit.sum_axes(axes, true);
        hit / count
    }

    /// The JVP: the reduction of the tangent (for max/min, of the tangent at
    /// the extremum, averaged over ties).
    pub(crate) fn jvp(
        self,
        x: &Tensor,
        y: &Tensor,
        t: &Tensor,
        axes: &[usize],
        keepdim: bool,
    ) -> Tensor {
        match self {
            ReduceOp::Sum => t.sum_axes(axes, keepdim),
            ReduceOp::Max | ReduceOp::Min => {
                (t * &self.share(x, Some(y), axes)).sum_axes(axes, keepdim)
            }
        }
    }

    pub(crate) fn saves_output(self) -> bool {
        !matches!(self, ReduceOp::Sum)
    }
}

/// The input's shape with every reduced axis set to 1.
fn keepdim_shape(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect()
}

/// Sorted, deduplicated, in-range axes.
fn normalize_axes(op: &'static str, axes: &[usize], shape: &[usize]) -> Result<Dims> {
    let mut out: Dims = axes.iter().copied().collect();
    for &a in &out {
        check_axis(op, a, shape)?;
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The shape of a reduction over (normalized) `axes`, or why it fails.
pub(crate) fn shape(
    op: ReduceOp,
    x: &[usize],
    axes: &[usize],
    keepdim: bool,
) -> Result<Vec<usize>> {
    for &a in axes {
        check_axis(op.name(), a, x)?;
    }
    if op != ReduceOp::Sum && axes.iter().any(|&a| x[a] == 0) {
        return Err(Error::invalid(
            op.name(),
            format!("reducing an empty axis of shape {x:?}"),
        ));
    }
    Ok(if keepdim {
        keepdim_shape(x, axes)
    } else {
        (0..x.len())
            .filter(|i| !axes.contains(i))
            .map(|i| x[i])
            .collect()
    })
}

/// The kernel of a reduction.
pub(crate) fn forward(x: &Tensor, op: ReduceOp, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    let shape = shape(op, x.shape(), axes, keepdim)?;
    Ok(with_dtype!(x.dtype(), T => Tensor::from_buffer(op.kernel::<T>(x, axes), &shape)))
}

pub(crate) fn reduce_op(x: &Tensor, op: ReduceOp, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    let axes = normalize_axes(op.name(), axes, x.shape())?;
    bind(Prim::Reduce { op, axes, keepdim }, &[x])
}

impl Tensor {
    pub fn try_sum_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        reduce_op(self, ReduceOp::Sum, axes, keepdim)
    }
    pub fn try_max_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        reduce_op(self, ReduceOp::Max, axes, keepdim)
    }
    pub fn try_min_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        reduce_op(self, ReduceOp::Min, axes, keepdim)
    }

    fn all_axes(&self) -> Vec<usize> {
        (0..self.ndim()).collect()
    }

    /// The sum of all elements (a 0-d tensor).
    pub fn sum(&self) -> Tensor {
        self.sum_axes(&self.all_axes(), false)
    }

    /// The largest element (a 0-d tensor). Panics on an empty tensor.
    #[track_caller]
    pub fn max(&self) -> Tensor {
        self.max_axes(&self.all_axes(), false)
    }

    /// The smallest element (a 0-d tensor). Panics on an empty tensor.
    #[track_caller]
    pub fn min(&self) -> Tensor {
        self.min_axes(&self.all_axes(), false)
    }
}

panicking! {
    /// Sum over `axes`, keeping them as length 1 when `keepdim`.
    fn sum_axes => try_sum_axes(axes: &[usize], keepdim: bool);
    /// Maximum over `axes`; the gradient goes to the maxima, split at ties.
    fn max_axes => try_max_axes(axes: &[usize], keepdim: bool);
    /// Minimum over `axes`; the gradient goes to the minima, split at ties.
    fn min_axes => try_min_axes(axes: &[usize], keepdim: bool);
}
