//! Bundle adjustment (ADBench "BA"): reprojection residuals of p
//! observations of m points by n cameras, plus a weight residual per
//! observation, and the sparse Jacobian.
//!
//! Each reprojection residual depends on one camera (11 parameters), one
//! point (3) and one weight (1): 15 of the 11n + 3m + p inputs. So instead
//! of a dense Jacobian the residuals are written as a function of the
//! gathered per-observation parameters (p × 15). Since observations are
//! independent, one reverse sweep per residual coordinate (x, then y) with a
//! cotangent of ones gives every row's 15 nonzeros at once: 2 sweeps for the
//! whole Jacobian, where a dense one would need 2p.

use crate::Reader;
use chainrule::error::ShapeDisplay;
use chainrule::{func, Result, Tensor};
use std::borrow::Cow;
use std::path::Path;

/// One BA instance: n cameras, m points and p observations.
pub struct BaInput {
    /// (n, 11): Rodrigues rotation (3), centre (3), focal length, principal
    /// point (2), radial distortion (2).
    pub cams: Tensor,
    /// (m, 3)
    pub points: Tensor,
    /// (p,)
    pub weights: Tensor,
    /// (p, 2)
    pub features: Tensor,
    /// Camera and point of each observation.
    pub obs: Vec<(usize, usize)>,
}

/// Reads a BA file: one camera, point, weight and feature, replicated as
/// ADBench does (n cameras, m points, p observations; observation i uses
/// camera i mod n and point i mod m).
pub fn read(path: &Path) -> Result<BaInput> {
    let mut r = Reader::open(path)?;
    let n = r.count("the number of cameras n")?;
    let m = r.count("the number of points m")?;
    let p = r.count("the number of observations p")?;
    let cam = r.take(11, "the camera's 11 parameters")?.to_vec();
    let point = r.take(3, "the point's 3 coordinates")?.to_vec();
    let w = r.take(1, "the weight")?[0];
    let feat = r.take(2, "the 2-D feature")?.to_vec();
    Ok(BaInput::repeated(n, m, p, &cam, &point, w, &feat))
}

impl BaInput {
    /// The full problem from one camera, point, weight and feature (the
    /// form ADBench's and GradBench's inputs take): `n` cameras, `m`
    /// points, `p` observations, observation `i` linking camera `i mod n`
    /// and point `i mod m`. Nothing later relies on the repetition.
    pub fn repeated(
        n: usize,
        m: usize,
        p: usize,
        cam: &[f64],
        point: &[f64],
        w: f64,
        feat: &[f64],
    ) -> BaInput {
        let rep = |v: &[f64], times: usize| -> Vec<f64> {
            v.iter().copied().cycle().take(v.len() * times).collect()
        };
        BaInput {
            cams: Tensor::from_vec(rep(cam, n), &[n, 11]),
            points: Tensor::from_vec(rep(point, m), &[m, 3]),
            weights: Tensor::from_vec(vec![w; p], &[p]),
            features: Tensor::from_vec(rep(feat, p), &[p, 2]),
            obs: (0..p).map(|i| (i % n, i % m)).collect(),
        }
    }
}

fn col(t: &Tensor, i: usize) -> Tensor {
    t.narrow(1, i, 1) // (p, 1)
}

fn cross(a: &Tensor, b: &Tensor) -> Tensor {
    let (a0, a1, a2) = (col(a, 0), col(a, 1), col(a, 2));
    let (b0, b1, b2) = (col(b, 0), col(b, 1), col(b, 2));
    Tensor::concat(
        &[
            &(&a1 * &b2 - &a2 * &b1),
            &(&a2 * &b0 - &a0 * &b2),
            &(&a0 * &b1 - &a1 * &b0),
        ],
        1,
    )
}

/// The two reprojection residuals of each observation from its gathered
/// parameters `g` (p, 15) = camera (11), point (3), weight (1): (p, 2).
pub fn reprojection(g: &Tensor, features: &Tensor) -> Tensor {
    let rot = g.narrow(1, 0, 3);
    let centre = g.narrow(1, 3, 3);
    let focal = g.narrow(1, 6, 1);
    let principal = g.narrow(1, 7, 2);
    let (k1, k2) = (g.narrow(1, 9, 1), g.narrow(1, 10, 1));
    let x = g.narrow(1, 11, 3);
    let w = g.narrow(1, 14, 1);
    let xc = x - centre;
    // Rodrigues: Xcam = X cos θ + (v × X) sin θ + v (v·X)(1 − cos θ), v = r/θ.
    // (ADBench's θ = 0 branch, X + r × X, is its limit; the data never hits it.)
    let theta = rot.square().sum_axes(&[1], true).sqrt();
    let v = &rot / &theta;
    let (cos, sin) = (theta.cos(), theta.sin());
    let vdot = (&v * &xc).sum_axes(&[1], true);
    let xcam = &xc * &cos + cross(&v, &xc) * &sin + &v * &(vdot * (1.0 - &cos));
    let proj = xcam.narrow(1, 0, 2) / &xcam.narrow(1, 2, 1);
    let s = proj.square().sum_axes(&[1], true);
    let distortion = &k1 * &s + &k2 * &s.square() + 1.0;
    let pixel = proj * &distortion * &focal + &principal;
    (pixel - features) * &w
}

/// The per-observation parameters, gathered: (p, 15).
pub fn gathered(input: &BaInput) -> Tensor {
    let cams: Vec<usize> = input.obs.iter().map(|o| o.0).collect();
    let pts: Vec<usize> = input.obs.iter().map(|o| o.1).collect();
    Tensor::concat(
        &[
            &input.cams.index_select(0, &cams),
            &input.points.index_select(0, &pts),
            &input.weights.unsqueeze(1),
        ],
        1,
    )
}

/// Residuals: (p, 2) reprojection errors and (p,) weight errors `1 − w²`.
pub fn residuals(input: &BaInput) -> (Tensor, Tensor) {
    let g = gathered(input);
    (
        reprojection(&g, &input.features),
        weight_errors(&input.weights),
    )
}

/// `1 − w_i²`, the weight residuals.
pub fn weight_errors(w: &Tensor) -> Tensor {
    1.0 - w.square()
}

/// A Jacobian in compressed sparse rows (CSR).
pub struct SparseJacobian {
    /// The number of rows: 3p (two reprojection residuals and one weight
    /// residual per observation).
    pub rows: usize,
    /// The number of columns: the 11n + 3m + p inputs.
    pub cols: usize,
    /// Where each row's entries start in `col_idx` and `values` (rows + 1
    /// offsets, the last one the number of nonzeros).
    pub row_ptr: Vec<usize>,
    /// The column of each nonzero, row by row.
    pub col_idx: Vec<usize>,
    /// The nonzero values, row by row.
    pub values: Vec<f64>,
}

/// The Jacobian in compressed sparse rows, ADBench's layout: rows 2i and 2i+1
/// (the two reprojection residuals of observation i) hold 15 values each in
/// column order (camera, point, weight); then one row per weight residual.
pub fn jacobian(input: &BaInput) -> Result<SparseJacobian> {
    let blocks = reprojection_blocks(&gathered(input), &input.features)?;
    sparse_jacobian(input, &blocks)
}

/// Every observation's 2×15 block of the reprojection Jacobian, (p, 2, 15):
/// `[i, 0]` holds `∂r_i,x/∂g_i` and `[i, 1]` holds `∂r_i,y/∂g_i`, the order of
/// ADBench's rows. Observations are independent, so the gradient of
/// `Σ_i r_i,x` with respect to the gathered parameters holds every row
/// `∂r_i,x/∂g_i` at once: two reverse sweeps (x rows, y rows) give all the
/// blocks. Written to be compiled whole (`func::jit`): the forward pass is
/// shared by both sweeps.
pub fn reprojection_blocks(g: &Tensor, features: &Tensor) -> Result<Tensor> {
    let p = g.shape()[0];
    let (_, pullback) = func::vjp(|g: &Tensor| reprojection(g, features), g)?;
    let seed = |r: usize| {
        let u = (0..p * 2).map(|k| if k % 2 == r { 1.0 } else { 0.0 });
        Tensor::from_vec(u.collect::<Vec<f64>>(), &[p, 2])
    };
    let (x_rows, y_rows) = (pullback.call(&seed(0))?, pullback.call(&seed(1))?);
    Tensor::try_stack(&[&x_rows, &y_rows], 1)
}

/// The Jacobian in ADBench's compressed sparse rows from the reprojection
/// blocks (see [`reprojection_blocks`]) and the weights' diagonal.
pub fn sparse_jacobian(input: &BaInput, blocks: &Tensor) -> Result<SparseJacobian> {
    let p = input.obs.len();
    let (n, m) = (input.cams.shape()[0], input.points.shape()[0]);
    if blocks.shape() != [p, 2, 15] {
        return Err(chainrule::Error::ShapeMismatch {
            op: "sparse_jacobian",
            lhs: ShapeDisplay(blocks.shape().to_vec()),
            rhs: ShapeDisplay(vec![p, 2, 15]),
            detail: ": the blocks are (p, 2, 15), as `reprojection_blocks` gives them".into(),
        });
    }
    // Borrowed in row order; a view out of order (or f32) is copied first.
    let blocks: Cow<[f64]> = match blocks.as_slice::<f64>() {
        Some(b) => Cow::Borrowed(b),
        None => Cow::Owned(blocks.to_vec()),
    };
    let mut row_ptr = Vec::with_capacity(3 * p + 1);
    row_ptr.push(0);
    let mut col_idx = Vec::with_capacity(p * 31);
    let mut values = Vec::with_capacity(p * 31);
    values.extend_from_slice(&blocks); // already in row order
    for (i, &(c, pt)) in input.obs.iter().enumerate() {
        let (camera, point, weight) = (c * 11, 11 * n + pt * 3, 11 * n + 3 * m + i);
        for _ in 0..2 {
            col_idx.extend(camera..camera + 11);
            col_idx.extend(point..point + 3);
            col_idx.push(weight);
            row_ptr.push(col_idx.len());
        }
    }
    // Each weight error depends on its own weight only: the Jacobian is
    // diagonal, and one reverse sweep with a ones seed gives the diagonal.
    let diagonal = func::grad(|w: &Tensor| weight_errors(w).sum(), &input.weights)?;
    for (i, d) in diagonal.to_vec::<f64>().into_iter().enumerate() {
        col_idx.push(11 * n + 3 * m + i);
        values.push(d);
        row_ptr.push(col_idx.len());
    }
    Ok(SparseJacobian {
        rows: 3 * p,
        cols: 11 * n + 3 * m + p,
        row_ptr,
        col_idx,
        values,
    })
}
