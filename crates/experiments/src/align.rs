//! The alignment experiment: train an MLP, an RNN or a CNN and measure, per weight matrix, how
//! well its weight change aligns with the change the theory predicts.
//!
//! One run of the rules crate's training loop with the NTK crate's
//! [`ShadowAccumulator`] hooked into every step: the accumulator adds up the Align-zero update
//! `−lr · Σ_i d̂^l_i (a^{l−1}_{0,i})ᵀ` (frozen pathway and activities, the live error of the
//! same batch) without applying it. After training, [`align_layers`] compares each layer's
//! actual change `ΔW^l = W^l − W^l_0` with that prediction: the alignment score
//! `cos(ΔWᵀΔW, ΔW_refᵀΔW_ref)`, its probe estimate, the same score for `ΔW` with shuffled
//! entries and for a random matrix (controls), and the fraction of `‖ΔW‖²` in the span of the
//! layer's initial training activities. For the RNN the same is done through the model-generic
//! core for `W_in`, `W_rec` and `W_out` (the Align-zero update summed over time steps; the
//! activities stacked over sequences and time steps: inputs `X_t`, states `R_{t−1}`, states
//! `R_t`). For the CNN the matrices are the kernels `K^l` (`C_l × k·k·C_{l−1}`) and the readout:
//! the predicted kernel update is `−lr · m_l · Σ_{batches} D̂^lᵀ · patches(A_0^{l−1})`, the
//! frozen network's signals against the im2col patches of its own input maps
//! (docs/theory.md §5.3), and the input span is that of the initial patches.
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

use widealign_models::{Cnn, Mlp, Rnn};
use widealign_ntk::align::{
    align_layers, AlignModel, AlignOptions, LayerAlignment, ShadowAccumulator,
};
use widealign_rules::{self as rules, ModelKind, TrainConfig, TrainResult};
use widealign_tensor::Mat;

use crate::dynamics::require_ntk_sgd;
use crate::trainer::Observer;
use crate::{ExperimentError, Trainer};

/// Gaussian probes of the probe estimate of the alignment score.
pub const PROBES: usize = 100;

/// One alignment run: the training result and the per-matrix alignment.
#[derive(Clone, Debug, PartialEq)]
pub struct AlignRun {
    /// The training run's metrics.
    pub result: TrainResult,
    /// Per-matrix alignment, in the order of [`AlignModel::weight_matrices`] (layer 1 first for
    /// the MLP; `W_in`, `W_rec`, `W_out` for the RNN); every number NaN when the run diverged.
    pub layers: Vec<LayerAlignment>,
}

/// Checks that the alignment run `cfg` fits in the available memory: the training run plus
/// the shadow accumulator and the initial network it keeps (call it for every width before
/// the first run).
///
/// # Errors
/// [`ExperimentError::TooBig`] when it does not fit; dataset errors.
pub fn check_memory(cfg: &TrainConfig, trainer: &mut Trainer) -> Result<(), ExperimentError> {
    let data = trainer.dataset(cfg)?;
    let mut estimate = cfg.memory_estimate(&crate::memory::shape_of(&data), false);
    let params = estimate.parts()[0].1;
    estimate.add("shadow accumulator and initial network", 2.0 * params);
    crate::memory::check(&estimate)
}

/// Trains `cfg` with the shadow Align-zero accumulator hooked in and measures the alignment of
/// every weight matrix ([`PROBES`] probes, seeded with the run's seed). An MLP on a dataset of
/// feature vectors, or an RNN on a sequence task (the shadow then reads the frozen network's
/// trace from a cache over the training set, and the input-span fractions use the initial
/// activities stacked over sequences and time steps), or a CNN on an image dataset (the
/// kernels and the readout; spans of the initial im2col patches).
///
/// # Errors
/// [`ExperimentError::InvalidSetting`] unless `cfg` is in the NTK parameterisation, trained
/// with SGD, on a dataset that fits the model; [`ExperimentError::Interrupted`] when the
/// observer asks to stop; dataset, training and theory errors.
pub fn align_run(
    cfg: &TrainConfig,
    trainer: &mut Trainer,
    observer: &mut Observer<'_>,
) -> Result<AlignRun, ExperimentError> {
    require_ntk_sgd(cfg.param, cfg.optimizer, "align")?;
    check_memory(cfg, trainer)?;
    let data = trainer.dataset(cfg)?;
    match cfg.model {
        ModelKind::Mlp | ModelKind::Cnn => {
            let Some(train) = data.train.as_tabular() else {
                return Err(ExperimentError::setting(
                    "dataset",
                    format!(
                        "{} is a sequence task; align --model {} needs {}",
                        cfg.dataset,
                        cfg.model,
                        if cfg.model == ModelKind::Cnn {
                            "an image dataset"
                        } else {
                            "a dataset of feature vectors"
                        }
                    ),
                ));
            };
            if cfg.model == ModelKind::Mlp {
                let spec = cfg.mlp_spec(train.input_dim(), train.output_dim())?;
                align_tabular(
                    cfg,
                    &data,
                    observer,
                    Mlp::new(&spec, cfg.seed)?,
                    &train.x,
                    |t| match t {
                        rules::Trained::Mlp(m) => Some(m),
                        rules::Trained::Rnn(_) | rules::Trained::Cnn(_) => None,
                    },
                )
            } else {
                let spec = cfg.cnn_spec_for(train)?;
                align_tabular(
                    cfg,
                    &data,
                    observer,
                    Cnn::new(&spec, cfg.seed)?,
                    &train.x,
                    |t| match t {
                        rules::Trained::Cnn(m) => Some(m),
                        rules::Trained::Mlp(_) | rules::Trained::Rnn(_) => None,
                    },
                )
            }
        }
        ModelKind::Rnn => {
            let Some(train) = data.train.as_sequences() else {
                return Err(ExperimentError::setting(
                    "dataset",
                    format!(
                        "{} is not a sequence task; align --model rnn needs one (e.g. add)",
                        cfg.dataset
                    ),
                ));
            };
            let (input_dim, output_dim) = match (train.x.first(), train.y.first()) {
                (Some(x), Some(y)) => (x.ncols(), y.ncols()),
                _ => {
                    return Err(ExperimentError::setting(
                        "dataset",
                        format!("{} has sequences of no time steps", cfg.dataset),
                    ))
                }
            };
            let spec = cfg.rnn_spec(input_dim, output_dim)?;
            let initial = Rnn::<f32>::new(&spec, cfg.seed)?;
            let mut shadow = ShadowAccumulator::new(&initial);
            shadow.cache_training_set(&train.x)?;
            align_model(
                cfg,
                &data,
                observer,
                shadow,
                &train.x,
                |shadow, v| match v.batch {
                    rules::StepBatch::Rnn { xs, errs } => {
                        shadow.observe_step(xs, Some(v.rows), errs, v.lr as f32)
                    }
                    rules::StepBatch::Mlp { .. } | rules::StepBatch::Cnn { .. } => Ok(()),
                },
                |t| match t {
                    rules::Trained::Rnn(m) => Some(m),
                    rules::Trained::Mlp(_) | rules::Trained::Cnn(_) => None,
                },
            )
        }
    }
}

/// [`align_model`] for a model that reads one example per row (the MLP on feature vectors, the
/// CNN on images): the shadow observes every step's batch and live error.
fn align_tabular<M>(
    cfg: &TrainConfig,
    data: &widealign_data::Dataset,
    observer: &mut Observer<'_>,
    initial: M,
    train_x: &Mat<f32>,
    trained_model: impl FnOnce(rules::Trained) -> Option<M>,
) -> Result<AlignRun, ExperimentError>
where
    M: AlignModel<Scalar = f32, Input = Mat<f32>, Error = Mat<f32>>,
{
    align_model(
        cfg,
        data,
        observer,
        ShadowAccumulator::new(&initial),
        train_x,
        |shadow, v| match v.batch {
            rules::StepBatch::Mlp { x, err } | rules::StepBatch::Cnn { x, err } => {
                shadow.observe_step(x, None, err, v.lr as f32)
            }
            rules::StepBatch::Rnn { .. } => Ok(()),
        },
        trained_model,
    )
}

/// The model-generic part of [`align_run`]: train with `observe` as the per-step hook, take the
/// trained network out with `trained_model`, and measure.
fn align_model<M: AlignModel<Scalar = f32>>(
    cfg: &TrainConfig,
    data: &widealign_data::Dataset,
    observer: &mut Observer<'_>,
    mut shadow: ShadowAccumulator<M>,
    train_inputs: &M::Input,
    observe: impl Fn(
        &mut ShadowAccumulator<M>,
        &rules::StepView<'_>,
    ) -> Result<(), widealign_ntk::NtkError>,
    trained_model: impl FnOnce(rules::Trained) -> Option<M>,
) -> Result<AlignRun, ExperimentError> {
    let mut hook_error = None;
    let halt = AtomicBool::new(false);
    let (result, trained) = {
        let hook = |v: &rules::StepView<'_>| {
            if let Err(e) = observe(&mut shadow, v) {
                hook_error.get_or_insert(e);
            }
        };
        let progress = |p: &rules::Progress<'_>| {
            if !observer(p) {
                halt.store(true, Ordering::SeqCst);
            }
        };
        rules::train_model(
            cfg,
            data,
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
    let Some(trained) = trained_model(trained) else {
        return Err(ExperimentError::Internal(format!(
            "the alignment run did not train the {} it was given",
            M::NAME
        )));
    };
    let initial = shadow.initial();
    let layers = if result.diverged {
        LayerAlignment::undefined(initial)
    } else {
        align_layers(
            initial,
            &trained,
            &shadow,
            train_inputs,
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
    fn rnn_alignment_on_the_add_task_scores_every_matrix_above_its_controls() {
        let cfg = TrainConfig {
            model: ModelKind::Rnn,
            dataset: "add".into(),
            width: 64,
            epochs: 2,
            train_size: Some(40),
            batch_size: 20,
            lr: 0.001,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new();
        let run = align_run(&cfg, &mut trainer, &mut |_| true).unwrap();
        let plain = trainer.run(&cfg, &mut |_| true).unwrap();
        assert_eq!(run.result.test_loss, plain.test_loss);
        assert!(!run.result.diverged);
        let names: Vec<&str> = run.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["w_in", "w_rec", "w_out"]);
        for (i, l) in run.layers.iter().enumerate() {
            assert_eq!(l.layer, i + 1);
            assert!((0.0..=1.0).contains(&l.score), "{l:?}");
            assert!((0.0..=1.0 + 1e-9).contains(&l.input_span), "{l:?}");
        }
        // W_rec and W_out: a few small steps stay near the linearisation, far from the controls
        for l in &run.layers[1..] {
            assert!(l.score > 0.9, "{l:?}");
            assert!(
                l.score > l.shuffled + 0.2 && l.score > l.random + 0.2,
                "{l:?}"
            );
        }
    }

    #[test]
    fn settings_outside_the_theory_are_refused() {
        for (cfg, setting) in [
            (
                TrainConfig {
                    model: ModelKind::Rnn,
                    ..tiny()
                },
                "dataset",
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

    fn cnn(channels: usize, seed: u64) -> TrainConfig {
        TrainConfig {
            model: ModelKind::Cnn,
            channels,
            conv_layers: 2,
            epochs: 1,
            train_size: Some(200),
            batch_size: 50,
            lr: 0.5,
            seed,
            ..TrainConfig::default()
        }
    }

    /// Through the same generic path as the MLP: every kernel and the readout scored, the
    /// hook does not change training, and the score of each kernel rises with the channel
    /// count (4 → 64 channels) for two seeds.
    #[test]
    fn cnn_alignment_rises_with_channels_on_digits() {
        let mut trainer = Trainer::new();
        for seed in [0, 1] {
            let narrow = align_run(&cnn(4, seed), &mut trainer, &mut |_| true).unwrap();
            let wide = align_run(&cnn(64, seed), &mut trainer, &mut |_| true).unwrap();
            let names: Vec<&str> = wide.layers.iter().map(|l| l.name.as_str()).collect();
            assert_eq!(names, ["conv1", "conv2", "readout"]);
            for (n, w) in narrow.layers.iter().zip(&wide.layers) {
                assert!(!wide.result.diverged && !narrow.result.diverged);
                assert!(w.score > w.random && w.score > w.shuffled_trained, "{w:?}");
                // 200 images × 64 pixels span each kernel's 9·C_in patch dimensions
                assert_eq!(w.span_rank, w.span_dim, "{w:?}");
                if w.name != "readout" {
                    assert!(w.score > n.score, "seed {seed}: {n:?} vs {w:?}");
                }
            }
        }
        let plain = trainer.run(&cnn(4, 1), &mut |_| true).unwrap();
        let again = align_run(&cnn(4, 1), &mut trainer, &mut |_| true).unwrap();
        assert_eq!(again.result.test_loss, plain.test_loss);
    }
}
