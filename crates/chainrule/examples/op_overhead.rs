//! Per-op overhead, for counting instructions with callgrind (repeatable on a
//! noisy machine): `valgrind --tool=callgrind target/release/examples/op_overhead rev`
//! (`ex1`: the note's example 1 reverse, 2,000 times; `fwd`/`rev`: a chain of
//! 20,000 scalar ops by forward or reverse mode).

use chainrule::forward::DualLevel;
use chainrule::{DType, Tensor};
fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    match which.as_str() {
        "ex1" => {
            let x = Tensor::rand_normal(&[100], 0.0, 1.0, 1, DType::F64);
            let y = Tensor::scalar(0.5f64);
            let mut s = 0.0;
            for _ in 0..2000 {
                let w = Tensor::rand_normal(&[100], 0.0, 1.0, 2, DType::F64).requires_grad();
                let z = (x.dot(&w) - &y).square();
                z.backward().unwrap();
                s += w.grad().unwrap().sum().item();
            }
            println!("{s}");
        }
        "fwd" => {
            let x = Tensor::scalar(0.3f32);
            let one = Tensor::scalar(1.0f32);
            let level = DualLevel::new();
            let mut u = level.make_dual(&x, &one).unwrap();
            for _ in 0..5000 {
                u = u.sin() * 0.5 + u * 0.5;
            }
            println!("{:?}", level.unpack(&u).1.unwrap().item());
        }
        _ => {
            let x = Tensor::scalar(0.3f32).requires_grad();
            let mut u = x.clone();
            for _ in 0..5000 {
                u = u.sin() * 0.5 + u * 0.5;
            }
            u.backward().unwrap();
            println!("{}", x.grad().unwrap().item());
        }
    }
}
