//! [`TrainConfig`]: the complete description of one training run, shared by `train`, `sweep`
//! and `reproduce`, and its JSON form, which identifies a run in a results file.

use serde::{Deserialize, Serialize};

use crate::cli::{ActivationArg, ModelKind, OptimizerName, ParamKind, RuleName, TrainArgs};

/// Every setting of one training run. Field names are the train flags with `_` for `-`; the
/// defaults are the flags' defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// `--model`.
    pub model: ModelKind,
    /// `--dataset`.
    pub dataset: String,
    /// `--rule`.
    pub rule: RuleName,
    /// `--depth` (hidden layers).
    pub depth: usize,
    /// `--width`.
    pub width: usize,
    /// `--activation`.
    pub activation: ActivationArg,
    /// `--param`.
    pub param: ParamKind,
    /// `--optimizer`.
    pub optimizer: OptimizerName,
    /// `--lr`.
    pub lr: f64,
    /// `--batch-size`.
    pub batch_size: usize,
    /// `--epochs`.
    pub epochs: usize,
    /// `--train-size` (`null`: the whole training split).
    pub train_size: Option<usize>,
    /// `--w-std`.
    pub w_std: f64,
    /// `--b-std`.
    pub b_std: f64,
    /// `--seed`.
    pub seed: u64,
}

/// The config keys in their canonical order. Sweeps enumerate runs in this order (the last key
/// varies fastest); it is also the field order of the JSON form.
pub const KEYS: [&str; 15] = [
    "model",
    "dataset",
    "rule",
    "depth",
    "width",
    "activation",
    "param",
    "optimizer",
    "lr",
    "batch_size",
    "epochs",
    "train_size",
    "w_std",
    "b_std",
    "seed",
];

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelKind::Mlp,
            dataset: "digits".into(),
            rule: RuleName::Bp,
            depth: 2,
            width: 1024,
            activation: ActivationArg::Relu,
            param: ParamKind::Ntk,
            optimizer: OptimizerName::Sgd,
            lr: 1.0,
            batch_size: 100,
            epochs: 10,
            train_size: None,
            w_std: 1.0,
            b_std: 0.1,
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// The config described by `widealign train` flags.
    pub fn from_args(a: &TrainArgs) -> Self {
        TrainConfig {
            model: a.model.model,
            dataset: a.data.dataset.clone(),
            rule: a.rule,
            depth: a.model.depth,
            width: a.width,
            activation: a.model.activation,
            param: a.model.param,
            optimizer: a.optim.optimizer,
            lr: a.optim.lr,
            batch_size: a.optim.batch_size,
            epochs: a.optim.epochs,
            train_size: a.data.train_size,
            w_std: a.model.w_std,
            b_std: a.model.b_std,
            seed: a.optim.seed,
        }
    }

    /// Checks value ranges. On failure returns the offending key (config spelling, e.g.
    /// `batch_size`) and the reason; callers add the flag or file position.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = |key: &'static str, v: usize| {
            if v == 0 {
                Err((key, "must be at least 1".to_string()))
            } else {
                Ok(())
            }
        };
        positive("width", self.width)?;
        positive("batch_size", self.batch_size)?;
        positive("epochs", self.epochs)?;
        if self.model == ModelKind::Mlp {
            positive("depth", self.depth)?;
        }
        if let Some(k) = self.train_size {
            positive("train_size", k)?;
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err((
                "lr",
                format!("must be finite and positive, got {}", self.lr),
            ));
        }
        for (key, v) in [("w_std", self.w_std), ("b_std", self.b_std)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err((key, format!("must be finite and non-negative, got {v}")));
            }
        }
        if self.dataset.trim().is_empty() {
            return Err(("dataset", "must not be empty".into()));
        }
        Ok(())
    }

    /// The identity of a run: its canonical JSON (keys in [`KEYS`] order, numbers in serde's
    /// shortest round-trip form). Two configs are the same run iff their keys are equal.
    pub fn key(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A short label for progress lines, e.g. `digits bp w=1024 d=2 lr=5 seed=0`.
    pub fn label(&self) -> String {
        let n = self
            .train_size
            .map(|k| format!(" n={k}"))
            .unwrap_or_default();
        format!(
            "{}{n} {} w={} d={} lr={} seed={}",
            self.dataset,
            self.rule.name(),
            self.width,
            self.depth,
            self.lr,
            self.seed
        )
    }
}

/// Turns a validation failure into the `--flag` spelling.
pub fn key_to_flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_fields_in_order() {
        let v = serde_json::to_value(TrainConfig::default()).unwrap();
        let s = serde_json::to_string(&v).unwrap();
        // serde_json::Value sorts keys; check the struct's own order via its string form.
        let own = TrainConfig::default().key();
        let mut pos = 0;
        for k in KEYS {
            let p = own.find(&format!("\"{k}\":")).expect(k);
            assert!(p >= pos, "{k} out of order");
            pos = p;
            assert!(s.contains(&format!("\"{k}\":")));
        }
        assert_eq!(v.as_object().unwrap().len(), KEYS.len());
    }

    #[test]
    fn key_round_trips_through_json() {
        let c = TrainConfig {
            lr: 0.1 + 0.2,
            train_size: Some(300),
            ..TrainConfig::default()
        };
        let back: TrainConfig = serde_json::from_str(&c.key()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.key(), c.key());
    }

    #[test]
    fn integer_lr_is_accepted() {
        let c: TrainConfig = serde_json::from_str(r#"{"lr": 5}"#).unwrap();
        assert_eq!(c.lr, 5.0);
        let d = TrainConfig {
            lr: 5.0,
            ..TrainConfig::default()
        };
        assert_eq!(c.key(), d.key());
    }

    #[test]
    fn validation_names_the_key() {
        let c = TrainConfig {
            batch_size: 0,
            ..TrainConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "batch_size");
        let c = TrainConfig {
            lr: f64::NAN,
            ..TrainConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "lr");
        assert!(TrainConfig::default().validate().is_ok());
        assert_eq!(key_to_flag("batch_size"), "--batch-size");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<TrainConfig>(r#"{"widht": 5}"#).is_err());
    }
}
