#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Summarise one GPU round (scripts/gpu-round): read `pixtral bench --json` and the peer's JSON, print one short
table (figure, ours, floor, ratio, transformers, speed-up), and write the round's result lines (card, date,
commit, figure, value, floor, ratio) as JSON Lines to append to tests/bench/results.jsonl. Standard library only.

usage: round_summary.py BENCH_JSON PEER_JSON NEW_LINES_OUT [--commit C] [--tests "name=rc ..."] [--append FILE]
"""
import argparse
import datetime
import json
import os
import sys


def load(path):
    if not path or not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path) as f:
        text = f.read().strip()
    # `pixtral bench --json` prints one object on its last line; the peer writes a file with one object.
    for cand in (text, text.splitlines()[-1] if text else ""):
        try:
            return json.loads(cand)
        except ValueError:
            continue
    return None


def fmt(v, digits=2):
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("peer")
    ap.add_argument("out")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--tests", default="")
    ap.add_argument("--append", default="")
    a = ap.parse_args()
    ours, peer = load(a.bench), load(a.peer)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    card = (ours or {}).get("card") or (peer or {}).get("card") or "unknown"
    quick = bool((ours or {}).get("quick"))
    peer_by = {f["figure"]: f for f in (peer or {}).get("figures", [])}
    rows, lines = [], []
    if ours:
        for f in ours["figures"]:
            p = peer_by.get(f["figure"], {}).get("value")
            v = f["value"]
            speed = p / v if (p is not None and v) else None
            rows.append((f["figure"] + f" [{f['unit']}]", fmt(v), fmt(f.get("floor")),
                         fmt(f.get("ratio")) + ("x" if f.get("ratio") is not None else ""), fmt(p),
                         fmt(speed) + ("x" if speed is not None else "")))
            lines.append({"card": card, "date": date, "commit": a.commit, "engine": "pixtral",
                          "model": ours.get("model"), "precision": ours.get("precision", "bf16"), "context": ours.get("context"), "quick": quick,
                          "figure": f["figure"], "unit": f["unit"],
                          "value": v, "floor": f.get("floor"), "ratio": f.get("ratio")})
    for name, f in peer_by.items():
        lines.append({"card": card, "date": date, "commit": a.commit, "engine": "transformers " +
                      str(peer.get("transformers")), "model": "synthetic-pixtral-12b", "quick": quick,
                      "figure": name, "unit": f["unit"], "value": f["value"], "floor": None, "ratio": None})
    with open(a.out, "w") as fh:
        for l in lines:
            fh.write(json.dumps(l) + "\n")
    if a.append:
        with open(a.append, "a") as fh:
            for l in lines:
                fh.write(json.dumps(l) + "\n")

    prec = (ours or {}).get("precision", "bf16")
    print(f"GPU round — {card} — commit {a.commit} — {date} — {prec}{' (quick)' if quick else ''}")
    if a.tests:
        print("tests: " + a.tests)
    if not ours:
        print("pixtral bench: no result (see bench.log)")
    if not peer:
        print("transformers peer: no result (see peer.log)")
    head = ("figure", "ours", "floor", "ratio", "transformers", "speed-up")
    w = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(6)]
    print("  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(head)))
    for r in rows:
        print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
    return 0 if ours else 1


if __name__ == "__main__":
    sys.exit(main())
