#!/usr/bin/env python3
"""neural-tangents anchor: the analytic NNGP and NTK of a ReLU MLP (stax Dense/Relu, `depth`
hidden layers, NTK parameterisation, W_std 1, b_std 0.1) on N Gaussian inputs of dimension 784
with themselves, as `examples/perf_stack.rs ntk` computes them.

Timed after a warm-up call on the same shapes (so jit compilation is excluded), with
block_until_ready. neural-tangents computes in float32 by default (JAX's default); pass --x64 for
float64 (what widealign uses). Prints one JSON line.
Threads: XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2".
"""

import argparse
import json
import os
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--input-dim", type=int, default=784)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--x64", action="store_true")
    args = ap.parse_args()
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from neural_tangents import stax

    layers = []
    for _ in range(args.depth):
        layers += [stax.Dense(1024, W_std=1.0, b_std=0.1, parameterization="ntk"), stax.Relu()]
    layers += [stax.Dense(1, W_std=1.0, b_std=0.1, parameterization="ntk")]
    _, _, kernel_fn = stax.serial(*layers)
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    dtype = np.float64 if args.x64 else np.float32
    x = jnp.asarray(np.random.default_rng(0).standard_normal((args.n, args.input_dim)).astype(dtype))
    t0 = time.perf_counter()
    k = kernel_fn(x, None, get=("nngp", "ntk"))
    jax.block_until_ready(k)
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        k = kernel_fn(x, None, get=("nngp", "ntk"))
        jax.block_until_ready(k)
        times.append((time.perf_counter() - t) * 1e3)
    s = sorted(times)
    import neural_tangents

    print(json.dumps(dict(
        impl="neural-tangents", what="ntk_analytic", n=args.n, input_dim=args.input_dim,
        depth=args.depth, dtype=str(np.dtype(dtype)), reps=args.reps, best_ms=s[0],
        median_ms=s[len(s) // 2], all_ms=times, warmup_s=warm_s, ntk01=float(k.ntk[0, 1]),
        nt=neural_tangents.__version__, jax=jax.__version__,
        xla_flags=os.environ.get("XLA_FLAGS", ""),
    )), flush=True)


if __name__ == "__main__":
    main()
