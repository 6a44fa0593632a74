//! Neural-network building blocks: parameters, modules (layers), standard
//! initializations, losses, saving and loading, and gradient checkpointing.
//!
//! ```
//! use chainrule::nn::{self, Module, Parameters};
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

mod attention;
mod checkpoint;
mod conv;
pub mod init;
pub(crate) mod io;
mod layers;
mod loss;
mod norm;
mod recurrent;

pub use crate::ops::affine::Activation;
pub use attention::{AttentionMask, Embedding, MultiheadAttention, TransformerBlock};
pub use chainrule_derive::Module;
pub use checkpoint::{checkpoint, Checkpointed};
pub use conv::{AdaptiveAvgPool2d, AvgPool2d, Conv, Conv1d, Conv2d, Flatten, MaxPool2d};
pub use io::{
    load_into, load_state, load_tensors, parse_tensors, plan_state, save, save_tensors, state,
    StatePlan,
};
pub use layers::{mlp, Dropout, Gelu, Linear, Relu, Sequential, Sigmoid, Tanh};
pub use loss::{accuracy, bce_with_logits_loss, cross_entropy_loss, mse_loss};
pub use norm::{BatchNorm, BatchNorm1d, BatchNorm2d, BatchStatistics, LayerNorm};
pub use recurrent::{Gates, Gru, GruCell, Lstm, LstmCell};

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// A slot's new value keeps its shape and dtype.
fn same_kind(op: &'static str, old: &Tensor, new: &Tensor) -> Result<()> {
    if new.shape() == old.shape() && new.dtype() == old.dtype() {
        return Ok(());
    }
    Err(Error::shapes_detail(
        op,
        old.shape(),
        new.shape(),
        format!(
            "a parameter or buffer keeps its shape and dtype ({:?} vs {:?})",
            old.dtype(),
            new.dtype()
        ),
    ))
}

/// A trainable tensor shared between a module and its optimizer.
///
/// It holds a leaf requiring gradients (unless frozen). `backward` fills
/// that leaf's gradient, and an optimizer replaces the value with an
/// updated leaf. Clones share the slot.
#[derive(Clone)]
pub struct Param(Arc<ParamSlot>);

struct ParamSlot {
    value: RwLock<Tensor>,
    frozen: AtomicBool,
}

impl Param {
    /// A parameter holding `value` as a fresh leaf requiring gradients.
    pub fn new(value: Tensor) -> Param {
        Param(Arc::new(ParamSlot {
            value: RwLock::new(value.detach().requires_grad()),
            frozen: AtomicBool::new(false),
        }))
    }

    /// The current value: a leaf whose `grad` backward fills.
    pub fn value(&self) -> Tensor {
        self.0.value.read().unwrap().clone()
    }

    /// The gradient accumulated on the current value, if any.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.value.read().unwrap().grad()
    }

    /// Clears the gradient accumulated on the current value.
    pub fn zero_grad(&self) {
        self.0.value.read().unwrap().zero_grad();
    }

    /// Replaces the accumulated gradient (see [`Tensor::set_grad`]).
    pub fn set_grad(&self, g: Option<Tensor>) -> Result<()> {
        self.0.value.read().unwrap().set_grad(g)
    }

    /// Whether two handles share one parameter.
    pub fn same(&self, other: &Param) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether the parameter is frozen (see [`Param::set_frozen`]).
    pub fn is_frozen(&self) -> bool {
        self.0.frozen.load(Ordering::Relaxed)
    }

    /// A frozen parameter is a constant: backward gives it no gradient, so
    /// optimizers leave it alone (as `requires_grad_(False)` in PyTorch).
    pub fn set_frozen(&self, frozen: bool) {
        let mut slot = self.0.value.write().unwrap();
        self.0.frozen.store(frozen, Ordering::Relaxed);
        *slot = self.leaf(&slot);
    }

    /// `value` as this parameter's leaf: requiring gradients unless frozen.
    fn leaf(&self, value: &Tensor) -> Tensor {
        let value = value.detach();
        if self.is_frozen() {
            value
        } else {
            value.requires_grad()
        }
    }

    /// Replaces the value (a fresh leaf with no gradient), keeping its shape
    /// and dtype.
    pub fn set(&self, value: &Tensor) -> Result<()> {
        let mut slot = self.0.value.write().unwrap();
        same_kind("Param::set", &slot, value)?;
        *slot = self.leaf(value);
        Ok(())
    }

    /// Replaces the value by `f(value)` (same shape and dtype), handing `f`
    /// the value detached and, when nothing else holds it, as the only
    /// reference to its buffer, so that `f` can update it in place.
    pub(crate) fn update(&self, f: impl FnOnce(Tensor) -> Tensor) {
        let mut slot = self.0.value.write().unwrap();
        let old = std::mem::replace(&mut *slot, Tensor::scalar(0.0f32));
        let shape = old.shape().to_vec();
        let raw = old.detach();
        drop(old);
        let new = f(raw);
        debug_assert_eq!(new.shape(), shape.as_slice());
        *slot = self.leaf(&new);
    }

    /// The value's shape.
    pub fn shape(&self) -> Vec<usize> {
        self.0.value.read().unwrap().shape().to_vec()
    }

    /// The number of scalars in the value.
    pub fn numel(&self) -> usize {
        self.0.value.read().unwrap().numel()
    }

    /// The value's dtype.
    pub fn dtype(&self) -> crate::DType {
        self.0.value.read().unwrap().dtype()
    }
}

/// A layer or model: a differentiable function of its input and of its
/// [`Parameters`]. `#[derive(Module)]` writes the [`Parameters`] half from a
/// struct's fields; `forward` is the user's.
pub trait Module: Parameters {
    /// The output for a batch `x` (errors name the op and the shapes).
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// The activation this layer is, if it is one (see
    /// [`Module::forward_fused`]).
    fn as_activation(&self) -> Option<Activation> {
        None
    }

    /// `act` of this layer's output, when the layer can run the two
    /// together ([`Linear`]: [`Tensor::try_affine`], one op for the
    /// activations whose derivative their output gives); `None` otherwise.
    /// A [`Sequential`] runs a layer and the activation after it so.
    fn forward_fused(&self, _x: &Tensor, _act: Activation) -> Option<Result<Tensor>> {
        None
    }
}

/// What a model holds besides its computation: trainable parameters,
/// buffers (running statistics, saved with the weights but not trained),
/// and the train/eval switch. `#[derive(Module)]` implements it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no parameters to collect",
    note = "a field of a #[derive(Module)] struct must be a layer, a Param, a Buffer or a Training flag (or an Option, Vec or Box of one); mark other fields #[module(skip)]"
)]
pub trait Parameters: Send + Sync {
    /// Every parameter with a dotted name (`"0.weight"`), in a fixed order.
    fn named_params(&self) -> Vec<(String, Param)>;

    /// Every buffer with a dotted name (`"bn.running_mean"`).
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        Vec::new()
    }

    /// Switches between training and evaluation behaviour (dropout, batch
    /// normalization).
    fn set_training(&self, _training: bool) {}

    /// The parameters, in the order of [`Parameters::named_params`].
    fn params(&self) -> Vec<Param> {
        self.named_params().into_iter().map(|(_, p)| p).collect()
    }

    /// The parameters an optimizer should update (not frozen).
    fn trainable_params(&self) -> Vec<Param> {
        self.params()
            .into_iter()
            .filter(|p| !p.is_frozen())
            .collect()
    }

    /// The number of scalars in the parameters.
    fn num_params(&self) -> usize {
        self.params().iter().map(Param::numel).sum()
    }

    /// The number of scalars in the parameters that are not frozen.
    fn num_trainable_params(&self) -> usize {
        self.trainable_params().iter().map(Param::numel).sum()
    }

    /// Freezes every parameter: backward computes no gradient for it and
    /// optimizers leave it as it is.
    fn freeze(&self) {
        self.params().iter().for_each(|p| p.set_frozen(true));
    }

    /// Unfreezes every parameter, so that backward computes its gradient again.
    fn unfreeze(&self) {
        self.params().iter().for_each(|p| p.set_frozen(false));
    }
}

/// `items` renamed `"prefix.name"` (just one of them when the other is
/// empty) onto `out`: how `#[derive(Module)]` names a field's entries.
#[doc(hidden)]
pub fn prefixed<T>(out: &mut Vec<(String, T)>, prefix: &str, items: Vec<(String, T)>) {
    out.extend(items.into_iter().map(|(name, item)| {
        let name = match (prefix.is_empty(), name.is_empty()) {
            (_, true) => prefix.to_string(),
            (true, false) => name,
            (false, false) => format!("{prefix}.{name}"),
        };
        (name, item)
    }));
}

impl Parameters for Param {
    fn named_params(&self) -> Vec<(String, Param)> {
        vec![(String::new(), self.clone())]
    }
}

/// A tensor a module keeps and updates outside of gradient descent
/// (BatchNorm's running statistics): saved and loaded with the weights,
/// never trained. Clones share the slot.
#[derive(Clone)]
pub struct Buffer(Arc<RwLock<Tensor>>);

impl Buffer {
    /// A buffer holding `value`, detached from any graph.
    pub fn new(value: Tensor) -> Buffer {
        Buffer(Arc::new(RwLock::new(value.detach())))
    }

    /// The current value.
    pub fn value(&self) -> Tensor {
        self.0.read().unwrap().clone()
    }

    /// Replaces the value, keeping its shape and dtype.
    pub fn set(&self, value: &Tensor) -> Result<()> {
        let mut slot = self.0.write().unwrap();
        same_kind("Buffer::set", &slot, value)?;
        *slot = value.detach();
        Ok(())
    }
}

impl Parameters for Buffer {
    fn named_params(&self) -> Vec<(String, Param)> {
        Vec::new()
    }
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        vec![(String::new(), self.clone())]
    }
}

/// The train/eval flag of a module whose `forward` behaves differently in
/// training (starts in training mode, as in PyTorch).
#[derive(Debug)]
pub struct Training(AtomicBool);

impl Default for Training {
    fn default() -> Self {
        Training(AtomicBool::new(true))
    }
}

impl Training {
    /// Whether the module is in training mode.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Parameters for Training {
    fn named_params(&self) -> Vec<(String, Param)> {
        Vec::new()
    }
    fn set_training(&self, training: bool) {
        self.0.store(training, Ordering::Relaxed)
    }
}

impl<T: Parameters + ?Sized> Parameters for Box<T> {
    fn named_params(&self) -> Vec<(String, Param)> {
        (**self).named_params()
    }
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        (**self).named_buffers()
    }
    fn set_training(&self, training: bool) {
        (**self).set_training(training)
    }
}

impl<T: Parameters> Parameters for Option<T> {
    fn named_params(&self) -> Vec<(String, Param)> {
        self.iter().flat_map(T::named_params).collect()
    }
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        self.iter().flat_map(T::named_buffers).collect()
    }
    fn set_training(&self, training: bool) {
        self.iter().for_each(|m| m.set_training(training))
    }
}

/// Entries named by position: `"0.weight"`, `"1.weight"`…
impl<T: Parameters> Parameters for Vec<T> {
    fn named_params(&self) -> Vec<(String, Param)> {
        let mut out = Vec::new();
        for (i, m) in self.iter().enumerate() {
            prefixed(&mut out, &i.to_string(), m.named_params());
        }
        out
    }
    fn named_buffers(&self) -> Vec<(String, Buffer)> {
        let mut out = Vec::new();
        for (i, m) in self.iter().enumerate() {
            prefixed(&mut out, &i.to_string(), m.named_buffers());
        }
        out
    }
    fn set_training(&self, training: bool) {
        self.iter().for_each(|m| m.set_training(training))
    }
}
