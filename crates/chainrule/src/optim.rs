//! Optimizers (SGD with momentum and weight decay, Adam, AdamW) and
//! learning-rate schedules. An optimizer reads each parameter's gradient
//! (filled by `backward`) and replaces its value; updates record nothing.

use crate::autograd::no_grad;
use crate::error::Result;
use crate::nn::Param;
use crate::ops::add_scaled_into;
use crate::Tensor;

/// What every optimizer does.
pub trait Optimizer {
    /// Updates every parameter that has a gradient.
    fn step(&mut self) -> Result<()>;
    /// Clears the parameters' gradients (before the next backward).
    fn zero_grad(&self);
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
}

/// Stochastic gradient descent: `v ← μ v + (g + λ p)`, `p ← p − lr v`
/// (PyTorch's form; `μ = 0` is plain SGD). With `nesterov`, the step uses
/// `g + μ v` instead of `v`.
pub struct Sgd {
    params: Vec<Param>,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    velocity: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(params: Vec<Param>, lr: f64) -> Sgd {
        let n = params.len();
        Sgd {
            params,
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            velocity: vec![None; n],
        }
    }

    pub fn momentum(mut self, momentum: f64) -> Sgd {
        self.momentum = momentum;
        self
    }

    pub fn weight_decay(mut self, weight_decay: f64) -> Sgd {
        self.weight_decay = weight_decay;
        self
    }

    pub fn nesterov(mut self, nesterov: bool) -> Sgd {
        self.nesterov = nesterov;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        no_grad(|| {
            for (p, v) in self.params.iter().zip(&mut self.velocity) {
                let Some(mut g) = p.grad() else { continue };
                if self.weight_decay == 0.0 && self.momentum == 0.0 {
                    // Plain SGD: one fused pass, in place when possible.
                    p.update(|value| add_scaled_into(value, -self.lr, &g));
                    continue;
                }
                let value = p.value();
                if self.weight_decay != 0.0 {
                    g = &g + &(&value * self.weight_decay);
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
}

/// Adam (Kingma & Ba, 2015) with bias correction; `decoupled` weight decay
/// makes it AdamW (Loshchilov & Hutter, 2019), which shrinks the weights
/// directly instead of adding `λ p` to the gradient.
pub struct Adam {
    params: Vec<Param>,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    decoupled: bool,
    step: u64,
    moments: Vec<Option<(Tensor, Tensor)>>,
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
        }
    }

    /// AdamW: decoupled weight decay (default 0.01, as in PyTorch).
    pub fn adamw(params: Vec<Param>, lr: f64) -> Adam {
        Adam {
            weight_decay: 0.01,
            decoupled: true,
            ..Adam::new(params, lr)
        }
    }

    pub fn betas(mut self, beta1: f64, beta2: f64) -> Adam {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    pub fn weight_decay(mut self, weight_decay: f64) -> Adam {
        self.weight_decay = weight_decay;
        self
    }
}

impl Optimizer for Adam {
    fn step(&mut self) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        no_grad(|| {
            for (p, moments) in self.params.iter().zip(&mut self.moments) {
                let Some(mut g) = p.grad() else { continue };
                let mut value = p.value();
                if self.weight_decay != 0.0 {
                    if self.decoupled {
                        value = &value * (1.0 - self.lr * self.weight_decay);
                    } else {
                        g = &g + &(&value * self.weight_decay);
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
}

/// A learning rate as a function of the epoch (0-based).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        step_size: usize,
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_lr` over `epochs`.
    Cosine {
        epochs: usize,
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
