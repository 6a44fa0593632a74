//! Reductions over a set of axes.

use crate::layout::Layout;

/// Folds the `axes` of a view with `fold`, starting each group from `init`.
/// Returns the kept-axes values in row-major order (the keepdim layout and the
/// squeezed layout have the same order).
pub(crate) fn reduce<T, F>(src: &[T], layout: &Layout, axes: &[usize], init: T, fold: F) -> Vec<T>
where
    T: Copy,
    F: Fn(T, T) -> T,
{
    let nd = layout.shape.len();
    let kept: Vec<usize> = (0..nd).filter(|a| !axes.contains(a)).collect();
    let group: usize = axes.iter().map(|&a| layout.shape[a]).product();
    let outer: usize = kept.iter().map(|&a| layout.shape[a]).product();
    if group == 0 {
        return vec![init; outer];
    }
    // Kept axes first, reduced axes last: every group is then one run of the
    // iteration order.
    let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
    let view = layout.permute(&perm);
    match view.contiguous_range() {
        Some(r) => src[r]
            .chunks_exact(group)
            .map(|g| g.iter().fold(init, |acc, &x| fold(acc, x)))
            .collect(),
        None => {
            let mut out = Vec::with_capacity(outer);
            let mut it = view.offsets();
            for _ in 0..outer {
                let mut acc = init;
                for o in it.by_ref().take(group) {
                    acc = fold(acc, src[o]);
                }
                out.push(acc);
            }
            out
        }
    }
}
