//! Indexing primitives (index_select, gather, and their adjoints) and `where`.
//!
//! Indices are `i64` tensors, inputs of the op like any other: a traced
//! graph can be fed new ones and `vmap` can batch them. They are checked
//! against the axis when the op runs (so a fed index is checked too), and
//! never differentiated.

use super::binary::broadcast_pair;
use super::movement::sum_to;
use super::{bind, same_dtype, BatchArg, Prim};
use crate::axis::Axis;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::elementwise::zip3;
use crate::kernels::index as k;
use crate::layout::broadcast_shapes;
use crate::storage::{with_dtype, with_scalar};
use crate::tensor::Tensor;
use smallvec::{smallvec, SmallVec};

/// What the indexing ops take as indices: an `i64` tensor, or a list of
/// positions (a 1-d index), borrowed.
pub trait Indices {
    /// The indices as a tensor (not yet checked against any axis).
    fn to_index(self) -> Result<Tensor>;
}

impl Indices for &Tensor {
    fn to_index(self) -> Result<Tensor> {
        Ok(self.clone())
    }
}

impl Indices for &[usize] {
    fn to_index(self) -> Result<Tensor> {
        let data = self
            .iter()
            .map(|&i| i64::try_from(i).map_err(|_| Error::invalid("index", format!("{i}"))))
            .collect::<Result<Vec<i64>>>()?;
        Tensor::try_from_vec(data, &[self.len()])
    }
}

impl<const N: usize> Indices for &[usize; N] {
    fn to_index(self) -> Result<Tensor> {
        self.as_slice().to_index()
    }
}

impl Indices for &Vec<usize> {
    fn to_index(self) -> Result<Tensor> {
        self.as_slice().to_index()
    }
}

/// `(outer, axis length, inner)` of a shape split at `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

pub(crate) fn with_axis(shape: &[usize], axis: usize, len: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[axis] = len;
    s
}

pub(crate) fn index_select(x: &Tensor, axis: usize, index: &Tensor) -> Result<Tensor> {
    bind(Prim::IndexSelect { axis }, &[x, index])
}

pub(crate) fn index_add(g: &Tensor, axis: usize, index: &Tensor, size: usize) -> Result<Tensor> {
    bind(Prim::IndexAdd { axis, size }, &[g, index])
}

pub(crate) fn gather(x: &Tensor, axis: usize, index: &Tensor) -> Result<Tensor> {
    bind(Prim::Gather { axis }, &[x, index])
}

pub(crate) fn scatter_add(g: &Tensor, axis: usize, index: &Tensor, size: usize) -> Result<Tensor> {
    bind(Prim::ScatterAdd { axis, size }, &[g, index])
}

/// The shape of an indexing primitive's output from its operand's `x` and
/// its index's, or the error naming the op: `index_select` and `index_add`
/// take a 1-d index (as long as the operand's axis for `index_add`);
/// `gather` an index of the operand's shape but along `axis`, which is the
/// output's shape; `scatter_add` an index of the operand's shape.
pub(crate) fn shape(p: &Prim, x: &[usize], index: &[usize]) -> Result<Vec<usize>> {
    let (axis, size) = match *p {
        Prim::IndexSelect { axis } | Prim::Gather { axis } => (axis, None),
        Prim::IndexAdd { axis, size } | Prim::ScatterAdd { axis, size } => (axis, Some(size)),
        _ => unreachable!("{} is not an indexing primitive", p.name()),
    };
    crate::layout::check_axis(p.name(), axis, x)?;
    let bad = |why: &str| Err(Error::shapes_detail(p.name(), x, index, why));
    match p {
        Prim::IndexSelect { .. } | Prim::IndexAdd { .. } if index.len() != 1 => {
            bad("needs a 1-d index")
        }
        Prim::IndexSelect { .. } => Ok(with_axis(x, axis, index[0])),
        Prim::IndexAdd { .. } if index[0] != x[axis] => {
            bad("needs an index as long as the operand's axis")
        }
        Prim::Gather { .. } if !same_but(x, index, axis) => {
            bad("needs an index of the operand's shape but along the axis")
        }
        Prim::Gather { .. } => Ok(index.to_vec()),
        Prim::ScatterAdd { .. } if x != index => bad("needs an index of the operand's shape"),
        _ => Ok(with_axis(
            x,
            axis,
            size.expect("a sum into zeros has a size"),
        )),
    }
}

/// Whether `a` and `b` have one rank and agree but along `axis`.
fn same_but(a: &[usize], b: &[usize], axis: usize) -> bool {
    a.len() == b.len() && (0..a.len()).all(|d| d == axis || a[d] == b[d])
}

/// An index tensor's entries as positions along an axis of length `len`,
/// or the error naming `op` (indices are checked when the op runs, so fed
/// ones are too).
fn positions(op: &'static str, index: &Tensor, len: usize) -> Result<Vec<usize>> {
    check_positions(op, index, len)?;
    let index = index.contiguous();
    // A contiguous view's buffer may run past it.
    Ok(index.buffer::<i64>()[..index.numel()]
        .iter()
        .map(|&i| i as usize)
        .collect())
}

/// Whether every entry of the `i64` index is a position along an axis of
/// length `len`; the error names `op` and the first entry that is not (a
/// compiled loop that gathers by a fed index checks it so).
pub(crate) fn check_positions(op: &'static str, index: &Tensor, len: usize) -> Result<()> {
    let index = index.contiguous();
    let outside = |&&i: &&i64| usize::try_from(i).map_or(true, |p| p >= len);
    match index.buffer::<i64>()[..index.numel()].iter().find(outside) {
        None => Ok(()),
        Some(i) => Err(Error::invalid(
            op,
            format!("index {i} is out of range for an axis of length {len}"),
        )),
    }
}

/// The kernels of the four indexing primitives.
pub(crate) fn forward(p: &Prim, x: &Tensor, index: &Tensor) -> Result<Tensor> {
    let shape = shape(p, x.shape(), index.shape())?;
    crate::limits::check_alloc(p.name(), &shape, x.dtype())?;
    let x = x.contiguous();
    Ok(match *p {
        Prim::IndexSelect { axis } | Prim::Gather { axis } => {
            let (outer, len, inner) = split(x.shape(), axis);
            let at = positions(p.name(), index, len)?;
            with_scalar!(x.dtype(), T => Tensor::from_buffer(
                match p {
                    Prim::IndexSelect { .. } => k::index_select(x.buffer::<T>(), outer, len, inner, &at),
                    _ => k::gather(x.buffer::<T>(), outer, len, inner, &at),
                },
                &shape))
        }
        Prim::IndexAdd { axis, size } | Prim::ScatterAdd { axis, size } => {
            let (outer, _, inner) = split(x.shape(), axis);
            let at = positions(p.name(), index, size)?;
            with_dtype!(x.dtype(), T => Tensor::from_buffer(
                match p {
                    Prim::IndexAdd { .. } => k::index_add(x.buffer::<T>(), outer, size, inner, &at),
                    _ => k::scatter_add(x.buffer::<T>(), outer, size, inner, &at),
                },
                &shape))
        }
        _ => unreachable!("{} is not an indexing primitive", p.name()),
    })
}

/// The VJP of an indexing primitive: each is linear in its operand, with
/// the transpose of the other family member; the index gets none.
pub(crate) fn vjp(p: &Prim, inputs: &[Tensor], g: &Tensor) -> Result<Tensor> {
    let (x, index) = (&inputs[0], &inputs[1]);
    match *p {
        Prim::IndexSelect { axis } => index_add(g, axis, index, x.shape()[axis]),
        Prim::IndexAdd { axis, .. } => index_select(g, axis, index),
        Prim::Gather { axis } => scatter_add(g, axis, index, x.shape()[axis]),
        Prim::ScatterAdd { axis, .. } => gather(g, axis, index),
        _ => unreachable!("{} is not an indexing primitive", p.name()),
    }
}

/// The batching rule of an indexing primitive (`args`: operand, index).
/// A shared index keeps the op, one axis further in; a batched one turns a
/// 1-d index into a gather's (or a scatter's) spread over the other axes,
/// one row of indices per example.
pub(crate) fn batch(p: &Prim, args: &[BatchArg], size: usize) -> Result<Tensor> {
    let (x, index) = (&args[0], &args[1]);
    match *p {
        Prim::IndexSelect { axis } if !index.batched => {
            index_select(&x.value, axis + 1, &index.value)
        }
        Prim::IndexAdd { axis, size: n } if !index.batched => {
            index_add(&x.value, axis + 1, &index.value, n)
        }
        Prim::IndexSelect { axis } if !x.batched => {
            // One selection of all the examples' indices, their axis then moved first.
            let k = index.value.shape()[1];
            let picked = index_select(&x.value, axis, &index.value.try_reshape(&[size * k])?)?;
            let mut shape = x.value.shape().to_vec();
            shape.splice(axis..=axis, [size, k]);
            let mut perm: Vec<usize> = (0..shape.len()).collect();
            perm.remove(axis);
            perm.insert(0, axis);
            picked.try_reshape(&shape)?.try_permute(&perm)
        }
        Prim::IndexSelect { axis } => {
            let mut out = x.value.shape().to_vec();
            out[axis + 1] = index.value.shape()[1];
            gather(&x.value, axis + 1, &spread(&index.value, axis + 1, &out)?)
        }
        Prim::IndexAdd { axis, size: n } => {
            let g = x.expanded(size);
            let spread = spread(&index.value, axis + 1, g.shape())?;
            scatter_add(&g, axis + 1, &spread, n)
        }
        Prim::Gather { axis } => gather(&x.expanded(size), axis + 1, &index.expanded(size)),
        Prim::ScatterAdd { axis, size: n } => {
            scatter_add(&x.expanded(size), axis + 1, &index.expanded(size), n)
        }
        _ => unreachable!("{} is not an indexing primitive", p.name()),
    }
}

/// Each example's 1-d index `(batch, k)` broadcast along `axis` of `shape`.
fn spread(index: &Tensor, axis: usize, shape: &[usize]) -> Result<Tensor> {
    let mut at = vec![1; shape.len()];
    at[0] = shape[0];
    at[axis] = shape[axis];
    index.try_reshape(&at)?.try_broadcast_to(shape)
}

/// The kernel of `where` (its dtype rule has admitted the operands: a
/// bool condition, or a float mask of the branches' dtype).
pub(crate) fn where_forward(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dtype = same_dtype("where", a, b)?;
    let (la, lb) = broadcast_pair("where", a, b)?;
    let shape = where_shape(cond.shape(), &la.shape)?;
    crate::limits::check_alloc("where", &shape, dtype)?;
    let lc = cond.layout().broadcast_to(&shape).unwrap();
    let (la, lb) = (
        la.broadcast_to(&shape).unwrap(),
        lb.broadcast_to(&shape).unwrap(),
    );
    let out = match cond.dtype() {
        DType::Bool => with_scalar!(dtype, T => Tensor::from_buffer(
            zip3(cond.buffer::<bool>(), &lc, a.buffer::<T>(), &la, b.buffer::<T>(), &lb,
                 |c, x, y| if c { x } else { y }),
            &shape)),
        _ => with_dtype!(dtype, T => Tensor::from_buffer(
            zip3(cond.buffer::<T>(), &lc, a.buffer::<T>(), &la, b.buffer::<T>(), &lb,
                 |c, x, y| if c != T::zero() { x } else { y }),
            &shape)),
    };
    Ok(out)
}

/// `a` where `cond` holds, else `b`, for derivative rules: `cond` is a bool
/// tensor or a float mask (see [`Prim::Mask`]) of the branches' dtype.
pub(crate) fn select(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
    crate::error::or_panic(bind(Prim::Where, &[&constant_condition(cond), a, b]))
}

/// The condition cut from the graph (a bool one never is in it).
fn constant_condition(cond: &Tensor) -> Tensor {
    match cond.dtype() {
        DType::Bool => cond.clone(),
        _ => cond.detach(),
    }
}

/// The shape of `where(cond, ·)` given the branches' common shape.
pub(crate) fn where_shape(cond: &[usize], branches: &[usize]) -> Result<Vec<usize>> {
    broadcast_shapes(cond, branches)
        .map(|s| s.to_vec())
        .ok_or_else(|| {
            Error::shapes_detail("where", cond, branches, "condition does not broadcast")
        })
}

pub(crate) fn where_vjp(
    inputs: &[Tensor],
    g: &Tensor,
    needs: &[bool],
) -> SmallVec<[Option<Tensor>; 2]> {
    let (cond, a, b) = (&inputs[0], &inputs[1], &inputs[2]);
    let zero = Tensor::zeros(&[], g.dtype());
    smallvec![
        None,
        needs[1].then(|| sum_to(&select(cond, g, &zero), a.shape())),
        needs[2].then(|| sum_to(&select(cond, &zero, g), b.shape())),
    ]
}

/// The JVP of `where`: the branches' tangents selected by the same condition.
pub(crate) fn where_jvp(inputs: &[Tensor], out: &Tensor, tangents: &[Option<Tensor>]) -> Tensor {
    let zero = Tensor::zeros(&[], out.dtype());
    let branch = |i: usize| tangents[i].clone().unwrap_or_else(|| zero.clone());
    let t = select(&inputs[0], &branch(1), &branch(2));
    if t.shape() == out.shape() {
        t
    } else {
        t.broadcast_to(out.shape())
    }
}

impl Tensor {
    /// The entries `index` along `axis`, like `torch.index_select`: `index`
    /// is 1-d (an `i64` tensor or a list of positions), and the output has
    /// its length along `axis`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// assert!(x.try_index_select(0, &[3]).is_err());
    /// let y = x.try_index_select(0, &[2, 0]).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [3.0, 1.0]);
    /// ```
    pub fn try_index_select(&self, axis: impl Axis, index: impl Indices) -> Result<Tensor> {
        let axis = crate::axis::resolve("index_select", axis, self.shape())?;
        index_select(self, axis, &index.to_index()?)
    }

    /// `out[.., j, ..] = self[.., index[.., j, ..], ..]` along `axis`, like
    /// `torch.gather`: `index` (`i64`) has `self`'s shape but along `axis`,
    /// and so has the output. With logits `(n, c)` and labels `(n, 1)`,
    /// `gather(1, &labels)` picks each row's label entry.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let labels = Tensor::from_vec(vec![1i64, 0], &[2, 1]);
    /// assert_eq!(x.try_gather(1, &labels).unwrap().to_vec::<f64>(), [2.0, 3.0]);
    /// let out_of_range = Tensor::from_vec(vec![2i64, 0], &[2, 1]);
    /// assert!(x.try_gather(1, &out_of_range).is_err());
    /// ```
    pub fn try_gather(&self, axis: impl Axis, index: impl Indices) -> Result<Tensor> {
        let axis = crate::axis::resolve("gather", axis, self.shape())?;
        gather(self, axis, &index.to_index()?)
    }

    /// `self` with each entry of `src` added at its position `index` along
    /// `axis`, like `torch.scatter_add`: `index` has `src`'s shape, which is
    /// `self`'s but along `axis`; repeated positions sum.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::zeros(&[3], DType::F64);
    /// let src = Tensor::from_vec(vec![1.0f64, 2.0, 4.0], &[3]);
    /// assert!(x.try_scatter_add(0, &[0, 3, 0], &src).is_err());
    /// let y = x.try_scatter_add(0, &[0, 2, 0], &src).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [5.0, 0.0, 2.0]);
    /// ```
    pub fn try_scatter_add(
        &self,
        axis: impl Axis,
        index: impl Indices,
        src: &Tensor,
    ) -> Result<Tensor> {
        let axis = crate::axis::resolve("scatter_add", axis, self.shape())?;
        let index = index.to_index()?;
        let spread = self.spread_like("scatter_add", src, &index, axis, scatter_add)?;
        self.try_add(&spread)
    }

    /// `self` with the entries of `src` written at their positions `index`
    /// along `axis`, like `torch.scatter` (shapes as in `scatter_add`).
    /// Where a position repeats, the entries written there sum (PyTorch
    /// leaves that case unspecified). The gradient reaches `self` where
    /// nothing was written and `src` everywhere.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 1.0, 1.0], &[3]);
    /// let src = Tensor::from_vec(vec![5.0f64, 7.0], &[2]);
    /// assert!(x.try_scatter(0, &[2, 0, 1], &src).is_err());
    /// let y = x.try_scatter(0, &[2, 0], &src).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [7.0, 1.0, 5.0]);
    /// ```
    pub fn try_scatter(
        &self,
        axis: impl Axis,
        index: impl Indices,
        src: &Tensor,
    ) -> Result<Tensor> {
        let axis = crate::axis::resolve("scatter", axis, self.shape())?;
        let index = index.to_index()?;
        let written = self.spread_like("scatter", src, &index, axis, scatter_add)?;
        let hits = self.spread_like("scatter", &src.ones_like(), &index, axis, scatter_add)?;
        let hit = hits.try_gt(&Tensor::zeros(&[], hits.dtype()))?;
        Tensor::try_where_(&hit, &written, self)
    }

    /// `self` with the slices of `src` along `axis` added at positions
    /// `index` (1-d, one per slice), like `torch.index_add`.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::zeros(&[3, 2], DType::F64);
    /// let src = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert!(x.try_index_add(0, &[0], &src).is_err());
    /// let y = x.try_index_add(0, &[2, 2], &src).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [0.0, 0.0, 0.0, 0.0, 4.0, 6.0]);
    /// ```
    pub fn try_index_add(
        &self,
        axis: impl Axis,
        index: impl Indices,
        src: &Tensor,
    ) -> Result<Tensor> {
        let axis = crate::axis::resolve("index_add", axis, self.shape())?;
        let index = index.to_index()?;
        let spread = self.spread_like("index_add", src, &index, axis, index_add)?;
        self.try_add(&spread)
    }

    /// `src` summed into zeros of `self`'s length along `axis` by `sum`,
    /// which must give `self`'s shape.
    fn spread_like(
        &self,
        op: &'static str,
        src: &Tensor,
        index: &Tensor,
        axis: usize,
        sum: fn(&Tensor, usize, &Tensor, usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        same_dtype(op, self, src)?;
        if src.ndim() != self.ndim() {
            return Err(Error::shapes_detail(
                op,
                self.shape(),
                src.shape(),
                "needs a source of the same rank",
            ));
        }
        let spread = sum(src, axis, index, self.shape()[axis])?;
        if spread.shape() != self.shape() {
            return Err(Error::shapes_detail(
                op,
                self.shape(),
                src.shape(),
                "needs a source of this shape but along the axis",
            ));
        }
        Ok(spread)
    }

    /// `a` where the `bool` tensor `cond` holds, else `b`; all three
    /// broadcast. No gradient flows to `cond`.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let cond = Tensor::from_vec(vec![true, false, true], &[3]);
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// let b = Tensor::zeros(&[], DType::F64);
    /// assert!(Tensor::try_where_(&a, &a, &b).is_err()); // the condition must be bool
    /// let y = Tensor::try_where_(&cond, &a, &b).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [1.0, 0.0, 3.0]);
    /// ```
    pub fn try_where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        same_dtype("where", a, b)?;
        if cond.dtype() != DType::Bool {
            return Err(Error::dtype(
                "where",
                cond.dtype(),
                "a bool condition (a comparison's result)",
            ));
        }
        let branches = super::binary::broadcast_shape("where", a.shape(), b.shape())?;
        let shape = where_shape(cond.shape(), &branches)?;
        crate::limits::check_alloc("where", &shape, a.dtype())?;
        bind(Prim::Where, &[cond, a, b])
    }

    /// Panicking form of [`Tensor::try_where_`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let cond = Tensor::from_vec(vec![true, false], &[2]);
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// let b = Tensor::from_vec(vec![10.0f64, 20.0], &[2]);
    /// assert_eq!(Tensor::where_(&cond, &a, &b).to_vec::<f64>(), [1.0, 20.0]);
    /// ```
    #[track_caller]
    pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
        crate::error::or_panic(Self::try_where_(cond, a, b))
    }

    /// Panicking form of [`Tensor::try_index_select`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    /// let rows = x.index_select(0, &[2, 0]);
    /// assert_eq!(rows.to_vec::<f64>(), [5.0, 6.0, 1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn index_select(&self, axis: impl Axis, index: impl Indices) -> Tensor {
        crate::error::or_panic(self.try_index_select(axis, index))
    }

    /// Panicking form of [`Tensor::try_gather`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let logits = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// let labels = Tensor::from_vec(vec![2i64, 0], &[2, 1]);
    /// assert_eq!(logits.gather(1, &labels).to_vec::<f64>(), [3.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn gather(&self, axis: impl Axis, index: impl Indices) -> Tensor {
        crate::error::or_panic(self.try_gather(axis, index))
    }

    /// Panicking form of [`Tensor::try_scatter_add`].
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::zeros(&[2, 3], DType::F64);
    /// let src = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let index = Tensor::from_vec(vec![2i64, 2, 0, 1], &[2, 2]);
    /// let y = x.scatter_add(1, &index, &src);
    /// assert_eq!(y.to_vec::<f64>(), [0.0, 0.0, 3.0, 3.0, 4.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn scatter_add(&self, axis: impl Axis, index: impl Indices, src: &Tensor) -> Tensor {
        crate::error::or_panic(self.try_scatter_add(axis, index, src))
    }

    /// Panicking form of [`Tensor::try_scatter`].
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::ones(&[2, 3], DType::F64);
    /// let src = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let index = Tensor::from_vec(vec![2i64, 0, 0, 1], &[2, 2]);
    /// let y = x.scatter(1, &index, &src);
    /// assert_eq!(y.to_vec::<f64>(), [2.0, 1.0, 1.0, 3.0, 4.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn scatter(&self, axis: impl Axis, index: impl Indices, src: &Tensor) -> Tensor {
        crate::error::or_panic(self.try_scatter(axis, index, src))
    }

    /// Panicking form of [`Tensor::try_index_add`].
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::ones(&[2, 3], DType::F64);
    /// let src = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// let y = x.index_add(0, &[1, 1], &src);
    /// assert_eq!(y.to_vec::<f64>(), [1.0, 1.0, 1.0, 6.0, 8.0, 10.0]);
    /// ```
    #[track_caller]
    pub fn index_add(&self, axis: impl Axis, index: impl Indices, src: &Tensor) -> Tensor {
        crate::error::or_panic(self.try_index_add(axis, index, src))
    }
}
