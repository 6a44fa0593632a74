//! The matrix products of the benchmark workloads through each candidate
//! crate, in GFLOP/s, beside the machine's FMA peak measured here. A row is
//! `C (m×n, row-major) = A (m×k) · B (k×n)`, each operand row-major or
//! transposed as chainrule's matmul and its backward see it.

use std::time::Instant;

/// One product of a workload: its shape and whether A and B are transposed
/// views of row-major buffers.
struct Shape {
    what: &'static str,
    m: usize,
    k: usize,
    n: usize,
    a_t: bool,
    b_t: bool,
}

const SHAPES: &[Shape] = &[
    Shape { what: "mlp fwd X·W1", m: 128, k: 784, n: 512, a_t: false, b_t: false },
    Shape { what: "mlp fwd H1·W2", m: 128, k: 512, n: 256, a_t: false, b_t: false },
    Shape { what: "mlp fwd H2·W3", m: 128, k: 256, n: 10, a_t: false, b_t: false },
    Shape { what: "mlp bwd Xᵀ·g1", m: 784, k: 128, n: 512, a_t: true, b_t: false },
    Shape { what: "mlp bwd g2·W2ᵀ", m: 128, k: 256, n: 512, a_t: false, b_t: true },
    Shape { what: "mlp bwd H1ᵀ·g2", m: 512, k: 128, n: 256, a_t: true, b_t: false },
    Shape { what: "mlp bwd g3·W3ᵀ", m: 128, k: 10, n: 256, a_t: false, b_t: true },
    Shape { what: "mlp bwd H2ᵀ·g3", m: 256, k: 128, n: 10, a_t: true, b_t: false },
    Shape { what: "ex2 X·w", m: 4096, k: 1024, n: 1, a_t: false, b_t: false },
    Shape { what: "ex2 Xᵀ·r", m: 1024, k: 4096, n: 1, a_t: true, b_t: false },
    Shape { what: "jac W2·T", m: 256, k: 256, n: 8, a_t: false, b_t: false },
    Shape { what: "jac Tᵀ·W2", m: 8, k: 256, n: 256, a_t: false, b_t: false },
    Shape { what: "square 1024", m: 1024, k: 1024, n: 1024, a_t: false, b_t: false },
];

/// Median milliseconds of `f` over enough calls to fill about 0.3 s.
fn median_ms(mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let reps = ((0.3 / once) as usize).clamp(5, 2000);
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

trait Elem: Copy + Send + Sync + 'static + faer::traits::ComplexField {
    const NAME: &'static str;
    fn of(x: f64) -> Self;
    #[allow(clippy::too_many_arguments)]
    unsafe fn mm(m: usize, k: usize, n: usize, a: *const Self, rsa: isize, csa: isize, b: *const Self, rsb: isize, csb: isize, c: *mut Self, rsc: isize, csc: isize);
}

/// `Elem` for a float type, with `matrixmultiply`'s product of that type.
macro_rules! elem {
    ($t:ty, $name:literal, $mm:path) => {
        impl Elem for $t {
            const NAME: &'static str = $name;
            fn of(x: f64) -> Self {
                x as $t
            }
            unsafe fn mm(m: usize, k: usize, n: usize, a: *const $t, rsa: isize, csa: isize, b: *const $t, rsb: isize, csb: isize, c: *mut $t, rsc: isize, csc: isize) {
                $mm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc)
            }
        }
    };
}

elem!(f32, "f32", matrixmultiply::sgemm);
elem!(f64, "f64", matrixmultiply::dgemm);

fn row<T: Elem>(s: &Shape, threads: usize, pool: &rayon::ThreadPool) {
    let (m, k, n) = (s.m, s.k, s.n);
    let a: Vec<T> = (0..m * k).map(|i| T::of((i % 7) as f64 * 0.1)).collect();
    let b: Vec<T> = (0..k * n).map(|i| T::of((i % 5) as f64 * 0.1)).collect();
    let mut c: Vec<T> = vec![T::of(0.0); m * n];
    // Strides of the views: a transposed operand is the row-major buffer of its transpose.
    let (rsa, csa) = if s.a_t { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if s.b_t { (1, k as isize) } else { (n as isize, 1) };
    let flops = 2.0 * (m * k * n) as f64;
    let gflops = |ms: f64| flops / (ms * 1e-3) / 1e9;
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let t_gemm = pool.install(|| {
        median_ms(|| unsafe {
            gemm::gemm(m, n, k, c.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), csa, rsa, b.as_ptr(), csb, rsb, T::of(0.0), T::of(1.0), false, false, false, par)
        })
    });
    let faer_par = if threads > 1 { faer::Par::rayon(threads) } else { faer::Par::Seq };
    let t_faer = pool.install(|| {
        median_ms(|| unsafe {
            let av = faer::MatRef::<T>::from_raw_parts(a.as_ptr(), m, k, rsa, csa);
            let bv = faer::MatRef::<T>::from_raw_parts(b.as_ptr(), k, n, rsb, csb);
            let cv = faer::MatMut::<T>::from_raw_parts_mut(c.as_mut_ptr(), m, n, n as isize, 1);
            faer::linalg::matmul::matmul(cv, faer::Accum::Replace, av, bv, T::of(1.0), faer_par);
        })
    });
    // matrixmultiply as chainrule builds it (without its `threading` feature): one thread.
    let t_mm = (threads == 1).then(|| median_ms(|| unsafe { T::mm(m, k, n, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, c.as_mut_ptr(), n as isize, 1) }));
    println!(
        "| {} | {}×{}×{} | {} | {} | {:.1} | {:.1} | {} |",
        s.what,
        m,
        k,
        n,
        T::NAME,
        threads,
        gflops(t_gemm),
        gflops(t_faer),
        t_mm.map_or("–".into(), |t| format!("{:.1}", gflops(t))),
    );
}

/// Peak FMA throughput of one core: independent chains of vector FMAs, the
/// widest the CPU has (AVX-512 where present, else AVX2).
#[cfg(target_arch = "x86_64")]
fn fma_peak_gflops() -> (f64, f64, &'static str) {
    use std::arch::x86_64::*;
    const ITERS: usize = 20_000_000;
    #[target_feature(enable = "avx512f")]
    unsafe fn f32x16() -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); 12];
        let (x, y) = (_mm512_set1_ps(std::hint::black_box(1.000_000_1)), _mm512_set1_ps(std::hint::black_box(1e-9)));
        for _ in 0..ITERS / 12 {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        acc.iter().map(|a| _mm512_reduce_add_ps(*a)).sum()
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn f32x8() -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); 12];
        let (x, y) = (_mm256_set1_ps(std::hint::black_box(1.000_000_1)), _mm256_set1_ps(std::hint::black_box(1e-9)));
        for _ in 0..ITERS / 12 {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        let mut out = [0f32; 8];
        for a in acc {
            let mut lanes = [0f32; 8];
            _mm256_storeu_ps(lanes.as_mut_ptr(), a);
            out.iter_mut().zip(lanes).for_each(|(o, l)| *o += l);
        }
        out.iter().sum()
    }
    let run = |f: &dyn Fn() -> f32, lanes: f64| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            std::hint::black_box(f());
            best = best.min(t.elapsed().as_secs_f64());
        }
        // An FMA is two FLOPs per lane; f64 has half the lanes.
        (2.0 * lanes * (ITERS / 12 * 12) as f64 / best / 1e9, lanes)
    };
    if is_x86_feature_detected!("avx512f") {
        let (g, _) = run(&|| unsafe { f32x16() }, 16.0);
        (g, g / 2.0, "AVX-512")
    } else {
        let (g, _) = run(&|| unsafe { f32x8() }, 8.0);
        (g, g / 2.0, "AVX2")
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        let (f32_peak, f64_peak, isa) = fma_peak_gflops();
        println!("FMA peak, one core ({isa}): f32 {f32_peak:.1} GFLOP/s, f64 {f64_peak:.1} GFLOP/s\n");
    }
    println!(
        "gemm AVX-512 kernels: {}\n",
        if cfg!(feature = "avx512") { "enabled (x86-v4)" } else { "off (AVX2/FMA)" }
    );
    println!("| product | m×k×n | dtype | threads | gemm | faer | matrixmultiply |");
    println!("|---|---|---|---|---|---|---|");
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for s in SHAPES {
            row::<f32>(s, threads, &pool);
        }
        for s in SHAPES.iter().filter(|s| s.what.starts_with("mlp")) {
            row::<f64>(s, threads, &pool);
        }
    }
}
