//! The one error type of the library.
//!
//! Policy: the math methods (`a.add(&b)`, `&a + &b`, `a.matmul(&b)`, …) panic on
//! a programming error such as a shape mismatch, with the same message this enum
//! formats; every such method has a `try_*` twin that returns `Result<_, Error>`
//! for input that comes from outside the program. `backward` and the other
//! engine entry points always return a `Result`.

use crate::DType;
use std::fmt;

/// A shape as printed in error messages: `[2, 3]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ShapeDisplay(pub Vec<usize>);

impl fmt::Debug for ShapeDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for ShapeDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Everything that can go wrong, with the facts needed to act on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Two shapes that an op needs to agree (broadcast, matmul, concat…) do not.
    #[error("{op}: shapes {lhs} and {rhs} are incompatible{detail}")]
    ShapeMismatch {
        /// The op that needs the shapes to agree.
        op: &'static str,
        /// The first operand's shape.
        lhs: ShapeDisplay,
        /// The second operand's shape.
        rhs: ShapeDisplay,
        /// More on what disagrees, appended to the message as is (`": …"`, or empty).
        detail: String,
    },
    /// Two dtypes met (f32 and f64, a float and an integer…): they never
    /// mix silently.
    #[error("{op}: dtype mismatch, {lhs} and {rhs} (convert one with .to_dtype())")]
    DTypeMismatch {
        /// The op where the dtypes met.
        op: &'static str,
        /// The first operand's dtype.
        lhs: DType,
        /// The second operand's dtype.
        rhs: DType,
    },
    /// An op that is not defined on the dtype it was given (`exp` of an
    /// integer tensor, a gradient for a bool one…).
    #[error(
        "{op}: not defined for {dtype} tensors, only for {expected} (convert with .to_dtype())"
    )]
    DTypeUnsupported {
        /// The op that refused the dtype.
        op: &'static str,
        /// The dtype it was given.
        dtype: DType,
        /// The dtypes it takes, in words (`"f32 and f64"`).
        expected: &'static str,
    },
    /// An axis outside `-ndim..ndim` (negative ones count from the back).
    #[error("{op}: axis {axis} is out of range for a tensor of shape {shape}")]
    AxisOutOfRange {
        /// The op given the axis.
        op: &'static str,
        /// The axis as given (negative ones count from the back).
        axis: i64,
        /// The shape of the tensor the axis indexes.
        shape: ShapeDisplay,
    },
    /// A shape whose element count overflows, or a result larger than
    /// [`crate::max_tensor_bytes`]: refused before anything is allocated.
    #[error("{op}: a result of shape {shape} is too large ({}; the limit is {limit} bytes, see chainrule::set_max_tensor_bytes)",
        match bytes { Some(b) => format!("{b} bytes"), None => "its size overflows usize".to_string() })]
    TooLarge {
        /// The op that would have allocated the result.
        op: &'static str,
        /// The result's shape.
        shape: ShapeDisplay,
        /// The bytes it would take (`None`: more than `usize` counts).
        bytes: Option<usize>,
        /// The limit in force, in bytes ([`crate::max_tensor_bytes`]).
        limit: usize,
    },
    /// Any other invalid argument (an index, a length, a permutation…).
    #[error("{op}: {msg}")]
    InvalidArgument {
        /// The op or function that refused the argument.
        op: &'static str,
        /// What is wrong with it.
        msg: String,
    },
    /// A file could not be read, parsed or written; names the file.
    #[error("{path}: {msg}")]
    File {
        /// The file's path, as displayed.
        path: String,
        /// What went wrong with it.
        msg: String,
    },
    /// `backward` was called through a graph whose saved intermediates were freed.
    #[error(
        "backward through op `{op}` a second time: its saved intermediates were freed by \
         an earlier backward; pass retain_graph = true to the first backward to keep them"
    )]
    GraphFreed {
        /// The op whose saved intermediates are gone.
        op: &'static str,
    },
    /// The gradient handed to `backward` does not fit the output.
    #[error("backward: {msg}")]
    Backward {
        /// What went wrong, in words.
        msg: String,
    },
}

impl Error {
    pub(crate) fn shapes_detail(
        op: &'static str,
        lhs: &[usize],
        rhs: &[usize],
        detail: impl Into<String>,
    ) -> Self {
        Error::ShapeMismatch {
            op,
            lhs: ShapeDisplay(lhs.to_vec()),
            rhs: ShapeDisplay(rhs.to_vec()),
            detail: format!(": {}", detail.into()),
        }
    }

    pub(crate) fn axis(op: &'static str, axis: impl crate::Axis, shape: &[usize]) -> Self {
        Error::AxisOutOfRange {
            op,
            axis: axis.position(),
            shape: ShapeDisplay(shape.to_vec()),
        }
    }

    /// A problem with the file at `path`.
    pub fn file(path: impl AsRef<std::path::Path>, msg: impl Into<String>) -> Self {
        Error::File {
            path: path.as_ref().display().to_string(),
            msg: msg.into(),
        }
    }

    /// `op` refuses `dtype`; `expected` names the dtypes it takes.
    pub(crate) fn dtype(op: &'static str, dtype: DType, expected: &'static str) -> Self {
        Error::DTypeUnsupported {
            op,
            dtype,
            expected,
        }
    }

    /// `Ok` for a float dtype, else the error naming `op`.
    pub(crate) fn need_float(op: &'static str, dtype: DType) -> Result<()> {
        match dtype.is_float() {
            true => Ok(()),
            false => Err(Error::dtype(op, dtype, "f32 and f64")),
        }
    }

    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
        }
    }
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

/// Unwraps the result of a `try_*` method for its panicking twin.
#[track_caller]
pub(crate) fn or_panic<T>(r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}
