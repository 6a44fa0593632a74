//! # chainrule
//!
//! Automatic differentiation for Rust: n-d tensors whose operations are
//! recorded as they run (the *implicit*, define-by-run graph, as in
//! PyTorch) or traced into explicit graphs (define-then-run, as `jax.jit`),
//! differentiated by reverse or forward accumulation, to any order.
//!
//! This page is a guide; each section names the module with the details.
//!
//! ## Reverse mode: `backward` and `autograd::grad`
//!
//! A tensor made with [`Tensor::requires_grad`] is a leaf; every op on it
//! records itself, and [`Tensor::backward`] walks that record once, from the
//! output back, visiting only the branches that lead to a leaf (see
//! [`autograd`]). `z = ‖Xw − y‖²`, whose gradient is `2 Xᵀ(Xw − y)`:
//!
//! ```
//! use chainrule::{DType, Tensor};
//! let x = Tensor::rand_normal(&[5, 3], 0.0, 1.0, 1, DType::F64);
//! let y = Tensor::rand_normal(&[5], 0.0, 1.0, 2, DType::F64);
//! let w = Tensor::rand_normal(&[3], 0.0, 1.0, 3, DType::F64).requires_grad();
//!
//! let a = x.matmul(&w); // a = Xw      (5,)
//! let b = &a - &y;      // b = a − y   (5,)
//! let z = b.square().sum(); // z = ‖b‖²  ()
//! z.backward().unwrap();
//!
//! let closed_form = x.t().matmul(&(x.matmul(&w) - &y)) * 2.0;
//! for (g, c) in w.grad().unwrap().to_vec::<f64>().iter().zip(closed_form.to_vec::<f64>()) {
//!     assert!((g - c).abs() < 1e-12);
//! }
//! ```
//!
//! ## Shapes: the chain rule's Jacobians
//!
//! For `f: Rⁿ → Rᵐ` the Jacobian is `(m, n)`, one row per output entry, and
//! the chain rule multiplies `(m,n) = (m,k)(k,n)`. In the API a Jacobian has
//! the output's shape followed by the input's, and the gradient of a scalar
//! (the row `(1, n)`) is stored in the input's own shape. No op forms its
//! Jacobian: reverse mode applies each op's vector-Jacobian product, forward
//! mode its Jacobian-vector product.
//!
//! ```
//! use chainrule::{func, Tensor};
//! let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
//! let f = |x: &Tensor| x.square().narrow(0, 0, 2); // R³ → R²
//! assert_eq!(func::jacrev(f, &x).unwrap().shape(), &[2, 3]);
//! assert_eq!(func::grad(|x: &Tensor| x.square().sum(), &x).unwrap().shape(), &[3]);
//! ```
//!
//! ## Forward mode, and the transforms
//!
//! [`forward::DualLevel`] gives a tensor a tangent that every op carries
//! forward; nothing is recorded, so memory does not grow with the length of
//! the computation. The functional transforms in [`func`] wrap both modes,
//! as JAX's do, and nest in any order: `grad`, `vjp`, `jvp`, `jacrev`,
//! `jacfwd`, `hessian`, `hvp`, `vmap` and `jit`.
//!
//! ```
//! use chainrule::{func, Tensor};
//! let f = |x: &Tensor| (x.sin() * x).sum();
//! let x = Tensor::from_vec(vec![0.5f64, 1.0], &[2]);
//! let v = Tensor::from_vec(vec![1.0f64, 0.0], &[2]);
//! let (_, along_v) = func::jvp(f, &x, &v).unwrap(); // forward mode
//! let g = func::grad(f, &x).unwrap(); // reverse mode
//! assert!((along_v.item() - g.to_vec::<f64>()[0]).abs() < 1e-15);
//! let hv = func::hvp(f, &x, &v).unwrap(); // forward over reverse
//! assert_eq!(hv.shape(), &[2]);
//! ```
//!
//! ## Explicit graphs
//!
//! [`graph::Graph::trace`] records a function once into a graph that can be
//! printed, differentiated graph to graph, optimized and compiled to native
//! code; [`func::jit`] does all of that behind a function call, caching one
//! executable per input shape. Loops with a body traced once are in
//! [`control`].
//!
//! ```
//! use chainrule::{graph::Graph, Tensor};
//! let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
//! let g = Graph::trace(&[("x", &x)], |xs| Ok(vec![xs[0].exp().sum()])).unwrap();
//! let with_grad = g.gradients(0, &["x"]).unwrap().optimize().compile();
//! let out = with_grad.run(&[("x", &x)]).unwrap(); // [value, ∂/∂x]
//! let expected = [1.0f64.exp(), 2.0f64.exp()];
//! assert!(out[1].to_vec::<f64>().iter().zip(expected).all(|(g, e)| (g - e).abs() < 1e-15 * e));
//! ```
//!
//! ## Models
//!
//! [`nn`] has layers with PyTorch's layouts and initializations, a
//! `#[derive(Module)]`, losses and safetensors files; [`optim`] the
//! optimizers, schedules and checkpoints; [`data`] data sets and batches.
//!
//! ## Errors
//!
//! Math methods and operators panic on a programming error (a shape or
//! dtype mismatch, an axis out of range) with a message that names the op
//! and both shapes. Each has a `try_*` twin returning [`Result`] for input
//! from outside the program; `backward`, the transforms and file I/O always
//! return one (see [`error`]). Sizes are checked before anything is
//! allocated ([`max_tensor_bytes`]).
//!
//! ```
//! use chainrule::{DType, Tensor};
//! let a = Tensor::zeros(&[2, 3], DType::F32);
//! let b = Tensor::zeros(&[4], DType::F32);
//! let err = a.try_add(&b).unwrap_err();
//! assert!(err.to_string().contains("[2, 3]") && err.to_string().contains("[4]"));
//! ```
//!
//! ## Printing
//!
//! `{}` lays a tensor out as numpy and PyTorch do; `{:?}` adds its shape,
//! dtype and the op that made it:
//!
//! ```
//! use chainrule::Tensor;
//! let m = Tensor::from_vec(vec![1.0f32, 2.5, -3.0, 4.0], &[2, 2]);
//! assert_eq!(format!("{m}"), "[[ 1.0000,  2.5000],\n [-3.0000,  4.0000]]");
//! ```

#![warn(missing_docs)]

// So that `#[derive(Module)]`, which names `::chainrule`, works inside the crate.
extern crate self as chainrule;

pub mod autograd;
mod axis;
mod batching;
pub mod check;
mod compile;
pub mod control;
#[cfg(feature = "ndarray")]
mod convert;
pub mod data;
mod display;
#[cfg(feature = "mpi")]
pub mod distributed;
mod dtype;
pub mod error;
pub mod files;
pub mod forward;
pub mod func;
pub mod graph;
mod interp;
mod kernels;
mod layout;
pub mod limits;
pub mod linalg;
pub mod memory;
pub mod nn;
mod ops;
pub mod optim;
pub mod rules;
mod storage;
mod tensor;

pub use ops::custom;

pub use autograd::{BackwardOptions, BackwardStats};
pub use axis::{Axes, Axis};
pub use dtype::{DType, Element, Scalar};
pub use error::{Error, Result};
pub use limits::{max_tensor_bytes, set_max_tensor_bytes};
pub use ops::conv::{ConvOptions, Pool2d};
pub use ops::index::Indices;
pub use ops::slice::Slice;
pub use tensor::Tensor;

/// The README's Rust examples run as doctests, so the first page stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;
