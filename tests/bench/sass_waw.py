#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Loads after a kernel's dependent-launch wait that wait for loads issued before it (write-after-write).

A decode kernel issues loads of immutable data (weights) before `griddepcontrol.wait` (SASS: ACQBULK) so that
their latency overlaps the previous kernel's end. If an instruction after the wait writes a register such a load
is still filling, the scoreboard holds that instruction until the early load's data is back, predicated off or not.
PERF_NOTES v36 1.: an A/B switch's predicated-off reloads of the norm weight into the same registers made the folded
norm's loads of h wait for the norm weight (H200 int4 decode 2.5355 -> 2.4705 ms/token once removed).

Usage: cuobjdump -sass libpixtral_cuda.so > lib.sass; tests/bench/sass_waw.py lib.sass [--match SUBSTRING]
Prints one line per kernel with such a write, and exits 1 when there is one (0 otherwise).

The scan starts at a kernel's first ACQBULK, is linear in the listing's order and ignores branches: a load counts
as in flight at the wait when no instruction between it and the wait reads its registers, and the first instruction
after the wait that reads or writes one of them decides (a write is reported). So a report names a place to read in
the SASS, not a proof.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sass_ctrl  # noqa: E402  (the listing's parser)

REG = re.compile(r'\bR(\d+)(\.64)?\b')


def functions(text):
    """(name, [instruction text]) for each function of a cuobjdump -sass listing (sass_ctrl's parser)."""
    for name, body in sass_ctrl.functions(text):
        yield name, [insn for _, insn, _ in body]


def parse(insn):
    """(opcode, operands) of one instruction, its predicate guard dropped."""
    insn = re.sub(r'^@!?U?P[T0-9]+\s+', '', insn)
    parts = insn.split(None, 1)
    ops = [o.strip() for o in parts[1].split(',')] if len(parts) > 1 else []
    return parts[0], ops


def regs(operand):
    """General registers an operand names (R12.64 names R12 and R13); RZ is none."""
    out = []
    for m in REG.finditer(operand):
        r = int(m.group(1))
        out += [r, r + 1] if m.group(2) else [r]
    return out


def width(opcode):
    """Registers a load or a 64-bit producer writes."""
    if '.128' in opcode:
        return 4
    if '.64' in opcode or '.WIDE' in opcode or opcode.startswith('CS2R'):
        return 2
    return 1


def is_load(opcode):
    """A load into registers (not LDGSTS, which writes shared memory, nor LDGDEPBAR)."""
    return re.match(r'^(LDG|LD)(\.|$)', opcode) is not None


def writes(opcode, ops):
    """Registers an instruction writes: its first operand's, unless it is a store, a reduction or has none."""
    if not ops or re.match(r'^(ST|RED|ATOM\b|BAR|BRA|LDGSTS|SYNCS|UTMA|MEMBAR|CCTL)', opcode) or ops[0].startswith('['):
        return []
    first = regs(ops[0])
    return [first[0] + k for k in range(width(opcode))] if first else []


def scan(body):
    """[(register, load text, distance after the wait, writer text)] for one function's instructions."""
    try:
        wait = next(i for i, s in enumerate(body) if s.startswith('ACQBULK'))
    except StopIteration:
        return []
    pending = {}
    for s in body[:wait]:
        opcode, ops = parse(s)
        w = writes(opcode, ops)
        read = [r for o in (ops[1:] if w else ops) for r in regs(o)]
        for r in read:
            pending.pop(r, None)
        for r in w:
            pending.pop(r, None)
        if is_load(opcode):
            for r in w:
                pending[r] = s
    found = []
    for r, load in sorted(pending.items()):
        for j, s in enumerate(body[wait + 1:], 1):
            opcode, ops = parse(s)
            w = writes(opcode, ops)
            if r in [x for o in (ops[1:] if w else ops) for x in regs(o)]:
                break
            if r in w:
                found.append((r, load, j, s))
                break
    return found


def main(argv):
    if len(argv) < 2 or argv[1] in ('-h', '--help'):
        print(__doc__.strip())
        return 2
    match = argv[argv.index('--match') + 1] if '--match' in argv else ''
    with open(argv[1]) as f:
        text = f.read()
    bad = 0
    for name, body in functions(text):
        if match not in name:
            continue
        found = scan(body)
        if found:
            bad += 1
            r, load, j, s = found[0]
            print(f'{name}: {len(found)} register(s); e.g. R{r} of "{load}" (before the wait) written by "{s}", '
                  f'{j} instructions after it')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
