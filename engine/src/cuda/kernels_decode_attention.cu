// SPDX-License-Identifier: Apache-2.0
// Decode attention (one query row, or a few), split-KV with long contiguous splits: the live key range of a row is
// cut at run time into n_splits equal pieces and one block handles one (split, KV head, query row) for all G query
// heads of the group, so each K/V row is read from device memory once per row. n_splits is sized on the host so
// that n_splits × KV heads × rows ≈ one resident wave (3 blocks/SM: 49 splits × 8 heads at 132 SMs; 2.5 in the int4
// decode, AttentionLaunch::narrow_wave: 41) and
// no split is under 64 keys; the split boundaries depend only on n_splits and the live range, so eager and
// graph-replayed (capacity-sized) launches agree once the context holds n_splits × 64 keys.
// v5: a block copies its split into shared memory with cp.async in stages of 4 warp tiles (16 KB of K and 16 KB
// of V), kStages stages in flight (2: 64 KB per block, 192 KB per SM), so a 4193-key split (96 keys, 2 stages) is
// requested all at once, most of it before the programmatic-dependent-launch wait (cached rows before this step's
// position are immutable; the rows this step appends are copied after the wait). The v3 kernel kept K/V in
// registers and reached only ~2 tiles per warp in flight (3 dependent DRAM round trips per split). On sm_90+ the int4
// decode's launches copy each stage as two tensor-map boxes on an mbarrier instead (kTma, PERF_NOTES v38). Inside a
// stage each of the 4 warps takes 16 keys (32 at head_dim 64) on the tensor cores: S = Q·Kᵀ and O += P·V with
// mma.sync, K/V through ldmatrix from the XOR-swizzled stage, an online (base-2) softmax in fp32 registers. The
// second kernel merges the splits in index order with 8 thread groups per (row, head), each group's loads issued
// at once (one round trip), log-sum-exp rescaling, no atomics: bit-identical run after run. A single split writes
// the output directly. Both kernels use programmatic dependent launch. Masks: a key range per row (host ranges or
// the device decode state, for CUDA-graph replay).
// ref: FlashDecoding (Dao, Haziza, Massa, Sizov 2023) split-KV + log-sum-exp combine; vLLM paged_attention_v2;
//      FlashInfer decode (fixed split count per wave, online softmax per split, cp.async K/V pipeline).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "cuda/decode_splits.h"
#include "cuda/env_switch.h"
#include "cuda/kernels.cuh"
#include "cuda/mma.cuh"
#include "cuda/qtma_common.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kStageBytes = 16 * 1024; // K (and V) bytes of one stage: kWarps tiles
// Resident blocks per SM (launch bounds) and stages in flight per block: 3 blocks of 2 stages × 32 KB where the SM
// has the shared memory (Hopper: 228 KB), so n_splits = 3 × SMs / (KV heads × rows): 49 splits of ≤ 96 keys at
// 4193 keys and 132 SMs. (Measured on an H200 against 2 blocks of 3 stages, 33 splits: bf16 decode 6.25-6.26 vs
// 6.27-6.30 ms/token, same run.) Devices with less (sm_86/89: 100 KB per SM) run 1 stage per block.
constexpr int blocks_per_sm(int) { return 3; }
// PIXTRAL_CUDA_ATTN_STAGES=1: the one-stage kernel that devices with 100 KB of shared memory an SM run, forced here
// (tests run it on Hopper; A/B). Read at each launch: a test sets it between runs.
bool single_stage_forced() {
  return env_one("PIXTRAL_CUDA_ATTN_STAGES");
}
constexpr int max_stages(int) { return 2; }
constexpr std::size_t stage_smem_bytes(int stages) { return std::size_t(stages) * 2 * kStageBytes; }
// The kernel's static shared memory (the warp merge; the TMA form's barriers, 128 bytes with their alignment: ptxas
// reports 8448 bytes at G = 4, D = 128 against 8320 without) plus the 1 KB the runtime reserves per block.
constexpr std::size_t fixed_smem_bytes(int G, int D) { return std::size_t(kWarps) * G * (D + 2) * 4 + 128 + 1024; }
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
};

// Issues the cp.async copies of one stage (keys key0 .. key0 + kStageKeys - 1 of KV head kvh) into the swizzled
// shared tiles `ks`/`vs` (shared addresses): keys in [from, to) are copied, keys ≥ s1 zero-filled when
// `zero_tail` (V of a masked key must be finite: p = 0 multiplies it), other keys left alone (a later call).
template <int D>
__device__ __forceinline__ void issue_stage(std::uint32_t ks, std::uint32_t vs, const DecodeParams& p, int kvh,
                                            int key0, int from, int to, int s1, bool zero_tail) {
  constexpr int kPieces = D / 8;                     // 16-byte pieces per key row
  constexpr int kStageKeys = kStageBytes / (2 * D);  // keys per stage
  constexpr int kPerThread = kStageKeys * kPieces / kThreads;
  const std::int64_t kv_stride = std::int64_t(p.Hkv) * D;
#pragma unroll
  for (int j = 0; j < kPerThread; ++j) {
    const int c = threadIdx.x + j * kThreads;
    const int kk = c / kPieces, piece = c % kPieces, key = key0 + kk;
    const bool copy = key >= from && key < to, zero = zero_tail && key >= s1;
    if (copy || zero) {
      const std::int64_t off = std::int64_t(copy ? key : 0) * kv_stride + std::int64_t(kvh) * D + piece * 8;
      cp_async16(ks + swz<D>(kk, piece), p.k + off, copy);
      cp_async16(vs + swz<D>(kk, piece), p.v + off, copy);
    }
  }
}

// Byte offset of 16-byte chunk c of key r in a stage: the cp.async form's swz<D>, or the TMA form's boxes
// ([D / 64 halves][kStageKeys keys][64 dims], 128-byte swizzled: a key's 128-byte unit half · kStageKeys + r, its
// chunks XORed with r mod 8 — the same 8 bank groups for the 8 keys an ldmatrix reads).
template <int D, bool kTma>
__device__ __forceinline__ std::uint32_t kv_at(int r, int c) {
  if constexpr (kTma) {
    constexpr int kStageKeys = kStageBytes / (2 * D);
    return std::uint32_t((c >> 3) * kStageKeys * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4));
  } else {
    return swz<D>(r, c);
  }
}

// One block per (split, KV head, query row). The G query heads of the group are the rows 0..G-1 of a 16-row
// tensor-core tile (the other rows are zero and never stored): per 16 keys a warp runs S = Q·Kᵀ as 2 × D/16
// mma.sync m16n8k16 (K through ldmatrix from the swizzled stage), the online softmax on the fp32 accumulators
// (a row's values live in the 4 lanes of a quad), and O += P·V as D/8 MMAs with P rounded to bf16 as the A
// operand (FlashAttention-2) and V through ldmatrix.trans.
// kTma (sm_90+, two stages): a stage's K and V as two tensor-map boxes on the stage's mbarrier, issued by thread 0
// (mk / mv: the caches as [Hkv][D / 64][keys][64] bf16, keys past n_kv read as zeros), instead of every thread's
// cp.async pieces (~50 instructions a 16-byte pair, PERF_NOTES v36 11.); V's keys past the split's end in its last
// 16-key tile are zeroed after the box lands (p = 0 must not meet a NaN of a row never written). The same values
// into the same MMAs: the same bits as the cp.async form.
template <int D, int G, int kStages, class TO, bool kTma = false>
__global__ void __launch_bounds__(kThreads, blocks_per_sm(G))
    decode_attention_kernel(const DecodeParams p, const __grid_constant__ CUtensorMap mk,
                            const __grid_constant__ CUtensorMap mv) {
  static_assert(!kTma || kStages == 2, "the TMA form is the two-stage kernel's");
  constexpr int kStageKeys = kStageBytes / (2 * D);  // keys per stage (64 at D = 128, 128 at D = 64)
  constexpr int kWarpKeys = kStageKeys / kWarps;     // keys per warp and stage (16 / 32)
  constexpr int kNt = D / 8;                         // n-tiles of O
  extern __shared__ __align__(128) unsigned char smem_raw[];
  __shared__ float red_m[kWarps][G], red_l[kWarps][G];
  __shared__ __align__(16) float red_o[kWarps][G][D];
  __shared__ __align__(8) std::uint64_t bars[kStages];  // kTma: a stage slot's boxes

  PIXTRAL_TIMELINE(kTlAttention);
  allow_dependents_to_launch();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3;  // quad (row of the tile) and lane in the quad
  const int split = blockIdx.x, kvh = blockIdx.y, row = blockIdx.z;
  const std::int64_t n_vec = std::int64_t(p.n_q) * p.H;
  const std::int64_t q_stride = std::int64_t(p.H) * D;
  // kTma: the stages at the next 1 KB (the swizzle's period; the launch gives 1 KB more).
  const std::uint32_t ks_all = kTma ? (smem_addr(smem_raw) + 1023u) & ~1023u : smem_addr(smem_raw);
  const std::uint32_t vs_all = ks_all + kStages * kStageBytes;
  const std::uint32_t bar0 = smem_addr(bars);
  if constexpr (kTma) {
    if (tid == 0) {
      for (int i = 0; i < kStages; ++i) mbar_init(bar0 + 8 * i, 1);
      mbar_init_fence();
    }
    __syncthreads();
  }
  // kTma: stage i's two boxes (keys key0 .. + kStageKeys - 1 of KV head kvh) into slot `slot`.
  const auto tma_stage = [&](int slot, int key0) {
    mbar_expect_tx(bar0 + 8 * slot, 2u * kStageBytes);
    tma_load_4d(ks_all + slot * kStageBytes, &mk, bar0 + 8 * slot, 0, key0, 0, kvh);
    tma_load_4d(vs_all + slot * kStageBytes, &mv, bar0 + 8 * slot, 0, key0, 0, kvh);
  };
  // Host key ranges were copied just before this launch: read them only after the PDL wait. The decode state
  // was copied before the replayed graph started, so its position may be read early.
  if (!p.dev_state) wait_for_previous_grid();
  const int pos = p.dev_state ? p.dev_state[kDecodeStatePosition] : 0;
  const int2 rr = p.dev_state ? make_int2(0, pos + row + 1) : p.key_range[row];
  // This row's live keys, cut into n_splits pieces of `per` keys (a multiple of 16).
  constexpr int kRound = 16;
  const int lo = max(rr.x, p.key_lo), hi = min(rr.y, p.key_hi);
  const int len = max(0, hi - lo);
  const int per = ((len + p.n_splits - 1) / p.n_splits + kRound - 1) / kRound * kRound;
  const int s0 = lo + split * per, s1 = min(hi, s0 + per);
  const int n_stage = s1 > s0 ? (s1 - s0 + kStageKeys - 1) / kStageKeys : 0;
  const bool direct = p.n_splits == 1;

  // The first kStages stages, one cp.async group each (empty groups for missing stages keep the count fixed).
  // Before the wait only rows the running kernels do not write: in decode-state mode the rows before this
  // step's position (the QKV GEMV appends row pos onwards); in key-range mode the wait came first.
  const int safe_hi = p.dev_state ? min(s1, pos) : s1;
  if constexpr (kTma) {
    // A stage whose live keys all lie below safe_hi before the wait (its box's keys past s1 are never used), the
    // others after it.
    if (tid == 0)
      for (int i = 0; i < kStages && i < n_stage; ++i)
        if (min(s1, s0 + (i + 1) * kStageKeys) <= safe_hi) tma_stage(i, s0 + i * kStageKeys);
    wait_for_previous_grid();  // q, out, the workspace and this step's K/V rows belong to the previous kernels
    if (tid == 0)
      for (int i = 0; i < kStages && i < n_stage; ++i)
        if (min(s1, s0 + (i + 1) * kStageKeys) > safe_hi) tma_stage(i, s0 + i * kStageKeys);
  } else {
#pragma unroll
    for (int i = 0; i < kStages; ++i) {
      if (i < n_stage)
        issue_stage<D>(ks_all + i * kStageBytes, vs_all + i * kStageBytes, p, kvh, s0 + i * kStageKeys, s0,
                       safe_hi, s1, true);
      cp_async_commit();
    }
    wait_for_previous_grid();  // q, out, the workspace and this step's K/V rows belong to the previous kernels
  }
  const bool late = !kTma && safe_hi < min(s1, s0 + kStages * kStageKeys);  // block-uniform
  if (late) {
#pragma unroll
    for (int i = 0; i < kStages; ++i)
      if (i < n_stage)
        issue_stage<D>(ks_all + i * kStageBytes, vs_all + i * kStageBytes, p, kvh, s0 + i * kStageKeys, safe_hi, s1,
                       s1, false);
    cp_async_commit();
  }

  if (n_stage == 0) {  // nothing of this row in this split (short row, or the tail splits)
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

  // Q as A fragments: row g = head kvh·G + g (zero for g ≥ G; rows g + 8 are zero), k-step j = dims 16j..16j+15.
  std::uint32_t qa[D / 16][2];
  {
    const std::uint32_t* qrow = reinterpret_cast<const std::uint32_t*>(
        p.q + std::int64_t(row) * q_stride + std::int64_t(kvh * G + min(g, G - 1)) * D);
#pragma unroll
    for (int j = 0; j < D / 16; ++j) {
      qa[j][0] = g < G ? qrow[8 * j + t] : 0u;      // dims 16j + 2t, +1
      qa[j][1] = g < G ? qrow[8 * j + 4 + t] : 0u;  // dims 16j + 8 + 2t, +1
    }
  }
  // Online softmax state of row g (identical in the 4 lanes of the quad; l is this lane's partial sum).
  float m_run = -INFINITY, l_run = 0.f;
  float o[kNt][4];
#pragma unroll
  for (int n = 0; n < kNt; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  // ldmatrix lane roles: K (non-transposed, B of S): matrices (keys 0-7 | 8-15) × (dims lo | hi 8 of a k-step);
  // V (transposed, B of O): matrices (keys 0-7 | 8-15) × (n-tile m | m + 1).
  const int k_key = (lane & 7) + ((lane >> 4) << 3), k_half = (lane >> 3) & 1;
  const int v_key = (lane & 7) + (((lane >> 3) & 1) << 3), v_half = lane >> 4;

  for (int i = 0; i < n_stage; ++i) {
    // Stage i's group is complete once at most kStages - 1 newer groups are pending (the late group, newer than
    // stages 0..kStages-1, is waited for in full first).
    const int slot = i % kStages;
    const std::uint32_t kst = ks_all + slot * kStageBytes, vst = vs_all + slot * kStageBytes;
    if constexpr (kTma) {
      mbar_wait(bar0 + 8 * slot, unsigned(i / kStages) & 1u);  // the stage's boxes have landed
      // V's keys from s1 to the end of their 16-key tile (tiles start at k0 + 16m): zeros (the box read whatever the
      // cache holds there).
      const int k0 = s0 + i * kStageKeys, z1 = k0 + min(kStageKeys, (s1 - k0 + 15) / 16 * 16);
      if (i == n_stage - 1 && s1 < z1) {  // block-uniform
        constexpr int kChunks = D / 8;  // 16-byte chunks a key
        for (int e = tid; e < (z1 - s1) * kChunks; e += kThreads) {
          const int r = s1 - k0 + e / kChunks;
          *reinterpret_cast<uint4*>(smem_raw + (vst - smem_addr(smem_raw)) + kv_at<D, true>(r, e % kChunks)) =
              make_uint4(0u, 0u, 0u, 0u);
        }
        __syncthreads();
      }
    } else {
      if (i == 0 && late)
        cp_async_wait<0>();
      else
        cp_async_wait<kStages - 1>();
      __syncthreads();  // every thread's copies of the stage are visible
    }
    if (i == n_stage - 1) PIXTRAL_TIMELINE_MARK(0.f);  // the timeline's mark: the split's last keys are in
#pragma unroll
    for (int sub = 0; sub < kWarpKeys / 16; ++sub) {
      const int r0 = warp * kWarpKeys + sub * 16;  // first key of this 16-key tile within the stage
      const int key0 = s0 + i * kStageKeys + r0;
      if (key0 >= s1) break;  // warp-uniform
      // S = Q · Kᵀ: two n-tiles of 8 keys.
      float sc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
      for (int j = 0; j < D / 16; ++j) {
        std::uint32_t kb[4];
        ldmatrix_x4(kst + kv_at<D, kTma>(r0 + k_key, 2 * j + k_half), kb);
        const std::uint32_t a[4] = {qa[j][0], 0u, qa[j][1], 0u};
        mma_bf16(sc[0], a, kb[0], kb[1]);
        mma_bf16(sc[1], a, kb[2], kb[3]);
      }
      // Row g: keys key0 + 8h + 2t + e in sc[h][e] (e = 0, 1); sc[h][2..3] belong to row g + 8 (unused).
      float mt = -INFINITY;
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const bool ok = key0 + 8 * h + 2 * t + e < s1;
          sc[h][e] = ok ? sc[h][e] * p.scale_log2 : -INFINITY;
          mt = fmaxf(mt, sc[h][e]);
        }
      mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
      mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
      const float m_new = fmaxf(m_run, mt);  // finite: key key0 is live
      const float alpha = exp2f(m_run - m_new);  // 0 on the first tile
      m_run = m_new;
      float pr[2][2];
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int e = 0; e < 2; ++e) pr[h][e] = exp2f(sc[h][e] - m_new);  // 0 for masked keys
      l_run = l_run * alpha + ((pr[0][0] + pr[0][1]) + (pr[1][0] + pr[1][1]));
      // P as the A operand (rows g + 8 zero): keys 2t, 2t+1 | 8 + 2t, 8 + 2t + 1.
      const std::uint32_t pa[4] = {pack_bf16(pr[0][0], pr[0][1]), 0u, pack_bf16(pr[1][0], pr[1][1]), 0u};
#pragma unroll
      for (int n = 0; n < kNt; n += 2) {
        std::uint32_t vb[4];
        ldmatrix_x4_trans(vst + kv_at<D, kTma>(r0 + v_key, n + v_half), vb);
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          o[n][e] *= alpha;
          o[n + 1][e] *= alpha;
        }
        mma_bf16(o[n], pa, vb[0], vb[1]);
        mma_bf16(o[n + 1], pa, vb[2], vb[3]);
      }
    }
    __syncthreads();  // the slot is read by every warp before it is refilled
    if constexpr (kTma) {
      if (tid == 0 && i + kStages < n_stage) tma_stage(slot, s0 + (i + kStages) * kStageKeys);
    } else {
      if (i + kStages < n_stage)
        issue_stage<D>(kst, vst, p, kvh, s0 + (i + kStages) * kStageKeys, s0, s1, s1, true);
      cp_async_commit();
    }
  }

  // Per warp: row g's l over the quad (fixed xor tree), O and m to shared memory, then the warps merged in a
  // fixed order.
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
  l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
  if (g < G) {
#pragma unroll
    for (int n = 0; n < kNt; ++n)
      *reinterpret_cast<float2*>(&red_o[warp][g][8 * n + 2 * t]) = make_float2(o[n][0], o[n][1]);
    if (t == 0) {
      red_l[warp][g] = l_run;
      red_m[warp][g] = m_run;  // -inf for a warp that had no tile (its O and L are 0)
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

// Merges a split's (m, l, o) into a running (m, l, o): log-sum-exp rescaling, base 2. A split with m = -inf
// (empty) has weight 0.
__device__ __forceinline__ void lse_merge(float& m, float& l, float& o, float mc, float lc, float oc) {
  if (mc == -INFINITY) return;
  const float mn = fmaxf(m, mc);
  const float a = exp2f(m - mn), b = exp2f(mc - mn);  // a = 0 while m = -inf
  o = o * a + oc * b;
  l = l * a + lc * b;
  m = mn;
}

// One block of kCombineGroups × D threads per (row, head): group g merges splits g, g + 8, ... in index order with
// all its loads (m, l and o of up to 8 splits) issued before any math — one dependent round trip to L2 — then
// the groups are merged in index order through shared memory (no atomics: bit-identical run after run).
template <int D, class TO>
__global__ void __launch_bounds__(kCombineGroups * D)
decode_combine_kernel(TO* __restrict__ out, const float* __restrict__ partial, int n_vec, int n_splits,
                      bool late_trigger) {
  constexpr int kBatch = 8;  // splits per group loaded at once (49 splits: 7 per group)
  __shared__ float red_o[kCombineGroups][D], red_m[kCombineGroups], red_l[kCombineGroups];
  PIXTRAL_TIMELINE(kTlCombine);
  if (!late_trigger) allow_dependents_to_launch();
  wait_for_previous_grid();  // everything here comes from decode_attention_kernel
  const std::int64_t vec = blockIdx.x;
  const int tid = threadIdx.x, d = tid % D, g = tid / D;
  const float* Mp = partial + std::int64_t(n_splits) * n_vec * D;
  const float* Lp = Mp + std::int64_t(n_splits) * n_vec;
  float m = -INFINITY, l = 0.f, o = 0.f;
  for (int c0 = g; c0 < n_splits; c0 += kBatch * kCombineGroups) {
    float mc[kBatch], lc[kBatch], oc[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int c = c0 + u * kCombineGroups;
      const bool ok = c < n_splits;
      const std::int64_t at = std::int64_t(ok ? c : 0) * n_vec + vec;
      mc[u] = ok ? Mp[at] : -INFINITY;
      lc[u] = ok ? Lp[at] : 0.f;
      oc[u] = ok ? partial[at * D + d] : 0.f;
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) lse_merge(m, l, o, mc[u], lc[u], oc[u]);
  }
  PIXTRAL_TIMELINE_MARK(o);  // the timeline's mark: the loads are in and merged
  if (late_trigger) allow_dependents_to_launch();  // the next kernel's weight stream after these loads
  red_o[g][d] = o;
  if (d == 0) {
    red_m[g] = m;
    red_l[g] = l;
  }
  __syncthreads();
  if (g == 0) {
    float mt = -INFINITY, lt = 0.f, ot = 0.f;
#pragma unroll
    for (int j = 0; j < kCombineGroups; ++j) lse_merge(mt, lt, ot, red_m[j], red_l[j], red_o[j][d]);
    out[vec * D + d] = from_f32<TO>(lt > 0.f ? ot / lt : 0.f);
  }
}

// pdl_enabled(): kernels.cuh (defined once, in kernels_gemv.cu).

// Whether a two-stage launch takes the TMA form: on sm_90+, by default for the int4 decode's launches (narrow_wave),
// whose blocks share the SMs with the q4tma GEMVs' and start early. H200, page-QA decode at 4193 keys, same run, TMA
// against cp.async: int4 2.434 / 2.451 ms/token (3 rounds), int8 3.809 / 3.810, bf16 6.002 / 5.982 (2 rounds):
// PERF_NOTES v38. PIXTRAL_CUDA_ATTN_TMA=1: every launch; =0: none (A/B, tests); =require: every launch, and an
// error where one cannot. Read at every launch.
bool attn_tma_wanted(const AttentionLaunch& a) {
  const char* e = std::getenv("PIXTRAL_CUDA_ATTN_TMA");
  if (e && *e ? std::strcmp(e, "0") == 0 : !a.narrow_wave) return false;
  return device_has_tma();
}
// The TMA form's stages start at the next 1 KB of its dynamic shared memory: 1 KB more.
std::size_t tma_slack(const AttentionLaunch& a) { return attn_tma_wanted(a) ? 1024 : 0; }

// Stages a block runs with on this device: max_stages(G) where blocks_per_sm(G) such blocks fit an SM's shared
// memory (and one block the opt-in limit), else 1 (or 1 when forced by PIXTRAL_CUDA_ATTN_STAGES=1).
int stages_for(const AttentionLaunch& a, int G, int D) {
  const std::size_t block = stage_smem_bytes(max_stages(G)) + tma_slack(a) + fixed_smem_bytes(G, D);
  const bool fits = block <= std::size_t(a.max_smem) + 1024 &&
                    std::size_t(blocks_per_sm(G)) * block <= std::size_t(a.smem_per_sm);
  return fits && !single_stage_forced() ? max_stages(G) : 1;
}

// Blocks of the chosen kernel resident on an SM: blocks_per_sm(G), fewer where the shared memory is smaller (a
// one-stage block is 42 KB at G = 4, D = 128: 2 on a 100 KB SM).
int resident_blocks(const AttentionLaunch& a, int G, int D) {
  const int stages = stages_for(a, G, D);
  const std::size_t block =
      stage_smem_bytes(stages) + (stages == max_stages(G) ? tma_slack(a) : 0) + fixed_smem_bytes(G, D);
  return std::max(1, std::min(blocks_per_sm(G), int(std::size_t(a.smem_per_sm) / block)));
}

// Splits per (row, KV head): decode_split_count (decode_splits.h) for this device's resident blocks.
int n_splits_of(const AttentionLaunch& a) {
  const int G = a.n_heads / std::max(1, a.n_kv_heads);
  // PIXTRAL_CUDA_ATTN_SPLITS=N: at most N splits (A/B; PERF_NOTES v19: at 4193 keys on an H200, 36-44 instead of
  // 49 made int4 decode ~1 % faster and int8 2-4 % slower, bf16 unchanged).
  const int cap = int(std::max(1L, env_long("PIXTRAL_CUDA_ATTN_SPLITS", kMaxSplits)));
  return decode_split_count(a.key_hi_max - a.key_lo_min, std::int64_t(a.n_kv_heads) * a.n_q,
                            resident_blocks(a, G, a.head_dim), a.n_sms, a.narrow_wave, cap);
}

// The combine lets the next kernel launch only after its loads (PERF_NOTES v25 1.): launched at its start, the next
// GEMV's blocks stream their weights (wo: 21 MB in int8, 10.5 MB in int4) before their wait, and the combine's
// ~0.7 MB of partials, L2 hits, queue behind them. A block triggers when its first warp passes the instruction
// (later ones have no effect), and nothing but program order keeps it after the merge that uses the loads (not
// checked in the SASS). H200, same run: int8 decode 3.706 → 3.607 ms/token, int4 2.591 → 2.561, bf16 6.024 →
// 5.908. A trigger after the block's barrier, i.e. after every warp's loads, was no better (PERF_NOTES v26 2.: int8
// 3.616 → 3.619, int4 2.556 → 2.613).
// PIXTRAL_CUDA_COMBINE_LATE=0 (A/B): at its start, as before.
bool combine_late_trigger() {
  return !env_zero("PIXTRAL_CUDA_COMBINE_LATE");
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
  const dim3 grid(unsigned(p.n_splits), unsigned(a.n_kv_heads), unsigned(a.n_q));
  CUtensorMap mk{}, mv{};
  const auto launch = [&](auto kernel, int stages, bool tma) -> Status {
    const std::size_t smem = stage_smem_bytes(stages) + (tma ? 1024 : 0);
    PIXTRAL_RETURN_IF_ERROR(allow_dynamic_smem(kernel, smem, "decode attention"));  // not a stream operation
    launch_dependent_smem(kernel, grid, dim3(kThreads), smem, s, p, mk, mv);
    return {};
  };
  if (stages_for(a, G, D) == max_stages(G)) {
    constexpr int S = max_stages(G);
    bool tma = attn_tma_wanted(a) && sm90_image(decode_attention_kernel<D, G, S, TO, true>);
    if (tma) {  // the caches as [Hkv][D / 64][n_kv][64] bf16, boxes [1][D / 64][stage keys][64], 128-byte swizzled
      constexpr cuuint32_t kKeys = cuuint32_t(kStageBytes / (2 * D));
      const cuuint64_t key_stride = cuuint64_t(a.n_kv_heads) * D * 2;
      for (auto [base, map] : {std::pair{a.k, &mk}, std::pair{a.v, &mv}}) {
        qtma::MapSpec m = qtma::make_map(base, CU_TENSOR_MAP_DATA_TYPE_UINT16,
                                         {64, cuuint64_t(a.n_kv), cuuint64_t(D / 64), cuuint64_t(a.n_kv_heads)},
                                         {key_stride, 128, cuuint64_t(D) * 2}, {64, kKeys, cuuint32_t(D / 64), 1});
        m.swizzle = CU_TENSOR_MAP_SWIZZLE_128B;
        m.cache = false;  // without a graph n_kv grows every token: a cached map a token would never be read again
        tma = tma && qtma::encode_map(map, m);
      }
    }
    if (!tma && env_is("PIXTRAL_CUDA_ATTN_TMA", "require"))
      return Status(ErrorCode::unsupported, "decode attention (PIXTRAL_CUDA_ATTN_TMA=require): no TMA form here");
    PIXTRAL_RETURN_IF_ERROR(tma ? launch(decode_attention_kernel<D, G, S, TO, true>, S, true)
                                : launch(decode_attention_kernel<D, G, S, TO, false>, S, false));
  } else {
    PIXTRAL_RETURN_IF_ERROR(launch(decode_attention_kernel<D, G, 1, TO>, 1, false));
  }
  PIXTRAL_CUDA_LAUNCH_CHECK(decode_attention_kernel);
  if (p.n_splits > 1) {
    launch_dependent(decode_combine_kernel<D, TO>, dim3(unsigned(a.n_q * a.n_heads)), dim3(kCombineGroups * D), s,
                     static_cast<TO*>(a.out), static_cast<const float*>(a.partial), int(a.n_q * a.n_heads),
                     p.n_splits, combine_late_trigger());
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
