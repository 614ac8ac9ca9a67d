//! The [`Rule`] trait: one update per batch from the live model and the live error.
//!
//! Every rule of docs/theory.md §2 updates each weight by
//!
//! ```text
//! ΔW^l = −lr · m_l · Σ_i d^l_i (a^{l−1}_i)ᵀ        ΔB^l = −lr · s_b · Σ_i d^l_i
//! ```
//!
//! and differs from backprop only in the backward signal `d^l` (which matrices carry it and whose
//! derivatives `φ'` gate it) and in the input activity `a^{l−1}` (live or frozen). A rule is
//! therefore a choice of a models [`Pathway`](widealign_models::Pathway) and an activity trace;
//! the backward loop itself lives in `widealign-models` and exists once.
//!
//! The caller (normally [`crate::train`]) runs the live forward pass and the loss, then asks the
//! rule for the update of the batch:
//!
//! ```
//! use widealign_models::{Loss, Mlp, MlpSpec};
//! use widealign_rules::{MlpRule, Rule, RuleKind, StepInput};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = MlpSpec::new(3, vec![16, 16], 2, Activation::Relu);
//! let mut net = Mlp::<f64>::new(&spec, 0).unwrap();
//! let mut rule = MlpRule::new(RuleKind::AlignZero, &net).unwrap();
//! let x: Mat<f64> = SeedStream::new(1).gaussian_matrix("x", 8, 3, 1.0);
//! let y: Mat<f64> = SeedStream::new(1).gaussian_matrix("y", 8, 2, 1.0);
//! let live = net.forward(&x).unwrap();
//! let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
//! let step = StepInput { x: &x, rows: None, live: &live, err: &err };
//! let grads = rule.update(&net, &step).unwrap().clone();
//! net.apply_update(&grads, 0.1);
//! // the frozen network is the initial one, never written
//! assert_eq!(rule.frozen().unwrap(), &Mlp::<f64>::new(&spec, 0).unwrap());
//! ```

use crate::{RuleKind, RulesError};

/// A network the rules can train: names the types one training step passes around.
pub trait Network {
    /// One batch of inputs: `Mat<T>` (`B × n_0`) for an MLP, `[Mat<T>]` (time-major, `T`
    /// matrices of `B × n_in`) for an RNN.
    type Input: ?Sized;
    /// The stored forward pass.
    type Trace;
    /// The output error `∂L/∂f`: `Mat<T>` (`B × C`) or `[Mat<T>]` (one per time step).
    type Error: ?Sized;
    /// The update (gradient-shaped, before `−lr`), `None` for parameters a rule does not train.
    type Grads;
    /// `"mlp"` or `"rnn"`, for messages.
    const NAME: &'static str;
}

/// What a rule sees of one training step.
pub struct StepInput<'a, M: Network> {
    /// The batch's inputs.
    pub x: &'a M::Input,
    /// The training-set rows of the batch, in order (lets a rule use a per-example cache);
    /// `None` when the batch is not made of training rows.
    pub rows: Option<&'a [usize]>,
    /// The live network's forward trace on `x`.
    pub live: &'a M::Trace,
    /// The live error `∂L/∂f` on `x` (contains the loss normalisation).
    pub err: &'a M::Error,
}

/// A credit-assignment rule for the network type `M`.
///
/// Implemented by [`crate::MlpRule`] for [`widealign_models::Mlp`] and by [`crate::RnnRule`] for
/// [`widealign_models::Rnn`]. The returned update borrows the rule's reusable buffers; apply it
/// (plain SGD: `θ ← θ − lr·g`, or through an optimiser) before the next call.
pub trait Rule<M: Network> {
    /// Which rule this is.
    fn kind(&self) -> RuleKind;

    /// The network frozen at initialisation (Align rules), never written after construction.
    fn frozen(&self) -> Option<&M>;

    /// The update of every parameter for one batch (gradient-shaped; `None` where the rule does
    /// not train a parameter).
    ///
    /// # Errors
    /// A [`RulesError`] if the model, the step's shapes or the rows do not fit the rule.
    fn update(&mut self, model: &M, step: &StepInput<'_, M>) -> Result<&M::Grads, RulesError>;
}
