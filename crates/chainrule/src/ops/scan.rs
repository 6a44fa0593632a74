//! The first-order linear recurrence `y[k] = a[k]·y[k−1] + b[k]` along an
//! axis (see [`Prim::LinearScan`]), and `cumprod`, one of them. Its rules
//! are recurrences of the same kind, so a product with zeros has exact
//! gradients (no division by the entries) at every order, in O(n).

use super::{bind, BatchArg, Prim};
use crate::axis::Axis;
use crate::error::{Error, Result};
use crate::kernels::elementwise::materialize;
use crate::storage::with_dtype;
use crate::tensor::Tensor;
use smallvec::{smallvec, SmallVec};

/// The shape rule: `a` and `b` of one shape, which the output has.
pub(crate) fn shape(a: &[usize], b: &[usize], axis: usize) -> Result<Vec<usize>> {
    crate::layout::check_axis("linear_scan", axis, a)?;
    if a != b {
        return Err(Error::shapes_detail(
            "linear_scan",
            a,
            b,
            "needs coefficients and terms of one shape",
        ));
    }
    Ok(a.to_vec())
}

/// The kernel, along `axis` from its start (from its end when `reverse`).
pub(crate) fn forward(a: &Tensor, b: &Tensor, axis: usize, reverse: bool) -> Result<Tensor> {
    let shape = shape(a.shape(), b.shape(), axis)?;
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    Ok(with_dtype!(a.dtype(), T => {
        let coef: Vec<T> = materialize(a.buffer::<T>(), a.layout());
        let mut y: Vec<T> = materialize(b.buffer::<T>(), b.layout());
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * len + j) * inner + i;
                for step in 1..len {
                    let (k, prev) = if reverse { (len - 1 - step, len - step) } else { (step, step - 1) };
                    y[at(k)] = coef[at(k)] * y[at(prev)] + y[at(k)];
                }
            }
        }
        Tensor::from_buffer(y, &shape)
    }))
}

/// `v` moved one place along `axis`, toward its end (`out[k] = v[k−1]`)
/// or its start, with a zero in the place left.
fn shift(v: &Tensor, axis: usize, toward_end: bool) -> Result<Tensor> {
    let n = v.shape()[axis];
    if n == 0 {
        return Ok(v.clone());
    }
    let (from, to) = if toward_end { (0, 1) } else { (1, 0) };
    v.try_narrow(axis, from, n - 1)?.try_pad(axis, to, n)
}

/// The VJP: `b̄` is the recurrence run the other way with the coefficients
/// one place on (`b̄[k] = ȳ[k] + a[k+1]·b̄[k+1]`), and `ā[k] = b̄[k]·y[k−1]`.
pub(crate) fn vjp(
    a: &Tensor,
    y: &Tensor,
    g: &Tensor,
    axis: usize,
    reverse: bool,
    needs: &[bool],
) -> Result<SmallVec<[Option<Tensor>; 2]>> {
    let coef = shift(a, axis, reverse)?;
    let gb = bind(
        Prim::LinearScan {
            axis,
            reverse: !reverse,
        },
        &[&coef, g],
    )?;
    let ga = match needs[0] {
        true => Some(gb.try_mul(&shift(y, axis, !reverse)?)?),
        false => None,
    };
    Ok(smallvec![ga, needs[1].then_some(gb)])
}

/// The JVP: the same recurrence driven by `da·y[k−1] + db`.
pub(crate) fn jvp(
    a: &Tensor,
    y: &Tensor,
    tangents: &[Option<Tensor>],
    axis: usize,
    reverse: bool,
) -> Result<Tensor> {
    let from_a = match &tangents[0] {
        Some(da) => Some(da.try_mul(&shift(y, axis, !reverse)?)?),
        None => None,
    };
    let drive = match (from_a, &tangents[1]) {
        (Some(t), Some(db)) => t.try_add(db)?,
        (Some(t), None) => t,
        (None, Some(db)) => db.clone(),
        (None, None) => unreachable!("a tangent is present"),
    };
    bind(Prim::LinearScan { axis, reverse }, &[a, &drive])
}

/// The batching rule: both inputs with the batch axis, one axis further in.
pub(crate) fn batch(args: &[BatchArg], size: usize, axis: usize, reverse: bool) -> Result<Tensor> {
    let (a, b) = (args[0].expanded(size), args[1].expanded(size));
    bind(
        Prim::LinearScan {
            axis: axis + 1,
            reverse,
        },
        &[&a, &b],
    )
}

impl Tensor {
    /// Running products along `axis`, like `torch.cumprod`. Its gradient is
    /// exact where entries are zero (no division by them) and at every
    /// order.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[4]);
    /// assert!(x.try_cumprod(1).is_err());
    /// assert!(Tensor::from_vec(vec![1i64, 2], &[2]).try_cumprod(0).is_err()); // floats only
    /// assert_eq!(x.try_cumprod(0).unwrap().to_vec::<f64>(), [1.0, 2.0, 6.0, 24.0]);
    /// ```
    pub fn try_cumprod(&self, axis: impl Axis) -> Result<Tensor> {
        let axis = crate::axis::resolve("cumprod", axis, self.shape())?;
        Error::need_float("cumprod", self.dtype())?;
        let n = self.shape()[axis];
        // y[k] = x[k]·y[k−1] + (x[0] at k = 0, else 0).
        let first = self.try_narrow(axis, 0, n.min(1))?.try_pad(axis, 0, n)?;
        bind(
            Prim::LinearScan {
                axis,
                reverse: false,
            },
            &[self, &first],
        )
    }

    /// Panicking form of [`Tensor::try_cumprod`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.cumprod(0).to_vec::<f64>(), [1.0, 2.0, 3.0, 8.0]);
    /// assert_eq!(x.cumprod(-1).to_vec::<f64>(), [1.0, 2.0, 3.0, 12.0]);
    /// ```
    #[track_caller]
    pub fn cumprod(&self, axis: impl Axis) -> Tensor {
        crate::error::or_panic(self.try_cumprod(axis))
    }
}
