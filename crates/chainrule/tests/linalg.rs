//! Linear algebra as users meet it: bad matrices are errors naming the op,
//! `f32` works, and three fits that need it (Newton with `solve`,
//! Gauss–Newton with `lstsq`, a Gaussian-process likelihood with
//! `cholesky`) reach their answers. Gradients of every op are rows of the
//! op table; values against PyTorch are in `torch_reference.rs`.

use chainrule::{linalg, DType, Tensor};

// The three fits are the example `fits`, run here with their checks.
#[allow(dead_code)]
#[path = "../examples/fits.rs"]
mod fits;

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
    let got = fits::newton_rosenbrock(10).to_vec::<f64>();
    assert!(
        (got[0] - 1.0).abs() < 1e-12 && (got[1] - 1.0).abs() < 1e-12,
        "{got:?}"
    );
}

#[test]
fn gauss_newton_with_lstsq_fits_an_exponential() {
    let got = fits::gauss_newton_exponential(20).to_vec::<f64>();
    assert!(
        (got[0] - 2.0).abs() < 1e-10 && (got[1] + 0.5).abs() < 1e-10,
        "{got:?}"
    );
}

#[test]
fn a_gaussian_process_likelihood_gradient_matches_its_closed_form() {
    let (by_autodiff, closed_form) = fits::gp_gradients();
    for (g, w) in by_autodiff.iter().zip(&closed_form) {
        assert!(
            (g - w).abs() < 1e-10 * (1.0 + w.abs()),
            "{by_autodiff:?} vs {closed_form:?}"
        );
    }
}

#[test]
fn einsum_refuses_bad_specs_naming_the_letter() {
    let a = Tensor::ones(&[2, 3], DType::F64);
    let b = Tensor::ones(&[4, 2], DType::F64);
    let err = |spec: &str, ops: &[&Tensor]| Tensor::try_einsum(spec, ops).unwrap_err().to_string();
    assert!(err("ij,jk->ik", &[&a, &b]).contains("'j'"));
    assert!(err("ij->k", &[&a]).contains("'k'"));
    assert!(err("ijk->i", &[&a]).contains("3 letters"));
    assert!(err("ij,jk", &[&a]).contains("2 operands"));
    assert!(err("i.j->j", &[&a]).contains("not a letter"));
    assert!(err("...ijk->i", &[&a]).contains("3 letters for 2 axes"));
    let batched = Tensor::ones(&[5, 1, 2, 3], DType::F64);
    let c = Tensor::ones(&[3, 4], DType::F64);
    assert_eq!(
        Tensor::einsum("...ij,jk->...ik", &[&batched, &c]).shape(),
        [5, 1, 2, 4]
    );
    assert_eq!(
        Tensor::einsum("...j,jk", &[&batched, &c]).shape(),
        [5, 1, 2, 4]
    );
    assert!(err("ii->i", &[&a]).contains("'i'"));
    assert_eq!(Tensor::einsum("ij->", &[&a]).item(), 6.0);
    assert_eq!(Tensor::einsum("ij->ji", &[&a]).shape(), [3, 2]);
}
