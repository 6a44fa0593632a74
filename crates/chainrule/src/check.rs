//! Numerical differentiation (central differences) and `gradcheck`: the note's
//! contrast between autodiff and `(f(x+h) - f(x-h)) / 2h`, made into a test.

use crate::autograd;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::DType;

/// `∂ Σ(f(inputs) ⊙ weight) / ∂ inputs[i]` for every input, by central
/// differences with step `h` (done in f64 whatever the inputs' dtype).
/// `weight` (of the output's shape) makes a non-scalar output a scalar;
/// `None` sums the output.
///
/// ```
/// use chainrule::{check::numerical_grad, Tensor};
/// // Central differences of Σ xᵢ³ approach 3x²
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// let g = numerical_grad(|xs| (&xs[0] * &xs[0] * &xs[0]).sum(), &[x], None, 1e-5);
/// let g = g[0].to_vec::<f64>();
/// assert!((g[0] - 3.0).abs() < 1e-8 && (g[1] - 12.0).abs() < 1e-8);
/// ```
pub fn numerical_grad<F>(f: F, inputs: &[Tensor], weight: Option<&Tensor>, h: f64) -> Vec<Tensor>
where
    F: Fn(&[Tensor]) -> Tensor,
{
    let scalar = |xs: &[Tensor]| -> f64 {
        let y = autograd::no_grad(|| f(xs));
        let y = y.to_dtype(DType::F64);
        match weight {
            Some(w) => (&y * &w.to_dtype(DType::F64)).sum().item(),
            None => y.sum().item(),
        }
    };
    let mut grads = Vec::with_capacity(inputs.len());
    for i in 0..inputs.len() {
        let base = inputs[i].to_vec_f64();
        let mut g = vec![0.0; base.len()];
        for j in 0..base.len() {
            let probe = |delta: f64| {
                let mut v = base.clone();
                v[j] += delta;
                let mut xs = inputs.to_vec();
                xs[i] = Tensor::from_vec(v, inputs[i].shape()).to_dtype(inputs[i].dtype());
                scalar(&xs)
            };
            g[j] = (probe(h) - probe(-h)) / (2.0 * h);
        }
        grads.push(Tensor::from_vec(g, inputs[i].shape()).to_dtype(inputs[i].dtype()));
    }
    grads
}

/// Tolerances and step of [`gradcheck`].
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Step of the central differences, `(f(x+h) - f(x-h)) / 2h`.
    pub h: f64,
    /// Absolute tolerance: an entry passes when `|autodiff - numeric| <= atol + rtol * |numeric|`.
    pub atol: f64,
    /// Relative tolerance, scaled by the numerical gradient's magnitude (see `atol`).
    pub rtol: f64,
}

impl Default for GradcheckOptions {
    /// Suited to f64 inputs.
    fn default() -> Self {
        GradcheckOptions {
            h: 1e-6,
            atol: 1e-6,
            rtol: 1e-5,
        }
    }
}

/// Compares the reverse-mode gradient of `Σ(f(inputs) ⊙ weight)` with
/// central differences. The weight is a fixed pseudo-random tensor, so an
/// error in any single entry of a non-scalar output shows. Returns the
/// largest error found, or an error naming the input and entry that differ.
///
/// ```
/// use chainrule::{check::{gradcheck, GradcheckOptions}, Tensor};
/// let x = Tensor::from_vec(vec![0.3f64, -1.2, 2.0], &[3]);
/// gradcheck(|xs| xs[0].sin() * &xs[0], &[x], GradcheckOptions::default()).unwrap();
/// ```
pub fn gradcheck<F>(f: F, inputs: &[Tensor], opts: GradcheckOptions) -> Result<f64>
where
    F: Fn(&[Tensor]) -> Tensor,
{
    let leaves: Vec<Tensor> = inputs.iter().map(|t| t.detach().requires_grad()).collect();
    let y = f(&leaves);
    let weight = Tensor::rand_uniform(y.shape(), 0.5, 1.5, 0x5eed, y.dtype());
    let scalar = (&y * &weight).sum();
    let refs: Vec<&Tensor> = leaves.iter().collect();
    let analytic = if scalar.needs_grad() {
        autograd::grad(&[&scalar], &refs)?
    } else {
        leaves.iter().map(|l| l.zeros_like()).collect()
    };
    let numeric = numerical_grad(&f, inputs, Some(&weight), opts.h);
    let mut worst = 0.0f64;
    for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
        for (j, (x, y)) in a.to_vec_f64().into_iter().zip(n.to_vec_f64()).enumerate() {
            let err = (x - y).abs();
            let within = err <= opts.atol + opts.rtol * y.abs();
            if !within {
                return Err(Error::invalid(
                    "gradcheck",
                    format!("input {i}, entry {j}: autodiff gives {x}, central differences {y} (error {err:e})"),
                ));
            }
            worst = worst.max(err);
        }
    }
    Ok(worst)
}
