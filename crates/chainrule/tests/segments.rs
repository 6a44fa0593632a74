//! Elementwise ops on 0-d values are recorded on per-thread segments rather
//! than as a node each. Everything a node supports must still hold for them:
//! mixing with tensor ops both ways, values used from other threads,
//! gradients with respect to a value inside a segment, gradients of
//! gradients, freed and retained graphs, and a segment reused by the next
//! step while values of the last one are still alive.

use chainrule::autograd::{self, no_grad};
use chainrule::{BackwardOptions, DType, Error, Slice, Tensor};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

/// `u ↦ sin(u)·½ + u·½`, the `chain` workload's step, and its derivative.
fn step(u: &Tensor) -> Tensor {
    u.sin() * 0.5 + u * 0.5
}
fn step_derivative(u: f64) -> f64 {
    (u.cos() + 1.0) * 0.5
}

#[test]
fn scalar_ops_name_their_op() {
    let x = Tensor::scalar(0.5f64).requires_grad();
    assert_eq!((&x * 2.0).op_name(), Some("mul_scalar"));
    assert_eq!(x.sin().op_name(), Some("sin"));
    assert_eq!((&x + &x.exp()).op_name(), Some("add"));
    assert!(!(&x * 2.0).is_leaf());
}

#[test]
fn a_value_through_a_tensor_op_and_back_gets_both_paths() {
    // a is on a segment; stack and sum read it as a tensor op; d reads the
    // sum (deeper than the segment, which that op sealed) and a again.
    let x = Tensor::scalar(0.7f64).requires_grad();
    let a = x.sin(); // a = sin x
    let b = Tensor::stack(&[&a, &(&a * 3.0)], 0); // [a, 3a]
    let c = b.sum(); // 4a
    let d = &c * &a; // 4a²
    let e = &d + &x; // 4a² + x
    e.backward().unwrap();
    let v = 0.7f64;
    let expected = 8.0 * v.sin() * v.cos() + 1.0;
    assert!(close(x.grad().unwrap().item(), expected));
    assert!(close(e.item(), 4.0 * v.sin().powi(2) + v));
}

#[test]
fn a_gradient_with_respect_to_a_value_inside_a_segment() {
    let x = Tensor::scalar(0.3f64).requires_grad();
    let u = step(&x);
    let mid = step(&u);
    let z = step(&step(&mid)) * 2.0;
    let m = mid.item();
    let m1 = m.sin() * 0.5 + m * 0.5;
    let expected = 2.0 * step_derivative(m1) * step_derivative(m);
    let g = autograd::grad(&[&z], &[&mid, &x]).unwrap();
    assert!(
        close(g[0].item(), expected),
        "{} vs {expected}",
        g[0].item()
    );
    let dx = expected * step_derivative(u.item()) * step_derivative(0.3);
    assert!(close(g[1].item(), dx), "{} vs {dx}", g[1].item());
    // A value that z does not depend on gets zeros.
    let other = &x * 5.0;
    let g = autograd::grad(&[&z], &[&other]).unwrap();
    assert_eq!(g[0].item(), 0.0);
}

#[test]
fn pruning_inside_a_segment_runs_only_the_rules_that_lead_to_a_target() {
    let x = Tensor::scalar(1.5f64).requires_grad();
    let y = Tensor::scalar(-0.5f64).requires_grad();
    let branch_x = x.exp() * 2.0; // exp, mul_scalar
    let branch_y = y.sin().cos(); // sin, cos: leads only to y
    let z = &branch_x * &branch_y; // mul
    let (g, stats) = autograd::grad_with_stats(&[&z], &[&x], &Default::default()).unwrap();
    let expected = 2.0 * 1.5f64.exp() * (-0.5f64).sin().cos();
    assert!(close(g[0].item(), expected));
    assert_eq!(stats.rules_run, 3, "mul, mul_scalar, exp");
    assert_eq!(stats.rules_on_numbers, 3);
}

#[test]
fn values_from_another_thread_are_imported() {
    let x = Tensor::scalar(0.2f64).requires_grad();
    let mut u = x.clone();
    for _ in 0..1000 {
        u = step(&u);
    }
    // Another thread goes on from u on its own segment and runs backward.
    let (value, grad) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut v = u.clone();
            for _ in 0..1000 {
                v = step(&v);
            }
            let z = &v * &u;
            let g = autograd::grad(&[&z], &[&x]).unwrap();
            (z.item(), g[0].item())
        })
        .join()
        .unwrap()
    });
    // The same on this thread, in closed form.
    let (mut val, mut d) = (0.2f64, 1.0f64);
    for _ in 0..1000 {
        d *= step_derivative(val);
        val = val.sin() * 0.5 + val * 0.5;
    }
    let (u_val, du) = (val, d);
    let (mut v_val, mut dv) = (u_val, du);
    for _ in 0..1000 {
        dv *= step_derivative(v_val);
        v_val = v_val.sin() * 0.5 + v_val * 0.5;
    }
    assert!(close(value, v_val * u_val));
    assert!(close(grad, dv * u_val + v_val * du), "{grad}");
}

#[test]
fn gradients_of_gradients_through_a_segment() {
    // f(x) = x³·sin x; f' and f'' in closed form.
    let x = Tensor::scalar(0.9f64).requires_grad();
    let f = &x * &x * &x * x.sin();
    let create = BackwardOptions {
        create_graph: true,
        ..Default::default()
    };
    let d1 = autograd::grad_with(&[&f], &[&x], &create)
        .unwrap()
        .remove(0);
    let d2 = autograd::grad_with(&[&d1], &[&x], &create)
        .unwrap()
        .remove(0);
    let d3 = autograd::grad(&[&d2], &[&x]).unwrap().remove(0);
    let v = 0.9f64;
    let (s, c) = (v.sin(), v.cos());
    assert!(close(d1.item(), 3.0 * v * v * s + v.powi(3) * c));
    assert!(close(
        d2.item(),
        6.0 * v * s + 6.0 * v * v * c - v.powi(3) * s
    ));
    let third = 6.0 * s + 18.0 * v * c - 9.0 * v * v * s - v.powi(3) * c;
    assert!(close(d3.item(), third), "{} vs {third}", d3.item());
}

#[test]
fn a_second_backward_through_a_used_segment_is_an_error_unless_retained() {
    let x = Tensor::scalar(2.0f64).requires_grad();
    let y = x.exp() * 3.0;
    let keep = BackwardOptions {
        retain_graph: true,
        ..Default::default()
    };
    y.backward_with(&keep).unwrap();
    y.backward().unwrap();
    assert!(close(x.grad().unwrap().item(), 2.0 * 3.0 * 2f64.exp()));
    let err = y.backward().unwrap_err();
    assert!(matches!(err, Error::GraphFreed { .. }), "{err}");
    // A value recorded after the freed ones, reading none of them, is fine.
    let z = x.sin();
    x.zero_grad();
    z.backward().unwrap();
    assert!(close(x.grad().unwrap().item(), 2f64.cos()));
}

#[test]
fn values_of_an_earlier_step_survive_the_segment_being_reused() {
    let x = Tensor::scalar(0.4f64).requires_grad();
    let kept = &x * 3.0 + 1.0;
    for _ in 0..20 {
        let mut u = x.clone();
        for _ in 0..100 {
            u = step(&u);
        }
        x.zero_grad();
        u.backward().unwrap();
        assert!(x.grad().unwrap().item() > 0.0);
    }
    x.zero_grad();
    kept.backward().unwrap();
    assert_eq!(x.grad().unwrap().item(), 3.0);
    assert_eq!(kept.item(), 0.4f64 * 3.0 + 1.0);
}

#[test]
fn f32_values_sum_their_gradients_in_f32() {
    let x = Tensor::scalar(0.1f32).requires_grad();
    let mut z = Tensor::scalar(0.0f32);
    for k in 0..50 {
        let term = &x * (k as f64 * 0.37);
        z = &z + &term;
    }
    z.backward().unwrap();
    let g = x.grad().unwrap();
    assert_eq!(g.dtype(), DType::F32);
    // The same sum, one f32 addition after another in reverse order of use.
    let mut expected = 0.0f32;
    for k in (0..50).rev() {
        expected += (k as f64 * 0.37) as f32;
    }
    assert_eq!(g.item() as f32, expected);
}

#[test]
fn nothing_is_recorded_without_grad() {
    let x = Tensor::scalar(1.0f64).requires_grad();
    let y = no_grad(|| x.sin() * 2.0);
    assert!(!y.needs_grad());
    assert_eq!(y.op_name(), None);
}

/// A thread's current segment outlives the thread's values: it is dropped
/// with the thread's locals, before or after the queue that frees long
/// graphs without recursion (the order is the platform's; both orders of
/// first use are tried here, and `node::tests` runs the queue-less path
/// itself). What it imports must be freed without recursion either way:
/// a long graph would overflow the thread's stack.
#[test]
fn a_thread_ending_with_a_long_graph_on_its_segment_does_not_overflow() {
    for segment_first in [true, false] {
        std::thread::spawn(move || {
            let x = Tensor::from_vec(vec![0.5f64], &[1]).requires_grad();
            let a = if segment_first {
                Some(Tensor::scalar(0.5f64).requires_grad() * 2.0)
            } else {
                None
            };
            let mut v = x.clone();
            for _ in 0..100_000 {
                v = v.sin(); // one node each: not 0-d
            }
            let s = v.sum(); // 0-d: the segment imports it
            let t = match &a {
                Some(a) => &s * a,
                None => &s * 2.0,
            };
            drop((v, s, t, a));
            // The thread's segment now holds the only reference to the chain.
        })
        .join()
        .unwrap();
    }
}

// An inner product of two vectors is recorded on the segment too (with its
// operands saved in the entry): the `ex1` workload's `<x, w>`.

fn vector(values: &[f64]) -> Tensor {
    Tensor::from_vec(values.to_vec(), &[values.len()])
}

fn all_close(t: &Tensor, expected: &[f64]) -> bool {
    let got = t.to_vec::<f64>();
    got.len() == expected.len() && got.iter().zip(expected).all(|(&a, &b)| close(a, b))
}

#[test]
fn a_dot_of_two_vectors_gets_both_gradients() {
    let (xs, ws, y) = ([0.5, -1.0, 2.0], [1.5, 0.25, -0.75], 0.3);
    let x = vector(&xs).requires_grad();
    let w = vector(&ws).requires_grad();
    let d = x.dot(&w);
    assert_eq!(d.op_name(), Some("matmul"));
    let z = (&d - &Tensor::scalar(y)).square();
    let r: f64 = xs.iter().zip(&ws).map(|(a, b)| a * b).sum::<f64>() - y;
    let (g, stats) = autograd::grad_with_stats(&[&z], &[&x, &w, &d], &Default::default()).unwrap();
    assert!(all_close(&g[0], &ws.map(|v| 2.0 * r * v)));
    assert!(all_close(&g[1], &xs.map(|v| 2.0 * r * v)));
    assert!(
        close(g[2].item(), 2.0 * r),
        "the dot's own value is a target"
    );
    assert_eq!(stats.rules_run, 3, "square, sub, dot");
    assert_eq!(stats.rules_on_numbers, 2, "the dot's rule makes vectors");
    // A constant operand (no grad) gets no rule, and the dot reads itself.
    let c = vector(&xs);
    let (g, stats) =
        autograd::grad_with_stats(&[&w.dot(&w).mul(&c.dot(&w))], &[&w], &Default::default())
            .unwrap();
    let (ww, cw): (f64, f64) = (
        ws.iter().map(|v| v * v).sum(),
        xs.iter().zip(&ws).map(|(a, b)| a * b).sum(),
    );
    let expected: Vec<f64> = (0..3).map(|i| 2.0 * ws[i] * cw + ww * xs[i]).collect();
    assert!(all_close(&g[0], &expected), "{:?}", g[0].to_vec::<f64>());
    assert_eq!(stats.rules_run, 3, "mul and both dots");
}

#[test]
fn a_dot_reads_strided_views_and_tensor_ops_results() {
    // Every second element of a vector (stride 2) against relu(A v).
    let m = vector(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).requires_grad();
    let a = Tensor::from_vec(vec![1.0f64, -2.0, 0.5, 1.0, -1.0, 3.0], &[3, 2]);
    let v = vector(&[0.5, 1.0]).requires_grad();
    let h = a.matmul(&v).relu(); // [0, 1.25, 2.5]
    let z = m.slice(&[Slice::new(Some(1), None, 2)]).dot(&h);
    let g = autograd::grad(&[&z], &[&m, &v]).unwrap();
    assert!(all_close(&g[0], &[0.0, 0.0, 0.0, 1.25, 0.0, 2.5]));
    // dz/dv = Aᵀ (col ⊙ relu'(A v)) with col = [2, 4, 6] and mask [0, 1, 1].
    assert!(all_close(&g[1], &[0.5 * 4.0 - 6.0, 4.0 + 3.0 * 6.0]));
}

#[test]
fn a_dot_gives_the_same_bits_on_numbers_and_on_tensors() {
    // Without create_graph its rule runs on the gradient as a number; with
    // it, as the tensor rule: the same arithmetic.
    let x = Tensor::from_vec(vec![0.1f32, -0.7, 1.3, 2.9], &[4]).requires_grad();
    let w = Tensor::from_vec(vec![1.7f32, 0.3, -0.9, 0.45], &[4]).requires_grad();
    let z = || (x.dot(&w) * 1.1f32).tanh();
    let plain = autograd::grad(&[&z()], &[&x, &w]).unwrap();
    let create = BackwardOptions {
        create_graph: true,
        ..Default::default()
    };
    let recorded = autograd::grad_with(&[&z()], &[&x, &w], &create).unwrap();
    for (p, r) in plain.iter().zip(&recorded) {
        assert_eq!(p.dtype(), DType::F32);
        assert_eq!(p.to_vec::<f32>(), r.to_vec::<f32>());
    }
}

#[test]
fn gradients_of_gradients_through_a_dot() {
    // z = <x, w>²: dz/dw = 2 <x, w> x, and its derivative along u is
    // 2 <x, u> x.
    let (xs, ws, us) = ([0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [1.0, 2.0, -1.0]);
    let x = vector(&xs);
    let w = vector(&ws).requires_grad();
    let z = x.dot(&w).square();
    let create = BackwardOptions {
        create_graph: true,
        ..Default::default()
    };
    let gw = autograd::grad_with(&[&z], &[&w], &create)
        .unwrap()
        .remove(0);
    let xw: f64 = xs.iter().zip(&ws).map(|(a, b)| a * b).sum();
    assert!(all_close(&gw, &xs.map(|v| 2.0 * xw * v)));
    let hu = autograd::grad(&[&gw.dot(&vector(&us))], &[&w])
        .unwrap()
        .remove(0);
    let xu: f64 = xs.iter().zip(&us).map(|(a, b)| a * b).sum();
    assert!(all_close(&hu, &xs.map(|v| 2.0 * xu * v)));
}

#[test]
fn a_second_backward_through_a_used_dot_is_an_error_unless_retained() {
    let x = vector(&[1.0, 2.0]);
    let w = vector(&[3.0, -1.0]).requires_grad();
    let z = x.dot(&w);
    let keep = BackwardOptions {
        retain_graph: true,
        ..Default::default()
    };
    z.backward_with(&keep).unwrap();
    z.backward().unwrap();
    assert!(all_close(&w.grad().unwrap(), &[2.0, 4.0]));
    let err = z.backward().unwrap_err();
    assert!(matches!(err, Error::GraphFreed { op: "matmul" }), "{err}");
}
