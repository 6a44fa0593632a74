//! Layers, losses, optimizers, data, saving/loading and checkpointing.

use chainrule::check::{gradcheck, GradcheckOptions};
use chainrule::data::{self, Dataset, Targets};
use chainrule::nn::{self, init::Init, Module, Parameters};
use chainrule::optim::{Adam, Optimizer, Schedule, Sgd};
use chainrule::{func, DType, Tensor};

fn assert_close(a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    for (i, (x, y)) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "entry {i}: {x} vs {y}"
        );
    }
}

fn x64(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_normal(shape, 0.0, 1.0, seed, DType::F64)
}

#[test]
fn layers_and_losses_match_central_differences() {
    let opts = GradcheckOptions::default();
    let linear = nn::Linear::new(4, 3, Init::XavierNormal, 1, DType::F64);
    let (w, b) = (linear.weight.value(), linear.bias.value());
    gradcheck(
        |xs| xs[0].matmul(&xs[1]) + &xs[2],
        &[x64(&[5, 4], 2), w.detach(), b.detach()],
        opts,
    )
    .unwrap();
    for (name, layer) in [
        ("relu", Box::new(nn::Relu) as Box<dyn Module>),
        ("tanh", Box::new(nn::Tanh)),
        ("sigmoid", Box::new(nn::Sigmoid)),
        ("gelu", Box::new(nn::Gelu)),
    ] {
        let x = x64(&[3, 4], 3).abs() + 0.1; // away from relu's kink
        gradcheck(|xs| layer.forward(&xs[0]).unwrap(), &[x * 1.0], opts)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let target = x64(&[5, 3], 4);
    gradcheck(
        |xs| nn::mse_loss(&xs[0], &target).unwrap(),
        &[x64(&[5, 3], 5)],
        opts,
    )
    .unwrap();
    let labels = [0usize, 2, 1, 2, 0];
    gradcheck(
        |xs| nn::cross_entropy_loss(&xs[0], &labels).unwrap(),
        &[x64(&[5, 3], 6)],
        opts,
    )
    .unwrap();
    let y01 = Tensor::rand_uniform(&[5, 3], 0.0, 1.0, 7, DType::F64);
    gradcheck(
        |xs| nn::bce_with_logits_loss(&xs[0], &y01).unwrap(),
        &[x64(&[5, 3], 8)],
        opts,
    )
    .unwrap();
}

#[test]
fn losses_equal_their_definitions_and_stay_finite() {
    let p = Tensor::from_vec(vec![1.0f64, 2.0, 4.0], &[3]);
    let t = Tensor::from_vec(vec![0.0f64, 2.0, 1.0], &[3]);
    assert!((nn::mse_loss(&p, &t).unwrap().item() - 10.0 / 3.0).abs() < 1e-15);
    // cross-entropy of logits [0, ln 3] with label 1: −ln(3/4)
    let logits = Tensor::from_vec(vec![0.0f64, 3f64.ln()], &[1, 2]);
    let ce = nn::cross_entropy_loss(&logits, &[1]).unwrap().item();
    assert!((ce + (0.75f64).ln()).abs() < 1e-15);
    // BCE at huge logits: no overflow, the right limits.
    let big = Tensor::from_vec(vec![1000.0f64, -1000.0], &[2]);
    let bce = nn::bce_with_logits_loss(&big, &Tensor::from_vec(vec![0.0f64, 1.0], &[2])).unwrap();
    assert_eq!(bce.item(), 1000.0);
    let bce = nn::bce_with_logits_loss(&big, &Tensor::from_vec(vec![1.0f64, 0.0], &[2])).unwrap();
    assert_eq!(bce.item(), 0.0);
    // Bad input is an error, not a panic.
    assert!(nn::mse_loss(&p, &Tensor::zeros(&[2], DType::F64)).is_err());
    let e = nn::cross_entropy_loss(&logits, &[5])
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 5"), "{e}");
}

#[test]
fn initializations_have_their_spread() {
    let n = 400;
    for (init, var) in [
        (Init::XavierUniform, 2.0 / 800.0),
        (Init::XavierNormal, 2.0 / 800.0),
        (Init::KaimingUniform, 2.0 / 400.0),
        (Init::KaimingNormal, 2.0 / 400.0),
    ] {
        let w = init.weight(n, n, 9, DType::F64);
        let v = w.square().mean().item();
        assert!(
            (v / var - 1.0).abs() < 0.03,
            "{init:?}: variance {v} vs {var}"
        );
        assert_eq!(
            w.to_vec::<f64>(),
            init.weight(n, n, 9, DType::F64).to_vec::<f64>()
        );
    }
}

#[test]
fn sequential_names_and_mlp_shapes() {
    let model = nn::mlp(&[64, 32, 10], nn::Activation::Relu, 0, DType::F32);
    let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    assert_eq!(model.num_params(), 64 * 32 + 32 + 32 * 10 + 10);
    let y = model.forward(&Tensor::zeros(&[7, 64], DType::F32)).unwrap();
    assert_eq!(y.shape(), &[7, 10]);
    let e = model
        .forward(&Tensor::zeros(&[7, 63], DType::F32))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("matmul") && e.contains("[7, 63]") && e.contains("[64, 32]"),
        "{e}"
    );
}

#[test]
fn dropout_masks_in_training_only() {
    let d = nn::Dropout::new(0.25, 3).unwrap();
    let x = Tensor::ones(&[100, 100], DType::F64);
    let y = d.forward(&x).unwrap().to_vec::<f64>();
    let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / 10_000.0;
    assert!((zeros - 0.25).abs() < 0.02, "{zeros}");
    assert!(y
        .iter()
        .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-15));
    d.set_training(false);
    assert_eq!(d.forward(&x).unwrap().to_vec::<f64>(), x.to_vec::<f64>());
    assert!(nn::Dropout::new(1.0, 0).is_err());
}

#[test]
fn optimizers_take_the_documented_steps() {
    let p = nn::Param::new(Tensor::from_vec(vec![1.0f64, -2.0], &[2]));
    let loss = |p: &nn::Param| p.value().square().sum(); // gradient 2p
                                                         // plain SGD: p − lr·2p
    let mut sgd = Sgd::new(vec![p.clone()], 0.1);
    loss(&p).backward().unwrap();
    sgd.step().unwrap();
    assert_close(
        &p.value(),
        &Tensor::from_vec(vec![0.8f64, -1.6], &[2]),
        1e-15,
    );
    // momentum 0.9, two steps: v1 = g1, v2 = 0.9 v1 + g2
    let p = nn::Param::new(Tensor::from_vec(vec![1.0f64], &[1]));
    let mut sgd = Sgd::new(vec![p.clone()], 0.1).momentum(0.9);
    for _ in 0..2 {
        sgd.zero_grad();
        loss(&p).backward().unwrap();
        sgd.step().unwrap();
    }
    // p1 = 1 − 0.1·2 = 0.8; v2 = 0.9·2 + 1.6 = 3.4; p2 = 0.8 − 0.34
    assert!((p.value().item() - 0.46).abs() < 1e-15);
    // Adam's first step is lr·sign(g) (up to ε)
    let p = nn::Param::new(Tensor::from_vec(vec![3.0f64, -0.5], &[2]));
    let mut adam = Adam::new(vec![p.clone()], 0.01);
    loss(&p).backward().unwrap();
    adam.step().unwrap();
    assert_close(
        &p.value(),
        &Tensor::from_vec(vec![2.99f64, -0.49], &[2]),
        1e-9,
    );
    // AdamW shrinks the weight by lr·λ·p besides the Adam step
    let p = nn::Param::new(Tensor::from_vec(vec![3.0f64], &[1]));
    let mut adamw = Adam::adamw(vec![p.clone()], 0.01).weight_decay(0.5);
    loss(&p).backward().unwrap();
    adamw.step().unwrap();
    assert!((p.value().item() - (3.0 * (1.0 - 0.005) - 0.01)).abs() < 1e-9);
    // all of them minimise a quadratic
    for make in [
        |ps| Box::new(Sgd::new(ps, 0.1).momentum(0.9).nesterov(true)) as Box<dyn Optimizer>,
        |ps| Box::new(Adam::new(ps, 0.1)) as Box<dyn Optimizer>,
        |ps| Box::new(Adam::adamw(ps, 0.1)) as Box<dyn Optimizer>,
    ] {
        let p = nn::Param::new(Tensor::from_vec(vec![1.0f64, -2.0], &[2]));
        let mut opt = make(vec![p.clone()]);
        for _ in 0..300 {
            opt.zero_grad();
            loss(&p).backward().unwrap();
            opt.step().unwrap();
        }
        assert!(loss(&p).item() < 1e-4, "{}", loss(&p).item());
    }
}

#[test]
fn schedules() {
    let step = Schedule::Step {
        step_size: 10,
        gamma: 0.5,
    };
    assert_eq!(step.lr(1.0, 9), 1.0);
    assert_eq!(step.lr(1.0, 25), 0.25);
    let cos = Schedule::Cosine {
        epochs: 10,
        min_lr: 0.1,
    };
    assert_eq!(cos.lr(1.0, 0), 1.0);
    assert!((cos.lr(1.0, 5) - 0.55).abs() < 1e-15);
    assert!((cos.lr(1.0, 10) - 0.1).abs() < 1e-15);
}

#[test]
fn batches_cover_every_example_once_in_a_seeded_order() {
    let ds = Dataset::new(
        Tensor::arange(10, DType::F64).reshape(&[10, 1]),
        Targets::Labels(Tensor::arange(10, DType::I64)),
    )
    .unwrap();
    let collect = |seed| -> Vec<i64> {
        ds.batches(3, seed)
            .flat_map(|b| match b.y {
                Targets::Labels(l) => l.to_vec::<i64>(),
                Targets::Values(_) | Targets::Sequences(_) => unreachable!(),
            })
            .collect()
    };
    assert_eq!(ds.batches(3, None).len(), 4);
    assert_eq!(collect(None), (0..10).collect::<Vec<_>>());
    let a = collect(Some(1));
    assert_eq!(a, collect(Some(1)));
    assert_ne!(a, collect(Some(2)));
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    let (train, test) = ds.split(0.2, 0);
    assert_eq!((train.len(), test.len()), (8, 2));
    let x = Tensor::zeros(&[3, 1], DType::F64);
    let labels = |d| Targets::Labels(Tensor::zeros(&[3], d));
    assert!(Dataset::new(x.clone(), labels(DType::I64)).is_ok());
    assert!(Dataset::new(x.clone(), labels(DType::F64)).is_err());
    assert!(Dataset::new(x, Targets::Labels(Tensor::zeros(&[1], DType::I64))).is_err());
}

#[test]
fn linear_regression_data_has_the_stated_parameters() {
    let ds = data::linear_regression(1000, 0, DType::F64);
    let Targets::Values(y) = &ds.y else { panic!() };
    // least squares on [x, 1]
    let a = Tensor::concat(&[&ds.x, &Tensor::ones(&[1000, 1], DType::F64)], 1);
    let ata = a.t().matmul(&a).to_vec::<f64>();
    let aty = a.t().matmul(y).to_vec::<f64>();
    // solve the 3×3 normal equations by Cramer's rule
    let det = |m: &[f64]| {
        m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
            + m[2] * (m[3] * m[7] - m[4] * m[6])
    };
    let d = det(&ata);
    let solve = |c: usize| {
        let mut m = ata.clone();
        for r in 0..3 {
            m[r * 3 + c] = aty[r];
        }
        det(&m) / d
    };
    assert!((solve(0) - 2.0).abs() < 0.005 && (solve(1) + 3.4).abs() < 0.005);
    assert!((solve(2) - 4.2).abs() < 0.005);
}

#[test]
fn digits_load_and_bad_files_are_named() {
    let ds = data::digits(DType::F32).unwrap();
    assert_eq!(ds.x.shape(), &[1797, 64]);
    let Targets::Labels(l) = &ds.y else { panic!() };
    let mut counts = [0usize; 10];
    l.to_vec::<i64>()
        .iter()
        .for_each(|&c| counts[c as usize] += 1);
    assert!(
        counts.iter().all(|&c| (174..=183).contains(&c)),
        "{counts:?}"
    );
    assert!(ds.x.max().item() <= 1.0 && ds.x.min().item() >= 0.0);
    let e = data::parse_digits(b"not gzip", "x.gz", DType::F32)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("x.gz:"), "{e}");
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"1,2,3\n").unwrap();
    let e = data::parse_digits(&enc.finish().unwrap(), "short.gz", DType::F32)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("short.gz") && e.contains("line 1") && e.contains("65"),
        "{e}"
    );
}

#[test]
fn safetensors_round_trip_is_exact_and_errors_leave_no_file() {
    let dir = std::env::temp_dir().join(format!("chainrule-nn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let model = nn::mlp(&[5, 4, 3], nn::Activation::Tanh, 1, DType::F32);
    nn::save(&model, &path).unwrap();
    // The file follows the format: an 8-byte little-endian header length, then JSON.
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(
        header.contains("\"0.weight\"") && header.contains("\"F32\""),
        "{header}"
    );
    let other = nn::mlp(&[5, 4, 3], nn::Activation::Tanh, 2, DType::F32);
    nn::load_into(&other, &path).unwrap();
    for ((_, a), (_, b)) in model.named_params().iter().zip(other.named_params()) {
        assert_eq!(a.value().to_vec::<f32>(), b.value().to_vec::<f32>());
    }
    let t64 = x64(&[3, 2], 1);
    nn::save_tensors(dir.join("t.safetensors"), &[("t".into(), t64.clone())]).unwrap();
    let back = nn::load_tensors(dir.join("t.safetensors")).unwrap();
    assert_eq!(back[0].1.to_vec::<f64>(), t64.to_vec::<f64>());
    // mismatches are named
    let wrong = nn::mlp(&[5, 6, 3], nn::Activation::Tanh, 1, DType::F32);
    let e = nn::load_into(&wrong, &path).unwrap_err().to_string();
    assert!(e.contains("0.weight") && e.contains("[5, 4]"), "{e}");
    let e = nn::load_into(&model, dir.join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing.safetensors") && e.contains("cannot read"),
        "{e}"
    );
    std::fs::write(dir.join("junk.safetensors"), b"junk").unwrap();
    assert!(nn::load_into(&model, dir.join("junk.safetensors")).is_err());
    // a failed write leaves nothing behind
    let bad = dir.join("no-such-dir").join("m.safetensors");
    assert!(nn::save(&model, &bad).is_err());
    assert!(!dir.join("no-such-dir").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .collect();
    assert!(leftovers.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpointed_deep_mlp_gives_identical_gradients() {
    let depth = 16;
    let build = |checkpointed: bool| {
        let mut model = nn::Sequential::new();
        for s in 0..depth / 4 {
            let seg = nn::mlp(&[8, 8, 8, 8, 8], nn::Activation::Tanh, s as u64, DType::F64);
            model = if checkpointed {
                model.add(nn::Checkpointed::new(seg)).add(nn::Tanh)
            } else {
                model.add(seg).add(nn::Tanh)
            };
        }
        model
    };
    let (plain, ckpt) = (build(false), build(true));
    let x = x64(&[4, 8], 3);
    let mut grads = Vec::new();
    for model in [&plain, &ckpt] {
        let loss = model.forward(&x).unwrap().square().sum();
        loss.backward().unwrap();
        grads.push(
            model
                .params()
                .iter()
                .map(|p| p.grad().unwrap().to_vec::<f64>())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(grads[0], grads[1]);
    assert_eq!(grads[0].len(), 2 * depth);
    // and second order through the checkpoint (create_graph reruns the segment recorded)
    let seg = nn::Checkpointed::new(nn::mlp(&[3, 4, 1], nn::Activation::Tanh, 7, DType::F64));
    let plain = nn::mlp(&[3, 4, 1], nn::Activation::Tanh, 7, DType::F64);
    let x3 = x64(&[3], 4);
    let h_seg = func::hessian_rev(
        |x: &Tensor| seg.forward(&x.reshape(&[1, 3])).unwrap().sum(),
        &x3,
    );
    let h_plain = func::hessian_rev(
        |x: &Tensor| plain.forward(&x.reshape(&[1, 3])).unwrap().sum(),
        &x3,
    );
    assert_close(&h_seg.unwrap(), &h_plain.unwrap(), 1e-14);
}

/// A `Linear` followed by an activation runs as one affine op in a
/// `Sequential`; its values and gradients are those of the layers run one
/// by one.
#[test]
fn sequential_fuses_linear_and_activation_with_the_same_results() {
    let x = Tensor::from_vec((0..12).map(|i| (i as f64 * 0.37).sin()).collect(), &[4, 3]);
    for (act, fused_name) in [
        (nn::Activation::Relu, Some("affine_relu")),
        (nn::Activation::Tanh, Some("affine_tanh")),
        (nn::Activation::Sigmoid, Some("affine_sigmoid")),
        (nn::Activation::Gelu, None),
    ] {
        let model = nn::mlp(&[3, 5, 2], act, 7, DType::F64);
        let layers = model.params();
        let h = model.forward(&x).unwrap();
        let first = nn::Sequential::new().add(nn::Linear::from_tensors(
            layers[0].value(),
            layers[1].value(),
        ));
        let hidden = first.forward(&x).unwrap();
        if let Some(name) = fused_name {
            let fused = nn::Sequential::new().add(nn::Linear::from_tensors(
                layers[0].value().requires_grad(),
                layers[1].value(),
            ));
            let fused = match act {
                nn::Activation::Relu => fused.add(nn::Relu),
                nn::Activation::Tanh => fused.add(nn::Tanh),
                _ => fused.add(nn::Sigmoid),
            };
            assert_eq!(fused.forward(&x).unwrap().op_name(), Some(name));
        }
        // The same layers, each run on its own.
        let activated = match act {
            nn::Activation::Relu => hidden.relu(),
            nn::Activation::Tanh => hidden.tanh(),
            nn::Activation::Sigmoid => hidden.sigmoid(),
            nn::Activation::Gelu => hidden.gelu_tanh(),
        };
        let by_layer = activated.matmul(&layers[2].value()) + &layers[3].value();
        let (a, b) = (h.to_vec::<f64>(), by_layer.to_vec::<f64>());
        assert!(
            a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-12),
            "{act:?}: {a:?} vs {b:?}"
        );
        // Every parameter's gradient against central differences.
        let params: Vec<Tensor> = layers.iter().map(|p| p.value()).collect();
        let loss = |ps: &[Tensor]| {
            x.affine(&ps[0], &ps[1], Some(act))
                .affine(&ps[2], &ps[3], None)
        };
        gradcheck(loss, &params, GradcheckOptions::default()).unwrap();
    }
}

#[test]
fn affine_off_its_shapes_is_matmul_and_add_with_their_broadcasting_and_errors() {
    let x = Tensor::from_vec((0..6).map(f64::from).collect(), &[2, 3]);
    let w = Tensor::from_vec((0..12).map(|i| 0.5 - f64::from(i) * 0.1).collect(), &[3, 4])
        .requires_grad();
    let b = Tensor::from_vec(vec![0.1, -0.2, 0.3, -0.4], &[4]);
    let fused = x.affine(&w, &b, Some(nn::Activation::Relu));
    assert_eq!(fused.op_name(), Some("affine_relu"));
    // A bias of one element broadcasts, as `+` does.
    let one = Tensor::from_vec(vec![0.25], &[1]);
    let y = x.affine(&w, &one, None);
    assert_eq!(y.op_name(), Some("add"));
    assert_eq!(y.to_vec::<f64>(), (x.matmul(&w) + 0.25).to_vec::<f64>());
    let e = x.try_affine(&w, &Tensor::zeros(&[3], DType::F64), None);
    let e = e.unwrap_err().to_string();
    assert!(
        e.contains("add") && e.contains("[2, 4]") && e.contains("[3]"),
        "{e}"
    );
    let e = x.try_affine(&x, &b, None).unwrap_err().to_string();
    assert!(
        e.contains("matmul") && e.contains("contraction sizes differ (3 vs 2)"),
        "{e}"
    );
    let f32_bias = Tensor::zeros(&[4], DType::F32);
    assert!(x
        .try_affine(&w, &f32_bias, Some(nn::Activation::Relu))
        .is_err());
}

/// The ranks' shards of each step, taken in rank order, are exactly the
/// batch one process draws with the same seed, for 1 to 5 ranks, with
/// empty shards when a batch has fewer examples than ranks.
#[test]
fn shard_batches_partition_every_global_batch_in_rank_order() {
    let n = 11;
    let labels = Tensor::from_vec((0..n as i64).collect::<Vec<_>>(), &[n]);
    let ds = Dataset::new(Tensor::zeros(&[n, 2], DType::F64), Targets::Labels(labels)).unwrap();
    let ids = |b: &Dataset| match &b.y {
        Targets::Labels(l) => l.to_vec::<i64>(),
        Targets::Values(_) | Targets::Sequences(_) => unreachable!(),
    };
    for ranks in 1..=5 {
        let whole: Vec<Vec<i64>> = ds.batches(4, Some(3)).map(|b| ids(&b)).collect();
        let shards: Vec<Vec<Vec<i64>>> = (0..ranks)
            .map(|r| {
                ds.shard_batches(4, Some(3), r, ranks)
                    .map(|b| ids(&b))
                    .collect()
            })
            .collect();
        for (step, batch) in whole.iter().enumerate() {
            let joined: Vec<i64> = (0..ranks).flat_map(|r| shards[r][step].clone()).collect();
            assert_eq!(&joined, batch, "{ranks} ranks, step {step}");
            let sizes: Vec<usize> = (0..ranks).map(|r| shards[r][step].len()).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "nearly equal shards: {sizes:?}");
        }
        assert!(shards.iter().all(|s| s.len() == whole.len()));
    }
    let mut it = ds.shard_batches(4, None, 1, 2);
    assert_eq!(it.global_len(), 4);
    assert_eq!(ids(&it.next().unwrap()), [2, 3]);
    it.next();
    assert_eq!(it.global_len(), 3); // the last global batch: 11 = 4 + 4 + 3
    assert_eq!(ids(&it.next().unwrap()), [9, 10]);
    assert_eq!(it.global_len(), 0);
}
