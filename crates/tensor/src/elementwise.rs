//! In-place elementwise kernels on slices and matrices.
//!
//! * [`hadamard`]: `y ← y ⊙ x`
//! * [`axpy`]: `y ← y + α·x` (the SGD update `W ← W − lr·∂W` is `axpy(-lr, g, w)`)
//! * [`scale`]: `y ← α·y`
//! * [`add_row_vector`]: add `α·v` to every row of a batch matrix (bias of a dense layer)
//!
//! Long slices are processed in parallel in fixed-size chunks; every element is computed by the
//! same expression whatever the thread count, so results are bit-identical.
//!
//! ```
//! use widealign_tensor::{elementwise, Mat};
//! let mut h = Mat::<f32>::zeros(2, 3);
//! elementwise::add_row_vector(&mut h, &[1.0, 2.0, 3.0], 0.5);
//! assert_eq!(h, Mat::from_row_slice(2, 3, &[0.5, 1.0, 1.5, 0.5, 1.0, 1.5]));
//! let mut y = vec![1.0f64, 2.0];
//! elementwise::axpy(-2.0, &[1.0, 1.0], &mut y);
//! assert_eq!(y, vec![-1.0, 0.0]);
//! ```

use rayon::prelude::*;

use crate::{Float, Mat};

/// Slices longer than this are processed in parallel, in chunks of this many elements.
const CHUNK: usize = 1 << 15;

fn zip_apply<T: Float>(x: &[T], y: &mut [T], f: impl Fn(T, &mut T) + Sync, what: &str) {
    assert_eq!(
        x.len(),
        y.len(),
        "{what}: length mismatch {} vs {}",
        x.len(),
        y.len()
    );
    if y.len() > CHUNK {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(yc, xc)| yc.iter_mut().zip(xc).for_each(|(y, &x)| f(x, y)));
    } else {
        y.iter_mut().zip(x).for_each(|(y, &x)| f(x, y));
    }
}

/// `y ← y ⊙ x` (Hadamard product).
///
/// # Panics
/// If the lengths differ.
pub fn hadamard<T: Float>(x: &[T], y: &mut [T]) {
    zip_apply(x, y, |x, y| *y *= x, "hadamard");
}

/// `y ← y + α·x`.
///
/// # Panics
/// If the lengths differ.
pub fn axpy<T: Float>(alpha: T, x: &[T], y: &mut [T]) {
    zip_apply(x, y, |x, y| *y += alpha * x, "axpy");
}

/// `y ← α·y`.
pub fn scale<T: Float>(alpha: T, y: &mut [T]) {
    if y.len() > CHUNK {
        y.par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|v| *v *= alpha));
    } else {
        y.iter_mut().for_each(|v| *v *= alpha);
    }
}

/// Adds `α·v[j]` to every entry of column `j`: with one sample per row, this adds the vector
/// `α·v` to every sample (a dense layer's bias).
///
/// # Panics
/// If `v.len() != m.ncols()`.
pub fn add_row_vector<T: Float>(m: &mut Mat<T>, v: &[T], alpha: T) {
    assert_eq!(
        v.len(),
        m.ncols(),
        "add_row_vector: vector length vs matrix columns"
    );
    let rows = m.nrows();
    if rows == 0 {
        return;
    }
    m.as_mut_slice()
        .chunks_mut(rows)
        .zip(v)
        .for_each(|(col, &b)| {
            let add = alpha * b;
            col.iter_mut().for_each(|x| *x += add);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_slices_match_short_path() {
        let n = 3 * CHUNK + 17;
        let x: Vec<f32> = (0..n).map(|i| (i % 101) as f32 * 0.01).collect();
        let mut y: Vec<f32> = (0..n).map(|i| (i % 37) as f32 * 0.1).collect();
        let y0 = y.clone();
        axpy(0.3, &x, &mut y);
        hadamard(&x, &mut y);
        scale(2.0, &mut y);
        for i in (0..n).step_by(1001) {
            let expect = 2.0 * ((y0[i] + 0.3 * x[i]) * x[i]);
            assert_eq!(y[i], expect);
        }
    }

    #[test]
    #[should_panic(expected = "axpy: length mismatch")]
    fn mismatched_lengths_panic() {
        axpy(1.0f64, &[1.0], &mut [1.0, 2.0]);
    }
}
