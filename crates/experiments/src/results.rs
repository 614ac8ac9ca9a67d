//! JSON-lines results files: one JSON object per line, appended whole.
//!
//! Every line is appended with a single `write_all` of the line and its newline, then a flush
//! and `fdatasync`, while [`WRITE_LOCK`] is held. A process killed mid-write can therefore
//! leave only a *torn last line* (bytes after the last newline): readers report it, and
//! writers cut it away before appending ([`append`]). A broken line in the middle of a file is
//! an error naming the line (typically shard files concatenated while one was torn).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;
use widealign_rules::TrainConfig;

use crate::{config, ExperimentError};

/// Held while a line is being written. A program that exits at once on a second Ctrl-C takes
/// it first, so that it never exits in the middle of a line.
pub static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// What an existing results file holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Existing {
    /// Identities ([`config::key`]) of the runs with a complete line (lines with a `config`).
    pub done: HashSet<String>,
    /// Complete lines (blank lines not counted).
    pub lines: usize,
    /// Length in bytes of the complete lines (where a torn tail starts).
    pub valid_len: u64,
    /// Bytes after the last newline (a torn line from a killed process).
    pub torn_bytes: u64,
}

/// The complete lines of a file, each parsed as JSON with its 1-based line number, and the
/// length of the complete part and of the torn tail.
struct Parsed {
    values: Vec<(usize, Value)>,
    valid_len: u64,
    torn_bytes: u64,
}

/// Reads and parses `path` (a missing file has no lines).
fn read_values(path: &Path) -> Result<Parsed, ExperimentError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|source| ExperimentError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Parsed {
                values: Vec::new(),
                valid_len: 0,
                torn_bytes: 0,
            })
        }
        Err(source) => {
            return Err(ExperimentError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let valid_len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let mut values = Vec::new();
    for (i, line) in bytes[..valid_len].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let v: Value = serde_json::from_slice(line).map_err(|e| {
            ExperimentError::BadInput(format!(
                "{}:{}: not a JSON line ({e}); was a shard file with a torn last line concatenated into it?",
                path.display(),
                i + 1
            ))
        })?;
        values.push((i + 1, v));
    }
    Ok(Parsed {
        values,
        valid_len: valid_len as u64,
        torn_bytes: (bytes.len() - valid_len) as u64,
    })
}

/// The complete lines of a results file as JSON values with their 1-based line numbers (a
/// missing file has none; a torn last line is left out).
///
/// # Errors
/// [`ExperimentError::Read`] if the file cannot be read, [`ExperimentError::BadInput`] naming
/// the line if a complete line is not JSON.
pub fn read_lines(path: &Path) -> Result<Vec<(usize, Value)>, ExperimentError> {
    Ok(read_values(path)?.values)
}

/// Reads a results file: which runs it holds, and whether it ends in a torn line.
///
/// # Errors
/// As [`read_lines`].
pub fn read_existing(path: &Path) -> Result<Existing, ExperimentError> {
    let parsed = read_values(path)?;
    let mut ex = Existing {
        lines: parsed.values.len(),
        valid_len: parsed.valid_len,
        torn_bytes: parsed.torn_bytes,
        ..Existing::default()
    };
    for (_, v) in parsed.values {
        if let Some(c) = v
            .get("config")
            .and_then(|c| serde_json::from_value::<TrainConfig>(c.clone()).ok())
        {
            ex.done.insert(config::key(&c));
        }
    }
    Ok(ex)
}

/// Appends `line` and a newline to `file` with one `write_all`, then flushes and syncs the
/// data, holding [`WRITE_LOCK`].
///
/// # Errors
/// The I/O error.
pub fn append_line(file: &mut File, line: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    file.write_all(&buf)?;
    file.flush()?;
    file.sync_data()
}

/// Opens `path` for appending (creating it), first cutting away a torn last line described by
/// `existing` (from [`read_existing`]).
///
/// # Errors
/// [`ExperimentError::Write`].
pub fn open_for_append(path: &Path, existing: &Existing) -> Result<File, ExperimentError> {
    let write_err = |source| ExperimentError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(write_err)?;
    if existing.torn_bytes > 0 {
        file.set_len(existing.valid_len).map_err(write_err)?;
    }
    Ok(file)
}

/// Appends one line to the results file `path` (created if missing), cutting away a torn last
/// line first.
///
/// # Errors
/// As [`read_existing`] for a broken file, [`ExperimentError::Write`] if writing fails.
pub fn append(path: &Path, line: &str) -> Result<(), ExperimentError> {
    let existing = read_existing(path)?;
    let mut file = open_for_append(path, &existing)?;
    append_line(&mut file, line).map_err(|source| ExperimentError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_middle_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        std::fs::write(&out, "{\"a\":1}\n{broken\n{\"b\":2}\n").unwrap();
        let e = read_existing(&out).unwrap_err();
        assert!(matches!(e, ExperimentError::BadInput(_)));
        assert!(e.to_string().contains("r.jsonl:2:"), "{e}");
    }

    #[test]
    fn missing_file_is_empty_and_torn_tail_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        assert_eq!(read_existing(&out).unwrap(), Existing::default());
        let cfg = config::key(&TrainConfig::default());
        std::fs::write(&out, format!("{{\"config\":{cfg}}}\n\n{{\"rule\":\"b")).unwrap();
        let ex = read_existing(&out).unwrap();
        assert_eq!((ex.lines, ex.torn_bytes), (1, 10));
        assert!(ex.done.contains(&cfg));
        append(&out, "{\"x\":1}").unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text, format!("{{\"config\":{cfg}}}\n\n{{\"x\":1}}\n"));
        let lines = read_lines(&out).unwrap();
        assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 3]);
    }
}
