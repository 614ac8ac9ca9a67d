#!/usr/bin/env python3
"""Compare two results.jsonl files run by run: every metric equal, timing fields aside.

Usage: compare_results.py OLD.jsonl NEW.jsonl
Runs are matched by experiment and config (or the line's `key`).
Exit status 0 when every run of OLD is in NEW with equal metrics, 1 otherwise.
"""
import json
import math
import sys

TIMING = {"seconds", "widealign_version", "run_index"}


def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if k not in TIMING}
    if isinstance(v, list):
        return [strip(x) for x in v]
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return v


def key(d):
    """A run's identity: its experiment and its config, or the line's own `key` (alignment and
    dynamics lines), or, failing both, the whole line without its metrics."""
    ident = d.get("config", d.get("key"))
    if ident is None:
        ident = {k: v for k, v in d.items() if k not in ("report", "layers", "history")}
        ident = strip(ident)
    return (d.get("experiment"), json.dumps(ident, sort_keys=True))


def load(path):
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                out[key(d)] = strip(d)
    return out


def diff(a, b, path=""):
    if type(a) != type(b):
        return [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict):
        out = []
        for k in a:
            if k not in b:
                out.append(f"{path}.{k}: missing in new")
            else:
                out += diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def main():
    old, new = load(sys.argv[1]), load(sys.argv[2])
    bad = 0
    for k, a in old.items():
        if k not in new:
            print("missing run:", k)
            bad += 1
            continue
        d = diff(a, new[k])
        if d:
            bad += 1
            print("differs:", k[0], a.get("rule"), a.get("width"), "first:", d[:3])
    print(f"{len(old)} runs compared, {bad} differ or are missing; new has {len(new)} runs")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
