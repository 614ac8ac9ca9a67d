//! The CLI side of [`TrainConfig`], the complete description of one training run shared by
//! `train`, `sweep` and `reproduce`: building it from flags, checking it, and its JSON form,
//! which identifies a run in a results file.
//!
//! [`TrainConfig`] is `widealign_rules::TrainConfig` itself (no copy, no conversion): the CLI
//! hands it to the training loop as it is.
//!
//! # The JSON form
//!
//! The fifteen [`KEYS`] in that order, values spelled as on the command line, numbers in
//! serde's shortest round-trip form; for example
//!
//! ```text
//! {"model":"mlp","dataset":"digits","rule":"align-zero","depth":1,"width":64,
//!  "activation":"erf","param":"standard","optimizer":"adam","lr":0.3,"batch_size":50,
//!  "epochs":3,"train_size":300,"w_std":1.5,"b_std":0.0,"seed":7}
//! ```
//!
//! (one line in a results file). The rules crate's `cache_frozen` is not part of it: that
//! switch only trades memory for time with bit-identical results, so it is no part of a run's
//! identity; the CLI never changes it and a config read back has its default (`true`).
//! [`key`] is this form as a string; two configs are the same run iff their keys are equal.

use serde::de::Error as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use widealign_rules::RulesError;

pub use widealign_rules::TrainConfig;

use crate::cli::{DataArgs, ModelArgs, OptimArgs};

/// The config keys in their canonical order: the field order of the JSON form, and the order in
/// which sweeps enumerate runs (the last key varies fastest). They are the train flags with `_`
/// for `-`.
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

/// A config in its JSON form (see the module docs): `serde_json::to_string(&Json(&cfg))`.
#[derive(Clone, Copy, Debug)]
pub struct Json<'a>(pub &'a TrainConfig);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = s.serialize_struct("TrainConfig", KEYS.len())?;
        m.serialize_field("model", &c.model)?;
        m.serialize_field("dataset", &c.dataset)?;
        m.serialize_field("rule", &c.rule)?;
        m.serialize_field("depth", &c.depth)?;
        m.serialize_field("width", &c.width)?;
        m.serialize_field("activation", c.activation.name())?;
        m.serialize_field("param", &c.param)?;
        m.serialize_field("optimizer", &c.optimizer)?;
        m.serialize_field("lr", &c.lr)?;
        m.serialize_field("batch_size", &c.batch_size)?;
        m.serialize_field("epochs", &c.epochs)?;
        m.serialize_field("train_size", &c.train_size)?;
        m.serialize_field("w_std", &c.w_std)?;
        m.serialize_field("b_std", &c.b_std)?;
        m.serialize_field("seed", &c.seed)?;
        m.end()
    }
}

/// Serde adapter for a [`TrainConfig`] field in the JSON form:
/// `#[serde(with = "crate::config::json")]`.
pub mod json {
    use super::*;

    /// Writes `c` in the JSON form.
    ///
    /// # Errors
    /// Only the serializer's own.
    pub fn serialize<S: Serializer>(c: &TrainConfig, s: S) -> Result<S::Ok, S::Error> {
        Json(c).serialize(s)
    }

    /// Reads a config: any subset of [`KEYS`] (the others keep their defaults); a number for
    /// `lr`, `w_std` or `b_std` may be written as an integer.
    ///
    /// # Errors
    /// A key outside [`KEYS`] (including `cache_frozen`), or a value of the wrong type or
    /// spelling.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TrainConfig, D::Error> {
        let m = Map::<String, Value>::deserialize(d)?;
        if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(D::Error::unknown_field(k, &KEYS));
        }
        serde_json::from_value(Value::Object(m)).map_err(D::Error::custom)
    }
}

/// Reads a config from its JSON form (see [`json::deserialize`]).
///
/// # Errors
/// An unknown key, or a value of the wrong type or spelling.
pub fn from_value(v: Value) -> Result<TrainConfig, serde_json::Error> {
    json::deserialize(v)
}

/// The JSON form of `c` as a [`Value`] (whose map sorts the keys).
pub fn to_value(c: &TrainConfig) -> Value {
    serde_json::to_value(Json(c)).unwrap_or_default()
}

/// The identity of a run: its JSON form as one line. Two configs are the same run iff their
/// keys are equal.
pub fn key(c: &TrainConfig) -> String {
    serde_json::to_string(&Json(c)).unwrap_or_default()
}

/// The config described by the architecture, dataset and optimisation flags (rule and width
/// keep their defaults).
pub fn from_flags(model: &ModelArgs, data: &DataArgs, optim: &OptimArgs) -> TrainConfig {
    TrainConfig {
        model: model.model,
        dataset: data.dataset.clone(),
        depth: model.depth,
        activation: model.activation,
        param: model.param,
        optimizer: optim.optimizer,
        lr: optim.lr,
        batch_size: optim.batch_size,
        epochs: optim.epochs,
        train_size: data.train_size,
        w_std: model.w_std,
        b_std: model.b_std,
        seed: optim.seed,
        ..TrainConfig::default()
    }
}

/// Checks value ranges: the training loop's own checks ([`TrainConfig::validate`]), at least one
/// epoch and a dataset name. On failure returns the offending key (config spelling, e.g.
/// `batch_size`) and the reason; callers add the flag or file position.
pub fn validate(c: &TrainConfig) -> Result<(), (&'static str, String)> {
    c.validate().map_err(|e| match e {
        RulesError::InvalidConfig { field, reason } => (field, reason),
        // `validate` reports nothing else; name no key rather than a wrong one
        other => ("", other.to_string()),
    })?;
    if c.epochs == 0 {
        return Err(("epochs", "must be at least 1".into()));
    }
    if c.dataset.trim().is_empty() {
        return Err(("dataset", "must not be empty".into()));
    }
    Ok(())
}

/// A short label for progress lines, e.g. `digits bp w=1024 d=2 lr=5 seed=0`.
pub fn label(c: &TrainConfig) -> String {
    let n = c.train_size.map(|k| format!(" n={k}")).unwrap_or_default();
    format!(
        "{}{n} {} w={} d={} lr={} seed={}",
        c.dataset,
        c.rule.name(),
        c.width,
        c.depth,
        c.lr,
        c.seed
    )
}

/// Turns a validation failure into the `--flag` spelling.
pub fn key_to_flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_rules::{ModelKind, OptimizerChoice, ParamKind, RuleKind};
    use widealign_tensor::Activation;

    /// The JSON form is a contract (results files, `sweep --resume`): pinned literally.
    #[test]
    fn json_form_is_pinned() {
        let c = TrainConfig {
            model: ModelKind::Rnn,
            dataset: "add".into(),
            rule: RuleKind::AlignZero,
            depth: 1,
            width: 64,
            activation: Activation::Erf,
            param: ParamKind::Standard,
            optimizer: OptimizerChoice::Adam,
            lr: 0.1 + 0.2,
            batch_size: 50,
            epochs: 3,
            train_size: Some(300),
            w_std: 1.5,
            b_std: 0.0,
            seed: 7,
            cache_frozen: true,
        };
        assert_eq!(
            key(&c),
            r#"{"model":"rnn","dataset":"add","rule":"align-zero","depth":1,"width":64,"activation":"erf","param":"standard","optimizer":"adam","lr":0.30000000000000004,"batch_size":50,"epochs":3,"train_size":300,"w_std":1.5,"b_std":0.0,"seed":7}"#
        );
        assert_eq!(
            key(&TrainConfig::default()),
            r#"{"model":"mlp","dataset":"digits","rule":"bp","depth":2,"width":1024,"activation":"relu","param":"ntk","optimizer":"sgd","lr":1.0,"batch_size":100,"epochs":10,"train_size":null,"w_std":1.0,"b_std":0.1,"seed":0}"#
        );
        // cache_frozen is no part of a run's identity
        let no_cache = TrainConfig {
            cache_frozen: false,
            ..c.clone()
        };
        assert_eq!(key(&no_cache), key(&c));
    }

    #[test]
    fn keys_match_the_json_form_in_order() {
        let own = key(&TrainConfig::default());
        let mut pos = 0;
        for k in KEYS {
            let p = own.find(&format!("\"{k}\":")).expect(k);
            assert!(p >= pos, "{k} out of order");
            pos = p;
        }
        assert_eq!(
            to_value(&TrainConfig::default()).as_object().unwrap().len(),
            KEYS.len()
        );
    }

    #[test]
    fn key_round_trips_through_json() {
        for rule in RuleKind::ALL {
            let c = TrainConfig {
                rule,
                lr: 0.1 + 0.2,
                train_size: Some(300),
                activation: Activation::Gelu,
                ..TrainConfig::default()
            };
            let back = from_value(serde_json::from_str(&key(&c)).unwrap()).unwrap();
            assert_eq!(back, c);
            assert_eq!(key(&back), key(&c));
        }
    }

    #[test]
    fn integer_lr_is_accepted() {
        let c = from_value(serde_json::json!({"lr": 5})).unwrap();
        assert_eq!(c.lr, 5.0);
        let d = TrainConfig {
            lr: 5.0,
            ..TrainConfig::default()
        };
        assert_eq!(key(&c), key(&d));
    }

    #[test]
    fn validation_names_the_key() {
        let c = TrainConfig {
            batch_size: 0,
            ..TrainConfig::default()
        };
        assert_eq!(validate(&c).unwrap_err().0, "batch_size");
        let c = TrainConfig {
            lr: f64::NAN,
            ..TrainConfig::default()
        };
        assert_eq!(validate(&c).unwrap_err().0, "lr");
        let c = TrainConfig {
            epochs: 0,
            ..TrainConfig::default()
        };
        assert_eq!(validate(&c).unwrap_err().0, "epochs");
        let c = TrainConfig {
            dataset: " ".into(),
            ..TrainConfig::default()
        };
        assert_eq!(validate(&c).unwrap_err().0, "dataset");
        assert!(validate(&TrainConfig::default()).is_ok());
        assert_eq!(key_to_flag("batch_size"), "--batch-size");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        for bad in [r#"{"widht": 5}"#, r#"{"cache_frozen": false}"#] {
            let e = from_value(serde_json::from_str(bad).unwrap()).unwrap_err();
            assert!(e.to_string().starts_with("unknown field"), "{e}");
        }
    }
}
