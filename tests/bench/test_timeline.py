#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of tests/bench/timeline.py on hand-built block records (ctest: bench.timeline_script)."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timeline  # noqa: E402

EMBED, NORM, ATTN, COMB = 501, 500, 400, 401
ROPE, SILU, RESID, PLAIN = 102, 101, 103, 100
SMAX, SSEL = 600, 601


def blocks(tag, grid, start, end, stagger=0):
    """grid records of one launch: block b starts at start + b * stagger; the last one ends at end."""
    return [{"tag": tag, "grid": grid, "block": b, "sm": b % 7, "t0": start + b * stagger,
             "t1": end - (grid - 1 - b) * stagger} for b in range(grid)]


def layer(t):
    """One decoder layer from t (ns): kernels overlapping the one before, as under programmatic dependent launch.
    Only the attention's and the combine's blocks record a wait: the attention's block b returns at t + 105 + b, 5 + b
    ns after the QKV GEMV ends, the combine's at t + 131 + b; only the combine's marks: block b's at t + 135 + 2b,
    its early marks at t + 133 + b."""
    rows = []
    rows += blocks(ROPE, 6, t, t + 100, 2)
    rows += [dict(r, tw=t + 105 + r["block"]) for r in blocks(ATTN, 4, t + 90, t + 130, 1)]
    rows += [dict(r, tw=t + 131 + r["block"], tm=t + 135 + 2 * r["block"], te=t + 133 + r["block"])
             for r in blocks(COMB, 2, t + 125, t + 140)]
    rows += blocks(RESID, 5, t + 135, t + 200, 3)
    rows += blocks(NORM, 1, t + 150, t + 210)
    rows += blocks(SILU, 8, t + 205, t + 400, 4)
    rows += blocks(RESID, 5, t + 390, t + 500, 3)
    rows += blocks(NORM, 1, t + 450, t + 510)
    return rows


def step(t, layers=2):
    rows = blocks(EMBED, 1, t, t + 10) + blocks(NORM, 1, t + 5, t + 20)
    for i in range(layers):
        rows += layer(t + 20 + 510 * i)
    end = t + 20 + 510 * layers
    rows += blocks(PLAIN, 9, end - 5, end + 300, 5)  # lm_head: grid > 2000 is what names it, see below
    rows += blocks(SMAX, 3, end + 310, end + 320)
    rows += blocks(SSEL, 1, end + 322, end + 330)
    return rows, end + 300


class TimelineTest(unittest.TestCase):
    def setUp(self):
        # lm_head is told from other plain GEMVs by its grid: give it a realistic one.
        rows, self.lm_end = step(1000)
        rows2, _ = step(self.lm_end + 400)
        self.rows = []
        for r in rows + rows2:
            if r["tag"] == PLAIN:
                r = dict(r, grid=16384)
            self.rows.append(r)
        # lm_head's 9 records stand for a 16384-block launch: pad each launch with copies of its last block.
        pads = []
        for start in (1000, self.lm_end + 400):
            lm = [r for r in self.rows if r["tag"] == PLAIN and r["t0"] >= start][:9]
            pads += [dict(lm[-1], block=9 + i) for i in range(16384 - 9)]
        self.rows += pads

    def test_launches_are_recovered_per_tag_and_grid(self):
        seq = timeline.launches(self.rows)
        timeline.label(seq)
        names = [l["name"] for l in seq]
        # Two steps: embed, norm, 2 × 8 layer kernels, lm_head, two sampler kernels.
        self.assertEqual(len(seq), 2 * (2 + 16 + 3))
        self.assertEqual(names[:10], ["embed", "norm", "bf16 rope (qkv)", "attention", "combine",
                                      "bf16 residual (wo)", "norm", "bf16 silu (w1;w3)", "bf16 residual (w2)",
                                      "norm"])
        self.assertEqual(names[18:21], ["bf16 plain (lm_head)", "sample max", "sample select"])
        wo = [l for l in seq if l["name"] == "bf16 residual (wo)"][0]
        self.assertEqual((wo["start"] - 1000, wo["end"] - 1000), (20 + 135, 20 + 200))

    def test_adds_sum_to_the_step_and_overlap_is_counted(self):
        seq = timeline.launches(self.rows)
        timeline.label(seq)
        steps = timeline.split_steps(seq)
        self.assertEqual(len(steps), 2)
        agg, totals = timeline.aggregate(steps)
        self.assertEqual(totals[0], self.lm_end + 30 - 1000)  # first start to the sampler's end
        self.assertEqual(sum(a["adds"] for a in agg.values()), sum(totals))
        # The attention starts 10 ns before the QKV GEMV ends and ends 30 ns after it: overlap 10, adds 30.
        attn = agg["attention"]
        self.assertEqual((attn["n"], attn["ovl"] // attn["n"], attn["adds"] // attn["n"]), (4, 10, 30))
        # The norm after wo lies inside wo's span except its last 10 ns.
        self.assertEqual(agg["norm"]["n"], 2 * 5)

    def test_after_lm_head(self):
        seq = timeline.launches(self.rows)
        timeline.label(seq)
        tails = timeline.after_lm_head(timeline.split_steps(seq))
        self.assertEqual(tails["sample max start"], 10)
        self.assertEqual(tails["sample select end"], 30)
        self.assertEqual(tails["next embed start"], 400)

    def test_layer_blocks_percentiles(self):
        seq = timeline.launches(self.rows)
        timeline.label(seq)
        steps = timeline.split_steps(seq)
        rows = timeline.layer_blocks(steps[0], 0)
        # Layer 0 starts at 1000 + 20, where the step's first norm (the launch before its QKV GEMV) ends.
        self.assertEqual([r[0] for r in rows], ["bf16 rope (qkv)", "attention", "combine", "bf16 residual (wo)",
                                                 "norm", "bf16 silu (w1;w3)", "bf16 residual (w2)", "norm"])
        name, grid, st, en, wt, mk = rows[0]
        # 6 blocks staggered by 2: starts 0, 2, .., 10; ends 90, 92, .., 100; no wait or mark recorded.
        self.assertEqual((grid, st, en, wt, mk), (6, [0, 6, 10], [90, 96, 100, 100], None, None))
        self.assertEqual(rows[1][4], [105, 107, 108])  # the attention's waits: 105 .. 108, nearest-rank median
        self.assertIsNone(rows[1][5])
        self.assertEqual(rows[2][4:], ([131, 132, 132], [135, 137, 137]))  # the combine's waits and marks
        _, _, st, en, _, _ = rows[5]  # silu: 8 blocks staggered by 4 from 205
        self.assertEqual((st, en), ([205, 221, 233], [372, 388, 396, 400]))
        self.assertEqual(timeline.layer_blocks(steps[0], 2), [])

    def test_waits_split_the_span_after_the_kernel_before(self):
        seq = timeline.launches(self.rows)
        timeline.label(seq)
        w = timeline.waits(timeline.split_steps(seq))
        # The attention: first wait 5 ns after the QKV GEMV's end, the median (107) 7, and its end (130) 23 ns after
        # that median; the combine (waits 131, 132 after the attention's end at 130; it ends at 140): 1, 2, 8.
        self.assertEqual(w, {"attention": (5.0, 7.0, 23.0), "combine": (1.0, 2.0, 8.0)})

    def test_marks_cut_the_work_after_the_wait(self):
        seq = timeline.launches(self.rows)
        timeline.label(seq)
        m = timeline.marks(timeline.split_steps(seq))
        # Only the combine marked: median wait 132, marks 135 and 137 (median, nearest rank: 137), end 140.
        self.assertEqual(m, {"combine": (5.0, 5.0, 3.0)})

    def test_early_marks_cut_the_wait_to_the_mark(self):
        seq = timeline.launches(self.rows)
        timeline.label(seq)
        e = timeline.early_marks(timeline.split_steps(seq))
        # The combine: median wait 132, early marks 133 and 134 (median, nearest rank: 134), median mark 137.
        self.assertEqual(e, {"combine": (2.0, 3.0)})

    def test_layer_sms_groups_by_blocks_an_sm(self):
        seq = timeline.launches(self.rows)
        timeline.label(seq)
        steps = timeline.split_steps(seq)
        sms = dict(timeline.layer_sms(steps[0], 0))
        # blocks() puts block b on SM b % 7: the silu launch's 8 blocks are two on SM 0 (blocks 0 and 7), one on
        # SMs 1..6; block b ends at 400 - (7 - b) * 4 after the layer's start (1020): SMs 1..6 at 376 .. 396, median
        # (nearest rank) 388.
        self.assertEqual(sms["bf16 silu (w1;w3)"], [(1, 6, 388, 396), (2, 1, 400, 400)])
        self.assertEqual(sms["bf16 rope (qkv)"], [(1, 6, 96, 100)])
        self.assertEqual(timeline.layer_sms(steps[0], 2), [])

    def test_a_cut_launch_is_dropped_with_a_warning(self):
        rows = [r for r in self.rows if not (r["tag"] == SILU and r["block"] == 3 and r["t0"] < 1000 + 600)]
        with tempfile.TemporaryFile("w+") as err:
            old, sys.stderr = sys.stderr, err
            try:
                seq = timeline.launches(rows)
            finally:
                sys.stderr = old
            err.seek(0)
            self.assertIn("not a multiple of the grid", err.read())
        self.assertEqual(sum(1 for l in seq if l["tag"] == SILU), 3)

    def test_reads_the_csv_the_library_writes(self):
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            f.write("tag,grid,block,sm,t0,t1,tw,tm,te\n")
            for r in self.rows[:50]:
                f.write(f"{r['tag']},{r['grid']},{r['block']},{r['sm']},{r['t0']},{r['t1']},{r.get('tw', 0)},"
                        f"{r.get('tm', 0)},{r.get('te', 0)}\n")
            path = f.name
        try:
            self.assertEqual(timeline.read(path)[:50],
                             [dict(r, tw=r.get("tw", 0), tm=r.get("tm", 0), te=r.get("te", 0)) for r in self.rows[:50]])
            self.assertTrue(any(r["tm"] for r in timeline.read(path)[:50]))
            self.assertTrue(any(r["te"] for r in timeline.read(path)[:50]))
        finally:
            os.unlink(path)
        # A file of an older build has no tw, tm or te column: read as no waits and no marks.
        with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
            f.write("tag,grid,block,sm,t0,t1\n1,1,0,0,5,9\n")
            path = f.name
        try:
            rows = timeline.read(path)
            self.assertEqual(timeline.launches(rows)[0]["tws"], [])
            self.assertEqual(timeline.launches(rows)[0]["tms"], [])
            self.assertEqual(timeline.launches(rows)[0]["tes"], [])
        finally:
            os.unlink(path)


if __name__ == "__main__":
    unittest.main()
