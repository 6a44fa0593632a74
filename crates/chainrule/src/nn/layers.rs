//! Layers: Linear, the activations, Dropout, Sequential and an MLP builder.

use super::init::Init;
use super::Activation;
use super::{Module, Param, Parameters, Training};
use crate::error::{Error, Result};
use crate::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Mutex;

/// `y = x W + b` with `W` of shape `(in, out)` and `b` of shape `(out,)`.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::Tensor;
/// let w = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
/// let layer = nn::Linear::from_tensors(w, Tensor::from_vec(vec![0.5f64, 0.0, -1.0], &[3]));
/// let y = layer.forward(&Tensor::from_vec(vec![1.0f64, 1.0], &[1, 2])).unwrap();
/// assert_eq!(y.shape(), &[1, 3]);
/// assert_eq!(y.to_vec::<f64>(), [5.5, 7.0, 8.0]);
/// ```
#[derive(crate::nn::Module)]
pub struct Linear {
    /// The weight `W`, `(in, out)`.
    pub weight: Param,
    /// The bias `b`, `(out,)`.
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

    /// PyTorch's default: weight and bias uniform in `±1/√in`.
    pub fn with_default_init(fan_in: usize, fan_out: usize, seed: u64, dtype: DType) -> Linear {
        use super::conv::default_uniform;
        Linear::from_tensors(
            default_uniform(&[fan_in, fan_out], fan_in, seed, dtype),
            default_uniform(&[fan_out], fan_in, seed ^ 0xB1A5, dtype),
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
        x.try_affine(&self.weight.value(), &self.bias.value(), None)
    }

    fn forward_fused(&self, x: &Tensor, act: Activation) -> Option<Result<Tensor>> {
        Some(x.try_affine(&self.weight.value(), &self.bias.value(), Some(act)))
    }
}

macro_rules! activation {
    ($(#[$meta:meta])* $name:ident, act: $act:expr, $x:ident => $body:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, $x: &Tensor) -> Result<Tensor> {
                Ok($body)
            }

            fn as_activation(&self) -> Option<Activation> {
                Some($act)
            }
        }

        impl Parameters for $name {
            fn named_params(&self) -> Vec<(String, Param)> {
                Vec::new()
            }
        }
    };
}

activation!(
    /// `max(x, 0)`.
    ///
    /// ```
    /// use chainrule::nn::{self, Module};
    /// use chainrule::Tensor;
    /// let y = nn::Relu.forward(&Tensor::from_vec(vec![-1.0f64, 0.0, 2.0], &[3])).unwrap();
    /// assert_eq!(y.shape(), &[3]);
    /// assert_eq!(y.to_vec::<f64>(), [0.0, 0.0, 2.0]);
    /// ```
    Relu, act: Activation::Relu, x => x.relu()
);
activation!(
    /// `tanh(x)`.
    ///
    /// ```
    /// use chainrule::nn::{self, Module};
    /// use chainrule::Tensor;
    /// let y = nn::Tanh.forward(&Tensor::from_vec(vec![0.0f64, 1.0], &[2])).unwrap();
    /// assert_eq!(y.shape(), &[2]);
    /// assert!((y.to_vec::<f64>()[1] - 1.0f64.tanh()).abs() < 1e-12);
    /// ```
    Tanh, act: Activation::Tanh, x => x.tanh()
);
activation!(
    /// `1 / (1 + e^{-x})`.
    ///
    /// ```
    /// use chainrule::nn::{self, Module};
    /// use chainrule::Tensor;
    /// let y = nn::Sigmoid.forward(&Tensor::from_vec(vec![0.0f64, 2.0], &[2])).unwrap();
    /// assert_eq!(y.shape(), &[2]);
    /// assert!((y.to_vec::<f64>()[0] - 0.5).abs() < 1e-12);
    /// assert!((y.to_vec::<f64>()[1] - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-12);
    /// ```
    Sigmoid, act: Activation::Sigmoid, x => x.sigmoid()
);
activation!(
    /// GELU, tanh form (Hendrycks & Gimpel; the form GPT-2 and BERT use):
    /// `x/2 · (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    ///
    /// ```
    /// use chainrule::nn::{self, Module};
    /// use chainrule::Tensor;
    /// let y = nn::Gelu.forward(&Tensor::from_vec(vec![0.0f64, 1.0], &[2])).unwrap();
    /// let at_one = 0.5 * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * 1.044715f64).tanh());
    /// assert_eq!(y.shape(), &[2]);
    /// assert!((y.to_vec::<f64>()[1] - at_one).abs() < 1e-12);
    /// ```
    Gelu, act: Activation::Gelu, x => x.gelu_tanh()
);

/// Zeroes each element with probability `p` while training, scaling the rest
/// by `1/(1-p)` (inverted dropout); the identity in evaluation mode.
///
/// ```
/// use chainrule::nn::{self, Module, Parameters};
/// use chainrule::{DType, Tensor};
/// let dropout = nn::Dropout::new(0.5, 0).unwrap();
/// let x = Tensor::ones(&[4], DType::F64);
/// let y = dropout.forward(&x).unwrap();
/// assert_eq!(y.shape(), &[4]);
/// assert!(y.to_vec::<f64>().iter().all(|&v| v == 0.0 || v == 2.0));
/// dropout.set_training(false);
/// assert_eq!(dropout.forward(&x).unwrap().to_vec::<f64>(), [1.0; 4]);
/// ```
#[derive(crate::nn::Module)]
pub struct Dropout {
    #[module(skip)]
    p: f64,
    training: Training,
    #[module(skip)]
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
            training: Training::default(),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !self.training.get() || self.p == 0.0 {
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
}

/// Modules applied in order; parameters are named `"<layer>.<name>"`, the
/// layer by its position or by the name given to [`Sequential::add_named`].
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let model = nn::Sequential::new()
///     .add(nn::Linear::with_default_init(3, 4, 0, DType::F64))
///     .add(nn::Relu)
///     .add(nn::Linear::with_default_init(4, 2, 1, DType::F64));
/// let y = model.forward(&Tensor::zeros(&[5, 3], DType::F64)).unwrap();
/// assert_eq!(y.shape(), &[5, 2]);
/// ```
#[derive(Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Module>)>,
}

impl Sequential {
    /// No layers (the identity).
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a layer (builder style).
    #[allow(clippy::should_implement_trait)] // `add` reads as "add a layer"
    pub fn add(mut self, layer: impl Module + 'static) -> Sequential {
        let name = self.layers.len().to_string();
        self.layers.push((name, Box::new(layer)));
        self
    }

    /// Appends a layer whose parameters are named `"<name>.<param>"`.
    pub fn add_named(mut self, name: &str, layer: impl Module + 'static) -> Sequential {
        self.layers.push((name.to_string(), Box::new(layer)));
        self
    }

    /// The layers' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.layers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    /// The layers in turn; a layer followed by an activation it can fuse
    /// (a [`Linear`] by a [`Relu`], [`Tanh`] or [`Sigmoid`]) runs with it
    /// as one op (see [`Tensor::try_affine`]).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        let mut layers = self.layers.iter().map(|(_, l)| l).peekable();
        while let Some(layer) = layers.next() {
            let act = layers.peek().and_then(|next| next.as_activation());
            h = match act.and_then(|act| layer.forward_fused(&h, act)) {
                Some(fused) => {
                    layers.next();
                    fused?
                }
                None => layer.forward(&h)?,
            };
        }
        Ok(h)
    }
}

impl Parameters for Sequential {
    fn named_params(&self) -> Vec<(String, Param)> {
        let mut out = Vec::new();
        for (name, layer) in &self.layers {
            super::prefixed(&mut out, name, layer.named_params());
        }
        out
    }

    fn named_buffers(&self) -> Vec<(String, super::Buffer)> {
        let mut out = Vec::new();
        for (name, layer) in &self.layers {
            super::prefixed(&mut out, name, layer.named_buffers());
        }
        out
    }

    fn set_training(&self, training: bool) {
        for (_, layer) in &self.layers {
            layer.set_training(training);
        }
    }
}

/// A multi-layer perceptron with layer widths `dims` (input first, output
/// last), `activation` between layers and none after the last. Weights are
/// He-initialized for ReLU/GELU, Glorot otherwise, each layer from its own
/// seed derived from `seed`.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let model = nn::mlp(&[3, 8, 2], nn::Activation::Relu, 0, DType::F64);
/// assert_eq!(model.len(), 3); // Linear, Relu, Linear
/// let y = model.forward(&Tensor::zeros(&[4, 3], DType::F64)).unwrap();
/// assert_eq!(y.shape(), &[4, 2]);
/// ```
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
