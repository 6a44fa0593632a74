//! Prints what compiling the Rosenbrock Hessian graph produces.
use chainrule::graph::Graph;
use chainrule::{func, DType, Tensor};

fn rosenbrock(x: &Tensor) -> Tensor {
    let n = x.shape()[0];
    let head = x.narrow(0, 0, n - 1);
    let tail = x.narrow(0, 1, n - 1);
    ((tail - head.square()).square() * 100.0 + (1.0 - &head).square()).sum()
}

fn main() {
    let x = Tensor::rand_uniform(&[100], -1.0, 1.0, 0, DType::F64);
    let g = Graph::trace(&[("x", &x)], |t| {
        Ok(vec![func::hessian(rosenbrock, &t[0]).unwrap()])
    })
    .unwrap();
    let g = g.optimize();
    let mut counts = std::collections::BTreeMap::new();
    for n in g.op_names() {
        *counts
            .entry(n.split(' ').next().unwrap().to_string())
            .or_insert(0) += 1;
    }
    println!("{counts:?}");
    let shapes = g.node_shapes();
    for (i, n) in g.op_names().iter().enumerate() {
        println!("%{i} {n} {:?} <- {:?}", shapes[i], g.node_inputs()[i]);
    }
    let exe = g.compile();
    println!("{:?}", exe.report());
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for _ in 0..100 {
            exe.run(&[("x", &x)]).unwrap();
        }
        let native = t.elapsed().as_secs_f64() * 1e4;
        let t = std::time::Instant::now();
        for _ in 0..100 {
            exe.run_interpreted(&[("x", &x)]).unwrap();
        }
        println!(
            "native {native:.1} us, interpreted {:.1} us",
            t.elapsed().as_secs_f64() * 1e4
        );
    }
}
