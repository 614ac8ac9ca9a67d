//! Kernels of the convolutional network without batch normalisation: infinite-width NNGP and NTK
//! (with each layer's share) for a flatten or a global-average-pooling readout.
//!
//! The network ([`CnnSpec`], docs/theory.md §3.8) takes `H × W × C_0` images through `L`
//! convolutions of `k × k` filters, stride 1, SAME zero padding, NTK parameterisation with
//! neural-tangents' convention — `h^l(p) = (s_w/√(k²C_{l−1})) Σ_{d,c'} W^l_{d,c'} a^{l−1}(p+d, c')
//! + s_b b^l`, `a^l = φ(h^l)`, `N(0,1)` parameters — and one scalar output, either
//! `f = (s_w/√(HW·C_L)) Σ_{p,c} v_{p,c} a^L(p,c) + s_b b` (flatten) or
//! `f = (s_w/√C_L) Σ_c v_c (1/HW) Σ_p a^L(p,c) + s_b b` (GAP). As every channel count tends to
//! infinity, with `𝒜[K](p,p') = (1/k²) Σ_d K(p+d, p'+d)` (zero outside the image: the average
//! runs over all `k²` window positions, padded ones included, as in neural-tangents) and
//! `E^l = E[φ(u)φ(v)]`, `Ė^l = E[φ'(u)φ'(v)]`, `(u, v)` centred Gaussian with covariance
//! `[[Σ^l(x,x)(p,p), Σ^l(x,x')(p,p')], [·, Σ^l(x',x')(p',p')]]`:
//!
//! ```text
//! K^0(q, q') = x(q)·x'(q')/C_0
//! A^1 = s_w² 𝒜[K^0],      A^{l+1} = s_w² 𝒜[E^l],      Σ^l = A^l + β s_b²
//! Θ^1 = A^1 + s_b²,       Θ^{l+1} = A^{l+1} + s_b² + s_w² 𝒜[Ė^l ⊙ Θ^l]
//! NNGP = s_w² R[E^L] + β s_b²,   NTK = s_w² R[E^L] + s_b² + s_w² R[Ė^L ⊙ Θ^L]
//! ```
//!
//! with the readout average `R[M] = (1/HW) Σ_p M(p,p)` (flatten) or `(1/(HW)²) Σ_{p,p'} M(p,p')`
//! (GAP). Layer `l`'s share of the NTK is `⟨G^l, A^l⟩` for its filters and `s_b² ⟨G^l, 1⟩` for
//! its bias, with the backward weights `G^L = (s_w²/|R|) Ė^L`, `G^l = s_w² Ė^l ⊙ 𝒜ᵀ[G^{l+1}]`
//! (`|R|` = HW or (HW)²); the readout's filters give `s_w² R[E^L]`, its bias `s_b²`.
//!
//! **Bounded memory.** With stride 1 the average `𝒜` keeps the offset `p' − p` of a position
//! pair, so the pairs of one offset `Δ` form a chain of their own through all layers: a
//! `(H − |Δ_y|) × (W − |Δ_x|)` array per layer. A pair of images is processed one offset at a
//! time, in `O(L·HW)` memory; the flatten readout needs only `Δ = 0` (cost `O(L·HW·k)` per pair),
//! GAP all `(2H − 1)(2W − 1)` offsets (cost `O(L·(HW)²·(k + c_φ))` per pair). Only the requested
//! `N × M` outputs are allocated.
//!
//! ```
//! use widealign_models::{CnnReadout, CnnSpec};
//! use widealign_ntk::analytic::KernelOptions;
//! use widealign_ntk::cnn::InfiniteCnn;
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//! // three 4×4 grey images, two relu conv layers of 3×3 filters (their channel counts do not
//! // enter), GAP readout
//! let spec = CnnSpec::new([4, 4, 1], vec![1, 1], 1, Activation::Relu).with_readout(CnnReadout::Gap);
//! let x: Mat<f64> = SeedStream::new(0).gaussian_matrix("x", 3, 16, 1.0);
//! let k = InfiniteCnn::from_spec(&spec).unwrap()
//!     .kernels(&x, None, true, &KernelOptions::default()).unwrap();
//! assert_eq!(k.ntk[(0, 2)], k.ntk[(2, 0)]);
//! let shares = k.shares.unwrap();
//! assert!((shares.total() - &k.ntk).abs().max() < 1e-12 * k.ntk.abs().max());
//! ```

use rayon::prelude::*;
use widealign_models::{
    BiasInit, Cnn, CnnReadout, CnnSignals, CnnSpec, FeedbackPath, Grads, ImageLayout, Network,
    Norm, Padding, Parameterization,
};
use widealign_tensor::{gemm, Activation, Float, Mat};

use crate::analytic::KernelOptions;
use crate::dual::DualKernel;
use crate::error::{check_finite, shape_err};
use crate::NtkError;

/// The NTK split by parameter tensor. Each matrix is `N × M`.
#[derive(Clone, Debug, PartialEq)]
pub struct CnnShares {
    /// Share of each convolution's filters, layer 1 first.
    pub conv_weights: Vec<Mat<f64>>,
    /// Share of each convolution's bias.
    pub conv_biases: Vec<Mat<f64>>,
    /// Share of the readout weights.
    pub readout: Mat<f64>,
    /// Share of the readout bias (`s_b²` everywhere).
    pub readout_bias: Mat<f64>,
}

impl CnnShares {
    /// The shares as `(name, matrix)` pairs: `conv1.w`, `conv1.b`, …, `readout.w`, `readout.b`.
    pub fn named(&self) -> Vec<(String, &Mat<f64>)> {
        let mut out = Vec::new();
        for (l, (w, b)) in self.conv_weights.iter().zip(&self.conv_biases).enumerate() {
            out.push((format!("conv{}.w", l + 1), w));
            out.push((format!("conv{}.b", l + 1), b));
        }
        out.push(("readout.w".into(), &self.readout));
        out.push(("readout.b".into(), &self.readout_bias));
        out
    }

    /// The whole NTK: the sum of the shares.
    pub fn total(&self) -> Mat<f64> {
        let mut t = &self.readout + &self.readout_bias;
        for m in self.conv_weights.iter().chain(&self.conv_biases) {
            t += m;
        }
        t
    }
}

/// Infinite-width kernels of the scalar output between two sets of images.
#[derive(Clone, Debug, PartialEq)]
pub struct CnnKernels {
    /// Output NNGP, `N × M`.
    pub nngp: Mat<f64>,
    /// Output NTK, `N × M`.
    pub ntk: Mat<f64>,
    /// The NTK split by parameter, if requested; the shares sum to `ntk`.
    pub shares: Option<CnnShares>,
}

/// The infinite-width limit of a [`CnnSpec`] (see the module docs).
///
/// Built only from a spec, like [`crate::analytic::InfiniteMlp`], so a finite [`widealign_models::Cnn`]
/// and its kernels cannot describe different networks. The kernels depend on the image shape,
/// the number of convolutions, the filter size, the readout, the activation, `s_w`, `s_b` and
/// the bias initialisation (`β`); the channel counts and the number of outputs do not enter
/// (the output NTK is `Θ ⊗ I_C`).
#[derive(Clone, Debug, PartialEq)]
pub struct InfiniteCnn {
    spec: CnnSpec,
    w_std: f64,
    b_std: f64,
}

/// The numbers of a [`CnnSpec`] that enter the kernels.
#[derive(Clone, Copy, Debug)]
struct Arch {
    height: usize,
    width: usize,
    channels: usize,
    conv_layers: usize,
    kernel: usize,
    readout: CnnReadout,
    activation: Activation,
    w_std: f64,
    b_std: f64,
}

/// One output entry: NNGP, NTK and (if requested) the shares in the order
/// `conv1.w, …, convL.w, conv1.b, …, convL.b, readout.w, readout.b`.
#[derive(Clone, Debug, Default)]
struct Entry {
    nngp: f64,
    ntk: f64,
    shares: Vec<f64>,
}

/// Scratch arrays for one chain of position pairs (one offset), reused across offsets and pairs.
struct Work {
    k: Vec<f64>,
    sig: Vec<f64>,
    theta: Vec<f64>,
    tmp: Vec<f64>,
    avg: Vec<f64>,
    e: Vec<f64>,
    ed: Vec<f64>,
    k11: Vec<f64>,
    k22: Vec<f64>,
    prod: Vec<f64>,
    /// `A^l` and `Ė^l` per layer, kept for the backward pass of the shares.
    a_store: Vec<Vec<f64>>,
    ed_store: Vec<Vec<f64>>,
}

impl Work {
    fn new(len: usize, layers: usize, shares: bool) -> Self {
        let v = || vec![0.0; len];
        let store = if shares { layers } else { 0 };
        Work {
            k: v(),
            sig: v(),
            theta: v(),
            tmp: v(),
            avg: v(),
            e: v(),
            ed: v(),
            k11: v(),
            k22: v(),
            prod: v(),
            a_store: vec![v(); store],
            ed_store: vec![v(); store],
        }
    }
}

/// The rectangle of position pairs `(p, p + Δ)` with both positions inside an `h × w` image:
/// first row and column of `p`, and its size.
#[derive(Clone, Copy, Debug)]
struct Chain {
    dy: isize,
    dx: isize,
    y0: usize,
    x0: usize,
    rows: usize,
    cols: usize,
}

impl Chain {
    fn new(dy: isize, dx: isize, h: usize, w: usize) -> Self {
        Chain {
            dy,
            dx,
            y0: (-dy).max(0) as usize,
            x0: (-dx).max(0) as usize,
            rows: h - dy.unsigned_abs(),
            cols: w - dx.unsigned_abs(),
        }
    }

    fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Image positions (row-major index `y·W + x`) of the first and second member of pair `r`.
    #[inline]
    fn positions(&self, r: usize, w: usize) -> (usize, usize) {
        let (yy, xx) = (r / self.cols, r % self.cols);
        let (y, x) = (self.y0 + yy, self.x0 + xx);
        let p = y * w + x;
        let q = (y as isize + self.dy) as usize * w + (x as isize + self.dx) as usize;
        (p, q)
    }
}

/// `dst = scale · Σ_{a,b ∈ lo..=hi} src[y + a, x + b]` over a `rows × cols` array, terms outside
/// it zero (separable: along rows into `tmp`, then along columns).
#[allow(clippy::too_many_arguments)]
fn box_sum(
    src: &[f64],
    dst: &mut [f64],
    tmp: &mut [f64],
    rows: usize,
    cols: usize,
    lo: isize,
    hi: isize,
    scale: f64,
) {
    let span = |i: usize, n: usize| {
        let a = (i as isize + lo).max(0) as usize;
        let b = (i as isize + hi).min(n as isize - 1);
        (a, b)
    };
    for y in 0..rows {
        let row = &src[y * cols..(y + 1) * cols];
        for x in 0..cols {
            let (a, b) = span(x, cols);
            let mut s = 0.0;
            if b >= a as isize {
                for v in &row[a..=b as usize] {
                    s += v;
                }
            }
            tmp[y * cols + x] = s;
        }
    }
    for y in 0..rows {
        let (a, b) = span(y, rows);
        for x in 0..cols {
            let mut s = 0.0;
            if b >= a as isize {
                for yy in a..=b as usize {
                    s += tmp[yy * cols + x];
                }
            }
            dst[y * cols + x] = scale * s;
        }
    }
}

/// Per-image variances `Σ^l(x, x)(p, p)`, index `[l − 1][p]`.
type Variances = Vec<Vec<f64>>;

/// The variances of the images of one pair, or `None` while computing an image's own.
type PairVariances<'a> = Option<(&'a Variances, &'a Variances)>;

impl InfiniteCnn {
    /// The infinite-width limit of `spec`.
    ///
    /// # Errors
    /// [`NtkError::Model`] for a spec that does not validate; [`NtkError::Architecture`] for
    /// batch normalisation, a stride other than 1, VALID padding or the standard
    /// parameterisation (the kernels here are those of stride-1 SAME convolutions without
    /// normalisation in the NTK parameterisation).
    pub fn from_spec(spec: &CnnSpec) -> Result<Self, NtkError> {
        spec.validate()?;
        let unsupported = |what: &str| {
            Err(NtkError::Architecture(format!(
                "the infinite-width CNN kernels are computed for stride 1, SAME padding, no \
                 normalisation and the NTK parameterisation; this spec has {what}"
            )))
        };
        if spec.norm != Norm::None {
            return unsupported("batch normalisation");
        }
        if spec.stride != 1 {
            return unsupported(&format!("stride {}", spec.stride));
        }
        if spec.padding != Padding::Same {
            return unsupported("VALID padding");
        }
        match spec.param {
            Parameterization::Ntk { w_std, b_std } => Ok(InfiniteCnn {
                spec: spec.clone(),
                w_std,
                b_std,
            }),
            Parameterization::Standard { .. } => {
                unsupported("the standard parameterisation (no width-independent NTK)")
            }
        }
    }

    /// The spec this limit was built from.
    pub fn spec(&self) -> &CnnSpec {
        &self.spec
    }

    /// The numbers of the spec the recursion reads.
    fn arch(&self) -> Arch {
        let [height, width, channels] = self.spec.image;
        Arch {
            height,
            width,
            channels,
            conv_layers: self.spec.conv_layers(),
            kernel: self.spec.kernel,
            readout: self.spec.readout,
            activation: self.spec.activation,
            w_std: self.w_std,
            b_std: self.b_std,
        }
    }

    /// `β`: 1 for Gaussian initial biases, 0 for zero initial biases.
    pub fn beta(&self) -> f64 {
        match self.spec.bias_init {
            BiasInit::Gaussian => 1.0,
            BiasInit::Zero => 0.0,
        }
    }

    /// The window offsets `lo..=hi` of SAME padding (XLA's: `⌊(k − 1)/2⌋` before, the rest
    /// after).
    fn window(&self) -> (isize, isize) {
        let k = self.spec.kernel as isize;
        let before = (k - 1) / 2;
        (-before, k - 1 - before)
    }

    fn check_inputs(&self, what: &str, x: &Mat<f64>) -> Result<(), NtkError> {
        let [h, w, c] = self.spec.image;
        if x.ncols() != self.spec.input_dim() {
            return Err(shape_err(
                what,
                format!(
                    "N × {} (one {h}×{w}×{c} image per row)",
                    self.spec.input_dim()
                ),
                x.shape(),
            ));
        }
        if x.nrows() == 0 {
            return Err(NtkError::InvalidOption {
                name: what.into(),
                reason: "no images".into(),
            });
        }
        check_finite(what, x)
    }

    /// The recursion of the module docs along one chain (offset `Δ`) of the images `xa`, `xb`
    /// (HWC slices). Returns `(Σ_r E^L(r), Σ_r Ė^L(r) Θ^L(r))` and, if `shares` is given, adds
    /// `Σ_r G^l A^l` and `Σ_r G^l` (unscaled: `G^L = Ė^L`) to `shares[l − 1]` and
    /// `shares[L + l − 1]`. With `vars = None` the images are one and `Δ = 0`: the variances
    /// are the chain's own `Σ^l`, and they are written to `own`.
    #[allow(clippy::too_many_arguments)]
    fn chain(
        &self,
        xa: &[f64],
        xb: &[f64],
        ch: Chain,
        vars: PairVariances,
        dual: &DualKernel,
        w: &mut Work,
        shares: Option<&mut [f64]>,
        mut own: Option<&mut Variances>,
    ) -> (f64, f64) {
        let a = self.arch();
        let (wd, c0) = (a.width, a.channels);
        let big_l = a.conv_layers;
        let n = ch.len();
        let sw2 = a.w_std * a.w_std;
        let sb2 = a.b_std * a.b_std;
        let bias = self.beta() * sb2;
        let (lo, hi) = self.window();
        let kk = (a.kernel * a.kernel) as f64;
        let scale = sw2 / kk;
        for r in 0..n {
            let (p, q) = ch.positions(r, wd);
            let (pa, pb) = (&xa[p * c0..(p + 1) * c0], &xb[q * c0..(q + 1) * c0]);
            let mut s = 0.0;
            for (u, v) in pa.iter().zip(pb) {
                s += u * v;
            }
            w.k[r] = s / c0 as f64;
        }
        for l in 0..big_l {
            // A^{l+1} = s_w² 𝒜[K^0 or E^l]
            box_sum(
                &w.k[..n],
                &mut w.avg[..n],
                &mut w.tmp[..n],
                ch.rows,
                ch.cols,
                lo,
                hi,
                scale,
            );
            if l > 0 {
                for r in 0..n {
                    w.prod[r] = w.ed[r] * w.theta[r];
                }
                box_sum(
                    &w.prod[..n],
                    &mut w.k[..n],
                    &mut w.tmp[..n],
                    ch.rows,
                    ch.cols,
                    lo,
                    hi,
                    scale,
                );
                for r in 0..n {
                    w.theta[r] = w.avg[r] + sb2 + w.k[r];
                }
            } else {
                for r in 0..n {
                    w.theta[r] = w.avg[r] + sb2;
                }
            }
            for r in 0..n {
                w.sig[r] = w.avg[r] + bias;
            }
            if shares.is_some() {
                w.a_store[l][..n].copy_from_slice(&w.avg[..n]);
            }
            match vars {
                Some((va, vb)) => {
                    // E[φ(u)φ(v)] is symmetric in (u, v): a canonical order of the variances
                    // makes the kernel of (x, x') the transpose of that of (x', x) also under
                    // quadrature (the polar rule is not symmetric in them)
                    for r in 0..n {
                        let (p, q) = ch.positions(r, wd);
                        let (u, v) = (va[l][p], vb[l][q]);
                        w.k11[r] = u.min(v);
                        w.k22[r] = u.max(v);
                    }
                }
                None => {
                    w.k11[..n].copy_from_slice(&w.sig[..n]);
                    w.k22[..n].copy_from_slice(&w.sig[..n]);
                    if let Some(own) = own.as_deref_mut() {
                        own[l][..n].copy_from_slice(&w.sig[..n]);
                    }
                }
            }
            dual.eval_pairs_into(
                &w.k11[..n],
                &w.sig[..n],
                &w.k22[..n],
                &mut w.e[..n],
                &mut w.ed[..n],
            );
            if shares.is_some() {
                w.ed_store[l][..n].copy_from_slice(&w.ed[..n]);
            }
            // the next layer's input kernel
            w.k[..n].copy_from_slice(&w.e[..n]);
        }
        let mut se = 0.0;
        let mut st = 0.0;
        for r in 0..n {
            se += w.e[r];
            st += w.ed[r] * w.theta[r];
        }
        if let Some(sh) = shares {
            // backward: G^L = Ė^L, G^l = s_w² Ė^l ⊙ 𝒜ᵀ[G^{l+1}] (𝒜ᵀ: the mirrored window)
            w.prod[..n].copy_from_slice(&w.ed_store[big_l - 1][..n]);
            for l in (0..big_l).rev() {
                let mut sa = 0.0;
                let mut sg = 0.0;
                for r in 0..n {
                    sa += w.prod[r] * w.a_store[l][r];
                    sg += w.prod[r];
                }
                sh[l] += sa;
                sh[big_l + l] += sg;
                if l > 0 {
                    box_sum(
                        &w.prod[..n],
                        &mut w.avg[..n],
                        &mut w.tmp[..n],
                        ch.rows,
                        ch.cols,
                        -hi,
                        -lo,
                        scale,
                    );
                    for r in 0..n {
                        w.prod[r] = w.ed_store[l - 1][r] * w.avg[r];
                    }
                }
            }
        }
        (se, st)
    }

    /// `Σ^l(x, x)(p, p)` of one image.
    fn variances(&self, x: &[f64], dual: &DualKernel, w: &mut Work) -> Variances {
        let a = self.arch();
        let mut own = vec![vec![0.0; a.height * a.width]; a.conv_layers];
        let ch = Chain::new(0, 0, a.height, a.width);
        self.chain(x, x, ch, None, dual, w, None, Some(&mut own));
        own
    }

    /// One output entry for the images `xa`, `xb` with variances `va`, `vb`.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        xa: &[f64],
        xb: &[f64],
        va: &Variances,
        vb: &Variances,
        dual: &DualKernel,
        w: &mut Work,
        want_shares: bool,
    ) -> Entry {
        let a = self.arch();
        let (h, wd, big_l) = (a.height as isize, a.width as isize, a.conv_layers);
        let sw2 = a.w_std * a.w_std;
        let sb2 = a.b_std * a.b_std;
        let mut sh = if want_shares {
            vec![0.0; 2 * big_l + 2]
        } else {
            Vec::new()
        };
        let (mut se, mut st) = (0.0, 0.0);
        let hw = (a.height * a.width) as f64;
        let norm = match a.readout {
            CnnReadout::Flatten => {
                let ch = Chain::new(0, 0, a.height, a.width);
                let sh_arg = want_shares.then_some(&mut sh[..]);
                (se, st) = self.chain(xa, xb, ch, Some((va, vb)), dual, w, sh_arg, None);
                hw
            }
            CnnReadout::Gap => {
                for dy in -(h - 1)..h {
                    for dx in -(wd - 1)..wd {
                        let ch = Chain::new(dy, dx, a.height, a.width);
                        let sh_arg = want_shares.then_some(&mut sh[..]);
                        let (e, t) = self.chain(xa, xb, ch, Some((va, vb)), dual, w, sh_arg, None);
                        se += e;
                        st += t;
                    }
                }
                hw * hw
            }
        };
        let readout = sw2 * se / norm;
        if want_shares {
            for v in &mut sh[..2 * big_l] {
                *v *= sw2 / norm;
            }
            for v in &mut sh[big_l..2 * big_l] {
                *v *= sb2;
            }
            sh[2 * big_l] = readout;
            sh[2 * big_l + 1] = sb2;
        }
        Entry {
            nngp: readout + self.beta() * sb2,
            ntk: readout + sb2 + sw2 * st / norm,
            shares: sh,
        }
    }

    /// Kernels of the scalar output between the images in the rows of `x1` (`N × H·W·C_0`, HWC
    /// order) and of `x2` (`None`: `x1`, computed for `i ≤ j` and mirrored, so exactly
    /// symmetric); with `shares`, also each parameter tensor's share of the NTK.
    ///
    /// Memory: the requested `N × M` outputs plus `O(L·H·W)` per thread. Deterministic for any
    /// thread count (each entry is computed by the same code).
    ///
    /// # Errors
    /// [`NtkError::Shape`] if a row is not `H·W·C_0` numbers, [`NtkError::InvalidOption`] for
    /// an empty input set or a bad quadrature order, [`NtkError::NonFinite`] for NaN/∞ inputs.
    pub fn kernels(
        &self,
        x1: &Mat<f64>,
        x2: Option<&Mat<f64>>,
        shares: bool,
        options: &KernelOptions,
    ) -> Result<CnnKernels, NtkError> {
        self.check_inputs("inputs", x1)?;
        if let Some(x2) = x2 {
            self.check_inputs("second inputs", x2)?;
        }
        let a = self.arch();
        let dual = DualKernel::new(a.activation, options.quadrature, options.force_quadrature)?;
        let symmetric = x2.is_none();
        let x2m = x2.unwrap_or(x1);
        let (n, m) = (x1.nrows(), x2m.nrows());
        let (hw, big_l) = (a.height * a.width, a.conv_layers);
        // each image as an HWC slice, whatever the spec's input layout
        let (pixels, c0) = (hw, a.channels);
        let layout = self.spec.layout;
        let images = |x: &Mat<f64>| -> Vec<Vec<f64>> {
            (0..x.nrows())
                .map(|i| match layout {
                    ImageLayout::Hwc => x.row(i).iter().copied().collect(),
                    ImageLayout::Chw => (0..pixels * c0)
                        .map(|v| x[(i, (v % c0) * pixels + v / c0)])
                        .collect(),
                })
                .collect()
        };
        let ia = images(x1);
        let ib = if symmetric { Vec::new() } else { images(x2m) };
        let ib = if symmetric { &ia } else { &ib };
        let vars = |imgs: &Vec<Vec<f64>>| -> Vec<Variances> {
            imgs.par_iter()
                .map(|x| self.variances(x, &dual, &mut Work::new(hw, big_l, false)))
                .collect()
        };
        let va = vars(&ia);
        let vb = if symmetric { va.clone() } else { vars(ib) };
        let cols: Vec<Vec<Entry>> = (0..m)
            .into_par_iter()
            .map(|j| {
                let mut w = Work::new(hw, big_l, shares);
                let top = if symmetric { j + 1 } else { n };
                (0..top)
                    .map(|i| self.entry(&ia[i], &ib[j], &va[i], &vb[j], &dual, &mut w, shares))
                    .collect()
            })
            .collect();
        let mut nngp = Mat::zeros(n, m);
        let mut ntk = Mat::zeros(n, m);
        let mut sh: Vec<Mat<f64>> = if shares {
            vec![Mat::zeros(n, m); 2 * big_l + 2]
        } else {
            Vec::new()
        };
        for (j, col) in cols.iter().enumerate() {
            for (i, e) in col.iter().enumerate() {
                let mut put = |p: (usize, usize)| {
                    nngp[p] = e.nngp;
                    ntk[p] = e.ntk;
                    for (s, v) in sh.iter_mut().zip(&e.shares) {
                        s[p] = *v;
                    }
                };
                put((i, j));
                if symmetric {
                    put((j, i));
                }
            }
        }
        let shares = shares.then(|| {
            let mut it = sh.into_iter();
            let conv_weights: Vec<Mat<f64>> = it.by_ref().take(big_l).collect();
            let conv_biases: Vec<Mat<f64>> = it.by_ref().take(big_l).collect();
            CnnShares {
                conv_weights,
                conv_biases,
                readout: it.next().expect("readout share"),
                readout_bias: it.next().expect("readout bias share"),
            }
        });
        Ok(CnnKernels { nngp, ntk, shares })
    }
}

/// Per-example gradients of output `output` of `net`, one `N × |θ_t|` matrix per parameter
/// tensor `t` in the order of [`Cnn::params`], in `f64`.
fn per_example_gradients<T: Float>(
    net: &Cnn<T>,
    x: &Mat<T>,
    output: usize,
) -> Result<Vec<Mat<f64>>, NtkError> {
    let grads: Vec<Vec<Vec<f64>>> = (0..x.nrows())
        .into_par_iter()
        .map(|i| {
            let trace = net.forward(&x.rows(i, 1).into_owned())?;
            let mut err = Mat::zeros(1, net.spec.output_dim);
            err[(0, output)] = T::one();
            let mut signals = CnnSignals::default();
            net.backward_signals_into(FeedbackPath::Live, &trace, &err, &mut signals);
            let mut g = Grads::new();
            Cnn::gradients_into(&net.spec, &signals, &err, &trace, &mut g);
            Ok(Cnn::<T>::grad_slices(&g)
                .into_iter()
                .map(|s| {
                    s.expect("backprop trains every tensor")
                        .iter()
                        .map(|v| v.as_f64())
                        .collect()
                })
                .collect())
        })
        .collect::<Result<_, NtkError>>()?;
    let tensors = grads.first().map_or(0, Vec::len);
    Ok((0..tensors)
        .map(|t| {
            let len = grads[0][t].len();
            Mat::from_fn(grads.len(), len, |i, k| grads[i][t][k])
        })
        .collect())
}

/// The empirical NTK of the finite network `net` (no batch normalisation) for output unit
/// `output`, between the images in the rows of `x1` and of `x2` (`None`: `x1`), split by
/// parameter tensor like [`CnnKernels::shares`].
///
/// Each share is the Gram matrix of the per-example gradients of that tensor
/// (`Θ_t(x, x') = ∂f(x)/∂θ_t · ∂f(x')/∂θ_t`), taken from the model's own backward pass
/// ([`Network::backward_signals_into`] with the live weights and [`Network::gradients_into`]) one
/// image at a time. Memory: the gradients of all images, `(N + M)·|θ|` values of `f64`.
/// Deterministic for any thread count.
///
/// ```
/// use widealign_models::{BiasInit, Cnn, CnnSpec};
/// use widealign_ntk::analytic::KernelOptions;
/// use widealign_ntk::cnn::{empirical_cnn_ntk, InfiniteCnn};
/// use widealign_tensor::{rng::SeedStream, Activation, Mat};
/// let spec = CnnSpec::new([4, 4, 1], vec![256, 256], 1, Activation::Erf)
///     .with_bias_init(BiasInit::Gaussian);
/// let x: Mat<f64> = SeedStream::new(0).gaussian_matrix("x", 3, 16, 1.0);
/// let finite = empirical_cnn_ntk(&Cnn::<f64>::new(&spec, 1).unwrap(), &x, None, 0).unwrap();
/// let k = InfiniteCnn::from_spec(&spec).unwrap()
///     .kernels(&x, None, false, &KernelOptions::default()).unwrap();
/// assert!((finite.total() - &k.ntk).norm() / k.ntk.norm() < 0.2); // O(1/√channels)
/// ```
///
/// # Errors
/// [`NtkError::Architecture`] for batch normalisation (the kernel of a batch-normalised network
/// depends on the whole batch); [`NtkError::InvalidOption`] naming `output` for an output unit
/// `≥ C`; model errors for images that do not fit the network.
pub fn empirical_cnn_ntk<T: Float>(
    net: &Cnn<T>,
    x1: &Mat<T>,
    x2: Option<&Mat<T>>,
    output: usize,
) -> Result<CnnShares, NtkError> {
    let spec = &net.spec;
    if spec.norm != Norm::None {
        return Err(NtkError::Architecture(
            "the empirical NTK per image pair is defined without batch normalisation".into(),
        ));
    }
    if output >= spec.output_dim {
        return Err(NtkError::InvalidOption {
            name: "output".into(),
            reason: format!(
                "must be below the {} outputs, got {output}",
                spec.output_dim
            ),
        });
    }
    let g1 = per_example_gradients(net, x1, output)?;
    let g2 = match x2 {
        Some(x2) => per_example_gradients(net, x2, output)?,
        None => g1.clone(),
    };
    let mut grams = g1.iter().zip(&g2).map(|(a, b)| gemm::matmul_nt(a, b));
    let big_l = spec.conv_layers();
    let mut conv_weights = Vec::with_capacity(big_l);
    let mut conv_biases = Vec::with_capacity(big_l);
    for _ in 0..big_l {
        conv_weights.push(grams.next().expect("a kernel per layer"));
        conv_biases.push(grams.next().expect("a bias per layer"));
    }
    Ok(CnnShares {
        conv_weights,
        conv_biases,
        readout: grams.next().expect("readout weights"),
        readout_bias: grams.next().expect("readout bias"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytic::{InfiniteMlp, KernelRequest};
    use nalgebra::SymmetricEigen;
    use widealign_models::MlpSpec;
    use widealign_tensor::rng::SeedStream;

    /// `layers` convolutions on `(H, W, C)` images (one channel each: the channel counts do not
    /// enter), 3×3 filters, GAP, Gaussian biases, `s_w = 1`, `s_b = 0.1`.
    fn spec(image: (usize, usize, usize), layers: usize, act: Activation) -> CnnSpec {
        CnnSpec::new([image.0, image.1, image.2], vec![1; layers], 1, act)
            .with_bias_init(BiasInit::Gaussian)
    }

    trait WithStds {
        fn with_stds(self, w_std: f64, b_std: f64) -> Self;
    }

    impl WithStds for CnnSpec {
        fn with_stds(self, w_std: f64, b_std: f64) -> Self {
            self.with_param(Parameterization::Ntk { w_std, b_std })
        }
    }

    const ACTS: [Activation; 5] = [
        Activation::Relu,
        Activation::Erf,
        Activation::Tanh,
        Activation::Identity,
        Activation::Gelu,
    ];

    /// `n` images `h × w × c`; image 1 is image 0 scaled by 2, image 2 its negative, image 3 zero
    /// except one pixel.
    fn images(n: usize, h: usize, w: usize, c: usize, seed: u64) -> Mat<f64> {
        let mut x: Mat<f64> = SeedStream::new(seed).gaussian_matrix("x", n, h * w * c, 0.8);
        let r0 = x.row(0).into_owned();
        x.set_row(1, &(&r0 * 2.0));
        x.set_row(2, &(-&r0));
        x.row_mut(3).fill(0.0);
        x[(3, 0)] = 1.0;
        x
    }

    fn min_eig_ratio(m: &Mat<f64>) -> f64 {
        let e = SymmetricEigen::new(m.clone()).eigenvalues;
        e.min() / e.max()
    }

    /// An independent, literal implementation of the recursion: full `(HW)²` position-pair
    /// arrays per layer, the window average written as a sum over all `k²` offsets with zero
    /// outside the image.
    fn brute_force(sp: &CnnSpec, xa: &[f64], xb: &[f64]) -> (f64, f64) {
        let arch = InfiniteCnn::from_spec(sp).unwrap().arch();
        let bias_init = sp.bias_init;
        let (h, w, c) = (arch.height, arch.width, arch.channels);
        let hw = h * w;
        let dual = DualKernel::new(arch.activation, Default::default(), false).unwrap();
        let sw2 = arch.w_std * arch.w_std;
        let sb2 = arch.b_std * arch.b_std;
        let beta = if bias_init == BiasInit::Gaussian {
            1.0
        } else {
            0.0
        };
        let k = arch.kernel as isize;
        let before = (k - 1) / 2;
        let avg = |m: &dyn Fn(usize, usize) -> f64, p: usize, q: usize| -> f64 {
            let (py, px, qy, qx) = (
                (p / w) as isize,
                (p % w) as isize,
                (q / w) as isize,
                (q % w) as isize,
            );
            let mut s = 0.0;
            for i in 0..k {
                for j in 0..k {
                    let (dy, dx) = (i - before, j - before);
                    let (ay, ax, by, bx) = (py + dy, px + dx, qy + dy, qx + dx);
                    let inside =
                        |y: isize, x: isize| y >= 0 && x >= 0 && y < h as isize && x < w as isize;
                    if inside(ay, ax) && inside(by, bx) {
                        s += m(
                            (ay as usize) * w + ax as usize,
                            (by as usize) * w + bx as usize,
                        );
                    }
                }
            }
            s / (k * k) as f64
        };
        // the three blocks (a,a), (a,b), (b,b) of the joint covariance
        let imgs = [xa, xb];
        let gram = |s: usize, t: usize, p: usize, q: usize| -> f64 {
            (0..c)
                .map(|ch| imgs[s][p * c + ch] * imgs[t][q * c + ch])
                .sum::<f64>()
                / c as f64
        };
        let pairs = [(0, 0), (0, 1), (1, 1)];
        let mut prev: Vec<Vec<f64>> = pairs
            .iter()
            .map(|&(s, t)| (0..hw * hw).map(|i| gram(s, t, i / hw, i % hw)).collect())
            .collect();
        let mut theta = vec![0.0; hw * hw];
        let (mut e_ab, mut ed_ab) = (vec![0.0; hw * hw], vec![0.0; hw * hw]);
        for l in 0..arch.conv_layers {
            let sig: Vec<Vec<f64>> = prev
                .iter()
                .map(|m| {
                    (0..hw * hw)
                        .map(|i| sw2 * avg(&|p, q| m[p * hw + q], i / hw, i % hw) + beta * sb2)
                        .collect()
                })
                .collect();
            let prod: Vec<f64> = (0..hw * hw).map(|i| ed_ab[i] * theta[i]).collect();
            theta = (0..hw * hw)
                .map(|i| {
                    let a = sig[1][i] - beta * sb2;
                    let back = if l > 0 {
                        sw2 * avg(&|p, q| prod[p * hw + q], i / hw, i % hw)
                    } else {
                        0.0
                    };
                    a + sb2 + back
                })
                .collect();
            let mut next = vec![vec![0.0; hw * hw]; 3];
            for (b, &(s, t)) in pairs.iter().enumerate() {
                let (vs, vt) = (
                    &sig[if s == 0 { 0 } else { 2 }],
                    &sig[if t == 0 { 0 } else { 2 }],
                );
                for i in 0..hw * hw {
                    let (p, q) = (i / hw, i % hw);
                    let (e, ed) = dual.eval(vs[p * hw + p], sig[b][i], vt[q * hw + q]);
                    next[b][i] = e;
                    if b == 1 {
                        e_ab[i] = e;
                        ed_ab[i] = ed;
                    }
                }
            }
            prev = next;
        }
        let (se, st, norm) = match arch.readout {
            CnnReadout::Flatten => (
                (0..hw).map(|p| e_ab[p * hw + p]).sum::<f64>(),
                (0..hw)
                    .map(|p| ed_ab[p * hw + p] * theta[p * hw + p])
                    .sum::<f64>(),
                hw as f64,
            ),
            CnnReadout::Gap => (
                e_ab.iter().sum::<f64>(),
                ed_ab.iter().zip(&theta).map(|(a, b)| a * b).sum::<f64>(),
                (hw * hw) as f64,
            ),
        };
        (sw2 * se / norm + beta * sb2, sw2 * (se + st) / norm + sb2)
    }

    #[test]
    fn offset_chains_equal_the_full_position_pair_recursion() {
        for (k, (h, w, c), readout, act, bias) in [
            (
                3,
                (4, 5, 2),
                CnnReadout::Gap,
                Activation::Relu,
                BiasInit::Gaussian,
            ),
            (
                3,
                (4, 5, 2),
                CnnReadout::Flatten,
                Activation::Erf,
                BiasInit::Zero,
            ),
            (
                2,
                (3, 4, 1),
                CnnReadout::Gap,
                Activation::Erf,
                BiasInit::Gaussian,
            ),
            (
                5,
                (2, 2, 2),
                CnnReadout::Gap,
                Activation::Tanh,
                BiasInit::Zero,
            ),
            (
                4,
                (5, 3, 1),
                CnnReadout::Flatten,
                Activation::Relu,
                BiasInit::Gaussian,
            ),
        ] {
            let arch = spec((h, w, c), 3, act)
                .with_kernel(k)
                .with_readout(readout)
                .with_stds(1.4, 0.3)
                .with_bias_init(bias);
            let x = images(5, h, w, c, 1);
            let got = InfiniteCnn::from_spec(&arch.clone())
                .unwrap()
                .kernels(&x, None, false, &KernelOptions::default())
                .unwrap();
            for i in 0..5 {
                for j in 0..5 {
                    let row = |r: usize| x.row(r).iter().copied().collect::<Vec<f64>>();
                    let (nngp, ntk) = brute_force(&arch, &row(i), &row(j));
                    let tol = 1e-12 * (1.0 + ntk.abs());
                    assert!(
                        (got.nngp[(i, j)] - nngp).abs() < tol
                            && (got.ntk[(i, j)] - ntk).abs() < tol,
                        "k={k} {readout:?} {act}: ({i},{j}) {} vs {nngp}, {} vs {ntk}",
                        got.nngp[(i, j)],
                        got.ntk[(i, j)]
                    );
                }
            }
        }
    }

    #[test]
    fn symmetric_psd_and_shares_sum_to_ntk() {
        for act in ACTS {
            // the quadratures cost thousands of activation calls per dual-kernel value (about
            // 1 ms for gelu): 2×2 images, where GAP has 9 offsets
            let side = if matches!(act, Activation::Tanh | Activation::Gelu) {
                2
            } else {
                4
            };
            let x = images(6, side, side, 2, 2);
            for readout in [CnnReadout::Gap, CnnReadout::Flatten] {
                for bias in [BiasInit::Gaussian, BiasInit::Zero] {
                    let arch = spec((side, side, 2), 3, act)
                        .with_readout(readout)
                        .with_stds(1.3, 0.2)
                        .with_bias_init(bias);
                    let inf = InfiniteCnn::from_spec(&arch).unwrap();
                    let k = inf
                        .kernels(&x, None, true, &KernelOptions::default())
                        .unwrap();
                    let tag = format!("{act} {readout:?} {bias:?}");
                    for m in [&k.nngp, &k.ntk] {
                        assert_eq!(m, &m.transpose(), "{tag}: exactly symmetric");
                        assert!(min_eig_ratio(m) > -1e-12, "{tag}: PSD");
                    }
                    let sh = k.shares.as_ref().unwrap();
                    assert!(
                        (sh.total() - &k.ntk).abs().max() < 1e-12 * k.ntk.abs().max(),
                        "{tag}"
                    );
                    for (name, s) in sh.named() {
                        assert!(min_eig_ratio(s) > -1e-10, "{tag}: {name} PSD");
                    }
                    assert_eq!(sh.named().len(), 8);
                    // without shares: the same NNGP and NTK bits
                    let plain = inf
                        .kernels(&x, None, false, &KernelOptions::default())
                        .unwrap();
                    assert_eq!((plain.nngp, plain.ntk), (k.nngp.clone(), k.ntk.clone()));
                    // a cross kernel against a subset equals the corresponding block
                    let sub = x.rows(1, 3).into_owned();
                    let c = inf
                        .kernels(&x, Some(&sub), true, &KernelOptions::default())
                        .unwrap();
                    let block = k.ntk.columns(1, 3).into_owned();
                    assert!(
                        (c.ntk - block).abs().max() < 1e-13 * k.ntk.abs().max(),
                        "{tag}"
                    );
                }
            }
        }
    }

    /// With 1×1 filters the convolution acts on each position alone as a dense layer, so the
    /// CNN's kernels are averages of the MLP's kernels of the pixel vectors: over equal
    /// positions (flatten) or over all position pairs (GAP). On a 1×1 image both readouts are
    /// the MLP exactly — and the shares are the MLP's layer shares.
    #[test]
    fn pointwise_filters_average_the_mlp_kernels_of_the_pixels() {
        let (h, w, c) = (2, 3, 2);
        let x = images(4, h, w, c, 3);
        for act in ACTS {
            for bias in [BiasInit::Gaussian, BiasInit::Zero] {
                let param = Parameterization::Ntk {
                    w_std: 1.2,
                    b_std: 0.3,
                };
                let mlp = InfiniteMlp::from_spec(
                    &MlpSpec::uniform(c, 1, 2, 1, act)
                        .with_param(param)
                        .with_bias_init(bias),
                )
                .unwrap();
                // every pixel of every image as an MLP input
                let pixels = Mat::from_fn(4 * h * w, c, |r, ch| {
                    x[(r / (h * w), (r % (h * w)) * c + ch)]
                });
                let km = mlp
                    .kernels(
                        &pixels,
                        None,
                        &KernelRequest::all(),
                        &KernelOptions::default(),
                    )
                    .unwrap();
                let (mn, mt) = (km.nngp.as_ref().unwrap(), km.ntk.as_ref().unwrap());
                // the MLP orders the variances (k11, k22) by row and column, the CNN by size:
                // equal to rounding for closed forms, to the quadrature's accuracy for tanh and
                // gelu (the polar rule is not symmetric in (k11, k22) where one is zero, as at
                // the zero pixels without bias; see rnn::tests::one_step_is_a_one_hidden_layer_mlp)
                let quad = matches!(act, Activation::Tanh | Activation::Gelu);
                let rel = if quad { 2e-5 } else { 1e-13 };
                let tol = rel * mt.abs().max();
                for readout in [CnnReadout::Gap, CnnReadout::Flatten] {
                    let arch = spec((h, w, c), 2, act)
                        .with_kernel(1)
                        .with_readout(readout)
                        .with_stds(1.2, 0.3)
                        .with_bias_init(bias);
                    let k = InfiniteCnn::from_spec(&arch)
                        .unwrap()
                        .kernels(&x, None, false, &KernelOptions::default())
                        .unwrap();
                    for i in 0..4 {
                        for j in 0..4 {
                            let hw = h * w;
                            let mut pairs = Vec::new();
                            for p in 0..hw {
                                for q in 0..hw {
                                    if readout == CnnReadout::Gap || p == q {
                                        pairs.push((i * hw + p, j * hw + q));
                                    }
                                }
                            }
                            let mean = |m: &Mat<f64>| {
                                pairs.iter().map(|&pq| m[pq]).sum::<f64>() / pairs.len() as f64
                            };
                            assert!((k.nngp[(i, j)] - mean(mn)).abs() < tol, "{act} {readout:?}");
                            assert!((k.ntk[(i, j)] - mean(mt)).abs() < tol, "{act} {readout:?}");
                        }
                    }
                }
                // a 1×1 image: the MLP, share by share
                let x1 = x.columns(0, c).into_owned();
                let k1 = InfiniteCnn::from_spec(
                    &spec((1, 1, c), 2, act)
                        .with_kernel(1)
                        .with_stds(1.2, 0.3)
                        .with_bias_init(bias),
                )
                .unwrap()
                .kernels(&x1, None, true, &KernelOptions::default())
                .unwrap();
                let m1 = mlp
                    .kernels(&x1, None, &KernelRequest::all(), &KernelOptions::default())
                    .unwrap();
                let sh = k1.shares.unwrap();
                let close =
                    |a: &Mat<f64>, b: &Mat<f64>| (a - b).abs().max() < rel * (1.0 + b.abs().max());
                for l in 1..=3 {
                    let (w_cnn, b_cnn) = if l <= 2 {
                        (&sh.conv_weights[l - 1], &sh.conv_biases[l - 1])
                    } else {
                        (&sh.readout, &sh.readout_bias)
                    };
                    assert!(
                        close(w_cnn, &m1.weight_share(l)),
                        "{act} {bias:?} layer {l} w"
                    );
                    assert!(
                        close(b_cnn, &m1.bias_share(l)),
                        "{act} {bias:?} layer {l} b"
                    );
                }
                assert!(close(&k1.nngp, m1.nngp.as_ref().unwrap()), "{act}");
            }
        }
    }

    #[test]
    fn channel_planes_layout_gives_the_kernels_of_the_same_images() {
        let (h, w, c) = (3, 4, 2);
        let x = images(4, h, w, c, 6);
        let planes = Mat::from_fn(4, h * w * c, |i, v| x[(i, (v % (h * w)) * c + v / (h * w))]);
        let hwc = spec((h, w, c), 2, Activation::Erf);
        let chw = hwc.clone().with_layout(ImageLayout::Chw);
        let o = KernelOptions::default();
        let a = InfiniteCnn::from_spec(&hwc)
            .unwrap()
            .kernels(&x, None, false, &o)
            .unwrap();
        let b = InfiniteCnn::from_spec(&chw)
            .unwrap()
            .kernels(&planes, None, false, &o)
            .unwrap();
        assert_eq!(a, b);
    }

    /// `Θ(x_i, x_j) = ∇f(x_i)·∇f(x_j)` is the derivative of `f(x_i)` along `∇f(x_j)`: a central
    /// difference of two forward passes, independent of the Gram computation.
    #[test]
    fn empirical_ntk_equals_directional_derivatives() {
        let sp = spec((4, 3, 2), 2, Activation::Tanh)
            .with_stds(1.3, 0.4)
            .with_readout(CnnReadout::Flatten);
        let sp = CnnSpec {
            channels: vec![3, 5],
            output_dim: 2,
            ..sp
        };
        let net = Cnn::<f64>::new(&sp, 7).unwrap();
        let x = images(4, 4, 3, 2, 8);
        let k = empirical_cnn_ntk(&net, &x, None, 1).unwrap().total();
        let grads = per_example_gradients(&net, &x, 1).unwrap();
        let eps = 1e-5;
        for j in 0..4 {
            let shifted = |sign: f64| {
                let mut n = net.clone();
                for (p, g) in n.params_mut().into_iter().zip(&grads) {
                    for (v, d) in p.iter_mut().zip(g.row(j).iter()) {
                        *v += sign * eps * d;
                    }
                }
                n.predict(&x).unwrap()
            };
            let (up, down) = (shifted(1.0), shifted(-1.0));
            for i in 0..4 {
                let fd = (up[(i, 1)] - down[(i, 1)]) / (2.0 * eps);
                assert!(
                    (fd - k[(i, j)]).abs() < 1e-7 * (1.0 + k[(i, j)].abs()),
                    "({i}, {j}): {fd} vs {}",
                    k[(i, j)]
                );
            }
        }
        let other = images(4, 4, 3, 2, 9).rows(0, 2).into_owned();
        let cross = empirical_cnn_ntk(&net, &x, Some(&other), 0).unwrap();
        assert_eq!(cross.total().shape(), (4, 2));
        assert!(empirical_cnn_ntk(&net, &x, None, 2).is_err());
        let bn = Cnn::<f64>::new(&sp.clone().with_norm(Norm::Batch), 7).unwrap();
        assert!(empirical_cnn_ntk(&bn, &x, None, 0).is_err());
    }

    /// Mean over seeds of `‖Θ_emp − Θ‖_F/‖Θ‖_F` and the worst share's error at `channels`.
    fn channel_error(sp: &CnnSpec, channels: usize, x: &Mat<f64>, ana: &CnnKernels) -> (f64, f64) {
        let sp = CnnSpec {
            channels: vec![channels; sp.conv_layers()],
            ..sp.clone()
        };
        let rel = |a: &Mat<f64>, b: &Mat<f64>| (a - b).norm() / b.norm();
        let seeds = 0..3u64;
        let (mut total, mut worst) = (0.0, 0.0f64);
        for seed in seeds.clone() {
            let emp = empirical_cnn_ntk(&Cnn::<f64>::new(&sp, seed).unwrap(), x, None, 0).unwrap();
            total += rel(&emp.total(), &ana.ntk);
            let shares = ana.shares.as_ref().unwrap();
            for ((_, e), (_, a)) in emp.named().into_iter().zip(shares.named()) {
                worst = worst.max(rel(e, a));
            }
        }
        (total / seeds.count() as f64, worst)
    }

    #[test]
    fn empirical_ntk_approaches_analytic_with_channels() {
        let x = images(4, 5, 5, 1, 10);
        for (act, readout, bias) in [
            (Activation::Relu, CnnReadout::Gap, BiasInit::Zero),
            (Activation::Erf, CnnReadout::Flatten, BiasInit::Gaussian),
        ] {
            let sp = spec((5, 5, 1), 2, act)
                .with_readout(readout)
                .with_stds(1.3, 0.2)
                .with_bias_init(bias);
            let ana = InfiniteCnn::from_spec(&sp)
                .unwrap()
                .kernels(&x, None, true, &KernelOptions::default())
                .unwrap();
            let errs: Vec<(f64, f64)> = [16, 64, 256]
                .iter()
                .map(|&c| channel_error(&sp, c, &x, &ana))
                .collect();
            assert!(
                errs[0].0 > errs[1].0 && errs[1].0 > errs[2].0,
                "{act} {readout:?}: {errs:?}"
            );
            assert!(errs[2].0 < 0.1, "{act} {readout:?}: {errs:?}");
            assert!(errs[2].1 < 0.25, "{act} {readout:?}: every share {errs:?}");
        }
    }

    #[test]
    fn same_numbers_for_any_thread_count() {
        let x = images(7, 5, 4, 1, 4);
        let inf = InfiniteCnn::from_spec(&spec((5, 4, 1), 2, Activation::Relu)).unwrap();
        let run = |t: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| {
                    inf.kernels(&x, None, true, &KernelOptions::default())
                        .unwrap()
                })
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn refuses_bad_shapes_values_and_architectures() {
        let x = images(4, 3, 3, 1, 5);
        let o = KernelOptions::default();
        let inf = InfiniteCnn::from_spec(&spec((3, 3, 2), 1, Activation::Relu)).unwrap();
        let msg = inf.kernels(&x, None, false, &o).unwrap_err().to_string();
        assert!(msg.contains("3×3×2"), "{msg}");
        let ok = InfiniteCnn::from_spec(&spec((3, 3, 1), 1, Activation::Relu)).unwrap();
        let mut nan = x.clone();
        nan[(2, 4)] = f64::NAN;
        assert!(ok.kernels(&nan, None, false, &o).is_err());
        assert!(ok.kernels(&Mat::zeros(0, 9), None, false, &o).is_err());
        for bad in [
            spec((0, 3, 1), 1, Activation::Relu),
            spec((3, 3, 1), 0, Activation::Relu),
            spec((3, 3, 1), 1, Activation::Relu).with_kernel(0),
            spec((3, 3, 1), 1, Activation::Relu).with_stds(-1.0, 0.1),
            spec((3, 3, 1), 1, Activation::Relu).with_stds(1.0, f64::NAN),
        ] {
            assert!(InfiniteCnn::from_spec(&bad).is_err());
        }
        for unsupported in [
            spec((4, 4, 1), 1, Activation::Relu).with_norm(Norm::Batch),
            spec((4, 4, 1), 1, Activation::Relu).with_stride(2),
            spec((4, 4, 1), 1, Activation::Relu).with_padding(Padding::Valid),
            spec((4, 4, 1), 1, Activation::Relu).with_param(Parameterization::Standard {
                w_std: 1.0,
                b_std: 0.1,
            }),
        ] {
            let e = InfiniteCnn::from_spec(&unsupported).unwrap_err();
            assert!(matches!(e, NtkError::Architecture(_)), "{e}");
        }
    }
}
