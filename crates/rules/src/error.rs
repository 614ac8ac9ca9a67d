//! The error type of widealign-rules.

use widealign_models::ModelError;

/// Everything that can go wrong when building a rule or training with it.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A name (rule, model, optimiser, parameterisation, activation) is not one we know.
    #[error("unknown {what} `{got}` (expected one of: {expected})")]
    UnknownName {
        /// What kind of name, e.g. `rule`.
        what: &'static str,
        /// The name that was given.
        got: String,
        /// The accepted names, comma separated.
        expected: String,
    },
    /// A training-configuration field has an invalid value.
    #[error("invalid training configuration: {field} {reason}")]
    InvalidConfig {
        /// The offending field, e.g. `batch_size`.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The rule is not defined for this model.
    #[error("rule {rule} is not available for the {model} model: {reason}")]
    Unsupported {
        /// The rule's name.
        rule: String,
        /// `mlp` or `rnn`.
        model: &'static str,
        /// Why not.
        reason: String,
    },
    /// The dataset does not fit the model (e.g. sequences given to an MLP).
    #[error("dataset {dataset} does not fit the {model} model: {reason}")]
    DatasetMismatch {
        /// The dataset's name.
        dataset: String,
        /// `mlp` or `rnn`.
        model: &'static str,
        /// What does not fit.
        reason: String,
    },
    /// A cached frozen trace was asked for rows whose inputs are not the cached ones.
    #[error("frozen-activity cache: {0}")]
    Cache(String),
    /// Training was stopped through [`crate::Callbacks::stop`].
    #[error("training interrupted at epoch {epoch}, step {step}")]
    Interrupted {
        /// Epoch (1-based).
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
    },
    /// A resumed run's settings differ from those its checkpoint was written with (only
    /// `epochs` may grow).
    #[error("the checkpoint's run has {field} = {saved}, this run asks for {requested} (a resumed run keeps its settings; only epochs may be raised)")]
    CheckpointMismatch {
        /// The [`crate::TrainConfig`] field, e.g. `width`.
        field: String,
        /// Its value in the checkpoint.
        saved: String,
        /// The value asked for.
        requested: String,
    },
    /// The stop flag ended the run and a checkpoint of its state was saved at the step
    /// boundary: continue it with [`crate::Checkpointing::resume_from`].
    #[error("stopped at epoch {epoch}, after {step} steps of it; checkpoint saved to {}", path.display())]
    Preempted {
        /// Epoch in progress (1-based).
        epoch: usize,
        /// Steps of that epoch done.
        step: usize,
        /// The checkpoint.
        path: std::path::PathBuf,
    },
    /// The training data differ from the data a checkpoint was written on.
    #[error("checkpoint {}: written on other training data ({saved_examples} examples, fingerprint {saved}; this run has {examples} examples, fingerprint {now})", path.display())]
    CheckpointData {
        /// The checkpoint.
        path: std::path::PathBuf,
        /// Training examples in the checkpoint's run.
        saved_examples: usize,
        /// Its data fingerprint.
        saved: String,
        /// Training examples now.
        examples: usize,
        /// The data fingerprint now.
        now: String,
    },
    /// An error from the data layer (e.g. a training subset larger than the split).
    #[error(transparent)]
    Data(#[from] widealign_data::DataError),
    /// An error from the model layer (shapes, specs).
    #[error(transparent)]
    Model(#[from] ModelError),
}
