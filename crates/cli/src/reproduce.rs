//! `widealign reproduce`: the reference experiments (docs/theory.md §6) end to end.
//!
//! The plan and the runs are the experiments library's ([`plan`], [`reproduce`]): every
//! training run is a line of `DIR/results.jsonl` (resumable with `--resume`), alignment and
//! dynamics results are further lines. This command shows the progress and renders the
//! report ([`crate::report`]: `DIR/report.md` with SVG plots) from the file, so `--resume` on
//! a finished folder only rebuilds the report.

use std::time::Instant;

use serde_json::json;
use widealign_experiments::plan::{plan, Plan};
use widealign_experiments::reproduce::{
    add_baseline_loss, reproduce, ReproResults, ReproduceEvent, ReproduceObserver, Reproduction,
    RESULTS_FILE,
};
use widealign_experiments::sweep::SweepEvent;
use widealign_experiments::Trainer;
use widealign_rules::{Progress as RunReport, TrainConfig};

use crate::cli::ReproduceArgs;
use crate::commands::{RunProgress, SweepDisplay};
use crate::error::CliError;
use crate::progress::{fmt_secs, Bar, Progress};
use crate::report::write_report;
use crate::{emit, STOP};

/// The command line as typed, with the program name shortened to `widealign`.
fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(a) = args.first_mut() {
        *a = "widealign".into();
    }
    args.join(" ")
}

/// `width N`, or `C channels` for a CNN run.
fn size_of(cfg: &TrainConfig) -> String {
    match cfg.model {
        widealign_rules::ModelKind::Cnn => format!("{} channels", cfg.channels),
        widealign_rules::ModelKind::Mlp | widealign_rules::ModelKind::Rnn => {
            format!("width {}", cfg.width)
        }
    }
}

/// Shows a reproduction's progress: bars and log lines.
struct Display<'p> {
    progress: &'p Progress,
    plan: &'p Plan,
    sweep: SweepDisplay<'p>,
    run: Option<RunProgress<'p>>,
    align: Option<Bar>,
}

impl ReproduceObserver for Display<'_> {
    fn run_started(&mut self, cfg: &TrainConfig) {
        self.run = Some(RunProgress::new(self.progress, cfg, false));
    }

    fn run_progress(&mut self, report: &RunReport<'_>) -> bool {
        self.run.as_mut().is_none_or(|r| r.event(report))
    }

    fn run_ended(&mut self) {
        self.run = None;
    }

    fn sweep_event(&mut self, event: &SweepEvent<'_>) {
        self.sweep.event(event);
    }

    fn event(&mut self, event: &ReproduceEvent<'_>) {
        match *event {
            ReproduceEvent::Started { dir, .. } => {
                let p = self.plan;
                self.progress.log(&format!(
                    "reproduce ({}, {}, {} seed(s) per cell): {} + {} + {} training runs, {} + {} alignment widths (MLP + RNN), {} + {} dynamics experiments (MLP + RNN), CNN: {} training runs and {} alignment runs, {} infinite-width predictions, into {}",
                    p.scale.name(),
                    p.dataset,
                    p.seeds,
                    p.accuracy.len(),
                    p.add.len(),
                    p.low_data.len(),
                    p.align.len(),
                    p.rnn_align.len(),
                    p.dynamics.len(),
                    p.rnn_dynamics.len(),
                    p.cnn.len(),
                    p.cnn_align.len(),
                    p.limit.len(),
                    dir.display()
                ));
            }
            ReproduceEvent::AlignmentStarting {
                experiment,
                index,
                total,
                config,
            } => {
                let bar = self.align.get_or_insert_with(|| {
                    self.progress.bar(experiment.name(), total as u64, false)
                });
                bar.update(index as u64, &size_of(config));
            }
            ReproduceEvent::AlignmentFinished {
                experiment,
                config,
                run,
            } => {
                self.progress.log(&format!(
                    "{experiment}: {}: scores {}",
                    size_of(config),
                    run.layers
                        .iter()
                        .map(|l| format!("{} {:.4}", l.name, l.score))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            ReproduceEvent::AlignmentDone { .. } => self.align = None,
            ReproduceEvent::DynamicsStarting { params } => {
                self.progress.log(&format!(
                    "dynamics: {} {}, widths {:?}",
                    params.cfg.model.name(),
                    params.cfg.activation.name(),
                    params.widths
                ));
            }
            ReproduceEvent::DynamicsFinished { params, report } => {
                self.progress.log(&format!(
                    "dynamics: {} {}: slopes weight norm {:.3}, weight direction {:.3}, function {:.3}",
                    params.cfg.model.name(),
                    params.cfg.activation.name(),
                    report.slopes.weight_norm,
                    report.slopes.weight_direction,
                    report.slopes.function
                ));
            }
            ReproduceEvent::LimitStarting {
                index,
                total,
                settings,
            } => {
                self.progress.log(&format!(
                    "limit {}/{total}: {} predictor of {} ({} hidden layers, {}), t = {}",
                    index + 1,
                    settings.kernel.to_uppercase(),
                    settings.dataset,
                    settings.depth,
                    settings.activation,
                    settings
                        .epochs
                        .map_or("∞".to_string(), |e| format!("{e} epochs"))
                ));
            }
            ReproduceEvent::LimitFinished { prediction: p, .. } => {
                self.progress.log(&format!(
                    "limit: {} training points, t = {}: test accuracy {}, test MSE {:.5} ({}, {})",
                    p.n_train,
                    p.time_steps
                        .map_or("∞".to_string(), |t| format!("{t} steps")),
                    p.test_accuracy
                        .map_or("n/a".to_string(), |a| format!("{:.2} %", 100.0 * a)),
                    p.test_mse,
                    p.solver,
                    fmt_secs(p.seconds)
                ));
            }
            ReproduceEvent::LimitSkipped { settings, reason } => {
                self.progress.log(&format!(
                    "warning: limit of {} at t = {} not computed (a later --resume tries again): {reason}",
                    settings.dataset,
                    settings
                        .epochs
                        .map_or("∞".to_string(), |e| format!("{e} epochs"))
                ));
            }
        }
    }
}

/// `widealign reproduce`.
pub fn run(a: &ReproduceArgs, progress: &Progress) -> Result<(), CliError> {
    let started = Instant::now();
    let plan = plan(a.scale, &a.dataset, a.seed)?.with_seeds(a.seeds)?;
    let done = if a.report_only {
        let path = a.out.join(RESULTS_FILE);
        if !path.is_file() {
            return Err(CliError::flag(
                "--report-only",
                format!("{} does not exist: nothing to report", path.display()),
            ));
        }
        Reproduction {
            results: ReproResults::read(&path)?,
            add_baseline: add_baseline_loss(&mut Trainer::new(), plan.seed)?,
            results_path: path,
        }
    } else {
        let mut display = Display {
            progress,
            plan: &plan,
            sweep: SweepDisplay::new(progress),
            run: None,
            align: None,
        };
        reproduce(
            &plan,
            &a.out,
            a.resume,
            &mut Trainer::new(),
            &mut display,
            &STOP,
        )?
    };
    let elapsed = started.elapsed().as_secs_f64();
    let report = write_report(
        &a.out,
        &plan,
        &done.results,
        done.add_baseline,
        elapsed,
        &command_line(),
    )?;
    progress.log(&format!(
        "reproduce: wrote {} and {} plots in {}",
        a.out.join("report.md").display(),
        report.plots,
        fmt_secs(elapsed)
    ));
    if a.json {
        emit(
            &json!({
                "out": a.out.display().to_string(),
                "results": done.results_path.display().to_string(),
                "report": a.out.join("report.md").display().to_string(),
                "plots": report.plots,
                "lines": done.results.lines,
                "seconds": elapsed,
            })
            .to_string(),
        )?;
    }
    Ok(())
}
