//! LSTM and GRU cells and their multi-layer, batch-first wrappers, with
//! PyTorch's gate orders and initialization (uniform in `±1/√hidden`).
//! Weights are in chainrule's `x W` layout: `weight_ih (in, gates·hidden)`,
//! `weight_hh (hidden, gates·hidden)`.

use super::conv::default_uniform;
use super::{Module, Param};
use crate::error::{Error, Result};
use crate::{DType, Tensor};

/// The four parameters of a recurrent cell with `gates` gates.
#[derive(crate::nn::Module)]
pub struct Gates {
    /// The input weight, `(in, gates·hidden)`.
    pub weight_ih: Param,
    /// The hidden-state weight, `(hidden, gates·hidden)`.
    pub weight_hh: Param,
    /// The input bias, `(gates·hidden,)`.
    pub bias_ih: Param,
    /// The hidden-state bias, `(gates·hidden,)`.
    pub bias_hh: Param,
}

impl Gates {
    fn new(input: usize, hidden: usize, gates: usize, seed: u64, dtype: DType) -> Gates {
        let g = gates * hidden;
        let draw = |shape: &[usize], k: u64| {
            Param::new(default_uniform(shape, hidden, seed.wrapping_add(k), dtype))
        };
        Gates {
            weight_ih: draw(&[input, g], 0),
            weight_hh: draw(&[hidden, g], 1),
            bias_ih: draw(&[g], 2),
            bias_hh: draw(&[g], 3),
        }
    }

    fn hidden(&self) -> usize {
        self.weight_hh.shape()[0]
    }

    /// `(x W_ih + b_ih, h W_hh + b_hh)`, after checking the shapes.
    fn affine(&self, op: &'static str, x: &Tensor, h: &Tensor) -> Result<(Tensor, Tensor)> {
        let (input, hidden) = (self.weight_ih.shape()[0], self.hidden());
        if x.ndim() != 2 || x.shape()[1] != input || h.shape() != [x.shape()[0], hidden] {
            return Err(Error::shapes_detail(
                op,
                x.shape(),
                h.shape(),
                format!("expects an input (batch, {input}) and a state (batch, {hidden})"),
            ));
        }
        Ok((
            x.try_matmul(&self.weight_ih.value())?
                .try_add(&self.bias_ih.value())?,
            h.try_matmul(&self.weight_hh.value())?
                .try_add(&self.bias_hh.value())?,
        ))
    }
}

/// One LSTM step: gates `i, f, g, o`; `c' = σ(f) c + σ(i) tanh(g)`,
/// `h' = σ(o) tanh(c')`.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let cell = nn::LstmCell::new(3, 5, 0, DType::F64);
/// let h = cell.forward(&Tensor::ones(&[2, 3], DType::F64)).unwrap(); // from a zero state
/// assert_eq!(h.shape(), &[2, 5]);
/// ```
#[derive(crate::nn::Module)]
pub struct LstmCell {
    /// The cell's parameters, `4·hidden` gate columns wide.
    #[module(flatten)]
    pub gates: Gates,
}

impl LstmCell {
    /// A cell reading `input` features into a state `hidden` wide, drawn
    /// from `seed`.
    pub fn new(input: usize, hidden: usize, seed: u64, dtype: DType) -> LstmCell {
        LstmCell {
            gates: Gates::new(input, hidden, 4, seed, dtype),
        }
    }

    /// `(h', c')` from `x (N, in)` and the state `(h, c)`, each `(N, hidden)`.
    pub fn step(&self, x: &Tensor, state: (&Tensor, &Tensor)) -> Result<(Tensor, Tensor)> {
        let (h, c) = state;
        if c.shape() != h.shape() {
            return Err(Error::shapes_detail(
                "LstmCell",
                h.shape(),
                c.shape(),
                "h and c differ",
            ));
        }
        let (a, b) = self.gates.affine("LstmCell", x, h)?;
        let z = a.try_add(&b)?;
        let hid = self.gates.hidden();
        let gate = |k: usize| z.try_narrow(1, k * hid, hid);
        let (i, f, g, o) = (
            gate(0)?.sigmoid(),
            gate(1)?.sigmoid(),
            gate(2)?.tanh(),
            gate(3)?.sigmoid(),
        );
        let c_next = f.try_mul(c)?.try_add(&i.try_mul(&g)?)?;
        let h_next = o.try_mul(&c_next.tanh())?;
        Ok((h_next, c_next))
    }
}

/// One GRU step: gates `r, z, n`; `n = tanh(x W_in + b_in + r ⊙ (h W_hn +
/// b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let cell = nn::GruCell::new(3, 5, 0, DType::F64);
/// let h = cell.forward(&Tensor::ones(&[2, 3], DType::F64)).unwrap(); // from a zero state
/// assert_eq!(h.shape(), &[2, 5]);
/// ```
#[derive(crate::nn::Module)]
pub struct GruCell {
    /// The cell's parameters, `3·hidden` gate columns wide.
    #[module(flatten)]
    pub gates: Gates,
}

impl GruCell {
    /// A cell reading `input` features into a state `hidden` wide, drawn
    /// from `seed`.
    pub fn new(input: usize, hidden: usize, seed: u64, dtype: DType) -> GruCell {
        GruCell {
            gates: Gates::new(input, hidden, 3, seed, dtype),
        }
    }

    /// `h'` from `x (N, in)` and `h (N, hidden)`.
    pub fn step(&self, x: &Tensor, h: &Tensor) -> Result<Tensor> {
        let (a, b) = self.gates.affine("GruCell", x, h)?;
        let hid = self.gates.hidden();
        let part = |t: &Tensor, k: usize| t.try_narrow(1, k * hid, hid);
        let r = part(&a, 0)?.try_add(&part(&b, 0)?)?.sigmoid();
        let z = part(&a, 1)?.try_add(&part(&b, 1)?)?.sigmoid();
        let n = part(&a, 2)?.try_add(&r.try_mul(&part(&b, 2)?)?)?.tanh();
        // (1 − z) n + z h = n + z (h − n)
        n.try_add(&z.try_mul(&h.try_sub(&n)?)?)
    }
}

impl Gates {
    /// Zeros `(N, hidden)` for a batch `x` of rank 2 (a step) or 3 (a sequence).
    fn zero_state(&self, op: &'static str, x: &Tensor) -> Result<Tensor> {
        if !(2..=3).contains(&x.ndim()) {
            return Err(Error::invalid(
                op,
                format!(
                    "expects (batch, features) or (batch, time, features), got {:?}",
                    x.shape()
                ),
            ));
        }
        Ok(Tensor::zeros(&[x.shape()[0], self.hidden()], x.dtype()))
    }
}

impl Module for LstmCell {
    /// `h'` from a zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let zero = self.gates.zero_state("LstmCell", x)?;
        Ok(self.step(x, (&zero, &zero))?.0)
    }
}

impl Module for GruCell {
    /// `h'` from a zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.step(x, &self.gates.zero_state("GruCell", x)?)
    }
}

/// The time steps of a batch-first sequence `(N, T, F)`.
fn time_steps(op: &'static str, x: &Tensor) -> Result<Vec<Tensor>> {
    if x.ndim() != 3 {
        return Err(Error::invalid(
            op,
            format!("expects (batch, time, features), got {:?}", x.shape()),
        ));
    }
    (0..x.shape()[1])
        .map(|t| x.try_narrow(1, t, 1)?.try_squeeze(1))
        .collect()
}

/// A stack of LSTM layers over batch-first sequences `(N, T, in)`: layer
/// `l + 1` reads layer `l`'s outputs. Parameters are named
/// `"<layer>.weight_ih"` and so on.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let lstm = nn::Lstm::new(3, 5, 2, 0, DType::F64).unwrap(); // 3 features in, 5 hidden, 2 layers
/// let y = lstm.forward(&Tensor::ones(&[2, 4, 3], DType::F64)).unwrap(); // (N, T, in)
/// assert_eq!(y.shape(), &[2, 4, 5]);
/// ```
#[derive(crate::nn::Module)]
pub struct Lstm {
    /// The layers, first to last.
    #[module(flatten)]
    pub layers: Vec<LstmCell>,
}

impl Lstm {
    /// `layers ≥ 1` layers.
    pub fn new(
        input: usize,
        hidden: usize,
        layers: usize,
        seed: u64,
        dtype: DType,
    ) -> Result<Lstm> {
        Ok(Lstm {
            layers: stacked("Lstm", input, hidden, layers, seed, |i, h, s| {
                LstmCell::new(i, h, s, dtype)
            })?,
        })
    }

    /// The last layer's outputs `(N, T, hidden)` and each layer's final
    /// `(h, c)`, from `state` (zeros when `None`).
    pub fn forward_with_state(
        &self,
        x: &Tensor,
        state: Option<&[(Tensor, Tensor)]>,
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>)> {
        run_stack("Lstm", &self.layers, x, state)
    }
}

/// A stack of GRU layers over batch-first sequences `(N, T, in)`.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let gru = nn::Gru::new(3, 5, 2, 0, DType::F64).unwrap(); // 3 features in, 5 hidden, 2 layers
/// let y = gru.forward(&Tensor::ones(&[2, 4, 3], DType::F64)).unwrap(); // (N, T, in)
/// assert_eq!(y.shape(), &[2, 4, 5]);
/// ```
#[derive(crate::nn::Module)]
pub struct Gru {
    /// The layers, first to last.
    #[module(flatten)]
    pub layers: Vec<GruCell>,
}

impl Gru {
    /// `layers ≥ 1` layers.
    pub fn new(input: usize, hidden: usize, layers: usize, seed: u64, dtype: DType) -> Result<Gru> {
        Ok(Gru {
            layers: stacked("Gru", input, hidden, layers, seed, |i, h, s| {
                GruCell::new(i, h, s, dtype)
            })?,
        })
    }

    /// The last layer's outputs `(N, T, hidden)` and each layer's final
    /// `h`, from `state` (zeros when `None`).
    pub fn forward_with_state(
        &self,
        x: &Tensor,
        state: Option<&[Tensor]>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        run_stack("Gru", &self.layers, x, state)
    }
}

/// What a stack needs of its cells: a state, one step, and the state's
/// output (what the next layer reads).
trait Cell {
    type State: Clone;
    fn gates(&self) -> &Gates;
    fn zero(&self, op: &'static str, x: &Tensor) -> Result<Self::State>;
    fn advance(&self, x: &Tensor, state: &Self::State) -> Result<Self::State>;
    fn output(state: &Self::State) -> Tensor;
}

impl Cell for LstmCell {
    type State = (Tensor, Tensor);
    fn gates(&self) -> &Gates {
        &self.gates
    }
    fn zero(&self, op: &'static str, x: &Tensor) -> Result<Self::State> {
        let zero = self.gates.zero_state(op, x)?;
        Ok((zero.clone(), zero))
    }
    fn advance(&self, x: &Tensor, (h, c): &Self::State) -> Result<Self::State> {
        self.step(x, (h, c))
    }
    fn output(state: &Self::State) -> Tensor {
        state.0.clone()
    }
}

impl Cell for GruCell {
    type State = Tensor;
    fn gates(&self) -> &Gates {
        &self.gates
    }
    fn zero(&self, op: &'static str, x: &Tensor) -> Result<Tensor> {
        self.gates.zero_state(op, x)
    }
    fn advance(&self, x: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.step(x, h)
    }
    fn output(h: &Tensor) -> Tensor {
        h.clone()
    }
}

/// `layers` cells, the first reading `input` features, the rest `hidden`,
/// each from its own seed.
fn stacked<C>(
    op: &'static str,
    input: usize,
    hidden: usize,
    layers: usize,
    seed: u64,
    cell: impl Fn(usize, usize, u64) -> C,
) -> Result<Vec<C>> {
    if layers == 0 {
        return Err(Error::invalid(op, "needs at least one layer"));
    }
    Ok((0..layers)
        .map(|l| {
            let width = if l == 0 { input } else { hidden };
            cell(width, hidden, seed.wrapping_add(16 * l as u64))
        })
        .collect())
}

/// A stack over `x (N, T, F)`: layer `l + 1` reads layer `l`'s outputs.
/// The last layer's outputs `(N, T, hidden)` and each layer's final state.
fn run_stack<C: Cell>(
    op: &'static str,
    cells: &[C],
    x: &Tensor,
    state: Option<&[C::State]>,
) -> Result<(Tensor, Vec<C::State>)> {
    let mut inputs = time_steps(op, x)?;
    let mut finals = Vec::with_capacity(cells.len());
    for (l, cell) in cells.iter().enumerate() {
        let mut s = match state {
            Some(given) => given.get(l).cloned().ok_or_else(|| {
                Error::invalid(
                    op,
                    format!("{} states for {} layers", given.len(), cells.len()),
                )
            })?,
            None => cell.zero(op, x)?,
        };
        for input in inputs.iter_mut() {
            s = cell.advance(input, &s)?;
            *input = C::output(&s);
        }
        finals.push(s);
    }
    let hidden = cells[0].gates().hidden();
    Ok((stack_time(&inputs, x, hidden)?, finals))
}

/// Per-step outputs back into `(N, T, hidden)`.
fn stack_time(steps: &[Tensor], x: &Tensor, hidden: usize) -> Result<Tensor> {
    if steps.is_empty() {
        return Ok(Tensor::zeros(&[x.shape()[0], 0, hidden], x.dtype()));
    }
    let refs: Vec<&Tensor> = steps.iter().collect();
    Tensor::try_stack(&refs, 1)
}

impl Module for Lstm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_state(x, None)?.0)
    }
}

impl Module for Gru {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_state(x, None)?.0)
    }
}
