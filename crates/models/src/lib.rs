//! # widealign-models: the finite networks
//!
//! Architecture specs shared with the theory crate ([`MlpSpec`]).

mod error;
pub mod spec;

pub use error::ModelError;
pub use spec::{BiasInit, MlpSpec, Parameterization};
