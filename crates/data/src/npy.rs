//! NumPy `.npy` files of `f32`/`f64` matrices: written row by row (so a kernel larger than memory
//! can be streamed out) and read row by row with every header field checked (the files are
//! untrusted input).
//!
//! The format (NumPy's `format.py`, versions 1.0–3.0): the magic `\x93NUMPY`, two version
//! bytes, the header length (`u16` little-endian in 1.0, `u32` in 2.0 and 3.0), then an ASCII
//! Python dict literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`
//! padded with spaces and a newline so the data starts at a multiple of 64 bytes, then the
//! values. Written here: version 1.0, little-endian `<f4` or `<f8`, C order, shape `(rows, cols)`
//! — what `numpy.load` reads. Read here: the same dtypes (and big-endian `>f4`/`>f8`), shape
//! `(rows, cols)` or `(len,)` (one row), C order; Fortran order and other dtypes are refused
//! with a message naming the file and the field. The data length the header implies is checked
//! against the file size before anything is allocated.
//!
//! ```
//! use widealign_data::npy::{write_matrix, NpyReader, Dtype};
//! let dir = std::env::temp_dir().join(format!("npy-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("k.npy");
//! write_matrix(&path, 2, 3, Dtype::F64, |r, row| {
//!     for (c, v) in row.iter_mut().enumerate() { *v = (r * 3 + c) as f64; }
//! }).unwrap();
//! let mut rd = NpyReader::open(&path).unwrap();
//! assert_eq!((rd.rows(), rd.cols(), rd.dtype()), (2, 3, Dtype::F64));
//! let mut row = vec![0.0; 3];
//! rd.read_row(&mut row).unwrap();
//! rd.read_row(&mut row).unwrap();
//! assert_eq!(row, vec![3.0, 4.0, 5.0]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{DataError, Position, Result};

/// The element type of a matrix file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// 4-byte IEEE float (`<f4`).
    F32,
    /// 8-byte IEEE float (`<f8`).
    F64,
}

impl Dtype {
    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }

    /// The little-endian NumPy `descr`.
    pub fn descr(self) -> &'static str {
        match self {
            Dtype::F32 => "<f4",
            Dtype::F64 => "<f8",
        }
    }
}

/// The longest header accepted when reading (NumPy itself writes a few hundred bytes).
pub const MAX_HEADER_BYTES: usize = 1 << 16;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

fn fmt_err(file: &Path, pos: u64, message: impl Into<String>) -> DataError {
    DataError::Format {
        file: file.display().to_string(),
        pos: Position::Byte(pos),
        message: message.into(),
    }
}

/// The header bytes (magic to padding) of a version-1.0 file.
fn header(rows: usize, cols: usize, dtype: Dtype) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}",
        dtype.descr()
    );
    // magic (6) + version (2) + length (2) + dict + padding + '\n' ≡ 0 mod 64
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Writes a `rows × cols` matrix to `path` in C order, asking `row(r, buf)` to fill each row
/// (in `f64`; rounded once to `f32` for [`Dtype::F32`]). The file is written to a temporary
/// name beside `path` and renamed when complete, so a killed run leaves no half-written file.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be written.
pub fn write_matrix(
    path: &Path,
    rows: usize,
    cols: usize,
    dtype: Dtype,
    mut row: impl FnMut(usize, &mut [f64]),
) -> Result<()> {
    let tmp = temp_path(path);
    let io = |e| DataError::io(path.display().to_string(), e);
    let result = (|| -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        w.write_all(&header(rows, cols, dtype))?;
        let mut buf = vec![0.0f64; cols];
        let mut bytes = Vec::with_capacity(cols * dtype.bytes());
        for r in 0..rows {
            row(r, &mut buf);
            bytes.clear();
            match dtype {
                Dtype::F32 => buf
                    .iter()
                    .for_each(|&v| bytes.extend_from_slice(&(v as f32).to_le_bytes())),
                Dtype::F64 => buf
                    .iter()
                    .for_each(|&v| bytes.extend_from_slice(&v.to_le_bytes())),
            }
            w.write_all(&bytes)?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.npy".into());
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// A matrix file opened for reading row by row.
#[derive(Debug)]
pub struct NpyReader {
    path: PathBuf,
    reader: BufReader<File>,
    rows: usize,
    cols: usize,
    dtype: Dtype,
    big_endian: bool,
    next: usize,
    buf: Vec<u8>,
}

impl NpyReader {
    /// Opens `path` and checks its header against the file size.
    ///
    /// # Errors
    /// [`DataError::Io`] when the file cannot be read, [`DataError::Format`] naming the byte
    /// offset and the field for a bad magic, version, header or dtype, Fortran order or a
    /// shape of more than two dimensions, [`DataError::Truncated`] /
    /// [`DataError::TrailingData`] when the file size disagrees with the shape.
    pub fn open(path: &Path) -> Result<NpyReader> {
        let io = |e| DataError::io(path.display().to_string(), e);
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut pre = [0u8; 8];
        read_exact_or(&mut reader, &mut pre, path, 0, "the .npy preamble")?;
        if &pre[..6] != MAGIC {
            return Err(fmt_err(
                path,
                0,
                "not a .npy file (magic \\x93NUMPY missing)",
            ));
        }
        let (major, minor) = (pre[6], pre[7]);
        let len_bytes = match major {
            1 => 2,
            2 | 3 => 4,
            _ => {
                return Err(fmt_err(
                    path,
                    6,
                    format!("unsupported .npy version {major}.{minor} (1.0 to 3.0 are read)"),
                ))
            }
        };
        let mut lb = [0u8; 4];
        read_exact_or(
            &mut reader,
            &mut lb[..len_bytes],
            path,
            8,
            "the header length",
        )?;
        let hlen = u32::from_le_bytes(lb) as usize;
        let data_start = 8 + len_bytes as u64 + hlen as u64;
        if hlen > MAX_HEADER_BYTES {
            return Err(fmt_err(
                path,
                8,
                format!("header length {hlen} exceeds {MAX_HEADER_BYTES} bytes"),
            ));
        }
        if data_start > size {
            return Err(DataError::Truncated {
                file: path.display().to_string(),
                pos: Position::Byte(size),
                what: "the .npy header",
                needed: data_start - size,
            });
        }
        let mut h = vec![0u8; hlen];
        read_exact_or(
            &mut reader,
            &mut h,
            path,
            8 + len_bytes as u64,
            "the header",
        )?;
        let hpos = 8 + len_bytes as u64;
        let text = std::str::from_utf8(&h)
            .map_err(|_| fmt_err(path, hpos, "header is not ASCII/UTF-8 text"))?;
        let (descr, fortran, shape) = parse_dict(text).map_err(|m| fmt_err(path, hpos, m))?;
        let (dtype, big_endian) = match descr.as_str() {
            "<f4" | "=f4" => (Dtype::F32, false),
            "<f8" | "=f8" => (Dtype::F64, false),
            ">f4" => (Dtype::F32, true),
            ">f8" => (Dtype::F64, true),
            other => {
                return Err(fmt_err(
                    path,
                    hpos,
                    format!("descr {other:?} is not a float32/float64 dtype ('<f4' or '<f8')"),
                ))
            }
        };
        if fortran {
            return Err(fmt_err(
                path,
                hpos,
                "fortran_order True is not supported; save with numpy.ascontiguousarray",
            ));
        }
        let (rows, cols) = match shape.as_slice() {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            s => {
                return Err(fmt_err(
                    path,
                    hpos,
                    format!("shape has {} dimensions; a matrix has 1 or 2", s.len()),
                ))
            }
        };
        let claimed = rows as u128 * cols as u128 * dtype.bytes() as u128;
        let have = (size - data_start) as u128;
        if claimed > have {
            return Err(DataError::Truncated {
                file: path.display().to_string(),
                pos: Position::Byte(size),
                what: "the matrix values",
                needed: (claimed - have).min(u64::MAX as u128) as u64,
            });
        }
        if claimed < have {
            return Err(DataError::TrailingData {
                file: path.display().to_string(),
                pos: Position::Byte(data_start + claimed as u64),
            });
        }
        Ok(NpyReader {
            path: path.to_path_buf(),
            reader,
            rows,
            cols,
            dtype,
            big_endian,
            next: 0,
            buf: vec![0u8; cols * dtype.bytes()],
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the next row into `out` (`cols` values, as `f64`).
    ///
    /// # Errors
    /// [`DataError::Format`] when all rows were read, `out` has the wrong length or a value is
    /// not finite; [`DataError::Io`] / [`DataError::Truncated`] when reading fails.
    pub fn read_row(&mut self, out: &mut [f64]) -> Result<()> {
        let row_bytes = self.buf.len() as u64;
        let pos = |r: usize| r as u64 * row_bytes;
        if self.next >= self.rows || out.len() != self.cols {
            return Err(fmt_err(
                &self.path,
                pos(self.next),
                format!(
                    "row {} of {} × {} requested with {} slots",
                    self.next,
                    self.rows,
                    self.cols,
                    out.len()
                ),
            ));
        }
        let at = pos(self.next);
        read_exact_or(&mut self.reader, &mut self.buf, &self.path, at, "a row")?;
        let w = self.dtype.bytes();
        for (o, ch) in out.iter_mut().zip(self.buf.chunks_exact(w)) {
            *o = match (self.dtype, self.big_endian) {
                (Dtype::F32, false) => f32::from_le_bytes(ch.try_into().expect("4")) as f64,
                (Dtype::F32, true) => f32::from_be_bytes(ch.try_into().expect("4")) as f64,
                (Dtype::F64, false) => f64::from_le_bytes(ch.try_into().expect("8")),
                (Dtype::F64, true) => f64::from_be_bytes(ch.try_into().expect("8")),
            };
        }
        if let Some(c) = out.iter().position(|v| !v.is_finite()) {
            return Err(fmt_err(
                &self.path,
                at + (c * w) as u64,
                format!("non-finite value at row {}, column {c}", self.next),
            ));
        }
        self.next += 1;
        Ok(())
    }
}

fn read_exact_or(
    r: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    pos: u64,
    what: &'static str,
) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            DataError::Truncated {
                file: path.display().to_string(),
                pos: Position::Byte(pos),
                what,
                needed: buf.len() as u64,
            }
        } else {
            DataError::io(path.display().to_string(), e)
        }
    })
}

/// Parses the header dict: `descr`, `fortran_order`, `shape`, each exactly once, nothing else.
fn parse_dict(text: &str) -> std::result::Result<(String, bool, Vec<usize>), String> {
    let t = text.trim_end_matches(['\n', ' ', '\0']).trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or("header is not a {...} dict")?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = parse_str(rest).ok_or("expected a quoted key in the header dict")?;
        let after = after
            .trim_start()
            .strip_prefix(':')
            .ok_or(format!("expected ':' after key '{key}'"))?
            .trim_start();
        let remainder = match key.as_str() {
            "descr" => {
                let (v, r) = parse_str(after).ok_or("descr is not a quoted string")?;
                if descr.replace(v).is_some() {
                    return Err("descr appears twice".into());
                }
                r
            }
            "fortran_order" => {
                let (v, r) = if let Some(r) = after.strip_prefix("False") {
                    (false, r)
                } else if let Some(r) = after.strip_prefix("True") {
                    (true, r)
                } else {
                    return Err("fortran_order is not True or False".into());
                };
                if fortran.replace(v).is_some() {
                    return Err("fortran_order appears twice".into());
                }
                r
            }
            "shape" => {
                let body = after.strip_prefix('(').ok_or("shape is not a tuple")?;
                let end = body.find(')').ok_or("shape tuple is not closed")?;
                let mut dims = Vec::new();
                for part in body[..end].split(',') {
                    let p = part.trim();
                    if p.is_empty() {
                        continue;
                    }
                    let v: usize = p
                        .trim_end_matches('L')
                        .parse()
                        .map_err(|_| format!("shape entry {p:?} is not a non-negative integer"))?;
                    dims.push(v);
                }
                if dims.len() > 8 {
                    return Err("shape has more than 8 dimensions".into());
                }
                if shape.replace(dims).is_some() {
                    return Err("shape appears twice".into());
                }
                &body[end + 1..]
            }
            other => return Err(format!("unexpected key '{other}' in the header dict")),
        };
        let r = remainder.trim_start();
        rest = match r.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if r.is_empty() => r,
            None => return Err(format!("expected ',' after the value of '{key}'")),
        };
    }
    Ok((
        descr.ok_or("header has no descr")?,
        fortran.ok_or("header has no fortran_order")?,
        shape.ok_or("header has no shape")?,
    ))
}

/// A Python string literal in single or double quotes (no escapes) and the rest.
fn parse_str(s: &str) -> Option<(String, &str)> {
    let q = s.chars().next()?;
    if q != '\'' && q != '"' {
        return None;
    }
    let body = &s[1..];
    let end = body.find(q)?;
    Some((body[..end].to_string(), &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn write_raw(path: &Path, header_dict: &str, data: &[u8]) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header_dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header_dict.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn round_trip_f32_and_f64_with_aligned_header() {
        let d = dir();
        for dtype in [Dtype::F32, Dtype::F64] {
            let p = d.path().join("m.npy");
            let val = |r: usize, c: usize| (r as f64 + 0.25) * (c as f64 - 1.5);
            write_matrix(&p, 5, 7, dtype, |r, row| {
                row.iter_mut().enumerate().for_each(|(c, v)| *v = val(r, c))
            })
            .unwrap();
            let bytes = std::fs::read(&p).unwrap();
            let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
            assert_eq!((10 + hlen) % 64, 0);
            assert_eq!(bytes.len(), 10 + hlen + 35 * dtype.bytes());
            let mut rd = NpyReader::open(&p).unwrap();
            assert_eq!((rd.rows(), rd.cols(), rd.dtype()), (5, 7, dtype));
            let mut row = vec![0.0; 7];
            for r in 0..5 {
                rd.read_row(&mut row).unwrap();
                for c in 0..7 {
                    assert_eq!(row[c], val(r, c)); // exact in f32 too
                }
            }
            assert!(rd.read_row(&mut row).is_err());
            // no temporary left behind
            assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn hostile_headers_are_refused_without_allocating() {
        let d = dir();
        let p = d.path().join("bad.npy");
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000, 100000000000), }\n",
                vec![0; 16],
                "truncated",
            ),
            (
                "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }\n",
                vec![0; 16],
                "not a float32/float64",
            ),
            (
                "{'descr': '<f8', 'fortran_order': True, 'shape': (1, 2), }\n",
                vec![0; 16],
                "fortran_order",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, 3), }\n",
                vec![0; 48],
                "3 dimensions",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 2), }\n",
                vec![0; 16],
                "non-negative",
            ),
            (
                "{'descr': '<f8', 'shape': (1, 2), }\n",
                vec![0; 16],
                "no fortran_order",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), 'x': 1}\n",
                vec![0; 16],
                "unexpected key",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }\n",
                vec![0; 16],
                "after the end",
            ),
            ("not a dict\n", vec![], "dict"),
        ];
        for (h, data, want) in cases {
            write_raw(&p, h, &data);
            let err = NpyReader::open(&p).unwrap_err().to_string();
            assert!(err.contains(want), "{h}: {err}");
            assert!(err.contains("bad.npy"), "{err}");
        }
        std::fs::write(&p, b"\x93NUMPY\x01").unwrap();
        assert!(NpyReader::open(&p)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        std::fs::write(&p, b"PK\x03\x04abcdefgh").unwrap();
        assert!(NpyReader::open(&p)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut big = MAGIC.to_vec();
        big.extend_from_slice(&[2, 0]);
        big.extend_from_slice(&(u32::MAX).to_le_bytes());
        std::fs::write(&p, big).unwrap();
        assert!(NpyReader::open(&p)
            .unwrap_err()
            .to_string()
            .contains("exceeds"));
        // NaN values are refused with their position
        write_raw(
            &p,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n",
            &[1.0f64.to_le_bytes(), f64::NAN.to_le_bytes()].concat(),
        );
        let mut rd = NpyReader::open(&p).unwrap();
        let err = rd.read_row(&mut [0.0; 2]).unwrap_err().to_string();
        assert!(err.contains("non-finite value at row 0, column 1"), "{err}");
    }

    #[test]
    fn reads_big_endian_and_one_dimensional() {
        let d = dir();
        let p = d.path().join("be.npy");
        write_raw(
            &p,
            "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }\n",
            &[
                1.5f32.to_be_bytes(),
                (-2.0f32).to_be_bytes(),
                0.25f32.to_be_bytes(),
            ]
            .concat(),
        );
        let mut rd = NpyReader::open(&p).unwrap();
        let mut row = vec![0.0; 3];
        rd.read_row(&mut row).unwrap();
        assert_eq!(row, vec![1.5, -2.0, 0.25]);
    }
}
