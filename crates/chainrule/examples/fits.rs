//! Three fits that need linear algebra, written as the math reads:
//! Newton's method on Rosenbrock (`solve` with the Hessian), Gauss–Newton
//! on an exponential model (`lstsq` with the Jacobian), and the gradient
//! of a Gaussian process's log marginal likelihood (`cholesky`,
//! `cholesky_solve`, `slogdet`) beside its closed form.
//!
//!     cargo run --release --example fits

use chainrule::{func, linalg, DType, Tensor};

/// `(1 − x)² + 100 (y − x²)²`.
fn rosenbrock(p: &Tensor) -> Tensor {
    let (x, y) = (p.narrow(0, 0, 1), p.narrow(0, 1, 1));
    ((1.0 - &x).square() + (y - x.square()).square() * 100.0).sum()
}

/// `steps` Newton steps `p ← p − H⁻¹ ∇f` from the classic start (−1.2, 1).
pub fn newton_rosenbrock(steps: usize) -> Tensor {
    let mut p = Tensor::from_vec(vec![-1.2f64, 1.0], &[2]);
    for _ in 0..steps {
        let g = func::grad(rosenbrock, &p).unwrap();
        let h = func::hessian(rosenbrock, &p).unwrap();
        p = &p - &linalg::solve(&h, &g).unwrap();
    }
    p
}

/// Fits `a·exp(b t)` to noise-free data of `a = 2, b = −0.5` by `steps`
/// Gauss–Newton steps `θ ← θ + argmin ‖J δ + r‖`, from `(1, 0)`.
pub fn gauss_newton_exponential(steps: usize) -> Tensor {
    let t = Tensor::arange(8, DType::F64).mul_scalar(0.5);
    let y = (&t * -0.5).exp() * 2.0;
    let residual = |theta: &Tensor| {
        let (a, b) = (theta.narrow(0, 0, 1), theta.narrow(0, 1, 1));
        (&t * &b).exp() * &a - &y
    };
    let mut theta = Tensor::from_vec(vec![1.0f64, 0.0], &[2]);
    for _ in 0..steps {
        let j = func::jacobian(residual, &theta).unwrap();
        theta = &theta + &linalg::lstsq(&j, &-residual(&theta)).unwrap();
    }
    theta
}

/// The RBF kernel matrix `σ_f² exp(−(xᵢ − xⱼ)² / 2ℓ²) + σ_n² I`.
fn kernel(x: &Tensor, sf2: &Tensor, ell: &Tensor, sn2: &Tensor) -> Tensor {
    let d2 = (x.unsqueeze(1) - x.unsqueeze(0)).square();
    (d2 / (ell.square() * -2.0)).exp() * sf2 + Tensor::eye(x.shape()[0], DType::F64) * sn2
}

/// The negative log marginal likelihood `½ yᵀK⁻¹y + ½ log|K| + n/2 log 2π`
/// at hyperparameters `(log σ_f, log ℓ, log σ_n)`.
pub fn gp_nll(log_params: &Tensor, x: &Tensor, y: &Tensor) -> Tensor {
    let p = log_params.exp();
    let part = |i| p.narrow(0, i, 1);
    let k = kernel(x, &part(0).square(), &part(1), &part(2).square());
    let l = linalg::cholesky(&k).unwrap();
    let alpha = linalg::cholesky_solve(&y.unsqueeze(1), &l).unwrap();
    let log_det = linalg::slogdet(&k).unwrap().1;
    let n = x.shape()[0] as f64;
    y.unsqueeze(0).matmul(&alpha).sum() * 0.5
        + log_det * 0.5
        + n * 0.5 * (2.0 * std::f64::consts::PI).ln()
}

/// The likelihood's gradient in the hyperparameters by reverse mode, and by
/// the closed form `−½ tr((α αᵀ − K⁻¹) ∂K/∂θ)`, on a small data set.
pub fn gp_gradients() -> (Vec<f64>, Vec<f64>) {
    let x = Tensor::from_vec(vec![-2.0f64, -1.1, -0.3, 0.4, 1.0, 1.8, 2.5], &[7]);
    let y = x.sin() + x.mul_scalar(0.1);
    let theta = Tensor::from_vec(vec![0.2f64, -0.1, -1.5], &[3]);
    let by_autodiff = func::grad(|t: &Tensor| gp_nll(t, &x, &y), &theta).unwrap();

    let p = theta.exp().to_vec::<f64>();
    let (sf2, ell, sn2) = (p[0] * p[0], p[1], p[2] * p[2]);
    let eye = Tensor::eye(7, DType::F64);
    let d2 = (x.unsqueeze(1) - x.unsqueeze(0)).square();
    let rbf = (&d2 / (-2.0 * ell * ell)).exp() * sf2;
    let k_inv = linalg::inv(&(&rbf + &(&eye * sn2))).unwrap();
    let alpha = k_inv.matmul(&y.unsqueeze(1));
    let inner = alpha.matmul(&alpha.t()) - &k_inv;
    // ∂K/∂log σ_f, ∂K/∂log ℓ, ∂K/∂log σ_n
    let dk = [&rbf * 2.0, &rbf * &(&d2 / (ell * ell)), &eye * (2.0 * sn2)];
    let closed_form = dk
        .iter()
        .map(|d| -0.5 * (&inner * d).sum().item())
        .collect();
    (by_autodiff.to_vec::<f64>(), closed_form)
}

fn main() {
    let p = newton_rosenbrock(10).to_vec::<f64>();
    println!(
        "Newton on Rosenbrock, 10 steps from (-1.2, 1): ({:.12}, {:.12})",
        p[0], p[1]
    );
    let theta = gauss_newton_exponential(20).to_vec::<f64>();
    println!(
        "Gauss-Newton fit of a·exp(b t), 20 steps: a = {:.10}, b = {:.10}",
        theta[0], theta[1]
    );
    let (by_autodiff, closed_form) = gp_gradients();
    println!("GP likelihood gradient, reverse mode: {by_autodiff:.10?}");
    println!("GP likelihood gradient, closed form:  {closed_form:.10?}");
}
