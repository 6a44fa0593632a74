//! Regression tests for inputs that once gave wrong answers, panics or
//! aborts: values computed from a traced function's inputs, NaN and edge
//! values against PyTorch's conventions, sizes that overflow or exceed the
//! allocation limit, and custom ops whose rules fail.

use chainrule::custom::{apply, CustomOp};
use chainrule::graph::{Dim, Graph, Placeholder, SymbolicGraph};
use chainrule::nn::Activation;
use chainrule::{autograd, func, DType, Error, Result, Tensor};
use std::sync::Arc;

fn t(v: &[f64]) -> Tensor {
    Tensor::from_slice(v, &[v.len()])
}

fn grad_of(f: impl Fn(&Tensor) -> Tensor, x: &Tensor) -> Vec<f64> {
    func::grad(|x: &Tensor| f(x).sum(), x).unwrap().to_vec()
}

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

// ---- 1. traced graphs stay functions of their inputs -----------------------

#[test]
fn a_traced_log_softmax_follows_inputs_far_from_the_example() {
    let x = Tensor::from_vec(
        vec![0.5f64, -1.0, 2.0, 0.1, 0.3, 1.5, -0.2, 0.0, 0.7, 1.1],
        &[5, 2],
    );
    let g = Graph::trace(&[("x", &x)], |t| Ok(vec![t[0].log_softmax(1).sum()])).unwrap();
    // No value computed from x is a non-scalar constant of the graph.
    let printed = format!("{g}");
    assert!(
        !printed
            .lines()
            .any(|l| l.contains("constant") && l.contains("[5, 1]")),
        "{printed}"
    );
    let far = &x * 100.0;
    let want = far.log_softmax(1).sum().item();
    for graph in [g.clone(), g.optimize(), g.gradients(0, &["x"]).unwrap()] {
        let got = graph.compile().run(&[("x", &far)]).unwrap()[0].item();
        assert!(
            got.is_finite() && (got - want).abs() < 1e-9 * want.abs(),
            "{got} vs {want}"
        );
    }
}

#[test]
fn a_symbolic_graph_of_cross_entropy_follows_large_logits() {
    let g = SymbolicGraph::declare(
        &[Placeholder::new(
            "z",
            &[Dim::sym("n"), Dim::Fixed(3)],
            DType::F64,
        )],
        |t| {
            Ok(vec![
                t[0].cross_entropy_with_logits(&vec![1; t[0].shape()[0]])
            ])
        },
    )
    .unwrap();
    let z = Tensor::from_vec(vec![300.0f64, -200.0, 100.0, 500.0, 0.0, 1.0], &[2, 3]);
    let got = g.run(&[("z", &z)]).unwrap()[0].item();
    let want = z.cross_entropy_with_logits(&[1, 1]).item();
    assert!(
        got.is_finite() && (got - want).abs() < 1e-9 * want.abs(),
        "{got} vs {want}"
    );
}

#[test]
fn a_traced_detach_cuts_the_gradient_graph() {
    // d/dx (x · stop(x)) = stop(x) = x, not 2x.
    let x = t(&[1.0, 2.0, -3.0]);
    let g = Graph::trace(&[("x", &x)], |t| Ok(vec![(&t[0] * &t[0].detach()).sum()])).unwrap();
    let g = g.gradients(0, &["x"]).unwrap();
    let out = g.compile().run(&[("x", &x)]).unwrap();
    assert_eq!(out[1].to_vec::<f64>(), vec![1.0, 2.0, -3.0]);
}

// ---- 4. NaN and edge values: PyTorch's conventions --------------------------

#[test]
fn powf_zero_has_a_zero_derivative_at_zero() {
    assert_eq!(grad_of(|x| x.powf(0.0), &t(&[0.0, 2.0])), vec![0.0, 0.0]);
}

#[test]
fn pow_at_a_zero_base() {
    // ∂x at x = 0, y = 0 is 0; ∂y at x = 0 is 0 for y = 2 and y = 0.
    let x = t(&[0.0, 0.0, 0.0]);
    let y = t(&[0.0, 2.0, 0.5]);
    let gx = grad_of(|x| x.pow(&y), &x);
    assert_eq!(gx[..2], [0.0, 0.0]);
    let gy = grad_of(|y| x.pow(y), &y);
    assert_eq!(gy, vec![0.0, 0.0, 0.0]);
    // A negative base gives NaN for the exponent (ln of a negative number).
    let gy = grad_of(|y| t(&[-2.0]).pow(y), &t(&[2.0]));
    assert!(gy[0].is_nan());
    // Forward mode agrees.
    let (_, jv) = func::jvp(|y: &Tensor| x.pow(y), &y, &t(&[1.0, 1.0, 1.0])).unwrap();
    assert_eq!(jv.to_vec::<f64>(), vec![0.0, 0.0, 0.0]);
}

#[test]
fn the_norm_of_zero_has_a_zero_gradient() {
    let z = Tensor::zeros(&[3], DType::F64);
    assert_eq!(z.norm().item(), 0.0);
    assert_eq!(grad_of(|x| x.norm(), &z), vec![0.0; 3]);
    let (_, jv) = func::jvp(|x: &Tensor| x.norm(), &z, &t(&[1.0, 2.0, 3.0])).unwrap();
    assert_eq!(jv.item(), 0.0);
    // Away from zero it is x / ‖x‖.
    let g = grad_of(|x| x.norm(), &t(&[3.0, 4.0]));
    assert!((g[0] - 0.6).abs() < 1e-15 && (g[1] - 0.8).abs() < 1e-15);
}

#[test]
fn maximum_minimum_and_relu_propagate_nan() {
    let nan = f64::NAN;
    let m = t(&[1.0, nan]).maximum(&t(&[2.0, 0.0])).to_vec::<f64>();
    assert!(same(&m, &[2.0, nan]), "{m:?}");
    let m = t(&[0.0, 1.0]).maximum(&t(&[nan, 0.0])).to_vec::<f64>();
    assert!(same(&m, &[nan, 1.0]), "{m:?}");
    assert!(t(&[nan]).minimum(&t(&[0.0])).item().is_nan());
    assert!(t(&[0.0]).minimum(&t(&[nan])).item().is_nan());
    assert!(t(&[nan]).relu().item().is_nan());
    // Gradients: PyTorch gives the full gradient to both sides at a NaN.
    let b = t(&[2.0, 0.0]);
    assert_eq!(grad_of(|a| a.maximum(&b), &t(&[1.0, nan])), vec![0.0, 1.0]);
    assert_eq!(grad_of(|b| t(&[1.0, nan]).maximum(b), &b), vec![1.0, 1.0]);
    assert_eq!(grad_of(|a| a.minimum(&b), &t(&[1.0, 3.0])), vec![1.0, 0.0]);
}

#[test]
fn the_gradient_of_max_goes_to_the_nan() {
    let x = t(&[1.0, f64::NAN, 3.0]);
    assert!(x.max().item().is_nan());
    assert_eq!(grad_of(|x| x.max(), &x), vec![0.0, 1.0, 0.0]);
    assert_eq!(grad_of(|x| x.min(), &x), vec![0.0, 1.0, 0.0]);
    // Rows without a NaN are unaffected.
    let x = Tensor::from_vec(vec![1.0, f64::NAN, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let g = grad_of(|x| x.max_axes(&[1], false), &x);
    assert_eq!(g, vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
}

// ---- 3. sizes are checked before they are allocated -------------------------

fn too_large(r: Result<Tensor>) -> String {
    match r {
        Err(e @ Error::TooLarge { .. }) => e.to_string(),
        Err(e) => panic!("expected TooLarge, got {e}"),
        Ok(t) => panic!("expected an error, got shape {:?}", t.shape()),
    }
}

#[test]
fn shape_products_that_overflow_are_errors() {
    let e = too_large(Tensor::try_from_vec(Vec::<f64>::new(), &[1 << 32, 1 << 32]));
    assert!(e.contains("from_vec") && e.contains("overflows"), "{e}");
    let empty = Tensor::zeros(&[0], DType::F64);
    too_large(empty.try_reshape(&[1 << 32, 1 << 32, 0, 1 << 32]));
    too_large(Tensor::try_zeros(&[0, 1 << 40, 1 << 40], DType::F64));
    let one = Tensor::zeros(&[1], DType::F64);
    too_large(one.try_broadcast_to(&[1 << 32, 1 << 32, 1 << 32]));
    too_large(Tensor::try_zeros(&[1 << 32, 1 << 32], DType::F32));
}

#[test]
fn narrow_and_pad_bounds_that_overflow_are_errors() {
    let x = Tensor::zeros(&[2, 3], DType::F64);
    let e = x.try_narrow(1, usize::MAX, 2).unwrap_err().to_string();
    assert!(e.contains("narrow") && e.contains("overflows"), "{e}");
    assert!(x.try_pad(1, usize::MAX, 4).is_err());
    let e = too_large(x.try_pad(1, 0, 1 << 40));
    assert!(e.contains("pad") && e.contains("bytes"), "{e}");
}

#[test]
fn results_over_the_allocation_limit_are_errors() {
    // Every op that allocates checks its result's size first.
    // (An op on inputs that all repeat along an axis computes one copy, so
    // the sum of a column and a row is what must be refused.)
    let col = Tensor::zeros(&[1 << 20, 1], DType::F64);
    let row = Tensor::zeros(&[1, 1 << 20], DType::F64);
    let e = too_large(col.try_add(&row));
    assert!(e.contains("add") && e.contains("[1048576, 1048576]"), "{e}");
    let big = Tensor::zeros(&[1], DType::F64).broadcast_to(&[1 << 20, 1 << 20]);
    assert_eq!(big.exp().shape(), [1 << 20, 1 << 20]);
    too_large(col.try_matmul(&col.t()));
    let row_bias = Tensor::zeros(&[1 << 20], DType::F64);
    let e = too_large(col.try_affine(&col.t(), &row_bias, Some(Activation::Relu)));
    assert!(e.contains("affine"), "{e}");
    too_large(Tensor::try_concat(
        &[&big.narrow(0, 0, 1 << 19), &big.narrow(0, 0, 1 << 19)],
        0,
    ));
    too_large(Tensor::try_eye(1 << 24, DType::F64));
    too_large(Tensor::try_rand_normal(&[1 << 40], 0.0, 1.0, 0, DType::F64));
    // The panicking form panics with the same message (no abort).
    let caught = std::panic::catch_unwind(|| &col * &row).unwrap_err();
    let msg = caught.downcast_ref::<String>().unwrap();
    assert!(msg.contains("mul") && msg.contains("too large"), "{msg}");
}

#[test]
fn random_constructors_reject_bad_parameters() {
    assert!(Tensor::try_rand_normal(&[3], 0.0, f64::NAN, 0, DType::F64).is_err());
    assert!(Tensor::try_rand_normal(&[3], f64::INFINITY, 1.0, 0, DType::F64).is_err());
    assert!(Tensor::try_rand_normal(&[3], 0.0, -1.0, 0, DType::F64).is_err());
    assert!(Tensor::try_rand_uniform(&[3], 1.0, 1.0, 0, DType::F64).is_err());
    assert!(Tensor::try_rand_uniform(&[3], 2.0, 1.0, 0, DType::F64).is_err());
    assert!(Tensor::try_rand_uniform(&[3], 0.0, f64::INFINITY, 0, DType::F64).is_err());
    assert!(Tensor::try_rand_uniform(&[3], 0.0, 1.0, 0, DType::F64).is_ok());
}

// ---- 3. custom ops whose rules fail -----------------------------------------

/// `2x` with a JVP or VJP that misbehaves as configured.
struct Faulty {
    jvp: &'static str,
    vjp: &'static str,
}

impl CustomOp for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
        Ok(&x[0] * 2.0)
    }
    fn jvp(&self, x: &[Tensor], _y: &Tensor, t: &[Option<Tensor>]) -> Result<Tensor> {
        match self.jvp {
            "error" => Err(Error::Backward {
                msg: "no JVP here".into(),
            }),
            "shape" => Ok(Tensor::zeros(&[x[0].numel() + 1], x[0].dtype())),
            "panic" => panic!("the JVP fell over"),
            _ => Ok(t[0].as_ref().unwrap() * 2.0),
        }
    }
    fn vjp(&self, _x: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        match self.vjp {
            "panic" => panic!("the VJP fell over"),
            "shape" => Ok(vec![Some(Tensor::zeros(&[5], g.dtype()))]),
            _ => Ok(vec![Some(g * 2.0)]),
        }
    }
}

fn faulty(jvp: &'static str, vjp: &'static str) -> impl Fn(&Tensor) -> Result<Tensor> {
    move |x: &Tensor| Ok(apply(Arc::new(Faulty { jvp, vjp }), &[x])?.sum())
}

#[test]
fn a_failing_custom_jvp_is_an_error_in_every_forward_transform() {
    let x = t(&[1.0, 2.0]);
    for kind in ["error", "shape", "panic"] {
        let f = faulty(kind, "ok");
        let e = func::jvp(&f, &x, &t(&[1.0, 0.0])).unwrap_err().to_string();
        assert!(e.contains("faulty"), "{kind}: {e}");
        assert!(func::jacfwd(&f, &x).is_err(), "{kind}");
        assert!(func::hessian(&f, &x).is_err(), "{kind}");
    }
    // A well-behaved rule still works.
    let (_, jv) = func::jvp(faulty("ok", "ok"), &x, &t(&[1.0, 0.0])).unwrap();
    assert_eq!(jv.item(), 2.0);
}

#[test]
fn a_panicking_custom_vjp_is_an_error() {
    let x = t(&[1.0, 2.0]).requires_grad();
    let y = faulty("ok", "panic")(&x).unwrap();
    let e = y.backward().unwrap_err().to_string();
    assert!(e.contains("faulty") && e.contains("panicked"), "{e}");
}

#[test]
fn a_custom_vjp_of_the_wrong_shape_is_the_users_error() {
    let x = t(&[1.0, 2.0]).requires_grad();
    let e = faulty("ok", "shape")(&x)
        .unwrap()
        .backward()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("custom op `faulty`") && e.contains("[5]") && !e.contains("internal"),
        "{e}"
    );
    assert!(func::jacrev(faulty("ok", "shape"), &t(&[1.0, 2.0])).is_err());
}

/// A pass that fails midway (its thread's scratch left with gradients
/// waiting, a segment's sweep cut short) leaves the next pass on the
/// thread exact.
#[test]
fn a_pass_after_a_failed_one_is_exact() {
    for _ in 0..3 {
        let x = t(&[1.0, 2.0]).requires_grad();
        let y = faulty("ok", "shape")(&x).unwrap();
        let z = (&y * &y).sin() + &y;
        assert!(z.backward().is_err());
        let a = Tensor::scalar(0.5f64).requires_grad();
        let b = (&a * &a).sin() * 3.0 + &a;
        let g = autograd::grad(&[&b], &[&a]).unwrap();
        let want = 2.0 * 0.5 * (0.25f64).cos() * 3.0 + 1.0;
        assert!((g[0].item() - want).abs() < 1e-15, "{}", g[0].item());
    }
}

/// `x ↦ 3x` whose VJP runs a backward pass of its own (as a rule built
/// on `autograd::grad` does) while the outer pass is under way.
struct Nested;

impl CustomOp for Nested {
    fn name(&self) -> &'static str {
        "nested"
    }
    fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
        Ok(&x[0] * 3.0)
    }
    fn jvp(&self, _x: &[Tensor], _y: &Tensor, t: &[Option<Tensor>]) -> Result<Tensor> {
        Ok(t[0].as_ref().unwrap() * 3.0)
    }
    fn vjp(&self, _x: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // Rules run with recording off; this one records its own graph.
        let _recording = autograd::GradModeGuard::new(true);
        let u = Tensor::scalar(1.0f64).requires_grad();
        let three = autograd::grad(&[&((&u * 3.0).sin() / (3.0f64).cos())], &[&u])?;
        Ok(vec![Some(g * &three[0])])
    }
}

#[test]
fn a_pass_inside_a_rule_does_not_disturb_the_outer_one() {
    let x = Tensor::scalar(0.25f64).requires_grad();
    let y = apply(Arc::new(Nested), &[&x]).unwrap();
    let z = (&y * &y).exp();
    let g = autograd::grad(&[&z], &[&x]).unwrap()[0].item();
    let want = (0.75f64 * 0.75).exp() * 2.0 * 0.75 * 3.0;
    assert!((g - want).abs() < 1e-12 * want, "{g} vs {want}");
}

#[test]
fn a_custom_op_without_inputs_is_an_error() {
    let e = apply(
        Arc::new(Faulty {
            jvp: "ok",
            vjp: "ok",
        }),
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least one input"), "{e}");
}

#[test]
fn grad_targets_still_work_after_the_leaf_handle_is_dropped() {
    // The graph holds a leaf without owning its gradient slot.
    let x = t(&[1.0, 2.0]).requires_grad();
    let y = (&x * &x).sum();
    let g = autograd::grad(&[&y], &[&x]).unwrap();
    assert_eq!(g[0].to_vec::<f64>(), vec![2.0, 4.0]);
    let y = (&x * &x).sum();
    drop(x);
    y.backward().unwrap(); // accumulates into nothing, and does not fail
}

// ---- concatenation of views ---------------------------------------------

/// Pieces contiguous at an offset, transposed, broadcast and empty, joined
/// along each axis of a 3-d shape: every element lands where its piece's
/// row-major order says (the contiguous pieces take a faster path than the
/// others, and both must agree with this element-wise reference).
#[test]
fn concat_places_every_piece_whatever_its_layout() {
    let values = |n: usize, from: usize| (from..from + n).map(|v| v as f64).collect::<Vec<_>>();
    for (axis, mixed) in [
        (0, false),
        (1, false),
        (2, false),
        (0, true),
        (1, true),
        (2, true),
    ] {
        let piece = |len: usize, kind: usize| {
            // All contiguous but an empty transposed piece, or mixed.
            let kind = if mixed || len == 0 { kind } else { 0 };
            let mut shape = [2, 3, 4];
            shape[axis] = len;
            let n: usize = shape.iter().product();
            match kind {
                // A run of a larger buffer, starting past its beginning.
                0 => Tensor::from_vec(values(n + 9, 100), &[n + 9])
                    .narrow(0, 7, n)
                    .reshape(&shape),
                // Transposed: no run of memory in row-major order.
                1 => Tensor::from_vec(values(n, 500), &[shape[2], shape[1], shape[0]])
                    .permute(&[2, 1, 0]),
                _ => Tensor::from_vec(vec![-1.0], &[1, 1, 1]).broadcast_to(&shape),
            }
        };
        let pieces = [
            piece(2, 0),
            piece(0, 1),
            piece(3, 1),
            piece(1, 2),
            piece(1, 0),
        ];
        let refs: Vec<&Tensor> = pieces.iter().collect();
        let joined = Tensor::concat(&refs, axis);
        let mut expected_shape = [2, 3, 4];
        expected_shape[axis] = 7;
        assert_eq!(joined.shape(), expected_shape);
        let got = joined.to_vec::<f64>();
        let mut flat = 0;
        for i in 0..expected_shape[0] {
            for j in 0..expected_shape[1] {
                for k in 0..expected_shape[2] {
                    let mut index = [i, j, k];
                    let mut p = 0;
                    while index[axis] >= pieces[p].shape()[axis] {
                        index[axis] -= pieces[p].shape()[axis];
                        p += 1;
                    }
                    let s = pieces[p].shape();
                    let want =
                        pieces[p].to_vec::<f64>()[(index[0] * s[1] + index[1]) * s[2] + index[2]];
                    assert_eq!(got[flat], want, "axis {axis}, element {:?}", [i, j, k]);
                    flat += 1;
                }
            }
        }
    }
}
