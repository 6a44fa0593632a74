//! Axes as users write them: counted from the front (`0`, `1`, …) or, when
//! negative, from the back (`-1` is the last), as NumPy and PyTorch count.
//! Every op that takes an axis takes an [`Axis`], and a list of them an
//! [`Axes`]; each resolves it against its input's rank here.

use crate::error::{Error, Result};
use crate::layout::Dims;

/// One axis: any integer (`usize` for the front, `i32`/`i64`/`isize` for
/// either end; a literal such as `-1` is an `i32`).
pub trait Axis: Copy {
    /// The axis as a signed position.
    fn position(self) -> i64;
}

macro_rules! signed_axis {
    ($($t:ty),*) => {$(
        impl Axis for $t {
            fn position(self) -> i64 {
                self as i64
            }
        }
    )*};
}

signed_axis!(i32, i64, isize);

impl Axis for usize {
    fn position(self) -> i64 {
        i64::try_from(self).unwrap_or(i64::MAX)
    }
}

/// A list of axes, borrowed: a slice, an array or a vector of [`Axis`]
/// values (`&[1]`, `&[-1, 0]`, `&axes`). Only borrowed forms, so that
/// `&[1]` is the one way to write it.
pub trait Axes {
    /// The axes as signed positions.
    fn positions(&self) -> Vec<i64>;
}

impl<A: Axis> Axes for &[A] {
    fn positions(&self) -> Vec<i64> {
        self.iter().map(|a| a.position()).collect()
    }
}

impl<A: Axis, const N: usize> Axes for &[A; N] {
    fn positions(&self) -> Vec<i64> {
        self.iter().map(|a| a.position()).collect()
    }
}

impl<A: Axis> Axes for &Vec<A> {
    fn positions(&self) -> Vec<i64> {
        self.iter().map(|a| a.position()).collect()
    }
}

/// `axis` as an index into the axes of `shape`, or the error naming `op`.
pub(crate) fn resolve(op: &'static str, axis: impl Axis, shape: &[usize]) -> Result<usize> {
    within(op, axis.position(), shape.len(), shape)
}

/// `axis` as a place to insert a new axis among those of `shape`
/// (`0..=ndim`; `-1` appends one), or the error naming `op`.
pub(crate) fn resolve_new(op: &'static str, axis: impl Axis, shape: &[usize]) -> Result<usize> {
    within(op, axis.position(), shape.len() + 1, shape)
}

/// Each of `axes` resolved against `shape`, in the order given.
pub(crate) fn resolve_all(op: &'static str, axes: impl Axes, shape: &[usize]) -> Result<Dims> {
    axes.positions()
        .into_iter()
        .map(|a| within(op, a, shape.len(), shape))
        .collect()
}

fn within(op: &'static str, axis: i64, count: usize, shape: &[usize]) -> Result<usize> {
    let count = count as i64;
    let index = if axis < 0 { axis + count } else { axis };
    if (0..count).contains(&index) {
        Ok(index as usize)
    } else {
        Err(Error::axis(op, axis, shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_axes_count_from_the_back() {
        let shape = [2, 3, 4];
        assert_eq!(resolve("t", -1, &shape).unwrap(), 2);
        assert_eq!(resolve("t", -3, &shape).unwrap(), 0);
        assert_eq!(resolve("t", 1usize, &shape).unwrap(), 1);
        assert!(resolve("t", -4, &shape).is_err());
        assert!(resolve("t", 3, &shape).is_err());
        assert!(resolve("t", usize::MAX, &shape).is_err());
        assert_eq!(resolve_new("t", -1, &shape).unwrap(), 3);
        assert_eq!(resolve_new("t", 0, &[]).unwrap(), 0);
        assert_eq!(
            resolve_all("t", &[-1, 0], &shape).unwrap().as_slice(),
            &[2, 0]
        );
        let e = resolve("softmax", -5, &shape).unwrap_err().to_string();
        assert!(e.contains("axis -5") && e.contains("[2, 3, 4]"), "{e}");
    }
}
