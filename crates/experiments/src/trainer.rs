//! [`Trainer`]: turns a [`TrainConfig`] into a [`TrainResult`] by loading its dataset
//! (`widealign-data`, cached across the runs of a sweep) and calling the training loop of
//! `widealign-rules`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use widealign_data::{Dataset, LoadOptions};
use widealign_rules::{self as rules, Checkpointing, Progress, TrainConfig, TrainResult};

use crate::ExperimentError;

/// What a run tells its caller while it trains: every [`Progress`] report (start, steps,
/// epochs, divergence). Returning `false` asks the run to stop before its next step; it then
/// ends with [`ExperimentError::Interrupted`].
pub type Observer<'a> = dyn FnMut(&Progress<'_>) -> bool + 'a;

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
/// every experiment that trains on `K` examples (single runs, sweeps, alignment) sees the same
/// subset.
///
/// ```
/// use widealign_experiments::Trainer;
/// use widealign_rules::TrainConfig;
/// let cfg = TrainConfig { width: 16, epochs: 1, train_size: Some(100), batch_size: 50,
///                         ..TrainConfig::default() };
/// let r = Trainer::new().run(&cfg, &mut |_| true).unwrap();
/// assert_eq!((r.train_examples, r.steps), (100, 2));
/// ```
#[derive(Debug, Default)]
pub struct Trainer {
    cache: Vec<(DataKey, Arc<Dataset>)>,
}

impl Trainer {
    /// A trainer with an empty dataset cache.
    pub fn new() -> Self {
        Trainer::default()
    }

    /// The dataset of run `cfg` (loaded with its seed and `train_size`, or from the cache).
    ///
    /// # Errors
    /// [`ExperimentError::Data`] if the dataset cannot be found or read.
    pub fn dataset(&mut self, cfg: &TrainConfig) -> Result<Arc<Dataset>, ExperimentError> {
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

    /// Trains the run `cfg`, reporting progress to `observer` (which may ask to stop). A
    /// diverged run is `Ok` with `diverged: true`.
    ///
    /// # Errors
    /// [`ExperimentError::Interrupted`] when the observer asked to stop; dataset and training
    /// errors otherwise.
    pub fn run(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
    ) -> Result<TrainResult, ExperimentError> {
        self.run_checkpointed(cfg, observer, &Checkpointing::default())
    }

    /// [`Trainer::run`] with mid-run checkpoints (`widealign_rules::checkpoint`): saves and
    /// resumes as `ckpt` says. When the observer asks to stop and a checkpoint path is set, the
    /// state is saved at the step boundary and the run ends with
    /// [`ExperimentError::Preempted`].
    ///
    /// # Errors
    /// As [`Trainer::run`]; [`ExperimentError::Preempted`]; checkpoint errors (a truncated or
    /// corrupted file, other settings or data) as [`ExperimentError::Model`] or
    /// [`ExperimentError::Rules`].
    pub fn run_checkpointed(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
        ckpt: &Checkpointing,
    ) -> Result<TrainResult, ExperimentError> {
        let data = self.dataset(cfg)?;
        crate::memory::check_run(cfg, &data, ckpt.active())?;
        let halt = AtomicBool::new(false);
        let progress = |p: &Progress<'_>| {
            if !observer(p) {
                halt.store(true, Ordering::SeqCst);
            }
        };
        let callbacks = rules::Callbacks {
            progress: Some(Box::new(progress)),
            step_hook: None,
            stop: Some(&halt),
            extension: None,
        };
        Ok(rules::train_checkpointed(cfg, &data, callbacks, ckpt)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(epochs: usize, batch_size: usize) -> TrainConfig {
        TrainConfig {
            width: 16,
            epochs,
            train_size: Some(100),
            batch_size,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn tiny_run_trains_and_reports_history() {
        let mut steps = 0;
        let mut epochs = 0;
        let r = Trainer::new()
            .run(&tiny(2, 50), &mut |p| {
                match p {
                    Progress::Step { .. } => steps += 1,
                    Progress::Epoch(_) => epochs += 1,
                    _ => {}
                }
                true
            })
            .unwrap();
        assert_eq!(r.epochs_completed, 2);
        assert_eq!(r.history.len(), 3);
        assert_eq!(r.train_examples, 100);
        assert_eq!((steps, epochs), (4, 2));
    }

    #[test]
    fn observer_can_stop_a_run() {
        let e = Trainer::new()
            .run(&tiny(3, 10), &mut |_| false)
            .unwrap_err();
        assert!(matches!(e, ExperimentError::Interrupted), "{e:?}");
    }

    #[test]
    fn datasets_are_cached_by_name_seed_and_size() {
        let mut t = Trainer::new();
        let a = t.dataset(&tiny(1, 10)).unwrap();
        let b = t.dataset(&tiny(2, 20)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = t
            .dataset(&TrainConfig {
                seed: 1,
                ..tiny(1, 10)
            })
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &c), "the subset depends on the seed");
    }
}
