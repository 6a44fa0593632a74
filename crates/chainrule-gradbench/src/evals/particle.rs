//! `particle`: a charged particle fired past two charges, one of which
//! moves with a control `w`; the `w` that makes it land at x = 0, found by
//! the gradient-descent solver. The particle's acceleration is the
//! gradient of the potential (the inner derivative, in the second letter's
//! mode), and the solver's gradient with respect to `w` (the outer one,
//! in the first letter's mode) differentiates through the whole flight,
//! inner gradients included: nested AD. The flight's end depends on the
//! values (until the particle would cross y = 0); it is an eager Rust loop
//! by default, or with `--graph-loops` the graph's
//! `while_loop` (one primitive whose body, inner gradient included, is
//! traced once; reverse mode through it needs a bound on the steps, so an
//! outer reverse derivative uses `while_loop_bounded`).

use super::nested::{argmin, gradient, Mode};
use super::{finite, number, unknown};
use crate::protocol::{measure, Answer, Runs};
use chainrule::control::{while_loop, while_loop_bounded};
use chainrule::{Result, Tensor};
use serde_json::Value;

const DT: f64 = 0.1;

/// Steps the bounded loop may take: the flights of the solve take about
/// 350.
const MOST_STEPS: usize = 1000;

/// How the flight's loop runs.
#[derive(Clone, Copy, Debug)]
pub enum Flight {
    Eager,
    Graph,
}

/// The flight from `(x, velocity)` until the next step would cross y = 0:
/// the last position and velocity above it.
fn fly(
    flight: Flight,
    (outer, inner): (Mode, Mode),
    potential: &dyn Fn(&Tensor) -> Result<Tensor>,
    start: [Tensor; 2],
) -> Result<(Tensor, Tensor)> {
    let step = |x: &Tensor, velocity: &Tensor| -> Result<[Tensor; 2]> {
        let acceleration = -gradient(inner, potential, x)?;
        Ok([x + &(velocity * DT), velocity + &(acceleration * DT)])
    };
    let [mut x, mut velocity] = start;
    match flight {
        Flight::Eager => loop {
            let [next, faster] = step(&x, &velocity)?;
            if next.narrow(0, 1, 1).item() <= 0.0 {
                return Ok((x, velocity));
            }
            (x, velocity) = (next, faster);
        },
        Flight::Graph => {
            let above = |c: &[Tensor]| Ok((&c[0] + &(&c[1] * DT)).narrow(0, 1, 1).gt_scalar(0.0));
            let body = |c: &[Tensor]| Ok(step(&c[0], &c[1])?.to_vec());
            let end = match outer {
                Mode::Forward => while_loop(above, body, &[x, velocity])?,
                Mode::Reverse => while_loop_bounded(above, body, &[x, velocity], MOST_STEPS)?,
            };
            Ok((end[0].clone(), end[1].clone()))
        }
    }
}

/// Where the particle lands (x_f²), for charges at (10, 10 − w) and (10, 0).
fn miss(flight: Flight, modes: (Mode, Mode), w: &Tensor) -> Result<Tensor> {
    let ten = Tensor::scalar(10.0f64).reshape(&[1]);
    let zero = Tensor::scalar(0.0f64).reshape(&[1]);
    let moving = Tensor::concat(&[&ten, &(10.0 - w)], 0);
    let fixed = Tensor::concat(&[&ten, &zero], 0);
    let potential = |x: &Tensor| -> Result<Tensor> {
        Ok((x - &moving).square().sum().sqrt().reciprocal()
            + (x - &fixed).square().sum().sqrt().reciprocal())
    };
    let start = [
        Tensor::from_vec(vec![0.0f64, 8.0], &[2]),
        Tensor::from_vec(vec![0.75f64, 0.0], &[2]),
    ];
    let (x, velocity) = fly(flight, modes, &potential, start)?;
    let (y, vy) = (x.narrow(0, 1, 1), velocity.narrow(0, 1, 1));
    let t_final = -(y / vy);
    let landing = &x + &(&velocity * &t_final);
    Ok(landing.narrow(0, 0, 1).square().sum())
}

pub fn evaluate(
    function: &str,
    input: &Value,
    runs: Runs,
    flight: Flight,
) -> std::result::Result<Answer, String> {
    let modes = Mode::pair(function).ok_or_else(|| unknown("particle", function))?;
    let w0 = Tensor::from_vec(vec![number(input, "w")?], &[1]);
    measure(
        runs,
        || argmin(modes.0, &|w: &Tensor| miss(flight, modes, w), &w0),
        |w| finite(w.to_vec::<f64>()[0]),
    )
}
