//! Values and gradients of a fixed sample of ops against PyTorch's,
//! recorded once by `fixtures/torch_reference.py` into
//! `fixtures/torch_reference.txt` (so no PyTorch is needed here). Each
//! case's gradient is that of `sum(output · w)`, `w[i] = sin(i + 1)`.

use chainrule::{func, linalg, DType, Tensor};

const RECORDED: &str = include_str!("fixtures/torch_reference.txt");

fn i64s(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape)
}

fn concat0(parts: &[Tensor]) -> Tensor {
    Tensor::concat(&parts.iter().collect::<Vec<_>>(), 0)
}

/// The sign-free forms the recording script uses where signs are arbitrary.
fn sign_fixed_qr(a: &Tensor) -> Tensor {
    let (q, r) = linalg::qr(a).unwrap();
    let s = r.diagonal(0).sign();
    concat0(&[&q * &s, (&r * &s.unsqueeze(-1)).t()])
}

fn svd_sign_free(a: &Tensor) -> Tensor {
    let (u, s, vh) = linalg::svd(a).unwrap();
    let flat = |t: &Tensor| t.square().reshape(&[t.numel()]);
    concat0(&[flat(&u), s, flat(&vh)])
}

fn eigh_sign_free(a: &Tensor) -> Tensor {
    let (values, vectors) = linalg::eigh(a).unwrap();
    concat0(&[values.unsqueeze(0), vectors.square()])
}

/// chainrule's spelling of each recorded case.
fn op(name: &str, x: &[Tensor]) -> Tensor {
    if name == "one_hot" {
        return i64s(&[2, 0, 3], &[3]).one_hot(4);
    }
    let a = &x[0];
    let half = Tensor::scalar(0.5);
    match name {
        "argmax" => a.argmax(1, false),
        "argmin_keepdim" => a.argmin(0, true),
        "max_values" => a.max_with_indices(1, false).0,
        "max_indices" => a.max_with_indices(1, false).1,
        "any_positive" => a.gt(&half).any_axes(&[1], false),
        "logical_and" => a.gt(&Tensor::scalar(0.0)) & a.lt(&Tensor::scalar(0.8)),
        "cumsum" => a.cumsum(-1),
        "cumprod_zeros" | "cumprod" => a.cumprod(0),
        "sort" => a.sort(-1, false).0,
        "sort_descending" => a.sort(0, true).0,
        "topk" => a.topk(2, 1, true).0,
        "topk_smallest" => a.topk(3, 1, false).0,
        "flip" => a.flip(&[0, -1]),
        "roll" => a.roll(-5, 1),
        "tril" => a.tril(-1),
        "triu" => a.triu(1),
        "diagonal" => a.diagonal(1),
        "trace" => a.trace(),
        "diag" => a.diag(),
        "clamp" => a.clamp(-0.5, 1.0),
        "gather" => a.gather(1, &i64s(&[3, 0, 1, 1, 2, 3], &[3, 2])),
        "index_select" => a.index_select(0, &[2, 0, 2]),
        "scatter_add" => a.scatter_add(1, &i64s(&[0, 0, 3, 2, 1, 2], &[2, 3]), &x[1]),
        "index_add" => a.index_add(0, &[3, 0, 3], &x[1]),
        "masked_fill" => a.masked_fill(&a.gt(&Tensor::scalar(0.2)), -1.0),
        "solve" | "solve_batched_vector" => linalg::solve(a, &x[1]).unwrap(),
        "solve_triangular" => linalg::solve_triangular(a, &x[1], true, false).unwrap(),
        "solve_triangular_unit" => linalg::solve_triangular(a, &x[1], false, true).unwrap(),
        "cholesky" => linalg::cholesky(a).unwrap(),
        "cholesky_solve" => linalg::cholesky_solve(&x[1], &linalg::cholesky(a).unwrap()).unwrap(),
        "inv" => linalg::inv(a).unwrap(),
        "det" => linalg::det(a).unwrap(),
        "slogdet" => linalg::slogdet(a).unwrap().1,
        "slogdet_sign" => linalg::slogdet(a).unwrap().0,
        "eigh" => eigh_sign_free(a),
        "qr" => sign_fixed_qr(a),
        "svd_tall" | "svd_wide" => svd_sign_free(a),
        "lstsq" => linalg::lstsq(a, &x[1]).unwrap(),
        "einsum_batched_matmul" => Tensor::einsum("bij,bjk->bik", &[a, &x[1]]),
        "einsum_implicit" => Tensor::einsum("ij,jk", &[a, &x[1]]),
        "einsum_diagonal" => Tensor::einsum("ii->i", &[a]),
        "einsum_trace_of_product" => Tensor::einsum("ij,ji->", &[a, &x[1]]),
        "einsum_chain" => Tensor::einsum("ij,jk,kl->li", &[a, &x[1], &x[2]]),
        "einsum_outer_sum" => Tensor::einsum("bi,bj->ji", &[a, &x[1]]),
        "einsum_ellipsis" => Tensor::einsum("...ij,jk->...ik", &[a, &x[1]]),
        "einsum_ellipsis_broadcast" => Tensor::einsum("...ij,...jk", &[a, &x[1]]),
        "matrix_exp" | "matrix_exp_large" => linalg::matrix_exp(a).unwrap(),
        other => panic!("no chainrule spelling of recorded case {other}"),
    }
}

struct Case {
    name: String,
    inputs: Vec<Tensor>,
    output: Tensor,
    grads: Vec<Tensor>,
}

fn parse_tensor(line: &str) -> Tensor {
    let (head, values) = line
        .split_once(" : ")
        .unwrap_or((line.trim_end_matches(" :"), ""));
    let dims = head.split(' ').nth(1).unwrap_or("");
    let shape: Vec<usize> = dims
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    let data: Vec<f64> = values
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    Tensor::from_vec(data, &shape)
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in RECORDED.lines() {
        let kind = line.split(' ').next().unwrap();
        if kind == "case" {
            cases.push(Case {
                name: line[5..].to_string(),
                inputs: vec![],
                output: Tensor::zeros(&[], DType::F64),
                grads: vec![],
            });
            continue;
        }
        let case = cases.last_mut().expect("a case comes first");
        let t = parse_tensor(line);
        match kind {
            "input" => case.inputs.push(t),
            "output" => case.output = t,
            "grad" => case.grads.push(t),
            other => panic!("unknown line kind {other}"),
        }
    }
    cases
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let (g, w) = (got.to_vec::<f64>(), want.to_vec::<f64>());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = (a - b).abs() <= 1e-9 * (1.0 + b.abs()) || (a.is_infinite() && a == b);
        assert!(ok, "{what}[{i}]: chainrule {a}, PyTorch {b}");
    }
}

#[test]
fn values_and_gradients_match_pytorch() {
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases recorded", cases.len());
    for case in &cases {
        let name = case.name.as_str();
        assert_close(
            &format!("{name} value"),
            &op(name, &case.inputs),
            &case.output,
        );
        if case.grads.is_empty() {
            continue;
        }
        let n = case.output.numel();
        let w = Tensor::arange(n, DType::F64)
            .add_scalar(1.0)
            .sin()
            .reshape(case.output.shape());
        let grads = func::grad_n(|x: &[Tensor]| (op(name, x) * &w).sum(), &case.inputs).unwrap();
        for (i, (g, want)) in grads.iter().zip(&case.grads).enumerate() {
            assert_close(&format!("{name} gradient {i}"), g, want);
        }
    }
}
