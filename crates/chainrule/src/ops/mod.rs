//! The primitive ops: a closed set of [`Prim`]s, each a row of rules the
//! interpreters read ([`crate::interp`]): its shape function, its kernel,
//! its VJP, its JVP and its batching rule. The elementwise ops are one row
//! each of the tables in `unary.rs` and `binary.rs` (the derivative written
//! once, generic over [`value::Value`]); the other families' rules sit side
//! by side in their files. Everything else (mean, softmax, logsumexp,
//! cross-entropy, stack…) is a composite of these in [`composite`] and needs
//! no rule of its own.
//!
//! Nothing here knows the modes: every op binds through [`bind`]. Rules are
//! written with the library's own ops, never on raw buffers (except the
//! fused first-order kernels, used when [`quiet`] says nothing would see
//! them), so that a rule is itself recorded, differentiated, batched again.

pub(crate) mod affine;
pub(crate) mod binary;
pub(crate) mod composite;
pub(crate) mod conv;
pub mod custom;
mod einsum;
pub(crate) mod index;
mod inplace;
pub(crate) mod linalg;
pub(crate) mod matmul;
pub(crate) mod movement;
pub(crate) mod normalize;
mod overload;
pub(crate) mod reduce;
pub(crate) mod scan;
pub(crate) mod slice;
pub(crate) mod sort;
pub(crate) mod unary;
pub(crate) mod value;

use crate::dtype::Element;
use crate::error::{Error, Result};
pub(crate) use crate::interp::{bind, quiet};
use crate::layout::Dims;
use crate::tensor::Tensor;
use crate::DType;
use smallvec::{smallvec, SmallVec};

pub(crate) use binary::{add_scaled_into, BinaryOp, CompareOp};
pub(crate) use reduce::ReduceOp;
pub(crate) use unary::UnaryOp;

/// An op's `f64` parameter, compared and hashed by its bits (so that
/// primitives are keys of common-subexpression elimination).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Param(pub f64);

impl PartialEq for Param {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Param {}

impl std::hash::Hash for Param {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}

/// Every primitive, with every parameter its kernel and rules need: a
/// primitive and its inputs determine its output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Prim {
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// An elementwise comparison of two tensors of one dtype, giving `bool`
    /// (no derivative).
    Compare(CompareOp),
    /// A comparison as `1` or `0` in its operands' float dtype: the masks
    /// derivative rules multiply by (a compiled kernel keeps them in
    /// registers, as it does any float).
    Mask(CompareOp),
    /// Inputs: condition (never differentiated; `bool`, or a mask of the
    /// branches' float dtype), then the two branches.
    Where,
    Reduce {
        op: ReduceOp,
        axes: Dims,
        keepdim: bool,
    },
    /// The index (`i64`) of the largest (`op` Max) or smallest (Min)
    /// element along `axis`: the first at ties, a NaN's where there is one
    /// (NaN propagates, as in the reductions). No derivative.
    Arg {
        op: ReduceOp,
        axis: usize,
        keepdim: bool,
    },
    /// The positions (`i64`) sorting each lane along `axis` (see [`sort`]).
    /// No derivative.
    Argsort {
        axis: usize,
        descending: bool,
    },
    /// `exp(x) / Σ exp(x)` along `axis`, in one pass per lane (see
    /// [`normalize`]; the composite took ten).
    Softmax {
        axis: usize,
    },
    /// Running sums along `axis`, from its end when `reverse` (the
    /// transpose of the forward sum).
    Cumsum {
        axis: usize,
        reverse: bool,
    },
    /// Inputs `a`, `b` of one shape: `y[k] = a[k]·y[k−1] + b[k]` along
    /// `axis` from zero (`y[k+1]` when `reverse`), see [`scan`].
    LinearScan {
        axis: usize,
        reverse: bool,
    },
    Matmul,
    /// Inputs `x (m, k)`, `W (k, n)`, `b (n,)`: `act(x·W + b)` as one op,
    /// for an activation whose derivative its output gives, or none (see
    /// [`affine`]).
    Affine(Option<affine::Activation>),
    /// Linear algebra on the last two axes (see [`linalg`]).
    Linalg(linalg::LinalgOp),
    Reshape(Dims),
    Permute(Dims),
    BroadcastTo(Dims),
    Narrow {
        axis: usize,
        start: usize,
        len: usize,
    },
    /// Zero padding around a block along `axis`: the transpose of `Narrow`.
    Pad {
        axis: usize,
        start: usize,
        size: usize,
    },
    Concat {
        axis: usize,
    },
    Contiguous,
    /// The identity in value, through which no derivative flows (`detach`).
    /// A traced graph records it, so that a value computed from the inputs
    /// and then detached (a max shift) stays a function of the inputs.
    StopGradient,
    Cast(DType),
    /// Inputs: the operand, then an `i64` index (1-d): the entries
    /// `index` along `axis` (see [`index`] for all four).
    IndexSelect {
        axis: usize,
    },
    /// `out[.., index[j], ..] += x[.., j, ..]` into zeros of length `size`
    /// along `axis`: the transpose of `IndexSelect`.
    IndexAdd {
        axis: usize,
        size: usize,
    },
    /// `out[.., j, ..] = x[.., index[.., j, ..], ..]`.
    Gather {
        axis: usize,
    },
    /// The transpose of `Gather`.
    ScatterAdd {
        axis: usize,
        size: usize,
    },
    /// A user-defined op (see [`custom`]).
    Custom(custom::CustomPrim),
    /// A loop whose body is a graph (see [`control`]).
    Loop(crate::control::LoopPrim),
}

/// An input of a batching rule: its value with the batch axis first, or a
/// value shared by every example.
pub(crate) struct BatchArg {
    pub value: Tensor,
    pub batched: bool,
}

impl BatchArg {
    /// The rank one example sees.
    fn rank(&self) -> usize {
        self.value.ndim() - self.batched as usize
    }

    /// The value with `rank` logical axes: a batched value gets unit axes
    /// after its batch axis (so that it broadcasts as one example would); a
    /// shared one broadcasts from the right as it is.
    fn aligned(&self, rank: usize) -> Tensor {
        if !self.batched || self.rank() >= rank {
            return self.value.clone();
        }
        let v = &self.value;
        let mut shape = vec![v.shape()[0]];
        shape.extend(std::iter::repeat_n(1, rank - self.rank()));
        shape.extend_from_slice(&v.shape()[1..]);
        v.reshape(&shape)
    }

    /// The value with the batch axis first, copied to every example when shared.
    fn expanded(&self, size: usize) -> Tensor {
        if self.batched {
            return self.value.clone();
        }
        let mut shape = vec![size];
        shape.extend_from_slice(self.value.shape());
        self.value.unsqueeze(0).broadcast_to(&shape)
    }
}

fn shifted(axes: &[usize]) -> Dims {
    axes.iter().map(|a| a + 1).collect()
}

fn prefixed(size: usize, shape: &[usize]) -> Vec<usize> {
    std::iter::once(size).chain(shape.iter().copied()).collect()
}

/// A primitive whose rules run on numbers (see [`Prim::on_numbers`]),
/// small and `Copy`: what a mode keeps per op when it records many of them
/// (the reverse mode's segments).
#[derive(Clone, Copy, Debug)]
pub(crate) enum NumberOp {
    Unary(UnaryOp),
    Binary(BinaryOp),
}

impl NumberOp {
    pub fn prim(self) -> Prim {
        match self {
            NumberOp::Unary(op) => Prim::Unary(op),
            NumberOp::Binary(op) => Prim::Binary(op),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NumberOp::Unary(op) => op.name(),
            NumberOp::Binary(op) => op.name(),
        }
    }

    /// How many inputs it takes (its rules read them all).
    pub fn arity(self) -> usize {
        match self {
            NumberOp::Unary(_) => 1,
            NumberOp::Binary(_) => 2,
        }
    }

    /// Whether its rule reads the output.
    pub fn saves_output(self) -> bool {
        match self {
            NumberOp::Unary(op) => op.saves_output(),
            NumberOp::Binary(op) => op.saves_output(),
        }
    }

    /// The VJP on numbers: the adjoints of the inputs `args` (the second
    /// unused for a unary op) given the output's `g`, and `y` the output
    /// when saved. The tensor rules' arithmetic, so the same bits.
    #[inline(always)]
    pub fn vjp_numbers<T: Element>(self, args: [T; 2], y: Option<T>, g: T) -> [T; 2] {
        match self {
            NumberOp::Unary(op) => [op.vjp_element(args[0], y, g), T::zero()],
            NumberOp::Binary(op) => {
                let (ga, gb) = op.vjp_element(args[0], args[1], y, g);
                [ga, gb]
            }
        }
    }
}

impl Prim {
    pub fn name(&self) -> &'static str {
        match self {
            Prim::Unary(op) => op.name(),
            Prim::Binary(op) => op.name(),
            Prim::Compare(op) => op.name(),
            Prim::Mask(op) => op.mask_name(),
            Prim::Where => "where",
            Prim::Reduce { op, .. } => op.name(),
            Prim::Arg { op, .. } => op.arg_name(),
            Prim::Argsort { .. } => "argsort",
            Prim::Cumsum { .. } => "cumsum",
            Prim::Softmax { .. } => "softmax",
            Prim::LinearScan { .. } => "linear_scan",
            Prim::Matmul => "matmul",
            Prim::Affine(act) => affine::op_name(*act),
            Prim::Linalg(op) => op.name(),
            Prim::Reshape(_) => "reshape",
            Prim::Permute(_) => "permute",
            Prim::BroadcastTo(_) => "broadcast_to",
            Prim::Narrow { .. } => "narrow",
            Prim::Pad { .. } => "pad",
            Prim::Concat { .. } => "concat",
            Prim::Contiguous => "contiguous",
            Prim::StopGradient => "stop_gradient",
            Prim::Cast(_) => "to_dtype",
            Prim::IndexSelect { .. } => "index_select",
            Prim::IndexAdd { .. } => "index_add",
            Prim::Gather { .. } => "gather",
            Prim::ScatterAdd { .. } => "scatter_add",
            Prim::Custom(f) => f.0.name(),
            Prim::Loop(l) => l.0.name(),
        }
    }

    /// The name with the op's parameters, as graphs print it.
    pub fn describe(&self) -> String {
        match self {
            Prim::Unary(op) => op.describe(),
            Prim::Reduce { op, axes, keepdim } => format!(
                "{} axes {:?}{}",
                op.name(),
                axes.as_slice(),
                if *keepdim { " keepdim" } else { "" }
            ),
            Prim::Arg { op, axis, keepdim } => format!(
                "{} axis {axis}{}",
                op.arg_name(),
                if *keepdim { " keepdim" } else { "" }
            ),
            Prim::Argsort { axis, descending } => format!(
                "argsort axis {axis}{}",
                if *descending { " descending" } else { "" }
            ),
            Prim::Cumsum { axis, reverse } => {
                format!(
                    "cumsum axis {axis}{}",
                    if *reverse { " reversed" } else { "" }
                )
            }
            Prim::Softmax { axis } => format!("softmax axis {axis}"),
            Prim::Permute(p) => format!("permute {:?}", p.as_slice()),
            Prim::Narrow { axis, start, .. } => format!("narrow axis {axis} from {start}"),
            Prim::Pad { axis, start, .. } => format!("pad axis {axis} at {start}"),
            Prim::Concat { axis } => format!("concat axis {axis}"),
            Prim::IndexSelect { axis, .. } => format!("index_select axis {axis}"),
            Prim::IndexAdd { axis, .. } => format!("index_add axis {axis}"),
            Prim::Gather { axis, .. } => format!("gather axis {axis}"),
            Prim::ScatterAdd { axis, .. } => format!("scatter_add axis {axis}"),
            Prim::Loop(l) => l.0.describe(),
            other => other.name().to_string(),
        }
    }

    /// Whether a derivative flows through the op (comparisons, `sign` and
    /// stop-gradients have empty rules).
    pub(crate) fn differentiable(&self) -> bool {
        match self {
            Prim::Compare(_)
            | Prim::Mask(_)
            | Prim::Arg { .. }
            | Prim::Argsort { .. }
            | Prim::StopGradient => false,
            Prim::Cast(to) => to.is_float(),
            Prim::Linalg(op) => op.differentiable(),
            Prim::Unary(op) => op.differentiable(),
            _ => true,
        }
    }

    /// The identity (a copy in value, the gradient passed through): what a
    /// mode records to give a value a handle of its own.
    pub(crate) fn identity() -> Prim {
        Prim::Contiguous
    }

    /// How many inputs the op takes (`None`: one or more).
    pub(crate) fn arity(&self) -> Option<usize> {
        match self {
            Prim::Binary(_)
            | Prim::Compare(_)
            | Prim::Mask(_)
            | Prim::Matmul
            | Prim::LinearScan { .. } => Some(2),
            p if p.takes_index() => Some(2),
            Prim::Where | Prim::Affine(_) => Some(3),
            Prim::Linalg(op) => Some(op.arity()),
            Prim::Concat { .. } | Prim::Custom(_) | Prim::Loop(_) => None,
            _ => Some(1),
        }
    }

    /// Whether the op's second input is an index (`i64`, not differentiated).
    fn takes_index(&self) -> bool {
        matches!(
            self,
            Prim::IndexSelect { .. }
                | Prim::IndexAdd { .. }
                | Prim::Gather { .. }
                | Prim::ScatterAdd { .. }
        )
    }

    /// Whether the op is the user's (its rules are the user's code).
    pub(crate) fn user_defined(&self) -> bool {
        matches!(self, Prim::Custom(_))
    }

    /// Whether the VJP rule reads the output (which the tape then keeps).
    pub(crate) fn saves_output(&self) -> bool {
        match self {
            Prim::Unary(op) => op.saves_output(),
            Prim::Binary(op) => op.saves_output(),
            Prim::Reduce { op, .. } => op.saves_output(),
            Prim::Custom(_) | Prim::LinearScan { .. } | Prim::Linalg(_) | Prim::Softmax { .. } => {
                true
            }
            // The activation's derivative, from the output (see `affine`).
            Prim::Affine(act) => act.is_some(),
            _ => false,
        }
    }

    /// Primitives linear in their first input (the others are indices, not
    /// differentiated): the JVP applies the op to the tangent.
    fn linear(&self) -> bool {
        matches!(
            self,
            Prim::Reshape(_)
                | Prim::Permute(_)
                | Prim::BroadcastTo(_)
                | Prim::Narrow { .. }
                | Prim::Pad { .. }
                | Prim::Contiguous
                | Prim::Cast(_)
                | Prim::Cumsum { .. }
                | Prim::IndexSelect { .. }
                | Prim::IndexAdd { .. }
                | Prim::Gather { .. }
                | Prim::ScatterAdd { .. }
                | Prim::Reduce {
                    op: ReduceOp::Sum,
                    ..
                }
        )
    }

    /// The shape function: the output's shape and dtype from the inputs',
    /// or the error the op gives. `None` for a custom op (its shape is known
    /// only by running it).
    pub(crate) fn shape(&self, args: &[(&[usize], DType)]) -> Result<Option<(Vec<usize>, DType)>> {
        let x = args[0].0;
        let dtypes: SmallVec<[DType; 3]> = args.iter().map(|a| a.1).collect();
        let dtype = self.out_dtype(&dtypes)?;
        let shape = match self {
            Prim::Unary(_)
            | Prim::Contiguous
            | Prim::StopGradient
            | Prim::Cumsum { .. }
            | Prim::Softmax { .. }
            | Prim::Argsort { .. } => x.to_vec(),
            Prim::Binary(_) | Prim::Compare(_) | Prim::Mask(_) => {
                binary::broadcast_shape(self.name(), x, args[1].0)?
            }
            Prim::Where => {
                let branches = binary::broadcast_shape("where", args[1].0, args[2].0)?;
                index::where_shape(x, &branches)?
            }
            Prim::Reduce { op, axes, keepdim } => reduce::shape(*op, x, axes, *keepdim)?,
            Prim::Arg { op, axis, keepdim } => reduce::arg_shape(*op, x, *axis, *keepdim)?,
            Prim::LinearScan { axis, .. } => scan::shape(x, args[1].0, *axis)?,
            Prim::Matmul => matmul::shape(x, args[1].0)?,
            Prim::Affine(_) => affine::shape(x, args[1].0, args[2].0)?,
            Prim::Linalg(op) => {
                let shapes: SmallVec<[&[usize]; 2]> = args.iter().map(|a| a.0).collect();
                linalg::shape(*op, &shapes)?
            }
            Prim::Reshape(s) => {
                if s.iter().product::<usize>() != x.iter().product::<usize>() {
                    return Err(Error::shapes_detail(
                        "reshape",
                        x,
                        s,
                        "the number of elements differs",
                    ));
                }
                s.to_vec()
            }
            Prim::Permute(p) => {
                if p.len() != x.len() {
                    return Err(Error::invalid("permute", format!("{p:?} for shape {x:?}")));
                }
                p.iter().map(|&i| x[i]).collect()
            }
            Prim::BroadcastTo(s) => {
                movement::broadcast_shape_check(x, s)?;
                s.to_vec()
            }
            Prim::Narrow { axis, start, len } => {
                crate::layout::check_axis("narrow", *axis, x)?;
                if start + len > x[*axis] {
                    return Err(Error::invalid("narrow", format!("out of bounds of {x:?}")));
                }
                index::with_axis(x, *axis, *len)
            }
            Prim::Pad { axis, size, .. } => {
                crate::layout::check_axis(self.name(), *axis, x)?;
                index::with_axis(x, *axis, *size)
            }
            Prim::Concat { axis } => {
                let total = args
                    .iter()
                    .map(|(s, _)| s.get(*axis).copied().unwrap_or(0))
                    .sum();
                index::with_axis(x, *axis, total)
            }
            Prim::Cast(_) => x.to_vec(),
            Prim::IndexSelect { .. }
            | Prim::IndexAdd { .. }
            | Prim::Gather { .. }
            | Prim::ScatterAdd { .. } => index::shape(self, x, args[1].0)?,
            Prim::Custom(_) => return Ok(None),
            Prim::Loop(l) => return l.0.shape(args).map(Some),
        };
        Ok(Some((shape, dtype)))
    }

    /// The output's dtype from the inputs' `dtypes`, or the error naming
    /// the op: the one place that says which dtypes each op takes. Floats
    /// take every op; integers the exact arithmetic (add, sub, mul,
    /// maximum, minimum), reductions and everything that moves, compares
    /// or converts elements; bool the same but arithmetic (maximum and
    /// minimum are `or` and `and`).
    pub(crate) fn out_dtype(&self, dtypes: &[DType]) -> Result<DType> {
        let x = dtypes[0];
        let same = |op: &'static str, of: &[DType]| match of.iter().find(|&&d| d != of[0]) {
            Some(&d) => Err(Error::DTypeMismatch {
                op,
                lhs: of[0],
                rhs: d,
            }),
            None => Ok(of[0]),
        };
        match self {
            Prim::Unary(op) => Error::need_float(op.name(), x).map(|_| x),
            Prim::Softmax { .. } => Error::need_float("softmax", x).map(|_| x),
            Prim::Binary(op) => op.out_dtype(same(op.name(), dtypes)?),
            Prim::Compare(op) => same(op.name(), dtypes).map(|_| DType::Bool),
            Prim::Mask(op) => {
                let d = same(op.mask_name(), dtypes)?;
                Error::need_float(op.mask_name(), d).map(|_| d)
            }
            Prim::Where => {
                let d = same("where", &dtypes[1..])?;
                if x != DType::Bool && (x != d || !d.is_float()) {
                    return Err(Error::dtype("where", x, "a bool condition"));
                }
                Ok(d)
            }
            Prim::Reduce { op, .. } => op.out_dtype(x),
            Prim::Arg { .. } | Prim::Argsort { .. } => Ok(DType::I64),
            Prim::Cumsum { .. } if x == DType::Bool => {
                Err(Error::dtype("cumsum", x, "floats and integers"))
            }
            Prim::Matmul => Error::need_float("matmul", same("matmul", dtypes)?).map(|_| x),
            Prim::Affine(_) => Error::need_float("affine", same("affine", dtypes)?).map(|_| x),
            Prim::LinearScan { .. } => {
                Error::need_float("linear_scan", same("linear_scan", dtypes)?).map(|_| x)
            }
            Prim::Linalg(op) => Error::need_float(op.name(), same(op.name(), dtypes)?).map(|_| x),
            Prim::Concat { .. } => same("concat", dtypes),
            Prim::Cast(to) => Ok(*to),
            p if p.takes_index() && dtypes[1] != DType::I64 => {
                Err(Error::dtype(self.name(), dtypes[1], "an i64 index"))
            }
            // Sums into zeros: the transposes of gathers, for gradients.
            Prim::IndexAdd { .. } | Prim::ScatterAdd { .. } => {
                Error::need_float(self.name(), x).map(|_| x)
            }
            _ => Ok(x),
        }
    }

    /// The kernel: the op on its inputs' values (recording nothing).
    pub(crate) fn forward(&self, args: &[&Tensor]) -> Result<Tensor> {
        let x = args[0];
        // Inputs all of one float dtype suit every op but those taking
        // indices: the rule is asked only otherwise (this runs once per op
        // of define-by-run code).
        let d = x.dtype();
        if !(d.is_float() && args[1..].iter().all(|t| t.dtype() == d)) || self.takes_index() {
            self.out_dtype(&args.iter().map(|t| t.dtype()).collect::<Vec<_>>())?;
        }
        if let Some(y) = self.sunk(args) {
            return y;
        }
        Ok(match self {
            Prim::Unary(op) => unary::forward(x, *op),
            Prim::Binary(op) => binary::forward(x, args[1], *op)?,
            Prim::Compare(op) => binary::compare(x, args[1], *op)?,
            Prim::Mask(op) => binary::mask(x, args[1], *op)?,
            Prim::Where => index::where_forward(x, args[1], args[2])?,
            Prim::Reduce { op, axes, keepdim } => reduce::forward(x, *op, axes, *keepdim)?,
            Prim::Arg { op, axis, keepdim } => reduce::arg_forward(x, *op, *axis, *keepdim)?,
            Prim::Argsort { axis, descending } => sort::argsort_forward(x, *axis, *descending),
            Prim::Cumsum { axis, reverse } => reduce::cumsum_forward(x, *axis, *reverse),
            Prim::Softmax { axis } => normalize::softmax_forward(x, *axis),
            Prim::LinearScan { axis, reverse } => scan::forward(x, args[1], *axis, *reverse)?,
            Prim::Matmul => matmul::forward(x, args[1])?,
            Prim::Affine(act) => affine::forward(x, args[1], args[2], *act)?,
            Prim::Linalg(op) => linalg::forward(*op, args)?,
            Prim::Reshape(s) => movement::reshape_forward(x, s),
            Prim::Permute(p) => x.view(x.layout().permute(p)),
            Prim::BroadcastTo(s) => {
                movement::broadcast_shape_check(x.shape(), s)?;
                x.view(x.layout().broadcast_to(s).expect("checked above"))
            }
            Prim::Narrow { axis, start, len } => x.view(x.layout().narrow(*axis, *start, *len)),
            Prim::Pad { axis, start, size } => movement::pad_forward(x, *axis, *start, *size)?,
            Prim::Concat { axis } => movement::concat_forward(args, *axis)?,
            Prim::Contiguous => movement::contiguous_forward(x)?,
            Prim::StopGradient => x.detach_untraced(),
            Prim::Cast(d) => movement::cast_forward(x, *d),
            Prim::IndexSelect { .. }
            | Prim::IndexAdd { .. }
            | Prim::Gather { .. }
            | Prim::ScatterAdd { .. } => index::forward(self, x, args[1])?,
            Prim::Custom(f) => custom::forward(f, args)?,
            Prim::Loop(l) => l.0.forward(args)?,
        })
    }

    /// Whether each output element is a function of the inputs' elements
    /// at its position (after broadcasting) alone.
    pub(crate) fn maps_elements(&self) -> bool {
        matches!(
            self,
            Prim::Unary(_)
                | Prim::Binary(_)
                | Prim::Compare(_)
                | Prim::Mask(_)
                | Prim::Where
                | Prim::Cast(_)
        )
    }

    /// An elementwise op whose inputs all repeat along some axes of its
    /// output (stride 0: expanded, or broadcast by the op) computed once
    /// along them, its result repeated the same way. A batch of tangents
    /// seeded through an expanded basis (ht's shift of every point's
    /// barycentric coordinates) then stays the size of its seed, where the
    /// op would write out every copy (and a compiled graph that folds it to
    /// a constant read them all back).
    fn sunk(&self, args: &[&Tensor]) -> Option<Result<Tensor>> {
        // An axis repeated in every input is expanded in at least one.
        if !self.maps_elements() || !args.iter().any(|t| t.layout().repeats()) {
            return None;
        }
        let mut shape = Dims::from_slice(args[0].shape());
        for t in &args[1..] {
            shape = crate::layout::broadcast_shapes(&shape, t.shape())?;
        }
        let layouts: Option<SmallVec<[crate::layout::Layout; 3]>> = args
            .iter()
            .map(|t| t.layout().broadcast_to(&shape))
            .collect();
        let layouts = layouts?;
        let repeated = |a: &usize| shape[*a] > 1 && layouts.iter().all(|l| l.strides[*a] == 0);
        let axes: SmallVec<[usize; 4]> = (0..shape.len()).filter(repeated).collect();
        if axes.is_empty() {
            return None;
        }
        let once: SmallVec<[Tensor; 3]> = args
            .iter()
            .zip(layouts)
            .map(|(t, l)| t.view(axes.iter().fold(l, |l, &a| l.narrow(a, 0, 1))))
            .collect();
        let once: SmallVec<[&Tensor; 3]> = once.iter().collect();
        Some(self.forward(&once).map(|y| {
            let repeated = y.layout().broadcast_to(&shape);
            y.view(repeated.expect("a length-1 axis broadcasts"))
        }))
    }

    /// The adjoint of each input whose `needs` is set, given the output's
    /// adjoint `g`. `output` is present when the op saved it. For a linear
    /// op this is its transpose.
    pub(crate) fn vjp(
        &self,
        inputs: &[Tensor],
        output: Option<&Tensor>,
        g: &Tensor,
        needs: &[bool],
    ) -> Result<SmallVec<[Option<Tensor>; 2]>> {
        let x = &inputs[0];
        let one = |t: Tensor| -> SmallVec<[Option<Tensor>; 2]> { smallvec![Some(t)] };
        Ok(match self {
            Prim::Compare(_)
            | Prim::Mask(_)
            | Prim::Arg { .. }
            | Prim::Argsort { .. }
            | Prim::StopGradient => inputs.iter().map(|_| None).collect(),
            Prim::Unary(op) if !op.differentiable() => smallvec![None],
            Prim::Unary(op) => one(op.vjp(x, output, g)),
            Prim::Binary(op) => op.vjp(x, &inputs[1], output, g, needs),
            Prim::Where => index::where_vjp(inputs, g, needs),
            Prim::Reduce { op, axes, keepdim } => one(op.vjp(x, output, g, axes, *keepdim)),
            Prim::Matmul => matmul::vjp(x, &inputs[1], g, needs),
            Prim::Affine(act) => {
                let y = act.map(|_| self.saved_output(inputs, output)).transpose()?;
                affine::vjp(inputs, y.as_ref(), g, *act, needs)
            }
            Prim::LinearScan { axis, reverse } => {
                let y = self.saved_output(inputs, output)?;
                scan::vjp(x, &y, g, *axis, *reverse, needs)?
            }
            Prim::Linalg(op) => {
                let y = self.saved_output(inputs, output)?;
                linalg::vjp(*op, inputs, &y, g, needs)?
            }
            Prim::Softmax { axis } => {
                let y = self.saved_output(inputs, output)?;
                one(normalize::softmax_vjp(&y, g, *axis)?)
            }
            Prim::Cumsum { axis, reverse } => one(bind(
                Prim::Cumsum {
                    axis: *axis,
                    reverse: !reverse,
                },
                &[g],
            )?),
            Prim::Reshape(_) => one(g.reshape(x.shape())),
            Prim::Permute(perm) => one(movement::permute_vjp(perm, g)),
            Prim::BroadcastTo(_) => one(movement::sum_to(g, x.shape())),
            Prim::Narrow { axis, start, .. } => one(g.pad(*axis, *start, x.shape()[*axis])),
            Prim::Pad { axis, start, .. } => one(g.narrow(*axis, *start, x.shape()[*axis])),
            Prim::Concat { axis } => movement::concat_vjp(inputs, *axis, g),
            Prim::Contiguous => one(g.clone()),
            Prim::Cast(_) => one(g.to_dtype(x.dtype())),
            Prim::IndexSelect { .. }
            | Prim::IndexAdd { .. }
            | Prim::Gather { .. }
            | Prim::ScatterAdd { .. } => smallvec![Some(index::vjp(self, inputs, g)?), None],
            Prim::Custom(f) => custom::vjp(f, inputs, output, g, needs)?,
            Prim::Loop(l) => crate::control::vjp(&l.0, inputs, g, needs)?,
        })
    }

    /// The output a VJP reads: saved by the tape, recomputed where a caller
    /// has none.
    fn saved_output(&self, inputs: &[Tensor], output: Option<&Tensor>) -> Result<Tensor> {
        match output {
            Some(y) => Ok(y.clone()),
            None => bind(
                self.clone(),
                &inputs.iter().collect::<SmallVec<[&Tensor; 2]>>(),
            ),
        }
    }

    /// The tangent of the output given the inputs' tangents (`None` is a
    /// zero tangent), each of its input's shape. `inputs` and `output` are
    /// the values without the tangents' level. Returns `None` for a zero
    /// tangent. Only a custom op's rule (the user's code) can fail.
    pub(crate) fn jvp(
        &self,
        inputs: &[Tensor],
        output: &Tensor,
        tangents: &[Option<Tensor>],
    ) -> Result<Option<Tensor>> {
        if !self.differentiable() || tangents.iter().all(Option::is_none) {
            return Ok(None);
        }
        if self.linear() {
            let t = tangents[0].as_ref().expect("a tangent of the linear input");
            let args: SmallVec<[&Tensor; 2]> = std::iter::once(t).chain(&inputs[1..]).collect();
            return bind(self.clone(), &args).map(Some);
        }
        let x = &inputs[0];
        Ok(Some(match self {
            Prim::Custom(f) => return custom::jvp(f, inputs, output, tangents),
            Prim::Loop(l) => return Ok(Some(crate::control::jvp_joint(&l.0, inputs, tangents)?.1)),
            Prim::Unary(op) => op.jvp(x, output, tangents[0].as_ref().expect("one input")),
            Prim::Binary(op) => op.jvp(x, &inputs[1], output, &tangents[0], &tangents[1]),
            Prim::Matmul => matmul::jvp(x, &inputs[1], &tangents[0], &tangents[1]),
            Prim::Affine(act) => affine::jvp(inputs, output, tangents, *act)?,
            Prim::LinearScan { axis, reverse } => scan::jvp(x, output, tangents, *axis, *reverse)?,
            Prim::Linalg(op) => linalg::jvp(*op, inputs, output, tangents)?,
            Prim::Where => index::where_jvp(inputs, output, tangents),
            Prim::Softmax { axis } => {
                let t = tangents[0].as_ref().expect("one input");
                normalize::softmax_jvp(output, t, *axis)?
            }
            Prim::Concat { axis } => movement::concat_jvp(inputs, *axis, tangents),
            Prim::Reduce { op, axes, keepdim } => {
                let t = tangents[0].as_ref().expect("one input");
                op.jvp(x, output, t, axes, *keepdim)
            }
            _ => unreachable!("{} is linear or has no derivative", self.name()),
        }))
    }

    /// Whether the op's rules also run on single numbers
    /// ([`NumberOp::vjp_numbers`], [`Prim::jvp_numbers`]): the differentiable
    /// elementwise rows, which the modes run on 0-d values without tensors.
    pub(crate) fn on_numbers(&self) -> bool {
        match self {
            Prim::Unary(op) => op.differentiable(),
            Prim::Binary(_) => true,
            _ => false,
        }
    }

    /// The op as a [`NumberOp`], when its rules run on numbers.
    #[inline]
    pub(crate) fn number_op(&self) -> Option<NumberOp> {
        match self {
            Prim::Unary(op) if op.differentiable() => Some(NumberOp::Unary(*op)),
            Prim::Binary(op) => Some(NumberOp::Binary(*op)),
            _ => None,
        }
    }

    /// Whether the op is a matrix product, which on two vectors is an inner
    /// product: a segment records that with no node (see
    /// `autograd::segment`), its rule [`matmul::dot_vjp_on_number`].
    #[inline]
    pub(crate) fn is_matmul(&self) -> bool {
        matches!(self, Prim::Matmul)
    }

    /// The value and its tangent on numbers, given the inputs `args` and
    /// their tangents (`None`: zero), with the tensor rules' arithmetic.
    pub(crate) fn jvp_numbers<T: Element>(
        &self,
        args: [T; 2],
        tangents: [Option<T>; 2],
    ) -> Option<(T, T)> {
        match self {
            Prim::Unary(op) if op.differentiable() => {
                let y = op.apply(args[0]);
                Some((y, op.vjp_element(args[0], Some(y), tangents[0]?)))
            }
            Prim::Binary(op) => {
                let y = op.apply(args[0], args[1]);
                Some((
                    y,
                    op.jvp_element(args[0], args[1], y, tangents[0], tangents[1]),
                ))
            }
            _ => None,
        }
    }

    /// The output and its tangent computed together, for the ops that do it
    /// in one pass rather than two (a loop runs once over the values and
    /// their tangents); `None` for the others.
    pub(crate) fn value_and_tangent(
        &self,
        inputs: &[Tensor],
        tangents: &[Option<Tensor>],
    ) -> Option<Result<(Tensor, Tensor)>> {
        match self {
            Prim::Loop(l) => Some(crate::control::jvp_joint(&l.0, inputs, tangents)),
            _ => None,
        }
    }

    /// The batching rule: the op on every example at once, given each input
    /// with its batch axis first (or shared), returning the output with its
    /// batch axis first. `size` is the batch size.
    pub(crate) fn batch(&self, args: &[BatchArg], size: usize) -> Result<Tensor> {
        let x = &args[0].value;
        match self {
            Prim::Unary(_) | Prim::Contiguous | Prim::StopGradient | Prim::Cast(_) => {
                bind(self.clone(), &[x])
            }
            Prim::Binary(_) | Prim::Compare(_) | Prim::Mask(_) | Prim::Where => {
                let rank = args.iter().map(BatchArg::rank).max().unwrap_or(0);
                let aligned: SmallVec<[Tensor; 3]> = args.iter().map(|a| a.aligned(rank)).collect();
                let refs: SmallVec<[&Tensor; 3]> = aligned.iter().collect();
                bind(self.clone(), &refs)
            }
            Prim::Reduce { op, axes, keepdim } => bind(
                Prim::Reduce {
                    op: *op,
                    axes: shifted(axes),
                    keepdim: *keepdim,
                },
                &[x],
            ),
            Prim::Arg { op, axis, keepdim } => bind(
                Prim::Arg {
                    op: *op,
                    axis: axis + 1,
                    keepdim: *keepdim,
                },
                &[x],
            ),
            Prim::Cumsum { axis, reverse } => bind(
                Prim::Cumsum {
                    axis: axis + 1,
                    reverse: *reverse,
                },
                &[x],
            ),
            Prim::Softmax { axis } => bind(Prim::Softmax { axis: axis + 1 }, &[x]),
            Prim::Argsort { axis, descending } => bind(
                Prim::Argsort {
                    axis: axis + 1,
                    descending: *descending,
                },
                &[x],
            ),
            Prim::Matmul => matmul::batch(x, args[0].batched, &args[1].value, args[1].batched),
            Prim::Affine(act) => affine::batch(args, *act),
            Prim::LinearScan { axis, reverse } => scan::batch(args, size, *axis, *reverse),
            Prim::Linalg(op) => linalg::batch(*op, args, size),
            Prim::Reshape(s) => x.try_reshape(&prefixed(size, s)),
            Prim::Permute(p) => {
                let perm: Vec<usize> = std::iter::once(0).chain(p.iter().map(|a| a + 1)).collect();
                x.try_permute(&perm)
            }
            Prim::BroadcastTo(s) => args[0]
                .aligned(s.len())
                .try_broadcast_to(&prefixed(size, s)),
            Prim::Narrow { axis, start, len } => x.try_narrow(axis + 1, *start, *len),
            Prim::Pad {
                axis,
                start,
                size: n,
            } => x.try_pad(axis + 1, *start, *n),
            Prim::Concat { axis } => {
                let parts: Vec<Tensor> = args.iter().map(|a| a.expanded(size)).collect();
                let refs: Vec<&Tensor> = parts.iter().collect();
                Tensor::try_concat(&refs, axis + 1)
            }
            Prim::IndexSelect { .. }
            | Prim::IndexAdd { .. }
            | Prim::Gather { .. }
            | Prim::ScatterAdd { .. } => index::batch(self, args, size),
            Prim::Custom(_) => self.batch_by_example(args, size),
            Prim::Loop(l) => crate::control::batch(&l.0, args, size),
        }
    }

    /// The op run once per example and the results stacked: for a custom op,
    /// whose forward knows nothing of batches.
    fn batch_by_example(&self, args: &[BatchArg], size: usize) -> Result<Tensor> {
        let outs = (0..size)
            .map(|b| {
                let example: Vec<Tensor> = args
                    .iter()
                    .map(|a| {
                        if a.batched {
                            a.value.narrow(0, b, 1).squeeze(0)
                        } else {
                            a.value.clone()
                        }
                    })
                    .collect();
                let refs: Vec<&Tensor> = example.iter().collect();
                bind(self.clone(), &refs)
            })
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = outs.iter().collect();
        Tensor::try_stack(&refs, 0)
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

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    /// Elementwise ops on inputs that all repeat along some axes compute
    /// one copy and repeat it ([`super::Prim::sunk`]): bit for bit the op on
    /// dense copies, in a buffer of the distinct elements only. Where one
    /// input does not repeat, the whole result is computed.
    #[test]
    fn ops_on_inputs_that_repeat_compute_one_copy() {
        let shape = [4, 5, 3];
        let x = Tensor::rand_uniform(&[4, 1, 3], -1.0, 1.0, 1, DType::F64).broadcast_to(&shape);
        let y = Tensor::rand_uniform(&[1, 1, 3], -1.0, 1.0, 2, DType::F64).broadcast_to(&shape);
        let z = Tensor::rand_uniform(&shape, -1.0, 1.0, 3, DType::F64);
        let s = Tensor::scalar(0.25f64);
        let dense = |t: &Tensor| t.contiguous();
        let cases: [(&str, Tensor, Tensor, usize); 7] = [
            ("exp", x.exp(), dense(&x).exp(), 12),
            ("x·y", &x * &y, &dense(&x) * &dense(&y), 12),
            ("x + s", &x + &s, &dense(&x) + &s, 12),
            ("y − s", &y - &s, &dense(&y) - &s, 3),
            (
                "x > y",
                x.gt(&y).to_dtype(DType::F64),
                dense(&x).gt(&y).to_dtype(DType::F64),
                12,
            ),
            (
                "where",
                Tensor::where_(&x.gt(&y), &y, &s),
                Tensor::where_(&dense(&x).gt(&y), &dense(&y), &s),
                12,
            ),
            ("x·z", &x * &z, &dense(&x) * &z, 60),
        ];
        for (what, got, want, distinct) in cases {
            assert_eq!(got.shape(), shape, "{what}");
            let (got_v, want_v) = (got.to_vec::<f64>(), want.to_vec::<f64>());
            let same = got_v
                .iter()
                .zip(&want_v)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{what}: {got_v:?} against {want_v:?}");
            assert_eq!(got.buffer::<f64>().len(), distinct, "{what}");
        }
    }
}
