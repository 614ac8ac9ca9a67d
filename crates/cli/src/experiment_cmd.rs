//! `widealign dynamics` and `widealign align`: flags in, the experiments library's
//! [`run_dynamics`] and [`align_run`] (a training run with the NTK crate's shadow accumulator
//! hooked into its steps), tables or JSON out.

use serde_json::Value;
use widealign_experiments::align::{
    align_widths, at_axis, axis_size, saved_experiment, AlignEvent,
};
use widealign_experiments::dynamics::{
    run_dynamics, DynamicsParams, DEFAULT_RNN_DATASET, DEFAULT_RNN_LR,
};
use widealign_experiments::Trainer;
use widealign_ntk::align::AlignReport;
use widealign_rules::{ModelKind, TrainConfig};

use crate::cli::{AlignArgs, CnnArgs, DataArgs, DynamicsArgs, OptimArgs};
use crate::commands::{resume_overlay, unreadable_resume, RunProgress};
use crate::config;
use crate::emit;
use crate::error::CliError;
use crate::progress::Progress;

/// `widealign dynamics`.
pub fn dynamics_cmd(a: &DynamicsArgs) -> Result<(), CliError> {
    // Full-batch gradient descent for --steps steps: --epochs and --batch-size are not used.
    let _ = (a.epochs, a.batch_size);
    // The defaults that differ by model: the RNN's kernel summed over time steps has a larger
    // λ_max, so its largest stable rate on teacher-seq is 0.87 (docs/theory.md §4.5).
    let defaults = TrainConfig::default();
    let (dataset, lr) = match a.model.model {
        ModelKind::Mlp => (defaults.dataset.clone(), defaults.lr),
        ModelKind::Rnn => (DEFAULT_RNN_DATASET.to_string(), DEFAULT_RNN_LR),
        ModelKind::Cnn => {
            return Err(CliError::flag(
                "--model",
                "dynamics supports --model mlp and --model rnn (docs/theory.md §4 derives the \
                 layerwise weight dynamics for those two only); for the cnn, `align --model cnn` \
                 measures its weight changes against the predicted update",
            ))
        }
    };
    let data = DataArgs {
        dataset: a.dataset.clone().unwrap_or(dataset),
        train_size: a.train_size,
    };
    let optim = OptimArgs {
        epochs: defaults.epochs,
        lr: a.lr.unwrap_or(lr),
        batch_size: defaults.batch_size,
        optimizer: a.optimizer,
        seed: a.seed,
    };
    let cfg = TrainConfig {
        width: a.widths.0.iter().copied().max().unwrap_or(1),
        ..config::from_flags(&a.model, &data, &optim)
    };
    config::validate(&cfg)?;
    let r = run_dynamics(
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
        "{} ({}), largest stable lr {:.4}; {} training {}, {} steps at lr {}\n",
        r.model,
        r.activation,
        r.max_stable_lr,
        r.train_size,
        if r.seq_len.is_some() {
            "sequences"
        } else {
            "points"
        },
        r.steps,
        r.lr
    );
    for m in &r.layers {
        s.push_str(&format!(
            "{} ({})\n{:>7} {:>12} {:>12} {:>14}\n",
            m.layer, m.name, "width", "|dW| pred", "|dW| err", "dir err"
        ));
        for (i, w) in r.widths.iter().enumerate() {
            s.push_str(&format!(
                "{w:>7} {:>12.4e} {:>12.4e} {:>14.4e}\n",
                m.predicted_weight_norm[i], m.weight_norm[i], m.weight_direction[i]
            ));
        }
        s.push_str(&format!(
            "  slopes: weight norm {:.3}, direction {:.3}\n",
            m.slopes.weight_norm, m.slopes.weight_direction
        ));
    }
    s.push_str("function error per width:");
    for (w, e) in r.widths.iter().zip(&r.errors.function) {
        s.push_str(&format!(" {w}: {e:.4e}"));
    }
    s.push_str(&format!(
        "\nlog-log slopes: weight norm {:.3}, weight direction {:.3}, function {:.3} (theory: about -0.5)",
        r.slopes.weight_norm, r.slopes.weight_direction, r.slopes.function
    ));
    emit(&s)
}

/// `widealign align`: one alignment run per width (MLP, RNN) or per channel count
/// (`--model cnn --channels C,C,..`); the JSON's `"widths"` holds that axis (for the CNN also
/// as `"channels"`). `given` names the flags typed on the command line.
pub fn align_cmd(a: &AlignArgs, progress: &Progress, given: &[String]) -> Result<(), CliError> {
    let shape_only = CnnArgs {
        channels: None,
        ..a.cnn.clone()
    };
    let flags = config::with_cnn_flags(
        TrainConfig {
            rule: a.rule,
            width: 1,
            ..config::from_flags(&a.model, &a.data, &a.optim)
        },
        &shape_only,
    )?;
    if a.cnn.channels.is_some() && flags.model != ModelKind::Cnn {
        return Err(CliError::flag(
            "--channels",
            format!("applies to --model cnn only (the model is {})", flags.model),
        ));
    }
    // the axis the experiment varies: the channel count for the CNN, the width otherwise
    let is_cnn = flags.model == ModelKind::Cnn;
    let (axis, axis_flag, typed_sizes) = match (is_cnn, &a.cnn.channels) {
        (true, Some(c)) => ("channels", "channels", c.0.clone()),
        (true, None) => ("channels", "channels", vec![flags.channels]),
        (false, _) => ("width", "widths", a.widths.0.clone()),
    };
    // with --resume alone, the settings and widths are the checkpoint's
    let (base, widths) = match &a.ckpt.resume {
        Some(path) => {
            let (saved, widths) = saved_experiment(path).map_err(|e| unreadable_resume(path, e))?;
            let typed_widths = given.iter().any(|g| g == axis_flag);
            (
                resume_overlay(&flags, saved, given),
                if typed_widths { typed_sizes } else { widths },
            )
        }
        None => (flags, typed_sizes),
    };
    config::validate(&at_axis(&base, widths.first().copied().unwrap_or(1)))?;
    let ckpt = a.ckpt.checkpointing()?;
    let mut trainer = Trainer::new();
    let mut rp: Option<RunProgress> = None;
    let widths_done = align_widths(&base, &widths, &mut trainer, &ckpt, &mut |event| {
        match event {
            AlignEvent::Starting { config, resumed } => {
                if resumed {
                    progress.log(&format!(
                        "align: {axis} {} continues from the checkpoint",
                        axis_size(config)
                    ));
                }
                rp = Some(RunProgress::new(progress, config, false));
            }
            AlignEvent::Progress(p) => {
                if let Some(rp) = rp.as_mut() {
                    return rp.event(p);
                }
            }
            AlignEvent::Finished { width: w, restored } => {
                rp = None;
                if w.diverged {
                    let epoch = w
                        .diverged_epoch
                        .map(|e| format!(" in epoch {e}"))
                        .unwrap_or_default();
                    progress.log(&format!(
                        "align: {axis} {} diverged{epoch}; its alignment is reported as null",
                        w.width
                    ));
                }
                progress.log(&format!(
                    "align: {axis} {}{}: scores {}",
                    w.width,
                    if restored {
                        " (from the checkpoint)"
                    } else {
                        ""
                    },
                    w.layers
                        .iter()
                        .map(|l| format!("{} {:.3}", l.name, l.score))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        !crate::STOP.load(std::sync::atomic::Ordering::SeqCst)
    })?;
    let mut report = AlignReport::new();
    let mut extra: Vec<(f64, Option<f64>, bool)> = Vec::new();
    for w in &widths_done {
        report.push(w.width, &w.layers)?;
        extra.push((w.test_loss, w.test_accuracy, w.diverged));
    }
    let mut v = serde_json::to_value(&report).map_err(|e| CliError::Failure(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert("rule".into(), Value::from(base.rule.name()));
        m.insert("test_loss".into(), extra.iter().map(|e| e.0).collect());
        m.insert("test_accuracy".into(), extra.iter().map(|e| e.1).collect());
        m.insert("diverged".into(), extra.iter().map(|e| e.2).collect());
        if is_cnn {
            m.insert("channels".into(), Value::from(report.widths.clone()));
        }
    }
    if a.json {
        return emit(&v.to_string());
    }
    let mut s = String::new();
    for layer in &report.layers {
        s.push_str(&format!(
            "layer {} ({})\n{:>7} {:>8} {:>8} {:>9} {:>8} {:>10}\n",
            layer.layer, layer.name, axis, "score", "probe", "shuffled", "random", "input span"
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
