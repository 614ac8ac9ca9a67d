#!/usr/bin/env python3
"""Cross-check widealign's analytic NNGP/NTK against neural-tangents.

Not part of the Rust build or CI. Set up once, outside the repository:

    python3 -m venv /tmp/venv-nt
    /tmp/venv-nt/bin/pip install "jax[cpu]==0.4.30" neural-tangents==0.6.5 "tf2jax==0.3.6" "numpy<2"

(neural-tangents 0.6.5 imports jax.core.Jaxpr, removed in newer JAX, hence the pins.) Then

    cargo build --release -p widealign-ntk --examples
    /tmp/venv-nt/bin/python scripts/crosscheck/nt_crosscheck.py [--bin target/release/examples/ntk_csv]

`--bin` may be any command taking `INPUTS.csv DEPTH ACTIVATION W_STD B_STD` and printing the
JSON of `widealign ntk --json` (the standalone example by default). Prints one line per
architecture and the largest relative difference, max|ours - nt| / max|nt|, over all of them.
Architectures: `DEPTH` hidden layers of Dense(512, W_std, b_std) + activation, then Dense(1),
NTK parameterisation, Gaussian biases (neural-tangents' convention).
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

ARCHS = [
    # (activation, hidden layers, W_std, b_std, input dim, N)
    ("relu", 1, 1.0, 0.0, 5, 20),
    ("relu", 3, 1.4, 0.1, 8, 30),
    ("relu", 5, 2.0 ** 0.5, 0.05, 3, 25),
    ("erf", 1, 1.0, 0.5, 5, 20),
    ("erf", 3, 1.7, 0.2, 10, 30),
    ("identity", 2, 1.2, 0.3, 4, 15),
    ("gelu", 2, 1.3, 0.1, 6, 20),
    ("tanh", 2, 1.5, 0.1, 6, 20),
]


def nt_kernels(act, depth, w_std, b_std, x):
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(512, W_std=w_std, b_std=b_std), ACTS[act]()]
    layers += [stax.Dense(1, W_std=w_std, b_std=b_std)]
    _, _, kernel_fn = stax.serial(*layers)
    k = kernel_fn(x, None, ("nngp", "ntk"))
    return np.asarray(k.nngp), np.asarray(k.ntk)


def ours(binary, act, depth, w_std, b_std, x):
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        for row in x:
            f.write(",".join(repr(float(v)) for v in row) + "\n")
        path = f.name
    try:
        out = subprocess.run(binary + [path, str(depth), act, repr(w_std), repr(b_std)],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    r = json.loads(out.strip().splitlines()[-1])
    return np.array(r["nngp"]), np.array(r["ntk"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/examples/ntk_csv",
                    help="command printing the ntk JSON (split on spaces)")
    args = ap.parse_args()
    binary = args.bin.split()
    rng = np.random.default_rng(0)
    worst = 0.0
    for act, depth, w_std, b_std, dim, n in ARCHS:
        x = rng.normal(size=(n, dim)) * 0.7
        x[1] = 2.0 * x[0]   # colinear
        x[2] = -x[0]        # antipodal
        nt_nngp, nt_ntk = nt_kernels(act, depth, w_std, b_std, jnp.asarray(x))
        my_nngp, my_ntk = ours(binary, act, depth, w_std, b_std, x)
        rel = [np.abs(a - b).max() / np.abs(b).max()
               for a, b in ((my_nngp, nt_nngp), (my_ntk, nt_ntk))]
        worst = max(worst, *rel)
        print(f"{act:8s} hidden={depth} W_std={w_std:.4f} b_std={b_std:<4} N={n:2d} "
              f"nngp rel diff {rel[0]:.2e}  ntk rel diff {rel[1]:.2e}")
    print(f"largest relative difference: {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
