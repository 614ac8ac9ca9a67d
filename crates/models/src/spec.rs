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

use serde::{Deserialize, Serialize};
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

/// Zero padding of a convolution, as TensorFlow and neural-tangents define it.
///
/// For an input of size `n`, kernel `k` and stride `s` along one axis:
///
/// * [`Padding::Same`]: output `⌈n/s⌉`; `p = max((⌈n/s⌉ − 1)·s + k − n, 0)` zeros in all, `⌊p/2⌋`
///   before the first row (column) and the rest after the last;
/// * [`Padding::Valid`]: no padding, output `⌊(n − k)/s⌋ + 1` (requires `k ≤ n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Padding {
    /// Output `⌈n/s⌉`, zeros split evenly (the extra one after).
    Same,
    /// No padding: only positions where the whole kernel fits.
    Valid,
}

impl Padding {
    /// Both, SAME first.
    pub const ALL: [Padding; 2] = [Padding::Same, Padding::Valid];

    /// `"same"` or `"valid"`.
    pub fn name(self) -> &'static str {
        match self {
            Padding::Same => "same",
            Padding::Valid => "valid",
        }
    }

    /// Output size along an axis of `n` inputs for kernel `k` and stride `s` (0 when a VALID
    /// kernel does not fit).
    pub fn output_size(self, n: usize, k: usize, s: usize) -> usize {
        match self {
            Padding::Same => n.div_ceil(s),
            Padding::Valid if k > n => 0,
            Padding::Valid => (n - k) / s + 1,
        }
    }

    /// Zeros before the first input along an axis (`⌊p/2⌋` for SAME, 0 for VALID).
    pub fn pad_before(self, n: usize, k: usize, s: usize) -> usize {
        match self {
            Padding::Same => ((n.div_ceil(s).saturating_sub(1)) * s + k).saturating_sub(n) / 2,
            Padding::Valid => 0,
        }
    }
}

/// What the readout of a [`CnnSpec`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CnnReadout {
    /// Global average pooling: the mean of each channel over the last layer's pixels
    /// (readout fan-in `C_L`), as in the reference experiments.
    Gap,
    /// The last layer's feature maps flattened (readout fan-in `H_L·W_L·C_L`).
    Flatten,
}

impl CnnReadout {
    /// Both, GAP first.
    pub const ALL: [CnnReadout; 2] = [CnnReadout::Gap, CnnReadout::Flatten];

    /// `"gap"` or `"flatten"`.
    pub fn name(self) -> &'static str {
        match self {
            CnnReadout::Gap => "gap",
            CnnReadout::Flatten => "flatten",
        }
    }
}

/// Normalisation after each convolution of a [`CnnSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Norm {
    /// None: `A^l = φ(H^l)`.
    None,
    /// Parameter-free batch normalisation of every feature (pixel and channel) over the batch,
    /// `Z = (H − μ)/√(σ² + ε)` with the batch mean `μ`, the biased batch variance `σ²` and
    /// `ε = 10⁻⁶`, then `A^l = φ(Z^l)` — as the reference code does (`tf.nn.moments(x, [0])`
    /// on `NHWC` maps, then `tf.nn.batch_normalization` without offset and scale).
    Batch,
}

impl Norm {
    /// Both, none first.
    pub const ALL: [Norm; 2] = [Norm::None, Norm::Batch];

    /// `"none"` or `"batch"`.
    pub fn name(self) -> &'static str {
        match self {
            Norm::None => "none",
            Norm::Batch => "batch",
        }
    }
}

/// `Display` (the name) and `FromStr` (its inverse, listing the names otherwise) for a name
/// enum with `ALL` and `name()`.
macro_rules! by_name {
    ($ty:ident) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                $ty::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
                    format!(
                        "unknown value `{s}` (expected one of: {})",
                        $ty::ALL.map($ty::name).join(", ")
                    )
                })
            }
        }
    };
}

by_name!(Padding);
by_name!(CnnReadout);
by_name!(Norm);

/// The order of an input image's values in a row of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageLayout {
    /// Column `(y·W + x)·C + c` (NHWC, as TensorFlow and neural-tangents): the convention.
    Hwc,
    /// Column `c·H·W + y·W + x` (channel planes one after the other), as CIFAR-10's binary
    /// files store them and `widealign-data` loads them.
    Chw,
}

/// The `ε` of [`Norm::Batch`] (the reference code's `0.000001`).
pub const BATCH_NORM_EPS: f64 = 1e-6;

/// A convolutional architecture: everything about a [`crate::Cnn`] except its weights.
///
/// # Conventions
///
/// * **Images** are `H × W × C` in **HWC** order, one image per row of a batch: pixel `(y, x)`,
///   channel `c` is column `(y·W + x)·C + c` (row-major pixels, channels fastest), as NHWC in
///   TensorFlow / neural-tangents. ([`ImageLayout::Chw`] reads channel planes instead, for data
///   stored that way such as CIFAR-10; the network is the same.)
/// * **Layers** `l = 1..L` are 2-D convolutions with `k × k` kernels, stride `s` and
///   [`Padding`] as TensorFlow / neural-tangents define it, followed by the optional [`Norm`] and
///   the activation `φ`. Kernel `K^l` is stored as a `C_l × (k·k·C_{l−1})` matrix whose column
///   `(dy·k + dx)·C_{l−1} + c` is the HWIO kernel entry `[dy, dx, c, ·]`.
/// * **Parameterisation** (neural-tangents' convention): in the NTK parameterisation
///   `H^l = (s_w/√(k·k·C_{l−1}))·(K^l ⋆ A^{l−1}) + s_b·b^l` with `N(0, 1)` kernels and biases; in
///   the standard one the multipliers are 1 and the stored entries start `N(0, s_w²/(k·k·C_{l−1}))`
///   and `N(0, s_b²)`. Biases start at zero under [`BiasInit::Zero`].
/// * **Readout** `f = m_R·R·W_Rᵀ + s_b·b_R` (`m_R = s_w/√n_R` in the NTK parameterisation) reads
///   `R` = the global average of each channel ([`CnnReadout::Gap`], `n_R = C_L`) or the flattened
///   last feature maps ([`CnnReadout::Flatten`], `n_R = H_L·W_L·C_L`).
/// * Inside the network, feature maps are stored **channel-major** (column `c·H_l·W_l + y·W_l + x`
///   of a `B × C_l·H_l·W_l` batch), so the flatten readout's weight columns are in that (CHW)
///   order; all its entries are i.i.d. at initialisation, so this is only a relabelling.
///
/// ```
/// use widealign_models::{CnnReadout, CnnSpec, Padding};
/// use widealign_tensor::Activation;
/// let spec = CnnSpec::new([28, 28, 1], vec![64, 64, 64], 10, Activation::Relu);
/// spec.validate().unwrap();
/// assert_eq!(spec.input_dim(), 784);
/// assert_eq!(spec.readout_fan_in(), 64); // global average pooling
/// let valid = spec.clone().with_padding(Padding::Valid).with_readout(CnnReadout::Flatten);
/// assert_eq!(valid.map_shape(3), [22, 22, 64]);
/// assert_eq!(valid.readout_fan_in(), 22 * 22 * 64);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CnnSpec {
    /// Input image `[H, W, C]`.
    pub image: [usize; 3],
    /// The order of the input's values ([`ImageLayout::Hwc`] unless the data says otherwise).
    pub layout: ImageLayout,
    /// Channels `C_1..C_L` of the convolution layers (at least one).
    pub channels: Vec<usize>,
    /// Kernel size `k` (square `k × k` kernels).
    pub kernel: usize,
    /// Stride `s` along both axes.
    pub stride: usize,
    /// Zero padding of every convolution.
    pub padding: Padding,
    /// What the readout reads.
    pub readout: CnnReadout,
    /// Normalisation after each convolution.
    pub norm: Norm,
    /// Output dimension `C`.
    pub output_dim: usize,
    /// Nonlinearity `φ` after every convolution (after the normalisation).
    pub activation: Activation,
    /// Parameterisation with its weight and bias standard deviations.
    pub param: Parameterization,
    /// How biases are initialised.
    pub bias_init: BiasInit,
}

impl CnnSpec {
    /// A spec with 3 × 3 kernels, stride 1, SAME padding, global average pooling, no
    /// normalisation, NTK parameterisation (`s_w = 1`, `s_b = 0.1`) and zero biases.
    pub fn new(
        image: [usize; 3],
        channels: Vec<usize>,
        output_dim: usize,
        activation: Activation,
    ) -> Self {
        CnnSpec {
            image,
            layout: ImageLayout::Hwc,
            channels,
            kernel: 3,
            stride: 1,
            padding: Padding::Same,
            readout: CnnReadout::Gap,
            norm: Norm::None,
            output_dim,
            activation,
            param: Parameterization::Ntk {
                w_std: 1.0,
                b_std: 0.1,
            },
            bias_init: BiasInit::Zero,
        }
    }

    /// Replaces the input layout.
    pub fn with_layout(mut self, layout: ImageLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Replaces the activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Replaces the kernel size.
    pub fn with_kernel(mut self, kernel: usize) -> Self {
        self.kernel = kernel;
        self
    }

    /// Replaces the stride.
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    /// Replaces the padding.
    pub fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// Replaces the readout.
    pub fn with_readout(mut self, readout: CnnReadout) -> Self {
        self.readout = readout;
        self
    }

    /// Replaces the normalisation.
    pub fn with_norm(mut self, norm: Norm) -> Self {
        self.norm = norm;
        self
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

    /// Number of convolution layers `L`.
    pub fn conv_layers(&self) -> usize {
        self.channels.len()
    }

    /// Number of weight layers, `L + 1` (the readout included).
    pub fn depth(&self) -> usize {
        self.channels.len() + 1
    }

    /// Values per input image, `H·W·C`.
    pub fn input_dim(&self) -> usize {
        self.image.iter().product()
    }

    /// `[H_l, W_l, C_l]` of the feature maps after layer `l` (`l = 0`: the input image).
    ///
    /// # Panics
    /// If `l > L`.
    pub fn map_shape(&self, l: usize) -> [usize; 3] {
        assert!(
            l <= self.conv_layers(),
            "layer {l} of {}",
            self.conv_layers()
        );
        let [mut h, mut w, c0] = self.image;
        for _ in 0..l {
            h = self.padding.output_size(h, self.kernel, self.stride);
            w = self.padding.output_size(w, self.kernel, self.stride);
        }
        [h, w, if l == 0 { c0 } else { self.channels[l - 1] }]
    }

    /// Values per example of layer `l`'s feature maps, `H_l·W_l·C_l`.
    pub fn map_len(&self, l: usize) -> usize {
        self.map_shape(l).iter().product()
    }

    /// Fan-in of convolution layer `l = 1..L`: `k·k·C_{l−1}`.
    pub fn conv_fan_in(&self, l: usize) -> usize {
        self.kernel * self.kernel * self.map_shape(l - 1)[2]
    }

    /// Fan-in `n_R` of the readout: `C_L` (GAP) or `H_L·W_L·C_L` (flatten).
    pub fn readout_fan_in(&self) -> usize {
        let l = self.conv_layers();
        match self.readout {
            CnnReadout::Gap => self.map_shape(l)[2],
            CnnReadout::Flatten => self.map_len(l),
        }
    }

    /// `(fan_in, fan_out)` of every weight layer: `(k·k·C_{l−1}, C_l)` for the convolutions,
    /// then `(n_R, C)` for the readout. Weight `l` is stored as a `fan_out × fan_in` matrix.
    pub fn layer_dims(&self) -> Vec<(usize, usize)> {
        let mut dims: Vec<(usize, usize)> = (1..=self.conv_layers())
            .map(|l| (self.conv_fan_in(l), self.channels[l - 1]))
            .collect();
        dims.push((self.readout_fan_in(), self.output_dim));
        dims
    }

    /// Number of trainable parameters (kernels, biases, readout).
    pub fn parameter_count(&self) -> usize {
        self.layer_dims().iter().map(|(i, o)| i * o + o).sum()
    }

    /// Checks the spec: every size positive, the kernel fitting every VALID layer, standard
    /// deviations finite and non-negative.
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
        for (i, &v) in self.image.iter().enumerate() {
            if v == 0 {
                return bad(&format!("image[{i}]"), "must be at least 1".into());
            }
        }
        if self.channels.is_empty() {
            return bad(
                "channels",
                "at least one convolution layer is needed".into(),
            );
        }
        if let Some(i) = self.channels.iter().position(|&c| c == 0) {
            return bad(&format!("channels[{i}]"), "must be at least 1".into());
        }
        if self.kernel == 0 {
            return bad("kernel", "must be at least 1".into());
        }
        if self.stride == 0 {
            return bad("stride", "must be at least 1".into());
        }
        if self.output_dim == 0 {
            return bad("output_dim", "must be at least 1".into());
        }
        let [mut h, mut w, _] = self.image;
        for l in 1..=self.conv_layers() {
            if self.padding == Padding::Valid && (self.kernel > h || self.kernel > w) {
                return bad(
                    "kernel",
                    format!(
                        "a {k}×{k} kernel does not fit layer {l}'s {h}×{w} input with VALID \
                         padding",
                        k = self.kernel
                    ),
                );
            }
            h = self.padding.output_size(h, self.kernel, self.stride);
            w = self.padding.output_size(w, self.kernel, self.stride);
        }
        for (field, v) in [("w_std", self.param.w_std()), ("b_std", self.param.b_std())] {
            if !v.is_finite() || v < 0.0 {
                return bad(field, format!("must be finite and non-negative, got {v}"));
            }
        }
        Ok(())
    }
}
