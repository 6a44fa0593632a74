//! Indexing kernels on row-major buffers viewed as `(outer, axis, inner)`.

/// `out[o, j, i] = src[o, idx[j], i]`.
pub(crate) fn index_select<T: Copy>(
    src: &[T],
    outer: usize,
    axis: usize,
    inner: usize,
    idx: &[usize],
) -> Vec<T> {
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    if inner == 1 {
        // Single elements (im2col's windows): a gather, not a copy per entry.
        for row in src.chunks_exact(axis.max(1)).take(outer) {
            out.extend(idx.iter().map(|&j| row[j]));
        }
        return out;
    }
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
        let rows = out
            .chunks_exact_mut(size.max(1))
            .zip(src.chunks_exact(idx.len().max(1)));
        for (to, from) in rows {
            for (&t, &v) in idx.iter().zip(from) {
                to[t] = to[t] + v;
            }
        }
        return out;
    }
    for o in 0..outer {
        for (j, &t) in idx.iter().enumerate() {
            let from = (o * idx.len() + j) * inner;
            let to = (o * size + t) * inner;
            for i in 0..inner {
                out[to + i] = out[to + i] + src[from + i];
            }
        }
    }
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
