//! The `chainrule` command's internals: the expression language, its
//! evaluation in every mode, the explanations, and training. The binary in
//! `main.rs` is a thin clap front end over these modules.

#![warn(missing_docs)]

pub mod commands;
pub mod eval;
pub mod explain;
pub mod expr;
pub mod functions;
pub mod fuzzing;
pub mod inputs;
pub mod models;
pub mod parallel;
pub mod plot;
pub mod svg;
pub mod symbolic;
pub mod train;

/// What went wrong, and whose fault it was (for the exit code).
#[derive(Debug)]
pub enum CliError {
    /// Bad input: exit code 2.
    Input(String),
    /// A bug: exit code 1.
    Internal(String),
    /// Already printed (by an MPI rank before it left the job): exit with
    /// this code.
    Reported(u8),
}

impl CliError {
    /// Prints the error as the command reports it (nothing for
    /// `Reported`) and returns its exit code.
    pub fn report(&self) -> u8 {
        match self {
            CliError::Input(msg) => {
                eprintln!("chainrule: error: {msg}");
                2
            }
            CliError::Internal(msg) => {
                eprintln!("chainrule: internal error: {msg}");
                1
            }
            CliError::Reported(code) => *code,
        }
    }
}

impl From<chainrule::Error> for CliError {
    fn from(e: chainrule::Error) -> Self {
        CliError::Input(e.to_string())
    }
}
