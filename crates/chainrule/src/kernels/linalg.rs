//! Dense factorizations on row-major batches of matrices, through faer:
//! each function takes `batch` matrices laid end to end and returns its
//! results laid out the same way (the packed layouts of
//! [`crate::ops::linalg`]). A failure names the first matrix that failed.

use faer::linalg::solvers::Solve;
use faer::reborrow::ReborrowMut;
use faer::{MatMut, MatRef, Side};

/// The float types faer factorizes (`f32`, `f64`).
pub(crate) trait Field: faer::traits::RealField + Copy + crate::Element {}
impl Field for f32 {}
impl Field for f64 {}

/// Why a factorization failed, and at which matrix of the batch.
pub(crate) enum Failure {
    NotPositiveDefinite(usize),
    Singular(usize),
    NoConvergence(usize),
}

fn matrix<T: Field>(data: &[T], b: usize, rows: usize, cols: usize) -> MatRef<'_, T> {
    let size = rows * cols;
    MatRef::from_row_major_slice(&data[b * size..(b + 1) * size], rows, cols)
}

fn write<T: Field>(out: &mut [T], b: usize, rows: usize, cols: usize) -> MatMut<'_, T> {
    let size = rows * cols;
    MatMut::from_row_major_slice_mut(&mut out[b * size..(b + 1) * size], rows, cols)
}

/// The lower Cholesky factor of each (symmetric) matrix, reading its lower
/// triangle.
pub(crate) fn cholesky<T: Field>(a: &[T], batch: usize, n: usize) -> Result<Vec<T>, Failure> {
    let mut out = vec![T::zero(); batch * n * n];
    for b in 0..batch {
        let llt = matrix(a, b, n, n)
            .llt(Side::Lower)
            .map_err(|_| Failure::NotPositiveDefinite(b))?;
        write(&mut out, b, n, n).copy_from(llt.L());
    }
    Ok(out)
}

/// `A⁻¹ B` for triangular `A` (n × n; its other triangle is not read, nor
/// its diagonal when `unit`) and `B` n × k.
pub(crate) fn triangular_solve<T: Field>(
    a: &[T],
    rhs: &[T],
    (batch, n, k): (usize, usize, usize),
    lower: bool,
    unit: bool,
) -> Vec<T> {
    let mut out = vec![T::zero(); batch * n * k];
    for b in 0..batch {
        let tri = matrix(a, b, n, n);
        let mut x = matrix(rhs, b, n, k).to_owned();
        match (lower, unit) {
            (true, false) => tri.solve_lower_triangular_in_place(x.as_mut()),
            (true, true) => tri.solve_unit_lower_triangular_in_place(x.as_mut()),
            (false, false) => tri.solve_upper_triangular_in_place(x.as_mut()),
            (false, true) => tri.solve_unit_upper_triangular_in_place(x.as_mut()),
        }
        write(&mut out, b, n, k).copy_from(&x);
    }
    out
}

/// The LU factors (partial pivoting) of each matrix, packed `(n + 1) × n`:
/// `L` below the diagonal (its unit diagonal implied) and `U` on and above
/// it, then the row permutation (row `i` of `P A` is row `p[i]` of `A`).
/// An exactly singular matrix fails.
pub(crate) fn lu_factor<T: Field>(a: &[T], batch: usize, n: usize) -> Result<Vec<T>, Failure> {
    let mut out = vec![T::zero(); batch * (n + 1) * n];
    for b in 0..batch {
        let lu = matrix(a, b, n, n).partial_piv_lu();
        let (l, u) = (lu.L(), lu.U());
        if (0..n).any(|i| u[(i, i)] == T::zero()) {
            return Err(Failure::Singular(b));
        }
        let mut packed = write(&mut out, b, n + 1, n);
        for i in 0..n {
            for j in 0..n {
                packed[(i, j)] = if i > j { l[(i, j)] } else { u[(i, j)] };
            }
        }
        for (j, &p) in lu.P().arrays().0.iter().enumerate() {
            packed[(n, j)] = T::from_f64(p as f64);
        }
    }
    Ok(out)
}

/// `A⁻¹ B` (or `A⁻ᵀ B` when `transpose`) from `A`'s packed LU factors
/// ([`lu_factor`]), `B` n × k: a permutation and two triangular solves.
pub(crate) fn lu_solve<T: Field>(
    packed: &[T],
    rhs: &[T],
    (batch, n, k): (usize, usize, usize),
    transpose: bool,
) -> Vec<T> {
    let mut out = vec![T::zero(); batch * n * k];
    for b in 0..batch {
        let factors = matrix(packed, b, n + 1, n);
        let lu = factors.subrows(0, n);
        let perm: Vec<usize> = (0..n)
            .map(|j| num_traits::ToPrimitive::to_usize(&factors[(n, j)]).unwrap_or(0))
            .collect();
        let rhs = matrix(rhs, b, n, k);
        let mut dst = write(&mut out, b, n, k);
        if transpose {
            // Aᵀ = Uᵀ Lᵀ P: solve with Uᵀ, then Lᵀ, then undo P.
            let mut y = rhs.to_owned();
            lu.transpose().solve_lower_triangular_in_place(y.as_mut());
            lu.transpose()
                .solve_unit_upper_triangular_in_place(y.as_mut());
            for (i, &p) in perm.iter().enumerate() {
                dst.rb_mut().row_mut(p).copy_from(y.row(i));
            }
        } else {
            let mut x = faer::Mat::from_fn(n, k, |i, j| rhs[(perm[i], j)]);
            lu.solve_unit_lower_triangular_in_place(x.as_mut());
            lu.solve_upper_triangular_in_place(x.as_mut());
            dst.copy_from(&x);
        }
    }
    out
}

/// `(sign, log |det|)` of each matrix, by LU: sign 0 and `-inf` when singular.
pub(crate) fn slogdet<T: Field>(a: &[T], batch: usize, n: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(2 * batch);
    for b in 0..batch {
        let lu = matrix(a, b, n, n).partial_piv_lu();
        let (u, (forward, _)) = (lu.U(), lu.P().arrays());
        let mut negative = permutation_is_odd(forward);
        let mut log_abs = T::zero();
        for i in 0..n {
            let d = u[(i, i)];
            negative ^= d < T::zero();
            log_abs += num_traits::Float::ln(num_traits::Float::abs(d));
        }
        let sign = match () {
            _ if log_abs == T::neg_infinity() => T::zero(),
            _ if negative => -T::one(),
            _ => T::one(),
        };
        out.extend([sign, log_abs]);
    }
    out
}

/// Whether a permutation (as the image of each position) is odd: its
/// length less its number of cycles.
fn permutation_is_odd(p: &[usize]) -> bool {
    let mut seen = vec![false; p.len()];
    let mut cycles = 0;
    for start in 0..p.len() {
        if !seen[start] {
            cycles += 1;
            let mut i = start;
            while !seen[i] {
                seen[i] = true;
                i = p[i];
            }
        }
    }
    (p.len() - cycles) % 2 == 1
}

/// Eigenvalues (ascending) and eigenvectors of each symmetric matrix
/// (reading its lower triangle), packed `(n + 1) × n`: the values, then
/// the vectors as columns.
pub(crate) fn eigh<T: Field>(a: &[T], batch: usize, n: usize) -> Result<Vec<T>, Failure> {
    let mut out = vec![T::zero(); batch * (n + 1) * n];
    for b in 0..batch {
        let evd = matrix(a, b, n, n)
            .self_adjoint_eigen(Side::Lower)
            .map_err(|_| Failure::NoConvergence(b))?;
        let mut packed = write(&mut out, b, n + 1, n);
        for (j, &v) in evd.S().column_vector().iter().enumerate() {
            packed[(0, j)] = v;
        }
        packed.subrows_mut(1, n).copy_from(evd.U());
    }
    Ok(out)
}

/// The reduced QR factors of each `m × n` matrix (k = min(m, n)), packed
/// `(m + n) × k`: `Q` (m × k), then `Rᵀ` (n × k).
pub(crate) fn qr<T: Field>(a: &[T], batch: usize, m: usize, n: usize) -> Vec<T> {
    let k = m.min(n);
    let mut out = vec![T::zero(); batch * (m + n) * k];
    for b in 0..batch {
        let qr = matrix(a, b, m, n).qr();
        let mut packed = write(&mut out, b, m + n, k);
        packed
            .rb_mut()
            .subrows_mut(0, m)
            .copy_from(qr.compute_thin_Q());
        packed.subrows_mut(m, n).copy_from(qr.thin_R().transpose());
    }
    out
}

/// The thin SVD of each `m × n` matrix (k = min(m, n)), packed
/// `(m + 1 + n) × k`: `U`, the singular values (descending), `V`.
pub(crate) fn svd<T: Field>(a: &[T], batch: usize, m: usize, n: usize) -> Result<Vec<T>, Failure> {
    let k = m.min(n);
    let mut out = vec![T::zero(); batch * (m + 1 + n) * k];
    for b in 0..batch {
        let svd = matrix(a, b, m, n)
            .thin_svd()
            .map_err(|_| Failure::NoConvergence(b))?;
        let mut packed = write(&mut out, b, m + 1 + n, k);
        packed.rb_mut().subrows_mut(0, m).copy_from(svd.U());
        for (j, &s) in svd.S().column_vector().iter().enumerate() {
            packed[(m, j)] = s;
        }
        packed.subrows_mut(m + 1, n).copy_from(svd.V());
    }
    Ok(out)
}

/// Padé (13, 13) coefficients of `exp` (Higham 2005).
const PADE13: [f64; 14] = [
    64764752532480000.0,
    32382376266240000.0,
    7771770303897600.0,
    1187353796428800.0,
    129060195264000.0,
    10559470521600.0,
    670442572800.0,
    33522128640.0,
    1323241920.0,
    40840800.0,
    960960.0,
    16380.0,
    182.0,
    1.0,
];

/// The 1-norm below which Padé (13, 13) is accurate to `f64` precision.
const THETA13: f64 = 5.371920351148152;

/// `exp` of each matrix by scaling and squaring with Padé (13, 13)
/// (Higham 2005), in `f64`.
pub(crate) fn matrix_exp(a: &[f64], batch: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; batch * n * n];
    for b in 0..batch {
        let x = matrix(a, b, n, n);
        let norm = (0..n)
            .map(|j| (0..n).map(|i| x[(i, j)].abs()).sum::<f64>())
            .fold(0.0, f64::max);
        let squarings = if norm > THETA13 {
            (norm / THETA13).log2().ceil() as i32
        } else {
            0
        };
        let x = x * faer::Scale(2f64.powi(-squarings));
        let mut e = pade13(&x, n);
        for _ in 0..squarings {
            e = &e * &e;
        }
        write(&mut out, b, n, n).copy_from(&e);
    }
    out
}

/// The Padé (13, 13) approximant `(V − U)⁻¹ (V + U)` of `exp(x)`.
fn pade13(x: &faer::Mat<f64>, n: usize) -> faer::Mat<f64> {
    let c = &PADE13;
    let id = faer::Mat::<f64>::identity(n, n);
    let x2 = x * x;
    let x4 = &x2 * &x2;
    let x6 = &x4 * &x2;
    let s = |k: usize| faer::Scale(c[k]);
    let inner_u = &x6 * (&x6 * s(13) + &x4 * s(11) + &x2 * s(9));
    let u = x * (inner_u + &x6 * s(7) + &x4 * s(5) + &x2 * s(3) + &id * s(1));
    let inner_v = &x6 * (&x6 * s(12) + &x4 * s(10) + &x2 * s(8));
    let v = inner_v + &x6 * s(6) + &x4 * s(4) + &x2 * s(2) + &id * s(0);
    (&v - &u).partial_piv_lu().solve(&v + &u)
}
