//! The Elman recurrent network and backpropagation through time along a pathway.
//!
//! Sequences are time-major: `xs[t − 1]` is the batch `X_t` (`B × n_in`, one sample per row) of
//! time step `t = 1..T`. With the multipliers of [`RnnSpec`] (`m_in`, `m_rec`, `m_out`, `s`):
//!
//! ```text
//! H_t = m_in X_t W_inᵀ + m_rec R_{t−1} W_recᵀ + s 1bᵀ      (B × n)
//! R_t = φ(H_t),   R_0 = 1 r_0ᵀ
//! Y_t = m_out R_t W_outᵀ + s 1b_outᵀ                       (B × C)
//! ```
//!
//! The loss is summed over time steps, so `E_t = ∂L/∂Y_t` comes from
//! [`crate::Loss::evaluate_sequence`]. Backpropagation through time along an [`RnnPathway`]
//! (feedback matrices `W̃_rec`, `W̃_out` and the trace whose `φ'(H_t)` is used):
//!
//! ```text
//! D_t = φ'(H_t) ⊙ ( m_out E_t W̃_out + m_rec D_{t+1} W̃_rec )     (D_{T+1} = 0)
//! ∂L/∂R_0 = m_rec D_1 W̃_rec
//! ```
//!
//! and the gradients from the signals and a chosen activity trace (states `R_t`, inputs `X_t`):
//!
//! ```text
//! ∂W_in  = m_in  Σ_t D_tᵀ X_t         ∂W_rec = m_rec Σ_t D_tᵀ R_{t−1}     ∂b     = s Σ_t Σ_rows D_t
//! ∂W_out = m_out Σ_t E_tᵀ R_t         ∂b_out = s Σ_t Σ_rows E_t          ∂r_0   = Σ_rows ∂L/∂R_0
//! ```
//!
//! Backprop through time: live `W_rec`, `W_out`, live trace, live activities. Align-ada: frozen
//! `W_rec`, `W_out` and the frozen trace for `φ'`, live activities; Align-zero: frozen everything
//! including the activities; readout only: [`RnnFeedback::ReadoutOnly`].
//!
//! ```
//! use widealign_models::{rnn_backward_signals, rnn_gradients, Loss, Rnn, RnnFeedback, RnnPathway, RnnSpec};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = RnnSpec::new(1, 16, 1, Activation::Tanh);
//! let mut net = Rnn::<f64>::new(&spec, 0).unwrap();
//! let s = SeedStream::new(1);
//! let xs: Vec<Mat<f64>> = (0..4).map(|t| s.gaussian_matrix(&format!("x{t}"), 3, 1, 1.0)).collect();
//! let ys: Vec<Mat<f64>> = (0..4).map(|t| s.gaussian_matrix(&format!("y{t}"), 3, 1, 1.0)).collect();
//!
//! let trace = net.forward(&xs).unwrap();
//! let (loss0, errs) = Loss::Mse.evaluate_sequence(&trace.outputs, &ys).unwrap();
//! let pathway = RnnPathway {
//!     feedback: RnnFeedback::Weights { w_rec: &net.w_rec, w_out: &net.w_out },
//!     derivatives: &trace,
//! };
//! let signals = rnn_backward_signals(&spec, &pathway, &errs);
//! let grads = rnn_gradients(&spec, &signals, &errs, &trace);
//! net.apply_update(&grads, 0.01);
//! let (loss1, _) = Loss::Mse.evaluate_sequence(&net.predict(&xs).unwrap(), &ys).unwrap();
//! assert!(loss1 < loss0);
//! ```

use widealign_tensor::{
    elementwise,
    gemm::{gemm, Op},
    reduce,
    rng::SeedStream,
    Float, Mat,
};

use crate::mlp::ensure_shape;
use crate::{BiasInit, FeedbackPath, ModelError, Network, RnnSpec};

/// An Elman network with its parameters (formulas in the module docs).
///
/// Memory: `n·n_in + n² + n + C·n + C + n` values of `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rnn<T: Float> {
    /// The architecture.
    pub spec: RnnSpec,
    /// The seed the parameters were drawn from.
    pub seed: u64,
    /// Input weights `W_in` (`n × n_in`).
    pub w_in: Mat<T>,
    /// Recurrent weights `W_rec` (`n × n`).
    pub w_rec: Mat<T>,
    /// Hidden bias `b` (length `n`).
    pub b: Vec<T>,
    /// Readout weights `W_out` (`C × n`).
    pub w_out: Mat<T>,
    /// Readout bias `b_out` (length `C`).
    pub b_out: Vec<T>,
    /// Trainable initial state `r_0` (length `n`, zero at initialisation).
    pub r0: Vec<T>,
}

/// The stored state of one forward pass through a sequence.
///
/// Memory: `B · (T·n_in + (2T+1)·n + T·C)` values of `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnTrace<T: Float> {
    /// Inputs `X_1..X_T` (index `t − 1`), each `B × n_in`.
    pub inputs: Vec<Mat<T>>,
    /// Pre-activations `H_1..H_T` (index `t − 1`), each `B × n`.
    pub pre: Vec<Mat<T>>,
    /// States `R_0..R_T` (index `t`), each `B × n`; `R_0` repeats `r_0` in every row.
    pub states: Vec<Mat<T>>,
    /// Outputs `Y_1..Y_T` (index `t − 1`), each `B × C`.
    pub outputs: Vec<Mat<T>>,
}

impl<T: Float> RnnTrace<T> {
    /// An empty trace (buffers for [`Rnn::forward_into`]).
    pub fn new() -> Self {
        RnnTrace {
            inputs: Vec::new(),
            pre: Vec::new(),
            states: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Number of time steps `T`.
    pub fn steps(&self) -> usize {
        self.pre.len()
    }
}

impl<T: Float> Default for RnnTrace<T> {
    fn default() -> Self {
        Self::new()
    }
}

fn resize_mats<T: Float>(v: &mut Vec<Mat<T>>, len: usize, rows: usize, cols: usize) {
    v.resize_with(len, || Mat::zeros(0, 0));
    v.iter_mut().for_each(|m| ensure_shape(m, rows, cols));
}

impl<T: Float> Rnn<T> {
    /// Draws a network from `seed`: `W_in`, `W_rec`, `W_out`, `b`, `b_out` from the streams of
    /// those names under `SeedStream::new(seed).child("rnn")` (standard deviations as in
    /// [`RnnSpec`]; biases zero under [`BiasInit::Zero`]), and `r_0 = 0`.
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] if the spec does not validate.
    pub fn new(spec: &RnnSpec, seed: u64) -> Result<Self, ModelError> {
        spec.validate()?;
        let s = SeedStream::new(seed).child("rnn");
        let (n_in, n, c) = (spec.input_dim, spec.width, spec.output_dim);
        let p = spec.param;
        let bias = |name: &str, len: usize| match spec.bias_init {
            BiasInit::Zero => vec![T::zero(); len],
            BiasInit::Gaussian => s.gaussian_vec(name, len, p.bias_init_std()),
        };
        Ok(Rnn {
            spec: spec.clone(),
            seed,
            w_in: s.gaussian_matrix("w_in", n, n_in, p.weight_init_std(n_in)),
            w_rec: s.gaussian_matrix("w_rec", n, n, p.weight_init_std(n)),
            b: bias("b", n),
            w_out: s.gaussian_matrix("w_out", c, n, spec.readout_init_std()),
            b_out: bias("b_out", c),
            r0: vec![T::zero(); n],
        })
    }

    fn check_inputs(&self, xs: &[Mat<T>], what: &str) -> Result<usize, ModelError> {
        let Some(first) = xs.first() else {
            return Err(ModelError::Empty(format!(
                "{what}: a sequence of zero time steps"
            )));
        };
        let batch = first.nrows();
        for (t, x) in xs.iter().enumerate() {
            if x.shape() != (batch, self.spec.input_dim) {
                return Err(ModelError::shape(
                    format!("{what} input at time step {}", t + 1),
                    format!("{batch} × {} (B × n_in)", self.spec.input_dim),
                    x.shape(),
                ));
            }
        }
        Ok(batch)
    }

    /// `h ← m_in x W_inᵀ + m_rec r W_recᵀ + s 1bᵀ`.
    fn step_pre(&self, x: &Mat<T>, r: &Mat<T>, h: &mut Mat<T>) {
        let sp = &self.spec;
        gemm(
            T::cast(sp.input_multiplier()),
            x,
            Op::N,
            &self.w_in,
            Op::T,
            T::zero(),
            h,
        );
        gemm(
            T::cast(sp.recurrent_multiplier()),
            r,
            Op::N,
            &self.w_rec,
            Op::T,
            T::one(),
            h,
        );
        elementwise::add_row_vector(h, &self.b, T::cast(sp.param.bias_multiplier()));
    }

    /// `y ← m_out r W_outᵀ + s 1b_outᵀ`.
    fn readout(&self, r: &Mat<T>, y: &mut Mat<T>) {
        let sp = &self.spec;
        gemm(
            T::cast(sp.readout_multiplier()),
            r,
            Op::N,
            &self.w_out,
            Op::T,
            T::zero(),
            y,
        );
        elementwise::add_row_vector(y, &self.b_out, T::cast(sp.param.bias_multiplier()));
    }

    fn initial_state(&self, batch: usize, r: &mut Mat<T>) {
        ensure_shape(r, batch, self.spec.width);
        for (col, &v) in r.as_mut_slice().chunks_mut(batch.max(1)).zip(&self.r0) {
            col.fill(v);
        }
    }

    /// Forward pass through a sequence keeping inputs, pre-activations, states and outputs.
    ///
    /// Cost `2·B·T·(n·n_in + n² + C·n)` flops; memory as in [`RnnTrace`].
    ///
    /// # Errors
    /// [`ModelError::Empty`] for `T = 0`; [`ModelError::ShapeMismatch`] naming the time step and
    /// both shapes if some `X_t` is not `B × n_in` (with the same `B` at every step).
    pub fn forward(&self, xs: &[Mat<T>]) -> Result<RnnTrace<T>, ModelError> {
        let mut trace = RnnTrace::new();
        self.forward_into(xs, &mut trace)?;
        Ok(trace)
    }

    /// [`Rnn::forward`] into an existing trace, reusing its buffers when the shapes match.
    ///
    /// # Errors
    /// As [`Rnn::forward`].
    pub fn forward_into(&self, xs: &[Mat<T>], trace: &mut RnnTrace<T>) -> Result<(), ModelError> {
        let batch = self.check_inputs(xs, "Rnn::forward")?;
        let steps = xs.len();
        let (n, c) = (self.spec.width, self.spec.output_dim);
        trace.inputs.resize_with(steps, || Mat::zeros(0, 0));
        for (dst, x) in trace.inputs.iter_mut().zip(xs) {
            ensure_shape(dst, x.nrows(), x.ncols());
            dst.copy_from(x);
        }
        resize_mats(&mut trace.pre, steps, batch, n);
        resize_mats(&mut trace.states, steps + 1, batch, n);
        resize_mats(&mut trace.outputs, steps, batch, c);
        self.initial_state(batch, &mut trace.states[0]);
        for t in 1..=steps {
            let (before, after) = trace.states.split_at_mut(t);
            let h = &mut trace.pre[t - 1];
            self.step_pre(&xs[t - 1], &before[t - 1], h);
            let r = &mut after[0];
            self.spec
                .activation
                .apply_into(h.as_slice(), r.as_mut_slice());
            self.readout(r, &mut trace.outputs[t - 1]);
        }
        Ok(())
    }

    /// Inference: the outputs `Y_1..Y_T` without keeping a trace.
    ///
    /// # Errors
    /// As [`Rnn::forward`].
    pub fn predict(&self, xs: &[Mat<T>]) -> Result<Vec<Mat<T>>, ModelError> {
        let batch = self.check_inputs(xs, "Rnn::predict")?;
        let mut r = Mat::zeros(batch, self.spec.width);
        self.initial_state(batch, &mut r);
        let mut h = Mat::zeros(batch, self.spec.width);
        let mut out = Vec::with_capacity(xs.len());
        for x in xs {
            self.step_pre(x, &r, &mut h);
            self.spec
                .activation
                .apply_into(h.as_slice(), r.as_mut_slice());
            let mut y = Mat::zeros(batch, self.spec.output_dim);
            self.readout(&r, &mut y);
            out.push(y);
        }
        Ok(out)
    }

    /// The parameter tensors in the stable order `W_in, W_rec, b, W_out, b_out, r_0`
    /// (matrices in column-major storage). [`RnnGrads::as_slices`] uses the same order.
    pub fn params_mut(&mut self) -> Vec<&mut [T]> {
        vec![
            self.w_in.as_mut_slice(),
            self.w_rec.as_mut_slice(),
            self.b.as_mut_slice(),
            self.w_out.as_mut_slice(),
            self.b_out.as_mut_slice(),
            self.r0.as_mut_slice(),
        ]
    }

    /// The parameter tensors, read-only, in the order of [`Rnn::params_mut`].
    pub fn params(&self) -> Vec<&[T]> {
        vec![
            self.w_in.as_slice(),
            self.w_rec.as_slice(),
            self.b.as_slice(),
            self.w_out.as_slice(),
            self.b_out.as_slice(),
            self.r0.as_slice(),
        ]
    }

    /// Plain gradient step `θ ← θ − lr·g` for every parameter whose gradient is `Some`.
    ///
    /// # Panics
    /// If a gradient's length differs from its parameter's (a programming error).
    pub fn apply_update(&mut self, grads: &RnnGrads<T>, lr: T) {
        let slices = grads.as_slices();
        for (p, g) in self.params_mut().into_iter().zip(slices) {
            if let Some(g) = g {
                elementwise::axpy(-lr, g, p);
            }
        }
    }

    /// The same network in another float type (each value converted through `f64`).
    pub fn cast<U: Float>(&self) -> Rnn<U> {
        let m = |w: &Mat<T>| w.map(|v| U::cast(v.as_f64()));
        let v = |b: &[T]| b.iter().map(|x| U::cast(x.as_f64())).collect();
        Rnn {
            spec: self.spec.clone(),
            seed: self.seed,
            w_in: m(&self.w_in),
            w_rec: m(&self.w_rec),
            b: v(&self.b),
            w_out: m(&self.w_out),
            b_out: v(&self.b_out),
            r0: v(&self.r0),
        }
    }
}

/// Which matrices carry the error backward through time.
#[derive(Clone, Copy, Debug)]
pub enum RnnFeedback<'a, T: Float> {
    /// `D_t = φ'(H_t) ⊙ (m_out E_t W̃_out + m_rec D_{t+1} W̃_rec)` with `W̃_rec` (`n × n`) and
    /// `W̃_out` (`C × n`): the live weights (BPTT) or the frozen initial ones (Align rules).
    Weights {
        /// `W̃_rec`, shaped like `W_rec`.
        w_rec: &'a Mat<T>,
        /// `W̃_out`, shaped like `W_out`.
        w_out: &'a Mat<T>,
    },
    /// No hidden signal: only `W_out`, `b_out` learn.
    ReadoutOnly,
}

/// A backward pathway through time: feedback matrices plus the trace whose `φ'(H_t)` is used.
#[derive(Clone, Copy, Debug)]
pub struct RnnPathway<'a, T: Float> {
    /// The matrices that carry the signal.
    pub feedback: RnnFeedback<'a, T>,
    /// `φ'` is evaluated at `derivatives.pre` (live or frozen trace on the same input).
    pub derivatives: &'a RnnTrace<T>,
}

/// Backward signals through time.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnSignals<T: Float> {
    /// `D_1..D_T` (index `t − 1`), each `B × n`; `None` for [`RnnFeedback::ReadoutOnly`].
    pub d: Vec<Option<Mat<T>>>,
    /// `∂L/∂R_0 = m_rec D_1 W̃_rec` per sample (`B × n`); `None` for readout only.
    pub r0: Option<Mat<T>>,
}

impl<T: Float> RnnSignals<T> {
    /// Empty buffers for [`rnn_backward_signals_into`].
    pub fn new() -> Self {
        RnnSignals {
            d: Vec::new(),
            r0: None,
        }
    }
}

impl<T: Float> Default for RnnSignals<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Backpropagation through time along a pathway (formula in [`RnnFeedback::Weights`]).
///
/// `errs[t − 1] = E_t = ∂L/∂Y_t` (`B × C`). Cost `2·B·T·(C·n + n²)` flops.
///
/// # Panics
/// If `errs`, the pathway's matrices and the derivative trace disagree in shape with each other
/// or the spec (they are built by the program, not read from user input).
pub fn rnn_backward_signals<T: Float>(
    spec: &RnnSpec,
    pathway: &RnnPathway<'_, T>,
    errs: &[Mat<T>],
) -> RnnSignals<T> {
    let mut s = RnnSignals::new();
    rnn_backward_signals_into(spec, pathway, errs, &mut s);
    s
}

/// [`rnn_backward_signals`] into existing buffers (reused when the shapes match).
///
/// # Panics
/// As [`rnn_backward_signals`].
pub fn rnn_backward_signals_into<T: Float>(
    spec: &RnnSpec,
    pathway: &RnnPathway<'_, T>,
    errs: &[Mat<T>],
    out: &mut RnnSignals<T>,
) {
    let steps = errs.len();
    let n = spec.width;
    let (w_rec, w_out) = match pathway.feedback {
        RnnFeedback::ReadoutOnly => {
            out.d.clear();
            out.d.resize_with(steps, || None);
            out.r0 = None;
            return;
        }
        RnnFeedback::Weights { w_rec, w_out } => (w_rec, w_out),
    };
    assert_eq!(
        pathway.derivatives.pre.len(),
        steps,
        "rnn_backward_signals: derivative trace has {} steps, errors {steps}",
        pathway.derivatives.pre.len()
    );
    assert!(
        w_rec.shape() == (n, n) && w_out.shape() == (spec.output_dim, n),
        "rnn_backward_signals: feedback W_rec {:?}, W_out {:?} for width {n}, {} outputs",
        w_rec.shape(),
        w_out.shape(),
        spec.output_dim
    );
    let m_out = T::cast(spec.readout_multiplier());
    let m_rec = T::cast(spec.recurrent_multiplier());
    let batch = errs.first().map_or(0, |e| e.nrows());
    out.d.resize_with(steps, || None);
    for t in (1..=steps).rev() {
        let (lower, upper) = out.d.split_at_mut(t);
        let d = lower[t - 1].get_or_insert_with(|| Mat::zeros(0, 0));
        ensure_shape(d, batch, n);
        gemm(m_out, &errs[t - 1], Op::N, w_out, Op::N, T::zero(), d);
        if let Some(Some(d_next)) = upper.first() {
            gemm(m_rec, d_next, Op::N, w_rec, Op::N, T::one(), d);
        }
        let h = &pathway.derivatives.pre[t - 1];
        assert_eq!(
            h.shape(),
            d.shape(),
            "rnn_backward_signals: derivative trace step {t} is {:?}, signal is {:?}",
            h.shape(),
            d.shape()
        );
        spec.activation
            .mul_derivative(h.as_slice(), d.as_mut_slice());
    }
    let r0 = out.r0.get_or_insert_with(|| Mat::zeros(0, 0));
    ensure_shape(r0, batch, n);
    match out.d.first() {
        Some(Some(d1)) => gemm(m_rec, d1, Op::N, w_rec, Op::N, T::zero(), r0),
        _ => r0.fill(T::zero()),
    }
}

/// Gradients (or rule updates before the `−lr`) of an [`Rnn`]; `None` where no signal arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnGrads<T: Float> {
    /// `∂W_in` (`n × n_in`).
    pub w_in: Option<Mat<T>>,
    /// `∂W_rec` (`n × n`).
    pub w_rec: Option<Mat<T>>,
    /// `∂b` (length `n`).
    pub b: Option<Vec<T>>,
    /// `∂W_out` (`C × n`).
    pub w_out: Option<Mat<T>>,
    /// `∂b_out` (length `C`).
    pub b_out: Option<Vec<T>>,
    /// `∂r_0` (length `n`).
    pub r0: Option<Vec<T>>,
}

impl<T: Float> RnnGrads<T> {
    /// Empty buffers for [`rnn_gradients_into`] (every tensor `None`).
    pub fn new() -> Self {
        RnnGrads {
            w_in: None,
            w_rec: None,
            b: None,
            w_out: None,
            b_out: None,
            r0: None,
        }
    }

    /// The gradient tensors in the order of [`Rnn::params_mut`].
    pub fn as_slices(&self) -> Vec<Option<&[T]>> {
        vec![
            self.w_in.as_ref().map(|m| m.as_slice()),
            self.w_rec.as_ref().map(|m| m.as_slice()),
            self.b.as_deref(),
            self.w_out.as_ref().map(|m| m.as_slice()),
            self.b_out.as_deref(),
            self.r0.as_deref(),
        ]
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

impl<T: Float> Default for RnnGrads<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Rows per stacked product in [`sum_tn`]: time steps are grouped so that one GEMM sums over
/// about this many samples (a single cache block of the GEMM library, which sums `k ≤ 512` in one
/// pass).
const STACK_ROWS: usize = 512;

/// Σ_t (alpha · aᵀ_t b_t) into `out` (`out` reshaped to `a.ncols() × b.ncols()`).
///
/// Consecutive time steps are stacked (`[a_t; a_{t+1}; …]`, about [`STACK_ROWS`] rows) so one
/// GEMM with `k = G·B` replaces `G` GEMMs with `k = B` that would each read and write the whole
/// `rows × cols` output: for the recurrent weight of width 1024 at `B = 50` this is 10 products
/// instead of 100. The stacking buffers hold `STACK_ROWS × (a.ncols() + b.ncols())` values.
fn sum_tn<'a, T: Float>(
    alpha: T,
    pairs: impl Iterator<Item = (&'a Mat<T>, &'a Mat<T>)>,
    rows: usize,
    cols: usize,
    out: &mut Option<Mat<T>>,
) {
    let g = out.get_or_insert_with(|| Mat::zeros(0, 0));
    ensure_shape(g, rows, cols);
    let pairs: Vec<(&Mat<T>, &Mat<T>)> = pairs.collect();
    let batch = pairs.first().map_or(0, |(a, _)| a.nrows());
    if batch == 0 || pairs.is_empty() {
        g.fill(T::zero());
        return;
    }
    let group = (STACK_ROWS / batch).max(1);
    let mut beta = T::zero();
    if group == 1 {
        for (a, b) in pairs {
            gemm(alpha, a, Op::T, b, Op::N, beta, g);
            beta = T::one();
        }
        return;
    }
    let mut sa = Mat::<T>::zeros(0, 0);
    let mut sb = Mat::<T>::zeros(0, 0);
    for chunk in pairs.chunks(group) {
        let k = chunk.len() * batch;
        ensure_shape(&mut sa, k, rows);
        ensure_shape(&mut sb, k, cols);
        for (i, (a, b)) in chunk.iter().enumerate() {
            assert!(
                a.shape() == (batch, rows) && b.shape() == (batch, cols),
                "rnn_gradients: step factors are {:?} and {:?}, expected {batch}×{rows} and {batch}×{cols}",
                a.shape(),
                b.shape()
            );
            sa.rows_mut(i * batch, batch).copy_from(*a);
            sb.rows_mut(i * batch, batch).copy_from(*b);
        }
        gemm(alpha, &sa, Op::T, &sb, Op::N, beta, g);
        beta = T::one();
    }
}

/// `s · Σ_t Σ_rows M_t`, accumulated in `f64`.
fn sum_columns<'a, T: Float>(s: f64, ms: impl Iterator<Item = &'a Mat<T>>, len: usize) -> Vec<T> {
    let mut acc = vec![0.0f64; len];
    for m in ms {
        let rows = m.nrows();
        if rows == 0 {
            continue;
        }
        for (a, col) in acc.iter_mut().zip(m.as_slice().chunks(rows)) {
            *a += col.iter().map(|v| v.as_f64()).sum::<f64>();
        }
    }
    acc.into_iter().map(|v| T::cast(s * v)).collect()
}

/// Gradients from the signals, the output errors and an activity trace (formulas in the module
/// docs). The readout gradients always come from `errs` and `activities.states`; the hidden
/// ones are `None` when the signals are (readout only). Cost `2·B·T·(n·n_in + n² + C·n)` flops.
///
/// # Panics
/// If the signals, errors and activities disagree in shape.
pub fn rnn_gradients<T: Float>(
    spec: &RnnSpec,
    signals: &RnnSignals<T>,
    errs: &[Mat<T>],
    activities: &RnnTrace<T>,
) -> RnnGrads<T> {
    let mut g = RnnGrads::new();
    rnn_gradients_into(spec, signals, errs, activities, &mut g);
    g
}

/// [`rnn_gradients`] into existing buffers (reused when the shapes match).
///
/// # Panics
/// As [`rnn_gradients`].
pub fn rnn_gradients_into<T: Float>(
    spec: &RnnSpec,
    signals: &RnnSignals<T>,
    errs: &[Mat<T>],
    activities: &RnnTrace<T>,
    out: &mut RnnGrads<T>,
) {
    let steps = errs.len();
    assert_eq!(
        activities.steps(),
        steps,
        "rnn_gradients: activity trace has {} steps, errors {steps}",
        activities.steps()
    );
    let (n_in, n, c) = (spec.input_dim, spec.width, spec.output_dim);
    let s = spec.param.bias_multiplier();
    sum_tn(
        T::cast(spec.readout_multiplier()),
        errs.iter().zip(&activities.states[1..]),
        c,
        n,
        &mut out.w_out,
    );
    out.b_out = Some(sum_columns(s, errs.iter(), c));
    let ds: Option<Vec<&Mat<T>>> = signals.d.iter().map(|d| d.as_ref()).collect();
    let (Some(ds), Some(r0)) = (ds.filter(|d| !d.is_empty()), signals.r0.as_ref()) else {
        out.w_in = None;
        out.w_rec = None;
        out.b = None;
        out.r0 = None;
        return;
    };
    assert_eq!(
        ds.len(),
        steps,
        "rnn_gradients: {} signals, {steps} errors",
        ds.len()
    );
    sum_tn(
        T::cast(spec.input_multiplier()),
        ds.iter().copied().zip(&activities.inputs),
        n,
        n_in,
        &mut out.w_in,
    );
    sum_tn(
        T::cast(spec.recurrent_multiplier()),
        ds.iter().copied().zip(&activities.states[..steps]),
        n,
        n,
        &mut out.w_rec,
    );
    out.b = Some(sum_columns(s, ds.iter().copied(), n));
    out.r0 = Some(reduce::column_sums(r0));
}

/// Checksums of sequence `i` over every step: `[Σ x, Σ (position+1)·x]` in `f64`, positions
/// counted through the steps (time-major).
fn seq_sums<T: Float>(xs: &[Mat<T>], i: usize) -> [f64; 2] {
    let mut s = [0.0, 0.0];
    let mut offset = 0.0;
    for x in xs {
        let [a, b] = crate::mlp::row_sums(x, i);
        s[0] += a;
        s[1] += b + offset * a;
        offset += x.ncols() as f64;
    }
    s
}

/// The Elman network as a [`Network`], trained through time.
///
/// The feedback-carrying weights are `W_rec` and `W_out` ([`RnnFeedback::Weights`]); fixed
/// feedback is the pair `(W̃_rec, W̃_out)`. Feedback alignment draws `B_rec`, `B_out` from
/// `SeedStream::new(seed).child("fa")` (streams `"w_rec.feedback"`, `"w_out.feedback"`) with the
/// standard deviations of `W_rec` and `W_out`. Direct feedback alignment is read as "every time
/// step's hidden units receive a fixed random projection of that step's output error, and nothing
/// is propagated through time": the pair `(0, D)` with `D` from `child("dfa")`, stream
/// `"w_out.direct"`, so `D_t = φ'(H_t) ⊙ (m_out E_t D)`. Under every pathway the readout gets its
/// exact gradient from the errors and the activity states. The frozen-trace cache holds
/// `H_1..H_T` (and `R_1..R_T` with activities).
impl<T: Float> Network for Rnn<T> {
    type Scalar = T;
    type Spec = RnnSpec;
    type Input = [Mat<T>];
    type Trace = RnnTrace<T>;
    type Error = [Mat<T>];
    type Signals = RnnSignals<T>;
    type Grads = RnnGrads<T>;
    type FixedFeedback = (Mat<T>, Mat<T>);
    type Buffers = (RnnSignals<T>, RnnGrads<T>);
    const NAME: &'static str = "rnn";
    const CACHE_CHUNK: usize = 64;

    fn from_seed(spec: &RnnSpec, seed: u64) -> Result<Self, ModelError> {
        Rnn::new(spec, seed)
    }

    fn spec(&self) -> &RnnSpec {
        &self.spec
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn validate_spec(spec: &RnnSpec) -> Result<(), ModelError> {
        spec.validate()
    }

    fn forward_into(&self, xs: &[Mat<T>], trace: &mut RnnTrace<T>) -> Result<(), ModelError> {
        Rnn::forward_into(self, xs, trace)
    }

    fn forward_rows(
        &self,
        xs: &[Mat<T>],
        start: usize,
        rows: usize,
        trace: &mut RnnTrace<T>,
    ) -> Result<(), ModelError> {
        let chunk: Vec<Mat<T>> = xs
            .iter()
            .map(|x| x.rows(start, rows).into_owned())
            .collect();
        Rnn::forward_into(self, &chunk, trace)
    }

    fn batch_size(xs: &[Mat<T>]) -> usize {
        xs.first().map_or(0, |x| x.nrows())
    }

    fn example_checksum(xs: &[Mat<T>], i: usize) -> [f64; 2] {
        seq_sums(xs, i)
    }

    fn check_step(
        &self,
        who: &str,
        xs: &[Mat<T>],
        live: Option<&RnnTrace<T>>,
        errs: &[Mat<T>],
    ) -> Result<(), ModelError> {
        let steps = xs.len();
        let mismatch = |what: String, expected: String, got: String| ModelError::ShapeMismatch {
            what: format!("{who}: {what}"),
            expected,
            got,
        };
        let live_steps = live.map_or(steps, |l| l.steps());
        if errs.len() != steps || live_steps != steps {
            return Err(mismatch(
                "errors and live trace".into(),
                format!("{steps} time steps (the input's length)"),
                format!("{} error steps, {live_steps} trace steps", errs.len()),
            ));
        }
        let b = Self::batch_size(xs);
        let (n, c) = (self.spec.width, self.spec.output_dim);
        for t in 0..steps {
            if xs[t].shape() != (b, self.spec.input_dim) {
                return Err(mismatch(
                    format!("input at time step {}", t + 1),
                    format!("{b} × {}", self.spec.input_dim),
                    format!("{} × {}", xs[t].nrows(), xs[t].ncols()),
                ));
            }
            if errs[t].shape() != (b, c) {
                return Err(mismatch(
                    format!("error at time step {}", t + 1),
                    format!("{b} × {c}"),
                    format!("{} × {}", errs[t].nrows(), errs[t].ncols()),
                ));
            }
            if let Some(live) = live {
                if live.pre[t].shape() != (b, n) || live.states[t + 1].shape() != (b, n) {
                    return Err(mismatch(
                        format!("live trace at time step {}", t + 1),
                        format!("{b} × {n}"),
                        format!("{:?}", live.pre[t].shape()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn fa_feedback(spec: &RnnSpec, seed: u64) -> (Mat<T>, Mat<T>) {
        let (n, c) = (spec.width, spec.output_dim);
        let s = SeedStream::new(seed).child("fa");
        (
            s.gaussian_matrix("w_rec.feedback", n, n, spec.param.weight_init_std(n)),
            s.gaussian_matrix("w_out.feedback", c, n, spec.readout_init_std()),
        )
    }

    fn dfa_feedback(spec: &RnnSpec, seed: u64) -> (Mat<T>, Mat<T>) {
        let (n, c) = (spec.width, spec.output_dim);
        let s = SeedStream::new(seed).child("dfa");
        (
            Mat::zeros(n, n),
            s.gaussian_matrix("w_out.direct", c, n, spec.readout_init_std()),
        )
    }

    fn check_fixed_feedback(
        spec: &RnnSpec,
        (b_rec, b_out): &(Mat<T>, Mat<T>),
    ) -> Result<(), ModelError> {
        let (n, c) = (spec.width, spec.output_dim);
        for (what, m, shape) in [("B_rec", b_rec, (n, n)), ("B_out", b_out, (c, n))] {
            if m.shape() != shape {
                return Err(ModelError::ShapeMismatch {
                    what: format!("feedback matrix {what}"),
                    expected: format!("{} × {}", shape.0, shape.1),
                    got: format!("{} × {}", m.nrows(), m.ncols()),
                });
            }
        }
        Ok(())
    }

    fn backward_signals_into(
        &self,
        feedback: FeedbackPath<'_, Self>,
        derivatives: &RnnTrace<T>,
        errs: &[Mat<T>],
        out: &mut RnnSignals<T>,
    ) {
        let weights = |w_rec, w_out| RnnFeedback::Weights { w_rec, w_out };
        let feedback = match feedback {
            FeedbackPath::Live => weights(&self.w_rec, &self.w_out),
            FeedbackPath::Weights(net) => weights(&net.w_rec, &net.w_out),
            FeedbackPath::Fixed((r, o)) | FeedbackPath::Direct((r, o)) => weights(r, o),
            FeedbackPath::ReadoutOnly => RnnFeedback::ReadoutOnly,
        };
        let pathway = RnnPathway {
            feedback,
            derivatives,
        };
        rnn_backward_signals_into(&self.spec, &pathway, errs, out);
    }

    fn gradients_into(
        spec: &RnnSpec,
        signals: &RnnSignals<T>,
        errs: &[Mat<T>],
        activities: &RnnTrace<T>,
        out: &mut RnnGrads<T>,
    ) {
        rnn_gradients_into(spec, signals, errs, activities, out);
    }

    fn sgd_update(
        &mut self,
        feedback: FeedbackPath<'_, Self>,
        derivatives: &RnnTrace<T>,
        activities: &RnnTrace<T>,
        errs: &[Mat<T>],
        lr: T,
        (signals, grads): &mut (RnnSignals<T>, RnnGrads<T>),
    ) {
        Network::backward_signals_into(self, feedback, derivatives, errs, signals);
        rnn_gradients_into(&self.spec, signals, errs, activities, grads);
        Rnn::apply_update(self, grads, lr);
    }

    fn params(&self) -> Vec<&[T]> {
        Rnn::params(self)
    }

    fn param_layout(&self) -> Vec<(String, Vec<usize>)> {
        Self::tensor_list(&self.spec)
    }

    fn params_mut(&mut self) -> Vec<&mut [T]> {
        Rnn::params_mut(self)
    }

    fn grad_slices(grads: &RnnGrads<T>) -> Vec<Option<&[T]>> {
        grads.as_slices()
    }

    fn cached_values(spec: &RnnSpec, xs: &[Mat<T>], with_activities: bool) -> usize {
        xs.len() * spec.width * if with_activities { 2 } else { 1 }
    }

    fn cache_parts(trace: &RnnTrace<T>, with_activities: bool) -> Vec<&Mat<T>> {
        let mut parts: Vec<&Mat<T>> = trace.pre.iter().collect();
        if with_activities {
            parts.extend(&trace.states[1..]);
        }
        parts
    }

    fn restore_trace(
        &self,
        xs: &[Mat<T>],
        with_activities: bool,
        fill: &mut dyn FnMut(usize, &mut Mat<T>),
        trace: &mut RnnTrace<T>,
    ) {
        let steps = xs.len();
        trace.pre.resize_with(steps, || Mat::zeros(0, 0));
        for (t, dst) in trace.pre.iter_mut().enumerate() {
            fill(t, dst);
        }
        trace.inputs.resize_with(steps, || Mat::zeros(0, 0));
        for (dst, x) in trace.inputs.iter_mut().zip(xs) {
            ensure_shape(dst, x.nrows(), x.ncols());
            dst.copy_from(x);
        }
        if with_activities {
            trace.states.resize_with(steps + 1, || Mat::zeros(0, 0));
            let b = Self::batch_size(xs);
            let r0 = &mut trace.states[0];
            ensure_shape(r0, b, self.spec.width);
            for (j, &v) in self.r0.iter().enumerate() {
                r0.column_mut(j).fill(v);
            }
            for t in 0..steps {
                fill(steps + t, &mut trace.states[t + 1]);
            }
        } else {
            trace.states.clear();
        }
        // Outputs are never read by a rule.
        trace.outputs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Loss, Parameterization};
    use widealign_tensor::Activation;

    fn seq(name: &str, steps: usize, b: usize, d: usize) -> Vec<Mat<f64>> {
        let s = SeedStream::new(7);
        (0..steps)
            .map(|t| s.gaussian_matrix(&format!("{name}{t}"), b, d, 1.0))
            .collect()
    }

    #[test]
    fn bptt_matches_finite_differences_including_r0() {
        for param in [
            Parameterization::Ntk {
                w_std: 1.4,
                b_std: 0.3,
            },
            Parameterization::Standard {
                w_std: 1.4,
                b_std: 0.3,
            },
        ] {
            let spec = RnnSpec::new(2, 5, 3, Activation::Tanh)
                .with_param(param)
                .with_bias_init(BiasInit::Gaussian);
            let mut net = Rnn::<f64>::new(&spec, 3).unwrap();
            net.r0 = SeedStream::new(1).gaussian_vec("r0", 5, 0.5);
            let xs = seq("x", 4, 3, 2);
            let ys = seq("y", 4, 3, 3);
            let loss = |n: &Rnn<f64>| {
                Loss::Mse
                    .evaluate_sequence(&n.predict(&xs).unwrap(), &ys)
                    .unwrap()
                    .0
            };
            let t = net.forward(&xs).unwrap();
            let (_, errs) = Loss::Mse.evaluate_sequence(&t.outputs, &ys).unwrap();
            let p = RnnPathway {
                feedback: RnnFeedback::Weights {
                    w_rec: &net.w_rec,
                    w_out: &net.w_out,
                },
                derivatives: &t,
            };
            let g = rnn_gradients(&spec, &rnn_backward_signals(&spec, &p, &errs), &errs, &t);
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
                        (fd - gk[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                        "tensor {k} entry {i}: {fd} vs {}",
                        gk[i]
                    );
                }
            }
        }
    }

    #[test]
    fn readout_only_and_shape_errors() {
        let spec = RnnSpec::new(2, 4, 1, Activation::Relu);
        let net = Rnn::<f32>::new(&spec, 0).unwrap();
        let xs: Vec<Mat<f32>> = vec![Mat::zeros(3, 2), Mat::zeros(3, 3)];
        let msg = net.forward(&xs).unwrap_err().to_string();
        assert!(msg.contains("time step 2") && msg.contains("3 × 2") && msg.contains("3 × 3"));
        assert!(net.forward(&[]).is_err());
        let xs: Vec<Mat<f32>> = vec![Mat::from_element(3, 2, 1.0); 3];
        let t = net.forward(&xs).unwrap();
        assert_eq!(t.outputs, net.predict(&xs).unwrap());
        let errs = vec![Mat::from_element(3, 1, 0.5f32); 3];
        let p = RnnPathway {
            feedback: RnnFeedback::ReadoutOnly,
            derivatives: &t,
        };
        let g = rnn_gradients(&spec, &rnn_backward_signals(&spec, &p, &errs), &errs, &t);
        assert!(g.w_in.is_none() && g.w_rec.is_none() && g.b.is_none() && g.r0.is_none());
        assert!(g.w_out.is_some() && g.b_out.is_some());
    }
}
