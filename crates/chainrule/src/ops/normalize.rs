//! Normalization and attention as composites (PyTorch's `F.layer_norm`,
//! `F.batch_norm`, `F.scaled_dot_product_attention`): the layers of
//! [`crate::nn`] call these, and each is a row of the op table.

use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::kernels::elementwise::fill;
use crate::kernels::reduce::{fold_run, ANY_ORDER, ORDERED};
use crate::kernels::{parallel, task_len, wide};
use crate::layout::Layout;
use crate::storage::with_dtype;
use crate::tensor::Tensor;
use num_traits::Float;

impl Tensor {
    /// `(x − mean) / √(var + eps)` over the trailing axes of
    /// `normalized_shape` (biased variance), then `· weight + bias` when
    /// given (each of that shape).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 6.0], &[2, 2]);
    /// let y = x.try_layer_norm(&[2], None, None, 0.0).unwrap();
    /// assert!(y.to_vec::<f64>().iter().zip([-1.0, 1.0, -1.0, 1.0]).all(|(a, b)| (a - b).abs() < 1e-12));
    /// assert!(x.try_layer_norm(&[3], None, None, 0.0).is_err());
    /// ```
    pub fn try_layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let k = normalized_shape.len();
        if self.ndim() < k || self.shape()[self.ndim() - k..] != *normalized_shape {
            return Err(Error::shapes_detail(
                "layer_norm",
                self.shape(),
                normalized_shape,
                "the input must end in the normalized shape",
            ));
        }
        let axes: Vec<usize> = (self.ndim() - k..self.ndim()).collect();
        let mean = self.try_mean_axes(&axes, true)?;
        let centered = self.try_sub(&mean)?;
        let var = centered.square().try_mean_axes(&axes, true)?;
        affine(
            "layer_norm",
            centered.try_mul(&(var + eps).rsqrt())?,
            weight,
            bias,
            normalized_shape,
        )
    }

    /// Batch normalization over axis 1 of `(N, C, …)`: by `mean` and `var`
    /// (each `(C,)`) when given, else by the batch's mean and biased
    /// variance over every other axis; then `· weight + bias` per channel.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0], &[2, 1]);
    /// let y = x.try_batch_norm(None, None, None, None, 0.0).unwrap();
    /// assert!((y.get(&[0, 0]) + 1.0).abs() < 1e-12 && (y.get(&[1, 0]) - 1.0).abs() < 1e-12);
    /// let mean = Tensor::from_vec(vec![0.0f64], &[1]);
    /// assert!(x.try_batch_norm(Some(&mean), None, None, None, 0.0).is_err());
    /// ```
    pub fn try_batch_norm(
        &self,
        mean: Option<&Tensor>,
        var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        if self.ndim() < 2 {
            return Err(Error::invalid(
                "batch_norm",
                format!("expects (batch, channels, …), got {:?}", self.shape()),
            ));
        }
        let c = self.shape()[1];
        let mut channel = vec![1; self.ndim()];
        channel[1] = c;
        let per_channel = |t: &Tensor| -> Result<Tensor> {
            if t.shape() != [c] {
                return Err(Error::shapes_detail(
                    "batch_norm",
                    self.shape(),
                    t.shape(),
                    "statistics and affine parameters have one entry per channel",
                ));
            }
            t.try_reshape(&channel)
        };
        let (mean, var) = match (mean, var) {
            (Some(m), Some(v)) => (per_channel(m)?, per_channel(v)?),
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::invalid(
                    "batch_norm",
                    "give both the mean and the variance, or neither (batch statistics)",
                ))
            }
            (None, None) => {
                let (m, v) = batch_statistics(self)?;
                (per_channel(&m)?, per_channel(&v)?)
            }
        };
        let normalized = self.try_sub(&mean)?.try_mul(&(var + eps).rsqrt())?;
        let weight = weight.map(per_channel).transpose()?;
        let bias = bias.map(per_channel).transpose()?;
        affine(
            "batch_norm",
            normalized,
            weight.as_ref(),
            bias.as_ref(),
            &channel,
        )
    }

    /// `softmax(q kᵀ · scale + masked) v` over the last two axes: `q`
    /// `(…, L, D)`, `k` `(…, S, D)`, `v` `(…, S, Dv)`; `mask` (`bool`,
    /// broadcasting to `(…, L, S)`, `true` = masked) sets scores to −∞;
    /// `scale` defaults to `1/√D`. A row with every key masked is NaN, as
    /// in PyTorch.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let q = Tensor::from_vec(vec![0.0f64, 0.0], &[1, 2]);
    /// let kv = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1.0], &[2, 2]);
    /// let y = Tensor::try_scaled_dot_product_attention(&q, &kv, &kv, None, None).unwrap();
    /// assert_eq!(y.shape(), &[1, 2]);
    /// assert!(Tensor::try_scaled_dot_product_attention(&q, &q, &kv, None, None).is_err());
    /// ```
    pub fn try_scaled_dot_product_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        let op = "scaled_dot_product_attention";
        if q.ndim() < 2 || k.ndim() < 2 || q.shape().last() != k.shape().last() {
            return Err(Error::shapes_detail(
                op,
                q.shape(),
                k.shape(),
                "queries (…, L, D) and keys (…, S, D) share D",
            ));
        }
        if v.ndim() < 2 || v.shape()[v.ndim() - 2] != k.shape()[k.ndim() - 2] {
            return Err(Error::shapes_detail(
                op,
                k.shape(),
                v.shape(),
                "keys (…, S, D) and values (…, S, Dv) share S",
            ));
        }
        let d = *q.shape().last().unwrap();
        let scale = scale.unwrap_or(1.0 / (d.max(1) as f64).sqrt());
        // The queries are scaled, not the scores: a pass over (…, L, D)
        // rather than (…, L, S).
        let q = q.try_mul(&Tensor::full(&[], scale, q.dtype()))?;
        let mut scores = q.try_matmul(&k.try_transpose(-1, -2)?)?;
        if let Some(mask) = mask {
            // As PyTorch: the mask becomes an additive bias (−∞ where
            // masked) at its own, broadcasting shape, so the scores see one
            // broadcast add, and its adjoint is the incoming one unchanged.
            let zero = Tensor::full(&[], 0.0, q.dtype());
            let bias = zero.try_masked_fill(mask, f64::NEG_INFINITY)?;
            scores = scores.try_add(&bias)?;
        }
        scores.try_softmax(-1)?.try_matmul(v)
    }
}

/// The softmax primitive's kernel: each lane along `axis` shifted by its
/// maximum (by 0 when that is infinite or NaN, as `logsumexp`'s shift),
/// exponentiated, and divided by its sum. A lane of −∞ (all masked) is
/// NaN, as in PyTorch.
pub(crate) fn softmax_forward(x: &Tensor, axis: usize) -> Tensor {
    with_dtype!(x.dtype(), T => {
        let (lanes, layout, back) = lanes_last::<T>(x, axis);
        let rows = lane_map(&[&lanes], x.shape()[axis], #[inline(always)] |out, [row]| {
            let max = |m: T, v: T| if v > m || v.is_nan() { v } else { m };
            let m = fold_run::<_, _, ANY_ORDER>(row, T::neg_infinity(), &max);
            let shift = if m.is_finite() { m } else { T::zero() };
            for (o, &v) in out.iter_mut().zip(row) {
                *o = (v - shift).exp_vectorizable();
            }
            let sum = fold_run::<_, _, ORDERED>(out, T::zero(), &|a, b| a + b);
            for o in out.iter_mut() {
                *o /= sum;
            }
        });
        Tensor::from_buffer(rows, &layout.shape).view(layout.permute(&back))
    })
}

/// `y · (g − Σ g·y)` along `axis`: the softmax's VJP from its output `y`.
/// One fused pass per lane when nothing records it, else recorded ops
/// (so that it is differentiated again).
pub(crate) fn softmax_vjp(y: &Tensor, g: &Tensor, axis: usize) -> Result<Tensor> {
    if y.shape() == g.shape() && crate::ops::quiet(&[y, g]) && y.dtype() == g.dtype() {
        return Ok(with_dtype!(y.dtype(), T => {
            let (ys, layout, back) = lanes_last::<T>(y, axis);
            let (gs, ..) = lanes_last::<T>(g, axis);
            let rows = lane_map(&[&ys, &gs], y.shape()[axis], #[inline(always)] |out, [y, g]| {
                for ((o, &a), &b) in out.iter_mut().zip(y).zip(g) {
                    *o = a * b;
                }
                let dot = fold_run::<_, _, ORDERED>(out, T::zero(), &|a, b| a + b);
                for ((o, &a), &b) in out.iter_mut().zip(y).zip(g) {
                    *o = a * (b - dot);
                }
            });
            Tensor::from_buffer(rows, &layout.shape).view(layout.permute(&back))
        }));
    }
    softmax_jvp(y, g, axis)
}

/// `y · (t − Σ t·y)` along `axis`: the softmax's JVP from its output `y`
/// (and its VJP: the Jacobian is symmetric).
pub(crate) fn softmax_jvp(y: &Tensor, t: &Tensor, axis: usize) -> Result<Tensor> {
    let dot = t.try_mul(y)?.try_sum_axes(&[axis], true)?;
    y.try_mul(&t.try_sub(&dot)?)
}

/// The values of `x` with `axis` moved last, as one row-major buffer of
/// lanes; that permuted layout (contiguous); and the permutation back to
/// `x`'s axes.
fn lanes_last<T: Element + crate::storage::StorageElement>(
    x: &Tensor,
    axis: usize,
) -> (Vec<T>, Layout, Vec<usize>) {
    let perm: Vec<usize> = (0..x.ndim()).filter(|&a| a != axis).chain([axis]).collect();
    let view = x.layout().permute(&perm);
    let data = crate::kernels::elementwise::materialize(x.buffer::<T>(), &view);
    let back = super::movement::inverse_permutation(&perm);
    (data, Layout::contiguous(&view.shape), back)
}

/// `f(out_lane, input_lanes)` for every lane of `len` elements of the
/// `K` equally long row-major inputs: blocks of lanes across the pool,
/// each lane's loops vectorized.
fn lane_map<T: Element, const K: usize>(
    inputs: &[&Vec<T>; K],
    len: usize,
    f: impl Fn(&mut [T], [&[T]; K]) + Sync,
) -> Vec<T> {
    let n = inputs[0].len();
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: every slot is written: zeroed, then each lane by `f`.
    unsafe {
        fill(n, parallel(n), task_len(n, len), |out, start| {
            wide(
                #[inline(always)]
                || {
                    for (j, lane) in out.chunks_exact_mut(len).enumerate() {
                        let lane = init_zero(lane);
                        let at = start + j * len;
                        f(lane, std::array::from_fn(|k| &inputs[k][at..at + len]));
                    }
                },
            )
        })
    }
}

/// A lane of uninitialized outputs, zeroed and returned initialized.
#[inline(always)]
fn init_zero<T: Element>(lane: &mut [std::mem::MaybeUninit<T>]) -> &mut [T] {
    for o in lane.iter_mut() {
        o.write(T::zero());
    }
    // SAFETY: every element was just written.
    unsafe { &mut *(lane as *mut [std::mem::MaybeUninit<T>] as *mut [T]) }
}

/// The (mean, biased variance) per channel of `x` `(N, C, …)`, each
/// `(C,)`: batch normalization's statistics in training.
pub(crate) fn batch_statistics(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let axes: Vec<usize> = (0..x.ndim()).filter(|&a| a != 1).collect();
    let mean = x.try_mean_axes(&axes, true)?;
    let var = x.try_sub(&mean)?.square().try_mean_axes(&axes, false)?;
    let c = x.shape()[1];
    Ok((mean.try_reshape(&[c])?, var))
}

/// `x · weight + bias`, each optional, of `shape` (broadcasting).
fn affine(
    op: &'static str,
    x: Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    shape: &[usize],
) -> Result<Tensor> {
    let check = |t: &Tensor, what: &str| -> Result<()> {
        if t.shape() == shape {
            return Ok(());
        }
        Err(Error::shapes_detail(
            op,
            shape,
            t.shape(),
            format!("the {what} must have the normalized shape"),
        ))
    };
    let mut y = x;
    if let Some(w) = weight {
        check(w, "weight")?;
        y = y.try_mul(w)?;
    }
    if let Some(b) = bias {
        check(b, "bias")?;
        y = y.try_add(b)?;
    }
    Ok(y)
}

crate::ops::panicking! {
    /// Layer normalization (see `try_layer_norm`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0], &[1, 2]);
    /// let w = Tensor::from_vec(vec![2.0f64, 2.0], &[2]);
    /// let b = Tensor::from_vec(vec![0.0f64, 1.0], &[2]);
    /// let y = x.layer_norm(&[2], Some(&w), Some(&b), 0.0);
    /// assert!((y.get(&[0, 0]) + 2.0).abs() < 1e-12 && (y.get(&[0, 1]) - 3.0).abs() < 1e-12);
    /// ```
    fn layer_norm => try_layer_norm(normalized_shape: &[usize], weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64);
    /// Batch normalization (see `try_batch_norm`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0], &[2, 1]);
    /// let mean = Tensor::from_vec(vec![1.0f64], &[1]);
    /// let var = Tensor::from_vec(vec![4.0f64], &[1]);
    /// let y = x.batch_norm(Some(&mean), Some(&var), None, None, 0.0);
    /// assert!((y.get(&[1, 0]) - 1.0).abs() < 1e-12);
    /// ```
    fn batch_norm => try_batch_norm(mean: Option<&Tensor>, var: Option<&Tensor>, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64);
}

impl Tensor {
    /// Scaled dot-product attention (see `try_scaled_dot_product_attention`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let q = Tensor::from_vec(vec![0.0f64, 0.0], &[1, 2]);
    /// let k = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1.0], &[2, 2]);
    /// let v = Tensor::from_vec(vec![1.0f64, 3.0], &[2, 1]);
    /// let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None, None);
    /// assert!((y.item() - 2.0).abs() < 1e-12);
    /// ```
    #[track_caller]
    pub fn scaled_dot_product_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        scale: Option<f64>,
    ) -> Tensor {
        crate::error::or_panic(Tensor::try_scaled_dot_product_attention(
            q, k, v, mask, scale,
        ))
    }
}
