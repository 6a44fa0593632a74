//! `chainrule-gradbench`: chainrule as a tool of GradBench, the public
//! benchmark of AD tools (`gradbench/gradbench`). It speaks GradBench's
//! protocol on stdin/stdout (one JSON message per line, answered in lock
//! step) and implements each eval's module with chainrule's own AD; no
//! derivative is written by hand.
//!
//!     gradbench run --eval "… evals/gmm/run.py" --tool "chainrule-gradbench"

mod evals;
mod protocol;

fn main() {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    if let Err(e) = protocol::serve(stdin.lock(), stdout.lock()) {
        eprintln!("chainrule-gradbench: {e}");
        std::process::exit(1);
    }
}
