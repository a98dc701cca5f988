#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Summarises a decode timeline written by a PIXTRAL_CUDA_TIMELINE build (engine/src/cuda/timeline.cuh).

usage: timeline.py FILE.csv [--layers | --blocks LAYER | --sms LAYER]

Each CSV row is one block of one kernel: tag, grid (blocks of its launch), block, sm, t0, t1 (%globaltimer ns at
thread 0's start and end), tw (when thread 0 returned from its dependent-launch wait; 0 or absent: no wait) and tm
(when thread 0 passed the kernel's PIXTRAL_TIMELINE_MARK, a point the kernel names — the combine's and the norm's
loads merged, q4tma's x staged, the scalar GEMVs' first batch used, an attention split's last keys in; 0 or absent:
none) and te (its early mark, PIXTRAL_TIMELINE_EARLY_MARK: a point before the mark — q4tma's folded norm summed;
0 or absent: none). A launch's blocks all start before any block of the launch after next (programmatic
dependent launch lets only the next kernel start early), so sorting a (tag, grid) pair's rows by t0 and cutting them
into runs of `grid` rows recovers the launches. Per kernel kind the table gives the launches per decode step, the
mean duration (first block start to last block end), the mean overlap with the kernel before (how long it was
resident before that one ended) and what it adds to the step: its end minus the previous kernel's end, summed per
step. The adds sum to the step's time; the time no recorded kernel covers (sampler, copies) is listed as well. A
second table splits each kind's span after the kernel before it ends: its blocks' first and median wait returns
(the boundary) and the end after the median wait (the work left once its input was there); a third, for the kinds
that mark, cuts that work at the mark: median wait to median and to last mark, last mark to the end; a fourth, for
the kinds with an early mark: median wait to median early mark, and from there to the median mark.
--layers lists the last step's first 40 launches; --blocks LAYER gives, for each launch of decoder layer LAYER
(from its QKV GEMV to the one before the next QKV GEMV) of the last step, its blocks' start and end percentiles
in µs from the end of the launch before that QKV GEMV: which blocks wait and which ones end late; --sms LAYER
groups each of those launches' SMs by how many of its blocks they ran (count, median and latest end of the SM's
last block): where the blocks happened to land, and what that cost.
"""
import collections
import csv
import sys

TAGS = {100: "bf16", 150: "q8tma", 200: "int8", 250: "int4s", 300: "q4mma", 350: "q4tma"}
MODES = {0: "plain", 1: "silu", 2: "rope", 3: "residual"}
# The other tags of timeline.cuh's TimelineTag.
KINDS = {400: "attention", 401: "combine", 500: "norm", 501: "embed", 600: "sample max", 601: "sample select",
         602: "sample greedy"}


def kind_name(tag):
    if tag in KINDS:
        return KINDS[tag]
    fam = tag - tag % 50 if tag % 100 >= 50 else tag - tag % 100
    return f"{TAGS.get(fam, str(fam))} {MODES.get(tag - fam, str(tag - fam))}"


def launches(rows):
    groups = collections.defaultdict(list)
    for r in rows:
        groups[(r["tag"], r["grid"])].append(r)
    out = []
    for (tag, grid), rs in groups.items():
        rs.sort(key=lambda r: r["t0"])
        if len(rs) % grid:
            print(f"warning: tag {tag} grid {grid}: {len(rs)} rows, not a multiple of the grid "
                  "(capacity reached, or the window cut a launch); the rest is dropped", file=sys.stderr)
        for i in range(0, len(rs) - len(rs) % grid, grid):
            chunk = rs[i:i + grid]
            out.append({"tag": tag, "grid": grid, "start": min(r["t0"] for r in chunk),
                        "end": max(r["t1"] for r in chunk), "t0s": sorted(r["t0"] for r in chunk),
                        "t1s": sorted(r["t1"] for r in chunk), "sm_ends": sm_ends(chunk),
                        "tws": sorted(r.get("tw", 0) for r in chunk if r.get("tw", 0)),
                        "tms": sorted(r.get("tm", 0) for r in chunk if r.get("tm", 0)),
                        "tes": sorted(r.get("te", 0) for r in chunk if r.get("te", 0))})
    out.sort(key=lambda l: l["start"])
    return out


def label(seq):
    """Names the decoder's GEMVs by their place: the residual GEMV after the attention is wo, after SiLU w2."""
    prev = None
    for l in seq:
        name = kind_name(l["tag"])
        mode = l["tag"] % 50 if l["tag"] < 400 else None
        if mode == 3:
            name += " (wo)" if prev in ("combine", "attention") else " (w2)"
        elif mode == 2:
            name += " (qkv)"
        elif mode == 1:
            name += " (w1;w3)"
        elif mode == 0 and l["grid"] > 2000:
            name += " (lm_head)"
        l["name"] = name
        prev = kind_name(l["tag"])


def split_steps(seq):
    """Decode steps start at the embedding gather; launches before the first one are dropped."""
    steps, cur = [], []
    for l in seq:
        if l["name"] == "embed" and cur:
            steps.append(cur)
            cur = []
        cur.append(l)
    if cur:
        steps.append(cur)
    return [s for s in steps if s[0]["name"] == "embed"]


def aggregate(steps):
    """Per kernel name: launches, summed duration, overlap with the end so far, and what it adds to its step; and
    each step's length (first start to last end)."""
    agg = collections.OrderedDict()
    totals = []
    for s in steps:
        prev_end = s[0]["start"]
        for l in s:
            a = agg.setdefault(l["name"], {"n": 0, "dur": 0, "ovl": 0, "adds": 0})
            a["n"] += 1
            a["dur"] += l["end"] - l["start"]
            a["ovl"] += max(0, prev_end - l["start"])
            a["adds"] += max(0, l["end"] - prev_end)
            prev_end = max(prev_end, l["end"])
        totals.append(prev_end - s[0]["start"])
    return agg, totals


def waits(steps):
    """Per kernel name with recorded waits: mean ns from the previous launch's end to its blocks' first and median
    wait return, and from that median to its own end."""
    acc = collections.OrderedDict()
    for s in steps:
        for prev, l in zip(s, s[1:]):
            if not l["tws"]:
                continue
            a = acc.setdefault(l["name"], [0, 0, 0, 0])
            a[0] += 1
            a[1] += l["tws"][0] - prev["end"]
            a[2] += pct(l["tws"], 50) - prev["end"]
            a[3] += l["end"] - pct(l["tws"], 50)
    return {k: (v[1] / v[0], v[2] / v[0], v[3] / v[0]) for k, v in acc.items()}


def marks(steps):
    """Per kernel name with recorded waits and marks: mean ns from its blocks' median wait return to their median
    and last mark, and from the last mark to its end."""
    acc = collections.OrderedDict()
    for s in steps:
        for l in s:
            if not l["tws"] or not l["tms"]:
                continue
            a = acc.setdefault(l["name"], [0, 0, 0, 0])
            w = pct(l["tws"], 50)
            a[0] += 1
            a[1] += pct(l["tms"], 50) - w
            a[2] += l["tms"][-1] - w
            a[3] += l["end"] - l["tms"][-1]
    return {k: (v[1] / v[0], v[2] / v[0], v[3] / v[0]) for k, v in acc.items()}


def early_marks(steps):
    """Per kernel name with recorded waits, early marks and marks: mean ns from its blocks' median wait return to
    their median early mark, and from that to their median mark."""
    acc = collections.OrderedDict()
    for s in steps:
        for l in s:
            if not l["tws"] or not l["tms"] or not l["tes"]:
                continue
            a = acc.setdefault(l["name"], [0, 0, 0])
            e = pct(l["tes"], 50)
            a[0] += 1
            a[1] += e - pct(l["tws"], 50)
            a[2] += pct(l["tms"], 50) - e
    return {k: (v[1] / v[0], v[2] / v[0]) for k, v in acc.items()}


def after_lm_head(steps):
    """Mean times (ns) after lm_head's end: the device sampler's kernels (when recorded) and the next step's embed."""
    tails = collections.defaultdict(list)
    for i in range(len(steps) - 1):
        head = [l for l in steps[i] if "(lm_head)" in l["name"]]
        if not head:
            continue
        t_ref = head[-1]["end"]
        for l in steps[i]:
            if l["name"].startswith("sample"):
                tails[l["name"] + " start"].append(l["start"] - t_ref)
                tails[l["name"] + " end"].append(l["end"] - t_ref)
        tails["next embed start"].append(steps[i + 1][0]["start"] - t_ref)
    return {k: sum(v) / len(v) for k, v in tails.items()}


def sm_ends(chunk):
    """Per SM of one launch: (blocks it ran, end of its last block)."""
    per = {}
    for r in chunk:
        n, end = per.get(r["sm"], (0, 0))
        per[r["sm"]] = (n + 1, max(end, r["t1"]))
    return per


def layer_sms(step, index):
    """Decoder layer `index` of a step (layer_blocks' launches): per launch, its name and, per number of blocks an SM
    ran, (that number, SMs, median and latest SM end in ns from layer_blocks' reference)."""
    out = []
    for name, lo, t_ref in layer_launches(step, index):
        by = {}
        for n, end in lo["sm_ends"].values():
            by.setdefault(n, []).append(end - t_ref)
        out.append((name, [(n, len(v), pct(sorted(v), 50), max(v)) for n, v in sorted(by.items())]))
    return out


def layer_launches(step, index):
    """The launches of decoder layer `index` (its QKV GEMV to the launch before the next one) with the reference
    time: the end of the launch before that QKV GEMV."""
    qkv = [i for i, l in enumerate(step) if l["name"].endswith("(qkv)")]
    if index >= len(qkv):
        return []
    lo = qkv[index]
    hi = qkv[index + 1] if index + 1 < len(qkv) else len(step)
    t_ref = step[lo - 1]["end"] if lo > 0 else step[lo]["start"]
    return [(l["name"], l, t_ref) for l in step[lo:hi]]


def pct(sorted_vals, p):
    """The p-th percentile (0-100) of sorted values: the value at rank p % of the way, rounded to the nearest."""
    return sorted_vals[min(len(sorted_vals) - 1, int(p / 100 * (len(sorted_vals) - 1) + 0.5))]


def layer_blocks(step, index):
    """Decoder layer `index` of a step (its QKV GEMV to the launch before the next one): per launch, its name,
    blocks, start p0/p50/p100 and end p0/p50/p90/p100 of its blocks, in ns from the end of the launch before the
    layer's QKV GEMV; then its waits' and its marks' p0/p50/p100 (None where it recorded none)."""
    return [(name, l["grid"], [pct(l["t0s"], p) - t_ref for p in (0, 50, 100)],
             [pct(l["t1s"], p) - t_ref for p in (0, 50, 90, 100)],
             [pct(l["tws"], p) - t_ref for p in (0, 50, 100)] if l["tws"] else None,
             [pct(l["tms"], p) - t_ref for p in (0, 50, 100)] if l["tms"] else None)
            for name, l, t_ref in layer_launches(step, index)]


def read(path):
    with open(path) as f:
        return [{k: int(v) for k, v in r.items()} for r in csv.DictReader(f)]


def main():
    seq = launches(read(sys.argv[1]))
    label(seq)
    steps = split_steps(seq)
    if not steps:
        sys.exit("no decode step found (no embed launch)")
    agg, totals = aggregate(steps)
    n = len(steps)
    print(f"{n} decode steps, {sum(len(s) for s in steps) / n:.0f} recorded launches a step, "
          f"step {sum(totals) / n / 1e3:.1f} us (first recorded start to last recorded end)")
    print(f"{'kernel':<22}{'per step':>9}{'mean us':>9}{'overlap us':>11}{'adds us/launch':>15}{'adds ms/step':>13}")
    for name, a in agg.items():
        k = a["n"]
        print(f"{name:<22}{k / n:>9.0f}{a['dur'] / k / 1e3:>9.2f}{a['ovl'] / k / 1e3:>11.2f}"
              f"{a['adds'] / k / 1e3:>15.2f}{a['adds'] / n / 1e6:>13.3f}")
    w = waits(steps)
    if w:
        print(f"{'kernel':<22}{'prev end -> first wait us':>27}{'-> median wait us':>19}{'median wait -> end us':>23}")
        for name, (first, med, tail) in w.items():
            print(f"{name:<22}{first / 1e3:>27.2f}{med / 1e3:>19.2f}{tail / 1e3:>23.2f}")
    m = marks(steps)
    if m:
        print(f"{'kernel':<22}{'median wait -> median mark us':>31}{'-> last mark us':>17}{'last mark -> end us':>21}")
        for name, (med, last, tail) in m.items():
            print(f"{name:<22}{med / 1e3:>31.2f}{last / 1e3:>17.2f}{tail / 1e3:>21.2f}")
    e = early_marks(steps)
    if e:
        print(f"{'kernel':<22}{'median wait -> median early mark us':>37}{'-> median mark us':>19}")
        for name, (first, rest) in e.items():
            print(f"{name:<22}{first / 1e3:>37.2f}{rest / 1e3:>19.2f}")
    if len(sys.argv) > 2 and sys.argv[2] == "--layers":
        s = steps[-1]
        t0 = s[0]["start"]
        prev_end = t0
        for l in s[:40]:
            print(f"{l['name']:<22} start {(l['start'] - t0) / 1e3:8.2f} end {(l['end'] - t0) / 1e3:8.2f} "
                  f"dur {(l['end'] - l['start']) / 1e3:6.2f} adds {max(0, l['end'] - prev_end) / 1e3:6.2f}")
            prev_end = max(prev_end, l["end"])
    if len(sys.argv) > 3 and sys.argv[2] == "--blocks":
        index = int(sys.argv[3])
        print(f"layer {index} of the last step, µs from the end of the launch before its QKV GEMV")
        print(f"{'kernel':<22}{'blocks':>7}   start p0 / p50 / p100     end p0 / p50 / p90 / p100"
              "             waited p0 / p50 / p100    marked p0 / p50 / p100")
        blank = " " * 24  # three %6.2f joined by " / "
        for name, grid, st, en, wt, mk in layer_blocks(steps[-1], index):
            print(f"{name:<22}{grid:>7}  " + " / ".join(f"{v / 1e3:6.2f}" for v in st) + "   "
                  + " / ".join(f"{v / 1e3:6.2f}" for v in en)
                  + ("   " + " / ".join(f"{v / 1e3:6.2f}" for v in wt) if wt else ("   " + blank if mk else ""))
                  + ("   " + " / ".join(f"{v / 1e3:6.2f}" for v in mk) if mk else ""))
    if len(sys.argv) > 3 and sys.argv[2] == "--sms":
        index = int(sys.argv[3])
        print(f"layer {index} of the last step: SMs by blocks run, median / latest end (µs, as --blocks)")
        for name, groups in layer_sms(steps[-1], index):
            print(f"{name:<22} " + " | ".join(f"{n} blk: {k} SMs {m / 1e3:.1f} / {e / 1e3:.1f}"
                                              for n, k, m, e in groups))
    tails = after_lm_head(steps)
    if tails:
        print("after lm_head's end (us): " + ", ".join(f"{k} {v / 1e3:.1f}" for k, v in tails.items()))

if __name__ == "__main__":
    main()
