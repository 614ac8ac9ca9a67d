//! Fakes shared by the unit tests.

use widealign_rules::{EpochRecord, ModelKind, RuleKind, TrainResult};

pub(crate) fn rec(epoch: usize, test_loss: f64, acc: f64) -> EpochRecord {
    EpochRecord {
        epoch,
        seconds: epoch as f64,
        train_loss: test_loss * 0.9,
        test_loss,
        test_accuracy: Some(acc),
    }
}

pub(crate) fn result(history: Vec<EpochRecord>, diverged_epoch: Option<usize>) -> TrainResult {
    let last = history
        .last()
        .cloned()
        .unwrap_or(rec(0, f64::NAN, f64::NAN));
    TrainResult {
        model: ModelKind::Mlp,
        dataset: "digits".into(),
        rule: RuleKind::Bp,
        width: 1024,
        depth: 2,
        seed: 0,
        epochs: 10,
        epochs_completed: last.epoch,
        train_examples: 100,
        steps: 2,
        train_loss: last.train_loss,
        test_loss: last.test_loss,
        test_accuracy: last.test_accuracy,
        best_test_loss: history
            .iter()
            .map(|e| e.test_loss)
            .fold(f64::INFINITY, f64::min),
        best_test_accuracy: None,
        diverged: diverged_epoch.is_some(),
        diverged_epoch,
        seconds: 1.0,
        history,
    }
}
