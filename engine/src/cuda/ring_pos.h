// SPDX-License-Identifier: Apache-2.0
// Where one side of a ring of S mbarrier-guarded stages stands (qtma_common.cuh's StageRing: the TMA GEMVs'
// producer, or each consumer warp): its slot, the parity of the passes over the ring it has completed, and whether
// it has completed one. Use u of a slot is pass u / S, and completes phase u / S of the slot's barriers, so the
// wait for that use's bytes is on parity (u / S) & 1 and the producer's wait for the slot's previous release on
// ((u / S) - 1) & 1 once u ≥ S. Kept as a bit flipped at each wrap instead of computed from a use count: S is a
// launch argument, and a division by it (an integer division is ~20 instructions) sat in every stage of every
// consumer warp. Plain C++ (host and device) so that a CPU test checks it against the division.
#pragma once

#if defined(__CUDACC__)
#define PIXTRAL_RING_HD __host__ __device__
#else
#define PIXTRAL_RING_HD
#endif

namespace pixtral::cuda {

struct RingPos {
  int S;              // stages
  int slot = 0;       // = uses % S
  unsigned bits = 0;  // bit 0: (uses / S) & 1, the parity this use of the slot completes; bit 1: uses ≥ S

  PIXTRAL_RING_HD explicit RingPos(int stages) : S(stages) {}
  PIXTRAL_RING_HD unsigned phase() const { return bits & 1u; }
  /// The slot has had a previous use (the producer waits for its release).
  PIXTRAL_RING_HD bool lapped() const { return (bits & 2u) != 0; }
  /// The parity the previous use of the slot completed (meaningful when lapped).
  PIXTRAL_RING_HD unsigned prev_phase() const { return (bits & 1u) ^ 1u; }
  PIXTRAL_RING_HD void next() {
    if (++slot == S) {
      slot = 0;
      bits = (bits ^ 1u) | 2u;  // both in one word: q4tma's residual mode 70 registers, 72 with two fields (three
                                // blocks an SM need ≤ 72)
    }
  }
};

}  // namespace pixtral::cuda
