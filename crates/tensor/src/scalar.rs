//! The [`Float`] trait: what the kernels need from `f32` and `f64`.

/// A floating-point scalar the kernels work with: implemented for `f32` and `f64`.
///
/// Extends nalgebra's `RealField` with exact conversions used throughout widealign.
pub trait Float:
    nalgebra::RealField + Copy + Default + Send + Sync + 'static + std::fmt::Debug + std::fmt::Display
{
    /// Name of the type, `"f32"` or `"f64"` (used in checkpoints and reports).
    const NAME: &'static str;
    /// Size of one value in bytes.
    const BYTES: usize;
    /// Converts from `f64`, rounding to nearest for `f32`.
    fn cast(x: f64) -> Self;
    /// Converts to `f64` exactly.
    fn as_f64(self) -> f64;
    /// The error function, computed by the branch-free [`crate::vmath::erf`] (for `f32`: in `f64`,
    /// rounded once), so scalar and vectorised callers agree bit for bit.
    fn erf_fn(self) -> Self;
    /// `tanh x`, computed by the branch-free [`crate::vmath::tanh`] (for `f32`: in `f64`, rounded
    /// once), so scalar and vectorised callers agree bit for bit.
    fn tanh_fn(self) -> Self;
    /// `eˣ`, computed by the branch-free [`crate::vmath::exp`] (for `f32`: in `f64`, rounded once).
    fn exp_fn(self) -> Self;
    /// Writes the value's little-endian bytes to `out`.
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads a value from exactly [`Float::BYTES`] little-endian bytes.
    fn read_le(bytes: &[u8]) -> Self;
}

impl Float for f32 {
    const NAME: &'static str = "f32";
    const BYTES: usize = 4;
    #[inline]
    fn cast(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn erf_fn(self) -> Self {
        crate::vmath::erf_f32(self)
    }
    #[inline(always)]
    fn tanh_fn(self) -> Self {
        crate::vmath::tanh_f32(self)
    }
    #[inline(always)]
    fn exp_fn(self) -> Self {
        crate::vmath::exp_f32(self)
    }
    #[inline]
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    #[inline]
    fn read_le(bytes: &[u8]) -> Self {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[..4]);
        f32::from_le_bytes(b)
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";
    const BYTES: usize = 8;
    #[inline]
    fn cast(x: f64) -> Self {
        x
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn erf_fn(self) -> Self {
        crate::vmath::erf(self)
    }
    #[inline(always)]
    fn tanh_fn(self) -> Self {
        crate::vmath::tanh(self)
    }
    #[inline(always)]
    fn exp_fn(self) -> Self {
        crate::vmath::exp(self)
    }
    #[inline]
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    #[inline]
    fn read_le(bytes: &[u8]) -> Self {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[..8]);
        f64::from_le_bytes(b)
    }
}
