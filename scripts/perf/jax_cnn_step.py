#!/usr/bin/env python3
"""JAX anchor: one plain-SGD training step of the NTK-parameterised ReLU CNN that
`examples/perf_stack.rs cnn` times (28x28x1 images, L conv layers of C channels, k x k kernels,
stride 1, SAME padding, no normalisation, global average pooling, dense readout to 10 outputs;
batch 100).

    h^1 = (w_std / sqrt(k*k*C_0)) conv(x, K^1) + b_std * b^1,   a^l = relu(h^l)
    h^l = (w_std / sqrt(k*k*C_{l-1})) conv(a^{l-1}, K^l) + b_std * b^l
    f   = (w_std / sqrt(C_L)) mean_{pixels}(a^L) W^T + b_std * b_out
    L   = mean over B*10 of (f - y)^2,   theta <- theta - lr * grad L

Weights N(0, 1) (HWIO kernels), biases zero (trainable), one-hot-0.1 targets, float32, NHWC.
The whole step (forward, grad, update) is one jit-compiled function with the parameters donated,
timed after compilation and warm-up with block_until_ready. Prints one JSON line per channel count.

Threads: run with XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2"
and taskset -c 0,1 (scripts/perf/cnn_anchor.sh does).
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from jax_timing import one_hot_minus, time_sgd_steps


def init(key, c_in, channels, layers, k, classes):
    params = []
    for _ in range(layers):
        key, sub = jax.random.split(key)
        params.append((jax.random.normal(sub, (k, k, c_in, channels), dtype=jnp.float32),
                       jnp.zeros((channels,), dtype=jnp.float32)))
        c_in = channels
    key, sub = jax.random.split(key)
    params.append((jax.random.normal(sub, (classes, c_in), dtype=jnp.float32),
                   jnp.zeros((classes,), dtype=jnp.float32)))
    return params


def forward(params, x, w_std=1.0, b_std=0.1):
    a = x
    for kern, b in params[:-1]:
        k, _, c_in, _ = kern.shape
        h = jax.lax.conv_general_dilated(a, kern, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        a = jax.nn.relu((w_std / np.sqrt(k * k * c_in)) * h + b_std * b)
    g = jnp.mean(a, axis=(1, 2))
    w, b = params[-1]
    return (w_std / np.sqrt(w.shape[1])) * (g @ w.T) + b_std * b


def loss(params, x, y):
    return jnp.mean((forward(params, x) - y) ** 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", default="64")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n_train = 4 * args.batch
    x_train = rng.random((n_train, 28, 28, 1), dtype=np.float32)
    y_train = one_hot_minus(n_train)
    batches = [
        (jnp.asarray(x_train[j * args.batch:(j + 1) * args.batch]),
         jnp.asarray(y_train[j * args.batch:(j + 1) * args.batch]))
        for j in range(4)
    ]
    for channels in [int(c) for c in args.channels.split(",")]:
        params = init(jax.random.PRNGKey(0), 1, channels, args.layers, args.kernel, 10)

        times, compile_s, l = time_sgd_steps(loss, params, batches, args.lr, args.warmup, args.steps)
        s = sorted(times)
        print(json.dumps(dict(
            impl="jax", what="cnn_step", rule="bp", channels=channels, layers=args.layers,
            kernel=args.kernel, batch=args.batch, reps=args.steps, best_ms=s[0],
            median_ms=s[len(s) // 2], all_ms=times, compile_s=compile_s, last_loss=l,
            jax=jax.__version__, xla_flags=os.environ.get("XLA_FLAGS", ""),
        )), flush=True)


if __name__ == "__main__":
    main()
