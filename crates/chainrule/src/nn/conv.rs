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
pub type Conv1d = Conv<1>;
/// `Conv2d`: input `(N, C, H, W)`.
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
    MaxPool2d(Pool2d), x, this => x.try_max_pool2d(this.0)
);
parameterless!(
    /// 2-d average pooling over `(N, C, H, W)`.
    AvgPool2d(Pool2d), x, this => x.try_avg_pool2d(this.0)
);
parameterless!(
    /// Average pooling of `(N, C, H, W)` to a fixed `(H', W')`.
    AdaptiveAvgPool2d([usize; 2]), x, this => x.try_adaptive_avg_pool2d(this.0)
);
parameterless!(
    /// Flattens the axes from `start` on into one (PyTorch's `Flatten`
    /// uses `start = 1`, keeping the batch axis).
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
