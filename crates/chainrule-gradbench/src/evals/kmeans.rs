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

/// `‖C_j‖² − 2 P_i·C_j` for all (i, j) at once: (n, k). This is
/// `‖C_j − P_i‖² − ‖P_i‖²`, and `‖P_i‖²` is the same along a row, so each
/// row has the minimum and the argmin of the squared distances, with two
/// passes over the n×k matrix fewer.
///
/// One matrix product, `[P, 1] · [−2C, ‖C‖²]ᵀ`: the column of ones folds
/// the `‖C_j‖²` into the product, where adding it after is one more pass
/// over the n×k matrix (k=1000, n=10000: 80 MB read and written, a third
/// of the cost's time).
fn shifted_distances(points: &Tensor, centroids: &Tensor) -> Tensor {
    let ones = Tensor::ones(&[points.shape()[0], 1], points.dtype());
    let cc = centroids.square().sum_axes(&[1], true); // (k, 1)
    let augmented_centroids = Tensor::concat(&[&(centroids * -2.0), &cc], 1);
    Tensor::concat(&[points, &ones], 1).matmul(&augmented_centroids.t())
}

fn cost(points: &Tensor, centroids: &Tensor) -> Tensor {
    shifted_distances(points, centroids)
        .min_axes(&[1], false)
        .sum()
        + points.square().sum()
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
                let nearest = shifted_distances(&points, &centroids).argmin(1, false); // (n,)
                direction.call(&[points.clone(), centroids.clone(), nearest])
            };
            measure(runs, newton, |d| rows(&d))
        }
        _ => Err(unknown("kmeans", function)),
    }
}
