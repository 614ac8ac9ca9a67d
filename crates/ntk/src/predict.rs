//! The weight change that the infinite-width theory predicts for a *given* finite
//! initialisation (docs/theory.md §4.3).
//!
//! In the lazy (infinite-width) regime the backward signal is a fixed linear map of the error,
//! `d^l(x) = G^l(x) e(x)`, with `G^l` computed once at initialisation, and the activities stay at
//! `a_0^{l−1}`. Summing the updates over the steps gives
//!
//! ```text
//! ΔW^l = −m_l Σ_i G^l(x_i) ε_i a_0^{l−1}(x_i)ᵀ,      Δb^l = −s Σ_i G^l(x_i) ε_i
//! ```
//!
//! with `ε_i` the accumulated error of sample `i` ([`crate::dynamics`]). Because the backward pass
//! is linear in the error, this is exactly one Align-zero "gradient" with the error matrix `ε`:
//! the frozen pathway (initial weights, initial pre-activations) and the frozen activities — one
//! call to `backward_signals` and one to `gradients` of the models crate.
//!
//! ```
//! use widealign_models::{Mlp, MlpSpec};
//! use widealign_ntk::predict::predicted_change;
//! use widealign_tensor::{Activation, Mat};
//! let spec = MlpSpec::new(3, vec![8], 2, Activation::Tanh);
//! let net = Mlp::<f64>::new(&spec, 0).unwrap();
//! let x = Mat::from_row_slice(2, 3, &[1.0, 0.0, 0.5, -0.3, 0.2, 0.9]);
//! let eps = Mat::from_row_slice(2, 2, &[0.1, 0.0, 0.0, -0.2]);
//! let dw = predicted_change(&net, &x, &eps).unwrap();
//! assert_eq!(dw.weights[0].as_ref().unwrap().shape(), (8, 3));
//! // its rows lie in the span of the initial inputs: here W^1's change is a combination of x_1, x_2
//! ```

use widealign_models::{backward_signals, gradients, Feedback, Grads, Mlp, Pathway};
use widealign_tensor::{Float, Mat};

use crate::error::shape_err;
use crate::NtkError;

/// `ΔW^l, Δb^l` predicted for `net0` (the network at initialisation) trained on the rows of `x`
/// with accumulated errors `eps` (`N × C`, row `i` is `ε_i`). Returns the parameter changes
/// (already negated), in the layout of [`Grads`].
///
/// Cost: one forward and one backward pass of `net0` on `x`.
///
/// # Errors
/// [`NtkError::Shape`] if `x` is not `N × n_0` or `eps` is not `N × C`.
pub fn predicted_change<T: Float>(
    net0: &Mlp<T>,
    x: &Mat<T>,
    eps: &Mat<T>,
) -> Result<Grads<T>, NtkError> {
    let spec = &net0.spec;
    if x.ncols() != spec.input_dim {
        return Err(shape_err(
            "training inputs",
            format!("N × {}", spec.input_dim),
            x.shape(),
        ));
    }
    if eps.shape() != (x.nrows(), spec.output_dim) {
        return Err(shape_err(
            "accumulated error ε",
            format!("{} × {}", x.nrows(), spec.output_dim),
            eps.shape(),
        ));
    }
    let trace0 = net0.forward(x)?;
    let pathway = Pathway {
        feedback: Feedback::Weights(&net0.weights),
        derivatives: &trace0,
    };
    let signals = backward_signals(spec, &pathway, eps);
    let mut g = gradients(spec, &signals, &trace0);
    for w in g.weights.iter_mut().flatten() {
        w.neg_mut();
    }
    for b in g.biases.iter_mut().flatten() {
        b.iter_mut().for_each(|v| *v = -*v);
    }
    Ok(g)
}

/// Reshapes a stacked `(N·C) × 1` vector (index `i·C + c`, the layout of
/// [`crate::empirical::EmpiricalNtk`]) into `N × C`.
///
/// # Errors
/// [`NtkError::Shape`] if the length is not a multiple of `outputs`.
pub fn unstack(v: &Mat<f64>, outputs: usize) -> Result<Mat<f64>, NtkError> {
    if v.ncols() != 1 || outputs == 0 || v.nrows() % outputs != 0 {
        return Err(shape_err(
            "stacked vector",
            format!("(N·{outputs}) × 1"),
            v.shape(),
        ));
    }
    let n = v.nrows() / outputs;
    Ok(Mat::from_fn(n, outputs, |i, c| v[(i * outputs + c, 0)]))
}

/// Stacks `N × C` into `(N·C) × 1` (index `i·C + c`); the inverse of [`unstack`].
pub fn stack(m: &Mat<f64>) -> Mat<f64> {
    let c = m.ncols();
    Mat::from_fn(m.nrows() * c, 1, |k, _| m[(k / c, k % c)])
}
