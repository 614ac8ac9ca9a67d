//! Kernels of the Elman recurrent network: infinite-width NNGP and NTK (with each parameter's
//! share), the empirical NTK of a finite [`Rnn`], and a Monte-Carlo NNGP.
//!
//! The network is [`widealign_models::Rnn`] in the NTK parameterisation (docs/theory.md §1.2):
//! `h_t = m_in W_in x_t + m_rec W_rec r_{t−1} + s_b b`, `r_t = φ(h_t)`, `r_0 = 0` (trainable),
//! `y_t = m_out W_out r_t + s_b b_out`, with `m_in = s_w/√n_in`, `m_rec = s_w/√n`,
//! `m_out = 1/√n` and `N(0,1)` parameters (biases zero when `β = 0`, [`BiasInit::Zero`]).
//! Derivation in docs/theory.md §3.7. For sequences `x, x'` and output steps `t, s`, write
//! `E_{τσ} = E[φ(u)φ(v)]`, `Ė_{τσ} = E[φ'(u)φ'(v)]` with `(u, v)` centred Gaussian of covariance
//! `[[Σ_{ττ}(x,x), Σ_{τσ}(x,x')], [Σ_{τσ}(x,x'), Σ_{σσ}(x',x')]]`:
//!
//! ```text
//! A^in_{τσ}  = s_w² x_τ·x'_σ / n_in
//! A^rec_{τσ} = s_w² E_{τ−1,σ−1}          (0 if τ = 1 or σ = 1: r_0 = 0)
//! Σ_{τσ}     = A^in_{τσ} + A^rec_{τσ} + β s_b²                      (hidden NNGP)
//! K_{ts}     = E_{ts} + β s_b²                                         (output NNGP)
//! Q_{τσ}     = A^in_{τσ} + A^rec_{τσ} + s_b² + s_w² [τ = σ = 1] + s_w² Ė_{τ−1,σ−1} Q_{τ−1,σ−1}
//! Θ_{ts}     = E_{ts} + s_b² + Ė_{ts} Q_{ts}                           (output NTK)
//! ```
//!
//! Every recursion runs along one diagonal `(τ, σ) = (t − k, s − k)`, `k = 0..min(t, s) − 1`:
//! because `W_rec` is shared across time, the backward signals of two outputs are correlated in
//! the limit only at equal lags from their outputs, so the NTK sums the gradient contributions of
//! the equal-lag pairs of time steps. The shares: `W_out` gives `E_{ts}`, `b_out` gives `s_b²`,
//! and `W_in`, `W_rec`, `b`, `r_0` give `Ė_{ts}` times their own part of `Q` (the terms
//! `A^in`, `A^rec`, `s_b²` and `s_w² [τ = σ = 1]`, each carried by the same factor
//! `s_w² Ė`). The `r_0` share is non-zero only for `t = s`.
//!
//! Cost: `O(N·M·min(t, s)·(n_in + c_φ))` for `N × M` kernels, `c_φ` one dual-kernel evaluation
//! (closed form for relu, erf, identity; quadrature for tanh and gelu, [`crate::dual`]).
//!
//! ```
//! use widealign_models::{BiasInit, Parameterization, Rnn, RnnSpec};
//! use widealign_ntk::rnn::{empirical_rnn_ntk, InfiniteRnn};
//! use widealign_ntk::analytic::KernelOptions;
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = RnnSpec::new(2, 2048, 1, Activation::Erf)
//!     .with_param(Parameterization::Ntk { w_std: 1.2, b_std: 0.3 })
//!     .with_bias_init(BiasInit::Gaussian);
//! // 3 sequences of 4 steps, time-major: xs[t − 1] is 3 × 2
//! let s = SeedStream::new(0);
//! let xs: Vec<Mat<f64>> = (0..4).map(|t| s.gaussian_matrix(&format!("x{t}"), 3, 2, 1.0)).collect();
//! let k = InfiniteRnn::from_spec(&spec).unwrap()
//!     .kernels(&xs, None, (4, 4), &KernelOptions::default()).unwrap();
//! assert!((k.ntk[(0, 1)] - k.ntk[(1, 0)]).abs() == 0.0);
//! assert!((k.shares.total() - &k.ntk).abs().max() < 1e-12);
//! let finite = empirical_rnn_ntk(&Rnn::<f64>::new(&spec, 1).unwrap(), &xs, None, (4, 4), 0)
//!     .unwrap();
//! assert!((finite.total() - &k.ntk).norm() / k.ntk.norm() < 0.1); // O(1/√width)
//! ```

use rayon::prelude::*;
use widealign_models::{
    rnn_backward_signals, BiasInit, Parameterization, Rnn, RnnFeedback, RnnPathway, RnnSpec,
    RnnTrace,
};
use widealign_tensor::{gemm, Float, Mat};

use crate::analytic::KernelOptions;
use crate::dual::DualKernel;
use crate::empirical::McEstimate;
use crate::error::{check_finite, shape_err};
use crate::NtkError;

/// A kernel split by parameter tensor, in the order of [`Rnn::params`]:
/// `W_in, W_rec, b, W_out, b_out, r_0`. Each matrix is `N × M`.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnShares {
    /// Share of the input weights `W_in`.
    pub w_in: Mat<f64>,
    /// Share of the recurrent weights `W_rec`.
    pub w_rec: Mat<f64>,
    /// Share of the hidden bias `b`.
    pub b: Mat<f64>,
    /// Share of the readout weights `W_out`.
    pub w_out: Mat<f64>,
    /// Share of the readout bias `b_out`.
    pub b_out: Mat<f64>,
    /// Share of the initial state `r_0`.
    pub r0: Mat<f64>,
}

impl RnnShares {
    /// All shares zero, `n × m`.
    fn zeros(n: usize, m: usize) -> Self {
        let z = Mat::zeros(n, m);
        RnnShares {
            w_in: z.clone(),
            w_rec: z.clone(),
            b: z.clone(),
            w_out: z.clone(),
            b_out: z.clone(),
            r0: z,
        }
    }

    /// The shares as `(name, matrix)` pairs in parameter order (`"w_in"`, `"w_rec"`, `"b"`,
    /// `"w_out"`, `"b_out"`, `"r0"`).
    pub fn named(&self) -> [(&'static str, &Mat<f64>); 6] {
        [
            ("w_in", &self.w_in),
            ("w_rec", &self.w_rec),
            ("b", &self.b),
            ("w_out", &self.w_out),
            ("b_out", &self.b_out),
            ("r0", &self.r0),
        ]
    }

    /// The shares, mutable, in the order of [`RnnShares::named`].
    fn named_mut(&mut self) -> [&mut Mat<f64>; 6] {
        [
            &mut self.w_in,
            &mut self.w_rec,
            &mut self.b,
            &mut self.w_out,
            &mut self.b_out,
            &mut self.r0,
        ]
    }

    /// The whole NTK: the sum of the six shares.
    pub fn total(&self) -> Mat<f64> {
        &self.w_in + &self.w_rec + &self.b + &self.w_out + &self.b_out + &self.r0
    }
}

/// The infinite-width limit of an [`RnnSpec`] (NTK parameterisation).
///
/// Built only from a spec, like [`crate::analytic::InfiniteMlp`], so a finite [`Rnn`] and its
/// kernels cannot describe different networks. The kernels depend on the input dimension, the
/// activation, `s_w`, `s_b` and the bias initialisation (`β`); the width and the number of
/// outputs do not enter (the output NTK is `Θ ⊗ I_C`).
#[derive(Clone, Debug, PartialEq)]
pub struct InfiniteRnn {
    spec: RnnSpec,
    w_std: f64,
    b_std: f64,
}

/// Infinite-width kernels of one output unit at steps `(t, s)` between two sets of sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnKernels {
    /// Output NNGP `K_{ts}(x_i, x'_j) = E[y_t(x_i) y_s(x'_j)]`, `N × M`.
    pub nngp: Mat<f64>,
    /// Output NTK `Θ_{ts}(x_i, x'_j)`, `N × M`.
    pub ntk: Mat<f64>,
    /// The NTK split by parameter; the shares sum to `ntk`.
    pub shares: RnnShares,
}

/// One entry's output values: NNGP, NTK and the six shares.
#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    nngp: f64,
    ntk: f64,
    shares: [f64; 6],
}

/// Checks that `xs` is a non-empty list of `N × d` matrices with one `N` and `d = input_dim`.
fn check_sequences<T: Float>(what: &str, xs: &[Mat<T>], input_dim: usize) -> Result<(), NtkError> {
    let Some(first) = xs.first() else {
        return Err(NtkError::InvalidOption {
            name: what.into(),
            reason: "a sequence of zero time steps".into(),
        });
    };
    let n = first.nrows();
    for (t, x) in xs.iter().enumerate() {
        if x.shape() != (n, input_dim) {
            return Err(shape_err(
                &format!("{what} at time step {}", t + 1),
                format!("{n} × {input_dim} (one sequence per row)"),
                x.shape(),
            ));
        }
    }
    Ok(())
}

/// Checks that a requested output step lies in `1..=len`.
fn check_step(name: &str, step: usize, len: usize) -> Result<(), NtkError> {
    if step == 0 || step > len {
        return Err(NtkError::InvalidOption {
            name: name.into(),
            reason: format!("must be a time step in 1..={len}, got {step}"),
        });
    }
    Ok(())
}

/// Splits an `N × (T·d)` matrix, one sequence per row and time-major (the `d` inputs of step 1,
/// then of step 2, …), into the `T` matrices `X_1..X_T` (`N × d`) that [`Rnn`] and
/// [`InfiniteRnn`] take.
///
/// ```
/// use widealign_ntk::rnn::split_sequences;
/// use widealign_tensor::Mat;
/// let rows = Mat::from_row_slice(2, 4, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
/// let xs = split_sequences(&rows, 2).unwrap();
/// assert_eq!(xs[1], Mat::from_row_slice(2, 2, &[3.0, 4.0, 7.0, 8.0]));
/// assert!(split_sequences(&rows, 3).is_err());
/// ```
///
/// # Errors
/// [`NtkError::InvalidOption`] naming `seq_len` if it is zero or does not divide the row length.
pub fn split_sequences(rows: &Mat<f64>, seq_len: usize) -> Result<Vec<Mat<f64>>, NtkError> {
    if seq_len == 0 {
        return Err(NtkError::InvalidOption {
            name: "seq_len".into(),
            reason: "must be at least 1".into(),
        });
    }
    let len = rows.ncols();
    if len == 0 || len % seq_len != 0 {
        return Err(NtkError::InvalidOption {
            name: "seq_len".into(),
            reason: format!(
                "each row has {len} numbers, not a positive multiple of the sequence length \
                 {seq_len} (a row is T·d numbers, time-major)"
            ),
        });
    }
    let d = len / seq_len;
    Ok((0..seq_len)
        .map(|t| rows.columns(t * d, d).into_owned())
        .collect())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(p, q)| p * q).sum()
}

impl InfiniteRnn {
    /// The infinite-width limit of `spec`.
    ///
    /// # Errors
    /// [`NtkError::Model`] for a spec that does not validate; [`NtkError::Architecture`] for the
    /// standard parameterisation.
    pub fn from_spec(spec: &RnnSpec) -> Result<Self, NtkError> {
        spec.validate()?;
        match spec.param {
            Parameterization::Ntk { w_std, b_std } => Ok(InfiniteRnn {
                spec: spec.clone(),
                w_std,
                b_std,
            }),
            Parameterization::Standard { .. } => Err(NtkError::Architecture(
                "the infinite-width RNN kernels are defined for the NTK parameterisation; \
                 the standard parameterisation has no width-independent NTK"
                    .into(),
            )),
        }
    }

    /// The spec this limit was built from.
    pub fn spec(&self) -> &RnnSpec {
        &self.spec
    }

    /// `β`: 1 for Gaussian initial biases, 0 for zero initial biases.
    pub fn beta(&self) -> f64 {
        match self.spec.bias_init {
            BiasInit::Gaussian => 1.0,
            BiasInit::Zero => 0.0,
        }
    }

    /// `A^in = s_w² a·b/n_in`.
    fn a_in(&self, a: &[f64], b: &[f64]) -> f64 {
        self.w_std * self.w_std * dot(a, b) / self.spec.input_dim as f64
    }

    /// Per-sequence variances `Σ_{ττ}(x, x)`, `τ = 1..len` (the chain of `x` with itself; the
    /// same operations as [`InfiniteRnn::entry`] on the diagonal, so `ρ = 1` exactly there).
    fn variances(&self, seq: &[Vec<f64>], dual: &DualKernel) -> Vec<f64> {
        let sw2 = self.w_std * self.w_std;
        let bias = self.beta() * self.b_std * self.b_std;
        let mut out: Vec<f64> = Vec::with_capacity(seq.len());
        for (k, x) in seq.iter().enumerate() {
            let a_rec = match out.last() {
                Some(&q) if k > 0 => sw2 * dual.eval(q, q, q).0,
                _ => 0.0,
            };
            out.push(self.a_in(x, x) + a_rec + bias);
        }
        out
    }

    /// The recursion of the module docs for one pair of sequences along the diagonal ending at
    /// `(t, s)` = `(a.len(), b.len())`; `va`, `vb` are their variances.
    fn entry(
        &self,
        a: &[Vec<f64>],
        b: &[Vec<f64>],
        va: &[f64],
        vb: &[f64],
        dual: &DualKernel,
    ) -> Entry {
        let (t, s) = (a.len(), b.len());
        let sw2 = self.w_std * self.w_std;
        let sb2 = self.b_std * self.b_std;
        let bias = self.beta() * sb2;
        let m = t.min(s);
        let (t0, s0) = (t - m, s - m); // 0-based indices of the chain's first pair
        let (mut e, mut ed) = (0.0, 0.0);
        // Q's parts: W_in, W_rec, b, r_0
        let mut q = [0.0f64; 4];
        for k in 0..m {
            let (i, j) = (t0 + k, s0 + k);
            let a_in = self.a_in(&a[i], &b[j]);
            let (a_rec, carry) = if k == 0 {
                (0.0, 0.0)
            } else {
                (sw2 * e, sw2 * ed)
            };
            let sigma = a_in + a_rec + bias;
            let r0 = if i == 0 && j == 0 { sw2 } else { 0.0 };
            for (qp, own) in q.iter_mut().zip([a_in, a_rec, sb2, r0]) {
                *qp = own + carry * *qp;
            }
            // E[φ(u)φ(v)] is symmetric in (u, v): a canonical order makes the kernel of (x, t)
            // against (x', s) the exact transpose of (x', s) against (x, t), also under quadrature
            let (k11, k22) = (va[i].min(vb[j]), va[i].max(vb[j]));
            (e, ed) = dual.eval(k11, sigma, k22);
        }
        let shares = [ed * q[0], ed * q[1], ed * q[2], e, sb2, ed * q[3]];
        Entry {
            nngp: e + bias,
            ntk: shares.iter().sum(),
            shares,
        }
    }

    /// Kernels of output unit `y_t` of the sequences `x1` (`x1[τ − 1]` is `N × n_in`, one
    /// sequence per row) against `y_s` of the sequences `x2` (`None`: `x1`), with
    /// `(t, s) = steps`. Only steps `1..=t` of `x1` and `1..=s` of `x2` are read. With `x2 = None`
    /// and `t = s` only `i ≤ j` is computed and mirrored, so the result is exactly symmetric.
    ///
    /// Deterministic for any thread count (each entry is computed by the same code).
    ///
    /// # Errors
    /// [`NtkError::InvalidOption`] naming `steps` for a step outside a sequence and `inputs` for
    /// an empty sequence; [`NtkError::Shape`] if some step's matrix is not `N × n_in`;
    /// [`NtkError::NonFinite`] for NaN inputs; a bad quadrature order.
    pub fn kernels(
        &self,
        x1: &[Mat<f64>],
        x2: Option<&[Mat<f64>]>,
        steps: (usize, usize),
        options: &KernelOptions,
    ) -> Result<RnnKernels, NtkError> {
        let d = self.spec.input_dim;
        check_sequences("inputs", x1, d)?;
        x1.iter().try_for_each(|x| check_finite("inputs", x))?;
        if let Some(x2) = x2 {
            check_sequences("second inputs", x2, d)?;
            x2.iter()
                .try_for_each(|x| check_finite("second inputs", x))?;
        }
        let x2r = x2.unwrap_or(x1);
        let (t, s) = steps;
        check_step("steps", t, x1.len())?;
        check_step("steps", s, x2r.len())?;
        let dual = DualKernel::new(
            self.spec.activation,
            options.quadrature,
            options.force_quadrature,
        )?;
        // per sequence, its steps as rows: seqs[i][τ] = x_{τ+1}(i)
        let rows = |xs: &[Mat<f64>], len: usize| -> Vec<Vec<Vec<f64>>> {
            (0..xs[0].nrows())
                .map(|i| {
                    xs[..len]
                        .iter()
                        .map(|x| x.row(i).iter().copied().collect())
                        .collect()
                })
                .collect()
        };
        let symmetric = x2.is_none() && t == s;
        let a = rows(x1, t);
        let b = if x2.is_none() && t == s {
            a.clone()
        } else {
            rows(x2r, s)
        };
        let va: Vec<Vec<f64>> = a.par_iter().map(|q| self.variances(q, &dual)).collect();
        let vb: Vec<Vec<f64>> = b.par_iter().map(|q| self.variances(q, &dual)).collect();
        let (n, m) = (a.len(), b.len());
        let cols: Vec<Vec<Entry>> = (0..m)
            .into_par_iter()
            .map(|j| {
                let top = if symmetric { j + 1 } else { n };
                (0..top)
                    .map(|i| self.entry(&a[i], &b[j], &va[i], &vb[j], &dual))
                    .collect()
            })
            .collect();
        let mut nngp = Mat::zeros(n, m);
        let mut ntk = Mat::zeros(n, m);
        let mut sh = RnnShares::zeros(n, m);
        for (j, col) in cols.iter().enumerate() {
            for (i, e) in col.iter().enumerate() {
                let pos = if symmetric {
                    vec![(i, j), (j, i)]
                } else {
                    vec![(i, j)]
                };
                for p in pos {
                    nngp[p] = e.nngp;
                    ntk[p] = e.ntk;
                    for (k, share) in sh.named_mut().into_iter().enumerate() {
                        share[p] = e.shares[k];
                    }
                }
            }
        }
        Ok(RnnKernels {
            nngp,
            ntk,
            shares: sh,
        })
    }
}

impl InfiniteRnn {
    /// The kernels of one output unit over **every pair of time steps**, stacked step-major:
    /// entry `((t − 1)·N + i, (s − 1)·M + j)` is the kernel of `y_t(x1_i)` against `y_s(x2_j)`
    /// (`N`, `M` sequences of `T1`, `T2` steps; `x2 = None`: `x1`), so the result is
    /// `(T1·N) × (T2·M)` — the kernel that gradient descent on the loss summed over time steps
    /// sees (docs/theory.md §4.5). With `x2 = None` the pairs `t ≤ s` are computed and mirrored,
    /// so the result is exactly symmetric. Cost: `T1·T2` calls of [`InfiniteRnn::kernels`].
    ///
    /// ```
    /// use widealign_models::RnnSpec;
    /// use widealign_ntk::analytic::KernelOptions;
    /// use widealign_ntk::rnn::InfiniteRnn;
    /// use widealign_tensor::{Activation, Mat};
    /// let xs = vec![Mat::from_row_slice(2, 1, &[1.0, -0.5]), Mat::from_row_slice(2, 1, &[0.3, 0.8])];
    /// let inf = InfiniteRnn::from_spec(&RnnSpec::new(1, 1, 1, Activation::Erf)).unwrap();
    /// let o = KernelOptions::default();
    /// let k = inf.stacked_kernels(&xs, None, &o).unwrap();
    /// assert_eq!(k.ntk.shape(), (4, 4));
    /// // rows 2..4 (step 2) against columns 0..2 (step 1) are Θ_{21}
    /// let k21 = inf.kernels(&xs, None, (2, 1), &o).unwrap();
    /// assert_eq!(k.ntk.view((2, 0), (2, 2)), k21.ntk);
    /// assert_eq!(k.ntk, k.ntk.transpose());
    /// ```
    ///
    /// # Errors
    /// As [`InfiniteRnn::kernels`].
    pub fn stacked_kernels(
        &self,
        x1: &[Mat<f64>],
        x2: Option<&[Mat<f64>]>,
        options: &KernelOptions,
    ) -> Result<RnnKernels, NtkError> {
        let t1 = x1.len();
        let t2 = x2.map_or(t1, <[Mat<f64>]>::len);
        if t1 == 0 || t2 == 0 {
            return Err(NtkError::InvalidOption {
                name: "inputs".into(),
                reason: "a sequence of zero time steps".into(),
            });
        }
        let n = x1[0].nrows();
        let m = x2.map_or(n, |x| x[0].nrows());
        let mut out = RnnKernels {
            nngp: Mat::zeros(t1 * n, t2 * m),
            ntk: Mat::zeros(t1 * n, t2 * m),
            shares: RnnShares::zeros(t1 * n, t2 * m),
        };
        for t in 1..=t1 {
            for s in 1..=t2 {
                if x2.is_none() && s < t {
                    continue;
                }
                let k = self.kernels(x1, x2, (t, s), options)?;
                let place = |dst: &mut Mat<f64>, src: &Mat<f64>| {
                    dst.view_mut(((t - 1) * n, (s - 1) * m), (n, m))
                        .copy_from(src);
                    if x2.is_none() && s != t {
                        dst.view_mut(((s - 1) * n, (t - 1) * m), (m, n))
                            .copy_from(&src.transpose());
                    }
                };
                place(&mut out.nngp, &k.nngp);
                place(&mut out.ntk, &k.ntk);
                for (dst, src) in out.shares.named_mut().into_iter().zip(k.shares.named()) {
                    place(dst, src.1);
                }
            }
        }
        Ok(out)
    }
}

/// A forward trace, the per-step signals `D_1..D_t` and the per-sample `∂y/∂r_0`.
type OutputSignals<T> = (RnnTrace<T>, Vec<Mat<T>>, Mat<T>);

/// Per-sample backprop-through-time signals of the output `y_step[output]` of `net` on `xs`:
/// `D_τ` rows are `∂y_step(x_i)/∂h_τ`, plus the per-sample `∂y_step/∂r_0`.
fn output_signals<T: Float>(
    net: &Rnn<T>,
    xs: &[Mat<T>],
    step: usize,
    output: usize,
) -> Result<OutputSignals<T>, NtkError> {
    let trace = net.forward(&xs[..step])?;
    let (b, c) = (xs[0].nrows(), net.spec.output_dim);
    let mut errs = vec![Mat::zeros(b, c); step];
    errs[step - 1].column_mut(output).fill(T::one());
    let pathway = RnnPathway {
        feedback: RnnFeedback::Weights {
            w_rec: &net.w_rec,
            w_out: &net.w_out,
        },
        derivatives: &trace,
    };
    let sig = rnn_backward_signals(&net.spec, &pathway, &errs);
    let d: Vec<Mat<T>> = sig
        .d
        .into_iter()
        .map(|d| d.expect("backprop reaches every step"))
        .collect();
    let r0 = sig.r0.expect("backprop reaches r_0");
    Ok((trace, d, r0))
}

fn gram<T: Float>(a: &Mat<T>, b: &Mat<T>) -> Mat<f64> {
    gemm::matmul_nt(a, b).map(|v| v.as_f64())
}

/// The empirical NTK of the finite network `net`, split by parameter tensor, between output unit
/// `output` at step `t` on the sequences `x1` and at step `s` on `x2` (`None`: `x1`),
/// `(t, s) = steps`.
///
/// From the backward signals of [`rnn_backward_signals`] with the error `1_output` at the chosen
/// step (`D_τ(x) = ∂y_t(x)/∂h_τ`, one row per sequence) and the forward trace, per parameter
/// (`m_in`, `m_rec`, `m_out`, `s` the multipliers of [`RnnSpec`]):
///
/// ```text
/// W_in : m_in²  Σ_{τσ} (D_τ D'_σᵀ) ⊙ (X_τ X'_σᵀ)        W_out: m_out² R_t R'_sᵀ
/// W_rec: m_rec² Σ_{τσ} (D_τ D'_σᵀ) ⊙ (R_{τ−1} R'_{σ−1}ᵀ)  b_out: s² 11ᵀ
/// b    : s² (Σ_τ D_τ)(Σ_σ D'_σ)ᵀ                            r_0  : G_0 G'_0ᵀ, G_0 = ∂y/∂r_0
/// ```
///
/// the exact inner products of the per-sequence gradients of each tensor (test against
/// [`widealign_models::rnn_gradients`]). Returned in `f64`. Cost: one forward and one backward
/// pass per input set and `t·s` Gram products of `N × M × n`.
///
/// # Errors
/// As [`InfiniteRnn::kernels`] for the inputs and steps; [`NtkError::InvalidOption`] naming
/// `output` for an output unit `≥ C`.
pub fn empirical_rnn_ntk<T: Float>(
    net: &Rnn<T>,
    x1: &[Mat<T>],
    x2: Option<&[Mat<T>]>,
    steps: (usize, usize),
    output: usize,
) -> Result<RnnShares, NtkError> {
    let spec = &net.spec;
    check_sequences("inputs", x1, spec.input_dim)?;
    if let Some(x2) = x2 {
        check_sequences("second inputs", x2, spec.input_dim)?;
    }
    let x2r = x2.unwrap_or(x1);
    let (t, s) = steps;
    check_step("steps", t, x1.len())?;
    check_step("steps", s, x2r.len())?;
    if output >= spec.output_dim {
        return Err(NtkError::InvalidOption {
            name: "output".into(),
            reason: format!(
                "must be below the {} outputs, got {output}",
                spec.output_dim
            ),
        });
    }
    let (tr1, d1, g1) = output_signals(net, x1, t, output)?;
    let (tr2, d2, g2) = output_signals(net, x2r, s, output)?;
    let (n, m) = (x1[0].nrows(), x2r[0].nrows());
    let m_in = spec.input_multiplier();
    let m_rec = spec.recurrent_multiplier();
    let m_out = spec.readout_multiplier();
    let sb = spec.param.bias_multiplier();
    let mut sh = RnnShares::zeros(n, m);
    for (tau, dt) in d1.iter().enumerate() {
        for (sig, ds) in d2.iter().enumerate() {
            let dd = gram(dt, ds);
            let xx = gram(&tr1.inputs[tau], &tr2.inputs[sig]);
            let rr = gram(&tr1.states[tau], &tr2.states[sig]);
            sh.w_in += dd.component_mul(&xx) * (m_in * m_in);
            sh.w_rec += dd.component_mul(&rr) * (m_rec * m_rec);
            sh.b += dd * (sb * sb);
        }
    }
    sh.w_out = gram(&tr1.states[t], &tr2.states[s]) * (m_out * m_out);
    sh.b_out.fill(sb * sb);
    sh.r0 = gram(&g1, &g2);
    Ok(sh)
}

/// Monte-Carlo NNGP of `spec` on the sequences `xs`: the mean over `seeds` of
/// `(1/C) Σ_c y_{t,c}(X) y_{s,c}(X)ᵀ` for networks `Rnn::new(spec, seed)`, `(t, s) = steps`,
/// with the standard error across seeds (computed in `f64`; seeds are the independent samples).
///
/// At finite width the states are not exactly Gaussian beyond the first step, so the estimate
/// carries an `O(1/n)` bias besides its sampling error; for `t = s = 1` it is unbiased.
/// Deterministic for any thread count.
///
/// # Errors
/// As [`InfiniteRnn::kernels`] for the inputs and steps, [`NtkError::InvalidOption`] for fewer
/// than two seeds, model errors for an invalid spec.
pub fn monte_carlo_rnn_nngp(
    spec: &RnnSpec,
    xs: &[Mat<f64>],
    steps: (usize, usize),
    seeds: std::ops::Range<u64>,
) -> Result<McEstimate, NtkError> {
    spec.validate()?;
    check_sequences("inputs", xs, spec.input_dim)?;
    let (t, s) = steps;
    check_step("steps", t, xs.len())?;
    check_step("steps", s, xs.len())?;
    let count = seeds.end.saturating_sub(seeds.start) as usize;
    if count < 2 {
        return Err(NtkError::InvalidOption {
            name: "seeds".into(),
            reason: format!("need at least 2 seeds for a standard error, got {count}"),
        });
    }
    let len = t.max(s);
    let samples: Vec<Mat<f64>> = seeds
        .into_par_iter()
        .map(|seed| {
            let net = Rnn::<f64>::new(spec, seed).expect("validated spec");
            let y = net.predict(&xs[..len]).expect("checked input shapes");
            gemm::matmul_nt(&y[t - 1], &y[s - 1]) / spec.output_dim as f64
        })
        .collect();
    let n = xs[0].nrows();
    let mut mean = Mat::zeros(n, n);
    for k in &samples {
        mean += k;
    }
    mean /= count as f64;
    let mut var = Mat::zeros(n, n);
    for k in &samples {
        var += (k - &mean).map(|v| v * v);
    }
    var /= (count - 1) as f64;
    let std_err = var.map(|v| (v / count as f64).sqrt());
    Ok(McEstimate {
        mean,
        std_err,
        samples: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytic::{InfiniteMlp, KernelRequest};
    use nalgebra::SymmetricEigen;
    use widealign_models::{rnn_gradients, MlpSpec};
    use widealign_tensor::{rng::SeedStream, Activation};

    const ACTS: [Activation; 5] = [
        Activation::Relu,
        Activation::Erf,
        Activation::Tanh,
        Activation::Identity,
        Activation::Gelu,
    ];

    fn spec(width: usize, act: Activation, bias: BiasInit) -> RnnSpec {
        RnnSpec::new(3, width, 1, act)
            .with_param(Parameterization::Ntk {
                w_std: 1.3,
                b_std: 0.3,
            })
            .with_bias_init(bias)
    }

    /// `n` sequences of `steps` steps (dimension 3); sequence 1 is sequence 0 scaled by 2,
    /// sequence 2 its negative, sequence 3 is zero at the first step.
    fn seqs(n: usize, steps: usize, seed: u64) -> Vec<Mat<f64>> {
        let s = SeedStream::new(seed);
        (0..steps)
            .map(|t| {
                let mut x: Mat<f64> = s.gaussian_matrix(&format!("x{t}"), n, 3, 0.8);
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

    fn rel_err(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
        (a - b).norm() / b.norm()
    }

    fn min_eig_ratio(m: &Mat<f64>) -> f64 {
        let e = SymmetricEigen::new(m.clone()).eigenvalues;
        e.min() / e.max()
    }

    #[test]
    fn symmetric_psd_and_shares_sum_to_ntk() {
        let xs = seqs(6, 4, 1);
        for act in ACTS {
            for bias in [BiasInit::Gaussian, BiasInit::Zero] {
                let inf = InfiniteRnn::from_spec(&spec(1, act, bias)).unwrap();
                let k = inf
                    .kernels(&xs, None, (4, 4), &KernelOptions::default())
                    .unwrap();
                for m in [&k.nngp, &k.ntk] {
                    assert_eq!(m, &m.transpose(), "{act} {bias:?}: exactly symmetric");
                    assert!(min_eig_ratio(m) > -1e-12, "{act} {bias:?}: PSD");
                }
                assert!((k.shares.total() - &k.ntk).abs().max() < 1e-12 * k.ntk.abs().max());
                for (name, share) in k.shares.named() {
                    assert!(min_eig_ratio(share) > -1e-10, "{act} {bias:?}: {name} PSD");
                }
                // a different pair of steps: no r_0 share (unequal lags to step 1)
                let c = inf
                    .kernels(&xs, None, (4, 2), &KernelOptions::default())
                    .unwrap();
                assert_eq!(c.shares.r0.abs().max(), 0.0);
                assert!(c.shares.w_rec.abs().max() > 0.0 && c.shares.w_in.abs().max() > 0.0);
                assert!((c.shares.total() - &c.ntk).abs().max() < 1e-12 * c.ntk.abs().max());
                // (4, 2) on x against (2, 4) on x is the transpose
                let ct = inf
                    .kernels(&xs, Some(&xs), (2, 4), &KernelOptions::default())
                    .unwrap();
                assert_eq!(ct.ntk, c.ntk.transpose(), "{act} {bias:?}");
            }
        }
    }

    #[test]
    fn closed_forms_equal_forced_quadrature() {
        // variances of order one, where the polar quadrature of erf' (a Gaussian bump, poorly
        // resolved by Gauss–Laguerre at large variance) is accurate to 1e-10
        let xs: Vec<Mat<f64>> = seqs(5, 3, 2).into_iter().map(|x| x * 0.4).collect();
        for act in [Activation::Relu, Activation::Erf, Activation::Identity] {
            let inf = InfiniteRnn::from_spec(&spec(1, act, BiasInit::Gaussian)).unwrap();
            let closed = inf
                .kernels(&xs, None, (3, 3), &KernelOptions::default())
                .unwrap();
            let forced = KernelOptions {
                force_quadrature: true,
                ..KernelOptions::default()
            };
            let quad = inf.kernels(&xs, None, (3, 3), &forced).unwrap();
            let (a, b) = (
                rel_err(&quad.ntk, &closed.ntk),
                rel_err(&quad.nngp, &closed.nngp),
            );
            assert!(a < 1e-10 && b < 1e-10, "{act}: {a:e} {b:e}");
        }
    }

    /// Per-sequence gradients of `y_t` from the models crate, flattened per parameter tensor.
    fn explicit_gradients(net: &Rnn<f64>, xs: &[Mat<f64>], t: usize) -> Vec<Vec<Vec<f64>>> {
        (0..xs[0].nrows())
            .map(|i| {
                let xi: Vec<Mat<f64>> = xs[..t].iter().map(|x| x.rows(i, 1).into_owned()).collect();
                let tr = net.forward(&xi).unwrap();
                let mut errs = vec![Mat::zeros(1, 1); t];
                errs[t - 1][(0, 0)] = 1.0;
                let p = RnnPathway {
                    feedback: RnnFeedback::Weights {
                        w_rec: &net.w_rec,
                        w_out: &net.w_out,
                    },
                    derivatives: &tr,
                };
                let g = rnn_gradients(
                    &net.spec,
                    &rnn_backward_signals(&net.spec, &p, &errs),
                    &errs,
                    &tr,
                );
                g.as_slices().iter().map(|s| s.unwrap().to_vec()).collect()
            })
            .collect()
    }

    #[test]
    fn empirical_shares_equal_explicit_gradient_products() {
        let net = Rnn::<f64>::new(&spec(7, Activation::Tanh, BiasInit::Gaussian), 4).unwrap();
        let xs = seqs(5, 4, 3);
        for steps in [(4, 4), (4, 2), (1, 3)] {
            let k = empirical_rnn_ntk(&net, &xs, None, steps, 0).unwrap();
            let g1 = explicit_gradients(&net, &xs, steps.0);
            let g2 = explicit_gradients(&net, &xs, steps.1);
            for (p, (name, share)) in k.named().into_iter().enumerate() {
                for i in 0..5 {
                    for j in 0..5 {
                        let v = dot(&g1[i][p], &g2[j][p]);
                        assert!(
                            (share[(i, j)] - v).abs() < 1e-12 * (1.0 + v.abs()),
                            "{steps:?} {name} ({i}, {j}): {} vs {v}",
                            share[(i, j)]
                        );
                    }
                }
            }
        }
        let other = seqs(4, 3, 9);
        let cross = empirical_rnn_ntk(&net, &xs, Some(&other), (4, 3), 0).unwrap();
        assert_eq!(cross.total().shape(), (5, 4));
    }

    /// Mean over seeds of the relative error of the empirical NTK at `(t, s)`.
    fn width_error(sp: &RnnSpec, xs: &[Mat<f64>], ana: &Mat<f64>, steps: (usize, usize)) -> f64 {
        let seeds = 0..3u64;
        seeds
            .clone()
            .map(|seed| {
                let net = Rnn::<f64>::new(sp, seed).unwrap();
                rel_err(
                    &empirical_rnn_ntk(&net, xs, None, steps, 0).unwrap().total(),
                    ana,
                )
            })
            .sum::<f64>()
            / seeds.count() as f64
    }

    #[test]
    fn empirical_ntk_approaches_analytic_with_width() {
        let xs = seqs(5, 4, 5);
        for (act, bias, tol) in [
            (Activation::Relu, BiasInit::Zero, 0.08),
            (Activation::Erf, BiasInit::Gaussian, 0.08),
            (Activation::Tanh, BiasInit::Zero, 0.08),
        ] {
            let inf = InfiniteRnn::from_spec(&spec(1, act, bias)).unwrap();
            let ana = inf
                .kernels(&xs, None, (4, 4), &KernelOptions::default())
                .unwrap();
            let errs: Vec<f64> = [64, 256, 1024]
                .iter()
                .map(|&w| width_error(&spec(w, act, bias), &xs, &ana.ntk, (4, 4)))
                .collect();
            assert!(errs[0] > errs[1] && errs[1] > errs[2], "{act}: {errs:?}");
            assert!(errs[2] < tol, "{act}: width 1024 error {}", errs[2]);
            // every share, and a pair of different steps, at the widest width
            let net = Rnn::<f64>::new(&spec(1024, act, bias), 11).unwrap();
            let emp = empirical_rnn_ntk(&net, &xs, None, (4, 4), 0).unwrap();
            for ((name, e), (_, a)) in emp.named().into_iter().zip(ana.shares.named()) {
                if name == "b_out" {
                    assert_eq!(e, a);
                } else {
                    assert!(rel_err(e, a) < 0.2, "{act} {name}: {}", rel_err(e, a));
                }
            }
            let ana2 = inf
                .kernels(&xs, None, (4, 2), &KernelOptions::default())
                .unwrap();
            let emp2 = empirical_rnn_ntk(&net, &xs, None, (4, 2), 0).unwrap();
            // the cross-step kernel is smaller than its fluctuation: mean error 0.11–0.24 at width
            // 1024 over seeds 0..3 (example rnn_kernel_table), against 0.44–1.2 at width 64
            assert!(
                rel_err(&emp2.total(), &ana2.ntk) < 0.35,
                "{act} steps (4, 2)"
            );
            assert!(
                emp2.r0.norm() < 0.15 * emp.r0.norm(),
                "{act}: r_0 cross-lag share"
            );
        }
    }

    #[test]
    fn monte_carlo_nngp_within_three_standard_errors() {
        let xs = seqs(5, 3, 6);
        for (act, bias) in [
            (Activation::Relu, BiasInit::Zero),
            (Activation::Tanh, BiasInit::Gaussian),
        ] {
            let sp = spec(256, act, bias);
            let ana = InfiniteRnn::from_spec(&sp).unwrap();
            for steps in [(3, 3), (3, 2)] {
                let mc = monte_carlo_rnn_nngp(&sp, &xs, steps, 0..400).unwrap();
                let k = ana
                    .kernels(&xs, None, steps, &KernelOptions::default())
                    .unwrap();
                let mut outside = 0;
                for j in 0..5 {
                    for i in 0..5 {
                        let z = (mc.mean[(i, j)] - k.nngp[(i, j)]) / mc.std_err[(i, j)];
                        if z.abs() > 3.0 {
                            outside += 1;
                        }
                    }
                }
                // 25 correlated entries: allow one beyond 3σ
                assert!(outside <= 1, "{act} {steps:?}: {outside} entries beyond 3σ");
            }
        }
        let sp = spec(8, Activation::Relu, BiasInit::Zero);
        assert!(monte_carlo_rnn_nngp(&sp, &xs, (3, 3), 2..3).is_err());
        assert!(monte_carlo_rnn_nngp(&sp, &xs, (4, 3), 0..3).is_err());
    }

    /// One step is a one-hidden-layer MLP `f = (s_w/√n) v·φ(m_in W x + s_b b) + s_b b_out` except
    /// for the readout multiplier (the RNN's is `1/√n`, the MLP's `s_w/√n`) and for `r_0`, whose
    /// gradient `m_rec W_recᵀ δ_1` adds `s_w² E[φ'φ']`. With `s_w = 1` the readout multipliers
    /// agree: the NNGP is the MLP's, the NTK minus the `r_0` share is the MLP's, and the `r_0`
    /// share is the MLP's derivative kernel `Ṡ^2`. For other `s_w`, the readout's share and the
    /// NNGP are the MLP's with `s_w²` divided out of the readout term.
    #[test]
    fn one_step_is_a_one_hidden_layer_mlp() {
        let x1 = seqs(6, 1, 7);
        for act in ACTS {
            for bias in [BiasInit::Gaussian, BiasInit::Zero] {
                for w_std in [1.0, 1.7] {
                    let param = Parameterization::Ntk { w_std, b_std: 0.4 };
                    let rnn = InfiniteRnn::from_spec(
                        &RnnSpec::new(3, 1, 1, act)
                            .with_param(param)
                            .with_bias_init(bias),
                    )
                    .unwrap()
                    .kernels(&x1, None, (1, 1), &KernelOptions::default())
                    .unwrap();
                    let mlp = InfiniteMlp::from_spec(
                        &MlpSpec::uniform(3, 1, 1, 1, act)
                            .with_param(param)
                            .with_bias_init(bias),
                    )
                    .unwrap()
                    .kernels(
                        &x1[0],
                        None,
                        &KernelRequest::all(),
                        &KernelOptions::default(),
                    )
                    .unwrap();
                    let beta_sb2 = if bias == BiasInit::Gaussian {
                        0.16
                    } else {
                        0.0
                    };
                    let sw2 = w_std * w_std;
                    // the MLP orders the variances (k11, k22) by row and column, the RNN by size:
                    // equal to rounding for closed forms, to the quadrature's accuracy otherwise
                    // (up to 9e-6 measured for tanh' when one variance is zero — the zero first step
                    // without bias — where the polar rule is not symmetric in (k11, k22))
                    let quad = matches!(act, Activation::Tanh | Activation::Gelu);
                    let tol =
                        if quad { 2e-5 } else { 1e-13 } * mlp.ntk.as_ref().unwrap().abs().max();
                    let close = |a: &Mat<f64>, b: &Mat<f64>| (a - b).abs().max() < tol;
                    // readout: W_out share E[φφ] = A^2/s_w², NNGP = E[φφ] + β s_b²
                    let e = mlp.activity(2) / sw2;
                    assert!(close(&rnn.shares.w_out, &e), "{act} {w_std}");
                    assert!(close(&rnn.nngp, &e.map(|v| v + beta_sb2)), "{act} {w_std}");
                    // r_0: s_w² E[φ'φ'] = Ṡ^2
                    let sdot = mlp.layers[1].derivative.as_ref().unwrap();
                    assert!(close(&rnn.shares.r0, sdot), "{act} {w_std}");
                    // hidden layer shares: W_in ↔ W^1, b ↔ b^1, both scaled by 1/s_w²
                    assert!(
                        close(&(&rnn.shares.w_in * sw2), &mlp.weight_share(1)),
                        "{act}"
                    );
                    assert!(close(&(&rnn.shares.b * sw2), &mlp.bias_share(1)), "{act}");
                    assert_eq!(rnn.shares.w_rec.abs().max(), 0.0);
                    if w_std == 1.0 {
                        let rest = &rnn.ntk - &rnn.shares.r0;
                        assert!(close(&rest, mlp.ntk.as_ref().unwrap()), "{act} {bias:?}");
                        assert!(close(&rnn.nngp, mlp.nngp.as_ref().unwrap()), "{act}");
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_bad_steps_shapes_and_the_standard_parameterisation() {
        let xs = seqs(4, 3, 8);
        let inf = InfiniteRnn::from_spec(&spec(1, Activation::Relu, BiasInit::Zero)).unwrap();
        let o = KernelOptions::default();
        assert!(inf.kernels(&xs, None, (0, 1), &o).is_err());
        assert!(inf.kernels(&xs, None, (4, 1), &o).is_err());
        assert!(inf.kernels(&[], None, (1, 1), &o).is_err());
        let mut bad = xs.clone();
        bad[1] = Mat::zeros(4, 2);
        let msg = inf.kernels(&bad, None, (3, 3), &o).unwrap_err().to_string();
        assert!(msg.contains("time step 2"), "{msg}");
        let mut nan = xs.clone();
        nan[2][(1, 1)] = f64::NAN;
        assert!(inf.kernels(&nan, None, (3, 3), &o).is_err());
        let std =
            spec(1, Activation::Relu, BiasInit::Zero).with_param(Parameterization::Standard {
                w_std: 1.0,
                b_std: 0.1,
            });
        assert!(InfiniteRnn::from_spec(&std).is_err());
        let net = Rnn::<f64>::new(&spec(4, Activation::Relu, BiasInit::Zero), 0).unwrap();
        assert!(empirical_rnn_ntk(&net, &xs, None, (3, 3), 1).is_err());
    }
}
