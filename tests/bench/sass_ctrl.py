#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The scheduling bits of each instruction of a `cuobjdump -sass` listing (sm_70 and later, sm_90 included).

Each 128-bit instruction carries, in bits 105..127: the stall count (4 bits: cycles before the warp's next
instruction issues), yield (1), the scoreboard this instruction sets when its result is written (3; 7: none), the one
it sets when its sources have been read (3; 7: none), the scoreboards it waits for before it issues (6-bit mask) and
the operand reuse flags (4). cuobjdump prints the two 64-bit halves as `/* 0x... */` after the instruction and on the
line after it. A load's consumer waiting on the load's scoreboard is the expected pattern; an instruction that waits
on a scoreboard it has no data from is the kind of hold PERF_NOTES v36 7. looked for.

Usage: tests/bench/sass_ctrl.py lib.sass --match SUBSTRING [--from ADDR] [--count N]
Prints, for each function whose name contains SUBSTRING: address, stall, yield (Y), write / read scoreboard, wait
mask (the scoreboards' numbers), reuse flags, instruction.
"""
import re
import sys

FIRST = re.compile(r'/\*([0-9a-f]{4,})\*/\s*(.*?)\s*;\s*/\*\s*0x([0-9a-f]{16})\s*\*/')
SECOND = re.compile(r'^\s*/\*\s*0x([0-9a-f]{16})\s*\*/\s*$')


def decode(lo, hi):
    """The control fields of one instruction from its two 64-bit halves (lo: the first printed)."""
    c = ((hi << 64) | lo) >> 105
    return {'stall': c & 0xf, 'yield': (c >> 4) & 1, 'wb': (c >> 5) & 7, 'rb': (c >> 8) & 7,
            'wait': (c >> 11) & 0x3f, 'reuse': (c >> 17) & 0xf}


def functions(text):
    """(name, [(address, instruction, fields)]) for each function of the listing."""
    name, body, pending = None, [], None
    for line in text.splitlines():
        if 'Function :' in line:
            if name is not None:
                yield name, body
            name, body, pending = line.split('Function :', 1)[1].strip(), [], None
            continue
        if name is None:
            continue
        m = FIRST.search(line)
        if m:
            pending = (int(m.group(1), 16), m.group(2), int(m.group(3), 16))
            continue
        m = SECOND.match(line)
        if m and pending:
            addr, insn, lo = pending
            body.append((addr, insn, decode(lo, int(m.group(1), 16))))
            pending = None
    if name is not None:
        yield name, body


def fmt(addr, insn, f):
    wait = ''.join(str(b) for b in range(6) if f['wait'] >> b & 1) or '-'
    wb = '-' if f['wb'] == 7 else str(f['wb'])
    rb = '-' if f['rb'] == 7 else str(f['rb'])
    return (f"{addr:05x} S{f['stall']:02d} {'Y' if f['yield'] else '-'} W:{wb} R:{rb} wait:{wait:<6} "
            f"reuse:{f['reuse']:x}  {insn}")


def main(argv):
    if len(argv) < 2 or argv[1] in ('-h', '--help') or '--match' not in argv:
        print(__doc__.strip())
        return 2
    opt = lambda k, d: argv[argv.index(k) + 1] if k in argv else d  # noqa: E731
    match, start, count = opt('--match', ''), int(opt('--from', '0'), 16), int(opt('--count', '1000000'))
    with open(argv[1]) as f:
        text = f.read()
    found = 0
    for name, body in functions(text):
        if match not in name:
            continue
        found += 1
        print(f'== {name} ({len(body)} instructions)')
        for addr, insn, fields in [b for b in body if b[0] >= start][:count]:
            print(fmt(addr, insn, fields))
    return 0 if found else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
