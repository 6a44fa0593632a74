//! Neural-network building blocks: parameters, modules (layers), standard
//! initializations, losses, saving and loading, and gradient checkpointing.
//!
//! ```
//! use chainrule::nn::{self, Module};
//! use chainrule::optim::{Optimizer, Sgd};
//! use chainrule::{DType, Tensor};
//!
//! let model = nn::mlp(&[2, 16, 1], nn::Activation::Tanh, 0, DType::F64);
//! let mut opt = Sgd::new(model.params(), 0.1);
//! let x = Tensor::from_vec(vec![0.0f64, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[4, 2]);
//! let y = Tensor::from_vec(vec![0.0f64, 1.0, 1.0, 0.0], &[4, 1]);
//! let mut last = f64::INFINITY;
//! for _ in 0..300 {
//!     let loss = nn::mse_loss(&model.forward(&x).unwrap(), &y).unwrap();
//!     opt.zero_grad();
//!     loss.backward().unwrap();
//!     opt.step().unwrap();
//!     last = loss.item();
//! }
//! assert!(last < 0.05, "xor loss {last}");
//! ```

mod checkpoint;
pub mod init;
mod io;
mod layers;
mod loss;

pub use checkpoint::{checkpoint, Checkpointed};
pub use io::{load_into, load_tensors, parse_tensors, save, save_tensors};
pub use layers::{mlp, Activation, Dropout, Gelu, Linear, Relu, Sequential, Sigmoid, Tanh};
pub use loss::{accuracy, bce_with_logits_loss, cross_entropy_loss, mse_loss};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::{Arc, RwLock};

/// A trainable tensor shared between a module and its optimizer.
///
/// It holds a leaf requiring gradients. `backward` fills that leaf's
/// gradient, and an optimizer replaces the value with an updated leaf.
/// Clones share the slot.
#[derive(Clone)]
pub struct Param(Arc<RwLock<Tensor>>);

impl Param {
    pub fn new(value: Tensor) -> Param {
        Param(Arc::new(RwLock::new(value.detach().requires_grad())))
    }

    /// The current value: a leaf whose `grad` backward fills.
    pub fn value(&self) -> Tensor {
        self.0.read().unwrap().clone()
    }

    /// The gradient accumulated on the current value, if any.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.read().unwrap().grad()
    }

    pub fn zero_grad(&self) {
        self.0.read().unwrap().zero_grad();
    }

    /// Replaces the value (a fresh leaf with no gradient), keeping its shape
    /// and dtype.
    pub fn set(&self, value: &Tensor) -> Result<()> {
        let mut slot = self.0.write().unwrap();
        if value.shape() != slot.shape() || value.dtype() != slot.dtype() {
            return Err(Error::shapes_detail(
                "Param::set",
                slot.shape(),
                value.shape(),
                format!(
                    "a parameter keeps its shape and dtype ({:?} vs {:?})",
                    slot.dtype(),
                    value.dtype()
                ),
            ));
        }
        *slot = value.detach().requires_grad();
        Ok(())
    }

    /// Replaces the value by `f(value)` (same shape and dtype), handing `f`
    /// the value detached and, when nothing else holds it, as the only
    /// reference to its buffer, so that `f` can update it in place.
    pub(crate) fn update(&self, f: impl FnOnce(Tensor) -> Tensor) {
        let mut slot = self.0.write().unwrap();
        let old = std::mem::replace(&mut *slot, Tensor::scalar(0.0f32));
        let shape = old.shape().to_vec();
        let raw = old.detach();
        drop(old);
        let new = f(raw);
        debug_assert_eq!(new.shape(), shape.as_slice());
        *slot = new.requires_grad();
    }

    pub fn shape(&self) -> Vec<usize> {
        self.0.read().unwrap().shape().to_vec()
    }

    pub fn numel(&self) -> usize {
        self.0.read().unwrap().numel()
    }
}

/// A layer or model: a differentiable function of its input and its
/// parameters.
pub trait Module: Send + Sync {
    /// The output for a batch `x` (errors name the op and the shapes).
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Every parameter with a dotted name (`"0.weight"`), in a fixed order.
    fn named_params(&self) -> Vec<(String, Param)>;

    /// The parameters, in the order of [`Module::named_params`].
    fn params(&self) -> Vec<Param> {
        self.named_params().into_iter().map(|(_, p)| p).collect()
    }

    /// Switches between training and evaluation behaviour (dropout).
    fn set_training(&self, _training: bool) {}

    /// The number of trainable scalars.
    fn num_params(&self) -> usize {
        self.params().iter().map(Param::numel).sum()
    }
}
