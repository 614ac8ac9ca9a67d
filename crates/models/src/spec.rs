//! Architecture descriptions shared by the finite networks and the infinite-width theory.
//!
//! An [`MlpSpec`] says everything about a fully connected network that does not depend on a
//! particular draw of its weights. The same value builds a finite [`crate::Mlp`] from a seed and,
//! in `widealign-ntk`, the network's infinite-width kernels — so a simulation and its theory can
//! never describe different architectures.
//!
//! With `L` weight layers, input `x ∈ R^{n_0}`, hidden widths `n_1..n_{L−1}` and `C` outputs:
//!
//! * NTK parameterisation: `h^l = (s_w/√n_{l−1}) W^l a^{l−1} + s_b b^l`, entries of `W^l, b^l`
//!   drawn from `N(0, 1)` (or biases zero);
//! * standard parameterisation: `h^l = W^l a^{l−1} + b^l`, `W^l ~ N(0, s_w²/n_{l−1})`,
//!   `b^l ~ N(0, s_b²)` (or zero);
//!
//! with `a^0 = x`, `a^l = φ(h^l)` for `l < L` and output `f(x) = h^L`.
//!
//! ```
//! use widealign_models::{MlpSpec, Parameterization, BiasInit};
//! use widealign_tensor::Activation;
//! let spec = MlpSpec::new(64, vec![256, 256], 10, Activation::Relu)
//!     .with_param(Parameterization::Ntk { w_std: 1.0, b_std: 0.1 })
//!     .with_bias_init(BiasInit::Zero);
//! spec.validate().unwrap();
//! assert_eq!(spec.depth(), 3); // weight layers
//! assert_eq!(spec.layer_dims(), vec![(64, 256), (256, 256), (256, 10)]);
//! assert!(MlpSpec::new(64, vec![0], 10, Activation::Relu).validate().is_err());
//! ```

use widealign_tensor::Activation;

use crate::ModelError;

/// How the weights enter the forward pass and how they are initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Parameterization {
    /// NTK parameterisation: `h = (w_std/√fan_in)·W·a + b_std·b`, with `N(0,1)` parameters.
    Ntk {
        /// Weight standard deviation `s_w`.
        w_std: f64,
        /// Bias standard deviation `s_b`.
        b_std: f64,
    },
    /// Standard parameterisation: `h = W·a + b`, `W ~ N(0, w_std²/fan_in)`, `b ~ N(0, b_std²)`.
    Standard {
        /// Weight standard deviation `s_w` (scaled by `1/√fan_in` at initialisation).
        w_std: f64,
        /// Bias standard deviation `s_b`.
        b_std: f64,
    },
}

impl Parameterization {
    /// The weight standard deviation `s_w`.
    pub fn w_std(self) -> f64 {
        match self {
            Parameterization::Ntk { w_std, .. } | Parameterization::Standard { w_std, .. } => w_std,
        }
    }

    /// The bias standard deviation `s_b`.
    pub fn b_std(self) -> f64 {
        match self {
            Parameterization::Ntk { b_std, .. } | Parameterization::Standard { b_std, .. } => b_std,
        }
    }

    /// Multiplier applied to `W·a` in the forward pass for a layer with `fan_in` inputs:
    /// `s_w/√fan_in` (NTK) or `1` (standard).
    pub fn weight_multiplier(self, fan_in: usize) -> f64 {
        match self {
            Parameterization::Ntk { w_std, .. } => w_std / (fan_in as f64).sqrt(),
            Parameterization::Standard { .. } => 1.0,
        }
    }

    /// Multiplier applied to the bias in the forward pass: `s_b` (NTK) or `1` (standard).
    pub fn bias_multiplier(self) -> f64 {
        match self {
            Parameterization::Ntk { b_std, .. } => b_std,
            Parameterization::Standard { .. } => 1.0,
        }
    }

    /// Standard deviation of the stored weight entries at initialisation: `1` (NTK) or
    /// `s_w/√fan_in` (standard).
    pub fn weight_init_std(self, fan_in: usize) -> f64 {
        match self {
            Parameterization::Ntk { .. } => 1.0,
            Parameterization::Standard { w_std, .. } => w_std / (fan_in as f64).sqrt(),
        }
    }

    /// Standard deviation of the stored bias entries at Gaussian initialisation: `1` (NTK) or
    /// `s_b` (standard).
    pub fn bias_init_std(self) -> f64 {
        match self {
            Parameterization::Ntk { .. } => 1.0,
            Parameterization::Standard { b_std, .. } => b_std,
        }
    }

    /// `"ntk"` or `"standard"`.
    pub fn name(self) -> &'static str {
        match self {
            Parameterization::Ntk { .. } => "ntk",
            Parameterization::Standard { .. } => "standard",
        }
    }
}

/// How biases start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BiasInit {
    /// Biases drawn from the parameterisation's Gaussian.
    Gaussian,
    /// Biases start at zero (as in the reference experiments); they still learn.
    Zero,
}

/// A fully connected architecture: everything about an MLP except its weights.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpSpec {
    /// Input dimension `n_0`.
    pub input_dim: usize,
    /// Hidden widths `n_1..n_{L−1}` (may be empty: a linear model).
    pub hidden: Vec<usize>,
    /// Output dimension `C`.
    pub output_dim: usize,
    /// Nonlinearity `φ` applied after every hidden layer.
    pub activation: Activation,
    /// Parameterisation with its weight and bias standard deviations.
    pub param: Parameterization,
    /// How biases are initialised.
    pub bias_init: BiasInit,
}

impl MlpSpec {
    /// A spec with NTK parameterisation (`s_w = 1`, `s_b = 0.1`) and zero-initialised biases;
    /// change them with [`MlpSpec::with_param`] and [`MlpSpec::with_bias_init`].
    pub fn new(
        input_dim: usize,
        hidden: Vec<usize>,
        output_dim: usize,
        activation: Activation,
    ) -> Self {
        MlpSpec {
            input_dim,
            hidden,
            output_dim,
            activation,
            param: Parameterization::Ntk {
                w_std: 1.0,
                b_std: 0.1,
            },
            bias_init: BiasInit::Zero,
        }
    }

    /// A spec whose `depth` hidden layers all have width `width`.
    pub fn uniform(
        input_dim: usize,
        width: usize,
        depth: usize,
        output_dim: usize,
        activation: Activation,
    ) -> Self {
        MlpSpec::new(input_dim, vec![width; depth], output_dim, activation)
    }

    /// Replaces the parameterisation.
    pub fn with_param(mut self, param: Parameterization) -> Self {
        self.param = param;
        self
    }

    /// Replaces the bias initialisation.
    pub fn with_bias_init(mut self, bias_init: BiasInit) -> Self {
        self.bias_init = bias_init;
        self
    }

    /// Number of weight layers `L = hidden.len() + 1`.
    pub fn depth(&self) -> usize {
        self.hidden.len() + 1
    }

    /// All layer widths `[n_0, n_1, …, n_{L−1}, C]`.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = Vec::with_capacity(self.hidden.len() + 2);
        w.push(self.input_dim);
        w.extend_from_slice(&self.hidden);
        w.push(self.output_dim);
        w
    }

    /// `(fan_in, fan_out)` of every weight layer, in order.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        self.widths().windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Number of trainable parameters (weights and biases).
    pub fn parameter_count(&self) -> usize {
        self.layer_dims().iter().map(|(i, o)| i * o + o).sum()
    }

    /// Checks the spec: every dimension positive, standard deviations finite and non-negative.
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] naming the offending field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &str, why: String| {
            Err(ModelError::InvalidSpec {
                field: field.to_string(),
                reason: why,
            })
        };
        if self.input_dim == 0 {
            return bad("input_dim", "must be at least 1".into());
        }
        if self.output_dim == 0 {
            return bad("output_dim", "must be at least 1".into());
        }
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return bad(&format!("hidden[{i}]"), "width must be at least 1".into());
        }
        for (field, v) in [("w_std", self.param.w_std()), ("b_std", self.param.b_std())] {
            if !v.is_finite() || v < 0.0 {
                return bad(field, format!("must be finite and non-negative, got {v}"));
            }
        }
        Ok(())
    }
}

/// An Elman recurrent architecture: everything about an [`crate::Rnn`] except its weights.
///
/// For inputs `x_1..x_T ∈ R^{n_in}`, hidden width `n` and `C` outputs:
///
/// ```text
/// h_t = m_in W_in x_t + m_rec W_rec r_{t−1} + s b,   r_t = φ(h_t),   y_t = m_out W_out r_t + s b_out
/// ```
///
/// with a trainable initial state `r_0` (zero at initialisation). In the NTK parameterisation
/// `m_in = s_w/√n_in`, `m_rec = s_w/√n`, `m_out = 1/√n`, `s = s_b` and all parameters start
/// `N(0,1)` (docs/theory.md §1.2); for the one-dimensional Add task with `s_w = 1`, `m_in = 1`,
/// and the `s_w/√n_in` scaling keeps `h_t` of order one for wider inputs. In the standard parameterisation all multipliers are `1` and the stored
/// weights start with standard deviations `s_w/√n_in`, `s_w/√n`, `1/√n` (biases `s_b`).
#[derive(Clone, Debug, PartialEq)]
pub struct RnnSpec {
    /// Input dimension `n_in`.
    pub input_dim: usize,
    /// Hidden width `n`.
    pub width: usize,
    /// Output dimension `C`.
    pub output_dim: usize,
    /// Nonlinearity `φ`.
    pub activation: Activation,
    /// Parameterisation with its weight and bias standard deviations.
    pub param: Parameterization,
    /// How `b` and `b_out` are initialised (`r_0` always starts at zero).
    pub bias_init: BiasInit,
}

impl RnnSpec {
    /// A spec with NTK parameterisation (`s_w = 1`, `s_b = 0.1`) and zero-initialised biases.
    pub fn new(input_dim: usize, width: usize, output_dim: usize, activation: Activation) -> Self {
        RnnSpec {
            input_dim,
            width,
            output_dim,
            activation,
            param: Parameterization::Ntk {
                w_std: 1.0,
                b_std: 0.1,
            },
            bias_init: BiasInit::Zero,
        }
    }

    /// Replaces the parameterisation.
    pub fn with_param(mut self, param: Parameterization) -> Self {
        self.param = param;
        self
    }

    /// Replaces the bias initialisation.
    pub fn with_bias_init(mut self, bias_init: BiasInit) -> Self {
        self.bias_init = bias_init;
        self
    }

    /// `m_in`: `s_w/√n_in` (NTK) or `1` (standard).
    pub fn input_multiplier(&self) -> f64 {
        self.param.weight_multiplier(self.input_dim)
    }

    /// `m_rec`: `s_w/√n` (NTK) or `1` (standard).
    pub fn recurrent_multiplier(&self) -> f64 {
        self.param.weight_multiplier(self.width)
    }

    /// `m_out`: `1/√n` (NTK) or `1` (standard).
    pub fn readout_multiplier(&self) -> f64 {
        match self.param {
            Parameterization::Ntk { .. } => 1.0 / (self.width as f64).sqrt(),
            Parameterization::Standard { .. } => 1.0,
        }
    }

    /// Initial standard deviation of the stored `W_out` entries: `1` (NTK) or `1/√n` (standard).
    pub fn readout_init_std(&self) -> f64 {
        match self.param {
            Parameterization::Ntk { .. } => 1.0,
            Parameterization::Standard { .. } => 1.0 / (self.width as f64).sqrt(),
        }
    }

    /// Number of trainable parameters: `n·n_in + n² + n + C·n + C + n` (the last `n` is `r_0`).
    pub fn parameter_count(&self) -> usize {
        let (i, n, c) = (self.input_dim, self.width, self.output_dim);
        n * i + n * n + n + c * n + c + n
    }

    /// Checks the spec: every dimension positive, standard deviations finite and non-negative.
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] naming the offending field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &str, why: String| {
            Err(ModelError::InvalidSpec {
                field: field.to_string(),
                reason: why,
            })
        };
        for (field, v) in [
            ("input_dim", self.input_dim),
            ("width", self.width),
            ("output_dim", self.output_dim),
        ] {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        for (field, v) in [("w_std", self.param.w_std()), ("b_std", self.param.b_std())] {
            if !v.is_finite() || v < 0.0 {
                return bad(field, format!("must be finite and non-negative, got {v}"));
            }
        }
        Ok(())
    }
}
