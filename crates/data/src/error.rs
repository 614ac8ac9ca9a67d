//! The error type of widealign-data.
//!
//! Every error that comes from a file names the file and the position of the fault: a byte
//! offset for the binary formats (IDX, CIFAR-10; for a gzip file, the offset in the decompressed
//! stream) or a line (and field) for CSV. The CLI prints the `Display` form as its one-line
//! message and exits with status 2 when [`DataError::is_bad_input`] is true.
//!
//! Errors speak the library's language: a bad option is named by its [`crate::LoadOptions`]
//! field (`train_size`, `validation`, `classes`, or a path into a nested field such as
//! `add.steps` or `teacher.width`), never by a command-line flag. A program that sets these
//! fields from flags shows its own spelling with [`DataError::message_with`].

use std::fmt;

/// Where in a file a fault was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// A byte offset from the start of the (decompressed) content.
    Byte(u64),
    /// A 1-based line number (text formats).
    Line(usize),
    /// A 1-based line number and a 1-based field (column) number.
    Field {
        /// The line, from 1.
        line: usize,
        /// The field within the line, from 1.
        field: usize,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Byte(b) => write!(f, "byte {b}"),
            Position::Line(l) => write!(f, "line {l}"),
            Position::Field { line, field } => write!(f, "line {line}, field {field}"),
        }
    }
}

/// Everything that can go wrong when finding, reading, generating or preparing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused to open or read a file.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The content ends before the header says it should.
    #[error("{file}: {pos}: file is truncated: {what} needs {needed} more bytes")]
    Truncated {
        /// The file.
        file: String,
        /// Where the content ends.
        pos: Position,
        /// What was being read (e.g. `"image pixels"`).
        what: &'static str,
        /// How many more bytes the header promised.
        needed: u64,
    },
    /// The content is not in the expected format (wrong magic number, unsupported element type,
    /// impossible dimensions, a record of the wrong size).
    #[error("{file}: {pos}: {message}")]
    Format {
        /// The file.
        file: String,
        /// Where the fault is.
        pos: Position,
        /// What is wrong.
        message: String,
    },
    /// A header claims more data than the file can hold or than the sane limits allow; nothing
    /// was allocated.
    #[error("{file}: {pos}: header claims {claimed} bytes of data, {message}")]
    TooLarge {
        /// The file.
        file: String,
        /// Where the offending header field is.
        pos: Position,
        /// The payload size the header implies.
        claimed: u128,
        /// Why the claim is rejected.
        message: String,
    },
    /// A gzip stream is corrupt or ends early.
    #[error("{file}: {pos} of the decompressed stream: broken gzip stream: {message}")]
    Gzip {
        /// The file.
        file: String,
        /// How far decompression got.
        pos: Position,
        /// The decoder's message.
        message: String,
    },
    /// Bytes follow the end of the data the header describes.
    #[error("{file}: {pos}: unexpected data after the end of the content the header describes")]
    TrailingData {
        /// The file.
        file: String,
        /// Where the extra bytes start.
        pos: Position,
    },
    /// An image file and its label file disagree on the number of examples.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        /// The image file.
        images: String,
        /// The label file.
        labels: String,
        /// Images in the image file.
        n_images: usize,
        /// Labels in the label file.
        n_labels: usize,
    },
    /// A class label is not below the number of classes.
    #[error("{file}: {pos}: label {label} is not below the class count {classes}")]
    LabelOutOfRange {
        /// The file.
        file: String,
        /// Where the label is.
        pos: Position,
        /// The label.
        label: u64,
        /// The number of classes.
        classes: usize,
    },
    /// A CSV file is empty, ragged or has a field that is not a number.
    #[error("{file}: {pos}: {message}")]
    Csv {
        /// The file.
        file: String,
        /// The line (and field) at fault.
        pos: Position,
        /// What is wrong.
        message: String,
    },
    /// A named dataset is not installed where it is looked for.
    #[error("dataset {name} not found: {message}")]
    NotFound {
        /// The dataset name.
        name: String,
        /// Where it was looked for and how to get it.
        message: String,
    },
    /// A dataset name that this crate does not know.
    #[error("unknown dataset {name:?}: expected one of digits, fashion-mnist, mnist, kmnist, idx:DIR, cifar10[:DIR], csv:FILE, add, teacher")]
    UnknownDataset {
        /// The name given.
        name: String,
    },
    /// An option value that cannot be honoured (e.g. a training subset larger than the
    /// training set).
    #[error("invalid option {field}: {message}")]
    InvalidOption {
        /// The option as the library names it: a [`crate::LoadOptions`] field such as
        /// `train_size`, a nested field such as `add.steps` or `teacher.width`, `dataset` for
        /// the dataset name, or a data field such as `labels` or `targets`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Downloading a file failed (feature `download`).
    #[error("download {url}: {message}")]
    Download {
        /// The URL or file being fetched.
        url: String,
        /// What went wrong.
        message: String,
    },
}

impl DataError {
    /// True when the error is the user's to fix (a bad file, a missing dataset, a bad option):
    /// the CLI exits with status 2. False for network failures and operating-system errors
    /// other than a missing file or denied permission, which exit with status 1.
    pub fn is_bad_input(&self) -> bool {
        match self {
            DataError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::InvalidData
            ),
            DataError::Download { .. } => false,
            _ => true,
        }
    }

    pub(crate) fn io(file: impl Into<String>, source: std::io::Error) -> Self {
        DataError::Io {
            file: file.into(),
            source,
        }
    }

    /// The message with every option name spelled by `spell`: the `Display` form spells them
    /// as the library names them (`train_size`, `teacher.width`, …); a command-line program
    /// passes its flag spelling (`train_size` → `--train-size`) so that its message names the
    /// flag. Only [`DataError::InvalidOption`] names an option; every other error is its
    /// `Display` form.
    ///
    /// ```
    /// use widealign_data::DataError;
    /// let e = DataError::InvalidOption { field: "train_size".into(), message: "0".into() };
    /// assert_eq!(e.to_string(), "invalid option train_size: 0");
    /// let flag = |f: &str| format!("--{}", f.replace('_', "-"));
    /// assert_eq!(e.message_with(flag), "invalid option --train-size: 0");
    /// ```
    pub fn message_with(&self, spell: impl Fn(&str) -> String) -> String {
        match self {
            DataError::InvalidOption { field, message } => {
                format!("invalid option {}: {message}", spell(field))
            }
            other => other.to_string(),
        }
    }

    /// An [`DataError::InvalidOption`] naming the library field `field`.
    pub(crate) fn option(field: &str, message: impl Into<String>) -> Self {
        DataError::InvalidOption {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// `Result<T, DataError>`.
pub type Result<T> = std::result::Result<T, DataError>;
