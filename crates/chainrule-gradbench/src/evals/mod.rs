//! One module per GradBench eval. Each decodes its input into tensors
//! before the timed loop, runs the function as `Runs` asks, and encodes the
//! last output in the layout the eval's reference (`manual`) produces.

mod ba;
mod det;
mod gmm;
mod hello;
mod ht;
mod kmeans;
mod llsq;
mod lse;
mod lstm;
mod nested;
mod ode;
mod particle;
mod saddle;

use crate::protocol::{Answer, Options, Runs};
use chainrule::Tensor;
use serde_json::Value;

/// The modules this tool implements.
pub const MODULES: &[&str] = &[
    "hello", "llsq", "lse", "det", "ode", "gmm", "kmeans", "lstm", "ba", "ht", "particle", "saddle",
];

/// Runs `module.function` on `input`.
pub fn evaluate(
    module: &str,
    function: &str,
    input: &Value,
    options: Options,
) -> Result<Answer, String> {
    if module == "hello" {
        return hello::evaluate(function, input);
    }
    let runs = Runs::of(input)?;
    match module {
        "llsq" => llsq::evaluate(function, input, runs),
        "lse" => lse::evaluate(function, input, runs),
        "det" => det::evaluate(function, input, runs),
        "ode" => ode::evaluate(function, input, runs),
        "gmm" => gmm::evaluate(function, input, runs),
        "kmeans" => kmeans::evaluate(function, input, runs),
        "lstm" => lstm::evaluate(function, input, runs),
        "ba" => ba::evaluate(function, input, runs),
        "ht" => ht::evaluate(function, input, runs),
        "particle" => {
            let flight = match options.graph_loops {
                true => particle::Flight::Graph,
                false => particle::Flight::Eager,
            };
            particle::evaluate(function, input, runs, flight)
        }
        "saddle" => saddle::evaluate(function, input, runs),
        _ => Err(format!("no module `{module}`")),
    }
}

/// The error for a function the module does not have.
fn unknown(module: &str, function: &str) -> String {
    format!("module `{module}` has no function `{function}`")
}

/// `input[key]`, or an error naming it.
fn field<'a>(input: &'a Value, key: &str) -> Result<&'a Value, String> {
    input
        .get(key)
        .ok_or_else(|| format!("the input has no field `{key}`"))
}

/// A non-negative integer field.
fn count(input: &Value, key: &str) -> Result<usize, String> {
    let v = field(input, key)?;
    v.as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| format!("`{key}` must be a non-negative integer, got {v}"))
}

/// A number field.
fn number(input: &Value, key: &str) -> Result<f64, String> {
    let v = field(input, key)?;
    v.as_f64()
        .ok_or_else(|| format!("`{key}` must be a number, got {v}"))
}

/// A list of numbers.
fn numbers(v: &Value, what: &str) -> Result<Vec<f64>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("`{what}` must be a list of numbers"))?;
    list.iter()
        .map(|x| {
            x.as_f64()
                .ok_or_else(|| format!("`{what}` has a non-number entry {x}"))
        })
        .collect()
}

/// A 1-D f64 tensor from a list field.
fn vector(input: &Value, key: &str) -> Result<Tensor, String> {
    let v = numbers(field(input, key)?, key)?;
    let n = v.len();
    Ok(Tensor::from_vec(v, &[n]))
}

/// A 2-D f64 tensor from a list of equal-length lists (`rows × cols`;
/// `cols` given when the list may be empty).
fn matrix(input: &Value, key: &str) -> Result<Tensor, String> {
    let rows = field(input, key)?
        .as_array()
        .ok_or_else(|| format!("`{key}` must be a list of lists"))?;
    let mut flat = Vec::new();
    let mut width = None;
    for (i, row) in rows.iter().enumerate() {
        let row = numbers(row, key)?;
        match width {
            None => width = Some(row.len()),
            Some(w) if w != row.len() => {
                return Err(format!(
                    "`{key}` row {i} has {} entries, row 0 has {w}",
                    row.len()
                ))
            }
            _ => {}
        }
        flat.extend(row);
    }
    let width = width.unwrap_or(0);
    Ok(Tensor::from_vec(flat, &[rows.len(), width]))
}

/// A finite number as JSON (NaN and ∞ are not JSON: an error instead).
fn finite(x: f64) -> Result<Value, String> {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| format!("the result is not finite ({x})"))
}

/// A tensor's values as a flat JSON list.
fn flat(t: &Tensor) -> Result<Value, String> {
    let v: Result<Vec<Value>, String> = t.to_vec::<f64>().into_iter().map(finite).collect();
    Ok(Value::Array(v?))
}

/// A 2-D tensor as a list of rows.
fn rows(t: &Tensor) -> Result<Value, String> {
    let cols = t.shape()[1].max(1);
    let v = t.to_vec::<f64>();
    let rows: Result<Vec<Value>, String> = v
        .chunks(cols)
        .map(|r| {
            Ok(Value::Array(
                r.iter().map(|&x| finite(x)).collect::<Result<_, _>>()?,
            ))
        })
        .collect();
    Ok(Value::Array(rows?))
}
