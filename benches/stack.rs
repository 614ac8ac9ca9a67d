//! Criterion benchmarks of the whole training stack (the Rust side of `docs/performance.md`).
//!
//! * `mlp_forward/w{1024,4096}` — [`Mlp::forward_into`] of the NTK-parameterised ReLU MLP
//!   784 → w → w → 10 on a batch of 100.
//! * `mlp_backward/w{1024,4096}` — backprop signals + gradients into reused buffers.
//! * `step/<rule>/w{1024,4096}` — one training step of every rule, as the training loop runs it:
//!   live forward pass, MSE loss, the rule's update ([`MlpRule::update`]; Align-ada/zero gather
//!   their frozen trace from the per-example cache, as `train` does by default) and plain SGD.
//!   `align-ada-nocache`/`align-zero-nocache` run the frozen forward pass instead; `bp-fused` is
//!   backprop with the SGD update fused into the backward pass ([`sgd_step_fused`]).
//! * `rnn_step/bp_w1024_t100_b50` — one BPTT step of the ReLU Elman RNN (input 1, output 1) on
//!   the Add task's Bernoulli inputs, MSE summed over the 100 steps, plain SGD.
//! * `cnn_step/{bp,align-zero,align-ada}_c64_l3_b100` — one plain-SGD step
//!   ([`Rule::sgd_step`], as `train` runs it) of the NTK-parameterised ReLU CNN on 28×28×1
//!   images: 3 convolutions of 64 channels (3×3, stride 1, SAME), global average pooling, 10
//!   outputs, batch 100 — the network of issue 14's JAX comparison. The Align rules run the
//!   frozen forward pass (no cache).
//! * `ntk_analytic/relu_depth3_n{1000,5000}` — the infinite-width NNGP and NTK of `N` Gaussian
//!   inputs of dimension 784 with themselves (f64, closed-form ReLU dual kernels).
//! * `ntk_empirical/w256_depth2_n100` — the layerwise empirical NTK of a width-256 f32 network on
//!   100 inputs with 10 outputs.
//!
//! Run with `cargo bench -p widealign --bench stack` (about three minutes on 2 cores); pass a
//! filter such as `-- step/bp` to run a subset. Threads follow `RAYON_NUM_THREADS`. The ratios
//! against JAX, numpy and neural-tangents come from `scripts/perf/run_anchors.sh`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, Criterion, SamplingMode};
use widealign::models::{
    backward_signals_into, gradients_into, one_hot_targets, sgd_step_fused, BiasInit, Feedback,
    FusedBuffers, Grads, Loss, Mlp, MlpSpec, Optimizer, OptimizerKind, Parameterization, Pathway,
    Rnn, RnnSpec, RnnTrace, Signals, Trace,
};
use widealign::ntk::{
    analytic::{InfiniteMlp, KernelOptions, KernelRequest},
    empirical::empirical_ntk,
};
use widealign::rules::{MlpRule, RnnRule, RuleKind, StepInput};
use widealign::tensor::{
    rng::{below, SeedStream},
    Activation, Mat,
};

const BATCH: usize = 100;
const INPUT: usize = 784;
const CLASSES: usize = 10;

fn spec(width: usize) -> MlpSpec {
    MlpSpec::uniform(INPUT, width, 2, CLASSES, Activation::Relu)
        .with_param(Parameterization::Ntk {
            w_std: 1.0,
            b_std: 0.1,
        })
        .with_bias_init(BiasInit::Zero)
}

/// Ten batches of a fixed training set of `10·B` Gaussian inputs with one-hot-0.1 targets.
struct Data {
    x_train: Mat<f32>,
    batches: Vec<(Vec<usize>, Mat<f32>, Mat<f32>)>,
}

fn data() -> Data {
    let s = SeedStream::new(0).child("bench-stack");
    let n = 10 * BATCH;
    let x_train: Mat<f32> = s.gaussian_matrix("x", n, INPUT, 1.0);
    let labels: Vec<usize> = (0..n).map(|i| i % CLASSES).collect();
    let y: Mat<f32> = one_hot_targets(&labels, CLASSES).expect("labels below C");
    let batches = (0..10)
        .map(|k| {
            (
                (k * BATCH..(k + 1) * BATCH).collect(),
                x_train.rows(k * BATCH, BATCH).into_owned(),
                y.rows(k * BATCH, BATCH).into_owned(),
            )
        })
        .collect();
    Data { x_train, batches }
}

fn mlp_benches(c: &mut Criterion) {
    let d = data();
    for width in [1024usize, 4096] {
        let spec = spec(width);
        let net = Mlp::<f32>::new(&spec, 0).expect("valid spec");
        let (_, x, y) = &d.batches[0];
        let mut trace = Trace::zeros(&spec, BATCH);
        net.forward_into(x, &mut trace).expect("shapes");
        let (_, err) = Loss::Mse.evaluate(trace.output(), y).expect("shapes");

        let mut g = c.benchmark_group("mlp_forward");
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        g.bench_function(format!("w{width}"), |b| {
            b.iter(|| {
                net.forward_into(x, &mut trace).expect("shapes");
                black_box(&trace);
            })
        });
        g.finish();

        let mut g = c.benchmark_group("mlp_backward");
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        let mut signals = Signals::new();
        let mut grads = Grads::new();
        g.bench_function(format!("w{width}"), |b| {
            b.iter(|| {
                let p = Pathway {
                    feedback: Feedback::Weights(&net.weights),
                    derivatives: &trace,
                };
                backward_signals_into(&spec, &p, &err, &mut signals);
                gradients_into(&spec, &signals, &trace, &mut grads);
                black_box(&grads);
            })
        });
        g.finish();
    }
}

fn step_benches(c: &mut Criterion) {
    let d = data();
    let mut g = c.benchmark_group("step");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for width in [1024usize, 4096] {
        let spec = spec(width);
        let mut variants: Vec<(String, RuleKind, bool, bool)> = RuleKind::ALL
            .iter()
            .map(|&k| (k.name().to_string(), k, true, false))
            .collect();
        variants.push(("align-ada-nocache".into(), RuleKind::AlignAda, false, false));
        variants.push((
            "align-zero-nocache".into(),
            RuleKind::AlignZero,
            false,
            false,
        ));
        variants.push(("bp-fused".into(), RuleKind::Bp, false, true));
        for (name, kind, cache, fused) in variants {
            let mut net = Mlp::<f32>::new(&spec, 0).expect("valid spec");
            let mut rule = MlpRule::new(kind, &net).expect("valid spec");
            if cache {
                rule.cache_frozen_trace(&d.x_train).expect("shapes");
            }
            let mut opt = Optimizer::<f32>::new(OptimizerKind::Sgd);
            let mut trace = Trace::zeros(&spec, BATCH);
            let mut err = Mat::<f32>::zeros(BATCH, CLASSES);
            let mut buffers = FusedBuffers::new();
            let mut k = 0usize;
            g.bench_function(format!("{name}/w{width}"), |b| {
                b.iter(|| {
                    let (rows, x, y) = &d.batches[k % d.batches.len()];
                    k += 1;
                    net.forward_into(x, &mut trace).expect("shapes");
                    Loss::Mse
                        .evaluate_into(trace.output(), y, &mut err)
                        .expect("shapes");
                    if fused {
                        sgd_step_fused(&mut net, &trace, &err, 0.5, &mut buffers);
                    } else {
                        let step = StepInput {
                            x,
                            rows: cache.then_some(rows.as_slice()),
                            live: &trace,
                            err: &err,
                        };
                        let grads = rule.update(&net, &step).expect("shapes");
                        opt.step_network(&mut net, grads, 0.5);
                    }
                    black_box(&net);
                })
            });
        }
    }
    g.finish();
}

fn rnn_benches(c: &mut Criterion) {
    let (width, steps, batch) = (1024usize, 100usize, 50usize);
    let spec = RnnSpec::new(1, width, 1, Activation::Relu);
    let mut net = Rnn::<f32>::new(&spec, 0).expect("valid spec");
    let mut rule = RnnRule::new(RuleKind::Bp, &net).expect("valid spec");
    let mut rng = SeedStream::new(0).child("bench-rnn").rng("bits");
    let bits: Vec<Vec<f32>> = (0..steps)
        .map(|_| (0..batch).map(|_| below(&mut rng, 2) as f32).collect())
        .collect();
    let xs: Vec<Mat<f32>> = bits
        .iter()
        .map(|b| Mat::from_column_slice(batch, 1, b))
        .collect();
    let ys: Vec<Mat<f32>> = (0..steps)
        .map(|t| {
            let back = |d: usize, i: usize| if t >= d { bits[t - d][i] } else { 0.0 };
            let v: Vec<f32> = (0..batch)
                .map(|i| 0.5 + 0.5 * back(2, i) - 0.25 * back(5, i))
                .collect();
            Mat::from_column_slice(batch, 1, &v)
        })
        .collect();
    let mut opt = Optimizer::<f32>::new(OptimizerKind::Sgd);
    let mut trace = RnnTrace::new();
    let mut g = c.benchmark_group("rnn_step");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    g.bench_function(format!("bp_w{width}_t{steps}_b{batch}"), |b| {
        b.iter(|| {
            net.forward_into(&xs, &mut trace).expect("shapes");
            let (_, errs) = Loss::Mse
                .evaluate_sequence(&trace.outputs, &ys)
                .expect("shapes");
            let step = StepInput {
                x: &xs[..],
                rows: None,
                live: &trace,
                err: &errs[..],
            };
            let grads = rule.update(&net, &step).expect("shapes");
            opt.step_network(&mut net, grads, 0.001);
            black_box(&net);
        })
    });
    g.finish();
}

fn cnn_benches(c: &mut Criterion) {
    use widealign::models::{Cnn, CnnSpec, CnnTrace};
    use widealign::rules::Rule;
    let batch = 100;
    let spec = CnnSpec::new([28, 28, 1], vec![64; 3], 10, Activation::Relu);
    let mut rng = SeedStream::new(0).child("bench-cnn").rng("x");
    let x = Mat::<f32>::from_fn(batch, spec.input_dim(), |_, _| {
        widealign::tensor::rng::uniform(&mut rng) as f32
    });
    let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
    let y: Mat<f32> = one_hot_targets(&labels, 10).expect("labels below 10");
    let mut g = c.benchmark_group("cnn_step");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(6));
    for kind in [RuleKind::Bp, RuleKind::AlignZero, RuleKind::AlignAda] {
        let mut net = Cnn::<f32>::new(&spec, 0).expect("valid spec");
        let mut rule = Rule::new(kind, &net).expect("valid spec");
        let mut trace = CnnTrace::default();
        let mut err = Mat::<f32>::zeros(batch, 10);
        g.bench_function(format!("{kind}_c64_l3_b{batch}"), |b| {
            b.iter(|| {
                net.forward_into(&x, &mut trace).expect("shapes");
                Loss::Mse
                    .evaluate_into(trace.output(), &y, &mut err)
                    .expect("shapes");
                let step = StepInput {
                    x: &x,
                    rows: None,
                    live: &trace,
                    err: &err,
                };
                rule.sgd_step(&mut net, &step, 0.1).expect("shapes");
                black_box(&net);
            })
        });
    }
    g.finish();
}

fn ntk_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("ntk_analytic");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(3));
    let spec = MlpSpec::uniform(INPUT, 1024, 3, 1, Activation::Relu)
        .with_param(Parameterization::Ntk {
            w_std: 1.0,
            b_std: 0.1,
        })
        .with_bias_init(BiasInit::Gaussian);
    let inf = InfiniteMlp::from_spec(&spec).expect("ntk parameterisation");
    for n in [1000usize, 5000] {
        let x: Mat<f64> = SeedStream::new(0)
            .child("bench-ntk")
            .gaussian_matrix("x", n, INPUT, 1.0);
        g.bench_function(format!("relu_depth3_n{n}"), |b| {
            b.iter(|| {
                let k = inf
                    .kernels(
                        &x,
                        None,
                        &KernelRequest::outputs(),
                        &KernelOptions::default(),
                    )
                    .expect("valid inputs");
                black_box(k);
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("ntk_empirical");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let spec = MlpSpec::uniform(INPUT, 256, 2, CLASSES, Activation::Relu);
    let net = Mlp::<f32>::new(&spec, 0).expect("valid spec");
    let x: Mat<f32> = SeedStream::new(1)
        .child("bench-entk")
        .gaussian_matrix("x", 100, INPUT, 1.0);
    g.bench_function("w256_depth2_n100", |b| {
        b.iter(|| black_box(empirical_ntk(&net, &x, None).expect("valid inputs")))
    });
    g.finish();
}

/// Kept in a private module: `criterion_group!` defines a public function without docs.
mod groups {
    use super::{cnn_benches, mlp_benches, ntk_benches, rnn_benches, step_benches};
    criterion::criterion_group!(
        benches,
        mlp_benches,
        step_benches,
        rnn_benches,
        cnn_benches,
        ntk_benches
    );
}

criterion_main!(groups::benches);
