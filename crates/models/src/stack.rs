//! A stack of weight layers stored as `fan_out × fan_in` matrices with bias vectors, the shape
//! both the [`Mlp`](crate::Mlp) and the [`Cnn`](crate::Cnn) keep their parameters in: drawing
//! them, listing them, converting them, and feedback alignment's matrices shaped like them.

use widealign_tensor::{rng::SeedStream, Float, Mat};

use crate::{BiasInit, ModelError, Parameterization};

/// Draws layer `l = 1..` with `(fan_in, fan_out) = dims[l − 1]` from `stream`: the weight from
/// `"layer{l}.weight"` with standard deviation `param.weight_init_std(fan_in)`, the bias from
/// `"layer{l}.bias"` with `param.bias_init_std()` (or zero under [`BiasInit::Zero`]).
pub(crate) fn draw<T: Float>(
    stream: &SeedStream,
    dims: &[(usize, usize)],
    param: Parameterization,
    bias_init: BiasInit,
) -> (Vec<Mat<T>>, Vec<Vec<T>>) {
    dims.iter()
        .enumerate()
        .map(|(i, &(fan_in, fan_out))| {
            let l = i + 1;
            let w = stream.gaussian_matrix(
                &format!("layer{l}.weight"),
                fan_out,
                fan_in,
                param.weight_init_std(fan_in),
            );
            let b = match bias_init {
                BiasInit::Zero => vec![T::zero(); fan_out],
                BiasInit::Gaussian => {
                    stream.gaussian_vec(&format!("layer{l}.bias"), fan_out, param.bias_init_std())
                }
            };
            (w, b)
        })
        .unzip()
}

/// The tensors in the order `W^1, b^1, W^2, b^2, …`.
pub(crate) fn params<'a, T: Float>(weights: &'a [Mat<T>], biases: &'a [Vec<T>]) -> Vec<&'a [T]> {
    weights
        .iter()
        .zip(biases)
        .flat_map(|(w, b)| [w.as_slice(), b.as_slice()])
        .collect()
}

/// [`params`], mutable.
pub(crate) fn params_mut<'a, T: Float>(
    weights: &'a mut [Mat<T>],
    biases: &'a mut [Vec<T>],
) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(2 * weights.len());
    for (w, b) in weights.iter_mut().zip(biases.iter_mut()) {
        out.push(w.as_mut_slice());
        out.push(b.as_mut_slice());
    }
    out
}

/// The weights and biases in another float type (each value converted through `f64`).
pub(crate) fn cast<T: Float, U: Float>(
    weights: &[Mat<T>],
    biases: &[Vec<T>],
) -> (Vec<Mat<U>>, Vec<Vec<U>>) {
    (
        weights
            .iter()
            .map(|w| w.map(|v| U::cast(v.as_f64())))
            .collect(),
        biases
            .iter()
            .map(|b| b.iter().map(|v| U::cast(v.as_f64())).collect())
            .collect(),
    )
}

/// Feedback alignment's fixed matrices `B^l` for `l = 2..L` (shaped like `W^l`; index 0 is
/// `0 × 0`, never read), from `SeedStream::new(seed).child("fa")`, stream `"layer{l}.feedback"`,
/// with the initial standard deviation of the weights they stand in for.
pub(crate) fn fa_matrices<T: Float>(
    dims: &[(usize, usize)],
    param: Parameterization,
    seed: u64,
) -> Vec<Mat<T>> {
    let stream = SeedStream::new(seed).child("fa");
    dims.iter()
        .enumerate()
        .map(|(i, &(fan_in, fan_out))| {
            if i == 0 {
                Mat::zeros(0, 0)
            } else {
                stream.gaussian_matrix(
                    &format!("layer{}.feedback", i + 1),
                    fan_out,
                    fan_in,
                    param.weight_init_std(fan_in),
                )
            }
        })
        .collect()
}

/// Checks user-given feedback-alignment matrices against the layer shapes `dims` (index 0 is
/// not read).
pub(crate) fn check_fa_matrices<T: Float>(
    dims: &[(usize, usize)],
    feedback: &[Mat<T>],
) -> Result<(), ModelError> {
    if feedback.len() != dims.len() {
        return Err(ModelError::ShapeMismatch {
            what: "feedback-alignment matrices".into(),
            expected: format!("{} matrices", dims.len()),
            got: format!("{} matrices", feedback.len()),
        });
    }
    for (i, (b, &(fan_in, fan_out))) in feedback.iter().zip(dims).enumerate().skip(1) {
        if b.shape() != (fan_out, fan_in) {
            return Err(ModelError::ShapeMismatch {
                what: format!("feedback matrix B^{}", i + 1),
                expected: format!("{fan_out} × {fan_in}"),
                got: format!("{} × {}", b.nrows(), b.ncols()),
            });
        }
    }
    Ok(())
}
