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

/// The letters standing for the axes an ellipsis covers: outside ASCII, so
/// never a spec's own.
fn ellipsis_letter(k: usize) -> char {
    char::from_u32(0x2460 + k as u32).expect("a circled number")
}

/// The spec's operand letters and output letters, given the operands'
/// ranks. An ellipsis stands for the axes its operand's letters leave,
/// right-aligned across operands as NumPy broadcasts them. With no `->`,
/// the output is the ellipsis's axes, then the letters used once in
/// alphabetical order (NumPy's rule).
fn parse(spec: &str, ranks: &[usize]) -> Result<(Vec<Vec<char>>, Vec<char>)> {
    let spec: String = spec.chars().filter(|c| !c.is_whitespace()).collect();
    let (inputs, output) = match spec.split_once("->") {
        Some((i, o)) => (i.to_string(), Some(o.to_string())),
        None => (spec.clone(), None),
    };
    let written: Vec<&str> = inputs.split(',').collect();
    if written.len() != ranks.len() {
        return Err(bad(format!(
            "{spec:?} names {} operands, got {}",
            written.len(),
            ranks.len()
        )));
    }
    let letters = |t: &str| -> Result<Vec<char>> {
        let named: Vec<char> = t.replacen("...", "", 1).chars().collect();
        match named.iter().find(|c| !c.is_ascii_alphabetic()) {
            Some(c) => Err(bad(format!("{spec:?}: {c:?} is not a letter"))),
            None => Ok(named),
        }
    };
    let mut covered = Vec::with_capacity(ranks.len());
    for (t, &rank) in written.iter().zip(ranks) {
        let named = letters(t)?.len();
        covered.push(match t.contains("...") {
            true if rank >= named => rank - named,
            _ if rank == named => 0,
            _ => return Err(bad(format!("{t:?} has {named} letters for {rank} axes"))),
        });
    }
    let widest = covered.iter().copied().max().unwrap_or(0);
    let ellipsis = |n: usize| -> String { (widest - n..widest).map(ellipsis_letter).collect() };
    let terms: Vec<Vec<char>> = written
        .iter()
        .zip(&covered)
        .map(|(t, &n)| t.replacen("...", &ellipsis(n), 1).chars().collect())
        .collect();
    let output: Vec<char> = match output {
        Some(o) => {
            letters(&o)?;
            o.replacen("...", &ellipsis(widest), 1).chars().collect()
        }
        None => {
            let all: Vec<char> = terms.concat();
            let mut once: Vec<char> = all.iter().copied().filter(|c| c.is_ascii()).collect();
            once.sort_unstable();
            once.dedup();
            once.retain(|c| all.iter().filter(|d| *d == c).count() == 1);
            ellipsis(widest).chars().chain(once).collect()
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
/// (`parse` has matched the letters to the operand's rank.)
fn term(value: &Tensor, mut letters: Vec<char>) -> Result<Term> {
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

/// The terms with each letter of size 1 broadcast to the size another
/// term gives it (sizes that differ otherwise fail in the contraction).
fn broadcast(terms: Vec<Term>) -> Result<Vec<Term>> {
    let size = |c: char| {
        terms
            .iter()
            .filter(|t| t.letters.contains(&c))
            .map(|t| t.size(c))
            .max()
            .unwrap_or(1)
    };
    let sizes: Vec<Vec<usize>> = terms
        .iter()
        .map(|t| t.letters.iter().map(|&c| size(c)).collect())
        .collect();
    terms
        .into_iter()
        .zip(sizes)
        .map(|(t, want)| {
            let to: Vec<usize> = t
                .value
                .shape()
                .iter()
                .zip(&want)
                .map(|(&d, &w)| if d == 1 { w } else { d })
                .collect();
            let value = if to == t.value.shape() {
                t.value
            } else {
                t.value.try_broadcast_to(&to)?
            };
            Ok(Term {
                value,
                letters: t.letters,
            })
        })
        .collect()
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
    /// Einstein summation, like `torch.einsum`:
    /// `Tensor::einsum("ij,jk->ik", &[&a, &b])` is a matrix product,
    /// `"ii->i"` a diagonal, `"ij->"` a sum, `"...ij,...jk->...ik"` a
    /// batched product (an ellipsis's axes broadcast, as do letters of size
    /// 1); with no `->`, the output has the ellipsis's axes, then the
    /// letters used once, alphabetically. Operands are contracted left to
    /// right, each pair as one batched matmul.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert!(Tensor::try_einsum("ij,jk->ik", &[&a]).is_err()); // two operands named
    /// let diagonal = Tensor::try_einsum("ii->i", &[&a]).unwrap();
    /// assert_eq!(diagonal.to_vec::<f64>(), [1.0, 4.0]);
    /// ```
    pub fn try_einsum(spec: &str, operands: &[&Tensor]) -> Result<Tensor> {
        let ranks: Vec<usize> = operands.iter().map(|t| t.ndim()).collect();
        let (letters, output) = parse(spec, &ranks)?;
        let terms = operands
            .iter()
            .zip(letters)
            .map(|(t, l)| term(t, l))
            .collect::<Result<Vec<_>>>()?;
        let mut terms = broadcast(terms)?.into_iter();
        let mut acc = terms.next().ok_or_else(|| bad("needs an operand"))?;
        let rest: Vec<Term> = terms.collect();
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
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let b = Tensor::from_vec(vec![5.0f64, 6.0], &[2, 1]);
    /// let c = Tensor::einsum("ij,jk->ik", &[&a, &b]);
    /// assert_eq!(c.shape(), &[2, 1]);
    /// assert_eq!(c.to_vec::<f64>(), [17.0, 39.0]);
    /// ```
    #[track_caller]
    pub fn einsum(spec: &str, operands: &[&Tensor]) -> Tensor {
        crate::error::or_panic(Self::try_einsum(spec, operands))
    }
}
