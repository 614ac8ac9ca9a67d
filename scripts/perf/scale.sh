#!/usr/bin/env bash
# Step time and peak memory of MLP training vs width and vs batch size (docs/performance.md §Scale).
#
#   scripts/perf/scale.sh            # widths 256..8192 (depth 2, batch 100), batches 25..800 (width 1024)
#
# Each point is a fresh process (`examples/perf_stack.rs mlp`, plain-SGD backprop, fused and
# unfused) so its peak resident set (VmHWM) is that configuration's own. Threads: 2.
# Prints JSON lines, then a markdown table.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
cargo build --release --quiet -p widealign --example perf_stack
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/release/examples/perf_stack"
OUT="${OUT:-$ROOT/target/perf/scale-$(date +%Y%m%d-%H%M%S).jsonl}"
mkdir -p "$(dirname "$OUT")"
: > "$OUT"
export RAYON_NUM_THREADS=2
for w in 256 512 1024 2048 4096 8192; do
    case $w in 8192) k=3 ;; 4096) k=5 ;; *) k=20 ;; esac
    for f in --fused ""; do
        # shellcheck disable=SC2086
        "$BIN" mlp --width "$w" --depth 2 --batch 100 --rule bp $f --steps "$k" >> "$OUT"
    done
done
for b in 25 50 100 200 400 800; do
    "$BIN" mlp --width 1024 --depth 2 --batch "$b" --rule bp --fused --steps 20 >> "$OUT"
done
python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("| width | batch | fused | step ms (best) | median | peak RSS MB | weights+trace MB | ratio |")
print("|---|---|---|---|---|---|---|---|")
for d in rows:
    dims = [d["input_dim"]] + [d["width"]] * d["depth"] + [d["output_dim"]]
    params = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    trace = d["batch"] * (dims[0] + 2 * sum(dims[1:-1]) + dims[-1])
    bound = 4 * (params + trace) / 1e6
    print(f"| {d['width']} | {d['batch']} | {'yes' if d['fused'] else 'no'} | {d['best_ms']:.1f} | "
          f"{d['median_ms']:.1f} | {d['vm_hwm_kb'] / 1e3:.0f} | {bound:.0f} | {d['vm_hwm_kb'] / 1e3 / bound:.2f} |")
PY
echo "raw: $OUT" >&2
