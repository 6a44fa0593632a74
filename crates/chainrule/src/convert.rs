//! Conversion to and from `ndarray::ArrayD` (feature `ndarray`, on by default).

use crate::dtype::Element;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};

impl<T: Element> From<&ArrayD<T>> for Tensor {
    /// Copies the array (any memory order) into a row-major tensor.
    fn from(a: &ArrayD<T>) -> Tensor {
        Tensor::from_vec(a.iter().copied().collect(), a.shape())
    }
}

impl Tensor {
    /// A row-major `ArrayD` copy; fails when `T` is not this tensor's dtype.
    ///
    /// ```
    /// use chainrule::{DType, Tensor};
    /// let x = Tensor::arange(6, DType::F64).reshape(&[2, 3]);
    /// let a = x.to_ndarray::<f64>().unwrap();
    /// assert_eq!(a.shape(), &[2, 3]);
    /// assert_eq!(Tensor::from(&a).to_vec::<f64>(), x.to_vec::<f64>());
    /// assert!(x.to_ndarray::<f32>().is_err()); // not the tensor's dtype
    /// ```
    pub fn to_ndarray<T: Element>(&self) -> Result<ArrayD<T>> {
        if T::DTYPE != self.dtype() {
            return Err(Error::DTypeMismatch {
                op: "to_ndarray",
                lhs: self.dtype(),
                rhs: T::DTYPE,
            });
        }
        Ok(
            ArrayD::from_shape_vec(IxDyn(self.shape()), self.to_vec::<T>())
                .expect("shape and length agree"),
        )
    }
}
