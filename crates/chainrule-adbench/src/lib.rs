//! The three ADBench objectives (Srajer, Baydin & Fitzgibbon, 2018) written
//! with chainrule's ordinary tensor API, as a user would write them:
//! vectorized over points (GMM), observations (bundle adjustment) and the
//! bits of each step (LSTM), and differentiated by chainrule.
//!
//! Each module reads ADBench's file format (a bad or truncated file is an
//! error naming the file and what was expected), computes the objective, and
//! gets its derivative from the library: the full GMM gradient and the LSTM
//! gradient by reverse mode, and the sparse BA Jacobian by two reverse sweeps
//! over the 15 parameters each reprojection residual depends on.

#![warn(missing_docs)]

pub mod ba;
pub mod gmm;
pub mod lstm;

use chainrule::{Error, Result};
use std::path::Path;

/// `data/<rel>` of this crate: the ADBench files the tests read, shipped with
/// the repository (see `data/README.md`). The benchmarks read the larger
/// instances from the team's shared folder instead (`chainrule-bench`).
pub fn test_data(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(rel)
}

/// Every whitespace-separated number of a file, in order.
pub(crate) fn numbers(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    text.split_whitespace()
        .enumerate()
        .map(|(i, t)| {
            t.parse::<f64>()
                .map_err(|_| Error::file(path, format!("token {} (`{t}`) is not a number", i + 1)))
        })
        .collect()
}

/// A cursor over a file's numbers that names the file and the field when
/// the file ends early.
pub(crate) struct Reader<'a> {
    path: &'a Path,
    values: Vec<f64>,
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn open(path: &'a Path) -> Result<Reader<'a>> {
        Ok(Reader {
            path,
            values: numbers(path)?,
            at: 0,
        })
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&[f64]> {
        if self.at + n > self.values.len() {
            return Err(Error::file(
                self.path,
                format!(
                    "truncated: expected {n} numbers for {what} after the first {}, but the file has {} in all",
                    self.at,
                    self.values.len()
                ),
            ));
        }
        let s = &self.values[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub fn count(&mut self, what: &str) -> Result<usize> {
        let v = self.take(1, what)?[0];
        if v < 0.0 || v.fract() != 0.0 || v > 1e9 {
            return Err(Error::file(
                self.path,
                format!("{what} must be a non-negative integer, got {v}"),
            ));
        }
        Ok(v as usize)
    }
}
