//! Memory checks before training: every run's peak memory
//! ([`TrainConfig::memory_estimate`]) against the machine's available memory
//! ([`widealign_tensor::memory`]), so that a run that cannot fit is refused with
//! [`ExperimentError::TooBig`] before anything large is allocated — for a sweep, before its
//! first run.
//!
//! ```
//! use widealign_experiments::memory::check_runs;
//! use widealign_rules::TrainConfig;
//! let ok = TrainConfig { width: 64, ..TrainConfig::default() };
//! assert!(check_runs(&[ok.clone()], false).is_ok());
//! let huge = TrainConfig { width: 10_000_000, ..ok };
//! let e = check_runs(&[huge], false).unwrap_err().to_string();
//! assert!(e.contains("width 10000000") && e.contains("available"), "{e}");
//! ```

use std::collections::HashMap;

use widealign_data::{Dataset, DatasetInfo, LoadOptions};
use widealign_rules::{DataShape, TrainConfig};
use widealign_tensor::memory::Estimate;

use crate::ExperimentError;

/// The shape of a loaded dataset.
pub fn shape_of(data: &Dataset) -> DataShape {
    shape_of_info(&data.info())
}

fn shape_of_info(i: &DatasetInfo) -> DataShape {
    DataShape {
        input_dim: i.input_dim,
        output_dim: i.output_dim,
        n_train: i.train,
        steps: i.steps,
        image: i
            .name
            .parse::<widealign_data::DatasetSpec>()
            .ok()
            .and_then(|s| s.image_shape())
            .map(|s| [s.height, s.width, s.channels]),
    }
}

/// Checks `estimate` against the available memory.
///
/// # Errors
/// [`ExperimentError::TooBig`] when it does not fit.
pub fn check(estimate: &Estimate) -> Result<(), ExperimentError> {
    estimate.check().map_err(ExperimentError::TooBig)
}

/// Checks the run `cfg` on the loaded `data`.
///
/// # Errors
/// [`ExperimentError::TooBig`] when it does not fit.
pub fn check_run(
    cfg: &TrainConfig,
    data: &Dataset,
    checkpointing: bool,
) -> Result<(), ExperimentError> {
    let mut d = shape_of(data);
    if let Some(k) = cfg.train_size {
        d.n_train = d.n_train.min(k);
    }
    check(&cfg.memory_estimate(&d, checkpointing))
}

/// Checks every run of `runs` (a sweep's, before the first one starts), reading each dataset's
/// shape once by name (`widealign_data::info`: only the headers of IDX files).
///
/// # Errors
/// [`ExperimentError::TooBig`] for the first run that does not fit; dataset errors.
pub fn check_runs(runs: &[TrainConfig], checkpointing: bool) -> Result<(), ExperimentError> {
    let mut shapes: HashMap<&str, DataShape> = HashMap::new();
    for cfg in runs {
        let d = match shapes.get(cfg.dataset.as_str()) {
            Some(d) => *d,
            None => {
                let opts = LoadOptions {
                    seed: cfg.seed,
                    ..LoadOptions::default()
                };
                let d = shape_of_info(&widealign_data::info(&cfg.dataset, &opts)?);
                shapes.insert(&cfg.dataset, d);
                d
            }
        };
        let d = DataShape {
            n_train: cfg.train_size.map_or(d.n_train, |k| k.min(d.n_train)),
            ..d
        };
        check(&cfg.memory_estimate(&d, checkpointing))?;
    }
    Ok(())
}
