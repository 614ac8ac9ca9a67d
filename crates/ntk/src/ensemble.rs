//! What the infinite-width network trained by gradient descent on the MSE predicts on test
//! points: the mean (and variance) over initialisations, from the NTK or the NNGP — the library
//! side of `widealign predict` (docs/theory.md §4.3a).
//!
//! With training inputs `X` (`N` rows), targets `Y` (`N × C`), the loss
//! `L = (1/(NC)) Σ_i ‖f(x_i) − y_i‖²` of the training loop and learning rate `lr`, gradient flow of
//! the linearised network for time `t` (in steps, each of size `c = 2·lr/(N·C)`, as
//! [`crate::dynamics`]) gives, for an initial function `f_0 ~ GP(0, K)` (the NNGP `K`),
//!
//! ```text
//! f_t(x) = f_0(x) + Θ(x, X) M_t (Y − f_0(X)),      M_t = Θ_λ^{−1} (I − e^{−c Θ_λ t})
//! mean   = Θ(x, X) M_t Y                            (M_∞ = Θ_λ^{−1})
//! var    = K(x, x) − 2 Θ(x, X) M_t K(X, x) + Θ(x, X) M_t K(X, X) M_t Θ(X, x)
//! ```
//!
//! with `Θ` the NTK (all layers trained, [`KernelKind::Ntk`]) or `Θ = K` (only the readout
//! trained, [`KernelKind::Nngp`], whose `t = ∞` limit is the NNGP posterior
//! `K(x,X) K_λ^{−1} Y`, variance `K(x,x) − K(x,X) K_λ^{−1} K(X,x)`). `Θ_λ = Θ + λI` with
//! `λ = diag_reg · tr(Θ)/N` — the regularisation relative to the mean diagonal, as
//! neural-tangents' `diag_reg` (with `diag_reg_absolute_scale=False`). The mean does not depend
//! on `lr` at `t = ∞`. A `train` run of `E` epochs with batch size `B` takes
//! `E·⌈N/B⌉` steps, and in expectation each minibatch step moves the function as one
//! full-batch step with `c = 2·lr/(N·C)`, so `t = E·N/B` is the comparable time.
//!
//! Two solvers, chosen by [`EnsembleConfig`] (measurements in
//! `docs/decisions/predict-solver.md`):
//!
//! * **`t = ∞`, mean only** — the training kernel is stored once, as the tiles of its lower
//!   triangle in `f32` or `f64` ([`Precision`]; the entries are computed in `f64` and rounded
//!   once), regularised and factorised in place by the blocked Cholesky of [`crate::solve`];
//!   `α = Θ_λ^{−1} Y` by substitution in `f64`; test outputs `Θ(x, X) α` from cross-kernel
//!   blocks computed on the fly. Memory `≈ N²/2` values ([`plan`]).
//! * **finite `t`, or the variance** — one `f64` symmetric eigendecomposition of the training
//!   kernel ([`crate::dynamics::KernelDynamics`]), so `M_t` applies to any block. Memory `≈ 3N²`
//!   doubles, time `O(N³)` on one core: for a few thousand training points.
//!
//! [`plan`] predicts the peak memory of a run before it starts, and [`check_budget`] refuses a
//! run that would not fit with the settings that would.
//!
//! ```
//! use widealign_models::MlpSpec;
//! use widealign_ntk::analytic::InfiniteMlp;
//! use widealign_ntk::ensemble::{predict, EnsembleConfig, KernelKind, TrainTime};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//! let net = InfiniteMlp::from_spec(&MlpSpec::uniform(4, 1, 2, 1, Activation::Relu)).unwrap();
//! let x: Mat<f64> = SeedStream::new(0).gaussian_matrix("x", 20, 4, 1.0);
//! let y = Mat::from_fn(20, 1, |i, _| x[(i, 0)].signum());
//! let cfg = EnsembleConfig { diag_reg: 1e-6, ..EnsembleConfig::default() };
//! let fit = predict(&net, &x, &y, &x, &cfg, &|_, _| {}).unwrap();
//! // at t = ∞ with a tiny ridge the NTK predictor interpolates its training set
//! assert!((&fit.mean - &y).abs().max() < 1e-3);
//! let early = EnsembleConfig { time: TrainTime::Steps(1.0), lr: 0.5, ..cfg };
//! let f1 = predict(&net, &x, &y, &x, &early, &|_, _| {}).unwrap();
//! assert!(f1.mean.norm() < fit.mean.norm());
//! ```

use rayon::prelude::*;
use widealign_tensor::{Float, Mat};

use crate::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use crate::dynamics::{KernelDynamics, Schedule};
use crate::error::{check_finite, shape_err};
use crate::solve::{SymTiles, DEFAULT_TILE};
use crate::NtkError;

/// Which kernel trains the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// All layers trained: the NTK `Θ`.
    Ntk,
    /// Only the readout trained: the NNGP `K` (at `t = ∞` the Gaussian-process posterior).
    Nngp,
}

impl KernelKind {
    /// `"ntk"` or `"nngp"`.
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Ntk => "ntk",
            KernelKind::Nngp => "nngp",
        }
    }
}

impl std::fmt::Display for KernelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KernelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ntk" => Ok(KernelKind::Ntk),
            "nngp" => Ok(KernelKind::Nngp),
            _ => Err(format!("unknown kernel `{s}` (ntk or nngp)")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f64" => Ok(Precision::F64),
            _ => Err(format!("unknown precision `{s}` (f32 or f64)")),
        }
    }
}

/// The storage precision of the training kernel on the Cholesky path (entries are computed in
/// `f64` either way; the substitutions accumulate in `f64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// 4 bytes per stored value: half the memory, about twice the factorisation speed.
    F32,
    /// 8 bytes per stored value.
    F64,
}

impl Precision {
    /// `"f32"` or `"f64"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

/// How long the network trains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrainTime {
    /// To convergence (`t = ∞`).
    Infinite,
    /// Gradient flow for this many steps of the training loop (`t ≥ 0`, step `c = 2·lr/(NC)`).
    Steps(f64),
}

/// Settings of [`predict`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnsembleConfig {
    /// The training kernel.
    pub kernel: KernelKind,
    /// The training time.
    pub time: TrainTime,
    /// Ridge relative to the mean diagonal: `λ = diag_reg · tr(Θ)/N`.
    pub diag_reg: f64,
    /// The learning rate (enters only at finite times).
    pub lr: f64,
    /// Storage of the training kernel on the Cholesky path.
    pub precision: Precision,
    /// Also compute each test point's predictive variance (eigendecomposition path).
    pub variance: bool,
    /// Tile side of the blocked solver.
    pub tile: usize,
    /// Test points per cross-kernel block.
    pub test_block: usize,
    /// Kernel numerics.
    pub kernel_options: KernelOptions,
}

impl Default for EnsembleConfig {
    /// NTK, `t = ∞`, `diag_reg = 1e-4`, `lr = 1`, `f32` storage, no variance.
    fn default() -> Self {
        EnsembleConfig {
            kernel: KernelKind::Ntk,
            time: TrainTime::Infinite,
            diag_reg: 1e-4,
            lr: 1.0,
            precision: Precision::F32,
            variance: false,
            tile: DEFAULT_TILE,
            test_block: 256,
            kernel_options: KernelOptions::default(),
        }
    }
}

impl EnsembleConfig {
    /// Whether the run goes through the eigendecomposition (finite time or variance) rather than
    /// the blocked Cholesky.
    pub fn uses_eigen(&self) -> bool {
        self.variance || self.time != TrainTime::Infinite
    }

    /// The precision actually used: `f64` on the eigendecomposition path.
    pub fn effective_precision(&self) -> Precision {
        if self.uses_eigen() {
            Precision::F64
        } else {
            self.precision
        }
    }

    fn validate(&self) -> Result<(), NtkError> {
        let bad = |name: &str, reason: String| {
            Err(NtkError::InvalidOption {
                name: name.into(),
                reason,
            })
        };
        if !self.diag_reg.is_finite() || self.diag_reg < 0.0 {
            return bad(
                "diag_reg",
                format!("must be finite and ≥ 0, got {}", self.diag_reg),
            );
        }
        if !self.lr.is_finite() || self.lr <= 0.0 {
            return bad("lr", format!("must be finite and > 0, got {}", self.lr));
        }
        if let TrainTime::Steps(t) = self.time {
            if !t.is_finite() || t < 0.0 {
                return bad("time", format!("must be `inf` or a number ≥ 0, got {t}"));
            }
        }
        if self.tile == 0 || self.test_block == 0 {
            return bad("tile", "tile and test block must be at least 1".into());
        }
        Ok(())
    }
}

/// The predicted test outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsemblePrediction {
    /// Mean test outputs (`M × C`).
    pub mean: Mat<f64>,
    /// Predictive variance of each test output (the same for every output column), when asked.
    pub variance: Option<Vec<f64>>,
    /// The absolute ridge `λ` added to the training kernel's diagonal.
    pub ridge: f64,
}

/// Peak memory of a run, item by item (bytes).
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    /// `(what, bytes)` for each large allocation alive at the peak.
    pub items: Vec<(String, u64)>,
}

impl MemoryPlan {
    /// The predicted peak in bytes.
    pub fn total(&self) -> u64 {
        self.items.iter().map(|(_, b)| b).sum()
    }

    /// The items as `what 1.23 GB, …`, largest first.
    pub fn describe(&self) -> String {
        let mut items = self.items.clone();
        items.sort_by_key(|item| std::cmp::Reverse(item.1));
        items
            .iter()
            .filter(|(_, b)| *b >= 1_000_000)
            .map(|(w, b)| format!("{w} {:.2} GB", *b as f64 / 1e9))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Fixed overhead of the process (binary, thread stacks, allocator slack), bytes.
const BASE_BYTES: u64 = 64 << 20;

/// The peak memory of [`predict`] for `n` training and `m` test points of dimension `d` with
/// `c` outputs, including the caller's `f32` copy of the dataset (`(n + m)·d` values).
pub fn plan(n: usize, m: usize, d: usize, c: usize, cfg: &EnsembleConfig) -> MemoryPlan {
    let (n64, m64, d64, c64) = (n as u64, m as u64, d as u64, c as u64);
    let mut items = vec![
        ("process".to_string(), BASE_BYTES),
        (
            "dataset (f32) and inputs (f64)".to_string(),
            (n64 + m64) * d64 * 12,
        ),
        ("targets and outputs".to_string(), (n64 + m64) * c64 * 8 * 2),
    ];
    let bt = cfg.test_block.min(m.max(1)) as u64;
    if cfg.uses_eigen() {
        let kernels = if cfg.variance && cfg.kernel == KernelKind::Ntk {
            2
        } else {
            1
        };
        items.push((
            format!(
                "training kernel{} (f64)",
                if kernels == 2 { "s" } else { "" }
            ),
            kernels * n64 * n64 * 8,
        ));
        // nalgebra's SymmetricEigen: a working copy plus the eigenvectors
        items.push(("eigendecomposition (f64)".to_string(), 2 * n64 * n64 * 8));
        let blocks = if cfg.variance { 4 } else { 2 };
        items.push((
            "cross-kernel blocks (f64)".to_string(),
            blocks * n64 * bt * 8,
        ));
    } else {
        let t = cfg.tile.max(1);
        let tiles = match cfg.precision {
            Precision::F32 => SymTiles::<f32>::bytes(n, t),
            Precision::F64 => SymTiles::<f64>::bytes(n, t),
        };
        items.push((format!("training kernel ({})", cfg.precision.name()), tiles));
        let tb = t.min(n.max(1)) as u64;
        // per tile row: the tiles computed in f64 before rounding, plus the cross block
        let threads = rayon::current_num_threads() as u64;
        items.push((
            "kernel workspace (f64)".to_string(),
            threads * 4 * tb * tb * 8 + 2 * n64 * bt * 8 + n64 * c64 * 8 * 2,
        ));
    }
    MemoryPlan { items }
}

/// `Ok` if `plan(n, …)` fits `budget` bytes; otherwise [`NtkError::TooLarge`] listing what
/// would fit: the largest training-set size at these settings, `f32` storage, no variance.
///
/// # Errors
/// [`NtkError::TooLarge`].
pub fn check_budget(
    n: usize,
    m: usize,
    d: usize,
    c: usize,
    cfg: &EnsembleConfig,
    budget: u64,
) -> Result<MemoryPlan, NtkError> {
    let p = plan(n, m, d, c, cfg);
    if p.total() <= budget {
        return Ok(p);
    }
    let mut fits = Vec::new();
    let fits_at = |cfg: &EnsembleConfig, n: usize| plan(n, m, d, c, cfg).total() <= budget;
    if cfg.precision == Precision::F64 && !cfg.uses_eigen() {
        let f32 = EnsembleConfig {
            precision: Precision::F32,
            ..*cfg
        };
        if fits_at(&f32, n) {
            fits.push(("precision".to_string(), "f32".to_string()));
        }
    }
    if cfg.variance
        && fits_at(
            &EnsembleConfig {
                variance: false,
                ..*cfg
            },
            n,
        )
    {
        fits.push(("variance".to_string(), "off".to_string()));
    }
    if fits_at(cfg, 1) {
        let (mut lo, mut hi) = (1usize, n);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits_at(cfg, mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        fits.push(("train_size".to_string(), lo.to_string()));
    }
    Err(NtkError::TooLarge {
        needed: p.total(),
        budget,
        what: p.describe(),
        fits,
    })
}

fn request(kind: KernelKind, both: bool) -> KernelRequest {
    KernelRequest {
        nngp: both || kind == KernelKind::Nngp,
        ntk: both || kind == KernelKind::Ntk,
        layers: false,
    }
}

/// The training kernel of `kind` on the rows of `x` in tiles of side `b`, each entry computed in
/// `f64` ([`InfiniteMlp::kernels`]) and rounded once to `T`. Tiles of one tile row are computed
/// in parallel; the diagonal tiles by the symmetric path, so they are exactly symmetric.
/// `progress` receives the fraction done.
///
/// # Errors
/// As [`InfiniteMlp::kernels`].
pub fn kernel_tiles<T: Float>(
    net: &InfiniteMlp,
    x: &Mat<f64>,
    kind: KernelKind,
    b: usize,
    options: &KernelOptions,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<SymTiles<T>, NtkError> {
    let n = x.nrows();
    let mut tiles = SymTiles::<T>::zeros(n, b)?;
    let nb = tiles.blocks();
    let xb: Vec<Mat<f64>> = (0..nb)
        .map(|i| x.rows(i * b, (n - i * b).min(b)).into_owned())
        .collect();
    let req = request(kind, false);
    let total = (nb * (nb + 1) / 2).max(1) as f64;
    for i in 0..nb {
        tiles
            .row_tiles_mut(i)
            .into_par_iter()
            .enumerate()
            .try_for_each(|(j, tile)| -> Result<(), NtkError> {
                let other = if j == i { None } else { Some(&xb[j]) };
                let k = net.kernels(&xb[i], other, &req, options)?;
                let k = match kind {
                    KernelKind::Ntk => k.ntk,
                    KernelKind::Nngp => k.nngp,
                }
                .expect("requested kernel");
                for (t, v) in tile.iter_mut().zip(k.iter()) {
                    *t = T::cast(*v);
                }
                Ok(())
            })?;
        progress(((i + 1) * (i + 2) / 2) as f64 / total);
    }
    Ok(tiles)
}

/// Step `t = ∞` on stored tiles: regularises (`λ = diag_reg·tr/N`), factorises in place and
/// returns `α = Θ_λ^{−1} Y` (`N × C`) and `λ`. The tiles then hold the factor.
///
/// # Errors
/// [`NtkError::Shape`] if `Y` has not `N` rows; [`NtkError::NotPositiveDefinite`].
pub fn fit_tiles<T: Float>(
    tiles: &mut SymTiles<T>,
    y: &Mat<f64>,
    diag_reg: f64,
    progress: &(dyn Fn(f64) + Sync),
) -> Result<(Mat<f64>, f64), NtkError> {
    let n = tiles.n();
    if y.nrows() != n {
        return Err(shape_err("targets", format!("{n} × C"), y.shape()));
    }
    check_finite("targets", y)?;
    let ridge = diag_reg * tiles.trace() / n.max(1) as f64;
    tiles.add_diagonal(ridge);
    tiles.cholesky_with_progress(progress)?;
    let mut alpha = y.clone();
    tiles.solve_in_place(&mut alpha)?;
    Ok((alpha, ridge))
}

/// The eigendecomposition path on a dense `f64` training kernel: `α = M_t Y`, the dynamics
/// (to map variance blocks) and `λ`.
fn fit_dense(
    train: &Mat<f64>,
    y: &Mat<f64>,
    cfg: &EnsembleConfig,
) -> Result<(Mat<f64>, KernelDynamics, f64, Schedule), NtkError> {
    let n = train.nrows();
    let ridge = cfg.diag_reg * train.trace() / n.max(1) as f64;
    let reg = train + Mat::identity(n, n) * ridge;
    let dynamics = KernelDynamics::new(&reg, y.ncols(), cfg.lr)?;
    let schedule = match cfg.time {
        TrainTime::Infinite => {
            if let Some(i) = dynamics.eigenvalues().iter().position(|&l| l <= 0.0) {
                return Err(NtkError::NotPositiveDefinite { index: i });
            }
            Schedule::Flow(f64::INFINITY)
        }
        TrainTime::Steps(t) => Schedule::Flow(t),
    };
    // mean = Θ_x M_t Y: with r_0 = −Y, ε = M_t r_0, so α = ε(Y)
    let alpha = dynamics.eps(y, schedule)?;
    Ok((alpha, dynamics, ridge, schedule))
}

/// The mean (and, if asked, the variance) of the infinite-width network trained on
/// `(x_train, y_train)` at the test inputs `x_test` (module docs). `progress(phase, fraction)`
/// reports `"kernel"`, `"factor"` and `"test"`.
///
/// # Errors
/// [`NtkError::Shape`] for mismatched inputs or targets, [`NtkError::NonFinite`] for NaN,
/// [`NtkError::InvalidOption`] for bad settings, [`NtkError::NotPositiveDefinite`] when the
/// regularised kernel cannot be factorised in the storage precision.
pub fn predict(
    net: &InfiniteMlp,
    x_train: &Mat<f64>,
    y_train: &Mat<f64>,
    x_test: &Mat<f64>,
    cfg: &EnsembleConfig,
    progress: &(dyn Fn(&str, f64) + Sync),
) -> Result<EnsemblePrediction, NtkError> {
    cfg.validate()?;
    let n = x_train.nrows();
    if n == 0 || y_train.nrows() != n {
        return Err(shape_err(
            "training targets",
            format!("{n} × C with N ≥ 1"),
            y_train.shape(),
        ));
    }
    check_finite("training targets", y_train)?;
    let opts = &cfg.kernel_options;
    if !cfg.uses_eigen() {
        let kprog = |f: f64| progress("kernel", f);
        let fprog = |f: f64| progress("factor", f);
        let (alpha, ridge) = match cfg.precision {
            Precision::F32 => {
                let mut t = kernel_tiles::<f32>(net, x_train, cfg.kernel, cfg.tile, opts, &kprog)?;
                fit_tiles(&mut t, y_train, cfg.diag_reg, &fprog)?
            }
            Precision::F64 => {
                let mut t = kernel_tiles::<f64>(net, x_train, cfg.kernel, cfg.tile, opts, &kprog)?;
                fit_tiles(&mut t, y_train, cfg.diag_reg, &fprog)?
            }
        };
        let mean = test_means(net, x_train, x_test, &alpha, cfg, progress)?;
        return Ok(EnsemblePrediction {
            mean,
            variance: None,
            ridge,
        });
    }
    // eigendecomposition path
    progress("kernel", 0.0);
    let both = cfg.variance;
    let k = net.kernels(x_train, None, &request(cfg.kernel, both), opts)?;
    let (theta, nngp) = match cfg.kernel {
        KernelKind::Ntk => (k.ntk.expect("ntk"), k.nngp),
        KernelKind::Nngp => (k.nngp.expect("nngp"), None),
    };
    progress("kernel", 1.0);
    progress("factor", 0.0);
    let (alpha, dynamics, ridge, schedule) = fit_dense(&theta, y_train, cfg)?;
    drop(theta);
    progress("factor", 1.0);
    if !cfg.variance {
        let mean = test_means(net, x_train, x_test, &alpha, cfg, progress)?;
        return Ok(EnsemblePrediction {
            mean,
            variance: None,
            ridge,
        });
    }
    // K(X, X) for the variance: the NNGP (for the NNGP predictor Θ = K)
    let k_train = match nngp {
        Some(k) => k,
        None => net
            .kernels(x_train, None, &request(KernelKind::Nngp, false), opts)?
            .nngp
            .expect("nngp"),
    };
    let m = x_test.nrows();
    let c = y_train.ncols();
    let mut mean = Mat::zeros(m, c);
    let mut variance = vec![0.0; m];
    let blocks: Vec<usize> = (0..m).step_by(cfg.test_block).collect();
    for (bi, &s) in blocks.iter().enumerate() {
        let len = (m - s).min(cfg.test_block);
        let xt = x_test.rows(s, len).into_owned();
        // cross kernels as N × len (training rows × test columns)
        let cross = net.kernels(x_train, Some(&xt), &request(cfg.kernel, true), opts)?;
        let k_cross = cross.nngp.expect("nngp");
        let t_cross = match cfg.kernel {
            KernelKind::Ntk => cross.ntk.expect("ntk"),
            KernelKind::Nngp => k_cross.clone(),
        };
        mean.rows_mut(s, len)
            .copy_from(&(t_cross.transpose() * &alpha));
        let z = dynamics.eps(&t_cross, schedule)?; // M_t Θ(X, x)
        let kz = &k_train * &z;
        let self_k = net.kernels(&xt, None, &request(KernelKind::Nngp, false), opts)?;
        let self_k = self_k.nngp.expect("nngp");
        for q in 0..len {
            let cross_term = z.column(q).dot(&k_cross.column(q));
            let quad = z.column(q).dot(&kz.column(q));
            variance[s + q] = self_k[(q, q)] - 2.0 * cross_term + quad;
        }
        progress("test", (bi + 1) as f64 / blocks.len() as f64);
    }
    Ok(EnsemblePrediction {
        mean,
        variance: Some(variance),
        ridge,
    })
}

/// `Θ(x, X) α` for every test row, from cross-kernel blocks of `test_block` rows.
fn test_means(
    net: &InfiniteMlp,
    x_train: &Mat<f64>,
    x_test: &Mat<f64>,
    alpha: &Mat<f64>,
    cfg: &EnsembleConfig,
    progress: &(dyn Fn(&str, f64) + Sync),
) -> Result<Mat<f64>, NtkError> {
    let m = x_test.nrows();
    let mut mean = Mat::zeros(m, alpha.ncols());
    let starts: Vec<usize> = (0..m).step_by(cfg.test_block).collect();
    let req = request(cfg.kernel, false);
    for (bi, &s) in starts.iter().enumerate() {
        let len = (m - s).min(cfg.test_block);
        let xt = x_test.rows(s, len).into_owned();
        let k = net.kernels(&xt, Some(x_train), &req, &cfg.kernel_options)?;
        let k = match cfg.kernel {
            KernelKind::Ntk => k.ntk,
            KernelKind::Nngp => k.nngp,
        }
        .expect("requested kernel");
        mean.rows_mut(s, len).copy_from(&(&k * alpha));
        progress("test", (bi + 1) as f64 / starts.len() as f64);
    }
    Ok(mean)
}

/// `Θ(x, X) α` for one row of a cross kernel read from a file (test point × training points):
/// the mean outputs of that test point.
///
/// # Errors
/// [`NtkError::Shape`] if the row's length is not `α`'s row count.
pub fn mean_of_row(row: &[f64], alpha: &Mat<f64>) -> Result<Vec<f64>, NtkError> {
    if row.len() != alpha.nrows() {
        return Err(shape_err(
            "cross-kernel row",
            format!("1 × {}", alpha.nrows()),
            (1, row.len()),
        ));
    }
    Ok((0..alpha.ncols())
        .map(|c| {
            row.iter()
                .zip(alpha.column(c).iter())
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamics::function_change;
    use widealign_models::{BiasInit, MlpSpec, Parameterization};
    use widealign_tensor::rng::SeedStream;
    use widealign_tensor::Activation;

    fn net(act: Activation) -> InfiniteMlp {
        let spec = MlpSpec::uniform(6, 1, 3, 1, act)
            .with_param(Parameterization::Ntk {
                w_std: 1.4,
                b_std: 0.1,
            })
            .with_bias_init(BiasInit::Gaussian);
        InfiniteMlp::from_spec(&spec).unwrap()
    }

    fn data(n: usize, m: usize) -> (Mat<f64>, Mat<f64>, Mat<f64>) {
        let s = SeedStream::new(11);
        let x: Mat<f64> = s.gaussian_matrix("x", n, 6, 1.0);
        let xt: Mat<f64> = s.gaussian_matrix("xt", m, 6, 1.0);
        let y = Mat::from_fn(n, 3, |i, c| (x[(i, c)] * 1.3).tanh() - 0.1);
        (x, y, xt)
    }

    fn cfg(kernel: KernelKind, time: TrainTime) -> EnsembleConfig {
        EnsembleConfig {
            kernel,
            time,
            diag_reg: 1e-3,
            lr: 0.7,
            tile: 7,
            test_block: 5,
            ..EnsembleConfig::default()
        }
    }

    /// The mean equals the closed-form dynamics of [`crate::dynamics`] trained from f_0 = 0,
    /// for both kernels, at finite and infinite times, through both solvers.
    #[test]
    fn predictions_equal_closed_form_dynamics() {
        let (x, y, xt) = data(30, 12);
        for act in [Activation::Relu, Activation::Erf] {
            let net = net(act);
            for kind in [KernelKind::Ntk, KernelKind::Nngp] {
                let req = request(kind, false);
                let k = net
                    .kernels(&x, None, &req, &KernelOptions::default())
                    .unwrap();
                let kx = net
                    .kernels(&xt, Some(&x), &req, &KernelOptions::default())
                    .unwrap();
                let (k, kx) = match kind {
                    KernelKind::Ntk => (k.ntk.unwrap(), kx.ntk.unwrap()),
                    KernelKind::Nngp => (k.nngp.unwrap(), kx.nngp.unwrap()),
                };
                let ridge = 1e-3 * k.trace() / 30.0;
                let reg = &k + Mat::identity(30, 30) * ridge;
                let d = KernelDynamics::new(&reg, 3, 0.7).unwrap();
                for (time, sched) in [
                    (TrainTime::Steps(40.0), Schedule::Flow(40.0)),
                    (TrainTime::Steps(2000.0), Schedule::Flow(2000.0)),
                    (TrainTime::Infinite, Schedule::Flow(1e12)),
                ] {
                    // f_t(x) = f_0(x) − Θ(x,X) ε(t) with f_0 = 0, r_0 = −Y
                    let eps = d.eps(&(-&y), sched).unwrap();
                    let want = function_change(&kx, &eps).unwrap();
                    let c = cfg(kind, time);
                    let got = predict(&net, &x, &y, &xt, &c, &|_, _| {}).unwrap();
                    let err = (&got.mean - &want).abs().max() / want.abs().max();
                    // f32 storage on the Cholesky path (t = ∞): f32 accuracy
                    let tol = if time == TrainTime::Infinite {
                        1e-5
                    } else {
                        1e-9
                    };
                    assert!(err < tol, "{act:?} {kind:?} {time:?}: {err}");
                    assert!((got.ridge - ridge).abs() < 1e-6 * ridge);
                    if time == TrainTime::Infinite {
                        // the eigen path (variance on) gives the same mean
                        let v = EnsembleConfig {
                            variance: true,
                            ..c
                        };
                        let e = predict(&net, &x, &y, &xt, &v, &|_, _| {}).unwrap();
                        assert!((&e.mean - &want).abs().max() / want.abs().max() < 1e-9);
                        // f64 and f32 storage
                        let p64 = EnsembleConfig {
                            precision: Precision::F64,
                            ..c
                        };
                        let g = predict(&net, &x, &y, &xt, &p64, &|_, _| {}).unwrap();
                        assert!((&g.mean - &want).abs().max() / want.abs().max() < 1e-9);
                    }
                }
            }
        }
    }

    /// The variance: NNGP at t = ∞ is the GP posterior variance (less the ridge's share); at t = 0 every predictor's
    /// variance is the prior K(x, x); on training points at t = ∞ with a tiny ridge it vanishes.
    #[test]
    fn variance_matches_posterior_prior_and_interpolation() {
        let (x, y, xt) = data(25, 8);
        let net = net(Activation::Relu);
        let opts = KernelOptions::default();
        let k = net
            .kernels(&x, None, &KernelRequest::outputs(), &opts)
            .unwrap()
            .nngp
            .unwrap();
        let kx = net
            .kernels(&xt, Some(&x), &KernelRequest::outputs(), &opts)
            .unwrap()
            .nngp
            .unwrap();
        let kxx = net
            .kernels(&xt, None, &KernelRequest::outputs(), &opts)
            .unwrap()
            .nngp
            .unwrap();
        let c = EnsembleConfig {
            variance: true,
            ..cfg(KernelKind::Nngp, TrainTime::Infinite)
        };
        let got = predict(&net, &x, &y, &xt, &c, &|_, _| {}).unwrap();
        let reg = &k + Mat::identity(25, 25) * got.ridge;
        let sol = reg.cholesky().unwrap().solve(&kx.transpose());
        let var = got.variance.unwrap();
        for q in 0..8 {
            // K(x,x) − 2kᵀMk + kᵀMKMk with M = K_λ^{−1} is the posterior variance
            // K(x,x) − kᵀK_λ^{−1}k minus λ‖K_λ^{−1}k‖² (K = K_λ − λI)
            let z = sol.column(q);
            let want = kxx[(q, q)] - kx.row(q).dot(&z.transpose()) - got.ridge * z.norm_squared();
            assert!((var[q] - want).abs() < 1e-9 * kxx[(q, q)], "{q}");
        }
        for kind in [KernelKind::Ntk, KernelKind::Nngp] {
            let c0 = EnsembleConfig {
                variance: true,
                ..cfg(kind, TrainTime::Steps(0.0))
            };
            let p = predict(&net, &x, &y, &xt, &c0, &|_, _| {}).unwrap();
            assert!(p.mean.abs().max() == 0.0);
            for q in 0..8 {
                let v = p.variance.as_ref().unwrap()[q];
                assert!((v - kxx[(q, q)]).abs() < 1e-12, "{kind:?}");
            }
            let ci = EnsembleConfig {
                variance: true,
                diag_reg: 1e-10,
                ..cfg(kind, TrainTime::Infinite)
            };
            let p = predict(&net, &x, &y, &x, &ci, &|_, _| {}).unwrap();
            let v = p.variance.unwrap();
            assert!(v.iter().all(|&v| v.abs() < 1e-5), "{kind:?} {v:?}");
        }
    }

    #[test]
    fn plan_refuses_and_says_what_fits() {
        let c = EnsembleConfig {
            precision: Precision::F64,
            ..EnsembleConfig::default()
        };
        let p = plan(60_000, 10_000, 784, 10, &c);
        // the f64 tiles alone are n(n+b)/2·8 bytes
        assert!(
            p.total() > 14_400_000_000 && p.total() < 16_000_000_000,
            "{}",
            p.total()
        );
        let err = check_budget(60_000, 10_000, 784, 10, &c, 10_000_000_000).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("refused") && msg.contains("precision f32"),
            "{msg}"
        );
        let NtkError::TooLarge { fits, .. } = err else {
            panic!()
        };
        let n: usize = fits.last().unwrap().1.parse().unwrap();
        assert!(plan(n, 10_000, 784, 10, &c).total() <= 10_000_000_000);
        assert!(plan(n + 1, 10_000, 784, 10, &c).total() > 10_000_000_000);
        assert!(check_budget(1000, 100, 784, 10, &c, 10_000_000_000).is_ok());
        let bad = EnsembleConfig {
            diag_reg: -1.0,
            ..c
        };
        let (x, y, xt) = data(4, 2);
        assert!(predict(&net(Activation::Relu), &x, &y, &xt, &bad, &|_, _| {}).is_err());
    }
}
