//! Dataset names, where each is looked for, and the one entry point [`load`].
//!
//! | name | what | where |
//! |---|---|---|
//! | `digits` (default) | embedded 8×8 digits, 10 classes | compiled in ([`crate::digits`]) |
//! | `fashion-mnist` | Fashion-MNIST IDX files | `/usr/share/datasets/fashion-mnist` (Debian package `dataset-fashion-mnist`), else `$WIDEALIGN_DATA/fashion-mnist` |
//! | `mnist`, `kmnist` | MNIST / Kuzushiji-MNIST IDX files | `$WIDEALIGN_DATA/mnist`, `$WIDEALIGN_DATA/kmnist` |
//! | `idx:DIR` | any IDX folder with the standard names | `DIR` |
//! | `cifar10:DIR`, `cifar10` | CIFAR-10 binary batches | `DIR` or `DIR/cifar-10-batches-bin`; bare `cifar10`: `$WIDEALIGN_DATA/cifar10` |
//! | `csv:FILE` | features then an integer label per row | `FILE`, split seeded and stratified |
//! | `add` | the Add task (sequences) | generated ([`crate::synthetic`]) |
//! | `add-reference` | the Add task with the reference script's wrap-around targets | generated ([`crate::synthetic`]) |
//! | `teacher` | teacher–student regression | generated |
//!
//! The data folder is [`LoadOptions::data_dir`], else `$WIDEALIGN_DATA`, else
//! `$HOME/.local/share/widealign` ([`data_dir`]). An IDX folder holds
//! `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
//! `t10k-labels-idx1-ubyte`, each optionally ending in `.gz` (the content decides whether it is
//! decompressed).
//!
//! [`load`] then prepares the splits in this order: the validation hold-out (the first
//! [`LoadOptions::validation`] training examples, as the reference holds out the first 5,000 —
//! [`REFERENCE_VALIDATION`]), the training subset ([`LoadOptions::train_size`] examples,
//! stratified by class, seeded), and standardisation fitted on the resulting training split only
//! ([`LoadOptions::standardize`]). The official test split is used as is.
//!
//! ```
//! use widealign_data::{load, LoadOptions};
//! let opts = LoadOptions { validation: Some(200), train_size: Some(100), ..LoadOptions::default() };
//! let d = load("digits", &opts).unwrap();
//! assert_eq!((d.train.len(), d.validation.as_ref().unwrap().len(), d.test.len()), (100, 200, 355));
//! assert_eq!(d.classes(), Some(10));
//! let info = widealign_data::info("digits", &LoadOptions::default()).unwrap();
//! assert_eq!((info.train, info.test, info.input_dim), (1442, 355, 64));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use widealign_tensor::rng::SeedStream;

use crate::csv::{self, CsvOptions};
use crate::dataset::{Dataset, Split, Tabular, Task};
use crate::error::{DataError, Position, Result};
use crate::preprocess::{stratified_split, training_subset, Standardizer};
use crate::synthetic::{add_task, teacher_task, AddParams, TeacherParams};
use crate::{cifar, digits, idx};

/// Where Debian's dataset packages install their files.
pub const SYSTEM_DATA_DIR: &str = "/usr/share/datasets";

/// The environment variable naming the user's data folder.
pub const DATA_ENV: &str = "WIDEALIGN_DATA";

/// The size of the reference experiments' validation hold-out (the first 5,000 training
/// images).
pub const REFERENCE_VALIDATION: usize = 5000;

/// The standard IDX file stems: training images, training labels, test images, test labels.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// A parsed dataset name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetSpec {
    /// The embedded digits.
    Digits,
    /// Fashion-MNIST.
    FashionMnist,
    /// MNIST.
    Mnist,
    /// Kuzushiji-MNIST.
    Kmnist,
    /// An IDX folder.
    Idx(PathBuf),
    /// CIFAR-10 binary batches in a folder (`None`: under the data folder).
    Cifar10(Option<PathBuf>),
    /// A CSV file.
    Csv(PathBuf),
    /// The Add task.
    Add,
    /// The Add task with the reference script's wrap-around targets ([`AddParams::wrap`]).
    AddReference,
    /// Teacher–student regression.
    Teacher,
}

impl FromStr for DatasetSpec {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        let nonempty = |p: &str| -> Result<PathBuf> {
            if p.is_empty() {
                Err(DataError::UnknownDataset {
                    name: s.to_string(),
                })
            } else {
                Ok(PathBuf::from(p))
            }
        };
        Ok(match s {
            "digits" => DatasetSpec::Digits,
            "fashion-mnist" => DatasetSpec::FashionMnist,
            "mnist" => DatasetSpec::Mnist,
            "kmnist" => DatasetSpec::Kmnist,
            "cifar10" => DatasetSpec::Cifar10(None),
            "add" => DatasetSpec::Add,
            "add-reference" => DatasetSpec::AddReference,
            "teacher" => DatasetSpec::Teacher,
            _ => {
                if let Some(p) = s.strip_prefix("idx:") {
                    DatasetSpec::Idx(nonempty(p)?)
                } else if let Some(p) = s.strip_prefix("cifar10:") {
                    DatasetSpec::Cifar10(Some(nonempty(p)?))
                } else if let Some(p) = s.strip_prefix("csv:") {
                    DatasetSpec::Csv(nonempty(p)?)
                } else {
                    return Err(DataError::UnknownDataset {
                        name: s.to_string(),
                    });
                }
            }
        })
    }
}

/// The image shape of a dataset whose examples are images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    /// Rows `H`.
    pub height: usize,
    /// Columns `W`.
    pub width: usize,
    /// Channels `C`.
    pub channels: usize,
    /// Whether a row of the loaded data holds channel planes one after the other (`c·H·W + y·W
    /// + x`, CIFAR-10) rather than HWC (`(y·W + x)·C + c`; the same for one channel).
    pub channel_major: bool,
}

impl DatasetSpec {
    /// The image shape of the built-in image datasets: digits 8×8×1, Fashion-MNIST, MNIST and
    /// KMNIST 28×28×1, CIFAR-10 32×32×3 (channel-major as loaded). `None` for the others (an
    /// `idx:DIR` folder's images may have any size; CSV, Add and teacher data are not images).
    ///
    /// ```
    /// use widealign_data::DatasetSpec;
    /// let s: DatasetSpec = "fashion-mnist".parse().unwrap();
    /// assert_eq!(s.image_shape().map(|i| (i.height, i.width, i.channels)), Some((28, 28, 1)));
    /// assert!("add".parse::<DatasetSpec>().unwrap().image_shape().is_none());
    /// ```
    pub fn image_shape(&self) -> Option<ImageShape> {
        let shape = |height, width, channels, channel_major| ImageShape {
            height,
            width,
            channels,
            channel_major,
        };
        match self {
            DatasetSpec::Digits => Some(shape(8, 8, 1, false)),
            DatasetSpec::FashionMnist | DatasetSpec::Mnist | DatasetSpec::Kmnist => {
                Some(shape(28, 28, 1, false))
            }
            DatasetSpec::Cifar10(_) => Some(shape(32, 32, 3, true)),
            DatasetSpec::Idx(_)
            | DatasetSpec::Csv(_)
            | DatasetSpec::Add
            | DatasetSpec::AddReference
            | DatasetSpec::Teacher => None,
        }
    }
}

impl fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetSpec::Digits => f.write_str("digits"),
            DatasetSpec::FashionMnist => f.write_str("fashion-mnist"),
            DatasetSpec::Mnist => f.write_str("mnist"),
            DatasetSpec::Kmnist => f.write_str("kmnist"),
            DatasetSpec::Idx(p) => write!(f, "idx:{}", p.display()),
            DatasetSpec::Cifar10(None) => f.write_str("cifar10"),
            DatasetSpec::Cifar10(Some(p)) => write!(f, "cifar10:{}", p.display()),
            DatasetSpec::Csv(p) => write!(f, "csv:{}", p.display()),
            DatasetSpec::Add => f.write_str("add"),
            DatasetSpec::AddReference => f.write_str("add-reference"),
            DatasetSpec::Teacher => f.write_str("teacher"),
        }
    }
}

/// Options of [`load`] and [`info`]. `Default` gives the official splits, no preprocessing
/// beyond scaling, seed 0.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Seed for every random choice (CSV split, training subset, synthetic data).
    pub seed: u64,
    /// Keep only this many training examples (stratified by class; seeded).
    pub train_size: Option<usize>,
    /// Hold out the first this-many training examples as a validation split
    /// ([`REFERENCE_VALIDATION`] in the reference experiments).
    pub validation: Option<usize>,
    /// Standardise features with statistics of the training split only.
    pub standardize: bool,
    /// The test fraction of the stratified CSV split (default 0.2).
    pub test_fraction: f64,
    /// The class count for `idx:DIR` and `csv:FILE` (labels must be below it); `None` infers
    /// `max label + 1`. The MNIST family, CIFAR-10 and digits always have 10.
    pub classes: Option<usize>,
    /// Whether a CSV file has a header line; `None` detects it.
    pub csv_header: Option<bool>,
    /// The user's data folder; `None` uses [`data_dir`]'s default.
    pub data_dir: Option<PathBuf>,
    /// Where system packages install datasets; `None` uses [`SYSTEM_DATA_DIR`].
    pub system_dir: Option<PathBuf>,
    /// Add-task parameters.
    pub add: AddParams,
    /// Teacher–student parameters.
    pub teacher: TeacherParams,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            seed: 0,
            train_size: None,
            validation: None,
            standardize: false,
            test_fraction: 0.2,
            classes: None,
            csv_header: None,
            data_dir: None,
            system_dir: None,
            add: AddParams::default(),
            teacher: TeacherParams::default(),
        }
    }
}

/// The user's data folder: `opts.data_dir`, else `$WIDEALIGN_DATA`, else
/// `$HOME/.local/share/widealign` (`None` only when none of these is set).
pub fn data_dir(opts: &LoadOptions) -> Option<PathBuf> {
    if let Some(d) = &opts.data_dir {
        return Some(d.clone());
    }
    if let Some(d) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/widealign"))
}

fn system_dir(opts: &LoadOptions) -> PathBuf {
    opts.system_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_DATA_DIR))
}

/// The file for an IDX stem in `dir`: `stem`, `stem.gz`, or the `stem` with the last `-`
/// replaced by `.` (as some mirrors name them), with or without `.gz`.
pub fn find_idx_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    let dotted = match stem.rfind('-') {
        Some(i) => format!("{}.{}", &stem[..i], &stem[i + 1..]),
        None => stem.to_string(),
    };
    [stem.to_string(), dotted]
        .iter()
        .flat_map(|s| [dir.join(s), dir.join(format!("{s}.gz"))])
        .find(|p| p.is_file())
}

/// Whether `dir` holds the four standard IDX files.
pub fn is_idx_dir(dir: &Path) -> bool {
    IDX_FILES.iter().all(|s| find_idx_file(dir, s).is_some())
}

/// The folders searched for a named dataset, in order (empty for the others).
pub fn candidates(spec: &DatasetSpec, opts: &LoadOptions) -> Vec<PathBuf> {
    let user = |sub: &str| data_dir(opts).map(|d| d.join(sub));
    match spec {
        DatasetSpec::FashionMnist => std::iter::once(Some(system_dir(opts).join("fashion-mnist")))
            .chain([user("fashion-mnist")])
            .flatten()
            .collect(),
        DatasetSpec::Mnist => user("mnist").into_iter().collect(),
        DatasetSpec::Kmnist => user("kmnist").into_iter().collect(),
        DatasetSpec::Cifar10(None) => user("cifar10").into_iter().collect(),
        DatasetSpec::Idx(p) => vec![p.clone()],
        DatasetSpec::Cifar10(Some(p)) => vec![p.clone()],
        DatasetSpec::Csv(p) => vec![p.clone()],
        _ => Vec::new(),
    }
}

fn how_to_get(spec: &DatasetSpec) -> &'static str {
    match spec {
        DatasetSpec::FashionMnist => {
            "install the Debian package (apt-get install dataset-fashion-mnist), run \
             `widealign data fetch fashion-mnist` (built with --features download), or put the \
             four IDX files in $WIDEALIGN_DATA/fashion-mnist"
        }
        DatasetSpec::Mnist => {
            "run `widealign data fetch mnist` (built with --features download) or put the four \
             IDX files in $WIDEALIGN_DATA/mnist"
        }
        DatasetSpec::Kmnist => {
            "run `widealign data fetch kmnist` (built with --features download) or put the four \
             IDX files in $WIDEALIGN_DATA/kmnist"
        }
        DatasetSpec::Cifar10(None) => {
            "unpack the CIFAR-10 binary version into $WIDEALIGN_DATA/cifar10, or name a folder \
             with cifar10:DIR"
        }
        DatasetSpec::Idx(_) => {
            "the folder must hold train-images-idx3-ubyte, train-labels-idx1-ubyte, \
             t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz)"
        }
        DatasetSpec::Cifar10(Some(_)) => {
            "the folder (or its cifar-10-batches-bin subfolder) must hold data_batch_1.bin .. \
             data_batch_5.bin and test_batch.bin"
        }
        _ => "",
    }
}

/// The folder or file a dataset would be loaded from, if it is present.
pub fn resolve(spec: &DatasetSpec, opts: &LoadOptions) -> Option<PathBuf> {
    match spec {
        DatasetSpec::FashionMnist
        | DatasetSpec::Mnist
        | DatasetSpec::Kmnist
        | DatasetSpec::Idx(_) => candidates(spec, opts).into_iter().find(|d| is_idx_dir(d)),
        DatasetSpec::Cifar10(_) => candidates(spec, opts)
            .iter()
            .find_map(|d| cifar::batches_dir(d)),
        DatasetSpec::Csv(p) => p.is_file().then(|| p.clone()),
        _ => None,
    }
}

fn not_found(spec: &DatasetSpec, opts: &LoadOptions) -> DataError {
    let looked = candidates(spec, opts);
    let mut message = if looked.is_empty() {
        format!("no data folder ({DATA_ENV} and HOME are unset)")
    } else {
        let mut parts = Vec::new();
        for d in &looked {
            let why = if !d.exists() {
                "does not exist".to_string()
            } else if matches!(spec, DatasetSpec::Cifar10(_)) {
                "has no complete set of CIFAR-10 batches".to_string()
            } else {
                let missing: Vec<&str> = IDX_FILES
                    .iter()
                    .filter(|s| find_idx_file(d, s).is_none())
                    .copied()
                    .collect();
                format!("lacks {}", missing.join(", "))
            };
            parts.push(format!("{} {why}", d.display()));
        }
        format!("looked in {}", parts.join("; "))
    };
    let hint = how_to_get(spec);
    if !hint.is_empty() {
        message.push_str("; ");
        message.push_str(hint);
    }
    DataError::NotFound {
        name: spec.to_string(),
        message,
    }
}

/// Train and test data before the validation hold-out, subset and standardisation.
struct Raw {
    source: String,
    task: Task,
    train: Split,
    test: Split,
}

fn load_idx_dir(dir: &Path, classes: Option<usize>) -> Result<(Tabular, Tabular)> {
    let file = |stem: &str| {
        find_idx_file(dir, stem).ok_or_else(|| DataError::NotFound {
            name: format!("idx:{}", dir.display()),
            message: format!("{} has no {stem}[.gz]", dir.display()),
        })
    };
    let paths: Vec<PathBuf> = IDX_FILES.iter().map(|s| file(s)).collect::<Result<_>>()?;
    let name = |p: &PathBuf| p.display().to_string();
    let tr_img = idx::read_images(&paths[0])?;
    let tr_lab = idx::read_labels(&paths[1])?;
    let te_img = idx::read_images(&paths[2])?;
    let te_lab = idx::read_labels(&paths[3])?;
    for (img, lab, pi, pl) in [
        (&tr_img, &tr_lab, &paths[0], &paths[1]),
        (&te_img, &te_lab, &paths[2], &paths[3]),
    ] {
        if img.x.nrows() != lab.len() {
            return Err(DataError::CountMismatch {
                images: name(pi),
                labels: name(pl),
                n_images: img.x.nrows(),
                n_labels: lab.len(),
            });
        }
    }
    if te_img.sample_dims != tr_img.sample_dims {
        return Err(DataError::Format {
            file: name(&paths[2]),
            pos: Position::Byte(4),
            message: format!(
                "test images have dimensions {:?} but the training images {} have {:?}",
                te_img.sample_dims,
                name(&paths[0]),
                tr_img.sample_dims
            ),
        });
    }
    let classes = match classes {
        Some(c) => c,
        None => tr_lab.iter().chain(&te_lab).max().map_or(1, |&m| m + 1),
    };
    idx::check_labels(&tr_lab, classes, &name(&paths[1]))?;
    idx::check_labels(&te_lab, classes, &name(&paths[3]))?;
    Ok((
        Tabular::classification(tr_img.x, tr_lab, classes)?,
        Tabular::classification(te_img.x, te_lab, classes)?,
    ))
}

fn load_raw(spec: &DatasetSpec, opts: &LoadOptions) -> Result<Raw> {
    let seeds = SeedStream::new(opts.seed).child("data");
    let classification = |source: String, (train, test): (Tabular, Tabular)| -> Raw {
        Raw {
            source,
            task: Task::Classification {
                classes: train.classes.unwrap_or(0),
            },
            train: Split::Tabular(train),
            test: Split::Tabular(test),
        }
    };
    match spec {
        DatasetSpec::Digits => Ok(classification("embedded".into(), digits::load()?)),
        DatasetSpec::FashionMnist | DatasetSpec::Mnist | DatasetSpec::Kmnist => {
            let dir = resolve(spec, opts).ok_or_else(|| not_found(spec, opts))?;
            let splits = load_idx_dir(&dir, Some(10))?;
            Ok(classification(dir.display().to_string(), splits))
        }
        DatasetSpec::Idx(d) => {
            if !d.is_dir() {
                return Err(not_found(spec, opts));
            }
            let splits = load_idx_dir(d, opts.classes)?;
            Ok(classification(d.display().to_string(), splits))
        }
        DatasetSpec::Cifar10(_) => {
            let dir = resolve(spec, opts).ok_or_else(|| not_found(spec, opts))?;
            let train: Vec<PathBuf> = cifar::TRAIN_FILES.iter().map(|f| dir.join(f)).collect();
            let (xtr, ltr) = cifar::read_files(&train)?;
            let (xte, lte) = cifar::read_files(&[dir.join(cifar::TEST_FILE)])?;
            let splits = (
                Tabular::classification(xtr, ltr, cifar::CLASSES)?,
                Tabular::classification(xte, lte, cifar::CLASSES)?,
            );
            Ok(classification(dir.display().to_string(), splits))
        }
        DatasetSpec::Csv(path) => {
            let t = csv::read(
                path,
                &CsvOptions {
                    header: opts.csv_header,
                    classes: opts.classes,
                },
            )?;
            let (tr, te) = stratified_split(
                &t.labels,
                t.classes,
                opts.test_fraction,
                &mut seeds.rng("csv-split"),
            )?;
            let all = Tabular::classification(t.x, t.labels, t.classes)?;
            Ok(classification(
                path.display().to_string(),
                (all.select(&tr), all.select(&te)),
            ))
        }
        DatasetSpec::Add | DatasetSpec::AddReference => {
            let params = AddParams {
                wrap: opts.add.wrap || spec == &DatasetSpec::AddReference,
                ..opts.add.clone()
            };
            let (train, test) = add_task(&params, opts.seed)?;
            Ok(Raw {
                source: "generated".into(),
                task: Task::SequenceRegression { outputs: 1 },
                train: Split::Sequences(train),
                test: Split::Sequences(test),
            })
        }
        DatasetSpec::Teacher => {
            let (train, test) = teacher_task(&opts.teacher, opts.seed)?;
            Ok(Raw {
                source: "generated".into(),
                task: Task::Regression {
                    outputs: opts.teacher.outputs,
                },
                train: Split::Tabular(train),
                test: Split::Tabular(test),
            })
        }
    }
}

fn prepare(name: String, raw: Raw, opts: &LoadOptions) -> Result<Dataset> {
    let Raw {
        source,
        task,
        mut train,
        mut test,
    } = raw;
    if train.is_empty() {
        return Err(DataError::option(
            "dataset",
            format!("{name}: the training split has no examples"),
        ));
    }
    if test.is_empty() {
        return Err(DataError::option(
            "dataset",
            format!("{name}: the test split has no examples"),
        ));
    }
    let mut validation = None;
    if let Some(v) = opts.validation {
        if v == 0 || v >= train.len() {
            return Err(DataError::option(
                "validation",
                format!(
                    "{v}: must be at least 1 and below the {} training examples",
                    train.len()
                ),
            ));
        }
        validation = Some(train.split_off_front(v));
    }
    if let Some(k) = opts.train_size {
        let labels = match &train {
            Split::Tabular(Tabular {
                labels: Some(l),
                classes: Some(c),
                ..
            }) => Some((l.as_slice(), *c)),
            _ => None,
        };
        let idx = training_subset(train.len(), labels, k, opts.seed)?;
        if idx.len() < train.len() {
            train = train.select(&idx);
        }
    }
    if opts.standardize {
        match &mut train {
            Split::Tabular(t) => {
                let s = Standardizer::fit(&t.x);
                s.apply(&mut t.x);
                for other in [Some(&mut test), validation.as_mut()].into_iter().flatten() {
                    if let Split::Tabular(o) = other {
                        s.apply(&mut o.x);
                    }
                }
            }
            Split::Sequences(_) => {
                return Err(DataError::option(
                    "standardize",
                    format!(
                    "{name} is a sequence task; standardisation applies to feature vectors only"
                ),
                ))
            }
        }
    }
    Ok(Dataset {
        name,
        source,
        task,
        train,
        validation,
        test,
    })
}

/// Loads a dataset by name (see the module docs for names and options).
pub fn load(name: &str, opts: &LoadOptions) -> Result<Dataset> {
    let spec: DatasetSpec = name.parse()?;
    let raw = load_raw(&spec, opts)?;
    prepare(spec.to_string(), raw, opts)
}

/// One row of `widealign data list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatasetEntry {
    /// The name (or name pattern, e.g. `idx:DIR`) to pass to [`load`].
    pub name: String,
    /// One line on what it is.
    pub description: String,
    /// `embedded`, `installed` (looked for on disk), `path` (a user-given path) or `generated`.
    pub kind: String,
    /// Where it is looked for, in order.
    pub locations: Vec<String>,
    /// Whether it is available (`None` for patterns that take a user path).
    pub found: Option<bool>,
    /// Where it was found.
    pub path: Option<String>,
}

/// Every dataset name with where it is looked for and whether it was found.
pub fn list(opts: &LoadOptions) -> Vec<DatasetEntry> {
    let entry = |spec: DatasetSpec, description: &str| {
        let locations: Vec<String> = candidates(&spec, opts)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let found = resolve(&spec, opts);
        DatasetEntry {
            name: spec.to_string(),
            description: description.to_string(),
            kind: "installed".into(),
            locations,
            found: Some(found.is_some()),
            path: found.map(|p| p.display().to_string()),
        }
    };
    let fixed = |name: &str, description: &str, kind: &str| DatasetEntry {
        name: name.to_string(),
        description: description.to_string(),
        kind: kind.to_string(),
        locations: Vec::new(),
        found: if kind == "path" { None } else { Some(true) },
        path: (kind == "embedded").then(|| "embedded".to_string()),
    };
    vec![
        fixed(
            "digits",
            "8x8 handwritten digits, 1,442 train / 355 test, 10 classes (default; embedded)",
            "embedded",
        ),
        entry(
            DatasetSpec::FashionMnist,
            "Fashion-MNIST, 28x28, 60,000 train / 10,000 test, 10 classes",
        ),
        entry(DatasetSpec::Mnist, "MNIST, 28x28, 60,000 train / 10,000 test, 10 classes"),
        entry(
            DatasetSpec::Kmnist,
            "Kuzushiji-MNIST, 28x28, 60,000 train / 10,000 test, 10 classes",
        ),
        entry(
            DatasetSpec::Cifar10(None),
            "CIFAR-10 binary batches, 3x32x32, 50,000 train / 10,000 test, 10 classes",
        ),
        fixed("idx:DIR", "any folder of the four standard IDX files (raw or .gz)", "path"),
        fixed("cifar10:DIR", "a folder of CIFAR-10 binary batches", "path"),
        fixed(
            "csv:FILE",
            "numeric features then an integer label per row; seeded stratified split",
            "path",
        ),
        fixed(
            "add",
            "Add task: y_t = 0.5 + 0.5 x_{t-2} - 0.25 x_{t-5}, 300 train / 100 test sequences of 100 steps",
            "generated",
        ),
        fixed(
            "add-reference",
            "the Add task with train_add.py's wrap-around targets (irreducible test loss 0.203125)",
            "generated",
        ),
        fixed(
            "teacher",
            "teacher-student regression with a random wide MLP teacher",
            "generated",
        ),
    ]
}

/// What `widealign data info NAME --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetInfo {
    /// The dataset name.
    pub name: String,
    /// Where it is loaded from (`embedded`, `generated`, or a path).
    pub path: String,
    /// Training examples (after the validation hold-out and subset, if requested).
    pub train: usize,
    /// Validation examples (0 without a hold-out).
    pub validation: usize,
    /// Test examples.
    pub test: usize,
    /// Input dimension (per step for sequences).
    pub input_dim: usize,
    /// Target dimension.
    pub output_dim: usize,
    /// Number of classes (classification only).
    pub classes: Option<usize>,
    /// Time steps per sequence (sequence tasks only).
    pub steps: Option<usize>,
    /// The task.
    pub task: Task,
    /// Credit for the data, where it ships with widealign.
    pub credit: Option<String>,
}

impl Dataset {
    /// The summary `widealign data info` prints.
    pub fn info(&self) -> DatasetInfo {
        DatasetInfo {
            name: self.name.clone(),
            path: self.source.clone(),
            train: self.train.len(),
            validation: self.validation.as_ref().map_or(0, |v| v.len()),
            test: self.test.len(),
            input_dim: self.input_dim(),
            output_dim: self.output_dim(),
            classes: self.classes(),
            steps: self.train.as_sequences().map(|s| s.steps()),
            task: self.task,
            credit: (self.name == "digits").then(|| digits::CREDIT.to_string()),
        }
    }
}

/// The summary of a dataset. For IDX folders without a hold-out or subset only the headers and
/// labels are read, not the images.
pub fn info(name: &str, opts: &LoadOptions) -> Result<DatasetInfo> {
    let spec: DatasetSpec = name.parse()?;
    let fast = opts.validation.is_none() && opts.train_size.is_none();
    let idx_like = matches!(
        spec,
        DatasetSpec::FashionMnist | DatasetSpec::Mnist | DatasetSpec::Kmnist | DatasetSpec::Idx(_)
    );
    if fast && idx_like {
        let dir = resolve(&spec, opts).ok_or_else(|| not_found(&spec, opts))?;
        let p: Vec<PathBuf> = IDX_FILES
            .iter()
            .filter_map(|s| find_idx_file(&dir, s))
            .collect();
        let tr = idx::read_header_of(&p[0], true)?;
        let te = idx::read_header_of(&p[2], true)?;
        let ltr = idx::read_labels(&p[1])?;
        let lte = idx::read_labels(&p[3])?;
        for (h, l, pi, pl) in [(&tr, &ltr, &p[0], &p[1]), (&te, &lte, &p[2], &p[3])] {
            if h.len() != l.len() {
                return Err(DataError::CountMismatch {
                    images: pi.display().to_string(),
                    labels: pl.display().to_string(),
                    n_images: h.len(),
                    n_labels: l.len(),
                });
            }
        }
        let classes = match (&spec, opts.classes) {
            (DatasetSpec::Idx(_), Some(c)) => c,
            (DatasetSpec::Idx(_), None) => ltr.iter().chain(&lte).max().map_or(1, |&m| m + 1),
            _ => 10,
        };
        idx::check_labels(&ltr, classes, &p[1].display().to_string())?;
        idx::check_labels(&lte, classes, &p[3].display().to_string())?;
        return Ok(DatasetInfo {
            name: spec.to_string(),
            path: dir.display().to_string(),
            train: tr.len(),
            validation: 0,
            test: te.len(),
            input_dim: tr.sample_len(),
            output_dim: classes,
            classes: Some(classes),
            steps: None,
            task: Task::Classification { classes },
            credit: None,
        });
    }
    Ok(load(name, opts)?.info())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in [
            "digits",
            "fashion-mnist",
            "mnist",
            "kmnist",
            "idx:/a/b",
            "cifar10",
            "cifar10:/c",
            "csv:x.csv",
            "add",
            "add-reference",
            "teacher",
        ] {
            assert_eq!(n.parse::<DatasetSpec>().unwrap().to_string(), n);
        }
        for bad in ["", "MNIST", "idx:", "csv:", "fashion"] {
            assert!(matches!(
                bad.parse::<DatasetSpec>(),
                Err(DataError::UnknownDataset { .. })
            ));
        }
    }

    #[test]
    fn missing_named_dataset_says_where_and_how() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LoadOptions {
            data_dir: Some(dir.path().join("data")),
            system_dir: Some(dir.path().join("sys")),
            ..LoadOptions::default()
        };
        let e = load("fashion-mnist", &opts).unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with("dataset fashion-mnist not found: looked in "),
            "{m}"
        );
        assert!(m.contains("sys/fashion-mnist does not exist"), "{m}");
        assert!(m.contains("apt-get install dataset-fashion-mnist"), "{m}");
        std::fs::create_dir_all(dir.path().join("data/mnist")).unwrap();
        std::fs::write(
            dir.path().join("data/mnist/train-images-idx3-ubyte.gz"),
            b"",
        )
        .unwrap();
        let m = load("mnist", &opts).unwrap_err().to_string();
        assert!(
            m.contains(
                "lacks train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
            ),
            "{m}"
        );
        let entries = list(&opts);
        let fm = entries.iter().find(|e| e.name == "fashion-mnist").unwrap();
        assert_eq!(fm.found, Some(false));
        assert_eq!(fm.locations.len(), 2);
    }

    #[test]
    fn validation_and_subset_and_standardize_options() {
        let opts = LoadOptions {
            validation: Some(1442),
            ..LoadOptions::default()
        };
        assert!(matches!(
            load("digits", &opts),
            Err(DataError::InvalidOption { .. })
        ));
        let full = load("digits", &LoadOptions::default()).unwrap();
        let opts = LoadOptions {
            validation: Some(100),
            standardize: true,
            ..LoadOptions::default()
        };
        let d = load("digits", &opts).unwrap();
        let (tr, va) = (
            d.train.as_tabular().unwrap(),
            d.validation.as_ref().unwrap().as_tabular().unwrap(),
        );
        let ft = full.train.as_tabular().unwrap();
        // the hold-out is the first 100 training examples, the rest keep their order
        assert_eq!(
            va.labels.as_deref(),
            Some(&ft.labels.as_ref().unwrap()[..100])
        );
        assert_eq!(
            tr.labels.as_deref(),
            Some(&ft.labels.as_ref().unwrap()[100..])
        );
        // standardised on the training split: zero mean there, not on validation
        let m: f64 = tr.x.column(20).iter().map(|&v| v as f64).sum::<f64>() / tr.len() as f64;
        assert!(m.abs() < 1e-5, "{m}");
        let s = Standardizer::fit(&ft.x.rows(100, ft.len() - 100).into_owned());
        let mut expect = ft.x.rows(0, 100).into_owned();
        s.apply(&mut expect);
        assert_eq!(&va.x, &expect);
        // add task rejects standardisation, accepts a subset
        let opts = LoadOptions {
            standardize: true,
            ..LoadOptions::default()
        };
        assert!(load("add", &opts).is_err());
        let opts = LoadOptions {
            train_size: Some(50),
            validation: Some(100),
            ..LoadOptions::default()
        };
        let a = load("add", &opts).unwrap();
        assert_eq!(
            (a.train.len(), a.validation.unwrap().len(), a.test.len()),
            (50, 100, 100)
        );
        let t = load("teacher", &opts).unwrap();
        assert_eq!(t.info().train, 50);
        assert_eq!(t.task, Task::Regression { outputs: 1 });
    }
}
