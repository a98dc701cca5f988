// SPDX-License-Identifier: Apache-2.0
// The split-KV decode's merge, shared by the combine kernel (kernels_decode_attention.cu) and the fused
// wo (kernels_q4wo.cu), which merges the same splits in the same order: the same bits.
#pragma once

#include <cmath>

namespace pixtral::cuda {

/// The split-KV merge of one (row, head, dim), as the combine kernel (kernels_decode_attention.cu) and the fused wo
/// (kernels_q4wo.cu) both compute it, so that the two give the same bits: the splits' maxima m_c (base-2 logits),
/// sums l_c and outputs o_c merge into O / L, O = Σ w_c · o_c, L = Σ w_c · l_c, w_c = 2^(m_c − M) with M the largest
/// m_c (split_weight). Each of kDecodeMergeGroups groups g sums its splits c = g, g + 8, ... in index order (fmaf from
/// 0), then the groups' sums are added in index order; out = L > 0 ? O / L : 0 (merged_output). The weights depend on
/// the split and head only, so the fused wo makes each once and every dim reads it (the running log-sum-exp merge it
/// replaces took two exp2 a split and dim: 3.4 µs a launch there, PERF_NOTES v35).
inline constexpr int kDecodeMergeGroups = 8;

/// w_c of a split with maximum mc, for the largest maximum M: 0 for an empty split (mc = -inf), whatever M.
__device__ __forceinline__ float split_weight(float mc, float M) { return mc == -INFINITY ? 0.f : exp2f(mc - M); }

/// A group's running sums after one more split of weight w.
__device__ __forceinline__ void merge_add(float& o, float& l, float w, float oc, float lc) {
  o = fmaf(w, oc, o);
  l = fmaf(w, lc, l);
}

/// The merged output from the total O and L (the groups' sums added in index order).
__device__ __forceinline__ float merged_output(float O, float L) { return L > 0.f ? O / L : 0.f; }

}  // namespace pixtral::cuda
