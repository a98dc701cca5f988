// SPDX-License-Identifier: Apache-2.0
// Hopper's asynchronous copies (sm_90): mbarriers, the Tensor Memory Accelerator's tiled loads, named barriers, and
// the host side's tensor-map encoder. Shared by flash attention v5 (kernels_flash5.cu), the TMA-fed decode GEMVs
// (kernels_q4tma.cu, kernels_q8tma.cu) and their lab (lab/q4stream_lab.cu). Device functions exist for sm_90+ code
// only (elsewhere they trap: callers check the device).
// ref: PTX ISA "mbarrier", "cp.async.bulk.tensor"; CUDA driver API "Tensor Map Object Management".
#pragma once

#include <cuda.h>  // CUtensorMap and its enums (types only; the encode function comes through the runtime)

#include <cstdint>

#include "cuda/common.cuh"

namespace pixtral::cuda {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define PIXTRAL_TMA_ASM(...) asm volatile(__VA_ARGS__)
#else
#define PIXTRAL_TMA_ASM(...) __trap()
#endif

__device__ __forceinline__ void mbar_init(std::uint32_t a, int count) {
  PIXTRAL_TMA_ASM("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(a), "r"(count) : "memory");
}
/// After the inits, before any thread or the TMA unit uses the barriers (then a __syncthreads).
__device__ __forceinline__ void mbar_init_fence() {
  PIXTRAL_TMA_ASM("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/// The producer's arrival on a "full" barrier, announcing `bytes` the TMA loads will complete.
__device__ __forceinline__ void mbar_expect_tx(std::uint32_t a, std::uint32_t bytes) {
  PIXTRAL_TMA_ASM("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(a), "r"(bytes) : "memory");
}
/// Release (cta scope) arrival.
__device__ __forceinline__ void mbar_arrive(std::uint32_t a) {
  PIXTRAL_TMA_ASM("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(a) : "memory");
}
/// Acquire (cta scope): returns once the phase of parity `parity` has completed. (A timed variant that traps after
/// seconds — a launch failure instead of a hang — made ptxas spill flash v5's head_dim 128 consumers and serialize
/// their wgmma: not kept.)
__device__ __forceinline__ void mbar_wait(std::uint32_t a, std::uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  std::uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
  } while (!done);
#else
  __trap();
#endif
}
/// Box (c0 = innermost coordinate, c1, ...) of `map` into shared memory at `dst`, completing its bytes on `bar`.
__device__ __forceinline__ void tma_load_2d(std::uint32_t dst, const CUtensorMap* map, std::uint32_t bar, int c0,
                                            int c1) {
  PIXTRAL_TMA_ASM(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::
          "r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1)
      : "memory");
}
__device__ __forceinline__ void tma_load_3d(std::uint32_t dst, const CUtensorMap* map, std::uint32_t bar, int c0,
                                            int c1, int c2) {
  PIXTRAL_TMA_ASM(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n" ::
          "r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}
__device__ __forceinline__ void tma_load_4d(std::uint32_t dst, const CUtensorMap* map, std::uint32_t bar, int c0,
                                            int c1, int c2, int c3) {
  PIXTRAL_TMA_ASM(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], "
      "[%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}
__device__ __forceinline__ void tma_load_5d(std::uint32_t dst, const CUtensorMap* map, std::uint32_t bar, int c0,
                                            int c1, int c2, int c3, int c4) {
  PIXTRAL_TMA_ASM(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6, "
      "%7}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4)
      : "memory");
}
/// tma_load_4d / 5d with an L2 cache policy (createpolicy's 64-bit descriptor).
__device__ __forceinline__ void tma_load_4d_hint(std::uint32_t dst, const CUtensorMap* map, std::uint32_t bar, int c0,
                                                 int c1, int c2, int c3, std::uint64_t pol) {
  PIXTRAL_TMA_ASM(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%3, %4, "
      "%5, %6}], [%2], %7;\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "l"(pol)
      : "memory");
}
__device__ __forceinline__ void tma_load_5d_hint(std::uint32_t dst, const CUtensorMap* map, std::uint32_t bar, int c0,
                                                 int c1, int c2, int c3, int c4, std::uint64_t pol) {
  PIXTRAL_TMA_ASM(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%3, %4, "
      "%5, %6, %7}], [%2], %8;\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4), "l"(pol)
      : "memory");
}
__device__ __forceinline__ std::uint64_t l2_policy_evict_first() {
  std::uint64_t pol = 0;
  PIXTRAL_TMA_ASM("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
  return pol;
}
/// Asks for `bytes` (a multiple of 16) of global memory from `p` (16-byte aligned) into L2: a hint, nothing waits.
__device__ __forceinline__ void prefetch_l2_bulk(const void* p, std::uint32_t bytes) {
  PIXTRAL_TMA_ASM("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(reinterpret_cast<std::uint64_t>(p)), "r"(bytes)
                  : "memory");
}
__device__ __forceinline__ void prefetch_map(const CUtensorMap* map) {
  PIXTRAL_TMA_ASM("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)) : "memory");
}
__device__ __forceinline__ void named_sync(int id, int n) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int n) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

/// cuTensorMapEncodeTiled through the runtime's driver entry point (no link to libcuda: the library keeps loading
/// without a driver); null where the driver has none. Looked up once.
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
EncodeTiledFn encode_tiled();

}  // namespace pixtral::cuda
