//! `llsq`: linear least squares, `½ Σ_i (s_i − Σ_j x_j t_i^j)²` with
//! `t_i = −1 + 2i/(n−1)` and `s_i = sign(t_i)`; its gradient by reverse
//! mode.
//!
//! The polynomial `Σ_j x_j t^j` is evaluated by Horner's rule, m
//! multiply-adds per point, and both functions are compiled (`func::jit`):
//! the m steps over the n points and their VJP fuse into a few loops with
//! the running values in registers, where the reference's n×m table of
//! powers would be written and read twice.

use super::{count, finite, flat, unknown, vector};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use serde_json::Value;

/// The points `t_i` (n): data of the problem, not of `x`, computed in each
/// timed call as the reference does.
fn points(n: usize) -> Tensor {
    let t = |i: usize| match n {
        1 => -1.0,
        _ => -1.0 + 2.0 * i as f64 / (n as f64 - 1.0),
    };
    Tensor::from_vec((0..n).map(t).collect(), &[n])
}

fn llsq(x: &Tensor, t: &Tensor) -> Tensor {
    let m = x.shape()[0];
    let mut p = x.narrow(0, m - 1, 1);
    for j in (0..m - 1).rev() {
        p = p * t + x.narrow(0, j, 1);
    }
    (t.sign() - p).square().sum() * 0.5
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let x = vector(input, "x")?;
    let n = count(input, "n")?;
    if x.numel() == 0 || n == 0 {
        return Err("llsq needs m ≥ 1 and n ≥ 1".into());
    }
    let primal = func::jit(|a: &[Tensor]| llsq(&a[0], &a[1]));
    let gradient = func::jit(|a: &[Tensor]| func::grad(|x| llsq(x, &a[1]), &a[0]));
    let inputs = || [x.clone(), points(n)];
    match function {
        "primal" => measure(runs, || primal.call(&inputs()), |y| finite(y.item())),
        "gradient" => measure(runs, || gradient.call(&inputs()), |g| flat(&g)),
        _ => Err(unknown("llsq", function)),
    }
}
