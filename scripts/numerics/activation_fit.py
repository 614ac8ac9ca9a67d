#!/usr/bin/env python3
"""Coefficients of the branch-free exp / tanh / erf in crates/tensor/src/vmath.rs.

Every polynomial is interpolated at the Chebyshev nodes of its interval in 50-digit arithmetic
(mpmath) and written in monomials (solving the Vandermonde system at 50 digits). The script then
evaluates each function in IEEE double precision exactly as the Rust code does (Python floats are
binary64, no FMA contraction, same operation order) and prints the worst error in ulps against the
50-digit reference on a dense grid, for the chosen degree.

* EXP_P:   e^r = 1 + r*P(r),  r in [-ln2/2, ln2/2]   (after x = k ln2 + r, e^x = 2^k e^r)
* TANH_P:  tanh x = x + x*z*P(z),  z = x^2 in [0, 1]    (|x| >= 1 uses 1 - 2/(e^{2|x|} + 1))
* ERF_Q:   erf x = x + x*Q(z),  z = x^2 in [0, 1]
* ERFC_G:  e^{x^2} erfc x = G_k(x - m_k) on [1, 2.25), [2.25, 3.5), [3.5, 6]  (erf = 1 - e^{-x^2} G)

    pip install mpmath && python3 scripts/numerics/activation_fit.py
"""
import math
import struct

import mpmath as mp

mp.mp.dps = 50


def cheb_fit(f, a, b, deg, shift=0):
    """Monomial coefficients (in t - shift) of the degree-`deg` interpolant of f at Chebyshev nodes."""
    a, b = mp.mpf(a), mp.mpf(b)
    n = deg + 1
    nodes = [(a + b) / 2 + (b - a) / 2 * mp.cos(mp.pi * (k + mp.mpf(1) / 2) / n) for k in range(n)]
    v = mp.matrix([[(x - shift) ** j for j in range(n)] for x in nodes])
    c = mp.lu_solve(v, mp.matrix([f(x) for x in nodes]))
    return [float(c[j]) for j in range(n)]


def horner(coef, t):
    p = 0.0
    for c in reversed(coef):
        p = p * t + c
    return p


def ulp_err(val, ref):
    """|val - ref| in units of the last place of the double nearest to ref."""
    r = float(ref)
    if r == 0:
        return 0.0 if val == 0 else math.inf
    return float(abs(mp.mpf(val) - ref)) / math.ulp(r)


# ---- exp -----------------------------------------------------------------------------------
LN2 = mp.log(2)
ln2_bits = struct.unpack("<Q", struct.pack("<d", float(LN2)))[0]
LN2_HI = struct.unpack("<d", struct.pack("<Q", ln2_bits & ~((1 << 20) - 1)))[0]  # 33 bits
LN2_LO = float(LN2 - mp.mpf(LN2_HI))
LOG2E = float(1 / LN2)
MAGIC = 6755399441055744.0  # 1.5 * 2^52


def exp_p(r):
    return mp.mpf(1) if r == 0 else mp.expm1(r) / r


EXP_DEG = 12
EXP_P = cheb_fit(exp_p, -LN2 / 2, LN2 / 2, EXP_DEG)


def exp_d(x):
    t = x * LOG2E + MAGIC
    kf = t - MAGIC
    k = struct.unpack("<q", struct.pack("<d", t))[0] - struct.unpack("<q", struct.pack("<d", MAGIC))[0]
    r = (x - kf * LN2_HI) - kf * LN2_LO
    er = 1.0 + r * horner(EXP_P, r)
    return er * math.ldexp(1.0, k)


# ---- tanh ----------------------------------------------------------------------------------
def tanh_p(z):
    if z == 0:
        return mp.mpf(-1) / 3
    x = mp.sqrt(z)
    return (mp.tanh(x) - x) / (x * z)


TANH_DEG = 16
TANH_P = cheb_fit(tanh_p, 0, 1, TANH_DEG)


def tanh_d(x):
    a = abs(x)
    z = a * a
    small = a + a * (z * horner(TANH_P, z))
    c = min(a, 20.0)
    big = 1.0 - 2.0 / (exp_d(2.0 * c) + 1.0)
    return math.copysign(small if a < 1.0 else big, x)


# ---- erf -----------------------------------------------------------------------------------
def erf_q(z):
    if z == 0:
        return 2 / mp.sqrt(mp.pi) - 1
    x = mp.sqrt(z)
    return mp.erf(x) / x - 1


ERF_DEG = 12
ERF_Q = cheb_fit(erf_q, 0, 1, ERF_DEG)

PIECES = [(1.0, 2.25), (2.25, 3.5), (3.5, 6.0)]
MIDS = [(a + b) / 2 for a, b in PIECES]
ERFC_DEG = 16


def erfcx(x):
    return mp.exp(x * x) * mp.erfc(x)


ERFC_G = [cheb_fit(erfcx, a, b, ERFC_DEG, shift=m) for (a, b), m in zip(PIECES, MIDS)]


def erf_d(x):
    a = abs(x)
    z = a * a
    small = a + a * horner(ERF_Q, z)
    c = min(a, 6.0)
    k = 0 if c < 2.25 else (1 if c < 3.5 else 2)
    g = horner(ERFC_G[k], c - MIDS[k])
    big = 1.0 - exp_d(-(c * c)) * g
    return math.copysign(small if a < 1.0 else big, x)


def worst(fn, ref, xs):
    w, at = 0.0, None
    for x in xs:
        e = ulp_err(fn(x), ref(mp.mpf(x)))
        if e > w:
            w, at = e, x
    return w, at


def grid(a, b, n):
    return [a + (b - a) * i / (n - 1) for i in range(n)]


if __name__ == "__main__":
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    print("exp  on [-40, 40]:   worst %.3f ulp at %r" % worst(exp_d, mp.exp, grid(-40, 40, n)))
    print("tanh on [0, 1]:      worst %.3f ulp at %r" % worst(tanh_d, mp.tanh, grid(1e-9, 1, n)))
    print("tanh on [1, 20]:     worst %.3f ulp at %r" % worst(tanh_d, mp.tanh, grid(1, 20, n)))
    print("erf  on [0, 1]:      worst %.3f ulp at %r" % worst(erf_d, mp.erf, grid(1e-9, 1, n)))
    print("erf  on [1, 6.5]:    worst %.3f ulp at %r" % worst(erf_d, mp.erf, grid(1, 6.5, n)))
    for name, val in [("LN2_HI", LN2_HI), ("LN2_LO", LN2_LO), ("LOG2E", LOG2E)]:
        print(f"{name} = {val!r}")
    print("EXP_P =", ", ".join(repr(c) for c in EXP_P))
    print("TANH_P =", ", ".join(repr(c) for c in TANH_P))
    print("ERF_Q =", ", ".join(repr(c) for c in ERF_Q))
    for k, g in enumerate(ERFC_G):
        print(f"ERFC_G[{k}] (mid {MIDS[k]}) =", ", ".join(repr(c) for c in g))
