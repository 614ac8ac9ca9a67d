//! Branch-free, vectorisable `exp`, `tanh` and `erf` in `f64` (and `f32` through `f64`).
//!
//! Every function here is a straight line of IEEE additions, multiplications, divisions, bit
//! manipulations and *selects* (`if c { a } else { b }` on values that are both computed), with no
//! branches on the data and no calls into `libm`. A loop over a slice therefore compiles to SIMD
//! code (the activation kernels in [`crate::activation`] run it under `pulp` runtime dispatch),
//! and because Rust never contracts `a·b + c` into a fused multiply-add, every lane — scalar,
//! SSE, AVX2 or AVX-512 — produces the same bits. The scalar and slice paths of
//! [`Activation`](crate::Activation) both call these functions, so all callers see identical
//! numbers.
//!
//! ## Formulas
//!
//! * **exp.** `x = k·ln2 + r` with `k = round(x·log₂e)` (rounded by adding and subtracting
//!   `1.5·2⁵²`) and `r = (x − k·ln2_hi) − k·ln2_lo` (`ln2_hi` has 33 significant bits, so
//!   `k·ln2_hi` is exact), `|r| ≤ ln2/2`; then `eʳ = 1 + r·P(r)` with `P` of degree 12, and
//!   `eˣ = eʳ·2^{k₁}·2^{k₂}` (`k₁ = ⌊k/2⌋`, `k₂ = k − k₁`, so both scale factors are normal numbers
//!   and results that overflow or are subnormal come out right). The argument is clamped to
//!   `[−746, 710]` first (NaN passes through), so `eˣ` is `+∞` above 709.78 and `0` below −745.2.
//! * **tanh.** For `|x| < 1`: `tanh x = x + x·z·T(z)`, `z = x²`, `T` of degree 16 (no
//!   cancellation near 0). For `|x| ≥ 1`: `tanh|x| = 1 − 2/(e^{2|x|} + 1)` with `|x|` clamped to
//!   20, where the quotient is below half an ulp of 1, so `tanh` saturates to exactly `±1`. The
//!   sign is put back with `copysign`, so `tanh(−x) = −tanh(x)` exactly and `tanh(−0) = −0`.
//! * **erf.** For `|x| < 1`: `erf x = x + x·Q(z)`, `z = x²`, `Q` of degree 12. For `|x| ≥ 1`:
//!   `erf|x| = 1 − e^{−x²}·G(|x|)` where `G(x) = e^{x²} erfc x` (an entire function) is a
//!   polynomial of degree 16 in `|x| − m_k` on each of `[1, 2.25)`, `[2.25, 3.5)`, `[3.5, 6]`; all
//!   three are evaluated and the right one is *selected* per element. `|x|` is
//!   clamped to 6, where `erfc` is below half an ulp of 1, so `erf` saturates to exactly `±1`.
//!   The rounding error of `x²` in the exponent is harmless: it is damped by `erfc x / erf x ≤ 0.19`.
//!   Odd symmetry and `erf(−0) = −0` come from `copysign`.
//! * **f32.** [`tanh_f32`], [`erf_f32`] and [`exp_f32`] convert to `f64`, evaluate the `f64`
//!   function and round once.
//!
//! The polynomial coefficients are Chebyshev interpolants computed at 50 digits by
//! `scripts/numerics/activation_fit.py`, which also replays the `f64` evaluation (same operation
//! order) against a 50-digit reference. Measured accuracy (unit tests in this module, dense grids
//! of ≥ 100 000 points): see `docs/decisions/activations.md`.
//!
//! ```
//! use widealign_tensor::vmath;
//!
//! assert_eq!(vmath::tanh(0.0f64), 0.0);
//! assert_eq!(vmath::erf(7.0), 1.0);
//! assert!((vmath::erf(0.5) - 0.520_499_877_813_046_5).abs() <= f64::EPSILON);
//! assert_eq!(vmath::tanh(-30.0f64), -1.0);
//! assert!((vmath::tanh(0.5f64) - 0.5f64.tanh()).abs() <= 2.0 * f64::EPSILON);
//! assert!((vmath::exp(1.0) / std::f64::consts::E - 1.0).abs() <= f64::EPSILON);
//! assert!((vmath::tanh_f32(0.25) - 0.25f32.tanh()).abs() <= f32::EPSILON);
//! ```

/// `1/ln 2`.
const LOG2E: f64 = std::f64::consts::LOG2_E;
/// `ln 2` rounded to 33 significant bits, so `k·LN2_HI` is exact for `|k| < 2²⁰`.
const LN2_HI: f64 = 0.693_147_180_485_539_1;
/// `ln 2 − LN2_HI`.
const LN2_LO: f64 = 7.440_617_110_012_397e-11;
/// `1.5·2⁵²`: adding and subtracting it rounds a number of magnitude `< 2⁵¹` to an integer.
const ROUND_MAGIC: f64 = 6_755_399_441_055_744.0;

/// `P` in `eʳ = 1 + r·P(r)`, `|r| ≤ ln2/2` (`scripts/numerics/activation_fit.py`, `EXP_P`).
const EXP_P: [f64; 13] = [
    1.0,
    0.5,
    0.16666666666666666,
    0.04166666666666669,
    0.008333333333333335,
    0.001388888888887189,
    0.00019841269841258509,
    2.4801587350110797e-05,
    2.7557319256329253e-06,
    2.7557251904174915e-07,
    2.50520635125698e-08,
    2.09215799649503e-09,
    1.6088922302280749e-10,
];
/// `T` in `tanh x = x + x·z·T(z)`, `z = x² ∈ [0, 1]` (`scripts/numerics/activation_fit.py`,
/// `TANH_P`).
const TANH_P: [f64; 17] = [
    -0.3333333333333333,
    0.1333333333333331,
    -0.053968253968231523,
    0.021869488535296695,
    -0.008863235512566054,
    0.003592127823422879,
    -0.0014558326516768139,
    0.0005900175685254319,
    -0.0002390884367049363,
    9.67910218266933e-05,
    -3.8991741215043214e-05,
    1.541627724102249e-05,
    -5.777484136865915e-06,
    1.9216974143833895e-06,
    -5.122767150793262e-07,
    9.364144622965759e-08,
    -8.538161901212156e-09,
];

/// `Q` in `erf x = x + x·Q(z)`, `z = x² ∈ [0, 1]` (`scripts/numerics/activation_fit.py`, `ERF_Q`).
const ERF_Q: [f64; 13] = [
    0.1283791670955126,
    -0.3761263890318375,
    0.11283791670954879,
    -0.026866170645076792,
    0.0052239776248180145,
    -0.000854832698083379,
    0.0001205533111164271,
    -1.4925595266831182e-05,
    1.6461000484121368e-06,
    -1.6350312701054695e-07,
    1.4659775274047436e-08,
    -1.1372848856791674e-09,
    5.957176147748911e-11,
];

/// `G_k` in `e^{x²} erfc x = G_k(x − m_k)` on `[1, 2.25)`, `[2.25, 3.5)`, `[3.5, 6]`
/// (`scripts/numerics/activation_fit.py`, `ERFC_G`).
const ERFC_G: [[f64; 17]; 3] = [
    [
        0.30226120936348594,
        -0.14603023666418305,
        0.06496207478418792,
        -0.026977910093286858,
        0.010561485441335583,
        -0.003926198499187299,
        0.0013938042923910125,
        -0.0004746475986006894,
        0.00015562549944528182,
        -4.927897362754153e-05,
        1.5109334064396763e-05,
        -4.496532798143314e-06,
        1.3008476648096665e-06,
        -3.6424174553776885e-07,
        1.0016468500203168e-07,
        -3.026109956139937e-08,
        7.90757139685496e-09,
    ],
    [
        0.1860549346844711,
        -0.05856329265980373,
        0.017685468287535387,
        -0.005145047555426519,
        0.001446728282842397,
        -0.00039428149689476894,
        0.00010438965974841496,
        -2.6903207290691085e-05,
        6.760734802175023e-06,
        -1.6591311885899616e-06,
        3.981457679420193e-07,
        -9.354328657324633e-08,
        2.1538028748558713e-08,
        -4.851811650635396e-09,
        1.076143675296877e-09,
        -2.534558089270988e-10,
        5.417970841757592e-11,
    ],
    [
        0.11630270721024731,
        -0.023503448598162904,
        0.0046613263689723,
        -0.0009080988970373065,
        0.00017392830404186873,
        -3.2775781066528116e-05,
        6.081114539531e-06,
        -1.1115679931156728e-06,
        2.002920135090727e-07,
        -3.5595168000590696e-08,
        6.242341780249905e-09,
        -1.081455682633195e-09,
        1.849140276993934e-10,
        -3.0750980426473406e-11,
        5.138680596045611e-12,
        -1.0277932486024302e-12,
        1.6722457190056534e-13,
    ],
];

/// The centres `m_k` of the `ERFC_G` pieces.
const ERFC_MID: [f64; 3] = [1.625, 2.875, 4.75];

/// `c[0] + t·(c[1] + t·(…))` by Horner's rule (unrolled: `N` is a constant).
#[inline(always)]
fn horner<const N: usize>(c: &[f64; N], t: f64) -> f64 {
    let mut p = c[N - 1];
    for j in (0..N - 1).rev() {
        p = p * t + c[j];
    }
    p
}

/// `2ᵏ` for an integer `k ∈ [−1022, 1023]`, built from its exponent bits (for other `k`,
/// which only a NaN argument of [`exp`] produces, some number that the NaN then absorbs).
#[inline(always)]
fn pow2i(k: i64) -> f64 {
    f64::from_bits((k.wrapping_add(1023) as u64) << 52)
}

/// `eˣ` in `f64`, branch-free (see the module docs for the method).
///
/// Within one ulp of the correctly rounded result for normal results (replayed against a 50-digit
/// reference by `scripts/numerics/activation_fit.py`); `+∞` above 709.78, `0` below −745.2 and
/// NaN for NaN.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    // Clamp keeping NaN (comparisons with NaN are false).
    let x = if x > 710.0 { 710.0 } else { x };
    let x = if x < -746.0 { -746.0 } else { x };
    let t = x * LOG2E + ROUND_MAGIC;
    let kf = t - ROUND_MAGIC;
    let k = (t.to_bits() as i64).wrapping_sub(ROUND_MAGIC.to_bits() as i64);
    let r = (x - kf * LN2_HI) - kf * LN2_LO;
    let er = 1.0 + r * horner(&EXP_P, r);
    let k1 = k >> 1;
    er * pow2i(k1) * pow2i(k - k1)
}

/// `tanh x` in `f64`, branch-free (see the module docs for the method).
///
/// Within 2 ulp of `f64::tanh` (the unit tests check ≥ 100 000 points); exactly odd, exactly
/// `±1` for `|x| ≥ 19.1`, NaN for NaN.
#[inline(always)]
pub fn tanh(x: f64) -> f64 {
    let a = x.abs();
    let z = a * a;
    let small = a + a * (z * horner(&TANH_P, z));
    let c = if a > 20.0 { 20.0 } else { a };
    let big = 1.0 - 2.0 / (exp(2.0 * c) + 1.0);
    let t = if a < 1.0 { small } else { big };
    t.copysign(x)
}

/// `erf x` in `f64`, branch-free (see the module docs for the method).
///
/// Within 2 ulp of `libm::erf` (the unit tests check ≥ 100 000 points); exactly odd, exactly
/// `±1` for `|x| ≥ 5.93`, NaN for NaN.
#[inline(always)]
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let small = a + a * horner(&ERF_Q, a * a);
    // Clamp keeping NaN.
    let c = if a > 6.0 { 6.0 } else { a };
    // All three pieces are evaluated and the right one is selected: selecting coefficients
    // instead makes LLVM fall back to scalar code with branches.
    let g0 = horner(&ERFC_G[0], c - ERFC_MID[0]);
    let g1 = horner(&ERFC_G[1], c - ERFC_MID[1]);
    let g2 = horner(&ERFC_G[2], c - ERFC_MID[2]);
    let g = if c < 3.5 { g1 } else { g2 };
    let g = if c < 2.25 { g0 } else { g };
    let big = 1.0 - exp(-(c * c)) * g;
    let e = if a < 1.0 { small } else { big };
    e.copysign(x)
}

/// `erf x` in `f32`: [`erf`] of the exact `f64` value, rounded once.
///
/// Within 1 ulp of `libm::erff`.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    erf(x as f64) as f32
}

/// `tanh x` in `f32`: [`tanh`] of the exact `f64` value, rounded once.
///
/// Within 1 ulp of the correctly rounded value, and within 2 ulp of `f32::tanh` and
/// `libm::tanhf` (which are themselves up to 2 ulp from the correctly rounded value).
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    tanh(x as f64) as f32
}

/// `eˣ` in `f32`: [`exp`] of the exact `f64` value, rounded once.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    exp(x as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in ulps between two finite `f64` of any sign (0 for equal values, incl. ±0).
    pub(super) fn ulps64(a: f64, b: f64) -> u64 {
        fn key(x: f64) -> i64 {
            let b = x.to_bits() as i64;
            if b < 0 {
                i64::MIN - b
            } else {
                b
            }
        }
        key(a).abs_diff(key(b))
    }

    /// Distance in ulps between two finite `f32`.
    pub(super) fn ulps32(a: f32, b: f32) -> u32 {
        fn key(x: f32) -> i32 {
            let b = x.to_bits() as i32;
            if b < 0 {
                i32::MIN - b
            } else {
                b
            }
        }
        key(a).abs_diff(key(b))
    }

    /// A dense grid: `n` uniform points on `[-span, span]`, `n` log-spaced magnitudes from
    /// `1e-300` to `1e300` of both signs, and the special values.
    pub(super) fn grid64(span: f64, n: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..n)
            .map(|i| -span + 2.0 * span * i as f64 / (n - 1) as f64)
            .collect();
        for i in 0..n {
            let m = 10f64.powf(-300.0 + 600.0 * i as f64 / (n - 1) as f64);
            v.push(m);
            v.push(-m);
        }
        v.extend([
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            1.0,
            -1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]);
        v
    }

    /// The `f32` analogue of [`grid64`] (magnitudes from `1e-45` to `1e38`).
    pub(super) fn grid32(span: f32, n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n)
            .map(|i| -span + 2.0 * span * i as f32 / (n - 1) as f32)
            .collect();
        for i in 0..n {
            let m = 10f64.powf(-45.0 + 83.0 * i as f64 / (n - 1) as f64) as f32;
            v.push(m);
            v.push(-m);
        }
        v.extend([
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            f32::MAX,
            f32::MIN,
            1.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        v
    }

    /// Worst ulp distance of `f` from `reference` over `xs`; also checks that ±0, ±∞ map as the
    /// reference does (same bits for non-finite and zero results).
    fn worst64(xs: &[f64], f: impl Fn(f64) -> f64, reference: impl Fn(f64) -> f64) -> (u64, f64) {
        let mut worst = (0, 0.0);
        for &x in xs {
            let (y, r) = (f(x), reference(x));
            if !r.is_finite() || r == 0.0 {
                assert_eq!(y.to_bits(), r.to_bits(), "at {x:e}: {y:e} vs {r:e}");
                continue;
            }
            let u = ulps64(y, r);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        worst
    }

    fn worst32(xs: &[f32], f: impl Fn(f32) -> f32, reference: impl Fn(f32) -> f32) -> (u32, f32) {
        let mut worst = (0, 0.0);
        for &x in xs {
            let (y, r) = (f(x), reference(x));
            if !r.is_finite() || r == 0.0 {
                assert_eq!(y.to_bits(), r.to_bits(), "at {x:e}: {y:e} vs {r:e}");
                continue;
            }
            let u = ulps32(y, r);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        worst
    }

    #[test]
    fn exp_within_one_ulp_of_std() {
        let xs: Vec<f64> = grid64(745.0, 200_000)
            .into_iter()
            .filter(|x| x.abs() < 1e4 || !x.is_finite())
            .collect();
        let (u, at) = worst64(&xs, exp, f64::exp);
        assert!(u <= 1, "exp: {u} ulp at {at:e}");
        assert!(exp(f64::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(exp(710.0), f64::INFINITY);
        let (u, at) = worst32(&grid32(100.0, 200_000), exp_f32, f32::exp);
        assert!(u <= 1, "exp_f32: {u} ulp at {at:e}");
    }

    #[test]
    fn tanh_f64_within_two_ulp_of_std() {
        let xs = grid64(25.0, 200_000);
        let (u, at) = worst64(&xs, tanh, f64::tanh);
        eprintln!("tanh f64 vs f64::tanh: worst {u} ulp at {at:e}");
        assert!(u <= 2, "tanh: {u} ulp at {at:e}");
        // Dense near the switch point |x| = 1 and at small |x|.
        let near: Vec<f64> = (0..100_000)
            .map(|i| 0.9 + 0.2 * i as f64 / 99_999.0)
            .chain((0..100_000).map(|i| 1e-3 * i as f64 / 99_999.0))
            .collect();
        let (u, at) = worst64(&near, tanh, f64::tanh);
        assert!(u <= 2, "tanh: {u} ulp at {at:e}");
    }

    #[test]
    fn tanh_f32_within_one_ulp_of_correctly_rounded() {
        let xs = grid32(12.0, 300_000);
        // Against the correctly rounded value (f64 `tanh`, rounded once): within 1 ulp (½ ulp up
        // to a double rounding).
        let (u, at) = worst32(&xs, tanh_f32, |x| (x as f64).tanh() as f32);
        assert!(u <= 1, "tanh_f32 vs rounded f64::tanh: {u} ulp at {at:e}");
        // The libm single-precision `tanhf`s are themselves up to 2 ulp from the correctly
        // rounded value: the platform's `f32::tanh` (glibc on Linux) at x = -0.998043 returns
        // -0.76077116 while tanh x = -0.76077106…, and the portable `libm::tanhf` is 2 ulp off
        // at x = -0.248361. Against them the bound is therefore 2 ulp.
        for (name, reference) in [
            ("f32::tanh", f32::tanh as fn(f32) -> f32),
            ("libm::tanhf", libm::tanhf),
        ] {
            let (u, at) = worst32(&xs, tanh_f32, reference);
            let over = xs
                .iter()
                .filter(|&&x| x.is_finite() && ulps32(tanh_f32(x), reference(x)) > 1)
                .count();
            eprintln!("tanh f32 vs {name}: worst {u} ulp at {at:e}, {over} points > 1 ulp");
            assert!(u <= 2, "tanh_f32 vs {name}: {u} ulp at {at:e}");
        }
    }

    /// `f` and `g` (its f32 twin) are odd bit for bit on `[−r, r]`, exactly ±1 from `sat64` /
    /// `sat32` on, and propagate NaN.
    fn odd_saturating(
        f: fn(f64) -> f64,
        g: fn(f32) -> f32,
        (r64, r32): (f64, f32),
        sat64: f64,
        sat32: f32,
    ) {
        for x in grid64(r64, 20_000) {
            assert_eq!(f(-x).to_bits(), (-f(x)).to_bits(), "odd at {x:e}");
        }
        for x in grid32(r32, 20_000) {
            assert_eq!(g(-x).to_bits(), (-g(x)).to_bits(), "odd at {x:e}");
        }
        assert_eq!(f(-0.0).to_bits(), (-0.0f64).to_bits());
        for x in [sat64, sat64 + 0.9, 1e10, f64::MAX, f64::INFINITY] {
            assert_eq!((f(x), f(-x)), (1.0, -1.0), "saturation at {x:e}");
        }
        assert_eq!((g(sat32), g(f32::NEG_INFINITY)), (1.0, -1.0));
        assert!(f(f64::NAN).is_nan() && g(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_is_odd_saturates_and_propagates_nan() {
        odd_saturating(tanh, tanh_f32, (25.0, 12.0), 19.1, 9.1);
        assert_eq!(tanh(5e-324), 5e-324);
    }

    #[test]
    fn erf_f64_within_two_ulp_of_libm() {
        let xs = grid64(7.0, 200_000);
        let (u, at) = worst64(&xs, erf, libm::erf);
        eprintln!("erf f64 vs libm::erf: worst {u} ulp at {at:e}");
        assert!(u <= 2, "erf: {u} ulp at {at:e}");
        // Dense around the switch points 1, 2.25, 3.5 and at small |x|.
        let near: Vec<f64> = [1.0, 2.25, 3.5]
            .iter()
            .flat_map(|&c| (0..50_000).map(move |i| c - 0.05 + 0.1 * i as f64 / 49_999.0))
            .chain((0..50_000).map(|i| 1e-3 * i as f64 / 49_999.0))
            .collect();
        let (u, at) = worst64(&near, erf, libm::erf);
        assert!(u <= 2, "erf: {u} ulp at {at:e}");
    }

    #[test]
    fn erf_f32_within_one_ulp_of_libm() {
        let xs = grid32(5.0, 300_000);
        let (u, at) = worst32(&xs, erf_f32, libm::erff);
        eprintln!("erf f32 vs libm::erff: worst {u} ulp at {at:e}");
        assert!(u <= 1, "erf_f32: {u} ulp at {at:e}");
        let (u, at) = worst32(&xs, erf_f32, |x| libm::erf(x as f64) as f32);
        assert!(u <= 1, "erf_f32 vs rounded libm::erf: {u} ulp at {at:e}");
    }

    #[test]
    fn erf_is_odd_saturates_and_propagates_nan() {
        odd_saturating(erf, erf_f32, (7.0, 5.0), 5.93, 3.92);
    }
}
