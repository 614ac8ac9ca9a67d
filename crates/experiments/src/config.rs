//! The identity of a run and the checks of a [`TrainConfig`] that every experiment shares.
//!
//! A run's identity is the derived serialisation of its [`TrainConfig`] as one line of JSON
//! ([`key`]): two configs are the same run iff their keys are equal, and a results file is
//! resumed by comparing keys. The serialisation is serde's, so a field added to
//! [`TrainConfig`] is part of the identity unless it is marked `#[serde(skip)]` (as
//! `cache_frozen` is: it cannot change a result). The CNN settings (`channels` … `norm`) are
//! written only when they differ from their defaults, so the keys of MLP and RNN runs are the
//! ones results files have always held, e.g.
//!
//! ```text
//! {"model":"mlp","dataset":"digits","rule":"align-zero","depth":1,"width":64,
//!  "activation":"erf","param":"standard","optimizer":"adam","lr":0.3,"batch_size":50,
//!  "epochs":3,"train_size":300,"w_std":1.5,"b_std":0.0,"seed":7}
//! ```
//!
//! [`fields`] lists the keys in that order (read from the derived `Deserialize`, not written
//! out by hand); sweeps enumerate their grids in it.
//!
//! ```
//! use widealign_experiments::config::{fields, key};
//! use widealign_rules::TrainConfig;
//! let cfg: TrainConfig = serde_json::from_str(r#"{"width": 64, "lr": 5}"#).unwrap();
//! assert!(key(&cfg).starts_with(r#"{"model":"mlp","dataset":"digits","rule":"bp","depth":2,"width":64,"#));
//! assert_eq!(fields()[0], "model");
//! assert_eq!(fields().last(), Some(&"norm"));
//! ```

use std::sync::OnceLock;

use serde::de::{self, Visitor};
use serde::Deserialize;
use widealign_rules::{ModelKind, RulesError, TrainConfig};

use crate::ExperimentError;

/// The identity of a run: the config's derived serialisation as one line of JSON.
pub fn key(c: &TrainConfig) -> String {
    // Serialising a TrainConfig cannot fail: it has no maps and serde_json writes NaN as null.
    serde_json::to_string(c).unwrap_or_default()
}

/// The keys of a config's serialised form in their order (the [`TrainConfig`] field order):
/// `model, dataset, rule, depth, width, activation, param, optimizer, lr, batch_size, epochs,
/// train_size, w_std, b_std, seed, channels, conv_layers, kernel, stride, padding, readout, norm`.
pub fn fields() -> &'static [&'static str] {
    static FIELDS: OnceLock<&'static [&'static str]> = OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut names: &'static [&'static str] = &[];
        // The derived `Deserialize` hands its field list to `deserialize_struct`; FieldNames
        // keeps it and stops there.
        let _ = TrainConfig::deserialize(FieldNames(&mut names));
        names
    })
}

/// A deserializer that only records the field names a derived `Deserialize` asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only field names are read"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("only field names are read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Checks value ranges: the training loop's own checks ([`TrainConfig::validate`]), at least
/// one epoch and a dataset name.
///
/// # Errors
/// [`ExperimentError::InvalidSetting`] naming the key (e.g. `batch_size`).
pub fn validate(c: &TrainConfig) -> Result<(), ExperimentError> {
    c.validate().map_err(|e| match e {
        RulesError::InvalidConfig { field, reason } => ExperimentError::setting(field, reason),
        // `validate` reports nothing else; name no key rather than a wrong one
        other => ExperimentError::setting("", other),
    })?;
    if c.epochs == 0 {
        return Err(ExperimentError::setting("epochs", "must be at least 1"));
    }
    if c.dataset.trim().is_empty() {
        return Err(ExperimentError::setting("dataset", "must not be empty"));
    }
    Ok(())
}

/// A short label for progress lines, e.g. `digits bp w=1024 d=2 lr=5 seed=0` (with ` n=K`
/// after the dataset for a training subset); a CNN shows its channels and convolution layers
/// instead of width and depth (`digits bp c=32 conv=2 lr=30 seed=0`).
pub fn label(c: &TrainConfig) -> String {
    let n = c.train_size.map(|k| format!(" n={k}")).unwrap_or_default();
    let size = match c.model {
        ModelKind::Cnn => format!("c={} conv={}", c.channels, c.conv_layers),
        ModelKind::Mlp | ModelKind::Rnn => format!("w={} d={}", c.width, c.depth),
    };
    format!(
        "{}{n} {} {size} lr={} seed={}",
        c.dataset,
        c.rule.name(),
        c.lr,
        c.seed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_models::{CnnReadout, Norm, Padding};
    use widealign_rules::{ModelKind, OptimizerChoice, ParamKind, RuleKind};
    use widealign_tensor::Activation;

    /// The identity is a contract (results files, `--resume`): pinned literally, byte for byte
    /// the form the CLI's hand-written serialiser produced before it was derived.
    #[test]
    fn identity_is_pinned() {
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
            // the CNN settings at their defaults are not written
            ..TrainConfig::default()
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

    /// Every field of [`TrainConfig`] is in the identity: changing any one of them changes the
    /// key. The destructuring below names every field without `..`, so a new field does not
    /// compile until it is listed here — with a changed value whose key must differ, or, like
    /// `cache_frozen`, as explicitly outside the identity.
    #[test]
    fn every_field_is_part_of_the_identity() {
        let base = TrainConfig::default();
        let TrainConfig {
            model,
            dataset,
            rule,
            depth,
            width,
            activation,
            param,
            optimizer,
            lr,
            batch_size,
            epochs,
            train_size,
            w_std,
            b_std,
            seed,
            channels,
            conv_layers,
            kernel,
            stride,
            padding,
            readout,
            norm,
            cache_frozen,
        } = base.clone();
        let b = || base.clone();
        let changed: Vec<(&str, TrainConfig)> = vec![
            (
                "model",
                TrainConfig {
                    model: if model == ModelKind::Mlp {
                        ModelKind::Rnn
                    } else {
                        ModelKind::Mlp
                    },
                    ..b()
                },
            ),
            (
                "dataset",
                TrainConfig {
                    dataset: dataset + "-other",
                    ..b()
                },
            ),
            (
                "rule",
                TrainConfig {
                    rule: if rule == RuleKind::Bp {
                        RuleKind::Fa
                    } else {
                        RuleKind::Bp
                    },
                    ..b()
                },
            ),
            (
                "depth",
                TrainConfig {
                    depth: depth + 1,
                    ..b()
                },
            ),
            (
                "width",
                TrainConfig {
                    width: width + 1,
                    ..b()
                },
            ),
            (
                "activation",
                TrainConfig {
                    activation: if activation == Activation::Erf {
                        Activation::Tanh
                    } else {
                        Activation::Erf
                    },
                    ..b()
                },
            ),
            (
                "param",
                TrainConfig {
                    param: if param == ParamKind::Ntk {
                        ParamKind::Standard
                    } else {
                        ParamKind::Ntk
                    },
                    ..b()
                },
            ),
            (
                "optimizer",
                TrainConfig {
                    optimizer: if optimizer == OptimizerChoice::Sgd {
                        OptimizerChoice::Adam
                    } else {
                        OptimizerChoice::Sgd
                    },
                    ..b()
                },
            ),
            (
                "lr",
                TrainConfig {
                    lr: lr * 2.0,
                    ..b()
                },
            ),
            (
                "batch_size",
                TrainConfig {
                    batch_size: batch_size + 1,
                    ..b()
                },
            ),
            (
                "epochs",
                TrainConfig {
                    epochs: epochs + 1,
                    ..b()
                },
            ),
            (
                "train_size",
                TrainConfig {
                    train_size: Some(train_size.unwrap_or(1) + 1),
                    ..b()
                },
            ),
            (
                "w_std",
                TrainConfig {
                    w_std: w_std + 0.5,
                    ..b()
                },
            ),
            (
                "b_std",
                TrainConfig {
                    b_std: b_std + 0.5,
                    ..b()
                },
            ),
            (
                "seed",
                TrainConfig {
                    seed: seed + 1,
                    ..b()
                },
            ),
            (
                "channels",
                TrainConfig {
                    channels: channels + 1,
                    ..b()
                },
            ),
            (
                "conv_layers",
                TrainConfig {
                    conv_layers: conv_layers + 1,
                    ..b()
                },
            ),
            (
                "kernel",
                TrainConfig {
                    kernel: kernel + 2,
                    ..b()
                },
            ),
            (
                "stride",
                TrainConfig {
                    stride: stride + 1,
                    ..b()
                },
            ),
            (
                "padding",
                TrainConfig {
                    padding: if padding == Padding::Same {
                        Padding::Valid
                    } else {
                        Padding::Same
                    },
                    ..b()
                },
            ),
            (
                "readout",
                TrainConfig {
                    readout: if readout == CnnReadout::Gap {
                        CnnReadout::Flatten
                    } else {
                        CnnReadout::Gap
                    },
                    ..b()
                },
            ),
            (
                "norm",
                TrainConfig {
                    norm: if norm == Norm::None {
                        Norm::Batch
                    } else {
                        Norm::None
                    },
                    ..b()
                },
            ),
        ];
        // Outside the identity by design: a memory/time trade-off with bit-identical results.
        let outside = [(
            "cache_frozen",
            TrainConfig {
                cache_frozen: !cache_frozen,
                ..b()
            },
        )];
        for (name, c) in &changed {
            assert_ne!(key(c), key(&base), "{name} is not part of the identity");
            assert_ne!(c, &base);
            // and the key reads back as the same config
            let back: TrainConfig = serde_json::from_str(&key(c)).unwrap();
            assert_eq!(&back, c, "{name} does not survive the round trip");
        }
        for (_, c) in &outside {
            assert_eq!(key(c), key(&base));
        }
        // Every serialised key is a field, every field but the excluded ones is serialised.
        let names: Vec<&str> = changed.iter().map(|(n, _)| *n).collect();
        assert_eq!(fields(), names.as_slice());
    }

    #[test]
    fn fields_follow_the_serialised_order() {
        // every CNN setting away from its default, so that all of them are written
        let cnn = TrainConfig {
            channels: 8,
            conv_layers: 2,
            kernel: 5,
            stride: 2,
            padding: Padding::Valid,
            readout: CnnReadout::Flatten,
            norm: Norm::Batch,
            ..TrainConfig::default()
        };
        let own = key(&cnn);
        let mut pos = 0;
        for k in fields() {
            let p = own.find(&format!("\"{k}\":")).expect(k);
            assert!(p >= pos, "{k} out of order");
            pos = p;
        }
        let v: serde_json::Value = serde_json::from_str(&own).unwrap();
        assert_eq!(v.as_object().unwrap().len(), fields().len());
    }

    #[test]
    fn cnn_settings_at_their_defaults_leave_the_key_unchanged() {
        let key_of_default = key(&TrainConfig::default());
        assert!(!key_of_default.contains("channels"), "{key_of_default}");
        assert!(key_of_default.ends_with(r#""seed":0}"#), "{key_of_default}");
        let back: TrainConfig = serde_json::from_str(&key_of_default).unwrap();
        assert_eq!(back, TrainConfig::default());
    }

    #[test]
    fn validation_names_the_key() {
        let bad = |c: TrainConfig| match validate(&c) {
            Err(ExperimentError::InvalidSetting { setting, .. }) => setting,
            other => panic!("{other:?}"),
        };
        let d = TrainConfig::default;
        assert_eq!(
            bad(TrainConfig {
                batch_size: 0,
                ..d()
            }),
            "batch_size"
        );
        assert_eq!(
            bad(TrainConfig {
                lr: f64::NAN,
                ..d()
            }),
            "lr"
        );
        assert_eq!(bad(TrainConfig { epochs: 0, ..d() }), "epochs");
        assert_eq!(
            bad(TrainConfig {
                dataset: " ".into(),
                ..d()
            }),
            "dataset"
        );
        assert!(validate(&d()).is_ok());
    }

    #[test]
    fn labels_are_short() {
        let c = TrainConfig {
            train_size: Some(100),
            lr: 5.0,
            ..TrainConfig::default()
        };
        assert_eq!(label(&c), "digits n=100 bp w=1024 d=2 lr=5 seed=0");
        let cnn = TrainConfig {
            model: ModelKind::Cnn,
            channels: 32,
            conv_layers: 2,
            ..c
        };
        assert_eq!(label(&cnn), "digits n=100 bp c=32 conv=2 lr=5 seed=0");
    }
}
