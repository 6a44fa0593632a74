//! Data-parallel training across processes and machines, on MPI (the
//! `mpi` feature; OpenMPI or any MPI through the `mpi` crate, rsmpi).
//!
//! Every rank holds the whole model and trains on its slice of each global
//! batch ([`crate::data::Dataset::shard_batches`]); after backward the
//! gradients are summed across ranks, so every rank takes the same step,
//! the one a single process would take on the global batch. As in
//! PyTorch's `DistributedDataParallel`:
//! - [`DataParallel::new`] checks that every rank built the same model
//!   (names, shapes, dtypes), broadcasts rank 0's values, and checks them
//!   identical with a checksum all-reduce;
//! - the gradients travel in buckets of about [`BUCKET_BYTES`], each
//!   all-reduced (non-blocking) as soon as backward has finished its
//!   gradients ([`Tensor::backward_watching`]), so communication overlaps
//!   the rest of backward; buckets start in one fixed order on every rank;
//! - [`World::sync_batch_norm`] makes BatchNorm layers normalize by the
//!   whole global batch (PyTorch's `SyncBatchNorm`);
//! - every wait has a deadline ([`World::set_timeout`]): past it, a rank
//!   says which operation it waited for and ends the job, never a hang (a
//!   rank that dies ends the job through `mpirun` at once). Nothing needs
//!   a barrier at shutdown.
//!
//! ```no_run
//! # fn main() -> chainrule::Result<()> {
//! use chainrule::distributed::{DataParallel, World};
//! use chainrule::nn::{self, Module};
//! use chainrule::{DType, Tensor};
//! let world = World::init()?; // under `mpirun -np N`
//! let model = nn::mlp(&[64, 128, 10], nn::Activation::Relu, 0, DType::F32);
//! let mut ddp = DataParallel::new(&world, &model)?; // rank 0's weights everywhere
//! let (x, labels) = (Tensor::zeros(&[4, 64], DType::F32), Tensor::from_vec(vec![0i64; 4], &[4]));
//! let loss = nn::cross_entropy_loss(&model.forward(&x)?, &labels)?;
//! ddp.backward(&loss, 1.0 / world.size() as f64)?; // .grad: the ranks' mean gradient
//! # Ok(()) }
//! ```

use crate::custom::CustomOp;
use crate::error::{Error, Result};
use crate::nn::{BatchNorm, BatchStatistics, Buffer, Param, Parameters};
use crate::{DType, Tensor};
use mpi::collective::SystemOperation;
use mpi::request::{LocalScope, Request, StaticScope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The target size of one gradient bucket (PyTorch's default is 25 MiB;
/// smaller buckets start sooner, larger ones pay less latency per byte).
pub const BUCKET_BYTES: usize = 1 << 20;

/// How long a collective waits for the other ranks unless
/// [`World::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits for `requests` on `comm` (see [`World::finish`]).
fn finish_on(
    comm: &SimpleCommunicator,
    timeout: Duration,
    op: &str,
    mut requests: Vec<FlatRequest>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        requests = requests.into_iter().filter_map(FlatRequest::test).collect();
        if requests.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!(
                "chainrule: rank {} of {}: the {op} did not complete within {timeout:?}: another \
                 rank died, hangs, or runs a different program; ending the job",
                comm.rank(),
                comm.size(),
            );
            comm.abort(TIMEOUT_EXIT_CODE);
        }
        std::thread::yield_now();
    }
}

/// `send` summed over the ranks, waiting at most `timeout`.
fn all_reduce_flat(send: &Flat, timeout: Duration, op: &str) -> Result<Flat> {
    let mut sums = Flat::zeros(send.dtype(), send.len());
    let comm = SimpleCommunicator::world();
    mpi::request::scope(|scope| {
        let request = FlatRequest::start(&comm, scope, send, &mut sums);
        finish_on(&comm, timeout, op, vec![request])
    })?;
    Ok(sums)
}

/// `t` summed over the ranks (see [`Flat`] for the dtype it is summed in).
fn all_reduce_tensor(t: &Tensor, timeout: Duration, op: &str) -> Result<Tensor> {
    let sums = all_reduce_flat(&Flat::of(t), timeout, op)?;
    Ok(sums.into_tensor(t.shape(), t.dtype()))
}

/// The sum of a tensor over the ranks as a differentiable op: every rank's
/// output reads every rank's input, so its adjoint (and tangent) is the
/// sum of the ranks' adjoints (tangents).
struct AllReduceSum {
    timeout: Duration,
}

impl AllReduceSum {
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let op = Arc::new(AllReduceSum {
            timeout: self.timeout,
        });
        crate::custom::apply(op, &[x])
    }
}

impl CustomOp for AllReduceSum {
    fn name(&self) -> &'static str {
        "all_reduce_sum"
    }

    fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
        all_reduce_tensor(&x[0], self.timeout, "all-reduce of a batch's statistics")
    }

    fn jvp(&self, _: &[Tensor], _: &Tensor, t: &[Option<Tensor>]) -> Result<Tensor> {
        self.apply(t[0].as_ref().expect("one input, with a tangent"))
    }

    fn vjp(&self, _: &[Tensor], _: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(self.apply(g)?)])
    }
}

/// A batch's statistics over every rank's slice (see
/// [`World::sync_batch_norm`]): the count, then the mean, then the mean
/// squared deviation from it, each summed over the ranks.
struct GlobalBatchStatistics {
    timeout: Duration,
}

impl BatchStatistics for GlobalBatchStatistics {
    fn statistics(&self, x: &Tensor) -> Result<(Tensor, Tensor, usize)> {
        let c = x.shape()[1];
        let axes: Vec<usize> = (0..x.ndim()).filter(|&a| a != 1).collect();
        let local = Tensor::from_vec(vec![(x.numel() / c.max(1)) as f64], &[1]);
        let count = all_reduce_tensor(&local, self.timeout, "all-reduce of a batch's size")?.item();
        let sum = AllReduceSum {
            timeout: self.timeout,
        };
        let mean = sum.apply(&x.try_sum_axes(&axes, true)?)? / count;
        let squares = x.try_sub(&mean)?.square().try_sum_axes(&axes, false)?;
        let var = sum.apply(&squares)? / count;
        Ok((mean.try_reshape(&[c])?, var, count as usize))
    }
}

/// The exit code of a job ended by a collective's timeout.
pub const TIMEOUT_EXIT_CODE: i32 = 75;

/// This process's place in an MPI job: MPI set up once per process (run
/// without `mpirun`, a process is a job of one rank).
pub struct World {
    comm: SimpleCommunicator,
    /// A second communicator for [`World::wait_for_others_to_fail`], so
    /// that its handshake never matches a collective of the training.
    failures: SimpleCommunicator,
    timeout: Duration,
    // Dropped last: finalizes MPI.
    _universe: mpi::environment::Universe,
}

impl World {
    /// Sets up MPI; an error if it already was in this process.
    pub fn init() -> Result<World> {
        let universe = mpi::initialize().ok_or_else(|| {
            Error::invalid("World::init", "MPI is already initialized in this process")
        })?;
        let comm = universe.world();
        Ok(World {
            failures: comm.duplicate(),
            comm,
            timeout: DEFAULT_TIMEOUT,
            _universe: universe,
        })
    }

    /// This process's rank, 0 to `size() - 1`.
    pub fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.comm.size() as usize
    }

    /// Whether this is rank 0, the one that prints and saves.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// How long each collective waits for the other ranks before it fails.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Ends every rank of the job (`MPI_Abort`) with exit code `code`:
    /// what a rank does after an error the others may not see, so that
    /// none of them waits for it.
    pub fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }

    /// After an error: waits at most `grace` for the other ranks to get
    /// here too, as ranks that failed the same check do, so that each has
    /// printed its error before `mpirun` ends the job at the first rank's
    /// exit. A rank that failed alone waits out `grace`.
    pub fn wait_for_others_to_fail(&self, grace: Duration) {
        // The handshake may never complete: its buffers are leaked (16
        // bytes, once, on the way out) so that MPI may write them later.
        let send: &'static [f64] = Box::leak(Box::new([0.0]));
        let recv: &'static mut [f64] = Box::leak(Box::new([0.0]));
        let sum = SystemOperation::sum();
        let mut request = self
            .failures
            .immediate_all_reduce_into(StaticScope, send, recv, sum);
        let deadline = Instant::now() + grace;
        loop {
            request = match request.test() {
                Ok(_) => return,
                Err(pending) => pending,
            };
            if Instant::now() > deadline {
                std::mem::forget(request);
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sums `values` across ranks in place (every rank gets the sums).
    pub fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        self.all_reduce(values, SystemOperation::sum())
    }

    fn all_reduce(&self, values: &mut [f64], op: SystemOperation) -> Result<()> {
        let send = values.to_vec();
        mpi::request::scope(|scope| {
            let request = self
                .comm
                .immediate_all_reduce_into(scope, &send[..], values, op);
            self.finish("all-reduce", vec![FlatRequest::F64(request)])
        })
    }

    /// Waits for `requests` until the deadline. Past it, this rank says
    /// what it waited for and ends the job ([`World::abort`], exit code
    /// [`TIMEOUT_EXIT_CODE`]): MPI may still write into the requests'
    /// buffers, so they can be neither freed nor returned from (PyTorch's
    /// watchdog also ends the process on a collective's timeout).
    fn finish(&self, op: &str, requests: Vec<FlatRequest>) -> Result<()> {
        finish_on(&self.comm, self.timeout, op, requests)
    }

    /// Makes every [`BatchNorm`] of `layers` normalize by the statistics
    /// of the whole global batch, every rank's slice together, in training
    /// (PyTorch's `SyncBatchNorm`): two all-reduces per layer in forward,
    /// two in backward. Every rank must then run each layer on every step
    /// with at least one example.
    pub fn sync_batch_norm(&self, layers: &[&BatchNorm]) {
        let statistics: Arc<dyn BatchStatistics> = Arc::new(GlobalBatchStatistics {
            timeout: self.timeout,
        });
        for layer in layers {
            layer.set_statistics(Some(statistics.clone()));
        }
    }

    /// Rank 0's values of `params`, given to every rank (after checking
    /// that the ranks' models have the same structure).
    pub fn broadcast_params(&self, params: &[(String, Param)]) -> Result<()> {
        self.check_same(params, structure_hash(params), "the model's structure")?;
        for (_, p) in params {
            p.set(&self.broadcast(&p.value())?)?;
        }
        Ok(())
    }

    /// Rank 0's `value` (of the same shape and dtype on every rank).
    fn broadcast(&self, value: &Tensor) -> Result<Tensor> {
        // f32 and the integer dtypes of buffers go through f64 exactly.
        let mut flat = value.to_vec::<f64>();
        mpi::request::scope(|scope| {
            let root = self.comm.process_at_rank(0);
            let request = root.immediate_broadcast_into(scope, &mut flat[..]);
            self.finish("broadcast of the model", vec![FlatRequest::F64(request)])
        })?;
        Ok(Tensor::from_vec(flat, value.shape()).to_dtype(value.dtype()))
    }

    /// An error on every rank unless all ranks' `params` hold the same
    /// names, shapes, dtypes and values (one all-reduce of checksums).
    pub fn check_identical(&self, params: &[(String, Param)]) -> Result<()> {
        let mut h = std::hash::DefaultHasher::new();
        structure_hash(params).hash(&mut h);
        for (_, p) in params {
            for v in p.value().to_vec::<f64>() {
                v.to_bits().hash(&mut h);
            }
        }
        self.check_same(params, h.finish(), "the parameters' values")
    }

    /// An error on every rank unless every rank's `hash` is the same.
    fn check_same(&self, params: &[(String, Param)], hash: u64, what: &str) -> Result<()> {
        // The largest of each half of h and of !h (halves are exact in
        // f64): the hashes agree iff max(h) = !max(!h), that is max = min.
        let halves = |h: u64| [(h >> 32) as f64, (h & 0xffff_ffff) as f64];
        let (h, not_h) = (halves(hash), halves(!hash));
        let mut maxima = [h[0], h[1], not_h[0], not_h[1]];
        self.all_reduce(&mut maxima, SystemOperation::max())?;
        let agree = (0..2).all(|i| maxima[i] as u64 == 0xffff_ffff - maxima[i + 2] as u64);
        if !agree {
            return Err(Error::invalid(
                "distributed",
                format!(
                    "rank {} of {}: the ranks disagree on {what} ({} parameters here): \
                     every rank must build the same model",
                    self.rank(),
                    self.size(),
                    params.len()
                ),
            ));
        }
        Ok(())
    }
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The names, shapes and dtypes of `params`, hashed.
fn structure_hash(params: &[(String, Param)]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for (name, p) in params {
        let v = p.value();
        (name, v.shape(), v.dtype().to_string()).hash(&mut h);
    }
    h.finish()
}

/// Gradients of one dtype, summed across ranks together.
struct Bucket {
    /// Indices into the trainable parameters, in the order backward
    /// finishes them (the reverse of the model's order).
    members: Vec<usize>,
    dtype: DType,
}

/// Data-parallel gradients for a model (PyTorch's
/// `DistributedDataParallel`): see the [module](self).
pub struct DataParallel<'w> {
    world: &'w World,
    params: Vec<Param>,
    /// Running statistics (BatchNorm's): averaged across ranks each step.
    buffers: Vec<Buffer>,
    buckets: Vec<Bucket>,
    /// For each parameter, its bucket.
    bucket_of: Vec<usize>,
    /// Each bucket's gradients and their sums, kept from step to step.
    flats: Vec<(Flat, Flat)>,
    /// Time spent after backward waiting for the gradients' sums.
    waiting: Duration,
}

impl<'w> DataParallel<'w> {
    /// Checks that every rank built the same model, gives every rank rank
    /// 0's values and checks them identical, and plans the buckets.
    pub fn new(world: &'w World, model: &dyn Parameters) -> Result<DataParallel<'w>> {
        let named = model.named_params();
        let buffers: Vec<Buffer> = model.named_buffers().into_iter().map(|(_, b)| b).collect();
        let shapes: Vec<Vec<usize>> = buffers.iter().map(|b| b.value().shape().to_vec()).collect();
        world.check_same(&named, hash_of(&shapes), "the model's buffers")?;
        world.broadcast_params(&named)?;
        world.check_identical(&named)?;
        for b in &buffers {
            b.set(&world.broadcast(&b.value())?)?;
        }
        // Frozen parameters get no gradient (and keep rank 0's values).
        let params: Vec<Param> = named
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| !p.is_frozen())
            .collect();
        let (buckets, bucket_of) = plan_buckets(&params, BUCKET_BYTES);
        let flats = buckets
            .iter()
            .map(|b| {
                let len = b.members.iter().map(|&k| params[k].numel()).sum();
                (Flat::zeros(b.dtype, len), Flat::zeros(b.dtype, len))
            })
            .collect();
        Ok(DataParallel {
            world,
            params,
            buffers,
            buckets,
            bucket_of,
            flats,
            waiting: Duration::ZERO,
        })
    }

    /// The time spent so far waiting for the gradients' sums once
    /// backward was done: the part of communication that computation did
    /// not hide.
    pub fn waiting(&self) -> Duration {
        self.waiting
    }

    /// The number of buckets the gradients travel in.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Runs backward from `loss` scaled by `weight`, then sums the
    /// gradients across ranks into every parameter's `.grad` (replacing
    /// what was there). With `weight` = this rank's share of the global
    /// batch (its examples over all ranks' examples) and `loss` the mean
    /// over this rank's examples, `.grad` is the gradient of the global
    /// batch's mean loss; `1 / size` averages, as PyTorch does.
    pub fn backward(&mut self, loss: &Tensor, weight: f64) -> Result<()> {
        for p in &self.params {
            p.zero_grad();
        }
        let scaled = loss * weight;
        let values: Vec<Tensor> = self.params.iter().map(Param::value).collect();
        self.exchange(|ready| scaled.backward_watching(&values, ready))?;
        self.average_buffers()
    }

    /// Takes part in a step without a loss of its own (this rank's slice
    /// of the global batch is empty): contributes zeros.
    pub fn backward_without_loss(&mut self) -> Result<()> {
        for p in &self.params {
            p.zero_grad();
        }
        let n = self.params.len();
        self.exchange(|ready| {
            (0..n).for_each(ready);
            Ok(())
        })?;
        self.average_buffers()
    }

    /// Replaces every buffer by its mean over the ranks (in its dtype: the
    /// sum, then divided by the number of ranks), so that running
    /// statistics gathered from each rank's slice agree everywhere.
    fn average_buffers(&self) -> Result<()> {
        let n = self.world.size();
        for b in &self.buffers {
            let value = b.value();
            let sums = all_reduce_flat(
                &Flat::of(&value),
                self.world.timeout,
                "all-reduce of the buffers",
            )?;
            let mean = match sums {
                Flat::F32(v) => Flat::F32(v.into_iter().map(|x| x / n as f32).collect()),
                Flat::F64(v) => Flat::F64(v.into_iter().map(|x| x / n as f64).collect()),
            };
            b.set(&mean.into_tensor(value.shape(), value.dtype()))?;
        }
        Ok(())
    }

    /// Runs `pass`, which reports each parameter whose gradient is final;
    /// each bucket is all-reduced once all of its gradients are, in bucket
    /// order; then waits for all and stores the sums.
    fn exchange(&mut self, pass: impl FnOnce(&mut dyn FnMut(usize)) -> Result<()>) -> Result<()> {
        let (world, params, bucket_of) = (self.world, &self.params, &self.bucket_of);
        let buckets = &self.buckets;
        let mut left: Vec<usize> = buckets.iter().map(|b| b.members.len()).collect();
        let waiting = &mut self.waiting;
        // The buffers (kept from step to step) outlive the scope, as MPI
        // writes into them until the requests complete.
        let flats = &mut self.flats;
        mpi::request::scope(|scope| {
            let mut started: Vec<FlatRequest> = Vec::with_capacity(buckets.len());
            let mut slots = flats.iter_mut();
            let mut next = 0;
            let mut on_ready = |k: usize| {
                left[bucket_of[k]] -= 1;
                // Buckets start in one order on every rank, whatever order
                // their gradients finish in here.
                while next < buckets.len() && left[next] == 0 {
                    let (send, recv) = slots.next().expect("one pair per bucket");
                    gather(params, &buckets[next].members, send);
                    started.push(FlatRequest::start(&world.comm, scope, send, recv));
                    next += 1;
                }
                // MPI moves a non-blocking collective along only inside
                // its calls (no progress thread): a test per gradient
                // keeps the started buckets going while backward runs.
                started = std::mem::take(&mut started)
                    .into_iter()
                    .filter_map(FlatRequest::test)
                    .collect();
            };
            let passed = pass(&mut on_ready);
            // Wait even after an error: the buffers may not go while MPI
            // still writes into them.
            let since = Instant::now();
            let waited = world.finish("all-reduce of the gradients", started);
            *waiting += since.elapsed();
            passed.and(waited)
        })?;
        for (bucket, (_, sums)) in self.buckets.iter().zip(&self.flats) {
            scatter(&self.params, &bucket.members, sums)?;
        }
        Ok(())
    }
}

/// A bucket's gradients in one flat buffer: f32 as they are, other float
/// dtypes as f64.
#[derive(Clone)]
enum Flat {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Flat {
    fn zeros(dtype: DType, len: usize) -> Flat {
        match dtype {
            DType::F32 => Flat::F32(vec![0.0; len]),
            _ => Flat::F64(vec![0.0; len]),
        }
    }

    /// `t`'s elements, row-major.
    fn of(t: &Tensor) -> Flat {
        match t.dtype() {
            DType::F32 => Flat::F32(t.to_vec::<f32>()),
            _ => Flat::F64(t.to_vec::<f64>()),
        }
    }

    /// The dtype it holds its elements in.
    fn dtype(&self) -> DType {
        match self {
            Flat::F32(_) => DType::F32,
            Flat::F64(_) => DType::F64,
        }
    }

    fn len(&self) -> usize {
        match self {
            Flat::F32(v) => v.len(),
            Flat::F64(v) => v.len(),
        }
    }

    /// A tensor of `shape` and `dtype` holding these elements.
    fn into_tensor(self, shape: &[usize], dtype: DType) -> Tensor {
        match self {
            Flat::F32(v) => Tensor::from_vec(v, shape).to_dtype(dtype),
            Flat::F64(v) => Tensor::from_vec(v, shape).to_dtype(dtype),
        }
    }
}

/// A non-blocking sum under way, of either kind of buffer.
enum FlatRequest<'a, 's> {
    F32(Request<'a, [f32], &'s LocalScope<'a>>),
    F64(Request<'a, [f64], &'s LocalScope<'a>>),
}

impl<'a, 's> FlatRequest<'a, 's> {
    fn start(
        comm: &SimpleCommunicator,
        scope: &'s LocalScope<'a>,
        send: &'a Flat,
        recv: &'a mut Flat,
    ) -> FlatRequest<'a, 's> {
        let sum = SystemOperation::sum();
        match (send, recv) {
            (Flat::F32(s), Flat::F32(r)) => {
                FlatRequest::F32(comm.immediate_all_reduce_into(scope, &s[..], &mut r[..], sum))
            }
            (Flat::F64(s), Flat::F64(r)) => {
                FlatRequest::F64(comm.immediate_all_reduce_into(scope, &s[..], &mut r[..], sum))
            }
            _ => unreachable!("a bucket's buffers share its dtype"),
        }
    }

    /// `None` once complete, else the request still under way.
    fn test(self) -> Option<Self> {
        match self {
            FlatRequest::F32(r) => r.test().err().map(FlatRequest::F32),
            FlatRequest::F64(r) => r.test().err().map(FlatRequest::F64),
        }
    }
}

/// Writes the gradients of `members` (zeros for one backward did not
/// reach) one after the other into `flat`.
fn gather(params: &[Param], members: &[usize], flat: &mut Flat) {
    let mut start = 0;
    for &k in members {
        let p = &params[k];
        let range = start..start + p.numel();
        start = range.end;
        let grad = p.grad();
        match flat {
            Flat::F32(v) => copy_into(grad.as_ref(), &mut v[range]),
            Flat::F64(v) => copy_into(grad.as_ref(), &mut v[range]),
        }
    }
}

/// `grad`'s elements (zeros for none) into `out`, straight from its buffer
/// when it holds them in order.
fn copy_into<T: crate::storage::StorageElement>(grad: Option<&Tensor>, out: &mut [T]) {
    match grad {
        None => out.fill(T::default()),
        Some(g) => match g.layout().contiguous_range() {
            Some(run) if g.dtype() == T::DTYPE => out.copy_from_slice(&g.buffer::<T>()[run]),
            _ => out.copy_from_slice(&g.to_vec::<T>()),
        },
    }
}

/// Stores the summed gradients of `members` into their `.grad`.
fn scatter(params: &[Param], members: &[usize], sums: &Flat) -> Result<()> {
    let mut start = 0;
    for &k in members {
        let p = &params[k];
        let range = start..start + p.numel();
        start = range.end;
        let g = match sums {
            Flat::F32(v) => Tensor::from_slice(&v[range], &p.shape()),
            Flat::F64(v) => Tensor::from_slice(&v[range], &p.shape()).to_dtype(p.dtype()),
        };
        p.set_grad(Some(g))?;
    }
    Ok(())
}

/// Buckets of about `bytes`, filled in the reverse of the parameters'
/// order (the order backward finishes them), one dtype each.
fn plan_buckets(params: &[Param], bytes: usize) -> (Vec<Bucket>, Vec<usize>) {
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut bucket_of = vec![0; params.len()];
    let mut filled = 0;
    for k in (0..params.len()).rev() {
        let v = params[k].value();
        let size = v.numel() * v.dtype().size();
        let fits = buckets
            .last()
            .is_some_and(|b| b.dtype == v.dtype() && filled + size <= bytes.max(size));
        if !fits {
            buckets.push(Bucket {
                members: Vec::new(),
                dtype: v.dtype(),
            });
            filled = 0;
        }
        filled += size;
        bucket_of[k] = buckets.len() - 1;
        buckets.last_mut().expect("pushed").members.push(k);
    }
    (buckets, bucket_of)
}
