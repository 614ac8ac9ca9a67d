//! `widealign bench`: throughput measurements on this machine (no timing is asserted anywhere).

use std::time::Instant;

use serde_json::json;
use widealign_tensor::{gemm, rng::SeedStream, Mat};

use crate::cli::BenchGemmArgs;
use crate::emit;
use crate::error::CliError;

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
