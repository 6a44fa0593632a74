//! Indexing kernels on row-major buffers viewed as `(outer, axis, inner)`.

use super::elementwise::fill;
use super::{parallel, task_len, wide};
use rayon::prelude::*;

/// `out[o, j, i] = src[o, idx[j], i]`.
pub(crate) fn index_select<T: Copy + Send + Sync>(
    src: &[T],
    outer: usize,
    axis: usize,
    inner: usize,
    idx: &[usize],
) -> Vec<T> {
    if inner == 1 && !idx.is_empty() {
        // Single elements (im2col's windows): a gather, not a copy per
        // entry, in blocks of rows across the pool when large.
        let k = idx.len();
        // SAFETY: each task writes its rows whole (`k` entries each).
        return unsafe {
            fill(
                outer * k,
                parallel(outer * k),
                task_len(outer * k, k),
                |out, at| {
                    let rows = src.chunks_exact(axis.max(1)).skip(at / k);
                    for (to, row) in out.chunks_exact_mut(k).zip(rows) {
                        for (o, &j) in to.iter_mut().zip(idx) {
                            o.write(row[j]);
                        }
                    }
                },
            )
        };
    }
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &j in idx {
            let start = (o * axis + j) * inner;
            out.extend_from_slice(&src[start..start + inner]);
        }
    }
    out
}

/// The adjoint of [`index_select`]: `out[o, idx[j], i] += src[o, j, i]`, with
/// `out` of axis length `size`.
pub(crate) fn index_add<T: crate::Element>(
    src: &[T],
    outer: usize,
    size: usize,
    inner: usize,
    idx: &[usize],
) -> Vec<T> {
    let mut out = vec![T::zero(); outer * size * inner];
    if inner == 1 {
        // Rows are independent: blocks of them across the pool when large.
        let add_row = |(to, from): (&mut [T], &[T])| {
            for (&t, &v) in idx.iter().zip(from) {
                to[t] = to[t] + v;
            }
        };
        let (to, from) = (size.max(1), idx.len().max(1));
        if parallel(src.len()) {
            out.par_chunks_mut(to)
                .zip(src.par_chunks_exact(from))
                .with_min_len(task_len(src.len(), from) / from)
                .for_each(add_row);
        } else {
            out.chunks_exact_mut(to)
                .zip(src.chunks_exact(from))
                .for_each(add_row);
        }
        return out;
    }
    // Whole rows of `inner` at a time, as slices: the adds vectorize
    // (a kmeans gradient scatters n rows of d into k).
    let rows = src.chunks_exact(inner.max(1));
    let row_indices = (0..outer).flat_map(|o| idx.iter().map(move |&t| o * size + t));
    wide(
        #[inline(always)]
        || {
            for (row, to) in rows.zip(row_indices) {
                let to = &mut out[to * inner..(to + 1) * inner];
                for (t, &v) in to.iter_mut().zip(row) {
                    *t = *t + v;
                }
            }
        },
    );
    out
}

/// `out[o, j, i] = src[o, idx[o, j, i], i]`, `idx` of shape `(outer, k, inner)`.
pub(crate) fn gather<T: Copy>(
    src: &[T],
    outer: usize,
    axis: usize,
    inner: usize,
    idx: &[usize],
) -> Vec<T> {
    let k = idx.len() / (outer * inner).max(1);
    let mut out = Vec::with_capacity(idx.len());
    for o in 0..outer {
        for j in 0..k {
            for i in 0..inner {
                let t = idx[(o * k + j) * inner + i];
                out.push(src[(o * axis + t) * inner + i]);
            }
        }
    }
    out
}

/// The adjoint of [`gather`]: `out[o, idx[o, j, i], i] += src[o, j, i]`.
pub(crate) fn scatter_add<T: crate::Element>(
    src: &[T],
    outer: usize,
    size: usize,
    inner: usize,
    idx: &[usize],
) -> Vec<T> {
    let k = idx.len() / (outer * inner).max(1);
    let mut out = vec![T::zero(); outer * size * inner];
    for o in 0..outer {
        for j in 0..k {
            for i in 0..inner {
                let p = (o * k + j) * inner + i;
                let to = (o * size + idx[p]) * inner + i;
                out[to] = out[to] + src[p];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::in_pool;

    /// Single-element selections and their adjoint, large enough to be
    /// split across threads: their definitions, on any number of threads.
    #[test]
    fn single_element_paths_match_their_definitions_on_threads() {
        let (outer, axis) = (600, 200);
        let src: Vec<f64> = (0..outer * axis).map(|i| i as f64).collect();
        let idx: Vec<usize> = (0..450).map(|j| j * 7 % axis).collect();
        assert!(outer * idx.len() >= crate::kernels::PARALLEL_MIN);
        for threads in [1, 2, 3] {
            let picked = in_pool(threads, || index_select(&src, outer, axis, 1, &idx));
            for o in 0..outer {
                for (j, &i) in idx.iter().enumerate() {
                    assert_eq!(picked[o * idx.len() + j], src[o * axis + i]);
                }
            }
            let summed = in_pool(threads, || index_add(&picked, outer, axis, 1, &idx));
            let mut expected = vec![0.0; outer * axis];
            for o in 0..outer {
                for (j, &i) in idx.iter().enumerate() {
                    expected[o * axis + i] += picked[o * idx.len() + j];
                }
            }
            assert_eq!(summed, expected);
        }
    }
}
