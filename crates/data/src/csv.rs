//! CSV tables: numeric features, then an integer class label, one example per line.
//!
//! Format: comma-separated fields; blank lines and lines starting with `#` are skipped; `\r\n`
//! line ends and a UTF-8 byte-order mark are accepted; fields may carry surrounding spaces.
//! Every data line has the same number of fields `d + 1` (`d ≥ 1` features, then the label).
//! Features parse as finite `f32`; the label is a non-negative integer (`3` or `3.0`).
//!
//! **Header.** With [`CsvOptions::header`] `None` (the default) the first content line is a
//! header exactly when its last field (the label column) is not a number; `Some(true)` /
//! `Some(false)` force it.
//!
//! Errors name the file, the line and the field: an empty file or one with only a header, a
//! line with a different number of fields than the first data line (ragged), a non-numeric or
//! non-finite feature, a bad label, a label not below the class count
//! ([`CsvOptions::classes`], else inferred as `max label + 1`, at most [`MAX_CLASSES`]).
//!
//! ```
//! use widealign_data::csv::{parse, CsvOptions};
//! let t = parse(b"a,b,label\n0.5,1,0\n2,-1e3,2\n", "t.csv", &CsvOptions::default()).unwrap();
//! assert_eq!(t.x.shape(), (2, 2));
//! assert_eq!(t.labels, vec![0, 2]);
//! assert_eq!(t.classes, 3);
//! assert_eq!(t.header.as_deref(), Some(&["a".to_string(), "b".into(), "label".into()][..]));
//! let err = parse(b"1,2,0\n3,x,1\n", "t.csv", &CsvOptions::default()).unwrap_err();
//! assert_eq!(err.to_string(), "t.csv: line 2, field 2: feature \"x\" is not a number");
//! ```

use std::io::Write;
use std::path::Path;

use widealign_tensor::Mat;

use crate::error::{DataError, Position, Result};

/// The largest class count a CSV label column may imply (labels must be below it).
pub const MAX_CLASSES: usize = 10_000;

/// How to read a CSV table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsvOptions {
    /// Whether the first content line is a header; `None` detects it (see the module docs).
    pub header: Option<bool>,
    /// The number of classes; every label must be below it. `None` infers `max label + 1`.
    pub classes: Option<usize>,
}

/// A parsed CSV table.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvTable {
    /// `N × d` features, one example per row.
    pub x: Mat<f32>,
    /// The `N` class labels.
    pub labels: Vec<usize>,
    /// The number of classes (given or inferred).
    pub classes: usize,
    /// The header fields, when there was a header.
    pub header: Option<Vec<String>>,
}

fn err(file: &str, pos: Position, message: String) -> DataError {
    DataError::Csv {
        file: file.to_string(),
        pos,
        message,
    }
}

fn parse_label(s: &str) -> Option<u64> {
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1e15 => Some(v as u64),
        _ => None,
    }
}

/// Parses CSV text held in memory. `file` names it in errors.
pub fn parse(bytes: &[u8], file: &str, opts: &CsvOptions) -> Result<CsvTable> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        err(
            file,
            Position::Line(line),
            format!("not UTF-8 text (invalid byte at offset {at})"),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(c) = opts.classes {
        if c == 0 || c > MAX_CLASSES {
            return Err(DataError::option(
                "classes",
                format!("{c} classes: must be between 1 and {MAX_CLASSES}"),
            ));
        }
    }
    let mut header: Option<Vec<String>> = None;
    let mut width: Option<(usize, usize)> = None; // (fields, line where set)
    let mut data: Vec<f32> = Vec::new();
    let mut labels: Vec<usize> = Vec::new();
    let mut first_content = true;
    let mut last_line = 0;
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        last_line = line_no;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if first_content {
            first_content = false;
            let is_header = match opts.header {
                Some(h) => h,
                None => fields.last().is_some_and(|l| l.parse::<f64>().is_err()),
            };
            if is_header {
                header = Some(fields.iter().map(|s| s.to_string()).collect());
                continue;
            }
        }
        let (w, wline) = match width {
            Some(w) => w,
            None => {
                if let Some(h) = &header {
                    if h.len() != fields.len() {
                        return Err(err(
                            file,
                            Position::Line(line_no),
                            format!(
                                "ragged table: {} fields, but the header has {}",
                                fields.len(),
                                h.len()
                            ),
                        ));
                    }
                }
                if fields.len() < 2 {
                    return Err(err(
                        file,
                        Position::Line(line_no),
                        format!(
                            "{} field: a row needs at least one feature and a label",
                            fields.len()
                        ),
                    ));
                }
                width = Some((fields.len(), line_no));
                (fields.len(), line_no)
            }
        };
        if fields.len() != w {
            return Err(err(
                file,
                Position::Line(line_no),
                format!(
                    "ragged table: {} fields, but line {wline} has {w}",
                    fields.len()
                ),
            ));
        }
        for (j, f) in fields[..w - 1].iter().enumerate() {
            let pos = Position::Field {
                line: line_no,
                field: j + 1,
            };
            match f.parse::<f32>() {
                Ok(v) if v.is_finite() => data.push(v),
                Ok(_) => return Err(err(file, pos, format!("feature {f:?} is not finite"))),
                Err(_) => return Err(err(file, pos, format!("feature {f:?} is not a number"))),
            }
        }
        let lf = fields[w - 1];
        let pos = Position::Field {
            line: line_no,
            field: w,
        };
        let label = parse_label(lf).ok_or_else(|| {
            err(
                file,
                pos,
                format!("label {lf:?} is not a non-negative integer"),
            )
        })?;
        let limit = opts.classes.unwrap_or(MAX_CLASSES);
        if label >= limit as u64 {
            return Err(DataError::LabelOutOfRange {
                file: file.to_string(),
                pos,
                label,
                classes: limit,
            });
        }
        labels.push(label as usize);
    }
    let Some((w, _)) = width else {
        let what = match (&header, opts.header) {
            (Some(_), None) => "only a header (its last field is not a number)",
            (Some(_), _) => "only a header",
            (None, _) => "empty",
        };
        return Err(err(
            file,
            Position::Line(last_line.max(1)),
            format!("{what}: no data rows"),
        ));
    };
    let n = labels.len();
    let x = Mat::from_row_slice(n, w - 1, &data);
    let classes = opts
        .classes
        .unwrap_or_else(|| labels.iter().max().map_or(1, |&m| m + 1));
    Ok(CsvTable {
        x,
        labels,
        classes,
        header,
    })
}

/// Reads a CSV file (see [`parse`]).
pub fn read(path: &Path, opts: &CsvOptions) -> Result<CsvTable> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(&name, e))?;
    parse(&bytes, &name, opts)
}

/// Writes a table in the format [`parse`] reads: an optional header line, then per row the
/// features (shortest decimal form that reads back to the same `f32`) and the label.
pub fn write<W: Write>(
    mut w: W,
    x: &Mat<f32>,
    labels: &[usize],
    header: Option<&[String]>,
) -> std::io::Result<()> {
    if labels.len() != x.nrows() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} labels for {} rows", labels.len(), x.nrows()),
        ));
    }
    if let Some(h) = header {
        writeln!(w, "{}", h.join(","))?;
    }
    let mut line = String::new();
    for (i, &l) in labels.iter().enumerate() {
        line.clear();
        for j in 0..x.ncols() {
            use std::fmt::Write as _;
            let _ = write!(line, "{},", x[(i, j)]);
        }
        line.push_str(&l.to_string());
        writeln!(w, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<CsvTable> {
        parse(s.as_bytes(), "t.csv", &CsvOptions::default())
    }

    #[test]
    fn basic_and_whitespace_and_comments() {
        let t = p("\u{feff}# comment\r\n 1 , 2 ,3\r\n\r\n4,5,0.0\n").unwrap();
        assert_eq!(t.x, Mat::from_row_slice(2, 2, &[1.0, 2.0, 4.0, 5.0]));
        assert_eq!(t.labels, vec![3, 0]);
        assert_eq!(t.classes, 4);
        assert!(t.header.is_none());
    }

    #[test]
    fn errors_name_line_and_field() {
        let cases = [
            ("", "t.csv: line 1: empty: no data rows"),
            ("\n\n", "t.csv: line 1: empty: no data rows"),
            (
                "a,b\n",
                "t.csv: line 1: only a header (its last field is not a number): no data rows",
            ),
            (
                "1,2,0\n1,0\n",
                "t.csv: line 2: ragged table: 2 fields, but line 1 has 3",
            ),
            (
                "a,b,c\n1,0\n",
                "t.csv: line 2: ragged table: 2 fields, but the header has 3",
            ),
            (
                "1,2,0\n1,nan,0\n",
                "t.csv: line 2, field 2: feature \"nan\" is not finite",
            ),
            (
                "1,2,0\n1,,0\n",
                "t.csv: line 2, field 2: feature \"\" is not a number",
            ),
            (
                "1,2,0\n1,2,1.5\n",
                "t.csv: line 2, field 3: label \"1.5\" is not a non-negative integer",
            ),
            (
                "1,2,0\n1,2,-1\n",
                "t.csv: line 2, field 3: label \"-1\" is not a non-negative integer",
            ),
            (
                "7\n",
                "t.csv: line 1: 1 field: a row needs at least one feature and a label",
            ),
            (
                "1,2,10000\n",
                "t.csv: line 1, field 3: label 10000 is not below the class count 10000",
            ),
        ];
        for (input, msg) in cases {
            assert_eq!(p(input).unwrap_err().to_string(), msg, "input {input:?}");
        }
        let e = parse(
            b"1,2,3\n",
            "t.csv",
            &CsvOptions {
                header: None,
                classes: Some(3),
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv: line 1, field 3: label 3 is not below the class count 3"
        );
        let e = parse(b"1,\xff,3\n", "t.csv", &CsvOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv: line 1: not UTF-8 text (invalid byte at offset 2)"
        );
    }

    #[test]
    fn forced_header() {
        let o = CsvOptions {
            header: Some(true),
            classes: None,
        };
        let t = parse(b"0,1,2\n5,6,1\n", "t", &o).unwrap();
        assert_eq!(t.labels, vec![1]);
        let o = CsvOptions {
            header: Some(false),
            classes: None,
        };
        let e = parse(b"x,y,label\n5,6,1\n", "t", &o).unwrap_err();
        assert!(e.to_string().starts_with("t: line 1, field 1"), "{e}");
    }
}
