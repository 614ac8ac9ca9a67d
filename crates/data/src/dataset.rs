//! Dataset containers and mini-batch gathering.
//!
//! * [`Tabular`] — `x` (`N × d`, one sample per row), targets `y` (`N × C`), and for
//!   classification the labels and class count. Classification targets are one-hot minus 0.1:
//!   `y_{ic} = 0.9` if `c = label_i`, else `−0.1` ([`one_hot_targets`]).
//! * [`Sequences`] — time-major sequences for recurrent models: `x[t]` is `N × input_dim`,
//!   `y[t]` is `N × output_dim`, for `t = 0..T`.
//! * [`Split`] is either; a [`Dataset`] has a training split, an optional validation split
//!   and a test split.
//!
//! Mini-batches are gathered by index ([`Tabular::batch`], [`Sequences::batch`]); the
//! `_into` forms reuse the batch's buffers when the shapes allow.
//!
//! ```
//! use widealign_data::{Tabular, Mat};
//! let x = Mat::from_row_slice(3, 2, &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
//! let t = Tabular::classification(x, vec![2, 0, 1], 3).unwrap();
//! assert_eq!(t.y[(0, 2)], 0.9);
//! assert_eq!(t.y[(0, 0)], -0.1);
//! let b = t.batch(&[2, 0]);
//! assert_eq!(b.x, Mat::from_row_slice(2, 2, &[4.0, 5.0, 0.0, 1.0]));
//! assert_eq!(b.labels, Some(vec![1, 2]));
//! ```

use serde::Serialize;
use widealign_tensor::Mat;

use crate::error::{DataError, Result};

/// The classification target for the true class (one-hot minus 0.1).
pub const TARGET_ON: f32 = 0.9;
/// The classification target for the other classes (one-hot minus 0.1).
pub const TARGET_OFF: f32 = -0.1;

/// The largest `N × C` target matrix that will be built (2³⁰ elements, 4 GiB of `f32`).
pub const MAX_TARGET_ELEMENTS: usize = 1 << 30;

/// Targets one-hot minus 0.1: `N × classes`, 0.9 at each label, −0.1 elsewhere.
///
/// Fails when a label is not below `classes` or the matrix would exceed
/// [`MAX_TARGET_ELEMENTS`].
pub fn one_hot_targets(labels: &[usize], classes: usize) -> Result<Mat<f32>> {
    if classes == 0 {
        return Err(DataError::option("classes", "0 classes"));
    }
    if labels.len().saturating_mul(classes) > MAX_TARGET_ELEMENTS {
        return Err(DataError::option(
            "classes",
            format!(
                "{} examples × {classes} classes exceeds {MAX_TARGET_ELEMENTS} target values",
                labels.len()
            ),
        ));
    }
    if let Some(i) = labels.iter().position(|&l| l >= classes) {
        return Err(DataError::option(
            "classes",
            format!(
                "label {} of example {i} is not below the class count {classes}",
                labels[i]
            ),
        ));
    }
    let mut y = Mat::from_element(labels.len(), classes, TARGET_OFF);
    for (i, &l) in labels.iter().enumerate() {
        y[(i, l)] = TARGET_ON;
    }
    Ok(y)
}

/// Gathers rows `idx` of `src` into `dst` (resized if needed), column by column.
fn gather_rows_into(src: &Mat<f32>, idx: &[usize], dst: &mut Mat<f32>) {
    let (n, d) = src.shape();
    if dst.shape() != (idx.len(), d) {
        *dst = Mat::zeros(idx.len(), d);
    }
    let s = src.as_slice();
    let b = idx.len();
    let out = dst.as_mut_slice();
    for j in 0..d {
        let scol = &s[j * n..(j + 1) * n];
        let dcol = &mut out[j * b..(j + 1) * b];
        for (v, &i) in dcol.iter_mut().zip(idx) {
            *v = scol[i];
        }
    }
}

/// Rows `idx` of `m`, in that order.
///
/// # Panics
/// If an index is not below `m.nrows()`.
pub fn gather_rows(m: &Mat<f32>, idx: &[usize]) -> Mat<f32> {
    let mut out = Mat::zeros(idx.len(), m.ncols());
    gather_rows_into(m, idx, &mut out);
    out
}

/// Removes the first `k` rows of `m` in place and returns them (no second full copy).
fn split_off_front_rows(m: &mut Mat<f32>, k: usize) -> Mat<f32> {
    let front = m.rows(0, k).into_owned();
    let taken = std::mem::replace(m, Mat::zeros(0, 0));
    *m = taken.remove_rows(0, k);
    front
}

/// A mini-batch of a [`Tabular`] split.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `B × d` inputs.
    pub x: Mat<f32>,
    /// `B × C` targets.
    pub y: Mat<f32>,
    /// The `B` labels (classification only).
    pub labels: Option<Vec<usize>>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            x: Mat::zeros(0, 0),
            y: Mat::zeros(0, 0),
            labels: None,
        }
    }
}

/// Feature-vector data: inputs, targets and (for classification) labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Tabular {
    /// `N × d` inputs, one sample per row.
    pub x: Mat<f32>,
    /// `N × C` targets: one-hot − 0.1 for classification, real values for regression.
    pub y: Mat<f32>,
    /// The class labels (classification only).
    pub labels: Option<Vec<usize>>,
    /// The number of classes (classification only).
    pub classes: Option<usize>,
}

impl Tabular {
    /// A classification split: targets one-hot − 0.1 built from `labels`.
    pub fn classification(x: Mat<f32>, labels: Vec<usize>, classes: usize) -> Result<Tabular> {
        if labels.len() != x.nrows() {
            return Err(DataError::option(
                "labels",
                format!("{} labels for {} samples", labels.len(), x.nrows()),
            ));
        }
        let y = one_hot_targets(&labels, classes)?;
        Ok(Tabular {
            x,
            y,
            labels: Some(labels),
            classes: Some(classes),
        })
    }

    /// A regression split with targets `y` (`N × C`).
    pub fn regression(x: Mat<f32>, y: Mat<f32>) -> Result<Tabular> {
        if y.nrows() != x.nrows() {
            return Err(DataError::option(
                "targets",
                format!("{} target rows for {} samples", y.nrows(), x.nrows()),
            ));
        }
        Ok(Tabular {
            x,
            y,
            labels: None,
            classes: None,
        })
    }

    /// The number of samples `N`.
    pub fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.x.nrows() == 0
    }

    /// The input dimension `d`.
    pub fn input_dim(&self) -> usize {
        self.x.ncols()
    }

    /// The target dimension `C`.
    pub fn output_dim(&self) -> usize {
        self.y.ncols()
    }

    /// Examples per class (classification only).
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        let (labels, classes) = (self.labels.as_ref()?, self.classes?);
        let mut c = vec![0; classes];
        for &l in labels {
            c[l] += 1;
        }
        Some(c)
    }

    /// The examples `idx`, in that order, as a new split.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn select(&self, idx: &[usize]) -> Tabular {
        Tabular {
            x: gather_rows(&self.x, idx),
            y: gather_rows(&self.y, idx),
            labels: self
                .labels
                .as_ref()
                .map(|l| idx.iter().map(|&i| l[i]).collect()),
            classes: self.classes,
        }
    }

    /// Gathers a mini-batch. Cost `O(B·(d + C))`.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch(&self, idx: &[usize]) -> Batch {
        let mut b = Batch::default();
        self.batch_into(idx, &mut b);
        b
    }

    /// Gathers a mini-batch into `out`, reusing its buffers when the shapes match.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch_into(&self, idx: &[usize], out: &mut Batch) {
        gather_rows_into(&self.x, idx, &mut out.x);
        gather_rows_into(&self.y, idx, &mut out.y);
        match &self.labels {
            Some(l) => {
                let v = out.labels.get_or_insert_with(Vec::new);
                v.clear();
                v.extend(idx.iter().map(|&i| l[i]));
            }
            None => out.labels = None,
        }
    }

    /// Removes the first `k` examples in place and returns them as a new split (the
    /// validation hold-out). The remaining examples are compacted within the same buffer.
    ///
    /// # Panics
    /// If `k > self.len()`.
    pub fn split_off_front(&mut self, k: usize) -> Tabular {
        let x = split_off_front_rows(&mut self.x, k);
        let y = split_off_front_rows(&mut self.y, k);
        let labels = self.labels.as_mut().map(|l| l.drain(..k).collect());
        Tabular {
            x,
            y,
            labels,
            classes: self.classes,
        }
    }
}

/// A mini-batch of a [`Sequences`] split (time-major).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeqBatch {
    /// `T` matrices of `B × input_dim`.
    pub x: Vec<Mat<f32>>,
    /// `T` matrices of `B × output_dim`.
    pub y: Vec<Mat<f32>>,
}

/// Sequences for recurrent models, stored time-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequences {
    /// `T` matrices of `N × input_dim`: `x[t]` row `i` is sequence `i`'s input at step `t`.
    pub x: Vec<Mat<f32>>,
    /// `T` matrices of `N × output_dim`: the targets at each step.
    pub y: Vec<Mat<f32>>,
}

impl Sequences {
    /// The number of sequences `N` (0 when there are no steps).
    pub fn len(&self) -> usize {
        self.x.first().map_or(0, |m| m.nrows())
    }

    /// Whether there are no sequences.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of time steps `T`.
    pub fn steps(&self) -> usize {
        self.x.len()
    }

    /// The input dimension per step.
    pub fn input_dim(&self) -> usize {
        self.x.first().map_or(0, |m| m.ncols())
    }

    /// The target dimension per step.
    pub fn output_dim(&self) -> usize {
        self.y.first().map_or(0, |m| m.ncols())
    }

    /// The sequences `idx`, in that order, as a new split.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn select(&self, idx: &[usize]) -> Sequences {
        Sequences {
            x: self.x.iter().map(|m| gather_rows(m, idx)).collect(),
            y: self.y.iter().map(|m| gather_rows(m, idx)).collect(),
        }
    }

    /// Gathers a mini-batch of sequences.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch(&self, idx: &[usize]) -> SeqBatch {
        let mut b = SeqBatch::default();
        self.batch_into(idx, &mut b);
        b
    }

    /// Gathers a mini-batch into `out`, reusing its buffers when the shapes match.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn batch_into(&self, idx: &[usize], out: &mut SeqBatch) {
        out.x.resize_with(self.x.len(), || Mat::zeros(0, 0));
        out.y.resize_with(self.y.len(), || Mat::zeros(0, 0));
        for (src, dst) in self.x.iter().zip(out.x.iter_mut()) {
            gather_rows_into(src, idx, dst);
        }
        for (src, dst) in self.y.iter().zip(out.y.iter_mut()) {
            gather_rows_into(src, idx, dst);
        }
    }

    /// Removes the first `k` sequences in place and returns them.
    ///
    /// # Panics
    /// If `k > self.len()`.
    pub fn split_off_front(&mut self, k: usize) -> Sequences {
        Sequences {
            x: self
                .x
                .iter_mut()
                .map(|m| split_off_front_rows(m, k))
                .collect(),
            y: self
                .y
                .iter_mut()
                .map(|m| split_off_front_rows(m, k))
                .collect(),
        }
    }
}

/// One split of a dataset: feature vectors or sequences.
#[derive(Clone, Debug, PartialEq)]
pub enum Split {
    /// Feature vectors (classification or regression).
    Tabular(Tabular),
    /// Time-major sequences (the Add task).
    Sequences(Sequences),
}

impl Split {
    /// The number of examples (samples or sequences).
    pub fn len(&self) -> usize {
        match self {
            Split::Tabular(t) => t.len(),
            Split::Sequences(s) => s.len(),
        }
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The input dimension (per step for sequences).
    pub fn input_dim(&self) -> usize {
        match self {
            Split::Tabular(t) => t.input_dim(),
            Split::Sequences(s) => s.input_dim(),
        }
    }

    /// The target dimension (per step for sequences).
    pub fn output_dim(&self) -> usize {
        match self {
            Split::Tabular(t) => t.output_dim(),
            Split::Sequences(s) => s.output_dim(),
        }
    }

    /// The feature-vector data, if this is a tabular split.
    pub fn as_tabular(&self) -> Option<&Tabular> {
        match self {
            Split::Tabular(t) => Some(t),
            Split::Sequences(_) => None,
        }
    }

    /// The sequences, if this is a sequence split.
    pub fn as_sequences(&self) -> Option<&Sequences> {
        match self {
            Split::Sequences(s) => Some(s),
            Split::Tabular(_) => None,
        }
    }

    /// The examples `idx`, in that order.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn select(&self, idx: &[usize]) -> Split {
        match self {
            Split::Tabular(t) => Split::Tabular(t.select(idx)),
            Split::Sequences(s) => Split::Sequences(s.select(idx)),
        }
    }

    pub(crate) fn split_off_front(&mut self, k: usize) -> Split {
        match self {
            Split::Tabular(t) => Split::Tabular(t.split_off_front(k)),
            Split::Sequences(s) => Split::Sequences(s.split_off_front(k)),
        }
    }
}

/// What a dataset asks a model to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Task {
    /// Classify into `classes` classes (targets one-hot − 0.1, accuracy by argmax).
    Classification {
        /// The number of classes.
        classes: usize,
    },
    /// Regress `outputs` real targets per sample.
    Regression {
        /// Targets per sample.
        outputs: usize,
    },
    /// Regress `outputs` real targets at every step of a sequence.
    SequenceRegression {
        /// Targets per step.
        outputs: usize,
    },
}

/// A loaded (or generated) dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The name it was loaded by (e.g. `digits`, `csv:iris.csv`).
    pub name: String,
    /// Where it came from: a file or folder, `embedded`, or `generated`.
    pub source: String,
    /// Classification, regression or sequence regression.
    pub task: Task,
    /// The training split (after the validation hold-out and training subset, if requested).
    pub train: Split,
    /// The validation hold-out, when requested.
    pub validation: Option<Split>,
    /// The test split.
    pub test: Split,
}

impl Dataset {
    /// The input dimension (per step for sequences).
    pub fn input_dim(&self) -> usize {
        self.train.input_dim()
    }

    /// The target dimension (classes for classification).
    pub fn output_dim(&self) -> usize {
        self.train.output_dim()
    }

    /// The number of classes (classification only).
    pub fn classes(&self) -> Option<usize> {
        match self.task {
            Task::Classification { classes } => Some(classes),
            _ => None,
        }
    }

    /// The classes (label ids below [`Dataset::classes`]) without a single training example:
    /// a sign that label ids are not contiguous (an `idx:` folder labelled 0–9 and 37 becomes a
    /// 38-class problem with 27 empty classes). Empty for regression and sequence tasks.
    pub fn empty_classes(&self) -> Vec<usize> {
        let (Some(classes), Some(t)) = (self.classes(), self.train.as_tabular()) else {
            return Vec::new();
        };
        let mut seen = vec![false; classes];
        for &l in t.labels.iter().flatten() {
            if let Some(s) = seen.get_mut(l) {
                *s = true;
            }
        }
        (0..classes).filter(|&c| !seen[c]).collect()
    }
}
