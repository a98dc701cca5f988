// SPDX-License-Identifier: Apache-2.0
// Hopper warpgroup-MMA building blocks shared by the sm_90a prefill kernels (kernels_flash4.cu: v4, cp.async tiles;
// kernels_flash5.cu: v5, TMA and warp specialization): the 128-byte-swizzled tile layout, shared-memory matrix
// descriptors, wgmma.mma_async for the shapes attention needs, the wgmma fences, ex2. Private to libpixtral_cuda.so.
// Tile layout (both kernels): a tile of R rows × D bf16 is D/64 panels of R rows × 128 bytes (64 columns); in a
// panel, 16-byte chunk c of row r sits at r·128 + ((c ^ (r mod 8)) · 16) — what TMA's CU_TENSOR_MAP_SWIZZLE_128B
// writes for a box of 64 columns, and wgmma's 128B-swizzle canonical layout (every panel starts 1024-byte aligned).
// The wgmma helpers exist only in arch-specific sm_90a code (__CUDA_ARCH_FEAT_SM90_ALL).
// ref: PTX ISA "Asynchronous Warpgroup Level Matrix Multiply-Accumulate" (wgmma.mma_async, register fragments for
// m64nNk16, "Matrix Descriptor Format", "Shared Memory Matrix Layout" with 128B swizzling, wgmma.fence /
// commit_group / wait_group); CUTLASS cute/atom/mma_traits_sm90_gmma.hpp (GMMA::CLayout_64xN, make_gmma_desc).
#pragma once

#include <cstdint>

#include "cuda/mma.cuh"

namespace pixtral::cuda::flash {

// Byte offset of 16-byte chunk c (of D/8) of row r in a kRows-row tile in the 128B-swizzled panel layout.
template <int kRows>
__device__ __forceinline__ std::uint32_t sw128(int r, int c) {
  return std::uint32_t((c >> 3) * (kRows * 128) + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
inline constexpr float kSlack = 8.f;  // lazy rescaling: P ≤ 2^kSlack (v3)

// 2^x, flushing denormal results to 0 (one MUFU.EX2); ex2(-inf) = 0.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Shared-memory matrix descriptor: start address, leading / stride dimension byte offsets (all >> 4, 14 bits),
// base offset 0 (every swizzle atom starts 1024-byte aligned), swizzle mode 1 = 128 bytes (bits 62-63).
__device__ __forceinline__ std::uint64_t desc_sw128(std::uint32_t addr, std::uint32_t lbo, std::uint32_t sbo) {
  return std::uint64_t((addr & 0x3FFFF) >> 4) | (std::uint64_t((lbo & 0x3FFFF) >> 4) << 16) |
         (std::uint64_t((sbo & 0x3FFFF) >> 4) << 32) | (std::uint64_t(1) << 62);
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_wait0() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void wg_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
// Keeps the compiler from moving reads / writes of an wgmma operand register across the fences above.
__device__ __forceinline__ void reg_fence(float& x) { asm volatile("" : "+f"(x)::"memory"); }
__device__ __forceinline__ void reg_fence(std::uint32_t& x) { asm volatile("" : "+r"(x)::"memory"); }
// cp.async wrote shared memory through the generic proxy; wgmma reads it through the async proxy.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

#define PX_F4(d, i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3])
#define PX_F32(d, o)                                                                                       \
  PX_F4(d, o + 0), PX_F4(d, o + 4), PX_F4(d, o + 8), PX_F4(d, o + 12), PX_F4(d, o + 16), PX_F4(d, o + 20), \
      PX_F4(d, o + 24), PX_F4(d, o + 28)
#define PX_R32_0                                                                  \
  "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define PX_R32_32                                                                          \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"

// s[64 × 64] (= or +=, `accumulate`) Q[64 × 16] · K[64 keys × 16]ᵀ, both K-major in shared memory.
__device__ __forceinline__ void wgmma_qk(float (&s)[32], std::uint64_t da, std::uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" PX_R32_0 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : PX_F32(s, 0)
      : "l"(da), "l"(db), "r"(accumulate));
}
// s[64 × 128] (= or +=) Q[64 × 16] · K[128 keys × 16]ᵀ, both K-major in shared memory.
__device__ __forceinline__ void wgmma_qk(float (&s)[64], std::uint64_t da, std::uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" PX_R32_0 ", " PX_R32_32
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : PX_F32(s, 0), PX_F32(s, 32)
      : "l"(da), "l"(db), "r"(accumulate));
}
// o[64 × 64] += P[64 × 16] (registers) · V[16 keys × 64] (MN-major: transposed B).
__device__ __forceinline__ void wgmma_pv(float (&o)[32], const std::uint32_t (&a)[4], std::uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" PX_R32_0 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : PX_F32(o, 0)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
// o[64 × 128] += P[64 × 16] · V[16 keys × 128].
__device__ __forceinline__ void wgmma_pv(float (&o)[64], const std::uint32_t (&a)[4], std::uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" PX_R32_0 ", " PX_R32_32
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : PX_F32(o, 0), PX_F32(o, 32)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
// Columns [kOff / 32 · 64, + 64) of o[64 × 128] += P[64 × 16] · V[16 keys × 64] (one 64-column panel of V).
template <int kOff>
__device__ __forceinline__ void wgmma_pv_half(float (&o)[64], const std::uint32_t (&a)[4], std::uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {" PX_R32_0 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : PX_F32(o, kOff)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
#undef PX_F4
#undef PX_F32
#undef PX_R32_0
#undef PX_R32_32
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

}  // namespace pixtral::cuda::flash
