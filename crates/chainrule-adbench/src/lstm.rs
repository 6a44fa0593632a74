//! A two-or-more-layer LSTM language model over a bit-coded text (ADBench
//! "LSTM"): the mean cross-entropy of predicting each next character, and its
//! gradient with respect to the main and extra parameters.

use crate::Reader;
use chainrule::{Result, Tensor};
use std::path::Path;

/// One LSTM instance.
pub struct LstmInput {
    /// L, the number of layers.
    pub layers: usize,
    /// C, the number of characters in the text.
    pub chars: usize,
    /// B, the bits per character.
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

/// Reads an LSTM file: L, C and B, then the main parameters, the extra
/// parameters, the initial state and the text.
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

/// The parameters split into the vectors a step reads.
struct Params {
    /// Per layer: the 4B weights and 4B biases of its four gates.
    weights: Vec<Tensor>,
    biases: Vec<Tensor>,
    w_in: Tensor,
    w_out: Tensor,
    b_out: Tensor,
}

impl Params {
    fn split(layers: usize, bits: usize, main: &Tensor, extra: &Tensor) -> Params {
        let row = |t: &Tensor, i: usize, len: usize| t.narrow(0, i, 1).reshape(&[len]);
        Params {
            weights: (0..layers).map(|j| row(main, 2 * j, 4 * bits)).collect(),
            biases: (0..layers)
                .map(|j| row(main, 2 * j + 1, 4 * bits))
                .collect(),
            w_in: row(extra, 0, bits),
            w_out: row(extra, 1, bits),
            b_out: row(extra, 2, bits),
        }
    }

    /// One character: `carry` holds each layer's hidden and cell state
    /// (2L B-vectors) and the log-likelihood so far; the step reads `now`,
    /// predicts the next character and adds the log-likelihood of `next`.
    /// Each step works on whole B-vectors, and all four gates of a layer
    /// come from one multiply-add over the 4B weights.
    fn step(&self, carry: &[Tensor], now: &Tensor, next: &Tensor) -> Vec<Tensor> {
        let layers = self.weights.len();
        let b = now.numel();
        let block = |row: &Tensor, i: usize| row.narrow(0, i * b, b);
        let mut out = Vec::with_capacity(carry.len());
        let mut h = now * &self.w_in;
        for j in 0..layers {
            let (hidden, cell) = (&carry[2 * j], &carry[2 * j + 1]);
            // forget and output gates read the input h; input gate and the
            // change read the layer's own previous hidden state
            let x = Tensor::concat(&[&h, hidden, &h, hidden], 0);
            let pre = x * &self.weights[j] + &self.biases[j];
            let (f, i, o) = (
                block(&pre, 0).sigmoid(),
                block(&pre, 1).sigmoid(),
                block(&pre, 2).sigmoid(),
            );
            let g = block(&pre, 3).tanh();
            let cell = cell * &f + i * g;
            h = o * cell.tanh();
            out.push(h.clone());
            out.push(cell);
        }
        let y = &h * &self.w_out + &self.b_out;
        let lse = (y.exp().sum() + 2.0).log();
        out.push(&carry[2 * layers] + &(next * &(y - lse)).sum());
        out
    }
}

/// The initial carry of [`Params::step`]: the state's rows, and 0.
fn initial_carry(input: &LstmInput) -> Vec<Tensor> {
    let b = input.bits;
    let mut carry: Vec<Tensor> = (0..2 * input.layers)
        .map(|r| input.state.narrow(0, r, 1).reshape(&[b]))
        .collect();
    carry.push(Tensor::scalar(0.0f64));
    carry
}

/// The mean cross-entropy from the summed log-likelihood.
fn loss(input: &LstmInput, log_likelihood: &Tensor) -> Tensor {
    log_likelihood * (-1.0 / ((input.chars - 1) * input.bits) as f64)
}

/// The loss as a function of the main and extra parameters, one eager step
/// per character.
pub fn objective(input: &LstmInput, main: &Tensor, extra: &Tensor) -> Tensor {
    let params = Params::split(input.layers, input.bits, main, extra);
    let row = |t: usize| input.text.narrow(0, t, 1).reshape(&[input.bits]);
    let mut carry = initial_carry(input);
    for t in 0..input.chars - 1 {
        carry = params.step(&carry, &row(t), &row(t + 1));
    }
    loss(input, &carry[2 * input.layers])
}

/// [`objective`] with the characters as one `control::scan`: the step is
/// traced once and the loop is one primitive. Eager, that only saves the
/// tape; under `func::jit` the loop and the loop of its VJP compile to
/// native loops (`compile::recurrence`), which is how the GradBench tool
/// runs it.
pub fn objective_scan(input: &LstmInput, main: &Tensor, extra: &Tensor) -> Result<Tensor> {
    let params = Params::split(input.layers, input.bits, main, extra);
    let n = input.chars - 1;
    let (now, next) = (input.text.narrow(0, 0, n), input.text.narrow(0, 1, n));
    let (carry, _) = chainrule::control::scan(
        |c, x| Ok((params.step(c, &x[0], &x[1]), vec![])),
        &initial_carry(input),
        &[now, next],
    )?;
    Ok(loss(input, &carry[2 * input.layers]))
}

/// The objective's value and its gradient, flattened: the main parameters,
/// then the extra ones, each row by row.
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
