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

use std::collections::BTreeMap;
use std::path::Path;

use widealign_experiments::plan::{Plan, ADD_RULES};
use widealign_experiments::record::VERSION;
use widealign_experiments::reproduce::{AlignmentLine, DynamicsLine, ReproResults, RNN_MATRICES};
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
             * scale: {}, dataset: `{}`, widealign {VERSION}\n\
             * machine: {}\n\
             * wall-clock time: {} (this invocation; with `--resume` earlier runs are not re-timed)\n\n\
             Every number below is in `results.jsonl` beside this file: one JSON line per training run \
             (the `widealign train --json` record plus an `experiment` field), alignment width and dynamics experiment.\n\n",
            plan.scale.name(),
            plan.dataset,
            machine(),
            fmt_secs(seconds)
        ),
        charts: Vec::new(),
    }
}

/// Section 1: final test accuracy of every rule against width (mean over seeds; diverged runs are
/// counted and named in the legend).
pub fn accuracy_vs_width(plan: &Plan, results: &ReproResults) -> Section {
    let first = plan.accuracy.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 1. Test accuracy against width, every rule\n\nMLP with {} hidden layers on `{}`{}, NTK parameterisation, plain SGD, lr {}, batch {}, {} epochs; \
         final-epoch test accuracy (seed {}).\n\n",
        first.depth,
        plan.dataset,
        first.train_size.map(|k| format!(" ({k} training examples)")).unwrap_or_default(),
        first.lr,
        first.batch_size,
        first.epochs,
        seeds_of(&plan.accuracy)
    );
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
            let recs: Vec<&TrainResult> = plan
                .accuracy
                .iter()
                .filter(|c| c.rule == *rule && c.width == w)
                .filter_map(|c| results.result(c))
                .collect();
            let accs: Vec<f64> = recs
                .iter()
                .filter(|r| !r.diverged)
                .map(|r| r.test_accuracy.unwrap_or(f64::NAN))
                .collect();
            let diverged = recs.iter().filter(|r| r.diverged).count();
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
                    cell(recs.first().copied(), test_accuracy, 4)
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
    md.push_str("\n![Test accuracy against width](accuracy_vs_width.svg)\n\n");
    Section {
        markdown: md,
        charts: vec![("accuracy_vs_width.svg".into(), chart)],
    }
}

/// Test accuracy after every epoch at the largest width, every rule (first seed).
pub fn training_curves(plan: &Plan, results: &ReproResults) -> Section {
    let seed = plan.accuracy.first().map_or(0, |c| c.seed);
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
            .find(|c| c.rule == *rule && c.width == wmax && c.seed == seed);
        if let Some(r) = cfg.and_then(|c| results.result(c)) {
            let pts = r
                .history
                .iter()
                .map(|e| (e.epoch as f64, e.test_accuracy.unwrap_or(f64::NAN)))
                .collect();
            curves
                .series
                .push(Series::new(rule.name(), pts, ri).no_markers());
        }
    }
    Section {
        markdown: format!(
            "Test accuracy after every epoch at width {wmax} (epoch 0 is the untrained network):\n\n![Training curves](training_curves.svg)\n\n"
        ),
        charts: vec![("training_curves.svg".into(), curves)],
    }
}

/// Section 2: best test loss on the Add task against width, with the loss of always predicting 0.5.
pub fn add_task(plan: &Plan, results: &ReproResults, add_baseline: f64) -> Section {
    let a0 = plan.add.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 2. Add task against width\n\nElman RNN ({}), Add task (T = 100, 300 train / 100 test sequences), SGD lr {}, batch {}, {} epochs; \
         best test loss over the epochs (per-step MSE summed over the 100 steps). Always predicting 0.5 scores **{}**.\n\n",
        a0.activation.name(),
        a0.lr,
        a0.batch_size,
        a0.epochs,
        fmt_sig(add_baseline)
    );
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
                .and_then(|c| results.result(c));
            row.push(cell(rec, best_test_loss, 4));
            pts.push((w as f64, rec.map_or(f64::NAN, |r| r.best_test_loss)));
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
    md.push_str("\n![Add task loss against width](add_task_vs_width.svg)\n\n");
    Section {
        markdown: md,
        charts: vec![("add_task_vs_width.svg".into(), chart)],
    }
}

/// Section 3: final test accuracy of every rule with small stratified training sets.
pub fn low_data(plan: &Plan, results: &ReproResults) -> Section {
    let l0 = plan.low_data.first().cloned().unwrap_or_default();
    let mut md = format!(
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
    );
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
                .and_then(|c| results.result(c));
            row.push(cell(rec, test_accuracy, 4));
            let acc = match rec {
                Some(r) if !r.diverged => r.test_accuracy.unwrap_or(f64::NAN),
                _ => f64::NAN,
            };
            pts.push((k as f64, acc));
        }
        rows.push(row);
        chart.series.push(Series::new(rule.name(), pts, ri));
    }
    md.push_str(&md_table(&header, &rows));
    md.push_str("\n![Low-data accuracy](low_data.svg)\n\n");
    Section {
        markdown: md,
        charts: vec![("low_data.svg".into(), chart)],
    }
}

/// Section 4: alignment of backprop's weight change with the predicted update, per layer and width,
/// with the shuffled and random controls and the input-span fraction.
pub fn alignment(plan: &Plan, lines: &[AlignmentLine]) -> Section {
    let g0 = plan.align.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 4. Alignment against width\n\nBackprop on `{}`{} ({} epochs, lr {}); per layer, the alignment score cos(ΔWᵀΔW, ΔW_refᵀΔW_ref) of the trained weight change with the \
         predicted (Align-zero) update accumulated during the same run, its probe estimate (100 Gaussian probes), the same score with ΔW's entries shuffled and with a random \
         matrix, and the fraction of ‖ΔW‖² in the span of the layer's initial training activities.\n\n",
        plan.dataset,
        g0.train_size.map(|k| format!(", {k} training examples")).unwrap_or_default(),
        g0.epochs,
        g0.lr
    );
    let header = strings(&[
        "width",
        "layer",
        "score",
        "probe",
        "shuffled",
        "random",
        "input span",
    ]);
    let mut rows = Vec::new();
    let mut per_layer: BTreeMap<usize, Vec<(f64, [f64; 4])>> = BTreeMap::new();
    for cfg in &plan.align {
        let Some(line) = lines.iter().find(|l| l.width == cfg.width) else {
            continue;
        };
        for l in &line.layers {
            rows.push(vec![
                cfg.width.to_string(),
                l.layer.to_string(),
                format!("{:.4}", l.score),
                format!("{:.4}", l.probe_score),
                format!("{:.4}", l.shuffled),
                format!("{:.4}", l.random),
                format!("{:.4}", l.input_span),
            ]);
            per_layer.entry(l.layer).or_default().push((
                cfg.width as f64,
                [l.score, l.shuffled, l.random, l.input_span],
            ));
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

/// One weight matrix's alignment points: its label and `(width, [score, shuffled, random,
/// input span])` per width.
type MatrixPoints = (String, Vec<(f64, [f64; 4])>);

/// An alignment-against-width chart: per matrix (label, points `(width, [score, shuffled,
/// random, …])`), the score solid, the shuffled control dashed, the random control dashed
/// without markers, in the matrix's colour.
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
        let pick = |j: usize| pts.iter().map(|(w, v)| (*w, v[j])).collect::<Vec<_>>();
        chart.series.push(Series::new(label.clone(), pick(0), i));
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
/// `W_out`) with the predicted update on the Add task, per width, with the shuffled and random
/// controls; the plot shows `W_rec` and `W_out` (`W_in` is n×1 on the Add task, so its scores
/// are 1 by construction).
pub fn rnn_alignment(plan: &Plan, lines: &[AlignmentLine]) -> Section {
    let g0 = plan.rnn_align.first().cloned().unwrap_or_default();
    let mut md = format!(
        "## 6. RNN alignment against width (Add task)\n\nBackprop training the Elman RNN on the Add task ({} epochs, lr {}, batch {}); per weight matrix, the \
         alignment score of the trained change with the predicted (Align-zero) update summed over time steps, its probe estimate, and the shuffled and random \
         controls, as in section 4. The Add task has one input per time step, so W_in is n×1: ΔWᵀΔW is then a 1×1 matrix and every score of W_in \
         (controls included) is trivially 1; W_rec and W_out carry the information.\n\n",
        g0.epochs, g0.lr, g0.batch_size
    );
    let header = strings(&["width", "matrix", "score", "probe", "shuffled", "random"]);
    let mut rows = Vec::new();
    let mut per_matrix: BTreeMap<usize, Vec<(f64, [f64; 4])>> = BTreeMap::new();
    let name = |layer: usize| {
        RNN_MATRICES
            .get(layer.wrapping_sub(1))
            .map_or_else(|| format!("matrix {layer}"), |n| n.to_string())
    };
    for cfg in &plan.rnn_align {
        let Some(line) = lines.iter().find(|l| l.width == cfg.width) else {
            continue;
        };
        for l in &line.layers {
            rows.push(vec![
                cfg.width.to_string(),
                name(l.layer),
                format!("{:.4}", l.score),
                format!("{:.4}", l.probe_score),
                format!("{:.4}", l.shuffled),
                format!("{:.4}", l.random),
            ]);
            if l.layer > 1 {
                per_matrix.entry(l.layer).or_default().push((
                    cfg.width as f64,
                    [l.score, l.shuffled, l.random, l.input_span],
                ));
            }
        }
    }
    md.push_str(&md_table(&header, &rows));
    let per_matrix: Vec<MatrixPoints> = per_matrix
        .into_iter()
        .map(|(layer, pts)| (name(layer), pts))
        .collect();
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
    for line in lines {
        let act = &line.activation;
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
    for line in lines {
        let act = &line.activation;
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

    #[test]
    fn report_from_partial_results_still_renders() {
        let p = plan(Scale::Quick, "digits", 0).unwrap();
        let d = tempfile::tempdir().unwrap();
        let r = results(vec![record(&p.accuracy[0], None, Some(0.5))]);
        let s = write_report(d.path(), &p, &r, 0.3, 1.0, "widealign reproduce").unwrap();
        assert_eq!(s.plots, 6); // no dynamics lines yet: no dynamics plot
        let md = std::fs::read_to_string(d.path().join("report.md")).unwrap();
        assert!(md.contains("| bp | 0.5000 | – | – |"));
        assert!(md.contains("![Test accuracy against width](accuracy_vs_width.svg)"));
        assert!(md.contains("Always predicting 0.5 scores **0.3**."));
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
                        input_span: 1.0,
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

    #[test]
    fn numbers_are_written_as_before() {
        assert_eq!(json_number(0.1), "0.1");
        assert_eq!(json_number(1.0), "1.0");
        assert!((mean(&[1.0, f64::NAN, 3.0]) - 2.0).abs() < 1e-15);
        assert!(mean(&[f64::NAN]).is_nan());
    }
}
