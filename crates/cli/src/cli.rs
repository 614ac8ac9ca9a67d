//! Command-line grammar (clap derive). Flags named in docs/theory.md §7 are contracts:
//! they may gain siblings but are never renamed.
//!
//! Flags that name a model, rule, activation, parameterisation or optimiser parse straight to
//! the workspace's own types (`widealign_rules::{ModelKind, RuleKind, ParamKind,
//! OptimizerChoice}`, `widealign_tensor::Activation`); this module only adds each value's
//! `--help` line.

use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use widealign_experiments::Scale;
use widealign_models::{CnnReadout, Norm, Padding};
use widealign_ntk::ensemble::{KernelKind, Precision, TrainTime};
use widealign_rules::{ModelKind, OptimizerChoice, ParamKind, RuleKind};
use widealign_tensor::Activation;

const TOP_EXAMPLES: &str = "\
Examples:
  widealign train --dataset digits --rule align-ada --width 1024 --epochs 10 --lr 1 --json
  widealign sweep --config sweep.toml --out results.jsonl --resume
  widealign reproduce --out report/
  widealign ntk --inputs x.csv --depth 2 --activation relu --json

Exit status: 0 success (a diverged run is a result), 2 bad usage or bad input (one line naming
the flag, file or line), 1 other failures, 75 stopped by SIGTERM/SIGINT after saving a
checkpoint (rerun with --resume; see docs/cluster.md), 130 interrupted without a checkpoint.";

/// Train wide networks with backprop-free learning rules and check the NTK theory.
#[derive(Debug, Parser)]
#[command(name = "widealign", version, about, after_help = TOP_EXAMPLES)]
pub struct Cli {
    /// Print no progress bars or log lines (errors still go to stderr).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one network with one learning rule and report its metrics.
    #[command(after_help = "\
Example:
  widealign train --model mlp --dataset digits --rule align-zero --width 1024 --depth 2 \\
      --epochs 40 --lr 5 --batch-size 100 --seed 0 --json
  widealign train --model cnn --dataset digits --rule align-ada --channels 64 --conv-layers 2 \\
      --norm batch --epochs 10 --lr 10

With --json the last stdout line is one JSON object with rule, width, depth, seed, epochs,
train_loss, test_loss, test_accuracy, best_test_loss, diverged, diverged_epoch, seconds, config
and the per-epoch history. A diverged run exits 0 with \"diverged\": true.

Preemption:
  widealign train ... --checkpoint run.safetensors --checkpoint-every 500
  widealign train --resume run.safetensors --json     # same record as the uninterrupted run
On SIGTERM or SIGINT a run with a checkpoint saves it at the next step boundary and exits 75;
a second signal exits at once (130).")]
    Train(TrainArgs),
    /// Run a grid of training runs from a TOML file into a JSON-lines file (resumable, shardable).
    #[command(after_help = "\
Example:
  widealign sweep --config sweep.toml --out results.jsonl --shard auto --resume

sweep.toml:
  [base]                 # any train setting, `_` for `-`
  dataset = \"digits\"
  epochs = 10
  [grid]                 # lists; every combination is one run
  rule = [\"bp\", \"align-ada\"]
  width = [64, 256, 1024]
  seed = [0, 1]

Runs are ordered by the keys model, dataset, rule, depth, width, activation, param, optimizer,
lr, batch_size, epochs, train_size, w_std, b_std, seed, channels, conv_layers, kernel, stride,
padding, readout, norm (the last varies fastest), and inside a key in the order its list is
written. --shard I/N runs runs I, I+N, I+2N, ... (0 <= I < N).")]
    Sweep(SweepArgs),
    /// Run the reference experiments end to end: results.jsonl, report.md and SVG plots.
    #[command(after_help = "\
Example:
  widealign reproduce --dataset digits --scale quick --out reproduction/
  widealign reproduce --dataset digits --scale quick --seeds 3 --out reproduction-3/

Experiments: (1) test accuracy against width for all seven rules, with training curves;
(2) the Add task against width (bp, align-ada, align-zero, readout) and the loss of always
predicting 0.5; (3) low data (100, 300, 1000 examples); (4) alignment of backprop's weight
changes with the predicted update, with shuffled and random controls; (5) the layerwise
dynamics errors against width with fitted log-log slopes; (6), (7) RNN alignment and dynamics;
(8) the infinite-width limit: the NTK predictor of (1)'s network and data at t = inf and after
(1)'s number of steps, computed once (on Fashion-MNIST's 60,000 images the t = inf prediction
needs 8.3 GB; the finite time, an eigendecomposition, is refused by the memory plan and
skipped). The quick scale on the embedded
digits takes a few minutes on a 2-core machine; --scale tiny (seconds) only tests the pipeline.
With --seeds K every cell runs K seeds and the report shows mean ± 95% interval (t distribution);
differences are read only where intervals are disjoint.")]
    Reproduce(ReproduceArgs),
    /// Infinite-width NNGP and NTK kernels of an MLP, an RNN or a CNN on inputs from a CSV file.
    #[command(after_help = "\
Examples:
  widealign ntk --inputs x.csv --depth 2 --activation relu --w-std 1.4 --b-std 0.1 --json
  widealign ntk --model rnn --inputs seqs.csv --seq-len 5 --activation erf --json
  widealign ntk --model cnn --inputs images.csv --image 8,8,1 --conv-layers 3 --readout gap --json

MLP: one input per CSV row; --depth hidden layers, scalar output. RNN (Elman, NTK
parameterisation, Gaussian initial biases): one sequence per CSV row, T·d numbers, time-major
(the d inputs of step 1, then of step 2, ...), T = --seq-len; kernels of the scalar output at
the last step (--depth does not apply). CNN (no normalisation, NTK parameterisation, Gaussian
initial biases): one HWC-flattened image per row, --conv-layers convolutions of --kernel × --kernel
filters, stride 1, SAME padding, then --readout gap or flatten and a scalar output. Prints {\"nngp\": [[..]], \"ntk\": [[..]],
\"seconds\": ..} with full f64 precision.")]
    Ntk(NtkArgs),
    /// Test predictions of the infinite-width network trained by gradient descent on the MSE.
    #[command(after_help = "\
Examples:
  widealign predict --dataset digits --depth 3 --json
  widealign predict --dataset fashion-mnist --depth 3 --kernel nngp --json
  widealign predict --dataset digits --depth 2 --time 500 --lr 1.0 --variance --json
  widealign ntk --dataset digits --train-size 1000 --out K.npy
  widealign predict --dataset digits --train-size 1000 --kernel-file K.npy --json

The mean (over initialisations) of the infinite-width MLP trained by gradient flow on the
training loop's MSE (averaged over examples × outputs, targets one-hot - 0.1) for --time steps
of size lr, from the NTK (all layers trained) or the NNGP (readout only; at --time inf the GP
posterior). --diag-reg R adds R·tr(K)/N to the training kernel's diagonal (neural-tangents'
diag_reg). At --time inf the kernel is stored once as its lower triangle (--precision f32: N²/2
values of 4 bytes) and factorised in place by a blocked Cholesky; finite times and --variance
use an f64 eigendecomposition (a few thousand training points). The peak memory is predicted
first and a run over --memory-limit (default: the memory available now) is refused with exit
status 2 and the settings that would fit.")]
    Predict(PredictArgs),
    /// Compare the closed-form layerwise weight dynamics with finite networks across widths.
    #[command(after_help = "\
Example:
  widealign dynamics --dataset teacher --train-size 64 --depth 2 --activation erf \\
      --widths 64,256,1024,4096 --steps 200 --lr 0.1 --seed 0 --json

  widealign dynamics --model rnn --activation erf --widths 64,256,1024 --json

Prints, per width, the relative errors of the predicted weight-change norms and directions
per weight matrix and of the function, and the fitted log-log slopes (about -1/2 for smooth
activations). --model rnn trains the Elman network by backprop through time on a sequence task
(default teacher-seq: 32 sequences of 6 steps) against the RNN's kernel dynamics, for W_in,
W_rec and W_out.")]
    Dynamics(DynamicsArgs),
    /// Alignment of each layer's weight change with the predicted update, with controls.
    #[command(after_help = "\
Example:
  widealign align --dataset digits --rule bp --depth 2 --widths 64,256,1024,4096 \\
      --epochs 10 --lr 1.0 --seed 0 --json

Preemption:
  widealign align ... --checkpoint align.safetensors --checkpoint-every 500
  widealign align --resume align.safetensors --json   # same object as the uninterrupted run
One checkpoint file holds the whole experiment: the width in progress (parameters, shadow
accumulator) and the numbers of the widths already finished. On SIGTERM or SIGINT it is saved
at the next step boundary and the command exits 75; a second signal exits at once (130).")]
    Align(AlignArgs),
    /// List, describe or download datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Measure training-step, GEMM and kernel throughput on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// The values of a flag whose type belongs to another crate, each with its `--help` line, in
/// the order `--help` lists them.
type Choices<T> = &'static [(T, &'static str)];

/// `--model`.
const MODELS: Choices<ModelKind> = &[
    (ModelKind::Mlp, "Fully connected network"),
    (
        ModelKind::Rnn,
        "Elman recurrent network (sequence tasks such as `add`)",
    ),
    (
        ModelKind::Cnn,
        "Convolutional network on images (digits, fashion-mnist, mnist, kmnist, cifar10)",
    ),
];

/// `--padding`.
const PADDINGS: Choices<Padding> = &[
    (
        Padding::Same,
        "Output ceil(n/s) per axis, zeros split evenly (TensorFlow's SAME)",
    ),
    (
        Padding::Valid,
        "No padding: only where the whole kernel fits",
    ),
];

/// `--readout`.
const READOUTS: Choices<CnnReadout> = &[
    (
        CnnReadout::Gap,
        "Global average pooling of each channel, then a dense readout",
    ),
    (
        CnnReadout::Flatten,
        "The last feature maps flattened, then a dense readout",
    ),
];

/// `--norm`.
const NORMS: Choices<Norm> = &[
    (Norm::None, "No normalisation"),
    (
        Norm::Batch,
        "Parameter-free batch normalisation of every feature over the batch (eps 1e-6)",
    ),
];

/// `--rule`, in [`RuleKind::ALL`] order.
const RULES: Choices<RuleKind> = &[
    (RuleKind::Bp, "Backpropagation"),
    (
        RuleKind::AlignZero,
        "Align-zero: frozen backward pathway and frozen input activities",
    ),
    (
        RuleKind::AlignAda,
        "Align-ada: frozen backward pathway, live input activities",
    ),
    (
        RuleKind::AlignProp,
        "Align-prop: frozen weights, live derivatives and activities",
    ),
    (
        RuleKind::Fa,
        "Feedback alignment with fixed random feedback weights",
    ),
    (RuleKind::Dfa, "Direct feedback alignment"),
    (RuleKind::Readout, "Only the readout layer learns"),
];

/// `--activation`.
const ACTIVATIONS: Choices<Activation> = &[
    (Activation::Relu, "max(0, x)"),
    (Activation::Erf, "The error function"),
    (Activation::Tanh, "Hyperbolic tangent"),
    (Activation::Identity, "No nonlinearity"),
    (Activation::Gelu, "Gaussian error linear unit"),
];

/// `--param`.
const PARAMS: Choices<ParamKind> = &[
    (
        ParamKind::Ntk,
        "NTK parameterisation: h = (s_w/sqrt(n)) W a + s_b b, N(0,1) parameters",
    ),
    (
        ParamKind::Standard,
        "Standard parameterisation: h = W a + b, W ~ N(0, s_w^2/n)",
    ),
];

/// `--optimizer`.
const OPTIMIZERS: Choices<OptimizerChoice> = &[
    (OptimizerChoice::Sgd, "Plain stochastic gradient descent"),
    (
        OptimizerChoice::Adam,
        "Adam (beta1 0.9, beta2 0.999, eps 1e-8)",
    ),
];

/// `reproduce --scale`.
const SCALES: Choices<Scale> = &[
    (
        Scale::Tiny,
        "Seconds: tiny widths and one epoch; tests the pipeline, not the science",
    ),
    (Scale::Quick, "Minutes on a laptop: fewer widths and epochs"),
    (Scale::Full, "The reference widths and epochs (hours)"),
];

/// The clap parser of a flag taking one of `choices` (spelled by `name`): clap checks the
/// name against the list (and shows the list in `--help` and in errors), then the type's own
/// `FromStr` converts it.
fn choice<T>(choices: Choices<T>, name: fn(T) -> &'static str) -> impl TypedValueParser<Value = T>
where
    T: Copy + FromStr + Send + Sync + 'static,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    PossibleValuesParser::new(
        choices
            .iter()
            .map(move |&(v, help)| PossibleValue::new(name(v)).help(help)),
    )
    .try_map(|s| s.parse::<T>())
}

/// Architecture flags shared by train, dynamics, align and bench.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Network family.
    #[arg(long, value_parser = choice(MODELS, ModelKind::name), default_value_t = ModelKind::Mlp)]
    pub model: ModelKind,
    /// Number of hidden layers (the MLP has depth+1 dense layers).
    #[arg(long, default_value_t = 2, value_name = "L")]
    pub depth: usize,
    /// Nonlinearity after every hidden layer.
    #[arg(long, value_parser = choice(ACTIVATIONS, Activation::name), default_value_t = Activation::Relu)]
    pub activation: Activation,
    /// Weight standard deviation s_w.
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "S",
        allow_negative_numbers = true
    )]
    pub w_std: f64,
    /// Bias standard deviation s_b.
    #[arg(
        long,
        default_value_t = 0.1,
        value_name = "S",
        allow_negative_numbers = true
    )]
    pub b_std: f64,
    /// Parameterisation.
    #[arg(long, value_parser = choice(PARAMS, ParamKind::name), default_value_t = ParamKind::Ntk)]
    pub param: ParamKind,
}

/// Convolutional-network flags of `train` and `align` (`--model cnn` only; unset flags take the
/// defaults of `TrainConfig`).
#[derive(Debug, Clone, Default, Args)]
pub struct CnnArgs {
    /// CNN: channels of every convolution layer [default: 64]; `align` takes a list C,C,.. (one
    /// run per channel count, in place of --widths).
    #[arg(long, value_name = "C")]
    pub channels: Option<Widths>,
    /// CNN: number of convolution layers [default: 3].
    #[arg(long, value_name = "L")]
    pub conv_layers: Option<usize>,
    /// CNN: kernel size k (k×k kernels) [default: 3].
    #[arg(long, value_name = "K")]
    pub kernel: Option<usize>,
    /// CNN: stride of every convolution [default: 1].
    #[arg(long, value_name = "S")]
    pub stride: Option<usize>,
    /// CNN: zero padding [default: same].
    #[arg(long, value_parser = choice(PADDINGS, Padding::name))]
    pub padding: Option<Padding>,
    /// CNN: what the readout reads [default: gap].
    #[arg(long, value_parser = choice(READOUTS, CnnReadout::name))]
    pub readout: Option<CnnReadout>,
    /// CNN: normalisation after each convolution [default: none].
    #[arg(long, value_parser = choice(NORMS, Norm::name))]
    pub norm: Option<Norm>,
}

/// Dataset flags shared by train, dynamics and align.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Dataset: digits, fashion-mnist, mnist, kmnist, idx:DIR, cifar10:DIR, csv:FILE, add, teacher.
    #[arg(long, default_value = "digits", value_name = "NAME")]
    pub dataset: String,
    /// Use a stratified subset of K training examples (default: the whole training split).
    #[arg(long, value_name = "K")]
    pub train_size: Option<usize>,
}

/// Optimisation flags shared by train and align.
#[derive(Debug, Clone, Args)]
pub struct OptimArgs {
    /// Number of passes over the training set.
    #[arg(long, default_value_t = 10, value_name = "E")]
    pub epochs: usize,
    /// Learning rate.
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "F",
        allow_negative_numbers = true
    )]
    pub lr: f64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 100, value_name = "B")]
    pub batch_size: usize,
    /// Optimiser.
    #[arg(long, value_parser = choice(OPTIMIZERS, OptimizerChoice::name), default_value_t = OptimizerChoice::Sgd)]
    pub optimizer: OptimizerChoice,
    /// Seed of every random choice (initialisation, shuffling, feedback matrices, subsets).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
}

/// `widealign train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Architecture.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Dataset.
    #[command(flatten)]
    pub data: DataArgs,
    /// Optimisation.
    #[command(flatten)]
    pub optim: OptimArgs,
    /// Convolutional network.
    #[command(flatten)]
    pub cnn: CnnArgs,
    /// Learning rule.
    #[arg(long, value_parser = choice(RULES, RuleKind::name), default_value_t = RuleKind::Bp)]
    pub rule: RuleKind,
    /// Hidden width.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub width: usize,
    /// Append the result as one JSON line (same format as a sweep line) to FILE.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the result as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
    /// Mid-run checkpoints.
    #[command(flatten)]
    pub ckpt: CheckpointArgs,
}

/// Mid-run checkpoints and resuming (`train`, `align`).
#[derive(Debug, Clone, Args)]
pub struct CheckpointArgs {
    /// Save mid-run checkpoints (safetensors) to PATH, replaced atomically: once per epoch (or
    /// every --checkpoint-every steps), at the end, and on SIGTERM/SIGINT (then exit 75).
    #[arg(long, value_name = "PATH")]
    pub checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (default: once per epoch).
    #[arg(long, value_name = "N", requires = "checkpoint")]
    pub checkpoint_every: Option<usize>,
    /// Continue the run saved in the checkpoint PATH (and keep checkpointing to it unless
    /// --checkpoint names another file). Flags repeated from the original run must agree with
    /// it; only --epochs may be raised.
    #[arg(long, value_name = "PATH")]
    pub resume: Option<PathBuf>,
}

/// Which part of a sweep this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    /// Runs `index, index + count, …` (0-based).
    Fixed {
        /// This shard, `0 <= index < count`.
        index: usize,
        /// Number of shards.
        count: usize,
    },
    /// Read `SLURM_ARRAY_TASK_ID` (minus `SLURM_ARRAY_TASK_MIN`) and `SLURM_ARRAY_TASK_COUNT`.
    Auto,
}

impl std::str::FromStr for ShardArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(ShardArg::Auto);
        }
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("expected I/N (e.g. 0/4) or auto, got `{s}`"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("shard index `{i}` is not a non-negative integer"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count `{n}` is not a positive integer"))?;
        if count == 0 {
            return Err("shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} must be below the shard count {count} (shards are 0-based)"
            ));
        }
        Ok(ShardArg::Fixed { index, count })
    }
}

/// `widealign sweep`.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// TOML file with a `[base]` table of train settings and a `[grid]` table of lists.
    #[arg(long, value_name = "FILE.toml")]
    pub config: PathBuf,
    /// JSON-lines results file (one line per finished run).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Run only shard I of N (0-based), or `auto` to read the Slurm job-array variables.
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<ShardArg>,
    /// Continue an existing results file: skip runs whose config is already in it.
    #[arg(long)]
    pub resume: bool,
    /// List the runs of this shard (one JSON config per line) without running them.
    #[arg(long)]
    pub dry_run: bool,
    /// Steps between mid-run checkpoints of each run (default: once per epoch). Checkpoints
    /// live in OUT.checkpoints/run-<index>.safetensors until the run's line is written;
    /// --resume continues unfinished runs from them.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Do not write mid-run checkpoints (--resume then restarts unfinished runs).
    #[arg(long, conflicts_with = "checkpoint_every")]
    pub no_checkpoints: bool,
    /// Print a JSON summary as the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// `widealign reproduce`.
#[derive(Debug, Clone, Args)]
pub struct ReproduceArgs {
    /// Image dataset for the classification experiments.
    #[arg(long, default_value = "digits", value_name = "digits|fashion-mnist")]
    pub dataset: String,
    /// Output folder (created): results.jsonl, report.md, *.svg.
    #[arg(long, default_value = "results", value_name = "DIR")]
    pub out: PathBuf,
    /// First seed: the runs of every cell have the seeds S, S+1, …, S+K−1.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Seeds per cell (K): the report shows each cell's mean with its 95% t interval.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub seeds: usize,
    /// Experiment size.
    #[arg(long, value_parser = choice(SCALES, Scale::name), default_value_t = Scale::Quick)]
    pub scale: Scale,
    /// Keep the runs already in DIR/results.jsonl and run only the missing ones.
    #[arg(long)]
    pub resume: bool,
    /// Run nothing: render DIR/report.md and the plots from DIR/results.jsonl as it is (cells
    /// without results show `–`), e.g. after the runs were made by `widealign sweep` shards.
    #[arg(long, conflicts_with = "resume")]
    pub report_only: bool,
    /// Print a JSON summary as the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// `widealign ntk`.
#[derive(Debug, Clone, Args)]
pub struct NtkArgs {
    /// Network family.
    #[arg(long, value_parser = choice(MODELS, ModelKind::name), default_value_t = ModelKind::Mlp)]
    pub model: ModelKind,
    /// CSV file with one input (MLP) or one time-major sequence (RNN) per row (numbers only; a
    /// header row is allowed). Either this or --dataset.
    #[arg(long, value_name = "X.csv", conflicts_with = "dataset")]
    pub inputs: Option<PathBuf>,
    /// MLP kernels of a dataset's training split (and its test × training block) written as
    /// NumPy .npy files: with --out K.npy, K.npy (N × N) and K.test.npy (test × N).
    #[arg(long, value_name = "NAME", requires = "out")]
    pub dataset: Option<String>,
    /// With --dataset: a stratified subset of K training examples.
    #[arg(long, value_name = "K", requires = "dataset")]
    pub train_size: Option<usize>,
    /// With --dataset: the .npy file of the training kernel (the test block goes beside it,
    /// ending .test.npy).
    #[arg(long, value_name = "K.npy", requires = "dataset")]
    pub out: Option<PathBuf>,
    /// With --dataset: which kernel to write.
    #[arg(long, value_name = "KERNEL", value_parser = choice(KERNELS, KernelKind::name), default_value_t = KernelKind::Ntk)]
    pub write: KernelKind,
    /// With --dataset: the element type of the .npy files.
    #[arg(long, value_parser = choice(PRECISIONS, Precision::name), default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Sequence length T (RNN, required): each row holds T·d numbers.
    #[arg(long, value_name = "T")]
    pub seq_len: Option<usize>,
    /// Number of hidden layers (MLP).
    #[arg(long, default_value_t = 1, value_name = "L")]
    pub depth: usize,
    /// CNN (required): the image shape H,W,C; each row holds H·W·C numbers in HWC order.
    #[arg(long, value_name = "H,W,C")]
    pub image: Option<ImageShape>,
    /// CNN: number of convolution layers (stride 1, SAME padding) [default: 3].
    #[arg(long, value_name = "L")]
    pub conv_layers: Option<usize>,
    /// CNN: filter size k (k×k filters) [default: 3].
    #[arg(long, value_name = "K")]
    pub kernel: Option<usize>,
    /// CNN: what the readout reads [default: gap].
    #[arg(long, value_parser = choice(READOUTS, CnnReadout::name))]
    pub readout: Option<CnnReadout>,
    /// Activation and initial scales of the infinite-width network.
    #[command(flatten)]
    pub net: KernelNetArgs,
    /// Print one JSON object (otherwise a readable table).
    #[arg(long)]
    pub json: bool,
}

/// The activation and initial scales of the infinite-width MLP of `ntk` and `predict`
/// (NTK parameterisation).
#[derive(Debug, Clone, Args)]
pub struct KernelNetArgs {
    /// Nonlinearity.
    #[arg(long, value_parser = choice(ACTIVATIONS, Activation::name), default_value_t = Activation::Relu)]
    pub activation: Activation,
    /// Weight standard deviation s_w.
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "S",
        allow_negative_numbers = true
    )]
    pub w_std: f64,
    /// Bias standard deviation s_b.
    #[arg(
        long,
        default_value_t = 0.1,
        value_name = "S",
        allow_negative_numbers = true
    )]
    pub b_std: f64,
}

/// `--kernel`.
const KERNELS: Choices<KernelKind> = &[
    (KernelKind::Ntk, "The NTK: every layer trained"),
    (
        KernelKind::Nngp,
        "The NNGP: only the readout trained (the GP posterior at --time inf)",
    ),
];

/// `--precision`.
const PRECISIONS: Choices<Precision> = &[
    (
        Precision::F32,
        "Kernel stored in f32 (computed in f64, solves accumulate in f64)",
    ),
    (Precision::F64, "Kernel stored in f64 (twice the memory)"),
];

/// `widealign predict`.
#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// Dataset (classification or regression): digits, fashion-mnist, mnist, kmnist, idx:DIR,
    /// cifar10:DIR, csv:FILE, teacher.
    #[arg(long, default_value = "digits", value_name = "NAME")]
    pub dataset: String,
    /// Use a stratified subset of K training examples (default: the whole training split).
    #[arg(long, value_name = "K")]
    pub train_size: Option<usize>,
    /// Seed of the training subset (and of generated datasets).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Number of hidden layers.
    #[arg(long, default_value_t = 3, value_name = "L")]
    pub depth: usize,
    /// Activation and initial scales of the infinite-width network.
    #[command(flatten)]
    pub net: KernelNetArgs,
    /// Start the biases at zero (as `train` does) instead of Gaussian (neural-tangents' Dense).
    #[arg(long)]
    pub zero_bias_init: bool,
    /// The training kernel.
    #[arg(long, value_parser = choice(KERNELS, KernelKind::name), default_value_t = KernelKind::Ntk)]
    pub kernel: KernelKind,
    /// Training time: `inf` (to convergence) or a number of training-loop steps T ≥ 0.
    #[arg(long, default_value = "inf", value_name = "inf|T")]
    pub time: TimeArg,
    /// Learning rate of the steps counted by --time (not used at --time inf).
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "F",
        allow_negative_numbers = true
    )]
    pub lr: f64,
    /// Ridge R·tr(K)/N added to the training kernel's diagonal.
    #[arg(
        long,
        default_value_t = 1e-4,
        value_name = "R",
        allow_negative_numbers = true
    )]
    pub diag_reg: f64,
    /// Storage of the training kernel at --time inf.
    #[arg(long, value_parser = choice(PRECISIONS, Precision::name), default_value_t = Precision::F32)]
    pub precision: Precision,
    /// Also compute the predictive variance of each test output (eigendecomposition; reports
    /// its mean and writes it with --out).
    #[arg(long)]
    pub variance: bool,
    /// Use the kernels in this .npy file (N × N, from `widealign ntk --dataset ... --out`) and
    /// the test block beside it (.test.npy) instead of computing them.
    #[arg(long, value_name = "K.npy")]
    pub kernel_file: Option<PathBuf>,
    /// Refuse runs whose predicted peak memory exceeds this many GB (default: the memory
    /// available when the run starts).
    #[arg(long, value_name = "GB")]
    pub memory_limit: Option<f64>,
    /// Tile side of the blocked Cholesky.
    #[arg(long, default_value_t = widealign_ntk::solve::DEFAULT_TILE, value_name = "B")]
    pub tile: usize,
    /// Write the mean test outputs (test × C) as .npy (and the variances beside, .var.npy).
    #[arg(long, value_name = "PRED.npy")]
    pub out: Option<PathBuf>,
    /// Print one JSON object (otherwise a readable summary).
    #[arg(long)]
    pub json: bool,
}

/// `--time`: `inf` or a non-negative number of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeArg(pub TrainTime);

impl std::str::FromStr for TimeArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("inf") || t.eq_ignore_ascii_case("infinity") {
            return Ok(TimeArg(TrainTime::Infinite));
        }
        match t.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(TimeArg(TrainTime::Steps(v))),
            _ => Err(format!("`{s}` is neither `inf` nor a number of steps ≥ 0")),
        }
    }
}

/// An image shape `H,W,C` (`--image`), each at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape(pub [usize; 3]);

impl std::str::FromStr for ImageShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let bad = || format!("`{s}` is not an image shape H,W,C of three positive integers");
        if parts.len() != 3 {
            return Err(bad());
        }
        let mut out = [0usize; 3];
        for (o, p) in out.iter_mut().zip(&parts) {
            *o = p.parse().map_err(|_| bad())?;
            if *o == 0 {
                return Err(bad());
            }
        }
        Ok(ImageShape(out))
    }
}

/// Comma-separated list of widths, e.g. `64,256,1024`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Widths(pub Vec<usize>);

impl std::str::FromStr for Widths {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',') {
            let w: usize = part
                .trim()
                .parse()
                .map_err(|_| format!("`{part}` is not a positive integer width"))?;
            if w == 0 {
                return Err("widths must be at least 1".into());
            }
            out.push(w);
        }
        Ok(Widths(out))
    }
}

/// `widealign dynamics`.
#[derive(Debug, Clone, Args)]
pub struct DynamicsArgs {
    /// Architecture.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Dataset: digits, teacher, csv:FILE, ... for --model mlp; add, teacher-seq for --model rnn
    /// [default: digits for mlp, teacher-seq for rnn].
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
    /// Use a subset of K training examples (sequences for --model rnn).
    #[arg(long, value_name = "K")]
    pub train_size: Option<usize>,
    /// Learning rate of full-batch gradient descent [default: 1.0 for mlp, 0.25 for rnn].
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Optimiser (the theory describes sgd).
    #[arg(long, value_parser = choice(OPTIMIZERS, OptimizerChoice::name), default_value_t = OptimizerChoice::Sgd)]
    pub optimizer: OptimizerChoice,
    /// Seed of the initialisations and the dataset.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Not used (full-batch gradient descent runs --steps steps); accepted as before.
    #[arg(long, value_name = "E", hide = true)]
    pub epochs: Option<usize>,
    /// Not used (the batch is the whole training set); accepted as before.
    #[arg(long, value_name = "B", hide = true)]
    pub batch_size: Option<usize>,
    /// Widths to simulate.
    #[arg(long, default_value = "64,256,1024,4096", value_name = "N,N,..")]
    pub widths: Widths,
    /// Full-batch gradient-descent steps.
    #[arg(long, default_value_t = 200, value_name = "K")]
    pub steps: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `widealign align`.
#[derive(Debug, Clone, Args)]
pub struct AlignArgs {
    /// Architecture.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Dataset.
    #[command(flatten)]
    pub data: DataArgs,
    /// Optimisation.
    #[command(flatten)]
    pub optim: OptimArgs,
    /// Convolutional network (--channels C,C,.. lists the channel counts to train).
    #[command(flatten)]
    pub cnn: CnnArgs,
    /// Learning rule of the training run whose weight changes are measured.
    #[arg(long, value_parser = choice(RULES, RuleKind::name), default_value_t = RuleKind::Bp)]
    pub rule: RuleKind,
    /// Widths to train (MLP, RNN; the CNN's axis is --channels).
    #[arg(long, default_value = "64,256,1024,4096", value_name = "N,N,..")]
    pub widths: Widths,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Mid-run checkpoints: one file for the whole experiment (the run in progress with its
    /// shadow accumulator, and the finished widths' numbers).
    #[command(flatten)]
    pub ckpt: CheckpointArgs,
}

/// `widealign data …`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Every dataset name, where it is looked for and whether it was found.
    #[command(after_help = "Example:\n  widealign data list --json")]
    List {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Load a dataset and describe it.
    #[command(
        after_help = "Example:\n  widealign data info fashion-mnist --json\n\n\
With --json prints {\"name\", \"path\", \"train\", \"test\", \"input_dim\", \"classes\"}."
    )]
    Info {
        /// Dataset name (as for `train --dataset`).
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Download a dataset (mnist, fashion-mnist, kmnist) with SHA-256 verification.
    #[cfg(feature = "download")]
    #[command(after_help = "Example:\n  widealign data fetch fashion-mnist")]
    Fetch {
        /// Dataset name.
        name: String,
        /// Target folder (default: $WIDEALIGN_DATA or ~/.local/share/widealign).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `widealign bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time training steps of one rule on random data.
    #[command(after_help = "\
Example:
  widealign bench step --model mlp --input-dim 784 --output-dim 10 --width 1024 --depth 2 \\
      --batch-size 100 --rule align-zero --steps 50 --json

Prints {\"step_ms_median\", \"step_ms_min\", \"samples_per_s\", ..}.")]
    Step(BenchStepArgs),
    /// Cost of mid-run checkpoints: the save and load of one checkpoint, and the step-time
    /// overhead of `--checkpoint-every` (interleaved with plain runs).
    #[command(after_help = "\
Example:
  widealign bench checkpoint --width 4096 --steps 0            # save/load of a 205 MB checkpoint
  widealign bench checkpoint --width 1024 --every 100 --steps 400 --reps 5 --json")]
    Checkpoint(BenchCheckpointArgs),
    /// Matrix-multiply throughput (n x n times n x n, f32).
    #[command(
        after_help = "Example:\n  widealign bench gemm --n 1024 --json\n\nPrints {\"gflops\", ..}."
    )]
    Gemm(BenchGemmArgs),
    /// Time the infinite-width NTK of n random inputs with itself.
    #[command(
        after_help = "Example:\n  widealign bench ntk --n 2000 --depth 3 --json\n\nPrints {\"seconds\", ..}."
    )]
    Ntk(BenchNtkArgs),
}

/// `widealign bench step`.
#[derive(Debug, Clone, Args)]
pub struct BenchStepArgs {
    /// Network family.
    #[arg(long, value_parser = choice(MODELS, ModelKind::name), default_value_t = ModelKind::Mlp)]
    pub model: ModelKind,
    /// Input dimension.
    #[arg(long, default_value_t = 784, value_name = "D")]
    pub input_dim: usize,
    /// Output dimension.
    #[arg(long, default_value_t = 10, value_name = "C")]
    pub output_dim: usize,
    /// Hidden width.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub width: usize,
    /// Hidden layers (MLP).
    #[arg(long, default_value_t = 2, value_name = "L")]
    pub depth: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 100, value_name = "B")]
    pub batch_size: usize,
    /// Sequence length (RNN).
    #[arg(long, default_value_t = 100, value_name = "T")]
    pub seq_len: usize,
    /// Learning rule.
    #[arg(long, value_parser = choice(RULES, RuleKind::name), default_value_t = RuleKind::Bp)]
    pub rule: RuleKind,
    /// Timed steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 20, value_name = "K")]
    pub steps: usize,
    /// Seed of the random data and initialisation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `widealign bench checkpoint`.
#[derive(Debug, Clone, Args)]
pub struct BenchCheckpointArgs {
    /// Hidden width of the MLP.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub width: usize,
    /// Hidden layers.
    #[arg(long, default_value_t = 2, value_name = "L")]
    pub depth: usize,
    /// Input dimension (64: the digits dataset).
    #[arg(long, default_value_t = 64, value_name = "D")]
    pub input_dim: usize,
    /// Output dimension.
    #[arg(long, default_value_t = 10, value_name = "C")]
    pub output_dim: usize,
    /// Optimiser (adam: the checkpoint also holds both moments, three times the parameters).
    #[arg(long, value_parser = choice(OPTIMIZERS, OptimizerChoice::name), default_value_t = OptimizerChoice::Adam)]
    pub optimizer: OptimizerChoice,
    /// Mini-batch size of the timed steps.
    #[arg(long, default_value_t = 100, value_name = "B")]
    pub batch_size: usize,
    /// Steps between checkpoints in the timed runs.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub every: usize,
    /// Timed steps per run (0: time only the save and load).
    #[arg(long, default_value_t = 400, value_name = "K")]
    pub steps: usize,
    /// Repetitions (saves; pairs of plain and checkpointed runs, interleaved).
    #[arg(long, default_value_t = 3, value_name = "R")]
    pub reps: usize,
    /// Folder the checkpoints are written to (default: the system's temporary folder).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `widealign bench gemm`.
#[derive(Debug, Clone, Args)]
pub struct BenchGemmArgs {
    /// Matrix size.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub n: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 5, value_name = "R")]
    pub reps: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `widealign bench ntk`.
#[derive(Debug, Clone, Args)]
pub struct BenchNtkArgs {
    /// Number of random inputs.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub n: usize,
    /// Input dimension.
    #[arg(long, default_value_t = 784, value_name = "D")]
    pub input_dim: usize,
    /// Hidden layers.
    #[arg(long, default_value_t = 3, value_name = "L")]
    pub depth: usize,
    /// Nonlinearity.
    #[arg(long, value_parser = choice(ACTIVATIONS, Activation::name), default_value_t = Activation::Relu)]
    pub activation: Activation,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn shard_parses() {
        assert_eq!(
            "1/4".parse::<ShardArg>(),
            Ok(ShardArg::Fixed { index: 1, count: 4 })
        );
        assert_eq!("auto".parse::<ShardArg>(), Ok(ShardArg::Auto));
        assert!("4/4".parse::<ShardArg>().is_err());
        assert!("0/0".parse::<ShardArg>().is_err());
        assert!("x/2".parse::<ShardArg>().is_err());
        assert!("3".parse::<ShardArg>().is_err());
    }

    #[test]
    fn widths_parse() {
        assert_eq!("64, 256".parse::<Widths>(), Ok(Widths(vec![64, 256])));
        assert!("64,0".parse::<Widths>().is_err());
        assert!("64,,1".parse::<Widths>().is_err());
    }

    #[test]
    fn choices_list_every_value_once() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(choices: Choices<T>, all: &[T]) {
            assert_eq!(choices.len(), all.len());
            assert!(all.iter().all(|v| choices.iter().any(|c| c.0 == *v)));
        }
        check(MODELS, &ModelKind::ALL);
        check(PADDINGS, &Padding::ALL);
        check(READOUTS, &CnnReadout::ALL);
        check(NORMS, &Norm::ALL);
        check(ACTIVATIONS, &Activation::ALL);
        check(PARAMS, &ParamKind::ALL);
        check(OPTIMIZERS, &OptimizerChoice::ALL);
        check(SCALES, &Scale::ALL);
        // `--help` lists the rules in the one rule order of the workspace
        assert_eq!(RULES.iter().map(|c| c.0).collect::<Vec<_>>(), RuleKind::ALL);
    }

    #[test]
    fn choice_flags_parse_to_the_workspace_types() {
        let cli = Cli::try_parse_from([
            "widealign",
            "train",
            "--rule",
            "align-zero",
            "--model",
            "rnn",
            "--activation",
            "gelu",
            "--param",
            "standard",
            "--optimizer",
            "adam",
        ])
        .unwrap();
        let Command::Train(a) = cli.command else {
            panic!("not train")
        };
        assert_eq!(a.rule, RuleKind::AlignZero);
        assert_eq!(a.model.model, ModelKind::Rnn);
        assert_eq!(a.model.activation, Activation::Gelu);
        assert_eq!(a.model.param, ParamKind::Standard);
        assert_eq!(a.optim.optimizer, OptimizerChoice::Adam);
        let e = Cli::try_parse_from(["widealign", "train", "--rule", "Align-Zero"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
    }
}
