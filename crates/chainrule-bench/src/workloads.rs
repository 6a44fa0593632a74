//! Each workload as one "call": build the graph from the inputs, evaluate the
//! objective and its gradient. Inputs are created once, before timing.

use crate::data::SplitMix64;
use chainrule::forward::DualLevel;
use chainrule::graph::{CompileOptions, Executable, Graph};
use chainrule::nn::{self, Module, Parameters};
use chainrule::optim::{Optimizer, Sgd};
use chainrule::Tensor;
use chainrule::{autograd, control, func, linalg, DType};
use chainrule::{ConvOptions, Pool2d};

pub const MLP_DIMS: [usize; 4] = [784, 512, 256, 10];
pub const MLP_BATCH: usize = 128;
pub const MLP_LR: f64 = 0.01;

/// The (value, gradient sum) of a call, computed only when asked for: the
/// harness asks once, outside the timed calls, as the peers' harnesses do.
pub type Summary = Box<dyn FnOnce() -> (f64, f64)>;

/// A prepared case: `step` runs one call and returns its summary.
pub struct Case {
    pub step: Box<dyn FnMut() -> Summary>,
    /// For the ADBench workloads: the objective alone, timed separately for
    /// the derivative/objective ratio.
    pub objective_only: Option<Box<dyn FnMut()>>,
    pub impl_desc: &'static str,
    /// For compiled modes: the time to trace, differentiate, optimize and
    /// compile, in milliseconds (outside the timed calls).
    pub compile_ms: Option<f64>,
}

fn grad_sum(gs: &[Tensor]) -> f64 {
    gs.iter().map(|g| g.sum().item()).sum()
}

pub fn ex1(n: usize) -> Case {
    let mut g = SplitMix64::new();
    let x = Tensor::from_vec(g.f32s(n, 1.0), &[n]);
    let w = Tensor::from_vec(g.f32s(n, 1.0), &[n]).requires_grad();
    let y = Tensor::scalar(g.f32s(1, 1.0)[0]);
    Case {
        step: Box::new(move || {
            let z = (x.dot(&w) - &y).square();
            let gw = autograd::grad(&[&z], &[&w]).unwrap();
            Box::new(move || (z.item(), grad_sum(&gw)))
        }),
        objective_only: None,
        impl_desc: "eager reverse mode, autograd::grad",
        compile_ms: None,
    }
}

pub fn ex2(m: usize, n: usize) -> Case {
    let mut g = SplitMix64::new();
    let x = Tensor::from_vec(g.f32s(m * n, 1.0), &[m, n]);
    let w = Tensor::from_vec(g.f32s(n, 1.0), &[n]).requires_grad();
    let y = Tensor::from_vec(g.f32s(m, 1.0), &[m]);
    Case {
        step: Box::new(move || {
            let z = (x.matmul(&w) - &y).square().sum();
            let gw = autograd::grad(&[&z], &[&w]).unwrap();
            Box::new(move || (z.item(), grad_sum(&gw)))
        }),
        objective_only: None,
        impl_desc: "eager reverse mode, autograd::grad",
        compile_ms: None,
    }
}

pub fn chain(k: usize) -> Case {
    let x = Tensor::scalar(SplitMix64::new().f32s(1, 1.0)[0]).requires_grad();
    Case {
        step: Box::new(move || {
            let mut u = x.clone();
            for _ in 0..k {
                u = u.sin() * 0.5 + u * 0.5;
            }
            x.zero_grad();
            u.backward().unwrap();
            let g = x.grad().unwrap();
            Box::new(move || (u.item(), g.item()))
        }),
        objective_only: None,
        impl_desc: "0-d tensors, eager reverse mode, Tensor::backward",
        compile_ms: None,
    }
}

/// How a graph mode runs its graph: interpreted node by node (`graph`), or
/// lowered to native code (`jit`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Interpreted,
    Native,
}

impl Run {
    pub fn of(mode: &str) -> Run {
        if mode.starts_with("jit") {
            Run::Native
        } else {
            Run::Interpreted
        }
    }

    fn options(self) -> CompileOptions {
        CompileOptions {
            native: self == Run::Native,
            fuse: true,
        }
    }

    fn desc(self, graph: &'static str, jit: &'static str) -> &'static str {
        match self {
            Run::Interpreted => graph,
            Run::Native => jit,
        }
    }
}

/// Times `build`, in milliseconds.
fn timed<T>(build: impl FnOnce() -> T) -> (T, f64) {
    let t = std::time::Instant::now();
    let v = build();
    (v, t.elapsed().as_secs_f64() * 1e3)
}

/// A graph traced from `f` on `inputs`, differentiated with respect to
/// `wrt`, optimized and compiled (interpreted or native), and the time all
/// that took.
fn compiled(
    inputs: &[(&str, &Tensor)],
    wrt: &[&str],
    run: Run,
    f: impl FnOnce(&[Tensor]) -> Tensor,
) -> (Executable, f64) {
    timed(|| {
        Graph::trace(inputs, |t| Ok(vec![f(t)]))
            .and_then(|g| g.gradients(0, wrt))
            .map(|g| g.optimize().compile_with(run.options()))
            .expect("the workload traces")
    })
}

/// A graph traced from `f` (which differentiates inside: a Jacobian, a
/// Hessian), optimized and compiled to native code.
fn traced(inputs: &[(&str, &Tensor)], f: impl FnOnce(&[Tensor]) -> Tensor) -> (Executable, f64) {
    timed(|| {
        Graph::trace(inputs, |t| Ok(vec![f(t)]))
            .map(|g| g.optimize().compile())
            .expect("the workload traces")
    })
}

/// What the graph modes run, interpreted and native.
struct Desc(&'static str, &'static str);

impl Desc {
    fn pick(&self, run: Run) -> &'static str {
        run.desc(self.0, self.1)
    }
}

const GRAPH_DESC: Desc = Desc(
    "graph (traced, gradients graph-to-graph, optimized), interpreted node by node",
    "graph (traced, gradients graph-to-graph, optimized) compiled to native code (Cranelift), fused",
);

/// ex1 through a compiled graph: value and gradient per run.
pub fn ex1_graph(n: usize, run: Run) -> Case {
    let mut g = SplitMix64::new();
    let x = Tensor::from_vec(g.f32s(n, 1.0), &[n]);
    let w = Tensor::from_vec(g.f32s(n, 1.0), &[n]);
    let y = Tensor::scalar(g.f32s(1, 1.0)[0]);
    let (exe, compile_ms) = compiled(&[("x", &x), ("w", &w), ("y", &y)], &["w"], run, |t| {
        (t[0].dot(&t[1]) - &t[2]).square()
    });
    Case {
        step: Box::new(move || {
            let out = exe.run(&[("x", &x), ("w", &w), ("y", &y)]).unwrap();
            Box::new(move || (out[0].item(), grad_sum(&out[1..])))
        }),
        objective_only: None,
        impl_desc: GRAPH_DESC.pick(run),
        compile_ms: Some(compile_ms),
    }
}

/// ex2 through a compiled graph.
pub fn ex2_graph(m: usize, n: usize, run: Run) -> Case {
    let mut g = SplitMix64::new();
    let x = Tensor::from_vec(g.f32s(m * n, 1.0), &[m, n]);
    let w = Tensor::from_vec(g.f32s(n, 1.0), &[n]);
    let y = Tensor::from_vec(g.f32s(m, 1.0), &[m]);
    let (exe, compile_ms) = compiled(&[("X", &x), ("w", &w), ("y", &y)], &["w"], run, |t| {
        (t[0].matmul(&t[1]) - &t[2]).square().sum()
    });
    Case {
        step: Box::new(move || {
            let out = exe.run(&[("X", &x), ("w", &w), ("y", &y)]).unwrap();
            Box::new(move || (out[0].item(), grad_sum(&out[1..])))
        }),
        objective_only: None,
        impl_desc: GRAPH_DESC.pick(run),
        compile_ms: Some(compile_ms),
    }
}

/// The MLP step through a compiled graph: the graph takes the batch and the
/// parameters and returns the loss, the gradients and the updated
/// parameters (SGD inside the graph). `planned = false` keeps every
/// intermediate to the end of the run, to measure what the plan saves.
pub fn mlp_graph(planned: bool, run: Run) -> Case {
    let mut g = SplitMix64::new();
    let x = Tensor::from_vec(
        g.f32s(MLP_BATCH * MLP_DIMS[0], 1.0),
        &[MLP_BATCH, MLP_DIMS[0]],
    );
    let labels = g.labels(MLP_BATCH, 10);
    let mut params: Vec<Tensor> = Vec::new();
    for l in 0..3 {
        let (fi, fo) = (MLP_DIMS[l], MLP_DIMS[l + 1]);
        let s = 1.0 / (fi as f64).sqrt();
        params.push(Tensor::from_vec(g.f32s(fi * fo, s), &[fi, fo]));
        params.push(Tensor::from_vec(g.f32s(fo, s), &[fo]));
    }
    let names = ["x", "w1", "b1", "w2", "b2", "w3", "b3"];
    let feeds: Vec<(&str, &Tensor)> = names
        .iter()
        .copied()
        .zip(std::iter::once(&x).chain(&params))
        .collect();
    let loss_of = |t: &[Tensor]| {
        let mut h = t[0].clone();
        for l in 0..3 {
            h = h.matmul(&t[1 + 2 * l]) + &t[2 + 2 * l];
            if l < 2 {
                h = h.relu();
            }
        }
        nn::cross_entropy_loss(&h, &labels).unwrap()
    };
    // outputs: the loss, the six gradients, the six updated parameters
    let (exe, compile_ms) = timed(|| {
        Graph::trace(&feeds, |t| Ok(vec![loss_of(t)]))
            .and_then(|g| g.gradients(0, &names[1..]))
            .and_then(|g| {
                g.map_outputs(|inputs, o| {
                    let mut outs = o.to_vec();
                    for (p, gr) in inputs[1..].iter().zip(&o[1..]) {
                        outs.push(p - &(gr * MLP_LR));
                    }
                    Ok(outs)
                })
            })
            .map(|g| g.optimize().compile_with(run.options()))
            .expect("the mlp traces")
    });
    Case {
        step: Box::new(move || {
            let feeds: Vec<(&str, &Tensor)> = names
                .iter()
                .copied()
                .zip(std::iter::once(&x).chain(&params))
                .collect();
            let out = if planned {
                exe.run(&feeds)
            } else {
                exe.run_unplanned(&feeds)
            }
            .unwrap();
            params = out[7..].to_vec();
            Box::new(move || (out[0].item(), grad_sum(&out[1..7])))
        }),
        objective_only: None,
        impl_desc: match (planned, run) {
            (true, Run::Interpreted) => "graph: forward, gradients and SGD update in one traced, optimized graph, interpreted",
            (true, Run::Native) => "the same graph compiled to native code (Cranelift): elementwise chains fused, matmuls through the GEMM",
            (false, _) => "the same graph interpreted without its memory plan (every intermediate kept)",
        },
        compile_ms: Some(compile_ms),
    }
}

/// The chain as one loop (`control::fori_loop`), its value and derivative
/// by reverse mode (`jit-reverse`) or forward mode (`jit-forward`) traced
/// into a graph and compiled: the loops run as native loops.
pub fn chain_jit(k: usize, mode: &str) -> Case {
    let x = Tensor::scalar(SplitMix64::new().f32s(1, 1.0)[0]);
    let forward = mode == "jit-forward";
    let chain = move |x: &Tensor| {
        let step = |_: &Tensor, u: &[Tensor]| Ok(vec![u[0].sin() * 0.5 + &u[0] * 0.5]);
        chainrule::control::fori_loop(0, k, step, std::slice::from_ref(x))
            .unwrap()
            .remove(0)
    };
    let (exe, compile_ms) = traced(&[("x", &x)], |t| {
        let (value, derivative) = if forward {
            func::jvp(chain, &t[0], &Tensor::scalar(1.0f32)).unwrap()
        } else {
            func::value_and_grad(chain, &t[0]).unwrap()
        };
        Tensor::stack(&[&value, &derivative], 0)
    });
    Case {
        step: Box::new(move || {
            let out = exe.run(&[("x", &x)]).unwrap().remove(0).to_vec::<f32>();
            Box::new(move || (out[0] as f64, out[1] as f64))
        }),
        objective_only: None,
        impl_desc: if forward {
            "jvp of fori_loop traced into a graph, compiled: one native loop over the value and its tangent"
        } else {
            "value_and_grad of fori_loop traced into a graph, compiled: a native loop keeping the carries, then one backwards"
        },
        compile_ms: Some(compile_ms),
    }
}

/// The chain by forward mode: one pass carrying the tangent, nothing recorded.
pub fn chain_forward(k: usize) -> Case {
    let x = Tensor::scalar(SplitMix64::new().f32s(1, 1.0)[0]);
    let one = Tensor::scalar(1.0f32);
    Case {
        step: Box::new(move || {
            let level = DualLevel::new();
            let mut u = level.make_dual(&x, &one).unwrap();
            for _ in 0..k {
                u = u.sin() * 0.5 + u * 0.5;
            }
            let (value, tangent) = level.unpack(&u);
            Box::new(move || (value.item(), tangent.unwrap().item()))
        }),
        objective_only: None,
        impl_desc: "0-d tensors, forward mode (DualLevel::make_dual)",
        compile_ms: None,
    }
}

pub const JAC_HIDDEN: usize = 256;

/// The `jac` workload's `x`, `W1`, `W2`, `W3` (WORKLOADS.md's draw order).
fn jac_inputs(a: usize, b: usize) -> (Tensor, Tensor, Tensor, Tensor) {
    let mut g = SplitMix64::new();
    let h = JAC_HIDDEN;
    let x = Tensor::from_vec(g.f32s(a, 1.0), &[a]);
    let w1 = Tensor::from_vec(g.f32s(h * a, 1.0 / (a as f64).sqrt()), &[h, a]);
    let w2 = Tensor::from_vec(g.f32s(h * h, 1.0 / (h as f64).sqrt()), &[h, h]);
    let w3 = Tensor::from_vec(g.f32s(b * h, 1.0 / (h as f64).sqrt()), &[b, h]);
    (x, w1, w2, w3)
}

/// `f(x) = tanh(W3 tanh(W2 tanh(W1 x)))`, its Jacobian by `jacfwd` (forward)
/// or `jacrev` (reverse).
pub fn jac(a: usize, b: usize, mode: &str) -> Case {
    let (x, w1, w2, w3) = jac_inputs(a, b);
    let mode = mode.to_string();
    let impl_desc = match mode.as_str() {
        "forward" => "func::jacfwd (vmap of jvp: one forward pass of a directions)",
        "reverse-batched" => "func::jacrev (vmap of the pullback: one batched reverse sweep)",
        _ => "func::vjp, then one pullback sweep per output row",
    };
    Case {
        step: Box::new(move || {
            let f = |x: &Tensor| w3.matmul(&w2.matmul(&w1.matmul(x).tanh()).tanh()).tanh();
            let j = match mode.as_str() {
                "forward" => func::jacfwd(f, &x).unwrap(),
                "reverse-batched" => func::jacrev(f, &x).unwrap(),
                _ => jacobian_by_rows(f, &x),
            };
            let (x, w1, w2, w3) = (x.clone(), w1.clone(), w2.clone(), w3.clone());
            Box::new(move || {
                let y = w3.matmul(&w2.matmul(&w1.matmul(&x).tanh()).tanh()).tanh();
                (y.sum().item(), j.sum().item())
            })
        }),
        objective_only: None,
        impl_desc,
        compile_ms: None,
    }
}

/// The Jacobian traced into a graph (through `jacfwd`, the row-by-row
/// pullbacks, or `jacrev`), optimized and compiled to native code.
pub fn jac_jit(a: usize, b: usize, mode: &str) -> Case {
    let (x, w1, w2, w3) = jac_inputs(a, b);
    let feeds = [("x", &x), ("w1", &w1), ("w2", &w2), ("w3", &w3)];
    let eager = mode.trim_start_matches("jit-").to_string();
    let (exe, compile_ms) = traced(&feeds, |t| {
        let f = |x: &Tensor| {
            t[3].matmul(&t[2].matmul(&t[1].matmul(x).tanh()).tanh())
                .tanh()
        };
        match eager.as_str() {
            "forward" => func::jacfwd(f, &t[0]).unwrap(),
            "reverse-batched" => func::jacrev(f, &t[0]).unwrap(),
            _ => jacobian_by_scan(f, &t[0]),
        }
    });
    Case {
        step: Box::new(move || {
            let j = exe.run(&[("x", &x), ("w1", &w1), ("w2", &w2), ("w3", &w3)]).unwrap();
            let (x, w1, w2, w3) = (x.clone(), w1.clone(), w2.clone(), w3.clone());
            Box::new(move || {
                let y = w3.matmul(&w2.matmul(&w1.matmul(&x).tanh()).tanh()).tanh();
                (y.sum().item(), j[0].sum().item())
            })
        }),
        objective_only: None,
        impl_desc: "the Jacobian (jacfwd, jacrev or row pullbacks) traced into a graph, compiled to native code",
        compile_ms: Some(compile_ms),
    }
}

/// The Hessian traced into a graph (through `hessian` or `hessian_rev`),
/// optimized and compiled to native code.
pub fn hessian_jit(n: usize, mode: &str) -> Case {
    let x = Tensor::from_vec(SplitMix64::new().f64s(n, 1.0), &[n]);
    let forward = mode == "jit-forward-over-reverse";
    let (exe, compile_ms) = traced(&[("x", &x)], |t| {
        if forward {
            func::hessian(rosenbrock, &t[0])
        } else {
            func::hessian_rev(rosenbrock, &t[0])
        }
        .unwrap()
    });
    Case {
        step: Box::new(move || {
            let h = exe.run(&[("x", &x)]).unwrap();
            let x = x.clone();
            Box::new(move || (rosenbrock(&x).item(), h[0].sum().item()))
        }),
        objective_only: None,
        impl_desc:
            "the Hessian (hessian or hessian_rev) traced into a graph, compiled to native code",
        compile_ms: Some(compile_ms),
    }
}

/// The Jacobian of `f` at a vector `x` by one reverse sweep per output row
/// (the peers' `reverse` mode).
fn jacobian_by_rows(f: impl Fn(&Tensor) -> Tensor, x: &Tensor) -> Tensor {
    let (y, pullback) = func::vjp(f, x).unwrap();
    let m = y.numel();
    let eye = Tensor::eye(m, y.dtype());
    let rows: Vec<Tensor> = (0..m)
        .map(|i| {
            pullback
                .call(&eye.narrow(0, i, 1).reshape(y.shape()))
                .unwrap()
        })
        .collect();
    let refs: Vec<&Tensor> = rows.iter().collect();
    Tensor::stack(&refs, 0)
}

/// The Jacobian one row at a time as a loop over the rows of the identity
/// (one pullback traced once, as JAX's `lax.map` over `vjp`).
fn jacobian_by_scan(f: impl Fn(&Tensor) -> Tensor, x: &Tensor) -> Tensor {
    let (y, pullback) = func::vjp(f, x).unwrap();
    let eye = Tensor::eye(y.numel(), y.dtype());
    let (_, rows) = control::scan(
        |c, e| Ok((c.to_vec(), vec![pullback.call(&e[0].reshape(y.shape()))?])),
        &[Tensor::zeros(&[], y.dtype())],
        &[eye],
    )
    .unwrap();
    rows[0].clone()
}

/// The extended Rosenbrock function of WORKLOADS.md.
pub fn rosenbrock(x: &Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.narrow(0, 0, n - 1);
    let tail = x.narrow(0, 1, n - 1);
    ((tail - head.square()).square() * 100.0 + (1.0 - &head).square()).sum()
}

pub fn hessian(n: usize, mode: &str) -> Case {
    let x = Tensor::from_vec(SplitMix64::new().f64s(n, 1.0), &[n]);
    let forward = mode == "forward-over-reverse";
    Case {
        step: Box::new(move || {
            let h = if forward {
                func::hessian(rosenbrock, &x)
            } else {
                func::hessian_rev(rosenbrock, &x)
            }
            .unwrap();
            let x = x.clone();
            Box::new(move || (rosenbrock(&x).item(), h.sum().item()))
        }),
        objective_only: None,
        impl_desc: if forward {
            "func::hessian (jacfwd of grad: one batched forward pass over the reverse sweep)"
        } else {
            "func::hessian_rev (jacrev of grad: n reverse sweeps over the recorded gradient)"
        },
        compile_ms: None,
    }
}

/// A factorization and its gradient in f64 (`bench/linalg.py` is PyTorch's
/// side): `solve-n`, `sum(solve(A, b))` with `A = X + 2√n I` and its
/// gradient in `A` and `b` (draws: X (n×n), b (n)); `cholesky-n`,
/// `sum(cholesky(S))` with `S = X Xᵀ / n + I` and its gradient in `S`
/// (draws: X (n×n)).
pub fn linalg(size: &str) -> Case {
    let (op, n) = size.split_once('-').expect("op-n");
    let n: usize = n.parse().expect("a size");
    let mut g = SplitMix64::new();
    let x = Tensor::from_vec(g.f64s(n * n, 1.0), &[n, n]);
    let solve = op == "solve";
    let inputs = if solve {
        let shift = Tensor::eye(n, DType::F64) * (2.0 * (n as f64).sqrt());
        vec![&x + &shift, Tensor::from_vec(g.f64s(n, 1.0), &[n])]
    } else {
        vec![x.matmul(&x.t()) / n as f64 + Tensor::eye(n, DType::F64)]
    };
    let objective = move |t: &[Tensor]| match solve {
        true => linalg::solve(&t[0], &t[1]).unwrap().sum(),
        false => linalg::cholesky(&t[0]).unwrap().sum(),
    };
    Case {
        step: Box::new(move || {
            let (value, grads) = func::value_and_grad_n(objective, &inputs).unwrap();
            Box::new(move || (value.item(), grad_sum(&grads)))
        }),
        objective_only: None,
        impl_desc: if solve {
            "linalg::solve (faer LU) and its VJP: a transposed solve and an outer product"
        } else {
            "linalg::cholesky (faer LLᵀ) and its VJP: two triangular solves"
        },
        compile_ms: None,
    }
}

/// One SGD step of the 784-512-256-10 MLP, with the library's layers
/// (`nn::Linear`, `nn::Relu` in an `nn::Sequential`), loss
/// (`nn::cross_entropy_loss`) and optimizer (`optim::Sgd`).
pub fn mlp() -> Case {
    let mut g = SplitMix64::new();
    let x = Tensor::from_vec(
        g.f32s(MLP_BATCH * MLP_DIMS[0], 1.0),
        &[MLP_BATCH, MLP_DIMS[0]],
    );
    let labels = g.labels(MLP_BATCH, 10);
    let mut model = nn::Sequential::new();
    for l in 0..3 {
        let (fi, fo) = (MLP_DIMS[l], MLP_DIMS[l + 1]);
        let s = 1.0 / (fi as f64).sqrt();
        let w = Tensor::from_vec(g.f32s(fi * fo, s), &[fi, fo]);
        let b = Tensor::from_vec(g.f32s(fo, s), &[fo]);
        model = model.add(nn::Linear::from_tensors(w, b));
        if l < 2 {
            model = model.add(nn::Relu);
        }
    }
    let mut opt = Sgd::new(model.params(), MLP_LR);
    Case {
        step: Box::new(move || {
            let logits = model.forward(&x).unwrap();
            let loss = nn::cross_entropy_loss(&logits, &labels).unwrap();
            opt.zero_grad();
            loss.backward().unwrap();
            let grads: Vec<Tensor> = model.params().iter().map(|p| p.grad().unwrap()).collect();
            opt.step().unwrap();
            Box::new(move || (loss.item(), grad_sum(&grads)))
        }),
        objective_only: None,
        impl_desc:
            "nn::Sequential of nn::Linear + nn::Relu, nn::cross_entropy_loss, backward, optim::Sgd",
        compile_ms: None,
    }
}

/// `shared/adbench/<rel>` from the team's shared folder: `$CHAINRULE_SHARED`,
/// or the first ancestor of this crate holding `shared/adbench` (the folder
/// beside the checkout). Only the benchmarks read it; the tests read the
/// instances shipped in `chainrule-adbench/data`.
fn adbench_file(rel: &str) -> std::path::PathBuf {
    let root = std::env::var_os("CHAINRULE_SHARED")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|a| a.join("shared"))
                .find(|s| s.join("adbench").is_dir())
        })
        .expect("the ADBench data: shared/adbench beside the checkout, or set CHAINRULE_SHARED");
    root.join("adbench").join(rel)
}

/// ADBench GMM: the objective and its full gradient (α, μ, icf), f64.
pub fn gmm(size: &str) -> Case {
    let n = if size.ends_with("n10000") {
        "10k"
    } else {
        "1k"
    };
    let input = std::rc::Rc::new(
        chainrule_adbench::gmm::read(&adbench_file(&format!("gmm/{n}/gmm_d10_K25.txt")))
            .expect("the ADBench data"),
    );
    let obj = input.clone();
    Case {
        step: Box::new(move || {
            let (v, g) = chainrule_adbench::gmm::objective_and_gradient(&input).unwrap();
            Box::new(move || (v, g.iter().sum()))
        }),
        objective_only: Some(Box::new(move || {
            autograd::no_grad(|| {
                chainrule_adbench::gmm::objective(&obj, &obj.alphas, &obj.means, &obj.icf)
            })
            .item();
        })),
        impl_desc: "tensor-API objective (batched Q_k matmul, logsumexp), func::value_and_grad_n",
        compile_ms: None,
    }
}

/// ADBench GMM through a graph: the objective traced, differentiated graph
/// to graph with respect to α, μ and icf, compiled to native code.
pub fn gmm_jit(size: &str) -> Case {
    let n = if size.ends_with("n10000") {
        "10k"
    } else {
        "1k"
    };
    let input = std::rc::Rc::new(
        chainrule_adbench::gmm::read(&adbench_file(&format!("gmm/{n}/gmm_d10_K25.txt")))
            .expect("the ADBench data"),
    );
    let feeds = [
        ("alphas", &input.alphas),
        ("means", &input.means),
        ("icf", &input.icf),
    ];
    let (exe, compile_ms) = compiled(&feeds, &["alphas", "means", "icf"], Run::Native, |t| {
        chainrule_adbench::gmm::objective(&input, &t[0], &t[1], &t[2])
    });
    let objective = traced(&feeds, |t| {
        chainrule_adbench::gmm::objective(&input, &t[0], &t[1], &t[2])
    })
    .0;
    let obj_input = input.clone();
    Case {
        step: Box::new(move || {
            let out = exe
                .run(&[
                    ("alphas", &input.alphas),
                    ("means", &input.means),
                    ("icf", &input.icf),
                ])
                .unwrap();
            Box::new(move || (out[0].item(), grad_sum(&out[1..])))
        }),
        objective_only: Some(Box::new(move || {
            let i = &obj_input;
            objective
                .run(&[("alphas", &i.alphas), ("means", &i.means), ("icf", &i.icf)])
                .unwrap();
        })),
        impl_desc: "the objective traced, gradients graph-to-graph, compiled to native code",
        compile_ms: Some(compile_ms),
    }
}

/// ADBench BA: residuals, and the sparse Jacobian by 15 forward passes.
pub fn ba(size: &str) -> Case {
    let file = std::fs::read_dir(adbench_file("ba"))
        .expect("the ADBench data")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|f| f.starts_with(&format!("{size}_")))
        .expect("the BA instance");
    let input = std::rc::Rc::new(
        chainrule_adbench::ba::read(&adbench_file(&format!("ba/{file}"))).unwrap(),
    );
    let obj = input.clone();
    Case {
        step: Box::new(move || {
            let j = chainrule_adbench::ba::jacobian(&input).unwrap();
            let (r, _) = autograd::no_grad(|| chainrule_adbench::ba::residuals(&input));
            Box::new(move || (r.sum().item(), j.values.iter().sum()))
        }),
        objective_only: Some(Box::new(move || {
            let (r, w) = autograd::no_grad(|| chainrule_adbench::ba::residuals(&obj));
            drop((r, w));
        })),
        impl_desc: "tensor-API residuals over all observations; CSR Jacobian by 2 func::vjp sweeps over the gathered (p, 15) parameters",
        compile_ms: None,
    }
}

/// ADBench LSTM: the loss and its gradient.
pub fn lstm(size: &str) -> Case {
    let input = std::rc::Rc::new(
        chainrule_adbench::lstm::read(&adbench_file(&format!("lstm/lstm_{size}.txt")))
            .expect("the ADBench data"),
    );
    let obj = input.clone();
    Case {
        step: Box::new(move || {
            let (v, g) = chainrule_adbench::lstm::objective_and_gradient(&input).unwrap();
            Box::new(move || (v, g.iter().sum()))
        }),
        objective_only: Some(Box::new(move || {
            autograd::no_grad(|| chainrule_adbench::lstm::objective(&obj, &obj.main, &obj.extra))
                .item();
        })),
        impl_desc: "tensor-API loss over B-vectors per step, func::value_and_grad_n",
        compile_ms: None,
    }
}

/// Plain SGD with `MLP_LR` on `params`, after `loss`'s backward: one
/// training step's summary (loss, gradient sum before the update).
fn sgd_step(loss: Tensor, params: &[nn::Param], opt: &mut Sgd) -> Summary {
    opt.zero_grad();
    loss.backward().unwrap();
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad().unwrap()).collect();
    opt.step().unwrap();
    Box::new(move || (loss.item(), grad_sum(&grads)))
}

/// One training step of LeNet-5 on a batch of 64 generated 1×28×28 images
/// (see `bench/layers.py` for the PyTorch side).
pub fn lenet() -> Case {
    let b = 64;
    let mut g = SplitMix64::new();
    let x = Tensor::from_vec(g.f32s(b * 28 * 28, 1.0), &[b, 1, 28, 28]);
    let labels = g.labels(b, 10);
    let mut draw = |shape: &[usize], fan_in: usize| {
        let n = shape.iter().product();
        Tensor::from_vec(g.f32s(n, 1.0 / (fan_in as f64).sqrt()), shape)
    };
    let conv = |w: Tensor, b: Tensor| nn::Conv2d::from_tensors(w, Some(b), ConvOptions::default());
    let conv1 = conv(draw(&[6, 1, 5, 5], 25), draw(&[6], 25));
    let conv2 = conv(draw(&[16, 6, 5, 5], 150), draw(&[16], 150));
    let mut fc = |i: usize, o: usize| nn::Linear::from_tensors(draw(&[i, o], i), draw(&[o], i));
    let model = nn::Sequential::new()
        .add_named("conv1", conv1)
        .add(nn::Relu)
        .add(nn::MaxPool2d(Pool2d::new([2, 2])))
        .add_named("conv2", conv2)
        .add(nn::Relu)
        .add(nn::MaxPool2d(Pool2d::new([2, 2])))
        .add(nn::Flatten(1))
        .add_named("fc1", fc(256, 120))
        .add(nn::Relu)
        .add_named("fc2", fc(120, 84))
        .add(nn::Relu)
        .add_named("fc3", fc(84, 10));
    let params = model.params();
    let mut opt = Sgd::new(params.clone(), MLP_LR);
    Case {
        step: Box::new(move || {
            let loss = nn::cross_entropy_loss(&model.forward(&x).unwrap(), &labels).unwrap();
            sgd_step(loss, &params, &mut opt)
        }),
        objective_only: None,
        impl_desc: "nn::Sequential of nn::Conv2d, nn::MaxPool2d, nn::Linear; backward; optim::Sgd",
        compile_ms: None,
    }
}

/// One training step of a pre-norm transformer block (batch 32, sequence
/// 64, width 128, 4 causal heads), loss `mean(out²)`.
pub fn transformer() -> Case {
    let (b, s, e, h) = (32, 64, 128, 4);
    let mut g = SplitMix64::new();
    let x = Tensor::from_vec(g.f32s(b * s * e, 1.0), &[b, s, e]);
    let mut draw = |shape: &[usize], fan_in: usize| {
        let n = shape.iter().product();
        Tensor::from_vec(g.f32s(n, 1.0 / (fan_in as f64).sqrt()), shape)
    };
    let block = nn::TransformerBlock::new(e, h, 4 * e, true, 0, DType::F32).unwrap();
    let sets = [
        (&block.attn.in_proj_weight, draw(&[e, 3 * e], e)),
        (&block.attn.in_proj_bias, draw(&[3 * e], e)),
        (&block.attn.out_proj.weight, draw(&[e, e], e)),
        (&block.attn.out_proj.bias, draw(&[e], e)),
        (&block.fc1.weight, draw(&[e, 4 * e], e)),
        (&block.fc1.bias, draw(&[4 * e], e)),
        (&block.fc2.weight, draw(&[4 * e, e], 4 * e)),
        (&block.fc2.bias, draw(&[e], 4 * e)),
    ];
    for (param, value) in sets {
        param.set(&value).unwrap();
    }
    let params = block.params();
    let mut opt = Sgd::new(params.clone(), MLP_LR);
    Case {
        step: Box::new(move || {
            let out = block.forward(&x).unwrap();
            sgd_step(out.square().mean(), &params, &mut opt)
        }),
        objective_only: None,
        impl_desc: "nn::TransformerBlock (LayerNorm, MultiheadAttention causal, Linear, Gelu); backward; optim::Sgd",
        compile_ms: None,
    }
}

#[cfg(test)]
mod tests {
    /// The inputs are the shared ones: value and gradient sum equal the
    /// peers' (`shared/bench/peers/baseline-results.jsonl`) to 1e-3 relative.
    #[test]
    fn workloads_reproduce_the_peers_values() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-3 * b.abs();
        let (v, g) = (super::ex1(100).step)()();
        assert!(
            close(v, 47.677066802978516) && close(g, 12.186660766601562),
            "{v} {g}"
        );
        let (v, g) = (super::ex2(1000, 100).step)()();
        assert!(close(v, 12562.8125) && close(g, 2732.4892578125), "{v} {g}");
        // bench/layers.py (PyTorch 2.15, f32; f64 agrees to 1e-7).
        let (v, g) = (super::lenet().step)()();
        assert!(
            close(v, 2.2996327877) && close(g, -0.8095979162),
            "lenet {v} {g}"
        );
        let (v, g) = (super::transformer().step)()();
        assert!(
            close(v, 0.3841238916) && close(g, 0.3657215847),
            "transformer {v} {g}"
        );
        let (v, g) = (super::chain(2500).step)()();
        assert!(
            close(v, 0.048719994723796844) && close(g, 0.0010075198952108622),
            "{v} {g}"
        );
        let (v, g) = (super::chain_forward(2500).step)()();
        assert!(
            close(v, 0.048719994723796844) && close(g, 0.0010075198952108622),
            "{v} {g}"
        );
        for mode in ["jit-reverse", "jit-forward"] {
            let (v, g) = (super::chain_jit(2500, mode).step)()();
            assert!(
                close(v, 0.048719994723796844) && close(g, 0.0010075198952108622),
                "{mode}: {v} {g}"
            );
        }
        for mode in ["forward-over-reverse", "reverse-over-reverse"] {
            let (v, g) = (super::hessian(100, mode).step)()();
            assert!(
                (v - 5189.849753254599).abs() <= 1e-9 * v
                    && (g - 61439.8343931505).abs() <= 1e-9 * g,
                "{v} {g}"
            );
        }
        for (a, b, value, sum) in [
            (8, 256, 1.1844184398651123, 4.549999713897705),
            (256, 8, 0.02331867814064026, -0.7377574443817139),
        ] {
            for mode in ["forward", "reverse"] {
                let (v, g) = (super::jac(a, b, mode).step)()();
                assert!(
                    (v - value).abs() <= 1e-3 * value.abs() && (g - sum).abs() <= 1e-3 * sum.abs(),
                    "jac {a}x{b} {mode}: {v} {g}"
                );
            }
        }
        let (v, g) = (super::ex1_graph(100, super::Run::Native).step)()();
        assert!(
            close(v, 47.677066802978516) && close(g, 12.186660766601562),
            "{v} {g}"
        );
        let (v, g) = (super::ex2_graph(1000, 100, super::Run::Native).step)()();
        assert!(close(v, 12562.8125) && close(g, 2732.4892578125), "{v} {g}");
        for (planned, run) in [
            (true, super::Run::Native),
            (true, super::Run::Interpreted),
            (false, super::Run::Interpreted),
        ] {
            let (v, g) = (super::mlp_graph(planned, run).step)()();
            assert!(
                close(v, 2.308544158935547) && close(g, 0.5390102565288544),
                "{v} {g}"
            );
        }
        for mode in ["jit-forward-over-reverse", "jit-reverse-over-reverse"] {
            let (v, g) = (super::hessian_jit(100, mode).step)()();
            assert!(
                (v - 5189.849753254599).abs() <= 1e-9 * v
                    && (g - 61439.8343931505).abs() <= 1e-9 * g,
                "{mode}: {v} {g}"
            );
        }
        for (a, b, value, sum) in [
            (8, 256, 1.1844184398651123, 4.549999713897705),
            (256, 8, 0.02331867814064026, -0.7377574443817139),
        ] {
            for mode in ["jit-forward", "jit-reverse", "jit-reverse-batched"] {
                let (v, g) = (super::jac_jit(a, b, mode).step)()();
                assert!(
                    (v - value).abs() <= 1e-3 * value.abs() && (g - sum).abs() <= 1e-3 * sum.abs(),
                    "jac {a}x{b} {mode}: {v} {g}"
                );
            }
        }
        let (v, g) = (super::mlp().step)()();
        assert!(
            close(v, 2.308544158935547) && close(g, 0.5390102565288544),
            "{v} {g}"
        );
    }
}
