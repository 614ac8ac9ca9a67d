//! The convolution kernels of the [`Cnn`](crate::Cnn): patch gathering (im2col), its adjoint
//! (col2im), and the three products of a convolution layer on the workspace GEMM.
//!
//! A batch of `B` feature maps of `P` pixels and `C` channels is a `B × (C·P)` matrix in
//! column-major storage. With the channel-major column order `c·P + p` (CHW, used inside the
//! network), value `(b, p, c)` sits at `(c·P + p)·B + b`: the same memory is a `(P·B) × C` matrix
//! whose row `p·B + b` holds one pixel of one image. The input images are in HWC order
//! (`(p·C + c)·B + b`). Either way, the `B` values of one pixel and channel are contiguous, so
//! gathering patches copies runs of `B` values.
//!
//! For a block of output pixels `p ∈ [p₀, p₁)`, the patch matrix `X` (`((p₁−p₀)·B) × (k·k·C_in)`)
//! has in row `(p − p₀)·B + b`, column `(dy·k + dx)·C_in + c`, the input value at
//! `(y·s + dy − pad_top, x·s + dx − pad_left)`, channel `c` (zero outside the image). Then
//!
//! ```text
//! forward     H[block] = m · X · Kᵀ            (rows of the (P·B) × C_out output)
//! weights     ∂K      += m · D[block]ᵀ · X
//! input       ∂A      += col2im(m · D[block] · K)
//! ```
//!
//! Blocks have a fixed number of pixels for a given batch size, so the order of every sum does
//! not depend on the number of threads (the GEMM's own threading is deterministic).
//! `docs/decisions/cnn-convolution.md` records why im2col on the GEMM was chosen and how the
//! block size was measured.

use rayon::prelude::*;
use widealign_tensor::{
    gemm::{gemm_view, Op},
    nalgebra::{DMatrixView, DMatrixViewMut},
    Float, Mat,
};

/// Where the values of a map live: HWC (the input images) or CHW (inside the network).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Column `p·C + c`.
    Hwc,
    /// Column `c·P + p`.
    Chw,
}

/// One convolution layer's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub layout: Layout,
}

/// Rows (pixel × batch) of a patch block: about this many, rounded to whole pixels.
const BLOCK_ROWS: usize = 4096;

/// Patch matrices of at least this many values are gathered (and scattered back) in parallel.
const PARALLEL_COPY: usize = 1 << 16;

impl Geometry {
    /// Output pixels `P_out`.
    pub fn out_pixels(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Input pixels `P_in`.
    pub fn in_pixels(&self) -> usize {
        self.in_h * self.in_w
    }

    /// Columns of a patch matrix, `k·k·C_in`.
    pub fn patch_len(&self) -> usize {
        self.k * self.k * self.in_c
    }

    /// Output pixels per block for a batch of `b` (depends only on `b` and the geometry).
    pub fn block_pixels(&self, b: usize) -> usize {
        (BLOCK_ROWS / b.max(1)).clamp(1, self.out_pixels().max(1))
    }

    /// (pixel stride, channel stride) of the input layout, in columns.
    fn strides(&self) -> (usize, usize) {
        match self.layout {
            Layout::Hwc => (self.in_c, 1),
            Layout::Chw => (1, self.in_pixels()),
        }
    }

    /// The input pixel read by output pixel `p` at kernel offset `(dy, dx)`, if inside.
    #[inline]
    fn source(&self, p: usize, dy: usize, dx: usize) -> Option<usize> {
        let (oy, ox) = (p / self.out_w, p % self.out_w);
        let iy = (oy * self.stride + dy).checked_sub(self.pad_top)?;
        let ix = (ox * self.stride + dx).checked_sub(self.pad_left)?;
        (iy < self.in_h && ix < self.in_w).then_some(iy * self.in_w + ix)
    }

    /// Fills `out` (`((p1 − p0)·b) × patch_len`, column-major) with the patches of output pixels
    /// `p0..p1` of the batch `src` (`b × (C_in·P_in)` values in this geometry's layout). Columns
    /// are filled in parallel (a copy: the result does not depend on the threads).
    pub fn im2col<T: Float>(&self, src: &[T], b: usize, p0: usize, p1: usize, out: &mut [T]) {
        let rows = (p1 - p0) * b;
        let (sp, sc) = self.strides();
        debug_assert_eq!(out.len(), rows * self.patch_len());
        if rows == 0 {
            return;
        }
        let fill = |(q, col): (usize, &mut [T])| {
            let c = q % self.in_c;
            let (dy, dx) = ((q / self.in_c) / self.k, (q / self.in_c) % self.k);
            for (i, p) in (p0..p1).enumerate() {
                let dst = &mut col[i * b..(i + 1) * b];
                match self.source(p, dy, dx) {
                    Some(pix) => {
                        let at = (pix * sp + c * sc) * b;
                        dst.copy_from_slice(&src[at..at + b]);
                    }
                    None => dst.fill(T::zero()),
                }
            }
        };
        if out.len() >= PARALLEL_COPY {
            out.par_chunks_mut(rows).enumerate().for_each(fill);
        } else {
            out.chunks_mut(rows).enumerate().for_each(fill);
        }
    }

    /// The adjoint of [`Geometry::im2col`]: adds the patch gradients `cols` of output pixels
    /// `p0..p1` into `dst` (`b × (C_in·P_in)` in this geometry's layout). For channel-major maps
    /// the channels are summed in parallel, each in a fixed order (so the result does not depend
    /// on the threads).
    pub fn col2im_add<T: Float>(&self, cols: &[T], b: usize, p0: usize, p1: usize, dst: &mut [T]) {
        let rows = (p1 - p0) * b;
        let (sp, sc) = self.strides();
        // adds channel c's patch columns into `out`, whose value (pix, c) sits at `pix·sp·b`
        let channel = |c: usize, out: &mut [T]| {
            for dy in 0..self.k {
                for dx in 0..self.k {
                    let q = (dy * self.k + dx) * self.in_c + c;
                    let col = &cols[q * rows..(q + 1) * rows];
                    for (i, p) in (p0..p1).enumerate() {
                        if let Some(pix) = self.source(p, dy, dx) {
                            let at = pix * sp * b;
                            for (d, &v) in out[at..at + b].iter_mut().zip(&col[i * b..(i + 1) * b])
                            {
                                *d += v;
                            }
                        }
                    }
                }
            }
        };
        match self.layout {
            Layout::Chw if rows * self.patch_len() >= PARALLEL_COPY => dst
                .par_chunks_mut(sc * b)
                .enumerate()
                .for_each(|(c, out)| channel(c, out)),
            Layout::Chw => dst
                .chunks_mut(sc * b)
                .enumerate()
                .for_each(|(c, out)| channel(c, out)),
            Layout::Hwc => {
                for c in 0..self.in_c {
                    channel(c, &mut dst[c * b..]);
                }
            }
        }
    }

    /// `out ← m · conv(src, kernel)`: `src` is `b × (C_in·P_in)` in this layout, `kernel` is
    /// `C_out × patch_len`, `out` is `b × (C_out·P_out)` (CHW). `scratch` is resized as needed.
    pub fn forward<T: Float>(
        &self,
        m: T,
        src: &Mat<T>,
        kernel: &Mat<T>,
        out: &mut Mat<T>,
        scratch: &mut Vec<T>,
    ) {
        let b = src.nrows();
        let (pout, c_out, kk) = (self.out_pixels(), kernel.nrows(), self.patch_len());
        let mut big = DMatrixViewMut::from_slice(out.as_mut_slice(), pout * b, c_out);
        let step = self.block_pixels(b);
        let mut p0 = 0;
        while p0 < pout {
            let p1 = (p0 + step).min(pout);
            let rows = (p1 - p0) * b;
            scratch.resize(rows * kk, T::zero());
            self.im2col(src.as_slice(), b, p0, p1, &mut scratch[..rows * kk]);
            let x = DMatrixView::from_slice(&scratch[..rows * kk], rows, kk);
            let mut h = big.rows_mut(p0 * b, rows);
            gemm_view(m, &x, Op::N, kernel, Op::T, T::zero(), &mut h);
            p0 = p1;
        }
    }

    /// `grad ← m · Σ_blocks D[block]ᵀ · X[block]` (`C_out × patch_len`): the kernel update from
    /// the signals `d` (`b × (C_out·P_out)`, CHW) and the input activities `src`.
    pub fn weight_grad<T: Float>(
        &self,
        m: T,
        d: &Mat<T>,
        src: &Mat<T>,
        grad: &mut Mat<T>,
        scratch: &mut Vec<T>,
    ) {
        let b = src.nrows();
        let (pout, kk) = (self.out_pixels(), self.patch_len());
        let c_out = d.ncols() / pout.max(1);
        let big = DMatrixView::from_slice(d.as_slice(), pout * b, c_out);
        let step = self.block_pixels(b);
        let mut p0 = 0;
        while p0 < pout {
            let p1 = (p0 + step).min(pout);
            let rows = (p1 - p0) * b;
            scratch.resize(rows * kk, T::zero());
            self.im2col(src.as_slice(), b, p0, p1, &mut scratch[..rows * kk]);
            let x = DMatrixView::from_slice(&scratch[..rows * kk], rows, kk);
            let beta = if p0 == 0 { T::zero() } else { T::one() };
            gemm_view(m, &big.rows(p0 * b, rows), Op::T, &x, Op::N, beta, grad);
            p0 = p1;
        }
    }

    /// `dst ← m · convᵀ(d, kernel)`: the signal `d` (`b × (C_out·P_out)`, CHW) carried back
    /// through `kernel` (`C_out × patch_len`) onto the input maps (`b × (C_in·P_in)` in this
    /// layout).
    pub fn backward_input<T: Float>(
        &self,
        m: T,
        d: &Mat<T>,
        kernel: &Mat<T>,
        dst: &mut Mat<T>,
        scratch: &mut Vec<T>,
    ) {
        let b = d.nrows();
        let (pout, kk) = (self.out_pixels(), self.patch_len());
        let c_out = kernel.nrows();
        let big = DMatrixView::from_slice(d.as_slice(), pout * b, c_out);
        dst.as_mut_slice().fill(T::zero());
        let step = self.block_pixels(b);
        let mut p0 = 0;
        while p0 < pout {
            let p1 = (p0 + step).min(pout);
            let rows = (p1 - p0) * b;
            scratch.resize(rows * kk, T::zero());
            {
                let mut x = DMatrixViewMut::from_slice(&mut scratch[..rows * kk], rows, kk);
                gemm_view(
                    m,
                    &big.rows(p0 * b, rows),
                    Op::N,
                    kernel,
                    Op::N,
                    T::zero(),
                    &mut x,
                );
            }
            self.col2im_add(&scratch[..rows * kk], b, p0, p1, dst.as_mut_slice());
            p0 = p1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_tensor::rng::SeedStream;

    fn geom(layout: Layout, k: usize, stride: usize, pad: usize) -> Geometry {
        let (in_h, in_w) = (5, 4);
        Geometry {
            in_h,
            in_w,
            in_c: 2,
            out_h: (in_h + 2 * pad - k) / stride + 1,
            out_w: (in_w + 2 * pad - k) / stride + 1,
            k,
            stride,
            pad_top: pad,
            pad_left: pad,
            layout,
        }
    }

    /// The convolution by its definition, one output at a time.
    fn naive(g: &Geometry, src: &Mat<f64>, kernel: &Mat<f64>) -> Mat<f64> {
        let b = src.nrows();
        let c_out = kernel.nrows();
        let mut out = Mat::zeros(b, c_out * g.out_pixels());
        for n in 0..b {
            for o in 0..c_out {
                for p in 0..g.out_pixels() {
                    let mut s = 0.0;
                    for dy in 0..g.k {
                        for dx in 0..g.k {
                            for c in 0..g.in_c {
                                if let Some(pix) = g.source(p, dy, dx) {
                                    let col = match g.layout {
                                        Layout::Hwc => pix * g.in_c + c,
                                        Layout::Chw => c * g.in_pixels() + pix,
                                    };
                                    s += src[(n, col)] * kernel[(o, (dy * g.k + dx) * g.in_c + c)];
                                }
                            }
                        }
                    }
                    out[(n, o * g.out_pixels() + p)] = s;
                }
            }
        }
        out
    }

    #[test]
    fn forward_matches_the_definition_and_the_adjoint_is_exact() {
        let seeds = SeedStream::new(3);
        for layout in [Layout::Hwc, Layout::Chw] {
            // batch 256 gathers and scatters the 3×3 patches in parallel (≥ PARALLEL_COPY values)
            for (k, stride, pad, b) in [
                (3, 1, 1, 3),
                (3, 2, 0, 3),
                (2, 1, 0, 3),
                (1, 1, 0, 3),
                (3, 2, 1, 3),
                (3, 1, 1, 256),
            ] {
                let g = geom(layout, k, stride, pad);
                let src: Mat<f64> = seeds.gaussian_matrix("x", b, g.in_c * g.in_pixels(), 1.0);
                let kernel: Mat<f64> = seeds.gaussian_matrix("k", 4, g.patch_len(), 1.0);
                let mut out = Mat::zeros(b, 4 * g.out_pixels());
                let mut scratch = Vec::new();
                g.forward(0.5, &src, &kernel, &mut out, &mut scratch);
                let want = naive(&g, &src, &kernel) * 0.5;
                assert!(
                    (&out - &want).abs().max() < 1e-12,
                    "{layout:?} {k} {stride}"
                );
                // ⟨D, conv(X, K)⟩ = ⟨convᵀ(D, K), X⟩ = ⟨∂K, K⟩
                let d: Mat<f64> = seeds.gaussian_matrix("d", b, 4 * g.out_pixels(), 1.0);
                let mut dx = Mat::zeros(b, src.ncols());
                g.backward_input(0.5, &d, &kernel, &mut dx, &mut scratch);
                let mut dk = Mat::zeros(4, g.patch_len());
                g.weight_grad(0.5, &d, &src, &mut dk, &mut scratch);
                let lhs = d.dot(&want);
                assert!((lhs - dx.dot(&src)).abs() < 1e-10 * lhs.abs().max(1.0));
                assert!((lhs - dk.dot(&kernel)).abs() < 1e-10 * lhs.abs().max(1.0));
            }
        }
    }
}
