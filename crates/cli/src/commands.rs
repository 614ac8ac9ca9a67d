//! `train` and `sweep`: flag handling, progress display and output around the experiments
//! library ([`Trainer::run`], [`run_sweep`]).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use widealign_experiments::config::{key, label};
use widealign_experiments::results;
use widealign_experiments::sweep::{
    run_sweep, RunExecutor, Shard, SweepCheckpoints, SweepEvent, SweepPlan, SweepSpec,
};
use widealign_experiments::{ExperimentError, Observer, RunRecord, Trainer};
use widealign_models::ModelError;
use widealign_rules::{Checkpointing, Progress as RunReport, TrainConfig, TrainResult};

use crate::cli::{CheckpointArgs, ShardArg, SweepArgs, TrainArgs};
use crate::config;
use crate::error::CliError;
use crate::progress::{fmt_secs, Bar, Progress};
use crate::{emit, STOP};

/// Draws the epoch and step bars of one run (log lines per epoch when `log_epochs`).
pub struct RunProgress<'p> {
    progress: &'p Progress,
    epochs: Bar,
    steps: Option<Bar>,
}

impl<'p> RunProgress<'p> {
    /// Bars for the run `cfg`.
    pub fn new(progress: &'p Progress, cfg: &TrainConfig, log_epochs: bool) -> Self {
        RunProgress {
            progress,
            epochs: progress.bar("epochs", cfg.epochs as u64, log_epochs),
            steps: None,
        }
    }

    /// Shows `report`; returns whether the run should go on (false after Ctrl-C).
    pub fn event(&mut self, report: &RunReport<'_>) -> bool {
        match report {
            RunReport::Step {
                step,
                steps_per_epoch,
                loss,
                ..
            } => {
                let bar = self.steps.get_or_insert_with(|| {
                    self.progress.bar("steps", *steps_per_epoch as u64, false)
                });
                if *step == 1 {
                    bar.set_total(*steps_per_epoch as u64);
                    bar.reset();
                }
                bar.update(*step as u64, &format!("loss {loss:.4}"));
            }
            RunReport::Epoch(e) => {
                let acc = e
                    .test_accuracy
                    .map(|a| format!(" test acc {a:.4}"))
                    .unwrap_or_default();
                let msg = format!(
                    "train loss {:.5} test loss {:.5}{acc}",
                    e.train_loss, e.test_loss
                );
                self.epochs.update(e.epoch as u64, &msg);
            }
            _ => {}
        }
        !STOP.load(Ordering::SeqCst)
    }
}

/// "diverged in epoch k" (or just "diverged" when the epoch is unknown), for log lines.
pub fn divergence(r: &TrainResult) -> String {
    match r.diverged_epoch {
        Some(e) => format!("diverged in epoch {e}"),
        None => "diverged".to_string(),
    }
}

/// Shows what a sweep does: a bar over its runs and one log line per finished run.
pub struct SweepDisplay<'p> {
    progress: &'p Progress,
    bar: Option<Bar>,
}

impl<'p> SweepDisplay<'p> {
    /// Nothing shown yet.
    pub fn new(progress: &'p Progress) -> Self {
        SweepDisplay {
            progress,
            bar: None,
        }
    }

    /// Shows `event`.
    pub fn event(&mut self, event: &SweepEvent<'_>) {
        match *event {
            SweepEvent::Started {
                experiment,
                out,
                summary,
                to_run,
                torn_bytes,
            } => {
                if torn_bytes > 0 {
                    self.progress.log(&format!(
                        "{}: dropping a torn last line ({torn_bytes} bytes) left by an interrupted writer",
                        out.display()
                    ));
                }
                self.progress.log(&format!(
                    "{}: {} runs in the grid, {} in shard {}, {} already done, {to_run} to run",
                    experiment.unwrap_or("sweep"),
                    summary.runs_total,
                    summary.runs_in_shard,
                    summary.shard,
                    summary.skipped,
                ));
                self.bar = (to_run > 0).then(|| {
                    self.progress
                        .bar(experiment.unwrap_or("runs"), to_run as u64, false)
                });
            }
            SweepEvent::RunStarting { done, config, .. } => {
                if let Some(bar) = &self.bar {
                    bar.update(done as u64, &label(config));
                }
            }
            SweepEvent::RunFinished {
                done,
                to_run,
                index,
                config,
                result,
            } => {
                let metric = match (result.diverged, result.test_accuracy) {
                    (true, _) => divergence(result),
                    (false, Some(a)) => format!("test accuracy {a:.4}"),
                    (false, None) => format!("best test loss {:.5}", result.best_test_loss),
                };
                self.progress.log(&format!(
                    "run {done}/{to_run} [#{index} {}]: {metric} ({})",
                    label(config),
                    fmt_secs(result.seconds)
                ));
                if done == to_run {
                    self.bar = None;
                }
            }
        }
    }
}

/// The sweep executor of the CLI: the trainer, with progress bars per run.
struct CliExecutor<'p> {
    trainer: Trainer,
    progress: &'p Progress,
    display: SweepDisplay<'p>,
}

impl RunExecutor for CliExecutor<'_> {
    fn execute(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
    ) -> Result<TrainResult, ExperimentError> {
        self.execute_checkpointed(cfg, observer, &Checkpointing::default())
    }

    fn execute_checkpointed(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
        ckpt: &Checkpointing,
    ) -> Result<TrainResult, ExperimentError> {
        if let Some(path) = &ckpt.resume_from {
            self.progress.log(&format!(
                "{}: continuing from the checkpoint {}",
                label(cfg),
                path.display()
            ));
        }
        let mut rp = RunProgress::new(self.progress, cfg, false);
        self.trainer
            .run_checkpointed(cfg, &mut |p| rp.event(p) && observer(p), ckpt)
    }

    fn event(&mut self, event: &SweepEvent<'_>) {
        self.display.event(event);
    }
}

/// The run `widealign train` trains: from the flags, or — with `--resume` — the checkpoint's
/// settings with the flags typed on the command line (`given`) laid over them
/// ([`resume_overlay`]).
fn train_config(a: &TrainArgs, given: &[String]) -> Result<TrainConfig, CliError> {
    let flags = TrainConfig {
        rule: a.rule,
        width: a.width,
        ..config::from_flags(&a.model, &a.data, &a.optim)
    };
    let flags = config::with_cnn_flags(flags, &a.cnn)?;
    let Some(path) = &a.ckpt.resume else {
        return Ok(flags);
    };
    let saved = widealign_rules::checkpoint_config(path)
        .map_err(|e| unreadable_resume(path, ExperimentError::from(e)))?;
    Ok(resume_overlay(&flags, saved, given))
}

/// An error reading the `--resume` checkpoint `path`: a file that cannot be read names the flag.
pub fn unreadable_resume(path: &std::path::Path, e: ExperimentError) -> CliError {
    match e {
        ExperimentError::Model(ModelError::Io { source, .. }) => CliError::flag(
            "--resume",
            format!("cannot read {}: {source}", path.display()),
        ),
        other => CliError::from(other),
    }
}

/// The settings of a resumed run: the checkpoint's (`saved`), with the flags typed on the
/// command line (`given`, clap ids) taken from `flags`, so that `--resume PATH` alone continues
/// the run and a repeated flag that disagrees is refused by the library's check (only
/// `--epochs` may grow).
pub fn resume_overlay(flags: &TrainConfig, saved: TrainConfig, given: &[String]) -> TrainConfig {
    let typed = |flag: &str| given.iter().any(|g| g == flag);
    let mut cfg = saved;
    macro_rules! overlay {
        ($($field:ident),*; $($kept:ident),*) => {
            // every field is named (no `..`): a new field of TrainConfig does not compile until
            // it is either laid over from the typed flags or kept from the checkpoint here
            let TrainConfig { $($field: _,)* $($kept: _,)* } = flags;
            $(
                if typed(stringify!($field)) {
                    cfg.$field = flags.$field.clone();
                }
            )*
        };
    }
    overlay!(
        model, dataset, rule, depth, width, activation, param, optimizer, lr, batch_size, epochs,
        train_size, w_std, b_std, seed, channels, conv_layers, kernel, stride, padding, readout,
        norm;
        cache_frozen
    );
    cfg
}

impl CheckpointArgs {
    /// The checkpointing these flags ask for (the `--checkpoint` file checked writable).
    ///
    /// # Errors
    /// [`CliError`] naming `--checkpoint` (not writable) or `--checkpoint-every` (zero).
    pub fn checkpointing(&self) -> Result<Checkpointing, CliError> {
        if let Some(path) = &self.checkpoint {
            crate::fsutil::check_writable(path, "--checkpoint")?;
        }
        if self.checkpoint_every == Some(0) {
            return Err(CliError::flag(
                "--checkpoint-every",
                "must be at least 1 step",
            ));
        }
        Ok(Checkpointing {
            save_to: self.checkpoint.clone(),
            every: self.checkpoint_every,
            resume_from: self.resume.clone(),
        })
    }
}

/// `widealign train`. `given` names the flags typed on the command line.
pub fn train(a: &TrainArgs, progress: &Progress, given: &[String]) -> Result<(), CliError> {
    let cfg = train_config(a, given)?;
    config::validate(&cfg)?;
    if let Some(out) = &a.out {
        crate::fsutil::check_writable(out, "--out")?;
    }
    let ckpt = a.ckpt.checkpointing()?;
    let mut trainer = Trainer::new();
    warn_empty_classes(&*trainer.dataset(&cfg)?);
    let result = {
        let mut rp = RunProgress::new(progress, &cfg, true);
        trainer.run_checkpointed(&cfg, &mut |p| rp.event(p), &ckpt)?
    };
    let human = describe(&cfg, &result);
    let line = RunRecord::new(&cfg, result, None).to_line();
    if let Some(out) = &a.out {
        // A torn last line left by a killed writer is cut away before appending.
        results::append(out, &line)?;
    }
    if a.json {
        emit(&line)
    } else {
        emit(&human)
    }
}

/// Warns on stderr when label ids leave classes without a training example.
pub fn warn_empty_classes(data: &widealign_data::Dataset) {
    let empty = data.empty_classes();
    if empty.is_empty() {
        return;
    }
    let shown: Vec<String> = empty.iter().take(8).map(|c| c.to_string()).collect();
    eprintln!(
        "widealign: warning: {}: {} of its {} classes have no training example (labels {}{}); label ids are class indices, so sparse ids make empty classes",
        data.name,
        empty.len(),
        data.classes().unwrap_or(0),
        shown.join(", "),
        if empty.len() > shown.len() { ", ..." } else { "" }
    );
}

/// One human-readable line about a finished run.
pub fn describe(cfg: &TrainConfig, r: &TrainResult) -> String {
    let mut s = format!("{}: ", label(cfg));
    if r.diverged {
        s.push_str(&format!(
            "{} ({} epochs completed); ",
            divergence(r),
            r.epochs_completed
        ));
    }
    if let Some(acc) = r.test_accuracy.filter(|a| a.is_finite()) {
        s.push_str(&format!("test accuracy {acc:.4}, "));
    }
    s.push_str(&format!(
        "test loss {:.5}, train loss {:.5}, best test loss {:.5} (epoch {}), {}",
        r.test_loss,
        r.train_loss,
        r.best_test_loss,
        r.best_epoch(),
        fmt_secs(r.seconds)
    ));
    s
}

/// The shard `--shard` names (`auto`: the Slurm job-array variables of this process).
fn shard(arg: Option<ShardArg>) -> Result<Shard, CliError> {
    Ok(match arg {
        None => Shard::WHOLE,
        Some(ShardArg::Fixed { index, count }) => Shard::new(index, count)?,
        Some(ShardArg::Auto) => Shard::from_slurm(|k| std::env::var(k).ok())?,
    })
}

/// `widealign sweep`.
pub fn sweep(a: &SweepArgs, progress: &Progress) -> Result<(), CliError> {
    let runs = SweepSpec::from_file(&a.config)?.expand()?;
    let shard = shard(a.shard)?;
    if a.dry_run {
        for i in shard.runs(runs.len()) {
            emit(&format!(
                "{{\"run_index\":{i},\"config\":{}}}",
                key(&runs[i])
            ))?;
        }
        return Ok(());
    }
    crate::fsutil::check_writable(&a.out, "--out")?;
    if a.checkpoint_every == Some(0) {
        return Err(CliError::flag(
            "--checkpoint-every",
            "must be at least 1 step",
        ));
    }
    let mine: Vec<TrainConfig> = shard.runs(runs.len()).map(|i| runs[i].clone()).collect();
    widealign_experiments::memory::check_runs(&mine, !a.no_checkpoints)?;
    let mut ckdir = a.out.clone().into_os_string();
    ckdir.push(".checkpoints");
    let ckdir = PathBuf::from(ckdir);
    let plan = SweepPlan {
        runs: &runs,
        shard,
        out: &a.out,
        resume: a.resume,
        experiment: None,
        checkpoints: (!a.no_checkpoints).then_some(SweepCheckpoints {
            dir: &ckdir,
            every: a.checkpoint_every,
        }),
    };
    let mut exec = CliExecutor {
        trainer: Trainer::new(),
        progress,
        display: SweepDisplay::new(progress),
    };
    let summary = run_sweep(&plan, &mut exec, &STOP)?;
    drop(exec);
    progress.log(&format!(
        "sweep shard {}: {} completed ({} diverged), {} skipped as already done, {} of {} runs in this shard{}",
        summary.shard,
        summary.completed,
        summary.diverged,
        summary.skipped,
        summary.completed + summary.skipped,
        summary.runs_in_shard,
        if summary.interrupted { "; interrupted" } else { "" }
    ));
    if a.json {
        emit(&serde_json::to_string(&summary).unwrap_or_default())?;
    }
    if let Some(path) = &summary.checkpoint {
        return Err(CliError::Preempted(format!(
            "sweep stopped; the run in progress saved {}; continue with the same command and --resume",
            path.display()
        )));
    }
    if summary.interrupted {
        return Err(CliError::Interrupted);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_rules::EpochRecord;

    fn result(diverged_epoch: Option<usize>) -> TrainResult {
        let h = |epoch, test_loss| EpochRecord {
            epoch,
            train_loss: 0.2,
            test_loss,
            test_accuracy: Some(0.5),
            seconds: 0.0,
        };
        TrainResult {
            model: widealign_rules::ModelKind::Mlp,
            dataset: "digits".into(),
            rule: widealign_rules::RuleKind::Bp,
            width: 8,
            depth: 2,
            seed: 0,
            epochs: 3,
            epochs_completed: 2,
            train_examples: 100,
            steps: 4,
            train_loss: 0.2,
            test_loss: 0.3,
            test_accuracy: Some(0.5),
            best_test_loss: 0.25,
            best_test_accuracy: Some(0.5),
            diverged: diverged_epoch.is_some(),
            diverged_epoch,
            seconds: 1.5,
            history: vec![h(0, 0.4), h(1, 0.25), h(2, 0.3)],
        }
    }

    #[test]
    fn runs_are_described_in_words() {
        let cfg = TrainConfig::default();
        assert_eq!(
            describe(&cfg, &result(None)),
            "digits bp w=1024 d=2 lr=1 seed=0: test accuracy 0.5000, test loss 0.30000, train loss 0.20000, best test loss 0.25000 (epoch 1), 1.5s"
        );
        assert!(
            describe(&cfg, &result(Some(3))).contains("diverged in epoch 3 (2 epochs completed); ")
        );
        assert_eq!(divergence(&result(None)), "diverged");
    }

    #[test]
    fn shard_flags_resolve() {
        assert_eq!(shard(None).unwrap(), Shard::WHOLE);
        assert_eq!(
            shard(Some(ShardArg::Fixed { index: 1, count: 3 })).unwrap(),
            Shard::new(1, 3).unwrap()
        );
    }
}
