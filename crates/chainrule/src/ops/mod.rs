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
pub mod custom;
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

pub(crate) use binary::{add_scaled_into, BinaryOp};
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
    /// The identity in value, through which no derivative flows (`detach`).
    /// A traced graph records it, so that a value computed from the inputs
    /// and then detached (a max shift) stays a function of the inputs.
    StopGradient,
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
    /// A user-defined op (see [`custom`]).
    Custom(custom::CustomPrim),
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
            Prim::StopGradient => "stop_gradient",
            Prim::Cast => "to_dtype",
            Prim::IndexSelect { .. } => "index_select",
            Prim::IndexAdd { .. } => "index_add",
            Prim::Gather { .. } => "gather",
            Prim::ScatterAdd { .. } => "scatter_add",
            Prim::Custom(f) => f.0.name(),
        }
    }

    /// The name with the op's parameters, as graphs print it.
    pub fn describe(&self) -> String {
        match self {
            Prim::Unary(UnaryOp::Powf(p)) => format!("powf {p}"),
            Prim::Unary(UnaryOp::Scale(c)) => format!("mul_scalar {c}"),
            Prim::Unary(UnaryOp::Shift(c)) => format!("add_scalar {c}"),
            Prim::Reduce { op, axes, keepdim } => format!(
                "{} axes {:?}{}",
                op.name(),
                axes.as_slice(),
                if *keepdim { " keepdim" } else { "" }
            ),
            Prim::Permute(p) => format!("permute {:?}", p.as_slice()),
            Prim::Narrow { axis, start } => format!("narrow axis {axis} from {start}"),
            Prim::Pad { axis, start } => format!("pad axis {axis} at {start}"),
            Prim::Concat { axis } => format!("concat axis {axis}"),
            Prim::IndexSelect { axis, .. } => format!("index_select axis {axis}"),
            Prim::IndexAdd { axis, .. } => format!("index_add axis {axis}"),
            Prim::Gather { axis, .. } => format!("gather axis {axis}"),
            Prim::ScatterAdd { axis, .. } => format!("scatter_add axis {axis}"),
            other => other.name().to_string(),
        }
    }

    /// Runs the primitive on `args`, producing a result of `shape` and
    /// `dtype` (what an explicit graph's node records): the forward half of
    /// the op, through the same functions the tensor API calls.
    pub(crate) fn apply(&self, args: &[&Tensor], shape: &[usize], dtype: DType) -> Result<Tensor> {
        let x = args[0];
        Ok(match self {
            Prim::Unary(op) => unary::unary(x, *op),
            Prim::Binary(op) => binary::binary(x, args[1], *op)?,
            Prim::Where => Tensor::try_where_(x, args[1], args[2])?,
            Prim::Reduce { op, axes, keepdim } => reduce::reduce_op(x, *op, axes, *keepdim)?,
            Prim::Matmul => x.try_matmul(args[1])?,
            Prim::Reshape => x.try_reshape(shape)?,
            Prim::Permute(perm) => x.try_permute(perm)?,
            Prim::BroadcastTo => x.try_broadcast_to(shape)?,
            Prim::Narrow { axis, start } => x.try_narrow(*axis, *start, shape[*axis])?,
            Prim::Pad { axis, start } => x.try_pad(*axis, *start, shape[*axis])?,
            Prim::Concat { axis } => Tensor::try_concat(args, *axis)?,
            Prim::Contiguous => movement::contiguous(x),
            Prim::StopGradient => x.detach(),
            Prim::Cast => x.to_dtype(dtype),
            Prim::IndexSelect { axis, index } => index::index_select(x, *axis, index.clone()),
            Prim::IndexAdd { axis, index } => {
                index::index_add(x, *axis, index.clone(), shape[*axis])
            }
            Prim::Gather { axis, index } => index::gather(x, *axis, index.clone()),
            Prim::ScatterAdd { axis, index } => {
                index::scatter_add(x, *axis, index.clone(), shape[*axis])
            }
            Prim::Custom(f) => custom::apply(f.0.clone(), args)?,
        })
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
            Prim::StopGradient => smallvec::smallvec![None],
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
            Prim::Custom(f) => custom::vjp(f, inputs, output, g, needs)?,
        })
    }
}

impl Prim {
    /// The tangent of the output given the inputs' tangents (`None` is a zero
    /// tangent), at one forward-mode level. `inputs` and `output` are the
    /// values without that level; a tangent may carry a leading batch axis
    /// (see [`crate::forward`]). Returns `None` for a zero tangent. Only a
    /// custom op's rule (the user's code) can fail.
    pub(crate) fn jvp(
        &self,
        inputs: &[Tensor],
        output: &Tensor,
        tangents: &[Option<Tensor>],
    ) -> Result<Option<Tensor>> {
        if let Prim::Custom(f) = self {
            return custom::jvp(f, inputs, output, tangents);
        }
        Ok(self.builtin_jvp(inputs, output, tangents))
    }

    fn builtin_jvp(
        &self,
        inputs: &[Tensor],
        output: &Tensor,
        tangents: &[Option<Tensor>],
    ) -> Option<Tensor> {
        use crate::forward::{batch_prefix, prefixed};
        let x = &inputs[0];
        if let Prim::Binary(op) = self {
            return Some(op.jvp(x, &inputs[1], output, &tangents[0], &tangents[1]));
        }
        if let Prim::Matmul = self {
            return Some(matmul::jvp(
                x,
                &inputs[1],
                output,
                &tangents[0],
                &tangents[1],
            ));
        }
        if let Prim::Where = self {
            return Some(index::where_jvp(inputs, output, tangents));
        }
        if let Prim::Concat { axis } = self {
            return Some(movement::concat_jvp(inputs, *axis, tangents));
        }
        // The remaining primitives have one differentiable input.
        if let Prim::StopGradient = self {
            return None; // no derivative flows through it
        }
        let t = tangents[0].as_ref()?;
        let k = crate::forward::batch_axes(t, x);
        let prefix = batch_prefix(t, x);
        Some(match self {
            Prim::Unary(op) => op.jvp(x, output, t),
            Prim::Reduce { op, axes, keepdim } => op.jvp(x, output, t, axes, *keepdim),
            Prim::Reshape => t.reshape(&prefixed(prefix, output.shape())),
            Prim::Permute(perm) => {
                let shifted: Vec<usize> = (0..k).chain(perm.iter().map(|&p| p + k)).collect();
                t.permute(&shifted)
            }
            Prim::BroadcastTo => crate::forward::lift(t, x, output.ndim())
                .broadcast_to(&prefixed(prefix, output.shape())),
            Prim::Narrow { axis, start } => t.narrow(axis + k, *start, output.shape()[*axis]),
            Prim::Pad { axis, start } => t.pad(axis + k, *start, output.shape()[*axis]),
            Prim::Contiguous => t.contiguous(),
            Prim::Cast => t.to_dtype(output.dtype()),
            Prim::IndexSelect { axis, index } => index::index_select(t, axis + k, index.clone()),
            Prim::IndexAdd { axis, index } => {
                index::index_add(t, axis + k, index.clone(), output.shape()[*axis])
            }
            Prim::Gather { axis, index } => {
                index::gather(t, axis + k, index::repeat_index(index, prefix))
            }
            Prim::ScatterAdd { axis, index } => index::scatter_add(
                t,
                axis + k,
                index::repeat_index(index, prefix),
                output.shape()[*axis],
            ),
            Prim::Binary(_)
            | Prim::StopGradient
            | Prim::Matmul
            | Prim::Where
            | Prim::Concat { .. }
            | Prim::Custom(_) => unreachable!("handled above"),
        })
    }
}

/// [`try_record`] for the built-in primitives, whose rules cannot fail.
pub(crate) fn record(
    prim: impl FnOnce() -> Prim,
    inputs: &[&Tensor],
    out: Tensor,
    save_output: bool,
) -> Tensor {
    try_record(prim, inputs, out, save_output)
        .expect("the JVP rules of built-in primitives do not fail")
}

/// The one hook every primitive's result passes through, for both modes.
///
/// Reverse mode: attaches a node to the freshly computed `out` when grad mode
/// is on and some input needs a gradient; otherwise records nothing (the
/// note's pruning: branches that lead to no leaf requiring gradients cost
/// nothing). Forward mode: when an input carries a tangent, computes the
/// output's tangent with the op's JVP rule.
pub(crate) fn try_record(
    prim: impl FnOnce() -> Prim,
    inputs: &[&Tensor],
    out: Tensor,
    save_output: bool,
) -> Result<Tensor> {
    let recording = is_grad_enabled() && inputs.iter().any(|t| t.node().is_some());
    let dual = inputs.iter().any(|t| t.0.dual.is_some());
    let tracing = crate::graph::trace::active();
    if !recording && !dual && !tracing {
        return Ok(out);
    }
    let prim = prim();
    if tracing {
        return record_traced(prim, inputs, out, save_output, recording, dual);
    }
    let out = if recording {
        attach_node(prim.clone(), inputs, out, save_output)
    } else {
        out
    };
    if dual {
        crate::forward::attach_tangents(&prim, inputs, out)
    } else {
        Ok(out)
    }
}

/// [`record`] while a graph is being traced: the op also becomes a node of
/// the graph, and every handle the op hands back is bound to that node.
fn record_traced(
    prim: Prim,
    inputs: &[&Tensor],
    out: Tensor,
    save_output: bool,
    recording: bool,
    dual: bool,
) -> Result<Tensor> {
    crate::graph::trace::prim(&prim, inputs, &out);
    let raw = out.clone();
    let out = if recording {
        attach_node(prim.clone(), inputs, out, save_output)
    } else {
        out
    };
    let out = if dual {
        crate::forward::attach_tangents(&prim, inputs, out)?
    } else {
        out
    };
    crate::graph::trace::alias(&raw, &out);
    Ok(out)
}

fn attach_node(prim: Prim, inputs: &[&Tensor], out: Tensor, save_output: bool) -> Tensor {
    let edges = inputs.iter().map(|t| t.node().cloned()).collect();
    let saved = Saved {
        inputs: inputs.iter().map(|&t| t.for_saving()).collect(),
        output: save_output.then(|| (out.storage().clone(), out.layout().clone())),
    };
    let node = Arc::new(Node {
        kind: NodeKind::Op(OpNode {
            prim,
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
