//! Normalization layers: batch normalization (with running statistics) and
//! layer normalization, as PyTorch defines them.

use super::{Buffer, Module, Param, Training};
use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::{DType, Tensor};
use std::sync::{Arc, RwLock};

/// Where a [`BatchNorm`] in training takes its batch's statistics from
/// when not from its own input alone: `distributed::World::sync_batch_norm`
/// gives statistics over every rank's batch (PyTorch's `SyncBatchNorm`).
pub trait BatchStatistics:
    Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe
{
    /// The mean and biased variance of `x` over every axis but 1, each
    /// `(C,)` and differentiable in `x`, and how many values per channel
    /// they cover.
    fn statistics(&self, x: &Tensor) -> Result<(Tensor, Tensor, usize)>;
}

/// Batch normalization over the channel axis 1 of `(N, C)`, `(N, C, L)`
/// (`BatchNorm1d`) or `(N, C, H, W)` (`BatchNorm2d`).
///
/// Training normalizes by the batch's mean and biased variance and moves
/// the running statistics by `momentum` (the variance's unbiased estimate,
/// as PyTorch); evaluation normalizes by the running statistics.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let bn = nn::BatchNorm::new_1d(2, DType::F64);
/// let y = bn.forward(&Tensor::from_vec(vec![1.0f64, 10.0, 3.0, 30.0], &[2, 2])).unwrap();
/// assert_eq!(y.shape(), &[2, 2]);
/// assert!((y.to_vec::<f64>()[0] + 1.0).abs() < 1e-4); // channel 0: (1 - 2) / 1
/// let bn2d = nn::BatchNorm::new_2d(3, DType::F64);
/// let y = bn2d.forward(&Tensor::rand_normal(&[2, 3, 4, 4], 0.0, 1.0, 0, DType::F64)).unwrap();
/// assert_eq!(y.shape(), &[2, 3, 4, 4]);
/// ```
#[derive(crate::nn::Module)]
pub struct BatchNorm {
    /// The per-channel scale, `(C,)`.
    pub weight: Param,
    /// The per-channel shift, `(C,)`.
    pub bias: Param,
    /// The running mean, `(C,)`, used in evaluation.
    pub running_mean: Buffer,
    /// The running (unbiased) variance, `(C,)`, used in evaluation.
    pub running_var: Buffer,
    training: Training,
    /// The weight of each batch's statistics in the running ones.
    #[module(skip)]
    pub momentum: f64,
    /// Added to the variance before its square root.
    #[module(skip)]
    pub eps: f64,
    /// The input ranks this layer accepts (2 and 3, or 4).
    #[module(skip)]
    ranks: &'static [usize],
    /// Statistics over more than this input (see [`BatchNorm::set_statistics`]).
    #[module(skip)]
    statistics: RwLock<Option<Arc<dyn BatchStatistics>>>,
}

/// [`BatchNorm`] over `(N, C)` or `(N, C, L)`, made by [`BatchNorm::new_1d`].
pub type BatchNorm1d = BatchNorm;
/// [`BatchNorm`] over `(N, C, H, W)`, made by [`BatchNorm::new_2d`].
pub type BatchNorm2d = BatchNorm;

impl BatchNorm {
    fn with_ranks(channels: usize, dtype: DType, ranks: &'static [usize]) -> BatchNorm {
        BatchNorm {
            weight: Param::new(Tensor::ones(&[channels], dtype)),
            bias: Param::new(Tensor::zeros(&[channels], dtype)),
            running_mean: Buffer::new(Tensor::zeros(&[channels], dtype)),
            running_var: Buffer::new(Tensor::ones(&[channels], dtype)),
            training: Training::default(),
            momentum: 0.1,
            eps: 1e-5,
            ranks,
            statistics: RwLock::new(None),
        }
    }

    /// Takes training statistics from `statistics` (`None`: from the input
    /// alone, the default).
    pub fn set_statistics(&self, statistics: Option<Arc<dyn BatchStatistics>>) {
        *self.statistics.write().unwrap() = statistics;
    }

    /// `BatchNorm1d(channels)`: inputs `(N, C)` or `(N, C, L)`; weight
    /// one, bias zero, momentum 0.1, ε = 1e-5.
    pub fn new_1d(channels: usize, dtype: DType) -> BatchNorm {
        BatchNorm::with_ranks(channels, dtype, &[2, 3])
    }

    /// `BatchNorm2d(channels)`: inputs `(N, C, H, W)`.
    pub fn new_2d(channels: usize, dtype: DType) -> BatchNorm {
        BatchNorm::with_ranks(channels, dtype, &[4])
    }

    fn update_running(&self, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let c = self.weight.numel();
        let m = self.momentum;
        let unbiased = count as f64 / (count.max(2) - 1) as f64;
        no_grad(|| {
            let mean = mean.detach().try_reshape(&[c])?;
            let var = var.detach().try_reshape(&[c])?;
            self.running_mean
                .set(&(self.running_mean.value() * (1.0 - m) + mean * m))?;
            self.running_var
                .set(&(self.running_var.value() * (1.0 - m) + var * (m * unbiased)))
        })
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.weight.numel();
        if x.dtype() != self.weight.dtype() {
            return Err(Error::DTypeMismatch {
                op: "BatchNorm",
                lhs: x.dtype(),
                rhs: self.weight.dtype(),
            });
        }
        if !self.ranks.contains(&x.ndim()) || x.shape()[1] != c {
            return Err(Error::shapes_detail(
                "BatchNorm",
                x.shape(),
                &[c],
                format!(
                    "expects an input of rank {:?} with {c} channels on axis 1",
                    self.ranks
                ),
            ));
        }
        let (mean, var) = if self.training.get() {
            let count = x.numel() / c.max(1);
            if count < 2 {
                return Err(Error::invalid(
                    "BatchNorm",
                    format!(
                        "training needs more than one value per channel, got input {:?}",
                        x.shape()
                    ),
                ));
            }
            let shared = self.statistics.read().unwrap().clone();
            let (mean, var, count) = match shared {
                Some(s) => s.statistics(x)?,
                None => {
                    let (mean, var) = crate::ops::normalize::batch_statistics(x)?;
                    (mean, var, count)
                }
            };
            self.update_running(&mean, &var, count)?;
            (mean, var)
        } else {
            (self.running_mean.value(), self.running_var.value())
        };
        x.try_batch_norm(
            Some(&mean),
            Some(&var),
            Some(&self.weight.value()),
            Some(&self.bias.value()),
            self.eps,
        )
    }
}

/// Layer normalization over the trailing axes `normalized_shape`, with an
/// elementwise weight (one) and bias (zero), ε = 1e-5, as PyTorch.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let ln = nn::LayerNorm::new(&[4], DType::F64);
/// let y = ln.forward(&Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[1, 4])).unwrap();
/// assert_eq!(y.shape(), &[1, 4]);
/// assert!((y.to_vec::<f64>()[3] - 1.5 / 1.25f64.sqrt()).abs() < 1e-4); // mean 2.5, var 1.25
/// ```
#[derive(crate::nn::Module)]
pub struct LayerNorm {
    /// The scale, of shape `normalized_shape`.
    pub weight: Param,
    /// The shift, of shape `normalized_shape`.
    pub bias: Param,
    /// Added to the variance before its square root.
    #[module(skip)]
    pub eps: f64,
}

impl LayerNorm {
    /// A layer over the trailing axes `normalized_shape`: weight one, bias
    /// zero, ε = 1e-5.
    pub fn new(normalized_shape: &[usize], dtype: DType) -> LayerNorm {
        LayerNorm {
            weight: Param::new(Tensor::ones(normalized_shape, dtype)),
            bias: Param::new(Tensor::zeros(normalized_shape, dtype)),
            eps: 1e-5,
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_layer_norm(
            &self.weight.shape(),
            Some(&self.weight.value()),
            Some(&self.bias.value()),
            self.eps,
        )
    }
}
