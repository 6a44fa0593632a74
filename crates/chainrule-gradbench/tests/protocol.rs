//! The tool against recorded GradBench messages: each eval's small inputs,
//! with the reference tool's (`manual`) answers recorded beside them
//! (`tests/record.py`), checked by GradBench's rule; and bad messages,
//! answered with an error rather than a crash.

use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// The tool's answer to each of `lines`, in order.
fn converse(lines: &[String]) -> Vec<Value> {
    converse_with(&[], lines)
}

/// The same, the tool started with `options`.
fn converse_with(options: &[&str], lines: &[String]) -> Vec<Value> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chainrule-gradbench"))
        .args(options)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tool starts");
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the tool exited with {}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every answer is one JSON line"))
        .collect()
}

/// GradBench's `comparison.py`: same structure, numbers within
/// `|a − e| / max(1, |a| + |e|) ≤ 1e-4` (hello: numpy.isclose).
fn mismatch(path: &str, expected: &Value, actual: &Value, hello: bool) -> Option<String> {
    match (expected, actual) {
        (Value::Number(e), Value::Number(a)) => {
            let (e, a) = (e.as_f64().unwrap(), a.as_f64().unwrap());
            let ok = if hello {
                (a - e).abs() <= 1e-8 + 1e-5 * e.abs()
            } else {
                (a - e).abs() / (a.abs() + e.abs()).max(1.0) <= 1e-4
            };
            (!ok).then(|| format!("{path}: expected {e}, got {a}"))
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("{path}: {} entries, expected {}", a.len(), e.len()));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, (e, a))| mismatch(&format!("{path}[{i}]"), e, a, hello))
        }
        (Value::Object(e), Value::Object(a)) => {
            let mut ek: Vec<_> = e.keys().collect();
            let mut ak: Vec<_> = a.keys().collect();
            ek.sort();
            ak.sort();
            if ek != ak {
                return Some(format!("{path}: keys {ak:?}, expected {ek:?}"));
            }
            e.iter()
                .find_map(|(k, v)| mismatch(&format!("{path}.{k}"), v, &a[k], hello))
        }
        _ => (expected != actual).then(|| format!("{path}: expected {expected}, got {actual}")),
    }
}

#[test]
fn every_eval_matches_the_reference_on_recorded_inputs() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fixtures = [
        "hello",
        "lse",
        "llsq",
        "det",
        "ode",
        "gmm",
        "kmeans",
        "lstm",
        "ba",
        "ht",
        "ht-simple",
    ];
    for fixture in fixtures {
        // `ht-simple`: the `ht` eval on other inputs.
        let eval = fixture.split('-').next().unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{fixture}.jsonl"))).unwrap();
        let cases: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!cases.is_empty(), "{fixture}: no recorded messages");
        let mut lines = vec![
            json!({"id": 0, "kind": "start", "eval": eval}).to_string(),
            json!({"id": 1, "kind": "define", "module": eval}).to_string(),
        ];
        lines.extend(cases.iter().map(|c| c["message"].to_string()));
        let answers = converse(&lines);
        assert_eq!(answers.len(), lines.len(), "{eval}: one answer per message");
        assert_eq!(answers[0], json!({"id": 0, "tool": "chainrule"}));
        assert_eq!(answers[1], json!({"id": 1, "success": true}), "{eval}");
        for (case, answer) in cases.iter().zip(&answers[2..]) {
            let message = &case["message"];
            let what = format!(
                "{eval}.{} ({})",
                message["function"], message["description"]
            );
            assert_eq!(answer["id"], message["id"], "{what}");
            assert_eq!(answer["success"], json!(true), "{what}: {answer}");
            let timings = answer["timings"].as_array().expect("timings");
            assert!(
                !timings.is_empty()
                    && timings
                        .iter()
                        .all(|t| t["name"] == "evaluate" && t["nanoseconds"].is_u64()),
                "{what}: {timings:?}"
            );
            if let Some(why) = mismatch(
                "output",
                &case["expected"],
                &answer["output"],
                eval == "hello",
            ) {
                panic!("{what}: {why}");
            }
        }
    }
}

/// The nested-AD evals against the constants GradBench's evals check
/// (`evals/{particle,saddle}/run.py`), to 1e-8 relative (GradBench's own
/// tolerance would accept any saddle output near 0), in all four mode
/// pairs; `particle` also with its flight through the graph's `while_loop`.
#[test]
fn nested_evals_reach_the_known_optima() {
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for (id, function) in ["rr", "ff", "fr", "rf"].into_iter().enumerate() {
        lines.push(
            json!({"id": id, "kind": "evaluate", "module": "saddle", "function": function,
                "input": {"start": [1.0, 1.0], "min_runs": 1, "min_seconds": 0}})
            .to_string(),
        );
        expected.push(json!(vec![8.246324826140356e-06; 4]));
    }
    for (id, function) in ["rr", "ff", "fr", "rf"].into_iter().enumerate() {
        lines.push(
            json!({"id": 10 + id, "kind": "evaluate", "module": "particle", "function": function,
                "input": {"w": 0.0, "min_runs": 1, "min_seconds": 0}})
            .to_string(),
        );
        expected.push(json!(0.2071918746486116));
    }
    let mut answers = converse(&lines);
    let particle: Vec<String> = lines[4..].to_vec();
    answers.extend(converse_with(&["--graph-loops"], &particle));
    lines.extend(particle);
    expected.extend(expected[4..].to_vec());
    let values = |v: &Value| -> Vec<f64> {
        match v {
            Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
            x => vec![x.as_f64().unwrap()],
        }
    };
    for ((line, answer), want) in lines.iter().zip(&answers).zip(&expected) {
        assert_eq!(answer["success"], json!(true), "{line}: {answer}");
        let (got, want) = (values(&answer["output"]), values(want));
        assert_eq!(got.len(), want.len(), "{line}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-8 * w.abs(), "{line}: {g} vs {w}");
        }
    }
}

/// `min_runs` calls at least, each timed.
#[test]
fn runs_follow_min_runs() {
    let message = json!({"id": 5, "kind": "evaluate", "module": "lse", "function": "primal",
        "input": {"x": [0.5, 1.5], "min_runs": 7, "min_seconds": 0}});
    let answers = converse(&[message.to_string()]);
    assert_eq!(answers[0]["timings"].as_array().unwrap().len(), 7);
}

/// Bad messages get an answer naming the problem, and the tool goes on.
#[test]
fn bad_input_is_an_error_answer_not_a_crash() {
    let lines = [
        json!({"id": 0, "kind": "define", "module": "nope"}).to_string(),
        json!({"id": 1, "kind": "evaluate", "module": "det", "function": "primal",
            "input": {"A": [1.0, 2.0], "ell": 3}})
        .to_string(),
        json!({"id": 2, "kind": "evaluate", "module": "gmm", "function": "objective",
            "input": {"d": 2}})
        .to_string(),
        json!({"id": 3, "kind": "evaluate", "module": "lse", "function": "hessian",
            "input": {"x": [1.0]}})
        .to_string(),
        json!({"id": 4, "kind": "evaluate", "module": "lse", "function": "primal",
            "input": {"x": [1.0], "min_runs": 0}})
        .to_string(),
        "not json".to_string(),
        json!({"id": 6, "kind": "analysis", "of": 1, "valid": false}).to_string(),
        json!({"id": 7, "kind": "evaluate", "module": "lse", "function": "primal",
            "input": {"x": [0.0, 0.0], "min_seconds": 0}})
        .to_string(),
        json!({"id": 8, "kind": "evaluate", "module": "ht", "function": "objective",
            "input": {"theta": [0.0], "us": [], "data": {}}})
        .to_string(),
    ];
    let answers = converse(&lines);
    assert_eq!(answers.len(), lines.len());
    let error = |i: usize| answers[i]["error"].as_str().unwrap_or("").to_string();
    assert_eq!(answers[0]["success"], json!(false));
    assert!(error(0).contains("nope"), "{}", error(0));
    assert!(error(1).contains("ell² = 9"), "{}", error(1));
    assert!(error(2).contains("`k`"), "{}", error(2));
    assert!(error(3).contains("hessian"), "{}", error(3));
    assert!(error(4).contains("min_runs"), "{}", error(4));
    assert!(error(5).contains("not JSON"), "{}", error(5));
    assert_eq!(answers[6], json!({"id": 6}));
    let lse = answers[7]["output"].as_f64().unwrap();
    assert!((lse - 2f64.ln()).abs() < 1e-15, "{lse}");
    assert!(error(8).contains("`theta` has 1 numbers"), "{}", error(8));
}

/// An unknown option is a usage message and exit code 2, before any
/// message is read.
#[test]
fn unknown_options_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_chainrule-gradbench"))
        .arg("--fast")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: chainrule-gradbench"));
}
