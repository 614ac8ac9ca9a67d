//! The model-independent part of the training loop: epochs, seeded shuffling, mini-batches,
//! evaluation, history, divergence detection and callbacks.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use widealign_data::preprocess;
use widealign_models::safetensors::Tensor;
use widealign_tensor::{rng::SeedStream, Mat};

use crate::checkpoint::{
    self, CheckpointExtension, DataPrint, ExtensionState, Position, TrainState,
};
use crate::{EpochRecord, ModelKind, RulesError, TrainConfig, TrainResult};

/// A loss above this multiple of the initial training loss counts as divergence.
pub const DIVERGENCE_FACTOR: f64 = 1e6;

/// What a progress callback is told.
#[derive(Clone, Debug)]
pub enum Progress<'a> {
    /// Training is about to start; `initial` is the evaluation at initialisation (epoch 0).
    Started {
        /// Epochs that will run (unless the run diverges).
        epochs: usize,
        /// Mini-batches per epoch.
        steps_per_epoch: usize,
        /// The epoch-0 record.
        initial: &'a EpochRecord,
    },
    /// One optimisation step finished.
    Step {
        /// Current epoch (1-based).
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
        /// Mini-batches per epoch.
        steps_per_epoch: usize,
        /// The mini-batch loss (before the update).
        loss: f64,
    },
    /// An epoch finished and was evaluated.
    Epoch(&'a EpochRecord),
    /// The run diverged and stops.
    Diverged {
        /// Epoch (1-based) in which divergence was detected.
        epoch: usize,
        /// The offending loss (may be non-finite).
        loss: f64,
    },
}

/// One training step's data as seen by a per-step hook, before the update is applied.
#[derive(Clone, Copy, Debug)]
pub enum StepBatch<'a> {
    /// MLP: the batch inputs `X` (`B × n_0`) and the live output error `E = ∂L/∂f` (`B × C`).
    Mlp {
        /// Inputs.
        x: &'a Mat<f32>,
        /// Live error.
        err: &'a Mat<f32>,
    },
    /// CNN: the batch of images `X` (`B × H·W·C`) and the live output error `E` (`B × C`).
    Cnn {
        /// Inputs.
        x: &'a Mat<f32>,
        /// Live error.
        err: &'a Mat<f32>,
    },
    /// RNN: time-major inputs and per-step live errors (`T` matrices each).
    Rnn {
        /// Inputs `x_1..x_T`, each `B × n_in`.
        xs: &'a [Mat<f32>],
        /// Errors `E_1..E_T`, each `B × C`.
        errs: &'a [Mat<f32>],
    },
}

/// What the per-step hook receives (e.g. the NTK crate's shadow accumulator, which adds up the
/// Align-zero update of the same batches and errors without applying it).
#[derive(Clone, Copy, Debug)]
pub struct StepView<'a> {
    /// Current epoch (1-based).
    pub epoch: usize,
    /// Step within the epoch (1-based).
    pub step: usize,
    /// Training-set rows of the batch.
    pub rows: &'a [usize],
    /// The batch and the live error.
    pub batch: StepBatch<'a>,
    /// The learning rate of this step.
    pub lr: f64,
}

/// A progress observer (see [`Progress`]).
pub type ProgressFn<'a> = Box<dyn FnMut(&Progress<'_>) + 'a>;

/// A per-step observer (see [`StepView`]).
pub type StepHookFn<'a> = Box<dyn FnMut(&StepView<'_>) + 'a>;

/// Optional observers of a training run.
#[derive(Default)]
pub struct Callbacks<'a> {
    /// Called at the start, after every step, after every epoch and on divergence.
    pub progress: Option<ProgressFn<'a>>,
    /// Called once per step with the batch and the live error, before the update.
    pub step_hook: Option<StepHookFn<'a>>,
    /// When set to true (e.g. by a Ctrl-C handler), training stops before the next step with
    /// [`RulesError::Interrupted`].
    pub stop: Option<&'a AtomicBool>,
    /// State the caller keeps beside the run (typically fed by `step_hook`) that checkpoints
    /// save and a resumed run restores ([`crate::train_checkpointed`]).
    pub extension: Option<&'a dyn CheckpointExtension>,
}

impl std::fmt::Debug for Callbacks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("progress", &self.progress.is_some())
            .field("step_hook", &self.step_hook.is_some())
            .field("stop", &self.stop.is_some())
            .field("extension", &self.extension.map(|e| e.name()))
            .finish()
    }
}

/// Loss (and accuracy) of a model on a split.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Eval {
    pub loss: f64,
    pub accuracy: Option<f64>,
}

/// The model-specific half of training.
pub(crate) trait Task {
    /// Number of training examples.
    fn n_train(&self) -> usize;
    /// One step on the given training rows: forward, loss, hook, rule update, optimiser step.
    /// Returns the mini-batch loss before the update (no update if it is not finite).
    fn step(
        &mut self,
        rows: &[usize],
        lr: f64,
        hook: Option<&mut dyn FnMut(StepBatch<'_>)>,
    ) -> Result<f64, RulesError>;
    /// Evaluation on the training split.
    fn eval_train(&mut self) -> Result<Eval, RulesError>;
    /// Evaluation on the test split.
    fn eval_test(&mut self) -> Result<Eval, RulesError>;
    /// The tensors a checkpoint stores (parameters, Adam's moments) and Adam's step counts.
    fn checkpoint_tensors(&self) -> (Vec<Tensor<'_, f32>>, Vec<Option<u64>>);
}

/// Checkpointing as the driver sees it: where to save, how often, the run's data print, and
/// the state to continue from.
pub(crate) struct Ckpt<'a> {
    pub path: &'a Path,
    pub every: Option<usize>,
    pub data: DataPrint,
    pub resume: Option<TrainState>,
}

impl Ckpt<'_> {
    fn save(
        &self,
        cfg: &TrainConfig,
        task: &dyn Task,
        at: &Position<'_>,
        extension: Option<&dyn CheckpointExtension>,
    ) -> Result<(), RulesError> {
        let (mut tensors, adam_steps) = task.checkpoint_tensors();
        let extension = match extension {
            Some(x) => {
                let (more, state) = x.save()?;
                let names = more.iter().map(|t| t.name.clone()).collect();
                tensors.extend(more);
                Some(ExtensionState {
                    name: x.name().to_string(),
                    tensors: names,
                    state,
                })
            }
            None => None,
        };
        let state = TrainState {
            config: cfg.clone(),
            config_bits: checkpoint::config_bits(cfg),
            data: self.data.clone(),
            epochs_done: at.epochs_done,
            batches_done: at.batches_done,
            loss_sum: at.loss_sum.into(),
            steps: at.steps,
            history: at.history.iter().map(Into::into).collect(),
            diverged_epoch: at.diverged_epoch,
            finished: at.finished,
            seconds: at.seconds.into(),
            adam_steps,
            extension,
        };
        checkpoint::save(self.path, &tensors, &state)
    }
}

fn bad_loss(loss: f64, reference: f64) -> bool {
    !loss.is_finite() || loss > DIVERGENCE_FACTOR * reference
}

/// Runs the epochs of `cfg` on `task`, saving checkpoints and continuing from one as `ckpt`
/// says.
pub(crate) fn run(
    cfg: &TrainConfig,
    model: ModelKind,
    depth: usize,
    task: &mut dyn Task,
    callbacks: &mut Callbacks<'_>,
    mut ckpt: Option<Ckpt<'_>>,
) -> Result<TrainResult, RulesError> {
    let start = Instant::now();
    let n = task.n_train();
    if n == 0 {
        return Err(RulesError::InvalidConfig {
            field: "train_size",
            reason: "the training split is empty".into(),
        });
    }
    let batch = cfg.batch_size.min(n);
    let steps_per_epoch = n.div_ceil(batch);
    let resume = ckpt.as_mut().and_then(|c| c.resume.take());
    // Seconds of earlier sessions of this run.
    let mut seconds_before = 0.0;
    let mut history;
    let mut diverged_epoch = None;
    let mut steps = 0usize;
    let (mut first_epoch, mut skip_batches, mut resumed_sum) = (1, 0, 0.0);
    match &resume {
        Some(state) => {
            history = state.history();
            diverged_epoch = state.diverged_epoch;
            steps = state.steps;
            seconds_before = state.seconds.get();
            first_epoch = state.epochs_done + 1;
            skip_batches = state.batches_done;
            resumed_sum = state.loss_sum.get();
        }
        None => {
            let train0 = task.eval_train()?;
            let test0 = task.eval_test()?;
            history = vec![EpochRecord {
                epoch: 0,
                train_loss: train0.loss,
                test_loss: test0.loss,
                test_accuracy: test0.accuracy,
                seconds: start.elapsed().as_secs_f64(),
            }];
            // Initial losses that are already non-finite: the run cannot train.
            if bad_loss(train0.loss, f64::INFINITY) || bad_loss(test0.loss, f64::INFINITY) {
                diverged_epoch = Some(0);
            }
        }
    }
    let elapsed = || seconds_before + start.elapsed().as_secs_f64();
    if let Some(p) = callbacks.progress.as_mut() {
        p(&Progress::Started {
            epochs: cfg.epochs,
            steps_per_epoch,
            initial: &history[0],
        });
    }
    // Reference scale for divergence: the initial losses (floored so a perfect initial fit
    // does not make every later rounding error a "divergence").
    let train_ref = history[0].train_loss.max(1e-12);
    let test_ref = history[0].test_loss.max(1e-12);
    let shuffles = SeedStream::new(cfg.seed).child("shuffle");
    let every = ckpt.as_ref().and_then(|c| c.every);
    // The run's position for a checkpoint, from the loop's state.
    macro_rules! position {
        ($epochs_done:expr, $batches_done:expr, $loss_sum:expr, $finished:expr) => {
            Position {
                epochs_done: $epochs_done,
                batches_done: $batches_done,
                loss_sum: $loss_sum,
                steps,
                history: &history,
                diverged_epoch,
                finished: $finished,
                seconds: elapsed(),
            }
        };
    }
    'epochs: for epoch in first_epoch..=cfg.epochs {
        if diverged_epoch.is_some() {
            break;
        }
        let order = preprocess::epoch_order(n, &shuffles, epoch);
        let mut loss_sum = 0.0;
        let skip = if epoch == first_epoch {
            loss_sum = resumed_sum;
            skip_batches
        } else {
            0
        };
        for (s, rows) in preprocess::batches(&order, batch).enumerate().skip(skip) {
            if callbacks.stop.is_some_and(|f| f.load(Ordering::Relaxed)) {
                if let Some(c) = &ckpt {
                    let at = position!(epoch - 1, s, loss_sum, false);
                    c.save(cfg, task, &at, callbacks.extension)?;
                    return Err(RulesError::Preempted {
                        epoch,
                        step: s,
                        path: c.path.to_path_buf(),
                    });
                }
                return Err(RulesError::Interrupted { epoch, step: s + 1 });
            }
            let loss = match callbacks.step_hook.as_mut() {
                Some(h) => {
                    let mut forward = |b: StepBatch<'_>| {
                        h(&StepView {
                            epoch,
                            step: s + 1,
                            rows,
                            batch: b,
                            lr: cfg.lr,
                        })
                    };
                    task.step(rows, cfg.lr, Some(&mut forward))?
                }
                None => task.step(rows, cfg.lr, None)?,
            };
            steps += 1;
            if bad_loss(loss, train_ref) {
                diverged_epoch = Some(epoch);
                if let Some(p) = callbacks.progress.as_mut() {
                    p(&Progress::Diverged { epoch, loss });
                }
                break 'epochs;
            }
            loss_sum += loss * rows.len() as f64;
            if let Some(p) = callbacks.progress.as_mut() {
                p(&Progress::Step {
                    epoch,
                    step: s + 1,
                    steps_per_epoch,
                    loss,
                });
            }
            if every.is_some_and(|k| steps % k == 0) {
                if let Some(c) = &ckpt {
                    let at = position!(epoch - 1, s + 1, loss_sum, false);
                    c.save(cfg, task, &at, callbacks.extension)?;
                }
            }
        }
        let test = task.eval_test()?;
        if bad_loss(test.loss, test_ref) {
            diverged_epoch = Some(epoch);
            if let Some(p) = callbacks.progress.as_mut() {
                p(&Progress::Diverged {
                    epoch,
                    loss: test.loss,
                });
            }
            break;
        }
        history.push(EpochRecord {
            epoch,
            train_loss: loss_sum / n as f64,
            test_loss: test.loss,
            test_accuracy: test.accuracy,
            seconds: elapsed(),
        });
        if let Some(p) = callbacks.progress.as_mut() {
            p(&Progress::Epoch(history.last().expect("just pushed")));
        }
        if let (Some(c), None, true) = (&ckpt, every, epoch < cfg.epochs) {
            let at = position!(epoch, 0, 0.0, false);
            c.save(cfg, task, &at, callbacks.extension)?;
        }
    }
    let last = history.last().expect("epoch 0 is always recorded").clone();
    if let Some(c) = &ckpt {
        let at = position!(last.epoch, 0, 0.0, true);
        c.save(cfg, task, &at, callbacks.extension)?;
    }
    let best_test_loss = history
        .iter()
        .map(|r| r.test_loss)
        .fold(f64::INFINITY, f64::min);
    let best_test_accuracy = history
        .iter()
        .filter_map(|r| r.test_accuracy)
        .reduce(f64::max);
    Ok(TrainResult {
        model,
        dataset: cfg.dataset.clone(),
        rule: cfg.rule,
        width: cfg.width,
        depth,
        seed: cfg.seed,
        epochs: cfg.epochs,
        epochs_completed: last.epoch,
        train_examples: n,
        steps,
        train_loss: last.train_loss,
        test_loss: last.test_loss,
        test_accuracy: last.test_accuracy,
        best_test_loss,
        best_test_accuracy,
        diverged: diverged_epoch.is_some(),
        diverged_epoch,
        seconds: elapsed(),
        history,
    })
}
