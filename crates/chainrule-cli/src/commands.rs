//! `chainrule eval | grad | jacobian | hessian | jvp`: an expression, its
//! value and derivatives in any mode, compared, explained, drawn.

use crate::eval::{all_finite, eval, parse_value, Env, MAX_ELEMENTS};
use crate::expr::{parse, Expr};
use crate::{explain, inputs, svg, symbolic, CliError};
use chainrule::graph::Graph;
use chainrule::{func, DType, Tensor};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

/// How `--mode` computes derivatives.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Reverse accumulation on the implicit graph (back-propagation).
    Reverse,
    /// Forward accumulation with dual tensors.
    Forward,
    /// An explicit graph: traced, differentiated graph to graph, optimized, run.
    Graph,
    /// Central differences (f64 internally).
    Numeric,
    /// The derivative as a formula, then evaluated (grad only).
    Symbolic,
    /// Every mode, side by side.
    Compare,
}

/// The floating-point type `--dtype` names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
}

/// The arguments every subcommand takes: the expression, its variables, and
/// how to compute, explain, draw and print it.
#[derive(Args, Debug, Clone)]
pub struct ExprArgs {
    /// The expression, e.g. "sum((X @ w - y)^2)". It may begin with a
    /// minus sign ("-sum(x^2)"): it is never read as a flag.
    #[arg(allow_hyphen_values = true)]
    pub expr: String,
    /// NAME=VALUE: a number, a nested list (`[1,2]`, `[[1,2],[3,4]]`) or a
    /// generator: randn(d1,…), rand(…), zeros(…), ones(…), eye(n), arange(n).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Named tensors from a .safetensors, .npy (named after the file) or .npz file.
    #[arg(long, value_name = "FILE")]
    pub input: Vec<PathBuf>,
    /// Seed of the generators.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Floating-point type of the variables and the computation.
    #[arg(long, value_enum, default_value_t = DTypeArg::F64)]
    pub dtype: DTypeArg,
    /// How the derivatives are computed.
    #[arg(long, value_enum, default_value_t = Mode::Reverse)]
    pub mode: Mode,
    /// Print the derivation step by step, as the note does.
    #[arg(long)]
    pub explain: bool,
    /// Write the computational graph as Graphviz DOT.
    #[arg(long, value_name = "FILE")]
    pub dot: Option<PathBuf>,
    /// Write the computational graph as SVG (no Graphviz needed).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Machine-readable output: {"value": T, "grad": {...}} with T = {"shape", "data"}.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of the derivative subcommands: [`ExprArgs`] and the
/// variables to differentiate by.
#[derive(Args, Debug, Clone)]
pub struct WrtArgs {
    /// The expression, its variables and the output flags.
    #[command(flatten)]
    pub common: ExprArgs,
    /// The variables to differentiate by (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub wrt: Vec<String>,
    /// The direction of a jvp (a value, as for --set).
    #[arg(long, value_name = "VALUE")]
    pub dir: Option<String>,
}

/// What a subcommand computes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The value of the expression.
    Eval,
    /// The gradient of a single-valued expression.
    Grad,
    /// The Jacobian.
    Jacobian,
    /// The Hessian of a single-valued expression.
    Hessian,
    /// The Jacobian-vector product along `--dir`.
    Jvp,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Eval => "value",
            Kind::Grad => "grad",
            Kind::Jacobian => "jacobian",
            Kind::Hessian => "hessian",
            Kind::Jvp => "jvp",
        }
    }
}

fn input(msg: impl Into<String>) -> CliError {
    CliError::Input(msg.into())
}

fn lib(e: chainrule::Error) -> CliError {
    CliError::Input(e.to_string())
}

fn to_lib(msg: String) -> chainrule::Error {
    chainrule::Error::InvalidArgument { op: "eval", msg }
}

/// The expression and its variables' values.
pub struct Problem {
    /// The parsed expression.
    pub expr: Expr,
    /// Each variable's value.
    pub env: Env,
    /// The dtype of the values and of evaluation.
    pub dtype: DType,
}

/// The [`Problem`] the arguments describe: the parsed expression, and its
/// variables read from the `--input` files, then from `--set` (which wins
/// over a file), all in `--dtype`.
pub fn setup(a: &ExprArgs) -> Result<Problem, CliError> {
    let expr = parse(&a.expr).map_err(|e| {
        input(format!(
            "cannot parse the expression: {}",
            e.render(&a.expr)
        ))
    })?;
    let dtype = match a.dtype {
        DTypeArg::F32 => DType::F32,
        DTypeArg::F64 => DType::F64,
    };
    let mut env = Env::new();
    for path in &a.input {
        for (name, t) in inputs::read(path)? {
            env.insert(name, t.to_dtype(dtype));
        }
    }
    for (i, s) in a.set.iter().enumerate() {
        let Some((name, value)) = s.split_once('=') else {
            return Err(input(format!("--set {s}: expected NAME=VALUE")));
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(input(format!("--set {s}: `{name}` is not a variable name")));
        }
        let t = parse_value(value, dtype, a.seed, i as u64 + 1)
            .map_err(|m| input(format!("--set {name}: {m}")))?;
        env.insert(name.to_string(), t);
    }
    Ok(Problem { expr, env, dtype })
}

fn tensor_json(t: &Tensor) -> Value {
    json!({"shape": t.shape(), "data": t.to_vec_f64()})
}

/// A result as the command prints it: a scalar in full precision, a
/// vector on one line, a matrix or more laid out row by row after its shape.
fn show(t: &Tensor) -> String {
    match t.ndim() {
        0 => format!("{}", t.item()),
        1 => format!("{t:.6}"),
        _ => format!("shape {:?}\n{t:.6}", t.shape()),
    }
}

/// `--explain`'s derivation: one forward pass for all `--wrt` variables
/// (reverse mode derives them all in one backward pass), or one per
/// variable where the derivative is taken variable by variable.
fn explanation(
    p: &Problem,
    kind: Kind,
    wrt: &[String],
    dir: Option<&Tensor>,
    mode: Mode,
) -> Result<String, CliError> {
    let forward = mode == Mode::Forward;
    let target = |vars| explain::Target {
        expr: &p.expr,
        env: &p.env,
        dtype: p.dtype,
        vars,
    };
    let per_var = |f: &dyn Fn(&explain::Target) -> Result<String, String>| {
        wrt.iter()
            .map(|v| f(&target(std::slice::from_ref(v))))
            .collect::<Result<Vec<_>, _>>()
            .map(|parts| parts.join("\n"))
    };
    let text = match kind {
        Kind::Grad | Kind::Jacobian => explain::derivative(&target(wrt), forward),
        Kind::Jvp => per_var(&|t| explain::jvp(t, dir.expect("jvp's --dir was checked"))),
        Kind::Hessian => per_var(&|t| explain::hessian(t, forward)),
        Kind::Eval => Ok(String::new()),
    };
    text.map_err(input)
}

impl Problem {
    fn value(&self) -> Result<Tensor, CliError> {
        chainrule::autograd::no_grad(|| eval(&self.expr, &self.env, self.dtype, &mut None))
            .map_err(input)
    }

    /// `f` of one variable, the others fixed.
    fn of<'a>(&'a self, var: &'a str) -> impl Fn(&Tensor) -> chainrule::Result<Tensor> + 'a {
        move |x: &Tensor| {
            let mut env = self.env.clone();
            env.insert(var.to_string(), x.clone());
            eval(&self.expr, &env, self.dtype, &mut None).map_err(to_lib)
        }
    }

    fn var(&self, name: &str) -> Result<&Tensor, CliError> {
        self.env.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.env.keys().map(String::as_str).collect();
            let hint = crate::expr::did_you_mean(name, &names)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            input(format!("--wrt {name}: no variable `{name}` is set{hint}"))
        })
    }

    /// The traced graph of the expression over every variable.
    fn graph(&self) -> Result<Graph, CliError> {
        let feeds: Vec<(&str, &Tensor)> = self.env.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let names: Vec<String> = self.env.keys().cloned().collect();
        Graph::trace(&feeds, |xs| {
            let env: Env = names.iter().cloned().zip(xs.iter().cloned()).collect();
            Ok(vec![
                eval(&self.expr, &env, self.dtype, &mut None).map_err(to_lib)?
            ])
        })
        .map_err(lib)
    }

    fn feeds(&self) -> Vec<(&str, &Tensor)> {
        self.env.iter().map(|(n, t)| (n.as_str(), t)).collect()
    }
}

/// One result per `--wrt` variable (or one for eval), plus a symbolic
/// expression per variable in symbolic mode.
struct Outcome {
    results: Vec<Tensor>,
    exprs: Vec<String>,
}

fn one_mode(
    p: &Problem,
    kind: Kind,
    wrt: &[String],
    dir: Option<&Tensor>,
    mode: Mode,
) -> Result<Outcome, CliError> {
    let plain = |results| {
        Ok(Outcome {
            results,
            exprs: Vec::new(),
        })
    };
    if kind == Kind::Eval {
        return plain(vec![p.value()?]);
    }
    if mode == Mode::Symbolic && kind != Kind::Grad {
        return Err(input(
            "--mode symbolic differentiates scalar expressions: use it with `grad`",
        ));
    }
    let mut results = Vec::new();
    let mut exprs = Vec::new();
    // Central differences always run in f64, whatever --dtype says.
    let p64 = Problem {
        expr: p.expr.clone(),
        env: p
            .env
            .iter()
            .map(|(k, t)| (k.clone(), t.to_dtype(DType::F64)))
            .collect(),
        dtype: DType::F64,
    };
    for v in wrt {
        let x = p.var(v)?;
        let f = p.of(v);
        let f64_of = p64.of(v);
        let r = match (kind, mode) {
            (Kind::Grad, Mode::Reverse) => func::grad(&f, x).map_err(lib)?,
            (Kind::Grad, Mode::Forward) => func::jacfwd(&f, x).map_err(lib)?.reshape(x.shape()),
            (Kind::Grad, Mode::Graph) => {
                let g = p
                    .graph()?
                    .gradients(0, &[v.as_str()])
                    .map_err(lib)?
                    .optimize()
                    .compile();
                g.run(&p.feeds()).map_err(lib)?.remove(1)
            }
            (Kind::Grad, Mode::Numeric) => numeric_grad(&f64_of, x)?,
            (Kind::Grad, Mode::Symbolic) => {
                let d = symbolic::grad(&p.expr, v, &p.env, p.dtype).map_err(input)?;
                exprs.push(d.to_string());
                let value = chainrule::autograd::no_grad(|| eval(&d, &p.env, p.dtype, &mut None))
                    .map_err(input)?;
                value.try_broadcast_to(x.shape()).map_err(lib)?
            }
            (Kind::Jacobian, Mode::Reverse) => func::jacrev(&f, x).map_err(lib)?,
            (Kind::Jacobian, Mode::Forward) => func::jacfwd(&f, x).map_err(lib)?,
            (Kind::Jacobian, Mode::Graph) => graph_jacobian(p, v, x)?,
            (Kind::Jacobian, Mode::Numeric) => numeric_jacobian(&f64_of, x)?,
            (Kind::Hessian, Mode::Reverse) => func::hessian_rev(&f, x).map_err(lib)?,
            (Kind::Hessian, Mode::Forward) => func::hessian(&f, x).map_err(lib)?,
            (Kind::Hessian, Mode::Graph) => graph_hessian(p, v, x)?,
            (Kind::Hessian, Mode::Numeric) => {
                numeric_jacobian(&|x: &Tensor| func::grad(&f64_of, x), x)?
            }
            (Kind::Jvp, m) => {
                let d = dir.ok_or_else(|| input("jvp needs --dir VALUE (the direction)"))?;
                if d.shape() != x.shape() {
                    return Err(input(format!(
                        "--dir has shape {:?} but {v} has shape {:?}",
                        d.shape(),
                        x.shape()
                    )));
                }
                match m {
                    Mode::Forward => func::jvp(&f, x, d).map_err(lib)?.1,
                    Mode::Reverse => {
                        let j = func::jacrev(&f, x).map_err(lib)?;
                        let (m_, n) = (j.numel() / x.numel().max(1), x.numel());
                        let y_shape: Vec<usize> = j.shape()[..j.ndim() - x.ndim()].to_vec();
                        j.reshape(&[m_, n])
                            .matmul(&d.reshape(&[n]))
                            .reshape(&y_shape)
                    }
                    Mode::Graph => {
                        let feeds = p.feeds();
                        let names: Vec<String> = p.env.keys().cloned().collect();
                        let var = v.clone();
                        let g = Graph::trace(&feeds, |xs| {
                            let k = names
                                .iter()
                                .position(|n| *n == var)
                                .expect("wrt was checked");
                            let (_, t) = func::jvp(
                                |xv: &Tensor| {
                                    let mut env: Env =
                                        names.iter().cloned().zip(xs.iter().cloned()).collect();
                                    env.insert(var.clone(), xv.clone());
                                    eval(&p.expr, &env, p.dtype, &mut None).map_err(to_lib)
                                },
                                &xs[k],
                                d,
                            )?;
                            Ok(vec![t])
                        })
                        .map_err(lib)?;
                        g.optimize().compile().run(&feeds).map_err(lib)?.remove(0)
                    }
                    Mode::Numeric => {
                        let h = 1e-6;
                        let at = |s: f64| -> Result<Tensor, CliError> {
                            f64_of(&(x.to_dtype(DType::F64) + d.to_dtype(DType::F64) * s))
                                .map_err(lib)
                        };
                        ((at(h)? - at(-h)?) / (2.0 * h)).to_dtype(p.dtype)
                    }
                    _ => unreachable!("checked above"),
                }
            }
            (_, Mode::Compare) | (Kind::Eval, _) | (_, Mode::Symbolic) => {
                unreachable!("handled by the caller")
            }
        };
        results.push(r);
    }
    Ok(Outcome { results, exprs })
}

fn numeric_grad(
    f: &dyn Fn(&Tensor) -> chainrule::Result<Tensor>,
    x: &Tensor,
) -> Result<Tensor, CliError> {
    let j = numeric_jacobian(f, x)?;
    if j.numel() != x.numel() {
        return Err(input(format!(
            "grad needs an expression with a single value, this one has {} values (use jacobian)",
            j.numel() / x.numel().max(1)
        )));
    }
    Ok(j.reshape(x.shape()))
}

/// Central differences in f64, whatever the dtype: `(f(x+h) − f(x−h)) / 2h`.
fn numeric_jacobian(
    f: &dyn Fn(&Tensor) -> chainrule::Result<Tensor>,
    x: &Tensor,
) -> Result<Tensor, CliError> {
    let x64 = x.to_dtype(DType::F64).to_vec_f64();
    let h = 1e-6;
    let mut cols = Vec::with_capacity(x64.len());
    let mut y_shape = Vec::new();
    for j in 0..x64.len() {
        let mut probe = |s: f64| -> Result<Vec<f64>, CliError> {
            let mut v = x64.clone();
            v[j] += s;
            let t = Tensor::from_vec(v, x.shape());
            let y = chainrule::autograd::no_grad(|| f(&t)).map_err(lib)?;
            y_shape = y.shape().to_vec();
            Ok(y.to_vec_f64())
        };
        let (plus, minus) = (probe(h)?, probe(-h)?);
        cols.push(
            plus.iter()
                .zip(&minus)
                .map(|(a, b)| (a - b) / (2.0 * h))
                .collect::<Vec<f64>>(),
        );
    }
    if x64.is_empty() {
        y_shape = chainrule::autograd::no_grad(|| f(x))
            .map_err(lib)?
            .shape()
            .to_vec();
    }
    let m: usize = y_shape.iter().product();
    let mut data = vec![0.0; m * x64.len()];
    for (j, col) in cols.iter().enumerate() {
        for (i, v) in col.iter().enumerate() {
            data[i * x64.len() + j] = *v;
        }
    }
    let shape: Vec<usize> = y_shape.iter().chain(x.shape()).copied().collect();
    Ok(Tensor::from_vec(data, &shape).to_dtype(x.dtype()))
}

/// The Jacobian of output `output` of graph `g` with respect to input `v`,
/// row by row: row `i` is the gradient graph of that output's element `i`.
/// Shape: the output's shape followed by `x`'s.
fn graph_rows(
    p: &Problem,
    g: &Graph,
    output: usize,
    v: &str,
    x: &Tensor,
) -> Result<Tensor, CliError> {
    let y_shape = g.output_shapes()[output].clone();
    let m: usize = y_shape.iter().product();
    let shape: Vec<usize> = y_shape.iter().chain(x.shape()).copied().collect();
    if m == 0 {
        return Ok(Tensor::zeros(&shape, x.dtype()));
    }
    let mut rows = Vec::with_capacity(m);
    for i in 0..m {
        let gi = g
            .map_outputs(|_, o| Ok(vec![o[output].reshape(&[m]).narrow(0, i, 1).sum()]))
            .and_then(|gi| gi.gradients(0, &[v]))
            .map_err(lib)?;
        let run = gi.optimize().compile().run(&p.feeds()).map_err(lib)?;
        rows.push(run[1].reshape(&[x.numel()]));
    }
    let refs: Vec<&Tensor> = rows.iter().collect();
    Tensor::stack(&refs, 0).try_reshape(&shape).map_err(lib)
}

/// The Jacobian from the graph.
fn graph_jacobian(p: &Problem, v: &str, x: &Tensor) -> Result<Tensor, CliError> {
    graph_rows(p, &p.graph()?, 0, v, x)
}

/// The Hessian from the graph: the Jacobian of the gradient graph's output.
fn graph_hessian(p: &Problem, v: &str, x: &Tensor) -> Result<Tensor, CliError> {
    let g1 = p.graph()?.gradients(0, &[v]).map_err(lib)?;
    graph_rows(p, &g1, 1, v, x)
}

/// Jacobians and Hessians are sized before they are computed: each holds
/// (value size × variable size) or (variable size)² entries.
fn check_result_sizes(
    p: &Problem,
    kind: Kind,
    wrt: &[String],
    value: &Tensor,
) -> Result<(), CliError> {
    for v in wrt {
        let n = p.var(v)?.numel();
        let entries = match kind {
            Kind::Jacobian => value.numel().checked_mul(n),
            Kind::Hessian => n.checked_mul(n),
            _ => Some(n),
        };
        if entries.is_none_or(|e| e > MAX_ELEMENTS) {
            return Err(input(format!(
                "the {} by {v} would have {} entries, over the command's limit of {MAX_ELEMENTS}",
                kind.key(),
                entries.map_or("too many".to_string(), |e| e.to_string())
            )));
        }
    }
    Ok(())
}

/// A derivative with a NaN or an infinity where the value and the inputs
/// are finite is an error, as such a value is: for `grad`, naming the first
/// op (from the output back) whose derivative rule produced it.
fn check_finite_derivatives(
    p: &Problem,
    kind: Kind,
    wrt: &[String],
    value: &Tensor,
    results: &[Tensor],
) -> Result<(), CliError> {
    if kind == Kind::Eval || !all_finite(value) || !p.env.values().all(all_finite) {
        return Ok(());
    }
    for (v, r) in wrt.iter().zip(results) {
        if all_finite(r) {
            continue;
        }
        let culprit = if kind == Kind::Grad {
            explain::first_non_finite_rule(&p.expr, &p.env, v, p.dtype).unwrap_or_default()
        } else {
            String::new()
        };
        return Err(input(format!(
            "the {} by {v} has a NaN or infinity although the value and the inputs are finite{culprit}",
            kind.key()
        )));
    }
    Ok(())
}

fn max_abs_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            x.to_vec_f64()
                .into_iter()
                .zip(y.to_vec_f64())
                .map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f64::max)
}

/// Runs one subcommand: the expression's value and its derivatives by each
/// `--wrt` variable in the chosen mode, with the graph files, explanation
/// and output (text or JSON) its flags ask for.
pub fn run(
    kind: Kind,
    common: &ExprArgs,
    wrt: &[String],
    dir: Option<&str>,
) -> Result<(), CliError> {
    let p = setup(common)?;
    let dir = match dir {
        Some(d) => Some(
            parse_value(d, p.dtype, common.seed, 999).map_err(|m| input(format!("--dir: {m}")))?,
        ),
        None => None,
    };
    if kind == Kind::Jvp && dir.is_none() {
        return Err(input("jvp needs --dir VALUE (the direction)"));
    }
    if kind != Kind::Eval && wrt.is_empty() {
        return Err(input("name the variables to differentiate by with --wrt"));
    }
    for v in wrt {
        p.var(v)?;
    }
    let value = p.value()?;
    check_result_sizes(&p, kind, wrt, &value)?;
    if matches!(kind, Kind::Grad | Kind::Hessian) && value.numel() != 1 {
        return Err(input(format!(
            "{} needs an expression with a single value, this one has shape {:?} (use jacobian)",
            kind.key(),
            value.shape()
        )));
    }

    // graph files
    if common.dot.is_some() || common.svg.is_some() {
        let mut g = p.graph()?;
        // The expression's own outputs; gradients, when added, come after.
        let forward_outputs = g.num_outputs();
        if kind != Kind::Eval && value.numel() == 1 {
            let names: Vec<&str> = wrt.iter().map(String::as_str).collect();
            g = g.gradients(0, &names).map_err(lib)?;
        }
        let g = g.optimize();
        if let Some(path) = &common.dot {
            write_file(path, g.to_dot().as_bytes())?;
        }
        if let Some(path) = &common.svg {
            let options = svg::Options {
                forward_outputs,
                values: Some(g.example_values().map_err(lib)?),
            };
            write_file(path, svg::render(&g, &options).as_bytes())?;
        }
    }

    if common.mode == Mode::Compare {
        return compare(&p, kind, wrt, dir.as_ref(), &value, common.json);
    }
    let out = one_mode(&p, kind, wrt, dir.as_ref(), common.mode)?;
    if common.mode != Mode::Numeric {
        check_finite_derivatives(&p, kind, wrt, &value, &out.results)?;
    }
    if common.explain && kind != Kind::Eval {
        let text = explanation(&p, kind, wrt, dir.as_ref(), common.mode)?;
        if common.json {
            eprint!("{text}");
        } else {
            println!("{text}");
        }
    }
    if common.json {
        let mut j = json!({"value": tensor_json(&value)});
        if kind != Kind::Eval {
            let per: serde_json::Map<String, Value> = wrt
                .iter()
                .cloned()
                .zip(out.results.iter().map(tensor_json))
                .collect();
            j[kind.key()] = Value::Object(per);
        }
        if !out.exprs.is_empty() {
            let per: serde_json::Map<String, Value> = wrt
                .iter()
                .cloned()
                .zip(out.exprs.iter().map(|e| Value::String(e.clone())))
                .collect();
            j["expr"] = Value::Object(per);
        }
        println!("{j}");
        return Ok(());
    }
    if kind == Kind::Eval {
        println!("{}", show(&value));
        return Ok(());
    }
    if !common.explain {
        println!("value: {}", show(&value));
    }
    for (i, v) in wrt.iter().enumerate() {
        if let Some(e) = out.exprs.get(i) {
            println!("∂/∂{v} = {e}");
        }
        let label = match kind {
            Kind::Grad => format!("grad {v}"),
            Kind::Jacobian => format!("jacobian by {v}"),
            Kind::Hessian => format!("hessian by {v}"),
            Kind::Jvp => format!("jvp along --dir in {v}"),
            Kind::Eval => unreachable!(),
        };
        println!("{label}: {}", show(&out.results[i]));
    }
    Ok(())
}

/// One mode's outcome and its time in ms, or why it is not available.
type Timed = Result<(Outcome, f64), String>;

fn compare(
    p: &Problem,
    kind: Kind,
    wrt: &[String],
    dir: Option<&Tensor>,
    value: &Tensor,
    json_out: bool,
) -> Result<(), CliError> {
    let mut modes = vec![Mode::Reverse, Mode::Forward, Mode::Graph, Mode::Numeric];
    if kind == Kind::Grad {
        modes.push(Mode::Symbolic);
    }
    let mut rows: Vec<(Mode, Timed)> = Vec::new();
    for m in modes {
        let t = Instant::now();
        let r = one_mode(p, kind, wrt, dir, m)
            .map(|o| (o, t.elapsed().as_secs_f64() * 1e3))
            .map_err(|e| match e {
                CliError::Input(s) | CliError::Internal(s) => s,
                CliError::Reported(code) => format!("failed with exit code {code}"),
            });
        rows.push((m, r));
    }
    let reference = match &rows[0].1 {
        Ok((o, _)) => o.results.clone(),
        Err(e) => return Err(input(e.clone())),
    };
    check_finite_derivatives(p, kind, wrt, value, &reference)?;
    if json_out {
        let list: Vec<Value> = rows
            .iter()
            .map(|(m, r)| match r {
                Ok((o, ms)) => json!({
                    "mode": format!("{m:?}").to_lowercase(),
                    "max_abs_diff_from_reverse": max_abs_diff(&o.results, &reference),
                    "ms": ms,
                    "expr": o.exprs,
                    "expr_size": o.exprs.iter().map(|e| parse(e).map(|x| x.size()).unwrap_or(0)).sum::<usize>(),
                }),
                Err(e) => json!({"mode": format!("{m:?}").to_lowercase(), "error": e}),
            })
            .collect();
        let per: serde_json::Map<String, Value> = wrt
            .iter()
            .cloned()
            .zip(reference.iter().map(tensor_json))
            .collect();
        println!(
            "{}",
            json!({"value": tensor_json(value), kind.key(): per, "compare": list})
        );
        return Ok(());
    }
    println!("value: {}", show(value));
    for (v, r) in wrt.iter().zip(&reference) {
        println!("{} {v} (reverse mode): {}", kind.key(), show(r));
    }
    println!("\n| mode | max abs. difference from reverse | time | derivative expression |");
    println!("|---|---|---|---|");
    for (m, r) in &rows {
        let name = format!("{m:?}").to_lowercase();
        match r {
            Ok((o, ms)) => {
                let expr = if o.exprs.is_empty() {
                    "–".to_string()
                } else {
                    let size: usize = o
                        .exprs
                        .iter()
                        .map(|e| parse(e).map(|x| x.size()).unwrap_or(0))
                        .sum();
                    format!("{} ({size} nodes)", o.exprs.join("; "))
                };
                println!(
                    "| {name} | {:.3e} | {ms:.3} ms | {} |",
                    max_abs_diff(&o.results, &reference),
                    table_cell(&expr)
                );
            }
            Err(e) => println!("| {name} | not available: {} | | |", table_cell(e)),
        }
    }
    Ok(())
}

/// Text that stays inside one cell of a Markdown table.
fn table_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), CliError> {
    chainrule::files::replace_file_with_bytes(path, bytes).map_err(lib)
}

/// Numbers for the fuzz test: evaluate an expression string on a fixed
/// environment, returning an error string instead of panicking.
pub fn evaluate_str(src: &str, env: &Env) -> Result<Tensor, String> {
    let e = parse(src).map_err(|e| e.render(src))?;
    eval(&e, env, DType::F64, &mut None)
}
