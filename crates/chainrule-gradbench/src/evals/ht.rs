//! `ht`: hand tracking (ADBench's hand model). The objective poses a
//! skinned hand mesh with 26 parameters θ and returns the residuals
//! between measured points and the mesh; the Jacobian is forward mode
//! (`func::jacfwd`: 3·npts rows, but only 26 or 28 columns).
//!
//! In the `complicated` variant each point also has barycentric
//! coordinates u, and the Jacobian's u-part is block diagonal (a residual
//! reads only its own point's u). Its two compressed columns are the
//! derivatives along one shift `du` added to every point's u, so the
//! Jacobian is that of a function of 28 numbers `[du0, du1, θ0 … θ25]` at
//! `du = 0`.
//!
//! The bones are posed a tree level at a time (one batched 4×4 product per
//! level, children of already-posed parents), and the skinning blends the
//! bone transforms per vertex with one matrix product. Positions are kept
//! coordinate-major, (3, n): the per-point work is then long rows (and its
//! 28 tangents one batch of them), not rows of 3.

use super::{field, flat, matrix, numbers, rows, unknown, vector};
use crate::protocol::{measure, Answer, Runs};
use chainrule::{func, Tensor};
use serde_json::Value;

const BONES: usize = 22;
const THETAS: usize = 26;

/// The hand model: bone tree, rest transforms and skinning weights.
struct Model {
    /// How the bones are posed a tree level at a time (see [`Posing`]).
    posing: Posing,
    base_relatives: Tensor,         // (22, 4, 4)
    inverse_base_absolutes: Tensor, // (22, 4, 4)
    /// `w[v,i]·b_v[c]` at `(4i + c, v)`: the skinning weights times the
    /// rest positions (homogeneous), (88, nverts), for the vertices the
    /// residuals read. It does not depend on θ, so it is formed once, when
    /// the input is read.
    skinning: Tensor,
    is_mirrored: bool,
}

/// What the residuals compare: the points, and for each point the mesh
/// vertices it matches (one vertex, or a triangle's three corners with the
/// point's barycentric coordinates `us`).
struct Problem {
    model: Model,
    points: Tensor, // (3, npts)
    /// For each of a point's vertices (one, or a triangle's three), the
    /// vertex of every point.
    corners: Vec<Vec<usize>>,
    us: Option<Tensor>, // (2, npts) in the complicated variant
}

/// Where each pose parameter comes from: entry `3c + r` of the 25×3 pose
/// matrix (column c, row r) is entry `POSE[3c + r]` of `[θ, 0, 1]`. Column
/// 0 is the global rotation, 1 the global scale (ones), 2 the translation,
/// and finger f's base column 5 + 4f has θ[6+4f], θ[7+4f], then θ[8+4f]
/// and θ[9+4f] alone in the next two columns.
fn pose_index() -> Vec<usize> {
    let (zero, one) = (THETAS, THETAS + 1);
    let mut index = vec![zero; 25 * 3];
    index[..3].copy_from_slice(&[0, 1, 2]);
    index[3..6].copy_from_slice(&[one, one, one]);
    index[6..9].copy_from_slice(&[3, 4, 5]);
    for finger in 0..5 {
        let (column, theta) = (5 + 4 * finger, 6 + 4 * finger);
        index[3 * column] = theta;
        index[3 * column + 1] = theta + 1;
        index[3 * (column + 1)] = theta + 2;
        index[3 * (column + 2)] = theta + 3;
    }
    index
}

/// A 3×3 rotation per bone from nine (22,)-shaped entries, row-major.
fn matrices(entries: [&Tensor; 9]) -> Tensor {
    Tensor::stack(&entries, 1).reshape(&[BONES, 3, 3])
}

/// `Rz(tz)·Ry(ty)·Rx(tx)` for every bone, from its pose column (tx, tz, ty).
fn euler_rotations(columns: &Tensor) -> Tensor {
    let angle = |r| columns.narrow(1, r, 1).reshape(&[BONES]);
    let (tx, tz, ty) = (angle(0), angle(1), angle(2));
    let (one, zero) = (tx.ones_like(), tx.zeros_like());
    let (cx, sx, cy, sy, cz, sz) = (tx.cos(), tx.sin(), ty.cos(), ty.sin(), tz.cos(), tz.sin());
    let rx = matrices([&one, &zero, &zero, &zero, &cx, &(-&sx), &zero, &sx, &cx]);
    let ry = matrices([&cy, &zero, &sy, &zero, &one, &zero, &(-&sy), &zero, &cy]);
    let rz = matrices([&cz, &(-&sz), &zero, &sz, &cz, &zero, &zero, &zero, &one]);
    rz.matmul(&ry).matmul(&rx)
}

/// The angle-axis rotation of `axis` (3,) (Rodrigues' formula), or the
/// identity for angles under 1e-4 as the reference has it.
fn angle_axis_rotation(axis: &Tensor) -> Tensor {
    let angle = axis.square().sum().sqrt();
    if angle.item() < 1e-4 {
        return Tensor::eye(3, axis.dtype());
    }
    let k = axis / &angle;
    let (c, s) = (angle.cos(), angle.sin());
    // [k]× = [[0, −z, y], [z, 0, −x], [−y, x, 0]] from [x, y, z, −x, −y, −z, 0].
    let signed = Tensor::concat(&[&k, &(-&k), &k.narrow(0, 0, 1).zeros_like()], 0);
    let cross = signed
        .index_select(0, &[6usize, 5, 1, 2, 6, 3, 4, 0, 6][..])
        .reshape(&[3, 3]);
    let outer = k.unsqueeze(1) * k.unsqueeze(0);
    Tensor::eye(3, axis.dtype()) * &c + outer * (1.0 - &c) + cross * &s
}

impl Model {
    /// Each bone's absolute transform, a tree level at a time.
    fn absolutes(&self, relatives: &Tensor) -> Tensor {
        let plan = &self.posing;
        let mut posed = relatives.index_select(0, &plan.roots[..]);
        for (parents, bones) in &plan.levels {
            let children = posed
                .index_select(0, &parents[..])
                .matmul(&relatives.index_select(0, &bones[..]));
            posed = Tensor::concat(&[&posed, &children], 0);
        }
        posed.index_select(0, &plan.back[..])
    }

    /// The mesh's vertex positions (3, nverts) for parameters θ.
    fn vertices(&self, theta: &Tensor) -> Tensor {
        let extended = Tensor::concat(&[theta, &Tensor::from_vec(vec![0.0, 1.0], &[2])], 0);
        let pose = extended
            .index_select(0, &pose_index()[..])
            .reshape(&[25, 3]);
        let rotations = euler_rotations(&pose.narrow(0, 3, BONES));
        // relative = base_relative · [[R, 0], [0, 1]]
        let base = &self.base_relatives;
        let relatives = Tensor::concat(
            &[
                &base.narrow(2, 0, 3).matmul(&rotations),
                &base.narrow(2, 3, 1),
            ],
            2,
        );
        let transforms = self
            .absolutes(&relatives)
            .matmul(&self.inverse_base_absolutes);
        // pos_v = Σ_i w[v,i]·(T_i·b_v)[0:3] = Σ_(i,c) T_i[0:3, c]·(w[v,i]·b_v[c]):
        // the transforms' first three rows side by side (3, 88) times the
        // skinning table (88, nverts), one product whose θ-dependent side is
        // small.
        let mut stacked = transforms
            .narrow(1, 0, 3)
            .permute(&[0, 2, 1])
            .reshape(&[BONES * 4, 3]);
        if self.is_mirrored {
            stacked *= Tensor::from_vec(vec![-1.0, 1.0, 1.0], &[3]);
        }
        // The reference also scales R's columns by the pose's scale column,
        // which is constant ones.
        let rotation = angle_axis_rotation(&theta.narrow(0, 0, 3));
        let posed = rotation.matmul(&stacked.t()).matmul(&self.skinning);
        posed + theta.narrow(0, 3, 3).unsqueeze(1)
    }
}

impl Problem {
    /// The residuals (3, npts): coordinate j of point i at `(j, i)`, `us`
    /// shifted by `du` (2,) in the complicated variant.
    fn residuals(&self, theta: &Tensor, du: Option<&Tensor>) -> Tensor {
        let vertices = self.model.vertices(theta);
        let corner = |k: usize| vertices.index_select(1, &self.corners[k][..]);
        let hand = match (&self.us, du) {
            (Some(us), Some(du)) => {
                let u = us + du.unsqueeze(1);
                let (u0, u1) = (u.narrow(0, 0, 1), u.narrow(0, 1, 1));
                corner(0) * &u0 + corner(1) * &u1 + corner(2) * (1.0 - u0 - u1)
            }
            _ => corner(0),
        };
        &self.points - hand
    }

    /// The Jacobian (3, npts, columns), rows in the residuals' order.
    fn jacobian(&self, theta: &Tensor) -> chainrule::Result<Tensor> {
        match &self.us {
            None => func::jacfwd(|t| self.residuals(t, None), theta),
            Some(_) => {
                let inputs = Tensor::concat(&[&theta.narrow(0, 0, 2).zeros_like(), theta], 0);
                let f =
                    |q: &Tensor| self.residuals(&q.narrow(0, 2, THETAS), Some(&q.narrow(0, 0, 2)));
                func::jacfwd(f, &inputs)
            }
        }
    }
}

/// A list of non-negative integers, each below `bound`.
fn indices(v: &Value, what: &str, bound: usize) -> Result<Vec<usize>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("`{what}` must be a list of integers"))?;
    list.iter()
        .map(|x| match x.as_u64() {
            Some(i) if (i as usize) < bound => Ok(i as usize),
            _ => Err(format!(
                "`{what}` has an entry {x}, expected 0 … {}",
                bound.saturating_sub(1)
            )),
        })
        .collect()
}

/// A list of `BONES` 4×4 matrices (`[bone][row][col]`).
fn transforms(model: &Value, key: &str) -> Result<Tensor, String> {
    let list = field(model, key)?
        .as_array()
        .filter(|l| l.len() == BONES)
        .ok_or_else(|| format!("`{key}` must be a list of {BONES} 4×4 matrices"))?;
    let mut flat = Vec::with_capacity(BONES * 16);
    for m in list {
        let rows = m.as_array().filter(|r| r.len() == 4);
        let rows = rows.ok_or_else(|| format!("`{key}` must hold 4×4 matrices"))?;
        for row in rows {
            let row = numbers(row, key)?;
            if row.len() != 4 {
                return Err(format!("`{key}` must hold 4×4 matrices"));
            }
            flat.extend(row);
        }
    }
    Ok(Tensor::from_vec(flat, &[BONES, 4, 4]))
}

/// The order in which the bones are posed, decided when the input is read:
/// the roots, then each tree level below them. Bones are numbered by their
/// place in that order (their slot).
struct Posing {
    roots: Vec<usize>,
    /// Per level: the slot of each bone's parent, and the bones.
    levels: Vec<(Vec<usize>, Vec<usize>)>,
    /// The slot of each bone.
    back: Vec<usize>,
}

/// The posing order of a bone tree; parents must precede their children.
fn posing(parents: &[i64]) -> Result<Posing, String> {
    let mut depth = vec![0usize; parents.len()];
    for (bone, &p) in parents.iter().enumerate() {
        if p >= 0 {
            let p = p as usize;
            if p >= bone {
                return Err(format!("bone {bone}'s parent {p} does not precede it"));
            }
            depth[bone] = depth[p] + 1;
        }
    }
    let deepest = depth.iter().copied().max().unwrap_or(0);
    let level =
        |d: usize| -> Vec<usize> { (0..parents.len()).filter(|&b| depth[b] == d).collect() };
    let roots = level(0);
    let mut back = vec![0; parents.len()];
    let mut slots = roots.len();
    for (slot, &bone) in roots.iter().enumerate() {
        back[bone] = slot;
    }
    let mut levels = Vec::with_capacity(deepest);
    for d in 1..=deepest {
        let bones = level(d);
        let parent_slots = bones.iter().map(|&b| back[parents[b] as usize]).collect();
        for &bone in &bones {
            back[bone] = slots;
            slots += 1;
        }
        levels.push((parent_slots, bones));
    }
    Ok(Posing {
        roots,
        levels,
        back,
    })
}

fn model(data: &Value) -> Result<Model, String> {
    let model = field(data, "model")?;
    let parents: Vec<i64> = field(model, "parents")?
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_i64).collect())
        .filter(|l: &Vec<i64>| l.len() == BONES)
        .ok_or_else(|| format!("`parents` must be {BONES} integers"))?;
    let posing = posing(&parents)?;
    let base_positions = matrix(model, "base_positions")?;
    let weights = matrix(model, "weights")?;
    let nverts = base_positions.shape()[0];
    if base_positions.shape()[1] != 4 || weights.shape() != [nverts, BONES] {
        return Err(format!(
            "base_positions is {:?} and weights {:?}: expected (nverts, 4) and (nverts, {BONES})",
            base_positions.shape(),
            weights.shape()
        ));
    }
    let is_mirrored = field(model, "is_mirrored")?
        .as_bool()
        .ok_or("`is_mirrored` must be true or false")?;
    let skinning = (weights.unsqueeze(2) * base_positions.unsqueeze(1))
        .reshape(&[nverts, BONES * 4])
        .t()
        .contiguous();
    Ok(Model {
        posing,
        base_relatives: transforms(model, "base_relatives")?,
        inverse_base_absolutes: transforms(model, "inverse_base_absolutes")?,
        skinning,
        is_mirrored,
    })
}

fn problem(input: &Value) -> Result<Problem, String> {
    let data = field(input, "data")?;
    let mut model = model(data)?;
    let nverts = model.skinning.shape()[1];
    let points = matrix(data, "points")?;
    let npts = points.shape()[0];
    let points = points.t().contiguous();
    let matches = field(data, "correspondences")?;
    let us = matrix(input, "us")?;
    let (corners, us) = if us.numel() == 0 {
        (indices(matches, "correspondences", nverts)?, None)
    } else {
        let triangles = field(field(data, "model")?, "triangles")?
            .as_array()
            .ok_or("`triangles` must be a list of vertex triples")?;
        let picked = indices(matches, "correspondences", triangles.len())?;
        let mut corners = Vec::with_capacity(3 * picked.len());
        for t in picked {
            let triangle = indices(&triangles[t], "triangles", nverts)?;
            if triangle.len() != 3 {
                return Err(format!("triangle {t} has {} corners", triangle.len()));
            }
            corners.extend(triangle);
        }
        if us.shape() != [npts, 2] {
            return Err(format!("`us` is {:?}, expected [{npts}, 2]", us.shape()));
        }
        (corners, Some(us.t().contiguous()))
    };
    let per_point = if us.is_some() { 3 } else { 1 };
    if corners.len() != npts * per_point || points.shape()[0] != 3 {
        return Err(format!(
            "{npts} points of {} coordinates for {} correspondences",
            points.shape()[0],
            count_of(matches)
        ));
    }
    let (used, corners) = compact(&corners);
    model.skinning = model.skinning.index_select(1, &used[..]);
    let corners = (0..per_point)
        .map(|k| corners.iter().skip(k).step_by(per_point).copied().collect())
        .collect();
    Ok(Problem {
        model,
        points,
        corners,
        us,
    })
}

/// The vertices `corners` name, in order, and `corners` as positions in
/// that list: only those vertices are posed (a few hundred of the big
/// model's 10,000 for the smaller inputs).
fn compact(corners: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut used = corners.to_vec();
    used.sort_unstable();
    used.dedup();
    let at = |v: &usize| used.binary_search(v).expect("a used vertex");
    let renamed = corners.iter().map(at).collect();
    (used, renamed)
}

fn count_of(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

pub fn evaluate(function: &str, input: &Value, runs: Runs) -> Result<Answer, String> {
    let theta = vector(input, "theta")?;
    if theta.numel() != THETAS {
        return Err(format!(
            "`theta` has {} numbers, expected {THETAS}",
            theta.numel()
        ));
    }
    let problem = problem(input)?;
    let du = problem
        .us
        .as_ref()
        .map(|_| theta.narrow(0, 0, 2).zeros_like());
    match function {
        "objective" => measure(
            runs,
            || Ok(problem.residuals(&theta, du.as_ref())),
            |e| flat(&e.t()),
        ),
        "jacobian" => {
            let jacobian = func::jit(|x: &[Tensor]| problem.jacobian(&x[0]));
            let theta = [theta];
            measure(
                runs,
                || jacobian.call(&theta),
                // Rows 3i + j, as the eval numbers the residuals.
                |j| {
                    let columns = j.shape()[2];
                    rows(
                        &j.permute(&[1, 0, 2])
                            .reshape(&[j.numel() / columns, columns]),
                    )
                },
            )
        }
        _ => Err(unknown("ht", function)),
    }
}
