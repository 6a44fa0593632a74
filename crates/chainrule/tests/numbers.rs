//! Elementwise ops on 0-d values run on plain numbers where nothing could
//! tell: their VJP rules in backward (no gradient graph recorded, no
//! transform open) and their JVP rules under a forward-mode level open
//! alone. Each must give the tensor rules' results bit for bit, for every
//! unary and binary op, in both dtypes.

use chainrule::autograd;
use chainrule::forward::DualLevel;
use chainrule::{DType, Tensor};

type Unary = fn(&Tensor) -> Tensor;
type Binary = fn(&Tensor, &Tensor) -> Tensor;

/// `d/dx` of `f` at `v` (0-d: the rules run on numbers; `[1]`: tensor rules),
/// with how many rules ran on numbers.
fn derivative_at(
    v: f64,
    dtype: DType,
    zero_d: bool,
    f: &dyn Fn(&Tensor) -> Tensor,
) -> (f64, usize) {
    let x = Tensor::from_vec(vec![v], if zero_d { &[] } else { &[1] })
        .to_dtype(dtype)
        .requires_grad();
    let z = f(&x).sum();
    let (g, stats) = autograd::grad_with_stats(&[&z], &[&x], &Default::default()).unwrap();
    (g[0].to_vec::<f64>()[0], stats.rules_on_numbers)
}

type Case = (&'static str, Box<dyn Fn(&Tensor) -> Tensor>);

/// Every unary and binary op, each applied twice in a row to values that
/// depend on `x` in two ways.
fn cases() -> Vec<Case> {
    let unary: &[(&str, Unary)] = &[
        ("neg", |x| x.neg()),
        ("exp", |x| x.exp()),
        ("log", |x| x.log()),
        ("sin", |x| x.sin()),
        ("cos", |x| x.cos()),
        ("tan", |x| x.tan()),
        ("tanh", |x| x.tanh()),
        ("sqrt", |x| x.sqrt()),
        ("rsqrt", |x| x.rsqrt()),
        ("reciprocal", |x| x.reciprocal()),
        ("square", |x| x.square()),
        ("abs", |x| x.abs()),
        ("sigmoid", |x| x.sigmoid()),
        ("softplus", |x| x.softplus()),
        ("relu", |x| x.relu()),
        ("log1p", |x| x.log1p()),
        ("expm1", |x| x.expm1()),
        ("erf", |x| x.erf()),
        ("powf", |x| x.powf(1.7)),
        ("mul_scalar", |x| x * 0.3),
        ("add_scalar", |x| x + 0.3),
        ("clamp", |x| x.clamp(0.1, 0.9)),
    ];
    let binary: &[(&str, Binary)] = &[
        ("add", |a, b| a + b),
        ("sub", |a, b| a - b),
        ("mul", |a, b| a * b),
        ("div", |a, b| a / b),
        ("pow", |a, b| a.pow(b)),
        ("maximum", |a, b| a.maximum(b)),
        ("minimum", |a, b| a.minimum(b)),
        ("atan2", |a, b| a.atan2(b)),
        ("hypot", |a, b| a.hypot(b)),
    ];
    // Each op twice in a row, on values that depend on x in two ways.
    unary
        .iter()
        .map(|&(name, f)| {
            (
                name,
                Box::new(move |x: &Tensor| f(&(f(x) * x))) as Box<dyn Fn(&Tensor) -> Tensor>,
            )
        })
        .chain(binary.iter().map(|&(name, f)| {
            let g = move |x: &Tensor| f(&f(x, &(x * 1.3)), &(x + 0.2));
            (name, Box::new(g) as Box<dyn Fn(&Tensor) -> Tensor>)
        }))
        .collect()
}

/// Backward's rules on numbers against the tensor rules.
#[test]
fn rules_on_numbers_give_the_tensor_rules_bits() {
    for (name, f) in cases() {
        for dtype in [DType::F32, DType::F64] {
            for v in [0.4, 0.7] {
                let (on_numbers, lane_rules) = derivative_at(v, dtype, true, &f);
                let (on_tensors, tensor_lane_rules) = derivative_at(v, dtype, false, &f);
                assert!(lane_rules >= 2, "{name}: {lane_rules} rules on numbers");
                assert_eq!(tensor_lane_rules, 0, "{name}");
                assert_eq!(
                    on_numbers.to_bits(),
                    on_tensors.to_bits(),
                    "{name} {dtype:?} at {v}: {on_numbers} on numbers, {on_tensors} on tensors"
                );
            }
        }
    }
}

/// The value and tangent of `f` at `v` along 1, by forward mode (0-d: on
/// numbers; `[1]`: tensor rules).
fn tangent_at(v: f64, dtype: DType, zero_d: bool, f: &dyn Fn(&Tensor) -> Tensor) -> (f64, f64) {
    let x = Tensor::from_vec(vec![v], if zero_d { &[] } else { &[1] }).to_dtype(dtype);
    let level = DualLevel::new();
    let xd = level.make_dual(&x, &x.ones_like()).unwrap();
    let (value, tangent) = level.unpack(&f(&xd));
    (
        value.to_vec::<f64>()[0],
        tangent.unwrap().to_vec::<f64>()[0],
    )
}

/// Forward mode's rules on numbers against the tensor rules.
#[test]
fn forward_mode_on_numbers_gives_the_tensor_rules_bits() {
    for (name, f) in cases() {
        for dtype in [DType::F32, DType::F64] {
            for v in [0.4, 0.7] {
                let (value, tangent) = tangent_at(v, dtype, true, &f);
                let (tensor_value, tensor_tangent) = tangent_at(v, dtype, false, &f);
                assert_eq!(
                    value.to_bits(),
                    tensor_value.to_bits(),
                    "{name} {dtype:?} at {v}"
                );
                assert_eq!(
                    tangent.to_bits(),
                    tensor_tangent.to_bits(),
                    "{name} {dtype:?} at {v}: {tangent} on numbers, {tensor_tangent} on tensors"
                );
            }
        }
    }
}

/// Numbers and tensors meet: a 0-d gradient computed on numbers is added
/// to one from a tensor rule (a reduction), and leaves get tensors.
#[test]
fn rules_on_numbers_mix_with_tensor_rules() {
    let x = Tensor::scalar(0.5f64).requires_grad();
    let w = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]).requires_grad();
    let u = x.sin() * 2.0; // on numbers
    let s = (&w * &u).sum(); // tensor rules; u's gradient comes as a tensor
    let z = &s * &u + u.exp();
    z.backward().unwrap();
    let (u0, s0) = (2.0 * 0.5f64.sin(), 6.0 * 2.0 * 0.5f64.sin());
    // dz/du = s + 6u + e^u (s depends on u through w·u); du/dx = 2 cos x.
    let dz_du = s0 + 6.0 * u0 + u0.exp();
    let expected = dz_du * 2.0 * 0.5f64.cos();
    assert!((x.grad().unwrap().item() - expected).abs() < 1e-12);
    let gw = w.grad().unwrap().to_vec::<f64>();
    assert!((gw[0] - u0 * u0).abs() < 1e-12, "{gw:?}");
}
