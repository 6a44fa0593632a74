//! `ode`: `y' = F(y)` with `F(y)_0 = x_0`, `F(y)_i = x_i y_{i−1}`, from
//! `y(0) = 0` to `t = 2` by `s` classical Runge–Kutta steps; the gradient of
//! the last component of `y(2)` with respect to `x` by reverse mode through
//! the whole integration.

use super::{count, flat, unknown, vector};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, DType, Tensor};
use serde_json::Value;

/// `y(2)` for parameters `x`, in `s` steps.
fn solve(x: &Tensor, s: usize) -> Tensor {
    let n = x.shape()[0];
    // F(y) = x ⊙ (1, y_0, …, y_{n−2}): the previous component, with 1 in
    // front so that F(y)_0 = x_0.
    let one = Tensor::ones(&[1], DType::F64);
    let f = |y: &Tensor| x * &Tensor::concat(&[&one, &y.narrow(0, 0, n - 1)], 0);
    let h = 2.0 / s as f64;
    let mut y = Tensor::zeros(&[n], DType::F64);
    for _ in 0..s {
        let k1 = f(&y);
        let k2 = f(&(&y + &(&k1 * (h / 2.0))));
        let k3 = f(&(&y + &(&k2 * (h / 2.0))));
        let k4 = f(&(&y + &(&k3 * h)));
        y = &y + &((k1 + (k2 + k3) * 2.0 + k4) * (h / 6.0));
    }
    y
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let x = vector(input, "x")?;
    let s = count(input, "s")?;
    if x.numel() == 0 || s == 0 {
        return Err("ode needs n ≥ 1 and s ≥ 1".into());
    }
    let n = x.numel();
    // Both compiled once per message (`jit(grad(f))` as a JAX user writes
    // it): the s steps unroll into one graph whose elementwise chains fuse.
    let primal = func::jit(|x: &[Tensor]| solve(&x[0], s));
    let gradient =
        func::jit(|x: &[Tensor]| func::grad(|x| solve(x, s).narrow(0, n - 1, 1).sum(), &x[0]));
    let x = [x];
    match function {
        "primal" => measure(runs, || primal.call(&x), |y| flat(&y)),
        "gradient" => measure(runs, || gradient.call(&x), |g| flat(&g)),
        _ => Err(unknown("ode", function)),
    }
}
