//! The reference experiment plan (docs/theory.md §6, docs/reproduction.md): which runs
//! `widealign reproduce` and the `experiments` example make, at three scales.
//!
//! | group ([`Experiment`]) | runs |
//! |---|---|
//! | accuracy vs width | every rule, MLP depth 2 on the image dataset, lr 5, batch 100, a range of widths |
//! | Add task | Elman RNN, rules bp / align-ada / align-zero / readout ([`ADD_RULES`]), lr 0.001, batch 50, a range of widths |
//! | low data | every rule with 100, 300, 1000 stratified training examples and the same number of steps |
//! | alignment | backprop at every accuracy width, lr 5, 100 epochs (the reference's snapshot), with the Align-zero update accumulated alongside ([`crate::align`]); again on 100 training examples |
//! | RNN alignment | the same per weight matrix (`W_in`, `W_rec`, `W_out`) of the Elman RNN on the Add task: backprop, lr 0.001, batch 50, a range of widths |
//! | dynamics | full-batch GD on teacher–student regression against the closed form ([`crate::dynamics`]) |
//! | RNN dynamics | the same for the Elman RNN (erf) on the sequence teacher–student task `teacher-seq`, per weight matrix, lr 0.25 |
//! | CNN accuracy vs channels | every rule, a CNN with batch norm on the image dataset ([`cnn_base`]), a range of channel counts |
//! | CNN alignment | backprop at every CNN channel count with the Align-zero update accumulated alongside, per convolution layer and the readout |
//! | infinite-width limit | the NTK predictor of the accuracy runs' network and data ([`crate::limit`]) at `t = ∞` and after as many steps as those runs take; computed once, not per seed |
//!
//! **Seeds.** [`plan`] gives every run the one seed it is passed; [`Plan::with_seeds`] turns
//! each run of every group into `K` runs with the seeds `seed, seed + 1, …, seed + K − 1`
//! (the seed is part of a run's identity, [`crate::config::key`], so the copies are distinct
//! runs for `--resume` and comparisons). A *cell* is a run with its seed ignored; the report
//! shows each cell's mean with its 95% interval ([`crate::stats`]). A group added to the plan
//! gets seeds by listing its runs in [`Plan::groups_mut`].
//!
//! ```
//! use widealign_experiments::plan::{plan, Experiment, Scale};
//! let p = plan(Scale::Quick, "digits", 0).unwrap();
//! assert_eq!(p.widths, [64, 256, 1024]);
//! assert_eq!(p.accuracy.len(), 7 * 3); // every rule at every width
//! let groups = p.training_groups();
//! assert_eq!(groups[1].0, Experiment::AddTask);
//! assert!(groups[1].1.iter().all(|c| c.dataset == "add"));
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use widealign_rules::{ModelKind, RuleKind, TrainConfig};
use widealign_tensor::Activation;

use crate::dynamics::DynamicsParams;
use crate::limit::LimitSettings;
use crate::ExperimentError;

/// Rules of the Add-task experiment.
pub const ADD_RULES: [RuleKind; 4] = [
    RuleKind::Bp,
    RuleKind::AlignAda,
    RuleKind::AlignZero,
    RuleKind::Readout,
];

/// Image datasets the plan runs on.
pub const DATASETS: [&str; 2] = ["digits", "fashion-mnist"];

/// How much computing a plan does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// Seconds: tiny widths and one epoch; tests the pipeline, not the science.
    Tiny,
    /// Minutes on a laptop: fewer widths and epochs.
    Quick,
    /// The reference widths and epochs (hours).
    Full,
}

impl Scale {
    /// Every scale, smallest first.
    pub const ALL: [Scale; 3] = [Scale::Tiny, Scale::Quick, Scale::Full];

    /// `"tiny"`, `"quick"` or `"full"`.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Tiny => "tiny",
            Scale::Quick => "quick",
            Scale::Full => "full",
        }
    }

    /// The value for this scale among `(tiny, quick, full)`.
    fn pick<T>(self, tiny: T, quick: T, full: T) -> T {
        match self {
            Scale::Tiny => tiny,
            Scale::Quick => quick,
            Scale::Full => full,
        }
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scale {
    type Err = ExperimentError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scale::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                ExperimentError::setting(
                    "scale",
                    format!("unknown scale `{s}` (expected one of: tiny, quick, full)"),
                )
            })
    }
}

/// The experiment groups of a plan, in the order they run; their names are the
/// `"experiment"` field of every results line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Experiment {
    /// Test accuracy against width, every rule.
    AccuracyVsWidth,
    /// The Add task against width.
    AddTask,
    /// Test accuracy with 100, 300, 1000 training examples.
    LowData,
    /// Alignment of backprop's weight change with the predicted update, against width.
    Alignment,
    /// Alignment of backprop's change of each RNN weight matrix with the predicted update on
    /// the Add task, against width.
    RnnAlignment,
    /// Layerwise weight dynamics against the closed form, against width.
    Dynamics,
    /// The RNN's weight dynamics (`W_in`, `W_rec`, `W_out`) against the closed form, against
    /// width, on the sequence teacher–student task.
    RnnDynamics,
    /// Test accuracy of the CNN against channel count, every rule.
    CnnAccuracy,
    /// Alignment of backprop's change of each CNN kernel (and the readout) with the predicted
    /// update, against channel count.
    CnnAlignment,
    /// The infinite-width NTK predictor of the accuracy-vs-width runs' network and data, the
    /// limit of the finite networks as the width grows.
    Limit,
}

impl Experiment {
    /// Every group in running order.
    pub const ALL: [Experiment; 10] = [
        Experiment::AccuracyVsWidth,
        Experiment::AddTask,
        Experiment::LowData,
        Experiment::Alignment,
        Experiment::RnnAlignment,
        Experiment::Dynamics,
        Experiment::RnnDynamics,
        Experiment::CnnAccuracy,
        Experiment::CnnAlignment,
        Experiment::Limit,
    ];

    /// The name written into results lines: `accuracy_vs_width`, `add_task`, `low_data`,
    /// `alignment`, `rnn_alignment`, `dynamics`, `rnn_dynamics`, `cnn_accuracy_vs_channels`,
    /// `cnn_alignment`, `limit`.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::AccuracyVsWidth => "accuracy_vs_width",
            Experiment::AddTask => "add_task",
            Experiment::LowData => "low_data",
            Experiment::Alignment => "alignment",
            Experiment::RnnAlignment => "rnn_alignment",
            Experiment::Dynamics => "dynamics",
            Experiment::RnnDynamics => "rnn_dynamics",
            Experiment::CnnAccuracy => "cnn_accuracy_vs_channels",
            Experiment::CnnAlignment => "cnn_alignment",
            Experiment::Limit => "limit",
        }
    }
}

impl fmt::Display for Experiment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything a reproduction runs, decided by the scale, the image dataset, the first seed and
/// the number of seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Image dataset name.
    pub dataset: String,
    /// Scale.
    pub scale: Scale,
    /// First seed (every run's seed when [`Plan::seeds`] is 1).
    pub seed: u64,
    /// Seeds per cell: the runs of a cell have the seeds `seed..seed + seeds`.
    pub seeds: usize,
    /// Accuracy-vs-width runs (every rule × widths, rule slowest).
    pub accuracy: Vec<TrainConfig>,
    /// Widths of the accuracy experiment (and of the alignment runs).
    pub widths: Vec<usize>,
    /// Add-task runs ([`ADD_RULES`] × widths).
    pub add: Vec<TrainConfig>,
    /// Widths of the Add task.
    pub add_widths: Vec<usize>,
    /// Low-data runs (every rule × sizes).
    pub low_data: Vec<TrainConfig>,
    /// Training-set sizes of the low-data runs.
    pub sizes: Vec<usize>,
    /// Alignment runs (bp): one per width on the whole training set, then one per width on
    /// [`Plan::align_low_data`] examples (where the input-span fraction is informative).
    pub align: Vec<TrainConfig>,
    /// RNN alignment runs on the Add task (bp, one per width of [`Plan::rnn_align_widths`]).
    pub rnn_align: Vec<TrainConfig>,
    /// Widths of the RNN alignment runs.
    pub rnn_align_widths: Vec<usize>,
    /// Training-set size of the low-data alignment runs.
    pub align_low_data: usize,
    /// Dynamics experiments (one per activation).
    pub dynamics: Vec<DynamicsParams>,
    /// RNN dynamics experiments (erf on `teacher-seq`).
    pub rnn_dynamics: Vec<DynamicsParams>,
    /// CNN accuracy runs (every rule × [`Plan::cnn_channels`], rule slowest; settings of
    /// [`cnn_base`]).
    pub cnn: Vec<TrainConfig>,
    /// Channel counts of the CNN runs (every convolution layer has this many).
    pub cnn_channels: Vec<usize>,
    /// CNN alignment runs (bp, one per channel count, the accuracy runs' settings).
    pub cnn_align: Vec<TrainConfig>,
    /// Infinite-width predictions of the accuracy runs' network and data: `t = ∞`, then the
    /// runs' length. Not multiplied by [`Plan::with_seeds`]: they have no randomness (the
    /// quick and full accuracy runs use the whole training split; at the tiny scale the
    /// prediction is on the first seed's subset).
    pub limit: Vec<LimitSettings>,
}

impl Plan {
    /// The three groups of training runs (each a sweep), in running order.
    pub fn training_groups(&self) -> [(Experiment, &[TrainConfig]); 3] {
        [
            (Experiment::AccuracyVsWidth, &self.accuracy),
            (Experiment::AddTask, &self.add),
            (Experiment::LowData, &self.low_data),
        ]
    }

    /// Every list of training configs of the plan (the training groups, the MLP and RNN
    /// alignment runs, and the config of every dynamics experiment), for changes that apply to
    /// all runs alike, such as [`Plan::with_seeds`]. A new group lists its runs here.
    pub fn groups_mut(&mut self) -> Vec<&mut Vec<TrainConfig>> {
        vec![
            &mut self.accuracy,
            &mut self.add,
            &mut self.low_data,
            &mut self.align,
            &mut self.rnn_align,
            &mut self.cnn,
            &mut self.cnn_align,
        ]
    }

    /// The plan with `k` seeds per cell: every run (and every dynamics experiment) becomes `k`
    /// runs with the seeds `seed, seed + 1, …, seed + k − 1`, the copies of one run adjacent
    /// and in seed order. `with_seeds(1)` is the plan itself.
    ///
    /// # Errors
    /// [`ExperimentError::InvalidSetting`] (`seeds`) for `k = 0`, for more than
    /// [`MAX_SEEDS`] seeds, or when the last seed would overflow `u64`.
    ///
    /// ```
    /// use widealign_experiments::plan::{plan, Scale};
    /// let p = plan(Scale::Quick, "digits", 5).unwrap().with_seeds(3).unwrap();
    /// assert_eq!(p.accuracy.len(), 7 * 3 * 3);
    /// let seeds: Vec<u64> = p.accuracy[..3].iter().map(|c| c.seed).collect();
    /// assert_eq!(seeds, [5, 6, 7]);
    /// assert_eq!(p.dynamics.len(), 3);
    /// ```
    pub fn with_seeds(mut self, k: usize) -> Result<Self, ExperimentError> {
        if k == 0 || k > MAX_SEEDS {
            return Err(ExperimentError::setting(
                "seeds",
                format!("{k}: must be between 1 and {MAX_SEEDS}"),
            ));
        }
        if self.seeds != 1 {
            return Err(ExperimentError::setting(
                "seeds",
                format!("the plan already has {} seeds per cell", self.seeds),
            ));
        }
        let first = self.seed;
        let seeds: Vec<u64> = (0..k as u64)
            .map(|i| first.checked_add(i))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                ExperimentError::setting(
                    "seeds",
                    format!("{k} seeds from {first} overflow the seed range"),
                )
            })?;
        for group in self.groups_mut() {
            *group = group
                .iter()
                .flat_map(|c| seeds.iter().map(|&seed| TrainConfig { seed, ..c.clone() }))
                .collect();
        }
        for group in [&mut self.dynamics, &mut self.rnn_dynamics] {
            *group = group
                .iter()
                .flat_map(|d| {
                    seeds.iter().map(|&seed| {
                        let mut d = d.clone();
                        d.cfg.seed = seed;
                        d
                    })
                })
                .collect();
        }
        self.seeds = k;
        Ok(self)
    }
}

/// The largest number of seeds per cell [`Plan::with_seeds`] accepts.
pub const MAX_SEEDS: usize = 1000;

/// The runs of `runs` that belong to the same cell as `cell`: equal in every setting but the
/// seed.
pub fn same_cell<'a>(
    runs: &'a [TrainConfig],
    cell: &'a TrainConfig,
) -> impl Iterator<Item = &'a TrainConfig> + 'a {
    runs.iter().filter(move |c| {
        TrainConfig {
            seed: cell.seed,
            ..(*c).clone()
        } == *cell
    })
}

/// The settings of the CNN group's runs on `dataset` at `scale` (rule and channels are set per
/// run), chosen per dataset:
///
/// * `digits` (8×8×1): 2 convolution layers of 3×3, stride 1, SAME padding, batch norm after
///   each, ReLU, a readout of the flattened last maps, lr 30, batch 100. On 8×8 images a global
///   average pooling after two 3×3 layers (the reference's readout) keeps only a bag of 5×5
///   patches: backprop reaches 0.55 test accuracy after 5 epochs at 16 channels (seed 0),
///   against 0.89 with the flattened readout (`widealign train --model cnn --channels 16
///   --conv-layers 2 --norm batch --lr 30 --epochs 5 --readout gap|flatten`).
/// * `fashion-mnist` (28×28×1): the reference's KMNIST network as far as the config can say it:
///   3 convolution layers of 3×3 with batch norm and global average pooling, lr 2, batch 100;
///   stride 2 in every layer (the reference: 1, 2, 2).
///
/// Epochs: 1 (tiny, on 100 training images), 5 (quick), 20 (full).
pub fn cnn_base(scale: Scale, dataset: &str, seed: u64) -> TrainConfig {
    use widealign_models::{CnnReadout, Norm};
    let digits = dataset == "digits";
    TrainConfig {
        model: ModelKind::Cnn,
        dataset: dataset.to_string(),
        activation: Activation::Relu,
        conv_layers: if digits { 2 } else { 3 },
        kernel: 3,
        stride: if digits { 1 } else { 2 },
        readout: if digits {
            CnnReadout::Flatten
        } else {
            CnnReadout::Gap
        },
        norm: Norm::Batch,
        lr: if digits { 30.0 } else { 2.0 },
        batch_size: 100,
        epochs: scale.pick(1, 5, 20),
        train_size: (scale == Scale::Tiny).then_some(100),
        seed,
        ..TrainConfig::default()
    }
}

/// The experiment plan for a scale, image dataset and seed: quick finishes in minutes on two
/// cores, full uses the reference widths and epochs.
///
/// # Errors
/// [`ExperimentError::InvalidSetting`] (`dataset`) for a dataset outside [`DATASETS`].
pub fn plan(scale: Scale, dataset: &str, seed: u64) -> Result<Plan, ExperimentError> {
    if !DATASETS.contains(&dataset) {
        return Err(ExperimentError::setting(
            "dataset",
            format!("`{dataset}`: reproduce runs on digits or fashion-mnist"),
        ));
    }
    let tiny = scale == Scale::Tiny;
    let widths: Vec<usize> =
        scale.pick(vec![8, 16], vec![64, 256, 1024], vec![64, 256, 1024, 4096]);
    let base = TrainConfig {
        model: ModelKind::Mlp,
        dataset: dataset.to_string(),
        depth: 2,
        activation: Activation::Relu,
        lr: 5.0,
        batch_size: 100,
        epochs: scale.pick(1, 40, 40),
        train_size: tiny.then_some(200),
        seed,
        ..TrainConfig::default()
    };
    let mut accuracy = Vec::new();
    for rule in RuleKind::ALL {
        for &width in &widths {
            accuracy.push(TrainConfig {
                rule,
                width,
                ..base.clone()
            });
        }
    }
    let add_widths: Vec<usize> = scale.pick(vec![4, 8], vec![32, 64, 128], vec![64, 256, 1024]);
    let mut add = Vec::new();
    for rule in ADD_RULES {
        for &width in &add_widths {
            add.push(TrainConfig {
                model: ModelKind::Rnn,
                dataset: "add".into(),
                rule,
                width,
                depth: 1,
                activation: Activation::Relu,
                lr: 0.001,
                batch_size: 50,
                epochs: scale.pick(1, 200, 200),
                seed,
                ..TrainConfig::default()
            });
        }
    }
    let sizes = if tiny {
        vec![20, 40]
    } else {
        vec![100usize, 300, 1000]
    };
    // Low data: every subset size gets the same number of optimisation steps (a fixed epoch
    // count would give the 100-example runs a tenth of the steps of the 1000-example runs).
    let low_data_steps: usize = scale.pick(2, 400, 600);
    let mut low_data = Vec::new();
    for rule in RuleKind::ALL {
        for &k in &sizes {
            let steps_per_epoch = k.div_ceil(base.batch_size);
            low_data.push(TrainConfig {
                rule,
                width: scale.pick(16, 512, 1024),
                train_size: Some(k),
                epochs: low_data_steps.div_ceil(steps_per_epoch),
                ..base.clone()
            });
        }
    }
    let mut align: Vec<TrainConfig> = widths
        .iter()
        .map(|&width| TrainConfig {
            rule: RuleKind::Bp,
            width,
            // the reference's alignment settings (alignment_kmnist.py): lr 5, the epoch-100
            // snapshot; at lr 1 and 5 epochs the network is barely trained (docs/fidelity.md §8)
            lr: 5.0,
            epochs: scale.pick(1, 100, 100),
            train_size: tiny.then_some(100),
            ..base.clone()
        })
        .collect();
    // The same with fewer training examples than the hidden layers' input dimension, so the
    // input-span fraction can be below 1; as many optimisation steps as the full-data run on
    // digits (1,442 training images: 15 steps per epoch, 1,500 steps in 100 epochs).
    let align_low_data: usize = scale.pick(20, 100, 100);
    let full_steps = scale.pick(1, 100 * 15, 100 * 15);
    align.extend(widths.iter().map(|&width| TrainConfig {
        rule: RuleKind::Bp,
        width,
        lr: 5.0,
        train_size: Some(align_low_data),
        epochs: full_steps / align_low_data.div_ceil(base.batch_size),
        ..base.clone()
    }));
    let rnn_align_widths: Vec<usize> =
        scale.pick(vec![4, 8], vec![32, 64, 128], vec![64, 256, 1024]);
    let rnn_align = rnn_align_widths
        .iter()
        .map(|&width| TrainConfig {
            model: ModelKind::Rnn,
            dataset: "add".into(),
            rule: RuleKind::Bp,
            width,
            depth: 1,
            activation: Activation::Relu,
            lr: 0.001,
            batch_size: 50,
            epochs: scale.pick(1, 50, 50),
            seed,
            ..TrainConfig::default()
        })
        .collect();
    let dyn_widths: Vec<usize> =
        scale.pick(vec![16, 32], vec![64, 256, 1024], vec![64, 256, 1024, 4096]);
    let activations: &[Activation] = if scale == Scale::Full {
        &[Activation::Erf, Activation::Relu]
    } else {
        &[Activation::Erf]
    };
    let dynamics = activations
        .iter()
        .map(|&activation| DynamicsParams {
            cfg: TrainConfig {
                dataset: "teacher".into(),
                activation,
                depth: 2,
                lr: 0.1,
                train_size: Some(scale.pick(16, 64, 64)),
                seed,
                ..TrainConfig::default()
            },
            widths: dyn_widths.clone(),
            steps: scale.pick(10, 200, 200),
        })
        .collect();
    // the RNN: erf on the default sequence teacher task (32 sequences of 6 steps) at the
    // learning rate of `widealign dynamics --model rnn` (largest stable rate 0.87)
    let rnn_dynamics = vec![DynamicsParams {
        cfg: TrainConfig {
            model: ModelKind::Rnn,
            dataset: crate::dynamics::DEFAULT_RNN_DATASET.into(),
            activation: Activation::Erf,
            depth: 1,
            lr: crate::dynamics::DEFAULT_RNN_LR,
            seed,
            ..TrainConfig::default()
        },
        widths: scale.pick(vec![8, 16], vec![64, 256, 1024], vec![64, 256, 1024, 4096]),
        steps: scale.pick(5, 200, 200),
    }];
    let cnn_channels: Vec<usize> = scale.pick(vec![2, 4], vec![2, 8, 32], vec![8, 32, 128]);
    let cnn_cfg = cnn_base(scale, dataset, seed);
    let mut cnn = Vec::new();
    for rule in RuleKind::ALL {
        for &channels in &cnn_channels {
            cnn.push(TrainConfig {
                rule,
                channels,
                ..cnn_cfg.clone()
            });
        }
    }
    let cnn_align = cnn_channels
        .iter()
        .map(|&channels| TrainConfig {
            rule: RuleKind::Bp,
            channels,
            ..cnn_cfg.clone()
        })
        .collect();
    // the limit of the accuracy runs (whose rule and width do not enter)
    let limit = vec![
        LimitSettings::infinite(&base),
        LimitSettings::at_training_length(&base),
    ];
    Ok(Plan {
        dataset: dataset.to_string(),
        scale,
        seed,
        seeds: 1,
        accuracy,
        widths,
        add,
        add_widths,
        low_data,
        sizes,
        align,
        align_low_data,
        rnn_align,
        rnn_align_widths,
        dynamics,
        rnn_dynamics,
        cnn,
        cnn_channels,
        cnn_align,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    /// No two training runs of a plan share an identity (nor belong to two groups).
    fn assert_runs_distinct(p: &Plan) {
        let mut ids: Vec<String> = p
            .training_groups()
            .iter()
            .flat_map(|(_, runs)| runs.iter().map(config::key))
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "no run belongs to two groups");
    }

    #[test]
    fn plans_cover_every_rule_and_validate() {
        for scale in Scale::ALL {
            let p = plan(scale, "digits", 0).unwrap();
            assert_eq!(p.accuracy.len(), 7 * p.widths.len());
            assert_eq!(p.low_data.len(), 7 * p.sizes.len());
            assert_eq!(p.add.len(), ADD_RULES.len() * p.add_widths.len());
            for c in p
                .accuracy
                .iter()
                .chain(&p.add)
                .chain(&p.low_data)
                .chain(&p.align)
                .chain(&p.rnn_align)
            {
                config::validate(c).unwrap();
            }
            assert!(p
                .add
                .iter()
                .chain(&p.rnn_align)
                .all(|c| c.model == ModelKind::Rnn && c.dataset == "add"));
            assert_eq!(p.rnn_align.len(), p.rnn_align_widths.len());
            assert!(p
                .rnn_align
                .iter()
                .all(|c| c.rule == RuleKind::Bp && c.lr == 0.001 && c.batch_size == 50));
            assert_runs_distinct(&p);
        }
        assert!(plan(Scale::Quick, "mnist", 0).is_err());
        let f = plan(Scale::Quick, "fashion-mnist", 3).unwrap();
        assert!(f
            .accuracy
            .iter()
            .all(|c| c.dataset == "fashion-mnist" && c.seed == 3 && c.train_size.is_none()));
        assert!(f.add.iter().all(|c| c.dataset == "add"));
    }

    /// The quick digits plan is the one behind docs/reproduction/results.jsonl: its settings
    /// are pinned so the published numbers stay reproducible.
    #[test]
    fn quick_plan_is_pinned() {
        let p = plan(Scale::Quick, "digits", 0).unwrap();
        let a = &p.accuracy[0];
        assert_eq!(
            (
                a.rule,
                a.width,
                a.depth,
                a.lr,
                a.batch_size,
                a.epochs,
                a.train_size
            ),
            (RuleKind::Bp, 64, 2, 5.0, 100, 40, None)
        );
        assert_eq!(p.add_widths, [32, 64, 128]);
        assert_eq!(
            (p.add[0].lr, p.add[0].batch_size, p.add[0].epochs),
            (0.001, 50, 200)
        );
        assert_eq!(p.sizes, [100, 300, 1000]);
        let epochs: Vec<usize> = p.low_data[..3].iter().map(|c| c.epochs).collect();
        assert_eq!(epochs, [400, 134, 40]);
        assert!(p.low_data.iter().all(|c| c.width == 512));
        assert!(p
            .align
            .iter()
            .all(|c| c.lr == 5.0 && c.rule == RuleKind::Bp));
        let (full, low): (Vec<_>, Vec<_>) = p.align.iter().partition(|c| c.train_size.is_none());
        assert!(full.iter().all(|c| c.epochs == 100));
        assert_eq!(p.align_low_data, 100);
        assert!(low
            .iter()
            .all(|c| c.train_size == Some(100) && c.epochs == 1500));
        assert_eq!(low.len(), p.widths.len());
        assert_eq!(p.rnn_align_widths, [32, 64, 128]);
        assert!(p.rnn_align.iter().all(|c| c.epochs == 50));
        assert_eq!(p.dynamics.len(), 1);
        assert_eq!(p.dynamics[0].steps, 200);
        assert_eq!(p.dynamics[0].cfg.train_size, Some(64));
        // the limit of the accuracy runs: t = ∞, then their 40 epochs of batch 100 at lr 5
        assert_eq!(p.limit.len(), 2);
        assert!(p
            .accuracy
            .iter()
            .all(|c| p.limit.iter().all(|l| l.describes(c))));
        let epochs: Vec<Option<usize>> = p.limit.iter().map(|l| l.epochs).collect();
        assert_eq!(epochs, [None, Some(40)]);
        assert!(p
            .limit
            .iter()
            .all(|l| l.kernel == "ntk" && l.diag_reg == 1e-4 && l.precision == "f32"));
    }

    /// Every group gets the seeds: each run becomes K adjacent runs with consecutive seeds,
    /// cells are the runs equal but for the seed, and every run stays distinct.
    #[test]
    fn seeds_multiply_every_group() {
        let one = plan(Scale::Quick, "digits", 10).unwrap();
        assert_eq!(one.seeds, 1);
        assert_eq!(one.clone().with_seeds(1).unwrap(), one);
        let three = one.clone().with_seeds(3).unwrap();
        assert_eq!(three.seeds, 3);
        let mut a = one.clone();
        let mut b = three.clone();
        for (g1, g3) in a.groups_mut().into_iter().zip(b.groups_mut()) {
            assert_eq!(g3.len(), 3 * g1.len());
            for (i, c) in g1.iter().enumerate() {
                let copies = &g3[3 * i..3 * i + 3];
                let seeds: Vec<u64> = copies.iter().map(|c| c.seed).collect();
                assert_eq!(seeds, [10, 11, 12]);
                for k in copies {
                    assert_eq!(
                        &TrainConfig {
                            seed: 10,
                            ..k.clone()
                        },
                        c
                    );
                }
                assert_eq!(same_cell(g3, c).count(), 3);
            }
        }
        assert_eq!(three.dynamics.len(), 3 * one.dynamics.len());
        assert_eq!(three.rnn_dynamics.len(), 3 * one.rnn_dynamics.len());
        // the infinite-width predictions have no seed to vary
        assert_eq!(three.limit, one.limit);
        assert_runs_distinct(&three);
        for bad in [0, MAX_SEEDS + 1] {
            let e = one.clone().with_seeds(bad).unwrap_err();
            assert!(e.to_string().contains("seeds"), "{e}");
        }
        assert!(three.with_seeds(2).is_err(), "seeds are applied once");
        let top = plan(Scale::Tiny, "digits", u64::MAX - 1).unwrap();
        assert!(top.clone().with_seeds(2).is_ok());
        assert!(top.with_seeds(3).is_err(), "overflowing seeds are refused");
    }

    /// The CNN group: every rule at every channel count, the alignment runs are the bp cells,
    /// and the quick digits settings are pinned (the published results).
    #[test]
    fn cnn_group_covers_every_rule_and_channel_count() {
        use widealign_models::{CnnReadout, Norm};
        for scale in Scale::ALL {
            for dataset in DATASETS {
                let p = plan(scale, dataset, 4).unwrap();
                assert_eq!(p.cnn.len(), 7 * p.cnn_channels.len());
                assert_eq!(p.cnn_align.len(), p.cnn_channels.len());
                for c in p.cnn.iter().chain(&p.cnn_align) {
                    config::validate(c).unwrap();
                    assert_eq!(
                        (c.model, c.dataset.as_str(), c.seed),
                        (ModelKind::Cnn, dataset, 4)
                    );
                    assert_eq!(c.norm, Norm::Batch);
                }
                for (a, ch) in p.cnn_align.iter().zip(&p.cnn_channels) {
                    assert_eq!((a.rule, a.channels), (RuleKind::Bp, *ch));
                    assert_eq!(same_cell(&p.cnn, a).count(), 1, "the bp cell's settings");
                }
            }
        }
        let q = plan(Scale::Quick, "digits", 0).unwrap();
        assert_eq!(q.cnn_channels, [2, 8, 32]);
        let c = &q.cnn[0];
        assert_eq!(
            (
                c.conv_layers,
                c.kernel,
                c.stride,
                c.readout,
                c.lr,
                c.batch_size,
                c.epochs,
                c.train_size
            ),
            (2, 3, 1, CnnReadout::Flatten, 30.0, 100, 5, None)
        );
        let f = plan(Scale::Full, "fashion-mnist", 0).unwrap();
        let c = &f.cnn[0];
        assert_eq!(
            (c.conv_layers, c.stride, c.readout, c.lr, c.epochs),
            (3, 2, CnnReadout::Gap, 2.0, 20)
        );
        assert_eq!(f.cnn_channels, [8, 32, 128]);
    }

    #[test]
    fn names_round_trip() {
        for s in Scale::ALL {
            assert_eq!(s.name().parse::<Scale>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert!("huge".parse::<Scale>().is_err());
        let names: Vec<&str> = Experiment::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            [
                "accuracy_vs_width",
                "add_task",
                "low_data",
                "alignment",
                "rnn_alignment",
                "dynamics",
                "rnn_dynamics",
                "cnn_accuracy_vs_channels",
                "cnn_alignment",
                "limit"
            ]
        );
    }
}
