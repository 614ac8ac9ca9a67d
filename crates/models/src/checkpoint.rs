//! Checkpoints: a self-describing header followed by raw little-endian floats.
//!
//! Layout (format version 1):
//!
//! | bytes | content |
//! |---|---|
//! | 0..8 | magic `WIDEALGN` |
//! | 8..12 | format version, `u32` little-endian (`1`) |
//! | 12..16 | header length `H`, `u32` little-endian (at most 64 KiB) |
//! | 16..16+H | UTF-8 header, one `key=value` per line |
//! | 16+H.. | the tensors in header order, each value little-endian `f32`/`f64`, matrices column-major |
//!
//! The header names the model kind (`mlp`/`rnn`), every spec field, the seed, the dtype, each
//! tensor's name and shape, the payload size and, last, an FNV-1a-64 checksum of the header lines
//! above it followed by the payload. Floats in
//! the header are written with Rust's shortest round-trip formatting, so a round trip is
//! bit-exact.
//!
//! Loading checks, before allocating anything for the tensors: magic, version, that the header
//! fits in the file, that every key is known and present exactly once, that the spec validates,
//! that the kind and dtype are the requested ones, that the tensor list equals the one the spec
//! implies, and that the payload size computed from the shapes (with overflow checks) equals both
//! the header's `payload_bytes` and the bytes actually left in the file. The checksum is verified
//! after reading, so a changed header value (say a different `w_std`) is caught too. Every failure is a [`ModelError::Checkpoint`] naming the file and the problem.
//! Saving writes a temporary file next to the target and renames it, so an interrupted save never
//! leaves a broken checkpoint.
//!
//! ```
//! use widealign_models::{Mlp, MlpSpec};
//! use widealign_tensor::Activation;
//! let dir = std::env::temp_dir().join(format!("widealign-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("net.ckpt");
//! let net = Mlp::<f32>::new(&MlpSpec::new(3, vec![5], 2, Activation::Erf), 7).unwrap();
//! net.save(&path).unwrap();
//! assert_eq!(Mlp::<f32>::load(&path).unwrap(), net);
//! assert!(Mlp::<f64>::load(&path).is_err()); // dtype mismatch is an error, not a silent cast
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use widealign_tensor::{Activation, Float, Mat};

use crate::{BiasInit, Mlp, MlpSpec, ModelError, Parameterization, Rnn, RnnSpec};

/// The 8 bytes every checkpoint starts with.
pub const MAGIC: &[u8; 8] = b"WIDEALGN";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest accepted header, in bytes.
pub const MAX_HEADER_BYTES: u32 = 1 << 16;
const PREFIX: u64 = 16;

/// What a checkpoint holds, read from its header only (see [`inspect`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointInfo {
    /// `"mlp"` or `"rnn"`.
    pub kind: String,
    /// `"f32"` or `"f64"`.
    pub dtype: String,
    /// The seed the network was drawn from.
    pub seed: u64,
    /// The full header text (`key=value` lines).
    pub header: String,
}

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// FNV-1a, 64 bit, over a byte stream.
#[derive(Clone, Copy)]
pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A tensor to write: name, shape and values.
struct TensorOut<'a, T> {
    name: String,
    shape: Vec<usize>,
    values: &'a [T],
}

fn shape_text(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// Values per write/read chunk.
const IO_CHUNK: usize = 1 << 14;

fn encode_chunk<T: Float>(vals: &[T], buf: &mut Vec<u8>) {
    buf.clear();
    for &v in vals {
        v.write_le(buf);
    }
}

fn write_checkpoint<T: Float>(
    path: &Path,
    kind: &str,
    fields: Vec<(&str, String)>,
    tensors: Vec<TensorOut<'_, T>>,
) -> Result<(), ModelError> {
    let payload: u64 = tensors
        .iter()
        .map(|t| (t.values.len() * T::BYTES) as u64)
        .sum();
    let mut header = format!("kind={kind}\ndtype={}\n", T::NAME);
    for (k, v) in fields {
        header.push_str(&format!("{k}={v}\n"));
    }
    for t in &tensors {
        header.push_str(&format!("tensor={} {}\n", t.name, shape_text(&t.shape)));
    }
    header.push_str(&format!("payload_bytes={payload}\n"));
    // The checksum covers the header above it and the payload.
    let mut hash = Fnv::new();
    hash.update(header.as_bytes());
    let mut buf = Vec::with_capacity(IO_CHUNK * T::BYTES);
    for t in &tensors {
        for chunk in t.values.chunks(IO_CHUNK) {
            encode_chunk(chunk, &mut buf);
            hash.update(&buf);
        }
    }
    header.push_str(&format!("checksum=fnv1a64:{:016x}\n", hash.0));
    if header.len() > MAX_HEADER_BYTES as usize {
        return Err(bad(
            path,
            format!(
                "header of {} bytes exceeds the {MAX_HEADER_BYTES}-byte limit",
                header.len()
            ),
        ));
    }
    let tmp = temp_path(path)?;
    let mut write = || -> std::io::Result<()> {
        let mut w = BufWriter::new(File::create(&tmp)?);
        w.write_all(MAGIC)?;
        w.write_all(&FORMAT_VERSION.to_le_bytes())?;
        w.write_all(&(header.len() as u32).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for t in &tensors {
            for chunk in t.values.chunks(IO_CHUNK) {
                encode_chunk(chunk, &mut buf);
                w.write_all(&buf)?;
            }
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

/// The temporary file beside `path` an atomic save writes first (then renames): hidden,
/// named after the target and this process.
pub(crate) fn temp_path(path: &Path) -> Result<PathBuf, ModelError> {
    let file_name = path
        .file_name()
        .ok_or_else(|| bad(path, "path has no file name"))?;
    Ok(path.with_file_name(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    )))
}

/// The parsed header of a checkpoint, with the file open at the start of the payload.
struct Header {
    path: PathBuf,
    fields: BTreeMap<String, String>,
    tensors: Vec<(String, Vec<usize>)>,
    payload_bytes: u64,
    checksum: u64,
    /// FNV-1a state after hashing the header up to the checksum line.
    body_hash: Fnv,
    text: String,
    reader: BufReader<File>,
}

const KNOWN_KEYS: &[&str] = &[
    "kind",
    "dtype",
    "seed",
    "input_dim",
    "hidden",
    "width",
    "output_dim",
    "activation",
    "param",
    "w_std",
    "b_std",
    "bias_init",
    "payload_bytes",
    "checksum",
];

fn read_header(path: &Path) -> Result<Header, ModelError> {
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let file_len = file.metadata().map_err(|e| io_err(path, e))?.len();
    if file_len < PREFIX {
        return Err(bad(
            path,
            format!("truncated: {file_len} bytes, shorter than the {PREFIX}-byte preamble"),
        ));
    }
    let mut reader = BufReader::new(file);
    let mut prefix = [0u8; PREFIX as usize];
    reader
        .read_exact(&mut prefix)
        .map_err(|e| io_err(path, e))?;
    if &prefix[..8] != MAGIC {
        return Err(bad(
            path,
            "not a widealign checkpoint (the file does not start with WIDEALGN)",
        ));
    }
    let version = u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(bad(
            path,
            format!("format version {version} is not supported (this build reads version {FORMAT_VERSION})"),
        ));
    }
    let header_len = u32::from_le_bytes(prefix[12..16].try_into().expect("4 bytes"));
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(
            path,
            format!("header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"),
        ));
    }
    if PREFIX + header_len as u64 > file_len {
        return Err(bad(
            path,
            format!(
                "truncated: header of {header_len} bytes announced, only {} bytes follow the preamble",
                file_len - PREFIX
            ),
        ));
    }
    let mut raw = vec![0u8; header_len as usize];
    reader.read_exact(&mut raw).map_err(|e| io_err(path, e))?;
    let text = String::from_utf8(raw).map_err(|_| bad(path, "header is not valid UTF-8"))?;
    let body_len = match text.rfind("checksum=") {
        Some(i) if i == 0 || text.as_bytes()[i - 1] == b'\n' => i,
        _ => return Err(bad(path, "header lacks the key \"checksum\"")),
    };
    if text[body_len..].trim_end_matches('\n').contains('\n') {
        return Err(bad(path, "header: checksum must be the last line"));
    }
    let mut body_hash = Fnv::new();
    body_hash.update(&text.as_bytes()[..body_len]);
    let mut fields = BTreeMap::new();
    let mut tensors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad(path, format!("header line {line_no} has no '=': {line:?}")))?;
        if key == "tensor" {
            let (name, shape) = value.split_once(' ').ok_or_else(|| {
                bad(
                    path,
                    format!("header line {line_no}: tensor entry {value:?} lacks a shape"),
                )
            })?;
            let dims = shape
                .split('x')
                .map(|d| d.parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| {
                    bad(
                        path,
                        format!("header line {line_no}: bad shape {shape:?} for tensor {name}"),
                    )
                })?;
            tensors.push((name.to_string(), dims));
            continue;
        }
        if !KNOWN_KEYS.contains(&key) {
            return Err(bad(
                path,
                format!("header line {line_no}: unknown key {key:?}"),
            ));
        }
        if fields.insert(key.to_string(), value.to_string()).is_some() {
            return Err(bad(
                path,
                format!("header line {line_no}: key {key:?} appears twice"),
            ));
        }
    }
    let get = |k: &str| {
        fields
            .get(k)
            .ok_or_else(|| bad(path, format!("header lacks the key {k:?}")))
    };
    let payload_bytes: u64 = get("payload_bytes")?
        .parse()
        .map_err(|_| bad(path, "header: payload_bytes is not an integer"))?;
    let checksum = get("checksum")?
        .strip_prefix("fnv1a64:")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| {
            bad(
                path,
                "header: checksum is not of the form fnv1a64:<16 hex digits>",
            )
        })?;
    let available = file_len - PREFIX - header_len as u64;
    if payload_bytes != available {
        return Err(bad(
            path,
            if available < payload_bytes {
                format!("truncated: header announces {payload_bytes} payload bytes, the file holds {available}")
            } else {
                format!("{} trailing bytes after the {payload_bytes} payload bytes the header announces", available - payload_bytes)
            },
        ));
    }
    Ok(Header {
        path: path.to_path_buf(),
        fields,
        tensors,
        payload_bytes,
        checksum,
        body_hash,
        text,
        reader,
    })
}

impl Header {
    fn field(&self, k: &str) -> Result<&str, ModelError> {
        self.fields
            .get(k)
            .map(|s| s.as_str())
            .ok_or_else(|| bad(&self.path, format!("header lacks the key {k:?}")))
    }

    fn parse<V: std::str::FromStr>(&self, k: &str) -> Result<V, ModelError> {
        let v = self.field(k)?;
        v.parse()
            .map_err(|_| bad(&self.path, format!("header: cannot parse {k}={v:?}")))
    }

    fn info(&self) -> Result<CheckpointInfo, ModelError> {
        Ok(CheckpointInfo {
            kind: self.field("kind")?.to_string(),
            dtype: self.field("dtype")?.to_string(),
            seed: self.parse("seed")?,
            header: self.text.clone(),
        })
    }

    fn expect_kind<T: Float>(&self, kind: &str) -> Result<(), ModelError> {
        let found = self.field("kind")?;
        if found != kind {
            return Err(bad(
                &self.path,
                format!("holds a model of kind {found:?}, expected {kind:?}"),
            ));
        }
        let dtype = self.field("dtype")?;
        if dtype != T::NAME {
            return Err(bad(
                &self.path,
                format!(
                    "holds {dtype} values, requested {} (load with the stored type, then cast)",
                    T::NAME
                ),
            ));
        }
        Ok(())
    }

    fn common(&self) -> Result<(Activation, Parameterization, BiasInit), ModelError> {
        let act_name = self.field("activation")?;
        let activation: Activation =
            act_name
                .parse()
                .map_err(|e: widealign_tensor::activation::UnknownActivation| {
                    bad(&self.path, format!("header: {e}"))
                })?;
        let (w_std, b_std): (f64, f64) = (self.parse("w_std")?, self.parse("b_std")?);
        let param = match self.field("param")? {
            "ntk" => Parameterization::Ntk { w_std, b_std },
            "standard" => Parameterization::Standard { w_std, b_std },
            other => {
                return Err(bad(
                    &self.path,
                    format!(
                        "header: unknown parameterisation {other:?} (expected ntk or standard)"
                    ),
                ))
            }
        };
        let bias_init = match self.field("bias_init")? {
            "zero" => BiasInit::Zero,
            "gaussian" => BiasInit::Gaussian,
            other => {
                return Err(bad(
                    &self.path,
                    format!("header: unknown bias_init {other:?} (expected zero or gaussian)"),
                ))
            }
        };
        Ok((activation, param, bias_init))
    }

    fn spec_error(&self, e: ModelError) -> ModelError {
        bad(
            &self.path,
            format!("header describes an invalid model: {e}"),
        )
    }

    /// Checks the tensor list against the one the spec implies and the payload size, then reads
    /// the values (the only allocation proportional to the model).
    fn read_tensors<T: Float>(
        mut self,
        expected: &[(String, Vec<usize>)],
    ) -> Result<Vec<Vec<T>>, ModelError> {
        if self.tensors.len() != expected.len() {
            return Err(bad(
                &self.path,
                format!(
                    "header lists {} tensors, the described model has {}",
                    self.tensors.len(),
                    expected.len()
                ),
            ));
        }
        let mut total: u64 = 0;
        for ((name, shape), (ename, eshape)) in self.tensors.iter().zip(expected) {
            if name != ename || shape != eshape {
                return Err(bad(
                    &self.path,
                    format!(
                        "tensor {name} {} does not match the described model's {ename} {}",
                        shape_text(shape),
                        shape_text(eshape)
                    ),
                ));
            }
            let bytes = shape
                .iter()
                .try_fold(T::BYTES as u64, |acc, &d| acc.checked_mul(d as u64))
                .and_then(|b| total.checked_add(b));
            total = bytes.ok_or_else(|| bad(&self.path, "tensor sizes overflow"))?;
        }
        if total != self.payload_bytes {
            return Err(bad(
                &self.path,
                format!(
                    "the tensor shapes need {total} payload bytes, the header announces {} (and the file holds that many)",
                    self.payload_bytes
                ),
            ));
        }
        let mut hash = self.body_hash;
        let mut buf = vec![0u8; IO_CHUNK * T::BYTES];
        let mut out = Vec::with_capacity(expected.len());
        for (_, shape) in expected {
            let n: usize = shape.iter().product();
            let mut vals = Vec::with_capacity(n);
            while vals.len() < n {
                let take = (n - vals.len()).min(IO_CHUNK);
                let bytes = &mut buf[..take * T::BYTES];
                self.reader
                    .read_exact(bytes)
                    .map_err(|e| io_err(&self.path, e))?;
                hash.update(bytes);
                vals.extend(bytes.chunks_exact(T::BYTES).map(T::read_le));
            }
            out.push(vals);
        }
        if hash.0 != self.checksum {
            return Err(bad(
                &self.path,
                format!(
                    "payload checksum fnv1a64:{:016x} does not match the header's fnv1a64:{:016x} (corrupted file)",
                    hash.0, self.checksum
                ),
            ));
        }
        Ok(out)
    }
}

/// Reads only the header of a checkpoint: kind, dtype, seed and the header text.
///
/// # Errors
/// [`ModelError::Io`] if the file cannot be read; [`ModelError::Checkpoint`] if the preamble or
/// header is malformed or the file length disagrees with the header.
pub fn inspect(path: &Path) -> Result<CheckpointInfo, ModelError> {
    read_header(path)?.info()
}

fn mat_from<T: Float>(rows: usize, cols: usize, vals: Vec<T>) -> Mat<T> {
    Mat::from_vec(rows, cols, vals)
}

impl<T: Float> Mlp<T> {
    pub(crate) fn tensor_list(spec: &MlpSpec) -> Vec<(String, Vec<usize>)> {
        let mut v = Vec::new();
        for (i, (fan_in, fan_out)) in spec.layer_dims().into_iter().enumerate() {
            v.push((format!("layer{}.weight", i + 1), vec![fan_out, fan_in]));
            v.push((format!("layer{}.bias", i + 1), vec![fan_out]));
        }
        v
    }

    /// Saves the network (spec, seed and parameters) to `path` (format in [`crate::checkpoint`]).
    ///
    /// # Errors
    /// [`ModelError::Io`] naming the file if it cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let s = &self.spec;
        let hidden = s
            .hidden
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let tensors = Self::tensor_list(s)
            .into_iter()
            .zip(self.params())
            .map(|((name, shape), values)| TensorOut {
                name,
                shape,
                values,
            })
            .collect();
        write_checkpoint(
            path,
            "mlp",
            spec_fields(
                self.seed,
                s.activation,
                s.param,
                s.bias_init,
                vec![
                    ("input_dim", s.input_dim.to_string()),
                    ("hidden", hidden),
                    ("output_dim", s.output_dim.to_string()),
                ],
            ),
            tensors,
        )
    }

    /// Loads a network saved by [`Mlp::save`] with the same float type; bit-exact.
    ///
    /// # Errors
    /// [`ModelError::Io`] if the file cannot be read; [`ModelError::Checkpoint`] naming the file
    /// if it is truncated, corrupted, holds an RNN or another dtype, or its header and payload
    /// disagree.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let h = read_header(path)?;
        h.expect_kind::<T>("mlp")?;
        let (activation, param, bias_init) = h.common()?;
        let hidden_text = h.field("hidden")?;
        let hidden = if hidden_text.is_empty() {
            Vec::new()
        } else {
            hidden_text
                .split(',')
                .map(|w| w.parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad(path, format!("header: cannot parse hidden={hidden_text:?}")))?
        };
        let spec = MlpSpec {
            input_dim: h.parse("input_dim")?,
            hidden,
            output_dim: h.parse("output_dim")?,
            activation,
            param,
            bias_init,
        };
        spec.validate().map_err(|e| h.spec_error(e))?;
        let seed = h.parse("seed")?;
        let mut vals = h.read_tensors::<T>(&Self::tensor_list(&spec))?.into_iter();
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for (fan_in, fan_out) in spec.layer_dims() {
            weights.push(mat_from(
                fan_out,
                fan_in,
                vals.next().expect("checked count"),
            ));
            biases.push(vals.next().expect("checked count"));
        }
        Ok(Mlp {
            spec,
            seed,
            weights,
            biases,
        })
    }
}

fn spec_fields(
    seed: u64,
    activation: Activation,
    param: Parameterization,
    bias_init: BiasInit,
    dims: Vec<(&'static str, String)>,
) -> Vec<(&'static str, String)> {
    let mut f = vec![("seed", seed.to_string())];
    f.extend(dims);
    f.extend([
        ("activation", activation.name().to_string()),
        ("param", param.name().to_string()),
        ("w_std", format!("{:?}", param.w_std())),
        ("b_std", format!("{:?}", param.b_std())),
        (
            "bias_init",
            match bias_init {
                BiasInit::Zero => "zero",
                BiasInit::Gaussian => "gaussian",
            }
            .to_string(),
        ),
    ]);
    f
}

impl<T: Float> Rnn<T> {
    pub(crate) fn tensor_list(spec: &RnnSpec) -> Vec<(String, Vec<usize>)> {
        let (i, n, c) = (spec.input_dim, spec.width, spec.output_dim);
        [
            ("w_in", vec![n, i]),
            ("w_rec", vec![n, n]),
            ("b", vec![n]),
            ("w_out", vec![c, n]),
            ("b_out", vec![c]),
            ("r0", vec![n]),
        ]
        .into_iter()
        .map(|(name, shape)| (name.to_string(), shape))
        .collect()
    }

    /// Saves the network (spec, seed and parameters) to `path` (format in [`crate::checkpoint`]).
    ///
    /// # Errors
    /// [`ModelError::Io`] naming the file if it cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let s = &self.spec;
        let tensors = Self::tensor_list(s)
            .into_iter()
            .zip(self.params())
            .map(|((name, shape), values)| TensorOut {
                name,
                shape,
                values,
            })
            .collect();
        write_checkpoint(
            path,
            "rnn",
            spec_fields(
                self.seed,
                s.activation,
                s.param,
                s.bias_init,
                vec![
                    ("input_dim", s.input_dim.to_string()),
                    ("width", s.width.to_string()),
                    ("output_dim", s.output_dim.to_string()),
                ],
            ),
            tensors,
        )
    }

    /// Loads a network saved by [`Rnn::save`] with the same float type; bit-exact.
    ///
    /// # Errors
    /// As [`Mlp::load`].
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let h = read_header(path)?;
        h.expect_kind::<T>("rnn")?;
        let (activation, param, bias_init) = h.common()?;
        let spec = RnnSpec {
            input_dim: h.parse("input_dim")?,
            width: h.parse("width")?,
            output_dim: h.parse("output_dim")?,
            activation,
            param,
            bias_init,
        };
        spec.validate().map_err(|e| h.spec_error(e))?;
        let seed = h.parse("seed")?;
        let mut v = h.read_tensors::<T>(&Self::tensor_list(&spec))?.into_iter();
        let (i, n, c) = (spec.input_dim, spec.width, spec.output_dim);
        let mut next = || v.next().expect("checked count");
        Ok(Rnn {
            w_in: mat_from(n, i, next()),
            w_rec: mat_from(n, n, next()),
            b: next(),
            w_out: mat_from(c, n, next()),
            b_out: next(),
            r0: next(),
            spec,
            seed,
        })
    }
}
