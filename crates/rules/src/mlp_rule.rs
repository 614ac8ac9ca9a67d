//! The seven rules for the fully connected network ([`Mlp`]).
//!
//! Each rule is one [`Pathway`] (feedback matrices + the trace whose pre-activations give `φ'`)
//! and one activity trace for the weight gradient (docs/theory.md §2):
//!
//! | rule | feedback | `φ'` from | activities |
//! |---|---|---|---|
//! | `bp` | live `W` | live trace | live trace |
//! | `align-prop` | frozen `W_0` | live trace | live trace |
//! | `align-ada` | frozen `W_0` | frozen trace | live trace |
//! | `align-zero` | frozen `W_0` | frozen trace | frozen trace |
//! | `fa` | random `B` shaped like `W` | live trace | live trace |
//! | `dfa` | random `D^l` (`n_l × C`), direct from `e` | live trace | live trace |
//! | `readout` | none (only `W^L, b^L`) | — | live trace |
//!
//! The frozen network is drawn once from the model's spec and seed ([`Mlp::new`]) and is only
//! ever read; its trace on a batch is computed into a reused buffer, or gathered from a
//! per-example cache ([`MlpRule::cache_frozen_trace`]) when the training set is fixed.
//!
//! Feedback matrices come from their own seed streams, with the same scaling convention as `W`:
//! `B^l` (`l = 2..L`, shaped like `W^l`) from `SeedStream::new(seed).child("fa")`, stream
//! `"layer{l}.feedback"`, entries `N(0, weight_init_std(n_{l−1})²)`, so that `m_l·B^l` has the
//! distribution of `m_l·W^l_0`; `D^l` (`l = 1..L−1`, `n_l × C`) from `child("dfa")`, stream
//! `"layer{l}.direct"`, entries `N(0, s_w²/n_l)` — the distribution of `(m_L W^L_0)ᵀ` for a
//! readout reading `n_l` units, so DFA's signals have backprop's scale at initialisation.
//!
//! ```
//! use widealign_models::{Loss, Mlp, MlpSpec};
//! use widealign_rules::{MlpRule, Rule, RuleKind, StepInput};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = MlpSpec::new(4, vec![32, 32], 3, Activation::Tanh);
//! let net = Mlp::<f64>::new(&spec, 7).unwrap();
//! let x: Mat<f64> = SeedStream::new(1).gaussian_matrix("x", 5, 4, 1.0);
//! let y: Mat<f64> = SeedStream::new(1).gaussian_matrix("y", 5, 3, 1.0);
//! let live = net.forward(&x).unwrap();
//! let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
//! let step = StepInput { x: &x, rows: None, live: &live, err: &err };
//! // At initialisation every Align rule computes backprop's update.
//! let bp = MlpRule::new(RuleKind::Bp, &net).unwrap().update(&net, &step).unwrap().clone();
//! let zero = MlpRule::new(RuleKind::AlignZero, &net).unwrap().update(&net, &step).unwrap().clone();
//! assert_eq!(bp, zero);
//! ```

use widealign_models::{
    backward_signals_into, gradients_into, sgd_update_fused, Feedback, FusedBuffers, FusedFeedback,
    Grads, Mlp, MlpSpec, ModelError, Pathway, Signals, Trace,
};
use widealign_tensor::{rng::SeedStream, Float, Mat};

use crate::{Network, Rule, RuleKind, RulesError, StepInput};

impl<T: Float> Network for Mlp<T> {
    type Input = Mat<T>;
    type Trace = Trace<T>;
    type Error = Mat<T>;
    type Grads = Grads<T>;
    const NAME: &'static str = "mlp";
}

/// The frozen network's per-example pre-activations (and, for Align-zero, activities) on a fixed
/// training set, so each step gathers rows instead of running the frozen forward pass.
///
/// Stored transposed, one example per column (`features × N`), so gathering a batch reads
/// `B` contiguous vectors instead of touching every cache line of an `N × features` matrix.
#[derive(Clone, Debug)]
struct FrozenCache<T: Float> {
    /// Two checksums per training input (`Σ_j x_j`, `Σ_j (j+1)·x_j`, in `f64`), to check that
    /// a batch's rows are the cached examples.
    x_sums: Vec<[f64; 2]>,
    /// `H_0^lᵀ` for `l = 1..L−1` (`n_l × N`).
    pre: Vec<Mat<T>>,
    /// `A_0^lᵀ` for `l = 1..L−1` (`n_l × N`); empty unless the rule uses frozen activities.
    act: Vec<Mat<T>>,
}

impl<T: Float> FrozenCache<T> {
    fn bytes(&self) -> usize {
        let n: usize = self.pre.iter().chain(&self.act).map(|m| m.len()).sum();
        n * std::mem::size_of::<T>() + self.x_sums.len() * std::mem::size_of::<[f64; 2]>()
    }
}

/// The training loop caches the frozen trace only when it needs at most this many bytes (2 GiB);
/// beyond it, the frozen forward pass runs every step.
pub const FROZEN_CACHE_BUDGET: usize = 2 << 30;

/// A credit-assignment rule for an [`Mlp`]: see the module docs for what each [`RuleKind`] reads.
#[derive(Clone, Debug)]
pub struct MlpRule<T: Float> {
    kind: RuleKind,
    spec: MlpSpec,
    /// The network at initialisation (Align rules); private and only ever borrowed immutably.
    frozen: Option<Mlp<T>>,
    /// FA: `B^1..B^L` (index 0 is `0 × 0`, never read). DFA: `D^1..D^{L−1}`.
    feedback: Vec<Mat<T>>,
    cache: Option<FrozenCache<T>>,
    frozen_trace: Trace<T>,
    signals: Signals<T>,
    grads: Grads<T>,
    fused: FusedBuffers<T>,
}

impl<T: Float> MlpRule<T> {
    /// The rule `kind` for `model`: Align rules draw the frozen network from `model.spec` and
    /// `model.seed` (the model's initialisation, whatever its current weights); `fa` and `dfa`
    /// draw their feedback matrices from the `"fa"` / `"dfa"` streams of `model.seed`.
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate.
    pub fn new(kind: RuleKind, model: &Mlp<T>) -> Result<Self, RulesError> {
        Self::from_spec(kind, &model.spec, model.seed)
    }

    /// [`MlpRule::new`] from a spec and the model seed.
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate.
    pub fn from_spec(kind: RuleKind, spec: &MlpSpec, seed: u64) -> Result<Self, RulesError> {
        spec.validate()?;
        let frozen = if kind.uses_frozen_network() {
            Some(Mlp::new(spec, seed)?)
        } else {
            None
        };
        let feedback = match kind {
            RuleKind::Fa => fa_feedback(spec, seed),
            RuleKind::Dfa => dfa_feedback(spec, seed),
            _ => Vec::new(),
        };
        Ok(MlpRule {
            kind,
            spec: spec.clone(),
            frozen,
            feedback,
            cache: None,
            frozen_trace: Trace {
                pre: Vec::new(),
                act: Vec::new(),
            },
            signals: Signals::new(),
            grads: Grads::new(),
            fused: FusedBuffers::new(),
        })
    }

    /// Feedback alignment with given feedback matrices `B^l` (index `l − 1`, `L` entries shaped
    /// like the weights; index 0 is never read and may be `0 × 0`). With `B = W_0` this is
    /// Align-prop (docs/theory.md §2), which a test checks.
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate or a matrix has the wrong shape.
    pub fn fa_with_feedback(spec: &MlpSpec, feedback: Vec<Mat<T>>) -> Result<Self, RulesError> {
        spec.validate()?;
        let dims = spec.layer_dims();
        if feedback.len() != dims.len() {
            return Err(ModelError::ShapeMismatch {
                what: "feedback-alignment matrices".into(),
                expected: format!("{} matrices", dims.len()),
                got: format!("{} matrices", feedback.len()),
            }
            .into());
        }
        for (i, (b, &(fan_in, fan_out))) in feedback.iter().zip(&dims).enumerate().skip(1) {
            if b.shape() != (fan_out, fan_in) {
                return Err(ModelError::ShapeMismatch {
                    what: format!("feedback matrix B^{}", i + 1),
                    expected: format!("{fan_out} × {fan_in}"),
                    got: format!("{} × {}", b.nrows(), b.ncols()),
                }
                .into());
            }
        }
        let mut rule = Self::from_spec(RuleKind::Fa, spec, 0)?;
        rule.feedback = feedback;
        Ok(rule)
    }

    /// The fixed feedback matrices: FA's `B^l` (index `l − 1`, index 0 unused) or DFA's `D^l`;
    /// empty for the other rules.
    pub fn feedback(&self) -> &[Mat<T>] {
        &self.feedback
    }

    /// Caches the frozen network's per-example trace on the training inputs `x_train`
    /// (`N × n_0`), for `align-ada` (pre-activations) and `align-zero` (pre-activations and
    /// activities). Afterwards a step whose [`StepInput::rows`] are given gathers those rows
    /// instead of running the frozen forward pass. Returns the cache's size in bytes (0 for the
    /// rules that do not read a frozen trace, which cache nothing).
    ///
    /// Memory: `N·Σ_{l<L} n_l` values (align-ada) or `N·2·Σ_{l<L} n_l` (align-zero), plus two
    /// `f64` checksums per example. See `docs/decisions/align-zero-cache.md` for the measured trade-off.
    ///
    /// # Errors
    /// [`RulesError::Model`] if `x_train` does not have `n_0` columns.
    pub fn cache_frozen_trace(&mut self, x_train: &Mat<T>) -> Result<usize, RulesError> {
        let Some(frozen) = &self.frozen else {
            return Ok(0);
        };
        if !self.kind.uses_frozen_trace() {
            return Ok(0);
        }
        let keep_act = self.kind == RuleKind::AlignZero;
        let widths = self.spec.widths();
        let depth = self.spec.depth();
        let n = x_train.nrows();
        let mut pre: Vec<Mat<T>> = (1..depth).map(|l| Mat::zeros(widths[l], n)).collect();
        let mut act: Vec<Mat<T>> = if keep_act {
            (1..depth).map(|l| Mat::zeros(widths[l], n)).collect()
        } else {
            Vec::new()
        };
        const CHUNK: usize = 512;
        let mut trace = Trace {
            pre: Vec::new(),
            act: Vec::new(),
        };
        let mut start = 0;
        while start < n {
            let rows = CHUNK.min(n - start);
            let xs = x_train.rows(start, rows).into_owned();
            frozen.forward_into(&xs, &mut trace)?;
            for l in 1..depth {
                pre[l - 1]
                    .columns_mut(start, rows)
                    .tr_copy_from(&trace.pre[l - 1]);
                if keep_act {
                    act[l - 1]
                        .columns_mut(start, rows)
                        .tr_copy_from(&trace.act[l]);
                }
            }
            start += rows;
        }
        let cache = FrozenCache {
            x_sums: (0..n).map(|i| row_sums(x_train, i)).collect(),
            pre,
            act,
        };
        let bytes = cache.bytes();
        self.cache = Some(cache);
        Ok(bytes)
    }

    /// Bytes that [`MlpRule::cache_frozen_trace`] would use for `n` training examples
    /// (0 for the rules that cache nothing).
    pub fn frozen_cache_size(&self, n: usize) -> usize {
        if !self.kind.uses_frozen_trace() {
            return 0;
        }
        let hidden: usize = self.spec.hidden.iter().sum();
        let per_layer_sets = if self.kind == RuleKind::AlignZero {
            2
        } else {
            1
        };
        n * (per_layer_sets * hidden * std::mem::size_of::<T>() + std::mem::size_of::<[f64; 2]>())
    }

    /// Size in bytes of the frozen-trace cache (0 without one).
    pub fn cache_bytes(&self) -> usize {
        self.cache.as_ref().map_or(0, FrozenCache::bytes)
    }

    /// One plain-SGD step of this rule applied directly to `model`: the update of
    /// [`Rule::update`] times `−lr`, fused into the backward pass
    /// ([`widealign_models::sgd_update_fused`]) so no gradient tensor is stored. The resulting
    /// network is bit-identical to `update` followed by `model.apply_update(grads, lr)` (tested).
    ///
    /// # Errors
    /// As [`Rule::update`].
    pub fn sgd_step(
        &mut self,
        model: &mut Mlp<T>,
        step: &StepInput<'_, Mlp<T>>,
        lr: T,
    ) -> Result<(), RulesError> {
        self.check(model, step)?;
        let MlpRule {
            kind,
            frozen,
            feedback,
            cache,
            frozen_trace,
            fused,
            ..
        } = self;
        let (fb, deriv, acts) = pathway(
            *kind,
            feedback,
            frozen.as_ref(),
            cache.as_ref(),
            frozen_trace,
            step,
        )?;
        // `None` is the network's own weights, read inside the fused pass before each update
        let fb = fb.map_or(FusedFeedback::Live, FusedFeedback::Fixed);
        sgd_update_fused(model, fb, deriv, acts, step.err, lr, fused);
        Ok(())
    }

    fn check(&self, model: &Mlp<T>, step: &StepInput<'_, Mlp<T>>) -> Result<(), RulesError> {
        if model.spec != self.spec {
            return Err(RulesError::Unsupported {
                rule: self.kind.to_string(),
                model: "mlp",
                reason: "the model's spec differs from the spec the rule was built for".into(),
            });
        }
        let depth = self.spec.depth();
        let b = step.x.nrows();
        let shape = |what: &str, expected: (usize, usize), got: (usize, usize)| {
            RulesError::from(ModelError::ShapeMismatch {
                what: format!("{} rule step: {what}", self.kind),
                expected: format!("{} × {}", expected.0, expected.1),
                got: format!("{} × {}", got.0, got.1),
            })
        };
        if step.x.ncols() != self.spec.input_dim {
            return Err(shape(
                "input batch",
                (b, self.spec.input_dim),
                step.x.shape(),
            ));
        }
        if step.err.shape() != (b, self.spec.output_dim) {
            return Err(shape(
                "output error",
                (b, self.spec.output_dim),
                step.err.shape(),
            ));
        }
        let widths = self.spec.widths();
        if step.live.pre.len() != depth || step.live.act.len() != depth {
            return Err(RulesError::from(ModelError::ShapeMismatch {
                what: format!("{} rule step: live trace", self.kind),
                expected: format!("{depth} layers"),
                got: format!("{} layers", step.live.pre.len()),
            }));
        }
        for l in 1..=depth {
            if step.live.pre[l - 1].shape() != (b, widths[l]) {
                return Err(shape(
                    &format!("live pre-activation H^{l}"),
                    (b, widths[l]),
                    step.live.pre[l - 1].shape(),
                ));
            }
            if step.live.act[l - 1].shape() != (b, widths[l - 1]) {
                return Err(shape(
                    &format!("live activity A^{}", l - 1),
                    (b, widths[l - 1]),
                    step.live.act[l - 1].shape(),
                ));
            }
        }
        if let Some(rows) = step.rows {
            if rows.len() != b {
                return Err(RulesError::Cache(format!(
                    "{} rows given for a batch of {b}",
                    rows.len()
                )));
            }
        }
        Ok(())
    }
}

/// (feedback, derivative trace, activity trace); feedback `None` is the network's own weights.
type RulePathway<'a, T> = (Option<Feedback<'a, T>>, &'a Trace<T>, &'a Trace<T>);

/// A rule's (feedback, derivative trace, activity trace) — the whole definition of each rule;
/// feedback `None` means the network's own weights (backprop). Align-ada/zero first fill
/// `frozen_trace` with the frozen network's trace on this batch.
fn pathway<'a, T: Float>(
    kind: RuleKind,
    feedback: &'a [Mat<T>],
    frozen: Option<&'a Mlp<T>>,
    cache: Option<&FrozenCache<T>>,
    frozen_trace: &'a mut Trace<T>,
    step: &StepInput<'a, Mlp<T>>,
) -> Result<RulePathway<'a, T>, RulesError> {
    let live = step.live;
    let frozen = || frozen.expect("align rules hold the frozen network");
    Ok(match kind {
        RuleKind::Bp => (None, live, live),
        RuleKind::Fa => (Some(Feedback::Weights(feedback)), live, live),
        RuleKind::Dfa => (Some(Feedback::Direct(feedback)), live, live),
        RuleKind::Readout => (Some(Feedback::ReadoutOnly), live, live),
        RuleKind::AlignProp => (Some(Feedback::Weights(&frozen().weights)), live, live),
        RuleKind::AlignAda | RuleKind::AlignZero => {
            let f = frozen();
            frozen_trace_into(f, cache, step.x, step.rows, frozen_trace)?;
            let ft: &'a Trace<T> = frozen_trace;
            let acts = if kind == RuleKind::AlignZero {
                ft
            } else {
                live
            };
            (Some(Feedback::Weights(&f.weights)), ft, acts)
        }
    })
}

/// Fills `trace` with the frozen network's trace on `x`: gathered from the cache when `rows` are
/// given and a cache exists, computed otherwise.
fn frozen_trace_into<T: Float>(
    frozen: &Mlp<T>,
    cache: Option<&FrozenCache<T>>,
    x: &Mat<T>,
    rows: Option<&[usize]>,
    trace: &mut Trace<T>,
) -> Result<(), RulesError> {
    let (Some(cache), Some(rows)) = (cache, rows) else {
        frozen.forward_into(x, trace)?;
        return Ok(());
    };
    let depth = frozen.depth();
    let n = cache.x_sums.len();
    if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
        return Err(RulesError::Cache(format!(
            "row {bad} requested, the cache holds {n} training rows"
        )));
    }
    trace.pre.resize_with(depth, || Mat::zeros(0, 0));
    trace.act.resize_with(depth, || Mat::zeros(0, 0));
    if let Some(i) = (0..rows.len()).find(|&i| row_sums(x, i) != cache.x_sums[rows[i]]) {
        return Err(RulesError::Cache(format!(
            "batch row {i} differs from cached training row {} (the cache needs a fixed \
             training set)",
            rows[i]
        )));
    }
    let a0 = &mut trace.act[0];
    if a0.shape() != x.shape() {
        *a0 = Mat::zeros(x.nrows(), x.ncols());
    }
    a0.copy_from(x);
    for l in 1..depth {
        gather_rows(&cache.pre[l - 1], rows, &mut trace.pre[l - 1]);
        if !cache.act.is_empty() {
            gather_rows(&cache.act[l - 1], rows, &mut trace.act[l]);
        }
    }
    // The output pre-activation H_0^L is never read by a rule (D^L = E); keep it empty.
    trace.pre[depth - 1] = Mat::zeros(0, 0);
    Ok(())
}

/// Checksums of row `i` of `x`: `[Σ_j x_ij, Σ_j (j+1)·x_ij]` in `f64`.
pub(crate) fn row_sums<T: Float>(x: &Mat<T>, i: usize) -> [f64; 2] {
    let mut s = [0.0, 0.0];
    for j in 0..x.ncols() {
        let v = x[(i, j)].as_f64();
        s[0] += v;
        s[1] += (j + 1) as f64 * v;
    }
    s
}

/// `dst ← (src[:, rows])ᵀ`: example columns of a `features × N` cache into a `B × features`
/// batch (reusing `dst`'s allocation when the shape matches). Feature blocks of 64 keep the
/// strided writes within a few kilobytes.
pub(crate) fn gather_rows<T: Float>(src: &Mat<T>, rows: &[usize], dst: &mut Mat<T>) {
    let c = src.nrows();
    let b = rows.len();
    if dst.shape() != (b, c) {
        *dst = Mat::zeros(b, c);
    }
    let s = src.as_slice();
    let d = dst.as_mut_slice();
    const BLOCK: usize = 64;
    let mut j0 = 0;
    while j0 < c {
        let j1 = (j0 + BLOCK).min(c);
        for (i, &r) in rows.iter().enumerate() {
            let col = &s[r * c + j0..r * c + j1];
            for (jj, &v) in col.iter().enumerate() {
                d[(j0 + jj) * b + i] = v;
            }
        }
        j0 = j1;
    }
}

fn fa_feedback<T: Float>(spec: &MlpSpec, seed: u64) -> Vec<Mat<T>> {
    let stream = SeedStream::new(seed).child("fa");
    spec.layer_dims()
        .iter()
        .enumerate()
        .map(|(i, &(fan_in, fan_out))| {
            if i == 0 {
                Mat::zeros(0, 0)
            } else {
                stream.gaussian_matrix(
                    &format!("layer{}.feedback", i + 1),
                    fan_out,
                    fan_in,
                    spec.param.weight_init_std(fan_in),
                )
            }
        })
        .collect()
}

fn dfa_feedback<T: Float>(spec: &MlpSpec, seed: u64) -> Vec<Mat<T>> {
    let stream = SeedStream::new(seed).child("dfa");
    let widths = spec.widths();
    let w_std = spec.param.w_std();
    (1..spec.depth())
        .map(|l| {
            stream.gaussian_matrix(
                &format!("layer{l}.direct"),
                widths[l],
                spec.output_dim,
                w_std / (widths[l] as f64).sqrt(),
            )
        })
        .collect()
}

impl<T: Float> Rule<Mlp<T>> for MlpRule<T> {
    fn kind(&self) -> RuleKind {
        self.kind
    }

    fn frozen(&self) -> Option<&Mlp<T>> {
        self.frozen.as_ref()
    }

    fn update(
        &mut self,
        model: &Mlp<T>,
        step: &StepInput<'_, Mlp<T>>,
    ) -> Result<&Grads<T>, RulesError> {
        self.check(model, step)?;
        let MlpRule {
            kind,
            spec,
            frozen,
            feedback,
            cache,
            frozen_trace,
            signals,
            grads,
            ..
        } = self;
        let (fb, deriv, acts) = pathway(
            *kind,
            feedback,
            frozen.as_ref(),
            cache.as_ref(),
            frozen_trace,
            step,
        )?;
        let fb = fb.unwrap_or(Feedback::Weights(&model.weights));
        let p = Pathway {
            feedback: fb,
            derivatives: deriv,
        };
        backward_signals_into(spec, &p, step.err, signals);
        gradients_into(spec, signals, acts, grads);
        Ok(grads)
    }
}
