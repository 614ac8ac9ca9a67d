//! # widealign-tensor: the numeric core
//!
//! Everything above this crate computes with the few pieces defined here:
//!
//! * [`Mat`] — a dense matrix (`nalgebra::DMatrix`, column-major storage).
//! * **Batch convention: one sample per row.** A batch of `B` inputs of dimension `n` is a
//!   `B × n` matrix; a dense layer with weight `W ∈ R^{m×n}` maps it to `H = A·Wᵀ ∈ R^{B×m}`.
//! * [`gemm`](mod@gemm) — the matrix products training needs (`A·B`, `Aᵀ·B`, `A·Bᵀ`, and the
//!   accumulating form `C ← β·C + α·op(A)·op(B)`), backed by the `gemm` crate (chosen by
//!   measurement, see `docs/decisions/gemm.md`).
//! * [`Activation`] — relu, tanh, erf, identity and gelu with their derivatives.
//! * [`elementwise`] and [`reduce`] — in-place kernels and reductions accumulated in `f64`.
//! * [`rng`] — named, portable seed streams and Gaussian initialisation.
//! * [`memory`] — peak-memory estimates checked against the available memory before a
//!   command allocates.
//!
//! All kernels work for `f32` (training) and `f64` (theory, gradient checks) through the
//! [`Float`] trait. Parallel kernels split work into pieces whose size does not depend on the
//! number of threads, so results are bit-identical for any `RAYON_NUM_THREADS`.
//!
//! ```
//! use widealign_tensor::{gemm, rng::SeedStream, Activation, Mat};
//!
//! let seeds = SeedStream::new(0);
//! let x: Mat<f32> = seeds.gaussian_matrix("x", 4, 3, 1.0); // 4 samples of dimension 3
//! let w: Mat<f32> = seeds.gaussian_matrix("w", 5, 3, 1.0); // 5 units reading 3 inputs
//! let mut h = gemm::matmul_nt(&x, &w); // H = X·Wᵀ, 4 × 5
//! Activation::Relu.apply_slice(h.as_mut_slice());
//! assert_eq!(h.shape(), (4, 5));
//! assert!(h.iter().all(|&v| v >= 0.0));
//! ```

pub mod activation;
pub mod elementwise;
pub mod gemm;
pub mod memory;
pub mod reduce;
pub mod rng;
mod scalar;
pub mod vmath;

pub use activation::Activation;
pub use nalgebra;
pub use scalar::Float;

/// A dense, heap-allocated matrix with column-major storage.
///
/// In a batch, **each row is one sample** (see the crate docs).
pub type Mat<T> = nalgebra::DMatrix<T>;
