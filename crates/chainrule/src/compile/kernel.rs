//! A fused kernel as the planner hands it to the code generator: one loop
//! nest over an iteration shape, reading strided operands, computing a list
//! of elementwise instructions in registers, and writing stores and
//! reductions. Shapes, strides and offsets are constants here, so the code
//! generator bakes them into the machine code.

use crate::layout::Layout;
use crate::ops::{BinaryOp, CompareOp, ReduceOp, UnaryOp};
use crate::DType;

/// One walk of a buffer the kernel touches, over the iteration space:
/// element `offset + Σ iₐ·strides[a]` of the buffer at pointer-table entry
/// `buffer` (operands in one buffer share the entry: `llsq`'s 128 narrows
/// of one vector are one pointer). The offset is negative for a piece that
/// starts past the loop's start: it is only read within its piece.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Operand {
    pub buffer: usize,
    pub dtype: DType,
    pub offset: isize,
    pub strides: Vec<isize>,
    /// A gathered operand (a fused `index_select`): element
    /// `offset + Σ iₐ·strides[a] + index·step`, with `index` the `i64` that
    /// operand `by` holds where the loop is. `by` walks the gathered axis
    /// (stride 0 here); its values were checked to be in range.
    pub gather: Option<Gather>,
}

/// How a gathered [`Operand`] is indexed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Gather {
    pub by: usize,
    pub step: isize,
}

/// A loop cut along `axis` into segments that start at `starts` (the first
/// at 0), each reading its own piece of every [`Instr::Piece`]; walked from
/// the last element to the first when `descending` (values carried from
/// later elements).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Split {
    pub axis: usize,
    pub starts: Vec<usize>,
    pub descending: bool,
}

/// What one segment of a split loop reads for an [`Instr::Piece`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Part {
    /// Operand `o`, walked over the whole loop (read within the segment).
    Load(usize),
    /// A constant (the zeros around a padded block).
    Const(f64),
    /// Instruction `value`'s result `shift` elements earlier along the split
    /// axis (later, when negative): computed by an earlier iteration of this
    /// loop and kept in registers.
    Carry { value: usize, shift: isize },
}

/// One instruction; arguments are indices of earlier instructions.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Instr {
    Load(usize),
    /// A concatenation or padding: per segment of the split loop, its part.
    Piece(Vec<Part>),
    Unary(UnaryOp, usize),
    Binary(BinaryOp, usize, usize),
    Compare(CompareOp, usize, usize),
    Where(usize, usize, usize),
    Cast(DType, usize),
    /// `operand[offset] = value` (the operand has the iteration shape).
    Store {
        operand: usize,
        value: usize,
    },
    /// `operand[offset] ⊕= value`, with stride 0 along the reduced axes.
    Reduce {
        op: ReduceOp,
        operand: usize,
        value: usize,
    },
}

/// A kernel: loops over `dims` running `instrs` (each with its dtype).
#[derive(Clone, Debug, Default)]
pub(crate) struct Kernel {
    pub dims: Vec<usize>,
    pub operands: Vec<Operand>,
    pub instrs: Vec<(Instr, DType)>,
    pub split: Option<Split>,
}

impl Kernel {
    pub fn new(shape: &[usize]) -> Kernel {
        Kernel {
            dims: shape.to_vec(),
            ..Kernel::default()
        }
    }

    /// Adds an operand walked with `layout` (already broadcast to the
    /// iteration shape) in pointer-table entry `buffer`; returns its index.
    pub fn operand(&mut self, buffer: usize, layout: &Layout, dtype: DType) -> usize {
        debug_assert_eq!(layout.shape.as_slice(), self.dims.as_slice());
        self.operand_at(buffer, &layout.strides, layout.offset as isize, dtype)
    }

    /// An operand walked with `strides` from `offset` at the loop's start
    /// (which may lie before the buffer: see [`Operand`]).
    pub fn operand_at(
        &mut self,
        buffer: usize,
        strides: &[usize],
        offset: isize,
        dtype: DType,
    ) -> usize {
        debug_assert_eq!(strides.len(), self.dims.len());
        self.operands.push(Operand {
            buffer,
            dtype,
            offset,
            strides: strides.iter().map(|&s| s as isize).collect(),
            gather: None,
        });
        self.operands.len() - 1
    }

    /// Whether operand `o` only indexes gathered operands (it is never
    /// loaded as a value).
    pub fn is_index(&self, o: usize) -> bool {
        self.operands
            .iter()
            .any(|p| p.gather.is_some_and(|g| g.by == o))
    }

    /// Whether operand `o` is the same element on every iteration.
    fn fixed(&self, o: usize) -> bool {
        let walks = |o: &Operand| o.strides.iter().any(|&s| s != 0);
        let operand = &self.operands[o];
        !walks(operand) && operand.gather.is_none_or(|g| !walks(&self.operands[g.by]))
    }

    pub fn push(&mut self, instr: Instr, dtype: DType) -> usize {
        self.instrs.push((instr, dtype));
        self.instrs.len() - 1
    }

    /// Drops axes of length 1 and merges neighbouring axes that every
    /// operand walks as one (a row-major pair): a same-shape elementwise
    /// chain becomes one flat loop. A split loop's axis stays an axis of
    /// its own, and so does a gathered one (its index operand walks it
    /// alone).
    pub fn collapse(&mut self) {
        let split = self.split.as_ref().map(|s| s.axis);
        let keep: Vec<usize> = (0..self.dims.len())
            .filter(|&a| self.dims[a] != 1 || Some(a) == split)
            .collect();
        if self.dims.contains(&0) {
            return;
        }
        let mut dims: Vec<usize> = Vec::new();
        let mut strides: Vec<Vec<isize>> = vec![Vec::new(); self.operands.len()];
        let mut after_split = false;
        for &a in &keep {
            let n = self.dims[a];
            let merges = !dims.is_empty()
                && !after_split
                && Some(a) != split
                && self.operands.iter().zip(&strides).all(|(o, s)| {
                    *s.last().expect("one per kept axis") == o.strides[a] * n as isize
                });
            if merges {
                *dims.last_mut().expect("not empty") *= n;
                for (o, s) in self.operands.iter().zip(&mut strides) {
                    *s.last_mut().expect("not empty") = o.strides[a];
                }
            } else {
                dims.push(n);
                for (o, s) in self.operands.iter().zip(&mut strides) {
                    s.push(o.strides[a]);
                }
            }
            after_split = Some(a) == split;
            if let Some(s) = self.split.as_mut().filter(|_| after_split) {
                s.axis = dims.len() - 1;
            }
        }
        self.dims = dims;
        for (o, s) in self.operands.iter_mut().zip(strides) {
            o.strides = s;
        }
    }

    /// Whether each instruction's value is the same on every iteration
    /// (computed once, before the loops): loads of stride-0 operands and
    /// elementwise ops on such values.
    pub fn invariant(&self) -> Vec<bool> {
        let mut inv = Vec::with_capacity(self.instrs.len());
        for (instr, _) in &self.instrs {
            let v = match *instr {
                Instr::Load(o) => self.fixed(o),
                Instr::Piece(_) => false,
                Instr::Unary(_, a) | Instr::Cast(_, a) => inv[a],
                Instr::Binary(_, a, b) | Instr::Compare(_, a, b) => inv[a] && inv[b],
                Instr::Where(c, a, b) => inv[c] && inv[a] && inv[b],
                Instr::Store { .. } | Instr::Reduce { .. } => false,
            };
            inv.push(v);
        }
        inv
    }

    /// The longest chain of dependent instructions in one iteration's
    /// body (invariant ones computed before the loops do not count).
    pub fn chain_depth(&self) -> usize {
        let invariant = self.invariant();
        let mut depth: Vec<usize> = Vec::with_capacity(self.instrs.len());
        for (i, (instr, _)) in self.instrs.iter().enumerate() {
            let args: &[usize] = match instr {
                Instr::Unary(_, a) | Instr::Cast(_, a) => &[*a],
                Instr::Binary(_, a, b) | Instr::Compare(_, a, b) => &[*a, *b],
                Instr::Where(c, a, b) => &[*c, *a, *b],
                Instr::Store { value, .. } | Instr::Reduce { value, .. } => &[*value],
                Instr::Load(_) | Instr::Piece(_) => &[],
            };
            let deepest = args.iter().map(|&a| depth[a]).max().unwrap_or(0);
            depth.push(if invariant[i] { 0 } else { deepest + 1 });
        }
        depth.into_iter().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapse_merges_row_major_axes_and_keeps_broadcast_ones() {
        let mut k = Kernel::new(&[4, 1, 5]);
        k.operand(0, &Layout::contiguous(&[4, 1, 5]), DType::F32);
        k.collapse();
        assert_eq!(k.dims, [20]);
        assert_eq!(k.operands[0].strides, [1]);

        let mut k = Kernel::new(&[4, 5]);
        k.operand(0, &Layout::contiguous(&[4, 5]), DType::F32);
        k.operand(
            1,
            &Layout::contiguous(&[5]).broadcast_to(&[4, 5]).unwrap(),
            DType::F32,
        );
        k.collapse();
        assert_eq!(k.dims, [4, 5]);
        assert_eq!(k.operands[1].strides, [0, 1]);
    }

    #[test]
    fn chain_depth_counts_the_longest_dependent_path_past_invariants() {
        let mut k = Kernel::new(&[8]);
        let x = k.operand(0, &Layout::contiguous(&[8]), DType::F64);
        let c = k.operand(
            1,
            &Layout::contiguous(&[1]).broadcast_to(&[8]).unwrap(),
            DType::F64,
        );
        let (lx, lc) = (
            k.push(Instr::Load(x), DType::F64),
            k.push(Instr::Load(c), DType::F64),
        );
        let twice_c = k.push(Instr::Binary(BinaryOp::Add, lc, lc), DType::F64); // invariant
        let mut p = k.push(Instr::Binary(BinaryOp::Mul, lx, twice_c), DType::F64);
        for _ in 0..3 {
            p = k.push(Instr::Binary(BinaryOp::Add, p, lx), DType::F64);
        }
        k.push(
            Instr::Store {
                operand: x,
                value: p,
            },
            DType::F64,
        );
        // The load of x, the mul, three adds, the store.
        assert_eq!(k.chain_depth(), 6);
    }
}
