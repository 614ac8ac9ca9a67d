//! The run executor: [`Trainer::run`] turns a [`TrainConfig`] into a [`RunResult`] by loading
//! the dataset (`widealign-data`, cached across the runs of a sweep) and calling the training
//! loop of `widealign-rules`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use widealign_data::{Dataset, LoadOptions};
use widealign_rules as rules;

use crate::config::TrainConfig;
use crate::error::CliError;
use crate::runner::{EpochRecord, Observer, RunEvent, RunResult};
use crate::STOP;

/// Whether a dataset's content depends on the seed (generated data, seeded CSV split).
fn seed_dependent(name: &str) -> bool {
    !(matches!(
        name,
        "digits" | "fashion-mnist" | "mnist" | "kmnist" | "cifar10"
    ) || name.starts_with("idx:")
        || name.starts_with("cifar10:"))
}

/// Cache key of a loaded dataset: name, seed (when it matters) and training-subset size.
type DataKey = (String, u64, Option<usize>);

/// Trains runs, keeping the last two loaded datasets in memory.
///
/// `train_size` is applied by the loader (a stratified subset drawn with the run's seed), so
/// every command that trains on `K` examples (`train`, `sweep`, `align`) sees the same subset.
#[derive(Default)]
pub struct Trainer {
    cache: Vec<(DataKey, Arc<Dataset>)>,
}

impl Trainer {
    /// A trainer with an empty dataset cache.
    pub fn new() -> Self {
        Trainer::default()
    }

    /// The dataset of run `cfg` (loaded, or from the cache).
    pub fn dataset(&mut self, cfg: &TrainConfig) -> Result<Arc<Dataset>, CliError> {
        let (name, seed) = (cfg.dataset.as_str(), cfg.seed);
        let key = (
            name.to_string(),
            if seed_dependent(name) || cfg.train_size.is_some() {
                seed
            } else {
                0
            },
            cfg.train_size,
        );
        if let Some((_, d)) = self.cache.iter().find(|(k, _)| *k == key) {
            return Ok(d.clone());
        }
        let opts = LoadOptions {
            seed,
            train_size: cfg.train_size,
            ..LoadOptions::default()
        };
        let data = Arc::new(widealign_data::load(name, &opts)?);
        if self.cache.len() >= 2 {
            self.cache.remove(0);
        }
        self.cache.push((key, data.clone()));
        Ok(data)
    }

    /// Trains the run `cfg`, reporting progress to `observer` (which may ask to stop: the run
    /// then returns [`CliError::Interrupted`]). A diverged run is `Ok` with `diverged: true`.
    pub fn run(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
    ) -> Result<RunResult, CliError> {
        let data = self.dataset(cfg)?;
        let halt = AtomicBool::new(STOP.load(Ordering::SeqCst));
        let progress = |p: &rules::Progress<'_>| {
            if let Some(event) = run_event(p) {
                if !observer(&event) || STOP.load(Ordering::SeqCst) {
                    halt.store(true, Ordering::SeqCst);
                }
            }
        };
        let callbacks = rules::Callbacks {
            progress: Some(Box::new(progress)),
            step_hook: None,
            stop: Some(&halt),
        };
        let r = rules::train(cfg, &data, callbacks)?;
        Ok(run_result(r))
    }
}

/// The CLI event for a rules-crate progress report (none for start and divergence notices).
pub fn run_event(p: &rules::Progress<'_>) -> Option<RunEvent> {
    match p {
        rules::Progress::Step {
            epoch,
            step,
            steps_per_epoch,
            loss,
        } => Some(RunEvent::Step {
            epoch: *epoch,
            step: *step,
            steps: *steps_per_epoch,
            loss: *loss,
        }),
        rules::Progress::Epoch(r) => Some(RunEvent::Epoch(epoch_record(r))),
        _ => None,
    }
}

fn epoch_record(r: &rules::EpochRecord) -> EpochRecord {
    EpochRecord {
        epoch: r.epoch,
        train_loss: r.train_loss,
        test_loss: r.test_loss,
        test_accuracy: r.test_accuracy,
        seconds: r.seconds,
    }
}

/// The CLI's view of a rules-crate result.
pub fn run_result(r: rules::TrainResult) -> RunResult {
    let best_epoch = r
        .history
        .iter()
        .filter(|e| e.test_loss.is_finite())
        .fold((0, f64::INFINITY), |b, e| {
            if e.test_loss < b.1 {
                (e.epoch, e.test_loss)
            } else {
                b
            }
        })
        .0;
    RunResult {
        epochs_completed: r.epochs_completed,
        train_examples: r.train_examples,
        steps: r.steps,
        train_loss: r.train_loss,
        test_loss: r.test_loss,
        test_accuracy: r.test_accuracy,
        best_test_loss: r.best_test_loss,
        best_epoch,
        best_test_accuracy: r.best_test_accuracy,
        diverged: r.diverged,
        diverged_epoch: r.diverged_epoch,
        seconds: r.seconds,
        history: r.history.iter().map(epoch_record).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_run_trains_and_reports_history() {
        let cfg = TrainConfig {
            width: 16,
            epochs: 2,
            train_size: Some(100),
            batch_size: 50,
            ..TrainConfig::default()
        };
        let mut events = Vec::new();
        let r = Trainer::new()
            .run(&cfg, &mut |e| {
                events.push(e.clone());
                true
            })
            .unwrap();
        assert_eq!(r.epochs_completed, 2);
        assert_eq!(r.history.len(), 3);
        assert_eq!(r.train_examples, 100);
        assert!(events.iter().any(|e| matches!(e, RunEvent::Step { .. })));
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, RunEvent::Epoch(_)))
                .count(),
            2
        );
    }

    #[test]
    fn observer_can_stop_a_run() {
        let cfg = TrainConfig {
            width: 16,
            epochs: 3,
            train_size: Some(100),
            batch_size: 10,
            ..TrainConfig::default()
        };
        let e = Trainer::new().run(&cfg, &mut |_| false).unwrap_err();
        assert!(matches!(e, CliError::Interrupted));
    }
}
