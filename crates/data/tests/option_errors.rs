//! Option errors speak the library's language: each names the `LoadOptions` field (or nested
//! field such as `teacher.width`) at fault, never a command-line flag, and a caller can spell
//! the names its own way with `DataError::message_with`.

use widealign_data::preprocess::{random_subset, stratified_split, stratified_subset};
use widealign_data::{
    dataset::one_hot_targets, load, AddParams, DataError, InputDistribution, LoadOptions,
    TeacherParams,
};
use widealign_tensor::rng::SeedStream;

/// Asserts that `r` is an `InvalidOption` naming `field`, whose message names the field and
/// holds no `--`.
fn assert_names_field<T: std::fmt::Debug>(r: Result<T, DataError>, field: &str) {
    let e = r.expect_err(field);
    match &e {
        DataError::InvalidOption { field: f, .. } => assert_eq!(f, field),
        other => panic!("{field}: expected InvalidOption, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("invalid option {field}: ")),
        "{msg}"
    );
    assert!(!msg.contains("--"), "{msg}");
    let spelled = e.message_with(|f| format!("<{f}>"));
    assert!(
        spelled.starts_with(&format!("invalid option <{field}>: ")),
        "{spelled}"
    );
}

/// A field and how to make it invalid.
type Case<T> = (&'static str, fn(&mut T));

fn with(f: impl FnOnce(&mut LoadOptions)) -> LoadOptions {
    let mut o = LoadOptions::default();
    f(&mut o);
    o
}

#[test]
fn load_options_errors_name_the_field() {
    assert_names_field(
        load("digits", &with(|o| o.train_size = Some(100_000))),
        "train_size",
    );
    assert_names_field(
        load("digits", &with(|o| o.train_size = Some(0))),
        "train_size",
    );
    assert_names_field(
        load("digits", &with(|o| o.validation = Some(1442))),
        "validation",
    );
    assert_names_field(load("add", &with(|o| o.standardize = true)), "standardize");
}

#[test]
fn add_task_errors_name_the_nested_field() {
    let cases: [Case<AddParams>; 6] = [
        ("add.steps", |a| a.steps = 0),
        ("add.train", |a| a.train = 0),
        ("add.test", |a| a.test = 0),
        ("add.p", |a| a.p = 1.5),
        ("add.bias", |a| a.bias = f64::NAN),
        ("add.terms", |a| a.terms = vec![(1, f64::INFINITY)]),
    ];
    for (field, set) in cases {
        assert_names_field(load("add", &with(|o| set(&mut o.add))), field);
    }
}

#[test]
fn teacher_task_errors_name_the_nested_field() {
    let cases: [Case<TeacherParams>; 6] = [
        ("teacher.input_dim", |t| t.input_dim = 0),
        ("teacher.width", |t| t.width = 0),
        ("teacher.outputs", |t| t.outputs = 0),
        ("teacher.w_std", |t| t.w_std = -1.0),
        ("teacher.noise", |t| t.noise = f64::NAN),
        ("teacher.width", |t| t.width = 1 << 20),
    ];
    for (field, set) in cases {
        assert_names_field(load("teacher", &with(|o| set(&mut o.teacher))), field);
    }
    assert_names_field("cube".parse::<InputDistribution>(), "teacher.input");
}

#[test]
fn preprocessing_errors_name_the_field() {
    let mut rng = SeedStream::new(0).rng("t");
    let labels = [0, 1, 0, 1];
    assert_names_field(stratified_split(&labels, 2, 1.5, &mut rng), "test_fraction");
    assert_names_field(stratified_subset(&labels, 2, 9, &mut rng), "train_size");
    assert_names_field(random_subset(4, 0, &mut rng), "train_size");
    assert_names_field(one_hot_targets(&labels, 0), "classes");
    assert_names_field(one_hot_targets(&labels, 1), "classes");
}

#[cfg(feature = "download")]
#[test]
fn fetch_errors_name_the_argument() {
    use widealign_data::download::{fetch, FetchOptions};
    assert_names_field(
        fetch("digits", &LoadOptions::default(), &FetchOptions::default()),
        "dataset",
    );
}
