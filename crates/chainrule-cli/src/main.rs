//! `chainrule`: the command-line face of the library.
//!
//! Exit codes: 0 success, 2 bad input (a flag, a file, a diverging run), 1 an
//! internal error. A panic is reported as an internal error in one line,
//! never with a backtrace.

use chainrule_cli::commands::{self, ExprArgs, Kind, WrtArgs};
use chainrule_cli::{train, CliError};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "chainrule",
    version,
    about = "Automatic differentiation, explained; and models trained with it",
    after_help = "Example, the note's example 2 derived step by step:\n  chainrule grad \"sum((X @ w - y)^2)\" --wrt w --set \"X=randn(5,3)\" --set \"w=randn(3)\" --set \"y=randn(5)\" --explain"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The value of an expression.
    Eval(ExprArgs),
    /// The gradient of a single-valued expression by each --wrt variable.
    Grad(WrtArgs),
    /// The Jacobian: output shape followed by the variable's shape.
    Jacobian(WrtArgs),
    /// The Hessian of a single-valued expression.
    Hessian(WrtArgs),
    /// The Jacobian-vector product along --dir.
    Jvp(WrtArgs),
    /// Train a model with chainrule's layers and optimizers.
    Train(train::TrainArgs),
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Eval(a) => commands::run(Kind::Eval, &a, &[], None),
        Command::Grad(a) => commands::run(Kind::Grad, &a.common, &a.wrt, a.dir.as_deref()),
        Command::Jacobian(a) => commands::run(Kind::Jacobian, &a.common, &a.wrt, a.dir.as_deref()),
        Command::Hessian(a) => commands::run(Kind::Hessian, &a.common, &a.wrt, a.dir.as_deref()),
        Command::Jvp(a) => commands::run(Kind::Jvp, &a.common, &a.wrt, a.dir.as_deref()),
        Command::Train(args) => train::run(args),
    }
}

use chainrule_cli::expr::STACK_BYTES;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    // A panic is a bug: report it in one line, no backtrace.
    std::panic::set_hook(Box::new(|_| {}));
    // Passes over an expression recurse once per level of its tree (up to
    // `expr::MAX_TREE_DEPTH`); a large stack holds them (only the pages
    // touched are committed).
    let worker = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || std::panic::catch_unwind(|| run(cli)));
    let outcome = match worker.map(|w| w.join()) {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(payload)) => Err(payload),
        Err(e) => Ok(Err(CliError::Internal(format!(
            "cannot start a thread: {e}"
        )))),
    };
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => ExitCode::from(e.report()),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            eprintln!("chainrule: internal error: {msg}");
            ExitCode::from(1)
        }
    }
}
