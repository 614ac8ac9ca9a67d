"""Shared timing loop of the JAX anchor scripts (jax_step.py, jax_cnn_step.py).

`time_sgd_steps` jit-compiles one plain-SGD step of `loss` (parameters donated), times the first
call as the compile time, runs `warmup` untimed steps and then `steps` timed ones, cycling through
`batches`, and blocks on the result after each step so a time is the step's, not the dispatch's.
"""
import time

import jax
import numpy as np


def one_hot_minus(n, classes=10):
    """Targets one-hot − 0.1 (0.9 on the class, −0.1 elsewhere), class i mod `classes`."""
    y = np.full((n, classes), -0.1, dtype=np.float32)
    y[np.arange(n), np.arange(n) % classes] = 0.9
    return y


def time_sgd_steps(loss, params, batches, lr, warmup, steps):
    """Returns (per-step milliseconds, compile seconds, last loss)."""

    def step_fn(p, x, y):
        l, g = jax.value_and_grad(loss)(p, x, y)
        return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), l

    step = jax.jit(step_fn, donate_argnums=0)
    t0 = time.perf_counter()
    params, l = step(params, *batches[0])
    jax.block_until_ready(params)
    compile_s = time.perf_counter() - t0
    k = 1
    for _ in range(warmup):
        params, l = step(params, *batches[k % len(batches)])
        k += 1
    jax.block_until_ready(params)
    times = []
    for _ in range(steps):
        x, y = batches[k % len(batches)]
        k += 1
        t = time.perf_counter()
        params, l = step(params, x, y)
        jax.block_until_ready(params)
        times.append((time.perf_counter() - t) * 1e3)
    return times, compile_s, float(l)
