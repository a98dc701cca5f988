// SPDX-License-Identifier: Apache-2.0
// The int4 × bf16 decode GEMV on the tensor cores with W streamed by Hopper bulk asynchronous copies (issue 6):
// launch_q4bulk. Same math, work split and reduction order as q4mma_kernel (kernels_q4mma.cu) — read its header
// comment first; only the delivery of W and of the scales differs. Formats in core/quant.h.
//
// Why: q4mma reaches 47–57 % of copy bandwidth, latency/issue-bound (ncu 0.48 issued warps per scheduler per cycle):
// every thread issues a 16-byte and a 4-byte cp.async per row half and group besides its dequant + MMA work. Here:
//   - Each of the 8 warps keeps its own ring of NS stages; a stage holds SG consecutive groups of the warp's
//     contiguous group range for the 16·R rows of the block's tiles. A stage is filled by 16·R bulk copies
//     (cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes, 64·SG contiguous bytes of one row: lane ℓ
//     < 16·R copies row ℓ, one warp instruction) completing on the stage's mbarrier (lane 0: arrive.expect_tx of the
//     stage's bytes, arrival count 1). Consumers wait with try_wait.parity; the warp refills a slot itself once all
//     its lanes are past their reads of it (fence.proxy.async + __syncwarp: generic reads before the async proxy's
//     writes). No cross-warp coupling: a warp's ring is its own, as in q4mma where each thread's slots were its own.
//     Per group the consumer work is q4mma's minus the copies: 2R ld.shared.v4 (W) + 2R ld.shared (scales).
//   - The scales of the block's 16·R rows (all K groups) are copied once into shared memory at the start
//     (4-byte cp.async, ≤ 8 a thread, before the dependent-launch wait: immutable) — their rows are neither 16-byte
//     aligned nor of a 16-byte multiple length in general (K / 128 floats), which bulk copies require.
//   - Layout of a tile (16 rows × 64·SG bytes) in a stage: even rows first, then 64 bytes of pad, then odd rows, so
//     that rows 2p and 2p + 1 — read by the 8 lanes of one 16-byte-load phase — sit 64 bytes apart modulo 128: no
//     bank conflict for any SG. Scale rows are n_groups | 1 floats apart (odd: the 8 rows g of a warp load hit 8
//     banks).
// Bits: for each row, q4mma's sum is Σ_warps (in warp order) of Σ_groups of the warp's range (in order) of
// Σ_{chains c = 0..3} fma(scale, D_c, acc), D_c = 2 dependent MMAs of word c from zero, with identical A/B fragments
// (same thread ↔ (row, k) mapping); all of that is kept, so the outputs are bit-identical to q4mma's.
// W and the scales are immutable: the first NS stages are issued before griddepcontrol.wait; x only after it, with
// ordinary loads (as q4mma).
// ref: PTX ISA "Data Movement and Conversion Instructions: cp.async.bulk", "mbarrier" (expect-tx, try_wait.parity),
// "fence.proxy.async"; CUTLASS cute/arch/copy_sm90_tma.hpp (SM90_BULK_COPY_G2S), cutlass/arch/barrier.h
// (ClusterTransactionBarrier); kernels_flash4w.cuh (this project's mbarrier ring).
#include <cstdlib>

#include "cuda/kernels.cuh"
#include "cuda/kernels_q4bulk.cuh"
#include "cuda/kernels_quant.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kItems = 16;  // work items per block: the MMA's M (as q4mma)
constexpr int kWarps = 8;   // warps a block, splitting K's groups exactly as q4mma's kMmaWarps = 8 (same bits)
constexpr int kMaxGroupsPlain = 128, kMaxGroupsPair = 64;  // K ≤ 16384 (plain) / 8192 (silu, rope): scales smem

// Ring configuration: SG groups a stage, NS stages a warp.
template <int R, int CFG>
struct BulkCfg;
template <> struct BulkCfg<1, 0> { static constexpr int SG = 2, NS = 3; };  // 6 groups in flight max (q4mma: 6)
template <> struct BulkCfg<1, 1> { static constexpr int SG = 3, NS = 2; };
template <> struct BulkCfg<1, 2> { static constexpr int SG = 1, NS = 6; };
template <> struct BulkCfg<2, 0> { static constexpr int SG = 1, NS = 3; };  // 3 groups (q4mma: 3)
template <> struct BulkCfg<2, 1> { static constexpr int SG = 2, NS = 2; };  // 2 blocks an SM
template <> struct BulkCfg<2, 2> { static constexpr int SG = 1, NS = 4; };  // 2 blocks an SM

bool bulk_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("PIXTRAL_CUDA_INT4_BULK");
    return !(e && e[0] == '0');
  }();
  return on;
}

template <int R, int CFG>
struct BulkLayout {
  static constexpr int SG = BulkCfg<R, CFG>::SG, NS = BulkCfg<R, CFG>::NS;
  static constexpr int kTileBytes = 16 * SG * 64 + 64;  // 16 rows × SG groups + the 64-byte pad between halves
  static constexpr int kSlotBytes = R * kTileBytes;
  static constexpr int kBarBytes = (kWarps * NS * 8 + 127) / 128 * 128;
  static constexpr int kRingBytes = kWarps * NS * kSlotBytes;
  static constexpr int kMaxGroups = R == 1 ? kMaxGroupsPlain : kMaxGroupsPair;
  /// Dynamic shared memory for K / 128 = n_groups: barriers, rings, scales [R][16][n_groups | 1].
  static constexpr std::size_t smem_bytes(int n_groups) {
    return std::size_t(kBarBytes + kRingBytes) + std::size_t(R) * 16 * (n_groups | 1) * 4;
  }
  /// Byte offset of row rho (0..15) in a tile: even rows, pad, odd rows.
  __device__ static constexpr int row_offset(int rho) {
    return (rho & 1) * (8 * SG * 64 + 64) + (rho >> 1) * SG * 64;
  }
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ void mbar_init(std::uint32_t a, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(a), "r"(count) : "memory");
}
// Arrival (count 1) that also expects `bytes` more transaction bytes in the current phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(std::uint32_t a, std::uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(a), "r"(bytes) : "memory");
}
// Acquire: returns once the phase of parity `parity` has completed (its bytes landed and are visible).
__device__ __forceinline__ void mbar_wait(std::uint32_t a, std::uint32_t parity) {
  std::uint32_t done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(a), "r"(parity)
        : "memory");
  } while (!done);
}
// 1-D bulk copy global → this CTA's shared memory (16-byte aligned, size a multiple of 16), completing `bytes`
// transaction bytes on mbarrier `bar`.
__device__ __forceinline__ void bulk_g2s(std::uint32_t dst, const void* src, std::uint32_t bytes, std::uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}
#endif

// 4-byte cp.async (scales), through L1 (.ca: the only form for fewer than 16 bytes).
__device__ __forceinline__ void cp_async4(std::uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src));
}
// 16-byte load of x through L1, volatile: kept in program order (as q4mma's load_cached).
__device__ __forceinline__ uint4 load_cached(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}
// d += A · B, m16n8k16, bf16 × bf16 → f32 (q4mma's).
__device__ __forceinline__ void mma_bf16_16816(float d[4], std::uint32_t a0, std::uint32_t a1, std::uint32_t a2,
                                               std::uint32_t a3, std::uint32_t b0, std::uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
  __trap();
#endif
}
// Nibbles s and s + 4 of word u (two's complement) as an exact bf16x2 (low half: nibble s) — q4mma's.
__device__ __forceinline__ std::uint32_t int4_pair_bf16(std::uint32_t u, int s) {
  const std::uint32_t biased = ((u >> (4 * s)) & 0x000f000fu) ^ 0x43084308u;  // bf16 136 + v, v in -8..7
  const __nv_bfloat162 h = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&biased),
                                   __nv_bfloat162(__ushort_as_bfloat16(0x4308), __ushort_as_bfloat16(0x4308)));
  return *reinterpret_cast<const std::uint32_t*>(&h);
}

template <int T, class TO, GemvMode M, int CFG>
__global__ void __launch_bounds__(kWarps * 32, 3)
q4bulk_kernel(TO* __restrict__ out, const bf16* __restrict__ x, const std::uint8_t* __restrict__ q,
              const float* __restrict__ scales, const bf16* __restrict__ bias, int N, int n_items, int K,
              RopeAppendArgs ra) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr int R = gemv_rows_per_item(M);
  using L = BulkLayout<R, CFG>;
  constexpr int SG = L::SG, NS = L::NS;
  __shared__ float red[kWarps][R][kItems][4];  // [warp][tile][item][x row], as q4mma
  extern __shared__ __align__(128) unsigned char q4b_smem[];
  allow_dependents_to_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * kItems;
  const std::int64_t rb = K / 2;
  const int n_groups = K / quant::kInt4Group, ngp = n_groups | 1;
  const std::uint32_t bar0 = smem_addr(q4b_smem) + 8 * warp * NS;
  const unsigned char* ring = q4b_smem + L::kBarBytes + warp * NS * L::kSlotBytes;
  float* sc = reinterpret_cast<float*>(q4b_smem + L::kBarBytes + L::kRingBytes);
  // Warp w takes q4mma's contiguous groups [g_lo, g_lo + my_groups) (warp-uniform), in stages of SG groups.
  const int g_lo = warp * n_groups / kWarps, my_groups = (warp + 1) * n_groups / kWarps - g_lo;
  const int n_stages = (my_groups + SG - 1) / SG;
  // Lane ℓ < 16R copies row ℓ % 16 of tile ℓ / 16 (items past the end read the last item's rows, never stored).
  const unsigned char* src_row = q;
  std::uint32_t dst_row = 0;
  if (lane < 16 * R) {
    const int rho = lane & 15, r = lane >> 4;
    int rows[2];
    gemv_item_rows<M>(min(n0 + rho, n_items - 1), N, ra, rows);
    src_row = q + std::int64_t(rows[r]) * rb + std::int64_t(g_lo) * 64;
    dst_row = smem_addr(ring) + r * L::kTileBytes + L::row_offset(rho);
  }
  if (lane == 0) {
#pragma unroll
    for (int j = 0; j < NS; ++j) mbar_init(bar0 + 8 * j, 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncwarp();
  // Stage j of this warp into slot j % NS: lane 0 announces the bytes, then one bulk copy a row.
  const auto issue = [&](int j, int slot) {
    const std::uint32_t bytes = 64u * std::uint32_t(min(SG, my_groups - j * SG));
    if (lane == 0) mbar_arrive_expect_tx(bar0 + 8 * slot, bytes * 16 * R);
    __syncwarp();  // the expectation is registered before any complete_tx can reach the barrier
    if (lane < 16 * R) bulk_g2s(dst_row + slot * L::kSlotBytes, src_row + std::int64_t(j) * SG * 64, bytes,
                                bar0 + 8 * slot);
  };
#pragma unroll
  for (int j = 0; j < NS; ++j)  // W is immutable: the first NS stages before waiting
    if (j < n_stages) issue(j, j);
  // The scales of the block's rows, all groups: sc[(r·16 + ρ)·ngp + G].
  for (int idx = threadIdx.x; idx < R * 16 * n_groups; idx += kWarps * 32) {
    const int rr = idx / n_groups, G = idx - rr * n_groups, r = rr >> 4, rho = rr & 15;
    int rows[2];
    gemv_item_rows<M>(min(n0 + rho, n_items - 1), N, ra, rows);
    cp_async4(smem_addr(sc + rr * ngp + G), scales + std::int64_t(rows[r]) * n_groups + G);
  }
  cp_async_commit();
  wait_for_previous_grid();  // x (and out) belong to the previous kernels
  cp_async_wait<0>();
  __syncthreads();  // every thread's scales have landed
  // B column g = x row g (g < T; the other columns multiply zeros and are never read).
  const uint4* xp = reinterpret_cast<const uint4*>(x + std::int64_t(g < T ? g : 0) * K + 32 * t);
  float acc[R][4];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[r][e] = 0.f;
  int slot = 0;
  std::uint32_t phase = 0;
  for (int j = 0; j < n_stages; ++j) {
    mbar_wait(bar0 + 8 * slot, phase);
    const unsigned char* stage = ring + slot * L::kSlotBytes;
#pragma unroll
    for (int gi = 0; gi < SG; ++gi) {
      const int i = j * SG + gi;
      if (SG > 1 && i >= my_groups) break;  // warp-uniform: the last stage may be short
      const int G = g_lo + i;
      uint4 w[R][2];
      float s[R][2];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          w[r][h] = *reinterpret_cast<const uint4*>(stage + r * L::kTileBytes + L::row_offset(g + 8 * h) + gi * 64 +
                                                    16 * t);
          s[r][h] = sc[(r * 16 + g + 8 * h) * ngp + G];
        }
      uint4 xv[4];
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) xv[ww] = g < T ? load_cached(xp + 16 * G + ww) : make_uint4(0u, 0u, 0u, 0u);
      // q4mma's 4 independent chains (one per word) and FMA order: the same bits.
      constexpr int kChains = 4;
      float d[R][kChains][4];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int e = 0; e < 4 * kChains; ++e) d[r][e / 4][e % 4] = 0.f;
#pragma unroll
      for (int ww = 0; ww < 4; ++ww) {
        const std::uint32_t b00 = __byte_perm(xv[ww].x, xv[ww].z, 0x5410), b01 = __byte_perm(xv[ww].x, xv[ww].z, 0x7632);
        const std::uint32_t b10 = __byte_perm(xv[ww].y, xv[ww].w, 0x5410), b11 = __byte_perm(xv[ww].y, xv[ww].w, 0x7632);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const std::uint32_t u0 = (&w[r][0].x)[ww], u1 = (&w[r][1].x)[ww];  // rows g, g + 8
          mma_bf16_16816(d[r][ww % kChains], int4_pair_bf16(u0, 0), int4_pair_bf16(u1, 0), int4_pair_bf16(u0, 1),
                         int4_pair_bf16(u1, 1), b00, b01);
          mma_bf16_16816(d[r][ww % kChains], int4_pair_bf16(u0, 2), int4_pair_bf16(u1, 2), int4_pair_bf16(u0, 3),
                         int4_pair_bf16(u1, 3), b10, b11);
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c2 = 0; c2 < kChains; ++c2) {
          acc[r][0] = fmaf(s[r][0], d[r][c2][0], acc[r][0]);  // row g,     col 2t
          acc[r][1] = fmaf(s[r][0], d[r][c2][1], acc[r][1]);  // row g,     col 2t + 1
          acc[r][2] = fmaf(s[r][1], d[r][c2][2], acc[r][2]);  // row g + 8, col 2t
          acc[r][3] = fmaf(s[r][1], d[r][c2][3], acc[r][3]);  // row g + 8, col 2t + 1
        }
    }
    // Refill the slot with stage j + NS once every lane's reads of it are done (their values were consumed above):
    // the proxy fence orders this thread's generic reads before the async proxy's writes, __syncwarp all lanes'.
    if (j + NS < n_stages) {
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
      __syncwarp();
      issue(j + NS, slot);
    }
    if (++slot == NS) {
      slot = 0;
      phase ^= 1u;
    }
  }
  if (t < 2) {  // columns 0..3 = x rows (T ≤ 4)
#pragma unroll
    for (int r = 0; r < R; ++r) {
      red[warp][r][g][2 * t] = acc[r][0];
      red[warp][r][g][2 * t + 1] = acc[r][1];
      red[warp][r][g + 8][2 * t] = acc[r][2];
      red[warp][r][g + 8][2 * t + 1] = acc[r][3];
    }
  }
  __syncthreads();
  const int item = threadIdx.x >> 2, c = threadIdx.x & 3;
  if (threadIdx.x < kItems * 4 && c < T && n0 + item < n_items) {
    float v[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float sum = red[0][r][item][c];
#pragma unroll
      for (int ww = 1; ww < kWarps; ++ww) sum += red[ww][r][item][c];
      v[r] = sum;
    }
    gemv_item_store<M>(out, c, n0 + item, N, v, bias, ra);
  }
#else
  __trap();  // launched only where an sm_90+ image is loaded (q4bulk_fits)
#endif
}

// Once per kernel and device: an sm_90+ image loaded (binaryVersion), the shared-memory opt-in for the largest K,
// and at least 2 blocks an SM at that size.
template <int T, class TO, GemvMode M, int CFG>
bool q4bulk_fits() {
  using L = BulkLayout<gemv_rows_per_item(M), CFG>;
  constexpr std::size_t smem = L::smem_bytes(L::kMaxGroups);
  auto kernel = q4bulk_kernel<T, TO, M, CFG>;
  return per_device_once(reinterpret_cast<const void*>(kernel), long(smem), [&] {
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, kernel) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    if (fa.binaryVersion < 90) return false;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    int blocks = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kWarps * 32, smem) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return blocks >= 2;
  });
}

template <int T, class TO, GemvMode M, int CFG>
Status launch_typed(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int N,
                    int items, int K, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  *launched = false;
  if (!q4bulk_fits<T, TO, M, CFG>()) return {};
  using L = BulkLayout<gemv_rows_per_item(M), CFG>;
  const std::size_t smem = L::smem_bytes(K / quant::kInt4Group);
  const dim3 grid{unsigned(ceil_div(items, kItems))};
  launch_dependent_smem(q4bulk_kernel<T, TO, M, CFG>, grid, dim3{kWarps * 32}, smem, s, out, x, q, scales, bias, N,
                        items, K, ra);
  PIXTRAL_CUDA_LAUNCH_CHECK(q4bulk_kernel);
  *launched = true;
  return {};
}

template <class TO, GemvMode M, int CFG>
Status launch_rows(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int T,
                   int N, int items, int K, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  switch (T) {
    case 1: return launch_typed<1, TO, M, CFG>(out, x, q, scales, bias, N, items, K, ra, s, launched);
    case 2: return launch_typed<2, TO, M, CFG>(out, x, q, scales, bias, N, items, K, ra, s, launched);
    case 3: return launch_typed<3, TO, M, CFG>(out, x, q, scales, bias, N, items, K, ra, s, launched);
    default: return launch_typed<4, TO, M, CFG>(out, x, q, scales, bias, N, items, K, ra, s, launched);
  }
}

template <class TO, int CFG>
Status launch_mode(TO* out, const bf16* x, const std::uint8_t* q, const float* scales, const bf16* bias, int T,
                   int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  switch (mode) {
    case GemvMode::plain:
      return launch_rows<TO, GemvMode::plain, CFG>(out, x, q, scales, bias, T, N, items, K, ra, s, launched);
    case GemvMode::silu:
      return launch_rows<TO, GemvMode::silu, CFG>(out, x, q, scales, bias, T, N, items, K, ra, s, launched);
    default:  // rope: one x row
      return launch_typed<1, TO, GemvMode::rope, CFG>(out, x, q, scales, bias, N, items, K, ra, s, launched);
  }
}

bool shape_ok(int T, int K, GemvMode mode) {
  if (T < 1 || T > kQGemvMaxRows || (mode == GemvMode::rope && T != 1)) return false;
  if (K <= 0 || K % quant::kInt4Group != 0) return false;
  return K / quant::kInt4Group <= (mode == GemvMode::plain ? kMaxGroupsPlain : kMaxGroupsPair);
}

bool device_ok() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) !=
                                                 cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return major >= 9;
}

}  // namespace

const char* q4bulk_config_name(int config, GemvMode mode) {
  static const char* const plain[kQ4BulkConfigs] = {"2x3", "3x2", "1x6"};
  static const char* const pair[kQ4BulkConfigs] = {"1x3", "2x2", "1x4"};
  if (config < 0 || config >= kQ4BulkConfigs) config = 0;
  return mode == GemvMode::plain ? plain[config] : pair[config];
}

bool q4bulk_supported(int T, int K, GemvMode mode) {
  if (!bulk_enabled() || !shape_ok(T, K, mode) || !device_ok()) return false;
  // The kernel itself (image, opt-in, occupancy) is checked by the launch (q4bulk_fits, once per kernel).
  return true;
}

Status launch_q4bulk_config(int config, void* out, DType out_t, const bf16* x, const std::uint8_t* q,
                            const float* scales, const bf16* bias, int T, int N, int items, int K, GemvMode mode,
                            const RopeAppendArgs& ra, cudaStream_t s, bool* launched) {
  *launched = false;
  if (!q4bulk_supported(T, K, mode)) return {};
  if (reinterpret_cast<std::uintptr_t>(q) % 16 != 0 || reinterpret_cast<std::uintptr_t>(x) % 16 != 0) return {};
  if (items <= 0) return {};
  if (out_t == DType::f32)  // one configuration for f32 outputs (fewer instantiations)
    return launch_mode<float, 0>(static_cast<float*>(out), x, q, scales, bias, T, N, items, K, mode, ra, s, launched);
  if (out_t != DType::bf16) return {};
  bf16* o = static_cast<bf16*>(out);
  switch (config) {
    case 1: return launch_mode<bf16, 1>(o, x, q, scales, bias, T, N, items, K, mode, ra, s, launched);
    case 2: return launch_mode<bf16, 2>(o, x, q, scales, bias, T, N, items, K, mode, ra, s, launched);
    default: return launch_mode<bf16, 0>(o, x, q, scales, bias, T, N, items, K, mode, ra, s, launched);
  }
}

Status launch_q4bulk(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                     const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                     cudaStream_t s, bool* launched) {
  return launch_q4bulk_config(0, out, out_t, x, q, scales, bias, T, N, items, K, mode, ra, s, launched);
}

}  // namespace pixtral::cuda
