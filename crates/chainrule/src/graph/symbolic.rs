//! Graphs with symbolic dimensions: placeholders declared with named sizes
//! (`"n"`) as well as fixed ones. The build traces the function once on
//! example sizes, so shape errors surface when the graph is declared; a run
//! checks the feeds against the declaration (fixed sizes equal, each named
//! size the same wherever it appears) and uses the executable compiled for
//! those sizes, tracing and compiling it on first use (as `jax.jit` and
//! `tf.function` specialize per input shape).

use super::{Executable, Graph};
use crate::error::{Error, Result};
use crate::{DType, Tensor};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One dimension of a declared placeholder.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known when the graph is declared.
    Fixed(usize),
    /// A size named here and bound by the feeds.
    Sym(String),
}

impl Dim {
    /// The named size `name` ([`Dim::Sym`]).
    pub fn sym(name: &str) -> Dim {
        Dim::Sym(name.to_string())
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Fixed(n)
    }
}

/// A declared input: its name, dimensions and dtype.
#[derive(Clone, Debug)]
pub struct Placeholder {
    /// The name its feed is given under.
    pub name: String,
    /// Its dimensions, fixed or named, one per axis.
    pub dims: Vec<Dim>,
    /// The dtype its feed must have.
    pub dtype: DType,
}

impl Placeholder {
    /// A placeholder named `name` with dimensions `dims` and dtype `dtype`.
    pub fn new(name: &str, dims: &[Dim], dtype: DType) -> Placeholder {
        Placeholder {
            name: name.to_string(),
            dims: dims.to_vec(),
            dtype,
        }
    }
}

type Build = Arc<dyn Fn(&[Tensor]) -> Result<Vec<Tensor>> + Send + Sync>;

/// Compiled executables by input sizes.
type Cache = Arc<Mutex<HashMap<Vec<Vec<usize>>, Arc<Executable>>>>;

/// What is done to the traced graph before it is compiled.
#[derive(Clone, Debug)]
enum Step {
    Gradients(usize, Vec<String>),
    Optimize,
}

/// A graph over placeholders with symbolic dimensions (see the module docs).
#[derive(Clone)]
pub struct SymbolicGraph {
    inputs: Vec<Placeholder>,
    build: Build,
    steps: Vec<Step>,
    cache: Cache,
}

/// The example size of the first named dimension at build time.
const EXAMPLE_SIZE: usize = 3;

impl SymbolicGraph {
    /// Declares the graph: `build` is traced once now, on example sizes (see
    /// `example_sizes`), so a shape mismatch is reported here.
    pub fn declare<F>(inputs: &[Placeholder], build: F) -> Result<SymbolicGraph>
    where
        F: Fn(&[Tensor]) -> Result<Vec<Tensor>> + Send + Sync + 'static,
    {
        let g = SymbolicGraph {
            inputs: inputs.to_vec(),
            build: Arc::new(build),
            steps: Vec::new(),
            cache: Arc::default(),
        };
        let sizes = g.example_sizes();
        g.specialize(&sizes)?;
        Ok(g)
    }

    /// The same graph followed by the gradients of output `output` with
    /// respect to the named inputs (see [`Graph::gradients`]).
    pub fn gradients(&self, output: usize, wrt: &[&str]) -> Result<SymbolicGraph> {
        let mut g = self.clone();
        g.steps.push(Step::Gradients(
            output,
            wrt.iter().map(|s| s.to_string()).collect(),
        ));
        g.cache = Arc::default();
        // Checked now, on the example sizes.
        let sizes = g.example_sizes();
        g.specialize(&sizes)?;
        Ok(g)
    }

    /// The same graph, optimized when it is specialized.
    pub fn optimize(&self) -> SymbolicGraph {
        let mut g = self.clone();
        g.steps.push(Step::Optimize);
        g.cache = Arc::default();
        g
    }

    /// Example sizes for the build-time check: each named size gets its own
    /// value (3, 4, 5… in order of appearance, never 1, which broadcasts), so
    /// an op that needs two different names to agree fails when declared.
    fn example_sizes(&self) -> Vec<Vec<usize>> {
        let mut names: Vec<&str> = Vec::new();
        self.inputs
            .iter()
            .map(|p| {
                p.dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => *n,
                        Dim::Sym(s) => {
                            let i = names.iter().position(|n| n == s).unwrap_or_else(|| {
                                names.push(s);
                                names.len() - 1
                            });
                            EXAMPLE_SIZE + i
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The concrete graph for one set of input sizes.
    pub fn specialize(&self, sizes: &[Vec<usize>]) -> Result<Graph> {
        let examples: Vec<Tensor> = self
            .inputs
            .iter()
            .zip(sizes)
            .map(|(p, s)| Tensor::ones(s, p.dtype))
            .collect();
        let feeds: Vec<(&str, &Tensor)> = self
            .inputs
            .iter()
            .map(|p| p.name.as_str())
            .zip(&examples)
            .collect();
        let build = self.build.clone();
        let mut g = Graph::trace(&feeds, move |xs| build(xs))?;
        for step in &self.steps {
            g = match step {
                Step::Gradients(o, wrt) => {
                    let wrt: Vec<&str> = wrt.iter().map(String::as_str).collect();
                    g.gradients(*o, &wrt)?
                }
                Step::Optimize => g.optimize(),
            };
        }
        Ok(g)
    }

    /// Checks `feeds` against the declaration and binds the named sizes.
    fn sizes_of(&self, feeds: &[(&str, &Tensor)]) -> Result<Vec<Vec<usize>>> {
        for (name, _) in feeds {
            if !self.inputs.iter().any(|p| p.name == *name) {
                return Err(Error::invalid(
                    "graph",
                    format!("feed `{name}` is not an input of the graph"),
                ));
            }
        }
        let mut bound: HashMap<&str, (usize, &str)> = HashMap::new();
        let mut sizes = Vec::with_capacity(self.inputs.len());
        for p in &self.inputs {
            let Some((_, t)) = feeds.iter().find(|(n, _)| *n == p.name) else {
                return Err(Error::invalid(
                    "graph",
                    format!("input `{}` was not fed", p.name),
                ));
            };
            if t.ndim() != p.dims.len() || t.dtype() != p.dtype {
                return Err(Error::invalid(
                    "graph",
                    format!(
                        "input `{}` was fed a {:?} tensor of shape {:?}; it is declared {:?} with dims {:?}",
                        p.name,
                        t.dtype(),
                        t.shape(),
                        p.dtype,
                        p.dims
                    ),
                ));
            }
            for (axis, (d, &n)) in p.dims.iter().zip(t.shape()).enumerate() {
                match d {
                    Dim::Fixed(m) if *m != n => {
                        return Err(Error::invalid(
                            "graph",
                            format!("input `{}` axis {axis} must have size {m}, got {n}", p.name),
                        ))
                    }
                    Dim::Sym(s) => match bound.get(s.as_str()) {
                        Some(&(m, other)) if m != n => {
                            return Err(Error::invalid(
                                "graph",
                                format!(
                                    "size `{s}` is {m} in input `{other}` but {n} in input `{}` axis {axis}",
                                    p.name
                                ),
                            ))
                        }
                        _ => {
                            bound.insert(s.as_str(), (n, p.name.as_str()));
                        }
                    },
                    _ => {}
                }
            }
            sizes.push(t.shape().to_vec());
        }
        Ok(sizes)
    }

    /// Runs on `feeds`, compiling the graph for these sizes the first time.
    pub fn run(&self, feeds: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        let sizes = self.sizes_of(feeds)?;
        let cached = self.cache.lock().unwrap().get(&sizes).cloned();
        let exe = match cached {
            Some(exe) => exe,
            None => {
                let exe = Arc::new(self.specialize(&sizes)?.compile());
                self.cache.lock().unwrap().insert(sizes, exe.clone());
                exe
            }
        };
        exe.run(feeds)
    }

    /// How many specializations have been compiled.
    pub fn compiled_sizes(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}
