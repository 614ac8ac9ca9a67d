//! ntk
