//! Sizes are checked before anything is allocated: a shape whose element
//! count overflows `usize` is an error, and so is a result larger than the
//! allocation limit, so that a huge request fails with an error naming the
//! op instead of aborting the process on a failed allocation.
//!
//! The limit defaults to the machine's physical memory (read once from
//! `/proc/meminfo`; 1 TiB where that is unknown) and can be changed with
//! [`set_max_tensor_bytes`].

use crate::error::{Error, Result, ShapeDisplay};
use crate::DType;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `0`: not set yet (the default is computed on first use).
static MAX_TENSOR_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The largest buffer one tensor may allocate, in bytes.
pub fn max_tensor_bytes() -> usize {
    match MAX_TENSOR_BYTES.load(Ordering::Relaxed) {
        0 => {
            let default = physical_memory().unwrap_or(1 << 40);
            MAX_TENSOR_BYTES.store(default, Ordering::Relaxed);
            default
        }
        n => n,
    }
}

/// Sets the largest buffer one tensor may allocate, in bytes (for every
/// thread); `0` restores the default (the physical memory).
pub fn set_max_tensor_bytes(bytes: usize) {
    MAX_TENSOR_BYTES.store(bytes, Ordering::Relaxed);
}

fn physical_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The number of elements of `shape`, or an error naming `op` when the
/// product of its non-zero sizes does not fit in `usize` (as NumPy, an
/// empty shape is refused too: strides and the kernels' partial products
/// of such a shape would overflow).
pub(crate) fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    let nonzero = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)));
    nonzero
        .map(|n| if shape.contains(&0) { 0 } else { n })
        .ok_or_else(|| Error::TooLarge {
            op,
            shape: ShapeDisplay(shape.to_vec()),
            bytes: None,
            limit: max_tensor_bytes(),
        })
}

/// [`checked_numel`], and a buffer of that many elements of `dtype` within
/// [`max_tensor_bytes`]: what every op checks before it allocates a result.
pub(crate) fn check_alloc(op: &'static str, shape: &[usize], dtype: DType) -> Result<usize> {
    let n = checked_numel(op, shape)?;
    let limit = max_tensor_bytes();
    match n.checked_mul(dtype.size()) {
        Some(bytes) if bytes <= limit => Ok(n),
        bytes => Err(Error::TooLarge {
            op,
            shape: ShapeDisplay(shape.to_vec()),
            bytes,
            limit,
        }),
    }
}

/// `a + b` for a bound or a length, or an error naming `op`.
pub(crate) fn checked_add(op: &'static str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b)
        .ok_or_else(|| Error::invalid(op, format!("{a} + {b} overflows")))
}
