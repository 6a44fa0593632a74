//! Losses, each the mean over the batch, and a classifier's accuracy.

use crate::error::{Error, Result};
use crate::{Indices, Tensor};

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::shapes_detail(
            op,
            a.shape(),
            b.shape(),
            "prediction and target must have the same shape",
        ));
    }
    Ok(())
}

/// Mean squared error `mean((pred − target)²)`.
pub fn mse_loss(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    same_shape("mse_loss", pred, target)?;
    Ok(pred.try_sub(target)?.square().mean())
}

/// Softmax cross-entropy of `(n, c)` logits against `n` integer labels
/// (an `i64` tensor, or a list), computed from the logits with
/// log-sum-exp (never `log(softmax)`).
pub fn cross_entropy_loss(logits: &Tensor, labels: impl Indices) -> Result<Tensor> {
    logits.try_cross_entropy_with_logits(labels)
}

/// The fraction of rows of `(n, c)` logits whose largest entry (the first
/// at ties) is at the row's label (`n` of them, an `i64` tensor or a list),
/// as a 0-d tensor of the logits' dtype. Never differentiated.
pub fn accuracy(logits: &Tensor, labels: impl Indices) -> Result<Tensor> {
    let labels = crate::ops::composite::check_labels("accuracy", logits, labels)?;
    let hits = logits.try_argmax(1, false)?.try_eq_elem(&labels)?;
    Ok(hits.to_dtype(logits.dtype()).mean())
}

/// Binary cross-entropy of logits `x` against targets `y` in `[0, 1]`, in the
/// stable form `max(x, 0) − x·y + log(1 + e^{−|x|})`.
pub fn bce_with_logits_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    same_shape("bce_with_logits_loss", logits, targets)?;
    let softplus_neg_abs = (-logits.abs()).exp().add_scalar(1.0).log();
    Ok((logits.relu() - logits * targets + softplus_neg_abs).mean())
}
