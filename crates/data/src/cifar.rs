//! CIFAR-10 binary batches (`data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`).
//!
//! Each file is a sequence of 3,073-byte records: one label byte (`0..=9`), then 3,072 pixel
//! bytes — the 32 × 32 red plane, then green, then blue, each row-major. A sample's features keep
//! that order (channel-major, `c·1024 + row·32 + col`) and are scaled to `[0, 1]` as `p / 255`.
//!
//! A file whose length is not a whole number of records is [`DataError::Truncated`] at the start
//! of the incomplete record; a label byte of 10 or more is [`DataError::LabelOutOfRange`] at its
//! byte offset. The batches of the binary distribution are not compressed; a gzip file
//! (e.g. the downloaded archive itself) is rejected with a message saying so.
//!
//! ```
//! use widealign_data::cifar;
//! let mut rec = vec![3u8];
//! rec.extend((0..3072).map(|i| (i % 256) as u8));
//! let (x, labels) = cifar::parse(&rec, "one.bin").unwrap();
//! assert_eq!(x.shape(), (1, 3072));
//! assert_eq!(labels, vec![3]);
//! assert_eq!(x[(0, 255)], 1.0);
//! let err = cifar::parse(&rec[..100], "short.bin").unwrap_err();
//! assert!(err.to_string().starts_with("short.bin: byte 0: file is truncated"), "{err}");
//! ```

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use widealign_tensor::Mat;

use crate::error::{DataError, Position, Result};
use crate::idx::byte_scale_table;
use crate::stream::{GZIP_MAGIC, MAX_PAYLOAD_BYTES};

/// Pixels per image (3 channels × 32 × 32).
pub const PIXELS: usize = 3072;
/// Bytes per record (label + pixels).
pub const RECORD_BYTES: usize = PIXELS + 1;
/// Number of classes.
pub const CLASSES: usize = 10;
/// The training batch file names, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file name.
pub const TEST_FILE: &str = "test_batch.bin";

/// Checks a file's length and returns its record count.
fn records_in(len: u64, head: &[u8], file: &str) -> Result<usize> {
    if head.starts_with(&GZIP_MAGIC) {
        return Err(DataError::Format {
            file: file.to_string(),
            pos: Position::Byte(0),
            message: "gzip-compressed: CIFAR-10 batches are read uncompressed; unpack the \
                      binary archive first (tar xzf cifar-10-binary.tar.gz)"
                .to_string(),
        });
    }
    if len > MAX_PAYLOAD_BYTES {
        return Err(DataError::TooLarge {
            file: file.to_string(),
            pos: Position::Byte(0),
            claimed: len as u128,
            message: format!("more than the limit of {MAX_PAYLOAD_BYTES} bytes"),
        });
    }
    let rec = RECORD_BYTES as u64;
    if len % rec != 0 {
        let start = len - len % rec;
        return Err(DataError::Truncated {
            file: file.to_string(),
            pos: Position::Byte(start),
            what: "a 3073-byte CIFAR-10 record",
            needed: rec - len % rec,
        });
    }
    if len == 0 {
        return Err(DataError::Format {
            file: file.to_string(),
            pos: Position::Byte(0),
            message: "empty file: no CIFAR-10 records".to_string(),
        });
    }
    Ok((len / rec) as usize)
}

/// Decodes `records` (a whole number of records) into rows `row0..` of `data` (column-major,
/// `n` rows) and `labels`; `base` is the byte offset of `records` in the file.
fn decode_block(
    records: &[u8],
    data: &mut [f32],
    n: usize,
    row0: usize,
    labels: &mut Vec<usize>,
    base: u64,
    file: &str,
    lut: &[f32; 256],
) -> Result<()> {
    let k = records.len() / RECORD_BYTES;
    for r in 0..k {
        let label = records[r * RECORD_BYTES] as usize;
        if label >= CLASSES {
            return Err(DataError::LabelOutOfRange {
                file: file.to_string(),
                pos: Position::Byte(base + (r * RECORD_BYTES) as u64),
                label: label as u64,
                classes: CLASSES,
            });
        }
        labels.push(label);
    }
    for j in 0..PIXELS {
        let col = &mut data[j * n + row0..j * n + row0 + k];
        for (r, v) in col.iter_mut().enumerate() {
            *v = lut[records[r * RECORD_BYTES + 1 + j] as usize];
        }
    }
    Ok(())
}

/// Parses CIFAR-10 records held in memory into (`N × 3072` pixels in `[0, 1]`, labels).
pub fn parse(bytes: &[u8], file: &str) -> Result<(Mat<f32>, Vec<usize>)> {
    let n = records_in(bytes.len() as u64, bytes, file)?;
    let mut x = Mat::<f32>::zeros(n, PIXELS);
    let mut labels = Vec::with_capacity(n);
    let lut = byte_scale_table(255.0);
    decode_block(bytes, x.as_mut_slice(), n, 0, &mut labels, 0, file, &lut)?;
    Ok((x, labels))
}

/// Reads and concatenates CIFAR-10 batch files (in the given order) into one matrix, sized
/// from the file lengths and filled in blocks of 64 records: one copy of the data.
pub fn read_files(paths: &[PathBuf]) -> Result<(Mat<f32>, Vec<usize>)> {
    let mut counts = Vec::with_capacity(paths.len());
    let mut files = Vec::with_capacity(paths.len());
    for p in paths {
        let name = p.display().to_string();
        let mut f = File::open(p).map_err(|e| DataError::io(&name, e))?;
        let len = f.metadata().map_err(|e| DataError::io(&name, e))?.len();
        let mut head = [0u8; 2];
        let got = f.read(&mut head).map_err(|e| DataError::io(&name, e))?;
        let n = records_in(len, &head[..got], &name)?;
        counts.push(n);
        files.push((name, p.clone()));
    }
    let total: usize = counts.iter().sum();
    if (total as u128) * (PIXELS as u128) * 4 > 4 * MAX_PAYLOAD_BYTES as u128 {
        return Err(DataError::TooLarge {
            file: files.first().map(|f| f.0.clone()).unwrap_or_default(),
            pos: Position::Byte(0),
            claimed: total as u128 * RECORD_BYTES as u128,
            message: "more than the limit for all batches together".to_string(),
        });
    }
    let mut x = Mat::<f32>::zeros(total, PIXELS);
    let mut labels = Vec::with_capacity(total);
    let lut = byte_scale_table(255.0);
    let data = x.as_mut_slice();
    const BLOCK: usize = 64;
    let mut buf = vec![0u8; BLOCK * RECORD_BYTES];
    let mut row = 0usize;
    for ((name, path), &n) in files.iter().zip(&counts) {
        let mut f = File::open(path).map_err(|e| DataError::io(name, e))?;
        let mut done = 0usize;
        while done < n {
            let k = BLOCK.min(n - done);
            let block = &mut buf[..k * RECORD_BYTES];
            let base = (done * RECORD_BYTES) as u64;
            read_fully(&mut f, block, base, name)?;
            decode_block(block, data, total, row, &mut labels, base, name, &lut)?;
            done += k;
            row += k;
        }
        let mut extra = [0u8; 1];
        if f.read(&mut extra).map_err(|e| DataError::io(name, e))? != 0 {
            return Err(DataError::TrailingData {
                file: name.clone(),
                pos: Position::Byte((n * RECORD_BYTES) as u64),
            });
        }
    }
    Ok((x, labels))
}

fn read_fully(f: &mut File, buf: &mut [u8], base: u64, name: &str) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(DataError::Truncated {
                    file: name.to_string(),
                    pos: Position::Byte(base + got as u64),
                    what: "a 3073-byte CIFAR-10 record",
                    needed: (buf.len() - got) as u64,
                })
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(name, e)),
        }
    }
    Ok(())
}

/// The folder holding the batch files: `dir` itself, or its `cifar-10-batches-bin` subfolder
/// (the layout of the unpacked archive).
pub fn batches_dir(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("cifar-10-batches-bin")]
        .into_iter()
        .find(|d| d.join(TEST_FILE).is_file() && TRAIN_FILES.iter().all(|f| d.join(f).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, &l) in labels.iter().enumerate() {
            b.push(l);
            b.extend((0..PIXELS).map(|j| ((j + 31 * k) % 256) as u8));
        }
        b
    }

    #[test]
    fn parse_layout() {
        let b = records(&[1, 9, 0]);
        let (x, l) = parse(&b, "b").unwrap();
        assert_eq!(l, vec![1, 9, 0]);
        assert_eq!(x.shape(), (3, PIXELS));
        assert_eq!(x[(2, 1024)], ((1024 + 62) % 256) as f32 / 255.0);
    }

    #[test]
    fn bad_label_names_the_record_offset() {
        let b = records(&[1, 10]);
        let e = parse(&b, "b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "b: byte 3073: label 10 is not below the class count 10"
        );
    }

    #[test]
    fn ragged_and_empty_and_gzip() {
        let b = records(&[1, 2]);
        let e = parse(&b[..5000], "b").unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Truncated {
                    pos: Position::Byte(3073),
                    needed: 1146,
                    ..
                }
            ),
            "{e}"
        );
        assert!(matches!(
            parse(&[], "e").unwrap_err(),
            DataError::Format { .. }
        ));
        let e = parse(&[0x1f, 0x8b, 8, 0], "z").unwrap_err();
        assert!(e.to_string().contains("gzip"), "{e}");
    }

    #[test]
    fn read_files_concatenates() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        let b = dir.path().join("b.bin");
        let ra = records(&(0..70).map(|i| (i % 10) as u8).collect::<Vec<_>>());
        let rb = records(&[4, 5]);
        std::fs::write(&a, &ra).unwrap();
        std::fs::write(&b, &rb).unwrap();
        let (x, l) = read_files(&[a, b]).unwrap();
        let (xa, la) = parse(&ra, "a").unwrap();
        let (xb, lb) = parse(&rb, "b").unwrap();
        assert_eq!(x.shape(), (72, PIXELS));
        assert_eq!(l, [la, lb].concat());
        assert_eq!(x.rows(0, 70), xa.rows(0, 70));
        assert_eq!(x.rows(70, 2), xb.rows(0, 2));
    }
}
