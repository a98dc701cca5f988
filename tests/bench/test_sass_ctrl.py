#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tests of tests/bench/sass_ctrl.py on hand-encoded instructions (ctest: bench.sass_ctrl_script)."""
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sass_ctrl  # noqa: E402


def hi_word(stall, yld, wb, rb, wait, reuse, opcode_bits=0):
    """The second 64-bit half of an instruction with these control fields (bits 105..127 of the 128)."""
    c = stall | yld << 4 | wb << 5 | rb << 8 | wait << 11 | reuse << 17
    return c << 41 | opcode_bits


def listing(name, insns):
    """cuobjdump -sass lines: the instruction and its first half, then the second half alone."""
    lines = [f'\t\tFunction : {name}']
    for i, (text, hi) in enumerate(insns):
        lines.append(f'        /*{16 * i:04x}*/                   {text} ;        /* 0x{0x1234 + i:016x} */')
        lines.append(f'                                                              /* 0x{hi:016x} */')
    return '\n'.join(lines) + '\n'


# A shared load setting scoreboard 2, its consumer waiting on it, a branch waiting on 0 and 3.
PROGRAM = [
    ('LDS.128 R12, [R16+0x200]', hi_word(1, 1, 2, 0, 0, 0)),
    ('SHF.R.U32.HI R20, RZ, 0x4, R12', hi_word(2, 0, 7, 7, 0b000100, 0)),
    ('IMAD R18, R53.reuse, 0x8, R6', hi_word(1, 1, 7, 7, 0, 1)),
    ('@!P3 BRA 0x2a50', hi_word(6, 1, 7, 7, 0b001001, 0, opcode_bits=0x3ff)),
]


class Decode(unittest.TestCase):
    def test_fields(self):
        body = next(sass_ctrl.functions(listing('k', PROGRAM)))[1]
        self.assertEqual([a for a, _, _ in body], [0, 16, 32, 48])
        f = [fields for _, _, fields in body]
        self.assertEqual(f[0], {'stall': 1, 'yield': 1, 'wb': 2, 'rb': 0, 'wait': 0, 'reuse': 0})
        self.assertEqual((f[1]['stall'], f[1]['wb'], f[1]['rb'], f[1]['wait']), (2, 7, 7, 0b000100))
        self.assertEqual(f[2]['reuse'], 1)
        self.assertEqual((f[3]['stall'], f[3]['wait']), (6, 0b001001))  # the opcode's low bits do not leak in
        self.assertEqual(body[1][1], 'SHF.R.U32.HI R20, RZ, 0x4, R12')

    def test_format(self):
        addr, insn, fields = next(sass_ctrl.functions(listing('k', PROGRAM)))[1][3]
        line = sass_ctrl.fmt(addr, insn, fields)
        self.assertIn('S06', line)
        self.assertIn('wait:03', line)
        self.assertIn('W:- R:-', line)
        self.assertTrue(line.endswith('@!P3 BRA 0x2a50'))


class Command(unittest.TestCase):
    def test_match_and_range(self):
        text = listing('first_kernel', PROGRAM) + listing('second_kernel', PROGRAM[:1])
        with tempfile.NamedTemporaryFile('w', suffix='.sass', delete=False) as f:
            f.write(text)
        try:
            run = lambda *a: subprocess.run([sys.executable, os.path.join(HERE, 'sass_ctrl.py'), f.name, *a],  # noqa
                                            capture_output=True, text=True)
            p = run('--match', 'first', '--from', '10', '--count', '2')
            self.assertEqual(p.returncode, 0)
            self.assertIn('first_kernel (4 instructions)', p.stdout)
            self.assertNotIn('second_kernel', p.stdout)
            body = [l for l in p.stdout.splitlines() if not l.startswith('==')]
            self.assertEqual([l[:5] for l in body], ['00010', '00020'])
            self.assertEqual(run('--match', 'absent').returncode, 1)
        finally:
            os.unlink(f.name)


if __name__ == '__main__':
    unittest.main()
