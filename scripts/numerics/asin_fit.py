#!/usr/bin/env python3
"""Coefficients of the arcsine polynomial in crates/ntk/src/dual.rs (`ASIN_P`).

asin(s) = s + s*z*P(z) with z = s^2 in [0, 1/4] (|s| <= 1/2; larger arguments are reduced with
asin|x| = pi/2 - 2 asin(sqrt((1 - |x|)/2))). P is interpolated at the Chebyshev nodes of
[0, 1/4] in 50-digit arithmetic (mpmath) and written in monomials of z; the script then evaluates
asin in double precision with Horner's rule, as the Rust code does, and prints the worst relative
error on [0, 1/2] for each degree. Degree 12 is the one used (1.2e-16, i.e. rounding level).

    pip install mpmath && python3 scripts/numerics/asin_fit.py
"""
import mpmath as mp

mp.mp.dps = 50


def p_exact(z):
    if z == 0:
        return mp.mpf(1) / 6
    s = mp.sqrt(z)
    return (mp.asin(s) - s) / (s * z)


def fit(deg):
    a, b = mp.mpf(0), mp.mpf(1) / 4
    n = deg + 1
    nodes = [(a + b) / 2 + (b - a) / 2 * mp.cos(mp.pi * (k + mp.mpf(1) / 2) / n) for k in range(n)]
    v = mp.matrix([[x**j for j in range(n)] for x in nodes])
    c = mp.lu_solve(v, mp.matrix([p_exact(x) for x in nodes]))
    return [float(c[j]) for j in range(n)]


def worst_relative_error(coef, samples=4000):
    worst = 0.0
    for t in range(1, samples):
        s = 0.5 * t / (samples - 1)
        z = s * s
        p = 0.0
        for c in reversed(coef):
            p = p * z + c
        val = s + s * (z * p)
        ref = mp.asin(mp.mpf(s))
        worst = max(worst, float(abs((mp.mpf(val) - ref) / ref)))
    return worst


for deg in range(8, 14):
    coef = fit(deg)
    print(f"degree {deg}: worst relative error {worst_relative_error(coef):.2e}")
    if deg == 12:
        print("ASIN_P =", ", ".join(repr(c) for c in coef))
