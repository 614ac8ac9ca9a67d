//! Criterion benchmarks of the tensor kernels that dominate training time.
//!
//! * `gemm/*` — the three GEMM forms of a dense layer of width 1024 on a batch of 100
//!   (forward `H = A·Wᵀ`, weight gradient `∂W = Dᵀ·A`, backward signal `D·W`) for input
//!   dimensions 784 (Fashion-MNIST) and 1024 (hidden layers), plus square 1024. Throughput is
//!   reported in elements/s where one element is one flop (`2·m·n·k` per product), so
//!   "Gelem/s" reads as GFLOPS.
//! * `activation/*` — `apply_into` (value) and `mul_derivative` for relu, tanh, erf and gelu on
//!   a 100×1024 batch (elements/s = entries/s).
//! * `axpy/1024x1024` — the SGD update `W ← W − lr·∂W` on a 1024×1024 weight.
//!
//! Run with `cargo bench -p widealign --bench tensor` (or `just bench`); pass a filter such as
//! `-- gemm` to run a subset. Thread count follows `RAYON_NUM_THREADS`. The comparison with
//! other GEMM implementations and numpy lives in `docs/decisions/gemm.md`
//! (`scripts/perf/gemm_table.sh`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, Criterion, SamplingMode, Throughput};
use widealign::tensor::{
    elementwise,
    gemm::{gemm, Op},
    rng::SeedStream,
    Activation, Mat,
};

/// One product `op_a(a)·op_b(b)` to benchmark.
struct GemmCase {
    name: String,
    a: Mat<f32>,
    op_a: Op,
    b: Mat<f32>,
    op_b: Op,
}

/// Batch size and layer width of the training shapes.
const BATCH: usize = 100;
const WIDTH: usize = 1024;

fn gemm_benches(c: &mut Criterion) {
    let seeds = SeedStream::new(11).child("bench-gemm");
    let mut group = c.benchmark_group("gemm");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    let mut cases = Vec::new();
    for n_in in [784usize, 1024] {
        let a: Mat<f32> = seeds.gaussian_matrix(&format!("a{n_in}"), BATCH, n_in, 1.0);
        let w: Mat<f32> = seeds.gaussian_matrix(&format!("w{n_in}"), WIDTH, n_in, 1.0);
        let d: Mat<f32> = seeds.gaussian_matrix("d", BATCH, WIDTH, 1.0);
        cases.push(GemmCase {
            name: format!("fwd_AWt_{BATCH}x{n_in}_{WIDTH}x{n_in}"),
            a: a.clone(),
            op_a: Op::N,
            b: w.clone(),
            op_b: Op::T,
        });
        cases.push(GemmCase {
            name: format!("grad_DtA_{BATCH}x{WIDTH}_{BATCH}x{n_in}"),
            a: d.clone(),
            op_a: Op::T,
            b: a,
            op_b: Op::N,
        });
        cases.push(GemmCase {
            name: format!("bwd_DW_{BATCH}x{WIDTH}_{WIDTH}x{n_in}"),
            a: d,
            op_a: Op::N,
            b: w,
            op_b: Op::N,
        });
    }
    let sq: Mat<f32> = seeds.gaussian_matrix("sq", 1024, 1024, 1.0);
    cases.push(GemmCase {
        name: "square_1024".to_string(),
        a: sq.clone(),
        op_a: Op::N,
        b: sq,
        op_b: Op::N,
    });

    for GemmCase {
        name,
        a,
        op_a,
        b,
        op_b,
    } in &cases
    {
        let (m, k) = match op_a {
            Op::N => a.shape(),
            Op::T => (a.ncols(), a.nrows()),
        };
        let n = match op_b {
            Op::N => b.ncols(),
            Op::T => b.nrows(),
        };
        let mut out = Mat::<f32>::zeros(m, n);
        group.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        group.bench_function(name.as_str(), |bench| {
            bench.iter(|| {
                gemm(1.0, a, *op_a, b, *op_b, 0.0, &mut out);
                black_box(&mut out);
            })
        });
    }
    group.finish();
}

fn activation_benches(c: &mut Criterion) {
    let seeds = SeedStream::new(12).child("bench-activation");
    let h: Mat<f32> = seeds.gaussian_matrix("h", BATCH, WIDTH, 1.0);
    let g0: Mat<f32> = seeds.gaussian_matrix("g", BATCH, WIDTH, 1.0);
    let mut group = c.benchmark_group("activation");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements((BATCH * WIDTH) as u64));
    for act in [
        Activation::Relu,
        Activation::Tanh,
        Activation::Erf,
        Activation::Gelu,
    ] {
        let mut out = Mat::<f32>::zeros(BATCH, WIDTH);
        group.bench_function(format!("{}_value_{BATCH}x{WIDTH}", act.name()), |bench| {
            bench.iter(|| {
                act.apply_into(h.as_slice(), out.as_mut_slice());
                black_box(&mut out);
            })
        });
        // mul_derivative overwrites g, so restore it each time; the copy is timed too and is
        // measured alone by `copy_restore_{BATCH}x{WIDTH}` below.
        let mut g = g0.clone();
        group.bench_function(
            format!("{}_mul_derivative_{BATCH}x{WIDTH}", act.name()),
            |bench| {
                bench.iter(|| {
                    g.copy_from(&g0);
                    act.mul_derivative(h.as_slice(), g.as_mut_slice());
                    black_box(&mut g);
                })
            },
        );
    }
    let mut g = g0.clone();
    group.bench_function(format!("copy_restore_{BATCH}x{WIDTH}"), |bench| {
        bench.iter(|| {
            g.copy_from(&g0);
            black_box(&mut g);
        })
    });
    group.finish();
}

fn axpy_benches(c: &mut Criterion) {
    let seeds = SeedStream::new(13).child("bench-axpy");
    let grad: Vec<f32> = seeds.gaussian_vec("grad", 1024 * 1024, 1.0);
    let mut w: Vec<f32> = seeds.gaussian_vec("w", 1024 * 1024, 1.0);
    let mut group = c.benchmark_group("axpy");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(grad.len() as u64));
    // Alternate the sign so the weights stay bounded however many iterations run.
    let mut sign = 1.0f32;
    group.bench_function("1024x1024", |bench| {
        bench.iter(|| {
            sign = -sign;
            elementwise::axpy(sign * 1e-3, &grad, &mut w);
            black_box(&mut w);
        })
    });
    group.finish();
}

/// Kept in a private module: `criterion_group!` defines a public function without docs.
mod groups {
    use super::{activation_benches, axpy_benches, gemm_benches};
    criterion::criterion_group!(benches, gemm_benches, activation_benches, axpy_benches);
}

criterion_main!(groups::benches);
