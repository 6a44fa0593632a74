//! A two-or-more-layer LSTM language model over a bit-coded text (ADBench
//! "LSTM"): the mean cross-entropy of predicting each next character, and its
//! gradient with respect to the main and extra parameters.

use crate::Reader;
use chainrule::{Result, Tensor};
use std::path::Path;

pub struct LstmInput {
    pub layers: usize,
    pub chars: usize,
    pub bits: usize,
    /// (2L, 4B): per layer a row of weights then a row of biases, each four
    /// blocks of B (forget, input, output, change).
    pub main: Tensor,
    /// (3, B): input weight, output weight, output bias.
    pub extra: Tensor,
    /// (2L, B): per layer the hidden state then the cell state.
    pub state: Tensor,
    /// (C, B): the text, one 0/1 code per character.
    pub text: Tensor,
}

pub fn read(path: &Path) -> Result<LstmInput> {
    let mut r = Reader::open(path)?;
    let layers = r.count("the number of layers L")?;
    let chars = r.count("the number of characters C")?;
    let bits = r.count("the bits per character B")?;
    let main = r
        .take(2 * layers * 4 * bits, "the 2L×4B main parameters")?
        .to_vec();
    let extra = r.take(3 * bits, "the 3×B extra parameters")?.to_vec();
    let state = r
        .take(2 * layers * bits, "the 2L×B initial state")?
        .to_vec();
    let text = r.take(chars * bits, "the C×B text")?.to_vec();
    Ok(LstmInput {
        layers,
        chars,
        bits,
        main: Tensor::from_vec(main, &[2 * layers, 4 * bits]),
        extra: Tensor::from_vec(extra, &[3, bits]),
        state: Tensor::from_vec(state, &[2 * layers, bits]),
        text: Tensor::from_vec(text, &[chars, bits]),
    })
}

/// The loss as a function of the main and extra parameters; each step works
/// on whole B-vectors, and all four gates of a layer come from one
/// multiply-add over the 4B weights.
pub fn objective(input: &LstmInput, main: &Tensor, extra: &Tensor) -> Tensor {
    let (l, b) = (input.layers, input.bits);
    let block = |row: &Tensor, i: usize| row.narrow(0, i * b, b);
    let weights: Vec<Tensor> = (0..l)
        .map(|j| main.narrow(0, 2 * j, 1).reshape(&[4 * b]))
        .collect();
    let biases: Vec<Tensor> = (0..l)
        .map(|j| main.narrow(0, 2 * j + 1, 1).reshape(&[4 * b]))
        .collect();
    let row = |t: &Tensor, i: usize| t.narrow(0, i, 1).reshape(&[b]);
    let (w_in, w_out, b_out) = (row(extra, 0), row(extra, 1), row(extra, 2));
    let mut hidden: Vec<Tensor> = (0..l).map(|j| row(&input.state, 2 * j)).collect();
    let mut cell: Vec<Tensor> = (0..l).map(|j| row(&input.state, 2 * j + 1)).collect();
    let mut total = Tensor::scalar(0.0f64);
    for t in 0..input.chars - 1 {
        let mut h = row(&input.text, t) * &w_in;
        for j in 0..l {
            // forget and output gates read the input h; input gate and the
            // change read the layer's own previous hidden state
            let x = Tensor::concat(&[&h, &hidden[j], &h, &hidden[j]], 0);
            let pre = x * &weights[j] + &biases[j];
            let (f, i, o) = (
                block(&pre, 0).sigmoid(),
                block(&pre, 1).sigmoid(),
                block(&pre, 2).sigmoid(),
            );
            let g = block(&pre, 3).tanh();
            cell[j] = &cell[j] * &f + i * g;
            hidden[j] = o * cell[j].tanh();
            h = hidden[j].clone();
        }
        let y = &h * &w_out + &b_out;
        let lse = (y.exp().sum() + 2.0).log();
        total += (row(&input.text, t + 1) * (y - lse)).sum();
    }
    total * (-1.0 / ((input.chars - 1) * b) as f64)
}

/// The loss and its gradient flattened as ADBench orders it (main, then extra).
pub fn objective_and_gradient(input: &LstmInput) -> Result<(f64, Vec<f64>)> {
    let (value, grads) = chainrule::func::value_and_grad_n(
        |p: &[Tensor]| objective(input, &p[0], &p[1]),
        &[input.main.clone(), input.extra.clone()],
    )?;
    Ok((
        value.item(),
        grads.iter().flat_map(|g| g.to_vec::<f64>()).collect(),
    ))
}
