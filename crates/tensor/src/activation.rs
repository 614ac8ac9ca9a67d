//! Pointwise nonlinearities `φ` with their derivatives `φ'`.
//!
//! | name | `φ(x)` | `φ'(x)` |
//! |---|---|---|
//! | identity | `x` | `1` |
//! | relu | `max(x, 0)` | `1` if `x > 0`, else `0` (so `φ'(0) = 0`, as in JAX) |
//! | tanh | `tanh x` | `1 − tanh² x` |
//! | erf | `erf x` | `(2/√π) e^{−x²}` |
//! | gelu | `x Φ(x)`, `Φ(x) = (1 + erf(x/√2))/2` (exact, not the tanh approximation) | `Φ(x) + x e^{−x²/2}/√(2π)` |
//!
//! ```
//! use widealign_tensor::Activation;
//! let a: Activation = "erf".parse().unwrap();
//! assert_eq!(a, Activation::Erf);
//! assert!((a.value(0.5f64) - 0.520_499_877_813_046_5).abs() < 1e-15);
//! assert_eq!(Activation::Relu.derivative(0.0f32), 0.0);
//! ```

use rayon::prelude::*;

use crate::Float;

/// A pointwise nonlinearity with a known derivative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `φ(x) = x`.
    Identity,
    /// `φ(x) = max(x, 0)`.
    Relu,
    /// `φ(x) = tanh x`.
    Tanh,
    /// `φ(x) = erf x`.
    Erf,
    /// `φ(x) = x Φ(x)` with `Φ` the standard normal CDF (exact GELU).
    Gelu,
}

/// Slices longer than this are processed in parallel, in chunks of this many elements.
const CHUNK: usize = 1 << 15;

/// Runs `$body` with `$a` a `const` item equal to the variant equal to `$act`, so the per-element
/// `match` inside `value`/`derivative` is resolved at compile time and the loops vectorise
/// (the numbers are those of the generic expression, bit for bit).
macro_rules! for_each_fixed {
    ($act:expr, |$a:ident| $body:expr) => {
        match $act {
            Activation::Identity => {
                #[allow(non_upper_case_globals)]
                const $a: Activation = Activation::Identity;
                $body
            }
            Activation::Relu => {
                #[allow(non_upper_case_globals)]
                const $a: Activation = Activation::Relu;
                $body
            }
            Activation::Tanh => {
                #[allow(non_upper_case_globals)]
                const $a: Activation = Activation::Tanh;
                $body
            }
            Activation::Erf => {
                #[allow(non_upper_case_globals)]
                const $a: Activation = Activation::Erf;
                $body
            }
            Activation::Gelu => {
                #[allow(non_upper_case_globals)]
                const $a: Activation = Activation::Gelu;
                $body
            }
        }
    };
}

impl Activation {
    /// Every activation, in a stable order.
    pub const ALL: [Activation; 5] = [
        Activation::Identity,
        Activation::Relu,
        Activation::Tanh,
        Activation::Erf,
        Activation::Gelu,
    ];

    /// The command-line name (`identity`, `relu`, `tanh`, `erf`, `gelu`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Erf => "erf",
            Activation::Gelu => "gelu",
        }
    }

    /// `φ(x)`.
    ///
    /// tanh, erf and gelu use the branch-free functions of [`crate::vmath`] (erf through
    /// [`Float::erf_fn`]), the same ones the slice kernels run, so a scalar call and a slice
    /// kernel give the same bits.
    #[inline(always)]
    pub fn value<T: Float>(self, x: T) -> T {
        match self {
            Activation::Identity => x,
            Activation::Relu => {
                if x > T::zero() {
                    x
                } else {
                    T::zero()
                }
            }
            Activation::Tanh => x.tanh_fn(),
            Activation::Erf => x.erf_fn(),
            Activation::Gelu => x * normal_cdf(x),
        }
    }

    /// `φ'(x)`.
    #[inline(always)]
    pub fn derivative<T: Float>(self, x: T) -> T {
        match self {
            Activation::Identity => T::one(),
            Activation::Relu => {
                if x > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
            Activation::Tanh => {
                let t = x.tanh_fn();
                T::one() - t * t
            }
            Activation::Erf => T::cast(std::f64::consts::FRAC_2_SQRT_PI) * (-(x * x)).exp_fn(),
            Activation::Gelu => {
                let pdf = T::cast(1.0 / (2.0 * std::f64::consts::PI).sqrt())
                    * (-(x * x) * T::cast(0.5)).exp_fn();
                normal_cdf(x) + x * pdf
            }
        }
    }

    /// Replaces every `x` in `xs` by `φ(x)` (in parallel for long slices).
    pub fn apply_slice<T: Float>(self, xs: &mut [T]) {
        if self == Activation::Identity {
            return;
        }
        for_each_fixed!(self, |a| map_in_place(
            xs,
            #[inline(always)]
            |x| a.value(x)
        ));
    }

    /// Replaces every `x` in `xs` by `φ'(x)` (in parallel for long slices).
    pub fn derivative_slice<T: Float>(self, xs: &mut [T]) {
        for_each_fixed!(self, |a| map_in_place(
            xs,
            #[inline(always)]
            |x| a.derivative(x)
        ));
    }

    /// `out[i] ← φ(h[i])`, leaving `h` untouched.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn apply_into<T: Float>(self, h: &[T], out: &mut [T]) {
        for_each_fixed!(self, |a| zip_map(
            h,
            out,
            #[inline(always)]
            |x, _| a.value(x)
        ));
    }

    /// `g[i] ← g[i] · φ'(h[i])`: multiplies a backward signal by the derivative at `h`.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn mul_derivative<T: Float>(self, h: &[T], g: &mut [T]) {
        if self == Activation::Identity {
            assert_eq!(h.len(), g.len(), "mul_derivative: length mismatch");
            return;
        }
        for_each_fixed!(self, |a| zip_map(
            h,
            g,
            #[inline(always)]
            |x, gi| gi * a.derivative(x)
        ));
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Error returned when parsing an unknown activation name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownActivation(pub String);

impl std::fmt::Display for UnknownActivation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown activation '{}' (expected one of identity, relu, tanh, erf, gelu)",
            self.0
        )
    }
}

impl std::error::Error for UnknownActivation {}

impl std::str::FromStr for Activation {
    type Err = UnknownActivation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownActivation(s.to_string()))
    }
}

/// Standard normal CDF `Φ(x) = (1 + erf(x/√2))/2`.
#[inline(always)]
fn normal_cdf<T: Float>(x: T) -> T {
    T::cast(0.5) * (T::one() + (x * T::cast(std::f64::consts::FRAC_1_SQRT_2)).erf_fn())
}

fn map_in_place<T: Float>(xs: &mut [T], f: impl Fn(T) -> T + Sync) {
    if xs.len() > CHUNK {
        xs.par_chunks_mut(CHUNK).for_each(|c| MapKernel::run(c, &f));
    } else {
        MapKernel::run(xs, &f);
    }
}

fn zip_map<T: Float>(src: &[T], dst: &mut [T], f: impl Fn(T, T) -> T + Sync) {
    assert_eq!(src.len(), dst.len(), "activation kernel: length mismatch");
    if dst.len() > CHUNK {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| ZipKernel::run(s, d, &f));
    } else {
        ZipKernel::run(src, dst, &f);
    }
}

/// `xs[i] ← f(xs[i])` as a `pulp` operation: `with_simd` is inlined into a function compiled with
/// the dispatched target features (AVX2, AVX-512, …), so the loop — with `f` and the
/// `#[inline(always)]` maths of [`crate::vmath`] inlined into it — is vectorised for them. The
/// results do not depend on the instruction set: every lane does the same IEEE operations.
struct MapKernel<'a, T, F> {
    xs: &'a mut [T],
    f: &'a F,
}

impl<'a, T: Float, F: Fn(T) -> T> MapKernel<'a, T, F> {
    fn run(xs: &'a mut [T], f: &'a F) {
        pulp::Arch::new().dispatch(MapKernel { xs, f });
    }
}

impl<T: Float, F: Fn(T) -> T> pulp::WithSimd for MapKernel<'_, T, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        for x in self.xs.iter_mut() {
            *x = (self.f)(*x);
        }
    }
}

/// `dst[i] ← f(src[i], dst[i])` as a `pulp` operation (see [`MapKernel`]).
struct ZipKernel<'a, T, F> {
    src: &'a [T],
    dst: &'a mut [T],
    f: &'a F,
}

impl<'a, T: Float, F: Fn(T, T) -> T> ZipKernel<'a, T, F> {
    fn run(src: &'a [T], dst: &'a mut [T], f: &'a F) {
        pulp::Arch::new().dispatch(ZipKernel { src, dst, f });
    }
}

impl<T: Float, F: Fn(T, T) -> T> pulp::WithSimd for ZipKernel<'_, T, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let n = self.dst.len();
        let src = &self.src[..n];
        for (d, &s) in self.dst.iter_mut().zip(src) {
            *d = (self.f)(s, *d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_central_differences() {
        for act in Activation::ALL {
            for &x in &[-2.3, -0.7, -0.1, 0.2, 0.9, 1.7, 3.1] {
                let h = 1e-6;
                let fd = (act.value(x + h) - act.value(x - h)) / (2.0 * h);
                let d: f64 = act.derivative(x);
                assert!((fd - d).abs() < 1e-8, "{act} at {x}: fd {fd} vs {d}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for act in Activation::ALL {
            assert_eq!(act.name().parse::<Activation>().unwrap(), act);
        }
        let err = "sigmoid".parse::<Activation>().unwrap_err();
        assert!(err.to_string().contains("sigmoid"));
    }

    #[test]
    fn slice_kernels_match_scalar_versions() {
        let h: Vec<f32> = (0..100_000).map(|i| (i as f32 - 50_000.0) * 1e-4).collect();
        for act in Activation::ALL {
            let mut v = h.clone();
            act.apply_slice(&mut v);
            let mut d = vec![2.0f32; h.len()];
            act.mul_derivative(&h, &mut d);
            for i in (0..h.len()).step_by(997) {
                assert_eq!(v[i], act.value(h[i]));
                assert_eq!(d[i], 2.0 * act.derivative(h[i]));
            }
        }
    }

    #[test]
    fn gelu_known_values() {
        // gelu(1) = Φ(1) = 0.8413447460685429
        assert!((Activation::Gelu.value(1.0f64) - 0.841_344_746_068_542_9).abs() < 1e-15);
        assert!((Activation::Gelu.value(-1.0f64) + 0.158_655_253_931_457_05).abs() < 1e-15);
    }
}
