//! # widealign
//!
//! Train wide neural networks without backpropagation through the current weights, and check
//! the theory that says why this works.
//!
//! In the neural-tangent-kernel regime, gradient descent changes each layer's weights along the
//! layer's own input-activity correlations, weighted by the error sent back to that layer
//! (Boopathy & Fiete, *How to Train Your Wide Neural Network Without Backprop: An Input-Weight
//! Alignment Perspective*, ICML 2022). The Align rules exploit this: they send the error back
//! through the network frozen at its initialisation.
//!
//! This facade only re-exports the layers, each a crate with one job:
//!
//! | module | crate | job |
//! |---|---|---|
//! | [`tensor`] | `widealign-tensor` | matrices, GEMM, activations, seeded random streams |
//! | [`data`] | `widealign-data` | datasets: IDX, CIFAR-10, CSV, embedded digits, Add task, teacher–student |
//! | [`models`] | `widealign-models` | MLP and RNN, forward traces, backward pathways, losses, optimisers |
//! | [`rules`] | `widealign-rules` | the seven credit-assignment rules and the training loop |
//! | [`ntk`] | `widealign-ntk` | infinite-width kernels, weight-dynamics predictions, alignment |
//! | [`experiments`] | `widealign-experiments` | the reference experiment plans, alignment and dynamics runs, the sweep engine |
//!
//! ```
//! use widealign::prelude::*;
//! let spec = MlpSpec::uniform(8, 16, 2, 3, Activation::Erf);
//! assert_eq!(spec.depth(), 3);
//! ```

pub use widealign_data as data;
pub use widealign_experiments as experiments;
pub use widealign_models as models;
pub use widealign_ntk as ntk;
pub use widealign_rules as rules;
pub use widealign_tensor as tensor;

/// The names most programs need, in one import: `use widealign::prelude::*;`.
pub mod prelude {
    pub use widealign_models::{BiasInit, MlpSpec, ModelError, Parameterization};
    pub use widealign_tensor::{rng::SeedStream, Activation, Float, Mat};
}
