//! # widealign-data: every experiment's inputs and targets
//!
//! One entry point, [`load`], turns a dataset name into train / (validation) / test splits:
//!
//! * real data from files a researcher already has — IDX (MNIST, Fashion-MNIST, KMNIST, any
//!   `idx:DIR`), CIFAR-10 binary batches (`cifar10:DIR`) and CSV tables (`csv:FILE`);
//! * the embedded default, `digits` (8 × 8 handwritten digits, compiled in, no download);
//! * generators — the Add task for recurrent networks and teacher–student regression.
//!
//! Conventions shared with the rest of widealign:
//!
//! * inputs are `f32` matrices with **one sample per row** (`N × d`); pixels are scaled to
//!   `[0, 1]` (`p / 255` for IDX and CIFAR, `p / 16` for digits);
//! * classification targets are one-hot minus 0.1 (`0.9` for the class, `−0.1` elsewhere);
//! * sequences are time-major: `T` matrices of `N × input_dim`;
//! * every random choice comes from a named [`SeedStream`](widealign_tensor::rng::SeedStream)
//!   under `data/…`, so a seed means the same split, subset and synthetic data everywhere.
//!
//! Bad files never panic: a truncated file, a wrong magic number, disagreeing image and label
//! counts, a label not below the class count, an absurd header, a broken gzip stream, an empty or
//! ragged CSV or a non-numeric field each give a [`DataError`] naming the file and the byte
//! offset or line. Headers are checked against the file size before anything is allocated.
//!
//! ```
//! use widealign_data::{load, preprocess, LoadOptions};
//! use widealign_tensor::rng::SeedStream;
//!
//! let data = load("digits", &LoadOptions::default()).unwrap();
//! let train = data.train.as_tabular().unwrap();
//! assert_eq!((train.len(), train.input_dim(), train.output_dim()), (1442, 64, 10));
//!
//! // one epoch of shuffled mini-batches of 100
//! let order = preprocess::epoch_order(train.len(), &SeedStream::new(0).child("train"), 0);
//! let mut n = 0;
//! for idx in preprocess::batches(&order, 100) {
//!     let b = train.batch(idx);
//!     assert_eq!(b.y.ncols(), 10);
//!     n += b.x.nrows();
//! }
//! assert_eq!(n, 1442);
//! ```
//!
//! Optional feature `download` adds the module `download` (`widealign data fetch`):
//! MNIST, Fashion-MNIST and KMNIST from their hosts, SHA-256 verified and resumable.

pub mod cifar;
pub mod csv;
pub mod dataset;
pub mod digits;
#[cfg(feature = "download")]
pub mod download;
mod error;
pub mod idx;
pub mod preprocess;
pub mod registry;
mod stream;
pub mod synthetic;

pub use dataset::{
    one_hot_targets, Batch, Dataset, SeqBatch, Sequences, Split, Tabular, Task, TARGET_OFF,
    TARGET_ON,
};
pub use error::{DataError, Position, Result};
pub use registry::{
    data_dir, info, list, load, DatasetEntry, DatasetInfo, DatasetSpec, ImageShape, LoadOptions,
    REFERENCE_VALIDATION,
};
pub use stream::MAX_PAYLOAD_BYTES;
pub use synthetic::{AddParams, InputDistribution, TeacherParams};
pub use widealign_tensor::Mat;
