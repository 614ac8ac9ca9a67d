//! The CLI's error type: every crate's error enum converts into [`CliError`], whose kind decides
//! the exit status (2 for bad usage or bad input, 1 for other failures, 130 for Ctrl-C).
//!
//! The library crates name a bad option by its field (`train_size`, `lr`, `w_std`); the
//! conversions here spell it as the flag that sets it ([`field_to_flag`]: `--train-size`,
//! `--lr`, `--w-std`), so that the one-line message names the flag the user typed.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use clap::CommandFactory;
use widealign_data::DataError;
use widealign_models::ModelError;
use widealign_ntk::NtkError;
use widealign_rules::RulesError;

use widealign_experiments::ExperimentError;

use crate::cli::Cli;

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

/// The spelling of the library field `field` in the CLI's messages: the long flag that sets it
/// when there is one, found by the CLI's naming rule (`--` and the field with `_` and `.` turned
/// into `-`): `train_size` → `--train-size`, `w_std` →
/// `--w-std`. A field that no flag of any subcommand sets (e.g. `validation`, `teacher.width`,
/// `quadrature order`) keeps the library's name, so a message never names a flag that does
/// not exist.
pub fn field_to_flag(field: &str) -> String {
    let flag = field.replace(['_', '.'], "-");
    if long_flags().contains(&flag) {
        format!("--{flag}")
    } else {
        field.to_string()
    }
}

/// Every long flag of every subcommand, without the leading `--`.
fn long_flags() -> &'static BTreeSet<String> {
    static FLAGS: OnceLock<BTreeSet<String>> = OnceLock::new();
    FLAGS.get_or_init(|| {
        fn collect(cmd: &clap::Command, out: &mut BTreeSet<String>) {
            out.extend(
                cmd.get_arguments()
                    .filter_map(|a| a.get_long())
                    .map(String::from),
            );
            for sub in cmd.get_subcommands() {
                collect(sub, out);
            }
        }
        let mut out = BTreeSet::new();
        collect(&Cli::command(), &mut out);
        out
    })
}

impl CliError {
    /// A data-layer error with its option names spelled by `spell` (the `From` conversion uses
    /// [`field_to_flag`]; a subcommand whose flags are named otherwise passes its own).
    pub fn from_data(e: DataError, spell: impl Fn(&str) -> String) -> Self {
        let msg = e.message_with(spell);
        if e.is_bad_input() {
            CliError::Input(msg)
        } else {
            CliError::Failure(msg)
        }
    }
}

impl From<DataError> for CliError {
    fn from(e: DataError) -> Self {
        CliError::from_data(e, field_to_flag)
    }
}

impl From<ModelError> for CliError {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::InvalidSpec { .. }
            | ModelError::ShapeMismatch { .. }
            | ModelError::Empty(_)
            | ModelError::LabelOutOfRange { .. }
            | ModelError::Checkpoint { .. } => CliError::Input(e.to_string()),
            ModelError::Io { ref source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                CliError::Input(e.to_string())
            }
            _ => CliError::Failure(e.to_string()),
        }
    }
}

impl From<NtkError> for CliError {
    fn from(e: NtkError) -> Self {
        match e {
            NtkError::Model(m) => m.into(),
            NtkError::Architecture(_)
            | NtkError::Shape { .. }
            | NtkError::NonFinite { .. }
            | NtkError::InvalidOption { .. }
            | NtkError::UnstableLearningRate { .. } => {
                CliError::Input(e.message_with(field_to_flag))
            }
            _ => CliError::Failure(e.message_with(field_to_flag)),
        }
    }
}

impl From<RulesError> for CliError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Interrupted { .. } => CliError::Interrupted,
            RulesError::Data(d) => d.into(),
            RulesError::Model(m) => m.into(),
            // the library says which model fits; the flag that chooses it is --model
            RulesError::DatasetMismatch { .. } => CliError::flag("--model", e),
            RulesError::InvalidConfig { field, reason } => {
                CliError::flag(&field_to_flag(field), reason)
            }
            RulesError::UnknownName { .. } | RulesError::Unsupported { .. } => {
                CliError::Input(e.to_string())
            }
            _ => CliError::Failure(e.to_string()),
        }
    }
}

/// A setting named by the experiments library is spelled as its flag ([`field_to_flag`]:
/// `batch_size` → `--batch-size`).
impl From<ExperimentError> for CliError {
    fn from(e: ExperimentError) -> Self {
        match e {
            ExperimentError::InvalidSetting { setting, reason } if setting.is_empty() => {
                CliError::Usage(reason)
            }
            ExperimentError::InvalidSetting { setting, reason } => {
                CliError::flag(&field_to_flag(&setting), reason)
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
    fn fields_are_spelled_as_the_flags_that_set_them() {
        for (field, flag) in [
            ("train_size", "--train-size"),
            ("dataset", "--dataset"),
            ("w_std", "--w-std"),
            ("b_std", "--b-std"),
            ("lr", "--lr"),
            ("inputs", "--inputs"),
            ("widths", "--widths"),
            ("steps", "--steps"),
        ] {
            assert_eq!(field_to_flag(field), flag);
        }
        // no flag sets these: the library's name stays
        for field in [
            "validation",
            "teacher.width",
            "add.steps",
            "quadrature order",
        ] {
            assert_eq!(field_to_flag(field), field);
        }
    }

    #[test]
    fn library_option_errors_name_the_flag() {
        let e: CliError = DataError::InvalidOption {
            field: "train_size".into(),
            message: "0: must be between 1 and the 5 training examples".into(),
        }
        .into();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "invalid option --train-size: 0: must be between 1 and the 5 training examples"
        );
        let e: CliError = RulesError::Data(DataError::InvalidOption {
            field: "validation".into(),
            message: "0".into(),
        })
        .into();
        assert_eq!(e.to_string(), "invalid option validation: 0");
        let e: CliError = NtkError::InvalidOption {
            name: "w_std".into(),
            reason: "must be finite and non-negative, got NaN".into(),
        }
        .into();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "invalid option --w-std: must be finite and non-negative, got NaN"
        );
        let e: CliError = NtkError::UnstableLearningRate {
            lr: 10.0,
            max_stable_lr: 2.0,
            lambda_max: 8.0,
            nc: 16,
        }
        .into();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().ends_with("choose --lr below 2.000000"), "{e}");
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
            ExperimentError::setting("shard", "auto: SLURM_ARRAY_TASK_ID is not set").into();
        assert_eq!(
            e.to_string(),
            "--shard: auto: SLURM_ARRAY_TASK_ID is not set"
        );
        let e: CliError = ExperimentError::setting("teacher.width", "too small").into();
        assert_eq!(
            e.to_string(),
            "teacher.width: too small",
            "no such flag: the name stays"
        );
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
