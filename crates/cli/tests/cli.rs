//! End-to-end tests of the `widealign` binary: exit codes, one-line errors, JSON contracts,
//! sweep order, sharding and resumption. Sizes are tiny so the whole file runs in seconds.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_widealign");

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(dir)
        .env("WIDEALIGN_PROGRESS", "log");
    for (k, v) in env {
        c.env(k, v);
    }
    for k in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
    ] {
        if !env.iter().any(|(e, _)| *e == k) {
            c.env_remove(k);
        }
    }
    c.output().expect("run widealign")
}

fn run(args: &[&str]) -> Output {
    run_in(Path::new("."), args, &[])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts exit status 2 with exactly one stderr line containing `needle`, and no panic.
fn assert_bad_input(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "want one line, got: {err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

/// The last stdout line as JSON.
fn last_json(o: &Output) -> Value {
    let out = stdout(o);
    let line = out
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stdout; stderr: {}", stderr(o)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn every_subcommand_has_help_with_an_example() {
    for args in [
        vec!["train"],
        vec!["sweep"],
        vec!["reproduce"],
        vec!["ntk"],
        vec!["predict"],
        vec!["dynamics"],
        vec!["align"],
        vec!["data", "list"],
        vec!["data", "info"],
        vec!["bench", "step"],
        vec!["bench", "gemm"],
        vec!["bench", "ntk"],
    ] {
        let mut a = args.clone();
        a.push("--help");
        let o = run(&a);
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let text = stdout(&o);
        assert!(text.contains("Example"), "{args:?} help has no example");
        assert!(
            text.contains(&format!("widealign {}", args.join(" "))),
            "{args:?}"
        );
    }
    let o = run(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("widealign "));
}

#[test]
fn bad_flags_exit_2_with_one_line_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--widht", "3"], "--widht"),
        (&["train", "--width", "x"], "--width"),
        (&["train", "--width", "0"], "--width"),
        (&["train", "--lr", "-1"], "--lr"),
        (&["train", "--lr", "nan"], "--lr"),
        (&["train", "--rule", "nope"], "possible values"),
        (&["train", "--batch-size", "0"], "--batch-size"),
        (&["train", "--epochs", "0"], "--epochs"),
        (&["train", "--out", "no/such/dir/r.jsonl"], "--out"),
        (&["sweep"], "--config"),
        (
            &[
                "sweep", "--config", "a.toml", "--out", "r", "--shard", "2/2",
            ],
            "--shard",
        ),
        (
            &["sweep", "--config", "a.toml", "--out", "r", "--shard", "x"],
            "--shard",
        ),
        (&["dynamics", "--widths", "64,zero"], "--widths"),
        (&["bench", "gemm", "--n", "0"], "--n"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let o = run(args);
        assert_bad_input(&o, needle);
    }
}

#[test]
fn bad_sweep_files_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        (
            "[base]\nwidth = 8\nwidht = 3\n",
            "s.toml:3: unknown key `widht`",
        ),
        (
            "[grid]\nrule = [\"bp\", \"backprop\"]\n",
            "s.toml:2: [grid] rule",
        ),
        ("[grid]\nwidth = [\n", "s.toml:"),
        ("[grid]\nlr = [1, -1]\n", "s.toml:2: [grid] lr value -1"),
    ];
    for (text, needle) in cases {
        std::fs::write(d.join("s.toml"), text).unwrap();
        let o = run_in(d, &["sweep", "--config", "s.toml", "--out", "r.jsonl"], &[]);
        assert_bad_input(&o, needle);
        assert!(!d.join("r.jsonl").exists());
    }
    let o = run_in(
        d,
        &["sweep", "--config", "missing.toml", "--out", "r.jsonl"],
        &[],
    );
    assert_bad_input(&o, "missing.toml");
}

fn dry_run(dir: &Path, shard: Option<&str>, env: &[(&str, &str)]) -> Vec<Value> {
    let mut args = vec![
        "sweep",
        "--config",
        "s.toml",
        "--out",
        "r.jsonl",
        "--dry-run",
    ];
    if let Some(s) = shard {
        args.extend(["--shard", s]);
    }
    let o = run_in(dir, &args, env);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const GRID: &str = r#"
[grid]
seed = [0, 1]
width = [8, 16, 32]
rule = ["bp", "align-zero"]
[base]
epochs = 1
"#;

#[test]
fn sweep_order_is_documented_order_and_shards_partition_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("s.toml"), GRID).unwrap();
    let all = dry_run(d, None, &[]);
    assert_eq!(all.len(), 12);
    let triples: Vec<(String, u64, u64)> = all
        .iter()
        .map(|v| {
            (
                v["config"]["rule"].as_str().unwrap().to_string(),
                v["config"]["width"].as_u64().unwrap(),
                v["config"]["seed"].as_u64().unwrap(),
            )
        })
        .collect();
    // rule (slowest), width, seed (fastest)
    assert_eq!(triples[0], ("bp".into(), 8, 0));
    assert_eq!(triples[1], ("bp".into(), 8, 1));
    assert_eq!(triples[2], ("bp".into(), 16, 0));
    assert_eq!(triples[6], ("align-zero".into(), 8, 0));
    for (i, v) in all.iter().enumerate() {
        assert_eq!(v["run_index"], i);
    }
    let mut union: Vec<Value> = Vec::new();
    for s in ["0/2", "1/2"] {
        union.extend(dry_run(d, Some(s), &[]));
    }
    union.sort_by_key(|v| v["run_index"].as_u64());
    assert_eq!(union, all);
    // --shard auto reads the Slurm variables (array 1-3 → shards 0..2 of 3)
    let env = [
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ];
    let s1 = dry_run(d, Some("auto"), &env);
    assert_eq!(s1, dry_run(d, Some("1/3"), &[]));
    let o = run_in(
        d,
        &[
            "sweep", "--config", "s.toml", "--out", "r.jsonl", "--shard", "auto",
        ],
        &[],
    );
    assert_bad_input(&o, "SLURM_ARRAY_TASK_ID");
}

#[test]
fn bench_gemm_json_contract() {
    let o = run(&["bench", "gemm", "--n", "64", "--reps", "2", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert!(v["gflops"].as_f64().unwrap() > 0.0);
    assert_eq!(v["n"], 64);
}

#[test]
fn ntk_json_contract_and_bad_csv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("x.csv"), "a,b,c\n1,0,0\n0.6,0.8,0\n0,0,2\n").unwrap();
    let o = run_in(
        d,
        &[
            "ntk",
            "--inputs",
            "x.csv",
            "--depth",
            "2",
            "--activation",
            "relu",
            "--w-std",
            "1.4",
            "--b-std",
            "0.1",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    for key in ["nngp", "ntk"] {
        let m = v[key].as_array().unwrap();
        assert_eq!(m.len(), 3);
        for i in 0..3 {
            assert_eq!(m[i].as_array().unwrap().len(), 3);
            for j in 0..3 {
                assert_eq!(m[i][j], m[j][i], "{key} symmetric");
            }
            assert!(m[i][i].as_f64().unwrap() > 0.0);
        }
    }
    assert!(v["seconds"].as_f64().unwrap() >= 0.0);
    std::fs::write(d.join("bad.csv"), "1,2\n3,oops\n").unwrap();
    let o = run_in(d, &["ntk", "--inputs", "bad.csv", "--json"], &[]);
    assert_bad_input(&o, "bad.csv:2: field 2");
    let o = run_in(d, &["ntk", "--inputs", "missing.csv"], &[]);
    assert_bad_input(&o, "missing.csv");
    let o = run_in(d, &["ntk", "--inputs", "x.csv", "--b-std", "-0.5"], &[]);
    assert_bad_input(&o, "--b-std");
}

#[test]
fn ntk_rnn_json_contract_and_bad_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // three sequences of T = 3 steps of d = 2 inputs, time-major; a header row
    std::fs::write(
        d.join("seq.csv"),
        "a1,b1,a2,b2,a3,b3\n1,0,0.5,-0.5,0,1\n0.6,0.8,0,0,-1,0.2\n0,0,2,1,0.3,0.3\n",
    )
    .unwrap();
    for act in ["relu", "erf", "tanh", "identity", "gelu"] {
        let o = run_in(
            d,
            &[
                "ntk",
                "--model",
                "rnn",
                "--inputs",
                "seq.csv",
                "--seq-len",
                "3",
                "--activation",
                act,
                "--w-std",
                "1.2",
                "--b-std",
                "0.2",
                "--json",
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{act}: {}", stderr(&o));
        let v = last_json(&o);
        for key in ["nngp", "ntk"] {
            let m = v[key].as_array().unwrap();
            assert_eq!(m.len(), 3);
            for i in 0..3 {
                assert_eq!(m[i].as_array().unwrap().len(), 3);
                for j in 0..3 {
                    assert_eq!(m[i][j], m[j][i], "{act} {key} symmetric");
                }
                assert!(m[i][i].as_f64().unwrap() > 0.0);
            }
        }
        // the NTK exceeds the NNGP on the diagonal (it adds the hidden parameters' shares)
        assert!(v["ntk"][0][0].as_f64().unwrap() > v["nngp"][0][0].as_f64().unwrap());
    }
    // the same rows read as 6 steps of 1 input give another kernel
    let six = run_in(
        d,
        &[
            "ntk",
            "--model",
            "rnn",
            "--inputs",
            "seq.csv",
            "--seq-len",
            "6",
            "--json",
        ],
        &[],
    );
    let three = run_in(
        d,
        &[
            "ntk",
            "--model",
            "rnn",
            "--inputs",
            "seq.csv",
            "--seq-len",
            "3",
            "--json",
        ],
        &[],
    );
    assert_ne!(last_json(&six)["ntk"], last_json(&three)["ntk"]);
    let o = run_in(
        d,
        &[
            "ntk",
            "--model",
            "rnn",
            "--inputs",
            "seq.csv",
            "--seq-len",
            "4",
            "--json",
        ],
        &[],
    );
    assert_bad_input(
        &o,
        "seq.csv: rows have 6 numbers, not a multiple of --seq-len 4",
    );
    let o = run_in(
        d,
        &[
            "ntk",
            "--model",
            "rnn",
            "--inputs",
            "seq.csv",
            "--seq-len",
            "0",
        ],
        &[],
    );
    assert_bad_input(&o, "--seq-len");
    let o = run_in(d, &["ntk", "--model", "rnn", "--inputs", "seq.csv"], &[]);
    assert_bad_input(&o, "--seq-len");
    let o = run_in(d, &["ntk", "--inputs", "seq.csv", "--seq-len", "3"], &[]);
    assert_bad_input(&o, "--seq-len");
    std::fs::write(d.join("ragged.csv"), "1,2,3,4\n1,2\n").unwrap();
    let o = run_in(
        d,
        &[
            "ntk",
            "--model",
            "rnn",
            "--inputs",
            "ragged.csv",
            "--seq-len",
            "2",
        ],
        &[],
    );
    assert_bad_input(&o, "ragged.csv:2");
    let o = run_in(
        d,
        &[
            "ntk",
            "--model",
            "rnn",
            "--inputs",
            "seq.csv",
            "--seq-len",
            "3",
            "--w-std",
            "-1",
        ],
        &[],
    );
    assert_bad_input(&o, "--w-std");
}

/// The library crates name a bad option by its field (`train_size`, `w_std`, `lr`); the user
/// still sees the flag.
#[test]
fn library_option_errors_name_the_flag() {
    let o = run(&[
        "train",
        "--dataset",
        "digits",
        "--train-size",
        "100000",
        "--epochs",
        "1",
        "--width",
        "8",
    ]);
    assert_bad_input(
        &o,
        "invalid option --train-size: 100000: must be between 1 and the 1442 training examples",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("x.csv"), "1,0\n0,1\n").unwrap();
    let o = run_in(d, &["ntk", "--inputs", "x.csv", "--w-std", "nan"], &[]);
    assert_bad_input(
        &o,
        "invalid option --w-std: must be finite and non-negative, got NaN",
    );
    let o = run(&[
        "dynamics",
        "--dataset",
        "teacher",
        "--train-size",
        "16",
        "--depth",
        "1",
        "--widths",
        "32",
        "--steps",
        "5",
        "--lr",
        "1000",
    ]);
    assert_bad_input(&o, "; choose --lr below ");
    let o = run(&[
        "train",
        "--dataset",
        "add",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--width",
        "8",
    ]);
    assert_bad_input(
        &o,
        "--model: dataset add does not fit the mlp model: it holds sequences; use the rnn model",
    );
}

#[test]
fn data_list_and_info_json_contracts() {
    let o = run(&["data", "list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    let names: Vec<&str> = v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for n in ["digits", "fashion-mnist", "mnist", "add", "teacher"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let o = run(&["data", "info", "digits", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    for key in ["name", "path", "train", "test", "input_dim", "classes"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["input_dim"], 64);
    assert_eq!(v["classes"], 10);
    let o = run(&["data", "info", "nosuchset"]);
    assert_bad_input(&o, "nosuchset");
    let o = run(&["data", "info", "csv:/definitely/not/here.csv"]);
    assert_bad_input(&o, "here.csv");
}

/// Keys every train/sweep record carries (docs/theory.md §7 contract plus history and config).
const RECORD_KEYS: [&str; 15] = [
    "rule",
    "width",
    "depth",
    "seed",
    "epochs",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "best_test_loss",
    "diverged",
    "diverged_epoch",
    "seconds",
    "config",
    "history",
    "widealign_version",
];

const TINY: [&str; 8] = [
    "--width",
    "16",
    "--epochs",
    "2",
    "--train-size",
    "100",
    "--batch-size",
    "50",
];

#[test]
fn train_json_contract_and_out_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut args = vec![
        "train",
        "--rule",
        "align-zero",
        "--json",
        "--out",
        "r.jsonl",
    ];
    args.extend(TINY);
    let o = run_in(d, &args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    for k in RECORD_KEYS {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["rule"], "align-zero");
    assert_eq!(v["width"], 16);
    assert_eq!(v["diverged"], false);
    assert_eq!(v["history"].as_array().unwrap().len(), 3); // epoch 0 + 2
    let acc = v["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let line = std::fs::read_to_string(d.join("r.jsonl")).unwrap();
    assert_eq!(line.lines().count(), 1);
    // A torn tail from a killed writer is cut before the next append.
    std::fs::write(d.join("t.jsonl"), format!("{line}{{\"rule\":\"b")).unwrap();
    let mut args2 = vec!["train", "--quiet", "--out", "t.jsonl"];
    args2.extend(TINY);
    let o2 = run_in(d, &args2, &[]);
    assert_eq!(o2.status.code(), Some(0), "{}", stderr(&o2));
    assert_eq!(lines_of(&d.join("t.jsonl")).len(), 2);
    let w: Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(w["config"], v["config"]);
    // progress went to stderr, stdout holds only the JSON line
    assert_eq!(stdout(&o).lines().count(), 1);
}

#[test]
fn diverged_run_is_a_result_with_exit_0() {
    let mut args = vec!["train", "--lr", "1e6", "--json"];
    args.extend(TINY);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["diverged"], true);
    assert!(v["diverged_epoch"].as_u64().unwrap() >= 1);
    assert!(!stdout(&o).contains("NaN"));
}

#[test]
fn train_on_bad_datasets_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("t.csv"), "1,2,0\n3,4,1\n5,x,0\n").unwrap();
    let cases: [(&str, &str); 4] = [
        ("nosuch", "nosuch"),
        ("csv:t.csv", "t.csv"),
        ("idx:empty", "empty"),
        ("csv:missing.csv", "missing.csv"),
    ];
    std::fs::create_dir(d.join("empty")).unwrap();
    for (name, needle) in cases {
        let mut args = vec!["train", "--dataset", name];
        args.extend(TINY);
        let o = run_in(d, &args, &[]);
        assert_bad_input(&o, needle);
    }
    let o = run_in(
        d,
        &[
            "train",
            "--model",
            "rnn",
            "--dataset",
            "digits",
            "--width",
            "8",
        ],
        &[],
    );
    assert_bad_input(&o, "digits");
}

const REAL_GRID: &str = r#"
[base]
train_size = 100
batch_size = 50
epochs = 1
[grid]
rule = ["bp", "align-ada"]
width = [8, 16]
seed = [0, 1]
"#;

fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn sweep_writes_one_line_per_run_and_shards_give_the_same_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("s.toml"), REAL_GRID).unwrap();
    let o = run_in(
        d,
        &[
            "sweep",
            "--config",
            "s.toml",
            "--out",
            "all.jsonl",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let summary = last_json(&o);
    assert_eq!(summary["runs_total"], 8);
    assert_eq!(summary["completed"], 8);
    let all = lines_of(&d.join("all.jsonl"));
    assert_eq!(all.len(), 8);
    for (i, v) in all.iter().enumerate() {
        assert_eq!(v["run_index"], i);
        for k in RECORD_KEYS {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["config"]["train_size"], 100);
    }
    let mut sharded = Vec::new();
    for s in ["0/2", "1/2"] {
        let out = format!("s{}.jsonl", &s[..1]);
        let o = run_in(
            d,
            &["sweep", "--config", "s.toml", "--out", &out, "--shard", s],
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        sharded.extend(lines_of(&d.join(out)));
    }
    assert_eq!(sharded.len(), 8);
    sharded.sort_by_key(|v| v["run_index"].as_u64());
    for (a, b) in all.iter().zip(&sharded) {
        assert_eq!(a["config"], b["config"]);
        // same seed, same numbers, whichever process ran it
        assert_eq!(a["test_loss"], b["test_loss"]);
        assert_eq!(
            a["history"].as_array().unwrap().len(),
            b["history"].as_array().unwrap().len()
        );
    }
    // Without --resume an existing results file is refused; with it, nothing is rerun.
    let o = run_in(
        d,
        &["sweep", "--config", "s.toml", "--out", "all.jsonl"],
        &[],
    );
    assert_bad_input(&o, "--resume");
    let o = run_in(
        d,
        &[
            "sweep",
            "--config",
            "s.toml",
            "--out",
            "all.jsonl",
            "--resume",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["skipped"], 8);
    assert_eq!(lines_of(&d.join("all.jsonl")).len(), 8);
}

const SLOW_GRID: &str = r#"
[base]
epochs = 2
width = 256
[grid]
rule = ["bp", "align-zero", "align-ada"]
seed = [0, 1, 2, 3]
"#;

fn assert_complete_and_unique(path: &Path, n: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'));
    let mut keys: Vec<String> = lines_of(path)
        .iter()
        .map(|v| v["config"].to_string())
        .collect();
    assert_eq!(keys.len(), n, "one line per run");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no duplicates");
}

/// Waits until `path` has at least `n` lines (or the child exits).
fn wait_for_lines(child: &mut std::process::Child, path: &Path, n: usize) {
    for _ in 0..600 {
        let lines = std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
        if lines >= n || child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn sweep_killed_with_sigkill_resumes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("s.toml"), SLOW_GRID).unwrap();
    let out = d.join("r.jsonl");
    let mut child = Command::new(BIN)
        .args(["--quiet", "sweep", "--config", "s.toml", "--out", "r.jsonl"])
        .current_dir(d)
        .spawn()
        .unwrap();
    wait_for_lines(&mut child, &out, 2);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Simulate the worst case: the kill landed in the middle of a write.
    let mut text = std::fs::read(&out).unwrap();
    let before = text.iter().filter(|&&b| b == b'\n').count();
    assert!(
        before < 12,
        "the sweep finished before the kill; make it slower"
    );
    text.extend_from_slice(b"{\"widealign_version\":\"0.1.0\",\"run_index\":7,\"rule\":\"al");
    std::fs::write(&out, &text).unwrap();
    let o = run_in(
        d,
        &[
            "sweep", "--config", "s.toml", "--out", "r.jsonl", "--resume", "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = last_json(&o);
    assert_eq!(s["skipped"], before);
    assert_eq!(s["completed"].as_u64().unwrap() as usize, 12 - before);
    assert!(stderr(&o).contains("torn last line"));
    assert_complete_and_unique(&out, 12);
}

#[test]
fn ctrl_c_stops_a_sweep_with_only_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("s.toml"), SLOW_GRID).unwrap();
    let out = d.join("r.jsonl");
    let mut child = Command::new(BIN)
        .args(["sweep", "--config", "s.toml", "--out", "r.jsonl"])
        .current_dir(d)
        .env("WIDEALIGN_PROGRESS", "log")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lines(&mut child, &out, 1);
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    // the run in progress saved its checkpoint: the documented requeue status
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("r.jsonl.checkpoints/run-"), "{err}");
    let n = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!(n < 12);
    assert_complete_and_unique(&out, n);
    let o = run_in(
        d,
        &[
            "sweep", "--config", "s.toml", "--out", "r.jsonl", "--resume", "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["resumed_from_checkpoint"], 1);
    assert!(stderr(&o).contains("continuing from the checkpoint"));
    assert_complete_and_unique(&out, 12);
}

/// A train run slow enough (a few seconds) to be killed mid-way.
const SLOW_TRAIN: &[&str] = &[
    "train",
    "--dataset",
    "digits",
    "--width",
    "384",
    "--epochs",
    "3",
    "--train-size",
    "800",
    "--batch-size",
    "8",
    "--rule",
    "align-ada",
    "--optimizer",
    "adam",
    "--lr",
    "0.002",
    "--json",
    "--quiet",
];

/// The record without timings.
fn timeless(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("seconds");
    for h in v["history"].as_array_mut().unwrap() {
        h.as_object_mut().unwrap().remove("seconds");
    }
    v
}

/// The training state in a checkpoint's metadata (read as any safetensors reader would).
fn checkpoint_state(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    serde_json::from_str(header["__metadata__"]["state"].as_str().unwrap()).unwrap()
}

/// The `steps` of the training state in a checkpoint.
fn checkpoint_steps(path: &Path) -> u64 {
    checkpoint_state(path)["steps"].as_u64().unwrap()
}

/// Sends `signals` (e.g. `["TERM"]`) to `child`, one shell `kill` each, microseconds apart, and
/// waits for its output.
fn signal_and_wait(child: std::process::Child, signals: &[&str]) -> Output {
    let pid = child.id();
    let script: Vec<String> = signals.iter().map(|s| format!("kill -{s} {pid}")).collect();
    assert!(Command::new("sh")
        .args(["-c", &script.join("; ")])
        .status()
        .unwrap()
        .success());
    child.wait_with_output().unwrap()
}

/// Starts `widealign args` in `dir` with progress as log lines and stdout and stderr captured.
fn spawn_in(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("WIDEALIGN_PROGRESS", "log")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the checkpoint `path` has reached `min_steps` steps; false if the child
/// exited first.
fn wait_for_checkpoint(child: &mut std::process::Child, path: &Path, min_steps: u64) -> bool {
    for _ in 0..6000 {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        // the file is replaced by rename, so a read sees one whole checkpoint
        if path.exists() && checkpoint_steps(path) >= min_steps {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    false
}

#[test]
fn train_killed_with_sigkill_at_random_steps_resumes_to_the_uninterrupted_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let whole = run_in(d, SLOW_TRAIN, &[]);
    assert_eq!(whole.status.code(), Some(0), "{}", stderr(&whole));
    let whole = timeless(last_json(&whole));
    let total = whole["steps"].as_u64().unwrap();
    // kill -9 once the checkpoint has passed pseudo-random steps (a fixed LCG: the same
    // points every time), each time resuming the killed run
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut positions = Vec::new();
    let ck = d.join("run.safetensors");
    let mut target = 0;
    for _ in 0..3 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        target += 20 + (state >> 33) % (total / 3 - 20);
        let mut args: Vec<&str> = SLOW_TRAIN.to_vec();
        args.extend([
            "--checkpoint",
            "run.safetensors",
            "--checkpoint-every",
            "10",
        ]);
        if ck.exists() {
            args.extend(["--resume", "run.safetensors"]);
        }
        let mut child = Command::new(BIN)
            .args(&args)
            .current_dir(d)
            .spawn()
            .unwrap();
        let reached = wait_for_checkpoint(&mut child, &ck, target);
        child.kill().unwrap(); // SIGKILL: no chance to save anything
        child.wait().unwrap();
        assert!(reached, "the run ended before step {target}");
        positions.push(checkpoint_steps(&ck));
    }
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]) && positions[2] < total,
        "kill points {positions:?} of {total} steps"
    );
    // the resumed run may repeat flags of the original run
    let o = run_in(
        d,
        &[
            "train",
            "--resume",
            "run.safetensors",
            "--width",
            "384",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        timeless(last_json(&o)),
        whole,
        "killed after steps {positions:?}"
    );
}

#[test]
fn sigterm_saves_a_checkpoint_and_exits_75_then_resume_finishes_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let whole = timeless(last_json(&run_in(d, SLOW_TRAIN, &[])));
    let mut args: Vec<&str> = SLOW_TRAIN.to_vec();
    args.retain(|a| *a != "--quiet");
    args.extend(["--checkpoint", "c.safetensors", "--checkpoint-every", "10"]);
    let mut child = spawn_in(d, &args);
    assert!(wait_for_checkpoint(
        &mut child,
        &d.join("c.safetensors"),
        50
    ));
    let o = signal_and_wait(child, &["TERM"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(err.contains("checkpoint saved to c.safetensors"), "{err}");
    assert!(err.contains("--resume c.safetensors"), "{err}");
    assert!(stdout(&o).is_empty(), "no record for an unfinished run");
    // saved at the step boundary after the signal
    let steps = checkpoint_steps(&d.join("c.safetensors"));
    assert!(steps >= 50 && steps < whole["steps"].as_u64().unwrap());
    let o = run_in(d, &["train", "--resume", "c.safetensors", "--json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        timeless(last_json(&o)),
        whole,
        "stopped after {steps} steps"
    );
}

/// An alignment experiment over two widths slow enough (a few seconds) to be stopped in its
/// second width.
const SLOW_ALIGN: &[&str] = &[
    "align",
    "--dataset",
    "digits",
    "--train-size",
    "1000",
    "--depth",
    "2",
    "--widths",
    "64,256",
    "--epochs",
    "2",
    "--lr",
    "0.5",
    "--batch-size",
    "2",
    "--json",
];

#[test]
fn align_stopped_by_sigterm_in_its_second_width_exits_75_and_resumes_to_the_same_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let whole = run_in(d, SLOW_ALIGN, &[]);
    assert_eq!(whole.status.code(), Some(0), "{}", stderr(&whole));
    let whole = last_json(&whole);
    let ck = d.join("a.safetensors");
    let mut args: Vec<&str> = SLOW_ALIGN.to_vec();
    args.extend(["--checkpoint", "a.safetensors", "--checkpoint-every", "10"]);
    let mut child = spawn_in(d, &args);
    // wait for the second width's run to pass step 50
    let mut reached = false;
    for _ in 0..10000 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if ck.exists() {
            let state = checkpoint_state(&ck);
            if state["config"]["width"] == 256 && state["steps"].as_u64().unwrap() >= 50 {
                reached = true;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let o = signal_and_wait(child, &["TERM"]);
    assert!(
        reached,
        "the experiment ended before width 256 passed step 50"
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(err.contains("checkpoint saved to a.safetensors"), "{err}");
    assert!(err.contains("--resume a.safetensors"), "{err}");
    assert!(
        stdout(&o).is_empty(),
        "no report for an unfinished experiment"
    );
    // the checkpoint holds the shadow beside the parameters, and the finished width's numbers
    let state = checkpoint_state(&ck);
    let ext: Value = serde_json::from_str(state["extension"]["state"].as_str().unwrap()).unwrap();
    assert_eq!(state["extension"]["name"], "align");
    assert_eq!(ext["widths"], serde_json::json!([64, 256]));
    assert_eq!(ext["done"].as_array().unwrap().len(), 1);
    assert!(state["extension"]["tensors"]
        .as_array()
        .unwrap()
        .contains(&Value::from("shadow.layer2.weight")));
    // other widths are refused; the flags alone continue it
    assert_bad_input(
        &run_in(
            d,
            &["align", "--resume", "a.safetensors", "--widths", "64,512"],
            &[],
        ),
        "--widths",
    );
    assert_bad_input(
        &run_in(d, &["train", "--resume", "a.safetensors"], &[]),
        "widealign align",
    );
    let o = run_in(d, &["align", "--resume", "a.safetensors", "--json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("width 64 (from the checkpoint)"));
    assert!(stderr(&o).contains("width 256 continues from the checkpoint"));
    assert_eq!(last_json(&o), whole);
}

#[test]
fn a_second_signal_exits_at_once_with_130() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // a wide network: saving its checkpoint after the first signal takes a while
    let mut args: Vec<&str> = SLOW_TRAIN
        .iter()
        .map(|&a| if a == "384" { "2048" } else { a })
        .filter(|&a| a != "--quiet")
        .collect();
    args.extend(["--checkpoint", "c.safetensors", "--checkpoint-every", "10"]);
    let mut child = spawn_in(d, &args);
    assert!(wait_for_checkpoint(
        &mut child,
        &d.join("c.safetensors"),
        10
    ));
    // two different signals (the same one twice may merge into one pending signal), sent
    // microseconds apart by one shell
    let o = signal_and_wait(child, &["TERM", "INT"]);
    let err = stderr(&o);
    // the first signal alone would save the checkpoint and exit 75
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("signal again to quit now"), "{err}");
    assert_eq!(err.lines().last(), Some("widealign: interrupted"), "{err}");
    assert!(!err.contains("checkpoint saved"), "{err}");
    assert!(stdout(&o).is_empty());
    // whatever the exit interrupted, the checkpoint on disk is a whole one
    assert!(checkpoint_steps(&d.join("c.safetensors")) >= 10);
}

/// FNV-1a-64 over bytes (the safetensors checksum of widealign).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `good` with the metadata entry `"key":"from"` replaced by `"key":"to"` (same length) and the
/// checksum fixed up: a valid file that says something else.
fn rewrite_metadata(good: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&good[8..8 + n]).unwrap();
    assert!(header.contains(from), "{header}");
    let header = header.replacen(from, to, 1);
    let at = header.find("fnv1a64:").unwrap() + "fnv1a64:".len();
    let zeroed = format!("{}{}{}", &header[..at], "0".repeat(16), &header[at + 16..]);
    let mut hashed = zeroed.clone().into_bytes();
    hashed.extend_from_slice(&good[8 + n..]);
    let sum = format!("{:016x}", fnv1a64(&hashed));
    let fixed = format!("{}{sum}{}", &header[..at], &header[at + 16..]);
    let mut out = good[..8].to_vec();
    out.extend_from_slice(fixed.as_bytes());
    out.extend_from_slice(&good[8 + n..]);
    out
}

#[test]
fn a_checkpoint_of_another_version_exits_2_naming_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args = [
        "train",
        "--width",
        "16",
        "--epochs",
        "1",
        "--train-size",
        "100",
        "--batch-size",
        "20",
        "--checkpoint",
        "c.st",
        "--quiet",
    ];
    let o = run_in(d, &args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let good = std::fs::read(d.join("c.st")).unwrap();
    // the unchanged rewrite is still a good file: the fix-up is the real checksum
    std::fs::write(
        d.join("same.st"),
        rewrite_metadata(&good, "\"version\":\"1\"", "\"version\":\"1\""),
    )
    .unwrap();
    let o = run_in(d, &["train", "--resume", "same.st", "--json"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    std::fs::write(
        d.join("v9.st"),
        rewrite_metadata(&good, "\"version\":\"1\"", "\"version\":\"9\""),
    )
    .unwrap();
    for cmd in ["train", "align"] {
        let o = run_in(d, &[cmd, "--resume", "v9.st"], &[]);
        assert_bad_input(&o, "checkpoint version \"9\" is not supported");
        assert!(stderr(&o).contains("v9.st"), "{}", stderr(&o));
    }
}

#[test]
fn untrusted_checkpoints_and_disagreeing_flags_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run_in(
        d,
        &[
            "train",
            "--width",
            "16",
            "--epochs",
            "2",
            "--train-size",
            "100",
            "--batch-size",
            "20",
            "--checkpoint",
            "c.st",
            "--quiet",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let good = std::fs::read(d.join("c.st")).unwrap();
    std::fs::write(d.join("cut.st"), &good[..good.len() - 3]).unwrap();
    let mut flipped = good.clone();
    let at = good.len() - 50;
    flipped[at] ^= 0x10;
    std::fs::write(d.join("flip.st"), &flipped).unwrap();
    std::fs::write(d.join("text.st"), "not a checkpoint").unwrap();
    for (file, needle) in [
        ("cut.st", "truncated"),
        ("flip.st", "checksum"),
        ("text.st", "cut.st"),
        ("missing.st", "--resume"),
    ] {
        let needle = if file == "text.st" { "text.st" } else { needle };
        assert_bad_input(&run_in(d, &["train", "--resume", file], &[]), needle);
    }
    assert_bad_input(
        &run_in(d, &["train", "--resume", "c.st", "--rule", "fa"], &[]),
        "--rule: fa differs from the checkpoint's bp",
    );
    assert_bad_input(
        &run_in(d, &["train", "--resume", "c.st", "--epochs", "1"], &[]),
        "--epochs",
    );
    assert_bad_input(
        &run_in(
            d,
            &["train", "--resume", "c.st", "--dataset", "teacher"],
            &[],
        ),
        "--dataset",
    );
    // a finished run's checkpoint gives its record again; a longer run continues it
    let o = run_in(
        d,
        &["train", "--resume", "c.st", "--epochs", "3", "--json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["epochs_completed"], 3);
    assert_bad_input(
        &run_in(
            d,
            &["train", "--checkpoint-every", "0", "--checkpoint", "x.st"],
            &[],
        ),
        "--checkpoint-every",
    );
    assert_bad_input(
        &run_in(d, &["train", "--checkpoint", "nodir/x.st"], &[]),
        "--checkpoint",
    );
}

#[test]
fn dynamics_json_contract() {
    let o = run(&[
        "dynamics",
        "--dataset",
        "teacher",
        "--train-size",
        "16",
        "--depth",
        "1",
        "--activation",
        "erf",
        "--widths",
        "32,128",
        "--steps",
        "20",
        "--lr",
        "0.1",
        "--seed",
        "0",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["widths"], serde_json::json!([32, 128]));
    for k in ["weight_norm", "weight_direction"] {
        let per_width = v["errors"][k].as_array().unwrap();
        assert_eq!(per_width.len(), 2);
        assert_eq!(
            per_width[0].as_array().unwrap().len(),
            2,
            "{k}: one entry per layer"
        );
    }
    assert_eq!(v["errors"]["function"].as_array().unwrap().len(), 2);
    for k in ["weight_norm", "weight_direction", "function"] {
        assert!(v["slopes"][k].is_number(), "slope {k}");
    }
    // an unstable learning rate is refused with one line naming the flag
    let o = run(&[
        "dynamics",
        "--dataset",
        "teacher",
        "--train-size",
        "16",
        "--depth",
        "1",
        "--widths",
        "32",
        "--steps",
        "5",
        "--lr",
        "1000",
    ]);
    assert_bad_input(&o, "--lr");
    let o = run(&[
        "dynamics",
        "--model",
        "rnn",
        "--dataset",
        "digits",
        "--widths",
        "32",
    ]);
    assert_bad_input(&o, "--dataset");
    let o = run(&[
        "dynamics",
        "--model",
        "mlp",
        "--dataset",
        "add",
        "--widths",
        "32",
    ]);
    assert_bad_input(&o, "--dataset");
}

/// `dynamics --model rnn` needs no flag but the widths (the sequence teacher task and its
/// learning rate are the defaults) and prints the MLP form's JSON with one `layers` entry per
/// weight matrix.
#[test]
fn rnn_dynamics_json_contract() {
    let o = run(&[
        "dynamics",
        "--model",
        "rnn",
        "--activation",
        "erf",
        "--widths",
        "16,32",
        "--steps",
        "10",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["model"], "rnn");
    assert_eq!(v["lr"], 0.25);
    assert_eq!(v["seq_len"], 6);
    assert_eq!(v["train_size"], 32);
    for k in ["weight_norm", "weight_direction", "function"] {
        assert!(v["slopes"][k].is_number(), "slope {k}");
    }
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["w_in", "w_rec", "w_out"]);
    for l in layers {
        for k in ["weight_norm", "weight_direction", "predicted_weight_norm"] {
            assert_eq!(
                l[k].as_array().unwrap().len(),
                2,
                "{k}: one entry per width"
            );
        }
        assert!(l["slopes"]["weight_direction"].is_number());
    }
    assert_eq!(v["errors"]["weight_norm"][0].as_array().unwrap().len(), 3);
}

/// Every layer of an `align --json` report: numbered from 1, and each score, control and
/// input-span fraction one number in [0, 1] per width.
fn assert_layer_scores(layers: &[Value], widths: usize) {
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(l["layer"], i + 1);
        for k in ["score", "probe_score", "shuffled", "random", "input_span"] {
            let xs = l[k].as_array().unwrap();
            assert_eq!(xs.len(), widths, "{k}");
            for x in xs {
                let x = x.as_f64().unwrap();
                assert!((-1e-9..=1.0 + 1e-9).contains(&x), "{k} = {x}");
            }
        }
    }
}

#[test]
fn align_json_contract() {
    let o = run(&[
        "align",
        "--dataset",
        "digits",
        "--rule",
        "bp",
        "--depth",
        "1",
        "--widths",
        "16,32",
        "--epochs",
        "1",
        "--lr",
        "1.0",
        "--seed",
        "0",
        "--train-size",
        "100",
        "--batch-size",
        "50",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["widths"], serde_json::json!([16, 32]));
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_layer_scores(layers, 2);
    let o = run(&["align", "--dataset", "add", "--widths", "8"]);
    assert_bad_input(&o, "--dataset");
}

#[test]
fn align_rnn_json_contract() {
    let o = run(&[
        "align",
        "--model",
        "rnn",
        "--dataset",
        "add",
        "--rule",
        "bp",
        "--widths",
        "8,16",
        "--epochs",
        "2",
        "--lr",
        "0.001",
        "--train-size",
        "20",
        "--batch-size",
        "10",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["widths"], serde_json::json!([8, 16]));
    assert_eq!(v["rule"], "bp");
    assert_eq!(v["diverged"], serde_json::json!([false, false]));
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["w_in", "w_rec", "w_out"]);
    assert_layer_scores(layers, 2);
    // an RNN needs a sequence task
    let o = run(&[
        "align",
        "--model",
        "rnn",
        "--dataset",
        "digits",
        "--widths",
        "8",
    ]);
    assert_bad_input(&o, "--dataset");
}

#[test]
fn align_cnn_json_contract_per_conv_layer() {
    let o = run(&[
        "align",
        "--model",
        "cnn",
        "--dataset",
        "digits",
        "--channels",
        "4,16",
        "--conv-layers",
        "2",
        "--kernel",
        "3",
        "--epochs",
        "1",
        "--lr",
        "0.5",
        "--train-size",
        "100",
        "--batch-size",
        "50",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["widths"], serde_json::json!([4, 16]));
    assert_eq!(v["channels"], serde_json::json!([4, 16]));
    assert_eq!(v["diverged"], serde_json::json!([false, false]));
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["conv1", "conv2", "readout"]);
    assert_layer_scores(layers, 2);
    // the table names the axis
    let o = run(&[
        "align",
        "--model",
        "cnn",
        "--channels",
        "4",
        "--conv-layers",
        "1",
        "--epochs",
        "1",
        "--train-size",
        "50",
        "--batch-size",
        "50",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("layer 1 (conv1)") && out.contains("channels"),
        "{out}"
    );
    // a channel list is for align; --channels is for the cnn
    let o = run(&[
        "train",
        "--model",
        "cnn",
        "--channels",
        "4,8",
        "--epochs",
        "1",
    ]);
    assert_bad_input(&o, "--channels: takes one channel count");
    let o = run(&["align", "--channels", "4", "--widths", "8"]);
    assert_bad_input(&o, "--channels: applies to --model cnn only");
    let o = run(&[
        "align",
        "--model",
        "cnn",
        "--dataset",
        "add",
        "--channels",
        "4",
    ]);
    assert_bad_input(&o, "--dataset");
    // dynamics names what it supports
    let o = run(&["dynamics", "--model", "cnn", "--widths", "8"]);
    assert_bad_input(&o, "--model: dynamics supports --model mlp and --model rnn");
}

#[test]
fn bench_step_and_ntk_json_contracts() {
    let o = run(&[
        "bench",
        "step",
        "--model",
        "mlp",
        "--input-dim",
        "20",
        "--output-dim",
        "3",
        "--width",
        "16",
        "--depth",
        "1",
        "--batch-size",
        "8",
        "--rule",
        "align-ada",
        "--steps",
        "3",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    for k in ["step_ms_median", "step_ms_min", "samples_per_s"] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert_eq!(v["steps"], 3);
    let o = run(&[
        "bench",
        "ntk",
        "--n",
        "20",
        "--input-dim",
        "5",
        "--depth",
        "2",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(last_json(&o)["seconds"].as_f64().unwrap() >= 0.0);
    let o = run(&["bench", "step", "--steps", "0"]);
    assert_bad_input(&o, "--steps");
}

#[test]
fn reproduce_tiny_writes_results_report_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run_in(
        d,
        &["reproduce", "--scale", "tiny", "--out", "rep", "--json"],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["plots"], 11);
    let lines = lines_of(&d.join("rep/results.jsonl"));
    assert_eq!(lines.len(), v["lines"].as_u64().unwrap() as usize);
    for e in [
        "accuracy_vs_width",
        "add_task",
        "low_data",
        "alignment",
        "rnn_alignment",
        "dynamics",
        "rnn_dynamics",
        "cnn_accuracy_vs_channels",
        "cnn_alignment",
        "limit",
    ] {
        assert!(lines.iter().any(|l| l["experiment"] == e), "no {e} line");
    }
    // the infinite-width lines are `widealign predict` with the runs' settings
    let limits: Vec<&Value> = lines
        .iter()
        .filter(|l| l["experiment"] == "limit")
        .collect();
    assert_eq!(limits.len(), 2);
    for l in &limits {
        let (s, p) = (&l["settings"], &l["prediction"]);
        let time = match p["time_steps"].as_f64() {
            None => "inf".to_string(),
            Some(t) => t.to_string(),
        };
        let o = run_in(
            d,
            &[
                "predict",
                "--dataset",
                s["dataset"].as_str().unwrap(),
                "--train-size",
                &s["train_size"].to_string(),
                "--seed",
                &s["seed"].to_string(),
                "--depth",
                &s["depth"].to_string(),
                "--activation",
                s["activation"].as_str().unwrap(),
                "--w-std",
                &s["w_std"].to_string(),
                "--b-std",
                &s["b_std"].to_string(),
                "--zero-bias-init",
                "--lr",
                &s["lr"].to_string(),
                "--time",
                &time,
                "--diag-reg",
                &s["diag_reg"].to_string(),
                "--precision",
                s["precision"].as_str().unwrap(),
                "--json",
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v = last_json(&o);
        for k in ["test_accuracy", "test_mse", "n_train", "n_test", "ridge"] {
            assert_eq!(v[k], p[k], "{k} of {time}");
        }
        assert_eq!(v["solver"], p["solver"]);
    }
    let runs: Vec<&Value> = lines.iter().filter(|l| l.get("config").is_some()).collect();
    // MLP accuracy, Add task, low data, then the CNN's 7 rules × 2 channel counts
    assert_eq!(runs.len(), 14 + 8 + 14 + 14);
    for r in &runs {
        for k in RECORD_KEYS {
            assert!(r.get(k).is_some(), "missing {k}");
        }
    }
    let md = std::fs::read_to_string(d.join("rep/report.md")).unwrap();
    let mut svgs = 0;
    for part in md.split("](").skip(1) {
        let file = part.split(')').next().unwrap();
        assert!(d.join("rep").join(file).exists(), "{file} missing");
        let svg = std::fs::read_to_string(d.join("rep").join(file)).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        svgs += 1;
    }
    assert_eq!(svgs, 11);
    // Existing results are refused without --resume; with it nothing is rerun.
    let o = run_in(d, &["reproduce", "--scale", "tiny", "--out", "rep"], &[]);
    assert_bad_input(&o, "--resume");
    let o = run_in(
        d,
        &[
            "reproduce",
            "--scale",
            "tiny",
            "--out",
            "rep",
            "--resume",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(lines_of(&d.join("rep/results.jsonl")).len(), lines.len());
    let o = run_in(d, &["reproduce", "--dataset", "mnist", "--out", "x"], &[]);
    assert_bad_input(&o, "--dataset");
}

/// `--seeds K` runs every cell K times and the report shows intervals; K = 0 is refused.
#[test]
fn reproduce_with_seeds_reports_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run_in(
        d,
        &[
            "reproduce",
            "--scale",
            "tiny",
            "--seeds",
            "2",
            "--out",
            "rep",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines = lines_of(&d.join("rep/results.jsonl"));
    let runs: Vec<&Value> = lines.iter().filter(|l| l.get("config").is_some()).collect();
    assert_eq!(runs.len(), 2 * (14 + 8 + 14 + 14));
    for seed in [0, 1] {
        assert_eq!(
            runs.iter().filter(|r| r["config"]["seed"] == seed).count(),
            14 + 8 + 14 + 14
        );
    }
    let md = std::fs::read_to_string(d.join("rep/report.md")).unwrap();
    assert!(md.contains("seeds per cell: 2 (from seed 0)"), "{md}");
    assert!(md.contains(" ± "), "no interval in the report");
    assert!(md.contains("*Reading* (2 seeds per cell"), "{md}");
    let o = run_in(
        d,
        &["reproduce", "--scale", "tiny", "--seeds", "0", "--out", "x"],
        &[],
    );
    assert_bad_input(&o, "--seeds");
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut args = vec!["train", "--rule", "align-ada", "--json"];
    args.extend(TINY);
    let one = run_in(Path::new("."), &args, &[("RAYON_NUM_THREADS", "1")]);
    let two = run_in(Path::new("."), &args, &[("RAYON_NUM_THREADS", "2")]);
    let (a, b) = (last_json(&one), last_json(&two));
    assert_eq!(a["test_loss"], b["test_loss"]);
    let strip = |v: &Value| -> Vec<Value> {
        v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| serde_json::json!([e["train_loss"], e["test_loss"], e["test_accuracy"]]))
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
}

/// The keys `train --json` printed before its record was built on the rules crate's
/// `TrainResult` (captured from that binary, commit 0fac277): the record may add keys, never
/// lose one.
const TRAIN_KEYS_BEFORE: [&str; 22] = [
    "widealign_version",
    "rule",
    "model",
    "dataset",
    "width",
    "depth",
    "seed",
    "epochs",
    "epochs_completed",
    "train_examples",
    "steps",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "best_test_loss",
    "best_epoch",
    "best_test_accuracy",
    "diverged",
    "diverged_epoch",
    "seconds",
    "history",
    "config",
];

/// The keys of one history entry before.
const HISTORY_KEYS_BEFORE: [&str; 5] = [
    "epoch",
    "train_loss",
    "test_loss",
    "test_accuracy",
    "seconds",
];

/// The config's keys before: the run identity, which must not change at all.
const CONFIG_KEYS_BEFORE: [&str; 15] = [
    "model",
    "dataset",
    "rule",
    "depth",
    "width",
    "activation",
    "param",
    "optimizer",
    "lr",
    "batch_size",
    "epochs",
    "train_size",
    "w_std",
    "b_std",
    "seed",
];

fn keys(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Compares a record's keys with the keys before: a superset at the top level and in every
/// history entry, the same config keys in the same order.
fn assert_keys_kept(v: &Value, extra: &[&str]) {
    let before: std::collections::BTreeSet<String> = TRAIN_KEYS_BEFORE
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    let now = keys(v);
    let lost: Vec<&String> = before.difference(&now).collect();
    assert!(lost.is_empty(), "keys lost: {lost:?}");
    for h in v["history"].as_array().unwrap() {
        let now = keys(h);
        for k in HISTORY_KEYS_BEFORE {
            assert!(now.contains(k), "history lost {k}");
        }
    }
    let config: Vec<&String> = v["config"].as_object().unwrap().keys().collect();
    let mut sorted = CONFIG_KEYS_BEFORE.to_vec();
    sorted.sort_unstable();
    // serde_json's map in these tests sorts keys; the order is checked on the raw line below
    assert_eq!(config, sorted);
}

#[test]
fn record_keys_are_a_superset_of_the_keys_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for lr in ["1", "1e6"] {
        // a normal run and a diverged one
        let mut args = vec!["train", "--json", "--lr", lr];
        args.extend(TINY);
        let o = run_in(d, &args, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v = last_json(&o);
        assert_keys_kept(&v, &[]);
        // the identity is written in the field order of the flags, as before
        let line = stdout(&o);
        let raw = line.lines().last().unwrap();
        let at = |k: &str| raw.rfind(&format!("\"{k}\":")).unwrap();
        for w in CONFIG_KEYS_BEFORE.windows(2) {
            assert!(at(w[0]) < at(w[1]), "{} before {}", w[0], w[1]);
        }
    }
    std::fs::write(d.join("s.toml"), REAL_GRID).unwrap();
    let o = run_in(d, &["sweep", "--config", "s.toml", "--out", "r.jsonl"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for v in lines_of(&d.join("r.jsonl")) {
        assert_keys_kept(&v, &["run_index"]);
    }
}

/// Copies `docs/reproduction/<sub>results.jsonl` into a fresh folder and resumes the
/// reproduction there: every run is found by its identity, so nothing trains (the command
/// would take minutes otherwise; it is killed after 60 s), the file is untouched and the
/// report is rebuilt.
fn report_published(sub: &str, dataset: &str, lines: u64, plots: u64) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let published = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/reproduction")
        .join(sub)
        .join("results.jsonl");
    let before = std::fs::read(&published).unwrap();
    std::fs::create_dir(d.join("rep")).unwrap();
    std::fs::write(d.join("rep/results.jsonl"), &before).unwrap();
    let o = run_in(
        d,
        &[
            "--quiet",
            "reproduce",
            "--dataset",
            dataset,
            "--out",
            "rep",
            "--report-only",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["lines"], lines);
    assert_eq!(v["plots"], plots);
    assert_eq!(std::fs::read(d.join("rep/results.jsonl")).unwrap(), before);
    let md = std::fs::read_to_string(d.join("rep/report.md")).unwrap();
    // every training run of the plan is in the published file (run identities are stable);
    // sections 4 and 6 may show `–` for the control the published lines predate
    let training = md.split("## 4.").next().unwrap();
    assert!(
        !training.contains("| – |"),
        "a published run is missing from the report"
    );
    // the digits file holds the CNN group too (the Fashion-MNIST file predates it)
    if dataset == "digits" {
        let cnn = md.split("## 8. CNN").nth(1).expect("the CNN section");
        assert!(
            !cnn.contains("| – |"),
            "a published CNN run is missing: {cnn}"
        );
    }
}

/// The published results render into a report without running anything; every training-group
/// run of the current plan is among them. (The published Fashion-MNIST file predates the
/// alignment runs at the reference's settings; they join it when it is regenerated.)
/// Lines of the published digits results: the quick plan with 3 seeds (195 lines of the MLP
/// and RNN groups, then the CNN group's 63 training runs and 9 alignment runs, then the two
/// infinite-width predictions, computed once, not per seed; each group appended by resume).
const DIGITS_LINES: u64 = 269;

/// Resuming the published digits results (the quick plan with 3 seeds) trains nothing: the file
/// is left byte for byte as it was (a missing run would be trained and appended).
#[test]
fn published_digits_results_resume_without_training() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let published =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reproduction/results.jsonl");
    let before = std::fs::read(&published).unwrap();
    std::fs::create_dir(d.join("rep")).unwrap();
    std::fs::write(d.join("rep/results.jsonl"), &before).unwrap();
    let o = run_in(
        d,
        &[
            "--quiet",
            "reproduce",
            "--seeds",
            "3",
            "--out",
            "rep",
            "--resume",
            "--json",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(last_json(&o)["lines"], DIGITS_LINES);
    assert_eq!(std::fs::read(d.join("rep/results.jsonl")).unwrap(), before);
}

#[test]
fn published_results_render_without_training() {
    report_published("", "digits", DIGITS_LINES, 11);
    report_published("fashion-mnist", "fashion-mnist", 62, 11);
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(
        dir.path(),
        &["reproduce", "--out", "none", "--report-only"],
        &[],
    );
    assert_bad_input(&o, "--report-only");
    let o = run_in(dir.path(), &["reproduce", "--resume", "--report-only"], &[]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn predict_json_contract_kernel_file_round_trip_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let base = [
        "predict",
        "--dataset",
        "digits",
        "--train-size",
        "300",
        "--depth",
        "2",
    ];
    let o = run_in(d, &[&base[..], &["--json"]].concat(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    for key in [
        "test_accuracy",
        "test_mse",
        "seconds",
        "n_train",
        "n_test",
        "kernel",
        "time",
        "precision",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["n_train"], 300);
    assert_eq!(v["time"], "inf");
    assert_eq!(v["precision"], "f32");
    assert!(v["test_accuracy"].as_f64().unwrap() > 0.85, "{v}");
    // the same kernel through .npy files gives the same predictions
    let o = run_in(
        d,
        &[
            "ntk",
            "--dataset",
            "digits",
            "--train-size",
            "300",
            "--depth",
            "2",
            "--out",
            "K.npy",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(d.join("K.npy").is_file() && d.join("K.test.npy").is_file());
    let o = run_in(
        d,
        &[&base[..], &["--kernel-file", "K.npy", "--json"]].concat(),
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let f = last_json(&o);
    assert_eq!(f["test_accuracy"], v["test_accuracy"]);
    let (a, b) = (
        f["test_mse"].as_f64().unwrap(),
        v["test_mse"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-6 * b, "{a} {b}");
    // a kernel file for another training set, a broken file, a finite time with a file
    let o = run_in(
        d,
        &[
            "predict",
            "--dataset",
            "digits",
            "--train-size",
            "200",
            "--kernel-file",
            "K.npy",
        ],
        &[],
    );
    assert_bad_input(&o, "K.npy");
    std::fs::write(d.join("bad.npy"), b"\x93NUMPY\x01\x00\xff\xff{").unwrap();
    let o = run_in(d, &[&base[..], &["--kernel-file", "bad.npy"]].concat(), &[]);
    assert_bad_input(&o, "bad.npy");
    let o = run_in(
        d,
        &[&base[..], &["--kernel-file", "K.npy", "--time", "10"]].concat(),
        &[],
    );
    assert_bad_input(&o, "--kernel-file");
    let o = run_in(d, &[&base[..], &["--time", "soon"]].concat(), &[]);
    assert_bad_input(&o, "--time");
    // a run over the memory budget is refused before any work, saying what would fit
    let o = run_in(
        d,
        &["predict", "--dataset", "digits", "--memory-limit", "0.08"],
        &[],
    );
    assert_bad_input(&o, "refused");
    let msg = stderr(&o);
    assert!(
        msg.contains("--train-size") && msg.contains("0.08 GB"),
        "{msg}"
    );
    let fits: usize = msg
        .split("--train-size ")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{msg}"));
    let ok = run_in(
        d,
        &[
            "predict",
            "--dataset",
            "digits",
            "--memory-limit",
            "0.08",
            "--train-size",
            &fits.to_string(),
            "--json",
        ],
        &[],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
}

#[test]
fn predict_finite_time_and_variance() {
    let o = run(&[
        "predict",
        "--dataset",
        "digits",
        "--train-size",
        "200",
        "--depth",
        "2",
        "--kernel",
        "nngp",
        "--time",
        "50",
        "--lr",
        "0.5",
        "--variance",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = last_json(&o);
    assert_eq!(v["time"], 50.0);
    assert_eq!(v["precision"], "f64");
    assert_eq!(v["solver"], "eigendecomposition");
    assert!(v["mean_variance"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn requests_that_cannot_fit_are_refused_with_the_estimate_against_available_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run_in(d, &["train", "--width", "10000000"], &[]);
    assert_bad_input(&o, "width 10000000");
    let err = stderr(&o);
    assert!(
        err.contains("needs about 800.1 TB") && err.contains("MemAvailable"),
        "{err}"
    );
    std::fs::write(
        d.join("g.toml"),
        "[grid]\nwidth = [64, 3000000]\n[base]\nepochs = 1\n",
    )
    .unwrap();
    assert_bad_input(
        &run_in(d, &["sweep", "--config", "g.toml", "--out", "r.jsonl"], &[]),
        "width 3000000",
    );
    assert!(!d.join("r.jsonl").exists(), "refused before the first run");
    assert_bad_input(
        &run_in(d, &["align", "--widths", "64,2000000"], &[]),
        "shadow accumulator",
    );
    assert_bad_input(
        &run_in(
            d,
            &[
                "dynamics",
                "--dataset",
                "teacher",
                "--train-size",
                "64",
                "--widths",
                "64,5000000",
            ],
            &[],
        ),
        "dynamics (widths up to 5000000",
    );
    std::fs::write(d.join("x.csv"), "0.5\n".repeat(200_000)).unwrap();
    assert_bad_input(
        &run_in(d, &["ntk", "--inputs", "x.csv", "--json"], &[]),
        "--inputs: ntk (200000 inputs) needs about",
    );
}

/// Writes an IDX folder of 2x2 images whose training labels are `labels`.
fn write_idx(dir: &Path, labels: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let images = |n: usize| {
        let mut b = vec![0, 0, 8, 3];
        for d in [n as u32, 2, 2] {
            b.extend(d.to_be_bytes());
        }
        b.extend((0..n * 4).map(|i| (i * 37 % 256) as u8));
        b
    };
    let label_file = |l: &[u8]| {
        let mut b = vec![0, 0, 8, 1];
        b.extend((l.len() as u32).to_be_bytes());
        b.extend(l);
        b
    };
    std::fs::write(dir.join("train-images-idx3-ubyte"), images(labels.len())).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), label_file(labels)).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images(4)).unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte"),
        label_file(&[0, 1, 2, 3]),
    )
    .unwrap();
}

#[test]
fn idx_labels_that_leave_classes_empty_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut labels: Vec<u8> = (0..10).cycle().take(30).collect();
    labels.push(37);
    write_idx(&d.join("sparse"), &labels);
    let args = [
        "train",
        "--dataset",
        "idx:sparse",
        "--width",
        "8",
        "--epochs",
        "1",
        "--json",
    ];
    let o = run_in(d, &args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "warning: idx:sparse: 27 of its 38 classes have no training example (labels 10, 11, 12"
        ),
        "{err}"
    );
    write_idx(
        &d.join("dense"),
        &(0..10).cycle().take(30).collect::<Vec<u8>>(),
    );
    let o = run_in(
        d,
        &[
            "train",
            "--dataset",
            "idx:dense",
            "--width",
            "8",
            "--epochs",
            "1",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[test]
fn ntk_cnn_json_contract_and_bad_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // three 2×3 images with 2 channels (HWC), the second twice the first
    std::fs::write(
        d.join("img.csv"),
        "1,0,0.5,-0.5,0,1,0.2,0.1,0,0,-1,0.3\n\
         2,0,1,-1,0,2,0.4,0.2,0,0,-2,0.6\n\
         0,0,2,1,0.3,0.3,-1,1,0.5,0.5,0,-0.2\n",
    )
    .unwrap();
    let args = |readout: &'static str, act: &'static str| {
        vec![
            "ntk",
            "--model",
            "cnn",
            "--inputs",
            "img.csv",
            "--image",
            "2,3,2",
            "--conv-layers",
            "2",
            "--kernel",
            "3",
            "--readout",
            readout,
            "--activation",
            act,
            "--w-std",
            "1.3",
            "--b-std",
            "0.2",
            "--json",
        ]
    };
    for readout in ["gap", "flatten"] {
        for act in ["relu", "erf", "identity"] {
            let o = run_in(d, &args(readout, act), &[]);
            assert_eq!(o.status.code(), Some(0), "{readout} {act}: {}", stderr(&o));
            let v = last_json(&o);
            for key in ["nngp", "ntk"] {
                let m = v[key].as_array().unwrap();
                assert_eq!(m.len(), 3);
                for i in 0..3 {
                    for j in 0..3 {
                        assert_eq!(m[i][j], m[j][i], "{readout} {act} {key} symmetric");
                    }
                }
            }
            assert!(v["ntk"][0][0].as_f64().unwrap() > v["nngp"][0][0].as_f64().unwrap());
        }
    }
    // relu is positively homogeneous: without biases, twice the image gives twice the kernel
    let mut zero_bias = args("gap", "relu");
    zero_bias[18] = "0";
    let v = last_json(&run_in(d, &zero_bias, &[]));
    let (k00, k01) = (
        v["ntk"][0][0].as_f64().unwrap(),
        v["ntk"][0][1].as_f64().unwrap(),
    );
    assert!((k01 - 2.0 * k00).abs() < 1e-12 * k01, "{k00} {k01}");
    // the readouts differ
    let gap = last_json(&run_in(d, &args("gap", "relu"), &[]));
    let flat = last_json(&run_in(d, &args("flatten", "relu"), &[]));
    assert_ne!(gap["ntk"], flat["ntk"]);
    let mut wrong = args("gap", "relu");
    wrong[6] = "3,3,2";
    assert_bad_input(
        &run_in(d, &wrong, &[]),
        "img.csv: rows have 12 numbers, but --image 3,3,2 needs 18",
    );
    let o = run_in(d, &["ntk", "--model", "cnn", "--inputs", "img.csv"], &[]);
    assert_bad_input(&o, "--image");
    let mut bad = args("gap", "relu");
    bad[6] = "2,3";
    assert_eq!(run_in(d, &bad, &[]).status.code(), Some(2));
    let mut zero = args("gap", "relu");
    zero[8] = "0";
    assert_bad_input(&run_in(d, &zero, &[]), "--conv-layers");
    let o = run_in(d, &["ntk", "--inputs", "img.csv", "--image", "2,3,2"], &[]);
    assert_bad_input(&o, "--image: applies to --model cnn only");
}

/// The published Fashion-MNIST headline (docs/reproduction.md, "Headline runs with spread"):
/// every rule at width 1024 with seeds 0, 1 and 2, nothing diverged, and each seed-0 run is the
/// published single-seed run of the Fashion-MNIST report (same history, bit for bit).
#[test]
fn published_fashion_headline_has_three_seeds_per_rule_and_its_seed_0_is_the_report() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reproduction/fashion-mnist");
    let lines = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let headline = lines("headline_1024.jsonl");
    let report = lines("results.jsonl");
    assert_eq!(headline.len(), 21);
    for rule in [
        "bp",
        "align-zero",
        "align-ada",
        "align-prop",
        "fa",
        "dfa",
        "readout",
    ] {
        let mut seeds: Vec<u64> = Vec::new();
        for h in headline.iter().filter(|h| h["rule"] == rule) {
            assert_eq!(
                (h["width"].as_u64(), h["diverged"].as_bool()),
                (Some(1024), Some(false))
            );
            assert_eq!(h["dataset"], "fashion-mnist");
            seeds.push(h["seed"].as_u64().unwrap());
            if h["seed"] == 0 {
                let published = report
                    .iter()
                    .find(|r| {
                        r["experiment"] == "accuracy_vs_width"
                            && r["rule"] == rule
                            && r["width"] == 1024
                    })
                    .unwrap();
                assert_eq!(h["history"], published["history"], "{rule}");
                assert_eq!(h["test_accuracy"], published["test_accuracy"], "{rule}");
            }
        }
        seeds.sort_unstable();
        assert_eq!(seeds, [0, 1, 2], "{rule}");
    }
}
