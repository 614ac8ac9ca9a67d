#!/usr/bin/env bash
# The CNN step of issue 14 against JAX, side by side on this machine (docs/performance.md):
#
#   scripts/perf/cnn_anchor.sh [ROUNDS] [PERF_STACK_BINARY]     (default 3 rounds)
#
# Each round runs, back to back: widealign bp, align-zero and align-ada steps (28×28×1 images,
# 3 convolutions of 64 channels, 3×3, SAME, GAP, ReLU, NTK parameterisation, batch 100, plain
# SGD; align rules with and without the frozen-trace cache over the 1,000 training images), then
# the same network's bp step jit-compiled in JAX (scripts/perf/jax_cnn_step.py). Both sides get
# `taskset -c 0,1` and 2 threads (RAYON_NUM_THREADS=2; XLA_FLAGS as in run_anchors.sh).
# Run it under the exclusive lock: flock -x /tmp/widealign-cpu.lock scripts/perf/cnn_anchor.sh
# Raw JSON lines on stdout; the summary (best round per cell and the ratios) on stderr.
set -euo pipefail
ROUNDS="${1:-3}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${2:-}"
if [ -z "$BIN" ]; then
    (cd "$ROOT" && cargo build --release --quiet -p widealign --example perf_stack)
    BIN="$ROOT/target/release/examples/perf_stack"
fi
NT_VENV="${NT_VENV:-/tmp/venv-nt}"
RAW="$(mktemp)"
for round in $(seq "$ROUNDS"); do
    for args in "--rule bp" "--rule align-zero" "--rule align-ada" \
                "--rule align-zero --no-cache" "--rule align-ada --no-cache"; do
        # shellcheck disable=SC2086
        RAYON_NUM_THREADS=2 taskset -c 0,1 "$BIN" cnn --steps 8 $args | tee -a "$RAW"
    done
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2" \
        taskset -c 0,1 "$NT_VENV/bin/python" "$ROOT/scripts/perf/jax_cnn_step.py" --steps 8 |
        tee -a "$RAW"
done
python3 - "$RAW" <<'PY' >&2
import json, sys
best = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    key = d["impl"] + " " + d["rule"] + ("" if d["impl"] == "jax" or d.get("cache_bytes") else " (no cache)")
    best[key] = min(best.get(key, float("inf")), d["median_ms"])
for k, v in best.items():
    print(f"{k:32s} {v:8.1f} ms (best round's median)")
bp, jax = best["widealign bp (no cache)"], best["jax bp"]
print(f"bp / jax = {bp / jax:.2f}")
for k, v in best.items():
    if "align" in k:
        print(f"{k} / bp = {v / bp:.2f}")
PY
