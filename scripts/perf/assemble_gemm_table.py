#!/usr/bin/env python3
"""Assemble the GEMM comparison table from the JSON lines written by gemm_compare and
numpy_matmul.py (see scripts/perf/gemm_table.sh).

Each (implementation, threads, shape) may occur several times (one per round); the table shows
the best GFLOPS over all rounds, and the noise as the spread between the best and the worst
round's best. Standard library only.

    python3 scripts/perf/assemble_gemm_table.py raw.jsonl > table.md
"""

import json
import sys
from collections import OrderedDict, defaultdict

SHAPE_ORDER = ["sq256", "sq512", "sq1024", "sq2048", "sq4096",
               "fwd784", "grad784", "bwd784", "fwd1024", "grad1024", "bwd1024"]
COLUMNS = [  # (impl, threads, header)
    ("nalgebra", "1", "nalgebra `mul_to` (1 thread)"),
    ("matrixmultiply", "2", "matrixmultiply `sgemm` (threading, 2)"),
    ("widealign", "1", "widealign `gemm` (1 thread)"),
    ("widealign", "2", "widealign `gemm` (2 threads)"),
    ("numpy", "2", "numpy `a @ b` (OpenBLAS, 2)"),
]
OURS = ("widealign", "2")
REF = ("numpy", "2")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "-"
    lines = sys.stdin if path == "-" else open(path, encoding="utf-8")
    best = defaultdict(list)  # (impl, threads, shape) -> [gflops per round]
    info = OrderedDict()
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        best[(r["impl"], str(r["threads"]), r["shape"])].append(float(r["gflops"]))
        info.setdefault(r["shape"], r)
    cols = [c for c in COLUMNS if any((c[0], c[1], s) in best for s in info)]
    shapes = [s for s in SHAPE_ORDER if s in info] + [s for s in info if s not in SHAPE_ORDER]
    head = ["shape", "op", "m×k×n"] + [c[2] for c in cols] + ["ours / numpy", "noise ours / numpy"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in shapes:
        r = info[s]
        row = [s, f"{r['what']} ({r['form']})", f"{r['m']}×{r['k']}×{r['n']}"]
        for c in cols:
            v = best.get((c[0], c[1], s))
            row.append(f"{max(v):.1f}" if v else "–")
        ours, ref = best.get(OURS + (s,)), best.get(REF + (s,))
        row.append(f"**{max(ours) / max(ref):.2f}**" if ours and ref else "–")

        def spread(v):
            return f"{100 * (max(v) / min(v) - 1):.0f}%" if v and len(v) > 1 else "–"

        row.append(f"{spread(ours)} / {spread(ref)}")
        print("| " + " | ".join(row) + " |")
    rounds = max((len(v) for v in best.values()), default=0)
    print()
    print(f"GFLOPS = 2·m·n·k / best time, f32, best over {rounds} round(s) of (warm-up, then ≥5 timed calls, 2 for sq4096; "
          "best call kept); noise = how much the best round beat the worst round.")


if __name__ == "__main__":
    main()
