//! `lstm`: the diagonal LSTM's loss on a bit-coded text (ADBench's
//! objective, `chainrule_adbench::lstm::objective`) and its gradient with
//! respect to the main and extra parameters by reverse mode, flattened
//! row-major, main first.

use super::{finite, matrix, unknown};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use chainrule_adbench::lstm::{objective, LstmInput};
use serde_json::Value;

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let main = matrix(input, "main_params")?;
    let extra = matrix(input, "extra_params")?;
    let state = matrix(input, "state")?;
    let text = matrix(input, "sequence")?;
    let (rows, width) = (main.shape()[0], main.shape()[1]);
    if rows == 0 || rows % 2 != 0 || width == 0 || width % 4 != 0 {
        return Err(format!(
            "main_params is {rows}×{width}: expected 2l rows of 4b entries"
        ));
    }
    let (layers, bits) = (rows / 2, width / 4);
    for (t, shape, what) in [
        (&extra, [3, bits], "extra_params"),
        (&state, [2 * layers, bits], "state"),
    ] {
        if t.shape() != shape {
            return Err(format!("`{what}` is {:?}, expected {shape:?}", t.shape()));
        }
    }
    if text.shape()[0] < 2 || text.shape()[1] != bits {
        return Err(format!(
            "`sequence` is {:?}: expected at least 2 characters of {bits} bits",
            text.shape()
        ));
    }
    let problem = LstmInput {
        layers,
        chars: text.shape()[0],
        bits,
        main: main.clone(),
        extra: extra.clone(),
        state,
        text,
    };
    match function {
        "objective" => measure(
            runs,
            || Ok(objective(&problem, &main, &extra)),
            |y| finite(y.item()),
        ),
        "jacobian" => measure(
            runs,
            || {
                func::grad_n(
                    |p: &[Tensor]| objective(&problem, &p[0], &p[1]),
                    &[main.clone(), extra.clone()],
                )
            },
            |g| {
                let all: Result<Vec<Value>, String> = g
                    .iter()
                    .flat_map(|t| t.to_vec::<f64>())
                    .map(finite)
                    .collect();
                Ok(Value::Array(all?))
            },
        ),
        _ => Err(unknown("lstm", function)),
    }
}
