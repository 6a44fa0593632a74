//! The ranks of `chainrule train` under `mpirun`: `chainrule::distributed`
//! when built with the `mpi` feature; without it, types that cannot be
//! made (a run is always one process), so `train` reads the same either way.

use crate::CliError;

/// Whether a launcher started this process as one of several ranks
/// (OpenMPI's and MPICH's variables).
fn launched_as_ranks() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"].iter().any(|v| {
        std::env::var(v)
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n > 1)
    })
}

#[cfg(feature = "mpi")]
pub use chainrule::distributed::{DataParallel, World};

/// The job this process is a rank of, when `mpirun` started several.
#[cfg(feature = "mpi")]
pub fn world() -> Result<Option<World>, CliError> {
    if !launched_as_ranks() {
        return Ok(None);
    }
    Ok(Some(World::init()?))
}

#[cfg(not(feature = "mpi"))]
pub use single::{world, DataParallel, World};

#[cfg(not(feature = "mpi"))]
mod single {
    use super::*;
    use chainrule::nn::Parameters;
    use chainrule::Tensor;

    /// No job of several ranks can exist without MPI.
    pub enum World {}

    /// A rank's gradients: never made without MPI.
    pub struct DataParallel<'w>(&'w World);

    /// Always `None`; an error when `mpirun` started several ranks, which
    /// would otherwise each train alone.
    pub fn world() -> Result<Option<World>, CliError> {
        if launched_as_ranks() {
            return Err(CliError::Input(
                "started as several MPI ranks, but this chainrule was built without the `mpi` \
                 feature (cargo install chainrule-cli --features mpi)"
                    .into(),
            ));
        }
        Ok(None)
    }

    impl World {
        /// This rank.
        pub fn rank(&self) -> usize {
            match *self {}
        }
        /// The number of ranks.
        pub fn size(&self) -> usize {
            match *self {}
        }
        /// How long to wait for the others.
        pub fn set_timeout(&mut self, _: std::time::Duration) {
            match *self {}
        }
        /// Waits for the other failing ranks.
        pub fn wait_for_others_to_fail(&self, _: std::time::Duration) {
            match *self {}
        }
        /// BatchNorm over the global batch.
        pub fn sync_batch_norm(&self, _: &[&chainrule::nn::BatchNorm]) {
            match *self {}
        }
        /// Sums across ranks.
        pub fn all_reduce_sum(&self, _: &mut [f64]) -> chainrule::Result<()> {
            match *self {}
        }
    }

    impl<'w> DataParallel<'w> {
        /// Broadcasts and checks the model.
        pub fn new(world: &'w World, _: &dyn Parameters) -> chainrule::Result<Self> {
            match *world {}
        }
        /// Backward, then the sum across ranks.
        pub fn backward(&mut self, _: &Tensor, _: f64) -> chainrule::Result<()> {
            match *self.0 {}
        }
        /// Time spent waiting for the sums.
        pub fn waiting(&self) -> std::time::Duration {
            match *self.0 {}
        }
        /// Zeros into the sum.
        pub fn backward_without_loss(&mut self) -> chainrule::Result<()> {
            match *self.0 {}
        }
    }
}
