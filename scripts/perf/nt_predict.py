#!/usr/bin/env python3
"""Anchor for `widealign predict`: neural-tangents 0.6.5 `predict.gradient_descent_mse_ensemble`
and widealign on the same Fashion-MNIST images, side by side, each in its own process under
`/usr/bin/time -v` (wall seconds, peak RSS).

Both see identical data: the first N training images and all 10,000 test images of
/usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist) are written as an
uncompressed IDX folder that widealign reads as `--dataset idx:DIR`; pixels / 255, targets
one-hot - 0.1. Network: 3 hidden layers of stax Dense(W_std=1, b_std=0.1) + Relu, Dense(10)
(NTK parameterisation, Gaussian biases = widealign's defaults). Both predictors at t = inf with
the same diag_reg (relative to the mean diagonal in both). neural-tangents runs in float64 by
default here (`--nt-dtype float32` for its JAX default; float32 Cholesky is its issue #128) and
under an address-space cap (`prlimit --as`, default 20 GB) so that running out of memory kills
only it. Run the whole script under the exclusive CPU lock:

    flock -x /tmp/widealign-cpu.lock /tmp/venv-nt/bin/python scripts/perf/nt_predict.py \
        --n-train 10000 --bin target/release/widealign

Prints one JSON line per run and a Markdown table at the end.
"""

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    import numpy as np

    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_idx(path, arr):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, arr.ndim]))
        for d in arr.shape:
            f.write(int(d).to_bytes(4, "big"))
        f.write(arr.astype("uint8").tobytes())


def make_split(n_train, folder):
    xs = read_idx(f"{DATA}/train-images-idx3-ubyte.gz")[:n_train]
    ys = read_idx(f"{DATA}/train-labels-idx1-ubyte.gz")[:n_train]
    write_idx(f"{folder}/train-images-idx3-ubyte", xs)
    write_idx(f"{folder}/train-labels-idx1-ubyte", ys)
    write_idx(f"{folder}/t10k-images-idx3-ubyte", read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz"))
    write_idx(f"{folder}/t10k-labels-idx1-ubyte", read_idx(f"{DATA}/t10k-labels-idx1-ubyte.gz"))


def nt_worker(args):
    """Runs inside the capped child: prints one JSON line."""
    import jax

    if args.nt_dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import numpy as np
    import neural_tangents as nt
    from neural_tangents import stax

    dtype = np.float64 if args.nt_dtype == "float64" else np.float32
    folder = args.folder
    x_tr = read_raw(f"{folder}/train-images-idx3-ubyte").reshape(-1, 784).astype(dtype) / 255.0
    l_tr = read_raw(f"{folder}/train-labels-idx1-ubyte")
    x_te = read_raw(f"{folder}/t10k-images-idx3-ubyte").reshape(-1, 784).astype(dtype) / 255.0
    l_te = read_raw(f"{folder}/t10k-labels-idx1-ubyte")
    y_tr = np.full((len(l_tr), 10), -0.1, dtype)
    y_tr[np.arange(len(l_tr)), l_tr] = 0.9
    y_te = np.full((len(l_te), 10), -0.1, dtype)
    y_te[np.arange(len(l_te)), l_te] = 0.9
    layers = []
    for _ in range(3):
        layers += [stax.Dense(512, W_std=1.0, b_std=0.1), stax.Relu()]
    layers += [stax.Dense(10, W_std=1.0, b_std=0.1)]
    _, _, kernel_fn = stax.serial(*layers)
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    t0 = time.perf_counter()
    predict_fn = nt.predict.gradient_descent_mse_ensemble(
        kernel_fn, x_tr, y_tr, diag_reg=args.diag_reg
    )
    mean = predict_fn(x_test=x_te, get=args.kernel, compute_cov=False)
    mean = np.asarray(jax.block_until_ready(mean))
    secs = time.perf_counter() - t0
    acc = float((mean.argmax(1) == l_te).mean())
    mse = float(((mean - y_te) ** 2).mean())
    print(json.dumps({"test_accuracy": acc, "test_mse": mse, "seconds": secs,
                      "nan": bool(np.isnan(mean).any())}))


def read_raw(path):
    import numpy as np

    with open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time -v: (last stdout line or None, wall s, peak RSS GB, rc, err)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    rss = int(m.group(1)) / 1e6 if m else float("nan")
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    text = [l for l in p.stderr.splitlines() if l.strip() and "\t" not in l]
    # the exception's own line (JAX prints its filtering notice after it), else the last lines
    exc = [l for l in text if re.match(r"^[\w.]+(Error|Exception)\b", l)]
    err = exc[-1:] if exc else text[-3:]
    return (json.loads(lines[-1]) if lines else None), wall, rss, p.returncode, " | ".join(err)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--diag-reg", type=float, default=1e-4)
    ap.add_argument("--kernels", default="ntk,nngp")
    ap.add_argument("--bin", default="target/release/widealign")
    ap.add_argument("--precisions", default="f32,f64", help="widealign storage precisions")
    ap.add_argument("--nt-dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--nt-cap-gb", type=float, default=20.0)
    ap.add_argument("--skip-nt", action="store_true")
    ap.add_argument("--skip-widealign", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kernel", default="ntk", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return nt_worker(args)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        make_split(args.n_train, folder)
        for kernel in args.kernels.split(","):
            if not args.skip_widealign:
                for prec in args.precisions.split(","):
                    out, wall, rss, rc, err = timed([
                        args.bin, "predict", "--dataset", f"idx:{folder}", "--depth", "3",
                        "--kernel", kernel, "--diag-reg", str(args.diag_reg),
                        "--precision", prec, "--json", "-q"])
                    row = {"tool": "widealign", "n_train": args.n_train, "kernel": kernel,
                           "precision": prec, "wall_s": round(wall, 2), "peak_rss_gb": round(rss, 2),
                           "rc": rc, **(out or {"error": err})}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
            if not args.skip_nt:
                cap = int(args.nt_cap_gb * 1e9)
                env = dict(os.environ)
                env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2")
                out, wall, rss, rc, err = timed([
                    "prlimit", f"--as={cap}", sys.executable, __file__, "--worker",
                    "--folder", folder, "--kernel", kernel, "--diag-reg", str(args.diag_reg),
                    "--nt-dtype", args.nt_dtype], env=env)
                row = {"tool": "neural-tangents 0.6.5", "n_train": args.n_train, "kernel": kernel,
                       "precision": args.nt_dtype, "wall_s": round(wall, 2),
                       "peak_rss_gb": round(rss, 2), "rc": rc, **(out or {"error": err})}
                print(json.dumps(row), flush=True)
                rows.append(row)
    print("\n| tool | n_train | kernel | precision | seconds (in-process) | wall s | peak RSS GB | test accuracy | test MSE |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        acc = f"{100 * r['test_accuracy']:.2f} %" if "test_accuracy" in r else r.get("error", "")[:80]
        mse = f"{r['test_mse']:.5f}" if "test_mse" in r else ""
        secs = f"{r['seconds']:.1f}" if "seconds" in r else ""
        print(f"| {r['tool']} | {r['n_train']} | {r['kernel']} | {r['precision']} | {secs} | "
              f"{r['wall_s']} | {r['peak_rss_gb']} | {acc} | {mse} |")


if __name__ == "__main__":
    main()
