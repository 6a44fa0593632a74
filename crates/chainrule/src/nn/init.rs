//! Standard weight initializations, from a seeded generator, for a weight of
//! shape `(fan_in, fan_out)`.

use crate::{DType, Tensor};

/// How a [`super::Linear`] layer's weight is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Glorot & Bengio (2010): uniform in `±sqrt(6 / (fan_in + fan_out))`.
    /// Suits tanh and sigmoid.
    XavierUniform,
    /// Glorot normal: standard deviation `sqrt(2 / (fan_in + fan_out))`.
    XavierNormal,
    /// He et al. (2015): uniform in `±sqrt(6 / fan_in)`. Suits ReLU.
    KaimingUniform,
    /// He normal: standard deviation `sqrt(2 / fan_in)`.
    KaimingNormal,
}

impl Init {
    /// A `(fan_in, fan_out)` weight drawn with this scheme.
    pub fn weight(self, fan_in: usize, fan_out: usize, seed: u64, dtype: DType) -> Tensor {
        let shape = [fan_in, fan_out];
        let (fi, fo) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        match self {
            Init::XavierUniform => {
                let a = (6.0 / (fi + fo)).sqrt();
                Tensor::rand_uniform(&shape, -a, a, seed, dtype)
            }
            Init::XavierNormal => {
                Tensor::rand_normal(&shape, 0.0, (2.0 / (fi + fo)).sqrt(), seed, dtype)
            }
            Init::KaimingUniform => {
                let a = (6.0 / fi).sqrt();
                Tensor::rand_uniform(&shape, -a, a, seed, dtype)
            }
            Init::KaimingNormal => Tensor::rand_normal(&shape, 0.0, (2.0 / fi).sqrt(), seed, dtype),
        }
    }
}
