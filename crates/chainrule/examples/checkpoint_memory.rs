//! Gradient checkpointing on a deep MLP: the same gradients, less memory.
//!
//!     cargo run --release --example checkpoint_memory
//!
//! Trains nothing: runs one forward and backward pass of a 64-layer MLP
//! (width 512, batch 1024, f32, tanh) plainly and with each block of 8 layers
//! checkpointed, each in a fresh process so that each peak resident memory
//! is its own, and checks that the gradients are bit-for-bit identical.

use chainrule::nn::{self, Module, Parameters};
use chainrule::{DType, Tensor};
use std::process::Command;

const DEPTH: usize = 64;
const SEGMENT: usize = 8;
const WIDTH: usize = 512;
const BATCH: usize = 1024;

fn model(checkpointed: bool) -> nn::Sequential {
    let mut m = nn::Sequential::new();
    for s in 0..DEPTH / SEGMENT {
        let dims = vec![WIDTH; SEGMENT + 1];
        let block = nn::mlp(&dims, nn::Activation::Tanh, s as u64, DType::F32);
        m = if checkpointed {
            m.add(nn::Checkpointed::new(block)).add(nn::Tanh)
        } else {
            m.add(block).add(nn::Tanh)
        };
    }
    m
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn child(checkpointed: bool) {
    let m = model(checkpointed);
    let x = Tensor::rand_normal(&[BATCH, WIDTH], 0.0, 1.0, 99, DType::F32);
    let before = peak_rss_mib();
    let t = std::time::Instant::now();
    let loss = m.forward(&x).unwrap().square().mean();
    loss.backward().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    // A digest of every gradient bit, to compare the two runs exactly.
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for p in m.params() {
        for v in p.grad().unwrap().to_vec::<f32>() {
            digest = (digest ^ u64::from(v.to_bits())).wrapping_mul(0x100_0000_01b3);
        }
    }
    println!("{before:.1} {:.1} {ms:.1} {digest:016x}", peak_rss_mib());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--child" {
        child(args[2] == "checkpointed");
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
    let plain = run("plain");
    let ckpt = run("checkpointed");
    println!(
        "{DEPTH}-layer MLP, width {WIDTH}, batch {BATCH}, f32; checkpoint every {SEGMENT} layers"
    );
    println!("| run | peak RSS before the step | peak RSS | forward+backward | gradient digest |");
    println!("|---|---|---|---|---|");
    for (name, r) in [("plain", &plain), ("checkpointed", &ckpt)] {
        println!(
            "| {name} | {} MiB | {} MiB | {} ms | {} |",
            r[0], r[1], r[2], r[3]
        );
    }
    assert_eq!(plain[3], ckpt[3], "the gradients differ");
    println!("gradients identical: yes");
}
