//! The CLI's error type: every crate's error enum converts into [`CliError`], whose kind decides
//! the exit status (2 for bad usage or bad input, 1 for other failures, 130 for Ctrl-C).

use std::path::Path;

use widealign_experiments::ExperimentError;
use widealign_rules::RulesError;

use crate::config::key_to_flag;

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

impl From<RulesError> for CliError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Interrupted { .. } => CliError::Interrupted,
            RulesError::Data(d) => d.into(),
            RulesError::Model(m) => m.into(),
            RulesError::UnknownName { .. }
            | RulesError::InvalidConfig { .. }
            | RulesError::Unsupported { .. }
            | RulesError::DatasetMismatch { .. } => CliError::Input(e.to_string()),
            _ => CliError::Failure(e.to_string()),
        }
    }
}

/// A setting named by the experiments library becomes its flag (`batch_size` → `--batch-size`).
impl From<ExperimentError> for CliError {
    fn from(e: ExperimentError) -> Self {
        match e {
            ExperimentError::InvalidSetting { setting, reason } if setting.is_empty() => {
                CliError::Usage(reason)
            }
            ExperimentError::InvalidSetting { setting, reason } => {
                CliError::flag(&key_to_flag(&setting), reason)
            }
            ExperimentError::BadInput(m) => CliError::Input(m),
            ExperimentError::Read { path, source } => CliError::read(&path, source),
            ExperimentError::Write { path, source } => CliError::write(&path, source),
            ExperimentError::ResultsExist { path } => CliError::flag(
                "--out",
                format!(
                    "{} already holds results; pass --resume to continue it, or choose another output",
                    path.display()
                ),
            ),
            ExperimentError::Run { index, source } => match CliError::from(*source) {
                CliError::Usage(m) => CliError::Usage(format!("run #{index}: {m}")),
                CliError::Input(m) => CliError::Input(format!("run #{index}: {m}")),
                CliError::Failure(m) => CliError::Failure(format!("run #{index}: {m}")),
                CliError::Interrupted => CliError::Interrupted,
            },
            ExperimentError::Interrupted => CliError::Interrupted,
            ExperimentError::Rules(r) => r.into(),
            ExperimentError::Data(d) => d.into(),
            ExperimentError::Model(m) => m.into(),
            ExperimentError::Ntk(n) => n.into(),
            other @ ExperimentError::Internal(_) => CliError::Failure(other.to_string()),
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

    #[test]
    fn experiment_errors_keep_their_kind() {
        let e: CliError = ExperimentError::setting("batch_size", "must be at least 1").into();
        assert_eq!(e.to_string(), "--batch-size: must be at least 1");
        assert_eq!(e.exit_code(), 2);
        let e: CliError =
            ExperimentError::setting("shard auto", "SLURM_ARRAY_TASK_ID is not set").into();
        assert!(e.to_string().starts_with("--shard auto: "));
        let e: CliError = ExperimentError::Run {
            index: 4,
            source: Box::new(ExperimentError::BadInput("x.csv: bad".into())),
        }
        .into();
        assert_eq!(
            (e.exit_code(), e.to_string().as_str()),
            (2, "run #4: x.csv: bad")
        );
        let e: CliError = ExperimentError::Run {
            index: 4,
            source: Box::new(ExperimentError::Interrupted),
        }
        .into();
        assert_eq!(e.exit_code(), 130);
        let e: CliError = ExperimentError::ResultsExist {
            path: "r.jsonl".into(),
        }
        .into();
        assert!(e
            .to_string()
            .starts_with("--out: r.jsonl already holds results; pass --resume"));
        let e: CliError = ExperimentError::Internal("oops".into()).into();
        assert_eq!(e.exit_code(), 1);
    }
}
