//! `widealign sweep`: a grid of training runs from a TOML file into a JSON-lines file.
//!
//! # The config file
//!
//! ```toml
//! [base]              # settings shared by every run (keys = train flags, `_` for `-`)
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
//! Runs are the Cartesian product of the grid lists, enumerated with the keys in the canonical
//! order of [`crate::config::KEYS`] (`model, dataset, rule, depth, width, activation, param,
//! optimizer, lr, batch_size, epochs, train_size, w_std, b_std, seed`) — the *last* key varies
//! fastest — and the values of one key in the order they are written. The order does not
//! depend on the order of keys in the file. Run `i` (0-based) belongs to shard `I/N` iff
//! `i mod N = I`.
//!
//! # Results and resumption
//!
//! Each finished run appends one line (a [`RunRecord`]) with a single `write_all` of the whole
//! line and its newline, then a flush and `fdatasync`. A process killed mid-write can leave
//! only a *torn last line* (bytes after the last newline); `--resume` truncates it away and
//! skips every run whose config (its JSON form, [`config::key`]) already has a line.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::cli::ShardArg;
use crate::config::{self, TrainConfig, KEYS};
use crate::error::CliError;
use crate::progress::Progress;
use crate::runner::{Observer, RunRecord, RunResult};

/// Held while a results line is being written, so that a second Ctrl-C (which exits at once)
/// waits for the line to be complete.
pub static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// A parsed sweep file.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSpec {
    /// `[base]` settings.
    pub base: Map<String, Value>,
    /// `[grid]` lists in canonical key order.
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

/// Checks that `value` is acceptable for config `key` (type and range), by overlaying it on
/// the defaults.
fn check_value(key: &str, value: &Value) -> Result<(), String> {
    let mut m = Map::new();
    m.insert(key.to_string(), value.clone());
    let c = config::from_value(Value::Object(m)).map_err(|e| e.to_string())?;
    match config::validate(&c) {
        Err((k, why)) if k == key => Err(why),
        _ => Ok(()),
    }
}

/// Parses a sweep file's text. Errors name the file, the line where it can be found, and the key.
pub fn parse_spec(path: &Path, text: &str) -> Result<SweepSpec, CliError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let msg = e.message().trim().replace('\n', "; ");
        match line {
            Some(l) => CliError::Input(format!("{}:{l}: {msg}", path.display())),
            None => CliError::input(path, msg),
        }
    })?;
    let known = || KEYS.join(", ");
    let mut base = Map::new();
    let mut grid_raw: Vec<(String, Vec<Value>)> = Vec::new();
    for (name, value) in &table {
        let Some(t) = value.as_table() else {
            return Err(CliError::Input(format!(
                "{}: top-level key `{name}` is not allowed; settings go in [base] or [grid]",
                at(path, text, "", name)
            )));
        };
        match name.as_str() {
            "base" => {
                for (k, v) in t {
                    if !KEYS.contains(&k.as_str()) {
                        return Err(CliError::Input(format!(
                            "{}: unknown key `{k}` in [base] (known: {})",
                            at(path, text, "base", k),
                            known()
                        )));
                    }
                    let v = serde_json::to_value(v).map_err(|e| CliError::input(path, e))?;
                    check_value(k, &v).map_err(|why| {
                        CliError::Input(format!("{}: [base] {k}: {why}", at(path, text, "base", k)))
                    })?;
                    base.insert(k.clone(), v);
                }
            }
            "grid" => {
                for (k, v) in t {
                    let pos = at(path, text, "grid", k);
                    if !KEYS.contains(&k.as_str()) {
                        return Err(CliError::Input(format!(
                            "{pos}: unknown key `{k}` in [grid] (known: {})",
                            known()
                        )));
                    }
                    let Some(list) = v.as_array() else {
                        return Err(CliError::Input(format!(
                            "{pos}: [grid] {k} must be a list, e.g. {k} = [..]"
                        )));
                    };
                    if list.is_empty() {
                        return Err(CliError::Input(format!(
                            "{pos}: [grid] {k} is an empty list (no runs)"
                        )));
                    }
                    let mut values: Vec<Value> = Vec::with_capacity(list.len());
                    for item in list {
                        let v = serde_json::to_value(item).map_err(|e| CliError::input(path, e))?;
                        check_value(k, &v).map_err(|why| {
                            CliError::Input(format!("{pos}: [grid] {k} value {v}: {why}"))
                        })?;
                        if values.iter().any(|w| same_value(k, w, &v)) {
                            return Err(CliError::Input(format!(
                                "{pos}: [grid] {k} lists {v} twice"
                            )));
                        }
                        values.push(v);
                    }
                    grid_raw.push((k.clone(), values));
                }
            }
            other => {
                return Err(CliError::Input(format!(
                    "{}: unknown table [{other}] (expected [base] and [grid])",
                    at(path, text, "", other)
                )))
            }
        }
    }
    for (k, _) in &grid_raw {
        if base.contains_key(k) {
            return Err(CliError::Input(format!(
                "{}: `{k}` is in both [base] and [grid]",
                at(path, text, "grid", k)
            )));
        }
    }
    grid_raw.sort_by_key(|(k, _)| KEYS.iter().position(|x| x == k));
    Ok(SweepSpec {
        base,
        grid: grid_raw,
    })
}

/// Whether two values give the same config for `key` (so `5` and `5.0` count as one lr).
fn same_value(key: &str, a: &Value, b: &Value) -> bool {
    let one = |v: &Value| {
        let mut m = Map::new();
        m.insert(key.to_string(), v.clone());
        config::from_value(Value::Object(m)).map(|c| config::key(&c))
    };
    matches!((one(a), one(b)), (Ok(x), Ok(y)) if x == y)
}

/// All runs of a sweep in the documented order.
pub fn expand(spec: &SweepSpec, path: &Path) -> Result<Vec<TrainConfig>, CliError> {
    let total: usize = spec.grid.iter().map(|(_, v)| v.len()).product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; spec.grid.len()];
    for _ in 0..total {
        let mut m = spec.base.clone();
        for ((k, vals), &i) in spec.grid.iter().zip(&idx) {
            m.insert(k.clone(), vals[i].clone());
        }
        let c = config::from_value(Value::Object(m)).map_err(|e| CliError::input(path, e))?;
        if let Err((k, why)) = config::validate(&c) {
            return Err(CliError::input(
                path,
                format!("run {} ({}): {k} {why}", out.len(), config::label(&c)),
            ));
        }
        out.push(c);
        // odometer increment, last key fastest
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < spec.grid[d].1.len() {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

/// Resolves `--shard` to `(index, count)`; `auto` reads the Slurm job-array variables via
/// `env` (`SLURM_ARRAY_TASK_ID` minus `SLURM_ARRAY_TASK_MIN` when set, and
/// `SLURM_ARRAY_TASK_COUNT`).
pub fn resolve_shard(
    arg: Option<ShardArg>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(usize, usize), CliError> {
    match arg {
        None => Ok((0, 1)),
        Some(ShardArg::Fixed { index, count }) => Ok((index, count)),
        Some(ShardArg::Auto) => {
            let get = |name: &str| -> Result<Option<usize>, CliError> {
                match env(name) {
                    None => Ok(None),
                    Some(s) => s.trim().parse().map(Some).map_err(|_| {
                        CliError::flag("--shard auto", format!("{name}=`{s}` is not an integer"))
                    }),
                }
            };
            let id = get("SLURM_ARRAY_TASK_ID")?.ok_or_else(|| {
                CliError::flag(
                    "--shard auto",
                    "SLURM_ARRAY_TASK_ID is not set (not inside a Slurm job array?)",
                )
            })?;
            let count = get("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                CliError::flag("--shard auto", "SLURM_ARRAY_TASK_COUNT is not set")
            })?;
            let min = get("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id.checked_sub(min).ok_or_else(|| {
                CliError::flag(
                    "--shard auto",
                    format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"),
                )
            })?;
            if count == 0 || index >= count {
                return Err(CliError::flag(
                    "--shard auto",
                    format!(
                        "task {index} (SLURM_ARRAY_TASK_ID - MIN) is not below SLURM_ARRAY_TASK_COUNT {count}; use a contiguous --array range"
                    ),
                ));
            }
            Ok((index, count))
        }
    }
}

/// What an existing results file holds.
#[derive(Debug, Default)]
pub struct Existing {
    /// Keys ([`config::key`]) of every run with a complete line.
    pub done: HashSet<String>,
    /// Complete lines.
    pub lines: usize,
    /// Length in bytes of the complete lines (where a torn tail starts).
    pub valid_len: u64,
    /// Bytes after the last newline (a torn line from a killed process).
    pub torn_bytes: u64,
}

/// Reads a results file. A torn last line (no newline) is reported, not an error; a broken line
/// in the middle is an error naming the line.
pub fn read_existing(path: &Path) -> Result<Existing, CliError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|e| CliError::read(path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::default()),
        Err(e) => return Err(CliError::read(path, e)),
    }
    let valid_len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let mut ex = Existing {
        valid_len: valid_len as u64,
        torn_bytes: (bytes.len() - valid_len) as u64,
        ..Existing::default()
    };
    for (i, line) in bytes[..valid_len].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: Value = serde_json::from_slice(line).map_err(|e| {
            CliError::Input(format!(
                "{}:{}: not a JSON line ({e}); was a shard file with a torn last line concatenated into it?",
                path.display(),
                i + 1
            ))
        })?;
        ex.lines += 1;
        if let Some(c) = v
            .get("config")
            .and_then(|c| config::from_value(c.clone()).ok())
        {
            ex.done.insert(config::key(&c));
        }
    }
    Ok(ex)
}

/// Appends `line` and a newline with one `write_all`, then flushes and syncs the data.
pub fn append_line(file: &mut File, line: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    file.write_all(&buf)?;
    file.flush()?;
    file.sync_data()
}

/// Counts of a sweep invocation.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
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
    /// `I/N`.
    pub shard: String,
    /// Whether Ctrl-C stopped the sweep early.
    pub interrupted: bool,
}

/// Options of one sweep invocation.
pub struct SweepPlan<'a> {
    /// All runs in order.
    pub runs: &'a [TrainConfig],
    /// `(index, count)` of this shard.
    pub shard: (usize, usize),
    /// Results file.
    pub out: &'a Path,
    /// Continue an existing file.
    pub resume: bool,
    /// Written as `"experiment"` into every line (reproduce's experiment groups) and used as
    /// the progress label.
    pub experiment: Option<&'a str>,
}

/// The function that performs one run (the real trainer, or a fake in tests).
pub type Executor<'a> =
    dyn FnMut(&TrainConfig, &mut Observer<'_>) -> Result<RunResult, CliError> + 'a;

/// Runs this shard's missing runs, appending one line per finished run. Stops between runs, or
/// drops the current run, when `stop` is set; then returns the summary with `interrupted`.
pub fn run_sweep(
    plan: &SweepPlan<'_>,
    exec: &mut Executor<'_>,
    progress: &Progress,
    stop: &AtomicBool,
) -> Result<SweepSummary, CliError> {
    let (si, sn) = plan.shard;
    let mine: Vec<usize> = (0..plan.runs.len()).filter(|i| i % sn == si).collect();
    let mut summary = SweepSummary {
        runs_total: plan.runs.len(),
        runs_in_shard: mine.len(),
        shard: format!("{si}/{sn}"),
        ..SweepSummary::default()
    };
    let existing = read_existing(plan.out)?;
    if !plan.resume && (existing.lines > 0 || existing.torn_bytes > 0) {
        return Err(CliError::flag(
            "--out",
            format!(
                "{} already holds results; pass --resume to continue it, or choose another file",
                plan.out.display()
            ),
        ));
    }
    let todo: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&i| !existing.done.contains(&config::key(&plan.runs[i])))
        .collect();
    summary.skipped = mine.len() - todo.len();
    if existing.torn_bytes > 0 {
        progress.log(&format!(
            "{}: dropping a torn last line ({} bytes) left by an interrupted writer",
            plan.out.display(),
            existing.torn_bytes
        ));
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(plan.out)
        .map_err(|e| CliError::write(plan.out, e))?;
    if existing.torn_bytes > 0 {
        file.set_len(existing.valid_len)
            .map_err(|e| CliError::write(plan.out, e))?;
    }
    progress.log(&format!(
        "{}: {} runs in the grid, {} in shard {}, {} already done, {} to run",
        plan.experiment.unwrap_or("sweep"),
        summary.runs_total,
        summary.runs_in_shard,
        summary.shard,
        summary.skipped,
        todo.len()
    ));
    let bar = progress.bar(plan.experiment.unwrap_or("runs"), todo.len() as u64, false);
    for (n, &i) in todo.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            summary.interrupted = true;
            break;
        }
        let cfg = &plan.runs[i];
        bar.update(n as u64, &config::label(cfg));
        let mut observer = |_: &crate::runner::RunEvent| !stop.load(Ordering::SeqCst);
        match exec(cfg, &mut observer) {
            Ok(result) => {
                let diverged = result.diverged;
                let metric = match (result.diverged, result.test_accuracy) {
                    (true, _) => result.divergence(),
                    (false, Some(a)) => format!("test accuracy {:.4}", a),
                    (false, None) => format!("best test loss {:.5}", result.best_test_loss),
                };
                let secs = result.seconds;
                let mut record = RunRecord::new(cfg, result, Some(i));
                record.experiment = plan.experiment.map(str::to_string);
                let line = record.to_line();
                append_line(&mut file, &line).map_err(|e| CliError::write(plan.out, e))?;
                summary.completed += 1;
                summary.diverged += usize::from(diverged);
                progress.log(&format!(
                    "run {}/{} [#{i} {}]: {metric} ({})",
                    n + 1,
                    todo.len(),
                    config::label(cfg),
                    crate::progress::fmt_secs(secs)
                ));
            }
            Err(CliError::Interrupted) => {
                summary.interrupted = true;
                break;
            }
            Err(e) => {
                return Err(match e {
                    CliError::Input(m) => CliError::Input(format!("run #{i}: {m}")),
                    CliError::Usage(m) => CliError::Usage(format!("run #{i}: {m}")),
                    CliError::Failure(m) => CliError::Failure(format!("run #{i}: {m}")),
                    CliError::Interrupted => CliError::Interrupted,
                })
            }
        }
    }
    bar.update(summary.completed as u64, "");
    bar.finish();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Mode;
    use crate::runner::{summarise, EpochRecord};

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
        let p = Path::new("s.toml");
        expand(&parse_spec(p, text).unwrap(), p).unwrap()
    }

    fn fake(cfg: &TrainConfig, obs: &mut Observer<'_>) -> Result<RunResult, CliError> {
        let mut hist = Vec::new();
        for e in 1..=cfg.epochs {
            let loss = 1.0 / (cfg.width as f64 * e as f64) + cfg.seed as f64;
            let rec = EpochRecord {
                epoch: e,
                seconds: 0.0,
                train_loss: loss,
                test_loss: loss,
                test_accuracy: Some(1.0 - loss),
            };
            if !obs(&crate::runner::RunEvent::Epoch(rec.clone())) {
                return Err(CliError::Interrupted);
            }
            hist.push(rec);
        }
        let diverged =
            (cfg.width == 64 && cfg.rule == widealign_rules::RuleKind::AlignAda).then_some(1);
        Ok(summarise(hist, diverged, 0.0))
    }

    fn quiet() -> Progress {
        Progress::with_mode(Mode::Quiet)
    }

    fn configs_in(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                config::key(&config::from_value(v["config"].clone()).unwrap())
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
    fn empty_grid_is_one_run() {
        let r = runs("[base]\nwidth = 8\n");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].width, 8);
        assert_eq!(runs("").len(), 1);
    }

    #[test]
    fn bad_specs_name_file_line_and_key() {
        let p = Path::new("s.toml");
        let cases = [
            ("[base]\nwidht = 3\n", "s.toml:2: unknown key `widht`"),
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
            let e = parse_spec(p, text).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{text}");
            let msg = e.one_line();
            assert!(
                msg.starts_with(want),
                "{text:?}: got `{msg}`, want `{want}`"
            );
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn shard_resolution() {
        let none = |_: &str| None;
        assert_eq!(resolve_shard(None, none).unwrap(), (0, 1));
        let env = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("5".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("4".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("3".to_string()),
            _ => None,
        };
        assert_eq!(resolve_shard(Some(ShardArg::Auto), env).unwrap(), (1, 3));
        let e = resolve_shard(Some(ShardArg::Auto), none).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("SLURM_ARRAY_TASK_ID"));
        let bad = |k: &str| {
            (k == "SLURM_ARRAY_TASK_ID" || k == "SLURM_ARRAY_TASK_COUNT").then(|| "3".to_string())
        };
        assert!(resolve_shard(Some(ShardArg::Auto), bad).is_err());
    }

    #[test]
    fn shards_partition_the_grid() {
        let r = runs(SPEC);
        let dir = tempfile::tempdir().unwrap();
        let stop = AtomicBool::new(false);
        let full = dir.path().join("full.jsonl");
        run_sweep(
            &SweepPlan {
                runs: &r,
                shard: (0, 1),
                out: &full,
                resume: false,
                experiment: None,
            },
            &mut fake,
            &quiet(),
            &stop,
        )
        .unwrap();
        let mut merged = Vec::new();
        for s in 0..3 {
            let p = dir.path().join(format!("s{s}.jsonl"));
            let sum = run_sweep(
                &SweepPlan {
                    runs: &r,
                    shard: (s, 3),
                    out: &p,
                    resume: false,
                    experiment: None,
                },
                &mut fake,
                &quiet(),
                &stop,
            )
            .unwrap();
            assert_eq!(sum.runs_in_shard, 4);
            merged.extend(configs_in(&p));
        }
        let mut a = configs_in(&full);
        assert_eq!(a, r.iter().map(config::key).collect::<Vec<_>>());
        a.sort();
        merged.sort();
        assert_eq!(a, merged);
    }

    #[test]
    fn resume_skips_done_runs_and_drops_torn_tail() {
        let r = runs(SPEC);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let stop = AtomicBool::new(false);
        // Run the first 5 runs only: an executor that asks to stop after 5.
        let mut count = 0;
        let mut limited = |c: &TrainConfig, o: &mut Observer<'_>| {
            count += 1;
            if count > 5 {
                return Err(CliError::Interrupted);
            }
            fake(c, o)
        };
        let s = run_sweep(
            &SweepPlan {
                runs: &r,
                shard: (0, 1),
                out: &out,
                resume: false,
                experiment: None,
            },
            &mut limited,
            &quiet(),
            &stop,
        )
        .unwrap();
        assert!(s.interrupted);
        assert_eq!(s.completed, 5);
        // A torn line from a killed writer.
        let mut f = OpenOptions::new().append(true).open(&out).unwrap();
        f.write_all(b"{\"widealign_version\":\"0.1.0\",\"rule\":\"b")
            .unwrap();
        drop(f);
        // Without --resume the file is refused.
        let e = run_sweep(
            &SweepPlan {
                runs: &r,
                shard: (0, 1),
                out: &out,
                resume: false,
                experiment: None,
            },
            &mut fake,
            &quiet(),
            &stop,
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let s = run_sweep(
            &SweepPlan {
                runs: &r,
                shard: (0, 1),
                out: &out,
                resume: true,
                experiment: None,
            },
            &mut fake,
            &quiet(),
            &stop,
        )
        .unwrap();
        assert_eq!((s.skipped, s.completed, s.diverged), (5, 7, 2));
        let got = configs_in(&out);
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 12);
        assert_eq!(got, r.iter().map(config::key).collect::<Vec<_>>());
        // Resuming a finished sweep runs nothing.
        let s = run_sweep(
            &SweepPlan {
                runs: &r,
                shard: (0, 1),
                out: &out,
                resume: true,
                experiment: None,
            },
            &mut fake,
            &quiet(),
            &stop,
        )
        .unwrap();
        assert_eq!((s.skipped, s.completed), (12, 0));
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
        let s = run_sweep(
            &SweepPlan {
                runs: &r,
                shard: (0, 1),
                out: &out,
                resume: false,
                experiment: None,
            },
            &mut exec,
            &quiet(),
            &stop,
        )
        .unwrap();
        assert!(s.interrupted);
        assert_eq!(s.completed, 2);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn broken_middle_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        std::fs::write(&out, "{\"a\":1}\n{broken\n{\"b\":2}\n").unwrap();
        let e = read_existing(&out).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("r.jsonl:2:"), "{e}");
    }

    #[test]
    fn run_failures_abort_with_the_run_named() {
        let r = runs(SPEC);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let mut exec = |_: &TrainConfig, _: &mut Observer<'_>| -> Result<RunResult, CliError> {
            Err(CliError::Input("dataset `x` not found".into()))
        };
        let e = run_sweep(
            &SweepPlan {
                runs: &r,
                shard: (1, 2),
                out: &out,
                resume: false,
                experiment: None,
            },
            &mut exec,
            &quiet(),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("run #1: "), "{e}");
    }
}
