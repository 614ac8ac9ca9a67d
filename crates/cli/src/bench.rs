//! `widealign bench`: throughput measurements on this machine (no timing is asserted anywhere).

use std::time::Instant;

use serde_json::json;
use widealign_tensor::{gemm, rng::SeedStream, Mat};

use std::sync::atomic::AtomicBool;

use widealign_data::{Dataset, Sequences, Split, Tabular, Task};
use widealign_rules as rules;

use widealign_rules::ModelKind;

use crate::cli::{BenchCheckpointArgs, BenchGemmArgs, BenchStepArgs};
use crate::config;
use crate::emit;
use crate::error::CliError;
use widealign_rules::TrainConfig;

/// Median of a non-empty list.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// `bench gemm`: `C = A·B` for `n × n` f32 matrices, one warm-up then `reps` timed products.
pub fn gemm(a: &BenchGemmArgs) -> Result<(), CliError> {
    if a.n == 0 || a.n > 16384 {
        return Err(CliError::flag("--n", "must be between 1 and 16384"));
    }
    if a.reps == 0 {
        return Err(CliError::flag("--reps", "must be at least 1"));
    }
    let seeds = SeedStream::new(0).child("bench-gemm");
    let x: Mat<f32> = seeds.gaussian_matrix("a", a.n, a.n, 1.0);
    let y: Mat<f32> = seeds.gaussian_matrix("b", a.n, a.n, 1.0);
    let mut c = gemm::matmul(&x, &y);
    let mut secs = Vec::with_capacity(a.reps);
    for _ in 0..a.reps {
        let t = Instant::now();
        gemm::gemm(1.0, &x, gemm::Op::N, &y, gemm::Op::N, 0.0, &mut c);
        secs.push(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    let flops = 2.0 * (a.n as f64).powi(3);
    let med = median(&secs);
    let best = secs.iter().copied().fold(f64::INFINITY, f64::min);
    let out = json!({
        "gflops": flops / med / 1e9,
        "gflops_best": flops / best / 1e9,
        "seconds_median": med,
        "n": a.n,
        "reps": a.reps,
        "dtype": "f32",
        "threads": rayon::current_num_threads(),
    });
    if a.json {
        emit(&out.to_string())
    } else {
        emit(&format!(
            "gemm n={} f32: {:.1} GFLOP/s median ({:.1} best) over {} reps, {} threads",
            a.n,
            flops / med / 1e9,
            flops / best / 1e9,
            a.reps,
            rayon::current_num_threads()
        ))
    }
}

/// Random data for `bench step`: `n` examples (Gaussian inputs, random classes for the MLP;
/// Bernoulli inputs and Gaussian targets over `seq_len` steps for the RNN).
fn random_dataset(a: &BenchStepArgs, n: usize) -> Result<Dataset, CliError> {
    let seeds = SeedStream::new(a.seed).child("bench-step");
    let (task, train, test) = match a.model {
        ModelKind::Mlp | ModelKind::Cnn => {
            let make = |name: &str, rows: usize| -> Result<Tabular, CliError> {
                let x: Mat<f32> =
                    seeds.gaussian_matrix(&format!("{name}.x"), rows, a.input_dim, 1.0);
                let mut rng = seeds.rng(&format!("{name}.labels"));
                let labels = (0..rows)
                    .map(|_| widealign_tensor::rng::below(&mut rng, a.output_dim as u64) as usize)
                    .collect();
                Ok(Tabular::classification(x, labels, a.output_dim)?)
            };
            (
                Task::Classification {
                    classes: a.output_dim,
                },
                Split::Tabular(make("train", n)?),
                Split::Tabular(make("test", a.batch_size)?),
            )
        }
        ModelKind::Rnn => {
            let make = |name: &str, rows: usize| Sequences {
                x: (0..a.seq_len)
                    .map(|t| seeds.gaussian_matrix(&format!("{name}.x{t}"), rows, a.input_dim, 1.0))
                    .collect(),
                y: (0..a.seq_len)
                    .map(|t| {
                        seeds.gaussian_matrix(&format!("{name}.y{t}"), rows, a.output_dim, 1.0)
                    })
                    .collect(),
            };
            (
                Task::SequenceRegression {
                    outputs: a.output_dim,
                },
                Split::Sequences(make("train", n)),
                Split::Sequences(make("test", a.batch_size)),
            )
        }
    };
    Ok(Dataset {
        name: "random".into(),
        source: "generated".into(),
        task,
        train,
        validation: None,
        test,
    })
}

/// `Ok` when every value is at least 1, else an error naming the first flag that is 0.
fn require_positive(flags: &[(&str, usize)]) -> Result<(), CliError> {
    match flags.iter().find(|(_, v)| *v == 0) {
        Some((flag, _)) => Err(CliError::flag(flag, "must be at least 1")),
        None => Ok(()),
    }
}

/// `bench step`: times `steps` training steps (after two warm-up steps) of one rule on random
/// data through the real training loop: the time between consecutive step reports.
pub fn step(a: &BenchStepArgs) -> Result<(), CliError> {
    require_positive(&[
        ("--input-dim", a.input_dim),
        ("--output-dim", a.output_dim),
        ("--width", a.width),
        ("--batch-size", a.batch_size),
        ("--steps", a.steps),
        ("--seq-len", a.seq_len),
    ])?;
    const WARMUP: usize = 2;
    let n = a.batch_size * (a.steps + WARMUP);
    let data = random_dataset(a, n)?;
    let cfg = TrainConfig {
        model: a.model,
        rule: a.rule,
        width: a.width,
        depth: a.depth,
        batch_size: a.batch_size,
        epochs: 1,
        lr: 1e-3,
        seed: a.seed,
        dataset: "random".into(),
        ..TrainConfig::default()
    };
    config::validate(&cfg)?;
    let mut stamps: Vec<Instant> = Vec::with_capacity(n / a.batch_size + 1);
    let stop = AtomicBool::new(false);
    {
        let progress = |p: &rules::Progress<'_>| {
            if let rules::Progress::Step { .. } = p {
                stamps.push(Instant::now());
            }
        };
        rules::train(
            &cfg,
            &data,
            rules::Callbacks {
                progress: Some(Box::new(progress)),
                step_hook: None,
                stop: Some(&stop),
                extension: None,
            },
        )?;
    }
    let ms: Vec<f64> = stamps
        .windows(2)
        .skip(WARMUP - 1)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .collect();
    if ms.is_empty() {
        return Err(CliError::Failure("no training steps were timed".into()));
    }
    let med = median(&ms);
    let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
    let out = json!({
        "step_ms_median": med,
        "step_ms_min": min,
        "samples_per_s": a.batch_size as f64 / (med / 1e3),
        "steps": ms.len(),
        "model": a.model.name(),
        "rule": a.rule.name(),
        "width": a.width,
        "depth": a.depth,
        "batch_size": a.batch_size,
        "input_dim": a.input_dim,
        "output_dim": a.output_dim,
        "seq_len": (a.model == ModelKind::Rnn).then_some(a.seq_len),
        "threads": rayon::current_num_threads(),
    });
    if a.json {
        emit(&out.to_string())
    } else {
        emit(&format!(
            "{} {} width {} batch {}: {:.3} ms/step median ({:.3} min) over {} steps, {:.0} samples/s, {} threads",
            out["model"].as_str().unwrap_or(""),
            a.rule.name(),
            a.width,
            a.batch_size,
            med,
            min,
            ms.len(),
            a.batch_size as f64 / (med / 1e3),
            rayon::current_num_threads()
        ))
    }
}

/// Seconds since `t`.
fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// `bench checkpoint`: (1) `reps` saves of the checkpoint of an MLP of the given shape (its
/// parameters and, with Adam, both moments: the tensors a training checkpoint holds), each
/// split into building the row-major tensors and writing the file (encode, checksum, write,
/// fsync, rename), then opening it (layout and checksum) and reading every tensor back;
/// (2) unless `--steps 0`, `reps` pairs of training runs of `steps` steps on random data,
/// plain and with a checkpoint every `every` steps, interleaved, timed from the first step
/// report to the last (so the periodic saves are inside, the final one outside).
pub fn checkpoint(a: &BenchCheckpointArgs) -> Result<(), CliError> {
    require_positive(&[
        ("--width", a.width),
        ("--input-dim", a.input_dim),
        ("--output-dim", a.output_dim),
        ("--batch-size", a.batch_size),
        ("--every", a.every),
        ("--reps", a.reps),
    ])?;
    let cfg = TrainConfig {
        width: a.width,
        depth: a.depth,
        batch_size: a.batch_size,
        optimizer: a.optimizer,
        epochs: 1,
        lr: 1e-3,
        dataset: "random".into(),
        ..TrainConfig::default()
    };
    config::validate(&cfg)?;
    let parent = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = parent.join(format!("widealign-bench-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::flag("--dir", format!("cannot create {}: {e}", dir.display())))?;
    let result = checkpoint_in(a, &cfg, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (out, text) = result?;
    emit(if a.json { &out } else { &text })
}

/// [`checkpoint`] writing into `dir`: the JSON object and the text line.
fn checkpoint_in(
    a: &BenchCheckpointArgs,
    cfg: &TrainConfig,
    dir: &std::path::Path,
) -> Result<(String, String), CliError> {
    use std::collections::BTreeMap;
    use widealign_models::safetensors::{self, SafetensorsFile, Tensor};
    use widealign_models::{Mlp, MlpSpec, Network};
    let path = dir.join("bench.safetensors");
    let spec = MlpSpec::new(
        a.input_dim,
        vec![a.width; a.depth],
        a.output_dim,
        cfg.activation,
    );
    let net = Mlp::<f32>::new(&spec, 0)?;
    let adam = a.optimizer == rules::OptimizerChoice::Adam;
    let meta = BTreeMap::from([("format".to_string(), "bench".to_string())]);
    let (mut build, mut write, mut open, mut read) = (vec![], vec![], vec![], vec![]);
    for _ in 0..a.reps {
        let t = Instant::now();
        let mut tensors = safetensors::network_tensors(&net);
        if adam {
            for prefix in ["adam.m.", "adam.v."] {
                for ((name, shape), values) in net.param_layout().into_iter().zip(net.params()) {
                    tensors.push(Tensor::column_major(
                        format!("{prefix}{name}"),
                        shape,
                        values,
                    ));
                }
            }
        }
        build.push(secs(t));
        let t = Instant::now();
        safetensors::write(&path, &tensors, &meta)?;
        write.push(secs(t));
        drop(tensors);
        let t = Instant::now();
        let file = SafetensorsFile::open(&path)?;
        open.push(secs(t));
        let t = Instant::now();
        let mut back = net.clone();
        safetensors::load_network(&file, &mut back, "")?;
        if adam {
            for prefix in ["adam.m.", "adam.v."] {
                safetensors::load_network(&file, &mut back, prefix)?;
            }
        }
        read.push(secs(t));
    }
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let save = |i: usize| build[i] + write[i];
    let save_s: Vec<f64> = (0..a.reps).map(save).collect();
    let mut out = json!({
        "checkpoint_bytes": bytes,
        "save_s_median": median(&save_s),
        "build_tensors_s_median": median(&build),
        "write_s_median": median(&write),
        "open_s_median": median(&open),
        "read_s_median": median(&read),
        "save_mb_per_s": bytes as f64 / 1e6 / median(&save_s),
        "width": a.width,
        "depth": a.depth,
        "optimizer": a.optimizer.name(),
        "reps": a.reps,
        "dir": dir.parent().map(|p| p.display().to_string()),
        "threads": rayon::current_num_threads(),
    });
    if a.steps > 0 {
        let data = random_dataset(
            &BenchStepArgs {
                model: ModelKind::Mlp,
                input_dim: a.input_dim,
                output_dim: a.output_dim,
                width: a.width,
                depth: a.depth,
                batch_size: a.batch_size,
                seq_len: 1,
                rule: rules::RuleKind::Bp,
                steps: a.steps,
                seed: 0,
                json: false,
            },
            a.batch_size * a.steps,
        )?;
        let timed = |ckpt: &rules::Checkpointing| -> Result<f64, CliError> {
            let mut first = None;
            let mut last = None;
            let mut seen = 0usize;
            let progress = |p: &rules::Progress<'_>| {
                if let rules::Progress::Step { .. } = p {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = Some(now);
                    seen += 1;
                }
            };
            let callbacks = rules::Callbacks {
                progress: Some(Box::new(progress)),
                ..rules::Callbacks::default()
            };
            rules::train_checkpointed(cfg, &data, callbacks, ckpt)?;
            match (first, last) {
                (Some(f), Some(l)) if seen > 1 => {
                    Ok((l - f).as_secs_f64() * 1e3 / (seen - 1) as f64)
                }
                _ => Err(CliError::Failure("no training steps were timed".into())),
            }
        };
        let with = rules::Checkpointing {
            save_to: Some(path.clone()),
            every: Some(a.every),
            resume_from: None,
        };
        let (mut plain, mut checkpointed, mut ratio) = (vec![], vec![], vec![]);
        for _ in 0..a.reps {
            let p = timed(&rules::Checkpointing::default())?;
            let c = timed(&with)?;
            plain.push(p);
            checkpointed.push(c);
            ratio.push(c / p);
        }
        if let serde_json::Value::Object(m) = &mut out {
            m.insert("steps".into(), a.steps.into());
            m.insert("every".into(), a.every.into());
            m.insert("batch_size".into(), a.batch_size.into());
            m.insert("step_ms_plain_median".into(), median(&plain).into());
            m.insert(
                "step_ms_checkpointed_median".into(),
                median(&checkpointed).into(),
            );
            m.insert("overhead_ratio_median".into(), median(&ratio).into());
            m.insert("overhead_ratios".into(), ratio.clone().into());
        }
    }
    let mut s = format!(
        "checkpoint of {:.1} MB (mlp width {} depth {}, {}): save {:.3} s median ({:.3} s building tensors, {:.3} s writing), {:.0} MB/s; open {:.3} s, read {:.3} s",
        bytes as f64 / 1e6,
        a.width,
        a.depth,
        a.optimizer.name(),
        median(&save_s),
        median(&build),
        median(&write),
        bytes as f64 / 1e6 / median(&save_s),
        median(&open),
        median(&read)
    );
    if a.steps > 0 {
        s.push_str(&format!(
            "\nsteps: {:.3} ms plain, {:.3} ms with a checkpoint every {} steps (median of {} interleaved pairs): ratio {:.3}",
            out["step_ms_plain_median"].as_f64().unwrap_or(f64::NAN),
            out["step_ms_checkpointed_median"].as_f64().unwrap_or(f64::NAN),
            a.every,
            a.reps,
            out["overhead_ratio_median"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    Ok((out.to_string(), s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
