//! `chainrule train linreg|mlp`: a full training loop on chainrule's layers,
//! optimizers and data, with a progress bar, a line per epoch, a PNG of the
//! curves, and optionally saved weights and a final JSON line.

use crate::plot::{self, Panel, Series};
use crate::CliError;
use chainrule::data::{self, Dataset, Targets};
use chainrule::nn::{self, Module, Parameters};
use chainrule::optim::{Adam, Optimizer, Schedule, Sgd};
use chainrule::{autograd, DType, Tensor};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Task {
    /// Linear regression on synthetic data (w = [2, −3.4], b = 4.2, noise 0.01).
    Linreg,
    /// An MLP classifier on the shipped 8×8 handwritten digits (20% held out).
    Mlp,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleKind {
    Constant,
    /// Halve the rate every third of the run.
    Step,
    Cosine,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// What to train.
    #[arg(value_enum)]
    task: Task,
    /// Passes over the training set (default: 5 for linreg, 30 for mlp).
    #[arg(long)]
    epochs: Option<usize>,
    /// Learning rate (default: 0.03 for linreg, 0.001 for mlp).
    #[arg(long)]
    lr: Option<f64>,
    /// Examples per step (default: 10 for linreg, 32 for mlp).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Optimizer (default: sgd for linreg, adam for mlp).
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0)]
    momentum: f64,
    /// Weight decay (L2 for sgd/adam, decoupled for adamw).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Learning-rate schedule over the epochs.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Constant)]
    schedule: ScheduleKind,
    /// Hidden width of the MLP.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Seed of the data split, initialization and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Start from weights saved by --save (safetensors).
    #[arg(long)]
    load: Option<PathBuf>,
    /// Save the trained weights here (safetensors).
    #[arg(long)]
    save: Option<PathBuf>,
    /// The PNG of the loss (and accuracy) curves.
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
}

fn setup(args: &TrainArgs) -> Result<Setup, CliError> {
    let (model, train, test): (Box<dyn Module>, Dataset, Dataset) = match args.task {
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
            if args.hidden == 0 {
                return Err(CliError::Input("--hidden must be at least 1".into()));
            }
            // Sized before anything is allocated: the weights, and the
            // activations of a batch of the whole training set.
            let params = args
                .hidden
                .checked_mul(64 + 1 + 10)
                .and_then(|n| n.checked_add(10));
            let activations = args.hidden.checked_mul(1797);
            let limit = crate::eval::MAX_ELEMENTS;
            if params.is_none_or(|n| n > limit) || activations.is_none_or(|n| n > limit) {
                return Err(CliError::Input(format!(
                    "--hidden {}: the model or its activations would exceed {limit} values (the command's limit)",
                    args.hidden
                )));
            }
            let digits = data::digits(DType::F32)?;
            let (train, test) = digits.split(0.2, args.seed);
            let model = nn::mlp(
                &[64, args.hidden, 10],
                nn::Activation::Relu,
                args.seed,
                DType::F32,
            );
            (Box::new(model), train, test)
        }
    };
    let linreg = args.task == Task::Linreg;
    let s = Setup {
        model,
        train,
        test,
        epochs: args.epochs.unwrap_or(if linreg { 5 } else { 30 }),
        lr: args.lr.unwrap_or(if linreg { 0.03 } else { 0.001 }),
        batch_size: args.batch_size.unwrap_or(if linreg { 10 } else { 32 }),
        optimizer: args.optimizer.unwrap_or(if linreg {
            OptimizerKind::Sgd
        } else {
            OptimizerKind::Adam
        }),
    };
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
    Ok(s)
}

fn loss_of(model: &dyn Module, batch: &Dataset) -> chainrule::Result<Tensor> {
    let out = model.forward(&batch.x)?;
    match &batch.y {
        Targets::Values(y) => nn::mse_loss(&out, y),
        Targets::Labels(l) => nn::cross_entropy_loss(&out, l),
    }
}

/// Mean loss (and accuracy for classifiers) over a whole data set, no graph.
fn evaluate(model: &dyn Module, ds: &Dataset) -> chainrule::Result<(f64, Option<f64>)> {
    model.set_training(false);
    let result = autograd::no_grad(|| {
        let out = model.forward(&ds.x)?;
        Ok(match &ds.y {
            Targets::Values(y) => (nn::mse_loss(&out, y)?.item(), None),
            Targets::Labels(l) => {
                let loss = nn::cross_entropy_loss(&out, l)?.item();
                let accuracy = nn::accuracy(&out, l)?.item();
                (loss, Some(accuracy))
            }
        })
    });
    model.set_training(true);
    result
}

pub fn run(args: TrainArgs) -> Result<(), CliError> {
    let s = setup(&args)?;
    if let Some(path) = &args.load {
        nn::load_into(s.model.as_ref(), path)?;
    }
    let params = s.model.params();
    let weight_decay = args.weight_decay;
    let mut opt: Box<dyn Optimizer> = match s.optimizer {
        OptimizerKind::Sgd => Box::new(
            Sgd::new(params, s.lr)
                .momentum(args.momentum)
                .weight_decay(weight_decay.unwrap_or(0.0)),
        ),
        OptimizerKind::Adam => {
            Box::new(Adam::new(params, s.lr).weight_decay(weight_decay.unwrap_or(0.0)))
        }
        OptimizerKind::Adamw => {
            let adamw = Adam::adamw(params, s.lr);
            Box::new(match weight_decay {
                Some(wd) => adamw.weight_decay(wd),
                None => adamw,
            })
        }
    };
    let schedule = match args.schedule {
        ScheduleKind::Constant => Schedule::Constant,
        ScheduleKind::Step => Schedule::Step {
            step_size: s.epochs.div_ceil(3),
            gamma: 0.5,
        },
        ScheduleKind::Cosine => Schedule::Cosine {
            epochs: s.epochs,
            min_lr: 0.0,
        },
    };
    let task = match args.task {
        Task::Linreg => "linreg",
        Task::Mlp => "mlp",
    };
    let say = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "training {task}: {} parameters, {} training / {} test examples, {} epochs, batch {}, {:?} lr {}",
        s.model.num_params(),
        s.train.len(),
        s.test.len(),
        s.epochs,
        s.batch_size,
        s.optimizer,
        s.lr
    ));

    let started = Instant::now();
    let mut history: Vec<Epoch> = Vec::new();
    for epoch in 0..s.epochs {
        opt.set_lr(schedule.lr(s.lr, epoch));
        let batches = s
            .train
            .batches(s.batch_size, Some(args.seed.wrapping_add(epoch as u64)));
        let bar = ProgressBar::new(batches.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} loss {msg} ({per_sec}, eta {eta})",
            )
            .map_err(|e| CliError::Internal(e.to_string()))?
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, s.epochs));
        let epoch_start = Instant::now();
        let (mut sum, mut seen) = (0.0, 0usize);
        for (step, batch) in batches.enumerate() {
            let loss = loss_of(s.model.as_ref(), &batch)?;
            let value = loss.item();
            if !value.is_finite() {
                bar.abandon();
                return Err(CliError::Input(format!(
                    "training diverged: the loss is {value} at epoch {}, step {} (try a smaller --lr); nothing was saved",
                    epoch + 1,
                    step + 1
                )));
            }
            opt.zero_grad();
            loss.backward()?;
            opt.step()?;
            sum += value * batch.len() as f64;
            seen += batch.len();
            bar.set_message(format!("{:.4}", sum / seen as f64));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let (test_loss, test_accuracy) = evaluate(s.model.as_ref(), &s.test)?;
        let train_loss = sum / seen.max(1) as f64;
        let rate = seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
        say(format!(
            "epoch {:>3}/{}  train loss {train_loss:.6}  test loss {test_loss:.6}{}  ({rate:.0} examples/s)",
            epoch + 1,
            s.epochs,
            test_accuracy.map_or(String::new(), |a| format!("  test accuracy {:.2}%", 100.0 * a)),
        ));
        history.push(Epoch {
            train_loss,
            test_loss,
            test_accuracy,
        });
    }
    let seconds = started.elapsed().as_secs_f64();

    if let Some(path) = &args.save {
        nn::save(s.model.as_ref(), path)?;
        say(format!("saved the weights to {}", path.display()));
    }
    let plot_path = args
        .plot
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("chainrule-train-{task}.png")));
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
    plot::write_png(&plot_path, &panels).map_err(CliError::Input)?;
    say(format!("wrote the curves to {}", plot_path.display()));

    let last = history.last().expect("at least one epoch");
    let mut summary = serde_json::json!({
        "task": task,
        "epochs": s.epochs,
        "train_loss": last.train_loss,
        "test_loss": last.test_loss,
        "seconds": seconds,
        "plot": plot_path.display().to_string(),
    });
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
