//! Matrix products through `gemm`, with its AVX-512 kernels where the CPU
//! has them (chosen at run time): on this machine's workload shapes it
//! measured at 90–97% of one core's FMA peak for the MLP's products, the
//! best of the crates timed (`matrixmultiply`, `faer`; see
//! `bench/gemm-choice` and BENCHMARKS.md). It takes arbitrary row and
//! column strides, so transposed operands (the `Aᵀ g` of every matmul
//! backward) are multiplied in place, without a copy, and it does not pack
//! the large operand of a thin product.

use crate::layout::Layout;
use std::any::TypeId;

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_FLOPS: usize = 1 << 18;

/// `out[b] = a[b] @ b[b]` for every batch index. `la` is `(batch.., m, k)` and
/// `lb` is `(batch.., k, n)`, both already broadcast to the same batch shape.
/// Returns the row-major `(batch.., m, n)` buffer.
pub(crate) fn batched_matmul<T: crate::Element>(
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
) -> Vec<T> {
    let nd = la.shape.len();
    let (m, k, n) = (la.shape[nd - 2], la.shape[nd - 1], lb.shape[nd - 1]);
    let batch_of = |l: &Layout| Layout {
        shape: l.shape[..nd - 2].into(),
        strides: l.strides[..nd - 2].into(),
        offset: l.offset,
    };
    let (ba, bb) = (batch_of(la), batch_of(lb));
    let batches = ba.numel();
    let len = batches * m * n;
    if len == 0 || k == 0 {
        return vec![T::zero(); len];
    }
    // Written in full below, so not zeroed first (a pass over the output).
    let mut out: Vec<T> = Vec::with_capacity(len);
    let (a_rs, a_cs) = (la.strides[nd - 2], la.strides[nd - 1]);
    let (b_rs, b_cs) = (lb.strides[nd - 2], lb.strides[nd - 1]);
    let spare = &mut out.spare_capacity_mut()[..len];
    for (dst, (oa, ob)) in spare
        .chunks_exact_mut(m * n)
        .zip(ba.offsets().zip(bb.offsets()))
    {
        if m == 1 && n == 1 {
            // A dot product: cheaper as a loop than through the GEMM dispatch.
            dst[0].write((0..k).map(|p| a[oa + p * a_cs] * b[ob + p * b_rs]).sum());
            continue;
        }
        gemm_into(dst, m, n, k, &a[oa..], a_rs, a_cs, &b[ob..], b_rs, b_cs);
    }
    // SAFETY: each of the `batches` chunks of m·n elements was written
    // above (`gemm` overwrites its whole destination: it does not read it).
    unsafe { out.set_len(len) };
    out
}

#[allow(clippy::too_many_arguments)]
fn gemm_into<T: crate::Element>(
    dst: &mut [std::mem::MaybeUninit<T>],
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_rs: usize,
    a_cs: usize,
    b: &[T],
    b_rs: usize,
    b_cs: usize,
) {
    // Bounds the raw-pointer accesses below: the destination, and the last
    // element each operand touches.
    assert!(dst.len() >= m * n);
    if k > 0 {
        assert!((m - 1) * a_rs + (k - 1) * a_cs < a.len());
        assert!((k - 1) * b_rs + (n - 1) * b_cs < b.len());
    }
    let threaded = m * n * k >= PARALLEL_FLOPS && rayon::current_num_threads() > 1;
    let parallelism = if threaded {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    macro_rules! call {
        ($t:ty) => {{
            // SAFETY: T is $t (checked by TypeId); the asserts above keep every
            // read inside `a` and `b`, and `dst` is a row-major m×n slice.
            unsafe {
                gemm::gemm::<$t>(
                    m,
                    n,
                    k,
                    dst.as_mut_ptr() as *mut $t,
                    1,
                    n as isize,
                    false,
                    a.as_ptr() as *const $t,
                    a_cs as isize,
                    a_rs as isize,
                    b.as_ptr() as *const $t,
                    b_cs as isize,
                    b_rs as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        }};
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        call!(f32)
    } else if TypeId::of::<T>() == TypeId::of::<f64>() {
        call!(f64)
    } else {
        unreachable!("matmul takes f32 or f64 (its dtype rule)")
    }
}
