// SPDX-License-Identifier: Apache-2.0
// The int4 GEMV's integer tensor-core path (PERF_NOTES v32 5., v33): x as three signed byte digit planes of a
// fixed-point X, the weights as unsigned bytes, m16n8k32 u8 × s8 → s32. A group of 128 takes 4 MMAs a row set where
// the bf16 path (q4_math.cuh) takes 8, and 16 LOP3 where it takes 56 (H200 q4math lab, two row sets, 16 consumer
// warps an SM: 87 GB/s of weights an SM against 45).
//
// x's group G of 128 values: e = the exponent that puts the group's max |x| in [2^21, 2^22); X = round(x · 2^e)
// (exact for every bf16 value within 2^14 of the group's max; smaller ones rounded at 2^-22 of it); X = d0 + 256 d1 +
// 65536 d2 with signed byte digits. A weight nibble n (two's complement v, n ^ 8 = v + 8) is the unsigned byte
// v + 8 (even nibbles: (u & 0x0f0f0f0f) ^ 0x08080808) or 16 · (v + 8) (odd ones: (u & 0xf0f0f0f0) ^ 0x80808080).
// Per digit plane: the even chain sums (v + 8) · d over the even k, the odd chain 16 · (v + 8) · d over the odd k,
// and 16 · even + odd = 16 · Σ (v + 8) · d exactly in int32 (< 2^22). Planes 0 and 1 join in int32 (plane 0 + 256 ·
// plane 1 < 2^31), and lane t = 0 takes the bias of all three planes, 16 · 8 · Σ X, off in fp32 (Σ X exact in int32,
// |Σ X| < 2^29; −128 · Σ X rounded to fp32 once); plane 2 joins in fp32 (× 65536, lane t = 1), each times scale ·
// 2^-e / 16. Plane 2's part of the bias (lane 0) and plane 2 (lane 1) meet only in the tile's final shuffle: the sums
// pass through ~8 · Σ |X|, their fp32 error a few times that of Σ v · X alone, as the bf16 path's through 136 · Σ x.
//
// Shared memory (kImmaGroupBytes a group): the groups' digits [G][plane 0..2][t 0..3][32 bytes], then a float2 a group
// (−128 · Σ X, 2^-e / 16). In the 32 bytes of (plane, t) — x[128G + 32t .. + 31] — word m (0..3) holds the digits of
// the even k 32t + 8m + {0, 2, 4, 6}, word 4 + m those of the odd k: the B registers of the MMAs' k-steps as the A
// registers' unsigned bytes pair them (u8_even / u8_odd16 of the same weight word).
// MMA columns: lane (g, t) gives B column g plane g % 4 (plane 3, which is not stored: plane 0 again); D columns
// 2t, 2t + 1 of lane t = 0 are planes 0 and 1, of t = 1 plane 2 and a dropped one, t = 2, 3 repeat them (weight
// 0). So a row's value is the sum of lanes t = 0 and 1 (one shuffle at the tile's end).
// ref: PTX ISA "mma.sync.aligned.m16n8k32" (integer types, fragment layouts for .u8 / .s8).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace pixtral::cuda {

inline constexpr int kImmaDigitBytes = 3 * 128;               // a group's digits
inline constexpr int kImmaGroupBytes = kImmaDigitBytes + 8;  // and its float2

// d = A · B + c, m16n8k32, u8 (A, row) × s8 (B, col) → s32.
__device__ __forceinline__ void mma_u8s8(int d[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                         std::uint32_t a3, std::uint32_t b0, std::uint32_t b1, const int c[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]));
#else
  __trap();  // sm_80+ only, as the bf16 path
#endif
}
// One LOP3 each (ptxas folds the and-xor of two immediates).
__device__ __forceinline__ std::uint32_t u8_even(std::uint32_t u) { return (u & 0x0f0f0f0fu) ^ 0x08080808u; }
__device__ __forceinline__ std::uint32_t u8_odd16(std::uint32_t u) { return (u & 0xf0f0f0f0u) ^ 0x80808080u; }

/// x's digits of N 8-value chunks a lane: chunk n is chunk c (0..15) of group grp[n], x[128 grp[n] + 8c .. + 7] as
/// bf16 in xv[n], by one lane of a half-warp that holds that group's 16 chunks in order (lane % 16 = c; the whole warp
/// calls: shuffles). Writes each active chunk's digit words into its group's digits (@p dig + grp[n] ·
/// kImmaDigitBytes) and, lane c = 0, its group's float2 (gf[grp[n]]). act[n] must be warp-uniform (an inactive chunk
/// is multiplied as zeros and stores nothing). The N chunks go through each step together, so their shuffle chains
/// (a group's maximum, its Σ X) overlap: one chain at a time left the SM idle on them (PERF_NOTES v33).
template <int N>
__device__ __forceinline__ void imma_digits(const uint4 (&xv)[N], const bool (&act)[N], const int (&grp)[N], int c,
                                            unsigned char* dig, float2* gf) {
  const int t = c >> 2, m = c & 3;
  float amax[N];
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const std::uint32_t w[4] = {xv[n].x, xv[n].y, xv[n].z, xv[n].w};
    float mx = 0.f;
    bool finite = true;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float f = __uint_as_float(i % 2 ? w[i / 2] & 0xffff0000u : w[i / 2] << 16);
      mx = fmaxf(mx, fabsf(f));
      finite = finite && fabsf(f) <= 3.4e38f;  // false for NaN and ±inf
    }
    amax[n] = finite ? mx : __uint_as_float(0x7f800000u);  // the group's factor becomes NaN below: NaN in, NaN out
  }
#pragma unroll
  for (int o = 1; o < 16; o <<= 1)
#pragma unroll
    for (int n = 0; n < N; ++n) amax[n] = fmaxf(amax[n], __shfl_xor_sync(0xffffffffu, amax[n], o));
  std::uint32_t sx[N];  // Σ X (unsigned: a flagged group's garbage X may wrap)
  int ex[N];
  bool bad[N];
#pragma unroll
  for (int n = 0; n < N; ++n) {
    // amax in [2^(E-127), 2^(E-126)): amax · 2^e < 2^22. e ≤ 119 keeps 2^-e / 16 a normal float (a group below
    // 2^-98 loses bits, as fp32 would), ≥ -126 keeps 2^e one.
    const int E = int((__float_as_uint(amax[n]) >> 23) & 0xff);
    const int e = amax[n] > 0.f ? min(max(21 - (E - 127), -126), 119) : 0;
    ex[n] = e;  // negative for a group max ≥ 2^22
    bad[n] = E == 255;  // a NaN or an infinity in the group
    const float sc = __uint_as_float(std::uint32_t(127 + e) << 23);
    const std::uint32_t w[4] = {xv[n].x, xv[n].y, xv[n].z, xv[n].w};
    int X[8], X1[8], X2[8];
    sx[n] = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float f = __uint_as_float(i % 2 ? w[i / 2] & 0xffff0000u : w[i / 2] << 16);
      X[i] = __float_as_int(fmaf(f, sc, 12582912.f)) - 0x4B400000;  // round(x · 2^e): |x · 2^e| < 2^22
      X1[i] = (X[i] + 128) >> 8;
      X2[i] = (X1[i] + 128) >> 8;
      sx[n] += std::uint32_t(X[i]);
    }
    if (act[n]) {
      const int* pl[3] = {X, X1, X2};
#pragma unroll
      for (int p = 0; p < 3; ++p) {
        const int* d = pl[p];  // the digit is the low byte of X, X1 - 256 X2, X2 alike
        const std::uint32_t ev = __byte_perm(__byte_perm(d[0], d[2], 0x40), __byte_perm(d[4], d[6], 0x40), 0x5410);
        const std::uint32_t od = __byte_perm(__byte_perm(d[1], d[3], 0x40), __byte_perm(d[5], d[7], 0x40), 0x5410);
        std::uint32_t* dst = reinterpret_cast<std::uint32_t*>(dig + grp[n] * kImmaDigitBytes + p * 128 + t * 32);
        dst[m] = ev;
        dst[4 + m] = od;
      }
    }
  }
#pragma unroll
  for (int o = 1; o < 16; o <<= 1)
#pragma unroll
    for (int n = 0; n < N; ++n) sx[n] += __shfl_xor_sync(0xffffffffu, sx[n], o);  // |Σ X| < 2^29
#pragma unroll
  for (int n = 0; n < N; ++n)
    if (act[n] && c == 0)  // 2^-e / 16, or NaN for a group with a NaN or an infinity (fmaxf drops NaNs: the flag)
      gf[grp[n]] = make_float2(-128.f * float(int(sx[n])), bad[n] ? __uint_as_float(0x7fc00000u)
                                                            : __uint_as_float(std::uint32_t(127 - ex[n] - 4) << 23));
}

/// One group's reads for lane (g, t): its plane's digit words (b01: even, b23: odd), the bias to take off (lane t = 0
/// only, which holds planes 0 and 1), and 2^-e / 16 times the plane weight of its first column (t = 0: 1, t = 1:
/// 65536, t ≥ 2: 0). @p plane_off = (g % 4 == 3 ? 0 : g % 4) · 128 + 32t, @p pw the plane weight.
struct ImmaX {
  uint4 b01, b23;
  float bias, xf;
};
__device__ __forceinline__ ImmaX imma_x(const unsigned char* dig, const float2* gf, int plane_off, int t, float pw) {
  ImmaX v;
  const uint4* dp = reinterpret_cast<const uint4*>(dig + plane_off);
  v.b01 = dp[0];
  v.b23 = dp[1];
  const float2 f = *gf;
  v.bias = t == 0 ? f.x : 0.f;
  v.xf = f.y * pw;
  return v;
}

/// One 16-row tile and group for one x row: acc[0] (row g) and acc[2] (row g + 8) += scale · 2^-e / 16 · (this
/// lane's columns' 16 · Σ v · d, joined). w0 / w1: the lane's 16 bytes of rows g / g + 8 (q4_group_mma_b's).
__device__ __forceinline__ void imma_group(const uint4& w0, const uint4& w1, const ImmaX& x, int t, float s0, float s1,
                                           float acc[4]) {
  constexpr int kZero[4] = {0, 0, 0, 0};
  int de[4], dd[4];
  mma_u8s8(de, u8_even(w0.x), u8_even(w1.x), u8_even(w0.y), u8_even(w1.y), x.b01.x, x.b01.y, kZero);
  mma_u8s8(de, u8_even(w0.z), u8_even(w1.z), u8_even(w0.w), u8_even(w1.w), x.b01.z, x.b01.w, de);
  mma_u8s8(dd, u8_odd16(w0.x), u8_odd16(w1.x), u8_odd16(w0.y), u8_odd16(w1.y), x.b23.x, x.b23.y, kZero);
  mma_u8s8(dd, u8_odd16(w0.z), u8_odd16(w1.z), u8_odd16(w0.w), u8_odd16(w1.w), x.b23.z, x.b23.w, dd);
  const int mt = t == 0 ? 256 : 0;  // plane 1 joins plane 0 in int32; t = 1's second column (no plane) dropped
  const float va = float((16 * de[0] + dd[0]) + mt * (16 * de[1] + dd[1])) + x.bias;
  const float vb = float((16 * de[2] + dd[2]) + mt * (16 * de[3] + dd[3])) + x.bias;
  acc[0] = fmaf(s0 * x.xf, va, acc[0]);
  acc[2] = fmaf(s1 * x.xf, vb, acc[2]);
}

}  // namespace pixtral::cuda
