//! Typed CPU kernels. Each has a contiguous fast path and a strided fallback;
//! large contiguous inputs are split across the rayon pool.

pub(crate) mod elementwise;
pub(crate) mod index;
pub(crate) mod linalg;
pub(crate) mod matmul;
pub(crate) mod reduce;
pub(crate) mod transcendental;

/// Below this many elements an elementwise kernel stays on the calling thread:
/// waking the pool costs more than the work. Measured on this project's
/// 2-core VM, where a worker that has gone to sleep can take hundreds of
/// microseconds to start: at 2^15 a 256K-element sum took 3× as long on 2
/// threads as on 1.
pub(crate) const PARALLEL_MIN: usize = 1 << 18;

/// Whether a kernel of `n` elements should use the rayon pool.
#[inline]
pub(crate) fn parallel(n: usize) -> bool {
    n >= PARALLEL_MIN && rayon::current_num_threads() > 1
}

/// Elements per task when a kernel splits `n` elements, in whole units of
/// `unit` (a row, a lane), across the pool: one contiguous block per
/// thread. Finer tasks were measured slower (a transformer step on 2
/// threads): each task is a steal, and blocks that alternate between
/// cores pull every cache line across.
pub(crate) fn task_len(n: usize, unit: usize) -> usize {
    let unit = unit.max(1);
    let threads = rayon::current_num_threads();
    n.div_ceil(unit).div_ceil(threads).max(1) * unit
}

/// `f()` compiled for the widest vector instructions this CPU has (AVX2
/// and FMA, or AVX-512, on x86-64; detected once), through `pulp`'s
/// dispatch: the loops `f` inlines vectorize at that width, where the
/// portable build would use 128-bit SSE2. Only the width changes, never
/// the arithmetic (Rust never fuses a multiply and an add by itself), so
/// results are the same bits on every CPU.
#[inline(always)]
pub(crate) fn wide<R>(f: impl FnOnce() -> R) -> R {
    static ARCH: std::sync::OnceLock<pulp::Arch> = std::sync::OnceLock::new();
    ARCH.get_or_init(pulp::Arch::new).dispatch(f)
}

/// `f` run on a pool of `threads` threads (tests of thread independence).
#[cfg(test)]
pub(crate) fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
    pool.expect("a thread pool").install(f)
}
