//! Preprocessing: standardisation, stratified splits and subsets, seeded shuffling.
//!
//! * **Standardisation** ([`Standardizer`]): per feature `x'_{ij} = (x_{ij} − μ_j) / σ_j` with
//!   `μ_j`, `σ_j` the mean and population standard deviation over the *training* split only
//!   (accumulated in `f64`); a feature with `σ_j < 10⁻⁶` is only centred (`σ_j := 1`).
//! * **Stratified split** ([`stratified_split`]): within each class `c` with `n_c` examples,
//!   `round(f · n_c)` examples chosen by a seeded shuffle go to the test side, so every class
//!   keeps (to rounding) the same proportion on both sides even when a file is sorted by label.
//! * **Stratified subset** ([`stratified_subset`]): `k` examples with per-class quotas
//!   proportional to the class frequencies (`⌊k n_c / n⌋`, the remaining examples going to the
//!   classes with the largest remainders, ties to the lower class), members drawn by a seeded
//!   shuffle, returned in ascending index order.
//! * **Shuffling** ([`epoch_order`], [`batches`]): a Fisher–Yates permutation from the named
//!   stream `epoch{e}` of a [`SeedStream`]; the same seed gives the same order on every machine.
//!
//! ```
//! use widealign_data::preprocess::{stratified_subset, epoch_order, batches};
//! use widealign_tensor::rng::SeedStream;
//! let labels = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2];
//! let mut rng = SeedStream::new(1).rng("subset");
//! let idx = stratified_subset(&labels, 3, 5, &mut rng).unwrap();
//! let per_class: Vec<usize> = (0..3).map(|c| idx.iter().filter(|&&i| labels[i] == c).count()).collect();
//! // exact quotas 3, 1.5, 0.5: floors 3, 1, 0; the one left over goes to the tie's lower class
//! assert_eq!(per_class, vec![3, 2, 0]);
//! let order = epoch_order(10, &SeedStream::new(7), 0);
//! assert_eq!(batches(&order, 4).map(|b| b.len()).collect::<Vec<_>>(), vec![4, 4, 2]);
//! ```

use widealign_tensor::rng::{self, Rng, SeedStream};
use widealign_tensor::Mat;

use crate::error::{DataError, Result};

/// Per-feature mean and standard deviation fitted on a training split.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// `μ_j`.
    pub mean: Vec<f32>,
    /// `σ_j` (1 for constant features).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits on the rows of `x` (`N × d`); `f64` accumulation, two passes.
    pub fn fit(x: &Mat<f32>) -> Standardizer {
        let (n, d) = x.shape();
        let mut mean = Vec::with_capacity(d);
        let mut std = Vec::with_capacity(d);
        for j in 0..d {
            let col = &x.as_slice()[j * n..(j + 1) * n];
            let m = if n == 0 {
                0.0
            } else {
                col.iter().map(|&v| v as f64).sum::<f64>() / n as f64
            };
            let var = if n == 0 {
                0.0
            } else {
                col.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n as f64
            };
            let s = var.sqrt();
            mean.push(m as f32);
            std.push(if s < 1e-6 { 1.0 } else { s as f32 });
        }
        Standardizer { mean, std }
    }

    /// Applies `(x − μ) / σ` in place.
    ///
    /// # Panics
    /// If `x` has a different number of columns than the fitted data.
    pub fn apply(&self, x: &mut Mat<f32>) {
        assert_eq!(x.ncols(), self.mean.len(), "standardiser width");
        let n = x.nrows();
        for (j, col) in x.as_mut_slice().chunks_mut(n.max(1)).enumerate() {
            let (m, s) = (self.mean[j], self.std[j]);
            for v in col {
                *v = (*v - m) / s;
            }
        }
    }
}

/// Indices grouped by class: `members[c]` lists the examples of class `c` in index order.
fn by_class(labels: &[usize], classes: usize) -> Result<Vec<Vec<usize>>> {
    let mut members = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        members
            .get_mut(l)
            .ok_or_else(|| {
                DataError::option(
                    "labels",
                    format!("label {l} of example {i} is not below the class count {classes}"),
                )
            })?
            .push(i);
    }
    Ok(members)
}

/// A seeded, stratified train/test split: `(train, test)` index lists in ascending order.
///
/// Per class, `round(test_fraction · n_c)` examples go to the test side. Fails
/// ([`DataError::InvalidOption`] naming `test_fraction`) when `test_fraction` is not in
/// `(0, 1)` or either side would be empty.
pub fn stratified_split(
    labels: &[usize],
    classes: usize,
    test_fraction: f64,
    rng: &mut Rng,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DataError::option(
            "test_fraction",
            format!("{test_fraction}: must be strictly between 0 and 1"),
        ));
    }
    let mut train = Vec::new();
    let mut test = Vec::new();
    for mut m in by_class(labels, classes)? {
        rng::shuffle(rng, &mut m);
        let k = (test_fraction * m.len() as f64).round() as usize;
        test.extend_from_slice(&m[..k]);
        train.extend_from_slice(&m[k..]);
    }
    if train.is_empty() || test.is_empty() {
        return Err(DataError::option(
            "test_fraction",
            format!(
                "{test_fraction} of {} examples leaves {} for training and {} for testing",
                labels.len(),
                train.len(),
                test.len()
            ),
        ));
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}

/// `k` examples stratified by class (see the module docs), in ascending index order.
///
/// Fails ([`DataError::InvalidOption`] naming `train_size`, the [`crate::LoadOptions`] field
/// that sets `k`) when `k` is 0 or larger than the number of examples.
pub fn stratified_subset(
    labels: &[usize],
    classes: usize,
    k: usize,
    rng: &mut Rng,
) -> Result<Vec<usize>> {
    let n = labels.len();
    if k == 0 || k > n {
        return Err(DataError::option(
            "train_size",
            format!("{k}: must be between 1 and the {n} training examples"),
        ));
    }
    let members = by_class(labels, classes)?;
    let mut quota: Vec<usize> = members.iter().map(|m| k * m.len() / n).collect();
    let assigned: usize = quota.iter().sum();
    // largest remainders k·n_c mod n, ties to the lower class
    let mut order: Vec<usize> = (0..classes).collect();
    order.sort_by_key(|&c| (std::cmp::Reverse((k * members[c].len()) % n), c));
    for &c in order.iter().take(k - assigned) {
        quota[c] += 1;
    }
    let mut out = Vec::with_capacity(k);
    for (mut m, q) in members.into_iter().zip(quota) {
        rng::shuffle(rng, &mut m);
        out.extend_from_slice(&m[..q]);
    }
    out.sort_unstable();
    Ok(out)
}

/// `k` of `n` examples chosen uniformly by a seeded shuffle (for unlabelled data), ascending.
///
/// Fails ([`DataError::InvalidOption`] naming `train_size`, the [`crate::LoadOptions`] field
/// that sets `k`) when `k` is 0 or larger than `n`.
pub fn random_subset(n: usize, k: usize, rng: &mut Rng) -> Result<Vec<usize>> {
    if k == 0 || k > n {
        return Err(DataError::option(
            "train_size",
            format!("{k}: must be between 1 and the {n} training examples"),
        ));
    }
    let mut all: Vec<usize> = (0..n).collect();
    rng::shuffle(rng, &mut all);
    all.truncate(k);
    all.sort_unstable();
    Ok(all)
}

/// The training subset of `k` of `n` examples that a run with seed `seed` trains on: stratified
/// by class when `labels` (and the class count) are given, uniform otherwise, drawn from the
/// stream `SeedStream::new(seed).child("data").rng("train-subset")`, in ascending order.
///
/// This is the one subset path of the workspace: the loader's `train_size`
/// ([`crate::LoadOptions`]) and the training loop's (`widealign-rules`) both call it, so a seed
/// names the same subset everywhere.
///
/// Fails when `k` is 0 or larger than `n`.
pub fn training_subset(
    n: usize,
    labels: Option<(&[usize], usize)>,
    k: usize,
    seed: u64,
) -> Result<Vec<usize>> {
    let mut rng = SeedStream::new(seed).child("data").rng("train-subset");
    match labels {
        Some((labels, classes)) => stratified_subset(labels, classes, k, &mut rng),
        None => random_subset(n, k, &mut rng),
    }
}

/// The visiting order of `n` examples in epoch `epoch`: a permutation drawn from the stream
/// `epoch{epoch}` of `seeds`.
pub fn epoch_order(n: usize, seeds: &SeedStream, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    rng::shuffle(&mut seeds.rng(&format!("epoch{epoch}")), &mut order);
    order
}

/// Consecutive mini-batches of `order` (the last one may be smaller).
///
/// # Panics
/// If `batch_size == 0`.
pub fn batches(order: &[usize], batch_size: usize) -> std::slice::Chunks<'_, usize> {
    order.chunks(batch_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardizer_fits_train_only() {
        let x = Mat::from_row_slice(4, 2, &[1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 4.0, 5.0]);
        let s = Standardizer::fit(&x);
        assert_eq!(s.mean, vec![2.5, 5.0]);
        assert_eq!(s.std[1], 1.0);
        assert!((s.std[0] - 1.118_034).abs() < 1e-6);
        let mut y = x.clone();
        s.apply(&mut y);
        let col0: f32 = y.column(0).iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!((col0 - 1.0).abs() < 1e-6);
        assert!(y.column(1).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn split_is_stratified_and_partitions() {
        // sorted by label, uneven classes
        let labels: Vec<usize> = (0..200)
            .map(|i| {
                if i < 130 {
                    0
                } else if i < 190 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let mut rng = SeedStream::new(3).rng("split");
        let (tr, te) = stratified_split(&labels, 3, 0.25, &mut rng).unwrap();
        let count = |v: &[usize], c| v.iter().filter(|&&i| labels[i] == c).count();
        assert_eq!([count(&te, 0), count(&te, 1), count(&te, 2)], [33, 15, 3]); // round(32.5)=33, 15, round(2.5)=3
        assert_eq!(tr.len() + te.len(), 200);
        let mut all = [tr.clone(), te.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
        // seeded: same seed same split, other seed different
        let again =
            stratified_split(&labels, 3, 0.25, &mut SeedStream::new(3).rng("split")).unwrap();
        assert_eq!(again, (tr.clone(), te.clone()));
        let other =
            stratified_split(&labels, 3, 0.25, &mut SeedStream::new(4).rng("split")).unwrap();
        assert_ne!(other.1, te);
        assert!(stratified_split(&labels, 3, 1.0, &mut rng).is_err());
        assert!(stratified_split(&labels, 3, 0.001, &mut rng).is_err());
    }

    #[test]
    fn subset_quotas() {
        let labels: Vec<usize> = (0..1000).map(|i| i % 10).collect();
        let mut rng = SeedStream::new(0).rng("s");
        let idx = stratified_subset(&labels, 10, 57, &mut rng).unwrap();
        assert_eq!(idx.len(), 57);
        let mut c = [0; 10];
        for &i in &idx {
            c[labels[i]] += 1;
        }
        assert_eq!(c, [6, 6, 6, 6, 6, 6, 6, 5, 5, 5]);
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        assert!(stratified_subset(&labels, 10, 1001, &mut rng).is_err());
        assert!(stratified_subset(&labels, 10, 0, &mut rng).is_err());
        let all = stratified_subset(&labels, 10, 1000, &mut rng).unwrap();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn epoch_orders_differ_by_epoch_and_repeat_by_seed() {
        let s = SeedStream::new(5);
        let a = epoch_order(100, &s, 0);
        assert_eq!(a, epoch_order(100, &SeedStream::new(5), 0));
        assert_ne!(a, epoch_order(100, &s, 1));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }
}
