//! `chainrule train` data-parallel under `mpirun -np 2` on this machine
//! (the `mpi` feature; `.ci/run` installs OpenMPI and runs these):
//! the ranks' weights against one process's, and the failures that must
//! end the job with an error rather than hang.
#![cfg(feature = "mpi")]

use chainrule::Tensor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chainrule");

/// Runs `command` in `dir`, killed past `limit` (then the test fails: a hang).
fn run(mut command: Command, dir: &Path, limit: Duration) -> Output {
    let mut child = command
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun runs (apt-get install openmpi-bin)");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// `mpirun` with one rank per `ranks` entry (each its `chainrule` arguments),
/// one thread per rank.
fn mpirun(ranks: &[&[&str]], dir: &Path, limit: Duration) -> Output {
    let mut command = Command::new("mpirun");
    command.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-x",
        "RAYON_NUM_THREADS=1",
    ]);
    for (k, args) in ranks.iter().enumerate() {
        if k > 0 {
            command.arg(":");
        }
        command.args(["-np", "1", BIN]).args(*args);
    }
    run(command, dir, limit)
}

/// One process, one thread.
fn single(args: &[&str], dir: &Path) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env("RAYON_NUM_THREADS", "1");
    run(command, dir, Duration::from_secs(300))
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chainrule-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    String::from_utf8_lossy(&out.stdout).to_string() + &stderr
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    let mut t = chainrule::nn::load_tensors(path).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// The largest difference between the model's and optimizer's tensors of
/// two checkpoints, relative to max(1, |value|) (the extras, curves and
/// counts, are compared only for their names).
fn weights_differ(a: &Path, b: &Path) -> f64 {
    let (a, b) = (tensors(a), tensors(b));
    let names = |t: &[(String, Tensor)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    let mut worst = 0.0f64;
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if name.starts_with("extra.") {
            continue;
        }
        for (u, v) in x.to_vec::<f64>().iter().zip(y.to_vec::<f64>()) {
            worst = worst.max((u - v).abs() / u.abs().max(1.0));
        }
    }
    worst
}

/// Two ranks against one process summing the same two slices in the same
/// order (`--micro-batches 2`): every weight, optimizer moment and
/// BatchNorm statistic equal, bit for bit; only rank 0 prints.
#[test]
fn two_ranks_equal_one_process_with_two_micro_batches_bit_for_bit() {
    let dir = scratch("bitwise");
    let tasks: [&[&str]; 3] = [
        &["mlp", "--epochs", "3"],
        &["cnn", "--epochs", "1", "--hidden", "4"],
        &[
            "transformer",
            "--epochs",
            "1",
            "--examples",
            "600",
            "--hidden",
            "16",
            "--layers",
            "1",
            "--digits",
            "2",
        ],
    ];
    for task in tasks {
        let with = |extra: &[&str], file: &str| -> Vec<String> {
            let mut args: Vec<String> = ["train"]
                .iter()
                .chain(task)
                .chain(extra)
                .map(|s| s.to_string())
                .collect();
            args.extend(["--save".into(), file.into()]);
            args
        };
        let ranks_args = with(&[], "ranks.st");
        let ranks_args = strs(&ranks_args);
        let text = ok(&mpirun(
            &[&ranks_args, &ranks_args],
            &dir,
            Duration::from_secs(300),
        ));
        assert_eq!(
            text.matches("epoch   1/").count(),
            1,
            "rank 0 alone prints: {text}"
        );
        assert!(text.contains("over 2 ranks"), "{text}");
        let one = with(&["--micro-batches", "2"], "one.st");
        ok(&single(&strs(&one), &dir));
        let d = weights_differ(&dir.join("ranks.st"), &dir.join("one.st"));
        assert_eq!(d, 0.0, "{task:?}: the ranks' checkpoint differs by {d}");
    }
}

/// Against one process on the whole batch (one sum over its examples, not
/// two): equal to rounding, 1e-6 after two epochs of the MLP.
#[test]
fn two_ranks_match_one_process_on_the_global_batch() {
    let dir = scratch("global");
    let args = ["train", "mlp", "--epochs", "2", "--save", "ranks.st"];
    ok(&mpirun(&[&args, &args], &dir, Duration::from_secs(300)));
    ok(&single(
        &["train", "mlp", "--epochs", "2", "--save", "one.st"],
        &dir,
    ));
    let d = weights_differ(&dir.join("ranks.st"), &dir.join("one.st"));
    assert!(d <= 1e-6, "differ by {d}");
}

/// A checkpoint of two ranks resumes in one process (and the other way
/// round), continuing the same run.
#[test]
fn resume_works_across_rank_counts() {
    let dir = scratch("resume");
    let train = |epochs: &str, extra: &[&str]| -> Vec<String> {
        ["train", "mlp", "--epochs", epochs]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    // Two ranks for epochs 1–2, then one process for epoch 3 …
    let first = train("2", &["--save", "a.st"]);
    ok(&mpirun(
        &[&strs(&first), &strs(&first)],
        &dir,
        Duration::from_secs(300),
    ));
    let rest = train(
        "3",
        &["--resume", "a.st", "--micro-batches", "2", "--save", "a.st"],
    );
    ok(&single(&strs(&rest), &dir));
    // … against one process for epoch 1, then two ranks for epochs 2–3.
    ok(&single(
        &strs(&train("1", &["--micro-batches", "2", "--save", "b.st"])),
        &dir,
    ));
    let rest = train("3", &["--resume", "b.st", "--save", "b.st"]);
    ok(&mpirun(
        &[&strs(&rest), &strs(&rest)],
        &dir,
        Duration::from_secs(300),
    ));
    assert_eq!(weights_differ(&dir.join("a.st"), &dir.join("b.st")), 0.0);
}

/// Ranks that built different models stop at the start, each saying so.
#[test]
fn mismatched_models_fail_on_every_rank() {
    let dir = scratch("mismatch");
    let out = mpirun(
        &[
            &["train", "mlp", "--hidden", "16"],
            &["train", "mlp", "--hidden", "32"],
        ],
        &dir,
        Duration::from_secs(120),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for rank in ["rank 0 of 2", "rank 1 of 2"] {
        assert!(
            stderr.contains(&format!(
                "{rank}: the ranks disagree on the model's structure"
            )),
            "{stderr}"
        );
    }
}

/// A rank that stops taking part (here it trains one epoch fewer) makes
/// the other fail within --timeout, naming what it waited for.
#[test]
fn a_rank_that_stops_ends_the_job_within_the_timeout() {
    let dir = scratch("timeout");
    let started = Instant::now();
    let out = mpirun(
        &[
            &["train", "mlp", "--epochs", "2", "--timeout", "3"],
            &["train", "mlp", "--epochs", "1", "--timeout", "3"],
        ],
        &dir,
        Duration::from_secs(120),
    );
    assert_eq!(
        out.status.code(),
        Some(chainrule::distributed::TIMEOUT_EXIT_CODE)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rank 0 of 2: the all-reduce of the gradients did not complete within 3s"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

/// A rank that dies (killed mid-run) ends the whole job at once.
#[test]
fn a_rank_that_dies_ends_the_job() {
    let dir = scratch("dies");
    let mut command = Command::new("mpirun");
    command
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "1", BIN])
        .args(["train", "mlp", "--epochs", "30", "--timeout", "30"])
        .args([":", "-np", "1", "sh", "-c", "sleep 1; kill -9 $$"]);
    let started = Instant::now();
    let out = run(command, &dir, Duration::from_secs(120));
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

/// `--sync-batch-norm`: BatchNorm normalizes by every rank's slice
/// together, so two ranks train the CNN one process trains on whole
/// batches (to rounding: the sums are split differently), where each
/// rank's own statistics do not. With SGD: Adam would blow up the rounding
/// noise of the convolutions' biases, whose true gradient BatchNorm makes
/// zero, into full steps.
#[test]
fn sync_batch_norm_matches_one_process_on_the_global_batch() {
    let dir = scratch("syncbn");
    let cnn = |extra: &[&str], file: &str| -> Vec<String> {
        let base = [
            "train",
            "cnn",
            "--epochs",
            "1",
            "--hidden",
            "4",
            "--optimizer",
            "sgd",
            "--lr",
            "0.05",
            "--schedule",
            "constant",
            "--save",
            file,
        ];
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    ok(&single(&strs(&cnn(&[], "one.st")), &dir));
    let synced = cnn(&["--sync-batch-norm"], "synced.st");
    ok(&mpirun(
        &[&strs(&synced), &strs(&synced)],
        &dir,
        Duration::from_secs(300),
    ));
    let local = cnn(&[], "local.st");
    ok(&mpirun(
        &[&strs(&local), &strs(&local)],
        &dir,
        Duration::from_secs(300),
    ));
    let with_sync = weights_differ(&dir.join("synced.st"), &dir.join("one.st"));
    let without = weights_differ(&dir.join("local.st"), &dir.join("one.st"));
    assert!(with_sync <= 1e-6, "synchronized: differ by {with_sync}");
    assert!(without > 100.0 * with_sync, "{without} against {with_sync}");

    // A rank with no example of a batch could not take part: refused.
    let tiny = cnn(&["--sync-batch-norm", "--batch-size", "1"], "x.st");
    let out = mpirun(
        &[&strs(&tiny), &strs(&tiny)],
        &dir,
        Duration::from_secs(120),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least one example per rank"), "{stderr}");
}
