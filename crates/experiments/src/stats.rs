//! Spread over seeds: the mean of a cell's runs with its 95% confidence interval from the
//! t distribution, and the rule for reading a difference between two cells.
//!
//! For `n` finite values `x_1..x_n` with mean `x̄` and sample standard deviation
//! `s = √(Σ (x_i − x̄)² / (n − 1))`, the two-sided 95% interval of the mean is
//!
//! ```text
//! x̄ ± t_{0.975, n−1} · s / √n
//! ```
//!
//! with `t_{0.975, ν}` the 97.5% quantile of Student's t with `ν` degrees of freedom
//! ([`t_quantile_975`]: 12.706 for ν = 1, 4.303 for ν = 2 — three seeds —, 1.960 as ν → ∞).
//! One value has no interval (half-width NaN). Two cells *differ* only when their intervals
//! are disjoint ([`Interval::separated_from`]); overlapping intervals are read as "not
//! distinguishable with these seeds" — a conservative reading (disjoint 95% intervals imply a
//! difference at well below the 5% level).
//!
//! ```
//! use widealign_experiments::stats::Interval;
//! let a = Interval::of(&[0.90, 0.92, 0.91]);
//! assert_eq!(a.n, 3);
//! assert!((a.mean - 0.91).abs() < 1e-12);
//! // s = 0.01, t(0.975, 2) = 4.303: half-width 4.303 · 0.01 / √3
//! assert!((a.half_width - 4.302653 * 0.01 / 3f64.sqrt()).abs() < 1e-6);
//! let b = Interval::of(&[0.70, 0.72, 0.71]);
//! assert!(a.separated_from(&b));
//! assert!(!Interval::of(&[0.91]).separated_from(&b), "one seed: no interval, no reading");
//! ```

/// 97.5% quantiles of Student's t for ν = 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706_204_736,
    4.302_652_730,
    3.182_446_305,
    2.776_445_105,
    2.570_581_836,
    2.446_911_851,
    2.364_624_252,
    2.306_004_135,
    2.262_157_163,
    2.228_138_852,
    2.200_985_160,
    2.178_812_830,
    2.160_368_656,
    2.144_786_688,
    2.131_449_546,
    2.119_905_299,
    2.109_815_578,
    2.100_922_040,
    2.093_024_054,
    2.085_963_447,
    2.079_613_845,
    2.073_873_068,
    2.068_657_610,
    2.063_898_562,
    2.059_538_553,
    2.055_529_439,
    2.051_830_516,
    2.048_407_142,
    2.045_229_642,
    2.042_272_456,
];

/// The 97.5% quantile of the standard normal distribution.
const Z975: f64 = 1.959_963_985;

/// The 97.5% quantile of Student's t with `nu` degrees of freedom: tabulated for `nu ≤ 30`, the
/// Cornish–Fisher expansion in `1/ν` to third order above (relative error below 1e-6 there);
/// NaN for `nu = 0`.
pub fn t_quantile_975(nu: usize) -> f64 {
    match nu {
        0 => f64::NAN,
        1..=30 => T975[nu - 1],
        _ => {
            let (z, v) = (Z975, nu as f64);
            let z3 = z * z * z;
            let z5 = z3 * z * z;
            let z7 = z5 * z * z;
            z + (z3 + z) / (4.0 * v)
                + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * v * v)
                + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * v * v * v)
        }
    }
}

/// The mean of a cell's values and the half-width of its 95% t interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Number of finite values the interval is built from.
    pub n: usize,
    /// Their mean (NaN if `n = 0`).
    pub mean: f64,
    /// Half-width `t_{0.975, n−1} · s / √n` (NaN if `n < 2`).
    pub half_width: f64,
}

impl Interval {
    /// The interval of the finite values among `xs` (NaN and infinities — diverged runs — are
    /// left out and should be reported separately).
    pub fn of(xs: &[f64]) -> Self {
        let f: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
        let n = f.len();
        if n == 0 {
            return Interval {
                n,
                mean: f64::NAN,
                half_width: f64::NAN,
            };
        }
        let mean = f.iter().sum::<f64>() / n as f64;
        let half_width = if n < 2 {
            f64::NAN
        } else {
            let var = f.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            t_quantile_975(n - 1) * (var / n as f64).sqrt()
        };
        Interval {
            n,
            mean,
            half_width,
        }
    }

    /// Lower end `mean − half_width`.
    pub fn lo(&self) -> f64 {
        self.mean - self.half_width
    }

    /// Upper end `mean + half_width`.
    pub fn hi(&self) -> f64 {
        self.mean + self.half_width
    }

    /// Whether both intervals exist and are disjoint: only then is a difference between the two
    /// cells read.
    pub fn separated_from(&self, other: &Interval) -> bool {
        self.half_width.is_finite()
            && other.half_width.is_finite()
            && (self.hi() < other.lo() || other.hi() < self.lo())
    }

    /// `mean ± half_width` with `digits` decimals, or the mean alone for a single value, or
    /// `–` for none.
    pub fn format(&self, digits: usize) -> String {
        match (self.mean.is_finite(), self.half_width.is_finite()) {
            (false, _) => "–".into(),
            (true, false) => format!("{:.digits$}", self.mean),
            (true, true) => format!("{:.digits$} ± {:.digits$}", self.mean, self.half_width),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Student's t density with `nu` degrees of freedom (log-gamma by the Lanczos formula).
    fn t_density(x: f64, nu: f64) -> f64 {
        fn ln_gamma(z: f64) -> f64 {
            const G: [f64; 9] = [
                0.999_999_999_999_809_9,
                676.520_368_121_885_1,
                -1_259.139_216_722_402_8,
                771.323_428_777_653_1,
                -176.615_029_162_140_6,
                12.507_343_278_686_905,
                -0.138_571_095_265_720_12,
                9.984_369_578_019_572e-6,
                1.505_632_735_149_311_6e-7,
            ];
            let z = z - 1.0;
            let mut a = G[0];
            let t = z + 7.5;
            for (i, g) in G.iter().enumerate().skip(1) {
                a += g / (z + i as f64);
            }
            0.5 * (2.0 * std::f64::consts::PI).ln() + (z + 0.5) * t.ln() - t + a.ln()
        }
        let c = ln_gamma((nu + 1.0) / 2.0)
            - ln_gamma(nu / 2.0)
            - 0.5 * (nu * std::f64::consts::PI).ln();
        (c - (nu + 1.0) / 2.0 * (1.0 + x * x / nu).ln()).exp()
    }

    /// P(0 < T < q) by Simpson's rule on the substitution x = q·u.
    fn mass_below(q: f64, nu: f64) -> f64 {
        let n = 20_000;
        let h = q / n as f64;
        let mut s = t_density(0.0, nu) + t_density(q, nu);
        for i in 1..n {
            let w = if i % 2 == 1 { 4.0 } else { 2.0 };
            s += w * t_density(i as f64 * h, nu);
        }
        s * h / 3.0
    }

    /// Every quantile, tabulated or expanded, puts 47.5% of the t density between 0 and it
    /// (integrated independently of the table).
    #[test]
    fn quantiles_match_the_t_distribution() {
        for nu in [1usize, 2, 3, 4, 5, 9, 10, 20, 29, 30, 31, 40, 60, 120, 1000] {
            let q = t_quantile_975(nu);
            let m = mass_below(q, nu as f64);
            assert!((m - 0.475).abs() < 2e-7, "nu {nu}: q {q}, mass {m}");
        }
        assert!(t_quantile_975(0).is_nan());
        // decreasing towards the normal quantile
        for nu in 1..200 {
            assert!(t_quantile_975(nu + 1) < t_quantile_975(nu));
        }
        assert!((t_quantile_975(1_000_000) - Z975).abs() < 1e-5);
    }

    #[test]
    fn interval_of_known_values() {
        // values 1, 2, 3, 4: mean 2.5, s² = 5/3, half-width t(3) · √(5/12)
        let i = Interval::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(i.n, 4);
        assert_eq!(i.mean, 2.5);
        let want = 3.182_446_305 * (5.0f64 / 12.0).sqrt();
        assert!((i.half_width - want).abs() < 1e-12);
        assert!((i.lo() - (2.5 - want)).abs() < 1e-12);
        assert_eq!(i.format(2), format!("2.50 ± {want:.2}"));
        // non-finite values (diverged runs) are left out
        let j = Interval::of(&[1.0, f64::NAN, 3.0, f64::INFINITY]);
        assert_eq!((j.n, j.mean), (2, 2.0));
        let one = Interval::of(&[0.5]);
        assert!(one.half_width.is_nan());
        assert_eq!(one.format(3), "0.500");
        assert_eq!(Interval::of(&[]).format(3), "–");
        // identical values: a zero-width interval
        assert_eq!(Interval::of(&[0.3, 0.3, 0.3]).half_width, 0.0);
    }

    #[test]
    fn separation_needs_disjoint_intervals() {
        let a = Interval::of(&[1.0, 2.0, 3.0]); // 2 ± 2.48
        let b = Interval::of(&[5.0, 6.0, 7.0]); // 6 ± 2.48: 4.48 > 3.52? no: [−0.48, 4.48] vs [3.52, 8.48]
        assert!(!a.separated_from(&b));
        let c = Interval::of(&[9.0, 10.0, 11.0]);
        assert!(a.separated_from(&c) && c.separated_from(&a));
        assert!(!a.separated_from(&Interval::of(&[100.0])));
    }
}
