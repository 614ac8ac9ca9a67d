//! Plain-SGD updates fused into the backward pass: no gradient tensor is ever stored.
//!
//! [`backward_signals`](crate::backward_signals) + [`gradients`](crate::gradients) +
//! [`Mlp::apply_update`] keep every signal `D^l` and every gradient `∂W^l` at once, so a training
//! step needs memory for the weights twice. For plain SGD the update of layer `l` only needs
//! `D^l` and `A^{l−1}`, so it can be applied as soon as `D^l` is final. The fused step runs the
//! one backward loop of [`crate::mlp`] (the same code as `backward_signals`) and applies the
//! update of layer `l` in the loop's per-layer hook, which runs once the signal of the layer
//! below, `D^{l−1} = φ'(H^{l−1}) ⊙ (m_l · D^l · M^l)`, has been formed (so for backprop
//! `M^l = W^l` is still the weight before the update):
//!
//! ```text
//! for l = L, L−1, …, 1:
//!     D^{l−1} ← φ'(H^{l−1}) ⊙ (m_l · D^l · M^l)              (l > 1; pathway as in Feedback)
//!     hook:  W^l[:, J] ← W^l[:, J] − lr · (m_l · D^lᵀ · A^{l−1}[:, J])   for column blocks J
//!            b^l ← b^l − lr · (s · Σ_rows D^l)
//! ```
//!
//! The gradient of one column block `J` of `W^l` lives in a small reused buffer, so the extra
//! memory is the signals (`B × n_l` per layer) and two blocks per layer (at most about 4 MB
//! each), instead of
//! `Σ_l (n_l·n_{l−1} + n_l)` gradient values plus all signals. Every number is computed by
//! the same expression as in the unfused path (the same signal code, the same GEMM summation
//! order over the batch, the same `f64` bias sums, the same `w − lr·g` rounding), so the updated
//! network is **bit-identical** to `gradients` + `apply_update` (tested in `tests/fused.rs`), and
//! like them independent of the number of threads.
//!
//! Cost: the flops of the unfused path; memory traffic of the update drops from four passes over
//! the weights (write `∂W`, read `∂W` and `W`, write `W`) to two (read and write `W`).
//!
//! ```
//! use widealign_models::{sgd_step_fused, FusedBuffers, Loss, Mlp, MlpSpec};
//! use widealign_models::{backward_signals, gradients, Feedback, Pathway};
//! use widealign_tensor::{rng::SeedStream, Activation, Mat};
//!
//! let spec = MlpSpec::new(3, vec![8, 8], 2, Activation::Relu);
//! let mut net = Mlp::<f32>::new(&spec, 0).unwrap();
//! let mut reference = net.clone();
//! let x: Mat<f32> = SeedStream::new(1).gaussian_matrix("x", 5, 3, 1.0);
//! let y: Mat<f32> = SeedStream::new(1).gaussian_matrix("y", 5, 2, 1.0);
//! let trace = net.forward(&x).unwrap();
//! let (_, err) = Loss::Mse.evaluate(trace.output(), &y).unwrap();
//!
//! sgd_step_fused(&mut net, &trace, &err, 0.1, &mut FusedBuffers::new());
//!
//! let p = Pathway { feedback: Feedback::Weights(&reference.weights), derivatives: &trace };
//! let g = gradients(&spec, &backward_signals(&spec, &p, &err), &trace);
//! reference.apply_update(&g, 0.1);
//! assert_eq!(net, reference); // bit for bit
//! ```

use widealign_tensor::{
    elementwise,
    gemm::{gemm_view, Op},
    reduce, Float, Mat,
};

use crate::mlp::{backward_pass, ensure_shape};
use crate::{Feedback, Mlp, MlpSpec, Trace};

/// Which matrices carry the signal in [`sgd_update_fused`].
#[derive(Clone, Copy, Debug)]
pub enum FusedFeedback<'a, T: Float> {
    /// The network's own weights, read before each layer's update (backprop).
    Live,
    /// Fixed matrices as in [`Feedback`] (frozen `W_0` for the Align rules, random `B` for FA,
    /// direct `D^l` for DFA, or readout only). They must not be the network's own weights.
    Fixed(Feedback<'a, T>),
}

/// Reusable buffers of [`sgd_update_fused`]: the signals `D^1..D^{L−1}` and, per layer, the
/// gradient blocks (two shapes at most: the blocks of a layer differ in width by at most one
/// column). Kept per layer so that no buffer ever changes shape, hence no allocation after the
/// first step.
#[derive(Clone, Debug)]
pub struct FusedBuffers<T: Float> {
    signals: Vec<Option<Mat<T>>>,
    g_blocks: Vec<[Mat<T>; 2]>,
}

impl<T: Float> Default for FusedBuffers<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> FusedBuffers<T> {
    /// Empty buffers; shapes are fixed on first use and reused afterwards.
    pub fn new() -> Self {
        FusedBuffers {
            signals: Vec::new(),
            g_blocks: Vec::new(),
        }
    }

    /// Bytes currently held.
    pub fn bytes(&self) -> usize {
        let n: usize = self
            .signals
            .iter()
            .flatten()
            .map(|m| m.len())
            .sum::<usize>()
            + self
                .g_blocks
                .iter()
                .flat_map(|p| p.iter())
                .map(|m| m.len())
                .sum::<usize>();
        n * std::mem::size_of::<T>()
    }
}

/// Target size, in values, of one gradient block (1 Mi values = 4 MB in f32).
const BLOCK_VALUES: usize = 1 << 20;
/// Layers with at most this many weights get their gradient in one block.
const WHOLE_LAYER: usize = 1 << 20;
/// Narrowest column block: wider than the GEMM library's small-matrix paths, which could sum in
/// another order.
const MIN_BLOCK_COLS: usize = 128;

/// Column blocks `[j0, j1)` of an `rows × cols` weight: all columns when the layer is small,
/// otherwise near-equal blocks of about [`BLOCK_VALUES`] values, each at least
/// [`MIN_BLOCK_COLS`] columns wide.
fn column_blocks(rows: usize, cols: usize) -> Vec<(usize, usize)> {
    if rows * cols <= WHOLE_LAYER || cols < 2 * MIN_BLOCK_COLS {
        return vec![(0, cols)];
    }
    let target = (BLOCK_VALUES / rows.max(1)).max(MIN_BLOCK_COLS);
    let count = cols.div_ceil(target).min(cols / MIN_BLOCK_COLS).max(1);
    let base = cols / count;
    let extra = cols % count;
    let mut out = Vec::with_capacity(count);
    let mut j0 = 0;
    for b in 0..count {
        let w = base + usize::from(b < extra);
        out.push((j0, j0 + w));
        j0 += w;
    }
    out
}

/// Backprop with plain SGD fused into the backward pass:
/// [`sgd_update_fused`] with [`FusedFeedback::Live`] and the live trace for both `φ'` and the
/// activities. Bit-identical to `backward_signals` (live weights, live trace) + `gradients`
/// (live trace) + [`Mlp::apply_update`]`(lr)`.
///
/// # Panics
/// As [`sgd_update_fused`].
pub fn sgd_step_fused<T: Float>(
    net: &mut Mlp<T>,
    trace: &Trace<T>,
    err: &Mat<T>,
    lr: T,
    buffers: &mut FusedBuffers<T>,
) {
    sgd_update_fused(net, FusedFeedback::Live, trace, trace, err, lr, buffers);
}

/// One plain-SGD step of any rule, fused into its backward pass (see the module docs):
/// signals along `feedback` gated by `φ'(derivatives.pre)`, weight updates from
/// `activities.act`. Bit-identical to [`backward_signals`](crate::backward_signals) with the same
/// pathway (for [`FusedFeedback::Live`]: `Feedback::Weights(&net.weights)` before the step),
/// then [`gradients`](crate::gradients) with `activities`, then [`Mlp::apply_update`]`(lr)`.
///
/// Memory: the signals (`B × n_l` per hidden layer) and per layer two gradient blocks of at most
/// about `max(2^20, 128·n_l)` values, all reused across calls (see [`FusedBuffers`]).
///
/// # Panics
/// If `err`, the traces or the feedback matrices do not have the shapes `net.spec` implies (they
/// are built by the program from the model, not read from user input).
pub fn sgd_update_fused<T: Float>(
    net: &mut Mlp<T>,
    feedback: FusedFeedback<'_, T>,
    derivatives: &Trace<T>,
    activities: &Trace<T>,
    err: &Mat<T>,
    lr: T,
    buffers: &mut FusedBuffers<T>,
) {
    // Disjoint borrows: the loop reads the spec while the hook updates weights and biases.
    let Mlp {
        spec,
        weights,
        biases,
        ..
    } = net;
    let spec: &MlpSpec = spec;
    let depth = spec.depth();
    let widths = spec.widths();
    let batch = err.nrows();
    assert_eq!(
        activities.act.len(),
        depth,
        "sgd_update_fused: activity trace has {} layers, the spec {depth}",
        activities.act.len()
    );
    let s = T::cast(spec.param.bias_multiplier());
    let FusedBuffers { signals, g_blocks } = buffers;
    let empty = || Mat::zeros(0, 0);
    g_blocks.resize_with(depth, || [empty(), empty()]);
    // The hook: D^l is final, D^{l−1} has been formed from W^l, so W^l may change now.
    let update_layer = |l: usize, d: &Mat<T>, weights: &mut [Mat<T>]| {
        let a = &activities.act[l - 1];
        let (rows, cols) = (widths[l], widths[l - 1]);
        assert_eq!(
            a.shape(),
            (batch, cols),
            "sgd_update_fused: activity A^{} is {}×{}, expected {batch}×{cols}",
            l - 1,
            a.nrows(),
            a.ncols()
        );
        // W^l, one column block at a time
        let m = T::cast(spec.param.weight_multiplier(cols));
        let w = weights[l - 1].as_mut_slice();
        let blocks = column_blocks(rows, cols);
        let narrow = blocks.iter().map(|&(j0, j1)| j1 - j0).min().unwrap_or(cols);
        let g_pair = &mut g_blocks[l - 1];
        for (j0, j1) in blocks {
            let width = j1 - j0;
            let slot = (width - narrow).min(1);
            let g_block = &mut g_pair[slot];
            ensure_shape(g_block, rows, width);
            // columns j0..j1 of A, read in place (the same operand the whole-layer GEMM sees)
            gemm_view(
                m,
                d,
                Op::T,
                &a.columns(j0, width),
                Op::N,
                T::zero(),
                g_block,
            );
            elementwise::axpy(-lr, g_block.as_slice(), &mut w[j0 * rows..j1 * rows]);
        }
        // b^l
        let mut gb = reduce::column_sums(d);
        if s != T::one() {
            elementwise::scale(s, &mut gb);
        }
        elementwise::axpy(-lr, &gb, &mut biases[l - 1]);
    };
    backward_pass(
        "sgd_update_fused",
        spec,
        feedback,
        derivatives,
        err,
        signals,
        weights,
        update_layer,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_blocks_cover_and_stay_wide() {
        for (rows, cols) in [(10, 784), (1024, 784), (8192, 8192), (4096, 1000), (3, 5)] {
            let b = column_blocks(rows, cols);
            assert_eq!(b.first().unwrap().0, 0);
            assert_eq!(b.last().unwrap().1, cols);
            for w in b.windows(2) {
                assert_eq!(w[0].1, w[1].0);
            }
            if b.len() > 1 {
                assert!(b.iter().all(|&(a, c)| c - a >= MIN_BLOCK_COLS));
                let cap = 2 * BLOCK_VALUES.max(MIN_BLOCK_COLS * rows);
                assert!(b.iter().all(|&(a, c)| (c - a) * rows <= cap));
            }
        }
        assert_eq!(column_blocks(8192, 8192).len(), 64);
    }
}
