//! Loops compiled as loops: a [`Loop`] whose body is small (every value a
//! handful of elements, as in a scalar recurrence, an ODE step or a small
//! RNN) becomes one native function whose carry stays in registers from one
//! step to the next. The body is *scalarized*: each of its values is a list
//! of elements, so movement ops (reshape, narrow, concat, pad, broadcast,
//! permute, index_select) are decided while compiling and cost nothing at run
//! time, and elementwise ops, reductions and small matrix products become
//! straight-line arithmetic. What depends only on the captures and the
//! constants is computed once, before the loop.
//!
//! A body with another op (a gather, a custom op, a nested loop) or larger
//! values is not compiled: the loop then runs its body graph step by step.

use super::codegen::{build, float, float_cc, Arith, Code, KernelFn};
use crate::control::{Loop, Steps};
use crate::error::{Error, Result};
use crate::graph::{GOp, Graph, Node};
use crate::ops::{BinaryOp, Prim, ReduceOp};
use crate::storage::Storage;
use crate::tensor::Tensor;
use crate::DType;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, InstBuilder, MemFlagsData, Value};
use cranelift_frontend::Variable;

/// The most elements one body value may have. The loop of a small RNN's
/// VJP carries the gradients of its weights (323 elements for GradBench's
/// two-layer LSTM, ~900 for six layers): compiled, its step is ~15× faster
/// than interpreted.
const MAX_VALUE_ELEMENTS: usize = 2048;
/// The most element operations a body may take (bounds the compile time:
/// the six-layer LSTM's VJP body, about 20,000, compiles in ~0.3 s).
const MAX_BODY_ELEMENTS: usize = 32768;

/// A loop's native code.
pub(crate) struct Recurrence {
    code: Code,
}

fn unsupported(why: impl std::fmt::Display) -> Error {
    Error::invalid("compile", format!("the loop body is not compiled: {why}"))
}

impl Recurrence {
    /// Compiles `l`, or says why its body stays interpreted.
    pub fn new(l: &Loop) -> Result<Recurrence> {
        check_body(&l.body)?;
        let code = build(1, "speed", |_, a| {
            Writer::new(l, a).write();
            if std::env::var_os("CHAINRULE_DUMP_KERNELS").is_some() {
                eprintln!("{}:\n{}", l.describe(), a.b.func.display());
            }
            Ok(())
        })?;
        Ok(Recurrence { code })
    }

    /// Runs the loop on plain values (the loop's inputs, checked by its shape
    /// function), returning its output.
    pub fn run(&self, l: &Loop, inputs: &[&Tensor]) -> Result<Tensor> {
        let contiguous: Vec<Tensor> = inputs
            .iter()
            .map(|t| crate::ops::movement::copy_of(&t.detach_untraced()))
            .collect();
        let len = l.n + l.length().unwrap_or(0) * l.p;
        crate::limits::check_alloc(l.name(), &[len], l.dtype)?;
        let mut out = Storage::zeroed_heap(l.dtype, len);
        let mut table: Vec<*mut u8> = contiguous.iter().map(super::readable).collect();
        table.push(out.heap_ptr_mut().expect("a fresh heap buffer"));
        let f: KernelFn = self.code.entries[0];
        // SAFETY: the table holds the loop's inputs, contiguous and of the
        // shapes its shape function checked (which the code was written
        // for), then an output buffer of `len` elements; all outlive the call.
        unsafe { f(table.as_ptr()) };
        Ok(Tensor::from_parts(
            out,
            crate::layout::Layout::contiguous(&[len]),
            None,
        ))
    }
}

/// Every node of the body is an op the scalarizer knows, of few elements.
fn check_body(g: &Graph) -> Result<()> {
    let mut total = 0;
    for node in &g.nodes {
        // Integers only as the constant index of an `index_select`.
        let index_constant = matches!(node.op, GOp::Constant(_)) && node.dtype == DType::I64;
        if !node.dtype.is_float() && !index_constant {
            return Err(unsupported(format!("it holds {} values", node.dtype)));
        }
        let numel: usize = node.shape.iter().product();
        if numel > MAX_VALUE_ELEMENTS {
            return Err(unsupported(format!("a value of {numel} elements")));
        }
        total += match &node.op {
            GOp::Prim(Prim::Matmul) => numel * matmul_inner(g, node),
            GOp::Prim(Prim::Reduce { .. }) => g.node(node.inputs[0]).shape.iter().product(),
            _ => numel,
        };
        let known = match &node.op {
            GOp::Input(_) | GOp::Constant(_) => true,
            GOp::Prim(p) if !matches!(p, Prim::IndexSelect { .. }) => {
                node.inputs.iter().all(|i| g.node(*i).dtype.is_float()) && known_prim(g, node, p)
            }
            GOp::Prim(_) => {
                matches!(g.node(node.inputs[1]).op, GOp::Constant(_)) && index_in_range(g, node)
            }
        };
        if !known {
            return Err(unsupported(format!("it runs {}", node.op.name())));
        }
    }
    if total > MAX_BODY_ELEMENTS {
        return Err(unsupported(format!("{total} element operations per step")));
    }
    Ok(())
}

/// Whether the scalarizer writes primitive `p` (of float inputs).
fn known_prim(g: &Graph, node: &Node, p: &Prim) -> bool {
    match p {
        Prim::Matmul => node.inputs.iter().all(|i| g.node(*i).shape.len() <= 2),
        Prim::Reduce { .. } => node
            .inputs
            .iter()
            .all(|i| g.node(*i).shape.iter().product::<usize>() > 0),
        Prim::Unary(_)
        | Prim::Binary(_)
        | Prim::Mask(_)
        | Prim::Where
        | Prim::Reshape(_)
        | Prim::Permute(_)
        | Prim::BroadcastTo(_)
        | Prim::Narrow { .. }
        | Prim::Pad { .. }
        | Prim::Concat { .. }
        | Prim::Contiguous
        | Prim::StopGradient
        | Prim::Cast(_) => true,
        _ => false,
    }
}

/// Whether an `index_select`'s constant index lies inside its operand's axis
/// (else the loop runs interpreted, and fails there with the op's error).
fn index_in_range(g: &Graph, node: &Node) -> bool {
    let (GOp::Constant(index), GOp::Prim(Prim::IndexSelect { axis })) =
        (&g.node(node.inputs[1]).op, &node.op)
    else {
        return false;
    };
    let len = g.node(node.inputs[0]).shape[*axis] as i64;
    index.to_vec::<i64>().iter().all(|i| (0..len).contains(i))
}

/// The length of a matmul's contracted axis.
fn matmul_inner(g: &Graph, node: &Node) -> usize {
    let a = &g.node(node.inputs[0]).shape;
    *a.last().unwrap_or(&1)
}

/// The row-major multi-index of element `flat` of `shape`.
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for a in (0..shape.len()).rev() {
        idx[a] = flat % shape[a].max(1);
        flat /= shape[a].max(1);
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (i, s)| acc * s + i)
}

/// The element of a value of `shape` that broadcasting sends to `out` (an
/// index of the broadcast shape).
fn broadcast_source(out: &[usize], shape: &[usize]) -> usize {
    let skip = out.len() - shape.len();
    let idx: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(a, &s)| if s == 1 { 0 } else { out[skip + a] })
        .collect();
    ravel(&idx, shape)
}

/// Writes one loop's function.
struct Writer<'l, 'x, 'b> {
    l: &'l Loop,
    a: &'l mut Arith<'x, 'b>,
    bases: Vec<Value>,
    /// Each body node's elements, once written.
    values: Vec<Option<Vec<Value>>>,
    /// Nodes that depend on nothing that changes from step to step.
    invariant: Vec<bool>,
}

impl<'l, 'x, 'b> Writer<'l, 'x, 'b> {
    fn new(l: &'l Loop, a: &'l mut Arith<'x, 'b>) -> Self {
        let g = &l.body;
        let first_capture = 1 + l.first_capture();
        let mut invariant = vec![false; g.nodes.len()];
        for (i, node) in g.nodes.iter().enumerate() {
            invariant[i] = match &node.op {
                GOp::Constant(_) => true,
                GOp::Input(_) => g.inputs[first_capture..].iter().any(|c| c.0 as usize == i),
                GOp::Prim(_) => node.inputs.iter().all(|j| invariant[j.0 as usize]),
            };
        }
        Writer {
            l,
            a,
            bases: Vec::new(),
            values: vec![None; g.nodes.len()],
            invariant,
        }
    }

    fn ins(&mut self) -> cranelift_frontend::FuncInstBuilder<'_, 'b> {
        self.a.b.ins()
    }

    fn write(mut self) {
        let l = self.l;
        let entry = self.a.b.create_block();
        self.a.b.append_block_params_for_function_params(entry);
        self.a.b.switch_to_block(entry);
        let table = self.a.b.block_params(entry)[0];
        // The loop's inputs (the body's, but the index), then the output.
        let operands = l.body.inputs.len();
        let ptr = self.a.ptr;
        for o in 0..operands {
            let at = (o * ptr.bytes() as usize) as i32;
            let p = self.ins().load(ptr, MemFlagsData::trusted(), table, at);
            self.bases.push(p);
        }
        let ty = float(l.dtype);
        let carry: Vec<Variable> = (0..l.n).map(|_| self.a.b.declare_var(ty)).collect();
        for (e, var) in carry.iter().enumerate() {
            let v = self.load(0, e as i64, l.dtype);
            self.a.b.def_var(*var, v);
        }
        // Captures and constants, and what depends on them only: once.
        for i in 0..l.body.nodes.len() {
            if self.invariant[i] {
                self.node(i, None);
            }
        }
        let counter = self.a.b.declare_var(types::I64);
        let zero = self.ins().iconst(types::I64, 0);
        self.a.b.def_var(counter, zero);
        let (header, body, exit) = (
            self.a.b.create_block(),
            self.a.b.create_block(),
            self.a.b.create_block(),
        );
        self.ins().jump(header, &[]);
        self.a.b.switch_to_block(header);
        let k = self.a.b.use_var(counter);
        let step = match l.steps {
            Steps::Counted { length, reverse } => {
                let more = self
                    .ins()
                    .icmp_imm_s(IntCC::SignedLessThan, k, length as i64);
                self.ins().brif(more, body, &[], exit, &[]);
                self.a.b.switch_to_block(body);
                if reverse {
                    let last = self.ins().iconst(types::I64, length as i64 - 1);
                    self.ins().isub(last, k)
                } else {
                    k
                }
            }
            Steps::While => {
                let c: Vec<Value> = carry.iter().map(|v| self.a.b.use_var(*v)).collect();
                let step = Step { index: k, carry: c };
                for (i, &needed) in l.condition_nodes().iter().enumerate() {
                    if needed && !self.invariant[i] {
                        self.node(i, Some(&step));
                    }
                }
                let last = *l.body.outputs.last().expect("a condition");
                let go_on = self.values[last.0 as usize].as_ref().expect("written")[0];
                let dtype = l.body.node(last).dtype;
                let zero = self.a.constant(0.0, dtype, go_on);
                let t = self.ins().fcmp(FloatCC::NotEqual, go_on, zero);
                self.ins().brif(t, body, &[], exit, &[]);
                self.a.b.switch_to_block(body);
                k
            }
        };
        let c: Vec<Value> = carry.iter().map(|v| self.a.b.use_var(*v)).collect();
        let now = Step {
            index: step,
            carry: c,
        };
        for i in 0..l.body.nodes.len() {
            if self.values[i].is_none() {
                self.node(i, Some(&now));
            }
        }
        let out = self.bases.len() - 1;
        if l.p > 0 {
            let ys = self.values[l.body.outputs[1].0 as usize]
                .clone()
                .expect("written");
            let base = self.ins().imul_imm_s(step, l.p as i64);
            for (e, y) in ys.into_iter().enumerate() {
                let at = self.ins().iadd_imm_s(base, (l.n + e) as i64);
                self.store(out, at, y);
            }
        }
        let next = self.values[l.body.outputs[0].0 as usize]
            .clone()
            .expect("written");
        for (var, v) in carry.iter().zip(next) {
            self.a.b.def_var(*var, v);
        }
        let k1 = self.ins().iadd_imm_s(k, 1);
        self.a.b.def_var(counter, k1);
        self.ins().jump(header, &[]);
        self.a.b.switch_to_block(exit);
        for (e, var) in carry.iter().enumerate() {
            let v = self.a.b.use_var(*var);
            let at = self.ins().iconst(types::I64, e as i64);
            self.store(out, at, v);
        }
        self.ins().return_(&[]);
    }

    fn address(&mut self, operand: usize, element: Value, dtype: DType) -> Value {
        let bytes = self.ins().imul_imm_s(element, dtype.size() as i64);
        let base = self.bases[operand];
        self.ins().iadd(base, bytes)
    }

    fn load(&mut self, operand: usize, element: i64, dtype: DType) -> Value {
        let e = self.ins().iconst(types::I64, element);
        self.load_at(operand, e, dtype)
    }

    fn load_at(&mut self, operand: usize, element: Value, dtype: DType) -> Value {
        let at = self.address(operand, element, dtype);
        self.ins()
            .load(float(dtype), MemFlagsData::trusted(), at, 0)
    }

    fn store(&mut self, operand: usize, element: Value, v: Value) {
        let at = self.address(operand, element, self.l.dtype);
        self.ins().store(MemFlagsData::trusted(), v, at, 0);
    }

    fn constant(&mut self, c: f64, dtype: DType) -> Value {
        super::codegen::float_constant(self.ins(), c, dtype)
    }

    fn arg(&self, node: &Node, k: usize) -> &[Value] {
        self.values[node.inputs[k].0 as usize]
            .as_deref()
            .expect("inputs come first")
    }

    /// An `index_select`'s index: a constant of the body (`check_body`).
    fn static_index(&self, node: &Node) -> Vec<usize> {
        match &self.l.body.node(node.inputs[1]).op {
            GOp::Constant(t) => t.to_vec::<i64>().into_iter().map(|i| i as usize).collect(),
            _ => unreachable!("check_body admits constant indices only"),
        }
    }

    fn shape_of(&self, node: &Node, k: usize) -> &[usize] {
        &self.l.body.node(node.inputs[k]).shape
    }

    /// Writes node `i` (a step's input when `step` is there).
    fn node(&mut self, i: usize, step: Option<&Step>) {
        let node = &self.l.body.nodes[i];
        let v = match &node.op {
            // An integer constant is an index, read where it is used.
            GOp::Constant(_) if !node.dtype.is_float() => Vec::new(),
            GOp::Constant(t) => {
                let data = t.to_vec_f64();
                data.into_iter()
                    .map(|c| self.constant(c, node.dtype))
                    .collect()
            }
            GOp::Input(_) => self.input(i, step),
            GOp::Prim(p) => self.prim(p, node),
        };
        self.values[i] = Some(v);
    }

    /// The elements of body input node `i`.
    fn input(&mut self, i: usize, step: Option<&Step>) -> Vec<Value> {
        let l = self.l;
        let k = l
            .body
            .inputs
            .iter()
            .position(|c| c.0 as usize == i)
            .expect("an input");
        let numel: usize = l.body.nodes[i].shape.iter().product();
        // The loop's operands lack the index (input 0).
        let operand = k.saturating_sub(1);
        match (k, step) {
            (0, Some(s)) => {
                let ty = float(l.dtype);
                vec![self.ins().fcvt_from_sint(ty, s.index)]
            }
            (1, Some(s)) => s.carry.clone(),
            (2, Some(s)) if l.m > 0 => {
                let base = self.ins().imul_imm_s(s.index, l.m as i64);
                (0..numel)
                    .map(|e| {
                        let at = self.ins().iadd_imm_s(base, e as i64);
                        self.load_at(operand, at, l.dtype)
                    })
                    .collect()
            }
            _ => (0..numel)
                .map(|e| self.load(operand, e as i64, l.dtype))
                .collect(),
        }
    }

    fn prim(&mut self, p: &Prim, node: &Node) -> Vec<Value> {
        let out_shape = node.shape.clone();
        let numel: usize = out_shape.iter().product();
        let dtype = node.dtype;
        let map = |w: &Self, k: usize, f: &dyn Fn(&[usize]) -> usize| -> Vec<Value> {
            let x = w.arg(node, k);
            (0..numel).map(|e| x[f(&unravel(e, &out_shape))]).collect()
        };
        match p {
            Prim::Unary(op) => {
                let x = self.arg(node, 0).to_vec();
                x.into_iter().map(|v| self.a.unary(*op, v, dtype)).collect()
            }
            Prim::Binary(op) => self.elementwise(node, |w, v| w.binary(*op, v[0], v[1], dtype)),
            Prim::Mask(op) => self.elementwise(node, |w, v| {
                let t = w.ins().fcmp(float_cc(*op), v[0], v[1]);
                let (one, zero) = (w.constant(1.0, dtype), w.constant(0.0, dtype));
                w.a.select(t, one, zero)
            }),
            Prim::Where => {
                let cdt = self.l.body.node(node.inputs[0]).dtype;
                self.elementwise(node, |w, v| {
                    let zero = w.constant(0.0, cdt);
                    let t = w.ins().fcmp(FloatCC::NotEqual, v[0], zero);
                    w.a.select(t, v[1], v[2])
                })
            }
            Prim::Cast(to) => {
                let from = self.l.body.node(node.inputs[0]).dtype;
                let x = self.arg(node, 0).to_vec();
                x.into_iter()
                    .map(|v| match (from, to) {
                        (DType::F32, DType::F64) => self.ins().fpromote(types::F64, v),
                        (DType::F64, DType::F32) => self.ins().fdemote(types::F32, v),
                        _ => v,
                    })
                    .collect()
            }
            Prim::Reshape(_) | Prim::Contiguous | Prim::StopGradient => self.arg(node, 0).to_vec(),
            Prim::Permute(perm) => {
                let s = self.shape_of(node, 0).to_vec();
                map(self, 0, &|o| {
                    let mut idx = vec![0; s.len()];
                    for (j, &a) in perm.iter().enumerate() {
                        idx[a] = o[j];
                    }
                    ravel(&idx, &s)
                })
            }
            Prim::BroadcastTo(_) => {
                let s = self.shape_of(node, 0).to_vec();
                map(self, 0, &|o| broadcast_source(o, &s))
            }
            Prim::Narrow { axis, start, .. } => {
                let s = self.shape_of(node, 0).to_vec();
                map(self, 0, &|o| {
                    let mut idx = o.to_vec();
                    idx[*axis] += start;
                    ravel(&idx, &s)
                })
            }
            Prim::IndexSelect { axis } => {
                let index = self.static_index(node);
                let s = self.shape_of(node, 0).to_vec();
                map(self, 0, &|o| {
                    let mut idx = o.to_vec();
                    idx[*axis] = index[o[*axis]];
                    ravel(&idx, &s)
                })
            }
            Prim::Pad { axis, start, .. } => {
                let s = self.shape_of(node, 0).to_vec();
                let x = self.arg(node, 0).to_vec();
                (0..numel)
                    .map(|e| {
                        let mut idx = unravel(e, &out_shape);
                        match idx[*axis].checked_sub(*start).filter(|&j| j < s[*axis]) {
                            Some(j) => {
                                idx[*axis] = j;
                                x[ravel(&idx, &s)]
                            }
                            None => self.constant(0.0, dtype),
                        }
                    })
                    .collect()
            }
            Prim::Concat { axis } => {
                let mut parts = Vec::new();
                for k in 0..node.inputs.len() {
                    parts.push((self.shape_of(node, k).to_vec(), self.arg(node, k).to_vec()));
                }
                (0..numel)
                    .map(|e| {
                        let mut idx = unravel(e, &out_shape);
                        for (s, x) in &parts {
                            if idx[*axis] < s[*axis] {
                                return x[ravel(&idx, s)];
                            }
                            idx[*axis] -= s[*axis];
                        }
                        unreachable!("the concatenated lengths add up")
                    })
                    .collect()
            }
            Prim::Reduce { op, axes, .. } => self.reduce(node, *op, axes),
            Prim::Matmul => self.matmul(node),
            _ => unreachable!("check_body admits only the ops above"),
        }
    }

    fn binary(&mut self, op: BinaryOp, a: Value, b: Value, dtype: DType) -> Value {
        self.a.binary(op, a, b, dtype)
    }

    /// An elementwise op of its inputs broadcast to the output's shape.
    fn elementwise(
        &mut self,
        node: &Node,
        mut f: impl FnMut(&mut Self, &[Value]) -> Value,
    ) -> Vec<Value> {
        let numel: usize = node.shape.iter().product();
        let inputs: Vec<(Vec<usize>, Vec<Value>)> = (0..node.inputs.len())
            .map(|k| (self.shape_of(node, k).to_vec(), self.arg(node, k).to_vec()))
            .collect();
        (0..numel)
            .map(|e| {
                let o = unravel(e, &node.shape);
                let args: Vec<Value> = inputs
                    .iter()
                    .map(|(s, x)| x[broadcast_source(&o, s)])
                    .collect();
                f(self, &args)
            })
            .collect()
    }

    fn reduce(&mut self, node: &Node, op: ReduceOp, axes: &[usize]) -> Vec<Value> {
        let s = self.shape_of(node, 0).to_vec();
        let x = self.arg(node, 0).to_vec();
        let kept: Vec<usize> = s
            .iter()
            .enumerate()
            .map(|(a, &d)| if axes.contains(&a) { 1 } else { d })
            .collect();
        let mut acc: Vec<Option<Value>> = vec![None; kept.iter().product()];
        for (e, v) in x.into_iter().enumerate() {
            let mut idx = unravel(e, &s);
            for &a in axes {
                idx[a] = 0;
            }
            let o = ravel(&idx, &kept);
            acc[o] = Some(match acc[o] {
                None => v,
                Some(a) => match op {
                    ReduceOp::Sum => self.ins().fadd(a, v),
                    ReduceOp::Max => self.binary(BinaryOp::Maximum, a, v, node.dtype),
                    ReduceOp::Min => self.binary(BinaryOp::Minimum, a, v, node.dtype),
                },
            });
        }
        acc.into_iter()
            .map(|a| a.expect("no empty reduction"))
            .collect()
    }

    /// A product of a matrix or vector by a matrix or vector.
    fn matmul(&mut self, node: &Node) -> Vec<Value> {
        let (sa, sb) = (
            self.shape_of(node, 0).to_vec(),
            self.shape_of(node, 1).to_vec(),
        );
        let (a, b) = (self.arg(node, 0).to_vec(), self.arg(node, 1).to_vec());
        let (m, k) = if sa.len() == 2 {
            (sa[0], sa[1])
        } else {
            (1, sa[0])
        };
        let n = if sb.len() == 2 { sb[1] } else { 1 };
        let mut out = Vec::with_capacity(m * n);
        for r in 0..m {
            for c in 0..n {
                let mut acc = self.ins().fmul(a[r * k], b[c]);
                for j in 1..k {
                    let t = self.ins().fmul(a[r * k + j], b[j * n + c]);
                    acc = self.ins().fadd(acc, t);
                }
                out.push(acc);
            }
        }
        out
    }
}

/// What a step's body reads: its index and its carry.
struct Step {
    index: Value,
    carry: Vec<Value>,
}
