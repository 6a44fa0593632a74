//! Sorting: the `argsort` primitive (`i64` positions, no derivative), and
//! `sort` and `topk` built on it, their values a `gather` at those
//! positions, so that gradients reach the entries sorted.

use super::{bind, Prim};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::kernels::elementwise::materialize;
use crate::storage::with_scalar;
use crate::tensor::Tensor;
use std::cmp::Ordering;

/// `a` against `b` with NaN above everything (equal to another NaN), so
/// that an ascending sort puts NaNs last, as PyTorch and NumPy do.
fn nan_last<T: PartialOrd>(a: &T, b: &T) -> Ordering {
    #[allow(clippy::eq_op)]
    let nan = |v: &T| v != v;
    match (nan(a), nan(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// The kernel of `argsort`: each lane along `axis` sorted stably (ties
/// keep their order; descending puts NaNs first, as the reverse of
/// ascending does).
pub(crate) fn argsort_forward(x: &Tensor, axis: usize, descending: bool) -> Tensor {
    let shape = x.shape();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut out = vec![0i64; x.numel()];
    with_scalar!(x.dtype(), T => {
        let data: Vec<T> = materialize(x.buffer::<T>(), x.layout());
        let mut order: Vec<usize> = Vec::with_capacity(len);
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * len + j) * inner + i;
                order.clear();
                order.extend(0..len);
                order.sort_by(|&p, &q| match descending {
                    false => nan_last(&data[at(p)], &data[at(q)]),
                    true => nan_last(&data[at(q)], &data[at(p)]),
                });
                for (j, &p) in order.iter().enumerate() {
                    out[at(j)] = p as i64;
                }
            }
        }
    });
    Tensor::from_buffer(out, shape)
}

impl Tensor {
    /// The positions (`i64`) that sort each lane along `axis`, ascending
    /// or `descending`, like `torch.argsort(stable=True)`: ties keep their
    /// order, NaNs count as the largest.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![3.0f64, 1.0, 2.0], &[3]);
    /// assert!(x.try_argsort(1, false).is_err());
    /// assert_eq!(x.try_argsort(0, false).unwrap().to_vec::<i64>(), [1, 2, 0]);
    /// ```
    pub fn try_argsort(&self, axis: impl Axis, descending: bool) -> Result<Tensor> {
        let axis = crate::axis::resolve("argsort", axis, self.shape())?;
        bind(Prim::Argsort { axis, descending }, &[self])
    }

    /// Each lane along `axis` sorted, and the positions it came from, like
    /// `torch.sort(stable=True)`. The gradient flows back to the entries
    /// through their positions.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![3.0f64, 1.0, 2.0], &[3]);
    /// assert!(x.try_sort(1, false).is_err());
    /// let (values, index) = x.try_sort(-1, true).unwrap();
    /// assert_eq!(values.to_vec::<f64>(), [3.0, 2.0, 1.0]);
    /// assert_eq!(index.to_vec::<i64>(), [0, 2, 1]);
    /// ```
    pub fn try_sort(&self, axis: impl Axis, descending: bool) -> Result<(Tensor, Tensor)> {
        let axis = crate::axis::resolve("sort", axis, self.shape())?;
        let index = self.try_argsort(axis, descending)?;
        Ok((self.try_gather(axis, &index)?, index))
    }

    /// The `k` largest (or, not `largest`, smallest) entries of each lane
    /// along `axis`, sorted, and their positions, like `torch.topk`; equal
    /// entries in their order along the axis.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 4.0, 2.0, 3.0], &[4]);
    /// assert!(x.try_topk(5, 0, true).is_err());
    /// let (values, index) = x.try_topk(2, 0, true).unwrap();
    /// assert_eq!(values.to_vec::<f64>(), [4.0, 3.0]);
    /// assert_eq!(index.to_vec::<i64>(), [1, 3]);
    /// ```
    pub fn try_topk(&self, k: usize, axis: impl Axis, largest: bool) -> Result<(Tensor, Tensor)> {
        let axis = crate::axis::resolve("topk", axis, self.shape())?;
        if k > self.shape()[axis] {
            return Err(Error::invalid(
                "topk",
                format!("k = {k} exceeds axis {axis} of shape {:?}", self.shape()),
            ));
        }
        let index = self.try_argsort(axis, largest)?.try_narrow(axis, 0, k)?;
        Ok((self.try_gather(axis, &index)?, index))
    }

    /// Panicking form of [`Tensor::try_argsort`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![2.0f64, 1.0, 3.0, 6.0, 5.0, 4.0], &[2, 3]);
    /// assert_eq!(x.argsort(1, true).to_vec::<i64>(), [2, 0, 1, 0, 1, 2]);
    /// ```
    #[track_caller]
    pub fn argsort(&self, axis: impl Axis, descending: bool) -> Tensor {
        crate::error::or_panic(self.try_argsort(axis, descending))
    }

    /// Panicking form of [`Tensor::try_sort`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![3.0f64, 1.0, 2.0, 1.0], &[4]);
    /// let (values, index) = x.sort(0, false);
    /// assert_eq!(values.to_vec::<f64>(), [1.0, 1.0, 2.0, 3.0]);
    /// assert_eq!(index.to_vec::<i64>(), [1, 3, 2, 0]); // ties keep their order
    /// ```
    #[track_caller]
    pub fn sort(&self, axis: impl Axis, descending: bool) -> (Tensor, Tensor) {
        crate::error::or_panic(self.try_sort(axis, descending))
    }

    /// Panicking form of [`Tensor::try_topk`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![5.0f64, 1.0, 4.0, 2.0], &[4]);
    /// let (smallest, index) = x.topk(2, 0, false);
    /// assert_eq!(smallest.to_vec::<f64>(), [1.0, 2.0]);
    /// assert_eq!(index.to_vec::<i64>(), [1, 3]);
    /// ```
    #[track_caller]
    pub fn topk(&self, k: usize, axis: impl Axis, largest: bool) -> (Tensor, Tensor) {
        crate::error::or_panic(self.try_topk(k, axis, largest))
    }
}
