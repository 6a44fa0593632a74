//! Reductions over a set of axes.

use crate::layout::Layout;

/// Folds the `axes` of a view with `fold`, starting each group from `init`.
/// Returns the kept-axes values in row-major order (the keepdim layout and the
/// squeezed layout have the same order).
pub(crate) fn reduce<T, F>(src: &[T], layout: &Layout, axes: &[usize], init: T, fold: F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(T, T) -> T,
{
    let nd = layout.shape.len();
    let kept: Vec<usize> = (0..nd).filter(|a| !axes.contains(a)).collect();
    let group: usize = axes.iter().map(|&a| layout.shape[a]).product();
    let outer: usize = kept.iter().map(|&a| layout.shape[a]).product();
    if group == 0 {
        return vec![init; outer];
    }
    // A contiguous input reduced over one block of adjacent axes (the batch
    // axis of a bias gradient, the last axis of a softmax): fold whole rows
    // at a time, which vectorizes. Each output still folds its group in
    // order, so the result is the same as the general path's.
    let block = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if let (Some(r), true, Some(&last)) = (layout.contiguous_range(), block, axes.last()) {
        let inner: usize = layout.shape[last + 1..].iter().product();
        if inner > 1 {
            let src = &src[r];
            let mut out = Vec::with_capacity(outer);
            for chunk in src.chunks_exact(group * inner) {
                let mut acc = vec![init; inner];
                for row in chunk.chunks_exact(inner) {
                    for (a, &x) in acc.iter_mut().zip(row) {
                        *a = fold(*a, x);
                    }
                }
                out.extend_from_slice(&acc);
            }
            debug_assert_eq!(out.len(), outer);
            return out;
        }
    }
    // Kept axes first, reduced axes last: every group is then one run of the
    // iteration order.
    let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
    let view = layout.permute(&perm);
    match view.contiguous_range() {
        Some(r) => src[r]
            .chunks_exact(group)
            .map(|g| fold_run(g, init, &fold))
            .collect(),
        None => {
            // Copy the permuted view into row-major order (run by run), then
            // fold each group: the same order as walking the view.
            let dense = super::elementwise::materialize(src, &view);
            dense
                .chunks_exact(group)
                .map(|g| fold_run(g, init, &fold))
                .collect()
        }
    }
}

/// One contiguous run folded with eight independent accumulators (so the
/// loop vectorizes), then combined. Deterministic: the order depends only on
/// the run's length.
#[inline]
fn fold_run<T: Copy, F: Fn(T, T) -> T>(run: &[T], init: T, fold: &F) -> T {
    if run.len() < 32 {
        return run.iter().fold(init, |acc, &x| fold(acc, x));
    }
    let mut acc = [init; 8];
    let chunks = run.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            acc[k] = fold(acc[k], c[k]);
        }
    }
    let mut total = acc.iter().fold(init, |a, &x| fold(a, x));
    for &x in rest {
        total = fold(total, x);
    }
    total
}

/// For each run along `axis`, the index of the element `better` prefers:
/// `better(x, best)` says when a later `x` replaces the best so far (so at
/// ties the first index stays). Runs are in row-major order of the other
/// axes. `axis` is not empty.
pub(crate) fn arg_reduce<T, F>(src: &[T], layout: &Layout, axis: usize, better: F) -> Vec<i64>
where
    T: Copy + Send + Sync,
    F: Fn(T, T) -> bool,
{
    let len = layout.shape[axis];
    debug_assert!(len > 0, "checked by the shape function");
    let nd = layout.shape.len();
    let perm: Vec<usize> = (0..nd).filter(|&a| a != axis).chain([axis]).collect();
    let dense = super::elementwise::materialize(src, &layout.permute(&perm));
    dense
        .chunks_exact(len)
        .map(|run| {
            let mut best = 0;
            for (i, &x) in run.iter().enumerate().skip(1) {
                if better(x, run[best]) {
                    best = i;
                }
            }
            best as i64
        })
        .collect()
}

/// Running sums along `axis` (from the end when `reverse`), in row-major order.
pub(crate) fn cumulate<T, F>(
    src: &[T],
    layout: &Layout,
    axis: usize,
    reverse: bool,
    add: F,
) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(T, T) -> T,
{
    let mut out = super::elementwise::materialize(src, layout);
    let shape = &layout.shape;
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * len * inner + j * inner + i;
            if reverse {
                for j in (0..len.saturating_sub(1)).rev() {
                    out[at(j)] = add(out[at(j)], out[at(j + 1)]);
                }
            } else {
                for j in 1..len {
                    out[at(j)] = add(out[at(j - 1)], out[at(j)]);
                }
            }
        }
    }
    out
}
