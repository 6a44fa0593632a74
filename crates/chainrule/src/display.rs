//! How a tensor prints.
//!
//! `{}` lays the values out as numpy and PyTorch do: one row per line,
//! columns right-aligned to one width, a blank line between the matrices of
//! a 3-d tensor, and `...` in place of the middle of each long axis once the
//! tensor has more than [`SUMMARIZE_OVER`] elements (only the elements shown
//! are read). Floats get 4 decimals, or the precision the format asks for
//! (`{:.2}`); whole numbers print as `3.`, and values too large or too small
//! for fixed notation switch the whole tensor to scientific notation.
//! `{:?}` wraps the same layout in `tensor(…)` with the shape, dtype and the
//! op that made the tensor.

use crate::dtype::Scalar;
use crate::storage::with_scalar;
use crate::tensor::Tensor;
use crate::DType;
use std::fmt::{self, Write};

/// Tensors with more elements than this print only the edges of each axis.
const SUMMARIZE_OVER: usize = 1000;
/// How many items print at each end of a summarized axis.
const EDGE_ITEMS: usize = 3;
/// Decimals of floats when the format gives no precision (PyTorch's).
const DEFAULT_PRECISION: usize = 4;
/// Where a row of numbers wraps onto the next line.
const LINE_WIDTH: usize = 80;

/// Per axis, the indices shown; `None` stands for the `...` of a
/// summarized axis.
type Shown = Vec<Vec<Option<usize>>>;

fn shown_indices(shape: &[usize], summarize: bool) -> Shown {
    shape
        .iter()
        .map(|&n| {
            if summarize && n > 2 * EDGE_ITEMS {
                (0..EDGE_ITEMS)
                    .map(Some)
                    .chain([None])
                    .chain((n - EDGE_ITEMS..n).map(Some))
                    .collect()
            } else {
                (0..n).map(Some).collect()
            }
        })
        .collect()
}

/// The storage offsets of the shown elements, in row-major order.
fn shown_offsets(t: &Tensor, shown: &Shown) -> Vec<usize> {
    let layout = t.layout();
    let mut offsets = vec![layout.offset];
    for (axis, indices) in shown.iter().enumerate() {
        let stride = layout.strides[axis];
        offsets = offsets
            .iter()
            .flat_map(|&base| indices.iter().flatten().map(move |&i| base + i * stride))
            .collect();
    }
    offsets
}

/// How every float of one tensor is written, chosen from all of them so
/// that the columns line up.
#[derive(Clone, Copy)]
enum FloatStyle {
    /// Every value is a whole number and no precision was asked for: `3.`
    Whole,
    Fixed(usize),
    Scientific(usize),
}

fn float_style(values: &[f64], precision: Option<usize>) -> FloatStyle {
    let finite = || values.iter().filter(|v| v.is_finite()).map(|v| v.abs());
    let largest = finite().fold(0.0, f64::max);
    let smallest_nonzero = finite().filter(|&v| v > 0.0).fold(f64::INFINITY, f64::min);
    let digits = precision.unwrap_or(DEFAULT_PRECISION);
    if largest >= 1e8 || smallest_nonzero < 1e-4 {
        FloatStyle::Scientific(digits)
    } else if precision.is_none() && finite().all(|v| v.fract() == 0.0) {
        FloatStyle::Whole
    } else {
        FloatStyle::Fixed(digits)
    }
}

fn format_float(v: f64, style: FloatStyle) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    match style {
        FloatStyle::Whole => format!("{v:.0}."),
        FloatStyle::Fixed(digits) => format!("{v:.digits$}"),
        FloatStyle::Scientific(digits) => {
            // Rust writes `1.5e-5`; numpy and PyTorch write `1.5e-05`.
            let text = format!("{v:.digits$e}");
            let (mantissa, exponent) = text.split_once('e').expect("`e` format");
            let exponent: i32 = exponent.parse().expect("an integer exponent");
            let sign = if exponent < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exponent.abs())
        }
    }
}

/// The shown elements as text, in row-major order.
fn cells(t: &Tensor, offsets: &[usize], precision: Option<usize>) -> Vec<String> {
    match t.dtype() {
        DType::F32 | DType::F64 => {
            let values: Vec<f64> = with_scalar!(t.dtype(), E => {
                let buffer = t.buffer::<E>();
                offsets.iter().map(|&o| buffer[o].to_f64()).collect()
            });
            let style = float_style(&values, precision);
            values.iter().map(|&v| format_float(v, style)).collect()
        }
        _ => with_scalar!(t.dtype(), E => {
            let buffer = t.buffer::<E>();
            offsets.iter().map(|&o| buffer[o].to_string()).collect()
        }),
    }
}

/// Writes the values of `t` laid out as nested lists, continuation lines
/// indented by `indent` columns (the width of what precedes the layout on
/// its first line).
pub(crate) fn write_values(
    out: &mut impl Write,
    t: &Tensor,
    indent: usize,
    precision: Option<usize>,
) -> fmt::Result {
    if t.is_batched() {
        return out.write_str("<batched by vmap: one value per example>");
    }
    if t.numel() == 0 {
        return out.write_str("[]");
    }
    let shown = shown_indices(t.shape(), t.numel() > SUMMARIZE_OVER);
    let mut cells = cells(t, &shown_offsets(t, &shown), precision);
    let width = cells.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    for c in &mut cells {
        *c = format!("{c:>width$}");
    }
    let mut next = cells.into_iter();
    Block {
        shown: &shown,
        indent,
    }
    .write(out, 0, &mut next)
}

/// The nested-list layout of the shown cells.
struct Block<'a> {
    shown: &'a Shown,
    indent: usize,
}

impl Block<'_> {
    fn write(
        &self,
        out: &mut impl Write,
        axis: usize,
        cells: &mut impl Iterator<Item = String>,
    ) -> fmt::Result {
        let ndim = self.shown.len();
        if ndim == 0 {
            return out.write_str(&cells.next().unwrap_or_default());
        }
        if axis + 1 == ndim {
            return self.write_row(out, axis, cells);
        }
        let pad = " ".repeat(self.indent + axis + 1);
        // One newline between rows, a blank line between matrices, …
        let gap = "\n".repeat(ndim - axis - 1);
        out.write_char('[')?;
        for (k, index) in self.shown[axis].iter().enumerate() {
            if k > 0 {
                write!(out, ",{gap}{pad}")?;
            }
            match index {
                Some(_) => self.write(out, axis + 1, cells)?,
                None => out.write_str("...")?,
            }
        }
        out.write_char(']')
    }

    /// The last axis: items on one line, wrapped at [`LINE_WIDTH`].
    fn write_row(
        &self,
        out: &mut impl Write,
        axis: usize,
        cells: &mut impl Iterator<Item = String>,
    ) -> fmt::Result {
        let start = self.indent + axis + 1;
        let mut column = start;
        out.write_char('[')?;
        for (k, index) in self.shown[axis].iter().enumerate() {
            let item = match index {
                Some(_) => cells.next().unwrap_or_default(),
                None => "...".to_string(),
            };
            let len = item.chars().count();
            if k > 0 {
                if column + 2 + len + 1 > LINE_WIDTH {
                    write!(out, ",\n{}", " ".repeat(start))?;
                    column = start;
                } else {
                    out.write_str(", ")?;
                    column += 2;
                }
            }
            out.write_str(&item)?;
            column += len;
        }
        out.write_char(']')
    }
}

impl fmt::Display for Tensor {
    /// ```
    /// use chainrule::Tensor;
    /// let m = Tensor::from_vec(vec![1.0f64, -2.5, 3.75, 4.0], &[2, 2]);
    /// assert_eq!(format!("{m}"), "[[ 1.0000, -2.5000],\n [ 3.7500,  4.0000]]");
    /// assert_eq!(format!("{m:.1}"), "[[ 1.0, -2.5],\n [ 3.8,  4.0]]");
    /// assert_eq!(format!("{}", Tensor::from_vec(vec![1.0f32, 2.0], &[2])), "[1., 2.]");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_values(f, self, 0, f.precision())
    }
}

impl fmt::Debug for Tensor {
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1i64, 20, 300], &[3]);
    /// assert_eq!(format!("{x:?}"), "tensor([  1,  20, 300], shape=[3], dtype=i64)");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const OPEN: &str = "tensor(";
        f.write_str(OPEN)?;
        write_values(f, self, OPEN.len(), f.precision())?;
        write!(f, ", shape={:?}, dtype={}", self.shape(), self.dtype())?;
        if let Some(op) = self.op_name() {
            write!(f, ", grad_fn={op}")?;
        }
        f.write_char(')')
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Tensor};

    fn f64s(data: Vec<f64>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(data, shape)
    }

    #[test]
    fn scalars_vectors_and_3d_blocks_are_laid_out() {
        assert_eq!(format!("{}", Tensor::scalar(0.5f64)), "0.5000");
        assert_eq!(
            format!("{:?}", Tensor::scalar(2.0f32)),
            "tensor(2., shape=[], dtype=f32)"
        );
        let t = Tensor::arange(8, DType::I64).reshape(&[2, 2, 2]);
        assert_eq!(
            format!("{t}"),
            "[[[0, 1],\n  [2, 3]],\n\n [[4, 5],\n  [6, 7]]]"
        );
        assert_eq!(
            format!("{t:?}"),
            "tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]], shape=[2, 2, 2], dtype=i64)"
        );
        assert_eq!(format!("{}", Tensor::zeros(&[2, 0], DType::F64)), "[]");
    }

    #[test]
    fn a_view_prints_its_own_elements() {
        let m = f64s(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        assert_eq!(format!("{}", m.t()), "[[1., 4.],\n [2., 5.],\n [3., 6.]]");
        assert_eq!(format!("{}", m.narrow(1, 1, 2)), "[[2., 3.],\n [5., 6.]]");
    }

    #[test]
    fn floats_switch_to_scientific_notation_together() {
        let t = f64s(vec![1.5e-5, 2.0, -3e9], &[3]);
        assert_eq!(format!("{t}"), "[ 1.5000e-05,  2.0000e+00, -3.0000e+09]");
        assert_eq!(format!("{t:.1}"), "[ 1.5e-05,  2.0e+00, -3.0e+09]");
        let odd = f64s(vec![f64::NAN, f64::NEG_INFINITY, 0.25], &[3]);
        assert_eq!(format!("{odd}"), "[   nan,   -inf, 0.2500]");
    }

    #[test]
    fn large_tensors_print_their_edges() {
        let t = Tensor::arange(2000, DType::I32).reshape(&[100, 20]);
        let s = format!("{t}");
        assert_eq!(s.lines().count(), 7, "{s}");
        assert!(
            s.starts_with("[[   0,    1,    2, ...,   17,   18,   19],"),
            "{s}"
        );
        assert!(s.contains("\n ...,\n"), "{s}");
        assert!(
            s.ends_with("[1980, 1981, 1982, ..., 1997, 1998, 1999]]"),
            "{s}"
        );
        // Under the threshold nothing is left out; long rows wrap.
        let row = format!("{}", Tensor::arange(40, DType::I64));
        assert!(
            row.lines().all(|l| l.chars().count() <= super::LINE_WIDTH),
            "{row}"
        );
        assert_eq!(row.matches(',').count(), 39, "{row}");
    }

    #[test]
    fn debug_names_the_op_that_made_the_tensor() {
        let x = f64s(vec![1.0, 2.0], &[2]).requires_grad();
        let y = &x * 3.0;
        assert_eq!(
            format!("{y:?}"),
            "tensor([3., 6.], shape=[2], dtype=f64, grad_fn=mul_scalar)"
        );
    }
}
