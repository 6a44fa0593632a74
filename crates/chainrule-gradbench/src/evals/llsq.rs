//! `llsq`: linear least squares, `½ Σ_i (s_i − Σ_j x_j t_i^j)²` with
//! `t_i = −1 + 2i/(n−1)` and `s_i = sign(t_i)`; its gradient by reverse
//! mode.

use super::{count, finite, flat, unknown, vector};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use serde_json::Value;

/// The powers `t_i^j` (n × m) and the signs `s_i` (n): data of the
/// problem, not of `x`, computed in each timed call as the reference does.
fn design(n: usize, m: usize) -> (Tensor, Tensor) {
    let mut powers = Vec::with_capacity(n * m);
    let mut signs = Vec::with_capacity(n);
    for i in 0..n {
        let t = if n > 1 {
            -1.0 + 2.0 * i as f64 / (n as f64 - 1.0)
        } else {
            -1.0
        };
        let mut p = 1.0;
        for _ in 0..m {
            powers.push(p);
            p *= t;
        }
        signs.push(if t > 0.0 {
            1.0
        } else if t < 0.0 {
            -1.0
        } else {
            0.0
        });
    }
    (
        Tensor::from_vec(powers, &[n, m]),
        Tensor::from_vec(signs, &[n]),
    )
}

fn llsq(x: &Tensor, n: usize) -> Tensor {
    let (powers, signs) = design(n, x.shape()[0]);
    (signs - powers.matmul(x)).square().sum() * 0.5
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let x = vector(input, "x")?;
    let n = count(input, "n")?;
    match function {
        "primal" => measure(runs, || Ok(llsq(&x, n)), |y| finite(y.item())),
        "gradient" => measure(runs, || func::grad(|x| llsq(x, n), &x), |g| flat(&g)),
        _ => Err(unknown("llsq", function)),
    }
}
