//! Dual kernels of the activations: `E[φ(u)φ(v)]` and `E[φ'(u)φ'(v)]` for a centred Gaussian
//! pair `(u, v)` with covariance `[[k11, k12], [k12, k22]]`.
//!
//! Closed forms (derived in docs/theory.md §3.5):
//!
//! * identity: `E[uv] = k12`, `E[1·1] = 1`;
//! * relu (arc-cosine kernel of degree 1 and 0), with `ρ = k12/√(k11 k22)` clamped to `[−1, 1]`
//!   before `θ = arccos ρ`:
//!   `E[relu(u)relu(v)] = √(k11 k22) (sin θ + (π − θ) cos θ)/(2π)`,
//!   `E[relu'(u)relu'(v)] = (π − θ)/(2π)`; a zero variance gives `0` for both (`relu'(0) = 0`);
//! * erf: `E[erf(u)erf(v)] = (2/π) arcsin(2k12/√((1 + 2k11)(1 + 2k22)))`,
//!   `E[erf'(u)erf'(v)] = (4/π)/√((1 + 2k11)(1 + 2k22) − 4k12²)` (the argument of arcsin is
//!   clamped, the square root is of a quantity `≥ 1 + 2k11 + 2k22 > 0`);
//! * tanh, gelu: no closed form — bivariate Gaussian quadrature
//!   ([`crate::quadrature::GaussianIntegrator`]).
//!
//! ```
//! use widealign_ntk::dual::{DualKernel, closed_form};
//! use widealign_tensor::Activation;
//! // colinear inputs: θ = 0, E[relu(u)²] = k/2, E[relu'²] = 1/2
//! let (e, ed) = closed_form(Activation::Relu, 2.0, 2.0, 2.0).unwrap();
//! assert!((e - 1.0).abs() < 1e-15 && (ed - 0.5).abs() < 1e-15);
//! // antipodal: θ = π, both vanish
//! let (e, ed) = closed_form(Activation::Relu, 1.0, -1.0 - 1e-15, 1.0).unwrap();
//! assert_eq!((e, ed), (0.0, 0.0));
//! assert!(closed_form(Activation::Tanh, 1.0, 0.5, 1.0).is_none());
//! let d = DualKernel::new(Activation::Tanh, Default::default(), false).unwrap();
//! let (e, _) = d.eval(1.0, 0.0, 1.0);
//! assert!(e.abs() < 1e-14); // tanh is odd, independent inputs
//! ```

use std::f64::consts::PI;

use widealign_tensor::Activation;

use crate::quadrature::{GaussianIntegrator, Quadrature};
use crate::NtkError;

/// The closed-form pair `(E[φ(u)φ(v)], E[φ'(u)φ'(v)])`, or `None` for activations without one
/// (tanh, gelu).
pub fn closed_form(act: Activation, k11: f64, k12: f64, k22: f64) -> Option<(f64, f64)> {
    match act {
        Activation::Identity => Some((k12, 1.0)),
        Activation::Relu => Some(relu(k11, k12, k22)),
        Activation::Erf => Some(erf(k11, k12, k22)),
        Activation::Tanh | Activation::Gelu => None,
    }
}

// Both closed forms are written without branches (selects only), so that
// `DualKernel::eval_into` compiles to SIMD code over a column of entries.
#[inline(always)]
fn relu(k11: f64, k12: f64, k22: f64) -> (f64, f64) {
    let norm = (k11.max(0.0) * k22.max(0.0)).sqrt();
    let ok = norm > 0.0;
    let rho = if ok {
        (k12 / norm).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let theta = acos(rho);
    let sin = (1.0 - rho * rho).max(0.0).sqrt();
    let e = norm * (sin + (PI - theta) * rho) / (2.0 * PI);
    let ed = (PI - theta) / (2.0 * PI);
    if ok {
        (e.max(0.0), ed)
    } else {
        (0.0, 0.0)
    }
}

#[inline(always)]
fn erf(k11: f64, k12: f64, k22: f64) -> (f64, f64) {
    let a = 1.0 + 2.0 * k11.max(0.0);
    let b = 1.0 + 2.0 * k22.max(0.0);
    let arg = (2.0 * k12 / (a * b).sqrt()).clamp(-1.0, 1.0);
    let e = 2.0 / PI * asin(arg);
    let det = (a * b - 4.0 * k12 * k12).max(1.0);
    let ed = 4.0 / PI / det.sqrt();
    (e, ed)
}

/// Coefficients of `P` in `asin(s) = s + s·z·P(z)`, `z = s² ∈ [0, 1/4]`: interpolation at 13
/// Chebyshev nodes in 50-digit arithmetic (`scripts/numerics/asin_fit.py`), worst relative
/// error of the double-precision evaluation of `asin` on `[0, 1/2]` 1.2·10⁻¹⁶.
const ASIN_P: [f64; 13] = [
    0.166_666_666_666_666_69,
    0.074_999_999_999_984_33,
    0.044_642_857_146_355_43,
    0.030_381_944_138_531_247,
    0.022_372_172_942_149_89,
    0.017_352_392_720_869_973,
    0.013_971_212_973_552_933,
    0.011_479_177_415_184_906,
    0.010_322_814_350_185_78,
    0.005_457_506_718_640_358,
    0.017_400_879_442_694_02,
    -0.014_851_887_071_247_204,
    0.028_757_851_367_421_566,
];

/// `asin` of `|x| ≤ 1/2` and of the reduced argument `√((1 − |x|)/2)` in one branch-free
/// form: returns `(r, big)` with `r = asin(s)`, `s = |x|` when `|x| ≤ 1/2` (`big = false`),
/// `s = √((1 − |x|)/2)` otherwise, using `asin|x| = π/2 − 2·asin √((1 − |x|)/2)`.
#[inline(always)]
fn asin_reduced(x: f64) -> (f64, bool) {
    let a = x.abs();
    let big = a > 0.5;
    let z = if big { 0.5 * (1.0 - a) } else { a * a };
    let s = if big { z.sqrt() } else { a };
    let mut p = ASIN_P[12];
    for &c in ASIN_P[..12].iter().rev() {
        p = p * z + c;
    }
    (s + s * (z * p), big)
}

/// `arccos x` for `x ∈ [−1, 1]`, branch-free (vectorisable), within 2 ulp of the correctly
/// rounded value; `acos(1) = 0` and `acos(−1) = π` exactly.
#[inline(always)]
fn acos(x: f64) -> f64 {
    let (r, big) = asin_reduced(x);
    // |x| ≤ 1/2: π/2 − asin x; x > 1/2: 2 asin √((1−x)/2); x < −1/2: π − 2 asin √((1+x)/2)
    let small = std::f64::consts::FRAC_PI_2 - if x < 0.0 { -r } else { r };
    let large = if x > 0.0 { 2.0 * r } else { PI - 2.0 * r };
    if big {
        large
    } else {
        small
    }
}

/// `arcsin x` for `x ∈ [−1, 1]`, branch-free (vectorisable), within 2 ulp.
#[inline(always)]
fn asin(x: f64) -> f64 {
    let (r, big) = asin_reduced(x);
    let m = if big {
        std::f64::consts::FRAC_PI_2 - 2.0 * r
    } else {
        r
    };
    if x < 0.0 {
        -m
    } else {
        m
    }
}

/// An activation's dual kernel, evaluated in closed form when one exists and by quadrature
/// otherwise (or always, with `force_quadrature`).
#[derive(Clone, Debug)]
pub struct DualKernel {
    act: Activation,
    integrator: Option<GaussianIntegrator>,
    /// The instruction set the column loops are dispatched to, detected once.
    arch: pulp::Arch,
}

impl DualKernel {
    /// Prepares the dual kernel of `act`; quadrature nodes are computed only when needed.
    ///
    /// # Errors
    /// [`NtkError::InvalidOption`] for an invalid quadrature order.
    pub fn new(
        act: Activation,
        quadrature: Quadrature,
        force_quadrature: bool,
    ) -> Result<Self, NtkError> {
        let needs = force_quadrature || closed_form(act, 1.0, 0.0, 1.0).is_none();
        let integrator = if needs {
            Some(GaussianIntegrator::new(quadrature)?)
        } else {
            None
        };
        Ok(DualKernel {
            act,
            integrator,
            arch: pulp::Arch::new(),
        })
    }

    /// The activation.
    pub fn activation(&self) -> Activation {
        self.act
    }

    /// Whether this kernel integrates numerically.
    pub fn uses_quadrature(&self) -> bool {
        self.integrator.is_some()
    }

    /// `(E[φ(u)φ(v)], E[φ'(u)φ'(v)])` for `(u, v) ~ N(0, [[k11, k12], [k12, k22]])`.
    pub fn eval(&self, k11: f64, k12: f64, k22: f64) -> (f64, f64) {
        match &self.integrator {
            None => closed_form(self.act, k11, k12, k22).expect("closed form exists"),
            Some(q) => {
                let act = self.act;
                let e = q.expect(k11, k12, k22, |u| act.value(u), |v| act.value(v));
                let ed = q.expect(k11, k12, k22, |u| act.derivative(u), |v| act.derivative(v));
                (e, ed)
            }
        }
    }

    /// [`DualKernel::eval`] over a column of entries: `(e[i], ed[i]) = eval(k11[i], k12[i], k22)`,
    /// bit for bit. The closed forms run as SIMD loops compiled for the widest instruction set
    /// the CPU has (`pulp` runtime dispatch); the results do not depend on it, since each
    /// lane does the same IEEE operations (Rust never contracts `a·b + c` into an FMA).
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn eval_into(&self, k11: &[f64], k12: &[f64], k22: f64, e: &mut [f64], ed: &mut [f64]) {
        let n = k11.len();
        assert!(
            k12.len() == n && e.len() == n && ed.len() == n,
            "eval_into: slice lengths differ"
        );
        match (&self.integrator, self.act) {
            (None, Activation::Relu) => self.arch.dispatch(Column::new(relu, k11, k12, k22, e, ed)),
            (None, Activation::Erf) => self.arch.dispatch(Column::new(erf, k11, k12, k22, e, ed)),
            _ => {
                for i in 0..n {
                    (e[i], ed[i]) = self.eval(k11[i], k12[i], k22);
                }
            }
        }
    }

    /// [`DualKernel::eval_into`] with a second variance per entry:
    /// `(e[i], ed[i]) = eval(k11[i], k12[i], k22[i])`, bit for bit, vectorised like it.
    ///
    /// ```
    /// use widealign_ntk::dual::DualKernel;
    /// use widealign_tensor::Activation;
    /// let d = DualKernel::new(Activation::Relu, Default::default(), false).unwrap();
    /// let (mut e, mut ed) = ([0.0; 2], [0.0; 2]);
    /// d.eval_pairs_into(&[1.0, 2.0], &[0.5, -0.1], &[3.0, 0.7], &mut e, &mut ed);
    /// assert_eq!((e[1], ed[1]), d.eval(2.0, -0.1, 0.7));
    /// ```
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn eval_pairs_into(
        &self,
        k11: &[f64],
        k12: &[f64],
        k22: &[f64],
        e: &mut [f64],
        ed: &mut [f64],
    ) {
        let n = k11.len();
        assert!(
            k12.len() == n && k22.len() == n && e.len() == n && ed.len() == n,
            "eval_pairs_into: slice lengths differ"
        );
        match (&self.integrator, self.act) {
            (None, Activation::Relu) => self
                .arch
                .dispatch(Column::pairs(relu, k11, k12, k22, e, ed)),
            (None, Activation::Erf) => self.arch.dispatch(Column::pairs(erf, k11, k12, k22, e, ed)),
            _ => {
                for i in 0..n {
                    (e[i], ed[i]) = self.eval(k11[i], k12[i], k22[i]);
                }
            }
        }
    }
}

/// The second variance of a [`Column`]: one for the whole column, or one per entry.
enum Second<'a> {
    Shared(f64),
    PerEntry(&'a [f64]),
}

/// One column of closed-form evaluations, as a `pulp` operation: `with_simd` is inlined into a
/// function compiled with the dispatched target features, so the loop is vectorised for them.
struct Column<'a, F> {
    form: F,
    k11: &'a [f64],
    k12: &'a [f64],
    k22: Second<'a>,
    e: &'a mut [f64],
    ed: &'a mut [f64],
}

impl<'a, F: Fn(f64, f64, f64) -> (f64, f64)> Column<'a, F> {
    /// The evaluation of `form` over one column.
    fn new(
        form: F,
        k11: &'a [f64],
        k12: &'a [f64],
        k22: f64,
        e: &'a mut [f64],
        ed: &'a mut [f64],
    ) -> Self {
        Column {
            form,
            k11,
            k12,
            k22: Second::Shared(k22),
            e,
            ed,
        }
    }

    /// The evaluation of `form` over entries with their own second variances.
    fn pairs(
        form: F,
        k11: &'a [f64],
        k12: &'a [f64],
        k22: &'a [f64],
        e: &'a mut [f64],
        ed: &'a mut [f64],
    ) -> Self {
        Column {
            form,
            k11,
            k12,
            k22: Second::PerEntry(k22),
            e,
            ed,
        }
    }
}

impl<F: Fn(f64, f64, f64) -> (f64, f64)> pulp::WithSimd for Column<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let n = self.e.len();
        let (k11, k12, ed) = (&self.k11[..n], &self.k12[..n], &mut self.ed[..n]);
        match self.k22 {
            Second::Shared(k22) => {
                for (i, (e, ed)) in self.e.iter_mut().zip(ed).enumerate() {
                    (*e, *ed) = (self.form)(k11[i], k12[i], k22);
                }
            }
            Second::PerEntry(k22) => {
                let k22 = &k22[..n];
                for (i, (e, ed)) in self.e.iter_mut().zip(ed).enumerate() {
                    (*e, *ed) = (self.form)(k11[i], k12[i], k22[i]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &[(f64, f64, f64)] = &[
        (1.0, 0.3, 2.0),
        (0.5, -0.49, 0.5),
        (3.0, 2.9, 3.0),
        (0.7, 0.0, 1.3),
        (1.0, -1.0, 1.0),
        (2.5, 0.5, 0.1),
        (0.2, 0.19, 0.2),
    ];

    /// Distance in units in the last place.
    fn ulps(a: f64, b: f64) -> u64 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn polynomial_acos_and_asin_are_within_two_ulp_of_libm() {
        let mut worst = (0, 0);
        let n = 200_000;
        for k in 0..=n {
            let x = -1.0 + 2.0 * k as f64 / n as f64;
            worst.0 = worst.0.max(ulps(acos(x), x.acos()));
            worst.1 = worst.1.max(ulps(asin(x), x.asin()));
        }
        // the ends and the branch points, and tiny arguments
        for x in [
            1.0,
            -1.0,
            0.5,
            -0.5,
            0.5 + f64::EPSILON,
            1.0 - f64::EPSILON / 2.0,
            1e-300,
            -1e-20,
            0.0,
        ] {
            worst.0 = worst.0.max(ulps(acos(x), x.acos()));
            worst.1 = worst.1.max(ulps(asin(x), x.asin()));
        }
        assert!(
            worst.0 <= 2 && worst.1 <= 2,
            "worst ulps (acos, asin) {worst:?}"
        );
        assert_eq!((acos(1.0), acos(-1.0)), (0.0, PI));
        assert_eq!(asin(-1.0), -std::f64::consts::FRAC_PI_2);
    }

    #[test]
    fn eval_into_equals_eval_bit_for_bit() {
        let k11: Vec<f64> = (0..37).map(|i| 0.1 + 0.07 * i as f64).collect();
        let k12: Vec<f64> = (0..37).map(|i| -1.0 + 0.06 * i as f64).collect();
        for act in Activation::ALL {
            let d = DualKernel::new(act, Quadrature::GaussHermite { order: 20 }, false).unwrap();
            let (mut e, mut ed) = (vec![0.0; 37], vec![0.0; 37]);
            d.eval_into(&k11, &k12, 1.3, &mut e, &mut ed);
            for i in 0..37 {
                let (a, b) = d.eval(k11[i], k12[i], 1.3);
                assert_eq!(
                    (e[i].to_bits(), ed[i].to_bits()),
                    (a.to_bits(), b.to_bits()),
                    "{act} {i}"
                );
            }
            // a second variance per entry (the convolutional kernels)
            let k22: Vec<f64> = (0..37).map(|i| 1.4 - 0.03 * i as f64).collect();
            d.eval_pairs_into(&k11, &k12, &k22, &mut e, &mut ed);
            for i in 0..37 {
                let (a, b) = d.eval(k11[i], k12[i], k22[i]);
                assert_eq!(
                    (e[i].to_bits(), ed[i].to_bits()),
                    (a.to_bits(), b.to_bits()),
                    "{act} pairs {i}"
                );
            }
        }
    }

    #[test]
    fn relu_and_erf_closed_forms_equal_polar_quadrature() {
        let q = DualKernel::new(
            Activation::Relu,
            Quadrature::Polar {
                radial: 60,
                angular: 40,
            },
            true,
        )
        .unwrap();
        let qe = DualKernel::new(
            Activation::Erf,
            Quadrature::Polar {
                radial: 100,
                angular: 60,
            },
            true,
        )
        .unwrap();
        for &(k11, k12, k22) in CASES {
            let (c, cd) = closed_form(Activation::Relu, k11, k12, k22).unwrap();
            let (n, nd) = q.eval(k11, k12, k22);
            assert!((c - n).abs() < 1e-12, "relu {k11} {k12} {k22}: {c} vs {n}");
            assert!(
                (cd - nd).abs() < 1e-12,
                "relu' {k11} {k12} {k22}: {cd} vs {nd}"
            );
            let (c, cd) = closed_form(Activation::Erf, k11, k12, k22).unwrap();
            let (n, nd) = qe.eval(k11, k12, k22);
            assert!((c - n).abs() < 1e-10, "erf {k11} {k12} {k22}: {c} vs {n}");
            assert!(
                (cd - nd).abs() < 1e-10,
                "erf' {k11} {k12} {k22}: {cd} vs {nd}"
            );
        }
    }

    #[test]
    fn erf_closed_form_equals_gauss_hermite() {
        let q = DualKernel::new(
            Activation::Erf,
            Quadrature::GaussHermite { order: 160 },
            true,
        )
        .unwrap();
        for &(k11, k12, k22) in CASES {
            let (c, cd) = closed_form(Activation::Erf, k11, k12, k22).unwrap();
            let (n, nd) = q.eval(k11, k12, k22);
            assert!((c - n).abs() < 1e-10, "erf {k11} {k12} {k22}: {c} vs {n}");
            assert!(
                (cd - nd).abs() < 1e-10,
                "erf' {k11} {k12} {k22}: {cd} vs {nd}"
            );
        }
    }

    #[test]
    fn gauss_hermite_converges_slowly_at_the_relu_kink() {
        // documents why the polar rule is the reference for relu: GH error ~ n^{-3/2}
        let (c, _) = closed_form(Activation::Relu, 1.0, 0.3, 2.0).unwrap();
        let err = |n| {
            let q = DualKernel::new(
                Activation::Relu,
                Quadrature::GaussHermite { order: n },
                true,
            )
            .unwrap();
            (q.eval(1.0, 0.3, 2.0).0 - c).abs()
        };
        let (e20, e80) = (err(20), err(80));
        assert!(e80 < e20 && e80 > 1e-8, "{e20} {e80}");
    }

    #[test]
    fn tanh_and_gelu_quadratures_agree() {
        let gh = DualKernel::new(
            Activation::Tanh,
            Quadrature::GaussHermite { order: 200 },
            false,
        )
        .unwrap();
        let po = DualKernel::new(
            Activation::Tanh,
            Quadrature::Polar {
                radial: 150,
                angular: 32,
            },
            false,
        )
        .unwrap();
        let ggh = DualKernel::new(
            Activation::Gelu,
            Quadrature::GaussHermite { order: 200 },
            false,
        )
        .unwrap();
        let gpo = DualKernel::new(
            Activation::Gelu,
            Quadrature::Polar {
                radial: 150,
                angular: 32,
            },
            false,
        )
        .unwrap();
        for &(k11, k12, k22) in CASES {
            for (a, b) in [(&gh, &po), (&ggh, &gpo)] {
                let (x, xd) = a.eval(k11, k12, k22);
                let (y, yd) = b.eval(k11, k12, k22);
                assert!(
                    // Gauss–Hermite of order 200 is the less accurate one: ~2e-9 at variance 3
                    (x - y).abs() < 1e-8 && (xd - yd).abs() < 1e-8,
                    "{:?} {k11} {k12} {k22}: {x} {y} {xd} {yd}",
                    a.activation()
                );
            }
        }
    }

    #[test]
    fn degenerate_inputs_do_not_produce_nan() {
        for act in Activation::ALL {
            let d = DualKernel::new(act, Quadrature::GaussHermite { order: 16 }, false).unwrap();
            for &(k11, k12, k22) in &[
                (0.0, 0.0, 0.0),
                (0.0, 0.0, 1.0),
                (1.0, 1.0 + 1e-12, 1.0),
                (1.0, -1.0 - 1e-12, 1.0),
                (1e-300, 1e-300, 1e-300),
            ] {
                let (e, ed) = d.eval(k11, k12, k22);
                assert!(e.is_finite() && ed.is_finite(), "{act} {k11} {k12} {k22}");
            }
        }
    }
}
