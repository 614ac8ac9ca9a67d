#!/usr/bin/env bash
# Measure f32 GEMM throughput of nalgebra, matrixmultiply, widealign's gemm wrapper and numpy
# in one run on this machine, and print the markdown table for docs/decisions/gemm.md.
#
#   scripts/perf/gemm_table.sh [ROUNDS] [SHAPES]
#
#   ROUNDS  rounds per shape (default 5); SHAPES  comma-separated names (default all:
#           sq256,sq512,sq1024,sq2048,sq4096,fwd784,grad784,bwd784,fwd1024,grad1024,bwd1024)
#
# The machine may be shared, so the implementations are interleaved: for each shape, each round
# runs every implementation once (warm-up, then >= 5 timed calls, or 2 for sq4096). The table
# keeps each cell's best round, and shows the spread between the best and the worst round as
# the noise. Before each round the script waits (up to $MAX_WAIT s, default 10) until the
# CPUs are less than $IDLE_BUSY_PCT % busy (default 10) over a 2 s sample, and records the busy
# share. On a machine that other jobs keep busy, the measured processes run at the highest
# scheduling priority ($NICE, default -20, when allowed, i.e. as root), so that competing jobs
# take little CPU from them for the few minutes of the run; set NICE=0 to disable. With Linux
# autogroup scheduling (each session is one group) a process nice value only ranks it within
# its session, so the script moves itself into a new session (setsid) and sets that
# autogroup's nice value too. Raw JSON lines go to $OUT_DIR (default target/perf/gemm-<timestamp>/raw.jsonl), the
# table to stdout and $OUT_DIR/table.md.
#
# Configurations measured (threads as named in the table):
#   nalgebra        MATMUL_NUM_THREADS=1 (the library builds matrixmultiply without threading)
#   matrixmultiply  MATMUL_NUM_THREADS=2 (threading feature)
#   widealign       RAYON_NUM_THREADS=1 and =2
#   numpy           OPENBLAS_NUM_THREADS=2, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset
#
# numpy comes from pip into a venv OUTSIDE the repository ($VENV, default /tmp/venv-perf),
# created on first use; it is only the reference, nothing in the build depends on it.
set -euo pipefail

NICE="${NICE:--20}"
if [ "$NICE" != 0 ] && [ -z "${GEMM_TABLE_SESSION:-}" ] && command -v setsid > /dev/null; then
    GEMM_TABLE_SESSION=1 exec setsid --wait "$0" "$@"
fi

ROUNDS="${1:-5}"
SHAPES="${2:-sq256,sq512,sq1024,sq2048,sq4096,fwd784,grad784,bwd784,fwd1024,grad1024,bwd1024}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${VENV:-/tmp/venv-perf}"
OUT_DIR="${OUT_DIR:-$ROOT/target/perf/gemm-$(date +%Y%m%d-%H%M%S)}"
MAX_WAIT="${MAX_WAIT:-10}"
IDLE_BUSY_PCT="${IDLE_BUSY_PCT:-10}"
mkdir -p "$OUT_DIR"
RAW="$OUT_DIR/raw.jsonl"
: > "$RAW"

# Percentage of all CPUs busy over a 2 s sample, from /proc/stat.
busy_pct() {
    local a b total=0 idle i
    read -r -a a < <(grep '^cpu ' /proc/stat)
    sleep 2
    read -r -a b < <(grep '^cpu ' /proc/stat)
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    echo $((total > 0 ? 100 * (total - idle) / total : 0))
}

wait_idle() {
    local waited=0 busy
    busy="$(busy_pct)"
    while [ "$busy" -ge "$IDLE_BUSY_PCT" ] && [ "$waited" -lt "$MAX_WAIT" ]; do
        sleep 3
        waited=$((waited + 5))
        busy="$(busy_pct)"
    done
    echo "$waited $busy"
}

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet numpy threadpoolctl
fi

cd "$ROOT"
cargo build --release --quiet -p widealign-tensor --example gemm_compare
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/examples/gemm_compare"
PY="$VENV/bin/python"
if [ "$NICE" != 0 ] && nice -n "$NICE" true 2>/dev/null; then
    PRIO=(nice -n "$NICE")
    if [ -n "${GEMM_TABLE_SESSION:-}" ] && [ -w /proc/self/autogroup ]; then
        echo "$NICE" > /proc/self/autogroup 2>/dev/null || true
    fi
else
    NICE=0
    PRIO=()
fi

{
    echo "# machine: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) CPUs), $(date -u +%FT%TZ)"
    echo "# rustc: $(rustc --version); measured at nice $NICE ($(cat /proc/self/autogroup 2>/dev/null || echo no autogroup))"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 "$PY" -c '
import numpy, threadpoolctl
for p in threadpoolctl.threadpool_info():
    if p.get("user_api") == "blas":
        print("# numpy", numpy.__version__, "BLAS:", p["internal_api"], p["version"], p["architecture"])'
} | tee -a "$RAW" >&2

IFS=',' read -r -a SHAPE_LIST <<< "$SHAPES"
for shape in "${SHAPE_LIST[@]}"; do
    case "$shape" in
        sq4096) flags=(--shapes "$shape" --min-reps 2 --budget-secs 0) ;;
        sq2048) flags=(--shapes "$shape" --min-reps 5 --budget-secs 0) ;;
        *) flags=(--shapes "$shape" --min-reps 5 --budget-secs 0.5) ;;
    esac
    for r in $(seq 1 "$ROUNDS"); do
        read -r waited busy < <(wait_idle)
        echo "# $shape round $r/$ROUNDS: waited ${waited}s, CPUs ${busy}% busy before" | tee -a "$RAW" >&2
        MATMUL_NUM_THREADS=1 "${PRIO[@]}" "$BIN" --impls nalgebra "${flags[@]}" >> "$RAW"
        MATMUL_NUM_THREADS=2 "${PRIO[@]}" "$BIN" --impls matrixmultiply "${flags[@]}" >> "$RAW"
        RAYON_NUM_THREADS=1 "${PRIO[@]}" "$BIN" --impls widealign "${flags[@]}" >> "$RAW"
        RAYON_NUM_THREADS=2 "${PRIO[@]}" "$BIN" --impls widealign "${flags[@]}" >> "$RAW"
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 \
            "${PRIO[@]}" "$PY" scripts/perf/numpy_matmul.py "${flags[@]}" >> "$RAW" 2>/dev/null
    done
done
echo "# done $(date -u +%FT%TZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2

python3 scripts/perf/assemble_gemm_table.py "$RAW" | tee "$OUT_DIR/table.md"
echo "raw measurements: $RAW" >&2
