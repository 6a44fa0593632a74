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
pub fn solve(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (a, b, vector) = solve_operands("solve", a, b)?;
    unvector(crate::ops::linalg::solve(&a, &b, false)?, vector)
}

/// `x` with `a x = b` for a triangular `a` (`torch.linalg.solve_triangular`
/// with `left=True`): only its `upper` (or lower) triangle is read, and not
/// its diagonal when `unitriangular` (taken as ones).
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
pub fn cholesky(a: &Tensor) -> Result<Tensor> {
    prim(LinalgOp::Cholesky, &[&symmetric("cholesky", a)?])
}

/// `x` with `L Lᵀ x = b`, given the Cholesky factor `L`
/// (`torch.cholesky_solve(b, L)`): two triangular solves.
pub fn cholesky_solve(b: &Tensor, l: &Tensor) -> Result<Tensor> {
    let y = solve_triangular(l, b, false, false)?;
    solve_triangular(&mt(l)?, &y, true, false)
}

/// `a⁻¹` (`torch.linalg.inv`): a solve against the identity.
pub fn inv(a: &Tensor) -> Result<Tensor> {
    need_matrices("inv", a)?;
    let n = a.shape()[a.ndim() - 1];
    let eye = Tensor::try_eye(n, a.dtype())?.try_broadcast_to(a.shape())?;
    solve(a, &eye)
}

/// `(sign, log |det a|)` (`torch.linalg.slogdet`): sign 0 and `-inf` at a
/// singular matrix.
pub fn slogdet(a: &Tensor) -> Result<(Tensor, Tensor)> {
    let packed = prim(LinalgOp::Slogdet, &[a])?;
    Ok((
        packed.try_narrow(-1, 0, 1)?.try_squeeze(-1)?,
        packed.try_narrow(-1, 1, 1)?.try_squeeze(-1)?,
    ))
}

/// `det a` (`torch.linalg.det`), as `sign · exp(log |det|)`.
pub fn det(a: &Tensor) -> Result<Tensor> {
    let (sign, log_abs) = slogdet(a)?;
    sign.try_mul(&log_abs.exp())
}

/// Eigenvalues (ascending) and eigenvectors (columns) of a symmetric `a`
/// (`torch.linalg.eigh`); `a` is read as `(a + aᵀ)/2`. The vectors' signs
/// are arbitrary: a loss should not depend on them.
pub fn eigh(a: &Tensor) -> Result<(Tensor, Tensor)> {
    let a = symmetric("eigh", a)?;
    let n = a.shape()[a.ndim() - 1];
    let packed = prim(LinalgOp::Eigh, &[&a])?;
    let rows = |start, len| packed.try_narrow(-2, start, len);
    Ok((rows(0, 1)?.try_squeeze(-2)?, rows(1, n)?))
}

/// The reduced QR factors `(Q, R)` of an `(.., m, n)` `a`
/// (`torch.linalg.qr(mode="reduced")`), `R`'s diagonal of either sign.
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
pub fn matrix_exp(a: &Tensor) -> Result<Tensor> {
    prim(LinalgOp::MatrixExp, &[a])
}
