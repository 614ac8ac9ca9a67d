//! The infinite-width limit of the accuracy-vs-width runs: what the infinite-width network of
//! the same spec, trained by gradient flow on the same MSE and data, predicts on the test set
//! (`widealign_ntk::ensemble`, docs/theory.md §4.3a) — the limit that backprop, and by the
//! paper's result the Align rules, approach as the width grows.
//!
//! One [`LimitSettings`] is one prediction: the network spec and dataset of a group of training
//! runs (depth, activation, `s_w`, `s_b`, NTK parameterisation, zero initial biases — what
//! [`TrainConfig::mlp_spec`] builds, at any width) and the training time, either `t = ∞` or the
//! training runs' own length: `epochs · ⌈N/B⌉` steps of the loop's learning rate on the loss
//! averaged over batch × outputs, i.e. gradient flow for that many steps of size
//! `c = 2·lr/(N·C)`. The training loop takes minibatch SGD steps; each is, in expectation over
//! the batch, one full-batch step of the same size, so this is the comparable time — not the
//! same dynamics (no minibatch noise, continuous time, and the mean over initialisations rather
//! than one network, whose initial function `f_0` is still in its output).
//!
//! The prediction does not depend on the seed (only a training subset drawn with
//! `train_size` does), so a plan computes it once per spec, not once per seed.
//!
//! ```
//! use widealign_experiments::limit::{predict_limit, LimitSettings};
//! use widealign_experiments::Trainer;
//! use widealign_rules::TrainConfig;
//! let runs = TrainConfig { dataset: "digits".into(), train_size: Some(100), epochs: 5,
//!                          ..TrainConfig::default() };
//! let inf = predict_limit(&LimitSettings::infinite(&runs), &mut Trainer::new(), &|_, _| {}).unwrap();
//! let fin = predict_limit(&LimitSettings::at_training_length(&runs), &mut Trainer::new(), &|_, _| {}).unwrap();
//! assert_eq!((inf.n_train, fin.time_steps), (100, Some(5.0)));
//! assert!(inf.test_accuracy.unwrap() > 0.5);
//! ```

use std::time::Instant;

use serde::{Deserialize, Serialize};
use widealign_data::{Dataset, Split};
use widealign_models::accuracy;
use widealign_ntk::analytic::{InfiniteMlp, KernelOptions};
use widealign_ntk::ensemble::{self, EnsembleConfig, KernelKind, Precision, TrainTime};
use widealign_ntk::solve::DEFAULT_TILE;
use widealign_rules::{ModelKind, OptimizerChoice, ParamKind, TrainConfig};
use widealign_tensor::{Activation, Mat};

use crate::{ExperimentError, Trainer};

/// The ridge of the limit predictions, relative to the mean diagonal of the kernel (the default
/// of `widealign predict --diag-reg`).
pub const LIMIT_DIAG_REG: f64 = 1e-4;

/// The settings of one infinite-width prediction; serialised (keys sorted) they are the
/// identity of its results line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitSettings {
    /// Dataset name.
    pub dataset: String,
    /// Training subset size (`None`: the whole training split).
    pub train_size: Option<usize>,
    /// Seed of the training subset (the prediction itself has no randomness).
    pub seed: u64,
    /// Hidden layers.
    pub depth: usize,
    /// Hidden nonlinearity (its name).
    pub activation: String,
    /// Parameterisation (`ntk`; the kernels have no width-independent limit otherwise).
    pub param: ParamKind,
    /// Weight standard deviation `s_w`.
    pub w_std: f64,
    /// Bias standard deviation `s_b`.
    pub b_std: f64,
    /// The training kernel: `"ntk"` (every layer trained) or `"nngp"` (readout only).
    pub kernel: String,
    /// Training time in epochs of batch [`LimitSettings::batch_size`] (`epochs · ⌈N/B⌉` steps);
    /// `None`: `t = ∞`.
    pub epochs: Option<usize>,
    /// Batch size of the training runs (enters only the finite time).
    pub batch_size: usize,
    /// Learning rate of the training runs (enters only the finite time).
    pub lr: f64,
    /// Ridge relative to the mean diagonal (`widealign predict --diag-reg`).
    pub diag_reg: f64,
    /// Storage of the training kernel at `t = ∞` (`"f32"` or `"f64"`; finite times solve in
    /// `f64`).
    pub precision: String,
}

impl LimitSettings {
    /// The `t = ∞` NTK prediction for the runs `runs` (their rule, width and epochs do not
    /// enter), `f32` kernel storage, ridge [`LIMIT_DIAG_REG`].
    pub fn infinite(runs: &TrainConfig) -> Self {
        LimitSettings {
            dataset: runs.dataset.clone(),
            train_size: runs.train_size,
            seed: runs.seed,
            depth: runs.depth,
            activation: runs.activation.name().to_string(),
            param: runs.param,
            w_std: runs.w_std,
            b_std: runs.b_std,
            kernel: KernelKind::Ntk.name().to_string(),
            epochs: None,
            batch_size: runs.batch_size,
            lr: runs.lr,
            diag_reg: LIMIT_DIAG_REG,
            precision: Precision::F32.name().to_string(),
        }
    }

    /// The NTK prediction after as many steps as the runs `runs` take (`epochs · ⌈N/B⌉`).
    pub fn at_training_length(runs: &TrainConfig) -> Self {
        LimitSettings {
            epochs: Some(runs.epochs),
            ..Self::infinite(runs)
        }
    }

    /// Whether the run `cfg` is a finite network of this limit: an MLP of the same spec, on the
    /// same data, trained for this long (any rule, width and seed).
    pub fn describes(&self, cfg: &TrainConfig) -> bool {
        let mut theirs = LimitSettings {
            kernel: self.kernel.clone(),
            diag_reg: self.diag_reg,
            precision: self.precision.clone(),
            ..LimitSettings::infinite(cfg)
        };
        match self.epochs {
            Some(_) => theirs.epochs = Some(cfg.epochs),
            // t = ∞ does not depend on the optimiser's settings
            None => (theirs.lr, theirs.batch_size) = (self.lr, self.batch_size),
        }
        // the seed draws the subset, and there is none without `train_size`
        if self.train_size.is_none() {
            theirs.seed = self.seed;
        }
        cfg.model == ModelKind::Mlp && theirs == *self
    }

    /// The ensemble settings of `widealign predict` with these flags, for `n` training points.
    fn ensemble_config(&self, n: usize) -> Result<EnsembleConfig, ExperimentError> {
        let kernel: KernelKind = self
            .kernel
            .parse()
            .map_err(|e: String| ExperimentError::setting("kernel", e))?;
        let precision: Precision = self
            .precision
            .parse()
            .map_err(|e: String| ExperimentError::setting("precision", e))?;
        Ok(EnsembleConfig {
            kernel,
            time: match self.epochs {
                None => TrainTime::Infinite,
                Some(e) => TrainTime::Steps(training_steps(e, n, self.batch_size) as f64),
            },
            diag_reg: self.diag_reg,
            lr: self.lr,
            precision,
            variance: false,
            tile: DEFAULT_TILE,
            test_block: 256,
            kernel_options: KernelOptions::default(),
        })
    }

    /// The training-run settings that load this prediction's data and build its network (width
    /// 1: the limit does not depend on it).
    fn train_config(&self) -> Result<TrainConfig, ExperimentError> {
        let activation: Activation = self
            .activation
            .parse()
            .map_err(|e| ExperimentError::setting("activation", format!("{e}")))?;
        Ok(TrainConfig {
            model: ModelKind::Mlp,
            dataset: self.dataset.clone(),
            depth: self.depth,
            width: 1,
            activation,
            param: self.param,
            optimizer: OptimizerChoice::Sgd,
            lr: self.lr,
            batch_size: self.batch_size,
            train_size: self.train_size,
            w_std: self.w_std,
            b_std: self.b_std,
            seed: self.seed,
            ..TrainConfig::default()
        })
    }
}

/// Steps of `epochs` epochs of batch `batch` over `n` examples: `epochs · ⌈n/batch⌉` (the
/// training loop's count; the last batch of an epoch may be smaller).
pub fn training_steps(epochs: usize, n: usize, batch: usize) -> u64 {
    epochs as u64 * n.div_ceil(batch.max(1)) as u64
}

/// What one prediction gave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitPrediction {
    /// Training points.
    pub n_train: usize,
    /// Test points.
    pub n_test: usize,
    /// The training time in steps (`None`: `t = ∞`).
    pub time_steps: Option<f64>,
    /// The absolute ridge added to the kernel's diagonal.
    pub ridge: f64,
    /// Test accuracy (classification datasets).
    pub test_accuracy: Option<f64>,
    /// Test MSE, averaged over test points × outputs (the training loop's loss).
    pub test_mse: f64,
    /// `"blocked-cholesky"` (`t = ∞`) or `"eigendecomposition"` (finite `t`).
    pub solver: String,
    /// Peak memory predicted by the memory plan, bytes.
    pub predicted_peak_bytes: u64,
    /// Wall-clock seconds (dataset cached, kernel and solve).
    pub seconds: f64,
}

/// The splits of a dataset of feature vectors as the `f64` matrices of the kernel predictors.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelData {
    /// Training inputs (`N × d`).
    pub x_train: Mat<f64>,
    /// Training targets (`N × C`).
    pub y_train: Mat<f64>,
    /// Test inputs (`M × d`).
    pub x_test: Mat<f64>,
    /// Test targets (`M × C`).
    pub y_test: Mat<f64>,
    /// Test labels (classification datasets).
    pub labels_test: Option<Vec<usize>>,
}

impl KernelData {
    /// The splits of `d`, or `None` for a sequence task.
    pub fn of(d: &Dataset) -> Option<Self> {
        let (Split::Tabular(tr), Split::Tabular(te)) = (&d.train, &d.test) else {
            return None;
        };
        let f = |m: &Mat<f32>| m.map(|v| v as f64);
        Some(KernelData {
            x_train: f(&tr.x),
            y_train: f(&tr.y),
            x_test: f(&te.x),
            y_test: f(&te.y),
            labels_test: te.labels.clone(),
        })
    }

    /// Test MSE (averaged over test points × outputs) and accuracy (with labels) of the
    /// predicted test outputs `mean`.
    ///
    /// # Errors
    /// [`ExperimentError::Model`] if `mean` has not one row per test point.
    pub fn scores(&self, mean: &Mat<f64>) -> Result<(f64, Option<f64>), ExperimentError> {
        let (m, c) = self.y_test.shape();
        if mean.shape() != (m, c) {
            return Err(ExperimentError::Internal(format!(
                "predicted outputs are {:?}, the test targets {:?}",
                mean.shape(),
                (m, c)
            )));
        }
        let mse = (mean - &self.y_test).map(|v| v * v).sum() / (m * c).max(1) as f64;
        let acc = match &self.labels_test {
            Some(l) => Some(accuracy(mean, l)?),
            None => None,
        };
        Ok((mse, acc))
    }
}

/// The prediction of `s` on its dataset (loaded through `trainer`, so the training runs'
/// cached copy is reused), checked against the machine's available memory first.
/// `progress` hears the phases (`kernel`, `factor`, `eigen`, `test`) and their fraction done.
///
/// # Errors
/// [`ExperimentError::InvalidSetting`] for settings outside the theory (a parameterisation other
/// than NTK, an unknown kernel, precision or activation); [`ExperimentError::Ntk`] with
/// `NtkError::TooLarge` (saying what would fit) when the memory plan exceeds `MemAvailable`;
/// dataset errors; [`ExperimentError::BadInput`] for a sequence dataset.
pub fn predict_limit(
    s: &LimitSettings,
    trainer: &mut Trainer,
    progress: &(dyn Fn(&str, f64) + Sync),
) -> Result<LimitPrediction, ExperimentError> {
    let start = Instant::now();
    if s.param != ParamKind::Ntk {
        return Err(ExperimentError::setting(
            "param",
            "the infinite-width limit needs the NTK parameterisation",
        ));
    }
    let cfg = s.train_config()?;
    let data = trainer.dataset(&cfg)?;
    let t = KernelData::of(&data).ok_or_else(|| {
        ExperimentError::BadInput(format!(
            "{}: a sequence task; the infinite-width MLP needs feature vectors",
            data.name
        ))
    })?;
    let (n, m, d, c) = (
        t.x_train.nrows(),
        t.x_test.nrows(),
        t.x_train.ncols(),
        t.y_train.ncols(),
    );
    let ecfg = s.ensemble_config(n)?;
    let budget = widealign_tensor::memory::available_bytes().unwrap_or(u64::MAX);
    let plan = ensemble::check_budget(n, m, d, c, &ecfg, budget)?;
    let net = InfiniteMlp::from_spec(&cfg.mlp_spec(d, c)?)?;
    let p = ensemble::predict(&net, &t.x_train, &t.y_train, &t.x_test, &ecfg, progress)?;
    let (test_mse, test_accuracy) = t.scores(&p.mean)?;
    Ok(LimitPrediction {
        n_train: n,
        n_test: m,
        time_steps: match ecfg.time {
            TrainTime::Infinite => None,
            TrainTime::Steps(s) => Some(s),
        },
        ridge: p.ridge,
        test_accuracy,
        test_mse,
        solver: if ecfg.uses_eigen() {
            "eigendecomposition"
        } else {
            "blocked-cholesky"
        }
        .to_string(),
        predicted_peak_bytes: plan.total(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_rules::RuleKind;

    fn runs() -> TrainConfig {
        TrainConfig {
            dataset: "digits".into(),
            train_size: Some(120),
            epochs: 3,
            batch_size: 50,
            lr: 5.0,
            ..TrainConfig::default()
        }
    }

    /// The prediction is `ensemble::predict` on the runs' data and network (zero initial
    /// biases, as the training loop), at `t = ∞` and at `epochs · ⌈N/B⌉` steps of the runs' lr.
    #[test]
    fn equals_the_ensemble_predictor_on_the_runs_data() {
        let r = runs();
        let mut trainer = Trainer::new();
        let data = trainer.dataset(&r).unwrap();
        let t = KernelData::of(&data).unwrap();
        let net = InfiniteMlp::from_spec(&r.mlp_spec(t.x_train.ncols(), 10).unwrap()).unwrap();
        for (s, time) in [
            (LimitSettings::infinite(&r), TrainTime::Infinite),
            // 120 examples in batches of 50: 3 steps per epoch
            (LimitSettings::at_training_length(&r), TrainTime::Steps(9.0)),
        ] {
            let got = predict_limit(&s, &mut trainer, &|_, _| {}).unwrap();
            let cfg = EnsembleConfig {
                time,
                lr: 5.0,
                diag_reg: LIMIT_DIAG_REG,
                ..EnsembleConfig::default()
            };
            let want = ensemble::predict(&net, &t.x_train, &t.y_train, &t.x_test, &cfg, &|_, _| {})
                .unwrap();
            let (mse, acc) = t.scores(&want.mean).unwrap();
            assert_eq!((got.test_mse, got.test_accuracy), (mse, acc));
            assert_eq!(got.ridge, want.ridge);
            assert_eq!(got.n_train, 120);
        }
    }

    #[test]
    fn settings_describe_the_runs_of_any_rule_width_and_seed() {
        let r = runs();
        let inf = LimitSettings::infinite(&r);
        let fin = LimitSettings::at_training_length(&r);
        let other = TrainConfig {
            rule: RuleKind::AlignZero,
            width: 4096,
            ..r.clone()
        };
        assert!(inf.describes(&other) && fin.describes(&other));
        // the subset is drawn with the seed: another seed is other data
        assert!(!inf.describes(&TrainConfig {
            seed: 3,
            ..r.clone()
        }));
        let full = TrainConfig {
            train_size: None,
            ..r.clone()
        };
        assert!(LimitSettings::infinite(&full).describes(&TrainConfig { seed: 3, ..full }));
        // t = ∞ is the limit of runs of any length, a finite time of runs of that length
        let longer = TrainConfig { epochs: 9, ..r };
        assert!(inf.describes(&longer) && !fin.describes(&longer));
        assert!(!inf.describes(&TrainConfig { depth: 3, ..longer }));
    }

    #[test]
    fn settings_outside_the_theory_are_refused() {
        let mut s = LimitSettings::infinite(&runs());
        s.param = ParamKind::Standard;
        let e = predict_limit(&s, &mut Trainer::new(), &|_, _| {}).unwrap_err();
        assert!(e.to_string().contains("param"), "{e}");
        let mut s = LimitSettings::infinite(&runs());
        s.kernel = "rbf".into();
        let e = predict_limit(&s, &mut Trainer::new(), &|_, _| {}).unwrap_err();
        assert!(e.to_string().contains("kernel"), "{e}");
        let mut s = LimitSettings::infinite(&runs());
        s.dataset = "add".into();
        s.train_size = None;
        let e = predict_limit(&s, &mut Trainer::new(), &|_, _| {}).unwrap_err();
        assert!(e.to_string().contains("sequence"), "{e}");
    }

    #[test]
    fn training_steps_count_the_last_short_batch() {
        assert_eq!(training_steps(40, 1442, 100), 600);
        assert_eq!(training_steps(40, 60_000, 100), 24_000);
        assert_eq!(training_steps(1, 0, 100), 0);
    }
}
