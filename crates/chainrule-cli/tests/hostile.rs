//! The command on long, odd and hostile input: it answers, or it fails with
//! one line and exit code 2, never a panic, an abort or a hang.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chainrule");

fn chainrule(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code 2 with `expect` in the one-line message, and no panic.
fn refused(args: &[&str], expect: &str) {
    let out = chainrule(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{:.200?}: {err}", args);
    assert!(err.contains(expect), "expected {expect:?} in {err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chainrule-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn chain(term: &str, n: usize) -> String {
    vec![term; n].join("+")
}

#[test]
fn a_long_flat_sum_runs_in_every_mode() {
    let e = chain("x", 9_000);
    let out = chainrule(&["eval", &e, "--set", "x=2"]);
    assert_eq!(stdout(&out).trim(), "18000", "{}", stderr(&out));
    for mode in [
        "reverse", "forward", "graph", "numeric", "symbolic", "compare",
    ] {
        let out = chainrule(&["grad", &e, "--wrt", "x", "--set", "x=2", "--mode", mode]);
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let text = stdout(&out);
        let grad: f64 = text
            .lines()
            .find(|l| l.starts_with("grad x"))
            .and_then(|l| l.rsplit(": ").next())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{mode}: no gradient in {text:.300}"));
        assert!((grad - 9000.0).abs() < 1e-2, "{mode}: {grad}");
    }
    let out = chainrule(&["grad", &e, "--wrt", "x", "--set", "x=2", "--explain"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_long_chain_of_transposes_runs() {
    let e = format!("sum(x{})", ".T".repeat(9_000));
    let out = chainrule(&[
        "grad",
        &e,
        "--wrt",
        "x",
        "--set",
        "x=[[1,2],[3,4]]",
        "--mode",
        "compare",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_expression_deeper_than_the_limit_is_refused() {
    let e = chain("x", 10_001);
    refused(&["eval", &e, "--set", "x=1"], "the limit is 10000");
    refused(
        &["grad", &e, "--wrt", "x", "--set", "x=1"],
        "the limit is 10000",
    );
}

/// Runs the command with its address space limited to `kib` KiB.
fn within_memory(kib: usize, args: &[&str]) -> Output {
    let mut script = format!("ulimit -v {kib}; exec \"$0\"");
    for i in 1..=args.len() {
        script.push_str(&format!(" \"${i}\""));
    }
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn explain_and_symbolic_memory_is_linear_in_the_expression() {
    // 3,000 terms took 1.85 GB when each step copied its subtree; with
    // shared subexpressions all of it fits in 1.5 GB of address space
    // (half of which is the reserved stack).
    let e = chain("sin(x)*x", 3_000);
    for extra in [
        &["--explain"][..],
        &["--explain", "--mode", "forward"],
        &["--mode", "symbolic"],
    ] {
        let mut args = vec!["grad", e.as_str(), "--wrt", "x", "--set", "x=2"];
        args.extend_from_slice(extra);
        let out = within_memory(1_500_000, &args);
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        assert!(stdout(&out).contains("231.01126"), "{extra:?}");
    }
}

#[test]
fn an_expression_may_begin_with_a_minus() {
    let out = chainrule(&["grad", "-sum(x^2)", "--wrt", "x", "--set", "x=[1,2]"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("[-2.000000, -4.000000]"),
        "{}",
        stdout(&out)
    );
    // Symbolic mode prints such expressions, and eval takes them back.
    let out = chainrule(&[
        "grad",
        "sum(cos(x))",
        "--wrt",
        "x",
        "--set",
        "x=[1,2]",
        "--mode",
        "symbolic",
    ]);
    let printed = stdout(&out);
    let d = printed
        .lines()
        .find_map(|l| l.strip_prefix("∂/∂x = "))
        .expect("the derivative is printed");
    assert!(d.starts_with('-'), "{d}");
    let out = chainrule(&["eval", d, "--set", "x=[1,2]"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn sizes_are_checked_before_anything_is_allocated() {
    refused(
        &[
            "eval",
            "sum(x @ x.T)",
            "--set",
            "x=zeros(4294967296,4294967296)",
        ],
        "more than 50000000 elements",
    );
    refused(
        &["eval", "x", "--set", "x=randn(18446744073709551615, 2)"],
        "more than 50000000 elements",
    );
    let started = Instant::now();
    refused(
        &[
            "jacobian",
            "x * 2",
            "--wrt",
            "x",
            "--set",
            "x=zeros(100000)",
        ],
        "10000000000 entries",
    );
    refused(
        &[
            "hessian",
            "sum(x^2)",
            "--wrt",
            "x",
            "--set",
            "x=zeros(100000)",
        ],
        "10000000000 entries",
    );
    refused(
        &["train", "mlp", "--hidden", "100000000"],
        "--hidden 100000000",
    );
    refused(
        &["train", "cnn", "--hidden", "100000000"],
        "--hidden 100000000",
    );
    refused(
        &[
            "train",
            "transformer",
            "--hidden",
            "4000000",
            "--heads",
            "1",
        ],
        "--hidden 4000000",
    );
    refused(
        &["train", "transformer", "--examples", "100000000000"],
        "--examples 100000000000",
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "sized before computed"
    );
}

fn npy_header(shape: &str) -> Vec<u8> {
    let mut h = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(h.len() as u16).to_le_bytes());
    b.extend_from_slice(h.as_bytes());
    b
}

#[test]
fn an_npy_header_with_a_huge_shape_is_refused() {
    let dir = scratch("npy");
    let path = dir.join("x.npy");
    std::fs::write(&path, npy_header("(4294967296, 4294967296)")).unwrap();
    refused(
        &["eval", "sum(x @ x.T)", "--input", path.to_str().unwrap()],
        "more than 50000000 elements",
    );
    std::fs::write(&path, npy_header("(18446744073709551615, 2)")).unwrap();
    refused(
        &["eval", "x", "--input", path.to_str().unwrap()],
        "more than 50000000 elements",
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_as_input_is_refused_without_blocking() {
    let dir = scratch("fifo");
    let fifo = dir.join("pipe.npy");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        return; // no mkfifo here: nothing to test
    }
    let mut child = Command::new(BIN)
        .args(["eval", "x", "--input", fifo.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("reading a FIFO blocked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn non_finite_derivatives_are_reported_like_non_finite_values() {
    // The norm's gradient at 0 is 0 (PyTorch's convention), in every mode.
    let out = chainrule(&[
        "grad", "norm(x)", "--wrt", "x", "--set", "x=[0,0]", "--mode", "compare", "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["grad"]["x"]["data"], serde_json::json!([0.0, 0.0]));
    for m in j["compare"].as_array().unwrap() {
        assert_eq!(m["max_abs_diff_from_reverse"].as_f64(), Some(0.0), "{m}");
    }
    // sqrt at 0 has an infinite derivative: an error naming the op.
    refused(
        &["grad", "sqrt(sum(x^2))", "--wrt", "x", "--set", "x=[0,0]"],
        "sqrt",
    );
    refused(
        &[
            "grad",
            "sum(sqrt(x))",
            "--wrt",
            "x",
            "--set",
            "x=[0,1]",
            "--mode",
            "compare",
        ],
        "sqrt",
    );
    // A NaN input passes through relu, as in PyTorch.
    let out = chainrule(&["eval", "relu(x)", "--set", "x=nan"]);
    assert_eq!(stdout(&out).trim(), "NaN", "{}", stderr(&out));
}

#[test]
fn pow_differentiates_its_exponent_in_the_command_as_in_the_library() {
    // ∂(x^y)/∂y = x^y ln x: NaN for x < 0 (reported), 0 at x = 0, y > 0.
    refused(
        &["grad", "x^y", "--wrt", "y", "--set", "x=-2", "--set", "y=2"],
        "not finite",
    );
    let out = chainrule(&[
        "grad", "x^y", "--wrt", "y", "--set", "x=0", "--set", "y=2", "--mode", "compare",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("grad y (reverse mode): 0"),
        "{}",
        stdout(&out)
    );
    let out = chainrule(&["grad", "x^y", "--wrt", "y", "--set", "x=2", "--set", "y=3"]);
    let want = 8.0 * 2f64.ln();
    let got: f64 = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("grad y: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[cfg(unix)]
#[test]
fn saving_follows_links_and_refuses_what_is_not_a_file() {
    let dir = scratch("save");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let real = dir.join("real.png");
    std::fs::write(&real, b"old").unwrap();
    std::os::unix::fs::symlink("real.png", dir.join("link.png")).unwrap();
    let out = run(&["train", "linreg", "--epochs", "1", "--plot", "link.png"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(dir.join("link.png"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(&std::fs::read(&real).unwrap()[1..4], b"PNG");
    // A folder, and a device node, are refused and left as they were.
    std::fs::create_dir(dir.join("folder.safetensors")).unwrap();
    let out = run(&[
        "train",
        "linreg",
        "--epochs",
        "1",
        "--save",
        "folder.safetensors",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    assert!(dir.join("folder.safetensors").is_dir());
    if Path::new("/dev/null").exists() {
        let out = run(&["eval", "x", "--set", "x=1", "--dot", "/dev/null"]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let meta = std::fs::metadata("/dev/null").unwrap();
        assert!(!meta.is_file(), "/dev/null is still a device");
    }
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
