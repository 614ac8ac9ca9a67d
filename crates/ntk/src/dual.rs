//! Dual kernels of the activations: `E[φ(u)φ(v)]` and `E[φ'(u)φ'(v)]` for a centred Gaussian
//! pair `(u, v)` with covariance `[[k11, k12], [k12, k22]]`.
//!
//! Closed forms (derived in `docs/theory.md`):
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

fn relu(k11: f64, k12: f64, k22: f64) -> (f64, f64) {
    let norm = (k11.max(0.0) * k22.max(0.0)).sqrt();
    if norm <= 0.0 {
        return (0.0, 0.0);
    }
    let rho = (k12 / norm).clamp(-1.0, 1.0);
    let theta = rho.acos();
    let sin = (1.0 - rho * rho).max(0.0).sqrt();
    let e = norm * (sin + (PI - theta) * rho) / (2.0 * PI);
    let ed = (PI - theta) / (2.0 * PI);
    (e.max(0.0), ed)
}

fn erf(k11: f64, k12: f64, k22: f64) -> (f64, f64) {
    let a = 1.0 + 2.0 * k11.max(0.0);
    let b = 1.0 + 2.0 * k22.max(0.0);
    let arg = (2.0 * k12 / (a * b).sqrt()).clamp(-1.0, 1.0);
    let e = 2.0 / PI * arg.asin();
    let det = (a * b - 4.0 * k12 * k12).max(1.0);
    let ed = 4.0 / PI / det.sqrt();
    (e, ed)
}

/// An activation's dual kernel, evaluated in closed form when one exists and by quadrature
/// otherwise (or always, with `force_quadrature`).
#[derive(Clone, Debug)]
pub struct DualKernel {
    act: Activation,
    integrator: Option<GaussianIntegrator>,
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
        Ok(DualKernel { act, integrator })
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
