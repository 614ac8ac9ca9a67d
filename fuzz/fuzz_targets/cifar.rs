//! Fuzzes the CIFAR-10 batch parser on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use widealign_data::cifar;

fuzz_target!(|data: &[u8]| {
    if let Ok((x, labels)) = cifar::parse(data, "fuzz") {
        assert_eq!(x.nrows(), labels.len());
        assert_eq!(x.nrows() * cifar::RECORD_BYTES, data.len());
        assert!(labels.iter().all(|&l| l < cifar::CLASSES));
    }
});
