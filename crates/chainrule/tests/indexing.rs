//! Indices as `i64` tensors: values of the scatters, batched indices under
//! `vmap`, labels fed to a traced graph, and indices checked when the op
//! runs. (Gradients of every indexing op are rows of the op table.)

use chainrule::graph::Graph;
use chainrule::{func, nn, DType, Error, Tensor};

// The example `classifier_graph`, run here with its checks.
#[allow(dead_code)]
#[path = "../examples/classifier_graph.rs"]
mod classifier_graph;

fn f64s(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape)
}

fn i64s(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape)
}

#[test]
fn scatters_write_and_sum_at_their_indices() {
    let x = Tensor::zeros(&[2, 3], DType::F64);
    let src = f64s(&[1., 2., 3., 4.], &[2, 2]);
    let index = i64s(&[2, 2, 0, 1], &[2, 2]);
    // torch.zeros(2, 3).scatter_add(1, index, src)
    assert_eq!(
        x.scatter_add(1, &index, &src).to_vec::<f64>(),
        [0., 0., 3., 3., 4., 0.]
    );
    let ones = Tensor::ones(&[2, 3], DType::F64);
    let unique = i64s(&[2, 0, 0, 1], &[2, 2]);
    assert_eq!(
        ones.scatter(1, &unique, &src).to_vec::<f64>(),
        [2., 1., 1., 3., 4., 1.]
    );
    // torch.ones(2, 3).index_add(0, tensor([1, 1]), src3)
    let src3 = f64s(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    assert_eq!(
        ones.index_add(0, &[1, 1], &src3).to_vec::<f64>(),
        [1., 1., 1., 6., 8., 10.]
    );
}

#[test]
fn index_add_along_a_middle_axis_sums_whole_rows_of_every_block() {
    // (2, 4, 3) rows scattered into (2, 3, 3) along axis 1: outer 2, inner 3.
    let (idx, size) = ([2usize, 0, 2, 1], 3);
    let src: Vec<f64> = (0..24).map(|i| i as f64 * 0.5 - 3.0).collect();
    let zeros = Tensor::zeros(&[2, size, 3], DType::F64);
    let got = zeros
        .index_add(1, &idx, &f64s(&src, &[2, 4, 3]))
        .to_vec::<f64>();
    let mut want = vec![0.0; 2 * size * 3];
    for o in 0..2 {
        for (j, &t) in idx.iter().enumerate() {
            for i in 0..3 {
                want[(o * size + t) * 3 + i] += src[(o * 4 + j) * 3 + i];
            }
        }
    }
    assert_eq!(got, want);
}

#[test]
fn bad_indices_are_errors_naming_the_op() {
    let x = f64s(&[1., 2., 3.], &[3]);
    let err = x.try_index_select(0, &[3]).unwrap_err().to_string();
    assert!(
        err.contains("index_select") && err.contains("index 3"),
        "{err}"
    );
    let err = x.try_gather(0, &i64s(&[-1], &[1])).unwrap_err().to_string();
    assert!(err.contains("gather") && err.contains("-1"), "{err}");
    let err = x.try_gather(0, &f64s(&[0.], &[1])).unwrap_err();
    assert!(
        matches!(err, Error::DTypeUnsupported { op: "gather", .. }),
        "{err}"
    );
    let err = x
        .try_gather(0, &i64s(&[0, 0], &[1, 2]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("gather") && err.contains("[1, 2]"), "{err}");
    let err = x.try_index_select(0, &i64s(&[0, 0], &[1, 2])).unwrap_err();
    assert!(err.to_string().contains("1-d index"), "{err}");
    let src = f64s(&[1.], &[1]);
    assert!(x.try_scatter_add(0, &i64s(&[0, 1], &[2]), &src).is_err());
    let labels = i64s(&[5], &[1]);
    let err = nn::cross_entropy_loss(&x.reshape(&[1, 3]), &labels).unwrap_err();
    assert!(err.to_string().contains("label 5"), "{err}");
}

/// `f` run on each example of `args` (their first axis), stacked.
fn per_example(f: impl Fn(&[Tensor]) -> Tensor, args: &[Tensor], batched: &[bool]) -> Tensor {
    let n = args
        .iter()
        .zip(batched)
        .find(|(_, &b)| b)
        .map(|(a, _)| a.shape()[0])
        .unwrap();
    let outs: Vec<Tensor> = (0..n)
        .map(|i| {
            let example: Vec<Tensor> = args
                .iter()
                .zip(batched)
                .map(|(a, &b)| {
                    if b {
                        a.narrow(0, i, 1).squeeze(0)
                    } else {
                        a.clone()
                    }
                })
                .collect();
            f(&example)
        })
        .collect();
    Tensor::stack(&outs.iter().collect::<Vec<_>>(), 0)
}

fn check_vmap(f: fn(&[Tensor]) -> Tensor, args: &[Tensor], batched: &[bool]) {
    let axes: Vec<Option<usize>> = batched.iter().map(|&b| b.then_some(0)).collect();
    let mapped = func::vmap(f, &axes, 0)(args).unwrap();
    let want = per_example(f, args, batched);
    assert_eq!(mapped.shape(), want.shape());
    assert_eq!(mapped.to_vec::<f64>(), want.to_vec::<f64>());
}

#[test]
fn vmap_batches_indices_as_well_as_operands() {
    let x = Tensor::arange(24, DType::F64).reshape(&[2, 3, 4]);
    let xs = Tensor::arange(48, DType::F64).reshape(&[2, 2, 3, 4]);
    let rows = i64s(&[2, 0, 2, 1, 1, 0], &[2, 3]);
    let select: fn(&[Tensor]) -> Tensor = |t| t[0].index_select(1, &t[1]);
    for batched in [[false, true], [true, true], [true, false]] {
        let x = if batched[0] { &xs } else { &x };
        let index = if batched[1] {
            rows.clone()
        } else {
            i64s(&[2, 0, 2], &[3])
        };
        check_vmap(select, &[x.clone(), index], &batched);
    }
    let picks = i64s(&[0, 1, 2, 2, 2, 1, 1, 0, 1, 1, 1, 1], &[2, 2, 1, 3]);
    let gather: fn(&[Tensor]) -> Tensor = |t| t[0].narrow(2, 0, 3).gather(1, &t[1]);
    let one_pick = i64s(&[0, 1, 2, 2, 1, 0], &[2, 1, 3]);
    check_vmap(gather, &[xs.clone(), picks.clone()], &[true, true]);
    check_vmap(gather, &[x.clone(), picks], &[false, true]);
    check_vmap(gather, &[xs.clone(), one_pick], &[true, false]);
    // The transposes, through per-example gradients with batched indices.
    let grad: fn(&[Tensor]) -> Tensor = |t| {
        let index = t[1].clone();
        func::grad(|x: &Tensor| x.index_select(0, &index).square().sum(), &t[0]).unwrap()
    };
    let v = f64s(&[1., -2., 3.], &[3]);
    let vs = f64s(&[1., -2., 3., 0.5, 0.25, 2.], &[2, 3]);
    let at = i64s(&[0, 0, 2, 1, 2, 1], &[2, 3]);
    check_vmap(grad, &[v, at.clone()], &[false, true]);
    check_vmap(grad, &[vs, at], &[true, true]);
}

#[test]
fn a_traced_classifier_takes_new_labels() {
    let w = f64s(&[0.5, -1.0, 0.25, 2.0, -0.5, 1.0], &[2, 3]);
    let x = f64s(&[1., 2., -1., 0.5, 3., -2., 0., 1.], &[4, 2]);
    let labels = i64s(&[0, 1, 2, 1], &[4]);
    let graph = Graph::trace(&[("w", &w), ("x", &x), ("labels", &labels)], |t| {
        let logits = t[1].matmul(&t[0]);
        Ok(vec![
            nn::cross_entropy_loss(&logits, &t[2])?,
            nn::accuracy(&logits, &t[2])?,
        ])
    })
    .unwrap();
    let with_grad = graph.gradients(0, &["w"]).unwrap();
    let exe = with_grad.compile();
    for new in [[2, 2, 0, 1], [1, 0, 0, 2], [0, 1, 2, 1]] {
        let new = i64s(&new, &[4]);
        let (loss, grad) =
            func::value_and_grad(|w: &Tensor| nn::cross_entropy_loss(&x.matmul(w), &new), &w)
                .unwrap();
        let accuracy = nn::accuracy(&x.matmul(&w), &new).unwrap();
        let feeds = [("w", &w), ("x", &x), ("labels", &new)];
        for out in [
            exe.run_interpreted(&feeds).unwrap(),
            exe.run(&feeds).unwrap(),
        ] {
            assert!((out[0].item() - loss.item()).abs() < 1e-12);
            assert_eq!(out[1].item(), accuracy.item());
            let diff = (&out[2] - &grad).abs().max().item();
            assert!(diff < 1e-12, "{diff}");
        }
    }
    // A fed label out of range is the graph's error, not a panic.
    let bad = i64s(&[0, 3, 0, 0], &[4]);
    let err = graph
        .compile()
        .run(&[("w", &w), ("x", &x), ("labels", &bad)])
        .unwrap_err();
    assert!(err.to_string().contains("index 3 is out of range"), "{err}");
}

#[test]
fn accuracy_counts_argmax_hits() {
    let logits = f64s(&[1., 3., 2., 0., 0., 5., 4., 4., 1.], &[3, 3]);
    let acc = nn::accuracy(&logits, &[1, 2, 1]).unwrap();
    // Row 2 ties at 0 and 1: the first wins, so label 1 misses.
    assert!((acc.item() - 2.0 / 3.0).abs() < 1e-15);
}

#[test]
fn the_digits_classifier_graph_scores_both_splits_with_their_labels() {
    let (w, graph, splits) = classifier_graph::train_and_trace(60);
    let scores = classifier_graph::evaluate(&w, &graph, &splits);
    for ((x, y), (loss, accuracy)) in splits.iter().zip(&scores) {
        let logits = x.matmul(&w);
        assert!((nn::cross_entropy_loss(&logits, y).unwrap().item() - loss).abs() < 1e-12);
        assert_eq!(nn::accuracy(&logits, y).unwrap().item(), *accuracy);
    }
    // Trained on one split, right on most of the other.
    assert!(scores[1].1 > 0.85, "{scores:?}");
}
