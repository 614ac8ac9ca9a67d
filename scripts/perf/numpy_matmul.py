#!/usr/bin/env python3
"""numpy float32 matmul throughput on the widealign GEMM shapes (the reference for
docs/decisions/gemm.md).

Prints one JSON object per shape on stdout, in the same format as
`crates/tensor/examples/gemm_compare.rs` (impl "numpy"). Transposed operands are numpy
`.T` views, so BLAS receives a transpose flag and no copy is made.

Run it with numpy's own OpenBLAS, 2 threads, and without the machine's OpenBLAS overrides:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 \
        python scripts/perf/numpy_matmul.py [--shapes sq1024,fwd784] [--min-reps 5]

Needs only numpy (threadpoolctl, if installed, is used to report the OpenBLAS kernel).
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def shapes():
    out = []
    for n in (256, 512, 1024, 2048, 4096):
        out.append(dict(name=f"sq{n}", what="square A·B", m=n, k=n, n=n, form="NN"))
    for tag, n_in in (("784", 784), ("1024", 1024)):
        width = 1024
        out.append(dict(name=f"fwd{tag}", what="forward H=A·Wᵀ", m=100, k=n_in, n=width, form="NT"))
        out.append(dict(name=f"grad{tag}", what="weight grad Dᵀ·A", m=width, k=100, n=n_in, form="TN"))
        out.append(dict(name=f"bwd{tag}", what="backward D·W", m=100, k=width, n=n_in, form="NN"))
    return out


def operand(rng, op, rows, cols):
    """Array whose op(.) is rows x cols: stored as given, or stored transposed and viewed."""
    if op == "N":
        return rng.standard_normal((rows, cols), dtype=np.float32)
    return rng.standard_normal((cols, rows), dtype=np.float32).T


def time_it(f, min_reps, budget):
    start = time.perf_counter()
    f()
    while time.perf_counter() - start < 0.2:
        f()
    samples = []
    start = time.perf_counter()
    while len(samples) < min_reps or (time.perf_counter() - start < budget and len(samples) < 1000):
        t = time.perf_counter()
        f()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return samples[0], samples[len(samples) // 2], len(samples)


def blas_info():
    try:
        import threadpoolctl

        for p in threadpoolctl.threadpool_info():
            if p.get("user_api") == "blas":
                return f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')} threads={p.get('num_threads')}"
    except ImportError:
        pass
    return "unknown (install threadpoolctl to report)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", help="comma-separated shape names (default: all)")
    ap.add_argument("--min-reps", type=int, default=5)
    ap.add_argument("--budget-secs", type=float, default=1.0)
    ap.add_argument("--max-square", type=int, default=4096)
    args = ap.parse_args()
    only = set(args.shapes.split(",")) if args.shapes else None
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"numpy_matmul.py: warning: {var} is set; unset it for the reference run", file=sys.stderr)
    print(f"numpy {np.__version__}, BLAS: {blas_info()}", file=sys.stderr)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    rng = np.random.default_rng(2024)
    for s in shapes():
        if only is not None and s["name"] not in only:
            continue
        if s["name"].startswith("sq") and s["m"] > args.max_square:
            continue
        m, k, n = s["m"], s["k"], s["n"]
        a = operand(rng, s["form"][0], m, k)
        b = operand(rng, s["form"][1], k, n)
        c = np.empty((m, n), dtype=np.float32)

        def run():
            np.matmul(a, b, out=c)

        best, median, reps = time_it(run, args.min_reps, args.budget_secs)
        flops = 2.0 * m * n * k
        print(json.dumps(dict(
            impl="numpy", shape=s["name"], what=s["what"], form=s["form"], m=m, k=k, n=n,
            threads=threads, reps=reps, best_ms=round(best * 1e3, 4), median_ms=round(median * 1e3, 4),
            gflops=round(flops / best / 1e9, 2), gflops_median=round(flops / median / 1e9, 2),
        ), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
