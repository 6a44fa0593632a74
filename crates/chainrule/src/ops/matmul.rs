//! `matmul` with `numpy.matmul` semantics: 1-D·1-D is a dot product, a 1-D
//! operand is promoted to a row (left) or column (right) and the added axis
//! removed afterwards, and leading batch axes broadcast.

use super::movement::sum_to;
use super::{bind, panicking, same_dtype, Prim};
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::kernels::matmul::batched_matmul;
use crate::layout::{broadcast_shapes, Layout};
use crate::storage::{with_dtype, Storage, StorageElement};
use crate::tensor::Tensor;
use smallvec::{smallvec, SmallVec};

/// The `(batch.., m, k)` view of a left operand.
fn as_lhs(l: &Layout) -> Layout {
    if l.shape.len() == 1 {
        Layout {
            shape: smallvec![1, l.shape[0]],
            strides: smallvec![0, l.strides[0]],
            offset: l.offset,
        }
    } else {
        l.clone()
    }
}

/// The `(batch.., k, n)` view of a right operand.
fn as_rhs(l: &Layout) -> Layout {
    if l.shape.len() == 1 {
        Layout {
            shape: smallvec![l.shape[0], 1],
            strides: smallvec![l.strides[0], 0],
            offset: l.offset,
        }
    } else {
        l.clone()
    }
}

/// `<a, b>` of two 1-D tensors of the same length, in their dtype's
/// arithmetic (returned as f64; exact for f32, whose values f64 holds).
pub(crate) fn dot_value(a: &Tensor, b: &Tensor) -> f64 {
    with_dtype!(a.dtype(), T => {
        let (x, y) = (a.buffer::<T>(), b.buffer::<T>());
        let (lx, ly) = (a.layout(), b.layout());
        let v: T = match (lx.contiguous_range(), ly.contiguous_range()) {
            (Some(rx), Some(ry)) => crate::kernels::matmul::dot::<T, false>(&x[rx], &y[ry]),
            _ => lx.offsets().zip(ly.offsets()).map(|(i, j)| x[i] * y[j]).sum(),
        };
        crate::dtype::Element::f64(v)
    })
}

fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.ndim() > 2 && b.ndim() == 2 {
        // Stacked rows against one matrix (a `Linear` on a batch of
        // sequences): one GEMM over all the rows, as PyTorch folds it. The
        // weight is packed once, not once per batch entry, and its gradient
        // is one product with the rows as contraction, not a product per
        // entry summed afterwards.
        let out_shape = shape(a.shape(), b.shape())?;
        let (lead, k) = a.shape().split_at(a.ndim() - 1);
        let rows = a.try_reshape(&[lead.iter().product(), k[0]])?;
        return bind(Prim::Matmul, &[&rows, b])?.try_reshape(&out_shape);
    }
    bind(Prim::Matmul, &[a, b])
}

/// The shape of `a @ b` under `numpy.matmul` rules, or why it has none.
pub(crate) fn shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    if a.is_empty() || b.is_empty() {
        return Err(Error::shapes_detail(
            "matmul",
            a,
            b,
            "both operands need at least one axis",
        ));
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (na, nb) = (a2.len(), b2.len());
    let (k, k2) = (a2[na - 1], b2[nb - 2]);
    if k != k2 {
        return Err(Error::shapes_detail(
            "matmul",
            a,
            b,
            format!("contraction sizes differ ({k} vs {k2})"),
        ));
    }
    let batch = broadcast_shapes(&a2[..na - 2], &b2[..nb - 2])
        .ok_or_else(|| Error::shapes_detail("matmul", a, b, "batch axes do not broadcast"))?;
    let mut shape: Vec<usize> = batch.to_vec();
    if a.len() > 1 {
        shape.push(a2[na - 2]);
    }
    if b.len() > 1 {
        shape.push(b2[nb - 1]);
    }
    Ok(shape)
}

/// The kernel of `a @ b`.
pub(crate) fn forward(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dtype = same_dtype("matmul", a, b)?;
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(Error::shapes_detail(
            "matmul",
            a.shape(),
            b.shape(),
            "both operands need at least one axis",
        ));
    }
    if a.ndim() == 1 && b.ndim() == 1 && a.shape() == b.shape() {
        // A dot product: skip the batch and GEMM set-up (the `ex1` fast path).
        return Ok(Tensor::number(dot_value(a, b), dtype, None));
    }
    let (la, lb) = (as_lhs(a.layout()), as_rhs(b.layout()));
    let (na, nb) = (la.shape.len(), lb.shape.len());
    let (m, k, k2, n) = (
        la.shape[na - 2],
        la.shape[na - 1],
        lb.shape[nb - 2],
        lb.shape[nb - 1],
    );
    if k != k2 {
        return Err(Error::shapes_detail(
            "matmul",
            a.shape(),
            b.shape(),
            format!("contraction sizes differ ({k} vs {k2})"),
        ));
    }
    let batch = broadcast_shapes(&la.shape[..na - 2], &lb.shape[..nb - 2]).ok_or_else(|| {
        Error::shapes_detail(
            "matmul",
            a.shape(),
            b.shape(),
            "batch axes do not broadcast",
        )
    })?;
    let full = |rows: usize, cols: usize| -> Vec<usize> {
        batch.iter().copied().chain([rows, cols]).collect()
    };
    let la = la.broadcast_to(&full(m, k)).unwrap();
    let lb = lb.broadcast_to(&full(k, n)).unwrap();
    let mut shape: Vec<usize> = batch.to_vec();
    if a.ndim() > 1 {
        shape.push(m);
    }
    if b.ndim() > 1 {
        shape.push(n);
    }
    crate::limits::check_alloc("matmul", &shape, dtype)?;
    Ok(with_dtype!(dtype, T => Tensor::from_buffer(
        batched_matmul(a.buffer::<T>(), &la, b.buffer::<T>(), &lb), &shape)))
}

/// `∂/∂a = g bᵀ`, `∂/∂b = aᵀ g`, on the promoted 2-D-or-more views, then
/// summed over broadcast batch axes and reshaped back.
pub(crate) fn vjp(
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    needs: &[bool],
) -> SmallVec<[Option<Tensor>; 2]> {
    if a.ndim() == 1 && b.ndim() == 1 {
        // Dot product: g is a scalar.
        return smallvec![needs[0].then(|| g * b), needs[1].then(|| g * a)];
    }
    let a2 = if a.ndim() == 1 {
        a.unsqueeze(0)
    } else {
        a.clone()
    };
    let b2 = if b.ndim() == 1 {
        b.unsqueeze(1)
    } else {
        b.clone()
    };
    let mut g2 = g.clone();
    if a.ndim() == 1 {
        g2 = g2.unsqueeze(g2.ndim() - 1);
    }
    if b.ndim() == 1 {
        g2 = g2.unsqueeze(g2.ndim());
    }
    let mt = |t: &Tensor| t.transpose(t.ndim() - 2, t.ndim() - 1);
    let ga = needs[0].then(|| sum_to(&g2.matmul(&mt(&b2)), a2.shape()).reshape(a.shape()));
    let gb = needs[1].then(|| sum_to(&mt(&a2).matmul(&g2), b2.shape()).reshape(b.shape()));
    smallvec![ga, gb]
}

/// A dot product's VJP for one operand, with `g` a number of `dtype`: the
/// other operand (the view `layout` of `storage`) times `g`, with the tensor rule's
/// arithmetic (`g * b`, `g * a` in [`vjp`]), so the same bits.
pub(crate) fn dot_vjp_on_number(
    g: f64,
    dtype: DType,
    storage: &Storage,
    layout: &Layout,
) -> Tensor {
    with_dtype!(dtype, T => Tensor::from_buffer(
        super::binary::scale(<T as Element>::of(g), T::slice(storage), layout),
        &layout.shape,
    ))
}

/// The JVP: `ȧ b + a ḃ`.
pub(crate) fn jvp(a: &Tensor, b: &Tensor, ta: &Option<Tensor>, tb: &Option<Tensor>) -> Tensor {
    let da = ta.as_ref().map(|t| t.matmul(b));
    let db = tb.as_ref().map(|t| a.matmul(t));
    match (da, db) {
        (Some(x), Some(y)) => x + y,
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => unreachable!("a JVP runs only when some input has a tangent"),
    }
}

/// The batching rule: `a`, `b` with the batch axis first when `batched`.
/// A 1-D operand is promoted as `numpy.matmul` promotes it, the batch axis
/// becomes one more broadcast batch axis (the other operand's batch axes
/// shifted to line up), and the promoted axes are removed again.
pub(crate) fn batch(a: &Tensor, a_batched: bool, b: &Tensor, b_batched: bool) -> Result<Tensor> {
    let logical = |t: &Tensor, batched: bool| t.ndim() - batched as usize;
    let (ra, rb) = (logical(a, a_batched), logical(b, b_batched));
    if ra == 1 && rb == 1 {
        // Dot products, one per example.
        let p = if a_batched && b_batched {
            a * b
        } else if a_batched {
            a * &b.unsqueeze(0)
        } else {
            &a.unsqueeze(0) * b
        };
        return p.try_sum_axes(&[1], false);
    }
    if !a_batched && ra == 2 && b_batched {
        return shared_left(a, b, rb);
    }
    if a_batched && !b_batched && rb == 2 {
        // Every example's rows against one matrix: a single GEMM.
        let k = a.shape()[a.ndim() - 1];
        let lead = &a.shape()[..a.ndim() - 1];
        let mut shape = lead.to_vec();
        shape.push(b.shape()[1]);
        let rows = a.try_reshape(&[lead.iter().product(), k])?;
        return rows.try_matmul(b)?.try_reshape(&shape);
    }
    // Promote 1-D operands (after the batch axis).
    let a2 = if ra == 1 {
        a.unsqueeze(a_batched as usize)
    } else {
        a.clone()
    };
    let b2 = if rb == 1 {
        b.unsqueeze(b.ndim())
    } else {
        b.clone()
    };
    let rank = ra.max(2).max(rb.max(2));
    // Each batched operand gets unit axes after its batch axis up to the
    // common rank; an unbatched one broadcasts from the right as it is.
    let lift = |t: Tensor, batched: bool| {
        if !batched {
            return t;
        }
        let mut shape = vec![t.shape()[0]];
        shape.extend(std::iter::repeat_n(1, rank - (t.ndim() - 1)));
        shape.extend_from_slice(&t.shape()[1..]);
        t.reshape(&shape)
    };
    let out = lift(a2, a_batched).try_matmul(&lift(b2, b_batched))?;
    // Remove the promoted axes: a 1-D left operand's row, a 1-D right
    // operand's column.
    let mut out = out;
    if rb == 1 {
        out = out.squeeze(out.ndim() - 1);
    }
    if ra == 1 {
        let axis = out.ndim() - if rb == 1 { 1 } else { 2 };
        out = out.squeeze(axis);
    }
    Ok(out)
}

/// A shared matrix `a` (m, k) times every example of `b` (its contraction
/// axis `k` first of its logical axes when `rb` is 1, else second to last):
/// one GEMM against all the examples' columns side by side, not a matrix
/// product per example.
fn shared_left(a: &Tensor, b: &Tensor, rb: usize) -> Result<Tensor> {
    let k_axis = b.ndim() - if rb == 1 { 1 } else { 2 };
    let mut to_front: Vec<usize> = (0..b.ndim()).filter(|&i| i != k_axis).collect();
    to_front.insert(0, k_axis);
    let cols = b.try_permute(&to_front)?;
    let rest: Vec<usize> = cols.shape()[1..].to_vec();
    let flat = cols.try_reshape(&[cols.shape()[0], rest.iter().product()])?;
    let out = a.try_matmul(&flat)?; // (m, every column)
    let mut shape = vec![a.shape()[0]];
    shape.extend_from_slice(&rest);
    let out = out.try_reshape(&shape)?;
    // m back where the contraction axis was.
    let mut back: Vec<usize> = (1..out.ndim()).collect();
    back.insert(k_axis, 0);
    out.try_permute(&back)
}

impl Tensor {
    /// [`Tensor::matmul`], or an error instead of a panic.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let a = Tensor::ones(&[2, 3], DType::F64);
    /// assert!(a.try_matmul(&Tensor::ones(&[2, 3], DType::F64)).is_err());
    /// let c = a.try_matmul(&Tensor::ones(&[3, 2], DType::F64)).unwrap();
    /// assert_eq!(c.to_vec::<f64>(), [3.0, 3.0, 3.0, 3.0]);
    /// ```
    pub fn try_matmul(&self, other: &Tensor) -> Result<Tensor> {
        matmul(self, other)
    }

    /// The inner product of two 1-D tensors.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// assert!(a.try_dot(&a.reshape(&[3, 1])).is_err());
    /// assert_eq!(a.try_dot(&a).unwrap().item(), 14.0);
    /// ```
    pub fn try_dot(&self, other: &Tensor) -> Result<Tensor> {
        if self.ndim() != 1 || other.ndim() != 1 {
            return Err(Error::shapes_detail(
                "dot",
                self.shape(),
                other.shape(),
                "both must be 1-D",
            ));
        }
        matmul(self, other)
    }
}

panicking! {
    /// Matrix product with `numpy.matmul` rules (dot, matrix-vector, matrix,
    /// and batched with broadcast batch axes).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let v = Tensor::from_vec(vec![1.0f64, 1.0], &[2]);
    /// assert_eq!(a.matmul(&v).to_vec::<f64>(), [3.0, 7.0]);
    /// assert_eq!(a.matmul(&a).to_vec::<f64>(), [7.0, 10.0, 15.0, 22.0]);
    /// ```
    fn matmul => try_matmul(other: &Tensor);
    /// Inner product of two 1-D tensors (a 0-d result).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// let b = Tensor::from_vec(vec![4.0f64, 5.0, 6.0], &[3]);
    /// let d = a.dot(&b);
    /// assert_eq!(d.ndim(), 0);
    /// assert_eq!(d.item(), 32.0);
    /// ```
    fn dot => try_dot(other: &Tensor);
}
