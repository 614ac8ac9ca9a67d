//! Matrix products: `C ← β·C + α·op(A)·op(B)` with `op` the identity or the transpose.
//!
//! Training needs three forms, all provided without copying a transpose:
//!
//! | form | use in a dense layer (batch rows, `W ∈ R^{m×n}`) |
//! |---|---|
//! | `A·Bᵀ` ([`matmul_nt`]) | forward, `H = A·Wᵀ` |
//! | `A·B` ([`matmul`]) | backward signal, `D_prev = D·W` |
//! | `Aᵀ·B` ([`matmul_tn`]) | weight gradient, `∂W = Dᵀ·A` |
//!
//! The kernel is the `gemm` crate (runtime-dispatched SIMD micro-kernels, rayon threads),
//! chosen over nalgebra's built-in product by measurement (`docs/decisions/gemm.md`).
//! Threads split the output into blocks; each output entry is always summed over `k` in the same
//! order, so the result does not depend on the number of threads (tested).
//!
//! Cost: `2·m·n·k` floating-point operations.
//!
//! ```
//! use widealign_tensor::{gemm::{gemm, Op}, Mat};
//! let a = Mat::<f64>::from_row_slice(2, 3, &[1., 2., 3., 4., 5., 6.]);
//! let b = Mat::<f64>::from_row_slice(2, 3, &[1., 0., 0., 0., 1., 0.]);
//! let mut c = Mat::<f64>::from_element(2, 2, 1.0);
//! // C ← 1·C + 2·A·Bᵀ
//! gemm(2.0, &a, Op::N, &b, Op::T, 1.0, &mut c);
//! assert_eq!(c, Mat::from_row_slice(2, 2, &[3., 5., 9., 11.]));
//! ```
#![allow(unsafe_code)]

use nalgebra::{
    storage::{RawStorage, RawStorageMut},
    Dyn, Matrix,
};

use crate::{Float, Mat};

/// Whether a factor enters a product as stored ([`Op::N`]) or transposed ([`Op::T`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Use the matrix as stored.
    N,
    /// Use the transpose of the matrix (no copy is made).
    T,
}

impl Op {
    /// Shape of `op(m)` as (rows, cols).
    fn shape<T: Float, S: RawStorage<T, Dyn, Dyn>>(
        self,
        m: &Matrix<T, Dyn, Dyn, S>,
    ) -> (usize, usize) {
        match self {
            Op::N => (m.nrows(), m.ncols()),
            Op::T => (m.ncols(), m.nrows()),
        }
    }
    /// (column stride, row stride) of `op(m)`, from the storage's own strides.
    fn strides<T: Float, S: RawStorage<T, Dyn, Dyn>>(
        self,
        m: &Matrix<T, Dyn, Dyn, S>,
    ) -> (isize, isize) {
        let (rs, cs) = m.strides();
        let (rs, cs) = (rs as isize, cs as isize);
        match self {
            Op::N => (cs, rs),
            Op::T => (rs, cs),
        }
    }
}

/// Products with fewer multiply-adds (`m·n·k`) than this run on one thread.
///
/// Measured on 2 Zen 4 cores (`docs/decisions/gemm.md`): two threads lose to one up to
/// `128³ ≈ 2.1·10⁶` (waking the second thread costs more than it saves) and win from
/// `144³ ≈ 3·10⁶` on; the `gemm` crate's own threshold would already thread `96³`.
/// The choice depends only on the shape, and one and two threads give the same bits.
const PARALLEL_THRESHOLD: usize = 2_500_000;

/// `C ← β·C + α·op(A)·op(B)`.
///
/// When `beta == 0`, `C` is not read (it may hold NaN). Cost `2·m·n·k` flops.
///
/// # Panics
/// If the shapes do not agree: `op(A)` is `m×k`, `op(B)` is `k×n` and `C` must be `m×n`.
/// Callers that handle user input check shapes first and return an error.
pub fn gemm<T: Float>(
    alpha: T,
    a: &Mat<T>,
    op_a: Op,
    b: &Mat<T>,
    op_b: Op,
    beta: T,
    c: &mut Mat<T>,
) {
    gemm_view(alpha, a, op_a, b, op_b, beta, c);
}

/// [`gemm()`] on any dense matrices or views (`m.rows(..)`, `m.columns_mut(..)`, …) of dynamic
/// shape: the strides of each operand are read from its storage, so sub-matrices are multiplied
/// in place, without copies.
///
/// ```
/// use widealign_tensor::{gemm::{gemm_view, Op}, Mat};
/// let x = Mat::<f64>::from_row_slice(3, 2, &[1., 2., 3., 4., 5., 6.]);
/// let mut g = Mat::<f64>::zeros(3, 3);
/// // the Gram block of rows 0..2 against row 2, written into column 2 of g
/// gemm_view(1.0, &x.rows(0, 2), Op::N, &x.rows(2, 1), Op::T, 0.0, &mut g.view_mut((0, 2), (2, 1)));
/// assert_eq!((g[(0, 2)], g[(1, 2)]), (17.0, 39.0));
/// ```
///
/// # Panics
/// As [`gemm()`].
pub fn gemm_view<T, SA, SB, SC>(
    alpha: T,
    a: &Matrix<T, Dyn, Dyn, SA>,
    op_a: Op,
    b: &Matrix<T, Dyn, Dyn, SB>,
    op_b: Op,
    beta: T,
    c: &mut Matrix<T, Dyn, Dyn, SC>,
) where
    T: Float,
    SA: RawStorage<T, Dyn, Dyn>,
    SB: RawStorage<T, Dyn, Dyn>,
    SC: RawStorageMut<T, Dyn, Dyn>,
{
    let (m, k) = op_a.shape(a);
    let (k2, n) = op_b.shape(b);
    assert!(
        k == k2 && c.nrows() == m && c.ncols() == n,
        "gemm shape mismatch: op(A) is {m}x{k}, op(B) is {k2}x{n}, C is {}x{}",
        c.nrows(),
        c.ncols()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if beta == T::zero() {
            c.fill(T::zero());
        } else {
            c.scale_mut(beta);
        }
        return;
    }
    let (a_cs, a_rs) = op_a.strides(a);
    let (b_cs, b_rs) = op_b.strides(b);
    let (c_rs, c_cs) = c.strides();
    let parallelism = if m * n * k >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    let read_dst = beta != T::zero();
    // SAFETY: the pointers come from live matrices whose shapes were checked above, the strides
    // are those of their storage, and `c` is borrowed mutably so it aliases neither input.
    // The `gemm` crate computes dst := alpha·dst + beta·lhs·rhs, so our (alpha, beta) are swapped.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs as isize,
            c_rs as isize,
            read_dst,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `A·B` as a new matrix.
///
/// # Panics
/// If `A.ncols() != B.nrows()`.
pub fn matmul<T: Float>(a: &Mat<T>, b: &Mat<T>) -> Mat<T> {
    let mut c = Mat::zeros(a.nrows(), b.ncols());
    gemm(T::one(), a, Op::N, b, Op::N, T::zero(), &mut c);
    c
}

/// `Aᵀ·B` as a new matrix (the transpose is never formed).
///
/// # Panics
/// If `A.nrows() != B.nrows()`.
pub fn matmul_tn<T: Float>(a: &Mat<T>, b: &Mat<T>) -> Mat<T> {
    let mut c = Mat::zeros(a.ncols(), b.ncols());
    gemm(T::one(), a, Op::T, b, Op::N, T::zero(), &mut c);
    c
}

/// `A·Bᵀ` as a new matrix (the transpose is never formed).
///
/// # Panics
/// If `A.ncols() != B.ncols()`.
pub fn matmul_nt<T: Float>(a: &Mat<T>, b: &Mat<T>) -> Mat<T> {
    let mut c = Mat::zeros(a.nrows(), b.nrows());
    gemm(T::one(), a, Op::N, b, Op::T, T::zero(), &mut c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeedStream;

    fn naive(a: &Mat<f64>, op_a: Op, b: &Mat<f64>, op_b: Op) -> Mat<f64> {
        let a = if op_a == Op::T {
            a.transpose()
        } else {
            a.clone()
        };
        let b = if op_b == Op::T {
            b.transpose()
        } else {
            b.clone()
        };
        let mut c = Mat::zeros(a.nrows(), b.ncols());
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                c[(i, j)] = (0..a.ncols()).map(|p| a[(i, p)] * b[(p, j)]).sum();
            }
        }
        c
    }

    #[test]
    fn all_transpose_forms_match_naive_product() {
        let s = SeedStream::new(7);
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (64, 33, 65), (100, 20, 130)] {
            for op_a in [Op::N, Op::T] {
                for op_b in [Op::N, Op::T] {
                    let a: Mat<f64> = match op_a {
                        Op::N => s.gaussian_matrix("a", m, k, 1.0),
                        Op::T => s.gaussian_matrix("a", k, m, 1.0),
                    };
                    let b: Mat<f64> = match op_b {
                        Op::N => s.gaussian_matrix("b", k, n, 1.0),
                        Op::T => s.gaussian_matrix("b", n, k, 1.0),
                    };
                    let mut c: Mat<f64> = s.gaussian_matrix("c", m, n, 1.0);
                    let expect = naive(&a, op_a, &b, op_b) * 0.5 + &c * 2.0;
                    gemm(0.5, &a, op_a, &b, op_b, 2.0, &mut c);
                    let err = (&c - &expect).abs().max();
                    assert!(err < 1e-12, "{m}x{n}x{k} {op_a:?}{op_b:?}: error {err}");
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_destination() {
        let a = Mat::<f32>::identity(3, 3);
        let mut c = Mat::<f32>::from_element(3, 3, f32::NAN);
        gemm(1.0, &a, Op::N, &a, Op::N, 0.0, &mut c);
        assert_eq!(c, Mat::identity(3, 3));
    }

    #[test]
    fn helpers_agree_with_nalgebra() {
        let s = SeedStream::new(1);
        let a: Mat<f64> = s.gaussian_matrix("a", 6, 4, 1.0);
        let b: Mat<f64> = s.gaussian_matrix("b", 6, 5, 1.0);
        let c: Mat<f64> = s.gaussian_matrix("c", 5, 4, 1.0);
        assert!((matmul_tn(&a, &b) - a.transpose() * &b).abs().max() < 1e-12);
        assert!((matmul_nt(&a, &c) - &a * c.transpose()).abs().max() < 1e-12);
        assert!(
            (matmul(&a, &c.transpose()) - &a * c.transpose())
                .abs()
                .max()
                < 1e-12
        );
    }

    #[test]
    fn views_multiply_in_place_without_touching_the_rest() {
        let s = SeedStream::new(2);
        let x: Mat<f64> = s.gaussian_matrix("x", 40, 9, 1.0);
        let y: Mat<f64> = s.gaussian_matrix("y", 30, 9, 1.0);
        let mut g = Mat::<f64>::from_element(40, 30, 7.0);
        // rows 3..25 of x against rows 5..17 of y, into the matching block of g
        gemm_view(
            1.0,
            &x.rows(3, 22),
            Op::N,
            &y.rows(5, 12),
            Op::T,
            0.0,
            &mut g.view_mut((3, 5), (22, 12)),
        );
        let full = &x * y.transpose();
        for j in 0..30 {
            for i in 0..40 {
                if (3..25).contains(&i) && (5..17).contains(&j) {
                    assert!((g[(i, j)] - full[(i, j)]).abs() < 1e-12, "({i}, {j})");
                } else {
                    assert_eq!(g[(i, j)], 7.0, "({i}, {j}) outside the view was written");
                }
            }
        }
        // a transposed view operand (rows of xᵀ are columns of x)
        let xt = x.transpose();
        let mut h = Mat::<f64>::zeros(9, 4);
        gemm_view(
            1.0,
            &xt.columns(0, 40),
            Op::N,
            &x.columns(2, 4),
            Op::N,
            0.0,
            &mut h,
        );
        assert!((h - xt * x.columns(2, 4)).abs().max() < 1e-12);
    }

    #[test]
    #[should_panic(expected = "gemm shape mismatch")]
    fn shape_mismatch_panics_with_shapes() {
        let a = Mat::<f32>::zeros(2, 3);
        let _ = matmul(&a, &a);
    }
}
