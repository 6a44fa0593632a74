//! Control flow as primitives: [`scan`], [`fori_loop`] and [`while_loop`]
//! (as JAX's `lax.scan`, `lax.fori_loop`, `lax.while_loop`). The body is
//! traced once into a graph of its own, and the loop is one primitive of the
//! caller's computation, whatever the number of steps: a compiled graph runs
//! it as a loop, not as K copies of the body.
//!
//! Every mode sees the loop as one op with rules of its own, written with
//! the library's ops (so that they differentiate again):
//! - **forward mode** runs one loop over the carry and its tangent (flat
//!   memory in the number of steps, as the note's forward mode);
//! - **reverse mode** runs the loop again keeping every step's carry (O(K)
//!   memory, the note's reverse mode), then a loop backwards through the
//!   steps with the body's VJP; `while_loop` has no reverse mode (its number
//!   of steps is not known in advance, as in JAX), [`while_loop_bounded`] has;
//! - **`vmap`** runs one loop over every example (its body mapped).
//!
//! Values the body reads from outside (weights, other inputs) are inputs of
//! the loop, so their derivatives flow as the carries' do.
//!
//! The loop is a row of the op table (`Prim`) like any primitive, but its
//! rules live here, beside the modes: they are made by running the modes
//! on its body (tracing the body's VJP and JVP), as a custom op's rules are
//! the user's code.
//!
//! ```
//! use chainrule::control::fori_loop;
//! use chainrule::{func, Tensor};
//! // u ← sin(u)·½ + u·½, 100 times: the derivative through the loop.
//! let f = |x: &Tensor| {
//!     let u = fori_loop(0, 100, |_i, u| Ok(vec![u[0].sin() * 0.5 + &u[0] * 0.5]), &[x.clone()]);
//!     u.unwrap().remove(0)
//! };
//! let x = Tensor::scalar(0.3f64);
//! let g = func::grad(f, &x).unwrap();
//! let (mut u, mut d) = (0.3f64, 1.0f64);
//! for _ in 0..100 {
//!     d *= u.cos() * 0.5 + 0.5;
//!     u = u.sin() * 0.5 + u * 0.5;
//! }
//! assert!((g.item() - d).abs() < 1e-12);
//! ```

use crate::compile::recurrence::Recurrence;
use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::ops::{bind, Prim};
use crate::tensor::Tensor;
use crate::DType;
use smallvec::SmallVec;
use std::sync::{Arc, OnceLock};

/// Steps × body nodes from which a loop is compiled to native code on
/// first use (compiling takes about a millisecond; interpreting a body node
/// a few hundred nanoseconds).
const NATIVE_WORK: usize = 4096;

thread_local! {
    static INTERPRET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every loop's body interpreted step by step, none compiled
/// to native code: the reference the native loops are tested against.
///
/// ```
/// use chainrule::control::{fori_loop, with_interpreted_loops};
/// use chainrule::Tensor;
/// let double = || fori_loop(0, 10, |_i, c| Ok(vec![&c[0] * 2.0]), &[Tensor::scalar(1.0f64)]).unwrap();
/// assert_eq!(double()[0].item(), 1024.0);
/// assert_eq!(with_interpreted_loops(double)[0].item(), 1024.0);
/// ```
pub fn with_interpreted_loops<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INTERPRET.with(|i| i.set(self.0));
        }
    }
    let _restore = Restore(INTERPRET.with(|i| i.replace(true)));
    f()
}

/// How many steps a loop takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Steps {
    /// `length` steps, from the last to the first when `reverse`.
    Counted { length: usize, reverse: bool },
    /// While the body's last output (a 0-d value of the carry) is nonzero.
    While,
}

/// A loop primitive. Its inputs are the carry (flat, `n` elements), the
/// per-step inputs (`length × m`, when `m > 0`) and the captures; its output
/// is the final carry followed by every step's `p` outputs, flat.
///
/// The body graph takes `[i (0-d), carry (n), x (m, when m > 0), captures…]`
/// and gives `[carry' (n), y (p, when p > 0), go on (0-d, while loops)]`;
/// `i` is the step's index, in the carry's dtype.
pub(crate) struct Loop {
    pub steps: Steps,
    pub body: Graph,
    pub n: usize,
    pub m: usize,
    pub p: usize,
    pub dtype: DType,
    /// Which body nodes the `go on` output needs (computed first).
    condition_nodes: Vec<bool>,
    /// The loops its rules run, traced once.
    stacking: OnceLock<Arc<Loop>>,
    backward: OnceLock<Arc<Loop>>,
    tangent: OnceLock<Arc<Loop>>,
    /// The loop as native code, compiled on first use (`None`: its body
    /// runs step by step; see [`crate::compile::recurrence`]).
    native: OnceLock<Option<Recurrence>>,
}

/// A loop as a primitive (equal to another when it is the same loop).
#[derive(Clone)]
pub(crate) struct LoopPrim(pub Arc<Loop>);

impl PartialEq for LoopPrim {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LoopPrim {}

impl std::hash::Hash for LoopPrim {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as usize).hash(state)
    }
}

impl std::fmt::Debug for LoopPrim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.describe())
    }
}

impl Loop {
    fn new(steps: Steps, body: Graph, n: usize, m: usize, p: usize, dtype: DType) -> Loop {
        // Derived bodies carry dead ends (the objective a VJP was taken of)
        // and products by ones: gone before the body runs K times.
        let body = body.optimize();
        let mut condition_nodes = vec![false; body.nodes.len()];
        if steps == Steps::While {
            let last = *body
                .outputs
                .last()
                .expect("a while body ends with its condition");
            condition_nodes[last.0 as usize] = true;
            for i in (0..body.nodes.len()).rev() {
                if condition_nodes[i] {
                    for j in &body.nodes[i].inputs {
                        condition_nodes[j.0 as usize] = true;
                    }
                }
            }
        }
        Loop {
            steps,
            body,
            n,
            m,
            p,
            dtype,
            condition_nodes,
            stacking: OnceLock::new(),
            backward: OnceLock::new(),
            tangent: OnceLock::new(),
            native: OnceLock::new(),
        }
    }

    /// Whether `other` is this loop's stacking loop (the loop again, also
    /// outputting each step's carry: see [`Loop::primal_of_stacked`]).
    pub(crate) fn is_stacked_by(&self, other: &Arc<Loop>) -> bool {
        self.stacking.get().is_some_and(|s| Arc::ptr_eq(s, other))
    }

    /// Where this loop's output lies in its stacking loop's: the final
    /// carry, then per step its outputs (before the step's carry). Returns
    /// (the carry's length, the steps, the outputs' length, a step's length).
    pub(crate) fn stacked_layout(&self) -> (usize, usize, usize, usize) {
        (self.n, self.length().unwrap_or(0), self.p, self.p + self.n)
    }

    /// Which body nodes the condition of a while loop needs.
    pub(crate) fn condition_nodes(&self) -> &[bool] {
        &self.condition_nodes
    }

    /// The native code of the loop, compiled the first time it is asked
    /// for (`None` when its body is not one the compiler takes).
    pub(crate) fn native(&self) -> Option<&Recurrence> {
        self.native
            .get_or_init(|| Recurrence::new(self).ok())
            .as_ref()
    }

    /// Whether running the loop natively repays compiling it: a while loop,
    /// or enough steps of body.
    fn worth_compiling(&self) -> bool {
        match self.length() {
            None => true,
            Some(k) => k.saturating_mul(self.body.len()) >= NATIVE_WORK,
        }
    }

    pub fn name(&self) -> &'static str {
        match self.steps {
            Steps::Counted { .. } => "scan",
            Steps::While => "while_loop",
        }
    }

    pub fn describe(&self) -> String {
        match self.steps {
            Steps::Counted { length, reverse } => format!(
                "scan {length} steps{} ({} body nodes)",
                if reverse { " reversed" } else { "" },
                self.body.len()
            ),
            Steps::While => format!("while_loop ({} body nodes)", self.body.len()),
        }
    }

    /// The number of steps of a counted loop.
    pub fn length(&self) -> Option<usize> {
        match self.steps {
            Steps::Counted { length, .. } => Some(length),
            Steps::While => None,
        }
    }

    /// Where the captures start among the loop's inputs (and, plus one for
    /// `i`, among the body's).
    pub fn first_capture(&self) -> usize {
        1 + (self.m > 0) as usize
    }

    /// The captures' shapes, as the body takes them.
    fn capture_shapes(&self) -> Vec<Vec<usize>> {
        let start = 1 + self.first_capture();
        self.body.inputs[start..]
            .iter()
            .map(|&id| self.body.node(id).shape.clone())
            .collect()
    }

    /// The shape function: the inputs checked against the body's.
    pub fn shape(&self, args: &[(&[usize], DType)]) -> Result<(Vec<usize>, DType)> {
        let mut expected = vec![vec![self.n]];
        if self.m > 0 {
            expected.push(vec![self.length().unwrap_or(0), self.m]);
        }
        expected.extend(self.capture_shapes());
        let fits = args.len() == expected.len()
            && args
                .iter()
                .zip(&expected)
                .all(|((s, d), e)| *s == e.as_slice() && *d == self.dtype);
        if !fits {
            let got: Vec<&[usize]> = args.iter().map(|(s, _)| *s).collect();
            return Err(Error::invalid(
                self.name(),
                format!(
                    "the loop takes {:?} {expected:?}, was given {got:?}",
                    self.dtype
                ),
            ));
        }
        let outputs = self.length().unwrap_or(0) * self.p;
        Ok((vec![self.n + outputs], self.dtype))
    }

    /// The kernel: the body run step by step on values (out of sight of
    /// every level and trace: only the loop is an op of the caller).
    pub fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        // The native code reads its inputs as the shapes it was compiled for.
        let shapes: SmallVec<[(&[usize], DType); 4]> =
            inputs.iter().map(|t| (t.shape(), t.dtype())).collect();
        self.shape(&shapes)?;
        if INTERPRET.with(|i| !i.get()) && (self.native.get().is_some() || self.worth_compiling()) {
            if let Some(code) = self.native() {
                return code.run(self, inputs);
            }
        }
        crate::interp::isolated(|| {
            let _off = crate::autograd::GradModeGuard::new(false);
            self.run(inputs)
        })
    }

    fn run(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let plain: Vec<Tensor> = inputs.iter().map(|t| t.detach_untraced()).collect();
        let mut carry = plain[0].clone();
        let captures = &plain[self.first_capture()..];
        let step_input = |i: usize, carry: &Tensor| -> Vec<Tensor> {
            let mut args = vec![Tensor::full(&[], i as f64, self.dtype), carry.clone()];
            if self.m > 0 {
                args.push(plain[1].narrow(0, i, 1).reshape(&[self.m]));
            }
            args.extend(captures.iter().cloned());
            args
        };
        match self.steps {
            Steps::While => {
                for i in 0.. {
                    let mut values = self.body.bind_inputs(&step_input(i, &carry));
                    self.body
                        .eval_values(&mut values, Some(&self.condition_nodes))?;
                    let last = self.body.outputs.last().expect("the condition");
                    let go_on = values[last.0 as usize].as_ref().expect("evaluated");
                    if go_on.item() == 0.0 {
                        break;
                    }
                    self.body.eval_values(&mut values, None)?;
                    carry = values[self.body.outputs[0].0 as usize]
                        .take()
                        .expect("evaluated");
                }
                Ok(carry)
            }
            Steps::Counted { length, reverse } => {
                let mut ys: Vec<Tensor> = Vec::with_capacity(length * (self.p > 0) as usize);
                for k in 0..length {
                    let i = if reverse { length - 1 - k } else { k };
                    let mut values = self.body.bind_inputs(&step_input(i, &carry));
                    self.body.eval_values(&mut values, None)?;
                    let out = |o: usize| values[self.body.outputs[o].0 as usize].clone();
                    if self.p > 0 {
                        ys.push(out(1).expect("evaluated"));
                    }
                    carry = out(0).expect("evaluated");
                }
                if reverse {
                    ys.reverse();
                }
                let mut parts = vec![carry];
                parts.extend(ys);
                let refs: Vec<&Tensor> = parts.iter().collect();
                crate::ops::movement::concat_forward(&refs, 0)
            }
        }
    }

    /// The loop that also outputs each step's carry before the step (after
    /// its outputs): what the reverse pass reads.
    fn stacking(self: &Arc<Self>) -> Result<Arc<Loop>> {
        cached(&self.stacking, || {
            let body = self.derived_body(&[self.n], |this, args| {
                let outs = this.body.eval_with(args)?;
                let mut y: Vec<&Tensor> = outs[1..1 + (this.p > 0) as usize].iter().collect();
                y.push(&args[1]);
                Ok(vec![outs[0].clone(), Tensor::try_concat(&y, 0)?])
            })?;
            Ok(Loop::new(
                self.steps,
                body,
                self.n,
                self.m,
                self.p + self.n,
                self.dtype,
            ))
        })
    }

    /// Traces a body derived from this loop's: `f` gets `[i, carry, x?,
    /// captures…]` with the carry of shape `carry` (and `x` of this loop's
    /// per-step shape) and returns the derived body's outputs.
    fn derived_body(
        self: &Arc<Self>,
        carry: &[usize],
        f: impl FnOnce(&Arc<Self>, &[Tensor]) -> Result<Vec<Tensor>>,
    ) -> Result<Graph> {
        let x = [self.m];
        self.derived_body_with(carry, (self.m > 0).then_some(&x[..]), 1, f)
    }

    /// [`Loop::derived_body`] with the per-step input's shape `x`, and the
    /// captures `copies` times over (a tangent loop takes their tangents too).
    fn derived_body_with(
        self: &Arc<Self>,
        carry: &[usize],
        x: Option<&[usize]>,
        copies: usize,
        f: impl FnOnce(&Arc<Self>, &[Tensor]) -> Result<Vec<Tensor>>,
    ) -> Result<Graph> {
        let zeros = |s: &[usize]| Tensor::zeros(s, self.dtype);
        let mut examples = vec![
            ("i".to_string(), zeros(&[])),
            ("carry".into(), zeros(carry)),
        ];
        if let Some(x) = x {
            examples.push(("x".into(), zeros(x)));
        }
        let shapes = self.capture_shapes();
        for (k, s) in shapes
            .iter()
            .cycle()
            .take(copies * shapes.len())
            .enumerate()
        {
            examples.push((format!("capture{k}"), zeros(s)));
        }
        let feeds: Vec<(&str, &Tensor)> = examples.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let (graph, lifted) = Graph::trace_lifting(&feeds, |args| f(self, args))?;
        debug_assert!(lifted.is_empty(), "a derived body reads only its inputs");
        Ok(graph)
    }
}

/// The value of `cell`, made by `make` the first time.
fn cached(cell: &OnceLock<Arc<Loop>>, make: impl FnOnce() -> Result<Loop>) -> Result<Arc<Loop>> {
    if let Some(l) = cell.get() {
        return Ok(l.clone());
    }
    let made = Arc::new(make()?);
    Ok(cell.get_or_init(|| made).clone())
}

/// The sizes of the captures, flat.
fn capture_sizes(l: &Loop) -> Vec<usize> {
    l.capture_shapes()
        .iter()
        .map(|s| s.iter().product())
        .collect()
}

impl Loop {
    /// The loop backwards through the steps: its carry is the carry's
    /// adjoint followed by the captures' adjoints (flat), its per-step input
    /// the step's carry, `x` and outputs' adjoint; it outputs each step's
    /// `x` adjoint.
    fn backward(self: &Arc<Self>) -> Result<Arc<Loop>> {
        cached(&self.backward, || {
            let Steps::Counted { length, reverse } = self.steps else {
                return Err(no_reverse());
            };
            let sizes = capture_sizes(self);
            let total: usize = sizes.iter().sum();
            let (n, m, p) = (self.n, self.m, self.p);
            let body =
                self.derived_body_with(&[n + total], Some(&[n + m + p]), 1, |this, args| {
                    let (i, acc, step) = (&args[0], &args[1], &args[2]);
                    let g_carry = acc.narrow(0, 0, n);
                    // Not detached: a stop-gradient in the body would hide the
                    // carry from the modes that differentiate this loop again.
                    let mut leaves = vec![step.narrow(0, 0, n)];
                    if m > 0 {
                        leaves.push(step.narrow(0, n, m));
                    }
                    leaves.extend(args[3..].iter().cloned());
                    let leaves: Vec<Tensor> = leaves.into_iter().map(leaf).collect();
                    let mut body_args = vec![i.clone()];
                    body_args.extend(leaves.iter().cloned());
                    let outs = this.body.eval_with(&body_args)?;
                    let mut objective = (&outs[0] * &g_carry).sum();
                    if p > 0 {
                        objective += (&outs[1] * &step.narrow(0, n + m, p)).sum();
                    }
                    let grads = adjoints(&objective, &leaves)?;
                    let mut carry = vec![grads[0].clone()];
                    let mut offset = n;
                    for (g, size) in grads[1 + (m > 0) as usize..].iter().zip(&sizes) {
                        carry.push(acc.narrow(0, offset, *size) + g.reshape(&[*size]));
                        offset += size;
                    }
                    let carry = Tensor::try_concat(&carry.iter().collect::<Vec<_>>(), 0)?;
                    let mut outs = vec![carry];
                    if m > 0 {
                        outs.push(grads[1].clone());
                    }
                    Ok(outs)
                })?;
            let steps = Steps::Counted {
                length,
                reverse: !reverse,
            };
            Ok(Loop::new(steps, body, n + total, n + m + p, m, self.dtype))
        })
    }

    /// The loop over the carry and its tangent (`2n`), the per-step inputs
    /// and theirs (`2m`), the captures and theirs; each step outputs the
    /// outputs and their tangents (`2p`).
    fn tangent(self: &Arc<Self>) -> Result<Arc<Loop>> {
        cached(&self.tangent, || {
            let (n, m, p) = (self.n, self.m, self.p);
            let x = [2 * m];
            let body =
                self.derived_body_with(&[2 * n], (m > 0).then_some(&x[..]), 2, |this, args| {
                    let level = crate::forward::DualLevel::new();
                    let dual = |t: &Tensor, size: usize| {
                        level.make_dual(&t.narrow(0, 0, size), &t.narrow(0, size, size))
                    };
                    let mut body_args = vec![args[0].clone(), dual(&args[1], n)?];
                    if m > 0 {
                        body_args.push(dual(&args[2], m)?);
                    }
                    let captures = &args[this.first_capture() + 1..];
                    let k = captures.len() / 2;
                    for (c, t) in captures[..k].iter().zip(&captures[k..]) {
                        body_args.push(level.make_dual(c, t)?);
                    }
                    let outs = this.body.eval_with(&body_args)?;
                    let joined = |t: &Tensor| {
                        let (value, tangent) = level.unpack(t);
                        let tangent = tangent.unwrap_or_else(|| value.zeros_like());
                        Tensor::try_concat(&[&value, &tangent], 0)
                    };
                    let mut result = vec![joined(&outs[0])?];
                    if p > 0 {
                        result.push(joined(&outs[1])?);
                    }
                    if this.steps == Steps::While {
                        result.push(level.unpack(outs.last().expect("the condition")).0);
                    }
                    Ok(result)
                });
            // The tangent loop's captures are the captures, then their tangents.
            Ok(Loop::new(
                self.steps,
                body?,
                2 * n,
                2 * m,
                2 * p,
                self.dtype,
            ))
        })
    }
}

/// A fresh leaf for `t`, known to the open trace as `t`'s value.
fn leaf(t: Tensor) -> Tensor {
    let l = t.clone().requires_grad();
    crate::graph::trace::alias(&t, &l);
    l
}

/// `∂objective/∂leaf` for each leaf, recorded (zero where it does not reach).
fn adjoints(objective: &Tensor, leaves: &[Tensor]) -> Result<Vec<Tensor>> {
    let reached: Vec<&Tensor> = leaves.iter().collect();
    if !objective.needs_grad() {
        return Ok(leaves.iter().map(Tensor::zeros_like).collect());
    }
    crate::autograd::grad_with(
        &[objective],
        &reached,
        &crate::BackwardOptions {
            create_graph: true,
            ..Default::default()
        },
    )
}

fn no_reverse() -> Error {
    Error::invalid(
        "while_loop",
        "reverse mode needs a bound on the number of steps: use while_loop_bounded, fori_loop or scan",
    )
}

/// The loop's inputs' adjoints (see the module note): the loop again,
/// keeping each step's carry, then the backward loop.
pub(crate) fn vjp(
    l: &Arc<Loop>,
    inputs: &[Tensor],
    g: &Tensor,
    needs: &[bool],
) -> Result<SmallVec<[Option<Tensor>; 2]>> {
    let Some(length) = l.length() else {
        return Err(no_reverse());
    };
    let (n, m, p) = (l.n, l.m, l.p);
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let stacked = bind(Prim::Loop(LoopPrim(l.stacking()?)), &refs)?;
    let per_step = stacked
        .narrow(0, n, length * (p + n))
        .reshape(&[length, p + n]);
    let mut columns = vec![per_step.narrow(1, p, n)];
    if m > 0 {
        columns.push(inputs[1].clone());
    }
    if p > 0 {
        columns.push(g.narrow(0, n, length * p).reshape(&[length, p]));
    }
    let per_step = Tensor::try_concat(&columns.iter().collect::<Vec<_>>(), 1)?;
    let sizes = capture_sizes(l);
    let total: usize = sizes.iter().sum();
    let start = Tensor::try_concat(&[&g.narrow(0, 0, n), &Tensor::zeros(&[total], l.dtype)], 0)?;
    let mut args = vec![&start, &per_step];
    args.extend(&inputs[l.first_capture()..]);
    let back = bind(Prim::Loop(LoopPrim(l.backward()?)), &args)?;
    let mut grads: SmallVec<[Option<Tensor>; 2]> = SmallVec::new();
    grads.push(Some(back.narrow(0, 0, n)));
    if m > 0 {
        let xs = back.narrow(0, n + total, length * m).reshape(&[length, m]);
        grads.push(Some(xs));
    }
    let mut offset = n;
    for (size, x) in sizes.iter().zip(&inputs[l.first_capture()..]) {
        grads.push(Some(back.narrow(0, offset, *size).reshape(x.shape())));
        offset += size;
    }
    Ok(grads
        .into_iter()
        .zip(needs)
        .map(|(g, &need)| g.filter(|_| need))
        .collect())
}

/// The loop's output and its tangent, by one loop over the values and
/// their tangents (`None`: zero).
pub(crate) fn jvp_joint(
    l: &Arc<Loop>,
    inputs: &[Tensor],
    tangents: &[Option<Tensor>],
) -> Result<(Tensor, Tensor)> {
    let (n, m, p) = (l.n, l.m, l.p);
    let tangent = |k: usize| {
        tangents[k]
            .clone()
            .unwrap_or_else(|| inputs[k].zeros_like())
    };
    let mut args = vec![Tensor::try_concat(&[&inputs[0], &tangent(0)], 0)?];
    if m > 0 {
        args.push(Tensor::try_concat(&[&inputs[1], &tangent(1)], 1)?);
    }
    let first = l.first_capture();
    args.extend(inputs[first..].iter().cloned());
    args.extend((first..inputs.len()).map(tangent));
    let out = bind(
        Prim::Loop(LoopPrim(l.tangent()?)),
        &args.iter().collect::<Vec<_>>(),
    )?;
    let part = |k: usize| -> Result<Tensor> {
        let carry = out.narrow(0, k * n, n);
        match l.length().filter(|_| p > 0) {
            None => Ok(carry),
            Some(length) => {
                let ys = out
                    .narrow(0, 2 * n, length * 2 * p)
                    .reshape(&[length, 2 * p]);
                let ys = ys.narrow(1, k * p, p).reshape(&[length * p]);
                Tensor::try_concat(&[&carry, &ys], 0)
            }
        }
    };
    Ok((part(0)?, part(1)?))
}

// --------------------------------------------------------------------------
// The user's API: carries and per-step values packed flat, the body traced.
// --------------------------------------------------------------------------

/// Options of [`scan_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// The number of steps when there are no per-step inputs (else it must
    /// equal their leading size).
    pub length: Option<usize>,
    /// Run from the last step to the first (outputs stay in step order).
    pub reverse: bool,
}

/// `lax.scan`: runs `f(carry, x_t) -> (carry', y_t)` for each `x_t` along
/// the leading axis of `xs`, returning the final carry and the `y_t`
/// stacked. The carries must keep their shapes, and share one dtype with
/// `xs` and the outputs.
///
/// ```
/// use chainrule::control::scan;
/// use chainrule::Tensor;
/// // A running sum, and the sums along the way.
/// let xs = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
/// let (total, sums) = scan(
///     |c, x| { let s = &c[0] + &x[0]; Ok((vec![s.clone()], vec![s])) },
///     &[Tensor::scalar(0.0f64)],
///     &[xs],
/// ).unwrap();
/// assert_eq!(total[0].item(), 6.0);
/// assert_eq!(sums[0].to_vec::<f64>(), [1.0, 3.0, 6.0]);
/// ```
pub fn scan<F>(f: F, init: &[Tensor], xs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)>
where
    F: Fn(&[Tensor], &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)>,
{
    scan_with(f, init, xs, ScanOptions::default())
}

/// [`scan`] with options (a length without per-step inputs, reversed order).
///
/// ```
/// use chainrule::control::{scan_with, ScanOptions};
/// use chainrule::Tensor;
/// // c ← 10c + x, from the last step to the first; the outputs stay in step order.
/// let xs = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
/// let step = |c: &[Tensor], x: &[Tensor]| { let s = &c[0] * 10.0 + &x[0]; Ok((vec![s.clone()], vec![s])) };
/// let reverse = ScanOptions { length: None, reverse: true };
/// let (c, ys) = scan_with(step, &[Tensor::scalar(0.0f64)], &[xs], reverse).unwrap();
/// assert_eq!((c[0].item(), ys[0].to_vec::<f64>()), (321.0, vec![321.0, 32.0, 3.0]));
/// ```
pub fn scan_with<F>(
    f: F,
    init: &[Tensor],
    xs: &[Tensor],
    options: ScanOptions,
) -> Result<(Vec<Tensor>, Vec<Tensor>)>
where
    F: Fn(&[Tensor], &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)>,
{
    scan_indexed(|_, c, x| f(c, x), init, xs, options)
}

/// [`scan_with`] whose body also reads the step's index (a 0-d tensor of
/// the carry's dtype).
fn scan_indexed<F>(
    f: F,
    init: &[Tensor],
    xs: &[Tensor],
    options: ScanOptions,
) -> Result<(Vec<Tensor>, Vec<Tensor>)>
where
    F: Fn(&Tensor, &[Tensor], &[Tensor]) -> Result<(Vec<Tensor>, Vec<Tensor>)>,
{
    let (carry, dtype) = Packing::of("scan", init)?;
    let length = steps_of(xs, options.length)?;
    let x_shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.shape()[1..].to_vec()).collect();
    if let Some(x) = xs.iter().find(|x| x.dtype() != dtype) {
        return Err(Error::DTypeMismatch {
            op: "scan",
            lhs: dtype,
            rhs: x.dtype(),
        });
    }
    let x_packing = Packing { shapes: x_shapes };
    let m = x_packing.size();
    // The body's outputs' shapes, learned while tracing it.
    let ys_shapes = std::cell::RefCell::new(Vec::new());
    let mut feeds = vec![
        ("i", Tensor::zeros(&[], dtype)),
        ("carry", Tensor::zeros(&[carry.size()], dtype)),
    ];
    if m > 0 {
        feeds.push(("x", Tensor::zeros(&[m], dtype)));
    }
    let named: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (*n, t)).collect();
    let (body, captures) = Graph::trace_lifting(&named, |args| {
        let c = carry.unpack(&args[1])?;
        let x = if m > 0 {
            x_packing.unpack(&args[2])?
        } else {
            Vec::new()
        };
        let (c2, ys) = f(&args[0], &c, &x)?;
        carry.check_same("scan", "the carry", &c2, dtype)?;
        let mut outs = vec![carry.pack(&c2)?];
        *ys_shapes.borrow_mut() = ys.iter().map(|y| y.shape().to_vec()).collect();
        if !ys.is_empty() {
            if let Some(y) = ys.iter().find(|y| y.dtype() != dtype) {
                return Err(Error::DTypeMismatch {
                    op: "scan",
                    lhs: dtype,
                    rhs: y.dtype(),
                });
            }
            outs.push(Packing::flat(&ys)?);
        }
        Ok(outs)
    })?;
    let y_packing = Packing {
        shapes: ys_shapes.into_inner(),
    };
    let (n, p) = (carry.size(), y_packing.size());
    if length == 0 {
        let ys = y_packing
            .shapes
            .iter()
            .map(|s| Tensor::zeros(&prefixed(0, s), dtype));
        return Ok((init.to_vec(), ys.collect()));
    }
    let steps = Steps::Counted {
        length,
        reverse: options.reverse,
    };
    let l = Loop::new(steps, body, n, m, p, dtype);
    let mut args = vec![carry.pack(init)?];
    if m > 0 {
        let columns: Vec<Tensor> = xs
            .iter()
            .map(|x| x.reshape(&[length, x.numel() / length]))
            .collect();
        args.push(Tensor::try_concat(&columns.iter().collect::<Vec<_>>(), 1)?);
    }
    args.extend(captures);
    let out = bind(
        Prim::Loop(LoopPrim(Arc::new(l))),
        &args.iter().collect::<Vec<_>>(),
    )?;
    let final_carry = carry.unpack(&out.narrow(0, 0, n))?;
    let mut ys = Vec::new();
    if p > 0 {
        let per_step = out.narrow(0, n, length * p).reshape(&[length, p]);
        let mut offset = 0;
        for s in &y_packing.shapes {
            let size: usize = s.iter().product();
            ys.push(
                per_step
                    .narrow(1, offset, size)
                    .reshape(&prefixed(length, s)),
            );
            offset += size;
        }
    }
    Ok((final_carry, ys))
}

/// `lax.fori_loop`: `carry ← f(i, carry)` for `i` from `lower` to `upper − 1`
/// (`i` a 0-d tensor of the carry's dtype). One loop primitive, differentiable
/// in both modes.
///
/// ```
/// use chainrule::control::fori_loop;
/// use chainrule::{func, Tensor};
/// let sum = fori_loop(2, 5, |i, c| Ok(vec![&c[0] + i]), &[Tensor::scalar(0.0f64)]).unwrap();
/// assert_eq!(sum[0].item(), 9.0); // 2 + 3 + 4
/// // Squaring 3 times is x⁸, whose derivative 8x⁷ is 1024 at 2.
/// let pow8 = |x: &Tensor| fori_loop(0, 3, |_i, c| Ok(vec![c[0].square()]), &[x.clone()]).unwrap().remove(0);
/// assert_eq!(func::grad(pow8, &Tensor::scalar(2.0f64)).unwrap().item(), 1024.0);
/// ```
pub fn fori_loop<F>(lower: usize, upper: usize, f: F, init: &[Tensor]) -> Result<Vec<Tensor>>
where
    F: Fn(&Tensor, &[Tensor]) -> Result<Vec<Tensor>>,
{
    let options = ScanOptions {
        length: Some(upper.saturating_sub(lower)),
        reverse: false,
    };
    let (carry, _) = scan_indexed(
        |i, c, _| {
            let i = if lower == 0 {
                i.clone()
            } else {
                i.add_scalar(lower as f64)
            };
            Ok((f(&i, c)?, Vec::new()))
        },
        init,
        &[],
        options,
    )?;
    Ok(carry)
}

/// `lax.while_loop`: `carry ← body(carry)` while `cond(carry)` is nonzero
/// (`cond` gives a single element). Forward mode and `vmap` see through it;
/// reverse mode needs a bound on the steps ([`while_loop_bounded`]).
///
/// ```
/// use chainrule::control::while_loop;
/// use chainrule::{func, Tensor};
/// // Halve while above 1: 20 → 10 → 5 → 2.5 → 1.25 → 0.625, so d/dx = 0.5⁵.
/// let halve = |x: &Tensor| while_loop(|c| Ok(c[0].gt_scalar(1.0)), |c| Ok(vec![&c[0] * 0.5]), &[x.clone()]).unwrap().remove(0);
/// let x = Tensor::scalar(20.0f64);
/// assert_eq!(halve(&x).item(), 0.625);
/// assert_eq!(func::jvp(halve, &x, &Tensor::scalar(1.0f64)).unwrap().1.item(), 0.5f64.powi(5));
/// assert!(func::grad(halve, &x).is_err()); // reverse mode needs `while_loop_bounded`
/// ```
pub fn while_loop<C, F>(cond: C, body: F, init: &[Tensor]) -> Result<Vec<Tensor>>
where
    C: Fn(&[Tensor]) -> Result<Tensor>,
    F: Fn(&[Tensor]) -> Result<Vec<Tensor>>,
{
    let (carry, dtype) = Packing::of("while_loop", init)?;
    let feeds = [
        ("i", Tensor::zeros(&[], dtype)),
        ("carry", Tensor::zeros(&[carry.size()], dtype)),
    ];
    let named: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (*n, t)).collect();
    let (graph, captures) = Graph::trace_lifting(&named, |args| {
        let c = carry.unpack(&args[1])?;
        let go_on = cond(&c)?;
        if go_on.numel() != 1 || !(go_on.dtype() == DType::Bool || go_on.dtype() == dtype) {
            return Err(Error::invalid(
                "while_loop",
                format!(
                    "the condition gave {} {:?}; it must give one bool (or one nonzero-or-zero element of the carry's dtype {dtype})",
                    go_on.dtype(),
                    go_on.shape()
                ),
            ));
        }
        // Packed with the carry, as 1 or 0 of its dtype.
        let go_on = go_on.to_dtype(dtype);
        let c2 = body(&c)?;
        carry.check_same("while_loop", "the carry", &c2, dtype)?;
        Ok(vec![carry.pack(&c2)?, go_on.reshape(&[])])
    })?;
    let l = Loop::new(Steps::While, graph, carry.size(), 0, 0, dtype);
    let mut args = vec![carry.pack(init)?];
    args.extend(captures);
    let out = bind(
        Prim::Loop(LoopPrim(Arc::new(l))),
        &args.iter().collect::<Vec<_>>(),
    )?;
    carry.unpack(&out)
}

/// [`while_loop`] for at most `max_steps` steps, differentiable in reverse
/// mode too: a [`fori_loop`] whose steps after the condition fails keep the
/// carry as it is.
///
/// ```
/// use chainrule::control::while_loop_bounded;
/// use chainrule::{func, Tensor};
/// // Halve while above 1 (at most 100 steps): 20 → … → 0.625, so d/dx = 0.5⁵.
/// let halve = |x: &Tensor| {
///     while_loop_bounded(|c| Ok(c[0].gt_scalar(1.0)), |c| Ok(vec![&c[0] * 0.5]), &[x.clone()], 100)
/// };
/// let x = Tensor::scalar(20.0f64);
/// assert_eq!(halve(&x).unwrap()[0].item(), 0.625);
/// assert_eq!(func::grad(|x: &Tensor| halve(x).unwrap().remove(0), &x).unwrap().item(), 0.5f64.powi(5));
/// ```
pub fn while_loop_bounded<C, F>(
    cond: C,
    body: F,
    init: &[Tensor],
    max_steps: usize,
) -> Result<Vec<Tensor>>
where
    C: Fn(&[Tensor]) -> Result<Tensor>,
    F: Fn(&[Tensor]) -> Result<Vec<Tensor>>,
{
    fori_loop(
        0,
        max_steps,
        |_, c| {
            let go_on = cond(c)?.detach().reshape(&[]);
            let go_on = match go_on.dtype() {
                DType::Bool => go_on,
                _ => go_on.ne_elem(&go_on.zeros_like()),
            };
            let next = body(c)?;
            next.iter()
                .zip(c)
                .map(|(n, c)| Tensor::try_where_(&go_on, n, c))
                .collect()
        },
        init,
    )
}

/// The number of steps: the leading size shared by `xs`, or `length`.
fn steps_of(xs: &[Tensor], length: Option<usize>) -> Result<usize> {
    let mut steps = length;
    for x in xs {
        let Some(&k) = x.shape().first() else {
            return Err(Error::invalid(
                "scan",
                "a per-step input needs a leading axis to scan along (it is 0-d)",
            ));
        };
        match steps {
            Some(s) if s != k => {
                return Err(Error::invalid(
                    "scan",
                    format!("per-step inputs of {k} steps, but {s} steps were asked for"),
                ))
            }
            _ => steps = Some(k),
        }
    }
    steps.ok_or_else(|| Error::invalid("scan", "no per-step inputs and no length"))
}

fn prefixed(size: usize, shape: &[usize]) -> Vec<usize> {
    std::iter::once(size).chain(shape.iter().copied()).collect()
}

/// Several tensors of one dtype as one flat vector.
struct Packing {
    shapes: Vec<Vec<usize>>,
}

impl Packing {
    /// The packing of the carries `init` (at least one, of one dtype).
    fn of(op: &'static str, init: &[Tensor]) -> Result<(Packing, DType)> {
        let Some(first) = init.first() else {
            return Err(Error::invalid(op, "the loop needs at least one carry"));
        };
        let dtype = first.dtype();
        if let Some(c) = init.iter().find(|c| c.dtype() != dtype) {
            return Err(Error::DTypeMismatch {
                op,
                lhs: dtype,
                rhs: c.dtype(),
            });
        }
        let shapes = init.iter().map(|c| c.shape().to_vec()).collect();
        Ok((Packing { shapes }, dtype))
    }

    fn size(&self) -> usize {
        self.shapes
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    fn flat(ts: &[Tensor]) -> Result<Tensor> {
        let flat: Vec<Tensor> = ts.iter().map(|t| t.reshape(&[t.numel()])).collect();
        if flat.len() == 1 {
            return Ok(flat[0].clone());
        }
        Tensor::try_concat(&flat.iter().collect::<Vec<_>>(), 0)
    }

    fn pack(&self, ts: &[Tensor]) -> Result<Tensor> {
        Packing::flat(ts)
    }

    fn unpack(&self, flat: &Tensor) -> Result<Vec<Tensor>> {
        let mut offset = 0;
        self.shapes
            .iter()
            .map(|s| {
                let size: usize = s.iter().product();
                let part = flat.try_narrow(0, offset, size)?.try_reshape(s);
                offset += size;
                part
            })
            .collect()
    }

    /// The body's new carries have the carries' shapes and dtype.
    fn check_same(&self, op: &'static str, what: &str, ts: &[Tensor], dtype: DType) -> Result<()> {
        let shapes: Vec<&[usize]> = ts.iter().map(|t| t.shape()).collect();
        let expected: Vec<&[usize]> = self.shapes.iter().map(|s| s.as_slice()).collect();
        if shapes != expected || ts.iter().any(|t| t.dtype() != dtype) {
            return Err(Error::invalid(
                op,
                format!(
                    "the body must give {what} back as {dtype:?} {expected:?}; it gave {shapes:?}"
                ),
            ));
        }
        Ok(())
    }
}

/// `vmap` of a loop: one loop over every example at once. Its carry is
/// every example's (`batch × n`, flat), its per-step input every example's
/// `x`, its body the body mapped over the examples. A while loop runs
/// until no example's condition holds, the examples that are done keeping
/// their carry (as JAX's batched `while_loop`).
pub(crate) fn batch(l: &Arc<Loop>, args: &[crate::ops::BatchArg], size: usize) -> Result<Tensor> {
    let (n, m, p, b) = (l.n, l.m, l.p, size);
    let first = l.first_capture();
    let every = |k: usize| -> Tensor {
        let a = &args[k];
        if a.batched {
            return a.value.clone();
        }
        let mut shape = vec![b];
        shape.extend_from_slice(a.value.shape());
        a.value.unsqueeze(0).broadcast_to(&shape)
    };
    let mut loop_args = vec![every(0).reshape(&[b * n])];
    let length = l.length().unwrap_or(0);
    if m > 0 {
        let xs = every(1).permute(&[1, 0, 2]).reshape(&[length, b * m]);
        loop_args.push(xs);
    }
    let mapped: Vec<Option<usize>> = args[first..]
        .iter()
        .map(|a| a.batched.then_some(0))
        .collect();
    loop_args.extend(args[first..].iter().map(|a| a.value.clone()));
    let mut examples = vec![
        ("i".to_string(), Tensor::zeros(&[], l.dtype)),
        ("carry".into(), Tensor::zeros(&[b * n], l.dtype)),
    ];
    if m > 0 {
        examples.push(("x".into(), Tensor::zeros(&[b * m], l.dtype)));
    }
    for (k, a) in args[first..].iter().enumerate() {
        examples.push((
            format!("capture{k}"),
            Tensor::zeros(a.value.shape(), l.dtype),
        ));
    }
    let feeds: Vec<(&str, &Tensor)> = examples.iter().map(|(s, t)| (s.as_str(), t)).collect();
    let while_loop = l.steps == Steps::While;
    let (body, lifted) = Graph::trace_lifting(&feeds, |t| {
        let i = t[0].clone();
        let mut inputs = vec![t[1].reshape(&[b, n])];
        let mut axes = vec![Some(0)];
        if m > 0 {
            inputs.push(t[2].reshape(&[b, m]));
            axes.push(Some(0));
        }
        inputs.extend(t[first + 1..].iter().cloned());
        axes.extend(mapped.iter().copied());
        // One example's outputs, flat: the carry, the outputs, the condition.
        let step = |xs: &[Tensor]| -> Result<Tensor> {
            let mut body_args = vec![i.clone()];
            body_args.extend(xs.iter().cloned());
            let outs = l.body.eval_with(&body_args)?;
            let flat: Vec<Tensor> = outs.iter().map(|o| o.reshape(&[o.numel()])).collect();
            Tensor::try_concat(&flat.iter().collect::<Vec<_>>(), 0)
        };
        let per_example = crate::func::vmap(step, &axes, 0)(&inputs)?;
        let carry = per_example.narrow(1, 0, n);
        if while_loop {
            let go_on = per_example.narrow(1, n, 1);
            let go_on = go_on.ne_elem(&go_on.zeros_like());
            let kept = Tensor::try_where_(&go_on, &carry, &inputs[0])?;
            let any = go_on.max().reshape(&[]).to_dtype(carry.dtype());
            return Ok(vec![kept.reshape(&[b * n]), any]);
        }
        let mut outs = vec![carry.reshape(&[b * n])];
        if p > 0 {
            outs.push(per_example.narrow(1, n, p).reshape(&[b * p]));
        }
        Ok(outs)
    })?;
    debug_assert!(lifted.is_empty(), "a batched body reads only its inputs");
    let batched = Loop::new(l.steps, body, b * n, b * m, b * p, l.dtype);
    let refs: Vec<&Tensor> = loop_args.iter().collect();
    let out = bind(Prim::Loop(LoopPrim(Arc::new(batched))), &refs)?;
    let carry = out.narrow(0, 0, b * n).reshape(&[b, n]);
    if p == 0 || while_loop {
        return Ok(carry);
    }
    let ys = out
        .narrow(0, b * n, length * b * p)
        .reshape(&[length, b, p])
        .permute(&[1, 0, 2])
        .reshape(&[b, length * p]);
    Tensor::try_concat(&[&carry, &ys], 1)
}
