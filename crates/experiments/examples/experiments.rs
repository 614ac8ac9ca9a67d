//! The reference experiments of `widealign_experiments::plan` (the plan `widealign reproduce`
//! runs) one group at a time, printing markdown tables; and step-time measurements of the
//! rules.
//!
//! ```text
//! cargo run --release -p widealign-experiments --example experiments -- digits  [--widths 64,256] [--rules bp,align-zero,...] [--epochs 40]
//! cargo run --release -p widealign-experiments --example experiments -- add     [--widths 64,256] [--rules bp,align-ada] [--epochs 200] [--epochs-for 1024:50] [--cutoff 50]
//! cargo run --release -p widealign-experiments --example experiments -- lowdata [--sizes 100,300] [--rules ...]
//! cargo run --release -p widealign-experiments --example experiments -- time    [--model mlp|rnn] [--width 1024] [--rules ...] [--epochs 1] [--no-cache]
//! cargo run --release -p widealign-experiments --example experiments -- cache   [--width 1024] [--rule align-zero] [--steps 200] [--off]
//! cargo run --release -p widealign-experiments --example experiments -- rnnstep [--width 1024] [--rule align-ada] [--steps 30] [--off]
//! ```
//!
//! `digits`, `add` and `lowdata` run the accuracy-vs-width, Add-task and low-data groups of
//! `plan(--scale, --dataset, --seed)` (defaults: `full`, `digits`, 0): every setting is the
//! plan's. `--widths`, `--sizes` and `--rules` select a subset of the plan's runs;
//! `--epochs`, `--epochs-for` and `--lr` depart from the plan and say so in the table title.
//! `time`, `cache` and `rnnstep` time single steps of the plan's digits and Add-task settings.

use std::collections::HashMap;
use std::time::Instant;

use widealign_data::{load, LoadOptions, Sequences, Split};
use widealign_experiments::plan::{plan, Plan, Scale};
use widealign_experiments::Trainer;
use widealign_models::{Loss, Mlp};
use widealign_rules::{MlpRule, RuleKind, StepInput, TrainConfig, TrainResult};
use widealign_tensor::{rng::SeedStream, Mat};

fn arg(args: &HashMap<String, String>, key: &str, default: &str) -> String {
    args.get(key)
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn list<T: std::str::FromStr>(s: &str) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    s.split(',')
        .map(|v| v.trim().parse().expect("list entry"))
        .collect()
}

fn rules(s: &str) -> Vec<RuleKind> {
    if s == "all" {
        RuleKind::ALL.to_vec()
    } else {
        list(s)
    }
}

/// The plan of `--scale`, `--dataset` and `--seed`.
fn the_plan(args: &HashMap<String, String>) -> Plan {
    let scale: Scale = arg(args, "scale", "full")
        .parse()
        .expect("--scale tiny|quick|full");
    let seed: u64 = arg(args, "seed", "0").parse().expect("--seed");
    plan(scale, &arg(args, "dataset", "digits"), seed).expect("a reference plan")
}

/// `--KEY a,b,c` as a list, or every value in `all` (in the plan's order). A value outside
/// `all` is an error: this example runs the plan's runs only.
fn subset<T: Copy + PartialEq + std::fmt::Debug + std::str::FromStr>(
    args: &HashMap<String, String>,
    key: &str,
    all: &[T],
) -> Vec<T>
where
    T::Err: std::fmt::Debug,
{
    match args.get(key) {
        None => all.to_vec(),
        Some(s) => {
            let want: Vec<T> = list(s);
            for w in &want {
                assert!(
                    all.contains(w),
                    "--{key}: {w:?} is not in the plan ({all:?})"
                );
            }
            all.iter().copied().filter(|v| want.contains(v)).collect()
        }
    }
}

/// The rules of a group in the plan's order, restricted by `--rules`.
fn plan_rules(args: &HashMap<String, String>, group: &[TrainConfig]) -> Vec<RuleKind> {
    let mut all: Vec<RuleKind> = Vec::new();
    for c in group {
        if !all.contains(&c.rule) {
            all.push(c.rule);
        }
    }
    match args.get("rules") {
        None => all,
        Some(s) => {
            let want = rules(s);
            for w in &want {
                assert!(all.contains(w), "--rules: {w} is not in the plan ({all:?})");
            }
            all.into_iter().filter(|r| want.contains(r)).collect()
        }
    }
}

/// `--epochs` (and `--lr`) replacing the plan's, and a note saying so.
fn departures(args: &HashMap<String, String>, cfg: &mut TrainConfig, note: &mut String) {
    if let Some(e) = args.get("epochs") {
        cfg.epochs = e.parse().expect("--epochs");
        *note = format!(" (--epochs {e}, not the plan's)");
    }
    if let Some(lr) = args.get("lr") {
        cfg.lr = lr.parse().expect("--lr");
        note.push_str(&format!(" (--lr {lr}, not the plan's)"));
    }
}

fn run(trainer: &mut Trainer, cfg: &TrainConfig) -> TrainResult {
    let t = Instant::now();
    let r = trainer.run(cfg, &mut |_| true).expect("training run");
    let curve: Vec<String> = r
        .history
        .iter()
        .filter(|h| h.epoch % (cfg.epochs / 8).max(1) == 0)
        .map(|h| format!("{}:{:.4}", h.epoch, h.test_loss))
        .collect();
    eprintln!(
        "  {} width {} train_size {:?}: test_loss {:.5} acc {:?} best_loss {:.5} (epoch {}) diverged {:?} ({:.1} s) curve [{}]",
        cfg.rule,
        cfg.width,
        cfg.train_size,
        r.test_loss,
        r.test_accuracy,
        r.best_test_loss,
        r.best_epoch(),
        r.diverged_epoch,
        t.elapsed().as_secs_f64(),
        curve.join(" ")
    );
    r
}

fn acc_cell(r: &TrainResult) -> String {
    if r.diverged {
        format!("diverged (epoch {})", r.diverged_epoch.unwrap_or(0))
    } else {
        format!("{:.2}", 100.0 * r.test_accuracy.unwrap_or(f64::NAN))
    }
}

fn print_table<C: std::fmt::Display>(columns: &[C], rules: &[RuleKind], table: &[Vec<String>]) {
    print!("| rule |");
    columns.iter().for_each(|c| print!(" {c} |"));
    print!("\n|---|");
    columns.iter().for_each(|_| print!("---|"));
    println!();
    for (i, rule) in rules.iter().enumerate() {
        print!("| {rule} |");
        table[i].iter().for_each(|c| print!(" {c} |"));
        println!();
    }
}

/// The accuracy-vs-width group.
fn digits(args: &HashMap<String, String>) {
    let p = the_plan(args);
    let widths = subset(args, "widths", &p.widths);
    let rules = plan_rules(args, &p.accuracy);
    let mut trainer = Trainer::new();
    let mut table = vec![vec![String::new(); widths.len()]; rules.len()];
    let mut note = String::new();
    let mut shown = None;
    for (j, &w) in widths.iter().enumerate() {
        for (i, &rule) in rules.iter().enumerate() {
            let mut cfg = p
                .accuracy
                .iter()
                .find(|c| c.rule == rule && c.width == w)
                .expect("the plan has every rule at every width")
                .clone();
            departures(args, &mut cfg, &mut note);
            table[i][j] = acc_cell(&run(&mut trainer, &cfg));
            shown = Some(cfg);
        }
    }
    let c = shown.expect("at least one run");
    println!(
        "\n{}, MLP depth {}, lr {}, batch {}, {} epochs{note}, seed {} ({} plan): test accuracy (%) after the last epoch\n",
        p.dataset, c.depth, c.lr, c.batch_size, c.epochs, c.seed, p.scale
    );
    print_table(&widths, &rules, &table);
}

fn constant_loss(s: &Sequences, c: f32) -> f64 {
    let pred: Vec<Mat<f32>> =
        s.y.iter()
            .map(|y| Mat::from_element(y.nrows(), y.ncols(), c))
            .collect();
    Loss::Mse.evaluate_sequence(&pred, &s.y).unwrap().0
}

/// The Add-task group.
fn add(args: &HashMap<String, String>) {
    let p = the_plan(args);
    let widths = subset(args, "widths", &p.add_widths);
    let rules = plan_rules(args, &p.add);
    let mut trainer = Trainer::new();
    let data = trainer.dataset(&p.add[0]).expect("add task");
    let Split::Sequences(test) = &data.test else {
        panic!("add is a sequence dataset")
    };
    let half = constant_loss(test, 0.5);
    let Split::Sequences(train_seq) = &data.train else {
        panic!("add is a sequence dataset")
    };
    let n_el: usize = train_seq.y.iter().map(|y| y.len()).sum();
    let mean = train_seq
        .y
        .iter()
        .flat_map(|y| y.iter())
        .map(|&v| v as f64)
        .sum::<f64>()
        / n_el as f64;
    let mean_loss = constant_loss(test, mean as f32);
    // `--epochs-for 1024:50` runs width 1024 for 50 epochs; `--cutoff 50` adds a table of the
    // best test loss within the first 50 epochs, comparable across widths.
    let epochs_for: HashMap<usize, usize> = args
        .get("epochs-for")
        .map(|s| {
            s.split(',')
                .map(|p| {
                    let (w, e) = p.split_once(':').expect("W:E");
                    (w.parse().unwrap(), e.parse().unwrap())
                })
                .collect()
        })
        .unwrap_or_default();
    let cutoff: Option<usize> = args.get("cutoff").map(|c| c.parse().unwrap());
    let mut note = String::new();
    let mut results: Vec<Vec<Option<TrainResult>>> = vec![vec![None; widths.len()]; rules.len()];
    for (j, &w) in widths.iter().enumerate() {
        for (i, &rule) in rules.iter().enumerate() {
            let mut cfg = p
                .add
                .iter()
                .find(|c| c.rule == rule && c.width == w)
                .expect("the plan has every Add rule at every width")
                .clone();
            departures(args, &mut cfg, &mut note);
            if let Some(&e) = epochs_for.get(&w) {
                cfg.epochs = e;
                note = " (--epochs-for, not the plan's)".into();
            }
            results[i][j] = Some(run(&mut trainer, &cfg));
        }
    }
    let a0 = &p.add[0];
    let print_table = |title: String, within: Option<usize>| {
        println!("\n{title}\n");
        print!("| rule |");
        for (j, w) in widths.iter().enumerate() {
            let e = results[0][j].as_ref().map_or(0, |r| r.epochs);
            print!(" {w} ({} epochs) |", within.map_or(e, |c| c.min(e)));
        }
        print!("\n|---|");
        widths.iter().for_each(|_| print!("---|"));
        println!();
        for (i, rule) in rules.iter().enumerate() {
            print!("| {rule} |");
            for r in results[i].iter().flatten() {
                let best = r
                    .history
                    .iter()
                    .filter(|h| within.is_none_or(|c| h.epoch <= c))
                    .map(|h| h.test_loss)
                    .fold(f64::INFINITY, f64::min);
                match r.diverged_epoch {
                    Some(d) if within.is_none_or(|c| d <= c) => {
                        print!(" {best:.4} (diverged epoch {d}) |")
                    }
                    _ => print!(" {best:.4} |"),
                }
            }
            println!();
        }
        print!("| predict 0.5 |");
        widths.iter().for_each(|_| print!(" {half:.4} |"));
        println!();
        print!("| predict the training mean {mean:.4} |");
        widths.iter().for_each(|_| print!(" {mean_loss:.4} |"));
        println!();
    };
    print_table(
        format!(
            "Add task (T = 100, 300 train / 100 test sequences), {} RNN, lr {}, batch {}{note}, seed {} ({} plan): \
             best test loss over all epochs run (MSE summed over the 100 steps, mean over sequences)",
            a0.activation.name(),
            a0.lr,
            a0.batch_size,
            a0.seed,
            p.scale
        ),
        None,
    );
    if let Some(c) = cutoff {
        print_table(
            format!("Same runs, best test loss within the first {c} epochs"),
            Some(c),
        );
    }
}

/// The low-data group.
fn lowdata(args: &HashMap<String, String>) {
    let p = the_plan(args);
    let sizes = subset(args, "sizes", &p.sizes);
    let rules = plan_rules(args, &p.low_data);
    let mut trainer = Trainer::new();
    let mut table = vec![vec![String::new(); sizes.len()]; rules.len()];
    let mut note = String::new();
    let mut epochs = Vec::new();
    for (j, &k) in sizes.iter().enumerate() {
        for (i, &rule) in rules.iter().enumerate() {
            let mut cfg = p
                .low_data
                .iter()
                .find(|c| c.rule == rule && c.train_size == Some(k))
                .expect("the plan has every rule at every size")
                .clone();
            departures(args, &mut cfg, &mut note);
            if i == 0 {
                epochs.push(cfg.epochs.to_string());
            }
            table[i][j] = acc_cell(&run(&mut trainer, &cfg));
        }
    }
    let l0 = &p.low_data[0];
    println!(
        "\nLow data: {}, stratified training subsets, MLP depth {} width {}, lr {}, batch {}, epochs {} for the sizes {sizes:?}{}, seed {} ({} plan): test accuracy (%) on the test split\n",
        p.dataset,
        l0.depth,
        l0.width,
        l0.lr,
        l0.batch_size,
        epochs.join(", "),
        if note.is_empty() {
            " (about the same number of steps each)"
        } else {
            &note
        },
        l0.seed,
        p.scale
    );
    let columns: Vec<String> = sizes.iter().map(|k| format!("{k} examples")).collect();
    print_table(&columns, &rules, &table);
}

/// The plan's base config of `model`: its first digits run (MLP) or Add-task run (RNN).
fn base(model: &str) -> TrainConfig {
    let p = plan(Scale::Full, "digits", 0).expect("the digits plan");
    if model == "rnn" {
        p.add[0].clone()
    } else {
        p.accuracy[0].clone()
    }
}

/// Mean seconds per training run divided by steps, for each rule.
fn time(args: &HashMap<String, String>) {
    let model = arg(args, "model", "mlp");
    let width: usize = arg(args, "width", "1024").parse().unwrap();
    let rules = rules(&arg(args, "rules", "bp,align-ada,align-zero"));
    let epochs: usize = arg(args, "epochs", "1").parse().unwrap();
    let base = base(&model);
    let data = load(&base.dataset, &LoadOptions::default()).unwrap();
    for rule in rules {
        let cfg = TrainConfig {
            rule,
            width,
            epochs,
            cache_frozen: !args.contains_key("no-cache"),
            ..base.clone()
        };
        let t = Instant::now();
        let r = widealign_rules::train(&cfg, &data, widealign_rules::Callbacks::default()).unwrap();
        let total = t.elapsed().as_secs_f64();
        println!(
            "{model} width {width} {rule}: {epochs} epoch(s), {} steps, {:.3} s total, {:.2} ms/step (incl. evaluation)",
            r.steps,
            total,
            1e3 * total / r.steps as f64
        );
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Align-ada/zero step time and memory with and without the per-example frozen-trace cache.
fn cache(args: &HashMap<String, String>) {
    let width: usize = arg(args, "width", "1024").parse().unwrap();
    let kind: RuleKind = arg(args, "rule", "align-zero").parse().unwrap();
    let steps: usize = arg(args, "steps", "200").parse().unwrap();
    let use_cache = !args.contains_key("off");
    let data = load("digits", &LoadOptions::default()).unwrap();
    let train_split = data.train.as_tabular().unwrap();
    let cfg = TrainConfig {
        rule: kind,
        width,
        ..base("mlp")
    };
    let spec = cfg.mlp_spec(64, 10).unwrap();
    let mut net = Mlp::<f32>::new(&spec, 0).unwrap();
    let rss0 = peak_rss_kib();
    let t = Instant::now();
    let mut rule = MlpRule::new(kind, &net).unwrap();
    let bytes = if use_cache {
        rule.cache_frozen_trace(&train_split.x).unwrap()
    } else {
        0
    };
    let setup = t.elapsed().as_secs_f64();
    let n = train_split.len();
    let mut rng = SeedStream::new(0).child("bench").rng("rows");
    let mut bp = MlpRule::new(RuleKind::Bp, &net).unwrap();
    let mut net_bp = net.clone();
    // Interleave bp and rule steps on the same batches; medians resist the other processes' load.
    let one_step = |rule: &mut MlpRule<f32>, net: &mut Mlp<f32>, rows: &[usize]| -> f64 {
        let b = train_split.batch(rows);
        let t = Instant::now();
        let live = net.forward(&b.x).unwrap();
        let (_, err) = Loss::Mse.evaluate(live.output(), &b.y).unwrap();
        let step = StepInput {
            x: &b.x,
            rows: Some(rows),
            live: &live,
            err: &err,
        };
        let g = rule.update(net, &step).unwrap();
        net.apply_update(g, 0.1);
        t.elapsed().as_secs_f64()
    };
    let (mut t_bp, mut t_rule) = (Vec::new(), Vec::new());
    for s in 0..steps {
        let rows: Vec<usize> = (0..100)
            .map(|_| widealign_tensor::rng::below(&mut rng, n as u64) as usize)
            .collect();
        let a = one_step(&mut bp, &mut net_bp, &rows);
        let b = one_step(&mut rule, &mut net, &rows);
        if s >= 10 {
            t_bp.push(a);
            t_rule.push(b);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (t_bp, t_rule) = (median(&mut t_bp), median(&mut t_rule));
    println!(
        "width {width} {kind} cache {}: setup {:.3} s, cache {:.1} MB, median step {:.3} ms (bp {:.3} ms, ratio {:.3}), peak RSS growth {:.1} MB (VmHWM {:.1} MB)",
        if use_cache { "on" } else { "off" },
        setup,
        bytes as f64 / 1e6,
        1e3 * t_rule,
        1e3 * t_bp,
        t_rule / t_bp,
        (peak_rss_kib().saturating_sub(rss0)) as f64 / 1024.0,
        peak_rss_kib() as f64 / 1024.0,
    );
}

/// RNN step time of a rule relative to bp (interleaved on the same Add-task batches, medians).
fn rnnstep(args: &HashMap<String, String>) {
    let width: usize = arg(args, "width", "1024").parse().unwrap();
    let kind: RuleKind = arg(args, "rule", "align-ada").parse().unwrap();
    let steps: usize = arg(args, "steps", "30").parse().unwrap();
    let data = load("add", &LoadOptions::default()).unwrap();
    let Split::Sequences(train_seq) = &data.train else {
        panic!("add is a sequence dataset")
    };
    let cfg = TrainConfig {
        width,
        ..base("rnn")
    };
    let spec = cfg.rnn_spec(1, 1).unwrap();
    let mut net_bp = widealign_models::Rnn::<f32>::new(&spec, 0).unwrap();
    let mut net = net_bp.clone();
    let mut bp = widealign_rules::RnnRule::new(RuleKind::Bp, &net).unwrap();
    let mut rule = widealign_rules::RnnRule::new(kind, &net).unwrap();
    let use_cache = !args.contains_key("off");
    let bytes = if use_cache {
        rule.cache_frozen_trace(&train_seq.x).unwrap()
    } else {
        0
    };
    let mut rng = SeedStream::new(0).child("bench").rng("rows");
    let one_step = |rule: &mut widealign_rules::RnnRule<f32>,
                    net: &mut widealign_models::Rnn<f32>,
                    rows: &[usize]|
     -> f64 {
        let b = train_seq.batch(rows);
        let t = Instant::now();
        let live = net.forward(&b.x).unwrap();
        let (_, errs) = Loss::Mse.evaluate_sequence(&live.outputs, &b.y).unwrap();
        let step = StepInput {
            x: b.x.as_slice(),
            rows: Some(rows),
            live: &live,
            err: errs.as_slice(),
        };
        let g = rule.update(net, &step).unwrap();
        net.apply_update(g, 0.001);
        t.elapsed().as_secs_f64()
    };
    let (mut t_bp, mut t_rule) = (Vec::new(), Vec::new());
    for s in 0..steps {
        let rows: Vec<usize> = (0..50)
            .map(|_| widealign_tensor::rng::below(&mut rng, 300) as usize)
            .collect();
        let a = one_step(&mut bp, &mut net_bp, &rows);
        let b = one_step(&mut rule, &mut net, &rows);
        if s >= 3 {
            t_bp.push(a);
            t_rule.push(b);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (t_bp, t_rule) = (median(&mut t_bp), median(&mut t_rule));
    println!(
        "rnn width {width} {kind} cache {} ({:.1} MB): median step {:.1} ms (bp {:.1} ms, ratio {:.3})",
        if use_cache { "on" } else { "off" },
        bytes as f64 / 1e6,
        1e3 * t_rule,
        1e3 * t_bp,
        t_rule / t_bp
    );
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first().cloned() else {
        eprintln!("usage: experiments digits|add|lowdata|time|cache [--key value ...]");
        std::process::exit(2);
    };
    let mut args = HashMap::new();
    let mut i = 1;
    while i < argv.len() {
        let key = argv[i].trim_start_matches("--").to_string();
        if i + 1 < argv.len() && !argv[i + 1].starts_with("--") {
            args.insert(key, argv[i + 1].clone());
            i += 2;
        } else {
            args.insert(key, String::new());
            i += 1;
        }
    }
    match cmd.as_str() {
        "digits" => digits(&args),
        "add" => add(&args),
        "lowdata" => lowdata(&args),
        "time" => time(&args),
        "cache" => cache(&args),
        "rnnstep" => rnnstep(&args),
        other => {
            eprintln!("unknown experiment {other}");
            std::process::exit(2);
        }
    }
}
