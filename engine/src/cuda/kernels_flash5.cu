// SPDX-License-Identifier: Apache-2.0
// Prefill attention v5, the FlashAttention-3 design on sm_90a (the automatic prefill attention on sm_90, config 5p;
// kernels_flash.cu pick_flash). v4's
// semantics (kernels_flash4.cu: per-row key ranges [x, y), keys outside a row's range masked, lazy rescaling, base-2
// softmax with ex2.approx.ftz, fully masked rows give 0, bf16 or f32 output, deterministic: fixed order, no
// atomics); the device decode state is not supported (flash5_supported: v4 takes those launches). The machine:
//   - one block an SM = 3 warpgroups (384 threads): warpgroup 0 is the producer — it drops to 24 registers
//     (setmaxnreg.dec) and one thread issues every load as TMA (cp.async.bulk.tensor.2d, 128-byte swizzle): the
//     block's 128 Q rows, then K and V tiles of kBc keys into a ring of kStages stages with separate K and V
//     mbarriers ("full": the producer's arrive.expect_tx + the TMA's complete_tx; "empty": one arrival per consumer
//     warp once its wgmma that read the stage has completed); warpgroups 1 and 2 are the consumers, 64 query rows
//     each, raised to 240 registers (setmaxnreg.inc);
//   - kBc = 128 keys a tile (config 'n': 64): S = Q·Kᵀ is one wgmma m64n128k16 chain (K-major descriptors for Q
//     and K), O += P·V is wgmma m64nDk16 with P from registers (v4's fragment mapping) and V MN-major;
//   - intra-warpgroup overlap (FA3 §3.2): a consumer issues S_t = Q·K_tᵀ, rescales O by α_{t−1} while it runs,
//     issues O += P_{t−1}·V_{t−1}, waits for S_t only (wait_group 1; K_t's stage goes back), runs S_t's softmax
//     while P_{t−1}·V_{t−1} is on the tensor cores, then waits for it (V_{t−1}'s stage goes back) and packs P_t;
//   - config 'p': ping-pong (FA3 §3.1): the consumer warpgroups take turns issuing their wgmmas (named barriers 1
//     and 2), so one's softmax runs under the other's products; every warpgroup takes exactly n_tiles + 1 turns
//     (a tile it skips still takes its turn, issuing nothing), so the turns pair up whatever the key ranges.
// The block walks the key tiles [blk_lo + kBc·t, ...) that meet the union of its rows' ranges (causal: up to its
// last row's end; segments: from the union's lo to its hi); a consumer warpgroup computes the contiguous run of
// tiles that meets its own 64 rows' union and, for the others, waits on "full" and gives the stage back at once
// (the wait keeps its arrivals on "empty" in the right phase). Keys past a block's range: the K/V tensor maps end
// at a.key_hi_max (no row sees a key past it), so TMA zero-fills those rows; keys in [blk_hi, key_hi_max) a row
// cannot see hold written, finite values and are masked (P = 0), which adds exactly nothing.
// Tiles in shared memory use v4's 128B-swizzled panel layout (kernels_wgmma.cuh): a box of 64 columns × R rows
// with CU_TENSOR_MAP_SWIZZLE_128B is exactly one panel, so a tile of D columns is D/64 TMA boxes.
// The tensor maps are encoded on the host at each launch with cuTensorMapEncodeTiled, found through
// cudaGetDriverEntryPointByVersion (libcuda is never linked: the library keeps loading without a driver), and passed
// as __grid_constant__ kernel parameters.
// Needs sm_90a, as v4 (engine/src/cuda/CMakeLists.txt adds that image to this file; PIXTRAL_CUDA_SM90A); the other
// images are empty and carry the same static shared-memory marker v4 uses.
// ref: FlashAttention-3 (Shah et al. 2024) §3.1-3.2; flash-attention hopper/mainloop_fwd_sm90_tma_gmma_ws.hpp
// (IntraWGOverlap order: S_t, rescale_o, P·V_{t−1}, wait<1>, softmax, wait<0>) and flash_fwd_kernel_sm90.h
// (24 / 240 registers for 1 producer + 2 consumer warpgroups); PTX ISA "cp.async.bulk.tensor", "mbarrier"
// (expect_tx, try_wait.parity, phases), "setmaxnreg", "bar.sync / bar.arrive"; CUDA C++ Programming Guide
// "Tensor Memory Accelerator" (cuTensorMapEncodeTiled, __grid_constant__ maps).

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <string>

#include "cuda/kernels_flash.cuh"
#include "cuda/kernels_wgmma.cuh"
#include "cuda/tma.cuh"

namespace pixtral::cuda::flash {
namespace {

constexpr int kBr = 128;                 // query rows a block: 2 consumer warpgroups × 64
constexpr int kConsumerThreads = 256;    // warpgroups 1, 2
constexpr int kThreads = 128 + kConsumerThreads;

// Shared memory (offsets from the 1024-aligned base): [Q: kBr × D][stage st: K, V (kBc × D bf16 each)] ..,
// mbarriers q_full, k_full[kStages], v_full[kStages], k_empty[kStages], v_empty[kStages], the rows' key ranges
// (kBr int2), 4 warps' range summaries (int4); plus 1024 bytes of alignment slack.
template <int D, int kBc, int kStages>
struct Layout {
  static constexpr std::uint32_t kQBytes = std::uint32_t(kBr) * D * 2;
  static constexpr std::uint32_t kTileBytes = std::uint32_t(kBc) * D * 2;
  static constexpr std::uint32_t kStage0 = kQBytes;
  static constexpr std::uint32_t kBars = kStage0 + 2 * kStages * kTileBytes;
  static constexpr std::uint32_t kRng = (kBars + 8 * (1 + 4 * kStages) + 15) / 16 * 16;
  static constexpr std::uint32_t kWrng = kRng + kBr * sizeof(int2);
  static constexpr std::size_t kBytes = 1024 + kWrng + 4 * sizeof(int4);
};

// The configurations: keys a tile and stages (as many as fit comfortably; one block an SM either way).
template <int D, int kBc>
constexpr int stages() {
  return kBc == 64 ? 4 : (D == 128 ? 2 : 3);
}
template <int D>
constexpr std::size_t max_smem_bytes() {
  return std::max(Layout<D, 128, stages<D, 128>()>::kBytes, Layout<D, 64, stages<D, 64>()>::kBytes);
}

constexpr int kProducerRegs = 24, kConsumerRegs = 240;  // 128 · 24 + 256 · 240 = 384 · 168 (launch bound 384, 1)

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
constexpr int kBarTurn = 1;  // named barriers 1, 2: consumer warpgroup 0's / 1's turn (ping-pong)

#endif  // __CUDA_ARCH_FEAT_SM90_ALL

template <int D, class TO, int kBc, int kStages, bool kPingPong>
__global__ void __launch_bounds__(kThreads, 1)
    flash5_fwd_kernel(const FlashParams p, const __grid_constant__ CUtensorMap tm_q,
                      const __grid_constant__ CUtensorMap tm_k, const __grid_constant__ CUtensorMap tm_v) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using L = Layout<D, kBc, kStages>;
  constexpr int kKSteps = D / 16;   // k-steps of Q·Kᵀ
  constexpr int kPSteps = kBc / 16; // k-steps of P·V
  constexpr int kO = D / 2;         // O accumulators a thread (64 rows × D over 128 threads)
  constexpr int kS = kBc / 2;       // S accumulators a thread (64 rows × kBc over 128 threads)
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const std::uint32_t s_raw = std::uint32_t(__cvta_generic_to_shared(smem_raw));
  const std::uint32_t s_base = (s_raw + 1023u) & ~1023u;  // swizzle atoms 1024-byte aligned
  unsigned char* smem = smem_raw + (s_base - s_raw);
  const std::uint32_t s_q = s_base;
  auto s_k = [&](int st) { return s_base + L::kStage0 + L::kTileBytes * std::uint32_t(2 * st); };
  auto s_v = [&](int st) { return s_base + L::kStage0 + L::kTileBytes * std::uint32_t(2 * st + 1); };
  const std::uint32_t q_full = s_base + L::kBars;
  auto k_full = [&](int st) { return q_full + 8u * std::uint32_t(1 + st); };
  auto v_full = [&](int st) { return q_full + 8u * std::uint32_t(1 + kStages + st); };
  auto k_empty = [&](int st) { return q_full + 8u * std::uint32_t(1 + 2 * kStages + st); };
  auto v_empty = [&](int st) { return q_full + 8u * std::uint32_t(1 + 3 * kStages + st); };
  int2* s_rng = reinterpret_cast<int2*>(smem + L::kRng);
  int4* s_wrng = reinterpret_cast<int4*>(smem + L::kWrng);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int h = blockIdx.x;
  const int qb = p.n_qblocks - 1 - int(blockIdx.y);  // heaviest (causal) query blocks first, all heads
  const int kvh = h / (p.H / p.Hkv);
  const int r0 = qb * kBr;
  const int nr = min(kBr, p.n_q - r0);

  // Key ranges (v4): thread tid < 128 owns block row tid; per warp (32 rows) the union and the intersection.
  if (tid < kBr) block_row_ranges(p, r0, nr, tid, s_rng, s_wrng);
  if (tid == 0) {
    mbar_init(q_full, 1);
#pragma unroll
    for (int st = 0; st < kStages; ++st) {
      mbar_init(k_full(st), 1);  // the producer's arrive.expect_tx; the bytes come from the TMA
      mbar_init(v_full(st), 1);
      mbar_init(k_empty(st), kConsumerThreads / 32);  // lane 0 of each consumer warp
      mbar_init(v_empty(st), kConsumerThreads / 32);
    }
    mbar_init_fence();  // visible to the TMA unit
  }
  __syncthreads();  // the only block-wide barrier: after it, producer and consumers go their own ways
  int blk_lo = INT_MAX, blk_hi = INT_MIN;
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    const int4 wr = s_wrng[w];
    blk_lo = min(blk_lo, wr.x);
    blk_hi = max(blk_hi, wr.y);
  }
  const int n_tiles = blk_hi > blk_lo ? (blk_hi - blk_lo + kBc - 1) / kBc : 0;

  if (warp < 4) {  // ---- producer warpgroup: one thread issues every TMA load ----
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kProducerRegs));
    if (warp == 0 && lane == 0 && n_tiles > 0) {
      prefetch_map(&tm_q);
      prefetch_map(&tm_k);
      prefetch_map(&tm_v);
      // Q: rows [r0, r0 + 128) of head h (rows past n_q zero-filled; rows past nr are never stored).
      mbar_expect_tx(q_full, L::kQBytes);
#pragma unroll
      for (int pi = 0; pi < D / 64; ++pi) tma_load_2d(s_q + pi * (kBr * 128), &tm_q, q_full, h * D + 64 * pi, r0);
      const int col = kvh * D;
      for (int t = 0; t < n_tiles; ++t) {
        const int st = t % kStages;
        const std::uint32_t ph = std::uint32_t(t / kStages) & 1u;
        const int kt = blk_lo + t * kBc;
        // Stage st held tile t − kStages: wait until both consumer warpgroups gave it back (that phase is the
        // (t / kStages − 1)-th of "empty", parity ph ^ 1).
        if (t >= kStages) mbar_wait(k_empty(st), ph ^ 1u);
        mbar_expect_tx(k_full(st), L::kTileBytes);
#pragma unroll
        for (int pi = 0; pi < D / 64; ++pi)
          tma_load_2d(s_k(st) + pi * (kBc * 128), &tm_k, k_full(st), col + 64 * pi, kt);
        if (t >= kStages) mbar_wait(v_empty(st), ph ^ 1u);
        mbar_expect_tx(v_full(st), L::kTileBytes);
#pragma unroll
        for (int pi = 0; pi < D / 64; ++pi)
          tma_load_2d(s_v(st) + pi * (kBc * 128), &tm_v, v_full(st), col + 64 * pi, kt);
      }
    }
    return;
  }

  // ---- consumer warpgroups ----
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kConsumerRegs));
  const int cw = warp - 4;              // consumer warp 0..7
  const int wg = cw >> 2, wq = cw & 3;  // consumer warpgroup, warp in it
  const int g = lane >> 2, t4 = lane & 3;
  const float sc = p.scale_log2;
  // This warpgroup's rows: union (x, y), intersection (z, w); the run of tiles [t_lo, t_hi) that meets the union.
  int4 grng;
  {
    const int4 a = s_wrng[2 * wg], b = s_wrng[2 * wg + 1];
    grng = make_int4(min(a.x, b.x), max(a.y, b.y), max(a.z, b.z), min(a.w, b.w));
  }
  int t_lo = 0, t_hi = 0;
  if (grng.y > grng.x && n_tiles > 0) {  // grng.x ≥ blk_lo, grng.y ≤ blk_hi
    t_lo = (grng.x - blk_lo) / kBc;
    t_hi = min(n_tiles, (grng.y - blk_lo + kBc - 1) / kBc);
  }

  // This thread's rows (block-local): row_a = 64 wg + 16 wq + g (accumulators 4j, 4j + 1), row_a + 8 (4j + 2,
  // 4j + 3); accumulator 4j + c is column 8j + 2 t4 + (c & 1) (PTX ISA wgmma D fragment, m64nNk16).
  const int row_a = 64 * wg + 16 * wq + g;
  const std::uint32_t q_wg = s_q + 64 * 128 * wg;  // this warpgroup's 64 Q rows (stride byte offset 1024)
  float o[kO];
#pragma unroll
  for (int i = 0; i < kO; ++i) o[i] = 0.f;
  float s[kS];
#pragma unroll
  for (int i = 0; i < kS; ++i) s[i] = 0.f;
  std::uint32_t pa[kPSteps][4];
#pragma unroll
  for (int kk = 0; kk < kPSteps; ++kk) pa[kk][0] = pa[kk][1] = pa[kk][2] = pa[kk][3] = 0u;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // running max (scaled, base 2), partial row sums
  float al[2] = {1.f, 1.f};                                 // the last softmax's α (O not yet rescaled by it)
  bool moved = false;

  // Turns (ping-pong): every warpgroup takes exactly n_tiles + 1, one a key tile plus the final P·V's.
  int turn = 0;
  auto turn_begin = [&] {
    if constexpr (kPingPong) named_sync(kBarTurn + wg, 256);
  };
  auto turn_end = [&] {
    if constexpr (kPingPong) {
      if (!(wg == 1 && turn == n_tiles)) named_arrive(kBarTurn + (wg ^ 1), 256);  // the other's turn
    }
    ++turn;
  };
  // A stage goes back to the producer: lane 0 of each warp, after the warp's wgmma that read it completed.
  auto release = [&](std::uint32_t bar) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
  };
  // A tile none of this warpgroup's rows can see: wait for it (keeps the "empty" arrivals in phase), give it back.
  auto skip_tile = [&](int t) {
    const int st = t % kStages;
    const std::uint32_t ph = std::uint32_t(t / kStages) & 1u;
    mbar_wait(k_full(st), ph);
    turn_begin();
    turn_end();
    release(k_empty(st));
    mbar_wait(v_full(st), ph);
    release(v_empty(st));
  };
  auto fence_s = [&] {
#pragma unroll
    for (int i = 0; i < kS; ++i) reg_fence(s[i]);
  };
  auto fence_o_pa = [&] {
#pragma unroll
    for (int i = 0; i < kO; ++i) reg_fence(o[i]);
#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) reg_fence(pa[kk][i]);
  };
  auto issue_s = [&](int st) {  // S = Q K_tᵀ (raw, unscaled); Q·Kᵀ k-step kk: panel kk / 4, byte 32 (kk mod 4)
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const std::uint32_t panel_off = std::uint32_t(kk >> 2), k_off = std::uint32_t(kk & 3) * 32;
      const std::uint64_t da = desc_sw128(q_wg + panel_off * (kBr * 128) + k_off, 16, 1024);
      const std::uint64_t db = desc_sw128(s_k(st) + panel_off * (kBc * 128) + k_off, 16, 1024);
      wgmma_qk(s, da, db, kk > 0);
    }
    wg_commit();
  };
  auto issue_pv = [&](int st) {  // O += P V: V descriptor 16 keys (2048 bytes) further each k-step, leading byte
                                 // offset = the 64-column panel stride (kBc rows × 128 bytes)
#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk) wgmma_pv(o, pa[kk], desc_sw128(s_v(st) + kk * 16 * 128, kBc * 128, 1024));
    wg_commit();
  };
  // Softmax of S_t (complete, reg-fenced): mask, running max, α into al, P = 2^(s·scale − m) in s, row sums.
  auto softmax = [&](int t) {
    const int kt = blk_lo + t * kBc;
    const bool need_mask = kt < grng.z || kt + kBc > grng.w;
    float mx[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {  // row i of this thread: row_a + 8 i, accumulators 4j + 2i, 4j + 2i + 1
      mx[i] = -INFINITY;
      if (need_mask) {
        const int2 rr = s_rng[row_a + 8 * i];
#pragma unroll
        for (int j = 0; j < kBc / 8; ++j)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int key = kt + j * 8 + 2 * t4 + c;
            if (key < rr.x || key >= rr.y) s[4 * j + 2 * i + c] = -INFINITY;
          }
      }
#pragma unroll
      for (int j = 0; j < kBc / 8; ++j) mx[i] = fmaxf(mx[i], fmaxf(s[4 * j + 2 * i], s[4 * j + 2 * i + 1]));
    }
    // New running max (scaled); α = 2^(m_old − m_new), exactly 1 where m stays; nm = −m (0 while all masked).
    float nm[2];
    moved = false;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
      for (int o_ = 1; o_ <= 2; o_ <<= 1) mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], o_));
      const float ms = mx[i] * sc;  // -inf stays -inf
      const float mn = ms > m[i] + kSlack ? ms : m[i];
      const bool up = mn != m[i];
      al[i] = up ? ex2(m[i] - mn) : 1.f;  // ex2(-inf) = 0 on the first tile a row sees
      moved |= up;
      m[i] = mn;
      nm[i] = mn == -INFINITY ? 0.f : -mn;
    }
    float sum[2] = {0.f, 0.f};
#pragma unroll
    for (int j = 0; j < kBc / 8; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) s[4 * j + c] = ex2(fmaf(s[4 * j + c], sc, nm[c >> 1]));
      sum[0] += s[4 * j] + s[4 * j + 1];
      sum[1] += s[4 * j + 2] + s[4 * j + 3];
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = l[i] * al[i] + sum[i];
  };
  // O *= α of the last softmax (O not in flight).
  auto rescale_o = [&] {
    if (__any_sync(0xffffffffu, moved)) {  // warp-uniform; α = 1 elsewhere, so skipping it is exact
#pragma unroll
      for (int j = 0; j < kO / 4; ++j) {
        o[4 * j] *= al[0];
        o[4 * j + 1] *= al[0];
        o[4 * j + 2] *= al[1];
        o[4 * j + 3] *= al[1];
      }
    }
  };
  // P rounded to bf16 as the A fragment of P·V: k-step kk (keys 16 kk ..) takes accumulators 8kk .. 8kk + 7 —
  // {row_a, keys 2t4, +1}, {row_b, same}, {row_a, keys 8 + 2t4, +1}, {row_b, same} (v4's mapping).
  auto pack_p = [&] {
#pragma unroll
    for (int j = 0; j < kBc / 8; ++j) {
      pa[j >> 1][2 * (j & 1)] = pack_bf16(s[4 * j], s[4 * j + 1]);
      pa[j >> 1][2 * (j & 1) + 1] = pack_bf16(s[4 * j + 2], s[4 * j + 3]);
    }
  };

  if (kPingPong && wg == 1) named_arrive(kBarTurn + 0, 256);  // warpgroup 0 takes the first turn
  for (int t = 0; t < t_lo; ++t) skip_tile(t);
  if (t_hi > t_lo) {
    mbar_wait(q_full, 0);
    {  // first tile: S only
      const int st = t_lo % kStages;
      mbar_wait(k_full(st), std::uint32_t(t_lo / kStages) & 1u);
      turn_begin();
      fence_s();
      wg_fence();
      issue_s(st);
      turn_end();
      wg_wait0();
      fence_s();
      release(k_empty(st));
      softmax(t_lo);
      pack_p();
    }
    // Steady state: S_t issued, O rescaled under it, P_{t−1}·V_{t−1} issued; S_t's softmax under P·V.
    for (int t = t_lo + 1; t < t_hi; ++t) {
      const int st = t % kStages, sp = (t - 1) % kStages;
      mbar_wait(k_full(st), std::uint32_t(t / kStages) & 1u);
      turn_begin();
      fence_s();
      wg_fence();
      issue_s(st);
      rescale_o();  // α_{t−1}
      mbar_wait(v_full(sp), std::uint32_t((t - 1) / kStages) & 1u);
      fence_o_pa();
      wg_fence();  // O was written by the rescale: order it before the wgmma that accumulates into it
      issue_pv(sp);
      turn_end();
      wg_wait1();  // S_t done (groups complete in order)
      fence_s();
      release(k_empty(st));
      softmax(t);
      wg_wait0();  // P_{t−1}·V_{t−1} done: O and pa are ours again
      fence_o_pa();
      release(v_empty(sp));
      pack_p();
    }
    {  // last P·V
      const int sl = (t_hi - 1) % kStages;
      rescale_o();
      mbar_wait(v_full(sl), std::uint32_t((t_hi - 1) / kStages) & 1u);
      turn_begin();
      fence_o_pa();
      wg_fence();
      issue_pv(sl);
      turn_end();
      wg_wait0();
      fence_o_pa();
      release(v_empty(sl));
    }
  } else {
    // No tile of this warpgroup's rows (e.g. every row's range empty): the Q load the producer issued for the
    // block must still have landed before the block exits.
    if (n_tiles > 0 && wg == 0) mbar_wait(q_full, 0);
    turn_begin();  // the final turn, empty
    turn_end();
  }
  for (int t = t_hi; t < n_tiles; ++t) skip_tile(t);

  TO* out = static_cast<TO*>(p.out) + std::int64_t(r0) * p.H * D + std::int64_t(h) * D;
  const std::int64_t q_stride = std::int64_t(p.H) * D;
  store_o_rows<kO>(out, q_stride, row_a, t4, nr, l, o);
#else
  // Not the sm_90a image: never launched (flash5_supported). The static shared word is the marker the host reads
  // through cudaFuncGetAttributes (sharedSizeBytes != 0: the driver loaded this image, v5 cannot run).
  __shared__ int not_sm90a[1];
  asm volatile("st.shared.u32 [%0], 0;\n" ::"r"(std::uint32_t(__cvta_generic_to_shared(not_sm90a))));
#endif
}

// A 2-D map over a row-major [rows, cols] bf16 matrix: boxes of 64 columns (128 bytes: one swizzle panel) × box_rows
// rows, 128-byte swizzle, rows / columns out of bounds read as zeros.
Status encode_map(CUtensorMap* map, const void* base, std::int64_t cols, std::int64_t rows, int box_rows,
                  const char* what) {
  const EncodeTiledFn fn = encode_tiled();
  // Failures here are ErrorCode::unsupported: nothing was queued, and the dispatcher runs v4 or v3 instead.
  if (!fn) return Status(ErrorCode::unsupported, "cuda flash attention v5: the driver has no cuTensorMapEncodeTiled");
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(cols) * 2};  // bytes, dimension 1
  const cuuint32_t box[2] = {64, cuuint32_t(box_rows)};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = fn(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(base), dims, strides, box,
                        elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                        CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return Status(ErrorCode::unsupported, std::string("cuda flash attention v5: cuTensorMapEncodeTiled (") + what +
                                           ") failed with CUresult " + std::to_string(int(r)));
  return {};
}

template <int D, class TO, int kBc, bool kPingPong>
Status launch_typed(const AttentionLaunch& a, cudaStream_t s) {
  constexpr int kStages = stages<D, kBc>();
  const FlashParams p = make_params(a, kBr);
  constexpr std::size_t smem = Layout<D, kBc, kStages>::kBytes;
  auto kernel = flash5_fwd_kernel<D, TO, kBc, kStages, kPingPong>;
  // Once per device and instantiation (kernels.cuh); cudaFuncSetAttribute is not a stream operation.
  PIXTRAL_RETURN_IF_ERROR(allow_dynamic_smem(kernel, smem, "flash attention v5"));
  // K/V maps end at the largest key any row sees (host-known; n_kv where unset): TMA zero-fills the rows past it.
  const std::int64_t kv_rows = a.key_hi_max > 0 && a.key_hi_max <= a.n_kv ? a.key_hi_max : a.n_kv;
  CUtensorMap tm_q, tm_k, tm_v;
  PIXTRAL_RETURN_IF_ERROR(encode_map(&tm_q, a.q, std::int64_t(a.n_heads) * D, a.n_q, kBr, "q"));
  const std::int64_t kv_cols = std::int64_t(a.n_kv_heads) * D;
  PIXTRAL_RETURN_IF_ERROR(encode_map(&tm_k, a.k, kv_cols, std::max<std::int64_t>(1, kv_rows), kBc, "k"));
  PIXTRAL_RETURN_IF_ERROR(encode_map(&tm_v, a.v, kv_cols, std::max<std::int64_t>(1, kv_rows), kBc, "v"));
  const dim3 grid(unsigned(a.n_heads), unsigned(p.n_qblocks));
  kernel<<<grid, kThreads, smem, s>>>(p, tm_q, tm_k, tm_v);
  PIXTRAL_CUDA_LAUNCH_CHECK(flash5_fwd_kernel);
  return {};
}

// Whether the current device runs this file's sm_90a image: compute capability 9.0 and the loaded image of the
// kernel has no static shared memory (the other images carry a marker word). Once per device (up to 64).
bool device_runs_sm90a() {
#if defined(PIXTRAL_CUDA_SM90A)
  static std::atomic<signed char> known[64];
  // The loaded image must also have at least the registers the producer/consumer hand-over assumes (setmaxnreg:
  // 128 × kProducerRegs + 256 × kConsumerRegs ≤ 384 × numRegs); fewer would block in setmaxnreg.
  return device_runs_sm90a_image(
      reinterpret_cast<const void*>(flash5_fwd_kernel<64, bf16, 128, stages<64, 128>(), false>), known,
      [](const cudaFuncAttributes& fa) { return 128 * kProducerRegs + 256 * kConsumerRegs <= 384 * fa.numRegs; });
#else
  return false;
#endif
}

template <int D, class TO>
Status launch_d(const AttentionLaunch& a, char config, cudaStream_t s) {
  if (config == 'p') return launch_typed<D, TO, 128, true>(a, s);
  if (config == 'n') return launch_typed<D, TO, 64, false>(a, s);
  return launch_typed<D, TO, 128, false>(a, s);
}

}  // namespace

bool flash5_supported(const AttentionLaunch& a) {
  constexpr std::size_t kReservedPerBlock = 1024;  // the runtime's shared memory per block
  if (!flash_attention_supported(a) || !scale_folds(a) || a.dev_state != nullptr || a.key_range == nullptr)
    return false;
  const std::size_t smem = a.head_dim == 64 ? max_smem_bytes<64>() : max_smem_bytes<128>();
  const std::uintptr_t out = reinterpret_cast<std::uintptr_t>(a.out);
  return smem <= std::size_t(a.max_smem) && smem + kReservedPerBlock <= std::size_t(a.smem_per_sm) &&
         (out & 7) == 0 && ceil_div(a.n_q, kBr) <= 65535 && a.n_q <= INT_MAX && a.n_kv <= INT_MAX &&
         device_runs_sm90a() && encode_tiled() != nullptr;
}

// config: '\0' the default (128-key tiles, intra-warpgroup overlap); 'p' the same with ping-pong between the
// consumer warpgroups; 'n' 64-key tiles (4 stages), no ping-pong.
Status launch_flash5(const AttentionLaunch& a, char config, cudaStream_t s) {
  if (a.head_dim == 64)
    return a.out_t == DType::f32 ? launch_d<64, float>(a, config, s) : launch_d<64, bf16>(a, config, s);
  return a.out_t == DType::f32 ? launch_d<128, float>(a, config, s) : launch_d<128, bf16>(a, config, s);
}

}  // namespace pixtral::cuda::flash
