//! Memory that must be given back. One test per file: it reads the
//! process's resident memory, which other tests running beside it would move.

use chainrule::{BackwardOptions, DType, Tensor};

/// Resident memory of this process, in bytes (Linux).
fn rss() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A fresh leaf per iteration, a `create_graph` backward, then everything
/// dropped: the leaf's gradient holds a graph pointing back to the leaf,
/// which must not keep either alive.
fn one_iteration(seed: u64) {
    let x = Tensor::rand_normal(&[64, 64], 0.0, 1.0, seed, DType::F64).requires_grad();
    let y = (x.tanh() * &x).sum();
    let opts = BackwardOptions {
        create_graph: true,
        ..Default::default()
    };
    y.backward_with(&opts).unwrap();
    assert!(x.grad().unwrap().needs_grad());
}

#[test]
fn create_graph_gradients_do_not_leak() {
    let Some(_) = rss() else { return };
    for i in 0..1_000 {
        one_iteration(i);
    }
    let before = rss().unwrap();
    for i in 0..10_000 {
        one_iteration(i);
    }
    let grown = rss().unwrap().saturating_sub(before);
    // Each iteration's graph holds about 200 KB: a leak would grow by ~2 GB.
    assert!(
        grown < 32 << 20,
        "resident memory grew by {} MB",
        grown >> 20
    );
}
