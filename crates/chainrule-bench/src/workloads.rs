//! Each workload as one "call": build the graph from the inputs, evaluate the
//! objective and its gradient. Inputs are created once, before timing.

use crate::data::SplitMix64;
use chainrule::forward::DualLevel;
use chainrule::nn::{self, Module};
use chainrule::optim::{Optimizer, Sgd};
use chainrule::Tensor;
use chainrule::{autograd, func};

pub const MLP_DIMS: [usize; 4] = [784, 512, 256, 10];
pub const MLP_BATCH: usize = 128;
pub const MLP_LR: f64 = 0.01;

/// The (value, gradient sum) of a call, computed only when asked for: the
/// harness asks once, outside the timed calls, as the peers' harnesses do.
pub type Summary = Box<dyn FnOnce() -> (f64, f64)>;

/// A prepared case: `step` runs one call and returns its summary.
pub struct Case {
    pub step: Box<dyn FnMut() -> Summary>,
    pub impl_desc: &'static str,
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
        impl_desc: "eager reverse mode, autograd::grad",
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
        impl_desc: "eager reverse mode, autograd::grad",
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
        impl_desc: "0-d tensors, eager reverse mode, Tensor::backward",
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
        impl_desc: "0-d tensors, forward mode (DualLevel::make_dual)",
    }
}

pub const JAC_HIDDEN: usize = 256;

/// `f(x) = tanh(W3 tanh(W2 tanh(W1 x)))`, its Jacobian by `jacfwd` (forward)
/// or `jacrev` (reverse).
pub fn jac(a: usize, b: usize, mode: &str) -> Case {
    let mut g = SplitMix64::new();
    let h = JAC_HIDDEN;
    let x = Tensor::from_vec(g.f32s(a, 1.0), &[a]);
    let w1 = Tensor::from_vec(g.f32s(h * a, 1.0 / (a as f64).sqrt()), &[h, a]);
    let w2 = Tensor::from_vec(g.f32s(h * h, 1.0 / (h as f64).sqrt()), &[h, h]);
    let w3 = Tensor::from_vec(g.f32s(b * h, 1.0 / (h as f64).sqrt()), &[b, h]);
    let forward = mode == "forward";
    Case {
        step: Box::new(move || {
            let f = |x: &Tensor| w3.matmul(&w2.matmul(&w1.matmul(x).tanh()).tanh()).tanh();
            let j = if forward {
                func::jacfwd(f, &x)
            } else {
                func::jacrev(f, &x)
            }
            .unwrap();
            let (x, w1, w2, w3) = (x.clone(), w1.clone(), w2.clone(), w3.clone());
            Box::new(move || {
                let y = w3.matmul(&w2.matmul(&w1.matmul(&x).tanh()).tanh()).tanh();
                (y.sum().item(), j.sum().item())
            })
        }),
        impl_desc: if forward {
            "func::jacfwd (one forward pass, batched tangent of a directions)"
        } else {
            "func::jacrev (one forward, b reverse sweeps)"
        },
    }
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
        impl_desc: if forward {
            "func::hessian (jacfwd of grad: one batched forward pass over the reverse sweep)"
        } else {
            "func::hessian_rev (jacrev of grad: n reverse sweeps over the recorded gradient)"
        },
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
        impl_desc:
            "nn::Sequential of nn::Linear + nn::Relu, nn::cross_entropy_loss, backward, optim::Sgd",
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
        let (v, g) = (super::mlp().step)()();
        assert!(
            close(v, 2.308544158935547) && close(g, 0.5390102565288544),
            "{v} {g}"
        );
    }
}
