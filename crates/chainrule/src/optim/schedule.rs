//! Learning-rate schedules that step once per iteration, as objects that
//! set an optimizer's rate (PyTorch's `LRScheduler`s, and the warmup
//! schedules of transformer training).

use super::Optimizer;
use crate::error::{Error, Result};
use std::f64::consts::PI;

/// What the rate does after warmup, over the remaining steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    /// Stays at the peak.
    Constant,
    /// Straight down, reaching `min_lr` at step `total`.
    Linear,
    /// Half a cosine down, reaching `min_lr` at step `total`.
    Cosine,
    /// PyTorch's `OneCycleLR` (cosine annealing, no warmup of its own): up
    /// from `peak / div_factor` over the first `pct_start` of the steps,
    /// then down to `peak / (div_factor · final_div_factor)`.
    OneCycle {
        /// The fraction of the steps spent going up, in `[0, 1]`.
        pct_start: f64,
        /// The starting rate is `peak / div_factor`.
        div_factor: f64,
        /// The final rate is the starting one divided by this.
        final_div_factor: f64,
    },
}

impl Decay {
    /// `OneCycleLR`'s defaults: 30% up, from peak/25, down to peak/25e4.
    pub fn one_cycle() -> Decay {
        Decay::OneCycle {
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        }
    }
}

/// A per-iteration schedule: a linear warmup to `peak` over the first
/// `warmup` steps (step `t` gets `peak · (t + 1) / warmup`), then `decay`
/// until step `total`. Call [`Scheduler::step`] after
/// each optimizer step; [`Scheduler::lr`] is the rate for the next one.
#[derive(Clone, Debug, PartialEq)]
pub struct Scheduler {
    /// The rate at the end of warmup (for one-cycle, the top of the cycle).
    pub peak: f64,
    /// Steps of linear warmup (0 for one-cycle).
    pub warmup: usize,
    /// Steps in all, warmup included; from then on the rate stays put.
    pub total: usize,
    /// What the rate does after warmup.
    pub decay: Decay,
    /// The rate that linear and cosine decay reach at step `total` (default 0).
    pub min_lr: f64,
    steps: usize,
}

impl Scheduler {
    /// `total` steps in all (warmup included), `warmup ≤ total`.
    pub fn new(peak: f64, warmup: usize, total: usize, decay: Decay) -> Result<Scheduler> {
        if warmup > total || total == 0 || !peak.is_finite() || peak < 0.0 {
            return Err(Error::invalid(
                "Scheduler",
                format!("needs 0 ≤ warmup ({warmup}) ≤ total ({total}), total > 0 and a finite rate ≥ 0 ({peak})"),
            ));
        }
        if let Decay::OneCycle { pct_start, .. } = decay {
            if !(0.0..=1.0).contains(&pct_start) || warmup != 0 {
                return Err(Error::invalid(
                    "Scheduler",
                    "one-cycle has its own warm-up: pct_start in [0, 1] and warmup 0",
                ));
            }
        }
        Ok(Scheduler {
            peak,
            warmup,
            total,
            decay,
            min_lr: 0.0,
            steps: 0,
        })
    }

    /// The rate decays to `min_lr` (default 0) instead.
    pub fn min_lr(mut self, min_lr: f64) -> Scheduler {
        self.min_lr = min_lr;
        self
    }

    /// Steps taken so far (saved in a checkpoint to resume).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Continues from `steps` taken (a resumed run).
    pub fn set_steps(&mut self, steps: usize) {
        self.steps = steps;
    }

    /// The rate of the next step.
    pub fn lr(&self) -> f64 {
        self.lr_at(self.steps)
    }

    /// The rate of step `t` (0-based); from step `total` on it stays at
    /// the end of the schedule.
    pub fn lr_at(&self, t: usize) -> f64 {
        if let Decay::OneCycle {
            pct_start,
            div_factor,
            final_div_factor,
        } = self.decay
        {
            let initial = self.peak / div_factor;
            let last = initial / final_div_factor;
            let up_end = (pct_start * self.total as f64) - 1.0;
            let down_end = self.total as f64 - 1.0;
            let t = t.min(self.total - 1) as f64;
            return if t <= up_end {
                cosine(initial, self.peak, t / up_end.max(f64::MIN_POSITIVE))
            } else {
                cosine(self.peak, last, (t - up_end) / (down_end - up_end))
            };
        }
        if t < self.warmup {
            return self.peak * (t + 1) as f64 / self.warmup as f64;
        }
        let span = (self.total - self.warmup).max(1) as f64;
        let progress = ((t - self.warmup) as f64 / span).min(1.0);
        match self.decay {
            Decay::Constant => self.peak,
            Decay::Linear => self.peak + (self.min_lr - self.peak) * progress,
            Decay::Cosine => cosine(self.peak, self.min_lr, progress),
            Decay::OneCycle { .. } => unreachable!("handled above"),
        }
    }

    /// Sets `optimizer`'s rate for the next step and counts one step.
    pub fn step(&mut self, optimizer: &mut dyn Optimizer) {
        self.steps += 1;
        optimizer.set_lr(self.lr());
    }

    /// Sets `optimizer`'s rate for the current step (call once at the
    /// start, and after resuming).
    pub fn apply(&self, optimizer: &mut dyn Optimizer) {
        optimizer.set_lr(self.lr());
    }
}

/// Cosine annealing from `start` to `end` as `progress` goes 0 → 1.
fn cosine(start: f64, end: f64, progress: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * progress.clamp(0.0, 1.0)).cos() + 1.0)
}
