//! The error type of widealign-models.

/// Everything that can go wrong when building, running or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A spec field has an invalid value.
    #[error("invalid model spec: {field} {reason}")]
    InvalidSpec {
        /// The offending field, e.g. `hidden[1]` or `w_std`.
        field: String,
        /// Why it is invalid.
        reason: String,
    },
}
