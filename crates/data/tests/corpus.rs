//! Replays the fuzzing regression corpus (`tests/corpus/<target>/`, kept from the cargo-fuzz
//! runs of `fuzz/`) through the parsers: none may panic, and what they accept must be sane.
//! Files named `crash-*` crashed an earlier version and must now be rejected with an error.

use std::path::{Path, PathBuf};

use widealign_data::csv::{parse, CsvOptions};
use widealign_data::{cifar, idx, Tabular};

fn files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    assert!(
        v.len() >= 5,
        "{}: only {} corpus files",
        dir.display(),
        v.len()
    );
    v
}

fn is_crash(p: &Path) -> bool {
    p.file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("crash-")
}

#[test]
fn idx_corpus() {
    let mut accepted = 0;
    for p in files("idx") {
        let data = std::fs::read(&p).unwrap();
        let name = p.display().to_string();
        let images = idx::parse_images(&data, &name);
        if let Ok(im) = &images {
            assert_eq!(im.x.ncols(), im.sample_dims.iter().product::<usize>());
            assert!(im.x.iter().all(|&v| (0.0..=1.0).contains(&v)), "{name}");
            accepted += 1;
        }
        let labels = idx::parse_labels(&data, &name);
        if labels.is_ok() {
            accepted += 1;
        }
        if is_crash(&p) {
            let e = images.unwrap_err();
            assert!(e.to_string().starts_with(&name), "{e}");
        }
        // the same bytes through the file reader give the same answer
        assert_eq!(
            idx::read_images(&p).map_err(|e| e.to_string().replace(&name, "")),
            idx::parse_images(&data, "").map_err(|e| e.to_string())
        );
    }
    assert!(accepted > 0);
}

#[test]
fn cifar_corpus() {
    for p in files("cifar") {
        let data = std::fs::read(&p).unwrap();
        match cifar::parse(&data, "corpus") {
            Ok((x, labels)) => {
                assert!(!is_crash(&p));
                assert_eq!(x.nrows() * cifar::RECORD_BYTES, data.len());
                assert!(labels.iter().all(|&l| l < cifar::CLASSES));
            }
            Err(e) => assert!(e.to_string().starts_with("corpus: byte "), "{e}"),
        }
    }
}

#[test]
fn csv_corpus() {
    for p in files("csv") {
        let data = std::fs::read(&p).unwrap();
        for (header, classes) in [(None, None), (Some(true), Some(3)), (Some(false), None)] {
            let r = parse(&data, "corpus", &CsvOptions { header, classes });
            if let Ok(t) = r {
                assert_eq!(t.x.nrows(), t.labels.len());
                assert!(t.x.iter().all(|v| v.is_finite()));
                assert!(t.labels.iter().all(|&l| l < t.classes));
                let _ = Tabular::classification(t.x, t.labels, t.classes);
            } else if let Err(e) = r {
                assert!(e.to_string().starts_with("corpus: line "), "{e}");
            }
        }
    }
}
