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
//!
//! **Checkpoints.** [`align_widths`] runs one alignment run per width and, with a checkpoint
//! path, saves mid-run checkpoints of the training run in progress (the rules crate's
//! [`widealign_rules::checkpoint`] file) with the shadow's accumulated changes beside the
//! parameters (tensors `shadow.<parameter name>`, row-major) and, in the `align` extension's
//! text, the shadow's step count, the experiment's widths and the exact numbers of the widths
//! already finished. Continuing from it gives the same numbers, bit for bit, as the run that
//! was never stopped.
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

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use widealign_models::safetensors::{SafetensorsFile, Tensor};
use widealign_models::{Cnn, Mlp, ModelError, Rnn};
use widealign_ntk::align::{
    align_layers, AlignModel, AlignOptions, LayerAlignment, ShadowAccumulator,
};
use widealign_rules::checkpoint::Bits;
use widealign_rules::{
    self as rules, CheckpointExtension, Checkpointing, ModelKind, RulesError, TrainConfig,
    TrainResult,
};
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
pub fn check_memory(
    cfg: &TrainConfig,
    trainer: &mut Trainer,
    checkpointing: bool,
) -> Result<(), ExperimentError> {
    let data = trainer.dataset(cfg)?;
    let mut estimate = cfg.memory_estimate(&crate::memory::shape_of(&data), checkpointing);
    let params = estimate.parts()[0].1;
    estimate.add("shadow accumulator and initial network", 2.0 * params);
    if checkpointing {
        estimate.add("the shadow's copy in a checkpoint", params);
    }
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
    let context = Context {
        ckpt: &Checkpointing::default(),
        widths: &[cfg.width],
        done: &[],
    };
    align_checkpointed(cfg, trainer, observer, &context)
}

/// What a checkpointed alignment run saves beside its training state.
struct Context<'a> {
    ckpt: &'a Checkpointing,
    /// The experiment's widths.
    widths: &'a [usize],
    /// The widths finished before this run.
    done: &'a [AlignWidth],
}

/// [`align_run`] saving and resuming checkpoints as `context.ckpt` says.
fn align_checkpointed(
    cfg: &TrainConfig,
    trainer: &mut Trainer,
    observer: &mut Observer<'_>,
    context: &Context<'_>,
) -> Result<AlignRun, ExperimentError> {
    require_ntk_sgd(cfg.param, cfg.optimizer, "align")?;
    check_memory(cfg, trainer, context.ckpt.active())?;
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
                    context,
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
                    context,
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
                context,
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
    context: &Context<'_>,
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
        context,
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
    context: &Context<'_>,
    shadow: ShadowAccumulator<M>,
    train_inputs: &M::Input,
    observe: impl Fn(
        &mut ShadowAccumulator<M>,
        &rules::StepView<'_>,
    ) -> Result<(), widealign_ntk::NtkError>,
    trained_model: impl FnOnce(rules::Trained) -> Option<M>,
) -> Result<AlignRun, ExperimentError> {
    let mut hook_error = None;
    let halt = AtomicBool::new(false);
    let shadow = RefCell::new(shadow);
    let extension = ShadowExtension {
        shadow: &shadow,
        widths: context.widths,
        done: context.done,
    };
    let (result, trained) = {
        let hook = |v: &rules::StepView<'_>| {
            if let Err(e) = observe(&mut shadow.borrow_mut(), v) {
                hook_error.get_or_insert(e);
            }
        };
        let progress = |p: &rules::Progress<'_>| {
            if !observer(p) {
                halt.store(true, Ordering::SeqCst);
            }
        };
        rules::train_checkpointed(
            cfg,
            data,
            rules::Callbacks {
                progress: Some(Box::new(progress)),
                step_hook: Some(Box::new(hook)),
                stop: Some(&halt),
                extension: Some(&extension),
            },
            context.ckpt,
        )?
    };
    let shadow = shadow.into_inner();
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

/// The name of the alignment experiment's [`CheckpointExtension`].
pub const EXTENSION: &str = "align";

/// Prefix of the shadow's tensors in a checkpoint (`shadow.layer1.weight`, ...).
const SHADOW_PREFIX: &str = "shadow.";

/// One width of an alignment experiment ([`align_widths`]): the numbers `widealign align`
/// reports, exactly as a checkpoint keeps them.
#[derive(Clone, Debug, PartialEq)]
pub struct AlignWidth {
    /// The width.
    pub width: usize,
    /// Final test loss of the training run.
    pub test_loss: f64,
    /// Final test accuracy (classification).
    pub test_accuracy: Option<f64>,
    /// Whether the run diverged.
    pub diverged: bool,
    /// The epoch it diverged in.
    pub diverged_epoch: Option<usize>,
    /// Per-matrix alignment ([`AlignRun::layers`]).
    pub layers: Vec<LayerAlignment>,
}

impl From<&AlignRun> for AlignWidth {
    fn from(run: &AlignRun) -> Self {
        AlignWidth {
            width: run.result.width,
            test_loss: run.result.test_loss,
            test_accuracy: run.result.test_accuracy,
            diverged: run.result.diverged,
            diverged_epoch: run.result.diverged_epoch,
            layers: run.layers.clone(),
        }
    }
}

/// [`LayerAlignment`] with exact floats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerBits {
    layer: usize,
    name: String,
    /// score, probe_score, shuffled, random, shuffled_trained, input_span
    values: [Bits; 6],
    span_rank: usize,
    span_dim: usize,
}

/// [`AlignWidth`] with exact floats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WidthBits {
    width: usize,
    test_loss: Bits,
    test_accuracy: Option<Bits>,
    diverged: bool,
    diverged_epoch: Option<usize>,
    layers: Vec<LayerBits>,
}

impl From<&AlignWidth> for WidthBits {
    fn from(w: &AlignWidth) -> Self {
        WidthBits {
            width: w.width,
            test_loss: w.test_loss.into(),
            test_accuracy: w.test_accuracy.map(Bits::from),
            diverged: w.diverged,
            diverged_epoch: w.diverged_epoch,
            layers: w
                .layers
                .iter()
                .map(|l| LayerBits {
                    layer: l.layer,
                    name: l.name.clone(),
                    values: [
                        l.score,
                        l.probe_score,
                        l.shuffled,
                        l.random,
                        l.shuffled_trained,
                        l.input_span,
                    ]
                    .map(Bits::from),
                    span_rank: l.span_rank,
                    span_dim: l.span_dim,
                })
                .collect(),
        }
    }
}

impl From<&WidthBits> for AlignWidth {
    fn from(w: &WidthBits) -> Self {
        AlignWidth {
            width: w.width,
            test_loss: w.test_loss.get(),
            test_accuracy: w.test_accuracy.map(Bits::get),
            diverged: w.diverged,
            diverged_epoch: w.diverged_epoch,
            layers: w
                .layers
                .iter()
                .map(|l| {
                    let [score, probe_score, shuffled, random, shuffled_trained, input_span] =
                        l.values.map(Bits::get);
                    LayerAlignment {
                        layer: l.layer,
                        name: l.name.clone(),
                        score,
                        probe_score,
                        shuffled,
                        random,
                        shuffled_trained,
                        input_span,
                        span_rank: l.span_rank,
                        span_dim: l.span_dim,
                    }
                })
                .collect(),
        }
    }
}

/// The `align` extension's text in a checkpoint (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlignState {
    /// Steps the shadow observed.
    shadow_steps: usize,
    /// The experiment's widths, in order.
    widths: Vec<usize>,
    /// The widths finished before the run in the file, in order.
    done: Vec<WidthBits>,
}

/// The shadow accumulator (shared with the step hook) as a checkpoint extension.
struct ShadowExtension<'a, M: AlignModel> {
    shadow: &'a RefCell<ShadowAccumulator<M>>,
    widths: &'a [usize],
    done: &'a [AlignWidth],
}

fn checkpoint_err(path: &Path, reason: String) -> RulesError {
    RulesError::Model(ModelError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    })
}

impl<M: AlignModel<Scalar = f32>> CheckpointExtension for ShadowExtension<'_, M> {
    fn name(&self) -> &str {
        EXTENSION
    }

    fn save(&self) -> Result<(Vec<Tensor<'static, f32>>, String), RulesError> {
        let shadow = self.shadow.borrow();
        let tensors = shadow
            .initial()
            .param_layout()
            .into_iter()
            .zip(shadow.changes())
            .map(|((name, shape), m)| {
                let t = Tensor::column_major(format!("{SHADOW_PREFIX}{name}"), shape, m.as_slice());
                Tensor {
                    name: t.name,
                    shape: t.shape,
                    values: std::borrow::Cow::Owned(t.values.into_owned()),
                }
            })
            .collect();
        let state = AlignState {
            shadow_steps: shadow.steps(),
            widths: self.widths.to_vec(),
            done: self.done.iter().map(WidthBits::from).collect(),
        };
        // plain structs of numbers and strings: encoding cannot fail
        let text = serde_json::to_string(&state).expect("the alignment state encodes");
        Ok((tensors, text))
    }

    fn restore(&self, file: &SafetensorsFile, state: &str) -> Result<(), RulesError> {
        let path = file.path();
        let state: AlignState = serde_json::from_str(state).map_err(|e| {
            checkpoint_err(path, format!("the alignment state does not parse: {e}"))
        })?;
        let mut shadow = self.shadow.borrow_mut();
        let initial = shadow.initial();
        let mut changes = Vec::new();
        for ((name, shape), (rows, cols)) in initial
            .param_layout()
            .into_iter()
            .zip(initial.param_shapes())
        {
            let v = file.read_column_major::<f32>(&format!("{SHADOW_PREFIX}{name}"), &shape)?;
            changes.push(Mat::from_vec(rows, cols, v));
        }
        shadow
            .restore(changes, state.shadow_steps)
            .map_err(|e| checkpoint_err(path, e.to_string()))
    }
}

/// What [`align_widths`] tells its caller.
#[derive(Clone, Copy, Debug)]
pub enum AlignEvent<'a> {
    /// The training run of a width starts, or continues from the checkpoint (`resumed`).
    Starting {
        /// The run.
        config: &'a TrainConfig,
        /// Whether it continues from the checkpoint.
        resumed: bool,
    },
    /// Progress of the run in progress.
    Progress(&'a rules::Progress<'a>),
    /// A width's alignment is known: measured now, or read from the checkpoint (`restored`).
    Finished {
        /// The numbers.
        width: &'a AlignWidth,
        /// Whether they were read from the checkpoint rather than trained in this session.
        restored: bool,
    },
}

/// The settings (of the width in progress) and the widths of the alignment experiment saved
/// in the checkpoint `path`: what `widealign align --resume PATH` continues when no other flag
/// is given.
///
/// # Errors
/// A checkpoint that cannot be read, is broken or is not an alignment experiment's.
pub fn saved_experiment(path: &Path) -> Result<(TrainConfig, Vec<usize>), ExperimentError> {
    let saved = rules::saved_run(path)?;
    let state = align_state(path, saved.extension)?;
    Ok((saved.config, state.widths))
}

/// The alignment state of a checkpoint's extension.
fn align_state(
    path: &Path,
    extension: Option<(String, String)>,
) -> Result<AlignState, ExperimentError> {
    let bad = |reason: String| ExperimentError::from(checkpoint_err(path, reason));
    let text = match extension {
        Some((name, text)) if name == EXTENSION => text,
        Some((name, _)) => {
            return Err(bad(format!(
                "holds the state of {name:?} beside the run, not an alignment experiment"
            )))
        }
        None => {
            return Err(bad(
                "holds a plain training run, not an alignment experiment (it was written by `widealign train`; continue it with `widealign train --resume`)".into(),
            ))
        }
    };
    serde_json::from_str(&text).map_err(|e| bad(format!("the alignment state does not parse: {e}")))
}

/// The widths and finished widths saved in an alignment checkpoint, after checking that it
/// continues the experiment `base` over `widths`.
fn saved_widths(
    path: &Path,
    base: &TrainConfig,
    widths: &[usize],
) -> Result<Vec<AlignWidth>, ExperimentError> {
    let saved = rules::saved_run(path)?;
    let bad = |reason: String| ExperimentError::from(checkpoint_err(path, reason));
    let state = align_state(path, saved.extension)?;
    let list = |w: &[usize]| w.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    if state.widths != widths {
        return Err(RulesError::CheckpointMismatch {
            field: "widths".into(),
            saved: list(&state.widths),
            requested: list(widths),
        }
        .into());
    }
    let done: Vec<AlignWidth> = state.done.iter().map(AlignWidth::from).collect();
    let consistent = done.len() < widths.len()
        && done.iter().zip(widths).all(|(d, &w)| d.width == w)
        && axis_size(&saved.config) == widths[done.len()];
    if !consistent {
        return Err(bad(format!(
            "its finished widths ({}) and the run in progress (width {}) do not fit its widths ({})",
            list(&done.iter().map(|d| d.width).collect::<Vec<_>>()),
            saved.config.width,
            list(widths)
        )));
    }
    // the finished widths were trained for the saved number of epochs: it may not change
    if !done.is_empty() && saved.config.epochs != base.epochs {
        return Err(ExperimentError::setting(
            "epochs",
            format!(
                "{} differs from the checkpoint's {}: width {} finished with {} epochs, and every width of an alignment experiment trains alike",
                base.epochs, saved.config.epochs, done[0].width, saved.config.epochs
            ),
        ));
    }
    Ok(done)
}

/// The size an alignment experiment varies: the channel count for the CNN, the hidden width
/// otherwise.
pub fn axis_size(cfg: &TrainConfig) -> usize {
    match cfg.model {
        ModelKind::Cnn => cfg.channels,
        ModelKind::Mlp | ModelKind::Rnn => cfg.width,
    }
}

/// `base` at the size `size` of its axis ([`axis_size`]).
pub fn at_axis(base: &TrainConfig, size: usize) -> TrainConfig {
    match base.model {
        ModelKind::Cnn => TrainConfig {
            channels: size,
            ..base.clone()
        },
        ModelKind::Mlp | ModelKind::Rnn => TrainConfig {
            width: size,
            ..base.clone()
        },
    }
}

/// The alignment experiment of `widealign align`: one [`align_run`] of `base` per width of
/// `widths` (per channel count for the CNN, [`axis_size`]), in order. With a checkpoint path (`ckpt.target()`), the run in progress saves
/// checkpoints as `ckpt` says (every `ckpt.every` steps, else once per epoch; at its end; when
/// the observer asks to stop, ending with [`ExperimentError::Preempted`]) holding the shadow
/// accumulator and the finished widths' numbers; with `ckpt.resume_from`, the experiment saved
/// there continues (the finished widths are not trained again), and its numbers equal the
/// uninterrupted experiment's, bit for bit.
///
/// The observer sees every [`AlignEvent`]; returning `false` asks to stop.
///
/// # Errors
/// As [`align_run`]; [`ExperimentError::InvalidSetting`] for no widths; for a resume, a
/// checkpoint that is not an alignment experiment's or is broken ([`ExperimentError::Model`]),
/// other widths or settings than the saved ones ([`RulesError::CheckpointMismatch`]; `epochs`
/// may grow only while no width has finished, [`ExperimentError::InvalidSetting`] after).
pub fn align_widths(
    base: &TrainConfig,
    widths: &[usize],
    trainer: &mut Trainer,
    ckpt: &Checkpointing,
    observer: &mut dyn FnMut(AlignEvent<'_>) -> bool,
) -> Result<Vec<AlignWidth>, ExperimentError> {
    if widths.is_empty() {
        return Err(ExperimentError::setting(
            "widths",
            "give at least one width",
        ));
    }
    let with_width = |size| at_axis(base, size);
    for &w in widths {
        check_memory(&with_width(w), trainer, ckpt.active())?;
    }
    let mut done = match &ckpt.resume_from {
        Some(path) => saved_widths(path, base, widths)?,
        None => Vec::new(),
    };
    for d in &done {
        observer(AlignEvent::Finished {
            width: d,
            restored: true,
        });
    }
    let resume_at = ckpt.resume_from.as_ref().map(|_| done.len());
    let target: Option<PathBuf> = ckpt.target().map(Path::to_path_buf);
    for (i, &w) in widths.iter().enumerate().skip(done.len()) {
        let cfg = with_width(w);
        let resumed = resume_at == Some(i);
        let run_ckpt = Checkpointing {
            save_to: target.clone(),
            every: ckpt.every,
            resume_from: if resumed {
                ckpt.resume_from.clone()
            } else {
                None
            },
        };
        if !observer(AlignEvent::Starting {
            config: &cfg,
            resumed,
        }) {
            return Err(ExperimentError::Interrupted);
        }
        let context = Context {
            ckpt: &run_ckpt,
            widths,
            done: &done,
        };
        let run = align_checkpointed(
            &cfg,
            trainer,
            &mut |p| observer(AlignEvent::Progress(p)),
            &context,
        )?;
        let finished = AlignWidth {
            width: w,
            ..AlignWidth::from(&run)
        };
        observer(AlignEvent::Finished {
            width: &finished,
            restored: false,
        });
        done.push(finished);
    }
    Ok(done)
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
