//! Mid-run checkpoints of the alignment experiment: the shadow accumulator, the run in progress
//! and the finished widths survive a kill or a stop, and the continued experiment's numbers
//! equal the uninterrupted one's bit for bit (MLP and RNN).

use std::path::Path;

use widealign_experiments::align::{align_run, align_widths, AlignEvent, AlignWidth};
use widealign_experiments::{ExperimentError, Trainer};
use widealign_rules::{Checkpointing, ModelKind, Progress, TrainConfig};

fn mlp() -> TrainConfig {
    TrainConfig {
        depth: 2,
        epochs: 2,
        train_size: Some(100),
        batch_size: 20,
        lr: 1.0,
        ..TrainConfig::default()
    }
}

fn rnn() -> TrainConfig {
    TrainConfig {
        model: ModelKind::Rnn,
        dataset: "add".into(),
        epochs: 2,
        train_size: Some(40),
        batch_size: 10,
        lr: 0.001,
        ..TrainConfig::default()
    }
}

const WIDTHS: [usize; 2] = [16, 24];

/// The numbers as text: `{:?}` prints every f64 with the digits that round-trip it (and NaN
/// as `NaN`), so equal texts mean bit-identical numbers.
fn bits(ws: &[AlignWidth]) -> String {
    format!("{ws:?}")
}

/// Runs the experiment as `ckpt` says; `on_step` sees the global step count after each step
/// and may ask to stop by returning false.
fn run(
    base: &TrainConfig,
    ckpt: &Checkpointing,
    mut on_step: impl FnMut(usize) -> bool,
) -> Result<Vec<AlignWidth>, ExperimentError> {
    let mut steps = 0;
    align_widths(base, &WIDTHS, &mut Trainer::new(), ckpt, &mut |e| match e {
        AlignEvent::Progress(Progress::Step { .. }) => {
            steps += 1;
            on_step(steps)
        }
        _ => true,
    })
}

/// The uninterrupted experiment; with checkpoints every 3 steps the numbers are the same, and
/// a copy of the checkpoint taken after every step stands for a kill -9 at that step. Each copy
/// continued gives the uninterrupted numbers.
fn killed_anywhere_resumes_to_the_same_numbers(base: TrainConfig) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let whole = run(&base, &Checkpointing::default(), |_| true).unwrap();
    // the experiment is the alignment run of each width
    for (w, &width) in whole.iter().zip(&WIDTHS) {
        let single = align_run(
            &TrainConfig {
                width,
                ..base.clone()
            },
            &mut Trainer::new(),
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(
            bits(&[AlignWidth::from(&single)]),
            bits(std::slice::from_ref(w))
        );
    }
    let live = d.join("live.st");
    let save = Checkpointing {
        save_to: Some(live.clone()),
        every: Some(3),
        resume_from: None,
    };
    let mut total = 0;
    let checkpointed = run(&base, &save, |k| {
        let _ = std::fs::copy(&live, d.join(format!("snap{k}.st")));
        total = k;
        true
    })
    .unwrap();
    assert_eq!(bits(&checkpointed), bits(&whole), "saving changes nothing");
    // kill points: in the first width, at its last step, in the second width
    let per_width = total / 2;
    let points = [4, 7, per_width, per_width + 1, per_width + 5, total];
    for k in points {
        let snap = d.join(format!("snap{k}.st"));
        let resumed = d.join("resumed.st");
        std::fs::copy(&snap, &resumed).unwrap();
        let ckpt = Checkpointing {
            resume_from: Some(resumed),
            ..Checkpointing::default()
        };
        let mut more = 0;
        let out = run(&base, &ckpt, |_| {
            more += 1;
            true
        })
        .unwrap();
        assert_eq!(bits(&out), bits(&whole), "killed after step {k}");
        assert!(more < total, "step {k}: continued, not restarted");
    }
}

#[test]
fn mlp_alignment_killed_anywhere_resumes_to_the_same_numbers() {
    killed_anywhere_resumes_to_the_same_numbers(mlp());
}

#[test]
fn rnn_alignment_killed_anywhere_resumes_to_the_same_numbers() {
    killed_anywhere_resumes_to_the_same_numbers(rnn());
}

/// Stops the experiment after `stop_after` steps; it must save and end with `Preempted`.
fn preempt(base: &TrainConfig, path: &Path, stop_after: usize) {
    let ckpt = Checkpointing {
        save_to: Some(path.to_path_buf()),
        every: None,
        resume_from: path.exists().then(|| path.to_path_buf()),
    };
    let mut seen = 0;
    let e = run(base, &ckpt, |_| {
        seen += 1;
        seen < stop_after
    })
    .unwrap_err();
    assert!(matches!(e, ExperimentError::Preempted { .. }), "{e}");
}

#[test]
fn a_stopped_experiment_saves_at_the_step_boundary_and_continues_exactly() {
    for base in [mlp(), rnn()] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("align.st");
        let whole = run(&base, &Checkpointing::default(), |_| true).unwrap();
        // stopped three times, each session continuing the last one's checkpoint
        for stop_after in [3, 5, 6] {
            preempt(&base, &path, stop_after);
        }
        let ckpt = Checkpointing {
            resume_from: Some(path.clone()),
            ..Checkpointing::default()
        };
        let out = run(&base, &ckpt, |_| true).unwrap();
        assert_eq!(bits(&out), bits(&whole), "{:?}", base.model);
    }
}

#[test]
fn alignment_checkpoints_are_refused_where_they_do_not_belong() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("align.st");
    let base = mlp();
    preempt(&base, &path, 2);
    let resume = Checkpointing {
        resume_from: Some(path.clone()),
        ..Checkpointing::default()
    };
    // a plain training run does not continue an alignment experiment, nor the other way round
    let e = Trainer::new()
        .run_checkpointed(
            &TrainConfig {
                width: WIDTHS[0],
                ..base.clone()
            },
            &mut |_| true,
            &resume,
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"align\"") && e.contains("widealign align"),
        "{e}"
    );
    let plain = dir.path().join("plain.st");
    let cfg = TrainConfig {
        width: WIDTHS[0],
        ..base.clone()
    };
    Trainer::new()
        .run_checkpointed(
            &cfg,
            &mut |_| true,
            &Checkpointing {
                save_to: Some(plain.clone()),
                ..Checkpointing::default()
            },
        )
        .unwrap();
    let e = run(
        &base,
        &Checkpointing {
            resume_from: Some(plain),
            ..Checkpointing::default()
        },
        |_| true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("plain training run"), "{e}");
    // other widths, other settings
    let e = align_widths(&base, &[16, 32], &mut Trainer::new(), &resume, &mut |_| {
        true
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("widths") && e.contains("16,24"), "{e}");
    let other = TrainConfig {
        lr: 0.5,
        ..base.clone()
    };
    let e = run(&other, &resume, |_| true).unwrap_err().to_string();
    assert!(e.contains("lr"), "{e}");
    // once a width has finished, every width keeps the saved number of epochs
    let after_first = dir.path().join("later.st");
    let steps_per_width = 2 * 100 / 20;
    preempt(&base, &after_first, steps_per_width + 2);
    let longer = TrainConfig {
        epochs: 3,
        ..base.clone()
    };
    let resume_later = Checkpointing {
        resume_from: Some(after_first),
        ..Checkpointing::default()
    };
    let e = run(&longer, &resume_later, |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("epochs") && e.contains("width 16 finished"),
        "{e}"
    );
    // while none has, the run in progress may train longer
    assert!(run(&longer, &resume, |_| true).is_ok());
}
