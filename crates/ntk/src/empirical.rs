//! Empirical kernels of a finite network: the layerwise empirical NTK and a Monte-Carlo NNGP.
//!
//! **Empirical NTK, layer by layer, without the Jacobian.** For output `c`, let
//! `d^l_c(x) = ∂f_c(x)/∂h^l` (the backprop signal of the error `e = 1_c`) and `a^{l−1}(x)` the
//! layer's input activity. Since `∂f_c/∂W^l = m_l d^l_c a^{l−1ᵀ}` and `∂f_c/∂b^l = s d^l_c`
//! (`m_l = s_w/√n_{l−1}`, `s = s_b` in the NTK parameterisation),
//!
//! ```text
//! Θ^W_l,cc'(x, x') = m_l² (d^l_c(x)·d^l_c'(x')) (a^{l−1}(x)·a^{l−1}(x'))
//! Θ^b_l,cc'(x, x') = s²  (d^l_c(x)·d^l_c'(x'))
//! Θ = Σ_l (Θ^W_l + Θ^b_l)
//! ```
//!
//! so each layer costs two Gram matrices (`D Dᵀ` and `A Aᵀ`) instead of a `N·C × P` Jacobian.
//! Matrices are `(N·C) × (M·C)` with row index `i·C + c` (sample-major). As the widths grow,
//! `Θ^W_l → P^l ⊙ A^l ⊗ I_C` and `Θ^b_l → s_b² P^l ⊗ I_C` ([`crate::analytic`]).
//!
//! **Monte-Carlo NNGP.** Over independent initialisations, `E[f_c(x) f_c(x')] = Σ^L(x, x')`.
//! [`monte_carlo_nngp`] averages `(1/C) Σ_c f_c(x) f_c(x')` over seeds and reports the standard
//! error across seeds (outputs of one network share its hidden layers, so seeds, not outputs, are
//! the independent samples). With one hidden layer the estimate is unbiased at any width.
//!
//! ```
//! use widealign_models::{Mlp, MlpSpec};
//! use widealign_ntk::empirical::empirical_ntk;
//! use widealign_tensor::{Activation, Mat};
//! let spec = MlpSpec::new(3, vec![16], 2, Activation::Erf);
//! let net = Mlp::<f64>::new(&spec, 0).unwrap();
//! let x = Mat::from_row_slice(2, 3, &[1.0, 0.0, 0.5, -0.3, 0.2, 0.9]);
//! let k = empirical_ntk(&net, &x, None).unwrap();
//! let theta = k.total();
//! assert_eq!(theta.shape(), (4, 4)); // (N·C) × (N·C)
//! assert!((&theta - theta.transpose()).abs().max() < 1e-12);
//! ```

use rayon::prelude::*;
use widealign_models::{backward_signals, Feedback, Mlp, MlpSpec, Pathway, Signals, Trace};
use widealign_tensor::{gemm, Float, Mat};

use crate::error::shape_err;
use crate::NtkError;

/// A layerwise empirical NTK between two input sets (`(N·C) × (M·C)` each, index `i·C + c`).
#[derive(Clone, Debug, PartialEq)]
pub struct EmpiricalNtk {
    /// `Θ^W_l` at index `l − 1`.
    pub weights: Vec<Mat<f64>>,
    /// `Θ^b_l` at index `l − 1`.
    pub biases: Vec<Mat<f64>>,
    /// Number of outputs `C`.
    pub outputs: usize,
}

impl EmpiricalNtk {
    /// The whole empirical NTK `Σ_l (Θ^W_l + Θ^b_l)`.
    pub fn total(&self) -> Mat<f64> {
        let mut t = self.weights[0].clone();
        for m in self.weights.iter().skip(1).chain(&self.biases) {
            t += m;
        }
        t
    }

    /// Layer `l`'s share `Θ^W_l + Θ^b_l` (`l` 1-based).
    ///
    /// # Panics
    /// If `l` is not in `1..=L`.
    pub fn layer(&self, l: usize) -> Mat<f64> {
        &self.weights[l - 1] + &self.biases[l - 1]
    }

    /// The `(c, c')` output block of a kernel in this layout (`N × M`).
    pub fn output_block(&self, m: &Mat<f64>, c: usize, c2: usize) -> Mat<f64> {
        let k = self.outputs;
        Mat::from_fn(m.nrows() / k, m.ncols() / k, |i, j| {
            m[(i * k + c, j * k + c2)]
        })
    }
}

fn check_inputs<T: Float>(spec: &MlpSpec, what: &str, x: &Mat<T>) -> Result<(), NtkError> {
    if x.ncols() != spec.input_dim {
        return Err(shape_err(
            what,
            format!("N × {} (one input per row)", spec.input_dim),
            x.shape(),
        ));
    }
    Ok(())
}

/// Backprop signals of every output unit: index `c` holds `D^l_c` for `l = 1..L`.
fn per_output_signals<T: Float>(net: &Mlp<T>, trace: &Trace<T>) -> Vec<Signals<T>> {
    let c_out = net.spec.output_dim;
    let n = trace.batch();
    (0..c_out)
        .map(|c| {
            let mut e = Mat::zeros(n, c_out);
            e.column_mut(c).fill(T::one());
            let pathway = Pathway {
                feedback: Feedback::Weights(&net.weights),
                derivatives: trace,
            };
            backward_signals(&net.spec, &pathway, &e)
        })
        .collect()
}

fn to_f64<T: Float>(m: &Mat<T>) -> Mat<f64> {
    m.map(|v| v.as_f64())
}

/// The empirical NTK of `net` between the rows of `x1` and `x2` (`None`: `x2 = x1`), layer by
/// layer (see the module docs). Grams are formed in `T` and returned in `f64`.
///
/// Cost: one forward pass per input set, `C` backward passes, and per layer
/// `C²` Gram products `N × M × n_l` plus one `N × M × n_{l−1}`.
///
/// # Errors
/// [`NtkError::Shape`] if the inputs do not have `n_0` columns.
pub fn empirical_ntk<T: Float>(
    net: &Mlp<T>,
    x1: &Mat<T>,
    x2: Option<&Mat<T>>,
) -> Result<EmpiricalNtk, NtkError> {
    let spec = &net.spec;
    check_inputs(spec, "inputs", x1)?;
    let t1 = net.forward(x1)?;
    let s1 = per_output_signals(net, &t1);
    let (t2, s2) = match x2 {
        Some(x2) => {
            check_inputs(spec, "second inputs", x2)?;
            let t2 = net.forward(x2)?;
            let s2 = per_output_signals(net, &t2);
            (Some(t2), Some(s2))
        }
        None => (None, None),
    };
    let t2r = t2.as_ref().unwrap_or(&t1);
    let s2r = s2.as_ref().unwrap_or(&s1);
    let c_out = spec.output_dim;
    let (n, m) = (t1.batch(), t2r.batch());
    let depth = spec.depth();
    let widths = spec.widths();
    let bias_mult = spec.param.bias_multiplier();
    let mut weights = Vec::with_capacity(depth);
    let mut biases = Vec::with_capacity(depth);
    for l in 1..=depth {
        let mult = spec.param.weight_multiplier(widths[l - 1]);
        let aa = to_f64(&gemm::matmul_nt(&t1.act[l - 1], &t2r.act[l - 1]));
        let mut tw = Mat::zeros(n * c_out, m * c_out);
        let mut tb = Mat::zeros(n * c_out, m * c_out);
        let blocks: Vec<(usize, usize, Mat<f64>)> = (0..c_out * c_out)
            .into_par_iter()
            .map(|cc| {
                let (c, c2) = (cc / c_out, cc % c_out);
                let d1 = s1[c].d[l - 1]
                    .as_ref()
                    .expect("backprop reaches every layer");
                let d2 = s2r[c2].d[l - 1]
                    .as_ref()
                    .expect("backprop reaches every layer");
                (c, c2, to_f64(&gemm::matmul_nt(d1, d2)))
            })
            .collect();
        for (c, c2, dd) in blocks {
            for j in 0..m {
                for i in 0..n {
                    let v = dd[(i, j)];
                    tw[(i * c_out + c, j * c_out + c2)] = mult * mult * v * aa[(i, j)];
                    tb[(i * c_out + c, j * c_out + c2)] = bias_mult * bias_mult * v;
                }
            }
        }
        weights.push(tw);
        biases.push(tb);
    }
    Ok(EmpiricalNtk {
        weights,
        biases,
        outputs: c_out,
    })
}

/// A Monte-Carlo estimate with its standard error (entrywise).
#[derive(Clone, Debug, PartialEq)]
pub struct McEstimate {
    /// Sample mean.
    pub mean: Mat<f64>,
    /// Standard error of the mean (sample standard deviation / √samples).
    pub std_err: Mat<f64>,
    /// Number of independent samples (seeds).
    pub samples: usize,
}

/// Monte-Carlo NNGP of `spec` on the rows of `x`: the mean over `seeds` of
/// `(1/C) Σ_c f_c(X) f_c(X)ᵀ` for networks `Mlp::new(spec, seed)` (computed in `f64`).
///
/// Deterministic for any thread count (per-seed results are summed in seed order).
///
/// # Errors
/// [`NtkError::Shape`] for inputs without `n_0` columns, [`NtkError::InvalidOption`] for fewer
/// than two seeds, model errors for an invalid spec.
pub fn monte_carlo_nngp(
    spec: &MlpSpec,
    x: &Mat<f64>,
    seeds: std::ops::Range<u64>,
) -> Result<McEstimate, NtkError> {
    check_inputs(spec, "inputs", x)?;
    spec.validate()?;
    let s = seeds.end.saturating_sub(seeds.start) as usize;
    if s < 2 {
        return Err(NtkError::InvalidOption {
            name: "seeds".into(),
            reason: format!("need at least 2 seeds for a standard error, got {s}"),
        });
    }
    let samples: Vec<Mat<f64>> = seeds
        .into_par_iter()
        .map(|seed| {
            let net = Mlp::<f64>::new(spec, seed).expect("validated spec");
            let f = net.predict(x).expect("checked input shape");
            gemm::matmul_nt(&f, &f) / spec.output_dim as f64
        })
        .collect();
    let n = x.nrows();
    let mut mean = Mat::zeros(n, n);
    for k in &samples {
        mean += k;
    }
    mean /= s as f64;
    let mut var = Mat::zeros(n, n);
    for k in &samples {
        var += (k - &mean).map(|v| v * v);
    }
    var /= (s - 1) as f64;
    let std_err = var.map(|v| (v / s as f64).sqrt());
    Ok(McEstimate {
        mean,
        std_err,
        samples: s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
    use widealign_models::{gradients, BiasInit, Parameterization};
    use widealign_tensor::{rng::SeedStream, Activation};

    fn spec(width: usize, act: Activation, depth: usize, outputs: usize) -> MlpSpec {
        MlpSpec::uniform(4, width, depth, outputs, act)
            .with_param(Parameterization::Ntk {
                w_std: 1.4,
                b_std: 0.3,
            })
            .with_bias_init(BiasInit::Gaussian)
    }

    #[test]
    fn layerwise_grams_equal_explicit_jacobian_products() {
        let sp = spec(7, Activation::Tanh, 2, 3);
        let net = Mlp::<f64>::new(&sp, 4).unwrap();
        let x: Mat<f64> = SeedStream::new(1).gaussian_matrix("x", 5, 4, 1.0);
        let k = empirical_ntk(&net, &x, None).unwrap();
        // explicit per-sample, per-output gradients from the models crate
        let trace = net.forward(&x).unwrap();
        let mut jac: Vec<Vec<Vec<f64>>> = Vec::new(); // [(i, c)][layer-param] flattened
        for i in 0..5 {
            let xi = x.rows(i, 1).into_owned();
            let ti = net.forward(&xi).unwrap();
            for c in 0..3 {
                let mut e = Mat::zeros(1, 3);
                e[(0, c)] = 1.0;
                let p = Pathway {
                    feedback: Feedback::Weights(&net.weights),
                    derivatives: &ti,
                };
                let g = gradients(&sp, &backward_signals(&sp, &p, &e), &ti);
                jac.push(
                    (0..3)
                        .flat_map(|l| {
                            [
                                g.weights[l].as_ref().unwrap().as_slice().to_vec(),
                                g.biases[l].as_ref().unwrap().clone(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        assert_eq!(trace.batch(), 5);
        for l in 0..3 {
            for (a, ja) in jac.iter().enumerate() {
                for (b, jb) in jac.iter().enumerate() {
                    let w: f64 = ja[2 * l].iter().zip(&jb[2 * l]).map(|(p, q)| p * q).sum();
                    let bb: f64 = ja[2 * l + 1]
                        .iter()
                        .zip(&jb[2 * l + 1])
                        .map(|(p, q)| p * q)
                        .sum();
                    assert!((k.weights[l][(a, b)] - w).abs() < 1e-12, "layer {l} W");
                    assert!((k.biases[l][(a, b)] - bb).abs() < 1e-12, "layer {l} b");
                }
            }
        }
        let cross = empirical_ntk(&net, &x.rows(0, 2).into_owned(), Some(&x)).unwrap();
        assert!((cross.total() - k.total().rows(0, 6)).abs().max() < 1e-12);
    }

    fn rel_err(emp: &Mat<f64>, ana: &Mat<f64>) -> f64 {
        (emp - ana).norm() / ana.norm()
    }

    #[test]
    fn empirical_ntk_approaches_analytic_with_width() {
        let x: Mat<f64> = SeedStream::new(2).gaussian_matrix("x", 8, 4, 1.0);
        for act in [Activation::Relu, Activation::Erf] {
            let ana = InfiniteMlp::from_spec(&spec(1, act, 2, 1))
                .unwrap()
                .kernels(&x, None, &KernelRequest::all(), &KernelOptions::default())
                .unwrap();
            let mut errs = Vec::new();
            for width in [64, 1024] {
                // average the error over a few seeds to make the comparison robust
                let e: f64 = (0..3)
                    .map(|seed| {
                        let net = Mlp::<f64>::new(&spec(width, act, 2, 1), seed).unwrap();
                        let k = empirical_ntk(&net, &x, None).unwrap();
                        rel_err(&k.total(), ana.ntk.as_ref().unwrap())
                    })
                    .sum::<f64>()
                    / 3.0;
                errs.push(e);
            }
            assert!(errs[1] < 0.06, "{act}: width 1024 error {}", errs[1]);
            assert!(errs[1] < 0.6 * errs[0], "{act}: {errs:?}");
            // per-layer shares too, at the larger width
            let net = Mlp::<f64>::new(&spec(1024, act, 2, 1), 7).unwrap();
            let k = empirical_ntk(&net, &x, None).unwrap();
            for l in 1..=3 {
                let e = rel_err(&k.weights[l - 1], &ana.weight_share(l));
                assert!(e < 0.2, "{act} layer {l} weight share error {e}");
            }
        }
    }

    #[test]
    fn off_diagonal_output_blocks_vanish_with_width() {
        let x: Mat<f64> = SeedStream::new(3).gaussian_matrix("x", 6, 4, 1.0);
        let net = Mlp::<f64>::new(&spec(2048, Activation::Erf, 1, 2), 1).unwrap();
        let k = empirical_ntk(&net, &x, None).unwrap();
        let t = k.total();
        let diag = k.output_block(&t, 0, 0);
        let off = k.output_block(&t, 0, 1);
        assert!(
            off.norm() < 0.05 * diag.norm(),
            "{} vs {}",
            off.norm(),
            diag.norm()
        );
    }

    #[test]
    fn monte_carlo_nngp_within_three_standard_errors() {
        let x: Mat<f64> = SeedStream::new(4).gaussian_matrix("x", 5, 4, 1.0);
        // one hidden layer: E[f f'] equals Σ^2 exactly at any width
        for act in [Activation::Relu, Activation::Tanh] {
            let sp = spec(32, act, 1, 3);
            let mc = monte_carlo_nngp(&sp, &x, 0..400).unwrap();
            let ana = InfiniteMlp::from_spec(&sp)
                .unwrap()
                .kernels(
                    &x,
                    None,
                    &KernelRequest::outputs(),
                    &KernelOptions::default(),
                )
                .unwrap();
            let nngp = ana.nngp.unwrap();
            let mut outside = 0;
            for j in 0..5 {
                for i in 0..=j {
                    let z = (mc.mean[(i, j)] - nngp[(i, j)]) / mc.std_err[(i, j)];
                    if z.abs() > 3.0 {
                        outside += 1;
                    }
                }
            }
            // 15 correlated entries: allow one beyond 3σ (probability ≈ 4%)
            assert!(
                outside <= 1,
                "{act}: {outside} entries beyond 3 standard errors"
            );
        }
        assert!(monte_carlo_nngp(&spec(4, Activation::Relu, 1, 1), &x, 3..4).is_err());
    }
}
