//! Fuzzes the CSV parser (auto, forced and absent header; inferred and fixed class counts) and
//! the one-hot targets built from its labels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use widealign_data::csv::{parse, CsvOptions};
use widealign_data::Tabular;

fuzz_target!(|data: &[u8]| {
    for (header, classes) in [(None, None), (Some(true), Some(3)), (Some(false), None)] {
        if let Ok(t) = parse(data, "fuzz", &CsvOptions { header, classes }) {
            assert_eq!(t.x.nrows(), t.labels.len());
            assert!(t.x.iter().all(|v| v.is_finite()));
            assert!(t.labels.iter().all(|&l| l < t.classes));
            let _ = Tabular::classification(t.x, t.labels, t.classes);
        }
    }
});
