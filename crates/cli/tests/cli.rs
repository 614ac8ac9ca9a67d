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
