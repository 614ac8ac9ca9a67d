//! The error type of widealign-models.

use std::path::PathBuf;

/// Everything that can go wrong when building, running or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A spec field has an invalid value.
    #[error("invalid model spec: {field} {reason}")]
    InvalidSpec {
        /// The offending field, e.g. `hidden[1]` or `w_std`.
        field: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A matrix handed to the model does not have the shape the model needs.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// What was being checked, e.g. `Mlp::forward input batch`.
        what: String,
        /// The shape the model needs, e.g. `B × 784`.
        expected: String,
        /// The shape that was given, e.g. `100 × 783`.
        got: String,
    },
    /// A batch or sequence is empty where at least one element is needed.
    #[error("empty input: {0}")]
    Empty(String),
    /// A class label is not smaller than the number of classes.
    #[error("label {label} at position {index} is out of range for {classes} classes")]
    LabelOutOfRange {
        /// Position of the label in the batch.
        index: usize,
        /// The label.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
    /// Reading or writing a checkpoint file failed at the operating-system level.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint file is truncated, corrupted, or does not describe the requested model.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl ModelError {
    /// A [`ModelError::ShapeMismatch`] with `rows × cols` formatted shapes.
    pub(crate) fn shape(what: impl Into<String>, expected: String, got: (usize, usize)) -> Self {
        ModelError::ShapeMismatch {
            what: what.into(),
            expected,
            got: format!("{} × {}", got.0, got.1),
        }
    }
}
