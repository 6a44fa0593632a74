//! Evaluating expressions on tensors, and the values variables are set to
//! (`--set NAME=VALUE`, `--input FILE`).

use crate::expr::{did_you_mean, BinOp, Expr};
use crate::functions::Kind;
use chainrule::{DType, Tensor};
use std::collections::BTreeMap;

/// Variables by name.
pub type Env = BTreeMap<String, Tensor>;

/// One evaluated operation, for `--explain`: its intermediate name, the
/// expression it computes and its value.
#[derive(Clone, Debug)]
pub struct Step {
    /// The intermediate's name (see [`step_name`]).
    pub name: String,
    /// The subexpression the op computes.
    pub expr: Expr,
    /// The op as the note writes it, on the names of its operands.
    pub text: String,
    /// The op's value.
    pub value: Tensor,
    /// Indices of the steps (or variables, as `Err(name)`) it reads.
    pub operands: Vec<Operand>,
}

/// What a [`Step`] reads: an earlier step, a variable or a number.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// The step at this index.
    Step(usize),
    /// The variable of this name.
    Var(String),
    /// A number literal.
    Num(f64),
}

fn err(msg: impl Into<String>) -> String {
    msg.into()
}

/// Evaluates `e` with the tensor API (so reverse mode records, dual tensors
/// carry tangents and a graph trace records, depending on the inputs).
/// `steps`, when given, receives every op in evaluation order. A NaN or
/// infinity appearing from finite operands is an error naming that op.
pub fn eval(
    e: &Expr,
    env: &Env,
    dtype: DType,
    steps: &mut Option<Vec<Step>>,
) -> Result<Tensor, String> {
    eval_node(e, env, dtype, steps, &mut None).map(|(t, _)| t)
}

/// The shape of every subexpression of `e` (by address), from one
/// evaluation.
pub type Shapes = std::collections::HashMap<*const Expr, Vec<usize>>;

/// The [`Shapes`] of `e`'s subexpressions, from one evaluation without
/// recording.
pub fn eval_shapes(e: &Expr, env: &Env, dtype: DType) -> Result<Shapes, String> {
    let mut shapes = Some(Shapes::new());
    chainrule::autograd::no_grad(|| eval_node(e, env, dtype, &mut None, &mut shapes))?;
    Ok(shapes.unwrap_or_default())
}

fn eval_node(
    e: &Expr,
    env: &Env,
    dtype: DType,
    steps: &mut Option<Vec<Step>>,
    shapes: &mut Option<Shapes>,
) -> Result<(Tensor, Operand), String> {
    let (value, operand) = eval_op(e, env, dtype, steps, shapes)?;
    if let Some(s) = shapes {
        s.insert(e as *const Expr, value.shape().to_vec());
    }
    Ok((value, operand))
}

fn eval_op(
    e: &Expr,
    env: &Env,
    dtype: DType,
    steps: &mut Option<Vec<Step>>,
    shapes: &mut Option<Shapes>,
) -> Result<(Tensor, Operand), String> {
    let (args, operands): (Vec<Tensor>, Vec<Operand>) = match e {
        Expr::Num(v) => return Ok((Tensor::full(&[], *v, dtype), Operand::Num(*v))),
        Expr::Var(name) => {
            return match env.get(name) {
                Some(t) => Ok((t.clone(), Operand::Var(name.clone()))),
                None => {
                    let names: Vec<&str> = env.keys().map(String::as_str).collect();
                    let hint = did_you_mean(name, &names)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_else(|| {
                            format!(
                                " (set it with --set {name}=VALUE; defined: {})",
                                names.join(", ")
                            )
                        });
                    Err(err(format!("unknown variable `{name}`{hint}")))
                }
            }
        }
        Expr::Neg(a) | Expr::Transpose(a) => {
            let (t, o) = eval_node(a, env, dtype, steps, shapes)?;
            (vec![t], vec![o])
        }
        Expr::Bin(_, a, b) => {
            let (ta, oa) = eval_node(a, env, dtype, steps, shapes)?;
            let (tb, ob) = eval_node(b, env, dtype, steps, shapes)?;
            (vec![ta, tb], vec![oa, ob])
        }
        Expr::Call(_, args) => {
            let mut ts = Vec::new();
            let mut os = Vec::new();
            for a in args {
                let (t, o) = eval_node(a, env, dtype, steps, shapes)?;
                ts.push(t);
                os.push(o);
            }
            (ts, os)
        }
    };
    let (value, op_name) = apply(e, &args)?;
    if !all_finite(&value) && args.iter().all(all_finite) {
        return Err(err(format!(
            "`{op_name}` produced a NaN or infinity, the first op to do so: `{e}` (its operands were finite)"
        )));
    }
    let operand = match steps {
        Some(s) => {
            let index = s.len();
            let name = step_name(index, env);
            let text = describe(e, &operands, s);
            s.push(Step {
                name,
                expr: e.clone(),
                text,
                value: value.clone(),
                operands,
            });
            Operand::Step(index)
        }
        None => Operand::Num(f64::NAN),
    };
    Ok((value, operand))
}

/// Whether every entry of `t` is finite (no NaN, no infinity).
pub fn all_finite(t: &Tensor) -> bool {
    t.to_vec_f64().iter().all(|v| v.is_finite())
}

/// Names an explanation keeps for outputs: `z` for the expression, `g` for
/// its gradient (the Hessian's explanation); no intermediate takes them.
pub const OUTPUT_NAMES: [&str; 2] = ["z", "g"];

/// The `i`-th intermediate's name: `a, b, …, y, a1, b1, …` as the note
/// names them, skipping every variable's name and [`OUTPUT_NAMES`], so a
/// step never shares a name with something the user wrote.
pub fn step_name(i: usize, env: &Env) -> String {
    let mut taken: Vec<usize> = env
        .keys()
        .map(String::as_str)
        .chain(OUTPUT_NAMES)
        .filter_map(candidate_index)
        .collect();
    taken.sort_unstable();
    taken.dedup();
    // The i-th candidate not taken: each taken one at or before it moves it on.
    let mut c = i;
    for t in taken {
        if t <= c {
            c += 1;
        }
    }
    let letter = (b'a' + (c % 26) as u8) as char;
    match c / 26 {
        0 => letter.to_string(),
        round => format!("{letter}{round}"),
    }
}

/// Where `name` is in the sequence `a, …, z, a1, …, z1, a2, …` (if it is).
fn candidate_index(name: &str) -> Option<usize> {
    let mut chars = name.chars();
    let letter = chars.next().filter(char::is_ascii_lowercase)?;
    let digits = chars.as_str();
    let round = match digits {
        "" => 0,
        d if !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit()) => d.parse().ok()?,
        _ => return None,
    };
    Some(26 * round + (letter as u8 - b'a') as usize)
}

/// The name of an output in an explanation: `preferred` unless a variable
/// has it, else `out`, `out1`, … (never an intermediate's name).
pub fn output_name(env: &Env, preferred: &str) -> String {
    std::iter::once(preferred.to_string())
        .chain(std::iter::once("out".to_string()))
        .chain((1..).map(|k| format!("out{k}")))
        .find(|n| !env.contains_key(n))
        .expect("an unbounded sequence of names")
}

fn operand_text(o: &Operand, steps: &[Step]) -> String {
    match o {
        Operand::Step(i) => steps[*i].name.clone(),
        Operand::Var(v) => v.clone(),
        Operand::Num(v) => Expr::Num(*v).to_string(),
    }
}

fn describe(e: &Expr, operands: &[Operand], steps: &[Step]) -> String {
    let t: Vec<String> = operands.iter().map(|o| operand_text(o, steps)).collect();
    let shallow = match e {
        Expr::Neg(_) => Expr::Neg(std::rc::Rc::new(Expr::Var(t[0].clone()))),
        Expr::Transpose(_) => Expr::Transpose(std::rc::Rc::new(Expr::Var(t[0].clone()))),
        Expr::Bin(op, _, _) => Expr::Bin(
            *op,
            std::rc::Rc::new(Expr::Var(t[0].clone())),
            std::rc::Rc::new(Expr::Var(t[1].clone())),
        ),
        Expr::Call(name, _) => Expr::Call(
            name.clone(),
            t.iter().map(|s| Expr::Var(s.clone())).collect(),
        ),
        other => other.clone(),
    };
    shallow.to_string()
}

fn axis_arg(name: &str, args: &[Tensor], e: &Expr) -> Result<Option<usize>, String> {
    let Expr::Call(_, exprs) = e else {
        return Ok(None);
    };
    let takes_axis = matches!(
        name,
        "sum" | "mean" | "max" | "min" | "softmax" | "log_softmax" | "logsumexp"
    );
    if exprs.len() < 2 || !takes_axis {
        return Ok(None);
    }
    // An integer, negative ones counting from the last axis (`-1`).
    let axis = match &exprs[1] {
        Expr::Num(v) if v.fract() == 0.0 => *v,
        Expr::Neg(inner) => match inner.as_ref() {
            Expr::Num(v) if v.fract() == 0.0 => -*v,
            _ => f64::NAN,
        },
        _ => f64::NAN,
    };
    let ndim = args[0].ndim() as f64;
    if !(-ndim..ndim).contains(&axis) {
        return Err(err(format!(
            "{name}: the axis must be an integer in -{ndim}..{ndim} for a tensor of shape {:?}, got `{}`",
            args[0].shape(),
            exprs[1]
        )));
    }
    Ok(Some(if axis < 0.0 { axis + ndim } else { axis } as usize))
}

/// One op on its evaluated operands: the result and the op's name.
fn apply(e: &Expr, a: &[Tensor]) -> Result<(Tensor, String), String> {
    let s = |r: chainrule::Result<Tensor>| r.map_err(|e| e.to_string());
    Ok(match e {
        Expr::Neg(_) => (a[0].neg(), "neg".into()),
        Expr::Transpose(_) => {
            let t = match a[0].ndim() {
                0 | 1 => a[0].clone(),
                n => s(a[0].try_transpose(n - 2, n - 1))?,
            };
            (t, "transpose".into())
        }
        Expr::Bin(op, _, exponent) => {
            let (x, y) = (&a[0], &a[1]);
            let r = match op {
                BinOp::Add => s(x.try_add(y))?,
                BinOp::Sub => s(x.try_sub(y))?,
                BinOp::Mul => s(x.try_mul(y))?,
                BinOp::Div => s(x.try_div(y))?,
                // A literal exponent is a constant (`powf`); any other is a
                // tensor the derivative flows into.
                BinOp::Pow => match **exponent {
                    Expr::Num(c) => x.powf(c),
                    _ => s(x.try_pow(y))?,
                },
                BinOp::MatMul => s(x.try_matmul(y))?,
            };
            let name = match op {
                BinOp::Add => "add",
                BinOp::Sub => "sub",
                BinOp::Mul => "mul",
                BinOp::Div => "div",
                BinOp::Pow => "pow",
                BinOp::MatMul => "matmul",
            };
            (r, name.into())
        }
        Expr::Call(name, _) => {
            let x = &a[0];
            match crate::functions::lookup(name).map(|f| f.kind) {
                Some(Kind::Unary(op)) => return Ok((op.apply(x), name.clone())),
                Some(Kind::Binary(op)) => return Ok((s(op.apply(x, &a[1]))?, name.clone())),
                _ => {}
            }
            let axis = axis_arg(name, a, e)?;
            let r = match crate::functions::lookup(name).map(|f| f.kind) {
                Some(Kind::Own(own)) => (own.eval)(a, axis)?,
                _ => return Err(err(format!("unknown function `{name}`"))),
            };
            (r, name.clone())
        }
        Expr::Num(_) | Expr::Var(_) => unreachable!("leaves are handled by the caller"),
    })
}

// ---------------------------------------------------------------------------
// Values: `--set NAME=VALUE`
// ---------------------------------------------------------------------------

/// The most elements the command accepts in one value, and in one result
/// (a Jacobian or Hessian is sized before it is computed).
pub const MAX_ELEMENTS: usize = 50_000_000;

/// The product of `dims`, or `None` when it overflows.
pub fn element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// A value as written after `=`: a number, a nested list, or a generator
/// (`randn(2,3)`, `rand(…)`, `zeros(…)`, `ones(…)`, `eye(n)`, `arange(n)`).
/// Each generator draws from its own seed, derived from `seed` and `salt`.
pub fn parse_value(text: &str, dtype: DType, seed: u64, salt: u64) -> Result<Tensor, String> {
    let t = text.trim();
    if let Some(open) = t.find('(') {
        let name = t[..open].trim();
        let Some(inner) = t[open + 1..].strip_suffix(')') else {
            return Err(err(format!("`{t}`: a generator call must end with `)`")));
        };
        let dims: Vec<usize> = if inner.trim().is_empty() {
            Vec::new()
        } else {
            inner
                .split(',')
                .map(|d| {
                    d.trim().parse::<usize>().map_err(|_| {
                        err(format!(
                            "`{t}`: `{}` is not a dimension (a non-negative integer)",
                            d.trim()
                        ))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        // The result's shape (eye(n) is n × n), sized before it is made.
        let shape = match (name, dims.as_slice()) {
            ("eye", &[n]) => vec![n, n],
            ("eye" | "arange", d) if d.len() != 1 => {
                return Err(err(format!("`{t}`: {name} takes one size")))
            }
            _ => dims.clone(),
        };
        if element_count(&shape).is_none_or(|n| n > MAX_ELEMENTS) {
            return Err(err(format!(
                "`{t}`: more than {MAX_ELEMENTS} elements (the command's limit)"
            )));
        }
        let s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(salt);
        let made = match name {
            "randn" => Tensor::try_rand_normal(&dims, 0.0, 1.0, s, dtype),
            "rand" => Tensor::try_rand_uniform(&dims, 0.0, 1.0, s, dtype),
            "zeros" => Tensor::try_zeros(&dims, dtype),
            "ones" => Tensor::try_ones(&dims, dtype),
            "eye" => Tensor::try_eye(dims[0], dtype),
            "arange" => Tensor::try_arange(dims[0], dtype),
            other => {
                let hint =
                    did_you_mean(other, &["randn", "rand", "zeros", "ones", "eye", "arange"])
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                return Err(err(format!(
                    "`{t}`: unknown generator `{other}`{hint}; use randn, rand, zeros, ones, eye or arange"
                )));
            }
        };
        return made.map_err(|e| err(format!("`{t}`: {e}")));
    }
    if t.starts_with('[') {
        let (data, shape) = parse_list(t)?;
        return Tensor::try_from_vec(data, &shape)
            .map(|x| x.to_dtype(dtype))
            .map_err(|e| e.to_string());
    }
    t.parse::<f64>()
        .map(|v| Tensor::full(&[], v, dtype))
        .map_err(|_| {
            err(format!(
                "`{t}` is not a number, a list like [1,2] or a generator like randn(3)"
            ))
        })
}

/// A nested list of numbers: its values row-major and its shape (ragged
/// lists are an error).
fn parse_list(text: &str) -> Result<(Vec<f64>, Vec<usize>), String> {
    fn item(chars: &[char], i: &mut usize, depth: usize) -> Result<(Vec<f64>, Vec<usize>), String> {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
        if depth > 32 {
            return Err(err("lists nest too deeply"));
        }
        if chars.get(*i) == Some(&'[') {
            *i += 1;
            let mut values = Vec::new();
            let mut inner: Option<Vec<usize>> = None;
            let mut count = 0;
            loop {
                while *i < chars.len() && chars[*i].is_whitespace() {
                    *i += 1;
                }
                if chars.get(*i) == Some(&']') {
                    *i += 1;
                    break;
                }
                let (v, s) = item(chars, i, depth + 1)?;
                match &inner {
                    None => inner = Some(s),
                    Some(prev) if *prev != s => {
                        return Err(err("the list is ragged: its items differ in shape"))
                    }
                    _ => {}
                }
                values.extend(v);
                count += 1;
                while *i < chars.len() && chars[*i].is_whitespace() {
                    *i += 1;
                }
                match chars.get(*i) {
                    Some(',') => *i += 1,
                    Some(']') => {}
                    _ => return Err(err("expected `,` or `]` in the list")),
                }
            }
            let mut shape = vec![count];
            shape.extend(inner.unwrap_or_default());
            Ok((values, shape))
        } else {
            let start = *i;
            while *i < chars.len() && !matches!(chars[*i], ',' | ']' | '[') {
                *i += 1;
            }
            let s: String = chars[start..*i].iter().collect();
            let v = s
                .trim()
                .parse::<f64>()
                .map_err(|_| err(format!("`{}` in the list is not a number", s.trim())))?;
            Ok((vec![v], Vec::new()))
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let out = item(&chars, &mut i, 0)?;
    if chars[i..].iter().any(|c| !c.is_whitespace()) {
        return Err(err("unexpected text after the list"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The command's own functions (rows of `functions::table`)
// ---------------------------------------------------------------------------

fn lib(r: chainrule::Result<Tensor>) -> Result<Tensor, String> {
    r.map_err(|e| e.to_string())
}

/// `axis`, or every axis of `x`.
fn axes(x: &Tensor, axis: Option<usize>) -> Vec<usize> {
    axis.map_or_else(|| (0..x.ndim()).collect(), |a| vec![a])
}

/// `dot(x, y)`: the inner product of two vectors.
pub fn eval_dot(a: &[Tensor], _: Option<usize>) -> Result<Tensor, String> {
    lib(a[0].try_dot(&a[1]))
}
/// `sum(x[, axis])`: the sum along the axis, or of all elements.
pub fn eval_sum(a: &[Tensor], axis: Option<usize>) -> Result<Tensor, String> {
    lib(a[0].try_sum_axes(&axes(&a[0], axis), false))
}
/// `mean(x[, axis])`: the mean along the axis, or of all elements.
pub fn eval_mean(a: &[Tensor], axis: Option<usize>) -> Result<Tensor, String> {
    lib(a[0].try_mean_axes(&axes(&a[0], axis), false))
}
/// `max(x[, axis])`: the maximum along the axis, or of all elements; an
/// error for an empty tensor.
pub fn eval_max(a: &[Tensor], axis: Option<usize>) -> Result<Tensor, String> {
    if a[0].numel() == 0 {
        return Err(err("max of an empty tensor"));
    }
    lib(a[0].try_max_axes(&axes(&a[0], axis), false))
}
/// `min(x[, axis])`: the minimum along the axis, or of all elements; an
/// error for an empty tensor.
pub fn eval_min(a: &[Tensor], axis: Option<usize>) -> Result<Tensor, String> {
    if a[0].numel() == 0 {
        return Err(err("min of an empty tensor"));
    }
    lib(a[0].try_min_axes(&axes(&a[0], axis), false))
}
/// `norm(x)`: the Euclidean norm of all elements.
pub fn eval_norm(a: &[Tensor], _: Option<usize>) -> Result<Tensor, String> {
    Ok(a[0].norm())
}
/// `step(x)`: the unit step, 1 where `x > 0` and 0 elsewhere, in `x`'s dtype.
pub fn eval_step(a: &[Tensor], _: Option<usize>) -> Result<Tensor, String> {
    Ok(a[0].gt_scalar(0.0).to_dtype(a[0].dtype()))
}

/// The axis of a softmax-like function: the last unless given.
fn softmax_axis(name: &str, x: &Tensor, axis: Option<usize>) -> Result<usize, String> {
    if x.ndim() == 0 {
        return Err(err(format!(
            "{name} needs a tensor of at least one axis, got a scalar"
        )));
    }
    Ok(axis.unwrap_or(x.ndim() - 1))
}
/// `softmax(x[, axis])`: softmax along the axis (the last by default).
pub fn eval_softmax(a: &[Tensor], axis: Option<usize>) -> Result<Tensor, String> {
    lib(a[0].try_softmax(softmax_axis("softmax", &a[0], axis)?))
}
/// `log_softmax(x[, axis])`: log-softmax along the axis (the last by
/// default).
pub fn eval_log_softmax(a: &[Tensor], axis: Option<usize>) -> Result<Tensor, String> {
    lib(a[0].try_log_softmax(softmax_axis("log_softmax", &a[0], axis)?))
}
/// `logsumexp(x[, axis])`: log-sum-exp along the axis (the last by
/// default), which it removes.
pub fn eval_logsumexp(a: &[Tensor], axis: Option<usize>) -> Result<Tensor, String> {
    lib(a[0].try_logsumexp(softmax_axis("logsumexp", &a[0], axis)?, false))
}
/// `outer(x, y)`: the outer product of two vectors.
pub fn eval_outer(a: &[Tensor], _: Option<usize>) -> Result<Tensor, String> {
    let (x, y) = (&a[0], &a[1]);
    if x.ndim() != 1 || y.ndim() != 1 {
        return Err(err(format!(
            "outer: needs two vectors, got shapes {:?} and {:?}",
            x.shape(),
            y.shape()
        )));
    }
    lib(x.unsqueeze(1).try_mul(&y.unsqueeze(0)))
}
