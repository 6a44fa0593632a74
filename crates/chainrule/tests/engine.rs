//! The reverse-mode engine: the note's examples, deep graphs, pruning,
//! accumulation, freed graphs, threads, and error messages.

use chainrule::autograd::{self, no_grad};
use chainrule::{BackwardOptions, DType, Error, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn assert_close(a: &Tensor, b: &Tensor, rel: f64) {
    assert_eq!(a.shape(), b.shape());
    for (x, y) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()) {
        assert!((x - y).abs() <= rel * y.abs().max(1.0), "{x} vs {y}");
    }
}

#[test]
fn example_1_matches_closed_form_for_random_sizes() {
    let mut rng = StdRng::seed_from_u64(1);
    for case in 0..20 {
        let n = rng.random_range(1..200);
        let x = Tensor::rand_normal(&[n], 0.0, 1.0, case, DType::F64);
        let w = Tensor::rand_normal(&[n], 0.0, 1.0, case + 100, DType::F64).requires_grad();
        let y = Tensor::scalar(rng.random_range(-1.0..1.0f64));
        let z = (x.dot(&w) - &y).square();
        z.backward().unwrap();
        let closed = (x.dot(&w.detach()) - &y) * 2.0 * &x;
        assert_close(&w.grad().unwrap(), &closed, 1e-12);
    }
}

#[test]
fn example_2_matches_closed_form_for_random_sizes() {
    let mut rng = StdRng::seed_from_u64(2);
    for case in 0..20 {
        let (m, n) = (rng.random_range(1..100), rng.random_range(1..50));
        let x = Tensor::rand_normal(&[m, n], 0.0, 1.0, case, DType::F64);
        let y = Tensor::rand_normal(&[m], 0.0, 1.0, case + 100, DType::F64);
        let w = Tensor::rand_normal(&[n], 0.0, 1.0, case + 200, DType::F64).requires_grad();
        let z = (x.matmul(&w) - &y).square().sum();
        z.backward().unwrap();
        let closed = x.t().matmul(&(x.matmul(&w.detach()) - &y)) * 2.0;
        assert_close(&w.grad().unwrap(), &closed, 1e-12);
    }
}

/// A chain of a million ops: backward and drop both run without recursion
/// (the test thread has a 2 MiB stack, far too small for a recursive walk).
#[test]
fn million_op_chain_neither_overflows_on_backward_nor_on_drop() {
    let x = Tensor::scalar(0.3f64).requires_grad();
    let mut u = x.clone();
    for _ in 0..250_000 {
        u = u.sin() * 0.5 + &(&u * 0.5);
    }
    u.backward().unwrap();
    // d/du of (sin u + u)/2 is (cos u + 1)/2 per step; check against the
    // same product evaluated directly.
    let (mut v, mut d) = (0.3f64, 1.0f64);
    for _ in 0..250_000 {
        d *= (v.cos() + 1.0) * 0.5;
        v = v.sin() * 0.5 + v * 0.5;
    }
    assert!((u.item() - v).abs() < 1e-12);
    assert!((x.grad().unwrap().item() - d).abs() <= 1e-9 * d.abs().max(1e-300));

    // And a graph dropped without ever running backward.
    let mut u = x.clone();
    for _ in 0..1_000_000 {
        u = u.sin();
    }
    drop(u);
}

#[test]
fn backward_prunes_branches_that_lead_to_no_requested_gradient() {
    let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let v = Tensor::from_vec(vec![0.5f64, 0.1], &[2]).requires_grad();
    let c = Tensor::from_vec(vec![3.0f64, 4.0], &[2]);
    // Ops on tensors that need no gradient record nothing.
    let constant_branch = c.exp().sin();
    assert!(!constant_branch.needs_grad());
    assert_eq!(constant_branch.op_name(), None);

    let a = (&w * 2.0).sum(); // sum, mul_scalar
    let b = v.exp().sin().sum(); // sum, sin, exp
    let z = &a + &b + constant_branch.sum(); // add, add
                                             // Only w requested: the v branch (sum, sin, exp) is never run.
    let keep = BackwardOptions {
        retain_graph: true,
        ..Default::default()
    };
    let (grads, targeted) = autograd::grad_with_stats(&[&z], &[&w], &keep).unwrap();
    assert_eq!(grads[0].to_vec::<f64>(), vec![2.0, 2.0]);
    assert_eq!(targeted.rules_run, 4, "add, add, sum, mul_scalar");
    // Every leaf requested: all seven rules run, each once.
    let all = z.backward_with(&BackwardOptions::default()).unwrap();
    assert_eq!(all.rules_run, 7);
    assert_eq!(all.nodes_reached, 9);
}

#[test]
fn gradients_accumulate_until_zeroed() {
    let x = Tensor::from_vec(vec![1.0f64, -2.0], &[2]).requires_grad();
    (&x * 3.0).sum().backward().unwrap();
    (&x * 3.0).sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![6.0, 6.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    x.square().sum().backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![2.0, -4.0]);
}

#[test]
fn no_grad_and_detach_record_nothing() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let y = no_grad(|| x.exp());
    assert!(!y.needs_grad());
    assert!(autograd::is_grad_enabled());
    let d = x.detach();
    assert!(!d.needs_grad());
    let z = (&x * &d).sum(); // d is a constant: dz/dx = d
    z.backward().unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![1.0, 2.0]);
}

#[test]
fn second_backward_over_a_freed_graph_is_an_error_unless_retained() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let z = x.exp().sum();
    z.backward().unwrap();
    match z.backward() {
        Err(Error::GraphFreed { op }) => assert_eq!(op, "sum"),
        other => panic!("expected GraphFreed, got {other:?}"),
    }
    let msg = z.backward().unwrap_err().to_string();
    assert!(msg.contains("retain_graph"), "{msg}");

    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let z = x.exp().sum();
    let keep = BackwardOptions {
        retain_graph: true,
        ..Default::default()
    };
    z.backward_with(&keep).unwrap();
    z.backward().unwrap();
    let e: Vec<f64> = [1.0f64, 2.0].iter().map(|v| 2.0 * v.exp()).collect();
    assert_close(&x.grad().unwrap(), &Tensor::from_vec(e, &[2]), 1e-15);
}

#[test]
fn non_scalar_outputs_take_an_output_gradient_of_their_shape() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).requires_grad();
    let y = x.square();
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("not a scalar"), "{err}");
    let bad = BackwardOptions {
        grad: Some(Tensor::ones(&[2], DType::F64)),
        retain_graph: true,
        ..Default::default()
    };
    let err = y.backward_with(&bad).unwrap_err().to_string();
    assert!(err.contains("[2]") && err.contains("[3]"), "{err}");
    let v = BackwardOptions {
        grad: Some(Tensor::from_vec(vec![1.0f64, 0.0, 2.0], &[3])),
        ..Default::default()
    };
    y.backward_with(&v).unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![2.0, 0.0, 12.0]);
}

#[test]
fn backward_on_a_tensor_without_graph_is_an_error() {
    let x = Tensor::scalar(1.0f64);
    assert!(matches!(x.backward(), Err(Error::Backward { .. })));
}

#[test]
fn create_graph_gives_differentiable_gradients() {
    let x = Tensor::scalar(1.5f64).requires_grad();
    let y = x.powf(3.0) + x.sin();
    let opts = BackwardOptions {
        create_graph: true,
        ..Default::default()
    };
    let g = autograd::grad_with(&[&y], &[&x], &opts).unwrap().remove(0);
    assert!((g.item() - (3.0 * 1.5f64.powi(2) + 1.5f64.cos())).abs() < 1e-12);
    let h = autograd::grad(&[&g], &[&x]).unwrap().remove(0);
    assert!((h.item() - (6.0 * 1.5 - 1.5f64.sin())).abs() < 1e-12);
}

#[test]
fn tensors_are_send_and_sync_and_graphs_on_threads_do_not_interfere() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tensor>();
    let w = Tensor::rand_normal(&[8, 4], 0.0, 1.0, 7, DType::F64).requires_grad();
    let loss = |seed: u64| {
        let x = Tensor::rand_normal(&[16, 8], 0.0, 1.0, seed, DType::F64);
        x.matmul(&w).tanh().square().mean()
    };
    let serial: Vec<Vec<f64>> = (0..4)
        .map(|s| autograd::grad(&[&loss(s)], &[&w]).unwrap()[0].to_vec())
        .collect();
    let parallel: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|s| {
                let loss = &loss;
                let w = &w;
                scope.spawn(move || autograd::grad(&[&loss(s)], &[w]).unwrap()[0].to_vec())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(serial, parallel);
}

#[test]
fn shape_errors_name_the_op_and_both_shapes() {
    let a = Tensor::zeros(&[2, 3], DType::F32);
    let b = Tensor::zeros(&[4], DType::F32);
    let e = a.try_add(&b).unwrap_err().to_string();
    assert_eq!(
        e,
        "add: shapes [2, 3] and [4] are incompatible: they do not broadcast"
    );
    let e = a.try_matmul(&a).unwrap_err().to_string();
    assert!(
        e.starts_with("matmul: shapes [2, 3] and [2, 3]") && e.contains("3 vs 2"),
        "{e}"
    );
    let e = a.try_reshape(&[5]).unwrap_err().to_string();
    assert!(
        e.contains("reshape") && e.contains("[2, 3]") && e.contains("[5]"),
        "{e}"
    );
    let e = a.try_sum_axes(&[2], false).unwrap_err().to_string();
    assert_eq!(
        e,
        "sum: axis 2 is out of range for a tensor of shape [2, 3]"
    );
    let f64s = Tensor::zeros(&[2, 3], DType::F64);
    assert!(matches!(
        a.try_mul(&f64s),
        Err(Error::DTypeMismatch { op: "mul", .. })
    ));
    // The operators panic with the same message.
    let panic = std::panic::catch_unwind(|| &a + &b).unwrap_err();
    let msg = panic.downcast_ref::<String>().unwrap();
    assert_eq!(
        msg,
        "add: shapes [2, 3] and [4] are incompatible: they do not broadcast"
    );
}

#[test]
fn views_share_the_buffer_and_read_correctly() {
    let x = Tensor::arange(6, DType::F64).reshape(&[2, 3]);
    let t = x.t();
    assert!(!t.is_contiguous());
    assert_eq!(t.to_vec::<f64>(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(x.narrow(1, 1, 2).to_vec::<f64>(), vec![1.0, 2.0, 4.0, 5.0]);
    let b = Tensor::from_vec(vec![1.0f64, 2.0], &[2, 1]).broadcast_to(&[2, 3]);
    assert_eq!(b.to_vec::<f64>(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    assert_eq!(t.get(&[2, 1]), 5.0);
    // A reshape of a non-contiguous view copies (and still differentiates).
    assert_eq!(
        t.reshape(&[6]).to_vec::<f64>(),
        vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    );
}

#[test]
fn constructors() {
    assert_eq!(
        Tensor::linspace(0.0, 1.0, 5, DType::F64).to_vec::<f64>(),
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    );
    assert_eq!(
        Tensor::eye(2, DType::F32).to_vec::<f32>(),
        vec![1.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(
        Tensor::full(&[2], 7.0, DType::F64).to_vec::<f64>(),
        vec![7.0, 7.0]
    );
    let a = Tensor::rand_uniform(&[100], -1.0, 1.0, 3, DType::F64).to_vec::<f64>();
    assert_eq!(
        a,
        Tensor::rand_uniform(&[100], -1.0, 1.0, 3, DType::F64).to_vec::<f64>()
    );
    assert!(a.iter().all(|v| (-1.0..1.0).contains(v)));
    let n = Tensor::rand_normal(&[10_000], 2.0, 3.0, 4, DType::F64);
    assert!((n.mean().item() - 2.0).abs() < 0.1);
    assert!(Tensor::try_from_vec(vec![1.0f32; 5], &[2, 3]).is_err());
    assert_eq!(Tensor::scalar(2.5f32).item(), 2.5);
}

#[test]
fn f32_gradients_through_a_dtype_conversion_come_back_as_f32() {
    let x = Tensor::from_vec(vec![0.5f32, 1.0], &[2]).requires_grad();
    let y = x.to_dtype(DType::F64).sin().sum();
    y.backward().unwrap();
    let g = x.grad().unwrap();
    assert_eq!(g.dtype(), DType::F32);
    assert!((g.to_vec::<f32>()[0] - 0.5f32.cos()).abs() < 1e-6);
}

#[cfg(feature = "ndarray")]
#[test]
fn ndarray_round_trip() {
    let x = Tensor::arange(6, DType::F64).reshape(&[2, 3]).t();
    let a = x.to_ndarray::<f64>().unwrap();
    assert_eq!(a.shape(), &[3, 2]);
    let back = Tensor::from(&a);
    assert_eq!(back.to_vec::<f64>(), x.to_vec::<f64>());
    assert!(x.to_ndarray::<f32>().is_err());
}

/// Backward passes on one shared graph, at once on several threads: a pass
/// that runs alone keeps its bookkeeping in the nodes, one that overlaps
/// another in tables of its own; either way each gets the serial answer.
#[test]
fn concurrent_passes_over_one_shared_graph_agree_with_a_serial_pass() {
    let w = Tensor::rand_normal(&[6], 0.0, 1.0, 3, DType::F64).requires_grad();
    let v = Tensor::rand_normal(&[6], 0.0, 1.0, 4, DType::F64).requires_grad();
    let mut h = &w * &v;
    for _ in 0..200 {
        h = (h.sin() + &w).tanh() * &v;
    }
    let z = h.sum();
    let keep = BackwardOptions {
        retain_graph: true,
        ..Default::default()
    };
    let serial: Vec<Vec<f64>> = autograd::grad_with(&[&z], &[&w, &v], &keep)
        .unwrap()
        .iter()
        .map(|g| g.to_vec())
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..25 {
                    let g = autograd::grad_with(&[&z], &[&w, &v], &keep).unwrap();
                    let g: Vec<Vec<f64>> = g.iter().map(|g| g.to_vec()).collect();
                    assert_eq!(g, serial);
                }
            });
        }
    });
}

/// A graph where every value is used twice has 2^depth paths from the output
/// to the input: the search for the branches leading to a requested
/// gradient visits each node once (this would not finish otherwise), and the
/// gradient is the closed form.
#[test]
fn pruning_search_visits_each_node_of_a_diamond_ladder_once() {
    let x = Tensor::scalar(0.3f64).requires_grad();
    let unused = Tensor::scalar(2.0f64).requires_grad();
    let mut u = x.clone();
    for _ in 0..64 {
        u = &u + &u; // d/du = 2 at every rung
    }
    let z = &u + &(&unused * 3.0);
    let (g, stats) = autograd::grad_with_stats(&[&z], &[&x], &Default::default()).unwrap();
    assert_eq!(g[0].item(), 2f64.powi(64));
    // The 64 additions and the root: the `unused` branch is pruned.
    assert_eq!(stats.rules_run, 65);
}

/// `backward_watching` on a three-layer MLP: each weight is reported once,
/// its `.grad` final when reported, the last layer's first; the gradients
/// equal plain `backward`'s bit for bit.
#[test]
fn backward_watching_reports_each_leaf_once_final_last_layer_first() {
    use chainrule::nn::{self, Module, Parameters};
    let model = nn::mlp(&[5, 7, 6, 3], nn::Activation::Tanh, 3, DType::F64);
    let x = Tensor::rand_normal(&[4, 5], 0.0, 1.0, 9, DType::F64);
    let params: Vec<Tensor> = model.params().iter().map(|p| p.value()).collect();
    let loss = || model.forward(&x).unwrap().square().sum();
    loss().backward().unwrap();
    let plain: Vec<Vec<f64>> = params.iter().map(|p| p.grad().unwrap().to_vec()).collect();
    params.iter().for_each(Tensor::zero_grad);

    let mut reported: Vec<(usize, Vec<f64>)> = Vec::new();
    loss()
        .backward_watching(&params, &mut |i| {
            reported.push((i, params[i].grad().unwrap().to_vec()))
        })
        .unwrap();
    let order: Vec<usize> = reported.iter().map(|(i, _)| *i).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..params.len()).collect::<Vec<_>>(),
        "each once: {order:?}"
    );
    // The last layer's weight and bias (4, 5) come before the first's (0, 1).
    let at = |i: usize| order.iter().position(|&k| k == i).unwrap();
    assert!(at(4).max(at(5)) < at(0).min(at(1)), "order {order:?}");
    for (i, g) in &reported {
        assert_eq!(g, &plain[*i], "parameter {i}: final when reported");
        assert_eq!(params[*i].grad().unwrap().to_vec::<f64>(), plain[*i]);
    }
}

#[test]
fn backward_watching_reports_unread_leaves_and_refuses_non_leaves() {
    let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    let unused = Tensor::from_vec(vec![3.0f64], &[1]).requires_grad();
    let loss = (&a * &a).sum();
    let mut order = Vec::new();
    loss.backward_watching(&[a.clone(), unused.clone()], &mut |i| order.push(i))
        .unwrap();
    assert_eq!(order, [1, 0], "the unread leaf is final at once");
    assert!(unused.grad().is_none());
    assert_eq!(a.grad().unwrap().to_vec::<f64>(), [2.0, 4.0]);

    let b = Tensor::from_vec(vec![1.0f64], &[1]).requires_grad();
    let inner = &b * 2.0;
    let loss = (&inner * &inner).sum();
    let err = loss
        .backward_watching(std::slice::from_ref(&inner), &mut |_| ())
        .unwrap_err();
    assert!(err.to_string().contains("not a leaf"), "{err}");
    let twice = (&b * 3.0).sum();
    let err = twice
        .backward_watching(&[b.clone(), b.clone()], &mut |_| ())
        .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

/// A leaf read at several depths (a weight shared by two layers) is final
/// only after its shallowest reader.
#[test]
fn backward_watching_waits_for_a_shared_leaf_s_last_reader() {
    let w = Tensor::from_vec(vec![0.5f64, -1.5], &[2]).requires_grad();
    let v = Tensor::from_vec(vec![2.0f64, 1.0], &[2]).requires_grad();
    let x = Tensor::from_vec(vec![1.0f64, 3.0], &[2]);
    let loss = || (((&x * &w).tanh() * &v).tanh() * &w).sum();
    loss().backward().unwrap();
    let plain = w.grad().unwrap().to_vec::<f64>();
    w.zero_grad();
    v.zero_grad();
    let mut at_report = Vec::new();
    loss()
        .backward_watching(&[w.clone(), v.clone()], &mut |i| {
            if i == 0 {
                at_report = w.grad().unwrap().to_vec::<f64>();
            }
        })
        .unwrap();
    assert_eq!(at_report, plain);
}
