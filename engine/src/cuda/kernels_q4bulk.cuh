// SPDX-License-Identifier: Apache-2.0
// The int4 × bf16 decode GEMV with W delivered by Hopper bulk asynchronous copies (kernels_q4bulk.cu): the math,
// work split and reduction order of launch_q4mma (kernels_q4mma.cu), so the two give the same bits; only the way W
// reaches shared memory differs (one cp.async.bulk a row and ring stage per warp, mbarrier completion, instead of a
// 16-byte cp.async per thread and group). Formats in core/quant.h.
#pragma once

#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/gemv_modes.cuh"

namespace pixtral::cuda {

/// Ring configurations of the q4bulk kernel (groups of 128 a stage × stages a warp), for A/B in the kernel lab;
/// launch_q4bulk runs configuration 0. f32 outputs have configuration 0 only (others fall back to it).
inline constexpr int kQ4BulkConfigs = 3;
/// "SG×NS" of configuration @p config for @p mode (a static string).
const char* q4bulk_config_name(int config, GemvMode mode);

/// Whether launch_q4bulk can run this shape on the current device (compute 9.0+ with an sm_90 image loaded, at
/// least 2 blocks an SM, 1 ≤ T ≤ 4 (1 for rope), K % 128 == 0, K ≤ 16384 plain / 8192 silu and rope).
bool q4bulk_supported(int T, int K, GemvMode mode);

/// out = x · dequant(W)ᵀ in @p mode exactly as launch_q4mma (same signature, same output bits). Sets *launched;
/// nothing is launched (the caller falls back) where q4bulk_supported is false, q or x is not 16-byte aligned, or
/// PIXTRAL_CUDA_INT4_BULK=0.
Status launch_q4bulk(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                     const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                     cudaStream_t s, bool* launched);
/// launch_q4bulk with ring configuration @p config (0 .. kQ4BulkConfigs - 1).
Status launch_q4bulk_config(int config, void* out, DType out_t, const bf16* x, const std::uint8_t* q,
                            const float* scales, const bf16* bias, int T, int N, int items, int K, GemvMode mode,
                            const RopeAppendArgs& ra, cudaStream_t s, bool* launched);

}  // namespace pixtral::cuda
