#!/usr/bin/env bash
# widealign against the tools researchers would otherwise use, in one interleaved run on this
# machine, and the ratios of issue 8 (docs/performance.md).
#
#   scripts/perf/run_anchors.sh [ROUNDS]        (default 3 rounds, about 2 minutes each)
#
# Each round runs, back to back, for every pair: our side, then the anchor.
#   MLP step, 784-1024-1024-10 and 784-4096-4096-10, batch 100, plain SGD, MSE mean over B*C:
#       widealign bp / bp fused / align-ada / align-zero   vs   JAX (jit, donated params)
#   RNN BPTT step, ReLU Elman, width 1024, T = 100, batch 50:   widealign bp   vs   JAX lax.scan
#   GEMM n = 1024 f32:                                          widealign      vs   numpy (OpenBLAS)
#   analytic NNGP+NTK, N = 5000, depth 3, relu:                 widealign (f64) vs  neural-tangents (f32 and f64)
# and, once, the peak memory of width-8192 depth-3 training (fused and unfused SGD).
#
# Threads: both sides get the machine's 2 CPUs and 2 threads: `taskset -c 0,1` for everything,
# RAYON_NUM_THREADS=2 (widealign), XLA_FLAGS="--xla_cpu_multi_thread_eigen=true
# intra_op_parallelism_threads=2" (JAX, neural-tangents), OPENBLAS_NUM_THREADS=2 with
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (numpy).
# Each cell keeps its best round (the machine is shared; the spread is printed as the noise).
#
# Python lives OUTSIDE the repository, created on first use:
#   $VENV    (default /tmp/venv-perf): jax[cpu] (latest), numpy, threadpoolctl
#   $NT_VENV (default /tmp/venv-nt):   jax[cpu]==0.4.35 + neural-tangents==0.6.5 (neural-tangents
#            0.6.5 does not import with current JAX)
# Raw JSON lines: $OUT_DIR (default target/perf/anchors-<timestamp>/raw.jsonl); table on stdout.
set -euo pipefail

ROUNDS="${1:-3}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${VENV:-/tmp/venv-perf}"
NT_VENV="${NT_VENV:-/tmp/venv-nt}"
OUT_DIR="${OUT_DIR:-$ROOT/target/perf/anchors-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT_DIR"
RAW="$OUT_DIR/raw.jsonl"
: > "$RAW"

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import jax, numpy' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "jax[cpu]" numpy threadpoolctl
fi
if [ ! -x "$NT_VENV/bin/python" ] || ! "$NT_VENV/bin/python" -c 'import neural_tangents' 2>/dev/null; then
    python3 -m venv "$NT_VENV"
    "$NT_VENV/bin/pip" install --quiet "jax[cpu]==0.4.35" "neural-tangents==0.6.5"
fi

cd "$ROOT"
cargo build --release --quiet -p widealign --example perf_stack
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/examples/perf_stack"

XLA="--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2"
rs() { RAYON_NUM_THREADS=2 taskset -c 0,1 "$BIN" "$@" >> "$RAW"; }
jx() { XLA_FLAGS="$XLA" TF_CPP_MIN_LOG_LEVEL=3 taskset -c 0,1 "$VENV/bin/python" "$@" >> "$RAW" 2>/dev/null; }
nt() { XLA_FLAGS="$XLA" TF_CPP_MIN_LOG_LEVEL=3 taskset -c 0,1 "$NT_VENV/bin/python" "$@" >> "$RAW" 2>/dev/null; }
np() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 taskset -c 0,1 \
    "$VENV/bin/python" "$@" >> "$RAW" 2>/dev/null; }

{
    echo "# machine: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) CPUs), $(date -u +%FT%TZ)"
    echo "# rustc: $(rustc --version); jax: $("$VENV/bin/python" -c 'import jax; print(jax.__version__)')"
    echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$RAW" >&2

for r in $(seq 1 "$ROUNDS"); do
    echo "# round $r/$ROUNDS $(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$RAW" >&2
    for w in 1024 4096; do
        if [ "$w" = 1024 ]; then k=100; else k=8; fi
        rs mlp --width "$w" --depth 2 --batch 100 --rule bp --steps "$k"
        jx scripts/perf/jax_step.py --widths "$w" --depth 2 --batch 100 --steps "$k"
        rs mlp --width "$w" --depth 2 --batch 100 --rule bp --fused --steps "$k"
        rs mlp --width "$w" --depth 2 --batch 100 --rule align-ada --steps "$k"
        rs mlp --width "$w" --depth 2 --batch 100 --rule align-zero --steps "$k"
        rs mlp --width "$w" --depth 2 --batch 100 --rule align-ada --no-cache --steps "$k"
        rs mlp --width "$w" --depth 2 --batch 100 --rule align-zero --no-cache --steps "$k"
    done
    rs rnn --width 1024 --seq-len 100 --batch 50 --steps 4
    jx scripts/perf/jax_rnn.py --width 1024 --seq-len 100 --batch 50 --steps 4
    rs gemm --n 1024 --steps 30
    np scripts/perf/numpy_matmul.py --shapes sq1024 --min-reps 30 --budget-secs 0.5
    rs ntk --n 5000 --depth 3 --steps 2
    nt scripts/perf/nt_kernel.py --n 5000 --depth 3 --reps 2
    nt scripts/perf/nt_kernel.py --n 5000 --depth 3 --reps 2 --x64
done
echo "# memory $(date -u +%T)" | tee -a "$RAW" >&2
"$BIN" memory --width 8192 --depth 3 --batch 100 --steps 2 >> "$RAW"
"$BIN" memory --width 8192 --depth 3 --batch 100 --steps 2 --unfused >> "$RAW"
echo "# done $(date -u +%FT%TZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2

python3 scripts/perf/anchor_table.py "$RAW" | tee "$OUT_DIR/table.md"
echo "raw measurements: $RAW" >&2
