//! Timing and memory probes of the whole stack, the Rust side of `scripts/perf/run_anchors.sh`.
//!
//! ```text
//! cargo build --release --example perf_stack
//! RAYON_NUM_THREADS=2 target/release/examples/perf_stack mlp --width 1024 --depth 2 --rule bp
//! RAYON_NUM_THREADS=2 target/release/examples/perf_stack rnn --width 1024 --seq-len 100 --batch 50
//! RAYON_NUM_THREADS=2 target/release/examples/perf_stack gemm --n 1024
//! RAYON_NUM_THREADS=2 target/release/examples/perf_stack ntk --n 5000 --depth 3
//! target/release/examples/perf_stack memory --width 8192 --depth 3 --batch 100
//! ```
//!
//! Every mode prints one JSON line on stdout (times in milliseconds; `best_ms` is the fastest
//! repetition, `median_ms` the median).
//!
//! * `mlp`: one training step of an NTK-parameterised MLP (`--activation relu`, `--input-dim 784`, `--depth`
//!   hidden layers of `--width`, `--output-dim 10`) at batch `--batch`: live forward pass, MSE loss
//!   (`1/(B·C) Σ (f − y)²`, one-hot-0.1 targets), the rule's update ([`MlpRule::update`], with the
//!   per-example frozen-trace cache unless `--no-cache`) and plain SGD — what the training loop
//!   does per step. `--fused` times the backprop step with the update fused into the backward pass
//!   ([`widealign::models::sgd_step_fused`]; bp only). Data: `10·B` Gaussian inputs, visited in
//!   consecutive batches.
//! * `cnn`: one training step of an NTK-parameterised ReLU CNN (28×28×1 images, `--layers`
//!   convolutions of `--channels` channels, 3×3 kernels, stride 1, SAME padding, global average
//!   pooling, 10 outputs, `--norm none|batch`) at batch `--batch`: live forward pass, MSE loss, and
//!   the rule's plain-SGD step ([`widealign::rules::Rule::sgd_step`], what `train` runs), with the
//!   frozen-trace cache over the `10·B` training images unless `--no-cache`. Data: uniform
//!   `[0, 1)` pixels. `--phases` also reports the best forward, backward-signal and update times.
//! * `rnn`: one backprop-through-time step of the ReLU Elman RNN (input 1, output 1) on Bernoulli
//!   inputs, sequence length `--seq-len`, batch `--batch`, MSE summed over steps, plain SGD.
//! * `gemm`: `C = A·B` for `n × n` f32 matrices, or `m × k` times `k × n` with `--m`/`--k`
//!   (`--transpose-b`: `B` stored `n × k` and used transposed, the forward-layer form).
//! * `ntk`: the analytic NNGP and NTK of `--n` Gaussian inputs (dimension `--input-dim`, default
//!   784) with themselves, ReLU, `--depth` hidden layers, NTK parameterisation (w_std 1, b_std 0.1,
//!   Gaussian initial biases, as neural-tangents' `stax.Dense`).
//! * `memory`: builds the network, runs `--steps` training steps (fused backprop SGD unless
//!   `--unfused`) and reports the peak resident set (`VmHWM`) next to the bytes of the weights and
//!   the forward trace.
//! * `phases` / `rnn-phases`: the `mlp` / `rnn` step split into forward, loss, backward signals,
//!   weight gradients and update (best of `--steps` repetitions per phase).

use std::collections::HashMap;
use std::time::Instant;

use widealign::models::{
    one_hot_targets, sgd_step_fused, FusedBuffers, Loss, Mlp, MlpSpec, Optimizer, OptimizerKind,
    Parameterization, Rnn, RnnSpec, RnnTrace, Trace,
};
use widealign::ntk::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use widealign::rules::{MlpRule, RnnRule, RuleKind, StepInput};
use widealign::tensor::{
    gemm,
    rng::{below, SeedStream},
    Activation, Mat,
};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args(HashMap<String, String>);

impl Args {
    fn parse(rest: &[String]) -> Res<Self> {
        let mut map = HashMap::new();
        let mut it = rest.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| format!("expected a --flag, got {k:?}"))?;
            if matches!(
                key,
                "no-cache" | "fused" | "unfused" | "transpose-b" | "phases"
            ) {
                map.insert(key.to_string(), "true".to_string());
            } else {
                let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
                map.insert(key.to_string(), v.clone());
            }
        }
        Ok(Args(map))
    }
    fn usize(&self, k: &str, default: usize) -> Res<usize> {
        match self.0.get(k) {
            Some(v) => Ok(v.parse().map_err(|e| format!("--{k} {v}: {e}"))?),
            None => Ok(default),
        }
    }
    fn f64(&self, k: &str, default: f64) -> Res<f64> {
        match self.0.get(k) {
            Some(v) => Ok(v.parse().map_err(|e| format!("--{k} {v}: {e}"))?),
            None => Ok(default),
        }
    }
    fn flag(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    fn str(&self, k: &str, default: &str) -> String {
        self.0
            .get(k)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| {
                l[key.len()..]
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Times `f` `reps` times after `warm` warm-up calls; returns (best, median) in ms.
fn time_reps(
    warm: usize,
    reps: usize,
    mut f: impl FnMut() -> Res<()>,
) -> Res<(f64, f64, Vec<f64>)> {
    for _ in 0..warm {
        f()?;
    }
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut s = v.clone();
    s.sort_by(f64::total_cmp);
    Ok((s[0], s[s.len() / 2], v))
}

fn mlp_spec(a: &Args) -> Res<MlpSpec> {
    let spec = MlpSpec::uniform(
        a.usize("input-dim", 784)?,
        a.usize("width", 1024)?,
        a.usize("depth", 2)?,
        a.usize("output-dim", 10)?,
        a.str("activation", "relu")
            .parse::<Activation>()
            .map_err(|e| format!("--activation: {e}"))?,
    )
    .with_param(Parameterization::Ntk {
        w_std: 1.0,
        b_std: 0.1,
    })
    .with_bias_init(widealign::models::BiasInit::Zero);
    spec.validate()?;
    Ok(spec)
}

fn mlp(a: &Args) -> Res<()> {
    let spec = mlp_spec(a)?;
    let batch = a.usize("batch", 100)?;
    let reps = a.usize("steps", 20)?;
    let warm = a.usize("warmup", 2)?;
    let lr = a.f64("lr", 0.5)? as f32;
    let rule_name = a.str("rule", "bp");
    let kind: RuleKind = rule_name.parse()?;
    let fused = a.flag("fused");
    if fused && kind != RuleKind::Bp {
        return Err("--fused applies to --rule bp only".into());
    }
    let n_train = 10 * batch;
    let s = SeedStream::new(a.usize("seed", 0)? as u64).child("perf");
    let x_train: Mat<f32> = s.gaussian_matrix("x", n_train, spec.input_dim, 1.0);
    let labels: Vec<usize> = (0..n_train).map(|i| i % spec.output_dim).collect();
    let y_train: Mat<f32> = one_hot_targets(&labels, spec.output_dim)?;
    let batches: Vec<(Vec<usize>, Mat<f32>, Mat<f32>)> = (0..10)
        .map(|k| {
            let rows: Vec<usize> = (k * batch..(k + 1) * batch).collect();
            (
                rows,
                x_train.rows(k * batch, batch).into_owned(),
                y_train.rows(k * batch, batch).into_owned(),
            )
        })
        .collect();
    let mut net = Mlp::<f32>::new(&spec, 0)?;
    let mut rule = MlpRule::new(kind, &net)?;
    let cache = !a.flag("no-cache");
    let cache_bytes = if cache {
        rule.cache_frozen_trace(&x_train)?
    } else {
        0
    };
    let mut opt = Optimizer::<f32>::new(OptimizerKind::Sgd);
    let mut trace = Trace::zeros(&spec, batch);
    let mut err = Mat::<f32>::zeros(batch, spec.output_dim);
    let mut fb = FusedBuffers::new();
    let mut k = 0usize;
    let mut last_loss = 0.0;
    let (best, median, all) = time_reps(warm, reps, || {
        let (rows, x, y) = &batches[k % batches.len()];
        k += 1;
        net.forward_into(x, &mut trace)?;
        last_loss = Loss::Mse.evaluate_into(trace.output(), y, &mut err)?;
        if fused {
            sgd_step_fused(&mut net, &trace, &err, lr, &mut fb);
        } else {
            let step = StepInput {
                x,
                rows: if cache { Some(rows) } else { None },
                live: &trace,
                err: &err,
            };
            let g = rule.update(&net, &step)?;
            opt.step_network(&mut net, g, lr);
        }
        Ok(())
    })?;
    println!(
        "{}",
        serde_json::json!({
            "impl": "widealign", "what": "mlp_step", "rule": rule_name, "fused": fused,
            "cache": cache, "cache_bytes": cache_bytes,
            "width": spec.hidden[0], "depth": spec.depth() - 1, "input_dim": spec.input_dim,
            "output_dim": spec.output_dim, "batch": batch, "reps": reps,
            "best_ms": best, "median_ms": median, "all_ms": all, "last_loss": last_loss,
            "threads": rayon::current_num_threads(), "vm_hwm_kb": status_kb("VmHWM:"),
        })
    );
    Ok(())
}

fn rnn(a: &Args) -> Res<()> {
    let width = a.usize("width", 1024)?;
    let steps = a.usize("seq-len", 100)?;
    let batch = a.usize("batch", 50)?;
    let reps = a.usize("steps", 5)?;
    let warm = a.usize("warmup", 1)?;
    let lr = a.f64("lr", 0.001)? as f32;
    let rule_name = a.str("rule", "bp");
    let kind: RuleKind = rule_name.parse()?;
    let spec = RnnSpec::new(1, width, 1, Activation::Relu);
    let mut net = Rnn::<f32>::new(&spec, 0)?;
    let mut rule = RnnRule::new(kind, &net)?;
    let s = SeedStream::new(a.usize("seed", 0)? as u64).child("perf-rnn");
    let mut rng = s.rng("bits");
    let bits: Vec<Vec<f32>> = (0..steps)
        .map(|_| (0..batch).map(|_| below(&mut rng, 2) as f32).collect())
        .collect();
    let xs: Vec<Mat<f32>> = bits
        .iter()
        .map(|b| Mat::from_column_slice(batch, 1, b))
        .collect();
    let ys: Vec<Mat<f32>> = (0..steps)
        .map(|t| {
            let v: Vec<f32> = (0..batch)
                .map(|i| {
                    let back = |d: usize| if t >= d { bits[t - d][i] } else { 0.0 };
                    0.5 + 0.5 * back(2) - 0.25 * back(5)
                })
                .collect();
            Mat::from_column_slice(batch, 1, &v)
        })
        .collect();
    let mut opt = Optimizer::<f32>::new(OptimizerKind::Sgd);
    let mut trace = RnnTrace::new();
    let mut last_loss = 0.0;
    let (best, median, all) = time_reps(warm, reps, || {
        net.forward_into(&xs, &mut trace)?;
        let (loss, errs) = Loss::Mse.evaluate_sequence(&trace.outputs, &ys)?;
        last_loss = loss;
        let step = StepInput {
            x: &xs[..],
            rows: None,
            live: &trace,
            err: &errs[..],
        };
        let g = rule.update(&net, &step)?;
        opt.step_network(&mut net, g, lr);
        Ok(())
    })?;
    println!(
        "{}",
        serde_json::json!({
            "impl": "widealign", "what": "rnn_step", "rule": rule_name, "width": width,
            "seq_len": steps, "batch": batch, "reps": reps, "best_ms": best, "median_ms": median,
            "all_ms": all, "last_loss": last_loss, "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

fn gemm_mode(a: &Args) -> Res<()> {
    let n = a.usize("n", 1024)?;
    let (m, k) = (a.usize("m", n)?, a.usize("k", n)?);
    let transpose_b = a.flag("transpose-b");
    let reps = a.usize("steps", 20)?;
    let s = SeedStream::new(0).child("perf-gemm");
    let x: Mat<f32> = s.gaussian_matrix("a", m, k, 1.0);
    let (op_b, y): (gemm::Op, Mat<f32>) = if transpose_b {
        (gemm::Op::T, s.gaussian_matrix("b", n, k, 1.0))
    } else {
        (gemm::Op::N, s.gaussian_matrix("b", k, n, 1.0))
    };
    let mut c = Mat::<f32>::zeros(m, n);
    let (best, median, _) = time_reps(3, reps, || {
        gemm::gemm(1.0, &x, gemm::Op::N, &y, op_b, 0.0, &mut c);
        Ok(())
    })?;
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "widealign", "what": "gemm", "m": m, "n": n, "k": k,
            "transpose_b": transpose_b, "reps": reps, "best_ms": best,
            "median_ms": median, "gflops": flops / best / 1e6,
            "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

fn ntk(a: &Args) -> Res<()> {
    let n = a.usize("n", 1000)?;
    let d = a.usize("input-dim", 784)?;
    let depth = a.usize("depth", 3)?;
    let reps = a.usize("steps", 3)?;
    let spec = MlpSpec::uniform(d, 1024, depth, 1, Activation::Relu)
        .with_param(Parameterization::Ntk {
            w_std: 1.0,
            b_std: 0.1,
        })
        .with_bias_init(widealign::models::BiasInit::Gaussian);
    let inf = InfiniteMlp::from_spec(&spec)?;
    let x: Mat<f64> = SeedStream::new(0)
        .child("perf-ntk")
        .gaussian_matrix("x", n, d, 1.0);
    let mut checksum = 0.0;
    let (best, median, all) = time_reps(a.usize("warmup", 1)?, reps, || {
        let k = inf.kernels(
            &x,
            None,
            &KernelRequest::outputs(),
            &KernelOptions::default(),
        )?;
        checksum = k.ntk.as_ref().map_or(0.0, |m| m[(0, 1)]);
        Ok(())
    })?;
    println!(
        "{}",
        serde_json::json!({
            "impl": "widealign", "what": "ntk_analytic", "n": n, "input_dim": d, "depth": depth,
            "reps": reps, "best_ms": best, "median_ms": median, "all_ms": all,
            "ntk01": checksum, "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

fn memory(a: &Args) -> Res<()> {
    let spec = mlp_spec(a)?;
    let batch = a.usize("batch", 100)?;
    let steps = a.usize("steps", 3)?;
    let fused = !a.flag("unfused");
    let widths = spec.widths();
    let f = std::mem::size_of::<f32>();
    let weights = spec.parameter_count() * f;
    let trace = batch
        * (widths[0]
            + 2 * widths[1..widths.len() - 1].iter().sum::<usize>()
            + widths[widths.len() - 1])
        * f;
    let rss0 = status_kb("VmRSS:");
    let mut net = Mlp::<f32>::new(&spec, 0)?;
    let s = SeedStream::new(1).child("perf-mem");
    let x: Mat<f32> = s.gaussian_matrix("x", batch, spec.input_dim, 1.0);
    let labels: Vec<usize> = (0..batch).map(|i| i % spec.output_dim).collect();
    let y: Mat<f32> = one_hot_targets(&labels, spec.output_dim)?;
    let mut tr = Trace::zeros(&spec, batch);
    let mut err = Mat::<f32>::zeros(batch, spec.output_dim);
    let mut fb = FusedBuffers::new();
    let mut rule = MlpRule::new(RuleKind::Bp, &net)?;
    let mut opt = Optimizer::<f32>::new(OptimizerKind::Sgd);
    let t0 = Instant::now();
    let mut losses = Vec::new();
    for _ in 0..steps {
        net.forward_into(&x, &mut tr)?;
        losses.push(Loss::Mse.evaluate_into(tr.output(), &y, &mut err)?);
        if fused {
            sgd_step_fused(&mut net, &tr, &err, 0.5, &mut fb);
        } else {
            let step = StepInput {
                x: &x,
                rows: None,
                live: &tr,
                err: &err,
            };
            let g = rule.update(&net, &step)?;
            opt.step_network(&mut net, g, 0.5);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let hwm = status_kb("VmHWM:");
    let bound = (weights + trace) as f64 / 1e3;
    println!(
        "{}",
        serde_json::json!({
            "impl": "widealign", "what": "memory", "fused": fused, "width": spec.hidden[0],
            "depth": spec.depth() - 1, "batch": batch, "steps": steps,
            "weights_kb": weights as f64 / 1e3, "trace_kb": trace as f64 / 1e3,
            "lower_bound_kb": bound, "rss_start_kb": rss0, "vm_hwm_kb": hwm,
            "ratio_hwm_to_bound": hwm as f64 / bound,
            "ratio_hwm_minus_start_to_bound": (hwm - rss0) as f64 / bound,
            "step_ms": secs * 1e3 / steps as f64, "losses": losses,
        })
    );
    Ok(())
}

/// Backprop step split into phases (best of `--steps` repetitions per phase, ms).
fn phases(a: &Args) -> Res<()> {
    use widealign::models::{
        backward_signals_into, gradients_into, Feedback, Grads, Pathway, Signals,
    };
    let spec = mlp_spec(a)?;
    let batch = a.usize("batch", 100)?;
    let reps = a.usize("steps", 20)?;
    let s = SeedStream::new(0).child("perf");
    let x: Mat<f32> = s.gaussian_matrix("x", batch, spec.input_dim, 1.0);
    let labels: Vec<usize> = (0..batch).map(|i| i % spec.output_dim).collect();
    let y: Mat<f32> = one_hot_targets(&labels, spec.output_dim)?;
    let mut net = Mlp::<f32>::new(&spec, 0)?;
    let mut trace = Trace::zeros(&spec, batch);
    let mut err = Mat::<f32>::zeros(batch, spec.output_dim);
    let mut sig = Signals::new();
    let mut grads = Grads::new();
    let mut fb = FusedBuffers::new();
    let mut best = [f64::INFINITY; 6];
    for _ in 0..reps + 2 {
        let mut t = Instant::now();
        let mut lap = |i: usize, t: &mut Instant| {
            best[i] = best[i].min(t.elapsed().as_secs_f64() * 1e3);
            *t = Instant::now();
        };
        net.forward_into(&x, &mut trace)?;
        lap(0, &mut t);
        Loss::Mse.evaluate_into(trace.output(), &y, &mut err)?;
        lap(1, &mut t);
        let p = Pathway {
            feedback: Feedback::Weights(&net.weights),
            derivatives: &trace,
        };
        backward_signals_into(&spec, &p, &err, &mut sig);
        lap(2, &mut t);
        gradients_into(&spec, &sig, &trace, &mut grads);
        lap(3, &mut t);
        net.apply_update(&grads, 0.1);
        lap(4, &mut t);
        sgd_step_fused(&mut net, &trace, &err, 0.1, &mut fb);
        lap(5, &mut t);
    }
    println!(
        "{}",
        serde_json::json!({
            "what": "phases", "width": spec.hidden[0], "depth": spec.depth() - 1, "batch": batch,
            "forward_ms": best[0], "loss_ms": best[1], "signals_ms": best[2], "gradients_ms": best[3],
            "update_ms": best[4], "fused_backward_update_ms": best[5],
            "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

/// Backprop-through-time step split into phases (best of `--steps` repetitions, ms).
fn rnn_phases(a: &Args) -> Res<()> {
    use widealign::models::{
        rnn_backward_signals_into, rnn_gradients_into, RnnFeedback, RnnGrads, RnnPathway,
        RnnSignals,
    };
    let width = a.usize("width", 1024)?;
    let steps = a.usize("seq-len", 100)?;
    let batch = a.usize("batch", 50)?;
    let reps = a.usize("steps", 5)?;
    let spec = RnnSpec::new(1, width, 1, Activation::Relu);
    let mut net = Rnn::<f32>::new(&spec, 0)?;
    let s = SeedStream::new(0).child("perf-rnn");
    let xs: Vec<Mat<f32>> = (0..steps)
        .map(|t| s.gaussian_matrix(&format!("x{t}"), batch, 1, 1.0))
        .collect();
    let ys: Vec<Mat<f32>> = (0..steps)
        .map(|t| s.gaussian_matrix(&format!("y{t}"), batch, 1, 1.0))
        .collect();
    let mut trace = RnnTrace::new();
    let mut sig = RnnSignals::new();
    let mut grads = RnnGrads::new();
    let mut best = [f64::INFINITY; 5];
    for _ in 0..reps + 1 {
        let mut t = Instant::now();
        let mut lap = |i: usize, t: &mut Instant| {
            best[i] = best[i].min(t.elapsed().as_secs_f64() * 1e3);
            *t = Instant::now();
        };
        net.forward_into(&xs, &mut trace)?;
        lap(0, &mut t);
        let (_, errs) = Loss::Mse.evaluate_sequence(&trace.outputs, &ys)?;
        lap(1, &mut t);
        let p = RnnPathway {
            feedback: RnnFeedback::Weights {
                w_rec: &net.w_rec,
                w_out: &net.w_out,
            },
            derivatives: &trace,
        };
        rnn_backward_signals_into(&spec, &p, &errs, &mut sig);
        lap(2, &mut t);
        rnn_gradients_into(&spec, &sig, &errs, &trace, &mut grads);
        lap(3, &mut t);
        net.apply_update(&grads, 0.001);
        lap(4, &mut t);
    }
    println!(
        "{}",
        serde_json::json!({
            "what": "rnn_phases", "width": width, "seq_len": steps, "batch": batch,
            "forward_ms": best[0], "loss_ms": best[1], "signals_ms": best[2],
            "gradients_ms": best[3], "update_ms": best[4], "threads": rayon::current_num_threads(),
        })
    );
    Ok(())
}

fn cnn(a: &Args) -> Res<()> {
    use widealign::models::{Cnn, CnnSpec, CnnTrace, FeedbackPath, Network, Norm};
    use widealign::rules::Rule;
    let channels = a.usize("channels", 64)?;
    let layers = a.usize("layers", 3)?;
    let norm: Norm = a.str("norm", "none").parse()?;
    let spec =
        CnnSpec::new([28, 28, 1], vec![channels; layers], 10, Activation::Relu).with_norm(norm);
    spec.validate()?;
    let batch = a.usize("batch", 100)?;
    let reps = a.usize("steps", 10)?;
    let warm = a.usize("warmup", 2)?;
    let lr = a.f64("lr", 0.5)? as f32;
    let rule_name = a.str("rule", "bp");
    let kind: RuleKind = rule_name.parse()?;
    let n_train = 10 * batch;
    let s = SeedStream::new(a.usize("seed", 0)? as u64).child("perf");
    let mut rng = s.rng("x");
    let x_train = Mat::<f32>::from_fn(n_train, spec.input_dim(), |_, _| {
        widealign::tensor::rng::uniform(&mut rng) as f32
    });
    let labels: Vec<usize> = (0..n_train).map(|i| i % 10).collect();
    let y_train: Mat<f32> = one_hot_targets(&labels, 10)?;
    let batches: Vec<(Vec<usize>, Mat<f32>, Mat<f32>)> = (0..10)
        .map(|k| {
            let rows: Vec<usize> = (k * batch..(k + 1) * batch).collect();
            (
                rows,
                x_train.rows(k * batch, batch).into_owned(),
                y_train.rows(k * batch, batch).into_owned(),
            )
        })
        .collect();
    let mut net = Cnn::<f32>::new(&spec, 0)?;
    let mut rule = Rule::new(kind, &net)?;
    let cache = !a.flag("no-cache");
    let cache_bytes = if cache {
        rule.cache_frozen_trace(&x_train)?
    } else {
        0
    };
    let mut trace = CnnTrace::default();
    let mut err = Mat::<f32>::zeros(batch, 10);
    let mut k = 0usize;
    let mut last_loss = 0.0;
    let (best, median, all) = time_reps(warm, reps, || {
        let (rows, x, y) = &batches[k % batches.len()];
        k += 1;
        net.forward_into(x, &mut trace)?;
        last_loss = Loss::Mse.evaluate_into(trace.output(), y, &mut err)?;
        let step = StepInput {
            x,
            rows: if cache { Some(rows) } else { None },
            live: &trace,
            err: &err,
        };
        rule.sgd_step(&mut net, &step, lr)?;
        Ok(())
    })?;
    let mut phases = serde_json::Value::Null;
    if a.flag("phases") {
        let (x, y) = (&batches[0].1, &batches[0].2);
        let (fwd, _, _) = time_reps(1, reps, || Ok(net.forward_into(x, &mut trace)?))?;
        Loss::Mse.evaluate_into(trace.output(), y, &mut err)?;
        let mut signals = Default::default();
        let (sig, _, _) = time_reps(1, reps, || {
            net.backward_signals_into(FeedbackPath::Live, &trace, &err, &mut signals);
            Ok(())
        })?;
        let mut grads = Default::default();
        let (grad, _, _) = time_reps(1, reps, || {
            Cnn::gradients_into(&spec, &signals, &err, &trace, &mut grads);
            Ok(())
        })?;
        phases = serde_json::json!({"forward_ms": fwd, "signals_ms": sig, "gradients_ms": grad});
    }
    println!(
        "{}",
        serde_json::json!({
            "impl": "widealign", "what": "cnn_step", "rule": rule_name, "cache": cache,
            "cache_bytes": cache_bytes, "channels": channels, "layers": layers,
            "norm": norm.name(), "batch": batch, "reps": reps, "best_ms": best,
            "median_ms": median, "all_ms": all, "last_loss": last_loss, "phases": phases,
            "threads": rayon::current_num_threads(), "vm_hwm_kb": status_kb("VmHWM:"),
        })
    );
    Ok(())
}

fn main() -> Res<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = argv.first() else {
        return Err(
            "usage: perf_stack mlp|rnn|cnn|gemm|ntk|memory|phases|rnn-phases [--flag value ...]"
                .into(),
        );
    };
    let a = Args::parse(&argv[1..])?;
    match mode.as_str() {
        "mlp" => mlp(&a),
        "rnn" => rnn(&a),
        "cnn" => cnn(&a),
        "gemm" => gemm_mode(&a),
        "ntk" => ntk(&a),
        "memory" => memory(&a),
        "phases" => phases(&a),
        "rnn-phases" => rnn_phases(&a),
        other => Err(format!("unknown mode {other:?}").into()),
    }
}
