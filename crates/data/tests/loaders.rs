//! End-to-end loading from folders and files, and every bad-input case of the issue through
//! real files: each error must name the file and the position.

use std::io::Write;
use std::path::Path;

use flate2::{write::GzEncoder, Compression};
use widealign_data::{cifar, idx, info, list, load, DataError, LoadOptions, Position, Task};

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    idx::write(&mut b, dims, data).unwrap();
    b
}

/// Writes a small IDX dataset: `n_train` / `n_test` images of 4×3, labels `i % classes`.
/// Training files raw, test files gzip (mixed on purpose).
fn write_idx_dir(dir: &Path, n_train: usize, n_test: usize, classes: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let px = |n: usize| {
        (0..n * 12)
            .map(|i| (i * 13 % 256) as u8)
            .collect::<Vec<u8>>()
    };
    let lab = |n: usize| (0..n).map(|i| (i % classes) as u8).collect::<Vec<u8>>();
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx_bytes(&[n_train, 4, 3], &px(n_train)),
    )
    .unwrap();
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx_bytes(&[n_train], &lab(n_train)),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte.gz"),
        gz(&idx_bytes(&[n_test, 4, 3], &px(n_test))),
    )
    .unwrap();
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte.gz"),
        gz(&idx_bytes(&[n_test], &lab(n_test))),
    )
    .unwrap();
}

fn opts_in(root: &Path) -> LoadOptions {
    LoadOptions {
        data_dir: Some(root.join("data")),
        system_dir: Some(root.join("system")),
        ..LoadOptions::default()
    }
}

#[test]
fn idx_folder_loads_and_info_agrees() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("set");
    write_idx_dir(&dir, 30, 8, 3);
    let name = format!("idx:{}", dir.display());
    let d = load(&name, &LoadOptions::default()).unwrap();
    assert_eq!(d.task, Task::Classification { classes: 3 });
    let tr = d.train.as_tabular().unwrap();
    assert_eq!((tr.len(), tr.input_dim(), d.test.len()), (30, 12, 8));
    assert_eq!(tr.x[(1, 0)], 156.0 / 255.0); // pixel 12 of the file: 12·13
    assert_eq!(tr.y[(1, 1)], 0.9);
    assert_eq!(tr.y[(1, 0)], -0.1);
    let fast = info(&name, &LoadOptions::default()).unwrap();
    assert_eq!(fast, d.info());
    let json = serde_json::to_value(&fast).unwrap();
    for key in ["name", "path", "train", "test", "input_dim", "classes"] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(json["classes"], 3);
    assert_eq!(json["train"], 30);
}

#[test]
fn named_datasets_resolve_in_the_data_folder_and_list_finds_them() {
    let t = tempfile::tempdir().unwrap();
    let opts = opts_in(t.path());
    write_idx_dir(&t.path().join("data/kmnist"), 20, 10, 10);
    write_idx_dir(&t.path().join("system/fashion-mnist"), 10, 10, 10);
    let k = load("kmnist", &opts).unwrap();
    assert_eq!(k.source, t.path().join("data/kmnist").display().to_string());
    let f = load("fashion-mnist", &opts).unwrap();
    assert_eq!(
        f.source,
        t.path().join("system/fashion-mnist").display().to_string()
    );
    let entries = list(&opts);
    let found = |n: &str| entries.iter().find(|e| e.name == n).unwrap().found;
    assert_eq!(found("kmnist"), Some(true));
    assert_eq!(found("fashion-mnist"), Some(true));
    assert_eq!(found("mnist"), Some(false));
    assert_eq!(found("digits"), Some(true));
    assert_eq!(found("csv:FILE"), None);
    assert!(serde_json::to_string(&entries)
        .unwrap()
        .contains("\"kind\":\"installed\""));
}

#[test]
fn count_mismatch_names_both_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("set");
    write_idx_dir(&dir, 30, 8, 3);
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx_bytes(&[29], &[0; 29]),
    )
    .unwrap();
    let e = load(&format!("idx:{}", dir.display()), &LoadOptions::default()).unwrap_err();
    let m = e.to_string();
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                n_images: 30,
                n_labels: 29,
                ..
            }
        ),
        "{m}"
    );
    assert!(m.contains("train-images-idx3-ubyte has 30 images"), "{m}");
    assert!(m.contains("train-labels-idx1-ubyte has 29 labels"), "{m}");
    // info reads only headers and labels but checks the same
    assert!(matches!(
        info(&format!("idx:{}", dir.display()), &LoadOptions::default()),
        Err(DataError::CountMismatch { .. })
    ));
}

#[test]
fn label_not_below_class_count() {
    let t = tempfile::tempdir().unwrap();
    let opts = opts_in(t.path());
    // MNIST-family names always have 10 classes
    write_idx_dir(&t.path().join("data/mnist"), 12, 12, 11);
    let e = load("mnist", &opts).unwrap_err();
    let m = e.to_string();
    assert!(
        m.ends_with("train-labels-idx1-ubyte: byte 18: label 10 is not below the class count 10"),
        "{m}"
    );
    // user IDX folders with an explicit class count
    let dir = t.path().join("data/mnist");
    let o = LoadOptions {
        classes: Some(5),
        ..LoadOptions::default()
    };
    let e = load(&format!("idx:{}", dir.display()), &o).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::LabelOutOfRange {
                label: 5,
                classes: 5,
                pos: Position::Byte(13),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn broken_files_in_a_folder_name_the_file_and_offset() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("set");
    let name = format!("idx:{}", dir.display());
    let test_images = dir.join("t10k-images-idx3-ubyte.gz");

    // truncated gzip
    write_idx_dir(&dir, 30, 8, 3);
    let z = std::fs::read(&test_images).unwrap();
    std::fs::write(&test_images, &z[..z.len() - 20]).unwrap();
    let e = load(&name, &LoadOptions::default()).unwrap_err();
    assert!(
        matches!(e, DataError::Gzip { .. } | DataError::Truncated { .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("{}: byte ", test_images.display())),
        "{e}"
    );

    // corrupt deflate data
    let mut bad = z.clone();
    for b in &mut bad[12..20] {
        *b ^= 0x5a;
    }
    std::fs::write(&test_images, &bad).unwrap();
    let e = load(&name, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e}");

    // truncated raw images: detected from the file size before reading pixels
    write_idx_dir(&dir, 30, 8, 3);
    let train_images = dir.join("train-images-idx3-ubyte");
    let raw = std::fs::read(&train_images).unwrap();
    std::fs::write(&train_images, &raw[..100]).unwrap();
    let e = load(&name, &LoadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: byte 100: file is truncated: the data the header describes needs 276 more bytes",
            train_images.display()
        )
    );

    // wrong magic: a label file where images belong
    std::fs::write(&train_images, idx_bytes(&[30], &[0; 30])).unwrap();
    let e = load(&name, &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}: byte 0: wrong magic number 0x00000801",
            train_images.display()
        )),
        "{e}"
    );

    // absurd dimensions
    let mut h = vec![0, 0, 8, 3];
    for d in [1u32 << 31, 1 << 20, 1 << 20] {
        h.extend_from_slice(&d.to_be_bytes());
    }
    std::fs::write(&train_images, &h).unwrap();
    let e = load(&name, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { .. }), "{e}");

    // train and test images of different sizes
    write_idx_dir(&dir, 30, 8, 3);
    std::fs::write(&test_images, idx_bytes(&[8, 3, 4], &[0; 96])).unwrap();
    let e = load(&name, &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("test images have dimensions [3, 4]"),
        "{e}"
    );

    // a missing file
    std::fs::remove_file(&test_images).unwrap();
    let e = load(&name, &LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("t10k-images-idx3-ubyte[.gz]"), "{e}");
}

fn cifar_records(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, &l) in labels.iter().enumerate() {
        b.push(l);
        b.extend((0..cifar::PIXELS).map(|j| ((j * 3 + k) % 256) as u8));
    }
    b
}

#[test]
fn cifar_folder_loads_and_rejects_bad_batches() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, f) in cifar::TRAIN_FILES.iter().enumerate() {
        let labels: Vec<u8> = (0..4).map(|k| ((i * 4 + k) % 10) as u8).collect();
        std::fs::write(dir.join(f), cifar_records(&labels)).unwrap();
    }
    std::fs::write(dir.join(cifar::TEST_FILE), cifar_records(&[1, 2, 3])).unwrap();
    // the parent folder works too (layout of the unpacked archive)
    let name = format!("cifar10:{}", t.path().display());
    let d = load(&name, &LoadOptions::default()).unwrap();
    assert_eq!(
        (d.train.len(), d.test.len(), d.input_dim(), d.classes()),
        (20, 3, 3072, Some(10))
    );
    let tr = d.train.as_tabular().unwrap();
    assert_eq!(tr.labels.as_ref().unwrap()[4..8], [4, 5, 6, 7]);
    assert_eq!(tr.x[(5, 2)], 7.0 / 255.0); // record k = 1 of its file, pixel 2: 2·3 + 1

    let bad = dir.join(cifar::TRAIN_FILES[2]);
    std::fs::write(&bad, cifar_records(&[0, 11])).unwrap();
    let e = load(&name, &LoadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: byte 3073: label 11 is not below the class count 10",
            bad.display()
        )
    );
    let mut short = cifar_records(&[0, 1]);
    short.truncate(5000);
    std::fs::write(&bad, &short).unwrap();
    let e = load(&name, &LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}: byte 3073: file is truncated", bad.display())),
        "{e}"
    );
}

#[test]
fn csv_split_is_seeded_and_stratified() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("table.csv");
    // sorted by label, classes of 50, 30 and 20 rows
    let mut text = String::from("f1,f2,label\n");
    for i in 0..100 {
        let c = if i < 50 {
            0
        } else if i < 80 {
            1
        } else {
            2
        };
        text.push_str(&format!("{i},{},{c}\n", i as f32 * 0.5));
    }
    std::fs::write(&path, &text).unwrap();
    let name = format!("csv:{}", path.display());
    let opts = LoadOptions {
        test_fraction: 0.3,
        seed: 4,
        ..LoadOptions::default()
    };
    let d = load(&name, &opts).unwrap();
    let (tr, te) = (d.train.as_tabular().unwrap(), d.test.as_tabular().unwrap());
    assert_eq!(te.class_counts().unwrap(), vec![15, 9, 6]);
    assert_eq!(tr.class_counts().unwrap(), vec![35, 21, 14]);
    // rows stay intact: feature 2 is half feature 1, and the label follows the row index
    for s in [tr, te] {
        for i in 0..s.len() {
            let row = s.x[(i, 0)] as usize;
            assert_eq!(s.x[(i, 1)], row as f32 * 0.5);
            let c = if row < 50 {
                0
            } else if row < 80 {
                1
            } else {
                2
            };
            assert_eq!(s.labels.as_ref().unwrap()[i], c);
        }
    }
    assert_eq!(load(&name, &opts).unwrap(), d);
    let other = load(
        &name,
        &LoadOptions {
            seed: 5,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_ne!(other.test, d.test);

    // a training subset keeps the class proportions
    let sub = load(
        &name,
        &LoadOptions {
            train_size: Some(10),
            ..opts
        },
    )
    .unwrap();
    assert_eq!(
        sub.train.as_tabular().unwrap().class_counts().unwrap(),
        vec![5, 3, 2]
    );
}

#[test]
fn bad_csv_files_name_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("bad.csv");
    let name = format!("csv:{}", path.display());
    let p = path.display().to_string();
    for (content, expect) in [
        ("", format!("{p}: line 1: empty: no data rows")),
        (
            "a,b,label\n",
            format!("{p}: line 1: only a header (its last field is not a number): no data rows"),
        ),
        (
            "1,2,0\n3,4,1\n5,1\n",
            format!("{p}: line 3: ragged table: 2 fields, but line 1 has 3"),
        ),
        (
            "1,2,0\n3,four,1\n",
            format!("{p}: line 2, field 2: feature \"four\" is not a number"),
        ),
        (
            "1,2,0\n1,2,zero\n",
            format!("{p}: line 2, field 3: label \"zero\" is not a non-negative integer"),
        ),
        (
            "1,2,zero\n",
            format!("{p}: line 1: only a header (its last field is not a number): no data rows"),
        ),
    ] {
        std::fs::write(&path, content).unwrap();
        let e = load(&name, &LoadOptions::default()).unwrap_err();
        assert_eq!(e.to_string(), expect);
        assert!(e.is_bad_input());
    }
    let e = load(
        &format!("csv:{}", t.path().join("missing.csv").display()),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, DataError::Io { .. }) && e.is_bad_input(), "{e}");
}
