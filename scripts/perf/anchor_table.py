#!/usr/bin/env python3
"""Ratio table of scripts/perf/run_anchors.sh from its raw.jsonl.

The machine is shared, so each comparison is *paired within a round*: both sides ran back to
back, and the round's ratio uses each run's median step time. The table gives the median of the
per-round ratios (the result) and their range over rounds, plus each side's best time over all
rounds for scale."""

import json
import statistics
import sys


def key(d):
    w = d.get("what")
    if d.get("impl") == "numpy":
        return ("gemm", "numpy")
    if w == "mlp_step":
        tag = d["rule"] + ("-fused" if d.get("fused") else "") + ("" if d.get("cache", True) else "-nocache")
        return (w, d["impl"], tag, d["width"])
    if w == "ntk_analytic" and d["impl"] == "neural-tangents":
        return (w, d["impl"], d.get("dtype", "float32"))
    if w in ("rnn_step", "gemm", "ntk_analytic"):
        return (w, d["impl"])
    return None


def main():
    rounds, memory, cur = [], [], None
    for line in open(sys.argv[1]):
        if line.startswith("# round"):
            cur = {}
            rounds.append(cur)
            continue
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if d.get("what") == "memory":
            memory.append(d)
            continue
        k = key(d)
        if k and cur is not None:
            cur[k] = (d["best_ms"], d.get("median_ms", d["best_ms"]))

    rows = []

    def row(name, ours, ref, target, higher_is_better=False):
        rs = []
        for r in rounds:
            if ours in r and ref in r:
                a, b = r[ours][1], r[ref][1]
                rs.append(b / a if higher_is_better else a / b)
        if not rs:
            return
        med = statistics.median(rs)
        best_a = min(r[ours][0] for r in rounds if ours in r)
        best_b = min(r[ref][0] for r in rounds if ref in r)
        ok = med >= target if higher_is_better else med <= target
        rows.append(f"| {name} | {best_a:.1f} | {best_b:.1f} | **{med:.2f}** ({min(rs):.2f}–{max(rs):.2f}) | "
                    f"{'≥' if higher_is_better else '≤'} {target} | {'met' if ok else 'MISSED'} |")

    for w in (1024, 4096):
        row(f"bp step (rule.update + SGD) vs JAX, width {w}", ("mlp_step", "widealign", "bp", w), ("mlp_step", "jax", "bp", w), 1.0)
        row(f"bp step, fused SGD (what `train` runs) vs JAX, width {w}", ("mlp_step", "widealign", "bp-fused", w), ("mlp_step", "jax", "bp", w), 1.0)
        for rule in ("align-ada", "align-zero"):
            row(f"{rule} vs bp step, width {w}", ("mlp_step", "widealign", rule, w), ("mlp_step", "widealign", "bp", w), 1.3)
            row(f"{rule} without frozen-trace cache vs bp step, width {w}", ("mlp_step", "widealign", rule + "-nocache", w), ("mlp_step", "widealign", "bp", w), 1.3)
    row("RNN bp step vs JAX lax.scan (width 1024, T 100, B 50)", ("rnn_step", "widealign"), ("rnn_step", "jax"), 1.0)
    row("GEMM n = 1024 f32, throughput vs numpy", ("gemm", "widealign"), ("gemm", "numpy"), 0.7, higher_is_better=True)
    row("analytic NNGP+NTK N = 5000, depth 3 (ours f64) vs neural-tangents float32 (its default)", ("ntk_analytic", "widealign"), ("ntk_analytic", "neural-tangents", "float32"), 0.5)
    row("analytic NNGP+NTK N = 5000, depth 3 (ours f64) vs neural-tangents float64", ("ntk_analytic", "widealign"), ("ntk_analytic", "neural-tangents", "float64"), 0.5)
    print(f"| comparison ({len(rounds)} rounds) | ours, best ms | reference, best ms | ratio: median of paired rounds (range) | target | |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    for m in memory:
        r = m["ratio_hwm_to_bound"]
        print(f"| peak memory, width 8192 depth 3, {'fused' if m['fused'] else 'unfused (gradients stored)'} SGD | "
              f"{m['vm_hwm_kb'] / 1e3:.0f} MB | weights + trace {m['lower_bound_kb'] / 1e3:.0f} MB | **{r:.2f}** | ≤ 1.2 | "
              f"{'met' if r <= 1.2 else 'MISSED'} |")


if __name__ == "__main__":
    main()
