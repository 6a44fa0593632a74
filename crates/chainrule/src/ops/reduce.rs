//! Reductions over axes: sum, max, min. Mean, logsumexp and friends are
//! composites (see `composite.rs`).

use super::value::Value;
use super::{bind, panicking, Prim};
use crate::axis::{Axes, Axis};
use crate::dtype::{DType, Int};
use crate::error::{Error, Result};
use crate::kernels::reduce::{arg_reduce, cumulate, reduce, ANY_ORDER, ORDERED};
use crate::layout::{check_axis, Dims};
use crate::storage::{with_dtype, with_int, with_scalar, FloatElement, StorageElement};
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

    /// The name of the index-of-extremum op (see [`Prim::Arg`]).
    pub fn arg_name(self) -> &'static str {
        match self {
            ReduceOp::Max => "argmax",
            ReduceOp::Min => "argmin",
            ReduceOp::Sum => unreachable!("no argsum"),
        }
    }

    /// The output's dtype: the input's, but a sum of bools counts them
    /// (`i64`, as PyTorch).
    pub(crate) fn out_dtype(self, dtype: DType) -> Result<DType> {
        Ok(match (self, dtype) {
            (ReduceOp::Sum, DType::Bool) => DType::I64,
            _ => dtype,
        })
    }

    /// The kernel on integers (sums wrap).
    fn kernel_int<T: Int + StorageElement>(self, x: &Tensor, axes: &[usize]) -> Vec<T> {
        let (src, l) = (x.buffer::<T>(), x.layout());
        match self {
            ReduceOp::Sum => reduce::<_, _, ANY_ORDER>(src, l, axes, T::ZERO, T::wrapping_add),
            ReduceOp::Max => reduce::<_, _, ANY_ORDER>(src, l, axes, T::MIN, Ord::max),
            ReduceOp::Min => reduce::<_, _, ANY_ORDER>(src, l, axes, T::MAX, Ord::min),
        }
    }

    /// The kernel on bool: max is `or`, min is `and` (a sum is counted as
    /// `i64` before it gets here).
    fn kernel_bool(self, x: &Tensor, axes: &[usize]) -> Vec<bool> {
        let (src, l) = (x.buffer::<bool>(), x.layout());
        match self {
            ReduceOp::Max => reduce::<_, _, ANY_ORDER>(src, l, axes, false, |a, b| a | b),
            _ => reduce::<_, _, ANY_ORDER>(src, l, axes, true, |a, b| a & b),
        }
    }

    fn kernel<T: FloatElement>(self, x: &Tensor, axes: &[usize]) -> Vec<T> {
        let (src, l) = (x.buffer::<T>(), x.layout());
        match self {
            ReduceOp::Sum => reduce::<_, _, ORDERED>(src, l, axes, T::zero(), |a, b| a + b),
            // NaN propagates, as in NumPy.
            ReduceOp::Max => reduce::<_, _, ANY_ORDER>(src, l, axes, T::neg_infinity(), |a, b| {
                if a >= b || a.is_nan() {
                    a
                } else {
                    b
                }
            }),
            ReduceOp::Min => reduce::<_, _, ANY_ORDER>(src, l, axes, T::infinity(), |a, b| {
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
        let is_nan = |t: &Tensor| -> Tensor { 1.0 - &t.equal_to(t) };
        let hit: Tensor = x.equal_to(&y) + is_nan(&x) * is_nan(&y);
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

/// Sorted, deduplicated, in-range axes (negative ones from the back).
fn normalize_axes(op: &'static str, axes: impl Axes, shape: &[usize]) -> Result<Dims> {
    let mut out = crate::axis::resolve_all(op, axes, shape)?;
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
    let buffer = |x: &Tensor| match x.dtype() {
        DType::F32 => Tensor::from_buffer(op.kernel::<f32>(x, axes), &shape),
        DType::F64 => Tensor::from_buffer(op.kernel::<f64>(x, axes), &shape),
        DType::I32 => Tensor::from_buffer(op.kernel_int::<i32>(x, axes), &shape),
        DType::I64 => Tensor::from_buffer(op.kernel_int::<i64>(x, axes), &shape),
        DType::Bool => Tensor::from_buffer(op.kernel_bool(x, axes), &shape),
    };
    Ok(match (op, x.dtype()) {
        (ReduceOp::Sum, DType::Bool) => buffer(&super::movement::cast_forward(x, DType::I64)),
        _ => buffer(x),
    })
}

/// The shape of an index-of-extremum along `axis`, or why it fails.
pub(crate) fn arg_shape(
    op: ReduceOp,
    x: &[usize],
    axis: usize,
    keepdim: bool,
) -> Result<Vec<usize>> {
    check_axis(op.arg_name(), axis, x)?;
    if x[axis] == 0 {
        return Err(Error::invalid(
            op.arg_name(),
            format!("an empty axis {axis} of shape {x:?} has no extremum"),
        ));
    }
    shape(op, x, &[axis], keepdim)
}

/// The kernel of argmax and argmin: a NaN wins (the first one), then the
/// first of equal extrema.
pub(crate) fn arg_forward(x: &Tensor, op: ReduceOp, axis: usize, keepdim: bool) -> Result<Tensor> {
    let shape = arg_shape(op, x.shape(), axis, keepdim)?;
    // One body for every dtype (the macro writes it out for bool too).
    #[allow(clippy::eq_op, clippy::bool_comparison)]
    let index = with_scalar!(x.dtype(), T => {
        let is_nan = |v: T| v != v;
        let beats = move |v: T, best: T| match op {
            ReduceOp::Max => v > best,
            _ => v < best,
        };
        arg_reduce(x.buffer::<T>(), x.layout(), axis, move |v: T, best: T| {
            !is_nan(best) && (is_nan(v) || beats(v, best))
        })
    });
    Ok(Tensor::from_buffer(index, &shape))
}

/// The kernel of cumsum: floats, or integers wrapping (the dtype rule
/// refuses bool).
pub(crate) fn cumsum_forward(x: &Tensor, axis: usize, reverse: bool) -> Tensor {
    let (shape, dtype) = (x.shape(), x.dtype());
    match dtype.is_float() {
        true => with_dtype!(dtype, T => Tensor::from_buffer(
            cumulate(x.buffer::<T>(), x.layout(), axis, reverse, |a, b| a + b), shape)),
        false => with_int!(dtype, T => Tensor::from_buffer(
            cumulate(x.buffer::<T>(), x.layout(), axis, reverse, T::wrapping_add), shape)),
    }
}

pub(crate) fn reduce_op(
    x: &Tensor,
    op: ReduceOp,
    axes: impl Axes,
    keepdim: bool,
) -> Result<Tensor> {
    let axes = normalize_axes(op.name(), axes, x.shape())?;
    bind(Prim::Reduce { op, axes, keepdim }, &[x])
}

impl Tensor {
    /// [`Tensor::sum_axes`], or an error instead of a panic.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.try_sum_axes(&[0], false).unwrap().to_vec::<f64>(), [4.0, 6.0]);
    /// assert!(x.try_sum_axes(&[2], false).is_err());
    /// ```
    pub fn try_sum_axes(&self, axes: impl Axes, keepdim: bool) -> Result<Tensor> {
        reduce_op(self, ReduceOp::Sum, axes, keepdim)
    }
    /// [`Tensor::max_axes`], or an error instead of a panic.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.try_max_axes(&[1], false).unwrap().to_vec::<f64>(), [2.0, 4.0]);
    /// assert!(Tensor::zeros(&[0], DType::F64).try_max_axes(&[0], false).is_err());
    /// ```
    pub fn try_max_axes(&self, axes: impl Axes, keepdim: bool) -> Result<Tensor> {
        reduce_op(self, ReduceOp::Max, axes, keepdim)
    }
    /// [`Tensor::min_axes`], or an error instead of a panic.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.try_min_axes(&[-1], false).unwrap().to_vec::<f64>(), [1.0, 3.0]);
    /// assert!(x.try_min_axes(&[-3], false).is_err());
    /// ```
    pub fn try_min_axes(&self, axes: impl Axes, keepdim: bool) -> Result<Tensor> {
        reduce_op(self, ReduceOp::Min, axes, keepdim)
    }

    fn every_axis(&self) -> Vec<usize> {
        (0..self.ndim()).collect()
    }

    /// The index (`i64`) of the largest element along `axis`, like
    /// `torch.argmax`: the first at ties; a NaN counts as the largest.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 5.0, 4.0, 0.0], &[2, 3]);
    /// assert_eq!(x.try_argmax(1, false).unwrap().to_vec::<i64>(), [1, 0]);
    /// assert!(x.try_argmax(2, false).is_err());
    /// ```
    pub fn try_argmax(&self, axis: impl Axis, keepdim: bool) -> Result<Tensor> {
        arg(self, ReduceOp::Max, axis, keepdim)
    }

    /// The index (`i64`) of the smallest element along `axis`: the first at
    /// ties; a NaN counts as the smallest.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 5.0, 4.0, 0.0], &[2, 3]);
    /// assert_eq!(x.try_argmin(1, false).unwrap().to_vec::<i64>(), [0, 2]);
    /// assert!(x.try_argmin(2, false).is_err());
    /// ```
    pub fn try_argmin(&self, axis: impl Axis, keepdim: bool) -> Result<Tensor> {
        arg(self, ReduceOp::Min, axis, keepdim)
    }

    /// The maxima along `axis` and their indices, like `torch.max(x, dim)`:
    /// the values are the entries at the indices (`i64`, the first at ties),
    /// so the gradient goes to that entry, as in PyTorch (where
    /// [`Tensor::max_axes`] splits it between equal maxima).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 5.0, 4.0, 0.0], &[2, 3]);
    /// let (values, indices) = x.try_max_with_indices(1, false).unwrap();
    /// assert_eq!(values.to_vec::<f64>(), [3.0, 5.0]);
    /// assert_eq!(indices.to_vec::<i64>(), [1, 0]);
    /// assert!(x.try_max_with_indices(2, false).is_err());
    /// ```
    pub fn try_max_with_indices(&self, axis: impl Axis, keepdim: bool) -> Result<(Tensor, Tensor)> {
        extremum_with_index(self, ReduceOp::Max, axis, keepdim)
    }

    /// The minima along `axis` and their indices, like `torch.min(x, dim)`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 5.0, 4.0, 0.0], &[2, 3]);
    /// let (values, indices) = x.try_min_with_indices(1, false).unwrap();
    /// assert_eq!(values.to_vec::<f64>(), [1.0, 0.0]);
    /// assert_eq!(indices.to_vec::<i64>(), [0, 2]);
    /// assert!(x.try_min_with_indices(-3, false).is_err());
    /// ```
    pub fn try_min_with_indices(&self, axis: impl Axis, keepdim: bool) -> Result<(Tensor, Tensor)> {
        extremum_with_index(self, ReduceOp::Min, axis, keepdim)
    }

    /// Running sums along `axis`, like `torch.cumsum`: element `i` is the
    /// sum of elements `0..=i` (integers wrap; bool is refused).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// assert_eq!(x.try_cumsum(0).unwrap().to_vec::<f64>(), [1.0, 3.0, 6.0]);
    /// assert!(Tensor::from_vec(vec![true, false], &[2]).try_cumsum(0).is_err());
    /// ```
    pub fn try_cumsum(&self, axis: impl Axis) -> Result<Tensor> {
        let axis = crate::axis::resolve("cumsum", axis, self.shape())?;
        bind(
            Prim::Cumsum {
                axis,
                reverse: false,
            },
            &[self],
        )
    }

    /// Whether any element of a `bool` tensor over `axes` holds (`false`
    /// over none): a count that is not zero.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![true, false, false, false], &[2, 2]);
    /// assert_eq!(m.try_any_axes(&[1], false).unwrap().to_vec::<bool>(), [true, false]);
    /// assert!(Tensor::from_vec(vec![1.0f64, 0.0], &[2]).try_any_axes(&[0], false).is_err());
    /// ```
    pub fn try_any_axes(&self, axes: impl Axes, keepdim: bool) -> Result<Tensor> {
        need_bool("any", self)?;
        let count = self.try_sum_axes(axes, keepdim)?;
        count.try_ne_elem(&Tensor::scalar(0i64))
    }

    /// Whether every element of a `bool` tensor over `axes` holds (`true`
    /// over none): no element fails.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![true, true, true, false], &[2, 2]);
    /// assert_eq!(m.try_all_axes(&[1], false).unwrap().to_vec::<bool>(), [true, false]);
    /// assert!(Tensor::from_vec(vec![1.0f64, 0.0], &[2]).try_all_axes(&[0], false).is_err());
    /// ```
    pub fn try_all_axes(&self, axes: impl Axes, keepdim: bool) -> Result<Tensor> {
        need_bool("all", self)?;
        self.logical_not()
            .try_any_axes(axes, keepdim)?
            .try_logical_not()
    }

    /// Whether any element of a `bool` tensor holds (0-d; `false` when empty).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![false, true, false], &[3]);
    /// assert_eq!(m.any().to_vec::<bool>(), [true]);
    /// ```
    #[track_caller]
    pub fn any(&self) -> Tensor {
        self.any_axes(&self.every_axis(), false)
    }

    /// Whether every element of a `bool` tensor holds (0-d; `true` when empty).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![true, true, false], &[3]);
    /// assert_eq!(m.all().to_vec::<bool>(), [false]);
    /// ```
    #[track_caller]
    pub fn all(&self) -> Tensor {
        self.all_axes(&self.every_axis(), false)
    }

    /// The sum of all elements (a 0-d tensor).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.sum().ndim(), 0);
    /// assert_eq!(x.sum().item(), 10.0);
    /// ```
    pub fn sum(&self) -> Tensor {
        self.sum_axes(&self.every_axis(), false)
    }

    /// The largest element (a 0-d tensor). Panics on an empty tensor.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0], &[3]);
    /// assert_eq!(x.max().item(), 3.0);
    /// ```
    #[track_caller]
    pub fn max(&self) -> Tensor {
        self.max_axes(&self.every_axis(), false)
    }

    /// The smallest element (a 0-d tensor). Panics on an empty tensor.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, -2.0], &[3]);
    /// assert_eq!(x.min().item(), -2.0);
    /// ```
    #[track_caller]
    pub fn min(&self) -> Tensor {
        self.min_axes(&self.every_axis(), false)
    }
}

fn arg(x: &Tensor, op: ReduceOp, axis: impl Axis, keepdim: bool) -> Result<Tensor> {
    let axis = crate::axis::resolve(op.arg_name(), axis, x.shape())?;
    arg_shape(op, x.shape(), axis, keepdim)?;
    bind(Prim::Arg { op, axis, keepdim }, &[x])
}

fn extremum_with_index(
    x: &Tensor,
    op: ReduceOp,
    axis: impl Axis,
    keepdim: bool,
) -> Result<(Tensor, Tensor)> {
    let axis = crate::axis::resolve(op.arg_name(), axis, x.shape())?;
    let kept = arg(x, op, axis, true)?;
    // The values picked at the indices, so that the gradient goes to the
    // entry the index names, as in PyTorch (not split between ties).
    let values = x.try_gather(axis, &kept)?;
    if keepdim {
        return Ok((values, kept));
    }
    Ok((values.try_squeeze(axis)?, kept.try_squeeze(axis)?))
}

fn need_bool(op: &'static str, x: &Tensor) -> Result<()> {
    match x.dtype() {
        DType::Bool => Ok(()),
        d => Err(Error::dtype(
            op,
            d,
            "bool (compare first, e.g. x.ne_elem(&zero))",
        )),
    }
}

panicking! {
    /// The index (`i64`) of the largest element along `axis` (see `try_argmax`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 5.0, 4.0, 0.0], &[2, 3]);
    /// let i = x.argmax(0, true);
    /// assert_eq!(i.shape(), &[1, 3]);
    /// assert_eq!(i.to_vec::<i64>(), [1, 1, 0]);
    /// ```
    fn argmax => try_argmax(axis: impl Axis, keepdim: bool);
    /// The index (`i64`) of the smallest element along `axis` (see `try_argmin`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 5.0, 4.0, 0.0], &[2, 3]);
    /// assert_eq!(x.argmin(-1, false).to_vec::<i64>(), [0, 2]);
    /// ```
    fn argmin => try_argmin(axis: impl Axis, keepdim: bool);
    /// Running sums along `axis` (see `try_cumsum`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1i64, 2, 3, 4], &[2, 2]);
    /// assert_eq!(x.cumsum(1).to_vec::<i64>(), [1, 3, 3, 7]);
    /// ```
    fn cumsum => try_cumsum(axis: impl Axis);
    /// Whether any element over `axes` holds, for a `bool` tensor.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![true, false, false, false], &[2, 2]);
    /// assert_eq!(m.any_axes(&[0], false).to_vec::<bool>(), [true, false]);
    /// ```
    fn any_axes => try_any_axes(axes: impl Axes, keepdim: bool);
    /// Whether every element over `axes` holds, for a `bool` tensor.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![true, false, true, true], &[2, 2]);
    /// let all = m.all_axes(&[0], true);
    /// assert_eq!(all.shape(), &[1, 2]);
    /// assert_eq!(all.to_vec::<bool>(), [true, false]);
    /// ```
    fn all_axes => try_all_axes(axes: impl Axes, keepdim: bool);
}

impl Tensor {
    /// The maxima along `axis` and their `i64` indices (see `try_max_with_indices`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 5.0, 4.0, 0.0], &[2, 3]);
    /// let (values, indices) = x.max_with_indices(0, true);
    /// assert_eq!(values.to_vec::<f64>(), [5.0, 4.0, 2.0]);
    /// assert_eq!(indices.to_vec::<i64>(), [1, 1, 0]);
    /// ```
    #[track_caller]
    pub fn max_with_indices(&self, axis: impl Axis, keepdim: bool) -> (Tensor, Tensor) {
        crate::error::or_panic(self.try_max_with_indices(axis, keepdim))
    }

    /// The minima along `axis` and their `i64` indices.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 5.0, 4.0, 0.0], &[2, 3]);
    /// let (values, indices) = x.min_with_indices(-1, false);
    /// assert_eq!(values.to_vec::<f64>(), [1.0, 0.0]);
    /// assert_eq!(indices.to_vec::<i64>(), [0, 2]);
    /// ```
    #[track_caller]
    pub fn min_with_indices(&self, axis: impl Axis, keepdim: bool) -> (Tensor, Tensor) {
        crate::error::or_panic(self.try_min_with_indices(axis, keepdim))
    }
}

panicking! {
    /// Sum over `axes`, keeping them as length 1 when `keepdim`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let s = x.sum_axes(&[1], true);
    /// assert_eq!(s.shape(), &[2, 1]);
    /// assert_eq!(s.to_vec::<f64>(), [3.0, 7.0]);
    /// assert_eq!(x.sum_axes(&[0, 1], false).item(), 10.0);
    /// ```
    fn sum_axes => try_sum_axes(axes: impl Axes, keepdim: bool);
    /// Maximum over `axes`; the gradient goes to the maxima, split at ties.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.max_axes(&[0], false).to_vec::<f64>(), [3.0, 4.0]);
    /// ```
    fn max_axes => try_max_axes(axes: impl Axes, keepdim: bool);
    /// Minimum over `axes`; the gradient goes to the minima, split at ties.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let m = x.min_axes(&[1], true);
    /// assert_eq!(m.shape(), &[2, 1]);
    /// assert_eq!(m.to_vec::<f64>(), [1.0, 3.0]);
    /// ```
    fn min_axes => try_min_axes(axes: impl Axes, keepdim: bool);
}
