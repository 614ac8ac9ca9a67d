//! Measures f32 GEMM throughput (GFLOPS) of three Rust implementations on the shapes that
//! matter for widealign, printing one JSON object per (shape, implementation) on stdout.
//!
//! Implementations (`--impls`, comma separated, default all):
//!
//! * `nalgebra` — nalgebra's own product (`DMatrix::mul_to`, which calls `matrixmultiply::sgemm`);
//!   transposed operands are materialised first with `transpose()` (as idiomatic nalgebra code
//!   does), and the copy is timed too. Its thread count is `MATMUL_NUM_THREADS` (the workspace
//!   library builds matrixmultiply without threading, i.e. one thread).
//! * `matrixmultiply` — `matrixmultiply::sgemm` called with strides (no transpose copies),
//!   `threading` feature, thread count from `MATMUL_NUM_THREADS` (read once per process).
//! * `widealign` — `widealign_tensor::gemm::gemm` (the `gemm` crate on the rayon pool,
//!   thread count from `RAYON_NUM_THREADS`).
//!
//! Every measurement warms up, then times single calls and reports the best and the median.
//! `scripts/perf/gemm_table.sh` runs this binary together with numpy and assembles the table in
//! `docs/decisions/gemm.md`.
//!
//! ```text
//! MATMUL_NUM_THREADS=2 RAYON_NUM_THREADS=2 \
//!   cargo run --release -p widealign-tensor --example gemm_compare -- \
//!   [--impls nalgebra,matrixmultiply,widealign] [--shapes sq256,fwd784,...] [--min-reps 5]
//!   [--budget-secs 1.0] [--max-square 4096]
//! ```
#![allow(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use widealign_tensor::gemm::{gemm, Op};
use widealign_tensor::{rng::SeedStream, Mat};

/// One product `C (m×n) = op_a(A) (m×k) · op_b(B) (k×n)`.
#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    what: &'static str,
    m: usize,
    k: usize,
    n: usize,
    op_a: Op,
    op_b: Op,
}

fn shapes() -> Vec<Shape> {
    let sq = |name, n| Shape {
        name,
        what: "square A·B",
        m: n,
        k: n,
        n,
        op_a: Op::N,
        op_b: Op::N,
    };
    let mut v = vec![
        sq("sq256", 256),
        sq("sq512", 512),
        sq("sq1024", 1024),
        sq("sq2048", 2048),
        sq("sq4096", 4096),
    ];
    for (tag, n_in) in [("784", 784usize), ("1024", 1024)] {
        let width = 1024;
        v.push(Shape {
            name: leak(format!("fwd{tag}")),
            what: "forward H=A·Wᵀ",
            m: 100,
            k: n_in,
            n: width,
            op_a: Op::N,
            op_b: Op::T,
        });
        v.push(Shape {
            name: leak(format!("grad{tag}")),
            what: "weight grad Dᵀ·A",
            m: width,
            k: 100,
            n: n_in,
            op_a: Op::T,
            op_b: Op::N,
        });
        v.push(Shape {
            name: leak(format!("bwd{tag}")),
            what: "backward D·W",
            m: 100,
            k: width,
            n: n_in,
            op_a: Op::N,
            op_b: Op::N,
        });
    }
    v
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn op_char(op: Op) -> char {
    match op {
        Op::N => 'N',
        Op::T => 'T',
    }
}

/// Stored matrix for operand `op(X)` of shape `rows × cols`.
fn operand(seeds: &SeedStream, name: &str, op: Op, rows: usize, cols: usize) -> Mat<f32> {
    match op {
        Op::N => seeds.gaussian_matrix(name, rows, cols, 1.0),
        Op::T => seeds.gaussian_matrix(name, cols, rows, 1.0),
    }
}

struct Timing {
    best: Duration,
    median: Duration,
    reps: usize,
}

fn time_it(mut f: impl FnMut(), min_reps: usize, budget: Duration) -> Timing {
    // Warm-up: at least one call and at least 0.2 s (caches, thread pools, CPU clocks).
    let start = Instant::now();
    f();
    while start.elapsed() < Duration::from_millis(200) {
        f();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < min_reps || (start.elapsed() < budget && samples.len() < 1000) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    Timing {
        best: samples[0],
        median: samples[samples.len() / 2],
        reps: samples.len(),
    }
}

fn run_nalgebra(a: &Mat<f32>, op_a: Op, b: &Mat<f32>, op_b: Op, c: &mut Mat<f32>) {
    match (op_a, op_b) {
        (Op::N, Op::N) => a.mul_to(b, c),
        (Op::T, Op::N) => a.transpose().mul_to(b, c),
        (Op::N, Op::T) => a.mul_to(&b.transpose(), c),
        (Op::T, Op::T) => a.transpose().mul_to(&b.transpose(), c),
    }
}

fn run_matrixmultiply(s: &Shape, a: &Mat<f32>, b: &Mat<f32>, c: &mut Mat<f32>) {
    // Column-major storage: element (i, j) at i·rs + j·cs with rs = 1, cs = nrows.
    let (rsa, csa) = match s.op_a {
        Op::N => (1, a.nrows() as isize),
        Op::T => (a.nrows() as isize, 1),
    };
    let (rsb, csb) = match s.op_b {
        Op::N => (1, b.nrows() as isize),
        Op::T => (b.nrows() as isize, 1),
    };
    let csc = c.nrows() as isize;
    // SAFETY: shapes and strides describe the live column-major buffers of `a`, `b` and `c`;
    // `c` is borrowed mutably and aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            s.m,
            s.k,
            s.n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            1,
            csc,
        );
    }
}

fn main() {
    let mut impls = vec![
        "nalgebra".to_string(),
        "matrixmultiply".to_string(),
        "widealign".to_string(),
    ];
    let mut only: Option<Vec<String>> = None;
    let mut min_reps = 5usize;
    let mut budget = 1.0f64;
    let mut max_square = 4096usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("gemm_compare: flag {flag} needs a value");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--impls" => impls = value().split(',').map(str::to_string).collect(),
            "--shapes" => only = Some(value().split(',').map(str::to_string).collect()),
            "--min-reps" => min_reps = parse(&flag, &value()),
            "--budget-secs" => budget = parse(&flag, &value()),
            "--max-square" => max_square = parse(&flag, &value()),
            _ => {
                eprintln!("gemm_compare: unknown flag {flag}");
                std::process::exit(2)
            }
        }
    }
    for i in &impls {
        if !["nalgebra", "matrixmultiply", "widealign"].contains(&i.as_str()) {
            eprintln!("gemm_compare: --impls: unknown implementation {i}");
            std::process::exit(2)
        }
    }
    let budget = Duration::from_secs_f64(budget);
    let mm_threads = std::env::var("MATMUL_NUM_THREADS").unwrap_or_default();
    let seeds = SeedStream::new(2024).child("gemm_compare");
    for s in shapes() {
        if let Some(only) = &only {
            if !only.iter().any(|o| o == s.name) {
                continue;
            }
        }
        if s.name.starts_with("sq") && s.m > max_square {
            continue;
        }
        let (ra, ca) = (s.m, s.k);
        let a = operand(&seeds, "a", s.op_a, ra, ca);
        let b = operand(&seeds, "b", s.op_b, s.k, s.n);
        let mut c = Mat::<f32>::zeros(s.m, s.n);
        let mut reference: Option<Mat<f32>> = None;
        for imp in &impls {
            let t = match imp.as_str() {
                "nalgebra" => time_it(
                    || {
                        run_nalgebra(&a, s.op_a, &b, s.op_b, &mut c);
                        black_box(&c);
                    },
                    min_reps,
                    budget,
                ),
                "matrixmultiply" => time_it(
                    || {
                        run_matrixmultiply(&s, &a, &b, &mut c);
                        black_box(&c);
                    },
                    min_reps,
                    budget,
                ),
                _ => time_it(
                    || {
                        gemm(1.0, &a, s.op_a, &b, s.op_b, 0.0, &mut c);
                        black_box(&c);
                    },
                    min_reps,
                    budget,
                ),
            };
            // All implementations must compute the same product (to f32 rounding).
            match &reference {
                None => reference = Some(c.clone()),
                Some(r) => {
                    let scale = r.abs().max().max(1.0);
                    let err = (&c - r).abs().max() / scale;
                    if err > 1e-4 {
                        eprintln!("gemm_compare: {imp} differs on {}: rel error {err}", s.name);
                        std::process::exit(1);
                    }
                }
            }
            let flops = 2.0 * (s.m * s.n * s.k) as f64;
            let threads = match imp.as_str() {
                "widealign" => rayon::current_num_threads().to_string(),
                _ if mm_threads.is_empty() => "default".to_string(),
                _ => mm_threads.clone(),
            };
            println!(
                "{{\"impl\":\"{imp}\",\"shape\":\"{}\",\"what\":\"{}\",\"form\":\"{}{}\",\"m\":{},\"k\":{},\"n\":{},\"threads\":\"{threads}\",\"reps\":{},\"best_ms\":{:.4},\"median_ms\":{:.4},\"gflops\":{:.2},\"gflops_median\":{:.2}}}",
                s.name,
                s.what,
                op_char(s.op_a),
                op_char(s.op_b),
                s.m,
                s.k,
                s.n,
                t.reps,
                t.best.as_secs_f64() * 1e3,
                t.median.as_secs_f64() * 1e3,
                flops / t.best.as_secs_f64() / 1e9,
                flops / t.median.as_secs_f64() / 1e9,
            );
        }
    }
}

fn parse<T: std::str::FromStr>(flag: &str, v: &str) -> T {
    v.parse().unwrap_or_else(|_| {
        eprintln!("gemm_compare: {flag}: cannot parse {v:?}");
        std::process::exit(2)
    })
}
