//! Draws the `chain` workload's peak memory against its length, reverse and
//! forward mode, from a `chainrule-bench` JSON-lines file:
//!
//!     cargo run --release -p chainrule-cli --example chain_memory_plot -- \
//!         bench/results/2026-11-28-issue3-threads1.jsonl bench/results/chain-memory.png

use chainrule_cli::plot::{write_png, Panel, Series};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (input, output) = match args.as_slice() {
        [_, i, o] => (i.clone(), o.clone()),
        _ => {
            eprintln!("usage: chain_memory_plot RESULTS.jsonl OUT.png");
            std::process::exit(2);
        }
    };
    let text = std::fs::read_to_string(&input).unwrap_or_else(|e| {
        eprintln!("{input}: {e}");
        std::process::exit(2)
    });
    let mut rows: Vec<(String, f64, f64)> = Vec::new(); // mode, ops, MiB
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["lib"] == "chainrule" && v["workload"] == "chain" {
            let ops = v["ops"].as_f64().unwrap_or(0.0);
            rows.push((
                v["mode"].as_str().unwrap_or("").to_string(),
                ops,
                v["peak_rss_mb"].as_f64().unwrap_or(0.0),
            ));
        }
    }
    let pick = |mode: &str| -> (Vec<f64>, Vec<f64>) {
        let mut r: Vec<&(String, f64, f64)> = rows.iter().filter(|r| r.0 == mode).collect();
        r.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
        (
            r.iter().map(|r| r.1.log10()).collect(),
            r.iter().map(|r| r.2).collect(),
        )
    };
    let (xs, reverse) = pick("reverse");
    let (xs_f, forward) = pick("forward");
    if xs.is_empty() || xs != xs_f {
        eprintln!("{input}: needs chainrule `chain` lines in both modes at the same sizes");
        std::process::exit(2);
    }
    let panel = Panel {
        title: "chain: peak memory (reverse O(n), forward O(1))",
        x_label: "log10(number of ops)",
        y_label: "peak RSS (MiB)",
        xs: Some(&xs),
        series: vec![
            Series {
                name: "reverse mode",
                values: &reverse,
            },
            Series {
                name: "forward mode",
                values: &forward,
            },
        ],
    };
    write_png(std::path::Path::new(&output), &[panel]).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    println!("wrote {output}");
}
