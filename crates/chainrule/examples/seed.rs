//! The lecture note's two examples: gradients by reverse-mode autodiff next
//! to the closed forms the note derives by the chain rule.
//!
//!     cargo run --release --example seed

use chainrule::{DType, Tensor};

fn show(name: &str, t: &Tensor) {
    let v = t.to_vec::<f64>();
    let cells: Vec<String> = v.iter().take(6).map(|x| format!("{x:+.6}")).collect();
    let more = if v.len() > 6 { ", …" } else { "" };
    println!(
        "  {name:<28} shape {:?}  [{}{more}]",
        t.shape(),
        cells.join(", ")
    );
}

fn max_rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    a.to_vec::<f64>()
        .iter()
        .zip(b.to_vec::<f64>())
        .map(|(x, y)| (x - y).abs() / y.abs().max(1e-300))
        .fold(0.0, f64::max)
}

fn main() {
    let n = 5;
    println!("Example 1 (vector derivative): z = (<x, w> - y)^2, x, w in R^{n}, y in R");
    println!("  decomposition: a = <x, w> (1,)  b = a - y (1,)  z = b^2 (1,)");
    println!(
        "  chain rule: dz/dw = dz/db * db/da * da/dw = 2b * 1 * x^T   (1,{n}) = (1,)(1,)(1,{n})"
    );
    let x = Tensor::rand_normal(&[n], 0.0, 1.0, 1, DType::F64);
    let y = Tensor::scalar(0.5f64);
    let w = Tensor::rand_normal(&[n], 0.0, 1.0, 2, DType::F64).requires_grad();
    let z = (x.dot(&w) - &y).square();
    z.backward().expect("z is a scalar that depends on w");
    let autodiff = w.grad().unwrap();
    let closed = (x.dot(&w.detach()) - &y) * 2.0 * &x;
    println!("  z = {:.6}", z.item());
    show("autodiff  dz/dw", &autodiff);
    show("closed form 2(<x,w>-y) x", &closed);
    println!(
        "  max relative difference: {:.1e}\n",
        max_rel_diff(&autodiff, &closed)
    );

    let (m, n) = (8, 4);
    println!(
        "Example 2 (matrix derivative): z = ||Xw - y||^2, X in R^({m}x{n}), w in R^{n}, y in R^{m}"
    );
    println!("  decomposition: a = Xw ({m},)  b = a - y ({m},)  z = ||b||^2 (1,)");
    println!("  chain rule: dz/dw = dz/db * db/da * da/dw = 2b^T * I * X   (1,{n}) = (1,{m})({m},{m})({m},{n})");
    let xm = Tensor::rand_normal(&[m, n], 0.0, 1.0, 3, DType::F64);
    let y = Tensor::rand_normal(&[m], 0.0, 1.0, 4, DType::F64);
    let w = Tensor::rand_normal(&[n], 0.0, 1.0, 5, DType::F64).requires_grad();
    let z = (xm.matmul(&w) - &y).square().sum();
    z.backward().expect("z is a scalar that depends on w");
    let autodiff = w.grad().unwrap();
    let closed = xm.t().matmul(&(xm.matmul(&w.detach()) - &y)) * 2.0;
    println!("  z = {:.6}", z.item());
    show("autodiff  dz/dw", &autodiff);
    show("closed form 2 X^T (Xw - y)", &closed);
    println!(
        "  max relative difference: {:.1e}",
        max_rel_diff(&autodiff, &closed)
    );
}
