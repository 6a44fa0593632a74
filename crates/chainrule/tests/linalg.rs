//! Linear algebra as users meet it: bad matrices are errors naming the op,
//! `f32` works, and three fits that need it (Newton with `solve`,
//! Gauss–Newton with `lstsq`, a Gaussian-process likelihood with
//! `cholesky`) reach their answers. Gradients of every op are rows of the
//! op table; values against PyTorch are in `torch_reference.rs`.

use chainrule::{func, linalg, DType, Tensor};

fn f64s(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape)
}

#[test]
fn bad_matrices_are_errors_naming_the_op_and_the_matrix() {
    let singular = f64s(&[1., 2., 2., 4.], &[2, 2]);
    let b = f64s(&[1., 1.], &[2]);
    let err = linalg::solve(&singular, &b).unwrap_err().to_string();
    assert!(err.contains("solve") && err.contains("singular"), "{err}");
    let batch = Tensor::stack(&[&Tensor::eye(2, DType::F64), &singular], 0);
    let err = linalg::inv(&batch).unwrap_err().to_string();
    assert!(err.contains("matrix 1 of the batch"), "{err}");
    let indefinite = f64s(&[1., 0., 0., -1.], &[2, 2]);
    let err = linalg::cholesky(&indefinite).unwrap_err().to_string();
    assert!(
        err.contains("cholesky") && err.contains("not positive definite"),
        "{err}"
    );
    let err = linalg::det(&Tensor::zeros(&[2, 3], DType::F64))
        .unwrap_err()
        .to_string();
    assert!(err.contains("slogdet") && err.contains("square"), "{err}");
    let err = linalg::solve(&Tensor::eye(3, DType::F64), &b)
        .unwrap_err()
        .to_string();
    assert!(err.contains("solve") && err.contains("[3, 3]"), "{err}");
    assert!(linalg::qr(&b).is_err());
    let ints = Tensor::from_vec(vec![1i64, 0, 0, 1], &[2, 2]);
    assert!(linalg::inv(&ints).is_err());
    // A singular matrix has sign 0 and log|det| −∞, as in PyTorch.
    let (sign, log_abs) = linalg::slogdet(&singular).unwrap();
    assert_eq!((sign.item(), log_abs.item()), (0.0, f64::NEG_INFINITY));
}

#[test]
fn factorizations_reconstruct_their_matrix_in_f32_and_f64() {
    for dtype in [DType::F32, DType::F64] {
        let tol = if dtype == DType::F32 { 1e-4 } else { 1e-12 };
        let a = f64s(&[4., 1., -2., 1., 3., 0.5, -2., 0.5, 5.], &[3, 3]).to_dtype(dtype);
        let err = |x: Tensor| (x - &a).abs().max().to_vec::<f64>()[0];
        let l = linalg::cholesky(&a).unwrap();
        assert!(err(l.matmul(&l.t())) < tol);
        let (q, r) = linalg::qr(&a).unwrap();
        assert!(err(q.matmul(&r)) < tol);
        let (u, s, vh) = linalg::svd(&a).unwrap();
        assert!(err((u * &s).matmul(&vh)) < tol);
        let (values, vectors) = linalg::eigh(&a).unwrap();
        assert!(err((&vectors * &values).matmul(&vectors.t())) < tol);
        let det = linalg::det(&a).unwrap().to_vec::<f64>()[0];
        assert!((det - 40.0).abs() < 100.0 * tol, "{det}");
    }
    // exp of a rotation generator is the rotation.
    let t = 0.7f64;
    let rotation = linalg::matrix_exp(&f64s(&[0., -t, t, 0.], &[2, 2])).unwrap();
    let want = [t.cos(), -t.sin(), t.sin(), t.cos()];
    let got = rotation.to_vec::<f64>();
    assert!(
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-14),
        "{got:?}"
    );
}

#[test]
fn newton_with_solve_finds_the_rosenbrock_minimum() {
    let rosenbrock = |p: &Tensor| {
        let (x, y) = (p.narrow(0, 0, 1), p.narrow(0, 1, 1));
        ((1.0 - &x).square() + (y - x.square()).square() * 100.0).sum()
    };
    let mut p = f64s(&[-1.2, 1.0], &[2]);
    for _ in 0..10 {
        let g = func::grad(rosenbrock, &p).unwrap();
        let h = func::hessian(rosenbrock, &p).unwrap();
        p = &p - &linalg::solve(&h, &g).unwrap();
    }
    let got = p.to_vec::<f64>();
    assert!(
        (got[0] - 1.0).abs() < 1e-12 && (got[1] - 1.0).abs() < 1e-12,
        "{got:?}"
    );
}

#[test]
fn gauss_newton_with_lstsq_fits_an_exponential() {
    let t = Tensor::arange(8, DType::F64).mul_scalar(0.5);
    let y = (&t * -0.5).exp() * 2.0;
    let residual = |theta: &Tensor| {
        let (a, b) = (theta.narrow(0, 0, 1), theta.narrow(0, 1, 1));
        (&t * &b).exp() * &a - &y
    };
    let mut theta = f64s(&[1.0, 0.0], &[2]);
    for _ in 0..20 {
        let j = func::jacobian(residual, &theta).unwrap();
        let step = linalg::lstsq(&j, &-residual(&theta)).unwrap();
        theta = &theta + &step;
    }
    let got = theta.to_vec::<f64>();
    assert!(
        (got[0] - 2.0).abs() < 1e-10 && (got[1] + 0.5).abs() < 1e-10,
        "{got:?}"
    );
}

/// The negative log marginal likelihood of a Gaussian process with an RBF
/// kernel, hyperparameters `(log σ_f, log ℓ, log σ_n)`, through a Cholesky
/// factor: `½ yᵀ K⁻¹ y + ½ log |K| + n/2 log 2π`.
fn gp_nll(log_params: &Tensor, x: &Tensor, y: &Tensor) -> Tensor {
    let p = log_params.exp();
    let (sf2, ell, sn2) = (
        p.narrow(0, 0, 1).square(),
        p.narrow(0, 1, 1),
        p.narrow(0, 2, 1).square(),
    );
    let n = x.shape()[0];
    let d = x.unsqueeze(1) - x.unsqueeze(0);
    let k = (d.square() / (ell.square() * -2.0)).exp() * &sf2 + Tensor::eye(n, DType::F64) * &sn2;
    let l = linalg::cholesky(&k).unwrap();
    let alpha = linalg::cholesky_solve(&y.unsqueeze(1), &l).unwrap();
    let log_det = linalg::slogdet(&k).unwrap().1;
    let fit = y.unsqueeze(0).matmul(&alpha).sum() * 0.5;
    fit + log_det * 0.5 + (n as f64) * 0.5 * (2.0 * std::f64::consts::PI).ln()
}

#[test]
fn a_gaussian_process_likelihood_gradient_matches_its_closed_form() {
    let x = f64s(&[-2.0, -1.1, -0.3, 0.4, 1.0, 1.8, 2.5], &[7]);
    let y = x.sin() + x.mul_scalar(0.1);
    let theta = f64s(&[0.2, -0.1, -1.5], &[3]);
    let grad = func::grad(|t: &Tensor| gp_nll(t, &x, &y), &theta).unwrap();
    // ∂/∂θ = −½ tr((α αᵀ − K⁻¹) ∂K/∂θ), from K and its parameters' derivatives.
    let p = theta.exp().to_vec::<f64>();
    let (sf2, ell, sn2) = (p[0] * p[0], p[1], p[2] * p[2]);
    let n = 7;
    let d2 = (x.unsqueeze(1) - x.unsqueeze(0)).square();
    let rbf = (&d2 / (-2.0 * ell * ell)).exp() * sf2;
    let eye = Tensor::eye(n, DType::F64);
    let k = &rbf + &(&eye * sn2);
    let k_inv = linalg::inv(&k).unwrap();
    let alpha = k_inv.matmul(&y.unsqueeze(1));
    let inner = alpha.matmul(&alpha.t()) - &k_inv;
    let dk = [
        &rbf * 2.0,                  // ∂K/∂log σ_f
        &rbf * &(&d2 / (ell * ell)), // ∂K/∂log ℓ
        &eye * (2.0 * sn2),          // ∂K/∂log σ_n
    ];
    let want: Vec<f64> = dk
        .iter()
        .map(|d| -0.5 * (&inner * d).sum().item())
        .collect();
    let got = grad.to_vec::<f64>();
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() < 1e-10 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
}
