//! [`RunRecord`]: the JSON object of one finished training run — what `widealign train --json`
//! prints, what `train --out` appends and what every line of a sweep's results file holds.
//!
//! It is the rules crate's [`TrainResult`] (flattened: its keys are the record's keys) plus
//! the run's identity and provenance:
//!
//! | key | from |
//! |---|---|
//! | `widealign_version` | the version that wrote the record |
//! | `run_index` | position in its sweep's grid (absent for `train`) |
//! | `experiment` | the group of `widealign reproduce` (absent elsewhere) |
//! | `model`, `dataset`, `rule`, `width`, `depth`, `seed`, `epochs`, `epochs_completed`, `train_examples`, `steps`, `train_loss`, `test_loss`, `test_accuracy`, `best_test_loss`, `best_test_accuracy`, `diverged`, `diverged_epoch`, `seconds`, `history` | [`TrainResult`] |
//! | `best_epoch` | [`TrainResult::best_epoch`] (written, not read) |
//! | `config` | the [`TrainConfig`] in its identity form ([`crate::config::key`]) |
//!
//! Non-finite numbers are written as `null` and read back as NaN.
//!
//! ```
//! use widealign_experiments::RunRecord;
//! let line = r#"{"widealign_version":"0.1.0","run_index":0,"rule":"bp","model":"mlp","dataset":"digits",
//!   "width":64,"depth":2,"seed":0,"epochs":1,"epochs_completed":1,"train_examples":100,"steps":1,
//!   "train_loss":0.1,"test_loss":0.1,"test_accuracy":0.5,"best_test_loss":0.1,"best_epoch":1,
//!   "best_test_accuracy":0.5,"diverged":false,"diverged_epoch":null,"seconds":0.1,"history":[],
//!   "config":{"width":64,"epochs":1}}"#;
//! let r: RunRecord = serde_json::from_str(line).unwrap();
//! assert_eq!(r.result.test_accuracy, Some(0.5));
//! assert_eq!(r.config.width, 64);
//! ```

use serde::{Deserialize, Serialize, Serializer};
use widealign_rules::{TrainConfig, TrainResult};

/// The version string written into every record and results line.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One finished run (see the module docs for its JSON form).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RunRecord {
    /// Version of widealign that produced the record.
    pub widealign_version: String,
    /// Position of the run in its sweep's grid (absent for a single run).
    #[serde(default)]
    pub run_index: Option<usize>,
    /// The experiment group of a reproduction (absent elsewhere).
    #[serde(default)]
    pub experiment: Option<String>,
    /// The metrics and history.
    #[serde(flatten)]
    pub result: TrainResult,
    /// The run's settings: its identity.
    pub config: TrainConfig,
}

/// The serialised form: [`RunRecord`]'s fields plus the derived `best_epoch`.
#[derive(Serialize)]
struct RecordOut<'a> {
    widealign_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    experiment: Option<&'a str>,
    #[serde(flatten)]
    result: &'a TrainResult,
    best_epoch: usize,
    config: &'a TrainConfig,
}

impl Serialize for RunRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RecordOut {
            widealign_version: &self.widealign_version,
            run_index: self.run_index,
            experiment: self.experiment.as_deref(),
            result: &self.result,
            best_epoch: self.result.best_epoch(),
            config: &self.config,
        }
        .serialize(s)
    }
}

impl RunRecord {
    /// The record of `result`, produced by training `config`, written by this version.
    pub fn new(config: &TrainConfig, result: TrainResult, run_index: Option<usize>) -> Self {
        RunRecord {
            widealign_version: VERSION.to_string(),
            run_index,
            experiment: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{rec, result};

    /// The keys `widealign train --json` printed before the record was built on
    /// [`TrainResult`] (captured from that binary); the record may only add keys.
    const KEYS_BEFORE: [&str; 22] = [
        "widealign_version",
        "rule",
        "model",
        "dataset",
        "width",
        "depth",
        "seed",
        "epochs",
        "epochs_completed",
        "train_examples",
        "steps",
        "train_loss",
        "test_loss",
        "test_accuracy",
        "best_test_loss",
        "best_epoch",
        "best_test_accuracy",
        "diverged",
        "diverged_epoch",
        "seconds",
        "history",
        "config",
    ];

    #[test]
    fn record_keys_are_a_superset_of_the_old_ones() {
        let r = result(vec![rec(0, 0.5, 0.1), rec(1, 0.3, 0.8)], None);
        let line = RunRecord::new(&TrainConfig::default(), r, Some(3)).to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for k in KEYS_BEFORE {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["run_index"], 3);
        assert_eq!(v["best_epoch"], 1);
        assert_eq!(v["rule"], "bp");
        assert!(v.get("experiment").is_none());
        let h = v["history"][0].as_object().unwrap();
        let mut hk: Vec<&str> = h.keys().map(String::as_str).collect();
        hk.sort_unstable();
        assert_eq!(
            hk,
            [
                "epoch",
                "seconds",
                "test_accuracy",
                "test_loss",
                "train_loss"
            ]
        );
    }

    #[test]
    fn diverged_record_serialises_without_nan_and_reads_back() {
        let r = result(vec![rec(1, f64::NAN, f64::NAN)], Some(1));
        let line = RunRecord::new(&TrainConfig::default(), r, None).to_line();
        assert!(!line.contains("NaN"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["diverged"], true);
        assert_eq!(v["diverged_epoch"], 1);
        assert!(v["test_loss"].is_null());
        assert!(v.get("run_index").is_none());
        let back: RunRecord = serde_json::from_str(&line).unwrap();
        assert!(back.result.test_loss.is_nan());
        assert!(back.result.history[0].test_loss.is_nan());
    }

    #[test]
    fn record_round_trips() {
        let r = result(vec![rec(0, 0.5, 0.6), rec(1, 0.4, 0.7)], None);
        let mut record = RunRecord::new(&TrainConfig::default(), r, Some(0));
        record.experiment = Some("low_data".into());
        let back: RunRecord = serde_json::from_str(&record.to_line()).unwrap();
        assert_eq!(back, record);
    }
}
