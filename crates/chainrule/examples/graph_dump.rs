//! Prints the note's example 1 as an explicit graph: traced, differentiated
//! graph to graph, then optimized; and writes both as Graphviz DOT.
//!
//!     cargo run --release --example graph_dump

use chainrule::graph::Graph;
use chainrule::{DType, Tensor};

fn main() -> chainrule::Result<()> {
    let (x, w, y) = (
        Tensor::ones(&[100], DType::F32),
        Tensor::ones(&[100], DType::F32),
        Tensor::scalar(1.0f32),
    );
    let g = Graph::trace(&[("x", &x), ("w", &w), ("y", &y)], |t| {
        Ok(vec![(t[0].dot(&t[1]) - &t[2]).square()])
    })?
    .gradients(0, &["w"])?;
    let (opt, report) = g.optimize_with_report();
    println!("== z = (<x, w> - y)^2 and dz/dw, as traced ==\n{g}\n");
    println!("== optimized ({report:?}) ==\n{opt}\n");
    let plan = opt.memory_plan();
    println!(
        "memory plan: peak {} bytes planned, {} bytes unplanned",
        plan.planned_peak_bytes, plan.unplanned_bytes
    );
    Ok(())
}
