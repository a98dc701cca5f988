#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of tests/bench/ncu_stalls.py on a hand-built source-page CSV, and of scripts/gpu-ncu with a stand-in ncu
(ctest: bench.ncu_stalls_script)."""
import os
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ncu_stalls  # noqa: E402

HEADER = ('"Address","Source","Warp Stall Sampling (All Samples)","Warp Stall Sampling (Not-issued Samples)",'
          '"# Samples","stall_barrier","stall_long_sb","stall_short_sb","stall_long_sb (Not Issued)"')


def row(addr, src, samples, barrier, long_sb, short_sb):
    return f'"{addr}","{src}","{samples}","{samples}","{samples}","{barrier}","{long_sb}","{short_sb}","{long_sb}"'


def table(name, rows):
    return "\n".join([f'"Kernel Name","{name}"', HEADER] + rows)


A = [row("0x10", "      LDG.E R2, [R4.64]", 10, 0, 0, 10),
     row("0x20", "      FADD R3, R2, R3", 60, 0, 55, 5),
     row("0x30", "      BAR.SYNC 0x0", 30, 30, 0, 0)]
B = [row("0x40", "      HMMA.16816.F32.BF16 R8, R8, R4, R8", 4, 0, 1, 3)]


class NcuStallsTest(unittest.TestCase):
    def setUp(self):
        # Kernel "a" twice (ncu repeats tables), then "b".
        self.text = "\n".join([table("a", A), table("a", A), table("b", B)]) + "\n"

    def test_parse_drops_repeated_tables(self):
        tables = ncu_stalls.parse(self.text)
        self.assertEqual([t[0] for t in tables], ["a", "b"])
        self.assertEqual(len(tables[0][2]), 3)

    def test_summary_shares_reasons_and_order(self):
        name, header, rows = ncu_stalls.parse(self.text)[0]
        out = ncu_stalls.summarise(name, header, rows, top=2, min_percent=0.0)
        self.assertIn("100 stall samples", out[1])
        # long_sb 55 of 100, barrier 30, short_sb 15; the Not-issued column is not a reason of its own
        self.assertEqual(out[2], "  by reason: long_sb 55.0%, barrier 30.0%, short_sb 15.0%")
        self.assertEqual(len(out), 5)  # name, totals, reasons, the two hottest instructions
        self.assertIn("60.0%  0x20  FADD R3, R2, R3", out[3])
        self.assertTrue(out[3].endswith("long_sb=55 short_sb=5"))
        self.assertIn("30.0%  0x30  BAR.SYNC 0x0", out[4])

    def test_min_percent_cuts_the_list(self):
        name, header, rows = ncu_stalls.parse(self.text)[0]
        out = ncu_stalls.summarise(name, header, rows, top=10, min_percent=20.0)
        self.assertEqual(len(out), 5)  # 60 % and 30 %; the 10 % line is below the cut

    def test_main_on_a_file_and_on_a_file_without_tables(self):
        with tempfile.TemporaryDirectory() as d:
            good, bad = os.path.join(d, "src.csv"), os.path.join(d, "none.csv")
            with open(good, "w") as f:
                f.write(self.text)
            with open(bad, "w") as f:
                f.write('"Kernel Name","a"\nno table here\n')
            self.assertEqual(ncu_stalls.main(["ncu_stalls.py", good, "--top", "1"]), 0)
            self.assertEqual(ncu_stalls.main(["ncu_stalls.py", bad]), 1)

    def test_table_without_sampling_columns_says_so(self):
        out = ncu_stalls.summarise("k", ["Address", "Source"], [["0x0", "NOP"]])
        self.assertEqual(len(out), 1)
        self.assertIn("SourceCounters", out[0])


# scripts/gpu-ncu's plumbing with a stand-in ncu: the profile run, the details page and the source page.
STUB_NCU = r"""#!/usr/bin/env bash
args="$*"
if [[ $args == *" -o "* ]]; then
  out=${args##* -o }; out=${out%% *}
  echo "$args" > "$out.args"; touch "$out.ncu-rep"; echo "==PROF== Disconnected"; exit 0
fi
if [[ $args == *"--page source"* ]]; then cat "$STUB_CSV"; exit 0; fi
echo "  void k<1>(int) (192, 1, 1)x(256, 1, 1), Context 1, Stream 13, Device 0, CC 9.0"
echo "    Duration                         us        16.00"
echo "    Unrelated Metric                 %         1.00"
"""


class GpuNcuScriptTest(unittest.TestCase):
    def test_runs_ncu_and_summarises(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with tempfile.TemporaryDirectory() as d:
            os.mkdir(os.path.join(d, "bin"))
            ncu, pixtral = os.path.join(d, "bin", "ncu"), os.path.join(d, "bin", "pixtral")
            csv_path = os.path.join(d, "s.csv")
            with open(ncu, "w") as f:
                f.write(STUB_NCU)
            with open(pixtral, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            with open(csv_path, "w") as f:
                f.write(table("k", A) + "\n")
            for p in (ncu, pixtral):
                os.chmod(p, os.stat(p).st_mode | stat.S_IEXEC)
            env = dict(os.environ, NCU=ncu, OUT=d, STUB_CSV=csv_path)
            r = subprocess.run(["bash", os.path.join(root, "scripts", "gpu-ncu"), "--pixtral", pixtral,
                                "--precision", "int8", "--kernel", "qgemv", "--skip", "7", "--count", "2"],
                               env=env, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
            self.assertIn("(192, 1, 1)x(256, 1, 1)", r.stdout)
            self.assertIn("Duration", r.stdout)
            self.assertNotIn("Unrelated Metric", r.stdout)
            self.assertIn("by reason: long_sb 55.0%", r.stdout)
            with open(os.path.join(d, "ncu", "report.args")) as f:
                args = f.read()
            for want in ("--kernel-name regex:qgemv", "--launch-skip 7", "--launch-count 2",
                         "--section SourceCounters", "bench --quick --precision int8"):
                self.assertIn(want, args)

    def test_no_report_is_an_error(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with tempfile.TemporaryDirectory() as d:
            os.mkdir(os.path.join(d, "bin"))
            ncu, pixtral = os.path.join(d, "bin", "ncu"), os.path.join(d, "bin", "pixtral")
            with open(ncu, "w") as f:
                f.write("#!/bin/sh\necho 'ERR_NVGPUCTRPERM'\nexit 1\n")
            with open(pixtral, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            for p in (ncu, pixtral):
                os.chmod(p, os.stat(p).st_mode | stat.S_IEXEC)
            r = subprocess.run(["bash", os.path.join(root, "scripts", "gpu-ncu"), "--pixtral", pixtral],
                               env=dict(os.environ, NCU=ncu, OUT=d), capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1)
            self.assertIn("no report", r.stdout)
            self.assertIn("ERR_NVGPUCTRPERM", r.stdout)


if __name__ == "__main__":
    unittest.main()
