//! Layers: Linear, the activations, Dropout, Sequential and an MLP builder.

use super::init::Init;
use super::{Module, Param};
use crate::error::{Error, Result};
use crate::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// `y = x W + b` with `W` of shape `(in, out)` and `b` of shape `(out,)`.
pub struct Linear {
    pub weight: Param,
    pub bias: Param,
}

impl Linear {
    /// A layer with its weight drawn by `init` (seeded) and a zero bias.
    pub fn new(fan_in: usize, fan_out: usize, init: Init, seed: u64, dtype: DType) -> Linear {
        Linear::from_tensors(
            init.weight(fan_in, fan_out, seed, dtype),
            Tensor::zeros(&[fan_out], dtype),
        )
    }

    /// A layer with the given weight `(in, out)` and bias `(out,)`.
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Linear {
        Linear {
            weight: Param::new(weight),
            bias: Param::new(bias),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.try_matmul(&self.weight.value())?
            .try_add(&self.bias.value())
    }

    fn named_params(&self) -> Vec<(String, Param)> {
        vec![
            ("weight".into(), self.weight.clone()),
            ("bias".into(), self.bias.clone()),
        ]
    }
}

macro_rules! activation {
    ($(#[$meta:meta])* $name:ident, $x:ident => $body:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, $x: &Tensor) -> Result<Tensor> {
                Ok($body)
            }
            fn named_params(&self) -> Vec<(String, Param)> {
                Vec::new()
            }
        }
    };
}

activation!(
    /// `max(x, 0)`.
    Relu, x => x.relu()
);
activation!(
    /// `tanh(x)`.
    Tanh, x => x.tanh()
);
activation!(
    /// `1 / (1 + e^{-x})`.
    Sigmoid, x => x.sigmoid()
);
activation!(
    /// GELU, tanh form (Hendrycks & Gimpel; the form GPT-2 and BERT use):
    /// `x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    Gelu, x => {
        let inner = (x + &(x.powf(3.0) * 0.044715)) * (2.0 / std::f64::consts::PI).sqrt();
        x * &(inner.tanh() + 1.0) * 0.5
    }
);

/// Zeroes each element with probability `p` while training, scaling the rest
/// by `1/(1-p)` (inverted dropout); the identity in evaluation mode.
pub struct Dropout {
    p: f64,
    training: AtomicBool,
    rng: Mutex<StdRng>,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1)`, masks drawn from `seed`;
    /// starts in training mode.
    pub fn new(p: f64, seed: u64) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(
                "Dropout",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            training: AtomicBool::new(true),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training.load(Ordering::Relaxed) || self.p == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.p;
        let mut rng = self.rng.lock().unwrap();
        let mask: Vec<f64> = (0..x.numel())
            .map(|_| {
                if rng.random::<f64>() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect();
        Ok(x * &Tensor::from_vec(mask, x.shape()).to_dtype(x.dtype()))
    }

    fn named_params(&self) -> Vec<(String, Param)> {
        Vec::new()
    }

    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
}

/// Modules applied in order; parameters are named `"<index>.<name>"`.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a layer (builder style).
    #[allow(clippy::should_implement_trait)] // `add` reads as "add a layer"
    pub fn add(mut self, layer: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        Ok(h)
    }

    fn named_params(&self) -> Vec<(String, Param)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                l.named_params()
                    .into_iter()
                    .map(move |(n, p)| (format!("{i}.{n}"), p))
            })
            .collect()
    }

    fn set_training(&self, training: bool) {
        for l in &self.layers {
            l.set_training(training);
        }
    }
}

/// The hidden activation of [`mlp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    Gelu,
}

/// A multi-layer perceptron with layer widths `dims` (input first, output
/// last), `activation` between layers and none after the last. Weights are
/// He-initialized for ReLU/GELU, Glorot otherwise, each layer from its own
/// seed derived from `seed`.
pub fn mlp(dims: &[usize], activation: Activation, seed: u64, dtype: DType) -> Sequential {
    let init = match activation {
        Activation::Relu | Activation::Gelu => Init::KaimingUniform,
        Activation::Tanh | Activation::Sigmoid => Init::XavierUniform,
    };
    let mut model = Sequential::new();
    for (i, w) in dims.windows(2).enumerate() {
        let layer_seed = seed.wrapping_mul(0x9E37_79B9).wrapping_add(i as u64);
        model = model.add(Linear::new(w[0], w[1], init, layer_seed, dtype));
        if i + 2 < dims.len() {
            model = match activation {
                Activation::Relu => model.add(Relu),
                Activation::Tanh => model.add(Tanh),
                Activation::Sigmoid => model.add(Sigmoid),
                Activation::Gelu => model.add(Gelu),
            };
        }
    }
    model
}
