#!/usr/bin/env python3
"""Cross-check widealign's infinite-width CNN kernels against neural-tangents.

Not part of the Rust build or CI. Uses the venv of nt_crosscheck.py (jax 0.4.30 +
neural-tangents 0.6.5, see there), then

    cargo build --release -p widealign
    /tmp/venv-nt/bin/python scripts/crosscheck/nt_cnn_crosscheck.py [--bin target/release/widealign]

For every case it writes the images to a CSV (one HWC-flattened image per row) and runs

    widealign ntk --model cnn --inputs X.csv --image H,W,C --conv-layers L --kernel K
        --readout gap|flatten --activation A --w-std S --b-std S --json

and compares "nngp" and "ntk" with neural-tangents'
stax.serial([Conv(·, (K, K), padding='SAME', W_std, b_std), act] * L,
            GlobalAvgPool() | Flatten(), Dense(1, W_std, b_std))
(NTK parameterisation, Gaussian biases), in float64. Prints one line per case with the largest
relative difference max|ours - nt| / max|nt| of each kernel, and the largest over all cases.
Every case has an image, twice it and its negative among its inputs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

ACTS = {
    "relu": lambda: stax.Relu(),
    "erf": lambda: stax.Erf(),
    "identity": lambda: stax.Identity(),
    "gelu": lambda: stax.Gelu(approximate=False),
    # no analytic tanh in neural-tangents: its Gauss-Hermite numerical layer, high degree
    "tanh": lambda: stax.ElementwiseNumerical(jnp.tanh, deg=200),
}

CASES = [
    # (activation, readout, (H, W, C), conv layers, filter, W_std, b_std, N)
    ("relu", "gap", (8, 8, 1), 3, 3, 1.4, 0.1, 12),
    ("relu", "flatten", (8, 8, 1), 3, 3, 1.4, 0.1, 12),
    ("relu", "gap", (6, 5, 3), 4, 3, 2.0 ** 0.5, 0.0, 10),
    ("relu", "flatten", (7, 7, 1), 2, 4, 1.1, 0.2, 10),
    ("erf", "gap", (5, 6, 2), 2, 3, 1.7, 0.3, 10),
    ("erf", "flatten", (6, 6, 2), 3, 5, 1.3, 0.1, 10),
    ("identity", "gap", (4, 5, 2), 2, 2, 1.2, 0.3, 8),
    ("gelu", "gap", (5, 5, 1), 2, 3, 1.3, 0.1, 8),
    ("tanh", "flatten", (5, 5, 1), 2, 3, 1.5, 0.1, 8),
]


def nt_kernels(act, readout, depth, k, w_std, b_std, x):
    layers = []
    for _ in range(depth):
        layers += [stax.Conv(64, (k, k), padding="SAME", W_std=w_std, b_std=b_std), ACTS[act]()]
    layers += [stax.GlobalAvgPool() if readout == "gap" else stax.Flatten(),
               stax.Dense(1, W_std=w_std, b_std=b_std)]
    _, _, kernel_fn = stax.serial(*layers)
    k = kernel_fn(x, None, ("nngp", "ntk"))
    return np.asarray(k.nngp), np.asarray(k.ntk)


def ours(binary, act, readout, image, depth, k, w_std, b_std, rows):
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        for row in rows:
            f.write(",".join(repr(float(v)) for v in row) + "\n")
        path = f.name
    try:
        cmd = binary + ["ntk", "--model", "cnn", "--inputs", path,
                        "--image", ",".join(map(str, image)), "--conv-layers", str(depth),
                        "--kernel", str(k), "--readout", readout, "--activation", act,
                        "--w-std", repr(w_std), "--b-std", repr(b_std), "--json"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    r = json.loads(out.strip().splitlines()[-1])
    return np.array(r["nngp"]), np.array(r["ntk"]), r["seconds"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/widealign",
                    help="the widealign command (split on spaces)")
    args = ap.parse_args()
    binary = args.bin.split()
    rng = np.random.default_rng(0)
    worst = 0.0
    for act, readout, image, depth, k, w_std, b_std, n in CASES:
        h, w, c = image
        x = rng.normal(size=(n, h, w, c)) * 0.8
        x[1] = 2.0 * x[0]   # colinear
        x[2] = -x[0]        # antipodal
        nt_nngp, nt_ntk = nt_kernels(act, readout, depth, k, w_std, b_std, jnp.asarray(x))
        my_nngp, my_ntk, secs = ours(binary, act, readout, image, depth, k, w_std, b_std,
                                     x.reshape(n, -1))
        rel = [np.abs(a - b).max() / np.abs(b).max()
               for a, b in ((my_nngp, nt_nngp), (my_ntk, nt_ntk))]
        worst = max(worst, *rel)
        print(f"{act:8s} {readout:7s} image={h}x{w}x{c} L={depth} k={k} W_std={w_std:.4f} "
              f"b_std={b_std:<4} N={n:2d}  nngp rel diff {rel[0]:.2e}  ntk rel diff {rel[1]:.2e}"
              f"  (ours {secs:.3f}s)")
    print(f"largest relative difference: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
