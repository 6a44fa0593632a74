//! The layers of `nn`: every parameter's and input's gradient against
//! central differences (f64), `#[derive(Module)]` naming, freezing,
//! buffers saved with the weights, and errors that name the layer.

use chainrule::nn::{self, AttentionMask, Module, Param, Parameters};
use chainrule::{ConvOptions, DType, Pool2d, Tensor};

const F64: DType = DType::F64;

/// `sum(f() · w)` with fixed weights `w[i] = sin(i + 1)`.
fn weighted(out: &Tensor) -> f64 {
    let w: Vec<f64> = (0..out.numel()).map(|i| ((i + 1) as f64).sin()).collect();
    (out * &Tensor::from_vec(w, out.shape())).sum().item()
}

/// Checks backward's gradient of `weighted(f())` with respect to every
/// parameter of `module` and to `x` against central differences, at up to
/// 12 entries of each.
fn gradcheck_layer(name: &str, module: &dyn Parameters, x: &Tensor, f: &dyn Fn(&Tensor) -> Tensor) {
    let x = x.detach().requires_grad();
    let out = f(&x);
    let w: Vec<f64> = (0..out.numel()).map(|i| ((i + 1) as f64).sin()).collect();
    (&out * &Tensor::from_vec(w, out.shape()))
        .sum()
        .backward()
        .unwrap();
    let eps = 1e-6;
    let check = |what: &str, analytic: Vec<f64>, value: &Tensor, set: &dyn Fn(&Tensor) -> f64| {
        let base = value.to_vec::<f64>();
        let step = (base.len() / 12).max(1);
        for i in (0..base.len()).step_by(step) {
            let mut plus = base.clone();
            plus[i] += eps;
            let mut minus = base.clone();
            minus[i] -= eps;
            let fd = (set(&Tensor::from_vec(plus, value.shape()))
                - set(&Tensor::from_vec(minus, value.shape())))
                / (2.0 * eps);
            let a = analytic[i];
            assert!(
                (a - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
                "{name}: d/d{what}[{i}] backward {a}, finite differences {fd}"
            );
        }
    };
    let gx = x.grad().expect("the input's gradient").to_vec::<f64>();
    check("x", gx, &x, &|v| weighted(&f(v)));
    for (pname, p) in module.named_params() {
        let value = p.value().detach();
        let analytic = p
            .grad()
            .unwrap_or_else(|| panic!("{name}: no gradient for {pname}"));
        check(&pname, analytic.to_vec::<f64>(), &value, &|v| {
            p.set(v).unwrap();
            let y = weighted(&f(&x.detach()));
            p.set(&value).unwrap();
            y
        });
    }
}

fn input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_normal(shape, 0.0, 1.0, seed, F64)
}

#[test]
fn every_layer_passes_gradcheck() {
    let conv = nn::Conv2d::new(
        3,
        4,
        [3, 2],
        ConvOptions::default().stride([2, 1]).padding([1, 1]),
        1,
        F64,
    )
    .unwrap();
    gradcheck_layer("Conv2d", &conv, &input(&[2, 3, 5, 4], 2), &|x| {
        conv.forward(x).unwrap()
    });
    let grouped = nn::Conv2d::new(
        4,
        2,
        [2, 2],
        ConvOptions::default().groups(2).dilation([2, 1]),
        3,
        F64,
    )
    .unwrap();
    gradcheck_layer("Conv2d groups", &grouped, &input(&[1, 4, 5, 5], 4), &|x| {
        grouped.forward(x).unwrap()
    });
    let conv1 = nn::Conv1d::new(2, 3, [3], ConvOptions::default().padding([2]), 5, F64).unwrap();
    gradcheck_layer("Conv1d", &conv1, &input(&[2, 2, 6], 6), &|x| {
        conv1.forward(x).unwrap()
    });
    let pool = nn::MaxPool2d(Pool2d::new([2, 2]));
    gradcheck_layer("MaxPool2d", &pool, &input(&[1, 2, 4, 4], 7), &|x| {
        pool.forward(x).unwrap()
    });
    let avg = nn::AvgPool2d(Pool2d::new([3, 3]).stride([2, 2]).padding([1, 1]));
    gradcheck_layer("AvgPool2d", &avg, &input(&[1, 2, 5, 5], 8), &|x| {
        avg.forward(x).unwrap()
    });
    let adaptive = nn::AdaptiveAvgPool2d([2, 3]);
    gradcheck_layer(
        "AdaptiveAvgPool2d",
        &adaptive,
        &input(&[1, 2, 5, 7], 9),
        &|x| adaptive.forward(x).unwrap(),
    );
    let bn = nn::BatchNorm2d::new_2d(3, F64);
    bn.weight.set(&input(&[3], 10)).unwrap();
    gradcheck_layer("BatchNorm2d train", &bn, &input(&[3, 3, 2, 2], 11), &|x| {
        bn.forward(x).unwrap()
    });
    bn.set_training(false);
    gradcheck_layer("BatchNorm2d eval", &bn, &input(&[3, 3, 2, 2], 12), &|x| {
        bn.forward(x).unwrap()
    });
    let ln = nn::LayerNorm::new(&[4], F64);
    ln.weight.set(&input(&[4], 13)).unwrap();
    gradcheck_layer("LayerNorm", &ln, &input(&[3, 4], 14), &|x| {
        ln.forward(x).unwrap()
    });
    let mha = nn::MultiheadAttention::new(6, 2, 15, F64).unwrap();
    gradcheck_layer("MultiheadAttention", &mha, &input(&[2, 4, 6], 16), &|x| {
        let mask = AttentionMask {
            causal: true,
            ..Default::default()
        };
        mha.attend(x, x, x, mask).unwrap()
    });
    let lstm = nn::Lstm::new(3, 4, 2, 17, F64).unwrap();
    gradcheck_layer("Lstm", &lstm, &input(&[2, 3, 3], 18), &|x| {
        lstm.forward(x).unwrap()
    });
    let gru = nn::Gru::new(3, 4, 2, 19, F64).unwrap();
    gradcheck_layer("Gru", &gru, &input(&[2, 3, 3], 20), &|x| {
        gru.forward(x).unwrap()
    });
    let linear = nn::Linear::with_default_init(3, 2, 21, F64);
    gradcheck_layer("Linear", &linear, &input(&[4, 3], 22), &|x| {
        linear.forward(x).unwrap()
    });
}

#[test]
fn embedding_gradient_sums_the_rows_uses() {
    let emb = nn::Embedding::new(5, 3, 0, F64);
    let idx = Tensor::from_vec(vec![1i64, 4, 1], &[3]);
    let out = emb.forward(&idx).unwrap();
    assert_eq!(out.shape(), &[3, 3]);
    out.sum().backward().unwrap();
    let g = emb.weight.grad().unwrap().to_vec::<f64>();
    assert_eq!(&g[3..6], &[2.0, 2.0, 2.0]);
    assert_eq!(&g[12..15], &[1.0, 1.0, 1.0]);
    assert_eq!(&g[0..3], &[0.0, 0.0, 0.0]);
    let bad = Tensor::from_vec(vec![5i64], &[1]);
    assert!(emb
        .forward(&bad)
        .unwrap_err()
        .to_string()
        .contains("index_select"));
}

/// A user's model: the derive names every field's entries.
#[derive(nn::Module)]
struct Net {
    conv: nn::Conv2d,
    norm: nn::BatchNorm,
    head: nn::Linear,
    extra: Option<Param>,
    blocks: Vec<nn::Linear>,
    #[module(flatten)]
    inner: Inner,
    #[module(skip)]
    classes: usize,
}

#[derive(nn::Module)]
struct Inner {
    scale: Param,
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> chainrule::Result<Tensor> {
        let h = self.norm.forward(&self.conv.forward(x)?.relu())?;
        let h = nn::Flatten(1).forward(&h)?;
        let logits = self.head.forward(&h)?;
        assert_eq!(logits.shape()[1], self.classes);
        logits.try_mul(&self.inner.scale.value())
    }
}

fn net() -> Net {
    Net {
        conv: nn::Conv2d::new(1, 2, [3, 3], ConvOptions::default(), 0, F64).unwrap(),
        norm: nn::BatchNorm2d::new_2d(2, F64),
        head: nn::Linear::with_default_init(2 * 2 * 2, 3, 1, F64),
        extra: None,
        blocks: vec![nn::Linear::with_default_init(2, 2, 2, F64)],
        inner: Inner {
            scale: Param::new(Tensor::scalar(1.0f64)),
        },
        classes: 3,
    }
}

#[test]
fn derive_module_names_params_buffers_and_switches_mode() {
    let model = net();
    let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "conv.weight",
            "conv.bias",
            "norm.weight",
            "norm.bias",
            "head.weight",
            "head.bias",
            "blocks.0.weight",
            "blocks.0.bias",
            "scale"
        ]
    );
    let buffers: Vec<String> = model.named_buffers().into_iter().map(|(n, _)| n).collect();
    assert_eq!(buffers, ["norm.running_mean", "norm.running_var"]);
    assert_eq!(model.num_params(), 18 + 2 + 2 + 2 + 24 + 3 + 4 + 2 + 1);
    // Evaluation mode reaches the nested BatchNorm: its statistics stop moving.
    let x = input(&[2, 1, 4, 4], 3);
    model.forward(&x).unwrap();
    let moved = model.norm.running_mean.value().to_vec::<f64>();
    assert!(moved.iter().any(|&m| m != 0.0));
    model.set_training(false);
    model.forward(&x).unwrap();
    assert_eq!(model.norm.running_mean.value().to_vec::<f64>(), moved);
}

#[test]
fn frozen_parameters_get_no_gradient_and_are_not_trainable() {
    let model = net();
    model.conv.freeze();
    assert_eq!(model.num_trainable_params(), model.num_params() - 20);
    let loss = model.forward(&input(&[2, 1, 4, 4], 4)).unwrap().sum();
    loss.backward().unwrap();
    assert!(model.conv.weight.grad().is_none());
    assert!(model.head.weight.grad().is_some());
    let mut opt = chainrule::optim::Sgd::new(model.params(), 0.1);
    let before = model.conv.weight.value().to_vec::<f64>();
    chainrule::optim::Optimizer::step(&mut opt).unwrap();
    assert_eq!(model.conv.weight.value().to_vec::<f64>(), before);
    model.conv.unfreeze();
    assert_eq!(model.num_trainable_params(), model.num_params());
}

#[test]
fn sequential_names_its_layers() {
    let model = nn::Sequential::new()
        .add_named(
            "features",
            nn::Conv2d::new(1, 2, [3, 3], ConvOptions::default(), 0, F64).unwrap(),
        )
        .add(nn::Relu)
        .add_named("flatten", nn::Flatten::default())
        .add_named("classifier", nn::Linear::with_default_init(8, 3, 1, F64));
    let names: Vec<String> = model.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "features.weight",
            "features.bias",
            "classifier.weight",
            "classifier.bias"
        ]
    );
    assert_eq!(model.names(), ["features", "1", "flatten", "classifier"]);
    assert_eq!(
        model.forward(&input(&[5, 1, 4, 4], 0)).unwrap().shape(),
        &[5, 3]
    );
}

#[test]
fn a_model_naming_two_tensors_alike_is_refused() {
    let model = nn::Sequential::new()
        .add_named("a", nn::Linear::with_default_init(2, 2, 0, F64))
        .add_named("a", nn::Linear::with_default_init(2, 2, 1, F64));
    let path =
        std::env::temp_dir().join(format!("chainrule-dup-{}.safetensors", std::process::id()));
    let e = nn::save(&model, &path).unwrap_err().to_string();
    assert!(e.contains("two tensors `a.weight`"), "{e}");
    assert!(!path.exists());
}

#[test]
fn buffers_are_saved_and_loaded_with_the_weights() {
    let dir = std::env::temp_dir().join(format!("chainrule-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("net.safetensors");
    let trained = net();
    trained.forward(&input(&[2, 1, 4, 4], 5)).unwrap();
    nn::save(&trained, &path).unwrap();
    let fresh = net();
    nn::load_into(&fresh, &path).unwrap();
    assert_eq!(
        fresh.norm.running_var.value().to_vec::<f64>(),
        trained.norm.running_var.value().to_vec::<f64>()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn layer_errors_name_the_layer_and_shapes() {
    let conv = nn::Conv2d::new(3, 4, [3, 3], ConvOptions::default(), 0, F64).unwrap();
    let e = conv
        .forward(&input(&[1, 2, 5, 5], 0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv2d") && e.contains("[1, 2, 5, 5]") && e.contains("[4, 3, 3, 3]"),
        "{e}"
    );
    let e = conv
        .forward(&input(&[1, 3, 2, 2], 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv2d") && e.contains("does not fit"), "{e}");
    let e = nn::Conv1d::new(3, 4, [2], ConvOptions::default(), 0, F64)
        .unwrap()
        .forward(&input(&[1, 3], 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv1d"), "{e}");
    assert!(nn::Conv2d::new(3, 4, [3, 3], ConvOptions::default().groups(2), 0, F64).is_err());
    let pool = nn::MaxPool2d(Pool2d::new([2, 2]).padding([2, 2]));
    assert!(pool
        .forward(&input(&[1, 1, 4, 4], 0))
        .unwrap_err()
        .to_string()
        .contains("at most half"));
    let bn = nn::BatchNorm2d::new_2d(3, F64);
    let e = bn
        .forward(&input(&[2, 4, 2, 2], 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("BatchNorm") && e.contains("[2, 4, 2, 2]"), "{e}");
    let mha = nn::MultiheadAttention::new(6, 2, 0, F64).unwrap();
    let e = mha.forward(&input(&[2, 4, 5], 0)).unwrap_err().to_string();
    assert!(e.contains("MultiheadAttention"), "{e}");
    assert!(nn::MultiheadAttention::new(6, 4, 0, F64).is_err());
    // Hostile sizes are errors before anything is allocated.
    let x = input(&[1, 1, 1, 1], 0);
    let huge = ConvOptions::default().padding([1 << 40, 1 << 40]);
    let w = input(&[1, 1, 1, 1], 0);
    assert!(x
        .try_conv2d(&w, None, huge)
        .unwrap_err()
        .to_string()
        .contains("too large"));
    assert!(x.try_adaptive_avg_pool2d([1 << 50, 1]).is_err());
    let dilated = Pool2d::new([2, 2]).padding([1, 1]).dilation([3, 3]);
    assert!(input(&[1, 1, 2, 2], 0)
        .try_avg_pool2d(dilated)
        .unwrap_err()
        .to_string()
        .contains("dilation"));
    let mean = Tensor::zeros(&[3], F64);
    let e = input(&[2, 3, 2], 0)
        .try_batch_norm(Some(&mean), None, None, None, 1e-5)
        .unwrap_err();
    assert!(e.to_string().contains("both"), "{e}");
    let (q, k, v) = (
        input(&[2, 3, 4], 0),
        input(&[2, 5, 4], 1),
        input(&[2, 4, 4], 2),
    );
    let e = Tensor::try_scaled_dot_product_attention(&q, &k, &v, None, None).unwrap_err();
    assert!(
        e.to_string().contains("scaled_dot_product_attention"),
        "{e}"
    );
    let lstm = nn::Lstm::new(3, 4, 1, 0, F64).unwrap();
    assert!(nn::Lstm::new(3, 4, 0, 0, F64).is_err());
    let cell = nn::LstmCell::new(3, 4, 0, F64);
    assert!(cell.forward(&Tensor::scalar(1.0f64)).is_err());
    assert!(lstm
        .forward(&input(&[2, 3, 5], 0))
        .unwrap_err()
        .to_string()
        .contains("LstmCell"));
}
