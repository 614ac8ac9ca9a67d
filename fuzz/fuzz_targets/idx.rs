//! Fuzzes the IDX image and label parsers (raw and gzip) on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use widealign_data::idx;

fuzz_target!(|data: &[u8]| {
    if let Ok(images) = idx::parse_images(data, "fuzz") {
        let d: usize = images.sample_dims.iter().product();
        assert_eq!(images.x.ncols(), d);
        assert!(images.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
    if let Ok(labels) = idx::parse_labels(data, "fuzz") {
        assert!(labels.iter().all(|&l| l < 256));
        let _ = idx::check_labels(&labels, 10, "fuzz");
    }
});
