//! Closed-form training dynamics of a kernel (linearised) model under full-batch gradient
//! descent or gradient flow on the MSE loss (docs/theory.md §4).
//!
//! With `N` training points, `C` outputs, `L = (1/(NC)) Σ_i ‖f(x_i) − y_i‖²` and kernel `Θ`, a
//! gradient step changes the linearised outputs by `f_{k+1}(x) = f_k(x) − c Θ(x, X) r_k` with the
//! residual `r_k = f_k(X) − Y` and the effective step `c = 2·lr/(N·C)`. Hence
//!
//! ```text
//! r_k    = (I − cΘ)^k r_0                       (gradient flow: e^{−cΘt} r_0)
//! ε(k)   = lr Σ_{s<k} e_s = c Σ_{s<k} r_s = Θ^{−1} (I − (I − cΘ)^k) r_0
//! f_k(x) = f_0(x) − Θ(x, X) ε(k)
//! ```
//!
//! where `e_s = 2 r_s/(NC)` is the loss gradient at the outputs and `ε` the accumulated error
//! that every layer's weight change is built from ([`crate::predict`]). With one symmetric
//! eigendecomposition `Θ = V Λ Vᵀ`, `ε(k) = V g_k(Λ) Vᵀ r_0` with
//! `g_k(λ) = (1 − (1 − cλ)^k)/λ` (`→ c·k` as `λ → 0`, evaluated with `expm1`/`ln1p` so that
//! small eigenvalues lose no accuracy), so any `k` costs `O(N²C)`.
//!
//! Gradient descent converges only if `|1 − cλ| < 1` for every eigenvalue, i.e.
//! `c·λ_max < 2` ⇔ `lr < N·C/λ_max` ([`KernelDynamics::max_stable_lr`]).
//!
//! The kernel may be the analytic `T^L` (`N × N`, residual `N × C`: the outputs decouple) or an
//! empirical `Θ` (`NC × NC`, residual `NC × 1`); `c = 2·lr/(rows·cols of the residual)` covers
//! both.
//!
//! ```
//! use widealign_ntk::dynamics::{KernelDynamics, Schedule};
//! use widealign_tensor::Mat;
//! let theta = Mat::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
//! let r0 = Mat::from_row_slice(2, 1, &[1.0, -1.0]);
//! let dynamics = KernelDynamics::new(&theta, 1, 0.1).unwrap();
//! // step by step: r ← r − c Θ r, c = 2·0.1/2
//! let mut r = r0.clone();
//! for _ in 0..5 { r = &r - &theta * &r * 0.1; }
//! let closed = dynamics.residual(&r0, Schedule::Steps(5)).unwrap();
//! assert!((closed - r).abs().max() < 1e-14);
//! assert!((dynamics.max_stable_lr() - 2.0 / dynamics.lambda_max()).abs() < 1e-12);
//! ```

use nalgebra::{DVector, SymmetricEigen};
use widealign_tensor::Mat;

use crate::error::{check_finite, shape_err};
use crate::NtkError;

/// When to evaluate the dynamics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// After `k` full-batch gradient-descent steps.
    Steps(u64),
    /// Gradient flow after time `t`, measured in steps (`t = k` matches `k` small steps).
    Flow(f64),
}

/// The eigendecomposition of a training kernel, ready to evaluate the closed-form dynamics of
/// any initial residual at any time.
#[derive(Clone, Debug)]
pub struct KernelDynamics {
    eigenvalues: DVector<f64>,
    eigenvectors: Mat<f64>,
    outputs: usize,
    c: f64,
    lr: f64,
    count: usize,
}

impl KernelDynamics {
    /// Decomposes `kernel` (`M × M`, symmetric) for residuals with `outputs` columns (`C` for the
    /// analytic `T^L`, 1 for a stacked empirical `Θ`) and learning rate `lr`, so that
    /// `c = 2·lr/(M·outputs)`. Cost: one `M × M` symmetric eigendecomposition.
    ///
    /// # Errors
    /// [`NtkError::Shape`] if the kernel is not square or empty; [`NtkError::NonFinite`] for NaN
    /// entries; [`NtkError::InvalidOption`] for a negative or non-finite `lr` or zero outputs.
    pub fn new(kernel: &Mat<f64>, outputs: usize, lr: f64) -> Result<Self, NtkError> {
        Self::with_normalisation(kernel, outputs, lr, kernel.nrows() * outputs)
    }

    /// As [`KernelDynamics::new`], for a loss that averages over `count` terms instead of
    /// `M·outputs`: `c = 2·lr/count`, largest stable rate `count/λ_max`. For a recurrent network
    /// whose kernel is stacked over the `T` time steps of `N` sequences (`M = N·T`) and whose loss
    /// sums the per-step MSE, each averaged over `N·C`, the count is `N·C` (docs/theory.md §4.5).
    ///
    /// ```
    /// use widealign_ntk::dynamics::{KernelDynamics, Schedule};
    /// use widealign_tensor::Mat;
    /// let theta = Mat::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
    /// let r0 = Mat::from_row_slice(2, 1, &[1.0, -1.0]);
    /// // two steps of one sequence: c = 2·lr/(N·C) = 2·0.1/1
    /// let d = KernelDynamics::with_normalisation(&theta, 1, 0.1, 1).unwrap();
    /// let r1 = &r0 - &theta * &r0 * 0.2;
    /// assert!((d.residual(&r0, Schedule::Steps(1)).unwrap() - r1).abs().max() < 1e-15);
    /// ```
    ///
    /// # Errors
    /// As [`KernelDynamics::new`], and [`NtkError::InvalidOption`] naming `count` for zero.
    pub fn with_normalisation(
        kernel: &Mat<f64>,
        outputs: usize,
        lr: f64,
        count: usize,
    ) -> Result<Self, NtkError> {
        let m = kernel.nrows();
        if kernel.ncols() != m || m == 0 {
            return Err(shape_err(
                "kernel",
                "square, non-empty".into(),
                kernel.shape(),
            ));
        }
        if !lr.is_finite() || lr < 0.0 {
            return Err(NtkError::InvalidOption {
                name: "lr".into(),
                reason: format!("must be finite and non-negative, got {lr}"),
            });
        }
        if outputs == 0 {
            return Err(NtkError::InvalidOption {
                name: "outputs".into(),
                reason: "must be at least 1".into(),
            });
        }
        if count == 0 {
            return Err(NtkError::InvalidOption {
                name: "count".into(),
                reason: "the loss must average over at least one term".into(),
            });
        }
        check_finite("kernel", kernel)?;
        let sym = (kernel + kernel.transpose()) * 0.5;
        let eig = SymmetricEigen::new(sym);
        Ok(KernelDynamics {
            eigenvalues: eig.eigenvalues,
            eigenvectors: eig.eigenvectors,
            outputs,
            c: 2.0 * lr / count as f64,
            lr,
            count,
        })
    }

    /// The effective step `c = 2·lr/(N·C)` (`2·lr/count`).
    pub fn c(&self) -> f64 {
        self.c
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Kernel eigenvalues (in no particular order).
    pub fn eigenvalues(&self) -> &DVector<f64> {
        &self.eigenvalues
    }

    /// Largest kernel eigenvalue `λ_max`.
    pub fn lambda_max(&self) -> f64 {
        self.eigenvalues.max()
    }

    /// The largest stable learning rate `N·C/λ_max` (`count/λ_max`; gradient descent diverges at
    /// or above it).
    pub fn max_stable_lr(&self) -> f64 {
        self.count as f64 / self.lambda_max()
    }

    /// `Ok` if `lr` is below [`KernelDynamics::max_stable_lr`].
    ///
    /// # Errors
    /// [`NtkError::UnstableLearningRate`] with the limit.
    pub fn check_stable(&self) -> Result<(), NtkError> {
        let max = self.max_stable_lr();
        if self.lr < max {
            Ok(())
        } else {
            Err(NtkError::UnstableLearningRate {
                lr: self.lr,
                max_stable_lr: max,
                lambda_max: self.lambda_max(),
                nc: self.count,
            })
        }
    }

    /// `(1 − cλ)^k` (or `e^{−cλt}`), the residual factor of one eigen-direction.
    fn decay(&self, lambda: f64, s: Schedule) -> f64 {
        let x = self.c * lambda;
        match s {
            Schedule::Steps(k) => {
                if x < 1.0 {
                    (k as f64 * (-x).ln_1p()).exp()
                } else {
                    (1.0 - x).powf(k as f64)
                }
            }
            Schedule::Flow(t) => (-x * t).exp(),
        }
    }

    /// `g(λ) = c·(1 − decay)/x` with `x = cλ`: the accumulated error factor.
    fn accumulate(&self, lambda: f64, s: Schedule) -> f64 {
        let x = self.c * lambda;
        let steps = match s {
            Schedule::Steps(k) => k as f64,
            Schedule::Flow(t) => t,
        };
        if x == 0.0 {
            return self.c * steps;
        }
        let one_minus_decay = match s {
            Schedule::Steps(k) if x < 1.0 => -(k as f64 * (-x).ln_1p()).exp_m1(),
            Schedule::Steps(_) => 1.0 - self.decay(lambda, s),
            Schedule::Flow(t) => -(-x * t).exp_m1(),
        };
        self.c * one_minus_decay / x
    }

    fn apply(&self, r0: &Mat<f64>, f: impl Fn(f64) -> f64) -> Result<Mat<f64>, NtkError> {
        let m = self.eigenvectors.nrows();
        if r0.nrows() != m {
            return Err(shape_err(
                "initial residual f_0(X) − Y",
                format!("{m} × {}", self.outputs),
                r0.shape(),
            ));
        }
        check_finite("initial residual", r0)?;
        let mut scaled = self.eigenvectors.transpose() * r0;
        for (i, &l) in self.eigenvalues.iter().enumerate() {
            let g = f(l);
            scaled.row_mut(i).scale_mut(g);
        }
        Ok(&self.eigenvectors * scaled)
    }

    /// The residual `r = f(X) − Y` on the training points at time `s`, from `r_0` (`M × C'`).
    /// Any number of columns is accepted (each evolves on its own with the step `c` fixed at
    /// construction), so the same decomposition also maps whole cross-kernel blocks.
    ///
    /// # Errors
    /// [`NtkError::Shape`] if `r_0` has not `M` rows; [`NtkError::NonFinite`] for NaN.
    pub fn residual(&self, r0: &Mat<f64>, s: Schedule) -> Result<Mat<f64>, NtkError> {
        self.apply(r0, |l| self.decay(l, s))
    }

    /// The accumulated error `ε(s) = Θ^{−1}(I − (I − cΘ)^k) r_0` (`M × C'`).
    ///
    /// # Errors
    /// As [`KernelDynamics::residual`].
    pub fn eps(&self, r0: &Mat<f64>, s: Schedule) -> Result<Mat<f64>, NtkError> {
        self.apply(r0, |l| self.accumulate(l, s))
    }
}

/// `−K(x, X) ε`: the change of the outputs at the points of a cross kernel `K` (`P × M`).
///
/// # Errors
/// [`NtkError::Shape`] if `K` has not `ε.nrows()` columns.
pub fn function_change(cross_kernel: &Mat<f64>, eps: &Mat<f64>) -> Result<Mat<f64>, NtkError> {
    if cross_kernel.ncols() != eps.nrows() {
        return Err(shape_err(
            "cross kernel",
            format!("P × {} (one column per training row)", eps.nrows()),
            cross_kernel.shape(),
        ));
    }
    Ok(-(cross_kernel * eps))
}

/// `√(Σ_c ε_cᵀ K ε_c)`: the predicted Frobenius norm of a layer's weight change when `K` is its
/// weight share `P^l ⊙ A^l` on the training points (docs/theory.md §4.3), or its bias change for
/// `K = s_b² P^l`.
///
/// # Errors
/// [`NtkError::Shape`] if `K` is not `M × M` with `M = ε.nrows()`.
pub fn quadratic_norm(kernel: &Mat<f64>, eps: &Mat<f64>) -> Result<f64, NtkError> {
    let m = eps.nrows();
    if kernel.shape() != (m, m) {
        return Err(shape_err(
            "layer kernel",
            format!("{m} × {m}"),
            kernel.shape(),
        ));
    }
    let ke = kernel * eps;
    Ok(ke.component_mul(eps).sum().max(0.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_tensor::rng::SeedStream;

    fn psd(n: usize, seed: u64) -> Mat<f64> {
        let a: Mat<f64> = SeedStream::new(seed).gaussian_matrix("a", n, n + 2, 1.0);
        &a * a.transpose() / n as f64
    }

    #[test]
    fn closed_form_equals_stepping_for_every_k() {
        let theta = psd(6, 1);
        let r0: Mat<f64> = SeedStream::new(2).gaussian_matrix("r", 6, 2, 1.0);
        let lr = 1.5;
        let d = KernelDynamics::new(&theta, 2, lr).unwrap();
        let c = 2.0 * lr / 12.0;
        let mut r = r0.clone();
        let mut eps = Mat::zeros(6, 2);
        for k in 0..=40u64 {
            let er = (d.residual(&r0, Schedule::Steps(k)).unwrap() - &r)
                .abs()
                .max();
            let ee = (d.eps(&r0, Schedule::Steps(k)).unwrap() - &eps).abs().max();
            assert!(er < 1e-12 && ee < 1e-12, "k={k}: {er} {ee}");
            // f changes by −cΘr, ε accumulates c r
            eps += &r * c;
            r = &r - &theta * &r * c;
        }
        // r_k = r_0 − Θ ε_k
        let k = Schedule::Steps(17);
        let diff = d.residual(&r0, k).unwrap() - (&r0 - &theta * d.eps(&r0, k).unwrap());
        assert!(diff.abs().max() < 1e-12);
    }

    #[test]
    fn flow_matches_many_small_steps_and_singular_kernels_work() {
        // rank-deficient kernel: the null direction accumulates c·t and never decays
        let v = Mat::from_row_slice(3, 1, &[1.0, 2.0, -1.0]);
        let theta = &v * v.transpose();
        let r0 = Mat::from_row_slice(3, 1, &[0.3, -0.2, 0.5]);
        let lr = 0.05;
        let d = KernelDynamics::new(&theta, 1, lr).unwrap();
        let fine = KernelDynamics::new(&theta, 1, lr / 1000.0).unwrap();
        let a = d.eps(&r0, Schedule::Flow(30.0)).unwrap();
        let b = fine.eps(&r0, Schedule::Steps(30_000)).unwrap();
        assert!((a - b).abs().max() < 1e-4);
        let e = d.eps(&r0, Schedule::Steps(10)).unwrap();
        assert!(e.iter().all(|x| x.is_finite()));
        let mut r = r0.clone();
        let mut eps = Mat::zeros(3, 1);
        for _ in 0..10 {
            eps += &r * d.c();
            r = &r - &theta * &r * d.c();
        }
        assert!((e - eps).abs().max() < 1e-13);
    }

    /// A kernel stacked over `T` time steps whose loss averages over `N·C` terms only: the step is
    /// `c = 2·lr/(N·C)`, `T` times the one of [`KernelDynamics::new`], and so is the stability
    /// limit `N·C/λ_max` smaller.
    #[test]
    fn normalisation_sets_the_step_and_the_stability_limit() {
        let theta = psd(6, 4); // N = 2 sequences × T = 3 steps
        let r0: Mat<f64> = SeedStream::new(5).gaussian_matrix("r", 6, 1, 1.0);
        let lr = 0.2;
        let d = KernelDynamics::with_normalisation(&theta, 1, lr, 2).unwrap();
        let plain = KernelDynamics::new(&theta, 1, lr).unwrap();
        assert!((d.c() - 3.0 * plain.c()).abs() < 1e-15);
        assert!((d.max_stable_lr() * 3.0 - plain.max_stable_lr()).abs() < 1e-12);
        let (mut r, mut eps) = (r0.clone(), Mat::zeros(6, 1));
        for _ in 0..7 {
            eps += &r * (2.0 * lr / 2.0);
            r = &r - &theta * &r * (2.0 * lr / 2.0);
        }
        let k = Schedule::Steps(7);
        assert!((d.residual(&r0, k).unwrap() - r).abs().max() < 1e-13);
        assert!((d.eps(&r0, k).unwrap() - eps).abs().max() < 1e-13);
        assert!(KernelDynamics::with_normalisation(&theta, 1, lr, 0).is_err());
    }

    #[test]
    fn stability_limit() {
        let theta = psd(5, 3);
        let r0 = Mat::from_element(5, 1, 1.0);
        let d = KernelDynamics::new(&theta, 1, 0.1).unwrap();
        let max = d.max_stable_lr();
        assert!(d.check_stable().is_ok());
        let bad = KernelDynamics::new(&theta, 1, max * 1.01).unwrap();
        let err = bad.check_stable().unwrap_err().to_string();
        assert!(err.contains("largest stable learning rate"), "{err}");
        // just above the limit the top mode grows: |1 − cλ| > 1
        let r = bad.residual(&r0, Schedule::Steps(2000)).unwrap();
        assert!(r.norm() > 10.0 * r0.norm());
        let ok = KernelDynamics::new(&theta, 1, max * 0.99).unwrap();
        assert!(ok.residual(&r0, Schedule::Steps(20000)).unwrap().norm() < 1e-3 * r0.norm());
        assert!(KernelDynamics::new(&theta, 1, f64::NAN).is_err());
        assert!(ok.eps(&Mat::zeros(4, 1), Schedule::Steps(1)).is_err());
    }
}
