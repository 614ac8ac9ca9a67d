//! Infinite-width kernels of a fully connected network (NTK parameterisation), in `f64`.
//!
//! For `h^l = (s_w/√n_{l−1}) W^l a^{l−1} + s_b b^l` with `N(0,1)` weights, let `β = 1` when the
//! biases start Gaussian and `β = 0` when they start at zero ([`BiasInit`]). As every hidden width
//! tends to infinity:
//!
//! * **forward (NNGP) covariance** of the pre-activations:
//!   `Σ^1(x,x') = s_w² x·x'/n_0 + β s_b²`,
//!   `Σ^{l+1} = s_w² E[φ(u)φ(v)] + β s_b²` with `(u,v) ~ N(0, Σ^l)` restricted to `{x, x'}`;
//! * **derivative kernel** `Ṡ^{l+1} = s_w² E[φ'(u)φ'(v)]` (same `(u, v)`);
//! * **activity kernel** of layer `l`'s input, the limit of `(s_w²/n_{l−1}) a^{l−1}·a'^{l−1}`:
//!   `A^1 = s_w² x·x'/n_0`, `A^{l+1} = s_w² E[φ(u)φ(v)] = Σ^{l+1} − β s_b²`;
//! * **NTK** `T^1 = A^1 + s_b²`, `T^{l+1} = A^{l+1} + s_b² + Ṡ^{l+1} T^l`; the output NTK is
//!   `T^L ⊗ I_C`;
//! * **backward kernel** `P^L = 1`, `P^l = P^{l+1} Ṡ^{l+1}` (the limit of `d^l·d'^l`, the inner
//!   product of the backward signals of one output);
//! * **layer shares**: `T^L = Σ_l P^l (A^l + s_b²)`, where `P^l A^l` is the contribution of `W^l`
//!   and `s_b² P^l` that of `b^l`.
//!
//! With Gaussian biases (`β = 1`) `A^l + s_b² = Σ^l`, so one kernel is both the forward
//! covariance and the NTK's per-layer term. With zero-initialised biases (the reference
//! experiments and [`MlpSpec`]'s default) the bias still contributes `s_b² P^l` to the NTK (its
//! gradient does not depend on its value) but not to the forward covariance, so `A^l + s_b²` is
//! then not the NNGP `Σ^l = A^l`. See docs/theory.md §3.4.
//!
//! All products between kernels are entrywise. Every entry `(i, j)` follows its own scalar
//! recursion (it only needs `x_i·x'_j` and the two diagonals). The Gram matrix `x·x'ᵀ` is formed
//! by one GEMM directly in the first requested output (only its upper triangle when `x' = x`),
//! then blocks of columns run the recursions in parallel and overwrite it: only the requested
//! `N × M` outputs are allocated. Results are identical for any number of threads.
//!
//! Cost: `O(N·M·(n_0 + L·c_φ))` where `c_φ` is one dual-kernel evaluation (closed form: a few
//! transcendental functions; quadrature: a few thousand activation evaluations, see
//! [`crate::quadrature`]).
//!
//! ```
//! use widealign_models::{MlpSpec, BiasInit, Parameterization};
//! use widealign_ntk::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
//! use widealign_tensor::{Activation, Mat};
//! let spec = MlpSpec::uniform(3, 512, 2, 1, Activation::Relu)
//!     .with_param(Parameterization::Ntk { w_std: 1.5, b_std: 0.1 })
//!     .with_bias_init(BiasInit::Gaussian);
//! let net = InfiniteMlp::from_spec(&spec).unwrap();
//! let x = Mat::from_row_slice(2, 3, &[1.0, 0.0, 0.0, 0.6, 0.8, 0.0]);
//! let k = net.kernels(&x, None, &KernelRequest::all(), &KernelOptions::default()).unwrap();
//! let ntk = k.ntk.as_ref().unwrap();
//! assert!((ntk[(0, 1)] - ntk[(1, 0)]).abs() == 0.0);
//! // the NTK is the sum of the layer shares
//! let total: f64 = (1..=3).map(|l| k.weight_share(l)[(0, 1)] + k.bias_share(l)[(0, 1)]).sum();
//! assert!((total - ntk[(0, 1)]).abs() < 1e-14);
//! ```

use rayon::prelude::*;
use widealign_models::{BiasInit, MlpSpec, Parameterization};
use widealign_tensor::gemm::{self, Op};
use widealign_tensor::Mat;

use crate::dual::DualKernel;
use crate::error::{check_finite, shape_err};
use crate::quadrature::Quadrature;
use crate::NtkError;

/// The infinite-width limit of an [`MlpSpec`]: the object whose kernels this module computes.
///
/// It is built only from a spec ([`InfiniteMlp::from_spec`]), so a finite network and its
/// kernels cannot describe different architectures. The kernels depend on the spec's input
/// dimension, depth, activation, `s_w`, `s_b` and bias initialisation; its hidden widths and
/// output dimension do not enter them (the output NTK is `T^L ⊗ I_C` for any `C`).
#[derive(Clone, Debug, PartialEq)]
pub struct InfiniteMlp {
    /// The validated spec (NTK parameterisation).
    spec: MlpSpec,
    /// `s_w` and `s_b` of `spec.param`.
    w_std: f64,
    b_std: f64,
}

/// Numerical options for kernel computations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelOptions {
    /// Integrator for activations without a closed form (tanh, gelu).
    pub quadrature: Quadrature,
    /// Use the quadrature even where a closed form exists (for verification).
    pub force_quadrature: bool,
    /// Output columns per parallel task.
    pub block: usize,
}

impl Default for KernelOptions {
    /// The default (polar) quadrature, closed forms where they exist, blocks of 32 columns.
    fn default() -> Self {
        KernelOptions {
            quadrature: Quadrature::default(),
            force_quadrature: false,
            block: 32,
        }
    }
}

/// Which kernels to keep (everything else is computed on the fly and dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRequest {
    /// The output NNGP `Σ^L`.
    pub nngp: bool,
    /// The output NTK `T^L`.
    pub ntk: bool,
    /// Every layer's `Σ^l, Ṡ^l, T^l, P^l` (`4L` matrices).
    pub layers: bool,
}

impl KernelRequest {
    /// NNGP and NTK only (the `widealign ntk` command).
    pub fn outputs() -> Self {
        KernelRequest {
            nngp: true,
            ntk: true,
            layers: false,
        }
    }
    /// Everything, including the per-layer kernels.
    pub fn all() -> Self {
        KernelRequest {
            nngp: true,
            ntk: true,
            layers: true,
        }
    }
}

/// The kernels of one layer `l` between two input sets.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerKernels {
    /// `Σ^l`: covariance of the pre-activations `h^l`.
    pub forward: Mat<f64>,
    /// `Ṡ^l = s_w² E[φ'φ']` over `Σ^{l−1}`; `None` for `l = 1`.
    pub derivative: Option<Mat<f64>>,
    /// `T^l`: NTK of the network truncated after layer `l`.
    pub ntk: Mat<f64>,
    /// `P^l`: backward kernel (`P^L = 1`).
    pub backward: Mat<f64>,
}

/// Kernels between inputs `X₁` (`N` rows) and `X₂` (`M` rows), each `N × M`.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernels {
    /// Output NNGP `Σ^L`, if requested.
    pub nngp: Option<Mat<f64>>,
    /// Output NTK `T^L` (per output unit; the full NTK is `T^L ⊗ I_C`), if requested.
    pub ntk: Option<Mat<f64>>,
    /// Per-layer kernels, index `l − 1`, if requested (else empty).
    pub layers: Vec<LayerKernels>,
    /// `s_w`, `s_b`, `β` used (for the share helpers).
    w_std: f64,
    b_std: f64,
    beta: f64,
}

impl Kernels {
    /// Activity kernel `A^l = Σ^l − β s_b²` (the limit of `(s_w²/n_{l−1}) a^{l−1}·a'^{l−1}`).
    ///
    /// # Panics
    /// If the layer kernels were not requested or `l` is not in `1..=L`.
    pub fn activity(&self, l: usize) -> Mat<f64> {
        self.layers[l - 1]
            .forward
            .map(|v| v - self.beta * self.b_std * self.b_std)
    }

    /// Contribution of `W^l` to the NTK: `P^l ⊙ A^l`.
    ///
    /// # Panics
    /// If the layer kernels were not requested or `l` is not in `1..=L`.
    pub fn weight_share(&self, l: usize) -> Mat<f64> {
        self.activity(l).component_mul(&self.layers[l - 1].backward)
    }

    /// Contribution of `b^l` to the NTK: `s_b² P^l`.
    ///
    /// # Panics
    /// If the layer kernels were not requested or `l` is not in `1..=L`.
    pub fn bias_share(&self, l: usize) -> Mat<f64> {
        &self.layers[l - 1].backward * (self.b_std * self.b_std)
    }

    /// Layer `l`'s whole share `P^l ⊙ (A^l + s_b²)`.
    ///
    /// # Panics
    /// If the layer kernels were not requested or `l` is not in `1..=L`.
    pub fn layer_share(&self, l: usize) -> Mat<f64> {
        self.weight_share(l) + self.bias_share(l)
    }

    /// `s_w` of the network these kernels belong to.
    pub fn w_std(&self) -> f64 {
        self.w_std
    }
}

/// Per-input variances `Σ^l(x, x)` for `l = 1..L` (index `l − 1`).
type Diagonals = Vec<Vec<f64>>;

impl InfiniteMlp {
    /// The infinite-width limit of `spec` (hidden widths are irrelevant; only the depth counts).
    ///
    /// # Errors
    /// [`NtkError::Model`] for a spec that does not validate ([`MlpSpec::validate`]);
    /// [`NtkError::Architecture`] for the standard parameterisation (its NTK has no
    /// width-independent limit in this form).
    pub fn from_spec(spec: &MlpSpec) -> Result<Self, NtkError> {
        spec.validate()?;
        match spec.param {
            Parameterization::Ntk { w_std, b_std } => Ok(InfiniteMlp {
                spec: spec.clone(),
                w_std,
                b_std,
            }),
            Parameterization::Standard { .. } => Err(NtkError::Architecture(
                "the infinite-width kernels are defined for the NTK parameterisation; \
                 the standard parameterisation has no width-independent NTK"
                    .into(),
            )),
        }
    }

    /// The spec this limit was built from.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    /// Input dimension `n_0`.
    pub fn input_dim(&self) -> usize {
        self.spec.input_dim
    }

    /// Number of weight layers `L` (hidden layers + 1).
    pub fn layers(&self) -> usize {
        self.spec.depth()
    }

    /// `β`: 1 for Gaussian initial biases, 0 for zero initial biases.
    pub fn beta(&self) -> f64 {
        match self.spec.bias_init {
            BiasInit::Gaussian => 1.0,
            BiasInit::Zero => 0.0,
        }
    }

    fn check_inputs(&self, what: &str, x: &Mat<f64>) -> Result<(), NtkError> {
        if x.ncols() != self.input_dim() {
            return Err(shape_err(
                what,
                format!("N × {} (one input per row)", self.input_dim()),
                x.shape(),
            ));
        }
        check_finite(what, x)
    }

    /// `Σ^l(x, x)` for every row of `x` and every layer.
    fn diagonals(&self, x: &Mat<f64>, dual: &DualKernel) -> Diagonals {
        let sw2 = self.w_std * self.w_std;
        let bias = self.beta() * self.b_std * self.b_std;
        let n0 = self.input_dim() as f64;
        let rows: Vec<Vec<f64>> = (0..x.nrows())
            .into_par_iter()
            .map(|i| {
                let sq: f64 = x.row(i).iter().map(|v| v * v).sum();
                let mut q = sw2 * sq / n0 + bias;
                let mut out = Vec::with_capacity(self.layers());
                out.push(q);
                for _ in 1..self.layers() {
                    let (e, _) = dual.eval(q, q, q);
                    q = sw2 * e + bias;
                    out.push(q);
                }
                out
            })
            .collect();
        (0..self.layers())
            .map(|l| rows.iter().map(|r| r[l]).collect())
            .collect()
    }

    /// Kernels between the rows of `x1` and of `x2` (`x2 = None` means `x2 = x1`, computed for
    /// `i ≤ j` and mirrored, so the result is exactly symmetric).
    ///
    /// Memory: the requested `N × M` matrices and nothing else of that size (the Gram matrix
    /// `x1·x2ᵀ` is formed in the first of them and overwritten entry by entry).
    ///
    /// # Errors
    /// [`NtkError::Shape`] if a row length differs from `input_dim`, [`NtkError::NonFinite`] for
    /// NaN/∞ inputs, [`NtkError::InvalidOption`] for a bad quadrature order or block size.
    pub fn kernels(
        &self,
        x1: &Mat<f64>,
        x2: Option<&Mat<f64>>,
        request: &KernelRequest,
        options: &KernelOptions,
    ) -> Result<Kernels, NtkError> {
        self.check_inputs("inputs", x1)?;
        if let Some(x2) = x2 {
            self.check_inputs("second inputs", x2)?;
        }
        if options.block == 0 {
            return Err(NtkError::InvalidOption {
                name: "block".into(),
                reason: "must be at least 1".into(),
            });
        }
        let dual = DualKernel::new(
            self.spec.activation,
            options.quadrature,
            options.force_quadrature,
        )?;
        let symmetric = x2.is_none();
        let x2m = x2.unwrap_or(x1);
        let (n, m) = (x1.nrows(), x2m.nrows());
        let d1 = self.diagonals(x1, &dual);
        let d2 = if symmetric {
            d1.clone()
        } else {
            self.diagonals(x2m, &dual)
        };
        let big_l = self.layers();
        // output slots: nngp, ntk, then per layer forward, derivative (l ≥ 2), ntk, backward
        #[derive(Clone, Copy)]
        enum Slot {
            Nngp,
            Ntk,
            Forward(usize),
            Derivative(usize),
            LayerNtk(usize),
            Backward(usize),
        }
        let mut slots = Vec::new();
        if request.nngp {
            slots.push(Slot::Nngp);
        }
        if request.ntk {
            slots.push(Slot::Ntk);
        }
        if request.layers {
            for l in 0..big_l {
                slots.push(Slot::Forward(l));
                if l > 0 {
                    slots.push(Slot::Derivative(l));
                }
                slots.push(Slot::LayerNtk(l));
                slots.push(Slot::Backward(l));
            }
        }
        // `vec![0.0; ..]` (calloc) rather than `Mat::zeros` (memset): large blocks come from the OS
        // already zeroed, so the outputs are not written twice
        let mut outputs: Vec<Mat<f64>> = slots
            .iter()
            .map(|_| Mat::from_vec(n, m, vec![0.0; n * m]))
            .collect();
        // The Gram matrix x1·x2ᵀ goes straight into the first output (each entry is read before
        // it is overwritten by its kernel value): no per-block copies, one large GEMM.
        if let Some(gram) = outputs.first_mut() {
            gram_into(x1, x2m, symmetric, gram);
        }
        let block = options.block;
        {
            let mut per_block: Vec<Vec<&mut [f64]>> = Vec::new();
            let chunk = (n * block).max(1);
            let mut iters: Vec<_> = outputs
                .iter_mut()
                .map(|o| o.as_mut_slice().chunks_mut(chunk))
                .collect();
            if n > 0 && !slots.is_empty() {
                for _ in 0..m.div_ceil(block) {
                    per_block.push(iters.iter_mut().map(|it| it.next().unwrap()).collect());
                }
            }
            let sw2 = self.w_std * self.w_std;
            let sb2 = self.b_std * self.b_std;
            let bias = self.beta() * sb2;
            let n0 = self.input_dim() as f64;
            per_block
                .into_par_iter()
                .enumerate()
                .for_each(|(bi, mut outs)| {
                    let c0 = bi * block;
                    let c1 = (c0 + block).min(m);
                    // per-layer values for one chunk of rows of column j
                    let mut sig = vec![[0.0; CHUNK]; big_l];
                    let mut sd = vec![[0.0; CHUNK]; big_l];
                    let mut t = vec![[0.0; CHUNK]; big_l];
                    let mut p = vec![[0.0; CHUNK]; big_l];
                    let (mut e, mut ed) = ([0.0; CHUNK], [0.0; CHUNK]);
                    for (jj, j) in (c0..c1).enumerate() {
                        let imax = if symmetric { j + 1 } else { n };
                        for i0 in (0..imax).step_by(CHUNK) {
                            let i1 = (i0 + CHUNK).min(imax);
                            let len = i1 - i0;
                            let cols = jj * n + i0..jj * n + i1;
                            for (s, &g) in sig[0].iter_mut().zip(&outs[0][cols.clone()]) {
                                *s = sw2 * g / n0 + bias;
                            }
                            // on the diagonal start from the per-input variance so that the
                            // entry repeats the diagonal recursion bit for bit (ρ = 1 exactly)
                            if symmetric && (i0..i1).contains(&j) {
                                sig[0][j - i0] = d1[0][j];
                            }
                            for k in 0..len {
                                t[0][k] = sig[0][k] - bias + sb2;
                            }
                            for l in 1..big_l {
                                dual.eval_into(
                                    &d1[l - 1][i0..i1],
                                    &sig[l - 1][..len],
                                    d2[l - 1][j],
                                    &mut e[..len],
                                    &mut ed[..len],
                                );
                                let (t_prev, t_cur) = t.split_at_mut(l);
                                for k in 0..len {
                                    let a = sw2 * e[k];
                                    sig[l][k] = a + bias;
                                    sd[l][k] = sw2 * ed[k];
                                    t_cur[0][k] = a + sb2 + sd[l][k] * t_prev[l - 1][k];
                                }
                            }
                            if request.layers {
                                p[big_l - 1] = [1.0; CHUNK];
                                for l in (0..big_l - 1).rev() {
                                    let (p_cur, p_next) = p.split_at_mut(l + 1);
                                    for k in 0..len {
                                        p_cur[l][k] = p_next[0][k] * sd[l + 1][k];
                                    }
                                }
                            }
                            for (slot, out) in slots.iter().zip(outs.iter_mut()) {
                                let src = match *slot {
                                    Slot::Nngp => &sig[big_l - 1],
                                    Slot::Ntk => &t[big_l - 1],
                                    Slot::Forward(l) => &sig[l],
                                    Slot::Derivative(l) => &sd[l],
                                    Slot::LayerNtk(l) => &t[l],
                                    Slot::Backward(l) => &p[l],
                                };
                                out[cols.clone()].copy_from_slice(&src[..len]);
                            }
                        }
                    }
                });
        }
        if symmetric {
            outputs.par_iter_mut().for_each(mirror_upper_to_lower);
        }
        let mut it = outputs.into_iter();
        let nngp = if request.nngp { it.next() } else { None };
        let ntk = if request.ntk { it.next() } else { None };
        let mut layers = Vec::new();
        if request.layers {
            for l in 0..big_l {
                let forward = it.next().expect("slot");
                let derivative = if l > 0 { it.next() } else { None };
                let ntk = it.next().expect("slot");
                let backward = it.next().expect("slot");
                layers.push(LayerKernels {
                    forward,
                    derivative,
                    ntk,
                    backward,
                });
            }
        }
        Ok(Kernels {
            nngp,
            ntk,
            layers,
            w_std: self.w_std,
            b_std: self.b_std,
            beta: self.beta(),
        })
    }

    /// The output NNGP and NTK of a single pair of inputs (slow path, for checks).
    ///
    /// # Errors
    /// As [`InfiniteMlp::kernels`].
    pub fn pair(
        &self,
        x: &[f64],
        y: &[f64],
        options: &KernelOptions,
    ) -> Result<(f64, f64), NtkError> {
        let a = Mat::from_row_slice(1, x.len(), x);
        let b = Mat::from_row_slice(1, y.len(), y);
        let k = self.kernels(&a, Some(&b), &KernelRequest::outputs(), options)?;
        Ok((k.nngp.unwrap()[(0, 0)], k.ntk.unwrap()[(0, 0)]))
    }
}

/// Columns of the Gram matrix formed per GEMM call in the symmetric case (wide enough for the
/// GEMM to run at full speed, narrow enough that the skipped lower triangle is small).
const GRAM_BLOCK: usize = 256;

/// Rows of one column whose recursions run together (as SIMD loops over the chunk).
const CHUNK: usize = 64;

/// `out ← x1·x2ᵀ`; when `symmetric` (`x2 = x1`) only the upper triangle, block of columns by
/// block of columns, is formed (entries below the diagonal blocks are left untouched).
fn gram_into(x1: &Mat<f64>, x2: &Mat<f64>, symmetric: bool, out: &mut Mat<f64>) {
    if !symmetric {
        gemm::gemm(1.0, x1, Op::N, x2, Op::T, 0.0, out);
        return;
    }
    let m = x2.nrows();
    for c0 in (0..m).step_by(GRAM_BLOCK) {
        let c1 = (c0 + GRAM_BLOCK).min(m);
        gemm::gemm_view(
            1.0,
            &x1.rows(0, c1),
            Op::N,
            &x2.rows(c0, c1 - c0),
            Op::T,
            0.0,
            &mut out.view_mut((0, c0), (c1, c1 - c0)),
        );
    }
}

/// Copies the upper triangle onto the lower one, in cache-friendly tiles.
fn mirror_upper_to_lower(m: &mut Mat<f64>) {
    let n = m.nrows();
    const TILE: usize = 64;
    for jb in (0..n).step_by(TILE) {
        for ib in (jb..n).step_by(TILE) {
            for j in jb..(jb + TILE).min(n) {
                for i in ib.max(j + 1)..(ib + TILE).min(n) {
                    m[(i, j)] = m[(j, i)];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::SymmetricEigen;
    use widealign_tensor::rng::SeedStream;
    use widealign_tensor::Activation;

    fn spec(act: Activation, depth: usize, bias: BiasInit) -> MlpSpec {
        MlpSpec::uniform(5, 100, depth, 1, act)
            .with_param(Parameterization::Ntk {
                w_std: 1.3,
                b_std: 0.2,
            })
            .with_bias_init(bias)
    }

    fn inputs(n: usize, seed: u64) -> Mat<f64> {
        let mut x: Mat<f64> = SeedStream::new(seed).gaussian_matrix("x", n, 5, 0.5);
        // colinear and antipodal pairs, and a zero input
        let r0 = x.row(0).into_owned();
        x.row_mut(1).copy_from(&(r0.clone() * 2.0));
        x.row_mut(2).copy_from(&(-r0));
        x.row_mut(3).fill(0.0);
        x
    }

    #[test]
    fn symmetric_psd_and_shares_sum_to_ntk() {
        let x = inputs(30, 1);
        for act in Activation::ALL {
            for bias in [BiasInit::Gaussian, BiasInit::Zero] {
                let net = InfiniteMlp::from_spec(&spec(act, 3, bias)).unwrap();
                let k = net
                    .kernels(&x, None, &KernelRequest::all(), &KernelOptions::default())
                    .unwrap();
                let ntk = k.ntk.as_ref().unwrap();
                let nngp = k.nngp.as_ref().unwrap();
                assert!(ntk.iter().chain(nngp.iter()).all(|v| v.is_finite()));
                for m in [ntk, nngp] {
                    assert_eq!(m, &m.transpose(), "{act}");
                    let eig = SymmetricEigen::new(m.clone()).eigenvalues;
                    let max = eig.max();
                    assert!(
                        eig.min() >= -1e-12 * max.max(1.0),
                        "{act} {bias:?} min eig {}",
                        eig.min()
                    );
                }
                let mut total = Mat::zeros(30, 30);
                for l in 1..=4 {
                    total += k.layer_share(l);
                }
                assert!((total - ntk).abs().max() < 1e-12 * ntk.abs().max(), "{act}");
                assert_eq!(&k.layers[3].ntk, ntk);
                assert_eq!(&k.layers[3].forward, nngp);
            }
        }
    }

    #[test]
    fn cross_kernel_agrees_with_symmetric_blocks() {
        let x = inputs(20, 2);
        let net = InfiniteMlp::from_spec(&spec(Activation::Erf, 2, BiasInit::Gaussian)).unwrap();
        let opts = KernelOptions {
            block: 3,
            ..Default::default()
        };
        let full = net.kernels(&x, None, &KernelRequest::all(), &opts).unwrap();
        let a = x.rows(0, 7).into_owned();
        let b = x.rows(7, 13).into_owned();
        let cross = net
            .kernels(&a, Some(&b), &KernelRequest::all(), &opts)
            .unwrap();
        let f = full.ntk.unwrap();
        let c = cross.ntk.unwrap();
        assert!((f.view((0, 7), (7, 13)) - &c).abs().max() < 1e-13);
        assert!(
            (full.layers[1].backward.view((0, 7), (7, 13)) - &cross.layers[1].backward)
                .abs()
                .max()
                < 1e-13
        );
    }

    #[test]
    fn many_gram_blocks_and_chunks_agree_with_the_cross_kernel() {
        // more rows than GRAM_BLOCK and CHUNK, so the triangular Gram blocks, the row chunks and
        // the mirror all take part; the cross kernel forms the whole Gram in one product
        let n = GRAM_BLOCK + 45;
        let x = inputs(n, 3);
        for act in [Activation::Relu, Activation::Erf] {
            let net = InfiniteMlp::from_spec(&spec(act, 3, BiasInit::Zero)).unwrap();
            let opts = KernelOptions::default();
            let sym = net.kernels(&x, None, &KernelRequest::all(), &opts).unwrap();
            let cross = net
                .kernels(&x, Some(&x), &KernelRequest::outputs(), &opts)
                .unwrap();
            let (s, c) = (sym.ntk.as_ref().unwrap(), cross.ntk.as_ref().unwrap());
            let (sn, cn) = (sym.nngp.as_ref().unwrap(), cross.nngp.as_ref().unwrap());
            let scale = s.abs().max();
            for j in 0..n {
                for i in 0..n {
                    // ρ = ±1 pairs (the diagonal, rows 0–2 are colinear): the symmetric kernel
                    // starts them from ρ = 1 exactly, the cross kernel from the rounded Gram, and
                    // relu's θ = arccos ρ ≈ √(2(1 − ρ)) turns a 1e-16 difference into 1e-8
                    let tol = if i == j || (i < 3 && j < 3) {
                        1e-6
                    } else {
                        1e-12
                    };
                    for (a, b) in [(s, c), (sn, cn)] {
                        let d = (a[(i, j)] - b[(i, j)]).abs();
                        assert!(d < tol * scale, "{act} ({i}, {j}): {d}");
                    }
                }
            }
            assert_eq!(s, &s.transpose(), "{act}: not exactly symmetric");
            // the layer shares (3 hidden layers and the readout) still sum to the NTK
            let total = (1..=4).fold(Mat::zeros(n, n), |acc, l| acc + sym.layer_share(l));
            assert!((total - s).abs().max() < 1e-12 * scale, "{act}");
        }
    }

    #[test]
    fn threaded_gram_and_blocks_give_the_same_bits() {
        // large enough that the Gram products run on several threads
        let x: Mat<f64> = SeedStream::new(4).gaussian_matrix("x", GRAM_BLOCK + 45, 64, 1.0);
        let net =
            InfiniteMlp::from_spec(&MlpSpec::uniform(64, 16, 2, 1, Activation::Relu)).unwrap();
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    net.kernels(&x, None, &KernelRequest::all(), &KernelOptions::default())
                        .unwrap()
                })
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn one_layer_relu_matches_hand_computation() {
        // L = 2: T = A^1 Ṡ^2 + s_b² Ṡ^2 + A^2 + s_b²
        let spec =
            MlpSpec::uniform(2, 10, 1, 1, Activation::Relu).with_param(Parameterization::Ntk {
                w_std: 1.0,
                b_std: 0.0,
            });
        let net = InfiniteMlp::from_spec(&spec).unwrap();
        let (nngp, ntk) = net
            .pair(&[1.0, 0.0], &[0.0, 1.0], &KernelOptions::default())
            .unwrap();
        // orthogonal unit inputs: Σ^1 = diag(1/2), cross 0 → θ = π/2
        let k = 0.5;
        let e = k * (1.0 + 0.0) / (2.0 * std::f64::consts::PI);
        assert!((nngp - e).abs() < 1e-15);
        assert!((ntk - e).abs() < 1e-15);
        let (nngp, ntk) = net
            .pair(&[1.0, 0.0], &[1.0, 0.0], &KernelOptions::default())
            .unwrap();
        assert!((nngp - 0.25).abs() < 1e-15 && (ntk - (0.25 + 0.5 * 0.5)).abs() < 1e-15);
    }

    #[test]
    fn closed_forms_equal_forced_quadrature_for_whole_kernels() {
        let x = inputs(12, 3);
        for act in [Activation::Relu, Activation::Erf, Activation::Identity] {
            let net = InfiniteMlp::from_spec(&spec(act, 3, BiasInit::Gaussian)).unwrap();
            let cf = net
                .kernels(
                    &x,
                    None,
                    &KernelRequest::outputs(),
                    &KernelOptions::default(),
                )
                .unwrap();
            let q = net
                .kernels(
                    &x,
                    None,
                    &KernelRequest::outputs(),
                    &KernelOptions {
                        quadrature: Quadrature::Polar {
                            radial: 100,
                            angular: 48,
                        },
                        force_quadrature: true,
                        block: 5,
                    },
                )
                .unwrap();
            let d = (cf.ntk.unwrap() - q.ntk.unwrap()).abs().max();
            let dn = (cf.nngp.unwrap() - q.nngp.unwrap()).abs().max();
            // includes identical, colinear, antipodal and zero inputs
            assert!(d < 1e-10 && dn < 1e-10, "{act}: ntk {d:e} nngp {dn:e}");
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        let net = InfiniteMlp::from_spec(&spec(Activation::Relu, 1, BiasInit::Zero)).unwrap();
        let x = Mat::<f64>::zeros(3, 4);
        let e = net
            .kernels(
                &x,
                None,
                &KernelRequest::outputs(),
                &KernelOptions::default(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("N × 5"), "{e}");
        let mut x = Mat::<f64>::zeros(3, 5);
        x[(2, 1)] = f64::NAN;
        let e = net
            .kernels(
                &x,
                None,
                &KernelRequest::outputs(),
                &KernelOptions::default(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("row 2, column 1"), "{e}");
        let std = MlpSpec::uniform(5, 10, 1, 1, Activation::Relu).with_param(
            Parameterization::Standard {
                w_std: 1.0,
                b_std: 0.0,
            },
        );
        assert!(InfiniteMlp::from_spec(&std).is_err());
    }
}
