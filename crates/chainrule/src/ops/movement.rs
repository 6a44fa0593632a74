//! Shape and layout primitives. Reshape (of contiguous data), permute,
//! broadcast and narrow are views: they share the buffer and copy nothing.

use super::{bind, panicking, same_dtype, Prim};
use crate::axis::{Axes, Axis};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::elementwise::materialize;
use crate::layout::Layout;
use crate::storage::with_scalar;
use crate::tensor::Tensor;
use smallvec::SmallVec;

/// A row-major copy, recorded as an identity for gradients.
pub(crate) fn contiguous(x: &Tensor) -> Tensor {
    bind(Prim::Contiguous, &[x]).expect("a copy accepts any tensor")
}

/// The kernel of `contiguous`: a new handle on `x`'s buffer when it already
/// is row-major, else a copy.
pub(crate) fn contiguous_forward(x: &Tensor) -> Result<Tensor> {
    if x.layout().contiguous_range().is_some() && x.layout().offset == 0 {
        return Ok(x.detach_untraced());
    }
    // A broadcast view can be far larger than its buffer.
    crate::limits::check_alloc("contiguous", x.shape(), x.dtype())?;
    Ok(
        with_scalar!(x.dtype(), T => Tensor::from_buffer(materialize(x.buffer::<T>(), x.layout()), x.shape())),
    )
}

/// `x` copied into a fresh row-major buffer, even when it is contiguous.
pub(crate) fn copy_of(x: &Tensor) -> Tensor {
    with_scalar!(x.dtype(), T => Tensor::from_buffer(materialize(x.buffer::<T>(), x.layout()), x.shape()))
}

/// The kernel of a reshape: a view of contiguous data, else a copy.
pub(crate) fn reshape_forward(x: &Tensor, shape: &[usize]) -> Tensor {
    match x.layout().reshape(shape) {
        Some(l) => x.view(l),
        None => with_scalar!(x.dtype(), T => Tensor::from_buffer(
            materialize(x.buffer::<T>(), x.layout()), shape)),
    }
}

/// The kernel of zero padding: `x` placed at `start` of `size` along `axis`.
pub(crate) fn pad_forward(x: &Tensor, axis: usize, start: usize, size: usize) -> Result<Tensor> {
    let mut shape: Vec<usize> = x.shape().to_vec();
    shape[axis] = size;
    let numel = crate::limits::check_alloc("pad", &shape, x.dtype())?;
    let leading = shape[..axis].iter().all(|&d| d == 1);
    let inner: usize = shape[axis + 1..].iter().product();
    Ok(with_scalar!(x.dtype(), T => {
        // Along a leading axis the result is zeros, `x`, zeros: written in
        // order into a cached buffer, never zeroed twice.
        let buf = match (leading, x.layout().contiguous_range()) {
            (true, Some(r)) => {
                let mut buf = crate::memory::vec_with_capacity(numel);
                buf.resize(start * inner, T::default());
                buf.extend_from_slice(&x.buffer::<T>()[r]);
                buf.resize(numel, T::default());
                buf
            }
            _ => {
                let mut buf = crate::memory::filled_vec(numel, T::default());
                let dst = Layout::contiguous(&shape).narrow(axis, start, x.shape()[axis]);
                crate::layout::copy_view(&mut buf, &dst, x.buffer::<T>(), x.layout());
                buf
            }
        };
        Tensor::from_buffer(buf, &shape)
    }))
}

/// The kernel of concatenation along `axis` (inputs already checked).
pub(crate) fn concat_forward(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = tensors[0];
    let mut shape: Vec<usize> = first.shape().to_vec();
    shape[axis] = tensors
        .iter()
        .try_fold(0usize, |n, t| n.checked_add(t.shape()[axis]))
        .ok_or_else(|| Error::invalid("concat", "the total length overflows"))?;
    let numel = crate::limits::check_alloc("concat", &shape, first.dtype())?;
    let rows: usize = shape[..axis].iter().product();
    // An empty piece adds nothing, whatever its strides.
    let runs: Option<SmallVec<[_; 8]>> = tensors
        .iter()
        .map(|t| match t.numel() {
            0 => Some(0..0),
            _ => t.layout().contiguous_range(),
        })
        .collect();
    Ok(with_scalar!(first.dtype(), T => {
        let buf = match runs {
            Some(runs) if numel > 0 => {
                let pieces: SmallVec<[&[T]; 8]> = tensors
                    .iter()
                    .zip(runs)
                    .map(|(t, run)| &t.buffer::<T>()[run])
                    .collect();
                concat_rows(&pieces, rows, numel)
            }
            _ => {
                let mut buf = crate::memory::filled_vec(numel, T::default());
                let full = Layout::contiguous(&shape);
                let mut start = 0;
                for t in tensors {
                    let len = t.shape()[axis];
                    let dst = full.narrow(axis, start, len);
                    crate::layout::copy_view(&mut buf, &dst, t.buffer::<T>(), t.layout());
                    start += len;
                }
                buf
            }
        };
        Tensor::from_buffer(buf, &shape)
    }))
}

/// Pieces each contiguous in memory, concatenated: every row of the result
/// (one index of the axes before the joined one) is each piece's row in
/// turn. The result is written once, in order: no zero fill, and no pass per
/// piece over the whole of it (which, for a few columns each, rereads every
/// cache line of the result once per piece). One row of `rows` when the
/// axis is the leading one: the pieces appended.
fn concat_rows<T: Copy>(pieces: &[&[T]], rows: usize, numel: usize) -> Vec<T> {
    let mut buf = crate::memory::vec_with_capacity(numel);
    let widths: SmallVec<[usize; 8]> = pieces.iter().map(|p| p.len() / rows).collect();
    for r in 0..rows {
        for (piece, &w) in pieces.iter().zip(&widths) {
            let row = &piece[r * w..(r + 1) * w];
            if w <= 4 {
                // A few elements: a call to `memcpy` would cost more.
                buf.extend(row.iter().copied());
            } else {
                buf.extend_from_slice(row);
            }
        }
    }
    buf
}

/// The kernel of a dtype conversion.
pub(crate) fn cast_forward(x: &Tensor, dtype: DType) -> Tensor {
    with_scalar!(dtype, T => Tensor::from_buffer(x.to_vec::<T>(), x.shape()))
}

/// `g` summed over the axes along which `shape` was broadcast to `g`'s shape:
/// the adjoint of broadcasting, done here once for every op.
pub(crate) fn sum_to(g: &Tensor, shape: &[usize]) -> Tensor {
    if g.shape() == shape {
        return g.clone();
    }
    let lead = g.ndim() - shape.len();
    let axes: Vec<usize> = (0..g.ndim())
        .filter(|&i| i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1))
        .collect();
    let summed = if axes.is_empty() {
        g.clone()
    } else {
        g.sum_axes(&axes, true)
    };
    summed.reshape(shape)
}

pub(crate) fn permute_vjp(perm: &[usize], g: &Tensor) -> Tensor {
    g.permute(&inverse_permutation(perm))
}

/// The permutation that undoes `perm`.
pub(crate) fn inverse_permutation(perm: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p] = i;
    }
    inverse
}

pub(crate) fn concat_vjp(
    inputs: &[Tensor],
    axis: usize,
    g: &Tensor,
) -> SmallVec<[Option<Tensor>; 2]> {
    let mut start = 0;
    inputs
        .iter()
        .map(|x| {
            let len = x.shape()[axis];
            let piece = g.narrow(axis, start, len);
            start += len;
            Some(piece)
        })
        .collect()
}

/// The JVP of concat: the tangents concatenated (zeros for inputs without
/// one), along the same axis shifted past a batch axis.
pub(crate) fn concat_jvp(inputs: &[Tensor], axis: usize, tangents: &[Option<Tensor>]) -> Tensor {
    let parts: Vec<Tensor> = inputs
        .iter()
        .zip(tangents)
        .map(|(x, t)| t.clone().unwrap_or_else(|| x.zeros_like()))
        .collect();
    let refs: Vec<&Tensor> = parts.iter().collect();
    Tensor::concat(&refs, axis)
}

/// Whether `from` broadcasts to `to`, or a shape error.
pub(crate) fn broadcast_shape_check(from: &[usize], to: &[usize]) -> Result<()> {
    let fits = from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(&f, &t)| f == t || f == 1);
    if fits {
        Ok(())
    } else {
        Err(Error::shapes_detail(
            "broadcast_to",
            from,
            to,
            "the first does not broadcast to the second",
        ))
    }
}

impl Tensor {
    /// [`Tensor::reshape`], or an error instead of a panic.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert!(x.try_reshape(&[4]).is_err());
    /// assert_eq!(x.try_reshape(&[3, 2]).unwrap().shape(), &[3, 2]);
    /// ```
    pub fn try_reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if crate::limits::checked_numel("reshape", shape)? != self.numel() {
            return Err(Error::shapes_detail(
                "reshape",
                self.shape(),
                shape,
                "the number of elements differs",
            ));
        }
        if self.shape() == shape {
            return Ok(self.clone());
        }
        bind(Prim::Reshape(shape.into()), &[self])
    }

    /// [`Tensor::permute`], or an error instead of a panic.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::zeros(&[2, 3, 4], DType::F64);
    /// assert!(x.try_permute(&[0, 0, 1]).is_err());
    /// assert_eq!(x.try_permute(&[2, 0, 1]).unwrap().shape(), &[4, 2, 3]);
    /// ```
    pub fn try_permute(&self, perm: impl Axes) -> Result<Tensor> {
        let perm = crate::axis::resolve_all("permute", perm, self.shape())?;
        let mut seen = vec![false; self.ndim()];
        if perm.len() != self.ndim()
            || perm
                .iter()
                .any(|&p| p >= self.ndim() || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::invalid(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the axes of shape {:?}",
                    self.shape()
                ),
            ));
        }
        bind(Prim::Permute(perm), &[self])
    }

    /// Swaps two axes (a view).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert!(x.try_transpose(0, 2).is_err());
    /// let y = x.try_transpose(0, -1).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    /// ```
    pub fn try_transpose(&self, a: impl Axis, b: impl Axis) -> Result<Tensor> {
        let a = crate::axis::resolve("transpose", a, self.shape())?;
        let b = crate::axis::resolve("transpose", b, self.shape())?;
        let mut perm: Vec<usize> = (0..self.ndim()).collect();
        perm.swap(a, b);
        self.try_permute(&perm)
    }

    /// [`Tensor::broadcast_to`], or an error instead of a panic.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// assert!(x.try_broadcast_to(&[3, 2]).is_err());
    /// let y = x.try_broadcast_to(&[2, 3]).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    /// ```
    pub fn try_broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        crate::limits::checked_numel("broadcast_to", shape)?;
        broadcast_shape_check(self.shape(), shape)?;
        bind(Prim::BroadcastTo(shape.into()), &[self])
    }

    /// `len` entries of `axis` starting at `start` (a view).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[4]);
    /// assert!(x.try_narrow(0, 3, 2).is_err());
    /// assert_eq!(x.try_narrow(0, 1, 2).unwrap().to_vec::<f64>(), [2.0, 3.0]);
    /// ```
    pub fn try_narrow(&self, axis: impl Axis, start: usize, len: usize) -> Result<Tensor> {
        let axis = crate::axis::resolve("narrow", axis, self.shape())?;
        let end = crate::limits::checked_add("narrow", start, len)?;
        if end > self.shape()[axis] {
            return Err(Error::invalid(
                "narrow",
                format!(
                    "range {start}..{end} is out of bounds for axis {axis} of shape {:?}",
                    self.shape()
                ),
            ));
        }
        bind(Prim::Narrow { axis, start, len }, &[self])
    }

    /// Zeros of length `size` along `axis` with `self` placed at `start` (the
    /// adjoint of [`Tensor::narrow`]).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// assert!(x.try_pad(0, 2, 3).is_err());
    /// assert_eq!(x.try_pad(0, 1, 4).unwrap().to_vec::<f64>(), [0.0, 1.0, 2.0, 0.0]);
    /// ```
    pub fn try_pad(&self, axis: impl Axis, start: usize, size: usize) -> Result<Tensor> {
        let axis = crate::axis::resolve("pad", axis, self.shape())?;
        let len = self.shape()[axis];
        if crate::limits::checked_add("pad", start, len)? > size {
            return Err(Error::invalid(
                "pad",
                format!("a block of {len} at {start} does not fit in {size} along axis {axis}"),
            ));
        }
        let mut shape: Vec<usize> = self.shape().to_vec();
        shape[axis] = size;
        crate::limits::check_alloc("pad", &shape, self.dtype())?;
        bind(Prim::Pad { axis, start, size }, &[self])
    }

    /// Joins tensors of equal shape but along `axis`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0], &[1, 2]);
    /// let b = Tensor::from_vec(vec![3.0f64, 4.0, 5.0], &[1, 3]);
    /// assert!(Tensor::try_concat(&[&a, &b], 0).is_err());
    /// let c = Tensor::try_concat(&[&a, &b], 1).unwrap();
    /// assert_eq!(c.to_vec::<f64>(), [1.0, 2.0, 3.0, 4.0, 5.0]);
    /// ```
    pub fn try_concat(tensors: &[&Tensor], axis: impl Axis) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid("concat", "needs at least one tensor"))?;
        let axis = crate::axis::resolve("concat", axis, first.shape())?;
        for t in &tensors[1..] {
            same_dtype("concat", first, t)?;
            let agree = t.ndim() == first.ndim()
                && (0..t.ndim()).all(|i| i == axis || t.shape()[i] == first.shape()[i]);
            if !agree {
                return Err(Error::shapes_detail(
                    "concat",
                    first.shape(),
                    t.shape(),
                    format!("they must agree on every axis but {axis}"),
                ));
            }
        }
        let total = tensors
            .iter()
            .try_fold(0usize, |n, t| n.checked_add(t.shape()[axis]))
            .ok_or_else(|| Error::invalid("concat", "the total length overflows"))?;
        let mut shape: Vec<usize> = first.shape().to_vec();
        shape[axis] = total;
        crate::limits::check_alloc("concat", &shape, first.dtype())?;
        bind(Prim::Concat { axis }, tensors)
    }

    /// Stacks tensors of one shape along a new `axis`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// let b = Tensor::from_vec(vec![3.0f64, 4.0, 5.0], &[3]);
    /// assert!(Tensor::try_stack(&[&a, &b], 0).is_err());
    /// assert_eq!(Tensor::try_stack(&[&a, &a], 0).unwrap().shape(), &[2, 2]);
    /// ```
    pub fn try_stack(tensors: &[&Tensor], axis: impl Axis) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid("stack", "needs at least one tensor"))?;
        let axis = crate::axis::resolve_new("stack", axis, first.shape())?;
        let mut expanded = Vec::with_capacity(tensors.len());
        for t in tensors {
            if t.shape() != first.shape() {
                return Err(Error::shapes_detail(
                    "stack",
                    first.shape(),
                    t.shape(),
                    "all tensors must have one shape",
                ));
            }
            expanded.push(t.try_unsqueeze(axis)?);
        }
        Tensor::try_concat(&expanded.iter().collect::<Vec<_>>(), axis)
    }

    /// Panicking form of [`Tensor::try_concat`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// let b = Tensor::from_vec(vec![3.0f64], &[1]);
    /// assert_eq!(Tensor::concat(&[&a, &b], 0).to_vec::<f64>(), [1.0, 2.0, 3.0]);
    /// ```
    #[track_caller]
    pub fn concat(tensors: &[&Tensor], axis: impl Axis) -> Tensor {
        crate::error::or_panic(Self::try_concat(tensors, axis))
    }

    /// Panicking form of [`Tensor::try_stack`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// let b = Tensor::from_vec(vec![3.0f64, 4.0], &[2]);
    /// let s = Tensor::stack(&[&a, &b], 1);
    /// assert_eq!(s.shape(), &[2, 2]);
    /// assert_eq!(s.to_vec::<f64>(), [1.0, 3.0, 2.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn stack(tensors: &[&Tensor], axis: impl Axis) -> Tensor {
        crate::error::or_panic(Self::try_stack(tensors, axis))
    }

    /// Removes an axis of length 1.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::zeros(&[2, 1, 3], DType::F64);
    /// assert!(x.try_squeeze(0).is_err());
    /// assert_eq!(x.try_squeeze(1).unwrap().shape(), &[2, 3]);
    /// ```
    pub fn try_squeeze(&self, axis: impl Axis) -> Result<Tensor> {
        let axis = crate::axis::resolve("squeeze", axis, self.shape())?;
        if self.shape()[axis] != 1 {
            return Err(Error::invalid(
                "squeeze",
                format!(
                    "axis {axis} of shape {:?} has length {}, not 1",
                    self.shape(),
                    self.shape()[axis]
                ),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape.remove(axis);
        self.try_reshape(&shape)
    }

    /// Inserts an axis of length 1 at `axis` (`0..=ndim`; `-1` appends one).
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::zeros(&[2, 3], DType::F64);
    /// assert!(x.try_unsqueeze(3).is_err());
    /// assert_eq!(x.try_unsqueeze(-1).unwrap().shape(), &[2, 3, 1]);
    /// ```
    pub fn try_unsqueeze(&self, axis: impl Axis) -> Result<Tensor> {
        let axis = crate::axis::resolve_new("unsqueeze", axis, self.shape())?;
        let mut shape = self.shape().to_vec();
        shape.insert(axis, 1);
        self.try_reshape(&shape)
    }

    /// Converts to another element type (gradients convert back).
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, -3.0], &[3]);
    /// let y = x.to_dtype(DType::I64);
    /// assert_eq!(y.dtype(), DType::I64);
    /// assert_eq!(y.to_vec::<i64>(), [1, 2, -3]);
    /// ```
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        bind(Prim::Cast(dtype), &[self]).expect("a conversion accepts any tensor")
    }

    /// The transpose of a 2-D tensor (a view).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// let y = x.t();
    /// assert_eq!(y.shape(), &[3, 2]);
    /// assert_eq!(y.to_vec::<f64>(), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    /// ```
    #[track_caller]
    pub fn t(&self) -> Tensor {
        assert!(
            self.ndim() == 2,
            "t: needs a 2-D tensor, got shape {:?}",
            self.shape()
        );
        self.transpose(0, 1)
    }

    /// The tensor as 1-D.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let y = x.flatten();
    /// assert_eq!(y.shape(), &[4]);
    /// assert_eq!(y.to_vec::<f64>(), [1.0, 2.0, 3.0, 4.0]);
    /// ```
    pub fn flatten(&self) -> Tensor {
        self.reshape(&[self.numel()])
    }
}

panicking! {
    /// The same elements in a new shape (a view when the data are contiguous).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// let y = x.reshape(&[3, 2]);
    /// assert_eq!(y.shape(), &[3, 2]);
    /// assert_eq!(y.to_vec::<f64>(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    /// ```
    fn reshape => try_reshape(shape: &[usize]);
    /// Reorders the axes (a view).
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::zeros(&[2, 3, 4], DType::F64);
    /// assert_eq!(x.permute(&[2, 0, 1]).shape(), &[4, 2, 3]);
    /// ```
    fn permute => try_permute(perm: impl Axes);
    /// Swaps two axes (a view).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.transpose(0, 1).to_vec::<f64>(), [1.0, 3.0, 2.0, 4.0]);
    /// ```
    fn transpose => try_transpose(a: impl Axis, b: impl Axis);
    /// Broadcasts to `shape` by NumPy rules (a view).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2, 1]);
    /// let y = x.broadcast_to(&[2, 3]);
    /// assert_eq!(y.to_vec::<f64>(), [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    /// ```
    fn broadcast_to => try_broadcast_to(shape: &[usize]);
    /// `len` entries of `axis` from `start` (a view).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert_eq!(x.narrow(1, 1, 2).to_vec::<f64>(), [2.0, 3.0, 5.0, 6.0]);
    /// ```
    fn narrow => try_narrow(axis: impl Axis, start: usize, len: usize);
    /// Zero padding: `self` placed at `start` in `size` entries along `axis`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// assert_eq!(x.pad(0, 2, 5).to_vec::<f64>(), [0.0, 0.0, 1.0, 2.0, 0.0]);
    /// ```
    fn pad => try_pad(axis: impl Axis, start: usize, size: usize);
    /// Removes an axis of length 1.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[1, 3]);
    /// assert_eq!(x.squeeze(0).shape(), &[3]);
    /// ```
    fn squeeze => try_squeeze(axis: impl Axis);
    /// Inserts an axis of length 1.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// assert_eq!(x.unsqueeze(0).shape(), &[1, 3]);
    /// ```
    fn unsqueeze => try_unsqueeze(axis: impl Axis);
}
