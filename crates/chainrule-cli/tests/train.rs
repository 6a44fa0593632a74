//! `chainrule train`, end to end through the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn chainrule(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chainrule"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chainrule-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn linreg_recovers_w_and_b() {
    let dir = scratch("linreg");
    let out = chainrule(&["train", "linreg", "--json", "--plot", "curves.png"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = last_json(&out);
    let w: Vec<f64> = serde_json::from_value(j["w"].clone()).unwrap();
    let b = j["b"].as_f64().unwrap();
    assert!(
        (w[0] - 2.0).abs() < 0.01 && (w[1] + 3.4).abs() < 0.01 && (b - 4.2).abs() < 0.01,
        "{j}"
    );
    assert_eq!(j["epochs"], 5);
    assert!(j["test_loss"].as_f64().unwrap() < 1e-3);
    assert!(is_png(&dir.join("curves.png")));
    // the epoch lines went to stderr, stdout is the JSON line alone
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("epoch   5/5"));
}

#[test]
fn mlp_reaches_95_percent_on_held_out_digits_within_a_minute() {
    let dir = scratch("mlp");
    let started = std::time::Instant::now();
    let out = chainrule(
        &["train", "mlp", "--json", "--save", "digits.safetensors"],
        &dir,
    );
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = last_json(&out);
    let accuracy = j["test_accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.95, "{j}");
    assert!(seconds < 60.0, "took {seconds} s");
    // No file is written unless asked: only the checkpoint is there.
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["digits.safetensors"], "{files:?}");
    // Training on from the saved weights starts where it ended.
    let out = chainrule(
        &[
            "train",
            "mlp",
            "--json",
            "--epochs",
            "1",
            "--lr",
            "1e-9",
            "--load",
            "digits.safetensors",
            "--plot",
            "again.png",
        ],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = last_json(&out)["test_accuracy"].as_f64().unwrap();
    assert!((again - accuracy).abs() < 1e-9, "{again} vs {accuracy}");
}

#[test]
fn cnn_reaches_98_5_percent_on_held_out_digits() {
    let dir = scratch("cnn");
    let out = chainrule(&["train", "cnn", "--json"], &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = last_json(&out);
    assert!(j["test_accuracy"].as_f64().unwrap() >= 0.985, "{j}");
    assert_eq!(j["epochs"], 15);
}

#[test]
fn transformer_learns_two_digit_addition() {
    let dir = scratch("transformer");
    let out = chainrule(
        &[
            "train",
            "transformer",
            "--json",
            "--digits",
            "2",
            "--hidden",
            "32",
            "--layers",
            "1",
            "--examples",
            "20000",
            "--epochs",
            "6",
            "--batch-size",
            "64",
            "--lr",
            "0.005",
            "--warmup",
            "50",
        ],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = last_json(&out);
    // Exact match of the greedy decoding on 1000 held-out sums.
    assert!(j["test_accuracy"].as_f64().unwrap() >= 0.99, "{j}");
}

#[test]
fn a_resumed_run_ends_with_the_same_checkpoint_byte_for_byte() {
    let dir = scratch("resume");
    // A schedule that does not depend on --epochs: the first part of the
    // run is told to stop after one epoch.
    let run = |args: &[&str]| {
        let mut all = vec![
            "train",
            "cnn",
            "--hidden",
            "4",
            "--plot",
            "p.png",
            "--json",
            "--schedule",
            "constant",
        ];
        all.extend_from_slice(args);
        let out = chainrule(&all, &dir);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        last_json(&out)
    };
    let straight = run(&["--epochs", "3", "--save", "straight.safetensors"]);
    run(&["--epochs", "1", "--save", "stopped.safetensors"]);
    let resumed = run(&[
        "--epochs",
        "3",
        "--resume",
        "stopped.safetensors",
        "--save",
        "stopped.safetensors",
    ]);
    assert_eq!(straight["test_accuracy"], resumed["test_accuracy"]);
    let a = std::fs::read(dir.join("straight.safetensors")).unwrap();
    let b = std::fs::read(dir.join("stopped.safetensors")).unwrap();
    assert!(a == b, "the checkpoints differ");
    // --load takes the weights of a checkpoint; --resume past the end is refused.
    run(&[
        "--epochs",
        "1",
        "--load",
        "straight.safetensors",
        "--lr",
        "1e-9",
    ]);
    let out = chainrule(
        &[
            "train",
            "cnn",
            "--hidden",
            "4",
            "--epochs",
            "3",
            "--resume",
            "straight.safetensors",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to train"));
}

#[test]
fn bad_input_is_a_clear_error_and_leaves_no_file() {
    let dir = scratch("bad");
    let check = |args: &[&str], expect: &str| {
        let out = chainrule(args, &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{stderr}"
        );
    };
    // a diverging run: NaN/inf loss, nothing saved
    check(
        &["train", "linreg", "--lr", "1e6", "--save", "w.safetensors"],
        "training diverged",
    );
    assert!(!dir.join("w.safetensors").exists());
    // unreadable and mismatched weights files
    check(
        &["train", "mlp", "--load", "missing.safetensors"],
        "missing.safetensors: cannot read",
    );
    std::fs::write(dir.join("junk.safetensors"), b"junk").unwrap();
    check(
        &["train", "mlp", "--load", "junk.safetensors"],
        "not a safetensors file",
    );
    let out = chainrule(
        &[
            "train",
            "linreg",
            "--save",
            "lin.safetensors",
            "--plot",
            "p.png",
        ],
        &dir,
    );
    assert!(out.status.success());
    check(&["train", "mlp", "--load", "lin.safetensors"], "0.weight");
    check(&["train", "mlp", "--hidden", "0"], "--hidden");
    check(&["train", "mlp", "--lr=-1"], "--lr");
    check(&["train", "gan"], "invalid value 'gan'");
    check(&["train", "transformer", "--heads", "3"], "--heads");
    check(&["train", "transformer", "--digits", "12"], "--digits");
    check(
        &["train", "cnn", "--resume", "lin.safetensors"],
        "lin.safetensors",
    );
    check(
        &["train", "linreg", "--plot", "no-such-dir/p.png"],
        "cannot write the plot",
    );
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `--micro-batches 2` sums two slices' gradients: the same training to
/// rounding (the sums are split differently), with its own errors.
#[test]
fn micro_batches_train_the_same_model_to_rounding() {
    let dir = scratch("micro");
    let run = |extra: &[&str]| {
        let mut args = vec!["train", "mlp", "--epochs", "2", "--json"];
        args.extend(extra);
        let out = chainrule(&args, &dir);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        last_json(&out)["test_loss"].as_f64().unwrap()
    };
    let (whole, sliced) = (run(&[]), run(&["--micro-batches", "2"]));
    assert!(
        (whole - sliced).abs() <= 1e-5 * whole,
        "{whole} vs {sliced}"
    );
    let out = chainrule(&["train", "mlp", "--micro-batches", "0"], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--micro-batches must be at least 1"));
}

/// Started as several MPI ranks by a build without the `mpi` feature, the
/// command refuses rather than train N separate copies.
#[cfg(not(feature = "mpi"))]
#[test]
fn several_ranks_without_the_mpi_feature_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_chainrule"))
        .args(["train", "linreg"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("built without the `mpi` feature"),
        "{stderr}"
    );
}
