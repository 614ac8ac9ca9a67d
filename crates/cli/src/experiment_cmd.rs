//! `widealign dynamics` and `widealign align`: flags in, the experiments library's
//! [`run_dynamics`] and [`align_run`] (a training run with the NTK crate's shadow accumulator
//! hooked into its steps), tables or JSON out.

use serde_json::Value;
use widealign_experiments::align::align_run;
use widealign_experiments::dynamics::{run_dynamics, DynamicsParams};
use widealign_experiments::Trainer;
use widealign_ntk::align::AlignReport;
use widealign_rules::TrainConfig;

use crate::cli::{AlignArgs, DynamicsArgs};
use crate::commands::{divergence, RunProgress};
use crate::config;
use crate::emit;
use crate::error::CliError;
use crate::progress::Progress;

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

/// `widealign align`.
pub fn align_cmd(a: &AlignArgs, progress: &Progress) -> Result<(), CliError> {
    let base = TrainConfig {
        rule: a.rule,
        width: 1,
        ..config::from_flags(&a.model, &a.data, &a.optim)
    };
    config::validate(&base)?;
    let mut trainer = Trainer::new();
    for &width in &a.widths.0 {
        let cfg = TrainConfig {
            width,
            ..base.clone()
        };
        widealign_experiments::align::check_memory(&cfg, &mut trainer)?;
    }
    let mut report = AlignReport::new();
    let mut extra: Vec<(f64, Option<f64>, bool)> = Vec::new();
    for &width in &a.widths.0 {
        let cfg = TrainConfig {
            width,
            ..base.clone()
        };
        let mut rp = RunProgress::new(progress, &cfg, false);
        let run = align_run(&cfg, &mut trainer, &mut |p| rp.event(p))?;
        drop(rp);
        if run.result.diverged {
            progress.log(&format!(
                "align: width {width} {}; its alignment is reported as null",
                divergence(&run.result)
            ));
        }
        progress.log(&format!(
            "align: width {width}: scores {}",
            run.layers
                .iter()
                .map(|l| format!("{} {:.3}", l.name, l.score))
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
            "layer {} ({})\n{:>7} {:>8} {:>8} {:>9} {:>8} {:>10}\n",
            layer.layer, layer.name, "width", "score", "probe", "shuffled", "random", "input span"
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
