//! `chainrule train linreg|mlp|cnn|transformer`: a full training loop on
//! chainrule's layers, optimizers and data, with a progress bar, a line per
//! epoch, a PNG of the curves, checkpoints that resume exactly, and
//! optionally a final JSON line.

use crate::models::{self, DigitsCnn, TinyGpt};
use crate::parallel::{DataParallel, World};
use crate::plot::{self, Panel, Series};
use crate::CliError;
use chainrule::data::{self, Dataset, Part, Targets};
use chainrule::nn::{self, Module, Parameters};
use chainrule::optim::{self, Adam, Decay, Optimizer, Schedule, Scheduler, Sgd};
use chainrule::{autograd, DType, Tensor};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

/// What `chainrule train` trains.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Linear regression on synthetic data (w = [2, −3.4], b = 4.2, noise 0.01).
    Linreg,
    /// An MLP classifier on the shipped 8×8 handwritten digits (20% held out).
    Mlp,
    /// A convolutional classifier (three conv + batch-norm layers) on the digits.
    Cnn,
    /// A small decoder-only transformer learning multi-digit addition from
    /// generated sums; accuracy is exact match on held-out sums.
    Transformer,
}

/// The optimizer `--optimizer` names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    /// Stochastic gradient descent, with optional --momentum.
    Sgd,
    /// Adam (--weight-decay as an L2 penalty).
    Adam,
    /// AdamW: Adam with decoupled weight decay.
    Adamw,
}

/// The learning-rate schedule `--schedule` names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleKind {
    /// The same rate throughout.
    Constant,
    /// Halve the rate every third of the run.
    Step,
    /// Per epoch: cosine from --lr down to zero over the run.
    Cosine,
    /// Per step: linear warmup over --warmup steps, then cosine to zero.
    WarmupCosine,
    /// Per step: PyTorch's OneCycleLR (up to --lr over 30% of the steps, then down).
    OneCycle,
}

/// The arguments of `chainrule train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// What to train.
    #[arg(value_enum)]
    task: Task,
    /// Passes over the training set (default: 5 linreg, 30 mlp, 15 cnn, 5 transformer).
    #[arg(long)]
    epochs: Option<usize>,
    /// Learning rate, the peak for per-step schedules (default: 0.03
    /// linreg, 0.001 mlp, 0.003 cnn and transformer).
    #[arg(long)]
    lr: Option<f64>,
    /// Examples per step (default: 10 linreg, 32 mlp and cnn, 128 transformer).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Optimizer (default: sgd for linreg, adam for mlp, adamw for cnn and transformer).
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Weight decay (L2 for sgd/adam, decoupled for adamw); biases and
    /// normalization weights are excluded.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Learning-rate schedule (default: constant; one-cycle for cnn,
    /// warmup-cosine for transformer).
    #[arg(long, value_enum)]
    schedule: Option<ScheduleKind>,
    /// Warmup steps of --schedule warmup-cosine.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Scale the gradients to this global norm at most before each step
    /// (default: none; 1 for transformer).
    #[arg(long)]
    clip_grad_norm: Option<f64>,
    /// Hidden width: of the MLP (default 128), of the CNN's first layer
    /// (16), of the transformer (64).
    #[arg(long)]
    hidden: Option<usize>,
    /// Transformer: layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Transformer: attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Transformer: digits of each addend.
    #[arg(long, default_value_t = 3)]
    digits: usize,
    /// Transformer: generated training sums.
    #[arg(long, default_value_t = 50_000)]
    examples: usize,
    /// Split each batch into this many slices and sum their gradients
    /// (gradient accumulation), in the order and with the weights that
    /// `mpirun -np N` ranks sum theirs: a single process that reproduces
    /// an N-rank run (bit for bit with 2 ranks).
    #[arg(long, default_value_t = 1)]
    micro_batches: usize,
    /// cnn under mpirun: BatchNorm normalizes by the statistics of the
    /// whole global batch, every rank's slice together (PyTorch's
    /// SyncBatchNorm), rather than by each rank's slice alone.
    #[arg(long)]
    sync_batch_norm: bool,
    /// Under mpirun: how long a rank waits for the others in each exchange
    /// before it says so and ends the job.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Seed of the data split, initialization and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Start from weights saved by --save (safetensors), with a fresh optimizer.
    #[arg(long)]
    load: Option<PathBuf>,
    /// Continue the run checkpointed by --save: weights, optimizer state,
    /// schedule and curves, from the epoch it reached up to --epochs (give
    /// the run's own --epochs: per-step schedules span all of them).
    #[arg(long, conflicts_with = "load")]
    resume: Option<PathBuf>,
    /// Checkpoint here after every epoch (safetensors: weights, optimizer
    /// state, epoch), replacing the file only once the new one is written.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Write the loss (and accuracy) curves to this PNG (nothing is written unless asked).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// End with one JSON line of final figures on stdout (epoch lines go to stderr).
    #[arg(long)]
    json: bool,
}

/// Figures of one epoch.
struct Epoch {
    train_loss: f64,
    test_loss: f64,
    test_accuracy: Option<f64>,
}

struct Setup {
    model: Box<dyn Module>,
    train: Dataset,
    test: Dataset,
    epochs: usize,
    lr: f64,
    batch_size: usize,
    optimizer: OptimizerKind,
    schedule: ScheduleKind,
    clip_grad_norm: Option<f64>,
}

/// Task defaults: (epochs, lr, batch, optimizer, schedule, clip).
fn defaults(task: Task) -> (usize, f64, usize, OptimizerKind, ScheduleKind, Option<f64>) {
    use OptimizerKind::*;
    use ScheduleKind::*;
    match task {
        Task::Linreg => (5, 0.03, 10, Sgd, Constant, None),
        Task::Mlp => (30, 0.001, 32, Adam, Constant, None),
        Task::Cnn => (15, 0.003, 32, Adamw, OneCycle, None),
        Task::Transformer => (5, 0.003, 128, Adamw, WarmupCosine, Some(1.0)),
    }
}

/// Refuses sizes past the command's limit before anything is allocated.
fn check_size(what: &str, values: Option<usize>) -> Result<(), CliError> {
    let limit = crate::eval::MAX_ELEMENTS;
    match values {
        Some(n) if n <= limit => Ok(()),
        _ => Err(CliError::Input(format!(
            "{what}: the model or its activations would exceed {limit} values (the command's limit)"
        ))),
    }
}

fn model_and_data(
    args: &TrainArgs,
    world: Option<&World>,
) -> Result<(Box<dyn Module>, Dataset, Dataset), CliError> {
    let hidden = args.hidden.unwrap_or(match args.task {
        Task::Cnn => 16,
        Task::Transformer => 64,
        _ => 128,
    });
    if hidden == 0 {
        return Err(CliError::Input("--hidden must be at least 1".into()));
    }
    let digits = || -> Result<(Dataset, Dataset), CliError> {
        Ok(data::digits(DType::F32)?.split(0.2, args.seed))
    };
    Ok(match args.task {
        Task::Linreg => (
            Box::new(nn::Linear::new(
                2,
                1,
                nn::init::Init::XavierNormal,
                args.seed,
                DType::F32,
            )),
            data::linear_regression(1000, args.seed, DType::F32),
            data::linear_regression(200, args.seed.wrapping_add(1_000_003), DType::F32),
        ),
        Task::Mlp => {
            // The weights, and the activations of a batch of the whole set.
            check_size(
                &format!("--hidden {hidden}"),
                hidden.checked_mul(75).and_then(|n| n.checked_add(10)),
            )?;
            check_size(&format!("--hidden {hidden}"), hidden.checked_mul(1797))?;
            let (train, test) = digits()?;
            let model = nn::mlp(
                &[64, hidden, 10],
                nn::Activation::Relu,
                args.seed,
                DType::F32,
            );
            (Box::new(model), train, test)
        }
        Task::Cnn => {
            // The widest activations of the whole set: 2·hidden channels of 8×8.
            check_size(
                &format!("--hidden {hidden}"),
                hidden.checked_mul(2 * 64 * 1797),
            )?;
            check_size(
                &format!("--hidden {hidden}"),
                hidden.checked_mul(hidden).and_then(|n| n.checked_mul(36)),
            )?;
            let (train, test) = digits()?;
            let model = DigitsCnn::new(hidden, args.seed)?;
            if let (Some(world), true) = (world, args.sync_batch_norm) {
                world.sync_batch_norm(&model.batch_norms());
            }
            (Box::new(model), train, test)
        }
        Task::Transformer => {
            if args.layers == 0 || args.heads == 0 || !hidden.is_multiple_of(args.heads) {
                return Err(CliError::Input(format!(
                    "--layers must be at least 1 and --heads ({}) must divide --hidden ({hidden})",
                    args.heads
                )));
            }
            if !(1..=9).contains(&args.digits) || args.examples == 0 {
                return Err(CliError::Input(
                    "--digits must be 1 to 9 and --examples at least 1".into(),
                ));
            }
            let len = 3 * args.digits + 2;
            check_size(
                &format!("--hidden {hidden}"),
                hidden
                    .checked_mul(hidden)
                    .and_then(|n| n.checked_mul(args.layers))
                    .and_then(|n| n.checked_mul(12)),
            )?;
            check_size(
                &format!("--examples {}", args.examples),
                args.examples.checked_mul(len),
            )?;
            // The widest activations: a batch's (or the 1000 held-out sums')
            // attention scores and MLP hidden layer.
            let rows = args.batch_size.unwrap_or(128).min(args.examples).max(1000);
            let scores = rows
                .checked_mul(args.heads)
                .and_then(|n| n.checked_mul(len * len));
            check_size(&format!("--heads {}", args.heads), scores)?;
            let mlp = rows
                .checked_mul(len)
                .and_then(|n| n.checked_mul(hidden))
                .and_then(|n| n.checked_mul(4));
            check_size(&format!("--hidden {hidden}"), mlp)?;
            let train = data::addition(args.digits, args.examples, Part::Train, args.seed)?;
            let test = data::addition(args.digits, 1000, Part::HeldOut, args.seed.wrapping_add(1))?;
            let model = TinyGpt::new(
                data::ADDITION_VOCAB,
                len,
                hidden,
                args.heads,
                args.layers,
                args.seed,
            )?;
            (Box::new(model), train, test)
        }
    })
}

fn setup(args: &TrainArgs, world: Option<&World>) -> Result<Setup, CliError> {
    if args.sync_batch_norm && args.task != Task::Cnn {
        return Err(CliError::Input(
            "--sync-batch-norm: only cnn has BatchNorm layers".into(),
        ));
    }
    let (model, train, test) = model_and_data(args, world)?;
    let (epochs, lr, batch, optimizer, schedule, clip) = defaults(args.task);
    let s = Setup {
        model,
        train,
        test,
        epochs: args.epochs.unwrap_or(epochs),
        lr: args.lr.unwrap_or(lr),
        batch_size: args.batch_size.unwrap_or(batch),
        optimizer: args.optimizer.unwrap_or(optimizer),
        schedule: args.schedule.unwrap_or(schedule),
        clip_grad_norm: args.clip_grad_norm.or(clip),
    };
    if args.micro_batches == 0 {
        return Err(CliError::Input("--micro-batches must be at least 1".into()));
    }
    if s.epochs == 0 || s.batch_size == 0 {
        return Err(CliError::Input(
            "--epochs and --batch-size must be at least 1".into(),
        ));
    }
    if !(s.lr.is_finite() && s.lr > 0.0) {
        return Err(CliError::Input(format!(
            "--lr must be a positive number, got {}",
            s.lr
        )));
    }
    if s.clip_grad_norm.is_some_and(|c| c.is_nan() || c <= 0.0) {
        return Err(CliError::Input("--clip-grad-norm must be positive".into()));
    }
    Ok(s)
}

/// The model's loss on `batch`; sequence targets are predicted token by
/// token after the prompt (teacher forcing).
fn loss_of(model: &dyn Module, batch: &Dataset) -> chainrule::Result<Tensor> {
    match &batch.y {
        Targets::Values(y) => nn::mse_loss(&model.forward(&batch.x)?, y),
        Targets::Labels(l) => nn::cross_entropy_loss(&model.forward(&batch.x)?, l),
        Targets::Sequences(answer) => {
            let logits = models::answer_logits(model, &batch.x, answer)?;
            let vocab = logits.shape()[2];
            let flat = logits.try_reshape(&[answer.numel(), vocab])?;
            nn::cross_entropy_loss(&flat, &answer.try_reshape(&[answer.numel()])?)
        }
    }
}

/// Mean loss (and accuracy for classifiers: exact match of the greedy
/// decoding for sequences) over a whole data set, no graph.
fn evaluate(model: &dyn Module, ds: &Dataset) -> chainrule::Result<(f64, Option<f64>)> {
    model.set_training(false);
    let result = autograd::no_grad(|| {
        Ok(match &ds.y {
            Targets::Values(y) => (nn::mse_loss(&model.forward(&ds.x)?, y)?.item(), None),
            Targets::Labels(l) => {
                let out = model.forward(&ds.x)?;
                let loss = nn::cross_entropy_loss(&out, l)?.item();
                let accuracy = nn::accuracy(&out, l)?.item();
                (loss, Some(accuracy))
            }
            Targets::Sequences(answer) => {
                let loss = loss_of(model, ds)?.item();
                let decoded = models::generate(model, &ds.x, answer.shape()[1])?;
                let exact = decoded.try_eq_elem(answer)?.try_all_axes(&[1], false)?;
                let accuracy = exact.to_dtype(DType::F64).mean().item();
                (loss, Some(accuracy))
            }
        })
    });
    model.set_training(true);
    result
}

fn optimizer(s: &Setup, args: &TrainArgs) -> Box<dyn Optimizer> {
    let params = s.model.params();
    let excluded = optim::no_decay(s.model.as_ref());
    let weight_decay = args.weight_decay;
    match s.optimizer {
        OptimizerKind::Sgd => Box::new(
            Sgd::new(params, s.lr)
                .momentum(args.momentum)
                .weight_decay(weight_decay.unwrap_or(0.0))
                .no_weight_decay(&excluded),
        ),
        OptimizerKind::Adam => Box::new(
            Adam::new(params, s.lr)
                .weight_decay(weight_decay.unwrap_or(0.0))
                .no_weight_decay(&excluded),
        ),
        OptimizerKind::Adamw => {
            let adamw = Adam::adamw(params, s.lr).no_weight_decay(&excluded);
            Box::new(match weight_decay {
                Some(wd) => adamw.weight_decay(wd),
                None => adamw,
            })
        }
    }
}

/// The learning rate: per epoch (`Schedule`) or per step (`Scheduler`).
enum Rate {
    PerEpoch(Schedule),
    PerStep(Scheduler),
}

fn rate(s: &Setup, warmup: usize) -> Result<Rate, CliError> {
    let total = s
        .epochs
        .checked_mul(s.train.len().div_ceil(s.batch_size))
        .ok_or_else(|| CliError::Input(format!("--epochs {}: too many steps", s.epochs)))?;
    Ok(match s.schedule {
        ScheduleKind::Constant => Rate::PerEpoch(Schedule::Constant),
        ScheduleKind::Step => Rate::PerEpoch(Schedule::Step {
            step_size: s.epochs.div_ceil(3),
            gamma: 0.5,
        }),
        ScheduleKind::Cosine => Rate::PerEpoch(Schedule::Cosine {
            epochs: s.epochs,
            min_lr: 0.0,
        }),
        ScheduleKind::WarmupCosine => Rate::PerStep(Scheduler::new(
            s.lr,
            warmup.min(total),
            total,
            Decay::Cosine,
        )?),
        ScheduleKind::OneCycle => {
            Rate::PerStep(Scheduler::new(s.lr, 0, total, Decay::one_cycle())?)
        }
    })
}

/// `--load`: plain weights, or the model part of a checkpoint.
fn load_weights(model: &dyn Module, path: &std::path::Path) -> Result<(), CliError> {
    let tensors = nn::load_tensors(path)?;
    let origin = path.display().to_string();
    if tensors.iter().any(|(n, _)| n.starts_with("model.")) {
        let weights = tensors
            .into_iter()
            .filter_map(|(n, t)| Some((n.strip_prefix("model.")?.to_string(), t)))
            .collect();
        nn::load_state(model, weights, &origin)?;
    } else {
        nn::load_state(model, tensors, &origin)?;
    }
    Ok(())
}

/// What a checkpoint keeps besides the model and optimizer.
fn extras(epoch: usize, rate: &Rate, history: &[Epoch]) -> Vec<(String, Tensor)> {
    let column = |f: &dyn Fn(&Epoch) -> f64| {
        let v: Vec<f64> = history.iter().map(f).collect();
        Tensor::from_vec(v, &[history.len()])
    };
    let steps = match rate {
        Rate::PerStep(s) => s.steps() as i64,
        Rate::PerEpoch(_) => 0,
    };
    vec![
        ("epoch".into(), Tensor::scalar(epoch as i64)),
        ("scheduler_steps".into(), Tensor::scalar(steps)),
        ("train_loss".into(), column(&|e| e.train_loss)),
        ("test_loss".into(), column(&|e| e.test_loss)),
        (
            "test_accuracy".into(),
            column(&|e| e.test_accuracy.unwrap_or(f64::NAN)),
        ),
    ]
}

/// `--resume`: restores the model, optimizer and schedule; returns the
/// epochs done and their figures.
fn resume(
    path: &std::path::Path,
    s: &Setup,
    opt: &mut dyn Optimizer,
    rate: &mut Rate,
) -> Result<(usize, Vec<Epoch>), CliError> {
    let extra = optim::load_checkpoint(path, s.model.as_ref(), opt)?;
    let get = |name: &str| {
        extra
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| {
                CliError::Input(format!(
                    "{}: not a checkpoint of `chainrule train` (no {name})",
                    path.display()
                ))
            })
    };
    let count = |name: &str| -> Result<usize, CliError> {
        let v = get(name)?.try_item()?;
        if !(v >= 0.0 && v.fract() == 0.0) {
            return Err(CliError::Input(format!(
                "{}: `{name}` is {v}, not a count",
                path.display()
            )));
        }
        Ok(v as usize)
    };
    let epoch = count("epoch")?;
    if let Rate::PerStep(sched) = rate {
        sched.set_steps(count("scheduler_steps")?);
    }
    let (train, test, acc) = (
        get("train_loss")?.to_vec_f64(),
        get("test_loss")?.to_vec_f64(),
        get("test_accuracy")?.to_vec_f64(),
    );
    let history = (0..train.len().min(test.len()).min(acc.len()))
        .map(|i| Epoch {
            train_loss: train[i],
            test_loss: test[i],
            test_accuracy: (!acc[i].is_nan()).then_some(acc[i]),
        })
        .collect();
    Ok((epoch, history))
}

/// This rank's part of a data-parallel run (`mpirun -np N`).
struct Ranks<'w> {
    world: &'w World,
    gradients: DataParallel<'w>,
}

/// `batch` cut into `n` slices, the ones `Dataset::shard_batches` gives
/// `n` ranks of a global batch.
fn micro_batches(batch: &Dataset, n: usize) -> Vec<Dataset> {
    (0..n)
        .filter_map(|r| batch.shard_batches(batch.len(), None, r, n).next())
        .collect()
}

/// The mean of `values` summed first to last in their dtype (f32 as f32),
/// as an all-reduce of two ranks sums and `DataParallel` divides.
fn mean_in_order<'a>(values: impl Iterator<Item = &'a Tensor>) -> Tensor {
    let values: Vec<&Tensor> = values.collect();
    let mean = match values[0].dtype() {
        DType::F32 => mean_as::<f32>(&values),
        _ => mean_as::<f64>(&values),
    };
    mean.to_dtype(values[0].dtype())
}

fn mean_as<T>(values: &[&Tensor]) -> Tensor
where
    T: chainrule::Scalar + std::ops::AddAssign + std::ops::Div<Output = T>,
{
    let mut acc = values[0].to_vec::<T>();
    for v in &values[1..] {
        acc.iter_mut()
            .zip(v.to_vec::<T>())
            .for_each(|(a, x)| *a += x);
    }
    let n = T::from_f64(values.len() as f64);
    Tensor::from_vec(acc.into_iter().map(|a| a / n).collect(), values[0].shape())
}

/// This rank's gradients for its slice `batch` of a global batch of
/// `global` examples, summed across ranks into `.grad`: its loss's sum
/// and its example count.
fn rank_gradients(
    s: &Setup,
    batch: &Dataset,
    global: usize,
    r: &mut Ranks,
) -> Result<(f64, usize), CliError> {
    if batch.is_empty() {
        r.gradients.backward_without_loss()?;
        return Ok((0.0, 0));
    }
    let loss = loss_of(s.model.as_ref(), batch)?;
    let value = loss.item();
    match value.is_finite() {
        // This rank's share of the global batch's mean loss.
        true => r
            .gradients
            .backward(&loss, batch.len() as f64 / global as f64)?,
        // Still takes part in the step, so that the other ranks see this
        // one end (and the job with it) rather than wait for it.
        false => r.gradients.backward_without_loss()?,
    }
    Ok((value * batch.len() as f64, batch.len()))
}

/// The gradients of `batch`'s mean loss into `.grad`; with `micro > 1`,
/// summed over that many slices in order, as that many ranks sum theirs
/// (running statistics too: each slice starts from the step's, which then
/// become the slices' mean). The loss's sum and the example count.
fn accumulated_gradients(
    s: &Setup,
    batch: &Dataset,
    micro: usize,
) -> Result<(f64, usize), CliError> {
    if micro <= 1 {
        let loss = loss_of(s.model.as_ref(), batch)?;
        let value = loss.item();
        if value.is_finite() {
            loss.backward()?;
        }
        return Ok((value * batch.len() as f64, batch.len()));
    }
    let buffers: Vec<nn::Buffer> = s
        .model
        .named_buffers()
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let start: Vec<Tensor> = buffers.iter().map(nn::Buffer::value).collect();
    let mut ends: Vec<Vec<Tensor>> = Vec::with_capacity(micro);
    let mut sum = 0.0;
    for part in micro_batches(batch, micro) {
        for (b, v) in buffers.iter().zip(&start) {
            b.set(v)?;
        }
        if !part.is_empty() {
            let loss = loss_of(s.model.as_ref(), &part)?;
            let value = loss.item();
            sum += value * part.len() as f64;
            if value.is_finite() {
                (&loss * (part.len() as f64 / batch.len() as f64)).backward()?;
            }
        }
        ends.push(buffers.iter().map(nn::Buffer::value).collect());
    }
    for (k, b) in buffers.iter().enumerate() {
        b.set(&mean_in_order(ends.iter().map(|e| &e[k])))?;
    }
    Ok((sum, batch.len()))
}

/// One pass over the training set: its mean loss and its example count
/// (over every rank).
fn train_epoch(
    s: &Setup,
    args: &TrainArgs,
    opt: &mut dyn Optimizer,
    rate: &mut Rate,
    epoch: usize,
    mut ranks: Option<&mut Ranks>,
) -> Result<(f64, usize), CliError> {
    let seed = Some(args.seed.wrapping_add(epoch as u64));
    let mut batches = match &ranks {
        Some(r) => s
            .train
            .shard_batches(s.batch_size, seed, r.world.rank(), r.world.size()),
        None => s.train.batches(s.batch_size, seed),
    };
    let bar = match ranks.as_ref().is_none_or(|r| r.world.rank() == 0) {
        true => ProgressBar::new(batches.len() as u64),
        false => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} loss {msg} ({per_sec}, eta {eta})",
        )
        .map_err(|e| CliError::Internal(e.to_string()))?
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/{}", epoch + 1, s.epochs));
    let (mut sum, mut seen) = (0.0, 0usize);
    for step in 0.. {
        let global = batches.global_len();
        let Some(batch) = batches.next() else { break };
        opt.zero_grad();
        let (loss_sum, examples) = match &mut ranks {
            Some(r) => rank_gradients(s, &batch, global, r)?,
            None => accumulated_gradients(s, &batch, args.micro_batches)?,
        };
        if !loss_sum.is_finite() {
            bar.abandon();
            return Err(CliError::Input(format!(
                "training diverged: the loss is {loss_sum} at epoch {}, step {} (try a smaller --lr); nothing more was saved",
                epoch + 1,
                step + 1
            )));
        }
        sum += loss_sum;
        seen += examples;
        if let Some(max_norm) = s.clip_grad_norm {
            optim::clip_grad_norm(&s.model.params(), max_norm)?;
        }
        opt.step()?;
        if let Rate::PerStep(sched) = rate {
            sched.step(opt);
        }
        bar.set_message(format!("{:.4}", sum / seen.max(1) as f64));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(r) = ranks {
        let mut totals = [sum, seen as f64];
        r.world.all_reduce_sum(&mut totals)?;
        (sum, seen) = (totals[0], totals[1] as usize);
    }
    Ok((sum / seen.max(1) as f64, seen))
}

/// Runs `chainrule train`: builds the task's model and data, trains it epoch
/// by epoch (from the `--resume` checkpoint if given), then reports.
pub fn run(args: TrainArgs) -> Result<(), CliError> {
    let mut world = crate::parallel::world()?;
    if let Some(w) = &mut world {
        if !(args.timeout.is_finite() && args.timeout > 0.0) {
            return Err(CliError::Input(
                "--timeout must be a positive number of seconds".into(),
            ));
        }
        w.set_timeout(std::time::Duration::from_secs_f64(args.timeout));
    }
    match (train(&args, world.as_ref()), &world) {
        // Each rank says why before the first to exit ends the job.
        (Err(e), Some(w)) => {
            let code = e.report();
            w.wait_for_others_to_fail(std::time::Duration::from_secs(5));
            Err(CliError::Reported(code))
        }
        (result, _) => result,
    }
}

/// The training of [`run`], on this process alone or as a rank of `world`.
fn train(args: &TrainArgs, world: Option<&World>) -> Result<(), CliError> {
    let root = world.is_none_or(|w| w.rank() == 0);
    if world.is_some() && args.micro_batches > 1 {
        return Err(CliError::Input(
            "--micro-batches reproduces several ranks in one process: give it without mpirun"
                .into(),
        ));
    }
    let s = setup(args, world)?;
    if let (Some(w), true) = (world, args.sync_batch_norm) {
        // Every rank runs each BatchNorm at every step: no slice may be empty.
        let last = s.train.len() % s.batch_size;
        if s.batch_size < w.size() || (last > 0 && last < w.size()) {
            return Err(CliError::Input(format!(
                "--sync-batch-norm over {} ranks: every global batch needs at least one example per rank (--batch-size {}, {} training examples)",
                w.size(),
                s.batch_size,
                s.train.len()
            )));
        }
    }
    if let Some(path) = &args.load {
        load_weights(s.model.as_ref(), path)?;
    }
    let mut opt = optimizer(&s, args);
    let mut rate = rate(&s, args.warmup)?;
    let (first_epoch, mut history) = match &args.resume {
        Some(path) => resume(path, &s, opt.as_mut(), &mut rate)?,
        None => (0, Vec::new()),
    };
    if first_epoch >= s.epochs {
        return Err(CliError::Input(format!(
            "the checkpoint already reached epoch {first_epoch} of --epochs {}: nothing to train",
            s.epochs
        )));
    }
    let task = match args.task {
        Task::Linreg => "linreg",
        Task::Mlp => "mlp",
        Task::Cnn => "cnn",
        Task::Transformer => "transformer",
    };
    // Every rank starts from rank 0's weights, checked identical.
    let mut ranks = match world {
        Some(world) => Some(Ranks {
            world,
            gradients: DataParallel::new(world, s.model.as_ref())?,
        }),
        None => None,
    };
    // Only rank 0 prints, plots and saves.
    let say = |line: String| {
        if root {
            say(args, line)
        }
    };
    say(format!(
        "training {task}: {} parameters, {} training / {} test examples, {} epochs, batch {}{}, {:?} lr {}{}",
        s.model.num_params(),
        s.train.len(),
        s.test.len(),
        s.epochs,
        s.batch_size,
        world.map_or(String::new(), |w| format!(" over {} ranks", w.size())),
        s.optimizer,
        s.lr,
        if first_epoch > 0 { format!(", resuming after epoch {first_epoch}") } else { String::new() }
    ));

    let started = Instant::now();
    for epoch in first_epoch..s.epochs {
        match &rate {
            Rate::PerEpoch(schedule) => opt.set_lr(schedule.lr(s.lr, epoch)),
            Rate::PerStep(sched) => sched.apply(opt.as_mut()),
        }
        let epoch_start = Instant::now();
        let waited_before = ranks.as_ref().map(|r| r.gradients.waiting());
        let (train_loss, seen) =
            train_epoch(&s, args, opt.as_mut(), &mut rate, epoch, ranks.as_mut())?;
        let (test_loss, test_accuracy) = match root {
            true => evaluate(s.model.as_ref(), &s.test)?,
            false => (f64::NAN, None),
        };
        let epoch_seconds = epoch_start.elapsed().as_secs_f64().max(1e-9);
        let rate_per_s = seen as f64 / epoch_seconds;
        // The share of the epoch this rank spent waiting for the sums.
        let waiting = match (&ranks, waited_before) {
            (Some(r), Some(before)) => {
                let share = (r.gradients.waiting() - before).as_secs_f64() / epoch_seconds;
                format!(", {:.1}% waiting for the other ranks", 100.0 * share)
            }
            _ => String::new(),
        };
        say(format!(
            "epoch {:>3}/{}  train loss {train_loss:.6}  test loss {test_loss:.6}{}  ({rate_per_s:.0} examples/s{waiting})",
            epoch + 1,
            s.epochs,
            test_accuracy.map_or(String::new(), |a| format!("  test accuracy {:.2}%", 100.0 * a)),
        ));
        history.push(Epoch {
            train_loss,
            test_loss,
            test_accuracy,
        });
        if let Some(path) = args.save.as_ref().filter(|_| root) {
            let extra = extras(epoch + 1, &rate, &history);
            optim::save_checkpoint(path, s.model.as_ref(), opt.as_ref(), &extra)?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if !root {
        return Ok(());
    }
    if let Some(path) = &args.save {
        say(format!("saved the checkpoint to {}", path.display()));
    }
    report(args, &s, &history, seconds, task)
}

/// A line for the user: on stdout, or on stderr when stdout carries the
/// JSON line.
fn say(args: &TrainArgs, line: String) {
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// The plot of the curves, the last figures, and the JSON line.
fn report(
    args: &TrainArgs,
    s: &Setup,
    history: &[Epoch],
    seconds: f64,
    task: &str,
) -> Result<(), CliError> {
    let say = |line: String| say(args, line);
    let train_losses: Vec<f64> = history.iter().map(|e| e.train_loss).collect();
    let test_losses: Vec<f64> = history.iter().map(|e| e.test_loss).collect();
    let accuracies: Vec<f64> = history.iter().filter_map(|e| e.test_accuracy).collect();
    let mut panels = vec![Panel {
        title: "loss",
        x_label: "epoch",
        xs: None,
        y_label: if args.task == Task::Linreg {
            "mean squared error"
        } else {
            "cross-entropy"
        },
        series: vec![
            Series {
                name: "train",
                values: &train_losses,
            },
            Series {
                name: "test",
                values: &test_losses,
            },
        ],
    }];
    if !accuracies.is_empty() {
        panels.push(Panel {
            title: "test accuracy",
            x_label: "epoch",
            xs: None,
            y_label: "accuracy",
            series: vec![Series {
                name: "test",
                values: &accuracies,
            }],
        });
    }
    if let Some(path) = &args.plot {
        plot::write_png(path, &panels).map_err(CliError::Input)?;
        say(format!("wrote the curves to {}", path.display()));
    }

    let last = history.last().expect("at least one epoch");
    let mut summary = serde_json::json!({
        "task": task,
        "epochs": s.epochs,
        "train_loss": last.train_loss,
        "test_loss": last.test_loss,
        "seconds": seconds,
    });
    if let Some(p) = &args.plot {
        summary["plot"] = p.display().to_string().into();
    }
    if let Some(a) = last.test_accuracy {
        summary["test_accuracy"] = a.into();
    }
    if let Some(p) = &args.save {
        summary["saved"] = p.display().to_string().into();
    }
    if args.task == Task::Linreg {
        let named = s.model.named_params();
        let w = named[0].1.value().to_vec::<f64>();
        let b = named[1].1.value().to_vec::<f64>()[0];
        say(format!(
            "learned w = [{:.4}, {:.4}], b = {b:.4} (true w = [2, -3.4], b = 4.2)",
            w[0], w[1]
        ));
        summary["w"] = w.into();
        summary["b"] = b.into();
    }
    if args.json {
        println!("{summary}");
    }
    Ok(())
}
