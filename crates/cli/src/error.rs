//! The CLI's error type: every crate's error enum converts into [`CliError`], whose kind decides
//! the exit status (2 for bad usage or bad input, 1 for other failures, 130 for Ctrl-C).

use std::path::Path;

/// Everything that can end a command unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag value is unusable (exit 2). The message names the flag.
    #[error("{0}")]
    Usage(String),
    /// An input file or dataset is missing or malformed (exit 2). The message names the file
    /// and, where known, the line or byte offset.
    #[error("{0}")]
    Input(String),
    /// Anything else: I/O failure on output, numerical failure, internal error (exit 1).
    #[error("{0}")]
    Failure(String),
    /// The user pressed Ctrl-C; output files hold only whole lines (exit 130).
    #[error("interrupted by Ctrl-C; results files hold only complete lines (a sweep or reproduce continues with --resume)")]
    Interrupted,
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Input(_) => 2,
            CliError::Failure(_) => 1,
            CliError::Interrupted => 130,
        }
    }

    /// The message on one line (newlines of wrapped library messages folded into `; `).
    pub fn one_line(&self) -> String {
        let s = self.to_string();
        let parts: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        parts.join("; ")
    }

    /// A bad-usage error for `flag`.
    pub fn flag(flag: &str, msg: impl std::fmt::Display) -> Self {
        CliError::Usage(format!("{flag}: {msg}"))
    }

    /// A bad-input error about `path`.
    pub fn input(path: &Path, msg: impl std::fmt::Display) -> Self {
        CliError::Input(format!("{}: {msg}", path.display()))
    }

    /// An I/O error while reading the input file `path`: a missing or unreadable input is the
    /// user's to fix (exit 2); anything else is a failure (exit 1).
    pub fn read(path: &Path, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::NotFound | K::PermissionDenied | K::InvalidData | K::IsADirectory => {
                CliError::input(path, err)
            }
            _ => CliError::Failure(format!("{}: {err}", path.display())),
        }
    }

    /// An I/O error while writing the output file `path` (exit 1, or 2 when the folder is
    /// missing or not writable, which the user fixes by choosing another path).
    pub fn write(path: &Path, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::NotFound | K::PermissionDenied | K::IsADirectory | K::NotADirectory => {
                CliError::Input(format!("cannot write {}: {err}", path.display()))
            }
            _ => CliError::Failure(format!("writing {}: {err}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Input("x".into()).exit_code(), 2);
        assert_eq!(CliError::Failure("x".into()).exit_code(), 1);
        assert_eq!(CliError::Interrupted.exit_code(), 130);
    }

    #[test]
    fn one_line_folds_newlines() {
        let e = CliError::Failure("a\n  b\n\nc".into());
        assert_eq!(e.one_line(), "a; b; c");
    }

    #[test]
    fn missing_input_is_bad_input() {
        let e = CliError::read(
            Path::new("nope.csv"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("nope.csv: "));
    }
}
