// SPDX-License-Identifier: Apache-2.0
// Decode attention (one query row, or a few), split-KV with long contiguous splits (v3): the live key range of a
// row is cut at run time into n_splits equal pieces (rounded to the warp tile) and one block handles one
// (split, KV head, query row) for all G query heads of the group, so each K/V row is read from device memory once
// per row. n_splits is sized on the host so that n_splits × KV heads × rows ≈ one resident wave (2 blocks/SM at
// G = 4: 33 splits × 8 heads at 132 SMs) and no split is under 64 keys; the split boundaries depend only on
// n_splits and the live range, so eager and graph-replayed (capacity-sized) launches agree once the context
// holds n_splits × 64 keys. Inside a split the 4 warps take 16-key tiles (32 at head_dim 64) round-robin; each
// lane streams its K and V pieces with 16-byte loads and keeps an online (base-2) softmax in fp32 registers; the
// next tile's K is loaded during this tile's P·V and its V during the next scores, and the tile after next is
// prefetched into L2, so every warp keeps ~2 tiles in flight. The second kernel merges the splits in index order
// with 8 thread groups per (row, head), all loads independent (no atomics: bit-identical run after run). A single
// split writes the output directly. Both kernels use programmatic dependent launch (the first two tiles of every
// warp are prefetched into L2 before waiting on the previous kernel; the combine's launch overlaps the split pass).
// Masks: a key range per row (host ranges or the device decode state, for CUDA-graph replay).
// ref: FlashDecoding (Dao, Haziza, Massa, Sizov 2023) split-KV + log-sum-exp combine; vLLM paged_attention_v2;
//      FlashInfer decode (fixed split count per wave, online softmax per split).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "cuda/kernels.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kSteps = 8;              // 16-byte K (and V) loads per lane per tile
constexpr int kMinSplitKeys = 64;      // a split shorter than this is not worth its combine traffic
// Resident blocks per SM (launch bounds): G = 4 needs up to 255 registers (K, V, scores, q, O of a 16-key tile
// for 4 heads, the next tile's K in flight), so 2 blocks; G ≤ 2 fits 3.
constexpr int blocks_per_sm(int G) { return G == 4 ? 2 : 3; }
constexpr int kMaxSplits = 256;
constexpr int kCombineGroups = 8;      // thread groups over the splits in the combine
constexpr float kLog2e = 1.4426950408889634f;

struct DecodeParams {
  void* out;
  float* partial;  // O [n_splits][n_q*H][D], M [n_splits][n_q*H], L [n_splits][n_q*H]
  const bf16* q;
  const bf16* k;
  const bf16* v;
  const int2* key_range;
  const int* dev_state;
  int n_q, H, Hkv, key_lo, key_hi, n_splits;
  float scale_log2;
  bool l2_prefetch;
};

// Loads the kSteps pieces of one tile (keys t0 + st * kKeysPerStep + sub); keys ≥ hi read as zero, unread.
template <int kKeysPerStep>
__device__ __forceinline__ void load_tile(uint4 (&r)[kSteps], const bf16* base, std::int64_t stride, int key0,
                                          int hi) {
#pragma unroll
  for (int st = 0; st < kSteps; ++st) {
    const int key = key0 + st * kKeysPerStep;
    r[st] = key < hi ? load_stream(reinterpret_cast<const uint4*>(base + std::int64_t(key) * stride)) : make_uint4(0, 0, 0, 0);
  }
}

template <int D, int G, class TO>
__global__ void __launch_bounds__(kThreads, blocks_per_sm(G)) decode_attention_kernel(const DecodeParams p) {
  constexpr int kLanesPerKey = D / 8;              // 16-byte pieces of one row
  constexpr int kKeysPerStep = 32 / kLanesPerKey;  // keys one warp-wide load covers
  constexpr int kTile = kSteps * kKeysPerStep;     // keys per warp tile (16 at D = 128)
  __shared__ float red_m[kWarps][G], red_l[kWarps][G];
  __shared__ __align__(16) float red_o[kWarps][G][D];

  allow_dependents_to_launch();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int sub = lane / kLanesPerKey, dl = lane % kLanesPerKey;
  const int split = blockIdx.x, kvh = blockIdx.y, row = blockIdx.z;
  const std::int64_t n_vec = std::int64_t(p.n_q) * p.H;
  const std::int64_t q_stride = std::int64_t(p.H) * D, kv_stride = std::int64_t(p.Hkv) * D;
  // Host key ranges were copied just before this launch: read them only after the PDL wait. The decode state
  // was copied before the replayed graph started, so its position may be read early (to prefetch).
  if (!p.dev_state) wait_for_previous_grid();
  const int2 rr = p.dev_state ? make_int2(0, p.dev_state[kDecodeStatePosition] + row + 1) : p.key_range[row];
  // This row's live keys, cut into n_splits pieces of `per` keys (a multiple of the warp tile).
  const int lo = max(rr.x, p.key_lo), hi = min(rr.y, p.key_hi);
  const int len = max(0, hi - lo);
  const int per = ((len + p.n_splits - 1) / p.n_splits + kTile - 1) / kTile * kTile;
  const int s0 = lo + split * per, s1 = min(hi, s0 + per);
  const bool direct = p.n_splits == 1;
  // Before waiting on the previous kernel (programmatic dependent launch): ask L2 for this warp's first two
  // tiles, K and V (one 128-byte line per lane each). Cached rows before this step's are not written by the
  // kernels still running; this step's row (scatter) is only prefetched into L2, never read before the wait.
  // (A second wait, in key-range mode, returns at once.)
  const int pf_end = p.l2_prefetch ? s1 : 0;
  {
    const int pk = lane / (D / 64), off = (lane % (D / 64)) * 64;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (const int key = s0 + (warp + j * kWarps) * kTile + pk; key < pf_end) {
        prefetch_l2(p.k + std::int64_t(key) * kv_stride + std::int64_t(kvh) * D + off);
        prefetch_l2(p.v + std::int64_t(key) * kv_stride + std::int64_t(kvh) * D + off);
      }
    }
  }
  wait_for_previous_grid();  // q, out and the workspace belong to the previous kernels

  if (s0 >= s1) {  // nothing of this row in this split (short row, or the tail splits)
    if (direct) {
      TO* out = static_cast<TO*>(p.out) + std::int64_t(row) * q_stride + std::int64_t(kvh) * G * D;
      for (int i = tid; i < G * D; i += kThreads) out[i] = from_f32<TO>(0.f);
    } else {
      const std::int64_t vec0 = std::int64_t(row) * p.H + kvh * G;
      for (int i = tid; i < G * D; i += kThreads)
        p.partial[(std::int64_t(split) * n_vec + vec0 + i / D) * D + i % D] = 0.f;
      if (tid < G) {
        p.partial[std::int64_t(p.n_splits) * n_vec * D + split * n_vec + vec0 + tid] = -INFINITY;
        p.partial[std::int64_t(p.n_splits) * n_vec * (D + 1) + split * n_vec + vec0 + tid] = 0.f;
      }
    }
    return;
  }

  const bf16* kbase = p.k + std::int64_t(kvh) * D + dl * 8;
  const bf16* vbase = p.v + std::int64_t(kvh) * D + dl * 8;
  int t0 = s0 + warp * kTile;  // this warp's tiles: t0, t0 + kWarps * kTile, ...
  uint4 kr[kSteps], vr[kSteps];
  if (t0 < s1) {
    load_tile<kKeysPerStep>(kr, kbase, kv_stride, t0 + sub, s1);
    load_tile<kKeysPerStep>(vr, vbase, kv_stride, t0 + sub, s1);
  }
  float qf[G][8];
#pragma unroll
  for (int hh = 0; hh < G; ++hh) {
    const uint4 u = *reinterpret_cast<const uint4*>(p.q + std::int64_t(row) * q_stride +
                                                    std::int64_t(kvh * G + hh) * D + dl * 8);
    bf16x8_to_f32(u, qf[hh]);
#pragma unroll
    for (int i = 0; i < 8; ++i) qf[hh][i] *= p.scale_log2;
  }

  // Online softmax state of this lane (its `sub` keys; the running max is warp-uniform).
  float m_run[G], l_run[G], acc[G][8];
#pragma unroll
  for (int hh = 0; hh < G; ++hh) {
    m_run[hh] = -INFINITY;
    l_run[hh] = 0.f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[hh][i] = 0.f;
  }
  // L2 prefetch of the tile after next: a tile's K (and V) rows are 32 lines of 128 B, one per lane.
  constexpr int kLinesPerKey = D / 64;
  const int pf_key = lane / kLinesPerKey, pf_off = (lane % kLinesPerKey) * 64;  // in bf16 elements
  const bf16* kpf = p.k + std::int64_t(kvh) * D + pf_off;
  const bf16* vpf = p.v + std::int64_t(kvh) * D + pf_off;
  while (t0 < s1) {
    const int tn = t0 + kWarps * kTile;
    if (const int key = tn + kWarps * kTile + pf_key; key < pf_end) {
      prefetch_l2(kpf + std::int64_t(key) * kv_stride);
      prefetch_l2(vpf + std::int64_t(key) * kv_stride);
    }
    // Scores (base 2), masked to -inf at keys ≥ s1 (keys ≥ s0 by construction).
    float sc[kSteps][G], mt[G];
#pragma unroll
    for (int hh = 0; hh < G; ++hh) mt[hh] = -INFINITY;
#pragma unroll
    for (int st = 0; st < kSteps; ++st) {
      float kf[8];
      bf16x8_to_f32(kr[st], kf);
      const bool ok = t0 + sub + st * kKeysPerStep < s1;
#pragma unroll
      for (int hh = 0; hh < G; ++hh) {
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < 8; ++i) d = fmaf(qf[hh][i], kf[i], d);
#pragma unroll
        for (int o = 1; o < kLanesPerKey; o <<= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        sc[st][hh] = ok ? d : -INFINITY;
        mt[hh] = fmaxf(mt[hh], sc[st][hh]);
      }
    }
    if (tn < s1) load_tile<kKeysPerStep>(kr, kbase, kv_stride, tn + sub, s1);  // next tile's K, during P·V
#pragma unroll
    for (int hh = 0; hh < G; ++hh) {
#pragma unroll
      for (int o = kLanesPerKey; o < 32; o <<= 1) mt[hh] = fmaxf(mt[hh], __shfl_xor_sync(0xffffffffu, mt[hh], o));
      const float m_new = fmaxf(m_run[hh], mt[hh]);  // finite: key t0 is live
      const float alpha = exp2f(m_run[hh] - m_new);  // 0 on the first tile
      m_run[hh] = m_new;
      l_run[hh] *= alpha;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[hh][i] *= alpha;
    }
#pragma unroll
    for (int st = 0; st < kSteps; ++st) {
      float vf[8];
      bf16x8_to_f32(vr[st], vf);
#pragma unroll
      for (int hh = 0; hh < G; ++hh) {
        const float pr = exp2f(sc[st][hh] - m_run[hh]);  // 0 for masked keys (-inf)
        l_run[hh] += pr;
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[hh][i] = fmaf(pr, vf[i], acc[hh][i]);
      }
    }
    if (tn < s1) load_tile<kKeysPerStep>(vr, vbase, kv_stride, tn + sub, s1);  // next tile's V
    t0 = tn;
  }

  // Reduce the lanes of each dim slice (fixed xor tree), then the warps through shared memory.
#pragma unroll
  for (int hh = 0; hh < G; ++hh) {
#pragma unroll
    for (int o = kLanesPerKey; o < 32; o <<= 1) {
      l_run[hh] += __shfl_xor_sync(0xffffffffu, l_run[hh], o);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[hh][i] += __shfl_xor_sync(0xffffffffu, acc[hh][i], o);
    }
    if (sub == 0) {
      float4* dst = reinterpret_cast<float4*>(&red_o[warp][hh][dl * 8]);
      dst[0] = make_float4(acc[hh][0], acc[hh][1], acc[hh][2], acc[hh][3]);
      dst[1] = make_float4(acc[hh][4], acc[hh][5], acc[hh][6], acc[hh][7]);
    }
    if (lane == 0) {
      red_l[warp][hh] = l_run[hh];
      red_m[warp][hh] = m_run[hh];  // -inf for a warp that had no tile (its O and L are 0)
    }
  }
  __syncthreads();

  // Merge the warps in a fixed order and write.
  for (int i = tid; i < G * D; i += kThreads) {
    const int hh = i / D, d = i % D;
    float m = red_m[0][hh];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red_m[w][hh]);  // finite: warp 0 had a tile
    float o = 0.f, l = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float mw = red_m[w][hh];
      const float sw = mw == -INFINITY ? 0.f : exp2f(mw - m);
      o = fmaf(red_o[w][hh][d], sw, o);
      l = fmaf(red_l[w][hh], sw, l);
    }
    const int h = kvh * G + hh;
    const std::int64_t vec = std::int64_t(row) * p.H + h;
    if (direct) {
      static_cast<TO*>(p.out)[std::int64_t(row) * q_stride + std::int64_t(h) * D + d] = from_f32<TO>(o / l);
    } else {
      p.partial[(std::int64_t(split) * n_vec + vec) * D + d] = o;
      if (d == 0) {
        p.partial[std::int64_t(p.n_splits) * n_vec * D + split * n_vec + vec] = m;
        p.partial[std::int64_t(p.n_splits) * n_vec * (D + 1) + split * n_vec + vec] = l;
      }
    }
  }
}

// One block of kCombineGroups × D threads per (row, head): group g sums splits g, g + 8, ... (independent loads,
// unrolled), then the groups are added in index order. Empty splits carry M = -inf, O = L = 0 (weight 0).
template <int D, class TO>
__global__ void __launch_bounds__(kCombineGroups * D)
decode_combine_kernel(TO* __restrict__ out, const float* __restrict__ partial, int n_vec, int n_splits) {
  __shared__ float wsplit[kMaxSplits], lsplit[kMaxSplits], red_m[kCombineGroups * D / 32];
  __shared__ float red_o[kCombineGroups][D], red_l[kCombineGroups];
  allow_dependents_to_launch();
  wait_for_previous_grid();  // everything here comes from decode_attention_kernel
  const std::int64_t vec = blockIdx.x;
  const int tid = threadIdx.x, d = tid % D, g = tid / D;
  const float* Mp = partial + std::int64_t(n_splits) * n_vec * D;
  const float* Lp = Mp + std::int64_t(n_splits) * n_vec;
  float m = -INFINITY;
  for (int c = tid; c < n_splits; c += kCombineGroups * D) m = fmaxf(m, Mp[c * std::int64_t(n_vec) + vec]);
  m = warp_max(m);
  if ((tid & 31) == 0) red_m[tid >> 5] = m;
  __syncthreads();
  m = red_m[0];
  for (int w = 1; w < kCombineGroups * D / 32; ++w) m = fmaxf(m, red_m[w]);  // max: exact in any order
  for (int c = tid; c < n_splits; c += kCombineGroups * D) {
    const float mc = Mp[c * std::int64_t(n_vec) + vec];
    wsplit[c] = mc == -INFINITY ? 0.f : exp2f(mc - m);
    lsplit[c] = Lp[c * std::int64_t(n_vec) + vec];
  }
  __syncthreads();
  float acc = 0.f, l = 0.f;
#pragma unroll 8
  for (int c = g; c < n_splits; c += kCombineGroups) {
    acc = fmaf(partial[(c * std::int64_t(n_vec) + vec) * D + d], wsplit[c], acc);
    l = fmaf(lsplit[c], wsplit[c], l);
  }
  red_o[g][d] = acc;
  if (d == 0) red_l[g] = l;
  __syncthreads();
  if (g == 0) {
    float o = 0.f, lt = 0.f;
#pragma unroll
    for (int j = 0; j < kCombineGroups; ++j) {
      o += red_o[j][d];
      lt += red_l[j];
    }
    out[vec * D + d] = from_f32<TO>(lt > 0.f ? o / lt : 0.f);
  }
}

// l2_prefetch_enabled() and pdl_enabled(): kernels.cuh (defined once, in kernels_gemv.cu).

// Splits per (row, KV head): about one resident wave of blocks, none shorter than kMinSplitKeys.
int n_splits_of(const AttentionLaunch& a) {
  const int span = std::max(0, a.key_hi_max - a.key_lo_min);
  const std::int64_t per_split = std::max<std::int64_t>(1, std::int64_t(a.n_kv_heads) * a.n_q);
  const int G = a.n_heads / std::max(1, a.n_kv_heads);
  const int wave =
      int(std::max<std::int64_t>(1, std::int64_t(blocks_per_sm(G)) * std::max(1, a.n_sms) / per_split));
  return std::max(1, std::min({ceil_div(span, kMinSplitKeys), wave, kMaxSplits}));
}

template <int D, int G, class TO>
Status launch_decode_typed(const AttentionLaunch& a, cudaStream_t s) {
  DecodeParams p;
  p.out = a.out;
  p.partial = a.partial;
  p.q = static_cast<const bf16*>(a.q);
  p.k = static_cast<const bf16*>(a.k);
  p.v = static_cast<const bf16*>(a.v);
  p.key_range = a.key_range;
  p.dev_state = a.dev_state;
  p.n_q = int(a.n_q);
  p.H = a.n_heads;
  p.Hkv = a.n_kv_heads;
  p.key_lo = a.key_lo_min;
  p.key_hi = a.key_hi_max;
  p.n_splits = n_splits_of(a);
  p.scale_log2 = a.scale * kLog2e;
  p.l2_prefetch = attention_prefetch_enabled();
  const dim3 grid(unsigned(p.n_splits), unsigned(a.n_kv_heads), unsigned(a.n_q));
  launch_dependent(decode_attention_kernel<D, G, TO>, grid, dim3(kThreads), s, p);
  PIXTRAL_CUDA_LAUNCH_CHECK(decode_attention_kernel);
  if (p.n_splits > 1) {
    launch_dependent(decode_combine_kernel<D, TO>, dim3(unsigned(a.n_q * a.n_heads)), dim3(kCombineGroups * D), s,
                     static_cast<TO*>(a.out), static_cast<const float*>(a.partial), int(a.n_q * a.n_heads),
                     p.n_splits);
    PIXTRAL_CUDA_LAUNCH_CHECK(decode_combine_kernel);
  }
  return {};
}

template <int D, int G>
Status launch_decode_out(const AttentionLaunch& a, cudaStream_t s) {
  return a.out_t == DType::f32 ? launch_decode_typed<D, G, float>(a, s) : launch_decode_typed<D, G, bf16>(a, s);
}

template <int D>
Status launch_decode_g(const AttentionLaunch& a, cudaStream_t s) {
  switch (a.n_heads / a.n_kv_heads) {
    case 1: return launch_decode_out<D, 1>(a, s);
    case 2: return launch_decode_out<D, 2>(a, s);
    default: return launch_decode_out<D, 4>(a, s);
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0; }

}  // namespace

bool decode_attention_supported(const AttentionLaunch& a) {
  if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0) return false;
  const int G = a.n_heads / a.n_kv_heads;
  return a.n_q >= 1 && a.n_q <= kDecodeAttentionMaxRows && (a.head_dim == 64 || a.head_dim == 128) &&
         (G == 1 || G == 2 || G == 4) && a.q_t == DType::bf16 && a.k_t == DType::bf16 && a.v_t == DType::bf16 &&
         (a.out_t == DType::bf16 || a.out_t == DType::f32) && aligned16(a.q) && aligned16(a.k) && aligned16(a.v) &&
         (a.key_range || a.dev_state);
}

std::int64_t decode_attention_workspace_floats(const AttentionLaunch& a) {
  const int n = n_splits_of(a);
  if (n == 1) return 0;
  return std::int64_t(n) * a.n_q * a.n_heads * (a.head_dim + 2);
}

Status launch_decode_attention(const AttentionLaunch& a, cudaStream_t s) {
  if (!decode_attention_supported(a))
    return Status(ErrorCode::internal, "cuda decode attention: unsupported launch");
  if (a.n_q == 0) return {};
  if (n_splits_of(a) > 1 && a.partial_floats < decode_attention_workspace_floats(a))
    return Status(ErrorCode::internal, "cuda decode attention: split-KV workspace too small");
  return a.head_dim == 64 ? launch_decode_g<64>(a, s) : launch_decode_g<128>(a, s);
}

}  // namespace pixtral::cuda
