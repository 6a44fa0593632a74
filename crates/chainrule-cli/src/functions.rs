//! The functions of the expression language: one table. The elementwise
//! ones are the library's own rows ([`chainrule::rules`]): their evaluation,
//! their symbolic derivative and the local derivative `--explain` prints all
//! come from the row's function and partial derivatives, which the library
//! writes once against [`Value`] and which print here as formulas (`Value`
//! for [`Expr`]). A new elementwise op of the library is a new function of
//! the language with no change here. The rest (reductions, softmax, `dot`,
//! `norm`…) are the command's own: each row names its evaluation (in
//! `eval`), its symbolic derivative rule (in `symbolic`) and its local
//! derivative's text.

use crate::eval::{
    eval_dot, eval_log_softmax, eval_logsumexp, eval_max, eval_mean, eval_min, eval_norm,
    eval_outer, eval_softmax, eval_step, eval_sum,
};
use crate::expr::{BinOp, Expr};
use crate::symbolic::{
    d_dot, d_log_softmax, d_logsumexp, d_max, d_mean, d_min, d_none, d_norm, d_outer, d_softmax,
    d_sum, Rule,
};
use chainrule::rules::{Elementwise, ElementwiseBinary, Partial, Value};
use chainrule::Tensor;
use std::rc::Rc;
use std::sync::OnceLock;

/// Where a function's rules come from.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A library row of one argument.
    Unary(Elementwise),
    /// A library row of two arguments (broadcasting).
    Binary(ElementwiseBinary),
    /// The command's own rules.
    Own(Own),
}

/// The rules of one of the command's own functions.
#[derive(Clone, Copy)]
pub struct Own {
    /// The value from the arguments' values and the axis argument.
    pub eval: fn(&[Tensor], Option<usize>) -> Result<Tensor, String>,
    /// The symbolic derivative.
    pub derivative: Rule,
    /// The local derivative `--explain` prints: `(function, operand, other
    /// operand)`.
    pub explain: fn(&str, &str, &str) -> String,
}

impl std::fmt::Debug for Own {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Own")
    }
}

/// One function of the language.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    /// The name it is called by.
    pub name: &'static str,
    /// The fewest arguments it takes.
    pub min_args: usize,
    /// The most arguments it takes (an argument past `min_args` is an axis).
    pub max_args: usize,
    /// Where its rules come from.
    pub kind: Kind,
}

/// A local derivative with no closed form worth printing.
fn partial_text(f: &str, me: &str, _: &str) -> String {
    format!("∂{f}/∂{me}")
}

/// The command's own functions: name, fewest and most arguments (the
/// optional second argument of reductions and softmax is an axis), and
/// their rules.
#[rustfmt::skip]
const OWN: &[(&str, usize, usize, Own)] = &[
    ("dot", 2, 2, Own { eval: eval_dot, derivative: d_dot, explain: |_, _, other| format!("{other}ᵀ") }),
    ("sum", 1, 2, Own { eval: eval_sum, derivative: d_sum, explain: |_, _, _| "1ᵀ (a row of ones)".into() }),
    ("mean", 1, 2, Own { eval: eval_mean, derivative: d_mean, explain: |_, _, _| "1ᵀ/n".into() }),
    ("max", 1, 2, Own { eval: eval_max, derivative: d_max, explain: partial_text }),
    ("min", 1, 2, Own { eval: eval_min, derivative: d_min, explain: partial_text }),
    ("norm", 1, 1, Own { eval: eval_norm, derivative: d_norm, explain: |_, me, _| format!("{me}ᵀ/norm({me})") }),
    ("softmax", 1, 2, Own { eval: eval_softmax, derivative: d_softmax, explain: partial_text }),
    ("log_softmax", 1, 2, Own { eval: eval_log_softmax, derivative: d_log_softmax, explain: partial_text }),
    ("logsumexp", 1, 2, Own { eval: eval_logsumexp, derivative: d_logsumexp, explain: partial_text }),
    // For derivatives that symbolic mode prints:
    ("outer", 2, 2, Own { eval: eval_outer, derivative: d_outer, explain: partial_text }),
    ("step", 1, 1, Own { eval: eval_step, derivative: d_none, explain: |_, _, _| "0".into() }),
];

/// Library rows the language writes as operators instead (`-x`, `a + b`…).
const OPERATORS: &[&str] = &["neg", "add", "sub", "mul", "div", "pow"];

/// Every function: the command's own, then the library's elementwise rows.
pub fn table() -> &'static [Function] {
    static TABLE: OnceLock<Vec<Function>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let own = OWN.iter().map(|&(name, min_args, max_args, own)| Function {
            name,
            min_args,
            max_args,
            kind: Kind::Own(own),
        });
        let unary = Elementwise::all().into_iter().map(|op| Function {
            name: op.name(),
            min_args: 1,
            max_args: 1,
            kind: Kind::Unary(op),
        });
        let binary = ElementwiseBinary::all().into_iter().map(|op| Function {
            name: op.name(),
            min_args: 2,
            max_args: 2,
            kind: Kind::Binary(op),
        });
        own.chain(unary)
            .chain(binary)
            .filter(|f| !OPERATORS.contains(&f.name))
            .collect()
    })
}

/// The function called `name`, if the language has one.
pub fn lookup(name: &str) -> Option<&'static Function> {
    table().iter().find(|f| f.name == name)
}

/// A partial derivative as an expression.
pub fn partial_expr(p: Partial<Expr>) -> Expr {
    match p {
        Partial::Const(c) => Expr::Num(c),
        Partial::Of(e) => e,
    }
}

fn num(v: f64) -> Expr {
    Expr::Num(v)
}
fn bin(op: BinOp, a: &Expr, b: &Expr) -> Expr {
    Expr::Bin(op, Rc::new(a.clone()), Rc::new(b.clone()))
}
fn call(name: &str, a: &Expr) -> Expr {
    Expr::Call(name.into(), vec![a.clone()])
}
fn step(a: Expr) -> Expr {
    Expr::Call("step".into(), vec![a])
}

/// The library's derivative formulas, written as expressions of the
/// language (masks with `step`, which `eval` computes as `x > 0`).
impl Value for Expr {
    fn plus(&self, o: &Self) -> Self {
        bin(BinOp::Add, self, o)
    }
    fn times(&self, o: &Self) -> Self {
        bin(BinOp::Mul, self, o)
    }
    fn over(&self, o: &Self) -> Self {
        bin(BinOp::Div, self, o)
    }
    fn scale(&self, c: f64) -> Self {
        bin(BinOp::Mul, &num(c), self)
    }
    fn shift(&self, c: f64) -> Self {
        bin(BinOp::Add, self, &num(c))
    }
    fn recip(&self) -> Self {
        bin(BinOp::Div, &num(1.0), self)
    }
    fn square(&self) -> Self {
        bin(BinOp::Pow, self, &num(2.0))
    }
    fn exp(&self) -> Self {
        call("exp", self)
    }
    fn sin(&self) -> Self {
        call("sin", self)
    }
    fn cos(&self) -> Self {
        call("cos", self)
    }
    fn ln(&self) -> Self {
        call("log", self)
    }
    fn sigmoid(&self) -> Self {
        call("sigmoid", self)
    }
    fn tanh(&self) -> Self {
        call("tanh", self)
    }
    fn power(&self, e: &Self) -> Self {
        bin(BinOp::Pow, self, e)
    }
    fn pow_const(&self, p: f64) -> Self {
        bin(BinOp::Pow, self, &num(p))
    }
    fn sign(&self) -> Self {
        call("sign", self)
    }
    fn positive(&self) -> Self {
        step(self.clone())
    }
    /// `1 − step(lo − x) − step(x − hi)`: 1 on `[lo, hi]`.
    fn within(&self, lo: f64, hi: f64) -> Self {
        let below = step(bin(BinOp::Sub, &num(lo), self));
        let above = step(bin(BinOp::Sub, self, &num(hi)));
        bin(BinOp::Sub, &bin(BinOp::Sub, &num(1.0), &below), &above)
    }
    fn zero_mask(&self) -> Self {
        self.equal_to(&num(0.0))
    }
    fn less_than(&self, o: &Self) -> Self {
        step(bin(BinOp::Sub, o, self))
    }
    /// `1 − step(a − b) − step(b − a)`.
    fn equal_to(&self, o: &Self) -> Self {
        let gt = step(bin(BinOp::Sub, self, o));
        let lt = step(bin(BinOp::Sub, o, self));
        bin(BinOp::Sub, &bin(BinOp::Sub, &num(1.0), &gt), &lt)
    }
    /// `m·a + (1 − m)·b`.
    fn select(&self, if_true: &Self, if_false: &Self) -> Self {
        let not = bin(BinOp::Sub, &num(1.0), self);
        bin(
            BinOp::Add,
            &bin(BinOp::Mul, self, if_true),
            &bin(BinOp::Mul, &not, if_false),
        )
    }
    fn constant(&self, c: f64) -> Self {
        num(c)
    }
}
