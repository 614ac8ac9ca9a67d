//! A reproduction end to end: every group of a [`Plan`] into one resumable results file, and
//! the typed contents of that file for a report.
//!
//! The three groups of training runs go through the sweep engine (one [`RunRecord`] line per
//! run, with its group in `"experiment"`). Alignment and dynamics results are further lines
//! ([`AlignmentLine`], [`DynamicsLine`]) identified by a `"key"`: the experiment's name and
//! its settings in their serialised form with sorted keys, e.g.
//! `alignment:{"activation":"relu","b_std":0.1,...,"width":64}` and
//! `dynamics:{"config":{...},"steps":200,"widths":[64,256,1024]}`; the RNN alignment runs on the
//! Add task are alignment lines too, with `"experiment":"rnn_alignment"` and the key prefix
//! `rnn_alignment:`, and the RNN dynamics experiments are dynamics lines with
//! `"experiment":"rnn_dynamics"` and the key prefix `rnn_dynamics:`; the CNN group's training
//! runs are sweep lines with `"experiment":"cnn_accuracy_vs_channels"` and its alignment runs
//! alignment lines with `"experiment":"cnn_alignment"` (`"width"` holding the channel count;
//! they run last, so adding the group to a finished folder only appends) ; the infinite-width
//! predictions are [`LimitLine`]s keyed `limit:{"activation":"relu",…,"epochs":null,…}` by their
//! [`LimitSettings`] (the key is stored, and recomputed from the stored settings when the file
//! is read back). Resuming skips every run
//! and every line whose identity is already in the file, so `--resume` on a finished folder
//! only reads it back.
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use widealign_experiments::plan::{plan, Scale};
//! use widealign_experiments::reproduce::reproduce;
//! use widealign_experiments::Trainer;
//! let mut p = plan(Scale::Tiny, "digits", 0).unwrap();
//! p.accuracy.truncate(2); // a sample of the tiny plan, to keep the example short
//! p.add.truncate(1);
//! p.low_data.truncate(1);
//! p.align.truncate(1);
//! p.cnn.truncate(1);
//! p.cnn_align.truncate(1);
//! let dir = tempfile::tempdir().unwrap();
//! let done = reproduce(&p, dir.path(), false, &mut Trainer::new(), &mut (), &AtomicBool::new(false)).unwrap();
//! assert_eq!(done.results.runs.len(), 2 + 1 + 1 + 1);
//! assert_eq!(done.results.cnn_alignment.len(), 1);
//! assert_eq!((done.results.alignment.len(), done.results.dynamics.len()), (1, 1));
//! assert_eq!(done.results.rnn_alignment.len(), p.rnn_align.len());
//! assert_eq!(done.results.rnn_dynamics.len(), p.rnn_dynamics.len());
//! assert_eq!(done.results.limit.len(), 2); // t = ∞ and the runs' length
//! let run = done.results.run(&p.accuracy[0]).unwrap();
//! assert_eq!(run.experiment.as_deref(), Some("accuracy_vs_width"));
//! assert!(done.add_baseline > 0.0);
//! ```

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use widealign_models::Loss;
use widealign_ntk::align::LayerAlignment;
use widealign_ntk::experiment::DynamicsReport;
use widealign_rules::{ModelKind, Progress, TrainConfig, TrainResult};
use widealign_tensor::Mat;

use crate::align::{align_run, AlignRun};
use crate::dynamics::{run_dynamics, DynamicsParams};
use crate::limit::{predict_limit, LimitPrediction, LimitSettings};
use crate::plan::{Experiment, Plan};
use crate::record::{RunRecord, VERSION};
use crate::sweep::{run_sweep, RunExecutor, Shard, SweepEvent, SweepPlan};
use crate::trainer::Observer;
use crate::{config, results, ExperimentError, Trainer};

/// The results file of a reproduction inside its folder.
pub const RESULTS_FILE: &str = "results.jsonl";

fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn vec_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Vec::<Option<f64>>::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

fn vec_vec_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
    let v = Vec::<Vec<Option<f64>>>::deserialize(d)?;
    Ok(v.into_iter()
        .map(|r| r.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
        .collect())
}

/// The alignment of one layer as stored in a results line: the fields of the NTK crate's
/// [`LayerAlignment`] (which is written, but cannot be read back: it has no `Deserialize`).
/// NaN (a diverged run) is stored as `null`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerScores {
    /// Layer `l` (1-based).
    pub layer: usize,
    /// Alignment score of the trained change with the predicted one.
    #[serde(deserialize_with = "f64_or_nan")]
    pub score: f64,
    /// Its estimate from Gaussian probes.
    #[serde(deserialize_with = "f64_or_nan")]
    pub probe_score: f64,
    /// Score of the change with its entries shuffled (control).
    #[serde(deserialize_with = "f64_or_nan")]
    pub shuffled: f64,
    /// Score of a random matrix (control).
    #[serde(deserialize_with = "f64_or_nan")]
    pub random: f64,
    /// Score of the reference code's control `shuffle(W_trained) − W_0` (NaN in lines written
    /// before it existed).
    #[serde(default = "nan", deserialize_with = "f64_or_nan")]
    pub shuffled_trained: f64,
    /// Fraction of `‖ΔW‖²` in the span of the layer's initial training activities.
    #[serde(deserialize_with = "f64_or_nan")]
    pub input_span: f64,
    /// Dimension of that span (absent in lines written before it was stored).
    #[serde(default)]
    pub span_rank: Option<usize>,
    /// The layer's input dimension: the fraction is trivially 1 when the span has it.
    #[serde(default)]
    pub span_dim: Option<usize>,
}

fn nan() -> f64 {
    f64::NAN
}

impl LayerScores {
    /// Whether the input-span fraction is informative: the initial training activities do not
    /// span the layer's whole input space (fewer independent examples than input dimensions).
    /// `None` when the line does not say (written before the span's rank was stored).
    pub fn span_informative(&self) -> Option<bool> {
        Some(self.span_rank? < self.span_dim?)
    }
}

impl From<&LayerAlignment> for LayerScores {
    fn from(l: &LayerAlignment) -> Self {
        LayerScores {
            layer: l.layer,
            score: l.score,
            probe_score: l.probe_score,
            shuffled: l.shuffled,
            random: l.random,
            shuffled_trained: l.shuffled_trained,
            input_span: l.input_span,
            span_rank: Some(l.span_rank),
            span_dim: Some(l.span_dim),
        }
    }
}

/// Names of the RNN's weight matrices, by [`LayerScores::layer`] − 1 (the order of the NTK
/// crate's `AlignModel::weight_matrices` for the RNN).
pub const RNN_MATRICES: [&str; 3] = ["w_in", "w_rec", "w_out"];

/// The line of one alignment run (of the MLP `alignment` group or the `rnn_alignment` group).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlignmentLine {
    /// Version that wrote the line.
    pub widealign_version: String,
    /// `"alignment"` or `"rnn_alignment"`.
    pub experiment: String,
    /// Identity of the line ([`alignment_key`]).
    pub key: String,
    /// The run's settings.
    pub settings: TrainConfig,
    /// Hidden width (the channel count for `"cnn_alignment"` lines).
    pub width: usize,
    /// Final test accuracy of the run.
    pub test_accuracy: Option<f64>,
    /// Whether the run diverged.
    pub diverged: bool,
    /// Per-layer alignment, layer 1 first (for the RNN: `W_in`, `W_rec`, `W_out`, see
    /// [`RNN_MATRICES`]).
    pub layers: Vec<LayerScores>,
}

/// Relative errors of a dynamics experiment as stored in a results line (a part of the NTK
/// crate's `DynamicsErrors`, which cannot be read back).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct DynamicsErrors {
    /// Weight-norm error `[width][layer]`.
    #[serde(deserialize_with = "vec_vec_or_nan")]
    pub weight_norm: Vec<Vec<f64>>,
    /// Weight-direction error `[width][layer]`.
    #[serde(deserialize_with = "vec_vec_or_nan")]
    pub weight_direction: Vec<Vec<f64>>,
    /// Function error `[width]`.
    #[serde(deserialize_with = "vec_or_nan")]
    pub function: Vec<f64>,
}

/// Fitted log-log slopes of the three errors against the width.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
pub struct DynamicsSlopes {
    /// Weight-norm error.
    #[serde(deserialize_with = "f64_or_nan")]
    pub weight_norm: f64,
    /// Weight-direction error.
    #[serde(deserialize_with = "f64_or_nan")]
    pub weight_direction: f64,
    /// Function error.
    #[serde(deserialize_with = "f64_or_nan")]
    pub function: f64,
}

/// The part of a stored [`DynamicsReport`] a report shows (the line holds all of it).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DynamicsSummary {
    /// Simulated widths.
    pub widths: Vec<usize>,
    /// Relative errors.
    pub errors: DynamicsErrors,
    /// Fitted slopes.
    pub slopes: DynamicsSlopes,
    /// Largest stable learning rate of the analytic kernel.
    #[serde(deserialize_with = "f64_or_nan")]
    pub max_stable_lr: f64,
    /// Hidden layers.
    pub hidden_layers: usize,
    /// Gradient-descent steps.
    pub steps: u64,
    /// Learning rate.
    pub lr: f64,
    /// Training points (sequences for the RNN).
    pub train_size: usize,
    /// Time steps of the training sequences (RNN lines; absent or `null` for the MLP).
    #[serde(default)]
    pub seq_len: Option<usize>,
}

/// The settings that identify a dynamics line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynamicsSettings {
    /// Dataset, architecture and optimiser settings.
    pub config: TrainConfig,
    /// Simulated widths.
    pub widths: Vec<usize>,
    /// Gradient-descent steps.
    pub steps: u64,
}

impl From<&DynamicsParams> for DynamicsSettings {
    fn from(p: &DynamicsParams) -> Self {
        DynamicsSettings {
            config: p.cfg.clone(),
            widths: p.widths.clone(),
            steps: p.steps,
        }
    }
}

/// The line of one dynamics experiment, as read back.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DynamicsLine {
    /// Version that wrote the line.
    pub widealign_version: String,
    /// `"dynamics"` or `"rnn_dynamics"` (weight matrices `W_in`, `W_rec`, `W_out`,
    /// [`RNN_MATRICES`]).
    pub experiment: String,
    /// Identity of the line ([`dynamics_key`]).
    pub key: String,
    /// The experiment's settings.
    pub settings: DynamicsSettings,
    /// Activation name.
    pub activation: String,
    /// The results.
    pub report: DynamicsSummary,
}

/// The line of one dynamics experiment, as written (the whole report).
#[derive(Serialize)]
struct DynamicsLineOut<'a> {
    widealign_version: &'a str,
    experiment: &'a str,
    key: &'a str,
    settings: &'a DynamicsSettings,
    activation: &'a str,
    report: &'a DynamicsReport,
}

/// The line of one infinite-width prediction ([`crate::limit`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitLine {
    /// Version that wrote the line.
    pub widealign_version: String,
    /// `"limit"`.
    pub experiment: String,
    /// Identity of the line ([`limit_key`]).
    pub key: String,
    /// The prediction's settings.
    pub settings: LimitSettings,
    /// What it gave.
    pub prediction: LimitPrediction,
}

/// `prefix:` and the serialised form of `settings` with sorted keys.
fn sorted_key(prefix: &str, settings: &impl Serialize) -> String {
    // serde_json's `Value` keeps object keys sorted
    let v = serde_json::to_value(settings).unwrap_or_default();
    format!("{prefix}:{v}")
}

/// The identity of the alignment line of run `cfg`.
pub fn alignment_key(cfg: &TrainConfig) -> String {
    sorted_key(Experiment::Alignment.name(), cfg)
}

/// The identity of the RNN alignment line of run `cfg`.
pub fn rnn_alignment_key(cfg: &TrainConfig) -> String {
    sorted_key(Experiment::RnnAlignment.name(), cfg)
}

/// The identity of the CNN alignment line of run `cfg`.
pub fn cnn_alignment_key(cfg: &TrainConfig) -> String {
    sorted_key(Experiment::CnnAlignment.name(), cfg)
}

/// The identity of the line of dynamics experiment `p`.
pub fn dynamics_key(p: &DynamicsParams) -> String {
    sorted_key(Experiment::Dynamics.name(), &DynamicsSettings::from(p))
}

/// The identity of the line of RNN dynamics experiment `p`.
pub fn rnn_dynamics_key(p: &DynamicsParams) -> String {
    sorted_key(Experiment::RnnDynamics.name(), &DynamicsSettings::from(p))
}

/// The identity of the line of infinite-width prediction `s`.
pub fn limit_key(s: &LimitSettings) -> String {
    sorted_key(Experiment::Limit.name(), s)
}

/// One results line as JSON text with sorted keys.
fn line(v: &impl Serialize) -> Result<String, ExperimentError> {
    serde_json::to_value(v)
        .map(|v| v.to_string())
        .map_err(|e| ExperimentError::Internal(format!("cannot serialise a results line: {e}")))
}

/// The contents of a reproduction's results file, typed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReproResults {
    /// Training runs, in file order.
    pub runs: Vec<RunRecord>,
    /// Alignment runs, in file order.
    pub alignment: Vec<AlignmentLine>,
    /// RNN alignment runs on the Add task, in file order.
    pub rnn_alignment: Vec<AlignmentLine>,
    /// Dynamics experiments, in file order.
    pub dynamics: Vec<DynamicsLine>,
    /// RNN dynamics experiments, in file order.
    pub rnn_dynamics: Vec<DynamicsLine>,
    /// CNN alignment runs, in file order (per line: the kernels `conv1..convL`, then the
    /// readout).
    pub cnn_alignment: Vec<AlignmentLine>,
    /// Infinite-width predictions, in file order.
    pub limit: Vec<LimitLine>,
    /// Lines in the file (including lines of other kinds, which are kept out of the above).
    pub lines: usize,
    by_key: HashMap<String, usize>,
}

impl ReproResults {
    /// Reads a results file (a missing file holds nothing).
    ///
    /// # Errors
    /// As [`results::read_lines`]; [`ExperimentError::BadInput`] naming the line if a training,
    /// alignment or dynamics line does not have the expected fields.
    pub fn read(path: &Path) -> Result<Self, ExperimentError> {
        let values = results::read_lines(path)?;
        let mut r = ReproResults::default();
        for (n, v) in values {
            r.push(v)
                .map_err(|e| ExperimentError::BadInput(format!("{}:{n}: {e}", path.display())))?;
        }
        Ok(r)
    }

    /// Adds one results line: a training record (it has a `"config"`), an alignment, RNN
    /// alignment or dynamics line (by its `"experiment"`); other lines are only counted.
    ///
    /// # Errors
    /// The line does not have the fields of its kind.
    pub fn push(&mut self, v: Value) -> Result<(), serde_json::Error> {
        self.lines += 1;
        if v.get("config").is_some() {
            let record: RunRecord = serde_json::from_value(v)?;
            // a later line for the same run wins
            self.by_key
                .insert(config::key(&record.config), self.runs.len());
            self.runs.push(record);
        } else if v["experiment"] == Experiment::Alignment.name() {
            self.alignment.push(serde_json::from_value(v)?);
        } else if v["experiment"] == Experiment::RnnAlignment.name() {
            self.rnn_alignment.push(serde_json::from_value(v)?);
        } else if v["experiment"] == Experiment::Dynamics.name() {
            self.dynamics.push(serde_json::from_value(v)?);
        } else if v["experiment"] == Experiment::RnnDynamics.name() {
            self.rnn_dynamics.push(serde_json::from_value(v)?);
        } else if v["experiment"] == Experiment::CnnAlignment.name() {
            self.cnn_alignment.push(serde_json::from_value(v)?);
        } else if v["experiment"] == Experiment::Limit.name() {
            self.limit.push(serde_json::from_value(v)?);
        }
        Ok(())
    }

    /// The training record of run `cfg` (the last one if there are several).
    pub fn run(&self, cfg: &TrainConfig) -> Option<&RunRecord> {
        self.by_key.get(&config::key(cfg)).map(|&i| &self.runs[i])
    }

    /// The result of run `cfg`.
    pub fn result(&self, cfg: &TrainConfig) -> Option<&TrainResult> {
        self.run(cfg).map(|r| &r.result)
    }

    /// The first alignment line of width `width`.
    pub fn alignment_at(&self, width: usize) -> Option<&AlignmentLine> {
        self.alignment.iter().find(|a| a.width == width)
    }

    /// The first RNN alignment line of width `width`.
    pub fn rnn_alignment_at(&self, width: usize) -> Option<&AlignmentLine> {
        self.rnn_alignment.iter().find(|a| a.width == width)
    }

    /// The last infinite-width prediction with settings `s`.
    pub fn limit_of(&self, s: &LimitSettings) -> Option<&LimitLine> {
        self.limit.iter().rev().find(|l| &l.settings == s)
    }

    /// Identities of the alignment, RNN alignment, dynamics and limit lines, computed from their settings as read
    /// (so a line written before a config field existed matches a config with its default).
    fn keys(&self) -> HashSet<String> {
        self.alignment
            .iter()
            .map(|a| alignment_key(&a.settings))
            .chain(
                self.rnn_alignment
                    .iter()
                    .map(|a| rnn_alignment_key(&a.settings)),
            )
            .chain(
                self.dynamics
                    .iter()
                    .map(|d| sorted_key(Experiment::Dynamics.name(), &d.settings)),
            )
            .chain(
                self.rnn_dynamics
                    .iter()
                    .map(|d| sorted_key(Experiment::RnnDynamics.name(), &d.settings)),
            )
            .chain(
                self.cnn_alignment
                    .iter()
                    .map(|a| cnn_alignment_key(&a.settings)),
            )
            .chain(self.limit.iter().map(|l| limit_key(&l.settings)))
            .collect()
    }
}

/// Milestones of a reproduction (the training groups report through
/// [`ReproduceObserver::sweep_event`]).
#[derive(Clone, Copy, Debug)]
pub enum ReproduceEvent<'a> {
    /// The output folder is ready and the runs start.
    Started {
        /// The output folder.
        dir: &'a Path,
        /// Its results file.
        results: &'a Path,
    },
    /// Alignment run `index` of `total` of group `experiment` starts.
    AlignmentStarting {
        /// [`Experiment::Alignment`], [`Experiment::RnnAlignment`] or
        /// [`Experiment::CnnAlignment`].
        experiment: Experiment,
        /// Position in [`Plan::align`], [`Plan::rnn_align`] or [`Plan::cnn_align`].
        index: usize,
        /// Alignment runs in the plan.
        total: usize,
        /// Its settings.
        config: &'a TrainConfig,
    },
    /// An alignment run finished and its line was written.
    AlignmentFinished {
        /// Its group.
        experiment: Experiment,
        /// Its settings.
        config: &'a TrainConfig,
        /// Its result.
        run: &'a AlignRun,
    },
    /// All alignment runs of group `experiment` are in the file.
    AlignmentDone {
        /// [`Experiment::Alignment`] or [`Experiment::RnnAlignment`].
        experiment: Experiment,
    },
    /// A dynamics experiment starts.
    DynamicsStarting {
        /// Its settings.
        params: &'a DynamicsParams,
    },
    /// A dynamics experiment finished and its line was written.
    DynamicsFinished {
        /// Its settings.
        params: &'a DynamicsParams,
        /// Its result.
        report: &'a DynamicsReport,
    },
    /// Infinite-width prediction `index` of `total` starts.
    LimitStarting {
        /// Position in [`Plan::limit`].
        index: usize,
        /// Predictions in the plan.
        total: usize,
        /// Its settings.
        settings: &'a LimitSettings,
    },
    /// An infinite-width prediction finished and its line was written.
    LimitFinished {
        /// Its settings.
        settings: &'a LimitSettings,
        /// Its result.
        prediction: &'a LimitPrediction,
    },
    /// An infinite-width prediction was not made because its memory plan exceeds the machine's
    /// available memory (no line is written; a later `--resume` tries again).
    LimitSkipped {
        /// Its settings.
        settings: &'a LimitSettings,
        /// The memory plan's refusal, saying what would fit.
        reason: &'a str,
    },
}

/// Hears the progress of [`reproduce`]; every method has a default that ignores it (`()` is
/// the silent observer).
pub trait ReproduceObserver {
    /// A training run (of a group or of an alignment width) starts.
    fn run_started(&mut self, cfg: &TrainConfig) {
        let _ = cfg;
    }
    /// Progress of the current training run; `false` stops it and ends the reproduction with
    /// [`ExperimentError::Interrupted`].
    fn run_progress(&mut self, progress: &Progress<'_>) -> bool {
        let _ = progress;
        true
    }
    /// The current training run ended (finished, diverged, failed or stopped).
    fn run_ended(&mut self) {}
    /// What the sweep of a group of training runs is doing.
    fn sweep_event(&mut self, event: &SweepEvent<'_>) {
        let _ = event;
    }
    /// A milestone: the start, and the alignment, RNN alignment, dynamics and limit experiments.
    fn event(&mut self, event: &ReproduceEvent<'_>) {
        let _ = event;
    }
}

impl ReproduceObserver for () {}

/// The sweep executor of a reproduction: the trainer, reporting to the observer.
struct Executor<'a> {
    trainer: &'a mut Trainer,
    observer: &'a mut dyn ReproduceObserver,
}

impl RunExecutor for Executor<'_> {
    fn execute(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
    ) -> Result<TrainResult, ExperimentError> {
        let Executor {
            trainer,
            observer: o,
        } = self;
        o.run_started(cfg);
        let r = trainer.run(cfg, &mut |p| o.run_progress(p) && observer(p));
        o.run_ended();
        r
    }

    fn event(&mut self, event: &SweepEvent<'_>) {
        self.observer.sweep_event(event);
    }
}

/// What [`reproduce`] produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Reproduction {
    /// The results file.
    pub results_path: PathBuf,
    /// Its contents after the reproduction.
    pub results: ReproResults,
    /// The Add task's test loss of always predicting 0.5 ([`add_baseline_loss`]).
    pub add_baseline: f64,
}

/// Runs everything in `plan` that `dir`'s results file does not hold yet: the three groups of
/// training runs, the alignment runs, the RNN alignment runs, the dynamics experiments, the
/// CNN group (its training runs, then its alignment runs) and the infinite-width predictions,
/// in that order, appending one line each (a prediction whose memory plan does not fit is
/// skipped with [`ReproduceEvent::LimitSkipped`]). Returns the file's contents.
///
/// # Errors
/// [`ExperimentError::ResultsExist`] when the results file is not empty and `resume` is false;
/// [`ExperimentError::Interrupted`] when `stop` is raised or the observer stops a run (the
/// file then holds every finished line); any error of a run, of the results file or of the
/// output folder.
pub fn reproduce(
    plan: &Plan,
    dir: &Path,
    resume: bool,
    trainer: &mut Trainer,
    observer: &mut dyn ReproduceObserver,
    stop: &AtomicBool,
) -> Result<Reproduction, ExperimentError> {
    let path = dir.join(RESULTS_FILE);
    if !resume && std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        return Err(ExperimentError::ResultsExist { path });
    }
    std::fs::create_dir_all(dir).map_err(|source| ExperimentError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    observer.event(&ReproduceEvent::Started {
        dir,
        results: &path,
    });
    for (experiment, runs) in plan.training_groups() {
        let sweep = SweepPlan {
            runs,
            shard: Shard::WHOLE,
            out: &path,
            // the file was checked above; later groups append to the same file
            resume: true,
            experiment: Some(experiment.name()),
            checkpoints: None,
        };
        let mut exec = Executor {
            trainer: &mut *trainer,
            observer: &mut *observer,
        };
        let summary = run_sweep(&sweep, &mut exec, stop)?;
        if summary.interrupted {
            return Err(ExperimentError::Interrupted);
        }
    }
    let before = ReproResults::read(&path)?;
    let done = before.keys();
    for (experiment, runs) in [
        (Experiment::Alignment, &plan.align),
        (Experiment::RnnAlignment, &plan.rnn_align),
    ] {
        alignment_group(experiment, runs, &done, &path, trainer, observer, stop)?;
    }
    for (experiment, params) in [
        (Experiment::Dynamics, &plan.dynamics),
        (Experiment::RnnDynamics, &plan.rnn_dynamics),
    ] {
        dynamics_group(experiment, params, &done, &path, trainer, observer, stop)?;
    }
    cnn_group(plan, &done, &path, trainer, observer, stop)?;
    limit_group(&plan.limit, &done, &path, trainer, observer, stop)?;
    let add_baseline = add_baseline_loss(trainer, plan.seed)?;
    Ok(Reproduction {
        results: ReproResults::read(&path)?,
        results_path: path,
        add_baseline,
    })
}

/// The CNN group: its training runs through the sweep engine (experiment
/// `cnn_accuracy_vs_channels`), then its alignment runs whose key is not in `done`.
fn cnn_group(
    plan: &Plan,
    done: &HashSet<String>,
    path: &Path,
    trainer: &mut Trainer,
    observer: &mut dyn ReproduceObserver,
    stop: &AtomicBool,
) -> Result<(), ExperimentError> {
    let sweep = SweepPlan {
        runs: &plan.cnn,
        shard: Shard::WHOLE,
        out: path,
        resume: true,
        experiment: Some(Experiment::CnnAccuracy.name()),
        checkpoints: None,
    };
    let mut exec = Executor {
        trainer: &mut *trainer,
        observer: &mut *observer,
    };
    if run_sweep(&sweep, &mut exec, stop)?.interrupted {
        return Err(ExperimentError::Interrupted);
    }
    alignment_group(
        Experiment::CnnAlignment,
        &plan.cnn_align,
        done,
        path,
        trainer,
        observer,
        stop,
    )
}

/// The key of the line of `settings` in group `experiment`, or `None` if `done` holds it.
///
/// # Errors
/// [`ExperimentError::Interrupted`] if the line is still to run and `stop` is raised.
fn next_key(
    experiment: Experiment,
    settings: &impl Serialize,
    done: &HashSet<String>,
    stop: &AtomicBool,
) -> Result<Option<String>, ExperimentError> {
    let key = sorted_key(experiment.name(), settings);
    if done.contains(&key) {
        Ok(None)
    } else if stop.load(Ordering::SeqCst) {
        Err(ExperimentError::Interrupted)
    } else {
        Ok(Some(key))
    }
}

/// Runs the alignment runs `runs` of group `experiment` whose key is not in `done`, appending
/// one [`AlignmentLine`] each to `path`.
fn alignment_group(
    experiment: Experiment,
    runs: &[TrainConfig],
    done: &HashSet<String>,
    path: &Path,
    trainer: &mut Trainer,
    observer: &mut dyn ReproduceObserver,
    stop: &AtomicBool,
) -> Result<(), ExperimentError> {
    let stopped = || stop.load(Ordering::SeqCst);
    for (index, cfg) in runs.iter().enumerate() {
        let Some(key) = next_key(experiment, cfg, done, stop)? else {
            continue;
        };
        observer.event(&ReproduceEvent::AlignmentStarting {
            experiment,
            index,
            total: runs.len(),
            config: cfg,
        });
        observer.run_started(cfg);
        let run = align_run(cfg, trainer, &mut |p| {
            observer.run_progress(p) && !stopped()
        });
        observer.run_ended();
        let run = run?;
        let out = AlignmentLine {
            widealign_version: VERSION.to_string(),
            experiment: experiment.name().to_string(),
            key,
            settings: cfg.clone(),
            width: match cfg.model {
                ModelKind::Cnn => cfg.channels,
                ModelKind::Mlp | ModelKind::Rnn => cfg.width,
            },
            test_accuracy: run.result.test_accuracy,
            diverged: run.result.diverged,
            layers: run.layers.iter().map(LayerScores::from).collect(),
        };
        results::append(path, &line(&out)?)?;
        observer.event(&ReproduceEvent::AlignmentFinished {
            experiment,
            config: cfg,
            run: &run,
        });
    }
    observer.event(&ReproduceEvent::AlignmentDone { experiment });
    Ok(())
}

/// Runs the dynamics experiments `params` of group `experiment` whose key is not in `done`,
/// appending one dynamics line each to `path`.
fn dynamics_group(
    experiment: Experiment,
    params: &[DynamicsParams],
    done: &HashSet<String>,
    path: &Path,
    trainer: &mut Trainer,
    observer: &mut dyn ReproduceObserver,
    stop: &AtomicBool,
) -> Result<(), ExperimentError> {
    for p in params {
        let settings = DynamicsSettings::from(p);
        let Some(key) = next_key(experiment, &settings, done, stop)? else {
            continue;
        };
        observer.event(&ReproduceEvent::DynamicsStarting { params: p });
        let report = run_dynamics(p, trainer)?;
        let out = DynamicsLineOut {
            widealign_version: VERSION,
            experiment: experiment.name(),
            key: &key,
            settings: &settings,
            activation: p.cfg.activation.name(),
            report: &report,
        };
        results::append(path, &line(&out)?)?;
        observer.event(&ReproduceEvent::DynamicsFinished {
            params: p,
            report: &report,
        });
    }
    Ok(())
}

/// Makes the infinite-width predictions `settings` whose key is not in `done`, appending one
/// [`LimitLine`] each to `path`; a prediction refused by its memory plan is skipped.
fn limit_group(
    settings: &[LimitSettings],
    done: &HashSet<String>,
    path: &Path,
    trainer: &mut Trainer,
    observer: &mut dyn ReproduceObserver,
    stop: &AtomicBool,
) -> Result<(), ExperimentError> {
    for (index, s) in settings.iter().enumerate() {
        let Some(key) = next_key(Experiment::Limit, s, done, stop)? else {
            continue;
        };
        observer.event(&ReproduceEvent::LimitStarting {
            index,
            total: settings.len(),
            settings: s,
        });
        let prediction = match predict_limit(s, trainer, &|_, _| {}) {
            Err(ExperimentError::Ntk(e @ widealign_ntk::NtkError::TooLarge { .. })) => {
                observer.event(&ReproduceEvent::LimitSkipped {
                    settings: s,
                    reason: &e.to_string(),
                });
                continue;
            }
            r => r?,
        };
        let out = LimitLine {
            widealign_version: VERSION.to_string(),
            experiment: Experiment::Limit.name().to_string(),
            key,
            settings: s.clone(),
            prediction,
        };
        results::append(path, &line(&out)?)?;
        observer.event(&ReproduceEvent::LimitFinished {
            settings: s,
            prediction: &out.prediction,
        });
    }
    Ok(())
}

/// The Add task's test loss of always predicting 0.5 (the loss of training: per-step MSE
/// summed over the steps, mean over sequences); NaN if the task has no sequences.
///
/// # Errors
/// Dataset and loss errors.
pub fn add_baseline_loss(trainer: &mut Trainer, seed: u64) -> Result<f64, ExperimentError> {
    let cfg = TrainConfig {
        model: ModelKind::Rnn,
        dataset: "add".into(),
        seed,
        ..TrainConfig::default()
    };
    let data = trainer.dataset(&cfg)?;
    let Some(test) = data.test.as_sequences() else {
        return Ok(f64::NAN);
    };
    let outputs: Vec<Mat<f32>> = test
        .y
        .iter()
        .map(|y| Mat::from_element(y.nrows(), y.ncols(), 0.5))
        .collect();
    let (loss, _) = Loss::Mse.evaluate_sequence(&outputs, &test.y)?;
    Ok(loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, Scale};
    use widealign_rules::RuleKind;

    /// Counts the runs a reproduction trains.
    struct Count(usize);
    impl ReproduceObserver for Count {
        fn run_started(&mut self, _: &TrainConfig) {
            self.0 += 1;
        }
    }

    #[test]
    fn keys_are_the_sorted_settings() {
        let p = plan(Scale::Quick, "digits", 0).unwrap();
        assert_eq!(
            alignment_key(&p.align[0]),
            r#"alignment:{"activation":"relu","b_std":0.1,"batch_size":100,"dataset":"digits","depth":2,"epochs":100,"lr":5.0,"model":"mlp","optimizer":"sgd","param":"ntk","rule":"bp","seed":0,"train_size":null,"w_std":1.0,"width":64}"#
        );
        assert_eq!(
            dynamics_key(&p.dynamics[0]),
            r#"dynamics:{"config":{"activation":"erf","b_std":0.1,"batch_size":100,"dataset":"teacher","depth":2,"epochs":10,"lr":0.1,"model":"mlp","optimizer":"sgd","param":"ntk","rule":"bp","seed":0,"train_size":64,"w_std":1.0,"width":1024},"steps":200,"widths":[64,256,1024]}"#
        );
    }

    /// The published digits results are the quick plan with 3 seeds: every cell of every group
    /// is there (run identities are stable), and nothing else.
    #[test]
    fn published_digits_results_hold_every_cell_of_the_three_seed_plan() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reproduction");
        let r = ReproResults::read(&root.join(RESULTS_FILE)).unwrap();
        let p = plan(Scale::Quick, "digits", 0)
            .unwrap()
            .with_seeds(3)
            .unwrap();
        let mut expected = 0;
        for (experiment, runs) in p.training_groups() {
            for c in runs {
                let run = r
                    .run(c)
                    .unwrap_or_else(|| panic!("{} missing", config::key(c)));
                assert_eq!(run.experiment.as_deref(), Some(experiment.name()));
                expected += 1;
            }
        }
        let keys = r.keys();
        for c in &p.align {
            assert!(
                keys.contains(&alignment_key(c)),
                "{} missing",
                alignment_key(c)
            );
        }
        for c in &p.rnn_align {
            assert!(keys.contains(&rnn_alignment_key(c)));
        }
        for d in &p.dynamics {
            assert!(keys.contains(&dynamics_key(d)));
        }
        for d in &p.rnn_dynamics {
            assert!(keys.contains(&rnn_dynamics_key(d)));
        }
        for c in &p.cnn {
            let run = r
                .run(c)
                .unwrap_or_else(|| panic!("{} missing", config::key(c)));
            assert_eq!(
                run.experiment.as_deref(),
                Some(Experiment::CnnAccuracy.name())
            );
        }
        for c in &p.cnn_align {
            assert!(keys.contains(&cnn_alignment_key(c)));
        }
        expected += p.align.len() + p.rnn_align.len() + p.dynamics.len() + p.rnn_dynamics.len();
        expected += p.cnn.len() + p.cnn_align.len();
        for l in &p.limit {
            assert!(keys.contains(&limit_key(l)), "{} missing", limit_key(l));
        }
        expected += p.limit.len();
        assert_eq!(r.lines, expected);
        // every alignment line carries the reference code's third control
        for a in &r.alignment {
            assert!(a.layers.iter().all(|l| l.shuffled_trained.is_finite()));
        }
    }

    /// The published Fashion-MNIST results (one seed, written before the alignment runs moved
    /// to the reference's lr 5 / epoch 100) read back as typed results, every line accounted for.
    #[test]
    fn published_results_read_back() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reproduction");
        for (dir, dataset) in [(root.join("fashion-mnist"), "fashion-mnist")] {
            let r = ReproResults::read(&dir.join(RESULTS_FILE)).unwrap();
            let p = plan(Scale::Quick, dataset, 0).unwrap();
            assert_eq!(r.lines, 62);
            assert_eq!(
                (
                    r.runs.len(),
                    r.alignment.len(),
                    r.rnn_alignment.len(),
                    r.dynamics.len(),
                    r.rnn_dynamics.len()
                ),
                (54, 3, 3, 1, 1)
            );
            for (experiment, runs) in p.training_groups() {
                for c in runs {
                    let run = r
                        .run(c)
                        .unwrap_or_else(|| panic!("{} missing", config::key(c)));
                    assert_eq!(run.experiment.as_deref(), Some(experiment.name()));
                    assert_eq!(run.result.width, c.width);
                }
            }
            let keys = r.keys();
            // The published files predate the alignment runs at the reference's lr 5 / epoch
            // 100 and on 100 examples (until they are regenerated, their alignment lines are the
            // earlier lr-1 runs, which read back with their own keys below).
            assert_eq!(r.alignment.len(), 3);
            for c in &p.rnn_align {
                assert!(keys.contains(&rnn_alignment_key(c)));
            }
            assert!(keys.contains(&dynamics_key(&p.dynamics[0])));
            // the stored keys are the ones computed from the settings
            for a in r.alignment.iter().chain(&r.rnn_alignment) {
                assert!(keys.contains(&a.key));
            }
            assert!(keys.contains(&r.dynamics[0].key));
            // lines written before the third control and the span's rank read back as unknown
            let l0 = &r.alignment[0].layers[0];
            assert!(l0.shuffled_trained.is_nan() && l0.span_informative().is_none());
            let d = &r.dynamics[0].report;
            assert_eq!(d.widths, [64, 256, 1024]);
            assert_eq!(d.errors.weight_norm.len(), 3);
            assert!(d.slopes.function < 0.0);
        }
    }

    #[test]
    fn nan_alignment_reads_back_as_nan() {
        let cfg = TrainConfig::default();
        let l = AlignmentLine {
            widealign_version: VERSION.into(),
            experiment: "alignment".into(),
            key: alignment_key(&cfg),
            settings: cfg,
            width: 1024,
            test_accuracy: None,
            diverged: true,
            layers: vec![LayerScores {
                layer: 1,
                score: f64::NAN,
                probe_score: f64::NAN,
                shuffled: f64::NAN,
                random: f64::NAN,
                shuffled_trained: f64::NAN,
                input_span: f64::NAN,
                span_rank: None,
                span_dim: None,
            }],
        };
        let text = line(&l).unwrap();
        assert!(
            text.starts_with("{\"diverged\":true,\"experiment\""),
            "sorted keys: {text}"
        );
        let mut r = ReproResults::default();
        r.push(serde_json::from_str(&text).unwrap()).unwrap();
        assert!(r.alignment_at(1024).unwrap().layers[0].score.is_nan());
        assert!(r.alignment_at(64).is_none());
    }

    /// `p` with every group empty (a test fills in the one it exercises).
    fn emptied(p: Plan) -> Plan {
        Plan {
            accuracy: Vec::new(),
            add: Vec::new(),
            low_data: Vec::new(),
            align: Vec::new(),
            rnn_align: Vec::new(),
            dynamics: Vec::new(),
            rnn_dynamics: Vec::new(),
            cnn: Vec::new(),
            cnn_align: Vec::new(),
            limit: Vec::new(),
            ..p
        }
    }

    /// The RNN alignment group writes one line per width, and resuming does not retrain it.
    #[test]
    fn rnn_alignment_runs_once_and_resumes() {
        let tiny = plan(Scale::Tiny, "digits", 0).unwrap();
        let p = Plan {
            rnn_align: tiny.rnn_align.clone(),
            ..emptied(tiny)
        };
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let mut trainer = Trainer::new();
        let done = reproduce(&p, dir.path(), false, &mut trainer, &mut (), &stop).unwrap();
        let r = &done.results;
        assert_eq!(r.lines, p.rnn_align.len());
        assert_eq!(r.rnn_alignment.len(), p.rnn_align.len());
        for c in &p.rnn_align {
            let l = r.rnn_alignment_at(c.width).unwrap();
            assert_eq!(l.experiment, "rnn_alignment");
            assert_eq!(l.key, rnn_alignment_key(c));
            let names: Vec<usize> = l.layers.iter().map(|l| l.layer).collect();
            assert_eq!(names, [1, 2, 3]);
            // W_in is n×1 on the Add task: its score is 1
            assert!((l.layers[0].score - 1.0).abs() < 1e-9);
        }
        let mut count = Count(0);
        let again = reproduce(&p, dir.path(), true, &mut trainer, &mut count, &stop).unwrap();
        assert_eq!(count.0, 0, "resume retrains nothing");
        assert_eq!(again.results.lines, p.rnn_align.len());
    }

    /// The CNN group writes its training runs and one alignment line per channel count (the
    /// kernels and the readout), after every other group, and resuming retrains nothing.
    #[test]
    fn cnn_group_runs_last_once_and_resumes() {
        let tiny = plan(Scale::Tiny, "digits", 0).unwrap();
        let p = Plan {
            dynamics: tiny.dynamics[..1].to_vec(),
            cnn: tiny
                .cnn
                .iter()
                .filter(|c| matches!(c.rule, RuleKind::Bp | RuleKind::AlignZero))
                .cloned()
                .collect(),
            cnn_align: tiny.cnn_align.clone(),
            ..emptied(tiny)
        };
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let mut trainer = Trainer::new();
        let done = reproduce(&p, dir.path(), false, &mut trainer, &mut (), &stop).unwrap();
        let r = &done.results;
        assert_eq!(r.lines, 1 + p.cnn.len() + p.cnn_align.len());
        let text = std::fs::read_to_string(&done.results_path).unwrap();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains("\"experiment\":\"dynamics\""),
            "the CNN group runs after the others"
        );
        for c in &p.cnn {
            let run = r.run(c).unwrap();
            assert_eq!(run.experiment.as_deref(), Some("cnn_accuracy_vs_channels"));
        }
        assert_eq!(r.cnn_alignment.len(), p.cnn_channels.len());
        for (l, c) in r.cnn_alignment.iter().zip(&p.cnn_align) {
            assert_eq!((l.key.clone(), l.width), (cnn_alignment_key(c), c.channels));
            assert_eq!(l.layers.len(), c.conv_layers + 1);
            assert!(l.layers.iter().all(|x| x.score.is_finite()));
            // the bp cell of the accuracy runs and its alignment run train the same network
            let acc = r
                .result(&TrainConfig {
                    rule: RuleKind::Bp,
                    ..c.clone()
                })
                .unwrap();
            assert_eq!(l.test_accuracy, acc.test_accuracy);
        }
        let mut count = Count(0);
        let again = reproduce(&p, dir.path(), true, &mut trainer, &mut count, &stop).unwrap();
        assert_eq!(count.0, 0, "resume retrains nothing");
        assert_eq!(again.results, done.results);
    }

    /// The limit group writes one keyed line per prediction (`t = ∞`, then the runs' length),
    /// once for the plan whatever its seeds, and resuming does not compute them again.
    #[test]
    fn limit_lines_are_keyed_and_resume_without_recomputing() {
        let tiny = plan(Scale::Tiny, "digits", 0)
            .unwrap()
            .with_seeds(2)
            .unwrap();
        let p = Plan {
            limit: tiny.limit.clone(),
            ..emptied(tiny)
        };
        /// Counts the predictions a reproduction makes.
        struct Count(usize);
        impl ReproduceObserver for Count {
            fn event(&mut self, e: &ReproduceEvent<'_>) {
                if let ReproduceEvent::LimitStarting { .. } = e {
                    self.0 += 1;
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let mut trainer = Trainer::new();
        let mut count = Count(0);
        let done = reproduce(&p, dir.path(), false, &mut trainer, &mut count, &stop).unwrap();
        assert_eq!(count.0, 2, "once per spec, not per seed");
        let r = &done.results;
        assert_eq!((r.lines, r.limit.len()), (2, 2));
        for (s, l) in p.limit.iter().zip(&r.limit) {
            assert_eq!(l.key, limit_key(s));
            assert_eq!(&l.settings, s);
            assert_eq!(r.limit_of(s), Some(l));
            assert_eq!(l.experiment, "limit");
        }
        // tiny: 200 training examples, 1 epoch of batch 100
        assert_eq!(r.limit[0].prediction.time_steps, None);
        assert_eq!(r.limit[1].prediction.time_steps, Some(2.0));
        assert!(r.limit[0].key.starts_with(r#"limit:{"activation":"relu","b_std":0.1,"batch_size":100,"dataset":"digits","depth":2,"diag_reg":0.0001,"epochs":null,"#));
        let mut count = Count(0);
        let again = reproduce(&p, dir.path(), true, &mut trainer, &mut count, &stop).unwrap();
        assert_eq!(count.0, 0, "resume computes nothing");
        assert_eq!(again.results, done.results);
    }

    #[test]
    fn existing_results_are_refused_without_resume() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(RESULTS_FILE), "{}\n").unwrap();
        let p = plan(Scale::Tiny, "digits", 0).unwrap();
        let e = reproduce(
            &p,
            dir.path(),
            false,
            &mut Trainer::new(),
            &mut (),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(matches!(e, ExperimentError::ResultsExist { .. }));
        let stop = AtomicBool::new(true);
        let e = reproduce(&p, dir.path(), true, &mut Trainer::new(), &mut (), &stop).unwrap_err();
        assert!(matches!(e, ExperimentError::Interrupted));
    }
}
