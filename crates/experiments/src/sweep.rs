//! The sweep engine: a grid of training runs from a TOML file into a resumable, shardable
//! JSON-lines results file.
//!
//! # The sweep file
//!
//! ```toml
//! [base]              # settings shared by every run (TrainConfig keys, e.g. `batch_size`)
//! dataset = "digits"
//! epochs = 10
//! lr = 5.0
//!
//! [grid]              # lists; every combination is one run
//! rule = ["bp", "align-ada"]
//! width = [64, 256]
//! seed = [0, 1]
//! ```
//!
//! # Order
//!
//! Runs are the Cartesian product of the grid lists, enumerated with the keys in the order of
//! [`crate::config::fields`] (`model, dataset, rule, depth, width, activation, param,
//! optimizer, lr, batch_size, epochs, train_size, w_std, b_std, seed`) — the *last* key varies
//! fastest — and the values of one key in the order they are written. The order does not
//! depend on the order of keys in the file. Run `i` (0-based) belongs to shard `I/N` iff
//! `i mod N = I` ([`Shard`]).
//!
//! # Results and resumption
//!
//! Each finished run appends one [`RunRecord`] line ([`crate::results`]: whole lines only). A
//! resumed sweep cuts away a torn last line and skips every run whose identity
//! ([`crate::config::key`]) already has a line, so shards can be rerun, merged and resumed in
//! any order.
//!
//! ```
//! use std::path::Path;
//! use std::sync::atomic::AtomicBool;
//! use widealign_experiments::sweep::{run_sweep, Shard, SweepPlan, SweepSpec};
//! use widealign_experiments::Trainer;
//!
//! let spec = SweepSpec::parse(Path::new("inline.toml"), r#"
//!     [base]
//!     train_size = 100
//!     batch_size = 50
//!     epochs = 1
//!     width = 8
//!     [grid]
//!     rule = ["bp", "align-zero"]
//!     seed = [0, 1]
//! "#).unwrap();
//! let runs = spec.expand().unwrap();
//! assert_eq!(runs.len(), 4);
//! let dir = tempfile::tempdir().unwrap();
//! let out = dir.path().join("results.jsonl");
//! let plan = SweepPlan { runs: &runs, shard: Shard::new(1, 2).unwrap(), out: &out,
//!                        resume: false, experiment: None, checkpoints: None };
//! let summary = run_sweep(&plan, &mut Trainer::new(), &AtomicBool::new(false)).unwrap();
//! assert_eq!((summary.runs_in_shard, summary.completed), (2, 2));
//! // the other shard, resumed into the same file, completes the grid
//! let rest = SweepPlan { shard: Shard::new(0, 2).unwrap(), resume: true, ..plan };
//! let summary = run_sweep(&rest, &mut Trainer::new(), &AtomicBool::new(false)).unwrap();
//! assert_eq!((summary.skipped, summary.completed), (0, 2));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::{Map, Value};
use widealign_rules::{Checkpointing, TrainConfig, TrainResult};

use crate::record::RunRecord;
use crate::trainer::{Observer, Trainer};
use crate::{config, results, ExperimentError};

/// A parsed sweep file.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSpec {
    /// Where the spec came from (named in error messages).
    pub source: PathBuf,
    /// `[base]` settings.
    pub base: Map<String, Value>,
    /// `[grid]` lists in canonical key order ([`config::fields`]).
    pub grid: Vec<(String, Vec<Value>)>,
}

/// 1-based line of `key = ...` inside `[section]` of a TOML text, if it can be found.
fn key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            continue;
        }
        if current == section {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// 1-based line of the header `[name]`.
fn table_line(text: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim();
            t.starts_with('[')
                && t.trim_start_matches('[').split(']').next().map(str::trim) == Some(name)
        })
        .map(|i| i + 1)
}

/// `file:line` of `key` in `[section]` (or of the table `[key]` for the empty section).
fn at(path: &Path, text: &str, section: &str, key: &str) -> String {
    let line = key_line(text, section, key).or_else(|| {
        if section.is_empty() {
            table_line(text, key)
        } else {
            None
        }
    });
    match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

/// A config with only `key = value` set over the defaults.
fn overlay(key: &str, value: &Value) -> Result<TrainConfig, serde_json::Error> {
    let mut m = Map::new();
    m.insert(key.to_string(), value.clone());
    serde_json::from_value(Value::Object(m))
}

/// Checks that `value` is acceptable for config `key` (type and range), by overlaying it on
/// the defaults.
fn check_value(key: &str, value: &Value) -> Result<(), String> {
    let c = overlay(key, value).map_err(|e| e.to_string())?;
    match config::validate(&c) {
        Err(ExperimentError::InvalidSetting { setting, reason }) if setting == key => Err(reason),
        _ => Ok(()),
    }
}

/// Whether two values give the same config for `key` (so `5` and `5.0` count as one lr).
fn same_value(key: &str, a: &Value, b: &Value) -> bool {
    let one = |v: &Value| overlay(key, v).map(|c| config::key(&c));
    matches!((one(a), one(b)), (Ok(x), Ok(y)) if x == y)
}

fn bad(msg: String) -> ExperimentError {
    ExperimentError::BadInput(msg)
}

impl SweepSpec {
    /// Reads and parses the sweep file `path`.
    ///
    /// # Errors
    /// [`ExperimentError::Read`] if the file cannot be read; as [`SweepSpec::parse`].
    pub fn from_file(path: &Path) -> Result<Self, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|source| ExperimentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses a sweep file's text; `path` is only used to name the file in error messages.
    ///
    /// # Errors
    /// [`ExperimentError::BadInput`] naming the file, the line where it can be found and the
    /// key: TOML syntax, unknown tables or keys, a grid entry that is not a non-empty list, a
    /// value of the wrong type or range, a value listed twice, a key in both tables.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ExperimentError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().trim().replace('\n', "; ");
            match line {
                Some(l) => bad(format!("{}:{l}: {msg}", path.display())),
                None => bad(format!("{}: {msg}", path.display())),
            }
        })?;
        let fields = config::fields();
        let known = || fields.join(", ");
        let to_json = |v: &toml::Value| {
            serde_json::to_value(v).map_err(|e| bad(format!("{}: {e}", path.display())))
        };
        let mut base = Map::new();
        let mut grid: Vec<(String, Vec<Value>)> = Vec::new();
        for (name, value) in &table {
            let Some(t) = value.as_table() else {
                return Err(bad(format!(
                    "{}: top-level key `{name}` is not allowed; settings go in [base] or [grid]",
                    at(path, text, "", name)
                )));
            };
            match name.as_str() {
                "base" => {
                    for (k, v) in t {
                        if !fields.contains(&k.as_str()) {
                            return Err(bad(format!(
                                "{}: unknown key `{k}` in [base] (known: {})",
                                at(path, text, "base", k),
                                known()
                            )));
                        }
                        let v = to_json(v)?;
                        check_value(k, &v).map_err(|why| {
                            bad(format!("{}: [base] {k}: {why}", at(path, text, "base", k)))
                        })?;
                        base.insert(k.clone(), v);
                    }
                }
                "grid" => {
                    for (k, v) in t {
                        let pos = at(path, text, "grid", k);
                        if !fields.contains(&k.as_str()) {
                            return Err(bad(format!(
                                "{pos}: unknown key `{k}` in [grid] (known: {})",
                                known()
                            )));
                        }
                        let Some(list) = v.as_array() else {
                            return Err(bad(format!(
                                "{pos}: [grid] {k} must be a list, e.g. {k} = [..]"
                            )));
                        };
                        if list.is_empty() {
                            return Err(bad(format!(
                                "{pos}: [grid] {k} is an empty list (no runs)"
                            )));
                        }
                        let mut values: Vec<Value> = Vec::with_capacity(list.len());
                        for item in list {
                            let v = to_json(item)?;
                            check_value(k, &v).map_err(|why| {
                                bad(format!("{pos}: [grid] {k} value {v}: {why}"))
                            })?;
                            if values.iter().any(|w| same_value(k, w, &v)) {
                                return Err(bad(format!("{pos}: [grid] {k} lists {v} twice")));
                            }
                            values.push(v);
                        }
                        grid.push((k.clone(), values));
                    }
                }
                other => {
                    return Err(bad(format!(
                        "{}: unknown table [{other}] (expected [base] and [grid])",
                        at(path, text, "", other)
                    )))
                }
            }
        }
        if let Some((k, _)) = grid.iter().find(|(k, _)| base.contains_key(k)) {
            return Err(bad(format!(
                "{}: `{k}` is in both [base] and [grid]",
                at(path, text, "grid", k)
            )));
        }
        grid.sort_by_key(|(k, _)| fields.iter().position(|x| x == k));
        Ok(SweepSpec {
            source: path.to_path_buf(),
            base,
            grid,
        })
    }

    /// Number of runs: the product of the grid list lengths (1 for an empty grid).
    pub fn len(&self) -> usize {
        self.grid.iter().map(|(_, v)| v.len()).product()
    }

    /// Whether the sweep has no runs (never: an empty grid is one run, and empty lists are
    /// rejected by [`SweepSpec::parse`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All runs of the sweep in the documented order.
    ///
    /// # Errors
    /// [`ExperimentError::BadInput`] naming the run if a combination is not a valid config.
    pub fn expand(&self) -> Result<Vec<TrainConfig>, ExperimentError> {
        let total = self.len();
        let mut out = Vec::with_capacity(total);
        let mut idx = vec![0usize; self.grid.len()];
        for _ in 0..total {
            let mut m = self.base.clone();
            for ((k, vals), &i) in self.grid.iter().zip(&idx) {
                m.insert(k.clone(), vals[i].clone());
            }
            let c: TrainConfig = serde_json::from_value(Value::Object(m))
                .map_err(|e| bad(format!("{}: {e}", self.source.display())))?;
            if let Err(e) = config::validate(&c) {
                let why = match e {
                    ExperimentError::InvalidSetting { setting, reason } => {
                        format!("{setting} {reason}")
                    }
                    other => other.to_string(),
                };
                return Err(bad(format!(
                    "{}: run {} ({}): {why}",
                    self.source.display(),
                    out.len(),
                    config::label(&c)
                )));
            }
            out.push(c);
            // odometer increment, last key fastest
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < self.grid[d].1.len() {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(out)
    }
}

/// The part of a sweep one process runs: runs `index, index + count, index + 2·count, …`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard::WHOLE
    }
}

impl fmt::Display for Shard {
    /// `I/N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The whole sweep (`0/1`).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count` (0-based).
    ///
    /// # Errors
    /// [`ExperimentError::InvalidSetting`] (`shard`) unless `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Self, ExperimentError> {
        if index >= count {
            return Err(ExperimentError::setting(
                "shard",
                format!("shard index {index} must be below the shard count {count} (shards are 0-based)"),
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard of this task of a Slurm job array, from the variables `env` returns:
    /// `SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN` (0 when unset) of
    /// `SLURM_ARRAY_TASK_COUNT`. Pass `|k| std::env::var(k).ok()` for the process environment.
    ///
    /// # Errors
    /// [`ExperimentError::InvalidSetting`] (`shard`, the message starting `auto: `) when a
    /// variable is missing or not an integer, or the array range is not contiguous from its
    /// minimum.
    pub fn from_slurm(env: impl Fn(&str) -> Option<String>) -> Result<Self, ExperimentError> {
        let auto = |why: String| ExperimentError::setting("shard", format!("auto: {why}"));
        let get = |name: &str| -> Result<Option<usize>, ExperimentError> {
            match env(name) {
                None => Ok(None),
                Some(s) => s
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| auto(format!("{name}=`{s}` is not an integer"))),
            }
        };
        let id = get("SLURM_ARRAY_TASK_ID")?.ok_or_else(|| {
            auto("SLURM_ARRAY_TASK_ID is not set (not inside a Slurm job array?)".into())
        })?;
        let count = get("SLURM_ARRAY_TASK_COUNT")?
            .ok_or_else(|| auto("SLURM_ARRAY_TASK_COUNT is not set".into()))?;
        let min = get("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let index = id.checked_sub(min).ok_or_else(|| {
            auto(format!(
                "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
            ))
        })?;
        if count == 0 || index >= count {
            return Err(auto(format!(
                "task {index} (SLURM_ARRAY_TASK_ID - MIN) is not below SLURM_ARRAY_TASK_COUNT {count}; use a contiguous --array range"
            )));
        }
        Ok(Shard { index, count })
    }

    /// This shard's 0-based position.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The number of shards.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether run `run_index` of the grid belongs to this shard.
    pub fn contains(&self, run_index: usize) -> bool {
        run_index % self.count == self.index
    }

    /// The grid positions of this shard's runs in a grid of `total` runs.
    pub fn runs(&self, total: usize) -> impl Iterator<Item = usize> {
        (self.index..total).step_by(self.count)
    }
}

/// Counts of one sweep invocation (`widealign sweep --json` prints them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepSummary {
    /// Runs in the whole grid.
    pub runs_total: usize,
    /// Runs in this shard.
    pub runs_in_shard: usize,
    /// Runs of this shard already in the results file (skipped).
    pub skipped: usize,
    /// Runs completed and written now.
    pub completed: usize,
    /// Of those, runs that diverged.
    pub diverged: usize,
    /// The shard, `I/N`.
    pub shard: String,
    /// Whether the stop flag (or an observer) ended the sweep early.
    pub interrupted: bool,
    /// Runs continued from a mid-run checkpoint.
    #[serde(default)]
    pub resumed_from_checkpoint: usize,
    /// The checkpoint the interrupted run saved, if it saved one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PathBuf>,
}

/// Where and how often a sweep checkpoints its runs (see [`SweepPlan::checkpoints`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepCheckpoints<'a> {
    /// The folder of the checkpoint files.
    pub dir: &'a Path,
    /// Steps between checkpoints (`None`: once per epoch).
    pub every: Option<usize>,
}

impl SweepCheckpoints<'_> {
    /// The checkpoint file of run `index` of the grid.
    pub fn path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("run-{index}.safetensors"))
    }
}

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct SweepPlan<'a> {
    /// All runs of the grid in order (e.g. [`SweepSpec::expand`]).
    pub runs: &'a [TrainConfig],
    /// The part this process runs.
    pub shard: Shard,
    /// Results file (JSON lines, appended).
    pub out: &'a Path,
    /// Continue an existing results file. Without it a file that already holds lines is
    /// refused ([`ExperimentError::ResultsExist`]). With [`SweepPlan::checkpoints`], an
    /// unfinished run whose checkpoint exists continues from it.
    pub resume: bool,
    /// Mid-run checkpoints: a folder (created if missing) holding `run-<index>.safetensors`
    /// for each run in progress, and the steps between checkpoints (`None`: once per epoch).
    /// A run's checkpoint is deleted once its line is written. `None`: no checkpoints.
    pub checkpoints: Option<SweepCheckpoints<'a>>,
    /// Written as `"experiment"` into every line (the groups of a reproduction).
    pub experiment: Option<&'a str>,
}

/// What a sweep tells its executor as it goes (for progress displays).
#[derive(Clone, Copy, Debug)]
pub enum SweepEvent<'a> {
    /// The results file was read; the sweep is about to run `to_run` runs.
    Started {
        /// [`SweepPlan::experiment`].
        experiment: Option<&'a str>,
        /// The results file.
        out: &'a Path,
        /// Counts so far (`completed` is 0).
        summary: &'a SweepSummary,
        /// Runs of this shard not yet in the file.
        to_run: usize,
        /// Bytes of a torn last line that are being cut away (0: none).
        torn_bytes: u64,
    },
    /// A run starts.
    RunStarting {
        /// Runs of this invocation finished before it.
        done: usize,
        /// Runs this invocation has to run.
        to_run: usize,
        /// Position in the grid.
        index: usize,
        /// Its settings.
        config: &'a TrainConfig,
    },
    /// A run finished and its line was written.
    RunFinished {
        /// Runs of this invocation finished, this one included.
        done: usize,
        /// Runs this invocation has to run.
        to_run: usize,
        /// Position in the grid.
        index: usize,
        /// Its settings.
        config: &'a TrainConfig,
        /// Its result (possibly diverged).
        result: &'a TrainResult,
    },
}

/// Performs the runs of a sweep: the [`Trainer`], a wrapper that adds progress display, or a
/// fake in tests. Any `FnMut(&TrainConfig, &mut Observer) -> Result<TrainResult, _>` is one.
pub trait RunExecutor {
    /// Trains `cfg`, passing progress to `observer` (which returns `false` when the sweep's
    /// stop flag is raised: the run should then end with [`ExperimentError::Interrupted`]).
    ///
    /// # Errors
    /// [`ExperimentError::Interrupted`] when asked to stop; any other error ends the sweep.
    fn execute(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
    ) -> Result<TrainResult, ExperimentError>;

    /// [`RunExecutor::execute`] with mid-run checkpoints as `ckpt` says (saving to, and
    /// possibly resuming from, the run's checkpoint file). The default ignores `ckpt` (an
    /// executor that cannot checkpoint restarts unfinished runs from scratch).
    ///
    /// # Errors
    /// As [`RunExecutor::execute`]; [`ExperimentError::Preempted`] when asked to stop after
    /// saving a checkpoint.
    fn execute_checkpointed(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
        ckpt: &Checkpointing,
    ) -> Result<TrainResult, ExperimentError> {
        let _ = ckpt;
        self.execute(cfg, observer)
    }

    /// Hears what the sweep is doing; the default ignores it.
    fn event(&mut self, event: &SweepEvent<'_>) {
        let _ = event;
    }
}

impl RunExecutor for Trainer {
    fn execute(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
    ) -> Result<TrainResult, ExperimentError> {
        self.run(cfg, observer)
    }

    fn execute_checkpointed(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
        ckpt: &Checkpointing,
    ) -> Result<TrainResult, ExperimentError> {
        self.run_checkpointed(cfg, observer, ckpt)
    }
}

impl<F> RunExecutor for F
where
    F: FnMut(&TrainConfig, &mut Observer<'_>) -> Result<TrainResult, ExperimentError>,
{
    fn execute(
        &mut self,
        cfg: &TrainConfig,
        observer: &mut Observer<'_>,
    ) -> Result<TrainResult, ExperimentError> {
        self(cfg, observer)
    }
}

/// Runs this shard's missing runs, appending one [`RunRecord`] line per finished run (a
/// diverged run is a result and gets its line). Stops between runs, or drops the current run,
/// when `stop` is raised; the summary then says `interrupted`.
///
/// # Errors
/// [`ExperimentError::ResultsExist`] for a non-empty file without [`SweepPlan::resume`];
/// errors reading or writing the results file; [`ExperimentError::Run`] naming the run when a
/// run fails.
pub fn run_sweep<E: RunExecutor + ?Sized>(
    plan: &SweepPlan<'_>,
    exec: &mut E,
    stop: &AtomicBool,
) -> Result<SweepSummary, ExperimentError> {
    let mine: Vec<usize> = plan.shard.runs(plan.runs.len()).collect();
    let mut summary = SweepSummary {
        runs_total: plan.runs.len(),
        runs_in_shard: mine.len(),
        shard: plan.shard.to_string(),
        ..SweepSummary::default()
    };
    let existing = results::read_existing(plan.out)?;
    if !plan.resume && (existing.lines > 0 || existing.torn_bytes > 0) {
        return Err(ExperimentError::ResultsExist {
            path: plan.out.to_path_buf(),
        });
    }
    let todo: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&i| !existing.done.contains(&config::key(&plan.runs[i])))
        .collect();
    summary.skipped = mine.len() - todo.len();
    let mut file = results::open_for_append(plan.out, &existing)?;
    if let Some(c) = &plan.checkpoints {
        std::fs::create_dir_all(c.dir).map_err(|source| ExperimentError::Write {
            path: c.dir.to_path_buf(),
            source,
        })?;
    }
    exec.event(&SweepEvent::Started {
        experiment: plan.experiment,
        out: plan.out,
        summary: &summary,
        to_run: todo.len(),
        torn_bytes: existing.torn_bytes,
    });
    for (n, &i) in todo.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            summary.interrupted = true;
            break;
        }
        let cfg = &plan.runs[i];
        exec.event(&SweepEvent::RunStarting {
            done: n,
            to_run: todo.len(),
            index: i,
            config: cfg,
        });
        let mut observer = |_: &widealign_rules::Progress<'_>| !stop.load(Ordering::SeqCst);
        let ckpt = match &plan.checkpoints {
            Some(c) => {
                let path = c.path(i);
                let resume_from = (plan.resume && path.exists()).then(|| path.clone());
                summary.resumed_from_checkpoint += usize::from(resume_from.is_some());
                Checkpointing {
                    save_to: Some(path),
                    every: c.every,
                    resume_from,
                }
            }
            None => Checkpointing::default(),
        };
        match exec.execute_checkpointed(cfg, &mut observer, &ckpt) {
            Ok(result) => {
                let mut record = RunRecord::new(cfg, result, Some(i));
                record.experiment = plan.experiment.map(str::to_string);
                results::append_line(&mut file, &record.to_line()).map_err(|source| {
                    ExperimentError::Write {
                        path: plan.out.to_path_buf(),
                        source,
                    }
                })?;
                if let Some(path) = &ckpt.save_to {
                    // the line is written: the run's checkpoint is no longer needed
                    let _ = std::fs::remove_file(path);
                }
                summary.completed += 1;
                summary.diverged += usize::from(record.result.diverged);
                exec.event(&SweepEvent::RunFinished {
                    done: n + 1,
                    to_run: todo.len(),
                    index: i,
                    config: cfg,
                    result: &record.result,
                });
            }
            Err(ExperimentError::Interrupted) => {
                summary.interrupted = true;
                break;
            }
            Err(ExperimentError::Preempted { path, .. }) => {
                summary.interrupted = true;
                summary.checkpoint = Some(path);
                break;
            }
            Err(e) => {
                return Err(ExperimentError::Run {
                    index: i,
                    source: Box::new(e),
                })
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{rec, result};
    use std::io::Write;
    use widealign_rules::{Progress, RuleKind};

    const SPEC: &str = r#"
[grid]
seed = [0, 1]
rule = ["bp", "align-ada"]
width = [64, 256, 1024]

[base]
dataset = "digits"
epochs = 2
lr = 5
"#;

    fn runs(text: &str) -> Vec<TrainConfig> {
        SweepSpec::parse(Path::new("s.toml"), text)
            .unwrap()
            .expand()
            .unwrap()
    }

    /// A fake run: losses from width, epoch and seed; align-ada at width 64 diverges.
    fn fake(cfg: &TrainConfig, obs: &mut Observer<'_>) -> Result<TrainResult, ExperimentError> {
        let mut hist = Vec::new();
        for e in 1..=cfg.epochs {
            let loss = 1.0 / (cfg.width as f64 * e as f64) + cfg.seed as f64;
            let r = rec(e, loss, 1.0 - loss);
            if !obs(&Progress::Epoch(&r)) {
                return Err(ExperimentError::Interrupted);
            }
            hist.push(r);
        }
        let diverged = (cfg.width == 64 && cfg.rule == RuleKind::AlignAda).then_some(1);
        Ok(result(hist, diverged))
    }

    fn plan<'a>(
        runs: &'a [TrainConfig],
        out: &'a Path,
        shard: Shard,
        resume: bool,
    ) -> SweepPlan<'a> {
        SweepPlan {
            runs,
            shard,
            out,
            resume,
            experiment: None,
            checkpoints: None,
        }
    }

    fn never() -> AtomicBool {
        AtomicBool::new(false)
    }

    /// (grid position, identity) of every line of a results file, in file order.
    fn lines_in(path: &Path) -> Vec<(usize, String)> {
        results::read_lines(path)
            .unwrap()
            .into_iter()
            .map(|(_, v)| {
                let r: RunRecord = serde_json::from_value(v).unwrap();
                (r.run_index.unwrap(), config::key(&r.config))
            })
            .collect()
    }

    #[test]
    fn order_is_canonical_and_independent_of_file_order() {
        let r = runs(SPEC);
        assert_eq!(r.len(), 12);
        // rule slowest, then width, seed fastest
        let got: Vec<(String, usize, u64)> = r
            .iter()
            .map(|c| (c.rule.name().to_string(), c.width, c.seed))
            .collect();
        assert_eq!(got[0], ("bp".into(), 64, 0));
        assert_eq!(got[1], ("bp".into(), 64, 1));
        assert_eq!(got[2], ("bp".into(), 256, 0));
        assert_eq!(got[6], ("align-ada".into(), 64, 0));
        assert_eq!(got[11], ("align-ada".into(), 1024, 1));
        assert!(r.iter().all(|c| c.lr == 5.0 && c.epochs == 2));
        let reordered = r#"
[base]
lr = 5.0
epochs = 2
dataset = "digits"
[grid]
width = [64, 256, 1024]
rule = ["bp", "align-ada"]
seed = [0, 1]
"#;
        assert_eq!(runs(reordered), r);
    }

    #[test]
    fn expansion_is_the_full_product_without_repeats() {
        let text = r#"
[base]
epochs = 1
[grid]
lr = [0.5, 1, 2]
activation = ["relu", "erf"]
train_size = [10, 20]
w_std = [1.0, 1.5]
model = ["mlp"]
"#;
        let spec = SweepSpec::parse(Path::new("g.toml"), text).unwrap();
        let keys: Vec<&str> = spec.grid.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["model", "activation", "lr", "train_size", "w_std"]);
        let r = spec.expand().unwrap();
        assert_eq!((r.len(), spec.len()), (24, 24));
        let mut ids: Vec<String> = r.iter().map(config::key).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 24, "every combination once");
        for lr in [0.5, 1.0, 2.0] {
            for act in ["relu", "erf"] {
                for k in [10, 20] {
                    for w in [1.0, 1.5] {
                        let n = r
                            .iter()
                            .filter(|c| {
                                c.lr == lr
                                    && c.activation.name() == act
                                    && c.train_size == Some(k)
                                    && c.w_std == w
                                    && c.epochs == 1
                            })
                            .count();
                        assert_eq!(n, 1, "{lr} {act} {k} {w}");
                    }
                }
            }
        }
        // w_std is the last grid key: it varies fastest
        assert_eq!(
            (r[0].w_std, r[1].w_std, r[1].train_size),
            (1.0, 1.5, Some(10))
        );
    }

    #[test]
    fn empty_grid_is_one_run() {
        let r = runs("[base]\nwidth = 8\n");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].width, 8);
        assert_eq!(runs("").len(), 1);
        assert_eq!(runs("")[0], TrainConfig::default());
    }

    #[test]
    fn bad_specs_name_file_line_and_key() {
        let p = Path::new("s.toml");
        let cases = [
            ("[base]\nwidht = 3\n", "s.toml:2: unknown key `widht`"),
            (
                "[base]\ncache_frozen = false\n",
                "s.toml:2: unknown key `cache_frozen`",
            ),
            (
                "[grid]\nwidth = 64\n",
                "s.toml:2: [grid] width must be a list",
            ),
            (
                "[grid]\nwidth = []\n",
                "s.toml:2: [grid] width is an empty list",
            ),
            (
                "[grid]\nwidth = [64, 0]\n",
                "s.toml:2: [grid] width value 0",
            ),
            (
                "[grid]\nrule = [\"bp\", \"nope\"]\n",
                "s.toml:2: [grid] rule value \"nope\"",
            ),
            (
                "[grid]\nlr = [5, 5.0]\n",
                "s.toml:2: [grid] lr lists 5.0 twice",
            ),
            (
                "[base]\nwidth = 8\n[grid]\nwidth = [1]\n",
                "s.toml:4: `width` is in both",
            ),
            ("[other]\nx = 1\n", "s.toml:1: unknown table [other]"),
            ("width = 3\n", "s.toml:1: top-level key `width`"),
            ("[base]\nwidth = \n", "s.toml:2:"),
            (
                "[base]\nbatch_size = \"ten\"\n",
                "s.toml:2: [base] batch_size: invalid type",
            ),
        ];
        for (text, want) in cases {
            let e = SweepSpec::parse(p, text).unwrap_err();
            assert!(matches!(e, ExperimentError::BadInput(_)), "{text}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(want),
                "{text:?}: got `{msg}`, want `{want}`"
            );
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn shards_cover_every_run_exactly_once() {
        for total in 0..40 {
            for count in 1..9 {
                let mut seen = vec![0; total];
                for index in 0..count {
                    let s = Shard::new(index, count).unwrap();
                    for i in s.runs(total) {
                        assert!(s.contains(i));
                        seen[i] += 1;
                    }
                    assert_eq!(
                        s.runs(total).count(),
                        (0..total).filter(|&i| s.contains(i)).count()
                    );
                }
                assert!(seen.iter().all(|&n| n == 1), "{total} runs, {count} shards");
            }
        }
        assert!(Shard::new(2, 2).is_err());
        assert!(Shard::new(0, 0).is_err());
        assert_eq!(Shard::new(1, 4).unwrap().to_string(), "1/4");
        assert_eq!(Shard::default(), Shard::WHOLE);
    }

    #[test]
    fn slurm_shard_resolution() {
        let env = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("5".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("4".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("3".to_string()),
            _ => None,
        };
        assert_eq!(Shard::from_slurm(env).unwrap(), Shard::new(1, 3).unwrap());
        let e = Shard::from_slurm(|_| None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("shard: auto: SLURM_ARRAY_TASK_ID"),
            "{e}"
        );
        // ids 3 of count 3 without a minimum: not contiguous from 0
        let bad = |k: &str| {
            (k == "SLURM_ARRAY_TASK_ID" || k == "SLURM_ARRAY_TASK_COUNT").then(|| "3".to_string())
        };
        assert!(Shard::from_slurm(bad).is_err());
        let junk = |k: &str| (k == "SLURM_ARRAY_TASK_ID").then(|| "x".to_string());
        assert!(Shard::from_slurm(junk)
            .unwrap_err()
            .to_string()
            .contains("`x`"));
    }

    #[test]
    fn sharded_sweeps_write_every_run_exactly_once() {
        let r = runs(SPEC);
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full.jsonl");
        run_sweep(&plan(&r, &full, Shard::WHOLE, false), &mut fake, &never()).unwrap();
        let expected: Vec<(usize, String)> = r.iter().map(config::key).enumerate().collect();
        assert_eq!(lines_in(&full), expected);
        for count in [2, 3, 5] {
            let mut merged = Vec::new();
            for index in 0..count {
                let p = dir.path().join(format!("s{index}of{count}.jsonl"));
                let shard = Shard::new(index, count).unwrap();
                let sum = run_sweep(&plan(&r, &p, shard, false), &mut fake, &never()).unwrap();
                assert_eq!(sum.runs_in_shard, shard.runs(12).count());
                assert_eq!(sum.shard, format!("{index}/{count}"));
                let got = lines_in(&p);
                assert!(got.iter().all(|(i, _)| shard.contains(*i)));
                merged.extend(got);
            }
            merged.sort();
            assert_eq!(merged, expected, "{count} shards");
        }
        // Slurm task 2 of an array 1-3 is shard 1/3.
        let env = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("2".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("1".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("3".to_string()),
            _ => None,
        };
        let p = dir.path().join("auto.jsonl");
        let auto = Shard::from_slurm(env).unwrap();
        run_sweep(&plan(&r, &p, auto, false), &mut fake, &never()).unwrap();
        assert_eq!(lines_in(&p), lines_in(&dir.path().join("s1of3.jsonl")));
    }

    #[test]
    fn resume_skips_finished_runs_and_drops_a_torn_tail() {
        let r = runs(SPEC);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        // An executor that is interrupted after 5 runs.
        let mut count = 0;
        let mut limited = |c: &TrainConfig, o: &mut Observer<'_>| {
            count += 1;
            if count > 5 {
                return Err(ExperimentError::Interrupted);
            }
            fake(c, o)
        };
        let s = run_sweep(&plan(&r, &out, Shard::WHOLE, false), &mut limited, &never()).unwrap();
        assert!(s.interrupted);
        assert_eq!(s.completed, 5);
        // A torn line from a killed writer.
        let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        f.write_all(b"{\"widealign_version\":\"0.1.0\",\"rule\":\"b")
            .unwrap();
        drop(f);
        // Without resume the file is refused.
        let e = run_sweep(&plan(&r, &out, Shard::WHOLE, false), &mut fake, &never()).unwrap_err();
        assert!(matches!(e, ExperimentError::ResultsExist { .. }), "{e}");
        // With it, only the 7 missing runs are trained.
        let mut trained = Vec::new();
        let mut recording = |c: &TrainConfig, o: &mut Observer<'_>| {
            trained.push(config::key(c));
            fake(c, o)
        };
        let s = run_sweep(
            &plan(&r, &out, Shard::WHOLE, true),
            &mut recording,
            &never(),
        )
        .unwrap();
        assert_eq!((s.skipped, s.completed, s.diverged), (5, 7, 2));
        let expected: Vec<(usize, String)> = r.iter().map(config::key).enumerate().collect();
        assert_eq!(
            trained,
            expected[5..]
                .iter()
                .map(|e| e.1.clone())
                .collect::<Vec<_>>()
        );
        assert_eq!(lines_in(&out), expected);
        // Resuming a finished sweep runs nothing.
        let mut none =
            |_: &TrainConfig, _: &mut Observer<'_>| -> Result<TrainResult, ExperimentError> {
                panic!("a finished sweep trained a run")
            };
        let s = run_sweep(&plan(&r, &out, Shard::WHOLE, true), &mut none, &never()).unwrap();
        assert_eq!((s.skipped, s.completed), (12, 0));
    }

    /// Records of a results file with every timing zeroed, by run index.
    fn timeless_records(path: &Path) -> Vec<(Option<usize>, TrainResult)> {
        let mut v: Vec<_> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut r: RunRecord = serde_json::from_str(l).unwrap();
                r.result.seconds = 0.0;
                r.result.history.iter_mut().for_each(|h| h.seconds = 0.0);
                (r.run_index, r.result)
            })
            .collect();
        v.sort_by_key(|(i, _)| *i);
        v
    }

    #[test]
    fn a_stopped_sweep_resumes_its_run_from_the_checkpoint_with_identical_results() {
        let runs = runs(
            "[grid]\nseed = [0, 1]\nrule = [\"align-ada\"]\noptimizer = [\"adam\"]\n[base]\ndataset = \"digits\"\nwidth = 16\nepochs = 2\ntrain_size = 60\nbatch_size = 20\nlr = 0.01\n",
        );
        let dir = tempfile::tempdir().unwrap();
        let ckdir = dir.path().join("ck");
        let checkpoints = Some(SweepCheckpoints {
            dir: &ckdir,
            every: None,
        });
        let whole = dir.path().join("whole.jsonl");
        let p = SweepPlan {
            checkpoints,
            ..plan(&runs, &whole, Shard::WHOLE, false)
        };
        let s = run_sweep(&p, &mut Trainer::new(), &never()).unwrap();
        assert_eq!(s.completed, 2);
        assert_eq!(
            std::fs::read_dir(&ckdir).unwrap().count(),
            0,
            "checkpoints of finished runs are removed"
        );

        // stopped in the second epoch (after 4 of 6 steps) of the second run
        let out = dir.path().join("out.jsonl");
        let stop = AtomicBool::new(false);
        let mut steps = 0;
        let mut trainer = Trainer::new();
        let mut stopping = |cfg: &TrainConfig, obs: &mut Observer<'_>, ck: &Checkpointing| {
            trainer.run_checkpointed(
                cfg,
                &mut |p| {
                    if matches!(p, Progress::Step { .. }) {
                        steps += 1;
                        if steps == 6 + 4 {
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                    obs(p)
                },
                ck,
            )
        };
        struct Stopping<F>(F);
        impl<F> RunExecutor for Stopping<F>
        where
            F: FnMut(
                &TrainConfig,
                &mut Observer<'_>,
                &Checkpointing,
            ) -> Result<TrainResult, ExperimentError>,
        {
            fn execute(
                &mut self,
                cfg: &TrainConfig,
                obs: &mut Observer<'_>,
            ) -> Result<TrainResult, ExperimentError> {
                (self.0)(cfg, obs, &Checkpointing::default())
            }
            fn execute_checkpointed(
                &mut self,
                cfg: &TrainConfig,
                obs: &mut Observer<'_>,
                ck: &Checkpointing,
            ) -> Result<TrainResult, ExperimentError> {
                (self.0)(cfg, obs, ck)
            }
        }
        let p = SweepPlan {
            checkpoints,
            ..plan(&runs, &out, Shard::WHOLE, false)
        };
        let s = run_sweep(&p, &mut Stopping(&mut stopping), &stop).unwrap();
        assert!(s.interrupted);
        assert_eq!(s.completed, 1);
        let saved = s.checkpoint.expect("the stopped run saved a checkpoint");
        assert_eq!(saved, ckdir.join("run-1.safetensors"));
        assert!(saved.exists());

        let p = SweepPlan { resume: true, ..p };
        let s = run_sweep(&p, &mut Trainer::new(), &never()).unwrap();
        assert_eq!((s.completed, s.resumed_from_checkpoint), (1, 1));
        assert!(!saved.exists());
        assert_eq!(timeless_records(&out), timeless_records(&whole));
    }

    #[test]
    fn stop_flag_drops_the_current_run() {
        let r = runs(SPEC);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let stop = AtomicBool::new(false);
        let mut n = 0;
        let mut exec = |c: &TrainConfig, o: &mut Observer<'_>| {
            n += 1;
            if n == 3 {
                stop.store(true, Ordering::SeqCst); // Ctrl-C during the third run
            }
            fake(c, o)
        };
        let s = run_sweep(&plan(&r, &out, Shard::WHOLE, false), &mut exec, &stop).unwrap();
        assert!(s.interrupted);
        assert_eq!(s.completed, 2);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn run_failures_abort_with_the_run_named() {
        let r = runs(SPEC);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let mut exec =
            |_: &TrainConfig, _: &mut Observer<'_>| -> Result<TrainResult, ExperimentError> {
                Err(ExperimentError::BadInput("dataset `x` not found".into()))
            };
        let e = run_sweep(
            &plan(&r, &out, Shard::new(1, 2).unwrap(), false),
            &mut exec,
            &never(),
        )
        .unwrap_err();
        assert!(matches!(e, ExperimentError::Run { index: 1, .. }));
        assert!(e.to_string().starts_with("run #1: "), "{e}");
    }

    #[test]
    fn events_follow_the_runs() {
        struct Log(Vec<String>);
        impl RunExecutor for Log {
            fn execute(
                &mut self,
                cfg: &TrainConfig,
                observer: &mut Observer<'_>,
            ) -> Result<TrainResult, ExperimentError> {
                fake(cfg, observer)
            }
            fn event(&mut self, e: &SweepEvent<'_>) {
                self.0.push(match e {
                    SweepEvent::Started {
                        to_run, summary, ..
                    } => {
                        format!("start {to_run} skip {}", summary.skipped)
                    }
                    SweepEvent::RunStarting { done, index, .. } => format!("run {done} #{index}"),
                    SweepEvent::RunFinished { done, result, .. } => {
                        format!("done {done} {}", result.diverged)
                    }
                });
            }
        }
        let r = runs(SPEC);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let mut log = Log(Vec::new());
        run_sweep(
            &plan(&r[5..8], &out, Shard::WHOLE, false),
            &mut log,
            &never(),
        )
        .unwrap();
        // grid runs 5, 6, 7: bp 1024 seed 1, then align-ada 64 (diverges) seeds 0 and 1
        assert_eq!(
            log.0,
            [
                "start 3 skip 0",
                "run 0 #0",
                "done 1 false",
                "run 1 #1",
                "done 2 true",
                "run 2 #2",
                "done 3 true"
            ]
        );
    }
}
