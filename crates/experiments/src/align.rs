//! The alignment experiment: train an MLP and measure, per layer, how well its weight change
//! aligns with the change the theory predicts.
//!
//! One run of the rules crate's training loop with the NTK crate's
//! [`ShadowAccumulator`] hooked into every step: the accumulator adds up the Align-zero update
//! `−lr · Σ_i d̂^l_i (a^{l−1}_{0,i})ᵀ` (frozen pathway and activities, the live error of the
//! same batch) without applying it. After training, [`align_layers`] compares each layer's
//! actual change `ΔW^l = W^l − W^l_0` with that prediction: the alignment score
//! `cos(ΔWᵀΔW, ΔW_refᵀΔW_ref)`, its probe estimate, the same score for `ΔW` with shuffled
//! entries and for a random matrix (controls), and the fraction of `‖ΔW‖²` in the span of the
//! layer's initial training activities.
//!
//! ```
//! use widealign_experiments::align::align_run;
//! use widealign_experiments::Trainer;
//! use widealign_rules::TrainConfig;
//! let cfg = TrainConfig { width: 32, depth: 1, epochs: 1, train_size: Some(100), batch_size: 50,
//!                         ..TrainConfig::default() };
//! let run = align_run(&cfg, &mut Trainer::new(), &mut |_| true).unwrap();
//! assert_eq!(run.layers.len(), 2);
//! assert!(run.layers.iter().all(|l| (0.0..=1.0 + 1e-9).contains(&l.score)));
//! ```

use std::sync::atomic::{AtomicBool, Ordering};

use widealign_models::Mlp;
use widealign_ntk::align::{align_layers, AlignOptions, LayerAlignment, ShadowAccumulator};
use widealign_rules::{self as rules, TrainConfig, TrainResult};

use crate::dynamics::require_mlp_ntk_sgd;
use crate::trainer::Observer;
use crate::{ExperimentError, Trainer};

/// Gaussian probes of the probe estimate of the alignment score.
pub const PROBES: usize = 100;

/// One alignment run: the training result and the per-layer alignment.
#[derive(Clone, Debug, PartialEq)]
pub struct AlignRun {
    /// The training run's metrics.
    pub result: TrainResult,
    /// Per-layer alignment, layer 1 first (every number NaN when the run diverged).
    pub layers: Vec<LayerAlignment>,
}

/// Trains `cfg` with the shadow Align-zero accumulator hooked in and measures the alignment of
/// every layer ([`PROBES`] probes, seeded with the run's seed).
///
/// # Errors
/// [`ExperimentError::InvalidSetting`] unless `cfg` is an MLP in the NTK parameterisation
/// trained with SGD on a dataset of feature vectors; [`ExperimentError::Interrupted`] when the
/// observer asks to stop; dataset, training and theory errors.
pub fn align_run(
    cfg: &TrainConfig,
    trainer: &mut Trainer,
    observer: &mut Observer<'_>,
) -> Result<AlignRun, ExperimentError> {
    require_mlp_ntk_sgd(cfg.model, cfg.param, cfg.optimizer, "align")?;
    let data = trainer.dataset(cfg)?;
    let Some(train) = data.train.as_tabular() else {
        return Err(ExperimentError::setting(
            "dataset",
            format!(
                "{} is a sequence task; align needs an MLP dataset",
                cfg.dataset
            ),
        ));
    };
    let spec = cfg.mlp_spec(train.input_dim(), train.output_dim())?;
    let initial = Mlp::<f32>::new(&spec, cfg.seed)?;
    let mut shadow = ShadowAccumulator::new(&initial);
    let mut hook_error = None;
    let halt = AtomicBool::new(false);
    let (result, trained) = {
        let hook = |v: &rules::StepView<'_>| {
            if let rules::StepBatch::Mlp { x, err } = v.batch {
                if let Err(e) = shadow.observe(x, err, v.lr as f32) {
                    hook_error.get_or_insert(e);
                }
            }
        };
        let progress = |p: &rules::Progress<'_>| {
            if !observer(p) {
                halt.store(true, Ordering::SeqCst);
            }
        };
        rules::train_model(
            cfg,
            &data,
            rules::Callbacks {
                progress: Some(Box::new(progress)),
                step_hook: Some(Box::new(hook)),
                stop: Some(&halt),
            },
        )?
    };
    if let Some(e) = hook_error {
        return Err(e.into());
    }
    let rules::Trained::Mlp(trained) = trained else {
        return Err(ExperimentError::Internal(
            "the alignment run trained a network that is not an MLP".into(),
        ));
    };
    let layers = if result.diverged {
        (1..=spec.depth())
            .map(|layer| LayerAlignment {
                layer,
                score: f64::NAN,
                probe_score: f64::NAN,
                shuffled: f64::NAN,
                random: f64::NAN,
                input_span: f64::NAN,
            })
            .collect()
    } else {
        align_layers(
            &initial,
            &trained,
            &shadow,
            &train.x,
            &AlignOptions {
                probes: PROBES,
                seed: cfg.seed,
            },
        )?
    };
    Ok(AlignRun { result, layers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_rules::{ModelKind, OptimizerChoice};

    fn tiny() -> TrainConfig {
        TrainConfig {
            width: 16,
            depth: 1,
            epochs: 1,
            train_size: Some(100),
            batch_size: 50,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn alignment_run_matches_a_plain_run_and_scores_every_layer() {
        let mut trainer = Trainer::new();
        let run = align_run(&tiny(), &mut trainer, &mut |_| true).unwrap();
        let plain = trainer.run(&tiny(), &mut |_| true).unwrap();
        // the hook observes, it does not change training
        assert_eq!(run.result.test_loss, plain.test_loss);
        assert_eq!(run.layers.len(), 2);
        for (i, l) in run.layers.iter().enumerate() {
            assert_eq!(l.layer, i + 1);
            assert!(l.score > l.random, "{l:?}");
        }
    }

    #[test]
    fn diverged_runs_have_nan_alignment() {
        let cfg = TrainConfig { lr: 1e6, ..tiny() };
        let run = align_run(&cfg, &mut Trainer::new(), &mut |_| true).unwrap();
        assert!(run.result.diverged);
        assert!(run.layers.iter().all(|l| l.score.is_nan()));
    }

    #[test]
    fn settings_outside_the_theory_are_refused() {
        for (cfg, setting) in [
            (
                TrainConfig {
                    model: ModelKind::Rnn,
                    ..tiny()
                },
                "model",
            ),
            (
                TrainConfig {
                    optimizer: OptimizerChoice::Adam,
                    ..tiny()
                },
                "optimizer",
            ),
            (
                TrainConfig {
                    dataset: "add".into(),
                    ..tiny()
                },
                "dataset",
            ),
        ] {
            match align_run(&cfg, &mut Trainer::new(), &mut |_| true) {
                Err(ExperimentError::InvalidSetting { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{other:?}"),
            }
        }
        let e = align_run(&tiny(), &mut Trainer::new(), &mut |_| false).unwrap_err();
        assert!(matches!(e, ExperimentError::Interrupted));
    }
}
