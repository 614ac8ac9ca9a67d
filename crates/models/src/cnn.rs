//! The convolutional network: forward trace, backward pathways, gradients.
//!
//! With `L` convolution layers (architecture and conventions in [`CnnSpec`]) and a batch `X` of
//! `B` images (one per row, HWC), layer `l = 1..L` computes
//!
//! ```text
//! H^l = m_l · (K^l ⋆ A^{l−1}) + s · b^l          (B × C_l·P_l,  m_l = s_w/√(k·k·C_{l−1}) in NTK)
//! Z^l = BN(H^l)  (or Z^l = H^l without normalisation),   A^l = φ(Z^l),   A^0 = X
//! R   = GAP(A^L)  or  flatten(A^L),            f(X) = m_R · R · W_Rᵀ + s · 1 b_Rᵀ
//! ```
//!
//! where `⋆` is the (cross-correlation) convolution with stride and padding of the spec and
//! `BN` normalises every feature over the batch (see [`Norm::Batch`]).
//!
//! ## The backward pass in two parts (docs/theory.md §2)
//!
//! As for the MLP, every rule changes the kernel `K^l` by `−lr · m_l · Σ_{b,p} D^l ⊗ patch(A^{l−1})`
//! (and the readout by `−lr · m_R · Eᵀ R`): the rules differ in the signals `D^l` (at `H^l`) and in
//! the activities. With the output error `E = ∂L/∂f` (`B × C`) and `J^l(g) = BNᵀ(φ′(Z^l) ⊙ g)`
//! (`φ′` and the normalisation's Jacobian taken from the `derivatives` trace):
//!
//! * weights `M` (the live ones for backprop, the initial ones for the Align rules, fixed random
//!   kernels for FA): `D^L = J^L(spread(m_R · E · M_R))`, `D^{l−1} = J^{l−1}(m_l · M^l ⋆ᵀ D^l)`,
//!   where `spread` is the adjoint of the readout's pooling (`1/P_L` to every pixel for GAP);
//! * direct (DFA): `D^l = J^l(E · Q^lᵀ)` with a fixed `Q^l` of shape `(C_l·P_l) × C`;
//! * readout only: no signal below the readout.
//!
//! [`Cnn::backward_signals_into`](crate::Network::backward_signals_into) computes the signals,
//! [`Cnn::gradients_into`](crate::Network::gradients_into) the updates from them and a chosen
//! activity trace. Convolutions run as im2col on the workspace GEMM (`crate::conv`).
//!
//! ```
//! use widealign_models::{Cnn, CnnSpec, FeedbackPath, Loss, Network};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = CnnSpec::new([6, 6, 1], vec![8, 8], 3, Activation::Relu);
//! let mut net = Cnn::<f64>::new(&spec, 0).unwrap();
//! let x: Mat<f64> = SeedStream::new(1).gaussian_matrix("x", 4, 36, 1.0);
//! let y: Mat<f64> = SeedStream::new(1).gaussian_matrix("y", 4, 3, 1.0);
//! let trace = net.forward(&x).unwrap();
//! let (loss0, err) = Loss::Mse.evaluate(trace.output(), &y).unwrap();
//! let mut buffers = Default::default();
//! net.sgd_update(FeedbackPath::Live, &trace, &trace, &err, 0.5, &mut buffers); // backprop
//! let (loss1, _) = Loss::Mse.evaluate(&net.predict(&x).unwrap(), &y).unwrap();
//! assert!(loss1 < loss0);
//! ```

use widealign_tensor::{
    elementwise,
    gemm::{gemm, Op},
    reduce,
    rng::SeedStream,
    Float, Mat,
};

use crate::conv::{Geometry, Layout};
use crate::mlp::{ensure_shape, row_sums};
use crate::spec::BATCH_NORM_EPS;
use crate::{CnnReadout, CnnSpec, FeedbackPath, Grads, ImageLayout, ModelError, Network, Norm};

/// A convolutional network with its weights.
///
/// `weights[l − 1]` is the kernel `K^l` (`C_l × k·k·C_{l−1}`, see [`CnnSpec`] for the column
/// order) for `l = 1..L`, and `weights[L]` the readout `W_R` (`C × n_R`); `biases` likewise
/// (`C_l` and `C` values). Memory: [`CnnSpec::parameter_count`] values of `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cnn<T: Float> {
    /// The architecture.
    pub spec: CnnSpec,
    /// The seed the weights were drawn from.
    pub seed: u64,
    /// `K^1..K^L`, then `W_R`.
    pub weights: Vec<Mat<T>>,
    /// `b^1..b^L`, then `b_R`.
    pub biases: Vec<Vec<T>>,
}

/// The stored state of one forward pass.
///
/// Feature maps are `B × (C_l·P_l)` in channel-major order (see [`CnnSpec`]). Memory:
/// `B·(H·W·C + Σ_l (2 or 3)·C_l·P_l + n_R + C)` values (3 with batch normalisation).
#[derive(Clone, Debug, PartialEq)]
pub struct CnnTrace<T: Float> {
    /// The input batch `X` (`B × H·W·C`, HWC).
    pub input: Mat<T>,
    /// `H^1..H^L` at indices `0..L`, then the output `f(X)` (`B × C`) at index `L`.
    pub pre: Vec<Mat<T>>,
    /// Batch normalisation only: `Z^1..Z^L` (empty without normalisation).
    pub norm: Vec<Mat<T>>,
    /// Batch normalisation only: `1/√(σ² + ε)` of every feature of `H^l` (length `C_l·P_l`).
    pub inv_std: Vec<Vec<T>>,
    /// `A^1..A^L` at indices `0..L`.
    pub act: Vec<Mat<T>>,
    /// The readout's input `R` for global average pooling (`B × C_L`; empty for flatten).
    pub pooled: Mat<T>,
}

impl<T: Float> Default for CnnTrace<T> {
    fn default() -> Self {
        CnnTrace {
            input: Mat::zeros(0, 0),
            pre: Vec::new(),
            norm: Vec::new(),
            inv_std: Vec::new(),
            act: Vec::new(),
            pooled: Mat::zeros(0, 0),
        }
    }
}

impl<T: Float> CnnTrace<T> {
    /// The network output `f(X)` (`B × C`).
    pub fn output(&self) -> &Mat<T> {
        self.pre.last().expect("a trace has a readout")
    }

    /// Where `φ′` of layer `l = 1..L` is evaluated: `Z^l` with normalisation, `H^l` without.
    fn gate_input(&self, l: usize) -> &Mat<T> {
        if self.norm.is_empty() {
            &self.pre[l - 1]
        } else {
            &self.norm[l - 1]
        }
    }

    /// The readout's input `R`.
    fn readout_input(&self, spec: &CnnSpec) -> &Mat<T> {
        match spec.readout {
            CnnReadout::Gap => &self.pooled,
            CnnReadout::Flatten => self.act.last().expect("at least one layer"),
        }
    }
}

/// Backward signals `D^1..D^L` (at `H^l`, `B × C_l·P_l`) at indices `0..L` and `D_R = E` at
/// index `L`; `None` where the pathway does not reach.
#[derive(Clone, Debug, Default)]
pub struct CnnSignals<T: Float> {
    /// `D^l` at index `l − 1`, `E` at index `L`.
    pub d: Vec<Option<Mat<T>>>,
    /// Reused patch buffer.
    scratch: Vec<T>,
}

/// Reusable buffers of the CNN's SGD step: signals and updates.
#[derive(Clone, Debug, Default)]
pub struct CnnBuffers<T: Float> {
    signals: CnnSignals<T>,
    grads: Grads<T>,
    scratch: Vec<T>,
}

/// Geometry of convolution layer `l = 1..L`.
fn geometry(spec: &CnnSpec, l: usize) -> Geometry {
    let [in_h, in_w, in_c] = spec.map_shape(l - 1);
    let [out_h, out_w, _] = spec.map_shape(l);
    let (k, s) = (spec.kernel, spec.stride);
    Geometry {
        in_h,
        in_w,
        in_c,
        out_h,
        out_w,
        k,
        stride: s,
        pad_top: spec.padding.pad_before(in_h, k, s),
        pad_left: spec.padding.pad_before(in_w, k, s),
        layout: match (l, spec.layout) {
            (1, ImageLayout::Hwc) => Layout::Hwc,
            _ => Layout::Chw,
        },
    }
}

/// `m_l` of weight layer `l = 1..L+1` (the readout is `L + 1`).
fn multiplier<T: Float>(spec: &CnnSpec, l: usize) -> T {
    let fan_in = spec.layer_dims()[l - 1].0;
    T::cast(spec.param.weight_multiplier(fan_in))
}

/// Adds `s·b[c]` to every value of channel `c` of a CHW batch `h` (`B × C·P`).
fn add_channel_bias<T: Float>(h: &mut Mat<T>, bias: &[T], s: T) {
    let per_channel = h.len() / bias.len().max(1);
    for (chunk, &bc) in h.as_mut_slice().chunks_mut(per_channel).zip(bias) {
        let v = s * bc;
        chunk.iter_mut().for_each(|x| *x += v);
    }
}

/// Batch normalisation of every column of `h` into `z`, keeping `1/√(σ² + ε)` per column.
fn batch_norm<T: Float>(h: &Mat<T>, z: &mut Mat<T>, inv_std: &mut Vec<T>) {
    let b = h.nrows();
    ensure_shape(z, b, h.ncols());
    inv_std.resize(h.ncols(), T::zero());
    for ((col, out), inv) in h
        .as_slice()
        .chunks(b)
        .zip(z.as_mut_slice().chunks_mut(b))
        .zip(inv_std.iter_mut())
    {
        let mean = reduce::sum(col) / b as f64;
        let var = col
            .iter()
            .map(|&v| (v.as_f64() - mean).powi(2))
            .sum::<f64>()
            / b as f64;
        let is = 1.0 / (var + BATCH_NORM_EPS).sqrt();
        *inv = T::cast(is);
        for (o, &v) in out.iter_mut().zip(col) {
            *o = T::cast((v.as_f64() - mean) * is);
        }
    }
}

/// The adjoint of [`batch_norm`] in place: `g ← inv·(g − mean(g) − z·mean(g ⊙ z))` per column.
fn batch_norm_backward<T: Float>(z: &Mat<T>, inv_std: &[T], g: &mut Mat<T>) {
    let b = g.nrows();
    for ((gc, zc), &inv) in g
        .as_mut_slice()
        .chunks_mut(b)
        .zip(z.as_slice().chunks(b))
        .zip(inv_std)
    {
        let mg = reduce::sum(gc) / b as f64;
        let mgz = reduce::dot(gc, zc) / b as f64;
        let inv = inv.as_f64();
        for (gv, &zv) in gc.iter_mut().zip(zc) {
            *gv = T::cast(inv * (gv.as_f64() - mg - zv.as_f64() * mgz));
        }
    }
}

/// Global average pooling of a CHW batch `a` (`B × C·P`) into `out` (`B × C`).
fn pool<T: Float>(a: &Mat<T>, channels: usize, out: &mut Mat<T>) {
    let b = a.nrows();
    let p = a.ncols() / channels;
    ensure_shape(out, b, channels);
    let inv = T::cast(1.0 / p as f64);
    for (c, dst) in out.as_mut_slice().chunks_mut(b).enumerate() {
        dst.fill(T::zero());
        for px in a.as_slice()[c * p * b..(c + 1) * p * b].chunks(b) {
            for (d, &v) in dst.iter_mut().zip(px) {
                *d += v;
            }
        }
        dst.iter_mut().for_each(|d| *d *= inv);
    }
}

/// The adjoint of the readout's pooling: `g_R` (`B × n_R`) onto the last maps (`B × C·P`).
fn spread<T: Float>(spec: &CnnSpec, g: &Mat<T>, out: &mut Mat<T>) {
    let l = spec.conv_layers();
    let b = g.nrows();
    ensure_shape(out, b, spec.map_len(l));
    match spec.readout {
        CnnReadout::Flatten => out.copy_from(g),
        CnnReadout::Gap => {
            let [h, w, c] = spec.map_shape(l);
            let p = h * w;
            let inv = T::cast(1.0 / p as f64);
            for ch in 0..c {
                let src = &g.as_slice()[ch * b..(ch + 1) * b];
                for px in out.as_mut_slice()[ch * p * b..(ch + 1) * p * b].chunks_mut(b) {
                    for (d, &v) in px.iter_mut().zip(src) {
                        *d = v * inv;
                    }
                }
            }
        }
    }
}

/// The feedback matrices of a pathway.
enum CnnFeedback<'a, T: Float> {
    /// Kernels and readout shaped like the weights (index 0 never read).
    Weights(&'a [Mat<T>]),
    /// `Q^1..Q^L`, each `(C_l·P_l) × C`.
    Direct(&'a [Mat<T>]),
    /// Nothing below the readout.
    ReadoutOnly,
}

impl<T: Float> Cnn<T> {
    /// Draws a network from `seed`.
    ///
    /// `K^l` (and `W_R` as layer `L + 1`) comes from the stream
    /// `SeedStream::new(seed).child("cnn")` named `"layer{l}.weight"`, standard deviation
    /// `spec.param.weight_init_std(fan_in)`; `b^l` from `"layer{l}.bias"` with
    /// `spec.param.bias_init_std()`, or zero under [`BiasInit::Zero`](crate::BiasInit::Zero).
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] if the spec does not validate.
    pub fn new(spec: &CnnSpec, seed: u64) -> Result<Self, ModelError> {
        spec.validate()?;
        let stream = SeedStream::new(seed).child("cnn");
        let (weights, biases) =
            crate::stack::draw(&stream, &spec.layer_dims(), spec.param, spec.bias_init);
        Ok(Cnn {
            spec: spec.clone(),
            seed,
            weights,
            biases,
        })
    }

    fn check_input(&self, x: &Mat<T>, what: &str) -> Result<(), ModelError> {
        if x.ncols() != self.spec.input_dim() {
            let [h, w, c] = self.spec.image;
            return Err(ModelError::shape(
                format!("{what} input batch (one {h}×{w}×{c} HWC image per row)"),
                format!("B × {}", self.spec.input_dim()),
                x.shape(),
            ));
        }
        Ok(())
    }

    /// Convolution layer `l`: `h ← m_l · (K^l ⋆ a) + s·b^l`, then normalisation into `z` and
    /// `φ` into `act` (`z` unused without normalisation).
    #[allow(clippy::too_many_arguments)]
    fn conv_layer(
        &self,
        l: usize,
        a: &Mat<T>,
        h: &mut Mat<T>,
        z: Option<(&mut Mat<T>, &mut Vec<T>)>,
        act: &mut Mat<T>,
        scratch: &mut Vec<T>,
    ) {
        let spec = &self.spec;
        let b = a.nrows();
        let g = geometry(spec, l);
        ensure_shape(h, b, spec.map_len(l));
        g.forward(multiplier(spec, l), a, &self.weights[l - 1], h, scratch);
        let s = T::cast(spec.param.bias_multiplier());
        add_channel_bias(h, &self.biases[l - 1], s);
        ensure_shape(act, b, spec.map_len(l));
        match z {
            Some((z, inv)) => {
                batch_norm(h, z, inv);
                spec.activation.apply_into(z.as_slice(), act.as_mut_slice());
            }
            None => spec.activation.apply_into(h.as_slice(), act.as_mut_slice()),
        }
    }

    /// The readout `out ← m_R · R · W_Rᵀ + s·b_R`.
    fn readout_into(&self, r: &Mat<T>, out: &mut Mat<T>) {
        let spec = &self.spec;
        let depth = spec.depth();
        ensure_shape(out, r.nrows(), spec.output_dim);
        gemm(
            multiplier(spec, depth),
            r,
            Op::N,
            &self.weights[depth - 1],
            Op::T,
            T::zero(),
            out,
        );
        let s = T::cast(spec.param.bias_multiplier());
        elementwise::add_row_vector(out, &self.biases[depth - 1], s);
    }

    /// Forward pass keeping every map (formulas in the module docs).
    ///
    /// # Errors
    /// [`ModelError::ShapeMismatch`] naming both shapes if `x` is not `B × H·W·C`.
    pub fn forward(&self, x: &Mat<T>) -> Result<CnnTrace<T>, ModelError> {
        let mut trace = CnnTrace::default();
        self.forward_into(x, &mut trace)?;
        Ok(trace)
    }

    /// [`Cnn::forward`] into an existing trace, reusing its buffers when the shapes match.
    ///
    /// # Errors
    /// As [`Cnn::forward`].
    pub fn forward_into(&self, x: &Mat<T>, trace: &mut CnnTrace<T>) -> Result<(), ModelError> {
        self.check_input(x, "Cnn::forward")?;
        let spec = &self.spec;
        let layers = spec.conv_layers();
        let bn = spec.norm == Norm::Batch;
        ensure_shape(&mut trace.input, x.nrows(), x.ncols());
        trace.input.copy_from(x);
        trace.pre.resize_with(layers + 1, || Mat::zeros(0, 0));
        trace.act.resize_with(layers, || Mat::zeros(0, 0));
        let n_norm = if bn { layers } else { 0 };
        trace.norm.resize_with(n_norm, || Mat::zeros(0, 0));
        trace.inv_std.resize_with(n_norm, Vec::new);
        let mut scratch = Vec::new();
        for l in 1..=layers {
            let (done, rest) = trace.act.split_at_mut(l - 1);
            let a = if l == 1 { &trace.input } else { &done[l - 2] };
            let z = if bn {
                Some((&mut trace.norm[l - 1], &mut trace.inv_std[l - 1]))
            } else {
                None
            };
            self.conv_layer(l, a, &mut trace.pre[l - 1], z, &mut rest[0], &mut scratch);
        }
        if spec.readout == CnnReadout::Gap {
            pool(
                &trace.act[layers - 1],
                spec.channels[layers - 1],
                &mut trace.pooled,
            );
        } else {
            trace.pooled = Mat::zeros(0, 0);
        }
        let (pre, act, pooled) = (&mut trace.pre, &trace.act, &trace.pooled);
        let r = match spec.readout {
            CnnReadout::Gap => pooled,
            CnnReadout::Flatten => &act[layers - 1],
        };
        self.readout_into(r, &mut pre[layers]);
        Ok(())
    }

    /// Inference: the output `f(X)` (`B × C`), keeping only two layers' maps at a time. With
    /// batch normalisation the statistics are those of the batch `x` (as in the reference code).
    ///
    /// # Errors
    /// As [`Cnn::forward`].
    pub fn predict(&self, x: &Mat<T>) -> Result<Mat<T>, ModelError> {
        self.check_input(x, "Cnn::predict")?;
        let spec = &self.spec;
        let layers = spec.conv_layers();
        let (mut h, mut a, mut z) = (Mat::zeros(0, 0), Mat::zeros(0, 0), Mat::zeros(0, 0));
        let mut inv = Vec::new();
        let mut scratch = Vec::new();
        let mut prev = x.clone();
        for l in 1..=layers {
            let zz = (spec.norm == Norm::Batch).then_some((&mut z, &mut inv));
            self.conv_layer(l, &prev, &mut h, zz, &mut a, &mut scratch);
            std::mem::swap(&mut prev, &mut a);
        }
        let mut pooled = Mat::zeros(0, 0);
        let r = match spec.readout {
            CnnReadout::Gap => {
                pool(&prev, spec.channels[layers - 1], &mut pooled);
                &pooled
            }
            CnnReadout::Flatten => &prev,
        };
        let mut out = Mat::zeros(0, 0);
        self.readout_into(r, &mut out);
        Ok(out)
    }

    /// The rows that weight matrix `l = 1..L+1` multiplies in the forward pass of `trace`, in
    /// consecutive blocks: for convolution layer `l ≤ L` the im2col patches of its input maps
    /// (`A^{l−1}`, or the images for `l = 1`): `B·P_l` rows of `k·k·C_{l−1}` values, row
    /// `(p − p₀)·B + b` of a block holding the patch that output pixel `p` of image `b` reads, in
    /// the column order of `K^l`; for the readout (`l = L + 1`) its input `R` (`B × n_R`, one
    /// block). The kernel's update is `m_l · Σ_blocks D_blockᵀ · block`, so these rows span the
    /// space every update of `K^l` lies in. Blocks hold about 4096 rows (whole pixels), so the
    /// memory is `4096 · k·k·C_{l−1}` values whatever the batch.
    ///
    /// # Panics
    /// If `l` is not in `1..=L+1` or `trace` is not a forward trace of this network's spec.
    pub fn for_each_input_block(&self, trace: &CnnTrace<T>, l: usize, f: &mut dyn FnMut(&Mat<T>)) {
        let spec = &self.spec;
        let layers = spec.conv_layers();
        assert!(
            (1..=layers + 1).contains(&l),
            "weight layer {l} of {}",
            layers + 1
        );
        if l == layers + 1 {
            f(trace.readout_input(spec));
            return;
        }
        let a = if l == 1 {
            &trace.input
        } else {
            &trace.act[l - 2]
        };
        let g = geometry(spec, l);
        let b = a.nrows();
        let (pout, kk) = (g.out_pixels(), g.patch_len());
        let step = g.block_pixels(b);
        let mut block = Mat::zeros(0, 0);
        let mut p0 = 0;
        while p0 < pout {
            let p1 = (p0 + step).min(pout);
            ensure_shape(&mut block, (p1 - p0) * b, kk);
            g.im2col(a.as_slice(), b, p0, p1, block.as_mut_slice());
            f(&block);
            p0 = p1;
        }
    }

    /// The parameter tensors in the order `K^1, b^1, …, K^L, b^L, W_R, b_R` (matrices in
    /// column-major storage); [`Grads::as_slices`] uses the same order.
    pub fn params(&self) -> Vec<&[T]> {
        crate::stack::params(&self.weights, &self.biases)
    }

    /// The parameter tensors, mutable, in the order of [`Cnn::params`].
    pub fn params_mut(&mut self) -> Vec<&mut [T]> {
        crate::stack::params_mut(&mut self.weights, &mut self.biases)
    }

    /// The same network in another float type (each value converted through `f64`).
    pub fn cast<U: Float>(&self) -> Cnn<U> {
        let (weights, biases) = crate::stack::cast(&self.weights, &self.biases);
        Cnn {
            spec: self.spec.clone(),
            seed: self.seed,
            weights,
            biases,
        }
    }
}

/// `g ← J^l(g) = BNᵀ(φ′(Z^l) ⊙ g)` with `Z^l` (and the normalisation) of the trace `t`.
fn gate<T: Float>(spec: &CnnSpec, t: &CnnTrace<T>, l: usize, g: &mut Mat<T>) {
    spec.activation
        .mul_derivative(t.gate_input(l).as_slice(), g.as_mut_slice());
    if spec.norm == Norm::Batch {
        batch_norm_backward(&t.norm[l - 1], &t.inv_std[l - 1], g);
    }
}

/// The backward loop of every CNN rule (formulas in the module docs).
fn backward<T: Float>(
    spec: &CnnSpec,
    feedback: CnnFeedback<'_, T>,
    derivatives: &CnnTrace<T>,
    err: &Mat<T>,
    out: &mut CnnSignals<T>,
) {
    let layers = spec.conv_layers();
    let b = err.nrows();
    assert_eq!(
        err.shape(),
        (b, spec.output_dim),
        "Cnn backward: the error is {}×{}, the spec has {} outputs",
        err.nrows(),
        err.ncols(),
        spec.output_dim
    );
    out.d.resize_with(layers + 1, || None);
    let top = out.d[layers].get_or_insert_with(|| Mat::zeros(0, 0));
    ensure_shape(top, b, spec.output_dim);
    top.copy_from(err);
    match feedback {
        CnnFeedback::ReadoutOnly => {
            out.d[..layers].iter_mut().for_each(|d| *d = None);
        }
        CnnFeedback::Direct(qs) => {
            assert_eq!(
                qs.len(),
                layers,
                "Cnn backward: {layers} DFA matrices needed"
            );
            for l in 1..=layers {
                let d = out.d[l - 1].get_or_insert_with(|| Mat::zeros(0, 0));
                ensure_shape(d, b, spec.map_len(l));
                gemm(T::one(), err, Op::N, &qs[l - 1], Op::T, T::zero(), d);
                gate(spec, derivatives, l, d);
            }
        }
        CnnFeedback::Weights(ms) => {
            assert_eq!(
                ms.len(),
                layers + 1,
                "Cnn backward: {} matrices needed",
                layers + 1
            );
            let mut g_r = Mat::zeros(b, spec.readout_fan_in());
            gemm(
                multiplier(spec, layers + 1),
                err,
                Op::N,
                &ms[layers],
                Op::N,
                T::zero(),
                &mut g_r,
            );
            let d = out.d[layers - 1].get_or_insert_with(|| Mat::zeros(0, 0));
            spread(spec, &g_r, d);
            gate(spec, derivatives, layers, d);
            for l in (2..=layers).rev() {
                let (lower, upper) = out.d.split_at_mut(l - 1);
                let above = upper[0].as_ref().expect("D^l was formed one step above");
                let below = lower[l - 2].get_or_insert_with(|| Mat::zeros(0, 0));
                ensure_shape(below, b, spec.map_len(l - 1));
                geometry(spec, l).backward_input(
                    multiplier(spec, l),
                    above,
                    &ms[l - 1],
                    below,
                    &mut out.scratch,
                );
                gate(spec, derivatives, l - 1, below);
            }
        }
    }
}

/// The updates from signals and an activity trace (before `−lr`):
/// `∂K^l = m_l Σ D^l ⊗ patch(A^{l−1})`, `∂b^l = s Σ_{b,p} D^l`, `∂W_R = m_R Eᵀ R`, `∂b_R = s Σ_b E`.
fn gradients<T: Float>(
    spec: &CnnSpec,
    signals: &CnnSignals<T>,
    activities: &CnnTrace<T>,
    out: &mut Grads<T>,
    scratch: &mut Vec<T>,
) {
    let depth = spec.depth();
    let dims = spec.layer_dims();
    let s = spec.param.bias_multiplier();
    out.weights.resize_with(depth, || None);
    out.biases.resize_with(depth, || None);
    for l in 1..=depth {
        let Some(d) = signals.d.get(l - 1).and_then(Option::as_ref) else {
            out.weights[l - 1] = None;
            out.biases[l - 1] = None;
            continue;
        };
        let (fan_in, fan_out) = dims[l - 1];
        let gw = out.weights[l - 1].get_or_insert_with(|| Mat::zeros(0, 0));
        ensure_shape(gw, fan_out, fan_in);
        let gb = out.biases[l - 1].get_or_insert_with(Vec::new);
        gb.resize(fan_out, T::zero());
        if l == depth {
            let r = activities.readout_input(spec);
            gemm(multiplier(spec, l), d, Op::T, r, Op::N, T::zero(), gw);
            for (j, v) in gb.iter_mut().enumerate() {
                *v = T::cast(s * reduce::sum(d.column(j).as_slice()));
            }
        } else {
            let a = if l == 1 {
                &activities.input
            } else {
                &activities.act[l - 2]
            };
            geometry(spec, l).weight_grad(multiplier(spec, l), d, a, gw, scratch);
            let per_channel = d.len() / fan_out;
            for (v, chunk) in gb.iter_mut().zip(d.as_slice().chunks(per_channel)) {
                *v = T::cast(s * reduce::sum(chunk));
            }
        }
    }
}

fn cnn_feedback<'a, T: Float>(
    path: FeedbackPath<'a, Cnn<T>>,
    own: &'a Cnn<T>,
) -> CnnFeedback<'a, T> {
    match path {
        FeedbackPath::Live => CnnFeedback::Weights(&own.weights),
        FeedbackPath::Weights(net) => CnnFeedback::Weights(&net.weights),
        FeedbackPath::Fixed(m) => CnnFeedback::Weights(m),
        FeedbackPath::Direct(q) => CnnFeedback::Direct(q),
        FeedbackPath::ReadoutOnly => CnnFeedback::ReadoutOnly,
    }
}

/// The convolutional network as a [`Network`].
///
/// Feedback alignment's fixed matrices (`FixedFeedback`, `L + 1` entries like
/// [`Cnn::weights`]; index 0 is `0 × 0`, never read) are random kernels `B^l` for `l = 2..L`
/// and a random readout `B_R`, from `SeedStream::new(seed).child("fa")`, stream
/// `"layer{l}.feedback"`, with the weights' initial standard deviation. Direct feedback's `Q^l`
/// (`l = 1..L`, `(C_l·P_l) × C`) come from `child("dfa")`, stream `"layer{l}.direct"`, entries
/// `N(0, s_w²/(C_l·P_l))` — the scale of a flatten readout's `(m_R W_R)ᵀ` reading layer `l`'s maps,
/// and the reference code's `1/√(cur_size²·l)` for `s_w = 1`.
///
/// A frozen-trace cache holds `H^1..H^L` (and `A^1..A^L`); with batch normalisation a trace
/// depends on the whole batch, so nothing is cached ([`Network::per_example_trace`] is false).
impl<T: Float> Network for Cnn<T> {
    type Scalar = T;
    type Spec = CnnSpec;
    type Input = Mat<T>;
    type Trace = CnnTrace<T>;
    type Error = Mat<T>;
    type Signals = CnnSignals<T>;
    type Grads = Grads<T>;
    type FixedFeedback = Vec<Mat<T>>;
    type Buffers = CnnBuffers<T>;
    const NAME: &'static str = "cnn";
    const CACHE_CHUNK: usize = 128;

    fn from_seed(spec: &CnnSpec, seed: u64) -> Result<Self, ModelError> {
        Cnn::new(spec, seed)
    }

    fn spec(&self) -> &CnnSpec {
        &self.spec
    }

    fn seed(&self) -> u64 {
        self.seed
    }

    fn validate_spec(spec: &CnnSpec) -> Result<(), ModelError> {
        spec.validate()
    }

    fn per_example_trace(spec: &CnnSpec) -> bool {
        spec.norm == Norm::None
    }

    fn forward_into(&self, x: &Mat<T>, trace: &mut CnnTrace<T>) -> Result<(), ModelError> {
        Cnn::forward_into(self, x, trace)
    }

    fn forward_rows(
        &self,
        x: &Mat<T>,
        start: usize,
        rows: usize,
        trace: &mut CnnTrace<T>,
    ) -> Result<(), ModelError> {
        Cnn::forward_into(self, &x.rows(start, rows).into_owned(), trace)
    }

    fn batch_size(x: &Mat<T>) -> usize {
        x.nrows()
    }

    fn example_checksum(x: &Mat<T>, i: usize) -> [f64; 2] {
        row_sums(x, i)
    }

    fn check_step(
        &self,
        who: &str,
        x: &Mat<T>,
        live: Option<&CnnTrace<T>>,
        err: &Mat<T>,
    ) -> Result<(), ModelError> {
        let spec = &self.spec;
        let b = x.nrows();
        let shape = |what: String, expected: (usize, usize), got: (usize, usize)| {
            ModelError::ShapeMismatch {
                what: format!("{who}: {what}"),
                expected: format!("{} × {}", expected.0, expected.1),
                got: format!("{} × {}", got.0, got.1),
            }
        };
        if x.ncols() != spec.input_dim() {
            return Err(shape(
                "input batch".into(),
                (b, spec.input_dim()),
                x.shape(),
            ));
        }
        if err.shape() != (b, spec.output_dim) {
            return Err(shape(
                "output error".into(),
                (b, spec.output_dim),
                err.shape(),
            ));
        }
        let Some(live) = live else {
            return Ok(());
        };
        let layers = spec.conv_layers();
        if live.pre.len() != layers + 1 || live.act.len() != layers {
            return Err(ModelError::ShapeMismatch {
                what: format!("{who}: live trace"),
                expected: format!("{layers} convolution layers"),
                got: format!("{} layers", live.act.len()),
            });
        }
        if live.input.shape() != x.shape() {
            return Err(shape("live input".into(), x.shape(), live.input.shape()));
        }
        for l in 1..=layers {
            let want = (b, spec.map_len(l));
            for (what, m) in [
                ("pre-activation H", &live.pre[l - 1]),
                ("activity A", &live.act[l - 1]),
            ] {
                if m.shape() != want {
                    return Err(shape(format!("live {what}^{l}"), want, m.shape()));
                }
            }
        }
        if spec.norm == Norm::Batch && live.norm.len() != layers {
            return Err(ModelError::ShapeMismatch {
                what: format!("{who}: live trace"),
                expected: "normalised maps".into(),
                got: "none".into(),
            });
        }
        Ok(())
    }

    fn fa_feedback(spec: &CnnSpec, seed: u64) -> Vec<Mat<T>> {
        crate::stack::fa_matrices(&spec.layer_dims(), spec.param, seed)
    }

    fn dfa_feedback(spec: &CnnSpec, seed: u64) -> Vec<Mat<T>> {
        let stream = SeedStream::new(seed).child("dfa");
        let w_std = spec.param.w_std();
        (1..=spec.conv_layers())
            .map(|l| {
                let n = spec.map_len(l);
                stream.gaussian_matrix(
                    &format!("layer{l}.direct"),
                    n,
                    spec.output_dim,
                    w_std / (n as f64).sqrt(),
                )
            })
            .collect()
    }

    fn check_fixed_feedback(spec: &CnnSpec, feedback: &Vec<Mat<T>>) -> Result<(), ModelError> {
        crate::stack::check_fa_matrices(&spec.layer_dims(), feedback)
    }

    fn backward_signals_into(
        &self,
        feedback: FeedbackPath<'_, Self>,
        derivatives: &CnnTrace<T>,
        err: &Mat<T>,
        out: &mut CnnSignals<T>,
    ) {
        backward(
            &self.spec,
            cnn_feedback(feedback, self),
            derivatives,
            err,
            out,
        );
    }

    fn gradients_into(
        spec: &CnnSpec,
        signals: &CnnSignals<T>,
        _err: &Mat<T>,
        activities: &CnnTrace<T>,
        out: &mut Grads<T>,
    ) {
        gradients(spec, signals, activities, out, &mut Vec::new());
    }

    fn sgd_update(
        &mut self,
        feedback: FeedbackPath<'_, Self>,
        derivatives: &CnnTrace<T>,
        activities: &CnnTrace<T>,
        err: &Mat<T>,
        lr: T,
        buffers: &mut CnnBuffers<T>,
    ) {
        let CnnBuffers {
            signals,
            grads,
            scratch,
        } = buffers;
        backward(
            &self.spec,
            cnn_feedback(feedback, self),
            derivatives,
            err,
            signals,
        );
        gradients(&self.spec, signals, activities, grads, scratch);
        self.apply_update(grads, lr);
    }

    fn params(&self) -> Vec<&[T]> {
        Cnn::params(self)
    }

    fn param_layout(&self) -> Vec<(String, Vec<usize>)> {
        let last = self.weights.len();
        self.weights
            .iter()
            .enumerate()
            .flat_map(|(i, w)| {
                let name = if i + 1 == last {
                    "readout".to_string()
                } else {
                    format!("conv{}", i + 1)
                };
                [
                    (format!("{name}.weight"), vec![w.nrows(), w.ncols()]),
                    (format!("{name}.bias"), vec![w.nrows()]),
                ]
            })
            .collect()
    }

    fn params_mut(&mut self) -> Vec<&mut [T]> {
        Cnn::params_mut(self)
    }

    fn grad_slices(grads: &Grads<T>) -> Vec<Option<&[T]>> {
        grads.as_slices()
    }

    fn cached_values(spec: &CnnSpec, _x: &Mat<T>, with_activities: bool) -> usize {
        let maps: usize = (1..=spec.conv_layers()).map(|l| spec.map_len(l)).sum();
        maps * if with_activities { 2 } else { 1 }
    }

    fn cache_parts(trace: &CnnTrace<T>, with_activities: bool) -> Vec<&Mat<T>> {
        let layers = trace.act.len();
        let mut parts: Vec<&Mat<T>> = trace.pre[..layers].iter().collect();
        if with_activities {
            parts.extend(&trace.act);
        }
        parts
    }

    fn restore_trace(
        &self,
        x: &Mat<T>,
        with_activities: bool,
        fill: &mut dyn FnMut(usize, &mut Mat<T>),
        trace: &mut CnnTrace<T>,
    ) {
        let spec = &self.spec;
        let layers = spec.conv_layers();
        ensure_shape(&mut trace.input, x.nrows(), x.ncols());
        trace.input.copy_from(x);
        trace.pre.resize_with(layers + 1, || Mat::zeros(0, 0));
        trace.act.resize_with(layers, || Mat::zeros(0, 0));
        trace.norm.clear();
        trace.inv_std.clear();
        for l in 1..=layers {
            fill(l - 1, &mut trace.pre[l - 1]);
            if with_activities {
                fill(layers + l - 1, &mut trace.act[l - 1]);
            }
        }
        if with_activities && spec.readout == CnnReadout::Gap {
            pool(
                &trace.act[layers - 1],
                spec.channels[layers - 1],
                &mut trace.pooled,
            );
        }
        // The output is never read by a rule (D_R = E); keep it empty.
        trace.pre[layers] = Mat::zeros(0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BiasInit, Loss, Padding, Parameterization};
    use widealign_tensor::Activation;

    fn specs() -> Vec<CnnSpec> {
        let base = CnnSpec::new([5, 4, 2], vec![3, 4], 3, Activation::Tanh)
            .with_bias_init(BiasInit::Gaussian)
            .with_param(Parameterization::Ntk {
                w_std: 1.3,
                b_std: 0.2,
            });
        vec![
            base.clone(),
            base.clone()
                .with_padding(Padding::Valid)
                .with_readout(CnnReadout::Flatten)
                .with_kernel(2),
            base.clone().with_stride(2).with_norm(Norm::Batch),
            base.clone()
                .with_readout(CnnReadout::Flatten)
                .with_norm(Norm::Batch)
                .with_param(Parameterization::Standard {
                    w_std: 1.1,
                    b_std: 0.3,
                }),
        ]
    }

    #[test]
    fn backprop_matches_finite_differences() {
        for spec in specs() {
            let net = Cnn::<f64>::new(&spec, 2).unwrap();
            let x: Mat<f64> = SeedStream::new(2).gaussian_matrix("x", 4, spec.input_dim(), 1.0);
            let y: Mat<f64> = SeedStream::new(2).gaussian_matrix("y", 4, 3, 1.0);
            let loss = |n: &Cnn<f64>| Loss::Mse.evaluate(&n.predict(&x).unwrap(), &y).unwrap().0;
            let t = net.forward(&x).unwrap();
            assert_eq!(t.output(), &net.predict(&x).unwrap());
            let (_, err) = Loss::Mse.evaluate(t.output(), &y).unwrap();
            let mut s = CnnSignals::default();
            net.backward_signals_into(FeedbackPath::Live, &t, &err, &mut s);
            let mut g = Grads::default();
            Cnn::gradients_into(&spec, &s, &err, &t, &mut g);
            let h = 1e-6;
            for (k, gk) in g.as_slices().iter().enumerate() {
                let gk = gk.unwrap();
                for i in 0..gk.len() {
                    let mut plus = net.clone();
                    plus.params_mut()[k][i] += h;
                    let mut minus = net.clone();
                    minus.params_mut()[k][i] -= h;
                    let fd = (loss(&plus) - loss(&minus)) / (2.0 * h);
                    assert!(
                        (fd - gk[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                        "{spec:?}: tensor {k} entry {i}: {fd} vs {}",
                        gk[i]
                    );
                }
            }
        }
    }

    #[test]
    fn padding_follows_tensorflow() {
        // (n, k, s) → (output, zeros before): TF's SAME pads max((⌈n/s⌉−1)·s + k − n, 0) in all
        for (n, k, s, out, before) in [
            (5, 3, 2, 3, 1),
            (4, 3, 2, 2, 0),
            (28, 3, 1, 28, 1),
            (6, 4, 1, 6, 1),
            (7, 1, 3, 3, 0),
        ] {
            assert_eq!(Padding::Same.output_size(n, k, s), out, "{n} {k} {s}");
            assert_eq!(Padding::Same.pad_before(n, k, s), before, "{n} {k} {s}");
        }
        assert_eq!(Padding::Valid.output_size(28, 3, 1), 26);
        assert_eq!(Padding::Valid.output_size(8, 3, 2), 3);
        assert_eq!(Padding::Valid.output_size(2, 3, 1), 0);
        let spec =
            CnnSpec::new([3, 3, 1], vec![2, 2], 1, Activation::Relu).with_padding(Padding::Valid);
        assert!(spec.validate().unwrap_err().to_string().contains("kernel"));
    }

    /// A one-channel 3×3 image, a 3×3 kernel of ones, SAME padding: each output is the sum of
    /// the input's 3×3 neighbourhood (zeros outside), times `m = 1/√9`.
    #[test]
    fn same_padding_sums_neighbourhoods() {
        let spec = CnnSpec::new([3, 3, 1], vec![1], 1, Activation::Identity)
            .with_readout(CnnReadout::Flatten)
            .with_param(Parameterization::Ntk {
                w_std: 1.0,
                b_std: 0.0,
            });
        let mut net = Cnn::<f64>::new(&spec, 0).unwrap();
        net.weights[0].fill(1.0);
        let x = Mat::from_row_slice(1, 9, &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let t = net.forward(&x).unwrap();
        let want = [12., 21., 16., 27., 45., 33., 24., 39., 28.];
        for (got, w) in t.pre[0].iter().zip(want) {
            assert!((got - w / 3.0).abs() < 1e-12, "{got} vs {w}/3");
        }
    }

    /// The blocks of [`Cnn::for_each_input_block`] are what the kernels multiply:
    /// `H^l = m_l · patches · K^lᵀ + s·b^l` row by row (pixel-major rows `p·B + b`), and the
    /// readout's block is `R`.
    #[test]
    fn input_blocks_are_the_rows_the_kernels_multiply() {
        for spec in specs() {
            let net = Cnn::<f64>::new(&spec, 4).unwrap();
            let x: Mat<f64> = SeedStream::new(4).gaussian_matrix("x", 3, spec.input_dim(), 1.0);
            let t = net.forward(&x).unwrap();
            let b = x.nrows();
            let s = spec.param.bias_multiplier();
            for l in 1..=spec.conv_layers() {
                let m: f64 = multiplier(&spec, l);
                let c = spec.channels[l - 1];
                // H^l as a (P·B) × C_l matrix: row p·B + b, column c
                let h = Mat::from_column_slice(t.pre[l - 1].len() / c, c, t.pre[l - 1].as_slice());
                let mut at = 0;
                net.for_each_input_block(&t, l, &mut |blk| {
                    assert_eq!(blk.ncols(), spec.conv_fan_in(l));
                    let want = blk * net.weights[l - 1].transpose() * m;
                    for i in 0..blk.nrows() {
                        for j in 0..c {
                            let got = h[(at + i, j)] - s * net.biases[l - 1][j];
                            assert!((got - want[(i, j)]).abs() < 1e-12, "{spec:?} layer {l}");
                        }
                    }
                    at += blk.nrows();
                });
                assert_eq!(at, spec.map_len(l) / c * b);
            }
            let mut blocks = 0;
            net.for_each_input_block(&t, spec.depth(), &mut |r| {
                assert_eq!(r, t.readout_input(&spec));
                blocks += 1;
            });
            assert_eq!(blocks, 1);
        }
    }

    #[test]
    fn wrong_input_names_the_image_shape() {
        let net = Cnn::<f32>::new(&specs()[0], 0).unwrap();
        let msg = net.predict(&Mat::zeros(2, 7)).unwrap_err().to_string();
        assert!(msg.contains("5×4×2") && msg.contains("B × 40"), "{msg}");
    }
}
