//! # widealign-rules: credit-assignment rules and the training loop
//!
//! Every rule of docs/theory.md §2 changes a weight by the same form,
//!
//! ```text
//! ΔW^l = −lr · m_l · Σ_i d^l_i (a^{l−1}_i)ᵀ,     Δb^l = −lr · s_b · Σ_i d^l_i,     d^L = e (live error)
//! ```
//!
//! and rules differ only in the backward signal `d^l` and the input activity `a^{l−1}`:
//!
//! | rule ([`RuleKind`]) | `d^l` for `l < L` | activity |
//! |---|---|---|
//! | `bp` | `φ'(h^l) ⊙ m_{l+1} W^{l+1}ᵀ d^{l+1}` | live `a` |
//! | `align-prop` | `φ'(h^l) ⊙ m_{l+1} W_0^{l+1}ᵀ d^{l+1}` | live `a` |
//! | `align-ada` | `φ'(h_0^l) ⊙ m_{l+1} W_0^{l+1}ᵀ d^{l+1}` | live `a` |
//! | `align-zero` | `φ'(h_0^l) ⊙ m_{l+1} W_0^{l+1}ᵀ d^{l+1}` | frozen `a_0` |
//! | `fa` | `φ'(h^l) ⊙ m_{l+1} B^{l+1}ᵀ d^{l+1}` (fixed random `B`) | live `a` |
//! | `dfa` | `φ'(h^l) ⊙ D^l e` (fixed random `D^l`) | live `a` |
//! | `readout` | — (only `W^L`, `b^L` learn) | live `a` |
//!
//! (`W_0, h_0, a_0`: the network frozen at its initialisation, on the same input.) So a rule is a
//! recipe ([`RuleKind::recipe`], the one table that defines the rules): where the error travels
//! back ([`FeedbackSource`]), whose `φ′` and whose activities ([`TraceSource`]). One generic
//! [`Rule`] follows the recipe for every model that implements
//! `widealign-models`' [`Network`] (the MLP and the RNN today), and each model's backward loop
//! exists once, in `widealign-models`. At initialisation the Align rules coincide with backprop;
//! Align-zero's update is the gradient of the network linearised at initialisation; Align-prop is
//! FA with `B = W_0` (all checked in `tests/identities.rs`).
//!
//! [`train`] runs a configured experiment ([`TrainConfig`]) on a `widealign-data`
//! [`Dataset`](widealign_data::Dataset): seeded shuffling, mini-batches, SGD or Adam, test
//! evaluation every epoch, history, divergence detection, and callbacks for progress bars and
//! per-step observers ([`Callbacks`]). It returns the [`TrainResult`] that
//! `widealign train --json` prints.
//!
//! ```
//! use widealign_data::{load, LoadOptions};
//! use widealign_rules::{train, Callbacks, RuleKind, TrainConfig};
//!
//! let data = load("digits", &LoadOptions { train_size: Some(200), ..LoadOptions::default() }).unwrap();
//! let cfg = TrainConfig {
//!     rule: RuleKind::AlignZero, width: 128, depth: 2, epochs: 20, lr: 5.0, batch_size: 50,
//!     train_size: Some(200), ..TrainConfig::default()
//! };
//! let result = train(&cfg, &data, Callbacks::default()).unwrap();
//! assert_eq!(result.train_examples, 200);
//! assert!(result.test_loss < result.history[0].test_loss);
//! assert!(result.test_accuracy.unwrap() > 0.5, "{:?}", result.test_accuracy);
//! println!("{}", serde_json::to_string(&result).unwrap());
//! ```

pub mod checkpoint;
mod config;
mod driver;
mod error;
mod kind;
pub mod rule;
mod train;
mod trainable;

pub use checkpoint::{
    check_resumable, checkpoint_config, saved_run, CheckpointExtension, Checkpointing, SavedRun,
};
pub use config::{
    DataShape, EpochRecord, ModelKind, OptimizerChoice, ParamKind, TrainConfig, TrainResult,
};
pub use driver::{
    Callbacks, Progress, ProgressFn, StepBatch, StepHookFn, StepView, DIVERGENCE_FACTOR,
};
pub use error::RulesError;
pub use kind::{FeedbackSource, Recipe, RuleKind, TraceSource};
pub use rule::{MlpRule, RnnRule, Rule, StepInput, FROZEN_CACHE_BUDGET};
pub use train::{train, train_checkpointed, train_model, Trained};
pub use widealign_models::Network;
