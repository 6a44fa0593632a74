//! `lse`: log-sum-exp, `a + log Σ exp(x_i − a)` with `a = max x`, built
//! from max, exp, sum and log (not a library log-sum-exp); its gradient by
//! reverse mode.

use super::{finite, flat, unknown, vector};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use serde_json::Value;

fn lse(x: &Tensor) -> Tensor {
    // The shift is a constant of the formula: no derivative flows through
    // the max (its contributions cancel), as in the reference.
    let a = x.max().detach();
    (x - &a).exp().sum().log() + a
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let x = vector(input, "x")?;
    match function {
        "primal" => measure(runs, || Ok(lse(&x)), |y| finite(y.item())),
        "gradient" => measure(runs, || func::grad(lse, &x), |g| flat(&g)),
        _ => Err(unknown("lse", function)),
    }
}
