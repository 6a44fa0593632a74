//! The primitive ops: a closed set, each with its shape rule, forward kernel
//! and VJP rule written side by side in its family's file. Everything else
//! (mean, softmax, logsumexp, cross-entropy, stack…) is a composite of these
//! in [`composite`] and needs no rule of its own.
//!
//! VJP rules are written with the library's own differentiable ops, never on
//! raw buffers, so that the backward pass can itself be recorded
//! (`create_graph`) and differentiated again.

pub(crate) mod binary;
pub(crate) mod composite;
pub(crate) mod index;
pub(crate) mod matmul;
pub(crate) mod movement;
mod overload;
pub(crate) mod reduce;
pub(crate) mod unary;

use crate::autograd::is_grad_enabled;
use crate::autograd::node::{Node, NodeKind, OpNode, Saved};
use crate::error::Result;
use crate::layout::Dims;
use crate::tensor::Tensor;
use crate::DType;
use smallvec::SmallVec;
use std::sync::{Arc, Mutex};

pub(crate) use binary::BinaryOp;
pub(crate) use reduce::ReduceOp;
pub(crate) use unary::UnaryOp;

/// Every primitive, with the parameters its VJP needs.
#[derive(Clone, Debug)]
pub(crate) enum Prim {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// Inputs: condition (never differentiated), then the two branches.
    Where,
    Reduce {
        op: ReduceOp,
        axes: Dims,
        keepdim: bool,
    },
    Matmul,
    Reshape,
    Permute(Dims),
    BroadcastTo,
    Narrow {
        axis: usize,
        start: usize,
    },
    /// Zero padding around a block along `axis`: the adjoint of `Narrow`.
    Pad {
        axis: usize,
        start: usize,
    },
    Concat {
        axis: usize,
    },
    Contiguous,
    Cast,
    IndexSelect {
        axis: usize,
        index: Arc<[usize]>,
    },
    /// `out[.., index[j], ..] += x[.., j, ..]` into zeros: the adjoint of `IndexSelect`.
    IndexAdd {
        axis: usize,
        index: Arc<[usize]>,
    },
    Gather {
        axis: usize,
        index: Arc<[usize]>,
    },
    /// The adjoint of `Gather`.
    ScatterAdd {
        axis: usize,
        index: Arc<[usize]>,
    },
}

impl Prim {
    pub fn name(&self) -> &'static str {
        match self {
            Prim::Unary(op) => op.name(),
            Prim::Binary(op) => op.name(),
            Prim::Where => "where",
            Prim::Reduce { op, .. } => op.name(),
            Prim::Matmul => "matmul",
            Prim::Reshape => "reshape",
            Prim::Permute(_) => "permute",
            Prim::BroadcastTo => "broadcast_to",
            Prim::Narrow { .. } => "narrow",
            Prim::Pad { .. } => "pad",
            Prim::Concat { .. } => "concat",
            Prim::Contiguous => "contiguous",
            Prim::Cast => "to_dtype",
            Prim::IndexSelect { .. } => "index_select",
            Prim::IndexAdd { .. } => "index_add",
            Prim::Gather { .. } => "gather",
            Prim::ScatterAdd { .. } => "scatter_add",
        }
    }

    /// The adjoint of each input whose `needs` is set, given the output's
    /// adjoint `g`. `output` is present when the op saved it.
    pub(crate) fn vjp(
        &self,
        inputs: &[Tensor],
        output: Option<&Tensor>,
        g: &Tensor,
        needs: &[bool],
    ) -> Result<SmallVec<[Option<Tensor>; 2]>> {
        let x = &inputs[0];
        let one = |t: Tensor| -> SmallVec<[Option<Tensor>; 2]> { smallvec::smallvec![Some(t)] };
        Ok(match self {
            Prim::Unary(op) => one(op.vjp(x, output, g)),
            Prim::Binary(op) => op.vjp(x, &inputs[1], g, needs),
            Prim::Where => index::where_vjp(inputs, g, needs),
            Prim::Reduce { op, axes, keepdim } => one(op.vjp(x, output, g, axes, *keepdim)),
            Prim::Matmul => matmul::vjp(x, &inputs[1], g, needs),
            Prim::Reshape => one(g.reshape(x.shape())),
            Prim::Permute(perm) => one(movement::permute_vjp(perm, g)),
            Prim::BroadcastTo => one(movement::sum_to(g, x.shape())),
            Prim::Narrow { axis, start } => one(g.pad(*axis, *start, x.shape()[*axis])),
            Prim::Pad { axis, start } => one(g.narrow(*axis, *start, x.shape()[*axis])),
            Prim::Concat { axis } => movement::concat_vjp(inputs, *axis, g),
            Prim::Contiguous => one(g.clone()),
            Prim::Cast => one(g.to_dtype(x.dtype())),
            Prim::IndexSelect { axis, index } => {
                one(index::index_add(g, *axis, index.clone(), x.shape()[*axis]))
            }
            Prim::IndexAdd { axis, index, .. } => one(index::index_select(g, *axis, index.clone())),
            Prim::Gather { axis, index } => one(index::scatter_add(
                g,
                *axis,
                index.clone(),
                x.shape()[*axis],
            )),
            Prim::ScatterAdd { axis, index, .. } => one(index::gather(g, *axis, index.clone())),
        })
    }
}

/// Attaches a node to a freshly computed `out` when grad mode is on and some
/// input needs a gradient; otherwise records nothing (the note's pruning:
/// branches that lead to no leaf requiring gradients cost nothing).
pub(crate) fn record(
    prim: impl FnOnce() -> Prim,
    inputs: &[&Tensor],
    out: Tensor,
    save_output: bool,
) -> Tensor {
    if inputs.iter().all(|t| t.node().is_none()) || !is_grad_enabled() {
        return out;
    }
    let edges = inputs.iter().map(|t| t.node().cloned()).collect();
    let saved = Saved {
        inputs: inputs.iter().map(|&t| t.clone()).collect(),
        output: save_output.then(|| (out.storage().clone(), out.layout().clone())),
    };
    let node = Arc::new(Node {
        kind: NodeKind::Op(OpNode {
            prim: prim(),
            edges,
            saved: Mutex::new(Some(saved)),
        }),
    });
    let mut out = out;
    match Arc::get_mut(&mut out.0) {
        Some(inner) => {
            inner.node = Some(node);
            out
        }
        None => Tensor::from_parts(out.storage().clone(), out.layout().clone(), Some(node)),
    }
}

/// Both operands have the same dtype, or the op fails naming both.
pub(crate) fn same_dtype(op: &'static str, a: &Tensor, b: &Tensor) -> Result<DType> {
    if a.dtype() != b.dtype() {
        return Err(crate::Error::DTypeMismatch {
            op,
            lhs: a.dtype(),
            rhs: b.dtype(),
        });
    }
    Ok(a.dtype())
}

/// Generates the panicking twin of each `try_*` method (the error policy of
/// [`crate::error`]).
macro_rules! panicking {
    ($( $(#[$meta:meta])* fn $name:ident => $try_name:ident ( $($arg:ident : $ty:ty),* ); )*) => {
        impl $crate::Tensor {
            $(
                $(#[$meta])*
                #[track_caller]
                pub fn $name(&self, $($arg: $ty),*) -> $crate::Tensor {
                    $crate::error::or_panic(self.$try_name($($arg),*))
                }
            )*
        }
    };
}
pub(crate) use panicking;
