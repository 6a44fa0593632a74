//! Gaussian mixture model fitting (ADBench "GMM"): the negative log-likelihood
//! of N points under K Gaussians in D dimensions with a Wishart prior, its
//! gradient with respect to the weights α, means μ and inverse covariance
//! factors (log-diagonal q and strictly lower part l).

use crate::Reader;
use chainrule::{DType, Result, Tensor};
use std::f64::consts::PI;
use std::path::Path;

/// One GMM instance.
pub struct GmmInput {
    /// D, the dimension of the points.
    pub d: usize,
    /// K, the number of Gaussians.
    pub k: usize,
    /// N, the number of points.
    pub n: usize,
    /// (K,)
    pub alphas: Tensor,
    /// (K, D)
    pub means: Tensor,
    /// (K, D(D+1)/2): D log-diagonal entries, then the strictly lower part
    /// column by column.
    pub icf: Tensor,
    /// (N, D)
    pub x: Tensor,
    /// The Wishart prior's γ.
    pub gamma: f64,
    /// The Wishart prior's m (degrees of freedom D + m + 1).
    pub m: f64,
}

/// Reads `gmm_d{D}_K{K}.txt` (all N points; a file with a single point line
/// is ADBench's replicate-point form, and its point is repeated N times).
pub fn read(path: &Path) -> Result<GmmInput> {
    let mut r = Reader::open(path)?;
    let d = r.count("D")?;
    let k = r.count("K")?;
    let n = r.count("N")?;
    let alphas = r.take(k, "the K weights α")?.to_vec();
    let means = r.take(k * d, "the K×D means")?.to_vec();
    let icf = r
        .take(k * d * (d + 1) / 2, "the K inverse covariance factors")?
        .to_vec();
    let remaining = r.values.len() - r.at;
    let x: Vec<f64> = if remaining == n * d + 2 {
        r.take(n * d, "the N×D points")?.to_vec()
    } else if remaining == d + 2 {
        let one = r.take(d, "the replicated point")?.to_vec();
        one.iter().copied().cycle().take(n * d).collect()
    } else {
        return Err(chainrule::Error::file(
            path,
            format!("expected {} points of {d} coordinates and the Wishart γ, m (or one replicated point); found {remaining} numbers", n),
        ));
    };
    let wishart = r.take(2, "the Wishart γ and m")?;
    let (gamma, m) = (wishart[0], wishart[1]);
    Ok(GmmInput {
        d,
        k,
        n,
        alphas: Tensor::from_vec(alphas, &[k]),
        means: Tensor::from_vec(means, &[k, d]),
        icf: Tensor::from_vec(icf, &[k, d * (d + 1) / 2]),
        x: Tensor::from_vec(x, &[n, d]),
        gamma,
        m,
    })
}

/// ln Γ(v) for v a positive multiple of ½ (all the prior needs): exact sums.
fn ln_gamma_half(v: f64) -> f64 {
    let twice = (2.0 * v).round() as i64;
    assert!(
        twice >= 1 && (2.0 * v - twice as f64).abs() < 1e-12,
        "ln Γ of {v}"
    );
    if twice % 2 == 0 {
        (1..twice / 2).map(|i| (i as f64).ln()).sum() // (v−1)!
    } else {
        // Γ(j + ½) = √π · Π_{i<j} (i + ½)
        let j = (twice - 1) / 2;
        0.5 * PI.ln() + (0..j).map(|i| (i as f64 + 0.5).ln()).sum::<f64>()
    }
}

/// Where each entry of Q_k comes from: the index into `[l_k, 0]` for every
/// (row, column), with the zero for the diagonal and the upper part.
fn lower_index(d: usize) -> Vec<usize> {
    let zero = d * (d - 1) / 2;
    let mut idx = vec![zero; d * d];
    let mut next = 0;
    for c in 0..d {
        for r in c + 1..d {
            idx[r * d + c] = next;
            next += 1;
        }
    }
    idx
}

/// The objective's parts, as functions of (α, μ, icf): the data term
/// `Σ_i logsumexp_k β_ik − N logsumexp(α)`, vectorized over the N points and
/// the K components (the whole batch of `Q_k x_i` is one batched matrix
/// product), the Wishart prior's sum `Σ_k ½γ²(‖exp q_k‖² + ‖l_k‖²) − m Σ q_k`,
/// and the constant `C` of one component's log Wishart normalizer. ADBench
/// and GradBench combine them with different signs.
pub struct Parts {
    /// The data term `Σ_i logsumexp_k β_ik − N logsumexp(α)` (a scalar).
    pub data: Tensor,
    /// The Wishart prior's sum `Σ_k ½γ²(‖exp q_k‖² + ‖l_k‖²) − m Σ q_k` (a
    /// scalar).
    pub prior: Tensor,
    /// The constant `C` of one component's log Wishart normalizer.
    pub wishart_c: f64,
}

/// The objective's [`Parts`] at the weights `alphas`, means `means` and
/// inverse covariance factors `icf`.
pub fn parts(input: &GmmInput, alphas: &Tensor, means: &Tensor, icf: &Tensor) -> Parts {
    let (d, k, n) = (input.d, input.k, input.n);
    let q = icf.narrow(1, 0, d); // (K, D) log-diagonal
    let l = icf.narrow(1, d, d * (d - 1) / 2); // (K, D(D−1)/2)
                                               // Q_k = diag(exp q_k) + strictly lower part from l_k: (K, D, D)
    let eye = Tensor::eye(d, DType::F64);
    let diag = q.exp().unsqueeze(2) * &eye;
    let padded = Tensor::concat(&[&l, &Tensor::zeros(&[k, 1], DType::F64)], 1);
    let lower = padded.index_select(1, &lower_index(d)).reshape(&[k, d, d]);
    let qmat = diag + lower;
    // Q_k (x_i − μ_k) = Q_k x_i − Q_k μ_k for all i, k: (K, D, N). Written
    // this way, no (K, N, D) copy of the centred points is ever formed.
    let qx = qmat.matmul(&input.x.t()); // (K, D, D) @ (D, N) → (K, D, N)
    let qmu = qmat.matmul(&means.unsqueeze(2)); // (K, D, 1)
    let sq = (qx - qmu).square().sum_axes(&[1], false); // (K, N)
    let main = alphas.unsqueeze(1) + q.sum_axes(&[1], true) - sq * 0.5; // (K, N)
    let data = main.logsumexp(0, false).sum() - alphas.logsumexp(0, false) * n as f64;
    let gamma = input.gamma;
    let prior =
        ((q.exp().square().sum() + l.square().sum()) * (0.5 * gamma * gamma)) - q.sum() * input.m;
    let np = d as f64 + input.m + 1.0;
    let wishart_c = np * d as f64 * (gamma.ln() - 0.5 * 2f64.ln())
        - (0.25 * (d * (d - 1)) as f64 * PI.ln()
            + (1..=d)
                .map(|j| ln_gamma_half(0.5 * np + 0.5 * (1.0 - j as f64)))
                .sum::<f64>());
    Parts {
        data,
        prior,
        wishart_c,
    }
}

/// `−N·D/2 · ln 2π`, the Gaussians' normalizer over all points.
pub fn gaussian_constant(input: &GmmInput) -> f64 {
    -(input.n as f64) * input.d as f64 * 0.5 * (2.0 * PI).ln()
}

/// ADBench's objective: data term + prior − K·C + the Gaussian constant.
pub fn objective(input: &GmmInput, alphas: &Tensor, means: &Tensor, icf: &Tensor) -> Tensor {
    let p = parts(input, alphas, means, icf);
    let constant = gaussian_constant(input) - input.k as f64 * p.wishart_c;
    p.data + p.prior + constant
}

/// The objective's value and its gradient, flattened in ADBench's order
/// (α, then μ component-major, then icf component-major).
pub fn objective_and_gradient(input: &GmmInput) -> Result<(f64, Vec<f64>)> {
    let (value, grads) = chainrule::func::value_and_grad_n(
        |p: &[Tensor]| objective(input, &p[0], &p[1], &p[2]),
        &[input.alphas.clone(), input.means.clone(), input.icf.clone()],
    )?;
    let flat = grads.iter().flat_map(|g| g.to_vec::<f64>()).collect();
    Ok((value.item(), flat))
}
