//! Convolution and pooling, as composites of existing primitives, so that
//! every mode (reverse, forward, Hessians, graphs, `vmap`) has them with no
//! rule of their own.
//!
//! The core is [`Tensor::try_unfold2d`] (PyTorch's `F.unfold`, "im2col"):
//! pad, flatten the spatial axes, and pick every window's pixels with one
//! `index_select`. Its adjoint is `index_add` (col2im), already a primitive.
//! A convolution is then one batched GEMM of the weights with the columns;
//! a pooling is a reduction over each window's axis.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::DType;

/// Stride, padding, dilation and groups of a convolution over `D` spatial
/// axes, PyTorch's defaults by [`Default`]: stride 1, no padding, dilation
/// 1, one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvOptions<const D: usize> {
    /// The step between windows along each spatial axis.
    pub stride: [usize; D],
    /// The zero padding added on both sides of each spatial axis.
    pub padding: [usize; D],
    /// The spacing between a kernel's elements along each spatial axis.
    pub dilation: [usize; D],
    /// The number of groups the channels split into, each convolved with
    /// its own kernels.
    pub groups: usize,
}

impl<const D: usize> Default for ConvOptions<D> {
    fn default() -> Self {
        ConvOptions {
            stride: [1; D],
            padding: [0; D],
            dilation: [1; D],
            groups: 1,
        }
    }
}

impl<const D: usize> ConvOptions<D> {
    /// Sets the stride (builder style).
    pub fn stride(mut self, stride: [usize; D]) -> Self {
        self.stride = stride;
        self
    }
    /// Sets the padding (builder style).
    pub fn padding(mut self, padding: [usize; D]) -> Self {
        self.padding = padding;
        self
    }
    /// Sets the dilation (builder style).
    pub fn dilation(mut self, dilation: [usize; D]) -> Self {
        self.dilation = dilation;
        self
    }
    /// Sets the number of groups (builder style).
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }
}

/// A 2-d window (of a pooling, or of a convolution's im2col): its size,
/// stride (the size by default, as in PyTorch's pooling), zero padding and
/// dilation; for average pooling, whether padded positions count in the
/// divisor (`count_include_pad`, PyTorch's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    /// The window's size along each axis.
    pub kernel: [usize; 2],
    /// The step between windows along each axis.
    pub stride: [usize; 2],
    /// The padding added on both sides of each axis.
    pub padding: [usize; 2],
    /// The spacing between a window's elements along each axis.
    pub dilation: [usize; 2],
    /// Whether average pooling counts padded positions in the divisor.
    pub count_include_pad: bool,
}

impl Pool2d {
    /// A `kernel` window with stride `kernel`, no padding, dilation 1, and
    /// padded positions counted.
    pub fn new(kernel: [usize; 2]) -> Pool2d {
        Pool2d {
            kernel,
            stride: kernel,
            padding: [0; 2],
            dilation: [1; 2],
            count_include_pad: true,
        }
    }
    /// Sets the stride (builder style).
    pub fn stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }
    /// Sets the padding (builder style).
    pub fn padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }
    /// Sets the dilation (builder style).
    pub fn dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }
    /// Sets whether padded positions count in an average's divisor (builder
    /// style).
    pub fn count_include_pad(mut self, count: bool) -> Self {
        self.count_include_pad = count;
        self
    }
}

/// The windows of an unfold: the output's spatial size and, for each kernel
/// offset then output position, the flat position in the padded input.
struct Windows {
    out: [usize; 2],
    padded: [usize; 2],
    positions: Vec<usize>,
}

impl Windows {
    fn new(op: &'static str, input: [usize; 2], window: &Pool2d) -> Result<Windows> {
        let Pool2d {
            kernel,
            stride,
            padding,
            dilation,
            ..
        } = *window;
        let mut out = [0; 2];
        let mut padded = [0; 2];
        for a in 0..2 {
            if kernel[a] == 0 || stride[a] == 0 || dilation[a] == 0 {
                return Err(Error::invalid(
                    op,
                    format!(
                        "kernel {kernel:?}, stride {stride:?} and dilation {dilation:?} must be positive"
                    ),
                ));
            }
            // Checked: a hostile padding or dilation must be an error, not
            // an overflow or a huge allocation.
            let pad = crate::limits::checked_add(op, padding[a], padding[a])?;
            padded[a] = crate::limits::checked_add(op, input[a], pad)?;
            let span = dilation[a]
                .checked_mul(kernel[a] - 1)
                .and_then(|s| s.checked_add(1))
                .unwrap_or(usize::MAX);
            if padded[a] < span {
                return Err(Error::invalid(
                    op,
                    format!(
                        "a window of {:?} (dilation {:?}) does not fit in the padded input of {} along spatial axis {a} (input {:?}, padding {:?})",
                        kernel, dilation, padded[a], input, padding
                    ),
                ));
            }
            out[a] = (padded[a] - span) / stride[a] + 1;
        }
        // The positions, and the padded image they index, before either is built.
        crate::limits::check_alloc(op, &[kernel[0], kernel[1], out[0], out[1]], DType::I64)?;
        crate::limits::check_alloc(op, &padded, DType::I64)?;
        let mut positions = Vec::with_capacity(kernel[0] * kernel[1] * out[0] * out[1]);
        for ki in 0..kernel[0] {
            for kj in 0..kernel[1] {
                for oi in 0..out[0] {
                    let row = (oi * stride[0] + ki * dilation[0]) * padded[1];
                    positions.extend((0..out[1]).map(|oj| row + oj * stride[1] + kj * dilation[1]));
                }
            }
        }
        Ok(Windows {
            out,
            padded,
            positions,
        })
    }
}

fn spatial(op: &'static str, x: &Tensor) -> Result<[usize; 4]> {
    match *x.shape() {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(Error::invalid(
            op,
            format!(
                "expects an input of shape (batch, channels, height, width), got {:?}",
                x.shape()
            ),
        )),
    }
}

/// `x` (N, C, H, W) with `padding` on both sides of H and W filled with `value`.
fn pad_spatial(x: &Tensor, padding: [usize; 2], value: f64) -> Result<Tensor> {
    if padding == [0, 0] {
        return Ok(x.clone());
    }
    let [_, _, h, w] = spatial("pad", x)?;
    let (hp, wp) = (h + 2 * padding[0], w + 2 * padding[1]);
    let padded = x.try_pad(2, padding[0], hp)?.try_pad(3, padding[1], wp)?;
    if value == 0.0 {
        return Ok(padded);
    }
    let inside: Vec<bool> = (0..hp * wp)
        .map(|p| {
            let (i, j) = (p / wp, p % wp);
            (padding[0]..padding[0] + h).contains(&i) && (padding[1]..padding[1] + w).contains(&j)
        })
        .collect();
    let inside = Tensor::try_from_vec(inside, &[hp, wp])?;
    Tensor::try_where_(&inside, &padded, &Tensor::full(&[], value, x.dtype()))
}

impl Tensor {
    /// The sliding windows of `self` (N, C, H, W) as columns (N, C·kh·kw, L),
    /// L = the number of window positions, channel-major then kernel offset,
    /// as PyTorch's `F.unfold`. Zero padding.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::ones(&[1, 2, 3, 3], DType::F64);
    /// let cols = x.try_unfold2d([2, 2], [1, 1], [0, 0], [1, 1]).unwrap();
    /// assert_eq!(cols.shape(), &[1, 8, 4]);
    /// assert!(x.try_unfold2d([4, 4], [1, 1], [0, 0], [1, 1]).is_err());
    /// ```
    pub fn try_unfold2d(
        &self,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Tensor> {
        let [n, c, _, _] = spatial("unfold2d", self)?;
        let window = Pool2d::new(kernel)
            .stride(stride)
            .padding(padding)
            .dilation(dilation);
        let (cols, win) = self.windows("unfold2d", window, 0.0)?;
        let l = win.out[0] * win.out[1];
        cols.try_reshape(&[n, c * kernel[0] * kernel[1], l])
    }

    /// The windows as (N, C, kh·kw, L), padding with `pad_value`.
    /// (A convolution's geometry is a [`Pool2d`] too; `count_include_pad`
    /// plays no part here.)
    fn windows(
        &self,
        op: &'static str,
        window: Pool2d,
        pad_value: f64,
    ) -> Result<(Tensor, Windows)> {
        let [n, c, h, w] = spatial(op, self)?;
        let win = Windows::new(op, [h, w], &window)?;
        let k = window.kernel[0] * window.kernel[1];
        let l = win.out[0] * win.out[1];
        crate::limits::check_alloc(op, &[n, c, k, l], self.dtype())?;
        let flat = pad_spatial(self, window.padding, pad_value)?.try_reshape(&[
            n,
            c,
            win.padded[0] * win.padded[1],
        ])?;
        let cols = flat
            .try_index_select(2, &win.positions)?
            .try_reshape(&[n, c, k, l])?;
        Ok((cols, win))
    }

    /// 2-d convolution (cross-correlation, as PyTorch's `F.conv2d`): `self`
    /// (N, C, H, W), `weight` (O, C/groups, kh, kw), `bias` (O).
    ///
    /// ```
    /// use chainrule::{ConvOptions, DType, Tensor};
    /// let x = Tensor::ones(&[1, 1, 3, 3], DType::F64);
    /// let w = Tensor::ones(&[1, 1, 2, 2], DType::F64);
    /// let y = x.try_conv2d(&w, None, ConvOptions::default()).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [4.0; 4]);
    /// assert!(w.try_conv2d(&x, None, ConvOptions::default()).is_err());
    /// ```
    pub fn try_conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: ConvOptions<2>,
    ) -> Result<Tensor> {
        self.conv("conv2d", weight, bias, options)
    }

    /// [`Tensor::try_conv2d`], its errors naming `op`.
    fn conv(
        &self,
        op: &'static str,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: ConvOptions<2>,
    ) -> Result<Tensor> {
        let [n, c, _, _] = spatial(op, self)?;
        let [o, cg, kh, kw] = match *weight.shape() {
            [o, cg, kh, kw] => [o, cg, kh, kw],
            _ => {
                return Err(Error::shapes_detail(
                    op,
                    self.shape(),
                    weight.shape(),
                    "the weight must be (out_channels, in_channels/groups, kh, kw)",
                ))
            }
        };
        let g = options.groups;
        if g == 0 || c % g != 0 || o % g != 0 || cg * g != c {
            return Err(Error::shapes_detail(
                op,
                self.shape(),
                weight.shape(),
                format!(
                    "with {g} groups the input's {c} channels and the weight's {o} outputs must split evenly, {} input channels per group",
                    c.checked_div(g).unwrap_or(0)
                ),
            ));
        }
        let window = Pool2d::new([kh, kw])
            .stride(options.stride)
            .padding(options.padding)
            .dilation(options.dilation);
        let (cols, win) = self.windows(op, window, 0.0)?;
        let l = win.out[0] * win.out[1];
        // One GEMM per (example, group): (O/g, C/g·k) @ (C/g·k, L).
        let cols = cols.try_reshape(&[n, g, cg * kh * kw, l])?;
        let w = weight.try_reshape(&[g, o / g, cg * kh * kw])?;
        let y = w
            .try_matmul(&cols)?
            .try_reshape(&[n, o, win.out[0], win.out[1]])?;
        match bias {
            None => Ok(y),
            Some(b) => {
                if b.shape() != [o] {
                    return Err(Error::shapes_detail(
                        op,
                        weight.shape(),
                        b.shape(),
                        "the bias must have one entry per output channel",
                    ));
                }
                y.try_add(&b.try_reshape(&[o, 1, 1])?)
            }
        }
    }

    /// 1-d convolution: `self` (N, C, L), `weight` (O, C/groups, k), as a
    /// 2-d one of height 1.
    ///
    /// ```
    /// use chainrule::{ConvOptions, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[1, 1, 4]);
    /// let w = Tensor::from_vec(vec![1.0f64, 1.0], &[1, 1, 2]);
    /// let y = x.try_conv1d(&w, None, ConvOptions::default()).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [3.0, 5.0, 7.0]);
    /// assert!(w.try_conv1d(&x, None, ConvOptions::default()).is_err());
    /// ```
    pub fn try_conv1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: ConvOptions<1>,
    ) -> Result<Tensor> {
        if self.ndim() != 3 || weight.ndim() != 3 {
            return Err(Error::shapes_detail(
                "conv1d",
                self.shape(),
                weight.shape(),
                "expects an input (batch, channels, length) and a weight (out_channels, in_channels/groups, k)",
            ));
        }
        let two = ConvOptions {
            stride: [1, options.stride[0]],
            padding: [0, options.padding[0]],
            dilation: [1, options.dilation[0]],
            groups: options.groups,
        };
        self.try_unsqueeze(2)?
            .conv("conv1d", &weight.try_unsqueeze(2)?, bias, two)?
            .try_squeeze(2)
    }

    /// 2-d max pooling (N, C, H, W) → (N, C, H', W'); padding counts as −∞.
    /// The gradient goes to the first maximum of each window, as in PyTorch.
    ///
    /// ```
    /// use chainrule::{DType, Pool2d, Tensor};
    /// let x = Tensor::arange(16, DType::F64).reshape(&[1, 1, 4, 4]);
    /// let y = x.try_max_pool2d(Pool2d::new([2, 2])).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [5.0, 7.0, 13.0, 15.0]);
    /// assert!(x.try_max_pool2d(Pool2d::new([5, 5])).is_err());
    /// ```
    pub fn try_max_pool2d(&self, pool: Pool2d) -> Result<Tensor> {
        check_pool_padding("max_pool2d", &pool)?;
        let [n, c, _, _] = spatial("max_pool2d", self)?;
        let (cols, win) = self.windows("max_pool2d", pool, f64::NEG_INFINITY)?;
        let (values, _) = cols.try_max_with_indices(2, false)?;
        values.try_reshape(&[n, c, win.out[0], win.out[1]])
    }

    /// 2-d average pooling (N, C, H, W) → (N, C, H', W'), zero padding;
    /// padded positions count in the divisor unless `count_include_pad` is
    /// off. No dilation, as in PyTorch.
    ///
    /// ```
    /// use chainrule::{DType, Pool2d, Tensor};
    /// let x = Tensor::arange(16, DType::F64).reshape(&[1, 1, 4, 4]);
    /// let y = x.try_avg_pool2d(Pool2d::new([2, 2])).unwrap();
    /// assert_eq!(y.to_vec::<f64>(), [2.5, 4.5, 10.5, 12.5]);
    /// assert!(x.try_avg_pool2d(Pool2d::new([2, 2]).dilation([2, 2])).is_err());
    /// ```
    pub fn try_avg_pool2d(&self, pool: Pool2d) -> Result<Tensor> {
        check_pool_padding("avg_pool2d", &pool)?;
        if pool.dilation != [1, 1] {
            return Err(Error::invalid(
                "avg_pool2d",
                format!("has no dilation (got {:?})", pool.dilation),
            ));
        }
        let [n, c, h, w] = spatial("avg_pool2d", self)?;
        let (cols, win) = self.windows("avg_pool2d", pool, 0.0)?;
        let sums = cols.try_sum_axes(&[2], false)?;
        let (ho, wo) = (win.out[0], win.out[1]);
        let averages = if pool.count_include_pad || pool.padding == [0, 0] {
            sums.try_div(&Tensor::full(
                &[],
                (pool.kernel[0] * pool.kernel[1]) as f64,
                self.dtype(),
            ))?
        } else {
            let ones = Tensor::ones(&[1, 1, h, w], self.dtype());
            let (count, _) = ones.windows("avg_pool2d", pool, 0.0)?;
            sums.try_div(&count.try_sum_axes(&[2], false)?)?
        };
        averages.try_reshape(&[n, c, ho, wo])
    }

    /// Adaptive average pooling to `size` (H', W'): output cell `i` averages
    /// input rows `⌊iH/H'⌋ .. ⌈(i+1)H/H'⌉`, as PyTorch. Computed as
    /// `P_h · x · P_wᵀ` with averaging matrices, exact for every size.
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    /// let y = x.try_adaptive_avg_pool2d([1, 1]).unwrap();
    /// assert!((y.item() - 2.5).abs() < 1e-12);
    /// assert!(x.try_adaptive_avg_pool2d([0, 1]).is_err());
    /// ```
    pub fn try_adaptive_avg_pool2d(&self, size: [usize; 2]) -> Result<Tensor> {
        let [_, _, h, w] = spatial("adaptive_avg_pool2d", self)?;
        if size[0] == 0 || size[1] == 0 {
            return Err(Error::invalid(
                "adaptive_avg_pool2d",
                format!("the output size {size:?} must be positive"),
            ));
        }
        crate::limits::check_alloc("adaptive_avg_pool2d", &[size[0], h], self.dtype())?;
        crate::limits::check_alloc("adaptive_avg_pool2d", &[size[1], w], self.dtype())?;
        let rows = averaging_matrix(h, size[0], self.dtype());
        let cols = averaging_matrix(w, size[1], self.dtype());
        rows.try_matmul(&self.try_matmul(&cols.t())?)
    }
}

/// PyTorch's padding rule for pooling: at most half the window, so that no
/// window is all padding.
fn check_pool_padding(op: &'static str, pool: &Pool2d) -> Result<()> {
    if (0..2).any(|a| 2 * pool.padding[a] > pool.kernel[a]) {
        return Err(Error::invalid(
            op,
            format!(
                "padding {:?} must be at most half the kernel {:?}",
                pool.padding, pool.kernel
            ),
        ));
    }
    Ok(())
}

/// The (out, len) matrix averaging adaptive bins of `len` into `out`.
fn averaging_matrix(len: usize, out: usize, dtype: DType) -> Tensor {
    let mut m = vec![0.0; out * len];
    for i in 0..out {
        let (start, end) = (i * len / out, ((i + 1) * len).div_ceil(out));
        for j in start..end {
            m[i * len + j] = 1.0 / (end - start) as f64;
        }
    }
    Tensor::from_vec(m, &[out, len]).to_dtype(dtype)
}

crate::ops::panicking! {
    /// 2-d convolution (see `try_conv2d`).
    ///
    /// ```
    /// use chainrule::{ConvOptions, DType, Tensor};
    /// let x = Tensor::ones(&[1, 1, 3, 3], DType::F64);
    /// let w = Tensor::ones(&[2, 1, 3, 3], DType::F64);
    /// let y = x.conv2d(&w, None, ConvOptions::default().padding([1, 1]));
    /// assert_eq!(y.shape(), &[1, 2, 3, 3]);
    /// assert_eq!(y.get(&[0, 1, 1, 1]), 9.0);
    /// ```
    fn conv2d => try_conv2d(weight: &Tensor, bias: Option<&Tensor>, options: ConvOptions<2>);
    /// 1-d convolution (see `try_conv1d`).
    ///
    /// ```
    /// use chainrule::{ConvOptions, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[1, 1, 4]);
    /// let w = Tensor::from_vec(vec![1.0f64, 1.0], &[1, 1, 2]);
    /// let b = Tensor::from_vec(vec![1.0f64], &[1]);
    /// let y = x.conv1d(&w, Some(&b), ConvOptions::default().stride([2]));
    /// assert_eq!(y.to_vec::<f64>(), [4.0, 8.0]);
    /// ```
    fn conv1d => try_conv1d(weight: &Tensor, bias: Option<&Tensor>, options: ConvOptions<1>);
    /// Sliding windows as columns (see `try_unfold2d`).
    ///
    /// ```
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
    /// let cols = x.unfold2d([1, 2], [1, 1], [0, 0], [1, 1]);
    /// assert_eq!(cols.shape(), &[1, 2, 2]);
    /// assert_eq!(cols.to_vec::<f64>(), [1.0, 3.0, 2.0, 4.0]);
    /// ```
    fn unfold2d => try_unfold2d(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2]);
    /// 2-d max pooling (see `try_max_pool2d`).
    ///
    /// ```
    /// use chainrule::{DType, Pool2d, Tensor};
    /// let x = Tensor::arange(9, DType::F64).reshape(&[1, 1, 3, 3]);
    /// let y = x.max_pool2d(Pool2d::new([2, 2]).stride([1, 1]));
    /// assert_eq!(y.to_vec::<f64>(), [4.0, 5.0, 7.0, 8.0]);
    /// ```
    fn max_pool2d => try_max_pool2d(pool: Pool2d);
    /// 2-d average pooling (see `try_avg_pool2d`).
    ///
    /// ```
    /// use chainrule::{DType, Pool2d, Tensor};
    /// let x = Tensor::ones(&[1, 1, 2, 2], DType::F64);
    /// let pool = Pool2d::new([2, 2]).stride([1, 1]).padding([1, 1]);
    /// assert_eq!(x.avg_pool2d(pool).get(&[0, 0, 0, 0]), 0.25);
    /// assert_eq!(x.avg_pool2d(pool.count_include_pad(false)).get(&[0, 0, 0, 0]), 1.0);
    /// ```
    fn avg_pool2d => try_avg_pool2d(pool: Pool2d);
    /// Adaptive average pooling (see `try_adaptive_avg_pool2d`).
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::arange(16, DType::F64).reshape(&[1, 1, 4, 4]);
    /// let y = x.adaptive_avg_pool2d([2, 1]);
    /// assert_eq!(y.shape(), &[1, 1, 2, 1]);
    /// assert!((y.get(&[0, 0, 1, 0]) - 11.5).abs() < 1e-12);
    /// ```
    fn adaptive_avg_pool2d => try_adaptive_avg_pool2d(size: [usize; 2]);
}
