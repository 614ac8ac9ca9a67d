//! `widealign reproduce`: the reference experiments (docs/theory.md §6) end to end.
//!
//! 1. **accuracy vs width**: every rule on the image dataset, MLP depth 2, a range of widths;
//! 2. **Add task vs width**: RNN, rules bp / align-ada / align-zero / readout, best test loss
//!    against the loss of always predicting 0.5;
//! 3. **low data**: every rule with 100, 300, 1000 stratified training examples;
//! 4. **alignment vs width**: backprop's weight change against the predicted (Align-zero)
//!    update, per layer, with shuffled and random controls and the input-span fraction;
//! 5. **dynamics vs width**: relative errors of the closed-form layerwise predictions, with
//!    fitted log-log slopes, for erf and relu.
//!
//! Training runs go through the sweep machinery (one JSON line per run in
//! `DIR/results.jsonl`, resumable with `--resume`); alignment and dynamics results are further
//! lines with a `"kind"`. The report (`DIR/report.md` with SVG plots) is built from the file,
//! so `--resume` on a finished folder only rebuilds the report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{json, Value};
use widealign_models::Loss;
use widealign_tensor::Mat;

use widealign_rules::{ModelKind, RuleKind};
use widealign_tensor::Activation;

use crate::cli::{ReproduceArgs, Scale};
use crate::config::{self, Json, TrainConfig};
use crate::error::CliError;
use crate::experiments::{align_one, dynamics, DynamicsParams};
use crate::plots::{fmt_sig, Axis, Chart, Series};
use crate::progress::{fmt_secs, Progress};
use crate::runner::VERSION;
use crate::sweep::{self, SweepPlan};
use crate::trainer::Trainer;
use crate::{emit, STOP};

/// Rules of the Add-task experiment.
const ADD_RULES: [RuleKind; 4] = [
    RuleKind::Bp,
    RuleKind::AlignAda,
    RuleKind::AlignZero,
    RuleKind::Readout,
];

/// Everything `reproduce` runs, decided by `--scale` and `--dataset`.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Image dataset name.
    pub dataset: String,
    /// Scale name.
    pub scale: Scale,
    /// Accuracy-vs-width runs (all rules × widths × seeds).
    pub accuracy: Vec<TrainConfig>,
    /// Widths of the accuracy experiment.
    pub widths: Vec<usize>,
    /// Add-task runs.
    pub add: Vec<TrainConfig>,
    /// Widths of the Add task.
    pub add_widths: Vec<usize>,
    /// Low-data runs.
    pub low_data: Vec<TrainConfig>,
    /// Training-set sizes of the low-data runs.
    pub sizes: Vec<usize>,
    /// Alignment runs (bp, one per width).
    pub align: Vec<TrainConfig>,
    /// Dynamics experiments (one per activation).
    pub dynamics: Vec<DynamicsParams>,
}

/// The experiment plan for a scale, dataset and seed (the settings of `notes/REPRODUCE.md`:
/// quick finishes in minutes, full uses the reference widths and epochs).
pub fn plan(scale: Scale, dataset: &str, seed: u64) -> Result<Plan, CliError> {
    if !matches!(dataset, "digits" | "fashion-mnist") {
        return Err(CliError::flag(
            "--dataset",
            format!("`{dataset}`: reproduce runs on digits or fashion-mnist"),
        ));
    }
    let tiny = scale == Scale::Tiny;
    let pick = |t: usize, q: usize, f: usize| match scale {
        Scale::Tiny => t,
        Scale::Quick => q,
        Scale::Full => f,
    };
    let widths: Vec<usize> = match scale {
        Scale::Tiny => vec![8, 16],
        Scale::Quick => vec![64, 256, 1024],
        Scale::Full => vec![64, 256, 1024, 4096],
    };
    let base = TrainConfig {
        model: ModelKind::Mlp,
        dataset: dataset.to_string(),
        depth: 2,
        activation: Activation::Relu,
        lr: 5.0,
        batch_size: 100,
        epochs: pick(1, 40, 40),
        train_size: tiny.then_some(200),
        seed,
        ..TrainConfig::default()
    };
    let mut accuracy = Vec::new();
    for rule in RuleKind::ALL {
        for &width in &widths {
            accuracy.push(TrainConfig {
                rule,
                width,
                ..base.clone()
            });
        }
    }
    let add_widths: Vec<usize> = match scale {
        Scale::Tiny => vec![4, 8],
        Scale::Quick => vec![32, 64, 128],
        Scale::Full => vec![64, 256, 1024],
    };
    let mut add = Vec::new();
    for rule in ADD_RULES {
        for &width in &add_widths {
            add.push(TrainConfig {
                model: ModelKind::Rnn,
                dataset: "add".into(),
                rule,
                width,
                depth: 1,
                activation: Activation::Relu,
                lr: 0.001,
                batch_size: 50,
                epochs: pick(1, 200, 200),
                seed,
                ..TrainConfig::default()
            });
        }
    }
    let sizes = if tiny {
        vec![20, 40]
    } else {
        vec![100usize, 300, 1000]
    };
    // Low data: every subset size gets the same number of optimisation steps (a fixed epoch
    // count would give the 100-example runs a tenth of the steps of the 1000-example runs).
    let low_data_steps = pick(2, 400, 600);
    let mut low_data = Vec::new();
    for rule in RuleKind::ALL {
        for &k in &sizes {
            let steps_per_epoch = k.div_ceil(base.batch_size);
            low_data.push(TrainConfig {
                rule,
                width: pick(16, 512, 1024),
                train_size: Some(k),
                epochs: low_data_steps.div_ceil(steps_per_epoch),
                ..base.clone()
            });
        }
    }
    let align = widths
        .iter()
        .map(|&width| TrainConfig {
            rule: RuleKind::Bp,
            width,
            lr: 1.0,
            epochs: pick(1, 5, 10),
            train_size: tiny.then_some(100),
            ..base.clone()
        })
        .collect();
    let dyn_widths: Vec<usize> = match scale {
        Scale::Tiny => vec![16, 32],
        Scale::Quick => vec![64, 256, 1024],
        Scale::Full => vec![64, 256, 1024, 4096],
    };
    let activations: &[Activation] = if scale == Scale::Full {
        &[Activation::Erf, Activation::Relu]
    } else {
        &[Activation::Erf]
    };
    let dynamics = activations
        .iter()
        .map(|&activation| DynamicsParams {
            cfg: TrainConfig {
                dataset: "teacher".into(),
                activation,
                depth: 2,
                lr: 0.1,
                train_size: Some(pick(16, 64, 64)),
                seed,
                ..TrainConfig::default()
            },
            widths: dyn_widths.clone(),
            steps: pick(10, 200, 200) as u64,
        })
        .collect();
    Ok(Plan {
        dataset: dataset.to_string(),
        scale,
        accuracy,
        widths,
        add,
        add_widths,
        low_data,
        sizes,
        align,
        dynamics,
    })
}

/// The identity of an alignment or dynamics line.
fn extra_key(kind: &str, settings: &Value) -> String {
    format!("{kind}:{settings}")
}

fn read_lines(path: &Path) -> Result<Vec<Value>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CliError::read(path, e)),
    };
    let complete = &text[..text.rfind('\n').map_or(0, |p| p + 1)];
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                CliError::Input(format!(
                    "{}:{}: not a JSON line ({e})",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

fn append(path: &Path, v: &Value) -> Result<(), CliError> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| CliError::write(path, e))?;
    sweep::append_line(&mut f, &v.to_string()).map_err(|e| CliError::write(path, e))
}

/// Experiment names written into every line's `"experiment"` field.
pub const EXPERIMENTS: [&str; 5] = [
    "accuracy_vs_width",
    "add_task",
    "low_data",
    "alignment",
    "dynamics",
];

/// The command line as typed, with the program name shortened to `widealign`.
fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().collect();
    if let Some(a) = args.first_mut() {
        *a = "widealign".into();
    }
    args.join(" ")
}

/// `widealign reproduce`.
pub fn run(a: &ReproduceArgs, progress: &Progress) -> Result<(), CliError> {
    let started = Instant::now();
    let plan = plan(a.scale, &a.dataset, a.seed)?;
    let results = a.out.join("results.jsonl");
    if !a.resume && std::fs::metadata(&results).is_ok_and(|m| m.len() > 0) {
        return Err(CliError::flag(
            "--out",
            format!(
                "{} already holds results; pass --resume to continue them, or choose another folder",
                results.display()
            ),
        ));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| CliError::write(&a.out, e))?;
    progress.log(&format!(
        "reproduce ({}, {}): {} + {} + {} training runs, {} alignment widths, {} dynamics experiments into {}",
        scale_name(plan.scale),
        plan.dataset,
        plan.accuracy.len(),
        plan.add.len(),
        plan.low_data.len(),
        plan.align.len(),
        plan.dynamics.len(),
        a.out.display()
    ));
    let mut trainer = Trainer::new();
    for (experiment, runs) in [
        (EXPERIMENTS[0], &plan.accuracy),
        (EXPERIMENTS[1], &plan.add),
        (EXPERIMENTS[2], &plan.low_data),
    ] {
        let sweep_plan = SweepPlan {
            runs,
            shard: (0, 1),
            out: &results,
            // the folder was checked above; later groups append to the same file
            resume: true,
            experiment: Some(experiment),
        };
        let mut exec = |cfg: &TrainConfig, obs: &mut crate::runner::Observer<'_>| {
            let mut rp = crate::commands::RunProgress::new(progress, cfg, false);
            trainer.run(cfg, &mut |ev| rp.event(ev) && obs(ev))
        };
        let summary = sweep::run_sweep(&sweep_plan, &mut exec, progress, &STOP)?;
        if summary.interrupted {
            return Err(CliError::Interrupted);
        }
    }
    let done: HashSet<String> = read_lines(&results)?
        .iter()
        .filter_map(|v| v.get("key").and_then(Value::as_str).map(str::to_string))
        .collect();
    let bar = progress.bar(EXPERIMENTS[3], plan.align.len() as u64, false);
    for (i, cfg) in plan.align.iter().enumerate() {
        let settings = config::to_value(cfg);
        let key = extra_key("alignment", &settings);
        if done.contains(&key) {
            continue;
        }
        if STOP.load(Ordering::SeqCst) {
            return Err(CliError::Interrupted);
        }
        bar.update(i as u64, &format!("width {}", cfg.width));
        let mut rp = crate::commands::RunProgress::new(progress, cfg, false);
        let run = align_one(cfg, &mut trainer, &mut |ev| rp.event(ev))?;
        drop(rp);
        progress.log(&format!(
            "alignment: width {}: layer scores {}",
            cfg.width,
            run.layers
                .iter()
                .map(|l| format!("{:.4}", l.score))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        append(
            &results,
            &json!({
                "widealign_version": VERSION,
                "experiment": EXPERIMENTS[3],
                "key": key,
                "settings": settings,
                "width": cfg.width,
                "test_accuracy": run.result.test_accuracy,
                "diverged": run.result.diverged,
                "layers": run.layers,
            }),
        )?;
    }
    bar.finish();
    for p in &plan.dynamics {
        let settings = json!({"config": Json(&p.cfg), "widths": p.widths, "steps": p.steps});
        let key = extra_key("dynamics", &settings);
        if done.contains(&key) {
            continue;
        }
        if STOP.load(Ordering::SeqCst) {
            return Err(CliError::Interrupted);
        }
        let act = p.cfg.activation.name();
        progress.log(&format!("dynamics: {act}, widths {:?}", p.widths));
        let r = dynamics(p, &mut trainer)?;
        progress.log(&format!(
            "dynamics: {act}: slopes weight norm {:.3}, weight direction {:.3}, function {:.3}",
            r.slopes.weight_norm, r.slopes.weight_direction, r.slopes.function
        ));
        append(
            &results,
            &json!({
                "widealign_version": VERSION,
                "experiment": EXPERIMENTS[4],
                "key": key,
                "settings": settings,
                "activation": act,
                "report": r,
            }),
        )?;
    }
    let add_baseline = add_baseline_loss(&mut trainer, a.seed)?;
    let lines = read_lines(&results)?;
    let elapsed = started.elapsed().as_secs_f64();
    let report = write_report(
        &a.out,
        &plan,
        &lines,
        add_baseline,
        elapsed,
        &command_line(),
    )?;
    progress.log(&format!(
        "reproduce: wrote {} and {} plots in {}",
        a.out.join("report.md").display(),
        report.plots,
        fmt_secs(elapsed)
    ));
    if a.json {
        emit(
            &json!({
                "out": a.out.display().to_string(),
                "results": results.display().to_string(),
                "report": a.out.join("report.md").display().to_string(),
                "plots": report.plots,
                "lines": lines.len(),
                "seconds": elapsed,
            })
            .to_string(),
        )?;
    }
    Ok(())
}

fn scale_name(s: Scale) -> &'static str {
    match s {
        Scale::Tiny => "tiny",
        Scale::Quick => "quick",
        Scale::Full => "full",
    }
}

/// The Add task's test loss of always predicting 0.5 (same loss as training: per-step MSE
/// summed over the steps).
fn add_baseline_loss(trainer: &mut Trainer, seed: u64) -> Result<f64, CliError> {
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

/// What [`write_report`] produced.
pub struct ReportSummary {
    /// Number of SVG files written.
    pub plots: usize,
}

/// Looks up the training record of `cfg`.
fn record<'a>(by_key: &'a HashMap<String, &'a Value>, cfg: &TrainConfig) -> Option<&'a Value> {
    by_key.get(&config::key(cfg)).copied()
}

fn num(v: Option<&Value>, key: &str) -> f64 {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// Mean over the finite values (NaN if none).
fn mean(xs: &[f64]) -> f64 {
    let f: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        f64::NAN
    } else {
        f.iter().sum::<f64>() / f.len() as f64
    }
}

/// A table cell for a run: the metric, or `diverged (epoch e)`, or `–` if missing.
fn cell(rec: Option<&Value>, metric: &str, digits: usize) -> String {
    match rec {
        None => "–".into(),
        Some(r) if r["diverged"] == true => {
            format!(
                "diverged (ep. {})",
                r["diverged_epoch"].as_u64().unwrap_or(0)
            )
        }
        Some(r) => match r[metric].as_f64() {
            Some(x) => format!("{x:.digits$}"),
            None => "–".into(),
        },
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {cores} cores available, {} rayon threads, {} {}",
        rayon::current_num_threads(),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

fn md_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|", header.join(" | "));
    for _ in header {
        s.push_str("---|");
    }
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

/// Writes `report.md` and the SVG plots from the result lines.
pub fn write_report(
    dir: &Path,
    plan: &Plan,
    lines: &[Value],
    add_baseline: f64,
    seconds: f64,
    command: &str,
) -> Result<ReportSummary, CliError> {
    let by_key: HashMap<String, &Value> = lines
        .iter()
        .filter_map(|v| {
            let c = config::from_value(v.get("config")?.clone()).ok()?;
            Some((config::key(&c), v))
        })
        .collect();
    let mut plots = 0;
    let mut md = String::new();
    md.push_str(&format!(
        "# widealign reproduction report\n\n\
         * command: `{command}`\n\
         * scale: {}, dataset: `{}`, widealign {VERSION}\n\
         * machine: {}\n\
         * wall-clock time: {} (this invocation; with `--resume` earlier runs are not re-timed)\n\n\
         Every number below is in `results.jsonl` beside this file: one JSON line per training run \
         (the `widealign train --json` record plus an `experiment` field), alignment width and dynamics experiment.\n\n",
        scale_name(plan.scale),
        plan.dataset,
        machine(),
        fmt_secs(seconds)
    ));
    // 1. Accuracy vs width.
    let first = plan.accuracy.first().cloned().unwrap_or_default();
    md.push_str(&format!(
        "## 1. Test accuracy against width, every rule\n\nMLP with {} hidden layers on `{}`{}, NTK parameterisation, plain SGD, lr {}, batch {}, {} epochs; \
         final-epoch test accuracy (seed {}).\n\n",
        first.depth,
        plan.dataset,
        first.train_size.map(|k| format!(" ({k} training examples)")).unwrap_or_default(),
        first.lr,
        first.batch_size,
        first.epochs,
        seeds_of(&plan.accuracy)
    ));
    let mut header = vec!["rule".to_string()];
    header.extend(plan.widths.iter().map(|w| format!("width {w}")));
    let mut rows = Vec::new();
    let mut chart = Chart::new(
        format!("Test accuracy vs width ({})", plan.dataset),
        "hidden width",
        Axis::Log2,
        "test accuracy",
        Axis::Linear,
    );
    for (ri, rule) in RuleKind::ALL.iter().enumerate() {
        let mut row = vec![rule.name().to_string()];
        let mut pts = Vec::new();
        let mut lost = Vec::new(); // widths without a point: every run diverged
        for &w in &plan.widths {
            let recs: Vec<Option<&Value>> = plan
                .accuracy
                .iter()
                .filter(|c| c.rule == *rule && c.width == w)
                .map(|c| record(&by_key, c))
                .collect();
            let accs: Vec<f64> = recs
                .iter()
                .filter(|r| r.is_some_and(|r| r["diverged"] != true))
                .map(|r| num(*r, "test_accuracy"))
                .collect();
            let diverged = recs
                .iter()
                .filter(|r| r.is_some_and(|r| r["diverged"] == true))
                .count();
            let m = mean(&accs);
            let mut c = if m.is_finite() {
                format!("{m:.4}")
            } else {
                "–".into()
            };
            if diverged > 0 && !m.is_finite() {
                lost.push(w.to_string());
            }
            if diverged > 0 {
                c = if m.is_finite() {
                    format!("{c} ({diverged} diverged)")
                } else {
                    cell(recs.iter().flatten().next().copied(), "test_accuracy", 4)
                };
            }
            row.push(c);
            pts.push((w as f64, m));
        }
        rows.push(row);
        // the legend says which widths have no point, so a missing point is not a mystery
        let label = if lost.is_empty() {
            rule.name().to_string()
        } else {
            format!("{} (diverged: {})", rule.name(), lost.join(", "))
        };
        chart.series.push(Series::new(label, pts, ri));
    }
    md.push_str(&md_table(&header, &rows));
    chart.save(&dir.join("accuracy_vs_width.svg"))?;
    plots += 1;
    md.push_str("\n![Test accuracy against width](accuracy_vs_width.svg)\n\n");

    // Training curves at the largest width.
    let wmax = plan.widths.iter().copied().max().unwrap_or(0);
    let mut curves = Chart::new(
        format!("Training curves at width {wmax} ({})", plan.dataset),
        "epoch",
        Axis::Linear,
        "test accuracy",
        Axis::Linear,
    );
    for (ri, rule) in RuleKind::ALL.iter().enumerate() {
        let cfg = plan
            .accuracy
            .iter()
            .find(|c| c.rule == *rule && c.width == wmax && c.seed == first.seed);
        if let Some(r) = cfg.and_then(|c| record(&by_key, c)) {
            let pts = r["history"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .map(|e| {
                            (
                                e["epoch"].as_f64().unwrap_or(f64::NAN),
                                e["test_accuracy"].as_f64().unwrap_or(f64::NAN),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            curves
                .series
                .push(Series::new(rule.name(), pts, ri).no_markers());
        }
    }
    curves.save(&dir.join("training_curves.svg"))?;
    plots += 1;
    md.push_str(&format!(
        "Test accuracy after every epoch at width {wmax} (epoch 0 is the untrained network):\n\n![Training curves](training_curves.svg)\n\n"
    ));

    // 2. Add task.
    let a0 = plan.add.first().cloned().unwrap_or_default();
    md.push_str(&format!(
        "## 2. Add task against width\n\nElman RNN ({}), Add task (T = 100, 300 train / 100 test sequences), SGD lr {}, batch {}, {} epochs; \
         best test loss over the epochs (per-step MSE summed over the 100 steps). Always predicting 0.5 scores **{}**.\n\n",
        a0.activation.name(),
        a0.lr,
        a0.batch_size,
        a0.epochs,
        fmt_sig(add_baseline)
    ));
    let mut header = vec!["rule".to_string()];
    header.extend(plan.add_widths.iter().map(|w| format!("width {w}")));
    let mut rows = Vec::new();
    let mut chart = Chart::new(
        "Add task: best test loss vs width",
        "hidden width",
        Axis::Log2,
        "best test loss",
        Axis::Log10,
    );
    for (ri, rule) in ADD_RULES.iter().enumerate() {
        let mut row = vec![rule.name().to_string()];
        let mut pts = Vec::new();
        for &w in &plan.add_widths {
            let rec = plan
                .add
                .iter()
                .find(|c| c.rule == *rule && c.width == w)
                .and_then(|c| record(&by_key, c));
            row.push(cell(rec, "best_test_loss", 4));
            pts.push((w as f64, num(rec, "best_test_loss")));
        }
        rows.push(row);
        chart.series.push(Series::new(rule.name(), pts, ri));
    }
    if let (Some(&w0), Some(&w1)) = (plan.add_widths.first(), plan.add_widths.last()) {
        chart.series.push(
            Series::new(
                "predict 0.5",
                vec![(w0 as f64, add_baseline), (w1 as f64, add_baseline)],
                9,
            )
            .dashed()
            .no_markers(),
        );
    }
    md.push_str(&md_table(&header, &rows));
    chart.save(&dir.join("add_task_vs_width.svg"))?;
    plots += 1;
    md.push_str("\n![Add task loss against width](add_task_vs_width.svg)\n\n");

    // 3. Low data.
    let l0 = plan.low_data.first().cloned().unwrap_or_default();
    md.push_str(&format!(
        "## 3. Low data\n\nWidth {}, stratified training subsets of `{}`, lr {}, batch {}; every size \
         gets about the same number of optimisation steps (epochs {} for the sizes {:?}); final test accuracy.\n\n",
        l0.width,
        plan.dataset,
        l0.lr,
        l0.batch_size,
        plan.low_data
            .iter()
            .take(plan.sizes.len())
            .map(|c| c.epochs.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        plan.sizes
    ));
    let mut header = vec!["rule".to_string()];
    header.extend(plan.sizes.iter().map(|k| format!("{k} examples")));
    let mut rows = Vec::new();
    let mut chart = Chart::new(
        format!(
            "Low data: test accuracy vs training examples (width {})",
            l0.width
        ),
        "training examples",
        Axis::Log10,
        "test accuracy",
        Axis::Linear,
    );
    for (ri, rule) in RuleKind::ALL.iter().enumerate() {
        let mut row = vec![rule.name().to_string()];
        let mut pts = Vec::new();
        for &k in &plan.sizes {
            let rec = plan
                .low_data
                .iter()
                .find(|c| c.rule == *rule && c.train_size == Some(k))
                .and_then(|c| record(&by_key, c));
            row.push(cell(rec, "test_accuracy", 4));
            let acc = if rec.is_some_and(|r| r["diverged"] == true) {
                f64::NAN
            } else {
                num(rec, "test_accuracy")
            };
            pts.push((k as f64, acc));
        }
        rows.push(row);
        chart.series.push(Series::new(rule.name(), pts, ri));
    }
    md.push_str(&md_table(&header, &rows));
    chart.save(&dir.join("low_data.svg"))?;
    plots += 1;
    md.push_str("\n![Low-data accuracy](low_data.svg)\n\n");

    // 4. Alignment.
    let al: Vec<&Value> = lines
        .iter()
        .filter(|v| v["experiment"] == EXPERIMENTS[3])
        .collect();
    let g0 = plan.align.first().cloned().unwrap_or_default();
    md.push_str(&format!(
        "## 4. Alignment against width\n\nBackprop on `{}`{} ({} epochs, lr {}); per layer, the alignment score cos(ΔWᵀΔW, ΔW_refᵀΔW_ref) of the trained weight change with the \
         predicted (Align-zero) update accumulated during the same run, its probe estimate (100 Gaussian probes), the same score with ΔW's entries shuffled and with a random \
         matrix, and the fraction of ‖ΔW‖² in the span of the layer's initial training activities.\n\n",
        plan.dataset,
        g0.train_size.map(|k| format!(", {k} training examples")).unwrap_or_default(),
        g0.epochs,
        g0.lr
    ));
    let header: Vec<String> = [
        "width",
        "layer",
        "score",
        "probe",
        "shuffled",
        "random",
        "input span",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    let mut per_layer: BTreeMap<u64, Vec<(f64, [f64; 4])>> = BTreeMap::new();
    for cfg in &plan.align {
        let Some(v) = al.iter().find(|v| v["width"] == cfg.width) else {
            continue;
        };
        for l in v["layers"].as_array().into_iter().flatten() {
            let f = |k: &str| l[k].as_f64().unwrap_or(f64::NAN);
            let layer = l["layer"].as_u64().unwrap_or(0);
            rows.push(vec![
                cfg.width.to_string(),
                layer.to_string(),
                format!("{:.4}", f("score")),
                format!("{:.4}", f("probe_score")),
                format!("{:.4}", f("shuffled")),
                format!("{:.4}", f("random")),
                format!("{:.4}", f("input_span")),
            ]);
            per_layer.entry(layer).or_default().push((
                cfg.width as f64,
                [f("score"), f("shuffled"), f("random"), f("input_span")],
            ));
        }
    }
    md.push_str(&md_table(&header, &rows));
    let mut chart = Chart::new(
        "Alignment with the predicted update vs width (bp)",
        "hidden width",
        Axis::Log2,
        "alignment score",
        Axis::Linear,
    );
    chart.y_range = Some((0.0, 1.05));
    for (i, (layer, pts)) in per_layer.iter().enumerate() {
        let pick = |j: usize| pts.iter().map(|(w, v)| (*w, v[j])).collect::<Vec<_>>();
        chart
            .series
            .push(Series::new(format!("layer {layer}"), pick(0), i));
        chart
            .series
            .push(Series::new(format!("layer {layer} shuffled"), pick(1), i).dashed());
        chart.series.push(
            Series::new(format!("layer {layer} random"), pick(2), i)
                .dashed()
                .no_markers(),
        );
    }
    chart.save(&dir.join("alignment_vs_width.svg"))?;
    plots += 1;
    md.push_str("\n![Alignment against width](alignment_vs_width.svg)\n\n");

    // 5. Dynamics.
    md.push_str(
        "## 5. Layerwise weight dynamics against width\n\nFull-batch gradient descent on teacher–student regression; relative errors of the closed-form \
         predictions of docs/theory.md §4 for each layer's weight-change norm and direction (mean over layers) and for the function on test points, with \
         log-log slopes fitted over all layers and widths (theory: about −1/2 for smooth activations; ReLU's weight direction may converge more slowly).\n\n",
    );
    for v in lines.iter().filter(|v| v["experiment"] == EXPERIMENTS[4]) {
        let act = v["activation"].as_str().unwrap_or("?");
        let r = &v["report"];
        let widths: Vec<f64> = r["widths"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let per_width_mean = |k: &str| -> Vec<f64> {
            r["errors"][k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|l| {
                            mean(
                                &l.as_array()
                                    .map(|x| {
                                        x.iter()
                                            .map(|y| y.as_f64().unwrap_or(f64::NAN))
                                            .collect::<Vec<_>>()
                                    })
                                    .unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let wn = per_width_mean("weight_norm");
        let wd = per_width_mean("weight_direction");
        let f: Vec<f64> = r["errors"]["function"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
            .unwrap_or_default();
        md.push_str(&format!(
            "### {act}\n\n{} training points, depth {}, {} steps at lr {} (largest stable lr {}).\n\n",
            r["train_size"],
            r["hidden_layers"],
            r["steps"],
            r["lr"],
            fmt_sig(r["max_stable_lr"].as_f64().unwrap_or(f64::NAN))
        ));
        let header: Vec<String> = ["width", "weight norm", "weight direction", "function"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut rows: Vec<Vec<String>> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                vec![
                    format!("{w}"),
                    format!("{:.3e}", wn.get(i).copied().unwrap_or(f64::NAN)),
                    format!("{:.3e}", wd.get(i).copied().unwrap_or(f64::NAN)),
                    format!("{:.3e}", f.get(i).copied().unwrap_or(f64::NAN)),
                ]
            })
            .collect();
        let slope = |k: &str| r["slopes"][k].as_f64().unwrap_or(f64::NAN);
        rows.push(vec![
            "**slope**".into(),
            format!("{:.3}", slope("weight_norm")),
            format!("{:.3}", slope("weight_direction")),
            format!("{:.3}", slope("function")),
        ]);
        md.push_str(&md_table(&header, &rows));
        let mut chart = Chart::new(
            format!("Prediction error vs width ({act})"),
            "hidden width",
            Axis::Log2,
            "relative error",
            Axis::Log10,
        );
        let zip = |ys: &[f64]| {
            widths
                .iter()
                .copied()
                .zip(ys.iter().copied())
                .collect::<Vec<_>>()
        };
        chart.series.push(Series::new(
            format!("weight norm ({:.2})", slope("weight_norm")),
            zip(&wn),
            0,
        ));
        chart.series.push(Series::new(
            format!("weight direction ({:.2})", slope("weight_direction")),
            zip(&wd),
            1,
        ));
        chart.series.push(Series::new(
            format!("function ({:.2})", slope("function")),
            zip(&f),
            2,
        ));
        if let (Some(&w0), Some(&w1)) = (widths.first(), widths.last()) {
            let anchor = [wn.first(), wd.first(), f.first()]
                .into_iter()
                .flatten()
                .copied()
                .filter(|x| x.is_finite() && *x > 0.0)
                .fold(f64::NAN, f64::max);
            if anchor.is_finite() {
                chart
                    .series
                    .push(Series::power_law("width^(-1/2)", -0.5, w0, anchor, w1));
            }
        }
        let file = format!("dynamics_{act}.svg");
        chart.save(&dir.join(&file))?;
        plots += 1;
        md.push_str(&format!("\n![Dynamics errors ({act})]({file})\n\n"));
    }
    crate::fsutil::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    Ok(ReportSummary { plots })
}

fn seeds_of(runs: &[TrainConfig]) -> String {
    let mut s: Vec<u64> = runs.iter().map(|c| c.seed).collect();
    s.sort_unstable();
    s.dedup();
    s.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_every_rule_and_validate() {
        for scale in [Scale::Tiny, Scale::Quick, Scale::Full] {
            let p = plan(scale, "digits", 0).unwrap();
            assert_eq!(p.accuracy.len() % 7, 0);
            for c in p
                .accuracy
                .iter()
                .chain(&p.add)
                .chain(&p.low_data)
                .chain(&p.align)
            {
                config::validate(c).unwrap();
            }
            assert!(p
                .add
                .iter()
                .all(|c| c.model == ModelKind::Rnn && c.dataset == "add"));
        }
        assert!(plan(Scale::Quick, "mnist", 0).is_err());
        let f = plan(Scale::Quick, "fashion-mnist", 3).unwrap();
        assert!(f
            .accuracy
            .iter()
            .all(|c| c.dataset == "fashion-mnist" && c.seed == 3 && c.train_size.is_none()));
        assert!(f.add.iter().all(|c| c.dataset == "add"));
    }

    #[test]
    fn cells_show_divergence() {
        let r = json!({"diverged": true, "diverged_epoch": 3, "test_accuracy": 0.1});
        assert_eq!(cell(Some(&r), "test_accuracy", 4), "diverged (ep. 3)");
        let r = json!({"diverged": false, "test_accuracy": 0.91234});
        assert_eq!(cell(Some(&r), "test_accuracy", 3), "0.912");
        assert_eq!(cell(None, "test_accuracy", 3), "–");
    }

    #[test]
    fn diverged_widths_are_named_in_the_accuracy_legend() {
        let p = plan(Scale::Quick, "digits", 0).unwrap();
        let d = tempfile::tempdir().unwrap();
        let diverged = json!({
            "config": Json(&p.accuracy[0]), "diverged": true, "diverged_epoch": 3,
            "test_accuracy": null, "best_test_loss": null, "history": []
        });
        let fine = json!({
            "config": Json(&p.accuracy[1]), "diverged": false, "test_accuracy": 0.5,
            "best_test_loss": 0.1, "history": []
        });
        write_report(
            d.path(),
            &p,
            &[diverged, fine],
            0.3,
            1.0,
            "widealign reproduce",
        )
        .unwrap();
        let svg = std::fs::read_to_string(d.path().join("accuracy_vs_width.svg")).unwrap();
        let w = p.accuracy[0].width;
        assert!(
            svg.contains(&format!("bp (diverged: {w})")),
            "legend lacks the note"
        );
        assert!(!svg.contains("align-zero (diverged"));
    }

    #[test]
    fn report_from_partial_results_still_renders() {
        let p = plan(Scale::Quick, "digits", 0).unwrap();
        let d = tempfile::tempdir().unwrap();
        let rec = json!({
            "config": Json(&p.accuracy[0]), "diverged": false, "test_accuracy": 0.5, "best_test_loss": 0.1,
            "history": [{"epoch": 0, "test_accuracy": 0.1}, {"epoch": 1, "test_accuracy": 0.5}]
        });
        let s = write_report(d.path(), &p, &[rec], 0.3, 1.0, "widealign reproduce").unwrap();
        assert_eq!(s.plots, 5); // no dynamics lines yet: no dynamics plot
        let md = std::fs::read_to_string(d.path().join("report.md")).unwrap();
        assert!(md.contains("| bp | 0.5000 |"));
        assert!(md.contains("![Test accuracy against width](accuracy_vs_width.svg)"));
    }
}
