//! A symmetric positive-definite matrix stored once, as the tiles of its lower triangle, and
//! factorised in place by a blocked Cholesky: the solver behind [`crate::ensemble`] at
//! full-dataset scale.
//!
//! [`SymTiles`] keeps the lower triangle of an `n × n` symmetric matrix as `b × b` tiles
//! (column of tiles after column of tiles), so it needs about `n²/2` values instead of `n²`:
//! 7.2 GB in `f32` or 14.4 GB in `f64` for `n = 60,000` (`SymTiles::bytes`). The blocked
//! right-looking Cholesky `A = L Lᵀ` overwrites the tiles with `L`: for each tile column `k`,
//!
//! ```text
//! L_kk = chol(A_kk)                          (in f64, then stored in T)
//! L_ik = A_ik L_kk^{−T}          i > k       (one GEMM with the f64-computed inverse of L_kk)
//! A_ij ← A_ij − L_ik L_jkᵀ       k < j ≤ i   (one GEMM per tile, tiles in parallel)
//! ```
//!
//! which costs `n³/3` multiply-adds, nearly all of them in the tile GEMMs. Each tile is updated
//! in the order `k = 0, 1, …` whatever the number of threads, so the factor is the same bits for
//! any thread count. The triangular solves ([`SymTiles::solve_in_place`]) accumulate in `f64`
//! against `f64` right-hand sides whatever the storage type; see `docs/decisions/predict-solver.md`
//! for the measurements behind the choice of this solver over conjugate gradients.
//!
//! ```
//! use widealign_ntk::solve::SymTiles;
//! use widealign_tensor::Mat;
//! let a = Mat::from_row_slice(3, 3, &[4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0]);
//! let mut t = SymTiles::<f64>::from_dense(&a, 2).unwrap();
//! t.cholesky().unwrap();
//! let mut x = Mat::from_row_slice(3, 1, &[1.0, 2.0, 3.0]);
//! t.solve_in_place(&mut x).unwrap();
//! let r = &a * &x - Mat::from_row_slice(3, 1, &[1.0, 2.0, 3.0]);
//! assert!(r.abs().max() < 1e-12);
//! ```

use nalgebra::Cholesky;
use rayon::prelude::*;
use widealign_tensor::gemm::{gemm, Op};
use widealign_tensor::{Float, Mat};

use crate::error::shape_err;
use crate::NtkError;

/// The default tile side: large enough that each tile GEMM (`b³` multiply-adds) runs near peak,
/// small enough that the serial diagonal step stays short (measured in
/// `docs/decisions/predict-solver.md`).
pub const DEFAULT_TILE: usize = 512;

/// The lower triangle of a symmetric `n × n` matrix in `b × b` tiles (the last row and column of
/// tiles may be smaller). Diagonal tiles are stored whole (both halves), so a freshly filled
/// matrix can be multiplied ([`SymTiles::sym_mul`]); after [`SymTiles::cholesky`] the tiles
/// hold the factor `L` (upper halves of diagonal tiles zero).
#[derive(Clone, Debug)]
pub struct SymTiles<T: Float> {
    n: usize,
    b: usize,
    nb: usize,
    tiles: Vec<Mat<T>>,
    factored: bool,
}

impl<T: Float> SymTiles<T> {
    /// Bytes held by the tiles of an `n × n` matrix with tile side `b` (what
    /// [`SymTiles::zeros`] allocates, to plan memory before a run).
    pub fn bytes(n: usize, b: usize) -> u64 {
        let b = b.max(1);
        let nb = n.div_ceil(b);
        let mut total = 0u64;
        for j in 0..nb {
            let cj = (n - j * b).min(b) as u64;
            // the tiles below the diagonal tile of column j
            let below = (n - j * b) as u64;
            total += below * cj;
        }
        total * T::BYTES as u64
    }

    /// A zero matrix of side `n` in tiles of side `b`.
    ///
    /// # Errors
    /// [`NtkError::InvalidOption`] for `b = 0`.
    pub fn zeros(n: usize, b: usize) -> Result<Self, NtkError> {
        if b == 0 {
            return Err(NtkError::InvalidOption {
                name: "tile".into(),
                reason: "must be at least 1".into(),
            });
        }
        let nb = n.div_ceil(b);
        let mut tiles = Vec::with_capacity(nb * (nb + 1) / 2);
        for j in 0..nb {
            for i in j..nb {
                let (r, c) = ((n - i * b).min(b), (n - j * b).min(b));
                // `vec![0; ..]` is calloc: the pages come zeroed from the OS
                tiles.push(Mat::from_vec(r, c, vec![T::zero(); r * c]));
            }
        }
        Ok(SymTiles {
            n,
            b,
            nb,
            tiles,
            factored: false,
        })
    }

    /// The lower triangle of the dense symmetric `a`, rounded to `T`.
    ///
    /// # Errors
    /// [`NtkError::Shape`] if `a` is not square; [`NtkError::InvalidOption`] for `b = 0`.
    pub fn from_dense(a: &Mat<f64>, b: usize) -> Result<Self, NtkError> {
        if a.nrows() != a.ncols() {
            return Err(shape_err("symmetric matrix", "square".into(), a.shape()));
        }
        let mut t = Self::zeros(a.nrows(), b)?;
        for j in 0..t.nb {
            for i in j..t.nb {
                let (r0, c0) = (i * b, j * b);
                let tile = t.tile_mut(i, j);
                for q in 0..tile.ncols() {
                    for p in 0..tile.nrows() {
                        tile[(p, q)] = T::cast(a[(r0 + p, c0 + q)]);
                    }
                }
            }
        }
        Ok(t)
    }

    /// The side `n`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The tile side `b`.
    pub fn tile(&self) -> usize {
        self.b
    }

    /// The number of tile rows (and columns), `⌈n/b⌉`.
    pub fn blocks(&self) -> usize {
        self.nb
    }

    /// Whether [`SymTiles::cholesky`] has run (the tiles then hold `L`).
    pub fn is_factored(&self) -> bool {
        self.factored
    }

    fn offset(&self, j: usize) -> usize {
        // Σ_{c<j} (nb − c)
        j * self.nb - j * j.saturating_sub(1) / 2
    }

    fn index(&self, i: usize, j: usize) -> usize {
        debug_assert!(j <= i && i < self.nb);
        self.offset(j) + (i - j)
    }

    /// Tile `(i, j)`, `j ≤ i`: rows `i·b..`, columns `j·b..` of the lower triangle.
    ///
    /// # Panics
    /// If `j > i` or `i ≥ blocks()`.
    pub fn tile_ref(&self, i: usize, j: usize) -> &Mat<T> {
        assert!(
            j <= i && i < self.nb,
            "tile ({i}, {j}) is not in the lower triangle"
        );
        &self.tiles[self.index(i, j)]
    }

    /// Tile `(i, j)`, `j ≤ i`, mutably (to fill the matrix).
    ///
    /// # Panics
    /// If `j > i` or `i ≥ blocks()`.
    pub fn tile_mut(&mut self, i: usize, j: usize) -> &mut Mat<T> {
        assert!(
            j <= i && i < self.nb,
            "tile ({i}, {j}) is not in the lower triangle"
        );
        let k = self.index(i, j);
        &mut self.tiles[k]
    }

    /// The tiles of block row `i`, `(i, 0), …, (i, i)`, mutably and in parallel-friendly form.
    pub fn row_tiles_mut(&mut self, i: usize) -> Vec<&mut Mat<T>> {
        let idx: Vec<usize> = (0..=i).map(|j| self.index(i, j)).collect();
        let mut out: Vec<Option<&mut Mat<T>>> = self.tiles.iter_mut().map(Some).collect();
        idx.into_iter()
            .map(|k| out[k].take().expect("distinct tiles"))
            .collect()
    }

    /// Stores row `r` of the symmetric matrix (`n` values; only the columns `≤ r` are kept) —
    /// to fill the matrix from a file read row by row. Call [`SymTiles::finish_rows`] after the
    /// last row.
    ///
    /// # Errors
    /// [`NtkError::Shape`] if `r ≥ n` or the row has not `n` values.
    pub fn set_row(&mut self, r: usize, row: &[f64]) -> Result<(), NtkError> {
        if r >= self.n || row.len() != self.n {
            return Err(shape_err(
                "matrix row",
                format!("row < {} of {} values", self.n, self.n),
                (r, row.len()),
            ));
        }
        let (i, p) = (r / self.b, r % self.b);
        for j in 0..=i {
            let c0 = j * self.b;
            let tile = self.tile_mut(i, j);
            let cols = if j == i { p + 1 } else { tile.ncols() };
            for q in 0..cols {
                tile[(p, q)] = T::cast(row[c0 + q]);
            }
        }
        Ok(())
    }

    /// Mirrors the lower halves of the diagonal tiles onto their upper halves (after
    /// [`SymTiles::set_row`] filled the lower triangle).
    pub fn finish_rows(&mut self) {
        for k in 0..self.nb {
            let t = self.tile_mut(k, k);
            for q in 0..t.ncols() {
                for p in 0..q {
                    t[(p, q)] = t[(q, p)];
                }
            }
        }
    }

    /// Row `r` of the symmetric matrix (before factorisation) into `out` (`n` values).
    ///
    /// # Panics
    /// If `r ≥ n` or `out` has not `n` values.
    pub fn row_into(&self, r: usize, out: &mut [f64]) {
        assert!(r < self.n && out.len() == self.n, "row {r} of {}", self.n);
        let (i, p) = (r / self.b, r % self.b);
        for j in 0..self.nb {
            let c0 = j * self.b;
            if j <= i {
                let t = self.tile_ref(i, j);
                for q in 0..t.ncols() {
                    out[c0 + q] = t[(p, q)].as_f64();
                }
            } else {
                let t = self.tile_ref(j, i);
                for q in 0..t.nrows() {
                    out[c0 + q] = t[(q, p)].as_f64();
                }
            }
        }
    }

    /// `Σ_i A_ii` (before factorisation).
    pub fn trace(&self) -> f64 {
        (0..self.nb)
            .map(|k| {
                let t = self.tile_ref(k, k);
                (0..t.nrows()).map(|p| t[(p, p)].as_f64()).sum::<f64>()
            })
            .sum()
    }

    /// `A ← A + v·I`.
    pub fn add_diagonal(&mut self, v: f64) {
        for k in 0..self.nb {
            let t = self.tile_mut(k, k);
            for p in 0..t.nrows() {
                t[(p, p)] = T::cast(t[(p, p)].as_f64() + v);
            }
        }
    }

    /// The dense symmetric matrix (or, after factorisation, the dense lower factor `L`).
    pub fn to_dense(&self) -> Mat<f64> {
        let mut a = Mat::zeros(self.n, self.n);
        for j in 0..self.nb {
            for i in j..self.nb {
                let t = self.tile_ref(i, j);
                for q in 0..t.ncols() {
                    for p in 0..t.nrows() {
                        let (r, c) = (i * self.b + p, j * self.b + q);
                        if r >= c {
                            a[(r, c)] = t[(p, q)].as_f64();
                            if !self.factored {
                                a[(c, r)] = t[(p, q)].as_f64();
                            }
                        }
                    }
                }
            }
        }
        a
    }

    /// `A·X` (`n × C`, accumulated in `f64`) of the matrix before factorisation. Block rows run in
    /// parallel; each sums its tiles in a fixed order, so the result does not depend on the
    /// number of threads. Reads every tile twice (memory-bound: one pass of
    /// [`SymTiles::bytes`] per product, twice).
    ///
    /// # Errors
    /// [`NtkError::Shape`] if `X` is not `n × C`; [`NtkError::InvalidOption`] after factorisation.
    pub fn sym_mul(&self, x: &Mat<f64>) -> Result<Mat<f64>, NtkError> {
        if self.factored {
            return Err(NtkError::InvalidOption {
                name: "matrix".into(),
                reason: "already factorised (multiply before `cholesky`)".into(),
            });
        }
        self.check_rhs(x)?;
        let c = x.ncols();
        let xb = self.split_rows(x);
        let rows: Vec<Mat<f64>> = (0..self.nb)
            .into_par_iter()
            .map(|i| {
                let mut acc = Mat::zeros(self.rows_of(i), c);
                for j in 0..self.nb {
                    if j < i {
                        mul_add(&mut acc, self.tile_ref(i, j), &xb[j], false);
                    } else if j == i {
                        mul_add(&mut acc, self.tile_ref(i, i), &xb[i], false);
                    } else {
                        mul_add(&mut acc, self.tile_ref(j, i), &xb[j], true);
                    }
                }
                acc
            })
            .collect();
        Ok(self.join_rows(&rows, c))
    }

    fn rows_of(&self, i: usize) -> usize {
        (self.n - i * self.b).min(self.b)
    }

    fn check_rhs(&self, x: &Mat<f64>) -> Result<(), NtkError> {
        if x.nrows() != self.n {
            return Err(shape_err(
                "right-hand side",
                format!("{} × C", self.n),
                x.shape(),
            ));
        }
        Ok(())
    }

    fn split_rows(&self, x: &Mat<f64>) -> Vec<Mat<f64>> {
        (0..self.nb)
            .map(|i| x.rows(i * self.b, self.rows_of(i)).into_owned())
            .collect()
    }

    fn join_rows(&self, blocks: &[Mat<f64>], c: usize) -> Mat<f64> {
        let mut out = Mat::zeros(self.n, c);
        for (i, blk) in blocks.iter().enumerate() {
            out.rows_mut(i * self.b, blk.nrows()).copy_from(blk);
        }
        out
    }

    /// Factorises in place, `A = L Lᵀ` (blocked, right-looking; see the module docs). `progress`
    /// is called with the fraction of the work done after each tile column.
    ///
    /// # Errors
    /// [`NtkError::NotPositiveDefinite`] naming the first tile column whose pivot block is not
    /// positive definite (in the storage precision); the tiles are then partly overwritten.
    pub fn cholesky_with_progress(
        &mut self,
        mut progress: impl FnMut(f64),
    ) -> Result<(), NtkError> {
        if self.factored {
            return Ok(());
        }
        let nb = self.nb;
        let total: f64 = (0..nb).map(|k| ((nb - k) as f64).powi(2)).sum();
        let mut done = 0.0;
        for k in 0..nb {
            let split = self.offset(k + 1);
            let start = self.offset(k);
            let (head, tail) = self.tiles.split_at_mut(split);
            let col = &mut head[start..];
            let (diag, below) = col.split_first_mut().expect("diagonal tile");
            let linv = factor_diagonal(diag).map_err(|p| NtkError::NotPositiveDefinite {
                index: k * self.b + p,
            })?;
            below.par_iter_mut().for_each(|t| {
                let mut out = Mat::from_vec(t.nrows(), t.ncols(), vec![T::zero(); t.len()]);
                gemm(T::one(), t, Op::N, &linv, Op::T, T::zero(), &mut out);
                *t = out;
            });
            // trailing tiles (i, j), k < j ≤ i, in storage order
            let coords: Vec<(usize, usize)> = (k + 1..nb)
                .flat_map(|j| (j..nb).map(move |i| (i, j)))
                .collect();
            let below = &*below;
            tail.par_iter_mut()
                .zip(coords.par_iter())
                .for_each(|(t, &(i, j))| {
                    let li = &below[i - k - 1];
                    let lj = &below[j - k - 1];
                    gemm(-T::one(), li, Op::N, lj, Op::T, T::one(), t);
                });
            done += ((nb - k) as f64).powi(2);
            progress(done / total);
        }
        self.factored = true;
        Ok(())
    }

    /// [`SymTiles::cholesky_with_progress`] without progress reports.
    ///
    /// # Errors
    /// As [`SymTiles::cholesky_with_progress`].
    pub fn cholesky(&mut self) -> Result<(), NtkError> {
        self.cholesky_with_progress(|_| {})
    }

    /// `B ← A^{−1} B` with the factor (`B` is `n × C`, in `f64`): forward substitution with `L`,
    /// then back substitution with `Lᵀ`, accumulating in `f64`. Cost `2·n²·C` multiply-adds,
    /// one pass over the tiles each way; the result does not depend on the number of threads.
    ///
    /// # Errors
    /// [`NtkError::Shape`] if `B` has not `n` rows; [`NtkError::InvalidOption`] before
    /// [`SymTiles::cholesky`].
    pub fn solve_in_place(&self, rhs: &mut Mat<f64>) -> Result<(), NtkError> {
        let mut y = self.forward_blocks(rhs)?;
        let nb = self.nb;
        // back substitution: Lᵀ x = y, right-looking over tile rows from the bottom
        for k in (0..nb).rev() {
            let (head, tail) = y.split_at_mut(k);
            let xk = &mut tail[0];
            back_diag(self.tile_ref(k, k), xk);
            let xk = &*xk;
            head.par_iter_mut().enumerate().for_each(|(i, yi)| {
                // y_i −= L_kiᵀ x_k
                mul_sub(yi, self.tile_ref(k, i), xk, true);
            });
        }
        let c = rhs.ncols();
        *rhs = self.join_rows(&y, c);
        Ok(())
    }

    /// `L^{−1} B` in blocks of rows (forward substitution only): what the NNGP posterior variance
    /// `k(x,x) − ‖L^{−1} k(X,x)‖²` needs.
    ///
    /// # Errors
    /// As [`SymTiles::solve_in_place`].
    pub fn forward_solve(&self, rhs: &Mat<f64>) -> Result<Mat<f64>, NtkError> {
        let c = rhs.ncols();
        let y = self.forward_blocks(rhs)?;
        Ok(self.join_rows(&y, c))
    }

    fn forward_blocks(&self, rhs: &Mat<f64>) -> Result<Vec<Mat<f64>>, NtkError> {
        if !self.factored {
            return Err(NtkError::InvalidOption {
                name: "matrix".into(),
                reason: "not factorised (call `cholesky` first)".into(),
            });
        }
        self.check_rhs(rhs)?;
        let mut y = self.split_rows(rhs);
        for k in 0..self.nb {
            let (head, tail) = y.split_at_mut(k + 1);
            let yk = &mut head[k];
            forward_diag(self.tile_ref(k, k), yk);
            let yk = &*yk;
            tail.par_iter_mut().enumerate().for_each(|(d, yi)| {
                // y_i −= L_ik y_k
                mul_sub(yi, self.tile_ref(k + 1 + d, k), yk, false);
            });
        }
        Ok(y)
    }
}

/// Factorises a diagonal tile in place (computed in `f64`, stored in `T`, upper half zeroed)
/// and returns `L_kk^{−1}` in `T`. On failure, the row of the first non-positive pivot.
fn factor_diagonal<T: Float>(tile: &mut Mat<T>) -> Result<Mat<T>, usize> {
    let b = tile.nrows();
    let a = Mat::from_fn(b, b, |p, q| {
        let (p, q) = if p >= q { (p, q) } else { (q, p) };
        tile[(p, q)].as_f64()
    });
    // find the failing pivot ourselves: nalgebra's Cholesky only says "not positive definite"
    let chol = match Cholesky::new(a.clone()) {
        Some(c) => c,
        None => return Err(first_bad_pivot(&a)),
    };
    let l = chol.l();
    for q in 0..b {
        for p in 0..b {
            tile[(p, q)] = if p >= q {
                T::cast(l[(p, q)])
            } else {
                T::zero()
            };
        }
    }
    // the inverse of the stored (rounded) factor, so that L_ik L_kkᵀ reproduces A_ik in T
    let stored = Mat::from_fn(b, b, |p, q| tile[(p, q)].as_f64());
    let inv = stored
        .solve_lower_triangular(&Mat::identity(b, b))
        .ok_or(0usize)?;
    Ok(Mat::from_fn(b, b, |p, q| T::cast(inv[(p, q)])))
}

/// The first row at which an unblocked Cholesky of `a` meets a non-positive pivot.
fn first_bad_pivot(a: &Mat<f64>) -> usize {
    let n = a.nrows();
    let mut l = Mat::zeros(n, n);
    for j in 0..n {
        let mut d = a[(j, j)];
        for k in 0..j {
            d -= l[(j, k)] * l[(j, k)];
        }
        if d <= 0.0 || !d.is_finite() {
            return j;
        }
        let d = d.sqrt();
        l[(j, j)] = d;
        for i in j + 1..n {
            let mut s = a[(i, j)];
            for k in 0..j {
                s -= l[(i, k)] * l[(j, k)];
            }
            l[(i, j)] = s / d;
        }
    }
    n.saturating_sub(1)
}

/// `y ← L^{−1} y` for a lower-triangular tile (in `f64`).
fn forward_diag<T: Float>(l: &Mat<T>, y: &mut Mat<f64>) {
    let b = l.nrows();
    for c in 0..y.ncols() {
        for p in 0..b {
            let mut s = y[(p, c)];
            for q in 0..p {
                s -= l[(p, q)].as_f64() * y[(q, c)];
            }
            y[(p, c)] = s / l[(p, p)].as_f64();
        }
    }
}

/// `x ← L^{−T} x` for a lower-triangular tile (in `f64`).
fn back_diag<T: Float>(l: &Mat<T>, x: &mut Mat<f64>) {
    let b = l.nrows();
    for c in 0..x.ncols() {
        for p in (0..b).rev() {
            let mut s = x[(p, c)];
            for q in p + 1..b {
                s -= l[(q, p)].as_f64() * x[(q, c)];
            }
            x[(p, c)] = s / l[(p, p)].as_f64();
        }
    }
}

/// `acc ← acc + op(tile)·x`, accumulated in `f64` (`op` the transpose when `transpose`).
fn mul_add<T: Float>(acc: &mut Mat<f64>, tile: &Mat<T>, x: &Mat<f64>, transpose: bool) {
    mul_acc(acc, tile, x, transpose, 1.0);
}

/// `acc ← acc − op(tile)·x`, accumulated in `f64`.
fn mul_sub<T: Float>(acc: &mut Mat<f64>, tile: &Mat<T>, x: &Mat<f64>, transpose: bool) {
    mul_acc(acc, tile, x, transpose, -1.0);
}

fn mul_acc<T: Float>(acc: &mut Mat<f64>, tile: &Mat<T>, x: &Mat<f64>, transpose: bool, sign: f64) {
    let (r, c) = tile.shape();
    let data = tile.as_slice();
    for cc in 0..x.ncols() {
        if transpose {
            // acc[q] += Σ_p tile[p, q] x[p]: a dot product down each (contiguous) tile column
            let xs = x.column(cc);
            let xs = xs.as_slice();
            for q in 0..c {
                let col = &data[q * r..(q + 1) * r];
                let mut s = 0.0;
                for (t, xv) in col.iter().zip(xs) {
                    s += t.as_f64() * xv;
                }
                acc[(q, cc)] += sign * s;
            }
        } else {
            // acc += Σ_q tile[:, q] x[q]: axpy down each tile column
            let mut out = acc.column_mut(cc);
            let out = out.as_mut_slice();
            for q in 0..c {
                let xv = sign * x[(q, cc)];
                let col = &data[q * r..(q + 1) * r];
                for (o, t) in out.iter_mut().zip(col) {
                    *o += t.as_f64() * xv;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_tensor::rng::SeedStream;

    fn spd(n: usize, seed: u64) -> Mat<f64> {
        let a: Mat<f64> = SeedStream::new(seed).gaussian_matrix("a", n, n + 3, 1.0);
        &a * a.transpose() / n as f64 + Mat::identity(n, n) * 0.05
    }

    #[test]
    fn blocked_cholesky_equals_dense_for_ragged_and_exact_tilings() {
        for (n, b) in [(1, 4), (7, 3), (12, 4), (13, 5), (30, 30), (30, 64)] {
            let a = spd(n, n as u64);
            let mut t = SymTiles::<f64>::from_dense(&a, b).unwrap();
            assert_eq!(
                SymTiles::<f64>::bytes(n, b),
                t.tiles.iter().map(|m| m.len() as u64 * 8).sum::<u64>()
            );
            let x: Mat<f64> = SeedStream::new(9).gaussian_matrix("x", n, 3, 1.0);
            let ax = t.sym_mul(&x).unwrap();
            assert!((&ax - &a * &x).abs().max() < 1e-12, "n={n} b={b}");
            t.cholesky().unwrap();
            let dense = Cholesky::new(a.clone()).unwrap().l();
            assert!((t.to_dense() - &dense).abs().max() < 1e-12, "n={n} b={b}");
            let mut sol = ax.clone();
            t.solve_in_place(&mut sol).unwrap();
            assert!((sol - &x).abs().max() < 1e-10, "n={n} b={b}");
            let fwd = t.forward_solve(&ax).unwrap();
            let want = dense.solve_lower_triangular(&ax).unwrap();
            assert!((fwd - want).abs().max() < 1e-10);
        }
    }

    #[test]
    fn rows_in_and_out() {
        let a = spd(11, 2);
        let t = SymTiles::<f64>::from_dense(&a, 4).unwrap();
        let mut u = SymTiles::<f64>::zeros(11, 4).unwrap();
        let mut row = vec![0.0; 11];
        for r in 0..11 {
            t.row_into(r, &mut row);
            assert_eq!(row, a.row(r).iter().copied().collect::<Vec<_>>());
            u.set_row(r, &row).unwrap();
        }
        u.finish_rows();
        assert_eq!(u.to_dense(), a);
        assert!(u.set_row(11, &row).is_err() && u.set_row(0, &row[..3]).is_err());
    }

    #[test]
    fn f32_storage_solves_to_f32_accuracy() {
        let n = 40;
        let a = spd(n, 3);
        let mut t = SymTiles::<f32>::from_dense(&a, 16).unwrap();
        assert_eq!(
            SymTiles::<f32>::bytes(n, 16) * 2,
            SymTiles::<f64>::bytes(n, 16)
        );
        t.cholesky().unwrap();
        let b: Mat<f64> = SeedStream::new(4).gaussian_matrix("b", n, 2, 1.0);
        let mut x = b.clone();
        t.solve_in_place(&mut x).unwrap();
        let exact = Cholesky::new(a).unwrap().solve(&b);
        let rel = (&x - &exact).norm() / exact.norm();
        assert!(rel < 1e-4 && rel > 0.0, "{rel}");
    }

    #[test]
    fn indefinite_matrix_names_the_row() {
        let mut a = spd(10, 5);
        a[(6, 6)] = -1.0;
        let mut t = SymTiles::<f64>::from_dense(&a, 4).unwrap();
        let err = t.cholesky().unwrap_err();
        match err {
            NtkError::NotPositiveDefinite { index } => assert!((4..8).contains(&index)),
            other => panic!("{other}"),
        }
        assert!(SymTiles::<f64>::zeros(3, 0).is_err());
        let t = SymTiles::<f64>::zeros(3, 2).unwrap();
        assert!(t.solve_in_place(&mut Mat::zeros(3, 1)).is_err());
        assert!(t.sym_mul(&Mat::zeros(4, 1)).is_err());
    }

    #[test]
    fn same_bits_for_one_and_two_threads() {
        let a = spd(50, 8);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut t = SymTiles::<f32>::from_dense(&a, 8).unwrap();
                t.cholesky().unwrap();
                let mut x = Mat::from_element(50, 2, 1.0);
                t.solve_in_place(&mut x).unwrap();
                (t.to_dense(), x)
            })
        };
        assert_eq!(run(1), run(2));
    }
}
