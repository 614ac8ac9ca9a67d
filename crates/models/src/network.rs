//! [`Network`]: what every model (the [`Mlp`](crate::Mlp), the [`Rnn`](crate::Rnn), and any
//! model added later) offers the learning rules.
//!
//! Every credit-assignment rule of docs/theory.md §2 changes each weight by the same form,
//!
//! ```text
//! ΔW = −lr · m · Σ_examples (backward signal) ⊗ (input activity),
//! ```
//!
//! and rules differ in three choices only: **which matrices carry the error back** (a
//! [`FeedbackPath`]: the live weights, another network's weights such as the one frozen at
//! initialisation, fixed random matrices, a direct projection of the output error, or nothing),
//! **whose `φ′` gates it** (the trace passed as `derivatives`), and **whose activities multiply
//! it** (the trace passed as `activities`). A model therefore implements four things:
//!
//! 1. a forward pass into a trace ([`Network::forward_into`]);
//! 2. backward signals along a feedback pathway, `φ′` from a chosen trace
//!    ([`Network::backward_signals_into`]);
//! 3. parameter updates from signals × a chosen activity trace ([`Network::gradients_into`]),
//!    and plain SGD applied directly ([`Network::sgd_update`], fused into the backward pass
//!    where the model can);
//! 4. access to its parameter tensors ([`Network::params_mut`], [`Network::grad_slices`]) for
//!    optimisers and checks,
//!
//! plus the hooks a per-example cache of the frozen network's trace needs
//! ([`Network::cache_parts`], [`Network::restore_trace`]). The rules themselves live once, for
//! every model, in `widealign-rules`.
//!
//! ```
//! use widealign_models::{FeedbackPath, Loss, Mlp, MlpSpec, Network};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! // backprop written against the trait: live weights, live φ′, live activities
//! fn bp_step<M: Network>(net: &mut M, x: &M::Input, err: &M::Error, lr: M::Scalar) {
//!     let mut trace = M::Trace::default();
//!     net.forward_into(x, &mut trace).unwrap();
//!     let mut buffers = M::Buffers::default();
//!     net.sgd_update(FeedbackPath::Live, &trace, &trace, err, lr, &mut buffers);
//! }
//!
//! let spec = MlpSpec::new(3, vec![8], 2, Activation::Tanh);
//! let mut net = Mlp::<f64>::new(&spec, 0).unwrap();
//! let x: Mat<f64> = SeedStream::new(1).gaussian_matrix("x", 5, 3, 1.0);
//! let y: Mat<f64> = SeedStream::new(1).gaussian_matrix("y", 5, 2, 1.0);
//! let (loss0, err) = Loss::Mse.evaluate(&net.predict(&x).unwrap(), &y).unwrap();
//! bp_step(&mut net, &x, &err, 0.1);
//! let (loss1, _) = Loss::Mse.evaluate(&net.predict(&x).unwrap(), &y).unwrap();
//! assert!(loss1 < loss0);
//! ```

use std::fmt::Debug;

use widealign_tensor::{elementwise, Float, Mat};

use crate::ModelError;

/// Which matrices carry the error backward (docs/theory.md §2).
///
/// The same five choices exist for every model; the model decides what they mean for its
/// layers (for the RNN, "the weights" are `W_rec` and `W_out`, and the direct pathway sends each
/// step's output error to that step's hidden units without propagation through time).
#[derive(Debug)]
pub enum FeedbackPath<'a, M: Network> {
    /// The network's own current weights (backprop). A fused SGD step reads each layer's weight
    /// before updating it.
    Live,
    /// The weights of another network of the same architecture (the network frozen at
    /// initialisation, for the Align rules).
    Weights(&'a M),
    /// Fixed matrices shaped like the feedback-carrying weights (feedback alignment).
    Fixed(&'a M::FixedFeedback),
    /// Fixed matrices that project the output error directly onto each hidden layer (direct
    /// feedback alignment).
    Direct(&'a M::FixedFeedback),
    /// No signal below the readout: only the readout parameters learn.
    ReadoutOnly,
}

impl<M: Network> Clone for FeedbackPath<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: Network> Copy for FeedbackPath<'_, M> {}

/// A trainable network: the operations the credit-assignment rules are written against.
///
/// Implemented by [`Mlp`](crate::Mlp), [`Rnn`](crate::Rnn) and [`Cnn`](crate::Cnn); `docs/extending.md` shows how to
/// add a model. Methods that take traces or errors panic if their shapes disagree with the
/// model (they are built by the program from the model, not read from user input);
/// [`Network::check_step`] turns a caller's shapes into a [`ModelError`] first.
pub trait Network: Clone + Debug + PartialEq + Sized {
    /// The float type of parameters and activities.
    type Scalar: Float;
    /// The architecture (shared with the infinite-width theory where it exists).
    type Spec: Clone + Debug + PartialEq;
    /// One batch of inputs: `Mat` (`B × n_0`, one example per row) or a time-major sequence.
    type Input: ?Sized;
    /// The stored forward pass: what backward signals and updates read.
    type Trace: Clone + Debug + Default;
    /// The output error `∂L/∂f` of a batch (already containing the loss normalisation).
    type Error: ?Sized;
    /// Backward signals of every layer (or time step), `None` where a pathway does not reach.
    type Signals: Clone + Debug + Default;
    /// Parameter updates before `−lr` (gradient-shaped), `None` where a rule trains nothing.
    type Grads: Clone + Debug + PartialEq + Default;
    /// Fixed feedback matrices of feedback alignment and direct feedback alignment.
    type FixedFeedback: Clone + Debug;
    /// Reusable buffers of [`Network::sgd_update`].
    type Buffers: Clone + Debug + Default;
    /// `"mlp"`, `"rnn"`, …, for messages.
    const NAME: &'static str;
    /// Examples per forward pass when a frozen-trace cache is filled (a fixed number, so the
    /// cached values do not depend on anything but the data).
    const CACHE_CHUNK: usize;

    /// Draws a network from `spec` and `seed` (deterministically: the same pair gives the same
    /// network bit for bit).
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] if the spec does not validate.
    fn from_seed(spec: &Self::Spec, seed: u64) -> Result<Self, ModelError>;

    /// The architecture.
    fn spec(&self) -> &Self::Spec;

    /// The seed the network was drawn from.
    fn seed(&self) -> u64;

    /// Checks a spec.
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] naming the offending field.
    fn validate_spec(spec: &Self::Spec) -> Result<(), ModelError>;

    /// Forward pass into `trace`, reusing its buffers when the shapes match.
    ///
    /// # Errors
    /// [`ModelError`] if `x` does not fit the network.
    fn forward_into(&self, x: &Self::Input, trace: &mut Self::Trace) -> Result<(), ModelError>;

    /// Forward pass on the examples `start..start + rows` of `x` into `trace`.
    ///
    /// # Errors
    /// As [`Network::forward_into`].
    fn forward_rows(
        &self,
        x: &Self::Input,
        start: usize,
        rows: usize,
        trace: &mut Self::Trace,
    ) -> Result<(), ModelError>;

    /// Number of examples in a batch.
    fn batch_size(x: &Self::Input) -> usize;

    /// Two `f64` checksums of example `i` of `x` (`[Σ v, Σ (position+1)·v]` over its values), so a
    /// cache can check that a batch's rows are the examples it holds.
    fn example_checksum(x: &Self::Input, i: usize) -> [f64; 2];

    /// Checks the shapes of one training step before a rule reads it: the batch `x`, the live
    /// trace (if the rule reads it) and the output error. `who` prefixes the messages.
    ///
    /// # Errors
    /// [`ModelError::ShapeMismatch`] naming the part and both shapes.
    fn check_step(
        &self,
        who: &str,
        x: &Self::Input,
        live: Option<&Self::Trace>,
        err: &Self::Error,
    ) -> Result<(), ModelError>;

    /// Feedback alignment's fixed matrices, drawn from the `"fa"` child stream of `seed` with the
    /// scale of the weights they stand in for.
    fn fa_feedback(spec: &Self::Spec, seed: u64) -> Self::FixedFeedback;

    /// Direct feedback alignment's fixed matrices, drawn from the `"dfa"` child stream of `seed`.
    fn dfa_feedback(spec: &Self::Spec, seed: u64) -> Self::FixedFeedback;

    /// Checks user-given feedback-alignment matrices against the spec.
    ///
    /// # Errors
    /// [`ModelError::ShapeMismatch`] naming the matrix.
    fn check_fixed_feedback(
        spec: &Self::Spec,
        feedback: &Self::FixedFeedback,
    ) -> Result<(), ModelError>;

    /// Backward signals of every layer: the output error `err` carried back along `feedback`
    /// (with [`FeedbackPath::Live`], this network's weights), gated by `φ′` of `derivatives`.
    fn backward_signals_into(
        &self,
        feedback: FeedbackPath<'_, Self>,
        derivatives: &Self::Trace,
        err: &Self::Error,
        out: &mut Self::Signals,
    );

    /// Parameter updates (before `−lr`) from the signals, the output error and an activity
    /// trace: every weight's update is its signal times its input activity (docs/theory.md §2).
    fn gradients_into(
        spec: &Self::Spec,
        signals: &Self::Signals,
        err: &Self::Error,
        activities: &Self::Trace,
        out: &mut Self::Grads,
    );

    /// One plain-SGD step `θ ← θ − lr·g` of the rule given by (`feedback`, `derivatives`,
    /// `activities`), applied to this network. Bit-identical to
    /// [`Network::backward_signals_into`] + [`Network::gradients_into`] +
    /// [`Network::apply_update`] with the weights before the step (models may fuse the update into
    /// the backward pass, as the MLP does).
    fn sgd_update(
        &mut self,
        feedback: FeedbackPath<'_, Self>,
        derivatives: &Self::Trace,
        activities: &Self::Trace,
        err: &Self::Error,
        lr: Self::Scalar,
        buffers: &mut Self::Buffers,
    );

    /// The parameter tensors in a stable order (the order of [`Network::grad_slices`]).
    fn params(&self) -> Vec<&[Self::Scalar]>;

    /// The parameter tensors, mutable, in the order of [`Network::params`].
    fn params_mut(&mut self) -> Vec<&mut [Self::Scalar]>;

    /// The update tensors in the order of [`Network::params`] (`None`: not trained).
    fn grad_slices(grads: &Self::Grads) -> Vec<Option<&[Self::Scalar]>>;

    /// Plain gradient step `θ ← θ − lr·g` for every tensor whose update is `Some`.
    ///
    /// # Panics
    /// If an update's length differs from its tensor's (a programming error).
    fn apply_update(&mut self, grads: &Self::Grads, lr: Self::Scalar) {
        let slices = Self::grad_slices(grads);
        for (p, g) in self.params_mut().into_iter().zip(slices) {
            if let Some(g) = g {
                elementwise::axpy(-lr, g, p);
            }
        }
    }

    /// Whether one example's trace depends on that example alone (so a frozen-trace cache can
    /// hold per-example values). `false` for models whose forward pass mixes the batch, such as
    /// the CNN with batch normalisation: the rules then compute the frozen trace on every batch.
    fn per_example_trace(spec: &Self::Spec) -> bool {
        let _ = spec;
        true
    }

    /// Values per example that a frozen-trace cache holds for the batch shape of `x` (the
    /// parts of [`Network::cache_parts`]).
    fn cached_values(spec: &Self::Spec, x: &Self::Input, with_activities: bool) -> usize;

    /// The per-example matrices of a trace (one example per row) that a frozen-trace cache
    /// stores: those `φ′` reads, then, if `with_activities`, the activities an update reads.
    fn cache_parts(trace: &Self::Trace, with_activities: bool) -> Vec<&Mat<Self::Scalar>>;

    /// Rebuilds this network's trace on the batch `x` from cached parts: `fill(k, dst)` writes
    /// part `k` (in the order of [`Network::cache_parts`]) of the batch's examples into `dst`.
    /// Parts the cache does not hold and no rule reads (the outputs) are left empty.
    fn restore_trace(
        &self,
        x: &Self::Input,
        with_activities: bool,
        fill: &mut dyn FnMut(usize, &mut Mat<Self::Scalar>),
        trace: &mut Self::Trace,
    );
}
