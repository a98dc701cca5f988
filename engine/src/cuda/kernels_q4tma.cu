// SPDX-License-Identifier: Apache-2.0
// The int4 × bf16 decode GEMV for one x row, streamed by the Tensor Memory Accelerator (issue 6; PERF_NOTES v17):
// launch_q4tma, called by kernels_quant.cu's GEMV dispatch before q4mma (kernels_q4mma.cu) for T = 1 in every mode
// (plain, silu, rope, residual), computing every row with q4mma's arithmetic (q4_math.cuh): the same bits; and
// launch_q4tma_normed, the same with the decode RMSNorm folded in — except that its silu launch ([w1; w3]) takes the
// integer tensor-core path by default (q4_imma.cuh, PERF_NOTES v33: other bits, within a bf16 step of them). What
// it shares with the int8 twin (kernels_q8tma.cu) is in qtma_common.cuh.
//
// Why: q4mma's threads each stream their own 16-byte pieces through a cp.async ring, one 16-row tile a block, in
// grids of 192–896 blocks; a decoder layer's four int4 GEMVs ran at 1.9× their bytes at the copy rate (lab chain:
// 65.8 µs a layer against 34.4), each kernel ~6–11 µs over its bytes (v14). The same bytes copied as one bulk copy
// a stage stream at 1.05–1.2× (pixtral_q4stream_lab), and a 4-D tensor map reads them from the row-major layout
// as they are stored (no new weight format).
//
// Structure: a persistent grid of two blocks an SM (three where the tiles fit them), static tiles (tile = block + j ·
// grid), or, for the silu and plain modes with more tiles than blocks, tiles taken from a counter (g_q4t_dyn below;
// which slot a launch takes, and which GEMV follows which for the L2 hint, is the host's bookkeeping in q4tma_plan.cu);
// a tile's bits never depend on the block or the timing. A block = 8 consumer warps + 1 producer warp (one lane). The
// producer, from before the programmatic-dependent-launch wait on (weights are immutable), fills a ring of
// mbarrier-guarded stages: stage s of a tile = groups 8s .. 8s + 7 of K (consumer warp w multiplies group 8s + w:
// q4mma's order; a contiguous 512-byte piece of each row) for the tile's 16 rows (R = 2 modes: both row sets), one TMA
// (two for a split R = 2 tile); and each tile's scales ([16 rows][n_groups] fp32, one box a row set) into one of two
// scale slots (H200 int4 decode, same run: each warp's stages from its own contiguous range of groups 2.810 ms/token,
// the round-robin order 2.800). The consumers stage x once (all loads at once), each 16-byte chunk stored as the MMAs'
// B registers for it (stage_x with XAsB), then for each stage: wait, read their 16 bytes of rows g and g + 8, release
// the slot, and multiply (q4_group_mma_b on the B registers as read, with the group's correction from group_correction:
// q4mma's T = 1 path, the same bits; in the silu mode a warp's first tile keeps its groups' corrections and its later
// tiles read them — kPreX, H200 int4 decode, same run: 2.657 -> 2.6065 ms/token). A tile's 8 partial sums meet in
// shared memory: warps 1..7 arrive on a named barrier, warp 0 waits on it, adds them in warp order (q4mma's order) and
// stores through gemv_modes.cuh's epilogue — the storing lanes read their epilogue inputs (the rope position and
// sin/cos, the residual's h) at the tile's start.
// launch_q4tma_normed folds the decode RMSNorm before the QKV and [w1; w3] GEMVs into the prologue: each block
// normalizes h itself with row_norm_kernel's bits while its ring fills (block 0 also writes xn), one kernel instead
// of two (H200 int4 decode, same run: 2.958 -> 2.941 ms/token).
// Opt-in (PIXTRAL_CUDA_Q4TMA_L2PF=MB): once its producer has issued its last stage, a block asks L2 for its share of
// the next q4tma GEMV's first tiles (the successor known from the step before: note_launch). 8 MB paid 0.6 % in v18
// and costs 0.4 % since v25's late triggers (PERF_NOTES v27 3.), so it is off by default.
// Shared-memory image of a stage: [warp][row][64 bytes] for a 16-row box (rows g and g + 1 of a warp's reads lie
// 64 bytes apart: no bank conflict), [warp][r][pair][64] for the interleaved rope pairs' 5-D box.
// ref: PTX ISA "cp.async.bulk.tensor", "mbarrier"; CUTLASS's warp-specialized producer/consumer pipelines
//      (the full/empty barrier ring).
#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "core/quant.h"
#include "cuda/env_switch.h"
#include "cuda/kernels_quant.cuh"
#include "cuda/q4_imma.cuh"
#include "cuda/q4_math.cuh"
#include "cuda/q4tma_plan.h"
#include "cuda/qtma_common.cuh"
#include "cuda/timeline.cuh"

namespace pixtral::cuda {
namespace {

using namespace qtma;
using namespace q4tplan;

constexpr int kMaxStages = 8;
constexpr int kRedBufs = 4;                  // tiles a warp may run ahead of warp 0's sums (≤ 2 scale slots + 1)
constexpr int kImmaRedBufs = 3;              // the integer path's (its x takes the fourth's KB: 5 stages at K = 5120)
constexpr int kBoxBytes = 16 * kWarps * 64;  // one 16-row box of a stage: 8 KB

// The shared-memory plan of a launch (host and device agree through the kernel arguments).
struct Q4tLayout {
  int stages = 0;
  int stage_bytes = 0;  // R · 8 KB
  int scale_bytes = 0;  // R · 16 · n_groups · 4
  int ring = 0, scales = 0, xs = 0, red = 0, corr = 0, total = 0;  // byte offsets, size
};

// pre_x: the kernel keeps the groups' corrections (kPreX: n_groups floats after red). imma: x as the integer path's
// digits (q4_imma.cuh's imma_x_bytes: digits and a float2 a group, then the ones) and kImmaRedBufs reduction buffers.
Q4tLayout q4t_layout(int R, int K, int budget, bool pre_x, bool imma = false) {
  Q4tLayout l;
  const int n_groups = K / quant::kInt4Group, corr_bytes = pre_x ? n_groups * 4 : 0;
  const int x_bytes = imma ? imma_x_bytes(n_groups) : K * 2;
  const int red_bytes = (imma ? kImmaRedBufs : kRedBufs) * kWarps * R * 16 * 4;
  l.stage_bytes = R * kBoxBytes;
  l.scale_bytes = R * 16 * n_groups * 4;
  const int fixed = kBarBytes + 2 * l.scale_bytes + x_bytes + red_bytes + corr_bytes + 3 * 128;
  l.stages = std::min(kMaxStages, (budget - fixed) / l.stage_bytes);
  l.ring = kBarBytes;
  l.scales = l.ring + l.stages * l.stage_bytes;
  l.xs = (l.scales + 2 * l.scale_bytes + 127) / 128 * 128;
  l.red = (l.xs + x_bytes + 127) / 128 * 128;
  l.corr = l.red + red_bytes;
  l.total = l.corr + corr_bytes;
  return l;
}

struct Q4tArgs {
  int N, n_items, K, n_tiles, stages, ring, scales, xs, red, corr, stage_bytes, scale_bytes;
  // Tiles handed out at run time (dyn_tiles: the launch's slot, -1: static tiles, tile = block + j · grid).
  int dyn_slot = -1;
  // The RMSNorm folded in (launch_q4tma_normed): x = round(h · inv · w) computed by every block from h; block 0 also
  // writes it to xn. Null nh: x is the input.
  const bf16* nh = nullptr;
  const bf16* nw = nullptr;
  bf16* nxn = nullptr;
  float eps = 0.f;
  bool rope_early = true;  // the rope mode's first tile's cos / sin made before it
  bool evict_first = true;  // the W stages' copies with an L2 evict_first policy (PIXTRAL_CUDA_Q4TMA_EVICT_FIRST)
  bool tl_gmark = false;  // timeline builds: the early mark at g's arrival (PIXTRAL_CUDA_TIMELINE_GMARK=1)
  Q4tNext next;
};

// The rows of tile j of `nx` (tile_plan's, at run time), each range's weight and scale bytes asked into L2.
__device__ __forceinline__ void prefetch_next(const Q4tNext& nx) {
  for (int j = int(blockIdx.x); j < nx.n_first; j += int(gridDim.x)) {
    const int n0 = 16 * j;
    int r0 = n0, r1 = -1, len = 16;
    if (nx.mode == GemvMode::silu) {
      r1 = nx.N + n0;
    } else if (nx.mode == GemvMode::rope) {
      const int half = nx.hd / 2, n_rot = (nx.nh + nx.nkv) * half;
      if (nx.halves && n0 < n_rot) {
        r0 = n0 / half * nx.hd + n0 % half;
        r1 = r0 + half;
      } else {
        r0 = 2 * n0;
        len = 32;
      }
    }
    for (const int r : {r0, r1}) {
      const int n = min(len, nx.rows - r);
      if (r < 0 || n <= 0) continue;
      prefetch_l2_bulk(nx.q + std::int64_t(r) * nx.row_bytes, std::uint32_t(n * nx.row_bytes));
      prefetch_l2_bulk(nx.sc + std::int64_t(r) * nx.scale_row_bytes, std::uint32_t(n * nx.scale_row_bytes));
    }
  }
}

// Dynamic tiles (silu and plain modes, more tiles than blocks): each block's producer takes its next tile from a
// counter (kDynSlots counters, 128 bytes apart: [0] the next tile, [1] the producers done), so the
// blocks that stream faster — the ones alone on an SM, or beside a block that finished — take more tiles; static
// tiles gave two of the 264 [w1; w3] blocks' 3 or 4 tiles to each SM as the blocks happened to be placed, 6 to 8
// tiles an SM, and the SMs with 8 ended ~4 µs after those with 6 (H200 timeline, PERF_NOTES v20). H200 int4 decode,
// same run: static 2.6905, dynamic 2.6505 ms/token. Not for the residual mode: its registers (70 → 72) cost 0.3 % in
// the default three blocks an SM, where wo and w2 have one tile a block. A tile's bits do not depend on its block.
// The last producer to finish zeroes the slot for the slot's next launch; a launch's slot is taken round robin from
// its stream's range on the host (dyn_tiles), so launches that can overlap — under programmatic dependent launch,
// even on the same weight, or on another stream — never share one.
__device__ int g_q4t_dyn[kDynSlots * 32];

// What stage_x stores for each 16-byte chunk of x: the MMAs' B registers for it (q4_b_fragments), which the
// consumers then read as they are, with no PRMTs a stage (H200 q4math lab, 16 consumer warps an SM, one row set:
// 31.2 -> 35.6 GB/s of weights an SM; PERF_NOTES v30).
struct XAsB {
  __device__ uint4 operator()(const uint4& v) const { return q4_b_fragments(v); }
};
// Blocks an SM the registers must allow: two, and three for the residual mode in timeline builds, whose records add
// registers (74 there since PERF_NOTES v30 2., which would put wo and w2 at two blocks an SM in the timeline only;
// release builds take 70 and three fit).
#ifdef PIXTRAL_CUDA_TIMELINE
constexpr int kResidualMinBlocks = 3;
#else
constexpr int kResidualMinBlocks = 2;
#endif

// kImma: the integer tensor-core path (q4_imma.cuh; launch_q4tma_normed only, the silu mode's by default): the
// folded norm makes x's digits instead of its B registers, and each stage multiplies by imma_group. Other bits than
// q4mma's (within a bf16 step of them: tst_quant_tma_cuda).
template <class TO, GemvMode M, bool kPreX, bool kImma = false>
__global__ void __launch_bounds__(kThreads, M == GemvMode::residual ? kResidualMinBlocks : 2)
    q4tma_kernel(TO* __restrict__ out, const bf16* __restrict__ x, const bf16* __restrict__ bias, const Q4tArgs a,
                 const RopeAppendArgs ra, const __grid_constant__ CUtensorMap mw,
                 const __grid_constant__ CUtensorMap mw2, const __grid_constant__ CUtensorMap ms,
                 const __grid_constant__ CUtensorMap ms2) {
  // mw: the 4-D map of 16-row boxes; mw2: the 5-D map of 16-pair boxes (rope only); ms / ms2: the scales' 16- and
  // 32-row boxes.
  constexpr int R = gemv_rows_per_item(M);
  static_assert(!kImma || ((M == GemvMode::rope || M == GemvMode::silu) && !kPreX), "imma: the normed modes only");
  constexpr int kBufs = kImma ? kImmaRedBufs : kRedBufs;
  extern __shared__ __align__(1024) unsigned char smem[];
  PIXTRAL_TIMELINE(kTlQ4tma + unsigned(M));
  allow_dependents_to_launch();
  std::uint64_t* bars = reinterpret_cast<std::uint64_t*>(smem);
  StageRing ring{bars, bars + kMaxStages, a.stages};                     // the W stages
  StageRing sring{bars + 2 * kMaxStages, bars + 2 * kMaxStages + 2, 2};  // the tiles' scale slots
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_groups = a.K / quant::kInt4Group, gpw = n_groups / kWarps;  // groups a warp, = stages a tile
  // Dynamic tiles: the counters, and each scale slot's tile (-1: no more) written by the producer before it arms the
  // slot's barrier, read by the consumers after it completes. Compiled for the modes that can have several tiles a
  // block in a decoder (the rope and residual modes keep their registers).
  constexpr bool kDynMode = M == GemvMode::silu || M == GemvMode::plain;
  int* const dyn = kDynMode && a.dyn_slot >= 0 ? g_q4t_dyn + a.dyn_slot * 32 : nullptr;
  int* const tile_of = reinterpret_cast<int*>(bars + 2 * kMaxStages + 4);
  if (threadIdx.x == 0) {
    ring.init();
    sring.init();
    mbar_init_fence();
  }
  __syncthreads();  // the only block-wide barrier
  if (warp == kWarps) {  // the producer: lane 0 alone
    if (lane != 0) return;
    prefetch_map(&mw);
    prefetch_map(&ms);
    if constexpr (M == GemvMode::rope) {
      prefetch_map(&mw2);
      prefetch_map(&ms2);
    }
    const std::uint64_t pol = a.evict_first ? l2_policy_evict_first() : 0;
    for (int j = 0;; ++j) {
      if (dyn) sring.wait_empty();  // a ticket only once its tile's scale slot is free: no tile held idle
      const int tile = dyn ? atomicAdd(dyn, 1) : int(blockIdx.x) + j * int(gridDim.x);
      if (dyn) {
        tile_of[sring.slot] = tile < a.n_tiles ? tile : -1;
        if (tile >= a.n_tiles) {
          mbar_arrive(sring.full_bar());  // the consumers read -1 and stop
          break;
        }
      } else if (tile >= a.n_tiles) {
        break;
      }
      const TilePlan p = tile_plan<M>(tile * 16, a.N, ra);
      if (!dyn) sring.wait_empty();
      const std::uint32_t sbar = sring.full_bar(), sdst = smem_addr(smem + a.scales + sring.slot * a.scale_bytes);
      mbar_expect_tx(sbar, std::uint32_t(a.scale_bytes));
      if (p.inter) {
        tma_load_2d(sdst, &ms2, sbar, 0, p.row_a);
      } else {
        tma_load_2d(sdst, &ms, sbar, 0, p.row_a);
        if constexpr (R == 2) tma_load_2d(sdst + 16 * n_groups * 4, &ms, sbar, 0, p.row_b);
      }
      sring.next();
      for (int s = 0; s < gpw; ++s) {
        ring.wait_empty();
        const std::uint32_t bar = ring.full_bar(), dst = smem_addr(smem + a.ring + ring.slot * a.stage_bytes);
        mbar_expect_tx(bar, std::uint32_t(a.stage_bytes));
        if (a.evict_first) {
          if (p.inter) {
            tma_load_5d_hint(dst, &mw2, bar, 0, p.row_a / 2, 0, 0, s, pol);
          } else {
            tma_load_4d_hint(dst, &mw, bar, 0, p.row_a, 0, s, pol);
            if constexpr (R == 2) tma_load_4d_hint(dst + kBoxBytes, &mw, bar, 0, p.row_b, 0, s, pol);
          }
        } else if (p.inter) {
          tma_load_5d(dst, &mw2, bar, 0, p.row_a / 2, 0, 0, s);
        } else {
          tma_load_4d(dst, &mw, bar, 0, p.row_a, 0, s);
          if constexpr (R == 2) tma_load_4d(dst + kBoxBytes, &mw, bar, 0, p.row_b, 0, s);
        }
        ring.next();
      }
    }
    if (dyn) {  // every producer has taken its last ticket once all have counted themselves here
      __threadfence();
      if (atomicAdd(dyn + 1, 1) == int(gridDim.x) - 1) {
        __threadfence();  // the others' last tickets before the reset
        atomicExch(dyn, 0);
        atomicExch(dyn + 1, 0);
      }
    }
    if (a.next.n_first > 0) prefetch_next(a.next);
    return;
  }
  // The consumers.
  const int tid = threadIdx.x;
  bf16* xs = reinterpret_cast<bf16*>(smem + a.xs);
  // kImma: x's digits where x would be, then each group's float2 (q4_imma.cuh).
  unsigned char* const xdig = smem + a.xs;
  float2* const xgf = reinterpret_cast<float2*>(xdig + a.K / quant::kInt4Group * kImmaDigitBytes);
  float* red = reinterpret_cast<float*>(smem + a.red);  // [kRedBufs][kWarps][R][16]; first the norm's warp sums
  constexpr int kRounds = 4;                            // the folded norm's pieces a thread: 256 × 4 ≥ 1024
  // The folded norm's weight is immutable: its loads go out before the wait. They miss L2 (each layer's norm weight
  // is read once a token) and would otherwise queue behind the ring's own requests on the kernel's critical path.
  // No load after the wait may write gv: the A/B switch that loaded g after the wait instead (NORM_EARLY=0) compiled
  // to predicated-off LDGs into the same registers right after the wait, interleaved with h's, and a predicated-off
  // LDG still waits for the scoreboard of the one whose registers it would write. So h's loads waited for g's data
  // (SASS, cuobjdump on the H200). Without the switch, H200 int4 decode, same run, 4 rounds: 2.5355 -> 2.4705
  // ms/token (PERF_NOTES v36 1.) — what v35 5.'s timing build (g loaded, never waited for) had bounded.
  uint4 gv[kRounds] = {};
  const bool normed = M != GemvMode::plain && M != GemvMode::residual && a.nh;
  if (normed) {
#pragma unroll
    for (int r = 0; r < kRounds; ++r) {
      const int p = r * kWarps * 32 + tid;
      if (p < a.K / 8) gv[r] = reinterpret_cast<const uint4*>(a.nw)[p];
    }
  }
  // The rope mode's first tile is static (tile = block): its storing lanes' position and cos / sin (an L2 or DRAM
  // round trip for freq, then ~100 dependent fp64 instructions) before the wait, as gemv_modes.cuh intends; no
  // kernel of the step writes them. PIXTRAL_CUDA_ROPE_EARLY=0: at the tile's start, after the wait (A/B).
  GemvItemPre<TO> pre0;
  const bool pre0_done = M == GemvMode::rope && a.rope_early && !dyn && int(blockIdx.x) < a.n_tiles;
  if (pre0_done && warp == 0 && lane < 16 && 16 * int(blockIdx.x) + lane < a.n_items)
    gemv_item_pre_early<M>(pre0, 16 * int(blockIdx.x) + lane, ra);
  wait_for_previous_grid();  // x and out belong to the previous kernels
  // Only the rope and silu modes take a norm; the other modes compile without it (normed is false at compile time).
  if (normed) {
    // The decode RMSNorm folded in, with row_norm_kernel's bits (kernels_elementwise.cu, one block of ceil32(K / 8)
    // threads, one piece of 8 each: K / 8 ≤ 1024): each piece's sum of squares in its order; that kernel's warp k
    // (pieces 32k .. 32k + 31) is this block's warp k % 8 in round k / 8, summed by the same shuffle tree; then its
    // block_sum's second stage (lane i takes warp sum i, zeros past them, the same tree); inv; x = (h · inv) · w.
    const int nv = a.K / 8, n_nw = (nv + 31) / 32;
    uint4 hv[kRounds], xo[kRounds] = {};  // xo: kImma's x pieces (zeros past nv)
#pragma unroll
    for (int r = 0; r < kRounds; ++r) {
      const int p = r * kWarps * 32 + tid;
      if (p < nv) hv[r] = reinterpret_cast<const uint4*>(a.nh)[p];
    }
#ifdef PIXTRAL_CUDA_TIMELINE
    // PIXTRAL_CUDA_TIMELINE_GMARK=1 (timeline builds): the early mark when thread 0's first piece of g is in, after
    // h's loads are out (instead of when h is summed) — where the norm weight's data arrives (PERF_NOTES v35 5.).
    if (a.tl_gmark) PIXTRAL_TIMELINE_EARLY_MARK(__uint_as_float(gv[0].x ^ gv[0].y ^ gv[0].z ^ gv[0].w));
#endif
#pragma unroll
    for (int r = 0; r < kRounds; ++r) {
      if (r * kWarps + warp >= n_nw) break;  // warp-uniform
      const int p = r * kWarps * 32 + tid;
      float ss = 0.f;
      if (p < nv) {
        float f[8];
        bf16x8_to_f32(hv[r], f);
#pragma unroll
        for (int i = 0; i < 8; ++i) ss += f[i] * f[i];
      }
      ss = warp_sum(ss);
      if (lane == 0) red[r * kWarps + warp] = ss;
    }
    named_sync(1, kWarps * 32);
    const float tot = warp_sum(lane < n_nw ? red[lane] : 0.f);
    const float inv = 1.0f / sqrtf(tot / float(a.K) + a.eps);
    if (!a.tl_gmark) PIXTRAL_TIMELINE_EARLY_MARK(inv);  // the timeline's early mark: h is in and summed (x after it)
#pragma unroll
    for (int r = 0; r < kRounds; ++r) {
      const int p = r * kWarps * 32 + tid;
      if (p < nv) {
        float f[8], g[8];
        bf16x8_to_f32(hv[r], f);
        bf16x8_to_f32(gv[r], g);
        uint4 o;
        __nv_bfloat162* ob = reinterpret_cast<__nv_bfloat162*>(&o);
#pragma unroll
        for (int i = 0; i < 4; ++i)
          ob[i] = __floats2bfloat162_rn(f[2 * i] * inv * g[2 * i], f[2 * i + 1] * inv * g[2 * i + 1]);
        if constexpr (kImma)
          xo[r] = o;
        else
          reinterpret_cast<uint4*>(xs)[p] = XAsB{}(o);  // x as B registers, as stage_x stores it
        if (blockIdx.x == 0) reinterpret_cast<uint4*>(a.nxn)[p] = o;
      }
    }
    if constexpr (kImma) {  // a group's 16 pieces are a half-warp's (256 and nv multiples of 16 and 128)
      int grp[kRounds];
#pragma unroll
      for (int r = 0; r < kRounds; ++r) grp[r] = (r * kWarps * 32 + tid) >> 4;
      // This warp's pieces of x (the rounds below nv: warp-uniform), so that no round past x is made into digits.
      // q4_refusal's limits make them a prefix of the rounds: nv a multiple of 128 (K / 128 a multiple of 8) and at
      // most kRounds · 256 (K ≤ 8192, launch_q4tma_normed).
      const int n_act = min(kRounds, (nv - warp * 32 + kWarps * 32 - 1) / (kWarps * 32));
      imma_write_ones(xdig, n_groups, tid);
      switch (n_act) {  // the rounds' digits made together (their reductions overlap)
        case 1: imma_digits<1>(xo, grp, tid & 15, xdig, xgf); break;
        case 2: imma_digits<2>(xo, grp, tid & 15, xdig, xgf); break;
        case 3: imma_digits<3>(xo, grp, tid & 15, xdig, xgf); break;
        case 4: imma_digits<4>(xo, grp, tid & 15, xdig, xgf); break;
        default: break;  // none: a warp past x (K = 1024: warps 4..7)
      }
    }
  } else if constexpr (!kImma) {
    stage_x(xs, x, a.K, tid, XAsB{});
  }
  named_sync(1, kWarps * 32);
  PIXTRAL_TIMELINE_MARK(0.f);  // the timeline's mark: x is staged
  const int g = lane >> 2, t = lane & 3;
  // kImma: this lane's plane of x's digits (B column g: plane g % 4, plane 3 being the ones) and its first D column's
  // plane weight.
  const ImmaLane il = imma_lane(xdig, n_groups, g, t);
  const float plane_w = t == 0 ? 1.f : t == 1 ? 65536.f : 0.f;
  // kPreX: each warp multiplies only its own groups of x (G = 8s + warp), the same ones in every tile. In its first
  // tile it makes each group's correction as q4_group_mma does and keeps it in corr_s; its later tiles read it
  // instead of making it again (an MMA, two PRMTs, two shuffles and some adds fewer a stage). The same bits.
  float* corr_s = reinterpret_cast<float*>(smem + a.corr);  // [n_groups]
  for (int j = 0;; ++j) {
    int tile;
    if (dyn) {
      sring.wait_full();
      tile = tile_of[sring.slot];
      if (tile < 0) break;
    } else {
      tile = int(blockIdx.x) + j * int(gridDim.x);
      if (tile >= a.n_tiles) break;
    }
    const int n0 = tile * 16;
    const TilePlan p = tile_plan<M>(n0, a.N, ra);
    // Warp 0's lanes 0..15 store item n0 + lane: its epilogue inputs now, off the tile's end.
    const bool stores = warp == 0 && lane < 16 && n0 + lane < a.n_items;
    GemvItemPre<TO> pre = pre0;
    if (stores) {
      if (!(pre0_done && j == 0)) gemv_item_pre_early<M>(pre, n0 + lane, ra);
      gemv_item_pre_late<M>(pre, out, 0, n0 + lane, a.N);
    }
    if (!dyn) sring.wait_full();
    const float* sc = reinterpret_cast<const float*>(smem + a.scales + sring.slot * a.scale_bytes);
    float acc[R][4];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[r][e] = 0.f;
    // This warp's bytes in a stage, row set r: [warp][row][64] boxes (r · 8 KB apart) or [warp][r][pair][64].
    int wbase[R], sbase[R], sstride;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      wbase[r] = p.inter ? warp * 2048 + r * 1024 : r * kBoxBytes + warp * 1024;
      sbase[r] = p.inter ? r * n_groups : r * 16 * n_groups;
    }
    sstride = p.inter ? 2 * n_groups : n_groups;  // between items' scale rows
    for (int s = 0; s < gpw; ++s) {
      ring.wait_full();
      const unsigned char* st = smem + a.ring + ring.slot * a.stage_bytes;
      uint4 w0[R], w1[R];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        w0[r] = *reinterpret_cast<const uint4*>(st + wbase[r] + g * 64 + 16 * t);
        w1[r] = *reinterpret_cast<const uint4*>(st + wbase[r] + (g + 8) * 64 + 16 * t);
      }
      __syncwarp();
      ring.release(lane);  // the slot's bytes are in registers
      ring.next();
      const int G = s * kWarps + warp;
      if constexpr (kImma) {
        const ImmaX xi = imma_x(il, G, xgf, t, plane_w);
#pragma unroll
        for (int r = 0; r < R; ++r)
          imma_group(w0[r], w1[r], xi, t, sc[sbase[r] + g * sstride + G], sc[sbase[r] + (g + 8) * sstride + G],
                     acc[r]);
      } else {
        // x is staged as the MMAs' B registers (XAsB): read as they are; the group's correction from its chunk
        // (q4_corr_input_b). kPreX: a warp's first tile keeps each of its groups' corrections (corr_s), its later
        // tiles read them.
        uint4 xv[4];
#pragma unroll
        for (int ww = 0; ww < 4; ++ww) xv[ww] = reinterpret_cast<const uint4*>(xs + 128 * G + 32 * t)[ww];
        float cr;
        if (kPreX && j > 0) {
          cr = corr_s[G];
        } else {
          cr = group_correction(q4_corr_input_b(xs, G, lane));
          if (kPreX && lane == 0) corr_s[G] = cr;
        }
        const float corr[2] = {cr, cr};  // D column 0 (x row 0) takes corr[0]; the others are never read
#pragma unroll
        for (int r = 0; r < R; ++r)
          q4_group_mma_b(w0[r], w1[r], xv, sc[sbase[r] + g * sstride + G], sc[sbase[r] + (g + 8) * sstride + G],
                         corr, acc[r]);
      }
    }
    __syncwarp();
    sring.release(lane);  // this warp is done with the tile's scales
    sring.next();
    const int b = j % kBufs;
    float* rb = red + b * kWarps * R * 16;
    if constexpr (kImma) {  // a row's value: lane t = 0's planes 0 and 1 plus lane t = 1's plane 2
#pragma unroll
      for (int r = 0; r < R; ++r) {
        acc[r][0] += __shfl_xor_sync(0xffffffffu, acc[r][0], 1);
        acc[r][2] += __shfl_xor_sync(0xffffffffu, acc[r][2], 1);
      }
    }
    if (t == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        rb[(warp * R + r) * 16 + g] = acc[r][0];  // D column 0: x row 0
        rb[(warp * R + r) * 16 + g + 8] = acc[r][2];
      }
    }
    if (warp != 0) {
      named_arrive(2 + b, kWarps * 32);
    } else {
      named_sync(2 + b, kWarps * 32);
      if (stores) {
        float v[2] = {0.f, 0.f};
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float sum = rb[r * 16 + lane];
#pragma unroll
          for (int w = 1; w < kWarps; ++w) sum += rb[(w * R + r) * 16 + lane];
          v[r] = sum;
        }
        gemv_item_store<M>(out, 0, n0 + lane, a.N, v, bias, ra, pre);
      }
    }
  }
}

// The int4 maps of a weight of `rows` rows and K columns: W as (16 uint32 of a group, row, warp, stage; group =
// 8 · stage + warp) in boxes of 16 rows (kind 0), or as (16 uint32, pair, row of the pair, warp, stage) in boxes of
// 16 pairs (kind 1, rope's interleaved pairs); the scales [rows][n_groups] fp32 in boxes of 16 (kind 2) or 32 rows (3).
MapSpec q4_map(const void* base, int kind, std::int64_t rows, int K) {
  const cuuint64_t n = cuuint64_t(K / quant::kInt4Group), r = cuuint64_t(rows), k = cuuint64_t(K), w = kWarps;
  if (kind == 0)
    return make_map(base, CU_TENSOR_MAP_DATA_TYPE_UINT32, {16, r, w, n / w}, {k / 2, 64, 64 * w}, {16, 16, w, 1});
  if (kind == 1)
    return make_map(base, CU_TENSOR_MAP_DATA_TYPE_UINT32, {16, r / 2, 2, w, n / w}, {k, k / 2, 64, 64 * w},
                    {16, 16, 2, w, 1});
  return make_map(base, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, {n, r}, {n * 4}, {cuuint32_t(n), kind == 2 ? 16u : 32u});
}

// The norm folded into a launch (launch_q4tma_normed): h, the norm weight, xn, eps.
struct NormIn {
  const bf16* h;
  const bf16* w;
  bf16* xn;
  float eps;
};

// PIXTRAL_CUDA_Q4TMA_PREX=0 (A/B; read at each launch): every tile makes x's B registers and the groups' corrections
// again, as before kPreX.
bool q4tma_prex() {
  return !env_zero("PIXTRAL_CUDA_Q4TMA_PREX");
}

template <class TO, GemvMode M>
Status launch_typed(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int N,
                    int items, int K, const RopeAppendArgs& ra, cudaStream_t s, bool* launched,
                    const NormIn* norm = nullptr) {
  constexpr int R = gemv_rows_per_item(M);
  // kPreX pays where blocks run several tiles: the silu mode ([w1; w3], 896 tiles over two blocks an SM). The rope
  // and residual modes run one tile a block in a decoder: nothing to keep. The plain mode (an int4 lm_head) was left
  // out when kPreX also kept x's B registers (72 -> 74 registers took its third block an SM); since x is staged as B
  // registers (PERF_NOTES v30) kPreX keeps only the corrections, and the plain mode has not been measured with it.
  constexpr bool kPreXMode = M == GemvMode::silu;
  bool pre_x = kPreXMode && q4tma_prex();
  auto kernel = pre_x ? q4tma_kernel<TO, M, kPreXMode> : q4tma_kernel<TO, M, false>;
  // The integer path (q4_imma.cuh) for the folded-norm silu launch ([w1; w3]) by default: H200 int4 decode, same run,
  // 3 rounds: 2.561 -> 2.533 ms/token; for the rope one (QKV) it costs (v33: 2.582, its x later; v34, the digits
  // made cheaply: 2.532 -> 2.552, the attention after it ~0.6 µs slower, unexplained). PIXTRAL_CUDA_Q4TMA_IMMA (read
  // at each launch): 0 neither, 1 both, q the rope launch only, s (the default) the silu launch only.
  bool imma = false;
  if constexpr ((M == GemvMode::rope || M == GemvMode::silu) && std::is_same_v<TO, bf16>) {
    constexpr const char* kEnv = "PIXTRAL_CUDA_Q4TMA_IMMA";
    const bool on = M == GemvMode::silu ? !env_zero(kEnv) && !env_is(kEnv, "q") : env_one(kEnv) || env_is(kEnv, "q");
    if (norm && on) {
      kernel = q4tma_kernel<TO, M, false, true>;
      imma = true;
      pre_x = false;
    }
  }
  Q4tLayout l = q4t_layout(R, K, kMaxSmem, pre_x, imma);
  if (l.stages < 2 || l.total > kMaxSmem) return not_here(kQ4Env, "K too large for the shared memory");
  if (!tma_ready(kernel) || sm_count() == 0) return not_here(kQ4Env, "no sm_90 code for this GPU");
  const int n_tiles = ceil_div(items, 16);
  int per_sm = 2;
  // More tiles than two blocks an SM but not than three: three smaller blocks an SM, one tile each, instead of a
  // second tile for some blocks (the last ones' tail). PIXTRAL_CUDA_Q4TMA_3=0: always two (A/B).
  if (!env_zero("PIXTRAL_CUDA_Q4TMA_3") && n_tiles > 2 * sm_count() && n_tiles <= 3 * sm_count()) {
    const Q4tLayout l3 = q4t_layout(R, K, kSmem3, pre_x, imma);
    if (l3.stages >= 2 && blocks_fit(kernel, l3.total, 3)) {
      l = l3;
      per_sm = 3;
    }
  }
  const std::int64_t rows = weight_rows<M>(N, ra);
  CUtensorMap mw{}, mw2{}, ms{}, ms2{};
  if (!encode_map(&mw, q4_map(q, 0, rows, K)) || !encode_map(&ms, q4_map(scales, 2, rows, K)) ||
      (M == GemvMode::rope &&
       (!encode_map(&mw2, q4_map(q, 1, rows, K)) || !encode_map(&ms2, q4_map(scales, 3, rows, K)))))
    return not_here(kQ4Env, "no tensor-map encoder, or the driver refused a map");
  Q4tArgs a;
  a.N = N;
  a.n_items = items;
  a.K = K;
  a.n_tiles = n_tiles;
  a.stages = l.stages;
  a.ring = l.ring;
  a.scales = l.scales;
  a.xs = l.xs;
  a.red = l.red;
  a.corr = l.corr;
  a.stage_bytes = l.stage_bytes;
  a.scale_bytes = l.scale_bytes;
  if (norm) {
    a.nh = norm->h;
    a.nw = norm->w;
    a.nxn = norm->xn;
    a.eps = norm->eps;
  }
  const int grid = std::min(a.n_tiles, per_sm * sm_count());
  const Q4tNext self{.q = q,
                     .sc = reinterpret_cast<const unsigned char*>(scales),
                     .row_bytes = K / 2,
                     .scale_row_bytes = K / quant::kInt4Group * 4,
                     .rows = int(rows),
                     .mode = M,
                     .N = N,
                     .nh = ra.nh,
                     .nkv = ra.nkv,
                     .hd = ra.hd,
                     .halves = ra.halves,
                     .n_first = grid};  // each of its blocks' first tile
  a.rope_early = !env_zero("PIXTRAL_CUDA_ROPE_EARLY");
  // The weights are read once a step: their stages' copies ask L2 to evict them first, so that what the step's
  // latency-bound reads find there (x, h, the norm weight, the attention's partials) is less often displaced by them.
  // H200 int4 decode, same run, 3 rounds: 2.418 -> 2.412 ms/token (PERF_NOTES v39 5.).
  // PIXTRAL_CUDA_Q4TMA_EVICT_FIRST=0 (A/B; read at each launch): no policy.
  a.evict_first = !env_zero("PIXTRAL_CUDA_Q4TMA_EVICT_FIRST");
#ifdef PIXTRAL_CUDA_TIMELINE
  a.tl_gmark = env_one("PIXTRAL_CUDA_TIMELINE_GMARK");
#endif
  a.dyn_slot = dyn_tiles(M, n_tiles, grid, s);
  if (a.dyn_slot < 0 && dyn_required())
    return Status(ErrorCode::unsupported, "q4tma (PIXTRAL_CUDA_Q4TMA_DYN=require): this launch takes static tiles (" +
                                              std::to_string(n_tiles) + " tiles, " + std::to_string(grid) +
                                              " blocks, or no counter range left for its stream)");
  // With the hint opted in (PIXTRAL_CUDA_Q4TMA_L2PF), wo (the residual mode with K ≤ 4096) still asks for nothing: it
  // runs while the attention's combine kernel, a few L2 round trips on the critical path, ends, and the 8 MB of
  // [w1; w3]'s first tiles it asked for cost more there than they saved (presumably by delaying the combine's loads).
  // H200 int4 decode, same runs, 3 and 4 rounds in two calls: 2.657 / 2.6575 -> 2.652 / 2.6515 ms/token (PERF_NOTES
  // v22 8.). PIXTRAL_CUDA_Q4TMA_WO_HINT=1 asks as before. (wo's and w2's own budgets, 8 or 16 MB of their successors'
  // first tiles, were measured after the combine's late trigger too: no gain, PERF_NOTES v31 1.)
  a.next = note_launch(s, q, self);
  if (M == GemvMode::residual && K <= 4096) {
    if (!env_one("PIXTRAL_CUDA_Q4TMA_WO_HINT")) a.next.n_first = 0;
  }
  launch_dependent_smem(kernel, dim3(unsigned(grid)), dim3(kThreads), std::size_t(l.total), s, out, x,
                        bias, a, ra, mw, mw2, ms, ms2);
  PIXTRAL_CUDA_LAUNCH_CHECK(q4tma_kernel);
  *launched = true;
  return {};
}

// Why launch_q4tma cannot run this GEMV (null: it can): K's groups split evenly over the 8 warps (whole stages)
// and one scale box wide (≤ 256 groups); 16-byte aligned bases (TMA); rope with halves pairs only when a tile stays
// inside a head.
const char* q4_refusal(int K, int items, const void* q, const void* scales, GemvMode mode, const RopeAppendArgs& ra) {
  const int n_groups = K / quant::kInt4Group;
  if (K % quant::kInt4Group != 0 || n_groups % kWarps != 0 || n_groups > 256)
    return "K / 128 must be a multiple of 8 and at most 256";
  if (items < 1 || reinterpret_cast<std::uintptr_t>(q) % 16 != 0 || reinterpret_cast<std::uintptr_t>(scales) % 16 != 0)
    return "no items, or W / scales not 16-byte aligned";
  if (mode == GemvMode::rope && (ra.hd % 2 != 0 || (ra.halves && (ra.hd / 2) % 16 != 0)))
    return "rope with halves pairs needs head_dim / 2 a multiple of 16";
  return nullptr;
}

}  // namespace

Status launch_q4tma(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                    cudaStream_t s, bool* launched) {
  *launched = false;
  if (T != 1 || tma_switch(kQ4Env) == TmaSwitch::off) return {};
  if (const char* why = q4_refusal(K, items, q, scales, mode, ra)) return not_here(kQ4Env, why);
  if (out_t != DType::f32 && out_t != DType::bf16) return not_here(kQ4Env, "output neither f32 nor bf16");
  return dispatch_mode(mode, [&](auto m) {
    constexpr GemvMode M = decltype(m)::value;
    if (out_t == DType::f32)
      return launch_typed<float, M>(static_cast<float*>(out), x, q, scales, bias, N, items, K, ra, s, launched);
    return launch_typed<bf16, M>(static_cast<bf16*>(out), x, q, scales, bias, N, items, K, ra, s, launched);
  });
}

Status launch_q4tma_normed(bf16* out, const bf16* h, const bf16* norm_w, bf16* xn, float eps, const std::uint8_t* q,
                           const float* scales, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                           cudaStream_t s, bool* launched) {
  *launched = false;
  if (tma_switch(kQ4Env) == TmaSwitch::off) return {};
  if (env_zero("PIXTRAL_CUDA_FOLD_NORM")) return {};  // the norm kernel, then the GEMV (A/B)
  // (PIXTRAL_CUDA_FOLD_NORM=require: the caller makes "not launched" an error.)
  if (const char* why = q4_refusal(K, items, q, scales, mode, ra)) return not_here(kQ4Env, why);
  // The norm's conditions: one block of row_norm_kernel covers the row (K / 8 ≤ 1024 pieces of 8), 16-byte aligned
  // h, w and xn; rope and silu modes only.
  const auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  if (K / 8 > 1024 || !aligned(h) || !aligned(norm_w) || !aligned(xn))
    return not_here(kQ4Env, "the folded norm needs K ≤ 8192 and 16-byte aligned h, norm weight and xn");
  if (mode != GemvMode::rope && mode != GemvMode::silu)
    return not_here(kQ4Env, "the folded norm is for the rope and silu modes");
  const NormIn norm{h, norm_w, xn, eps};
  return dispatch_mode(mode, [&](auto m) {
    return launch_typed<bf16, decltype(m)::value>(out, nullptr, q, scales, nullptr, N, items, K, ra, s, launched,
                                                   &norm);
  });
}

}  // namespace pixtral::cuda
