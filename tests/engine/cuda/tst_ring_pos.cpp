// SPDX-License-Identifier: Apache-2.0
// The TMA GEMVs' place in their ring of stages (engine/src/cuda/ring_pos.h, a plain header: runs on the CPU, no
// GPU needed) against what it replaces: slot = uses % S, the parity a use completes = (uses / S) & 1, the previous
// use's = ((uses / S) - 1) & 1 once uses ≥ S — for every ring size the kernels launch (2..8 stages; 1 and 9+ too),
// over many passes. A wrong parity would hang the kernels (a wait on a phase that never completes) or let a
// consumer read a stage before its bytes land.
#include <gtest/gtest.h>

#include <vector>

#include "cuda/ring_pos.h"

namespace pixtral {
namespace {

TEST(RingPos, MatchesTheUseCountsDivision) {
  for (int S = 1; S <= 12; ++S) {
    cuda::RingPos p(S);
    for (int uses = 0; uses < 40 * S + 3; ++uses) {
      ASSERT_EQ(p.slot, uses % S) << "S=" << S << " uses=" << uses;
      ASSERT_EQ(p.phase(), unsigned((uses / S) & 1)) << "S=" << S << " uses=" << uses;
      ASSERT_EQ(p.lapped(), uses >= S) << "S=" << S << " uses=" << uses;
      if (p.lapped()) {
        ASSERT_EQ(p.prev_phase(), unsigned(((uses / S) - 1) & 1)) << "S=" << S << " uses=" << uses;
      }
      p.next();
    }
  }
}

TEST(RingPos, TwoSidesOfOneRingAgreeOnEverySlotsPhases) {
  // The producer's n-th wait_empty on a slot must name the parity the consumers' n-th release of that slot
  // completed: both sides walk the same sequence, so use u of slot k is the same (pass, parity) for both.
  for (int S = 2; S <= 8; ++S) {
    cuda::RingPos producer(S), consumer(S);
    std::vector<unsigned> released(static_cast<std::size_t>(S), 2u);  // parity of each slot's last release
    for (int u = 0; u < 25 * S; ++u) {
      if (producer.lapped()) {
        ASSERT_EQ(producer.prev_phase(), released[std::size_t(producer.slot)]) << "S=" << S << " use " << u;
      }
      ASSERT_EQ(producer.slot, consumer.slot);
      ASSERT_EQ(producer.phase(), consumer.phase());
      released[std::size_t(consumer.slot)] = consumer.phase();  // the consumers release this use
      producer.next();
      consumer.next();
    }
  }
}

}  // namespace
}  // namespace pixtral
