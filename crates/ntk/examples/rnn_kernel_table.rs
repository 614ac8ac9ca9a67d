//! Relative error of the empirical NTK of finite Elman RNNs against the infinite-width RNN NTK,
//! across widths — the table of docs/theory.md §3.7.
//!
//! `cargo run --release -p widealign-ntk --example rnn_kernel_table -- [64,256,1024,4096] [seeds]`
//!
//! 5 sequences of 4 steps in dimension 3 (`N(0, 0.8²)` entries from `SeedStream::new(5)`; the
//! second sequence is twice the first, the third its negative, the fourth zero at step 1), the
//! output at the last step, `s_w = 1.3`, `s_b = 0.3`; relu and tanh with zero initial biases, erf
//! with Gaussian ones. Per width: `‖Θ_emp − Θ‖_F/‖Θ‖_F` averaged over seeds `0..seeds`, and the
//! same for the cross-step kernel `(t, s) = (4, 2)`; then the fitted log-log slope.
use widealign_models::{BiasInit, Parameterization, Rnn, RnnSpec};
use widealign_ntk::analytic::KernelOptions;
use widealign_ntk::rnn::{empirical_rnn_ntk, InfiniteRnn};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

fn seqs() -> Vec<Mat<f64>> {
    let s = SeedStream::new(5);
    (0..4)
        .map(|t| {
            let mut x: Mat<f64> = s.gaussian_matrix(&format!("x{t}"), 5, 3, 0.8);
            let r0 = x.row(0).into_owned();
            x.set_row(1, &(&r0 * 2.0));
            x.set_row(2, &(-&r0));
            if t == 0 {
                x.row_mut(3).fill(0.0);
            }
            x
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let widths: Vec<usize> = args
        .get(1)
        .map_or("64,256,1024,4096", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let seeds: u64 = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let xs = seqs();
    println!(
        "| activation | steps | {} | slope |",
        widths
            .iter()
            .map(|w| format!("width {w}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|---|{}---|", "---|".repeat(widths.len()));
    for (act, bias) in [
        (Activation::Relu, BiasInit::Zero),
        (Activation::Erf, BiasInit::Gaussian),
        (Activation::Tanh, BiasInit::Zero),
    ] {
        let spec = |w: usize| {
            RnnSpec::new(3, w, 1, act)
                .with_param(Parameterization::Ntk {
                    w_std: 1.3,
                    b_std: 0.3,
                })
                .with_bias_init(bias)
        };
        let inf = InfiniteRnn::from_spec(&spec(1))?;
        for steps in [(4, 4), (4, 2)] {
            let ana = inf
                .kernels(&xs, None, steps, &KernelOptions::default())?
                .ntk;
            let mut errs = Vec::new();
            for &w in &widths {
                let mut e = 0.0;
                for seed in 0..seeds {
                    let net = Rnn::<f64>::new(&spec(w), seed)?;
                    let emp = empirical_rnn_ntk(&net, &xs, None, steps, 0)?.total();
                    e += (&emp - &ana).norm() / ana.norm();
                }
                errs.push(e / seeds as f64);
            }
            let lx: Vec<f64> = widths.iter().map(|&w| (w as f64).ln()).collect();
            let ly: Vec<f64> = errs.iter().map(|e| e.ln()).collect();
            let (mx, my) = (
                lx.iter().sum::<f64>() / lx.len() as f64,
                ly.iter().sum::<f64>() / ly.len() as f64,
            );
            let slope = lx
                .iter()
                .zip(&ly)
                .map(|(x, y)| (x - mx) * (y - my))
                .sum::<f64>()
                / lx.iter().map(|x| (x - mx) * (x - mx)).sum::<f64>();
            let cells: Vec<String> = errs.iter().map(|e| format!("{e:.4}")).collect();
            println!(
                "| {act} ({bias:?} biases) | {steps:?} | {} | {slope:.2} |",
                cells.join(" | ")
            );
        }
    }
    Ok(())
}
