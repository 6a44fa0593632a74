//! Element types: `f32`, `f64`, `i32`, `i64` and `bool`; the trait every
//! element type has ([`Scalar`]) and the one the floating-point kernels are
//! generic over ([`Element`]).

use num_traits::Float;
use std::fmt::Debug;
use std::iter::Sum;

/// The element type of a tensor. Only the floating-point ones carry
/// derivatives; integer and bool tensors are indices, labels, counts and
/// masks, and an op never converts between dtypes unless asked
/// ([`crate::Tensor::to_dtype`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit floating point (`f32`).
    F32,
    /// 64-bit floating point (`f64`).
    F64,
    /// 32-bit signed integer (`i32`).
    I32,
    /// 64-bit signed integer (`i64`).
    I64,
    /// Boolean (`bool`), one byte per element.
    Bool,
}

impl DType {
    /// Every dtype.
    pub const ALL: [DType; 5] = [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }

    /// Whether the dtype is `f32` or `f64` (the ones with derivatives).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Whether the dtype is `i32` or `i64`.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }

    /// The name users write (`f32`, `i64`, `bool`…).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Any element type a tensor can hold. Conversions follow Rust's `as`
/// (a float to an integer rounds toward zero and saturates, NaN gives 0;
/// anything to `bool` is "nonzero").
pub trait Scalar: Copy + Debug + Default + PartialOrd + Send + Sync + 'static {
    /// The [`DType`] of tensors holding this type.
    const DTYPE: DType;
    /// `v` converted to `Self`, as `as` converts it.
    fn from_f64(v: f64) -> Self;
    /// `self` converted to `f64` (`bool`: 0 or 1).
    fn to_f64(self) -> f64;
    /// `v` converted to `Self`, as `as` converts it.
    fn from_i64(v: i64) -> Self;
    /// `self` converted to `i64`, as `as` converts it (`bool`: 0 or 1).
    fn to_i64(self) -> i64;
    /// `v` converted to `Self`, exactly where both types can hold it (two
    /// integer types convert through `i64`, not through `f64`).
    #[inline(always)]
    fn cast_from<S: Scalar>(v: S) -> Self {
        if S::DTYPE.is_float() || Self::DTYPE.is_float() {
            Self::from_f64(v.to_f64())
        } else {
            Self::from_i64(v.to_i64())
        }
    }
}

macro_rules! scalar_number {
    ($($t:ty => $d:ident),*) => {$(
        impl Scalar for $t {
            const DTYPE: DType = DType::$d;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_i64(v: i64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_i64(self) -> i64 {
                self as i64
            }
        }
    )*};
}

scalar_number!(f32 => F32, f64 => F64, i32 => I32, i64 => I64);

impl Scalar for bool {
    const DTYPE: DType = DType::Bool;
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    #[inline(always)]
    fn from_i64(v: i64) -> Self {
        v != 0
    }
    #[inline(always)]
    fn to_i64(self) -> i64 {
        self as i64
    }
}

/// An integer element type: the arithmetic integer tensors have (wrapping,
/// as release builds of Rust and PyTorch do).
pub(crate) trait Int: Scalar + Ord {
    const ZERO: Self;
    const MIN: Self;
    const MAX: Self;
    fn wrapping_add(self, o: Self) -> Self;
    fn wrapping_sub(self, o: Self) -> Self;
    fn wrapping_mul(self, o: Self) -> Self;
}

macro_rules! int_element {
    ($($t:ty),*) => {$(
        impl Int for $t {
            const ZERO: Self = 0;
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
            #[inline(always)]
            fn wrapping_add(self, o: Self) -> Self {
                <$t>::wrapping_add(self, o)
            }
            #[inline(always)]
            fn wrapping_sub(self, o: Self) -> Self {
                <$t>::wrapping_sub(self, o)
            }
            #[inline(always)]
            fn wrapping_mul(self, o: Self) -> Self {
                <$t>::wrapping_mul(self, o)
            }
        }
    )*};
}

int_element!(i32, i64);

/// A floating-point element type a tensor can hold (`f32` or `f64`).
pub trait Element: Scalar + Float + Sum + Debug + Default + Send + Sync + 'static {
    /// `v` converted to `Self` (an `as` cast).
    fn of(v: f64) -> Self;
    /// `self` converted to `f64` (an `as` cast).
    fn f64(self) -> f64;
    /// The error function (`num_traits::Float` has none).
    fn erf(self) -> Self;
    /// `tanh`, written so that loops over it vectorize (see
    /// `kernels::transcendental::tanh_f32` and `tanh_f64`).
    fn tanh_vectorizable(self) -> Self;
    /// `eˣ`, likewise (f32: see `kernels::transcendental::exp_f32`).
    fn exp_vectorizable(self) -> Self;
    /// Whether the op table's block forms (so far `exp_block`) run faster
    /// than a loop of the element function: f64's do, f32's do not
    /// (measured in BENCHMARKS, thirteenth GradBench pass).
    #[doc(hidden)]
    const FASTER_IN_BLOCKS: bool = false;
    /// `exp_vectorizable` on each of a block, the same bits (f64: see
    /// `kernels::transcendental::exp_f64_block`).
    #[doc(hidden)]
    #[inline(always)]
    fn exp_block(
        xs: [Self; crate::kernels::elementwise::BLOCK],
    ) -> [Self; crate::kernels::elementwise::BLOCK] {
        // A plain loop: `array::map` does not vectorize here.
        let mut ys = xs;
        for y in &mut ys {
            *y = y.exp_vectorizable();
        }
        ys
    }
}

impl Element for f32 {
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
        crate::kernels::transcendental::tanh_f32(self)
    }
    #[inline(always)]
    fn exp_vectorizable(self) -> Self {
        crate::kernels::transcendental::exp_f32(self)
    }
}

impl Element for f64 {
    const FASTER_IN_BLOCKS: bool = true;
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
        crate::kernels::transcendental::tanh_f64(self)
    }
    #[inline(always)]
    fn exp_vectorizable(self) -> Self {
        crate::kernels::transcendental::exp_f64(self)
    }
    #[inline(always)]
    fn exp_block(
        xs: [Self; crate::kernels::elementwise::BLOCK],
    ) -> [Self; crate::kernels::elementwise::BLOCK] {
        crate::kernels::transcendental::exp_f64_block(xs)
    }
}
