// SPDX-License-Identifier: Apache-2.0
// Tensor-core building blocks shared by the attention kernels (kernels_flash.cu, kernels_decode_attention.cu):
// swizzled shared-memory tiles, ldmatrix, mma.sync m16n8k16 bf16 → fp32.
// ref: PTX ISA "Matrix fragments for mma.m16n8k16" and "ldmatrix"; FlashAttention-2 (Dao 2023).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace pixtral::cuda {

// Byte offset of 16-byte chunk `c` of row `r` in a [rows][D] bf16 tile; chunks XOR-swizzled by row so that the
// 8 rows an ldmatrix reads at one column hit 8 different bank groups.
template <int D>
__device__ __forceinline__ std::uint32_t swz(int r, int c) {
  return std::uint32_t(r * D * 2 + ((c ^ (r & 7)) << 4));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t addr, std::uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t addr, std::uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
// c[4] += a[16x16 bf16, row] · b[16x8 bf16, col], fp32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                         std::uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ std::uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x = lo (low 16 bits)
  return *reinterpret_cast<std::uint32_t*>(&v);
}

}  // namespace pixtral::cuda
