//! `kmeans`: the cost `Σ_i min_j ‖C_j − P_i‖²` and the Newton direction
//! `J ⊘ H`, with `J` the gradient by reverse mode and `H` the Hessian's
//! diagonal by forward-over-reverse: the JVP of the gradient along a
//! tensor of ones (the Hessian is diagonal in each centroid coordinate,
//! so `H·1` is its diagonal).

use super::{finite, matrix, rows, unknown};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use serde_json::Value;

fn cost(points: &Tensor, centroids: &Tensor) -> Tensor {
    // ‖C_j − P_i‖² = ‖P_i‖² + ‖C_j‖² − 2 P_i·C_j, for all (i, j) at once.
    let pp = points.square().sum_axes(&[1], true); // (n, 1)
    let cc = centroids.square().sum_axes(&[1], false).unsqueeze(0); // (1, k)
    let cross = points.matmul(&centroids.t()); // (n, k)
    (pp + cc - cross * 2.0).min_axes(&[1], false).sum()
}

fn direction(points: &Tensor, centroids: &Tensor) -> chainrule::Result<Tensor> {
    let gradient = |c: &Tensor| func::grad(|c| cost(points, c), c);
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
        "dir" => measure(runs, || direction(&points, &centroids), |d| rows(&d)),
        _ => Err(unknown("kmeans", function)),
    }
}
