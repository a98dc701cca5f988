// SPDX-License-Identifier: Apache-2.0
// The split-KV decode's log-sum-exp merge, shared by the combine kernel (kernels_decode_attention.cu) and the fused
// wo (kernels_q4wo.cu), which merges the same splits in the same order: the same bits.
#pragma once

#include <cmath>

namespace pixtral::cuda {

/// Splits a (row, head)'s merge takes in one group: group g of kDecodeMergeGroups merges splits g, g + 8, ... in
/// index order, then the groups are merged in index order.
inline constexpr int kDecodeMergeGroups = 8;

/// Merges a split's (m, l, o) into a running (m, l, o): log-sum-exp rescaling, base 2. A split with m = -inf
/// (empty) has weight 0.
__device__ __forceinline__ void lse_merge(float& m, float& l, float& o, float mc, float lc, float oc) {
  if (mc == -INFINITY) return;
  const float mn = fmaxf(m, mc);
  const float a = exp2f(m - mn), b = exp2f(mc - mn);  // a = 0 while m = -inf
  o = o * a + oc * b;
  l = l * a + lc * b;
  m = mn;
}

}  // namespace pixtral::cuda
