// SPDX-License-Identifier: Apache-2.0
// How many pieces the split-KV decode attention (kernels_decode_attention.cu) cuts a row's live keys into, for each
// (row, KV head): about one resident wave of its blocks, none shorter than kMinSplitKeys keys. Plain C++ so that a
// CPU test (tst_decode_splits) checks the rule, narrow_wave included, without a GPU.
#pragma once

#include <algorithm>
#include <cstdint>

namespace pixtral::cuda {

inline constexpr int kMinSplitKeys = 64;  // a split shorter than this is not worth its combine traffic
inline constexpr int kMaxSplits = 256;

/// span: the live keys (the widest row's); blocks_a_split: KV heads × query rows (a split's blocks); resident: the
/// attention blocks an SM holds; narrow_wave: size the wave for half a block an SM less (2.5 instead of 3; where
/// fewer fit, the wave is kept); cap: at most this many (the A/B switch PIXTRAL_CUDA_ATTN_SPLITS; kMaxSplits: none).
inline int decode_split_count(int span, std::int64_t blocks_a_split, int resident, int n_sms, bool narrow_wave,
                              int cap = kMaxSplits) {
  const std::int64_t per_split = std::max<std::int64_t>(1, blocks_a_split);
  const std::int64_t halves = 2 * std::int64_t(resident) - (narrow_wave && resident >= 3 ? 1 : 0);
  const int wave = int(std::max<std::int64_t>(1, halves * std::max(1, n_sms) / (2 * per_split)));
  const int by_keys = (std::max(0, span) + kMinSplitKeys - 1) / kMinSplitKeys;
  return std::max(1, std::min({by_keys, wave, kMaxSplits, cap}));
}

}  // namespace pixtral::cuda
