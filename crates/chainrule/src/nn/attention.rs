//! Embeddings and multi-head attention (batch first: `(N, L, E)`).

use super::conv::default_uniform;
use super::{Gelu, LayerNorm, Linear, Module, Param};
use crate::error::{Error, Result};
use crate::{DType, Tensor};

/// A lookup table: `i64` indices of any shape to their rows of `weight`
/// `(num, dim)`, initialized `N(0, 1)` as PyTorch. Its gradient sums the
/// rows' uses.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let emb = nn::Embedding::new(10, 4, 0, DType::F64);
/// let y = emb.forward(&Tensor::from_vec(vec![1i64, 7, 1, 3, 0, 9], &[2, 3])).unwrap();
/// assert_eq!(y.shape(), &[2, 3, 4]);
/// assert_eq!(&y.to_vec::<f64>()[..4], &emb.weight.value().to_vec::<f64>()[4..8]); // row 1
/// ```
#[derive(crate::nn::Module)]
pub struct Embedding {
    /// The table, `(num, dim)`.
    pub weight: Param,
}

impl Embedding {
    /// A table of `num` rows `dim` wide, drawn from `seed`.
    pub fn new(num: usize, dim: usize, seed: u64, dtype: DType) -> Embedding {
        Embedding {
            weight: Param::new(Tensor::rand_normal(&[num, dim], 0.0, 1.0, seed, dtype)),
        }
    }
}

impl Module for Embedding {
    fn forward(&self, index: &Tensor) -> Result<Tensor> {
        let weight = self.weight.value();
        let rows = weight.try_index_select(0, &index.try_reshape(&[index.numel()])?)?;
        let mut shape = index.shape().to_vec();
        shape.push(weight.shape()[1]);
        rows.try_reshape(&shape)
    }
}

/// What a query may not attend to. Masks are `bool`, `true` = masked.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionMask<'a> {
    /// Position `i` attends only to keys `0..=i` (needs `L == S`).
    pub causal: bool,
    /// `(N, S)`: keys to ignore per example (padding).
    pub key_padding: Option<&'a Tensor>,
    /// `(L, S)` or `(N·heads, L, S)`: any other pattern.
    pub attn: Option<&'a Tensor>,
}

/// Multi-head scaled dot-product attention with input and output
/// projections, as PyTorch's `nn.MultiheadAttention(batch_first=True)`
/// without dropout. `in_proj_weight` is `(E, 3E)` (`[q | k | v]` columns,
/// chainrule's `x W` layout), Xavier-uniform; biases zero.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let mha = nn::MultiheadAttention::new(8, 2, 0, DType::F64).unwrap();
/// let x = Tensor::rand_normal(&[2, 5, 8], 0.0, 1.0, 1, DType::F64); // (N, L, E)
/// assert_eq!(mha.forward(&x).unwrap().shape(), &[2, 5, 8]);
/// assert!(nn::MultiheadAttention::new(8, 3, 0, DType::F64).is_err()); // 3 does not divide 8
/// ```
#[derive(crate::nn::Module)]
pub struct MultiheadAttention {
    /// The query, key and value projections side by side, `(E, 3E)`.
    pub in_proj_weight: Param,
    /// Their biases, `(3E,)`.
    pub in_proj_bias: Param,
    /// The output projection, `E` to `E`.
    pub out_proj: Linear,
    /// The number of heads, each `E/heads` wide.
    #[module(skip)]
    pub heads: usize,
}

impl MultiheadAttention {
    /// Attention of width `embed` split into `heads` heads, drawn from
    /// `seed`; an error unless `heads` divides `embed`.
    pub fn new(embed: usize, heads: usize, seed: u64, dtype: DType) -> Result<MultiheadAttention> {
        if heads == 0 || !embed.is_multiple_of(heads) {
            return Err(Error::invalid(
                "MultiheadAttention",
                format!("{heads} heads must divide the width {embed}"),
            ));
        }
        let bound = (6.0 / (4 * embed) as f64).sqrt();
        let out_proj = Linear::from_tensors(
            default_uniform(&[embed, embed], embed, seed ^ 0x0A7, dtype),
            Tensor::zeros(&[embed], dtype),
        );
        Ok(MultiheadAttention {
            in_proj_weight: Param::new(Tensor::rand_uniform(
                &[embed, 3 * embed],
                -bound,
                bound,
                seed,
                dtype,
            )),
            in_proj_bias: Param::new(Tensor::zeros(&[3 * embed], dtype)),
            out_proj,
            heads,
        })
    }

    fn check_input(&self, x: &Tensor) -> Result<usize> {
        let e = self.out_proj.weight.shape()[0];
        if x.ndim() != 3 || x.shape()[2] != e {
            return Err(Error::shapes_detail(
                "MultiheadAttention",
                x.shape(),
                &[e],
                "inputs are (batch, length, width)",
            ));
        }
        Ok(e)
    }

    /// `x (N, T, E)` projected by `parts` consecutive thirds of the input
    /// projection from `first`, split into heads: `(N, parts·heads, T, E/heads)`.
    fn project(&self, x: &Tensor, first: usize, parts: usize) -> Result<Tensor> {
        let e = self.check_input(x)?;
        let mut w = self.in_proj_weight.value();
        let mut b = self.in_proj_bias.value();
        if parts < 3 {
            w = w.try_narrow(1, first * e, parts * e)?;
            b = b.try_narrow(0, first * e, parts * e)?;
        }
        let (n, t) = (x.shape()[0], x.shape()[1]);
        x.try_matmul(&w)?
            .try_add(&b)?
            .try_reshape(&[n, t, parts * self.heads, e / self.heads])?
            .try_permute(&[0, 2, 1, 3])
    }

    /// Attention of `query (N, L, E)` over `key`, `value (N, S, E)`.
    pub fn attend(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        mask: AttentionMask,
    ) -> Result<Tensor> {
        let q = self.project(query, 0, 1)?;
        let k = self.project(key, 1, 1)?;
        let v = self.project(value, 2, 1)?;
        self.combine(&q, &k, &v, mask)
    }

    /// Self-attention of `x (N, L, E)`: [`MultiheadAttention::attend`] with
    /// `x` as query, key and value, projected by one matrix product.
    pub fn self_attend(&self, x: &Tensor, mask: AttentionMask) -> Result<Tensor> {
        let qkv = self.project(x, 0, 3)?;
        let h = self.heads;
        let part = |i: usize| qkv.try_narrow(1, i * h, h);
        self.combine(&part(0)?, &part(1)?, &part(2)?, mask)
    }

    /// The heads `(N, heads, L|S, E/heads)` attended and projected out.
    fn combine(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: AttentionMask) -> Result<Tensor> {
        let (n, l, s) = (q.shape()[0], q.shape()[2], k.shape()[2]);
        let e = self.out_proj.weight.shape()[0];
        let masked = combined_mask(mask, n, self.heads, l, s)?;
        let heads = Tensor::try_scaled_dot_product_attention(q, k, v, masked.as_ref(), None)?;
        let joined = heads.try_permute(&[0, 2, 1, 3])?.try_reshape(&[n, l, e])?;
        self.out_proj.forward(&joined)
    }
}

/// The masks as one `bool` tensor broadcasting to the scores
/// `(N, heads, L, S)`, or `None` when nothing is masked.
fn combined_mask(
    mask: AttentionMask,
    n: usize,
    heads: usize,
    l: usize,
    s: usize,
) -> Result<Option<Tensor>> {
    let op = "MultiheadAttention";
    let mut parts: Vec<Tensor> = Vec::new();
    if mask.causal {
        if l != s {
            return Err(Error::invalid(
                op,
                format!("a causal mask needs as many queries as keys, got {l} and {s}"),
            ));
        }
        let future: Vec<bool> = (0..l * s).map(|p| p % s > p / s).collect();
        parts.push(Tensor::try_from_vec(future, &[l, s])?);
    }
    if let Some(m) = mask.key_padding {
        check_mask(m, &[n, s], "key_padding")?;
        parts.push(m.try_reshape(&[n, 1, 1, s])?);
    }
    if let Some(m) = mask.attn {
        if m.shape() == [l, s] {
            check_mask(m, &[l, s], "attn")?;
            parts.push(m.clone());
        } else {
            check_mask(m, &[n * heads, l, s], "attn")?;
            parts.push(m.try_reshape(&[n, heads, l, s])?);
        }
    }
    let mut combined: Option<Tensor> = None;
    for part in parts {
        combined = Some(match combined {
            None => part,
            Some(c) => c.try_logical_or(&part)?,
        });
    }
    Ok(combined)
}

fn check_mask(m: &Tensor, shape: &[usize], what: &str) -> Result<()> {
    if m.dtype() != DType::Bool || m.shape() != shape {
        return Err(Error::shapes_detail(
            "MultiheadAttention",
            m.shape(),
            shape,
            format!(
                "the {what} mask must be bool of the second shape ({:?} given)",
                m.dtype()
            ),
        ));
    }
    Ok(())
}

impl Module for MultiheadAttention {
    /// Self-attention of `x (N, L, E)`, nothing masked.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.self_attend(x, AttentionMask::default())
    }
}

/// A pre-norm transformer block (GPT-2's): `h = x + attn(ln₁(x))`, then
/// `h + fc₂(gelu(fc₁(ln₂(h))))`, attention causal when `causal`, the MLP
/// `mlp` wide. Inputs `(N, L, E)`.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{DType, Tensor};
/// let block = nn::TransformerBlock::new(8, 2, 32, true, 0, DType::F64).unwrap();
/// let x = Tensor::rand_normal(&[2, 5, 8], 0.0, 1.0, 1, DType::F64);
/// assert_eq!(block.forward(&x).unwrap().shape(), &[2, 5, 8]);
/// ```
#[derive(crate::nn::Module)]
pub struct TransformerBlock {
    /// The layer norm before attention, over `E`.
    pub ln1: LayerNorm,
    /// The self-attention.
    pub attn: MultiheadAttention,
    /// The layer norm before the MLP, over `E`.
    pub ln2: LayerNorm,
    /// The MLP's first layer, `E` to `mlp`.
    pub fc1: Linear,
    /// The MLP's second layer, `mlp` to `E`.
    pub fc2: Linear,
    /// Whether position `i` attends only to positions `0..=i`.
    #[module(skip)]
    pub causal: bool,
}

impl TransformerBlock {
    /// A block of width `embed` with `heads` heads and an MLP `mlp` wide,
    /// drawn from `seed`; an error unless `heads` divides `embed`.
    pub fn new(
        embed: usize,
        heads: usize,
        mlp: usize,
        causal: bool,
        seed: u64,
        dtype: DType,
    ) -> Result<TransformerBlock> {
        Ok(TransformerBlock {
            ln1: LayerNorm::new(&[embed], dtype),
            attn: MultiheadAttention::new(embed, heads, seed, dtype)?,
            ln2: LayerNorm::new(&[embed], dtype),
            fc1: Linear::with_default_init(embed, mlp, seed ^ 0xFC1, dtype),
            fc2: Linear::with_default_init(mlp, embed, seed ^ 0xFC2, dtype),
            causal,
        })
    }
}

impl Module for TransformerBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let a = self.ln1.forward(x)?;
        let mask = AttentionMask {
            causal: self.causal,
            ..Default::default()
        };
        let h = x.try_add(&self.attn.self_attend(&a, mask)?)?;
        let m = Gelu.forward(&self.fc1.forward(&self.ln2.forward(&h)?)?)?;
        h.try_add(&self.fc2.forward(&m)?)
    }
}
