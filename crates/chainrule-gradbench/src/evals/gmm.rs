//! `gmm`: the log-posterior of a Gaussian mixture with a Wishart prior
//! (ADBench's objective, `chainrule_adbench::gmm::parts`, with GradBench's
//! signs), and its gradient with respect to α, μ, q and l by reverse mode.

use super::{count, finite, flat, matrix, number, rows, unknown, vector};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use chainrule_adbench::gmm::{gaussian_constant, parts, GmmInput};
use serde_json::{json, Value};

/// GradBench's objective: `data − prior + K·C − N·D/2·ln 2π`.
fn objective(input: &GmmInput, alpha: &Tensor, mu: &Tensor, q: &Tensor, l: &Tensor) -> Tensor {
    let icf = Tensor::concat(&[q, l], 1);
    let p = parts(input, alpha, mu, &icf);
    p.data - p.prior + (input.k as f64 * p.wishart_c + gaussian_constant(input))
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let (d, k, n) = (count(input, "d")?, count(input, "k")?, count(input, "n")?);
    let x = matrix(input, "x")?;
    let alpha = vector(input, "alpha")?;
    let mu = matrix(input, "mu")?;
    let q = matrix(input, "q")?;
    let l = matrix(input, "l")?;
    let expect = |t: &Tensor, shape: &[usize], what: &str| {
        // An empty list of lists reads as (rows, 0).
        if t.shape() == shape || (t.numel() == 0 && shape.iter().product::<usize>() == 0) {
            Ok(t.reshape(shape))
        } else {
            Err(format!(
                "`{what}` has shape {:?}, expected {shape:?}",
                t.shape()
            ))
        }
    };
    let x = expect(&x, &[n, d], "x")?;
    let alpha = expect(&alpha, &[k], "alpha")?;
    let mu = expect(&mu, &[k, d], "mu")?;
    let q = expect(&q, &[k, d], "q")?;
    let l = expect(&l, &[k, d * d.saturating_sub(1) / 2], "l")?;
    let problem = GmmInput {
        d,
        k,
        n,
        alphas: alpha.clone(),
        means: mu.clone(),
        icf: Tensor::concat(&[&q, &l], 1),
        x,
        gamma: number(input, "gamma")?,
        m: number(input, "m")?,
    };
    let params = [alpha, mu, q, l];
    match function {
        "objective" => measure(
            runs,
            || {
                Ok(objective(
                    &problem, &params[0], &params[1], &params[2], &params[3],
                ))
            },
            |y| finite(y.item()),
        ),
        "jacobian" => measure(
            runs,
            || {
                func::grad_n(
                    |p: &[Tensor]| objective(&problem, &p[0], &p[1], &p[2], &p[3]),
                    &params,
                )
            },
            |g| {
                Ok(json!({
                    "alpha": flat(&g[0])?,
                    "mu": rows(&g[1])?,
                    "q": rows(&g[2])?,
                    "l": rows(&g[3])?,
                }))
            },
        ),
        _ => Err(unknown("gmm", function)),
    }
}
