#!/usr/bin/env bash
# Measure f32 GEMM throughput of nalgebra, matrixmultiply, widealign's gemm wrapper and numpy
# in one run on this machine, and print the markdown table for docs/decisions/gemm.md.
#
#   scripts/perf/gemm_table.sh [ROUNDS] [extra gemm_compare/numpy flags, e.g. --max-square 2048]
#
# ROUNDS (default 3) repeats the whole comparison; the table keeps each cell's best round, and
# shows the round-to-round spread as the noise. Raw JSON lines go to $OUT_DIR (default
# target/perf/gemm-<timestamp>/raw.jsonl), the table to stdout and $OUT_DIR/table.md.
#
# numpy comes from pip into a venv OUTSIDE the repository ($VENV, default /tmp/venv-perf),
# created on first use; it is only the reference, nothing in the build depends on it.
set -euo pipefail

ROUNDS="${1:-3}"
shift || true
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${VENV:-/tmp/venv-perf}"
OUT_DIR="${OUT_DIR:-$ROOT/target/perf/gemm-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT_DIR"
RAW="$OUT_DIR/raw.jsonl"
: > "$RAW"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet numpy threadpoolctl
fi

cd "$ROOT"
cargo build --release --quiet -p widealign-tensor --example gemm_compare
BIN="$(cargo metadata --format-version 1 --no-deps | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/gemm_compare"

{
    echo "# machine: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) CPUs)"
    echo "# rustc: $(rustc --version)"
    echo "# numpy: $("$VENV/bin/python" -c 'import numpy; print(numpy.__version__)')"
} | tee -a "$RAW" >&2

for r in $(seq 1 "$ROUNDS"); do
    echo "# round $r/$ROUNDS, load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2
    # nalgebra as the library builds it (matrixmultiply without threading = 1 thread).
    MATMUL_NUM_THREADS=1 "$BIN" --impls nalgebra "$@" >> "$RAW"
    MATMUL_NUM_THREADS=2 "$BIN" --impls matrixmultiply "$@" >> "$RAW"
    RAYON_NUM_THREADS=1 "$BIN" --impls widealign "$@" >> "$RAW"
    RAYON_NUM_THREADS=2 "$BIN" --impls widealign "$@" >> "$RAW"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 \
        "$VENV/bin/python" scripts/perf/numpy_matmul.py "$@" >> "$RAW" 2> >(sed 's/^/# /' | tee -a "$RAW" >&2)
done
echo "# done, load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$RAW" >&2

python3 scripts/perf/assemble_gemm_table.py "$RAW" | tee "$OUT_DIR/table.md"
echo "raw measurements: $RAW" >&2
