#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# int4 in groups of 128 (issue 6): symmetric (the engine's int4_g128, core/quant.h: scale = absmax / 7,
# q = clamp(rint(w / scale), -8, 7)) against asymmetric with a zero point (scale = (max - min) / 15,
# zp = rint(-min / scale), q = clamp(rint(w / scale) + zp, 0, 15)), on weight distributions of the kinds LLM
# linear layers show. Prints the relative MSE of the dequantized weights (sum (w - w')^2 / sum w^2) and of a
# matrix-vector product with a random x. Stdlib only (no numpy on the build machine); deterministic.
#
#   python3 tests/bench/int4_zero_point.py [--groups N]
import argparse
import math
import random


def quant_sym(g):
    amax = max(abs(v) for v in g)
    if amax == 0:
        return [0.0] * len(g)
    s = amax / 7
    return [max(-8, min(7, round(v / s))) * s for v in g]  # round(): ties to even, as rint


def quant_asym(g):
    lo, hi = min(g), max(g)
    if hi == lo:
        return list(g)
    s = (hi - lo) / 15
    zp = round(-lo / s)
    return [(max(0, min(15, round(v / s) + zp)) - zp) * s for v in g]


def gaussian(rng, n):
    return [rng.gauss(0, 0.02) for _ in range(n)]


def student_t4(rng, n):  # heavier tails (ν = 4), same scale
    out = []
    for _ in range(n):
        z = rng.gauss(0, 1)
        chi2 = sum(rng.gauss(0, 1) ** 2 for _ in range(4))
        out.append(0.02 * z / math.sqrt(chi2 / 4))
    return out


def outliers(rng, n):  # Gaussian with 0.2 % of values 10x larger
    return [rng.gauss(0, 0.02) * (10 if rng.random() < 0.002 else 1) for _ in range(n)]


def shifted(rng, n, group=128):  # each group offset by a mean of ±0.5 σ (skewed groups)
    out = []
    for _ in range(n // group):
        mu = rng.choice((-1, 1)) * 0.01
        out += [mu + rng.gauss(0, 0.02) for _ in range(group)]
    return out


def measure(values, group, quant, x):
    err = ref = 0.0
    dot_err = dot_ref = 0.0
    for i in range(0, len(values), group):
        g = values[i:i + group]
        q = quant(g)
        err += sum((a - b) ** 2 for a, b in zip(g, q))
        ref += sum(a * a for a in g)
        xs = x[i % len(x):i % len(x) + group]
        d_ref = sum(a * b for a, b in zip(g, xs))
        d_q = sum(a * b for a, b in zip(q, xs))
        dot_err += (d_ref - d_q) ** 2
        dot_ref += d_ref * d_ref
    return err / ref, dot_err / dot_ref


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--groups", type=int, default=2048, help="groups of 128 per distribution")
    args = ap.parse_args()
    group = 128
    n = args.groups * group
    rng = random.Random(6)
    x = [rng.gauss(0, 1) for _ in range(8 * group)]
    print(f"int4, groups of {group}, {args.groups} groups per distribution; relative MSE (lower is better)")
    print(f"{'distribution':<28}{'sym weights':>12}{'zp weights':>12}{'sym dot':>10}{'zp dot':>10}")
    for name, gen in (("gaussian", gaussian), ("student-t (nu=4)", student_t4), ("gaussian + 0.2% outliers", outliers),
                      ("groups shifted by 0.5 sigma", shifted)):
        v = gen(rng, n)
        sw, sd = measure(v, group, quant_sym, x)
        aw, ad = measure(v, group, quant_asym, x)
        print(f"{name:<28}{sw:>12.4g}{aw:>12.4g}{sd:>10.4g}{ad:>10.4g}")


if __name__ == "__main__":
    main()
