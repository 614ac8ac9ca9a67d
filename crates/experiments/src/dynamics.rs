//! The dynamics experiment: full-batch gradient descent at several widths against the
//! closed-form layerwise predictions of docs/theory.md §4 (`widealign_ntk::experiment`), on a
//! dataset loaded by name: an MLP on a dataset of feature vectors (§4.4), or an RNN on a sequence
//! task (§4.5; by default the sequence teacher–student task `teacher-seq`,
//! [`DEFAULT_RNN_DATASET`]).
//!
//! ```
//! use widealign_experiments::dynamics::{run_dynamics, DynamicsParams};
//! use widealign_experiments::Trainer;
//! use widealign_rules::TrainConfig;
//! use widealign_tensor::Activation;
//! let p = DynamicsParams {
//!     cfg: TrainConfig { dataset: "teacher".into(), train_size: Some(16), depth: 1,
//!                        activation: Activation::Erf, lr: 0.1, ..TrainConfig::default() },
//!     widths: vec![32, 128],
//!     steps: 10,
//! };
//! let r = run_dynamics(&p, &mut Trainer::new()).unwrap();
//! assert_eq!(r.widths, [32, 128]);
//! assert_eq!(r.errors.function.len(), 2);
//! assert_eq!(r.layers.len(), 2); // one entry per weight matrix
//!
//! // the recurrent network on the sequence teacher–student task
//! let p = DynamicsParams {
//!     cfg: TrainConfig { model: widealign_rules::ModelKind::Rnn, dataset: "teacher-seq".into(),
//!                        train_size: Some(8), activation: Activation::Erf, lr: 0.5,
//!                        ..TrainConfig::default() },
//!     widths: vec![32, 128],
//!     steps: 10,
//! };
//! let r = run_dynamics(&p, &mut Trainer::new()).unwrap();
//! let names: Vec<&str> = r.layers.iter().map(|l| l.name.as_str()).collect();
//! assert_eq!(names, ["w_in", "w_rec", "w_out"]);
//! ```

use widealign_ntk::experiment::{
    dynamics_experiment, rnn_dynamics_experiment, DynamicsConfig, DynamicsReport, RegressionData,
    SequenceData,
};
use widealign_rules::{ModelKind, OptimizerChoice, ParamKind, TrainConfig};
use widealign_tensor::memory::Estimate;
use widealign_tensor::Mat;

use crate::{ExperimentError, Trainer};

/// Test points at which the function prediction is checked (the first ones of the test split).
pub const DYNAMICS_TEST_POINTS: usize = 256;

/// Test sequences at which the RNN's function prediction is checked, at every step (the first
/// ones of the test split).
pub const DYNAMICS_TEST_SEQUENCES: usize = 64;

/// The dataset of `widealign dynamics --model rnn` when none is named: the sequence
/// teacher–student task (32 training sequences of 6 steps, 4 inputs per step).
pub const DEFAULT_RNN_DATASET: &str = "teacher-seq";

/// The learning rate of `widealign dynamics --model rnn` when none is given: below the largest
/// stable rate of the RNN kernel on [`DEFAULT_RNN_DATASET`] (0.87 for erf, `s_w = 1`), the loss
/// being summed over the 6 time steps.
pub const DEFAULT_RNN_LR: f64 = 0.25;

/// Fails unless the settings are those the theory describes for any model: the NTK
/// parameterisation and plain gradient descent. `what` names the experiment.
pub(crate) fn require_ntk_sgd(
    param: ParamKind,
    optimizer: OptimizerChoice,
    what: &str,
) -> Result<(), ExperimentError> {
    if param != ParamKind::Ntk {
        return Err(ExperimentError::setting(
            "param",
            format!("{what} needs the NTK parameterisation"),
        ));
    }
    if optimizer != OptimizerChoice::Sgd {
        return Err(ExperimentError::setting(
            "optimizer",
            format!("{what} compares with gradient descent; use sgd"),
        ));
    }
    Ok(())
}

/// The settings of one dynamics experiment.
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicsParams {
    /// Dataset (a regression or classification dataset of feature vectors, e.g. `teacher`),
    /// `train_size`, `depth`, `activation`, `w_std`, `b_std`, `lr` and `seed`; width, rule,
    /// epochs and batch size are not used.
    pub cfg: TrainConfig,
    /// Widths to simulate.
    pub widths: Vec<usize>,
    /// Full-batch gradient-descent steps.
    pub steps: u64,
}

/// Runs the dynamics experiment: full-batch GD at every width against the closed form, for the
/// MLP (feature-vector datasets) or the RNN (sequence tasks).
///
/// # Errors
/// [`ExperimentError::InvalidSetting`] for a parameterisation or optimiser the theory does not
/// describe, zero steps, or a dataset of the wrong kind for the model; dataset errors; theory
/// errors such as an unstable learning rate ([`ExperimentError::Ntk`]).
pub fn run_dynamics(
    p: &DynamicsParams,
    trainer: &mut Trainer,
) -> Result<DynamicsReport, ExperimentError> {
    let c = &p.cfg;
    require_ntk_sgd(c.param, c.optimizer, "dynamics")?;
    if p.steps == 0 {
        return Err(ExperimentError::setting("steps", "must be at least 1"));
    }
    let data = trainer.dataset(c)?;
    // the finite networks train in f64 (twice the f32 estimate) beside the n×n kernels
    let mut estimate = Estimate::new(format!(
        "dynamics (widths up to {}, depth {})",
        p.widths.iter().max().unwrap_or(&0),
        c.depth
    ));
    for part in c
        .memory_estimate(&crate::memory::shape_of(&data), false)
        .parts()
    {
        estimate.add(part.0.clone(), 2.0 * part.1);
    }
    let n = data.train.len() as f64;
    estimate.add(
        "kernel matrices",
        (c.depth as f64 + 2.0) * 2.0 * n * n * 8.0,
    );
    crate::memory::check(&estimate)?;
    if c.model == ModelKind::Rnn {
        let (Some(train), Some(test)) = (data.train.as_sequences(), data.test.as_sequences())
        else {
            return Err(ExperimentError::setting(
                "dataset",
                format!(
                    "{} is not a sequence task; dynamics --model rnn needs one (e.g. {DEFAULT_RNN_DATASET})",
                    c.dataset
                ),
            ));
        };
        let (Some(x0), Some(y0)) = (train.x.first(), train.y.first()) else {
            return Err(ExperimentError::setting(
                "dataset",
                format!("{} has sequences of no time steps", c.dataset),
            ));
        };
        let p_test = test.len().min(DYNAMICS_TEST_SEQUENCES);
        let f64s = |xs: &[Mat<f32>], rows: usize| -> Vec<Mat<f64>> {
            xs.iter()
                .map(|x| x.rows(0, rows).into_owned().map(f64::from))
                .collect()
        };
        let seq = SequenceData {
            x_train: f64s(&train.x, train.len()),
            y_train: f64s(&train.y, train.len()),
            x_test: f64s(&test.x, p_test),
        };
        let spec = c.rnn_spec(x0.ncols(), y0.ncols())?;
        let cfg = DynamicsConfig::new(spec, p.widths.clone(), p.steps, c.lr, c.seed);
        return Ok(rnn_dynamics_experiment(&cfg, &seq)?);
    }
    let (Some(train), Some(test)) = (data.train.as_tabular(), data.test.as_tabular()) else {
        return Err(ExperimentError::setting(
            "dataset",
            format!(
                "{} is a sequence task; dynamics --model mlp needs inputs and targets per example \
                 (or use --model rnn)",
                c.dataset
            ),
        ));
    };
    let p_test = test.len().min(DYNAMICS_TEST_POINTS);
    let reg = RegressionData {
        x_train: train.x.map(f64::from),
        y_train: train.y.map(f64::from),
        x_test: test.x.rows(0, p_test).into_owned().map(f64::from),
    };
    let spec = c.mlp_spec(reg.x_train.ncols(), reg.y_train.ncols())?;
    let cfg = DynamicsConfig::new(spec, p.widths.clone(), p.steps, c.lr, c.seed);
    Ok(dynamics_experiment(&cfg, &reg)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_outside_the_theory_are_refused() {
        let base = DynamicsParams {
            cfg: TrainConfig {
                dataset: "teacher".into(),
                train_size: Some(8),
                ..TrainConfig::default()
            },
            widths: vec![8],
            steps: 2,
        };
        let setting = |p: DynamicsParams| match run_dynamics(&p, &mut Trainer::new()) {
            Err(ExperimentError::InvalidSetting { setting, .. }) => setting,
            other => panic!("{other:?}"),
        };
        let with = |f: fn(&mut DynamicsParams)| {
            let mut p = base.clone();
            f(&mut p);
            p
        };
        // the RNN needs a sequence task, the MLP a dataset of feature vectors
        assert_eq!(setting(with(|p| p.cfg.model = ModelKind::Rnn)), "dataset");
        assert_eq!(
            setting(with(|p| p.cfg.param = ParamKind::Standard)),
            "param"
        );
        assert_eq!(
            setting(with(|p| p.cfg.optimizer = OptimizerChoice::Adam)),
            "optimizer"
        );
        assert_eq!(setting(with(|p| p.steps = 0)), "steps");
        assert_eq!(setting(with(|p| p.cfg.dataset = "add".into())), "dataset");
    }
}
