// SPDX-License-Identifier: Apache-2.0
// The decode's K and V rows asked into L2 ahead of the attention (PIXTRAL_CUDA_KV_L2_SIDE, opt-in; PERF_NOTES v39
// 10.): one block of 32 threads issues `cp.async.bulk.prefetch.L2` requests of 32 KB over rows [0, pos) of both caches,
// on the backend's second stream, so that no kernel of the decode chain issues them or waits for them.
// ref: PTX ISA "cp.async.bulk.prefetch" (sm_90: a hint; size a multiple of 16, address 16-byte aligned).
#include <algorithm>
#include <cstdint>

#include "cuda/kernels.cuh"
#include "cuda/tma.cuh"

namespace pixtral::cuda {
namespace {

__global__ void kv_l2_prefetch_kernel(const unsigned char* k, const unsigned char* v, std::int64_t row_bytes,
                                      std::int64_t rows, const int* pos) {
  constexpr std::int64_t kChunk = 32 * 1024;
  const std::int64_t n = min(std::int64_t(*pos), rows) * row_bytes;
  for (std::int64_t off = std::int64_t(threadIdx.x) * kChunk; off < n; off += std::int64_t(blockDim.x) * kChunk) {
    const std::uint32_t len = std::uint32_t(min(kChunk, n - off));
    prefetch_l2_bulk(k + off, len);
    prefetch_l2_bulk(v + off, len);
  }
}

}  // namespace

Status launch_kv_l2_prefetch(const void* k, const void* v, std::int64_t row_bytes, std::int64_t rows,
                             std::int64_t max_bytes, const int* pos, cudaStream_t s) {
  // A hint: where it cannot run, nothing is asked for, and nothing fails.
  if (row_bytes <= 0 || row_bytes % 16 != 0 || reinterpret_cast<std::uintptr_t>(k) % 16 != 0 ||
      reinterpret_cast<std::uintptr_t>(v) % 16 != 0 || !sm90_image(kv_l2_prefetch_kernel))
    return {};
  rows = std::min(rows, max_bytes / (2 * row_bytes));
  if (rows <= 0) return {};
  kv_l2_prefetch_kernel<<<1, 32, 0, s>>>(static_cast<const unsigned char*>(k), static_cast<const unsigned char*>(v),
                                         row_bytes, rows, pos);
  PIXTRAL_CUDA_LAUNCH_CHECK(kv_l2_prefetch_kernel);
  return {};
}

}  // namespace pixtral::cuda
