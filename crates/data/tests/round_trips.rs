//! Write → read round trips (proptest): IDX images and labels, raw and gzip; CSV tables.

use std::io::Write;

use flate2::{write::GzEncoder, Compression};
use proptest::prelude::*;
use widealign_data::csv::{self, CsvOptions};
use widealign_data::{idx, Mat};

fn gz(bytes: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn images() -> impl Strategy<Value = (Vec<usize>, Vec<u8>)> {
    (0usize..40, prop::collection::vec(1usize..7, 1..4)).prop_flat_map(|(n, sample)| {
        let mut dims = vec![n];
        dims.extend(&sample);
        let len: usize = dims.iter().product();
        (Just(dims), prop::collection::vec(any::<u8>(), len))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn idx_images_round_trip((dims, px) in images(), level in 0u32..10) {
        let mut raw = Vec::new();
        idx::write(&mut raw, &dims, &px).unwrap();
        let d: usize = dims[1..].iter().product();
        for bytes in [raw.clone(), gz(&raw, level)] {
            let im = idx::parse_images(&bytes, "p").unwrap();
            prop_assert_eq!(&im.sample_dims, &dims[1..].to_vec());
            prop_assert_eq!(im.x.shape(), (dims[0], d));
            for i in 0..dims[0] {
                for j in 0..d {
                    prop_assert_eq!(im.x[(i, j)], px[i * d + j] as f32 / 255.0);
                }
            }
        }
        // the same bytes through a file
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.bin");
        std::fs::write(&path, gz(&raw, level)).unwrap();
        prop_assert_eq!(idx::read_images(&path).unwrap(), idx::parse_images(&raw, "p").unwrap());
    }

    #[test]
    fn idx_labels_round_trip(labels in prop::collection::vec(any::<u8>(), 0..300), level in 0u32..10) {
        let mut raw = Vec::new();
        idx::write(&mut raw, &[labels.len()], &labels).unwrap();
        let want: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
        prop_assert_eq!(&idx::parse_labels(&raw, "l").unwrap(), &want);
        prop_assert_eq!(&idx::parse_labels(&gz(&raw, level), "l").unwrap(), &want);
    }

    #[test]
    fn idx_any_truncation_is_an_error((dims, px) in images(), cut_frac in 0.0f64..1.0, zip in any::<bool>()) {
        let mut raw = Vec::new();
        idx::write(&mut raw, &dims, &px).unwrap();
        let bytes = if zip { gz(&raw, 6) } else { raw };
        let cut = ((bytes.len() as f64) * cut_frac) as usize;
        prop_assume!(cut < bytes.len());
        let e = idx::parse_images(&bytes[..cut], "cut").unwrap_err();
        prop_assert!(e.to_string().starts_with("cut: byte "), "{}", e);
    }

    #[test]
    fn csv_round_trip(
        n in 1usize..30,
        d in 1usize..6,
        seed in any::<u64>(),
        header in any::<bool>(),
        values in prop::collection::vec(any::<f32>().prop_filter("finite", |v| v.is_finite()), 180),
    ) {
        let x = Mat::from_fn(n, d, |i, j| values[(i * d + j + seed as usize) % values.len()]);
        let labels: Vec<usize> = (0..n).map(|i| ((seed as usize).wrapping_add(i * 7)) % 5).collect();
        let names: Vec<String> = (0..d).map(|j| format!("f{j}")).chain(["label".to_string()]).collect();
        let mut text = Vec::new();
        csv::write(&mut text, &x, &labels, header.then_some(&names[..])).unwrap();
        let t = csv::parse(&text, "rt.csv", &CsvOptions::default()).unwrap();
        prop_assert_eq!(&t.x, &x);
        prop_assert_eq!(&t.labels, &labels);
        prop_assert_eq!(t.header.is_some(), header);
        prop_assert_eq!(t.classes, labels.iter().max().unwrap() + 1);
    }
}
