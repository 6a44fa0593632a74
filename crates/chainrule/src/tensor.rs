//! The user-facing [`Tensor`]: an n-d view of a shared buffer, plus (when it
//! depends on a leaf requiring gradients) its node in the implicit graph.

use crate::autograd::node::{self, Node, NodeKind};
use crate::dtype::{DType, Scalar};
use crate::error::{or_panic, Error, Result};
use crate::kernels::elementwise::materialize;
use crate::layout::Layout;
use crate::limits::check_alloc;
use crate::storage::{with_scalar, Storage, StorageElement};
use rand::{Rng, SeedableRng};
use std::mem::MaybeUninit;
use std::sync::Arc;

/// An n-d array (of `f32`, `f64`, `i32`, `i64` or `bool`) that records the
/// ops applied to it when it requires gradients (floats only).
///
/// Cloning is cheap (a reference count); views (transpose, reshape of
/// contiguous data, broadcast, narrow) share the buffer.
///
/// ```
/// use chainrule::Tensor;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).requires_grad();
/// let y = (&x * &x).sum();
/// y.backward().unwrap();
/// assert_eq!(x.grad().unwrap().to_vec::<f64>(), vec![2.0, 4.0, 6.0]);
/// ```
#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorImpl>);

pub(crate) struct TensorImpl {
    pub storage: Storage,
    pub layout: Layout,
    /// Where this value sits in the reverse-mode graph, if it is tracked.
    pub node: Option<node::Link>,
    /// Forward mode: this tensor's tangent at one level, and the tensor without
    /// it (see [`crate::forward`]).
    pub dual: Option<crate::forward::Dual>,
    /// For the user's handles of a leaf: the slot its gradient accumulates in
    /// (the leaf's node holds it only weakly; see `NodeKind::Leaf`).
    pub grad_slot: Option<Arc<node::GradSlot>>,
    /// Inside `vmap`: the value of every example, with the batch axis first
    /// (see [`crate::batching`]). `storage` and `layout` then describe the
    /// shape one example sees, and no element of them is to be read.
    pub batch: Option<crate::batching::Batched>,
}

impl Drop for TensorImpl {
    fn drop(&mut self) {
        if let Some(link) = self.node.take() {
            node::release(link.node);
        }
    }
}

impl Tensor {
    pub(crate) fn from_parts(storage: Storage, layout: Layout, node: Option<node::Link>) -> Tensor {
        // Allocated first and written in place: `Arc::new` builds the value
        // on the stack, then copies its 184 bytes with a call to `memcpy`,
        // a measurable part of a scalar op.
        let slot = Arc::into_raw(Arc::<TensorImpl>::new_uninit()) as *mut MaybeUninit<TensorImpl>;
        // SAFETY: the allocation is fresh (this is its only handle) and
        // writable; it is initialized before `from_raw` takes it back.
        unsafe {
            (*slot).write(TensorImpl {
                storage,
                layout,
                node,
                dual: None,
                grad_slot: None,
                batch: None,
            });
            Tensor(Arc::from_raw(slot as *const TensorImpl))
        }
    }

    /// A fresh leaf on `storage` (its handles own the gradient slot).
    pub(crate) fn new_leaf(storage: Storage, layout: Layout) -> Tensor {
        let (node, slot) = Node::leaf();
        Tensor(Arc::new(TensorImpl {
            storage,
            layout,
            node: Some(node::Link::of(node)),
            dual: None,
            grad_slot: Some(slot),
            batch: None,
        }))
    }

    /// This tensor as a fresh reverse-mode leaf, below every forward-mode
    /// level it carries (so that the primal each level's rules see is
    /// tracked too), on a batched value itself inside `vmap`.
    pub(crate) fn as_leaf(&self) -> Tensor {
        if self.0.dual.is_some() {
            return crate::forward::map_primal(self, Tensor::as_leaf);
        }
        let (node, slot) = Node::leaf();
        let leaf = Tensor(Arc::new(TensorImpl {
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            node: Some(node::Link::of(node)),
            dual: None,
            grad_slot: Some(slot),
            batch: self.0.batch.clone(),
        }));
        crate::interp::same_value(self, &leaf);
        leaf
    }

    /// This tensor with `node` as its place in the reverse-mode graph (in
    /// place when no one else holds the handle).
    pub(crate) fn with_node(mut self, node: node::Link) -> Tensor {
        if let Some(inner) = node::sole_mut(&mut self.0) {
            inner.node = Some(node);
            return self;
        }
        let out = Tensor(Arc::new(TensorImpl {
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            node: Some(node),
            dual: self.0.dual.as_ref().map(|d| d.as_tensors(&self)),
            grad_slot: None,
            batch: self.0.batch.clone(),
        }));
        crate::interp::same_value(&self, &out);
        out
    }

    /// A new handle on this value whose place in the graph is `node` (below
    /// the tangents it carries, which then share it).
    pub(crate) fn relabeled(&self, node: node::Link) -> Tensor {
        if self.0.dual.is_some() {
            return crate::forward::map_primal(self, |p| p.relabeled(node));
        }
        let out = Tensor(Arc::new(TensorImpl {
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            node: Some(node),
            dual: None,
            grad_slot: None,
            batch: self.0.batch.clone(),
        }));
        crate::interp::same_value(self, &out);
        out
    }

    /// Whether a level's data rides on this value (a tangent, a batch).
    #[inline]
    pub(crate) fn has_layer(&self) -> bool {
        self.0.dual.is_some() || self.0.batch.is_some()
    }

    /// Whether this is a batched value inside `vmap`.
    pub(crate) fn is_batched(&self) -> bool {
        self.0.batch.is_some()
    }

    /// A batched value's every-example tensor (batch axis first).
    pub(crate) fn physical(&self) -> Option<&Tensor> {
        self.0.batch.as_ref().map(|b| &b.physical)
    }

    /// Values are read only from tensors outside `vmap`.
    fn readable(&self, what: &'static str) -> Result<()> {
        if self.is_batched() {
            return Err(Error::invalid(
                what,
                "this tensor is batched by vmap (it holds one value per example); \
                 return it from the mapped function to read it",
            ));
        }
        Ok(())
    }

    /// This tensor as a graph node keeps it: the same values, node and
    /// tangents, without ownership of a leaf's gradient slot (which would
    /// make a cycle through a `create_graph` gradient).
    #[inline]
    pub(crate) fn for_saving(&self) -> Tensor {
        if self.0.grad_slot.is_none() && self.0.dual.is_none() {
            return self.clone();
        }
        self.copy_without_grad_slot()
    }

    fn copy_without_grad_slot(&self) -> Tensor {
        let copy = Tensor(Arc::new(TensorImpl {
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            node: self.0.node.clone(),
            dual: self.0.dual.as_ref().map(|d| d.for_saving()),
            grad_slot: None,
            batch: self.0.batch.clone(),
        }));
        crate::interp::same_value(self, &copy);
        copy
    }

    /// A fresh row-major tensor from a typed buffer.
    pub(crate) fn from_buffer<T: StorageElement>(data: Vec<T>, shape: &[usize]) -> Tensor {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        Tensor::from_parts(T::wrap(data), Layout::contiguous(shape), None)
    }

    /// A 0-d tensor holding `v` (in place: no allocation but the handle's).
    pub(crate) fn from_element<T: StorageElement>(v: T) -> Tensor {
        Tensor::from_parts(T::small(&[v]), Layout::scalar(), None)
    }

    /// A 0-d tensor of `dtype` holding `v` (exact for a value read from
    /// that dtype), with `node` as its place in the graph.
    pub(crate) fn number(v: f64, dtype: DType, node: Option<node::Link>) -> Tensor {
        Tensor::from_parts(Storage::number(v, dtype), Layout::scalar(), node)
    }

    /// The one element of a 0-d tensor of element type `T`.
    #[inline]
    pub(crate) fn element<T: StorageElement>(&self) -> T {
        debug_assert_eq!(self.ndim(), 0);
        self.buffer::<T>()[self.0.layout.offset]
    }

    /// The same buffer seen through another layout, recording nothing.
    pub(crate) fn view(&self, layout: Layout) -> Tensor {
        Tensor::from_parts(self.0.storage.clone(), layout, None)
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.0.layout
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.0.storage
    }

    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.0.node.as_ref().map(|l| &l.node)
    }

    /// Where this value sits in the reverse-mode graph, if it is tracked.
    pub(crate) fn link(&self) -> Option<&node::Link> {
        self.0.node.as_ref()
    }

    /// The whole underlying buffer (index it with the layout).
    pub(crate) fn buffer<T: StorageElement>(&self) -> &[T] {
        debug_assert_eq!(T::DTYPE, self.dtype());
        T::slice(&self.0.storage)
    }

    // ---- constructors -----------------------------------------------------

    /// A tensor of `shape` holding `data` in row-major order.
    ///
    /// Panics when `data.len()` is not the product of `shape`; see [`Tensor::try_from_vec`].
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let m = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert_eq!(m.shape(), &[2, 3]);
    /// assert_eq!(m.dtype(), DType::F64);
    /// assert_eq!(m.get(&[1, 0]), 4.0);
    /// ```
    #[track_caller]
    pub fn from_vec<T: Scalar>(data: Vec<T>, shape: &[usize]) -> Tensor {
        or_panic(Self::try_from_vec(data, shape))
    }

    /// Like [`Tensor::from_vec`], returning an error on a length mismatch.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// assert!(Tensor::try_from_vec(vec![1.0f64, 2.0, 3.0], &[2, 2]).is_err());
    /// let m = Tensor::try_from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    /// assert_eq!(m.shape(), &[2, 2]);
    /// ```
    pub fn try_from_vec<T: Scalar>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let n = crate::limits::checked_numel("from_vec", shape)?;
        if data.len() != n {
            return Err(Error::invalid(
                "from_vec",
                format!(
                    "{} values cannot fill shape {:?} ({} elements)",
                    data.len(),
                    shape,
                    n
                ),
            ));
        }
        Ok(with_scalar!(T::DTYPE, E => {
            // T is E: same DTYPE. Reinterpret without copying.
            let data: Vec<E> = cast_vec(data);
            Tensor::from_buffer(data, shape)
        }))
    }

    /// A tensor of `shape` copied from a slice.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(m.shape(), &[2, 2]);
    /// assert_eq!(m.to_vec::<f64>(), [1.0, 2.0, 3.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn from_slice<T: Scalar>(data: &[T], shape: &[usize]) -> Tensor {
        Self::from_vec(data.to_vec(), shape)
    }

    /// A 0-d tensor.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let s = Tensor::scalar(2.5f64);
    /// assert_eq!(s.ndim(), 0);
    /// assert_eq!(s.item(), 2.5);
    /// ```
    pub fn scalar<T: Scalar>(v: T) -> Tensor {
        Self::from_vec(vec![v], &[])
    }

    /// A tensor filled with `value`.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let t = Tensor::full(&[2, 2], 7.0, DType::F64);
    /// assert_eq!(t.to_vec::<f64>(), [7.0, 7.0, 7.0, 7.0]);
    /// let i = Tensor::full(&[3], 2.0, DType::I64);
    /// assert_eq!(i.to_vec::<i64>(), [2, 2, 2]);
    /// ```
    #[track_caller]
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        or_panic(Self::try_full(shape, value, dtype))
    }

    /// [`Tensor::full`], or an error when the shape is too large.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert!(Tensor::try_full(&[usize::MAX, 2], 1.0, DType::F64).is_err());
    /// let t = Tensor::try_full(&[2], 0.5, DType::F64).unwrap();
    /// assert_eq!(t.to_vec::<f64>(), [0.5, 0.5]);
    /// ```
    pub fn try_full(shape: &[usize], value: f64, dtype: DType) -> Result<Tensor> {
        if shape.is_empty() {
            return Ok(Tensor::number(value, dtype, None)); // in place, no buffer
        }
        let n = check_alloc("full", shape, dtype)?;
        Ok(
            with_scalar!(dtype, E => Tensor::from_buffer(crate::memory::filled_vec(n, E::from_f64(value)), shape)),
        )
    }

    /// A tensor of zeros. Panics when the shape is too large; see
    /// [`Tensor::try_zeros`].
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let z = Tensor::zeros(&[2, 3], DType::F64);
    /// assert_eq!(z.shape(), &[2, 3]);
    /// assert_eq!(z.to_vec::<f64>(), [0.0; 6]);
    /// ```
    #[track_caller]
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Self::full(shape, 0.0, dtype)
    }

    /// [`Tensor::zeros`], or an error when the shape is too large.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert!(Tensor::try_zeros(&[usize::MAX, 2], DType::F64).is_err());
    /// let z = Tensor::try_zeros(&[2], DType::F64).unwrap();
    /// assert_eq!(z.to_vec::<f64>(), [0.0, 0.0]);
    /// ```
    pub fn try_zeros(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Self::try_full(shape, 0.0, dtype)
    }

    /// A tensor of ones. Panics when the shape is too large; see
    /// [`Tensor::try_ones`].
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let o = Tensor::ones(&[2, 2], DType::F64);
    /// assert_eq!(o.to_vec::<f64>(), [1.0, 1.0, 1.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Self::full(shape, 1.0, dtype)
    }

    /// [`Tensor::ones`], or an error when the shape is too large.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert!(Tensor::try_ones(&[usize::MAX, 2], DType::F64).is_err());
    /// let o = Tensor::try_ones(&[3], DType::I64).unwrap();
    /// assert_eq!(o.to_vec::<i64>(), [1, 1, 1]);
    /// ```
    pub fn try_ones(shape: &[usize], dtype: DType) -> Result<Tensor> {
        Self::try_full(shape, 1.0, dtype)
    }

    /// Zeros with this tensor's shape and dtype.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::from_vec(vec![1i64, 0, 2], &[3]);
    /// let z = x.zeros_like();
    /// assert_eq!(z.dtype(), DType::I64);
    /// assert_eq!(z.to_vec::<i64>(), [0, 0, 0]);
    /// ```
    pub fn zeros_like(&self) -> Tensor {
        Self::zeros(self.shape(), self.dtype())
    }

    /// Ones with this tensor's shape and dtype.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let o = x.ones_like();
    /// assert_eq!(o.shape(), &[2, 2]);
    /// assert_eq!(o.to_vec::<f64>(), [1.0, 1.0, 1.0, 1.0]);
    /// ```
    pub fn ones_like(&self) -> Tensor {
        Self::ones(self.shape(), self.dtype())
    }

    /// `[0, 1, …, n-1]`.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert_eq!(Tensor::arange(4, DType::I64).to_vec::<i64>(), [0, 1, 2, 3]);
    /// assert_eq!(Tensor::arange(3, DType::F64).to_vec::<f64>(), [0.0, 1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn arange(n: usize, dtype: DType) -> Tensor {
        or_panic(Self::try_arange(n, dtype))
    }

    /// [`Tensor::arange`], or an error when the result is too large.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert!(Tensor::try_arange(usize::MAX, DType::F64).is_err());
    /// let a = Tensor::try_arange(3, DType::I64).unwrap();
    /// assert_eq!(a.to_vec::<i64>(), [0, 1, 2]);
    /// ```
    pub fn try_arange(n: usize, dtype: DType) -> Result<Tensor> {
        check_alloc("arange", &[n], dtype)?;
        Ok(
            with_scalar!(dtype, E => Tensor::from_buffer((0..n).map(|i| E::from_i64(i as i64)).collect(), &[n])),
        )
    }

    /// `n` evenly spaced values from `start` to `end` inclusive.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let t = Tensor::linspace(0.0, 1.0, 5, DType::F64);
    /// assert_eq!(t.to_vec::<f64>(), [0.0, 0.25, 0.5, 0.75, 1.0]);
    /// ```
    #[track_caller]
    pub fn linspace(start: f64, end: f64, n: usize, dtype: DType) -> Tensor {
        or_panic(Self::try_linspace(start, end, n, dtype))
    }

    /// [`Tensor::linspace`], or an error when the dtype is not a float or
    /// the result is too large.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert!(Tensor::try_linspace(0.0, 1.0, 3, DType::I64).is_err());
    /// let t = Tensor::try_linspace(0.0, 1.0, 3, DType::F64).unwrap();
    /// assert_eq!(t.to_vec::<f64>(), [0.0, 0.5, 1.0]);
    /// ```
    pub fn try_linspace(start: f64, end: f64, n: usize, dtype: DType) -> Result<Tensor> {
        Error::need_float("linspace", dtype)?;
        check_alloc("linspace", &[n], dtype)?;
        let step = if n > 1 {
            (end - start) / (n - 1) as f64
        } else {
            0.0
        };
        Ok(with_scalar!(dtype, E => Tensor::from_buffer(
            (0..n).map(|i| E::from_f64(start + step * i as f64)).collect(), &[n])))
    }

    /// The `n × n` identity.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let i = Tensor::eye(2, DType::F64);
    /// assert_eq!(i.shape(), &[2, 2]);
    /// assert_eq!(i.to_vec::<f64>(), [1.0, 0.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn eye(n: usize, dtype: DType) -> Tensor {
        or_panic(Self::try_eye(n, dtype))
    }

    /// [`Tensor::eye`], or an error when the result is too large.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert!(Tensor::try_eye(usize::MAX, DType::F64).is_err());
    /// let i = Tensor::try_eye(2, DType::I64).unwrap();
    /// assert_eq!(i.to_vec::<i64>(), [1, 0, 0, 1]);
    /// ```
    pub fn try_eye(n: usize, dtype: DType) -> Result<Tensor> {
        let len = check_alloc("eye", &[n, n], dtype)?;
        Ok(with_scalar!(dtype, E => {
            let mut v = vec![E::from_i64(0); len];
            for i in 0..n {
                v[i * n + i] = E::from_i64(1);
            }
            Tensor::from_buffer(v, &[n, n])
        }))
    }

    /// Uniform in `[low, high)` from a generator seeded with `seed`. Panics
    /// unless `low < high`, both finite; see [`Tensor::try_rand_uniform`].
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let a = Tensor::rand_uniform(&[100], -1.0, 1.0, 42, DType::F64);
    /// assert!(a.to_vec::<f64>().iter().all(|&v| (-1.0..1.0).contains(&v)));
    /// let b = Tensor::rand_uniform(&[100], -1.0, 1.0, 42, DType::F64);
    /// assert_eq!(a.to_vec::<f64>(), b.to_vec::<f64>()); // same seed, same values
    /// ```
    #[track_caller]
    pub fn rand_uniform(shape: &[usize], low: f64, high: f64, seed: u64, dtype: DType) -> Tensor {
        or_panic(Self::try_rand_uniform(shape, low, high, seed, dtype))
    }

    /// [`Tensor::rand_uniform`], or an error when the bounds are invalid,
    /// the dtype is not a float or the shape is too large.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert!(Tensor::try_rand_uniform(&[3], 1.0, 0.0, 42, DType::F64).is_err());
    /// assert!(Tensor::try_rand_uniform(&[3], 0.0, 1.0, 42, DType::I64).is_err());
    /// let a = Tensor::try_rand_uniform(&[3], 0.0, 1.0, 42, DType::F64).unwrap();
    /// assert_eq!(a.shape(), &[3]);
    /// ```
    pub fn try_rand_uniform(
        shape: &[usize],
        low: f64,
        high: f64,
        seed: u64,
        dtype: DType,
    ) -> Result<Tensor> {
        if !(low < high && low.is_finite() && high.is_finite()) {
            return Err(Error::invalid(
                "rand_uniform",
                format!("needs finite bounds low < high, got [{low}, {high})"),
            ));
        }
        Error::need_float("rand_uniform", dtype)?;
        let n = check_alloc("rand_uniform", shape, dtype)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Ok(with_scalar!(dtype, E => Tensor::from_buffer(
            (0..n).map(|_| E::from_f64(rng.random_range(low..high))).collect(), shape)))
    }

    /// Normal with mean `mean` and standard deviation `std`, seeded with
    /// `seed`. Panics unless `mean` is finite and `std` finite and `≥ 0`; see
    /// [`Tensor::try_rand_normal`].
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let a = Tensor::rand_normal(&[2, 3], 0.0, 1.0, 7, DType::F64);
    /// assert_eq!(a.shape(), &[2, 3]);
    /// assert!(a.to_vec::<f64>().iter().all(|v| v.is_finite()));
    /// ```
    #[track_caller]
    pub fn rand_normal(shape: &[usize], mean: f64, std: f64, seed: u64, dtype: DType) -> Tensor {
        or_panic(Self::try_rand_normal(shape, mean, std, seed, dtype))
    }

    /// [`Tensor::rand_normal`], or an error when the parameters are invalid,
    /// the dtype is not a float or the shape is too large.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert!(Tensor::try_rand_normal(&[3], 0.0, -1.0, 7, DType::F64).is_err());
    /// let a = Tensor::try_rand_normal(&[3], 0.0, 1.0, 7, DType::F64).unwrap();
    /// assert_eq!(a.shape(), &[3]);
    /// ```
    pub fn try_rand_normal(
        shape: &[usize],
        mean: f64,
        std: f64,
        seed: u64,
        dtype: DType,
    ) -> Result<Tensor> {
        let normal = rand_distr::Normal::new(mean, std)
            .ok()
            .filter(|_| mean.is_finite() && std.is_finite() && std >= 0.0)
            .ok_or_else(|| {
                Error::invalid(
                    "rand_normal",
                    format!(
                        "needs a finite mean and a finite std >= 0, got mean {mean}, std {std}"
                    ),
                )
            })?;
        Error::need_float("rand_normal", dtype)?;
        let n = check_alloc("rand_normal", shape, dtype)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Ok(with_scalar!(dtype, E => Tensor::from_buffer(
            (0..n).map(|_| E::from_f64(rng.sample(normal))).collect(), shape)))
    }

    // ---- reading back -----------------------------------------------------

    /// The size of each axis.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let t = Tensor::zeros(&[2, 3], DType::F64);
    /// assert_eq!(t.shape(), &[2, 3]);
    /// assert!(Tensor::scalar(1.0f64).shape().is_empty());
    /// ```
    pub fn shape(&self) -> &[usize] {
        &self.0.layout.shape
    }

    /// The number of axes (0 for a scalar).
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert_eq!(Tensor::zeros(&[2, 3, 4], DType::F64).ndim(), 3);
    /// assert_eq!(Tensor::scalar(1.0f64).ndim(), 0);
    /// ```
    pub fn ndim(&self) -> usize {
        self.0.layout.shape.len()
    }

    /// The number of elements: the product of the shape.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert_eq!(Tensor::zeros(&[2, 3], DType::F64).numel(), 6);
    /// assert_eq!(Tensor::scalar(1.0f64).numel(), 1);
    /// ```
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }

    /// The element type.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// assert_eq!(Tensor::from_vec(vec![1.0f64, 2.0], &[2]).dtype(), DType::F64);
    /// assert_eq!(Tensor::from_vec(vec![1i64, 0, 2], &[3]).dtype(), DType::I64);
    /// ```
    pub fn dtype(&self) -> DType {
        self.0.storage.dtype()
    }

    /// Whether the view is a plain row-major run of its buffer.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// assert!(m.is_contiguous());
    /// assert!(!m.t().is_contiguous()); // a transposed view
    /// ```
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.contiguous_range().is_some()
    }

    /// The elements in row-major order, converted to `T`.
    /// Panics inside `vmap` on a batched tensor (see [`Tensor::try_item`]).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.5, -3.0], &[3]);
    /// assert_eq!(x.to_vec::<f64>(), [1.0, 2.5, -3.0]);
    /// assert_eq!(x.to_vec::<i64>(), [1, 2, -3]); // converted as `as` does
    /// ```
    #[track_caller]
    pub fn to_vec<T: Scalar>(&self) -> Vec<T> {
        or_panic(self.readable("to_vec"));
        with_scalar!(self.dtype(), E => {
            let v: Vec<E> = materialize(self.buffer::<E>(), self.layout());
            if E::DTYPE == T::DTYPE { cast_vec(v) } else { v.into_iter().map(T::cast_from).collect() }
        })
    }

    /// The elements in row-major order, borrowed from the tensor's memory
    /// (no copy): `None` unless the tensor holds `T`, lies contiguous in
    /// memory and is not batched inside `vmap`. [`Tensor::to_vec`] copies
    /// any tensor.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(x.as_slice::<f64>(), Some(&[1.0, 2.0, 3.0, 4.0][..]));
    /// assert_eq!(x.narrow(0, 1, 1).as_slice::<f64>(), Some(&[3.0, 4.0][..]));
    /// assert_eq!(x.t().as_slice::<f64>(), None); // transposed: not in order
    /// assert_eq!(x.as_slice::<f32>(), None); // another dtype
    /// ```
    pub fn as_slice<T: Scalar>(&self) -> Option<&[T]> {
        if self.is_batched() || T::DTYPE != self.dtype() {
            return None;
        }
        let range = self.layout().contiguous_range()?;
        Some(with_scalar!(self.dtype(), E => cast_slice(&self.buffer::<E>()[range])))
    }

    /// The elements as `f64`, row-major.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1i64, 0, 2], &[3]);
    /// assert_eq!(x.to_vec_f64(), [1.0, 0.0, 2.0]);
    /// ```
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.to_vec::<f64>()
    }

    /// The value of a one-element tensor as `f64`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// assert_eq!(x.sum().item(), 6.0);
    /// assert_eq!(Tensor::from_vec(vec![2.5f64], &[1]).item(), 2.5);
    /// ```
    #[track_caller]
    pub fn item(&self) -> f64 {
        or_panic(self.try_item())
    }

    /// [`Tensor::item`], or an error when the tensor does not have exactly
    /// one element or is batched inside `vmap`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// assert!(x.try_item().is_err()); // two elements
    /// assert_eq!(x.sum().try_item().unwrap(), 3.0);
    /// ```
    pub fn try_item(&self) -> Result<f64> {
        self.readable("item")?;
        if self.numel() != 1 {
            return Err(Error::invalid(
                "item",
                format!(
                    "needs a tensor of one element, got shape {:?}",
                    self.shape()
                ),
            ));
        }
        Ok(self.get_unchecked_offset(self.0.layout.offset))
    }

    /// The element at a multi-index, as `f64`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(m.get(&[1, 0]), 3.0);
    /// assert_eq!(m.t().get(&[1, 0]), 2.0);
    /// ```
    #[track_caller]
    pub fn get(&self, index: &[usize]) -> f64 {
        or_panic(self.try_get(index))
    }

    /// [`Tensor::get`], or an error when the index is out of bounds or the
    /// tensor is batched inside `vmap`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert!(m.try_get(&[2, 0]).is_err());
    /// assert!(m.try_get(&[0]).is_err());
    /// assert_eq!(m.try_get(&[0, 1]).unwrap(), 2.0);
    /// ```
    pub fn try_get(&self, index: &[usize]) -> Result<f64> {
        self.readable("get")?;
        let l = self.layout();
        if index.len() != l.shape.len() || index.iter().zip(&l.shape).any(|(i, d)| i >= d) {
            return Err(Error::invalid(
                "get",
                format!(
                    "index {:?} is out of bounds for shape {:?}",
                    index,
                    self.shape()
                ),
            ));
        }
        let off = l.offset
            + index
                .iter()
                .zip(&l.strides)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        Ok(self.get_unchecked_offset(off))
    }

    fn get_unchecked_offset(&self, off: usize) -> f64 {
        with_scalar!(self.dtype(), E => self.buffer::<E>()[off].to_f64())
    }

    /// A row-major copy (or this tensor when it already is one), recording
    /// nothing about layout: gradients flow through unchanged.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    /// let c = m.t().contiguous();
    /// assert!(c.is_contiguous());
    /// assert_eq!(c.shape(), &[3, 2]);
    /// assert_eq!(c.to_vec::<f64>(), [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    /// ```
    pub fn contiguous(&self) -> Tensor {
        if self.0.layout.contiguous_range().is_some() && self.0.layout.offset == 0 {
            return self.clone();
        }
        crate::ops::movement::contiguous(self)
    }

    // ---- autograd ---------------------------------------------------------

    /// This tensor as a leaf whose gradient `backward` computes (consumes the
    /// handle; clones of the result share one gradient). Panics for an
    /// integer or bool tensor (they have no gradients); see
    /// [`Tensor::try_requires_grad`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    /// assert!(x.is_leaf() && x.needs_grad());
    /// (&x * &x).sum().backward().unwrap();
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), [2.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn requires_grad(self) -> Tensor {
        or_panic(self.try_requires_grad())
    }

    /// [`Tensor::requires_grad`], or an error for an integer or bool tensor.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let i = Tensor::from_vec(vec![1i64, 0, 2], &[3]);
    /// assert!(i.try_requires_grad().is_err()); // integers have no gradients
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).try_requires_grad().unwrap();
    /// assert!(x.is_leaf());
    /// ```
    pub fn try_requires_grad(self) -> Result<Tensor> {
        Error::need_float("requires_grad", self.dtype())?;
        if self.is_batched() {
            return Ok(self.as_leaf());
        }
        let leaf = Tensor::new_leaf(self.0.storage.clone(), self.0.layout.clone());
        crate::interp::same_value(&self, &leaf);
        Ok(leaf)
    }

    /// Whether ops on this tensor are recorded (it is, or depends on, a leaf
    /// requiring gradients).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    /// let c = Tensor::from_vec(vec![3.0f64, 4.0], &[2]);
    /// assert!((&x * &c).needs_grad());
    /// assert!(!c.exp().needs_grad());
    /// ```
    pub fn needs_grad(&self) -> bool {
        self.0.node.is_some()
    }

    /// Whether this tensor is a leaf requiring gradients.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    /// assert!(x.is_leaf());
    /// assert!(!x.exp().is_leaf()); // made by an op
    /// assert!(!Tensor::from_vec(vec![1.0f64], &[1]).is_leaf()); // not tracked
    /// ```
    pub fn is_leaf(&self) -> bool {
        matches!(self.node().map(|n| &n.kind), Some(NodeKind::Leaf { .. }))
    }

    /// The same values cut from the graph: no gradient flows through, by
    /// either mode (reverse-mode node and forward-mode tangents are dropped).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    /// let d = (&x * 2.0).detach();
    /// assert!(!d.needs_grad());
    /// assert_eq!(d.to_vec::<f64>(), [2.0, 4.0]);
    /// ```
    pub fn detach(&self) -> Tensor {
        crate::ops::bind(crate::ops::Prim::StopGradient, &[self])
            .expect("stop_gradient accepts any tensor")
    }

    /// [`Tensor::detach`] unseen by a graph trace (for the tracer itself).
    pub(crate) fn detach_untraced(&self) -> Tensor {
        self.view(self.0.layout.clone())
    }

    /// The gradient accumulated on this leaf by `backward`, if any.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    /// assert!(x.grad().is_none());
    /// (&x * 3.0).sum().backward().unwrap();
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), [3.0, 3.0]);
    /// ```
    pub fn grad(&self) -> Option<Tensor> {
        let slot = self.node()?.grad_slot()?;
        let grad = slot.lock().unwrap().clone();
        grad
    }

    /// Replaces the accumulated gradient of this leaf (`x.grad = g` in
    /// PyTorch), e.g. to clip it. `g` has the leaf's shape and dtype.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    /// x.set_grad(Some(Tensor::from_vec(vec![0.5f64, -0.5], &[2]))).unwrap();
    /// assert_eq!(x.grad().unwrap().to_vec::<f64>(), [0.5, -0.5]);
    /// assert!(x.set_grad(Some(Tensor::from_vec(vec![1.0f64], &[1]))).is_err()); // wrong shape
    /// x.set_grad(None).unwrap();
    /// ```
    pub fn set_grad(&self, g: Option<Tensor>) -> Result<()> {
        let Some(slot) = self.node().and_then(|n| n.grad_slot()) else {
            return Err(Error::invalid(
                "set_grad",
                "only a leaf that requires gradients holds one",
            ));
        };
        if let Some(g) = &g {
            if g.shape() != self.shape() || g.dtype() != self.dtype() {
                return Err(Error::shapes_detail(
                    "set_grad",
                    self.shape(),
                    g.shape(),
                    format!(
                        "a gradient has its leaf's shape and dtype ({:?})",
                        self.dtype()
                    ),
                ));
            }
        }
        *slot.lock().unwrap() = g.map(|g| g.detach());
        Ok(())
    }

    /// Clears the accumulated gradient of this leaf.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    /// (&x * 3.0).sum().backward().unwrap();
    /// assert!(x.grad().is_some());
    /// x.zero_grad();
    /// assert!(x.grad().is_none());
    /// ```
    pub fn zero_grad(&self) {
        if let Some(slot) = self.node().and_then(|n| n.grad_slot()) {
            *slot.lock().unwrap() = None;
        }
    }

    /// The name of the op that produced this tensor (`"leaf"` for leaves,
    /// `None` for tensors outside any graph).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]).requires_grad();
    /// assert_eq!(x.op_name(), Some("leaf"));
    /// assert_eq!(x.exp().sum().op_name(), Some("sum"));
    /// assert_eq!(Tensor::from_vec(vec![1.0f64], &[1]).op_name(), None);
    /// ```
    pub fn op_name(&self) -> Option<&'static str> {
        self.link().map(|l| l.node.name(l.at))
    }
}

/// Reinterprets a `&[A]` as `&[B]` when both are the same type.
fn cast_slice<A: 'static, B: 'static>(s: &[A]) -> &[B] {
    assert_eq!(std::any::TypeId::of::<A>(), std::any::TypeId::of::<B>());
    // SAFETY: A and B are the same type (asserted above).
    unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<B>(), s.len()) }
}

/// Reinterprets a `Vec<A>` as `Vec<B>` when both are the same type.
fn cast_vec<A: 'static, B: 'static>(v: Vec<A>) -> Vec<B> {
    assert_eq!(std::any::TypeId::of::<A>(), std::any::TypeId::of::<B>());
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: A and B are the same type (asserted above).
    unsafe { Vec::from_raw_parts(v.as_mut_ptr() as *mut B, v.len(), v.capacity()) }
}
