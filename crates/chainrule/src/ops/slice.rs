//! Slicing several axes in one call, with steps: `x.slice(&[(..).into(),
//! Slice::from(1..).step(2)])`, NumPy's `x[:, 1::2]`. A unit step is a view
//! (`narrow`); another step picks its entries (`index_select`), so every
//! slice is differentiable like its parts.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::ops::{Range, RangeFrom, RangeFull, RangeInclusive, RangeTo};

/// One axis's slice: `start..end` by `step`; negative bounds count from
/// the end, as in Python. A negative step walks backwards from `start`
/// (default: the last entry) down to, not including, `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    /// The first entry picked (`None`: the first or, stepping backwards,
    /// the last).
    pub start: Option<i64>,
    /// The bound not reached (`None`: past the end in the step's direction).
    pub end: Option<i64>,
    /// The distance between picked entries, negative backwards; not 0.
    pub step: i64,
}

impl Slice {
    /// `start..end` by `step`, each bound optional: the form for what a
    /// Rust range cannot say without a lint (`x[7:2:-2]` is
    /// `Slice::new(Some(7), Some(2), -2)`).
    pub fn new(start: Option<i64>, end: Option<i64>, step: i64) -> Slice {
        Slice { start, end, step }
    }

    /// The same bounds taken every `step` entries.
    pub fn step(self, step: i64) -> Slice {
        Slice { step, ..self }
    }

    /// The entries this slice picks on an axis of length `n`, in order.
    fn indices(&self, n: usize) -> Result<Vec<usize>> {
        if self.step == 0 {
            return Err(Error::invalid("slice", "a step of 0"));
        }
        let n = n as i64;
        // Python's rule: bounds clamp to the axis, negative ones from the end.
        let clamp = |v: i64, lo: i64, hi: i64| {
            let v = if v < 0 { v + n } else { v };
            v.clamp(lo, hi)
        };
        let picked: Vec<i64> = if self.step > 0 {
            let start = self.start.map_or(0, |s| clamp(s, 0, n));
            let end = self.end.map_or(n, |e| clamp(e, 0, n));
            (start..end).step_by(self.step as usize).collect()
        } else {
            let start = self.start.map_or(n - 1, |s| clamp(s, -1, n - 1));
            let end = self.end.map_or(-1, |e| clamp(e, -1, n - 1));
            let by = self.step.unsigned_abs() as usize;
            ((end + 1)..=start).rev().step_by(by).collect()
        };
        Ok(picked.into_iter().map(|i| i as usize).collect())
    }
}

impl From<RangeFull> for Slice {
    fn from(_: RangeFull) -> Slice {
        Slice {
            start: None,
            end: None,
            step: 1,
        }
    }
}

impl From<Range<i64>> for Slice {
    fn from(r: Range<i64>) -> Slice {
        Slice {
            start: Some(r.start),
            end: Some(r.end),
            step: 1,
        }
    }
}

impl From<RangeFrom<i64>> for Slice {
    fn from(r: RangeFrom<i64>) -> Slice {
        Slice {
            start: Some(r.start),
            end: None,
            step: 1,
        }
    }
}

impl From<RangeTo<i64>> for Slice {
    fn from(r: RangeTo<i64>) -> Slice {
        Slice {
            start: None,
            end: Some(r.end),
            step: 1,
        }
    }
}

impl From<RangeInclusive<i64>> for Slice {
    fn from(r: RangeInclusive<i64>) -> Slice {
        let end = *r.end();
        // `a..=-1` runs to the last entry.
        let end = if end == -1 { None } else { Some(end + 1) };
        Slice {
            start: Some(*r.start()),
            end,
            step: 1,
        }
    }
}

impl From<i64> for Slice {
    /// One entry, keeping its axis (length 1).
    fn from(i: i64) -> Slice {
        let end = if i == -1 { None } else { Some(i + 1) };
        Slice {
            start: Some(i),
            end,
            step: 1,
        }
    }
}

impl Tensor {
    /// The entries `slices[a]` picks along each axis `a` (axes past the
    /// list are taken whole), like NumPy's `x[s0, s1, …]` with slices. A
    /// unit step gives a view.
    ///
    /// ```
    /// use chainrule::{Slice, Tensor};
    /// let x = Tensor::from_vec(vec![0.0f64, 1.0, 2.0, 3.0, 4.0, 5.0], &[6]);
    /// assert!(x.try_slice(&[Slice::from(..).step(0)]).is_err());
    /// let odd = x.try_slice(&[Slice::from(1..).step(2)]).unwrap();
    /// assert_eq!(odd.to_vec::<f64>(), [1.0, 3.0, 5.0]);
    /// ```
    pub fn try_slice(&self, slices: &[Slice]) -> Result<Tensor> {
        if slices.len() > self.ndim() {
            return Err(Error::invalid(
                "slice",
                format!("{} slices for shape {:?}", slices.len(), self.shape()),
            ));
        }
        let mut out = self.clone();
        for (axis, s) in slices.iter().enumerate() {
            let picked = s.indices(self.shape()[axis])?;
            let run = picked.windows(2).all(|w| w[1] == w[0] + 1);
            out = match (run, picked.first()) {
                (true, Some(&first)) => out.try_narrow(axis, first, picked.len())?,
                _ => out.try_index_select(axis, &picked)?,
            };
        }
        Ok(out)
    }

    /// Panicking form of [`Tensor::try_slice`].
    ///
    /// ```
    /// use chainrule::{Slice, Tensor};
    /// let x = Tensor::from_vec(vec![0.0f64, 1.0, 2.0, 3.0, 4.0, 5.0], &[2, 3]);
    /// // NumPy's x[:, ::-1]
    /// let y = x.slice(&[(..).into(), Slice::new(None, None, -1)]);
    /// assert_eq!(y.to_vec::<f64>(), [2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
    /// ```
    #[track_caller]
    pub fn slice(&self, slices: &[Slice]) -> Tensor {
        crate::error::or_panic(self.try_slice(slices))
    }

    /// `value` where the `bool` tensor `mask` holds, else `self`
    /// (broadcasting), like `torch.Tensor.masked_fill`.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, -2.0, 3.0], &[3]);
    /// let mask = Tensor::from_vec(vec![false, true, false], &[3]);
    /// assert!(x.try_masked_fill(&x, 0.0).is_err()); // the mask must be bool
    /// let y = x.try_masked_fill(&mask, 0.0).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [1.0, 0.0, 3.0]);
    /// ```
    pub fn try_masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        Tensor::try_where_(mask, &Tensor::try_full(&[], value, self.dtype())?, self)
    }

    /// Panicking form of [`Tensor::try_masked_fill`].
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let first_column = Tensor::from_vec(vec![true, false], &[2]);
    /// let y = x.masked_fill(&first_column, -1.0);
    /// assert_eq!(y.to_vec::<f64>(), [-1.0, 2.0, -1.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Tensor {
        crate::error::or_panic(self.try_masked_fill(mask, value))
    }
}
