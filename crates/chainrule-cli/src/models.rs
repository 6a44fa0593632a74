//! The models `chainrule train` builds: a small convolutional net for the
//! 8×8 digits and a small decoder-only transformer for addition, each a
//! `#[derive(Module)]` struct of library layers.

use chainrule::nn::{self, Module};
use chainrule::{ConvOptions, DType, Pool2d, Result, Tensor};

/// Three 3×3 convolutions (each batch-normalized, ReLU) with 2×2 max
/// pooling after the second and third, then a linear classifier:
/// 8×8 → 8×8 → 4×4 → 2×2.
#[derive(nn::Module)]
pub struct DigitsCnn {
    conv1: nn::Conv2d,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2d,
    bn2: nn::BatchNorm,
    conv3: nn::Conv2d,
    bn3: nn::BatchNorm,
    head: nn::Linear,
}

impl DigitsCnn {
    /// The batch-normalization layers, first to last.
    pub fn batch_norms(&self) -> [&nn::BatchNorm; 3] {
        [&self.bn1, &self.bn2, &self.bn3]
    }

    /// `width` channels in the first layer, twice that after.
    pub fn new(width: usize, seed: u64) -> Result<DigitsCnn> {
        let same = ConvOptions::default().padding([1, 1]);
        let conv = |i, o, k| nn::Conv2d::new(i, o, [3, 3], same, seed.wrapping_add(k), DType::F32);
        let bn = |c| nn::BatchNorm2d::new_2d(c, DType::F32);
        Ok(DigitsCnn {
            conv1: conv(1, width, 1)?,
            bn1: bn(width),
            conv2: conv(width, 2 * width, 2)?,
            bn2: bn(2 * width),
            conv3: conv(2 * width, 2 * width, 3)?,
            bn3: bn(2 * width),
            head: nn::Linear::with_default_init(8 * width, 10, seed.wrapping_add(4), DType::F32),
        })
    }
}

impl Module for DigitsCnn {
    /// `x` is `(N, 64)` pixel rows (as the data set stores them) or `(N, 1, 8, 8)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = if x.ndim() == 2 {
            x.try_reshape(&[x.shape()[0], 1, 8, 8])?
        } else {
            x.clone()
        };
        let pool = Pool2d::new([2, 2]);
        let h = self.bn1.forward(&self.conv1.forward(&x)?)?.relu();
        let h = self.bn2.forward(&self.conv2.forward(&h)?)?.relu();
        let h = h.try_max_pool2d(pool)?;
        let h = self.bn3.forward(&self.conv3.forward(&h)?)?.relu();
        let h = h.try_max_pool2d(pool)?;
        self.head.forward(&nn::Flatten(1).forward(&h)?)
    }
}

/// A GPT-style language model: token and learned position embeddings,
/// causal pre-norm transformer blocks, a final layer norm and a linear
/// head over the vocabulary. Tokens `(N, T)` → logits `(N, T, vocab)`.
#[derive(nn::Module)]
pub struct TinyGpt {
    token: nn::Embedding,
    position: nn::Param,
    blocks: Vec<nn::TransformerBlock>,
    norm: nn::LayerNorm,
    head: nn::Linear,
}

impl TinyGpt {
    /// `vocab` tokens, sequences of at most `max_len`, and `layers` blocks
    /// of `heads` heads over `width` channels (feed-forward 4 × `width`).
    pub fn new(
        vocab: usize,
        max_len: usize,
        width: usize,
        heads: usize,
        layers: usize,
        seed: u64,
    ) -> Result<TinyGpt> {
        let f32 = DType::F32;
        Ok(TinyGpt {
            token: nn::Embedding::new(vocab, width, seed, f32),
            position: nn::Param::new(Tensor::rand_normal(
                &[max_len, width],
                0.0,
                0.1,
                seed ^ 0x905,
                f32,
            )),
            blocks: (0..layers)
                .map(|l| {
                    nn::TransformerBlock::new(
                        width,
                        heads,
                        4 * width,
                        true,
                        seed.wrapping_add(100 * (l as u64 + 1)),
                        f32,
                    )
                })
                .collect::<Result<_>>()?,
            norm: nn::LayerNorm::new(&[width], f32),
            head: nn::Linear::with_default_init(width, vocab, seed ^ 0x4EAD, f32),
        })
    }
}

impl Module for TinyGpt {
    fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        let t = tokens.shape().get(1).copied().unwrap_or(0);
        let max_len = self.position.shape()[0];
        if tokens.ndim() != 2 || t > max_len {
            return Err(chainrule::Error::InvalidArgument {
                op: "TinyGpt",
                msg: format!(
                    "expects tokens (batch, length ≤ {max_len}), got {:?}",
                    tokens.shape()
                ),
            });
        }
        let mut h = self
            .token
            .forward(tokens)?
            .try_add(&self.position.value().try_narrow(0, 0, t)?)?;
        for block in &self.blocks {
            h = block.forward(&h)?;
        }
        self.head.forward(&self.norm.forward(&h)?)
    }
}

/// Teacher-forced next-token logits for the `answer` after `prompt`:
/// `(N, A, vocab)`, position `i` predicting `answer[:, i]`.
pub fn answer_logits(model: &dyn Module, prompt: &Tensor, answer: &Tensor) -> Result<Tensor> {
    let (p, a) = (prompt.shape()[1], answer.shape()[1]);
    let input = Tensor::try_concat(&[prompt, &answer.try_narrow(1, 0, a - 1)?], 1)?;
    model.forward(&input)?.try_narrow(1, p - 1, a)
}

/// Greedy decoding of `len` tokens after `prompt`: `(N, len)` `i64`.
pub fn generate(model: &dyn Module, prompt: &Tensor, len: usize) -> Result<Tensor> {
    let mut seq = prompt.clone();
    for _ in 0..len {
        let logits = model.forward(&seq)?;
        let last = logits.try_narrow(1, seq.shape()[1] - 1, 1)?;
        let next = last.try_argmax(-1, false)?;
        seq = Tensor::try_concat(&[&seq, &next], 1)?;
    }
    seq.try_narrow(1, prompt.shape()[1], len)
}
