//! Convolution, pooling and flattening layers (PyTorch's layouts and
//! default initializations). The ops are in [`crate::ops::conv`].

use super::{Module, Param, Parameters};
use crate::error::{Error, Result};
use crate::{ConvOptions, DType, Pool2d, Tensor};

/// PyTorch's default for convolution and linear layers: uniform in
/// `±1/√fan_in`, each tensor from its own seed.
pub(crate) fn default_uniform(shape: &[usize], fan_in: usize, seed: u64, dtype: DType) -> Tensor {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Tensor::rand_uniform(shape, -bound, bound, seed, dtype)
}

/// A convolution over `D` spatial axes: weight `(out, in/groups, k…)`,
/// optional bias `(out,)`.
#[derive(crate::nn::Module)]
pub struct Conv<const D: usize> {
    /// The kernels, `(out, in/groups, k…)`.
    pub weight: Param,
    /// The bias, `(out,)`, if any.
    pub bias: Option<Param>,
    /// The stride, padding, dilation and groups of the convolution.
    #[module(skip)]
    pub options: ConvOptions<D>,
}

/// `Conv1d`: input `(N, C, L)`.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{ConvOptions, Tensor};
/// let w = Tensor::from_vec(vec![1.0f64, 1.0], &[1, 1, 2]); // (out, in, k)
/// let conv = nn::Conv1d::from_tensors(w, None, ConvOptions::default());
/// let y = conv.forward(&Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[1, 1, 4])).unwrap();
/// assert_eq!(y.shape(), &[1, 1, 3]);
/// assert_eq!(y.to_vec::<f64>(), [3.0, 5.0, 7.0]);
/// ```
pub type Conv1d = Conv<1>;
/// `Conv2d`: input `(N, C, H, W)`.
///
/// ```
/// use chainrule::nn::{self, Module};
/// use chainrule::{ConvOptions, DType, Tensor};
/// let options = ConvOptions::default().padding([1, 1]);
/// let conv = nn::Conv2d::new(3, 8, [3, 3], options, 0, DType::F64).unwrap();
/// let y = conv.forward(&Tensor::zeros(&[2, 3, 5, 5], DType::F64)).unwrap();
/// assert_eq!(y.shape(), &[2, 8, 5, 5]);
/// ```
pub type Conv2d = Conv<2>;

impl<const D: usize> Conv<D> {
    /// A layer initialized as PyTorch's (weight and bias uniform in
    /// `±1/√(in/groups · kernel size)`), drawn from `seed`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; D],
        options: ConvOptions<D>,
        seed: u64,
        dtype: DType,
    ) -> Result<Conv<D>> {
        let g = options.groups;
        if g == 0 || !in_channels.is_multiple_of(g) || !out_channels.is_multiple_of(g) {
            return Err(Error::invalid(
                "Conv",
                format!("{g} groups must divide both {in_channels} input and {out_channels} output channels"),
            ));
        }
        let mut shape = vec![out_channels, in_channels / g];
        shape.extend_from_slice(&kernel);
        let fan_in: usize = shape[1..].iter().product();
        crate::limits::check_alloc("Conv", &shape, dtype)?;
        Ok(Conv::from_tensors(
            default_uniform(&shape, fan_in, seed, dtype),
            Some(default_uniform(
                &[out_channels],
                fan_in,
                seed ^ 0xB1A5,
                dtype,
            )),
            options,
        ))
    }

    /// A layer with the given weight and bias (`None`: no bias).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>, options: ConvOptions<D>) -> Conv<D> {
        Conv {
            weight: Param::new(weight),
            bias: bias.map(Param::new),
            options,
        }
    }
}

impl Module for Conv<1> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::value);
        x.try_conv1d(&self.weight.value(), bias.as_ref(), self.options)
    }
}

impl Module for Conv<2> {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::value);
        x.try_conv2d(&self.weight.value(), bias.as_ref(), self.options)
    }
}

macro_rules! parameterless {
    ($(#[$meta:meta])* $name:ident($field:ty), $x:ident, $this:ident => $body:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(pub $field);

        impl Module for $name {
            fn forward(&self, $x: &Tensor) -> Result<Tensor> {
                let $this = self;
                $body
            }
        }

        impl Parameters for $name {
            fn named_params(&self) -> Vec<(String, Param)> {
                Vec::new()
            }
        }
    };
}

parameterless!(
    /// 2-d max pooling over `(N, C, H, W)`.
    ///
    /// ```
    /// use chainrule::nn::{self, Module};
    /// use chainrule::{Pool2d, Tensor};
    /// let x = Tensor::from_vec((1..=16u8).map(f64::from).collect(), &[1, 1, 4, 4]);
    /// let y = nn::MaxPool2d(Pool2d::new([2, 2])).forward(&x).unwrap();
    /// assert_eq!(y.shape(), &[1, 1, 2, 2]);
    /// assert_eq!(y.to_vec::<f64>(), [6.0, 8.0, 14.0, 16.0]);
    /// ```
    MaxPool2d(Pool2d), x, this => x.try_max_pool2d(this.0)
);
parameterless!(
    /// 2-d average pooling over `(N, C, H, W)`.
    ///
    /// ```
    /// use chainrule::nn::{self, Module};
    /// use chainrule::{Pool2d, Tensor};
    /// let x = Tensor::from_vec((1..=16u8).map(f64::from).collect(), &[1, 1, 4, 4]);
    /// let y = nn::AvgPool2d(Pool2d::new([2, 2])).forward(&x).unwrap();
    /// assert_eq!(y.shape(), &[1, 1, 2, 2]);
    /// assert_eq!(y.to_vec::<f64>(), [3.5, 5.5, 11.5, 13.5]);
    /// ```
    AvgPool2d(Pool2d), x, this => x.try_avg_pool2d(this.0)
);
parameterless!(
    /// Average pooling of `(N, C, H, W)` to a fixed `(H', W')`.
    ///
    /// ```
    /// use chainrule::nn::{self, Module};
    /// use chainrule::Tensor;
    /// let x = Tensor::from_vec((1..=16u8).map(f64::from).collect(), &[1, 1, 4, 4]);
    /// let y = nn::AdaptiveAvgPool2d([1, 1]).forward(&x).unwrap();
    /// assert_eq!(y.shape(), &[1, 1, 1, 1]);
    /// assert_eq!(y.to_vec::<f64>(), [8.5]);
    /// ```
    AdaptiveAvgPool2d([usize; 2]), x, this => x.try_adaptive_avg_pool2d(this.0)
);
parameterless!(
    /// Flattens the axes from `start` on into one (PyTorch's `Flatten`
    /// uses `start = 1`, keeping the batch axis).
    ///
    /// ```
    /// use chainrule::nn::{self, Module};
    /// use chainrule::{DType, Tensor};
    /// let y = nn::Flatten(1).forward(&Tensor::zeros(&[2, 3, 4], DType::F64)).unwrap();
    /// assert_eq!(y.shape(), &[2, 12]);
    /// ```
    Flatten(usize), x, this => {
        let start = this.0;
        if start >= x.ndim() {
            return Err(Error::invalid(
                "Flatten",
                format!("start axis {start} is out of range for shape {:?}", x.shape()),
            ));
        }
        let mut shape = x.shape()[..start].to_vec();
        shape.push(x.shape()[start..].iter().product());
        x.try_reshape(&shape)
    }
);

impl Default for Flatten {
    fn default() -> Self {
        Flatten(1)
    }
}
