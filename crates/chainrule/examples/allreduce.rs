//! The cost of summing the `mlp` workload's gradients across ranks
//! (784-512-256-10: 535,818 f32, 2.1 MB), against the memory-bandwidth
//! bound, for BENCHMARKS.md:
//!
//!     cargo build --release --features mpi --example allreduce
//!     mpirun --allow-run-as-root -np 2 target/release/examples/allreduce
//!
//! Rank 0 prints one JSON line of medians over `REPS` calls:
//! - `mpi_ms`: one blocking `MPI_Allreduce` (sum) of the flat gradients;
//! - `exchange_ms`: `DataParallel`'s whole exchange for the model (its
//!   buckets' non-blocking all-reduces, plus gathering the gradients into
//!   them and scattering the sums back), with no backward to overlap;
//! - `copy_ms` and `bandwidth_gbs`: one copy of the gradients in memory;
//!   `bound_ms` = 4 such copies' time, the least traffic a two-rank sum
//!   through shared memory moves per rank (read its own, write it to the
//!   shared segment, read the other's, write the sum).

use chainrule::distributed::{DataParallel, World};
use chainrule::nn;
use chainrule::DType;
use mpi::collective::{CommunicatorCollectives, SystemOperation};
use std::time::Instant;

const REPS: usize = 200;

fn median_ms(mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut times: Vec<f64> = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[REPS / 2]
}

fn main() -> chainrule::Result<()> {
    let world = World::init()?;
    let model = nn::mlp(&[784, 512, 256, 10], nn::Activation::Relu, 0, DType::F32);
    let n: usize = nn::Parameters::params(&model)
        .iter()
        .map(|p| p.numel())
        .sum();
    let comm = mpi::topology::SimpleCommunicator::world();
    let send = vec![1.0f32; n];
    let mut recv = vec![0.0f32; n];
    let mpi_ms =
        median_ms(|| comm.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum()));
    let mut ddp = DataParallel::new(&world, &model)?;
    let buckets = ddp.buckets();
    let mut failed = None;
    let exchange_ms = median_ms(|| {
        if let Err(e) = ddp.backward_without_loss() {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let copy_ms = median_ms(|| recv.copy_from_slice(std::hint::black_box(&send)));
    let bytes = (n * 4) as f64;
    if world.is_root() {
        println!(
            "{{\"ranks\":{},\"floats\":{n},\"buckets\":{buckets},\"mpi_ms\":{mpi_ms:.4},\"exchange_ms\":{exchange_ms:.4},\"copy_ms\":{copy_ms:.4},\"bandwidth_gbs\":{:.2},\"bound_ms\":{:.4}}}",
            world.size(),
            bytes / copy_ms / 1e6,
            4.0 * copy_ms
        );
    }
    Ok(())
}
