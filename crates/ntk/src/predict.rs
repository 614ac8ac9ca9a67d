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

use widealign_models::{
    backward_signals, gradients, Feedback, FeedbackPath, Grads, Mlp, Network, Pathway,
};
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

/// The update `Σ_i J_0(x_i)ᵀ ε_i` of any model (the gradient shape: the predicted change is its
/// negative, `Δθ̂ = −Σ_i J_0(x_i)ᵀ ε_i`) for `net0` on the inputs `x` with the accumulated errors
/// `eps` in the model's error layout (`N × C` for the MLP, one `N × C` matrix per time step for
/// the RNN). Because the backward pass is linear in the error, this is the rules' Align-zero
/// update with the error `ε`: the frozen network's pathway, `φ′` and activities — for the RNN,
/// `ΔŴ_in = −m_in Σ_t D_tᵀ X_t`, `ΔŴ_rec = −m_rec Σ_t D_tᵀ R_{0,t−1}`,
/// `ΔŴ_out = −m_out Σ_t ε_tᵀ R_{0,t}` with `D_t` the error `ε` carried back through time by the
/// initial network (docs/theory.md §4.5).
///
/// ```
/// use widealign_models::{Network, Rnn, RnnSpec};
/// use widealign_ntk::predict::predicted_update;
/// use widealign_tensor::{Activation, Mat};
/// let net = Rnn::<f64>::new(&RnnSpec::new(2, 8, 1, Activation::Erf), 0).unwrap();
/// let xs = vec![Mat::from_row_slice(2, 2, &[1.0, 0.0, 0.5, -0.3]); 3];
/// let eps = vec![Mat::from_row_slice(2, 1, &[0.1, -0.2]); 3];
/// let g = predicted_update(&net, &xs, &eps).unwrap();
/// assert_eq!(Rnn::<f64>::grad_slices(&g).len(), 6);
/// assert!(predicted_update(&net, &xs[..2], &eps).is_err());
/// ```
///
/// # Errors
/// [`NtkError::Model`] if `x` or `eps` does not fit the network.
pub fn predicted_update<M: Network>(
    net0: &M,
    x: &M::Input,
    eps: &M::Error,
) -> Result<M::Grads, NtkError> {
    let mut trace = M::Trace::default();
    net0.forward_into(x, &mut trace)?;
    net0.check_step("predicted change", x, Some(&trace), eps)?;
    let mut signals = M::Signals::default();
    net0.backward_signals_into(FeedbackPath::Live, &trace, eps, &mut signals);
    let mut grads = M::Grads::default();
    M::gradients_into(net0.spec(), &signals, eps, &trace, &mut grads);
    Ok(grads)
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
