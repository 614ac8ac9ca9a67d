//! The error type of widealign-ntk.
//!
//! Errors speak the library's language: an option is named by its field or parameter name
//! (`lr`, `w_std`, `widths`, `quadrature order`), never by a command-line flag. A program that
//! sets these fields from flags shows its own spelling with [`NtkError::message_with`].

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
        /// The option as the library names it: a config field such as `lr`, `w_std` or
        /// `widths`, or a parameter such as `quadrature order`.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The learning rate exceeds the gradient-descent stability limit `c·λ_max(Θ) < 2`; the
    /// message ends "choose lr below …", naming the field `lr`.
    #[error("{}", unstable_message(*.lr, *.max_stable_lr, *.lambda_max, *.nc, "lr"))]
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
    /// A kernel matrix (plus its diagonal regularisation) is not positive definite in the
    /// precision it is stored in: the factorisation met a non-positive pivot at `index`.
    #[error("{}", not_pd_message(*.index, &|f: &str| f.to_string()))]
    NotPositiveDefinite {
        /// The training row (0-based) whose pivot failed.
        index: usize,
    },
    /// A computation would need more memory than the budget allows; `hint` says what would fit.
    #[error("{}", too_large_message(*.needed, *.budget, what, fits, &|f: &str| f.to_string()))]
    TooLarge {
        /// Predicted peak bytes.
        needed: u64,
        /// The budget in bytes.
        budget: u64,
        /// The largest items of the prediction, e.g. `training kernel 7.20 GB (f32)`.
        what: String,
        /// Settings that would fit, each `(option, value)`, e.g. `("train_size", "41000")`;
        /// empty when nothing would.
        fits: Vec<(String, String)>,
    },
    /// An error from the finite-network crate.
    #[error(transparent)]
    Model(#[from] widealign_models::ModelError),
}

impl NtkError {
    /// The message with every option name spelled by `spell`: the `Display` form spells them
    /// as the library names them (`lr`, `w_std`, …); a command-line program passes its flag
    /// spelling (`lr` → `--lr`) so that its message names the flag. Only
    /// [`NtkError::InvalidOption`] and [`NtkError::UnstableLearningRate`] name options; every
    /// other error is its `Display` form.
    ///
    /// ```
    /// use widealign_ntk::NtkError;
    /// let e = NtkError::InvalidOption { name: "lr".into(), reason: "must be finite".into() };
    /// assert_eq!(e.to_string(), "invalid option lr: must be finite");
    /// let flag = |f: &str| format!("--{}", f.replace('_', "-"));
    /// assert_eq!(e.message_with(flag), "invalid option --lr: must be finite");
    /// ```
    pub fn message_with(&self, spell: impl Fn(&str) -> String) -> String {
        match self {
            NtkError::InvalidOption { name, reason } => {
                format!("invalid option {}: {reason}", spell(name))
            }
            NtkError::UnstableLearningRate {
                lr,
                max_stable_lr,
                lambda_max,
                nc,
            } => unstable_message(*lr, *max_stable_lr, *lambda_max, *nc, &spell("lr")),
            NtkError::NotPositiveDefinite { index } => not_pd_message(*index, &spell),
            NtkError::TooLarge {
                needed,
                budget,
                what,
                fits,
            } => too_large_message(*needed, *budget, what, fits, &spell),
            other => other.to_string(),
        }
    }
}

/// The message of [`NtkError::UnstableLearningRate`], naming the learning rate `lr_name`.
fn unstable_message(
    lr: f64,
    max_stable_lr: f64,
    lambda_max: f64,
    nc: usize,
    lr_name: &str,
) -> String {
    format!(
        "learning rate {lr} is not below the largest stable learning rate {max_stable_lr:.6} \
         for this kernel (gradient descent needs c·λ_max < 2 with c = 2·lr/(N·C); \
         λ_max = {lambda_max:.6}, N·C = {nc}); choose {lr_name} below {max_stable_lr:.6}"
    )
}

/// The message of [`NtkError::NotPositiveDefinite`].
fn not_pd_message(index: usize, spell: &dyn Fn(&str) -> String) -> String {
    format!(
        "the regularised training kernel is not positive definite in its storage precision \
         (Cholesky pivot at training row {index}); raise {} (e.g. ×10) or use {} f64",
        spell("diag_reg"),
        spell("precision")
    )
}

/// The message of [`NtkError::TooLarge`].
fn too_large_message(
    needed: u64,
    budget: u64,
    what: &str,
    fits: &[(String, String)],
    spell: &dyn Fn(&str) -> String,
) -> String {
    let gb = |b: u64| b as f64 / 1e9;
    let hint = if fits.is_empty() {
        "no setting of this run fits; raise the budget".to_string()
    } else {
        let opts: Vec<String> = fits
            .iter()
            .map(|(f, v)| format!("{} {v}", spell(f)))
            .collect();
        format!("would fit: {}", opts.join(", or "))
    };
    format!(
        "refused: this run needs about {:.2} GB but the memory budget is {:.2} GB ({what}); {hint}",
        gb(needed),
        gb(budget)
    )
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
