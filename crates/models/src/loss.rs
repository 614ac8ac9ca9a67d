//! Losses, their output errors `E = ∂L/∂f`, accuracy and classification targets.
//!
//! For a batch of `B` outputs `f_i ∈ R^C` (rows of a `B × C` matrix) and targets `y_i`:
//!
//! * [`Loss::Mse`] (the reference loss): `L = (1/(B·C)) Σ_i ‖f_i − y_i‖²`,
//!   `E = 2 (f − y)/(B·C)`.
//! * [`Loss::CrossEntropy`]: the label of sample `i` is `k_i = argmax_c y_ic` (so one-hot,
//!   one-hot − 0.1 and probability targets all work), `p_i = softmax(f_i)`,
//!   `L = −(1/B) Σ_i log p_{i,k_i}`, `E = (p_i − onehot(k_i))/B`.
//!
//! For sequences the loss is the sum of the per-step losses ([`Loss::evaluate_sequence`]), so the
//! per-step errors are the per-step `E_t`. Sums are accumulated in `f64`.
//!
//! Classification targets are one-hot minus 0.1: `0.9` for the class, `−0.1` elsewhere
//! ([`one_hot_targets`]); [`accuracy`] counts `argmax_c f_ic = label_i`.
//!
//! ```
//! use widealign_models::{accuracy, one_hot_targets, Loss};
//! use widealign_tensor::Mat;
//! let y: Mat<f64> = one_hot_targets(&[1, 0], 3).unwrap();
//! assert_eq!(y.row(0).iter().copied().collect::<Vec<_>>(), vec![-0.1, 0.9, -0.1]);
//! let f = Mat::<f64>::zeros(2, 3);
//! let (loss, err) = Loss::Mse.evaluate(&f, &y).unwrap();
//! assert!((loss - (0.81 + 2.0 * 0.01) / 3.0).abs() < 1e-12);
//! assert!((err[(0, 1)] - 2.0 * (0.0 - 0.9) / 6.0).abs() < 1e-12);
//! assert_eq!(accuracy(&y, &[1, 0]).unwrap(), 1.0);
//! ```

use widealign_tensor::{Float, Mat};

use crate::mlp::ensure_shape;
use crate::ModelError;

/// A training loss on a batch of network outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Mean squared error over batch and output units: `L = (1/(B·C)) Σ (f − y)²`.
    Mse,
    /// Softmax cross-entropy against the argmax class of each target row, averaged over the batch.
    CrossEntropy,
}

impl Loss {
    /// `"mse"` or `"cross-entropy"`.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Mse => "mse",
            Loss::CrossEntropy => "cross-entropy",
        }
    }

    /// The loss and the output error `E = ∂L/∂f` (`B × C`, includes the normalisation).
    ///
    /// # Errors
    /// [`ModelError::ShapeMismatch`] naming both shapes if `target` is not shaped like `output`;
    /// [`ModelError::Empty`] for an empty batch or zero outputs.
    pub fn evaluate<T: Float>(
        &self,
        output: &Mat<T>,
        target: &Mat<T>,
    ) -> Result<(f64, Mat<T>), ModelError> {
        let mut err = Mat::zeros(output.nrows(), output.ncols());
        let loss = self.evaluate_into(output, target, &mut err)?;
        Ok((loss, err))
    }

    /// [`Loss::evaluate`] writing `E` into `err` (reused when its shape matches).
    ///
    /// # Errors
    /// As [`Loss::evaluate`].
    pub fn evaluate_into<T: Float>(
        &self,
        output: &Mat<T>,
        target: &Mat<T>,
        err: &mut Mat<T>,
    ) -> Result<f64, ModelError> {
        if output.shape() != target.shape() {
            return Err(ModelError::shape(
                format!("{} loss target", self.name()),
                format!(
                    "{} × {} (the output's shape)",
                    output.nrows(),
                    output.ncols()
                ),
                target.shape(),
            ));
        }
        let (b, c) = output.shape();
        if b == 0 || c == 0 {
            return Err(ModelError::Empty(format!(
                "{} loss on a {b} × {c} output",
                self.name()
            )));
        }
        ensure_shape(err, b, c);
        match self {
            Loss::Mse => {
                let norm = (b * c) as f64;
                let scale = T::cast(2.0 / norm);
                let mut total = 0.0f64;
                for ((e, &f), &y) in err
                    .as_mut_slice()
                    .iter_mut()
                    .zip(output.as_slice())
                    .zip(target.as_slice())
                {
                    let diff = f - y;
                    let d = diff.as_f64();
                    total += d * d;
                    *e = scale * diff;
                }
                Ok(total / norm)
            }
            Loss::CrossEntropy => {
                let inv_b = 1.0 / b as f64;
                let mut total = 0.0f64;
                let mut p = vec![0.0f64; c];
                for i in 0..b {
                    let k = argmax((0..c).map(|j| target[(i, j)]));
                    let max = (0..c)
                        .map(|j| output[(i, j)].as_f64())
                        .fold(f64::NEG_INFINITY, f64::max);
                    let mut z = 0.0;
                    for j in 0..c {
                        p[j] = (output[(i, j)].as_f64() - max).exp();
                        z += p[j];
                    }
                    total -= (output[(i, k)].as_f64() - max) - z.ln();
                    for j in 0..c {
                        let onehot = if j == k { 1.0 } else { 0.0 };
                        err[(i, j)] = T::cast((p[j] / z - onehot) * inv_b);
                    }
                }
                Ok(total * inv_b)
            }
        }
    }

    /// Sequence loss: the sum over time of the per-step losses, with the per-step errors
    /// `E_t = ∂L/∂y_t`. `outputs` and `targets` are time-major (`T` matrices of `B × C`).
    ///
    /// # Errors
    /// [`ModelError::ShapeMismatch`] if the lengths or any step's shapes differ;
    /// [`ModelError::Empty`] for an empty sequence or batch.
    pub fn evaluate_sequence<T: Float>(
        &self,
        outputs: &[Mat<T>],
        targets: &[Mat<T>],
    ) -> Result<(f64, Vec<Mat<T>>), ModelError> {
        if outputs.len() != targets.len() {
            return Err(ModelError::ShapeMismatch {
                what: format!("{} sequence loss targets", self.name()),
                expected: format!("{} time steps (the output's length)", outputs.len()),
                got: format!("{} time steps", targets.len()),
            });
        }
        if outputs.is_empty() {
            return Err(ModelError::Empty(format!(
                "{} sequence loss on zero time steps",
                self.name()
            )));
        }
        let mut total = 0.0;
        let mut errs = Vec::with_capacity(outputs.len());
        for (t, (f, y)) in outputs.iter().zip(targets).enumerate() {
            let (l, e) = self.evaluate(f, y).map_err(|e| match e {
                ModelError::ShapeMismatch {
                    what,
                    expected,
                    got,
                } => ModelError::ShapeMismatch {
                    what: format!("{what} at time step {}", t + 1),
                    expected,
                    got,
                },
                other => other,
            })?;
            total += l;
            errs.push(e);
        }
        Ok((total, errs))
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Index of the first maximum (NaN entries never win).
fn argmax<T: Float>(xs: impl Iterator<Item = T>) -> usize {
    let mut best = 0;
    let mut best_v: Option<T> = None;
    for (j, v) in xs.enumerate() {
        if v.as_f64().is_nan() {
            continue;
        }
        if best_v.is_none_or(|b| v > b) {
            best = j;
            best_v = Some(v);
        }
    }
    best
}

/// The predicted class of every row: `argmax_c f_ic` (first maximum; NaN entries are skipped).
pub fn predicted_classes<T: Float>(output: &Mat<T>) -> Vec<usize> {
    (0..output.nrows())
        .map(|i| argmax(output.row(i).iter().copied()))
        .collect()
}

/// Fraction of rows whose argmax equals the label: `(1/B) Σ_i [argmax_c f_ic = label_i]`.
///
/// # Errors
/// [`ModelError::ShapeMismatch`] if there are not exactly `B` labels; [`ModelError::Empty`] for
/// an empty batch.
pub fn accuracy<T: Float>(output: &Mat<T>, labels: &[usize]) -> Result<f64, ModelError> {
    if labels.len() != output.nrows() {
        return Err(ModelError::ShapeMismatch {
            what: "accuracy labels".into(),
            expected: format!("{} labels (one per output row)", output.nrows()),
            got: format!("{} labels", labels.len()),
        });
    }
    if labels.is_empty() {
        return Err(ModelError::Empty("accuracy of an empty batch".into()));
    }
    let correct = predicted_classes(output)
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(correct as f64 / labels.len() as f64)
}

/// Targets one-hot minus 0.1: row `i` is `0.9` at column `labels[i]` and `−0.1` elsewhere
/// (`B × classes`).
///
/// # Errors
/// [`ModelError::LabelOutOfRange`] naming the position if a label is `≥ classes`.
pub fn one_hot_targets<T: Float>(labels: &[usize], classes: usize) -> Result<Mat<T>, ModelError> {
    let mut y = Mat::from_element(labels.len(), classes, T::cast(-0.1));
    for (i, &k) in labels.iter().enumerate() {
        if k >= classes {
            return Err(ModelError::LabelOutOfRange {
                index: i,
                label: k,
                classes,
            });
        }
        y[(i, k)] = T::cast(0.9);
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use widealign_tensor::rng::SeedStream;

    fn fd_check(loss: Loss) {
        let s = SeedStream::new(4);
        let f: Mat<f64> = s.gaussian_matrix("f", 3, 4, 1.0);
        let y: Mat<f64> = one_hot_targets(&[2, 0, 3], 4).unwrap();
        let (_, err) = loss.evaluate(&f, &y).unwrap();
        let h = 1e-6;
        for i in 0..3 {
            for j in 0..4 {
                let mut fp = f.clone();
                fp[(i, j)] += h;
                let mut fm = f.clone();
                fm[(i, j)] -= h;
                let fd = (loss.evaluate(&fp, &y).unwrap().0 - loss.evaluate(&fm, &y).unwrap().0)
                    / (2.0 * h);
                assert!((fd - err[(i, j)]).abs() < 1e-8, "{loss} ({i},{j})");
            }
        }
    }

    #[test]
    fn errors_are_loss_derivatives() {
        fd_check(Loss::Mse);
        fd_check(Loss::CrossEntropy);
    }

    #[test]
    fn cross_entropy_known_value_and_stability() {
        let f = Mat::<f64>::from_row_slice(1, 2, &[1000.0, 0.0]);
        let y = Mat::<f64>::from_row_slice(1, 2, &[0.0, 1.0]);
        let (l, e) = Loss::CrossEntropy.evaluate(&f, &y).unwrap();
        assert!((l - 1000.0).abs() < 1e-9);
        assert!((e[(0, 0)] - 1.0).abs() < 1e-12 && (e[(0, 1)] + 1.0).abs() < 1e-12);
        let f = Mat::<f64>::zeros(2, 4);
        let (l, _) = Loss::CrossEntropy
            .evaluate(&f, &one_hot_targets(&[1, 3], 4).unwrap())
            .unwrap();
        assert!((l - 4f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn shape_and_label_errors() {
        let f = Mat::<f32>::zeros(2, 3);
        let y = Mat::<f32>::zeros(2, 4);
        let msg = Loss::Mse.evaluate(&f, &y).unwrap_err().to_string();
        assert!(msg.contains("2 × 3") && msg.contains("2 × 4"), "{msg}");
        assert!(matches!(
            one_hot_targets::<f32>(&[0, 5], 3),
            Err(ModelError::LabelOutOfRange {
                index: 1,
                label: 5,
                classes: 3
            })
        ));
        assert!(accuracy(&f, &[0]).is_err());
        assert!(Loss::Mse
            .evaluate(&Mat::<f32>::zeros(0, 3), &Mat::zeros(0, 3))
            .is_err());
        assert!(Loss::Mse
            .evaluate_sequence(std::slice::from_ref(&f), &[f.clone(), f.clone()])
            .is_err());
    }

    #[test]
    fn sequence_loss_is_sum_of_steps() {
        let s = SeedStream::new(1);
        let fs: Vec<Mat<f64>> = (0..3)
            .map(|t| s.gaussian_matrix(&format!("f{t}"), 2, 1, 1.0))
            .collect();
        let ys: Vec<Mat<f64>> = (0..3)
            .map(|t| s.gaussian_matrix(&format!("y{t}"), 2, 1, 1.0))
            .collect();
        let (total, errs) = Loss::Mse.evaluate_sequence(&fs, &ys).unwrap();
        let mut sum = 0.0;
        for t in 0..3 {
            let (l, e) = Loss::Mse.evaluate(&fs[t], &ys[t]).unwrap();
            sum += l;
            assert_eq!(e, errs[t]);
        }
        assert_eq!(total, sum);
    }

    #[test]
    fn accuracy_counts_argmax() {
        let f = Mat::<f32>::from_row_slice(3, 2, &[1.0, 0.0, 0.0, 1.0, f32::NAN, 2.0]);
        assert_eq!(predicted_classes(&f), vec![0, 1, 1]);
        assert!((accuracy(&f, &[0, 0, 1]).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }
}
