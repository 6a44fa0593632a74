//! The expression language: tokens, a precedence-climbing parser with
//! caret-pointing errors, and a printer that writes expressions back in the
//! same language (what symbolic mode prints, and what `eval` accepts).
//!
//! Precedence, loosest first: `+ -`, then `* / @`, then unary minus, then
//! `^` (right-associative), then postfix `.T`. So `-x^2` is `-(x^2)` and
//! `2^-1` is `2^(-1)`.

use std::fmt;
use std::rc::Rc;

/// A binary operator of the language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`, elementwise.
    Mul,
    /// `/`, elementwise.
    Div,
    /// `^`, elementwise.
    Pow,
    /// `@`, matrix product.
    MatMul,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Pow => "^",
            BinOp::MatMul => "@",
        }
    }

    /// Binding strength for printing (higher binds tighter).
    fn level(self) -> u8 {
        match self {
            BinOp::Add | BinOp::Sub => 1,
            BinOp::Mul | BinOp::Div | BinOp::MatMul => 2,
            BinOp::Pow => 4,
        }
    }
}

/// An expression. Subexpressions are shared (`Rc`): cloning a node, as the
/// symbolic derivative and the explanation do at every step, copies no
/// subtree, so their memory stays linear in the expression's size.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A number literal.
    Num(f64),
    /// A variable, by name.
    Var(String),
    /// `-x`
    Neg(Rc<Expr>),
    /// A binary operation: `a op b`.
    Bin(BinOp, Rc<Expr>, Rc<Expr>),
    /// `x.T`
    Transpose(Rc<Expr>),
    /// A function call: `name(args…)`.
    Call(String, Vec<Expr>),
}

/// A parse error: the column (1-based) and what was expected there.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// The column (1-based) the error points at.
    pub column: usize,
    /// What was expected there.
    pub message: String,
}

impl ParseError {
    /// The message with the source line and a caret under the column.
    pub fn render(&self, source: &str) -> String {
        format!(
            "{} at column {}\n  {}\n  {}^",
            self.message,
            self.column,
            source,
            " ".repeat(self.column.saturating_sub(1))
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Sym(char),
    DotT,
    End,
}

struct Lexer {
    toks: Vec<(Tok, usize)>, // token, 1-based column
}

fn lex(src: &str) -> Result<Lexer, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            // One decimal point, taken only before a digit (so `2.T` is `(2).T`).
            if i < chars.len()
                && chars[i] == '.'
                && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
            {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let save = i;
                i += 1;
                if i < chars.len() && (chars[i] == '+' || chars[i] == '-') {
                    i += 1;
                }
                if i < chars.len() && chars[i].is_ascii_digit() {
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                } else {
                    i = save;
                }
            }
            let text: String = chars[start..i].iter().collect();
            let v: f64 = text.parse().map_err(|_| ParseError {
                column: col,
                message: format!("`{text}` is not a number"),
            })?;
            toks.push((Tok::Num(v), col));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push((Tok::Ident(chars[start..i].iter().collect()), col));
        } else if c == '.' {
            if chars.get(i + 1) == Some(&'T')
                && !chars
                    .get(i + 2)
                    .is_some_and(|d| d.is_alphanumeric() || *d == '_')
            {
                toks.push((Tok::DotT, col));
                i += 2;
            } else {
                return Err(ParseError {
                    column: col,
                    message: "expected `.T` (the only attribute) after `.`".into(),
                });
            }
        } else if "+-*/^@(),".contains(c) {
            toks.push((Tok::Sym(c), col));
            i += 1;
        } else {
            return Err(ParseError {
                column: col,
                message: format!("unexpected character `{c}`"),
            });
        }
    }
    toks.push((Tok::End, chars.len() + 1));
    Ok(Lexer { toks })
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
}

/// Deeper nesting than this is refused (no stack overflow on hostile input).
const MAX_DEPTH: usize = 200;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn col(&self) -> usize {
        self.toks[self.pos].1
    }

    fn bump(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn err<T>(&self, expected: &str) -> Result<T, ParseError> {
        let found = match self.peek() {
            Tok::Num(v) => format!("the number {v}"),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Sym(c) => format!("`{c}`"),
            Tok::DotT => "`.T`".into(),
            Tok::End => "the end of the expression".into(),
        };
        Err(ParseError {
            column: self.col(),
            message: format!("expected {expected}, found {found}"),
        })
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError {
                column: self.col(),
                message: format!("the expression nests deeper than {MAX_DEPTH} levels"),
            });
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek() {
                Tok::Sym('+') => BinOp::Add,
                Tok::Sym('-') => BinOp::Sub,
                _ => break,
            };
            self.bump();
            let rhs = self.term()?;
            lhs = Expr::Bin(op, Rc::new(lhs), Rc::new(rhs));
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Sym('*') => BinOp::Mul,
                Tok::Sym('/') => BinOp::Div,
                Tok::Sym('@') => BinOp::MatMul,
                _ => break,
            };
            self.bump();
            let rhs = self.unary()?;
            lhs = Expr::Bin(op, Rc::new(lhs), Rc::new(rhs));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == &Tok::Sym('-') {
            self.bump();
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Neg(Rc::new(inner)));
        }
        self.power()
    }

    fn power(&mut self) -> Result<Expr, ParseError> {
        let base = self.postfix()?;
        if self.peek() == &Tok::Sym('^') {
            self.bump();
            self.enter()?;
            let exponent = self.unary()?; // right-associative; allows x^-1
            self.depth -= 1;
            return Ok(Expr::Bin(BinOp::Pow, Rc::new(base), Rc::new(exponent)));
        }
        Ok(base)
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.primary()?;
        while self.peek() == &Tok::DotT {
            self.bump();
            e = Expr::Transpose(Rc::new(e));
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let (col, at) = (self.col(), self.pos);
        match self.bump() {
            Tok::Num(v) => Ok(Expr::Num(v)),
            Tok::Ident(name) => {
                if self.peek() != &Tok::Sym('(') {
                    return Ok(Expr::Var(name));
                }
                self.bump();
                let mut args = Vec::new();
                if self.peek() != &Tok::Sym(')') {
                    loop {
                        args.push(self.expr()?);
                        if self.peek() == &Tok::Sym(',') {
                            self.bump();
                            continue;
                        }
                        break;
                    }
                }
                if self.peek() != &Tok::Sym(')') {
                    return self.err("`,` or `)` to close the call");
                }
                self.bump();
                check_call(&name, args.len(), col)?;
                Ok(Expr::Call(name, args))
            }
            Tok::Sym('(') => {
                let e = self.expr()?;
                if self.peek() != &Tok::Sym(')') {
                    return self.err("`)`");
                }
                self.bump();
                Ok(e)
            }
            _ => {
                self.pos = at; // point at the offending token
                self.err("a number, a variable, a function call or `(`")
            }
        }
    }
}

fn check_call(name: &str, n: usize, column: usize) -> Result<(), ParseError> {
    match crate::functions::lookup(name).map(|f| (f.name, f.min_args, f.max_args)) {
        None => {
            let names: Vec<&str> = crate::functions::table().iter().map(|f| f.name).collect();
            let hint = did_you_mean(name, &names)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            Err(ParseError {
                column,
                message: format!("unknown function `{name}`{hint}"),
            })
        }
        Some((_, lo, hi)) if n < lo || n > hi => Err(ParseError {
            column,
            message: if lo == hi {
                format!(
                    "`{name}` takes {lo} argument{}, got {n}",
                    if lo == 1 { "" } else { "s" }
                )
            } else {
                format!("`{name}` takes {lo} or {hi} arguments, got {n}")
            },
        }),
        Some(_) => Ok(()),
    }
}

/// The closest name within edit distance 2, if any.
pub fn did_you_mean<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(name, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The deepest expression tree accepted: a chain like `x+x+…+x` is as deep
/// as it is long, and every pass over the tree (evaluation, symbolic
/// derivatives, printing) recurses once per level. The command runs on a
/// thread whose stack holds this depth in every pass with room to spare.
pub const MAX_TREE_DEPTH: usize = 10_000;

/// The stack of the thread the command runs on (and the fuzz targets'
/// bodies): it holds `MAX_TREE_DEPTH` levels in every pass. Only the pages
/// touched are committed.
pub const STACK_BYTES: usize = 512 << 20;

/// Runs `f` on a thread with a [`STACK_BYTES`] stack, as the command does.
pub fn on_command_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(STACK_BYTES)
            .spawn_scoped(s, f)
            .expect("a thread can be started")
            .join()
            .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    })
}

/// Parses a whole expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let e = parse_unchecked(src)?;
    let depth = e.depth();
    if depth > MAX_TREE_DEPTH {
        return Err(ParseError {
            column: 1,
            message: format!(
                "the expression is {depth} operations deep (a chain of operators counts one level each); the limit is {MAX_TREE_DEPTH}"
            ),
        });
    }
    Ok(e)
}

fn parse_unchecked(src: &str) -> Result<Expr, ParseError> {
    let lexer = lex(src)?;
    let mut p = Parser {
        toks: lexer.toks,
        pos: 0,
        depth: 0,
    };
    if p.peek() == &Tok::End {
        return p.err("an expression");
    }
    let e = p.expr()?;
    if p.peek() != &Tok::End {
        return p.err("an operator or the end of the expression");
    }
    Ok(e)
}

impl Expr {
    /// The direct subexpressions.
    fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Num(_) | Expr::Var(_) => Vec::new(),
            Expr::Neg(e) | Expr::Transpose(e) => vec![e],
            Expr::Bin(_, a, b) => vec![a, b],
            Expr::Call(_, args) => args.iter().collect(),
        }
    }

    /// The length of the longest path from the root to a leaf (a leaf is
    /// 1 deep), found without recursion.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 1usize)];
        while let Some((e, d)) = stack.pop() {
            deepest = deepest.max(d);
            stack.extend(e.children().into_iter().map(|c| (c, d + 1)));
        }
        deepest
    }

    /// The number of nodes (the size of a symbolic derivative).
    pub fn size(&self) -> usize {
        match self {
            Expr::Num(_) | Expr::Var(_) => 1,
            Expr::Neg(e) | Expr::Transpose(e) => 1 + e.size(),
            Expr::Bin(_, a, b) => 1 + a.size() + b.size(),
            Expr::Call(_, args) => 1 + args.iter().map(Expr::size).sum::<usize>(),
        }
    }

    /// Every variable the expression reads, in order of first appearance.
    pub fn variables(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_vars(&mut out);
        out
    }

    fn collect_vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Var(v) if !out.contains(v) => out.push(v.clone()),
            Expr::Var(_) | Expr::Num(_) => {}
            Expr::Neg(e) | Expr::Transpose(e) => e.collect_vars(out),
            Expr::Bin(_, a, b) => {
                a.collect_vars(out);
                b.collect_vars(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.collect_vars(out)),
        }
    }

    /// Binding strength as printed (higher binds tighter).
    fn level(&self) -> u8 {
        match self {
            Expr::Bin(op, _, _) => op.level(),
            Expr::Neg(_) => 3,
            Expr::Num(v) if *v < 0.0 => 3,
            _ => 5,
        }
    }
}

fn fmt_num(v: f64) -> String {
    if v.is_infinite() {
        // What parses back to the same number (`inf` would be a variable).
        return if v > 0.0 { "1e999" } else { "-1e999" }.to_string();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wrap = |e: &Expr, min: u8, f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if e.level() < min {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        match self {
            Expr::Num(v) => write!(f, "{}", fmt_num(*v)),
            Expr::Var(v) => write!(f, "{v}"),
            Expr::Neg(e) => {
                write!(f, "-")?;
                // `--x` needs no parentheses (a minus takes a minus).
                match &**e {
                    Expr::Neg(_) => write!(f, "{e}"),
                    _ => wrap(e, 4, f),
                }
            }
            Expr::Transpose(e) => {
                wrap(e, 5, f)?;
                write!(f, ".T")
            }
            Expr::Bin(op, a, b) => {
                let l = op.level();
                match op {
                    // right-associative: the left side needs parentheses at equal level
                    BinOp::Pow => {
                        wrap(a, l + 1, f)?;
                        write!(f, "^")?;
                        wrap(b, l - 1, f)
                    }
                    _ => {
                        wrap(a, l, f)?;
                        write!(f, " {} ", op.symbol())?;
                        wrap(b, l + 1, f)
                    }
                }
            }
            Expr::Call(name, args) => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, ")")
            }
        }
    }
}
