//! `kmeans`: the cost `Σ_i min_j ‖C_j − P_i‖²` and the Newton direction
//! `J ⊘ H`, with `J` the gradient by reverse mode and `H` the Hessian's
//! diagonal by forward-over-reverse: the JVP of the gradient along a
//! tensor of ones (the Hessian is diagonal in each centroid coordinate,
//! so `H·1` is its diagonal).
//!
//! The derivatives differentiate the cost of the nearest-centroid
//! assignment, `Σ_i ‖C_{a(i)} − P_i‖²` with `a = argmin` taken once outside
//! the derivative: a min's derivative is the derivative of the term it
//! picks, and which term that is does not move under an infinitesimal
//! change of the centroids (as `stop_gradient` on the assignment in JAX).
//! So the two derivative passes run over the n×d assigned differences,
//! not over the n×k distance matrix.

use super::{finite, matrix, rows, unknown};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use serde_json::Value;

/// `‖C_j‖² − 2 P_i·C_j` for all (i, j), (n, k), by blocks of rows. This
/// is `‖C_j − P_i‖² − ‖P_i‖²`, and `‖P_i‖²` is the same along a row, so
/// each row has the minimum and the argmin of the squared distances, with
/// two passes over the n×k matrix fewer.
///
/// Each block is one matrix product, `[P, 1] · [−2C, ‖C‖²]ᵀ`, when there
/// are several times more centroids than coordinates: the column of ones
/// folds the `‖C_j‖²` into the product, and copying `[P, 1]` costs less
/// than adding `‖C_j‖²` over the n×k matrix after (with k=10, d=8 the copy
/// and the product's odd inner length cost 30% more than the add). And
/// each block is about 4 MB ([`BLOCK_ENTRIES`]), so that what the product
/// writes is read back by its consumer while still in cache; the whole matrix is a round trip
/// through memory (80 MB at k=1000, n=10000). Cost at k=1000, n=10000,
/// d=8: 16–17 ms with a separate add over the whole matrix, 10.2 ms in
/// one product, 6.9 ms by blocks.
fn blocks_of_shifted_distances<'a>(
    points: &'a Tensor,
    centroids: &Tensor,
) -> impl Iterator<Item = Tensor> + 'a {
    let [n, d] = [points.shape()[0], points.shape()[1]];
    let k = centroids.shape()[0];
    let rows = (BLOCK_ENTRIES / k.max(1)).max(1);
    let cc = centroids.square().sum_axes(&[1], false); // (k,)
    let folded = k >= 4 * (d + 1);
    let (left, right) = if folded {
        let ones = Tensor::ones(&[n, 1], points.dtype());
        let left = Tensor::concat(&[points, &ones], 1);
        let right = Tensor::concat(&[&(centroids * -2.0), &cc.unsqueeze(1)], 1);
        (left, right.t())
    } else {
        (points.clone(), (centroids * -2.0).t())
    };
    let cc = cc.unsqueeze(0);
    // At least one block, so that no points still give a (0, k) matrix.
    (0..n.max(1)).step_by(rows).map(move |first| {
        let product = left.narrow(0, first, rows.min(n - first)).matmul(&right);
        match folded {
            true => product,
            false => product + &cc,
        }
    })
}

/// Entries of the distance matrix per block of rows (4 MB of f64).
const BLOCK_ENTRIES: usize = 1 << 19;

fn cost(points: &Tensor, centroids: &Tensor) -> Tensor {
    blocks_of_shifted_distances(points, centroids)
        .map(|block| block.min_axes(&[1], false).sum())
        .fold(points.square().sum(), |total, block| total + block)
}

/// Each point's nearest centroid, (n,).
fn nearest(points: &Tensor, centroids: &Tensor) -> Tensor {
    let mut blocks: Vec<Tensor> = blocks_of_shifted_distances(points, centroids)
        .map(|block| block.argmin(1, false))
        .collect();
    match blocks.len() {
        1 => blocks.pop().expect("one block"),
        _ => Tensor::concat(&blocks.iter().collect::<Vec<_>>(), 0),
    }
}

/// The Newton direction for the assignment `nearest` (each point's
/// centroid). Compiled by the caller: the derivative passes over the n×d
/// assigned differences fuse into a few kernels.
fn direction(points: &Tensor, centroids: &Tensor, nearest: &Tensor) -> chainrule::Result<Tensor> {
    let assigned_cost = |c: &Tensor| (c.index_select(0, nearest) - points).square().sum();
    let gradient = |c: &Tensor| func::grad(assigned_cost, c);
    let (j, h) = func::jvp(gradient, centroids, &centroids.ones_like())?;
    Ok(j / h)
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let points = matrix(input, "points")?;
    let centroids = matrix(input, "centroids")?;
    if points.shape()[1] != centroids.shape()[1] {
        return Err(format!(
            "points have {} coordinates, centroids {}",
            points.shape()[1],
            centroids.shape()[1]
        ));
    }
    match function {
        "cost" => measure(runs, || Ok(cost(&points, &centroids)), |y| finite(y.item())),
        "dir" => {
            // The n×k distances run eagerly (matmul, add, argmin: nothing
            // to fuse), the derivatives compiled, once per message.
            let direction = func::jit(|x: &[Tensor]| direction(&x[0], &x[1], &x[2]));
            let newton = || {
                let assignment = nearest(&points, &centroids);
                direction.call(&[points.clone(), centroids.clone(), assignment])
            };
            measure(runs, newton, |d| rows(&d))
        }
        _ => Err(unknown("kmeans", function)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points and centroids on a grid of awkward values, (n, d) and (k, d).
    fn problem(n: usize, k: usize, d: usize) -> (Tensor, Tensor) {
        let value = |i: usize, m: usize| ((i * 7919 + m) % 1013) as f64 / 97.0 - 5.0;
        let points = (0..n * d).map(|i| value(i, 1)).collect();
        let centroids = (0..k * d).map(|i| value(i, 5)).collect();
        (
            Tensor::from_vec(points, &[n, d]),
            Tensor::from_vec(centroids, &[k, d]),
        )
    }

    /// The cost by its definition, and each point's squared distances.
    fn by_definition(points: &Tensor, centroids: &Tensor) -> (f64, Vec<Vec<f64>>) {
        let d = points.shape()[1];
        let (p, c) = (points.to_vec_f64(), centroids.to_vec_f64());
        let distances: Vec<Vec<f64>> = p
            .chunks(d)
            .map(|point| {
                let distance = |centroid: &[f64]| -> f64 {
                    point
                        .iter()
                        .zip(centroid)
                        .map(|(a, b)| (a - b).powi(2))
                        .sum()
                };
                c.chunks(d).map(distance).collect()
            })
            .collect();
        let nearest = |row: &Vec<f64>| row.iter().copied().fold(f64::INFINITY, f64::min);
        (distances.iter().map(nearest).sum(), distances)
    }

    #[test]
    fn blocks_of_rows_give_the_cost_and_assignment_of_the_whole_matrix() {
        // (n, k, d): one block unfolded, one block folded, several blocks
        // folded (2,621 rows a block at k=200, the last one short).
        for (n, k, d) in [(50, 3, 4), (300, 40, 3), (6000, 200, 3)] {
            let (points, centroids) = problem(n, k, d);
            let (cost_expected, distances) = by_definition(&points, &centroids);
            let got = cost(&points, &centroids).item();
            let tolerance = 1e-9 * cost_expected.abs().max(1.0);
            assert!(
                (got - cost_expected).abs() < tolerance,
                "{got} vs {cost_expected}"
            );
            // Each point's assigned centroid is at its least distance (ties
            // may go either way through the rounding of the product).
            let assignment = nearest(&points, &centroids).to_vec::<i64>();
            assert_eq!(assignment.len(), n);
            for (row, &j) in distances.iter().zip(&assignment) {
                let least = row.iter().copied().fold(f64::INFINITY, f64::min);
                assert!(
                    (row[j as usize] - least).abs() < 1e-9,
                    "n={n}, k={k}, d={d}"
                );
            }
        }
    }
}
