//! The training loop: [`train`] one configured run on a loaded dataset.
//!
//! Per epoch `e = 1..=epochs`: the training rows are visited in the order of a seeded
//! permutation (`widealign_data::preprocess::epoch_order` with the stream
//! `SeedStream::new(seed).child("shuffle")`), in mini-batches of `batch_size` (the last one may
//! be smaller). Each step runs the live forward pass, the reference MSE loss and its error
//! `E = ∂L/∂f`, calls the per-step hook, asks the rule for its update and applies it with plain
//! SGD or Adam. After every epoch the test split is evaluated (loss; accuracy for
//! classification). Epoch 0 of the history is the evaluation at initialisation.
//!
//! **Divergence.** A mini-batch loss that is not finite or exceeds
//! [`DIVERGENCE_FACTOR`](crate::DIVERGENCE_FACTOR)` × ` the initial training loss (or a test
//! loss beyond the same multiple of the initial test loss) stops the run: the result has
//! `diverged: true`, the epoch, and the metrics of the last completed epoch.
//!
//! ```
//! use widealign_data::{Dataset, Split, Tabular, Task, Mat};
//! use widealign_rules::{train, Callbacks, RuleKind, TrainConfig};
//! use widealign_tensor::rng::SeedStream;
//!
//! // a tiny two-class problem: the class is the sign of the first input
//! let x: Mat<f32> = SeedStream::new(0).gaussian_matrix("x", 60, 3, 1.0);
//! let labels: Vec<usize> = (0..60).map(|i| usize::from(x[(i, 0)] > 0.0)).collect();
//! let all = Tabular::classification(x, labels, 2).unwrap();
//! let data = Dataset {
//!     name: "toy".into(), source: "generated".into(),
//!     task: Task::Classification { classes: 2 },
//!     train: Split::Tabular(all.select(&(0..40).collect::<Vec<_>>())),
//!     validation: None,
//!     test: Split::Tabular(all.select(&(40..60).collect::<Vec<_>>())),
//! };
//! let cfg = TrainConfig {
//!     rule: RuleKind::AlignAda, width: 64, depth: 1, epochs: 5, lr: 1.0, batch_size: 10,
//!     ..TrainConfig::default()
//! };
//! let result = train(&cfg, &data, Callbacks::default()).unwrap();
//! assert_eq!(result.history.len(), 6); // epoch 0 plus five epochs
//! assert!(!result.diverged);
//! assert!(result.test_loss < result.history[0].test_loss);
//! ```

use std::borrow::{Borrow, Cow};

use widealign_data::{preprocess, Dataset};
use widealign_models::safetensors::{self, SafetensorsFile, Tensor};
use widealign_models::{Cnn, Loss, Mlp, Optimizer, OptimizerKind, Rnn, RnnSpec};

use crate::checkpoint::{self, Checkpointing, DataPrint};
use crate::driver::{self, Eval, StepBatch, Task};
use crate::trainable::Trainable;
use crate::{
    Callbacks, ModelKind, OptimizerChoice, Rule, RulesError, StepInput, TrainConfig, TrainResult,
    FROZEN_CACHE_BUDGET,
};

/// The network a run trained.
#[derive(Clone, Debug, PartialEq)]
pub enum Trained {
    /// A fully connected network.
    Mlp(Mlp<f32>),
    /// A recurrent network.
    Rnn(Rnn<f32>),
    /// A convolutional network.
    Cnn(Cnn<f32>),
}

impl TrainConfig {
    /// The recurrent network this run trains (width `width`, zero-initialised biases).
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate.
    pub fn rnn_spec(&self, input_dim: usize, output_dim: usize) -> Result<RnnSpec, RulesError> {
        let spec = RnnSpec::new(input_dim, self.width, output_dim, self.activation)
            .with_param(self.parameterization())
            .with_bias_init(widealign_models::BiasInit::Zero);
        spec.validate()?;
        Ok(spec)
    }

    fn optimizer_kind(&self) -> OptimizerKind {
        match self.optimizer {
            OptimizerChoice::Sgd => OptimizerKind::Sgd,
            OptimizerChoice::Adam => OptimizerKind::adam(),
        }
    }
}

/// Trains the run `cfg` on `data` (whose training split is used whole, or subset to
/// `cfg.train_size` examples if it is larger) and reports the result.
///
/// # Errors
/// [`RulesError::InvalidConfig`] for bad settings, [`RulesError::DatasetMismatch`] when the
/// dataset does not fit the model (sequences for an MLP, feature vectors for an RNN),
/// [`RulesError::Interrupted`] when `callbacks.stop` is raised. Divergence is not an error.
pub fn train(
    cfg: &TrainConfig,
    data: &Dataset,
    callbacks: Callbacks<'_>,
) -> Result<TrainResult, RulesError> {
    train_model(cfg, data, callbacks).map(|(r, _)| r)
}

/// [`train`], also returning the trained network (for checkpoints and weight-change analyses).
///
/// # Errors
/// As [`train`].
pub fn train_model(
    cfg: &TrainConfig,
    data: &Dataset,
    callbacks: Callbacks<'_>,
) -> Result<(TrainResult, Trained), RulesError> {
    train_checkpointed(cfg, data, callbacks, &Checkpointing::default())
}

/// [`train_model`] with mid-run checkpoints ([`crate::checkpoint`]): saves to
/// `ckpt.target()` as `ckpt` says, and first continues the run saved in `ckpt.resume_from` if
/// given. The result is bit-identical to the uninterrupted run's (timings aside). When
/// `callbacks.stop` is raised and a checkpoint path is set, the state at the step boundary is
/// saved and the run ends with [`RulesError::Preempted`].
///
/// # Errors
/// As [`train`]; for a resumed run also [`RulesError::Model`] with a
/// [`widealign_models::ModelError::Checkpoint`] (truncated, corrupted, other format or version,
/// tensors of other shapes), [`RulesError::CheckpointMismatch`] (other settings than `cfg`;
/// only `epochs` may grow), [`RulesError::CheckpointData`] (other training data), a
/// checkpoint whose [`crate::checkpoint::CheckpointExtension`] is not `callbacks.extension`'s
/// and the extension's own restore errors;
/// [`RulesError::InvalidConfig`] for `every == Some(0)`.
pub fn train_checkpointed(
    cfg: &TrainConfig,
    data: &Dataset,
    callbacks: Callbacks<'_>,
    ckpt: &Checkpointing,
) -> Result<(TrainResult, Trained), RulesError> {
    cfg.validate()?;
    if ckpt.every == Some(0) {
        return Err(RulesError::InvalidConfig {
            field: "checkpoint_every",
            reason: "must be at least 1 step".into(),
        });
    }
    match cfg.model {
        ModelKind::Mlp => train_network::<Mlp<f32>>(cfg, data, callbacks, ckpt),
        ModelKind::Rnn => train_network::<Rnn<f32>>(cfg, data, callbacks, ckpt),
        ModelKind::Cnn => train_network::<Cnn<f32>>(cfg, data, callbacks, ckpt),
    }
}

/// The training loop for one model type: subset, build, cache, restore, run the epochs.
fn train_network<M: Trainable>(
    cfg: &TrainConfig,
    data: &Dataset,
    mut callbacks: Callbacks<'_>,
    ckpt: &Checkpointing,
) -> Result<(TrainResult, Trained), RulesError> {
    // A checkpoint to continue is checked (checksum, format, settings) before anything else.
    let opened = match &ckpt.resume_from {
        Some(path) => {
            let o = checkpoint::open(path)?;
            checkpoint::check_resumable(&o.state.exact_config(), cfg)?;
            checkpoint::check_extension(path, o.state.extension.as_ref(), callbacks.extension)?;
            Some(o)
        }
        None => None,
    };
    let (train, test) = M::splits(data).ok_or_else(|| RulesError::DatasetMismatch {
        dataset: data.name.clone(),
        model: cfg.model.name(),
        reason: M::WRONG_DATA.to_string(),
    })?;
    let train = match subset_rows(cfg, M::split_len(train), M::split_labels(train))? {
        Some(rows) => Cow::Owned(M::select(train, &rows)),
        None => Cow::Borrowed(train),
    };
    let mut task = ModelTask::<M>::new(cfg, train, test)?;
    let driver_ckpt = match ckpt.target() {
        Some(path) => {
            let print = DataPrint {
                examples: M::split_len(&task.train),
                fingerprint: checkpoint::fingerprint(M::values(&task.train)),
            };
            let resume = match opened {
                Some(o) => {
                    if o.state.data != print {
                        return Err(RulesError::CheckpointData {
                            path: o.file.path().to_path_buf(),
                            saved_examples: o.state.data.examples,
                            saved: o.state.data.fingerprint.clone(),
                            examples: print.examples,
                            now: print.fingerprint,
                        });
                    }
                    let extension = o.state.extension.as_ref();
                    task.restore(
                        &o.file,
                        &o.state.adam_steps,
                        extension.map_or(0, |e| e.tensors.len()),
                    )?;
                    if let (Some(x), Some(saved)) = (callbacks.extension, extension) {
                        x.restore(&o.file, &saved.state)?;
                    }
                    Some(o.state)
                }
                None => None,
            };
            Some(driver::Ckpt {
                path,
                every: ckpt.every,
                data: print,
                resume,
            })
        }
        None => None,
    };
    let mut result = driver::run(
        cfg,
        M::KIND,
        M::depth(cfg),
        &mut task,
        &mut callbacks,
        driver_ckpt,
    )?;
    result.width = M::width(cfg);
    Ok((result, M::trained(task.model)))
}

/// The training rows of `cfg` (`None`: the whole split), through the data crate's one subset
/// path, so `train_size` and a seed name the same subset as `widealign_data::load` would draw.
fn subset_rows(
    cfg: &TrainConfig,
    n: usize,
    labels: Option<(&[usize], usize)>,
) -> Result<Option<Vec<usize>>, RulesError> {
    let Some(k) = cfg.train_size else {
        return Ok(None);
    };
    if k == n {
        return Ok(None);
    }
    if k > n {
        return Err(RulesError::InvalidConfig {
            field: "train_size",
            reason: format!("{k} is more than the {n} training examples"),
        });
    }
    let rows = preprocess::training_subset(n, labels, k, cfg.seed)?;
    Ok(Some(rows))
}

/// One run of one model: data, network, rule, optimiser and reused buffers.
struct ModelTask<'d, M: Trainable> {
    train: Cow<'d, M::Split>,
    test: &'d M::Split,
    model: M,
    rule: Rule<M>,
    optimizer: Optimizer<f32>,
    sgd: bool,
    batch: M::Batch,
    trace: M::Trace,
    err: M::ErrorBuf,
}

impl<'d, M: Trainable> ModelTask<'d, M> {
    fn new(
        cfg: &TrainConfig,
        train: Cow<'d, M::Split>,
        test: &'d M::Split,
    ) -> Result<Self, RulesError> {
        M::check_splits(cfg, &train, test)?;
        let spec = M::spec_for(cfg, &train)?;
        let model = M::from_seed(&spec, cfg.seed)?;
        let mut rule = Rule::new(cfg.rule, &model)?;
        let x_train = M::inputs(&train);
        if cfg.cache_frozen && rule.frozen_cache_size(x_train) <= FROZEN_CACHE_BUDGET {
            rule.cache_frozen_trace(x_train)?;
        }
        Ok(ModelTask {
            train,
            test,
            model,
            rule,
            optimizer: Optimizer::new(cfg.optimizer_kind()),
            sgd: cfg.optimizer == OptimizerChoice::Sgd,
            batch: M::Batch::default(),
            trace: M::Trace::default(),
            err: M::ErrorBuf::default(),
        })
    }
}

/// Prefix of Adam's moment tensors in a checkpoint (`adam.m.layer1.weight`, ...).
const ADAM_M: &str = "adam.m.";
const ADAM_V: &str = "adam.v.";

impl<M: Trainable> ModelTask<'_, M> {
    /// Loads the parameters and Adam's moments of a checkpoint (shapes from this run's model);
    /// `extension_tensors` more tensors belong to the caller's extension.
    fn restore(
        &mut self,
        file: &SafetensorsFile,
        adam_steps: &[Option<u64>],
        extension_tensors: usize,
    ) -> Result<(), RulesError> {
        safetensors::load_network(file, &mut self.model, "")?;
        let layout = self.model.param_layout();
        let bad = |reason: String| {
            RulesError::Model(widealign_models::ModelError::Checkpoint {
                path: file.path().to_path_buf(),
                reason,
            })
        };
        if adam_steps.len() > layout.len() || (self.sgd && adam_steps.iter().any(Option::is_some)) {
            return Err(bad(format!(
                "optimiser state for {} tensors does not fit this run ({} tensors, {})",
                adam_steps.len(),
                layout.len(),
                if self.sgd { "sgd" } else { "adam" }
            )));
        }
        let mut state = Vec::with_capacity(adam_steps.len());
        for (&t, (name, shape)) in adam_steps.iter().zip(&layout) {
            state.push(match t {
                Some(t) => {
                    let read = |prefix: &str| {
                        file.read_column_major::<f32>(&format!("{prefix}{name}"), shape)
                    };
                    Some((t, read(ADAM_M)?, read(ADAM_V)?))
                }
                None => None,
            });
        }
        let names = layout.len()
            + 2 * adam_steps.iter().filter(|t| t.is_some()).count()
            + extension_tensors;
        if file.names().count() != names {
            return Err(bad(format!(
                "holds {} tensors, this run's state has {names}",
                file.names().count()
            )));
        }
        self.optimizer.restore_moments(state)?;
        Ok(())
    }
}

impl<M: Trainable> Task for ModelTask<'_, M> {
    fn n_train(&self) -> usize {
        M::split_len(&self.train)
    }

    fn step(
        &mut self,
        rows: &[usize],
        lr: f64,
        hook: Option<&mut dyn FnMut(StepBatch<'_>)>,
    ) -> Result<f64, RulesError> {
        M::batch_into(&self.train, rows, &mut self.batch);
        let x = M::batch_input(&self.batch);
        self.model.forward_into(x, &mut self.trace)?;
        let loss = M::loss_into(Loss::Mse, &self.trace, &self.batch, &mut self.err)?;
        if !loss.is_finite() {
            return Ok(loss);
        }
        let err: &M::Error = self.err.borrow();
        if let Some(h) = hook {
            h(M::step_batch(x, err));
        }
        let step = StepInput {
            x,
            rows: Some(rows),
            live: &self.trace,
            err,
        };
        if self.sgd {
            // Plain SGD applied by the model (fused into the backward pass where it can).
            self.rule.sgd_step(&mut self.model, &step, lr as f32)?;
        } else {
            let grads = self.rule.update(&self.model, &step)?;
            self.optimizer
                .step_network(&mut self.model, grads, lr as f32);
        }
        Ok(loss)
    }

    fn eval_train(&mut self) -> Result<Eval, RulesError> {
        M::evaluate(&self.model, Loss::Mse, &self.train)
    }

    fn eval_test(&mut self) -> Result<Eval, RulesError> {
        M::evaluate(&self.model, Loss::Mse, self.test)
    }

    fn checkpoint_tensors(&self) -> (Vec<Tensor<'_, f32>>, Vec<Option<u64>>) {
        let mut tensors = safetensors::network_tensors(&self.model);
        let layout = self.model.param_layout();
        let mut steps = Vec::new();
        for (slot, (name, shape)) in self.optimizer.moments().into_iter().zip(layout) {
            let Some((t, m, v)) = slot else {
                steps.push(None);
                continue;
            };
            steps.push(Some(t));
            for (prefix, vals) in [(ADAM_M, m), (ADAM_V, v)] {
                tensors.push(safetensors::Tensor::column_major(
                    format!("{prefix}{name}"),
                    shape.clone(),
                    vals,
                ));
            }
        }
        (tensors, steps)
    }
}
