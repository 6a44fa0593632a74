//! CPU buffers. A buffer is shared (`Arc`) by every view of it; a small one
//! (a 0-d value above all) is held in place and copied instead, so that the
//! scalar ops of define-by-run code allocate no buffer.

use crate::dtype::{DType, Scalar};
use std::sync::Arc;

/// Runs `$body` with `$T` bound to the element type of `$dtype`, for the
/// dtypes listed; any other is refused (see [`refused`]).
macro_rules! dispatch {
    ($dtype:expr, $T:ident => $body:expr; $($variant:ident => $t:ty),*) => {
        match $dtype {
            $($crate::DType::$variant => {
                #[allow(unused_imports)]
                use num_traits::{One as _, Zero as _};
                type $T = $t;
                $body
            })*
            #[allow(unreachable_patterns)]
            other => $crate::storage::refused(other),
        }
    };
}
pub(crate) use dispatch;

/// `$body` for a float dtype: the kernels of ops whose dtype rule admits
/// only `f32` and `f64`, so another dtype never gets here.
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::storage::dispatch!($dtype, $T => $body; F32 => f32, F64 => f64)
    };
}
pub(crate) use with_dtype;

/// `$body` for any dtype (the kernels that only move, compare or convert
/// elements).
macro_rules! with_scalar {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::storage::dispatch!($dtype, $T => $body;
            F32 => f32, F64 => f64, I32 => i32, I64 => i64, Bool => bool)
    };
}
pub(crate) use with_scalar;

/// `$body` for an integer dtype: the integer kernels of arithmetic ops.
macro_rules! with_int {
    ($dtype:expr, $T:ident => $body:expr) => {
        $crate::storage::dispatch!($dtype, $T => $body; I32 => i32, I64 => i64)
    };
}
pub(crate) use with_int;

/// A kernel reached with a dtype its op's dtype rule refuses (a bug): out
/// of line, so that the kernels' dispatch stays small enough to inline.
#[cold]
#[inline(never)]
pub(crate) fn refused(dtype: DType) -> ! {
    unreachable!("a kernel reached with {dtype}, which its op's dtype rule refuses")
}

/// How many bytes a buffer held in place may take.
const INLINE_BYTES: usize = 16;

#[derive(Clone)]
pub(crate) enum Storage {
    F32(Arc<Buffer<f32>>),
    F64(Arc<Buffer<f64>>),
    I32(Arc<Buffer<i32>>),
    I64(Arc<Buffer<i64>>),
    Bool(Arc<Buffer<bool>>),
    Inline(Inline),
}

/// A heap buffer, whose memory goes back to [`crate::memory`]'s cache when
/// the last view of it is dropped (so that the next step's buffer of the
/// same size is not allocated afresh).
pub(crate) struct Buffer<T: Copy>(Vec<T>);

impl<T: Copy> std::ops::Deref for Buffer<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Copy> std::ops::DerefMut for Buffer<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Copy> Drop for Buffer<T> {
    fn drop(&mut self) {
        crate::memory::recycle(std::mem::take(&mut self.0));
    }
}

/// Up to [`INLINE_BYTES`] of elements, in place.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(crate) struct Inline {
    words: [u64; INLINE_BYTES / 8],
    len: u8,
    dtype: DType,
}

impl Storage {
    /// A buffer in place holding `v` as one element of `dtype` (exact for a
    /// value read from that dtype).
    pub fn number(v: f64, dtype: DType) -> Storage {
        with_scalar!(dtype, T => T::small(&[T::from_f64(v)]))
    }

    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
            Storage::I32(_) => DType::I32,
            Storage::I64(_) => DType::I64,
            Storage::Bool(_) => DType::Bool,
            Storage::Inline(b) => b.dtype,
        }
    }

    /// A zeroed buffer of `len` elements on the heap (one a compiled
    /// graph writes into through [`Storage::heap_ptr_mut`]).
    pub fn zeroed_heap(dtype: DType, len: usize) -> Storage {
        with_scalar!(dtype, T => T::heap(crate::memory::filled_vec(len, T::default())))
    }

    /// Whether no other view shares this buffer (one in place never is shared).
    pub fn is_unshared(&self) -> bool {
        match self {
            Storage::F32(v) => Arc::strong_count(v) == 1,
            Storage::F64(v) => Arc::strong_count(v) == 1,
            Storage::I32(v) => Arc::strong_count(v) == 1,
            Storage::I64(v) => Arc::strong_count(v) == 1,
            Storage::Bool(v) => Arc::strong_count(v) == 1,
            Storage::Inline(_) => true,
        }
    }

    /// The first element of a heap buffer nobody else holds, for writing.
    pub fn heap_ptr_mut(&mut self) -> Option<*mut u8> {
        match self {
            Storage::F32(v) => Arc::get_mut(v).map(|v| v.as_mut_ptr() as *mut u8),
            Storage::F64(v) => Arc::get_mut(v).map(|v| v.as_mut_ptr() as *mut u8),
            Storage::I32(v) => Arc::get_mut(v).map(|v| v.as_mut_ptr() as *mut u8),
            Storage::I64(v) => Arc::get_mut(v).map(|v| v.as_mut_ptr() as *mut u8),
            Storage::Bool(v) => Arc::get_mut(v).map(|v| v.as_mut_ptr() as *mut u8),
            Storage::Inline(_) => None,
        }
    }

    /// Element `offset` onwards, for reading through a raw pointer.
    pub fn ptr_at(&self, offset: usize) -> *const u8 {
        with_scalar!(self.dtype(), T => T::slice(self)[offset..].as_ptr() as *const u8)
    }
}

/// Moving typed buffers in and out of the dtype-erased [`Storage`].
pub(crate) trait StorageElement: Scalar {
    /// How many elements a buffer held in place takes.
    const INLINE: usize = INLINE_BYTES / std::mem::size_of::<Self>();
    /// `v` as a storage: in place when it is small enough.
    fn wrap(v: Vec<Self>) -> Storage {
        if v.len() <= Self::INLINE {
            return Self::small(&v);
        }
        Self::heap(v)
    }
    fn heap(v: Vec<Self>) -> Storage;
    /// A buffer in place holding `v` (at most [`StorageElement::INLINE`] elements).
    fn small(v: &[Self]) -> Storage {
        debug_assert!(v.len() <= Self::INLINE);
        let mut b = Inline {
            words: [0; INLINE_BYTES / 8],
            len: v.len() as u8,
            dtype: Self::DTYPE,
        };
        // SAFETY: `words` is 8-aligned and holds `INLINE` elements of `Self`.
        let dst = unsafe {
            std::slice::from_raw_parts_mut(b.words.as_mut_ptr() as *mut Self, Self::INLINE)
        };
        dst[..v.len()].copy_from_slice(v);
        Storage::Inline(b)
    }
    /// The buffer; the caller has checked the dtype.
    fn slice(s: &Storage) -> &[Self];
    /// The buffer for writing, when no other view shares it.
    fn unique_mut(s: &mut Storage) -> Option<&mut [Self]>;
}

/// A floating-point element type as a storage holds it: the bound of the
/// float kernels.
pub(crate) trait FloatElement: crate::dtype::Element + StorageElement {}

impl<T: crate::dtype::Element + StorageElement> FloatElement for T {}

/// An inline buffer's elements, typed: the caller has checked the dtype.
fn inline_slice<T: Scalar>(b: &Inline) -> &[T] {
    debug_assert_eq!(b.dtype, T::DTYPE);
    // SAFETY: `words` is 8-aligned and its first `len` elements of `T` were
    // written by `small` (the dtype says which type).
    unsafe { std::slice::from_raw_parts(b.words.as_ptr() as *const T, b.len as usize) }
}

fn inline_slice_mut<T: Scalar>(b: &mut Inline) -> &mut [T] {
    debug_assert_eq!(b.dtype, T::DTYPE);
    // SAFETY: as `inline_slice`.
    unsafe { std::slice::from_raw_parts_mut(b.words.as_mut_ptr() as *mut T, b.len as usize) }
}

macro_rules! storage_element {
    ($t:ty, $variant:ident) => {
        impl StorageElement for $t {
            fn heap(v: Vec<Self>) -> Storage {
                Storage::$variant(Arc::new(Buffer(v)))
            }
            fn slice(s: &Storage) -> &[Self] {
                match s {
                    Storage::$variant(v) => v,
                    Storage::Inline(b) => inline_slice(b),
                    _ => unreachable!("dtype checked by the caller"),
                }
            }
            fn unique_mut(s: &mut Storage) -> Option<&mut [Self]> {
                match s {
                    Storage::$variant(v) => Arc::get_mut(v).map(|v| v.as_mut_slice()),
                    Storage::Inline(b) if b.dtype == <$t>::DTYPE => Some(inline_slice_mut(b)),
                    _ => None,
                }
            }
        }
    };
}

storage_element!(f32, F32);
storage_element!(f64, F64);
storage_element!(i32, I32);
storage_element!(i64, I64);
storage_element!(bool, Bool);
