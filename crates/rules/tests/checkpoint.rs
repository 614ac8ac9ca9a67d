//! Mid-run checkpoints: a run stopped anywhere and resumed gives the uninterrupted result bit
//! for bit (timings aside), for every rule, both models and both optimisers.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use widealign_data::{load, Dataset, LoadOptions};
use widealign_rules::{
    train, train_checkpointed, Callbacks, Checkpointing, ModelKind, OptimizerChoice, Progress,
    RuleKind, RulesError, TrainConfig, TrainResult,
};

fn data(model: ModelKind) -> Dataset {
    let (name, n) = match model {
        ModelKind::Mlp => ("digits", 60),
        ModelKind::Rnn => ("add", 40),
        ModelKind::Cnn => ("digits", 60),
    };
    load(
        name,
        &LoadOptions {
            train_size: Some(n),
            ..LoadOptions::default()
        },
    )
    .unwrap()
}

fn config(model: ModelKind, rule: RuleKind, optimizer: OptimizerChoice) -> TrainConfig {
    let (dataset, lr) = match (model, optimizer) {
        (ModelKind::Mlp, OptimizerChoice::Sgd) => ("digits", 1.0),
        (ModelKind::Mlp, OptimizerChoice::Adam) => ("digits", 0.01),
        (ModelKind::Rnn, OptimizerChoice::Sgd) => ("add", 0.001),
        (ModelKind::Rnn, OptimizerChoice::Adam) => ("add", 0.001),
        (ModelKind::Cnn, OptimizerChoice::Sgd) => ("digits", 1.0),
        (ModelKind::Cnn, OptimizerChoice::Adam) => ("digits", 0.01),
    };
    TrainConfig {
        model,
        dataset: dataset.into(),
        rule,
        width: 24,
        depth: 2,
        epochs: 3,
        batch_size: 25, // 60 rows: batches of 25, 25, 10; 40 sequences: 25, 15
        optimizer,
        lr,
        seed: 3,
        channels: 4,
        conv_layers: 2,
        ..TrainConfig::default()
    }
}

/// The result with every timing set to zero.
fn timeless(mut r: TrainResult) -> TrainResult {
    r.seconds = 0.0;
    for h in &mut r.history {
        h.seconds = 0.0;
    }
    r
}

/// Trains `cfg`, raising the stop flag after `stop_after` steps; the run must end with
/// `Preempted` and a checkpoint at `path`.
fn preempt(cfg: &TrainConfig, data: &Dataset, path: &Path, stop_after: usize) {
    let stop = AtomicBool::new(false);
    let steps = AtomicUsize::new(0);
    let callbacks = Callbacks {
        progress: Some(Box::new(|p: &Progress<'_>| {
            if matches!(p, Progress::Step { .. })
                && steps.fetch_add(1, Ordering::SeqCst) + 1 == stop_after
            {
                stop.store(true, Ordering::SeqCst);
            }
        })),
        step_hook: None,
        stop: Some(&stop),
        extension: None,
    };
    let ck = Checkpointing {
        save_to: Some(path.to_path_buf()),
        ..Checkpointing::default()
    };
    match train_checkpointed(cfg, data, callbacks, &ck) {
        Err(RulesError::Preempted { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected a preemption, got {other:?}"),
    }
}

fn resume(cfg: &TrainConfig, data: &Dataset, path: &Path) -> TrainResult {
    let ck = Checkpointing {
        resume_from: Some(path.to_path_buf()),
        ..Checkpointing::default()
    };
    let (r, _) = train_checkpointed(cfg, data, Callbacks::default(), &ck).unwrap();
    r
}

#[test]
fn preempted_and_resumed_runs_equal_uninterrupted_ones_for_every_rule_model_and_optimizer() {
    let dir = tempfile::tempdir().unwrap();
    for model in ModelKind::ALL {
        let data = data(model);
        for optimizer in OptimizerChoice::ALL {
            for rule in RuleKind::ALL {
                let cfg = config(model, rule, optimizer);
                let whole = timeless(train(&cfg, &data, Callbacks::default()).unwrap());
                assert!(!whole.diverged, "{model} {rule} {optimizer} diverged");
                let total = whole.steps;
                // mid-epoch, at an epoch boundary, in the last epoch
                let steps_per_epoch = total / cfg.epochs;
                for stop_after in [2, steps_per_epoch, total - 1] {
                    let path = dir.path().join(format!("{model}-{rule}-{optimizer}.st"));
                    preempt(&cfg, &data, &path, stop_after);
                    let resumed = timeless(resume(&cfg, &data, &path));
                    assert_eq!(
                        resumed, whole,
                        "{model} {rule} {optimizer}, stopped after {stop_after} steps"
                    );
                }
            }
        }
    }
}

/// A kill at any moment leaves the last periodic checkpoint: copying the file at a step stands
/// for killing the process there.
#[test]
fn periodic_checkpoints_resume_exactly_from_wherever_a_kill_left_them() {
    let dir = tempfile::tempdir().unwrap();
    for (model, rule, optimizer) in [
        (ModelKind::Mlp, RuleKind::AlignZero, OptimizerChoice::Adam),
        (ModelKind::Rnn, RuleKind::AlignAda, OptimizerChoice::Sgd),
    ] {
        let data = data(model);
        let cfg = config(model, rule, optimizer);
        let whole = timeless(train(&cfg, &data, Callbacks::default()).unwrap());
        let live = dir.path().join(format!("{model}.st"));
        let snapshots = dir.path().join(format!("{model}-snapshots"));
        std::fs::create_dir_all(&snapshots).unwrap();
        let steps = AtomicUsize::new(0);
        let callbacks = Callbacks {
            progress: Some(Box::new(|p: &Progress<'_>| {
                if matches!(p, Progress::Step { .. }) {
                    let k = steps.fetch_add(1, Ordering::SeqCst) + 1;
                    if live.exists() {
                        std::fs::copy(&live, snapshots.join(k.to_string())).unwrap();
                    }
                }
            })),
            ..Callbacks::default()
        };
        let ck = Checkpointing {
            save_to: Some(live.clone()),
            every: Some(2),
            resume_from: None,
        };
        let (r, _) = train_checkpointed(&cfg, &data, callbacks, &ck).unwrap();
        assert_eq!(timeless(r), whole, "saving checkpoints changes nothing");
        let mut resumed_from = 0;
        for snap in std::fs::read_dir(&snapshots).unwrap() {
            let snap = snap.unwrap().path();
            let r = timeless(resume(&cfg, &data, &snap));
            assert_eq!(r, whole, "{model} {rule}: resumed from {}", snap.display());
            resumed_from += 1;
        }
        assert!(resumed_from >= whole.steps - 2, "{resumed_from} snapshots");
        // the final checkpoint of a finished run gives its result again, and extending
        // --epochs continues it to the longer run's result
        assert_eq!(timeless(resume(&cfg, &data, &live)), whole);
        let longer = TrainConfig {
            epochs: cfg.epochs + 2,
            ..cfg.clone()
        };
        let fresh = timeless(train(&longer, &data, Callbacks::default()).unwrap());
        assert_eq!(timeless(resume(&longer, &data, &live)), fresh);
    }
}

#[test]
fn a_checkpoint_is_refused_for_other_settings_or_other_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.st");
    let data = data(ModelKind::Mlp);
    let cfg = config(ModelKind::Mlp, RuleKind::Bp, OptimizerChoice::Sgd);
    preempt(&cfg, &data, &path, 2);
    let ck = Checkpointing {
        resume_from: Some(path.clone()),
        ..Checkpointing::default()
    };
    let wider = TrainConfig {
        width: 32,
        ..cfg.clone()
    };
    let e = train_checkpointed(&wider, &data, Callbacks::default(), &ck).unwrap_err();
    assert!(
        matches!(&e, RulesError::CheckpointMismatch { field, saved, requested }
            if field == "width" && saved == "24" && requested == "32"),
        "{e}"
    );
    let shorter = TrainConfig {
        epochs: 2,
        ..cfg.clone()
    };
    let e = train_checkpointed(&shorter, &data, Callbacks::default(), &ck).unwrap_err();
    assert!(e.to_string().contains("epochs"), "{e}");
    let other = load(
        "digits",
        &LoadOptions {
            train_size: Some(60),
            seed: 1,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let e = train_checkpointed(&cfg, &other, Callbacks::default(), &ck).unwrap_err();
    assert!(matches!(e, RulesError::CheckpointData { .. }), "{e}");
    assert!(e.to_string().contains("other training data"), "{e}");
    // the refused attempts left the checkpoint as it was: it still resumes
    assert_eq!(
        timeless(resume(&cfg, &data, &path)),
        timeless(train(&cfg, &data, Callbacks::default()).unwrap())
    );
}
