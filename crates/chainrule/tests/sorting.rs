//! Values of `argsort`, `sort`, `topk` (ties, NaNs, integers) and the exact
//! derivatives of `cumprod` through zeros. Their gradients elsewhere are
//! rows of the op table.

use chainrule::{func, DType, Tensor};

fn f64s(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape)
}

#[test]
fn sort_is_stable_and_puts_nans_last() {
    // torch.sort(tensor([3., nan, 1., 3.]), stable=True)
    let x = f64s(&[3., f64::NAN, 1., 3.], &[4]);
    let (values, index) = x.sort(0, false);
    assert_eq!(index.to_vec::<i64>(), [2, 0, 3, 1]);
    let v = values.to_vec::<f64>();
    assert_eq!(v[..3], [1., 3., 3.]);
    assert!(v[3].is_nan());
    let (_, index) = x.sort(0, true);
    assert_eq!(index.to_vec::<i64>(), [1, 0, 3, 2]);
    let ints = Tensor::from_vec(vec![5i64, -2, 5, 0, 9, 1], &[2, 3]);
    let (values, index) = ints.sort(-1, false);
    assert_eq!(values.to_vec::<i64>(), [-2, 5, 5, 0, 1, 9]);
    assert_eq!(index.to_vec::<i64>(), [1, 0, 2, 0, 2, 1]);
    assert_eq!(ints.argsort(0, true).to_vec::<i64>(), [0, 1, 0, 1, 0, 1]);
}

#[test]
fn topk_picks_the_largest_or_smallest_in_order() {
    let x = f64s(&[1., 7., 3., 7., -2., 0.], &[2, 3]);
    let (values, index) = x.topk(2, 1, true);
    assert_eq!(values.to_vec::<f64>(), [7., 3., 7., 0.]);
    assert_eq!(index.to_vec::<i64>(), [1, 2, 0, 2]);
    let (values, index) = x.topk(1, 0, false);
    assert_eq!(values.to_vec::<f64>(), [1., -2., 0.]);
    assert_eq!(index.to_vec::<i64>(), [0, 1, 1]);
    let err = x.try_topk(4, 1, true).unwrap_err().to_string();
    assert!(err.contains("topk") && err.contains("k = 4"), "{err}");
    // The gradient reaches the entries picked, once each.
    let g = func::grad(|x: &Tensor| x.topk(2, 1, true).0.sum(), &x).unwrap();
    assert_eq!(g.to_vec::<f64>(), [0., 1., 1., 1., 0., 1.]);
}

#[test]
fn cumprod_differentiates_exactly_through_zeros() {
    let x = f64s(&[2., 0., 3., 0., 5.], &[5]);
    assert_eq!(x.cumprod(0).to_vec::<f64>(), [2., 0., 0., 0., 0.]);
    // ∂/∂x_k Σ_j Π_{i≤j} x_i = Σ_{j≥k} Π_{i≤j, i≠k} x_i, worked by hand.
    let sum = |x: &Tensor| x.cumprod(0).sum();
    assert_eq!(
        func::grad(sum, &x).unwrap().to_vec::<f64>(),
        [1., 8., 0., 0., 0.]
    );
    let want = [
        0., 4., 0., 0., 0., //
        4., 0., 2., 36., 0., //
        0., 2., 0., 0., 0., //
        0., 36., 0., 0., 0., //
        0., 0., 0., 0., 0.,
    ];
    assert_eq!(func::hessian(sum, &x).unwrap().to_vec::<f64>(), want);
    assert_eq!(func::hessian_rev(sum, &x).unwrap().to_vec::<f64>(), want);
    let ints = Tensor::from_vec(vec![1i64, 2], &[2]);
    assert!(ints.try_cumprod(0).is_err());
    assert_eq!(Tensor::zeros(&[0], DType::F64).cumprod(0).shape(), [0]);
}
