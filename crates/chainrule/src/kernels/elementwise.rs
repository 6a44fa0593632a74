//! Elementwise maps over one, two or three (broadcast) inputs.

use super::{parallel, PARALLEL_MIN};
use crate::layout::{coalesce, for_each_run, Layout};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per task of a threaded elementwise kernel.
const CHUNK: usize = PARALLEL_MIN / 4;

/// `n` outputs computed across the pool: `fill(chunk, start)` writes
/// outputs `start..start + chunk.len()` in an ordinary loop that the
/// compiler inlines and vectorizes (a per-element closure behind rayon's
/// iterator adaptors does neither).
///
/// # Safety
/// `fill` must write every slot of the chunk it is given.
unsafe fn par_fill<U, F>(n: usize, fill: F) -> Vec<U>
where
    U: Send,
    F: Fn(&mut [MaybeUninit<U>], usize) + Sync,
{
    let mut out = Vec::with_capacity(n);
    out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| fill(chunk, c * CHUNK));
    // SAFETY: the chunks cover `0..n` and `fill` writes every slot of its
    // chunk (the caller's contract).
    unsafe { out.set_len(n) };
    out
}

/// `f` applied to every element of a view, in row-major order.
pub(crate) fn map<T, U, F>(src: &[T], layout: &Layout, f: F) -> Vec<U>
where
    T: Copy + Send + Sync,
    U: Send,
    F: Fn(T) -> U + Sync,
{
    match layout.contiguous_range() {
        Some(r) => {
            let s = &src[r];
            if parallel(s.len()) {
                // SAFETY: `s[start..]` is at least as long as each chunk
                // (`s` has `n` elements), so the zip writes every slot.
                unsafe {
                    par_fill(s.len(), |out, start| {
                        for (o, &x) in out.iter_mut().zip(&s[start..]) {
                            o.write(f(x));
                        }
                    })
                }
            } else {
                s.iter().map(|&x| f(x)).collect()
            }
        }
        None => {
            let [l] = coalesce([layout]);
            let mut out = Vec::with_capacity(l.numel());
            for_each_run(&l, |start, len, stride| {
                out.extend((0..len).map(|j| f(src[start + j * stride])));
            });
            out
        }
    }
}

/// A copy of a view into a fresh row-major buffer.
pub(crate) fn materialize<T: Copy + Send + Sync>(src: &[T], layout: &Layout) -> Vec<T> {
    match layout.contiguous_range() {
        Some(r) => src[r].to_vec(),
        None => {
            let [l] = coalesce([layout]);
            let mut out = Vec::with_capacity(l.numel());
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
    U: Send,
    F: Fn(T, T) -> U + Sync,
{
    debug_assert_eq!(la.shape, lb.shape);
    let n = la.numel();
    match (la.contiguous_range(), lb.contiguous_range()) {
        (Some(ra), Some(rb)) => {
            let (a, b) = (&a[ra], &b[rb]);
            if parallel(n) {
                // Checked in release too: the zip below must cover every slot.
                assert!(
                    a.len() == n && b.len() == n,
                    "zip: operands of {n} elements"
                );
                // SAFETY: `a` and `b` have `n` elements, so `a[start..]` and
                // `b[start..]` are at least as long as each chunk.
                unsafe {
                    par_fill(n, |out, start| {
                        for ((o, &x), &y) in out.iter_mut().zip(&a[start..]).zip(&b[start..]) {
                            o.write(f(x, y));
                        }
                    })
                }
            } else {
                a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect()
            }
        }
        _ if la.shape.is_empty() => vec![f(a[la.offset], b[lb.offset])],
        // One side a broadcast scalar (every stride 0): a map over the other.
        (Some(ra), None) if lb.strides.iter().all(|&s| s == 0) => {
            let y = b[lb.offset];
            a[ra].iter().map(|&x| f(x, y)).collect()
        }
        (None, Some(rb)) if la.strides.iter().all(|&s| s == 0) => {
            let x = a[la.offset];
            b[rb].iter().map(|&y| f(x, y)).collect()
        }
        _ => {
            // Walk the outer axes with offset iterators and the innermost axis
            // with plain strides: the common `(n, c) + (c,)` bias case stays fast.
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
            let mut out = Vec::with_capacity(n);
            for (pa, pb) in oa.offsets().zip(ob.offsets()) {
                // The common runs as plain slices (they vectorize): a row
                // against a row, or a row against one broadcast value.
                match (sa, sb) {
                    (1, 1) => out.extend(
                        a[pa..pa + inner]
                            .iter()
                            .zip(&b[pb..pb + inner])
                            .map(|(&x, &y)| f(x, y)),
                    ),
                    (1, 0) => {
                        let y = b[pb];
                        out.extend(a[pa..pa + inner].iter().map(|&x| f(x, y)))
                    }
                    (0, 1) => {
                        let x = a[pa];
                        out.extend(b[pb..pb + inner].iter().map(|&y| f(x, y)))
                    }
                    _ => out.extend((0..inner).map(|j| f(a[pa + j * sa], b[pb + j * sb]))),
                }
            }
            out
        }
    }
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
    F: Fn(C, T, T) -> T,
{
    let (c, a, b) = (Run::of(c, lc), Run::of(a, la), Run::of(b, lb));
    (0..lc.numel())
        .map(|i| f(c.at(i), a.at(i), b.at(i)))
        .collect()
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

    #[inline(always)]
    fn at(&self, i: usize) -> T {
        match self {
            Run::Slice(s) => s[i],
            Run::Value(v) => *v,
            Run::Owned(v) => v[i],
        }
    }
}

/// `1 / (1 + e^{-x})`, never exponentiating a large positive number.
#[inline(always)]
pub(crate) fn sigmoid<T: crate::Element>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
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

/// `tanh` of an `f32`, evaluated in `f64` without a branch so that loops
/// over it vectorize (glibc's `tanhf` branches and calls `expm1f`: about
/// 13 ns an element here). `e = expm1(2|x|)` by `2^k · e^r` with
/// `|r| ≤ ln2/2` and a degree-9 series, then `tanh |x| = e / (e + 2)`:
/// no cancellation near 0, and `f64` keeps the result within one `f32`
/// ulp of the correctly rounded value (`tests::tanh_f32_is_within_an_ulp`).
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    // 1.5 · 2^52: adding it rounds to an integer, held in the low bits.
    const ROUND: f64 = 6755399441055744.0;
    // tanh(9.5) is 1 in f32.
    let y = 2.0 * (x.abs() as f64).min(9.5);
    let shifted = y * std::f64::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = y - k * std::f64::consts::LN_2;
    // 2^k from k's bits (0 ≤ k ≤ 28).
    let scale = f64::from_bits((shifted.to_bits() << 52).wrapping_add(1023 << 52));
    let mut series = 1.0 / 3_628_800.0; // 1/10!
    for d in [
        362_880.0, 40_320.0, 5_040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0,
    ] {
        series = series * r + 1.0 / d;
    }
    let expm1 = scale * (r * series) + (scale - 1.0);
    let t = ((expm1 / (expm1 + 2.0)) as f32).copysign(x);
    if x.is_nan() {
        x
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::tanh_f32;

    #[test]
    fn tanh_f32_is_within_an_ulp() {
        let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        // Every 997th f32 from 0 up to 12, both signs, and the edges.
        let mut worst = 0;
        for bits in (0..12.0f32.to_bits()).step_by(997) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let exact = (x as f64).tanh() as f32;
                worst = worst.max(ulps(tanh_f32(x), exact));
            }
        }
        assert!(worst <= 1, "{worst} ulps");
        for (x, t) in [
            (0.0f32, 0.0f32),
            (1e-30, 1e-30),
            (100.0, 1.0),
            (-100.0, -1.0),
        ] {
            assert_eq!(tanh_f32(x), t);
        }
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
        assert!(tanh_f32(f32::NAN).is_nan());
        assert!(tanh_f32(-0.0).is_sign_negative());
    }
}
