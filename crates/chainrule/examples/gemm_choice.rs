//! How the matmul kernels were chosen: `gemm` and `matrixmultiply` timed on
//! the shapes of the benchmark workloads (one thread, f32).
//!
//!     cargo run --release --example gemm_choice

use std::time::Instant;
fn time<F: FnMut()>(mut f: F) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut v = vec![];
    for _ in 0..30 {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[15]
}
fn main() {
    for &(m, k, n, ta) in &[
        (128usize, 784usize, 512usize, false),
        (784, 128, 512, true),
        (128, 512, 256, false),
        (4096, 1024, 1, false),
        (1024, 4096, 1, true),
        (1024, 1024, 1024, false),
        // jac: W2 (256×256) times the tangents of jacfwd (8 columns).
        (256, 256, 8, false),
        (8, 256, 256, false),
        (256, 256, 16, false),
        (256, 256, 32, false),
        (256, 256, 64, false),
        (32, 256, 256, false),
        (64, 256, 256, false),
        (256, 8, 8, false),
        (128, 256, 128, false),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        // ta: A stored as (k, m) row-major and used transposed.
        let (ars, acs) = if ta {
            (1isize, m as isize)
        } else {
            (k as isize, 1)
        };
        let tg = time(|| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                acs,
                ars,
                b.as_ptr(),
                1,
                n as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        });
        let tm = time(|| unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                ars,
                acs,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        });
        println!("m={m} k={k} n={n} a_transposed={ta}: gemm {tg:.3} ms, matrixmultiply {tm:.3} ms (1 thread)");
    }
}
