// SPDX-License-Identifier: Apache-2.0
// The split-KV decode attention's split count (engine/src/cuda/decode_splits.h, a plain header: runs on the CPU, no
// GPU needed): one resident wave of blocks (3 an SM on Hopper: 49 splits for Pixtral's 8 KV heads on 132 SMs), the
// int4 decode's narrow wave (2.5 an SM: 41; kept where fewer than 3 fit), no split under 64 keys, the A/B cap.
#include <gtest/gtest.h>

#include "cuda/decode_splits.h"

namespace pixtral {
namespace {

using cuda::decode_split_count;

constexpr int kSms = 132;        // H100 / H200 SXM
constexpr int kPageQaKeys = 4193;  // the page-QA workload's context at its first decode step (performance.md)

TEST(DecodeSplits, OneResidentWaveOfBlocks) {
  // 8 KV heads × 1 row a split; 3 blocks an SM: floor(3 · 132 / 8) = 49, 96 keys each (PERF_NOTES v19 6.).
  EXPECT_EQ(decode_split_count(kPageQaKeys, 8, 3, kSms, false), 49);
  // Four query rows (a short follow-up's decode rows): 32 blocks a split, floor(3 · 132 / 32) = 12.
  EXPECT_EQ(decode_split_count(kPageQaKeys, 32, 3, kSms, false), 12);
  // A device whose SMs hold 2 one-stage blocks (100 KB of shared memory): floor(2 · 132 / 8) = 33.
  EXPECT_EQ(decode_split_count(kPageQaKeys, 8, 2, kSms, false), 33);
}

TEST(DecodeSplits, NarrowWaveIsHalfABlockAnSmLess) {
  EXPECT_EQ(decode_split_count(kPageQaKeys, 8, 3, kSms, true), 41);   // floor(2.5 · 132 / 8)
  EXPECT_EQ(decode_split_count(kPageQaKeys, 32, 3, kSms, true), 10);  // floor(2.5 · 132 / 32)
  // Where fewer than 3 blocks fit an SM the wave is kept.
  EXPECT_EQ(decode_split_count(kPageQaKeys, 8, 2, kSms, true), decode_split_count(kPageQaKeys, 8, 2, kSms, false));
  EXPECT_EQ(decode_split_count(kPageQaKeys, 8, 1, kSms, true), decode_split_count(kPageQaKeys, 8, 1, kSms, false));
}

TEST(DecodeSplits, NoSplitUnderSixtyFourKeys) {
  EXPECT_EQ(decode_split_count(0, 8, 3, kSms, false), 1);
  EXPECT_EQ(decode_split_count(-5, 8, 3, kSms, false), 1);
  EXPECT_EQ(decode_split_count(64, 8, 3, kSms, false), 1);
  EXPECT_EQ(decode_split_count(65, 8, 3, kSms, false), 2);
  EXPECT_EQ(decode_split_count(49 * 64, 8, 3, kSms, false), 49);
  EXPECT_EQ(decode_split_count(48 * 64 + 1, 8, 3, kSms, false), 49);
  EXPECT_EQ(decode_split_count(48 * 64, 8, 3, kSms, false), 48);
  for (int span = 1; span < 20000; span += 37) {
    const int n = decode_split_count(span, 8, 3, kSms, false);
    ASSERT_GE(n, 1) << span;
    ASSERT_LE(n, 49) << span;
    ASSERT_LE((n - 1) * cuda::kMinSplitKeys, span - 1) << "a split under 64 keys at span " << span;
    ASSERT_LE(decode_split_count(span, 8, 3, kSms, false), decode_split_count(span + 37, 8, 3, kSms, false)) << span;
  }
}

TEST(DecodeSplits, CapAndLimit) {
  EXPECT_EQ(decode_split_count(kPageQaKeys, 8, 3, kSms, false, 36), 36);
  EXPECT_EQ(decode_split_count(kPageQaKeys, 8, 3, kSms, false, 100), 49);  // a cap above the wave changes nothing
  EXPECT_EQ(decode_split_count(kPageQaKeys, 8, 3, kSms, true, 1), 1);
  // One KV head on a very wide device and a long context: at most kMaxSplits.
  EXPECT_EQ(decode_split_count(1 << 20, 1, 3, 1000, false), cuda::kMaxSplits);
  // A device count of 0 (unknown) still gives a wave of at least one split.
  EXPECT_EQ(decode_split_count(kPageQaKeys, 8, 3, 0, false), 1);
  EXPECT_GE(decode_split_count(kPageQaKeys, 1 << 20, 3, kSms, false), 1);
}

}  // namespace
}  // namespace pixtral
