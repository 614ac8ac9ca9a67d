//! [`Trainable`]: how the training loop feeds a dataset to a model.
//!
//! The loop in [`crate::train`] is written once, for every model; what differs between models is
//! only the shape of their data (feature vectors for the MLP, time-major sequences for the RNN)
//! and of their loss (one output per example, or one per time step). This trait is that link,
//! implemented for `Rnn<f32>` and, through [`TabularModel`] (feature vectors or images, one
//! example per row), for `Mlp<f32>` and `Cnn<f32>`.

use std::borrow::Borrow;

use widealign_data::{Batch, Dataset, SeqBatch, Sequences, Split, Tabular};
use widealign_models::{
    predicted_classes, Cnn, CnnSpec, CnnTrace, Loss, Mlp, MlpSpec, Network, Rnn, RnnTrace, Trace,
};
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
    /// The width the run record reports (the channel count for the CNN).
    fn width(cfg: &TrainConfig) -> usize {
        cfg.width
    }
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

/// A model that reads feature vectors (one example per row of a [`Tabular`] split) and gives
/// one output per example: the MLP and the CNN share the whole data link but for these items.
pub(crate) trait TabularModel:
    Network<Scalar = f32, Input = Mat<f32>, Error = Mat<f32>>
{
    /// The run record's model name.
    const TABULAR_KIND: ModelKind;
    /// Why a sequence dataset does not fit.
    const SEQUENCES: &'static str;
    /// The output `f(X)` of a trace.
    fn trace_output(trace: &Self::Trace) -> &Mat<f32>;
    /// Inference on a chunk of rows.
    fn predict_chunk(&self, x: &Mat<f32>) -> Result<Mat<f32>, RulesError>;
    /// The architecture this run trains on this data.
    fn tabular_spec(cfg: &TrainConfig, train: &Tabular) -> Result<Self::Spec, RulesError>;
    /// The depth the run record reports.
    fn tabular_depth(cfg: &TrainConfig) -> usize;
    /// The trained network, for the caller.
    fn tabular_trained(self) -> Trained;
    /// The per-step hook's view of a batch.
    fn tabular_step<'a>(x: &'a Mat<f32>, err: &'a Mat<f32>) -> StepBatch<'a>;
}

impl TabularModel for Mlp<f32> {
    const TABULAR_KIND: ModelKind = ModelKind::Mlp;
    const SEQUENCES: &'static str =
        "it holds sequences; use the rnn model (or a feature-vector dataset)";

    fn trace_output(trace: &Trace<f32>) -> &Mat<f32> {
        trace.output()
    }

    fn predict_chunk(&self, x: &Mat<f32>) -> Result<Mat<f32>, RulesError> {
        Ok(self.predict(x)?)
    }

    fn tabular_spec(cfg: &TrainConfig, train: &Tabular) -> Result<MlpSpec, RulesError> {
        cfg.mlp_spec(train.input_dim(), train.output_dim())
    }

    fn tabular_depth(cfg: &TrainConfig) -> usize {
        cfg.depth
    }

    fn tabular_trained(self) -> Trained {
        Trained::Mlp(self)
    }

    fn tabular_step<'a>(x: &'a Mat<f32>, err: &'a Mat<f32>) -> StepBatch<'a> {
        StepBatch::Mlp { x, err }
    }
}

impl TabularModel for Cnn<f32> {
    const TABULAR_KIND: ModelKind = ModelKind::Cnn;
    const SEQUENCES: &'static str =
        "it holds sequences; the cnn model reads images (digits, fashion-mnist, mnist, kmnist, cifar10)";

    fn trace_output(trace: &CnnTrace<f32>) -> &Mat<f32> {
        trace.output()
    }

    fn predict_chunk(&self, x: &Mat<f32>) -> Result<Mat<f32>, RulesError> {
        Ok(self.predict(x)?)
    }

    fn tabular_spec(cfg: &TrainConfig, train: &Tabular) -> Result<CnnSpec, RulesError> {
        cfg.cnn_spec_for(train)
    }

    fn tabular_depth(cfg: &TrainConfig) -> usize {
        cfg.conv_layers
    }

    fn tabular_trained(self) -> Trained {
        Trained::Cnn(self)
    }

    fn tabular_step<'a>(x: &'a Mat<f32>, err: &'a Mat<f32>) -> StepBatch<'a> {
        StepBatch::Cnn { x, err }
    }
}

impl<M: TabularModel> Trainable for M {
    type Split = Tabular;
    type Batch = Batch;
    type ErrorBuf = Mat<f32>;
    const KIND: ModelKind = M::TABULAR_KIND;
    const WRONG_DATA: &'static str = M::SEQUENCES;

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
                M::TABULAR_KIND.name(),
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
        M::tabular_spec(cfg, train)
    }

    fn depth(cfg: &TrainConfig) -> usize {
        M::tabular_depth(cfg)
    }

    fn width(cfg: &TrainConfig) -> usize {
        if M::TABULAR_KIND == ModelKind::Cnn {
            cfg.channels
        } else {
            cfg.width
        }
    }

    fn batch_into(split: &Tabular, rows: &[usize], batch: &mut Batch) {
        split.batch_into(rows, batch);
    }

    fn batch_input(batch: &Batch) -> &Mat<f32> {
        &batch.x
    }

    fn loss_into(
        loss: Loss,
        trace: &Self::Trace,
        batch: &Batch,
        err: &mut Mat<f32>,
    ) -> Result<f64, RulesError> {
        Ok(loss.evaluate_into(M::trace_output(trace), &batch.y, err)?)
    }

    fn step_batch<'a>(x: &'a Mat<f32>, err: &'a Mat<f32>) -> StepBatch<'a> {
        M::tabular_step(x, err)
    }

    fn evaluate(&self, loss: Loss, split: &Tabular) -> Result<Eval, RulesError> {
        let n = split.len();
        let (mut total, mut correct) = (0.0, 0usize);
        let mut start = 0;
        while start < n {
            let rows = EVAL_CHUNK.min(n - start);
            let out = self.predict_chunk(&split.x.rows(start, rows).into_owned())?;
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
        M::tabular_trained(self)
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
