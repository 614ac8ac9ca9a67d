//! The dynamics experiment: full-batch gradient descent at several widths against the
//! closed-form layerwise predictions of docs/theory.md §4 (`widealign_ntk::experiment`), on a
//! dataset loaded by name.
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
//! ```

use widealign_ntk::experiment::{
    dynamics_experiment, DynamicsConfig, DynamicsReport, RegressionData,
};
use widealign_rules::{ModelKind, OptimizerChoice, ParamKind, TrainConfig};
use widealign_tensor::memory::Estimate;

use crate::{ExperimentError, Trainer};

/// Test points at which the function prediction is checked (the first ones of the test split).
pub const DYNAMICS_TEST_POINTS: usize = 256;

/// Fails unless the settings are those the theory describes: an MLP in the NTK
/// parameterisation trained with plain gradient descent. `what` names the experiment.
pub(crate) fn require_mlp_ntk_sgd(
    model: ModelKind,
    param: ParamKind,
    optimizer: OptimizerChoice,
    what: &str,
) -> Result<(), ExperimentError> {
    if model != ModelKind::Mlp {
        return Err(ExperimentError::setting(
            "model",
            format!("{what} is defined for the MLP only"),
        ));
    }
    require_ntk_sgd(param, optimizer, what)
}

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

/// Runs the dynamics experiment: full-batch GD at every width against the closed form.
///
/// # Errors
/// [`ExperimentError::InvalidSetting`] for a model, parameterisation or optimiser the theory
/// does not describe, zero steps, or a sequence dataset; dataset errors; theory errors such as
/// an unstable learning rate ([`ExperimentError::Ntk`]).
pub fn run_dynamics(
    p: &DynamicsParams,
    trainer: &mut Trainer,
) -> Result<DynamicsReport, ExperimentError> {
    let c = &p.cfg;
    require_mlp_ntk_sgd(c.model, c.param, c.optimizer, "dynamics")?;
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
    let (Some(train), Some(test)) = (data.train.as_tabular(), data.test.as_tabular()) else {
        return Err(ExperimentError::setting(
            "dataset",
            format!(
                "{} is a sequence task; dynamics needs inputs and targets per example",
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
        assert_eq!(setting(with(|p| p.cfg.model = ModelKind::Rnn)), "model");
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
