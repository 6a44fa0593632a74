//! Reductions over a set of axes.

use super::elementwise::fill;
use super::{parallel, task_len, wide};
use crate::layout::Layout;
use rayon::prelude::*;

/// Folds the `axes` of a view with `fold`, starting each group from `init`.
/// Returns the kept-axes values in row-major order (the keepdim layout and the
/// squeezed layout have the same order). Each output folds its group in the
/// same order whatever the threads, so the result never depends on them.
/// A contiguous run folds into `N` accumulators ([`ORDERED`] or
/// [`ANY_ORDER`], see [`fold_run`]).
pub(crate) fn reduce<T, F, const N: usize>(
    src: &[T],
    layout: &Layout,
    axes: &[usize],
    init: T,
    fold: F,
) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(T, T) -> T + Sync,
{
    let nd = layout.shape.len();
    let kept: Vec<usize> = (0..nd).filter(|a| !axes.contains(a)).collect();
    let group: usize = axes.iter().map(|&a| layout.shape[a]).product();
    let outer: usize = kept.iter().map(|&a| layout.shape[a]).product();
    if group == 0 {
        return vec![init; outer];
    }
    // A contiguous input reduced over one block of adjacent axes (the batch
    // axis of a bias gradient): fold whole rows at a time, which vectorizes.
    let block = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if let (Some(r), true, Some(&last)) = (layout.contiguous_range(), block, axes.last()) {
        let inner: usize = layout.shape[last + 1..].iter().product();
        if inner > 1 {
            return fold_rows(&src[r], group, inner, init, &fold);
        }
    }
    // Kept axes first, reduced axes last: every group is then one run of the
    // iteration order.
    let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
    let view = layout.permute(&perm);
    let dense;
    let runs = match view.contiguous_range() {
        Some(r) => &src[r],
        None => {
            // Copy the permuted view into row-major order (run by run): the
            // same order as walking the view.
            dense = super::elementwise::materialize(src, &view);
            &dense[..]
        }
    };
    // SAFETY: each call writes every slot of its chunk of outputs.
    unsafe {
        fill(
            outer,
            parallel(runs.len()),
            task_len(outer, 1),
            |out, start| {
                let runs = &runs[start * group..];
                wide(
                    #[inline(always)]
                    || {
                        for (o, run) in out.iter_mut().zip(runs.chunks_exact(group)) {
                            o.write(fold_run::<T, F, N>(run, init, &fold));
                        }
                    },
                )
            },
        )
    }
}

/// `outer` blocks of `group` rows of `inner` values, each block folded
/// row by row into one row: across threads by blocks and by columns.
fn fold_rows<T, F>(src: &[T], group: usize, inner: usize, init: T, fold: &F) -> Vec<T>
where
    T: Copy + Send + Sync,
    F: Fn(T, T) -> T + Sync,
{
    let mut out = crate::memory::filled_vec(src.len() / group, init);
    let columns = |(acc, block): (&mut [T], &[T]), first: usize| {
        wide(
            #[inline(always)]
            || {
                for row in block.chunks_exact(inner) {
                    for (a, &x) in acc.iter_mut().zip(&row[first..]) {
                        *a = fold(*a, x);
                    }
                }
            },
        )
    };
    if parallel(src.len()) {
        // Columns in one block per thread, in whole cache lines.
        let per = task_len(inner, 16);
        out.par_chunks_mut(inner)
            .zip(src.par_chunks_exact(group * inner))
            .for_each(|(acc, block)| {
                acc.par_chunks_mut(per)
                    .enumerate()
                    .for_each(|(c, acc)| columns((acc, block), c * per));
            });
    } else {
        for pair in out.chunks_mut(inner).zip(src.chunks_exact(group * inner)) {
            columns(pair, 0);
        }
    }
    out
}

/// Accumulators for a fold whose result depends on its order (a float
/// sum): one vector of AVX-512's eight `f64` lanes. Their number fixes
/// every sum's rounding, so it stays.
pub(crate) const ORDERED: usize = 8;

/// Accumulators for a fold whose value is the same in any order (integer
/// sums, `and`, `or`; a float max or min up to the sign of a zero and
/// which NaN) over a run of [`LONG_RUN`] or more: four vectors, so that
/// four chains of compare-and-select run side by side, not one.
pub(crate) const ANY_ORDER: usize = 32;

/// The shortest run that folds into more than [`ORDERED`] accumulators:
/// below it, folding the extra accumulators together costs more than the
/// side-by-side chains save (BENCHMARKS, thirteenth GradBench pass).
const LONG_RUN: usize = 1024;

/// One contiguous run folded with `N` independent accumulators (so the loop
/// vectorizes), then combined. Deterministic: the order depends only on the
/// run's length. Runs under [`LONG_RUN`] fold into eight, and under 32
/// elements one by one.
#[inline(always)]
pub(crate) fn fold_run<T: Copy, F: Fn(T, T) -> T, const N: usize>(
    run: &[T],
    init: T,
    fold: &F,
) -> T {
    if N > ORDERED && run.len() < LONG_RUN {
        return fold_run::<T, F, ORDERED>(run, init, fold);
    }
    if run.len() < 32 {
        return run.iter().fold(init, |acc, &x| fold(acc, x));
    }
    let mut acc = [init; N];
    let chunks = run.chunks_exact(N);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..N {
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
    let runs = layout.permute(&perm);
    // Runs already laid out one after the other (argmin over a matrix's
    // rows) are read in place, not copied first.
    let dense = match runs.contiguous_range() {
        Some(r) => std::borrow::Cow::Borrowed(&src[r]),
        None => std::borrow::Cow::Owned(super::elementwise::materialize(src, &runs)),
    };
    let mut out = Vec::with_capacity(dense.len() / len);
    let mut groups = dense.chunks_exact(ARG_ROWS * len);
    for group in &mut groups {
        out.extend(arg_reduce_rows::<T, F, ARG_ROWS>(group, len, &better).map(|b| b as i64));
    }
    for run in groups.remainder().chunks_exact(len) {
        out.push(arg_reduce_rows::<T, F, 1>(run, len, &better)[0] as i64);
    }
    out
}

/// How many runs [`arg_reduce`] takes side by side.
const ARG_ROWS: usize = 8;

/// The best index of each of the `R` runs of `len` in `group`, found side
/// by side without a branch: one run's chain of comparisons waits on each
/// comparison before (and a branch on it mispredicts about twice a run of
/// random values), eight independent chains do not.
#[inline(always)]
fn arg_reduce_rows<T: Copy, F: Fn(T, T) -> bool, const R: usize>(
    group: &[T],
    len: usize,
    better: &F,
) -> [usize; R] {
    let mut best = [0; R];
    let mut value: [T; R] = std::array::from_fn(|r| group[r * len]);
    for i in 1..len {
        for r in 0..R {
            let x = group[r * len + i];
            let take = better(x, value[r]);
            best[r] = if take { i } else { best[r] };
            value[r] = if take { x } else { value[r] };
        }
    }
    best
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::in_pool;

    /// Runs taken eight side by side (and the rest one by one) give the
    /// first minimum of each, or its first NaN: runs of 1 to 12 values
    /// with many ties, NaNs and infinities, 8 to 23 runs.
    #[test]
    fn runs_side_by_side_take_the_first_minimum_or_nan() {
        let pick = [0.0, 1.0, 2.0, -1.0, f64::NAN, f64::INFINITY, 1.0, 0.0, 2.0];
        let better = |x: f64, best: f64| !best.is_nan() && (x.is_nan() || x < best);
        let mut seed = 7usize;
        for len in 1..=12 {
            for rows in [8, 9, 16, 23] {
                let values: Vec<f64> = (0..rows * len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        pick[(seed >> 33) % pick.len()]
                    })
                    .collect();
                let layout = Layout::contiguous(&[rows, len]);
                let got = arg_reduce(&values, &layout, 1, better);
                for (r, run) in values.chunks(len).enumerate() {
                    let first = |want: &dyn Fn(f64) -> bool| run.iter().position(|&x| want(x));
                    let min = run
                        .iter()
                        .copied()
                        .filter(|x| !x.is_nan())
                        .fold(f64::INFINITY, f64::min);
                    let want = first(&|x| x.is_nan()).or_else(|| first(&|x| x == min));
                    assert_eq!(
                        got[r],
                        want.unwrap() as i64,
                        "{rows}×{len}, run {r}: {run:?}"
                    );
                }
            }
        }
    }

    /// Max and min over long runs (32 accumulators) and short ones (8):
    /// the value of a fold in order, and NaN when a run holds one.
    #[test]
    fn max_and_min_in_any_order_match_the_fold_in_order() {
        let max = |a: f64, b: f64| if a >= b || a.is_nan() { a } else { b };
        let min = |a: f64, b: f64| if a <= b || a.is_nan() { a } else { b };
        let mut seed = 11usize;
        for len in [31, 32, 100, 1023, 1024, 1025, 1100, 5000] {
            let mut run: Vec<f64> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
                })
                .collect();
            for (init, fold) in [
                (f64::NEG_INFINITY, &max as &dyn Fn(f64, f64) -> f64),
                (f64::INFINITY, &min),
            ] {
                let want = run.iter().fold(init, |a, &x| fold(a, x));
                assert_eq!(
                    fold_run::<_, _, ANY_ORDER>(&run, init, &fold),
                    want,
                    "{len}"
                );
            }
            run[len / 3] = f64::NAN;
            assert!(fold_run::<_, _, ANY_ORDER>(&run, f64::NEG_INFINITY, &max).is_nan());
            assert!(fold_run::<_, _, ANY_ORDER>(&run, f64::INFINITY, &min).is_nan());
        }
    }

    /// Sums over every set of axes of a tensor large enough to be split
    /// across threads: the same bits on 1, 2 and 3 threads, and the sums
    /// in f64 to f32 rounding.
    #[test]
    fn threads_change_no_bits() {
        let shape = [80, 64, 64];
        let n: usize = shape.iter().product();
        assert!(n >= crate::kernels::PARALLEL_MIN);
        let src: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0)
            .collect();
        let layout = Layout::contiguous(&shape);
        for axes in [&[0][..], &[1], &[2], &[0, 1], &[1, 2], &[0, 2], &[0, 1, 2]] {
            let sum = || reduce::<_, _, ORDERED>(&src, &layout, axes, 0.0f32, |a, b| a + b);
            let alone = in_pool(1, sum);
            for threads in [2, 3] {
                assert!(
                    alone == in_pool(threads, sum),
                    "axes {axes:?}, {threads} threads"
                );
            }
            let wide = reduce::<_, _, ORDERED>(
                &src.iter().map(|&x| x as f64).collect::<Vec<_>>(),
                &layout,
                axes,
                0.0,
                |a, b| a + b,
            );
            for (s, w) in alone.iter().zip(&wide) {
                assert!(
                    (*s as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "axes {axes:?}"
                );
            }
        }
    }
}
