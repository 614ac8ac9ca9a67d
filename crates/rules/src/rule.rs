//! [`Rule`]: one credit-assignment rule for any [`Network`], defined once.
//!
//! Every rule of docs/theory.md §2 updates each weight by
//!
//! ```text
//! ΔW^l = −lr · m_l · Σ_i d^l_i (a^{l−1}_i)ᵀ        Δb^l = −lr · s_b · Σ_i d^l_i
//! ```
//!
//! and differs from backprop only in the backward signal `d^l` (which matrices carry it and whose
//! derivatives `φ'` gate it) and in the input activity `a^{l−1}` (live or frozen): its
//! [`Recipe`](crate::Recipe). A [`Rule`] turns the recipe into the model's
//! [`FeedbackPath`] and two traces, and the model's own backward loop does the rest:
//!
//! | recipe part | source | what the model is given |
//! |---|---|---|
//! | feedback | live weights / initial weights / random weights / direct random / nowhere | [`FeedbackPath::Live`] / [`FeedbackPath::Weights`]`(frozen)` / [`FeedbackPath::Fixed`] / [`FeedbackPath::Direct`] / [`FeedbackPath::ReadoutOnly`] |
//! | `φ′` | live / frozen | the live trace / the frozen network's trace on the batch |
//! | activities | live / frozen | the live trace / the frozen network's trace on the batch |
//!
//! The frozen network is drawn once from the model's spec and seed ([`Network::from_seed`]) and
//! only ever read; its trace on a batch is computed into a reused buffer, or gathered from a
//! per-example cache ([`Rule::cache_frozen_trace`]) when the training set is fixed. The cache
//! exists once, for every model: the model says which parts of its trace to keep
//! ([`Network::cache_parts`]) and how to rebuild a trace from them ([`Network::restore_trace`]).
//!
//! ```
//! use widealign_models::{Loss, Mlp, MlpSpec};
//! use widealign_rules::{Rule, RuleKind, StepInput};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = MlpSpec::new(3, vec![16, 16], 2, Activation::Relu);
//! let mut net = Mlp::<f64>::new(&spec, 0).unwrap();
//! let mut rule = Rule::new(RuleKind::AlignZero, &net).unwrap();
//! let x: Mat<f64> = SeedStream::new(1).gaussian_matrix("x", 8, 3, 1.0);
//! let y: Mat<f64> = SeedStream::new(1).gaussian_matrix("y", 8, 2, 1.0);
//! let live = net.forward(&x).unwrap();
//! let (_, err) = Loss::Mse.evaluate(live.output(), &y).unwrap();
//! let step = StepInput { x: &x, rows: None, live: &live, err: &err };
//! let grads = rule.update(&net, &step).unwrap().clone();
//! // at initialisation every Align rule computes backprop's update
//! let bp = Rule::new(RuleKind::Bp, &net).unwrap().update(&net, &step).unwrap().clone();
//! assert_eq!(grads, bp);
//! net.apply_update(&grads, 0.1);
//! // the frozen network is the initial one, never written
//! assert_eq!(rule.frozen().unwrap(), &Mlp::<f64>::new(&spec, 0).unwrap());
//! ```

use widealign_models::{FeedbackPath, Mlp, Network, Rnn};
use widealign_tensor::{Float, Mat};

use crate::{FeedbackSource, RuleKind, RulesError, TraceSource};

/// What a rule sees of one training step.
pub struct StepInput<'a, M: Network> {
    /// The batch's inputs.
    pub x: &'a M::Input,
    /// The training-set rows of the batch, in order (lets a rule use a per-example cache);
    /// `None` when the batch is not made of training rows.
    pub rows: Option<&'a [usize]>,
    /// The live network's forward trace on `x`. Rules whose recipe reads nothing of the live
    /// network (Align-zero, see [`Recipe::reads_live_trace`](crate::Recipe::reads_live_trace))
    /// ignore it, so it may be an empty `M::Trace::default()` for them.
    pub live: &'a M::Trace,
    /// The live error `∂L/∂f` on `x` (contains the loss normalisation).
    pub err: &'a M::Error,
}

/// The training loop caches the frozen trace only when it needs at most this many bytes (2 GiB);
/// beyond it, the frozen forward pass runs every step.
pub const FROZEN_CACHE_BUDGET: usize = 2 << 30;

/// The frozen network's per-example trace parts ([`Network::cache_parts`]) on a fixed training
/// set, so each step gathers rows instead of running the frozen forward pass.
///
/// Stored transposed, one example per column (`features × N`), so gathering a batch reads `B`
/// contiguous vectors instead of touching every cache line of an `N × features` matrix.
#[derive(Clone, Debug)]
struct FrozenCache<T: Float> {
    /// Two checksums per training example ([`Network::example_checksum`]), to check that a
    /// batch's rows are the cached examples.
    x_sums: Vec<[f64; 2]>,
    /// The parts, each `features × N`.
    parts: Vec<Mat<T>>,
    /// Whether the parts include the activities.
    with_activities: bool,
}

impl<T: Float> FrozenCache<T> {
    fn bytes(&self) -> usize {
        let n: usize = self.parts.iter().map(|m| m.len()).sum();
        n * std::mem::size_of::<T>() + self.x_sums.len() * std::mem::size_of::<[f64; 2]>()
    }
}

/// A credit-assignment rule for the network type `M` (see the module docs).
///
/// The update it returns borrows the rule's reusable buffers; apply it (plain SGD:
/// `θ ← θ − lr·g`, or through an optimiser) before the next call, or let [`Rule::sgd_step`]
/// apply plain SGD directly.
#[derive(Clone, Debug)]
pub struct Rule<M: Network> {
    kind: RuleKind,
    spec: M::Spec,
    /// The network at initialisation (recipes that read it); only ever borrowed immutably.
    frozen: Option<M>,
    /// Feedback alignment's or direct feedback alignment's fixed matrices.
    fixed: Option<M::FixedFeedback>,
    cache: Option<FrozenCache<M::Scalar>>,
    frozen_trace: M::Trace,
    signals: M::Signals,
    grads: M::Grads,
    buffers: M::Buffers,
}

/// [`Rule`] for the fully connected network.
pub type MlpRule<T> = Rule<Mlp<T>>;

/// [`Rule`] for the recurrent network.
pub type RnnRule<T> = Rule<Rnn<T>>;

impl<M: Network> Rule<M> {
    /// The rule `kind` for `model`: recipes that read the initial network draw it from the
    /// model's spec and seed (its initialisation, whatever its current weights); `fa` and `dfa`
    /// draw their fixed matrices from the `"fa"` / `"dfa"` streams of the model's seed
    /// ([`Network::fa_feedback`], [`Network::dfa_feedback`]).
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate.
    pub fn new(kind: RuleKind, model: &M) -> Result<Self, RulesError> {
        Self::from_spec(kind, model.spec(), model.seed())
    }

    /// [`Rule::new`] from a spec and the model seed.
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate.
    pub fn from_spec(kind: RuleKind, spec: &M::Spec, seed: u64) -> Result<Self, RulesError> {
        M::validate_spec(spec)?;
        let frozen = if kind.uses_frozen_network() {
            Some(M::from_seed(spec, seed)?)
        } else {
            None
        };
        let fixed = match kind.recipe().feedback {
            FeedbackSource::RandomWeights => Some(M::fa_feedback(spec, seed)),
            FeedbackSource::DirectRandom => Some(M::dfa_feedback(spec, seed)),
            _ => None,
        };
        Ok(Rule {
            kind,
            spec: spec.clone(),
            frozen,
            fixed,
            cache: None,
            frozen_trace: M::Trace::default(),
            signals: M::Signals::default(),
            grads: M::Grads::default(),
            buffers: M::Buffers::default(),
        })
    }

    /// The rule `kind` with a given network as the frozen one (instead of redrawing it from the
    /// seed): e.g. the shadow accumulator of `widealign-ntk`, which runs Align-zero beside a
    /// backprop run from the run's own initial network.
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate.
    pub fn with_frozen(kind: RuleKind, frozen: M) -> Result<Self, RulesError> {
        let mut rule = Self::from_spec(kind, frozen.spec(), frozen.seed())?;
        if rule.frozen.is_some() {
            rule.frozen = Some(frozen);
        }
        Ok(rule)
    }

    /// Feedback alignment with given fixed matrices (shaped like the feedback-carrying weights;
    /// see the model's [`Network::FixedFeedback`]). With the frozen initial weights this is
    /// Align-prop (docs/theory.md §2; a test checks it).
    ///
    /// # Errors
    /// [`RulesError::Model`] if the spec does not validate or a matrix has the wrong shape.
    pub fn fa_with_feedback(
        spec: &M::Spec,
        feedback: M::FixedFeedback,
    ) -> Result<Self, RulesError> {
        M::validate_spec(spec)?;
        M::check_fixed_feedback(spec, &feedback)?;
        let mut rule = Self::from_spec(RuleKind::Fa, spec, 0)?;
        rule.fixed = Some(feedback);
        Ok(rule)
    }

    /// Which rule this is.
    pub fn kind(&self) -> RuleKind {
        self.kind
    }

    /// The network frozen at initialisation (Align rules), never written after construction.
    pub fn frozen(&self) -> Option<&M> {
        self.frozen.as_ref()
    }

    /// The fixed feedback matrices of `fa` and `dfa` (`None` for the other rules).
    pub fn feedback(&self) -> Option<&M::FixedFeedback> {
        self.fixed.as_ref()
    }

    /// Bytes that [`Rule::cache_frozen_trace`] would use for the training inputs `x_train`
    /// (0 for the rules that cache nothing).
    pub fn frozen_cache_size(&self, x_train: &M::Input) -> usize {
        let recipe = self.kind.recipe();
        if !recipe.uses_frozen_trace() || !M::per_example_trace(&self.spec) {
            return 0;
        }
        let per_example = M::cached_values(&self.spec, x_train, recipe.uses_frozen_activities());
        M::batch_size(x_train)
            * (per_example * std::mem::size_of::<M::Scalar>() + std::mem::size_of::<[f64; 2]>())
    }

    /// Caches the frozen network's trace on the training inputs `x_train` (all `N` examples):
    /// what `φ′` reads for `align-ada`, and also the activities for `align-zero`. Afterwards a
    /// step whose [`StepInput::rows`] are given gathers those rows instead of running the frozen
    /// forward pass. Returns the cache's size in bytes (0 for the rules that do not read a frozen
    /// trace, which cache nothing). See `docs/decisions/align-zero-cache.md` for the measured
    /// trade-off.
    ///
    /// # Errors
    /// [`RulesError::Model`] if `x_train` does not fit the network.
    pub fn cache_frozen_trace(&mut self, x_train: &M::Input) -> Result<usize, RulesError> {
        let recipe = self.kind.recipe();
        let cacheable = recipe.uses_frozen_trace() && M::per_example_trace(&self.spec);
        let (Some(frozen), true) = (&self.frozen, cacheable) else {
            return Ok(0);
        };
        let with_activities = recipe.uses_frozen_activities();
        let n = M::batch_size(x_train);
        let mut parts: Vec<Mat<M::Scalar>> = Vec::new();
        let mut trace = M::Trace::default();
        let mut start = 0;
        while start < n {
            let rows = M::CACHE_CHUNK.min(n - start);
            frozen.forward_rows(x_train, start, rows, &mut trace)?;
            let chunk = M::cache_parts(&trace, with_activities);
            if parts.is_empty() {
                parts = chunk.iter().map(|m| Mat::zeros(m.ncols(), n)).collect();
            }
            for (dst, src) in parts.iter_mut().zip(chunk) {
                dst.columns_mut(start, rows).tr_copy_from(src);
            }
            start += rows;
        }
        let cache = FrozenCache {
            x_sums: (0..n).map(|i| M::example_checksum(x_train, i)).collect(),
            parts,
            with_activities,
        };
        let bytes = cache.bytes();
        self.cache = Some(cache);
        Ok(bytes)
    }

    /// Size in bytes of the frozen-trace cache (0 without one).
    pub fn cache_bytes(&self) -> usize {
        self.cache.as_ref().map_or(0, FrozenCache::bytes)
    }

    fn check(&self, model: &M, step: &StepInput<'_, M>) -> Result<(), RulesError> {
        if model.spec() != &self.spec {
            return Err(RulesError::Unsupported {
                rule: self.kind.to_string(),
                model: M::NAME,
                reason: "the model's spec differs from the spec the rule was built for".into(),
            });
        }
        let live = self.kind.recipe().reads_live_trace().then_some(step.live);
        let who = format!("{} rule step", self.kind);
        model.check_step(&who, step.x, live, step.err)?;
        if let Some(rows) = step.rows {
            let b = M::batch_size(step.x);
            if rows.len() != b {
                return Err(RulesError::Cache(format!(
                    "{} rows given for a batch of {b}",
                    rows.len()
                )));
            }
        }
        Ok(())
    }

    /// The update of every parameter for one batch (gradient-shaped; `None` where the rule does
    /// not train a parameter).
    ///
    /// # Errors
    /// A [`RulesError`] if the model, the step's shapes or the rows do not fit the rule.
    pub fn update(&mut self, model: &M, step: &StepInput<'_, M>) -> Result<&M::Grads, RulesError> {
        self.check(model, step)?;
        let Rule {
            kind,
            spec,
            frozen,
            fixed,
            cache,
            frozen_trace,
            signals,
            grads,
            ..
        } = self;
        let (feedback, derivatives, activities) = pathway(
            *kind,
            frozen.as_ref(),
            fixed.as_ref(),
            cache.as_ref(),
            frozen_trace,
            step,
        )?;
        model.backward_signals_into(feedback, derivatives, step.err, signals);
        M::gradients_into(spec, signals, step.err, activities, grads);
        Ok(grads)
    }

    /// The update for one batch computed from the frozen network alone, for recipes that read
    /// nothing of the live network but its output error `err` (Align-zero): the update the
    /// theory predicts for a training run, without the run's network (docs/theory.md §5).
    /// `rows` are the batch's training rows when a frozen-trace cache was filled.
    ///
    /// # Errors
    /// [`RulesError::Unsupported`] for recipes that read the live network;
    /// [`RulesError::Model`] or [`RulesError::Cache`] if the batch does not fit.
    pub fn update_from_frozen(
        &mut self,
        x: &M::Input,
        rows: Option<&[usize]>,
        err: &M::Error,
    ) -> Result<&M::Grads, RulesError> {
        let recipe = self.kind.recipe();
        let unsupported = |reason: &str| RulesError::Unsupported {
            rule: self.kind.to_string(),
            model: M::NAME,
            reason: reason.into(),
        };
        if recipe.reads_live_trace() {
            return Err(unsupported(
                "it reads the live network, not only the frozen one",
            ));
        }
        let Some(frozen) = self.frozen.as_ref() else {
            return Err(unsupported("it holds no frozen network"));
        };
        frozen.check_step(&format!("{} rule step", self.kind), x, None, err)?;
        if rows.is_some_and(|r| r.len() != M::batch_size(x)) {
            return Err(RulesError::Cache(format!(
                "{} rows given for a batch of {}",
                rows.map_or(0, <[usize]>::len),
                M::batch_size(x)
            )));
        }
        let no_live = M::Trace::default();
        let step = StepInput {
            x,
            rows,
            live: &no_live,
            err,
        };
        let (feedback, derivatives, activities) = pathway(
            self.kind,
            Some(frozen),
            self.fixed.as_ref(),
            self.cache.as_ref(),
            &mut self.frozen_trace,
            &step,
        )?;
        frozen.backward_signals_into(feedback, derivatives, err, &mut self.signals);
        M::gradients_into(&self.spec, &self.signals, err, activities, &mut self.grads);
        Ok(&self.grads)
    }

    /// One plain-SGD step of this rule applied directly to `model`: the update of
    /// [`Rule::update`] times `−lr`, fused into the backward pass where the model can
    /// ([`Network::sgd_update`]), so no gradient tensor is stored. Bit-identical to `update`
    /// followed by `model.apply_update(grads, lr)` (tested).
    ///
    /// # Errors
    /// As [`Rule::update`].
    pub fn sgd_step(
        &mut self,
        model: &mut M,
        step: &StepInput<'_, M>,
        lr: M::Scalar,
    ) -> Result<(), RulesError> {
        self.check(model, step)?;
        let Rule {
            kind,
            frozen,
            fixed,
            cache,
            frozen_trace,
            buffers,
            ..
        } = self;
        let (feedback, derivatives, activities) = pathway(
            *kind,
            frozen.as_ref(),
            fixed.as_ref(),
            cache.as_ref(),
            frozen_trace,
            step,
        )?;
        model.sgd_update(feedback, derivatives, activities, step.err, lr, buffers);
        Ok(())
    }
}

/// (feedback, `φ′` trace, activity trace) of a rule on one step: its recipe made concrete.
type Concrete<'a, M> = (
    FeedbackPath<'a, M>,
    &'a <M as Network>::Trace,
    &'a <M as Network>::Trace,
);

/// The rule's recipe ([`RuleKind::recipe`]) made concrete for one step. Recipes that read the
/// frozen trace first fill `frozen_trace` with the frozen network's trace on this batch.
fn pathway<'a, M: Network>(
    kind: RuleKind,
    frozen: Option<&'a M>,
    fixed: Option<&'a M::FixedFeedback>,
    cache: Option<&FrozenCache<M::Scalar>>,
    frozen_trace: &'a mut M::Trace,
    step: &StepInput<'a, M>,
) -> Result<Concrete<'a, M>, RulesError> {
    let recipe = kind.recipe();
    let frozen = || frozen.expect("recipes that read the initial network hold it");
    let fixed = || fixed.expect("fa and dfa hold their fixed matrices");
    let feedback = match recipe.feedback {
        FeedbackSource::LiveWeights => FeedbackPath::Live,
        FeedbackSource::InitialWeights => FeedbackPath::Weights(frozen()),
        FeedbackSource::RandomWeights => FeedbackPath::Fixed(fixed()),
        FeedbackSource::DirectRandom => FeedbackPath::Direct(fixed()),
        FeedbackSource::Nowhere => FeedbackPath::ReadoutOnly,
    };
    if recipe.uses_frozen_trace() {
        frozen_trace_into(frozen(), cache, step.x, step.rows, frozen_trace)?;
    }
    let ft: &'a M::Trace = frozen_trace;
    let pick = |source| match source {
        TraceSource::Live => step.live,
        TraceSource::Frozen => ft,
    };
    Ok((feedback, pick(recipe.derivatives), pick(recipe.activities)))
}

/// Fills `trace` with the frozen network's trace on `x`: gathered from the cache when `rows` are
/// given and a cache exists, computed otherwise.
fn frozen_trace_into<M: Network>(
    frozen: &M,
    cache: Option<&FrozenCache<M::Scalar>>,
    x: &M::Input,
    rows: Option<&[usize]>,
    trace: &mut M::Trace,
) -> Result<(), RulesError> {
    let (Some(cache), Some(rows)) = (cache, rows) else {
        frozen.forward_into(x, trace)?;
        return Ok(());
    };
    let n = cache.x_sums.len();
    if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
        return Err(RulesError::Cache(format!(
            "example {bad} requested, the cache holds {n} training examples"
        )));
    }
    let per_example = M::cached_values(frozen.spec(), x, cache.with_activities);
    let cached: usize = cache.parts.iter().map(|p| p.nrows()).sum();
    if per_example != cached {
        return Err(RulesError::Cache(format!(
            "a batch of {per_example} trace values per example, the cache holds {cached} (the \
             cache needs a fixed training set)"
        )));
    }
    if let Some(i) = (0..rows.len()).find(|&i| M::example_checksum(x, i) != cache.x_sums[rows[i]]) {
        return Err(RulesError::Cache(format!(
            "batch example {i} differs from cached training example {} (the cache needs a fixed \
             training set)",
            rows[i]
        )));
    }
    let mut fill = |k: usize, dst: &mut Mat<M::Scalar>| gather_rows(&cache.parts[k], rows, dst);
    frozen.restore_trace(x, cache.with_activities, &mut fill, trace);
    Ok(())
}

/// `dst ← (src[:, rows])ᵀ`: example columns of a `features × N` cache into a `B × features`
/// batch (reusing `dst`'s allocation when the shape matches). Feature blocks of 64 keep the
/// strided writes within a few kilobytes.
fn gather_rows<T: Float>(src: &Mat<T>, rows: &[usize], dst: &mut Mat<T>) {
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
