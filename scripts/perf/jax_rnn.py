#!/usr/bin/env python3
"""JAX anchor: one plain-SGD backprop-through-time step of the ReLU Elman RNN that
`examples/perf_stack.rs rnn` times (input 1, width N, output 1, T = 100, batch 50, the Add task).

    H_t = (1/sqrt(n_in)) X_t W_in^T + (1/sqrt(N)) R_{t-1} W_rec^T + 0.1 b,   R_t = relu(H_t)
    Y_t = (1/sqrt(N)) R_t W_out^T + 0.1 b_out,   R_0 = r0 (trainable, zero at init)
    L = sum_t mean over B*C of (Y_t - y_t)^2,   theta <- theta - lr * grad L

The recurrence is a jax.lax.scan; forward, grad and update are one jit-compiled function with
the parameters donated, timed after compilation and warm-up (block_until_ready).
Threads: XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2".
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.001)
    args = ap.parse_args()
    n, t_len, b = args.width, args.seq_len, args.batch
    rng = np.random.default_rng(0)
    bits = (rng.random((t_len, b)) < 0.5).astype(np.float32)
    tgt = np.zeros((t_len, b), dtype=np.float32)
    for t in range(t_len):
        tgt[t] = 0.5 + 0.5 * (bits[t - 2] if t >= 2 else 0) - 0.25 * (bits[t - 5] if t >= 5 else 0)
    xs = jnp.asarray(bits[:, :, None])  # T x B x 1
    ys = jnp.asarray(tgt[:, :, None])
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    params = dict(
        w_in=jax.random.normal(k[0], (n, 1), jnp.float32),
        w_rec=jax.random.normal(k[1], (n, n), jnp.float32),
        b=jnp.zeros((n,), jnp.float32),
        w_out=jax.random.normal(k[2], (1, n), jnp.float32),
        b_out=jnp.zeros((1,), jnp.float32),
        r0=jnp.zeros((n,), jnp.float32),
    )
    m_in, m_rec, m_out, s_b = 1.0, 1.0 / np.sqrt(n), 1.0 / np.sqrt(n), 0.1

    def loss(p, xs, ys):
        def cell(r, x):
            h = m_in * (x @ p["w_in"].T) + m_rec * (r @ p["w_rec"].T) + s_b * p["b"]
            r = jax.nn.relu(h)
            return r, m_out * (r @ p["w_out"].T) + s_b * p["b_out"]

        r0 = jnp.broadcast_to(p["r0"], (xs.shape[1], n))
        _, out = jax.lax.scan(cell, r0, xs)
        return jnp.sum(jnp.mean((out - ys) ** 2, axis=(1, 2)))

    def step_fn(p, xs, ys):
        l, g = jax.value_and_grad(loss)(p, xs, ys)
        return jax.tree_util.tree_map(lambda a, d: a - args.lr * d, p, g), l

    step = jax.jit(step_fn, donate_argnums=0)
    t0 = time.perf_counter()
    params, l = step(params, xs, ys)
    jax.block_until_ready(params)
    compile_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        params, l = step(params, xs, ys)
    jax.block_until_ready(params)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        params, l = step(params, xs, ys)
        jax.block_until_ready(params)
        times.append((time.perf_counter() - t) * 1e3)
    s = sorted(times)
    print(json.dumps(dict(
        impl="jax", what="rnn_step", rule="bp", width=n, seq_len=t_len, batch=b, reps=args.steps,
        best_ms=s[0], median_ms=s[len(s) // 2], all_ms=times, compile_s=compile_s,
        last_loss=float(l), jax=jax.__version__, xla_flags=os.environ.get("XLA_FLAGS", ""),
    )), flush=True)


if __name__ == "__main__":
    main()
