//! widealign's blocked Cholesky (`SymTiles`, tiles of 512, rayon) against faer's
//! (`faer::linalg::cholesky::llt::factor::cholesky_in_place`, `Par::rayon`) on the same symmetric
//! positive-definite matrices, `f32` and `f64`, repetitions interleaved in one run; then whether
//! each factor is the same bits with 1 and 2 threads.
//!
//! `cargo run --release --manifest-path scripts/faer-cholesky/Cargo.toml -- [REPS] N...`
//! (default: 3 repetitions, N = 4000 8000). Prints one JSON line per (N, precision) with the
//! median seconds of each solver, their ratio (and the median of the per-repetition ratios), the relative residual of one solve, and the
//! thread-count check.
use std::time::Instant;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::Par;
use widealign_ntk::solve::{SymTiles, DEFAULT_TILE};
use widealign_tensor::rng::SeedStream;
use widealign_tensor::{Float, Mat};

/// A dense SPD test matrix shaped like a kernel matrix: `1 + X Xᵀ/d + 0.1 I` with Gaussian
/// `X` (`n × 256`), entries of order 1 and no tiny values (a matrix whose factor underflows into
/// subnormal `f32` numbers times the CPU's slow path, not the solver). The Cholesky does the
/// same arithmetic whatever the values, so only the size matters for time.
fn spd(n: usize) -> Mat<f64> {
    let d = 256;
    let x: Mat<f64> = SeedStream::new(0).gaussian_matrix("x", n, d, 1.0);
    let mut a = &x * x.transpose() / d as f64;
    a.add_scalar_mut(1.0);
    for i in 0..n {
        a[(i, i)] += 0.1;
    }
    a
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(f)
}

/// widealign: fill the tiles, factorise; seconds of the factorisation and the factor's lower
/// triangle as f64 bits, row by row.
fn ours<T: Float>(a: &Mat<f64>) -> (f64, Vec<u64>, SymTiles<T>) {
    let mut t = SymTiles::<T>::from_dense(a, DEFAULT_TILE).expect("tiles");
    let start = Instant::now();
    t.cholesky().expect("positive definite");
    let s = start.elapsed().as_secs_f64();
    let d = t.to_dense();
    let bits = lower_bits(a.nrows(), |i, j| d[(i, j)]);
    (s, bits, t)
}

trait FaerFloat: faer::traits::RealField + Copy {
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
}
impl FaerFloat for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}
impl FaerFloat for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// faer: copy into a faer matrix, factorise with `threads` threads; seconds and the bits of
/// the lower triangle.
fn faer_chol<T: FaerFloat>(a: &Mat<f64>, threads: usize) -> (f64, Vec<u64>, faer::Mat<T>) {
    let n = a.nrows();
    let mut m = faer::Mat::<T>::from_fn(n, n, |i, j| T::from_f64(a[(i, j)]));
    let par = if threads == 1 {
        Par::Seq
    } else {
        Par::rayon(threads)
    };
    let mut buf = MemBuffer::new(cholesky_in_place_scratch::<T>(n, par, Default::default()));
    let stack = MemStack::new(&mut buf);
    let start = Instant::now();
    cholesky_in_place(
        m.as_mut(),
        Default::default(),
        par,
        stack,
        Default::default(),
    )
    .expect("positive definite");
    let s = start.elapsed().as_secs_f64();
    let bits = lower_bits(n, |i, j| m[(i, j)].to_f64());
    (s, bits, m)
}

fn lower_bits(n: usize, f: impl Fn(usize, usize) -> f64) -> Vec<u64> {
    let mut v = Vec::with_capacity(n * (n + 1) / 2);
    for i in 0..n {
        for j in 0..=i {
            v.push(f(i, j).to_bits());
        }
    }
    v
}

/// `‖A x − b‖ / ‖b‖` with `x` from widealign's factor (b = ones), in f64.
fn residual_ours<T: Float>(a: &Mat<f64>, t: &SymTiles<T>) -> f64 {
    let n = a.nrows();
    let b = Mat::from_element(n, 1, 1.0);
    let mut x = b.clone();
    t.solve_in_place(&mut x).expect("solve");
    (a * &x - &b).norm() / b.norm()
}

/// The same with faer's factor (`L` in the lower triangle), substitutions in f64.
fn residual_faer<T: FaerFloat>(a: &Mat<f64>, l: &faer::Mat<T>) -> f64 {
    let n = a.nrows();
    let lf = |i: usize, j: usize| l[(i, j)].to_f64();
    let mut x = vec![1.0f64; n];
    for i in 0..n {
        let mut s = x[i];
        for j in 0..i {
            s -= lf(i, j) * x[j];
        }
        x[i] = s / lf(i, i);
    }
    for i in (0..n).rev() {
        let mut s = x[i];
        for j in i + 1..n {
            s -= lf(j, i) * x[j];
        }
        x[i] = s / lf(i, i);
    }
    let xm = Mat::from_vec(n, 1, x);
    let b = Mat::from_element(n, 1, 1.0);
    (a * &xm - &b).norm() / b.norm()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn compare<T: Float + FaerFloat>(a: &Mat<f64>, reps: usize, name: &str) {
    let n = a.nrows();
    let threads = 2;
    let (mut t_ours, mut t_faer) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..reps {
        // interleaved: one of each per repetition, both on the same 2-thread pool
        let (s, _, t) = in_pool(threads, || ours::<T>(a));
        t_ours.push(s);
        let (s, _, l) = in_pool(threads, || faer_chol::<T>(a, threads));
        t_faer.push(s);
        last = Some((t, l));
    }
    let (t, l) = last.expect("at least one repetition");
    let (r_ours, r_faer) = (residual_ours(a, &t), residual_faer(a, &l));
    drop((t, l));
    let ours_same = in_pool(1, || ours::<T>(a)).1 == in_pool(2, || ours::<T>(a)).1;
    let faer_same = in_pool(1, || faer_chol::<T>(a, 1)).1 == in_pool(2, || faer_chol::<T>(a, 2)).1;
    let (mo, mf) = (median(t_ours.clone()), median(t_faer.clone()));
    // the ratio of each interleaved pair, then its median: robust to load that changes
    // between repetitions
    let pair = median(t_ours.iter().zip(&t_faer).map(|(o, f)| o / f).collect());
    let gflops = |s: f64| (n as f64).powi(3) / 3.0 / s / 1e9;
    println!(
        "{{\"n\":{n},\"precision\":\"{name}\",\"reps\":{reps},\"threads\":{threads},\
         \"widealign_seconds\":{t_ours:?},\"faer_seconds\":{t_faer:?},\
         \"widealign_median\":{mo:.3},\"faer_median\":{mf:.3},\
         \"widealign_over_faer\":{:.3},\"median_pair_ratio\":{pair:.3},\"widealign_gmadds\":{:.1},\"faer_gmadds\":{:.1},\
         \"residual_widealign\":{r_ours:.2e},\"residual_faer\":{r_faer:.2e},\
         \"widealign_same_bits_1_2_threads\":{ours_same},\"faer_same_bits_1_2_threads\":{faer_same}}}",
        mo / mf,
        gflops(mo),
        gflops(mf),
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: [REPS] N..."))
        .collect();
    let (reps, sizes) = match args.as_slice() {
        [] => (3, vec![4000, 8000]),
        [n] => (3, vec![*n]),
        [r, ns @ ..] => (*r, ns.to_vec()),
    };
    for &n in &sizes {
        let a = spd(n);
        compare::<f32>(&a, reps, "f32");
        compare::<f64>(&a, reps, "f64");
    }
}
