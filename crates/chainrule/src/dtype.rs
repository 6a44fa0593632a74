//! Element types: `f32` and `f64`, and the trait the kernels are generic over.

use num_traits::Float;
use std::fmt::Debug;
use std::iter::Sum;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// A floating-point element type a tensor can hold (`f32` or `f64`).
pub trait Element: Float + Sum + Debug + Default + Send + Sync + 'static {
    const DTYPE: DType;
    fn of(v: f64) -> Self;
    fn f64(self) -> f64;
    /// The error function (`num_traits::Float` has none).
    fn erf(self) -> Self;
    /// `tanh`, written so that loops over it vectorize where that keeps
    /// its accuracy (f32: see `kernels::elementwise::tanh_f32`).
    fn tanh_vectorizable(self) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    #[inline(always)]
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erff(self)
    }
    #[inline(always)]
    fn tanh_vectorizable(self) -> Self {
        crate::kernels::elementwise::tanh_f32(self)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    #[inline(always)]
    fn of(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline(always)]
    fn tanh_vectorizable(self) -> Self {
        self.tanh()
    }
}
