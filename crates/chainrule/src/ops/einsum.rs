//! `einsum`: a composite of diagonal, sum, permute, reshape and one batched
//! matmul per pair of operands, so every mode, graph and `vmap` follows.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// An operand with one letter per axis, no letter twice.
struct Term {
    value: Tensor,
    letters: Vec<char>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("einsum", msg)
}

/// The spec's operand letters and output letters (NumPy's implicit output
/// when there is no `->`: the letters used once, in alphabetical order).
fn parse(spec: &str, count: usize) -> Result<(Vec<Vec<char>>, Vec<char>)> {
    let spec: String = spec.chars().filter(|c| !c.is_whitespace()).collect();
    let (inputs, output) = match spec.split_once("->") {
        Some((i, o)) => (i.to_string(), Some(o.to_string())),
        None => (spec.clone(), None),
    };
    let terms: Vec<Vec<char>> = inputs.split(',').map(|t| t.chars().collect()).collect();
    if terms.len() != count {
        return Err(bad(format!(
            "{spec:?} names {} operands, got {count}",
            terms.len()
        )));
    }
    if let Some(c) = spec
        .chars()
        .find(|c| !(c.is_ascii_alphabetic() || ",->".contains(*c)))
    {
        return Err(bad(format!(
            "{spec:?}: {c:?} is not a letter (ellipses are not supported)"
        )));
    }
    let output = match output {
        Some(o) => o.chars().collect(),
        None => {
            let mut once: Vec<char> = terms.concat();
            once.sort_unstable();
            let all = once.clone();
            once.dedup();
            once.retain(|c| all.iter().filter(|d| *d == c).count() == 1);
            once
        }
    };
    for (i, c) in output.iter().enumerate() {
        if output[..i].contains(c) || !terms.iter().any(|t| t.contains(c)) {
            return Err(bad(format!(
                "{spec:?}: output letter {c:?} repeats or is in no operand"
            )));
        }
    }
    Ok((terms, output))
}

/// The operand with each repeated letter's axes replaced by their diagonal.
fn term(value: &Tensor, mut letters: Vec<char>) -> Result<Term> {
    if letters.len() != value.ndim() {
        return Err(bad(format!(
            "{} letters for an operand of shape {:?}",
            letters.len(),
            value.shape()
        )));
    }
    let mut value = value.clone();
    while let Some((p, q)) = repeated(&letters) {
        if value.shape()[p] != value.shape()[q] {
            return Err(bad(format!(
                "{:?} sizes {:?} twice differently",
                letters[p],
                value.shape()
            )));
        }
        let mut perm: Vec<usize> = (0..letters.len()).filter(|&a| a != p && a != q).collect();
        perm.extend([p, q]);
        value = value.try_permute(&perm)?.try_diagonal(0)?;
        let c = letters[p];
        letters = perm[..perm.len() - 2].iter().map(|&a| letters[a]).collect();
        letters.push(c);
    }
    Ok(Term { value, letters })
}

fn repeated(letters: &[char]) -> Option<(usize, usize)> {
    (0..letters.len()).find_map(|p| {
        (p + 1..letters.len())
            .find(|&q| letters[q] == letters[p])
            .map(|q| (p, q))
    })
}

impl Term {
    fn size(&self, c: char) -> usize {
        let at = self
            .letters
            .iter()
            .position(|&d| d == c)
            .expect("a letter of the term");
        self.value.shape()[at]
    }

    /// Summed over the letters `keep` does not hold.
    fn reduce(self, keep: &[char]) -> Result<Term> {
        let axes: Vec<usize> = (0..self.letters.len())
            .filter(|&a| !keep.contains(&self.letters[a]))
            .collect();
        if axes.is_empty() {
            return Ok(self);
        }
        let letters = self
            .letters
            .iter()
            .copied()
            .filter(|c| keep.contains(c))
            .collect();
        Ok(Term {
            value: self.value.try_sum_axes(&axes, false)?,
            letters,
        })
    }

    /// Axes permuted to the order of `order`, then merged into the groups'
    /// products (`groups` counts letters per merged axis).
    fn arranged(&self, order: &[char], groups: &[usize]) -> Result<Tensor> {
        let perm: Vec<usize> = order
            .iter()
            .map(|c| {
                self.letters
                    .iter()
                    .position(|d| d == c)
                    .expect("a letter of the term")
            })
            .collect();
        let moved = self.value.try_permute(&perm)?;
        let mut shape = Vec::with_capacity(groups.len());
        let mut at = 0;
        for &g in groups {
            shape.push(moved.shape()[at..at + g].iter().product());
            at += g;
        }
        moved.try_reshape(&shape)
    }
}

/// `a` and `b` contracted, keeping the letters in `keep`: a batched matmul
/// `(batch, free a, summed) × (batch, summed, free b)`.
fn contract(a: Term, b: Term, keep: &[char]) -> Result<Term> {
    let a = a.reduce(&[keep, &b.letters].concat())?;
    let b = b.reduce(&[keep, &a.letters].concat())?;
    let in_b = |c: &char| b.letters.contains(c);
    for c in a.letters.iter().filter(|c| in_b(c)) {
        if a.size(*c) != b.size(*c) {
            return Err(Error::shapes_detail(
                "einsum",
                a.value.shape(),
                b.value.shape(),
                format!("letter {c:?} sizes differ"),
            ));
        }
    }
    let batch: Vec<char> = a
        .letters
        .iter()
        .copied()
        .filter(|c| in_b(c) && keep.contains(c))
        .collect();
    let summed: Vec<char> = a
        .letters
        .iter()
        .copied()
        .filter(|c| in_b(c) && !keep.contains(c))
        .collect();
    let free_a: Vec<char> = a.letters.iter().copied().filter(|c| !in_b(c)).collect();
    let free_b: Vec<char> = b
        .letters
        .iter()
        .copied()
        .filter(|c| !a.letters.contains(c))
        .collect();
    let groups = |x: &[char], y: &[char]| [batch.len(), x.len(), y.len()];
    let lhs = a.arranged(
        &[&batch[..], &free_a, &summed].concat(),
        &groups(&free_a, &summed),
    )?;
    let rhs = b.arranged(
        &[&batch[..], &summed, &free_b].concat(),
        &groups(&summed, &free_b),
    )?;
    let sizes = |t: &Term, cs: &[char]| cs.iter().map(|&c| t.size(c)).collect::<Vec<_>>();
    let shape = [sizes(&a, &batch), sizes(&a, &free_a), sizes(&b, &free_b)].concat();
    let value = lhs.try_matmul(&rhs)?.try_reshape(&shape)?;
    Ok(Term {
        value,
        letters: [batch, free_a, free_b].concat(),
    })
}

impl Tensor {
    /// Einstein summation, like `torch.einsum` (without ellipses):
    /// `Tensor::einsum("ij,jk->ik", &[&a, &b])` is a matrix product,
    /// `"ii->i"` a diagonal, `"ij->"` a sum; with no `->`, the output has
    /// the letters used once, alphabetically. Operands are contracted left
    /// to right, each pair as one batched matmul.
    pub fn try_einsum(spec: &str, operands: &[&Tensor]) -> Result<Tensor> {
        let (letters, output) = parse(spec, operands.len())?;
        let mut terms = operands.iter().zip(letters).map(|(t, l)| term(t, l));
        let mut acc = terms.next().expect("at least one operand")?;
        let rest = terms.collect::<Result<Vec<_>>>()?;
        // Each contraction keeps the output's letters and the later operands'.
        let later: Vec<Vec<char>> = (0..rest.len())
            .map(|k| {
                rest[k + 1..]
                    .iter()
                    .flat_map(|t| t.letters.clone())
                    .collect()
            })
            .collect();
        for (next, later) in rest.into_iter().zip(later) {
            acc = contract(acc, next, &[&output[..], &later].concat())?;
        }
        let acc = acc.reduce(&output)?;
        let perm: Vec<usize> = output
            .iter()
            .map(|c| acc.letters.iter().position(|d| d == c).expect("kept"))
            .collect();
        acc.value.try_permute(&perm)
    }

    /// Panicking form of [`Tensor::try_einsum`].
    #[track_caller]
    pub fn einsum(spec: &str, operands: &[&Tensor]) -> Tensor {
        crate::error::or_panic(Self::try_einsum(spec, operands))
    }
}
