#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of scripts/gpu-pack with a stand-in build folder (ctest: bench.gpu_pack_script): what it packs, that the
packed libraries unpack to the same bytes, that it empties its own bin folder and refuses bad arguments, a library
of another backend ABI than the source's and a ninja build whose CUDA objects lost their header dependencies."""
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPU_PACK = os.path.join(ROOT, "scripts", "gpu-pack")


class GpuPackTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="gpu-pack-test-")
        self.build = os.path.join(self.dir, "build")
        os.makedirs(os.path.join(self.build, "bin"))
        for name in ("pixtral", "tst_cuda_ops", "tst_quant_tma_cuda", "tst_cpu_ops", "pixtral_cuda_lab"):
            self.write(os.path.join(self.build, "bin", name), b"#!/bin/sh\n# " + name.encode() + b"\n", True)
        self.lib = os.path.join(self.build, "bin", "libpixtral_cuda.so")
        self.write(self.lib, os.urandom(4096) + b"library of record")
        self.write(os.path.join(self.build, "CMakeCache.txt"), b"CMAKE_HOME_DIRECTORY:INTERNAL=/somewhere\n")
        self.variant = os.path.join(self.dir, "variant.so")
        self.write(self.variant, os.urandom(2048) + b"a variant")
        self.out = os.path.join(self.dir, "out")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def write(path, data, executable=False):
        with open(path, "wb") as f:
            f.write(data)
        if executable:
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)

    def pack(self, *args):
        return subprocess.run([GPU_PACK, "--build-dir", self.build, "--out", self.out, *args],
                              capture_output=True, text=True, timeout=60)

    @staticmethod
    def unpacked(path):
        with lzma.open(path) as f:
            return f.read()

    def test_packs_binaries_tests_cache_and_libraries(self):
        r = self.pack("v1=" + self.variant)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(sorted(os.listdir(os.path.join(self.out, "bin"))),
                         ["libpixtral_cuda.so.xz", "pixtral", "tst_cuda_ops", "tst_quant_tma_cuda", "v1.so.xz"])
        self.assertTrue(os.access(os.path.join(self.out, "bin", "pixtral"), os.X_OK))
        self.assertTrue(os.path.isfile(os.path.join(self.out, "CMakeCache.txt")))
        with open(self.lib, "rb") as f:
            self.assertEqual(self.unpacked(os.path.join(self.out, "bin", "libpixtral_cuda.so.xz")), f.read())
        with open(self.variant, "rb") as f:
            self.assertEqual(self.unpacked(os.path.join(self.out, "bin", "v1.so.xz")), f.read())
        self.assertIn("MiB in", r.stdout)

    def test_a_second_pack_replaces_the_first(self):
        self.assertEqual(self.pack("v1=" + self.variant).returncode, 0)
        r = self.pack()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("v1.so.xz", os.listdir(os.path.join(self.out, "bin")))

    def test_refuses_bad_arguments(self):
        for args in (["v1=" + os.path.join(self.dir, "missing.so")], ["bad/name=" + self.variant],
                     ["libpixtral_cuda=" + self.variant], ["not-a-variant"], ["--bogus"]):
            r = self.pack(*args)
            self.assertEqual(r.returncode, 2, f"{args}: {r.stdout}{r.stderr}")
            self.assertFalse(os.path.exists(os.path.join(self.out, "bin")), f"{args} packed something")

    def test_refuses_a_build_without_its_library(self):
        os.remove(self.lib)
        r = self.pack()
        self.assertEqual(r.returncode, 2)
        self.assertIn("libpixtral_cuda.so", r.stderr)

    def test_refuses_a_library_of_another_backend_abi(self):
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler to build a stand-in library")
        with open(os.path.join(ROOT, "engine", "src", "cuda", "cuda_abi.h")) as f:
            want = int(re.search(r"kCudaAbiVersion = (\d+);", f.read()).group(1))
        src = os.path.join(self.dir, "abi.c")
        for abi in (want - 1, want):  # a stale build first: nothing packed; then the source's ABI: packed
            self.write(src, b"int pixtral_cuda_abi(void) { return %d; }\n" % abi)
            subprocess.run([cc, "-shared", "-fPIC", "-o", self.lib, src], check=True, timeout=60)
            r = self.pack()
            if abi != want:
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("is backend ABI %d" % abi, r.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.out, "bin")), "a stale library was packed")
            else:
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertNotIn("backend ABI", r.stderr)
                self.assertIn("libpixtral_cuda.so.xz", os.listdir(os.path.join(self.out, "bin")))

    def test_refuses_objects_whose_header_dependencies_were_lost(self):
        if not shutil.which("ninja"):
            self.skipTest("no ninja")
        rules = ("rule dep\n  command = printf '%s: k.cuh\\n' $out > $out.d && touch $out\n  deps = gcc\n"
                 "  depfile = $out.d\nrule nodep\n  command = touch $out\n  deps = gcc\n  depfile = $out.d\n")
        for lost in (True, False):
            # The library's objects a and b (b's dependencies lost or not), and a lab's object that lost them (not
            # in the library: no refusal).
            kd = "pixtral_cuda_kernels.dir/"
            self.write(os.path.join(self.build, "build.ninja"),
                       (rules + "build %sa.cu.o: dep k.cu\nbuild %sb.cu.o: %s k.cu\nbuild lab.dir/l.cu.o: nodep k.cu\n"
                        % (kd, kd, "nodep" if lost else "dep")).encode())
            for f in ("k.cu", "k.cuh"):
                self.write(os.path.join(self.build, f), b"")
            for f in (".ninja_deps", ".ninja_log"):
                if os.path.exists(os.path.join(self.build, f)):
                    os.remove(os.path.join(self.build, f))
            for d in ("pixtral_cuda_kernels.dir", "lab.dir"):
                shutil.rmtree(os.path.join(self.build, d), ignore_errors=True)
                os.makedirs(os.path.join(self.build, d))
            subprocess.run(["ninja", "-C", self.build], check=True, capture_output=True, timeout=60)
            r = self.pack()
            if lost:
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("b.cu.o", r.stderr)
                self.assertNotIn("a.cu.o", r.stderr)
                self.assertNotIn("l.cu.o", r.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.out, "bin")), "a stale build was packed")
            else:
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_refuses_to_pack_into_the_build_folder(self):
        r = subprocess.run([GPU_PACK, "--build-dir", self.build, "--out", self.build], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertTrue(os.path.isfile(os.path.join(self.build, "bin", "pixtral")), "the build folder was touched")


if __name__ == "__main__":
    unittest.main()
