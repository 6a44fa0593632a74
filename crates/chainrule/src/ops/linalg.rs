//! Linear-algebra primitives on the last two axes, batched over the others
//! ([`Prim::Linalg`]): the factorizations run through faer
//! ([`crate::kernels::linalg`]); their derivative rules are written with the
//! library's own ops (triangular solves, matmuls, masks), so they are
//! differentiated again for higher orders. A factorization with several
//! results returns them packed in one tensor (see each op), which the
//! public functions of [`crate::linalg`] take apart.

use super::{bind, BatchArg, Prim};
use crate::dtype::Scalar;
use crate::error::{Error, Result};
use crate::kernels::linalg::{self as k, Failure};
use crate::storage::with_dtype;
use crate::tensor::Tensor;
use smallvec::{smallvec, SmallVec};

/// One linear-algebra primitive. `A` is the first input, `(.., n, n)`
/// when square.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LinalgOp {
    /// The lower factor `L` of a symmetric positive-definite `A = L Lᵀ`
    /// (rules for a symmetric `A`: the public function symmetrizes).
    Cholesky,
    /// `X = A⁻¹ B` for a triangular `A` (`B` is `(.., n, k)`); only its
    /// triangle is read, and not its diagonal when `unit`.
    TriangularSolve { lower: bool, unit: bool },
    /// `A`'s LU factors with partial pivoting, packed `(.., n + 1, n)` (see
    /// `kernels::linalg::lu_factor`): a cache for `LuSolve`, not
    /// differentiated (`LuSolve`'s rules carry `A`'s derivative).
    LuFactor,
    /// `X = A⁻¹ B` (`A⁻ᵀ B` when `transpose`), inputs `A`, its `LuFactor`
    /// and `B`: the solve reuses the factors, and so do the rules (the
    /// VJP's solve with `Aᵀ` is one more `LuSolve`).
    LuSolve { transpose: bool },
    /// `(sign, log |det A|)` packed as `(.., 2)`.
    Slogdet,
    /// Eigenvalues (ascending) and eigenvectors of a symmetric `A`, packed
    /// `(.., n + 1, n)`: the values, then the vectors as columns.
    Eigh,
    /// Reduced `A = Q R` of an `(.., m, n)` `A`, packed `(.., m + n, k)`:
    /// `Q`, then `Rᵀ` (k = min(m, n)).
    Qr,
    /// Thin `A = U diag(s) Vᵀ`, packed `(.., m + 1 + n, k)`: `U`, `s`
    /// (descending), `V`.
    Svd,
    /// `exp(A)` by scaling and squaring.
    MatrixExp,
}

impl LinalgOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            LinalgOp::Cholesky => "cholesky",
            LinalgOp::TriangularSolve { .. } => "solve_triangular",
            LinalgOp::LuFactor => "lu_factor",
            LinalgOp::LuSolve { .. } => "solve",
            LinalgOp::Slogdet => "slogdet",
            LinalgOp::Eigh => "eigh",
            LinalgOp::Qr => "qr",
            LinalgOp::Svd => "svd",
            LinalgOp::MatrixExp => "matrix_exp",
        }
    }

    pub(crate) fn arity(self) -> usize {
        match self {
            LinalgOp::TriangularSolve { .. } => 2,
            LinalgOp::LuSolve { .. } => 3,
            _ => 1,
        }
    }

    pub(crate) fn differentiable(self) -> bool {
        self != LinalgOp::LuFactor
    }

    fn square(self) -> bool {
        !matches!(self, LinalgOp::Qr | LinalgOp::Svd)
    }
}

/// `(batch shape, rows, columns)` of a stack of matrices.
fn matrices(op: LinalgOp, x: &[usize]) -> Result<(&[usize], usize, usize)> {
    let [batch @ .., m, n] = x else {
        return Err(Error::invalid(
            op.name(),
            format!("needs matrices (at least 2 axes), got shape {x:?}"),
        ));
    };
    Ok((batch, *m, *n))
}

/// The output shape, or the error naming the op.
pub(crate) fn shape(op: LinalgOp, args: &[&[usize]]) -> Result<Vec<usize>> {
    let (batch, m, n) = matrices(op, args[0])?;
    if op.square() && m != n {
        return Err(Error::invalid(
            op.name(),
            format!("needs square matrices, got shape {:?}", args[0]),
        ));
    }
    let with = |tail: &[usize]| [batch, tail].concat();
    Ok(match op {
        LinalgOp::Cholesky | LinalgOp::MatrixExp => args[0].to_vec(),
        LinalgOp::TriangularSolve { .. } | LinalgOp::LuSolve { .. } => {
            let rhs = args[args.len() - 1];
            if matches!(op, LinalgOp::LuSolve { .. }) && args[1] != with(&[n + 1, n]) {
                return Err(Error::shapes_detail(
                    op.name(),
                    args[0],
                    args[1],
                    "needs A's LU factors",
                ));
            }
            let (b_batch, rows, _) = matrices(op, rhs)?;
            if b_batch != batch || rows != n {
                return Err(Error::shapes_detail(
                    op.name(),
                    args[0],
                    rhs,
                    "needs A (.., n, n) and B (.., n, k) with the same batch axes",
                ));
            }
            rhs.to_vec()
        }
        LinalgOp::LuFactor => with(&[n + 1, n]),
        LinalgOp::Slogdet => with(&[2]),
        LinalgOp::Eigh => with(&[n + 1, n]),
        LinalgOp::Qr => with(&[m + n, m.min(n)]),
        LinalgOp::Svd => with(&[m + 1 + n, m.min(n)]),
    })
}

fn failed(op: LinalgOp, f: Failure) -> Error {
    let (b, why) = match f {
        Failure::NotPositiveDefinite(b) => (b, "is not positive definite"),
        Failure::Singular(b) => (b, "is singular"),
        Failure::NoConvergence(b) => (b, "did not converge"),
    };
    // The factors exist for a solve: its error is the solve's.
    let name = match op {
        LinalgOp::LuFactor => "solve",
        _ => op.name(),
    };
    Error::invalid(name, format!("matrix {b} of the batch {why}"))
}

/// The kernel.
pub(crate) fn forward(op: LinalgOp, args: &[&Tensor]) -> Result<Tensor> {
    let shapes: SmallVec<[&[usize]; 2]> = args.iter().map(|t| t.shape()).collect();
    let out_shape = shape(op, &shapes)?;
    crate::limits::check_alloc(op.name(), &out_shape, args[0].dtype())?;
    let a = args[0].contiguous();
    let (batch, m, n) = matrices(op, a.shape())?;
    let count: usize = batch.iter().product();
    Ok(with_dtype!(a.dtype(), T => {
        let x = a.buffer::<T>();
        let rhs = args.last().map(|b| b.contiguous());
        let factors = args.get(1).map(|f| f.contiguous());
        let rhs = || rhs.as_ref().expect("a solve has a right-hand side").buffer::<T>();
        let k = *out_shape.last().expect("matrices");
        let data: Vec<T> = match op {
            LinalgOp::Cholesky => k::cholesky(x, count, n).map_err(|f| failed(op, f))?,
            LinalgOp::TriangularSolve { lower, unit } => {
                k::triangular_solve(x, rhs(), (count, n, k), lower, unit)
            }
            LinalgOp::LuFactor => k::lu_factor(x, count, n).map_err(|f| failed(op, f))?,
            LinalgOp::LuSolve { transpose } => {
                let factors = factors.as_ref().expect("a solve has factors").buffer::<T>();
                k::lu_solve(factors, rhs(), (count, n, k), transpose)
            }
            LinalgOp::Slogdet => k::slogdet(x, count, n),
            LinalgOp::Eigh => k::eigh(x, count, n).map_err(|f| failed(op, f))?,
            LinalgOp::Qr => k::qr(x, count, m, n),
            LinalgOp::Svd => k::svd(x, count, m, n).map_err(|f| failed(op, f))?,
            LinalgOp::MatrixExp => {
                let x64: Vec<f64> = x[..count * n * n].iter().map(|&v| Scalar::to_f64(v)).collect();
                k::matrix_exp(&x64, count, n).into_iter().map(T::from_f64).collect()
            }
        };
        Tensor::from_buffer(data, &out_shape)
    }))
}

// ---- the rules' vocabulary -------------------------------------------------

fn op(o: LinalgOp, args: &[&Tensor]) -> Result<Tensor> {
    bind(Prim::Linalg(o), args)
}

/// The transpose of the last two axes.
fn mt(x: &Tensor) -> Result<Tensor> {
    x.try_transpose(-2, -1)
}

fn mm(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.try_matmul(b)
}

/// `A⁻¹ B`, or `A⁻ᵀ B` when `transpose`, through `A`'s LU factors.
pub(crate) fn solve(a: &Tensor, b: &Tensor, transpose: bool) -> Result<Tensor> {
    let factors = op(LinalgOp::LuFactor, &[a])?;
    op(LinalgOp::LuSolve { transpose }, &[a, &factors, b])
}

fn tri_solve(a: &Tensor, b: &Tensor, lower: bool) -> Result<Tensor> {
    op(LinalgOp::TriangularSolve { lower, unit: false }, &[a, b])
}

/// Rows `start..start + len` of each matrix.
fn rows(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    x.try_narrow(x.ndim() - 2, start, len)
}

fn eye(n: usize, like: &Tensor) -> Result<Tensor> {
    Tensor::try_eye(n, like.dtype())
}

/// Square matrices with the vectors `v` (`(.., n)`) on their diagonals.
fn diag_embed(v: &Tensor) -> Result<Tensor> {
    let n = *v.shape().last().expect("a vector");
    v.try_unsqueeze(-1)?.try_mul(&eye(n, v)?)
}

/// `1 / (d_j − d_i)` off the diagonal and 0 on it, from a row `d` `(.., 1, n)`
/// (the eigenvalue-gap matrix; infinite at repeated values).
fn gaps(d: &Tensor) -> Result<Tensor> {
    let n = *d.shape().last().expect("a row");
    let id = eye(n, d)?;
    d.try_sub(&mt(d)?)?.try_add(&id)?.reciprocal().try_sub(&id)
}

/// The tangent of a packed result: its parts stacked along the rows.
fn pack(parts: &[&Tensor]) -> Result<Tensor> {
    let axis = parts[0].ndim() - 2;
    Tensor::try_concat(parts, axis)
}

// ---- the rules -------------------------------------------------------------

/// The VJP: the adjoints of the inputs `needs` asks for, given the output
/// `y` and its adjoint `g`.
pub(crate) fn vjp(
    o: LinalgOp,
    inputs: &[Tensor],
    y: &Tensor,
    g: &Tensor,
    needs: &[bool],
) -> Result<SmallVec<[Option<Tensor>; 2]>> {
    let a = &inputs[0];
    Ok(match o {
        LinalgOp::Cholesky => {
            // Ā = L⁻ᵀ S L⁻¹, S = the symmetric part of tril(Lᵀ tril(L̄)), halved.
            let p = mm(&mt(y)?, &g.try_tril(0)?)?.try_tril(0)?;
            let s = p.try_add(&mt(&p.try_tril(-1)?)?)?.mul_scalar(0.5);
            let left = tri_solve(&mt(y)?, &s, false)?;
            smallvec![Some(mt(&tri_solve(&mt(y)?, &mt(&left)?, false)?)?)]
        }
        LinalgOp::TriangularSolve { lower, unit } => {
            let gb = op(
                LinalgOp::TriangularSolve {
                    lower: !lower,
                    unit,
                },
                &[&mt(a)?, g],
            )?;
            let ga = match needs[0] {
                true => Some(structure(&-mm(&gb, &mt(y)?)?, lower, unit)?),
                false => None,
            };
            smallvec![ga, Some(gb)]
        }
        LinalgOp::LuFactor => smallvec![None],
        LinalgOp::LuSolve { transpose } => {
            // B̄ = A⁻ᵀ X̄ with the same factors; Ā = −B̄ Xᵀ (−X B̄ᵀ for Aᵀ).
            let factors = &inputs[1];
            let gb = op(
                LinalgOp::LuSolve {
                    transpose: !transpose,
                },
                &[a, factors, g],
            )?;
            let ga = match (needs[0], transpose) {
                (false, _) => None,
                (true, false) => Some(-mm(&gb, &mt(y)?)?),
                (true, true) => Some(-mm(y, &mt(&gb)?)?),
            };
            smallvec![ga, None, Some(gb)]
        }
        LinalgOp::Slogdet => {
            // Only log |det| has a derivative: Ā = ḡ A⁻ᵀ.
            let n = a.shape()[a.ndim() - 1];
            let g_log = g.try_narrow(-1, 1, 1)?.try_unsqueeze(-1)?;
            let inv_t = solve(a, &eye(n, a)?.try_broadcast_to(a.shape())?, true)?;
            smallvec![Some(inv_t.try_mul(&g_log)?)]
        }
        LinalgOp::Eigh => {
            let n = a.shape()[a.ndim() - 1];
            let (values, vectors) = (rows(y, 0, 1)?, rows(y, 1, n)?);
            let (g_values, g_vectors) = (rows(g, 0, 1)?, rows(g, 1, n)?);
            let inner = diag_embed(&g_values.try_squeeze(-2)?)?
                .try_add(&gaps(&values)?.try_mul(&mm(&mt(&vectors)?, &g_vectors)?)?)?;
            smallvec![Some(mm(&mm(&vectors, &inner)?, &mt(&vectors)?)?)]
        }
        LinalgOp::Qr => smallvec![Some(qr_vjp(a, y, g)?)],
        LinalgOp::Svd => smallvec![Some(svd_vjp(a, y, g)?)],
        LinalgOp::MatrixExp => smallvec![Some(exp_frechet(&mt(a)?, g)?)],
    })
}

/// `m` projected onto a triangular matrix's entries: its triangle, less
/// the diagonal when that is taken as ones.
fn structure(m: &Tensor, lower: bool, unit: bool) -> Result<Tensor> {
    match (lower, unit) {
        (true, false) => m.try_tril(0),
        (true, true) => m.try_tril(-1),
        (false, false) => m.try_triu(0),
        (false, true) => m.try_triu(1),
    }
}

fn need_tall(o: LinalgOp, a: &Tensor) -> Result<(usize, usize)> {
    let (m, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
    if m < n {
        return Err(Error::invalid(
            o.name(),
            format!("derivatives need at least as many rows as columns, got {m} × {n}"),
        ));
    }
    Ok((m, n))
}

/// Ā = (Q̄ + Q N) R⁻ᵀ with M = R̄ Rᵀ − Qᵀ Q̄ and N its upper triangle
/// mirrored (m ≥ n).
fn qr_vjp(a: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (m, n) = need_tall(LinalgOp::Qr, a)?;
    let (q, r) = (rows(y, 0, m)?, mt(&rows(y, m, n)?)?);
    let (gq, gr) = (rows(g, 0, m)?, mt(&rows(g, m, n)?)?.try_triu(0)?);
    let big_m = mm(&gr, &mt(&r)?)?.try_sub(&mm(&mt(&q)?, &gq)?)?;
    let mirrored = big_m.try_triu(0)?.try_add(&mt(&big_m.try_triu(1)?)?)?;
    let x = gq.try_add(&mm(&q, &mirrored)?)?;
    mt(&tri_solve(&r, &mt(&x)?, false)?)
}

/// Ā = U [diag(s̄) + (F∘(J − Jᵀ)) S + S (F∘(K − Kᵀ))] Vᵀ with J = Uᵀ Ū,
/// K = Vᵀ V̄, F the gaps of s², plus the parts outside U's and V's spans.
fn svd_vjp(a: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    let (m, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
    let k = m.min(n);
    let (u, s, v) = (rows(y, 0, m)?, rows(y, m, 1)?, rows(y, m + 1, n)?);
    let (gu, gs, gv) = (rows(g, 0, m)?, rows(g, m, 1)?, rows(g, m + 1, n)?);
    let f = gaps(&s.square())?;
    let (j, kk) = (mm(&mt(&u)?, &gu)?, mm(&mt(&v)?, &gv)?);
    let skew = |x: &Tensor| x.try_sub(&mt(x)?);
    let core = diag_embed(&gs.try_squeeze(-2)?)?
        .try_add(&f.try_mul(&skew(&j)?)?.try_mul(&s)?)?
        .try_add(&mt(&s)?.try_mul(&f.try_mul(&skew(&kk)?)?)?)?;
    let mut ga = mm(&mm(&u, &core)?, &mt(&v)?)?;
    if m > k {
        let outside = gu.try_sub(&mm(&u, &j)?)?.try_div(&s)?;
        ga = ga.try_add(&mm(&outside, &mt(&v)?)?)?;
    }
    if n > k {
        let outside = gv.try_sub(&mm(&v, &kk)?)?.try_div(&s)?;
        ga = ga.try_add(&mm(&u, &mt(&outside)?)?)?;
    }
    Ok(ga)
}

/// The Fréchet derivative of `exp` at `a` in direction `e`: the upper
/// right block of `exp([[a, e], [0, a]])` (Mathias 1996). With `aᵀ` and
/// the output's adjoint it is the VJP.
fn exp_frechet(a: &Tensor, e: &Tensor) -> Result<Tensor> {
    let n = a.shape()[a.ndim() - 1];
    let last = a.ndim() - 1;
    let top = Tensor::try_concat(&[a, e], last)?;
    let bottom = Tensor::try_concat(&[&a.zeros_like(), a], last)?;
    let big = op(LinalgOp::MatrixExp, &[&pack(&[&top, &bottom])?])?;
    rows(&big, 0, n)?.try_narrow(-1, n, n)
}

/// The JVP: the output's tangent given the inputs' (`None`: zero).
pub(crate) fn jvp(
    o: LinalgOp,
    inputs: &[Tensor],
    y: &Tensor,
    tangents: &[Option<Tensor>],
) -> Result<Tensor> {
    let a = &inputs[0];
    let da = || tangents[0].clone().unwrap_or_else(|| a.zeros_like());
    match o {
        LinalgOp::Cholesky => {
            // dL = L Φ(L⁻¹ dA L⁻ᵀ), Φ: the lower triangle, diagonal halved.
            let left = tri_solve(y, &da(), true)?;
            let w = mt(&tri_solve(y, &mt(&left)?, true)?)?;
            let phi = w
                .try_tril(0)?
                .try_sub(&diag_embed(&w.try_diagonal(0)?)?.mul_scalar(0.5))?;
            mm(y, &phi)
        }
        LinalgOp::LuFactor => unreachable!("lu_factor has no derivative"),
        LinalgOp::TriangularSolve { .. } | LinalgOp::LuSolve { .. } => {
            // dX = A⁻¹ (dB − dA X), through the op itself.
            let rhs = inputs.len() - 1;
            let mut drive = tangents[rhs].clone().unwrap_or_else(|| y.zeros_like());
            if let Some(da) = &tangents[0] {
                let da = match o {
                    LinalgOp::TriangularSolve { lower, unit } => structure(da, lower, unit)?,
                    LinalgOp::LuSolve { transpose: true } => mt(da)?,
                    _ => da.clone(),
                };
                drive = drive.try_sub(&mm(&da, y)?)?;
            }
            let mut args: SmallVec<[&Tensor; 3]> = inputs[..rhs].iter().collect();
            args.push(&drive);
            op(o, &args)
        }
        LinalgOp::Slogdet => {
            let trace = solve(a, &da(), false)?
                .try_diagonal(0)?
                .try_sum_axes(&[-1], true)?;
            Tensor::try_concat(&[&trace.zeros_like(), &trace], trace.ndim() - 1)
        }
        LinalgOp::Eigh => {
            let n = a.shape()[a.ndim() - 1];
            let (values, vectors) = (rows(y, 0, 1)?, rows(y, 1, n)?);
            let p = mm(&mm(&mt(&vectors)?, &da())?, &vectors)?;
            let d_values = p.try_diagonal(0)?.try_unsqueeze(-2)?;
            let d_vectors = mm(&vectors, &gaps(&values)?.try_mul(&p)?)?;
            pack(&[&d_values, &d_vectors])
        }
        LinalgOp::Qr => qr_jvp(a, y, &da()),
        LinalgOp::Svd => svd_jvp(a, y, &da()),
        LinalgOp::MatrixExp => exp_frechet(a, &da()),
    }
}

/// dQ = Q(Ω − C) + dA R⁻¹, dR = (C − Ω) R, with C = Qᵀ dA R⁻¹ and Ω the
/// skew part built from C's strict lower triangle (m ≥ n).
fn qr_jvp(a: &Tensor, y: &Tensor, da: &Tensor) -> Result<Tensor> {
    let (m, n) = need_tall(LinalgOp::Qr, a)?;
    let (q, r) = (rows(y, 0, m)?, mt(&rows(y, m, n)?)?);
    let b = mt(&tri_solve(&mt(&r)?, &mt(da)?, true)?)?;
    let c = mm(&mt(&q)?, &b)?;
    let low = c.try_tril(-1)?;
    let omega = low.try_sub(&mt(&low)?)?;
    let dq = mm(&q, &omega.try_sub(&c)?)?.try_add(&b)?;
    let dr = mm(&c.try_sub(&omega)?, &r)?;
    pack(&[&dq, &mt(&dr)?])
}

/// dU = U (F∘(P S + S Pᵀ)) (+ the part outside U's span), ds = diag(P),
/// dV = V (F∘(S P + Pᵀ S)) (+ outside V's span), with P = Uᵀ dA V.
fn svd_jvp(a: &Tensor, y: &Tensor, da: &Tensor) -> Result<Tensor> {
    let (m, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
    let k = m.min(n);
    let (u, s, v) = (rows(y, 0, m)?, rows(y, m, 1)?, rows(y, m + 1, n)?);
    let f = gaps(&s.square())?;
    let p = mm(&mm(&mt(&u)?, da)?, &v)?;
    let (pt, st) = (mt(&p)?, mt(&s)?);
    let ds = p.try_diagonal(0)?.try_unsqueeze(-2)?;
    let mut du = mm(&u, &f.try_mul(&p.try_mul(&s)?.try_add(&st.try_mul(&pt)?)?)?)?;
    let mut dv = mm(&v, &f.try_mul(&st.try_mul(&p)?.try_add(&pt.try_mul(&s)?)?)?)?;
    if m > k {
        du = du.try_add(&mm(da, &v)?.try_sub(&mm(&u, &p)?)?.try_div(&s)?)?;
    }
    if n > k {
        dv = dv.try_add(&mm(&mt(da)?, &u)?.try_sub(&mm(&v, &pt)?)?.try_div(&s)?)?;
    }
    pack(&[&du, &ds, &dv])
}

/// The batching rule: the batch axis is one more leading axis.
pub(crate) fn batch(o: LinalgOp, args: &[BatchArg], size: usize) -> Result<Tensor> {
    let inputs: SmallVec<[Tensor; 3]> = args.iter().map(|a| a.expanded(size)).collect();
    let refs: SmallVec<[&Tensor; 3]> = inputs.iter().collect();
    op(o, &refs)
}
