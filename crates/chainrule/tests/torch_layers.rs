//! Every layer's values, gradients and running statistics against
//! PyTorch's on fixed inputs and weights, recorded once into
//! fixtures/torch_layers.txt by fixtures/torch_layers.py (so no PyTorch is
//! needed here). The gradient is of `sum(output · w)`, `w[i] = sin(i + 1)`.

use chainrule::nn::{self, AttentionMask, Module, Parameters};
use chainrule::{ConvOptions, DType, Pool2d, Tensor};
use std::collections::HashMap;

const RECORDED: &str = include_str!("fixtures/torch_layers.txt");

#[derive(Default)]
struct Case {
    name: String,
    inputs: Vec<(String, Tensor)>,
    params: Vec<(String, Tensor)>,
    buffers: Vec<(String, Tensor)>,
    output: Option<Tensor>,
    grads: Vec<(String, Tensor)>,
    after: Vec<(String, Tensor)>,
}

/// `KIND NAME SHAPE : values` (no NAME for `output`).
fn parse_line(line: &str) -> (String, String, Tensor) {
    let (head, values) = line
        .split_once(" : ")
        .unwrap_or((line.trim_end_matches(" :"), ""));
    let words: Vec<&str> = head.split(' ').collect();
    let (kind, name, dims) = match words.as_slice() {
        [kind, dims] => (*kind, "", *dims),
        [kind, name, dims] => (*kind, *name, *dims),
        _ => panic!("bad line {head}"),
    };
    let shape: Vec<usize> = dims
        .split(',')
        .filter(|d| !d.is_empty() && *d != "-")
        .map(|d| d.parse().unwrap())
        .collect();
    let data: Vec<f64> = values
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let t = Tensor::from_vec(data, &shape);
    let t = if name.starts_with("idx") {
        t.to_dtype(DType::I64)
    } else if name.starts_with("mask") {
        t.to_dtype(DType::Bool)
    } else {
        t.requires_grad()
    };
    (kind.to_string(), name.to_string(), t)
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in RECORDED.lines().filter(|l| !l.is_empty()) {
        if let Some(name) = line.strip_prefix("case ") {
            cases.push(Case {
                name: name.to_string(),
                ..Case::default()
            });
            continue;
        }
        let case = cases.last_mut().expect("a case comes first");
        let (kind, name, t) = parse_line(line);
        match kind.as_str() {
            "input" => case.inputs.push((name, t)),
            "param" => case.params.push((name, t)),
            "buffer" => case.buffers.push((name, t)),
            "output" => case.output = Some(t),
            "grad" => case.grads.push((name, t)),
            "after" => case.after.push((name, t)),
            other => panic!("unknown line kind {other}"),
        }
    }
    cases
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let (g, w) = (got.to_vec::<f64>(), want.to_vec::<f64>());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
            "{what}[{i}]: chainrule {a}, PyTorch {b}"
        );
    }
}

/// The layer of a case, and how it is called.
enum Layer {
    /// `forward(x)`.
    Plain(Box<dyn Module>),
    /// Self-attention with a causal mask.
    Causal(nn::MultiheadAttention),
    /// `attend(query, key, value)` with a key padding mask.
    KeyPadding(nn::MultiheadAttention),
    /// `step(x, (h, c))`, output `[h' | c']`.
    LstmCell(nn::LstmCell),
    /// `step(x, h)`.
    GruCell(nn::GruCell),
}

impl Layer {
    fn parameters(&self) -> &dyn Parameters {
        match self {
            Layer::Plain(m) => m.as_ref(),
            Layer::Causal(m) | Layer::KeyPadding(m) => m,
            Layer::LstmCell(m) => m,
            Layer::GruCell(m) => m,
        }
    }

    fn apply(&self, x: &[Tensor]) -> chainrule::Result<Tensor> {
        match self {
            Layer::Plain(m) => m.forward(&x[0]),
            Layer::Causal(m) => {
                let mask = AttentionMask {
                    causal: true,
                    ..Default::default()
                };
                m.attend(&x[0], &x[0], &x[0], mask)
            }
            Layer::KeyPadding(m) => {
                let mask = AttentionMask {
                    key_padding: Some(&x[3]),
                    ..Default::default()
                };
                m.attend(&x[0], &x[1], &x[2], mask)
            }
            Layer::LstmCell(m) => {
                let (h, c) = m.step(&x[0], (&x[1], &x[2]))?;
                Tensor::try_concat(&[&h, &c], 1)
            }
            Layer::GruCell(m) => m.step(&x[0], &x[1]),
        }
    }
}

fn layer(name: &str) -> Layer {
    let f64 = DType::F64;
    let plain = |m: Box<dyn Module>| Layer::Plain(m);
    let conv2 = ConvOptions::<2>::default;
    let conv1 = ConvOptions::<1>::default;
    let mha = || nn::MultiheadAttention::new(8, 2, 0, f64).unwrap();
    match name {
        "conv2d_basic" => plain(Box::new(
            nn::Conv2d::new(3, 4, [3, 3], conv2(), 0, f64).unwrap(),
        )),
        "conv2d_general" => {
            let o = conv2()
                .stride([2, 1])
                .padding([1, 2])
                .dilation([2, 1])
                .groups(2);
            plain(Box::new(nn::Conv2d::new(4, 6, [3, 2], o, 0, f64).unwrap()))
        }
        "conv1d_basic" => {
            let o = conv1().stride([2]).padding([1]);
            plain(Box::new(nn::Conv1d::new(3, 4, [3], o, 0, f64).unwrap()))
        }
        "conv1d_depthwise" => {
            let o = conv1().dilation([3]).groups(4);
            let w = Tensor::zeros(&[4, 1, 2], f64);
            plain(Box::new(nn::Conv1d::from_tensors(w, None, o)))
        }
        "max_pool2d" => plain(Box::new(nn::MaxPool2d(
            Pool2d::new([3, 3]).stride([2, 2]).padding([1, 1]),
        ))),
        "max_pool2d_default_stride" => plain(Box::new(nn::MaxPool2d(Pool2d::new([2, 2])))),
        "avg_pool2d" => plain(Box::new(nn::AvgPool2d(
            Pool2d::new([3, 3]).stride([2, 2]).padding([1, 1]),
        ))),
        "avg_pool2d_exclude_pad" => plain(Box::new(nn::AvgPool2d(
            Pool2d::new([3, 3])
                .stride([2, 2])
                .padding([1, 1])
                .count_include_pad(false),
        ))),
        "adaptive_avg_pool2d" => plain(Box::new(nn::AdaptiveAvgPool2d([3, 2]))),
        "batch_norm2d_train" => plain(Box::new(nn::BatchNorm2d::new_2d(3, f64))),
        "batch_norm2d_eval" => {
            let bn = nn::BatchNorm2d::new_2d(3, f64);
            bn.set_training(false);
            plain(Box::new(bn))
        }
        "batch_norm1d_train" => plain(Box::new(nn::BatchNorm1d::new_1d(4, f64))),
        "batch_norm1d_seq_train" => plain(Box::new(nn::BatchNorm1d::new_1d(3, f64))),
        "layer_norm" => plain(Box::new(nn::LayerNorm::new(&[4, 5], f64))),
        "embedding" => plain(Box::new(nn::Embedding::new(10, 4, 0, f64))),
        "mha_self" => plain(Box::new(mha())),
        "mha_causal" => Layer::Causal(mha()),
        "mha_key_padding" => Layer::KeyPadding(mha()),
        "lstm_cell" => Layer::LstmCell(nn::LstmCell::new(5, 4, 0, f64)),
        "gru_cell" => Layer::GruCell(nn::GruCell::new(5, 4, 0, f64)),
        "lstm_2layer" => plain(Box::new(nn::Lstm::new(5, 4, 2, 0, f64).unwrap())),
        "gru_2layer" => plain(Box::new(nn::Gru::new(5, 4, 2, 0, f64).unwrap())),
        other => panic!("no layer for recorded case {other}"),
    }
}

#[test]
fn layers_match_pytorch() {
    let cases = cases();
    assert_eq!(cases.len(), 22, "cases recorded");
    for case in &cases {
        let name = case.name.as_str();
        let layer = layer(name);
        let module = layer.parameters();
        let params: HashMap<String, nn::Param> = module.named_params().into_iter().collect();
        assert_eq!(params.len(), case.params.len(), "{name}: parameter count");
        for (pname, value) in &case.params {
            let p = params
                .get(pname)
                .unwrap_or_else(|| panic!("{name}: no parameter {pname}"));
            p.set(value).unwrap();
        }
        let buffers: HashMap<String, nn::Buffer> = module.named_buffers().into_iter().collect();
        assert_eq!(buffers.len(), case.buffers.len(), "{name}: buffer count");
        for (bname, value) in &case.buffers {
            buffers[bname].set(value).unwrap();
        }
        let inputs: Vec<Tensor> = case.inputs.iter().map(|(_, t)| t.clone()).collect();
        let out = layer
            .apply(&inputs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_close(
            &format!("{name} output"),
            &out,
            case.output.as_ref().expect("an output"),
        );
        let w: Vec<f64> = (0..out.numel()).map(|i| ((i + 1) as f64).sin()).collect();
        (&out * &Tensor::from_vec(w, out.shape()))
            .sum()
            .backward()
            .unwrap();
        for (gname, want) in &case.grads {
            let got = match case.inputs.iter().find(|(n, _)| n == gname) {
                Some((_, t)) => t.grad(),
                None => params[gname].grad(),
            };
            let got = got.unwrap_or_else(|| panic!("{name}: no gradient for {gname}"));
            assert_close(&format!("{name} grad {gname}"), &got, want);
        }
        for (bname, want) in &case.after {
            assert_close(
                &format!("{name} {bname} after"),
                &buffers[bname].value(),
                want,
            );
        }
    }
}
