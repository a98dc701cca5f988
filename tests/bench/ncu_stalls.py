#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Where the warps of a kernel wait: summarises Nsight Compute's per-instruction stall samples.

usage: ncu_stalls.py FILE.csv [--top N] [--min PERCENT]

FILE.csv is what `ncu --import REPORT.ncu-rep --page source --csv --print-source sass` prints for a report taken with
`--section SourceCounters` (scripts/gpu-ncu makes one): for every profiled kernel a "Kernel Name" line, then a table
with one row per SASS instruction (address, source, stall samples, then one column per stall reason). ncu may print
a kernel's table twice; repeated tables (same name, same rows) are shown once.

Per kernel: the samples in all, the share of each stall reason, and the N instructions with the most samples (at
least --min percent), each with its two main reasons — which load, barrier or dependency the warps wait on.
"""
import csv
import io
import sys

REASON_PREFIX = "stall_"


def parse(text):
    """[(kernel name, header, rows)] in file order, repeated tables dropped."""
    tables = []
    name = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith('"Kernel Name"'):
            name = next(csv.reader([line]))[1]
            i += 1
            continue
        if line.startswith('"Address"'):
            j = i + 1
            while j < len(lines) and lines[j].startswith('"0x'):
                j += 1
            rows = list(csv.reader(io.StringIO("\n".join(lines[i:j]))))
            table = (name or "?", rows[0], rows[1:])
            if not any(t[0] == table[0] and t[2] == table[2] for t in tables):
                tables.append(table)
            i = j
            continue
        i += 1
    return tables


def number(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return 0.0


def summarise(name, header, rows, top=20, min_percent=0.5):
    """The report of one kernel as a list of lines."""
    col = {h: k for k, h in enumerate(header)}
    i_addr, i_src = col.get("Address"), col.get("Source")
    i_all = col.get("Warp Stall Sampling (All Samples)")
    if i_addr is None or i_src is None or i_all is None:
        return [f"{name}: no stall samples in this table (was the report taken with --section SourceCounters?)"]
    reasons = [(k, h[len(REASON_PREFIX):]) for k, h in enumerate(header)
               if h.startswith(REASON_PREFIX) and "(Not Issued)" not in h]
    total = sum(number(r[i_all]) for r in rows)
    out = [name, f"  {len(rows)} instructions, {total:.0f} stall samples"]
    if total <= 0:
        return out
    by_reason = sorted(((sum(number(r[k]) for r in rows), h) for k, h in reasons), reverse=True)
    out.append("  by reason: " + ", ".join(f"{h} {100 * v / total:.1f}%" for v, h in by_reason if v > 0))
    ranked = sorted(rows, key=lambda r: -number(r[i_all]))
    for r in ranked[:top]:
        share = 100 * number(r[i_all]) / total
        if share < min_percent:
            break
        main = sorted(((number(r[k]), h) for k, h in reasons), reverse=True)[:2]
        why = " ".join(f"{h}={v:.0f}" for v, h in main if v > 0)
        out.append(f"  {share:5.1f}%  {r[i_addr]}  {r[i_src].strip()[:60]:<60}  {why}")
    return out


def main(argv):
    args = argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    top, min_percent = 20, 0.5
    if "--top" in args:
        top = int(args[args.index("--top") + 1])
    if "--min" in args:
        min_percent = float(args[args.index("--min") + 1])
    with open(args[0], encoding="utf-8", errors="replace") as f:
        tables = parse(f.read())
    if not tables:
        print(f"ncu_stalls: no per-instruction table in {args[0]}", file=sys.stderr)
        return 1
    for name, header, rows in tables:
        print("\n".join(summarise(name, header, rows, top, min_percent)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
