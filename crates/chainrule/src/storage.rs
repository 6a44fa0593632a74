//! CPU buffers. A buffer is shared (`Arc`) by every view of it.

use crate::dtype::{DType, Element};
use std::sync::Arc;

#[derive(Clone)]
pub(crate) enum Storage {
    F32(Arc<Vec<f32>>),
    F64(Arc<Vec<f64>>),
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::F32(_) => DType::F32,
            Storage::F64(_) => DType::F64,
        }
    }
}

/// Moving typed buffers in and out of the dtype-erased [`Storage`].
pub(crate) trait StorageElement: Element {
    fn wrap(v: Vec<Self>) -> Storage;
    /// The buffer; the caller has checked the dtype.
    fn slice(s: &Storage) -> &[Self];
    /// The buffer for writing, when no other view shares it.
    fn unique_mut(s: &mut Storage) -> Option<&mut Vec<Self>>;
}

impl StorageElement for f32 {
    fn wrap(v: Vec<Self>) -> Storage {
        Storage::F32(Arc::new(v))
    }
    fn slice(s: &Storage) -> &[Self] {
        match s {
            Storage::F32(v) => v,
            Storage::F64(_) => unreachable!("dtype checked by the caller"),
        }
    }
    fn unique_mut(s: &mut Storage) -> Option<&mut Vec<Self>> {
        match s {
            Storage::F32(v) => Arc::get_mut(v),
            Storage::F64(_) => None,
        }
    }
}

impl StorageElement for f64 {
    fn wrap(v: Vec<Self>) -> Storage {
        Storage::F64(Arc::new(v))
    }
    fn slice(s: &Storage) -> &[Self] {
        match s {
            Storage::F64(v) => v,
            Storage::F32(_) => unreachable!("dtype checked by the caller"),
        }
    }
    fn unique_mut(s: &mut Storage) -> Option<&mut Vec<Self>> {
        match s {
            Storage::F64(v) => Arc::get_mut(v),
            Storage::F32(_) => None,
        }
    }
}

/// Runs `$body` with `$T` bound to the element type of `$dtype`.
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                #[allow(unused_imports)]
                use num_traits::{One as _, Zero as _};
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                #[allow(unused_imports)]
                use num_traits::{One as _, Zero as _};
                type $T = f64;
                $body
            }
        }
    };
}
pub(crate) use with_dtype;
