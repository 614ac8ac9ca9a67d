//! Library entry points behind the `widealign ntk`, `dynamics` and `align` commands.
//!
//! The command-line crate only parses flags, loads data and prints the JSON these functions
//! return; every computation lives here so it is tested with the theory.
//!
//! * [`analytic_ntk`] → [`NtkReport`] `{"nngp": [[..]], "ntk": [[..]], "seconds": s}`.
//!
//! ```
//! use widealign_ntk::experiment::{analytic_ntk, NtkConfig};
//! use widealign_tensor::{Activation, Mat};
//! let x = Mat::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 1.0]);
//! let cfg = NtkConfig::new(1, Activation::Relu, 1.0, 0.0);
//! let r = analytic_ntk(&x, &cfg).unwrap();
//! assert_eq!(r.ntk.len(), 2);
//! assert!((r.nngp[0][0] - 0.25).abs() < 1e-15); // s_w² E[relu(u)²] with Var u = 1/2
//! let json = serde_json::to_string(&r).unwrap();
//! assert!(json.starts_with("{\"nngp\":[["));
//! ```

use std::time::Instant;

use serde::Serialize;
use widealign_models::BiasInit;
use widealign_tensor::{Activation, Mat};

use crate::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use crate::quadrature::Quadrature;
use crate::NtkError;

/// Parameters of `widealign ntk`: a network with `hidden_layers` hidden layers (so
/// `hidden_layers + 1` dense layers) and a scalar output.
#[derive(Clone, Debug, PartialEq)]
pub struct NtkConfig {
    /// Number of hidden layers `L − 1`.
    pub hidden_layers: usize,
    /// Activation.
    pub activation: Activation,
    /// `s_w`.
    pub w_std: f64,
    /// `s_b`.
    pub b_std: f64,
    /// Initial biases: Gaussian (the default here, matching neural-tangents' `Dense(W_std,
    /// b_std)`, where `Σ^1 = s_w² x·x'/n_0 + s_b²`) or zero.
    pub bias_init: BiasInit,
    /// Integrator for tanh and gelu.
    pub quadrature: Quadrature,
}

impl NtkConfig {
    /// A config with Gaussian biases and the default quadrature.
    pub fn new(hidden_layers: usize, activation: Activation, w_std: f64, b_std: f64) -> Self {
        NtkConfig {
            hidden_layers,
            activation,
            w_std,
            b_std,
            bias_init: BiasInit::Gaussian,
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
/// [`NtkError::InvalidOption`] for negative or non-finite standard deviations,
/// [`NtkError::NonFinite`] for NaN inputs, [`NtkError::InvalidOption`] for an empty input set.
pub fn analytic_ntk(inputs: &Mat<f64>, config: &NtkConfig) -> Result<NtkReport, NtkError> {
    for (name, v) in [("--w-std", config.w_std), ("--b-std", config.b_std)] {
        if !v.is_finite() || v < 0.0 {
            return Err(NtkError::InvalidOption {
                name: name.into(),
                reason: format!("must be finite and non-negative, got {v}"),
            });
        }
    }
    if inputs.nrows() == 0 || inputs.ncols() == 0 {
        return Err(NtkError::InvalidOption {
            name: "--inputs".into(),
            reason: format!(
                "need at least one input with at least one feature, got {} × {}",
                inputs.nrows(),
                inputs.ncols()
            ),
        });
    }
    let net = InfiniteMlp {
        input_dim: inputs.ncols(),
        layers: config.hidden_layers + 1,
        activation: config.activation,
        w_std: config.w_std,
        b_std: config.b_std,
        bias_init: config.bias_init,
    };
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
