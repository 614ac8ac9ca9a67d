//! The convolutional kernels of docs/theory.md §3.8: convergence of the empirical CNN NTK with
//! channel count, and the time of the analytic kernels.
//!
//! ```text
//! cargo run --release -p widealign-ntk --example cnn_kernel_table -- converge [16,64,256,1024] [seeds]
//! cargo run --release -p widealign-ntk --example cnn_kernel_table -- time N SIDE [LAYERS]
//! ```
//!
//! `converge`: 4 embedded digits (8×8×1, each scaled to unit mean square), 2 convolutions of
//! 3×3 filters, `s_w = 1.3`, `s_b = 0.2`, scalar output; per channel count
//! `‖Θ_emp − Θ‖_F/‖Θ‖_F` averaged over seeds `0..seeds` and the fitted log-log slope, for relu
//! (zero biases) and erf (Gaussian biases) with GAP and flatten readouts.
//!
//! `time`: NNGP + NTK of N images of SIDE×SIDE×1 (the first N embedded digits for SIDE = 8,
//! otherwise `N(0, 1)` pixels), LAYERS (default 3) relu convolutions, both readouts; prints the
//! seconds and the peak resident memory.
use std::time::Instant;

use widealign_models::{BiasInit, Cnn, CnnReadout, CnnSpec, Parameterization};
use widealign_ntk::analytic::KernelOptions;
use widealign_ntk::cnn::{empirical_cnn_ntk, InfiniteCnn};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The first `n` embedded digits, each scaled to unit mean square.
fn digits(n: usize) -> Result<Mat<f64>, Box<dyn std::error::Error>> {
    let (train, _) = widealign_data::digits::load()?;
    if n > train.x.nrows() {
        return Err(format!("only {} digits", train.x.nrows()).into());
    }
    let mut x: Mat<f64> = train.x.rows(0, n).map(f64::from);
    for mut row in x.row_iter_mut() {
        let rms = (row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64).sqrt();
        row /= rms.max(f64::MIN_POSITIVE);
    }
    Ok(x)
}

fn spec(
    side: usize,
    layers: usize,
    act: Activation,
    readout: CnnReadout,
    bias: BiasInit,
) -> CnnSpec {
    CnnSpec::new([side, side, 1], vec![1; layers], 1, act)
        .with_readout(readout)
        .with_param(Parameterization::Ntk {
            w_std: 1.3,
            b_std: 0.2,
        })
        .with_bias_init(bias)
}

fn converge(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let channels: Vec<usize> = args
        .first()
        .map_or("16,64,256,1024", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let seeds: u64 = args.get(1).map_or(Ok(3), |s| s.parse())?;
    let x = digits(4)?;
    let cols: Vec<String> = channels.iter().map(|c| format!("C = {c}")).collect();
    println!("| activation | readout | {} | slope |", cols.join(" | "));
    println!("|---|---|{}---|", "---|".repeat(channels.len()));
    for (act, bias) in [
        (Activation::Relu, BiasInit::Zero),
        (Activation::Erf, BiasInit::Gaussian),
    ] {
        for readout in [CnnReadout::Gap, CnnReadout::Flatten] {
            let sp = spec(8, 2, act, readout, bias);
            let ana = InfiniteCnn::from_spec(&sp)?
                .kernels(&x, None, false, &KernelOptions::default())?
                .ntk;
            let mut errs = Vec::new();
            for &c in &channels {
                let spc = CnnSpec {
                    channels: vec![c; 2],
                    ..sp.clone()
                };
                let mut e = 0.0;
                for seed in 0..seeds {
                    let emp = empirical_cnn_ntk(&Cnn::<f64>::new(&spc, seed)?, &x, None, 0)?;
                    e += (emp.total() - &ana).norm() / ana.norm();
                }
                errs.push(e / seeds as f64);
            }
            let lx: Vec<f64> = channels.iter().map(|&c| (c as f64).ln()).collect();
            let ly: Vec<f64> = errs.iter().map(|e| e.ln()).collect();
            let n = lx.len() as f64;
            let (mx, my) = (lx.iter().sum::<f64>() / n, ly.iter().sum::<f64>() / n);
            let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
            let sxx: f64 = lx.iter().map(|a| (a - mx) * (a - mx)).sum();
            let cells: Vec<String> = errs.iter().map(|e| format!("{e:.4}")).collect();
            let bias_name = if bias == BiasInit::Zero {
                "zero"
            } else {
                "Gaussian"
            };
            println!(
                "| {act} ({bias_name} biases) | {} | {} | {:.2} |",
                readout.name(),
                cells.join(" | "),
                sxy / sxx
            );
        }
    }
    Ok(())
}

fn time(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = args.first().ok_or("time N SIDE [LAYERS]")?.parse()?;
    let side: usize = args.get(1).ok_or("time N SIDE [LAYERS]")?.parse()?;
    let layers: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let x = if side == 8 {
        digits(n)?
    } else {
        SeedStream::new(0).gaussian_matrix("images", n, side * side, 1.0)
    };
    for readout in [CnnReadout::Flatten, CnnReadout::Gap] {
        let sp = spec(side, layers, Activation::Relu, readout, BiasInit::Gaussian);
        let inf = InfiniteCnn::from_spec(&sp)?;
        let start = Instant::now();
        let k = inf.kernels(&x, None, false, &KernelOptions::default())?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "N = {n}, {side}×{side}×1, {layers} relu conv layers, {}: NNGP + NTK in {secs:.3} s \
             ({} threads), peak RSS {:.0} MiB, NTK[0][1] = {:.6}",
            readout.name(),
            rayon::current_num_threads(),
            peak_rss_mib().unwrap_or(f64::NAN),
            k.ntk[(0, 1.min(n - 1))]
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("converge") => converge(&args[2..]),
        Some("time") => time(&args[2..]),
        _ => {
            Err("usage: cnn_kernel_table converge [CHANNELS] [SEEDS] | time N SIDE [LAYERS]".into())
        }
    }
}
