//! `chainrule`: the command-line face of the library.
//!
//! Exit codes: 0 success, 2 bad input (a flag, a file, a diverging run), 1 an
//! internal error. A panic is reported as an internal error in one line,
//! never with a backtrace.

mod plot;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "chainrule",
    version,
    about = "Automatic differentiation, explained; and models trained with it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model with chainrule's layers and optimizers.
    Train(train::TrainArgs),
}

/// What went wrong, and whose fault it was (for the exit code).
#[derive(Debug)]
pub enum CliError {
    /// Bad input: exit code 2.
    Input(String),
    /// A bug: exit code 1.
    Internal(String),
}

impl From<chainrule::Error> for CliError {
    fn from(e: chainrule::Error) -> Self {
        CliError::Input(e.to_string())
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Train(args) => train::run(args),
    }
}

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
    let outcome = std::panic::catch_unwind(|| run(cli));
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(CliError::Input(msg))) => {
            eprintln!("chainrule: error: {msg}");
            ExitCode::from(2)
        }
        Ok(Err(CliError::Internal(msg))) => {
            eprintln!("chainrule: internal error: {msg}");
            ExitCode::from(1)
        }
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
