//! Reductions accumulated in `f64`.
//!
//! * [`column_sums`]: `s_j = Σ_i M_ij` (a bias gradient: the sum over the samples of a batch)
//! * [`row_sums`]: `s_i = Σ_j M_ij`
//! * [`dot`]: `⟨x, y⟩ = Σ x_k y_k`; [`frobenius_norm`]: `‖M‖_F = √⟨M, M⟩`
//!
//! Sums are accumulated in `f64` whatever the element type. Long inputs are cut into pieces of a
//! fixed size (independent of the thread count), the pieces are summed in parallel and the
//! partial sums are added in order — so results are bit-identical for any number of threads.
//!
//! ```
//! use widealign_tensor::{reduce, Mat};
//! let m = Mat::<f32>::from_row_slice(2, 2, &[3.0, 0.0, 0.0, 4.0]);
//! assert_eq!(reduce::frobenius_norm(m.as_slice()), 5.0);
//! assert_eq!(reduce::column_sums(&m), vec![3.0, 4.0]);
//! ```

use rayon::prelude::*;

use crate::{Float, Mat};

/// Size of the pieces a long reduction is split into.
const PIECE: usize = 1 << 14;

/// `Σ_k f(k)` over `0..n` for a pure `f`, summed in `f64` in fixed pieces.
fn pieces_sum(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    let piece = |p: usize| {
        let end = ((p + 1) * PIECE).min(n);
        (p * PIECE..end).map(&f).sum::<f64>()
    };
    let count = n.div_ceil(PIECE);
    if count <= 1 {
        return piece(0);
    }
    let partials: Vec<f64> = (0..count).into_par_iter().map(piece).collect();
    partials.iter().sum()
}

/// `⟨x, y⟩ = Σ x_k y_k`, accumulated in `f64`.
///
/// # Panics
/// If the lengths differ.
pub fn dot<T: Float>(x: &[T], y: &[T]) -> f64 {
    assert_eq!(x.len(), y.len(), "dot: length mismatch");
    pieces_sum(x.len(), |k| x[k].as_f64() * y[k].as_f64())
}

/// `Σ x_k`, accumulated in `f64`.
pub fn sum<T: Float>(x: &[T]) -> f64 {
    pieces_sum(x.len(), |k| x[k].as_f64())
}

/// Frobenius (Euclidean) norm `√Σ x_k²` of the entries, accumulated in `f64`.
pub fn frobenius_norm<T: Float>(x: &[T]) -> f64 {
    dot(x, x).sqrt()
}

/// Sum over rows for each column: `s_j = Σ_i M_ij` (length `ncols`).
pub fn column_sums<T: Float>(m: &Mat<T>) -> Vec<T> {
    let rows = m.nrows();
    if rows == 0 {
        return vec![T::zero(); m.ncols()];
    }
    m.as_slice()
        .par_chunks(rows)
        .map(|col| T::cast(col.iter().map(|v| v.as_f64()).sum::<f64>()))
        .collect()
}

/// Sum over columns for each row: `s_i = Σ_j M_ij` (length `nrows`).
pub fn row_sums<T: Float>(m: &Mat<T>) -> Vec<T> {
    let rows = m.nrows();
    let mut acc = vec![0.0f64; rows];
    if rows > 0 {
        for col in m.as_slice().chunks(rows) {
            acc.iter_mut().zip(col).for_each(|(a, v)| *a += v.as_f64());
        }
    }
    acc.into_iter().map(T::cast).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_exact_on_integers() {
        let n = 5 * PIECE + 3;
        let x: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        let expect: f64 = (0..n).map(|i| (i % 7) as f64).sum();
        assert_eq!(sum(&x), expect);
        let sq: f64 = (0..n).map(|i| ((i % 7) * (i % 7)) as f64).sum();
        assert_eq!(dot(&x, &x), sq);
    }

    #[test]
    fn row_and_column_sums() {
        let m = Mat::<f64>::from_row_slice(2, 3, &[1., 2., 3., 4., 5., 6.]);
        assert_eq!(column_sums(&m), vec![5., 7., 9.]);
        assert_eq!(row_sums(&m), vec![6., 15.]);
    }
}
