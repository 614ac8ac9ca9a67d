//! Parameters in the [safetensors](https://huggingface.co/docs/safetensors) format, which
//! PyTorch (`safetensors.torch.load_file`), JAX/Flax and NumPy (`safetensors.numpy.load_file`)
//! read directly.
//!
//! Layout: an 8-byte little-endian `u64` `N`, then `N` bytes of UTF-8 JSON (padded with spaces
//! to a multiple of 8), then the data section. The JSON maps each tensor name to
//! `{"dtype": "F32"|"F64", "shape": [..], "data_offsets": [begin, end]}` (offsets into the data
//! section, tensors stored back to back in row-major order, little-endian) and holds string
//! metadata under `"__metadata__"`.
//!
//! widealign adds one metadata entry, `"checksum": "fnv1a64:<16 hex digits>"`: FNV-1a-64 over
//! the header bytes (with those 16 digits written as zeros) followed by the data section. Other
//! tools ignore it; [`SafetensorsFile::open`] verifies it, so a flipped bit anywhere in the file
//! is an error, not a silently different network.
//!
//! Matrices are written row-major with shape `[rows, cols]`: an MLP layer's weight is
//! `[fan_out, fan_in]` (PyTorch's `nn.Linear.weight` layout), whatever the in-memory
//! column-major storage ([`network_tensors`] transposes, [`load_network`] transposes back,
//! bit-exactly).
//!
//! Reading treats the file as untrusted: the header length must fit in the file and in
//! [`MAX_HEADER_BYTES`], the JSON must parse, every tensor's byte range must match its dtype and
//! shape (with overflow checks), lie inside the data section and the ranges must tile it exactly;
//! the checksum is verified by streaming the file. Tensor values are allocated only when the
//! caller asks for a tensor by name *and expected shape* ([`SafetensorsFile::read`]), so the
//! size of an allocation never comes from the file.
//!
//! ```
//! use std::collections::BTreeMap;
//! use widealign_models::{safetensors, Mlp, MlpSpec};
//! use widealign_tensor::Activation;
//! let dir = std::env::temp_dir().join(format!("widealign-st-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("net.safetensors");
//! let net = Mlp::<f32>::new(&MlpSpec::new(3, vec![5], 2, Activation::Erf), 7).unwrap();
//! let meta = BTreeMap::from([("note".to_string(), "hello".to_string())]);
//! safetensors::write(&path, &safetensors::network_tensors(&net), &meta).unwrap();
//! let file = safetensors::SafetensorsFile::open(&path).unwrap();
//! assert_eq!(file.metadata()["note"], "hello");
//! let mut back = Mlp::<f32>::new(&MlpSpec::new(3, vec![5], 2, Activation::Erf), 0).unwrap();
//! safetensors::load_network(&file, &mut back, "").unwrap();
//! assert_eq!(back.params(), net.params());
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use widealign_tensor::Float;

use crate::checkpoint::Fnv;
use crate::{ModelError, Network};

/// Largest accepted JSON header (16 MiB; the reference implementation allows 100 MB).
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// The metadata key of widealign's checksum.
pub const CHECKSUM_KEY: &str = "checksum";
const CHECKSUM_PREFIX: &str = "fnv1a64:";
const ZERO_DIGITS: &str = "0000000000000000";

/// One tensor to write: name, shape and row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<'a, T: Float> {
    /// Name (unique in the file).
    pub name: String,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub values: Cow<'a, [T]>,
}

fn bad(path: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn dtype_name<T: Float>() -> &'static str {
    if T::BYTES == 4 {
        "F32"
    } else {
        "F64"
    }
}

/// The transpose of the row-major `a × b` matrix `v`, row-major (`b × a`), in square tiles
/// so that the reads and the writes of a tile stay in cache (a plain loop strides through
/// memory on one side and costs a cache miss per value for large matrices: 1.5 s instead of
/// 0.1 s for the three 4096 × 4096 tensors of a 205 MB checkpoint; docs/cluster.md).
fn transpose<T: Float>(a: usize, b: usize, v: &[T]) -> Vec<T> {
    const TILE: usize = 32;
    let mut out = vec![T::cast(0.0); a * b];
    for i0 in (0..a).step_by(TILE) {
        let i1 = (i0 + TILE).min(a);
        for j0 in (0..b).step_by(TILE) {
            let j1 = (j0 + TILE).min(b);
            for i in i0..i1 {
                let row = &v[i * b + j0..i * b + j1];
                for (j, &x) in (j0..j1).zip(row) {
                    out[j * a + i] = x;
                }
            }
        }
    }
    out
}

/// Column-major `rows × cols` values to row-major (the transpose's storage).
fn col_to_row_major<T: Float>(rows: usize, cols: usize, v: &[T]) -> Vec<T> {
    // column-major rows × cols is row-major cols × rows
    transpose(cols, rows, v)
}

/// Row-major `rows × cols` values to column-major storage.
fn row_to_col_major<T: Float>(rows: usize, cols: usize, v: &[T]) -> Vec<T> {
    transpose(rows, cols, v)
}

impl<'a, T: Float> Tensor<'a, T> {
    /// A tensor from the in-memory layout of widealign's models: a 2-D shape's values are
    /// column-major (and converted to row-major here, one copy); other shapes are borrowed.
    pub fn column_major(name: String, shape: Vec<usize>, values: &'a [T]) -> Self {
        let values = match shape[..] {
            [rows, cols] => Cow::Owned(col_to_row_major(rows, cols, values)),
            _ => Cow::Borrowed(values),
        };
        Tensor {
            name,
            shape,
            values,
        }
    }
}

/// The parameters of `net` as safetensors tensors, named and shaped by
/// [`Network::param_layout`], matrices converted to row-major.
pub fn network_tensors<M: Network>(net: &M) -> Vec<Tensor<'_, M::Scalar>> {
    net.param_layout()
        .into_iter()
        .zip(net.params())
        .map(|((name, shape), values)| Tensor::column_major(name, shape, values))
        .collect()
}

/// Overwrites the parameters of `net` with the tensors `prefix + name` of `file` (names and
/// shapes from [`Network::param_layout`]; the network's spec decides what is read).
///
/// # Errors
/// [`ModelError::Checkpoint`] when a tensor is missing or has another dtype or shape.
pub fn load_network<M: Network>(
    file: &SafetensorsFile,
    net: &mut M,
    prefix: &str,
) -> Result<(), ModelError> {
    let layout = net.param_layout();
    for ((name, shape), dst) in layout.into_iter().zip(net.params_mut()) {
        dst.copy_from_slice(
            &file.read_column_major::<M::Scalar>(&format!("{prefix}{name}"), &shape)?,
        );
    }
    Ok(())
}

/// Writes `tensors` and `metadata` to `path` atomically (a temporary file beside it, synced,
/// then renamed), adding the checksum entry to the metadata.
///
/// # Errors
/// [`ModelError::Checkpoint`] for duplicate names, a metadata key `checksum` or values that do
/// not match their shapes; [`ModelError::Io`] naming the file if it cannot be written.
pub fn write<T: Float>(
    path: &Path,
    tensors: &[Tensor<'_, T>],
    metadata: &BTreeMap<String, String>,
) -> Result<(), ModelError> {
    if metadata.contains_key(CHECKSUM_KEY) {
        return Err(bad(path, "the metadata key \"checksum\" is reserved"));
    }
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for t in tensors {
        if t.values.len() != t.shape.iter().product::<usize>() {
            return Err(bad(
                path,
                format!(
                    "tensor {} has {} values for shape {:?}",
                    t.name,
                    t.values.len(),
                    t.shape
                ),
            ));
        }
        let end = offset + t.values.len() * T::BYTES;
        let entry = serde_json::json!({
            "dtype": dtype_name::<T>(),
            "shape": t.shape,
            "data_offsets": [offset, end],
        });
        if t.name == "__metadata__" || header.insert(t.name.clone(), entry).is_some() {
            return Err(bad(path, format!("tensor name {:?} used twice", t.name)));
        }
        offset = end;
    }
    let mut meta: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    meta.insert(
        CHECKSUM_KEY.into(),
        format!("{CHECKSUM_PREFIX}{ZERO_DIGITS}").into(),
    );
    header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    let mut text = serde_json::to_string(&header)
        .map_err(|e| bad(path, format!("cannot encode the header: {e}")))?;
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    // One pass over the values: the header goes out with the checksum's digits as zeros, the
    // data is hashed as it is written, and the digits are written in place at the end.
    let placeholder = format!("\"{CHECKSUM_PREFIX}{ZERO_DIGITS}\"");
    let digits_at = 8
        + text
            .rfind(&placeholder)
            .expect("the placeholder was just written")
        + 1
        + CHECKSUM_PREFIX.len();
    let tmp = crate::checkpoint::temp_path(path)?;
    let write = || -> std::io::Result<()> {
        let mut hash = Fnv::new();
        hash.update(text.as_bytes());
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        w.write_all(&(text.len() as u64).to_le_bytes())?;
        w.write_all(text.as_bytes())?;
        let mut buf = Vec::new();
        for t in tensors {
            for chunk in t.values.chunks(1 << 14) {
                buf.clear();
                chunk.iter().for_each(|v| v.write_le(&mut buf));
                hash.update(&buf);
                w.write_all(&buf)?;
            }
        }
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(digits_at as u64))?;
        file.write_all(format!("{:016x}", hash.0).as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // make the rename itself durable
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

/// One tensor's entry in the header.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
}

/// A validated safetensors file: header parsed, layout and checksum checked; values are read
/// on request.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    metadata: BTreeMap<String, String>,
    entries: BTreeMap<String, Entry>,
    data_start: u64,
}

impl SafetensorsFile {
    /// Opens and validates `path` (see the module docs); reads the whole file once to verify
    /// the checksum, holding only a small buffer.
    ///
    /// # Errors
    /// [`ModelError::Io`] if the file cannot be read; [`ModelError::Checkpoint`] naming the
    /// problem (truncated, not safetensors, bad header, overlapping ranges, checksum mismatch).
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let file = File::open(path).map_err(|e| io_err(path, e))?;
        let len = file.metadata().map_err(|e| io_err(path, e))?.len();
        if len < 8 {
            return Err(bad(
                path,
                format!("truncated: {len} bytes, shorter than the 8-byte header length"),
            ));
        }
        let mut r = BufReader::new(file);
        let mut n = [0u8; 8];
        r.read_exact(&mut n).map_err(|e| io_err(path, e))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER_BYTES {
            return Err(bad(
                path,
                format!("not a safetensors file, or corrupted: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit"),
            ));
        }
        if 8 + n > len {
            return Err(bad(
                path,
                format!(
                    "truncated: header of {n} bytes announced, only {} bytes follow",
                    len - 8
                ),
            ));
        }
        let mut raw = vec![0u8; n as usize];
        r.read_exact(&mut raw).map_err(|e| io_err(path, e))?;
        let text = std::str::from_utf8(&raw)
            .map_err(|_| bad(path, "corrupted: the header is not valid UTF-8"))?;
        let json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| {
                bad(
                    path,
                    format!("corrupted: the header is not a JSON object ({e})"),
                )
            })?;
        let mut metadata = BTreeMap::new();
        let mut entries = BTreeMap::new();
        for (name, v) in &json {
            if name == "__metadata__" {
                let obj = v
                    .as_object()
                    .ok_or_else(|| bad(path, "corrupted: __metadata__ is not an object"))?;
                for (k, v) in obj {
                    let s = v.as_str().ok_or_else(|| {
                        bad(path, format!("corrupted: metadata {k:?} is not a string"))
                    })?;
                    metadata.insert(k.clone(), s.to_string());
                }
                continue;
            }
            entries.insert(name.clone(), parse_entry(path, name, v)?);
        }
        let data_len = len - 8 - n;
        // the ranges must tile the data section exactly
        let mut ranges: Vec<(u64, u64, &str)> = entries
            .iter()
            .map(|(k, e)| (e.begin, e.end, k.as_str()))
            .collect();
        ranges.sort_unstable();
        let mut at = 0u64;
        for (b, e, name) in &ranges {
            if *b != at {
                return Err(bad(
                    path,
                    format!("corrupted: tensor {name} starts at byte {b}, expected {at} (gaps or overlaps in the data section)"),
                ));
            }
            at = *e;
        }
        if at != data_len {
            return Err(bad(
                path,
                if at > data_len {
                    format!(
                        "truncated: the tensors need {at} data bytes, the file holds {data_len}"
                    )
                } else {
                    format!("corrupted: {} bytes after the last tensor", data_len - at)
                },
            ));
        }
        let sum = metadata
            .get(CHECKSUM_KEY)
            .and_then(|s| s.strip_prefix(CHECKSUM_PREFIX))
            .filter(|h| h.len() == 16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                bad(
                    path,
                    "no widealign checksum in the metadata (not written by widealign, or corrupted)",
                )
            })?;
        let written = format!("\"{CHECKSUM_PREFIX}{sum:016x}\"");
        let at = text
            .rfind(&written)
            .ok_or_else(|| bad(path, "corrupted: the checksum entry is malformed"))?;
        let mut hash = Fnv::new();
        hash.update(&raw[..at]);
        hash.update(format!("\"{CHECKSUM_PREFIX}{ZERO_DIGITS}\"").as_bytes());
        hash.update(&raw[at + written.len()..]);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let k = r.read(&mut buf).map_err(|e| io_err(path, e))?;
            if k == 0 {
                break;
            }
            hash.update(&buf[..k]);
        }
        if hash.0 != sum {
            return Err(bad(
                path,
                format!(
                    "corrupted: checksum fnv1a64:{:016x} does not match the recorded fnv1a64:{sum:016x}",
                    hash.0
                ),
            ));
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            metadata,
            entries,
            data_start: 8 + n,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The string metadata (including the checksum entry).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Names of the tensors in the file, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether a tensor of this name is in the file.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The row-major values of tensor `name`, which must have dtype `T` and shape `shape` (the
    /// caller's expectation, which sizes the allocation).
    ///
    /// # Errors
    /// [`ModelError::Checkpoint`] naming the tensor when it is missing or its dtype or shape
    /// differ; [`ModelError::Io`] if reading fails.
    pub fn read<T: Float>(&self, name: &str, shape: &[usize]) -> Result<Vec<T>, ModelError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| bad(&self.path, format!("lacks the tensor {name}")))?;
        if e.dtype != dtype_name::<T>() {
            return Err(bad(
                &self.path,
                format!(
                    "tensor {name} is {}, expected {}",
                    e.dtype,
                    dtype_name::<T>()
                ),
            ));
        }
        if e.shape != shape {
            return Err(bad(
                &self.path,
                format!(
                    "tensor {name} has shape {:?}, this run's model needs {shape:?}",
                    e.shape
                ),
            ));
        }
        let n: usize = shape.iter().product();
        let mut f = File::open(&self.path).map_err(|e| io_err(&self.path, e))?;
        f.seek(SeekFrom::Start(self.data_start + e.begin))
            .map_err(|e| io_err(&self.path, e))?;
        let mut r = BufReader::new(f);
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0u8; (1 << 14) * T::BYTES];
        while out.len() < n {
            let take = (n - out.len()).min(1 << 14);
            let bytes = &mut buf[..take * T::BYTES];
            r.read_exact(bytes).map_err(|e| io_err(&self.path, e))?;
            out.extend(bytes.chunks_exact(T::BYTES).map(T::read_le));
        }
        Ok(out)
    }
}

impl SafetensorsFile {
    /// [`SafetensorsFile::read`] into widealign's in-memory layout: a 2-D tensor's values
    /// column-major (the inverse of [`Tensor::column_major`]).
    ///
    /// # Errors
    /// As [`SafetensorsFile::read`].
    pub fn read_column_major<T: Float>(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<Vec<T>, ModelError> {
        let v = self.read(name, shape)?;
        Ok(match shape[..] {
            [rows, cols] => row_to_col_major(rows, cols, &v),
            _ => v,
        })
    }
}

fn parse_entry(path: &Path, name: &str, v: &serde_json::Value) -> Result<Entry, ModelError> {
    let malformed = || {
        bad(
            path,
            format!("corrupted: malformed entry for tensor {name}"),
        )
    };
    let dtype = v["dtype"].as_str().ok_or_else(malformed)?.to_string();
    let shape = v["shape"]
        .as_array()
        .ok_or_else(malformed)?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(malformed)?;
    let offs = v["data_offsets"].as_array().ok_or_else(malformed)?;
    let (Some(begin), Some(end), 2) = (
        offs.first().and_then(|o| o.as_u64()),
        offs.get(1).and_then(|o| o.as_u64()),
        offs.len(),
    ) else {
        return Err(malformed());
    };
    let elem = match dtype.as_str() {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" => 1,
        _ => {
            return Err(bad(
                path,
                format!("tensor {name} has the unknown dtype {dtype:?}"),
            ))
        }
    };
    let bytes = shape
        .iter()
        .try_fold(elem as u64, |acc, &d| acc.checked_mul(d as u64));
    if end < begin || bytes != Some(end - begin) {
        return Err(bad(
            path,
            format!("corrupted: tensor {name}'s byte range {begin}..{end} does not fit its dtype {dtype} and shape {shape:?}"),
        ));
    }
    Ok(Entry {
        dtype,
        shape,
        begin,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mlp, MlpSpec, Rnn, RnnSpec};
    use widealign_tensor::Activation;

    fn meta() -> BTreeMap<String, String> {
        BTreeMap::from([("k".to_string(), "v".to_string())])
    }

    #[test]
    fn tiled_transposes_match_the_definition_on_ragged_shapes() {
        for (rows, cols) in [(1, 1), (3, 70), (70, 33), (64, 64), (65, 31)] {
            let v: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            // v as column-major rows × cols: entry (r, c) is v[c * rows + r]
            let row_major = col_to_row_major(rows, cols, &v);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(row_major[r * cols + c], v[c * rows + r], "{rows}x{cols}");
                }
            }
            assert_eq!(row_to_col_major(rows, cols, &row_major), v);
        }
    }

    #[test]
    fn networks_round_trip_bit_exactly_and_matrices_are_row_major() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let spec = MlpSpec::new(3, vec![4, 5], 2, Activation::Tanh);
        let net = Mlp::<f32>::new(&spec, 3).unwrap();
        write(&p, &network_tensors(&net), &meta()).unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        // layer1.weight is [fan_out=4, fan_in=3], row-major: element (r, c) at r*3 + c
        let w = f.read::<f32>("layer1.weight", &[4, 3]).unwrap();
        assert_eq!(w[3 + 2], net.weights[0][(1, 2)]);
        let mut back = Mlp::<f32>::new(&spec, 0).unwrap();
        load_network(&f, &mut back, "").unwrap();
        assert_eq!(back.params(), net.params());

        let rspec = RnnSpec::new(2, 6, 1, Activation::Erf);
        let rnn = Rnn::<f64>::new(&rspec, 1).unwrap();
        write(&p, &network_tensors(&rnn), &meta()).unwrap();
        let mut rback = Rnn::<f64>::new(&rspec, 9).unwrap();
        load_network(&SafetensorsFile::open(&p).unwrap(), &mut rback, "").unwrap();
        assert_eq!(rback.params(), rnn.params());
        // the header is what the format says: u64 length, JSON padded to 8 bytes
        let bytes = std::fs::read(&p).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(json["w_rec"]["shape"], serde_json::json!([6, 6]));
        assert_eq!(json["w_rec"]["dtype"], "F64");
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let net = Mlp::<f32>::new(&MlpSpec::new(2, vec![3], 1, Activation::Relu), 3).unwrap();
        write(&p, &network_tensors(&net), &meta()).unwrap();
        let good = std::fs::read(&p).unwrap();
        let q = dir.path().join("bad.safetensors");
        for i in (0..good.len()).step_by(3) {
            let mut b = good.clone();
            b[i] ^= 1 << (i % 8);
            std::fs::write(&q, &b).unwrap();
            let e = SafetensorsFile::open(&q);
            assert!(e.is_err(), "flip at byte {i} not detected");
        }
        for cut in [0, 5, 8, 40, good.len() - 1] {
            std::fs::write(&q, &good[..cut]).unwrap();
            let e = SafetensorsFile::open(&q).unwrap_err().to_string();
            assert!(
                e.contains("truncated") || e.contains("corrupted"),
                "cut {cut}: {e}"
            );
        }
    }

    #[test]
    fn reading_checks_name_dtype_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let t = Tensor {
            name: "a".into(),
            shape: vec![2, 2],
            values: Cow::Owned(vec![1.0f32, 2.0, 3.0, 4.0]),
        };
        write(&p, std::slice::from_ref(&t), &meta()).unwrap();
        let f = SafetensorsFile::open(&p).unwrap();
        assert!(f
            .read::<f32>("b", &[2, 2])
            .unwrap_err()
            .to_string()
            .contains("lacks"));
        assert!(f
            .read::<f64>("a", &[2, 2])
            .unwrap_err()
            .to_string()
            .contains("F32"));
        assert!(f
            .read::<f32>("a", &[4])
            .unwrap_err()
            .to_string()
            .contains("shape"));
        assert_eq!(
            f.read::<f32>("a", &[2, 2]).unwrap(),
            vec![1.0, 2.0, 3.0, 4.0]
        );
        let dup = write(&p, &[t.clone(), t], &meta()).unwrap_err();
        assert!(dup.to_string().contains("twice"));
    }
}
