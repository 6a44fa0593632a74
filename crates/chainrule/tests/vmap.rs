//! `vmap`: nesting, axes, every order of composition with the other
//! transforms and with explicit graphs, per-example gradients, custom ops,
//! and errors. (Every op of the op table is also batched there.)

use chainrule::custom::{apply, CustomOp};
use chainrule::graph::Graph;
use chainrule::{func, DType, Result, Tensor};
use std::sync::Arc;

fn assert_close(a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.shape(), b.shape(), "shapes");
    for (i, (x, y)) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "entry {i}: {x} vs {y}"
        );
    }
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_normal(shape, 0.0, 1.0, seed, DType::F64)
}

fn stack(ts: &[Tensor], axis: usize) -> Tensor {
    let refs: Vec<&Tensor> = ts.iter().collect();
    Tensor::stack(&refs, axis)
}

fn row(t: &Tensor, i: usize) -> Tensor {
    t.narrow(0, i, 1).squeeze(0)
}

/// `f(x) = Σ tanh(W x) ⊙ x₀…`: a small nonlinear scalar function of a vector.
fn f(w: &Tensor, x: &Tensor) -> Tensor {
    (w.matmul(x).tanh() * x.sum()).sum() + x.sin().square().sum()
}

#[test]
fn maps_over_the_chosen_axes_and_stacks_along_the_output_axis() {
    let a = randn(&[3, 4], 1); // mapped along axis 1: 4 examples of shape [3]
    let b = randn(&[3], 2); // shared
    let out =
        func::vmap(|xs: &[Tensor]| &xs[0] * &xs[1], &[Some(1), None], 1)(&[a.clone(), b.clone()])
            .unwrap();
    // out[:, j] = a[:, j] * b: with out_axis 1 that is a * b[:, None].
    assert_close(&out, &(&a * &b.unsqueeze(1)), 0.0);
}

#[test]
fn nested_vmap_is_an_outer_product_of_batches() {
    let x = randn(&[3], 3);
    let y = randn(&[4], 4);
    let inner =
        |xs: &[Tensor]| func::vmap(|ys: &[Tensor]| &ys[0] * &ys[1], &[None, Some(0)], 0)(xs);
    let outer = func::vmap(inner, &[Some(0), None], 0)(&[x.clone(), y.clone()]).unwrap();
    assert_close(&outer, &x.unsqueeze(1).matmul(&y.unsqueeze(0)), 1e-15);
}

#[test]
fn per_example_gradients_match_a_loop() {
    let w = randn(&[2, 5], 5);
    let xs = randn(&[6, 5], 6);
    let grad_w = |a: &[Tensor]| func::grad(|w: &Tensor| f(w, &a[1]), &a[0]);
    let batched = func::vmap(grad_w, &[None, Some(0)], 0)(&[w.clone(), xs.clone()]).unwrap();
    let looped: Vec<Tensor> = (0..6)
        .map(|i| func::grad(|w: &Tensor| f(w, &row(&xs, i)), &w).unwrap())
        .collect();
    assert_close(&batched, &stack(&looped, 0), 1e-12);
}

#[test]
fn grad_of_vmap_is_the_gradient_of_the_batched_sum() {
    let w = randn(&[2, 5], 7);
    let xs = randn(&[4, 5], 8);
    let total = |w: &Tensor| {
        let per = func::vmap(|a: &[Tensor]| f(&a[0], &a[1]), &[None, Some(0)], 0)(&[
            w.clone(),
            xs.clone(),
        ])?;
        Ok::<_, chainrule::Error>(per.sum())
    };
    let g = func::grad(total, &w).unwrap();
    let looped = (0..4)
        .map(|i| func::grad(|w: &Tensor| f(w, &row(&xs, i)), &w).unwrap())
        .reduce(|a, b| a + b)
        .unwrap();
    assert_close(&g, &looped, 1e-12);
}

#[test]
fn jvp_and_vmap_commute() {
    let w = randn(&[2, 5], 9);
    let xs = randn(&[3, 5], 10);
    let vs = randn(&[3, 5], 11);
    let fx = |x: &Tensor| f(&w, x);
    // vmap of jvp
    let a = func::vmap(
        |a: &[Tensor]| Ok::<_, chainrule::Error>(func::jvp(fx, &a[0], &a[1])?.1),
        &[Some(0), Some(0)],
        0,
    )(&[xs.clone(), vs.clone()])
    .unwrap();
    // jvp of vmap
    let mapped =
        |x: &Tensor| func::vmap(|a: &[Tensor]| fx(&a[0]), &[Some(0)], 0)(std::slice::from_ref(x));
    let b = func::jvp(mapped, &xs, &vs).unwrap().1;
    assert_close(&a, &b, 1e-12);
}

#[test]
fn hessians_inside_vmap_and_vmap_inside_hessians() {
    let w = randn(&[2, 3], 12);
    let xs = randn(&[4, 3], 13);
    let fx = |x: &Tensor| f(&w, x);
    let looped: Vec<Tensor> = (0..4)
        .map(|i| func::hessian(fx, &row(&xs, i)).unwrap())
        .collect();
    let expected = stack(&looped, 0);
    for (name, h) in [
        (
            "vmap of hessian (forward over reverse)",
            func::vmap(|a: &[Tensor]| func::hessian(fx, &a[0]), &[Some(0)], 0)(
                std::slice::from_ref(&xs),
            ),
        ),
        (
            "vmap of hessian_rev",
            func::vmap(|a: &[Tensor]| func::hessian_rev(fx, &a[0]), &[Some(0)], 0)(
                std::slice::from_ref(&xs),
            ),
        ),
        (
            "vmap of jacfwd of grad",
            func::vmap(
                |a: &[Tensor]| func::jacfwd(|x: &Tensor| func::grad(fx, x), &a[0]),
                &[Some(0)],
                0,
            )(std::slice::from_ref(&xs)),
        ),
    ] {
        let h = h.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_close(&h, &expected, 1e-10);
    }
    // The Hessian of Σᵢ f(xᵢ) over the whole batch is block diagonal.
    let total = |x: &Tensor| {
        Ok::<_, chainrule::Error>(
            func::vmap(|a: &[Tensor]| fx(&a[0]), &[Some(0)], 0)(std::slice::from_ref(x))?.sum(),
        )
    };
    let big = func::hessian(total, &xs).unwrap(); // [4, 3, 4, 3]
    for (i, h) in looped.iter().enumerate() {
        for j in 0..4 {
            let block = big.narrow(0, i, 1).narrow(2, j, 1).reshape(&[3, 3]);
            if i == j {
                assert_close(&block, h, 1e-10);
            } else {
                assert_close(&block, &Tensor::zeros(&[3, 3], DType::F64), 1e-12);
            }
        }
    }
}

#[test]
fn pullbacks_under_vmap_and_jacobians_of_vmap() {
    let w = randn(&[2, 3], 24);
    let xs = randn(&[4, 3], 25);
    let g = |x: &Tensor| w.matmul(&x.sin()); // R³ → R², per example
                                             // One pullback, many cotangents at once.
    let x0 = row(&xs, 0);
    let (_, pullback) = func::vjp(g, &x0).unwrap();
    let us = randn(&[5, 2], 26);
    let mapped =
        func::vmap(|u: &[Tensor]| pullback.call(&u[0]), &[Some(0)], 0)(std::slice::from_ref(&us))
            .unwrap();
    let looped: Vec<Tensor> = (0..5)
        .map(|i| pullback.call(&row(&us, i)).unwrap())
        .collect();
    assert_close(&mapped, &stack(&looped, 0), 1e-14);
    // The Jacobian of the batched map is block diagonal.
    let batched =
        |x: &Tensor| func::vmap(|a: &[Tensor]| g(&a[0]), &[Some(0)], 0)(std::slice::from_ref(x));
    let j = func::jacrev(batched, &xs).unwrap(); // [4, 2, 4, 3]
    let jf = func::jacfwd(batched, &xs).unwrap();
    assert_close(&j, &jf, 1e-14);
    for i in 0..4 {
        let block = j.narrow(0, i, 1).narrow(2, i, 1).reshape(&[2, 3]);
        assert_close(&block, &func::jacrev(g, &row(&xs, i)).unwrap(), 1e-14);
    }
}

#[test]
fn jacobians_are_batched_sweeps() {
    let a = randn(&[4, 3], 14);
    let x = randn(&[3], 15);
    let g = |x: &Tensor| a.matmul(&x.tanh());
    // J = A diag(1 − tanh²x)
    let d = 1.0 - x.tanh().square();
    let expected = &a * &d.unsqueeze(0);
    assert_close(&func::jacrev(g, &x).unwrap(), &expected, 1e-14);
    assert_close(&func::jacfwd(g, &x).unwrap(), &expected, 1e-14);
}

#[test]
fn graphs_trace_vmap_and_run_inside_it() {
    let w = randn(&[2, 3], 16);
    let xs = randn(&[5, 3], 17);
    // vmap inside a traced graph: the batched ops are its nodes.
    let g = Graph::trace(&[("w", &w), ("xs", &xs)], |t| {
        Ok(vec![func::vmap(
            |a: &[Tensor]| f(&a[0], &a[1]),
            &[None, Some(0)],
            0,
        )(t)?])
    })
    .unwrap();
    let looped: Vec<Tensor> = (0..5).map(|i| f(&w, &row(&xs, i))).collect();
    let exe = g.optimize().compile();
    let out = exe.run(&[("w", &w), ("xs", &xs)]).unwrap();
    assert_close(&out[0], &stack(&looped, 0), 1e-12);

    // A compiled graph of one example, run under vmap.
    let x0 = row(&xs, 0);
    let single = Graph::trace(&[("w", &w), ("x", &x0)], |t| Ok(vec![f(&t[0], &t[1])]))
        .unwrap()
        .compile();
    let mapped = func::vmap(
        |a: &[Tensor]| {
            Ok::<_, chainrule::Error>(single.run(&[("w", &a[0]), ("x", &a[1])])?.remove(0))
        },
        &[None, Some(0)],
        0,
    )(&[w.clone(), xs.clone()])
    .unwrap();
    assert_close(&mapped, &stack(&looped, 0), 1e-12);
}

/// `x ↦ 2x` as a custom op (its forward knows nothing of batches).
struct Double;
impl CustomOp for Double {
    fn name(&self) -> &'static str {
        "double"
    }
    fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
        assert_eq!(x[0].ndim(), 1, "one example at a time");
        Ok(&x[0] * 2.0)
    }
    fn jvp(&self, _x: &[Tensor], _y: &Tensor, t: &[Option<Tensor>]) -> Result<Tensor> {
        Ok(t[0].as_ref().unwrap() * 2.0)
    }
    fn vjp(&self, _x: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g * 2.0)])
    }
}

#[test]
fn custom_ops_run_once_per_example() {
    let xs = randn(&[3, 4], 18);
    let op = Arc::new(Double);
    let y = func::vmap(|a: &[Tensor]| apply(op.clone(), &[&a[0]]), &[Some(0)], 0)(
        std::slice::from_ref(&xs),
    )
    .unwrap();
    assert_close(&y, &(&xs * 2.0), 0.0);
    let g = func::vmap(
        |a: &[Tensor]| func::grad(|x: &Tensor| apply(op.clone(), &[x]).map(|y| y.sum()), &a[0]),
        &[Some(0)],
        0,
    )(std::slice::from_ref(&xs))
    .unwrap();
    assert_close(&g, &Tensor::full(&[3, 4], 2.0, DType::F64), 0.0);
}

#[test]
fn bad_batches_are_errors_naming_the_inputs() {
    let a = randn(&[3, 2], 19);
    let b = randn(&[4, 2], 20);
    let id = |xs: &[Tensor]| xs[0].clone();
    let e = func::vmap(id, &[Some(0), Some(0)], 0)(&[a.clone(), b.clone()]).unwrap_err();
    assert!(e.to_string().contains("input 1 has 4 examples"), "{e}");
    let e = func::vmap(id, &[None], 0)(std::slice::from_ref(&a)).unwrap_err();
    assert!(e.to_string().contains("no input is mapped"), "{e}");
    let e = func::vmap(id, &[Some(2)], 0)(std::slice::from_ref(&a)).unwrap_err();
    assert!(e.to_string().contains("vmap"), "{e}");
    let e = func::vmap(id, &[Some(0)], 5)(std::slice::from_ref(&a)).unwrap_err();
    assert!(e.to_string().contains("vmap"), "{e}");
    // A shape mismatch inside names the shapes one example sees.
    let e = func::vmap(|xs: &[Tensor]| xs[0].try_add(&xs[1]), &[Some(0), None], 0)(&[
        a.clone(),
        randn(&[3], 21),
    ])
    .unwrap_err();
    assert!(
        e.to_string().contains("[2]") && e.to_string().contains("[3]"),
        "{e}"
    );
}

#[test]
fn try_item_inside_vmap_is_an_error() {
    let a = randn(&[3, 2], 23);
    let e = func::vmap(
        |xs: &[Tensor]| Ok::<_, chainrule::Error>(Tensor::scalar(xs[0].sum().try_item()?)),
        &[Some(0)],
        0,
    )(std::slice::from_ref(&a))
    .unwrap_err();
    assert!(e.to_string().contains("batched by vmap"), "{e}");
}

#[test]
#[should_panic(expected = "batched by vmap")]
fn reading_a_batched_value_inside_vmap_panics_clearly() {
    let a = randn(&[3, 2], 22);
    let _ = func::vmap(
        |xs: &[Tensor]| Tensor::scalar(xs[0].sum().item()),
        &[Some(0)],
        0,
    )(&[a]);
}

#[test]
fn as_slice_borrows_nothing_of_a_batched_value_inside_vmap() {
    // Its memory holds every example's value: a slice would show them all.
    let a = randn(&[3, 2], 24);
    let seen = std::sync::Mutex::new(Vec::new());
    let _ = func::vmap(
        |xs: &[Tensor]| {
            seen.lock().unwrap().push(xs[0].as_slice::<f64>().is_some());
            xs[0].clone()
        },
        &[Some(0)],
        0,
    )(std::slice::from_ref(&a));
    assert_eq!(*seen.lock().unwrap(), [false]);
    assert_eq!(a.as_slice::<f64>().map(<[f64]>::len), Some(6)); // outside: all of it
}
