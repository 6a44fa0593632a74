//! `ba`: bundle adjustment. The input (one camera, point, weight and
//! feature, with the counts n, m, p) is expanded to the full problem
//! (`chainrule_adbench::ba::BaInput::repeated`); the objective is every
//! residual, the Jacobian the sparse one: two reverse sweeps over the 15
//! parameters each reprojection pair reads
//! (`chainrule_adbench::ba::reprojection_blocks`, compiled once per message
//! with `func::jit`: the forward pass shared, its elementwise chains fused,
//! the columns read as strided views), then one for the diagonal weight
//! block. Both are reported in the digest the eval checks.

use super::{count, field, finite, number, numbers, unknown};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use chainrule_adbench::ba::{gathered, reprojection_blocks, residuals, sparse_jacobian, BaInput};
use serde_json::{json, Value};

/// A list field of exactly `len` numbers.
fn exactly(input: &Value, key: &str, len: usize) -> Result<Vec<f64>, String> {
    let v = numbers(field(input, key)?, key)?;
    if v.len() != len {
        return Err(format!("`{key}` has {} numbers, expected {len}", v.len()));
    }
    Ok(v)
}

/// The first 30 entries of a CSR array and its last one.
fn digest<T: Copy>(v: &[T]) -> Vec<T> {
    let mut d: Vec<T> = v.iter().take(30).copied().collect();
    d.extend(v.last());
    d
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let (n, m, p) = (count(input, "n")?, count(input, "m")?, count(input, "p")?);
    if n == 0 || m == 0 || p == 0 {
        return Err("ba needs at least one camera, point and observation".into());
    }
    let problem = BaInput::repeated(
        n,
        m,
        p,
        &exactly(input, "cam", 11)?,
        &exactly(input, "x", 3)?,
        number(input, "w")?,
        &exactly(input, "feat", 2)?,
    );
    match function {
        "objective" => measure(
            runs,
            || Ok(residuals(&problem)),
            |(reproj, w_err)| {
                let r = reproj.to_vec::<f64>();
                let w = w_err.to_vec::<f64>();
                Ok(json!({
                    "reproj_error": {"elements": [finite(r[0])?, finite(r[1])?], "repeated": p},
                    "w_err": {"element": finite(w[0])?, "repeated": p},
                }))
            },
        ),
        "jacobian" => {
            let blocks = func::jit(|x: &[Tensor]| reprojection_blocks(&x[0], &x[1]));
            let jacobian = || {
                let g = gathered(&problem);
                let b = blocks.call(&[g, problem.features.clone()])?;
                sparse_jacobian(&problem, &b)
            };
            measure(runs, jacobian, |j| {
                let vals: Result<Vec<Value>, String> =
                    digest(&j.values).into_iter().map(finite).collect();
                Ok(json!({
                    "rows": digest(&j.row_ptr),
                    "cols": digest(&j.col_idx),
                    "vals": vals?,
                }))
            })
        }
        _ => Err(unknown("ba", function)),
    }
}
