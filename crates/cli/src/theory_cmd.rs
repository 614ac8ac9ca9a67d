//! `widealign ntk` (MLP, RNN and CNN) and `bench ntk`: infinite-width kernels from `widealign-ntk`.

use std::path::Path;
use std::time::Instant;

use widealign_models::{BiasInit, CnnReadout, CnnSpec, MlpSpec, Parameterization, RnnSpec};
use widealign_ntk::analytic::{InfiniteMlp, KernelOptions, KernelRequest};
use widealign_ntk::experiment::{
    analytic_cnn_ntk, analytic_ntk, analytic_rnn_ntk, NtkConfig, NtkReport, RnnNtkConfig,
};
use widealign_ntk::quadrature::Quadrature;
use widealign_rules::ModelKind;
use widealign_tensor::{rng::SeedStream, Activation, Mat};

use crate::cli::{BenchNtkArgs, ImageShape, NtkArgs};
use crate::emit;
use crate::error::CliError;
use crate::progress::Progress;

/// Reads a numeric CSV file: one row per input, comma-separated numbers, an optional header
/// line (a first line that is not all numbers). Errors name the file, line and field.
pub fn read_numeric_csv(path: &Path) -> Result<Mat<f64>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::read(path, e))?;
    let mut data = Vec::new();
    let mut cols = 0usize;
    let mut rows = 0usize;
    let mut first = true;
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Vec<Result<f64, _>> = fields.iter().map(|f| f.parse::<f64>()).collect();
        // A first line with no number at all is a header.
        if std::mem::take(&mut first) && parsed.iter().all(Result::is_err) {
            continue;
        }
        let mut vals = Vec::with_capacity(fields.len());
        for (j, (f, p)) in fields.iter().zip(parsed).enumerate() {
            match p {
                Ok(v) if v.is_finite() => vals.push(v),
                _ => {
                    return Err(CliError::Input(format!(
                        "{}:{}: field {} `{f}` is not a finite number",
                        path.display(),
                        ln + 1,
                        j + 1
                    )))
                }
            }
        }
        if rows > 0 && vals.len() != cols {
            return Err(CliError::Input(format!(
                "{}:{}: {} values, but earlier rows have {cols}",
                path.display(),
                ln + 1,
                vals.len()
            )));
        }
        cols = vals.len();
        rows += 1;
        data.extend(vals);
    }
    if rows == 0 {
        return Err(CliError::input(path, "no input rows"));
    }
    Ok(Mat::from_row_slice(rows, cols, &data))
}

/// The network of `widealign ntk` and `bench ntk`: `depth` hidden layers, a scalar output,
/// Gaussian initial biases (neural-tangents' `Dense(W_std, b_std)`). The hidden width (1
/// here) does not enter the infinite-width kernels.
pub(crate) fn kernel_spec(
    input_dim: usize,
    depth: usize,
    activation: Activation,
    w_std: f64,
    b_std: f64,
) -> MlpSpec {
    MlpSpec::uniform(input_dim, 1, depth, 1, activation)
        .with_param(Parameterization::Ntk { w_std, b_std })
        .with_bias_init(BiasInit::Gaussian)
}

/// The recurrent network of `widealign ntk --model rnn`: `input_dim` inputs per step, a scalar
/// output, NTK parameterisation with Gaussian initial biases (as the MLP form). The width (1
/// here) does not enter the infinite-width kernels.
fn rnn_kernel_spec(input_dim: usize, activation: Activation, w_std: f64, b_std: f64) -> RnnSpec {
    RnnSpec::new(input_dim, 1, 1, activation)
        .with_param(Parameterization::Ntk { w_std, b_std })
        .with_bias_init(BiasInit::Gaussian)
}

/// `widealign ntk --model rnn`: checks `--seq-len` against the CSV rows, then the library call.
fn rnn_ntk(a: &NtkArgs, inputs: &Path, x: &Mat<f64>) -> Result<NtkReport, CliError> {
    let steps = match a.seq_len {
        None => return Err(CliError::flag("--seq-len", "is required with --model rnn")),
        Some(0) => return Err(CliError::flag("--seq-len", "must be at least 1")),
        Some(t) => t,
    };
    if x.ncols() % steps != 0 {
        return Err(CliError::input(
            inputs,
            format!(
                "rows have {} numbers, not a multiple of --seq-len {steps} (a row is T·d \
                 numbers, time-major)",
                x.ncols()
            ),
        ));
    }
    let spec = rnn_kernel_spec(
        x.ncols() / steps,
        a.net.activation,
        a.net.w_std,
        a.net.b_std,
    );
    Ok(analytic_rnn_ntk(x, steps, &RnnNtkConfig::new(spec))?)
}

/// `widealign ntk --model cnn`: checks `--image` against the CSV rows, then the library call
/// for `--conv-layers` convolutions (stride 1, SAME padding, no normalisation, Gaussian initial
/// biases, one channel each: the channel counts do not enter the infinite-width kernels).
fn cnn_ntk(a: &NtkArgs, inputs: &Path, x: &Mat<f64>) -> Result<NtkReport, CliError> {
    if a.seq_len.is_some() {
        return Err(CliError::flag("--seq-len", "applies to --model rnn only"));
    }
    let Some(ImageShape([h, w, c])) = a.image else {
        return Err(CliError::flag(
            "--image",
            "is required with --model cnn (H,W,C)",
        ));
    };
    if x.ncols() != h * w * c {
        return Err(CliError::input(
            inputs,
            format!(
                "rows have {} numbers, but --image {h},{w},{c} needs {} (one HWC image per row)",
                x.ncols(),
                h * w * c
            ),
        ));
    }
    let layers = a.conv_layers.unwrap_or(3);
    if layers == 0 {
        return Err(CliError::flag("--conv-layers", "must be at least 1"));
    }
    let kernel = a.kernel.unwrap_or(3);
    if kernel == 0 {
        return Err(CliError::flag("--kernel", "must be at least 1"));
    }
    let spec = CnnSpec::new([h, w, c], vec![1; layers], 1, a.net.activation)
        .with_kernel(kernel)
        .with_readout(a.readout.unwrap_or(CnnReadout::Gap))
        .with_param(Parameterization::Ntk {
            w_std: a.net.w_std,
            b_std: a.net.b_std,
        })
        .with_bias_init(BiasInit::Gaussian);
    Ok(analytic_cnn_ntk(x, &spec, Quadrature::default())?)
}

/// `widealign ntk`.
pub fn ntk(a: &NtkArgs, progress: &Progress) -> Result<(), CliError> {
    if a.model != ModelKind::Cnn {
        for (flag, set) in [
            ("--image", a.image.is_some()),
            ("--conv-layers", a.conv_layers.is_some()),
            ("--kernel", a.kernel.is_some()),
            ("--readout", a.readout.is_some()),
        ] {
            if set {
                return Err(CliError::flag(flag, "applies to --model cnn only"));
            }
        }
    }
    if let Some(name) = &a.dataset {
        if a.model != ModelKind::Mlp || a.seq_len.is_some() {
            return Err(CliError::flag("--dataset", "applies to --model mlp only"));
        }
        return crate::predict_cmd::ntk_dataset(a, name, progress);
    }
    let Some(inputs) = &a.inputs else {
        return Err(CliError::flag(
            "--inputs",
            "is required (or --dataset NAME --out K.npy)",
        ));
    };
    let report = match a.model {
        ModelKind::Mlp => {
            if a.seq_len.is_some() {
                return Err(CliError::flag("--seq-len", "applies to --model rnn only"));
            }
            let x = read_numeric_csv(inputs)?;
            check_kernel_memory(x.nrows(), a.depth + 1)?;
            let spec = kernel_spec(
                x.ncols(),
                a.depth,
                a.net.activation,
                a.net.w_std,
                a.net.b_std,
            );
            analytic_ntk(&x, &NtkConfig::new(spec))?
        }
        ModelKind::Rnn => {
            let x = read_numeric_csv(inputs)?;
            check_kernel_memory(x.nrows(), a.seq_len.unwrap_or(1) + 1)?;
            rnn_ntk(a, inputs, &x)?
        }
        ModelKind::Cnn => {
            let x = read_numeric_csv(inputs)?;
            check_kernel_memory(x.nrows(), a.conv_layers.unwrap_or(3) + 1)?;
            cnn_ntk(a, inputs, &x)?
        }
    };
    if a.json {
        let s = serde_json::to_string(&report).map_err(|e| CliError::Failure(e.to_string()))?;
        return emit(&s);
    }
    let table = |name: &str, m: &[Vec<f64>]| {
        let mut s = format!("{name} ({n} x {n}):\n", n = m.len());
        for row in m {
            let cells: Vec<String> = row.iter().map(|v| format!("{v:>12.6}")).collect();
            s.push_str(&cells.join(" "));
            s.push('\n');
        }
        s
    };
    emit(&format!(
        "{}{}computed in {:.3}s",
        table("NNGP", &report.nngp),
        table("NTK", &report.ntk),
        report.seconds
    ))
}

/// Refuses (exit 2) kernels of `n` inputs whose `layers` per-layer `n × n` NNGP and NTK
/// matrices (f64, plus the two JSON-ready copies) cannot fit in the available memory.
fn check_kernel_memory(n: usize, layers: usize) -> Result<(), CliError> {
    let n = n as f64;
    let mut e = widealign_tensor::memory::Estimate::new(format!("ntk ({n} inputs)"));
    e.add(
        "per-layer kernel matrices",
        layers as f64 * 2.0 * n * n * 8.0,
    )
    .add("output kernels", 2.0 * 2.0 * n * n * 8.0);
    e.check().map_err(|t| CliError::flag("--inputs", t))
}

/// `widealign bench ntk`: the output NTK of `n` Gaussian inputs with itself.
pub fn bench_ntk(a: &BenchNtkArgs) -> Result<(), CliError> {
    if a.n == 0 {
        return Err(CliError::flag("--n", "must be at least 1"));
    }
    if a.input_dim == 0 {
        return Err(CliError::flag("--input-dim", "must be at least 1"));
    }
    let x: Mat<f64> =
        SeedStream::new(0)
            .child("bench-ntk")
            .gaussian_matrix("x", a.n, a.input_dim, 1.0);
    let net = InfiniteMlp::from_spec(&kernel_spec(a.input_dim, a.depth, a.activation, 1.0, 0.1))?;
    let req = KernelRequest {
        nngp: false,
        ntk: true,
        layers: false,
    };
    let t = Instant::now();
    let k = net.kernels(&x, None, &req, &KernelOptions::default())?;
    let seconds = t.elapsed().as_secs_f64();
    std::hint::black_box(&k);
    let v = serde_json::json!({
        "seconds": seconds,
        "n": a.n,
        "input_dim": a.input_dim,
        "depth": a.depth,
        "activation": a.activation.name(),
        "entries_per_s": (a.n * a.n) as f64 / seconds,
        "threads": rayon::current_num_threads(),
    });
    if a.json {
        emit(&v.to_string())
    } else {
        emit(&format!(
            "NTK of {} inputs (dim {}, {} hidden layers, {}): {:.3}s, {} threads",
            a.n,
            a.input_dim,
            a.depth,
            a.activation.name(),
            seconds,
            rayon::current_num_threads()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<Mat<f64>, CliError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.csv");
        std::fs::write(&p, text).unwrap();
        read_numeric_csv(&p)
    }

    #[test]
    fn reads_rows_with_and_without_header() {
        let m = csv("a,b\n1,2\n3, 4\n").unwrap();
        assert_eq!(m, Mat::from_row_slice(2, 2, &[1.0, 2.0, 3.0, 4.0]));
        let m = csv("1,2\n\n3,4\n").unwrap();
        assert_eq!(m.shape(), (2, 2));
    }

    #[test]
    fn bad_csv_names_line_and_field() {
        let e = csv("1,2\n3,x\n").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .ends_with("x.csv:2: field 2 `x` is not a finite number"),
            "{e}"
        );
        let e = csv("1,2\n3\n").unwrap_err();
        assert!(e.to_string().contains("x.csv:2: 1 values"), "{e}");
        let e = csv("1,nan\n").unwrap_err();
        assert!(e.to_string().contains("x.csv:1: field 2"), "{e}");
        let e = csv("a,b\n").unwrap_err();
        assert!(e.to_string().contains("no input rows"), "{e}");
        let e = csv("1,a\n2,3\n").unwrap_err();
        assert!(e.to_string().contains("x.csv:1: field 2"), "{e}");
    }
}
