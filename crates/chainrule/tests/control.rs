//! Control flow as primitives: `scan`, `fori_loop`, `while_loop` in every
//! mode (reverse, forward, Hessians through a loop, `vmap`), in traced and
//! compiled graphs, and their errors.

use chainrule::check::{gradcheck, GradcheckOptions};
use chainrule::control::{fori_loop, scan, scan_with, while_loop, while_loop_bounded, ScanOptions};
use chainrule::graph::Graph;
use chainrule::{func, DType, Tensor};

#[track_caller]
fn assert_close(a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    for (i, (x, y)) in a.to_vec_f64().iter().zip(b.to_vec_f64()).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "entry {i}: {x} vs {y}"
        );
    }
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_normal(shape, 0.0, 1.0, seed, DType::F64)
}

/// The bench's `chain`: `u ← sin(u)·½ + u·½`, K times, as one loop.
fn chain(x: &Tensor, k: usize) -> Tensor {
    fori_loop(
        0,
        k,
        |_, u| Ok(vec![u[0].sin() * 0.5 + &u[0] * 0.5]),
        std::slice::from_ref(x),
    )
    .unwrap()
    .remove(0)
}

/// The same chain written out op by op.
fn chain_unrolled(x: &Tensor, k: usize) -> Tensor {
    (0..k).fold(x.clone(), |u, _| u.sin() * 0.5 + &u * 0.5)
}

/// An RNN over `xs` (steps × 3) with weights captured from outside the body.
fn rnn(w: &Tensor, h0: &Tensor, xs: &Tensor) -> Tensor {
    let (h, ys) = scan(
        |h, x| {
            let h = (w.matmul(&h[0]) + &x[0]).tanh();
            Ok((vec![h.clone()], vec![h.square().sum()]))
        },
        std::slice::from_ref(h0),
        std::slice::from_ref(xs),
    )
    .unwrap();
    ys[0].sum() + h[0].sum()
}

fn rnn_unrolled(w: &Tensor, h0: &Tensor, xs: &Tensor) -> Tensor {
    let mut h = h0.clone();
    let mut total = Tensor::scalar(0.0f64);
    for t in 0..xs.shape()[0] {
        h = (w.matmul(&h) + xs.narrow(0, t, 1).squeeze(0)).tanh();
        total += h.square().sum();
    }
    total + h.sum()
}

#[test]
fn a_loop_is_one_op_and_gives_the_unrolled_values_and_derivatives() {
    let x = Tensor::scalar(0.7f64);
    assert_close(&chain(&x, 50), &chain_unrolled(&x, 50), 1e-14);
    let g = func::grad(|x| chain(x, 50), &x).unwrap();
    let g_unrolled = func::grad(|x| chain_unrolled(x, 50), &x).unwrap();
    assert_close(&g, &g_unrolled, 1e-13);
    let (_, t) = func::jvp(|x| chain(x, 50), &x, &Tensor::scalar(1.0f64)).unwrap();
    assert_close(&t, &g_unrolled, 1e-13);

    let g = Graph::trace(&[("x", &x)], |t| Ok(vec![chain(&t[0], 1000)])).unwrap();
    assert_eq!(g.count("scan"), 1, "{g}");
    assert!(g.len() < 10, "the loop is not unrolled: {g}");
}

#[test]
fn gradcheck_jvp_and_hessian_through_an_rnn_scan_with_captured_weights() {
    let w = randn(&[3, 3], 1) * 0.5;
    let h0 = randn(&[3], 2);
    let xs = randn(&[6, 3], 3);
    let inputs = [w.clone(), h0.clone(), xs.clone()];
    assert_close(&rnn(&w, &h0, &xs), &rnn_unrolled(&w, &h0, &xs), 1e-13);
    gradcheck(
        |t| rnn(&t[0], &t[1], &t[2]),
        &inputs,
        GradcheckOptions::default(),
    )
    .unwrap();
    let reverse = func::grad_n(|t| rnn(&t[0], &t[1], &t[2]), &inputs).unwrap();
    let unrolled = func::grad_n(|t| rnn_unrolled(&t[0], &t[1], &t[2]), &inputs).unwrap();
    for (a, b) in reverse.iter().zip(&unrolled) {
        assert_close(a, b, 1e-12);
    }
    // Forward mode along a direction in every input at once.
    let dirs = [randn(&[3, 3], 4), randn(&[3], 5), randn(&[6, 3], 6)];
    let (_, t) = func::jvp_n(|t| rnn(&t[0], &t[1], &t[2]), &inputs, &dirs).unwrap();
    let expected: f64 = reverse
        .iter()
        .zip(&dirs)
        .map(|(g, d)| (g * d).sum().item())
        .sum();
    assert!(
        (t.item() - expected).abs() < 1e-11,
        "{} vs {expected}",
        t.item()
    );
    // Hessians through the loop, both ways round, against the unrolled one.
    let f = |h: &Tensor| rnn(&w, h, &xs);
    let f_unrolled = |h: &Tensor| rnn_unrolled(&w, h, &xs);
    let expected = func::hessian(f_unrolled, &h0).unwrap();
    assert_close(&func::hessian(f, &h0).unwrap(), &expected, 1e-11);
    assert_close(&func::hessian_rev(f, &h0).unwrap(), &expected, 1e-11);
}

#[test]
fn scan_outputs_reverse_order_and_a_length_without_inputs() {
    let xs = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    let step = |c: &[Tensor], x: &[Tensor]| {
        let s = &c[0] * 10.0 + &x[0];
        Ok((vec![s.clone()], vec![s]))
    };
    let (c, ys) = scan(step, &[Tensor::scalar(0.0f64)], std::slice::from_ref(&xs)).unwrap();
    assert_eq!(c[0].item(), 123.0);
    assert_eq!(ys[0].to_vec::<f64>(), [1.0, 12.0, 123.0]);
    let reverse = ScanOptions {
        length: None,
        reverse: true,
    };
    let (c, ys) = scan_with(step, &[Tensor::scalar(0.0f64)], &[xs], reverse).unwrap();
    assert_eq!(c[0].item(), 321.0);
    assert_eq!(ys[0].to_vec::<f64>(), [321.0, 32.0, 3.0]);
    let counted = ScanOptions {
        length: Some(4),
        reverse: false,
    };
    let (c, _) = scan_with(
        |c, _| Ok((vec![&c[0] * 2.0, &c[1] + 1.0], vec![])),
        &[Tensor::scalar(1.0f64), Tensor::zeros(&[2], DType::F64)],
        &[],
        counted,
    )
    .unwrap();
    assert_eq!(c[0].item(), 16.0);
    assert_eq!(c[1].to_vec::<f64>(), [4.0, 4.0]);
    // fori_loop's index starts at `lower`; zero steps give the carry back.
    let sum = fori_loop(2, 5, |i, c| Ok(vec![&c[0] + i]), &[Tensor::scalar(0.0f64)]).unwrap();
    assert_eq!(sum[0].item(), 9.0);
    let none = fori_loop(3, 3, |i, c| Ok(vec![&c[0] + i]), &[Tensor::scalar(7.0f64)]).unwrap();
    assert_eq!(none[0].item(), 7.0);
}

#[test]
fn while_loop_runs_to_its_condition_and_differentiates_forward() {
    // Halve until below 1: 20 → 10 → 5 → 2.5 → 1.25 → 0.625.
    let halve = |x: &Tensor| {
        while_loop(
            |c| Ok(c[0].gt_scalar(1.0)),
            |c| Ok(vec![&c[0] * 0.5]),
            std::slice::from_ref(x),
        )
        .unwrap()
        .remove(0)
    };
    let x = Tensor::scalar(20.0f64);
    assert_eq!(halve(&x).item(), 0.625);
    let (_, t) = func::jvp(halve, &x, &Tensor::scalar(1.0f64)).unwrap();
    assert_eq!(t.item(), 0.5f64.powi(5));
    let e = func::grad(halve, &x).unwrap_err().to_string();
    assert!(e.contains("while_loop") && e.contains("bound"), "{e}");
    // The bounded form differentiates in reverse mode too.
    let bounded = |x: &Tensor| {
        while_loop_bounded(
            |c| Ok(c[0].gt_scalar(1.0)),
            |c| Ok(vec![&c[0] * 0.5]),
            std::slice::from_ref(x),
            100,
        )
        .unwrap()
        .remove(0)
    };
    assert_eq!(bounded(&x).item(), 0.625);
    assert_eq!(func::grad(bounded, &x).unwrap().item(), 0.5f64.powi(5));
}

#[test]
fn vmap_of_a_loop_maps_every_example() {
    let xs = Tensor::from_vec(vec![0.1f64, 0.5, -2.0], &[3]);
    let mapped =
        func::vmap(|t: &[Tensor]| chain(&t[0], 20), &[Some(0)], 0)(std::slice::from_ref(&xs))
            .unwrap();
    let each: Vec<f64> = xs
        .to_vec::<f64>()
        .iter()
        .map(|&x| chain_unrolled(&Tensor::scalar(x), 20).item())
        .collect();
    assert_close(&mapped, &Tensor::from_slice(&each, &[3]), 1e-14);
    // Per-example gradients: vmap of grad through the loop.
    let grads = func::vmap(
        |t: &[Tensor]| func::grad(|x| chain(x, 20), &t[0]),
        &[Some(0)],
        0,
    )(std::slice::from_ref(&xs))
    .unwrap();
    for (k, &x) in xs.to_vec::<f64>().iter().enumerate() {
        let g = func::grad(|x| chain_unrolled(x, 20), &Tensor::scalar(x)).unwrap();
        assert!((grads.to_vec::<f64>()[k] - g.item()).abs() < 1e-13);
    }
}

#[test]
fn compiled_and_jitted_loops_equal_eager_ones() {
    let w = randn(&[3, 3], 7) * 0.5;
    let h0 = randn(&[3], 8);
    let xs = randn(&[5, 3], 9);
    let g = Graph::trace(&[("w", &w), ("h0", &h0), ("xs", &xs)], |t| {
        Ok(vec![rnn(&t[0], &t[1], &t[2])])
    })
    .unwrap();
    let with_grad = g.gradients(0, &["w", "h0", "xs"]).unwrap();
    let exe = with_grad.optimize().compile();
    let out = exe.run(&[("w", &w), ("h0", &h0), ("xs", &xs)]).unwrap();
    let eager = func::grad_n(
        |t| rnn(&t[0], &t[1], &t[2]),
        &[w.clone(), h0.clone(), xs.clone()],
    )
    .unwrap();
    assert_close(&out[0], &rnn(&w, &h0, &xs), 1e-13);
    for (a, b) in out[1..].iter().zip(&eager) {
        assert_close(a, b, 1e-12);
    }
    let df = func::jit(|x: &[Tensor]| func::grad(|x| chain(x, 300), &x[0]));
    let x = Tensor::scalar(0.3f64);
    let expected = func::grad(|x| chain_unrolled(x, 300), &x).unwrap();
    assert_close(
        &df.call(std::slice::from_ref(&x)).unwrap(),
        &expected,
        1e-12,
    );
    assert_close(
        &df.call(std::slice::from_ref(&x)).unwrap(),
        &expected,
        1e-12,
    );
}

#[test]
fn loop_errors_name_the_loop_and_the_shapes() {
    let x = Tensor::zeros(&[2], DType::F64);
    let e = fori_loop(0, 3, |_, c| Ok(vec![c[0].sum()]), std::slice::from_ref(&x))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("scan") && e.contains("[2]") && e.contains("[]"),
        "{e}"
    );
    let e = scan(
        |c, _| Ok((c.to_vec(), vec![])),
        std::slice::from_ref(&x),
        &[
            Tensor::zeros(&[3], DType::F64),
            Tensor::zeros(&[4], DType::F64),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("4 steps") && e.contains("3"), "{e}");
    let e = fori_loop(0, 3, |_, c| Ok(c.to_vec()), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least one carry"), "{e}");
    let e = fori_loop(
        0,
        3,
        |_, c| Ok(c.to_vec()),
        &[x.clone(), Tensor::zeros(&[1], DType::F32)],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("f32") && e.contains("f64"), "{e}");
}

#[test]
fn native_loops_equal_interpreted_ones_in_every_mode() {
    use chainrule::control::with_interpreted_loops;
    // Long enough to be compiled on first use.
    let k = 3000;
    let x = Tensor::scalar(0.4f64);
    let value = chain(&x, k);
    let interpreted = with_interpreted_loops(|| chain(&x, k));
    assert_close(&value, &interpreted, 1e-15);
    assert_close(&value, &chain_unrolled(&x, k), 1e-15);
    let g = func::grad(|x| chain(x, k), &x).unwrap();
    let gi = with_interpreted_loops(|| func::grad(|x| chain(x, k), &x).unwrap());
    assert_close(&g, &gi, 1e-14);
    let (_, t) = func::jvp(|x| chain(x, k), &x, &Tensor::scalar(1.0f64)).unwrap();
    assert_close(&t, &gi, 1e-14);
    // An RNN with matrices, reductions and per-step outputs, f32 and f64.
    for dtype in [DType::F64, DType::F32] {
        let w = (randn(&[4, 4], 11) * 0.4).to_dtype(dtype);
        let h0 = randn(&[4], 12).to_dtype(dtype);
        let xs = randn(&[400, 4], 13).to_dtype(dtype);
        let f = |t: &[Tensor]| rnn(&t[0], &t[1], &t[2]);
        let inputs = [w.clone(), h0.clone(), xs.clone()];
        let tol = if dtype == DType::F32 { 1e-4 } else { 1e-12 };
        assert_close(&f(&inputs), &with_interpreted_loops(|| f(&inputs)), tol);
        let g = func::grad_n(f, &inputs).unwrap();
        let gi = with_interpreted_loops(|| func::grad_n(f, &inputs).unwrap());
        for (a, b) in g.iter().zip(&gi) {
            assert_close(a, b, tol);
        }
    }
    // A while loop, compiled on first use.
    let count = |x: &Tensor| {
        while_loop(
            |c| Ok(c[0].gt_scalar(1e-3)),
            |c| Ok(vec![c[0].sin() * 0.999, &c[1] + 1.0]),
            &[x.clone(), Tensor::scalar(0.0f64)],
        )
        .unwrap()
    };
    let native = count(&x);
    let interpreted = with_interpreted_loops(|| count(&x));
    assert_eq!(native[1].item(), interpreted[1].item());
    assert!(native[1].item() > 100.0);
    assert_close(&native[0], &interpreted[0], 1e-15);
}

#[test]
fn a_compiled_graph_reports_its_native_loops() {
    let x = Tensor::scalar(0.3f64);
    let g = Graph::trace(&[("x", &x)], |t| Ok(vec![chain(&t[0], 10)])).unwrap();
    let with_grad = g.gradients(0, &["x"]).unwrap();
    assert_eq!(
        with_grad.count("scan"),
        3,
        "the value, the stacked carries, the backward loop"
    );
    let optimized = with_grad.optimize();
    // The value is read from the loop that stacks the carries: the forward
    // pass runs once.
    assert_eq!(optimized.count("scan"), 2, "{optimized}");
    let exe = optimized.compile();
    let report = exe.report().unwrap();
    assert_eq!(report.native_loops, 2, "{report:?}");
    assert_eq!(report.interpreted_loops, 0, "{report:?}");
    let out = exe.run(&[("x", &x)]).unwrap();
    let expected = func::grad(|x| chain_unrolled(x, 10), &x).unwrap();
    assert_close(&out[1], &expected, 1e-14);
}

#[test]
fn vmap_runs_one_loop_for_every_example() {
    // A scan whose per-step inputs and captured weight are both mapped.
    let ws = randn(&[3, 3, 3], 21) * 0.5;
    let h0 = randn(&[3], 22);
    let xss = randn(&[3, 4, 3], 23);
    let mapped = func::vmap(
        |t: &[Tensor]| rnn(&t[0], &t[1], &t[2]),
        &[Some(0), None, Some(0)],
        0,
    )(&[ws.clone(), h0.clone(), xss.clone()])
    .unwrap();
    for e in 0..3 {
        let one = rnn_unrolled(
            &ws.narrow(0, e, 1).squeeze(0),
            &h0,
            &xss.narrow(0, e, 1).squeeze(0),
        );
        assert!((mapped.to_vec::<f64>()[e] - one.item()).abs() < 1e-12);
    }
    let xs = Tensor::from_vec(vec![0.1f64, 0.5, -2.0], &[3]);
    let g = Graph::trace(&[("xs", &xs)], |t| {
        Ok(vec![func::vmap(
            |t: &[Tensor]| chain(&t[0], 20),
            &[Some(0)],
            0,
        )(&[t[0].clone()])?])
    })
    .unwrap();
    assert_eq!(g.count("scan"), 1, "{g}");
    // A while loop whose examples stop at different steps.
    let halve = |t: &[Tensor]| {
        while_loop(
            |c| Ok(c[0].gt_scalar(1.0)),
            |c| Ok(vec![&c[0] * 0.5]),
            &[t[0].clone()],
        )
        .map(|mut c| c.remove(0))
    };
    let starts = Tensor::from_vec(vec![20.0f64, 0.5, 3.0], &[3]);
    let ends = func::vmap(halve, &[Some(0)], 0)(std::slice::from_ref(&starts)).unwrap();
    assert_eq!(ends.to_vec::<f64>(), [0.625, 0.5, 0.75]);
    // jacfwd (vmap of jvp) through a loop.
    let x = Tensor::from_vec(vec![0.3f64, -0.7], &[2]);
    let j = func::jacfwd(|x| chain(x, 30), &x).unwrap();
    let j_unrolled = func::jacfwd(|x| chain_unrolled(x, 30), &x).unwrap();
    assert_close(&j, &j_unrolled, 1e-13);
}
