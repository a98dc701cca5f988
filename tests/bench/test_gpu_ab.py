#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of scripts/gpu-ab with stand-in pixtral binaries and libraries (ctest: bench.gpu_ab_script).

A stand-in "library" is a file holding a number; a stand-in pixtral prints `decode <that number + its own offset +
$FAKE_ADD + $FAKE_ADD2>` and `followup_ttft <ten times that>` for the library PIXTRAL_CUDA_LIBRARY names (nothing
when the file says "none"), so every figure in the output says which binary, library and environment produced it."""
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPU_AB = os.path.join(ROOT, "scripts", "gpu-ab")

PIXTRAL = """#!/usr/bin/env bash
# stand-in pixtral: bench --quick --precision P only
[[ "$1 $2 $3" == "bench --quick --precision" ]] || {{ echo "unexpected arguments: $*" >&2; exit 2; }}
echo "$4" >> "{log}"
v=$(cat "$PIXTRAL_CUDA_LIBRARY")
[[ $v == none ]] && {{ echo "bench failed"; exit 1; }}
echo "vision_encoder 12.0 6.6 1.8x ms"
awk -v v="$v" -v o="{offset}" -v a="${{FAKE_ADD:-0}}" -v b="${{FAKE_ADD2:-0}}" \
  'BEGIN {{d = v + o + a + b; printf "decode %.3f 5.6 1.1x ms/token\\nfollowup_ttft %.3f 9 2x ms\\n", d, 10 * d}}'
"""


class GpuAbTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gpu-ab-test-")
        self.log = os.path.join(self.dir, "precisions.log")
        self.bin_a = self.pixtral("a", 0)
        self.bin_b = self.pixtral("b", 1)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def pixtral(self, name, offset):
        path = os.path.join(self.dir, name, "pixtral")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(PIXTRAL.format(log=self.log, offset=offset))
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
        return path

    def lib(self, rel, value):
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(value + "\n")
        return path

    def run_ab(self, *args):
        env = dict(os.environ)
        env.pop("FAKE_ADD", None)
        env.pop("FAKE_ADD2", None)
        p = subprocess.run(["bash", GPU_AB, *args], capture_output=True, text=True, env=env, cwd=self.dir)
        return p.returncode, p.stdout, p.stderr

    @staticmethod
    def table(out, figure="decode"):
        """{label: (median as a number, ratio as printed)} from the figure's summary table (rows after its header, up
        to the next table's)."""
        lines = out.splitlines()
        rows = lines[[i for i, l in enumerate(lines) if l.startswith(figure + ": library")][0] + 1:]
        table = {}
        for r in rows:
            if ": library" in r[:44]:
                break
            label, rest = r[:44].rstrip(), r[44:].split()
            table[label] = (float(rest[0]), rest[1]) if rest[0] != "no" else ("no value", None)
        return table

    def test_binaries_libraries_and_switches(self):
        a = self.lib("a.so", "6.25")
        rc, out, err = self.run_ab("--precision", "int4", "--rounds", "3", "--pixtral", self.bin_a, a,
                                   "FAKE_ADD=0.5@" + a)
        self.assertEqual(rc, 0, err)
        t = self.table(out)
        self.assertEqual(t["a.so"], (6.25, "1.000"))
        self.assertEqual(t["FAKE_ADD=0.5@a.so"], (6.75, "1.080"))
        # Interleaved: A B A B A B.
        rounds = [l.split()[2] for l in out.splitlines() if l.startswith("round ")]
        self.assertEqual(rounds, ["a.so", "FAKE_ADD=0.5@a.so"] * 3)
        with open(self.log) as f:
            self.assertEqual(set(f.read().split()), {"int4"})

    def test_several_figures_from_the_same_runs(self):
        a = self.lib("a.so", "6.25")
        rc, out, err = self.run_ab("--rounds", "3", "--figure", "decode,followup_ttft", "--pixtral", self.bin_a, a,
                                   "FAKE_ADD=0.5@" + a)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.table(out)["FAKE_ADD=0.5@a.so"], (6.75, "1.080"))
        self.assertEqual(self.table(out, "followup_ttft")["a.so"], (62.5, "1.000"))
        self.assertEqual(self.table(out, "followup_ttft")["FAKE_ADD=0.5@a.so"], (67.5, "1.080"))
        with open(self.log) as f:
            self.assertEqual(len(f.read().split()), 6)  # one bench a library a round, not one a figure
        # A figure no run prints: reported, and the exit code says so.
        rc, out, err = self.run_ab("--rounds", "1", "--figure", "decode,prefill", "--pixtral", self.bin_a, a)
        self.assertEqual(rc, 1)
        self.assertIn("round 1 a.so: no 'prefill' line", err)
        self.assertEqual(self.table(out)["a.so"][0], 6.25)

    def test_several_switches_a_library(self):
        a = self.lib("a.so", "6.25")
        rc, out, err = self.run_ab("--rounds", "1", "--pixtral", self.bin_a, a, "FAKE_ADD=0.5,FAKE_ADD2=0.25@" + a,
                                   "FAKE_ADD2=1@" + a)
        self.assertEqual(rc, 0, err)
        t = self.table(out)
        self.assertEqual(t["FAKE_ADD=0.5,FAKE_ADD2=0.25@a.so"][0], 7.0)
        self.assertEqual(t["FAKE_ADD2=1@a.so"][0], 7.25)
        # A piece without '=' would become env's command: refused before anything runs.
        rc, _, err = self.run_ab("--rounds", "1", "--pixtral", self.bin_a, "FAKE_ADD=1,oops@" + a)
        self.assertEqual(rc, 2)
        self.assertIn("is not VAR=VALUE", err)

    def test_each_library_runs_under_the_pixtral_named_before_it(self):
        a = self.lib("a.so", "6.25")
        b = self.lib("b.so", "3")
        rc, out, err = self.run_ab("--rounds", "1", "--pixtral", self.bin_a, a, "--pixtral", self.bin_b, b)
        self.assertEqual(rc, 0, err)
        t = self.table(out)
        self.assertEqual(t["a.so"][0], 6.25)
        self.assertEqual(t["b.so"][0], 4.0)  # bin_b adds 1

    @unittest.skipUnless(shutil.which("xz"), "no xz on this machine")
    def test_xz_library_is_unpacked_next_to_itself(self):
        b = self.lib("packed/b.so", "3")
        subprocess.run(["xz", b], check=True)
        self.assertFalse(os.path.exists(b))
        rc, out, err = self.run_ab("--rounds", "1", "--pixtral", self.bin_a, b + ".xz")
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(b))
        self.assertEqual(self.table(out)["b.so"][0], 3.0)

    def test_same_names_are_told_apart(self):
        x = self.lib("x/lib.so", "5")
        y = self.lib("y/lib.so", "6")
        rc, out, err = self.run_ab("--rounds", "1", "--pixtral", self.bin_a, x, y)
        self.assertEqual(rc, 0, err)
        t = self.table(out)
        self.assertEqual(t["x/lib.so"][0], 5.0)
        self.assertEqual(t["y/lib.so"][0], 6.0)
        # The same library under two binaries: numbered.
        rc, out, err = self.run_ab("--rounds", "1", "--pixtral", self.bin_a, x, "--pixtral", self.bin_b, x)
        self.assertEqual(rc, 0, err)
        t = self.table(out)
        self.assertEqual(t["x/lib.so #1"][0], 5.0)
        self.assertEqual(t["x/lib.so #2"][0], 6.0)

    def test_a_run_without_the_figure_is_reported_and_fails(self):
        a = self.lib("a.so", "6.25")
        bad = self.lib("bad.so", "none")
        rc, out, err = self.run_ab("--rounds", "2", "--pixtral", self.bin_a, a, bad)
        self.assertEqual(rc, 1)
        self.assertIn("round 1 bad.so: no 'decode' line", err)
        t = self.table(out)
        self.assertEqual(t["a.so"][0], 6.25)
        self.assertEqual(t["bad.so"], ("no value", None))

    def test_bad_arguments(self):
        rc, _, err = self.run_ab("--pixtral", os.path.join(self.dir, "missing"), self.lib("a.so", "1"))
        self.assertEqual(rc, 2)
        self.assertIn("no pixtral binary", err)
        rc, _, err = self.run_ab("--pixtral", self.bin_a, os.path.join(self.dir, "missing.so"))
        self.assertEqual(rc, 2)
        self.assertIn("no such library", err)
        rc, _, err = self.run_ab("--pixtral", self.bin_a)
        self.assertEqual(rc, 2)
        self.assertIn("name at least one", err)


if __name__ == "__main__":
    unittest.main()
