#!/usr/bin/env python3
"""JAX anchor: one plain-SGD training step of the NTK-parameterised ReLU MLP that
`examples/perf_stack.rs mlp` times (784 -> width x depth -> 10, batch 100).

    h^l = (w_std / sqrt(n_{l-1})) a^{l-1} W^l^T + b_std * b^l,  a^l = relu(h^l),  f = h^L
    L = mean over B*C of (f - y)^2,  theta <- theta - lr * grad L

Weights N(0, 1), biases zero (trainable), one-hot-0.1 targets, float32. The whole step
(forward, grad, update) is one jit-compiled function with the parameters donated, timed after
compilation and warm-up with block_until_ready. Prints one JSON line per width.

Threads: run with XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2"
(and taskset -c 0,1); scripts/perf/run_anchors.sh does.
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jax_timing import one_hot_minus, time_sgd_steps


def init(key, dims):
    params = []
    for n_in, n_out in zip(dims[:-1], dims[1:]):
        key, sub = jax.random.split(key)
        w = jax.random.normal(sub, (n_out, n_in), dtype=jnp.float32)
        b = jnp.zeros((n_out,), dtype=jnp.float32)
        params.append((w, b))
    return params


def forward(params, x, w_std=1.0, b_std=0.1):
    a = x
    for i, (w, b) in enumerate(params):
        h = (w_std / np.sqrt(w.shape[1])) * (a @ w.T) + b_std * b
        a = jax.nn.relu(h) if i < len(params) - 1 else h
    return a


def loss(params, x, y):
    return jnp.mean((forward(params, x) - y) ** 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="1024,4096")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n_train = 10 * args.batch
    x_train = rng.standard_normal((n_train, 784), dtype=np.float32)
    y_train = one_hot_minus(n_train)
    batches = [
        (jnp.asarray(x_train[k * args.batch:(k + 1) * args.batch]),
         jnp.asarray(y_train[k * args.batch:(k + 1) * args.batch]))
        for k in range(10)
    ]
    for width in [int(w) for w in args.widths.split(",")]:
        dims = [784] + [width] * args.depth + [10]
        params = init(jax.random.PRNGKey(0), dims)

        times, compile_s, l = time_sgd_steps(loss, params, batches, args.lr, args.warmup, args.steps)
        s = sorted(times)
        print(json.dumps(dict(
            impl="jax", what="mlp_step", rule="bp", width=width, depth=args.depth, batch=args.batch,
            reps=args.steps, best_ms=s[0], median_ms=s[len(s) // 2], all_ms=times,
            compile_s=compile_s, last_loss=l, jax=jax.__version__,
            xla_flags=os.environ.get("XLA_FLAGS", ""),
        )), flush=True)


if __name__ == "__main__":
    main()
