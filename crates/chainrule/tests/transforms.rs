//! The functional transforms and forward mode: closed forms (Rosenbrock's
//! Hessian, a third derivative), composition in every order, the cheaper-mode
//! choice of `jacobian`, custom ops in every mode, and errors.

use chainrule::custom::{apply, CustomOp};
use chainrule::forward::DualLevel;
use chainrule::{func, DType, Result, Tensor};
use std::cell::Cell;
use std::sync::Arc;

fn assert_close(a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    for (i, (x, y)) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "entry {i}: {x} vs {y}"
        );
    }
}

fn vec64(v: &[f64]) -> Tensor {
    Tensor::from_slice(v, &[v.len()])
}

/// `f(x) = Σ_{i<n-1} 100 (x_{i+1} − x_i²)² + (1 − x_i)²`, as WORKLOADS.md writes it.
fn rosenbrock(x: &Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.narrow(0, 0, n - 1);
    let tail = x.narrow(0, 1, n - 1);
    ((tail - head.square()).square() * 100.0 + (1.0 - &head).square()).sum()
}

/// Its Hessian by hand: tridiagonal.
fn rosenbrock_hessian(x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut h = vec![0.0; n * n];
    for i in 0..n - 1 {
        // terms of 100 (x_{i+1} − x_i²)² + (1 − x_i)²
        h[i * n + i] += 1200.0 * x[i] * x[i] - 400.0 * x[i + 1] + 2.0;
        h[(i + 1) * n + i + 1] += 200.0;
        h[i * n + i + 1] += -400.0 * x[i];
        h[(i + 1) * n + i] += -400.0 * x[i];
    }
    h
}

#[test]
fn rosenbrock_hessian_equals_its_closed_form_in_both_modes() {
    for n in [2, 3, 10, 100] {
        let x = Tensor::rand_uniform(&[n], -1.0, 1.0, n as u64, DType::F64);
        let closed = Tensor::from_vec(rosenbrock_hessian(&x.to_vec::<f64>()), &[n, n]);
        assert_close(&func::hessian(rosenbrock, &x).unwrap(), &closed, 1e-12);
        assert_close(&func::hessian_rev(rosenbrock, &x).unwrap(), &closed, 1e-12);
        let v = Tensor::rand_uniform(&[n], -1.0, 1.0, 7, DType::F64);
        let hv = closed.matmul(&v);
        assert_close(&func::hvp(rosenbrock, &x, &v).unwrap(), &hv, 1e-12);
    }
}

/// `f(x) = sin(exp(x))`; with `u = eˣ`:
/// f' = u cos u, f'' = u cos u − u² sin u, f''' = u cos u − 3u² sin u − u³ cos u.
fn third_derivative(x: f64) -> f64 {
    let u = x.exp();
    u * u.cos() - 3.0 * u * u * u.sin() - u * u * u * u.cos()
}

fn f_sin_exp(x: &Tensor) -> Tensor {
    x.exp().sin().sum()
}

#[test]
fn third_derivative_of_sin_exp_in_every_mode_combination() {
    let xs = [-0.7, 0.0, 0.4, 1.1];
    let x = vec64(&xs);
    let expected = vec64(&xs.map(third_derivative));
    let ones = Tensor::ones(&[xs.len()], DType::F64);

    // reverse ∘ reverse ∘ reverse (f is elementwise, so summing gives the diagonal)
    let g1 = |x: &Tensor| func::grad(f_sin_exp, x);
    let g2 = |x: &Tensor| func::grad(|x: &Tensor| Ok::<_, chainrule::Error>(g1(x)?.sum()), x);
    let g3 = func::grad(|x: &Tensor| Ok::<_, chainrule::Error>(g2(x)?.sum()), &x).unwrap();
    assert_close(&g3, &expected, 1e-12);

    // forward ∘ forward ∘ forward
    let d1 =
        |x: &Tensor| Ok::<_, chainrule::Error>(func::jvp(|x: &Tensor| x.exp().sin(), x, &ones)?.1);
    let d2 = |x: &Tensor| Ok::<_, chainrule::Error>(func::jvp(d1, x, &ones)?.1);
    let d3 = func::jvp(d2, &x, &ones).unwrap().1;
    assert_close(&d3, &expected, 1e-12);

    // forward over reverse over reverse, and reverse over forward over reverse
    let fwd_rev_rev = func::jvp(g2, &x, &ones).unwrap().1;
    assert_close(&fwd_rev_rev, &expected, 1e-12);
    let jvp_of_grad = |x: &Tensor| Ok::<_, chainrule::Error>(func::jvp(g1, x, &ones)?.1.sum());
    assert_close(&func::grad(jvp_of_grad, &x).unwrap(), &expected, 1e-12);

    // and through the low-level API with three nested levels
    let (l1, l2, l3) = (DualLevel::new(), DualLevel::new(), DualLevel::new());
    let x1 = l1.make_dual(&x, &ones).unwrap();
    let x2 = l2.make_dual(&x1, &ones).unwrap();
    let x3 = l3.make_dual(&x2, &ones).unwrap();
    let y = x3.exp().sin();
    let t3 = l3.unpack(&y).1.unwrap();
    let t32 = l2.unpack(&t3).1.unwrap();
    let t321 = l1.unpack(&t32).1.unwrap();
    assert_close(&t321, &expected, 1e-12);
}

/// The classic perturbation-confusion test (Siskind & Pearlmutter):
/// d/dx [x · d/dy (x + y)] = 1, not 2.
#[test]
fn nested_derivatives_do_not_confuse_their_perturbations() {
    let one = Tensor::scalar(1.0f64);
    let x0 = Tensor::scalar(1.0f64);
    let outer = |x: &Tensor| {
        let inner = func::jvp(|y: &Tensor| x + y, &Tensor::scalar(2.0f64), &one)?.1;
        Ok::<_, chainrule::Error>(x * &inner)
    };
    assert_eq!(func::jvp(outer, &x0, &one).unwrap().1.item(), 1.0);
    let outer_rev = |x: &Tensor| {
        let inner = func::grad(|y: &Tensor| x + y, &Tensor::scalar(2.0f64))?;
        Ok::<_, chainrule::Error>(x * &inner)
    };
    assert_eq!(func::grad(outer_rev, &x0).unwrap().item(), 1.0);
}

#[test]
fn gradient_of_a_function_of_captured_and_explicit_tensors() {
    // g(w) = ‖∇ₓ (w·x)²‖² at fixed x: the inner gradient depends on w (captured).
    let x = vec64(&[0.5, -1.0, 2.0]);
    let w = vec64(&[1.0, 2.0, -0.5]);
    let g = func::grad(
        |w: &Tensor| {
            let inner = func::grad(|x: &Tensor| w.dot(x).square(), &x)?; // 2 (w·x) w
            Ok::<_, chainrule::Error>(inner.square().sum())
        },
        &w,
    )
    .unwrap();
    // ‖2 (w·x) w‖² = 4 (w·x)² ‖w‖²; gradient 8 (w·x) ‖w‖² x + 8 (w·x)² w.
    let (wx, ww) = (w.dot(&x).item(), w.dot(&w).item());
    let expected = &x * (8.0 * wx * ww) + &w * (8.0 * wx * wx);
    assert_close(&g, &expected, 1e-12);
}

#[test]
fn jacobian_layout_and_mode_choice() {
    let a = Tensor::rand_normal(&[5, 3], 0.0, 1.0, 1, DType::F64);
    let calls = Cell::new(0);
    let f = |x: &Tensor| {
        calls.set(calls.get() + 1);
        a.matmul(x).tanh()
    };
    let x = Tensor::rand_normal(&[3], 0.0, 1.0, 2, DType::F64);
    // J = diag(1 − tanh²(Ax)) A, (m, n) = (5, 3)
    let y = a.matmul(&x).tanh();
    let expected = (1.0 - y.square()).unsqueeze(1) * &a;
    for j in [func::jacfwd(f, &x), func::jacrev(f, &x)] {
        assert_close(&j.unwrap(), &expected, 1e-12);
    }
    // n = 3 < m = 5: forward mode, which runs f a second time (batched).
    calls.set(0);
    assert_close(&func::jacobian(f, &x).unwrap(), &expected, 1e-12);
    assert_eq!(calls.get(), 2);
    // n = 5 > m = 3 for the transposed problem: reverse mode, f runs once.
    let at = a.t();
    let g = |x: &Tensor| {
        calls.set(calls.get() + 1);
        at.matmul(x)
    };
    calls.set(0);
    let x5 = Tensor::rand_normal(&[5], 0.0, 1.0, 3, DType::F64);
    assert_close(&func::jacobian(g, &x5).unwrap(), &at.contiguous(), 1e-12);
    assert_eq!(calls.get(), 1);

    // Tensor shapes: output shape followed by input shape.
    let x23 = Tensor::rand_normal(&[2, 3], 0.0, 1.0, 4, DType::F64);
    let j = func::jacobian(|x: &Tensor| x.sum_axes(&[1], false), &x23).unwrap();
    assert_eq!(j.shape(), &[2, 2, 3]);
    assert_eq!(
        j.to_vec::<f64>(),
        [1., 1., 1., 0., 0., 0., 0., 0., 0., 1., 1., 1.]
    );
}

#[test]
fn several_inputs() {
    let x = vec64(&[1.0, 2.0]);
    let w = vec64(&[3.0, -1.0]);
    let f = |xs: &[Tensor]| (xs[0].dot(&xs[1]) - 1.0).square();
    let (value, grads) = func::value_and_grad_n(f, &[x.clone(), w.clone()]).unwrap();
    assert_eq!(value.item(), 0.0); // (3 − 2 − 1)² = 0
    let (value, grads2) = func::value_and_grad_n(
        |xs: &[Tensor]| xs[0].dot(&xs[1]).square(),
        &[x.clone(), w.clone()],
    )
    .unwrap();
    assert_eq!(value.item(), 1.0);
    assert_eq!(grads[0].to_vec::<f64>(), [0.0, 0.0]);
    assert_eq!(grads2[0].to_vec::<f64>(), [6.0, -2.0]); // 2 (x·w) w
    assert_eq!(grads2[1].to_vec::<f64>(), [2.0, 4.0]); // 2 (x·w) x
    let (y, t) = func::jvp_n(
        |xs: &[Tensor]| &xs[0] * &xs[1],
        &[x.clone(), w.clone()],
        &[vec64(&[1.0, 0.0]), vec64(&[0.0, 1.0])],
    )
    .unwrap();
    assert_eq!(y.to_vec::<f64>(), [3.0, -2.0]);
    assert_eq!(t.to_vec::<f64>(), [3.0, 2.0]); // ẋ w + x ẇ
    let (_, pullback) = func::vjp_n(|xs: &[Tensor]| &xs[0] * &xs[1], &[x, w]).unwrap();
    for _ in 0..2 {
        let g = pullback.call_n(&vec64(&[1.0, 1.0])).unwrap();
        assert_eq!(g[0].to_vec::<f64>(), [3.0, -1.0]);
        assert_eq!(g[1].to_vec::<f64>(), [1.0, 2.0]);
    }
}

#[test]
fn transforms_report_bad_input() {
    let x = vec64(&[1.0, 2.0]);
    let e = func::grad(|x: &Tensor| x * 2.0, &x)
        .unwrap_err()
        .to_string();
    assert!(e.contains("grad") && e.contains("[2]"), "{e}");
    let e = func::jvp(|x: &Tensor| x * 2.0, &x, &vec64(&[1.0]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("make_dual") && e.contains("[2]") && e.contains("[1]"),
        "{e}"
    );
    let (_, pullback) = func::vjp(|x: &Tensor| x * 2.0, &x).unwrap();
    let e = pullback
        .call(&vec64(&[1.0, 2.0, 3.0]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("vjp") && e.contains("[3]"), "{e}");
    let f32x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    assert!(func::jvp(|x: &Tensor| x * 2.0, &f32x, &x).is_err());
    // An error inside the function is returned, not a panic.
    let e = func::grad(
        |x: &Tensor| x.try_matmul(&Tensor::ones(&[3], DType::F64)),
        &x,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("matmul"), "{e}");
    // A function that ignores its input has a zero derivative.
    let c = func::grad(|_: &Tensor| Tensor::scalar(3.0f64), &x).unwrap();
    assert_eq!(c.to_vec::<f64>(), [0.0, 0.0]);
    let (_, t) = func::jvp(|_: &Tensor| vec64(&[1.0, 2.0, 3.0]), &x, &x).unwrap();
    assert_eq!(t.to_vec::<f64>(), [0.0, 0.0, 0.0]);
    assert_eq!(
        func::jacfwd(|_: &Tensor| vec64(&[1.0]), &x)
            .unwrap()
            .shape(),
        &[1, 2]
    );
}

/// `cube(x) = x³`, with hand-written rules.
struct Cube;
impl CustomOp for Cube {
    fn name(&self) -> &'static str {
        "cube"
    }
    fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
        Ok(&x[0] * &x[0] * &x[0])
    }
    fn jvp(&self, x: &[Tensor], _y: &Tensor, t: &[Option<Tensor>]) -> Result<Tensor> {
        Ok(t[0].as_ref().unwrap() * &(x[0].square() * 3.0))
    }
    fn vjp(&self, x: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(g * &(x[0].square() * 3.0))])
    }
}

#[test]
fn custom_op_composes_with_every_mode() {
    let cube = |x: &Tensor| apply(Arc::new(Cube), &[x]).unwrap();
    let x = vec64(&[0.5, -2.0, 3.0]);
    let s = |x: &Tensor| cube(x).sin().sum();
    // d/dx sin(x³) = 3x² cos(x³); second: 6x cos(x³) − 9x⁴ sin(x³)
    let xs = x.to_vec::<f64>();
    let d1 = vec64(
        &xs.iter()
            .map(|v| 3.0 * v * v * (v * v * v).cos())
            .collect::<Vec<_>>(),
    );
    let d2: Vec<f64> = xs
        .iter()
        .map(|v| 6.0 * v * (v * v * v).cos() - 9.0 * v.powi(4) * (v * v * v).sin())
        .collect();
    assert_close(&func::grad(s, &x).unwrap(), &d1, 1e-12);
    let ones = Tensor::ones(&[3], DType::F64);
    assert_close(
        &func::jvp(|x: &Tensor| cube(x).sin(), &x, &ones).unwrap().1,
        &d1,
        1e-12,
    );
    let hessian = Tensor::from_vec(
        (0..9)
            .map(|k| if k % 4 == 0 { d2[k / 4] } else { 0.0 })
            .collect(),
        &[3, 3],
    );
    assert_close(&func::hessian(s, &x).unwrap(), &hessian, 1e-12);
    assert_close(&func::hessian_rev(s, &x).unwrap(), &hessian, 1e-12);
    // eager backward too
    let leaf = x.clone().requires_grad();
    s(&leaf).backward().unwrap();
    assert_close(&leaf.grad().unwrap(), &d1, 1e-12);
}

#[test]
fn forward_mode_records_nothing_and_survives_a_million_ops() {
    let level = DualLevel::new();
    let x = Tensor::scalar(0.3f64);
    let mut u = level.make_dual(&x, &Tensor::scalar(1.0f64)).unwrap();
    let mut d = 1.0f64;
    let mut v = 0.3f64;
    for _ in 0..250_000 {
        u = u.sin() * 0.5 + &u * 0.5;
        d *= 0.5 * v.cos() + 0.5;
        v = 0.5 * v.sin() + 0.5 * v;
        assert!(!u.needs_grad());
    }
    let (value, tangent) = level.unpack(&u);
    assert!((value.item() - v).abs() < 1e-12);
    assert!((tangent.unwrap().item() - d).abs() <= 1e-12 * d.abs());
}

/// `f(w)`: a flight of `steps` whose acceleration is a reverse gradient
/// taken inside (GradBench's `particle`, shortened): nested AD through a
/// loop.
fn flight(w: &Tensor, steps: usize) -> Result<Tensor> {
    let charge = Tensor::concat(&[&vec64(&[10.0]), &(10.0 - w)], 0);
    let potential = |x: &Tensor| (x - &charge).square().sum().sqrt().reciprocal();
    let (mut x, mut v) = (vec64(&[0.0, 8.0]), vec64(&[0.75, 0.0]));
    for _ in 0..steps {
        let a = -func::grad(potential, &x)?;
        x = &x + &(&v * 0.1);
        v = &v + &(a * 0.1);
    }
    Ok(x.square().sum())
}

/// A transform called where nothing outside differentiates its results
/// hands them back cut from the graphs of the gradients taken inside:
/// else a solver iterating on its own derivatives chains every iteration
/// to the last, and each inner gradient searches the whole history (the
/// `particle` eval took 80 s instead of 2). The derivatives themselves are
/// those of finite differences.
#[test]
fn derivatives_of_nested_gradients_come_back_detached() {
    let w = vec64(&[0.3]);
    let (_, tangent) = func::jvp(|w: &Tensor| flight(w, 30), &w, &vec64(&[1.0])).unwrap();
    let (value, grad) = func::value_and_grad(|w: &Tensor| flight(w, 30), &w).unwrap();
    for t in [&tangent, &value, &grad] {
        assert!(!t.needs_grad(), "a result still carries a graph");
    }
    let h = 1e-6;
    let at = |d: f64| flight(&vec64(&[0.3 + d]), 30).unwrap().item();
    let numeric = (at(h) - at(-h)) / (2.0 * h);
    for d in [tangent.item(), grad.item()] {
        assert!(
            (d - numeric).abs() <= 1e-6 * numeric.abs().max(1.0),
            "{d} vs {numeric}"
        );
    }
}

/// Inside an enclosing gradient, the inner results stay differentiable:
/// the second derivative through the nested flight, by reverse over
/// forward, matches central differences of the first.
#[test]
fn nested_gradients_stay_differentiable_inside_a_transform() {
    let first = |w: &Tensor| -> Result<Tensor> {
        Ok(func::jvp(|w: &Tensor| flight(w, 20), w, &vec64(&[1.0]))?.1)
    };
    let second = func::grad(first, &vec64(&[0.3])).unwrap().item();
    let h = 1e-5;
    let at = |d: f64| first(&vec64(&[0.3 + d])).unwrap().item();
    let numeric = (at(h) - at(-h)) / (2.0 * h);
    assert!(
        (second - numeric).abs() <= 1e-5 * numeric.abs().max(1.0),
        "{second} vs {numeric}"
    );
}

/// A JVP whose function captures a leaf that requires gradients stays on
/// that leaf's tape: `backward` through the tangent reaches the leaf.
#[test]
fn jvp_results_keep_the_tape_of_captured_leaves() {
    let w = vec64(&[2.0, 3.0]).requires_grad();
    let (x, v) = (vec64(&[1.0, 1.0]), vec64(&[0.5, -1.0]));
    let (_, tangent) = func::jvp(|x: &Tensor| (x * &w).sum(), &x, &v).unwrap();
    tangent.backward().unwrap();
    // d/dw of Σ v_i w_i is v.
    assert_eq!(w.grad().unwrap().to_vec::<f64>(), [0.5, -1.0]);
}
