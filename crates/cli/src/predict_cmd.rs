//! `widealign predict` and `widealign ntk --dataset … --out K.npy`: grammar, memory budget,
//! progress and output around [`widealign_ntk::ensemble`] and [`widealign_data::npy`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use widealign_data::npy::{self, Dtype, NpyReader};
use widealign_data::{load, Dataset, LoadOptions};
use widealign_experiments::limit::KernelData as Tables;
use widealign_models::BiasInit;
use widealign_ntk::analytic::{InfiniteMlp, KernelOptions};
use widealign_ntk::ensemble::{
    self, check_budget, kernel_tiles, EnsembleConfig, KernelKind, Precision, TrainTime,
};
use widealign_ntk::solve::SymTiles;
use widealign_tensor::{Float, Mat};

use crate::cli::{KernelNetArgs, NtkArgs, PredictArgs};
use crate::error::CliError;
use crate::progress::{Bar, Progress};
use crate::{emit, fsutil};

/// One progress bar per phase (`kernel`, `factor`, `test`), created when the phase starts and
/// updated at most once per per-mille.
struct Phases<'p> {
    progress: &'p Progress,
    state: Mutex<(String, Option<Bar>, u64)>,
}

impl<'p> Phases<'p> {
    fn new(progress: &'p Progress) -> Self {
        Phases {
            progress,
            state: Mutex::new((String::new(), None, u64::MAX)),
        }
    }

    fn update(&self, phase: &str, fraction: f64) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if s.0 != phase {
            s.0 = phase.to_string();
            s.1 = Some(self.progress.bar(phase, 1000, true));
            s.2 = u64::MAX;
        }
        let pos = (fraction.clamp(0.0, 1.0) * 1000.0) as u64;
        // log mode prints a line per update: every 5 % there, every per-mille on a bar
        let step = if s.1.as_ref().is_some_and(Bar::is_bar) {
            1
        } else {
            50
        };
        if s.2 == u64::MAX || pos >= s.2 + step || pos == 1000 && s.2 != 1000 {
            s.2 = pos;
            if let Some(b) = &s.1 {
                b.update(pos, "‰");
            }
        }
    }
}

fn budget(limit: Option<f64>) -> Result<u64, CliError> {
    match limit {
        Some(gb) if gb.is_finite() && gb > 0.0 => Ok((gb * 1e9) as u64),
        Some(gb) => Err(CliError::flag(
            "--memory-limit",
            format!("must be a positive number of GB, got {gb}"),
        )),
        None => Ok(widealign_tensor::memory::available_bytes().unwrap_or(u64::MAX)),
    }
}

fn tables(d: &Dataset) -> Result<Tables, CliError> {
    Tables::of(d).ok_or_else(|| {
        CliError::flag(
            "--dataset",
            format!(
                "{} is a sequence task; infinite-width MLP predictions need feature vectors",
                d.name
            ),
        )
    })
}

fn load_data(name: &str, train_size: Option<usize>, seed: u64) -> Result<Dataset, CliError> {
    let opts = LoadOptions {
        train_size,
        seed,
        ..LoadOptions::default()
    };
    Ok(load(name, &opts)?)
}

fn network(
    input_dim: usize,
    depth: usize,
    net: &KernelNetArgs,
    zero_bias: bool,
) -> Result<InfiniteMlp, CliError> {
    let spec =
        crate::theory_cmd::kernel_spec(input_dim, depth, net.activation, net.w_std, net.b_std);
    let spec = if zero_bias {
        spec.with_bias_init(BiasInit::Zero)
    } else {
        spec
    };
    Ok(InfiniteMlp::from_spec(&spec)?)
}

/// The `.test.npy` file beside a kernel file `K.npy`.
pub fn test_kernel_path(path: &Path) -> PathBuf {
    path.with_extension("test.npy")
}

/// `widealign predict`.
pub fn predict(a: &PredictArgs, progress: &Progress) -> Result<(), CliError> {
    let start = Instant::now();
    if a.tile == 0 {
        return Err(CliError::flag("--tile", "must be at least 1"));
    }
    if let Some(out) = &a.out {
        fsutil::check_writable(out, "--out")?;
    }
    let cfg = EnsembleConfig {
        kernel: a.kernel,
        time: a.time.0,
        diag_reg: a.diag_reg,
        lr: a.lr,
        precision: a.precision,
        variance: a.variance,
        tile: a.tile,
        test_block: 256,
        kernel_options: KernelOptions::default(),
    };
    let data = load_data(&a.dataset, a.train_size, a.seed)?;
    let t = tables(&data)?;
    let (n, m, d, c) = (
        t.x_train.nrows(),
        t.x_test.nrows(),
        t.x_train.ncols(),
        t.y_train.ncols(),
    );
    if let Some(path) = &a.kernel_file {
        if cfg.uses_eigen() {
            return Err(CliError::flag(
                "--kernel-file",
                "supports --time inf without --variance (the blocked Cholesky path)",
            ));
        }
        // every header is checked before any work
        open_kernel_files(path, n, m)?;
    }
    let plan = check_budget(n, m, d, c, &cfg, budget(a.memory_limit)?)?;
    progress.log(&format!(
        "predict: {n} training and {m} test points, {} kernel, predicted peak {:.2} GB ({})",
        a.kernel,
        plan.total() as f64 / 1e9,
        plan.describe()
    ));
    let phases = Phases::new(progress);
    let report = |p: &str, f: f64| phases.update(p, f);
    let (mean, variance, ridge) = match &a.kernel_file {
        None => {
            let net = network(d, a.depth, &a.net, a.zero_bias_init)?;
            let p = ensemble::predict(&net, &t.x_train, &t.y_train, &t.x_test, &cfg, &report)?;
            (p.mean, p.variance, p.ridge)
        }
        Some(path) => {
            let (mean, ridge) = match a.precision {
                Precision::F32 => from_kernel_file::<f32>(path, &t, &cfg, &report)?,
                Precision::F64 => from_kernel_file::<f64>(path, &t, &cfg, &report)?,
            };
            (mean, None, ridge)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let (mse, acc) = t.scores(&mean)?;
    if let Some(out) = &a.out {
        write_outputs(out, &mean, variance.as_deref())?;
    }
    let time = match a.time.0 {
        TrainTime::Infinite => serde_json::Value::from("inf"),
        TrainTime::Steps(s) => serde_json::Value::from(s),
    };
    let mean_var = variance
        .as_ref()
        .map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64);
    let record = serde_json::json!({
        "command": "predict",
        "dataset": data.name,
        "n_train": n,
        "n_test": m,
        "kernel": a.kernel.name(),
        "time": time,
        "lr": a.lr,
        "diag_reg": a.diag_reg,
        "ridge": ridge,
        "precision": cfg.effective_precision().name(),
        "solver": if cfg.uses_eigen() { "eigendecomposition" } else { "blocked-cholesky" },
        "depth": a.depth,
        "activation": a.net.activation.name(),
        "w_std": a.net.w_std,
        "b_std": a.net.b_std,
        "bias_init": if a.zero_bias_init { "zero" } else { "gaussian" },
        "kernel_file": a.kernel_file.as_ref().map(|p| p.display().to_string()),
        "test_accuracy": acc,
        "test_mse": mse,
        "mean_variance": mean_var,
        "predicted_peak_bytes": plan.total(),
        "seconds": seconds,
    });
    if a.json {
        emit(&record.to_string())
    } else {
        let acc = acc.map_or("n/a".into(), |v| format!("{:.2} %", 100.0 * v));
        emit(&format!(
            "{} predictor ({}, t = {}) on {n} training points: test accuracy {acc}, test MSE \
             {mse:.6}{} in {seconds:.1}s",
            a.kernel.name().to_uppercase(),
            cfg.effective_precision().name(),
            record["time"],
            mean_var.map_or(String::new(), |v| format!(
                ", mean predictive variance {v:.4}"
            )),
        ))
    }
}

fn write_outputs(out: &Path, mean: &Mat<f64>, variance: Option<&[f64]>) -> Result<(), CliError> {
    let write = |p: &Path, rows: usize, cols: usize, f: &dyn Fn(usize, &mut [f64])| {
        npy::write_matrix(p, rows, cols, Dtype::F64, |r, buf| f(r, buf))
            .map_err(|e| CliError::Failure(e.to_string()))
    };
    write(out, mean.nrows(), mean.ncols(), &|r, buf| {
        for (c, v) in buf.iter_mut().enumerate() {
            *v = mean[(r, c)];
        }
    })?;
    if let Some(var) = variance {
        write(&out.with_extension("var.npy"), var.len(), 1, &|r, buf| {
            buf[0] = var[r]
        })?;
    }
    Ok(())
}

/// Opens a kernel file and its `.test.npy` block, checking their shapes against the splits.
fn open_kernel_files(path: &Path, n: usize, m: usize) -> Result<(NpyReader, NpyReader), CliError> {
    let rd = NpyReader::open(path)?;
    if (rd.rows(), rd.cols()) != (n, n) {
        return Err(CliError::input(
            path,
            format!(
                "kernel is {} × {} but the training split has {n} points (same --dataset, \
                 --train-size and --seed as `widealign ntk --out`?)",
                rd.rows(),
                rd.cols()
            ),
        ));
    }
    let test_path = test_kernel_path(path);
    let rt = NpyReader::open(&test_path)?;
    if (rt.rows(), rt.cols()) != (m, n) {
        return Err(CliError::input(
            &test_path,
            format!(
                "test block is {} × {} but the splits need {m} × {n}",
                rt.rows(),
                rt.cols()
            ),
        ));
    }
    Ok((rd, rt))
}

/// The `t = ∞` mean from a kernel file and its `.test.npy` block.
fn from_kernel_file<T: Float>(
    path: &Path,
    t: &Tables,
    cfg: &EnsembleConfig,
    report: &(dyn Fn(&str, f64) + Sync),
) -> Result<(Mat<f64>, f64), CliError> {
    let (n, m) = (t.x_train.nrows(), t.x_test.nrows());
    let (mut rd, mut rt) = open_kernel_files(path, n, m)?;
    let mut tiles = SymTiles::<T>::zeros(n, cfg.tile)?;
    let mut row = vec![0.0; n];
    for r in 0..n {
        rd.read_row(&mut row)?;
        tiles.set_row(r, &row)?;
        if r % 256 == 0 {
            report("read kernel", r as f64 / n as f64);
        }
    }
    tiles.finish_rows();
    let (alpha, ridge) = ensemble::fit_tiles(&mut tiles, &t.y_train, cfg.diag_reg, &|f| {
        report("factor", f)
    })?;
    drop(tiles);
    let mut mean = Mat::zeros(m, t.y_train.ncols());
    for r in 0..m {
        rt.read_row(&mut row)?;
        let out = ensemble::mean_of_row(&row, &alpha)?;
        for (c, v) in out.into_iter().enumerate() {
            mean[(r, c)] = v;
        }
        if r % 256 == 0 {
            report("test", r as f64 / m as f64);
        }
    }
    Ok((mean, ridge))
}

/// `widealign ntk --dataset NAME [--train-size K] --out K.npy`: the training kernel (`N × N`)
/// and the test block (`test × N`) as .npy files.
pub fn ntk_dataset(a: &NtkArgs, name: &str, progress: &Progress) -> Result<(), CliError> {
    let start = Instant::now();
    let out = a
        .out
        .as_ref()
        .ok_or_else(|| CliError::flag("--out", "is required with --dataset"))?;
    fsutil::check_writable(out, "--out")?;
    let data = load_data(name, a.train_size, 0)?;
    let t = tables(&data)?;
    let (n, m, d) = (t.x_train.nrows(), t.x_test.nrows(), t.x_train.ncols());
    let cfg = EnsembleConfig {
        precision: a.precision,
        ..EnsembleConfig::default()
    };
    let plan = check_budget(n, m, d, t.y_train.ncols(), &cfg, budget(None)?)?;
    progress.log(&format!(
        "ntk: {n} × {n} training kernel and {m} × {n} test block, predicted peak {:.2} GB",
        plan.total() as f64 / 1e9
    ));
    let net = network(d, a.depth, &a.net, false)?;
    let phases = Phases::new(progress);
    let dtype = match a.precision {
        Precision::F32 => Dtype::F32,
        Precision::F64 => Dtype::F64,
    };
    match a.precision {
        Precision::F32 => {
            write_train_kernel::<f32>(&net, &t.x_train, a.write, dtype, out, &phases)?
        }
        Precision::F64 => {
            write_train_kernel::<f64>(&net, &t.x_train, a.write, dtype, out, &phases)?
        }
    }
    // the test block, computed in blocks of rows and streamed
    let test_path = test_kernel_path(out);
    let block = 256;
    let opts = KernelOptions::default();
    let mut cur: Option<(usize, Mat<f64>)> = None;
    let mut failed = None;
    npy::write_matrix(&test_path, m, n, dtype, |r, buf| {
        let b0 = r / block * block;
        if cur.as_ref().is_none_or(|(s, _)| *s != b0) {
            let len = (m - b0).min(block);
            let xt = t.x_test.rows(b0, len).into_owned();
            let req = widealign_ntk::analytic::KernelRequest {
                nngp: a.write == KernelKind::Nngp,
                ntk: a.write == KernelKind::Ntk,
                layers: false,
            };
            match net.kernels(&xt, Some(&t.x_train), &req, &opts) {
                Ok(k) => {
                    let k = if a.write == KernelKind::Ntk {
                        k.ntk
                    } else {
                        k.nngp
                    };
                    cur = Some((b0, k.expect("requested kernel")));
                }
                Err(e) => {
                    failed.get_or_insert(e);
                    cur = Some((b0, Mat::zeros(len, n)));
                }
            }
            phases.update("test block", (b0 + len) as f64 / m as f64);
        }
        let (_, k) = cur.as_ref().expect("block");
        for (c, v) in buf.iter_mut().enumerate() {
            *v = k[(r - b0, c)];
        }
    })
    .map_err(|e| CliError::Failure(e.to_string()))?;
    if let Some(e) = failed {
        let _ = std::fs::remove_file(&test_path);
        return Err(e.into());
    }
    let record = serde_json::json!({
        "command": "ntk",
        "dataset": data.name,
        "kernel": a.write.name(),
        "n_train": n,
        "n_test": m,
        "precision": a.precision.name(),
        "train_file": out.display().to_string(),
        "test_file": test_path.display().to_string(),
        "seconds": start.elapsed().as_secs_f64(),
    });
    emit(&record.to_string())
}

fn write_train_kernel<T: Float>(
    net: &InfiniteMlp,
    x: &Mat<f64>,
    kind: KernelKind,
    dtype: Dtype,
    out: &Path,
    phases: &Phases<'_>,
) -> Result<(), CliError> {
    let n = x.nrows();
    let tiles = kernel_tiles::<T>(
        net,
        x,
        kind,
        widealign_ntk::solve::DEFAULT_TILE,
        &KernelOptions::default(),
        &|f| phases.update("kernel", f),
    )?;
    npy::write_matrix(out, n, n, dtype, |r, buf| {
        tiles.row_into(r, buf);
        if r % 1024 == 0 {
            phases.update("write", r as f64 / n as f64);
        }
    })
    .map_err(|e| CliError::Failure(e.to_string()))
}
