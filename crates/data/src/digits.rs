//! The embedded digits dataset: the default, needing no download and no package.
//!
//! 1,797 handwritten digits, 8 × 8 pixels with integer values `0..=16`, ten classes — the copy
//! of the UCI "Optical Recognition of Handwritten Digits" data (E. Alpaydin, C. Kaynak, 1998;
//! licence CC BY 4.0) that scikit-learn distributes. The gzip-compressed CSV (57 KB) is compiled
//! into the crate and decoded at load time.
//!
//! **Scaling.** Pixels are divided by 16, so inputs lie in `[0, 1]` (IDX and CIFAR pixels are
//! divided by 255 instead).
//!
//! **Split (deterministic, independent of the seed).** Within each class, taking the examples
//! in file order, every fifth one (positions 4, 9, 14, … counted from 0 within the class) is a
//! test example and the rest are training examples: 1,442 training and 355 test examples, each
//! class split 80/20 up to rounding down.
//!
//! ```
//! let (train, test) = widealign_data::digits::load().unwrap();
//! assert_eq!((train.len(), test.len()), (1442, 355));
//! assert_eq!(train.input_dim(), 64);
//! assert!(train.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
//! ```

use std::io::Read;

use crate::csv::{self, CsvOptions, CsvTable};
use crate::dataset::Tabular;
use crate::error::{DataError, Position, Result};

/// The compressed CSV compiled into the crate (64 pixels then the label per row, no header).
pub static DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// The name the embedded file carries in errors.
pub const FILE_NAME: &str = "embedded digits.csv.gz";

/// Credit for the embedded data, for READMEs and `widealign data info`.
pub const CREDIT: &str = "UCI Optical Recognition of Handwritten Digits (E. Alpaydin, C. Kaynak, \
1998), the 1,797-image copy distributed with scikit-learn; licence CC BY 4.0";

/// Pixel values are divided by this to land in `[0, 1]`.
pub const PIXEL_MAX: f32 = 16.0;

/// Number of examples.
pub const LEN: usize = 1797;

/// Decodes the embedded table (pixels already divided by 16).
pub fn table() -> Result<CsvTable> {
    let mut text = Vec::with_capacity(300_000);
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_end(&mut text)
        .map_err(|e| DataError::Gzip {
            file: FILE_NAME.to_string(),
            pos: Position::Byte(text.len() as u64),
            message: e.to_string(),
        })?;
    let mut t = csv::parse(
        &text,
        FILE_NAME,
        &CsvOptions {
            header: Some(false),
            classes: Some(10),
        },
    )?;
    t.x /= PIXEL_MAX;
    Ok(t)
}

/// The fixed split rule: `(train, test)` indices (ascending); within each class, every fifth
/// example in file order (positions 4, 9, … within the class) is a test example.
pub fn split_indices(labels: &[usize], classes: usize) -> (Vec<usize>, Vec<usize>) {
    let mut seen = vec![0usize; classes];
    let mut train = Vec::new();
    let mut test = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        if l < classes {
            if seen[l] % 5 == 4 {
                test.push(i);
            } else {
                train.push(i);
            }
            seen[l] += 1;
        }
    }
    (train, test)
}

/// The embedded digits as `(train, test)` classification splits (10 classes).
pub fn load() -> Result<(Tabular, Tabular)> {
    let t = table()?;
    let (tr, te) = split_indices(&t.labels, t.classes);
    let all = Tabular::classification(t.x, t.labels, t.classes)?;
    Ok((all.select(&tr), all.select(&te)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_table_is_intact() {
        let t = table().unwrap();
        assert_eq!(t.x.shape(), (LEN, 64));
        assert_eq!(t.classes, 10);
        let mut counts = [0; 10];
        for &l in &t.labels {
            counts[l] += 1;
        }
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        // integer pixel values 0..16 scaled by 1/16
        assert!(t
            .x
            .iter()
            .all(|&v| (v * 16.0).fract() == 0.0 && (0.0..=1.0).contains(&v)));
        assert_eq!(t.x.iter().cloned().fold(0.0, f32::max), 1.0);
        // the first row of the file
        assert_eq!(t.x[(0, 2)] * 16.0, 5.0);
        assert_eq!(t.labels[0], 0);
    }

    #[test]
    fn split_is_stratified_80_20() {
        let t = table().unwrap();
        let (tr, te) = split_indices(&t.labels, 10);
        assert_eq!((tr.len(), te.len()), (1442, 355));
        for c in 0..10 {
            let n = t.labels.iter().filter(|&&l| l == c).count();
            let k = te.iter().filter(|&&i| t.labels[i] == c).count();
            assert_eq!(k, n / 5, "class {c}");
        }
        let mut all = [tr, te].concat();
        all.sort_unstable();
        assert_eq!(all, (0..LEN).collect::<Vec<_>>());
    }
}
