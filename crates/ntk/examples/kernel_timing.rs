//! Times the analytic NNGP + NTK of a depth-3 relu network on N random inputs.
//!
//! `cargo run --release -p widealign-ntk --example kernel_timing -- 10000 [input_dim] [hidden_layers]`
use std::time::Instant;

use widealign_models::{BiasInit, MlpSpec, Parameterization};
use widealign_ntk::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let dim: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let hidden: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let x: Mat<f64> = SeedStream::new(0).gaussian_matrix("inputs", n, dim, 1.0);
    let spec = MlpSpec::uniform(dim, 1, hidden, 1, Activation::Relu)
        .with_param(Parameterization::Ntk {
            w_std: 1.4,
            b_std: 0.1,
        })
        .with_bias_init(BiasInit::Gaussian);
    let net = InfiniteMlp::from_spec(&spec).expect("valid spec");
    let start = Instant::now();
    let k = net
        .kernels(
            &x,
            None,
            &KernelRequest::outputs(),
            &KernelOptions::default(),
        )
        .expect("kernels");
    let secs = start.elapsed().as_secs_f64();
    let ntk = k.ntk.expect("requested");
    println!(
        "N = {n}, n0 = {dim}, {hidden} hidden relu layers: NNGP + NTK in {secs:.2} s \
         ({} threads), peak RSS {:.0} MiB, ntk[0,1] = {:.6}",
        rayon::current_num_threads(),
        peak_rss_mib().unwrap_or(f64::NAN),
        ntk[(0, 1)]
    );
}
