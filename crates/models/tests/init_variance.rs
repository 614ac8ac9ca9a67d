//! NTK parameterisation: the output variance at initialisation does not depend on the width.
//!
//! For a ReLU network the expectation is exact at every width: given the previous layer, a
//! pre-activation is Gaussian with variance `q = s_w²‖a‖²/n + s_b²`, and `E[relu(h)²] = q/2` is
//! linear in `q`, so `E[f(x)²] = K^L(x,x)` with `K^1 = s_w²‖x‖²/n_0 + s_b²`,
//! `K^{l+1} = s_w² K^l/2 + s_b²`. We check the mean of `f²/K` over fixed seeds at widths 64 and
//! 1024 against 1 and against each other, with a tolerance of 4 standard errors.

use widealign_models::{BiasInit, Mlp, MlpSpec, Parameterization};
use widealign_tensor::{rng::SeedStream, Activation, Mat};

const W_STD: f64 = 1.4;
const B_STD: f64 = 0.3;

/// Per-seed mean of `f(x)²/K(x,x)` over outputs and inputs; returns (mean, standard error).
fn normalised_second_moment(width: usize, seeds: u64, x: &Mat<f64>) -> (f64, f64) {
    let spec = MlpSpec::uniform(x.ncols(), width, 2, 8, Activation::Relu)
        .with_param(Parameterization::Ntk {
            w_std: W_STD,
            b_std: B_STD,
        })
        .with_bias_init(BiasInit::Gaussian);
    let kernel: Vec<f64> = (0..x.nrows())
        .map(|i| {
            let mut k = W_STD * W_STD * x.row(i).norm_squared() / x.ncols() as f64 + B_STD * B_STD;
            for _ in 0..2 {
                k = W_STD * W_STD * k / 2.0 + B_STD * B_STD;
            }
            k
        })
        .collect();
    let per_seed: Vec<f64> = (0..seeds)
        .map(|seed| {
            let f = Mlp::<f64>::new(&spec, 1000 + seed)
                .unwrap()
                .predict(x)
                .unwrap();
            let mut acc = 0.0;
            for i in 0..f.nrows() {
                for j in 0..f.ncols() {
                    acc += f[(i, j)] * f[(i, j)] / kernel[i];
                }
            }
            acc / f.len() as f64
        })
        .collect();
    let n = per_seed.len() as f64;
    let mean = per_seed.iter().sum::<f64>() / n;
    let var = per_seed.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[test]
fn output_variance_is_width_independent() {
    let x: Mat<f64> = SeedStream::new(77).gaussian_matrix("x", 4, 6, 1.0);
    let (m64, se64) = normalised_second_moment(64, 160, &x);
    let (m1024, se1024) = normalised_second_moment(1024, 40, &x);
    // the test has power: a 1/n instead of 1/√n scaling would give ~1/16 or ~1/1024 here
    assert!(se64 < 0.1 && se1024 < 0.1, "se {se64} {se1024}");
    assert!((m64 - 1.0).abs() < 4.0 * se64, "width 64: {m64} ± {se64}");
    assert!(
        (m1024 - 1.0).abs() < 4.0 * se1024,
        "width 1024: {m1024} ± {se1024}"
    );
    let se = (se64 * se64 + se1024 * se1024).sqrt();
    assert!((m64 - m1024).abs() < 4.0 * se, "{m64} vs {m1024} ± {se}");
}
