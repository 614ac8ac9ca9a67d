//! [`Trainable`]: how the training loop feeds a dataset to a model.
//!
//! The loop in [`crate::train`] is written once, for every model; what differs between models is
//! only the shape of their data (feature vectors for the MLP, time-major sequences for the RNN)
//! and of their loss (one output per example, or one per time step). This trait is that link,
//! implemented for `Mlp<f32>` and `Rnn<f32>`.

use std::borrow::Borrow;

use widealign_data::{Batch, Dataset, SeqBatch, Sequences, Split, Tabular};
use widealign_models::{predicted_classes, Loss, Mlp, Network, Rnn, RnnTrace, Trace};
use widealign_tensor::Mat;

use crate::driver::{Eval, StepBatch};
use crate::train::Trained;
use crate::{ModelKind, RulesError, TrainConfig};

/// Rows per forward pass when evaluating a split.
const EVAL_CHUNK: usize = 512;

/// A model the training loop can train on a `widealign-data` [`Dataset`].
pub(crate) trait Trainable: Network<Scalar = f32> {
    /// The dataset split this model reads ([`Tabular`] or [`Sequences`]).
    type Split: Clone;
    /// A reusable mini-batch buffer.
    type Batch: Default;
    /// An owned output error (what [`Network::Error`] borrows from).
    type ErrorBuf: Default + Borrow<Self::Error>;
    /// The run record's model name.
    const KIND: ModelKind;
    /// Why a dataset of the other kind does not fit.
    const WRONG_DATA: &'static str;

    /// The training and test splits, if the dataset holds this model's kind of data.
    fn splits(data: &Dataset) -> Option<(&Self::Split, &Self::Split)>;
    /// Number of examples.
    fn split_len(split: &Self::Split) -> usize;
    /// Labels and class count, for stratified subsets (classification only).
    fn split_labels(split: &Self::Split) -> Option<(&[usize], usize)>;
    /// The examples `rows`.
    fn select(split: &Self::Split, rows: &[usize]) -> Self::Split;
    /// All inputs of a split.
    fn inputs(split: &Self::Split) -> &Self::Input;
    /// Every input and target value of a split, in blocks (for the checkpoint's data
    /// fingerprint).
    fn values(split: &Self::Split) -> Vec<&[f32]>;
    /// Checks that the test split has the training split's shape.
    fn check_splits(
        cfg: &TrainConfig,
        train: &Self::Split,
        test: &Self::Split,
    ) -> Result<(), RulesError>;
    /// The architecture this run trains on this data.
    fn spec_for(cfg: &TrainConfig, train: &Self::Split) -> Result<Self::Spec, RulesError>;
    /// The depth the run record reports.
    fn depth(cfg: &TrainConfig) -> usize;
    /// Fills `batch` with the examples `rows`.
    fn batch_into(split: &Self::Split, rows: &[usize], batch: &mut Self::Batch);
    /// The inputs of a batch.
    fn batch_input(batch: &Self::Batch) -> &Self::Input;
    /// The loss of the live trace on the batch, and its error `∂L/∂f` into `err`.
    fn loss_into(
        loss: Loss,
        trace: &Self::Trace,
        batch: &Self::Batch,
        err: &mut Self::ErrorBuf,
    ) -> Result<f64, RulesError>;
    /// The per-step hook's view of a batch.
    fn step_batch<'a>(x: &'a Self::Input, err: &'a Self::Error) -> StepBatch<'a>;
    /// Mean loss (and accuracy for classification) over a split.
    fn evaluate(&self, loss: Loss, split: &Self::Split) -> Result<Eval, RulesError>;
    /// The trained network, for the caller.
    fn trained(self) -> Trained;
}

fn shape_mismatch(cfg: &TrainConfig, model: &'static str, reason: String) -> RulesError {
    RulesError::DatasetMismatch {
        dataset: cfg.dataset.clone(),
        model,
        reason,
    }
}

impl Trainable for Mlp<f32> {
    type Split = Tabular;
    type Batch = Batch;
    type ErrorBuf = Mat<f32>;
    const KIND: ModelKind = ModelKind::Mlp;
    const WRONG_DATA: &'static str =
        "it holds sequences; use the rnn model (or a feature-vector dataset)";

    fn splits(data: &Dataset) -> Option<(&Tabular, &Tabular)> {
        match (&data.train, &data.test) {
            (Split::Tabular(train), Split::Tabular(test)) => Some((train, test)),
            _ => None,
        }
    }

    fn split_len(split: &Tabular) -> usize {
        split.len()
    }

    fn split_labels(split: &Tabular) -> Option<(&[usize], usize)> {
        split.labels.as_deref().zip(split.classes)
    }

    fn select(split: &Tabular, rows: &[usize]) -> Tabular {
        split.select(rows)
    }

    fn inputs(split: &Tabular) -> &Mat<f32> {
        &split.x
    }

    fn values(split: &Tabular) -> Vec<&[f32]> {
        vec![split.x.as_slice(), split.y.as_slice()]
    }

    fn check_splits(cfg: &TrainConfig, train: &Tabular, test: &Tabular) -> Result<(), RulesError> {
        if test.input_dim() != train.input_dim() || test.output_dim() != train.output_dim() {
            return Err(shape_mismatch(
                cfg,
                "mlp",
                format!(
                    "train split is {} → {}, test split {} → {}",
                    train.input_dim(),
                    train.output_dim(),
                    test.input_dim(),
                    test.output_dim()
                ),
            ));
        }
        Ok(())
    }

    fn spec_for(cfg: &TrainConfig, train: &Tabular) -> Result<Self::Spec, RulesError> {
        cfg.mlp_spec(train.input_dim(), train.output_dim())
    }

    fn depth(cfg: &TrainConfig) -> usize {
        cfg.depth
    }

    fn batch_into(split: &Tabular, rows: &[usize], batch: &mut Batch) {
        split.batch_into(rows, batch);
    }

    fn batch_input(batch: &Batch) -> &Mat<f32> {
        &batch.x
    }

    fn loss_into(
        loss: Loss,
        trace: &Trace<f32>,
        batch: &Batch,
        err: &mut Mat<f32>,
    ) -> Result<f64, RulesError> {
        Ok(loss.evaluate_into(trace.output(), &batch.y, err)?)
    }

    fn step_batch<'a>(x: &'a Mat<f32>, err: &'a Mat<f32>) -> StepBatch<'a> {
        StepBatch::Mlp { x, err }
    }

    fn evaluate(&self, loss: Loss, split: &Tabular) -> Result<Eval, RulesError> {
        let n = split.len();
        let (mut total, mut correct) = (0.0, 0usize);
        let mut start = 0;
        while start < n {
            let rows = EVAL_CHUNK.min(n - start);
            let out = self.predict(&split.x.rows(start, rows).into_owned())?;
            let (l, _) = loss.evaluate(&out, &split.y.rows(start, rows).into_owned())?;
            total += l * rows as f64;
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
            loss: total / n,
            accuracy: split.labels.as_ref().map(|_| correct as f64 / n),
        })
    }

    fn trained(self) -> Trained {
        Trained::Mlp(self)
    }
}

impl Trainable for Rnn<f32> {
    type Split = Sequences;
    type Batch = SeqBatch;
    type ErrorBuf = Vec<Mat<f32>>;
    const KIND: ModelKind = ModelKind::Rnn;
    const WRONG_DATA: &'static str =
        "it holds feature vectors; use the mlp model (or a sequence dataset such as add)";

    fn splits(data: &Dataset) -> Option<(&Sequences, &Sequences)> {
        match (&data.train, &data.test) {
            (Split::Sequences(train), Split::Sequences(test)) => Some((train, test)),
            _ => None,
        }
    }

    fn split_len(split: &Sequences) -> usize {
        split.len()
    }

    fn split_labels(_split: &Sequences) -> Option<(&[usize], usize)> {
        None
    }

    fn select(split: &Sequences, rows: &[usize]) -> Sequences {
        split.select(rows)
    }

    fn inputs(split: &Sequences) -> &[Mat<f32>] {
        &split.x
    }

    fn values(split: &Sequences) -> Vec<&[f32]> {
        split
            .x
            .iter()
            .chain(&split.y)
            .map(|m| m.as_slice())
            .collect()
    }

    fn check_splits(
        cfg: &TrainConfig,
        train: &Sequences,
        test: &Sequences,
    ) -> Result<(), RulesError> {
        if test.input_dim() != train.input_dim()
            || test.output_dim() != train.output_dim()
            || test.steps() != train.steps()
        {
            return Err(shape_mismatch(
                cfg,
                "rnn",
                format!(
                    "train split has {} steps of {} → {}, test split {} steps of {} → {}",
                    train.steps(),
                    train.input_dim(),
                    train.output_dim(),
                    test.steps(),
                    test.input_dim(),
                    test.output_dim()
                ),
            ));
        }
        Ok(())
    }

    fn spec_for(cfg: &TrainConfig, train: &Sequences) -> Result<Self::Spec, RulesError> {
        cfg.rnn_spec(train.input_dim(), train.output_dim())
    }

    fn depth(_cfg: &TrainConfig) -> usize {
        1
    }

    fn batch_into(split: &Sequences, rows: &[usize], batch: &mut SeqBatch) {
        split.batch_into(rows, batch);
    }

    fn batch_input(batch: &SeqBatch) -> &[Mat<f32>] {
        &batch.x
    }

    fn loss_into(
        loss: Loss,
        trace: &RnnTrace<f32>,
        batch: &SeqBatch,
        err: &mut Vec<Mat<f32>>,
    ) -> Result<f64, RulesError> {
        let (l, errs) = loss.evaluate_sequence(&trace.outputs, &batch.y)?;
        *err = errs;
        Ok(l)
    }

    fn step_batch<'a>(xs: &'a [Mat<f32>], errs: &'a [Mat<f32>]) -> StepBatch<'a> {
        StepBatch::Rnn { xs, errs }
    }

    fn evaluate(&self, loss: Loss, split: &Sequences) -> Result<Eval, RulesError> {
        let n = split.len();
        let mut total = 0.0;
        let mut start = 0;
        while start < n {
            let rows = EVAL_CHUNK.min(n - start);
            let chunk = |ms: &[Mat<f32>]| -> Vec<Mat<f32>> {
                ms.iter()
                    .map(|m| m.rows(start, rows).into_owned())
                    .collect()
            };
            let out = self.predict(&chunk(&split.x))?;
            let (l, _) = loss.evaluate_sequence(&out, &chunk(&split.y))?;
            total += l * rows as f64;
            start += rows;
        }
        Ok(Eval {
            loss: total / n.max(1) as f64,
            accuracy: None,
        })
    }

    fn trained(self) -> Trained {
        Trained::Rnn(self)
    }
}
