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

use std::time::Instant;

use serde::Serialize;
use widealign_models::{
    backward_signals_into, gradients_into, CnnSpec, Feedback, Grads, Loss, Mlp, MlpSpec, Pathway,
    RnnSpec, Signals, Trace,
};
use widealign_tensor::{Float, Mat};

use crate::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use crate::cnn::InfiniteCnn;
use crate::dynamics::{function_change, quadratic_norm, KernelDynamics, Schedule};
use crate::error::{check_finite, shape_err};
use crate::predict::predicted_change;
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

/// Configuration of [`dynamics_experiment`].
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicsConfig {
    /// The architecture (NTK parameterisation): input dimension `n_0` (the columns of the
    /// training inputs), hidden layers, outputs `C` (the columns of the targets), activation,
    /// `s_w`, `s_b` and bias initialisation. The network simulated at each of
    /// [`DynamicsConfig::widths`] is this spec with every hidden width set to that width
    /// ([`DynamicsConfig::spec_at`]); the spec's own hidden widths are not used.
    pub spec: MlpSpec,
    /// Hidden widths to simulate (all hidden layers of one network share the width).
    pub widths: Vec<usize>,
    /// Full-batch gradient-descent steps `k`.
    pub steps: u64,
    /// Learning rate (of `L = (1/(NC)) Σ ‖f − y‖²`).
    pub lr: f64,
    /// Seed of every network's initialisation (`Mlp::new(spec, seed)`).
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

impl DynamicsConfig {
    /// A config for `spec` at `widths`: one repeat, `f32` training and the default quadrature.
    pub fn new(spec: MlpSpec, widths: Vec<usize>, steps: u64, lr: f64, seed: u64) -> Self {
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

    /// The simulated network of hidden width `width`: [`DynamicsConfig::spec`] with every
    /// hidden layer `width` wide.
    pub fn spec_at(&self, width: usize) -> MlpSpec {
        MlpSpec {
            hidden: vec![width; self.spec.hidden.len()],
            ..self.spec.clone()
        }
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

/// The three relative errors, per width (root-mean-square over the repeats).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DynamicsErrors {
    /// `|‖ΔW^l‖_F − pred_l| / pred_l`, `pred_l = √(Σ_c ε_cᵀ (P^l ⊙ A^l)(X, X) ε_c)`:
    /// `[per layer] per width`.
    pub weight_norm: Vec<Vec<f64>>,
    /// `‖ΔW^l/‖ΔW^l‖_F − ΔŴ^l/‖ΔŴ^l‖_F‖_F` with `ΔŴ^l` the change predicted for the same
    /// initialisation (frozen `G^l`, frozen activities, analytic `ε`): `[per layer] per width`.
    pub weight_direction: Vec<Vec<f64>>,
    /// `‖f_k(X_test) − f̂_k(X_test)‖_F / ‖f̂_k(X_test) − f_0(X_test)‖_F` with
    /// `f̂_k = f_0 − T^L(X_test, X) ε(k)`: per width.
    pub function: Vec<f64>,
}

/// Log-log slopes of the errors against the width.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DynamicsSlopes {
    /// Slope of `log weight_norm` vs `log width`, common to all layers (each layer its own
    /// intercept).
    pub weight_norm: f64,
    /// Same for `weight_direction`.
    pub weight_direction: f64,
    /// Slope of `log function` vs `log width`.
    pub function: f64,
}

/// The JSON of `widealign dynamics --json`: `{"widths", "errors": {"weight_norm",
/// "weight_direction", "function"}, "slopes": {..}, "max_stable_lr", ...}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DynamicsReport {
    /// Simulated widths.
    pub widths: Vec<usize>,
    /// Relative errors of the three predictions.
    pub errors: DynamicsErrors,
    /// Fitted log-log slopes.
    pub slopes: DynamicsSlopes,
    /// Largest stable learning rate `N·C/λ_max(T^L)` of the analytic kernel.
    pub max_stable_lr: f64,
    /// Activation name.
    pub activation: String,
    /// Hidden layers.
    pub hidden_layers: usize,
    /// Gradient-descent steps.
    pub steps: u64,
    /// Learning rate.
    pub lr: f64,
    /// Seed (of the first repeat).
    pub seed: u64,
    /// Initialisations per width.
    pub repeats: usize,
    /// Training points `N`.
    pub train_size: usize,
    /// Training precision.
    pub precision: Precision,
    /// Predicted `‖ΔW^l‖_F` (per layer, per width; depends on the width only through `f_0`;
    /// mean over repeats).
    pub predicted_weight_norm: Vec<Vec<f64>>,
    /// Measured `‖ΔW^l‖_F` (per layer, per width; mean over repeats).
    pub measured_weight_norm: Vec<Vec<f64>>,
    /// Final training loss of the finite network, per width (mean over repeats).
    pub final_train_loss: Vec<f64>,
    /// Seconds spent per width (all repeats, training and predictions).
    pub seconds: Vec<f64>,
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

/// Everything width-independent: the analytic kernels and their eigendecomposition.
struct Theory {
    test_ntk: Mat<f64>,
    dynamics: KernelDynamics,
    weight_shares: Vec<Mat<f64>>,
}

struct WidthResult {
    weight_norm: Vec<f64>,
    weight_direction: Vec<f64>,
    function: f64,
    predicted: Vec<f64>,
    measured: Vec<f64>,
    loss: f64,
}

fn run_width<T: Float>(
    config: &DynamicsConfig,
    seed: u64,
    spec: &MlpSpec,
    data: &RegressionData,
    theory: &Theory,
) -> Result<WidthResult, NtkError> {
    let width = spec.hidden.first().copied().unwrap_or(0);
    let x: Mat<T> = cast_mat(&data.x_train);
    let y: Mat<T> = cast_mat(&data.y_train);
    let xt: Mat<T> = cast_mat(&data.x_test);
    let net0 = Mlp::<T>::new(spec, seed)?;
    let f0 = to_f64(&net0.predict(&x)?);
    let f0_test = to_f64(&net0.predict(&xt)?);
    let r0 = &f0 - &data.y_train;
    let schedule = Schedule::Steps(config.steps);
    let eps = theory.dynamics.eps(&r0, schedule)?;
    let f_pred_test = &f0_test + function_change(&theory.test_ntk, &eps)?;
    let predicted: Vec<f64> = theory
        .weight_shares
        .iter()
        .map(|k| quadratic_norm(k, &eps))
        .collect::<Result<_, _>>()?;
    let dw_pred = predicted_change(&net0, &x, &cast_mat(&eps))?;
    // full-batch gradient descent with backprop
    let mut net = net0.clone();
    let lr = T::cast(config.lr);
    let mut trace = Trace::zeros(spec, x.nrows());
    let mut err = Mat::zeros(x.nrows(), spec.output_dim);
    let mut signals = Signals::new();
    let mut grads = Grads::new();
    for step in 0..config.steps {
        net.forward_into(&x, &mut trace)?;
        let l = Loss::Mse.evaluate_into(trace.output(), &y, &mut err)?;
        if !l.is_finite() {
            return Err(NtkError::Diverged {
                width,
                step: step as usize,
                loss: l,
            });
        }
        let pathway = Pathway {
            feedback: Feedback::Weights(&net.weights),
            derivatives: &trace,
        };
        backward_signals_into(spec, &pathway, &err, &mut signals);
        gradients_into(spec, &signals, &trace, &mut grads);
        net.apply_update(&grads, lr);
    }
    let f_test = to_f64(&net.predict(&xt)?);
    let (final_loss, _) = Loss::Mse.evaluate(&net.predict(&x)?, &y)?;
    if !final_loss.is_finite() {
        return Err(NtkError::Diverged {
            width,
            step: config.steps as usize,
            loss: final_loss,
        });
    }
    let learned = (&f_pred_test - &f0_test).norm();
    let function = (&f_test - &f_pred_test).norm() / learned;
    let mut weight_norm = Vec::new();
    let mut weight_direction = Vec::new();
    let mut measured = Vec::new();
    for l in 0..spec.depth() {
        let dw = to_f64(&(&net.weights[l] - &net0.weights[l]));
        let norm = dw.norm();
        measured.push(norm);
        weight_norm.push((norm - predicted[l]).abs() / predicted[l]);
        let dp = to_f64(
            dw_pred.weights[l]
                .as_ref()
                .expect("every layer has a change"),
        );
        let direction = (&dw / norm - &dp / dp.norm()).norm();
        weight_direction.push(direction);
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
    if config.widths.is_empty() || config.widths.contains(&0) {
        return Err(NtkError::InvalidOption {
            name: "widths".into(),
            reason: format!("need positive widths, got {:?}", config.widths),
        });
    }
    if config.steps == 0 {
        return Err(NtkError::InvalidOption {
            name: "steps".into(),
            reason: "must be at least 1".into(),
        });
    }
    if config.repeats == 0 {
        return Err(NtkError::InvalidOption {
            name: "repeats".into(),
            reason: "must be at least 1".into(),
        });
    }
    let infinite = InfiniteMlp::from_spec(&config.spec)?;
    let options = KernelOptions {
        quadrature: config.quadrature,
        ..KernelOptions::default()
    };
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
    let mut errors = DynamicsErrors::default();
    let mut predicted_weight_norm = Vec::new();
    let mut measured_weight_norm = Vec::new();
    let mut final_train_loss = Vec::new();
    let mut seconds = Vec::new();
    for &width in &config.widths {
        let start = Instant::now();
        let spec = config.spec_at(width);
        let runs: Vec<WidthResult> = (0..config.repeats as u64)
            .map(|k| {
                let seed = config.seed.wrapping_add(k);
                match config.precision {
                    Precision::F32 => run_width::<f32>(config, seed, &spec, data, &theory),
                    Precision::F64 => run_width::<f64>(config, seed, &spec, data, &theory),
                }
            })
            .collect::<Result<_, _>>()?;
        let rms = |f: &dyn Fn(&WidthResult) -> f64| {
            (runs.iter().map(|r| f(r).powi(2)).sum::<f64>() / runs.len() as f64).sqrt()
        };
        let mean =
            |f: &dyn Fn(&WidthResult) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
        let layers = spec.depth();
        errors
            .weight_norm
            .push((0..layers).map(|l| rms(&|r| r.weight_norm[l])).collect());
        errors.weight_direction.push(
            (0..layers)
                .map(|l| rms(&|r| r.weight_direction[l]))
                .collect(),
        );
        errors.function.push(rms(&|r| r.function));
        predicted_weight_norm.push((0..layers).map(|l| mean(&|r| r.predicted[l])).collect());
        measured_weight_norm.push((0..layers).map(|l| mean(&|r| r.measured[l])).collect());
        final_train_loss.push(mean(&|r| r.loss));
        seconds.push(start.elapsed().as_secs_f64());
    }
    let per_layer = |m: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        let layers = m.first().map_or(0, |v| v.len());
        (0..layers)
            .map(|l| m.iter().map(|w| w[l]).collect())
            .collect()
    };
    let slopes = DynamicsSlopes {
        weight_norm: pooled_log_slope(&config.widths, &per_layer(&errors.weight_norm)),
        weight_direction: pooled_log_slope(&config.widths, &per_layer(&errors.weight_direction)),
        function: pooled_log_slope(&config.widths, std::slice::from_ref(&errors.function)),
    };
    Ok(DynamicsReport {
        widths: config.widths.clone(),
        errors,
        slopes,
        max_stable_lr: theory.dynamics.max_stable_lr(),
        activation: config.spec.activation.name().to_string(),
        hidden_layers: config.spec.hidden.len(),
        steps: config.steps,
        lr: config.lr,
        seed: config.seed,
        repeats: config.repeats,
        train_size: n,
        precision: config.precision,
        predicted_weight_norm,
        measured_weight_norm,
        final_train_loss,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamics::KernelDynamics;
    use widealign_models::{BiasInit, Parameterization};
    use widealign_tensor::Activation;

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
}
