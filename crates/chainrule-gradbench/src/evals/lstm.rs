//! `lstm`: the diagonal LSTM's loss on a bit-coded text (ADBench's
//! objective, with the characters as one `control::scan`:
//! `chainrule_adbench::lstm::objective_scan`) and its gradient with respect
//! to the main and extra parameters by reverse mode, flattened row-major,
//! main first. Both run through `func::jit`, as a JAX user would write
//! `jit(grad(f))` over `lax.scan`: the scan and the scan of its VJP become
//! native loops whose state stays in registers, where the eager tape
//! spends its time on ~45 nodes of 14 elements per character.

use super::{finite, flat, matrix, unknown};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use chainrule_adbench::lstm::{objective_scan, LstmInput};
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
    // Compiled once per message, on the first timed call.
    let primal = func::jit(|p: &[Tensor]| objective_scan(&problem, &p[0], &p[1]));
    let (nm, ne) = (main.numel(), extra.numel());
    let gradient = func::jit(|p: &[Tensor]| -> chainrule::Result<Tensor> {
        let g = func::grad_n(|q: &[Tensor]| objective_scan(&problem, &q[0], &q[1]), p)?;
        Tensor::try_concat(&[&g[0].reshape(&[nm]), &g[1].reshape(&[ne])], 0)
    });
    let params = [main, extra];
    match function {
        "objective" => measure(runs, || primal.call(&params), |y| finite(y.item())),
        "jacobian" => measure(runs, || gradient.call(&params), |g| flat(&g)),
        _ => Err(unknown("lstm", function)),
    }
}
