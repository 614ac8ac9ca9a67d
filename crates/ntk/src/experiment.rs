//! Library entry points behind the `widealign ntk`, `dynamics` and `align` commands.
//!
//! The command-line crate only parses flags, loads data and prints the JSON these functions
//! return; every computation lives here so it is tested with the theory.
//!
//! * [`analytic_ntk`] → [`NtkReport`] `{"nngp": [[..]], "ntk": [[..]], "seconds": s}`;
//!   [`analytic_rnn_ntk`] → the same report for the recurrent network (`ntk --model rnn`);
//!   [`analytic_cnn_ntk`] → for the convolutional network (`ntk --model cnn`).
//! * [`dynamics_experiment`] → [`DynamicsReport`]: trains the finite network with full-batch
//!   gradient descent (backprop, MSE) at several widths from one spec and seed and compares the
//!   result with the closed-form predictions of docs/theory.md §4.4 (see [`DynamicsReport`] for the
//!   three relative errors and the fitted log-log slopes).
//! * `widealign align` glue: [`crate::align::ShadowAccumulator`] (hooked into the rules crate's
//!   training loop), [`crate::align::align_layers`] and [`crate::align::AlignReport`].
//!
//! ```
//! use widealign_models::{BiasInit, MlpSpec, Parameterization};
//! use widealign_ntk::experiment::{analytic_ntk, NtkConfig};
//! use widealign_tensor::{Activation, Mat};
//! let x = Mat::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 1.0]);
//! // one hidden layer (its width does not enter the kernels), a scalar output
//! let spec = MlpSpec::uniform(2, 1, 1, 1, Activation::Relu)
//!     .with_param(Parameterization::Ntk { w_std: 1.0, b_std: 0.0 })
//!     .with_bias_init(BiasInit::Gaussian);
//! let cfg = NtkConfig::new(spec);
//! let r = analytic_ntk(&x, &cfg).unwrap();
//! assert_eq!(r.ntk.len(), 2);
//! assert!((r.nngp[0][0] - 0.25).abs() < 1e-15); // s_w² E[relu(u)²] with Var u = 1/2
//! let json = serde_json::to_string(&r).unwrap();
//! assert!(json.starts_with("{\"nngp\":[["));
//! ```

use std::borrow::Borrow;
use std::time::Instant;

use serde::Serialize;

use widealign_models::{CnnSpec, FeedbackPath, Loss, Mlp, MlpSpec, Rnn, RnnSpec, RnnTrace, Trace};
use widealign_tensor::{Float, Mat};

use crate::align::AlignModel;
use crate::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use crate::cnn::InfiniteCnn;
use crate::dynamics::{function_change, quadratic_norm, KernelDynamics, Schedule};
use crate::error::{check_finite, shape_err};
use crate::predict::predicted_update;
use crate::quadrature::Quadrature;
use crate::rnn::{split_sequences, InfiniteRnn};
use crate::NtkError;

/// Parameters of `widealign ntk`: the network whose infinite-width kernels are computed.
#[derive(Clone, Debug, PartialEq)]
pub struct NtkConfig {
    /// The architecture (NTK parameterisation). Its input dimension must be the number of
    /// columns of the inputs; its hidden widths and output dimension do not enter the kernels
    /// (see [`InfiniteMlp`]). With [`BiasInit::Gaussian`](widealign_models::BiasInit) biases,
    /// as neural-tangents' `Dense(W_std, b_std)`, `Σ^1 = s_w² x·x'/n_0 + s_b²`.
    pub spec: MlpSpec,
    /// Integrator for tanh and gelu.
    pub quadrature: Quadrature,
}

impl NtkConfig {
    /// A config for `spec` with the default quadrature.
    pub fn new(spec: MlpSpec) -> Self {
        NtkConfig {
            spec,
            quadrature: Quadrature::default(),
        }
    }
}

/// Output of [`analytic_ntk`]: the JSON of `widealign ntk --json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NtkReport {
    /// Output NNGP `Σ^L`, `N × N`, row-major nested lists.
    pub nngp: Vec<Vec<f64>>,
    /// Output NTK `T^L`, `N × N`.
    pub ntk: Vec<Vec<f64>>,
    /// Wall-clock seconds spent computing the kernels.
    pub seconds: f64,
}

fn rows(m: &Mat<f64>) -> Vec<Vec<f64>> {
    (0..m.nrows())
        .map(|i| m.row(i).iter().copied().collect())
        .collect()
}

/// The infinite-width NNGP and NTK of the rows of `inputs` (`N × n_0`, one input per row).
///
/// # Errors
/// [`NtkError::InvalidOption`] naming `w_std` or `b_std` for a negative or non-finite standard
/// deviation and `inputs` for an empty input set; the errors of [`InfiniteMlp::from_spec`] for
/// any other invalid spec; [`NtkError::Shape`] if the inputs do not have `spec.input_dim`
/// columns; [`NtkError::NonFinite`] for NaN inputs.
pub fn analytic_ntk(inputs: &Mat<f64>, config: &NtkConfig) -> Result<NtkReport, NtkError> {
    check_stds(config.spec.param)?;
    check_nonempty(inputs)?;
    let net = InfiniteMlp::from_spec(&config.spec)?;
    let options = KernelOptions {
        quadrature: config.quadrature,
        ..KernelOptions::default()
    };
    let start = Instant::now();
    let k = net.kernels(inputs, None, &KernelRequest::outputs(), &options)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(NtkReport {
        nngp: rows(k.nngp.as_ref().expect("requested")),
        ntk: rows(k.ntk.as_ref().expect("requested")),
        seconds,
    })
}

/// Parameters of `widealign ntk --model rnn`: the recurrent network whose infinite-width kernels
/// are computed ([`crate::rnn::InfiniteRnn`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RnnNtkConfig {
    /// The architecture (NTK parameterisation). Its input dimension must be the number of inputs
    /// per time step; its width and output dimension do not enter the kernels.
    pub spec: RnnSpec,
    /// Integrator for tanh and gelu.
    pub quadrature: Quadrature,
}

impl RnnNtkConfig {
    /// A config for `spec` with the default quadrature.
    pub fn new(spec: RnnSpec) -> Self {
        RnnNtkConfig {
            spec,
            quadrature: Quadrature::default(),
        }
    }
}

/// The infinite-width NNGP and NTK of one output unit at the last step between the sequences in
/// the rows of `inputs` (`N × (T·d)`, time-major: the `d` inputs of step 1, then of step 2, …),
/// `T = seq_len`, `d = spec.input_dim`.
///
/// ```
/// use widealign_models::{BiasInit, RnnSpec};
/// use widealign_ntk::experiment::{analytic_rnn_ntk, RnnNtkConfig};
/// use widealign_tensor::{Activation, Mat};
/// // two sequences of 3 steps of 1 input
/// let x = Mat::from_row_slice(2, 3, &[1.0, 0.0, -1.0, 0.5, 0.5, 0.5]);
/// let spec = RnnSpec::new(1, 1, 1, Activation::Erf).with_bias_init(BiasInit::Gaussian);
/// let r = analytic_rnn_ntk(&x, 3, &RnnNtkConfig::new(spec)).unwrap();
/// assert_eq!((r.nngp.len(), r.ntk[0].len()), (2, 2));
/// assert_eq!(r.ntk[0][1], r.ntk[1][0]);
/// assert!(analytic_rnn_ntk(&x, 2, &RnnNtkConfig::new(RnnSpec::new(1, 1, 1, Activation::Erf))).is_err());
/// ```
///
/// # Errors
/// [`NtkError::InvalidOption`] naming `w_std` or `b_std` for a negative or non-finite standard
/// deviation, `inputs` for an empty input set, `seq_len` for `T = 0` or a row length that is
/// not `T·d`; the errors of [`crate::rnn::InfiniteRnn::from_spec`] for any other invalid spec;
/// [`NtkError::NonFinite`] for NaN inputs.
pub fn analytic_rnn_ntk(
    inputs: &Mat<f64>,
    seq_len: usize,
    config: &RnnNtkConfig,
) -> Result<NtkReport, NtkError> {
    check_stds(config.spec.param)?;
    check_nonempty(inputs)?;
    let xs = split_sequences(inputs, seq_len)?;
    let d = config.spec.input_dim;
    if xs[0].ncols() != d {
        return Err(NtkError::InvalidOption {
            name: "seq_len".into(),
            reason: format!(
                "rows of {} numbers are {seq_len} steps of {} inputs, but the network takes {d} \
                 per step",
                inputs.ncols(),
                xs[0].ncols()
            ),
        });
    }
    let net = InfiniteRnn::from_spec(&config.spec)?;
    let options = KernelOptions {
        quadrature: config.quadrature,
        ..KernelOptions::default()
    };
    let start = Instant::now();
    let k = net.kernels(&xs, None, (seq_len, seq_len), &options)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(NtkReport {
        nngp: rows(&k.nngp),
        ntk: rows(&k.ntk),
        seconds,
    })
}

/// The infinite-width NNGP and NTK of the scalar output of the convolutional network `spec`
/// (stride 1, SAME padding, no normalisation, NTK parameterisation; see [`InfiniteCnn`])
/// between the images in the rows of `inputs` (`N × H·W·C`, in the spec's layout).
///
/// ```
/// use widealign_models::{BiasInit, CnnReadout, CnnSpec};
/// use widealign_ntk::experiment::analytic_cnn_ntk;
/// use widealign_ntk::quadrature::Quadrature;
/// use widealign_tensor::{Activation, Mat};
/// // two 2×2 grey images, one relu convolution, flatten readout
/// let x = Mat::from_row_slice(2, 4, &[1.0, 0.0, -1.0, 0.5, 0.5, 0.5, 0.0, 1.0]);
/// let spec = CnnSpec::new([2, 2, 1], vec![1], 1, Activation::Relu)
///     .with_readout(CnnReadout::Flatten)
///     .with_bias_init(BiasInit::Gaussian);
/// let r = analytic_cnn_ntk(&x, &spec, Quadrature::default()).unwrap();
/// assert_eq!(r.ntk[0][1], r.ntk[1][0]);
/// assert!(analytic_cnn_ntk(&x.columns(0, 3).into_owned(), &spec, Quadrature::default()).is_err());
/// ```
///
/// # Errors
/// [`NtkError::InvalidOption`] naming `w_std` or `b_std` for a negative or non-finite standard
/// deviation and `inputs` for an empty input set; the errors of [`InfiniteCnn::from_spec`] for
/// any other spec it does not cover; [`NtkError::Shape`] if a row is not one image;
/// [`NtkError::NonFinite`] for NaN inputs.
pub fn analytic_cnn_ntk(
    inputs: &Mat<f64>,
    spec: &CnnSpec,
    quadrature: Quadrature,
) -> Result<NtkReport, NtkError> {
    check_stds(spec.param)?;
    check_nonempty(inputs)?;
    let net = InfiniteCnn::from_spec(spec)?;
    let options = KernelOptions {
        quadrature,
        ..KernelOptions::default()
    };
    let start = Instant::now();
    let k = net.kernels(inputs, None, false, &options)?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(NtkReport {
        nngp: rows(&k.nngp),
        ntk: rows(&k.ntk),
        seconds,
    })
}

fn check_stds(param: widealign_models::Parameterization) -> Result<(), NtkError> {
    for (name, v) in [("w_std", param.w_std()), ("b_std", param.b_std())] {
        if !v.is_finite() || v < 0.0 {
            return Err(NtkError::InvalidOption {
                name: name.into(),
                reason: format!("must be finite and non-negative, got {v}"),
            });
        }
    }
    Ok(())
}

fn check_nonempty(inputs: &Mat<f64>) -> Result<(), NtkError> {
    if inputs.nrows() == 0 || inputs.ncols() == 0 {
        return Err(NtkError::InvalidOption {
            name: "inputs".into(),
            reason: format!(
                "need at least one input with at least one feature, got {} × {}",
                inputs.nrows(),
                inputs.ncols()
            ),
        });
    }
    Ok(())
}

/// Floating-point type used to train the finite networks in [`dynamics_experiment`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `f32` (the default, as for all training): twice as fast as `f64`. Rounding of the weight
    /// updates adds a relative error of order `√steps · 2^{−24} · n/‖ΔW‖_F` (about 3e-3 at
    /// width 4096 and 200 steps), small against the measured errors; at widths up to 1024 the
    /// two precisions agree to four decimals.
    F32,
    /// `f64`.
    F64,
}

/// Configuration of [`dynamics_experiment`] (`S = MlpSpec`) and [`rnn_dynamics_experiment`]
/// (`S = RnnSpec`).
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicsConfig<S = MlpSpec> {
    /// The architecture (NTK parameterisation): input dimension `n_0` (the columns of the
    /// training inputs, per time step for the RNN), hidden layers, outputs `C` (the columns of
    /// the targets), activation, `s_w`, `s_b` and bias initialisation. The network simulated at
    /// each of [`DynamicsConfig::widths`] is this spec with its hidden width(s) set to that width
    /// (`spec_at`); the spec's own widths are not used.
    pub spec: S,
    /// Hidden widths to simulate (all hidden layers of one network share the width).
    pub widths: Vec<usize>,
    /// Full-batch gradient-descent steps `k`.
    pub steps: u64,
    /// Learning rate (of `L = (1/(NC)) Σ ‖f − y‖²`, summed over time steps for the RNN).
    pub lr: f64,
    /// Seed of every network's initialisation (`Mlp::new(spec, seed)`, `Rnn::new(spec, seed)`).
    pub seed: u64,
    /// Independent initialisations per width (seeds `seed, seed + 1, …`); the reported errors
    /// are root-mean-squares over them. 1 by default; more make the slopes less noisy (the
    /// weight-norm error is a signed fluctuation, so a single seed's absolute value scatters).
    pub repeats: usize,
    /// Training precision of the finite networks.
    pub precision: Precision,
    /// Quadrature for tanh and gelu.
    pub quadrature: Quadrature,
}

impl<S> DynamicsConfig<S> {
    /// A config for `spec` at `widths`: one repeat, `f32` training and the default quadrature.
    pub fn new(spec: S, widths: Vec<usize>, steps: u64, lr: f64, seed: u64) -> Self {
        DynamicsConfig {
            spec,
            widths,
            steps,
            lr,
            seed,
            repeats: 1,
            precision: Precision::F32,
            quadrature: Quadrature::default(),
        }
    }

    /// Checks the widths, steps and repeats (the fields every model shares).
    fn check(&self) -> Result<(), NtkError> {
        if self.widths.is_empty() || self.widths.contains(&0) {
            return Err(NtkError::InvalidOption {
                name: "widths".into(),
                reason: format!("need positive widths, got {:?}", self.widths),
            });
        }
        if self.steps == 0 {
            return Err(NtkError::InvalidOption {
                name: "steps".into(),
                reason: "must be at least 1".into(),
            });
        }
        if self.repeats == 0 {
            return Err(NtkError::InvalidOption {
                name: "repeats".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    fn kernel_options(&self) -> KernelOptions {
        KernelOptions {
            quadrature: self.quadrature,
            ..KernelOptions::default()
        }
    }
}

impl DynamicsConfig<MlpSpec> {
    /// The simulated network of hidden width `width`: [`DynamicsConfig::spec`] with every
    /// hidden layer `width` wide.
    pub fn spec_at(&self, width: usize) -> MlpSpec {
        MlpFamily::at_width(&self.spec, width)
    }
}

impl DynamicsConfig<RnnSpec> {
    /// The simulated recurrent network of width `width`.
    pub fn spec_at(&self, width: usize) -> RnnSpec {
        RnnFamily::at_width(&self.spec, width)
    }
}

/// A regression task for [`dynamics_experiment`] (one sample per row).
#[derive(Clone, Debug, PartialEq)]
pub struct RegressionData {
    /// Training inputs `X` (`N × n_0`).
    pub x_train: Mat<f64>,
    /// Training targets `Y` (`N × C`).
    pub y_train: Mat<f64>,
    /// Test inputs (`P × n_0`) where the function prediction is checked.
    pub x_test: Mat<f64>,
}

/// A sequence regression task for [`rnn_dynamics_experiment`]: time-major, `x[t − 1]` holds
/// step `t` of every sequence (one sequence per row), targets at every step.
#[derive(Clone, Debug, PartialEq)]
pub struct SequenceData {
    /// Training inputs `X_1..X_T` (each `N × n_in`).
    pub x_train: Vec<Mat<f64>>,
    /// Training targets `Y_1..Y_T` (each `N × C`).
    pub y_train: Vec<Mat<f64>>,
    /// Test inputs (`T'` steps of `P × n_in`) where the function prediction is checked, at
    /// every step.
    pub x_test: Vec<Mat<f64>>,
}

/// The three relative errors, per width (root-mean-square over the repeats).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DynamicsErrors {
    /// `|‖ΔW^l‖_F − pred_l| / pred_l`, `pred_l = √(Σ_c ε_cᵀ (P^l ⊙ A^l)(X, X) ε_c)` (for the RNN,
    /// `√(Σ_c ε_cᵀ Θ^W ε_c)` with the matrix's share of the stacked NTK): `[per width]` of
    /// `[per weight matrix]`.
    pub weight_norm: Vec<Vec<f64>>,
    /// `‖ΔW^l/‖ΔW^l‖_F − ΔŴ^l/‖ΔŴ^l‖_F‖_F` with `ΔŴ^l` the change predicted for the same
    /// initialisation (frozen backward pathway, frozen activities, analytic `ε`):
    /// `[per width]` of `[per weight matrix]`.
    pub weight_direction: Vec<Vec<f64>>,
    /// `‖f_k(X_test) − f̂_k(X_test)‖_F / ‖f̂_k(X_test) − f_0(X_test)‖_F` with
    /// `f̂_k = f_0 − Θ(X_test, X) ε(k)` (all steps of the test sequences for the RNN): per width.
    pub function: Vec<f64>,
}

/// Log-log slopes of the errors against the width.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DynamicsSlopes {
    /// Slope of `log weight_norm` vs `log width`, common to all weight matrices (each its own
    /// intercept).
    pub weight_norm: f64,
    /// Same for `weight_direction`.
    pub weight_direction: f64,
    /// Slope of `log function` vs `log width`.
    pub function: f64,
}

/// Log-log slopes of one weight matrix's errors against the width.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MatrixSlopes {
    /// Slope of `log weight_norm` vs `log width`.
    pub weight_norm: f64,
    /// Slope of `log weight_direction` vs `log width`.
    pub weight_direction: f64,
}

/// One weight matrix's results across the widths (the `layers` entries of the JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MatrixDynamics {
    /// Position (1-based) in the model's list of weight matrices: the layer for the MLP; 1, 2, 3
    /// for `W_in`, `W_rec`, `W_out` of the RNN.
    pub layer: usize,
    /// `"w1"`, … for the MLP; `"w_in"`, `"w_rec"`, `"w_out"` for the RNN.
    pub name: String,
    /// Relative error of the predicted `‖ΔW‖_F`, per width.
    pub weight_norm: Vec<f64>,
    /// Direction error of the predicted `ΔW`, per width.
    pub weight_direction: Vec<f64>,
    /// Predicted `‖ΔW‖_F`, per width (mean over repeats).
    pub predicted_weight_norm: Vec<f64>,
    /// Measured `‖ΔW‖_F`, per width (mean over repeats).
    pub measured_weight_norm: Vec<f64>,
    /// This matrix's log-log slopes.
    pub slopes: MatrixSlopes,
}

/// The JSON of `widealign dynamics --json`: `{"widths", "errors": {"weight_norm",
/// "weight_direction", "function"}, "slopes": {..}, "layers": [{"name", "weight_norm",
/// "weight_direction", "slopes", ..}], "max_stable_lr", ...}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DynamicsReport {
    /// `"mlp"` or `"rnn"`.
    pub model: String,
    /// Simulated widths.
    pub widths: Vec<usize>,
    /// Relative errors of the three predictions.
    pub errors: DynamicsErrors,
    /// Fitted log-log slopes.
    pub slopes: DynamicsSlopes,
    /// Per weight matrix: its errors, norms and slopes across the widths.
    pub layers: Vec<MatrixDynamics>,
    /// Largest stable learning rate `N·C/λ_max(Θ)` of the analytic kernel.
    pub max_stable_lr: f64,
    /// Activation name.
    pub activation: String,
    /// Hidden layers (1 for the RNN).
    pub hidden_layers: usize,
    /// Time steps of the training sequences (`null` for the MLP).
    pub seq_len: Option<usize>,
    /// Gradient-descent steps.
    pub steps: u64,
    /// Learning rate.
    pub lr: f64,
    /// Seed (of the first repeat).
    pub seed: u64,
    /// Initialisations per width.
    pub repeats: usize,
    /// Training points `N` (sequences for the RNN).
    pub train_size: usize,
    /// Training precision.
    pub precision: Precision,
    /// Predicted `‖ΔW^l‖_F` (per width, per weight matrix; depends on the width only through
    /// `f_0`; mean over repeats).
    pub predicted_weight_norm: Vec<Vec<f64>>,
    /// Measured `‖ΔW^l‖_F` (per width, per weight matrix; mean over repeats).
    pub measured_weight_norm: Vec<Vec<f64>>,
    /// Final training loss of the finite network, per width (mean over repeats).
    pub final_train_loss: Vec<f64>,
    /// Seconds spent per width (all repeats, training and predictions).
    pub seconds: Vec<f64>,
}

impl DynamicsReport {
    /// The width table as markdown: per width the weight-norm and direction errors of every
    /// weight matrix and the function error, then the pooled slopes with the per-matrix ones in
    /// parentheses.
    ///
    /// ```
    /// # use widealign_ntk::experiment::{dynamics_experiment, DynamicsConfig, RegressionData};
    /// # use widealign_models::MlpSpec;
    /// # use widealign_tensor::{Activation, Mat};
    /// # let data = RegressionData { x_train: Mat::from_row_slice(2, 1, &[1.0, -1.0]),
    /// #     y_train: Mat::from_row_slice(2, 1, &[0.5, 0.2]), x_test: Mat::from_row_slice(1, 1, &[0.3]) };
    /// # let cfg = DynamicsConfig::new(MlpSpec::uniform(1, 1, 1, 1, Activation::Erf), vec![8, 32], 5, 0.1, 0);
    /// let r = dynamics_experiment(&cfg, &data).unwrap();
    /// let md = r.markdown_table();
    /// assert!(md.starts_with("| erf width | ‖ΔW‖ err (w1, w2) |"));
    /// assert_eq!(md.lines().count(), 2 + 2 + 1);
    /// ```
    pub fn markdown_table(&self) -> String {
        let names: Vec<&str> = self.layers.iter().map(|m| m.name.as_str()).collect();
        let names = names.join(", ");
        let mut s = format!(
            "| {} width | ‖ΔW‖ err ({names}) | direction err ({names}) | function err |\n|---|---|---|---|\n",
            self.activation
        );
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for (i, w) in self.widths.iter().enumerate() {
            s.push_str(&format!(
                "| {w} | {} | {} | {:.4} |\n",
                fmt(&self.errors.weight_norm[i]),
                fmt(&self.errors.weight_direction[i]),
                self.errors.function[i]
            ));
        }
        let per = |f: fn(&MatrixSlopes) -> f64| {
            self.layers
                .iter()
                .map(|m| format!("{:.2}", f(&m.slopes)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        s.push_str(&format!(
            "| slope | {:.3} ({}) | {:.3} ({}) | {:.3} |\n",
            self.slopes.weight_norm,
            per(|m| m.weight_norm),
            self.slopes.weight_direction,
            per(|m| m.weight_direction),
            self.slopes.function
        ));
        s
    }
}

/// Least-squares slope of `y` against `x` shared by several series (each with its own
/// intercept). Points with a non-positive or non-finite value are skipped; NaN if fewer than two
/// distinct `x` remain.
pub fn pooled_log_slope(widths: &[usize], series: &[Vec<f64>]) -> f64 {
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for s in series {
        let pts: Vec<(f64, f64)> = widths
            .iter()
            .zip(s)
            .filter(|(_, &v)| v.is_finite() && v > 0.0)
            .map(|(&w, &v)| ((w as f64).ln(), v.ln()))
            .collect();
        if pts.len() < 2 {
            continue;
        }
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / pts.len() as f64;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64;
        for (x, y) in pts {
            sxy += (x - mx) * (y - my);
            sxx += (x - mx) * (x - mx);
        }
    }
    if sxx > 0.0 {
        sxy / sxx
    } else {
        f64::NAN
    }
}

fn cast_mat<T: Float>(m: &Mat<f64>) -> Mat<T> {
    m.map(T::cast)
}

fn to_f64<T: Float>(m: &Mat<T>) -> Mat<f64> {
    m.map(|v| v.as_f64())
}

/// Stacks per-step matrices step-major (`(t − 1)·N + i`) into one `f64` matrix.
fn stack_steps<T: Float>(ms: &[Mat<T>]) -> Mat<f64> {
    let (n, c) = ms.first().map_or((0, 0), |m| m.shape());
    let mut out = Mat::zeros(n * ms.len(), c);
    for (t, m) in ms.iter().enumerate() {
        out.rows_mut(t * n, n).copy_from(&to_f64(m));
    }
    out
}

/// What the dynamics experiment needs of a model beyond [`AlignModel`] (its weight matrices) and
/// [`Network`](widealign_models::Network) (forward pass, backprop, SGD): its outputs on the training set stacked into one
/// `rows × C` matrix in the row order of the stacked kernel, and the MSE of the training loop.
/// Implemented for [`Mlp`] (rows = examples) and [`Rnn`] (rows = time steps × sequences,
/// step-major).
pub trait DynamicsModel: AlignModel {
    /// Owned inputs, targets or errors: `Mat` for the MLP, one `Mat` per time step for the RNN.
    type Data: Clone + Borrow<Self::Input> + Borrow<Self::Error>;

    /// The outputs on `x`, stacked (`rows × C`, `f64`).
    ///
    /// # Errors
    /// [`NtkError::Model`] if `x` does not fit the network.
    fn stacked_outputs(&self, x: &Self::Input) -> Result<Mat<f64>, NtkError>;

    /// Stacks targets or errors into `rows × C` (`f64`).
    fn stack(d: &Self::Data) -> Mat<f64>;

    /// The inverse of [`DynamicsModel::stack`] for `examples` examples (cast to the model's
    /// float type).
    fn unstack(m: &Mat<f64>, examples: usize) -> Self::Data;

    /// The training loop's MSE (averaged over batch × outputs, summed over time steps) of the
    /// outputs in `trace` against `y`, and its error `∂L/∂f` into `err`.
    ///
    /// # Errors
    /// [`NtkError::Model`] for mismatched shapes.
    fn mse_into(trace: &Self::Trace, y: &Self::Data, err: &mut Self::Data)
        -> Result<f64, NtkError>;
}

impl<T: Float> DynamicsModel for Mlp<T> {
    type Data = Mat<T>;

    fn stacked_outputs(&self, x: &Mat<T>) -> Result<Mat<f64>, NtkError> {
        Ok(to_f64(&self.predict(x)?))
    }

    fn stack(d: &Mat<T>) -> Mat<f64> {
        to_f64(d)
    }

    fn unstack(m: &Mat<f64>, _examples: usize) -> Mat<T> {
        cast_mat(m)
    }

    fn mse_into(trace: &Trace<T>, y: &Mat<T>, err: &mut Mat<T>) -> Result<f64, NtkError> {
        Ok(Loss::Mse.evaluate_into(trace.output(), y, err)?)
    }
}

impl<T: Float> DynamicsModel for Rnn<T> {
    type Data = Vec<Mat<T>>;

    fn stacked_outputs(&self, xs: &[Mat<T>]) -> Result<Mat<f64>, NtkError> {
        Ok(stack_steps(&self.predict(xs)?))
    }

    fn stack(d: &Vec<Mat<T>>) -> Mat<f64> {
        stack_steps(d)
    }

    fn unstack(m: &Mat<f64>, examples: usize) -> Vec<Mat<T>> {
        let steps = m.nrows().checked_div(examples).unwrap_or(0);
        (0..steps)
            .map(|t| cast_mat(&m.rows(t * examples, examples).into_owned()))
            .collect()
    }

    fn mse_into(
        trace: &RnnTrace<T>,
        y: &Vec<Mat<T>>,
        err: &mut Vec<Mat<T>>,
    ) -> Result<f64, NtkError> {
        let (loss, e) = Loss::Mse.evaluate_sequence(&trace.outputs, y)?;
        *err = e;
        Ok(loss)
    }
}

/// Everything width-independent: the analytic kernels (stacked over time steps for the RNN) and
/// their eigendecomposition.
struct Theory {
    test_ntk: Mat<f64>,
    dynamics: KernelDynamics,
    /// One share of the NTK per weight matrix, in the order of
    /// [`AlignModel::weight_matrices`].
    weight_shares: Vec<Mat<f64>>,
}

/// The training set and test inputs of one run, in the model's float type.
struct Problem<M: DynamicsModel> {
    x: M::Data,
    y: M::Data,
    x_test: M::Data,
    /// `Y` stacked, `f64`.
    y_stacked: Mat<f64>,
    /// Training examples (sequences) `N`.
    examples: usize,
}

struct WidthResult {
    weight_norm: Vec<f64>,
    weight_direction: Vec<f64>,
    function: f64,
    predicted: Vec<f64>,
    measured: Vec<f64>,
    loss: f64,
}

/// The predictions for `net0` and full-batch gradient descent (backprop, the training loop's
/// MSE) from it, compared.
fn run_width<M: DynamicsModel>(
    width: usize,
    steps: u64,
    lr: f64,
    net0: &M,
    problem: &Problem<M>,
    theory: &Theory,
) -> Result<WidthResult, NtkError> {
    let x: &M::Input = Borrow::<M::Input>::borrow(&problem.x);
    let xt: &M::Input = Borrow::<M::Input>::borrow(&problem.x_test);
    let f0 = net0.stacked_outputs(x)?;
    let f0_test = net0.stacked_outputs(xt)?;
    let r0 = &f0 - &problem.y_stacked;
    let eps = theory.dynamics.eps(&r0, Schedule::Steps(steps))?;
    let f_pred_test = &f0_test + function_change(&theory.test_ntk, &eps)?;
    let predicted: Vec<f64> = theory
        .weight_shares
        .iter()
        .map(|k| quadratic_norm(k, &eps))
        .collect::<Result<_, _>>()?;
    let eps_data = M::unstack(&eps, problem.examples);
    let update = predicted_update(net0, x, Borrow::<M::Error>::borrow(&eps_data))?;
    // full-batch gradient descent with backprop
    let mut net = net0.clone();
    let lr_t = <M::Scalar as Float>::cast(lr);
    let mut trace = M::Trace::default();
    let mut err = problem.y.clone();
    let mut buffers = M::Buffers::default();
    for step in 0..steps {
        net.forward_into(x, &mut trace)?;
        let l = M::mse_into(&trace, &problem.y, &mut err)?;
        if !l.is_finite() {
            return Err(NtkError::Diverged {
                width,
                step: step as usize,
                loss: l,
            });
        }
        net.sgd_update(
            FeedbackPath::Live,
            &trace,
            &trace,
            Borrow::<M::Error>::borrow(&err),
            lr_t,
            &mut buffers,
        );
    }
    net.forward_into(x, &mut trace)?;
    let final_loss = M::mse_into(&trace, &problem.y, &mut err)?;
    if !final_loss.is_finite() {
        return Err(NtkError::Diverged {
            width,
            step: steps as usize,
            loss: final_loss,
        });
    }
    let f_test = net.stacked_outputs(xt)?;
    let learned = (&f_pred_test - &f0_test).norm();
    let function = (&f_test - &f_pred_test).norm() / learned;
    let update_slices = M::grad_slices(&update);
    let mut weight_norm = Vec::new();
    let mut weight_direction = Vec::new();
    let mut measured = Vec::new();
    for (l, ((_, index, w), (_, _, w0))) in net
        .weight_matrices()
        .into_iter()
        .zip(net0.weight_matrices())
        .enumerate()
    {
        let dw = to_f64(&(w - w0));
        let norm = dw.norm();
        measured.push(norm);
        weight_norm.push((norm - predicted[l]).abs() / predicted[l]);
        let g = update_slices[index].ok_or_else(|| {
            NtkError::Architecture(format!(
                "the predicted change has no update for weight matrix {}",
                l + 1
            ))
        })?;
        // ΔŴ = −g, stored column-major like the weight matrix
        let dp = -to_f64(&Mat::from_column_slice(w.nrows(), w.ncols(), g));
        weight_direction.push((&dw / norm - &dp / dp.norm()).norm());
    }
    Ok(WidthResult {
        weight_norm,
        weight_direction,
        function,
        predicted,
        measured,
        loss: final_loss,
    })
}

/// The per-width results of every repeat, reduced (RMS errors, mean norms and losses).
#[derive(Default)]
struct Sweep {
    errors: DynamicsErrors,
    predicted_weight_norm: Vec<Vec<f64>>,
    measured_weight_norm: Vec<Vec<f64>>,
    final_train_loss: Vec<f64>,
    seconds: Vec<f64>,
}

/// Runs every width and repeat: `net_at(width, seed)` draws the finite network.
fn sweep<M: DynamicsModel, S>(
    config: &DynamicsConfig<S>,
    net_at: impl Fn(usize, u64) -> Result<M, NtkError>,
    problem: &Problem<M>,
    theory: &Theory,
) -> Result<Sweep, NtkError> {
    let mut out = Sweep::default();
    for &width in &config.widths {
        let start = Instant::now();
        let runs: Vec<WidthResult> = (0..config.repeats as u64)
            .map(|k| {
                let net0 = net_at(width, config.seed.wrapping_add(k))?;
                run_width(width, config.steps, config.lr, &net0, problem, theory)
            })
            .collect::<Result<_, _>>()?;
        let rms = |f: &dyn Fn(&WidthResult) -> f64| {
            (runs.iter().map(|r| f(r).powi(2)).sum::<f64>() / runs.len() as f64).sqrt()
        };
        let mean =
            |f: &dyn Fn(&WidthResult) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
        let layers = theory.weight_shares.len();
        let e = &mut out.errors;
        e.weight_norm
            .push((0..layers).map(|l| rms(&|r| r.weight_norm[l])).collect());
        e.weight_direction.push(
            (0..layers)
                .map(|l| rms(&|r| r.weight_direction[l]))
                .collect(),
        );
        e.function.push(rms(&|r| r.function));
        out.predicted_weight_norm
            .push((0..layers).map(|l| mean(&|r| r.predicted[l])).collect());
        out.measured_weight_norm
            .push((0..layers).map(|l| mean(&|r| r.measured[l])).collect());
        out.final_train_loss.push(mean(&|r| r.loss));
        out.seconds.push(start.elapsed().as_secs_f64());
    }
    Ok(out)
}

/// A model at either training precision: how the dynamics experiment draws the network of a
/// width and casts the `f64` data to its float type.
trait Family {
    /// The architecture.
    type Spec;
    /// The task, in `f64`.
    type Data;
    /// The network in float type `T`.
    type Net<T: Float>: DynamicsModel<Scalar = T>;
    /// The spec with its hidden width(s) set to `width`.
    fn at_width(spec: &Self::Spec, width: usize) -> Self::Spec;
    /// The network of `spec` drawn from `seed`.
    fn net<T: Float>(spec: &Self::Spec, seed: u64) -> Result<Self::Net<T>, NtkError>;
    /// The task in float type `T`.
    fn problem<T: Float>(data: &Self::Data) -> Problem<Self::Net<T>>;
}

struct MlpFamily;

impl Family for MlpFamily {
    type Spec = MlpSpec;
    type Data = RegressionData;
    type Net<T: Float> = Mlp<T>;

    fn at_width(spec: &MlpSpec, width: usize) -> MlpSpec {
        MlpSpec {
            hidden: vec![width; spec.hidden.len()],
            ..spec.clone()
        }
    }

    fn net<T: Float>(spec: &MlpSpec, seed: u64) -> Result<Mlp<T>, NtkError> {
        Ok(Mlp::new(spec, seed)?)
    }

    fn problem<T: Float>(data: &RegressionData) -> Problem<Mlp<T>> {
        Problem {
            x: cast_mat(&data.x_train),
            y: cast_mat(&data.y_train),
            x_test: cast_mat(&data.x_test),
            y_stacked: data.y_train.clone(),
            examples: data.x_train.nrows(),
        }
    }
}

struct RnnFamily;

impl Family for RnnFamily {
    type Spec = RnnSpec;
    type Data = SequenceData;
    type Net<T: Float> = Rnn<T>;

    fn at_width(spec: &RnnSpec, width: usize) -> RnnSpec {
        RnnSpec {
            width,
            ..spec.clone()
        }
    }

    fn net<T: Float>(spec: &RnnSpec, seed: u64) -> Result<Rnn<T>, NtkError> {
        Ok(Rnn::new(spec, seed)?)
    }

    fn problem<T: Float>(data: &SequenceData) -> Problem<Rnn<T>> {
        let cast = |xs: &[Mat<f64>]| xs.iter().map(cast_mat).collect::<Vec<Mat<T>>>();
        Problem {
            x: cast(&data.x_train),
            y: cast(&data.y_train),
            x_test: cast(&data.x_test),
            y_stacked: stack_steps(&data.y_train),
            examples: data.x_train.first().map_or(0, |x| x.nrows()),
        }
    }
}

/// [`sweep`] in the configured training precision.
fn sweep_at_precision<F: Family>(
    config: &DynamicsConfig<F::Spec>,
    data: &F::Data,
    theory: &Theory,
) -> Result<Sweep, NtkError> {
    let spec = &config.spec;
    match config.precision {
        Precision::F32 => sweep(
            config,
            |w, seed| F::net::<f32>(&F::at_width(spec, w), seed),
            &F::problem::<f32>(data),
            theory,
        ),
        Precision::F64 => sweep(
            config,
            |w, seed| F::net::<f64>(&F::at_width(spec, w), seed),
            &F::problem::<f64>(data),
            theory,
        ),
    }
}

/// `[per width][per matrix]` → `[per matrix][per width]`.
fn per_matrix(m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let layers = m.first().map_or(0, |v| v.len());
    (0..layers)
        .map(|l| m.iter().map(|w| w[l]).collect())
        .collect()
}

/// The parts of a [`DynamicsReport`] that describe the model rather than the results.
struct ModelInfo {
    model: &'static str,
    names: Vec<String>,
    activation: String,
    hidden_layers: usize,
    seq_len: Option<usize>,
    train_size: usize,
}

fn report<S>(
    config: &DynamicsConfig<S>,
    info: ModelInfo,
    theory: &Theory,
    s: Sweep,
) -> DynamicsReport {
    let widths = &config.widths;
    let (norm, dir) = (
        per_matrix(&s.errors.weight_norm),
        per_matrix(&s.errors.weight_direction),
    );
    let (pred, meas) = (
        per_matrix(&s.predicted_weight_norm),
        per_matrix(&s.measured_weight_norm),
    );
    let layers = info
        .names
        .into_iter()
        .enumerate()
        .map(|(l, name)| MatrixDynamics {
            layer: l + 1,
            name,
            slopes: MatrixSlopes {
                weight_norm: pooled_log_slope(widths, std::slice::from_ref(&norm[l])),
                weight_direction: pooled_log_slope(widths, std::slice::from_ref(&dir[l])),
            },
            weight_norm: norm[l].clone(),
            weight_direction: dir[l].clone(),
            predicted_weight_norm: pred[l].clone(),
            measured_weight_norm: meas[l].clone(),
        })
        .collect();
    let slopes = DynamicsSlopes {
        weight_norm: pooled_log_slope(widths, &norm),
        weight_direction: pooled_log_slope(widths, &dir),
        function: pooled_log_slope(widths, std::slice::from_ref(&s.errors.function)),
    };
    DynamicsReport {
        model: info.model.to_string(),
        widths: widths.clone(),
        errors: s.errors,
        slopes,
        layers,
        max_stable_lr: theory.dynamics.max_stable_lr(),
        activation: info.activation,
        hidden_layers: info.hidden_layers,
        seq_len: info.seq_len,
        steps: config.steps,
        lr: config.lr,
        seed: config.seed,
        repeats: config.repeats,
        train_size: info.train_size,
        precision: config.precision,
        predicted_weight_norm: s.predicted_weight_norm,
        measured_weight_norm: s.measured_weight_norm,
        final_train_loss: s.final_train_loss,
        seconds: s.seconds,
    }
}

/// Trains the finite network at every width of `config` on `data` with full-batch gradient
/// descent (backprop, MSE, `steps` steps, learning rate `lr`, the same seed at every width) and
/// measures the relative errors of the three §4 predictions (see [`DynamicsErrors`]), then fits
/// the log-log slopes ([`pooled_log_slope`]).
///
/// The analytic kernels are computed once (they do not depend on the width); the predictions use
/// each network's own initial outputs `f_0` in `r_0 = f_0(X) − Y`.
///
/// # Errors
/// [`NtkError::UnstableLearningRate`] (before any training) if `lr ≥ N·C/λ_max(T^L)`;
/// [`NtkError::Diverged`] if a finite network's loss becomes non-finite anyway;
/// [`NtkError::Shape`]/[`NtkError::NonFinite`] for inconsistent data (including inputs
/// without `spec.input_dim` columns and targets without `spec.output_dim` columns);
/// [`NtkError::InvalidOption`] naming the field: `train_size` for no training inputs, `widths`
/// for an empty width list or a zero width, `steps` for zero steps, `repeats` for zero
/// repeats; the errors of [`InfiniteMlp::from_spec`] for an invalid spec.
pub fn dynamics_experiment(
    config: &DynamicsConfig,
    data: &RegressionData,
) -> Result<DynamicsReport, NtkError> {
    let (n, n0) = data.x_train.shape();
    let outputs = data.y_train.ncols();
    if n == 0 || n0 == 0 {
        return Err(NtkError::InvalidOption {
            name: "train_size".into(),
            reason: format!("need training inputs, got {n} × {n0}"),
        });
    }
    if n0 != config.spec.input_dim {
        return Err(shape_err(
            "training inputs",
            format!("N × {} (the spec's input_dim)", config.spec.input_dim),
            data.x_train.shape(),
        ));
    }
    if data.y_train.nrows() != n || outputs == 0 || outputs != config.spec.output_dim {
        return Err(shape_err(
            "training targets",
            format!("{n} × {} (the spec's output_dim)", config.spec.output_dim),
            data.y_train.shape(),
        ));
    }
    if data.x_test.ncols() != n0 || data.x_test.nrows() == 0 {
        return Err(shape_err(
            "test inputs",
            format!("P × {n0} (P ≥ 1)"),
            data.x_test.shape(),
        ));
    }
    check_finite("training inputs", &data.x_train)?;
    check_finite("training targets", &data.y_train)?;
    check_finite("test inputs", &data.x_test)?;
    config.check()?;
    let infinite = InfiniteMlp::from_spec(&config.spec)?;
    let options = config.kernel_options();
    let train = infinite.kernels(&data.x_train, None, &KernelRequest::all(), &options)?;
    let test = infinite.kernels(
        &data.x_test,
        Some(&data.x_train),
        &KernelRequest {
            nngp: false,
            ntk: true,
            layers: false,
        },
        &options,
    )?;
    let dynamics = KernelDynamics::new(train.ntk.as_ref().expect("requested"), outputs, config.lr)?;
    dynamics.check_stable()?;
    let weight_shares = (1..=infinite.layers())
        .map(|l| train.weight_share(l))
        .collect();
    let theory = Theory {
        test_ntk: test.ntk.expect("requested"),
        dynamics,
        weight_shares,
    };
    let s = sweep_at_precision::<MlpFamily>(config, data, &theory)?;
    let info = ModelInfo {
        model: "mlp",
        names: (1..=infinite.layers()).map(|l| format!("w{l}")).collect(),
        activation: config.spec.activation.name().to_string(),
        hidden_layers: config.spec.hidden.len(),
        seq_len: None,
        train_size: n,
    };
    Ok(report(config, info, &theory, s))
}

/// Checks a time-major sequence set: `T ≥ 1` steps of `rows × cols` (`rows ≥ 1`, `cols` as
/// given), finite.
fn check_steps(what: &str, xs: &[Mat<f64>], cols: usize) -> Result<(usize, usize), NtkError> {
    let Some(first) = xs.first() else {
        return Err(NtkError::InvalidOption {
            name: "seq_len".into(),
            reason: format!("{what}: sequences of zero time steps"),
        });
    };
    let rows = first.nrows();
    for (t, x) in xs.iter().enumerate() {
        if x.shape() != (rows, cols) || rows == 0 {
            return Err(shape_err(
                &format!("{what} at time step {}", t + 1),
                format!("{rows} × {cols} (one sequence per row, at least one)"),
                x.shape(),
            ));
        }
        check_finite(what, x)?;
    }
    Ok((rows, xs.len()))
}

/// The recurrent counterpart of [`dynamics_experiment`] (docs/theory.md §4.5): full-batch
/// gradient descent of the [`Rnn`] of `config.spec` at every width on `data` (backprop through
/// time, the training loop's loss: per-step MSE averaged over sequences × outputs, summed over
/// the `T` steps), against the closed-form kernel dynamics with the analytic NTK stacked over all
/// pairs of time steps ([`InfiniteRnn::stacked_kernels`], `c = 2·lr/(N·C)`), the predicted change
/// of `W_in`, `W_rec`, `W_out` for the same initialisation ([`predicted_update`]) and their
/// predicted norms `√(Σ_c ε_cᵀ Θ^W ε_c)` from each matrix's share of the stacked NTK. The
/// function error is measured at every step of the test sequences.
///
/// # Errors
/// As [`dynamics_experiment`] (`train_size` for no training sequences, `seq_len` for sequences
/// of zero steps, [`NtkError::Shape`] naming the time step of a mismatched matrix); the errors
/// of [`InfiniteRnn::from_spec`] for an invalid spec.
pub fn rnn_dynamics_experiment(
    config: &DynamicsConfig<RnnSpec>,
    data: &SequenceData,
) -> Result<DynamicsReport, NtkError> {
    let spec = &config.spec;
    if data.x_train.first().is_some_and(|x| x.nrows() == 0) {
        return Err(NtkError::InvalidOption {
            name: "train_size".into(),
            reason: "need at least one training sequence".into(),
        });
    }
    let (n, t_len) = check_steps("training inputs", &data.x_train, spec.input_dim)?;
    let (ny, ty) = check_steps("training targets", &data.y_train, spec.output_dim)?;
    if (ny, ty) != (n, t_len) {
        return Err(shape_err(
            "training targets",
            format!("{t_len} steps of {n} × {}", spec.output_dim),
            (ny, ty),
        ));
    }
    check_steps("test inputs", &data.x_test, spec.input_dim)?;
    config.check()?;
    let infinite = InfiniteRnn::from_spec(spec)?;
    let options = config.kernel_options();
    let train = infinite.stacked_kernels(&data.x_train, None, &options)?;
    let test = infinite.stacked_kernels(&data.x_test, Some(&data.x_train), &options)?;
    let outputs = spec.output_dim;
    let dynamics = KernelDynamics::with_normalisation(&train.ntk, outputs, config.lr, n * outputs)?;
    dynamics.check_stable()?;
    let sh = train.shares;
    let theory = Theory {
        test_ntk: test.ntk,
        dynamics,
        weight_shares: vec![sh.w_in, sh.w_rec, sh.w_out],
    };
    let s = sweep_at_precision::<RnnFamily>(config, data, &theory)?;
    let info = ModelInfo {
        model: "rnn",
        names: ["w_in", "w_rec", "w_out"].map(String::from).to_vec(),
        activation: spec.activation.name().to_string(),
        hidden_layers: 1,
        seq_len: Some(t_len),
        train_size: n,
    };
    Ok(report(config, info, &theory, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamics::KernelDynamics;
    use crate::rnn::empirical_rnn_ntk;
    use widealign_models::{BiasInit, Network, Parameterization};
    use widealign_tensor::{rng::SeedStream, Activation};

    fn spec(input_dim: usize) -> MlpSpec {
        MlpSpec::uniform(input_dim, 1, 2, 1, Activation::Erf)
            .with_param(Parameterization::Ntk {
                w_std: 1.2,
                b_std: 0.3,
            })
            .with_bias_init(BiasInit::Gaussian)
    }

    fn data() -> RegressionData {
        RegressionData {
            x_train: Mat::from_row_slice(4, 2, &[1.0, 0.0, 0.0, 1.0, 0.6, 0.8, -1.0, 0.5]),
            y_train: Mat::from_row_slice(4, 1, &[0.5, -0.5, 0.2, 0.0]),
            x_test: Mat::from_row_slice(2, 2, &[0.3, 0.3, -0.2, 1.0]),
        }
    }

    #[test]
    fn analytic_ntk_is_the_kernel_of_its_spec() {
        let x = Mat::from_row_slice(3, 2, &[1.0, 0.0, 0.6, 0.8, -0.5, 2.0]);
        let r = analytic_ntk(&x, &NtkConfig::new(spec(2))).unwrap();
        let k = InfiniteMlp::from_spec(&spec(2))
            .unwrap()
            .kernels(
                &x,
                None,
                &KernelRequest::outputs(),
                &KernelOptions::default(),
            )
            .unwrap();
        assert_eq!(r.ntk, rows(k.ntk.as_ref().unwrap()));
        assert_eq!(r.nngp, rows(k.nngp.as_ref().unwrap()));
        // hidden widths and the output dimension do not enter the kernels
        let other = MlpSpec {
            hidden: vec![4096, 3],
            output_dim: 7,
            ..spec(2)
        };
        let r2 = analytic_ntk(&x, &NtkConfig::new(other)).unwrap();
        assert_eq!((&r2.nngp, &r2.ntk), (&r.nngp, &r.ntk));
        // the bias initialisation does: zero biases drop s_b² from the forward covariance
        let zero = spec(2).with_bias_init(BiasInit::Zero);
        let r3 = analytic_ntk(&x, &NtkConfig::new(zero)).unwrap();
        assert!(r3.nngp[0][0] < r.nngp[0][0]);
        let e = analytic_ntk(&x, &NtkConfig::new(spec(3))).unwrap_err();
        assert!(matches!(e, NtkError::Shape { .. }), "{e}");
        let standard = spec(2).with_param(Parameterization::Standard {
            w_std: 1.0,
            b_std: 0.0,
        });
        let e = analytic_ntk(&x, &NtkConfig::new(standard)).unwrap_err();
        assert!(matches!(e, NtkError::Architecture(_)), "{e}");
    }

    #[test]
    fn option_errors_name_the_field_not_a_flag() {
        let x = Mat::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 1.0]);
        let ntk_with = |w_std: f64, b_std: f64| {
            let s = spec(2).with_param(Parameterization::Ntk { w_std, b_std });
            analytic_ntk(&x, &NtkConfig::new(s)).unwrap_err()
        };
        let dyn_config = || DynamicsConfig::new(spec(2), vec![8], 3, 0.1, 0);
        let empty = RegressionData {
            x_train: Mat::zeros(0, 2),
            y_train: Mat::zeros(0, 1),
            ..data()
        };
        let cases = [
            ("w_std", ntk_with(-1.0, 0.0)),
            ("b_std", ntk_with(1.0, f64::NAN)),
            (
                "inputs",
                analytic_ntk(&Mat::zeros(0, 2), &NtkConfig::new(spec(2))).unwrap_err(),
            ),
            (
                "widths",
                dynamics_experiment(
                    &DynamicsConfig {
                        widths: vec![],
                        ..dyn_config()
                    },
                    &data(),
                )
                .unwrap_err(),
            ),
            (
                "steps",
                dynamics_experiment(
                    &DynamicsConfig {
                        steps: 0,
                        ..dyn_config()
                    },
                    &data(),
                )
                .unwrap_err(),
            ),
            (
                "repeats",
                dynamics_experiment(
                    &DynamicsConfig {
                        repeats: 0,
                        ..dyn_config()
                    },
                    &data(),
                )
                .unwrap_err(),
            ),
            (
                "train_size",
                dynamics_experiment(&dyn_config(), &empty).unwrap_err(),
            ),
            (
                "lr",
                KernelDynamics::new(&Mat::identity(2, 2), 1, f64::NAN).unwrap_err(),
            ),
        ];
        for (field, e) in cases {
            match &e {
                NtkError::InvalidOption { name, .. } => assert_eq!(name, field),
                other => panic!("{field}: expected InvalidOption, got {other:?}"),
            }
            let msg = e.to_string();
            assert!(msg.contains(&format!("invalid option {field}: ")), "{msg}");
            assert!(!msg.contains("--"), "{msg}");
            let spelled = e.message_with(|f| format!("<{f}>"));
            assert!(
                spelled.contains(&format!("invalid option <{field}>: ")),
                "{spelled}"
            );
        }
    }

    #[test]
    fn dynamics_checks_the_data_against_the_spec_and_varies_only_the_widths() {
        let cfg = DynamicsConfig::new(spec(2), vec![8, 16], 3, 0.1, 0);
        let s = cfg.spec_at(16);
        assert_eq!(s.hidden, vec![16, 16]);
        assert_eq!(
            MlpSpec {
                hidden: spec(2).hidden,
                ..s
            },
            spec(2)
        );
        let r = dynamics_experiment(&cfg, &data()).unwrap();
        assert_eq!((r.hidden_layers, r.activation.as_str()), (2, "erf"));
        assert_eq!(r.measured_weight_norm[0].len(), 3);
        let wrong_inputs = DynamicsConfig::new(spec(3), vec![8], 3, 0.1, 0);
        let e = dynamics_experiment(&wrong_inputs, &data()).unwrap_err();
        assert!(
            matches!(&e, NtkError::Shape { what, .. } if what == "training inputs"),
            "{e}"
        );
        let wrong_outputs = DynamicsConfig::new(
            MlpSpec {
                output_dim: 2,
                ..spec(2)
            },
            vec![8],
            3,
            0.1,
            0,
        );
        let e = dynamics_experiment(&wrong_outputs, &data()).unwrap_err();
        assert!(
            matches!(&e, NtkError::Shape { what, .. } if what == "training targets"),
            "{e}"
        );
        // the unstable-learning-rate message names the field `lr`
        let e = dynamics_experiment(
            &DynamicsConfig {
                lr: 1e6,
                ..cfg.clone()
            },
            &data(),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.ends_with(&format!("choose lr below {:.6}", r.max_stable_lr)),
            "{msg}"
        );
        assert!(!msg.contains("--"), "{msg}");
        assert!(e
            .message_with(|f| format!("--{f}"))
            .contains("choose --lr below"));
    }

    // --- the recurrent network (docs/theory.md §4.5) ---

    fn rnn_spec(act: Activation) -> RnnSpec {
        RnnSpec::new(2, 1, 1, act).with_param(Parameterization::Ntk {
            w_std: 1.0,
            b_std: 0.3,
        })
    }

    /// `n` sequences of `steps` steps of 2 inputs, targets `y_t = sin(x_t·1 + x_{t−1}·1)`-like
    /// (a smooth function of the last two steps).
    fn seq_data(n: usize, steps: usize, test: usize) -> SequenceData {
        let s = SeedStream::new(5);
        let draw = |name: &str, rows: usize| -> Vec<Mat<f64>> {
            (0..steps)
                .map(|t| s.gaussian_matrix(&format!("{name}{t}"), rows, 2, 1.0))
                .collect()
        };
        let x_train = draw("x", n);
        let y_train = (0..steps)
            .map(|t| {
                Mat::from_fn(n, 1, |i, _| {
                    let prev = if t > 0 { x_train[t - 1][(i, 0)] } else { 0.0 };
                    (x_train[t][(i, 0)] - 0.5 * x_train[t][(i, 1)] + prev).sin()
                })
            })
            .collect();
        SequenceData {
            x_train,
            y_train,
            x_test: draw("t", test),
        }
    }

    /// Exact identity: after one step the accumulated error is `ε(1) = c·r_0` whatever the
    /// kernel, so the predicted change `−Σ J_0ᵀ ε(1)` is the first gradient step itself: the
    /// directions agree to rounding for every weight matrix at every width when `ε` is unstacked
    /// in the kernel's step-major order and carried back through time by the initial network.
    /// The size checks the normalisation `c = 2·lr/(N·C)` of the training loop (per-step MSE
    /// averaged over sequences × outputs, summed over steps): averaging over `N·T·C` instead
    /// makes the measured/predicted ratio 3.06 here.
    #[test]
    fn rnn_first_step_prediction_is_the_first_gradient_step() {
        let data = seq_data(5, 3, 4);
        let mut cfg = DynamicsConfig::new(rnn_spec(Activation::Tanh), vec![8, 64], 1, 0.05, 3);
        cfg.precision = Precision::F64;
        let r = rnn_dynamics_experiment(&cfg, &data).unwrap();
        assert_eq!(r.model, "rnn");
        assert_eq!(r.seq_len, Some(3));
        let names: Vec<&str> = r.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["w_in", "w_rec", "w_out"]);
        for (w, dirs) in r.widths.iter().zip(&r.errors.weight_direction) {
            for (name, d) in names.iter().zip(dirs) {
                assert!(*d < 1e-12, "width {w} {name}: direction error {d:e}");
            }
        }
        // with a wrong normalisation (c over N·T·C) the norms would be off by the factor T = 3;
        // the measured norms equal the predicted ones within the kernel's finite-width error
        let ratio = r.measured_weight_norm[1][2] / r.predicted_weight_norm[1][2];
        assert!((ratio - 1.0).abs() < 0.3, "W_out norm ratio {ratio}");
    }

    /// Exact identity: the squared norm of the predicted change of each weight matrix equals the
    /// quadratic form of the accumulated errors with that matrix's share of the finite network's
    /// NTK stacked over all pairs of time steps, `‖ΔŴ‖² = Σ_c ε_cᵀ Θ^W ε_c` (docs/theory.md §4.5)
    /// — the identity behind the predicted norms, with the analytic share in place of `Θ^W`.
    #[test]
    fn rnn_predicted_change_norm_is_the_stacked_share_quadratic_form() {
        let data = seq_data(4, 3, 2);
        let spec = RnnSpec {
            width: 16,
            ..rnn_spec(Activation::Erf)
        };
        let net = Rnn::<f64>::new(&spec, 2).unwrap();
        let (n, steps) = (4, 3);
        let eps: Vec<Mat<f64>> = (0..steps)
            .map(|t| SeedStream::new(9).gaussian_matrix(&format!("e{t}"), n, 1, 1.0))
            .collect();
        let update = predicted_update(&net, &data.x_train, &eps).unwrap();
        let slices = Rnn::<f64>::grad_slices(&update);
        let eps_stacked = <Rnn<f64> as DynamicsModel>::stack(&eps);
        assert_eq!(<Rnn<f64> as DynamicsModel>::unstack(&eps_stacked, n), eps);
        let mut shares = vec![Mat::zeros(n * steps, n * steps); 3];
        for t in 1..=steps {
            for s in 1..=steps {
                let k = empirical_rnn_ntk(&net, &data.x_train, None, (t, s), 0).unwrap();
                for (dst, src) in shares.iter_mut().zip([&k.w_in, &k.w_rec, &k.w_out]) {
                    dst.view_mut(((t - 1) * n, (s - 1) * n), (n, n))
                        .copy_from(src);
                }
            }
        }
        for ((name, index, _), share) in net.weight_matrices().into_iter().zip(&shares) {
            let g = slices[index].unwrap();
            let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            let q = quadratic_norm(share, &eps_stacked).unwrap();
            assert!((norm - q).abs() < 1e-12 * q, "{name}: {norm} vs {q}");
        }
    }

    /// Mean of `f` over the repeats' root-mean-square is what the report holds; here the errors
    /// of the three predictions at widths 32, 128, 512 (two seeds each) must fall with the width.
    #[test]
    fn rnn_dynamics_predictions_approach_finite_networks_as_width_grows() {
        let data = seq_data(6, 3, 5);
        let mut cfg =
            DynamicsConfig::new(rnn_spec(Activation::Erf), vec![32, 128, 512], 30, 0.1, 0);
        cfg.repeats = 2;
        let r = rnn_dynamics_experiment(&cfg, &data).unwrap();
        assert!(r.max_stable_lr > 0.1);
        let f = &r.errors.function;
        assert!(f[0] > f[1] && f[1] > f[2], "function errors {f:?}");
        assert!(f[2] < 0.1, "function error at width 512: {}", f[2]);
        for m in &r.layers {
            let d = &m.weight_direction;
            assert!(
                d[0] > d[1] && d[1] > d[2],
                "{}: direction errors {d:?}",
                m.name
            );
            assert!(d[2] < 0.2, "{}: direction error at 512: {}", m.name, d[2]);
            assert!(
                m.weight_norm[2] < 0.1,
                "{}: norm error {:?}",
                m.name,
                m.weight_norm
            );
            assert!(
                m.slopes.weight_direction < -0.25,
                "{}: {:?}",
                m.name,
                m.slopes
            );
        }
        assert!(r.slopes.function < -0.25 && r.slopes.weight_direction < -0.25);
        // the same settings with the MLP-style normalisation over all N·T rows would allow a
        // learning rate T times larger: the limit is N·C/λ_max of the stacked kernel
        let k = InfiniteRnn::from_spec(&rnn_spec(Activation::Erf))
            .unwrap()
            .stacked_kernels(&data.x_train, None, &KernelOptions::default())
            .unwrap();
        let lmax = KernelDynamics::new(&k.ntk, 1, 0.1).unwrap().lambda_max();
        assert!((r.max_stable_lr - 6.0 / lmax).abs() < 1e-12 * r.max_stable_lr);
    }

    #[test]
    fn rnn_dynamics_refuses_inconsistent_sequences() {
        let data = seq_data(4, 3, 2);
        let cfg = DynamicsConfig::new(rnn_spec(Activation::Erf), vec![8], 2, 0.1, 0);
        let mut short = data.clone();
        short.y_train.pop();
        let e = rnn_dynamics_experiment(&cfg, &short).unwrap_err();
        assert!(
            matches!(&e, NtkError::Shape { what, .. } if what == "training targets"),
            "{e}"
        );
        let mut wide = data.clone();
        wide.x_train[1] = Mat::zeros(4, 3);
        let e = rnn_dynamics_experiment(&cfg, &wide).unwrap_err();
        assert!(e.to_string().contains("time step 2"), "{e}");
        let none = SequenceData {
            x_train: vec![],
            ..data.clone()
        };
        assert!(matches!(
            rnn_dynamics_experiment(&cfg, &none).unwrap_err(),
            NtkError::InvalidOption { name, .. } if name == "seq_len"
        ));
        let unstable = DynamicsConfig { lr: 1e3, ..cfg };
        assert!(matches!(
            rnn_dynamics_experiment(&unstable, &data).unwrap_err(),
            NtkError::UnstableLearningRate { .. }
        ));
    }
}
