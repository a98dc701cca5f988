#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of tests/bench/sass_waw.py on hand-written SASS listings (ctest: bench.sass_waw_script)."""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sass_waw  # noqa: E402


def listing(name, insns):
    """A cuobjdump -sass style section: the function line, then each instruction (two lines)."""
    lines = [f'\t\tFunction : {name}']
    for i, s in enumerate(insns):  # each instruction's two 64-bit halves, as cuobjdump prints them
        lines.append(f'        /*{16 * i:04x}*/                   {s} ;          /* 0x{0x7000 + i:016x} */')
        lines.append(f'                                                                /* 0x{0x000fe2:016x} */')
    return '\n'.join(lines) + '\n'


# The pattern PERF_NOTES v36 1. found: g's loads before the wait, h's after it, and a switch's predicated-off
# reloads of g into the same registers between them.
HAZARD = [
    'S2R R0, SR_TID.X',
    '@!P1 LDG.E.128 R36, desc[UR14][R4.64]',
    '@!P2 LDG.E.128 R8, desc[UR14][R4.64+0x1000]',
    'ACQBULK',
    'LDG.E.128 R40, desc[UR14][R20.64]',
    '@!P1 LDG.E.128 R36, desc[UR14][R16.64]',
    'LDG.E.128 R44, desc[UR14][R20.64+0x1000]',
    '@!P1 LDG.E.128 R8, desc[UR14][R16.64+0x1000]',
    'FMUL R12, R40, R36',
]
# The same loads with no reload: the first use after the wait reads them (the intended wait).
CLEAN = [
    '@!P1 LDG.E.128 R36, desc[UR14][R4.64]',
    'ACQBULK',
    'LDG.E.128 R40, desc[UR14][R20.64]',
    'FMUL R12, R40, R36',
    'MOV R36, RZ',
]


class Scan(unittest.TestCase):
    def scan(self, insns):
        return sass_waw.scan(next(sass_waw.functions(listing('k', insns)))[1])

    def test_reload_after_the_wait_is_found(self):
        found = self.scan(HAZARD)
        self.assertEqual(sorted({r for r, *_ in found}), [8, 9, 10, 11, 36, 37, 38, 39])
        r, load, distance, writer = found[0]
        self.assertIn('LDG.E.128 R8', load)
        self.assertIn('R8, desc[UR14][R16.64+0x1000]', writer)
        self.assertEqual(distance, 4)

    def test_a_read_first_is_not_a_hazard(self):
        self.assertEqual(self.scan(CLEAN), [])

    def test_a_load_consumed_before_the_wait_is_not_in_flight(self):
        insns = ['LDG.E R6, desc[UR4][R2.64]', 'IMAD R7, R6, 0x4, RZ', 'ACQBULK', 'LDG.E R6, desc[UR4][R8.64]']
        self.assertEqual(self.scan(insns), [])

    def test_one_register_of_a_wide_load(self):
        insns = ['LDG.E.128 R8, desc[UR4][R2.64]', 'ACQBULK', 'IADD3 R10, R1, 0x4, RZ']
        self.assertEqual([r for r, *_ in self.scan(insns)], [10])

    def test_cp_async_and_stores_are_not_register_loads(self):
        insns = ['LDGSTS.E.BYPASS.128 [R17], desc[UR6][R12.64]', 'LDGDEPBAR', 'ACQBULK',
                 'STS [R17], R3', 'IMAD R17, R1, 0x4, RZ']
        self.assertEqual(self.scan(insns), [])

    def test_no_wait_no_report(self):
        self.assertEqual(self.scan([s for s in HAZARD if s != 'ACQBULK']), [])


class Command(unittest.TestCase):
    def run_on(self, text, *extra):
        with tempfile.NamedTemporaryFile('w', suffix='.sass', delete=False) as f:
            f.write(text)
        try:
            return subprocess.run([sys.executable, os.path.join(HERE, 'sass_waw.py'), f.name, *extra],
                                  capture_output=True, text=True)
        finally:
            os.unlink(f.name)

    def test_exit_code_and_report(self):
        text = listing('bad_kernel', HAZARD) + listing('good_kernel', CLEAN)
        p = self.run_on(text)
        self.assertEqual(p.returncode, 1)
        self.assertIn('bad_kernel', p.stdout)
        self.assertNotIn('good_kernel', p.stdout)
        self.assertEqual(self.run_on(text, '--match', 'good').returncode, 0)
        self.assertEqual(self.run_on(listing('good_kernel', CLEAN)).returncode, 0)


if __name__ == '__main__':
    unittest.main()
