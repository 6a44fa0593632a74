//! Explicit graphs (the note's define-then-run way, as in TensorFlow 1,
//! Theano and MXNet): build a graph once, differentiate it into another
//! graph, optimize it, then run it many times with different feeds.
//!
//! A graph is built by tracing a function written against the ordinary
//! tensor API (like `tf.function` or `jax.jit`), on example inputs that fix
//! the placeholders' names, shapes and dtypes. Shapes are therefore inferred
//! while building: a mismatch fails the build, naming the op, both shapes and
//! the line of the caller's code that declared the failing op.
//!
//! [`SymbolicGraph`] declares placeholders with named sizes instead (`"n"`
//! rows): it is checked on example sizes when declared, and specialized and
//! compiled once per set of sizes it is run with.
//!
//! ```
//! use chainrule::graph::Graph;
//! use chainrule::{DType, Tensor};
//!
//! // The note's example 1: z = (<x, w> − y)²
//! let (x, w, y) = (Tensor::ones(&[3], DType::F64), Tensor::ones(&[3], DType::F64), Tensor::scalar(1.0f64));
//! let g = Graph::trace(&[("x", &x), ("w", &w), ("y", &y)], |t| {
//!     Ok(vec![(t[0].dot(&t[1]) - &t[2]).square()])
//! })
//! .unwrap();
//! let with_grad = g.gradients(0, &["w"]).unwrap(); // outputs: z, ∂z/∂w
//! let exe = with_grad.optimize().compile();
//! let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
//! let w = Tensor::from_vec(vec![0.5f64, -1.0, 1.0], &[3]);
//! let out = exe.run(&[("x", &x), ("w", &w), ("y", &Tensor::scalar(0.0f64))]).unwrap();
//! assert_eq!(out[0].item(), 2.25); // (0.5 − 2 + 3)² = 1.5²
//! assert_eq!(out[1].to_vec::<f64>(), [3.0, 6.0, 9.0]); // 2 · 1.5 · x
//! ```

mod passes;
mod symbolic;
pub(crate) mod trace;

pub use crate::compile::CompileReport;
pub use passes::{MemoryPlan, PassReport};
pub use symbolic::{Dim, Placeholder, SymbolicGraph};

use crate::autograd::{self, BackwardOptions, GradModeGuard};
use crate::error::{Error, Result};
use crate::ops::{BinaryOp, Prim};
use crate::{DType, Tensor};
use smallvec::SmallVec;
use std::fmt;

/// A node's index in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeId(pub u32);

/// What a node computes.
#[derive(Clone, Debug)]
pub(crate) enum GOp {
    /// A fed input.
    Input(String),
    /// A value fixed when the graph was built.
    Constant(Tensor),
    /// A primitive of the library (comparisons and `sign` included).
    Prim(Prim),
}

impl GOp {
    pub fn name(&self) -> String {
        match self {
            GOp::Input(n) => format!("input {n}"),
            GOp::Constant(t) if t.numel() == 1 => format!("constant {}", t.to_vec_f64()[0]),
            GOp::Constant(_) => "constant".into(),
            GOp::Prim(p) => p.describe(),
        }
    }
}

/// One node: its op, its inputs, and the shape and dtype of its value.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub op: GOp,
    pub inputs: SmallVec<[NodeId; 2]>,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// A computation as a list of nodes in evaluation order (every node after
/// its inputs), with named inputs and a list of outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub(crate) nodes: Vec<Node>,
    /// The input nodes, in declaration order.
    pub(crate) inputs: Vec<NodeId>,
    /// The requested results.
    pub(crate) outputs: Vec<NodeId>,
    /// One example value per input (the ones it was traced with).
    pub(crate) examples: Vec<Tensor>,
}

impl Graph {
    pub(crate) fn push(
        &mut self,
        op: GOp,
        inputs: Vec<NodeId>,
        shape: &[usize],
        dtype: DType,
    ) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        self.nodes.push(Node {
            op,
            inputs: inputs.into(),
            shape: shape.to_vec(),
            dtype,
        });
        id
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The number of outputs.
    pub fn num_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Each node's op, as printed (`"mul"`, `"sum axes [0]"`, `"input x"`…).
    pub fn op_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.op.name()).collect()
    }

    /// How many nodes run `op` (by printed name prefix, e.g. `"matmul"`).
    pub fn count(&self, op: &str) -> usize {
        self.op_names().iter().filter(|n| n.starts_with(op)).count()
    }

    /// Each node's inputs, as node indices.
    pub fn node_inputs(&self) -> Vec<Vec<usize>> {
        self.nodes
            .iter()
            .map(|n| n.inputs.iter().map(|i| i.0 as usize).collect())
            .collect()
    }

    /// Each node's shape.
    pub fn node_shapes(&self) -> Vec<Vec<usize>> {
        self.nodes.iter().map(|n| n.shape.clone()).collect()
    }

    /// The output nodes, as node indices.
    pub fn output_ids(&self) -> Vec<usize> {
        self.outputs.iter().map(|o| o.0 as usize).collect()
    }

    /// The shape of each output.
    pub fn output_shapes(&self) -> Vec<Vec<usize>> {
        self.outputs
            .iter()
            .map(|o| self.node(*o).shape.clone())
            .collect()
    }

    /// The input names, in order.
    pub fn input_names(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .map(|&i| match &self.node(i).op {
                GOp::Input(n) => n.as_str(),
                _ => unreachable!("inputs are Input nodes"),
            })
            .collect()
    }

    /// Builds a graph by running `f` once on the named example inputs and
    /// recording every op it runs. The examples fix each input's shape and
    /// dtype; `f`'s results become the graph's outputs.
    ///
    /// `f` runs on the examples' values, but the trace keeps none of its
    /// intermediate values (only the constants the graph needs): what `f`
    /// drops is freed at once, as in an eager run.
    /// Control flow in `f` that depends on values (reading `item()`) is
    /// frozen at the examples' values, as in `torch.jit.trace`. A shape
    /// mismatch fails the build with the op's message and the line of `f`
    /// that called it.
    pub fn trace<F>(inputs: &[(&str, &Tensor)], f: F) -> Result<Graph>
    where
        F: FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
    {
        for (i, (name, _)) in inputs.iter().enumerate() {
            if inputs[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::invalid(
                    "graph",
                    format!("two inputs are named `{name}`"),
                ));
            }
        }
        trace::begin()?;
        Ok(Graph::traced(inputs, f)?.0)
    }

    /// Traces `f` as a function of its own, out of sight of every open level
    /// and trace (a control-flow primitive's body): tensors from outside
    /// that carry a node, a layer or an outer trace's node become extra
    /// inputs (captures, named `captureK`), returned beside the graph.
    pub(crate) fn trace_lifting<F>(inputs: &[(&str, &Tensor)], f: F) -> Result<(Graph, Vec<Tensor>)>
    where
        F: FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
    {
        crate::interp::isolated(|| {
            trace::begin_lifting()?;
            Graph::traced(inputs, f)
        })
    }

    /// Runs `f` under the trace just opened, and closes it.
    fn traced<F>(inputs: &[(&str, &Tensor)], f: F) -> Result<(Graph, Vec<Tensor>)>
    where
        F: FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
    {
        let handles: Vec<Tensor> = inputs
            .iter()
            .map(|(name, t)| {
                let h = t.detach_untraced();
                trace::placeholder(name, &h);
                h
            })
            .collect();
        let result = {
            let _on = GradModeGuard::new(true);
            catch_build_errors(|| f(&handles))
        };
        let outputs: Result<Vec<NodeId>> = result.map(|outs| {
            outs.iter()
                .map(|t| trace::output(t).expect("the trace is open"))
                .collect()
        });
        let tracer = trace::end().expect("the trace was opened above");
        let mut graph = tracer.graph;
        graph.outputs = outputs?;
        debug_assert!(graph.check().is_ok(), "{:?}\n{graph}", graph.check());
        Ok((graph, tracer.captures.unwrap_or_default()))
    }

    /// A new graph computing this graph's outputs followed by the gradient of
    /// output `output` (a single element) with respect to each named input:
    /// graph-to-graph differentiation, as `tf.gradients` and Theano's `grad`.
    /// The VJP rules are the library's own, recorded as graph nodes, so the
    /// result can be optimized, printed, exported and differentiated again.
    pub fn gradients(&self, output: usize, wrt: &[&str]) -> Result<Graph> {
        let names = self.input_names();
        let Some(&out_id) = self.outputs.get(output) else {
            return Err(Error::invalid(
                "gradients",
                format!(
                    "the graph has {} outputs, not {}",
                    self.outputs.len(),
                    output + 1
                ),
            ));
        };
        if self.node(out_id).shape.iter().product::<usize>() != 1 {
            return Err(Error::invalid(
                "gradients",
                format!(
                    "output {output} has shape {:?}; gradients need a single-element output",
                    self.node(out_id).shape
                ),
            ));
        }
        let positions = wrt
            .iter()
            .map(|w| {
                names.iter().position(|n| n == w).ok_or_else(|| {
                    Error::invalid(
                        "gradients",
                        format!("no input named `{w}` (inputs: {names:?})"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let feeds: Vec<(&str, &Tensor)> = names.iter().copied().zip(&self.examples).collect();
        Graph::trace(&feeds, |xs| {
            // The inputs to differentiate become leaves, so that the backward
            // pass records the rules that reach them.
            let mut xs = xs.to_vec();
            for &p in &positions {
                let leaf = xs[p].clone().requires_grad();
                trace::alias(&xs[p], &leaf);
                xs[p] = leaf;
            }
            let values = self.eval_with(&xs)?;
            let y = &values[output];
            let targets: Vec<&Tensor> = positions.iter().map(|&p| &xs[p]).collect();
            let grads = if y.needs_grad() {
                autograd::grad_with(
                    &[y],
                    &targets,
                    &BackwardOptions {
                        create_graph: true,
                        ..Default::default()
                    },
                )?
            } else {
                targets.iter().map(|t| t.zeros_like()).collect()
            };
            Ok(values.into_iter().chain(grads).collect())
        })
    }

    /// Every node's value at the example inputs the graph was traced with,
    /// in node order (what a drawing or a debugger shows beside each node).
    ///
    /// ```
    /// use chainrule::{graph::Graph, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// let g = Graph::trace(&[("x", &x)], |xs| Ok(vec![(&xs[0] * 3.0).sum()])).unwrap();
    /// let values = g.example_values().unwrap();
    /// assert_eq!(values.len(), g.len());
    /// assert_eq!(values[g.output_ids()[0]].item(), 9.0);
    /// ```
    pub fn example_values(&self) -> Result<Vec<Tensor>> {
        let mut values = self.bind_inputs(&self.examples);
        self.eval_values(&mut values, None)?;
        Ok(values
            .into_iter()
            .map(|v| v.expect("every node evaluated"))
            .collect())
    }

    /// A new graph on the same inputs computing `f(inputs, outputs)` of this
    /// graph (traced like [`Graph::trace`]): extends a graph with more ops,
    /// or picks outputs.
    pub fn map_outputs<F>(&self, f: F) -> Result<Graph>
    where
        F: FnOnce(&[Tensor], &[Tensor]) -> Result<Vec<Tensor>>,
    {
        let names = self.input_names();
        let feeds: Vec<(&str, &Tensor)> = names.iter().copied().zip(&self.examples).collect();
        Graph::trace(&feeds, |xs| f(xs, &self.eval_with(xs)?))
    }

    /// One slot per node, the inputs filled with `inputs` (for [`Graph::eval_values`]).
    pub(crate) fn bind_inputs(&self, inputs: &[Tensor]) -> Vec<Option<Tensor>> {
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        for (&id, t) in self.inputs.iter().zip(inputs) {
            values[id.0 as usize] = Some(t.clone());
        }
        values
    }

    /// Computes the nodes not yet in `values` (those `only` marks, or all)
    /// by their kernels: on plain values, recording nothing.
    pub(crate) fn eval_values(
        &self,
        values: &mut [Option<Tensor>],
        only: Option<&[bool]>,
    ) -> Result<()> {
        self.eval_nodes(values, only, |node, args| match &node.op {
            GOp::Prim(p) => p.forward(args),
            _ => apply(node, args),
        })
    }

    /// Computes the nodes not yet in `values` (those `only` marks, or all),
    /// each by `run` on its inputs' values.
    fn eval_nodes(
        &self,
        values: &mut [Option<Tensor>],
        only: Option<&[bool]>,
        run: impl Fn(&Node, &[&Tensor]) -> Result<Tensor>,
    ) -> Result<()> {
        for (i, node) in self.nodes.iter().enumerate() {
            if values[i].is_some() || only.is_some_and(|o| !o[i]) {
                continue;
            }
            let out = {
                let args: SmallVec<[&Tensor; 3]> = node
                    .inputs
                    .iter()
                    .map(|j| values[j.0 as usize].as_ref().expect("inputs come first"))
                    .collect();
                run(node, &args)?
            };
            values[i] = Some(out);
        }
        Ok(())
    }

    /// Evaluates the graph on tensors through the ordinary tensor API (so an
    /// open trace or reverse-mode recording sees every op).
    pub(crate) fn eval_with(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut values = self.bind_inputs(inputs);
        self.eval_nodes(&mut values, None, apply)?;
        Ok(self
            .outputs
            .iter()
            .map(|o| values[o.0 as usize].clone().expect("evaluated"))
            .collect())
    }

    /// Checks that the graph is well formed: every node after its inputs,
    /// each primitive with its number of inputs and the shape and dtype its
    /// shape function gives, constants of their recorded shape, inputs and
    /// outputs present. Every pass keeps a graph well formed (debug builds
    /// check after each).
    pub fn check(&self) -> Result<()> {
        let bad = |i: usize, msg: String| {
            Err(Error::invalid(
                "graph check",
                format!("node %{i} ({}): {msg}", self.nodes[i].op.name()),
            ))
        };
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(j) = node.inputs.iter().find(|j| j.0 as usize >= i) {
                return bad(i, format!("reads %{}, which does not come before it", j.0));
            }
            match &node.op {
                GOp::Input(_) | GOp::Constant(_) if !node.inputs.is_empty() => {
                    return bad(i, "has inputs".into());
                }
                GOp::Input(_) if !self.inputs.contains(&NodeId(i as u32)) => {
                    return bad(i, "is not one of the graph's inputs".into());
                }
                GOp::Constant(t)
                    if t.shape() != node.shape.as_slice() || t.dtype() != node.dtype =>
                {
                    return bad(i, format!("holds {:?} {:?}", t.dtype(), t.shape()));
                }
                GOp::Prim(p) => self.check_prim(i, p, node)?,
                _ => {}
            }
        }
        if self.examples.len() != self.inputs.len() {
            return Err(Error::invalid("graph check", "one example per input"));
        }
        for id in self.inputs.iter().chain(&self.outputs) {
            if id.0 as usize >= self.nodes.len() {
                return Err(Error::invalid(
                    "graph check",
                    format!("%{} does not exist", id.0),
                ));
            }
        }
        Ok(())
    }

    fn check_prim(&self, i: usize, p: &Prim, node: &Node) -> Result<()> {
        let n = node.inputs.len();
        if p.arity().is_some_and(|a| a != n) || n == 0 {
            return Err(Error::invalid(
                "graph check",
                format!("node %{i} ({}) has {n} inputs", p.describe()),
            ));
        }
        let args: SmallVec<[(&[usize], DType); 3]> = node
            .inputs
            .iter()
            .map(|j| (self.node(*j).shape.as_slice(), self.node(*j).dtype))
            .collect();
        match p.shape(&args) {
            Ok(Some((shape, dtype))) if shape != node.shape || dtype != node.dtype => {
                Err(Error::invalid(
                    "graph check",
                    format!(
                        "node %{i} ({}) is recorded as {:?} {:?}; its inputs give {dtype:?} {shape:?}",
                        p.describe(),
                        node.dtype,
                        node.shape
                    ),
                ))
            }
            Ok(_) => Ok(()),
            Err(e) => Err(Error::invalid(
                "graph check",
                format!("node %{i} ({}): {e}", p.describe()),
            )),
        }
    }

    /// Graphviz DOT: one box per node (op and shape), an edge per input.
    pub fn to_dot(&self) -> String {
        let mut s = String::from(
            "digraph chainrule {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let style = match &n.op {
                GOp::Input(_) => ", style=filled, fillcolor=\"#d0e4ff\"",
                GOp::Constant(_) => ", style=dashed",
                _ => "",
            };
            let out = if self.outputs.iter().any(|o| o.0 as usize == i) {
                ", peripheries=2"
            } else {
                ""
            };
            s.push_str(&format!(
                "  n{i} [label=\"%{i} {}\\n{:?}\"{style}{out}];\n",
                n.op.name().replace('"', "'"),
                n.shape
            ));
            for j in &n.inputs {
                s.push_str(&format!("  n{} -> n{i};\n", j.0));
            }
        }
        s.push_str("}\n");
        s
    }
}

/// One node per line: `%id = op(inputs) : shape dtype`, then the outputs.
impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nodes.iter().enumerate() {
            let args: Vec<String> = n.inputs.iter().map(|j| format!("%{}", j.0)).collect();
            writeln!(
                f,
                "%{i} = {}({}) : {:?} {:?}",
                n.op.name(),
                args.join(", "),
                n.shape,
                n.dtype
            )?;
        }
        let outs: Vec<String> = self.outputs.iter().map(|o| format!("%{}", o.0)).collect();
        write!(f, "outputs: {}", outs.join(", "))
    }
}

thread_local! {
    /// While a graph is being built on this thread: where a panic happened.
    static BUILD_PANIC_AT: std::cell::RefCell<Option<Option<String>>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once per process) a panic hook that, on a thread building a
/// graph, records where the panic happened instead of printing it, and
/// otherwise defers to the hook that was there before.
fn install_build_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let handled = BUILD_PANIC_AT
                .try_with(|b| match b.borrow_mut().as_mut() {
                    Some(slot) => {
                        *slot = info
                            .location()
                            .map(|l| format!("{}:{}", l.file(), l.line()));
                        true
                    }
                    None => false,
                })
                .unwrap_or(false);
            if !handled {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic of a tensor op (a shape mismatch while
/// building) into an error that names the op and the caller's line.
fn catch_build_errors<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_build_hook();
    let outer = BUILD_PANIC_AT.with(|b| b.borrow_mut().replace(None));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let at = BUILD_PANIC_AT
        .with(|b| std::mem::replace(&mut *b.borrow_mut(), outer))
        .flatten();
    match result {
        Ok(r) => r,
        Err(payload) => {
            let msg = crate::error::panic_message(&*payload);
            let at = at.unwrap_or_else(|| "unknown".into());
            Err(Error::invalid(
                "graph",
                format!("while building: {msg} (declared at {at})"),
            ))
        }
    }
}

/// The value of one node from its inputs' values.
pub(crate) fn apply(node: &Node, args: &[&Tensor]) -> Result<Tensor> {
    Ok(match &node.op {
        GOp::Input(name) => {
            return Err(Error::invalid(
                "graph",
                format!("input `{name}` was not fed"),
            ))
        }
        GOp::Constant(t) => t.clone(),
        GOp::Prim(p) => crate::interp::bind(p.clone(), args)?,
    })
}

/// A graph prepared to run: compiled to native kernels (see
/// [`Graph::compile`]), with the interpreter's memory plan for the runs that
/// interpret it.
pub struct Executable {
    graph: Graph,
    plan: MemoryPlan,
    /// The input names, in the order of `graph.inputs`.
    names: Vec<String>,
    native: Option<crate::compile::Program>,
    /// Why there is no native program, when there is none.
    not_native: Option<String>,
}

/// How [`Graph::compile_with`] compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Generate native code (else every run interprets the graph).
    pub native: bool,
    /// Fuse elementwise chains and their reductions into single loops
    /// (else one kernel per node: for testing the fusion).
    pub fuse: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            native: true,
            fuse: true,
        }
    }
}

impl Graph {
    /// Prepares the graph to run many times: lowered to native code, with
    /// elementwise chains and the reductions that end them fused into single
    /// loops, intermediates in one arena allocated once, and the ops no
    /// kernel takes (matmul, gathers, custom ops…) run by the interpreter.
    pub fn compile(self) -> Executable {
        self.compile_with(CompileOptions::default())
    }

    /// [`Graph::compile`] with options.
    pub fn compile_with(self, options: CompileOptions) -> Executable {
        let plan = self.memory_plan();
        let names = self.input_names().iter().map(|n| n.to_string()).collect();
        let (native, not_native) = if options.native {
            match crate::compile::Program::new(&self, options.fuse) {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, Some("native code was not asked for".into()))
        };
        Executable {
            graph: self,
            plan,
            names,
            native,
            not_native,
        }
    }
}

impl Executable {
    /// The graph it runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The memory plan ([`Graph::memory_plan`]) of the runs that interpret the graph.
    pub fn plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// What compiling produced: kernels, fused and interpreted nodes, the
    /// arena, the compile time (`None`: no native code, see
    /// [`Executable::not_native`]).
    pub fn report(&self) -> Option<&CompileReport> {
        self.native.as_ref().map(|p| &p.report)
    }

    /// Why the graph runs interpreted, when it does.
    pub fn not_native(&self) -> Option<&str> {
        self.not_native.as_deref()
    }

    /// Runs the graph on `feeds` (every input by name, each of its declared
    /// shape and dtype), returning the outputs. Nothing is recorded. Inside
    /// a transform (`vmap`, `jvp`…) the graph is interpreted, so that the
    /// transform sees each op.
    pub fn run(&self, feeds: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        match &self.native {
            Some(p) if !crate::interp::levels_open() => {
                let fed = self.ordered_feeds(feeds)?;
                let _off = GradModeGuard::new(false);
                p.run(&self.graph, &fed)
            }
            _ => self.run_with(feeds, true),
        }
    }

    /// Runs node by node through the interpreter (as inside a transform),
    /// whatever was compiled: the reference the native code is tested against.
    pub fn run_interpreted(&self, feeds: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        self.run_with(feeds, true)
    }

    /// [`Executable::run`] keeping every intermediate until the end (no
    /// memory plan): for measuring what the plan saves.
    pub fn run_unplanned(&self, feeds: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        self.run_with(feeds, false)
    }

    /// The feeds in the order of the graph's inputs, each checked against
    /// its input's shape and dtype.
    fn ordered_feeds<'t>(&self, feeds: &[(&str, &'t Tensor)]) -> Result<Vec<&'t Tensor>> {
        for (name, _) in feeds {
            if !self.names.iter().any(|n| n == name) {
                return Err(Error::invalid(
                    "graph",
                    format!(
                        "feed `{name}` is not an input of the graph (inputs: {:?})",
                        self.names
                    ),
                ));
            }
        }
        let g = &self.graph;
        let mut fed = Vec::with_capacity(g.inputs.len());
        for (&id, name) in g.inputs.iter().zip(&self.names) {
            let node = g.node(id);
            let Some((_, t)) = feeds.iter().find(|(n, _)| n == name) else {
                return Err(Error::invalid(
                    "graph",
                    format!("input `{name}` was not fed"),
                ));
            };
            if t.shape() != node.shape.as_slice() || t.dtype() != node.dtype {
                return Err(Error::invalid(
                    "graph",
                    format!(
                        "input `{name}` was fed a {:?} tensor of shape {:?}; the graph takes {:?} of shape {:?}",
                        t.dtype(),
                        t.shape(),
                        node.dtype,
                        node.shape
                    ),
                ));
            }
            fed.push(*t);
        }
        Ok(fed)
    }

    fn run_with(&self, feeds: &[(&str, &Tensor)], planned: bool) -> Result<Vec<Tensor>> {
        let g = &self.graph;
        let mut slots: Vec<Slot> = Vec::with_capacity(g.nodes.len());
        slots.resize_with(g.nodes.len(), || Slot::Empty);
        for (&id, t) in g.inputs.iter().zip(self.ordered_feeds(feeds)?) {
            slots[id.0 as usize] = Slot::T((*t).clone());
        }
        let _off = GradModeGuard::new(false);
        for (i, node) in g.nodes.iter().enumerate() {
            if matches!(slots[i], Slot::Empty) {
                slots[i] = self.run_node(node, &mut slots)?;
            }
            if planned {
                for &dead in &self.plan.free_after[i] {
                    slots[dead.0 as usize] = Slot::Empty;
                }
            }
        }
        g.outputs
            .iter()
            .map(|o| {
                let node = g.node(*o);
                match &slots[o.0 as usize] {
                    Slot::T(t) => Ok(t.clone()),
                    Slot::S(v) => Ok(Tensor::full(&[], *v, node.dtype)),
                    Slot::Empty => Err(Error::invalid("graph", "an output was released early")),
                }
            })
            .collect()
    }

    /// One node. Elementwise ops on 0-d values stay unboxed numbers (no
    /// tensor is allocated for them); a 0-d number meeting a tensor in a
    /// product or sum becomes a scalar map over the tensor.
    fn run_node(&self, node: &Node, slots: &mut [Slot]) -> Result<Slot> {
        let g = &self.graph;
        let scalar_in = |j: &NodeId| g.node(*j).shape.is_empty();
        // The unboxed paths read values: only outside every transform level
        // (a graph run inside `vmap` sees batched tensors).
        if crate::interp::levels_open() {
            return self.run_boxed(node, slots);
        }
        if let GOp::Prim(Prim::Matmul) = &node.op {
            let (a, b) = (node.inputs[0].0 as usize, node.inputs[1].0 as usize);
            if let (Slot::T(x), Slot::T(y)) = (&slots[a], &slots[b]) {
                if x.ndim() == 1
                    && y.ndim() == 1
                    && x.shape() == y.shape()
                    && x.dtype() == y.dtype()
                {
                    return Ok(Slot::S(crate::ops::matmul::dot_value(x, y)));
                }
            }
        }
        if let GOp::Prim(p @ (Prim::Unary(_) | Prim::Binary(_))) = &node.op {
            if node.shape.is_empty() && node.inputs.iter().all(scalar_in) {
                let v = |j: &NodeId| match &slots[j.0 as usize] {
                    Slot::S(v) => *v,
                    Slot::T(t) => t.item(),
                    Slot::Empty => f64::NAN,
                };
                return Ok(Slot::S(match p {
                    Prim::Unary(op) => op.eval_scalar(v(&node.inputs[0]), node.dtype),
                    Prim::Binary(op) => {
                        op.eval_scalar(v(&node.inputs[0]), v(&node.inputs[1]), node.dtype)
                    }
                    _ => unreachable!("matched above"),
                }));
            }
            if let Prim::Binary(op @ (BinaryOp::Mul | BinaryOp::Add | BinaryOp::Sub)) = p {
                let (a, b) = (node.inputs[0].0 as usize, node.inputs[1].0 as usize);
                let scaled = match (&slots[a], &slots[b], op) {
                    (Slot::T(t), Slot::S(c), BinaryOp::Mul)
                    | (Slot::S(c), Slot::T(t), BinaryOp::Mul) => Some(t.mul_scalar(*c)),
                    (Slot::T(t), Slot::S(c), BinaryOp::Add)
                    | (Slot::S(c), Slot::T(t), BinaryOp::Add) => Some(t.add_scalar(*c)),
                    (Slot::T(t), Slot::S(c), BinaryOp::Sub) => Some(t.add_scalar(-*c)),
                    _ => None,
                };
                if let Some(t) = scaled.filter(|t| t.shape() == node.shape.as_slice()) {
                    return Ok(Slot::T(t));
                }
            }
        }
        self.run_boxed(node, slots)
    }

    /// One node on tensors (0-d numbers it reads boxed, once).
    fn run_boxed(&self, node: &Node, slots: &mut [Slot]) -> Result<Slot> {
        let g = &self.graph;
        for j in &node.inputs {
            if let Slot::S(v) = slots[j.0 as usize] {
                slots[j.0 as usize] = Slot::T(Tensor::full(&[], v, g.node(*j).dtype));
            }
        }
        let args: SmallVec<[&Tensor; 3]> = node
            .inputs
            .iter()
            .map(|j| match &slots[j.0 as usize] {
                Slot::T(t) => t,
                _ => unreachable!("inputs come first and were boxed above"),
            })
            .collect();
        Ok(Slot::T(apply(node, &args)?))
    }
}

/// A value while a graph runs: a tensor, or a 0-d number kept unboxed.
enum Slot {
    Empty,
    T(Tensor),
    S(f64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traced() -> Graph {
        let x = Tensor::ones(&[2, 3], DType::F64);
        let w = Tensor::ones(&[3], DType::F64);
        Graph::trace(&[("x", &x), ("w", &w)], |t| {
            Ok(vec![t[0].matmul(&t[1]).exp().sum()])
        })
        .unwrap()
    }

    #[test]
    fn the_verifier_accepts_traced_and_optimized_graphs() {
        let g = traced();
        g.check().unwrap();
        g.gradients(0, &["x", "w"])
            .unwrap()
            .optimize()
            .check()
            .unwrap();
    }

    #[test]
    fn the_verifier_rejects_each_kind_of_ill_formed_graph() {
        let mut wrong_shape = traced();
        let last = wrong_shape.nodes.len() - 2; // the exp
        wrong_shape.nodes[last].shape = vec![7];
        let e = wrong_shape.check().unwrap_err().to_string();
        assert!(e.contains("exp") && e.contains("[7]"), "{e}");

        let mut out_of_order = traced();
        let n = out_of_order.nodes.len();
        out_of_order.nodes[2].inputs[0] = NodeId(n as u32 - 1);
        assert!(out_of_order
            .check()
            .unwrap_err()
            .to_string()
            .contains("does not come before"));

        let mut wrong_arity = traced();
        let matmul = wrong_arity
            .nodes
            .iter()
            .position(|n| n.op.name() == "matmul")
            .unwrap();
        wrong_arity.nodes[matmul].inputs.pop();
        assert!(wrong_arity
            .check()
            .unwrap_err()
            .to_string()
            .contains("1 inputs"));

        let mut missing_output = traced();
        missing_output.outputs.push(NodeId(999));
        assert!(missing_output
            .check()
            .unwrap_err()
            .to_string()
            .contains("%999"));

        let mut wrong_dtype = traced();
        wrong_dtype.nodes[last].dtype = DType::F32;
        assert!(wrong_dtype.check().unwrap_err().to_string().contains("F32"));
    }
}
