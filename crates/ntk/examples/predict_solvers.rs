//! The measurement behind `docs/decisions/predict-solver.md`: on the first N (stratified)
//! Fashion-MNIST training images, the relu depth-3 NTK stored in tiles, then
//!
//! * the blocked Cholesky in `f32` and in `f64` storage (seconds, GFLOP/s at `n³/3` multiply-adds),
//! * conjugate gradients (Jacobi preconditioner, `f64` vectors, `f32` tiles) on the same 10
//!   right-hand sides to a relative residual of 1e-6 (iterations, seconds; stopped at
//!   `MAX_CG_SECONDS`),
//!
//! and the largest difference of `α = Θ_λ^{−1} Y` between the `f32` and `f64` factorisations.
//!
//! `cargo run --release -p widealign-ntk --example predict_solvers -- N [DIAG_REG] [TILE]`
//! (needs `apt-get install dataset-fashion-mnist`). Prints one JSON line.
use std::time::Instant;

use widealign_data::{load, LoadOptions, Split};
use widealign_models::{BiasInit, MlpSpec, Parameterization};
use widealign_ntk::analytic::{InfiniteMlp, KernelOptions};
use widealign_ntk::ensemble::{fit_tiles, kernel_tiles, KernelKind};
use widealign_ntk::solve::SymTiles;
use widealign_tensor::{Activation, Float, Mat};

const MAX_CG_SECONDS: f64 = 120.0;

fn cg(a: &SymTiles<f32>, ridge: f64, b: &Mat<f64>, tol: f64) -> (usize, f64, f64) {
    let start = Instant::now();
    let n = a.n();
    let diag: Vec<f64> = (0..n)
        .map(|i| {
            a.tile_ref(i / a.tile(), i / a.tile())[(i % a.tile(), i % a.tile())] as f64 + ridge
        })
        .collect();
    let apply = |x: &Mat<f64>| a.sym_mul(x).unwrap() + x * ridge;
    let mut x = Mat::zeros(n, b.ncols());
    let mut r = b.clone();
    let prec = |r: &Mat<f64>| Mat::from_fn(n, r.ncols(), |i, c| r[(i, c)] / diag[i]);
    let mut z = prec(&r);
    let mut p = z.clone();
    let bnorm = b.norm();
    let mut rz: Vec<f64> = (0..b.ncols())
        .map(|c| r.column(c).dot(&z.column(c)))
        .collect();
    let mut it = 0;
    while r.norm() / bnorm > tol && start.elapsed().as_secs_f64() < MAX_CG_SECONDS {
        let ap = apply(&p);
        for c in 0..b.ncols() {
            let alpha = rz[c] / p.column(c).dot(&ap.column(c));
            let pc = p.column(c).into_owned();
            let apc = ap.column(c).into_owned();
            x.column_mut(c).axpy(alpha, &pc, 1.0);
            r.column_mut(c).axpy(-alpha, &apc, 1.0);
        }
        z = prec(&r);
        for c in 0..b.ncols() {
            let new = r.column(c).dot(&z.column(c));
            let beta = new / rz[c];
            rz[c] = new;
            let zc = z.column(c).into_owned();
            p.column_mut(c).axpy(1.0, &zc, beta);
        }
        it += 1;
    }
    (it, start.elapsed().as_secs_f64(), r.norm() / bnorm)
}

fn time_chol<T: Float>(
    net: &InfiniteMlp,
    x: &Mat<f64>,
    y: &Mat<f64>,
    reg: f64,
    b: usize,
) -> (f64, f64, Mat<f64>) {
    let t0 = Instant::now();
    let mut t = kernel_tiles::<T>(
        net,
        x,
        KernelKind::Ntk,
        b,
        &KernelOptions::default(),
        &|_| {},
    )
    .unwrap();
    let kernel_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let (alpha, _) = fit_tiles(&mut t, y, reg, &|_| {}).unwrap();
    (kernel_s, t1.elapsed().as_secs_f64(), alpha)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(5000, |s| s.parse().unwrap());
    let reg: f64 = args.get(2).map_or(1e-4, |s| s.parse().unwrap());
    let b: usize = args.get(3).map_or(512, |s| s.parse().unwrap());
    let d = load(
        "fashion-mnist",
        &LoadOptions {
            train_size: Some(n),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let Split::Tabular(tr) = &d.train else {
        panic!("tabular")
    };
    let x = tr.x.map(|v| v as f64);
    let y = tr.y.map(|v| v as f64);
    let spec = MlpSpec::uniform(784, 1, 3, 1, Activation::Relu)
        .with_param(Parameterization::Ntk {
            w_std: 1.0,
            b_std: 0.1,
        })
        .with_bias_init(BiasInit::Gaussian);
    let net = InfiniteMlp::from_spec(&spec).unwrap();
    let (k32, c32, a32) = time_chol::<f32>(&net, &x, &y, reg, b);
    let (k64, c64, a64) = time_chol::<f64>(&net, &x, &y, reg, b);
    let gf = |s: f64| (n as f64).powi(3) / 3.0 * 2.0 / s / 1e9;
    let alpha_diff = (&a32 - &a64).abs().max() / a64.abs().max();
    let tiles = kernel_tiles::<f32>(
        &net,
        &x,
        KernelKind::Ntk,
        b,
        &KernelOptions::default(),
        &|_| {},
    )
    .unwrap();
    let ridge = reg * tiles.trace() / n as f64;
    let (iters, cg_s, resid) = cg(&tiles, ridge, &y, 1e-6);
    println!(
        "{{\"n\": {n}, \"diag_reg\": {reg}, \"tile\": {b}, \"kernel_f32_s\": {k32:.2}, \"cholesky_f32_s\": {c32:.2}, \"cholesky_f32_gflops\": {:.1}, \"kernel_f64_s\": {k64:.2}, \"cholesky_f64_s\": {c64:.2}, \"cholesky_f64_gflops\": {:.1}, \"alpha_rel_diff_f32_f64\": {alpha_diff:.3e}, \"cg_iterations\": {iters}, \"cg_seconds\": {cg_s:.2}, \"cg_rel_residual\": {resid:.2e}, \"threads\": {}}}",
        gf(c32), gf(c64), rayon::current_num_threads()
    );
}
