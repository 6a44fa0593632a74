//! What a compiled graph's memory plan saves: a long elementwise chain over a
//! large vector, run with the plan (each value released after its last use)
//! and without it (every intermediate kept), each in a fresh process so that
//! each peak resident memory is its own.
//!
//!     cargo run --release --example graph_memory

use chainrule::graph::Graph;
use chainrule::{DType, Tensor};
use std::process::Command;

const N: usize = 1 << 20; // 1 Mi f32 = 4 MiB per value
const STEPS: usize = 40;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn child(planned: bool) {
    let x = Tensor::rand_uniform(&[N], -1.0, 1.0, 1, DType::F32);
    let g = Graph::trace(&[("x", &x)], |t| {
        let mut u = t[0].clone();
        for _ in 0..STEPS {
            u = u.sin() * 0.5 + &u * 0.5;
        }
        Ok(vec![u.sum()])
    })
    .unwrap()
    .optimize();
    let exe = g.compile();
    let plan = exe.plan().clone();
    // Measure the run alone: tracing by example computed (and kept) every
    // value once, so reset the peak counter first (Linux: clear_refs 5).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_mib();
    let out = if planned {
        exe.run(&[("x", &x)])
    } else {
        exe.run_unplanned(&[("x", &x)])
    }
    .unwrap();
    println!(
        "{:.1} {:.1} {} {} {}",
        before,
        peak_rss_mib(),
        plan.planned_peak_bytes,
        plan.unplanned_bytes,
        out[0].item()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--child" {
        child(args[2] == "planned");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let run = |kind: &str| -> Vec<String> {
        let out = Command::new(&exe).args(["--child", kind]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let (p, u) = (run("planned"), run("unplanned"));
    println!("graph: {STEPS} × (sin, ×0.5, ×0.5, +) over {N} f32 values, then a sum");
    println!(
        "memory plan: planned peak {:.1} MiB, unplanned {:.1} MiB (computed values only)",
        p[2].parse::<f64>().unwrap() / 1048576.0,
        p[3].parse::<f64>().unwrap() / 1048576.0
    );
    println!("| run | resident before the run | peak resident during the run | result |");
    println!("|---|---|---|---|");
    println!("| planned | {} MiB | {} MiB | {} |", p[0], p[1], p[4]);
    println!("| unplanned | {} MiB | {} MiB | {} |", u[0], u[1], u[4]);
    assert_eq!(p[4], u[4], "the two runs must agree");
}
