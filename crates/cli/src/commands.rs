//! `train` and `sweep`: flag handling, progress display and output around [`Trainer::run`].

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::cli::{SweepArgs, TrainArgs};
use crate::config::{self, key_to_flag, TrainConfig};
use crate::error::CliError;
use crate::progress::{Bar, Progress};
use crate::runner::{RunEvent, RunRecord, RunResult};
use crate::sweep::{self, SweepPlan};
use crate::trainer::Trainer;
use crate::{emit, STOP};

/// Draws the epoch and step bars of one run (log lines per epoch when `log_epochs`).
pub struct RunProgress<'p> {
    progress: &'p Progress,
    label: String,
    epochs: Option<Bar>,
    steps: Option<Bar>,
    log_epochs: bool,
}

impl<'p> RunProgress<'p> {
    /// Bars for the run `cfg`.
    pub fn new(progress: &'p Progress, cfg: &TrainConfig, log_epochs: bool) -> Self {
        RunProgress {
            progress,
            label: "epochs".into(),
            epochs: None,
            steps: None,
            log_epochs,
        }
        .with_total(cfg.epochs)
    }

    fn with_total(mut self, epochs: usize) -> Self {
        self.epochs = Some(
            self.progress
                .bar(&self.label, epochs as u64, self.log_epochs),
        );
        self
    }

    /// Shows `event`; returns whether the run should go on (false after Ctrl-C).
    pub fn event(&mut self, event: &RunEvent) -> bool {
        match event {
            RunEvent::Step {
                step, steps, loss, ..
            } => {
                let bar = self
                    .steps
                    .get_or_insert_with(|| self.progress.bar("steps", *steps as u64, false));
                if *step == 1 {
                    bar.set_total(*steps as u64);
                    bar.reset();
                }
                bar.update(*step as u64, &format!("loss {loss:.4}"));
            }
            RunEvent::Epoch(e) => {
                let acc = e
                    .test_accuracy
                    .map(|a| format!(" test acc {a:.4}"))
                    .unwrap_or_default();
                let msg = format!(
                    "train loss {:.5} test loss {:.5}{acc}",
                    e.train_loss, e.test_loss
                );
                if let Some(b) = &self.epochs {
                    b.update(e.epoch as u64, &msg);
                }
            }
        }
        !STOP.load(Ordering::SeqCst)
    }
}

/// `widealign train`.
pub fn train(a: &TrainArgs, progress: &Progress) -> Result<(), CliError> {
    let cfg = TrainConfig {
        rule: a.rule,
        width: a.width,
        ..config::from_flags(&a.model, &a.data, &a.optim)
    };
    config::validate(&cfg).map_err(|(k, why)| CliError::flag(&key_to_flag(k), why))?;
    if let Some(out) = &a.out {
        check_writable(out)?;
    }
    let result = {
        let mut rp = RunProgress::new(progress, &cfg, true);
        Trainer::new().run(&cfg, &mut |ev| rp.event(ev))?
    };
    let human = describe(&cfg, &result);
    let record = RunRecord::new(&cfg, result, None);
    let line = record.to_line();
    if let Some(out) = &a.out {
        // A torn last line left by a killed writer is cut away before appending.
        let existing = sweep::read_existing(out)?;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| CliError::write(out, e))?;
        if existing.torn_bytes > 0 {
            f.set_len(existing.valid_len)
                .map_err(|e| CliError::write(out, e))?;
        }
        sweep::append_line(&mut f, &line).map_err(|e| CliError::write(out, e))?;
    }
    if a.json {
        emit(&line)
    } else {
        emit(&human)
    }
}

/// Fails early (exit 2) when `path`'s folder does not exist, before any training.
fn check_writable(path: &Path) -> Result<(), CliError> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent {
        if !dir.is_dir() {
            return Err(CliError::flag(
                "--out",
                format!("folder {} does not exist", dir.display()),
            ));
        }
    }
    if path.is_dir() {
        return Err(CliError::flag(
            "--out",
            format!("{} is a folder, not a file", path.display()),
        ));
    }
    Ok(())
}

/// One human-readable line about a finished run.
pub fn describe(cfg: &TrainConfig, r: &RunResult) -> String {
    let mut s = format!("{}: ", config::label(cfg));
    if r.diverged {
        s.push_str(&format!(
            "{} ({} epochs completed); ",
            r.divergence(),
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
        r.best_epoch,
        crate::progress::fmt_secs(r.seconds)
    ));
    s
}

/// `widealign sweep`.
pub fn sweep(a: &SweepArgs, progress: &Progress) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&a.config).map_err(|e| CliError::read(&a.config, e))?;
    let spec = sweep::parse_spec(&a.config, &text)?;
    let runs = sweep::expand(&spec, &a.config)?;
    let shard = sweep::resolve_shard(a.shard, |k| std::env::var(k).ok())?;
    if a.dry_run {
        for (i, c) in runs.iter().enumerate() {
            if i % shard.1 == shard.0 {
                emit(&format!(
                    "{{\"run_index\":{i},\"config\":{}}}",
                    config::key(c)
                ))?;
            }
        }
        return Ok(());
    }
    check_writable(&a.out)?;
    let plan = SweepPlan {
        runs: &runs,
        shard,
        out: &a.out,
        resume: a.resume,
        experiment: None,
    };
    let mut trainer = Trainer::new();
    let mut exec = |cfg: &TrainConfig, obs: &mut crate::runner::Observer<'_>| {
        let mut rp = RunProgress::new(progress, cfg, false);
        trainer.run(cfg, &mut |ev| rp.event(ev) && obs(ev))
    };
    let summary = sweep::run_sweep(&plan, &mut exec, progress, &STOP)?;
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
    if summary.interrupted {
        return Err(CliError::Interrupted);
    }
    Ok(())
}
