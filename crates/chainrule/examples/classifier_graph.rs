//! A softmax classifier on the 8×8 digits with integer labels: trained by
//! gradient descent, then evaluated by one declared graph whose inputs are
//! the weights, the images *and the labels* (`n` of each, a named size),
//! so the same graph scores the training split and the held-out split
//! (labels are `i64` tensors, fed like any input; accuracy is
//! `argmax(logits) == labels`).
//!
//!     cargo run --release --example classifier_graph

use chainrule::data::{self, Targets};
use chainrule::graph::{Dim, Placeholder, SymbolicGraph};
use chainrule::{func, nn, DType, Tensor};

fn labels(targets: &Targets) -> &Tensor {
    match targets {
        Targets::Labels(l) => l,
        Targets::Values(_) | Targets::Sequences(_) => unreachable!("the digits are labelled"),
    }
}

/// Loss and accuracy of weights `w` (64 × 10) on images `x` and labels.
fn scores(w: &Tensor, x: &Tensor, labels: &Tensor) -> chainrule::Result<Vec<Tensor>> {
    let logits = x.matmul(w);
    Ok(vec![
        nn::cross_entropy_loss(&logits, labels)?,
        nn::accuracy(&logits, labels)?,
    ])
}

/// The trained weights, the graph that scores them, and the two splits'
/// `(images, labels)`.
pub fn train_and_trace(steps: usize) -> (Tensor, SymbolicGraph, [(Tensor, Tensor); 2]) {
    let digits = data::digits(DType::F64).unwrap();
    let (train, test) = digits.split(0.2, 0);
    let (x, y) = (train.x.clone(), labels(&train.y).clone());
    let mut w = Tensor::zeros(&[64, 10], DType::F64);
    for _ in 0..steps {
        let loss = |w: &Tensor| nn::cross_entropy_loss(&x.matmul(w), &y).unwrap();
        let grad = func::grad(loss, &w).unwrap();
        w = &w - &(grad * 2.0);
    }
    let n = || Dim::sym("n");
    let inputs = [
        Placeholder::new("w", &[64.into(), 10.into()], DType::F64),
        Placeholder::new("x", &[n(), 64.into()], DType::F64),
        Placeholder::new("labels", &[n()], DType::I64),
    ];
    let graph = SymbolicGraph::declare(&inputs, |t| scores(&t[0], &t[1], &t[2])).unwrap();
    let splits = [(x, y), (test.x.clone(), labels(&test.y).clone())];
    (w, graph, splits)
}

/// Each split's `(loss, accuracy)` by the graph, fed that split's labels.
pub fn evaluate(w: &Tensor, graph: &SymbolicGraph, splits: &[(Tensor, Tensor)]) -> Vec<(f64, f64)> {
    splits
        .iter()
        .map(|(x, y)| {
            let out = graph.run(&[("w", w), ("x", x), ("labels", y)]).unwrap();
            (out[0].item(), out[1].item())
        })
        .collect()
}

fn main() {
    let (w, graph, splits) = train_and_trace(200);
    for ((loss, accuracy), name) in evaluate(&w, &graph, &splits).iter().zip(["train", "test"]) {
        println!("{name}: loss {loss:.4}, accuracy {:.1}%", accuracy * 100.0);
    }
}
