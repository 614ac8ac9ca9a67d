//! The training loop: determinism across thread counts, divergence, callbacks, subsets, errors.

use std::cell::RefCell;
use std::sync::atomic::AtomicBool;

use widealign_data::{Dataset, Sequences, Split, Tabular, Task};
use widealign_models::{Grads, Mlp};
use widealign_rules::{
    train, train_model, Callbacks, MlpRule, ModelKind, Progress, RuleKind, RulesError, StepBatch,
    StepInput, TrainConfig, TrainResult, Trained,
};
use widealign_tensor::{rng::SeedStream, Mat};

/// A classification problem: 5 classes from a random linear teacher on 20 inputs in [0, 1].
fn tabular(n_train: usize, n_test: usize) -> Dataset {
    let s = SeedStream::new(42).child("toy");
    let n = n_train + n_test;
    let x: Mat<f32> = s
        .gaussian_matrix::<f32>("x", n, 20, 1.0)
        .map(|v| v.abs().min(1.0));
    let w: Mat<f32> = s.gaussian_matrix("w", 5, 20, 1.0);
    let scores = &x * w.transpose();
    let labels: Vec<usize> = (0..n)
        .map(|i| {
            (0..5).fold(0, |b, c| {
                if scores[(i, c)] > scores[(i, b)] {
                    c
                } else {
                    b
                }
            })
        })
        .collect();
    let all = Tabular::classification(x, labels, 5).unwrap();
    Dataset {
        name: "toy".into(),
        source: "generated".into(),
        task: Task::Classification { classes: 5 },
        train: Split::Tabular(all.select(&(0..n_train).collect::<Vec<_>>())),
        validation: None,
        test: Split::Tabular(all.select(&(n_train..n).collect::<Vec<_>>())),
    }
}

/// Sequences whose target is a delayed copy of the input.
fn sequences(n_train: usize, n_test: usize, steps: usize) -> Dataset {
    let s = SeedStream::new(7).child("seq");
    let make = |name: &str, n: usize| {
        let x: Vec<Mat<f32>> = (0..steps)
            .map(|t| s.gaussian_matrix(&format!("{name}{t}"), n, 1, 1.0))
            .collect();
        let y = (0..steps)
            .map(|t| {
                if t >= 2 {
                    x[t - 2].map(|v| 0.5 * v)
                } else {
                    Mat::zeros(n, 1)
                }
            })
            .collect();
        Sequences { x, y }
    };
    Dataset {
        name: "delay".into(),
        source: "generated".into(),
        task: Task::SequenceRegression { outputs: 1 },
        train: Split::Sequences(make("train", n_train)),
        validation: None,
        test: Split::Sequences(make("test", n_test)),
    }
}

fn mlp_cfg(rule: RuleKind) -> TrainConfig {
    TrainConfig {
        dataset: "toy".into(),
        rule,
        width: 64,
        depth: 2,
        epochs: 2,
        lr: 1.0,
        batch_size: 50,
        seed: 3,
        ..TrainConfig::default()
    }
}

fn rnn_cfg(rule: RuleKind) -> TrainConfig {
    TrainConfig {
        model: ModelKind::Rnn,
        dataset: "delay".into(),
        rule,
        width: 96,
        epochs: 2,
        lr: 0.01,
        batch_size: 16,
        seed: 1,
        ..TrainConfig::default()
    }
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

fn without_time(mut r: TrainResult) -> TrainResult {
    r.seconds = 0.0;
    r.history.iter_mut().for_each(|h| h.seconds = 0.0);
    r
}

fn bits(t: &Trained) -> Vec<u32> {
    let params: Vec<&[f32]> = match t {
        Trained::Mlp(m) => m.params(),
        Trained::Rnn(r) => r.params(),
        Trained::Cnn(c) => c.params(),
    };
    params
        .iter()
        .flat_map(|p| p.iter().map(|v| v.to_bits()))
        .collect()
}

#[test]
fn results_are_bit_identical_on_one_and_two_threads() {
    let tab = tabular(200, 60);
    let seq = sequences(48, 16, 10);
    for rule in RuleKind::ALL {
        for (cfg, data) in [(mlp_cfg(rule), &tab), (rnn_cfg(rule), &seq)] {
            let one = in_pool(1, || train_model(&cfg, data, Callbacks::default()).unwrap());
            let two = in_pool(2, || train_model(&cfg, data, Callbacks::default()).unwrap());
            assert_eq!(
                without_time(one.0.clone()),
                without_time(two.0),
                "{rule} {:?}",
                cfg.model
            );
            assert_eq!(bits(&one.1), bits(&two.1), "{rule} {:?}", cfg.model);
            assert!(!one.0.diverged);
            assert!(one.0.history.iter().all(|h| h.test_loss.is_finite()));
        }
    }
}

/// A small CNN on 120 digits (8×8×1 images), with or without batch normalisation.
fn cnn_cfg(rule: RuleKind, norm: widealign_models::Norm) -> TrainConfig {
    TrainConfig {
        model: ModelKind::Cnn,
        dataset: "digits".into(),
        rule,
        channels: 6,
        conv_layers: 2,
        norm,
        epochs: 2,
        lr: 2.0,
        batch_size: 30,
        train_size: Some(120),
        seed: 3,
        ..TrainConfig::default()
    }
}

#[test]
fn cnn_results_are_bit_identical_on_one_and_two_threads_and_learn() {
    use widealign_models::Norm;
    let data = widealign_data::load("digits", &widealign_data::LoadOptions::default()).unwrap();
    for norm in [Norm::None, Norm::Batch] {
        for rule in RuleKind::ALL {
            let cfg = cnn_cfg(rule, norm);
            let one = in_pool(1, || {
                train_model(&cfg, &data, Callbacks::default()).unwrap()
            });
            let two = in_pool(2, || {
                train_model(&cfg, &data, Callbacks::default()).unwrap()
            });
            assert_eq!(
                without_time(one.0.clone()),
                without_time(two.0),
                "{rule} {norm}"
            );
            assert_eq!(bits(&one.1), bits(&two.1), "{rule} {norm}");
            assert!(matches!(one.1, Trained::Cnn(_)));
            assert_eq!(
                (one.0.train_examples, one.0.depth, one.0.width),
                (120, 2, 6)
            );
            // (fa and dfa carry no descent guarantee: their random feedback may raise the loss)
            let descends = !matches!(rule, RuleKind::Fa | RuleKind::Dfa);
            assert!(
                !descends || one.0.history[2].train_loss < one.0.history[0].train_loss,
                "{rule} {norm}: {:?}",
                one.0.history
            );
        }
    }
    // feature vectors that are no images are refused, naming the model
    let cfg = TrainConfig {
        dataset: "toy".into(),
        train_size: None,
        ..cnn_cfg(RuleKind::Bp, Norm::None)
    };
    let e = train(&cfg, &tabular(20, 10), Callbacks::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cnn") && e.contains("images"), "{e}");
}

#[test]
fn training_lowers_the_loss_and_records_history() {
    let data = tabular(200, 60);
    for rule in RuleKind::ALL {
        let cfg = TrainConfig {
            epochs: 8,
            ..mlp_cfg(rule)
        };
        let r = train(&cfg, &data, Callbacks::default()).unwrap();
        assert_eq!(r.history.len(), 9);
        assert_eq!(r.epochs_completed, 8);
        assert_eq!(r.steps, 8 * 4);
        assert_eq!(r.train_examples, 200);
        assert!(
            r.test_loss < r.history[0].test_loss,
            "{rule}: {} -> {}",
            r.history[0].test_loss,
            r.test_loss
        );
        assert!(r.best_test_loss <= r.test_loss);
        let acc = r.test_accuracy.unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(r.best_test_accuracy.unwrap() >= acc);
    }
}

#[test]
fn divergence_is_reported_not_crashed_and_never_nan() {
    let data = tabular(200, 60);
    let cfg = TrainConfig {
        lr: 1e5,
        epochs: 5,
        ..mlp_cfg(RuleKind::AlignZero)
    };
    let events = RefCell::new(Vec::new());
    let cb = Callbacks {
        progress: Some(Box::new(|p: &Progress<'_>| {
            if let Progress::Diverged { epoch, .. } = p {
                events.borrow_mut().push(*epoch);
            }
        })),
        ..Callbacks::default()
    };
    let r = train(&cfg, &data, cb).unwrap();
    assert!(r.diverged);
    let epoch = r.diverged_epoch.unwrap();
    assert!((1..=5).contains(&epoch));
    assert_eq!(*events.borrow(), vec![epoch]);
    assert_eq!(r.epochs_completed, epoch - 1);
    assert!(r.test_loss.is_finite() && r.train_loss.is_finite() && r.best_test_loss.is_finite());
    assert!(r.test_accuracy.unwrap().is_finite());
    // serde_json writes non-finite floats as null: every loss and accuracy must be a number.
    let v = serde_json::to_value(&r).unwrap();
    for key in ["train_loss", "test_loss", "test_accuracy", "best_test_loss"] {
        assert!(v[key].is_f64(), "{key}: {}", v[key]);
    }
    for h in v["history"].as_array().unwrap() {
        for key in ["train_loss", "test_loss", "test_accuracy"] {
            assert!(h[key].is_f64(), "history {key}: {}", h[key]);
        }
    }
    assert_eq!(v["diverged"], true);
}

#[test]
fn hook_sees_every_batch_and_its_live_error() {
    // Train with align-zero and replay its update from the hook with a separately built rule:
    // the accumulated shadow update equals the model's actual weight change.
    let data = tabular(200, 60);
    let cfg = TrainConfig {
        epochs: 3,
        lr: 0.5,
        ..mlp_cfg(RuleKind::AlignZero)
    };
    let spec = cfg.mlp_spec(20, 5).unwrap();
    let init = Mlp::<f32>::new(&spec, cfg.seed).unwrap();
    let shadow_rule =
        RefCell::new(MlpRule::from_spec(RuleKind::AlignZero, &spec, cfg.seed).unwrap());
    let total: RefCell<Option<Grads<f32>>> = RefCell::new(None);
    let seen = RefCell::new(0usize);
    let steps = RefCell::new(0usize);
    let cb = Callbacks {
        step_hook: Some(Box::new(|v: &widealign_rules::StepView<'_>| {
            let StepBatch::Mlp { x, err } = v.batch else {
                panic!("an MLP run gives MLP batches")
            };
            assert_eq!(x.nrows(), v.rows.len());
            assert_eq!(err.shape(), (v.rows.len(), 5));
            *seen.borrow_mut() += v.rows.len();
            // The align-zero update only needs the frozen net, x and the error.
            let dummy = init.forward(x).unwrap();
            let mut rule = shadow_rule.borrow_mut();
            let g = rule
                .update(
                    &init,
                    &StepInput {
                        x,
                        rows: None,
                        live: &dummy,
                        err,
                    },
                )
                .unwrap();
            let mut t = total.borrow_mut();
            match t.as_mut() {
                None => {
                    let mut first = g.clone();
                    for w in first.weights.iter_mut().flatten() {
                        *w *= -(v.lr as f32);
                    }
                    for b in first.biases.iter_mut().flatten() {
                        b.iter_mut().for_each(|x| *x *= -(v.lr as f32));
                    }
                    *t = Some(first);
                }
                Some(acc) => {
                    for (a, w) in acc.weights.iter_mut().zip(&g.weights) {
                        *a.as_mut().unwrap() -= w.as_ref().unwrap() * (v.lr as f32);
                    }
                    for (a, b) in acc.biases.iter_mut().zip(&g.biases) {
                        for (x, y) in a.as_mut().unwrap().iter_mut().zip(b.as_ref().unwrap()) {
                            *x -= y * v.lr as f32;
                        }
                    }
                }
            }
        })),
        progress: Some(Box::new(|p: &Progress<'_>| {
            if matches!(p, Progress::Step { .. }) {
                *steps.borrow_mut() += 1;
            }
        })),
        ..Callbacks::default()
    };
    let (r, trained) = train_model(&cfg, &data, cb).unwrap();
    assert_eq!(*seen.borrow(), 3 * 200);
    assert_eq!(*steps.borrow(), r.steps);
    let Trained::Mlp(net) = trained else {
        panic!("mlp")
    };
    let total = total.into_inner().unwrap();
    for l in 0..spec.depth() {
        let actual = &net.weights[l] - &init.weights[l];
        let shadow = total.weights[l].as_ref().unwrap();
        let rel = (&actual - shadow).norm() / actual.norm();
        assert!(rel < 1e-4, "layer {}: relative difference {rel}", l + 1);
    }
}

#[test]
fn train_size_subsets_and_bad_settings_are_errors() {
    let data = tabular(200, 60);
    let r = train(
        &TrainConfig {
            train_size: Some(40),
            epochs: 1,
            ..mlp_cfg(RuleKind::Bp)
        },
        &data,
        Callbacks::default(),
    )
    .unwrap();
    assert_eq!(r.train_examples, 40);
    assert_eq!(r.steps, 1);
    let err = train(
        &TrainConfig {
            train_size: Some(201),
            ..mlp_cfg(RuleKind::Bp)
        },
        &data,
        Callbacks::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            RulesError::InvalidConfig {
                field: "train_size",
                ..
            }
        ),
        "{err}"
    );
    for (cfg, field) in [
        (
            TrainConfig {
                batch_size: 0,
                ..mlp_cfg(RuleKind::Bp)
            },
            "batch_size",
        ),
        (
            TrainConfig {
                width: 0,
                ..mlp_cfg(RuleKind::Bp)
            },
            "width",
        ),
        (
            TrainConfig {
                lr: f64::NAN,
                ..mlp_cfg(RuleKind::Bp)
            },
            "lr",
        ),
        (
            TrainConfig {
                w_std: -1.0,
                ..mlp_cfg(RuleKind::Bp)
            },
            "w_std",
        ),
    ] {
        let err = train(&cfg, &data, Callbacks::default()).unwrap_err();
        assert!(err.to_string().contains(field), "{err}");
    }
    let seq = sequences(10, 4, 5);
    let err = train(&mlp_cfg(RuleKind::Bp), &seq, Callbacks::default()).unwrap_err();
    assert!(matches!(err, RulesError::DatasetMismatch { .. }), "{err}");
    // the library names the model, not a command-line flag
    assert!(err.to_string().contains("use the rnn model"), "{err}");
    assert!(!err.to_string().contains("--"), "{err}");
    let err = train(&rnn_cfg(RuleKind::Bp), &data, Callbacks::default()).unwrap_err();
    assert!(matches!(err, RulesError::DatasetMismatch { .. }), "{err}");
    assert!(err.to_string().contains("use the mlp model"), "{err}");
    assert!(!err.to_string().contains("--"), "{err}");
}

#[test]
fn stop_flag_interrupts() {
    let data = tabular(200, 60);
    let stop = AtomicBool::new(true);
    let err = train(
        &mlp_cfg(RuleKind::Bp),
        &data,
        Callbacks {
            stop: Some(&stop),
            ..Callbacks::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, RulesError::Interrupted { epoch: 1, step: 1 }),
        "{err}"
    );
}

#[test]
fn rnn_runs_learn_and_readout_keeps_the_recurrent_weights() {
    let data = sequences(48, 16, 10);
    for rule in [
        RuleKind::Bp,
        RuleKind::AlignAda,
        RuleKind::AlignZero,
        RuleKind::Readout,
    ] {
        let cfg = TrainConfig {
            epochs: 10,
            ..rnn_cfg(rule)
        };
        let (r, trained) = train_model(&cfg, &data, Callbacks::default()).unwrap();
        assert_eq!(r.depth, 1);
        assert!(r.test_accuracy.is_none());
        assert!(r.best_test_loss < r.history[0].test_loss, "{rule}");
        let Trained::Rnn(net) = trained else {
            panic!("rnn")
        };
        let init = widealign_models::Rnn::<f32>::new(&net.spec, cfg.seed).unwrap();
        assert_eq!(rule == RuleKind::Readout, net.w_rec == init.w_rec, "{rule}");
    }
}

#[test]
fn config_and_result_json_round_trip() {
    let cfg = TrainConfig {
        rule: RuleKind::AlignProp,
        optimizer: widealign_rules::OptimizerChoice::Adam,
        activation: widealign_tensor::Activation::Erf,
        train_size: Some(100),
        ..TrainConfig::default()
    };
    let json = serde_json::to_string(&cfg).unwrap();
    assert!(json.contains("\"rule\":\"align-prop\"") && json.contains("\"activation\":\"erf\""));
    assert!(json.contains("\"optimizer\":\"adam\"") && json.contains("\"param\":\"ntk\""));
    assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), cfg);
    let bad = serde_json::from_str::<TrainConfig>(r#"{"rule": "backprop"}"#).unwrap_err();
    assert!(bad.to_string().contains("backprop"), "{bad}");
    let data = tabular(100, 20);
    let r = train(
        &TrainConfig {
            epochs: 1,
            ..mlp_cfg(RuleKind::Dfa)
        },
        &data,
        Callbacks::default(),
    )
    .unwrap();
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    for key in [
        "rule",
        "width",
        "depth",
        "seed",
        "epochs",
        "train_loss",
        "test_loss",
        "test_accuracy",
        "best_test_loss",
        "diverged",
        "diverged_epoch",
        "seconds",
        "history",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["rule"], "dfa");
    let back: TrainResult = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

#[test]
fn a_seed_names_the_same_training_subset_in_the_loader_and_the_training_loop() {
    use widealign_data::{load, LoadOptions};
    for seed in [0u64, 3] {
        let cfg = TrainConfig {
            dataset: "digits".into(),
            train_size: Some(120),
            epochs: 2,
            width: 32,
            seed,
            ..mlp_cfg(RuleKind::AlignAda)
        };
        // the training loop draws the subset from the full dataset …
        let full = load("digits", &LoadOptions::default()).unwrap();
        let a = train(&cfg, &full, Callbacks::default()).unwrap();
        // … the loader draws it before training: the same rows, so the same run
        let opts = LoadOptions {
            seed,
            train_size: Some(120),
            ..LoadOptions::default()
        };
        let sub = load("digits", &opts).unwrap();
        let b = train(&cfg, &sub, Callbacks::default()).unwrap();
        assert_eq!(a.train_examples, 120);
        assert_eq!(a.history.len(), b.history.len());
        for (x, y) in a.history.iter().zip(&b.history) {
            assert_eq!(
                (x.train_loss, x.test_loss, x.test_accuracy),
                (y.train_loss, y.test_loss, y.test_accuracy)
            );
        }
    }
}
