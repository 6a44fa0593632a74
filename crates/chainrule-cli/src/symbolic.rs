//! Symbolic differentiation: the gradient of a scalar expression as another
//! expression in the same language, by reverse accumulation over the syntax
//! tree, then simplified. This is the note's contrast: the result is a
//! formula (which may swell), where autodiff computes numbers.

use crate::eval::{eval_shapes, Env, Shapes};
use crate::expr::{BinOp, Expr};
use crate::functions::{partial_expr, Kind};
use chainrule::rules::ElementwiseBinary;
use chainrule::DType;
use std::collections::HashMap;
use std::rc::Rc;

fn num(v: f64) -> Expr {
    Expr::Num(v)
}
fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::Bin(op, Rc::new(a), Rc::new(b))
}
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Call(name.into(), args)
}
fn neg(a: Expr) -> Expr {
    Expr::Neg(Rc::new(a))
}
fn step(a: Expr) -> Expr {
    call("step", vec![a])
}
/// `1` where `a = 0`, else `0`: `1 − step(a) − step(−a)`.
fn is_zero(a: Expr) -> Expr {
    bin(
        BinOp::Sub,
        bin(BinOp::Sub, num(1.0), step(a.clone())),
        step(neg(a)),
    )
}
fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n {
                a[i + a.len() - n]
            } else {
                1
            };
            let db = if i + b.len() >= n {
                b[i + b.len() - n]
            } else {
                1
            };
            da.max(db)
        })
        .collect()
}

/// An adjoint expression and its shape (it may be smaller than its node's
/// shape: a scalar adjoint broadcasts).
#[derive(Clone)]
pub struct Adj(Expr, Vec<usize>);

/// Reverse accumulation over an expression, toward one variable.
pub struct Ctx<'a> {
    var: &'a str,
    shapes: Shapes,
    /// Whether each visited subexpression reads `var` (by address).
    reads_var: HashMap<*const Expr, bool>,
    acc: Option<Adj>,
}

fn unsupported<T>(what: &str) -> Result<T, String> {
    Err(format!(
        "symbolic mode cannot write the derivative of {what} in this language; use --mode reverse (or forward) for its value"
    ))
}

impl Ctx<'_> {
    /// The adjoints of a library row of two arguments: `g ⊙ ∂f/∂a` and
    /// `g ⊙ ∂f/∂b`, each summed back to its argument's shape.
    fn elementwise_binary(
        &mut self,
        name: &str,
        op: ElementwiseBinary,
        args: &[Expr],
        g: Adj,
    ) -> Result<(), String> {
        let (ea, eb) = (args[0].clone(), args[1].clone());
        let (sa, sb) = (self.shape(&args[0]), self.shape(&args[1]));
        let y = call(name, vec![ea.clone(), eb.clone()]);
        let (pa, pb) = op.partials(&ea, &eb, &y);
        let both = broadcast(&sa, &sb);
        for (arg, p, shape) in [(&args[0], pa, &sa), (&args[1], pb, &sb)] {
            let term = Adj(
                bin(BinOp::Mul, g.0.clone(), partial_expr(p)),
                broadcast(&g.1, &both),
            );
            let adj = self.sum_to(term, &both, shape)?;
            self.backprop(arg, adj)?;
        }
        Ok(())
    }

    fn shape(&self, e: &Expr) -> Vec<usize> {
        self.shapes[&(e as *const Expr)].clone()
    }

    /// The adjoint of an operand of shape `target`, from `g`, the adjoint of
    /// a node of shape `node` (`g` may be smaller than `node`: a scalar
    /// adjoint stands for its broadcast). Sums over the broadcast axes.
    fn sum_to(&self, g: Adj, node: &[usize], target: &[usize]) -> Result<Adj, String> {
        let Adj(mut ge, mut gs) = g;
        if gs == target && (node == target || gs == node) {
            return Ok(Adj(ge, gs));
        }
        if gs != node {
            // g stands for its broadcast to `node`: each operand element
            // collects numel(node)/numel(target) copies.
            let fits = gs.len() <= target.len()
                && gs
                    .iter()
                    .rev()
                    .zip(target.iter().rev())
                    .all(|(a, b)| a == b || *a == 1);
            if !fits {
                return unsupported("this broadcast");
            }
            let copies = node.iter().product::<usize>() / target.iter().product::<usize>().max(1);
            if copies == 1 {
                return Ok(Adj(ge, gs));
            }
            return Ok(Adj(bin(BinOp::Mul, num(copies as f64), ge), gs));
        }
        if target.is_empty() {
            return Ok(Adj(call("sum", vec![ge]), Vec::new()));
        }
        while gs.len() > target.len() {
            ge = call("sum", vec![ge, num(0.0)]);
            gs.remove(0);
        }
        if gs != target {
            return unsupported("a broadcast along a middle axis (it needs keepdim)");
        }
        Ok(Adj(ge, gs))
    }

    fn mentions(&mut self, e: &Expr) -> bool {
        let key = e as *const Expr;
        if let Some(&m) = self.reads_var.get(&key) {
            return m;
        }
        let m = match e {
            Expr::Var(v) => v == self.var,
            Expr::Num(_) => false,
            Expr::Neg(a) | Expr::Transpose(a) => self.mentions(a),
            Expr::Bin(_, a, b) => self.mentions(a) | self.mentions(b),
            Expr::Call(_, args) => args.iter().fold(false, |m, a| self.mentions(a) | m),
        };
        self.reads_var.insert(key, m);
        m
    }

    fn backprop(&mut self, e: &Expr, g: Adj) -> Result<(), String> {
        if !self.mentions(e) {
            return Ok(()); // pruned: no path to the variable
        }
        let elementwise = |g: &Adj, factor: Expr, fshape: &[usize]| {
            Adj(
                bin(BinOp::Mul, g.0.clone(), factor),
                broadcast(&g.1, fshape),
            )
        };
        match e {
            Expr::Var(_) => {
                self.acc = Some(match self.acc.take() {
                    None => g,
                    Some(Adj(a, s)) => Adj(bin(BinOp::Add, a, g.0), broadcast(&s, &g.1)),
                });
            }
            Expr::Num(_) => {}
            Expr::Neg(a) => self.backprop(a, Adj(neg(g.0), g.1))?,
            Expr::Transpose(a) => {
                let s: Vec<usize> = g.1.iter().rev().copied().collect();
                self.backprop(a, Adj(Expr::Transpose(Rc::new(g.0)), s))?
            }
            Expr::Bin(op, a, b) => {
                let (sa, sb) = (self.shape(a), self.shape(b));
                let se = self.shape(e);
                let (ea, eb) = ((**a).clone(), (**b).clone());
                match op {
                    BinOp::Add | BinOp::Sub => {
                        let ga = self.sum_to(g.clone(), &se, &sa)?;
                        self.backprop(a, ga)?;
                        let gb = Adj(if *op == BinOp::Add { g.0 } else { neg(g.0) }, g.1);
                        let gb = self.sum_to(gb, &se, &sb)?;
                        self.backprop(b, gb)?;
                    }
                    BinOp::Mul => {
                        let ga = self.sum_to(elementwise(&g, eb.clone(), &sb), &se, &sa)?;
                        self.backprop(a, ga)?;
                        let gb = self.sum_to(elementwise(&g, ea, &sa), &se, &sb)?;
                        self.backprop(b, gb)?;
                    }
                    BinOp::Div => {
                        let ga = Adj(
                            bin(BinOp::Div, g.0.clone(), eb.clone()),
                            broadcast(&g.1, &sb),
                        );
                        let ga = self.sum_to(ga, &se, &sa)?;
                        self.backprop(a, ga)?;
                        let factor = bin(BinOp::Div, ea, bin(BinOp::Pow, eb, num(2.0)));
                        let gb = Adj(
                            neg(bin(BinOp::Mul, g.0, factor)),
                            broadcast(&g.1, &broadcast(&sa, &sb)),
                        );
                        let gb = self.sum_to(gb, &se, &sb)?;
                        self.backprop(b, gb)?;
                    }
                    BinOp::Pow => {
                        if let Expr::Num(c) = eb {
                            let factor = bin(BinOp::Mul, num(c), bin(BinOp::Pow, ea, num(c - 1.0)));
                            let ga = self.sum_to(elementwise(&g, factor, &sa), &se, &sa)?;
                            self.backprop(a, ga)?;
                        } else {
                            // The library's conventions at a zero base: ∂a is 0
                            // where b = 0 (b·a^(b−1+[b=0])), ∂b is 0 where a = 0
                            // (a^b·log(a + [a=0])).
                            let fa = bin(
                                BinOp::Mul,
                                eb.clone(),
                                bin(
                                    BinOp::Pow,
                                    ea.clone(),
                                    bin(
                                        BinOp::Add,
                                        bin(BinOp::Sub, eb.clone(), num(1.0)),
                                        is_zero(eb.clone()),
                                    ),
                                ),
                            );
                            let ga =
                                self.sum_to(elementwise(&g, fa, &broadcast(&sa, &sb)), &se, &sa)?;
                            self.backprop(a, ga)?;
                            let fb = bin(
                                BinOp::Mul,
                                bin(BinOp::Pow, ea.clone(), eb),
                                call("log", vec![bin(BinOp::Add, ea.clone(), is_zero(ea))]),
                            );
                            let gb =
                                self.sum_to(elementwise(&g, fb, &broadcast(&sa, &sb)), &se, &sb)?;
                            self.backprop(b, gb)?;
                        }
                    }
                    BinOp::MatMul => self.matmul(a, b, &sa, &sb, g)?,
                }
            }
            Expr::Call(name, args) => self.call(name, args, g)?,
        }
        Ok(())
    }

    fn matmul(
        &mut self,
        a: &Expr,
        b: &Expr,
        sa: &[usize],
        sb: &[usize],
        g: Adj,
    ) -> Result<(), String> {
        let (ea, eb) = (a.clone(), b.clone());
        let t = |e: Expr| Expr::Transpose(Rc::new(e));
        let out: Vec<usize> = match (sa.len(), sb.len()) {
            (2, 1) => vec![sa[0]],
            (1, 2) => vec![sb[1]],
            (2, 2) => vec![sa[0], sb[1]],
            _ => Vec::new(),
        };
        if g.1 != out {
            // g stands for its broadcast over the product's result.
            if let (2, 1, true) = (sa.len(), sb.len(), g.1.is_empty()) {
                if self.mentions(a) {
                    return unsupported("a matrix in a product that is summed directly");
                }
                return self.backprop(
                    b,
                    Adj(
                        bin(BinOp::Mul, g.0, call("sum", vec![ea, num(0.0)])),
                        sb.to_vec(),
                    ),
                );
            }
            return unsupported("a matrix product that is summed directly");
        }
        match (sa.len(), sb.len()) {
            (1, 1) => {
                self.backprop(a, Adj(bin(BinOp::Mul, g.0.clone(), eb), sb.to_vec()))?;
                self.backprop(b, Adj(bin(BinOp::Mul, g.0, ea), sa.to_vec()))
            }
            (2, 1) => {
                self.backprop(a, Adj(call("outer", vec![g.0.clone(), eb]), sa.to_vec()))?;
                self.backprop(b, Adj(bin(BinOp::MatMul, t(ea), g.0), sb.to_vec()))
            }
            (1, 2) => {
                self.backprop(a, Adj(bin(BinOp::MatMul, eb, g.0.clone()), sa.to_vec()))?;
                self.backprop(b, Adj(call("outer", vec![ea, g.0]), sb.to_vec()))
            }
            (2, 2) => {
                self.backprop(a, Adj(bin(BinOp::MatMul, g.0.clone(), t(eb)), sa.to_vec()))?;
                self.backprop(b, Adj(bin(BinOp::MatMul, t(ea), g.0), sb.to_vec()))
            }
            _ => unsupported("a batched matrix product"),
        }
    }

    fn call(&mut self, name: &str, args: &[Expr], g: Adj) -> Result<(), String> {
        let a = &args[0];
        let ea = a.clone();
        let sa = self.shape(a);
        let axis = args.get(1).map(|e| match e {
            Expr::Num(v) => *v as usize,
            _ => usize::MAX,
        });
        let here = |f: Expr| Adj(bin(BinOp::Mul, g.0.clone(), f), broadcast(&g.1, &sa));
        match crate::functions::lookup(name).map(|f| f.kind) {
            // The library's rows: their partials, written as expressions.
            Some(Kind::Unary(op)) => {
                let y = call(name, vec![ea.clone()]);
                return match op.partial(&ea, &y) {
                    Some(p) => self.backprop(a, here(partial_expr(p))),
                    None => Ok(()), // no derivative flows (sign)
                };
            }
            Some(Kind::Binary(op)) => return self.elementwise_binary(name, op, args, g),
            _ => {}
        }
        let Some(Kind::Own(own)) = crate::functions::lookup(name).map(|f| f.kind) else {
            return unsupported(&format!("`{name}` here"));
        };
        let c = OwnCall {
            name,
            args,
            ea,
            sa,
            axis,
        };
        (own.derivative)(self, &c, g)
    }
}

/// A call of one of the command's own functions, as its derivative rule
/// sees it: the arguments, the first one's shape, the axis argument.
pub struct OwnCall<'e> {
    name: &'e str,
    args: &'e [Expr],
    ea: Expr,
    sa: Vec<usize>,
    axis: Option<usize>,
}

impl OwnCall<'_> {
    /// `g ⊙ f` as the first argument's adjoint.
    fn here(&self, g: &Adj, f: Expr) -> Adj {
        Adj(bin(BinOp::Mul, g.0.clone(), f), broadcast(&g.1, &self.sa))
    }
}

/// The symbolic derivative rule of one of the command's own functions: it
/// pushes the adjoint `g` of the call back into the arguments.
pub type Rule = fn(&mut Ctx, &OwnCall, Adj) -> Result<(), String>;

/// `sum` (over everything, or the first axis): the adjoint as it is.
pub fn d_sum(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    reduced_count(c)?;
    cx.backprop(&c.args[0], g)
}

/// `mean`: the adjoint over the number of elements averaged.
pub fn d_mean(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    let n = reduced_count(c)?;
    cx.backprop(&c.args[0], Adj(bin(BinOp::Div, g.0, num(n as f64)), g.1))
}

/// How many elements a reduction combines (over everything, or the first
/// axis; symbolic mode handles no other).
fn reduced_count(c: &OwnCall) -> Result<usize, String> {
    match c.axis {
        None => Ok(c.sa.iter().product()),
        Some(0) => Ok(c.sa[0]),
        Some(_) => unsupported(&format!("{} over an axis other than the first", c.name)),
    }
}

/// `dot`: the rule of a matrix product of the two vectors.
pub fn d_dot(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    let sb = cx.shape(&c.args[1]);
    cx.matmul(&c.args[0], &c.args[1], &c.sa, &sb, g)
}

/// `x / ‖x‖`, and 0 at x = 0 (the library's convention).
pub fn d_norm(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    let n = call("norm", vec![c.ea.clone()]);
    let safe = bin(BinOp::Sub, bin(BinOp::Add, n.clone(), num(1.0)), step(n));
    let gx = c.here(&g, bin(BinOp::Div, c.ea.clone(), safe));
    cx.backprop(&c.args[0], gx)
}

/// A zero derivative (`step`).
pub fn d_none(_: &mut Ctx, _: &OwnCall, _: Adj) -> Result<(), String> {
    Ok(())
}

/// `max` of everything: the indicator of the maxima, 1 − step(max(a) − a),
/// shared evenly between ties.
pub fn d_max(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    let gap = bin(BinOp::Sub, call("max", vec![c.ea.clone()]), c.ea.clone());
    extremum(cx, c, g, gap)
}

/// `min` of everything: the indicator of the minima, 1 − step(a − min(a)).
pub fn d_min(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    let gap = bin(BinOp::Sub, c.ea.clone(), call("min", vec![c.ea.clone()]));
    extremum(cx, c, g, gap)
}

/// The share of an extremum's adjoint where `gap` (≥ 0) is 0.
fn extremum(cx: &mut Ctx, c: &OwnCall, g: Adj, gap: Expr) -> Result<(), String> {
    if c.axis.is_some() {
        return unsupported(&format!("`{}` here", c.name));
    }
    let hit = bin(BinOp::Sub, num(1.0), call("step", vec![gap]));
    let share = bin(BinOp::Div, hit.clone(), call("sum", vec![hit]));
    cx.backprop(&c.args[0], c.here(&g, share))
}

/// The softmax family, of a vector.
fn vector_only(c: &OwnCall) -> Result<(), String> {
    if c.sa.len() == 1 {
        Ok(())
    } else {
        unsupported(&format!("`{}` here", c.name))
    }
}

/// `logsumexp` of a vector: the adjoint times `softmax(a)`.
pub fn d_logsumexp(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    vector_only(c)?;
    let gx = c.here(&g, call("softmax", vec![c.ea.clone()]));
    cx.backprop(&c.args[0], gx)
}

/// `softmax` of a vector: `s (g − Σ g s)`, with `s = softmax(a)`.
pub fn d_softmax(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    vector_only(c)?;
    let s = call("softmax", vec![c.ea.clone()]);
    let inner = bin(
        BinOp::Sub,
        g.0.clone(),
        call("sum", vec![bin(BinOp::Mul, g.0.clone(), s.clone())]),
    );
    cx.backprop(&c.args[0], Adj(bin(BinOp::Mul, s, inner), c.sa.clone()))
}

/// `log_softmax` of a vector: `g − softmax(a) Σ g`.
pub fn d_log_softmax(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    vector_only(c)?;
    // Σ g over the output; a scalar g stands for n copies.
    let total = if g.1 == c.sa {
        call("sum", vec![g.0.clone()])
    } else {
        bin(BinOp::Mul, num(c.sa[0] as f64), g.0.clone())
    };
    let gx = Adj(
        bin(
            BinOp::Sub,
            g.0.clone(),
            bin(BinOp::Mul, call("softmax", vec![c.ea.clone()]), total),
        ),
        c.sa.clone(),
    );
    cx.backprop(&c.args[0], gx)
}

/// `outer(a, b)`: `g @ b` for `a` and `gᵀ @ a` for `b`.
pub fn d_outer(cx: &mut Ctx, c: &OwnCall, g: Adj) -> Result<(), String> {
    let eb = c.args[1].clone();
    cx.backprop(
        &c.args[0],
        Adj(bin(BinOp::MatMul, g.0.clone(), eb), c.sa.clone()),
    )?;
    let gb = Adj(
        bin(BinOp::MatMul, Expr::Transpose(Rc::new(g.0)), c.ea.clone()),
        cx.shape(&c.args[1]),
    );
    cx.backprop(&c.args[1], gb)
}

/// `∂e/∂var` as an expression (of `var`'s shape, or broadcasting to it),
/// simplified. `e` must evaluate to a single element.
pub fn grad(e: &Expr, var: &str, env: &Env, dtype: DType) -> Result<Expr, String> {
    let shapes = eval_shapes(e, env, dtype)?;
    let out_shape = &shapes[&(e as *const Expr)];
    if out_shape.iter().product::<usize>() != 1 {
        return Err(format!(
            "symbolic grad needs an expression with a single value, this one has shape {out_shape:?}"
        ));
    }
    let mut ctx = Ctx {
        var,
        shapes,
        reads_var: HashMap::new(),
        acc: None,
    };
    ctx.backprop(e, Adj(num(1.0), Vec::new()))?;
    Ok(simplify(ctx.acc.map_or(num(0.0), |a| a.0)))
}

fn is_num(e: &Expr, v: f64) -> bool {
    matches!(e, Expr::Num(x) if *x == v)
}

/// Bottom-up algebraic simplification, to a fixed point. Each pass visits
/// a subexpression shared by several parents once (`Memo`), so a pass is
/// linear in the number of distinct nodes.
pub fn simplify(e: Expr) -> Expr {
    let mut cur = Rc::new(e);
    for _ in 0..32 {
        let mut changed = false;
        let next = simplify_shared(&cur, &mut Memo::new(), &mut changed);
        cur = next;
        if !changed {
            break;
        }
    }
    Rc::unwrap_or_clone(cur)
}

/// Each visited node's simplified form, by address (valid for one pass:
/// the expression is not changed while it is walked).
type Memo = HashMap<*const Expr, Rc<Expr>>;

fn simplify_shared(e: &Rc<Expr>, memo: &mut Memo, changed: &mut bool) -> Rc<Expr> {
    let key = Rc::as_ptr(e);
    if let Some(done) = memo.get(&key) {
        return done.clone();
    }
    let out = simplify_node(e, memo, changed);
    if !Rc::ptr_eq(&out, e) {
        *changed = true;
    }
    memo.insert(key, out.clone());
    out
}

/// One rewrite of `e` on its simplified children; `e` itself (the same
/// `Rc`) when nothing changes.
fn simplify_node(e: &Rc<Expr>, memo: &mut Memo, changed: &mut bool) -> Rc<Expr> {
    match &**e {
        Expr::Neg(a) => {
            let x = simplify_shared(a, memo, changed);
            match &*x {
                Expr::Num(v) => Rc::new(Expr::Num(-v)),
                Expr::Neg(inner) => inner.clone(),
                _ if Rc::ptr_eq(&x, a) => e.clone(),
                _ => Rc::new(Expr::Neg(x)),
            }
        }
        Expr::Transpose(a) => {
            let x = simplify_shared(a, memo, changed);
            match &*x {
                Expr::Transpose(inner) => inner.clone(),
                _ if Rc::ptr_eq(&x, a) => e.clone(),
                _ => Rc::new(Expr::Transpose(x)),
            }
        }
        Expr::Call(name, args) => {
            // Arguments belong to this call alone: simplified directly (a
            // temporary `Rc` is no key for the memo).
            let mut any = false;
            let new: Vec<Expr> = args
                .iter()
                .map(|a| {
                    let tmp = Rc::new(a.clone());
                    let s = simplify_node(&tmp, memo, changed);
                    if Rc::ptr_eq(&s, &tmp) {
                        a.clone()
                    } else {
                        any = true;
                        Rc::unwrap_or_clone(s)
                    }
                })
                .collect();
            if any {
                Rc::new(Expr::Call(name.clone(), new))
            } else {
                e.clone()
            }
        }
        Expr::Bin(op, a0, b0) => {
            let (a, b) = (
                simplify_shared(a0, memo, changed),
                simplify_shared(b0, memo, changed),
            );
            if let Some(r) = rewrite_bin(*op, &a, &b) {
                return r;
            }
            if Rc::ptr_eq(&a, a0) && Rc::ptr_eq(&b, b0) {
                e.clone()
            } else {
                Rc::new(Expr::Bin(*op, a, b))
            }
        }
        Expr::Num(_) | Expr::Var(_) => e.clone(),
    }
}

fn fold(op: BinOp, x: f64, y: f64) -> f64 {
    match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::Pow => x.powf(y),
        BinOp::MatMul => f64::NAN,
    }
}

/// The algebraic identities for `a op b` (both simplified), if one applies.
fn rewrite_bin(op: BinOp, a: &Rc<Expr>, b: &Rc<Expr>) -> Option<Rc<Expr>> {
    use BinOp::*;
    let new = |e: Expr| Some(Rc::new(e));
    let node = |op: BinOp, x: &Rc<Expr>, y: &Rc<Expr>| Expr::Bin(op, x.clone(), y.clone());
    match (op, &**a, &**b) {
        // Folded only to a number the language can write (never NaN).
        (_, Expr::Num(x), Expr::Num(y)) if op != MatMul && !fold(op, *x, *y).is_nan() => {
            new(Expr::Num(fold(op, *x, *y)))
        }
        (Mul, _, _) if is_num(a, 1.0) => Some(b.clone()),
        (Mul, _, _) if is_num(b, 1.0) => Some(a.clone()),
        (Mul, _, _) if is_num(a, 0.0) || is_num(b, 0.0) => new(num(0.0)),
        (Mul, _, Expr::Num(_)) => new(node(Mul, b, a)), // numbers first
        (Mul, Expr::Num(x), Expr::Bin(Mul, inner, rest)) if matches!(**inner, Expr::Num(_)) => {
            let Expr::Num(y) = **inner else {
                unreachable!()
            };
            new(Expr::Bin(Mul, Rc::new(num(x * y)), rest.clone()))
        }
        (Mul, _, Expr::Neg(inner)) => new(Expr::Neg(Rc::new(node(Mul, a, inner)))),
        (Mul, Expr::Neg(inner), _) => new(Expr::Neg(Rc::new(node(Mul, inner, b)))),
        (Add, _, _) if is_num(a, 0.0) => Some(b.clone()),
        (Add | Sub, _, _) if is_num(b, 0.0) => Some(a.clone()),
        (Sub, _, _) if is_num(a, 0.0) => new(Expr::Neg(b.clone())),
        (Add, _, Expr::Neg(inner)) => new(node(Sub, a, inner)),
        // -u + c = c - u; -1 * u = -u
        (Add, Expr::Neg(inner), Expr::Num(_)) => new(node(Sub, b, inner)),
        (Mul, _, _) if is_num(a, -1.0) => new(Expr::Neg(b.clone())),
        (Sub, _, Expr::Neg(inner)) => new(node(Add, a, inner)),
        (Div, _, _) if is_num(b, 1.0) => Some(a.clone()),
        (Pow, _, _) if is_num(b, 1.0) => Some(a.clone()),
        (Pow, _, _) if is_num(b, 0.0) => new(num(1.0)),
        // A @ (c·B) = (c·A) @ B: prints as `c * A @ B`
        (MatMul, _, Expr::Bin(Mul, c, rest)) if matches!(**c, Expr::Num(_)) => {
            new(Expr::Bin(MatMul, Rc::new(node(Mul, c, a)), rest.clone()))
        }
        _ => None,
    }
}
