//! The run executor: [`run_train`] turns a [`TrainConfig`] into a [`RunResult`] by calling the
//! training loop of `widealign-rules` on a dataset from `widealign-data`.

use crate::config::TrainConfig;
use crate::error::CliError;
use crate::runner::{Observer, RunResult};

/// Trains the run `cfg`, reporting progress to `observer` (which may ask to stop: the run then
/// returns [`CliError::Interrupted`]). A diverged run is `Ok` with `diverged: true`.
pub fn run_train(cfg: &TrainConfig, observer: &mut Observer<'_>) -> Result<RunResult, CliError> {
    let _ = observer;
    Err(CliError::Failure(format!(
        "cannot train `{}`: this build has no training loop yet (widealign-rules is still being written)",
        cfg.label()
    )))
}
