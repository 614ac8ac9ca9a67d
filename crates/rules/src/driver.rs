//! The model-independent part of the training loop: epochs, seeded shuffling, mini-batches,
//! evaluation, history, divergence detection and callbacks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use widealign_data::preprocess;
use widealign_tensor::{rng::SeedStream, Mat};

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
}

impl std::fmt::Debug for Callbacks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("progress", &self.progress.is_some())
            .field("step_hook", &self.step_hook.is_some())
            .field("stop", &self.stop.is_some())
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
}

fn bad_loss(loss: f64, reference: f64) -> bool {
    !loss.is_finite() || loss > DIVERGENCE_FACTOR * reference
}

/// Runs the epochs of `cfg` on `task`.
pub(crate) fn run(
    cfg: &TrainConfig,
    model: ModelKind,
    depth: usize,
    task: &mut dyn Task,
    callbacks: &mut Callbacks<'_>,
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
    let train0 = task.eval_train()?;
    let test0 = task.eval_test()?;
    let initial = EpochRecord {
        epoch: 0,
        train_loss: train0.loss,
        test_loss: test0.loss,
        test_accuracy: test0.accuracy,
        seconds: start.elapsed().as_secs_f64(),
    };
    let mut history = vec![initial];
    let mut diverged_epoch = None;
    let mut steps = 0usize;
    if let Some(p) = callbacks.progress.as_mut() {
        p(&Progress::Started {
            epochs: cfg.epochs,
            steps_per_epoch,
            initial: &history[0],
        });
    }
    // Initial losses that are already non-finite: the run cannot train.
    if bad_loss(train0.loss, f64::INFINITY) || bad_loss(test0.loss, f64::INFINITY) {
        diverged_epoch = Some(0);
    }
    // Reference scale for divergence: the initial losses (floored so a perfect initial fit
    // does not make every later rounding error a "divergence").
    let train_ref = train0.loss.max(1e-12);
    let test_ref = test0.loss.max(1e-12);
    let shuffles = SeedStream::new(cfg.seed).child("shuffle");
    'epochs: for epoch in 1..=cfg.epochs {
        if diverged_epoch.is_some() {
            break;
        }
        let order = preprocess::epoch_order(n, &shuffles, epoch);
        let mut loss_sum = 0.0;
        for (s, rows) in preprocess::batches(&order, batch).enumerate() {
            if callbacks.stop.is_some_and(|f| f.load(Ordering::Relaxed)) {
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
            seconds: start.elapsed().as_secs_f64(),
        });
        if let Some(p) = callbacks.progress.as_mut() {
            p(&Progress::Epoch(history.last().expect("just pushed")));
        }
    }
    let last = history.last().expect("epoch 0 is always recorded").clone();
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
        seconds: start.elapsed().as_secs_f64(),
        history,
    })
}
