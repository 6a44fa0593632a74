//! Matrix products through two crates, each where it measured fastest here
//! (see README): `matrixmultiply` for matrix-matrix products (on several
//! threads, one row block per thread), `gemm` for matrix-vector products,
//! thin products (a few rows or columns) and threaded products too thin to
//! split by rows.
//! Both take arbitrary row and column strides, so transposed operands (the
//! `Aᵀ g` of every matmul backward) are multiplied in place, without a copy.

use crate::layout::Layout;
use std::any::TypeId;

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_FLOPS: usize = 1 << 18;

/// Products with at most this many rows, or columns, are thin: `gemm` runs
/// them without packing the large operand, `matrixmultiply` packs it every
/// call (256×256 by 256×8: 0.019 against 0.059 ms; see `examples/gemm_choice`).
const THIN_ROWS: usize = 16;
const THIN_COLS: usize = 32;

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
    let mut out = vec![T::zero(); batches * m * n];
    if m * n == 0 {
        return out;
    }
    let (a_rs, a_cs) = (la.strides[nd - 2], la.strides[nd - 1]);
    let (b_rs, b_cs) = (lb.strides[nd - 2], lb.strides[nd - 1]);
    for (i, (oa, ob)) in ba.offsets().zip(bb.offsets()).enumerate() {
        let dst = &mut out[i * m * n..(i + 1) * m * n];
        if m == 1 && n == 1 {
            // A dot product: cheaper as a loop than through the GEMM dispatch.
            dst[0] = (0..k).map(|p| a[oa + p * a_cs] * b[ob + p * b_rs]).sum();
            continue;
        }
        gemm_into(dst, m, n, k, &a[oa..], a_rs, a_cs, &b[ob..], b_rs, b_cs);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn gemm_into<T: crate::Element>(
    dst: &mut [T],
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
    // Bounds the raw-pointer reads below: the last element each operand touches.
    if k > 0 {
        assert!((m - 1) * a_rs + (k - 1) * a_cs < a.len());
        assert!((k - 1) * b_rs + (n - 1) * b_cs < b.len());
    }
    let threads = rayon::current_num_threads();
    let threaded = m * n * k >= PARALLEL_FLOPS && threads > 1;
    if m > THIN_ROWS && n > THIN_COLS && !threaded {
        matrixmultiply_into(dst, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs);
        return;
    }
    if threaded && m > 1 && n > 1 && m.max(n) >= 16 * threads {
        // Threads split the output into row blocks (when m ≥ n) or column
        // blocks, each a single-threaded `matrixmultiply` product. Splitting
        // the longer side means each thread packs only its share of the
        // larger operand. Measured faster here than `gemm`'s own threading
        // for the MLP's shapes.
        use rayon::prelude::*;
        if m >= n {
            let rows = m.div_ceil(threads);
            dst.par_chunks_mut(rows * n)
                .enumerate()
                .for_each(|(i, block)| {
                    let r0 = i * rows;
                    let mb = block.len() / n;
                    matrixmultiply_into(
                        block,
                        mb,
                        n,
                        k,
                        &a[r0 * a_rs..],
                        a_rs,
                        a_cs,
                        b,
                        b_rs,
                        b_cs,
                    );
                });
        } else {
            let cols = n.div_ceil(threads);
            let out = SharedOut(dst.as_mut_ptr());
            (0..n.div_ceil(cols)).into_par_iter().for_each(|j| {
                let c0 = j * cols;
                let nb = cols.min(n - c0);
                // SAFETY: each task writes only columns c0..c0+nb of the
                // row-major m×n `dst`, disjoint from every other task's.
                unsafe {
                    matrixmultiply_raw(
                        out.at(c0),
                        n,
                        m,
                        nb,
                        k,
                        a,
                        a_rs,
                        a_cs,
                        &b[c0 * b_cs..],
                        b_rs,
                        b_cs,
                    )
                };
            });
        }
        return;
    }
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
        unreachable!("tensors hold f32 or f64")
    }
}

#[allow(clippy::too_many_arguments)]
fn matrixmultiply_into<T: crate::Element>(
    dst: &mut [T],
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
    debug_assert!(dst.len() >= m * n);
    // SAFETY: `dst` is a row-major m×n slice (row stride n).
    unsafe { matrixmultiply_raw(dst.as_mut_ptr(), n, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs) }
}

/// The output pointer shared by the column-block tasks (each writes its own columns).
struct SharedOut<T>(*mut T);
// SAFETY: the tasks write disjoint columns (see `gemm_into`).
unsafe impl<T> Sync for SharedOut<T> {}
unsafe impl<T> Send for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// The pointer `offset` elements in (a method, so that closures capture
    /// the `Sync` wrapper rather than the raw pointer field).
    ///
    /// # Safety
    /// As for `pointer::add`.
    unsafe fn at(&self, offset: usize) -> *mut T {
        self.0.add(offset)
    }
}

/// `dst[i*dst_rs + j] = Σ_p a[i,p] b[p,j]` for an m×n block.
///
/// # Safety
/// `dst` must be valid for writes at every `i*dst_rs + j` (i < m, j < n), and
/// the caller has bounds-checked the reads of `a` and `b` (see `gemm_into`).
#[allow(clippy::too_many_arguments)]
unsafe fn matrixmultiply_raw<T: crate::Element>(
    dst: *mut T,
    dst_rs: usize,
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
    let (ars, acs, brs, bcs, drs) = (
        a_rs as isize,
        a_cs as isize,
        b_rs as isize,
        b_cs as isize,
        dst_rs as isize,
    );
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr() as *const f32,
            ars,
            acs,
            b.as_ptr() as *const f32,
            brs,
            bcs,
            0.0,
            dst as *mut f32,
            drs,
            1,
        )
    } else {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr() as *const f64,
            ars,
            acs,
            b.as_ptr() as *const f64,
            brs,
            bcs,
            0.0,
            dst as *mut f64,
            drs,
            1,
        )
    }
}
