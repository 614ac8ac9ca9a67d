//! # widealign-rules: credit-assignment rules and the training loop
//!
//! placeholder docs (expanded below once the loop lands)

mod config;
mod driver;
mod error;
mod kind;
pub mod mlp_rule;
pub mod rnn_rule;
pub mod rule;

pub use config::{EpochRecord, ModelKind, OptimizerChoice, ParamKind, TrainConfig, TrainResult};
pub use driver::{Callbacks, Progress, StepBatch, StepView, DIVERGENCE_FACTOR};
pub use error::RulesError;
pub use kind::RuleKind;
pub use mlp_rule::MlpRule;
pub use rnn_rule::RnnRule;
pub use rule::{Network, Rule, StepInput};
