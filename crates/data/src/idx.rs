//! IDX files: the MNIST family (MNIST, Fashion-MNIST, KMNIST) and any user IDX file.
//!
//! An IDX file is a 4-byte magic number `00 00 TT ND` (element type `TT`, number of dimensions
//! `ND`), then `ND` big-endian `u32` dimension sizes, then the elements in row-major order.
//! Images are unsigned bytes (`TT = 0x08`) with magic `0x00000803` (`N × rows × cols`; any other
//! number of dimensions ≥ 2 is read the same way: one sample per leading index); labels have magic
//! `0x00000801` (`N` bytes).
//!
//! A file may be raw or gzip-compressed; this is decided by its first two bytes (`1f 8b`), not by
//! its name. Pixels are scaled to `[0, 1]` as `p / 255`. The decoder streams the (decompressed)
//! bytes straight into the `N × d` `f32` matrix in blocks of a few hundred rows, so the loader
//! never holds a second full copy of the data.
//!
//! Before allocating, the size the header claims is checked: against the file length for a raw
//! file (a shorter file is [`DataError::Truncated`], a longer one
//! [`DataError::TrailingData`]), against 1032 × the compressed length for gzip (deflate's
//! maximum expansion), and against [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES). A gzip
//! stream that ends early or fails its CRC is a [`DataError::Gzip`]. Every error names the file
//! and the byte offset (in the decompressed content).
//!
//! ```
//! use widealign_data::idx;
//! // two 2×3 images and their labels, written and read back
//! let pixels: Vec<u8> = (0..12).map(|i| (i * 20) as u8).collect();
//! let mut bytes = Vec::new();
//! idx::write(&mut bytes, &[2, 2, 3], &pixels).unwrap();
//! let images = idx::parse_images(&bytes, "in-memory").unwrap();
//! assert_eq!(images.x.shape(), (2, 6));
//! assert_eq!(images.sample_dims, vec![2, 3]);
//! assert_eq!(images.x[(1, 0)], 120.0 / 255.0);
//!
//! let mut lab = Vec::new();
//! idx::write(&mut lab, &[2], &[7, 3]).unwrap();
//! assert_eq!(idx::parse_labels(&lab, "labels").unwrap(), vec![7, 3]);
//! // a wrong magic number is an error naming the file and byte 0
//! let err = idx::parse_labels(&bytes, "labels").unwrap_err();
//! assert!(err.to_string().starts_with("labels: byte 0:"), "{err}");
//! ```

use std::io::Write;
use std::path::Path;

use widealign_tensor::Mat;

use crate::error::{DataError, Position, Result};
use crate::stream::Stream;

/// Magic number of an IDX image file (unsigned bytes, 3 dimensions).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX label file (unsigned bytes, 1 dimension).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// The IDX element-type code for unsigned bytes, the only type read here.
pub const TYPE_UBYTE: u8 = 0x08;
/// The largest number of dimensions accepted in an image file.
pub const MAX_DIMS: u8 = 16;

/// `p / 255` for every byte value `p`.
pub(crate) fn byte_scale_table(divisor: f32) -> [f32; 256] {
    let mut t = [0f32; 256];
    for (i, v) in t.iter_mut().enumerate() {
        *v = i as f32 / divisor;
    }
    t
}

/// Images read from an IDX file.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxImages {
    /// `N × d` pixels scaled to `[0, 1]`, one image per row (row-major flattening of the
    /// per-sample dimensions).
    pub x: Mat<f32>,
    /// The dimensions of one sample (e.g. `[28, 28]`); their product is `d`.
    pub sample_dims: Vec<usize>,
}

/// The header of an IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxHeader {
    /// All dimensions; the first is the number of samples.
    pub dims: Vec<usize>,
    /// Whether the file is gzip-compressed.
    pub gzip: bool,
}

impl IdxHeader {
    /// The number of samples (the first dimension).
    pub fn len(&self) -> usize {
        self.dims[0]
    }

    /// Whether the file holds no samples.
    pub fn is_empty(&self) -> bool {
        self.dims[0] == 0
    }

    /// Bytes per sample: the product of the remaining dimensions (1 for a label file).
    pub fn sample_len(&self) -> usize {
        self.dims[1..].iter().product()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Images,
    Labels,
}

fn read_header(s: &mut Stream<'_>, kind: Kind) -> Result<IdxHeader> {
    let magic = s.read_u32_be("the 4-byte magic number")?;
    let b = magic.to_be_bytes();
    let expected = match kind {
        Kind::Images => "an IDX image file (magic 0x00000803)",
        Kind::Labels => "an IDX label file (magic 0x00000801)",
    };
    let format = |message: String| DataError::Format {
        file: s.file.clone(),
        pos: Position::Byte(0),
        message,
    };
    if b[0] != 0 || b[1] != 0 {
        return Err(format(format!(
            "wrong magic number 0x{magic:08x}: expected {expected}"
        )));
    }
    if b[2] != TYPE_UBYTE {
        return Err(format(format!(
            "IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08): expected {expected}",
            b[2]
        )));
    }
    let nd = b[3];
    let ok = match kind {
        Kind::Images => (2..=MAX_DIMS).contains(&nd),
        Kind::Labels => nd == 1,
    };
    if !ok {
        let hint = if kind == Kind::Images && nd == 1 {
            " (a label file?)"
        } else if kind == Kind::Labels && nd >= 2 {
            " (an image file?)"
        } else {
            ""
        };
        return Err(format(format!(
            "wrong magic number 0x{magic:08x}{hint}: expected {expected}"
        )));
    }
    let mut dims = Vec::with_capacity(nd as usize);
    for _ in 0..nd {
        dims.push(s.read_u32_be("the dimension sizes")? as usize);
    }
    // Both the per-sample size and the total are bounded, so an empty file (N = 0) cannot
    // smuggle in an absurd sample size either.
    let per_sample: u128 = dims[1..].iter().map(|&d| d as u128).product();
    if per_sample > crate::MAX_PAYLOAD_BYTES as u128 {
        return Err(DataError::TooLarge {
            file: s.file.clone(),
            pos: Position::Byte(8),
            claimed: per_sample,
            message: format!(
                "per sample, more than the limit of {} bytes",
                crate::MAX_PAYLOAD_BYTES
            ),
        });
    }
    s.check_claim(per_sample * dims[0] as u128, Position::Byte(4))?;
    if kind == Kind::Images && dims[0] > 0 && dims[1..].contains(&0) {
        return Err(DataError::Format {
            file: s.file.clone(),
            pos: Position::Byte(4),
            message: format!("image dimensions {:?} describe empty images", &dims[1..]),
        });
    }
    Ok(IdxHeader { dims, gzip: s.gzip })
}

/// Rows decoded per block (about 256 KiB of pixels per block).
fn block_rows(d: usize) -> usize {
    ((1usize << 18) / d.max(1)).max(1)
}

fn read_images_from(s: &mut Stream<'_>) -> Result<IdxImages> {
    let h = read_header(s, Kind::Images)?;
    let n = h.dims[0];
    let d = h.sample_len();
    let mut x = Mat::<f32>::zeros(n, d);
    let lut = byte_scale_table(255.0);
    let rows_per_block = block_rows(d).min(n);
    let mut buf = vec![0u8; rows_per_block * d];
    let data = x.as_mut_slice();
    let mut i0 = 0;
    while i0 < n {
        let k = rows_per_block.min(n - i0);
        let block = &mut buf[..k * d];
        s.read_exact(block, "image pixels")?;
        // scatter the row-major block into the column-major matrix, one column at a time
        for j in 0..d {
            let col = &mut data[j * n + i0..j * n + i0 + k];
            for (r, v) in col.iter_mut().enumerate() {
                *v = lut[block[r * d + j] as usize];
            }
        }
        i0 += k;
    }
    s.finish()?;
    Ok(IdxImages {
        x,
        sample_dims: h.dims[1..].to_vec(),
    })
}

fn read_labels_from(s: &mut Stream<'_>) -> Result<Vec<usize>> {
    let h = read_header(s, Kind::Labels)?;
    let mut raw = vec![0u8; h.dims[0]];
    s.read_exact(&mut raw, "labels")?;
    s.finish()?;
    Ok(raw.into_iter().map(usize::from).collect())
}

/// Parses an IDX image file held in memory (raw or gzip). `file` names it in errors.
pub fn parse_images(bytes: &[u8], file: &str) -> Result<IdxImages> {
    read_images_from(&mut Stream::from_bytes(bytes, file))
}

/// Parses an IDX label file held in memory (raw or gzip). `file` names it in errors.
pub fn parse_labels(bytes: &[u8], file: &str) -> Result<Vec<usize>> {
    read_labels_from(&mut Stream::from_bytes(bytes, file))
}

/// Reads an IDX image file (raw or gzip), streaming it into the matrix.
pub fn read_images(path: &Path) -> Result<IdxImages> {
    read_images_from(&mut Stream::open(path)?)
}

/// Reads an IDX label file (raw or gzip).
pub fn read_labels(path: &Path) -> Result<Vec<usize>> {
    read_labels_from(&mut Stream::open(path)?)
}

/// Reads only the header of an IDX image (`images = true`) or label file, checking its claim
/// against the file size as a full read would.
pub fn read_header_of(path: &Path, images: bool) -> Result<IdxHeader> {
    let kind = if images { Kind::Images } else { Kind::Labels };
    read_header(&mut Stream::open(path)?, kind)
}

/// Checks every label against the class count; the error gives the label's byte offset in an
/// IDX label file (`8 + index`).
pub fn check_labels(labels: &[usize], classes: usize, file: &str) -> Result<()> {
    match labels.iter().position(|&l| l >= classes) {
        None => Ok(()),
        Some(i) => Err(DataError::LabelOutOfRange {
            file: file.to_string(),
            pos: Position::Byte(8 + i as u64),
            label: labels[i] as u64,
            classes,
        }),
    }
}

/// Writes an unsigned-byte IDX file with the given dimensions (`[N]` for labels, `[N, rows,
/// cols]` for images) and row-major data. Fails with `InvalidInput` when the data length is not
/// the product of the dimensions or a dimension exceeds `u32`.
pub fn write<W: Write>(mut w: W, dims: &[usize], data: &[u8]) -> std::io::Result<()> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    if dims.is_empty() || dims.len() > MAX_DIMS as usize {
        return Err(invalid(format!("{} dimensions", dims.len())));
    }
    let total = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid("dimension product overflows".into()))?;
    if total != data.len() {
        return Err(invalid(format!(
            "dimensions {dims:?} need {total} bytes, got {}",
            data.len()
        )));
    }
    w.write_all(&[0, 0, TYPE_UBYTE, dims.len() as u8])?;
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| invalid(format!("dimension {d} exceeds u32")))?;
        w.write_all(&d.to_be_bytes())?;
    }
    w.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn images(n: usize, r: usize, c: usize) -> (Vec<u8>, Vec<u8>) {
        let px: Vec<u8> = (0..n * r * c).map(|i| (i * 7 % 256) as u8).collect();
        let mut b = Vec::new();
        write(&mut b, &[n, r, c], &px).unwrap();
        (b, px)
    }

    #[test]
    fn reads_raw_and_gzip_identically() {
        let (raw, px) = images(700, 5, 3);
        let a = parse_images(&raw, "a").unwrap();
        let b = parse_images(&gz(&raw), "b").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.x.shape(), (700, 15));
        for i in [0, 1, 350, 699] {
            for j in 0..15 {
                assert_eq!(a.x[(i, j)], px[i * 15 + j] as f32 / 255.0);
            }
        }
    }

    #[test]
    fn truncated_raw_file_is_detected_before_allocation() {
        let (raw, _) = images(10, 4, 4);
        let cut = &raw[..raw.len() - 5];
        let e = parse_images(cut, "f.idx").unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { pos: Position::Byte(p), needed: 5, .. } if p == cut.len() as u64),
            "{e}"
        );
    }

    #[test]
    fn truncated_gzip_is_an_error_with_offset() {
        let (raw, _) = images(50, 8, 8);
        let z = gz(&raw);
        for cut in [z.len() - 4, z.len() / 2, 12] {
            let e = parse_images(&z[..cut], "f.gz").unwrap_err();
            assert!(
                matches!(e, DataError::Gzip { .. } | DataError::Truncated { .. }),
                "cut {cut}: {e}"
            );
            assert!(e.to_string().starts_with("f.gz: byte "), "{e}");
        }
    }

    #[test]
    fn corrupt_gzip_crc_is_an_error() {
        let (raw, _) = images(5, 2, 2);
        let mut z = gz(&raw);
        let n = z.len();
        z[n - 6] ^= 0xff; // CRC32 field of the trailer
        let e = parse_images(&z, "crc.gz").unwrap_err();
        assert!(matches!(e, DataError::Gzip { .. }), "{e}");
    }

    #[test]
    fn absurd_dimensions_are_rejected_without_allocating() {
        let mut b = vec![0, 0, 8, 3];
        for d in [4_000_000_000u32, 4_000_000_000, 4_000_000_000] {
            b.extend_from_slice(&d.to_be_bytes());
        }
        let e = parse_images(&b, "big").unwrap_err();
        assert!(matches!(e, DataError::TooLarge { .. }), "{e}");
        // plausible in total but far beyond what a small gzip file can hold
        let mut h = vec![0, 0, 8, 3];
        for d in [60_000u32, 28, 28] {
            h.extend_from_slice(&d.to_be_bytes());
        }
        let e = parse_images(&gz(&h), "small.gz").unwrap_err();
        assert!(matches!(e, DataError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("decompresses to at most"), "{e}");
    }

    #[test]
    fn wrong_magic_and_types() {
        let (raw, _) = images(2, 2, 2);
        let e = parse_labels(&raw, "lab").unwrap_err();
        assert!(e.to_string().contains("an image file?"), "{e}");
        let mut lab = Vec::new();
        write(&mut lab, &[3], &[1, 2, 3]).unwrap();
        let e = parse_images(&lab, "img").unwrap_err();
        assert!(e.to_string().contains("a label file?"), "{e}");
        let mut f = raw.clone();
        f[2] = 0x0d;
        let e = parse_images(&f, "float").unwrap_err();
        assert!(e.to_string().contains("element type 0x0d"), "{e}");
        let e = parse_images(b"PK\x03\x04zzzz", "zip").unwrap_err();
        assert!(
            e.to_string().contains("wrong magic number 0x504b0304"),
            "{e}"
        );
        let e = parse_images(&[0, 0], "tiny").unwrap_err();
        assert!(matches!(e, DataError::Truncated { .. }), "{e}");
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut lab = Vec::new();
        write(&mut lab, &[3], &[1, 2, 3]).unwrap();
        lab.push(9);
        let e = parse_labels(&lab, "lab").unwrap_err();
        assert!(
            matches!(
                e,
                DataError::TrailingData {
                    pos: Position::Byte(11),
                    ..
                }
            ),
            "{e}"
        );
        let e = parse_labels(&gz(&lab), "lab.gz").unwrap_err();
        assert!(
            matches!(
                e,
                DataError::TrailingData {
                    pos: Position::Byte(11),
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn label_range_check_names_the_byte() {
        let e = check_labels(&[1, 2, 10, 3], 10, "l").unwrap_err();
        assert_eq!(
            e.to_string(),
            "l: byte 10: label 10 is not below the class count 10"
        );
    }

    #[test]
    fn empty_file_with_absurd_sample_size_is_rejected() {
        // found by fuzzing: N = 0 with a huge per-sample size made the decoder allocate a
        // block buffer of that size
        let mut b = vec![0, 0, 8, 3];
        for d in [0u32, 0xffff_ffff, 0xffff_ffff] {
            b.extend_from_slice(&d.to_be_bytes());
        }
        let e = parse_images(&b, "zero").unwrap_err();
        assert!(
            matches!(
                e,
                DataError::TooLarge {
                    pos: Position::Byte(8),
                    ..
                }
            ),
            "{e}"
        );
        let mut b = vec![0, 0, 8, 2];
        for d in [0u32, 0x1000_0000] {
            b.extend_from_slice(&d.to_be_bytes());
        }
        assert_eq!(
            parse_images(&b, "zero").unwrap().x.shape(),
            (0, 0x1000_0000)
        );
    }

    #[test]
    fn zero_images_and_empty_images() {
        let mut b = Vec::new();
        write(&mut b, &[0, 28, 28], &[]).unwrap();
        assert_eq!(parse_images(&b, "z").unwrap().x.shape(), (0, 784));
        let mut b = Vec::new();
        write(&mut b, &[3, 0, 28], &[]).unwrap();
        assert!(matches!(
            parse_images(&b, "e").unwrap_err(),
            DataError::Format { .. }
        ));
    }
}
