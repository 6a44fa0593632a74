//! Training utilities: gradient clipping, per-iteration schedules (checked
//! against PyTorch's OneCycleLR), weight-decay exclusions, and a checkpoint
//! that resumes a run bit for bit.

use chainrule::nn::{self, Module, Param, Parameters};
use chainrule::optim::{self, Adam, Decay, Optimizer, Scheduler, Sgd};
use chainrule::{ConvOptions, DType, Tensor};

const F64: DType = DType::F64;

#[test]
fn clip_grad_norm_scales_all_gradients_together() {
    let a = Param::new(Tensor::zeros(&[2], F64));
    let b = Param::new(Tensor::zeros(&[1], F64));
    let loss =
        (a.value() * &Tensor::from_vec(vec![3.0, 0.0], &[2])).sum() + (b.value() * 4.0).sum();
    loss.backward().unwrap();
    let norm = optim::clip_grad_norm(&[a.clone(), b.clone()], 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-12);
    let ga = a.grad().unwrap().to_vec::<f64>();
    let gb = b.grad().unwrap().to_vec::<f64>();
    let f = 1.0 / (5.0 + 1e-6);
    assert_eq!(ga, [3.0 * f, 0.0]);
    assert_eq!(gb, [4.0 * f]);
    // Under the limit nothing changes.
    assert!(
        (optim::clip_grad_norm(std::slice::from_ref(&a), 10.0).unwrap() - 3.0 * f).abs() < 1e-12
    );
    assert_eq!(a.grad().unwrap().to_vec::<f64>(), [3.0 * f, 0.0]);
    optim::clip_grad_value(&[a.clone(), b.clone()], 0.5).unwrap();
    assert_eq!(a.grad().unwrap().to_vec::<f64>(), [0.5, 0.0]);
    assert!(optim::clip_grad_norm(&[a], -1.0).is_err());
}

#[test]
fn one_cycle_matches_pytorch() {
    // torch.optim.lr_scheduler.OneCycleLR(SGD(lr=0.1), max_lr=0.1,
    // total_steps=10, cycle_momentum=False), the rate of each step.
    let torch = [
        0.0040000000000000036,
        0.052000000000000005,
        0.1,
        0.09504846320134738,
        0.0811745653949763,
        0.06112620219362893,
        0.03887419780637107,
        0.0188258346050237,
        0.004951936798652629,
        4e-07,
    ];
    let mut sched = Scheduler::new(0.1, 0, 10, Decay::one_cycle()).unwrap();
    let p = Param::new(Tensor::zeros(&[1], F64));
    let mut opt = Sgd::new(vec![p], 1.0);
    sched.apply(&mut opt);
    for (t, want) in torch.iter().enumerate() {
        assert!(
            (opt.lr() - want).abs() < 1e-15,
            "step {t}: {} vs {want}",
            opt.lr()
        );
        sched.step(&mut opt);
    }
}

#[test]
fn warmup_then_linear_or_cosine_decay() {
    let lin = Scheduler::new(1.0, 4, 14, Decay::Linear).unwrap();
    let rates: Vec<f64> = (0..14).map(|t| lin.lr_at(t)).collect();
    assert_eq!(&rates[..5], &[0.25, 0.5, 0.75, 1.0, 1.0]);
    assert!((rates[9] - 0.5).abs() < 1e-12);
    let cos = Scheduler::new(1.0, 2, 12, Decay::Cosine)
        .unwrap()
        .min_lr(0.1);
    assert_eq!(cos.lr_at(2), 1.0);
    assert!((cos.lr_at(7) - 0.55).abs() < 1e-12);
    assert!((cos.lr_at(12) - 0.1).abs() < 1e-12 && cos.lr_at(100) == cos.lr_at(12));
    assert!(cos.lr_at(11) > 0.1);
    assert!(Scheduler::new(1.0, 5, 4, Decay::Linear).is_err());
}

#[test]
fn excluded_parameters_are_not_decayed() {
    let w = Param::new(Tensor::ones(&[2, 2], F64));
    let b = Param::new(Tensor::ones(&[2], F64));
    let mut opt =
        Adam::adamw(vec![w.clone(), b.clone()], 0.1).no_weight_decay(std::slice::from_ref(&b));
    // Zero gradients: only the decoupled decay moves a weight.
    (w.value().sum() * 0.0 + b.value().sum() * 0.0)
        .backward()
        .unwrap();
    opt.step().unwrap();
    assert_eq!(w.value().to_vec::<f64>(), [1.0 - 0.1 * 0.01; 4]);
    assert_eq!(b.value().to_vec::<f64>(), [1.0; 2]);
    let model = nn::Linear::with_default_init(3, 2, 0, F64);
    let excluded = optim::no_decay(&model);
    assert_eq!(excluded.len(), 1);
    assert!(excluded[0].same(&model.bias));
}

#[derive(nn::Module)]
struct Small {
    conv: nn::Conv2d,
    norm: nn::BatchNorm,
    head: nn::Linear,
}

impl Small {
    fn new(seed: u64) -> Small {
        Small {
            conv: nn::Conv2d::new(1, 3, [3, 3], ConvOptions::default(), seed, F64).unwrap(),
            norm: nn::BatchNorm2d::new_2d(3, F64),
            head: nn::Linear::with_default_init(12, 4, seed + 1, F64),
        }
    }
}

impl Module for Small {
    fn forward(&self, x: &Tensor) -> chainrule::Result<Tensor> {
        let h = self.norm.forward(&self.conv.forward(x)?)?.relu();
        self.head.forward(&nn::Flatten(1).forward(&h)?)
    }
}

/// Steps `from..to` of a run: batch `t` drawn from seed `t`.
fn train(model: &Small, opt: &mut Adam, sched: &mut Scheduler, from: usize, to: usize) {
    for t in from..to {
        let x = Tensor::rand_normal(&[4, 1, 4, 4], 0.0, 1.0, t as u64, F64);
        let labels = Tensor::from_vec(vec![0i64, 1, 2, 3], &[4]);
        let loss = nn::cross_entropy_loss(&model.forward(&x).unwrap(), &labels).unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        optim::clip_grad_norm(&model.params(), 1.0).unwrap();
        opt.step().unwrap();
        sched.step(opt);
    }
}

fn everything(model: &Small) -> Vec<Vec<f64>> {
    nn::state(model)
        .into_iter()
        .map(|(_, t)| t.to_vec::<f64>())
        .collect()
}

#[test]
fn a_resumed_run_matches_an_uninterrupted_one_bit_for_bit() {
    let setup = |model: &Small| {
        let opt = Adam::adamw(model.params(), 0.01).no_weight_decay(&optim::no_decay(model));
        let sched = Scheduler::new(0.01, 0, 10, Decay::one_cycle()).unwrap();
        (opt, sched)
    };
    let whole = Small::new(0);
    let (mut opt, mut sched) = setup(&whole);
    sched.apply(&mut opt);
    train(&whole, &mut opt, &mut sched, 0, 10);

    let dir = std::env::temp_dir().join(format!("chainrule-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.safetensors");
    let first = Small::new(0);
    let (mut opt, mut sched) = setup(&first);
    sched.apply(&mut opt);
    train(&first, &mut opt, &mut sched, 0, 5);
    let extra = [("steps".to_string(), Tensor::scalar(sched.steps() as i64))];
    optim::save_checkpoint(&path, &first, &opt, &extra).unwrap();

    // A different process: other initial weights, a fresh optimizer.
    let resumed = Small::new(99);
    let (mut opt, mut sched) = setup(&resumed);
    let extra = optim::load_checkpoint(&path, &resumed, &mut opt).unwrap();
    assert_eq!(extra[0].0, "steps");
    sched.set_steps(extra[0].1.item() as usize);
    sched.apply(&mut opt);
    train(&resumed, &mut opt, &mut sched, 5, 10);
    assert_eq!(everything(&resumed), everything(&whole));

    // A checkpoint for another optimizer is refused and changes nothing.
    let before = everything(&resumed);
    let mut sgd = Sgd::new(resumed.params(), 0.1);
    assert!(optim::load_checkpoint(&path, &resumed, &mut sgd).is_err());
    assert_eq!(everything(&resumed), before);
    std::fs::remove_dir_all(&dir).unwrap();
}
