//! Matrix products through `gemm`, with its AVX-512 kernels where the CPU
//! has them (chosen at run time): on this machine's workload shapes it
//! measured at 90–97% of one core's FMA peak for the MLP's products, the
//! best of the crates timed (`matrixmultiply`, `faer`; see
//! `bench/gemm-choice` and BENCHMARKS.md). It takes arbitrary row and
//! column strides, so transposed operands (the `Aᵀ g` of every matmul
//! backward) are multiplied in place, without a copy, and it does not pack
//! the large operand of a thin product.

use crate::layout::Layout;
use rayon::prelude::*;
use std::any::TypeId;
use std::mem::MaybeUninit;

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_FLOPS: usize = 1 << 18;

/// One operand of a product: its first element and its strides.
#[derive(Clone, Copy)]
struct Operand<T> {
    ptr: *const T,
    rs: usize,
    cs: usize,
}

// SAFETY: an operand is read only, from the slice it was made from, which
// outlives the scoped threads that read it.
unsafe impl<T: Sync> Send for Operand<T> {}
unsafe impl<T: Sync> Sync for Operand<T> {}

/// The row-major destination of a product (`rs` elements between rows),
/// which the product overwrites or, when `accumulate`, is added to.
#[derive(Clone, Copy)]
struct Dest<T> {
    ptr: *mut T,
    rs: usize,
    accumulate: bool,
}

// SAFETY: threads write disjoint blocks of the destination (see
// `gemm_into`), which outlives them.
unsafe impl<T: Send> Send for Dest<T> {}
unsafe impl<T: Send> Sync for Dest<T> {}

/// Products of at most this many multiply-adds run as a plain loop (a
/// batch of 3×3 products took ~1 µs each through the GEMM, most of it
/// zeroing and packing).
const SMALL_PRODUCT: usize = 512;

/// `out[b] = a[b] @ b[b]` for every batch index. `la` is `(batch.., m, k)` and
/// `lb` is `(batch.., k, n)`, both already broadcast to the same batch shape.
/// Returns the row-major `(batch.., m, n)` buffer.
///
/// Threads take whole products (a batch of many small ones, as attention's
/// heads), or blocks of one large product's rows or columns, each a
/// single-threaded GEMM: measured faster here than `gemm`'s own threading,
/// which splits finer and repacks more.
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
    let mut out: Vec<T> = crate::memory::vec_with_capacity(len);
    let (a_rs, a_cs) = (la.strides[nd - 2], la.strides[nd - 1]);
    let (b_rs, b_cs) = (lb.strides[nd - 2], lb.strides[nd - 1]);
    let spare = &mut out.spare_capacity_mut()[..len];
    // A dot product or a tiny product (a batch of 3×3 rotations): cheaper
    // as a loop than through the GEMM's dispatch and packing.
    let tiny = (m == 1 && n == 1) || m * n * k <= SMALL_PRODUCT;
    let one = |dst: &mut [MaybeUninit<T>], (oa, ob): (usize, usize), threaded: bool| {
        if tiny {
            tiny_products(
                dst,
                m * n,
                [(oa, ob)],
                (a, a_rs, a_cs),
                (b, b_rs, b_cs),
                (m, k, n),
            );
            return;
        }
        let (a, b) = (&a[oa..], &b[ob..]);
        let dst = Dest {
            ptr: dst.as_mut_ptr() as *mut T,
            rs: n,
            accumulate: false,
        };
        // SAFETY: `dst` is the chunk's m·n elements.
        unsafe { gemm_into(dst, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, threaded) };
    };
    let threads = rayon::current_num_threads();
    let offsets = ba.offsets().zip(bb.offsets());
    if batches >= threads && threads > 1 && len * k >= PARALLEL_FLOPS {
        let offsets: Vec<(usize, usize)> = offsets.collect();
        let per = batches.div_ceil(threads);
        spare
            .par_chunks_mut(per * m * n)
            .zip(offsets.par_chunks(per))
            .for_each(|(dst, offs)| {
                for (d, &o) in dst.chunks_exact_mut(m * n).zip(offs) {
                    one(d, o, false);
                }
            });
    } else if tiny {
        tiny_products(
            spare,
            m * n,
            offsets,
            (a, a_rs, a_cs),
            (b, b_rs, b_cs),
            (m, k, n),
        );
    } else {
        for (dst, o) in spare.chunks_exact_mut(m * n).zip(offsets) {
            one(dst, o, true);
        }
    }
    // SAFETY: each of the `batches` chunks of m·n elements was written
    // above (`gemm` overwrites its whole destination: it does not read it).
    unsafe { out.set_len(len) };
    out
}

/// `dst += a @ b` for a row-major `m×n` `dst` and the `m×k`, `k×n` views
/// `la`, `lb` of `a`, `b`: a product written onto what is there (the rows
/// of a bias, see `ops::affine`), on the calling thread's share of the
/// pool as [`batched_matmul`] would run it.
pub(crate) fn matmul_accumulate<T: crate::Element>(
    dst: &mut [T],
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
) {
    let (m, k, n) = (la.shape[0], la.shape[1], lb.shape[1]);
    assert!(dst.len() == m * n && lb.shape[0] == k);
    let (a_rs, a_cs, b_rs, b_cs) = (la.strides[0], la.strides[1], lb.strides[0], lb.strides[1]);
    if m * n * k <= SMALL_PRODUCT {
        for (i, row) in dst.chunks_exact_mut(n.max(1)).enumerate() {
            for (j, d) in row.iter_mut().enumerate() {
                let (ra, cb) = (la.offset + i * a_rs, lb.offset + j * b_cs);
                *d = *d + entry_by_loop(a, (ra, a_cs), b, (cb, b_rs), k);
            }
        }
        return;
    }
    let dst = Dest {
        ptr: dst.as_mut_ptr(),
        rs: n,
        accumulate: true,
    };
    let (a, b) = (&a[la.offset..], &b[lb.offset..]);
    // SAFETY: `dst` holds the m·n elements asserted above.
    unsafe { gemm_into(dst, m, n, k, a, a_rs, a_cs, b, b_rs, b_cs, true) };
}

/// One entry of a tiny product as a plain loop (cheaper than the GEMM's
/// dispatch and packing): `k` products of `a` from its row's start, `a_cs`
/// apart, with `b` from its column's start, `b_rs` apart.
#[inline]
fn entry_by_loop<T: crate::Element>(
    a: &[T],
    (ra, a_cs): (usize, usize),
    b: &[T],
    (cb, b_rs): (usize, usize),
    k: usize,
) -> T {
    (0..k).map(|p| a[ra + p * a_cs] * b[cb + p * b_rs]).sum()
}

/// A product's operand: its buffer, and its row and column strides.
type Strided<'a, T> = (&'a [T], usize, usize);

/// One tiny product into its chunk of the output: `(dst, a, b)`.
type TinyProduct<'f, T> = dyn Fn(&mut [MaybeUninit<T>], Strided<T>, Strided<T>) + 'f;

/// `dst = a @ b` for a batch of tiny `m×k` by `k×n` products, one per
/// `m·n` chunk of `dst`, at the `(a, b)` offsets `at`. For `k` ≤ 4 (3×3
/// and 4×4 transforms) `k` is a constant of the loop, which unrolls: the
/// tangents of `ht`'s bone transforms, `(28, 22, 4, 4) @ (22, 4, 4)`, took
/// 30 µs on one thread by a loop per entry, 22 µs so.
fn tiny_products<T: crate::Element>(
    dst: &mut [MaybeUninit<T>],
    chunk: usize,
    at: impl IntoIterator<Item = (usize, usize)>,
    a: Strided<T>,
    b: Strided<T>,
    (m, k, n): (usize, usize, usize),
) {
    // Rows of `b` in place (3×3 and 4×4 transforms): a row of the output
    // is a fixed-length sum of them, which vectorizes.
    if b.2 == 1 {
        match (k, n) {
            (3, 3) => return rows_products::<T, 3, 3>(dst, chunk, at, a, b, m),
            (4, 4) => return rows_products::<T, 4, 4>(dst, chunk, at, a, b, m),
            (3, 4) => return rows_products::<T, 3, 4>(dst, chunk, at, a, b, m),
            (4, 3) => return rows_products::<T, 4, 3>(dst, chunk, at, a, b, m),
            _ => {}
        }
    }
    let each = |product: &TinyProduct<T>| {
        for (d, (oa, ob)) in dst.chunks_exact_mut(chunk).zip(at) {
            product(d, (&a.0[oa..], a.1, a.2), (&b.0[ob..], b.1, b.2));
        }
    };
    match k {
        1 => each(&|d, a, b| tiny_product::<T, 1>(d, a, b, m, n)),
        2 => each(&|d, a, b| tiny_product::<T, 2>(d, a, b, m, n)),
        3 => each(&|d, a, b| tiny_product::<T, 3>(d, a, b, m, n)),
        4 => each(&|d, a, b| tiny_product::<T, 4>(d, a, b, m, n)),
        _ => each(&|d, (a, a_rs, a_cs), (b, b_rs, b_cs)| {
            for (i, row) in d.chunks_exact_mut(n).enumerate() {
                for (j, d) in row.iter_mut().enumerate() {
                    d.write(entry_by_loop(a, (i * a_rs, a_cs), b, (j * b_cs, b_rs), k));
                }
            }
        }),
    }
}

/// One tiny product of [`tiny_products`] with `K` columns of `a`: each row
/// of `a` is read once, and every entry is summed in the order
/// [`entry_by_loop`] sums it.
#[inline(always)]
fn tiny_product<T: crate::Element, const K: usize>(
    dst: &mut [MaybeUninit<T>],
    (a, a_rs, a_cs): Strided<T>,
    (b, b_rs, b_cs): Strided<T>,
    m: usize,
    n: usize,
) {
    for (i, out) in dst.chunks_exact_mut(n).take(m).enumerate() {
        let row: [T; K] = std::array::from_fn(|p| a[i * a_rs + p * a_cs]);
        for (j, d) in out.iter_mut().enumerate() {
            let column = j * b_cs;
            let mut sum = row[0] * b[column];
            for p in 1..K {
                sum = sum + row[p] * b[column + p * b_rs];
            }
            d.write(sum);
        }
    }
}

/// [`tiny_products`] of `K` columns of `a` by `b` with its `N`-element rows
/// in place, at the CPU's widest registers.
fn rows_products<T: crate::Element, const K: usize, const N: usize>(
    dst: &mut [MaybeUninit<T>],
    chunk: usize,
    at: impl IntoIterator<Item = (usize, usize)>,
    a: Strided<T>,
    b: Strided<T>,
    m: usize,
) {
    crate::kernels::wide(
        #[inline(always)]
        || {
            for (d, (oa, ob)) in dst.chunks_exact_mut(chunk).zip(at) {
                let (a, b) = ((&a.0[oa..], a.1, a.2), (&b.0[ob..], b.1, b.2));
                rows_product::<T, K, N>(d, a, b, m);
            }
        },
    )
}

/// One tiny product of [`tiny_products`] whose `b` has its `N`-element rows
/// in place: each output row is `Σ_p a[i,p]·b[p,:]`, summed in the order
/// [`entry_by_loop`] sums each entry, over fixed-length rows.
#[inline(always)]
fn rows_product<T: crate::Element, const K: usize, const N: usize>(
    dst: &mut [MaybeUninit<T>],
    (a, a_rs, a_cs): Strided<T>,
    (b, b_rs, _): Strided<T>,
    m: usize,
) {
    let b_row = |p: usize| -> [T; N] { std::array::from_fn(|j| b[p * b_rs + j]) };
    let rows: [[T; N]; K] = std::array::from_fn(b_row);
    for (i, out) in dst.chunks_exact_mut(N).take(m).enumerate() {
        let coefficient = |p: usize| a[i * a_rs + p * a_cs];
        let mut sum = rows[0].map(|x| coefficient(0) * x);
        for (p, row) in rows.iter().enumerate().skip(1) {
            let c = coefficient(p);
            sum = std::array::from_fn(|j| sum[j] + c * row[j]);
        }
        for (d, s) in out.iter_mut().zip(sum) {
            d.write(s);
        }
    }
}

/// `dst = a @ b` (`m×k` by `k×n`; `+=` when `dst.accumulate`). When
/// `threaded` and the product is large, the output is split into one block
/// of whole rows (or, for a wide product, columns) per thread.
///
/// # Safety
/// `dst` has room for `m` rows of `n` elements at its row stride `n`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_into<T: crate::Element>(
    dst: Dest<T>,
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_rs: usize,
    a_cs: usize,
    b: &[T],
    b_rs: usize,
    b_cs: usize,
    threaded: bool,
) {
    // Bounds the raw-pointer accesses below (the destination is the
    // caller's): the last element each operand touches.
    if k > 0 {
        assert!((m - 1) * a_rs + (k - 1) * a_cs < a.len());
        assert!((k - 1) * b_rs + (n - 1) * b_cs < b.len());
    }
    let (a, b) = (
        Operand {
            ptr: a.as_ptr(),
            rs: a_rs,
            cs: a_cs,
        },
        Operand {
            ptr: b.as_ptr(),
            rs: b_rs,
            cs: b_cs,
        },
    );
    let threads = rayon::current_num_threads();
    if !threaded || threads == 1 || m * n * k < PARALLEL_FLOPS {
        // SAFETY: the asserts above and the caller's contract bound every access.
        return unsafe { gemm_block(dst, m, n, k, a, b) };
    }
    let by_rows = m >= n;
    let extent = if by_rows { m } else { n };
    let per = extent.div_ceil(threads);
    (0..extent.div_ceil(per)).into_par_iter().for_each(|p| {
        // Whole values, not their raw-pointer fields, are captured (a
        // pointer alone is neither Send nor Sync).
        let (dst, a, b) = (dst, a, b);
        let (start, size) = (p * per, per.min(extent - p * per));
        // SAFETY: block `p` is rows (or columns) `start..start + size` of
        // the destination, disjoint from every other block's, and reads
        // the same rows of `a` (or columns of `b`): inside the asserted
        // bounds.
        unsafe {
            if by_rows {
                let dst = Dest {
                    ptr: dst.ptr.add(start * n),
                    ..dst
                };
                let a = Operand {
                    ptr: a.ptr.add(start * a_rs),
                    ..a
                };
                gemm_block(dst, size, n, k, a, b)
            } else {
                let dst = Dest {
                    ptr: dst.ptr.add(start),
                    ..dst
                };
                let b = Operand {
                    ptr: b.ptr.add(start * b_cs),
                    ..b
                };
                gemm_block(dst, m, size, k, a, b)
            }
        }
    });
}

/// One single-threaded GEMM through the `gemm` crate.
///
/// # Safety
/// `dst` has room for `m` rows of `n` at its row stride, and `a` (`m×k`)
/// and `b` (`k×n`) are readable at their strides.
unsafe fn gemm_block<T: crate::Element>(
    dst: Dest<T>,
    m: usize,
    n: usize,
    k: usize,
    a: Operand<T>,
    b: Operand<T>,
) {
    macro_rules! call {
        ($t:ty) => {{
            // SAFETY: T is $t (checked by TypeId); the caller's contract
            // covers every access.
            unsafe {
                gemm::gemm::<$t>(
                    m,
                    n,
                    k,
                    dst.ptr as *mut $t,
                    1,
                    dst.rs as isize,
                    dst.accumulate,
                    a.ptr as *const $t,
                    a.cs as isize,
                    a.rs as isize,
                    b.ptr as *const $t,
                    b.cs as isize,
                    b.rs as isize,
                    if dst.accumulate { 1.0 } else { 0.0 },
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
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

/// Independent partial sums of [`dot`]: enough for the vector units to
/// overlap (one sum would make each addition wait for the last).
const DOT_LANES: usize = 16;

/// `a·b + acc`, fused (one rounding) when `FMA`.
#[inline(always)]
pub(crate) fn madd<T: crate::Element, const FMA: bool>(a: T, b: T, acc: T) -> T {
    if FMA {
        a.mul_add(b, acc)
    } else {
        acc + a * b
    }
}

/// `<a, b>` of two slices of one length, in [`DOT_LANES`] running sums:
/// the one dot product of the eager matmul and the compiled streams.
#[inline(always)]
pub(crate) fn dot<T: crate::Element, const FMA: bool>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); DOT_LANES];
    let (ca, cb) = (a.chunks_exact(DOT_LANES), b.chunks_exact(DOT_LANES));
    let tail: T = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(T::zero(), |s, (&x, &y)| madd::<T, FMA>(x, y, s));
    for (xa, xb) in ca.zip(cb) {
        for l in 0..DOT_LANES {
            acc[l] = madd::<T, FMA>(xa[l], xb[l], acc[l]);
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::in_pool;

    /// `(batch, m, k) @ (batch, k, n)` of fixed pseudo-random values.
    fn product(batch: usize, m: usize, k: usize, n: usize) -> Vec<f32> {
        let value = |i: usize| ((i * 7919 % 1000) as f32 - 500.0) / 250.0;
        let a: Vec<f32> = (0..batch * m * k).map(value).collect();
        let b: Vec<f32> = (0..batch * k * n).map(|i| value(i + 13)).collect();
        let la = Layout::contiguous(&[batch, m, k]);
        let lb = Layout::contiguous(&[batch, k, n]);
        batched_matmul(&a, &la, &b, &lb)
    }

    /// Split by rows, by columns or by products, the threaded result is
    /// the single-threaded one, bit for bit.
    #[test]
    fn threads_change_no_bits() {
        for (batch, m, k, n) in [
            (1, 300, 64, 40),
            (1, 40, 64, 300),
            (1, 257, 129, 263),
            (9, 48, 32, 48),
        ] {
            let alone = in_pool(1, || product(batch, m, k, n));
            for threads in [2, 3] {
                let split = in_pool(threads, || product(batch, m, k, n));
                assert!(alone == split, "{batch}×{m}×{k}×{n} on {threads} threads");
            }
        }
    }

    /// Tiny products (k ≤ 4 unrolled, k = 5 by the plain loop), with a
    /// broadcast batch and a transposed operand, are the sums of their
    /// definition, in its order.
    #[test]
    fn tiny_products_are_their_definition() {
        let value = |i: usize| ((i * 7919 % 1000) as f64 - 500.0) / 250.0;
        for (m, k, n) in [
            (3, 3, 3),
            (4, 4, 4),
            (4, 3, 3),
            (4, 3, 4),
            (3, 4, 3),
            (1, 2, 4),
            (3, 1, 2),
            (2, 5, 3),
        ] {
            let a: Vec<f64> = (0..2 * 3 * m * k).map(value).collect();
            let b: Vec<f64> = (0..3 * n * k).map(|i| value(i + 13)).collect();
            let la = Layout::contiguous(&[2, 3, m, k]);
            // b stored (3, n, k), read transposed, and broadcast over the
            // leading batch axis.
            let lb = Layout::contiguous(&[3, n, k]).permute(&[0, 2, 1]);
            let lb = lb.broadcast_to(&[2, 3, k, n]).unwrap();
            let out = batched_matmul(&a, &la, &b, &lb);
            // And b stored (3, k, n), its rows in place.
            let rows = Layout::contiguous(&[3, k, n]).broadcast_to(&[2, 3, k, n]);
            let out_rows = batched_matmul(&a, &la, &b, &rows.unwrap());
            for (q, chunk) in out.chunks(m * n).enumerate() {
                let (oa, ob) = (q * m * k, (q % 3) * n * k);
                for (i, j) in (0..m).flat_map(|i| (0..n).map(move |j| (i, j))) {
                    let term = |p: usize| a[oa + i * k + p] * b[ob + j * k + p];
                    let want = (1..k).fold(term(0), |sum, p| sum + term(p));
                    assert_eq!(
                        chunk[i * n + j],
                        want,
                        "{m}×{k}×{n}, product {q}, ({i}, {j})"
                    );
                    let term = |p: usize| a[oa + i * k + p] * b[ob + p * n + j];
                    let want = (1..k).fold(term(0), |sum, p| sum + term(p));
                    let got = out_rows[q * m * n + i * n + j];
                    assert_eq!(
                        got, want,
                        "rows in place: {m}×{k}×{n}, product {q}, ({i}, {j})"
                    );
                }
            }
        }
    }
}
