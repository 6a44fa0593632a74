//! Typed CPU kernels. Each has a contiguous fast path and a strided fallback;
//! large contiguous inputs are split across the rayon pool.

pub(crate) mod elementwise;
pub(crate) mod index;
pub(crate) mod linalg;
pub(crate) mod matmul;
pub(crate) mod reduce;

/// Below this many elements an elementwise kernel stays on the calling thread:
/// waking the pool costs more than the work.
pub(crate) const PARALLEL_MIN: usize = 1 << 15;

/// Whether a kernel of `n` elements should use the rayon pool.
#[inline]
pub(crate) fn parallel(n: usize) -> bool {
    n >= PARALLEL_MIN && rayon::current_num_threads() > 1
}
