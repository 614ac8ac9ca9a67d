//! `widealign dynamics` and `widealign align`: the theory experiments of `widealign-ntk`,
//! fed with a dataset from `widealign-data` and (for `align`) a training run of
//! `widealign-rules` with the shadow accumulator hooked into its steps.

use serde_json::Value;
use widealign_models::Mlp;
use widealign_ntk::align::{
    align_layers, AlignOptions, AlignReport, LayerAlignment, ShadowAccumulator,
};
use widealign_ntk::experiment::{
    dynamics_experiment, DynamicsConfig, DynamicsReport, RegressionData,
};
use widealign_rules::{self as rules, ModelKind, OptimizerChoice, ParamKind};

use crate::cli::{AlignArgs, DynamicsArgs};
use crate::config::{self, key_to_flag, TrainConfig};
use crate::error::CliError;
use crate::progress::Progress;
use crate::trainer::Trainer;
use crate::{emit, STOP};

/// Test points at which `dynamics` checks the function prediction (the first ones of the split).
pub const DYNAMICS_TEST_POINTS: usize = 256;

fn mlp_ntk_only(
    model: ModelKind,
    param: ParamKind,
    optimizer: OptimizerChoice,
    what: &str,
) -> Result<(), CliError> {
    if model != ModelKind::Mlp {
        return Err(CliError::flag(
            "--model",
            format!("{what} is defined for the MLP only"),
        ));
    }
    if param != ParamKind::Ntk {
        return Err(CliError::flag(
            "--param",
            format!("{what} needs the NTK parameterisation"),
        ));
    }
    if optimizer != OptimizerChoice::Sgd {
        return Err(CliError::flag(
            "--optimizer",
            format!("{what} compares with gradient descent; use sgd"),
        ));
    }
    Ok(())
}

/// The settings of one `dynamics` experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicsParams {
    /// Model, dataset and optimiser settings (width, rule, epochs, batch size are not used).
    pub cfg: TrainConfig,
    /// Widths to simulate.
    pub widths: Vec<usize>,
    /// Full-batch gradient-descent steps.
    pub steps: u64,
}

/// Runs the dynamics experiment: full-batch GD at every width against the closed form.
pub fn dynamics(p: &DynamicsParams, trainer: &mut Trainer) -> Result<DynamicsReport, CliError> {
    let c = &p.cfg;
    mlp_ntk_only(c.model, c.param, c.optimizer, "dynamics")?;
    if p.steps == 0 {
        return Err(CliError::flag("--steps", "must be at least 1"));
    }
    let data = trainer.dataset(c)?;
    let (Some(train), Some(test)) = (data.train.as_tabular(), data.test.as_tabular()) else {
        return Err(CliError::flag(
            "--dataset",
            format!(
                "{} is a sequence task; dynamics needs inputs and targets per example",
                c.dataset
            ),
        ));
    };
    let p_test = test.len().min(DYNAMICS_TEST_POINTS);
    let reg = RegressionData {
        x_train: train.x.map(f64::from),
        y_train: train.y.map(f64::from),
        x_test: test.x.rows(0, p_test).into_owned().map(f64::from),
    };
    let spec = c.mlp_spec(reg.x_train.ncols(), reg.y_train.ncols())?;
    let cfg = DynamicsConfig::new(spec, p.widths.clone(), p.steps, c.lr, c.seed);
    Ok(dynamics_experiment(&cfg, &reg)?)
}

/// `widealign dynamics`.
pub fn dynamics_cmd(a: &DynamicsArgs) -> Result<(), CliError> {
    // Full-batch gradient descent for --steps steps: --epochs and --batch-size are not used.
    let unused = TrainConfig::default();
    let cfg = TrainConfig {
        width: a.widths.0.iter().copied().max().unwrap_or(1),
        epochs: unused.epochs,
        batch_size: unused.batch_size,
        ..config::from_flags(&a.model, &a.data, &a.optim)
    };
    config::validate(&cfg).map_err(|(k, why)| CliError::flag(&key_to_flag(k), why))?;
    let r = dynamics(
        &DynamicsParams {
            cfg,
            widths: a.widths.0.clone(),
            steps: a.steps as u64,
        },
        &mut Trainer::new(),
    )?;
    if a.json {
        return emit(&serde_json::to_string(&r).map_err(|e| CliError::Failure(e.to_string()))?);
    }
    let mut s = format!(
        "largest stable lr {:.4}; {} training points, {} steps at lr {}\n{:>7} {:>12} {:>14} {:>10}\n",
        r.max_stable_lr, r.train_size, r.steps, r.lr, "width", "|dW| err", "dir err", "f err"
    );
    for (i, w) in r.widths.iter().enumerate() {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        s.push_str(&format!(
            "{w:>7} {:>12.4e} {:>14.4e} {:>10.4e}\n",
            mean(&r.errors.weight_norm[i]),
            mean(&r.errors.weight_direction[i]),
            r.errors.function[i]
        ));
    }
    s.push_str(&format!(
        "log-log slopes: weight norm {:.3}, weight direction {:.3}, function {:.3} (theory: about -0.5)",
        r.slopes.weight_norm, r.slopes.weight_direction, r.slopes.function
    ));
    emit(&s)
}

/// One width of an alignment experiment: the run's metrics and the per-layer alignment.
#[derive(Clone, Debug)]
pub struct AlignRun {
    /// The run's metrics.
    pub result: crate::runner::RunResult,
    /// Per-layer alignment (NaN when the run diverged).
    pub layers: Vec<LayerAlignment>,
}

/// Trains `cfg` with the shadow Align-zero accumulator hooked in and measures alignment.
pub fn align_one(
    cfg: &TrainConfig,
    trainer: &mut Trainer,
    observer: &mut crate::runner::Observer<'_>,
) -> Result<AlignRun, CliError> {
    mlp_ntk_only(cfg.model, ParamKind::Ntk, OptimizerChoice::Sgd, "align")?;
    let data = trainer.dataset(cfg)?;
    let Some(train) = data.train.as_tabular() else {
        return Err(CliError::flag(
            "--dataset",
            format!(
                "{} is a sequence task; align needs an MLP dataset",
                cfg.dataset
            ),
        ));
    };
    let spec = cfg.mlp_spec(train.input_dim(), train.output_dim())?;
    let initial = Mlp::<f32>::new(&spec, cfg.seed)?;
    let mut shadow = ShadowAccumulator::new(&initial);
    let mut hook_error = None;
    let halt = std::sync::atomic::AtomicBool::new(false);
    let (result, trained) = {
        let hook = |v: &rules::StepView<'_>| {
            if let rules::StepBatch::Mlp { x, err } = v.batch {
                if let Err(e) = shadow.observe(x, err, v.lr as f32) {
                    hook_error.get_or_insert(e);
                }
            }
        };
        let progress = |p: &rules::Progress<'_>| {
            if let Some(ev) = crate::trainer::run_event(p) {
                if !observer(&ev) || STOP.load(std::sync::atomic::Ordering::SeqCst) {
                    halt.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        };
        rules::train_model(
            cfg,
            &data,
            rules::Callbacks {
                progress: Some(Box::new(progress)),
                step_hook: Some(Box::new(hook)),
                stop: Some(&halt),
            },
        )?
    };
    if let Some(e) = hook_error {
        return Err(e.into());
    }
    let result = crate::trainer::run_result(result);
    let rules::Trained::Mlp(trained) = trained else {
        return Err(CliError::Failure(
            "internal: align trained a non-MLP network".into(),
        ));
    };
    let layers = if result.diverged {
        (1..=spec.depth())
            .map(|layer| LayerAlignment {
                layer,
                score: f64::NAN,
                probe_score: f64::NAN,
                shuffled: f64::NAN,
                random: f64::NAN,
                input_span: f64::NAN,
            })
            .collect()
    } else {
        align_layers(
            &initial,
            &trained,
            &shadow,
            &train.x,
            &AlignOptions {
                probes: 100,
                seed: cfg.seed,
            },
        )?
    };
    Ok(AlignRun { result, layers })
}

/// `widealign align`.
pub fn align_cmd(a: &AlignArgs, progress: &Progress) -> Result<(), CliError> {
    let base = TrainConfig {
        rule: a.rule,
        width: 1,
        ..config::from_flags(&a.model, &a.data, &a.optim)
    };
    config::validate(&base).map_err(|(k, why)| CliError::flag(&key_to_flag(k), why))?;
    mlp_ntk_only(base.model, base.param, base.optimizer, "align")?;
    let mut trainer = Trainer::new();
    let mut report = AlignReport::new();
    let mut extra: Vec<(f64, Option<f64>, bool)> = Vec::new();
    for &width in &a.widths.0 {
        let cfg = TrainConfig {
            width,
            ..base.clone()
        };
        let mut rp = crate::commands::RunProgress::new(progress, &cfg, false);
        let run = align_one(&cfg, &mut trainer, &mut |ev| rp.event(ev))?;
        drop(rp);
        if run.result.diverged {
            progress.log(&format!(
                "align: width {width} {}; its alignment is reported as null",
                run.result.divergence()
            ));
        }
        progress.log(&format!(
            "align: width {width}: layer scores {}",
            run.layers
                .iter()
                .map(|l| format!("{:.3}", l.score))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        report.push(width, &run.layers)?;
        extra.push((
            run.result.test_loss,
            run.result.test_accuracy,
            run.result.diverged,
        ));
    }
    let mut v = serde_json::to_value(&report).map_err(|e| CliError::Failure(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert("rule".into(), Value::from(base.rule.name()));
        m.insert("test_loss".into(), extra.iter().map(|e| e.0).collect());
        m.insert("test_accuracy".into(), extra.iter().map(|e| e.1).collect());
        m.insert("diverged".into(), extra.iter().map(|e| e.2).collect());
    }
    if a.json {
        return emit(&v.to_string());
    }
    let mut s = String::new();
    for layer in &report.layers {
        s.push_str(&format!(
            "layer {}\n{:>7} {:>8} {:>8} {:>9} {:>8} {:>10}\n",
            layer.layer, "width", "score", "probe", "shuffled", "random", "input span"
        ));
        for (i, w) in report.widths.iter().enumerate() {
            s.push_str(&format!(
                "{w:>7} {:>8.4} {:>8.4} {:>9.4} {:>8.4} {:>10.4}\n",
                layer.score[i],
                layer.probe_score[i],
                layer.shuffled[i],
                layer.random[i],
                layer.input_span[i]
            ));
        }
    }
    emit(s.trim_end())
}
