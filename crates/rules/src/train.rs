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

use std::borrow::Cow;

use widealign_data::{preprocess, Batch, Dataset, SeqBatch, Sequences, Split, Tabular};
use widealign_models::{
    predicted_classes, Loss, Mlp, Optimizer, OptimizerKind, Rnn, RnnSpec, RnnTrace, Trace,
};
use widealign_tensor::{rng::SeedStream, Mat};

use crate::driver::{self, Eval, StepBatch, Task};
use crate::mlp_rule::FROZEN_CACHE_BUDGET;
use crate::{
    Callbacks, MlpRule, ModelKind, OptimizerChoice, RnnRule, Rule, RulesError, StepInput,
    TrainConfig, TrainResult,
};

/// The network a run trained.
#[derive(Clone, Debug, PartialEq)]
pub enum Trained {
    /// A fully connected network.
    Mlp(Mlp<f32>),
    /// A recurrent network.
    Rnn(Rnn<f32>),
}

/// Rows per forward pass when evaluating a split.
const EVAL_CHUNK: usize = 512;

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
    mut callbacks: Callbacks<'_>,
) -> Result<(TrainResult, Trained), RulesError> {
    cfg.validate()?;
    let mismatch = |reason: &str| RulesError::DatasetMismatch {
        dataset: data.name.clone(),
        model: cfg.model.name(),
        reason: reason.to_string(),
    };
    match cfg.model {
        ModelKind::Mlp => {
            let (Split::Tabular(train), Split::Tabular(test)) = (&data.train, &data.test) else {
                return Err(mismatch(
                    "it holds sequences; use the rnn model (or a feature-vector dataset)",
                ));
            };
            let train = subset_tabular(cfg, train)?;
            let mut task = MlpTask::new(cfg, train, test)?;
            let result = driver::run(cfg, ModelKind::Mlp, cfg.depth, &mut task, &mut callbacks)?;
            Ok((result, Trained::Mlp(task.model)))
        }
        ModelKind::Rnn => {
            let (Split::Sequences(train), Split::Sequences(test)) = (&data.train, &data.test)
            else {
                return Err(mismatch(
                    "it holds feature vectors; use the mlp model (or a sequence dataset such as add)",
                ));
            };
            let train = subset_sequences(cfg, train)?;
            let mut task = RnnTask::new(cfg, train, test)?;
            let result = driver::run(cfg, ModelKind::Rnn, 1, &mut task, &mut callbacks)?;
            Ok((result, Trained::Rnn(task.model)))
        }
    }
}

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
    let mut rng = SeedStream::new(cfg.seed).child("subset").rng("train");
    let rows = match labels {
        Some((labels, classes)) => preprocess::stratified_subset(labels, classes, k, &mut rng)?,
        None => preprocess::random_subset(n, k, &mut rng)?,
    };
    Ok(Some(rows))
}

fn subset_tabular<'d>(cfg: &TrainConfig, t: &'d Tabular) -> Result<Cow<'d, Tabular>, RulesError> {
    let labels = t.labels.as_deref().zip(t.classes);
    Ok(match subset_rows(cfg, t.len(), labels)? {
        Some(rows) => Cow::Owned(t.select(&rows)),
        None => Cow::Borrowed(t),
    })
}

fn subset_sequences<'d>(
    cfg: &TrainConfig,
    s: &'d Sequences,
) -> Result<Cow<'d, Sequences>, RulesError> {
    Ok(match subset_rows(cfg, s.len(), None)? {
        Some(rows) => Cow::Owned(s.select(&rows)),
        None => Cow::Borrowed(s),
    })
}

// ---------------------------------------------------------------------------------------------
// MLP

struct MlpTask<'d> {
    train: Cow<'d, Tabular>,
    test: &'d Tabular,
    model: Mlp<f32>,
    rule: MlpRule<f32>,
    optimizer: Optimizer<f32>,
    sgd: bool,
    batch: Batch,
    trace: Trace<f32>,
    err: Mat<f32>,
}

impl<'d> MlpTask<'d> {
    fn new(
        cfg: &TrainConfig,
        train: Cow<'d, Tabular>,
        test: &'d Tabular,
    ) -> Result<Self, RulesError> {
        if test.input_dim() != train.input_dim() || test.output_dim() != train.output_dim() {
            return Err(RulesError::DatasetMismatch {
                dataset: cfg.dataset.clone(),
                model: "mlp",
                reason: format!(
                    "train split is {} → {}, test split {} → {}",
                    train.input_dim(),
                    train.output_dim(),
                    test.input_dim(),
                    test.output_dim()
                ),
            });
        }
        let spec = cfg.mlp_spec(train.input_dim(), train.output_dim())?;
        let model = Mlp::new(&spec, cfg.seed)?;
        let mut rule = MlpRule::new(cfg.rule, &model)?;
        if cfg.cache_frozen && rule.frozen_cache_size(train.len()) <= FROZEN_CACHE_BUDGET {
            rule.cache_frozen_trace(&train.x)?;
        }
        Ok(MlpTask {
            train,
            test,
            model,
            rule,
            optimizer: Optimizer::new(cfg.optimizer_kind()),
            sgd: cfg.optimizer == OptimizerChoice::Sgd,
            batch: Batch::default(),
            trace: Trace {
                pre: Vec::new(),
                act: Vec::new(),
            },
            err: Mat::zeros(0, 0),
        })
    }

    fn eval(&self, split: &Tabular) -> Result<Eval, RulesError> {
        let n = split.len();
        let (mut loss, mut correct) = (0.0, 0usize);
        let mut start = 0;
        while start < n {
            let rows = EVAL_CHUNK.min(n - start);
            let out = self
                .model
                .predict(&split.x.rows(start, rows).into_owned())?;
            let (l, _) = Loss::Mse.evaluate(&out, &split.y.rows(start, rows).into_owned())?;
            loss += l * rows as f64;
            if let Some(labels) = &split.labels {
                correct += predicted_classes(&out)
                    .iter()
                    .zip(&labels[start..start + rows])
                    .filter(|(p, l)| p == l)
                    .count();
            }
            start += rows;
        }
        let n = n.max(1) as f64;
        Ok(Eval {
            loss: loss / n,
            accuracy: split.labels.as_ref().map(|_| correct as f64 / n),
        })
    }
}

impl Task for MlpTask<'_> {
    fn n_train(&self) -> usize {
        self.train.len()
    }

    fn step(
        &mut self,
        rows: &[usize],
        lr: f64,
        hook: Option<&mut dyn FnMut(StepBatch<'_>)>,
    ) -> Result<f64, RulesError> {
        self.train.batch_into(rows, &mut self.batch);
        self.model.forward_into(&self.batch.x, &mut self.trace)?;
        let loss = Loss::Mse.evaluate_into(self.trace.output(), &self.batch.y, &mut self.err)?;
        if !loss.is_finite() {
            return Ok(loss);
        }
        if let Some(h) = hook {
            h(StepBatch::Mlp {
                x: &self.batch.x,
                err: &self.err,
            });
        }
        let step = StepInput {
            x: &self.batch.x,
            rows: Some(rows),
            live: &self.trace,
            err: &self.err,
        };
        if self.sgd {
            // Plain SGD fused into the backward pass: bit-identical, no gradient storage.
            self.rule.sgd_step(&mut self.model, &step, lr as f32)?;
        } else {
            let grads = self.rule.update(&self.model, &step)?;
            self.optimizer.step_mlp(&mut self.model, grads, lr as f32);
        }
        Ok(loss)
    }

    fn eval_train(&mut self) -> Result<Eval, RulesError> {
        self.eval(&self.train)
    }

    fn eval_test(&mut self) -> Result<Eval, RulesError> {
        self.eval(self.test)
    }
}

// ---------------------------------------------------------------------------------------------
// RNN

struct RnnTask<'d> {
    train: Cow<'d, Sequences>,
    test: &'d Sequences,
    model: Rnn<f32>,
    rule: RnnRule<f32>,
    optimizer: Optimizer<f32>,
    batch: SeqBatch,
    trace: RnnTrace<f32>,
}

impl<'d> RnnTask<'d> {
    fn new(
        cfg: &TrainConfig,
        train: Cow<'d, Sequences>,
        test: &'d Sequences,
    ) -> Result<Self, RulesError> {
        if test.input_dim() != train.input_dim()
            || test.output_dim() != train.output_dim()
            || test.steps() != train.steps()
        {
            return Err(RulesError::DatasetMismatch {
                dataset: cfg.dataset.clone(),
                model: "rnn",
                reason: format!(
                    "train split has {} steps of {} → {}, test split {} steps of {} → {}",
                    train.steps(),
                    train.input_dim(),
                    train.output_dim(),
                    test.steps(),
                    test.input_dim(),
                    test.output_dim()
                ),
            });
        }
        let spec = cfg.rnn_spec(train.input_dim(), train.output_dim())?;
        let model = Rnn::new(&spec, cfg.seed)?;
        let mut rule = RnnRule::new(cfg.rule, &model)?;
        if cfg.cache_frozen
            && rule.frozen_cache_size(train.len(), train.steps()) <= FROZEN_CACHE_BUDGET
        {
            rule.cache_frozen_trace(&train.x)?;
        }
        Ok(RnnTask {
            train,
            test,
            model,
            rule,
            optimizer: Optimizer::new(cfg.optimizer_kind()),
            batch: SeqBatch::default(),
            trace: RnnTrace::new(),
        })
    }

    fn eval(&self, split: &Sequences) -> Result<Eval, RulesError> {
        let n = split.len();
        let mut loss = 0.0;
        let mut start = 0;
        while start < n {
            let rows = EVAL_CHUNK.min(n - start);
            let chunk = |ms: &[Mat<f32>]| -> Vec<Mat<f32>> {
                ms.iter()
                    .map(|m| m.rows(start, rows).into_owned())
                    .collect()
            };
            let out = self.model.predict(&chunk(&split.x))?;
            let (l, _) = Loss::Mse.evaluate_sequence(&out, &chunk(&split.y))?;
            loss += l * rows as f64;
            start += rows;
        }
        Ok(Eval {
            loss: loss / n.max(1) as f64,
            accuracy: None,
        })
    }
}

impl Task for RnnTask<'_> {
    fn n_train(&self) -> usize {
        self.train.len()
    }

    fn step(
        &mut self,
        rows: &[usize],
        lr: f64,
        hook: Option<&mut dyn FnMut(StepBatch<'_>)>,
    ) -> Result<f64, RulesError> {
        self.train.batch_into(rows, &mut self.batch);
        self.model.forward_into(&self.batch.x, &mut self.trace)?;
        let (loss, errs) = Loss::Mse.evaluate_sequence(&self.trace.outputs, &self.batch.y)?;
        if !loss.is_finite() {
            return Ok(loss);
        }
        if let Some(h) = hook {
            h(StepBatch::Rnn {
                xs: &self.batch.x,
                errs: &errs,
            });
        }
        let step = StepInput {
            x: self.batch.x.as_slice(),
            rows: Some(rows),
            live: &self.trace,
            err: errs.as_slice(),
        };
        let grads = self.rule.update(&self.model, &step)?;
        self.optimizer.step_rnn(&mut self.model, grads, lr as f32);
        Ok(loss)
    }

    fn eval_train(&mut self) -> Result<Eval, RulesError> {
        self.eval(&self.train)
    }

    fn eval_test(&mut self) -> Result<Eval, RulesError> {
        self.eval(self.test)
    }
}
