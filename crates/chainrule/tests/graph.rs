//! Explicit graphs: building by tracing, errors at build time, printing and
//! DOT, graph-to-graph gradients (to second order), each optimization pass,
//! the memory plan, and running with feeds.

use chainrule::graph::Graph;
use chainrule::{DType, Tensor};

fn t64(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_normal(shape, 0.0, 1.0, seed, DType::F64)
}

fn assert_close(a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    for (i, (x, y)) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "entry {i}: {x} vs {y}"
        );
    }
}

#[test]
fn example_2_as_a_graph_with_its_gradient() {
    let (x, w, y) = (t64(&[6, 4], 1), t64(&[4], 2), t64(&[6], 3));
    let g = Graph::trace(&[("X", &x), ("w", &w), ("y", &y)], |t| {
        Ok(vec![(t[0].matmul(&t[1]) - &t[2]).square().sum()])
    })
    .unwrap();
    let grad = g.gradients(0, &["w"]).unwrap();
    assert_eq!(grad.num_outputs(), 2);
    let text = grad.to_string();
    assert!(
        text.contains("input X") && text.contains("matmul") && text.contains("outputs:"),
        "{text}"
    );
    assert!(grad.to_dot().starts_with("digraph"));
    // run on fresh values: the gradient is 2 Xᵀ(Xw − y)
    let (x2, w2, y2) = (t64(&[6, 4], 4), t64(&[4], 5), t64(&[6], 6));
    for exe in [grad.clone().compile(), grad.optimize().compile()] {
        let out = exe.run(&[("X", &x2), ("w", &w2), ("y", &y2)]).unwrap();
        let r = x2.matmul(&w2) - &y2;
        assert_close(&out[0], &r.square().sum(), 1e-12);
        assert_close(&out[1], &(x2.t().matmul(&r) * 2.0), 1e-12);
    }
}

#[test]
fn second_derivative_by_differentiating_the_gradient_graph() {
    // f(x) = Σ sin(x)·x³; f is a sum of elementwise terms, so the gradient of
    // Σ ∂f/∂x is the Hessian's diagonal: −sin x · x³ + 6x² cos x + 6x sin x.
    let x = t64(&[3], 7);
    let g = Graph::trace(&[("x", &x)], |t| {
        Ok(vec![(t[0].sin() * t[0].powf(3.0)).sum()])
    })
    .unwrap();
    let g1 = g.gradients(0, &["x"]).unwrap(); // outputs: f, ∂f/∂x
    let e = g1.gradients(1, &["x"]).unwrap_err().to_string();
    assert!(e.contains("single-element"), "{e}");
    let summed = g1.map_outputs(|_, o| Ok(vec![o[1].sum()])).unwrap();
    let g2 = summed.gradients(0, &["x"]).unwrap(); // outputs: Σ f', ∂(Σ f')/∂x
    let x2 = t64(&[3], 8);
    for exe in [g2.clone().compile(), g2.optimize().compile()] {
        let out = exe.run(&[("x", &x2)]).unwrap();
        let expected: Vec<f64> = x2
            .to_vec::<f64>()
            .iter()
            .map(|&x| -x.sin() * x.powi(3) + 6.0 * x * x * x.cos() + 6.0 * x * x.sin())
            .collect();
        assert_close(&out[1], &Tensor::from_vec(expected, &[3]), 1e-12);
    }
}

#[test]
fn shape_errors_at_build_time_name_op_shapes_and_line() {
    let (a, b) = (t64(&[2, 3], 1), t64(&[4], 2));
    let line = line!() + 1;
    let e = Graph::trace(&[("a", &a), ("b", &b)], |t| Ok(vec![&t[0] + &t[1]]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("add") && e.contains("[2, 3]") && e.contains("[4]"),
        "{e}"
    );
    assert!(e.contains(&format!("graph.rs:{line}")), "{e}");
    // try_* errors come back as errors too
    let e = Graph::trace(&[("a", &a), ("b", &b)], |t| {
        Ok(vec![t[0].try_matmul(&t[1])?])
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("matmul") && e.contains("[2, 3]"), "{e}");
    // feeds
    let g = Graph::trace(&[("a", &a)], |t| Ok(vec![t[0].exp()]))
        .unwrap()
        .compile();
    assert!(g
        .run(&[])
        .unwrap_err()
        .to_string()
        .contains("`a` was not fed"));
    let e = g.run(&[("a", &b)]).unwrap_err().to_string();
    assert!(e.contains("shape [4]") && e.contains("[2, 3]"), "{e}");
    let e = g.run(&[("a", &a), ("c", &a)]).unwrap_err().to_string();
    assert!(e.contains("`c` is not an input"), "{e}");
    assert!(Graph::trace(&[("a", &a), ("a", &b)], |_| Ok(vec![])).is_err());
}

#[test]
fn pruning_drops_unneeded_branches() {
    let x = t64(&[5], 1);
    let g = Graph::trace(&[("x", &x)], |t| {
        let _unused = t[0].exp().sum(); // computed while tracing, not needed
        Ok(vec![t[0].sin()])
    })
    .unwrap();
    assert_eq!(g.count("exp"), 1);
    let p = g.prune();
    assert_eq!(p.count("exp"), 0);
    assert_eq!(p.count("sum"), 0);
    assert_eq!(p.len(), 2); // input, sin
}

#[test]
fn common_subexpressions_are_merged() {
    let x = t64(&[5], 1);
    let g = Graph::trace(&[("x", &x)], |t| Ok(vec![t[0].sin() * t[0].sin()])).unwrap();
    assert_eq!(g.count("sin"), 2);
    let m = g.eliminate_common_subexpressions().prune();
    assert_eq!(m.count("sin"), 1);
    let x2 = t64(&[5], 2);
    let out = m.compile().run(&[("x", &x2)]).unwrap();
    assert_close(&out[0], &x2.sin().square(), 1e-15);
}

#[test]
fn constants_are_folded() {
    let x = t64(&[3], 1);
    let g = Graph::trace(&[("x", &x)], |t| {
        let c = (Tensor::ones(&[3], DType::F64) * 2.0).exp(); // no input involved
        Ok(vec![&t[0] * &c])
    })
    .unwrap();
    assert_eq!(g.count("exp"), 1);
    let f = g.fold_constants().unwrap().prune();
    assert_eq!(f.count("exp"), 0);
    assert_eq!(f.count("mul_scalar"), 0);
    let out = f.compile().run(&[("x", &x)]).unwrap();
    assert_close(&out[0], &(&x * (2.0f64).exp()), 1e-15);
}

#[test]
fn algebraic_identities_are_simplified() {
    let x = t64(&[2, 3], 1);
    let g = Graph::trace(&[("x", &x)], |t| {
        let a = &t[0] * &Tensor::ones(&[2, 3], DType::F64); // x·1
        let b = a + Tensor::zeros(&[2, 3], DType::F64); // +0
        let c = b.t().t(); // transpose of transpose
        let d = c.mul_scalar(1.0).add_scalar(0.0).reshape(&[2, 3]);
        let s = t[0]
            .sum_axes(&[1], true)
            .broadcast_to(&[2, 3])
            .sum_axes(&[1], false); // sum of a broadcast
        Ok(vec![d.exp(), s])
    })
    .unwrap();
    let s = g.simplify().prune();
    assert_eq!(s.count("mul "), 0);
    assert_eq!(s.count("add "), 0);
    assert_eq!(s.count("permute"), 0);
    assert_eq!(s.count("reshape"), 1); // [2,1] sum → [2] after the broadcast rewrite
    assert_eq!(s.count("broadcast_to"), 0);
    assert_eq!(s.count("mul_scalar 3"), 1);
    let x2 = t64(&[2, 3], 2);
    let out = s.compile().run(&[("x", &x2)]).unwrap();
    assert_close(&out[0], &x2.exp(), 1e-15);
    assert_close(&out[1], &(x2.sum_axes(&[1], false) * 3.0), 1e-14);
}

#[test]
fn the_gradient_of_a_vector_taken_apart_is_one_concat() {
    // Horner's rule reads each coefficient through its own narrow; the VJP
    // sums one pad per coefficient, which the simplifier merges into one
    // concat of the pieces (the pad of the whole axis then drops).
    let (c, t) = (t64(&[6], 1), t64(&[5], 2));
    let horner = |c: &Tensor, t: &Tensor| {
        let mut p = c.narrow(0, 5, 1);
        for j in (0..5).rev() {
            p = p * t + c.narrow(0, j, 1);
        }
        p.square().sum()
    };
    let g = Graph::trace(&[("c", &c), ("t", &t)], |x| {
        Ok(vec![chainrule::func::grad(|c| horner(c, &x[1]), &x[0])?])
    })
    .unwrap();
    assert_eq!(g.count("pad "), 6, "{g}");
    let s = g.optimize();
    assert_eq!(s.count("pad "), 0, "{s}");
    assert_eq!(s.count("concat "), 1, "{s}");
    let (c2, t2) = (t64(&[6], 3), t64(&[5], 4));
    let want = chainrule::func::grad(|c| horner(c, &t2), &c2).unwrap();
    let got = s.compile().run(&[("c", &c2), ("t", &t2)]).unwrap();
    assert_close(&got[0], &want, 1e-13);
    // Blocks apart are concatenated with zeros between them; overlapping
    // blocks add up, so they stay pads.
    let pieces = |at: [usize; 2]| {
        Graph::trace(&[("c", &c)], move |x| {
            let part = |c: &Tensor, s: usize| c.narrow(0, s, 2);
            let f = |c: &Tensor| {
                (part(c, at[0]) * part(&x[0], at[0])).sum()
                    + (part(c, at[1]) * part(&x[0], at[1])).sum()
            };
            Ok(vec![chainrule::func::grad(f, &x[0])?])
        })
        .unwrap()
        .optimize()
    };
    let (apart, overlapping) = (pieces([0, 3]), pieces([0, 1]));
    assert_eq!(
        (apart.count("concat "), apart.count("pad ")),
        (1, 1),
        "{apart}"
    );
    assert_eq!(overlapping.count("concat "), 0, "{overlapping}");
    let v = c2.to_vec::<f64>();
    let got = apart.compile().run(&[("c", &c2)]).unwrap();
    assert_eq!(got[0].to_vec::<f64>(), [v[0], v[1], 0.0, v[3], v[4], 0.0]);
    let got = overlapping.compile().run(&[("c", &c2)]).unwrap();
    assert_eq!(
        got[0].to_vec::<f64>(),
        [v[0], v[1] + v[1], v[2], 0.0, 0.0, 0.0]
    );
}

#[test]
fn memory_plan_releases_values_after_their_last_use() {
    let x = t64(&[1000], 1);
    let g = Graph::trace(&[("x", &x)], |t| {
        let mut u = t[0].clone();
        for _ in 0..20 {
            u = u.sin() * 0.5;
        }
        Ok(vec![u.sum()])
    })
    .unwrap();
    let plan = g.memory_plan();
    // 40 computed vectors of 8000 bytes plus the input; at most a few alive at once
    assert!(plan.unplanned_bytes >= 40 * 8000, "{plan:?}");
    assert!(plan.planned_peak_bytes <= 3 * 8000 + 8, "{plan:?}");
    let exe = g.compile();
    let a = exe.run_interpreted(&[("x", &x)]).unwrap();
    let b = exe.run_unplanned(&[("x", &x)]).unwrap();
    assert_eq!(a[0].item(), b[0].item());
    // Native code sums in another order: equal to rounding.
    let c = exe.run(&[("x", &x)]).unwrap();
    assert!((c[0].item() - a[0].item()).abs() <= 1e-12 * a[0].item().abs());
}

#[test]
fn optimize_reports_and_keeps_values() {
    let (x, w) = (t64(&[4, 3], 1), t64(&[3], 2));
    let g = Graph::trace(&[("x", &x), ("w", &w)], |t| {
        Ok(vec![(t[0].matmul(&t[1]).tanh() * 1.0).sum()])
    })
    .unwrap()
    .gradients(0, &["x", "w"])
    .unwrap();
    let (o, report) = g.optimize_with_report();
    assert_eq!(report.nodes_before, g.len());
    assert_eq!(report.nodes_after, o.len());
    assert!(o.len() < g.len(), "{report:?}\n{g}");
    let (x2, w2) = (t64(&[4, 3], 3), t64(&[3], 4));
    let a = g.compile().run(&[("x", &x2), ("w", &w2)]).unwrap();
    let b = o.compile().run(&[("x", &x2), ("w", &w2)]).unwrap();
    for (p, q) in a.iter().zip(&b) {
        assert_close(p, q, 1e-14);
    }
}

#[test]
fn symbolic_dimensions_specialize_per_size_and_check_feeds() {
    use chainrule::graph::{Dim, Placeholder, SymbolicGraph};
    // z = ‖Xw − y‖² with X (n, 3), w (3), y (n): n left symbolic
    let g = SymbolicGraph::declare(
        &[
            Placeholder::new("X", &[Dim::sym("n"), 3.into()], DType::F64),
            Placeholder::new("w", &[3.into()], DType::F64),
            Placeholder::new("y", &[Dim::sym("n")], DType::F64),
        ],
        |t| Ok(vec![(t[0].matmul(&t[1]) - &t[2]).square().sum()]),
    )
    .unwrap()
    .gradients(0, &["w"])
    .unwrap()
    .optimize();
    for (n, seed) in [(5, 1), (9, 2), (5, 3)] {
        let (x, w, y) = (
            t64(&[n, 3], seed),
            t64(&[3], seed + 10),
            t64(&[n], seed + 20),
        );
        let out = g.run(&[("X", &x), ("w", &w), ("y", &y)]).unwrap();
        let r = x.matmul(&w) - &y;
        assert_close(&out[1], &(x.t().matmul(&r) * 2.0), 1e-12);
    }
    assert_eq!(g.compiled_sizes(), 2); // n = 5 and n = 9
    let (x, w) = (t64(&[5, 3], 1), t64(&[3], 2));
    let e = g
        .run(&[("X", &x), ("w", &w), ("y", &t64(&[6], 3))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("size `n` is 5 in input `X` but 6 in input `y`"),
        "{e}"
    );
    let e = g
        .run(&[("X", &t64(&[5, 4], 1)), ("w", &w), ("y", &t64(&[5], 3))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`X` axis 1 must have size 3, got 4"), "{e}");
    // A mismatch between declared sizes is caught when declaring.
    let bad = SymbolicGraph::declare(
        &[
            Placeholder::new("a", &[Dim::sym("n")], DType::F64),
            Placeholder::new("b", &[Dim::sym("m")], DType::F64),
        ],
        |t| Ok(vec![t[0].dot(&t[1])]),
    );
    // n and m may differ, so the dot product is refused when declared.
    let e = bad.err().unwrap().to_string();
    assert!(
        e.contains("matmul") && e.contains("[3]") && e.contains("[4]"),
        "{e}"
    );
    let bad = SymbolicGraph::declare(
        &[
            Placeholder::new("a", &[Dim::sym("n"), 2.into()], DType::F64),
            Placeholder::new("b", &[3.into()], DType::F64),
        ],
        |t| Ok(vec![t[0].matmul(&t[1])]),
    );
    let e = bad.err().unwrap().to_string();
    assert!(
        e.contains("matmul") && e.contains("[3, 2]") && e.contains("[3]"),
        "{e}"
    );
}

#[test]
fn a_trace_records_an_affine_layer_as_the_three_ops_it_compiles() {
    // Eager code runs `affine` as one op; a trace sees matmul, add and relu,
    // which its optimizer and compiler know.
    let x = Tensor::from_vec(vec![1.0f64, -2.0, 0.5, 3.0], &[2, 2]);
    let w = Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 0.25], &[2, 2]);
    let b = Tensor::from_vec(vec![0.1f64, -0.1], &[2]);
    let eager = x.affine(&w, &b, Some(chainrule::nn::Activation::Relu));
    let g = Graph::trace(&[("x", &x), ("w", &w), ("b", &b)], |t| {
        Ok(vec![t[0].affine(
            &t[1],
            &t[2],
            Some(chainrule::nn::Activation::Relu),
        )])
    })
    .unwrap();
    let text = g.to_string();
    assert!(
        text.contains("matmul") && text.contains("relu") && !text.contains("affine"),
        "{text}"
    );
    let run = g.compile().run(&[("x", &x), ("w", &w), ("b", &b)]).unwrap();
    assert_eq!(run[0].to_vec::<f64>(), eager.to_vec::<f64>());
}

/// An elementwise op on an expanded input returns one copy, expanded, so
/// the optimizer keeps a `contiguous` after it: the value asked for
/// contiguous is contiguous, interpreted and compiled.
#[test]
fn contiguous_after_an_op_on_an_expanded_input_is_kept() {
    let x = t64(&[3, 1], 4);
    let g = Graph::trace(&[("x", &x)], |t| {
        Ok(vec![t[0].broadcast_to(&[3, 5]).exp().contiguous()])
    })
    .unwrap();
    let exe = g.optimize().compile();
    for out in [exe.run_interpreted(&[("x", &x)]), exe.run(&[("x", &x)])] {
        let out = out.unwrap();
        assert!(out[0].is_contiguous());
        assert_close(&out[0], &x.broadcast_to(&[3, 5]).contiguous().exp(), 0.0);
    }
}
