//! # widealign-models: the finite networks
//!
//! * [`MlpSpec`] — an architecture, shared with the infinite-width theory (`widealign-ntk`).
//! * [`Network`] — what every model offers the learning rules: a forward trace, backward
//!   signals along a [`FeedbackPath`] (live, frozen, fixed random, direct, none) gated by `φ′`
//!   of a chosen trace, updates from signals × a chosen activity trace, parameter access. The
//!   MLP and the RNN implement it; the rules in `widealign-rules` are written once against it.
//! * [`Mlp`] — a fully connected network in the NTK or standard parameterisation, with a forward
//!   [`Trace`] and a backward pass split in two: [`backward_signals`] through a [`Pathway`] and
//!   [`gradients`] from the signals and a chosen activity trace. Every credit-assignment rule is
//!   one pathway plus one activity choice.
//! * [`Rnn`] — an Elman network ([`RnnSpec`]) with backpropagation through time along an
//!   [`RnnPathway`] (live or frozen recurrent and readout weights and hidden states).
//! * [`Cnn`] — a convolutional network ([`CnnSpec`]: `k × k` convolutions with stride and
//!   SAME/VALID padding, optional parameter-free batch normalisation, global-average-pooling or
//!   flatten readout) on HWC images, convolutions as im2col on the workspace GEMM.
//! * [`Loss`] — the reference MSE (mean over batch and outputs) and softmax cross-entropy;
//!   [`one_hot_targets`] (one-hot − 0.1) and [`accuracy`].
//! * [`sgd_step_fused`] / [`sgd_update_fused`] — plain SGD applied layer by layer inside the
//!   backward pass (the same loop as [`backward_signals`]), bit-identical to gradients + update
//!   but without storing any gradient.
//! * [`Optimizer`] — SGD and bias-corrected Adam over the models' parameter tensors.
//! * [`checkpoint`] — save and load networks bit-exactly ([`Mlp::save`], [`Mlp::load`],
//!   [`Rnn::save`], [`Rnn::load`]), with a self-describing, validated header.
//!
//! Batch convention: one sample per row (`B × features`), as in `widealign-tensor`.
//!
//! ```
//! use widealign_models::{Mlp, MlpSpec};
//! use widealign_tensor::{Activation, Mat};
//! let spec = MlpSpec::new(4, vec![16], 3, Activation::Relu);
//! let net = Mlp::<f32>::new(&spec, 0).unwrap();
//! let out = net.predict(&Mat::zeros(2, 4)).unwrap();
//! assert_eq!(out.shape(), (2, 3));
//! ```

pub mod checkpoint;
pub mod cnn;
mod conv;
mod error;
pub mod fused;
pub mod loss;
pub mod mlp;
pub mod network;
pub mod optim;
pub mod rnn;
pub mod spec;
mod stack;

pub use checkpoint::{inspect as inspect_checkpoint, CheckpointInfo};
pub use cnn::{Cnn, CnnBuffers, CnnSignals, CnnTrace};
pub use error::ModelError;
pub use fused::{sgd_step_fused, sgd_update_fused, FusedBuffers, FusedFeedback};
pub use loss::{accuracy, one_hot_targets, predicted_classes, Loss};
pub use mlp::{
    backward_signals, backward_signals_into, gradients, gradients_into, Feedback, Grads, Mlp,
    Pathway, Signals, Trace,
};
pub use network::{FeedbackPath, Network};
pub use optim::{Optimizer, OptimizerKind};
pub use rnn::{
    rnn_backward_signals, rnn_backward_signals_into, rnn_gradients, rnn_gradients_into, Rnn,
    RnnFeedback, RnnGrads, RnnPathway, RnnSignals, RnnTrace,
};
pub use spec::{
    BiasInit, CnnReadout, CnnSpec, ImageLayout, MlpSpec, Norm, Padding, Parameterization, RnnSpec,
    BATCH_NORM_EPS,
};
