#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# int4 in groups of 128 (issue 6, PERF_NOTES v32 2. / v34 7.): what folding an RMSNorm weight g into the quantized
# linear layer after it would cost in accuracy. Today the engine quantizes W (core/quant.h's int4_g128: scale =
# absmax / 7 per 128 inputs of a row, q = clamp(rint(w / scale), -8, 7)) and multiplies by x = bf16(h · inv · g);
# folded, it would quantize W · diag(g) and multiply by x = bf16(h · inv), so a decode GEMV would not load g. A group
# whose g varies then shares one scale between columns of different magnitude. Prints the relative MSE of y = W x
# against the exact product (fp64, unquantized) for both, over norm weights of several spreads (lognormal around 1,
# and a few outlier channels), with normal and heavy-tailed (Laplace) weights and activations. Stdlib only (no numpy on
# the build machine); deterministic. The real checkpoints' norm weights are not here: this bounds the question, it
# does not answer it for Pixtral-12B.
#
#   python3 tests/bench/int4_norm_fold.py [--rows N] [--k K]
import argparse
import math
import random
import struct


def bf16(v):
    """v rounded to bfloat16 (to nearest, ties to even), as a float."""
    (u,) = struct.unpack("<I", struct.pack("<f", v))
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    (r,) = struct.unpack("<f", struct.pack("<I", u))
    return r


def quant_row(row):
    """One row in groups of 128, symmetric int4 (the engine's int4_g128), dequantized."""
    out = []
    for g0 in range(0, len(row), 128):
        grp = row[g0:g0 + 128]
        amax = max(abs(v) for v in grp)
        if amax == 0:
            out.extend([0.0] * len(grp))
            continue
        s = amax / 7
        out.extend(max(-8, min(7, round(v / s))) * s for v in grp)
    return out


def norm_weight(kind, k, rng):
    if kind.startswith("lognormal"):
        sigma = float(kind.split("=")[1])
        return [math.exp(rng.gauss(0.0, sigma)) for _ in range(k)]
    if kind == "outliers":  # 1 % of the channels 10x
        return [10.0 if rng.random() < 0.01 else 1.0 for _ in range(k)]
    raise ValueError(kind)


def sample(dist, rng):
    if dist == "normal":
        return rng.gauss(0.0, 1.0)
    # Laplace (heavier tails), unit variance
    u = rng.random() - 0.5
    return -math.copysign(1.0, u) * math.log(1 - 2 * abs(u)) / math.sqrt(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=48)
    ap.add_argument("--k", type=int, default=2048)
    a = ap.parse_args()
    rng = random.Random(6)
    print(f"rows {a.rows}, K {a.k}; relative MSE of y = W x against the exact product")
    print(f"{'norm weight g':16} {'weights':8} {'x':8} {'unfolded':>10} {'folded':>10} {'folded/unf':>10}")
    for gk in ("lognormal=0", "lognormal=0.1", "lognormal=0.3", "lognormal=0.6", "lognormal=1.0", "outliers"):
        for wd, xd in (("normal", "normal"), ("laplace", "laplace")):
            g = norm_weight(gk, a.k, rng)
            xh = [sample(xd, rng) for _ in range(a.k)]  # h · inv
            x_unf = [bf16(v * gi) for v, gi in zip(xh, g)]  # bf16(h · inv · g)
            x_fold = [bf16(v) for v in xh]  # bf16(h · inv)
            err_u = err_f = ref2 = 0.0
            for _ in range(a.rows):
                w = [bf16(sample(wd, rng) * 0.02) for _ in range(a.k)]
                ref = sum(wi * gi * xi for wi, gi, xi in zip(w, g, xh))
                qu = quant_row(w)
                qf = quant_row([wi * gi for wi, gi in zip(w, g)])
                yu = sum(qi * xi for qi, xi in zip(qu, x_unf))
                yf = sum(qi * xi for qi, xi in zip(qf, x_fold))
                err_u += (yu - ref) ** 2
                err_f += (yf - ref) ** 2
                ref2 += ref * ref
            ru, rf = err_u / ref2, err_f / ref2
            print(f"{gk:16} {wd:8} {xd:8} {ru:10.2e} {rf:10.2e} {rf / ru:10.2f}")


if __name__ == "__main__":
    main()
