//! `det`: the determinant by cofactor expansion along the first row, the
//! O(ℓ!) algorithm the eval asks for (not LU), and its gradient (the
//! cofactor matrix) by reverse mode.
//!
//! The expansion is written as tensor operations rather than a scalar
//! recursion (which would record ℓ! · e scalar operations on the tape):
//! level `r` holds, for every way of choosing the columns of rows `0..=r`,
//! the product of the chosen entries; each entry of level `r` has one
//! child per column still free, so level `r + 1` is level `r` repeated
//! `ℓ − r − 1` times, times a gather from row `r + 1`. The number of
//! multiplications is the recursion's, `Σ_r ℓ!/(ℓ−r−1)! ≈ e·ℓ!`; the sum
//! of the signed products of the last level is the determinant.
//! Small ℓ are compiled ([`LARGEST_COMPILED`]).

use super::{count, finite, flat, unknown, vector};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use serde_json::Value;

/// The expansion's structure for an ℓ×ℓ matrix: for each level `r`, the
/// flat index `r·ℓ + column` of the entry each product takes from row `r`;
/// and the sign of each complete choice (a permutation).
struct Expansion {
    ell: usize,
    gathers: Vec<Vec<usize>>,
    signs: Tensor,
}

/// Larger ℓ would need more than ~2 GB for the last level alone.
const LARGEST: usize = 11;

/// Up to this ℓ both functions are compiled (`func::jit`): their levels are
/// small, a call's cost is mostly per-op overhead, and the first call's
/// trace (one eager run) is soon repaid: ℓ = 5 gradient 14.5 → 5.7 µs.
/// Beyond it the levels are millions of products, the trace of the first
/// call costs several eager runs (8.5 s against 1.4 s at ℓ = 11) and the
/// arena twice the memory, and GradBench times only a call or two.
const LARGEST_COMPILED: usize = 9;

fn expansion(ell: usize) -> Expansion {
    // Each entry: the columns still free (a bit set) and the sign so far.
    let mut level: Vec<(u32, bool)> = vec![((1u32 << ell) - 1, false)];
    let mut gathers = Vec::with_capacity(ell);
    for r in 0..ell {
        let mut gather = Vec::with_capacity(level.len() * (ell - r));
        let mut next = Vec::with_capacity(level.len() * (ell - r));
        for &(free, negative) in &level {
            // The j-th free column (in order) flips the sign when j is odd.
            let columns = (0..ell).filter(|c| free & (1 << c) != 0);
            for (j, c) in columns.enumerate() {
                gather.push(r * ell + c);
                next.push((free & !(1 << c), negative ^ (j % 2 == 1)));
            }
        }
        gathers.push(gather);
        level = next;
    }
    let signs: Vec<f64> = level
        .iter()
        .map(|&(_, negative)| if negative { -1.0 } else { 1.0 })
        .collect();
    let n = signs.len();
    Expansion {
        ell,
        gathers,
        signs: Tensor::from_vec(signs, &[n]),
    }
}

fn det(a: &Tensor, e: &Expansion) -> Tensor {
    let mut products = a.index_select(0, &e.gathers[0]);
    for r in 1..e.ell {
        let children = e.ell - r;
        let len = products.shape()[0];
        let repeated = products
            .unsqueeze(1)
            .broadcast_to(&[len, children])
            .reshape(&[len * children]);
        products = repeated * a.index_select(0, &e.gathers[r]);
    }
    (products * &e.signs).sum()
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let a = vector(input, "A")?;
    let ell = count(input, "ell")?;
    if ell == 0 || a.numel() != ell * ell {
        return Err(format!(
            "A has {} entries, expected ell² = {}",
            a.numel(),
            ell * ell
        ));
    }
    if ell > LARGEST {
        return Err(format!(
            "ℓ = {ell}: the cofactor expansion's {ell}! products do not fit in memory (at most ℓ = {LARGEST})"
        ));
    }
    // The expansion's index bookkeeping depends on ℓ only: built once,
    // before the timed calls, like a compiled program.
    let e = expansion(ell);
    let primal = func::jit(|x: &[Tensor]| det(&x[0], &e));
    let gradient = func::jit(|x: &[Tensor]| func::grad(|a| det(a, &e), &x[0]));
    let input = std::slice::from_ref(&a);
    let compiled = ell <= LARGEST_COMPILED;
    match function {
        "primal" if compiled => measure(runs, || primal.call(input), |y| finite(y.item())),
        "gradient" if compiled => measure(runs, || gradient.call(input), |g| flat(&g)),
        "primal" => measure(runs, || Ok(det(&a, &e)), |y| finite(y.item())),
        "gradient" => measure(runs, || func::grad(|a| det(a, &e), &a), |g| flat(&g)),
        _ => Err(unknown("det", function)),
    }
}
