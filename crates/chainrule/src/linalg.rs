//! Linear algebra with gradients, like `torch.linalg`: every function works
//! on the last two axes and is batched over the others (broadcast where
//! two operands meet), in `f32` or `f64`, and differentiates in both modes
//! and to higher orders. The factorizations are faer's; the derivative
//! rules are the library's ops (see `ops/linalg.rs`).
//!
//! Degenerate cases follow PyTorch's documentation: the eigenvector and
//! singular-vector gradients are finite only for distinct eigenvalues
//! (singular values), and unstable when two are close; `qr`'s gradient
//! needs at least as many rows as columns and a full-rank matrix; `det`'s
//! and `slogdet`'s gradients are not finite at a singular matrix. A
//! singular `solve`, or a `cholesky` of a matrix that is not positive
//! definite, is an error naming the matrix of the batch.
//!
//! ```
//! use chainrule::{linalg, Tensor};
//! let a = Tensor::from_vec(vec![4.0f64, 1.0, 1.0, 3.0], &[2, 2]);
//! let b = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
//! let x = linalg::solve(&a, &b).unwrap();
//! assert!((a.matmul(&x) - &b).abs().max().item() < 1e-12);
//! ```

use crate::error::{Error, Result};
use crate::ops::bind;
use crate::ops::linalg::LinalgOp;
use crate::ops::Prim;
use crate::Tensor;

fn prim(op: LinalgOp, args: &[&Tensor]) -> Result<Tensor> {
    bind(Prim::Linalg(op), args)
}

fn mt(x: &Tensor) -> Result<Tensor> {
    x.try_transpose(-2, -1)
}

/// `(x + xᵀ) / 2`: what the symmetric factorizations read, so that their
/// gradient is symmetric (as PyTorch's) and agrees with finite differences.
fn symmetric(op: &'static str, x: &Tensor) -> Result<Tensor> {
    need_matrices(op, x)?;
    Ok(x.try_add(&mt(x)?)?.mul_scalar(0.5))
}

fn need_matrices(op: &'static str, x: &Tensor) -> Result<()> {
    if x.ndim() < 2 {
        return Err(Error::invalid(
            op,
            format!(
                "needs matrices (at least 2 axes), got shape {:?}",
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// `a` `(.., n, n)` and `b` `(.., n, k)` broadcast to common batch axes,
/// `b` first made a column when it is a vector (`(n,)` or `(.., n)` with
/// `a`'s batch axes), as `torch.linalg.solve` reads it. Returns whether it was.
fn solve_operands(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor, bool)> {
    need_matrices(op, a)?;
    let vector =
        b.ndim() == 1 || (b.ndim() == a.ndim() - 1 && b.shape() == &a.shape()[..a.ndim() - 1]);
    let b = if vector {
        b.try_unsqueeze(-1)?
    } else {
        b.clone()
    };
    need_matrices(op, &b)?;
    let (ab, bb) = (&a.shape()[..a.ndim() - 2], &b.shape()[..b.ndim() - 2]);
    let batch = crate::layout::broadcast_shapes(ab, bb).ok_or_else(|| {
        Error::shapes_detail(op, a.shape(), b.shape(), "batch axes do not broadcast")
    })?;
    let expand = |x: &Tensor| -> Result<Tensor> {
        let tail = &x.shape()[x.ndim() - 2..];
        x.try_broadcast_to(&[batch.as_slice(), tail].concat())
    };
    Ok((expand(a)?, expand(&b)?, vector))
}

fn unvector(x: Tensor, vector: bool) -> Result<Tensor> {
    if vector {
        x.try_squeeze(-1)
    } else {
        Ok(x)
    }
}

/// `x` with `a x = b` (`torch.linalg.solve`), by LU with partial pivoting
/// (the gradient reuses the factors).
/// `b` is `(.., n, k)` or a vector.
///
/// ```
/// use chainrule::{func, linalg, Tensor};
/// let a = Tensor::from_vec(vec![2.0f64, 1.0, 1.0, 3.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![3.0f64, 5.0], &[2]);
/// let x = linalg::solve(&a, &b).unwrap();
/// assert!((a.matmul(&x) - &b).abs().max().item() < 1e-12);
/// // ∇_b Σ x = A⁻ᵀ 𝟙, so Aᵀ times it is 𝟙
/// let g = func::grad(|b: &Tensor| linalg::solve(&a, b).map(|x| x.sum()), &b).unwrap();
/// assert!((a.t().matmul(&g) - 1.0).abs().max().item() < 1e-12);
/// ```
pub fn solve(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a, b, vector) = solve_operands("solve", a, b)?;
    unvector(crate::ops::linalg::solve(&a, &b, false)?, vector)
}

/// `x` with `a x = b` for a triangular `a` (`torch.linalg.solve_triangular`
/// with `left=True`): only its `upper` (or lower) triangle is read, and not
/// its diagonal when `unitriangular` (taken as ones).
///
/// ```
/// use chainrule::{linalg, Tensor};
/// // Only the upper triangle is read: the 9 is ignored.
/// let u = Tensor::from_vec(vec![2.0f64, 1.0, 9.0, 4.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![4.0f64, 8.0], &[2]);
/// assert_eq!(linalg::solve_triangular(&u, &b, true, false).unwrap().to_vec::<f64>(), [1.0, 2.0]);
/// // unitriangular: the diagonal is taken as ones
/// assert_eq!(linalg::solve_triangular(&u, &b, true, true).unwrap().to_vec::<f64>(), [-4.0, 8.0]);
/// ```
pub fn solve_triangular(
    a: &Tensor,
    b: &Tensor,
    upper: bool,
    unitriangular: bool,
) -> Result<Tensor> {
    let (a, b, vector) = solve_operands("solve_triangular", a, b)?;
    let op = LinalgOp::TriangularSolve {
        lower: !upper,
        unit: unitriangular,
    };
    unvector(prim(op, &[&a, &b])?, vector)
}

/// The lower Cholesky factor `L` of a symmetric positive-definite `a = L Lᵀ`
/// (`torch.linalg.cholesky`); `a` is read as `(a + aᵀ)/2`.
///
/// ```
/// use chainrule::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![4.0f64, 2.0, 2.0, 5.0], &[2, 2]);
/// let l = linalg::cholesky(&a).unwrap();
/// assert_eq!(l.to_vec::<f64>(), [2.0, 0.0, 1.0, 2.0]);
/// assert!((l.matmul(&l.t()) - &a).abs().max().item() < 1e-12); // L Lᵀ = A
/// ```
pub fn cholesky(a: &Tensor) -> Result<Tensor> {
    prim(LinalgOp::Cholesky, &[&symmetric("cholesky", a)?])
}

/// `x` with `L Lᵀ x = b`, given the Cholesky factor `L`
/// (`torch.cholesky_solve(b, L)`): two triangular solves.
///
/// ```
/// use chainrule::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![4.0f64, 2.0, 2.0, 5.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![6.0f64, 7.0], &[2, 1]);
/// let x = linalg::cholesky_solve(&b, &linalg::cholesky(&a).unwrap()).unwrap();
/// assert!((a.matmul(&x) - &b).abs().max().item() < 1e-12);
/// ```
pub fn cholesky_solve(b: &Tensor, l: &Tensor) -> Result<Tensor> {
    let y = solve_triangular(l, b, false, false)?;
    solve_triangular(&mt(l)?, &y, true, false)
}

/// `a⁻¹` (`torch.linalg.inv`): a solve against the identity.
///
/// ```
/// use chainrule::{linalg, DType, Tensor};
/// let a = Tensor::from_vec(vec![2.0f64, 1.0, 1.0, 1.0], &[2, 2]);
/// let a_inv = linalg::inv(&a).unwrap(); // [[1, -1], [-1, 2]]
/// assert!((a.matmul(&a_inv) - Tensor::eye(2, DType::F64)).abs().max().item() < 1e-12);
/// assert!((a_inv.get(&[1, 1]) - 2.0).abs() < 1e-12);
/// ```
pub fn inv(a: &Tensor) -> Result<Tensor> {
    need_matrices("inv", a)?;
    let n = a.shape()[a.ndim() - 1];
    let eye = Tensor::try_eye(n, a.dtype())?.try_broadcast_to(a.shape())?;
    solve(a, &eye)
}

/// `(sign, log |det a|)` (`torch.linalg.slogdet`): sign 0 and `-inf` at a
/// singular matrix.
///
/// ```
/// use chainrule::{func, linalg, Tensor};
/// let a = Tensor::from_vec(vec![0.0f64, 2.0, 3.0, 1.0], &[2, 2]); // det = −6
/// let (sign, log_abs) = linalg::slogdet(&a).unwrap();
/// assert_eq!(sign.item(), -1.0);
/// assert!((log_abs.item() - 6.0f64.ln()).abs() < 1e-12);
/// // ∇ log|det A| = A⁻ᵀ
/// let g = func::grad(|a: &Tensor| linalg::slogdet(a).map(|(_, l)| l), &a).unwrap();
/// assert!((g.matmul(&a.t()) - Tensor::eye(2, a.dtype())).abs().max().item() < 1e-12);
/// ```
pub fn slogdet(a: &Tensor) -> Result<(Tensor, Tensor)> {
    let packed = prim(LinalgOp::Slogdet, &[a])?;
    Ok((
        packed.try_narrow(-1, 0, 1)?.try_squeeze(-1)?,
        packed.try_narrow(-1, 1, 1)?.try_squeeze(-1)?,
    ))
}

/// `det a` (`torch.linalg.det`), as `sign · exp(log |det|)`.
///
/// ```
/// use chainrule::{func, linalg, Tensor};
/// let a = Tensor::from_vec(vec![2.0f64, 1.0, 1.0, 3.0], &[2, 2]);
/// assert!((linalg::det(&a).unwrap().item() - 5.0).abs() < 1e-12);
/// // Jacobi's formula: ∇ det A = det(A) A⁻ᵀ = [[3, -1], [-1, 2]]
/// let g = func::grad(linalg::det, &a).unwrap().to_vec::<f64>();
/// assert!(g.iter().zip([3.0, -1.0, -1.0, 2.0]).all(|(g, w)| (g - w).abs() < 1e-12));
/// ```
pub fn det(a: &Tensor) -> Result<Tensor> {
    let (sign, log_abs) = slogdet(a)?;
    sign.try_mul(&log_abs.exp())
}

/// Eigenvalues (ascending) and eigenvectors (columns) of a symmetric `a`
/// (`torch.linalg.eigh`); `a` is read as `(a + aᵀ)/2`. The vectors' signs
/// are arbitrary: a loss should not depend on them.
///
/// ```
/// use chainrule::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![2.0f64, 1.0, 1.0, 2.0], &[2, 2]); // eigenvalues 1 and 3
/// let (values, vectors) = linalg::eigh(&a).unwrap();
/// let v = values.to_vec::<f64>();
/// assert!((v[0] - 1.0).abs() < 1e-12 && (v[1] - 3.0).abs() < 1e-12);
/// assert!((a.matmul(&vectors) - &vectors * &values).abs().max().item() < 1e-12); // A V = V Λ
/// ```
pub fn eigh(a: &Tensor) -> Result<(Tensor, Tensor)> {
    let a = symmetric("eigh", a)?;
    let n = a.shape()[a.ndim() - 1];
    let packed = prim(LinalgOp::Eigh, &[&a])?;
    let rows = |start, len| packed.try_narrow(-2, start, len);
    Ok((rows(0, 1)?.try_squeeze(-2)?, rows(1, n)?))
}

/// The reduced QR factors `(Q, R)` of an `(.., m, n)` `a`
/// (`torch.linalg.qr(mode="reduced")`), `R`'s diagonal of either sign.
///
/// ```
/// use chainrule::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![3.0f64, 1.0, 4.0, 2.0, 0.0, 5.0], &[3, 2]);
/// let (q, r) = linalg::qr(&a).unwrap();
/// assert_eq!((q.shape(), r.shape()), (&[3, 2][..], &[2, 2][..]));
/// assert!((q.matmul(&r) - &a).abs().max().item() < 1e-12);
/// assert!((q.t().matmul(&q) - Tensor::eye(2, a.dtype())).abs().max().item() < 1e-12); // QᵀQ = I
/// ```
pub fn qr(a: &Tensor) -> Result<(Tensor, Tensor)> {
    need_matrices("qr", a)?;
    let (m, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
    let packed = prim(LinalgOp::Qr, &[a])?;
    Ok((
        packed.try_narrow(-2, 0, m)?,
        mt(&packed.try_narrow(-2, m, n)?)?,
    ))
}

/// The thin SVD `(U, S, Vh)` of an `(.., m, n)` `a`
/// (`torch.linalg.svd(full_matrices=False)`): `a = U diag(S) Vh`, `S`
/// descending. The vectors' signs are arbitrary.
///
/// ```
/// use chainrule::{linalg, Tensor};
/// let a = Tensor::from_vec(vec![0.0f64, 3.0, -2.0, 0.0, 0.0, 0.0], &[3, 2]);
/// let (u, s, vh) = linalg::svd(&a).unwrap();
/// assert_eq!((u.shape(), s.shape(), vh.shape()), (&[3, 2][..], &[2][..], &[2, 2][..]));
/// assert!((&s - Tensor::from_vec(vec![3.0f64, 2.0], &[2])).abs().max().item() < 1e-12);
/// assert!(((&u * &s).matmul(&vh) - &a).abs().max().item() < 1e-12); // A = U diag(S) Vh
/// ```
pub fn svd(a: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    need_matrices("svd", a)?;
    let (m, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
    let packed = prim(LinalgOp::Svd, &[a])?;
    let rows = |start, len| packed.try_narrow(-2, start, len);
    Ok((
        rows(0, m)?,
        rows(m, 1)?.try_squeeze(-2)?,
        mt(&rows(m + 1, n)?)?,
    ))
}

/// The least-squares solution of `a x ≈ b` (`torch.linalg.lstsq(a, b).solution`)
/// for an `a` of full rank: through `a`'s QR when it is tall (`x = R⁻¹ Qᵀ b`),
/// the minimum-norm solution through `aᵀ`'s when it is wide.
///
/// ```
/// use chainrule::{linalg, Tensor};
/// // Fit c₀ + c₁ t to (0, 1), (1, 3), (2, 4): the residual is orthogonal to A's columns.
/// let a = Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 1.0, 1.0, 2.0], &[3, 2]);
/// let b = Tensor::from_vec(vec![1.0f64, 3.0, 4.0], &[3]);
/// let c = linalg::lstsq(&a, &b).unwrap();
/// assert_eq!(c.shape(), &[2]);
/// assert!(a.t().matmul(&(a.matmul(&c) - &b)).abs().max().item() < 1e-12);
/// ```
pub fn lstsq(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    need_matrices("lstsq", a)?;
    let (m, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
    let vector = b.ndim() == a.ndim() - 1;
    let b = if vector {
        b.try_unsqueeze(-1)?
    } else {
        b.clone()
    };
    let x = if m >= n {
        let (q, r) = qr(a)?;
        solve_triangular(&r, &mt(&q)?.try_matmul(&b)?, true, false)?
    } else {
        let (q, r) = qr(&mt(a)?)?;
        q.try_matmul(&solve_triangular(&mt(&r)?, &b, false, false)?)?
    };
    unvector(x, vector)
}

/// `exp(a)` (`torch.linalg.matrix_exp`), by scaling and squaring with a
/// Padé (13, 13) approximant (Higham 2005). Its derivatives are Fréchet
/// derivatives, each the block of an exponential twice the size.
///
/// ```
/// use chainrule::{linalg, Tensor};
/// // The exponential of a rotation generator is the rotation by its angle.
/// let t = 0.5f64;
/// let r = linalg::matrix_exp(&Tensor::from_vec(vec![0.0, -t, t, 0.0], &[2, 2])).unwrap();
/// let want = [t.cos(), -t.sin(), t.sin(), t.cos()];
/// assert!(r.to_vec::<f64>().iter().zip(want).all(|(r, w)| (r - w).abs() < 1e-14));
/// ```
pub fn matrix_exp(a: &Tensor) -> Result<Tensor> {
    prim(LinalgOp::MatrixExp, &[a])
}
