//! One table of every differentiable op; property tests run each row over
//! random shapes, broadcasting shapes and random values (f64):
//! - reverse mode against central differences (gradcheck), and the fused
//!   first-order rules against the recorded ones;
//! - forward mode (the JVP rules) against central differences, and against
//!   reverse mode (`⟨u, J v⟩` both ways); the batched JVP (`jacfwd`) against
//!   the Jacobian by reverse sweeps (`jacrev`);
//! - second order: the Hessian by forward-over-reverse against
//!   reverse-over-reverse and against central differences of the gradient;
//! - explicit graphs: the row traced into a graph, differentiated graph to
//!   graph, run on fresh inputs unoptimized and optimized, against eager
//!   values and gradients;
//! - native code: the row's gradient graph compiled (fused, and one kernel
//!   per node; f64 and f32; optimized or not) against the same graph
//!   interpreted node by node;
//! - batching: `vmap` of the row over random in_axes (some inputs shared)
//!   and a random output axis against the row run on each example, and
//!   `vmap` of its `grad`, `jvp` and `jacrev` against theirs per example.
//!
//! A new op is tested by adding its row.

use chainrule::check::{gradcheck, GradcheckOptions};
use chainrule::graph::{CompileOptions, Graph};
use chainrule::nn::Activation;
use chainrule::{
    autograd, control, func, linalg, BackwardOptions, ConvOptions, DType, Pool2d, Tensor,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Where an op is differentiable and well conditioned.
#[derive(Clone, Copy)]
enum Domain {
    Any,
    /// `[0.2, 2.2]`: log, sqrt, pow bases, divisors.
    Positive,
    /// `|x| ≥ 0.2`: kinks at zero (abs, relu), sign-dependent masks.
    AwayFromZero,
    /// `|x| < 1.2`: tan.
    Small,
    /// Values pairwise at least 0.05 apart: max/min (no ties).
    Distinct,
}

type Shapes = fn(&mut StdRng) -> Vec<Vec<usize>>;

struct Row {
    name: &'static str,
    shapes: Shapes,
    domains: &'static [Domain],
    f: fn(&[Tensor]) -> Tensor,
}

fn dims(rng: &mut StdRng, rank: usize) -> Vec<usize> {
    (0..rank).map(|_| rng.random_range(1..=4)).collect()
}

/// One tensor of rank 0 to 3.
fn one(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let r = rng.random_range(0..=3);
    vec![dims(rng, r)]
}

/// One tensor of rank 1 to 3 (for ops that take an axis).
fn one_ranked(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let r = rng.random_range(1..=3);
    vec![dims(rng, r)]
}

/// A shape and a random shape that broadcasts against it (leading axes
/// dropped, some axes set to 1), in random order.
fn broadcast_pair(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let r = rng.random_range(0..=3);
    let full = dims(rng, r);
    let drop = rng.random_range(0..=full.len());
    let small: Vec<usize> = full[drop..]
        .iter()
        .map(|&d| if rng.random_bool(0.3) { 1 } else { d })
        .collect();
    if rng.random_bool(0.5) {
        vec![full, small]
    } else {
        vec![small, full]
    }
}

fn broadcast_triple(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut v = broadcast_pair(rng);
    let third = v[rng.random_range(0..2)].clone();
    v.insert(0, third);
    v
}

fn same_pair(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let s = one(rng).remove(0);
    vec![s.clone(), s]
}

fn matmul_2d(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let (m, k, n) = (
        rng.random_range(1..=4),
        rng.random_range(1..=4),
        rng.random_range(1..=4),
    );
    vec![vec![m, k], vec![k, n]]
}

fn matmul_batched(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let (m, k, n, b) = (
        rng.random_range(1..=3),
        rng.random_range(1..=3),
        rng.random_range(1..=3),
        rng.random_range(2..=3),
    );
    match rng.random_range(0..3) {
        0 => vec![vec![b, m, k], vec![k, n]],
        1 => vec![vec![m, k], vec![b, k, n]],
        _ => vec![vec![b, 1, m, k], vec![2, k, n]],
    }
}

fn matvec(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let (m, k) = (rng.random_range(1..=4), rng.random_range(1..=4));
    if rng.random_bool(0.5) {
        vec![vec![m, k], vec![k]]
    } else {
        vec![vec![k], vec![k, m]]
    }
}

/// `x (m, k)`, `W (k, n)`, `b (n,)`.
fn affine_triple(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut shapes = matmul_2d(rng);
    shapes.push(vec![shapes[1][1]]);
    shapes
}

fn vectors(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let n = rng.random_range(1..=6);
    vec![vec![n], vec![n]]
}

fn concat_pair(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let a = vec![rng.random_range(1..=3), 3];
    let b = vec![rng.random_range(1..=3), 3];
    vec![a, b]
}

fn logits(rng: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![4, rng.random_range(2..=5)]]
}

fn vector(rng: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![rng.random_range(1..=5)]]
}

fn fixed_2x3x4(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![2, 3, 4]]
}

/// A `(4, 3)` target and a `(4, 2)` source for scatters.
fn scatter_pair(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![4, 3], vec![4, 2]]
}

fn square_3(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![3, 3]]
}

/// A system `(3, 3)` and right-hand sides `(3, 2)`.
fn system(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![3, 3], vec![3, 2]]
}

/// Batched systems whose batch axes broadcast, with one right-hand side each.
fn batched_system(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![2, 3, 3], vec![1, 3, 1]]
}

fn tall(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![4, 3]]
}

fn wide(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![3, 4]]
}

fn tall_system(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![4, 3], vec![4, 2]]
}

/// `x + c·I` on the last two axes (kept far from singular).
fn conv2d_shapes(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![2, 3, 5, 4], vec![4, 3, 2, 2], vec![4]]
}

fn grouped_conv_shapes(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![1, 4, 4, 4], vec![4, 2, 3, 3]]
}

fn conv1d_shapes(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![2, 2, 6], vec![3, 2, 3], vec![3]]
}

fn image(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![2, 2, 5, 4]]
}

fn norm_shapes(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![3, 2, 4], vec![2, 4], vec![2, 4]]
}

fn batch_norm_shapes(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![3, 2, 2, 2], vec![2], vec![2]]
}

fn attention_shapes(_: &mut StdRng) -> Vec<Vec<usize>> {
    vec![vec![2, 3, 4], vec![2, 5, 4], vec![2, 5, 2]]
}

fn shifted(x: &Tensor, c: f64) -> Tensor {
    let n = x.shape()[x.ndim() - 1];
    x + &(Tensor::eye(n, x.dtype()) * c)
}

/// A symmetric positive-definite matrix from any square one.
fn spd(x: &Tensor) -> Tensor {
    shifted(&x.matmul(&x.t()), 3.0)
}

/// `0.3·x` plus a matrix of well-separated singular (or, square, eigen)
/// values 1, 3, 5: their gradients are well conditioned.
fn separated(x: &Tensor) -> Tensor {
    let (m, n) = (x.shape()[0], x.shape()[1]);
    let mut base = vec![0.0; m * n];
    for i in 0..m.min(n) {
        base[i * n + i] = 1.0 + 2.0 * i as f64;
    }
    x * 0.3 + &Tensor::from_vec(base, &[m, n]).to_dtype(x.dtype())
}

/// The singular values and the squares of the singular vectors (their
/// signs are arbitrary), flattened into one vector.
fn svd_sign_free(a: &Tensor) -> Tensor {
    let (u, s, vh) = linalg::svd(a).unwrap();
    let flat = |t: &Tensor| t.square().reshape(&[t.numel()]);
    Tensor::concat(&[&flat(&u), &s, &flat(&vh)], 0)
}

/// An `i64` index tensor.
fn index(data: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(data.to_vec(), shape)
}

/// A scan's carry (n), its per-step inputs (k × n) and a captured weight (n × n).
fn scan_shapes(rng: &mut StdRng) -> Vec<Vec<usize>> {
    let (n, k) = (rng.random_range(1..=4), rng.random_range(1..=4));
    vec![vec![n], vec![k, n], vec![n, n]]
}

/// An RNN step over `x[1]` with the weight `x[2]` read from outside the body:
/// the final carry and every step's output.
fn scan_row(x: &[Tensor]) -> Tensor {
    let (h, ys) = control::scan(
        |h, xt| {
            let h = (x[2].matmul(&h[0]) * 0.5 + &xt[0]).tanh();
            Ok((vec![h.clone()], vec![&h * &xt[0]]))
        },
        &[x[0].clone()],
        &[x[1].clone()],
    )
    .unwrap();
    Tensor::concat(&[&h[0], &ys[0].reshape(&[ys[0].numel()])], 0)
}

/// Three steps whose update reads the step's index.
fn fori_loop_row(x: &[Tensor]) -> Tensor {
    let step = |i: &Tensor, u: &[Tensor]| {
        Ok(vec![
            u[0].sin() * 0.5 + &u[0] * &i.mul_scalar(0.1).add_scalar(0.5),
        ])
    };
    control::fori_loop(1, 4, step, &[x[0].clone()])
        .unwrap()
        .remove(0)
}

/// A while loop of two steps (a counter in the carry), bounded at four.
fn while_row(x: &[Tensor]) -> Tensor {
    let counter = Tensor::zeros(&[], x[0].dtype());
    let out = control::while_loop_bounded(
        |c| Ok(c[1].mul_scalar(-1.0).gt_scalar(-2.0)),
        |c| Ok(vec![&c[0] * 0.8 + c[0].sin() * 0.3, c[1].add_scalar(1.0)]),
        &[x[0].clone(), counter],
        4,
    );
    out.unwrap().remove(0)
}

fn last_axis(x: &Tensor) -> usize {
    x.ndim() - 1
}

use Domain::*;

fn table() -> Vec<Row> {
    vec![
        Row {
            name: "add",
            shapes: broadcast_pair,
            domains: &[Any, Any],
            f: |x| &x[0] + &x[1],
        },
        Row {
            name: "sub",
            shapes: broadcast_pair,
            domains: &[Any, Any],
            f: |x| &x[0] - &x[1],
        },
        Row {
            name: "mul",
            shapes: broadcast_pair,
            domains: &[Any, Any],
            f: |x| &x[0] * &x[1],
        },
        Row {
            name: "div",
            shapes: broadcast_pair,
            domains: &[Any, Positive],
            f: |x| &x[0] / &x[1],
        },
        Row {
            name: "pow",
            shapes: broadcast_pair,
            domains: &[Positive, Any],
            f: |x| x[0].pow(&x[1]),
        },
        Row {
            name: "maximum",
            shapes: same_pair,
            domains: &[Distinct, Distinct],
            f: |x| x[0].maximum(&x[1]),
        },
        Row {
            name: "minimum",
            shapes: broadcast_pair,
            domains: &[Distinct, Distinct],
            f: |x| x[0].minimum(&x[1]),
        },
        Row {
            name: "neg",
            shapes: one,
            domains: &[Any],
            f: |x| -&x[0],
        },
        Row {
            name: "powf",
            shapes: one,
            domains: &[Positive],
            f: |x| x[0].powf(2.7),
        },
        Row {
            name: "square",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].square(),
        },
        Row {
            name: "mul_scalar",
            shapes: one,
            domains: &[Any],
            f: |x| &x[0] * -1.5,
        },
        Row {
            name: "add_scalar",
            shapes: one,
            domains: &[Any],
            f: |x| 2.0 - &x[0],
        },
        Row {
            name: "scalar_div",
            shapes: one,
            domains: &[Positive],
            f: |x| 3.0 / &x[0],
        },
        Row {
            name: "log1p",
            shapes: one,
            domains: &[Positive],
            f: |x| x[0].log1p(),
        },
        Row {
            name: "expm1",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].expm1(),
        },
        Row {
            name: "erf",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].erf(),
        },
        Row {
            name: "softplus",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].softplus(),
        },
        Row {
            name: "rsqrt",
            shapes: one,
            domains: &[Positive],
            f: |x| x[0].rsqrt(),
        },
        Row {
            name: "reciprocal",
            shapes: one,
            domains: &[AwayFromZero],
            f: |x| x[0].reciprocal(),
        },
        Row {
            // Kinks at -0.525 and 0.675 lie 0.065 or more from every value
            // of the Distinct grid; values fall on both sides of each.
            name: "clamp",
            shapes: one,
            domains: &[Distinct],
            f: |x| x[0].clamp(-0.525, 0.675),
        },
        Row {
            // x > 0 keeps away from the branch cut along the negative x-axis.
            name: "atan2",
            shapes: broadcast_pair,
            domains: &[AwayFromZero, Positive],
            f: |x| x[0].atan2(&x[1]),
        },
        Row {
            name: "hypot",
            shapes: broadcast_pair,
            domains: &[AwayFromZero, AwayFromZero],
            f: |x| x[0].hypot(&x[1]),
        },
        Row {
            name: "exp",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].exp(),
        },
        Row {
            name: "log",
            shapes: one,
            domains: &[Positive],
            f: |x| x[0].log(),
        },
        Row {
            name: "sqrt",
            shapes: one,
            domains: &[Positive],
            f: |x| x[0].sqrt(),
        },
        Row {
            name: "abs",
            shapes: one,
            domains: &[AwayFromZero],
            f: |x| x[0].abs(),
        },
        Row {
            name: "sin",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].sin(),
        },
        Row {
            name: "cos",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].cos(),
        },
        Row {
            name: "tan",
            shapes: one,
            domains: &[Small],
            f: |x| x[0].tan(),
        },
        Row {
            name: "tanh",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].tanh(),
        },
        Row {
            name: "sigmoid",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].sigmoid(),
        },
        Row {
            name: "relu",
            shapes: one,
            domains: &[AwayFromZero],
            f: |x| x[0].relu(),
        },
        Row {
            name: "where",
            shapes: broadcast_triple,
            domains: &[AwayFromZero, Any, Any],
            f: |x| Tensor::where_(&x[0].gt_scalar(0.0), &x[1], &x[2]),
        },
        Row {
            name: "sum",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].sum(),
        },
        Row {
            name: "sum_axes",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].sum_axes(&[0, 2], false),
        },
        Row {
            name: "sum_axes_keepdim",
            shapes: one_ranked,
            domains: &[Any],
            f: |x| x[0].sum_axes(&[0], true),
        },
        Row {
            name: "mean",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].mean(),
        },
        Row {
            name: "mean_axes",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].mean_axes(&[1], false),
        },
        Row {
            name: "max",
            shapes: one,
            domains: &[Distinct],
            f: |x| x[0].max(),
        },
        Row {
            name: "min",
            shapes: one,
            domains: &[Distinct],
            f: |x| x[0].min(),
        },
        Row {
            name: "max_axes",
            shapes: one_ranked,
            domains: &[Distinct],
            f: |x| x[0].max_axes(&[last_axis(&x[0])], false),
        },
        Row {
            name: "min_axes_keepdim",
            shapes: fixed_2x3x4,
            domains: &[Distinct],
            f: |x| x[0].min_axes(&[0, 1], true),
        },
        Row {
            name: "logsumexp",
            shapes: one_ranked,
            domains: &[Any],
            f: |x| x[0].logsumexp(last_axis(&x[0]), false),
        },
        Row {
            name: "softmax",
            shapes: one_ranked,
            domains: &[Any],
            f: |x| x[0].softmax(0),
        },
        Row {
            name: "softmax_last_axis",
            shapes: one_ranked,
            domains: &[Any],
            f: |x| x[0].softmax(last_axis(&x[0])),
        },
        Row {
            name: "log_softmax",
            shapes: one_ranked,
            domains: &[Any],
            f: |x| x[0].log_softmax(last_axis(&x[0])),
        },
        Row {
            name: "matmul_2d",
            shapes: matmul_2d,
            domains: &[Any, Any],
            f: |x| x[0].matmul(&x[1]),
        },
        Row {
            name: "matmul_batched",
            shapes: matmul_batched,
            domains: &[Any, Any],
            f: |x| x[0].matmul(&x[1]),
        },
        Row {
            name: "matmul_vector",
            shapes: matvec,
            domains: &[Any, Any],
            f: |x| x[0].matmul(&x[1]),
        },
        Row {
            name: "dot",
            shapes: vectors,
            domains: &[Any, Any],
            f: |x| x[0].dot(&x[1]),
        },
        Row {
            name: "affine",
            shapes: affine_triple,
            domains: &[Any, Any, Any],
            f: |x| x[0].affine(&x[1], &x[2], None),
        },
        Row {
            // |x·W| ≤ 4·(0.2·2)² < 0.2 ≤ |b|: the kink at 0 stays away.
            name: "affine_relu",
            shapes: affine_triple,
            domains: &[Any, Any, AwayFromZero],
            f: |x| (&x[0] * 0.2).affine(&(&x[1] * 0.2), &x[2], Some(Activation::Relu)),
        },
        Row {
            name: "affine_tanh",
            shapes: affine_triple,
            domains: &[Any, Any, Any],
            f: |x| x[0].affine(&x[1], &x[2], Some(Activation::Tanh)),
        },
        Row {
            name: "affine_sigmoid",
            shapes: affine_triple,
            domains: &[Any, Any, Any],
            f: |x| x[0].affine(&x[1], &x[2], Some(Activation::Sigmoid)),
        },
        Row {
            name: "matmul_transposed",
            shapes: matmul_2d,
            domains: &[Any, Any],
            f: |x| x[1].t().matmul(&x[0].t()),
        },
        Row {
            name: "transpose",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].transpose(0, 2).sin(),
        },
        Row {
            name: "permute",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].permute(&[1, 2, 0]).exp(),
        },
        Row {
            name: "reshape",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].reshape(&[4, 6]),
        },
        Row {
            name: "reshape_of_view",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].transpose(1, 2).reshape(&[8, 3]),
        },
        Row {
            name: "broadcast_to",
            shapes: broadcast_pair,
            domains: &[Any, Any],
            f: |x| {
                let target = (&x[0].detach() + &x[1].detach()).shape().to_vec();
                x[0].broadcast_to(&target).cos()
            },
        },
        Row {
            name: "squeeze_unsqueeze",
            shapes: one_ranked,
            domains: &[Any],
            f: |x| x[0].unsqueeze(1).sin().squeeze(1),
        },
        Row {
            name: "concat",
            shapes: concat_pair,
            domains: &[Any, Any],
            f: |x| Tensor::concat(&[&x[0], &x[1]], 0),
        },
        Row {
            name: "stack",
            shapes: same_pair,
            domains: &[Any, Any],
            f: |x| Tensor::stack(&[&x[0], &x[1]], 0),
        },
        Row {
            name: "narrow",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].narrow(2, 1, 2).exp(),
        },
        Row {
            name: "pad",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].pad(1, 2, 6),
        },
        Row {
            name: "index_select",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].index_select(1, &[2, 0, 2, 1]),
        },
        Row {
            name: "gather",
            shapes: logits,
            domains: &[Any],
            f: |x| x[0].gather(1, &index(&[1, 0, 0, 0, 1, 1, 1, 0], &[4, 2])),
        },
        Row {
            name: "gather_first_axis",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].gather(0, &index(&[1; 12], &[1, 3, 4])),
        },
        Row {
            name: "scatter_add",
            shapes: scatter_pair,
            domains: &[Any, Any],
            f: |x| x[0].scatter_add(1, &index(&[0, 0, 2, 1, 1, 2, 0, 2], &[4, 2]), &x[1]),
        },
        Row {
            name: "scatter",
            shapes: scatter_pair,
            domains: &[Any, Any],
            f: |x| x[0].scatter(1, &index(&[2, 0, 1, 2, 0, 1, 2, 1], &[4, 2]), &x[1]),
        },
        Row {
            name: "index_add",
            shapes: scatter_pair,
            domains: &[Any, Any],
            f: |x| x[0].index_add(1, &[1, 1], &x[1]),
        },
        Row {
            name: "cumsum",
            shapes: one_ranked,
            domains: &[Any],
            f: |x| x[0].cumsum(-1),
        },
        Row {
            name: "sort",
            shapes: one_ranked,
            domains: &[Distinct],
            f: |x| x[0].sort(-1, false).0,
        },
        Row {
            name: "sort_descending_first_axis",
            shapes: fixed_2x3x4,
            domains: &[Distinct],
            f: |x| x[0].sort(0, true).0,
        },
        Row {
            name: "topk",
            shapes: fixed_2x3x4,
            domains: &[Distinct],
            f: |x| x[0].topk(2, 1, true).0,
        },
        Row {
            name: "cumprod",
            shapes: one_ranked,
            domains: &[Any],
            f: |x| x[0].cumprod(-1),
        },
        Row {
            name: "cumprod_first_axis",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].cumprod(0),
        },
        Row {
            name: "solve",
            shapes: system,
            domains: &[Any, Any],
            f: |x| linalg::solve(&shifted(&x[0], 4.0), &x[1]).unwrap(),
        },
        Row {
            name: "solve_broadcast_batch",
            shapes: batched_system,
            domains: &[Any, Any],
            f: |x| linalg::solve(&shifted(&x[0], 4.0), &x[1]).unwrap(),
        },
        Row {
            name: "solve_vector",
            shapes: system,
            domains: &[Any, Any],
            f: |x| linalg::solve(&shifted(&x[0], 4.0), &x[1].narrow(1, 0, 1).squeeze(1)).unwrap(),
        },
        Row {
            name: "solve_triangular_lower",
            shapes: system,
            domains: &[Any, Any],
            f: |x| linalg::solve_triangular(&shifted(&x[0], 4.0), &x[1], false, false).unwrap(),
        },
        Row {
            name: "solve_triangular_upper_unit",
            shapes: system,
            domains: &[Any, Any],
            f: |x| linalg::solve_triangular(&x[0], &x[1], true, true).unwrap(),
        },
        Row {
            name: "cholesky",
            shapes: square_3,
            domains: &[Any],
            f: |x| linalg::cholesky(&spd(&x[0])).unwrap(),
        },
        Row {
            name: "cholesky_solve",
            shapes: system,
            domains: &[Any, Any],
            f: |x| linalg::cholesky_solve(&x[1], &linalg::cholesky(&spd(&x[0])).unwrap()).unwrap(),
        },
        Row {
            name: "inv",
            shapes: square_3,
            domains: &[Any],
            f: |x| linalg::inv(&shifted(&x[0], 4.0)).unwrap(),
        },
        Row {
            name: "det",
            shapes: square_3,
            domains: &[Any],
            f: |x| linalg::det(&shifted(&x[0], 4.0)).unwrap(),
        },
        Row {
            name: "slogdet",
            shapes: square_3,
            domains: &[Any],
            f: |x| linalg::slogdet(&shifted(&x[0], -4.0)).unwrap().1,
        },
        Row {
            name: "eigh",
            shapes: square_3,
            domains: &[Any],
            // Values, and the vectors' squares (their signs are arbitrary).
            f: |x| {
                let (values, vectors) = linalg::eigh(&separated(&x[0])).unwrap();
                Tensor::concat(&[&values.unsqueeze(0), &vectors.square()], 0)
            },
        },
        Row {
            name: "qr",
            shapes: tall,
            domains: &[Any],
            f: |x| {
                let (q, r) = linalg::qr(&separated(&x[0])).unwrap();
                Tensor::concat(&[&q, &r.t()], 0)
            },
        },
        Row {
            name: "svd_tall",
            shapes: tall,
            domains: &[Any],
            f: |x| svd_sign_free(&separated(&x[0])),
        },
        Row {
            name: "svd_wide",
            shapes: wide,
            domains: &[Any],
            f: |x| svd_sign_free(&separated(&x[0])),
        },
        Row {
            name: "lstsq",
            shapes: tall_system,
            domains: &[Any, Any],
            f: |x| linalg::lstsq(&separated(&x[0]), &x[1]).unwrap(),
        },
        Row {
            name: "lstsq_min_norm",
            shapes: wide,
            domains: &[Any],
            f: |x| linalg::lstsq(&separated(&x[0]), &x[0].narrow(1, 0, 2)).unwrap(),
        },
        Row {
            name: "matrix_exp",
            shapes: square_3,
            domains: &[Any],
            f: |x| linalg::matrix_exp(&(&x[0] * 0.5)).unwrap(),
        },
        Row {
            name: "matrix_exp_squared",
            shapes: square_3,
            domains: &[Any],
            f: |x| linalg::matrix_exp(&(&x[0] * 3.0)).unwrap(),
        },
        Row {
            name: "gelu_tanh",
            shapes: one,
            domains: &[Any],
            f: |x| x[0].gelu_tanh(),
        },
        Row {
            name: "conv2d_strided_padded_dilated",
            shapes: conv2d_shapes,
            domains: &[Any, Any, Any],
            f: |x| {
                let o = ConvOptions::default()
                    .stride([2, 1])
                    .padding([1, 0])
                    .dilation([1, 2]);
                x[0].conv2d(&x[1], Some(&x[2]), o)
            },
        },
        Row {
            name: "conv2d_groups",
            shapes: grouped_conv_shapes,
            domains: &[Any, Any],
            f: |x| {
                x[0].conv2d(
                    &x[1],
                    None,
                    ConvOptions::default().padding([1, 1]).groups(2),
                )
            },
        },
        Row {
            name: "conv1d",
            shapes: conv1d_shapes,
            domains: &[Any, Any, Any],
            f: |x| {
                x[0].conv1d(
                    &x[1],
                    Some(&x[2]),
                    ConvOptions::default().stride([2]).padding([1]),
                )
            },
        },
        Row {
            name: "unfold2d",
            shapes: image,
            domains: &[Any],
            f: |x| x[0].unfold2d([2, 3], [1, 1], [1, 0], [2, 1]),
        },
        Row {
            name: "max_pool2d",
            shapes: image,
            domains: &[Distinct],
            f: |x| x[0].max_pool2d(Pool2d::new([3, 2]).stride([2, 1]).padding([1, 1])),
        },
        Row {
            name: "avg_pool2d_exclude_pad",
            shapes: image,
            domains: &[Any],
            f: |x| {
                x[0].avg_pool2d(
                    Pool2d::new([3, 3])
                        .stride([2, 2])
                        .padding([1, 1])
                        .count_include_pad(false),
                )
            },
        },
        Row {
            name: "adaptive_avg_pool2d",
            shapes: image,
            domains: &[Any],
            f: |x| x[0].adaptive_avg_pool2d([3, 3]),
        },
        Row {
            name: "layer_norm",
            shapes: norm_shapes,
            domains: &[Any, Any, Any],
            f: |x| x[0].layer_norm(&[2, 4], Some(&x[1]), Some(&x[2]), 1e-5),
        },
        Row {
            name: "batch_norm_batch_statistics",
            shapes: batch_norm_shapes,
            domains: &[Any, Any, Any],
            f: |x| x[0].batch_norm(None, None, Some(&x[1]), Some(&x[2]), 1e-5),
        },
        Row {
            name: "scaled_dot_product_attention_causal",
            shapes: attention_shapes,
            domains: &[Any, Any, Any],
            f: |x| {
                let future: Vec<bool> = (0..15).map(|p| p % 5 > p / 5 + 2).collect();
                let mask = Tensor::from_vec(future, &[3, 5]);
                Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], Some(&mask), None)
            },
        },
        Row {
            name: "einsum_matmul",
            shapes: matmul_2d,
            domains: &[Any, Any],
            f: |x| Tensor::einsum("ij,jk->ik", &[&x[0], &x[1]]),
        },
        Row {
            name: "einsum_ellipsis_broadcast",
            shapes: batched_system,
            domains: &[Any, Any],
            f: |x| Tensor::einsum("...ij,...jk->...ki", &[&x[0], &x[1]]),
        },
        Row {
            name: "einsum_diagonal_and_outer",
            shapes: system,
            domains: &[Any, Any],
            f: |x| Tensor::einsum("ii,jk->kij", &[&x[0], &x[1]]),
        },
        Row {
            name: "einsum_three_operands",
            shapes: system,
            domains: &[Any, Any],
            f: |x| Tensor::einsum("ij,jk,ik->k", &[&x[0], &x[1], &x[1]]),
        },
        Row {
            name: "cumsum_first_axis",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].cumsum(0),
        },
        Row {
            name: "flip",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].flip(&[0, -1]),
        },
        Row {
            name: "roll",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].roll(-5, 2),
        },
        Row {
            name: "tril",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].tril(1),
        },
        Row {
            name: "triu",
            shapes: logits,
            domains: &[Any],
            f: |x| x[0].triu(-1),
        },
        Row {
            name: "diagonal",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].diagonal(1),
        },
        Row {
            name: "trace",
            shapes: logits,
            domains: &[Any],
            f: |x| x[0].trace(),
        },
        Row {
            name: "diag_of_vector",
            shapes: vector,
            domains: &[Any],
            f: |x| x[0].diag(),
        },
        Row {
            name: "slice_with_steps",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| {
                use chainrule::Slice;
                x[0].slice(&[
                    (..).into(),
                    Slice::from(..).step(-2),
                    Slice::from(1..).step(2),
                ])
            },
        },
        Row {
            name: "masked_fill",
            shapes: fixed_2x3x4,
            domains: &[AwayFromZero],
            f: |x| {
                let negative = x[0].lt(&Tensor::zeros(&[], x[0].dtype()));
                x[0].masked_fill(&negative, 0.5) * &x[0]
            },
        },
        Row {
            name: "cross_entropy",
            shapes: logits,
            domains: &[Any],
            f: |x| x[0].cross_entropy_with_logits(&index(&[1, 0, 1, 1], &[4])),
        },
        Row {
            name: "norm",
            shapes: one,
            domains: &[AwayFromZero],
            f: |x| x[0].norm(),
        },
        Row {
            name: "contiguous",
            shapes: fixed_2x3x4,
            domains: &[Any],
            f: |x| x[0].transpose(0, 1).contiguous().square(),
        },
        Row {
            name: "scan",
            shapes: scan_shapes,
            domains: &[Any, Any, Any],
            f: scan_row,
        },
        Row {
            name: "fori_loop",
            shapes: one,
            domains: &[Any],
            f: fori_loop_row,
        },
        Row {
            name: "while_loop_bounded",
            shapes: one,
            domains: &[Any],
            f: while_row,
        },
    ]
}

/// Random values of `shape` inside `domain`.
fn values(rng: &mut StdRng, shape: &[usize], domain: Domain) -> Tensor {
    values_at(rng, shape, domain, 0)
}

/// [`values`] for input `input` of a row: `Distinct` inputs of a row lie on
/// interleaved grids, so no two inputs tie either.
fn values_at(rng: &mut StdRng, shape: &[usize], domain: Domain, input: usize) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = match domain {
        Any => (0..n).map(|_| rng.random_range(-2.0..2.0)).collect(),
        Positive => (0..n).map(|_| rng.random_range(0.2..2.2)).collect(),
        Small => (0..n).map(|_| rng.random_range(-1.2..1.2)).collect(),
        AwayFromZero => (0..n)
            .map(|_| {
                let m: f64 = rng.random_range(0.2..2.0);
                if rng.random_bool(0.5) {
                    m
                } else {
                    -m
                }
            })
            .collect(),
        // A shuffled grid with spacing 0.1, shifted by under 0.01: no ties
        // within a tensor; inputs 0 and 1 of a row sit on grids 0.025 apart
        // (at least 0.015 between any two of their values).
        Distinct => {
            let offset: f64 = 0.025 * (input % 2) as f64 + rng.random_range(0.0..0.01);
            let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.1 - 1.0 + offset).collect();
            for i in (1..n).rev() {
                v.swap(i, rng.random_range(0..=i));
            }
            v
        }
    };
    Tensor::from_vec(v, shape)
}

fn check_row(row: &Row, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let shapes = (row.shapes)(&mut rng);
    let inputs: Vec<Tensor> = shapes
        .iter()
        .zip(row.domains)
        .enumerate()
        .map(|(i, (s, &d))| values_at(&mut rng, s, d, i))
        .collect();
    gradcheck(row.f, &inputs, GradcheckOptions::default())
        .map_err(|e| format!("{}: shapes {:?}: {e}", row.name, shapes))?;
    recorded_rules_agree(row, &inputs)
        .map_err(|e| format!("{}: shapes {:?}: {e}", row.name, shapes))
}

/// The first-order rules run as fused kernels; under `create_graph` the same
/// rules are built from differentiable ops. Both must give one gradient.
fn recorded_rules_agree(row: &Row, inputs: &[Tensor]) -> Result<(), String> {
    let leaves: Vec<Tensor> = inputs.iter().map(|t| t.clone().requires_grad()).collect();
    let y = (row.f)(&leaves);
    let weight = Tensor::rand_uniform(y.shape(), 0.5, 1.5, 7, y.dtype());
    let z = (&y * &weight).sum();
    if !z.needs_grad() {
        return Ok(());
    }
    let refs: Vec<&Tensor> = leaves.iter().collect();
    let keep = BackwardOptions {
        retain_graph: true,
        ..Default::default()
    };
    let fused = autograd::grad_with(&[&z], &refs, &keep).map_err(|e| e.to_string())?;
    let recorded = BackwardOptions {
        create_graph: true,
        ..Default::default()
    };
    let graph = autograd::grad_with(&[&z], &refs, &recorded).map_err(|e| e.to_string())?;
    for (a, b) in fused.iter().zip(&graph) {
        for (x, y) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()) {
            if (x - y).abs() > 1e-10 * y.abs().max(1.0) {
                return Err(format!("fused rule gives {x}, recorded rule {y}"));
            }
        }
    }
    Ok(())
}

/// Inputs of one row for one seed.
fn row_inputs(row: &Row, rng: &mut StdRng) -> (Vec<Vec<usize>>, Vec<Tensor>) {
    let shapes = (row.shapes)(rng);
    let inputs = shapes
        .iter()
        .zip(row.domains)
        .enumerate()
        .map(|(i, (s, &d))| values_at(rng, s, d, i))
        .collect();
    (shapes, inputs)
}

fn close(what: &str, a: &Tensor, b: &Tensor, atol: f64, rtol: f64) -> Result<(), String> {
    if a.shape() != b.shape() {
        return Err(format!("{what}: shape {:?} vs {:?}", a.shape(), b.shape()));
    }
    for (i, (x, y)) in a.to_vec::<f64>().iter().zip(b.to_vec::<f64>()).enumerate() {
        if (x - y).abs() > atol + rtol * y.abs() {
            return Err(format!("{what}: entry {i}: {x} vs {y}"));
        }
    }
    Ok(())
}

/// `f` as a function of input `i` alone.
fn of_input<'a>(row: &Row, inputs: &'a [Tensor], i: usize) -> impl Fn(&Tensor) -> Tensor + 'a {
    let f = row.f;
    move |x: &Tensor| {
        let mut xs = inputs.to_vec();
        xs[i] = x.clone();
        f(&xs)
    }
}

/// Forward mode against central differences and against reverse mode; the
/// batched forward Jacobian against the reverse one.
fn forward_mode_agrees(row: &Row, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (shapes, inputs) = row_inputs(row, &mut rng);
    let fail = |e: String| format!("{}: shapes {:?}: {e}", row.name, shapes);
    let directions: Vec<Tensor> = inputs
        .iter()
        .map(|x| values(&mut rng, x.shape(), Any))
        .collect();
    let (y, jv) = func::jvp_n(|xs: &[Tensor]| (row.f)(xs), &inputs, &directions)
        .map_err(|e| fail(e.to_string()))?;
    close("jvp value", &y, &(row.f)(&inputs), 0.0, 0.0).map_err(fail)?;

    let h = 1e-6;
    let at = |s: f64| {
        let moved: Vec<Tensor> = inputs
            .iter()
            .zip(&directions)
            .map(|(x, v)| x + &(v * s))
            .collect();
        (row.f)(&moved)
    };
    let numeric = (at(h) - at(-h)) / (2.0 * h);
    close("jvp vs central differences", &jv, &numeric, 1e-6, 1e-5).map_err(fail)?;

    // ⟨u, J v⟩ by forward mode equals Σᵢ ⟨(Jᵀu)ᵢ, vᵢ⟩ by reverse mode.
    let u = values(&mut rng, y.shape(), Any);
    let (_, pullback) =
        func::vjp_n(|xs: &[Tensor]| (row.f)(xs), &inputs).map_err(|e| fail(e.to_string()))?;
    let cotangents = pullback.call_n(&u).map_err(|e| fail(e.to_string()))?;
    let forward = (&u * &jv).sum().item();
    let reverse: f64 = cotangents
        .iter()
        .zip(&directions)
        .map(|(g, v)| (g * v).sum().item())
        .sum();
    if (forward - reverse).abs() > 1e-10 * forward.abs().max(1.0) {
        return Err(fail(format!(
            "<u, Jv> = {forward} by forward mode, {reverse} by reverse mode"
        )));
    }

    for i in 0..inputs.len() {
        let f = of_input(row, &inputs, i);
        let jf = func::jacfwd(&f, &inputs[i]).map_err(|e| fail(e.to_string()))?;
        let jr = func::jacrev(&f, &inputs[i]).map_err(|e| fail(e.to_string()))?;
        close(
            &format!("jacfwd vs jacrev, input {i}"),
            &jf,
            &jr,
            1e-12,
            1e-10,
        )
        .map_err(fail)?;
    }
    Ok(())
}

/// The Hessian of `Σ f ⊙ w` with respect to each input, three ways.
fn hessians_agree(row: &Row, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (shapes, inputs) = row_inputs(row, &mut rng);
    let fail = |e: String| format!("{}: shapes {:?}: {e}", row.name, shapes);
    let y = (row.f)(&inputs);
    let w = values(&mut rng, y.shape(), Any);
    for i in 0..inputs.len() {
        let f = of_input(row, &inputs, i);
        let s = |x: &Tensor| (f(x) * &w).sum();
        let x = &inputs[i];
        let h_fwd = func::hessian(s, x).map_err(|e| fail(e.to_string()))?;
        let h_rev = func::hessian_rev(s, x).map_err(|e| fail(e.to_string()))?;
        close(
            &format!("hessian fwd-over-rev vs rev-over-rev, input {i}"),
            &h_fwd,
            &h_rev,
            1e-12,
            1e-10,
        )
        .map_err(fail)?;
        // Central differences of the (reverse-mode) gradient, column by column.
        let n = x.numel();
        let step = 1e-5;
        let mut numeric = Vec::with_capacity(n * n);
        let columns: Vec<Vec<f64>> = (0..n)
            .map(|j| {
                let mut e = vec![0.0; n];
                e[j] = step;
                let e = Tensor::from_vec(e, x.shape());
                let gp = func::grad(s, &(x + &e)).unwrap().to_vec::<f64>();
                let gm = func::grad(s, &(x - &e)).unwrap().to_vec::<f64>();
                gp.iter()
                    .zip(gm)
                    .map(|(p, m)| (p - m) / (2.0 * step))
                    .collect()
            })
            .collect();
        for r in 0..n {
            for col in &columns {
                numeric.push(col[r]);
            }
        }
        let numeric = Tensor::from_vec(numeric, h_fwd.shape());
        close(
            &format!("hessian vs central differences, input {i}"),
            &h_fwd,
            &numeric,
            1e-5,
            1e-5,
        )
        .map_err(fail)?;
    }
    Ok(())
}

/// `Σ f ⊙ w` of a row and its gradient by each input, in eager mode.
fn eager_weighted_sum(
    row: &Row,
    inputs: &[Tensor],
    w: &Tensor,
) -> Result<(Tensor, Vec<Tensor>), String> {
    let leaves: Vec<Tensor> = inputs.iter().map(|t| t.clone().requires_grad()).collect();
    let z = ((row.f)(&leaves) * w).sum();
    let refs: Vec<&Tensor> = leaves.iter().collect();
    let grads = if z.needs_grad() {
        autograd::grad(&[&z], &refs).map_err(|e| e.to_string())?
    } else {
        inputs.iter().map(|t| t.zeros_like()).collect()
    };
    Ok((z.detach(), grads))
}

/// `Σ f ⊙ w` traced on `traced_on` (inputs `x0`, `x1`…) and differentiated
/// graph to graph: outputs the value, then the gradient by each input.
fn weighted_sum_graph(row: &Row, traced_on: &[Tensor], w: &Tensor) -> Result<Graph, String> {
    let names = input_names(traced_on.len());
    let feeds: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(traced_on).collect();
    let graph =
        Graph::trace(&feeds, |xs| Ok(vec![((row.f)(xs) * w).sum()])).map_err(|e| e.to_string())?;
    let wrt: Vec<&str> = names.iter().map(String::as_str).collect();
    graph.gradients(0, &wrt).map_err(|e| e.to_string())
}

fn input_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("x{i}")).collect()
}

type Compare = fn(&str, &Tensor, &Tensor) -> Result<(), String>;

/// Runs the gradient graph on `inputs`, as built and optimized, and compares
/// its value and gradients with eager mode's by `same`.
fn graph_equals_eager(
    graph: &Graph,
    row: &Row,
    inputs: &[Tensor],
    w: &Tensor,
    label: &str,
    same: Compare,
) -> Result<(), String> {
    let (value, grads) = eager_weighted_sum(row, inputs, w)?;
    let names = input_names(inputs.len());
    let feeds: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(inputs).collect();
    for (kind, g) in [
        ("unoptimized", graph.clone()),
        ("optimized", graph.optimize()),
    ] {
        let out = g.compile().run(&feeds).map_err(|e| e.to_string())?;
        same(&format!("{label} {kind} graph value"), &out[0], &value)?;
        for (i, (got, want)) in out[1..].iter().zip(&grads).enumerate() {
            same(&format!("{label} {kind} graph gradient {i}"), got, want)?;
        }
    }
    Ok(())
}

fn close_graph(what: &str, a: &Tensor, b: &Tensor) -> Result<(), String> {
    close(what, a, b, 1e-12, 1e-10)
}

/// The row as an explicit graph: `Σ f ⊙ w` and its gradients, traced on one
/// set of inputs, run on another.
fn graph_mode_agrees(row: &Row, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (shapes, traced_on) = row_inputs(row, &mut rng);
    let fail = |e: String| format!("{}: shapes {:?}: {e}", row.name, shapes);
    let w = values(&mut rng, (row.f)(&traced_on).shape(), Any);
    let graph = weighted_sum_graph(row, &traced_on, &w).map_err(fail)?;
    // fresh inputs of the same shapes and domains
    let fresh: Vec<Tensor> = shapes
        .iter()
        .zip(row.domains)
        .enumerate()
        .map(|(i, (s, &d))| values_at(&mut rng, s, d, i))
        .collect();
    graph_equals_eager(&graph, row, &fresh, &w, "fresh inputs:", close_graph).map_err(fail)
}

/// Equal to 1e-9 of the largest finite magnitude, or the same non-finite
/// value (NaN, ±inf), entry by entry.
fn same_values(what: &str, a: &Tensor, b: &Tensor) -> Result<(), String> {
    within(what, a, b, 1e-9)
}

/// Equal to `tol` of the largest finite magnitude, or the same non-finite
/// value, entry by entry.
fn within(what: &str, a: &Tensor, b: &Tensor, tol: f64) -> Result<(), String> {
    if a.shape() != b.shape() || a.dtype() != b.dtype() {
        return Err(format!(
            "{what}: {:?} {:?} vs {:?} {:?}",
            a.dtype(),
            a.shape(),
            b.dtype(),
            b.shape()
        ));
    }
    let (a, b) = (a.to_vec::<f64>(), b.to_vec::<f64>());
    let scale = b
        .iter()
        .filter(|v| v.is_finite())
        .fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same = if y.is_finite() {
            (x - y).abs() <= tol * scale
        } else {
            x.is_nan() && y.is_nan() || x == y
        };
        if !same {
            return Err(format!("{what}: entry {i}: {x} vs {y}"));
        }
    }
    Ok(())
}

/// The row's gradient graph compiled to native code (fused, and one kernel
/// per node; optimized or not), in f64 and in f32, equals the same graph
/// interpreted node by node: values and gradients.
fn native_code_agrees(row: &Row, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (shapes, inputs) = row_inputs(row, &mut rng);
    let fail = |e: String| format!("{}: shapes {:?}: {e}", row.name, shapes);
    for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-4)] {
        let inputs: Vec<Tensor> = inputs.iter().map(|t| t.to_dtype(dtype)).collect();
        let w = values(&mut rng, (row.f)(&inputs).shape(), Any).to_dtype(dtype);
        let graph = weighted_sum_graph(row, &inputs, &w).map_err(fail)?;
        let names = input_names(inputs.len());
        let feeds: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(&inputs).collect();
        for (kind, g) in [
            ("unoptimized", graph.clone()),
            ("optimized", graph.optimize()),
        ] {
            for fuse in [true, false] {
                let exe = g
                    .clone()
                    .compile_with(CompileOptions { native: true, fuse });
                if let Some(why) = exe.not_native() {
                    return Err(fail(format!("not compiled: {why}")));
                }
                let native = exe.run(&feeds).map_err(|e| fail(e.to_string()))?;
                let interpreted = exe
                    .run_interpreted(&feeds)
                    .map_err(|e| fail(e.to_string()))?;
                for (i, (a, b)) in native.iter().zip(&interpreted).enumerate() {
                    let what = format!("{dtype:?} {kind} fuse={fuse} output {i}");
                    within(&what, a, b, tol).map_err(fail)?;
                }
            }
        }
    }
    Ok(())
}

/// A change of a row's inputs (a scale, a sign, a shift).
type Move = fn(&Tensor) -> Tensor;

/// A graph traced on one input must stay a function of its inputs: nothing
/// computed from them may be frozen into it. Traced once, then run on the
/// inputs scaled by 100 and by 1e-3, negated and shifted by 50, each row
/// (with its gradients, optimized or not) equals eager mode.
fn graph_follows_rescaled_inputs(row: &Row, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (shapes, traced_on) = row_inputs(row, &mut rng);
    let fail = |e: String| format!("{}: shapes {:?}: {e}", row.name, shapes);
    let w = Tensor::ones((row.f)(&traced_on).shape(), traced_on[0].dtype());
    let graph = weighted_sum_graph(row, &traced_on, &w).map_err(fail)?;
    let transforms: [(&str, Move); 4] = [
        ("x100", |x| x * 100.0),
        ("x1e-3", |x| x * 1e-3),
        ("negated", |x| -x),
        ("+50", |x| x + 50.0),
    ];
    for (label, move_input) in transforms {
        let moved: Vec<Tensor> = traced_on.iter().map(move_input).collect();
        graph_equals_eager(&graph, row, &moved, &w, label, same_values).map_err(fail)?;
    }
    Ok(())
}

/// A batch of a row's inputs for `vmap`: each input mapped along a random
/// axis (at least one mapped) or shared, and each example's inputs.
struct Batch {
    in_axes: Vec<Option<usize>>,
    batched: Vec<Tensor>,
    examples: Vec<Vec<Tensor>>,
}

fn batch_of(row: &Row, rng: &mut StdRng) -> (Vec<Vec<usize>>, Batch) {
    let shapes = (row.shapes)(rng);
    let size = rng.random_range(1..=3);
    let n = shapes.len();
    let must = rng.random_range(0..n);
    let in_axes: Vec<Option<usize>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| (i == must || rng.random_bool(0.6)).then(|| rng.random_range(0..=s.len())))
        .collect();
    let mut batched = Vec::with_capacity(n);
    let mut per_input: Vec<Vec<Tensor>> = Vec::with_capacity(n);
    for (i, ((s, &d), axis)) in shapes.iter().zip(row.domains).zip(&in_axes).enumerate() {
        match axis {
            Some(a) => {
                let xs: Vec<Tensor> = (0..size).map(|_| values_at(rng, s, d, i)).collect();
                let refs: Vec<&Tensor> = xs.iter().collect();
                batched.push(Tensor::stack(&refs, *a));
                per_input.push(xs);
            }
            None => {
                let x = values_at(rng, s, d, i);
                batched.push(x.clone());
                per_input.push(vec![x; size]);
            }
        }
    }
    let examples = (0..size)
        .map(|b| per_input.iter().map(|xs| xs[b].clone()).collect())
        .collect();
    let batch = Batch {
        in_axes,
        batched,
        examples,
    };
    (shapes, batch)
}

fn stacked(ts: &[Tensor], axis: usize) -> Tensor {
    let refs: Vec<&Tensor> = ts.iter().collect();
    Tensor::stack(&refs, axis)
}

/// `xs` with input `i` replaced by `x`.
fn with(xs: &[Tensor], i: usize, x: &Tensor) -> Vec<Tensor> {
    let mut ys = xs.to_vec();
    ys[i] = x.clone();
    ys
}

/// `vmap(g)` over the batch equals `g` on each example, stacked.
fn mapped_equals_looped<G>(what: &str, g: G, b: &Batch) -> Result<(), String>
where
    G: Fn(&[Tensor]) -> Result<Tensor, chainrule::Error>,
{
    let mapped = func::vmap(&g, &b.in_axes, 0)(&b.batched).map_err(|e| e.to_string())?;
    let looped = b
        .examples
        .iter()
        .map(|xs| g(xs))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    close(what, &mapped, &stacked(&looped, 0), 1e-12, 1e-10)
}

/// `vmap(f)` equals `f` on each example stacked, in value (along a random
/// output axis), and composed with `grad`, `jvp` and `jacrev`.
fn vmap_agrees(row: &Row, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (shapes, b) = batch_of(row, &mut rng);
    let fail = |e: String| {
        format!(
            "{}: shapes {:?} in_axes {:?}: {e}",
            row.name, shapes, b.in_axes
        )
    };
    let err = |e: chainrule::Error| fail(e.to_string());
    let f = row.f;
    let out_rank = f(&b.examples[0]).ndim();
    let out_axis = rng.random_range(0..=out_rank);
    let mapped =
        func::vmap(|xs: &[Tensor]| f(xs), &b.in_axes, out_axis)(&b.batched).map_err(err)?;
    let looped: Vec<Tensor> = b.examples.iter().map(|xs| f(xs)).collect();
    close(
        "vmap value",
        &mapped,
        &stacked(&looped, out_axis),
        1e-12,
        1e-12,
    )
    .map_err(fail)?;

    // ∇ of Σ f ⊙ w by each input, per example.
    let w = values(&mut rng, looped[0].shape(), Any);
    for i in 0..shapes.len() {
        let g = |xs: &[Tensor]| func::grad(|x: &Tensor| (f(&with(xs, i, x)) * &w).sum(), &xs[i]);
        mapped_equals_looped(&format!("vmap of grad, input {i}"), g, &b).map_err(fail)?;
    }
    // J v with a shared direction per input.
    let vs: Vec<Tensor> = shapes.iter().map(|s| values(&mut rng, s, Any)).collect();
    let jv = |xs: &[Tensor]| Ok::<_, chainrule::Error>(func::jvp_n(f, xs, &vs)?.1);
    mapped_equals_looped("vmap of jvp", jv, &b).map_err(fail)?;
    // The Jacobian by the first input.
    let jac = |xs: &[Tensor]| func::jacrev(|x: &Tensor| f(&with(xs, 0, x)), &xs[0]);
    mapped_equals_looped("vmap of jacrev", jac, &b).map_err(fail)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn every_op_batches_under_vmap(seed in any::<u64>()) {
        for row in table() {
            if let Err(e) = vmap_agrees(&row, seed) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn every_traced_op_follows_its_inputs_to_other_scales(seed in any::<u64>()) {
        for row in table() {
            if let Err(e) = graph_follows_rescaled_inputs(&row, seed) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn every_op_compiles_to_native_code_that_equals_the_interpreter(seed in any::<u64>()) {
        for row in table() {
            if let Err(e) = native_code_agrees(&row, seed) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn every_op_runs_as_a_differentiated_optimized_graph(seed in any::<u64>()) {
        for row in table() {
            if let Err(e) = graph_mode_agrees(&row, seed) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn every_op_agrees_across_modes(seed in any::<u64>()) {
        for row in table() {
            if let Err(e) = forward_mode_agrees(&row, seed) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn every_op_has_consistent_hessians(seed in any::<u64>()) {
        for row in table() {
            if let Err(e) = hessians_agree(&row, seed) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn every_op_matches_central_differences(seed in any::<u64>()) {
        for row in table() {
            if let Err(e) = check_row(&row, seed) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

#[test]
fn table_rows_have_a_domain_per_input() {
    let mut rng = StdRng::seed_from_u64(0);
    for row in table() {
        assert_eq!(
            (row.shapes)(&mut rng).len(),
            row.domains.len(),
            "{}",
            row.name
        );
    }
}

/// The checker itself discriminates: a function whose autodiff gradient is
/// wrong (half the dependence is detached) must fail gradcheck.
#[test]
fn gradcheck_rejects_a_wrong_gradient() {
    let x = Tensor::from_vec(vec![0.5f64, -1.0, 2.0], &[3]);
    let wrong = gradcheck(
        |xs| &xs[0] * &xs[0].detach(),
        &[x],
        GradcheckOptions::default(),
    );
    assert!(wrong.is_err());
}
