//! Functional transforms, as in JAX and `torch.func`: derivatives of pure
//! functions of tensors, each one call, in whichever mode is cheaper.
//!
//! | transform | what it returns | mode |
//! |---|---|---|
//! | [`grad`], [`value_and_grad`] (and `_n` for several inputs) | `∇f(x)` of a scalar `f` | reverse |
//! | [`vjp`] / [`vjp_n`] | `f(x)` and a pullback `u ↦ uᵀ J` | reverse |
//! | [`jvp`] / [`jvp_n`] | `f(x)` and `J v` | forward |
//! | [`jacrev`] | the Jacobian: `vmap` of the pullback, one batched reverse sweep | reverse |
//! | [`jacfwd`] | the Jacobian: `vmap` of `jvp`, all input directions in one batched forward pass | forward |
//! | [`jacobian`] | [`jacfwd`] when the input has fewer elements than the output, else [`jacrev`] | either |
//! | [`hessian`] | the Hessian of a scalar `f` | forward-over-reverse |
//! | [`hessian_rev`] | the same | reverse-over-reverse |
//! | [`hvp`] | `H v` without forming `H` | forward-over-reverse |
//! | [`vmap`] | `f` mapped over a batch axis, as one batched computation | batching |
//! | [`jit`] | `f` traced, optimized and compiled to native code per input shapes | compilation |
//!
//! Shapes follow the note: for `f: Rⁿ → Rᵐ` the Jacobian is `(m, n)`; for
//! tensors it has the output's shape followed by the input's.
//!
//! Transforms compose: the function passed to one may call another (a
//! gradient of a gradient, the `jvp` of a `grad`, the `grad` of a `jvp`), and
//! the function may return a [`Tensor`] or a [`Result`] (so a transform can be
//! returned directly, and `?` works inside). Derivatives are taken with
//! respect to the arguments only: tensors the function captures are
//! constants for this transform (but stay differentiable for an enclosing one).
//!
//! ```
//! use chainrule::{func, Tensor};
//! // f(x) = Σ sin(x_i) x_i: ∇f = cos(x) ⊙ x + sin(x), H = diag(2cos x − x sin x)
//! let f = |x: &Tensor| (x.sin() * x).sum();
//! let x = Tensor::from_vec(vec![0.5f64, -1.0], &[2]);
//! let g = func::grad(f, &x).unwrap();
//! let h = func::hessian(f, &x).unwrap();
//! assert_eq!(h.shape(), &[2, 2]);
//! let v = 0.5f64;
//! assert!((g.get(&[0]) - (v.cos() * v + v.sin())).abs() < 1e-15);
//! assert!((h.get(&[0, 0]) - (2.0 * v.cos() - v * v.sin())).abs() < 1e-15);
//! assert_eq!(h.get(&[0, 1]), 0.0);
//! ```

use crate::autograd::engine::{self, BackwardOptions};
use crate::autograd::GradModeGuard;
use crate::error::{Error, Result};
use crate::forward::{self, DualLevel};
use crate::tensor::Tensor;

/// What a transformed function may return: a tensor, or a result of one.
pub trait FnOutput {
    /// The output as a result: a tensor wrapped in `Ok`, a result unchanged.
    fn into_result(self) -> Result<Tensor>;
}

impl FnOutput for Tensor {
    fn into_result(self) -> Result<Tensor> {
        Ok(self)
    }
}

impl FnOutput for Result<Tensor> {
    fn into_result(self) -> Result<Tensor> {
        self
    }
}

// ---------------------------------------------------------------------------
// Reverse mode
// ---------------------------------------------------------------------------

/// A handle on `x` that reverse mode can target on its own, at a fresh tape
/// level: a fresh leaf when `x` needs no gradient, else an identity on `x`
/// (so an enclosing transform still sees the dependence). Tangents and the
/// batch `x` carries are kept.
fn track(x: &Tensor) -> Tensor {
    let _on = GradModeGuard::new(true);
    if x.needs_grad() {
        crate::autograd::track_at_fresh_level(x)
    } else {
        x.as_leaf()
    }
}

/// Whether an enclosing transform differentiates `t`: it carries a node, a
/// tangent at an open level, or is batched over a value that does.
fn tracked_outside(t: &Tensor) -> bool {
    t.needs_grad() || forward::has_tangent(t) || t.physical().is_some_and(tracked_outside)
}

/// A function traced for reverse mode: its output and its tracked inputs.
struct Traced {
    output: Tensor,
    inputs: Vec<Tensor>,
    /// Whether the derivatives must themselves be differentiable: an
    /// enclosing transform (or an outer `backward`) will differentiate them.
    higher: bool,
}

fn trace<F, R>(f: F, xs: &[Tensor]) -> Result<Traced>
where
    F: FnOnce(&[Tensor]) -> R,
    R: FnOutput,
{
    let inputs: Vec<Tensor> = xs.iter().map(track).collect();
    let output = {
        let _on = GradModeGuard::new(true);
        f(&inputs).into_result()?
    };
    let higher = xs.iter().any(tracked_outside)
        || forward::has_tangent(&output)
        || output.physical().is_some_and(tracked_outside)
        || engine::depends_on_other_leaves(&output, &inputs);
    Ok(Traced {
        output,
        inputs,
        higher,
    })
}

impl Traced {
    /// `uᵀ J` for each input (`u = None`: the output is a single element).
    fn pull(&self, u: Option<&Tensor>, retain: bool) -> Result<Vec<Tensor>> {
        if !self.output.needs_grad() {
            return Ok(self.inputs.iter().map(|x| x.zeros_like()).collect());
        }
        let refs: Vec<&Tensor> = self.inputs.iter().collect();
        let _on = GradModeGuard::new(true);
        let options = BackwardOptions {
            grad: u.cloned(),
            retain_graph: retain,
            create_graph: self.higher,
        };
        if self.higher {
            engine::grad_with(&[&self.output], &refs, &options)
        } else {
            // No live leaf but the inputs: no branch to prune.
            engine::grad_without_search(&self.output, &refs, &options)
        }
    }

    /// The output handed back to the caller: cut from this transform's graph
    /// unless an enclosing transform differentiates it.
    fn value(&self) -> Tensor {
        if self.higher {
            self.output.clone()
        } else {
            self.output.detach()
        }
    }
}

fn check_scalar(op: &'static str, y: &Tensor) -> Result<()> {
    if y.numel() != 1 {
        return Err(Error::invalid(
            op,
            format!(
                "the function must return a single element, got shape {:?} (use jacrev / jacobian for non-scalar outputs)",
                y.shape()
            ),
        ));
    }
    Ok(())
}

/// `f(xs)` and its gradient with respect to each of `xs` (`f` returns a
/// single element).
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(a, b) = Σ a ⊙ b: ∂f/∂a = b, ∂f/∂b = a
/// let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// let b = Tensor::from_vec(vec![3.0f64, 4.0], &[2]);
/// let (y, g) = func::value_and_grad_n(|x: &[Tensor]| (&x[0] * &x[1]).sum(), &[a, b]).unwrap();
/// assert_eq!(y.item(), 11.0);
/// assert_eq!((g[0].to_vec::<f64>(), g[1].to_vec::<f64>()), (vec![3.0, 4.0], vec![1.0, 2.0]));
/// ```
pub fn value_and_grad_n<F, R>(f: F, xs: &[Tensor]) -> Result<(Tensor, Vec<Tensor>)>
where
    F: FnOnce(&[Tensor]) -> R,
    R: FnOutput,
{
    let traced = trace(f, xs)?;
    check_scalar("grad", &traced.output)?;
    let grads = traced.pull(None, false)?;
    Ok((traced.value(), grads))
}

/// The gradient of a scalar `f` with respect to each of `xs`.
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(w, x) = ⟨w, x⟩²: ∂f/∂w = 2⟨w, x⟩ x, ∂f/∂x = 2⟨w, x⟩ w (here ⟨w, x⟩ = 1)
/// let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// let x = Tensor::from_vec(vec![3.0f64, -1.0], &[2]);
/// let g = func::grad_n(|t: &[Tensor]| t[0].dot(&t[1]).square(), &[w, x]).unwrap();
/// assert_eq!(g[0].to_vec::<f64>(), [6.0, -2.0]);
/// assert_eq!(g[1].to_vec::<f64>(), [2.0, 4.0]);
/// ```
pub fn grad_n<F, R>(f: F, xs: &[Tensor]) -> Result<Vec<Tensor>>
where
    F: FnOnce(&[Tensor]) -> R,
    R: FnOutput,
{
    Ok(value_and_grad_n(f, xs)?.1)
}

/// `f(x)` and `∇f(x)`, for `f` returning a single element.
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(x) = Σ xᵢ³: the value, and ∇f = 3x²
/// let x = Tensor::from_vec(vec![1.0f64, -2.0, 3.0], &[3]);
/// let (y, g) = func::value_and_grad(|x: &Tensor| (x * x * x).sum(), &x).unwrap();
/// assert_eq!(y.item(), 20.0);
/// assert_eq!(g.to_vec::<f64>(), [3.0, 12.0, 27.0]);
/// ```
pub fn value_and_grad<F, R>(f: F, x: &Tensor) -> Result<(Tensor, Tensor)>
where
    F: FnOnce(&Tensor) -> R,
    R: FnOutput,
{
    let (y, mut g) = value_and_grad_n(|xs: &[Tensor]| f(&xs[0]), std::slice::from_ref(x))?;
    Ok((y, g.remove(0)))
}

/// `∇f(x)` (of `x`'s shape), for `f` returning a single element.
///
/// ```
/// use chainrule::{func, Tensor};
/// // ∇ Σ xᵢ² = 2x
/// let x = Tensor::from_vec(vec![1.0f64, -2.0, 3.0], &[3]);
/// let g = func::grad(|x: &Tensor| x.square().sum(), &x).unwrap();
/// assert_eq!(g.to_vec::<f64>(), [2.0, -4.0, 6.0]);
/// ```
pub fn grad<F, R>(f: F, x: &Tensor) -> Result<Tensor>
where
    F: FnOnce(&Tensor) -> R,
    R: FnOutput,
{
    Ok(value_and_grad(f, x)?.1)
}

/// The pullback of [`vjp`]: maps an output cotangent `u` (of the output's
/// shape) to `uᵀ J` for each input. It can be called many times.
pub struct Pullback {
    traced: Traced,
}

impl Pullback {
    /// `uᵀ ∂f/∂xs`, one tensor per input, each of its input's shape.
    ///
    /// ```
    /// use chainrule::{func, Tensor};
    /// // f(a, b) = a ⊙ b: u ↦ (u ⊙ b, u ⊙ a)
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// let b = Tensor::from_vec(vec![3.0f64, 4.0], &[2]);
    /// let (_, pullback) = func::vjp_n(|x: &[Tensor]| &x[0] * &x[1], &[a, b]).unwrap();
    /// let g = pullback.call_n(&Tensor::from_vec(vec![1.0f64, 10.0], &[2])).unwrap();
    /// assert_eq!((g[0].to_vec::<f64>(), g[1].to_vec::<f64>()), (vec![3.0, 40.0], vec![1.0, 20.0]));
    /// ```
    pub fn call_n(&self, u: &Tensor) -> Result<Vec<Tensor>> {
        if u.shape() != self.traced.output.shape() {
            return Err(Error::shapes_detail(
                "vjp",
                self.traced.output.shape(),
                u.shape(),
                "the cotangent must have the output's shape",
            ));
        }
        self.traced.pull(Some(u), true)
    }

    /// `uᵀ ∂f/∂x` for a function of one input.
    ///
    /// ```
    /// use chainrule::{func, Tensor};
    /// // f(x) = x ⊙ x, J = diag(2x): one pullback, called once per row of J
    /// let (_, pullback) = func::vjp(|x: &Tensor| x.square(), &Tensor::from_vec(vec![1.0f64, 2.0], &[2])).unwrap();
    /// let row = |u: Vec<f64>| pullback.call(&Tensor::from_vec(u, &[2])).unwrap().to_vec::<f64>();
    /// assert_eq!((row(vec![1.0, 0.0]), row(vec![0.0, 1.0])), (vec![2.0, 0.0], vec![0.0, 4.0]));
    /// assert!(pullback.call(&Tensor::from_vec(vec![1.0f64], &[1])).is_err()); // not the output's shape
    /// ```
    pub fn call(&self, u: &Tensor) -> Result<Tensor> {
        Ok(self.call_n(u)?.remove(0))
    }
}

/// `f(xs)` and its pullback `u ↦ uᵀ J` (reverse mode: one backward sweep per call).
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(A, x) = A x: the pullback of u is (u xᵀ, Aᵀ u)
/// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
/// let x = Tensor::from_vec(vec![1.0f64, 1.0], &[2]);
/// let (y, pullback) = func::vjp_n(|t: &[Tensor]| t[0].matmul(&t[1]), &[a, x]).unwrap();
/// assert_eq!(y.to_vec::<f64>(), [3.0, 7.0]);
/// let g = pullback.call_n(&Tensor::from_vec(vec![1.0f64, 0.0], &[2])).unwrap();
/// assert_eq!((g[0].to_vec::<f64>(), g[1].to_vec::<f64>()), (vec![1.0, 1.0, 0.0, 0.0], vec![1.0, 2.0]));
/// ```
pub fn vjp_n<F, R>(f: F, xs: &[Tensor]) -> Result<(Tensor, Pullback)>
where
    F: FnOnce(&[Tensor]) -> R,
    R: FnOutput,
{
    let traced = trace(f, xs)?;
    Ok((traced.value(), Pullback { traced }))
}

/// `f(x)` and its pullback `u ↦ uᵀ J`.
///
/// ```
/// use chainrule::{func, Tensor};
/// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
/// let (y, pullback) = func::vjp(|x: &Tensor| a.matmul(x), &Tensor::ones(&[2], a.dtype())).unwrap();
/// assert_eq!(y.to_vec::<f64>(), [3.0, 7.0]);
/// let row = pullback.call(&Tensor::from_vec(vec![1.0f64, 0.0], &[2])).unwrap();
/// assert_eq!(row.to_vec::<f64>(), [1.0, 2.0]); // first row of J = A
/// ```
pub fn vjp<F, R>(f: F, x: &Tensor) -> Result<(Tensor, Pullback)>
where
    F: FnOnce(&Tensor) -> R,
    R: FnOutput,
{
    vjp_n(|xs: &[Tensor]| f(&xs[0]), std::slice::from_ref(x))
}

// ---------------------------------------------------------------------------
// Forward mode
// ---------------------------------------------------------------------------

/// `f(xs)` and `J v = Σ_i ∂f/∂xs[i] · vs[i]` (forward mode: one pass, nothing
/// recorded).
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(a, b) = a ⊙ b: J (da, db) = da ⊙ b + a ⊙ db
/// let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// let b = Tensor::from_vec(vec![3.0f64, 4.0], &[2]);
/// let ones = Tensor::ones(&[2], a.dtype());
/// let (y, t) = func::jvp_n(|x: &[Tensor]| &x[0] * &x[1], &[a, b], &[ones.clone(), ones]).unwrap();
/// assert_eq!((y.to_vec::<f64>(), t.to_vec::<f64>()), (vec![3.0, 8.0], vec![4.0, 6.0]));
/// ```
pub fn jvp_n<F, R>(f: F, xs: &[Tensor], vs: &[Tensor]) -> Result<(Tensor, Tensor)>
where
    F: FnOnce(&[Tensor]) -> R,
    R: FnOutput,
{
    if xs.len() != vs.len() {
        return Err(Error::invalid(
            "jvp",
            format!("{} inputs but {} tangents", xs.len(), vs.len()),
        ));
    }
    let level = DualLevel::new();
    let duals = xs
        .iter()
        .zip(vs)
        .map(|(x, v)| level.make_dual(x, v))
        .collect::<Result<Vec<_>>>()?;
    let y = f(&duals).into_result()?;
    let (value, tangent) = level.unpack(&y);
    drop(level);
    let tangent = tangent.unwrap_or_else(|| value.zeros_like());
    let differentiated_outside = crate::interp::levels_open()
        || xs.iter().chain(vs).any(tracked_outside)
        || [&value, &tangent]
            .iter()
            .any(|t| engine::depends_on_other_leaves(t, &[]));
    if differentiated_outside {
        return Ok((value, tangent));
    }
    // Nothing outside can differentiate the results: cut them from the
    // tapes of gradients taken inside `f` (a reverse gradient inside
    // records its backward pass for this level's tangents). Kept, they
    // would chain every later computation on them to this call's graph: a
    // solver iterating on its own JVPs would grow one graph across all its
    // iterations.
    Ok((value.detach(), tangent.detach()))
}

/// `f(x)` and `J v` (`v` of `x`'s shape; the result of `f(x)`'s shape).
///
/// ```
/// use chainrule::{func, Tensor};
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// let v = Tensor::from_vec(vec![1.0f64, 0.0], &[2]);
/// let (y, jv) = func::jvp(|x: &Tensor| x * x, &x, &v).unwrap();
/// assert_eq!(jv.to_vec::<f64>(), [2.0, 0.0]);
/// ```
pub fn jvp<F, R>(f: F, x: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)>
where
    F: FnOnce(&Tensor) -> R,
    R: FnOutput,
{
    jvp_n(
        |xs: &[Tensor]| f(&xs[0]),
        std::slice::from_ref(x),
        std::slice::from_ref(v),
    )
}

// ---------------------------------------------------------------------------
// Jacobians and Hessians
// ---------------------------------------------------------------------------

/// `output shape ++ input shape`.
fn jacobian_shape(y: &[usize], x: &[usize]) -> Vec<usize> {
    y.iter().chain(x).copied().collect()
}

/// The identity as `n` unit tensors of `shape` stacked: `(n,) + shape`.
fn units(shape: &[usize], like: &Tensor) -> Result<Tensor> {
    let n = shape.iter().product::<usize>();
    let mut stacked = vec![n];
    stacked.extend_from_slice(shape);
    Tensor::try_eye(n, like.dtype())?.try_reshape(&stacked)
}

/// The Jacobian by reverse mode: `f` runs once, then its pullback runs on
/// every output direction at once (`vmap` of the pullback: one batched
/// reverse sweep gives every row).
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(x) = (x₀x₁, x₁x₂): R³ → R², so the Jacobian is (2, 3)
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
/// let j = func::jacrev(|x: &Tensor| x.narrow(0, 0, 2) * x.narrow(0, 1, 2), &x).unwrap();
/// assert_eq!(j.shape(), &[2, 3]);
/// assert_eq!(j.to_vec::<f64>(), [2.0, 1.0, 0.0, 0.0, 3.0, 2.0]);
/// ```
pub fn jacrev<F, R>(f: F, x: &Tensor) -> Result<Tensor>
where
    F: FnOnce(&Tensor) -> R,
    R: FnOutput,
{
    let (y, pullback) = vjp(f, x)?;
    rows(&y, &pullback, x)
}

fn rows(y: &Tensor, pullback: &Pullback, x: &Tensor) -> Result<Tensor> {
    let shape = jacobian_shape(y.shape(), x.shape());
    if y.numel() == 0 {
        return Tensor::try_zeros(&shape, x.dtype());
    }
    let pull = |u: &[Tensor]| pullback.call(&u[0]);
    let j = vmap(pull, &[Some(0)], 0)(&[units(y.shape(), y)?])?;
    j.try_reshape(&shape)
}

/// The Jacobian by forward mode: all `n` input directions pushed through `f`
/// in one pass (`vmap` of `jvp` over the identity's rows).
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(x) = A x: R² → R³, and its Jacobian is A
/// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
/// let x = Tensor::from_vec(vec![1.0f64, -1.0], &[2]);
/// let j = func::jacfwd(|x: &Tensor| a.matmul(x), &x).unwrap();
/// assert_eq!(j.shape(), &[3, 2]);
/// assert_eq!(j.to_vec::<f64>(), a.to_vec::<f64>());
/// ```
pub fn jacfwd<F, R>(f: F, x: &Tensor) -> Result<Tensor>
where
    F: Fn(&Tensor) -> R,
    R: FnOutput,
{
    let n = x.numel();
    if n == 0 {
        let y = f(x).into_result()?;
        return Tensor::try_zeros(&jacobian_shape(y.shape(), x.shape()), x.dtype());
    }
    let push = |v: &[Tensor]| Ok::<_, Error>(jvp(&f, x, &v[0])?.1);
    // columns[j, i...] = ∂y[i...]/∂x[j]: the direction axis goes last.
    let columns = vmap(push, &[Some(0)], 0)(&[units(x.shape(), x)?])?;
    let y_shape = &columns.shape()[1..];
    let m = y_shape.iter().product::<usize>();
    columns
        .reshape(&[n, m])
        .t()
        .try_reshape(&jacobian_shape(y_shape, x.shape()))
}

/// The Jacobian in the cheaper mode: forward when `x` has fewer elements than
/// `f(x)` (n directions instead of m sweeps), reverse otherwise, as the note
/// prescribes. `f` runs once by reverse mode first to learn the output size.
///
/// ```
/// use chainrule::{func, Tensor};
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
/// // f: R² → R³, so the Jacobian is (3, 2)
/// let f = |x: &Tensor| {
///     let product = (x.narrow(0, 0, 1) * x.narrow(0, 1, 1)).sum();
///     Tensor::stack(&[&x.sum(), &(x * x).sum(), &product], 0)
/// };
/// let j = func::jacobian(f, &x).unwrap();
/// assert_eq!(j.shape(), &[3, 2]);
/// assert_eq!(j.to_vec::<f64>(), [1.0, 1.0, 2.0, 4.0, 2.0, 1.0]);
/// ```
pub fn jacobian<F, R>(f: F, x: &Tensor) -> Result<Tensor>
where
    F: Fn(&Tensor) -> R,
    R: FnOutput,
{
    let (y, pullback) = vjp(&f, x)?;
    if x.numel() < y.numel() {
        drop(pullback);
        jacfwd(f, x)
    } else {
        rows(&y, &pullback, x)
    }
}

/// The Hessian of a scalar `f`, forward-over-reverse (`jacfwd` of `grad`):
/// one batched forward pass through the reverse sweep. Shape: `x`'s shape twice.
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(x) = xᵀ A x: the Hessian is A + Aᵀ, whatever x
/// let a = Tensor::from_vec(vec![1.0f64, 2.0, 0.0, 3.0], &[2, 2]);
/// let x = Tensor::from_vec(vec![0.5f64, -1.0], &[2]);
/// let h = func::hessian(|x: &Tensor| x.dot(&a.matmul(x)), &x).unwrap();
/// assert_eq!(h.to_vec::<f64>(), [2.0, 2.0, 2.0, 6.0]);
/// ```
pub fn hessian<F, R>(f: F, x: &Tensor) -> Result<Tensor>
where
    F: Fn(&Tensor) -> R,
    R: FnOutput,
{
    jacfwd(|x: &Tensor| grad(&f, x), x)
}

/// The Hessian of a scalar `f`, reverse-over-reverse (`jacrev` of `grad`).
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(x) = Σ xᵢ³: H = diag(6x)
/// let x = Tensor::from_vec(vec![1.0f64, -2.0], &[2]);
/// let h = func::hessian_rev(|x: &Tensor| (x * x * x).sum(), &x).unwrap();
/// assert_eq!(h.to_vec::<f64>(), [6.0, 0.0, 0.0, -12.0]);
/// ```
pub fn hessian_rev<F, R>(f: F, x: &Tensor) -> Result<Tensor>
where
    F: Fn(&Tensor) -> R,
    R: FnOutput,
{
    jacrev(|x: &Tensor| grad(&f, x), x)
}

/// The Hessian-vector product `H v` of a scalar `f`, forward-over-reverse
/// (the `jvp` of `grad`): the cost of a few gradients, without forming `H`.
///
/// ```
/// use chainrule::{func, Tensor};
/// // f(x) = (Σ x)²: H = 2·𝟙𝟙ᵀ, so H v = 2 (Σ v) 𝟙
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
/// let v = Tensor::from_vec(vec![1.0f64, 0.0, -3.0], &[3]);
/// let hv = func::hvp(|x: &Tensor| x.sum().square(), &x, &v).unwrap();
/// assert_eq!(hv.to_vec::<f64>(), [-4.0, -4.0, -4.0]);
/// ```
pub fn hvp<F, R>(f: F, x: &Tensor, v: &Tensor) -> Result<Tensor>
where
    F: Fn(&Tensor) -> R,
    R: FnOutput,
{
    Ok(jvp(|x: &Tensor| grad(&f, x), x, v)?.1)
}

// ---------------------------------------------------------------------------
// Batching
// ---------------------------------------------------------------------------

/// `f` mapped over a batch, as JAX's `vmap` and `torch.func.vmap`: `f` is
/// written for one example and runs once, on batched tensors, as one batched
/// computation (no loop over examples). `in_axes[i]` is the axis of input
/// `i` that holds the examples, or `None` for an input shared by every
/// example; the results are stacked along `out_axis`. Nests (`vmap` of
/// `vmap`) and composes with every other transform in any order.
///
/// Per-example gradients, `vmap` of `grad`:
///
/// ```
/// use chainrule::{func, Tensor};
/// // loss(w; x, y) = (⟨x, w⟩ − y)², for each example (x, y) of a batch
/// let w = Tensor::from_vec(vec![0.5f64, -1.0], &[2]);
/// let xs = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
/// let ys = Tensor::from_vec(vec![1.0f64, 0.0, -1.0], &[3]);
/// let loss = |w: &Tensor, x: &Tensor, y: &Tensor| (w.dot(x) - y).square();
/// let per_example = func::vmap(
///     |a: &[Tensor]| func::grad(|w: &Tensor| loss(w, &a[1], &a[2]), &a[0]),
///     &[None, Some(0), Some(0)],
///     0,
/// )(&[w.clone(), xs.clone(), ys.clone()])
/// .unwrap();
/// assert_eq!(per_example.shape(), &[3, 2]);
/// // row i: 2 (⟨xᵢ, w⟩ − yᵢ) xᵢ
/// let r = 2.0 * (0.5 * 3.0 - 4.0 - 0.0);
/// assert_eq!(per_example.to_vec::<f64>()[2..4], [r * 3.0, r * 4.0]);
/// ```
pub fn vmap<F, R>(
    f: F,
    in_axes: &[Option<usize>],
    out_axis: usize,
) -> impl Fn(&[Tensor]) -> Result<Tensor>
where
    F: Fn(&[Tensor]) -> R,
    R: FnOutput,
{
    let in_axes = in_axes.to_vec();
    move |xs: &[Tensor]| crate::batching::call(&f, xs, &in_axes, out_axis)
}

// ---------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------

/// `f` compiled: traced into a graph, optimized and lowered to native code
/// on its first call with each set of input shapes and dtypes, then run from
/// that cache (as `jax.jit`). Made by [`jit`].
pub struct Jit<F> {
    f: F,
    cache: std::sync::Mutex<Vec<(Signature, std::sync::Arc<crate::graph::Executable>)>>,
}

/// The shapes and dtypes a compiled function was specialized to.
type Signature = Vec<(Vec<usize>, crate::DType)>;

/// Compiles `f` (see [`Jit`]). To compile a derivative, jit the transform:
/// `jit(|x| grad(f, &x[0]))` traces the backward pass into the graph too.
/// Value-dependent control flow in `f` is frozen at the first call's values
/// (as in `torch.jit.trace`). Called under a transform (`grad` of a jitted
/// function, `vmap`, `jvp`) or on inputs that need a gradient, `f` runs as
/// written, so the transform sees every op.
///
/// ```
/// use chainrule::{func, Tensor};
/// let f = func::jit(|x: &[Tensor]| (x[0].sin() * &x[1]).sum());
/// let x = Tensor::from_vec(vec![0.5f64, -1.0], &[2]);
/// let y = f.call(&[x.clone(), x.clone()]).unwrap(); // traced and compiled
/// let z = f.call(&[x.clone(), x.clone()]).unwrap(); // from the cache
/// assert_eq!(y.item(), z.item());
/// assert_eq!(f.specializations(), 1);
/// let df = func::jit(|x: &[Tensor]| func::grad(|x| (x.sin() * x).sum(), &x[0]));
/// assert_eq!(df.call(std::slice::from_ref(&x)).unwrap().shape(), &[2]);
/// ```
pub fn jit<F, R>(f: F) -> Jit<F>
where
    F: Fn(&[Tensor]) -> R,
    R: FnOutput,
{
    Jit {
        f,
        cache: std::sync::Mutex::new(Vec::new()),
    }
}

impl<F, R> Jit<F>
where
    F: Fn(&[Tensor]) -> R,
    R: FnOutput,
{
    /// `f(xs)`, through the executable compiled for `xs`' shapes and dtypes.
    ///
    /// ```
    /// use chainrule::{func, Tensor};
    /// let f = func::jit(|x: &[Tensor]| &x[0] * &x[1] + 1.0);
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// let b = Tensor::from_vec(vec![3.0f64, -4.0], &[2]);
    /// assert_eq!(f.call(&[a, b]).unwrap().to_vec::<f64>(), [4.0, -7.0]);
    /// ```
    pub fn call(&self, xs: &[Tensor]) -> Result<Tensor> {
        if crate::interp::levels_open() || xs.iter().any(Tensor::needs_grad) {
            return (self.f)(xs).into_result();
        }
        let exe = self.executable(xs)?;
        let names: Vec<String> = (0..xs.len()).map(|i| format!("x{i}")).collect();
        let feeds: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(xs).collect();
        let mut out = exe.run(&feeds)?;
        Ok(out.remove(0))
    }

    /// How many shape/dtype specializations have been compiled.
    ///
    /// ```
    /// use chainrule::{func, Tensor};
    /// let f = func::jit(|x: &[Tensor]| x[0].square().sum());
    /// f.call(&[Tensor::from_vec(vec![1.0f64, 2.0], &[2])]).unwrap();
    /// f.call(&[Tensor::from_vec(vec![3.0f64, 4.0], &[2])]).unwrap(); // same shape: cached
    /// f.call(&[Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3])]).unwrap(); // a new shape
    /// assert_eq!(f.specializations(), 2);
    /// ```
    pub fn specializations(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    /// The executable for `xs`' signature, compiled on first use.
    fn executable(&self, xs: &[Tensor]) -> Result<std::sync::Arc<crate::graph::Executable>> {
        let signature: Signature = xs.iter().map(|x| (x.shape().to_vec(), x.dtype())).collect();
        if let Some((_, exe)) = self.lock().iter().find(|(s, _)| *s == signature) {
            return Ok(exe.clone());
        }
        let names: Vec<String> = (0..xs.len()).map(|i| format!("x{i}")).collect();
        let feeds: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(xs).collect();
        let graph = crate::graph::Graph::trace(&feeds, |t| Ok(vec![(self.f)(t).into_result()?]))?;
        let exe = std::sync::Arc::new(graph.optimize().compile());
        self.lock().push((signature, exe.clone()));
        Ok(exe)
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Vec<(Signature, std::sync::Arc<crate::graph::Executable>)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
