//! Elementwise maps over one, two or three (broadcast) inputs.

use super::{parallel, task_len, wide};
use crate::layout::{coalesce, for_each_run, Layout};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `n` outputs, `fill(chunk, start)` writing outputs `start..start +
/// chunk.len()`: in chunks of `per_task` across the pool when `threaded`,
/// else in one call. Callers pass `|out, start| wide(#[inline(always)] || map_into(..))`: the loop is
/// then inlined into [`wide`]'s dispatch, so it vectorizes for the CPU's
/// widest registers (a `wide` here would call an outlined `fill`, compiled
/// for the baseline).
///
/// # Safety
/// `fill` must write every slot of the chunk it is given.
pub(crate) unsafe fn fill<U, F>(n: usize, threaded: bool, per_task: usize, fill: F) -> Vec<U>
where
    U: Send + Copy,
    F: Fn(&mut [MaybeUninit<U>], usize) + Sync,
{
    let mut out = crate::memory::vec_with_capacity(n);
    let spare = &mut out.spare_capacity_mut()[..n];
    if threaded {
        spare
            .par_chunks_mut(per_task)
            .enumerate()
            .for_each(|(c, chunk)| fill(chunk, c * per_task));
    } else {
        fill(spare, 0);
    }
    // SAFETY: the chunks cover `0..n` and `fill` writes every slot of its
    // chunk (the caller's contract).
    unsafe { out.set_len(n) };
    out
}

/// `out[i] = f(src[i])` for the first `out.len()` elements, an ordinary
/// loop (inlined, so that it vectorizes with its caller's features).
#[inline(always)]
fn map_into<T: Copy, U>(out: &mut [MaybeUninit<U>], src: &[T], f: &impl Fn(T) -> U) {
    assert!(src.len() >= out.len(), "map: a short operand");
    for (o, &x) in out.iter_mut().zip(src) {
        o.write(f(x));
    }
}

/// `out[i] = f(a[i], b[i])` for the first `out.len()` elements.
#[inline(always)]
fn zip_into<T: Copy, U>(out: &mut [MaybeUninit<U>], a: &[T], b: &[T], f: &impl Fn(T, T) -> U) {
    assert!(
        a.len() >= out.len() && b.len() >= out.len(),
        "zip: a short operand"
    );
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        o.write(f(x, y));
    }
}

/// `f` applied to every element of a view, in row-major order.
pub(crate) fn map<T, U, F>(src: &[T], layout: &Layout, f: F) -> Vec<U>
where
    T: Copy + Send + Sync,
    U: Send + Copy,
    F: Fn(T) -> U + Sync,
{
    match layout.contiguous_range() {
        Some(r) => {
            let s = &src[r];
            // SAFETY: `map_into` writes every slot of the chunk (it checks
            // that `s[start..]` is at least as long).
            unsafe {
                fill(
                    s.len(),
                    parallel(s.len()),
                    task_len(s.len(), 1),
                    |out, at| {
                        wide(
                            #[inline(always)]
                            || map_into(out, &s[at..], &f),
                        )
                    },
                )
            }
        }
        None => {
            let [l] = coalesce([layout]);
            let mut out = crate::memory::vec_with_capacity(l.numel());
            for_each_run(&l, |start, len, stride| {
                out.extend((0..len).map(|j| f(src[start + j * stride])));
            });
            out
        }
    }
}

/// Elements per block of [`map_blocks`]: one AVX-512 vector of `f64`.
pub(crate) const BLOCK: usize = 8;

/// [`map`] for an element function `one` with a form `block` on [`BLOCK`]
/// elements at a time (the same values): where the dtype runs faster in
/// blocks (`Element::FASTER_IN_BLOCKS`), a contiguous view runs `block` on
/// each whole block and `one` on the rest; otherwise [`map`] of `one`.
pub(crate) fn map_blocks<T, B, F>(src: &[T], layout: &Layout, block: B, one: F) -> Vec<T>
where
    T: crate::Element,
    B: Fn([T; BLOCK]) -> [T; BLOCK] + Sync,
    F: Fn(T) -> T + Sync,
{
    let Some(r) = layout.contiguous_range().filter(|_| T::FASTER_IN_BLOCKS) else {
        return map(src, layout, one);
    };
    let s = &src[r];
    // SAFETY: the closure writes every slot of its chunk (`blocks_into`
    // checks that `s[start..]` is at least as long).
    unsafe {
        fill(
            s.len(),
            parallel(s.len()),
            task_len(s.len(), BLOCK),
            |out, at| {
                wide(
                    #[inline(always)]
                    || blocks_into(out, &s[at..], &block, &one),
                )
            },
        )
    }
}

/// `out[i] = f(src[i])` by whole blocks through `block`, the rest through
/// `one`.
#[inline(always)]
fn blocks_into<T: Copy, U>(
    out: &mut [MaybeUninit<U>],
    src: &[T],
    block: &impl Fn([T; BLOCK]) -> [U; BLOCK],
    one: &impl Fn(T) -> U,
) {
    assert!(src.len() >= out.len(), "map: a short operand");
    let whole = out.len() / BLOCK * BLOCK;
    let mut outs = out.chunks_exact_mut(BLOCK);
    for (o, x) in (&mut outs).zip(src[..whole].chunks_exact(BLOCK)) {
        let x: [T; BLOCK] = x.try_into().expect("a whole block");
        for (o, y) in o.iter_mut().zip(block(x)) {
            o.write(y);
        }
    }
    map_into(outs.into_remainder(), &src[whole..], one);
}

/// `x = f(x)` for each element of `xs`: by whole blocks through `block`
/// and the rest through `one` where the dtype runs faster in blocks, else
/// all through `one` (inlined: callers wrap it in [`wide`]).
#[inline(always)]
pub(crate) fn update_blocks<T: crate::Element>(
    xs: &mut [T],
    block: impl Fn([T; BLOCK]) -> [T; BLOCK],
    one: impl Fn(T) -> T,
) {
    if !T::FASTER_IN_BLOCKS {
        xs.iter_mut().for_each(|x| *x = one(*x));
        return;
    }
    let mut blocks = xs.chunks_exact_mut(BLOCK);
    for x in &mut blocks {
        let y = block(x[..].try_into().expect("a whole block"));
        x.copy_from_slice(&y);
    }
    blocks
        .into_remainder()
        .iter_mut()
        .for_each(|x| *x = one(*x));
}

/// A copy of a view into a fresh row-major buffer.
pub(crate) fn materialize<T: Copy + Send + Sync>(src: &[T], layout: &Layout) -> Vec<T> {
    match layout.contiguous_range() {
        Some(r) => {
            let mut out = crate::memory::vec_with_capacity(r.len());
            out.extend_from_slice(&src[r]);
            out
        }
        None => {
            let [l] = coalesce([layout]);
            let mut out = crate::memory::vec_with_capacity(l.numel());
            for_each_run(&l, |start, len, stride| {
                if stride == 1 {
                    out.extend_from_slice(&src[start..start + len]);
                } else {
                    out.extend((0..len).map(|j| src[start + j * stride]));
                }
            });
            out
        }
    }
}

/// `f(a, b)` over two views already broadcast to the same shape.
pub(crate) fn zip<T, U, F>(a: &[T], la: &Layout, b: &[T], lb: &Layout, f: F) -> Vec<U>
where
    T: Copy + Send + Sync,
    U: Send + Copy,
    F: Fn(T, T) -> U + Sync,
{
    debug_assert_eq!(la.shape, lb.shape);
    let n = la.numel();
    let scalar = |l: &Layout| l.strides.iter().all(|&s| s == 0);
    // SAFETY (each `fill`): `map_into` and `zip_into` write every slot of
    // their chunk, checking that the operands are at least as long.
    match (la.contiguous_range(), lb.contiguous_range()) {
        (Some(ra), Some(rb)) => {
            let (a, b) = (&a[ra], &b[rb]);
            unsafe {
                fill(n, parallel(n), task_len(n, 1), |out, s| {
                    wide(
                        #[inline(always)]
                        || zip_into(out, &a[s..], &b[s..], &f),
                    )
                })
            }
        }
        _ if la.shape.is_empty() => vec![f(a[la.offset], b[lb.offset])],
        // One side a broadcast scalar (every stride 0): a map over the other.
        (Some(ra), None) if scalar(lb) => {
            let (a, y) = (&a[ra], b[lb.offset]);
            unsafe {
                fill(n, parallel(n), task_len(n, 1), |out, s| {
                    wide(
                        #[inline(always)]
                        || map_into(out, &a[s..], &|x| f(x, y)),
                    )
                })
            }
        }
        (None, Some(rb)) if scalar(la) => {
            let (x, b) = (a[la.offset], &b[rb]);
            unsafe {
                fill(n, parallel(n), task_len(n, 1), |out, s| {
                    wide(
                        #[inline(always)]
                        || map_into(out, &b[s..], &|y| f(x, y)),
                    )
                })
            }
        }
        _ => zip_rows(a, la, b, lb, f),
    }
}

/// [`zip`] of two strided views: the outer axes walked with offset
/// iterators, the innermost axis with plain strides, so that the common
/// `(n, c) + (c,)` bias case runs as vectorized rows (blocks of rows
/// across the pool when large).
fn zip_rows<T, U, F>(a: &[T], la: &Layout, b: &[T], lb: &Layout, f: F) -> Vec<U>
where
    T: Copy + Send + Sync,
    U: Send + Copy,
    F: Fn(T, T) -> U + Sync,
{
    let [la, lb] = coalesce([la, lb]);
    if la.shape.is_empty() {
        return vec![f(a[la.offset], b[lb.offset])];
    }
    let inner = *la.shape.last().unwrap();
    let (sa, sb) = (*la.strides.last().unwrap(), *lb.strides.last().unwrap());
    let outer = |l: &Layout| {
        let mut o = l.clone();
        o.shape.pop();
        o.strides.pop();
        o
    };
    let (oa, ob) = (outer(&la), outer(&lb));
    let n = la.numel();
    if inner == 0 {
        return Vec::new();
    }
    // Each row's start in `a` and `b`: by arithmetic over one outer axis
    // (a matrix plus a row), else by walking the outer offsets once.
    let walked: Vec<(usize, usize)> = match oa.shape.len() {
        1 => Vec::new(),
        _ => oa.offsets().zip(ob.offsets()).collect(),
    };
    let start_of = |row: usize| match oa.shape.len() {
        1 => (
            oa.offset + row * oa.strides[0],
            ob.offset + row * ob.strides[0],
        ),
        _ => walked[row],
    };
    // SAFETY: there are `n / inner` rows, so the rows of a chunk cover it,
    // and each arm writes its whole row.
    unsafe {
        fill(n, parallel(n), task_len(n, inner), |out, at| {
            let starts = (at / inner..).map(start_of);
            wide(
                #[inline(always)]
                || {
                    for (row, (pa, pb)) in out.chunks_exact_mut(inner).zip(starts) {
                        match (sa, sb) {
                            (1, 1) => zip_into(row, &a[pa..pa + inner], &b[pb..pb + inner], &f),
                            (1, 0) => map_into(row, &a[pa..pa + inner], &|x| f(x, b[pb])),
                            (0, 1) => map_into(row, &b[pb..pb + inner], &|y| f(a[pa], y)),
                            _ => {
                                for (j, o) in row.iter_mut().enumerate() {
                                    o.write(f(a[pa + j * sa], b[pb + j * sb]));
                                }
                            }
                        }
                    }
                },
            )
        })
    }
}

/// `acc += alpha · g` elementwise, `g` a view of `acc`'s shape (often a
/// broadcast one, as a mean's gradient): run by run, vectorized, across
/// the pool when large.
pub(crate) fn accumulate<T: crate::Element>(acc: &mut [T], g: &[T], lg: &Layout, alpha: T) {
    let step = |acc: &mut [T], g: &[T]| {
        wide(
            #[inline(always)]
            || {
                for (a, &x) in acc.iter_mut().zip(g) {
                    *a = *a + alpha * x;
                }
            },
        )
    };
    if let Some(r) = lg.contiguous_range() {
        let g = &g[r];
        assert_eq!(acc.len(), g.len(), "accumulate: operands of one length");
        if parallel(acc.len()) {
            let per = task_len(acc.len(), 1);
            acc.par_chunks_mut(per)
                .zip(g.par_chunks(per))
                .for_each(|(acc, g)| step(acc, g));
        } else {
            step(acc, g);
        }
        return;
    }
    let [l] = coalesce([lg]);
    let mut at = 0;
    for_each_run(&l, |start, len, stride| {
        let acc = &mut acc[at..at + len];
        match stride {
            1 => step(acc, &g[start..start + len]),
            0 => {
                // The same product as the loop's, computed once.
                let x = alpha * g[start];
                wide(
                    #[inline(always)]
                    || acc.iter_mut().for_each(|a| *a = *a + x),
                )
            }
            _ => {
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = *a + alpha * g[start + j * stride];
                }
            }
        }
        at += len;
    });
}

/// `f(c, a, b)` over three views already broadcast to the same shape.
pub(crate) fn zip3<C, T, F>(
    c: &[C],
    lc: &Layout,
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    f: F,
) -> Vec<T>
where
    C: Copy + Send + Sync,
    T: Copy + Send + Sync,
    F: Fn(C, T, T) -> T + Sync,
{
    let n = lc.numel();
    let (c, a, b) = (Run::of(c, lc), Run::of(a, la), Run::of(b, lb));
    // One loop per combination of runs and broadcast values, so that each
    // is a plain loop over slices (which vectorizes).
    macro_rules! go {
        ($c:expr, $a:expr, $b:expr) => {
            // SAFETY: the loop writes every slot of its chunk.
            unsafe {
                fill(n, parallel(n), task_len(n, 1), |out, s| {
                    let len = out.len();
                    let (c, a, b) = ($c.part(s, len), $a.part(s, len), $b.part(s, len));
                    wide(
                        #[inline(always)]
                        || {
                            for (i, o) in out.iter_mut().enumerate() {
                                o.write(f(c.at(i), a.at(i), b.at(i)));
                            }
                        },
                    )
                })
            }
        };
    }
    use Operand::{Each as E, Splat as V};
    match (c.operand(), a.operand(), b.operand()) {
        (E(c), E(a), E(b)) => go!(c, a, b),
        (E(c), E(a), V(b)) => go!(c, a, b),
        (E(c), V(a), E(b)) => go!(c, a, b),
        (E(c), V(a), V(b)) => go!(c, a, b),
        (V(c), E(a), E(b)) => go!(c, a, b),
        (V(c), E(a), V(b)) => go!(c, a, b),
        (V(c), V(a), E(b)) => go!(c, a, b),
        (V(c), V(a), V(b)) => go!(c, a, b),
    }
}

/// An operand of [`zip3`] as a row-major run: borrowed when the view is
/// one, a single value when broadcast from one, else copied into one.
enum Run<'a, T> {
    Slice(&'a [T]),
    Value(T),
    Owned(Vec<T>),
}

impl<'a, T: Copy + Send + Sync> Run<'a, T> {
    fn of(data: &'a [T], layout: &Layout) -> Self {
        match layout.contiguous_range() {
            Some(r) => Run::Slice(&data[r]),
            None if layout.strides.iter().all(|&s| s == 0) => Run::Value(data[layout.offset]),
            None => Run::Owned(materialize(data, layout)),
        }
    }

    fn operand(&self) -> Operand<'_, T> {
        match self {
            Run::Slice(s) => Operand::Each(Each(s)),
            Run::Owned(v) => Operand::Each(Each(v)),
            Run::Value(v) => Operand::Splat(Splat(*v)),
        }
    }
}

enum Operand<'a, T> {
    Each(Each<'a, T>),
    Splat(Splat<T>),
}

/// One value per element.
#[derive(Clone, Copy)]
struct Each<'a, T>(&'a [T]);

/// One value for every element.
#[derive(Clone, Copy)]
struct Splat<T>(T);

impl<T: Copy> Each<'_, T> {
    /// Elements `start..start + len`.
    fn part(self, start: usize, len: usize) -> Self {
        Each(&self.0[start..start + len])
    }

    #[inline(always)]
    fn at(&self, i: usize) -> T {
        self.0[i]
    }
}

impl<T: Copy> Splat<T> {
    fn part(self, _: usize, _: usize) -> Self {
        self
    }

    #[inline(always)]
    fn at(&self, _: usize) -> T {
        self.0
    }
}

/// `1 / (1 + e^{-x})`, never exponentiating a large positive number.
#[inline(always)]
pub(crate) fn sigmoid<T: crate::Element>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp_vectorizable())
    } else {
        let e = x.exp_vectorizable();
        e / (T::one() + e)
    }
}

/// `-1`, `0` or `1` (NaN gives 0).
#[inline(always)]
pub(crate) fn sign<T: crate::Element>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::in_pool;

    /// `where` over every mix of runs, broadcast values and strided views,
    /// large enough to be split across threads: the definition, elementwise.
    #[test]
    fn zip3_matches_its_definition_on_every_operand_kind() {
        let shape = [256, 1024];
        let n = 256 * 1024;
        assert!(n >= crate::kernels::PARALLEL_MIN);
        let cond: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..n).map(|i| -(i as f32)).collect();
        let dense = Layout::contiguous(&shape);
        let splat = Layout::contiguous(&[]).broadcast_to(&shape).unwrap();
        let transposed = Layout::contiguous(&[1024, 256]).permute(&[1, 0]);
        let kinds = [&dense, &splat, &transposed];
        let at = |l: &Layout, i: usize| {
            let (r, c) = (i / 1024, i % 1024);
            l.offset + r * l.strides[0] + c * l.strides[1]
        };
        for lc in kinds {
            for la in kinds {
                for lb in kinds {
                    let pick = |c: bool, x: f32, y: f32| if c { x } else { y };
                    let run = || zip3(&cond, lc, &a, la, &b, lb, pick);
                    let (one, two) = (in_pool(1, run), in_pool(2, run));
                    assert!(one == two);
                    for (i, &v) in one.iter().enumerate() {
                        assert_eq!(v, pick(cond[at(lc, i)], a[at(la, i)], b[at(lb, i)]));
                    }
                }
            }
        }
    }
}
