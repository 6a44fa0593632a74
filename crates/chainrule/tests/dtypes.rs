//! Integer and bool tensors beside the floats: what each op admits, the
//! values it gives, the errors it gives otherwise, and that comparisons,
//! `where` and conversions keep gradients, graphs, compiled code and `vmap`
//! working.

use chainrule::graph::Graph;
use chainrule::{func, DType, Error, Tensor};

fn i64s(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape)
}

fn bools(v: &[bool], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape)
}

#[test]
fn every_dtype_round_trips_through_its_constructors() {
    assert_eq!(i64s(&[1, -2, 3], &[3]).to_vec::<i64>(), [1, -2, 3]);
    assert_eq!(
        Tensor::from_slice(&[7i32, i32::MIN], &[2]).to_vec::<i32>(),
        [7, i32::MIN]
    );
    assert_eq!(bools(&[true, false], &[2]).to_vec::<bool>(), [true, false]);
    assert_eq!(Tensor::scalar(5i64).dtype(), DType::I64);
    assert_eq!(Tensor::arange(4, DType::I32).to_vec::<i32>(), [0, 1, 2, 3]);
    assert_eq!(Tensor::full(&[2], 3.0, DType::I64).to_vec::<i64>(), [3, 3]);
    assert_eq!(
        Tensor::eye(2, DType::Bool).to_vec::<bool>(),
        [true, false, false, true]
    );
    assert_eq!(
        Tensor::zeros(&[2], DType::Bool).to_vec::<bool>(),
        [false; 2]
    );
    // Large integers are exact (not through f64).
    let big = i64s(&[i64::MAX, i64::MIN + 1], &[2]);
    assert_eq!(big.to_vec::<i64>(), [i64::MAX, i64::MIN + 1]);
    assert_eq!(
        big.reshape(&[2, 1]).contiguous().to_vec::<i64>(),
        [i64::MAX, i64::MIN + 1]
    );
}

#[test]
fn conversions_follow_rust_as() {
    let x = Tensor::from_slice(&[2.7f64, -2.7, 0.0, f64::NAN, 1e30], &[5]);
    assert_eq!(
        x.to_dtype(DType::I64).to_vec::<i64>(),
        [2, -2, 0, 0, i64::MAX]
    );
    assert_eq!(
        x.to_dtype(DType::Bool).to_vec::<bool>(),
        [true, true, false, true, true]
    );
    let i = i64s(&[i64::MAX, 3, -1], &[3]);
    assert_eq!(i.to_dtype(DType::I32).to_vec::<i32>(), [-1, 3, -1]);
    assert_eq!(i.to_dtype(DType::Bool).to_vec::<bool>(), [true, true, true]);
    let b = bools(&[true, false], &[2]);
    assert_eq!(b.to_dtype(DType::F32).to_vec::<f32>(), [1.0, 0.0]);
    assert_eq!(b.to_dtype(DType::I64).to_vec::<i64>(), [1, 0]);
    // Every pair converts.
    for from in DType::ALL {
        for to in DType::ALL {
            let t = Tensor::arange(3, from).to_dtype(to);
            assert_eq!(t.dtype(), to);
            let expect: Vec<f64> = match from {
                DType::Bool => vec![0.0, 1.0, 1.0],
                _ if to == DType::Bool => vec![0.0, 1.0, 1.0],
                _ => vec![0.0, 1.0, 2.0],
            };
            assert_eq!(t.to_vec::<f64>(), expect, "{from} -> {to}");
        }
    }
}

#[test]
fn integer_and_bool_tensors_have_no_gradients() {
    for d in [DType::I32, DType::I64, DType::Bool] {
        let e = Tensor::zeros(&[2], d).try_requires_grad().unwrap_err();
        assert!(
            matches!(e, Error::DTypeUnsupported { op: "requires_grad", dtype, .. } if dtype == d),
            "{e}"
        );
        assert!(e.to_string().contains(d.name()), "{e}");
    }
}

#[test]
fn integer_arithmetic_is_exact_and_broadcasts() {
    let a = i64s(&[1, 2, 3, 4, 5, 6], &[2, 3]);
    let b = i64s(&[10, 20, 30], &[3]);
    assert_eq!((&a + &b).to_vec::<i64>(), [11, 22, 33, 14, 25, 36]);
    assert_eq!((&a - &b).to_vec::<i64>(), [-9, -18, -27, -6, -15, -24]);
    assert_eq!((&a * &b).to_vec::<i64>(), [10, 40, 90, 40, 100, 180]);
    assert_eq!(
        a.maximum(&i64s(&[3], &[1])).to_vec::<i64>(),
        [3, 3, 3, 4, 5, 6]
    );
    assert_eq!(
        a.minimum(&i64s(&[3], &[1])).to_vec::<i64>(),
        [1, 2, 3, 3, 3, 3]
    );
    // Wrapping, as release Rust and PyTorch.
    let m = i64s(&[i64::MAX], &[1]);
    assert_eq!((&m + &i64s(&[1], &[1])).to_vec::<i64>(), [i64::MIN]);
    let s = Tensor::scalar(2i32);
    assert_eq!((&s * &s).to_vec::<i32>(), [4]);
}

#[test]
fn ops_without_an_integer_meaning_name_the_op_and_the_dtype() {
    let a = i64s(&[1, 2], &[2]);
    let check = |r: chainrule::Result<Tensor>, op: &str| {
        let e = r.unwrap_err();
        assert!(
            matches!(&e, Error::DTypeUnsupported { op: o, dtype: DType::I64, .. } if *o == op),
            "{e}"
        );
    };
    check(a.try_div(&a), "div");
    check(a.try_pow(&a), "pow");
    check(a.try_exp(), "exp");
    check(a.reshape(&[1, 2]).try_matmul(&a.reshape(&[2, 1])), "matmul");
    let e = a.try_add(&Tensor::ones(&[2], DType::F64)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DTypeMismatch {
                op: "add",
                lhs: DType::I64,
                rhs: DType::F64
            }
        ),
        "{e}"
    );
    let b = bools(&[true], &[1]);
    let e = b.try_add(&b).unwrap_err();
    assert!(e.to_string().contains("bool"), "{e}");
    assert!(Tensor::try_rand_normal(&[2], 0.0, 1.0, 0, DType::I64).is_err());
}

#[test]
fn comparisons_give_bool_and_where_takes_it() {
    let x = Tensor::from_slice(&[-1.0f64, 0.0, 2.0, f64::NAN], &[4]);
    let zero = Tensor::zeros(&[], DType::F64);
    let gt = x.gt(&zero);
    assert_eq!(gt.dtype(), DType::Bool);
    assert_eq!(gt.to_vec::<bool>(), [false, false, true, false]);
    assert_eq!(x.ge(&zero).to_vec::<bool>(), [false, true, true, false]);
    assert_eq!(x.lt(&zero).to_vec::<bool>(), [true, false, false, false]);
    assert_eq!(x.le(&zero).to_vec::<bool>(), [true, true, false, false]);
    assert_eq!(
        x.eq_elem(&zero).to_vec::<bool>(),
        [false, true, false, false]
    );
    assert_eq!(x.ne_elem(&zero).to_vec::<bool>(), [true, false, true, true]);
    let labels = i64s(&[3, 1, 3], &[3]);
    assert_eq!(
        labels.eq_elem(&Tensor::scalar(3i64)).to_vec::<bool>(),
        [true, false, true]
    );
    let w = Tensor::where_(&gt, &x, &Tensor::full(&[], 9.0, DType::F64));
    assert_eq!(w.to_vec::<f64>(), [9.0, 9.0, 2.0, 9.0]);
    let picked = Tensor::where_(
        &labels.gt(&Tensor::scalar(2i64)),
        &labels,
        &(&labels * &labels),
    );
    assert_eq!(picked.to_vec::<i64>(), [3, 1, 3]);
    // A float condition is refused: masks are bool.
    let e = Tensor::try_where_(&x, &x, &x).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DTypeUnsupported {
                op: "where",
                dtype: DType::F64,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bool_maximum_and_minimum_are_or_and_and_and_a_sum_counts() {
    let p = bools(&[true, true, false, false], &[4]);
    let q = bools(&[true, false, true, false], &[4]);
    assert_eq!(p.maximum(&q).to_vec::<bool>(), [true, true, true, false]);
    assert_eq!(p.minimum(&q).to_vec::<bool>(), [true, false, false, false]);
    let m = bools(&[true, false, true, true, true, true], &[2, 3]);
    let count = m.sum_axes(&[1], false);
    assert_eq!(count.dtype(), DType::I64);
    assert_eq!(count.to_vec::<i64>(), [2, 3]);
    assert_eq!(m.max_axes(&[1], false).to_vec::<bool>(), [true, true]);
    assert_eq!(m.min_axes(&[1], false).to_vec::<bool>(), [false, true]);
}

#[test]
fn integers_reduce_move_and_index() {
    let a = i64s(&[5, -1, 7, 2, 9, 0], &[2, 3]);
    assert_eq!(a.sum_axes(&[0], false).to_vec::<i64>(), [7, 8, 7]);
    assert_eq!(a.max_axes(&[1], true).to_vec::<i64>(), [7, 9]);
    assert_eq!(a.min().to_vec::<i64>(), [-1]);
    assert_eq!(a.t().contiguous().to_vec::<i64>(), [5, 2, -1, 9, 7, 0]);
    assert_eq!(
        a.narrow(1, 1, 2).contiguous().to_vec::<i64>(),
        [-1, 7, 9, 0]
    );
    assert_eq!(
        Tensor::concat(&[&a, &a.narrow(0, 0, 1)], 0).to_vec::<i64>(),
        [5, -1, 7, 2, 9, 0, 5, -1, 7]
    );
    assert_eq!(a.index_select(1, &[2, 0]).to_vec::<i64>(), [7, 5, 0, 2]);
    assert_eq!(
        a.gather(1, &i64s(&[1, 0], &[2, 1])).to_vec::<i64>(),
        [-1, 2]
    );
    assert_eq!(
        i64s(&[4], &[1]).broadcast_to(&[2, 2]).to_vec::<i64>(),
        [4, 4, 4, 4]
    );
    let b = bools(&[true, false, true, true], &[2, 2]);
    assert_eq!(
        b.t().contiguous().to_vec::<bool>(),
        [true, true, false, true]
    );
}

#[test]
fn gradients_flow_through_where_with_a_bool_condition() {
    // f(x) = Σ where(x > 0, x², -x): f' = 2x where x > 0, else -1.
    let x = Tensor::from_slice(&[-1.5f64, 0.5, 2.0, -0.25], &[4]);
    let f = |x: &Tensor| {
        let pos = x.gt(&Tensor::zeros(&[], x.dtype()));
        Tensor::where_(&pos, &x.square(), &-x).sum()
    };
    let g = func::grad(f, &x).unwrap();
    assert_eq!(g.to_vec::<f64>(), [-1.0, 1.0, 4.0, -1.0]);
    let (_, t) = func::jvp(f, &x, &Tensor::ones(&[4], DType::F64)).unwrap();
    assert_eq!(t.item(), -1.0 + 1.0 + 4.0 - 1.0);
    // A comparison converted to a float is a constant: Σ x·[x > 0].
    let h = |x: &Tensor| (x * &x.gt(&Tensor::zeros(&[], x.dtype())).to_dtype(x.dtype())).sum();
    assert_eq!(
        func::grad(h, &x).unwrap().to_vec::<f64>(),
        [0.0, 1.0, 1.0, 0.0]
    );
}

#[test]
fn a_graph_takes_integer_inputs_and_new_feeds_of_them() {
    // Σ_i x[i, labels[i]]-like: the labels as an integer input selecting by mask.
    let x = Tensor::from_slice(&[0.1f64, 0.9, 0.8, 0.2, 0.3, 0.7], &[3, 2]);
    let labels = i64s(&[1, 0, 1], &[3]);
    let feeds = [("x", &x), ("labels", &labels)];
    let g = Graph::trace(&feeds, |t| {
        let classes = Tensor::arange(2, DType::I64);
        let onehot = t[1].reshape(&[3, 1]).eq_elem(&classes);
        let picked = Tensor::where_(&onehot, &t[0], &Tensor::zeros(&[], DType::F64));
        let hits = t[0].gt(&Tensor::full(&[], 0.5, DType::F64));
        Ok(vec![picked.sum(), hits.sum_axes(&[0, 1], false)])
    })
    .unwrap();
    let exe = g.optimize().compile();
    let other = i64s(&[0, 0, 0], &[3]);
    for (lab, expect) in [(&labels, 0.9 + 0.8 + 0.7), (&other, 0.1 + 0.8 + 0.3)] {
        for out in [
            exe.run(&[("x", &x), ("labels", lab)]).unwrap(),
            exe.run_interpreted(&[("x", &x), ("labels", lab)]).unwrap(),
        ] {
            assert!((out[0].item() - expect).abs() < 1e-12);
            assert_eq!(out[1].dtype(), DType::I64);
            assert_eq!(out[1].to_vec::<i64>(), [3]);
        }
    }
    // The wrong dtype for an input is refused, naming it.
    let wrong = Tensor::zeros(&[3], DType::F64);
    assert!(exe.run(&[("x", &x), ("labels", &wrong)]).is_err());
}

#[test]
fn a_where_on_a_float_comparison_stays_in_one_compiled_kernel() {
    let x = Tensor::rand_uniform(&[64], -1.0, 1.0, 3, DType::F64);
    let feeds = [("x", &x)];
    let g = Graph::trace(&feeds, |t| {
        let pos = t[0].gt(&Tensor::zeros(&[], DType::F64));
        Ok(vec![Tensor::where_(&pos, &t[0].exp(), &t[0]).sum()])
    })
    .unwrap();
    let exe = g.optimize().compile();
    let r = exe.report().expect("compiled");
    assert_eq!((r.kernels, r.interpreted_nodes), (1, 0), "{r:?}");
    let expect: f64 = x
        .to_vec::<f64>()
        .iter()
        .map(|&v| if v > 0.0 { v.exp() } else { v })
        .sum();
    let got = exe.run(&feeds).unwrap()[0].item();
    assert!((got - expect).abs() < 1e-12, "{got} vs {expect}");
}

#[test]
fn vmap_maps_over_integer_and_bool_inputs() {
    let labels = i64s(&[2, 0, 1], &[3]);
    let x = Tensor::from_slice(&[1.0f64, 2.0, 3.0], &[3]);
    // Per example: x where its label is above 0, else 0; and the label doubled.
    let picked = func::vmap(
        |a: &[Tensor]| {
            let keep = a[0].gt(&Tensor::scalar(0i64));
            Tensor::where_(&keep, &a[1], &Tensor::zeros(&[], DType::F64))
        },
        &[Some(0), Some(0)],
        0,
    )(&[labels.clone(), x.clone()])
    .unwrap();
    assert_eq!(picked.to_vec::<f64>(), [1.0, 0.0, 3.0]);
    let doubled = func::vmap(|a: &[Tensor]| &a[0] + &a[0], &[Some(0)], 0)(&[labels]).unwrap();
    assert_eq!(doubled.to_vec::<i64>(), [4, 0, 2]);
}

#[test]
fn integer_and_bool_tensors_save_and_load() {
    let dir = std::env::temp_dir().join(format!("chainrule-dtypes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.safetensors");
    let tensors = vec![
        ("a".to_string(), i64s(&[i64::MIN, 5], &[2])),
        ("b".to_string(), Tensor::from_slice(&[-3i32], &[1])),
        ("c".to_string(), bools(&[true, false, true], &[3])),
    ];
    chainrule::nn::save_tensors(&path, &tensors).unwrap();
    let back = chainrule::nn::load_tensors(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(back[0].1.to_vec::<i64>(), [i64::MIN, 5]);
    assert_eq!(back[1].1.dtype(), DType::I32);
    assert_eq!(back[1].1.to_vec::<i32>(), [-3]);
    assert_eq!(back[2].1.to_vec::<bool>(), [true, false, true]);
}

#[test]
fn argmax_and_argmin_take_the_first_extremum_and_a_nan() {
    let x = Tensor::from_slice(&[1.0f64, 3.0, 3.0, -2.0, 0.0, -2.0], &[2, 3]);
    let i = x.argmax(1, false);
    assert_eq!(i.dtype(), DType::I64);
    assert_eq!(i.to_vec::<i64>(), [1, 1]);
    assert_eq!(x.argmin(1, false).to_vec::<i64>(), [0, 0]);
    assert_eq!(x.argmax(0, true).shape(), &[1, 3]);
    assert_eq!(x.argmax(0, true).to_vec::<i64>(), [0, 0, 0]);
    let nan = Tensor::from_slice(&[1.0f32, f32::NAN, 5.0, f32::NAN], &[4]);
    assert_eq!(nan.argmax(0, false).to_vec::<i64>(), [1]);
    assert_eq!(nan.argmin(0, false).to_vec::<i64>(), [1]);
    let ints = i64s(&[4, 9, 9, -7], &[4]);
    assert_eq!(ints.argmax(0, false).to_vec::<i64>(), [1]);
    assert_eq!(ints.argmin(0, false).to_vec::<i64>(), [3]);
    let (v, at) = x.max_with_indices(1, false);
    assert_eq!(
        (v.to_vec::<f64>(), at.to_vec::<i64>()),
        (vec![3.0, 0.0], vec![1, 1])
    );
    let (v, at) = ints.min_with_indices(0, true);
    assert_eq!((v.to_vec::<i64>(), at.to_vec::<i64>()), (vec![-7], vec![3]));
    // At a tie the gradient goes to the entry at the index, as in PyTorch.
    let tie = Tensor::from_slice(&[2.0f64, 5.0, 5.0], &[3]);
    let g = chainrule::func::grad(|t: &Tensor| t.max_with_indices(0, false).0.sum(), &tie).unwrap();
    assert_eq!(g.to_vec::<f64>(), [0.0, 1.0, 0.0]);
    let e = Tensor::zeros(&[2, 0], DType::F64)
        .try_argmax(1, false)
        .unwrap_err();
    assert!(e.to_string().contains("argmax"), "{e}");
    assert!(x.try_argmax(2, false).is_err());
}

#[test]
fn a_classifiers_accuracy_in_a_graph_fed_new_labels() {
    // Logits of 4 examples over 3 classes; accuracy = mean(argmax == label).
    let logits = Tensor::from_slice(
        &[
            2.0f64, 0.1, 0.3, 0.2, 1.5, 0.1, 0.1, 0.2, 0.9, 1.0, 0.0, 3.0,
        ],
        &[4, 3],
    );
    let labels = i64s(&[0, 1, 2, 0], &[4]);
    let feeds = [("logits", &logits), ("labels", &labels)];
    let g = Graph::trace(&feeds, |t| {
        let hits = t[0].argmax(1, false).eq_elem(&t[1]);
        Ok(vec![hits.to_dtype(DType::F64).mean()])
    })
    .unwrap();
    let exe = g.optimize().compile();
    let run = |labels: &[i64]| {
        let labels = i64s(labels, &[4]);
        exe.run(&[("logits", &logits), ("labels", &labels)])
            .unwrap()[0]
            .item()
    };
    // Predictions: 0, 1, 2, 2.
    assert_eq!(run(&[0, 1, 2, 0]), 0.75);
    assert_eq!(run(&[0, 1, 2, 2]), 1.0);
    assert_eq!(run(&[1, 0, 0, 0]), 0.0);
    // And in vmap over a batch of label sets.
    let sets = i64s(&[0, 1, 2, 0, 0, 1, 2, 2], &[2, 4]);
    let acc = func::vmap(
        |a: &[Tensor]| {
            let hits = logits.argmax(1, false).eq_elem(&a[0]);
            hits.to_dtype(DType::F64).mean()
        },
        &[Some(0)],
        0,
    )(&[sets])
    .unwrap();
    assert_eq!(acc.to_vec::<f64>(), [0.75, 1.0]);
}

#[test]
fn any_all_and_the_logical_operators_work_on_bool() {
    let p = bools(&[true, true, false, false], &[4]);
    let q = bools(&[true, false, true, false], &[4]);
    assert_eq!((&p & &q).to_vec::<bool>(), [true, false, false, false]);
    assert_eq!((&p | &q).to_vec::<bool>(), [true, true, true, false]);
    assert_eq!((&p ^ &q).to_vec::<bool>(), [false, true, true, false]);
    assert_eq!((!&p).to_vec::<bool>(), [false, false, true, true]);
    assert_eq!(p.any().to_vec::<bool>(), [true]);
    assert_eq!(p.all().to_vec::<bool>(), [false]);
    assert_eq!(
        Tensor::zeros(&[0], DType::Bool).all().to_vec::<bool>(),
        [true]
    );
    let m = bools(&[true, false, true, true], &[2, 2]);
    assert_eq!(m.all_axes(&[1], false).to_vec::<bool>(), [false, true]);
    assert_eq!(m.any_axes(&[0], false).to_vec::<bool>(), [true, true]);
    let e = i64s(&[1], &[1]).try_logical_and(&p).unwrap_err();
    assert!(
        matches!(
            e,
            Error::DTypeUnsupported {
                op: "logical_and",
                ..
            }
        ),
        "{e}"
    );
    assert!(Tensor::ones(&[1], DType::F64)
        .try_any_axes(&[0], false)
        .is_err());
}

#[test]
fn scalars_of_the_tensors_own_kind_combine_with_it() {
    let f = Tensor::from_slice(&[1.0f32, 2.0], &[2]);
    assert_eq!((&f * 2.0).to_vec::<f32>(), [2.0, 4.0]);
    assert_eq!((&f * 2).to_vec::<f32>(), [2.0, 4.0]);
    assert_eq!((3.0 - &f).to_vec::<f32>(), [2.0, 1.0]);
    // Literals still infer inside longer expressions.
    assert_eq!((&f * 0.5 + &f).to_vec::<f32>(), [1.5, 3.0]);
    let i = i64s(&[1, 2], &[2]);
    assert_eq!((&i * 3).to_vec::<i64>(), [3, 6]);
    assert_eq!((10 - &i).to_vec::<i64>(), [9, 8]);
    assert_eq!((&i * 2 + &i).to_vec::<i64>(), [3, 6]);
    let j = Tensor::from_slice(&[5i32], &[1]);
    assert_eq!((&j * 2).to_vec::<i32>(), [10]);
    // Scalars of the tensor's own type on the right, typed.
    assert_eq!((&f * 2.0f32).to_vec::<f32>(), [2.0, 4.0]);
    assert_eq!((f.clone() / 2.0f32 + &f).to_vec::<f32>(), [1.5, 3.0]);
    assert_eq!((&j - 1i32).to_vec::<i32>(), [4]);
    assert_eq!((&i + 1i64).to_vec::<i64>(), [2, 3]);
    // A float scalar does not silently turn an integer tensor into floats.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| &i * 0.5));
    assert!(r.is_err());
    let e = i.try_mul(&Tensor::scalar(0.5f64)).unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { op: "mul", .. }), "{e}");
}

#[test]
fn integer_tensors_print_as_integers() {
    let s = format!("{:?}", i64s(&[3, -4], &[2]));
    assert_eq!(s, "tensor([ 3, -4], shape=[2], dtype=i64)");
    let s = format!("{}", bools(&[true, false], &[2]));
    assert_eq!(s, "[ true, false]");
}

#[test]
fn negative_axes_count_from_the_back_everywhere() {
    let x = Tensor::rand_uniform(&[2, 3, 4], -1.0, 1.0, 5, DType::F64);
    let same = |a: Tensor, b: Tensor| {
        assert_eq!(a.shape(), b.shape());
        assert_eq!(a.to_vec::<f64>(), b.to_vec::<f64>());
    };
    same(x.softmax(-1), x.softmax(2));
    same(x.log_softmax(-2), x.log_softmax(1));
    same(x.logsumexp(-1, true), x.logsumexp(2, true));
    same(x.sum_axes(&[-1, 0], false), x.sum_axes(&[0, 2], false));
    same(x.mean_axes(&[-1], true), x.mean_axes(&[2], true));
    same(x.max_axes(&[-3], false), x.max_axes(&[0], false));
    same(x.narrow(-1, 1, 2), x.narrow(2, 1, 2));
    same(x.transpose(-1, -2), x.transpose(2, 1));
    same(x.permute(&[-1, 0, 1]), x.permute(&[2, 0, 1]));
    same(x.unsqueeze(-1), x.unsqueeze(3));
    same(x.narrow(0, 0, 1).squeeze(-3), x.narrow(0, 0, 1).squeeze(0));
    same(Tensor::concat(&[&x, &x], -1), Tensor::concat(&[&x, &x], 2));
    same(Tensor::stack(&[&x, &x], -1), Tensor::stack(&[&x, &x], 3));
    assert_eq!(
        x.argmax(-1, false).to_vec::<i64>(),
        x.argmax(2, false).to_vec::<i64>()
    );
    // Out of range either way names the op, the axis as written and the shape.
    let e = x.try_softmax(-4).unwrap_err();
    assert!(
        matches!(
            e,
            Error::AxisOutOfRange {
                op: "softmax",
                axis: -4,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("[2, 3, 4]"), "{e}");
    assert!(x.try_sum_axes(&[3], false).is_err());
    assert!(x.try_unsqueeze(-5).is_err());
    // A gradient through a negative axis is the one through the positive.
    let g = |axis: i64| {
        func::grad(|t: &Tensor| (t.softmax(axis) * t).sum(), &x)
            .unwrap()
            .to_vec::<f64>()
    };
    assert_eq!(g(-1), g(2));
}

#[test]
fn one_hot_rows_from_integer_labels() {
    let labels = i64s(&[2, 0, 1, 5], &[4]);
    let h = labels.one_hot(3);
    assert_eq!((h.dtype(), h.shape()), (DType::I64, &[4usize, 3][..]));
    assert_eq!(h.to_vec::<i64>(), [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0]);
    let grid = Tensor::from_slice(&[1i32, 0], &[2, 1]).one_hot(2);
    assert_eq!(grid.shape(), &[2, 1, 2]);
    assert_eq!(grid.to_vec::<i64>(), [0, 1, 1, 0]);
    let e = Tensor::ones(&[2], DType::F64).try_one_hot(3).unwrap_err();
    assert!(
        matches!(e, Error::DTypeUnsupported { op: "one_hot", .. }),
        "{e}"
    );
}

#[test]
fn in_place_updates_write_through_and_refuse_graph_tensors() {
    let mut x = Tensor::from_slice(&[1.0f32, 2.0, 3.0], &[3]);
    let view = x.clone();
    x += &Tensor::from_slice(&[1.0f32], &[1]);
    x *= 2.0;
    x -= 1;
    x /= &Tensor::full(&[3], 2.0, DType::F32);
    assert_eq!(x.to_vec::<f32>(), [1.5, 2.5, 3.5]);
    // Tensors are values: another handle keeps what it saw.
    assert_eq!(view.to_vec::<f32>(), [1.0, 2.0, 3.0]);
    let mut counts = Tensor::zeros(&[2], DType::I64);
    for _ in 0..3 {
        counts += &i64s(&[1, 2], &[2]);
    }
    counts.mul_(&Tensor::scalar(2i64));
    assert_eq!(counts.to_vec::<i64>(), [6, 12]);
    // Refusals name the op and leave the tensor as it was.
    let e = counts.try_div_(&counts.clone()).unwrap_err();
    assert!(
        matches!(e, Error::DTypeUnsupported { op: "div", .. }),
        "{e}"
    );
    let e = counts
        .try_add_(&Tensor::zeros(&[2, 2], DType::I64))
        .unwrap_err();
    assert!(e.to_string().contains("add_"), "{e}");
    let e = counts
        .try_add_(&Tensor::zeros(&[2], DType::F64))
        .unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { op: "add_", .. }), "{e}");
    assert_eq!(counts.to_vec::<i64>(), [6, 12]);
    let mut w = Tensor::ones(&[2], DType::F64).requires_grad();
    let e = w.try_sub_(&Tensor::ones(&[2], DType::F64)).unwrap_err();
    assert!(e.to_string().contains("in place"), "{e}");
    assert!(w.is_leaf());
    // A tensor computed in the graph is updated as `x = &x + &y`: recorded.
    let mut loss = w.square().sum();
    for k in 1..=2 {
        loss += (&w * k as f64).sum();
    }
    loss.backward().unwrap();
    // d/dw Σ w² + 3 Σ w = 2w + 3.
    assert_eq!(w.grad().unwrap().to_vec::<f64>(), [5.0, 5.0]);
    // Without a gradient (as an optimizer's step would), it is allowed.
    let mut p = w.detach();
    p -= &Tensor::full(&[2], 0.5, DType::F64);
    assert_eq!(p.to_vec::<f64>(), [0.5, 0.5]);
}

#[test]
fn structure_ops_give_torchs_values() {
    let x = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let v = |t: Tensor| t.to_vec::<f64>();
    assert_eq!(v(x.cumsum(1)), [1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
    assert_eq!(v(x.cumsum(0)), [1.0, 2.0, 3.0, 5.0, 7.0, 9.0]);
    assert_eq!(i64s(&[1, 2, 3], &[3]).cumsum(0).to_vec::<i64>(), [1, 3, 6]);
    assert!(bools(&[true], &[1]).try_cumsum(0).is_err());
    assert_eq!(v(x.flip(&[1])), [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
    assert_eq!(v(x.flip(&[0, 1])), [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
    assert_eq!(v(x.roll(1, 1)), [3.0, 1.0, 2.0, 6.0, 4.0, 5.0]);
    assert_eq!(v(x.roll(-1, -1)), [2.0, 3.0, 1.0, 5.0, 6.0, 4.0]);
    assert_eq!(v(x.roll(4, 1)), v(x.roll(1, 1)));
    assert_eq!(v(x.tril(0)), [1.0, 0.0, 0.0, 4.0, 5.0, 0.0]);
    assert_eq!(v(x.triu(1)), [0.0, 2.0, 3.0, 0.0, 0.0, 6.0]);
    assert_eq!(v(x.tril(-1)), [0.0, 0.0, 0.0, 4.0, 0.0, 0.0]);
    assert_eq!(v(x.diagonal(0)), [1.0, 5.0]);
    assert_eq!(v(x.diagonal(1)), [2.0, 6.0]);
    assert_eq!(v(x.diagonal(-1)), [4.0]);
    assert_eq!(x.diagonal(5).shape(), &[0]);
    assert_eq!(x.trace().item(), 6.0);
    let d = Tensor::from_slice(&[1.0f64, 2.0], &[2]).diag();
    assert_eq!(v(d.clone()), [1.0, 0.0, 0.0, 2.0]);
    assert_eq!(v(d.diag()), [1.0, 2.0]);
    let b = Tensor::arange(8, DType::I64).reshape(&[2, 2, 2]);
    assert_eq!(b.diagonal(0).to_vec::<i64>(), [0, 3, 4, 7]);
    assert!(Tensor::ones(&[3], DType::F64).try_tril(0).is_err());
    assert!(Tensor::ones(&[3], DType::F64).try_trace().is_err());
}

#[test]
fn slices_follow_pythons_rules() {
    use chainrule::Slice;
    let x = Tensor::arange(10, DType::I64);
    let at = |s: Slice| x.slice(&[s]).to_vec::<i64>();
    assert_eq!(at((2..5).into()), [2, 3, 4]);
    assert_eq!(at(Slice::from(1..).step(3)), [1, 4, 7]);
    assert_eq!(at(Slice::from(..).step(-1)), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    assert_eq!(at(Slice::new(Some(7), Some(2), -2)), [7, 5, 3]);
    assert_eq!(at((-3..).into()), [7, 8, 9]);
    assert_eq!(at((..-8).into()), [0, 1]);
    assert_eq!(at((-3..=-1).into()), [7, 8, 9]);
    assert_eq!(at((2..=4).into()), [2, 3, 4]);
    assert_eq!(at((-1).into()), [9]);
    assert_eq!(at((5..100).into()), [5, 6, 7, 8, 9]);
    assert_eq!(at(Slice::new(Some(6), Some(2), 1)), Vec::<i64>::new());
    let m = Tensor::arange(12, DType::I64).reshape(&[3, 4]);
    let s = m.slice(&[Slice::from(..).step(2), (1..3).into()]);
    assert_eq!(
        (s.shape(), s.to_vec::<i64>()),
        (&[2usize, 2][..], vec![1, 2, 9, 10])
    );
    assert!(m.try_slice(&[Slice::from(..).step(0)]).is_err());
    assert!(m
        .try_slice(&[(..).into(), (..).into(), (..).into()])
        .is_err());
    let f = Tensor::from_slice(&[1.0f64, -2.0, 3.0], &[3]);
    let neg = f.lt(&Tensor::zeros(&[], DType::F64));
    assert_eq!(f.masked_fill(&neg, 0.0).to_vec::<f64>(), [1.0, 0.0, 3.0]);
}
