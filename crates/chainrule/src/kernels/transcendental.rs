//! Transcendental element functions written without a branch, so that
//! loops over them vectorize (glibc's are a call per element): `exp` and
//! `tanh` for f32 and f64, and f64 `exp` on a block of [`BLOCK`].

use super::elementwise::BLOCK;

/// `eˣ` of an `f32`, evaluated in `f64` without a branch so that loops
/// over it vectorize (glibc's `expf` is a call per element, the most of a
/// softmax's time here). `2^k · e^r` with `|r| ≤ ln2/2` and a degree-9
/// series, rounded once to `f32`: within one ulp of the correctly rounded
/// value, overflowing to ∞ and underflowing through the subnormals as
/// `expf` does (`tests::exp_f32_is_within_an_ulp`).
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    // Past these, e^x is ∞ or rounds to 0 in f32; inside, 2^k is a
    // normal f64 (−150 ≤ k ≤ 129).
    let y = (x as f64).clamp(-104.0, 89.0);
    let shifted = y * std::f64::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = y - k * std::f64::consts::LN_2;
    // 2^k from k's low bits (two's complement), biased into the exponent.
    let scale = f64::from_bits((shifted.to_bits() << 52).wrapping_add(1023 << 52));
    let mut series = 1.0 / 362_880.0; // 1/9!
    for d in [40_320.0, 5_040.0, 720.0, 120.0, 24.0, 6.0, 2.0, 1.0, 1.0] {
        series = series * r + 1.0 / d;
    }
    let e = (scale * series) as f32;
    if x.is_nan() {
        x
    } else {
        e
    }
}

/// `eˣ` of an `f64` without a branch, so that loops over it vectorize
/// (glibc's `exp` is a call per element: about 6 ns of each log-sum-exp
/// element here). `2^k · e^r` with `k = round(x / ln 2)`, `r` reduced with
/// ln 2 in two parts (the first's product with `k` exact) so `|r| ≤ ln2/2`
/// to full precision, and a degree-13 series (truncation below 10⁻¹⁷,
/// [`exp_tail`]);
/// `2^k` is applied as two halves so that the subnormal results are
/// rounded once. Within 2 ulps of glibc's `exp`, overflowing to ∞ and
/// underflowing to 0 where it does (`tests::exp_f64_is_within_two_ulps`).
#[inline(always)]
pub(crate) fn exp_f64(x: f64) -> f64 {
    // Past these e^x is ∞ or rounds to 0; inside, |k| ≤ 1077.
    let (k, r) = ln2_reduced(x.clamp(-746.0, 710.0));
    let series = exp_series(r);
    // 2^k = 2^a · 2^b, each a normal f64 (|a|, |b| ≤ 539).
    let a = (k * 0.5).floor();
    let e = series * two_to(a) * two_to(k - a);
    if x.is_nan() {
        x
    } else {
        e
    }
}

/// `eʳ` for `|r| ≤ ln2/2`: `1 + r + r²·tail(r)`.
#[inline(always)]
fn exp_series(r: f64) -> f64 {
    1.0 + (r + r * r * exp_tail(r))
}

/// Where every `eˣ` is a normal `f64`: `|x| ≤ 708` (`e^±708` is about
/// `10^±307.5`). NaN is outside.
const EXP_NORMAL: f64 = 708.0;

/// [`exp_f64`] for `|x| ≤ EXP_NORMAL`, the same bits with fewer
/// operations: `2^k` is added into the series' exponent (exact, as the
/// result is normal), with no clamp, no two-part scaling and no NaN check.
#[inline(always)]
fn exp_f64_normal(x: f64) -> f64 {
    let shifted = x * std::f64::consts::LOG2_E + ROUND;
    let (_, r) = ln2_reduced(x);
    // k is in the low bits of `shifted` (two's complement): shifted to
    // the exponent's place, adding it adds k to the exponent.
    f64::from_bits(
        exp_series(r)
            .to_bits()
            .wrapping_add(shifted.to_bits() << 52),
    )
}

/// [`exp_f64`] on a block, the same bits: a block whose inputs are all
/// within `±EXP_NORMAL` (so every result is normal) takes
/// [`exp_f64_normal`], a quarter fewer operations (a vector loop of `exp`
/// is bound by them), and any other block the general function.
#[inline(always)]
pub(crate) fn exp_f64_block(xs: [f64; BLOCK]) -> [f64; BLOCK] {
    // Plain loops: `array::map` does not vectorize here.
    let mut out = [0.0; BLOCK];
    if xs.iter().fold(true, |all, x| all & (x.abs() <= EXP_NORMAL)) {
        for (o, &x) in out.iter_mut().zip(&xs) {
            *o = exp_f64_normal(x);
        }
    } else {
        for (o, &x) in out.iter_mut().zip(&xs) {
            *o = exp_f64(x);
        }
    }
    out
}

/// 1.5 · 2^52: adding it to a float rounds it to an integer, held in the
/// low bits.
const ROUND: f64 = 6755399441055744.0;

/// `(k, r)` with `y = k·ln 2 + r`, `k` an integer and `|r| ≤ ln2/2` to
/// full precision: ln 2 is taken in two parts (fdlibm's split), the first
/// with 32 low zero bits so that `k·LN2_HIGH` is exact for `|k| < 2^21`.
#[inline(always)]
fn ln2_reduced(y: f64) -> (f64, f64) {
    const LN2_HIGH: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // 0.693147180369…
    const LN2_LOW: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // 1.908214929…e-10
    let k = (y * std::f64::consts::LOG2_E + ROUND) - ROUND;
    (k, (y - k * LN2_HIGH) - k * LN2_LOW)
}

/// `2^n` for an integer `n` with `2^n` a normal f64, from the low bits of
/// `n + ROUND` (two's complement) biased into the exponent.
#[inline(always)]
fn two_to(n: f64) -> f64 {
    f64::from_bits(((n + ROUND).to_bits() << 52).wrapping_add(1023 << 52))
}

/// `Σ_{i=2}^{13} rⁱ⁻² / i!`, the series of `eʳ` past `1 + r` over `r²`, by
/// Estrin's scheme: pairs of terms, then pairs of pairs, so its chain of
/// dependent operations is 8 deep where Horner's rule makes it 22. A
/// vector loop of `exp` is bound by that chain's latency, not by its
/// operations (the same count either way). The small terms go first and
/// `1 + r` is added last, so the sum rounds as Horner's does.
#[inline(always)]
fn exp_tail(r: f64) -> f64 {
    const C: [f64; 12] = [
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    let r2 = r * r;
    let r4 = r2 * r2;
    let pair = |i: usize| C[i] + C[i + 1] * r;
    let quad = |i: usize| pair(i) + pair(i + 2) * r2;
    quad(0) + (quad(4) + quad(8) * r4) * r4
}

/// `tanh` of an `f32`, evaluated in `f64` without a branch so that loops
/// over it vectorize (glibc's `tanhf` branches and calls `expm1f`: about
/// 13 ns an element here). `e = expm1(2|x|)` by `2^k · e^r` with
/// `|r| ≤ ln2/2` and a degree-9 series, then `tanh |x| = e / (e + 2)`:
/// no cancellation near 0, and `f64` keeps the result within one `f32`
/// ulp of the correctly rounded value (`tests::tanh_f32_is_within_an_ulp`).
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
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

/// `tanh` of an `f64` without a branch, so that loops over it vectorize
/// (glibc's `tanh` branches and calls `expm1`: a quarter of an LSTM's
/// time here). `tanh |x| = e / (e + 2)` with `e = expm1(2|x|)`, which is
/// `(2^k − 1) + 2^k · (r + r²·tail(r))` from [`exp_f64`]'s reduction
/// ([`ln2_reduced`], [`exp_tail`]): with
/// `k = 0` it is the series alone, so there is no cancellation near 0.
/// Within 3 ulps of glibc's `tanh` (`tests::tanh_f64_is_within_three_ulps`):
/// the worst are near |x| = 0.2 and 0.5, where `2^k − 1` and the series
/// part of `e` cancel one bit and two more roundings follow.
#[inline(always)]
pub(crate) fn tanh_f64(x: f64) -> f64 {
    // tanh(22) is 1 in f64; inside, 0 ≤ k ≤ 64.
    let (k, r) = ln2_reduced(2.0 * x.abs().min(22.0));
    let scale = two_to(k);
    let expm1 = scale * (r + r * r * exp_tail(r)) + (scale - 1.0);
    let t = (expm1 / (expm1 + 2.0)).copysign(x);
    if x.is_nan() {
        x
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::in_pool;

    /// The largest distance in ulps between `f` and `exact` (in f64, then
    /// rounded) over every `step`-th f32 of `±[0, up_to)`.
    fn worst_ulps(f: fn(f32) -> f32, exact: fn(f64) -> f64, up_to: f32, step: usize) -> i64 {
        let ulps = |a: f32, b: f32| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        let mut worst = 0;
        for bits in (0..up_to.to_bits()).step_by(step) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                worst = worst.max(ulps(f(x), exact(x as f64) as f32));
            }
        }
        worst
    }

    #[test]
    fn exp_f32_is_within_an_ulp() {
        // Every 499th f32 from 0 up to 110, both signs.
        let worst = worst_ulps(exp_f32, f64::exp, 110.0, 499);
        assert!(worst <= 1, "{worst} ulps");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(88.7), (88.7f32 as f64).exp() as f32);
        assert_eq!(exp_f32(-104.0), 0.0);
        assert_eq!(exp_f32(-100.0), (-100.0f64).exp() as f32); // a subnormal
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn exp_f64_is_within_two_ulps() {
        let ulps = |a: f64, b: f64| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        let mut worst = 0;
        // 200,001 points over the whole range, and a dense run near 0.
        let points = (0..=200_000)
            .map(|i| -746.0 + 1457.0 * i as f64 / 200_000.0)
            .chain((0..=20_000).map(|i| -1.0 + i as f64 / 10_000.0));
        for x in points {
            worst = worst.max(ulps(exp_f64(x), x.exp()));
        }
        assert!(worst <= 2, "{worst} ulps");
        assert_eq!(exp_f64(0.0), 1.0);
        assert_eq!(exp_f64(-0.0), 1.0);
        assert!(ulps(exp_f64(1.0), std::f64::consts::E) <= 1);
        assert!(ulps(exp_f64(709.78), 709.78f64.exp()) <= 2);
        assert_eq!(exp_f64(709.79), f64::INFINITY);
        assert!(ulps(exp_f64(-740.0), (-740.0f64).exp()) <= 1); // a subnormal
        assert_eq!(exp_f64(-745.2), 0.0);
        assert_eq!(exp_f64(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp_f64(f64::NEG_INFINITY), 0.0);
        assert!(exp_f64(f64::NAN).is_nan());
    }

    /// The block form of `exp` gives `exp_f64`'s bits: blocks all inside
    /// the normal range (a dense sweep, and its edges), and blocks with
    /// one lane outside it (subnormal, overflowing, infinite, NaN).
    #[test]
    fn exp_f64_block_matches_exp_f64() {
        let same = |xs: [f64; BLOCK]| {
            for (y, &x) in exp_f64_block(xs).iter().zip(&xs) {
                let want = exp_f64(x);
                assert!(
                    y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                    "{x}"
                );
            }
        };
        let mut x = -EXP_NORMAL;
        while x <= EXP_NORMAL {
            same(std::array::from_fn(|k| x + k as f64 * 0.0137));
            x += BLOCK as f64 * 0.0137;
        }
        let edges = [-708.0, 708.0, -707.99, 707.99, 0.0, -0.0, 1e-300, -1e-300];
        let block: [f64; BLOCK] = std::array::from_fn(|k| edges[k % edges.len()]);
        same(block);
        for odd in [
            -708.01,
            708.01,
            -740.0,
            709.5,
            710.0,
            -746.0,
            f64::INFINITY,
            f64::NAN,
        ] {
            let mut xs = block;
            xs[3] = odd;
            same(xs);
        }
    }

    /// `exp` through the block path on views of 0 to 40 elements (whole
    /// blocks and a rest) and on a strided view: `exp_f64` elementwise.
    #[test]
    fn exp_by_blocks_covers_every_element() {
        for n in 0..=40 {
            let x: Vec<f64> = (0..n).map(|i| i as f64 * 0.7 - 9.0).collect();
            let y = crate::Tensor::from_vec(x.clone(), &[n])
                .exp()
                .to_vec::<f64>();
            assert!(
                y.iter()
                    .zip(&x)
                    .all(|(y, &x)| y.to_bits() == exp_f64(x).to_bits()),
                "n={n}"
            );
            assert_eq!(y.len(), n);
        }
        let m = crate::Tensor::from_vec((0..60).map(|i| i as f64 / 7.0).collect(), &[6, 10]);
        let t = m.transpose(0, 1);
        let want: Vec<f64> = t.to_vec::<f64>().into_iter().map(exp_f64).collect();
        assert_eq!(t.exp().to_vec::<f64>(), want);
    }

    /// The same in place (`forward_in_place`, which compiled kernels'
    /// group calls run) on 0 to 40 elements, and split across two threads
    /// on a vector with a rest, some lanes outside the normal range.
    #[test]
    fn exp_by_blocks_in_place_and_on_threads() {
        let exp = crate::ops::UnaryOp::Exp {};
        for n in 0..=40 {
            let x: Vec<f64> = (0..n).map(|i| i as f64 * 37.0 - 740.0).collect();
            let mut y = x.clone();
            exp.forward_in_place(&mut y);
            assert!(
                y.iter()
                    .zip(&x)
                    .all(|(y, &x)| y.to_bits() == exp_f64(x).to_bits()),
                "n={n}"
            );
        }
        let n = crate::kernels::PARALLEL_MIN + 13;
        let x: Vec<f64> = (0..n).map(|i| (i % 2001) as f64 * 0.75 - 750.0).collect();
        let y = in_pool(2, || {
            crate::Tensor::from_vec(x.clone(), &[n])
                .exp()
                .to_vec::<f64>()
        });
        assert!(y
            .iter()
            .zip(&x)
            .all(|(y, &x)| y.to_bits() == exp_f64(x).to_bits()));
    }

    #[test]
    fn tanh_f64_is_within_three_ulps() {
        let ulps = |a: f64, b: f64| (a.to_bits() as i64 - b.to_bits() as i64).abs();
        let mut worst = 0;
        // 200,001 points up to 25, a dense run near 0, and tiny ones.
        let points = (0..=200_000)
            .map(|i| 25.0 * i as f64 / 200_000.0)
            .chain((0..=20_000).map(|i| i as f64 / 20_000.0))
            .chain((1..300).map(|e| 10f64.powi(-e)));
        for x in points {
            worst = worst.max(ulps(tanh_f64(x), x.tanh()));
            worst = worst.max(ulps(tanh_f64(-x), (-x).tanh()));
        }
        assert!(worst <= 3, "{worst} ulps");
        assert_eq!(tanh_f64(0.0), 0.0);
        assert!(tanh_f64(-0.0).is_sign_negative());
        assert_eq!(tanh_f64(5e-324), 5e-324);
        assert_eq!(tanh_f64(30.0), 1.0);
        assert_eq!(tanh_f64(f64::INFINITY), 1.0);
        assert_eq!(tanh_f64(f64::NEG_INFINITY), -1.0);
        assert!(tanh_f64(f64::NAN).is_nan());
    }

    #[test]
    fn tanh_f32_is_within_an_ulp() {
        // Every 997th f32 from 0 up to 12, both signs.
        let worst = worst_ulps(tanh_f32, f64::tanh, 12.0, 997);
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
