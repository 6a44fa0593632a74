//! # chainrule
//!
//! Automatic differentiation in Rust, as the lecture note teaches it: n-d
//! tensors whose operations are recorded as they run (the *implicit*,
//! define-by-run graph), and a reverse-accumulation pass that visits each
//! node once, pruning branches that lead to no gradient.
//!
//! The note's example 2, `z = ‖Xw − y‖²`, whose gradient is `2 Xᵀ(Xw − y)`:
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
//! Errors: math methods panic on shape or dtype mismatch with a message that
//! names the op and both shapes; each has a `try_*` twin returning
//! [`Result`] (see [`error`]).

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
