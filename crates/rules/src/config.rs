//! [`TrainConfig`] (one training run's settings) and [`TrainResult`] (what it produced), both
//! serde-serialisable; `widealign train --json` prints a [`TrainResult`] (inside the record of
//! `widealign-experiments`, which adds the config and the version).
//!
//! Field names and defaults match the `widealign train` flags (`_` for `-`), see
//! docs/theory.md §7. The derived serialisation of a [`TrainConfig`] is the identity of a
//! run (a results file is resumed by comparing it): every field is part of it except
//! [`TrainConfig::cache_frozen`], which cannot change a result. Unknown keys are rejected.
//!
//! ```
//! use widealign_rules::{TrainConfig, RuleKind};
//! let cfg: TrainConfig = serde_json::from_str(
//!     r#"{"dataset": "digits", "rule": "align-zero", "width": 256, "lr": 5.0}"#,
//! ).unwrap();
//! assert_eq!(cfg.rule, RuleKind::AlignZero);
//! assert_eq!(cfg.depth, 2); // default
//! let spec = cfg.mlp_spec(64, 10).unwrap();
//! assert_eq!(spec.widths(), vec![64, 256, 256, 10]);
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use widealign_models::{
    BiasInit, CnnReadout, CnnSpec, ImageLayout, MlpSpec, Norm, Padding, Parameterization,
};
use widealign_tensor::memory::Estimate;
use widealign_tensor::Activation;

use crate::{RuleKind, RulesError};

/// Network family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Fully connected network ([`widealign_models::Mlp`]).
    Mlp,
    /// Elman recurrent network ([`widealign_models::Rnn`]); `depth` is ignored (one recurrent
    /// layer).
    Rnn,
    /// Convolutional network ([`widealign_models::Cnn`]) on image datasets: `conv_layers`
    /// convolutions of `channels` channels; `depth` and `width` are ignored.
    Cnn,
}

impl ModelKind {
    /// Every family: MLP, RNN, CNN.
    pub const ALL: [ModelKind; 3] = [ModelKind::Mlp, ModelKind::Rnn, ModelKind::Cnn];

    /// `"mlp"`, `"rnn"` or `"cnn"`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Mlp => "mlp",
            ModelKind::Rnn => "rnn",
            ModelKind::Cnn => "cnn",
        }
    }
}

/// Parameterisation of the dense layers (docs/theory.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    /// `h = (s_w/√n) W a + s_b b`, `N(0, 1)` parameters.
    Ntk,
    /// `h = W a + b`, `W ~ N(0, s_w²/n)`, `b ~ N(0, s_b²)`.
    Standard,
}

impl ParamKind {
    /// Both parameterisations, NTK first.
    pub const ALL: [ParamKind; 2] = [ParamKind::Ntk, ParamKind::Standard];

    /// `"ntk"` or `"standard"`.
    pub fn name(self) -> &'static str {
        match self {
            ParamKind::Ntk => "ntk",
            ParamKind::Standard => "standard",
        }
    }
}

/// Optimiser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerChoice {
    /// Plain SGD, `θ ← θ − lr·g` (the reference).
    Sgd,
    /// Adam with `β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e−8`.
    Adam,
}

impl OptimizerChoice {
    /// Both optimisers, SGD first.
    pub const ALL: [OptimizerChoice; 2] = [OptimizerChoice::Sgd, OptimizerChoice::Adam];

    /// `"sgd"` or `"adam"`.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerChoice::Sgd => "sgd",
            OptimizerChoice::Adam => "adam",
        }
    }
}

/// `Display` (the name) and `FromStr` (the inverse, [`RulesError::UnknownName`] otherwise) for
/// a name enum with `ALL` and `name()`; the serde form is the same name.
macro_rules! by_name {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl FromStr for $ty {
            type Err = RulesError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
                    RulesError::UnknownName {
                        what: $what,
                        got: s.to_string(),
                        expected: $ty::ALL.map($ty::name).join(", "),
                    }
                })
            }
        }
    };
}

by_name!(ModelKind, "model");
by_name!(ParamKind, "parameterisation");
by_name!(OptimizerChoice, "optimiser");

mod activation_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use widealign_tensor::Activation;

    pub fn serialize<S: Serializer>(a: &Activation, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Activation, D::Error> {
        let name = String::deserialize(d)?;
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown activation `{name}` (expected one of: {})",
                    Activation::ALL.map(Activation::name).join(", ")
                ))
            })
    }
}

/// Every setting of one training run (defaults are the `widealign train` flag defaults).
///
/// Biases start at zero (as in the reference experiments) and the loss is the reference MSE
/// (mean over batch and outputs; summed over time steps for sequences) with targets one-hot − 0.1
/// for classification.
///
/// # Serialised form
///
/// The fields in declaration order, values spelled as on the command line, for example
/// `{"model":"mlp","dataset":"digits","rule":"bp","depth":2,"width":1024,"activation":"relu",
/// "param":"ntk","optimizer":"sgd","lr":1.0,"batch_size":100,"epochs":10,"train_size":null,
/// "w_std":1.0,"b_std":0.1,"seed":0}` for the default. Reading accepts any subset of the keys
/// (the others keep their defaults), rejects unknown keys, and takes `5` for `5.0`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Network family.
    pub model: ModelKind,
    /// Dataset name as given to `widealign_data::load` (recorded in the result; [`crate::train`]
    /// receives the loaded dataset).
    pub dataset: String,
    /// Learning rule.
    pub rule: RuleKind,
    /// Hidden layers of the MLP (it has `depth + 1` weight layers); ignored for the RNN.
    pub depth: usize,
    /// Hidden width.
    pub width: usize,
    /// Nonlinearity of every hidden layer.
    #[serde(with = "activation_name")]
    pub activation: Activation,
    /// Parameterisation.
    pub param: ParamKind,
    /// Optimiser.
    pub optimizer: OptimizerChoice,
    /// Learning rate.
    pub lr: f64,
    /// Mini-batch size (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Train on a stratified (classification) or leading (regression) subset of this many
    /// training examples, drawn with the run's seed; `None`: the whole training split.
    pub train_size: Option<usize>,
    /// Weight standard deviation `s_w`.
    pub w_std: f64,
    /// Bias standard deviation `s_b`.
    pub b_std: f64,
    /// Seed of every random choice: initialisation, feedback matrices, shuffling, subsets.
    pub seed: u64,
    /// CNN: channels of every convolution layer.
    #[serde(skip_serializing_if = "cnn_default::is_channels")]
    pub channels: usize,
    /// CNN: number of convolution layers.
    #[serde(skip_serializing_if = "cnn_default::is_conv_layers")]
    pub conv_layers: usize,
    /// CNN: kernel size `k` (`k × k` kernels).
    #[serde(skip_serializing_if = "cnn_default::is_kernel")]
    pub kernel: usize,
    /// CNN: stride of every convolution.
    #[serde(skip_serializing_if = "cnn_default::is_stride")]
    pub stride: usize,
    /// CNN: zero padding of every convolution (`same` or `valid`).
    #[serde(skip_serializing_if = "cnn_default::is_padding")]
    pub padding: Padding,
    /// CNN: what the readout reads (`gap`: global average pooling, or `flatten`).
    #[serde(skip_serializing_if = "cnn_default::is_readout")]
    pub readout: CnnReadout,
    /// CNN: normalisation after each convolution (`none` or `batch`).
    #[serde(skip_serializing_if = "cnn_default::is_norm")]
    pub norm: Norm,
    /// Align-ada/zero: cache the frozen network's per-example trace (if it fits in
    /// [`crate::FROZEN_CACHE_BUDGET`]) instead of running the frozen forward pass every step;
    /// results are identical either way (see `docs/decisions/align-zero-cache.md`).
    ///
    /// Not serialised (so no part of a run's identity); a config read back has the default,
    /// `true`.
    #[serde(skip)]
    pub cache_frozen: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: ModelKind::Mlp,
            dataset: "digits".into(),
            rule: RuleKind::Bp,
            depth: 2,
            width: 1024,
            activation: Activation::Relu,
            param: ParamKind::Ntk,
            optimizer: OptimizerChoice::Sgd,
            lr: 1.0,
            batch_size: 100,
            epochs: 10,
            train_size: None,
            w_std: 1.0,
            b_std: 0.1,
            seed: 0,
            channels: cnn_default::CHANNELS,
            conv_layers: cnn_default::CONV_LAYERS,
            kernel: cnn_default::KERNEL,
            stride: cnn_default::STRIDE,
            padding: cnn_default::PADDING,
            readout: cnn_default::READOUT,
            norm: cnn_default::NORM,
            cache_frozen: true,
        }
    }
}

/// The defaults of the CNN settings. A setting at its default is left out of the serialised
/// config, so the identities of MLP and RNN runs written before the CNN existed are unchanged.
mod cnn_default {
    use widealign_models::{CnnReadout, Norm, Padding};

    pub const CHANNELS: usize = 64;
    pub const CONV_LAYERS: usize = 3;
    pub const KERNEL: usize = 3;
    pub const STRIDE: usize = 1;
    pub const PADDING: Padding = Padding::Same;
    pub const READOUT: CnnReadout = CnnReadout::Gap;
    pub const NORM: Norm = Norm::None;

    pub fn is_channels(v: &usize) -> bool {
        *v == CHANNELS
    }
    pub fn is_conv_layers(v: &usize) -> bool {
        *v == CONV_LAYERS
    }
    pub fn is_kernel(v: &usize) -> bool {
        *v == KERNEL
    }
    pub fn is_stride(v: &usize) -> bool {
        *v == STRIDE
    }
    pub fn is_padding(v: &Padding) -> bool {
        *v == PADDING
    }
    pub fn is_readout(v: &CnnReadout) -> bool {
        *v == READOUT
    }
    pub fn is_norm(v: &Norm) -> bool {
        *v == NORM
    }
}

impl TrainConfig {
    /// Checks value ranges.
    ///
    /// # Errors
    /// [`RulesError::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), RulesError> {
        let bad =
            |field: &'static str, reason: String| Err(RulesError::InvalidConfig { field, reason });
        if self.width == 0 {
            return bad("width", "must be at least 1".into());
        }
        if self.model == ModelKind::Mlp && self.depth == 0 {
            return bad("depth", "must be at least 1 hidden layer".into());
        }
        if self.model == ModelKind::Cnn {
            for (field, v) in [
                ("channels", self.channels),
                ("conv_layers", self.conv_layers),
                ("kernel", self.kernel),
                ("stride", self.stride),
            ] {
                if v == 0 {
                    return bad(field, "must be at least 1".into());
                }
            }
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(
                "lr",
                format!("must be finite and positive, got {}", self.lr),
            );
        }
        if self.train_size == Some(0) {
            return bad("train_size", "must be at least 1".into());
        }
        for (field, v) in [("w_std", self.w_std), ("b_std", self.b_std)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("must be finite and non-negative, got {v}"));
            }
        }
        Ok(())
    }

    /// The parameterisation with this run's `s_w`, `s_b`.
    pub fn parameterization(&self) -> Parameterization {
        match self.param {
            ParamKind::Ntk => Parameterization::Ntk {
                w_std: self.w_std,
                b_std: self.b_std,
            },
            ParamKind::Standard => Parameterization::Standard {
                w_std: self.w_std,
                b_std: self.b_std,
            },
        }
    }

    /// The MLP this run trains: `depth` hidden layers of `width`, zero-initialised biases.
    /// Other crates (e.g. the NTK crate's shadow accumulator) build the same network with
    /// `Mlp::new(&cfg.mlp_spec(..)?, cfg.seed)`.
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate.
    pub fn mlp_spec(&self, input_dim: usize, output_dim: usize) -> Result<MlpSpec, RulesError> {
        let spec = MlpSpec::uniform(
            input_dim,
            self.width,
            self.depth,
            output_dim,
            self.activation,
        )
        .with_param(self.parameterization())
        .with_bias_init(BiasInit::Zero);
        spec.validate()?;
        Ok(spec)
    }
}

/// The sizes of a dataset that decide a run's memory (see [`TrainConfig::memory_estimate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataShape {
    /// Input dimension (per step for sequences).
    pub input_dim: usize,
    /// Output dimension.
    pub output_dim: usize,
    /// Training examples.
    pub n_train: usize,
    /// Time steps per sequence (RNN), `None` for feature vectors.
    pub steps: Option<usize>,
    /// `[H, W, C]` of image datasets (what the CNN reads), `None` otherwise.
    pub image: Option<[usize; 3]>,
}

impl TrainConfig {
    /// The convolutional network this run trains on the training split `train` of its image
    /// dataset (`digits` 8×8×1, `fashion-mnist`/`mnist`/`kmnist` 28×28×1, `cifar10` 32×32×3):
    /// [`TrainConfig::cnn_spec`] with the dataset's image shape and `train`'s output count.
    ///
    /// # Errors
    /// [`RulesError::DatasetMismatch`] if the dataset is not an image dataset or its examples do
    /// not hold one image each; as [`TrainConfig::cnn_spec`].
    pub fn cnn_spec_for(&self, train: &widealign_data::Tabular) -> Result<CnnSpec, RulesError> {
        let mismatch = |reason: String| RulesError::DatasetMismatch {
            dataset: self.dataset.clone(),
            model: "cnn",
            reason,
        };
        let image = self
            .dataset
            .parse::<widealign_data::DatasetSpec>()
            .ok()
            .and_then(|d| d.image_shape())
            .ok_or_else(|| {
                mismatch(
                    "the cnn model reads images: digits (8×8×1), fashion-mnist, mnist, kmnist \
                     (28×28×1) or cifar10 (32×32×3)"
                        .into(),
                )
            })?;
        let hwc = [image.height, image.width, image.channels];
        let values: usize = hwc.iter().product();
        if train.input_dim() != values {
            return Err(mismatch(format!(
                "its examples have {} values, a {}×{}×{} image has {values}",
                train.input_dim(),
                hwc[0],
                hwc[1],
                hwc[2]
            )));
        }
        self.cnn_spec(hwc, image.channel_major, train.output_dim())
    }

    /// The convolutional network this run trains on images of shape `image`
    /// (`[H, W, C]`, channel planes first if `channel_major`): `conv_layers` layers of
    /// `channels` channels, zero-initialised biases.
    ///
    /// # Errors
    /// [`RulesError::InvalidConfig`] naming `kernel` when a VALID kernel does not fit a layer;
    /// [`RulesError::Model`] for other spec errors.
    pub fn cnn_spec(
        &self,
        image: [usize; 3],
        channel_major: bool,
        output_dim: usize,
    ) -> Result<CnnSpec, RulesError> {
        let spec = CnnSpec::new(
            image,
            vec![self.channels; self.conv_layers],
            output_dim,
            self.activation,
        )
        .with_layout(if channel_major {
            ImageLayout::Chw
        } else {
            ImageLayout::Hwc
        })
        .with_kernel(self.kernel)
        .with_stride(self.stride)
        .with_padding(self.padding)
        .with_readout(self.readout)
        .with_norm(self.norm)
        .with_param(self.parameterization())
        .with_bias_init(BiasInit::Zero);
        match spec.validate() {
            Err(widealign_models::ModelError::InvalidSpec { field, reason })
                if field == "kernel" =>
            {
                Err(RulesError::InvalidConfig {
                    field: "kernel",
                    reason,
                })
            }
            other => other.map(|()| spec).map_err(RulesError::from),
        }
    }
}

impl TrainConfig {
    /// Parameters of the network this run trains on data of shape `d` (as `f64`: widths whose
    /// products overflow an integer still give a number).
    pub fn param_count(&self, d: &DataShape) -> f64 {
        let (i, w, o) = (d.input_dim as f64, self.width as f64, d.output_dim as f64);
        match self.model {
            ModelKind::Mlp => {
                let hidden = (self.depth as f64 - 1.0).max(0.0);
                i * w + w + hidden * (w * w + w) + w * o + o
            }
            ModelKind::Rnn => i * w + w * w + 2.0 * w + o * w + o,
            ModelKind::Cnn => {
                let (k2, c) = ((self.kernel * self.kernel) as f64, self.channels as f64);
                let c_in = d.image.map_or(1.0, |[_, _, ch]| ch as f64);
                let layers = self.conv_layers as f64;
                let conv = c * k2 * c_in + c + (layers - 1.0).max(0.0) * (c * k2 * c + c);
                let n_r = match self.readout {
                    CnnReadout::Gap => c,
                    CnnReadout::Flatten => c * self.positions(d),
                };
                conv + n_r * o + o
            }
        }
    }

    /// Spatial positions of a CNN feature map on data of shape `d` (an upper bound: stride 1,
    /// SAME padding).
    fn positions(&self, d: &DataShape) -> f64 {
        d.image
            .map_or(d.input_dim as f64, |[h, w, _]| (h * w) as f64)
    }

    /// The peak memory of this run beyond the loaded dataset, by part (`f32` values): the
    /// network, its update buffers, the frozen initial network (Align rules), fixed feedback
    /// (fa, dfa), Adam's moments, the per-batch forward traces (live and frozen), the
    /// frozen-trace cache (up to [`crate::FROZEN_CACHE_BUDGET`]) and, with `checkpointing`,
    /// the copies written to a checkpoint. An estimate (within a small factor), for refusing
    /// what cannot fit before allocating ([`widealign_tensor::memory`]).
    pub fn memory_estimate(&self, d: &DataShape, checkpointing: bool) -> Estimate {
        const F32: f64 = 4.0;
        let p = self.param_count(d) * F32;
        let w = self.width as f64;
        let mut e = Estimate::new(format!(
            "train ({} {}, width {}{}, batch {})",
            self.model,
            self.rule,
            self.width,
            match self.model {
                ModelKind::Mlp => format!(", depth {}", self.depth),
                ModelKind::Rnn => String::new(),
                ModelKind::Cnn => format!(", {} conv layers", self.conv_layers),
            },
            self.batch_size
        ));
        e.add("parameters", p).add("updates and buffers", p);
        // hidden units per example (all layers; per step for the RNN)
        let hidden = match self.model {
            ModelKind::Mlp => w * self.depth.max(1) as f64,
            ModelKind::Rnn => w,
            ModelKind::Cnn => {
                self.channels as f64 * self.positions(d) * self.conv_layers.max(1) as f64
            }
        };
        let frozen = self.rule.uses_frozen_network();
        if frozen {
            e.add("frozen initial network", p);
        }
        match self.rule.recipe().feedback {
            crate::FeedbackSource::RandomWeights => {
                e.add("fixed feedback weights", p);
            }
            crate::FeedbackSource::DirectRandom => {
                e.add(
                    "direct feedback matrices",
                    hidden * d.output_dim as f64 * F32,
                );
            }
            _ => {}
        }
        let adam = self.optimizer == OptimizerChoice::Adam;
        if adam {
            e.add("Adam moments", 2.0 * p);
        }
        // activity-shaped values per example: pre- and post-activation of every hidden unit
        let per_step = match self.model {
            ModelKind::Rnn => d.steps.unwrap_or(1) as f64,
            ModelKind::Mlp | ModelKind::Cnn => 1.0,
        };
        let units = hidden + d.output_dim as f64;
        let rows = (self.batch_size.min(d.n_train.max(1)) as f64).max(512.0);
        let traces = if frozen { 2.0 } else { 1.0 };
        e.add(
            "forward traces",
            rows * units * per_step * 2.0 * traces * F32,
        );
        if self.rule.uses_frozen_trace() {
            let cache = d.n_train as f64 * hidden * 2.0 * F32;
            if cache <= crate::FROZEN_CACHE_BUDGET as f64 {
                e.add("frozen-trace cache", cache);
            }
        }
        if checkpointing {
            e.add("checkpoint copies", if adam { 3.0 * p } else { p });
        }
        e
    }
}

/// Reads a number that serde_json wrote as `null` (it writes NaN and ±∞ that way) back as NaN.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One row of the training history. Epoch 0 is the evaluation at initialisation.
///
/// Non-finite losses serialise as `null` and read back as NaN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0 for the initial evaluation, then 1..=epochs.
    pub epoch: usize,
    /// Epoch 0: the loss on the whole training set at initialisation. Epoch `e ≥ 1`: the mean
    /// of the mini-batch losses during epoch `e` (weighted by batch size).
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_loss: f64,
    /// Loss on the test split after the epoch.
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_loss: f64,
    /// Test accuracy after the epoch (classification only).
    pub test_accuracy: Option<f64>,
    /// Wall-clock seconds since the start of training (after data and rule setup).
    #[serde(default)]
    pub seconds: f64,
}

/// The outcome of one training run: what `widealign train --json` prints.
///
/// A diverged run is a result: `diverged` is true, `diverged_epoch` names the epoch in which a
/// non-finite loss or a loss above `1e6 ×` the initial one appeared, and the metrics are those of
/// the last completed epoch (never NaN, unless the initial evaluation already was; non-finite
/// numbers serialise as `null` and read back as NaN).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainResult {
    /// `mlp` or `rnn`.
    pub model: ModelKind,
    /// The dataset's name.
    pub dataset: String,
    /// The rule.
    pub rule: RuleKind,
    /// Hidden width (the channel count for the CNN).
    pub width: usize,
    /// Hidden layers (1 for the RNN, the convolution layers for the CNN).
    pub depth: usize,
    /// The seed.
    pub seed: u64,
    /// Epochs asked for.
    pub epochs: usize,
    /// Epochs completed (fewer than `epochs` if the run diverged).
    pub epochs_completed: usize,
    /// Training examples used.
    #[serde(default)]
    pub train_examples: usize,
    /// Optimisation steps taken.
    #[serde(default)]
    pub steps: usize,
    /// Training loss of the last completed epoch (see [`EpochRecord::train_loss`]).
    #[serde(deserialize_with = "f64_or_nan")]
    pub train_loss: f64,
    /// Test loss after the last completed epoch.
    #[serde(deserialize_with = "f64_or_nan")]
    pub test_loss: f64,
    /// Test accuracy after the last completed epoch (classification only).
    pub test_accuracy: Option<f64>,
    /// Lowest test loss over the history (including the initial evaluation).
    #[serde(deserialize_with = "f64_or_nan")]
    pub best_test_loss: f64,
    /// Highest test accuracy over the history (classification only).
    pub best_test_accuracy: Option<f64>,
    /// Whether training stopped because the loss blew up.
    pub diverged: bool,
    /// The epoch (1-based) in which divergence was detected.
    pub diverged_epoch: Option<usize>,
    /// Wall-clock seconds of training and evaluation.
    pub seconds: f64,
    /// Per-epoch history, epoch 0 first.
    pub history: Vec<EpochRecord>,
}

impl TrainResult {
    /// The epoch of the lowest finite test loss in the history (the first one on ties; 0, the
    /// initial evaluation, when no loss is finite).
    pub fn best_epoch(&self) -> usize {
        self.history
            .iter()
            .filter(|e| e.test_loss.is_finite())
            .fold((0, f64::INFINITY), |best, e| {
                if e.test_loss < best.1 {
                    (e.epoch, e.test_loss)
                } else {
                    best
                }
            })
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name()`, `Display`, `FromStr` and the serde form spell every value the same way.
    fn round_trips<T>(all: &[T], name: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + fmt::Debug + fmt::Display + FromStr + Serialize,
    {
        for &v in all {
            assert_eq!(v.to_string(), name(v));
            assert_eq!(name(v).parse::<T>().ok(), Some(v));
            assert_eq!(serde_json::to_value(v).unwrap(), name(v));
        }
        assert!("nope".parse::<T>().is_err());
    }

    #[test]
    fn memory_estimates_count_parameters_and_refuse_the_impossible() {
        let d = DataShape {
            input_dim: 784,
            output_dim: 10,
            n_train: 60_000,
            steps: None,
            image: None,
        };
        let small = TrainConfig::default();
        // 784·1024 + 1024 + 1024·1024 + 1024 + 1024·10 + 10 parameters
        assert_eq!(small.param_count(&d), 1_863_690.0);
        assert!(small
            .memory_estimate(&d, false)
            .check_against(1 << 30)
            .is_ok());
        let huge = TrainConfig {
            width: 10_000_000,
            ..TrainConfig::default()
        };
        let e = huge.memory_estimate(&d, false);
        let err = e.check_against(24 << 30).unwrap_err();
        assert_eq!(err.largest.0, "parameters");
        assert!(err.largest.1 >= 4e14, "{err}");
        assert!(
            err.to_string()
                .starts_with("train (mlp bp, width 10000000, depth 2, batch 100) needs about"),
            "{err}"
        );
        let rnn = TrainConfig {
            model: ModelKind::Rnn,
            rule: RuleKind::AlignZero,
            optimizer: OptimizerChoice::Adam,
            width: 100,
            ..TrainConfig::default()
        };
        let d = DataShape {
            input_dim: 2,
            output_dim: 1,
            n_train: 300,
            steps: Some(100),
            image: None,
        };
        assert_eq!(rnn.param_count(&d), 200.0 + 10_000.0 + 200.0 + 100.0 + 1.0);
        let e = rnn.memory_estimate(&d, true);
        let parts: Vec<&str> = e.parts().iter().map(|(n, _)| n.as_str()).collect();
        for part in [
            "frozen initial network",
            "Adam moments",
            "frozen-trace cache",
            "checkpoint copies",
        ] {
            assert!(parts.contains(&part), "{parts:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        round_trips(&ModelKind::ALL, ModelKind::name);
        round_trips(&ParamKind::ALL, ParamKind::name);
        round_trips(&OptimizerChoice::ALL, OptimizerChoice::name);
        let err = "SGD".parse::<OptimizerChoice>().unwrap_err().to_string();
        assert_eq!(
            err, "unknown optimiser `SGD` (expected one of: sgd, adam)",
            "{err}"
        );
    }

    #[test]
    fn cache_frozen_is_not_serialised_and_unknown_keys_are_rejected() {
        let c = TrainConfig {
            cache_frozen: false,
            ..TrainConfig::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("cache_frozen"), "{json}");
        let back: TrainConfig = serde_json::from_str(&json).unwrap();
        assert!(back.cache_frozen, "a config read back caches by default");
        for bad in [r#"{"widht": 5}"#, r#"{"cache_frozen": false}"#] {
            let e = serde_json::from_str::<TrainConfig>(bad).unwrap_err();
            assert!(e.to_string().starts_with("unknown field"), "{e}");
        }
        let c: TrainConfig = serde_json::from_str(r#"{"lr": 5}"#).unwrap();
        assert_eq!(c.lr, 5.0);
    }

    fn epoch(epoch: usize, test_loss: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: test_loss,
            test_loss,
            test_accuracy: Some(0.5),
            seconds: 0.0,
        }
    }

    fn result(history: Vec<EpochRecord>) -> TrainResult {
        TrainResult {
            model: ModelKind::Mlp,
            dataset: "digits".into(),
            rule: RuleKind::Bp,
            width: 8,
            depth: 1,
            seed: 0,
            epochs: history.len(),
            epochs_completed: history.len().saturating_sub(1),
            train_examples: 10,
            steps: 1,
            train_loss: f64::NAN,
            test_loss: f64::NAN,
            test_accuracy: None,
            best_test_loss: f64::INFINITY,
            best_test_accuracy: None,
            diverged: true,
            diverged_epoch: Some(0),
            seconds: 0.0,
            history,
        }
    }

    #[test]
    fn best_epoch_is_the_first_lowest_finite_loss() {
        let r = result(vec![
            epoch(0, 0.5),
            epoch(1, 0.3),
            epoch(2, 0.3),
            epoch(3, 0.4),
        ]);
        assert_eq!(r.best_epoch(), 1);
        let r = result(vec![epoch(0, 0.5), epoch(1, f64::NAN)]);
        assert_eq!(r.best_epoch(), 0);
        assert_eq!(result(vec![epoch(0, f64::NAN)]).best_epoch(), 0);
    }

    #[test]
    fn non_finite_numbers_read_back_as_nan() {
        let r = result(vec![epoch(0, f64::NAN)]);
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains("NaN") && json.contains("\"test_loss\":null"),
            "{json}"
        );
        let back: TrainResult = serde_json::from_str(&json).unwrap();
        assert!(back.test_loss.is_nan() && back.train_loss.is_nan());
        assert!(back.best_test_loss.is_nan(), "∞ is written as null too");
        assert!(back.history[0].test_loss.is_nan());
    }
}
