//! The error type of widealign-ntk.

/// Everything that can go wrong in the theory crate.
#[derive(Debug, thiserror::Error)]
pub enum NtkError {
    /// The architecture is not one the infinite-width theory covers, or a spec field is invalid.
    #[error("unsupported architecture: {0}")]
    Architecture(String),
    /// A matrix argument has the wrong shape.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        /// Which argument (e.g. `inputs`, `targets`, `layer 2 weight change`).
        what: String,
        /// The expected shape, e.g. `N × 64`.
        expected: String,
        /// The shape that was passed.
        got: String,
    },
    /// An input contains NaN or an infinity.
    #[error("{what} has a non-finite value at row {row}, column {col}")]
    NonFinite {
        /// Which argument.
        what: String,
        /// Row (0-based) of the first offending entry.
        row: usize,
        /// Column (0-based) of the first offending entry.
        col: usize,
    },
    /// A numeric option is out of range.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option, e.g. `quadrature order` or `--lr`.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The learning rate exceeds the gradient-descent stability limit `c·λ_max(Θ) < 2`.
    #[error(
        "learning rate {lr} is not below the largest stable learning rate {max_stable_lr:.6} \
         for this kernel (gradient descent needs c·λ_max < 2 with c = 2·lr/(N·C); \
         λ_max = {lambda_max:.6}, N·C = {nc}); choose --lr below {max_stable_lr:.6}"
    )]
    UnstableLearningRate {
        /// The requested learning rate.
        lr: f64,
        /// `N·C/λ_max`.
        max_stable_lr: f64,
        /// Largest eigenvalue of the kernel.
        lambda_max: f64,
        /// Number of training points times outputs.
        nc: usize,
    },
    /// Finite-network training diverged (non-finite loss) in an experiment.
    #[error("training diverged at step {step} (width {width}): loss is {loss}")]
    Diverged {
        /// Width of the diverging network.
        width: usize,
        /// Step at which the loss became non-finite.
        step: usize,
        /// The loss value.
        loss: f64,
    },
    /// An error from the finite-network crate.
    #[error(transparent)]
    Model(#[from] widealign_models::ModelError),
}

/// Checks that every entry of `m` is finite.
pub(crate) fn check_finite(what: &str, m: &widealign_tensor::Mat<f64>) -> Result<(), NtkError> {
    for j in 0..m.ncols() {
        for i in 0..m.nrows() {
            if !m[(i, j)].is_finite() {
                return Err(NtkError::NonFinite {
                    what: what.to_string(),
                    row: i,
                    col: j,
                });
            }
        }
    }
    Ok(())
}

/// A shape error.
pub(crate) fn shape_err(what: &str, expected: String, got: (usize, usize)) -> NtkError {
    NtkError::Shape {
        what: what.to_string(),
        expected,
        got: format!("{} × {}", got.0, got.1),
    }
}
