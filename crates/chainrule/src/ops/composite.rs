//! Ops built from primitives. They need no derivative rules of their own:
//! the chain rule through their parts is their derivative.

use super::panicking;
use crate::axis::{Axes, Axis};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::DType;
use crate::Indices;

/// `labels` as a tensor, checked to hold one label per row of the logits
/// `(n, c)`, or the error naming `op`.
pub(crate) fn check_labels(
    op: &'static str,
    logits: &Tensor,
    labels: impl Indices,
) -> Result<Tensor> {
    let labels = labels.to_index()?;
    if logits.ndim() != 2 || labels.shape() != [logits.shape()[0]] {
        return Err(Error::shapes_detail(
            op,
            logits.shape(),
            labels.shape(),
            "needs logits (n, c) and n labels",
        ));
    }
    Ok(labels)
}

impl Tensor {
    /// Mean over `axes`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.try_mean_axes(&[1], false).unwrap().to_vec::<f64>(), [1.5, 3.5]);
    /// assert!(x.try_mean_axes(&[2], false).is_err());
    /// ```
    pub fn try_mean_axes(&self, axes: impl Axes, keepdim: bool) -> Result<Tensor> {
        Error::need_float("mean", self.dtype())?;
        let axes = crate::axis::resolve_all("mean", axes, self.shape())?;
        let s = self.try_sum_axes(axes.as_slice(), keepdim)?;
        let mut count = 1usize;
        for (i, d) in self.shape().iter().enumerate() {
            if axes.contains(&i) {
                count *= d;
            }
        }
        Ok(s * (1.0 / count as f64))
    }

    /// The mean of all elements (a 0-d tensor). Panics for an integer or
    /// bool tensor (convert it first).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.mean().item(), 2.5);
    /// ```
    #[track_caller]
    pub fn mean(&self) -> Tensor {
        crate::error::or_panic(Error::need_float("mean", self.dtype()));
        self.sum() * (1.0 / self.numel() as f64)
    }

    /// `self and other`, elementwise on `bool` tensors (broadcasting). Also `&a & &b`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![true, true, false], &[3]);
    /// let b = Tensor::from_vec(vec![true, false, false], &[3]);
    /// assert_eq!(a.try_logical_and(&b).unwrap().to_vec::<bool>(), [true, false, false]);
    /// assert!(a.try_logical_and(&Tensor::from_vec(vec![1.0f64, 0.0, 1.0], &[3])).is_err());
    /// ```
    pub fn try_logical_and(&self, other: &Tensor) -> Result<Tensor> {
        logical("logical_and", self, other)?;
        self.try_minimum(other)
    }

    /// `self or other` on `bool` tensors. Also `&a | &b`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![true, false, false], &[3]);
    /// let b = Tensor::from_vec(vec![false, false, true], &[3]);
    /// assert_eq!(a.try_logical_or(&b).unwrap().to_vec::<bool>(), [true, false, true]);
    /// assert!(a.try_logical_or(&Tensor::from_vec(vec![1i64, 0, 1], &[3])).is_err());
    /// ```
    pub fn try_logical_or(&self, other: &Tensor) -> Result<Tensor> {
        logical("logical_or", self, other)?;
        self.try_maximum(other)
    }

    /// `self xor other` on `bool` tensors. Also `&a ^ &b`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![true, true, false], &[3]);
    /// let b = Tensor::from_vec(vec![true, false, false], &[3]);
    /// assert_eq!(a.try_logical_xor(&b).unwrap().to_vec::<bool>(), [false, true, false]);
    /// assert!(a.try_logical_xor(&Tensor::from_vec(vec![1.0f64, 0.0, 1.0], &[3])).is_err());
    /// ```
    pub fn try_logical_xor(&self, other: &Tensor) -> Result<Tensor> {
        logical("logical_xor", self, other)?;
        self.try_ne_elem(other)
    }

    /// `not self` on a `bool` tensor. Also `!&a`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![true, false], &[2]);
    /// assert_eq!(a.try_logical_not().unwrap().to_vec::<bool>(), [false, true]);
    /// assert!(Tensor::from_vec(vec![1.0f64, 0.0], &[2]).try_logical_not().is_err());
    /// ```
    pub fn try_logical_not(&self) -> Result<Tensor> {
        logical("logical_not", self, self)?;
        self.try_eq_elem(&Tensor::scalar(false))
    }

    /// `log Σ exp(x)` along `axis`, computed stably by factoring out the max.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![0.0f64, 0.0], &[2]);
    /// assert!((x.try_logsumexp(0, false).unwrap().item() - 2f64.ln()).abs() < 1e-12);
    /// assert!(x.try_logsumexp(1, false).is_err());
    /// ```
    pub fn try_logsumexp(&self, axis: impl Axis, keepdim: bool) -> Result<Tensor> {
        let axis = crate::axis::resolve("logsumexp", axis, self.shape())?;
        // The shift cancels in value and in gradient, so no derivative flows
        // through it (a stop-gradient, never a constant: it is a function of
        // the input). A row of infinities or NaNs is shifted by 0.
        let m = self.try_max_axes(&[axis], true)?.detach();
        let finite = m.abs().lt(&Tensor::full(&[], f64::INFINITY, m.dtype()));
        let m = Tensor::where_(&finite, &m, &Tensor::zeros(&[], m.dtype()));
        let lse = (self - &m).exp().sum_axes(&[axis], true).log() + m;
        Ok(if keepdim { lse } else { lse.squeeze(axis) })
    }

    /// `exp(x) / Σ exp(x)` along `axis`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 1.0], &[2]);
    /// let y = x.try_softmax(0).unwrap();
    /// assert!(y.to_vec::<f64>().iter().all(|p| (p - 0.5).abs() < 1e-12));
    /// assert!(x.try_softmax(1).is_err());
    /// ```
    pub fn try_softmax(&self, axis: impl Axis) -> Result<Tensor> {
        let axis = crate::axis::resolve("softmax", axis, self.shape())?;
        super::bind(super::Prim::Softmax { axis }, &[self])
    }

    /// `x - logsumexp(x)` along `axis`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 1.0], &[2]);
    /// let y = x.try_log_softmax(-1).unwrap();
    /// assert!((y.get(&[0]) + 2f64.ln()).abs() < 1e-12);
    /// assert!(x.try_log_softmax(1).is_err());
    /// ```
    pub fn try_log_softmax(&self, axis: impl Axis) -> Result<Tensor> {
        let axis = crate::axis::resolve("log_softmax", axis, self.shape())?;
        Ok(self - &self.try_logsumexp(axis, true)?)
    }

    /// Mean softmax cross-entropy of `logits` `(n, c)` against integer
    /// `labels` (`n` of them, each `< c`: an `i64` tensor or a list),
    /// computed from logits for stability.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let logits = Tensor::from_vec(vec![0.0f64, 0.0, 0.0, 0.0], &[2, 2]);
    /// let loss = logits.try_cross_entropy_with_logits(&[0, 1]).unwrap();
    /// assert!((loss.item() - 2f64.ln()).abs() < 1e-12);
    /// assert!(logits.try_cross_entropy_with_logits(&[0, 1, 1]).is_err());
    /// ```
    pub fn try_cross_entropy_with_logits(&self, labels: impl Indices) -> Result<Tensor> {
        let labels = check_labels("cross_entropy_with_logits", self, labels)?;
        let picked = self
            .try_gather(1, &labels.try_unsqueeze(1)?)
            .map_err(|e| match e {
                // An index out of range is a label out of range, said so.
                Error::InvalidArgument { msg, .. } => Error::invalid(
                    "cross_entropy_with_logits",
                    msg.replacen("index", "label", 1),
                ),
                e => e,
            })?
            .squeeze(1);
        let lse = self.try_logsumexp(1, false)?;
        Ok((lse - picked).mean())
    }

    /// The Euclidean norm of all elements. Its gradient at 0 is taken as 0
    /// (a subgradient; PyTorch's convention), not `0/0`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![3.0f64, 4.0], &[2]);
    /// assert!((x.norm().item() - 5.0).abs() < 1e-12);
    /// ```
    pub fn norm(&self) -> Tensor {
        let s = self.square().sum();
        // The "double where": the square root never sees 0, so no infinite
        // derivative meets the zero gradient that `where` routes to it.
        let zero = s.detach().eq_elem(&Tensor::zeros(&[], s.dtype()));
        let safe = Tensor::where_(&zero, &Tensor::ones(&[], s.dtype()), &s);
        Tensor::where_(&zero, &Tensor::zeros(&[], s.dtype()), &safe.sqrt())
    }
}

impl Tensor {
    /// Integer labels as one-hot rows (`i64`, shape `labels.shape + [classes]`),
    /// like `torch.nn.functional.one_hot`. A label outside `0..classes` gives
    /// a row of zeros, as `jax.nn.one_hot` does (the labels may be a graph's
    /// input, so their values are not known when it is built).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let labels = Tensor::from_vec(vec![0i64, 2], &[2]);
    /// assert_eq!(labels.try_one_hot(3).unwrap().to_vec::<i64>(), [1, 0, 0, 0, 0, 1]);
    /// assert!(Tensor::from_vec(vec![0.0f64, 2.0], &[2]).try_one_hot(3).is_err());
    /// ```
    pub fn try_one_hot(&self, classes: usize) -> Result<Tensor> {
        if !self.dtype().is_int() {
            return Err(Error::dtype("one_hot", self.dtype(), "i32 and i64 labels"));
        }
        let mut shape = self.shape().to_vec();
        shape.push(classes);
        crate::limits::check_alloc("one_hot", &shape, crate::DType::I64)?;
        let classes = Tensor::try_arange(classes, self.dtype())?;
        Ok(self
            .unsqueeze(-1)
            .eq_elem(&classes)
            .to_dtype(crate::DType::I64))
    }

    /// Panicking form of [`Tensor::try_one_hot`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let h = Tensor::from_vec(vec![1i64, 0], &[2]).one_hot(2);
    /// assert_eq!(h.shape(), &[2, 2]);
    /// assert_eq!(h.to_vec::<i64>(), [0, 1, 1, 0]);
    /// ```
    #[track_caller]
    pub fn one_hot(&self, classes: usize) -> Tensor {
        crate::error::or_panic(self.try_one_hot(classes))
    }
}

/// Both operands are `bool`, or the error naming `op`.
fn logical(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    match [a.dtype(), b.dtype()]
        .into_iter()
        .find(|&d| d != crate::DType::Bool)
    {
        Some(d) => Err(Error::dtype(op, d, "bool")),
        None => Ok(()),
    }
}

panicking! {
    /// `self and other` on `bool` tensors (see `try_logical_and`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![true, true, false, false], &[4]);
    /// let b = Tensor::from_vec(vec![true, false, true, false], &[4]);
    /// assert_eq!(a.logical_and(&b).to_vec::<bool>(), [true, false, false, false]);
    /// ```
    fn logical_and => try_logical_and(other: &Tensor);
    /// `self or other` on `bool` tensors.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![true, true, false, false], &[4]);
    /// let b = Tensor::from_vec(vec![true, false, true, false], &[4]);
    /// assert_eq!(a.logical_or(&b).to_vec::<bool>(), [true, true, true, false]);
    /// ```
    fn logical_or => try_logical_or(other: &Tensor);
    /// `self xor other` on `bool` tensors.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![true, true, false, false], &[4]);
    /// let b = Tensor::from_vec(vec![true, false, true, false], &[4]);
    /// assert_eq!(a.logical_xor(&b).to_vec::<bool>(), [false, true, true, false]);
    /// ```
    fn logical_xor => try_logical_xor(other: &Tensor);
    /// `not self` on a `bool` tensor.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![true, false, true], &[3]);
    /// assert_eq!(a.logical_not().to_vec::<bool>(), [false, true, false]);
    /// ```
    fn logical_not => try_logical_not();
}

panicking! {
    /// Mean over `axes`, keeping them as length 1 when `keepdim`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let m = x.mean_axes(&[0], true);
    /// assert_eq!(m.shape(), &[1, 2]);
    /// assert_eq!(m.to_vec::<f64>(), [2.0, 3.0]);
    /// ```
    fn mean_axes => try_mean_axes(axes: impl Axes, keepdim: bool);
    /// `log Σ exp` along `axis`, stable for large inputs.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1000.0f64, 1000.0], &[1, 2]);
    /// let y = x.logsumexp(-1, false);
    /// assert_eq!(y.shape(), &[1]);
    /// assert!((y.get(&[0]) - (1000.0 + 2f64.ln())).abs() < 1e-9);
    /// ```
    fn logsumexp => try_logsumexp(axis: impl Axis, keepdim: bool);
    /// Softmax along `axis`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![0.0f64, 0.0, 5.0, 5.0], &[2, 2]);
    /// let y = x.softmax(1);
    /// assert_eq!(y.shape(), &[2, 2]);
    /// assert!(y.to_vec::<f64>().iter().all(|p| (p - 0.5).abs() < 1e-12));
    /// ```
    fn softmax => try_softmax(axis: impl Axis);
    /// Log-softmax along `axis`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![2.0f64, 2.0], &[2]);
    /// let y = x.log_softmax(0);
    /// assert!(y.to_vec::<f64>().iter().all(|v| (v + 2f64.ln()).abs() < 1e-12));
    /// ```
    fn log_softmax => try_log_softmax(axis: impl Axis);
    /// Mean cross-entropy of logits `(n, c)` and `n` integer labels.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let logits = Tensor::from_vec(vec![0.0f64, 0.0, 0.0, 0.0], &[2, 2]);
    /// let labels = Tensor::from_vec(vec![1i64, 0], &[2]);
    /// let loss = logits.cross_entropy_with_logits(&labels);
    /// assert!((loss.item() - 2f64.ln()).abs() < 1e-12);
    /// ```
    fn cross_entropy_with_logits => try_cross_entropy_with_logits(labels: impl Indices);
}

/// Structure: reversing, rotating, and the triangles and diagonals of
/// matrices, each a composite of index_select, narrow, concat and where.
impl Tensor {
    /// The elements in reverse order along each of `axes`, like `torch.flip`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.try_flip(&[1]).unwrap().to_vec::<f64>(), [2.0, 1.0, 4.0, 3.0]);
    /// assert!(x.try_flip(&[2]).is_err());
    /// ```
    pub fn try_flip(&self, axes: impl Axes) -> Result<Tensor> {
        let axes = crate::axis::resolve_all("flip", axes, self.shape())?;
        let mut out = self.clone();
        for &a in &axes {
            let n = self.shape()[a];
            let reversed: Vec<usize> = (0..n).rev().collect();
            out = out.try_index_select(a, &reversed)?;
        }
        Ok(out)
    }

    /// The elements shifted by `shift` along `axis`, those pushed past the
    /// end coming back at the start, like `torch.roll` (a negative shift
    /// rolls the other way).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[4]);
    /// assert_eq!(x.try_roll(1, 0).unwrap().to_vec::<f64>(), [4.0, 1.0, 2.0, 3.0]);
    /// assert!(x.try_roll(1, 1).is_err());
    /// ```
    pub fn try_roll(&self, shift: i64, axis: impl Axis) -> Result<Tensor> {
        let axis = crate::axis::resolve("roll", axis, self.shape())?;
        let n = self.shape()[axis];
        if n == 0 {
            return Ok(self.clone());
        }
        let k = shift.rem_euclid(n as i64) as usize;
        if k == 0 {
            return Ok(self.clone());
        }
        let tail = self.try_narrow(axis, n - k, k)?;
        let head = self.try_narrow(axis, 0, n - k)?;
        Tensor::try_concat(&[&tail, &head], axis)
    }

    /// The lower triangle of the last two axes: entries with
    /// `column - row <= k` kept, the rest zero (`torch.tril`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.try_tril(0).unwrap().to_vec::<f64>(), [1.0, 0.0, 3.0, 4.0]);
    /// assert!(Tensor::from_vec(vec![1.0f64, 2.0], &[2]).try_tril(0).is_err());
    /// ```
    pub fn try_tril(&self, k: i64) -> Result<Tensor> {
        self.triangle("tril", k, true)
    }

    /// The upper triangle of the last two axes: entries with
    /// `column - row >= k` kept (`torch.triu`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.try_triu(0).unwrap().to_vec::<f64>(), [1.0, 2.0, 0.0, 4.0]);
    /// assert!(Tensor::from_vec(vec![1.0f64, 2.0], &[2]).try_triu(0).is_err());
    /// ```
    pub fn try_triu(&self, k: i64) -> Result<Tensor> {
        self.triangle("triu", k, false)
    }

    fn triangle(&self, op: &'static str, k: i64, lower: bool) -> Result<Tensor> {
        let (rows, cols) = matrix_dims(op, self.shape())?;
        let row = Tensor::try_arange(rows, DType::I64)?.reshape(&[rows, 1]);
        let col = Tensor::try_arange(cols, DType::I64)?;
        let offset = (col - row) - k;
        let zero = Tensor::scalar(0i64);
        let keep = if lower {
            offset.le(&zero)
        } else {
            offset.ge(&zero)
        };
        Tensor::try_where_(&keep, self, &Tensor::zeros(&[], self.dtype()))
    }

    /// The diagonal of the last two axes, `offset` above it (below when
    /// negative), along a new last axis (`torch.diagonal(x, offset, -2, -1)`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert_eq!(x.try_diagonal(1).unwrap().to_vec::<f64>(), [2.0, 6.0]);
    /// assert!(Tensor::from_vec(vec![1.0f64, 2.0], &[2]).try_diagonal(0).is_err());
    /// ```
    pub fn try_diagonal(&self, offset: i64) -> Result<Tensor> {
        let (rows, cols) = matrix_dims("diagonal", self.shape())?;
        let (start_row, start_col) = match offset >= 0 {
            true => (0, offset.unsigned_abs() as usize),
            false => (offset.unsigned_abs() as usize, 0),
        };
        let len = rows
            .saturating_sub(start_row)
            .min(cols.saturating_sub(start_col));
        let at: Vec<usize> = (0..len)
            .map(|i| (start_row + i) * cols + start_col + i)
            .collect();
        let batch = &self.shape()[..self.ndim() - 2];
        let flat: Vec<usize> = batch.iter().copied().chain([rows * cols]).collect();
        self.try_reshape(&flat)?.try_index_select(-1, &at)
    }

    /// The sum of the diagonal of a matrix (`torch.trace`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.try_trace().unwrap().item(), 5.0);
    /// assert!(Tensor::from_vec(vec![1.0f64, 2.0], &[2]).try_trace().is_err());
    /// ```
    pub fn try_trace(&self) -> Result<Tensor> {
        if self.ndim() != 2 {
            return Err(Error::invalid(
                "trace",
                format!("needs a matrix, got shape {:?}", self.shape()),
            ));
        }
        Ok(self.try_diagonal(0)?.sum())
    }

    /// A vector as the diagonal of a square matrix, or a matrix's diagonal
    /// as a vector (`torch.diag`).
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let v = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// assert_eq!(v.try_diag().unwrap().to_vec::<f64>(), [1.0, 0.0, 0.0, 2.0]);
    /// assert!(Tensor::zeros(&[1, 1, 1], DType::F64).try_diag().is_err());
    /// ```
    pub fn try_diag(&self) -> Result<Tensor> {
        match self.ndim() {
            1 => {
                let n = self.shape()[0];
                Ok(Tensor::try_eye(n, self.dtype())? * self)
            }
            2 => self.try_diagonal(0),
            _ => Err(Error::invalid(
                "diag",
                format!("needs a vector or a matrix, got shape {:?}", self.shape()),
            )),
        }
    }
}

/// The sizes of the last two axes (the matrix dimensions), or the error naming `op`.
fn matrix_dims(op: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [.., r, c] => Ok((*r, *c)),
        _ => Err(Error::invalid(
            op,
            format!("needs at least two axes, got shape {shape:?}"),
        )),
    }
}

panicking! {
    /// Reversed along each of `axes` (see `try_flip`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.flip(&[0, 1]).to_vec::<f64>(), [4.0, 3.0, 2.0, 1.0]);
    /// ```
    fn flip => try_flip(axes: impl Axes);
    /// Rotated by `shift` along `axis` (see `try_roll`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[4]);
    /// assert_eq!(x.roll(-1, 0).to_vec::<f64>(), [2.0, 3.0, 4.0, 1.0]);
    /// ```
    fn roll => try_roll(shift: i64, axis: impl Axis);
    /// The lower triangle of the last two axes (see `try_tril`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.tril(-1).to_vec::<f64>(), [0.0, 0.0, 3.0, 0.0]);
    /// ```
    fn tril => try_tril(k: i64);
    /// The upper triangle of the last two axes (see `try_triu`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.triu(1).to_vec::<f64>(), [0.0, 2.0, 0.0, 0.0]);
    /// ```
    fn triu => try_triu(k: i64);
    /// The diagonal of the last two axes (see `try_diagonal`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert_eq!(x.diagonal(0).to_vec::<f64>(), [1.0, 5.0]);
    /// assert_eq!(x.diagonal(-1).to_vec::<f64>(), [4.0]);
    /// ```
    fn diagonal => try_diagonal(offset: i64);
    /// The sum of a matrix's diagonal.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert_eq!(x.trace().item(), 6.0);
    /// ```
    fn trace => try_trace();
    /// A vector as a diagonal matrix, or a matrix's diagonal.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.diag().to_vec::<f64>(), [1.0, 4.0]);
    /// ```
    fn diag => try_diag();
}
