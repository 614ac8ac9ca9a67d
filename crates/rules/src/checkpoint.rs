//! Mid-run training checkpoints: stop a run anywhere (a kill, a preemption, a time limit) and
//! continue it later with a bit-identical result.
//!
//! A checkpoint is one [`widealign_models::safetensors`] file, written atomically
//! (temporary file, fsync, rename). Its tensors are what a PyTorch or JAX user loads directly:
//!
//! | tensor | content |
//! |---|---|
//! | `layer1.weight`, `layer1.bias`, … (MLP) / `w_in`, `w_rec`, `b`, `w_out`, `b_out`, `r0` (RNN) | the live parameters, row-major (`[fan_out, fan_in]`) |
//! | `adam.m.<name>`, `adam.v.<name>` | Adam's first and second moments (only tensors Adam has updated) |
//!
//! and its string metadata holds the rest (`format` = [`CHECKPOINT_FORMAT`], `version` =
//! [`CHECKPOINT_VERSION`], `state` = the JSON training state, `checksum`):
//!
//! * the run's [`TrainConfig`] (f64 fields also as exact bit patterns);
//! * a fingerprint of the training data (examples, input and target values), so a checkpoint
//!   is never continued on other data;
//! * the position: epochs completed, mini-batches done in the current epoch and the running
//!   sum of their losses, steps so far;
//! * the history so far (every f64 as its bit pattern), the divergence epoch, elapsed seconds;
//! * Adam's per-tensor step counts;
//! * the state of a [`CheckpointExtension`] when the caller kept one beside the run (its name,
//!   its JSON text and the names of its tensors, which sit in the file beside the parameters):
//!   the alignment experiment's shadow accumulator is one.
//!
//! What is *not* stored, because it is rebuilt exactly from the seed: the frozen initial
//! network of the Align rules and the fixed feedback matrices of `fa`/`dfa`
//! ([`crate::Rule::from_spec`]); the frozen-trace cache (recomputed from the frozen network);
//! the random streams, which are keyed by name rather than consumed in sequence — the shuffle
//! of epoch `e` is `SeedStream::new(seed).child("shuffle")` stream `"epoch{e}"` — so the
//! position in every stream is the pair (seed, epoch) the state already holds.
//!
//! Resuming checks, before training: the file's checksum and layout (a truncated or
//! bit-flipped file is an error, never a restart), the format name and version, every config
//! field against the caller's ([`RulesError::CheckpointMismatch`] names the first that
//! differs; only `epochs` may grow), the data fingerprint and every tensor's shape.
//!
//! ```
//! use widealign_data::{load, LoadOptions};
//! use widealign_rules::{train, train_checkpointed, Callbacks, Checkpointing, TrainConfig};
//! let dir = std::env::temp_dir().join(format!("widealign-ckpt-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("run.safetensors");
//! let data = load("digits", &LoadOptions { train_size: Some(100), ..LoadOptions::default() }).unwrap();
//! let cfg = TrainConfig { width: 32, epochs: 2, batch_size: 25, train_size: Some(100),
//!                         ..TrainConfig::default() };
//! // the first epoch, saving a checkpoint every 3 steps
//! let first = TrainConfig { epochs: 1, ..cfg.clone() };
//! let save = Checkpointing { save_to: Some(path.clone()), every: Some(3), ..Default::default() };
//! train_checkpointed(&first, &data, Callbacks::default(), &save).unwrap();
//! // continued to two epochs: the same result as training two epochs at once
//! let resume = Checkpointing { resume_from: Some(path.clone()), ..Default::default() };
//! let (resumed, _) = train_checkpointed(&cfg, &data, Callbacks::default(), &resume).unwrap();
//! let whole = train(&cfg, &data, Callbacks::default()).unwrap();
//! assert_eq!((resumed.test_loss, resumed.steps), (whole.test_loss, whole.steps));
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use widealign_models::safetensors::{self, SafetensorsFile, Tensor};
use widealign_models::ModelError;

use crate::{EpochRecord, RulesError, TrainConfig};

/// The metadata `format` of a training checkpoint.
pub const CHECKPOINT_FORMAT: &str = "widealign-train-checkpoint";
/// The checkpoint version this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Where a run saves checkpoints, how often, and where it resumes from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpointing {
    /// Save checkpoints to this file (replaced atomically each time): every `every` steps, or
    /// after every epoch when `every` is `None`; at the end of the run; and when the stop flag
    /// ends the run ([`RulesError::Preempted`]). `None` with `resume_from` set: save to
    /// `resume_from`.
    pub save_to: Option<PathBuf>,
    /// Steps between checkpoints (`None`: once per epoch).
    pub every: Option<usize>,
    /// Continue the run saved in this checkpoint.
    pub resume_from: Option<PathBuf>,
}

impl Checkpointing {
    /// The file checkpoints are written to (`save_to`, else `resume_from`).
    pub fn target(&self) -> Option<&Path> {
        self.save_to.as_deref().or(self.resume_from.as_deref())
    }

    /// Whether any checkpoint is written or read.
    pub fn active(&self) -> bool {
        self.target().is_some()
    }
}

/// State that the caller of a training run keeps beside it and that the run's checkpoints must
/// hold too (e.g. the shadow accumulator of the alignment experiment, fed by the per-step hook):
/// saved with every checkpoint, restored before a resumed run continues. Methods take `&self`;
/// an implementation reaches its mutable state through a `RefCell` it shares with its hook.
///
/// A checkpoint written with an extension is continued only by a run with an extension of the
/// same [`CheckpointExtension::name`], and a checkpoint written without one only by a run
/// without one (each mismatch is an error naming both).
pub trait CheckpointExtension {
    /// The extension's name, stored in the checkpoint (e.g. `"align"`).
    fn name(&self) -> &str;

    /// The tensors and the (JSON) text to save at the current step boundary. Tensor names must
    /// not collide with the run's own (parameter names, `adam.*`): prefix them.
    ///
    /// # Errors
    /// Whatever the implementation cannot encode.
    fn save(&self) -> Result<(Vec<Tensor<'static, f32>>, String), RulesError>;

    /// Restores the state [`CheckpointExtension::save`] wrote: `file` is the validated
    /// checkpoint (read the tensors by name and expected shape), `state` the saved text.
    ///
    /// # Errors
    /// A missing tensor, another shape, or a state that does not parse.
    fn restore(&self, file: &SafetensorsFile, state: &str) -> Result<(), RulesError>;
}

/// A [`CheckpointExtension`]'s part of the training state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtensionState {
    /// [`CheckpointExtension::name`].
    pub name: String,
    /// The names of the extension's tensors in the file.
    pub tensors: Vec<String>,
    /// The extension's text.
    pub state: String,
}

/// An f64 stored as its bit pattern (JSON numbers do not round-trip every f64 exactly).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bits(u64);

impl From<f64> for Bits {
    fn from(v: f64) -> Self {
        Bits(v.to_bits())
    }
}

impl Bits {
    /// The f64 again, bit for bit.
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// One history row with exact floats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpochBits {
    epoch: usize,
    train_loss: Bits,
    test_loss: Bits,
    test_accuracy: Option<Bits>,
    seconds: Bits,
}

impl From<&EpochRecord> for EpochBits {
    fn from(r: &EpochRecord) -> Self {
        EpochBits {
            epoch: r.epoch,
            train_loss: r.train_loss.into(),
            test_loss: r.test_loss.into(),
            test_accuracy: r.test_accuracy.map(Bits::from),
            seconds: r.seconds.into(),
        }
    }
}

impl From<&EpochBits> for EpochRecord {
    fn from(r: &EpochBits) -> Self {
        EpochRecord {
            epoch: r.epoch,
            train_loss: r.train_loss.get(),
            test_loss: r.test_loss.get(),
            test_accuracy: r.test_accuracy.map(Bits::get),
            seconds: r.seconds.get(),
        }
    }
}

/// The training data a checkpoint was written on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DataPrint {
    /// Training examples (after the `train_size` subset).
    pub examples: usize,
    /// FNV-1a-64 over the training inputs' and targets' f32 bit patterns, as 16 hex digits.
    pub fingerprint: String,
}

/// Everything of a run besides its tensors (the `state` metadata entry, JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrainState {
    /// The run's settings.
    pub config: TrainConfig,
    /// `lr`, `w_std`, `b_std` as bit patterns (the JSON config may round them).
    pub config_bits: [Bits; 3],
    /// The training data.
    pub data: DataPrint,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Mini-batches done in epoch `epochs_done + 1`.
    pub batches_done: usize,
    /// Sum of `loss × batch rows` over those mini-batches.
    pub loss_sum: Bits,
    /// Optimisation steps so far.
    pub steps: usize,
    /// The history so far, epoch 0 first.
    pub history: Vec<EpochBits>,
    /// The epoch in which the run diverged.
    pub diverged_epoch: Option<usize>,
    /// Whether the run ended (all epochs done, or diverged).
    pub finished: bool,
    /// Wall-clock seconds of training so far.
    pub seconds: Bits,
    /// Adam's step count per parameter tensor (`None`: no state, or SGD).
    pub adam_steps: Vec<Option<u64>>,
    /// The caller's [`CheckpointExtension`] state (absent in checkpoints of plain runs, so
    /// their files are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<ExtensionState>,
}

impl TrainState {
    /// The config, with its floats restored exactly.
    pub(crate) fn exact_config(&self) -> TrainConfig {
        let [lr, w, b] = self.config_bits;
        TrainConfig {
            lr: lr.get(),
            w_std: w.get(),
            b_std: b.get(),
            ..self.config.clone()
        }
    }

    /// The history as records.
    pub(crate) fn history(&self) -> Vec<EpochRecord> {
        self.history.iter().map(EpochRecord::from).collect()
    }
}

/// A run's position and history, as the driver keeps them.
#[derive(Clone, Debug)]
pub(crate) struct Position<'a> {
    pub epochs_done: usize,
    pub batches_done: usize,
    pub loss_sum: f64,
    pub steps: usize,
    pub history: &'a [EpochRecord],
    pub diverged_epoch: Option<usize>,
    pub finished: bool,
    pub seconds: f64,
}

/// Bits of `config` for [`TrainState::config_bits`].
pub(crate) fn config_bits(c: &TrainConfig) -> [Bits; 3] {
    [c.lr.into(), c.w_std.into(), c.b_std.into()]
}

/// Word-wise FNV-1a-64 over f32 bit patterns (the data fingerprint).
pub(crate) fn fingerprint<'a>(blocks: impl IntoIterator<Item = &'a [f32]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for block in blocks {
        h ^= block.len() as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        for v in block {
            h ^= u64::from(v.to_bits());
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn bad(path: &Path, reason: impl Into<String>) -> RulesError {
    RulesError::Model(ModelError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    })
}

/// Writes a checkpoint: `tensors` (parameters and optimiser moments) and the state.
pub(crate) fn save(
    path: &Path,
    tensors: &[safetensors::Tensor<'_, f32>],
    state: &TrainState,
) -> Result<(), RulesError> {
    let json = serde_json::to_string(state)
        .map_err(|e| bad(path, format!("cannot encode the training state: {e}")))?;
    let meta = BTreeMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("version".to_string(), CHECKPOINT_VERSION.to_string()),
        ("state".to_string(), json),
    ]);
    safetensors::write(path, tensors, &meta)?;
    Ok(())
}

/// A checkpoint opened and validated as a file, with its state parsed.
#[derive(Debug)]
pub(crate) struct Opened {
    pub file: SafetensorsFile,
    pub state: TrainState,
}

/// Opens `path`: checksum and layout, format, version, state.
pub(crate) fn open(path: &Path) -> Result<Opened, RulesError> {
    let file = SafetensorsFile::open(path)?;
    let meta = file.metadata();
    match meta.get("format").map(String::as_str) {
        Some(CHECKPOINT_FORMAT) => {}
        Some(other) => {
            return Err(bad(
                path,
                format!("holds {other:?}, not a widealign training checkpoint"),
            ))
        }
        None => {
            return Err(bad(
                path,
                "not a widealign training checkpoint (no \"format\" metadata; a plain safetensors file holds parameters only)",
            ))
        }
    }
    let version = meta.get("version").map(String::as_str).unwrap_or("");
    if version != CHECKPOINT_VERSION.to_string() {
        return Err(bad(
            path,
            format!("checkpoint version {version:?} is not supported (this build reads version {CHECKPOINT_VERSION})"),
        ));
    }
    let state: TrainState = serde_json::from_str(meta.get("state").map_or("", String::as_str))
        .map_err(|e| bad(path, format!("the training state does not parse: {e}")))?;
    if state.history.is_empty() {
        return Err(bad(path, "the training state has no history"));
    }
    Ok(Opened { file, state })
}

/// The settings of the run saved in `path` (after checking the file): what `widealign train
/// --resume PATH` trains when no other flag is given.
///
/// # Errors
/// [`RulesError::Model`] with [`ModelError::Checkpoint`] naming the file and the problem
/// (truncated, corrupted, other format or version); [`ModelError::Io`] if it cannot be read.
pub fn checkpoint_config(path: &Path) -> Result<TrainConfig, RulesError> {
    Ok(saved_run(path)?.config)
}

/// What a checkpoint says about its run besides the tensors ([`saved_run`]).
#[derive(Clone, Debug, PartialEq)]
pub struct SavedRun {
    /// The run's settings, floats exact.
    pub config: TrainConfig,
    /// Whether the run had ended (all epochs done, or diverged) when it was saved.
    pub finished: bool,
    /// The name and text of the [`CheckpointExtension`] saved with the run, if any.
    pub extension: Option<(String, String)>,
}

/// The settings, state and extension of the run saved in `path` (after checking the file).
///
/// # Errors
/// As [`checkpoint_config`].
pub fn saved_run(path: &Path) -> Result<SavedRun, RulesError> {
    let state = open(path)?.state;
    Ok(SavedRun {
        config: state.exact_config(),
        finished: state.finished,
        extension: state.extension.map(|e| (e.name, e.state)),
    })
}

/// Checks that the extension saved in a checkpoint (`saved`) is the one the resuming run keeps
/// (`run`), by name.
pub(crate) fn check_extension(
    path: &Path,
    saved: Option<&ExtensionState>,
    run: Option<&dyn CheckpointExtension>,
) -> Result<(), RulesError> {
    match (saved, run) {
        (None, None) => Ok(()),
        (Some(s), Some(r)) if s.name == r.name() => Ok(()),
        (Some(s), Some(r)) => Err(bad(
            path,
            format!(
                "holds the state of {:?} beside the run, not of {:?}",
                s.name,
                r.name()
            ),
        )),
        (Some(s), None) => Err(bad(
            path,
            format!(
                "holds the state of {:?} beside the run (it was written by `widealign {}`); continue it with that command",
                s.name, s.name
            ),
        )),
        (None, Some(r)) => Err(bad(
            path,
            format!(
                "holds a plain training run, without the state of {:?} (it was written by `widealign train`)",
                r.name()
            ),
        )),
    }
}

/// Checks that `requested` may continue the run saved with `saved`: every field equal, except
/// `epochs`, which may grow.
///
/// # Errors
/// [`RulesError::CheckpointMismatch`] naming the first differing field (alphabetically).
pub fn check_resumable(saved: &TrainConfig, requested: &TrainConfig) -> Result<(), RulesError> {
    let value = |c: &TrainConfig| -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        }
    };
    let (a, b) = (value(saved), value(requested));
    for (field, x) in &a {
        let field = field.as_str();
        let y = b.get(field).unwrap_or(&serde_json::Value::Null);
        let same = if matches!(field, "lr" | "w_std" | "b_std") {
            x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
        } else {
            x == y
        };
        if same || (field == "epochs" && requested.epochs >= saved.epochs) {
            continue;
        }
        let show = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "none".to_string(),
            other => other.to_string(),
        };
        return Err(RulesError::CheckpointMismatch {
            field: field.to_string(),
            saved: show(x),
            requested: show(y),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuleKind;

    #[test]
    fn only_a_longer_run_may_resume_another_config() {
        let saved = TrainConfig::default();
        assert!(check_resumable(&saved, &saved).is_ok());
        let longer = TrainConfig {
            epochs: saved.epochs + 5,
            ..saved.clone()
        };
        assert!(check_resumable(&saved, &longer).is_ok());
        let e = check_resumable(&longer, &saved).unwrap_err();
        assert!(
            matches!(&e, RulesError::CheckpointMismatch { field, .. } if field == "epochs"),
            "{e}"
        );
        let other = TrainConfig {
            rule: RuleKind::AlignZero,
            width: 7,
            ..saved.clone()
        };
        let e = check_resumable(&saved, &other).unwrap_err().to_string();
        assert!(
            e.contains("rule") && e.contains("bp") && e.contains("align-zero"),
            "{e}"
        );
        let lr = TrainConfig {
            lr: f64::from_bits(saved.lr.to_bits() + 1),
            ..saved.clone()
        };
        assert!(check_resumable(&saved, &lr).is_err(), "one ulp counts");
    }

    #[test]
    fn fingerprints_see_values_and_block_boundaries() {
        let a = [1.0f32, 2.0, 3.0];
        assert_eq!(fingerprint([&a[..]]), fingerprint([&a[..]]));
        assert_ne!(fingerprint([&a[..]]), fingerprint([&a[..2], &a[2..]]));
        assert_ne!(
            fingerprint([&a[..]]),
            fingerprint([&[1.0f32, 2.0, 3.5][..]])
        );
    }
}
