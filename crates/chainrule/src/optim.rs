//! Optimizers (SGD with momentum and weight decay, Adam, AdamW), gradient
//! clipping, learning-rate schedules, and checkpoints that resume a run
//! exactly. An optimizer reads each parameter's gradient (filled by
//! `backward`) and replaces its value; updates record nothing.

use crate::autograd::no_grad;
use crate::error::{Error, Result};
use crate::nn::{Param, Parameters};
use crate::ops::add_scaled_into;
use crate::{DType, Tensor};
use std::path::Path;

mod schedule;
pub use schedule::{Decay, Scheduler};

/// What every optimizer does.
pub trait Optimizer {
    /// Updates every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// Clears the parameters' gradients (before the next backward).
    fn zero_grad(&self);
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate of the next steps (as a [`Scheduler`] does).
    fn set_lr(&mut self, lr: f64);
    /// Everything a resumed run needs besides the weights (moments, step
    /// count, learning rate), as named tensors; entries are indexed by the
    /// parameters' order.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores [`Optimizer::state`] into an optimizer built over the same
    /// parameters in the same order; on a mismatch nothing changes.
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()>;
}

/// Per-parameter weight decay: `false` for the parameters excluded (by
/// convention biases and normalization weights, see [`no_decay`]).
fn decay_mask(params: &[Param], excluded: &[Param]) -> Vec<bool> {
    params
        .iter()
        .map(|p| !excluded.iter().any(|e| e.same(p)))
        .collect()
}

/// The parameters that by convention get no weight decay: those of at
/// most one axis (biases, normalization scales and shifts, scalars).
pub fn no_decay(model: &dyn Parameters) -> Vec<Param> {
    model
        .params()
        .into_iter()
        .filter(|p| p.shape().len() <= 1)
        .collect()
}

/// Scales the gradients of `params` together so that their global L2 norm
/// is at most `max_norm` (PyTorch's `clip_grad_norm_`, factor
/// `max_norm / (norm + 1e-6)`); returns the norm before clipping.
pub fn clip_grad_norm(params: &[Param], max_norm: f64) -> Result<f64> {
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::invalid(
            "clip_grad_norm",
            format!("max_norm must be non-negative, got {max_norm}"),
        ));
    }
    no_grad(|| {
        let grads: Vec<(&Param, Tensor)> =
            params.iter().filter_map(|p| Some((p, p.grad()?))).collect();
        let total = grads
            .iter()
            .map(|(_, g)| g.to_dtype(DType::F64).square().sum().item())
            .sum::<f64>()
            .sqrt();
        let factor = max_norm / (total + 1e-6);
        if factor < 1.0 {
            for (p, g) in grads {
                p.set_grad(Some(&g * factor))?;
            }
        }
        Ok(total)
    })
}

/// Clamps every gradient entry of `params` to `[-limit, limit]`.
pub fn clip_grad_value(params: &[Param], limit: f64) -> Result<()> {
    if limit.is_nan() || limit < 0.0 {
        return Err(Error::invalid(
            "clip_grad_value",
            format!("the limit must be non-negative, got {limit}"),
        ));
    }
    no_grad(|| {
        for p in params {
            if let Some(g) = p.grad() {
                p.set_grad(Some(g.clamp(-limit, limit)))?;
            }
        }
        Ok(())
    })
}

/// Saves a training checkpoint: the model's parameters and buffers
/// (`model.<name>`), the optimizer's state (`optim.<name>`) and the
/// caller's `extra` tensors (`extra.<name>`: epoch, scheduler step…), in
/// one safetensors file written atomically.
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Parameters,
    optimizer: &dyn Optimizer,
    extra: &[(String, Tensor)],
) -> Result<()> {
    let prefixed = |prefix: &str, items: Vec<(String, Tensor)>| {
        items
            .into_iter()
            .map(move |(n, t)| (format!("{prefix}.{n}"), t))
            .collect::<Vec<_>>()
    };
    let mut all = prefixed("model", crate::nn::state(model));
    all.extend(prefixed("optim", optimizer.state()));
    all.extend(prefixed("extra", extra.to_vec()));
    crate::nn::io::check_unique(path.as_ref(), &all)?;
    crate::nn::save_tensors(path, &all)
}

/// Restores a checkpoint of [`save_checkpoint`] into `model` and
/// `optimizer` and returns its extra tensors. Everything is checked before
/// anything changes (an [`Optimizer::load_state`] changes nothing on error).
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    model: &dyn Parameters,
    optimizer: &mut dyn Optimizer,
) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let mut parts: [Vec<(String, Tensor)>; 3] = Default::default();
    for (name, t) in crate::nn::load_tensors(path)? {
        let part = ["model.", "optim.", "extra."]
            .iter()
            .enumerate()
            .find_map(|(i, p)| Some((i, name.strip_prefix(p)?.to_string())));
        let Some((i, inner)) = part else {
            return Err(Error::file(
                path,
                format!(
                    "tensor `{name}` is not part of a training checkpoint (model., optim., extra.)"
                ),
            ));
        };
        parts[i].push((inner, t));
    }
    let [weights, optim, extra] = parts;
    // Checked in full before anything changes: the model's tensors first,
    // then the optimizer's (which changes nothing when they do not fit).
    let plan = crate::nn::plan_state(model, weights, &path.display().to_string())?;
    optimizer
        .load_state(&optim)
        .map_err(|e| Error::file(path, e.to_string()))?;
    plan.apply();
    Ok(extra)
}

/// `name` of `state`, or an error naming what is missing.
fn entry<'a>(state: &'a [(String, Tensor)], name: &str) -> Result<&'a Tensor> {
    state
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| Error::invalid("load_state", format!("no entry `{name}`")))
}

/// Per-parameter slots (`<what>.<index>`) read back for `params`, each
/// checked against its parameter's shape and dtype.
fn slots(state: &[(String, Tensor)], what: &str, params: &[Param]) -> Result<Vec<Option<Tensor>>> {
    params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = format!("{what}.{i}");
            match state.iter().find(|(n, _)| *n == name) {
                None => Ok(None),
                Some((_, t)) if t.shape() == p.shape().as_slice() && t.dtype() == p.dtype() => {
                    Ok(Some(t.clone()))
                }
                Some((_, t)) => Err(Error::shapes_detail(
                    "load_state",
                    &p.shape(),
                    t.shape(),
                    format!("`{name}` does not match parameter {i}"),
                )),
            }
        })
        .collect()
}

/// The entries of `state` that `known` does not account for.
fn check_known(state: &[(String, Tensor)], known: &[&str]) -> Result<()> {
    match state.iter().find(|(n, _)| {
        !known
            .iter()
            .any(|k| n == k || n.starts_with(&format!("{k}.")))
    }) {
        Some((n, _)) => Err(Error::invalid(
            "load_state",
            format!("unexpected entry `{n}` (a different optimizer's state?)"),
        )),
        None => Ok(()),
    }
}

/// Stochastic gradient descent: `v ← μ v + (g + λ p)`, `p ← p − lr v`
/// (PyTorch's form; `μ = 0` is plain SGD). With `nesterov`, the step uses
/// `g + μ v` instead of `v`.
pub struct Sgd {
    params: Vec<Param>,
    /// The learning rate.
    pub lr: f64,
    /// The momentum μ (0: plain SGD).
    pub momentum: f64,
    /// The weight decay λ, added to the gradient as `λ p` (0: none).
    pub weight_decay: f64,
    /// Whether the step uses Nesterov momentum, `g + μ v`.
    pub nesterov: bool,
    velocity: Vec<Option<Tensor>>,
    decays: Vec<bool>,
}

impl Sgd {
    /// Plain SGD over `params` at rate `lr` (no momentum, no decay).
    pub fn new(params: Vec<Param>, lr: f64) -> Sgd {
        let n = params.len();
        Sgd {
            params,
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            velocity: vec![None; n],
            decays: vec![true; n],
        }
    }

    /// Excludes `params` from weight decay (see [`no_decay`]).
    pub fn no_weight_decay(mut self, params: &[Param]) -> Sgd {
        self.decays = decay_mask(&self.params, params);
        self
    }

    /// Sets the momentum μ.
    pub fn momentum(mut self, momentum: f64) -> Sgd {
        self.momentum = momentum;
        self
    }

    /// Sets the weight decay λ.
    pub fn weight_decay(mut self, weight_decay: f64) -> Sgd {
        self.weight_decay = weight_decay;
        self
    }

    /// Turns Nesterov momentum on or off.
    pub fn nesterov(mut self, nesterov: bool) -> Sgd {
        self.nesterov = nesterov;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        no_grad(|| {
            for ((p, v), &decays) in self.params.iter().zip(&mut self.velocity).zip(&self.decays) {
                let Some(mut g) = p.grad() else { continue };
                let weight_decay = if decays { self.weight_decay } else { 0.0 };
                if weight_decay == 0.0 && self.momentum == 0.0 {
                    // Plain SGD: one fused pass, in place when possible.
                    p.update(|value| add_scaled_into(value, -self.lr, &g));
                    continue;
                }
                let value = p.value();
                if weight_decay != 0.0 {
                    g = &g + &(&value * weight_decay);
                }
                let direction = if self.momentum != 0.0 {
                    let new_v = match v.take() {
                        Some(old) => &old * self.momentum + &g,
                        None => g.clone(),
                    };
                    let d = if self.nesterov {
                        &g + &(&new_v * self.momentum)
                    } else {
                        new_v.clone()
                    };
                    *v = Some(new_v);
                    d
                } else {
                    g
                };
                p.set(&(&value - &(&direction * self.lr)))?;
            }
            Ok(())
        })
    }

    fn zero_grad(&self) {
        self.params.iter().for_each(Param::zero_grad);
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("lr".to_string(), Tensor::scalar(self.lr))];
        for (i, v) in self.velocity.iter().enumerate() {
            if let Some(v) = v {
                out.push((format!("velocity.{i}"), v.detach()));
            }
        }
        out
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        check_known(state, &["lr", "velocity"])?;
        let lr = entry(state, "lr")?.try_item()?;
        let velocity = slots(state, "velocity", &self.params)?;
        self.lr = lr;
        self.velocity = velocity;
        Ok(())
    }
}

/// Adam (Kingma & Ba, 2015) with bias correction; `decoupled` weight decay
/// makes it AdamW (Loshchilov & Hutter, 2019), which shrinks the weights
/// directly instead of adding `λ p` to the gradient.
pub struct Adam {
    params: Vec<Param>,
    /// The learning rate.
    pub lr: f64,
    /// The decay rate β₁ of the first moment (the gradients' running mean).
    pub beta1: f64,
    /// The decay rate β₂ of the second moment (the squared gradients' running mean).
    pub beta2: f64,
    /// Added to `√v̂` in the update's denominator, for numerical stability.
    pub eps: f64,
    /// The weight decay λ (0: none).
    pub weight_decay: f64,
    decoupled: bool,
    step: u64,
    moments: Vec<Option<(Tensor, Tensor)>>,
    decays: Vec<bool>,
}

impl Adam {
    /// Adam with the usual defaults (β = (0.9, 0.999), ε = 1e-8, no decay).
    pub fn new(params: Vec<Param>, lr: f64) -> Adam {
        let n = params.len();
        Adam {
            params,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            step: 0,
            moments: vec![None; n],
            decays: vec![true; n],
        }
    }

    /// Excludes `params` from weight decay (see [`no_decay`]).
    pub fn no_weight_decay(mut self, params: &[Param]) -> Adam {
        self.decays = decay_mask(&self.params, params);
        self
    }

    /// AdamW: decoupled weight decay (default 0.01, as in PyTorch).
    pub fn adamw(params: Vec<Param>, lr: f64) -> Adam {
        Adam {
            weight_decay: 0.01,
            decoupled: true,
            ..Adam::new(params, lr)
        }
    }

    /// Sets the moments' decay rates β₁ and β₂.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Adam {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// Sets the weight decay λ (decoupled for AdamW, added to the gradient for Adam).
    pub fn weight_decay(mut self, weight_decay: f64) -> Adam {
        self.weight_decay = weight_decay;
        self
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        self.step += 1;
        let t = self.step as f64;
        let (b1, b2) = (self.beta1, self.beta2);
        let (c1, c2) = (1.0 - b1.powf(t), 1.0 - b2.powf(t));
        no_grad(|| {
            for ((p, moments), &decays) in
                self.params.iter().zip(&mut self.moments).zip(&self.decays)
            {
                let Some(mut g) = p.grad() else { continue };
                let mut value = p.value();
                let weight_decay = if decays { self.weight_decay } else { 0.0 };
                if weight_decay != 0.0 {
                    if self.decoupled {
                        value = &value * (1.0 - self.lr * weight_decay);
                    } else {
                        g = &g + &(&value * weight_decay);
                    }
                }
                let (m, v) = match moments.take() {
                    Some((m, v)) => (
                        &m * b1 + &(&g * (1.0 - b1)),
                        &v * b2 + &(g.square() * (1.0 - b2)),
                    ),
                    None => (&g * (1.0 - b1), g.square() * (1.0 - b2)),
                };
                let update = (&m * (1.0 / c1)) / ((&v * (1.0 / c2)).sqrt() + self.eps);
                p.set(&(&value - &(update * self.lr)))?;
                *moments = Some((m, v));
            }
            Ok(())
        })
    }

    fn zero_grad(&self) {
        self.params.iter().for_each(Param::zero_grad);
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("lr".to_string(), Tensor::scalar(self.lr)),
            ("step".to_string(), Tensor::scalar(self.step as i64)),
        ];
        for (i, m) in self.moments.iter().enumerate() {
            if let Some((m, v)) = m {
                out.push((format!("m.{i}"), m.detach()));
                out.push((format!("v.{i}"), v.detach()));
            }
        }
        out
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        check_known(state, &["lr", "step", "m", "v"])?;
        let lr = entry(state, "lr")?.try_item()?;
        let step = entry(state, "step")?.try_item()?;
        if !(step >= 0.0 && step.fract() == 0.0) {
            return Err(Error::invalid(
                "load_state",
                format!("step {step} is not a count"),
            ));
        }
        let step = step as u64;
        let m = slots(state, "m", &self.params)?;
        let v = slots(state, "v", &self.params)?;
        let moments = m
            .into_iter()
            .zip(v)
            .map(|pair| match pair {
                (Some(m), Some(v)) => Ok(Some((m, v))),
                (None, None) => Ok(None),
                _ => Err(Error::invalid(
                    "load_state",
                    "a first moment without its second",
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        (self.lr, self.step, self.moments) = (lr, step, moments);
        Ok(())
    }
}

/// A learning rate as a function of the epoch (0-based).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The base rate at every epoch.
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        /// Epochs between two decays (0 counts as 1).
        step_size: usize,
        /// The factor applied at each decay.
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_lr` over `epochs`.
    Cosine {
        /// Epochs to reach `min_lr`, which holds from then on.
        epochs: usize,
        /// The rate at the end of the annealing.
        min_lr: f64,
    },
}

impl Schedule {
    /// The rate for `epoch` given the base rate.
    pub fn lr(self, base: f64, epoch: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => {
                base * gamma.powi((epoch / step_size.max(1)) as i32)
            }
            Schedule::Cosine { epochs, min_lr } => {
                let progress = (epoch as f64 / epochs.max(1) as f64).min(1.0);
                min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}
