//! `--explain`: the derivation in the note's style. First the decomposition
//! into intermediate variables with their shapes and values (one forward
//! pass, whatever the number of `--wrt` variables); then the chain rule
//! accumulated step by step, each factor with its shape:
//! - `grad` and `jacobian`: from the output back in reverse mode (row by
//!   row: `∂z/∂u` has one row per entry of `z`), from the inputs forward in
//!   forward mode (column by column: `∂u/∂x` has one column per entry of `x`);
//! - `jvp`: the tangent of every step along the direction;
//! - `hessian`: the gradient as an expression, then its Jacobian as above.

use crate::eval::{all_finite, eval, output_name, Env, Operand, Step};
use crate::expr::{BinOp, Expr};
use crate::functions::{partial_expr, Kind};
use chainrule::{autograd, func, DType, Tensor};
use std::fmt::Write;

/// A value in a line: the number for a scalar, else the entries, or for
/// more than six the first three and the last with the count.
pub fn abbreviate(t: &Tensor) -> String {
    abbreviate_to(t, 6, 6)
}

/// [`abbreviate`] with `decimals` digits (trailing zeros trimmed; a value
/// too small for them in scientific notation) and at most `most` entries.
pub fn abbreviate_to(t: &Tensor, decimals: usize, most: usize) -> String {
    let v = t.to_vec_f64();
    let f = |&x: &f64| {
        if x != 0.0 && x.abs() < 0.5 * 10f64.powi(-(decimals as i32)) {
            return format!("{x:.2e}");
        }
        format!("{x:.decimals$}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    };
    match v.len() {
        1 if t.ndim() == 0 => f(&v[0]),
        n if n <= most => format!("[{}]", v.iter().map(f).collect::<Vec<_>>().join(", ")),
        n => {
            let head: Vec<String> = v[..most / 2].iter().map(f).collect();
            format!("[{}, …, {}] ({n} values)", head.join(", "), f(&v[n - 1]))
        }
    }
}

/// The note's layout of a derivative's shape: `(1,)` for a scalar by a
/// scalar, `(1,n)`, `(m,n)`.
fn layout(rows: usize, cols: usize) -> String {
    match (rows, cols) {
        (1, 1) => "(1,)".into(),
        (r, c) => format!("({r},{c})"),
    }
}

fn shape_text(t: &Tensor) -> String {
    if t.ndim() == 0 {
        "()".into()
    } else {
        format!("{:?}", t.shape())
    }
}

/// The local derivative `∂step/∂operand` as the note writes it.
fn local_rule(step: &Step, k: usize, steps: &[Step]) -> String {
    let name = |o: &Operand| match o {
        Operand::Step(i) => steps[*i].name.clone(),
        Operand::Var(v) => v.clone(),
        Operand::Num(v) => Expr::Num(*v).to_string(),
    };
    let other = step
        .operands
        .get(1 - k.min(1))
        .map(name)
        .unwrap_or_default();
    let me = name(&step.operands[k]);
    match &step.expr {
        Expr::Neg(_) => "-I".into(),
        Expr::Transpose(_) => "transpose".into(),
        Expr::Bin(op, _, _) => match (op, k) {
            (BinOp::Add, _) => "I".into(),
            (BinOp::Sub, 0) => "I".into(),
            (BinOp::Sub, _) => "-I".into(),
            (BinOp::Mul, _) => format!("diag({other})"),
            (BinOp::Div, 0) => format!("diag(1/{other})"),
            (BinOp::Div, _) => format!("diag(-{}/{me}^2)", name(&step.operands[0])),
            (BinOp::Pow, 0) => match step.operands.get(1) {
                Some(Operand::Num(c)) if *c == 2.0 => format!("diag(2{me})"),
                Some(Operand::Num(c)) => {
                    format!("diag({}·{me}^{})", Expr::Num(*c), Expr::Num(c - 1.0))
                }
                _ => format!("diag({other}·{me}^({other}-1))"),
            },
            (BinOp::Pow, _) => format!(
                "diag({}^{me}·log({}))",
                name(&step.operands[0]),
                name(&step.operands[0])
            ),
            (BinOp::MatMul, 0) => format!("∂({me} @ {other})/∂{me}"),
            (BinOp::MatMul, _) => name(&step.operands[0]),
        },
        Expr::Call(f, _) => match crate::functions::lookup(f).map(|x| x.kind) {
            Some(Kind::Unary(op)) => {
                let x = Expr::Var(me.clone());
                let y = Expr::Call(f.clone(), vec![x.clone()]);
                match op.partial(&x, &y) {
                    Some(p) => diag(partial_expr(p)),
                    None => "0".into(),
                }
            }
            Some(Kind::Binary(op)) => {
                let (a, b) = (
                    Expr::Var(name(&step.operands[0])),
                    Expr::Var(name(&step.operands[1])),
                );
                let y = Expr::Call(f.clone(), vec![a.clone(), b.clone()]);
                let (pa, pb) = op.partials(&a, &b, &y);
                diag(partial_expr(if k == 0 { pa } else { pb }))
            }
            Some(Kind::Own(own)) => (own.explain)(f, &me, &other),
            None => format!("∂{f}/∂{me}"),
        },
        _ => String::new(),
    }
}

/// An elementwise local derivative as the note writes it: `I` for the
/// identity, else the diagonal of the (simplified) partial derivative.
fn diag(p: Expr) -> String {
    match crate::symbolic::simplify(p) {
        Expr::Num(1.0) => "I".into(),
        Expr::Num(-1.0) => "-I".into(),
        e => format!("diag({e})"),
    }
}

/// `e` evaluated with each of `vars` as a fresh leaf, every op recorded
/// as a step: the one forward pass every explanation starts from.
struct Recorded {
    steps: Vec<Step>,
    leaves: Vec<Tensor>,
    z: Tensor,
}

impl Recorded {
    fn new(e: &Expr, env: &Env, vars: &[String], dtype: DType) -> Result<Recorded, String> {
        let mut env2 = env.clone();
        let leaves: Vec<Tensor> = vars
            .iter()
            .map(|v| {
                let leaf = env[v].detach().requires_grad();
                env2.insert(v.clone(), leaf.clone());
                leaf
            })
            .collect();
        let mut steps = Some(Vec::new());
        let z = eval(e, &env2, dtype, &mut steps)?;
        Ok(Recorded {
            steps: steps.unwrap_or_default(),
            leaves,
            z,
        })
    }

    /// `∂z/∂u` for every step `u`, then for every leaf. A single-valued `z`
    /// takes one reverse pass and each adjoint has `u`'s shape; otherwise
    /// one pass per entry of `z` (row by row), giving `(size of z, size of u)`.
    fn adjoints(&self) -> Result<Vec<Tensor>, String> {
        let targets: Vec<&Tensor> = self
            .steps
            .iter()
            .map(|s| &s.value)
            .chain(&self.leaves)
            .collect();
        let m = self.z.numel();
        if !self.z.needs_grad() {
            let zero = |t: &&Tensor| match m {
                1 => t.zeros_like(),
                _ => Tensor::zeros(&[m, t.numel()], t.dtype()),
            };
            return Ok(targets.iter().map(zero).collect());
        }
        if m == 1 {
            return autograd::grad(&[&self.z], &targets).map_err(|e| e.to_string());
        }
        let mut rows: Vec<Vec<Tensor>> = vec![Vec::with_capacity(m); targets.len()];
        for i in 0..m {
            let mut seed = vec![0.0; m];
            seed[i] = 1.0;
            let opts = autograd::BackwardOptions {
                grad: Some(Tensor::from_vec(seed, self.z.shape()).to_dtype(self.z.dtype())),
                retain_graph: true,
                create_graph: false,
            };
            let row =
                autograd::grad_with(&[&self.z], &targets, &opts).map_err(|e| e.to_string())?;
            for (acc, r) in rows.iter_mut().zip(row) {
                acc.push(r.reshape(&[r.numel()]));
            }
        }
        Ok(rows
            .iter()
            .map(|r| Tensor::stack(&r.iter().collect::<Vec<_>>(), 0))
            .collect())
    }

    /// Whether each step reads (through its operands) one of `vars`.
    fn on_path(&self, vars: &[String]) -> Vec<bool> {
        let mut on_path: Vec<bool> = Vec::with_capacity(self.steps.len());
        for s in &self.steps {
            let reads = s.operands.iter().any(|o| match o {
                Operand::Step(j) => on_path[*j],
                Operand::Var(v) => vars.contains(v),
                Operand::Num(_) => false,
            });
            on_path.push(reads);
        }
        on_path
    }
}

/// Where a gradient first stops being finite, read from the output back:
/// the first step whose own adjoint is finite but which hands a NaN or an
/// infinity to an operand (its local derivative is not finite there). A
/// phrase for an error message, or `None` when no step does.
pub fn first_non_finite_rule(e: &Expr, env: &Env, var: &str, dtype: DType) -> Option<String> {
    env.get(var)?;
    let rec = Recorded::new(e, env, &[var.to_string()], dtype).ok()?;
    let adj = rec.adjoints().ok()?;
    let (steps, finite) = (&rec.steps, all_finite);
    steps.iter().enumerate().rev().find_map(|(i, s)| {
        let bad_operand = s.operands.iter().any(|o| match o {
            Operand::Step(j) => !finite(&adj[*j]),
            Operand::Var(v) => v == var && !finite(&adj[steps.len()]),
            Operand::Num(_) => false,
        });
        (finite(&adj[i]) && bad_operand).then(|| {
            let mut at = s.expr.to_string();
            if at.chars().count() > 60 {
                at = at.chars().take(57).collect::<String>() + "…";
            }
            format!(
                ": the derivative of step {} = {} (`{at}`) is not finite there",
                s.name, s.text
            )
        })
    })
}

/// `e` evaluated with `x` in place of `var` (its steps recorded into
/// `steps` when given), as a function the transforms can differentiate.
fn eval_at(
    e: &Expr,
    env: &Env,
    var: &str,
    x: &Tensor,
    dtype: DType,
    steps: &mut Option<Vec<Step>>,
) -> chainrule::Result<Tensor> {
    let mut en = env.clone();
    en.insert(var.to_string(), x.clone());
    eval(e, &en, dtype, steps).map_err(|m| chainrule::Error::InvalidArgument { op: "eval", msg: m })
}

/// Every step of `e`'s evaluation at `x` (in place of `var`), flattened
/// into one vector, with the steps' shapes: what one forward-mode pass
/// differentiates, so the explanation stays linear in the expression's size.
fn all_steps(
    e: &Expr,
    env: &Env,
    var: &str,
    dtype: DType,
    x: &Tensor,
    shapes: &std::cell::RefCell<Vec<Vec<usize>>>,
) -> chainrule::Result<Tensor> {
    let mut steps = Some(Vec::new());
    eval_at(e, env, var, x, dtype, &mut steps)?;
    let steps = steps.unwrap_or_default();
    *shapes.borrow_mut() = steps.iter().map(|s| s.value.shape().to_vec()).collect();
    let flat: Vec<Tensor> = steps
        .iter()
        .map(|s| s.value.reshape(&[s.value.numel()]))
        .collect();
    Tensor::try_concat(&flat.iter().collect::<Vec<_>>(), 0)
}

/// Cuts the rows of `all` (one block per step, in order) back into the
/// steps, each block reshaped to its step's shape followed by `tail`.
fn split_steps(all: &Tensor, shapes: &[Vec<usize>], tail: &[usize]) -> Vec<Tensor> {
    let mut start = 0;
    shapes
        .iter()
        .map(|shape| {
            let rows: usize = shape.iter().product();
            let full: Vec<usize> = shape.iter().chain(tail).copied().collect();
            let block = all.narrow(0, start, rows).reshape(&full);
            start += rows;
            block
        })
        .collect()
}

/// `∂step/∂var` for every step, by one batched forward pass (column by column).
fn every_step_jacobian(
    e: &Expr,
    env: &Env,
    var: &str,
    dtype: DType,
    x0: &Tensor,
) -> Result<Vec<Tensor>, String> {
    let shapes = Default::default();
    let all = func::jacfwd(|x: &Tensor| all_steps(e, env, var, dtype, x, &shapes), x0)
        .map_err(|e| e.to_string())?;
    Ok(split_steps(&all, &shapes.into_inner(), x0.shape()))
}

/// Every step's tangent along `dir`, by one forward-mode pass.
fn every_step_tangent(
    e: &Expr,
    env: &Env,
    var: &str,
    dtype: DType,
    dir: &Tensor,
) -> Result<Vec<Tensor>, String> {
    let shapes = Default::default();
    let x0 = env[var].detach();
    let (_, all) = func::jvp(
        |x: &Tensor| all_steps(e, env, var, dtype, x, &shapes),
        &x0,
        dir,
    )
    .map_err(|e| e.to_string())?;
    Ok(split_steps(&all, &shapes.into_inner(), &[]))
}

/// The operands of step `s` on the path from the inputs: (operand index,
/// name, size, the step or the input variable it is).
fn path_operands<'a>(
    s: &'a Step,
    steps: &'a [Step],
    on_path: &'a [bool],
    vars: &'a [String],
    var_sizes: &'a [usize],
) -> impl Iterator<Item = (usize, String, usize, Source)> + 'a {
    s.operands
        .iter()
        .enumerate()
        .filter_map(move |(k, o)| match o {
            Operand::Step(j) if on_path[*j] => Some((
                k,
                steps[*j].name.clone(),
                steps[*j].value.numel(),
                Source::Step(*j),
            )),
            Operand::Var(v) => vars
                .iter()
                .position(|w| w == v)
                .map(|i| (k, v.clone(), var_sizes[i], Source::Var(i))),
            _ => None,
        })
}

#[derive(Clone, Copy)]
enum Source {
    Step(usize),
    Var(usize),
}

/// What the derivation is of.
pub struct Target<'a> {
    /// The expression.
    pub expr: &'a Expr,
    /// Its variables' values.
    pub env: &'a Env,
    /// The dtype it is evaluated in.
    pub dtype: DType,
    /// The variables it is by (`--wrt`).
    pub vars: &'a [String],
}

/// The decomposition of one forward pass, its output named `out`, and the
/// shape of each variable.
fn decomposition(out: &mut String, rec: &Recorded, vars: &[String]) {
    writeln!(
        out,
        "Decomposition into intermediate variables (the forward pass):"
    )
    .unwrap();
    for s in &rec.steps {
        writeln!(
            out,
            "  {} = {:<24} shape {:<10} value {}",
            s.name,
            s.text,
            shape_text(&s.value),
            abbreviate(&s.value)
        )
        .unwrap();
    }
    for (v, leaf) in vars.iter().zip(&rec.leaves) {
        writeln!(
            out,
            "  ({v} has shape {}: n = {})",
            shape_text(leaf),
            leaf.numel()
        )
        .unwrap();
    }
}

/// The recorded forward pass, its last step renamed to the output's name.
fn record(t: &Target, preferred_output: &str) -> Result<(Recorded, String), String> {
    let mut rec = Recorded::new(t.expr, t.env, t.vars, t.dtype)?;
    let name = output_name(t.env, preferred_output);
    if let Some(last) = rec.steps.last_mut() {
        last.name = name.clone();
    }
    Ok((rec, name))
}

/// The derivation of `∂z/∂var` for every variable: a gradient when `z` is
/// single-valued, else a Jacobian; reverse or forward accumulation.
pub fn derivative(t: &Target, forward: bool) -> Result<String, String> {
    derivative_named(t, forward, "z")
}

fn derivative_named(t: &Target, forward: bool, output: &str) -> Result<String, String> {
    let mut out = String::new();
    let (rec, z) = record(t, output)?;
    decomposition(&mut out, &rec, t.vars);
    if forward {
        for i in 0..t.vars.len() {
            forward_columns(&mut out, t, &rec, &z, i)?;
        }
    } else {
        reverse_rows(&mut out, t, &rec, &z)?;
    }
    Ok(out)
}

/// Reverse accumulation from `z` back to every variable, all of them in
/// the same pass (or one pass per entry of `z`: row by row).
fn reverse_rows(out: &mut String, t: &Target, rec: &Recorded, z: &str) -> Result<(), String> {
    let (steps, vars) = (rec.steps.as_slice(), t.vars);
    let m = rec.z.numel();
    let sizes: Vec<usize> = rec.leaves.iter().map(Tensor::numel).collect();
    let on_path = rec.on_path(vars);
    let adj = rec.adjoints()?;
    let to = vars.join(", ");
    if m == 1 {
        writeln!(
            out,
            "\nReverse accumulation (from {z} back to {to}; ∂{z}/∂u is a row (1, size of u)):"
        )
        .unwrap();
        writeln!(out, "  ∂{z}/∂{z} = 1  (1,)").unwrap();
    } else {
        writeln!(
            out,
            "\nReverse accumulation, row by row (from {z} back to {to}; ∂{z}/∂u has shape (m, size of u), one row per entry of {z}: m = {m}):"
        )
        .unwrap();
        writeln!(out, "  ∂{z}/∂{z} = I  {}", layout(m, m)).unwrap();
    }
    for (i, s) in steps.iter().enumerate().rev() {
        if !on_path[i] {
            continue;
        }
        let ks = s.value.numel();
        for (k, oname, onumel, source) in path_operands(s, steps, &on_path, vars, &sizes) {
            let value = match source {
                Source::Step(j) => &adj[j],
                Source::Var(v) => &adj[steps.len() + v],
            };
            writeln!(
                out,
                "  ∂{z}/∂{oname} = ∂{z}/∂{} · ∂{}/∂{oname}   local ∂{}/∂{oname} = {}   {} = {}{}   value {}",
                s.name,
                s.name,
                s.name,
                local_rule(s, k, steps),
                layout(m, onumel),
                layout(m, ks),
                layout(ks, onumel),
                abbreviate(value)
            )
            .unwrap();
        }
    }
    out.push('\n');
    for (v, (leaf, a)) in vars.iter().zip(rec.leaves.iter().zip(&adj[steps.len()..])) {
        result_line(out, z, v, leaf, &rec.z, a);
    }
    Ok(())
}

/// The gradient (stored in the variable's shape) or the Jacobian (shape
/// of `z` then of the variable), laid out as a matrix when it is one.
fn result_line(out: &mut String, z: &str, var: &str, leaf: &Tensor, value: &Tensor, d: &Tensor) {
    if value.numel() == 1 {
        let g = d.reshape(leaf.shape());
        writeln!(
            out,
            "Gradient: ∂{z}/∂{var} = {}  (stored in {var}'s shape {})",
            abbreviate(&g),
            shape_text(leaf)
        )
        .unwrap();
    } else {
        let shape: Vec<usize> = value.shape().iter().chain(leaf.shape()).copied().collect();
        let j = d.reshape(&[value.numel(), leaf.numel()]);
        writeln!(
            out,
            "Jacobian: ∂{z}/∂{var}, {} (stored in shape {:?}) =\n{j:.6}",
            layout(value.numel(), leaf.numel()),
            shape
        )
        .unwrap();
    }
}

/// Forward accumulation from variable `i` to `z`: every step's Jacobian by
/// it, all columns at once.
fn forward_columns(
    out: &mut String,
    t: &Target,
    rec: &Recorded,
    z: &str,
    i: usize,
) -> Result<(), String> {
    let (steps, var) = (rec.steps.as_slice(), &t.vars[i]);
    let one = std::slice::from_ref(var);
    let n = rec.leaves[i].numel();
    let on_path = rec.on_path(one);
    writeln!(
        out,
        "\nForward accumulation, column by column (from {var} to {z}; ∂u/∂{var} has shape (size of u, n), one column per entry of {var}: n = {n}):"
    )
    .unwrap();
    writeln!(out, "  ∂{var}/∂{var} = I  {}", layout(n, n)).unwrap();
    let x0 = t.env[var].detach();
    let jacobians = every_step_jacobian(t.expr, t.env, var, t.dtype, &x0)?;
    for (si, s) in steps.iter().enumerate() {
        if !on_path[si] {
            continue;
        }
        let ks = s.value.numel();
        let parts: Vec<String> = path_operands(s, steps, &on_path, one, &[n])
            .map(|(k, oname, on, _)| {
                format!(
                    "∂{}/∂{oname} · ∂{oname}/∂{var}  [local {}]  {} = {}{}",
                    s.name,
                    local_rule(s, k, steps),
                    layout(ks, n),
                    layout(ks, on),
                    layout(on, n)
                )
            })
            .collect();
        writeln!(
            out,
            "  ∂{}/∂{var} = {}   value {}",
            s.name,
            parts.join(" + "),
            abbreviate(&jacobians[si])
        )
        .unwrap();
    }
    let last = jacobians.last().cloned().unwrap_or_else(|| x0.zeros_like());
    out.push('\n');
    result_line(out, z, var, &rec.leaves[i], &rec.z, &last);
    Ok(())
}

/// The derivation of the JVP along `dir` in `var`: one forward pass, every
/// step's tangent `u̇ = ∂u/∂var · dir` from its operands' tangents.
pub fn jvp(t: &Target, dir: &Tensor) -> Result<String, String> {
    let mut out = String::new();
    let (rec, z) = record(t, "z")?;
    decomposition(&mut out, &rec, t.vars);
    let var = t.vars.first().ok_or("jvp needs --wrt")?;
    let dot = |name: &str| format!("{name}\u{307}");
    let steps = rec.steps.as_slice();
    let on_path = rec.on_path(std::slice::from_ref(var));
    let n = rec.leaves[0].numel();
    let tangents = every_step_tangent(t.expr, t.env, var, t.dtype, dir)?;
    writeln!(
        out,
        "\nForward accumulation along v = --dir (the tangent u̇ = ∂u/∂{var} · v of every step, of u's shape; nothing else is kept):"
    )
    .unwrap();
    writeln!(out, "  {} = v   value {}", dot(var), abbreviate(dir)).unwrap();
    for (si, s) in steps.iter().enumerate() {
        if !on_path[si] {
            continue;
        }
        let ks = s.value.numel();
        let parts: Vec<String> = path_operands(s, steps, &on_path, std::slice::from_ref(var), &[n])
            .map(|(k, oname, on, _)| {
                format!(
                    "∂{}/∂{oname} · {}  [local {}]  {} = {}{}",
                    s.name,
                    dot(&oname),
                    local_rule(s, k, steps),
                    layout(ks, 1),
                    layout(ks, on),
                    layout(on, 1)
                )
            })
            .collect();
        writeln!(
            out,
            "  {} = {}   value {}",
            dot(&s.name),
            parts.join(" + "),
            abbreviate(&tangents[si])
        )
        .unwrap();
    }
    let last = tangents
        .last()
        .cloned()
        .unwrap_or_else(|| rec.z.zeros_like());
    writeln!(
        out,
        "\nJVP: {} = ∂{z}/∂{var} · v = {}  (stored in {z}'s shape {})",
        dot(&z),
        abbreviate(&last),
        shape_text(&rec.z)
    )
    .unwrap();
    Ok(out)
}

/// The derivation of the Hessian by `var`: the Jacobian of the gradient.
/// The gradient is written as an expression (symbolic differentiation,
/// checked against reverse mode's value), so that its own steps can be
/// named; then its Jacobian is derived step by step like any other.
pub fn hessian(t: &Target, forward: bool) -> Result<String, String> {
    let var = t.vars.first().ok_or("hessian needs --wrt")?;
    let g = crate::symbolic::grad(t.expr, var, t.env, t.dtype)
        .map_err(|e| format!("--explain writes the gradient as an expression first, and: {e}"))?;
    let by_reverse = func::grad(
        |x: &Tensor| eval_at(t.expr, t.env, var, x, t.dtype, &mut None),
        &t.env[var].detach(),
    )
    .map_err(|e| e.to_string())?;
    let by_expr = autograd::no_grad(|| eval(&g, t.env, t.dtype, &mut None))?;
    if by_expr.shape() != by_reverse.shape() {
        return Err(format!(
            "--explain for hessian needs the gradient's expression `{g}` to have {var}'s shape {:?}; it has {:?}",
            by_reverse.shape(),
            by_expr.shape()
        ));
    }
    let diff = by_expr
        .to_vec_f64()
        .iter()
        .zip(by_reverse.to_vec_f64())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let gname = output_name(t.env, "g");
    let zname = output_name(t.env, "z");
    let mut out = format!(
        "The Hessian of {zname} by {var} is the Jacobian of the gradient {gname} = ∂{zname}/∂{var}.\n\
         The gradient as an expression (symbolic differentiation; its value is reverse mode's to {diff:.1e}):\n  {gname} = {g}\n\n"
    );
    let inner = Target { expr: &g, ..*t };
    out += &derivative_named(&inner, forward, "g")?;
    Ok(out)
}
