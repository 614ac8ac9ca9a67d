//! # widealign-ntk: the theory of wide networks
//!
//! (crate documentation is completed with the remaining modules)

pub mod analytic;
pub mod dual;
mod error;
pub mod experiment;
pub mod quadrature;

pub use error::NtkError;
