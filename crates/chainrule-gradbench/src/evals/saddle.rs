//! `saddle`: the saddle point of `f(a, b) = ‖a‖² − ‖b‖²` by nested
//! optimization. `g(a) = f(a, argmax_b f(a, ·))`, the inner argmax by the
//! gradient-descent solver with gradients over `b` (second letter's mode);
//! `r1 = argmin g` with gradients over `a` (first letter's mode), which
//! differentiate through the inner solver's iterations; `r2 = argmax_b
//! f(r1, ·)` with the outer mode. The output is `r1 ++ r2`.

use super::nested::{argmax, argmin, Mode};
use super::{field, flat, numbers, unknown};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{Result, Tensor};
use serde_json::Value;

fn f(a: &Tensor, b: &Tensor) -> Tensor {
    a.square().sum() - b.square().sum()
}

fn saddle(outer: Mode, inner: Mode, start: &Tensor) -> Result<Tensor> {
    let g = |a: &Tensor| -> Result<Tensor> {
        let b = argmax(inner, &|b: &Tensor| Ok(f(a, b)), start)?;
        Ok(f(a, &b))
    };
    let r1 = argmin(outer, &g, start)?;
    let r2 = argmax(outer, &|b: &Tensor| Ok(f(&r1, b)), start)?;
    Tensor::try_concat(&[&r1, &r2], 0)
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> std::result::Result<Answer, String> {
    let (outer, inner) = Mode::pair(function).ok_or_else(|| unknown("saddle", function))?;
    let start = numbers(field(input, "start")?, "start")?;
    if start.len() != 2 {
        return Err(format!("`start` has {} numbers, expected 2", start.len()));
    }
    let start = Tensor::from_vec(start, &[2]);
    measure(runs, || saddle(outer, inner, &start), |r| flat(&r))
}
