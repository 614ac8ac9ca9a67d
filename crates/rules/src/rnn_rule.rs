//! The rules for the Elman recurrent network ([`Rnn`]), through time.
//!
//! Backpropagation through time along an [`RnnPathway`] (feedback `W̃_rec`, `W̃_out` and the
//! trace whose `φ'(H_t)` gates the signal), then gradients from a chosen activity trace
//! (inputs and states `R_t`). docs/theory.md §2, last paragraph:
//!
//! | rule | `W̃_rec`, `W̃_out` | `φ'` from | activities (states `R_t`) |
//! |---|---|---|---|
//! | `bp` | live `W_rec`, `W_out` | live trace | live |
//! | `align-prop` | frozen `W_rec,0`, `W_out,0` | live trace | live |
//! | `align-ada` | frozen `W_rec,0`, `W_out,0` | frozen trace | live |
//! | `align-zero` | frozen `W_rec,0`, `W_out,0` | frozen trace | frozen |
//! | `fa` | random `B_rec`, `B_out` | live trace | live |
//! | `dfa` | `0`, random `D` (no propagation through time) | live trace | live |
//! | `readout` | none: only `W_out`, `b_out` | — | live |
//!
//! The frozen network is drawn once from the model's spec and seed and only ever read; its trace
//! on a batch is computed into a reused buffer, or gathered from a per-sequence cache
//! ([`RnnRule::cache_frozen_trace`]) when the training set is fixed.
//!
//! Under every rule the readout `W_out`, `b_out` gets its exact gradient from the error and the
//! activity states (live, or frozen for Align-zero, as in the feedforward table).
//!
//! DFA for a recurrent network is read here as "every time step's hidden units receive a fixed
//! random projection of that step's output error, and nothing is propagated through time":
//! `D_t = φ'(H_t) ⊙ (m_out E_t D)`, i.e. the pathway with `W̃_out = D` and `W̃_rec = 0`.
//! FA propagates through time through a fixed random `B_rec`. Their matrices come from
//! `SeedStream::new(seed).child("fa")` (streams `"w_rec.feedback"`, `"w_out.feedback"`) and
//! `child("dfa")` (stream `"w_out.direct"`), with the standard deviations of `W_rec` and `W_out`.
//!
//! ```
//! use widealign_models::{Loss, Rnn, RnnSpec};
//! use widealign_rules::{RnnRule, Rule, RuleKind, StepInput};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = RnnSpec::new(1, 16, 1, Activation::Relu);
//! let net = Rnn::<f64>::new(&spec, 3).unwrap();
//! let s = SeedStream::new(1);
//! let xs: Vec<Mat<f64>> = (0..5).map(|t| s.gaussian_matrix(&format!("x{t}"), 4, 1, 1.0)).collect();
//! let ys: Vec<Mat<f64>> = (0..5).map(|t| s.gaussian_matrix(&format!("y{t}"), 4, 1, 1.0)).collect();
//! let live = net.forward(&xs).unwrap();
//! let (_, errs) = Loss::Mse.evaluate_sequence(&live.outputs, &ys).unwrap();
//! let step = StepInput { x: xs.as_slice(), rows: None, live: &live, err: errs.as_slice() };
//! let bp = RnnRule::new(RuleKind::Bp, &net).unwrap().update(&net, &step).unwrap().clone();
//! let ada = RnnRule::new(RuleKind::AlignAda, &net).unwrap().update(&net, &step).unwrap().clone();
//! assert_eq!(bp, ada); // at initialisation
//! ```

use widealign_models::{
    rnn_backward_signals_into, rnn_gradients_into, ModelError, Rnn, RnnFeedback, RnnGrads,
    RnnPathway, RnnSignals, RnnSpec, RnnTrace,
};
use widealign_tensor::{rng::SeedStream, Float, Mat};

use crate::{Network, Rule, RuleKind, RulesError, StepInput};

impl<T: Float> Network for Rnn<T> {
    type Input = [Mat<T>];
    type Trace = RnnTrace<T>;
    type Error = [Mat<T>];
    type Grads = RnnGrads<T>;
    const NAME: &'static str = "rnn";
}

/// The frozen network's per-sequence trace on a fixed training set (Align-ada: pre-activations;
/// Align-zero: also the states), stored transposed (`n × N` per time step) like the MLP cache.
#[derive(Clone, Debug)]
struct RnnFrozenCache<T: Float> {
    /// Two `f64` checksums per training sequence (over all steps' inputs).
    x_sums: Vec<[f64; 2]>,
    /// `H_{0,t}ᵀ` for `t = 1..T` (`n × N` each).
    pre: Vec<Mat<T>>,
    /// `R_{0,t}ᵀ` for `t = 1..T` (`n × N` each); empty for Align-ada.
    states: Vec<Mat<T>>,
}

impl<T: Float> RnnFrozenCache<T> {
    fn bytes(&self) -> usize {
        let n: usize = self.pre.iter().chain(&self.states).map(|m| m.len()).sum();
        n * std::mem::size_of::<T>() + self.x_sums.len() * std::mem::size_of::<[f64; 2]>()
    }
}

/// Checksums of sequence `i` over every step: `[Σ x, Σ (position+1)·x]` in `f64`.
fn seq_sums<T: Float>(xs: &[Mat<T>], i: usize) -> [f64; 2] {
    let mut s = [0.0, 0.0];
    let mut offset = 0.0;
    for x in xs {
        let [a, b] = crate::mlp_rule::row_sums(x, i);
        s[0] += a;
        s[1] += b + offset * a;
        offset += x.ncols() as f64;
    }
    s
}

/// A credit-assignment rule for an [`Rnn`]: see the module docs for what each rule reads.
#[derive(Clone, Debug)]
pub struct RnnRule<T: Float> {
    kind: RuleKind,
    spec: RnnSpec,
    /// The network at initialisation (Align rules), only ever borrowed immutably.
    frozen: Option<Rnn<T>>,
    /// FA: `(B_rec, B_out)`; DFA: `(0, D)`; `None` otherwise.
    feedback: Option<(Mat<T>, Mat<T>)>,
    cache: Option<RnnFrozenCache<T>>,
    frozen_trace: RnnTrace<T>,
    signals: RnnSignals<T>,
    grads: RnnGrads<T>,
}

impl<T: Float> RnnRule<T> {
    /// The rule `kind` for `model` (frozen network drawn from `model.spec` and `model.seed`).
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate.
    pub fn new(kind: RuleKind, model: &Rnn<T>) -> Result<Self, RulesError> {
        Self::from_spec(kind, &model.spec, model.seed)
    }

    /// [`RnnRule::new`] from a spec and the model seed.
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate.
    pub fn from_spec(kind: RuleKind, spec: &RnnSpec, seed: u64) -> Result<Self, RulesError> {
        spec.validate()?;
        let frozen = if kind.uses_frozen_network() {
            Some(Rnn::new(spec, seed)?)
        } else {
            None
        };
        let (n, c) = (spec.width, spec.output_dim);
        let feedback = match kind {
            RuleKind::Fa => {
                let s = SeedStream::new(seed).child("fa");
                Some((
                    s.gaussian_matrix("w_rec.feedback", n, n, spec.param.weight_init_std(n)),
                    s.gaussian_matrix("w_out.feedback", c, n, spec.readout_init_std()),
                ))
            }
            RuleKind::Dfa => {
                let s = SeedStream::new(seed).child("dfa");
                Some((
                    Mat::zeros(n, n),
                    s.gaussian_matrix("w_out.direct", c, n, spec.readout_init_std()),
                ))
            }
            _ => None,
        };
        Ok(RnnRule {
            kind,
            spec: spec.clone(),
            frozen,
            feedback,
            cache: None,
            frozen_trace: RnnTrace::new(),
            signals: RnnSignals::new(),
            grads: RnnGrads::new(),
        })
    }

    /// Feedback alignment with given `(B_rec, B_out)` (shaped like `W_rec`, `W_out`). With the
    /// frozen initial weights this is Align-prop (a test checks it).
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate or a matrix has the wrong shape.
    pub fn fa_with_feedback(
        spec: &RnnSpec,
        b_rec: Mat<T>,
        b_out: Mat<T>,
    ) -> Result<Self, RulesError> {
        let (n, c) = (spec.width, spec.output_dim);
        for (what, m, shape) in [("B_rec", &b_rec, (n, n)), ("B_out", &b_out, (c, n))] {
            if m.shape() != shape {
                return Err(ModelError::ShapeMismatch {
                    what: format!("feedback matrix {what}"),
                    expected: format!("{} × {}", shape.0, shape.1),
                    got: format!("{} × {}", m.nrows(), m.ncols()),
                }
                .into());
            }
        }
        let mut rule = Self::from_spec(RuleKind::Fa, spec, 0)?;
        rule.feedback = Some((b_rec, b_out));
        Ok(rule)
    }

    /// Bytes that [`RnnRule::cache_frozen_trace`] would use for `n` training sequences of
    /// `steps` steps (0 for the rules that cache nothing).
    pub fn frozen_cache_size(&self, n: usize, steps: usize) -> usize {
        if !self.kind.uses_frozen_trace() {
            return 0;
        }
        let sets = if self.kind == RuleKind::AlignZero {
            2
        } else {
            1
        };
        n * (sets * steps * self.spec.width * std::mem::size_of::<T>()
            + std::mem::size_of::<[f64; 2]>())
    }

    /// Caches the frozen network's trace on the training sequences `xs_train` (time-major, `T`
    /// matrices of `N × n_in`) for `align-ada` (pre-activations) and `align-zero` (also the
    /// states), so steps whose [`StepInput::rows`] are given gather instead of running the
    /// frozen forward pass through time. Returns the cache size in bytes (0 for other rules).
    /// Memory: `N·T·n` (align-ada) or `2·N·T·n` (align-zero) values plus two `f64` per sequence.
    ///
    /// # Errors
    /// [`RulesError::Model`] if the sequences do not fit the network.
    pub fn cache_frozen_trace(&mut self, xs_train: &[Mat<T>]) -> Result<usize, RulesError> {
        let (Some(frozen), true) = (&self.frozen, self.kind.uses_frozen_trace()) else {
            return Ok(0);
        };
        let keep_states = self.kind == RuleKind::AlignZero;
        let n = xs_train.first().map_or(0, |x| x.nrows());
        let steps = xs_train.len();
        let width = self.spec.width;
        let mut pre: Vec<Mat<T>> = (0..steps).map(|_| Mat::zeros(width, n)).collect();
        let mut states: Vec<Mat<T>> = if keep_states {
            (0..steps).map(|_| Mat::zeros(width, n)).collect()
        } else {
            Vec::new()
        };
        const CHUNK: usize = 64;
        let mut trace = RnnTrace::new();
        let mut start = 0;
        while start < n {
            let rows = CHUNK.min(n - start);
            let xs: Vec<Mat<T>> = xs_train
                .iter()
                .map(|x| x.rows(start, rows).into_owned())
                .collect();
            frozen.forward_into(&xs, &mut trace)?;
            for t in 0..steps {
                pre[t].columns_mut(start, rows).tr_copy_from(&trace.pre[t]);
                if keep_states {
                    states[t]
                        .columns_mut(start, rows)
                        .tr_copy_from(&trace.states[t + 1]);
                }
            }
            start += rows;
        }
        let cache = RnnFrozenCache {
            x_sums: (0..n).map(|i| seq_sums(xs_train, i)).collect(),
            pre,
            states,
        };
        let bytes = cache.bytes();
        self.cache = Some(cache);
        Ok(bytes)
    }

    /// Size in bytes of the frozen-trace cache (0 without one).
    pub fn cache_bytes(&self) -> usize {
        self.cache.as_ref().map_or(0, RnnFrozenCache::bytes)
    }

    /// The fixed feedback matrices `(W̃_rec, W̃_out)` of `fa` and `dfa`.
    pub fn feedback(&self) -> Option<(&Mat<T>, &Mat<T>)> {
        self.feedback.as_ref().map(|(r, o)| (r, o))
    }

    fn check(&self, model: &Rnn<T>, step: &StepInput<'_, Rnn<T>>) -> Result<(), RulesError> {
        if model.spec != self.spec {
            return Err(RulesError::Unsupported {
                rule: self.kind.to_string(),
                model: "rnn",
                reason: "the model's spec differs from the spec the rule was built for".into(),
            });
        }
        let steps = step.x.len();
        let mismatch = |what: String, expected: String, got: String| {
            RulesError::from(ModelError::ShapeMismatch {
                what: format!("{} rule step: {what}", self.kind),
                expected,
                got,
            })
        };
        if step.err.len() != steps || step.live.steps() != steps {
            return Err(mismatch(
                "errors and live trace".into(),
                format!("{steps} time steps (the input's length)"),
                format!(
                    "{} error steps, {} trace steps",
                    step.err.len(),
                    step.live.steps()
                ),
            ));
        }
        let b = step.x.first().map_or(0, |x| x.nrows());
        let (n, c) = (self.spec.width, self.spec.output_dim);
        for t in 0..steps {
            if step.x[t].shape() != (b, self.spec.input_dim) {
                return Err(mismatch(
                    format!("input at time step {}", t + 1),
                    format!("{b} × {}", self.spec.input_dim),
                    format!("{} × {}", step.x[t].nrows(), step.x[t].ncols()),
                ));
            }
            if step.err[t].shape() != (b, c) {
                return Err(mismatch(
                    format!("error at time step {}", t + 1),
                    format!("{b} × {c}"),
                    format!("{} × {}", step.err[t].nrows(), step.err[t].ncols()),
                ));
            }
            if step.live.pre[t].shape() != (b, n) || step.live.states[t + 1].shape() != (b, n) {
                return Err(mismatch(
                    format!("live trace at time step {}", t + 1),
                    format!("{b} × {n}"),
                    format!("{:?}", step.live.pre[t].shape()),
                ));
            }
        }
        Ok(())
    }
}

/// Fills `trace` with the frozen network's trace on `xs`: gathered from the cache when `rows` are
/// given and a cache exists, computed otherwise.
fn frozen_trace_into<T: Float>(
    frozen: &Rnn<T>,
    cache: Option<&RnnFrozenCache<T>>,
    xs: &[Mat<T>],
    rows: Option<&[usize]>,
    trace: &mut RnnTrace<T>,
) -> Result<(), RulesError> {
    let (Some(cache), Some(rows)) = (cache, rows) else {
        frozen.forward_into(xs, trace)?;
        return Ok(());
    };
    let n = cache.x_sums.len();
    let steps = cache.pre.len();
    if xs.len() != steps {
        return Err(RulesError::Cache(format!(
            "a batch of {} steps, the cache holds sequences of {steps}",
            xs.len()
        )));
    }
    if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
        return Err(RulesError::Cache(format!(
            "sequence {bad} requested, the cache holds {n} training sequences"
        )));
    }
    if let Some(i) = (0..rows.len()).find(|&i| seq_sums(xs, i) != cache.x_sums[rows[i]]) {
        return Err(RulesError::Cache(format!(
            "batch sequence {i} differs from cached training sequence {} (the cache needs a \
             fixed training set)",
            rows[i]
        )));
    }
    let b = rows.len();
    let width = frozen.spec.width;
    trace.pre.resize_with(steps, || Mat::zeros(0, 0));
    for (t, dst) in trace.pre.iter_mut().enumerate() {
        crate::mlp_rule::gather_rows(&cache.pre[t], rows, dst);
    }
    trace.inputs.resize_with(steps, || Mat::zeros(0, 0));
    for (dst, x) in trace.inputs.iter_mut().zip(xs) {
        if dst.shape() != x.shape() {
            *dst = Mat::zeros(x.nrows(), x.ncols());
        }
        dst.copy_from(x);
    }
    if cache.states.is_empty() {
        trace.states.clear();
    } else {
        trace.states.resize_with(steps + 1, || Mat::zeros(0, 0));
        let r0 = &mut trace.states[0];
        if r0.shape() != (b, width) {
            *r0 = Mat::zeros(b, width);
        }
        for (j, &v) in frozen.r0.iter().enumerate() {
            r0.column_mut(j).fill(v);
        }
        for t in 0..steps {
            crate::mlp_rule::gather_rows(&cache.states[t], rows, &mut trace.states[t + 1]);
        }
    }
    // Outputs of the frozen network are never read by a rule.
    trace.outputs.clear();
    Ok(())
}

impl<T: Float> Rule<Rnn<T>> for RnnRule<T> {
    fn kind(&self) -> RuleKind {
        self.kind
    }

    fn frozen(&self) -> Option<&Rnn<T>> {
        self.frozen.as_ref()
    }

    fn update(
        &mut self,
        model: &Rnn<T>,
        step: &StepInput<'_, Rnn<T>>,
    ) -> Result<&RnnGrads<T>, RulesError> {
        self.check(model, step)?;
        let RnnRule {
            kind,
            spec,
            frozen,
            feedback,
            cache,
            frozen_trace,
            signals,
            grads,
        } = self;
        let live = step.live;
        let weights = |w_rec, w_out| RnnFeedback::Weights { w_rec, w_out };
        let (fb, deriv, acts): (RnnFeedback<'_, T>, &RnnTrace<T>, &RnnTrace<T>) = match kind {
            RuleKind::Bp => (weights(&model.w_rec, &model.w_out), live, live),
            RuleKind::Fa | RuleKind::Dfa => {
                let (r, o) = feedback
                    .as_ref()
                    .expect("fa and dfa hold feedback matrices");
                (weights(r, o), live, live)
            }
            RuleKind::Readout => (RnnFeedback::ReadoutOnly, live, live),
            RuleKind::AlignProp => {
                let f = frozen
                    .as_ref()
                    .expect("align rules hold the frozen network");
                (weights(&f.w_rec, &f.w_out), live, live)
            }
            RuleKind::AlignAda | RuleKind::AlignZero => {
                let f = frozen
                    .as_ref()
                    .expect("align rules hold the frozen network");
                frozen_trace_into(f, cache.as_ref(), step.x, step.rows, frozen_trace)?;
                let acts = if *kind == RuleKind::AlignZero {
                    &*frozen_trace
                } else {
                    live
                };
                (weights(&f.w_rec, &f.w_out), &*frozen_trace, acts)
            }
        };
        let pathway = RnnPathway {
            feedback: fb,
            derivatives: deriv,
        };
        rnn_backward_signals_into(spec, &pathway, step.err, signals);
        rnn_gradients_into(spec, signals, step.err, acts, grads);
        Ok(grads)
    }
}
