//! The fully connected network: forward trace, backward pathways, gradients.
//!
//! With `L` weight layers and the batch convention of `widealign-tensor` (one sample per row),
//! layer `l = 1..L` computes, for a batch `A^{l−1}` (`B × n_{l−1}`),
//!
//! ```text
//! H^l = m_l · A^{l−1} · W^lᵀ + s · 1 b^lᵀ        (B × n_l)
//! A^l = φ(H^l)  (l < L),   A^0 = X,   f(X) = H^L
//! ```
//!
//! with `m_l = spec.param.weight_multiplier(n_{l−1})` (`s_w/√n_{l−1}` in the NTK
//! parameterisation, `1` in the standard one) and `s = spec.param.bias_multiplier()`.
//!
//! ## The backward pass in two parts
//!
//! Every credit-assignment rule of docs/theory.md §2 updates `W^l` by
//! `ΔW^l = −lr · m_l · D^lᵀ · A^{l−1}` and differs from backprop only in the backward signal
//! `D^l` and in the input activity `A^{l−1}`. So the backward pass is split in two functions that
//! the rules combine:
//!
//! 1. [`backward_signals`]: from the output error `E = ∂L/∂f` (`B × C`) and a [`Pathway`] — which
//!    matrices carry the signal ([`Feedback`]) and whose pre-activations give `φ'` — compute
//!    `D^L = E` and, for `l < L`,
//!    * [`Feedback::Weights`]`(M)`: `D^l = φ'(H^l) ⊙ (m_{l+1} · D^{l+1} · M^{l+1})`
//!    * [`Feedback::Direct`]`(D)`:  `D^l = φ'(H^l) ⊙ (E · D^lᵀ)`
//!    * [`Feedback::ReadoutOnly`]: no signal below the output.
//! 2. [`gradients`]: from the signals and a chosen activity trace,
//!    `∂W^l = m_l · D^lᵀ · A^{l−1}` and `∂b^l = s · Σ_rows D^l`.
//!
//! Backprop is the live pathway (live weights, live trace) plus the live activities; Align-zero
//! is the frozen pathway plus the frozen activities; and so on.
//!
//! There is only one backward loop, shared with the fused SGD step of [`crate::fused`]:
//!
//! ```text
//! D^L = E
//! for l = L, L−1, …, 1:
//!     if l > 1 and the pathway reaches below the output:
//!         D^{l−1} ← φ'(H^{l−1}) ⊙ (m_l · D^l · M^l)      (Feedback::Weights, or the live weights)
//!         D^{l−1} ← φ'(H^{l−1}) ⊙ (E · D_{l−1}ᵀ)         (Feedback::Direct)
//!     D^l is final: run the caller's hook for layer l
//!     stop if nothing reached layer l − 1              (Feedback::ReadoutOnly, or l = 1)
//! ```
//!
//! [`backward_signals`] runs it with a hook that does nothing and keeps every `D^l`;
//! [`sgd_update_fused`] runs it with a hook that applies the SGD update
//! of layer `l` at once. The hook runs after `D^{l−1}` was formed, so for backprop `M^l = W^l` is
//! still the weight before its update.
//!
//! ```
//! use widealign_models::{backward_signals, gradients, Feedback, Loss, Mlp, MlpSpec, Pathway};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = MlpSpec::new(3, vec![8, 8], 2, Activation::Tanh);
//! let mut net = Mlp::<f64>::new(&spec, 0).unwrap();
//! let x: Mat<f64> = SeedStream::new(1).gaussian_matrix("x", 5, 3, 1.0);
//! let y: Mat<f64> = SeedStream::new(1).gaussian_matrix("y", 5, 2, 1.0);
//!
//! let trace = net.forward(&x).unwrap();
//! let (loss0, err) = Loss::Mse.evaluate(trace.output(), &y).unwrap();
//! // backprop = live weights + live derivatives + live activities
//! let pathway = Pathway { feedback: Feedback::Weights(&net.weights), derivatives: &trace };
//! let signals = backward_signals(&spec, &pathway, &err);
//! let grads = gradients(&spec, &signals, &trace);
//! net.apply_update(&grads, 0.05);
//! let (loss1, _) = Loss::Mse.evaluate(&net.predict(&x).unwrap(), &y).unwrap();
//! assert!(loss1 < loss0);
//! ```

use widealign_tensor::{
    elementwise,
    gemm::{gemm, Op},
    reduce,
    rng::SeedStream,
    Float, Mat,
};

use crate::{
    sgd_update_fused, FeedbackPath, FusedBuffers, FusedFeedback, MlpSpec, ModelError, Network,
};

/// A fully connected network with its weights.
///
/// Weight `W^l` (`n_l × n_{l−1}`) is stored at index `l − 1`, bias `b^l` (length `n_l`) likewise.
/// Memory: `Σ_l (n_l·n_{l−1} + n_l)` values of `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp<T: Float> {
    /// The architecture.
    pub spec: MlpSpec,
    /// The seed the weights were drawn from.
    pub seed: u64,
    /// `W^1..W^L` at indices `0..L`, each `n_l × n_{l−1}`.
    pub weights: Vec<Mat<T>>,
    /// `b^1..b^L` at indices `0..L`, each of length `n_l`.
    pub biases: Vec<Vec<T>>,
}

/// The stored state of one forward pass: what the backward pass and the rules need.
///
/// Memory: `B · (n_0 + 2·Σ_{l<L} n_l + C)` values of `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace<T: Float> {
    /// Pre-activations `H^1..H^L` at indices `0..L`, each `B × n_l`; `pre[L−1]` is the output `f(X)`.
    pub pre: Vec<Mat<T>>,
    /// Activities `A^0..A^{L−1}` at indices `0..L`, `A^0 = X`, each `B × n_l`.
    pub act: Vec<Mat<T>>,
}

impl<T: Float> Default for Trace<T> {
    /// An empty trace (no layers; [`Mlp::forward_into`] sizes it).
    fn default() -> Self {
        Trace {
            pre: Vec::new(),
            act: Vec::new(),
        }
    }
}

impl<T: Float> Trace<T> {
    /// A zero trace for a batch of `batch` samples (buffers for [`Mlp::forward_into`]).
    pub fn zeros(spec: &MlpSpec, batch: usize) -> Self {
        let widths = spec.widths();
        let depth = spec.depth();
        Trace {
            pre: (1..=depth).map(|l| Mat::zeros(batch, widths[l])).collect(),
            act: (0..depth).map(|l| Mat::zeros(batch, widths[l])).collect(),
        }
    }

    /// The network output `f(X) = H^L` (`B × C`).
    pub fn output(&self) -> &Mat<T> {
        self.pre.last().expect("a trace has at least one layer")
    }

    /// The batch size `B`.
    pub fn batch(&self) -> usize {
        self.act[0].nrows()
    }

    /// Number of stored values: `B · (n_0 + 2·Σ_{l<L} n_l + C)`.
    pub fn len(&self) -> usize {
        self.pre.iter().chain(&self.act).map(|m| m.len()).sum()
    }

    /// Whether the trace stores no values (an empty batch).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes `m` an `rows × cols` matrix, reusing its allocation when the shape already matches.
pub(crate) fn ensure_shape<T: Float>(m: &mut Mat<T>, rows: usize, cols: usize) {
    if m.shape() != (rows, cols) {
        *m = Mat::zeros(rows, cols);
    }
}

impl<T: Float> Mlp<T> {
    /// Draws a network from `seed`.
    ///
    /// `W^l` comes from the stream `SeedStream::new(seed).child("mlp")` named `"layer{l}.weight"`
    /// with standard deviation `spec.param.weight_init_std(n_{l−1})`; `b^l` from `"layer{l}.bias"`
    /// with `spec.param.bias_init_std()`, or zero under [`BiasInit::Zero`](crate::BiasInit::Zero). Each layer has its own
    /// stream, so the draws of one layer do not depend on the other layers' shapes.
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] if the spec does not validate.
    pub fn new(spec: &MlpSpec, seed: u64) -> Result<Self, ModelError> {
        spec.validate()?;
        let stream = SeedStream::new(seed).child("mlp");
        let (weights, biases) =
            crate::stack::draw(&stream, &spec.layer_dims(), spec.param, spec.bias_init);
        Ok(Mlp {
            spec: spec.clone(),
            seed,
            weights,
            biases,
        })
    }

    /// Number of weight layers `L`.
    pub fn depth(&self) -> usize {
        self.weights.len()
    }

    fn check_input(&self, x: &Mat<T>, what: &str) -> Result<(), ModelError> {
        if x.ncols() != self.spec.input_dim {
            return Err(ModelError::shape(
                format!("{what} input batch (one sample per row)"),
                format!("B × {}", self.spec.input_dim),
                x.shape(),
            ));
        }
        Ok(())
    }

    /// One dense layer: `out ← m_l · a · W^lᵀ + s · 1 b^lᵀ` (`l` is 1-based).
    fn layer_into(&self, l: usize, a: &Mat<T>, out: &mut Mat<T>) {
        let w = &self.weights[l - 1];
        let m = T::cast(self.spec.param.weight_multiplier(w.ncols()));
        gemm(m, a, Op::N, w, Op::T, T::zero(), out);
        let s = T::cast(self.spec.param.bias_multiplier());
        elementwise::add_row_vector(out, &self.biases[l - 1], s);
    }

    /// Forward pass keeping every pre-activation and activity (see the module docs for the formula).
    ///
    /// Cost `2·B·Σ_l n_l·n_{l−1}` flops; memory as in [`Trace`].
    ///
    /// # Errors
    /// [`ModelError::ShapeMismatch`] naming both shapes if `x` is not `B × n_0`.
    pub fn forward(&self, x: &Mat<T>) -> Result<Trace<T>, ModelError> {
        let mut trace = Trace::zeros(&self.spec, x.nrows());
        self.forward_into(x, &mut trace)?;
        Ok(trace)
    }

    /// [`Mlp::forward`] writing into an existing trace, reusing its buffers when the batch size is
    /// unchanged (no allocation in a training loop with a fixed batch size).
    ///
    /// # Errors
    /// [`ModelError::ShapeMismatch`] naming both shapes if `x` is not `B × n_0`.
    pub fn forward_into(&self, x: &Mat<T>, trace: &mut Trace<T>) -> Result<(), ModelError> {
        self.check_input(x, "Mlp::forward")?;
        let depth = self.depth();
        let widths = self.spec.widths();
        let batch = x.nrows();
        trace.pre.resize_with(depth, || Mat::zeros(0, 0));
        trace.act.resize_with(depth, || Mat::zeros(0, 0));
        ensure_shape(&mut trace.act[0], batch, widths[0]);
        trace.act[0].copy_from(x);
        for l in 1..=depth {
            ensure_shape(&mut trace.pre[l - 1], batch, widths[l]);
            self.layer_into(l, &trace.act[l - 1], &mut trace.pre[l - 1]);
            if l < depth {
                ensure_shape(&mut trace.act[l], batch, widths[l]);
                let (pre, act) = (&trace.pre[l - 1], &mut trace.act[l]);
                self.spec
                    .activation
                    .apply_into(pre.as_slice(), act.as_mut_slice());
            }
        }
        Ok(())
    }

    /// Inference: the output `f(X)` (`B × C`) without keeping a trace (two buffers live at a time).
    ///
    /// # Errors
    /// [`ModelError::ShapeMismatch`] naming both shapes if `x` is not `B × n_0`.
    pub fn predict(&self, x: &Mat<T>) -> Result<Mat<T>, ModelError> {
        self.check_input(x, "Mlp::predict")?;
        let widths = self.spec.widths();
        let depth = self.depth();
        let mut a = Mat::zeros(x.nrows(), widths[1]);
        self.layer_into(1, x, &mut a);
        for l in 2..=depth {
            self.spec.activation.apply_slice(a.as_mut_slice());
            let mut h = Mat::zeros(x.nrows(), widths[l]);
            self.layer_into(l, &a, &mut h);
            a = h;
        }
        Ok(a)
    }

    /// Plain gradient step `θ ← θ − lr·g` for every parameter whose gradient is `Some`.
    ///
    /// # Panics
    /// If a gradient's shape differs from its parameter's (gradients come from [`gradients`] for
    /// this spec, so this is a programming error, not a user-input error).
    pub fn apply_update(&mut self, grads: &Grads<T>, lr: T) {
        let params = self.params_mut();
        for (p, g) in params.into_iter().zip(grads.as_slices()) {
            if let Some(g) = g {
                elementwise::axpy(-lr, g, p);
            }
        }
    }

    /// The parameter tensors in the stable order `W^1, b^1, W^2, b^2, …, W^L, b^L`
    /// (matrices in column-major storage). [`Grads::as_slices`] uses the same order.
    pub fn params_mut(&mut self) -> Vec<&mut [T]> {
        crate::stack::params_mut(&mut self.weights, &mut self.biases)
    }

    /// The parameter tensors, read-only, in the order of [`Mlp::params_mut`].
    pub fn params(&self) -> Vec<&[T]> {
        crate::stack::params(&self.weights, &self.biases)
    }

    /// The same network in another float type (each value converted through `f64`).
    pub fn cast<U: Float>(&self) -> Mlp<U> {
        let (weights, biases) = crate::stack::cast(&self.weights, &self.biases);
        Mlp {
            spec: self.spec.clone(),
            seed: self.seed,
            weights,
            biases,
        }
    }
}

/// Which matrices carry the signal backward (docs/theory.md §2).
#[derive(Clone, Copy, Debug)]
pub enum Feedback<'a, T: Float> {
    /// `D^l = φ'(H^l) ⊙ (m_{l+1} · D^{l+1} · M^{l+1})`, with `M^{l+1}` at index `l` shaped like
    /// `W^{l+1}` (`n_{l+1} × n_l`) and `m_{l+1} = spec.param.weight_multiplier(n_l)`.
    /// The slice has `L` entries like [`Mlp::weights`]; index 0 (`M^1`) is never read and may
    /// have any shape (e.g. `0 × 0`). Backprop: the live weights; Align rules: the frozen
    /// initial weights; feedback alignment: fixed random matrices.
    Weights(&'a [Mat<T>]),
    /// Direct feedback alignment: `D^l = φ'(H^l) ⊙ (E · D^lᵀ)` with `D^l` (`n_l × C`) at index
    /// `l − 1`, for `l = 1..L−1` (so the slice has `L − 1` entries).
    Direct(&'a [Mat<T>]),
    /// Only the output layer gets a signal (`D^L = E`); nothing else is computed.
    ReadoutOnly,
}

/// A backward pathway: the feedback matrices plus the trace whose pre-activations give `φ'(H^l)`
/// (the live trace, or the trace of the network frozen at initialisation on the same input).
#[derive(Clone, Copy, Debug)]
pub struct Pathway<'a, T: Float> {
    /// The matrices that carry the signal.
    pub feedback: Feedback<'a, T>,
    /// `φ'` is evaluated at `derivatives.pre`.
    pub derivatives: &'a Trace<T>,
}

/// Backward signals `D^1..D^L` at indices `0..L`, each `B × n_l`; `D^L = E`.
/// `None` for layers the pathway does not reach ([`Feedback::ReadoutOnly`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Signals<T: Float> {
    /// `D^l` at index `l − 1`.
    pub d: Vec<Option<Mat<T>>>,
}

impl<T: Float> Signals<T> {
    /// Empty buffers for [`backward_signals_into`].
    pub fn new() -> Self {
        Signals { d: Vec::new() }
    }
}

impl<T: Float> Default for Signals<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Computes the backward signals of a pathway (formulas in [`Feedback`]).
///
/// `err` is `∂L/∂f` per sample (`B × C`), already containing the loss normalisation (as returned
/// by [`crate::Loss::evaluate`]). Cost: `2·B·Σ_{l<L} n_{l+1}·n_l` flops for
/// [`Feedback::Weights`], `2·B·C·Σ_{l<L} n_l` for [`Feedback::Direct`].
///
/// # Panics
/// If the pathway's matrices, the derivative trace and `err` do not have the shapes the spec
/// implies. They are built by the program from the model, not read from user input.
pub fn backward_signals<T: Float>(
    spec: &MlpSpec,
    pathway: &Pathway<'_, T>,
    err: &Mat<T>,
) -> Signals<T> {
    let mut s = Signals::new();
    backward_signals_into(spec, pathway, err, &mut s);
    s
}

/// [`backward_signals`] writing into existing buffers (reused when the shapes match).
///
/// # Panics
/// As [`backward_signals`].
pub fn backward_signals_into<T: Float>(
    spec: &MlpSpec,
    pathway: &Pathway<'_, T>,
    err: &Mat<T>,
    out: &mut Signals<T>,
) {
    // Nothing to do once a signal is final: the caller wants them all.
    backward_pass(
        "backward_signals",
        spec,
        FusedFeedback::Fixed(pathway.feedback),
        pathway.derivatives,
        err,
        &mut out.d,
        &mut [],
        |_, _, _| {},
    );
    let top = out.d[spec.depth() - 1].get_or_insert_with(|| Mat::zeros(0, 0));
    ensure_shape(top, err.nrows(), spec.output_dim);
    top.copy_from(err);
}

/// The one backward loop of every MLP rule (see the module docs).
///
/// For `l = L, L−1, …, 1`, with `D^L = err`: forms `D^{l−1}` in `signals[l − 2]` through the
/// pathway (`m_l · D^l · M^l` for weight feedback, `E · D_{l−1}ᵀ` for direct feedback) gated by
/// `φ'(derivatives.pre[l − 2])`, then calls `layer_done(l, D^l, live)`: `D^l` is final and the
/// signal below it no longer needs `M^l`. The loop stops after the first layer, or after the
/// output layer for [`Feedback::ReadoutOnly`], whose unreached slots are set to `None`.
///
/// `signals` is resized to `L` entries; entry `L − 1` (`D^L`, which is `err` itself) is left as
/// it is. With [`FusedFeedback::Live`], `M^l` is `live[l − 1]`, read before `layer_done` may
/// change it (the fused SGD step updates `W^l` there); otherwise `live` is only passed through.
///
/// `who` names the public caller in the panic messages.
///
/// # Panics
/// If `err`, the derivative trace or the feedback matrices do not have the shapes `spec` implies
/// (internal invariants: they are built by the program from the model, not read from user input).
pub(crate) fn backward_pass<T: Float>(
    who: &str,
    spec: &MlpSpec,
    feedback: FusedFeedback<'_, T>,
    derivatives: &Trace<T>,
    err: &Mat<T>,
    signals: &mut Vec<Option<Mat<T>>>,
    live: &mut [Mat<T>],
    mut layer_done: impl FnMut(usize, &Mat<T>, &mut [Mat<T>]),
) {
    let depth = spec.depth();
    let widths = spec.widths();
    let batch = err.nrows();
    assert_eq!(
        err.shape(),
        (batch, spec.output_dim),
        "{who}: error is {}×{}, the spec has {} outputs",
        err.nrows(),
        err.ncols(),
        spec.output_dim
    );
    match feedback {
        FusedFeedback::Live => assert_eq!(
            live.len(),
            depth,
            "{who}: the live pathway needs {depth} weights, got {}",
            live.len()
        ),
        FusedFeedback::Fixed(Feedback::Weights(ms)) => assert_eq!(
            ms.len(),
            depth,
            "{who}: Feedback::Weights needs {depth} matrices, got {}",
            ms.len()
        ),
        FusedFeedback::Fixed(Feedback::Direct(ds)) => assert_eq!(
            ds.len(),
            depth - 1,
            "{who}: Feedback::Direct needs {} matrices, got {}",
            depth - 1,
            ds.len()
        ),
        FusedFeedback::Fixed(Feedback::ReadoutOnly) => {}
    }
    let pre = &derivatives.pre;
    if !matches!(feedback, FusedFeedback::Fixed(Feedback::ReadoutOnly)) {
        assert_eq!(
            pre.len(),
            depth,
            "{who}: derivative trace has {} layers, the spec {depth}",
            pre.len()
        );
    }
    signals.resize_with(depth, || None);
    for l in (1..=depth).rev() {
        let (lower, upper) = signals.split_at_mut(l - 1);
        let d: &Mat<T> = if l == depth {
            err
        } else {
            upper[0].as_ref().expect("D^l was formed one step above")
        };
        // The product that carries the signal below: `alpha · left · op(right)`.
        let mult = || T::cast(spec.param.weight_multiplier(widths[l - 1]));
        let product = match feedback {
            _ if l == 1 => None,
            FusedFeedback::Fixed(Feedback::ReadoutOnly) => None,
            FusedFeedback::Live => Some((mult(), d, &live[l - 1], Op::N)),
            FusedFeedback::Fixed(Feedback::Weights(ms)) => Some((mult(), d, &ms[l - 1], Op::N)),
            FusedFeedback::Fixed(Feedback::Direct(ds)) => Some((T::one(), err, &ds[l - 2], Op::T)),
        };
        let reached_below = product.is_some();
        if let Some((alpha, left, right, op)) = product {
            let below = lower[l - 2].get_or_insert_with(|| Mat::zeros(0, 0));
            ensure_shape(below, batch, widths[l - 1]);
            gemm(alpha, left, Op::N, right, op, T::zero(), below);
            let h = &pre[l - 2];
            assert_eq!(
                h.shape(),
                below.shape(),
                "{who}: derivative trace layer {} is {}×{}, signal is {}×{}",
                l - 1,
                h.nrows(),
                h.ncols(),
                below.nrows(),
                below.ncols()
            );
            spec.activation
                .mul_derivative(h.as_slice(), below.as_mut_slice());
        } else {
            // nothing reaches the layers below (readout only, or the first layer)
            lower.fill(None);
        }
        layer_done(l, d, live);
        if !reached_below {
            break;
        }
    }
}

/// Parameter gradients (or rule updates before the `−lr`): `None` where no signal arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct Grads<T: Float> {
    /// `∂W^l` at index `l − 1`, shaped like `W^l`.
    pub weights: Vec<Option<Mat<T>>>,
    /// `∂b^l` at index `l − 1`.
    pub biases: Vec<Option<Vec<T>>>,
}

impl<T: Float> Grads<T> {
    /// Empty buffers for [`gradients_into`].
    pub fn new() -> Self {
        Grads {
            weights: Vec::new(),
            biases: Vec::new(),
        }
    }

    /// The gradient tensors in the order of [`Mlp::params_mut`]: `∂W^1, ∂b^1, …, ∂W^L, ∂b^L`.
    pub fn as_slices(&self) -> Vec<Option<&[T]>> {
        let mut out = Vec::with_capacity(2 * self.weights.len());
        for (w, b) in self.weights.iter().zip(&self.biases) {
            out.push(w.as_ref().map(|w| w.as_slice()));
            out.push(b.as_ref().map(|b| b.as_slice()));
        }
        out
    }

    /// Squared Euclidean norm of all present gradients, accumulated in `f64`.
    pub fn norm_squared(&self) -> f64 {
        self.as_slices()
            .into_iter()
            .flatten()
            .map(|g| reduce::dot(g, g))
            .sum()
    }
}

impl<T: Float> Default for Grads<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Gradients from signals and an activity trace:
/// `∂W^l = m_l · D^lᵀ · A^{l−1}` (`n_l × n_{l−1}`) and `∂b^l = s · Σ_rows D^l`, with
/// `m_l = spec.param.weight_multiplier(n_{l−1})`, `s = spec.param.bias_multiplier()`.
///
/// `activities` is the live trace (backprop and most rules) or the frozen one (Align-zero).
/// Cost `2·B·Σ_l n_l·n_{l−1}` flops.
///
/// # Panics
/// If the signals and the activities disagree in shape with each other or the spec.
pub fn gradients<T: Float>(
    spec: &MlpSpec,
    signals: &Signals<T>,
    activities: &Trace<T>,
) -> Grads<T> {
    let mut g = Grads::new();
    gradients_into(spec, signals, activities, &mut g);
    g
}

/// [`gradients`] writing into existing buffers (reused when the shapes match).
///
/// # Panics
/// As [`gradients`].
pub fn gradients_into<T: Float>(
    spec: &MlpSpec,
    signals: &Signals<T>,
    activities: &Trace<T>,
    out: &mut Grads<T>,
) {
    let depth = spec.depth();
    let widths = spec.widths();
    assert_eq!(
        signals.d.len(),
        depth,
        "gradients: {} signals for {depth} layers",
        signals.d.len()
    );
    assert_eq!(
        activities.act.len(),
        depth,
        "gradients: activity trace has {} layers, the spec {depth}",
        activities.act.len()
    );
    out.weights.resize_with(depth, || None);
    out.biases.resize_with(depth, || None);
    let s = T::cast(spec.param.bias_multiplier());
    for l in 1..=depth {
        let Some(d) = &signals.d[l - 1] else {
            out.weights[l - 1] = None;
            out.biases[l - 1] = None;
            continue;
        };
        let a = &activities.act[l - 1];
        let gw = out.weights[l - 1].get_or_insert_with(|| Mat::zeros(0, 0));
        ensure_shape(gw, widths[l], widths[l - 1]);
        let m = T::cast(spec.param.weight_multiplier(widths[l - 1]));
        gemm(m, d, Op::T, a, Op::N, T::zero(), gw);
        let mut gb = reduce::column_sums(d);
        if s != T::one() {
            elementwise::scale(s, &mut gb);
        }
        out.biases[l - 1] = Some(gb);
    }
}

/// Checksums of row `i` of `x`: `[Σ_j x_ij, Σ_j (j+1)·x_ij]` in `f64`.
pub(crate) fn row_sums<T: Float>(x: &Mat<T>, i: usize) -> [f64; 2] {
    let mut s = [0.0, 0.0];
    for j in 0..x.ncols() {
        let v = x[(i, j)].as_f64();
        s[0] += v;
        s[1] += (j + 1) as f64 * v;
    }
    s
}

/// The MLP's feedback matrices for a [`FeedbackPath`] (`None`: its own live weights).
fn mlp_feedback<'a, T: Float>(path: FeedbackPath<'a, Mlp<T>>) -> Option<Feedback<'a, T>> {
    match path {
        FeedbackPath::Live => None,
        FeedbackPath::Weights(net) => Some(Feedback::Weights(&net.weights)),
        FeedbackPath::Fixed(b) => Some(Feedback::Weights(b)),
        FeedbackPath::Direct(d) => Some(Feedback::Direct(d)),
        FeedbackPath::ReadoutOnly => Some(Feedback::ReadoutOnly),
    }
}

/// The fully connected network as a [`Network`]: feedback matrices `B^l` / `D^l` (index `l − 1`),
/// the fused SGD step of [`crate::fused`], and a frozen-trace cache of `H^1..H^{L−1}` (and
/// `A^1..A^{L−1}` with activities).
///
/// Feedback alignment's `B^l` (`l = 2..L`, shaped like `W^l`; index 0 is `0 × 0`, never read)
/// come from `SeedStream::new(seed).child("fa")`, stream `"layer{l}.feedback"`, entries
/// `N(0, weight_init_std(n_{l−1})²)`, so `m_l·B^l` has the distribution of `m_l·W^l_0`. Direct
/// feedback's `D^l` (`l = 1..L−1`, `n_l × C`) come from `child("dfa")`, stream
/// `"layer{l}.direct"`, entries `N(0, s_w²/n_l)` — the distribution of `(m_L W^L_0)ᵀ` for a
/// readout reading `n_l` units, so DFA's signals have backprop's scale at initialisation.
impl<T: Float> Network for Mlp<T> {
    type Scalar = T;
    type Spec = MlpSpec;
    type Input = Mat<T>;
    type Trace = Trace<T>;
    type Error = Mat<T>;
    type Signals = Signals<T>;
    type Grads = Grads<T>;
    type FixedFeedback = Vec<Mat<T>>;
    type Buffers = FusedBuffers<T>;
    const NAME: &'static str = "mlp";
    const CACHE_CHUNK: usize = 512;

    fn from_seed(spec: &MlpSpec, seed: u64) -> Result<Self, ModelError> {
        Mlp::new(spec, seed)
    }

    fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn validate_spec(spec: &MlpSpec) -> Result<(), ModelError> {
        spec.validate()
    }

    fn forward_into(&self, x: &Mat<T>, trace: &mut Trace<T>) -> Result<(), ModelError> {
        Mlp::forward_into(self, x, trace)
    }

    fn forward_rows(
        &self,
        x: &Mat<T>,
        start: usize,
        rows: usize,
        trace: &mut Trace<T>,
    ) -> Result<(), ModelError> {
        Mlp::forward_into(self, &x.rows(start, rows).into_owned(), trace)
    }

    fn batch_size(x: &Mat<T>) -> usize {
        x.nrows()
    }

    fn example_checksum(x: &Mat<T>, i: usize) -> [f64; 2] {
        row_sums(x, i)
    }

    fn check_step(
        &self,
        who: &str,
        x: &Mat<T>,
        live: Option<&Trace<T>>,
        err: &Mat<T>,
    ) -> Result<(), ModelError> {
        let spec = &self.spec;
        let b = x.nrows();
        let shape =
            |what: &str, expected: (usize, usize), got: (usize, usize)| ModelError::ShapeMismatch {
                what: format!("{who}: {what}"),
                expected: format!("{} × {}", expected.0, expected.1),
                got: format!("{} × {}", got.0, got.1),
            };
        if x.ncols() != spec.input_dim {
            return Err(shape("input batch", (b, spec.input_dim), x.shape()));
        }
        if err.shape() != (b, spec.output_dim) {
            return Err(shape("output error", (b, spec.output_dim), err.shape()));
        }
        let Some(live) = live else {
            return Ok(());
        };
        let depth = spec.depth();
        let widths = spec.widths();
        if live.pre.len() != depth || live.act.len() != depth {
            return Err(ModelError::ShapeMismatch {
                what: format!("{who}: live trace"),
                expected: format!("{depth} layers"),
                got: format!("{} layers", live.pre.len()),
            });
        }
        for l in 1..=depth {
            if live.pre[l - 1].shape() != (b, widths[l]) {
                return Err(shape(
                    &format!("live pre-activation H^{l}"),
                    (b, widths[l]),
                    live.pre[l - 1].shape(),
                ));
            }
            if live.act[l - 1].shape() != (b, widths[l - 1]) {
                return Err(shape(
                    &format!("live activity A^{}", l - 1),
                    (b, widths[l - 1]),
                    live.act[l - 1].shape(),
                ));
            }
        }
        Ok(())
    }

    fn fa_feedback(spec: &MlpSpec, seed: u64) -> Vec<Mat<T>> {
        crate::stack::fa_matrices(&spec.layer_dims(), spec.param, seed)
    }

    fn dfa_feedback(spec: &MlpSpec, seed: u64) -> Vec<Mat<T>> {
        let stream = SeedStream::new(seed).child("dfa");
        let widths = spec.widths();
        let w_std = spec.param.w_std();
        (1..spec.depth())
            .map(|l| {
                stream.gaussian_matrix(
                    &format!("layer{l}.direct"),
                    widths[l],
                    spec.output_dim,
                    w_std / (widths[l] as f64).sqrt(),
                )
            })
            .collect()
    }

    fn check_fixed_feedback(spec: &MlpSpec, feedback: &Vec<Mat<T>>) -> Result<(), ModelError> {
        crate::stack::check_fa_matrices(&spec.layer_dims(), feedback)
    }

    fn backward_signals_into(
        &self,
        feedback: FeedbackPath<'_, Self>,
        derivatives: &Trace<T>,
        err: &Mat<T>,
        out: &mut Signals<T>,
    ) {
        let feedback = mlp_feedback(feedback).unwrap_or(Feedback::Weights(&self.weights));
        let pathway = Pathway {
            feedback,
            derivatives,
        };
        backward_signals_into(&self.spec, &pathway, err, out);
    }

    fn gradients_into(
        spec: &MlpSpec,
        signals: &Signals<T>,
        _err: &Mat<T>,
        activities: &Trace<T>,
        out: &mut Grads<T>,
    ) {
        gradients_into(spec, signals, activities, out);
    }

    fn sgd_update(
        &mut self,
        feedback: FeedbackPath<'_, Self>,
        derivatives: &Trace<T>,
        activities: &Trace<T>,
        err: &Mat<T>,
        lr: T,
        buffers: &mut FusedBuffers<T>,
    ) {
        // `None` is the network's own weights, read inside the fused pass before each update
        let feedback = mlp_feedback(feedback).map_or(FusedFeedback::Live, FusedFeedback::Fixed);
        sgd_update_fused(self, feedback, derivatives, activities, err, lr, buffers);
    }

    fn params(&self) -> Vec<&[T]> {
        Mlp::params(self)
    }

    fn params_mut(&mut self) -> Vec<&mut [T]> {
        Mlp::params_mut(self)
    }

    fn grad_slices(grads: &Grads<T>) -> Vec<Option<&[T]>> {
        grads.as_slices()
    }

    fn cached_values(spec: &MlpSpec, _x: &Mat<T>, with_activities: bool) -> usize {
        let hidden: usize = spec.hidden.iter().sum();
        hidden * if with_activities { 2 } else { 1 }
    }

    fn cache_parts(trace: &Trace<T>, with_activities: bool) -> Vec<&Mat<T>> {
        let depth = trace.pre.len();
        let mut parts: Vec<&Mat<T>> = trace.pre[..depth - 1].iter().collect();
        if with_activities {
            parts.extend(&trace.act[1..depth]);
        }
        parts
    }

    fn restore_trace(
        &self,
        x: &Mat<T>,
        with_activities: bool,
        fill: &mut dyn FnMut(usize, &mut Mat<T>),
        trace: &mut Trace<T>,
    ) {
        let depth = self.depth();
        trace.pre.resize_with(depth, || Mat::zeros(0, 0));
        trace.act.resize_with(depth, || Mat::zeros(0, 0));
        ensure_shape(&mut trace.act[0], x.nrows(), x.ncols());
        trace.act[0].copy_from(x);
        for l in 1..depth {
            fill(l - 1, &mut trace.pre[l - 1]);
            if with_activities {
                fill(depth - 1 + l - 1, &mut trace.act[l]);
            }
        }
        // The output pre-activation H^L is never read by a rule (D^L = E); keep it empty.
        trace.pre[depth - 1] = Mat::zeros(0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BiasInit, Parameterization};
    use widealign_tensor::Activation;

    #[test]
    fn wrong_input_width_names_both_shapes() {
        let spec = MlpSpec::new(4, vec![3], 2, Activation::Relu);
        let net = Mlp::<f32>::new(&spec, 0).unwrap();
        let x = Mat::<f32>::zeros(7, 5);
        let msg = net.forward(&x).unwrap_err().to_string();
        assert!(msg.contains("B × 4") && msg.contains("7 × 5"), "{msg}");
        let msg = net.predict(&x).unwrap_err().to_string();
        assert!(msg.contains("B × 4") && msg.contains("7 × 5"), "{msg}");
    }

    #[test]
    fn layers_have_their_own_streams() {
        let a = MlpSpec::new(4, vec![3, 5], 2, Activation::Relu);
        let b = MlpSpec::new(4, vec![3, 6], 2, Activation::Relu);
        let na = Mlp::<f64>::new(&a, 9).unwrap();
        let nb = Mlp::<f64>::new(&b, 9).unwrap();
        assert_eq!(na.weights[0], nb.weights[0]);
        assert_ne!(na.weights[1].as_slice()[..3], na.weights[0].as_slice()[..3]);
        assert_eq!(Mlp::<f64>::new(&a, 9).unwrap(), na);
    }

    #[test]
    fn forward_matches_naive_formula_and_predict() {
        for param in [
            Parameterization::Ntk {
                w_std: 1.3,
                b_std: 0.2,
            },
            Parameterization::Standard {
                w_std: 1.3,
                b_std: 0.2,
            },
        ] {
            let spec = MlpSpec::new(3, vec![4, 5], 2, Activation::Tanh)
                .with_param(param)
                .with_bias_init(BiasInit::Gaussian);
            let net = Mlp::<f64>::new(&spec, 3).unwrap();
            let x: Mat<f64> = SeedStream::new(5).gaussian_matrix("x", 6, 3, 1.0);
            let trace = net.forward(&x).unwrap();
            let mut a = x.clone();
            for l in 0..3 {
                let w = &net.weights[l];
                let m = param.weight_multiplier(w.ncols());
                let mut h = &a * w.transpose() * m;
                for mut row in h.row_iter_mut() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v += param.bias_multiplier() * net.biases[l][j];
                    }
                }
                assert!((&h - &trace.pre[l]).abs().max() < 1e-12);
                a = h.map(f64::tanh);
            }
            assert_eq!(net.predict(&x).unwrap(), *trace.output());
        }
    }

    #[test]
    fn forward_into_reuses_and_resizes() {
        let spec = MlpSpec::new(3, vec![4], 2, Activation::Erf);
        let net = Mlp::<f32>::new(&spec, 1).unwrap();
        let mut trace = Trace::zeros(&spec, 2);
        for b in [5, 5, 1] {
            let x: Mat<f32> = SeedStream::new(b as u64).gaussian_matrix("x", b, 3, 1.0);
            net.forward_into(&x, &mut trace).unwrap();
            assert_eq!(trace, net.forward(&x).unwrap());
        }
    }

    #[test]
    fn backprop_matches_finite_differences() {
        let spec = MlpSpec::new(3, vec![4, 5], 2, Activation::Tanh)
            .with_bias_init(BiasInit::Gaussian)
            .with_param(Parameterization::Ntk {
                w_std: 1.5,
                b_std: 0.3,
            });
        let net = Mlp::<f64>::new(&spec, 2).unwrap();
        let x: Mat<f64> = SeedStream::new(2).gaussian_matrix("x", 6, 3, 1.0);
        let y: Mat<f64> = SeedStream::new(2).gaussian_matrix("y", 6, 2, 1.0);
        let loss = |n: &Mlp<f64>| {
            crate::Loss::Mse
                .evaluate(&n.predict(&x).unwrap(), &y)
                .unwrap()
                .0
        };
        let t = net.forward(&x).unwrap();
        let (_, err) = crate::Loss::Mse.evaluate(t.output(), &y).unwrap();
        let p = Pathway {
            feedback: Feedback::Weights(&net.weights),
            derivatives: &t,
        };
        let g = gradients(&spec, &backward_signals(&spec, &p, &err), &t);
        let flat: Vec<Vec<f64>> = g.as_slices().iter().map(|s| s.unwrap().to_vec()).collect();
        let h = 1e-6;
        for (k, gk) in flat.iter().enumerate() {
            for i in 0..gk.len() {
                let mut plus = net.clone();
                plus.params_mut()[k][i] += h;
                let mut minus = net.clone();
                minus.params_mut()[k][i] -= h;
                let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                assert!(
                    (fd - gk[i]).abs() < 1e-7,
                    "tensor {k} entry {i}: {fd} vs {}",
                    gk[i]
                );
            }
        }
    }

    #[test]
    fn readout_only_touches_last_layer() {
        let spec = MlpSpec::new(3, vec![4, 4], 2, Activation::Relu);
        let net = Mlp::<f64>::new(&spec, 1).unwrap();
        let x: Mat<f64> = SeedStream::new(2).gaussian_matrix("x", 5, 3, 1.0);
        let t = net.forward(&x).unwrap();
        let err: Mat<f64> = SeedStream::new(3).gaussian_matrix("e", 5, 2, 1.0);
        let p = Pathway {
            feedback: Feedback::ReadoutOnly,
            derivatives: &t,
        };
        let s = backward_signals(&spec, &p, &err);
        assert!(s.d[0].is_none() && s.d[1].is_none());
        let g = gradients(&spec, &s, &t);
        assert!(g.weights[0].is_none() && g.biases[1].is_none());
        let full = gradients(
            &spec,
            &backward_signals(
                &spec,
                &Pathway {
                    feedback: Feedback::Weights(&net.weights),
                    derivatives: &t,
                },
                &err,
            ),
            &t,
        );
        assert_eq!(g.weights[2], full.weights[2]);
        assert_eq!(g.biases[2], full.biases[2]);
    }

    #[test]
    fn direct_feedback_formula() {
        let spec = MlpSpec::new(3, vec![4], 2, Activation::Tanh);
        let net = Mlp::<f64>::new(&spec, 1).unwrap();
        let x: Mat<f64> = SeedStream::new(2).gaussian_matrix("x", 5, 3, 1.0);
        let t = net.forward(&x).unwrap();
        let err: Mat<f64> = SeedStream::new(3).gaussian_matrix("e", 5, 2, 1.0);
        let dmat: Mat<f64> = SeedStream::new(4).gaussian_matrix("d", 4, 2, 1.0);
        let s = backward_signals(
            &spec,
            &Pathway {
                feedback: Feedback::Direct(std::slice::from_ref(&dmat)),
                derivatives: &t,
            },
            &err,
        );
        let expect = (&err * dmat.transpose()).component_mul(&t.pre[0].map(|h| {
            let th = h.tanh();
            1.0 - th * th
        }));
        assert!((s.d[0].as_ref().unwrap() - expect).abs().max() < 1e-12);
    }
}
