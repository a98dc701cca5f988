// SPDX-License-Identifier: Apache-2.0
// The decode's attention output projection with the split-KV merge folded in (issue 6): one kernel instead of the
// combine kernel (kernels_decode_attention.cu) and q4tma's residual launch for wo (kernels_q4tma.cu), with their bits.
//
// Why: after the attention, the combine (~32 blocks merging 41 splits a head) and wo (10.5 MB of int4) added ~3.5 and
// ~7.7 µs a layer (H200 timeline, PERF_NOTES v34) for 2.5 µs of bytes: two kernel boundaries, the combine's L2 round
// trips, then wo's x another round trip behind its own ring's requests. Here a block merges only the heads whose
// columns of wo it multiplies, so no block waits for all 32 heads.
//
// Structure: clusters of n_kv_heads (8) blocks; cluster c covers rows [c · R, (c + 1) · R) of wo (R = 16 · tiles a
// chunk: ~one block an SM), its block of rank j the G = 4 query heads of KV head j — wo's columns [128 G j, 128 G (j +
// 1)), i.e. int4 groups G j .. G j + G - 1 (head_dim = the group). Before the programmatic-dependent-launch wait
// (weights are immutable) one thread asks the TMA for the block's weights, R rows × G groups (80 KB), and its cp.async
// copies the scales of the rows it will reduce. After the wait every thread copies its share of the KV head's partials
// (m, l and o of every split, ~84 KB at 41 splits) into shared memory — one round trip — and merges one (head, dim)
// exactly as the combine kernel does (decode_merge.cuh: its groups, its order), rounds to bf16 (the attention's
// output; chunk 0 also writes it), and the block stages its G heads as the MMAs' B registers (q4tma's XAsB). Warp w
// then multiplies group w % G of tiles w / G, w / G + 4, ... (q4_group_sum_b: q4mma's arithmetic up to the scale) and
// keeps each row's sum. A cluster barrier; then rank j reduces rows [j R / 8, (j + 1) R / 8) of the chunk: for each of
// q4tma's 8 warps (groups w, w + 8, ...) the chain fmaf(scale, sum, acc) in q4tma's order over the sums it reads from
// the owning blocks' shared memory (DSMEM), the 8 warps' partials added in warp order, and the residual epilogue
// (gemv_modes.cuh). A second cluster barrier keeps every block's sums alive until read. The bits of the combine
// followed by q4tma's residual mode, so of q4mma (tst_quant_tma_cuda compares them).
// ref: PTX ISA "Distributed shared memory" (mapa, ld.shared::cluster), "barrier.cluster", "cp.async.bulk.tensor";
//      CUDA programming guide, "Thread Block Clusters".
#include <algorithm>
#include <cstdint>

#include "core/quant.h"
#include "cuda/decode_merge.cuh"
#include "cuda/env_switch.h"
#include "cuda/kernels_quant.cuh"
#include "cuda/q4_math.cuh"
#include "cuda/qtma_common.cuh"
#include "cuda/timeline.cuh"

namespace pixtral::cuda {
namespace {

using namespace qtma;

constexpr int kWoWarps = 16;
constexpr int kWoThreads = 32 * kWoWarps;
constexpr int kD = quant::kInt4Group;  // head_dim: one int4 group a head
constexpr int kQ4tmaWarps = 8;         // q4tma's consumer warps: its chains over groups w, w + 8, ...

// The shared-memory plan (byte offsets; host and device agree through the arguments).
struct WoArgs {
  bf16* h;               // [N]: the residual, read and written
  bf16* attn;            // [n_heads · kD]: the merged attention output (written by chunk 0's blocks)
  const float* partial;  // O [n_splits][n_vec][kD], M [n_splits][n_vec], L [n_splits][n_vec]
  const float* scales;   // [N][n_groups]
  int N, n_splits, n_vec, tiles_per_chunk;
  int w, o, m, l, xn, xs, sums, sc, total;
};

__device__ __forceinline__ unsigned cluster_rank() {
  unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#else
  __trap();
#endif
  return r;
}
/// Every block of the cluster arrives (release) and waits (acquire): shared-memory writes before it are visible to
/// the cluster's DSMEM reads after it.
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}
/// The float at this block's shared address `a` in block `rank` of the cluster.
__device__ __forceinline__ float ld_cluster(std::uint32_t a, unsigned rank) {
  float v = 0.f;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  std::uint32_t ra;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(ra) : "r"(a), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(ra) : "memory");
#else
  __trap();
#endif
  return v;
}

// G query heads a KV head (= groups a block), kC KV heads (= blocks a cluster).
template <int G, int kC>
__global__ void __launch_bounds__(kWoThreads, 1) q4wo_kernel(const WoArgs a, const __grid_constant__ CUtensorMap mw) {
  static_assert(G * kD * 4 % 16 == 0 && G * 4 % 16 == 0 && kQ4tmaWarps % G == 0 && (G * kC) % kQ4tmaWarps == 0,
                "a KV head's partials in 16-byte pieces, its groups inside one q4tma stage");
  static_assert(kWoWarps % G == 0 && G * kD == kWoThreads, "one (head, dim) a thread in the merge");
  constexpr int n_groups = G * kC, gpw = n_groups / kQ4tmaWarps;
  extern __shared__ __align__(1024) unsigned char smem[];
  PIXTRAL_TIMELINE(kTlQ4Wo);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const unsigned rank = cluster_rank();  // the KV head
  const int chunk = int(blockIdx.x) / kC;
  const int n_tiles = (a.N + 15) / 16, tile0 = chunk * a.tiles_per_chunk;
  const int nt = min(a.tiles_per_chunk, n_tiles - tile0);  // ≥ 1 (host)
  const int row0 = 16 * tile0, R = 16 * a.tiles_per_chunk, per_rank = R / kC;
  const int red0 = row0 + int(rank) * per_rank;  // the first row this block reduces
  const int red_n = max(0, min(per_rank, a.N - red0));
  const std::uint32_t bar = smem_addr(smem);
  if (tid == 0) {
    mbar_init(bar, 1);
    mbar_init_fence();
  }
  __syncthreads();
  // Before the wait: the weights (one 16-row box of G groups a tile) and the scales of the rows reduced here.
  if (tid == 0) {
    prefetch_map(&mw);
    mbar_expect_tx(bar, std::uint32_t(nt * G * 1024));
    const int c2 = int(rank) * G % kQ4tmaWarps, c3 = int(rank) * G / kQ4tmaWarps;
    for (int tt = 0; tt < nt; ++tt) tma_load_4d(smem_addr(smem + a.w + tt * G * 1024), &mw, bar, 0, row0 + 16 * tt, c2, c3);
  }
  for (int c = tid; c < red_n * n_groups / 4; c += kWoThreads)
    cp_async16(smem_addr(smem + a.sc) + 16 * c, a.scales + std::int64_t(red0) * n_groups + 4 * c, true);
  cp_async_commit();
  GemvItemPre<bf16> pre;
  wait_for_previous_grid();  // the partials and h belong to the previous kernels
  if (tid < red_n) gemv_item_pre_late<GemvMode::residual>(pre, a.h, 0, red0 + tid, a.N);
  // The KV head's partials: o of its G heads (G · kD floats, contiguous a split), m and l (G floats a split).
  {
    const int vec0 = int(rank) * G, per_split = G * kD / 4;
    const float* O = a.partial;
    const float* M = O + std::int64_t(a.n_splits) * a.n_vec * kD;
    const float* L = M + std::int64_t(a.n_splits) * a.n_vec;
    for (int c = tid; c < a.n_splits * per_split; c += kWoThreads) {
      const int sp = c / per_split, off = c % per_split;
      cp_async16(smem_addr(smem + a.o) + 16 * c, O + (std::int64_t(sp) * a.n_vec + vec0) * kD + 4 * off, true);
    }
    for (int c = tid; c < 2 * a.n_splits; c += kWoThreads) {
      const int sp = c % a.n_splits;
      const bool is_l = c >= a.n_splits;
      cp_async16(smem_addr(smem + (is_l ? a.l : a.m)) + 16 * sp, (is_l ? L : M) + std::int64_t(sp) * a.n_vec + vec0,
                 true);
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
  }
  PIXTRAL_TIMELINE_MARK(0.f);  // the timeline's mark: the partials are in
  allow_dependents_to_launch();  // the next GEMV's weight stream after these loads (as the combine's late trigger)
  // The merge: thread = (head hh, dim d), the combine kernel's groups and order (decode_merge.cuh).
  bf16* xn = reinterpret_cast<bf16*>(smem + a.xn);
  {
    const float* Os = reinterpret_cast<const float*>(smem + a.o);
    const float* Ms = reinterpret_cast<const float*>(smem + a.m);
    const float* Ls = reinterpret_cast<const float*>(smem + a.l);
    const int hh = tid / kD, d = tid % kD;
    float mt = -INFINITY, lt = 0.f, ot = 0.f;
#pragma unroll
    for (int gg = 0; gg < kDecodeMergeGroups; ++gg) {
      float m = -INFINITY, l = 0.f, o = 0.f;
      for (int c = gg; c < a.n_splits; c += kDecodeMergeGroups)
        lse_merge(m, l, o, Ms[c * G + hh], Ls[c * G + hh], Os[(c * G + hh) * kD + d]);
      lse_merge(mt, lt, ot, m, l, o);
    }
    const bf16 r = from_f32<bf16>(lt > 0.f ? ot / lt : 0.f);
    xn[tid] = r;
    if (chunk == 0) a.attn[(std::int64_t(rank) * G + hh) * kD + d] = r;
  }
  __syncthreads();
  // x as the MMAs' B registers (q4tma's staging), then each warp's group: its B registers and its correction.
  bf16* xs = reinterpret_cast<bf16*>(smem + a.xs);
  if (tid < G * kD / 8) reinterpret_cast<uint4*>(xs)[tid] = q4_b_fragments(reinterpret_cast<const uint4*>(xn)[tid]);
  __syncthreads();
  const int gi = warp % G, g = lane >> 2, t = lane & 3;
  uint4 bv[4];
#pragma unroll
  for (int ww = 0; ww < 4; ++ww) bv[ww] = reinterpret_cast<const uint4*>(xs + kD * gi + 32 * t)[ww];
  const float cr = group_correction(q4_corr_input_b(xs, gi, lane));
  const float corr[2] = {cr, cr};
  float* sums = reinterpret_cast<float*>(smem + a.sums);  // [G][R]: each row's sum of each group, before its scale
  mbar_wait(bar, 0);
  for (int tt = warp / G; tt < nt; tt += kWoWarps / G) {
    const unsigned char* wt = smem + a.w + (tt * G + gi) * 1024;
    const uint4 w0 = *reinterpret_cast<const uint4*>(wt + g * 64 + 16 * t);
    const uint4 w1 = *reinterpret_cast<const uint4*>(wt + (g + 8) * 64 + 16 * t);
    float sum[4];
    q4_group_sum_b(w0, w1, bv, corr, sum);
    if (t == 0) {  // D column 0: the x row
      sums[gi * R + 16 * tt + g] = sum[0];
      sums[gi * R + 16 * tt + g + 8] = sum[2];
    }
  }
  cp_async_wait<0>();  // this thread's scale copies (committed before the partials')
  cluster_sync();      // every block's sums (and, block-wide, the scales) are in
  if (tid < red_n) {
    const int lr = int(rank) * per_rank + tid;  // the row within the chunk
    const float* sc = reinterpret_cast<const float*>(smem + a.sc) + tid * n_groups;
    float sv[n_groups];
#pragma unroll
    for (int G2 = 0; G2 < n_groups; ++G2)
      sv[G2] = ld_cluster(smem_addr(sums + (G2 % G) * R + lr), unsigned(G2 / G));
    float v[2] = {0.f, 0.f};
#pragma unroll
    for (int w = 0; w < kQ4tmaWarps; ++w) {
      float acc = 0.f;
#pragma unroll
      for (int s = 0; s < gpw; ++s) acc = fmaf(sc[kQ4tmaWarps * s + w], sv[kQ4tmaWarps * s + w], acc);
      v[0] = w == 0 ? acc : v[0] + acc;
    }
    gemv_item_store<GemvMode::residual>(a.h, 0, red0 + tid, a.N, v, nullptr, RopeAppendArgs{}, pre);
  }
  cluster_sync();  // no block leaves while another reads its sums
}

constexpr int kG = 4, kC = 8;  // Pixtral's decoder: 32 query heads, 8 KV heads

// The maps' box: 16 uint32 (a group's 64 bytes) × 16 rows × G groups of one q4tma stage.
MapSpec wo_map(const void* q, int N, int K) {
  const cuuint64_t n = cuuint64_t(K / quant::kInt4Group), w = kQ4tmaWarps;
  return make_map(q, CU_TENSOR_MAP_DATA_TYPE_UINT32, {16, cuuint64_t(N), w, n / w},
                  {cuuint64_t(K) / 2, 64, 64 * w}, {16, 16, cuuint32_t(kG), 1});
}

struct WoPlan {
  WoArgs a{};
  int clusters = 0;
};

// The plan for N rows and n_splits splits (false: it does not fit one block's shared memory).
bool wo_plan(WoPlan& p, int N, int n_splits, int n_heads, int sms) {
  const int n_tiles = ceil_div(N, 16);
  const int want = std::max(1, std::min(n_tiles, sms / kC));
  const int tpc = ceil_div(n_tiles, want);
  p.clusters = ceil_div(n_tiles, tpc);
  WoArgs& a = p.a;
  a.N = N;
  a.n_splits = n_splits;
  a.n_vec = n_heads;
  a.tiles_per_chunk = tpc;
  const int R = 16 * tpc, n_groups = kG * kC;
  const auto up = [](int x) { return (x + 127) / 128 * 128; };
  a.w = 128;
  a.o = up(a.w + tpc * kG * 1024);
  a.m = up(a.o + n_splits * kG * kD * 4);
  a.l = up(a.m + n_splits * kG * 4);
  a.xn = up(a.l + n_splits * kG * 4);
  a.xs = up(a.xn + kG * kD * 2);
  a.sums = up(a.xs + kG * kD * 2);
  a.sc = up(a.sums + kG * R * 4);
  a.total = a.sc + (R / kC) * n_groups * 4;
  return a.total <= 227 * 1024;
}

// Once per device and shared-memory size: sm_90 code, the opt-in, and a cluster of kC such blocks placeable.
bool wo_ready(int smem) {
  auto kernel = q4wo_kernel<kG, kC>;
  return per_device_once(reinterpret_cast<const void*>(kernel), long(smem), [&] {
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, kernel) != cudaSuccess || fa.binaryVersion < 90 ||
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(kC);
    cfg.blockDim = dim3(kWoThreads);
    cfg.dynamicSmemBytes = std::size_t(smem);
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = kC;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return clusters >= 1;
  });
}

}  // namespace

// PIXTRAL_CUDA_WO_FUSED=0 (A/B; read at each call): the combine kernel and q4tma's wo as before.
bool q4wo_wanted() { return !env_zero("PIXTRAL_CUDA_WO_FUSED") && tma_switch(kQ4Env) != TmaSwitch::off; }

bool q4wo_supported(int n_heads, int n_kv_heads, int head_dim, int n_splits, int N, int K, const void* q,
                    const float* scales) {
  if (!q4wo_wanted()) return false;
  if (n_heads != kG * kC || n_kv_heads != kC || head_dim != kD || K != n_heads * head_dim || n_splits < 2 || N < 1)
    return false;
  if (reinterpret_cast<std::uintptr_t>(q) % 16 != 0 || reinterpret_cast<std::uintptr_t>(scales) % 16 != 0)
    return false;
  const int sms = sm_count();
  if (sms < kC) return false;
  WoPlan p;
  if (!wo_plan(p, N, n_splits, n_heads, sms)) return false;
  CUtensorMap mw{};
  return wo_ready(p.a.total) && encode_map(&mw, wo_map(q, N, K));
}

Status launch_q4wo(bf16* h, bf16* attn, const float* partial, int n_splits, int n_heads, const std::uint8_t* q,
                   const float* scales, int N, int K, cudaStream_t s) {
  WoPlan p;
  if (!wo_plan(p, N, n_splits, n_heads, sm_count()))
    return Status(ErrorCode::internal, "cuda fused wo: the plan does not fit shared memory");
  CUtensorMap mw{};
  if (!encode_map(&mw, wo_map(q, N, K)))
    return Status(ErrorCode::internal, "cuda fused wo: the driver refused the weight's tensor map");
  p.a.h = h;
  p.a.attn = attn;
  p.a.partial = partial;
  p.a.scales = scales;
  auto kernel = q4wo_kernel<kG, kC>;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(p.clusters * kC));
  cfg.blockDim = dim3(kWoThreads);
  cfg.dynamicSmemBytes = std::size_t(p.a.total);
  cfg.stream = s;
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = kC;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 2 : 1;
  const cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, p.a, mw);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return Status(ErrorCode::internal, std::string("cuda fused wo: launch failed: ") + cudaGetErrorString(e));
  }
  return {};
}

}  // namespace pixtral::cuda
