//! `particle`: a charged particle fired past two charges, one of which
//! moves with a control `w`; the `w` that makes it land at x = 0, found by
//! the gradient-descent solver. The particle's acceleration is the
//! gradient of the potential (the inner derivative, in the second letter's
//! mode), and the solver's gradient with respect to `w` (the outer one,
//! in the first letter's mode) differentiates through the whole flight,
//! inner gradients included: nested AD. The flight is an eager loop whose
//! end depends on the values (until the particle would cross y = 0).

use super::nested::{argmin, gradient, Mode};
use super::{finite, number, unknown};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{Result, Tensor};
use serde_json::Value;

/// Where the particle lands (x_f²), for charges at (10, 10 − w) and (10, 0).
fn miss(inner: Mode, w: &Tensor) -> Result<Tensor> {
    let ten = Tensor::scalar(10.0f64).reshape(&[1]);
    let zero = Tensor::scalar(0.0f64).reshape(&[1]);
    let moving = Tensor::concat(&[&ten, &(10.0 - w)], 0);
    let fixed = Tensor::concat(&[&ten, &zero], 0);
    let potential = |x: &Tensor| -> Result<Tensor> {
        Ok((x - &moving).square().sum().sqrt().reciprocal()
            + (x - &fixed).square().sum().sqrt().reciprocal())
    };
    let dt = 0.1;
    let mut x = Tensor::from_vec(vec![0.0f64, 8.0], &[2]);
    let mut velocity = Tensor::from_vec(vec![0.75f64, 0.0], &[2]);
    loop {
        let acceleration = -gradient(inner, &potential, &x)?;
        let next = &x + &(&velocity * dt);
        if next.narrow(0, 1, 1).item() > 0.0 {
            x = next;
            velocity = &velocity + &(acceleration * dt);
        } else {
            break;
        }
    }
    let (y, vy) = (x.narrow(0, 1, 1), velocity.narrow(0, 1, 1));
    let t_final = -(y / vy);
    let landing = &x + &(&velocity * &t_final);
    Ok(landing.narrow(0, 0, 1).square().sum())
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> std::result::Result<Answer, String> {
    let (outer, inner) = Mode::pair(function).ok_or_else(|| unknown("particle", function))?;
    let w0 = Tensor::from_vec(vec![number(input, "w")?], &[1]);
    measure(
        runs,
        || argmin(outer, &|w: &Tensor| miss(inner, w), &w0),
        |w| finite(w.to_vec::<f64>()[0]),
    )
}
