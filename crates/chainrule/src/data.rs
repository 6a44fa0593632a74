//! Data sets and mini-batches: an in-memory [`Dataset`], seeded shuffling,
//! the synthetic linear-regression data of the classic first lesson, and the
//! 8×8 handwritten digits shipped with the crate.

use crate::error::{Error, Result};
use crate::{DType, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::io::Read;

/// What a data set predicts.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Regression targets, one row per example.
    Values(Tensor),
    /// Class labels, one per example: a 1-d `i64` tensor.
    Labels(Tensor),
    /// A sequence of token labels per example: a 2-d `i64` tensor `(N, T)`.
    Sequences(Tensor),
}

/// Examples `x` (one row per example, first axis) and their targets.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The examples, one per row along the first axis.
    pub x: Tensor,
    /// The targets, one per example.
    pub y: Targets,
}

impl Dataset {
    /// Checks that `x` and `y` have one entry per example.
    pub fn new(x: Tensor, y: Targets) -> Result<Dataset> {
        let n = x.shape().first().copied().unwrap_or(0);
        let m = match &y {
            Targets::Values(t) => t.shape().first().copied().unwrap_or(0),
            Targets::Labels(l) => index_targets(l, 1, "labels")?,
            Targets::Sequences(t) => index_targets(t, 2, "sequence targets")?,
        };
        if x.ndim() == 0 || n != m {
            return Err(Error::invalid(
                "Dataset",
                format!("{n} examples (x of shape {:?}) but {m} targets", x.shape()),
            ));
        }
        Ok(Dataset { x, y })
    }

    /// The number of examples: the length of `x`'s first axis.
    pub fn len(&self) -> usize {
        self.x.shape()[0]
    }

    /// Whether the data set has no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The examples at `index`, in that order.
    pub fn subset(&self, index: &[usize]) -> Dataset {
        Dataset {
            x: self.x.index_select(0, index),
            y: match &self.y {
                Targets::Values(t) => Targets::Values(t.index_select(0, index)),
                Targets::Labels(l) => Targets::Labels(l.index_select(0, index)),
                Targets::Sequences(t) => Targets::Sequences(t.index_select(0, index)),
            },
        }
    }

    /// A seeded random split into (train, test), `test_fraction` of the
    /// examples going to test.
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let order = permutation(self.len(), seed);
        let n_test = ((self.len() as f64) * test_fraction).round() as usize;
        let (test, train) = order.split_at(n_test.min(self.len()));
        (self.subset(train), self.subset(test))
    }

    /// Mini-batches of `batch_size` (the last may be smaller), in a seeded
    /// random order when `shuffle_seed` is given, else in order.
    pub fn batches(&self, batch_size: usize, shuffle_seed: Option<u64>) -> Batches<'_> {
        let order = match shuffle_seed {
            Some(seed) => permutation(self.len(), seed),
            None => (0..self.len()).collect(),
        };
        Batches {
            data: self,
            order,
            batch_size: batch_size.max(1),
            next: 0,
            shard: (0, 1),
        }
    }

    /// This process's part of [`Dataset::batches`] in data-parallel
    /// training over `ranks` processes (PyTorch's `DistributedSampler`):
    /// every rank draws the same seeded order and cuts the same global
    /// batches of `batch_size`, and rank `rank` takes the `rank`-th of
    /// `ranks` nearly equal slices of each. Together the ranks see exactly
    /// the batches one process would; a slice is empty when a global batch
    /// has fewer examples than there are ranks.
    ///
    /// ```
    /// use chainrule::{data::{Dataset, Targets}, Tensor};
    /// let column = |v: Vec<f64>| Tensor::from_vec(v, &[5, 1]);
    /// let x = column(vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    /// let ds = Dataset::new(x, Targets::Values(column(vec![0.0; 5]))).unwrap();
    /// let whole: Vec<usize> = ds.batches(4, Some(7)).map(|b| b.len()).collect();
    /// let ours: Vec<usize> = ds.shard_batches(4, Some(7), 1, 2).map(|b| b.len()).collect();
    /// assert_eq!((whole, ours), (vec![4, 1], vec![2, 1])); // rank 0 gets [2, 0]
    /// ```
    pub fn shard_batches(
        &self,
        batch_size: usize,
        shuffle_seed: Option<u64>,
        rank: usize,
        ranks: usize,
    ) -> Batches<'_> {
        let ranks = ranks.max(1);
        Batches {
            shard: (rank.min(ranks - 1), ranks),
            ..self.batches(batch_size, shuffle_seed)
        }
    }
}

/// The example count of class targets: an `i64` tensor of rank `rank`.
fn index_targets(t: &Tensor, rank: usize, what: &str) -> Result<usize> {
    if t.ndim() != rank || t.dtype() != DType::I64 {
        return Err(Error::invalid(
            "Dataset",
            format!(
                "{what} must be a {rank}-d i64 tensor, not {} of shape {:?}",
                t.dtype(),
                t.shape()
            ),
        ));
    }
    Ok(t.shape()[0])
}

fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order
}

/// The iterator of [`Dataset::batches`].
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
    /// (rank, ranks): the slice of each global batch this process takes.
    shard: (usize, usize),
}

impl Batches<'_> {
    /// The size of the global batch the next item is cut from (0 at the
    /// end): with [`Dataset::shard_batches`], a rank's share of the batch's
    /// mean loss is its slice's length over this.
    pub fn global_len(&self) -> usize {
        (self.order.len() - self.next).min(self.batch_size)
    }
}

impl Iterator for Batches<'_> {
    type Item = Dataset;

    fn next(&mut self) -> Option<Dataset> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let (rank, ranks) = self.shard;
        let cut = |r: usize| self.next + (end - self.next) * r / ranks;
        let batch = self.data.subset(&self.order[cut(rank)..cut(rank + 1)]);
        self.next = end;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// The tokens of [`addition`]: digits are themselves, then these two.
pub const PLUS: i64 = 10;
/// The `=` token of [`addition`], which ends each prompt.
pub const EQUALS: i64 = 11;
/// The vocabulary size of [`addition`].
pub const ADDITION_VOCAB: usize = 12;

/// Which examples of [`addition`] to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Pairs never in [`Part::HeldOut`].
    Train,
    /// About one pair in ten, fixed by a hash of the pair: sums a model
    /// trained on [`Part::Train`] has never seen.
    HeldOut,
}

/// `count` random sums of two `digits`-digit numbers, as a language-model
/// task: `x` is the prompt `a + b =` (each number's digits most significant
/// first, zero-padded; `(N, 2·digits + 2)` `i64`), and the target sequence
/// is the sum's `digits + 1` digits least significant first (the order in
/// which carries are computed), `(N, digits + 1)` `i64`.
pub fn addition(digits: usize, count: usize, part: Part, seed: u64) -> Result<Dataset> {
    if !(1..=9).contains(&digits) {
        return Err(Error::invalid(
            "addition",
            format!("digits must be 1 to 9, got {digits}"),
        ));
    }
    let base = 10u64.pow(digits as u32);
    let held_out = |a: u64, b: u64| splitmix(a * base + b).is_multiple_of(10);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut prompts, mut sums) = (Vec::new(), Vec::new());
    let mut drawn = 0;
    while drawn < count {
        let (a, b) = (rng.random_range(0..base), rng.random_range(0..base));
        if held_out(a, b) != (part == Part::HeldOut) {
            continue;
        }
        push_digits(&mut prompts, a, digits);
        prompts.push(PLUS);
        push_digits(&mut prompts, b, digits);
        prompts.push(EQUALS);
        let mut s = a + b;
        for _ in 0..=digits {
            sums.push((s % 10) as i64);
            s /= 10;
        }
        drawn += 1;
    }
    Dataset::new(
        Tensor::from_vec(prompts, &[count, 2 * digits + 2]),
        Targets::Sequences(Tensor::from_vec(sums, &[count, digits + 1])),
    )
}

fn push_digits(out: &mut Vec<i64>, n: u64, digits: usize) {
    for k in (0..digits).rev() {
        out.push(((n / 10u64.pow(k as u32)) % 10) as i64);
    }
}

/// One step of SplitMix64 from `x`: a well-mixed hash.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The true parameters of [`linear_regression`].
pub const LINREG_W: [f64; 2] = [2.0, -3.4];
/// The true bias of [`linear_regression`].
pub const LINREG_B: f64 = 4.2;

/// `n` examples of `y = x·w + b + ε` with `w = [2, −3.4]`, `b = 4.2`,
/// `x ~ N(0, 1)` of shape `(n, 2)`, noise `ε ~ N(0, 0.01²)`; `y` is `(n, 1)`.
/// (The synthetic data of *Dive into Deep Learning*'s first lesson.)
pub fn linear_regression(n: usize, seed: u64, dtype: DType) -> Dataset {
    let x = Tensor::rand_normal(&[n, 2], 0.0, 1.0, seed, DType::F64);
    let noise = Tensor::rand_normal(&[n, 1], 0.0, 0.01, seed.wrapping_add(1), DType::F64);
    let w = Tensor::from_slice(&LINREG_W, &[2, 1]);
    let y = x.matmul(&w) + LINREG_B + noise;
    Dataset {
        x: x.to_dtype(dtype),
        y: Targets::Values(y.to_dtype(dtype)),
    }
}

/// The UCI optical-recognition handwritten digits, test set (1,797 images,
/// 8×8 pixels of intensity 0–16, 10 classes), compressed inside the crate.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// The 8×8 digits as `x` of shape `(1797, 64)` scaled to `[0, 1]`, with
/// labels 0–9. Source: E. Alpaydin and C. Kaynak, *Optical Recognition of
/// Handwritten Digits*, UCI Machine Learning Repository (1998), CC BY 4.0,
/// <https://doi.org/10.24432/C50P49>; this is the copy scikit-learn ships
/// as `load_digits`. See `data/README.md`.
pub fn digits(dtype: DType) -> Result<Dataset> {
    parse_digits(DIGITS_CSV_GZ, "data/digits.csv.gz", dtype)
}

/// Parses the gzip-compressed CSV of [`digits`]: 64 pixel values then the
/// label on each line.
pub fn parse_digits(gz: &[u8], name: &str, dtype: DType) -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .map_err(|e| Error::file(name, format!("not gzip-compressed text: {e}")))?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            return Err(Error::file(
                name,
                format!(
                    "line {}: expected 65 comma-separated values (64 pixels and a label), got {}",
                    i + 1,
                    fields.len()
                ),
            ));
        }
        for (j, f) in fields.iter().enumerate() {
            let v: f64 = f.trim().parse().map_err(|_| {
                Error::file(
                    name,
                    format!("line {}, field {}: {f:?} is not a number", i + 1, j + 1),
                )
            })?;
            if j < 64 {
                if !(0.0..=16.0).contains(&v) {
                    return Err(Error::file(
                        name,
                        format!("line {}: pixel {v} is outside 0..16", i + 1),
                    ));
                }
                pixels.push(v / 16.0);
            } else {
                if !(0.0..=9.0).contains(&v) || v.fract() != 0.0 {
                    return Err(Error::file(
                        name,
                        format!("line {}: label {v} is not a digit", i + 1),
                    ));
                }
                labels.push(v as i64);
            }
        }
    }
    let n = labels.len();
    Dataset::new(
        Tensor::from_vec(pixels, &[n, 64]).to_dtype(dtype),
        Targets::Labels(Tensor::from_vec(labels, &[n])),
    )
}
