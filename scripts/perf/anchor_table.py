#!/usr/bin/env python3
"""Ratio table of scripts/perf/run_anchors.sh: reads its raw.jsonl, keeps each cell's best round
(min over rounds of the per-run best time), prints the markdown table with the issue-8 targets."""

import json
import sys
from collections import defaultdict


def key(d):
    w = d.get("what")
    if w == "mlp_step":
        tag = d["rule"] + ("-fused" if d.get("fused") else "") + ("" if d.get("cache", True) else "-nocache")
        return (w, d["impl"], tag, d["width"])
    if w == "rnn_step":
        return (w, d["impl"], d["rule"], d["width"])
    if w == "gemm":
        return ("gemm", d["impl"], "", d.get("n", d.get("m")))
    if w == "ntk_analytic":
        return (w, d["impl"], "", d["n"])
    return None


def main():
    best = defaultdict(list)
    memory = []
    for line in open(sys.argv[1]):
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if d.get("what") == "memory":
            memory.append(d)
            continue
        if d.get("impl") == "numpy":
            d = dict(d, what="gemm", n=d["m"])
        k = key(d)
        if k:
            best[k].append(d["best_ms"])

    def t(k):
        v = best.get(k)
        return min(v) if v else float("nan")

    def spread(k):
        v = best.get(k)
        return (max(v) / min(v) - 1) * 100 if v and min(v) > 0 else float("nan")

    rows = []

    def row(name, ours, theirs, target, better="lower"):
        a, b = t(ours), t(theirs)
        ratio = a / b if better == "lower" else b / a
        ok = ratio <= target if better == "lower" else ratio >= target
        rows.append(f"| {name} | {a:.2f} (±{spread(ours):.0f} %) | {b:.2f} (±{spread(theirs):.0f} %) | "
                    f"{ratio:.2f} | {'≤' if better == 'lower' else '≥'} {target} | {'met' if ok else 'MISSED'} |")

    print("| comparison | ours, ms (spread) | reference, ms (spread) | ratio | target | |")
    print("|---|---|---|---|---|---|")
    for w in (1024, 4096):
        row(f"bp step vs JAX, width {w}", ("mlp_step", "widealign", "bp", w), ("mlp_step", "jax", "bp", w), 1.0)
        row(f"bp step, fused SGD, vs JAX, width {w}", ("mlp_step", "widealign", "bp-fused", w), ("mlp_step", "jax", "bp", w), 1.0)
        for rule in ("align-ada", "align-zero"):
            row(f"{rule} vs bp step, width {w}", ("mlp_step", "widealign", rule, w), ("mlp_step", "widealign", "bp", w), 1.3)
            row(f"{rule} (no frozen-trace cache) vs bp step, width {w}", ("mlp_step", "widealign", rule + "-nocache", w), ("mlp_step", "widealign", "bp", w), 1.3)
    row("RNN bp step vs JAX (width 1024, T 100, B 50)", ("rnn_step", "widealign", "bp", 1024), ("rnn_step", "jax", "bp", 1024), 1.0)
    a, b = t(("gemm", "widealign", "", 1024)), t(("gemm", "numpy", "", 1024))
    ratio = b / a
    rows.append(f"| GEMM n=1024 throughput vs numpy | {a:.2f} (±{spread(('gemm', 'widealign', '', 1024)):.0f} %) | "
                f"{b:.2f} (±{spread(('gemm', 'numpy', '', 1024)):.0f} %) | {ratio:.2f} | ≥ 0.7 | {'met' if ratio >= 0.7 else 'MISSED'} |")
    print("\n".join(rows))
    a, b = t(("ntk_analytic", "widealign", "", 5000)), t(("ntk_analytic", "neural-tangents", "", 5000))
    print(f"| analytic NTK N=5000 depth 3 vs neural-tangents | {a:.0f} | {b:.0f} | {a / b:.2f} | ≤ 0.5 | {'met' if a / b <= 0.5 else 'MISSED'} |")
    for m in memory:
        print(f"| peak memory width 8192 depth 3, {'fused' if m['fused'] else 'unfused'} SGD | "
              f"{m['vm_hwm_kb'] / 1e3:.0f} MB | bound {m['lower_bound_kb'] / 1e3:.0f} MB | "
              f"{m['ratio_hwm_to_bound']:.2f} | ≤ 1.2 | {'met' if m['ratio_hwm_to_bound'] <= 1.2 else 'MISSED'} |")


if __name__ == "__main__":
    main()
