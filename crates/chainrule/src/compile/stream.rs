//! One pass over a large matrix for `Xᵀ f(X w)`: the gradient of every
//! least-squares or generalized linear loss (`ex2`: `2 Xᵀ (X w − y)`).
//!
//! Run node by node, the two products each read all of `X` from memory:
//! `X w`, then the elementwise chain `f`, then `Xᵀ r`. A matrix larger
//! than the caches makes that two passes over memory, which is what bounds
//! them. A stream walks `X` by blocks of rows that fit in the cache and,
//! for each block, computes its rows of `p = X w`, their rows of the chain
//! (each row depends only on its own row of `p`) and the block's share of
//! `Xᵀ r` while the block is still in the cache: one pass over memory.
//!
//! The planner ([`super::plan`]) runs a stream as one step in place of its
//! nodes; every value in it (`p`, each chain node, `Xᵀ r`) is stored, so the
//! rest of the graph (the loss `Σ r²`, say) reads them as it would have.

use crate::graph::{GOp, Graph, NodeId};
use crate::kernels::matmul::{dot, madd};
use crate::ops::{BinaryOp, Prim, UnaryOp};
use crate::storage::{with_dtype, FloatElement, StorageElement};
use crate::Tensor;
use smallvec::SmallVec;

/// Matrices smaller than this stay in the cache between the two products:
/// the nodes run as they are.
const MIN_MATRIX_BYTES: usize = 2 << 20;

/// `q = Xᵀ r` where `r` is `p = X w` through an elementwise chain.
#[derive(Clone, Debug)]
pub(crate) struct Stream {
    /// The `m×n` matrix and the `n`-vector.
    x: NodeId,
    w: NodeId,
    /// `X w`, an `m`-vector.
    pub p: NodeId,
    /// The elementwise nodes from `p` to `r`, in graph order, and the same
    /// as instructions over one row's values (chain node `k` is column
    /// `k + 1` of the pass, `p` column 0).
    chain: Vec<NodeId>,
    program: Vec<ChainInstr>,
    /// The column of `r`.
    r: usize,
    /// `Xᵀ r` (as `[n]`, `[n, 1]` or `[1, n]`).
    q: NodeId,
    /// What the chain reads from outside it (each an `m`-vector computed
    /// before `p`).
    outside: Vec<NodeId>,
}

impl Stream {
    /// The nodes whose value the stream computes.
    pub fn computes(&self) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::once(self.p)
            .chain(self.chain.iter().copied())
            .chain(std::iter::once(self.q))
    }

    /// The nodes it reads, all computed before it runs: `X`, `w`, then the
    /// outside values in order.
    pub fn reads(&self) -> impl Iterator<Item = NodeId> + '_ {
        [self.x, self.w]
            .into_iter()
            .chain(self.outside.iter().copied())
    }

    /// Runs the stream on the values `value` gives for what it reads;
    /// returns each node it computes with its value.
    pub fn run(&self, g: &Graph, value: impl Fn(NodeId) -> Tensor) -> Vec<(NodeId, Tensor)> {
        with_dtype!(g.node(self.p).dtype, T => self.run_typed::<T>(g, value))
    }

    fn run_typed<T: FloatElement>(
        &self,
        g: &Graph,
        value: impl Fn(NodeId) -> Tensor,
    ) -> Vec<(NodeId, Tensor)> {
        let n = g.node(self.x).shape[1];
        // Held while the pass borrows their elements (fed values are
        // contiguous already: no copy).
        let held: Vec<Tensor> = self.reads().map(|j| value(j).contiguous()).collect();
        let outside: Vec<&[T]> = held[2..].iter().map(elements::<T>).collect();
        let m = held[0].shape()[0];
        // Column 0 is p, then one per chain node.
        let mut cols = vec![vec![T::zero(); m]; 1 + self.chain.len()];
        let mut q = vec![T::zero(); n];
        let pass = Pass {
            x: elements::<T>(&held[0]),
            n,
            w: elements::<T>(&held[1]),
            outside: &outside,
            program: &self.program,
            r: self.r,
        };
        pass.run(&mut cols, &mut q);
        let mut out: Vec<(NodeId, Tensor)> = self
            .computes()
            .zip(cols)
            .map(|(j, v)| (j, Tensor::from_buffer(v, &g.node(j).shape)))
            .collect();
        out.push((self.q, Tensor::from_buffer(q, &g.node(self.q).shape)));
        out
    }
}

/// A contiguous tensor's elements.
fn elements<T: StorageElement>(t: &Tensor) -> &[T] {
    &t.buffer::<T>()[t.layout().offset..][..t.numel()]
}

/// Where node `j` of the chain (or `p`) is among the pass's columns.
fn column(chain: &[NodeId], j: NodeId) -> usize {
    match chain.iter().position(|&c| c == j) {
        Some(k) => k + 1,
        None => 0,
    }
}

/// The chain as instructions over one row's values.
fn program(g: &Graph, chain: &[NodeId], outside: &[NodeId]) -> Vec<ChainInstr> {
    let source = |j: NodeId| match outside.iter().position(|&o| o == j) {
        Some(k) => Source::Outside(k),
        None => Source::Column(column(chain, j)),
    };
    chain
        .iter()
        .map(|&c| {
            let node = g.node(c);
            let op = match &node.op {
                GOp::Prim(Prim::Unary(op)) => ChainOp::Unary(*op),
                GOp::Prim(Prim::Binary(op)) => ChainOp::Binary(*op),
                _ => unreachable!("`find` takes only unary and binary chain nodes"),
            };
            ChainInstr {
                op,
                args: node.inputs.iter().map(|&j| source(j)).collect(),
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum ChainOp {
    Unary(UnaryOp),
    Binary(BinaryOp),
}

/// Where an instruction's operand is: a column of the pass (p or an
/// earlier chain node) or a vector read from outside.
#[derive(Clone, Copy, Debug)]
enum Source {
    Column(usize),
    Outside(usize),
}

#[derive(Clone, Debug)]
struct ChainInstr {
    op: ChainOp,
    args: SmallVec<[Source; 2]>,
}

/// One pass over the rows of `X`.
struct Pass<'a, T> {
    x: &'a [T],
    n: usize,
    w: &'a [T],
    outside: &'a [&'a [T]],
    program: &'a [ChainInstr],
    /// The column of `r`.
    r: usize,
}

impl<T: crate::Element> Pass<'_, T> {
    fn run(&self, cols: &mut [Vec<T>], q: &mut [T]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { self.run_fma(cols, q) };
        }
        self.rows::<false>(cols, q)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_fma(&self, cols: &mut [Vec<T>], q: &mut [T]) {
        self.rows::<true>(cols, q)
    }

    /// Row by row: `p_i = x_i · w`, the chain on row i, `q += r_i x_i`, so
    /// that the second product reads the row from the L1 cache.
    #[inline(always)]
    fn rows<const FMA: bool>(&self, cols: &mut [Vec<T>], q: &mut [T]) {
        for (i, row) in self.x.chunks_exact(self.n).enumerate() {
            cols[0][i] = dot::<T, FMA>(row, self.w);
            for (k, instr) in self.program.iter().enumerate() {
                let arg = |a: usize| match instr.args[a] {
                    Source::Column(c) => cols[c][i],
                    Source::Outside(o) => self.outside[o][i],
                };
                cols[k + 1][i] = match instr.op {
                    ChainOp::Unary(op) => op.apply(arg(0)),
                    ChainOp::Binary(op) => op.apply(arg(0), arg(1)),
                };
            }
            axpy::<T, FMA>(cols[self.r][i], row, q);
        }
    }
}

#[inline(always)]
fn axpy<T: crate::Element, const FMA: bool>(a: T, x: &[T], y: &mut [T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = madd::<T, FMA>(xi, a, *yi);
    }
}

/// The streams of `g`: each `Xᵀ r` product over a matrix too large for the
/// cache whose `r` comes elementwise from an `X w` of the same `X`.
pub(crate) fn find(g: &Graph) -> Vec<Stream> {
    let mut taken = vec![false; g.nodes.len()];
    let mut out = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        let Some(s) = transposed_product(g, NodeId(i as u32)).and_then(|(x, r)| {
            let big = node.dtype.size() * g.node(x).shape.iter().product::<usize>();
            (big >= MIN_MATRIX_BYTES)
                .then(|| stream_to(g, x, r, NodeId(i as u32)))
                .flatten()
        }) else {
            continue;
        };
        if s.computes().all(|j| !taken[j.0 as usize]) {
            s.computes().for_each(|j| taken[j.0 as usize] = true);
            out.push(s);
        }
    }
    out
}

fn prim(g: &Graph, id: NodeId) -> Option<&Prim> {
    match &g.node(id).op {
        GOp::Prim(p) => Some(p),
        _ => None,
    }
}

/// `(X, r)` when node `q` is `Xᵀ r` for a 2-d `X` and an `m`-vector `r`,
/// in any of the forms reverse mode writes it: `permute(X) @ r`,
/// `permute(X) @ reshape(r, [m, 1])`, `r @ X`, `reshape(r, [1, m]) @ X`.
fn transposed_product(g: &Graph, q: NodeId) -> Option<(NodeId, NodeId)> {
    let node = g.node(q);
    if !matches!(prim(g, q)?, Prim::Matmul) {
        return None;
    }
    let (a, b) = (node.inputs[0], node.inputs[1]);
    let vector = |j: NodeId| -> Option<NodeId> {
        match prim(g, j) {
            Some(Prim::Reshape(_)) if g.node(j).shape.iter().filter(|&&d| d != 1).count() == 1 => {
                let r = g.node(j).inputs[0];
                (g.node(r).shape.len() == 1).then_some(r)
            }
            _ => (g.node(j).shape.len() == 1).then_some(j),
        }
    };
    let (x, r) = match prim(g, a) {
        Some(Prim::Permute(p)) if p[..] == [1, 0] => (g.node(a).inputs[0], vector(b)?),
        _ => (b, vector(a)?),
    };
    let (xs, rs) = (&g.node(x).shape, &g.node(r).shape);
    let n = node.shape.iter().product::<usize>();
    (xs.len() == 2 && rs[..] == [xs[0]] && n == xs[1]).then_some((x, r))
}

/// The stream computing `q = Xᵀ r`, when `r` is `X w` through elementwise
/// nodes whose other operands are computed before `X w`.
fn stream_to(g: &Graph, x: NodeId, r: NodeId, q: NodeId) -> Option<Stream> {
    let m = g.node(x).shape[0];
    let is_p = |j: NodeId| {
        matches!(prim(g, j), Some(Prim::Matmul))
            && g.node(j).inputs[0] == x
            && g.node(g.node(j).inputs[1]).shape.len() == 1
    };
    // Walk up from r through elementwise m-vectors to the one X w.
    let (mut chain, mut p, mut seen) = (Vec::new(), None, Vec::new());
    let mut todo = vec![r];
    while let Some(j) = todo.pop() {
        if seen.contains(&j) {
            continue;
        }
        seen.push(j);
        if is_p(j) {
            if p.is_some_and(|p| p != j) {
                return None;
            }
            p = Some(j);
            continue;
        }
        let elementwise = matches!(prim(g, j), Some(Prim::Unary(_) | Prim::Binary(_)));
        if elementwise && g.node(j).shape[..] == [m] {
            chain.push(j);
            todo.extend(g.node(j).inputs.iter().copied());
        }
    }
    let p = p?;
    // Chain nodes that do not depend on p are outside values.
    let mut depends = vec![p];
    chain.sort();
    chain.retain(|&c| {
        let on_p = g.node(c).inputs.iter().any(|j| depends.contains(j));
        if on_p {
            depends.push(c);
        }
        on_p
    });
    let mut outside: Vec<NodeId> = chain
        .iter()
        .flat_map(|&c| g.node(c).inputs.iter().copied())
        .filter(|j| !depends.contains(j))
        .collect();
    outside.sort();
    outside.dedup();
    let before_p = outside.iter().all(|&j| j < p && g.node(j).shape[..] == [m]);
    let same_dtype = chain.iter().all(|&c| g.node(c).dtype == g.node(p).dtype);
    let reaches = r == p || chain.contains(&r);
    (before_p && same_dtype && reaches && g.node(x).dtype == g.node(p).dtype).then(|| Stream {
        x,
        w: g.node(p).inputs[1],
        p,
        program: program(g, &chain, &outside),
        r: column(&chain, r),
        chain,
        q,
        outside,
    })
}
