// SPDX-License-Identifier: Apache-2.0
// The int4 GEMV's integer tensor-core path (PERF_NOTES v32 5., v33, v34): x as three unsigned byte digit planes of a
// fixed-point X, the weights as unsigned bytes, m16n8k32 u8 × u8 → s32. A group of 128 takes 4 MMAs a row set where
// the bf16 path (q4_math.cuh) takes 8, and 16 LOP3 where it takes 56 (H200 q4math lab, two row sets, 16 consumer
// warps an SM: 87 GB/s of weights an SM against 45).
//
// x's group G of 128 values: e = the exponent that puts the group's max |x| in [2^21, 2^22); X = round(x · 2^e)
// (exact for every bf16 value within 2^14 of the group's max; smaller ones rounded at 2^-22 of it), as the low 23 bits
// of the float 1.5 · 2^23 + X: 2^22 + X = u0 + 256 u1 + 65536 u2 with unsigned byte digits (u2 < 128), the bytes of
// that float's bits as they are. A weight nibble n (two's complement v, n ^ 8 = v + 8) is the unsigned byte v + 8
// (even nibbles: (u & 0x0f0f0f0f) ^ 0x08080808) or 16 · (v + 8) (odd ones: (u & 0xf0f0f0f0) ^ 0x80808080).
// Per digit plane: the even chain sums (v + 8) · u over the even k, the odd chain 16 · (v + 8) · u over the odd k,
// and 16 · even + odd = 16 · Σ (v + 8) · u exactly in int32 (< 2^23). A fourth B column of ones gives 16 · Σ (v + 8),
// so that plane 2's 2^22 comes off exactly in int32: Σ (v + 8) · X = P0 + 256 P1 + 65536 (P2 - 64 Σ (v + 8)).
// Planes 0 and 1 join in int32 (< 2^31: 16 · 15 · 128 · 65535), and lane t = 0 takes the bias 16 · 8 · Σ X off in
// fp32 (Σ X exact in int32, |Σ X| < 2^29; −128 · Σ X rounded to fp32 once); plane 2 less 64 ones (lane t = 1) joins
// in fp32 (× 65536), each times scale · 2^-e / 16. Lanes t = 0 and 1 meet only in the tile's final shuffle: the sums
// pass through ~8 · Σ |X| and 16 · 7.5 · Σ (X mod 65536), their fp32 error a few times that of Σ v · X alone, as the
// bf16 path's through 136 · Σ x.
//
// Shared memory (imma_x_bytes): the groups' digits [G][plane 0..2][t 0..3][32 bytes], then a float2 a group
// (−128 · Σ X, 2^-e / 16), then, 16-byte aligned, 32 bytes of ones (the fourth column's "digits"). In the 32 bytes of
// (plane, t) — x[128G + 32t .. + 31] — chunk m (m = 0..3: k 32t + 8m .. + 7) has its even k's digits (32t + 8m +
// {0, 2, 4, 6}) in word 4 (m >> 1) + (m & 1) and its odd k's in that word + 2: words [e0 e1 o0 o1 | e2 e3 o2 o3], so
// the MMAs' B registers, words (e0, e1, e2, e3) and (o0, o1, o2, o3) as the A registers' unsigned bytes pair them
// (u8_even / u8_odd16 of the same weight word), are each MMA's pair in adjacent words: read as they are, no moves (a
// chunk's two words side by side cost ~10 register moves a stage; H200 int4 decode, same run, 4 rounds: 2.447 ->
// 2.441 ms/token, PERF_NOTES v36 8.).
// MMA columns: lane (g, t) gives B column g: plane g % 4, where plane 3 is the ones; D columns 2t, 2t + 1 of lane
// t = 0 are planes 0 and 1, of t = 1 plane 2 and the ones, t = 2, 3 repeat them (weight 0). So a row's value is the
// sum of lanes t = 0 and 1 (one shuffle at the tile's end).
// ref: PTX ISA "mma.sync.aligned.m16n8k32" (integer types, fragment layouts for .u8), "redux.sync", "max" (.u16x2).
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace pixtral::cuda {

inline constexpr int kImmaDigitBytes = 3 * 128;               // a group's digits
inline constexpr int kImmaGroupBytes = kImmaDigitBytes + 8;  // and its float2
inline constexpr int kImmaOnesBytes = 32;                    // the fourth column's ones, once

/// Where the ones are, and the bytes x takes in shared memory, for n_groups groups.
__host__ __device__ constexpr int imma_ones_offset(int n_groups) { return (n_groups * kImmaGroupBytes + 15) / 16 * 16; }
__host__ __device__ constexpr int imma_x_bytes(int n_groups) { return imma_ones_offset(n_groups) + kImmaOnesBytes; }

// d = A · B + c, m16n8k32, u8 (A, row) × u8 (B, col) → s32.
__device__ __forceinline__ void mma_u8u8(int d[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                         std::uint32_t a3, std::uint32_t b0, std::uint32_t b1, const int c[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.u8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
      : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]));
#else
  __trap();  // sm_80+ only, as the bf16 path
#endif
}
// One LOP3 each, spelled out as int4_pair_biased does: written as (u & m) ^ c, ptxas made an AND and an XOR (SASS
// LOP3 takes one immediate: 64 LOP3 a stage instead of 32 in the silu loop, found by a control-bit audit of its
// SASS). H200 int4 decode, same run, 4 rounds: 2.471 -> 2.447 ms/token (PERF_NOTES v36 8.).
__device__ __forceinline__ std::uint32_t u8_even(std::uint32_t u) {
  std::uint32_t r;
  asm("lop3.b32 %0, %1, 0x0f0f0f0f, 0x08080808, 0x6a;" : "=r"(r) : "r"(u));  // (a & b) ^ c
  return r;
}
__device__ __forceinline__ std::uint32_t u8_odd16(std::uint32_t u) {
  std::uint32_t r;
  asm("lop3.b32 %0, %1, 0xf0f0f0f0, 0x80808080, 0x6a;" : "=r"(r) : "r"(u));
  return r;
}

/// The ones of the fourth column (@p dig: x's digits, n_groups groups): threads i < 8 of the caller each write a word.
__device__ __forceinline__ void imma_write_ones(unsigned char* dig, int n_groups, int i) {
  if (i < kImmaOnesBytes / 4) reinterpret_cast<std::uint32_t*>(dig + imma_ones_offset(n_groups))[i] = 0x01010101u;
}

// A half-warp's maximum (kSum false) or sum by two whole-warp REDUX, the other half contributing 0 (@p keep_lo: all
// ones in lanes 0..15, zero in 16..31). redux.sync with a mask of half the warp is a divergent path in SASS (REDUX
// reduces the whole warp into a uniform register), and the compiler turned a select between the halves into a branch
// on the half (the reductions then ran divergent): the masks are arithmetic and the reductions asm volatile.
template <bool kSum>
__device__ __forceinline__ std::uint32_t imma_half_reduce(std::uint32_t v, std::uint32_t keep_lo) {
  std::uint32_t a = 0, b = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (kSum) {
    asm volatile("redux.sync.add.u32 %0, %1, 0xffffffff;" : "=r"(a) : "r"(v & keep_lo));
    asm volatile("redux.sync.add.u32 %0, %1, 0xffffffff;" : "=r"(b) : "r"(v & ~keep_lo));
  } else {
    asm volatile("redux.sync.max.u32 %0, %1, 0xffffffff;" : "=r"(a) : "r"(v & keep_lo));
    asm volatile("redux.sync.max.u32 %0, %1, 0xffffffff;" : "=r"(b) : "r"(v & ~keep_lo));
  }
#else
  __trap();  // sm_80+ only, as the MMAs
#endif
  return (a & keep_lo) | (b & ~keep_lo);
}

/// x's digits of the first N of a lane's 8-value chunks, every one of them x's: chunk n is chunk c (0..15) of group
/// grp[n], x[128 grp[n] + 8c .. + 7] as bf16 in xv[n], by one lane of a half-warp that holds that group's 16 chunks in
/// order (lane % 16 = c). The whole warp calls it with the same N (reductions over each half-warp's 16 lanes). Writes
/// each chunk's digit words into its group's digits (@p dig + grp[n] · kImmaDigitBytes) and, lane c = 0, its group's
/// float2 (gf[grp[n]]). The N chunks go through each step together, so their reductions overlap.
template <int N, int M>
__device__ __forceinline__ void imma_digits(const uint4 (&xv)[M], const int (&grp)[M], int c, unsigned char* dig,
                                            float2* gf) {
  static_assert(N >= 1 && N <= M);
  unsigned lane;
  asm("mov.u32 %0, %%laneid;" : "=r"(lane));
  const std::uint32_t keep_lo = ((lane >> 4) & 1u) - 1u;  // all ones in lanes 0..15, zero in 16..31
  const int t = c >> 2, m = c & 3;
  // The group's max |x| as bf16 bits (sign cleared: unsigned order is |x|'s, with ±inf and NaN above every finite
  // value, so E = 255 flags them).
  std::uint32_t mx[N];
#pragma unroll
  for (int n = 0; n < N; ++n) {
    constexpr std::uint32_t kAbs = 0x7fff7fffu;
    const std::uint32_t v =
        __vmaxu2(__vmaxu2(xv[n].x & kAbs, xv[n].y & kAbs), __vmaxu2(xv[n].z & kAbs, xv[n].w & kAbs));
    mx[n] = max(v & 0xffffu, v >> 16);
  }
  // Each half-warp's maximum by two whole-warp reductions, the other half contributing 0 (imma_half_reduce).
#pragma unroll
  for (int n = 0; n < N; ++n) mx[n] = imma_half_reduce<false>(mx[n], keep_lo);
  std::uint32_t sb[N];  // Σ of the float bits 0x4B400000 + X (mod 2^32)
  int ex[N];
#pragma unroll
  for (int n = 0; n < N; ++n) {
    // max |x| in [2^(E-127), 2^(E-126)): max · 2^e < 2^22. e ≤ 119 keeps 2^-e / 16 a normal float (a group below
    // 2^-98 loses bits, as fp32 would); e ≥ 148 - 254 > -126 keeps 2^e one.
    const int E = int(mx[n] >> 7);
    const int e = mx[n] > 0 ? min(148 - E, 119) : 0;
    ex[n] = E == 255 ? 1000 : e;  // 1000: a NaN or an infinity in the group
    const float sc = __uint_as_float(std::uint32_t(127 + e) << 23);
    const std::uint32_t w[4] = {xv[n].x, xv[n].y, xv[n].z, xv[n].w};
    std::uint32_t b[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {  // 1.5 · 2^23 + round(x · 2^e): |x · 2^e| < 2^22, so its bits are 0x4B400000 + X
      const float f = __uint_as_float(i % 2 ? w[i / 2] & 0xffff0000u : w[i / 2] << 16);
      b[i] = __float_as_uint(fmaf(f, sc, 12582912.f));
    }
    sb[n] = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
    // Planes 0 and 2 of values 0, 2 (and 4, 6) side by side, then plane 1; the even words from them, the odd alike.
    const std::uint32_t e02a = __byte_perm(b[0], b[2], 0x6240), e02b = __byte_perm(b[4], b[6], 0x6240);
    const std::uint32_t e1a = __byte_perm(b[0], b[2], 0x0051), e1b = __byte_perm(b[4], b[6], 0x0051);
    const std::uint32_t o02a = __byte_perm(b[1], b[3], 0x6240), o02b = __byte_perm(b[5], b[7], 0x6240);
    const std::uint32_t o1a = __byte_perm(b[1], b[3], 0x0051), o1b = __byte_perm(b[5], b[7], 0x0051);
    // [e0 e1 o0 o1 | e2 e3 o2 o3] a lane's 32 bytes: each MMA's B pair in adjacent words (imma_x reads them as is).
    std::uint32_t* d32 = reinterpret_cast<std::uint32_t*>(dig + grp[n] * kImmaDigitBytes + t * 32 + (m >> 1) * 16 +
                                                          (m & 1) * 4);
    d32[0] = __byte_perm(e02a, e02b, 0x5410);
    d32[2] = __byte_perm(o02a, o02b, 0x5410);
    d32[32] = __byte_perm(e1a, e1b, 0x5410);
    d32[34] = __byte_perm(o1a, o1b, 0x5410);
    d32[64] = __byte_perm(e02a, e02b, 0x7632);
    d32[66] = __byte_perm(o02a, o02b, 0x7632);
  }
#pragma unroll
  for (int n = 0; n < N; ++n) sb[n] = imma_half_reduce<true>(sb[n], keep_lo);
#pragma unroll
  for (int n = 0; n < N; ++n)
    if (c == 0)  // Σ X = Σ bits - 128 · 0x4B400000 (mod 2^32); 2^-e / 16, or NaN for a flagged group
      gf[grp[n]] = make_float2(-128.f * float(int(sb[n] - 0xA0000000u)),
                               ex[n] == 1000 ? __uint_as_float(0x7fc00000u)
                                             : __uint_as_float(std::uint32_t(127 - ex[n] - 4) << 23));
}

/// Lane (g, t)'s digits: plane g % 4 of each group (B column g) at @p base + G · @p stride, or, plane 3, the ones
/// (stride 0). @p dig: x's digits (n_groups groups).
struct ImmaLane {
  const unsigned char* base;
  int stride;
};
__device__ __forceinline__ ImmaLane imma_lane(const unsigned char* dig, int n_groups, int g, int t) {
  if ((g & 3) == 3) return {dig + imma_ones_offset(n_groups), 0};
  return {dig + (g & 3) * 128 + 32 * t, kImmaDigitBytes};
}

/// One group's reads for lane (g, t): its plane's digit words (b01: even, b23: odd), the bias to take off (lane t = 0
/// only, which holds planes 0 and 1), and 2^-e / 16 times the plane weight of its first column (t = 0: 1, t = 1:
/// 65536, t ≥ 2: 0), @p pw.
struct ImmaX {
  uint4 b01, b23;
  float bias, xf;
};
__device__ __forceinline__ ImmaX imma_x(const ImmaLane& l, int G, const float2* gf, int t, float pw) {
  ImmaX v;
  const uint4* dp = reinterpret_cast<const uint4*>(l.base + G * l.stride);
  const uint4 r0 = dp[0], r1 = dp[1];
  v.b01 = make_uint4(r0.x, r0.y, r1.x, r1.y);
  v.b23 = make_uint4(r0.z, r0.w, r1.z, r1.w);
  const float2 f = gf[G];
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
  mma_u8u8(de, u8_even(w0.x), u8_even(w1.x), u8_even(w0.y), u8_even(w1.y), x.b01.x, x.b01.y, kZero);
  mma_u8u8(de, u8_even(w0.z), u8_even(w1.z), u8_even(w0.w), u8_even(w1.w), x.b01.z, x.b01.w, de);
  mma_u8u8(dd, u8_odd16(w0.x), u8_odd16(w1.x), u8_odd16(w0.y), u8_odd16(w1.y), x.b23.x, x.b23.y, kZero);
  mma_u8u8(dd, u8_odd16(w0.z), u8_odd16(w1.z), u8_odd16(w0.w), u8_odd16(w1.w), x.b23.z, x.b23.w, dd);
  // t = 0: plane 1 joins plane 0 in int32; t = 1: plane 2 less 64 of its ones column (the digits' 2^22)
  const int mt = t == 0 ? 256 : t == 1 ? -64 : 0;
  const float va = float((16 * de[0] + dd[0]) + mt * (16 * de[1] + dd[1])) + x.bias;
  const float vb = float((16 * de[2] + dd[2]) + mt * (16 * de[3] + dd[3])) + x.bias;
  acc[0] = fmaf(s0 * x.xf, va, acc[0]);
  acc[2] = fmaf(s1 * x.xf, vb, acc[2]);
}

}  // namespace pixtral::cuda
