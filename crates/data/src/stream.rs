//! Counted, error-mapping input for the binary parsers (IDX, CIFAR-10), raw or gzip.
//!
//! A [`Stream`] knows how much content it can hold before any payload is allocated: exactly the
//! file length for a raw file, and at most [`MAX_DEFLATE_RATIO`] times the compressed length
//! for a gzip file (deflate cannot expand a byte into more than 1032 bytes). A header's claim is
//! checked against that bound and against [`MAX_PAYLOAD_BYTES`] by [`Stream::check_claim`]
//! before the caller allocates.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Position, Result};

/// The first two bytes of every gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Deflate's maximum expansion: one compressed byte never decodes to more than 1032 bytes.
pub(crate) const MAX_DEFLATE_RATIO: u64 = 1032;

/// The largest payload (decoded bytes after the header) any binary file may claim: 4 GiB.
pub const MAX_PAYLOAD_BYTES: u64 = 1 << 32;

/// How much decoded content a stream can hold.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Budget {
    /// Raw content of exactly this many bytes.
    Exact(u64),
    /// Gzip content of at most this many decoded bytes (compressed length × 1032).
    AtMost { compressed: u64, max: u64 },
}

/// A reader that counts decoded bytes and turns failures into [`DataError`]s naming the file.
pub(crate) struct Stream<'a> {
    reader: Box<dyn Read + 'a>,
    /// The file name used in errors.
    pub file: String,
    /// Decoded bytes consumed so far.
    pub offset: u64,
    /// Whether the content is gzip-compressed.
    pub gzip: bool,
    /// How much content there can be.
    pub budget: Budget,
}

fn budget_for(gzip: bool, len: u64) -> Budget {
    if gzip {
        Budget::AtMost {
            compressed: len,
            max: len.saturating_mul(MAX_DEFLATE_RATIO),
        }
    } else {
        Budget::Exact(len)
    }
}

impl<'a> Stream<'a> {
    /// A stream over bytes in memory; gzip is detected from the first two bytes.
    pub fn from_bytes(bytes: &'a [u8], file: &str) -> Stream<'a> {
        let gzip = bytes.starts_with(&GZIP_MAGIC);
        let reader: Box<dyn Read + 'a> = if gzip {
            Box::new(MultiGzDecoder::new(bytes))
        } else {
            Box::new(bytes)
        };
        Stream {
            reader,
            file: file.to_string(),
            offset: 0,
            gzip,
            budget: budget_for(gzip, bytes.len() as u64),
        }
    }

    /// Opens a file; gzip is detected from its first two bytes, not its name.
    pub fn open(path: &Path) -> Result<Stream<'static>> {
        let name = path.display().to_string();
        let mut f = File::open(path).map_err(|e| DataError::io(&name, e))?;
        let len = f.metadata().map_err(|e| DataError::io(&name, e))?.len();
        let mut head = [0u8; 2];
        let mut got = 0;
        while got < 2 {
            match f.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DataError::io(&name, e)),
            }
        }
        f.seek(SeekFrom::Start(0))
            .map_err(|e| DataError::io(&name, e))?;
        let gzip = got == 2 && head == GZIP_MAGIC;
        let reader: Box<dyn Read> = if gzip {
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, f)))
        } else {
            Box::new(f)
        };
        Ok(Stream {
            reader,
            file: name,
            offset: 0,
            gzip,
            budget: budget_for(gzip, len),
        })
    }

    fn map_io(&self, e: std::io::Error, at: u64) -> DataError {
        if self.gzip {
            let message = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "the compressed stream ends early (truncated file)".to_string()
            } else {
                e.to_string()
            };
            DataError::Gzip {
                file: self.file.clone(),
                pos: Position::Byte(at),
                message,
            }
        } else {
            DataError::io(&self.file, e)
        }
    }

    /// Fills `buf` completely or fails with [`DataError::Truncated`] at the offset where the
    /// content ended (or [`DataError::Gzip`] when the compressed stream is broken).
    pub fn read_exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        let mut got = 0usize;
        while got < buf.len() {
            match self.reader.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(DataError::Truncated {
                        file: self.file.clone(),
                        pos: Position::Byte(self.offset + got as u64),
                        what,
                        needed: (buf.len() - got) as u64,
                    })
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.map_io(e, self.offset + got as u64)),
            }
        }
        self.offset += got as u64;
        Ok(())
    }

    /// Reads a big-endian `u32`.
    pub fn read_u32_be(&mut self, what: &'static str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b, what)?;
        Ok(u32::from_be_bytes(b))
    }

    /// Checks that `claimed` payload bytes following the current offset fit in the content and
    /// in the sane limit, before anything of that size is allocated. `at` is the header field
    /// that makes the claim.
    pub fn check_claim(&self, claimed: u128, at: Position) -> Result<()> {
        if claimed > MAX_PAYLOAD_BYTES as u128 {
            return Err(DataError::TooLarge {
                file: self.file.clone(),
                pos: at,
                claimed,
                message: format!("more than the limit of {MAX_PAYLOAD_BYTES} bytes"),
            });
        }
        let end = self.offset as u128 + claimed;
        match self.budget {
            Budget::Exact(total) => {
                if end > total as u128 {
                    return Err(DataError::Truncated {
                        file: self.file.clone(),
                        pos: Position::Byte(total),
                        what: "the data the header describes",
                        needed: (end - total as u128) as u64,
                    });
                }
                if end < total as u128 {
                    return Err(DataError::TrailingData {
                        file: self.file.clone(),
                        pos: Position::Byte(end as u64),
                    });
                }
            }
            Budget::AtMost { compressed, max } => {
                if end > max as u128 {
                    return Err(DataError::TooLarge {
                        file: self.file.clone(),
                        pos: at,
                        claimed,
                        message: format!(
                            "but a gzip file of {compressed} bytes decompresses to at most {max} bytes"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Confirms the content ends here (for gzip this also verifies the CRC and length trailer).
    pub fn finish(&mut self) -> Result<()> {
        let mut b = [0u8; 1];
        loop {
            match self.reader.read(&mut b) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(DataError::TrailingData {
                        file: self.file.clone(),
                        pos: Position::Byte(self.offset),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.map_io(e, self.offset)),
            }
        }
    }
}
