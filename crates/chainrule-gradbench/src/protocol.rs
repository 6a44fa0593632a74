//! GradBench's protocol: read a message, answer it with the same `id`,
//! flush, repeat until the eval closes stdin. A failed or panicking
//! evaluation is answered `success: false` with a message; the tool itself
//! never dies on bad input.

use crate::evals;
use serde_json::{json, Map, Value};
use std::io::{BufRead, Write};
use std::time::Instant;

/// How often an evaluation runs: at least `min_runs` calls and at least
/// `min_seconds` of summed call time (the harnesses' rule).
#[derive(Clone, Copy, Debug)]
pub struct Runs {
    pub min_runs: u64,
    pub min_seconds: f64,
}

impl Runs {
    /// One call (`hello`, whose inputs are bare numbers).
    pub const ONCE: Runs = Runs {
        min_runs: 1,
        min_seconds: 0.0,
    };

    /// The fields of an evaluate input, defaults 1 and 1 s.
    pub fn of(input: &Value) -> Result<Runs, String> {
        let runs = match input.get("min_runs") {
            None => 1,
            Some(v) => v
                .as_u64()
                .filter(|&n| n >= 1)
                .ok_or_else(|| format!("min_runs must be a positive integer, got {v}"))?,
        };
        let seconds = match input.get("min_seconds") {
            None => 1.0,
            Some(v) => v
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| format!("min_seconds must be a non-negative number, got {v}"))?,
        };
        Ok(Runs {
            min_runs: runs,
            min_seconds: seconds,
        })
    }
}

/// How the tool was started.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `particle`'s flight through the graph's `while_loop` rather than an
    /// eager loop.
    pub graph_loops: bool,
}

/// An evaluation's result: the last call's output and each call's time.
pub struct Answer {
    pub output: Value,
    pub nanoseconds: Vec<u128>,
}

/// Calls `f` as `runs` asks, timing each call alone; the output of the last
/// call is encoded (outside the timings).
pub fn measure<T>(
    runs: Runs,
    mut f: impl FnMut() -> chainrule::Result<T>,
    encode: impl FnOnce(T) -> Result<Value, String>,
) -> Result<Answer, String> {
    let mut times = Vec::new();
    let mut total = 0.0;
    let mut last = None;
    while (times.len() as u64) < runs.min_runs || total < runs.min_seconds {
        // The last run's output goes before the next run starts (and outside
        // its time), so the allocator hands that run the same memory back
        // rather than fresh pages, which the kernel zeroes on first touch.
        drop(last.take());
        let start = Instant::now();
        let out = f().map_err(|e| e.to_string())?;
        let took = start.elapsed();
        times.push(took.as_nanos());
        total += took.as_secs_f64();
        last = Some(out);
    }
    Ok(Answer {
        output: encode(last.expect("at least one run"))?,
        nanoseconds: times,
    })
}

/// Answers every message of `input` on `output` until end of input.
pub fn serve(input: impl BufRead, mut output: impl Write, options: Options) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = answer(&line, options);
        writeln!(output, "{reply}")?;
        output.flush()?;
    }
    Ok(())
}

/// The response to one message line.
pub fn answer(line: &str, options: Options) -> Value {
    let message: Value = match serde_json::from_str(line) {
        Ok(m) => m,
        // Without an id there is nothing the eval could match: answer
        // with the error so that the run stops with a readable message.
        Err(e) => return json!({"id": null, "success": false, "error": format!("not JSON: {e}")}),
    };
    let id = message.get("id").cloned().unwrap_or(Value::Null);
    let mut reply = Map::new();
    reply.insert("id".into(), id);
    match message.get("kind").and_then(Value::as_str) {
        Some("start") => {
            reply.insert("tool".into(), json!("chainrule"));
        }
        Some("define") => {
            let module = message.get("module").and_then(Value::as_str).unwrap_or("");
            let known = evals::MODULES.contains(&module);
            reply.insert("success".into(), json!(known));
            if !known {
                reply.insert(
                    "error".into(),
                    json!(format!("chainrule-gradbench has no module `{module}`")),
                );
            }
        }
        Some("evaluate") => {
            let module = message.get("module").and_then(Value::as_str).unwrap_or("");
            let function = message
                .get("function")
                .and_then(Value::as_str)
                .unwrap_or("");
            let input = message.get("input").unwrap_or(&Value::Null);
            match guarded(|| evals::evaluate(module, function, input, options)) {
                Ok(answer) => {
                    reply.insert("success".into(), json!(true));
                    reply.insert("output".into(), answer.output);
                    let timings: Vec<Value> = answer
                        .nanoseconds
                        .iter()
                        .map(|&ns| json!({"name": "evaluate", "nanoseconds": ns as u64}))
                        .collect();
                    reply.insert("timings".into(), Value::Array(timings));
                }
                Err(error) => {
                    reply.insert("success".into(), json!(false));
                    reply.insert(
                        "error".into(),
                        json!(format!("{module}.{function}: {error}")),
                    );
                }
            }
        }
        _ => {}
    }
    Value::Object(reply)
}

/// `f()`, with a panic turned into an error (and no backtrace on stderr).
fn guarded(f: impl FnOnce() -> Result<Answer, String>) -> Result<Answer, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(format!("internal error: {what}"))
    })
}
