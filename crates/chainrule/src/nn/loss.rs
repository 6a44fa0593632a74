//! Losses, each the mean over the batch.

use crate::error::{Error, Result};
use crate::Tensor;

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

/// Softmax cross-entropy of `(n, c)` logits against `n` integer labels,
/// computed from the logits with log-sum-exp (never `log(softmax)`).
pub fn cross_entropy_loss(logits: &Tensor, labels: &[usize]) -> Result<Tensor> {
    if let Some(&bad) = labels
        .iter()
        .find(|&&l| logits.ndim() == 2 && l >= logits.shape()[1])
    {
        return Err(Error::invalid(
            "cross_entropy_loss",
            format!(
                "label {bad} is out of range for {} classes",
                logits.shape()[1]
            ),
        ));
    }
    logits.try_cross_entropy_with_logits(labels)
}

/// Binary cross-entropy of logits `x` against targets `y` in `[0, 1]`, in the
/// stable form `max(x, 0) − x·y + log(1 + e^{−|x|})`.
pub fn bce_with_logits_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    same_shape("bce_with_logits_loss", logits, targets)?;
    let softplus_neg_abs = (-logits.abs()).exp().add_scalar(1.0).log();
    Ok((logits.relu() - logits * targets + softplus_neg_abs).mean())
}
