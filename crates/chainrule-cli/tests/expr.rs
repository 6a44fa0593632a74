//! The expression language and the `chainrule` derivative commands: parsing
//! and printing, symbolic derivatives of the note's examples, every mode
//! against every other, bad input, and a property test that arbitrary input
//! never panics the parser or the evaluator.

use chainrule::{DType, Tensor};
use chainrule_cli::eval::{eval, Env};
use chainrule_cli::expr::{parse, Expr};
use chainrule_cli::symbolic;
use proptest::prelude::*;
use std::process::{Command, Output};

fn chainrule(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chainrule"))
        .args(args)
        .output()
        .expect("runs")
}

fn env() -> Env {
    let mut e = Env::new();
    e.insert(
        "x".into(),
        Tensor::rand_normal(&[4], 0.0, 1.0, 1, DType::F64),
    );
    e.insert(
        "w".into(),
        Tensor::rand_normal(&[4], 0.0, 1.0, 2, DType::F64),
    );
    e.insert("y".into(), Tensor::scalar(0.3f64));
    e.insert(
        "X".into(),
        Tensor::rand_normal(&[5, 4], 0.0, 1.0, 3, DType::F64),
    );
    e.insert(
        "v".into(),
        Tensor::rand_normal(&[5], 0.0, 1.0, 4, DType::F64),
    );
    e
}

#[test]
fn precedence_and_printing() {
    let cases = [
        ("-x^2", "-x^2"),
        ("2^3^2", "2^3^2"),
        ("(2^3)^2", "(2^3)^2"),
        ("a - b - c", "a - b - c"),
        ("a - (b - c)", "a - (b - c)"),
        ("x.T @ y * 2", "x.T @ y * 2"),
        ("-(a*b)", "-(a * b)"),
        ("x^-1", "x^-1"),
        ("sum(x, 0) + dot(a,b)", "sum(x, 0) + dot(a, b)"),
    ];
    for (src, printed) in cases {
        let e = parse(src).unwrap();
        assert_eq!(e.to_string(), printed, "{src}");
        assert_eq!(parse(&e.to_string()).unwrap(), e, "{src}");
    }
    assert_eq!(
        parse("-x^2").unwrap(),
        Expr::Neg(std::rc::Rc::new(parse("x^2").unwrap()))
    );
    assert_eq!(parse("2^3^2").unwrap(), parse("2^(3^2)").unwrap());
}

#[test]
fn parse_errors_point_at_the_column() {
    let e = parse("sum(x,").unwrap_err();
    assert_eq!(e.column, 7);
    let r = e.render("sum(x,");
    assert!(r.contains("expected") && r.ends_with("      ^"), "{r}");
    let e = parse("exq(x)").unwrap_err();
    assert!(e.message.contains("did you mean `exp`"), "{}", e.message);
    assert!(parse("dot(x)")
        .unwrap_err()
        .message
        .contains("takes 2 arguments"));
    assert!(parse("x $ y")
        .unwrap_err()
        .message
        .contains("unexpected character"));
    assert!(parse("").is_err());
    assert!(parse(&"(".repeat(10_000)).is_err()); // deep nesting refused, no stack overflow
}

#[test]
fn symbolic_derivatives_of_the_notes_examples() {
    let env = env();
    let ex1 = parse("(dot(x, w) - y)^2").unwrap();
    let d1 = symbolic::grad(&ex1, "w", &env, DType::F64).unwrap();
    assert_eq!(d1.to_string(), "2 * (dot(x, w) - y) * x");
    let ex2 = parse("sum((X @ x - v)^2)").unwrap();
    let d2 = symbolic::grad(&ex2, "x", &env, DType::F64).unwrap();
    assert_eq!(d2.to_string(), "2 * X.T @ (X @ x - v)");
    // and they evaluate to autodiff's numbers
    for (e, d, var) in [(&ex1, &d1, "w"), (&ex2, &d2, "x")] {
        let sym = eval(d, &env, DType::F64, &mut None).unwrap();
        let f = |t: &Tensor| {
            let mut en = env.clone();
            en.insert(var.into(), t.clone());
            eval(e, &en, DType::F64, &mut None).unwrap()
        };
        let g = chainrule::func::grad(f, &env[var]).unwrap();
        for (a, b) in sym.to_vec_f64().iter().zip(g.to_vec_f64()) {
            assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
}

#[test]
fn every_mode_agrees_through_the_command() {
    let sets = [
        "--set",
        "x=randn(3)",
        "--set",
        "A=randn(2,3)",
        "--set",
        "s=0.7",
    ];
    let cases: &[(&str, &str)] = &[
        ("grad", "sum(tanh(A @ x) * sigmoid(x[0]))"),
        (
            "grad",
            "logsumexp(x) + norm(x) * s + sum(exp(x) / (1 + x^2))",
        ),
        (
            "grad",
            "sum(softmax(x) * x) - mean(log_softmax(x)) + sum(maximum(x, s) * minimum(x, 0.1))",
        ),
        (
            "grad",
            "sqrt(sum(x^2) + 1) * max(x) + min(abs(x)) + sum(relu(x) * sin(x) * cos(x))",
        ),
        ("jacobian", "tanh(A @ x) * s"),
        ("hessian", "sum(sin(x) * x^3) + dot(x, x) * s"),
        ("jvp", "A @ exp(x)"),
    ];
    for (cmd, expr) in cases {
        let expr = expr.replace("x[0]", "s");
        let mut args = vec![
            *cmd,
            expr.as_str(),
            "--wrt",
            "x",
            "--mode",
            "compare",
            "--json",
        ];
        if *cmd == "jvp" {
            args.extend(["--dir", "[1, -1, 0.5]"]);
        }
        args.extend(sets);
        let out = chainrule(&args);
        assert!(
            out.status.success(),
            "{cmd} {expr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let modes = j["compare"].as_array().unwrap();
        assert!(modes.len() >= 4);
        for m in modes {
            if let Some(e) = m.get("error") {
                panic!("{cmd} {expr}: {} failed: {e}", m["mode"]);
            }
            let d = m["max_abs_diff_from_reverse"].as_f64().unwrap();
            let tol = if m["mode"] == "numeric" { 1e-5 } else { 1e-10 };
            assert!(d <= tol, "{cmd} {expr}: {} differs by {d}", m["mode"]);
        }
    }
}

#[test]
fn json_output_and_symbolic_expression() {
    let out = chainrule(&[
        "grad",
        "sum((X @ w - y)^2)",
        "--wrt",
        "w",
        "--mode",
        "symbolic",
        "--json",
        "--set",
        "X=[[1,2],[3,4],[5,6]]",
        "--set",
        "w=[1,-1]",
        "--set",
        "y=[0,1,2]",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Xw − y = [−1, −2, −3]; z = 14; ∇ = 2 Xᵀ(Xw − y) = [−44, −56]
    assert_eq!(j["value"]["shape"], serde_json::json!([]));
    assert_eq!(j["value"]["data"], serde_json::json!([14.0]));
    assert_eq!(j["grad"]["w"]["data"], serde_json::json!([-44.0, -56.0]));
    assert_eq!(j["expr"]["w"], "2 * X.T @ (X @ w - y)");
    // The printed derivative is itself an expression `eval` accepts.
    let out = chainrule(&[
        "eval",
        "2 * X.T @ (X @ w - y)",
        "--json",
        "--set",
        "X=[[1,2],[3,4],[5,6]]",
        "--set",
        "w=[1,-1]",
        "--set",
        "y=[0,1,2]",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["value"]["data"], serde_json::json!([-44.0, -56.0]));
}

#[test]
fn explain_shows_the_decomposition_and_the_chain() {
    let out = chainrule(&[
        "grad",
        "sum((X @ w - y)^2)",
        "--wrt",
        "w",
        "--explain",
        "--set",
        "X=randn(5,3)",
        "--set",
        "w=randn(3)",
        "--set",
        "y=randn(5)",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "a = X @ w",
        "b = a - y",
        "z = sum(c)",
        "(1,3) = (1,5)(5,3)",
        "∂z/∂w = ∂z/∂a · ∂a/∂w",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let out = chainrule(&[
        "grad",
        "(dot(x, w) - y)^2",
        "--wrt",
        "w",
        "--explain",
        "--mode",
        "forward",
        "--set",
        "x=randn(4)",
        "--set",
        "w=randn(4)",
        "--set",
        "y=1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Forward accumulation") && text.contains("(1,4) = (1,)(1,4)"),
        "{text}"
    );
}

/// The text a command printed, after checking it succeeded.
fn stdout_of(args: &[&str]) -> String {
    let out = chainrule(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn explained_names_never_collide_with_the_users() {
    // The user's `a`, `b` and `z`: steps are named around them, the output `out`.
    let text = stdout_of(&[
        "grad",
        "sum(tanh(a * b) * z)",
        "--wrt",
        "a,z",
        "--explain",
        "--set",
        "a=randn(3)",
        "--set",
        "b=randn(3)",
        "--set",
        "z=randn(3)",
    ]);
    for needle in [
        "  c = a * b",
        "  d = tanh(c)",
        "  e = d * z",
        "  out = sum(e)",
        "∂out/∂out = 1",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    for bad in ["  a = ", "  b = ", "  z = ", "∂z/∂z"] {
        assert!(!text.contains(bad), "{bad:?} in\n{text}");
    }
    // Both variables from one forward pass and one backward pass.
    assert_eq!(text.matches("Decomposition").count(), 1, "{text}");
    assert_eq!(text.matches("Reverse accumulation").count(), 1, "{text}");
    assert!(
        text.contains("Gradient: ∂out/∂a") && text.contains("Gradient: ∂out/∂z"),
        "{text}"
    );
}

#[test]
fn jvp_jacobian_and_hessian_are_explained() {
    let sets = ["--set", "A=randn(2,3)", "--set", "w=randn(3)"];
    let with = |args: &[&str]| stdout_of(&[args, &sets[..]].concat());
    let jvp = with(&[
        "jvp",
        "tanh(A @ w)",
        "--wrt",
        "w",
        "--dir",
        "[1,0,0]",
        "--explain",
    ]);
    for needle in [
        "w\u{307} = v",
        "a\u{307} = ∂a/∂w · w\u{307}  [local A]  (2,1) = (2,3)(3,1)",
        "JVP: z\u{307} = ∂z/∂w · v",
    ] {
        assert!(jvp.contains(needle), "missing {needle:?} in\n{jvp}");
    }
    let rows = with(&["jacobian", "tanh(A @ w)", "--wrt", "w", "--explain"]);
    for needle in [
        "row by row",
        "∂z/∂w = ∂z/∂a · ∂a/∂w",
        "(2,3) = (2,2)(2,3)",
        "Jacobian: ∂z/∂w, (2,3)",
    ] {
        assert!(rows.contains(needle), "missing {needle:?} in\n{rows}");
    }
    let columns = with(&[
        "jacobian",
        "tanh(A @ w)",
        "--wrt",
        "w",
        "--explain",
        "--mode",
        "forward",
    ]);
    for needle in [
        "column by column",
        "∂z/∂w = ∂z/∂a · ∂a/∂w  [local diag(1 - tanh(a)^2)]  (2,3) = (2,2)(2,3)",
    ] {
        assert!(columns.contains(needle), "missing {needle:?} in\n{columns}");
    }
    // The Jacobian printed by the explanation is the command's own result.
    let matrix = rows
        .split("Jacobian: ∂z/∂w, (2,3) (stored in shape [2, 3]) =\n")
        .nth(1)
        .unwrap();
    let matrix = &matrix[..matrix.find("\n\n").unwrap()];
    assert!(
        rows.contains(&format!("jacobian by w: shape [2, 3]\n{matrix}")),
        "{rows}"
    );
    assert_eq!(matrix.lines().count(), 2, "{matrix}");
    let hessian = with(&["hessian", "sum((A @ w)^2)", "--wrt", "w", "--explain"]);
    for needle in [
        "g = 2 * A.T @ (A @ w)",
        "(3,3) = (3,2)(2,3)",
        "Jacobian: ∂g/∂w, (3,3)",
        "hessian by w: shape [3, 3]",
    ] {
        assert!(hessian.contains(needle), "missing {needle:?} in\n{hessian}");
    }
}

#[test]
fn the_compare_table_is_valid_markdown() {
    let text = stdout_of(&[
        "grad",
        "sum(abs(x) * x)",
        "--wrt",
        "x",
        "--mode",
        "compare",
        "--set",
        "x=randn(3)",
    ]);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with('|')).collect();
    assert!(rows.len() >= 7, "{text}");
    // Every row has the header's number of cells (escaped pipes are not separators).
    let cells = |row: &str| row.replace("\\|", "").matches('|').count();
    assert!(rows.iter().all(|r| cells(r) == cells(rows[0])), "{text}");
    assert!(rows[1].chars().all(|c| c == '|' || c == '-'), "{text}");
}

#[test]
fn graph_files_are_written() {
    let dir = std::env::temp_dir().join(format!("chainrule-expr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (dot, svg) = (dir.join("g.dot"), dir.join("g.svg"));
    let out = chainrule(&[
        "grad",
        "sum(exp(x) * w)",
        "--wrt",
        "x",
        "--set",
        "x=randn(3)",
        "--set",
        "w=randn(3)",
        "--dot",
        dot.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let d = std::fs::read_to_string(&dot).unwrap();
    assert!(d.starts_with("digraph") && d.contains("exp"), "{d}");
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") && s.contains("exp") && s.trim_end().ends_with("</svg>"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn negative_axes_count_from_the_back() {
    let env = env();
    let at = |src: &str| {
        eval(&parse(src).unwrap(), &env, DType::F64, &mut None)
            .unwrap()
            .to_vec::<f64>()
    };
    assert_eq!(at("sum(X, -1)"), at("sum(X, 1)"));
    assert_eq!(at("softmax(X, -2)"), at("softmax(X, 0)"));
    assert_eq!(at("logsumexp(X, -1)"), at("logsumexp(X, 1)"));
    let out = chainrule(&["eval", "sum(X, -3)", "--set", "X=randn(2,3)"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-2..2") && err.contains("-3"), "{err}");
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["eval", "sum(x,", "--set", "x=[1]"], "column 7"),
        (&["eval", "sun(x)", "--set", "x=[1]"], "did you mean `sum`"),
        (
            &["eval", "x + xs", "--set", "x=[1]"],
            "unknown variable `xs`",
        ),
        (
            &["eval", "log(x - x)", "--set", "x=[1]"],
            "`log` produced a NaN",
        ),
        (
            &[
                "eval",
                "X @ x",
                "--set",
                "X=randn(2,3)",
                "--set",
                "x=randn(2)",
            ],
            "matmul: shapes [2, 3] and [2]",
        ),
        (
            &["grad", "x", "--wrt", "x", "--set", "x=[1,2]"],
            "single value",
        ),
        (
            &["grad", "sum(x)", "--wrt", "q", "--set", "x=[1,2]"],
            "no variable `q`",
        ),
        (&["eval", "x", "--set", "x=[[1,2],[3]]"], "ragged"),
        (
            &["eval", "x", "--set", "x=randm(3)"],
            "did you mean `randn`",
        ),
        (&["eval", "x", "--input", "/nonexistent.npy"], "cannot read"),
        (&["jvp", "x", "--wrt", "x", "--set", "x=[1,2]"], "--dir"),
        (
            &[
                "hessian", "sum(x)", "--wrt", "x", "--mode", "symbolic", "--set", "x=[1]",
            ],
            "symbolic",
        ),
    ];
    for (args, expect) in cases {
        let out = chainrule(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expect),
            "{args:?}: expected {expect:?} in {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
}

/// A random well-formed expression over x (4), w (4), y (), X (5, 4), v (5).
fn arb_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("x".to_string()),
        Just("w".to_string()),
        Just("y".to_string()),
        Just("X".to_string()),
        Just("v".to_string()),
        (-3.0f64..3.0).prop_map(|v| format!("{v:.2}")),
    ];
    leaf.prop_recursive(5, 40, 3, |inner| {
        let f1 = prop::sample::select(vec![
            "exp",
            "log",
            "sin",
            "cos",
            "tan",
            "tanh",
            "sigmoid",
            "relu",
            "sqrt",
            "abs",
            "norm",
            "sum",
            "mean",
            "max",
            "min",
            "softmax",
            "log_softmax",
            "logsumexp",
        ]);
        let f2 = prop::sample::select(vec!["dot", "maximum", "minimum", "outer"]);
        let op = prop::sample::select(vec!["+", "-", "*", "/", "^", "@"]);
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            inner.clone().prop_map(|a| format!("-{a}")),
            inner.clone().prop_map(|a| format!("{a}.T")),
            (f1, inner.clone()).prop_map(|(f, a)| format!("{f}({a})")),
            (f2, inner.clone(), inner.clone()).prop_map(|(f, a, b)| format!("{f}({a}, {b})")),
            (
                prop::sample::select(vec!["sum", "softmax"]),
                inner,
                0usize..3
            )
                .prop_map(|(f, a, k)| format!("{f}({a}, {k})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let s = String::from_utf8_lossy(&bytes);
        let _ = parse(&s);
    }

    #[test]
    fn well_formed_expressions_never_panic(src in arb_expr()) {
        let e = parse(&src).expect("the generator writes valid syntax");
        prop_assert_eq!(parse(&e.to_string()).unwrap(), e.clone());
        let env = env();
        let value = chainrule_cli::commands::evaluate_str(&src, &env);
        if let Ok(v) = value {
            if v.numel() == 1 {
                let _ = symbolic::grad(&e, "x", &env, DType::F64);
            }
        }
    }
}

#[test]
fn f32_runs_every_mode_numeric_in_f64() {
    let out = chainrule(&[
        "grad",
        "sum(exp(x) * w) + norm(x)",
        "--wrt",
        "x,w",
        "--dtype",
        "f32",
        "--mode",
        "compare",
        "--json",
        "--set",
        "x=randn(3)",
        "--set",
        "w=randn(3)",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for m in j["compare"].as_array().unwrap() {
        assert!(m.get("error").is_none(), "{m}");
        assert!(
            m["max_abs_diff_from_reverse"].as_f64().unwrap() < 1e-3,
            "{m}"
        );
    }
}

/// Every elementwise row of the library is a function of the language, and
/// its symbolic derivative (the row's partials printed as a formula) equals
/// autodiff's gradient.
#[test]
fn every_library_row_is_a_function_with_its_symbolic_derivative() {
    use chainrule::rules::{Elementwise, ElementwiseBinary};
    use chainrule_cli::functions;
    let mut env = Env::new();
    // Values where every row is smooth (log, sqrt, rsqrt need x > 0).
    env.insert("x".into(), Tensor::from_vec(vec![0.3f64, 0.8, 1.7], &[3]));
    env.insert("y".into(), Tensor::from_vec(vec![1.1f64, 0.4, 2.5], &[3]));
    let unary: Vec<String> = Elementwise::all()
        .iter()
        .map(|op| op.name().to_string())
        .filter(|n| n != "neg") // written `-x`
        .map(|n| format!("sum({n}(x) * y)"))
        .collect();
    let binary: Vec<String> = ElementwiseBinary::all()
        .iter()
        .map(|op| op.name())
        .filter(|n| functions::lookup(n).is_some())
        .map(|n| format!("sum({n}(x, y) * {n}(y, x))"))
        .collect();
    assert!(
        unary.len() >= 18 && binary.len() >= 4,
        "{unary:?} {binary:?}"
    );
    for text in unary.iter().chain(&binary) {
        let e = parse(text).unwrap_or_else(|err| panic!("{text}: {}", err.message));
        let d = symbolic::grad(&e, "x", &env, DType::F64).unwrap();
        let sym = eval(&d, &env, DType::F64, &mut None).unwrap();
        let f = |t: &Tensor| {
            let mut en = env.clone();
            en.insert("x".into(), t.clone());
            eval(&e, &en, DType::F64, &mut None).unwrap()
        };
        let g = chainrule::func::grad(f, &env["x"]).unwrap();
        let sym = sym.broadcast_to(g.shape());
        for (a, b) in sym.to_vec_f64().iter().zip(g.to_vec_f64()) {
            assert!(
                (a - b).abs() < 1e-12 * b.abs().max(1.0),
                "{text}: {a} vs {b} ({d})"
            );
        }
    }
}
