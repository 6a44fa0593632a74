//! What the buffer cache (`chainrule::memory`) saves: one small training-like
//! step (`sum(relu(2x + 1) * x)` and its gradient) repeated at several sizes,
//! with the cache at its default limit and turned off. Run it with the
//! system allocator, as a user of the library does:
//!
//!     RAYON_NUM_THREADS=1 cargo run --release --example buffer_cache -p chainrule

use chainrule::{memory, DType, Tensor};
use std::time::Instant;

/// The best of 30 steps, in milliseconds.
fn best_step_ms(n: usize) -> f64 {
    let x = Tensor::ones(&[n], DType::F32).requires_grad();
    let mut best = f64::MAX;
    for _ in 0..30 {
        let t = Instant::now();
        let y = ((&x * 2.0 + 1.0).relu() * &x).sum();
        y.backward().unwrap();
        x.zero_grad();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best * 1e3
}

fn main() {
    println!("| elements | cache on (ms) | cache off (ms) | off / on |");
    println!("|---|---|---|---|");
    for n in [1usize << 16, 1 << 20, 1 << 23] {
        memory::set_cache_limit(memory::DEFAULT_LIMIT);
        let on = best_step_ms(n);
        memory::set_cache_limit(0);
        let off = best_step_ms(n);
        println!("| {n} | {on:.3} | {off:.3} | {:.2}× |", off / on);
    }
}
