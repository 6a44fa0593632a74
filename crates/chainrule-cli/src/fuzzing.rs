//! The bodies of the fuzz targets (`fuzz/`, run with `cargo +nightly fuzz`),
//! shared with the test that feeds them random and hostile inputs in CI
//! (`tests/fuzz_inputs.rs`). Each must return normally on any input: an
//! error is fine, a panic is a failure.

use crate::eval::{eval, parse_value, Env};
use crate::expr::{on_command_stack, parse};
use crate::{inputs, symbolic};
use chainrule::{DType, Tensor};
use std::path::Path;

/// Inputs longer than this are cut (the fuzzers' interest is in structure).
const MAX_INPUT: usize = 4096;

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(&data[..data.len().min(MAX_INPUT)]).into_owned()
}

/// Parses any text; what parses prints back to text that parses to the
/// same expression.
pub fn parse_and_reprint(data: &[u8]) {
    on_command_stack(|| reprint(data));
}

fn reprint(data: &[u8]) {
    let src = text(data);
    if let Ok(e) = parse(&src) {
        let printed = e.to_string();
        let again = parse(&printed).unwrap_or_else(|err| {
            panic!("`{src}` prints as `{printed}`, which does not parse: {err:?}")
        });
        assert_eq!(
            again.to_string(),
            printed,
            "printing is not stable for `{src}`"
        );
    }
}

/// The variables the expression fuzz target evaluates on: scalars,
/// vectors and a matrix, including a zero and a negative value.
pub fn fuzz_env() -> Env {
    let mut env = Env::new();
    env.insert("x".into(), Tensor::from_vec(vec![0.5f64, -1.0, 0.0], &[3]));
    env.insert("y".into(), Tensor::scalar(2.0f64));
    env.insert("z".into(), Tensor::scalar(0.0f64));
    env.insert(
        "X".into(),
        Tensor::from_vec(vec![1.0f64, 2.0, -3.0, 0.5, 0.0, 4.0], &[2, 3]),
    );
    env
}

/// Evaluates any expression that parses, with gradient recording on, and
/// differentiates it symbolically when it has a single value.
///
/// Runs on a stack as large as the command's: passes over the expression
/// recurse once per level, as deep as `expr::MAX_TREE_DEPTH`.
pub fn eval_and_differentiate(data: &[u8]) {
    on_command_stack(|| differentiate(data));
}

fn differentiate(data: &[u8]) {
    let src = text(data);
    let Ok(e) = parse(&src) else { return };
    let mut env = fuzz_env();
    let x = env["x"].clone().requires_grad();
    env.insert("x".into(), x.clone());
    let Ok(value) = eval(&e, &env, DType::F64, &mut None) else {
        return;
    };
    if value.numel() == 1 {
        if value.needs_grad() {
            let _ = chainrule::autograd::grad(&[&value], &[&x]);
        }
        let plain = fuzz_env();
        if let Ok(d) = symbolic::grad(&e, "x", &plain, DType::F64) {
            let _ = chainrule::autograd::no_grad(|| eval(&d, &plain, DType::F64, &mut None));
        }
    }
}

/// A `--set` value on any text.
pub fn set_value(data: &[u8]) {
    let _ = parse_value(&text(data), DType::F64, 0, 1);
    let _ = parse_value(&text(data), DType::F32, 7, 2);
}

/// A tensor file's bytes: the first byte picks safetensors, .npy or .npz.
pub fn tensor_file(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let name = match kind % 3 {
        0 => "fuzz.safetensors",
        1 => "fuzz.npy",
        _ => "fuzz.npz",
    };
    let _ = inputs::read_bytes(Path::new(name), bytes);
}
