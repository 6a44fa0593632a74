//! `chainrule-bench`: the workloads of `shared/bench/WORKLOADS.md` on
//! chainrule, one JSON line per case with the fields of the peers'
//! harnesses (`shared/bench/peers/peers.py`), each case in a fresh process so
//! that its peak memory is its own.

mod data;
mod workloads;

/// A graph of many small nodes is allocation-heavy; glibc's allocator spends
/// a third of a long scalar chain consolidating free lists, mimalloc doesn't.
/// (`--features system-alloc` measures with the system's allocator, as a
/// user of the library without one of their own runs.)
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Instant;
use workloads::Run;

#[derive(Parser, Debug, Clone)]
#[command(about = "Run the shared benchmark workloads on chainrule")]
struct Args {
    /// ex1, ex2, chain, mlp, jac, hessian, gmm, ba, lstm, linalg, lenet, transformer or all.
    #[arg(long, default_value = "all")]
    workload: String,
    /// 1, all or both.
    #[arg(long, default_value = "all")]
    threads: String,
    /// Only these sizes (comma-separated, as printed: 1000x100, 25000…).
    #[arg(long)]
    size: Option<String>,
    /// Only these modes (comma-separated).
    #[arg(long)]
    mode: Option<String>,
    /// Fresh processes per case; the lowest median is printed.
    #[arg(long, default_value_t = 2)]
    reps: usize,
    /// Internal: run one case in this process.
    #[arg(long, hide = true)]
    child: bool,
}

const WARMUP: usize = 3;
const MIN_CALLS: usize = 20;
const MAX_CALLS: usize = 20_000;
const TARGET_S: f64 = 1.0;

fn sizes(workload: &str) -> &'static [&'static str] {
    match workload {
        "ex1" => &["100"],
        "ex2" => &["1000x100", "4096x1024"],
        "chain" => &["2500", "25000", "250000"],
        "mlp" => &["784-512-256-10/b128"],
        "jac" => &["8x256", "256x8"],
        "hessian" => &["100"],
        "gmm" => &["d10-k25-n1000", "d10-k25-n10000"],
        "ba" => &["ba1", "ba4"],
        "lstm" => &["l2_c1024"],
        "linalg" => &["solve-100", "solve-1000", "cholesky-100", "cholesky-1000"],
        "lenet" => &["b64"],
        "transformer" => &["b32-s64-d128-h4"],
        _ => &[],
    }
}

fn modes(workload: &str) -> &'static [&'static str] {
    match workload {
        "chain" => &["reverse", "forward", "jit-reverse", "jit-forward"],
        "jac" => &[
            "forward",
            "reverse",
            "reverse-batched",
            "jit-forward",
            "jit-reverse",
            "jit-reverse-batched",
        ],
        "ex1" | "ex2" => &["reverse", "graph", "jit"],
        "mlp" => &["reverse", "graph", "graph-unplanned", "jit"],
        "hessian" => &[
            "forward-over-reverse",
            "reverse-over-reverse",
            "jit-forward-over-reverse",
            "jit-reverse-over-reverse",
        ],
        "gmm" => &["reverse", "jit"],
        _ => &["reverse"],
    }
}

fn build(workload: &str, size: &str, mode: &str) -> workloads::Case {
    match workload {
        "ex1" if mode == "reverse" => workloads::ex1(size.parse().unwrap()),
        "ex1" => workloads::ex1_graph(size.parse().unwrap(), Run::of(mode)),
        "ex2" => {
            let (m, n) = size.split_once('x').unwrap();
            let (m, n) = (m.parse().unwrap(), n.parse().unwrap());
            if mode == "reverse" {
                workloads::ex2(m, n)
            } else {
                workloads::ex2_graph(m, n, Run::of(mode))
            }
        }
        "mlp" if mode == "graph-unplanned" => workloads::mlp_graph(false, Run::Interpreted),
        "mlp" if mode != "reverse" => workloads::mlp_graph(true, Run::of(mode)),
        "jac" if mode.starts_with("jit") => {
            let (a, b) = size.split_once('x').unwrap();
            workloads::jac_jit(a.parse().unwrap(), b.parse().unwrap(), mode)
        }
        "hessian" if mode.starts_with("jit") => workloads::hessian_jit(size.parse().unwrap(), mode),
        "gmm" if mode == "jit" => workloads::gmm_jit(size),
        "chain" if mode.starts_with("jit") => workloads::chain_jit(size.parse().unwrap(), mode),
        "chain" if mode == "forward" => workloads::chain_forward(size.parse().unwrap()),
        "chain" => workloads::chain(size.parse().unwrap()),
        "mlp" => workloads::mlp(),
        "jac" => {
            let (a, b) = size.split_once('x').unwrap();
            workloads::jac(a.parse().unwrap(), b.parse().unwrap(), mode)
        }
        "hessian" => workloads::hessian(size.parse().unwrap(), mode),
        "gmm" => workloads::gmm(size),
        "ba" => workloads::ba(size),
        "lstm" => workloads::lstm(size),
        "linalg" => workloads::linalg(size),
        "lenet" => workloads::lenet(),
        "transformer" => workloads::transformer(),
        other => panic!("unknown workload {other}"),
    }
}

/// Peak resident memory of this process, MiB (`VmHWM`).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

fn run_child(args: &Args) {
    let (workload, size) = (args.workload.as_str(), args.size.clone().unwrap());
    let mode = args.mode.clone().unwrap();
    let load = load1();
    let mut case = build(workload, &size, &mode);
    if mode.starts_with("graph") || mode.starts_with("jit") {
        // Tracing by example keeps every intermediate once while the graph is
        // built; reset the peak (Linux `clear_refs` 5) so that it measures
        // the compiled runs, which is what the memory plan governs.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }
    let base_rss = peak_rss_mb();
    let t0 = Instant::now();
    let (value, grad_sum) = (case.step)()();
    let first_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut last = first_ms;
    for _ in 1..WARMUP {
        let t = Instant::now();
        drop((case.step)());
        last = t.elapsed().as_secs_f64() * 1e3;
    }
    let calls = ((TARGET_S * 1e3 / last.max(1e-6)) as usize).clamp(MIN_CALLS, MAX_CALLS);
    let mut ms = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        drop((case.step)());
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let med = median(&ms);
    let objective_ms = case.objective_only.as_mut().map(|obj| {
        for _ in 0..WARMUP {
            obj();
        }
        let mut oms = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            obj();
            oms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        median(&oms)
    });
    let mut out = json!({
        "lib": "chainrule",
        "version": env!("CARGO_PKG_VERSION"),
        "workload": workload,
        "size": size,
        "mode": mode,
        "impl": case.impl_desc,
        "threads": args.threads,
        "nthreads": rayon::current_num_threads(),
        "status": "ok",
        "median_ms": med,
        "min_ms": ms.iter().copied().fold(f64::INFINITY, f64::min),
        "max_ms": ms.iter().copied().fold(0.0, f64::max),
        "calls": ms.len(),
        "warmup": WARMUP,
        "first_call_ms": first_ms,
        "load1_at_start": load,
        "peak_rss_mb": peak_rss_mb(),
        "base_rss_mb": base_rss,
        "value": value,
        "grad_sum": grad_sum,
    });
    if let Some(c) = case.compile_ms {
        out["compile_ms"] = json!(c);
    }
    if let Some(o) = objective_ms {
        out["objective_median_ms"] = json!(o);
        out["grad_over_objective"] = json!(med / o);
    }
    if workload == "chain" {
        let ops = 4 * size.parse::<usize>().unwrap();
        out["ops"] = json!(ops);
        out["ns_per_op"] = json!(med * 1e6 / ops as f64);
    }
    println!("{out}");
}

fn spawn(workload: &str, size: &str, mode: &str, threads: &str) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "--child",
        "--workload",
        workload,
        "--size",
        size,
        "--mode",
        mode,
        "--threads",
        threads,
    ]);
    // Keep freed pages mapped (mimalloc would otherwise return them to the OS
    // and fault them in again on the next step's large buffers): the same
    // policy as PyTorch's caching allocator. An explicit setting wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        cmd.env("MIMALLOC_PURGE_DELAY", "-1");
    }
    if threads == "1" {
        cmd.env("RAYON_NUM_THREADS", "1");
    } else {
        cmd.env_remove("RAYON_NUM_THREADS");
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    match (out.status.success(), line) {
        (true, Some(l)) => serde_json::from_str(l).map_err(|e| e.to_string()),
        _ => Err(format!(
            "child exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )),
    }
}

fn main() {
    let args = Args::parse();
    if args.child {
        run_child(&args);
        return;
    }
    let workloads: Vec<&str> = match args.workload.as_str() {
        "all" => vec![
            "ex1",
            "ex2",
            "chain",
            "mlp",
            "jac",
            "hessian",
            "gmm",
            "ba",
            "lstm",
            "linalg",
            "lenet",
            "transformer",
        ],
        w if !sizes(w).is_empty() => vec![w],
        w => {
            eprintln!("unknown workload {w:?}: expected ex1, ex2, chain, mlp, jac, hessian, gmm, ba, lstm, linalg, lenet, transformer or all");
            std::process::exit(2);
        }
    };
    let threads: Vec<&str> = match args.threads.as_str() {
        "both" => vec!["1", "all"],
        "1" => vec!["1"],
        "all" => vec!["all"],
        t => {
            eprintln!("--threads must be 1, all or both (got {t:?})");
            std::process::exit(2);
        }
    };
    let pick = |all: &[&'static str], only: &Option<String>| -> Vec<&'static str> {
        match only {
            Some(list) => all
                .iter()
                .copied()
                .filter(|s| list.split(',').any(|o| o == *s))
                .collect(),
            None => all.to_vec(),
        }
    };
    for w in workloads {
        for size in pick(sizes(w), &args.size) {
            for mode in pick(modes(w), &args.mode) {
                for t in &threads {
                    let mut best: Option<Value> = None;
                    let mut medians = Vec::new();
                    for _ in 0..args.reps.max(1) {
                        match spawn(w, size, mode, t) {
                            Ok(v) => {
                                let m = v["median_ms"].as_f64().unwrap();
                                medians.push(m);
                                if best
                                    .as_ref()
                                    .is_none_or(|b| m < b["median_ms"].as_f64().unwrap())
                                {
                                    best = Some(v);
                                }
                            }
                            Err(e) => eprintln!("{w} {size} {mode} threads={t}: {e}"),
                        }
                    }
                    if let Some(mut b) = best {
                        b["rep_medians_ms"] = json!(medians);
                        println!("{b}");
                    }
                }
            }
        }
    }
}
