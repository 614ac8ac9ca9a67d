#!/usr/bin/env python3
"""Mean ± 95% t-interval half-width per cell of a results.jsonl (a sweep's or a reproduction's).

A cell is a run's config without its seed; the interval is x̄ ± t(0.975, n−1)·s/√n over the
cell's runs that did not diverge (the same rule as widealign_experiments::stats). Prints one
markdown row per cell: the settings that vary between cells, n, the metric's interval, and the
diverged count.

    scripts/repro/cell_intervals.py results.jsonl [--metric test_accuracy|best_test_loss] [--digits 4]
"""
import argparse
import json
import math
import sys
from collections import OrderedDict

# 97.5% quantiles of Student's t, nu = 1..30 (crates/experiments/src/stats.rs)
T975 = [12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851,
        2.364624252, 2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830,
        2.160368656, 2.144786688, 2.131449546, 2.119905299, 2.109815578, 2.100922040,
        2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.068657610, 2.063898562,
        2.059538553, 2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456]


def interval(xs):
    n = len(xs)
    if n == 0:
        return n, float("nan"), float("nan")
    m = sum(xs) / n
    if n < 2 or n > 31:
        return n, m, float("nan")
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return n, m, T975[n - 2] * s / math.sqrt(n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--metric", default="test_accuracy")
    ap.add_argument("--digits", type=int, default=4)
    a = ap.parse_args()
    cells = OrderedDict()
    for line in open(a.results):
        d = json.loads(line)
        if "config" not in d:
            continue
        c = dict(d["config"])
        c.pop("seed")
        key = json.dumps(c, sort_keys=True)
        cells.setdefault(key, []).append(d)
    varying = [k for k in json.loads(next(iter(cells))) if len({json.loads(c)[k] if not isinstance(json.loads(c)[k], list) else str(json.loads(c)[k]) for c in cells}) > 1] if cells else []
    print("| " + " | ".join(varying + ["n", a.metric, "diverged"]) + " |")
    print("|" + "---|" * (len(varying) + 3))
    for key, runs in cells.items():
        c = json.loads(key)
        ok = [r[a.metric] for r in runs if not r["diverged"] and r[a.metric] is not None]
        n, m, h = interval(ok)
        txt = "–" if n == 0 else (f"{m:.{a.digits}f}" if math.isnan(h) else f"{m:.{a.digits}f} ± {h:.{a.digits}f}")
        div = sum(1 for r in runs if r["diverged"])
        print("| " + " | ".join([str(c[k]) for k in varying] + [str(len(runs)), txt, str(div)]) + " |")


if __name__ == "__main__":
    sys.exit(main())
