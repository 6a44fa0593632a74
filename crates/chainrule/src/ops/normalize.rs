//! Normalization and attention as composites (PyTorch's `F.layer_norm`,
//! `F.batch_norm`, `F.scaled_dot_product_attention`): the layers of
//! [`crate::nn`] call these, and each is a row of the op table.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Tensor {
    /// `(x − mean) / √(var + eps)` over the trailing axes of
    /// `normalized_shape` (biased variance), then `· weight + bias` when
    /// given (each of that shape).
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
        let mut scores = q
            .try_matmul(&k.try_transpose(-1, -2)?)?
            .try_mul(&Tensor::full(&[], scale, q.dtype()))?;
        if let Some(mask) = mask {
            scores = scores.try_masked_fill(mask, f64::NEG_INFINITY)?;
        }
        scores.try_softmax(-1)?.try_matmul(v)
    }
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
    fn layer_norm => try_layer_norm(normalized_shape: &[usize], weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64);
    /// Batch normalization (see `try_batch_norm`).
    fn batch_norm => try_batch_norm(mean: Option<&Tensor>, var: Option<&Tensor>, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64);
}

impl Tensor {
    /// Scaled dot-product attention (see `try_scaled_dot_product_attention`).
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
