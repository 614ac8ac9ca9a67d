//! Named, portable seed streams and Gaussian initialisation.
//!
//! A [`SeedStream`] is a root seed plus a path of names. Every name gives an independent
//! generator ([`SeedStream::rng`]): the stream for `"layer2.weight"` does not depend on how many
//! other streams were drawn, so adding a layer to a model leaves the other layers' initial weights
//! unchanged.
//!
//! **Portability.** The generator is ChaCha8 (`rand_chacha`, whose output for a given seed is part
//! of its stability promise). Its 32-byte key is built from the root seed and two FNV-1a hashes of
//! the path, computed here. Normal variates come from the Box–Muller transform evaluated with the
//! pure-Rust `libm`, not the platform's math library. Together this makes a seed mean the same
//! numbers on every platform and every version of widealign's dependencies (see
//! `docs/decisions/rng.md`).
//!
//! ```
//! use widealign_tensor::{rng::SeedStream, Mat};
//! let seeds = SeedStream::new(42);
//! let w1: Mat<f64> = seeds.gaussian_matrix("layer1.weight", 3, 2, 1.0);
//! let again: Mat<f64> = SeedStream::new(42).gaussian_matrix("layer1.weight", 3, 2, 1.0);
//! assert_eq!(w1, again);
//! let other: Mat<f64> = seeds.gaussian_matrix("layer2.weight", 3, 2, 1.0);
//! assert_ne!(w1, other);
//! ```

use rand_chacha::ChaCha8Rng;
pub use rand_core::{RngCore, SeedableRng};

use crate::{Float, Mat};

/// The random generator used everywhere in widealign (ChaCha8).
pub type Rng = ChaCha8Rng;

/// A root seed and a path of names; each name yields an independent, reproducible generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedStream {
    seed: u64,
    path: String,
}

fn fnv1a(bytes: &[u8], offset: u64) -> u64 {
    let mut h = offset;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl SeedStream {
    /// The root stream of a seed.
    pub fn new(seed: u64) -> Self {
        SeedStream {
            seed,
            path: String::new(),
        }
    }

    /// The root seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The path of names from the root (`""` for the root, `"a/b"` for `root.child("a").child("b")`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A sub-stream: `child("fa")` gives a family of generators independent of the parent's.
    pub fn child(&self, name: &str) -> SeedStream {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.path, name)
        };
        SeedStream {
            seed: self.seed,
            path,
        }
    }

    /// The generator named `name` under this stream.
    pub fn rng(&self, name: &str) -> Rng {
        let full = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{}", self.path, name)
        };
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&fnv1a(full.as_bytes(), 0xcbf2_9ce4_8422_2325).to_le_bytes());
        key[16..24].copy_from_slice(&fnv1a(full.as_bytes(), 0x6c62_272e_07bb_0142).to_le_bytes());
        key[24..32].copy_from_slice(&(full.len() as u64).to_le_bytes());
        Rng::from_seed(key)
    }

    /// A `rows × cols` matrix of independent `N(0, std²)` entries drawn from the stream `name`,
    /// filled in column-major storage order.
    pub fn gaussian_matrix<T: Float>(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
        std: f64,
    ) -> Mat<T> {
        let mut rng = self.rng(name);
        let mut m = Mat::zeros(rows, cols);
        fill_gaussian(&mut rng, m.as_mut_slice(), std);
        m
    }

    /// A vector of `len` independent `N(0, std²)` entries drawn from the stream `name`.
    pub fn gaussian_vec<T: Float>(&self, name: &str, len: usize, std: f64) -> Vec<T> {
        let mut rng = self.rng(name);
        let mut v = vec![T::zero(); len];
        fill_gaussian(&mut rng, &mut v, std);
        v
    }
}

/// A uniform draw from `[0, 1)` with 53 random bits.
pub fn uniform(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer in `0..n` (Lemire's method with rejection: exactly uniform).
///
/// # Panics
/// If `n == 0`.
pub fn below(rng: &mut Rng, n: u64) -> u64 {
    assert!(n > 0, "below(0)");
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = (rng.next_u64() as u128) * (n as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Shuffles `xs` in place (Fisher–Yates with [`below`]).
pub fn shuffle<X>(rng: &mut Rng, xs: &mut [X]) {
    for i in (1..xs.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        xs.swap(i, j);
    }
}

/// Fills `out` with independent `N(0, std²)` values (Box–Muller in `f64`, portable `libm`).
pub fn fill_gaussian<T: Float>(rng: &mut Rng, out: &mut [T], std: f64) {
    let mut pairs = out.chunks_mut(2);
    for pair in &mut pairs {
        let (z0, z1) = standard_normal_pair(rng);
        pair[0] = T::cast(std * z0);
        if pair.len() > 1 {
            pair[1] = T::cast(std * z1);
        }
    }
}

/// Two independent standard normal values (Box–Muller).
pub fn standard_normal_pair(rng: &mut Rng) -> (f64, f64) {
    let u1 = 1.0 - uniform(rng); // in (0, 1]
    let u2 = uniform(rng);
    let r = libm::sqrt(-2.0 * libm::log(u1));
    let theta = 2.0 * std::f64::consts::PI * u2;
    (r * libm::cos(theta), r * libm::sin(theta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_independent_of_order() {
        let s = SeedStream::new(3);
        let a1: Vec<f64> = s.gaussian_vec("a", 5, 1.0);
        let _b: Vec<f64> = s.gaussian_vec("b", 5, 1.0);
        let a2: Vec<f64> = s.gaussian_vec("a", 5, 1.0);
        assert_eq!(a1, a2);
        assert_ne!(a1, s.child("x").gaussian_vec::<f64>("a", 5, 1.0));
        assert_ne!(a1, SeedStream::new(4).gaussian_vec::<f64>("a", 5, 1.0));
    }

    #[test]
    fn known_values_pin_the_generator() {
        // Pins the portable stream: if this changes, every seeded result in widealign changes.
        let v: Vec<f64> = SeedStream::new(0).gaussian_vec("pin", 2, 1.0);
        let again: Vec<f64> = SeedStream::new(0).gaussian_vec("pin", 2, 1.0);
        assert_eq!(v, again);
        let bits: Vec<u64> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, PINNED.to_vec(), "values {v:?}");
    }
    const PINNED: [u64; 2] = [4608358706080280549, 13818789258761742316];

    #[test]
    fn gaussian_moments() {
        let v: Vec<f64> = SeedStream::new(11).gaussian_vec("m", 200_000, 2.0);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        // standard errors: mean 2/sqrt(n) = 0.0045, variance 4*sqrt(2/n) = 0.0126
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 4.0).abs() < 0.06, "variance {var}");
    }

    #[test]
    fn below_and_shuffle() {
        let mut rng = SeedStream::new(1).rng("s");
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[below(&mut rng, 3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_500..10_500).contains(&c)),
            "{counts:?}"
        );
        let mut xs: Vec<usize> = (0..50).collect();
        shuffle(&mut rng, &mut xs);
        let mut sorted = xs.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(xs, sorted);
    }
}
