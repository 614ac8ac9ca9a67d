//! The report of `widealign reproduce`: `report.md` and its SVG plots, built from the typed
//! results of a reproduction ([`ReproResults`]). One function per section, each taking the
//! plan and the results it shows and returning its markdown and charts:
//!
//! | section | function | plots |
//! |---|---|---|
//! | header | [`header`] | |
//! | 1. test accuracy against width | [`accuracy_vs_width`] | `accuracy_vs_width.svg` |
//! | training curves at the largest width | [`training_curves`] | `training_curves.svg` |
//! | 2. the Add task against width | [`add_task`] | `add_task_vs_width.svg` |
//! | 3. low data | [`low_data`] | `low_data.svg` |
//! | 4. alignment against width | [`alignment`] | `alignment_vs_width.svg` |
//! | 5. layerwise dynamics against width | [`dynamics`] | `dynamics_<activation>.svg` each |
//! | 6. RNN alignment against width (Add task) | [`rnn_alignment`] | `rnn_alignment_vs_width.svg` |
//! | 7. RNN layerwise dynamics against width (`teacher-seq`) | [`rnn_dynamics`] | `rnn_dynamics_<activation>.svg` each |
//! | 8. CNN: test accuracy and alignment against channel count | [`cnn`] | `cnn_accuracy_vs_channels.svg`, `cnn_alignment_vs_channels.svg` |
//! | 9. the infinite-width limit | [`limit`] | `limit_vs_width.svg` |
//!
//! **Seeds.** A cell (a run with its seed ignored, [`same_cell`]) shows the mean of its seeds
//! with the half-width of the 95% t interval (`0.9239 ± 0.0012`; the mean alone for one seed)
//! and the plots shade the interval. Each table is followed by a *reading* that names a
//! difference only where the two intervals are disjoint ([`Interval::separated_from`]); with
//! one seed per cell it reads none.

use std::collections::BTreeMap;
use std::path::Path;

use widealign_experiments::limit::{training_steps, LimitSettings};
use widealign_experiments::plan::{same_cell, Plan, ADD_RULES};
use widealign_experiments::record::VERSION;
use widealign_experiments::reproduce::{
    AlignmentLine, DynamicsLine, LayerScores, ReproResults, RNN_MATRICES,
};
use widealign_experiments::stats::Interval;
use widealign_ntk::experiment::pooled_log_slope;
use widealign_rules::{RuleKind, TrainConfig, TrainResult};

use crate::error::CliError;
use crate::fsutil::write_atomic;
use crate::plots::{fmt_sig, Axis, Chart, Series};
use crate::progress::fmt_secs;

/// One part of the report: its markdown and the charts it links, by file name.
#[derive(Debug, Default)]
pub struct Section {
    /// Markdown text.
    pub markdown: String,
    /// Charts to save beside `report.md`.
    pub charts: Vec<(String, Chart)>,
}

/// What [`write_report`] produced.
#[derive(Debug)]
pub struct ReportSummary {
    /// Number of SVG files written.
    pub plots: usize,
}

/// Writes `report.md` and the SVG plots of every section into `dir`.
pub fn write_report(
    dir: &Path,
    plan: &Plan,
    results: &ReproResults,
    add_baseline: f64,
    seconds: f64,
    command: &str,
) -> Result<ReportSummary, CliError> {
    let sections = [
        header(plan, seconds, command),
        accuracy_vs_width(plan, results),
        training_curves(plan, results),
        add_task(plan, results, add_baseline),
        low_data(plan, results),
        alignment(plan, &results.alignment),
        dynamics(&results.dynamics),
        rnn_alignment(plan, &results.rnn_alignment),
        rnn_dynamics(&results.rnn_dynamics),
        cnn(plan, results),
        limit(plan, results),
    ];
    let mut md = String::new();
    let mut plots = 0;
    for s in &sections {
        md.push_str(&s.markdown);
        for (file, chart) in &s.charts {
            chart.save(&dir.join(file))?;
            plots += 1;
        }
    }
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    Ok(ReportSummary { plots })
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

/// A table cell for a run: the metric, or `diverged (ep. e)`, or `–` if missing.
fn cell(r: Option<&TrainResult>, metric: fn(&TrainResult) -> Option<f64>, digits: usize) -> String {
    match r {
        None => "–".into(),
        Some(r) if r.diverged => format!("diverged (ep. {})", r.diverged_epoch.unwrap_or(0)),
        Some(r) => match metric(r).filter(|x| x.is_finite()) {
            Some(x) => format!("{x:.digits$}"),
            None => "–".into(),
        },
    }
}

/// A cell's runs: the interval of a metric over the runs that did not diverge, and how many
/// diverged (the first diverged run is kept for its epoch).
struct CellStats<'a> {
    iv: Interval,
    runs: usize,
    diverged: usize,
    first_diverged: Option<&'a TrainResult>,
}

/// The statistics of `metric` over the runs of `runs` in the cell of `cell` that have results.
fn cell_stats<'a>(
    results: &'a ReproResults,
    runs: &[TrainConfig],
    cell: &TrainConfig,
    metric: fn(&TrainResult) -> Option<f64>,
) -> CellStats<'a> {
    let recs: Vec<&TrainResult> = same_cell(runs, cell)
        .filter_map(|c| results.result(c))
        .collect();
    let values: Vec<f64> = recs
        .iter()
        .filter(|r| !r.diverged)
        .map(|r| metric(r).unwrap_or(f64::NAN))
        .collect();
    CellStats {
        iv: Interval::of(&values),
        runs: recs.len(),
        diverged: recs.iter().filter(|r| r.diverged).count(),
        first_diverged: recs.iter().copied().find(|r| r.diverged),
    }
}

impl CellStats<'_> {
    /// `mean ± half-width`, with `(d diverged)` when some seeds diverged, `diverged (ep. e)`
    /// when all did, `–` without runs.
    fn text(&self, metric: fn(&TrainResult) -> Option<f64>, digits: usize) -> String {
        if self.runs == 0 {
            return "–".into();
        }
        if self.iv.n == 0 {
            return cell(self.first_diverged, metric, digits);
        }
        let c = self.iv.format(digits);
        if self.diverged > 0 {
            format!("{c} ({} diverged)", self.diverged)
        } else {
            c
        }
    }
}

/// The table cell and interval of `metric` over the cell of `cell` (`–` and an empty interval
/// when the plan has no such cell).
fn cell_entry(
    results: &ReproResults,
    runs: &[TrainConfig],
    cell: Option<&TrainConfig>,
    metric: fn(&TrainResult) -> Option<f64>,
) -> (String, Interval) {
    match cell {
        Some(c) => {
            let st = cell_stats(results, runs, c, metric);
            (st.text(metric, 4), st.iv)
        }
        None => ("–".into(), Interval::of(&[])),
    }
}

/// The band `(x, low, high)` of intervals at `xs` (empty when no interval exists).
fn band(xs: &[f64], ivs: &[Interval]) -> Vec<(f64, f64, f64)> {
    if ivs.iter().all(|i| !i.half_width.is_finite()) {
        return Vec::new();
    }
    xs.iter()
        .zip(ivs)
        .map(|(&x, i)| (x, i.lo(), i.hi()))
        .collect()
}

/// The reading of a table of intervals (`ivs[row][column]`): per column, the rows whose
/// interval is disjoint from the reference row's, above or below it, and the rest as not
/// distinguishable; with one seed per cell, that no difference is read.
fn reading(
    rows: &[String],
    columns: &[String],
    ivs: &[Vec<Interval>],
    reference: usize,
    seeds: usize,
    better: &str,
    worse: &str,
) -> String {
    if seeds < 2 {
        return "*Reading:* one seed per cell, so no interval: no difference in this table is read as real \
                (run with `--seeds 3` or more).\n\n"
            .into();
    }
    let Some(reference_row) = ivs.get(reference) else {
        return String::new();
    };
    let mut out = format!(
        "*Reading* ({seeds} seeds per cell; a difference is named only where the 95% intervals are disjoint), against {}:\n\n",
        rows[reference]
    );
    for (j, col) in columns.iter().enumerate() {
        let r = reference_row[j];
        let (mut above, mut below, mut same) = (Vec::new(), Vec::new(), Vec::new());
        for (i, row) in rows.iter().enumerate() {
            if i == reference {
                continue;
            }
            let iv = ivs[i][j];
            if !iv.mean.is_finite() {
                continue;
            }
            if iv.separated_from(&r) {
                if iv.mean > r.mean {
                    above.push(row.as_str());
                } else {
                    below.push(row.as_str());
                }
            } else {
                same.push(row.as_str());
            }
        }
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        out.push_str(&format!(
            "* {col}: {better}: {}; {worse}: {}; not distinguishable: {}\n",
            list(&above),
            list(&below),
            list(&same)
        ));
    }
    out.push('\n');
    out
}

/// Per row, the change between neighbouring columns: `↑` / `↓` where the intervals are
/// disjoint, `≈` where they overlap (one seed: nothing is read).
fn trends(rows: &[String], columns: &[String], ivs: &[Vec<Interval>], seeds: usize) -> String {
    if seeds < 2 || columns.len() < 2 {
        return String::new();
    }
    let mut out = String::from(
        "Changes between neighbouring columns (↑ / ↓: intervals disjoint, ≈: not distinguishable):\n\n",
    );
    for (i, row) in rows.iter().enumerate() {
        let steps: Vec<String> = (1..columns.len())
            .map(|j| {
                let (a, b) = (ivs[i][j - 1], ivs[i][j]);
                let sign = if !a.mean.is_finite() || !b.mean.is_finite() {
                    "?"
                } else if a.separated_from(&b) {
                    if b.mean > a.mean {
                        "↑"
                    } else {
                        "↓"
                    }
                } else {
                    "≈"
                };
                format!("{} → {} {sign}", columns[j - 1], columns[j])
            })
            .collect();
        out.push_str(&format!("* {row}: {}\n", steps.join(", ")));
    }
    out.push('\n');
    out
}

fn test_accuracy(r: &TrainResult) -> Option<f64> {
    r.test_accuracy
}

fn best_test_loss(r: &TrainResult) -> Option<f64> {
    Some(r.best_test_loss)
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

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

/// A number as JSON writes it (`0.1`, `1.0`).
fn json_number(x: f64) -> String {
    serde_json::Value::from(x).to_string()
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

/// The title, the command, the scale and the machine.
pub fn header(plan: &Plan, seconds: f64, command: &str) -> Section {
    Section {
        markdown: format!(
            "# widealign reproduction report\n\n\
             * command: `{command}`\n\
             * scale: {}, dataset: `{}`, seeds per cell: {} (from seed {}), widealign {VERSION}\n\
             * machine: {}\n\
             * wall-clock time: {} (this invocation; with `--resume` earlier runs are not re-timed)\n\n\
             Every number below is in `results.jsonl` beside this file: one JSON line per training run \
             (the `widealign train --json` record plus an `experiment` field), alignment width and dynamics experiment. \
             A table cell is the mean over its seeds ± the half-width of the 95% confidence interval (t distribution, n − 1 degrees of freedom); \
             the plots shade the interval.\n\n\
             Where this plan keeps widealign's settings instead of the authors' code's (docs/fidelity.md has each with file and line, and the option \
             that reproduces the reference): biases enter with s_b = 0.1 (reference: 1, `--b-std 1`); the Add task's delayed terms are zero before \
             the start (reference: wrap-around targets with an irreducible test loss of 0.203, `--dataset add-reference`); the RNN has one shared \
             initial state (reference: one per batch slot); Align-ada uses the frozen φ′ in every layer and, in the RNN, keeps the same-step output error \
             (reference: live φ′ at the top hidden layer, no same-step error); sections 1–4 use an MLP on the images (reference: a CNN with batch norm and \
             global average pooling; section 8 is the CNN). The alignment runs follow the reference (lr 5, the epoch-100 snapshot).\n\n",
            plan.scale.name(),
            plan.dataset,
            plan.seeds,
            plan.seed,
            machine(),
            fmt_secs(seconds)
        ),
        charts: Vec::new(),
    }
}

/// Section 1: final test accuracy of every rule against width (mean ± 95% interval over seeds;
/// diverged runs are counted, and widths where every seed diverged are named in the legend).
pub fn accuracy_vs_width(plan: &Plan, results: &ReproResults) -> Section {
    let first = plan.accuracy.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 1. Test accuracy against width, every rule\n\nMLP with {} hidden layers on `{}`{}, NTK parameterisation, plain SGD, lr {}, batch {}, {} epochs; \
         final-epoch test accuracy (seeds {}).\n\n",
        first.depth,
        plan.dataset,
        first.train_size.map(|k| format!(" ({k} training examples)")).unwrap_or_default(),
        first.lr,
        first.batch_size,
        first.epochs,
        seeds_of(&plan.accuracy)
    );
    let mut header = vec!["rule".to_string()];
    let columns: Vec<String> = plan.widths.iter().map(|w| format!("width {w}")).collect();
    header.extend(columns.iter().cloned());
    let mut rows = Vec::new();
    let mut ivs = Vec::new();
    let mut chart = Chart::new(
        format!("Test accuracy vs width ({})", plan.dataset),
        "hidden width",
        Axis::Log2,
        "test accuracy",
        Axis::Linear,
    );
    let xs: Vec<f64> = plan.widths.iter().map(|&w| w as f64).collect();
    for (ri, rule) in RuleKind::ALL.iter().enumerate() {
        let mut row = vec![rule.name().to_string()];
        let mut row_ivs = Vec::new();
        let mut lost = Vec::new(); // widths without a point: every run diverged
        for &w in &plan.widths {
            let Some(c) = plan
                .accuracy
                .iter()
                .find(|c| c.rule == *rule && c.width == w)
            else {
                row.push("–".into());
                row_ivs.push(Interval::of(&[]));
                continue;
            };
            let st = cell_stats(results, &plan.accuracy, c, test_accuracy);
            if st.diverged > 0 && st.iv.n == 0 {
                lost.push(w.to_string());
            }
            row.push(st.text(test_accuracy, 4));
            row_ivs.push(st.iv);
        }
        rows.push(row);
        // the legend says which widths have no point, so a missing point is not a mystery
        let label = if lost.is_empty() {
            rule.name().to_string()
        } else {
            format!("{} (diverged: {})", rule.name(), lost.join(", "))
        };
        let pts = xs.iter().zip(&row_ivs).map(|(&x, i)| (x, i.mean)).collect();
        chart
            .series
            .push(Series::new(label, pts, ri).with_band(band(&xs, &row_ivs)));
        ivs.push(row_ivs);
    }
    md.push_str(&md_table(&header, &rows));
    let names: Vec<String> = RuleKind::ALL.iter().map(|r| r.name().to_string()).collect();
    md.push('\n');
    md.push_str(&reading(
        &names, &columns, &ivs, 0, plan.seeds, "above", "below",
    ));
    md.push_str("![Test accuracy against width](accuracy_vs_width.svg)\n\n");
    Section {
        markdown: md,
        charts: vec![("accuracy_vs_width.svg".into(), chart)],
    }
}

/// `t = ∞` or `t = T steps` of a limit prediction (`T` from its line, or from the plan's
/// training-set size when the line is missing).
fn limit_time(s: &LimitSettings, steps: Option<f64>) -> String {
    match (s.epochs, steps) {
        (None, _) => "t = ∞".into(),
        (Some(_), Some(t)) => format!("t = {t} steps"),
        (Some(e), None) => format!("t = {e} epochs"),
    }
}

/// Section 8: the infinite-width NTK predictor of the accuracy runs' network and data (at
/// `t = ∞` and at the runs' length) beside the finite networks of every rule across widths;
/// the plot is section 1's with the limit as horizontal lines.
pub fn limit(plan: &Plan, results: &ReproResults) -> Section {
    let first = plan.accuracy.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 9. The infinite-width limit\n\nThe infinite-width network of the runs of section 1 \
         (MLP with {} hidden layers, {}, NTK parameterisation with s_w = {}, s_b = {}, zero initial \
         biases, on the same `{}` training set) trained by gradient flow on the same MSE: the NTK \
         predictor of `widealign predict` (ridge `--diag-reg` relative to the mean diagonal), at \
         t = ∞ and after as many steps of lr {} as the runs take ({} epochs of ⌈N/{}⌉ batches). \
         The finite networks take minibatch SGD steps; each is in expectation one full-batch step \
         of the same size, but the predictor has no minibatch noise, runs in continuous time, and \
         is the mean over initialisations (one network keeps its random initial function in its \
         outputs). Computed once, not per seed.\n\n",
        first.depth,
        first.activation.name(),
        first.w_std,
        first.b_std,
        plan.dataset,
        first.lr,
        first.epochs,
        first.batch_size,
    );
    let header = strings(&[
        "NTK predictor",
        "training points",
        "test accuracy",
        "test MSE",
        "solver",
        "diag_reg",
        "seconds",
    ]);
    let mut rows = Vec::new();
    let x_ends = (
        plan.widths.first().copied().unwrap_or(1) as f64,
        plan.widths.last().copied().unwrap_or(1) as f64,
    );
    let mut lines = Vec::new();
    for s in &plan.limit {
        match results.limit_of(s) {
            Some(l) => {
                let p = &l.prediction;
                let time = limit_time(s, p.time_steps);
                rows.push(vec![
                    time.clone(),
                    p.n_train.to_string(),
                    p.test_accuracy.map_or("–".into(), |a| format!("{a:.4}")),
                    format!("{:.5}", p.test_mse),
                    p.solver.clone(),
                    json_number(s.diag_reg),
                    format!("{:.1}", p.seconds),
                ]);
                if let Some(a) = p.test_accuracy {
                    let color = if s.epochs.is_none() { 9 } else { 8 };
                    lines.push(Series::horizontal(
                        format!("NTK limit, {time}"),
                        a,
                        x_ends,
                        color,
                    ));
                }
            }
            None => {
                let mut row = vec![limit_time(s, None), "not computed".into()];
                row.extend((0..header.len() - 2).map(|_| "–".to_string()));
                rows.push(row);
            }
        }
    }
    md.push_str(&md_table(&header, &rows));
    if rows.iter().any(|r| r[1] == "not computed") {
        md.push_str(
            "\nA prediction is *not computed* when its memory plan exceeds the machine's available \
             memory (the finite time needs an `f64` eigendecomposition of the N × N kernel, \
             3·N² doubles); `reproduce` logs the refusal with what would fit, and `--resume` tries \
             again.\n",
        );
    }
    // the finite networks closest to the limit: the largest width, every rule
    if let (Some(&w), Some(fin)) = (
        plan.widths.last(),
        plan.limit
            .iter()
            .filter(|s| s.epochs.is_some())
            .find_map(|s| results.limit_of(s)),
    ) {
        let mut parts = Vec::new();
        for rule in RuleKind::ALL {
            if let Some(c) = plan
                .accuracy
                .iter()
                .find(|c| c.rule == rule && c.width == w)
            {
                let st = cell_stats(results, &plan.accuracy, c, test_accuracy);
                if st.runs > 0 {
                    parts.push(format!("{} {}", rule.name(), st.text(test_accuracy, 4)));
                }
            }
        }
        if let (false, Some(a)) = (parts.is_empty(), fin.prediction.test_accuracy) {
            let steps = fin.prediction.time_steps.unwrap_or(f64::NAN);
            let runs_steps =
                training_steps(first.epochs, fin.prediction.n_train, first.batch_size) as f64;
            md.push_str(&format!(
                "\nAt width {w} the finite networks reach {}; the limit after the same {steps} \
                 steps{} predicts {a:.4}.\n",
                parts.join(", "),
                if steps == runs_steps {
                    ""
                } else {
                    " (the line's time differs from the runs' length)"
                },
            ));
        }
    }
    md.push('\n');
    let mut chart = accuracy_vs_width(plan, results)
        .charts
        .into_iter()
        .next()
        .map_or_else(
            || Chart::new("", "", Axis::Log2, "", Axis::Linear),
            |(_, c)| c,
        );
    chart.title = format!(
        "Test accuracy vs width and the infinite-width limit ({})",
        plan.dataset
    );
    chart.series.extend(lines);
    md.push_str(
        "![Test accuracy against width with the infinite-width limit](limit_vs_width.svg)\n\n",
    );
    Section {
        markdown: md,
        charts: vec![("limit_vs_width.svg".into(), chart)],
    }
}

/// Test accuracy after every epoch at the largest width, every rule: the mean over the seeds
/// of each cell, with its 95% interval as a band when there are several.
pub fn training_curves(plan: &Plan, results: &ReproResults) -> Section {
    let wmax = plan.widths.iter().copied().max().unwrap_or(0);
    let mut curves = Chart::new(
        format!("Training curves at width {wmax} ({})", plan.dataset),
        "epoch",
        Axis::Linear,
        "test accuracy",
        Axis::Linear,
    );
    for (ri, rule) in RuleKind::ALL.iter().enumerate() {
        let Some(cell) = plan
            .accuracy
            .iter()
            .find(|c| c.rule == *rule && c.width == wmax)
        else {
            continue;
        };
        // every seed's history that did not diverge, epoch by epoch
        let histories: Vec<_> = same_cell(&plan.accuracy, cell)
            .filter_map(|c| results.result(c))
            .filter(|r| !r.diverged)
            .map(|r| &r.history)
            .collect();
        let epochs = histories.iter().map(|h| h.len()).min().unwrap_or(0);
        if epochs == 0 {
            continue;
        }
        let (xs, ivs): (Vec<f64>, Vec<Interval>) = (0..epochs)
            .map(|e| {
                let accs: Vec<f64> = histories
                    .iter()
                    .map(|h| h[e].test_accuracy.unwrap_or(f64::NAN))
                    .collect();
                (histories[0][e].epoch as f64, Interval::of(&accs))
            })
            .unzip();
        let pts = xs.iter().zip(&ivs).map(|(&x, i)| (x, i.mean)).collect();
        curves.series.push(
            Series::new(rule.name(), pts, ri)
                .no_markers()
                .with_band(band(&xs, &ivs)),
        );
    }
    Section {
        markdown: format!(
            "Test accuracy after every epoch at width {wmax}, mean over seeds {} with the 95% interval shaded (epoch 0 is the untrained network):\n\n![Training curves](training_curves.svg)\n\n",
            seeds_of(&plan.accuracy)
        ),
        charts: vec![("training_curves.svg".into(), curves)],
    }
}

/// Section 2: best test loss on the Add task against width (mean ± 95% interval over seeds),
/// with the loss of always predicting 0.5.
pub fn add_task(plan: &Plan, results: &ReproResults, add_baseline: f64) -> Section {
    let a0 = plan.add.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 2. Add task against width\n\nElman RNN ({}), Add task (T = 100, 300 train / 100 test sequences, drawn from each run's seed), SGD lr {}, batch {}, {} epochs; \
         best test loss over the epochs (per-step MSE summed over the 100 steps). Always predicting 0.5 scores **{}** (the data of seed {}).\n\n",
        a0.activation.name(),
        a0.lr,
        a0.batch_size,
        a0.epochs,
        fmt_sig(add_baseline),
        plan.seed
    );
    let mut header = vec!["rule".to_string()];
    let columns: Vec<String> = plan
        .add_widths
        .iter()
        .map(|w| format!("width {w}"))
        .collect();
    header.extend(columns.iter().cloned());
    let mut rows = Vec::new();
    let mut ivs = Vec::new();
    let mut chart = Chart::new(
        "Add task: best test loss vs width",
        "hidden width",
        Axis::Log2,
        "best test loss",
        Axis::Log10,
    );
    let xs: Vec<f64> = plan.add_widths.iter().map(|&w| w as f64).collect();
    for (ri, rule) in ADD_RULES.iter().enumerate() {
        let mut row = vec![rule.name().to_string()];
        let mut row_ivs = Vec::new();
        for &w in &plan.add_widths {
            let c = plan.add.iter().find(|c| c.rule == *rule && c.width == w);
            let (text, iv) = cell_entry(results, &plan.add, c, best_test_loss);
            row.push(text);
            row_ivs.push(iv);
        }
        rows.push(row);
        let pts = xs.iter().zip(&row_ivs).map(|(&x, i)| (x, i.mean)).collect();
        chart
            .series
            .push(Series::new(rule.name(), pts, ri).with_band(band(&xs, &row_ivs)));
        ivs.push(row_ivs);
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
    let names: Vec<String> = ADD_RULES.iter().map(|r| r.name().to_string()).collect();
    md.push('\n');
    md.push_str(&reading(
        &names,
        &columns,
        &ivs,
        0,
        plan.seeds,
        "higher loss",
        "lower loss",
    ));
    md.push_str(&trends(&names, &columns, &ivs, plan.seeds));
    md.push_str("![Add task loss against width](add_task_vs_width.svg)\n\n");
    Section {
        markdown: md,
        charts: vec![("add_task_vs_width.svg".into(), chart)],
    }
}

/// A table of final test accuracy, one row per rule and one column per `(label, x)` of
/// `columns` (the run of `cell(rule, j)` in column `j`, from `runs`), followed by its reading
/// against bp; each rule becomes a series of `chart` with its interval band. Returns the
/// markdown and the intervals `[rule][column]`.
fn rules_by_column<'a>(
    results: &ReproResults,
    runs: &[TrainConfig],
    (columns, xs): (&[String], &[f64]),
    cell: impl Fn(RuleKind, usize) -> Option<&'a TrainConfig>,
    chart: &mut Chart,
    seeds: usize,
) -> (String, Vec<Vec<Interval>>) {
    let mut header = vec!["rule".to_string()];
    header.extend(columns.iter().cloned());
    let mut rows = Vec::new();
    let mut ivs = Vec::new();
    for (ri, rule) in RuleKind::ALL.iter().enumerate() {
        let mut row = vec![rule.name().to_string()];
        let mut row_ivs = Vec::new();
        for j in 0..columns.len() {
            let (text, iv) = cell_entry(results, runs, cell(*rule, j), test_accuracy);
            row.push(text);
            row_ivs.push(iv);
        }
        rows.push(row);
        let pts = xs.iter().zip(&row_ivs).map(|(&x, i)| (x, i.mean)).collect();
        chart
            .series
            .push(Series::new(rule.name(), pts, ri).with_band(band(xs, &row_ivs)));
        ivs.push(row_ivs);
    }
    let mut md = md_table(&header, &rows);
    let names: Vec<String> = RuleKind::ALL.iter().map(|r| r.name().to_string()).collect();
    md.push('\n');
    md.push_str(&reading(&names, columns, &ivs, 0, seeds, "above", "below"));
    (md, ivs)
}

/// Section 3: final test accuracy of every rule with small stratified training sets (mean ±
/// 95% interval over seeds).
pub fn low_data(plan: &Plan, results: &ReproResults) -> Section {
    let l0 = plan.low_data.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 3. Low data\n\nWidth {}, stratified training subsets of `{}`, lr {}, batch {}; every size \
         gets about the same number of optimisation steps (epochs {} for the sizes {:?}); final test accuracy.\n\n",
        l0.width,
        plan.dataset,
        l0.lr,
        l0.batch_size,
        plan.sizes
            .iter()
            .filter_map(|&k| plan.low_data.iter().find(|c| c.train_size == Some(k)))
            .map(|c| c.epochs.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        plan.sizes
    );
    let columns: Vec<String> = plan.sizes.iter().map(|k| format!("{k} examples")).collect();
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
    let xs: Vec<f64> = plan.sizes.iter().map(|&k| k as f64).collect();
    let (table, _) = rules_by_column(
        results,
        &plan.low_data,
        (&columns, &xs),
        |rule, j| {
            plan.low_data
                .iter()
                .find(|c| c.rule == rule && c.train_size == Some(plan.sizes[j]))
        },
        &mut chart,
        plan.seeds,
    );
    md.push_str(&table);
    md.push_str("![Low-data accuracy](low_data.svg)\n\n");
    Section {
        markdown: md,
        charts: vec![("low_data.svg".into(), chart)],
    }
}

/// The distinct cells of `runs` in plan order, each with the alignment lines of its seeds.
fn alignment_cells<'a>(
    runs: &'a [TrainConfig],
    lines: &'a [AlignmentLine],
) -> Vec<(&'a TrainConfig, Vec<&'a AlignmentLine>)> {
    let mut out: Vec<(&TrainConfig, Vec<&AlignmentLine>)> = Vec::new();
    for c in runs {
        if out
            .iter()
            .any(|(rep, _)| same_cell(std::slice::from_ref(*rep), c).next().is_some())
        {
            continue;
        }
        let mine = lines
            .iter()
            .filter(|l| {
                same_cell(std::slice::from_ref(&l.settings), c)
                    .next()
                    .is_some()
            })
            .collect();
        out.push((c, mine));
    }
    out
}

/// Per layer (in the order of the first line), the layer's scores in every line of a cell.
fn layers_of<'a>(lines: &[&'a AlignmentLine]) -> Vec<Vec<&'a LayerScores>> {
    let Some(first) = lines.first() else {
        return Vec::new();
    };
    first
        .layers
        .iter()
        .map(|l0| {
            lines
                .iter()
                .filter_map(|l| l.layers.iter().find(|x| x.layer == l0.layer))
                .collect()
        })
        .collect()
}

/// The interval of one number of a layer over a cell's seeds.
fn layer_iv(layers: &[&LayerScores], f: fn(&LayerScores) -> f64) -> Interval {
    Interval::of(&layers.iter().map(|l| f(l)).collect::<Vec<_>>())
}

/// The input-span cell: `1 (trivially …)` where the initial activities span the whole input
/// space or where they are the network's inputs (`fixed_inputs`: a gradient-built change of
/// the first layer lies in their span whatever the rule), so the fraction cannot be below 1;
/// the interval with the span's rank where it can; the interval alone for lines that do not
/// record the rank.
fn span_text(layers: &[&LayerScores], fixed_inputs: bool) -> String {
    let iv = layer_iv(layers, |l| l.input_span);
    let Some(l0) = layers.first() else {
        return "–".into();
    };
    if fixed_inputs && l0.span_rank.is_some() {
        return "1 (trivially: the inputs never change)".into();
    }
    match (l0.span_informative(), l0.span_rank, l0.span_dim) {
        (Some(false), _, Some(d)) => format!("1 (trivially: the activities span all {d} inputs)"),
        (Some(true), Some(r), Some(d)) => format!("{} (span {r} of {d})", iv.format(4)),
        _ => iv.format(4),
    }
}

/// Section 4: alignment of backprop's weight change with the predicted update, per layer and
/// width (mean ± 95% interval over seeds), with the three controls and the input-span
/// fraction, on the whole training set and on [`Plan::align_low_data`] examples.
pub fn alignment(plan: &Plan, lines: &[AlignmentLine]) -> Section {
    let g0 = plan.align.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 4. Alignment against width\n\nBackprop on `{}`{} ({} epochs, lr {}), and the same with {} training examples and as many steps; per layer, the alignment score \
         cos(ΔWᵀΔW, ΔW_refᵀΔW_ref) of the trained weight change with the predicted (Align-zero) update accumulated during the same run, its probe estimate \
         (100 Gaussian probes), three controls — ΔW's entries shuffled, a random matrix, and the reference code's `shuffle(W_trained) − W_0` — and the \
         fraction of ‖ΔW‖² in the span of the layer's initial training activities. That fraction can only fall below 1 in a hidden layer whose \
         activities do not span its input space (fewer independent training examples than inputs; the span's dimension is given); in the first \
         layer (fixed inputs) and where the activities span every input it is 1 by construction and marked so.\n\n",
        plan.dataset,
        g0.train_size.map(|k| format!(", {k} training examples")).unwrap_or_default(),
        g0.epochs,
        g0.lr,
        plan.align_low_data
    );
    let header = strings(&[
        "width",
        "examples",
        "layer",
        "score",
        "probe",
        "shuffled",
        "random",
        "shuffle(W)−W₀",
        "input span",
    ]);
    let mut rows = Vec::new();
    let mut per_layer: BTreeMap<usize, Vec<(f64, [Interval; 3])>> = BTreeMap::new();
    for (cfg, cell_lines) in alignment_cells(&plan.align, lines) {
        let examples = cfg
            .train_size
            .map_or_else(|| "all".to_string(), |k| k.to_string());
        let main = cfg.train_size != Some(plan.align_low_data);
        for layer in layers_of(&cell_lines) {
            let no = layer[0].layer;
            let score = layer_iv(&layer, |l| l.score);
            let shuffled = layer_iv(&layer, |l| l.shuffled);
            let random = layer_iv(&layer, |l| l.random);
            rows.push(vec![
                cfg.width.to_string(),
                examples.clone(),
                no.to_string(),
                score.format(4),
                layer_iv(&layer, |l| l.probe_score).format(4),
                shuffled.format(4),
                random.format(4),
                layer_iv(&layer, |l| l.shuffled_trained).format(4),
                span_text(&layer, no == 1),
            ]);
            if main {
                per_layer
                    .entry(no)
                    .or_default()
                    .push((cfg.width as f64, [score, shuffled, random]));
            }
        }
    }
    md.push_str(&md_table(&header, &rows));
    let per_layer: Vec<MatrixPoints> = per_layer
        .into_iter()
        .map(|(layer, pts)| (format!("layer {layer}"), pts))
        .collect();
    let chart = alignment_chart(
        "Alignment with the predicted update vs width (bp)",
        &per_layer,
    );
    md.push_str("\n![Alignment against width](alignment_vs_width.svg)\n\n");
    Section {
        markdown: md,
        charts: vec![("alignment_vs_width.svg".into(), chart)],
    }
}

/// The rows of an alignment table, one per cell and weight matrix (`size` of the cell, `name` of
/// the matrix by its 1-based position, the score, probe, three controls and — with `span` — the
/// input-span fraction, the first matrix's inputs being the network's), and per matrix kept by
/// `plotted` the chart points `(size, [score, shuffled, random])`.
fn alignment_rows(
    cells: Vec<(&TrainConfig, Vec<&AlignmentLine>)>,
    size: impl Fn(&TrainConfig) -> usize,
    name: impl Fn(usize) -> String,
    span: bool,
    plotted: impl Fn(usize) -> bool,
) -> (Vec<Vec<String>>, Vec<MatrixPoints>) {
    let mut rows = Vec::new();
    let mut per_matrix: BTreeMap<usize, Vec<(f64, [Interval; 3])>> = BTreeMap::new();
    for (cfg, cell_lines) in cells {
        for layer in layers_of(&cell_lines) {
            let no = layer[0].layer;
            let score = layer_iv(&layer, |l| l.score);
            let shuffled = layer_iv(&layer, |l| l.shuffled);
            let random = layer_iv(&layer, |l| l.random);
            let mut row = vec![
                size(cfg).to_string(),
                name(no),
                score.format(4),
                layer_iv(&layer, |l| l.probe_score).format(4),
                shuffled.format(4),
                random.format(4),
                layer_iv(&layer, |l| l.shuffled_trained).format(4),
            ];
            if span {
                row.push(span_text(&layer, no == 1));
            }
            rows.push(row);
            if plotted(no) {
                per_matrix
                    .entry(no)
                    .or_default()
                    .push((size(cfg) as f64, [score, shuffled, random]));
            }
        }
    }
    let points = per_matrix
        .into_iter()
        .map(|(layer, pts)| (name(layer), pts))
        .collect();
    (rows, points)
}

/// One weight matrix's alignment points: its label and `(width, [score, shuffled, random])`
/// intervals per width.
type MatrixPoints = (String, Vec<(f64, [Interval; 3])>);

/// An alignment-against-width chart: per matrix, the score solid with its interval shaded, the
/// shuffled control dashed, the random control dashed without markers, in the matrix's colour.
fn alignment_chart(title: &str, per_matrix: &[MatrixPoints]) -> Chart {
    let mut chart = Chart::new(
        title,
        "hidden width",
        Axis::Log2,
        "alignment score",
        Axis::Linear,
    );
    chart.y_range = Some((0.0, 1.05));
    for (i, (label, pts)) in per_matrix.iter().enumerate() {
        let pick = |j: usize| pts.iter().map(|(w, v)| (*w, v[j].mean)).collect::<Vec<_>>();
        let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let scores: Vec<Interval> = pts.iter().map(|p| p.1[0]).collect();
        chart
            .series
            .push(Series::new(label.clone(), pick(0), i).with_band(band(&xs, &scores)));
        chart
            .series
            .push(Series::new(format!("{label} shuffled"), pick(1), i).dashed());
        chart.series.push(
            Series::new(format!("{label} random"), pick(2), i)
                .dashed()
                .no_markers(),
        );
    }
    chart
}

/// Section 6: alignment of backprop's change of each RNN weight matrix (`W_in`, `W_rec`,
/// `W_out`) with the predicted update on the Add task, per width (mean ± 95% interval over
/// seeds), with the controls; the plot shows `W_rec` and `W_out` (`W_in` is n×1 on the Add
/// task, so its scores are 1 by construction).
pub fn rnn_alignment(plan: &Plan, lines: &[AlignmentLine]) -> Section {
    let g0 = plan.rnn_align.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 6. RNN alignment against width (Add task)\n\nBackprop training the Elman RNN on the Add task ({} epochs, lr {}, batch {}); per weight matrix, the \
         alignment score of the trained change with the predicted (Align-zero) update summed over time steps, its probe estimate, and the controls, \
         as in section 4. The Add task has one input per time step, so W_in is n×1: ΔWᵀΔW is then a 1×1 matrix and every score of W_in \
         (controls included) is trivially 1; W_rec and W_out carry the information.\n\n",
        g0.epochs, g0.lr, g0.batch_size
    );
    let header = strings(&[
        "width",
        "matrix",
        "score",
        "probe",
        "shuffled",
        "random",
        "shuffle(W)−W₀",
    ]);
    let name = |layer: usize| {
        RNN_MATRICES
            .get(layer.wrapping_sub(1))
            .map_or_else(|| format!("matrix {layer}"), |n| n.to_string())
    };
    let (rows, per_matrix) = alignment_rows(
        alignment_cells(&plan.rnn_align, lines),
        |c| c.width,
        name,
        false,
        |no| no > 1,
    );
    md.push_str(&md_table(&header, &rows));
    let chart = alignment_chart(
        "RNN alignment with the predicted update vs width (Add task, bp)",
        &per_matrix,
    );
    md.push_str("\n![RNN alignment against width](rnn_alignment_vs_width.svg)\n\n");
    Section {
        markdown: md,
        charts: vec![("rnn_alignment_vs_width.svg".into(), chart)],
    }
}

/// Section 5: relative errors of the closed-form layerwise predictions against width, with fitted
/// log-log slopes; one table and plot per activation.
pub fn dynamics(lines: &[DynamicsLine]) -> Section {
    let mut md = String::from(
        "## 5. Layerwise weight dynamics against width\n\nFull-batch gradient descent on teacher–student regression; relative errors of the closed-form \
         predictions of docs/theory.md §4 for each layer's weight-change norm and direction (mean over layers) and for the function on test points, with \
         log-log slopes fitted over all layers and widths (theory: about −1/2 for smooth activations; ReLU's weight direction may converge more slowly).\n\n",
    );
    let mut charts = Vec::new();
    let mut shown: Vec<&str> = Vec::new();
    for line in lines {
        let act = &line.activation;
        if shown.contains(&act.as_str()) {
            continue; // further seeds enter the slopes' intervals below
        }
        shown.push(act);
        let same: Vec<&DynamicsLine> = lines.iter().filter(|l| &l.activation == act).collect();
        let r = &line.report;
        let widths: Vec<f64> = r.widths.iter().map(|&w| w as f64).collect();
        let per_width_mean = |e: &[Vec<f64>]| -> Vec<f64> { e.iter().map(|l| mean(l)).collect() };
        let wn = per_width_mean(&r.errors.weight_norm);
        let wd = per_width_mean(&r.errors.weight_direction);
        let f = &r.errors.function;
        md.push_str(&format!(
            "### {act}\n\n{} training points, depth {}, {} steps at lr {} (largest stable lr {}).\n\n",
            r.train_size,
            r.hidden_layers,
            r.steps,
            json_number(r.lr),
            fmt_sig(r.max_stable_lr)
        ));
        let header = strings(&["width", "weight norm", "weight direction", "function"]);
        let at = |ys: &[f64], i: usize| ys.get(i).copied().unwrap_or(f64::NAN);
        let mut rows: Vec<Vec<String>> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                vec![
                    format!("{w}"),
                    format!("{:.3e}", at(&wn, i)),
                    format!("{:.3e}", at(&wd, i)),
                    format!("{:.3e}", at(f, i)),
                ]
            })
            .collect();
        let s = &r.slopes;
        rows.push(vec![
            "**slope**".into(),
            format!("{:.3}", s.weight_norm),
            format!("{:.3}", s.weight_direction),
            format!("{:.3}", s.function),
        ]);
        md.push_str(&md_table(&header, &rows));
        if same.len() > 1 {
            let slope = |f: fn(&DynamicsLine) -> f64| {
                let iv = Interval::of(&same.iter().map(|l| f(l)).collect::<Vec<_>>());
                iv.format(3)
            };
            md.push_str(&format!(
                "\nThe table and plot show seed {}; the fitted slopes over all {} seeds (mean ± 95% interval): weight norm {}, weight direction {}, function {}.\n",
                line.settings.config.seed,
                same.len(),
                slope(|l| l.report.slopes.weight_norm),
                slope(|l| l.report.slopes.weight_direction),
                slope(|l| l.report.slopes.function)
            ));
        }
        let chart = error_chart(
            format!("Prediction error vs width ({act})"),
            &widths,
            vec![
                (format!("weight norm ({:.2})", s.weight_norm), wn),
                (format!("weight direction ({:.2})", s.weight_direction), wd),
                (format!("function ({:.2})", s.function), f.clone()),
            ],
        );
        let file = format!("dynamics_{act}.svg");
        md.push_str(&format!("\n![Dynamics errors ({act})]({file})\n\n"));
        charts.push((file, chart));
    }
    Section {
        markdown: md,
        charts,
    }
}

/// A log-log chart of relative errors against width, one series per `(label, errors)`, with the
/// `width^(-1/2)` reference anchored at the largest error of the first width.
fn error_chart(title: String, widths: &[f64], series: Vec<(String, Vec<f64>)>) -> Chart {
    let mut chart = Chart::new(
        title,
        "hidden width",
        Axis::Log2,
        "relative error",
        Axis::Log10,
    );
    let anchor = series
        .iter()
        .filter_map(|(_, ys)| ys.first().copied())
        .filter(|x| x.is_finite() && *x > 0.0)
        .fold(f64::NAN, f64::max);
    for (i, (label, ys)) in series.into_iter().enumerate() {
        let pts = widths.iter().copied().zip(ys).collect::<Vec<_>>();
        chart.series.push(Series::new(label, pts, i));
    }
    if let (Some(&w0), Some(&w1)) = (widths.first(), widths.last()) {
        if anchor.is_finite() {
            chart
                .series
                .push(Series::power_law("width^(-1/2)", -0.5, w0, anchor, w1));
        }
    }
    chart
}

/// Section 7: the RNN's layerwise weight dynamics against width on the sequence teacher task:
/// per weight matrix (`W_in`, `W_rec`, `W_out`) the errors of the predicted norm and direction,
/// the function error over every step of the test sequences, and log-log slopes per matrix.
pub fn rnn_dynamics(lines: &[DynamicsLine]) -> Section {
    if lines.is_empty() {
        return Section::default();
    }
    let mut md = String::from(
        "## 7. RNN layerwise weight dynamics against width\n\nFull-batch gradient descent \
         (backprop through time) of the Elman network on the sequence teacher–student task \
         (`teacher-seq`, targets at every step), against the closed form of docs/theory.md §4.5: \
         kernel gradient descent with the NTK stacked over all pairs of time steps, and each \
         weight matrix's predicted change, a sum over sequences and time steps of back-propagated \
         errors times initial input activities (`x_t` for `W_in`, `r_{t−1}` for `W_rec`, `r_t` for \
         `W_out`). Relative errors of each matrix's weight-change norm and direction, and of the \
         function at every step of the test sequences; slopes fitted per matrix (theory: about \
         −1/2).\n\n",
    );
    let mut charts = Vec::new();
    let mut shown: Vec<&str> = Vec::new();
    for line in lines {
        let act = &line.activation;
        if shown.contains(&act.as_str()) {
            continue; // further seeds enter the slopes' intervals below
        }
        shown.push(act);
        let same: Vec<&DynamicsLine> = lines.iter().filter(|l| &l.activation == act).collect();
        let r = &line.report;
        let widths: Vec<f64> = r.widths.iter().map(|&w| w as f64).collect();
        let per_matrix = |e: &[Vec<f64>]| -> Vec<Vec<f64>> {
            (0..RNN_MATRICES.len())
                .map(|m| {
                    e.iter()
                        .map(|w| w.get(m).copied().unwrap_or(f64::NAN))
                        .collect()
                })
                .collect()
        };
        let (wn, wd) = (
            per_matrix(&r.errors.weight_norm),
            per_matrix(&r.errors.weight_direction),
        );
        let f = &r.errors.function;
        md.push_str(&format!(
            "### {act}\n\n{} training sequences of {} steps, {} steps at lr {} (largest stable lr \
             {}).\n\n",
            r.train_size,
            r.seq_len.map_or("?".into(), |t| t.to_string()),
            r.steps,
            json_number(r.lr),
            fmt_sig(r.max_stable_lr)
        ));
        let mut header = vec!["width".to_string()];
        for m in RNN_MATRICES {
            header.push(format!("`{m}` norm"));
            header.push(format!("`{m}` direction"));
        }
        header.push("function".into());
        let at = |ys: &[f64], i: usize| ys.get(i).copied().unwrap_or(f64::NAN);
        let mut rows: Vec<Vec<String>> = r
            .widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut row = vec![w.to_string()];
                for m in 0..RNN_MATRICES.len() {
                    row.push(format!("{:.3e}", at(&wn[m], i)));
                    row.push(format!("{:.3e}", at(&wd[m], i)));
                }
                row.push(format!("{:.3e}", at(f, i)));
                row
            })
            .collect();
        let slope = |ys: &[f64]| pooled_log_slope(&r.widths, std::slice::from_ref(&ys.to_vec()));
        let mut slopes = vec!["**slope**".to_string()];
        for m in 0..RNN_MATRICES.len() {
            slopes.push(format!("{:.3}", slope(&wn[m])));
            slopes.push(format!("{:.3}", slope(&wd[m])));
        }
        slopes.push(format!("{:.3}", r.slopes.function));
        rows.push(slopes);
        md.push_str(&md_table(&header, &rows));
        md.push_str(&format!(
            "\nSlopes pooled over the three matrices: weight norm {:.3}, weight direction {:.3}. \
             The weight-norm error is the absolute value of a signed fluctuation, so with one \
             initialisation per width its slope scatters; the direction and function errors are \
             the robust measures.\n",
            r.slopes.weight_norm, r.slopes.weight_direction
        ));
        if same.len() > 1 {
            let slope = |f: fn(&DynamicsLine) -> f64| {
                Interval::of(&same.iter().map(|l| f(l)).collect::<Vec<_>>()).format(3)
            };
            md.push_str(&format!(
                "\nThe table and plot show seed {}; the pooled slopes over all {} seeds (mean ± 95% \
                 interval): weight norm {}, weight direction {}, function {}.\n",
                line.settings.config.seed,
                same.len(),
                slope(|l| l.report.slopes.weight_norm),
                slope(|l| l.report.slopes.weight_direction),
                slope(|l| l.report.slopes.function)
            ));
        }
        let mut series: Vec<(String, Vec<f64>)> = RNN_MATRICES
            .iter()
            .zip(&wd)
            .map(|(m, ys)| (format!("{m} direction ({:.2})", slope(ys)), ys.clone()))
            .collect();
        series.push((format!("function ({:.2})", r.slopes.function), f.clone()));
        let chart = error_chart(
            format!("RNN prediction error vs width ({act}, teacher-seq)"),
            &widths,
            series,
        );
        let file = format!("rnn_dynamics_{act}.svg");
        md.push_str(&format!("\n![RNN dynamics errors ({act})]({file})\n\n"));
        charts.push((file, chart));
    }
    Section {
        markdown: md,
        charts,
    }
}

/// How the CNN group's settings relate to the reference code's (`train_kmnist.py`,
/// `train_cifar.py`; docs/fidelity.md).
const CNN_REFERENCE: &str = "Relation to the reference code (`train_kmnist.py`, `train_cifar.py`): the same family — \
    convolutions in the NTK parameterisation (N(0, 1) kernels scaled by 1/√(k·k·C_in)), zero biases, parameter-free batch normalisation over the batch \
    axis of every feature (ε = 10⁻⁶) after each convolution and before the ReLU, a readout scaled by 1/√n_R, MSE against one-hot − 0.1, plain SGD \
    at batch 100, DFA projections of scale 1/√(H_l·W_l·C_l). Different: the reference has 3 layers with strides 1, 2, 2, global average pooling, \
    lr 2, 100–200 epochs, KMNIST or CIFAR-10 (inputs in [0, 1] there as here); on `digits` (8×8) this plan uses 2 layers of stride 1 and a flattened \
    readout (global average pooling after two 3×3 layers keeps only a bag of 5×5 patches of an 8×8 digit) at lr 30 for 5 epochs; on \
    `fashion-mnist` 3 layers with global average pooling at lr 2, stride 2 in every layer.";

/// Section 8: the CNN — final test accuracy of every rule against the channel count (mean ±
/// 95% interval over seeds, with a reading against bp), and the alignment of backprop's change
/// of each kernel and of the readout with the predicted (Align-zero) update, with the controls
/// and the input-span fraction.
pub fn cnn(plan: &Plan, results: &ReproResults) -> Section {
    let Some(c0) = plan.cnn.first() else {
        return Section::default();
    };
    let mut md = format!(
        "## 8. CNN: test accuracy and alignment against channel count

{} convolution layers of {}×{} kernels with C channels each, stride {}, {} padding, \
         batch normalisation after each, {}, a readout of the {}, on `{}`{}; NTK parameterisation, plain SGD, lr {}, batch {}, {} epochs; final-epoch \
         test accuracy (seeds {}).\n\n{CNN_REFERENCE}\n\n",
        c0.conv_layers,
        c0.kernel,
        c0.kernel,
        c0.stride,
        c0.padding.name().to_uppercase(),
        c0.activation.name(),
        match c0.readout {
            widealign_models::CnnReadout::Gap => "globally average-pooled last maps",
            widealign_models::CnnReadout::Flatten => "flattened last maps",
        },
        c0.dataset,
        c0.train_size
            .map(|k| format!(" ({k} training examples)"))
            .unwrap_or_default(),
        c0.lr,
        c0.batch_size,
        c0.epochs,
        seeds_of(&plan.cnn)
    );
    let columns: Vec<String> = plan
        .cnn_channels
        .iter()
        .map(|c| format!("{c} channels"))
        .collect();
    let mut chart = Chart::new(
        format!("CNN test accuracy vs channels ({})", c0.dataset),
        "channels per convolution layer",
        Axis::Log2,
        "test accuracy",
        Axis::Linear,
    );
    let xs: Vec<f64> = plan.cnn_channels.iter().map(|&c| c as f64).collect();
    let (table, ivs) = rules_by_column(
        results,
        &plan.cnn,
        (&columns, &xs),
        |rule, j| {
            plan.cnn
                .iter()
                .find(|c| c.rule == rule && c.channels == plan.cnn_channels[j])
        },
        &mut chart,
        plan.seeds,
    );
    md.push_str(&table);
    let names: Vec<String> = RuleKind::ALL.iter().map(|r| r.name().to_string()).collect();
    md.push_str(&trends(&names, &columns, &ivs, plan.seeds));
    md.push_str("![CNN test accuracy against channels](cnn_accuracy_vs_channels.svg)\n\n");
    // alignment per weight matrix: conv1..convL, then the readout
    md.push_str(
        "Alignment (backprop runs with the cells' settings): per kernel K^l (C_l × k·k·C_{l−1}) and the readout, the score \
         cos(ΔWᵀΔW, ΔW_refᵀΔW_ref) of the trained change with the Align-zero update accumulated during the same run — for a kernel the frozen \
         network's backward signals against the im2col patches of its own initial maps (docs/theory.md §5) — its probe estimate, the three \
         controls of section 4, and the fraction of ‖ΔW‖² in the span of the initial patches (the readout: of its initial inputs).\n\n",
    );
    let aheader = strings(&[
        "channels",
        "matrix",
        "score",
        "probe",
        "shuffled",
        "random",
        "shuffle(W)−W₀",
        "input span",
    ]);
    let layers = c0.conv_layers;
    let (arows, per_matrix) = alignment_rows(
        alignment_cells(&plan.cnn_align, &results.cnn_alignment),
        |c| c.channels,
        |layer| {
            if layer > layers {
                "readout".to_string()
            } else {
                format!("conv{layer}")
            }
        },
        true,
        |_| true,
    );
    md.push_str(&md_table(&aheader, &arows));
    let mut achart = alignment_chart(
        &format!(
            "CNN alignment with the predicted update vs channels ({}, bp)",
            c0.dataset
        ),
        &per_matrix,
    );
    achart.x_label = "channels per convolution layer".into();
    md.push_str("\n![CNN alignment against channels](cnn_alignment_vs_channels.svg)\n\n");
    Section {
        markdown: md,
        charts: vec![
            ("cnn_accuracy_vs_channels.svg".into(), chart),
            ("cnn_alignment_vs_channels.svg".into(), achart),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_experiments::plan::{plan, Scale};
    use widealign_experiments::RunRecord;
    use widealign_rules::EpochRecord;

    fn record(
        cfg: &TrainConfig,
        diverged_epoch: Option<usize>,
        acc: Option<f64>,
    ) -> serde_json::Value {
        let h = |epoch, a| EpochRecord {
            epoch,
            train_loss: 0.2,
            test_loss: 0.1,
            test_accuracy: a,
            seconds: 0.0,
        };
        let result = TrainResult {
            model: cfg.model,
            dataset: cfg.dataset.clone(),
            rule: cfg.rule,
            width: cfg.width,
            depth: cfg.depth,
            seed: cfg.seed,
            epochs: cfg.epochs,
            epochs_completed: 1,
            train_examples: 100,
            steps: 1,
            train_loss: 0.2,
            test_loss: 0.1,
            test_accuracy: acc,
            best_test_loss: 0.1,
            best_test_accuracy: acc,
            diverged: diverged_epoch.is_some(),
            diverged_epoch,
            seconds: 0.0,
            history: vec![h(0, Some(0.1)), h(1, acc)],
        };
        serde_json::from_str(&RunRecord::new(cfg, result, None).to_line()).unwrap()
    }

    fn series_labels(chart: &Chart) -> Vec<&str> {
        chart.series.iter().map(|s| s.label.as_str()).collect()
    }

    fn results(lines: Vec<serde_json::Value>) -> ReproResults {
        let mut r = ReproResults::default();
        for l in lines {
            r.push(l).unwrap();
        }
        r
    }

    #[test]
    fn cells_show_divergence() {
        let cfg = TrainConfig::default();
        let r = results(vec![record(&cfg, Some(3), Some(0.1))]);
        assert_eq!(cell(r.result(&cfg), test_accuracy, 4), "diverged (ep. 3)");
        let r = results(vec![record(&cfg, None, Some(0.91234))]);
        assert_eq!(cell(r.result(&cfg), test_accuracy, 3), "0.912");
        assert_eq!(cell(None, test_accuracy, 3), "–");
        let r = results(vec![record(&cfg, None, None)]);
        assert_eq!(cell(r.result(&cfg), test_accuracy, 3), "–");
    }

    #[test]
    fn diverged_widths_are_named_in_the_accuracy_legend() {
        let p = plan(Scale::Quick, "digits", 0).unwrap();
        let r = results(vec![
            record(&p.accuracy[0], Some(3), None),
            record(&p.accuracy[1], None, Some(0.5)),
        ]);
        let s = accuracy_vs_width(&p, &r);
        let w = p.accuracy[0].width;
        let labels = series_labels(&s.charts[0].1);
        assert!(
            labels.contains(&format!("bp (diverged: {w})").as_str()),
            "{labels:?}"
        );
        assert!(labels.contains(&"align-zero"));
        assert!(
            s.markdown
                .contains("| bp | diverged (ep. 3) | 0.5000 | – |"),
            "{}",
            s.markdown
        );
    }

    /// Section 8 tabulates the limit lines, compares them with the finite networks at the
    /// largest width, and draws them as dashed horizontal lines over section 1's curves.
    #[test]
    fn limit_section_draws_the_limit_as_horizontal_lines() {
        let p = plan(Scale::Quick, "digits", 0).unwrap();
        let mut lines: Vec<serde_json::Value> = p
            .accuracy
            .iter()
            .map(|c| record(c, None, Some(0.9)))
            .collect();
        let mut r = results(lines.clone());
        // only the finite-time line exists: t = ∞ is not computed
        let fin = &p.limit[1];
        lines.push(serde_json::json!({
            "widealign_version": VERSION,
            "experiment": "limit",
            "key": widealign_experiments::reproduce::limit_key(fin),
            "settings": fin,
            "prediction": {"n_train": 1442, "n_test": 355, "time_steps": 600.0, "ridge": 1e-5,
                           "test_accuracy": 0.95, "test_mse": 0.03, "solver": "eigendecomposition",
                           "predicted_peak_bytes": 1, "seconds": 3.5},
        }));
        let without = limit(&p, &r);
        r = results(lines);
        let s = limit(&p, &r);
        assert!(s.markdown.contains("## 9. The infinite-width limit"));
        assert!(s
            .markdown
            .contains("| t = 600 steps | 1442 | 0.9500 | 0.03000 | eigendecomposition |"));
        assert!(s.markdown.contains("| t = ∞ | not computed |"));
        assert!(s
            .markdown
            .contains("At width 1024 the finite networks reach bp 0.9000, align-zero 0.9000"));
        assert!(s
            .markdown
            .contains("the limit after the same 600 steps predicts 0.9500."));
        let (file, chart) = &s.charts[0];
        assert_eq!(file, "limit_vs_width.svg");
        // the seven rules' curves, then the limit
        assert_eq!(chart.series.len(), 7 + 1);
        let l = chart.series.last().unwrap();
        assert_eq!(l.label, "NTK limit, t = 600 steps");
        assert_eq!(l.points, [(64.0, 0.95), (1024.0, 0.95)]);
        assert!(l.dashed && !l.markers);
        assert_eq!(without.charts[0].1.series.len(), 7);
    }

    #[test]
    fn report_from_partial_results_still_renders() {
        let p = plan(Scale::Quick, "digits", 0).unwrap();
        let d = tempfile::tempdir().unwrap();
        let r = results(vec![record(&p.accuracy[0], None, Some(0.5))]);
        let s = write_report(d.path(), &p, &r, 0.3, 1.0, "widealign reproduce").unwrap();
        assert_eq!(s.plots, 9); // no dynamics lines yet: no dynamics plot (the CNN's two and the limit's are there)
        let md = std::fs::read_to_string(d.path().join("report.md")).unwrap();
        assert!(md.contains("| bp | 0.5000 | – | – |"));
        assert!(md.contains("| t = ∞ | not computed | – |"), "{md}");
        assert!(md.contains("![Test accuracy against width](accuracy_vs_width.svg)"));
        assert!(md.contains("Always predicting 0.5 scores **0.3** (the data of seed 0)."));
    }

    #[test]
    fn rnn_dynamics_renders_a_table_per_matrix_and_a_plot() {
        // errors halving per 4× width (slope −1/2) for W_in, constant for W_out
        let line = serde_json::json!({
            "widealign_version": VERSION,
            "experiment": "rnn_dynamics",
            "key": "rnn_dynamics:{}",
            "settings": {"config": TrainConfig::default(), "widths": [64, 256], "steps": 5},
            "activation": "erf",
            "report": {
                "widths": [64, 256],
                "errors": {
                    "weight_norm": [[0.2, 0.1, 0.3], [0.1, 0.05, 0.3]],
                    "weight_direction": [[0.4, 0.4, 0.2], [0.2, 0.2, null]],
                    "function": [0.1, 0.05]
                },
                "slopes": {"weight_norm": -0.3, "weight_direction": -0.5, "function": -0.5},
                "max_stable_lr": 0.873, "hidden_layers": 1, "steps": 5, "lr": 0.25,
                "train_size": 32, "seq_len": 6
            }
        });
        let r = results(vec![line]);
        assert_eq!(r.rnn_dynamics.len(), 1);
        assert!(r.dynamics.is_empty());
        let s = rnn_dynamics(&r.rnn_dynamics);
        let md = &s.markdown;
        assert!(
            md.contains("## 7. RNN layerwise weight dynamics against width"),
            "{md}"
        );
        assert!(
            md.contains("32 training sequences of 6 steps, 5 steps at lr 0.25"),
            "{md}"
        );
        assert!(
            md.contains("| width | `w_in` norm | `w_in` direction | `w_rec` norm"),
            "{md}"
        );
        assert!(
            md.contains(
                "| 256 | 1.000e-1 | 2.000e-1 | 5.000e-2 | 2.000e-1 | 3.000e-1 | NaN | 5.000e-2 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| **slope** | -0.500 | -0.500 | -0.500 | -0.500 | 0.000 | NaN | -0.500 |"),
            "{md}"
        );
        assert_eq!(s.charts[0].0, "rnn_dynamics_erf.svg");
        let labels = series_labels(&s.charts[0].1);
        assert_eq!(
            labels,
            [
                "w_in direction (-0.50)",
                "w_rec direction (-0.50)",
                "w_out direction (NaN)",
                "function (-0.50)",
                "width^(-1/2)"
            ]
        );
        assert!(rnn_dynamics(&[]).markdown.is_empty());
    }

    #[test]
    fn rnn_alignment_renders_into_the_report() {
        use widealign_experiments::plan::Experiment;
        use widealign_experiments::reproduce::{rnn_alignment_key, LayerScores};
        let p = plan(Scale::Tiny, "digits", 0).unwrap();
        assert!(Experiment::ALL.contains(&Experiment::RnnAlignment));
        assert!(!p.rnn_align.is_empty());
        let lines = p
            .rnn_align
            .iter()
            .map(|c| {
                let layers = (1..=3)
                    .map(|layer| LayerScores {
                        layer,
                        score: if layer == 1 { 1.0 } else { 0.9 },
                        probe_score: 0.8,
                        shuffled: 0.1,
                        random: 0.05,
                        shuffled_trained: 0.07,
                        input_span: 1.0,
                        span_rank: Some(1),
                        span_dim: Some(1),
                    })
                    .collect();
                let l = AlignmentLine {
                    widealign_version: VERSION.into(),
                    experiment: Experiment::RnnAlignment.name().into(),
                    key: rnn_alignment_key(c),
                    settings: c.clone(),
                    width: c.width,
                    test_accuracy: None,
                    diverged: false,
                    layers,
                };
                serde_json::to_value(&l).unwrap()
            })
            .collect();
        let r = results(lines);
        assert_eq!(r.rnn_alignment.len(), p.rnn_align.len());
        assert!(r.alignment.is_empty());
        let s = rnn_alignment(&p, &r.rnn_alignment);
        let w = p.rnn_align[0].width;
        assert!(s.markdown.contains("## 6. RNN alignment against width"));
        assert!(s.markdown.contains("W_in is n×1"));
        assert!(
            s.markdown.contains(&format!(
                "| {w} | w_rec | 0.9000 | 0.8000 | 0.1000 | 0.0500 |"
            )),
            "{}",
            s.markdown
        );
        assert!(s.markdown.contains(&format!("| {w} | w_in | 1.0000 |")));
        let labels = series_labels(&s.charts[0].1);
        assert_eq!(
            labels,
            [
                "w_rec",
                "w_rec shuffled",
                "w_rec random",
                "w_out",
                "w_out shuffled",
                "w_out random"
            ]
        );
        let d = tempfile::tempdir().unwrap();
        write_report(d.path(), &p, &r, 0.3, 1.0, "widealign reproduce").unwrap();
        let md = std::fs::read_to_string(d.path().join("report.md")).unwrap();
        assert!(md.contains("![RNN alignment against width](rnn_alignment_vs_width.svg)"));
        assert!(d.path().join("rnn_alignment_vs_width.svg").exists());
    }

    /// The CNN section: accuracy per rule and channel count with intervals and a reading, the
    /// alignment per kernel and readout with the controls, and its two plots.
    #[test]
    fn cnn_section_renders_accuracy_and_alignment() {
        use widealign_experiments::plan::Experiment;
        use widealign_experiments::reproduce::cnn_alignment_key;
        let p = quick_with_three_seeds();
        assert_eq!(p.cnn_channels, [2, 8, 32]);
        let acc = |c: &TrainConfig| -> Option<f64> {
            let base = match c.rule {
                RuleKind::Bp => 0.80 + 0.004 * c.channels as f64,
                RuleKind::Fa => 0.60,
                _ => return None,
            };
            Some(base + 0.01 * c.seed as f64)
        };
        let mut lines: Vec<serde_json::Value> = p
            .cnn
            .iter()
            .filter_map(|c| {
                let mut v = record(c, None, acc(c));
                acc(c)?;
                v["experiment"] = serde_json::json!(Experiment::CnnAccuracy.name());
                Some(v)
            })
            .collect();
        for c in &p.cnn_align {
            let layers = (1..=3)
                .map(|layer| LayerScores {
                    layer,
                    score: 0.5 + 0.01 * c.channels as f64 + 0.001 * c.seed as f64,
                    probe_score: 0.5,
                    shuffled: 0.1,
                    random: 0.05,
                    shuffled_trained: 0.07,
                    input_span: 1.0,
                    span_rank: Some(9),
                    span_dim: Some(9),
                })
                .collect();
            let l = AlignmentLine {
                widealign_version: VERSION.into(),
                experiment: Experiment::CnnAlignment.name().into(),
                key: cnn_alignment_key(c),
                settings: c.clone(),
                width: c.channels,
                test_accuracy: None,
                diverged: false,
                layers,
            };
            lines.push(serde_json::to_value(&l).unwrap());
        }
        let r = results(lines);
        assert_eq!(r.cnn_alignment.len(), p.cnn_align.len());
        let s = cnn(&p, &r);
        let md = &s.markdown;
        assert!(
            md.contains("## 8. CNN: test accuracy and alignment against channel count"),
            "{md}"
        );
        assert!(md.contains("2 convolution layers of 3×3 kernels"), "{md}");
        assert!(md.contains("flattened last maps, on `digits`"), "{md}");
        assert!(
            md.contains("| rule | 2 channels | 8 channels | 32 channels |"),
            "{md}"
        );
        assert!(
            md.contains("| bp | 0.8180 ± 0.0248 | 0.8420 ± 0.0248 | 0.9380 ± 0.0248 |"),
            "{md}"
        );
        assert!(md.contains("| align-zero | – | – | – |"), "{md}");
        assert!(md.contains("* 2 channels: above: none; below: fa;"), "{md}");
        assert!(
            md.contains("* bp: 2 channels → 8 channels ≈, 8 channels → 32 channels ↑"),
            "{md}"
        );
        assert!(md.contains("| 32 | conv2 | 0.8210 ± "), "{md}");
        assert!(md.contains("| 2 | readout | "), "{md}");
        assert!(
            md.contains("1 (trivially: the inputs never change)"),
            "{md}"
        );
        let names: Vec<&str> = s.charts.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "cnn_accuracy_vs_channels.svg",
                "cnn_alignment_vs_channels.svg"
            ]
        );
        let labels = series_labels(&s.charts[1].1);
        assert_eq!(
            labels[..4],
            ["conv1", "conv1 shuffled", "conv1 random", "conv2"]
        );
        assert_eq!(labels[6], "readout");
        assert_eq!(s.charts[0].1.series[0].band.len(), 3);
        // a plan without the CNN group renders nothing
        let mut none = p.clone();
        none.cnn.clear();
        assert!(cnn(&none, &r).markdown.is_empty());
        let d = tempfile::tempdir().unwrap();
        write_report(d.path(), &p, &r, 0.3, 1.0, "widealign reproduce").unwrap();
        assert!(d.path().join("cnn_alignment_vs_channels.svg").exists());
        assert!(d.path().join("cnn_accuracy_vs_channels.svg").exists());
    }

    fn quick_with_three_seeds() -> Plan {
        plan(Scale::Quick, "digits", 0)
            .unwrap()
            .with_seeds(3)
            .unwrap()
    }

    /// With three seeds a cell shows mean ± t-interval half-width, the plot a band, and the
    /// reading names only the rules whose intervals are disjoint from bp's.
    #[test]
    fn seeds_give_intervals_bands_and_readings() {
        let p = quick_with_three_seeds();
        let acc = |c: &TrainConfig| -> Option<f64> {
            let base = match c.rule {
                RuleKind::Bp => 0.90,
                RuleKind::AlignZero => 0.895,
                RuleKind::Fa => 0.70,
                _ => return None,
            };
            Some(base + 0.01 * c.seed as f64)
        };
        let lines = p
            .accuracy
            .iter()
            .filter_map(|c| acc(c).map(|a| record(c, None, Some(a))))
            .collect();
        let r = results(lines);
        let s = accuracy_vs_width(&p, &r);
        // s = 0.01, t(0.975, 2) = 4.3027: half-width 0.0248
        assert!(
            s.markdown
                .contains("| bp | 0.9100 ± 0.0248 | 0.9100 ± 0.0248 | 0.9100 ± 0.0248 |"),
            "{}",
            s.markdown
        );
        assert!(
            s.markdown
                .contains("* width 64: above: none; below: fa; not distinguishable: align-zero\n"),
            "{}",
            s.markdown
        );
        let bp = &s.charts[0].1.series[0];
        assert_eq!(bp.band.len(), 3);
        assert!((bp.band[0].1 - (0.91 - 0.0248)).abs() < 1e-3);
        // one seed: values but no interval, and no reading
        let one = plan(Scale::Quick, "digits", 0).unwrap();
        let r1 = results(vec![record(&one.accuracy[0], None, Some(0.5))]);
        let s1 = accuracy_vs_width(&one, &r1);
        assert!(s1.markdown.contains("| bp | 0.5000 | – | – |"));
        assert!(s1.markdown.contains("one seed per cell, so no interval"));
        assert!(s1.charts[0].1.series[0].band.is_empty());
    }

    /// The Add-task section reads changes over widths only where intervals separate.
    #[test]
    fn add_task_trends_need_separated_intervals() {
        let p = quick_with_three_seeds();
        // bp: 1.0 → 0.99 (overlapping) → 0.5 (separated); readout only at width 32
        let loss = |c: &TrainConfig| -> Option<f64> {
            let base = match (c.rule, c.width) {
                (RuleKind::Bp, 32) => 1.0,
                (RuleKind::Bp, 64) => 0.99,
                (RuleKind::Bp, 128) => 0.5,
                _ => return None,
            };
            Some(base + 0.01 * c.seed as f64)
        };
        let mut lines = Vec::new();
        for c in &p.add {
            if let Some(l) = loss(c) {
                let mut v = record(c, None, None);
                v["best_test_loss"] = serde_json::json!(l);
                lines.push(v);
            }
        }
        let s = add_task(&p, &results(lines), 9.0);
        assert!(
            s.markdown
                .contains("* bp: width 32 → width 64 ≈, width 64 → width 128 ↓\n"),
            "{}",
            s.markdown
        );
        assert!(s.markdown.contains("* align-ada: width 32 → width 64 ?"));
    }

    /// The input-span fraction is marked trivially 1 where the activities span every input,
    /// shown with the span's dimension where they do not, and left plain for old lines.
    #[test]
    fn input_span_is_marked_where_trivial() {
        let l = |span: f64, rank: Option<usize>, dim: Option<usize>| LayerScores {
            layer: 2,
            score: 0.9,
            probe_score: 0.9,
            shuffled: 0.1,
            random: 0.1,
            shuffled_trained: 0.1,
            input_span: span,
            span_rank: rank,
            span_dim: dim,
        };
        let full = l(1.0, Some(256), Some(256));
        assert_eq!(
            span_text(&[&full], false),
            "1 (trivially: the activities span all 256 inputs)"
        );
        let (a, b) = (l(0.90, Some(100), Some(256)), l(0.92, Some(100), Some(256)));
        let t = span_text(&[&a, &b], false);
        assert!(
            t.starts_with("0.9100 ± ") && t.ends_with(" (span 100 of 256)"),
            "{t}"
        );
        let first = l(1.0, Some(61), Some(64));
        assert_eq!(
            span_text(&[&first], true),
            "1 (trivially: the inputs never change)"
        );
        assert_eq!(span_text(&[&l(1.0, None, None)], false), "1.0000");
    }

    #[test]
    fn numbers_are_written_as_before() {
        assert_eq!(json_number(0.1), "0.1");
        assert_eq!(json_number(1.0), "1.0");
        assert!((mean(&[1.0, f64::NAN, 3.0]) - 2.0).abs() < 1e-15);
        assert!(mean(&[f64::NAN]).is_nan());
    }
}
