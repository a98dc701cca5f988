// SPDX-License-Identifier: Apache-2.0
// The int4 × bf16 tensor-core arithmetic shared by the decode GEMVs kernels_q4mma.cu (cp.async ring, T ≤ 8) and
// kernels_q4tma.cu (TMA ring, T = 1): one 16-row tile and group of 128 multiplied exactly the same way in both, so a
// row's bits do not depend on which kernel computed it (see kernels_q4mma.cu for the fragment layout) — except the
// decode's folded-norm [w1; w3] launch, which takes the integer path of q4_imma.cuh (within a bf16 step).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace pixtral::cuda {

// d = A · B + c, m16n8k16, bf16 × bf16 → f32 (d and c may be the same registers).
__device__ __forceinline__ void mma_bf16_16816(float d[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                               std::uint32_t a3, std::uint32_t b0, std::uint32_t b1,
                                               const float c[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#else
  __trap();  // the MMA path is only launched on sm_80+ builds (bf16 mma.sync)
#endif
}

// Nibbles s and s + 4 of word u (two's complement v) as the exact bf16x2 of 136 + v (low half: nibble s), in one
// LOP3: ((u >> 4s) & 0x000f000f) ^ 0x43084308 (0x4308 = bf16 136; n ^ 8 = v + 8 for the nibble n of v). The 136
// is not subtracted here: the group's chains start from -136 · Σx instead (see the kernel).
__device__ __forceinline__ std::uint32_t int4_pair_biased(std::uint32_t u, int s) {
  std::uint32_t r;
  asm("lop3.b32 %0, %1, 0x000f000f, 0x43084308, 0x6a;" : "=r"(r) : "r"(u >> (4 * s)));  // (a & b) ^ c
  return r;
}
constexpr std::uint32_t kMinus136x2 = 0xc308c308u;  // bf16x2 (-136, -136)

// -136 · Σ x[k] over one group's 128 k of one x row, for every lane of the warp, from @p xs = this lane's 4 values
// x[4·lane .. 4·lane + 3] of the group: lane 4j + t gives B column j its k' slots 2t, 2t+1, 2t+8, 2t+9, so that
// column j of D = -136 · (x[16j .. 16j + 15]) (the A rows are all -136; products exact in fp32). The lane holds
// columns 2t and 2t+1 (rows g and g + 8 equal); two xor shuffles add the quad's columns. The same bits in every
// lane, and the same for an x row whatever T, the mode or the tile.
__device__ __forceinline__ float group_correction(uint2 xs) {
  constexpr float kZero[4] = {0.f, 0.f, 0.f, 0.f};
  float d[4];
  mma_bf16_16816(d, kMinus136x2, kMinus136x2, kMinus136x2, kMinus136x2, xs.x, xs.y, kZero);
  float v = d[0] + d[1];
  v += __shfl_xor_sync(0xffffffffu, v, 1);  // a + b == b + a: both lanes of a pair hold the same bits
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v;
}

/// One 16-row tile and group of 128 for one x row: acc[0..3] += scale · (Σ (136 + v)·x + corr) for rows g (acc[0],
/// [1]: D columns 2t, 2t + 1) and g + 8 (acc[2], [3]). w0 / w1 = this thread's 16 bytes of rows g / g + 8 (k = 128G
/// + 32t + 8w + i, low nibble first), xv[w] = x[128G + 32t + 8w .. + 7] (B column g = the x row), s0 / s1 the rows'
/// scales, corr[c] = group_correction of x row 2t + c. Two chains of four MMAs (words 0, 2 and 1, 3; H200 int4
/// decode, same run: four chains of 2 MMAs 3.23 ms/token, one of 8 3.21, two of 4 3.14): fewer chains are fewer
/// adds, longer ones wait longer. A holds 136 + v (int4_pair_biased): the chains sum (136 + v)·x and corr takes the
/// 136 off once a group, before the scale, so the cancellation happens at the group's magnitude; the sum passes
/// through ~136·Σx, so its fp32 error is ~30× that of Σ v·x alone (~1e-6 relative: far below a bf16 output's
/// rounding). q4_group_mma_b takes x as the MMAs' B registers already (q4_b_fragments): q4tma stages x that way.
__device__ __forceinline__ void q4_group_mma_b(const uint4& w0, const uint4& w1, const uint4 bv[4], float s0, float s1,
                                               const float corr[2], float acc[4]) {
  float d[2][4];
#pragma unroll
  for (int ww = 0; ww < 4; ++ww) {
    constexpr float kZero[4] = {0.f, 0.f, 0.f, 0.f};
    float* dc = d[ww % 2];
    const std::uint32_t u0 = (&w0.x)[ww], u1 = (&w1.x)[ww];
    mma_bf16_16816(dc, int4_pair_biased(u0, 0), int4_pair_biased(u1, 0), int4_pair_biased(u0, 1),
                   int4_pair_biased(u1, 1), bv[ww].x, bv[ww].y, ww < 2 ? kZero : dc);
    mma_bf16_16816(dc, int4_pair_biased(u0, 2), int4_pair_biased(u1, 2), int4_pair_biased(u0, 3),
                   int4_pair_biased(u1, 3), bv[ww].z, bv[ww].w, dc);
  }
  float sum[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) sum[e] = (d[0][e] + d[1][e]) + corr[e & 1];
  acc[0] = fmaf(s0, sum[0], acc[0]);  // row g,     col 2t
  acc[1] = fmaf(s0, sum[1], acc[1]);  // row g,     col 2t + 1
  acc[2] = fmaf(s1, sum[2], acc[2]);  // row g + 8, col 2t
  acc[3] = fmaf(s1, sum[3], acc[3]);  // row g + 8, col 2t + 1
}

/// Eight x values x[k .. k + 7] (one 16-byte chunk) as q4_group_mma_b's B registers for them: (b0 of k-step 0, b1
/// of k-step 0, b0 of k-step 1, b1 of k-step 1) = ((x[k], x[k+4]), (x[k+1], x[k+5]), (x[k+2], x[k+6]), (x[k+3],
/// x[k+7])) — a permutation of the chunk's halves.
__device__ __forceinline__ uint4 q4_b_fragments(const uint4& xv) {
  return make_uint4(__byte_perm(xv.x, xv.z, 0x5410), __byte_perm(xv.x, xv.z, 0x7632), __byte_perm(xv.y, xv.w, 0x5410),
                    __byte_perm(xv.y, xv.w, 0x7632));
}

/// x staged as the MMAs' B registers (every 16-byte chunk of x as q4_b_fragments makes it, q4tma's staging): this
/// lane's group_correction input x[128G + 4 lane .. + 3] in natural order, from its chunk (stored (x0, x4), (x1, x5),
/// (x2, x6), (x3, x7); the lane's half: x0..x3 or x4..x7) by two PRMTs — the registers a natural-order read gives,
/// so the same bits.
__device__ __forceinline__ uint2 q4_corr_input_b(const bf16* xb, int G, int lane) {
  const uint4 c = reinterpret_cast<const uint4*>(xb + 128 * G)[lane >> 1];
  const unsigned sel = (lane & 1) ? 0x7632u : 0x5410u;
  return make_uint2(__byte_perm(c.x, c.y, sel), __byte_perm(c.z, c.w, sel));
}

/// q4_group_mma_b with x in natural order (xv[w] = x[128G + 32t + 8w .. + 7]): the fragments made here.
__device__ __forceinline__ void q4_group_mma(const uint4& w0, const uint4& w1, const uint4 xv[4], float s0, float s1,
                                             const float corr[2], float acc[4]) {
  uint4 bv[4];
#pragma unroll
  for (int ww = 0; ww < 4; ++ww) bv[ww] = q4_b_fragments(xv[ww]);
  q4_group_mma_b(w0, w1, bv, s0, s1, corr, acc);
}

/// Group G of one x row staged in shared memory in natural order (xs): this lane's B values for q4_group_mma
/// (xv[w] = x[128G + 32t + 8w .. + 7]) and, returned, the group's correction (group_correction) — the per-stage reads
/// of x that q4tma made before it staged x as B registers (the labs keep them).
__device__ __forceinline__ float q4_x_group(const bf16* xs, int G, int t, int lane, uint4 xv[4]) {
#pragma unroll
  for (int ww = 0; ww < 4; ++ww) xv[ww] = reinterpret_cast<const uint4*>(xs + 128 * G + 32 * t)[ww];
  return group_correction(reinterpret_cast<const uint2*>(xs + 128 * G)[lane]);
}

}  // namespace pixtral::cuda
