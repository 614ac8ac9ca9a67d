#!/usr/bin/env python3
"""Test accuracy against channel count, one line per rule, from a `widealign sweep` results file
of CNN runs (standard library only; the reproduce report draws its plots in Rust, this is for
sweeps outside it).

    scripts/plots/accuracy_vs_channels.py RESULTS.jsonl OUT.svg [TITLE]
"""
import json
import math
import sys

RULES = ["bp", "align-zero", "align-ada", "align-prop", "fa", "dfa", "readout"]
COLORS = ["#000000", "#1f77b4", "#2ca02c", "#17becf", "#d62728", "#ff7f0e", "#7f7f7f"]


def main():
    src, out = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "CNN test accuracy against channels"
    acc = {}
    for line in open(src):
        r = json.loads(line)
        c = r["config"]
        acc.setdefault(c["rule"], {})[c.get("channels", 64)] = r["test_accuracy"]
    chans = sorted({k for v in acc.values() for k in v})
    W, H, L, R, T, B = 640, 400, 60, 130, 40, 50
    lx = [math.log2(c) for c in chans]
    x0, x1 = min(lx), max(lx) if max(lx) > min(lx) else min(lx) + 1
    X = lambda c: L + (math.log2(c) - x0) / (x1 - x0) * (W - L - R)
    Y = lambda a: T + (1 - a) * (H - T - B)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W/2}" y="20" text-anchor="middle" font-size="14">{title}</text>']
    for a in [0, 0.2, 0.4, 0.6, 0.8, 1.0]:
        s.append(f'<line x1="{L}" x2="{W-R}" y1="{Y(a)}" y2="{Y(a)}" stroke="#ddd"/>')
        s.append(f'<text x="{L-6}" y="{Y(a)+4}" text-anchor="end">{a:.1f}</text>')
    for c in chans:
        s.append(f'<text x="{X(c)}" y="{H-B+16}" text-anchor="middle">{c}</text>')
    s.append(f'<text x="{(L+W-R)/2}" y="{H-12}" text-anchor="middle">channels per layer (log scale)</text>')
    s.append(f'<text x="16" y="{(T+H-B)/2}" transform="rotate(-90 16 {(T+H-B)/2})" text-anchor="middle">test accuracy</text>')
    for i, rule in enumerate(r for r in RULES if r in acc):
        pts = sorted(acc[rule].items())
        col = COLORS[RULES.index(rule)]
        path = " ".join(f"{X(c):.1f},{Y(a):.1f}" for c, a in pts)
        s.append(f'<polyline points="{path}" fill="none" stroke="{col}" stroke-width="2"/>')
        for c, a in pts:
            s.append(f'<circle cx="{X(c):.1f}" cy="{Y(a):.1f}" r="3" fill="{col}"/>')
        s.append(f'<line x1="{W-R+10}" x2="{W-R+30}" y1="{T+18*i}" y2="{T+18*i}" stroke="{col}" stroke-width="2"/>')
        s.append(f'<text x="{W-R+36}" y="{T+18*i+4}">{rule}</text>')
    s.append("</svg>")
    open(out, "w").write("\n".join(s) + "\n")


if __name__ == "__main__":
    main()
