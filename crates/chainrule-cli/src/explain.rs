//! `--explain`: the derivation in the note's style. First the decomposition
//! into intermediate variables with their shapes and values; then the chain
//! rule accumulated step by step (from the output back in reverse mode, from
//! the input forward in forward mode), each factor with its shape.

use crate::eval::{all_finite, eval, Env, Operand, Step};
use crate::expr::{BinOp, Expr};
use crate::functions::{partial_expr, Kind};
use chainrule::{autograd, func, DType, Tensor};
use std::fmt::Write;

/// A value in a line: the number for a scalar, else the first and last
/// entries with the shape.
pub fn abbreviate(t: &Tensor) -> String {
    let v = t.to_vec_f64();
    let f = |x: f64| {
        format!("{x:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    };
    match v.len() {
        1 if t.ndim() == 0 => f(v[0]),
        n if n <= 6 => format!(
            "[{}]",
            v.iter().map(|&x| f(x)).collect::<Vec<_>>().join(", ")
        ),
        n => format!(
            "[{}, {}, {}, …, {}] ({n} values)",
            f(v[0]),
            f(v[1]),
            f(v[2]),
            f(v[n - 1])
        ),
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

/// `e` evaluated with `var` as a fresh leaf, every op recorded as a step.
struct Recorded {
    steps: Vec<Step>,
    leaf: Tensor,
    z: Tensor,
}

impl Recorded {
    fn new(e: &Expr, env: &Env, var: &str, dtype: DType) -> Result<Recorded, String> {
        let mut env2 = env.clone();
        let leaf = env[var].detach().requires_grad();
        env2.insert(var.to_string(), leaf.clone());
        let mut steps = Some(Vec::new());
        let z = eval(e, &env2, dtype, &mut steps)?;
        Ok(Recorded {
            steps: steps.unwrap_or_default(),
            leaf,
            z,
        })
    }

    /// `∂z/∂step` for every step, then `∂z/∂var`, by one reverse pass.
    fn adjoints(&self) -> Result<Vec<Tensor>, String> {
        let targets: Vec<&Tensor> = self
            .steps
            .iter()
            .map(|s| &s.value)
            .chain([&self.leaf])
            .collect();
        if !self.z.needs_grad() {
            return Ok(targets.iter().map(|t| t.zeros_like()).collect());
        }
        autograd::grad(&[&self.z], &targets).map_err(|e| e.to_string())
    }
}

/// Where a gradient first stops being finite, read from the output back:
/// the first step whose own adjoint is finite but which hands a NaN or an
/// infinity to an operand (its local derivative is not finite there). A
/// phrase for an error message, or `None` when no step does.
pub fn first_non_finite_rule(e: &Expr, env: &Env, var: &str, dtype: DType) -> Option<String> {
    env.get(var)?;
    let rec = Recorded::new(e, env, var, dtype).ok()?;
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

/// `∂step/∂var` for every step of `e`'s evaluation, by one batched forward
/// pass (all steps' values flattened into one output), so the explanation
/// stays linear in the expression's size.
fn every_step_jacobian(
    e: &Expr,
    env: &Env,
    var: &str,
    dtype: DType,
    x0: &Tensor,
) -> Result<Vec<Tensor>, String> {
    let shapes: std::cell::RefCell<Vec<Vec<usize>>> = Default::default();
    let all = func::jacfwd(
        |x: &Tensor| {
            let mut en = env.clone();
            en.insert(var.to_string(), x.clone());
            let mut steps = Some(Vec::new());
            eval(e, &en, dtype, &mut steps)
                .map_err(|m| chainrule::Error::InvalidArgument { op: "eval", msg: m })?;
            let steps = steps.unwrap_or_default();
            *shapes.borrow_mut() = steps.iter().map(|s| s.value.shape().to_vec()).collect();
            let flat: Vec<Tensor> = steps
                .iter()
                .map(|s| s.value.reshape(&[s.value.numel()]))
                .collect();
            let refs: Vec<&Tensor> = flat.iter().collect();
            Tensor::try_concat(&refs, 0)
        },
        x0,
    )
    .map_err(|e| e.to_string())?;
    let mut start = 0;
    shapes
        .into_inner()
        .iter()
        .map(|shape| {
            let rows: usize = shape.iter().product();
            let full: Vec<usize> = shape.iter().chain(x0.shape()).copied().collect();
            let j = all.narrow(0, start, rows).reshape(&full);
            start += rows;
            Ok(j)
        })
        .collect()
}

/// The derivation of `∂e/∂var` in reverse (or forward) order.
pub fn explain(
    e: &Expr,
    env: &Env,
    var: &str,
    dtype: DType,
    forward: bool,
) -> Result<String, String> {
    let mut out = String::new();
    // Intermediates recorded with their tensors, var as a leaf.
    let mut rec = Recorded::new(e, env, var, dtype)?;
    let z = rec.z.clone();
    if z.numel() != 1 {
        return Err(format!(
            "--explain needs a single-valued expression, this one has shape {:?}",
            z.shape()
        ));
    }
    if let Some(last) = rec.steps.last_mut() {
        last.name = "z".into();
    }
    let (steps, leaf) = (rec.steps.as_slice(), &rec.leaf);
    let n = leaf.numel();
    writeln!(
        out,
        "Decomposition into intermediate variables (the forward pass):"
    )
    .unwrap();
    for s in steps {
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
    writeln!(out, "  ({var} has shape {}: n = {n})", shape_text(leaf)).unwrap();
    // A step is on the path from var when one of its operands is.
    let mut on_path: Vec<bool> = Vec::with_capacity(steps.len());
    for s in steps {
        let reads = s.operands.iter().any(|o| match o {
            Operand::Step(j) => on_path[*j],
            Operand::Var(v) => v == var,
            Operand::Num(_) => false,
        });
        on_path.push(reads);
    }
    if !forward {
        let adj = rec.adjoints()?;
        writeln!(
            out,
            "\nReverse accumulation (from z back to {var}; ∂z/∂u is a row (1, size of u)):"
        )
        .unwrap();
        writeln!(out, "  ∂z/∂z = 1  (1,)").unwrap();
        for (i, s) in steps.iter().enumerate().rev() {
            if !on_path[i] {
                continue;
            }
            let ks = s.value.numel();
            for (k, o) in s.operands.iter().enumerate() {
                let (oname, onumel, value) = match o {
                    Operand::Step(j) if on_path[*j] => {
                        (steps[*j].name.clone(), steps[*j].value.numel(), &adj[*j])
                    }
                    Operand::Var(v) if v == var => (v.clone(), n, &adj[steps.len()]),
                    _ => continue,
                };
                writeln!(
                    out,
                    "  ∂z/∂{oname} = ∂z/∂{} · ∂{}/∂{oname}   local ∂{}/∂{oname} = {}   {} = {}{}   value {}",
                    s.name,
                    s.name,
                    s.name,
                    local_rule(s, k, steps),
                    layout(1, onumel),
                    layout(1, ks),
                    layout(ks, onumel),
                    abbreviate(value)
                )
                .unwrap();
            }
        }
        writeln!(
            out,
            "\nGradient: ∂z/∂{var} = {}  (stored in {var}'s shape {})",
            abbreviate(&adj[steps.len()]),
            shape_text(leaf)
        )
        .unwrap();
    } else {
        writeln!(
            out,
            "\nForward accumulation (from {var} to z; ∂u/∂{var} has shape (size of u, n)):"
        )
        .unwrap();
        writeln!(out, "  ∂{var}/∂{var} = I  {}", layout(n, n)).unwrap();
        let x0 = env[var].detach();
        let jacobians = every_step_jacobian(e, env, var, dtype, &x0)?;
        for (i, s) in steps.iter().enumerate() {
            if !on_path[i] {
                continue;
            }
            let j = &jacobians[i];
            let ks = s.value.numel();
            let parts: Vec<String> = s
                .operands
                .iter()
                .enumerate()
                .filter_map(|(k, o)| match o {
                    Operand::Step(jx) if on_path[*jx] => {
                        Some((k, steps[*jx].name.clone(), steps[*jx].value.numel()))
                    }
                    Operand::Var(v) if v == var => Some((k, v.clone(), n)),
                    _ => None,
                })
                .map(|(k, oname, on)| {
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
                abbreviate(j)
            )
            .unwrap();
        }
        let g = func::grad(
            |x: &Tensor| {
                let mut en = env.clone();
                en.insert(var.to_string(), x.clone());
                eval(e, &en, dtype, &mut None)
                    .map_err(|m| chainrule::Error::InvalidArgument { op: "eval", msg: m })
            },
            &x0,
        )
        .map_err(|e| e.to_string())?;
        writeln!(
            out,
            "\nGradient: ∂z/∂{var} = {}  (stored in {var}'s shape {})",
            abbreviate(&g),
            shape_text(leaf)
        )
        .unwrap();
    }
    Ok(out)
}
