//! [`ExperimentError`], the one error type of this crate.

use std::path::PathBuf;

use widealign_data::DataError;
use widealign_models::ModelError;
use widealign_ntk::NtkError;
use widealign_rules::RulesError;

/// Everything that can end an experiment, a sweep or a results-file operation unsuccessfully.
///
/// A diverged training run is not an error: it is a result with `diverged: true`.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// A setting has an unusable value. `setting` is a [`TrainConfig`] key
    /// (`batch_size`) or the name of an experiment option (`dataset`, `steps`, `shard`);
    /// front ends turn it into their own spelling (the CLI prints `--batch-size`).
    ///
    /// [`TrainConfig`]: widealign_rules::TrainConfig
    #[error("{setting}: {reason}")]
    InvalidSetting {
        /// The setting at fault.
        setting: String,
        /// Why its value is unusable.
        reason: String,
    },
    /// An input text (sweep file, results file) is malformed. The message names the file and,
    /// where known, the line.
    #[error("{0}")]
    BadInput(String),
    /// Reading `path` failed.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing `path` failed.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A results file already holds results and resuming it was not asked for.
    #[error("{} already holds results; resume it or choose another output", path.display())]
    ResultsExist {
        /// The results file.
        path: PathBuf,
    },
    /// Run `index` of a sweep (its position in the grid) failed.
    #[error("run #{index}: {source}")]
    Run {
        /// Position of the run in its grid.
        index: usize,
        /// What went wrong.
        source: Box<ExperimentError>,
    },
    /// A broken invariant inside widealign (a bug, not a user mistake).
    #[error("internal error: {0}")]
    Internal(String),
    /// The caller asked to stop (an observer returned `false`, or the stop flag was raised).
    /// Results files hold only complete lines.
    #[error("interrupted")]
    Interrupted,
    /// The caller asked to stop and the run's state was saved to the checkpoint `path` at the
    /// step boundary (continue with a resume from it). Results files hold only complete lines.
    #[error("stopped at epoch {epoch}, after {step} steps of it; checkpoint saved to {}", path.display())]
    Preempted {
        /// Epoch in progress (1-based).
        epoch: usize,
        /// Steps of that epoch done.
        step: usize,
        /// The checkpoint.
        path: PathBuf,
    },
    /// A request needs more memory than the machine has available (refused before
    /// allocating).
    #[error("{0}")]
    TooBig(widealign_tensor::memory::TooBig),
    /// The training loop failed (bad config, dataset that does not fit the model, ...).
    #[error(transparent)]
    Rules(RulesError),
    /// A dataset could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A network could not be built.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A theory computation failed (e.g. an unstable learning rate for the dynamics).
    #[error(transparent)]
    Ntk(#[from] NtkError),
}

impl ExperimentError {
    /// An [`ExperimentError::InvalidSetting`].
    pub fn setting(setting: &str, reason: impl std::fmt::Display) -> Self {
        ExperimentError::InvalidSetting {
            setting: setting.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Interrupted training becomes [`ExperimentError::Interrupted`]; data and model errors keep
/// their own variants.
impl From<RulesError> for ExperimentError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Interrupted { .. } => ExperimentError::Interrupted,
            RulesError::Preempted { epoch, step, path } => {
                ExperimentError::Preempted { epoch, step, path }
            }
            RulesError::Data(d) => ExperimentError::Data(d),
            RulesError::Model(m) => ExperimentError::Model(m),
            other => ExperimentError::Rules(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_training_is_interrupted() {
        let e: ExperimentError = RulesError::Interrupted { epoch: 1, step: 2 }.into();
        assert!(matches!(e, ExperimentError::Interrupted));
        let e: ExperimentError = RulesError::InvalidConfig {
            field: "lr",
            reason: "must be positive".into(),
        }
        .into();
        assert!(matches!(e, ExperimentError::Rules(_)));
    }

    #[test]
    fn run_errors_name_the_run() {
        let e = ExperimentError::Run {
            index: 3,
            source: Box::new(ExperimentError::setting("width", "must be at least 1")),
        };
        assert_eq!(e.to_string(), "run #3: width: must be at least 1");
    }
}
