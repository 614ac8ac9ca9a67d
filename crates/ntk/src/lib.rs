//! # widealign-ntk: the theory of wide networks, checked against finite ones
//!
//! Built from the same [`widealign_models::MlpSpec`] as the finite networks:
//!
//! * [`analytic`] — infinite-width kernels in `f64`: NNGP `Σ^l`, derivative kernel `Ṡ^l`, NTK
//!   `T^l`, backward kernel `P^l` and each layer's share of the NTK (weights and biases apart),
//!   between any two input sets, in bounded memory, in parallel and deterministically;
//!   [`dual`] holds the activations' dual kernels (closed forms for relu, erf, identity) and
//!   [`quadrature`] the bivariate Gaussian integrators used for tanh and gelu.
//! * [`rnn`] — the same for the Elman RNN, built from a [`widealign_models::RnnSpec`]: NNGP and
//!   NTK of the outputs at any pair of time steps with each parameter's share (docs/theory.md
//!   §3.7), the empirical RNN NTK from backprop through time, and a Monte-Carlo NNGP.
//! * [`cnn`] — the same for the convolutional network without batch norm (stride 1, SAME
//!   padding), flatten or global-average-pooling readout: NNGP, NTK and each layer's share
//!   (docs/theory.md §3.8), one image pair and one position offset at a time.
//! * [`empirical`] — the empirical NTK of a finite network layer by layer (Gram products of
//!   backward signals and activities, no Jacobian) and a Monte-Carlo NNGP over seeds.
//! * [`dynamics`] — closed-form full-batch gradient descent and gradient flow of the linearised
//!   model: accumulated error `ε(k)`, outputs on train and test points, per-layer shares,
//!   predicted weight-change norms, the largest stable learning rate.
//! * [`predict`] — the weight change the theory predicts for a given finite initialisation.
//! * [`ensemble`] — what the infinite-width network trained on the MSE predicts on test points
//!   (mean and variance over initialisations, NTK or NNGP, any training time): the library side
//!   of `widealign predict`, at full-dataset scale through [`solve`], a symmetric matrix stored
//!   once as lower-triangle tiles and factorised in place by a blocked Cholesky.
//! * [`align`] — alignment scores (exact and probe), controls, input-span fraction, and the
//!   shadow accumulator of the predicted update during a backprop run.
//! * [`experiment`] — the library side of `widealign ntk`, `dynamics` and `align`.
//!
//! The central result (derived in docs/theory.md §4): at infinite width every
//! layer's weight change is `ΔW^l = −(s_w/√n_{l−1}) Σ_i G^l(x_i) ε_i a_0^{l−1}(x_i)ᵀ` — a sum of
//! outer products of the layer's initial input activities weighted by backward-projected
//! accumulated errors — with `‖ΔW^l‖_F² → Σ_c ε_cᵀ (P^l ⊙ A^l)(X, X) ε_c`.
//!
//! ```
//! use widealign_models::{Mlp, MlpSpec};
//! use widealign_ntk::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
//! use widealign_ntk::empirical::empirical_ntk;
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = MlpSpec::uniform(4, 2048, 1, 1, Activation::Erf);
//! let x: Mat<f64> = SeedStream::new(0).gaussian_matrix("x", 5, 4, 1.0);
//! let analytic = InfiniteMlp::from_spec(&spec).unwrap()
//!     .kernels(&x, None, &KernelRequest::outputs(), &KernelOptions::default()).unwrap();
//! let finite = empirical_ntk(&Mlp::<f64>::new(&spec, 1).unwrap(), &x, None).unwrap().total();
//! let t = analytic.ntk.unwrap();
//! assert!((finite - &t).norm() / t.norm() < 0.1); // O(1/√width)
//! ```

pub mod align;
pub mod analytic;
pub mod cnn;
pub mod dual;
pub mod dynamics;
pub mod empirical;
pub mod ensemble;
mod error;
pub mod experiment;
pub mod predict;
pub mod quadrature;
pub mod rnn;
pub mod solve;

pub use error::NtkError;
