//! One training run as the CLI sees it: the events a run reports while it trains, the result it
//! returns, and the JSON record that `train --json`, `train --out` and every sweep line share.

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;

/// Something a training run reports while it trains.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// A mini-batch step finished.
    Step {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// Steps per epoch.
        steps: usize,
        /// Mini-batch training loss.
        loss: f64,
    },
    /// An epoch finished and was evaluated.
    Epoch(EpochRecord),
}

/// The observer a run calls with every event; returning `false` asks the run to stop (Ctrl-C),
/// in which case the run returns [`crate::error::CliError::Interrupted`].
pub type Observer<'a> = dyn FnMut(&RunEvent) -> bool + 'a;

/// Metrics after one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0 for the evaluation at initialisation, then `1..=epochs`.
    pub epoch: usize,
    /// Epoch 0: loss on the whole training set; later: mean mini-batch loss of the epoch.
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_loss: f64,
    /// Loss on the test split.
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_loss: f64,
    /// Accuracy on the test split (classification only).
    pub test_accuracy: Option<f64>,
    /// Seconds since the start of training.
    #[serde(default)]
    pub seconds: f64,
}

/// The outcome of one run. A diverged run is a result, not an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Epochs completed before the end (or before divergence).
    pub epochs_completed: usize,
    /// Training examples used.
    #[serde(default)]
    pub train_examples: usize,
    /// Optimisation steps taken.
    #[serde(default)]
    pub steps: usize,
    /// Training loss of the last completed epoch.
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_loss: f64,
    /// Test loss after the last completed epoch.
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_loss: f64,
    /// Test accuracy after the last completed epoch (classification only).
    pub test_accuracy: Option<f64>,
    /// Lowest test loss over the epochs.
    #[serde(deserialize_with = "f64_or_nan")]
    pub best_test_loss: f64,
    /// Epoch of the lowest test loss (0: at initialisation).
    pub best_epoch: usize,
    /// Highest test accuracy over the epochs (classification only).
    pub best_test_accuracy: Option<f64>,
    /// Whether the loss became non-finite or exploded.
    pub diverged: bool,
    /// The epoch in which the run diverged.
    pub diverged_epoch: Option<usize>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Per-epoch metrics.
    pub history: Vec<EpochRecord>,
}

impl RunResult {
    /// "diverged in epoch k" (or just "diverged" when the epoch is unknown), for log lines.
    pub fn divergence(&self) -> String {
        match self.diverged_epoch {
            Some(e) => format!("diverged in epoch {e}"),
            None => "diverged".to_string(),
        }
    }
}

/// The JSON object of one finished run: `widealign train --json`, `train --out` and every
/// line of a sweep's results file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// Version of the binary that produced the record.
    pub widealign_version: String,
    /// Position of the run in its sweep's grid (absent for `train`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_index: Option<usize>,
    /// The experiment group of `widealign reproduce` (absent elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// Learning rule (copied from `config` for convenience).
    pub rule: String,
    /// Model family.
    pub model: String,
    /// Dataset.
    pub dataset: String,
    /// Hidden width.
    pub width: usize,
    /// Hidden layers.
    pub depth: usize,
    /// Seed.
    pub seed: u64,
    /// Epochs asked for.
    pub epochs: usize,
    /// The metrics and history.
    #[serde(flatten)]
    pub result: RunResult,
    /// The full config in its JSON form ([`crate::config`]): the run's identity.
    #[serde(with = "crate::config::json")]
    pub config: TrainConfig,
}

/// Reads a number written by serde_json, where non-finite values became `null`, back as NaN.
pub fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The version string written into every record.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl RunRecord {
    /// The record of `result` for `config`.
    pub fn new(config: &TrainConfig, result: RunResult, run_index: Option<usize>) -> Self {
        RunRecord {
            widealign_version: VERSION.to_string(),
            run_index,
            experiment: None,
            rule: config.rule.name().to_string(),
            model: config.model.name().to_string(),
            dataset: config.dataset.clone(),
            width: config.width,
            depth: config.depth,
            seed: config.seed,
            epochs: config.epochs,
            result,
            config: config.clone(),
        }
    }

    /// The record as one JSON line without the newline. Non-finite numbers become `null`.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialise record: {e}\"}}"))
    }
}

/// Summarises a history (epoch 0 first, if present) into a [`RunResult`] (train_examples and
/// steps are left 0 for the caller to fill in).
#[cfg(test)]
pub fn summarise(
    history: Vec<EpochRecord>,
    diverged_epoch: Option<usize>,
    seconds: f64,
) -> RunResult {
    let last = history.last();
    let (best_epoch, best_test_loss) = history
        .iter()
        .filter(|e| e.test_loss.is_finite())
        .map(|e| (e.epoch, e.test_loss))
        .fold((0, f64::INFINITY), |b, x| if x.1 < b.1 { x } else { b });

    let best_test_accuracy = history
        .iter()
        .filter_map(|e| e.test_accuracy)
        .filter(|a| a.is_finite())
        .fold(None, |b: Option<f64>, a| Some(b.map_or(a, |b| b.max(a))));
    RunResult {
        train_loss: last.map_or(f64::NAN, |e| e.train_loss),
        test_loss: last.map_or(f64::NAN, |e| e.test_loss),
        test_accuracy: last.and_then(|e| e.test_accuracy),
        best_test_loss,
        best_epoch,
        best_test_accuracy,
        diverged: diverged_epoch.is_some(),
        diverged_epoch,
        epochs_completed: history.iter().filter(|e| e.epoch > 0).count(),
        train_examples: 0,
        steps: 0,
        seconds,
        history,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: usize, test_loss: f64, acc: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            seconds: epoch as f64,
            train_loss: test_loss * 0.9,
            test_loss,
            test_accuracy: Some(acc),
        }
    }

    #[test]
    fn summary_picks_best_and_last() {
        let r = summarise(
            vec![rec(1, 0.5, 0.6), rec(2, 0.3, 0.8), rec(3, 0.4, 0.7)],
            None,
            1.0,
        );
        assert_eq!(r.best_epoch, 2);
        assert_eq!(r.best_test_loss, 0.3);
        assert_eq!(r.best_test_accuracy, Some(0.8));
        assert_eq!(r.test_loss, 0.4);
        assert!(!r.diverged);
        assert_eq!(r.epochs_completed, 3);
    }

    #[test]
    fn divergence_reads_as_words() {
        let r = summarise(vec![rec(1, f64::NAN, f64::NAN)], Some(31), 0.1);
        assert_eq!(r.divergence(), "diverged in epoch 31");
        let r = summarise(vec![], None, 0.1);
        assert_eq!(r.divergence(), "diverged");
    }

    #[test]
    fn diverged_record_serialises_without_nan() {
        let r = summarise(vec![rec(1, f64::NAN, f64::NAN)], Some(1), 0.1);
        let line = RunRecord::new(&TrainConfig::default(), r, Some(3)).to_line();
        assert!(!line.contains("NaN"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["diverged"], true);
        assert_eq!(v["diverged_epoch"], 1);
        assert!(v["test_loss"].is_null());
        assert_eq!(v["run_index"], 3);
        for k in [
            "rule",
            "width",
            "depth",
            "seed",
            "epochs",
            "train_loss",
            "test_loss",
            "test_accuracy",
            "best_test_loss",
            "diverged",
            "seconds",
            "config",
            "history",
            "widealign_version",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
    }

    #[test]
    fn record_round_trips() {
        let r = summarise(vec![rec(1, 0.5, 0.6)], None, 1.0);
        let line = RunRecord::new(&TrainConfig::default(), r.clone(), None).to_line();
        let back: RunRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back.result, r);
        assert_eq!(back.config, TrainConfig::default());
        assert!(back.run_index.is_none());
    }

    #[test]
    fn diverged_record_reads_back_as_nan() {
        let r = summarise(vec![rec(1, f64::NAN, f64::NAN)], Some(1), 0.1);
        let line = RunRecord::new(&TrainConfig::default(), r, None).to_line();
        let back: RunRecord = serde_json::from_str(&line).unwrap();
        assert!(back.result.test_loss.is_nan());
        assert!(back.result.history[0].test_loss.is_nan());
        assert_eq!(back.result.history[0].test_accuracy, None);
    }
}
