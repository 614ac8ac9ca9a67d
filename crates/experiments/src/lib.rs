//! # widealign-experiments: the experiments as a library
//!
//! Everything the `widealign` command line runs, callable from Rust without it:
//!
//! | module | what |
//! |---|---|
//! | [`plan`](mod@plan) | the reference experiment plan ([`plan()`]): accuracy against width for every rule, the Add task, low data, alignment, dynamics — at the tiny, quick and full scales |
//! | [`sweep`] | the sweep engine: a grid of runs from a TOML file, shards (`I/N` or a Slurm array), resumable JSON-lines results |
//! | [`align`] | the alignment run: a training run with the NTK crate's shadow Align-zero accumulator hooked into its steps, then the per-layer alignment |
//! | [`dynamics`] | the layerwise dynamics experiment on a dataset loaded by name |
//! | [`limit`] | the infinite-width NTK prediction of a group of training runs (the limit as the width grows) |
//! | [`memory`] | peak-memory checks of runs before they allocate |
//! | [`reproduce`] | a whole plan into one resumable results file, and its typed contents for a report |
//! | [`stats`] | the mean of a cell's seeds with its 95% t interval, and when two cells differ |
//! | [`record`], [`config`], [`results`] | one run's JSON record, a config's identity, the JSON-lines file |
//! | [`Trainer`] | a [`TrainConfig`](widealign_rules::TrainConfig) in, a [`TrainResult`](widealign_rules::TrainResult) out (datasets loaded and cached) |
//!
//! It sits on top of the other layers (`widealign-data` loads the datasets, `widealign-rules`
//! trains, `widealign-ntk` predicts and measures) and below the command line, which adds only
//! argument grammar, progress display, plots and report rendering.
//!
//! Every result of a training run is the rules crate's [`TrainResult`](widealign_rules::TrainResult);
//! results files hold one [`RunRecord`] per line and identify a run by its config's derived
//! serialisation ([`config::key`]), so a sweep or a reproduction can be stopped at any point
//! and resumed.
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use widealign_experiments::plan::{plan, Scale};
//! use widealign_experiments::sweep::{run_sweep, Shard, SweepPlan};
//! use widealign_experiments::{RunRecord, Trainer};
//!
//! // The accuracy-vs-width group of the tiny plan: every rule at widths 8 and 16.
//! let p = plan(Scale::Tiny, "digits", 0).unwrap();
//! let runs = &p.accuracy[..4]; // bp and align-zero
//! let dir = tempfile::tempdir().unwrap();
//! let out = dir.path().join("results.jsonl");
//! let sweep = SweepPlan { runs, shard: Shard::WHOLE, out: &out, resume: false,
//!                         experiment: Some("accuracy_vs_width"), checkpoints: None };
//! let summary = run_sweep(&sweep, &mut Trainer::new(), &AtomicBool::new(false)).unwrap();
//! assert_eq!(summary.completed, 4);
//!
//! // One JSON line per run: the training result, the config and the provenance.
//! let text = std::fs::read_to_string(&out).unwrap();
//! let first: RunRecord = serde_json::from_str(text.lines().next().unwrap()).unwrap();
//! assert_eq!(first.config, runs[0]);
//! assert!(first.result.test_accuracy.unwrap() > 0.0);
//! ```

pub mod align;
pub mod config;
pub mod dynamics;
mod error;
pub mod limit;
pub mod memory;
pub mod plan;
pub mod record;
pub mod reproduce;
pub mod results;
pub mod stats;
pub mod sweep;
#[cfg(test)]
mod testutil;
mod trainer;

pub use error::ExperimentError;
pub use plan::{plan, Experiment, Plan, Scale};
pub use record::RunRecord;
pub use trainer::{Observer, Trainer};
