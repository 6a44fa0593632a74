//! Shape and strides: how an n-d view maps onto a flat buffer.
//!
//! Transpose, reshape of contiguous data, broadcast and narrow only change a
//! [`Layout`]; the buffer is shared. Kernels take the contiguous fast path when
//! [`Layout::contiguous_range`] says so and fall back to [`Layout::offsets`].

use crate::error::{Error, Result};
use smallvec::SmallVec;

pub(crate) type Dims = SmallVec<[usize; 4]>;

/// Row-major strides of a contiguous tensor of this shape.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Dims {
    let mut strides: Dims = SmallVec::from_elem(0, shape.len());
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i];
    }
    strides
}

/// The NumPy broadcast of two shapes, or `None` when they do not broadcast.
pub(crate) fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Dims> {
    let n = a.len().max(b.len());
    let mut out: Dims = SmallVec::from_elem(0, n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub shape: Dims,
    pub strides: Dims,
    pub offset: usize,
}

/// By copying the dimensions as slices: `SmallVec`'s own `clone` goes
/// element by element through `extend`, and layouts are cloned on every op.
impl Clone for Layout {
    fn clone(&self) -> Self {
        Layout {
            shape: Dims::from_slice(&self.shape),
            strides: Dims::from_slice(&self.strides),
            offset: self.offset,
        }
    }
}

impl Layout {
    /// The layout of a 0-d value.
    pub fn scalar() -> Self {
        Layout {
            shape: SmallVec::new(),
            strides: SmallVec::new(),
            offset: 0,
        }
    }

    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: SmallVec::from_slice(shape),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// `Some(start..end)` when the view is a plain row-major run of the buffer.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        let mut expected = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != expected {
                return None;
            }
            expected *= self.shape[i];
        }
        Some(self.offset..self.offset + expected)
    }

    /// Buffer offsets of every element, in row-major order of the view.
    pub fn offsets(&self) -> StridedOffsets<'_> {
        StridedOffsets::new(self)
    }

    /// The same buffer seen with `shape` broadcast (NumPy rules) to `target`.
    pub fn broadcast_to(&self, target: &[usize]) -> Option<Layout> {
        if target.len() < self.shape.len() {
            return None;
        }
        let lead = target.len() - self.shape.len();
        let mut strides: Dims = SmallVec::from_elem(0, target.len());
        for i in 0..self.shape.len() {
            let (d, t) = (self.shape[i], target[lead + i]);
            strides[lead + i] = if d == t {
                self.strides[i]
            } else if d == 1 {
                0
            } else {
                return None;
            };
        }
        Some(Layout {
            shape: SmallVec::from_slice(target),
            strides,
            offset: self.offset,
        })
    }

    pub fn permute(&self, perm: &[usize]) -> Layout {
        Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }

    /// Whether an axis of more than one element has stride 0: the view
    /// repeats elements of its buffer (expanded, broadcast).
    pub fn repeats(&self) -> bool {
        self.shape
            .iter()
            .zip(&self.strides)
            .any(|(&n, &s)| n > 1 && s == 0)
    }

    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Layout {
        let mut l = self.clone();
        l.offset += start * self.strides[axis];
        l.shape[axis] = len;
        l
    }

    /// A reshape that keeps the buffer: possible when the view is contiguous.
    pub fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        let range = self.contiguous_range()?;
        Some(Layout {
            shape: SmallVec::from_slice(shape),
            strides: contiguous_strides(shape),
            offset: range.start,
        })
    }

    /// `reshape` as a strided view where one exists, contiguous or not:
    /// each run of old axes that steps through memory as one axis (a
    /// transposed matrix with a unit axis added, say) is split into the new
    /// axes of the same extent. `None` when the elements cannot be walked
    /// in row-major order under `shape` with strides.
    pub fn reshape_strided(&self, shape: &[usize]) -> Option<Layout> {
        if let Some(l) = self.reshape(shape) {
            return Some(l);
        }
        if self.numel() != shape.iter().product::<usize>() {
            return None;
        }
        let old: Vec<(usize, usize)> = (0..self.shape.len())
            .filter(|&a| self.shape[a] != 1)
            .map(|a| (self.shape[a], self.strides[a]))
            .collect();
        let mut strides: Dims = SmallVec::from_elem(0, shape.len());
        let (mut oi, mut ni) = (0, 0);
        while ni < shape.len() {
            if shape[ni] == 1 {
                ni += 1;
                continue;
            }
            // The shortest runs of old and new axes with one extent.
            let (mut oj, mut nj) = (oi + 1, ni + 1);
            let (mut old_extent, mut new_extent) = (old.get(oi)?.0, shape[ni]);
            while old_extent != new_extent {
                if old_extent < new_extent {
                    old_extent *= old.get(oj)?.0;
                    oj += 1;
                } else {
                    new_extent *= *shape.get(nj)?;
                    nj += 1;
                }
            }
            if (oi..oj - 1).any(|k| old[k].1 != old[k + 1].1 * old[k + 1].0) {
                return None;
            }
            let mut stride = old[oj - 1].1;
            for k in (ni..nj).rev() {
                strides[k] = stride;
                stride *= shape[k];
            }
            (oi, ni) = (oj, nj);
        }
        Some(Layout {
            shape: SmallVec::from_slice(shape),
            strides,
            offset: self.offset,
        })
    }
}

/// Checks `axis < ndim` for an op.
pub(crate) fn check_axis(op: &'static str, axis: usize, shape: &[usize]) -> Result<()> {
    if axis >= shape.len() {
        return Err(Error::axis(op, axis, shape));
    }
    Ok(())
}

/// Iterator over the buffer offsets of a strided view, innermost axis fastest.
/// The views with adjacent axes merged wherever every view steps through
/// the pair as through one axis, and unit axes dropped: the same elements in
/// the same order, in fewer, longer runs.
pub(crate) fn coalesce<const N: usize>(layouts: [&Layout; N]) -> [Layout; N] {
    let shape = &layouts[0].shape;
    let mut out: [Layout; N] = std::array::from_fn(|k| Layout {
        shape: Dims::new(),
        strides: Dims::new(),
        offset: layouts[k].offset,
    });
    for i in 0..shape.len() {
        if shape[i] == 1 {
            continue;
        }
        let merge = !out[0].shape.is_empty()
            && (0..N).all(|k| {
                let last = out[k].strides.len() - 1;
                out[k].strides[last] == layouts[k].strides[i] * shape[i]
            });
        for k in 0..N {
            if merge {
                let last = out[k].shape.len() - 1;
                out[k].shape[last] *= shape[i];
                out[k].strides[last] = layouts[k].strides[i];
            } else {
                out[k].shape.push(shape[i]);
                out[k].strides.push(layouts[k].strides[i]);
            }
        }
    }
    out
}

/// Copies the elements of view `sl` of `src` into view `dl` of `dst` (the
/// same shape), a run along the innermost merged axis at a time.
pub(crate) fn copy_view<T: Copy>(dst: &mut [T], dl: &Layout, src: &[T], sl: &Layout) {
    let [d, s] = coalesce([dl, sl]);
    let n = d.shape.len();
    if n == 0 {
        dst[d.offset] = src[s.offset];
        return;
    }
    let (len, ds, ss) = (d.shape[n - 1], d.strides[n - 1], s.strides[n - 1]);
    let mut run = |a: usize, b: usize| {
        if ds == 1 && ss == 1 && len >= 16 {
            dst[a..a + len].copy_from_slice(&src[b..b + len]);
        } else {
            for k in 0..len {
                dst[a + k * ds] = src[b + k * ss];
            }
        }
    };
    if n == 2 {
        // Rows of a matrix (a column block of a concatenation): plain index
        // arithmetic, where the offsets iterator's per-row cost would
        // dominate runs of a few elements.
        let (dr, sr) = (d.strides[0], s.strides[0]);
        (0..d.shape[0]).for_each(|r| run(d.offset + r * dr, s.offset + r * sr));
        return;
    }
    let outer = |l: &Layout| Layout {
        shape: l.shape[..n - 1].into(),
        strides: l.strides[..n - 1].into(),
        offset: l.offset,
    };
    for (a, b) in outer(&d).offsets().zip(outer(&s).offsets()) {
        run(a, b);
    }
}

/// Calls `f(start, len, stride)` for each run along the last axis of a view
/// (after [`coalesce`]), in row-major order.
#[inline]
pub(crate) fn for_each_run(l: &Layout, mut f: impl FnMut(usize, usize, usize)) {
    match l.shape.len() {
        0 => f(l.offset, 1, 1),
        n => {
            let (len, stride) = (l.shape[n - 1], l.strides[n - 1]);
            let outer = Layout {
                shape: l.shape[..n - 1].into(),
                strides: l.strides[..n - 1].into(),
                offset: l.offset,
            };
            for start in outer.offsets() {
                f(start, len, stride);
            }
        }
    }
}

pub(crate) struct StridedOffsets<'a> {
    layout: &'a Layout,
    /// The position along each axis but the innermost.
    index: Dims,
    next: usize,
    remaining: usize,
    /// Steps left along the innermost axis before the walk carries into
    /// the outer ones, and its stride: most steps are one addition.
    inner_left: usize,
    inner_stride: usize,
}

impl<'a> StridedOffsets<'a> {
    fn new(layout: &'a Layout) -> Self {
        StridedOffsets {
            layout,
            index: SmallVec::from_elem(0, layout.shape.len().saturating_sub(1)),
            next: layout.offset,
            remaining: layout.numel(),
            inner_left: layout.shape.last().map_or(0, |&n| n.saturating_sub(1)),
            inner_stride: layout.strides.last().copied().unwrap_or(0),
        }
    }

    /// Moves `next` from the end of an innermost run to the start of the
    /// next one.
    #[cold]
    fn carry(&mut self) {
        let (shape, strides) = (&self.layout.shape, &self.layout.strides);
        let Some(last) = shape.len().checked_sub(1) else {
            return;
        };
        let run = shape[last] - 1;
        self.next -= run * strides[last];
        for i in (0..last).rev() {
            self.index[i] += 1;
            if self.index[i] < shape[i] {
                self.next += strides[i];
                break;
            }
            self.next -= (shape[i] - 1) * strides[i];
            self.index[i] = 0;
        }
        self.inner_left = run;
    }
}

impl Iterator for StridedOffsets<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.next;
        if self.inner_left > 0 {
            self.inner_left -= 1;
            self.next += self.inner_stride;
        } else if self.remaining > 0 {
            self.carry();
        }
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedOffsets<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(broadcast_shapes(&[3, 1], &[4]).unwrap().as_slice(), &[3, 4]);
        assert_eq!(broadcast_shapes(&[], &[2, 2]).unwrap().as_slice(), &[2, 2]);
        assert!(broadcast_shapes(&[3], &[4]).is_none());
    }

    #[test]
    fn transposed_offsets_walk_columns() {
        let l = Layout::contiguous(&[2, 3]).permute(&[1, 0]);
        assert_eq!(l.offsets().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
        assert!(l.contiguous_range().is_none());
    }

    #[test]
    fn copy_view_fills_column_blocks_rows_and_transposes() {
        // Each case: destination view of a 5×20 buffer, source view of a
        // 20×5 one; every element must land where the offsets say.
        let dst_full = Layout::contiguous(&[5, 20]);
        let src_full = Layout::contiguous(&[20, 5]);
        let cases = [
            (
                dst_full.narrow(1, 3, 2),
                src_full.permute(&[1, 0]).narrow(1, 7, 2),
            ),
            (
                dst_full.narrow(1, 0, 18),
                src_full.permute(&[1, 0]).narrow(1, 1, 18),
            ),
            (
                dst_full.narrow(0, 1, 3).narrow(1, 2, 17),
                src_full.permute(&[1, 0]).narrow(0, 2, 3).narrow(1, 0, 17),
            ),
            (
                Layout::contiguous(&[2, 5, 20]).narrow(2, 4, 3),
                Layout::contiguous(&[2, 5, 3]),
            ),
            (
                Layout::contiguous(&[2, 2, 5, 10]).narrow(3, 1, 3),
                Layout::contiguous(&[5, 2, 2, 3]).permute(&[1, 2, 0, 3]),
            ),
            (
                Layout::contiguous(&[200]).narrow(0, 5, 7),
                Layout::contiguous(&[200]).narrow(0, 50, 7),
            ),
        ];
        for (dl, sl) in cases {
            let src: Vec<f64> = (0..200).map(f64::from).collect();
            let mut dst = vec![-1.0; 200];
            copy_view(&mut dst, &dl, &src, &sl);
            let mut expected = vec![-1.0; 200];
            for (a, b) in offsets(&dl).into_iter().zip(offsets(&sl)) {
                expected[a] = src[b];
            }
            assert_eq!(dst, expected, "{dl:?} from {sl:?}");
        }
    }

    /// Every element's offset, in row-major order of the layout's shape.
    fn offsets(l: &Layout) -> Vec<usize> {
        let n = l.numel();
        (0..n)
            .map(|mut flat| {
                let mut off = l.offset;
                for a in (0..l.shape.len()).rev() {
                    off += (flat % l.shape[a]) * l.strides[a];
                    flat /= l.shape[a];
                }
                off
            })
            .collect()
    }

    /// The offsets iterator walks every element in row-major order: 0-d,
    /// permuted, expanded, narrowed, with axes of one and of none.
    #[test]
    fn offsets_walk_every_element_in_order() {
        let layouts = [
            Layout::contiguous(&[]),
            Layout::contiguous(&[7]).narrow(0, 2, 4),
            Layout::contiguous(&[2, 3, 4]).permute(&[2, 0, 1]),
            Layout::contiguous(&[3, 1])
                .broadcast_to(&[2, 3, 5])
                .unwrap(),
            Layout::contiguous(&[4, 1, 6])
                .narrow(2, 1, 4)
                .narrow(0, 1, 2),
            Layout::contiguous(&[2, 0, 3]),
            Layout::contiguous(&[1, 1]),
        ];
        for l in layouts {
            let walked: Vec<usize> = l.offsets().collect();
            assert_eq!(walked, offsets(&l), "{l:?}");
            assert_eq!(l.offsets().len(), l.numel(), "{l:?}");
        }
    }

    #[test]
    fn strided_reshapes_walk_the_same_elements_or_refuse() {
        let t = Layout::contiguous(&[8, 256, 1]).permute(&[1, 0, 2]);
        for shape in [&[256, 8][..], &[256, 8, 1], &[1, 256, 1, 8], &[16, 16, 8]] {
            let r = t.reshape_strided(shape).expect("a view");
            assert_eq!(offsets(&r), offsets(&t), "{shape:?}");
        }
        // Merging the transposed axes would need a copy.
        assert!(t.reshape_strided(&[2048]).is_none());
        assert!(t.reshape_strided(&[8, 256]).is_none());
        assert!(t.reshape_strided(&[100]).is_none());
    }
}
