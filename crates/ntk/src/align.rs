//! Alignment of weight changes (docs/theory.md §5) and the shadow accumulation of the predicted
//! update during a backprop run.
//!
//! For a layer's weight change `ΔW` (`n_out × n_in`, trained minus initial) and a reference
//! `ΔW_ref`, with `M = ΔWᵀΔW`:
//!
//! * **score** `cos(M, M_ref) = ⟨M, M_ref⟩_F / (‖M‖_F ‖M_ref‖_F) ∈ [0, 1]` (both are PSD). Since
//!   `⟨ΔWᵀΔW, ΔW_refᵀΔW_ref⟩ = ‖ΔW ΔW_refᵀ‖_F²` and `‖ΔWᵀΔW‖_F = ‖ΔW ΔWᵀ‖_F`, it is computed
//!   from Gram matrices on the *smaller* side: `n_out × n_out` products when `n_out ≤ n_in`
//!   (three products of cost `n_out² n_in`), `n_in × n_in` otherwise (two of cost
//!   `n_in² n_out`). The `n × n` Gram of the larger side is never formed.
//! * **probe estimate**: with Gaussian probes `z`, `E⟨Mz, M_ref z⟩ = ⟨M, M_ref⟩_F` and
//!   `E‖Mz‖² = ‖M‖_F²`, so `Σ_k ⟨Mz_k, M_ref z_k⟩ / √(Σ_k ‖Mz_k‖² Σ_k ‖M_ref z_k‖²)` estimates the
//!   score (the reference experiments' estimator); cost `4 n_out n_in` per probe.
//! * **controls**: the score with the entries of `ΔW` shuffled, with a fresh Gaussian matrix,
//!   and the reference code's control `shuffle(W_trained) − W_0` (the *trained* weights'
//!   entries permuted, then the initial weights subtracted: mostly a random matrix of the
//!   initial weights' scale, FieteLab/Wide-Network-Alignment `alignment_kmnist.py`, `align`).
//! * **input-span fraction** `‖ΔW P_A‖_F² / ‖ΔW‖_F²`, `P_A` the orthogonal projector onto the
//!   span of the layer's initial training activities (the rows of `A_0`, `N × n_in`). The span is
//!   found by a pivoted Cholesky factorisation of the Gram on the smaller side (`A_0 A_0ᵀ` if
//!   `n_in > N`, else `A_0ᵀA_0`), stopping when the largest remaining pivot falls below `1e-10`
//!   of the largest diagonal entry (directions whose residual norm is below `1e-5` of the largest
//!   activity norm count as inside the span). An Align-zero update has fraction exactly 1.
//!
//! [`ShadowAccumulator`] accumulates the Align-zero update `−lr · m_l G_0^l(x)ᵀ e · a_0^{l−1}` with
//! the batches and the live errors of a training run, from its own copy of the initial network,
//! without touching the trained one. [`align_layers`] turns an (initial, trained, shadow) triple
//! into the per-layer numbers of `widealign align`.
//!
//! ```
//! use widealign_ntk::align::{alignment_score, input_span_fraction};
//! use widealign_tensor::Mat;
//! let dw = Mat::<f64>::from_row_slice(2, 3, &[1.0, 2.0, 0.0, 0.0, 1.0, 1.0]);
//! assert!((alignment_score(&dw, &(&dw * 3.0)).unwrap() - 1.0).abs() < 1e-15);
//! // rows of ΔW·R for an orthogonal R have the same M up to rotation: not aligned in general
//! let a = Mat::<f64>::from_row_slice(1, 3, &[1.0, 0.0, 0.0]); // one activity along e_1
//! let f = input_span_fraction(&dw, &a).unwrap();
//! assert!((f - 1.0 / 7.0).abs() < 1e-14); // ‖ΔW e_1‖² / ‖ΔW‖² = 1/7
//! ```

use serde::Serialize;
use widealign_models::{Cnn, CnnTrace, Mlp, Network, Rnn};
use widealign_rules::{Rule, RuleKind, RulesError};
use widealign_tensor::{
    elementwise, gemm, reduce,
    rng::{self, SeedStream},
    Float, Mat,
};

use crate::error::shape_err;
use crate::NtkError;

fn same_shape<T: Float>(a: &Mat<T>, b: &Mat<T>) -> Result<(), NtkError> {
    if a.shape() != b.shape() {
        return Err(shape_err(
            "reference weight change",
            format!("{} × {} (like the weight change)", a.nrows(), a.ncols()),
            b.shape(),
        ));
    }
    Ok(())
}

/// The Gram matrix on the smaller side: `AAᵀ` if `rows ≤ cols`, else `AᵀA`.
fn small_gram<T: Float>(a: &Mat<T>) -> Mat<T> {
    if a.nrows() <= a.ncols() {
        gemm::matmul_nt(a, a)
    } else {
        gemm::matmul_tn(a, a)
    }
}

fn fro2<T: Float>(m: &Mat<T>) -> f64 {
    reduce::dot(m.as_slice(), m.as_slice())
}

/// The exact alignment score `cos(ΔWᵀΔW, ΔW_refᵀΔW_ref)` (see the module docs for the cost).
///
/// Returns NaN if either change is zero (the score is undefined; JSON writes `null`).
///
/// # Errors
/// [`NtkError::Shape`] if the shapes differ.
pub fn alignment_score<T: Float>(dw: &Mat<T>, dw_ref: &Mat<T>) -> Result<f64, NtkError> {
    same_shape(dw, dw_ref)?;
    let g = small_gram(dw);
    let gr = small_gram(dw_ref);
    Ok(score_from_grams(dw, dw_ref, &g, &gr))
}

fn score_from_grams<T: Float>(dw: &Mat<T>, dw_ref: &Mat<T>, g: &Mat<T>, gr: &Mat<T>) -> f64 {
    let num = if dw.nrows() <= dw.ncols() {
        fro2(&gemm::matmul_nt(dw, dw_ref))
    } else {
        reduce::dot(g.as_slice(), gr.as_slice())
    };
    let den = (fro2(g) * fro2(gr)).sqrt();
    if den == 0.0 {
        f64::NAN
    } else {
        (num / den).clamp(0.0, 1.0)
    }
}

/// The probe estimate of the alignment score with `probes` Gaussian probes drawn from
/// `seeds.rng("probes")`.
///
/// # Errors
/// [`NtkError::Shape`] if the shapes differ; [`NtkError::InvalidOption`] for zero probes.
pub fn probe_alignment<T: Float>(
    dw: &Mat<T>,
    dw_ref: &Mat<T>,
    probes: usize,
    seeds: &SeedStream,
) -> Result<f64, NtkError> {
    same_shape(dw, dw_ref)?;
    if probes == 0 {
        return Err(NtkError::InvalidOption {
            name: "probes".into(),
            reason: "need at least one probe".into(),
        });
    }
    let z: Mat<T> = seeds.gaussian_matrix("probes", dw.ncols(), probes, 1.0);
    let mz = gemm::matmul_tn(dw, &gemm::matmul(dw, &z));
    let mrz = gemm::matmul_tn(dw_ref, &gemm::matmul(dw_ref, &z));
    let num = reduce::dot(mz.as_slice(), mrz.as_slice());
    let den = (fro2(&mz) * fro2(&mrz)).sqrt();
    Ok(if den == 0.0 { f64::NAN } else { num / den })
}

/// `ΔW` with its entries randomly permuted (stream `seeds.rng("shuffle")`).
pub fn shuffled<T: Float>(dw: &Mat<T>, seeds: &SeedStream) -> Mat<T> {
    let mut v: Vec<T> = dw.as_slice().to_vec();
    let mut r = seeds.rng("shuffle");
    rng::shuffle(&mut r, &mut v);
    Mat::from_vec(dw.nrows(), dw.ncols(), v)
}

/// An orthonormal basis `Q` (`n_in × r`) of the span of the rows of an activity matrix, or
/// `None` when the span is the whole space.
#[derive(Clone, Debug)]
pub struct SpanBasis {
    q: Option<Mat<f64>>,
    rank: usize,
    dim: usize,
}

/// Pivoted Cholesky of a PSD matrix: returns the pivot order and `L` (`n × r`, rows in the
/// original indexing) with `K ≈ L Lᵀ`, stopping at pivots below `tol · max diag`.
/// Cost `O(n r²)`; rows of `L` are stored contiguously so the inner products stream.
fn pivoted_cholesky(k: &Mat<f64>, tol: f64) -> (Vec<usize>, Mat<f64>) {
    use rayon::prelude::*;
    let n = k.nrows();
    let mut d: Vec<f64> = (0..n).map(|i| k[(i, i)]).collect();
    let dmax = d.iter().cloned().fold(0.0, f64::max);
    let mut perm: Vec<usize> = (0..n).collect();
    // rows[i] = L[i, 0..step]
    let mut rows: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut rank = 0;
    for step in 0..n {
        let mut p = step;
        for j in step + 1..n {
            if d[perm[j]] > d[perm[p]] {
                p = j;
            }
        }
        let best = d[perm[p]];
        if dmax <= 0.0 || best <= tol * dmax {
            break;
        }
        perm.swap(step, p);
        let piv = perm[step];
        let lkk = best.sqrt();
        let prow = std::mem::take(&mut rows[piv]);
        let rest = &perm[step + 1..];
        let vals: Vec<f64> = rest
            .par_iter()
            .map(|&i| {
                let s: f64 = rows[i].iter().zip(&prow).map(|(a, b)| a * b).sum();
                (k[(i, piv)] - s) / lkk
            })
            .collect();
        for (&i, v) in rest.iter().zip(vals) {
            rows[i].push(v);
            d[i] -= v * v;
        }
        let mut prow = prow;
        prow.push(lkk);
        rows[piv] = prow;
        d[piv] = 0.0;
        // rows chosen as pivots keep zeros for later columns
        for &q in &perm[..step] {
            rows[q].push(0.0);
        }
        rank = step + 1;
    }
    let l = Mat::from_fn(n, rank, |i, j| rows[i].get(j).copied().unwrap_or(0.0));
    (perm[..rank].to_vec(), l)
}

impl SpanBasis {
    /// Relative pivot tolerance of the rank decision.
    pub const TOLERANCE: f64 = 1e-10;

    /// The span of the rows of `activities` (`N × n_in`), computed in `f64`.
    ///
    /// Cost: one Gram product on the smaller side, a pivoted Cholesky `O(s·r²)`
    /// (`s = min(N, n_in)`, `r` the rank) and `O(n_in·r²)` to orthonormalise.
    pub fn new<T: Float>(activities: &Mat<T>) -> Self {
        let a = activities.map(|v| v.as_f64());
        let (n, dim) = a.shape();
        if dim <= n {
            return Self::from_gram(&gemm::matmul_tn(&a, &a));
        }
        let k = gemm::matmul_nt(&a, &a);
        let (sel, _) = pivoted_cholesky(&k, Self::TOLERANCE);
        Self::orthonormalise(Mat::from_fn(dim, sel.len(), |i, j| a[(sel[j], i)]), dim)
    }

    /// The span of the rows of an activity matrix `A` given only its Gram `AᵀA` (`n_in × n_in`,
    /// f64): the range of `AᵀA` is the row span of `A`. For activities too many to hold at once
    /// (the patches of a convolution layer), accumulate `AᵀA` block by block and call this.
    ///
    /// Cost: a pivoted Cholesky `O(n_in·r²)` and `O(n_in·r²)` to orthonormalise.
    ///
    /// # Panics
    /// If `gram` is not square.
    pub fn from_gram(gram: &Mat<f64>) -> Self {
        let dim = gram.nrows();
        assert_eq!(gram.ncols(), dim, "a Gram matrix is square");
        let (_, l) = pivoted_cholesky(gram, Self::TOLERANCE);
        if l.ncols() == dim {
            return SpanBasis {
                q: None,
                rank: dim,
                dim,
            };
        }
        Self::orthonormalise(l, dim)
    }

    /// Whether the span of the rows behind the Gram `AᵀA` is the whole space (the test
    /// [`SpanBasis::from_gram`] makes, without building a basis).
    pub fn gram_spans_everything(gram: &Mat<f64>) -> bool {
        pivoted_cholesky(gram, Self::TOLERANCE).1.ncols() == gram.nrows()
    }

    /// An orthonormal basis of the columns of `basis` (`dim × r`, linearly independent up to
    /// rounding).
    fn orthonormalise(basis: Mat<f64>, dim: usize) -> Self {
        let rank = basis.ncols();
        if rank == 0 {
            return SpanBasis {
                q: Some(Mat::zeros(dim, 0)),
                rank,
                dim,
            };
        }
        // Q = B C^{-T} with C Cᵀ = BᵀB (Cholesky), so QᵀQ = I
        let btb = gemm::matmul_tn(&basis, &basis);
        let q = match nalgebra::Cholesky::new(btb) {
            Some(ch) => {
                let c = ch.l();
                let cinv_t = c
                    .solve_lower_triangular(&Mat::identity(rank, rank))
                    .expect("positive diagonal")
                    .transpose();
                gemm::matmul(&basis, &cinv_t)
            }
            None => {
                // numerically rank-deficient selection: fall back to an SVD basis
                let svd = basis.clone().svd(true, false);
                let u = svd.u.expect("requested");
                let smax = svd.singular_values.max();
                let keep: Vec<usize> = (0..svd.singular_values.len())
                    .filter(|&i| svd.singular_values[i] > 1e-8 * smax)
                    .collect();
                Mat::from_fn(dim, keep.len(), |i, j| u[(i, keep[j])])
            }
        };
        let rank = q.ncols();
        SpanBasis {
            q: Some(q),
            rank,
            dim,
        }
    }

    /// Dimension `r` of the span.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Dimension `n_in` of the space the activities live in; the span is the whole space (and
    /// every fraction trivially 1) when [`SpanBasis::rank`] equals it.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `‖ΔW P_A‖_F² / ‖ΔW‖_F²` (NaN for a zero change).
    ///
    /// # Errors
    /// [`NtkError::Shape`] if `ΔW` does not have `n_in` columns.
    pub fn fraction<T: Float>(&self, dw: &Mat<T>) -> Result<f64, NtkError> {
        if dw.ncols() != self.dim {
            return Err(shape_err(
                "weight change",
                format!("n_out × {}", self.dim),
                dw.shape(),
            ));
        }
        let total = fro2(dw);
        if total == 0.0 {
            return Ok(f64::NAN);
        }
        let Some(q) = &self.q else {
            return Ok(1.0);
        };
        let d = dw.map(|v| v.as_f64());
        let proj = gemm::matmul(&d, q);
        Ok((fro2(&proj) / total).clamp(0.0, 1.0))
    }
}

/// `‖ΔW P_A‖_F² / ‖ΔW‖_F²` for the span of the rows of `activities` (`N × n_in`).
///
/// # Errors
/// [`NtkError::Shape`] if the column counts differ.
pub fn input_span_fraction<T: Float>(dw: &Mat<T>, activities: &Mat<T>) -> Result<f64, NtkError> {
    if dw.ncols() != activities.ncols() {
        return Err(shape_err(
            "activities",
            format!("N × {} (the layer's input width)", dw.ncols()),
            activities.shape(),
        ));
    }
    SpanBasis::new(activities).fraction(dw)
}

/// What the alignment measures need of a model beyond [`Network`]: the shapes of its parameter
/// tensors, which of them are weight matrices, and the initial activities each weight matrix
/// multiplies (for the input-span fraction). Implemented for [`Mlp`] and [`Rnn`].
pub trait AlignModel: Network {
    /// The shape of every parameter tensor in the order of [`Network::params`]: `(rows, cols)`
    /// of a matrix (column-major, as the parameter slice stores it), `(len, 1)` for a vector;
    /// read from [`Network::param_layout`].
    fn param_shapes(&self) -> Vec<(usize, usize)> {
        self.param_layout()
            .into_iter()
            .map(|(_, shape)| match shape[..] {
                [rows, cols] => (rows, cols),
                _ => (shape.iter().product(), 1),
            })
            .collect()
    }

    /// The weight matrices the alignment is measured on, in report order: a name (`"w1"`, … for
    /// the MLP; `"w_in"`, `"w_rec"`, `"w_out"` for the RNN), the index of the tensor in
    /// [`Network::params`], and the matrix.
    fn weight_matrices(&self) -> Vec<(String, usize, &Mat<Self::Scalar>)>;

    /// The input activities of every weight matrix (order of [`AlignModel::weight_matrices`])
    /// of this network on the inputs `x`, one row per example (per example and time step for a
    /// recurrent network): the rows whose span an Align-zero update of that matrix lies in.
    ///
    /// # Errors
    /// [`NtkError::Model`] if `x` does not fit the network.
    fn input_activities(&self, x: &Self::Input) -> Result<Vec<Mat<Self::Scalar>>, NtkError>;

    /// The span of every weight matrix's input activities on `x` (order of
    /// [`AlignModel::weight_matrices`]), for the input-span fraction. The default builds each
    /// from [`AlignModel::input_activities`]; a model whose activities are too many to hold at
    /// once (the CNN's patches) accumulates their Gram matrices instead.
    ///
    /// # Errors
    /// [`NtkError::Model`] if `x` does not fit the network.
    fn input_spans(&self, x: &Self::Input) -> Result<Vec<SpanBasis>, NtkError> {
        Ok(self
            .input_activities(x)?
            .iter()
            .map(SpanBasis::new)
            .collect())
    }
}

impl<T: Float> AlignModel for Mlp<T> {
    fn weight_matrices(&self) -> Vec<(String, usize, &Mat<T>)> {
        self.weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("w{}", i + 1), 2 * i, w))
            .collect()
    }

    /// `A^{l−1}` of the forward pass for `W^l` (`A^0 = X`).
    fn input_activities(&self, x: &Mat<T>) -> Result<Vec<Mat<T>>, NtkError> {
        let mut trace = self.forward(x)?;
        trace.act.truncate(self.depth());
        Ok(trace.act)
    }
}

/// Stacks `B × d` matrices vertically into one `(ΣB) × d` matrix.
fn stack_rows<'a, T: Float>(ms: impl Iterator<Item = &'a Mat<T>> + Clone, cols: usize) -> Mat<T> {
    let rows: usize = ms.clone().map(|m| m.nrows()).sum();
    let mut out = Mat::zeros(rows, cols);
    let mut at = 0;
    for m in ms {
        out.rows_mut(at, m.nrows()).copy_from(m);
        at += m.nrows();
    }
    out
}

impl<T: Float> AlignModel for Rnn<T> {
    fn weight_matrices(&self) -> Vec<(String, usize, &Mat<T>)> {
        vec![
            ("w_in".into(), 0, &self.w_in),
            ("w_rec".into(), 1, &self.w_rec),
            ("w_out".into(), 3, &self.w_out),
        ]
    }

    /// Stacked over time steps (step-major: all examples of step 1, then of step 2, …): the
    /// inputs `X_1..X_T` for `W_in`, the states `R_0..R_{T−1}` for `W_rec`, the states
    /// `R_1..R_T` for `W_out`; each has `B·T` rows.
    fn input_activities(&self, xs: &[Mat<T>]) -> Result<Vec<Mat<T>>, NtkError> {
        let trace = self.forward(xs)?;
        let t = trace.steps();
        let n = self.spec.width;
        Ok(vec![
            stack_rows(trace.inputs.iter(), self.spec.input_dim),
            stack_rows(trace.states[..t].iter(), n),
            stack_rows(trace.states[1..].iter(), n),
        ])
    }
}

/// Images per forward pass when the CNN's input activities are gathered
/// ([`AlignModel::input_activities`], [`AlignModel::input_spans`] of [`Cnn`]). With batch
/// normalisation the statistics are those of each such chunk of consecutive training images.
pub const CNN_ACTIVITY_CHUNK: usize = 128;

/// Calls `f(trace)` with the forward trace of every chunk of [`CNN_ACTIVITY_CHUNK`]
/// consecutive rows of `x`, until `f` returns `false`.
fn cnn_chunks<T: Float>(
    net: &Cnn<T>,
    x: &Mat<T>,
    mut f: impl FnMut(&CnnTrace<T>) -> bool,
) -> Result<(), NtkError> {
    let mut trace = CnnTrace::default();
    let n = x.nrows();
    let mut start = 0;
    while start < n {
        let rows = CNN_ACTIVITY_CHUNK.min(n - start);
        net.forward_into(&x.rows(start, rows).into_owned(), &mut trace)?;
        if !f(&trace) {
            break;
        }
        start += rows;
    }
    Ok(())
}

/// The convolutional network: the weight matrices are the kernels `K^1..K^L`
/// (`C_l × k·k·C_{l−1}`, named `"conv1"`, …) and the readout `W_R` (`"readout"`), so the
/// alignment score compares `ΔKᵀΔK` (`k·k·C_{l−1}` square, over patch coordinates) with the
/// prediction's. A kernel multiplies the im2col patches of its layer's input maps
/// ([`Cnn::for_each_input_block`]): one row per example and output pixel. When those `N·P_l`
/// rows outnumber the kernel's input dimensions (always, for a real training set) the span is
/// built from the Gram matrix `Σ patchᵀpatch` (f64) accumulated over chunks of
/// [`CNN_ACTIVITY_CHUNK`] images, stopping as soon as the rows seen span the whole input space
/// (usually after the first chunk: `128·P_l` rows against `k·k·C_{l−1}` dimensions); otherwise
/// (a flattened readout with fewer examples than inputs) from the rows themselves
/// ([`SpanBasis::new`], the Gram on the rows' side).
impl<T: Float> AlignModel for Cnn<T> {
    /// The names of [`Network::param_layout`] without `.weight`.
    fn weight_matrices(&self) -> Vec<(String, usize, &Mat<T>)> {
        let layout = self.param_layout();
        self.weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let name = &layout[2 * i].0;
                (name.trim_end_matches(".weight").to_string(), 2 * i, w)
            })
            .collect()
    }

    /// The patches of every convolution layer's input maps and the readout's input `R` of the
    /// initial network on `x`, forward passes over chunks of [`CNN_ACTIVITY_CHUNK`] images, rows
    /// chunk by chunk (within a chunk pixel-major, [`Cnn::for_each_input_block`]). Memory
    /// `N·Σ_l P_l·k·k·C_{l−1}` values: for small cases and tests; [`AlignModel::input_spans`]
    /// does not build these.
    fn input_activities(&self, x: &Mat<T>) -> Result<Vec<Mat<T>>, NtkError> {
        let depth = self.spec.depth();
        let mut blocks: Vec<Vec<Mat<T>>> = vec![Vec::new(); depth];
        cnn_chunks(self, x, |trace| {
            for (l, out) in blocks.iter_mut().enumerate() {
                self.for_each_input_block(trace, l + 1, &mut |blk| out.push(blk.clone()));
            }
            true
        })?;
        let fan_ins: Vec<usize> = self.weights.iter().map(|w| w.ncols()).collect();
        Ok(blocks
            .iter()
            .zip(fan_ins)
            .map(|(bs, cols)| stack_rows(bs.iter(), cols))
            .collect())
    }

    fn input_spans(&self, x: &Mat<T>) -> Result<Vec<SpanBasis>, NtkError> {
        let spec = &self.spec;
        let n = x.nrows();
        // per matrix: rows of all N examples, and where they go: a Gram on the input side when
        // there are more rows than input dimensions, else the rows themselves (the Gram on the
        // rows' side is then the smaller one, SpanBasis::new)
        let total: Vec<usize> = (1..=spec.depth())
            .map(|l| {
                if l > spec.conv_layers() {
                    n
                } else {
                    n * spec.map_len(l) / spec.channels[l - 1]
                }
            })
            .collect();
        enum Acc<T: Float> {
            Gram {
                g: Mat<f64>,
                seen: usize,
                whole: bool,
            },
            Rows(Vec<Mat<T>>),
        }
        let mut accs: Vec<Acc<T>> = self
            .weights
            .iter()
            .zip(&total)
            .map(|(w, &rows)| {
                let dim = w.ncols();
                if rows > dim {
                    Acc::Gram {
                        g: Mat::zeros(dim, dim),
                        seen: 0,
                        whole: false,
                    }
                } else {
                    Acc::Rows(Vec::new())
                }
            })
            .collect();
        cnn_chunks(self, x, |trace| {
            let mut more = false;
            for (l, acc) in accs.iter_mut().enumerate() {
                match acc {
                    Acc::Gram { whole: true, .. } => {}
                    Acc::Gram { g, seen, whole } => {
                        self.for_each_input_block(trace, l + 1, &mut |blk| {
                            let b = blk.map(|v| v.as_f64());
                            gemm::gemm(1.0, &b, gemm::Op::T, &b, gemm::Op::N, 1.0, g);
                            *seen += blk.nrows();
                        });
                        // fewer rows than dimensions cannot span the space: test only after
                        *whole = *seen >= g.nrows() && SpanBasis::gram_spans_everything(g);
                        more |= !*whole;
                    }
                    Acc::Rows(rows) => {
                        self.for_each_input_block(trace, l + 1, &mut |blk| rows.push(blk.clone()));
                        more = true;
                    }
                }
            }
            more
        })?;
        Ok(accs
            .iter()
            .zip(&self.weights)
            .map(|(acc, w)| match acc {
                Acc::Gram { g, .. } => SpanBasis::from_gram(g),
                Acc::Rows(rows) => SpanBasis::new(&stack_rows(rows.iter(), w.ncols())),
            })
            .collect())
    }
}

/// Accumulates, during a training run, the Align-zero update that the theory predicts, for any
/// model `M` ([`AlignModel`]): for every observed batch with live output error `E` and learning
/// rate `lr`, every parameter tensor `θ` gets `Δθ_ref ← Δθ_ref − lr · g_0(θ)`, where `g_0` is
/// the rules crate's Align-zero update ([`Rule::update_from_frozen`]) — frozen pathway, frozen
/// `φ′` and frozen activities of the network at initialisation (its own copy) on the batch, the
/// live error. For the MLP that is `ΔW^l_ref −= lr · m_l · D_0^lᵀ A_0^{l−1}` and
/// `Δb^l_ref −= lr · s Σ D_0^l`; for the RNN the sums also run over time steps
/// (docs/theory.md §1.2, §2.3). The trained network is never read or written.
///
/// This is the rules crate's Align-zero, not a re-derivation: the shadow holds a [`Rule`] frozen
/// at the run's initial network, and keeps one accumulator per tensor of [`Network::params`]
/// (in that order, shaped by [`AlignModel::param_shapes`]). Cost per batch: one forward and one
/// backward pass of the initial network.
///
/// The accumulated change is the plain-SGD update (`lr` times the frozen gradient): the reference
/// update of docs/theory.md §5 for SGD runs. For a run with Adam it is not Adam's update.
/// With the rules crate's training loop, call it from the per-step hook:
/// `StepBatch::Mlp { x, err }` and `view.lr` give `shadow.observe(x, err, view.lr as f32)` (or,
/// with [`ShadowAccumulator::with_training_set`], `shadow.observe_rows(view.rows, err, lr)`);
/// `StepBatch::Rnn { xs, errs }` gives `shadow.observe_step(xs, None, errs, lr)`.
///
/// ```
/// use widealign_models::{Mlp, MlpSpec, Rnn, RnnSpec};
/// use widealign_ntk::align::ShadowAccumulator;
/// use widealign_tensor::{Activation, Mat};
/// let spec = MlpSpec::new(3, vec![8], 2, Activation::Relu);
/// let net = Mlp::<f32>::new(&spec, 0).unwrap();
/// let mut shadow = ShadowAccumulator::new(&net);
/// let x = Mat::from_element(4, 3, 0.5f32);
/// let err = Mat::from_element(4, 2, 0.1f32);
/// shadow.observe(&x, &err, 0.5).unwrap();
/// assert_eq!(shadow.steps(), 1);
/// assert!(shadow.weight_changes()[1].iter().any(|&v| v != 0.0));
/// assert!(shadow.observe(&x, &Mat::zeros(4, 3), 0.5).is_err());
///
/// // the same accumulator for the recurrent network: one change per parameter tensor
/// let rnn = Rnn::<f32>::new(&RnnSpec::new(1, 8, 1, Activation::Tanh), 0).unwrap();
/// let mut shadow = ShadowAccumulator::new(&rnn);
/// let xs = vec![Mat::from_element(4, 1, 1.0f32); 3];
/// let errs = vec![Mat::from_element(4, 1, 0.1f32); 3];
/// shadow.observe_step(&xs, None, &errs, 0.5).unwrap();
/// assert_eq!(shadow.changes().len(), 6); // W_in, W_rec, b, W_out, b_out, r_0
/// assert_eq!(shadow.changes()[1].shape(), (8, 8));
/// ```
#[derive(Clone, Debug)]
pub struct ShadowAccumulator<M: Network> {
    /// The rules crate's Align-zero, frozen at `initial`.
    rule: Rule<M>,
    /// The training inputs of [`ShadowAccumulator::with_training_set`] (MLP).
    x_train: Option<Mat<M::Scalar>>,
    /// The batch gathered from `x_train` by [`ShadowAccumulator::observe_rows`] (MLP).
    batch: Mat<M::Scalar>,
    /// One accumulated change per parameter tensor, in the order of [`Network::params`].
    deltas: Vec<Mat<M::Scalar>>,
    steps: usize,
}

impl<M: AlignModel> ShadowAccumulator<M> {
    /// Starts from zero changes, keeping a copy of `initial` (the network at initialisation).
    pub fn new(initial: &M) -> Self {
        let rule = Rule::with_frozen(RuleKind::AlignZero, initial.clone())
            .expect("a constructed network has a valid spec");
        ShadowAccumulator {
            deltas: initial
                .param_shapes()
                .into_iter()
                .map(|(r, c)| Mat::zeros(r, c))
                .collect(),
            rule,
            x_train: None,
            batch: Mat::zeros(0, 0),
            steps: 0,
        }
    }

    /// Caches the frozen network's trace on the whole training set `x_train` (the rules crate's
    /// frozen-trace cache), so that [`ShadowAccumulator::observe_step`] with the batch's
    /// training rows skips the frozen forward pass. Returns the cache's size in bytes.
    ///
    /// # Errors
    /// [`NtkError::Model`] if `x_train` does not fit the network.
    pub fn cache_training_set(&mut self, x_train: &M::Input) -> Result<usize, NtkError> {
        self.rule.cache_frozen_trace(x_train).map_err(rules_err)
    }

    /// Adds one step's Align-zero update for the batch `x` with the live network's output error
    /// `err = ∂L/∂f` and learning rate `lr`. `rows` are the batch's rows in the training set
    /// given to [`ShadowAccumulator::cache_training_set`] (`None`: run the frozen forward pass).
    ///
    /// # Errors
    /// [`NtkError::Shape`] / [`NtkError::Model`] if `x` or `err` does not fit the network;
    /// [`NtkError::InvalidOption`] if `rows` do not match the batch or the cached examples.
    pub fn observe_step(
        &mut self,
        x: &M::Input,
        rows: Option<&[usize]>,
        err: &M::Error,
        lr: M::Scalar,
    ) -> Result<(), NtkError> {
        let grads = self
            .rule
            .update_from_frozen(x, rows, err)
            .map_err(rules_err)?;
        for (acc, g) in self.deltas.iter_mut().zip(M::grad_slices(grads)) {
            if let Some(g) = g {
                elementwise::axpy(-lr, g, acc.as_mut_slice());
            }
        }
        self.steps += 1;
        Ok(())
    }

    /// The accumulated change of every parameter tensor, in the order of [`Network::params`]
    /// (vectors as one-column matrices).
    pub fn changes(&self) -> &[Mat<M::Scalar>] {
        &self.deltas
    }

    /// Number of observed steps.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Replaces the accumulated changes and the step count with saved ones (what
    /// [`ShadowAccumulator::changes`] and [`ShadowAccumulator::steps`] gave), to continue a run
    /// from a checkpoint; the initial network and its cache stay.
    ///
    /// # Errors
    /// [`NtkError::Shape`] unless `changes` holds one matrix per parameter tensor, shaped as
    /// [`AlignModel::param_shapes`] says; nothing is replaced then.
    ///
    /// ```
    /// use widealign_models::{Mlp, MlpSpec};
    /// use widealign_ntk::align::ShadowAccumulator;
    /// use widealign_tensor::{Activation, Mat};
    /// let net = Mlp::<f32>::new(&MlpSpec::new(3, vec![8], 2, Activation::Relu), 0).unwrap();
    /// let mut shadow = ShadowAccumulator::new(&net);
    /// shadow.observe(&Mat::from_element(4, 3, 0.5), &Mat::from_element(4, 2, 0.1), 0.5).unwrap();
    /// let mut resumed = ShadowAccumulator::new(&net);
    /// resumed.restore(shadow.changes().to_vec(), shadow.steps()).unwrap();
    /// assert_eq!((resumed.changes(), resumed.steps()), (shadow.changes(), 1));
    /// assert!(resumed.restore(vec![Mat::zeros(8, 3)], 1).is_err());
    /// ```
    pub fn restore(&mut self, changes: Vec<Mat<M::Scalar>>, steps: usize) -> Result<(), NtkError> {
        let want: Vec<(usize, usize)> = self.deltas.iter().map(|m| m.shape()).collect();
        let got: Vec<(usize, usize)> = changes.iter().map(|m| m.shape()).collect();
        if want != got {
            return Err(NtkError::Shape {
                what: "saved shadow changes".into(),
                expected: format!("{want:?}"),
                got: format!("{got:?}"),
            });
        }
        self.deltas = changes;
        self.steps = steps;
        Ok(())
    }

    /// The initial network the shadow reads.
    pub fn initial(&self) -> &M {
        self.rule
            .frozen()
            .expect("Align-zero holds the frozen network")
    }
}

impl<T: Float> ShadowAccumulator<Mlp<T>> {
    /// Like [`ShadowAccumulator::new`], and also caches the frozen network's trace on the whole
    /// training set `x_train` (`N × n_0`; the rules crate's frozen-trace cache, memory
    /// `2N·Σ_{l<L} n_l` values, plus a copy of `x_train`), so that
    /// [`ShadowAccumulator::observe_rows`] skips the frozen forward pass (a third of the cost).
    ///
    /// # Errors
    /// [`NtkError::Shape`] if `x_train` does not have `n_0` columns.
    pub fn with_training_set(initial: &Mlp<T>, x_train: &Mat<T>) -> Result<Self, NtkError> {
        if x_train.ncols() != initial.spec.input_dim {
            return Err(shape_err(
                "training inputs",
                format!("N × {}", initial.spec.input_dim),
                x_train.shape(),
            ));
        }
        let mut s = Self::new(initial);
        s.cache_training_set(x_train)?;
        s.x_train = Some(x_train.clone());
        Ok(s)
    }

    /// [`ShadowAccumulator::observe`] for the batch made of training rows `rows` (indices into
    /// the set given to [`ShadowAccumulator::with_training_set`]), reading the cached frozen
    /// trace instead of recomputing it.
    ///
    /// # Errors
    /// [`NtkError::InvalidOption`] without a cached training set or for an out-of-range row;
    /// [`NtkError::Shape`] if `err` is not `rows.len() × C`.
    pub fn observe_rows(&mut self, rows: &[usize], err: &Mat<T>, lr: T) -> Result<(), NtkError> {
        let Some(x_train) = &self.x_train else {
            return Err(NtkError::InvalidOption {
                name: "shadow rows".into(),
                reason: "observe_rows needs ShadowAccumulator::with_training_set".into(),
            });
        };
        let n = x_train.nrows();
        if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
            return Err(NtkError::InvalidOption {
                name: "shadow rows".into(),
                reason: format!("row {bad} is out of range for {n} cached training inputs"),
            });
        }
        let output_dim = self.initial().spec.output_dim;
        if err.shape() != (rows.len(), output_dim) {
            return Err(shape_err(
                "shadow error",
                format!("{} × {}", rows.len(), output_dim),
                err.shape(),
            ));
        }
        let mut batch = std::mem::replace(&mut self.batch, Mat::zeros(0, 0));
        if batch.shape() != (rows.len(), x_train.ncols()) {
            batch = Mat::zeros(rows.len(), x_train.ncols());
        }
        for (i, &r) in rows.iter().enumerate() {
            batch.row_mut(i).copy_from(&x_train.row(r));
        }
        let result = self.observe_step(&batch, Some(rows), err, lr);
        self.batch = batch;
        result
    }

    /// Adds one step's Align-zero update for the batch `x_batch` (`B × n_0`) with the live
    /// network's output error `err = ∂L/∂f` (`B × C`) and learning rate `lr`.
    ///
    /// # Errors
    /// [`NtkError::Shape`] if `x_batch` or `err` has the wrong shape.
    pub fn observe(&mut self, x_batch: &Mat<T>, err: &Mat<T>, lr: T) -> Result<(), NtkError> {
        let spec = &self.initial().spec;
        if x_batch.ncols() != spec.input_dim {
            return Err(shape_err(
                "shadow batch",
                format!("B × {}", spec.input_dim),
                x_batch.shape(),
            ));
        }
        if err.shape() != (x_batch.nrows(), spec.output_dim) {
            return Err(shape_err(
                "shadow error",
                format!("{} × {}", x_batch.nrows(), spec.output_dim),
                err.shape(),
            ));
        }
        self.observe_step(x_batch, None, err, lr)
    }

    /// Accumulated weight changes `ΔW^l_ref` at index `l − 1`.
    pub fn weight_changes(&self) -> Vec<&Mat<T>> {
        self.deltas.iter().step_by(2).collect()
    }

    /// Accumulated bias changes `Δb^l_ref` at index `l − 1`.
    pub fn bias_changes(&self) -> Vec<&[T]> {
        self.deltas
            .iter()
            .skip(1)
            .step_by(2)
            .map(|b| b.as_slice())
            .collect()
    }
}

/// A rules-crate error inside the shadow accumulator, as this crate's error.
fn rules_err(e: RulesError) -> NtkError {
    match e {
        RulesError::Model(m) => m.into(),
        other => NtkError::InvalidOption {
            name: "shadow step".into(),
            reason: other.to_string(),
        },
    }
}

/// Options of [`align_layers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlignOptions {
    /// Gaussian probes for the probe estimate.
    pub probes: usize,
    /// Seed of the probes and of the controls.
    pub seed: u64,
}

impl Default for AlignOptions {
    /// 100 probes, seed 0.
    fn default() -> Self {
        AlignOptions {
            probes: 100,
            seed: 0,
        }
    }
}

/// The alignment numbers of one weight matrix.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerAlignment {
    /// Position `l` (1-based) of the matrix in the model's list ([`AlignModel::weight_matrices`]):
    /// the layer for the MLP; 1, 2, 3 for `W_in`, `W_rec`, `W_out` of the RNN.
    pub layer: usize,
    /// The matrix's name (`"w1"`, … for the MLP; `"w_in"`, `"w_rec"`, `"w_out"` for the RNN).
    pub name: String,
    /// Exact score of the trained change against the shadow (predicted) change.
    pub score: f64,
    /// Probe estimate of the same score.
    pub probe_score: f64,
    /// Control: the trained change with shuffled entries.
    pub shuffled: f64,
    /// Control: a fresh Gaussian matrix.
    pub random: f64,
    /// Control of the reference code: `shuffle(W_trained) − W_0`.
    pub shuffled_trained: f64,
    /// Input-span fraction of the trained change.
    pub input_span: f64,
    /// Dimension of the span of the matrix's initial training activities.
    pub span_rank: usize,
    /// The matrix's input dimension `n_in`: the input-span fraction is trivially 1 when
    /// [`LayerAlignment::span_rank`] equals it (the activities span the whole input space).
    pub span_dim: usize,
}

impl LayerAlignment {
    /// The entries of a run whose alignment is undefined (a diverged run): every number NaN,
    /// one per weight matrix of `model`.
    pub fn undefined<M: AlignModel>(model: &M) -> Vec<LayerAlignment> {
        model
            .weight_matrices()
            .into_iter()
            .enumerate()
            .map(|(i, (name, _, _))| LayerAlignment {
                layer: i + 1,
                name,
                score: f64::NAN,
                probe_score: f64::NAN,
                shuffled: f64::NAN,
                random: f64::NAN,
                shuffled_trained: f64::NAN,
                input_span: f64::NAN,
                span_rank: 0,
                span_dim: 0,
            })
            .collect()
    }
}

/// Per-matrix alignment of a training run: for every weight matrix of the model
/// ([`AlignModel::weight_matrices`]), `trained − initial` against the shadow's accumulated
/// update, with the probe estimate, the two controls, and the input-span fraction of the trained
/// change for the span of the initial network's input activities of that matrix on
/// `train_inputs` (all training inputs; [`AlignModel::input_activities`]). Controls and probes
/// of the `l`-th matrix use the streams of `SeedStream::new(seed).child("align").child("layer{l}")`.
///
/// Cost per matrix `n_out × n_in`: a few Gram products `min(n_out, n_in)² · max(n_out, n_in)`,
/// the span basis ([`SpanBasis::new`], whose Gram product costs `rows · n_in²` for the RNN's
/// `N·T` stacked rows) and the probes.
///
/// # Errors
/// [`NtkError::Shape`] if the networks' shapes differ from each other or from the shadow's, or
/// `train_inputs` does not fit; [`NtkError::InvalidOption`] for zero probes.
pub fn align_layers<M: AlignModel>(
    initial: &M,
    trained: &M,
    shadow: &ShadowAccumulator<M>,
    train_inputs: &M::Input,
    options: &AlignOptions,
) -> Result<Vec<LayerAlignment>, NtkError> {
    let shapes = initial.param_shapes();
    let trained_shapes = trained.param_shapes();
    let shadow_shapes: Vec<_> = shadow.deltas.iter().map(|m| m.shape()).collect();
    if trained_shapes != shapes || shadow_shapes != shapes {
        return Err(NtkError::Shape {
            what: "networks".into(),
            expected: format!(
                "parameter shapes {shapes:?} in the initial, trained and shadow networks"
            ),
            got: format!("{trained_shapes:?} and {shadow_shapes:?}"),
        });
    }
    let spans = initial.input_spans(train_inputs)?;
    let root = SeedStream::new(options.seed).child("align");
    let mats0 = initial.weight_matrices();
    let mats1 = trained.weight_matrices();
    let mut out = Vec::with_capacity(mats0.len());
    for (((name, k, w0), (_, _, w1)), span) in mats0.into_iter().zip(mats1).zip(&spans) {
        let l = out.len() + 1;
        let dw = w1 - w0;
        let dref = &shadow.deltas[k];
        same_shape(&dw, dref)?;
        let seeds = root.child(&format!("layer{l}"));
        let g = small_gram(&dw);
        let gr = small_gram(dref);
        let score = score_from_grams(&dw, dref, &g, &gr);
        let probe_score = probe_alignment(&dw, dref, options.probes, &seeds)?;
        let sh = shuffled(&dw, &seeds);
        let shuffled_score = score_from_grams(&sh, dref, &small_gram(&sh), &gr);
        let rnd: Mat<M::Scalar> = seeds.gaussian_matrix("random", dw.nrows(), dw.ncols(), 1.0);
        let random_score = score_from_grams(&rnd, dref, &small_gram(&rnd), &gr);
        let st = shuffled(w1, &seeds.child("trained")) - w0;
        let shuffled_trained = score_from_grams(&st, dref, &small_gram(&st), &gr);
        let input_span = span.fraction(&dw)?;
        out.push(LayerAlignment {
            layer: l,
            name,
            score,
            probe_score,
            shuffled: shuffled_score,
            random: random_score,
            shuffled_trained,
            input_span,
            span_rank: span.rank(),
            span_dim: span.dim(),
        });
    }
    Ok(out)
}

/// One layer's numbers across widths (part of [`AlignReport`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AlignSeries {
    /// Position `l` (1-based) of the weight matrix ([`LayerAlignment::layer`]).
    pub layer: usize,
    /// The matrix's name ([`LayerAlignment::name`]).
    pub name: String,
    /// Exact score per width.
    pub score: Vec<f64>,
    /// Probe estimate per width.
    pub probe_score: Vec<f64>,
    /// Shuffled control per width.
    pub shuffled: Vec<f64>,
    /// Random control per width.
    pub random: Vec<f64>,
    /// Input-span fraction per width.
    pub input_span: Vec<f64>,
}

/// The JSON of `widealign align --json`:
/// `{"widths": [...], "layers": [{"layer": 1, "name": "w1", "score": [per width],
/// "probe_score": [...], "shuffled": [...], "random": [...], "input_span": [...]}, ...]}`, one
/// entry per weight matrix (`"w_in"`, `"w_rec"`, `"w_out"` for the RNN).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AlignReport {
    /// Widths in the order they were added.
    pub widths: Vec<usize>,
    /// One series per weight matrix.
    pub layers: Vec<AlignSeries>,
}

impl AlignReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one width's per-layer results (from [`align_layers`]).
    ///
    /// # Errors
    /// [`NtkError::Shape`] if the number of layers differs from earlier widths.
    pub fn push(&mut self, width: usize, layers: &[LayerAlignment]) -> Result<(), NtkError> {
        if self.widths.is_empty() {
            self.layers = layers
                .iter()
                .map(|a| AlignSeries {
                    layer: a.layer,
                    name: a.name.clone(),
                    ..AlignSeries::default()
                })
                .collect();
        } else if layers.len() != self.layers.len() {
            return Err(NtkError::Shape {
                what: "alignment layers".into(),
                expected: format!("{} layers (as for earlier widths)", self.layers.len()),
                got: format!("{}", layers.len()),
            });
        }
        self.widths.push(width);
        for (s, a) in self.layers.iter_mut().zip(layers) {
            s.score.push(a.score);
            s.probe_score.push(a.probe_score);
            s.shuffled.push(a.shuffled);
            s.random.push(a.random);
            s.input_span.push(a.input_span);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_models::{
        backward_signals, gradients, Feedback, FeedbackPath, Loss, MlpSpec, Pathway,
    };
    use widealign_tensor::Activation;

    fn naive_score(a: &Mat<f64>, b: &Mat<f64>) -> f64 {
        let m = a.transpose() * a;
        let mr = b.transpose() * b;
        m.dot(&mr) / (m.norm() * mr.norm())
    }

    #[test]
    fn exact_score_matches_definition_on_both_sides() {
        let s = SeedStream::new(1);
        for (r, c) in [(3, 7), (7, 3), (5, 5)] {
            let a: Mat<f64> = s.gaussian_matrix("a", r, c, 1.0);
            let b: Mat<f64> = &a + s.gaussian_matrix::<f64>("b", r, c, 0.7);
            let x = alignment_score(&a, &b).unwrap();
            assert!((x - naive_score(&a, &b)).abs() < 1e-13, "{r}x{c}");
            assert!((0.0..=1.0).contains(&x));
            // the probe estimate converges to it
            let p = probe_alignment(&a, &b, 4000, &s).unwrap();
            assert!((p - x).abs() < 0.02, "probe {p} vs exact {x}");
        }
        assert!(
            alignment_score(&Mat::<f64>::zeros(2, 2), &Mat::identity(2, 2))
                .unwrap()
                .is_nan()
        );
        assert!(alignment_score(&Mat::<f64>::zeros(2, 2), &Mat::zeros(2, 3)).is_err());
    }

    #[test]
    fn span_fraction_properties() {
        let s = SeedStream::new(2);
        // 4 activities in R^10 (n_in > N) and 20 activities of rank 3 in R^6 (n_in ≤ N)
        let a: Mat<f64> = s.gaussian_matrix("a", 4, 10, 1.0);
        let basis = SpanBasis::new(&a);
        assert_eq!(basis.rank(), 4);
        let inside = s.gaussian_matrix::<f64>("c", 5, 4, 1.0) * &a;
        assert!((basis.fraction(&inside).unwrap() - 1.0).abs() < 1e-12);
        let outside: Mat<f64> = s.gaussian_matrix("o", 5, 10, 1.0);
        let f = basis.fraction(&outside).unwrap();
        assert!(f > 0.05 && f < 0.9, "{f}");
        // compare with an explicit projector
        let p = a.transpose() * (&a * a.transpose()).try_inverse().unwrap() * &a;
        let expect = (&outside * &p).norm_squared() / outside.norm_squared();
        assert!((f - expect).abs() < 1e-12);
        let low =
            s.gaussian_matrix::<f64>("l", 20, 3, 1.0) * s.gaussian_matrix::<f64>("m", 3, 6, 1.0);
        let b = SpanBasis::new(&low);
        assert_eq!(b.rank(), 3);
        let p = low.clone().pseudo_inverse(1e-10).unwrap() * &low;
        let d: Mat<f64> = s.gaussian_matrix("d", 4, 6, 1.0);
        let expect = (&d * &p).norm_squared() / d.norm_squared();
        assert!((b.fraction(&d).unwrap() - expect).abs() < 1e-10);
        let full: Mat<f64> = s.gaussian_matrix("f", 20, 6, 1.0);
        assert_eq!(SpanBasis::new(&full).fraction(&d).unwrap(), 1.0);
    }

    #[test]
    fn shadow_equals_linearised_gradient_and_leaves_nets_alone() {
        let spec = MlpSpec::new(4, vec![12, 9], 3, Activation::Tanh);
        let net0 = Mlp::<f64>::new(&spec, 3).unwrap();
        let s = SeedStream::new(4);
        let x: Mat<f64> = s.gaussian_matrix("x", 10, 4, 1.0);
        let y: Mat<f64> = s.gaussian_matrix("y", 10, 3, 1.0);
        let mut shadow = ShadowAccumulator::new(&net0);
        let mut net = net0.clone();
        let lr = 0.3;
        let mut expect: Vec<Mat<f64>> = net0.weights.iter().map(|w| w * 0.0).collect();
        for step in 0..5 {
            let batch = x.rows(2 * step, 2).into_owned();
            let yb = y.rows(2 * step, 2).into_owned();
            let tr = net.forward(&batch).unwrap();
            let (_, err) = Loss::Mse.evaluate(tr.output(), &yb).unwrap();
            shadow.observe(&batch, &err, lr).unwrap();
            // the Align-zero update by hand: frozen pathway and frozen activities
            let t0 = net0.forward(&batch).unwrap();
            let p = Pathway {
                feedback: Feedback::Weights(&net0.weights),
                derivatives: &t0,
            };
            let g = gradients(&spec, &backward_signals(&spec, &p, &err), &t0);
            for (e, gw) in expect.iter_mut().zip(&g.weights) {
                *e -= gw.as_ref().unwrap() * lr;
            }
            // train the live net with backprop
            let pl = Pathway {
                feedback: Feedback::Weights(&net.weights),
                derivatives: &tr,
            };
            let gl = gradients(&spec, &backward_signals(&spec, &pl, &err), &tr);
            net.apply_update(&gl, lr);
        }
        for (a, b) in shadow.weight_changes().into_iter().zip(&expect) {
            assert!((a - b).abs().max() < 1e-14);
        }
        // the cached variant gives the same numbers
        let mut cached = ShadowAccumulator::with_training_set(&net0, &x).unwrap();
        let mut replay = net0.clone();
        for step in 0..5 {
            let rows: Vec<usize> = vec![2 * step, 2 * step + 1];
            let batch = x.rows(2 * step, 2).into_owned();
            let tr = replay.forward(&batch).unwrap();
            let (_, err) = Loss::Mse
                .evaluate(tr.output(), &y.rows(2 * step, 2).into_owned())
                .unwrap();
            cached.observe_rows(&rows, &err, lr).unwrap();
            let pl = Pathway {
                feedback: Feedback::Weights(&replay.weights),
                derivatives: &tr,
            };
            replay.apply_update(
                &gradients(&spec, &backward_signals(&spec, &pl, &err), &tr),
                lr,
            );
        }
        for (a, b) in cached
            .weight_changes()
            .into_iter()
            .zip(shadow.weight_changes())
        {
            assert!((a - b).abs().max() < 1e-14);
        }
        assert!(cached.observe_rows(&[10], &Mat::zeros(1, 3), lr).is_err());
        assert!(shadow.observe_rows(&[0], &Mat::zeros(1, 3), lr).is_err());
        assert_eq!(shadow.initial(), &net0);
        // Align-zero updates lie in the span of the initial activities (exactly, up to rounding)
        let t0 = net0.forward(&x).unwrap();
        for l in 0..3 {
            let f = input_span_fraction(shadow.weight_changes()[l], &t0.act[l]).unwrap();
            assert!((f - 1.0).abs() < 1e-10, "layer {} fraction {f}", l + 1);
        }
        let res = align_layers(&net0, &net, &shadow, &x, &AlignOptions::default()).unwrap();
        assert_eq!(res.len(), 3);
        for a in &res {
            // after 5 small steps backprop and its linearisation are close
            assert!(a.score > 0.99, "{a:?}");
            assert!((a.probe_score - a.score).abs() < 0.05, "{a:?}");
            assert!(a.random < a.score && a.shuffled < a.score, "{a:?}");
            assert!(a.shuffled_trained < a.score, "{a:?}");
        }
        // the reference's control: shuffle(W_trained) − W_0, from the layer's `trained` stream
        for (a, (w0, w1)) in res.iter().zip(net0.weights.iter().zip(&net.weights)) {
            let seeds = SeedStream::new(AlignOptions::default().seed)
                .child("align")
                .child(&format!("layer{}", a.layer));
            let st = shuffled(w1, &seeds.child("trained")) - w0;
            let want = alignment_score(&st, shadow.weight_changes()[a.layer - 1]).unwrap();
            assert!((a.shuffled_trained - want).abs() < 1e-12, "{a:?} vs {want}");
        }
        // 10 training inputs: they span layer 1's 4 and layer 3's 9 input dimensions (the
        // fraction is trivially 1 there), not layer 2's 12
        let spans: Vec<(usize, usize)> = res.iter().map(|a| (a.span_rank, a.span_dim)).collect();
        assert_eq!(spans, [(4, 4), (10, 12), (9, 9)]);
        assert!(res[1].input_span < 1.0 - 1e-6, "{:?}", res[1]);
        let mut report = AlignReport::new();
        report.push(12, &res).unwrap();
        report.push(24, &res).unwrap();
        assert!(report.push(48, &res[..2]).is_err());
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.starts_with(
            "{\"widths\":[12,24],\"layers\":[{\"layer\":1,\"name\":\"w1\",\"score\":["
        ));
    }

    /// `A·B` for the hand computation.
    fn mm(a: &Mat<f64>, b: &Mat<f64>) -> Mat<f64> {
        a * b
    }

    #[test]
    fn rnn_shadow_equals_hand_computed_align_zero_accumulation() {
        use widealign_models::{Network, RnnSpec};
        let spec = RnnSpec::new(2, 8, 2, Activation::Tanh);
        let net0 = Rnn::<f64>::new(&spec, 5).unwrap();
        let (m_in, m_rec, m_out) = (
            spec.input_multiplier(),
            spec.recurrent_multiplier(),
            spec.readout_multiplier(),
        );
        let sb = spec.param.bias_multiplier();
        let s = SeedStream::new(6);
        let (b, t_len, lr) = (2, 3, 0.05);
        let mut shadow = ShadowAccumulator::new(&net0);
        let mut net = net0.clone();
        let mut expect: Vec<Mat<f64>> = shadow.changes().iter().map(|m| m * 0.0).collect();
        let mut all_x: Vec<Vec<Mat<f64>>> = Vec::new();
        for step in 0..4 {
            let xs: Vec<Mat<f64>> = (0..t_len)
                .map(|t| s.gaussian_matrix(&format!("x{step}.{t}"), b, 2, 1.0))
                .collect();
            let ys: Vec<Mat<f64>> = (0..t_len)
                .map(|t| s.gaussian_matrix(&format!("y{step}.{t}"), b, 2, 1.0))
                .collect();
            let live = net.forward(&xs).unwrap();
            let (_, errs) = Loss::Mse.evaluate_sequence(&live.outputs, &ys).unwrap();
            shadow.observe_step(&xs, None, &errs, lr).unwrap();
            // Align-zero by hand: BPTT through the frozen W_rec, W_out with frozen φ′ and
            // frozen activities, the live errors
            let f = net0.forward(&xs).unwrap();
            let mut d: Vec<Mat<f64>> = vec![Mat::zeros(b, 8); t_len + 1];
            for t in (0..t_len).rev() {
                let back = mm(&errs[t], &net0.w_out) * m_out + mm(&d[t + 1], &net0.w_rec) * m_rec;
                d[t] = back.zip_map(&f.pre[t], |g, h| g * spec.activation.derivative(h));
            }
            for t in 0..t_len {
                expect[0] -= (d[t].transpose() * &xs[t]) * (lr * m_in);
                expect[1] -= (d[t].transpose() * &f.states[t]) * (lr * m_rec);
                expect[2] -= d[t].row_sum().transpose() * (lr * sb);
                expect[3] -= (errs[t].transpose() * &f.states[t + 1]) * (lr * m_out);
                expect[4] -= errs[t].row_sum().transpose() * (lr * sb);
            }
            expect[5] -= mm(&d[0], &net0.w_rec).row_sum().transpose() * (lr * m_rec);
            // the live network trains with backprop through time
            let mut bufs = Default::default();
            net.sgd_update(FeedbackPath::Live, &live, &live, &errs, lr, &mut bufs);
            all_x.push(xs);
        }
        assert_eq!(shadow.steps(), 4);
        for (k, (a, e)) in shadow.changes().iter().zip(&expect).enumerate() {
            let scale = e.abs().max();
            assert!(scale > 1e-6, "tensor {k} is trained");
            assert!((a - e).abs().max() < 1e-12 * scale.max(1.0), "tensor {k}");
        }
        assert_eq!(shadow.initial(), &net0);
        assert_ne!(net, net0);
        // each matrix's shadow change lies in the span of its stacked initial activities, which
        // is smaller than the matrix's input dimension for W_rec and W_out here
        let xs: Vec<Mat<f64>> = (0..t_len)
            .map(|t| {
                let parts: Vec<&Mat<f64>> = all_x.iter().map(|x| &x[t]).collect();
                stack_rows(parts.into_iter(), 2)
            })
            .collect();
        let acts = net0.input_activities(&xs).unwrap();
        assert_eq!(acts[1].nrows(), 4 * b * t_len);
        for ((name, k, _), a) in net0.weight_matrices().into_iter().zip(&acts) {
            let basis = SpanBasis::new(a);
            let f = basis.fraction(&shadow.changes()[k]).unwrap();
            assert!((f - 1.0).abs() < 1e-10, "{name}: {f}");
        }
        let res = align_layers(&net0, &net, &shadow, &xs, &AlignOptions::default()).unwrap();
        let names: Vec<&str> = res.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["w_in", "w_rec", "w_out"]);
        for r in &res {
            // a few small steps: backprop stays close to its linearisation
            assert!(r.score > 0.95, "{r:?}");
            assert!(r.score > r.random && r.score > r.shuffled, "{r:?}");
        }
        // a shadow of another architecture is refused
        let other = Rnn::<f64>::new(&RnnSpec::new(2, 9, 2, Activation::Tanh), 5).unwrap();
        let wrong = ShadowAccumulator::new(&other);
        assert!(align_layers(&net0, &net, &wrong, &xs, &AlignOptions::default()).is_err());
    }

    /// The CNN through the same generic code: at step 0 the shadow's change is exactly the
    /// weight change of the first backprop step and of the first Align-zero step (bitwise:
    /// `W_0 + ΔW_ref == W_1`); afterwards every kernel's shadow change lies in the span of the
    /// initial patches, and the Gram-built spans equal the spans of the stacked patches.
    #[test]
    fn cnn_shadow_is_the_first_step_and_lies_in_the_patch_span() {
        use widealign_models::{CnnReadout, CnnSpec, FeedbackPath, Norm, Padding};
        use widealign_rules::StepInput;
        let base = CnnSpec::new([6, 5, 2], vec![3, 4], 3, Activation::Tanh);
        for spec in [
            base.clone(),
            base.clone().with_norm(Norm::Batch).with_stride(2),
            base.clone()
                .with_readout(CnnReadout::Flatten)
                .with_padding(Padding::Valid)
                .with_kernel(2),
        ] {
            let net0 = Cnn::<f32>::new(&spec, 7).unwrap();
            let s = SeedStream::new(8);
            let x: Mat<f32> = s.gaussian_matrix("x", 12, spec.input_dim(), 1.0);
            let y: Mat<f32> = s.gaussian_matrix("y", 12, 3, 1.0);
            let lr = 0.2f32;
            let batch = x.rows(0, 4).into_owned();
            let live = net0.forward(&batch).unwrap();
            let (_, err) = Loss::Mse
                .evaluate(live.output(), &y.rows(0, 4).into_owned())
                .unwrap();
            let mut shadow = ShadowAccumulator::new(&net0);
            shadow.observe_step(&batch, None, &err, lr).unwrap();
            // one backprop step and one Align-zero step from the same initial network
            let mut bp = net0.clone();
            let mut bufs = Default::default();
            bp.sgd_update(FeedbackPath::Live, &live, &live, &err, lr, &mut bufs);
            let mut az = net0.clone();
            let mut rule = Rule::new(RuleKind::AlignZero, &net0).unwrap();
            let step = StepInput {
                x: &batch,
                rows: None,
                live: &live,
                err: &err,
            };
            rule.sgd_step(&mut az, &step, lr).unwrap();
            for trained in [&bp, &az] {
                for (k, ((p0, p1), d)) in net0
                    .params()
                    .iter()
                    .zip(trained.params())
                    .zip(shadow.changes())
                    .enumerate()
                {
                    assert!(d.iter().any(|&v| v != 0.0), "tensor {k} moved");
                    for ((a, b), c) in p0.iter().zip(p1).zip(d.iter()) {
                        assert_eq!(a + c, *b, "{spec:?}: tensor {k}");
                    }
                }
            }
            // two more steps with a backprop-trained live network
            let mut net = bp;
            for step in 1..3 {
                let b = x.rows(4 * step, 4).into_owned();
                let tr = net.forward(&b).unwrap();
                let (_, e) = Loss::Mse
                    .evaluate(tr.output(), &y.rows(4 * step, 4).into_owned())
                    .unwrap();
                shadow.observe_step(&b, None, &e, lr).unwrap();
                net.sgd_update(FeedbackPath::Live, &tr, &tr, &e, lr, &mut bufs);
            }
            let acts = net0.input_activities(&x).unwrap();
            let spans = net0.input_spans(&x).unwrap();
            let mats = net0.weight_matrices();
            let names: Vec<&str> = mats.iter().map(|m| m.0.as_str()).collect();
            assert_eq!(names, ["conv1", "conv2", "readout"]);
            for (((name, k, w), a), span) in mats.into_iter().zip(&acts).zip(&spans) {
                assert_eq!(a.ncols(), w.ncols(), "{name}");
                let direct = SpanBasis::new(a);
                assert_eq!(
                    (span.rank(), span.dim()),
                    (direct.rank(), direct.dim()),
                    "{name}"
                );
                let d = &shadow.changes()[k];
                let f = span.fraction(d).unwrap();
                // with batch norm the shadow's steps saw batches of 4, the span chunks of 12
                if spec.norm == Norm::None {
                    assert!((f - 1.0).abs() < 1e-5, "{name}: {f}");
                }
                let probe: Mat<f32> = s.gaussian_matrix("probe", 3, w.ncols(), 1.0);
                let (f1, f2) = (
                    span.fraction(&probe).unwrap(),
                    direct.fraction(&probe).unwrap(),
                );
                assert!((f1 - f2).abs() < 1e-9, "{name}: {f1} vs {f2}");
            }
            // the patches of 12 images span the first kernel's input space, not the readout's
            // for a flatten readout (fan-in 4·P_2 > 12 examples)
            assert_eq!(spans[0].rank(), spans[0].dim());
            if spec.readout == CnnReadout::Flatten {
                assert_eq!(spans[2].rank(), 12);
            }
            let res = align_layers(&net0, &net, &shadow, &x, &AlignOptions::default()).unwrap();
            assert_eq!(res.len(), 3);
            for r in &res {
                assert!(r.score > 0.9 && r.score > r.random, "{spec:?}: {r:?}");
                assert!(r.shuffled_trained.is_finite(), "{r:?}");
            }
        }
    }
}
