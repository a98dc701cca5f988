// SPDX-License-Identifier: Apache-2.0
// Prefill attention on Hopper's warpgroup MMA, v4 (automatic on sm_90 where v5 cannot run): v3's semantics
// (kernels_flash3.cu: per-row key ranges or the device decode state, zero-filled keys past the block's range, lazy
// rescaling, base-2 softmax with ex2.approx.ftz, fully masked rows give 0, deterministic) with both products on
// wgmma.mma_async instead of mma.sync m16n8k16:
//   - one block = 128 query rows of one head = 2 warpgroups (256 threads) × 64 rows; 64-key K/V tiles
//     double-buffered with cp.async by all 256 threads (v3's two barriers a tile);
//   - S = Q·Kᵀ: wgmma m64n64k16, A = the warpgroup's 64 Q rows and B = the K tile, both from shared memory through
//     matrix descriptors (K-major: head_dim contiguous), D/16 k-steps;
//   - softmax on the S accumulators in registers; P rounded to bf16 in registers is the A operand of
//     O += P·V: wgmma m64nDk16 with A from registers (its fragment = the accumulator fragment pairwise) and B = the
//     V tile from shared memory, MN-major (head_dim contiguous) through the transpose bit;
//   - a warpgroup skips a key tile none of its 64 rows can see (the skip has to be warpgroup-uniform: wgmma is
//     issued by all 4 warps together).
// Shared-memory tiles use the canonical 128-byte-swizzled layout: a tile of R rows × D bf16 is D/64 panels of
// R rows × 128 bytes (64 columns); in a panel, 16-byte chunk c of row r sits at r·128 + ((c ^ (r mod 8)) · 16)
// (address bits [4,7) ^= bits [7,10), so every panel starts 1024-byte aligned). For the Q·Kᵀ k-step kk the
// descriptors start at panel kk/4, byte 32·(kk mod 4) (stride byte offset 1024 = one 8-row group); for the P·V
// k-step kk the V descriptor starts 16 rows (2048 bytes) further each step, leading byte offset = the panel stride
// (64 rows × 128 bytes: the second 64 columns of head_dim 128), stride byte offset 1024 (8 keys).
// Needs sm_90a: the wgmma body is compiled only for arch=compute_90a (engine/src/cuda/CMakeLists.txt adds that code
// to this file when 90 is among CMAKE_CUDA_ARCHITECTURES, PIXTRAL_CUDA_SM90A); the other images of the kernel are
// empty and carry a static shared-memory marker so flash4_supported can tell from cudaFuncGetAttributes which image
// the driver loaded.
// ref: PTX ISA "Asynchronous Warpgroup Level Matrix Multiply-Accumulate" (wgmma.mma_async, register fragments
// for m64nNk16, "Matrix Descriptor Format", "Shared Memory Matrix Layout" with 128B swizzling, wgmma.fence /
// commit_group / wait_group, fence.proxy.async); CUTLASS cute/atom/mma_traits_sm90_gmma.hpp (GMMA::CLayout_64xN,
// ALayout_64x16, make_gmma_desc: K-major and MN-major canonical layouts); FlashAttention-3 (Shah et al. 2024:
// P from registers as the A operand of P·V).
#include <atomic>
#include <climits>
#include <cstdint>

#include "cuda/kernels_flash.cuh"
#include "cuda/kernels_wgmma.cuh"  // sw128, the descriptors, wgmma and its fences, ex2

namespace pixtral::cuda::flash {
namespace {

constexpr int kBr = 128;       // query rows per block
constexpr int kGroups = 2;     // warpgroups, 64 rows each
constexpr int kThreads = 128 * kGroups;
constexpr int kBc = 64;        // keys per tile

template <int D>
constexpr std::size_t smem_bytes() {
  // 1024 bytes of alignment slack, [Q: kBr × D][K0][V0][K1][V1: kBc × D] bf16, the rows' key ranges, 4 warps'
  // range summaries (warps 0..3 own rows 0..127)
  return 1024 + std::size_t(kBr) * D * 2 + std::size_t(4) * kBc * D * 2 + kBr * sizeof(int2) + 4 * sizeof(int4);
}

// Rows [row0, row0 + kRows) of a [*, stride] bf16 matrix (D columns from `base`) into a sw128 tile; rows at or past
// row_end are zero-filled and never read.
template <int D, int kRows>
__device__ __forceinline__ void load_tile_sw128(std::uint32_t tile, const bf16* base, std::int64_t stride, int row0,
                                                int row_end, int tid) {
  constexpr int kChunks = D / 8;
#pragma unroll
  for (int i = tid; i < kRows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = i % kChunks;
    const int row = row0 + r;
    const bool valid = row < row_end;
    const bf16* src = valid ? base + std::int64_t(row) * stride + c * 8 : base;
    cp_async16(tile + sw128<kRows>(r, c), src, valid);
  }
}

// kSplitPV (head_dim 128 only): P·V as two m64n64k16 per k-step, one per 64-column panel of V, instead of one
// m64n128k16 that spans both panels through the descriptor's leading byte offset (an A/B and layout cross-check).
template <int D, class TO, bool kSplitPV>
__global__ void __launch_bounds__(kThreads, 2) flash4_fwd_kernel(const FlashParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int kKSteps = D / 16;  // k-steps of Q·Kᵀ
  constexpr int kO = D / 2;        // O accumulators a thread (64 rows × D over 128 threads)
  constexpr std::uint32_t kQBytes = kBr * D * 2, kTileBytes = kBc * D * 2;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const std::uint32_t s_raw = std::uint32_t(__cvta_generic_to_shared(smem_raw));
  const std::uint32_t s_base = (s_raw + 1023u) & ~1023u;  // swizzle atoms 1024-byte aligned
  unsigned char* smem = smem_raw + (s_base - s_raw);
  const std::uint32_t s_q = s_base;
  auto s_k = [&](int b) { return s_base + kQBytes + kTileBytes * (2 * b); };
  auto s_v = [&](int b) { return s_base + kQBytes + kTileBytes * (2 * b + 1); };
  int2* s_rng = reinterpret_cast<int2*>(smem + kQBytes + 4 * kTileBytes);
  int4* s_wrng = reinterpret_cast<int4*>(s_rng + kBr);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int wg = warp >> 2, wq = warp & 3;  // warpgroup, warp in the warpgroup
  const int g = lane >> 2, t4 = lane & 3;
  const int h = blockIdx.x;
  const int qb = p.n_qblocks - 1 - int(blockIdx.y);  // heaviest (causal) query blocks first, all heads
  const auto [kvh, r0, nr, q_stride, kv_stride, qg, kg, vg] = block_rows<D, kBr>(p, h, qb);
  const float sc = p.scale_log2;

  // Key ranges: thread tid < 128 owns block row tid; per warp (32 rows) the union [lo, hi) and the intersection
  // [maxlo, minhi) of its rows' ranges; per warpgroup (warps 2w, 2w + 1 of the first 128 threads) and per block
  // the unions.
  if (tid < kBr) block_row_ranges(p, r0, nr, tid, s_rng, s_wrng);
  load_tile_sw128<D, kBr>(s_q, qg, q_stride, 0, nr, tid);
  __syncthreads();
  int blk_lo = INT_MAX, blk_hi = INT_MIN;
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    const int4 wr = s_wrng[w];
    blk_lo = min(blk_lo, wr.x);
    blk_hi = max(blk_hi, wr.y);
  }
  // This warpgroup's 64 rows: union (x, y), intersection (z, w); re-read each tile (registers are scarce).
  auto group_range = [&] {
    const int4 a = s_wrng[2 * wg], b = s_wrng[2 * wg + 1];
    return make_int4(min(a.x, b.x), max(a.y, b.y), max(a.z, b.z), min(a.w, b.w));
  };
  const int n_tiles = blk_hi > blk_lo ? (blk_hi - blk_lo + kBc - 1) / kBc : 0;

  if (n_tiles > 0) {
    load_tile_sw128<D, kBc>(s_k(0), kg, kv_stride, blk_lo, blk_hi, tid);
    load_tile_sw128<D, kBc>(s_v(0), vg, kv_stride, blk_lo, blk_hi, tid);
  }
  cp_async_commit();  // group 0: Q, K0, V0

  // This thread's rows (block-local): row_a = 64 wg + 16 wq + g (accumulators 4j, 4j + 1), row_b = row_a + 8
  // (4j + 2, 4j + 3); accumulator 4j + c is column 8j + 2 t4 + (c & 1) (PTX ISA wgmma D fragment, m64nNk16).
  const int row_a = 64 * wg + 16 * wq + g;
  float o[kO];
#pragma unroll
  for (int i = 0; i < kO; ++i) o[i] = 0.f;
  float s[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) s[i] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // running max (scaled, base 2), partial row sums

  // Descriptors that move with the tile: Q (this warpgroup's 64 rows; stride byte offset 1024 = 8 rows × 128 B),
  // K (64 keys, K-major), V (MN-major: leading byte offset = the 64-column panel stride).
  const std::uint32_t q_wg = s_q + 64 * 128 * wg;

  for (int it = 0; it < n_tiles; ++it) {
    const int kt = blk_lo + it * kBc;
    const int buf = it & 1;
    // v3's pipeline: once both warpgroups are done with tile it − 1 (first barrier; their wgmma groups were waited
    // for), issue tile it + 1 into its buffer, wait for tile it, make it visible to the async proxy, barrier.
    if (it > 0) __syncthreads();
    if (it + 1 < n_tiles) {
      load_tile_sw128<D, kBc>(s_k(buf ^ 1), kg, kv_stride, kt + kBc, blk_hi, tid);
      load_tile_sw128<D, kBc>(s_v(buf ^ 1), vg, kv_stride, kt + kBc, blk_hi, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    fence_proxy_async();
    __syncthreads();
    // Warpgroup-uniform: a tile none of this warpgroup's rows can see changes nothing (α = 1, P = 0): skipped.
    const int4 grng = group_range();
    if (!(kt < grng.y && kt + kBc > grng.x)) continue;

    // S = Q Kᵀ (raw, unscaled) for the warpgroup's 64 rows × 64 keys.
#pragma unroll
    for (int i = 0; i < 32; ++i) reg_fence(s[i]);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const std::uint32_t panel_off = std::uint32_t(kk >> 2), k_off = std::uint32_t(kk & 3) * 32;
      const std::uint64_t da = desc_sw128(q_wg + panel_off * (kBr * 128) + k_off, 16, 1024);
      const std::uint64_t db = desc_sw128(s_k(buf) + panel_off * (kBc * 128) + k_off, 16, 1024);
      wgmma_qk(s, da, db, kk > 0);
    }
    wg_commit();
    wg_wait0();
#pragma unroll
    for (int i = 0; i < 32; ++i) reg_fence(s[i]);

    // Mask (raw scores to -inf) where a row's range cuts this tile; the rows' raw maxima (scale > 0).
    const bool need_mask = kt < grng.z || kt + kBc > grng.w;
    float mx[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {  // row i of this thread: row_a + 8 i, accumulators 4j + 2i, 4j + 2i + 1
      mx[i] = -INFINITY;
      if (need_mask) {
        const int2 rr = s_rng[row_a + 8 * i];
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int c = 0; c < 2; ++c) {
            const int key = kt + j * 8 + 2 * t4 + c;
            if (key < rr.x || key >= rr.y) s[4 * j + 2 * i + c] = -INFINITY;
          }
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) mx[i] = fmaxf(mx[i], fmaxf(s[4 * j + 2 * i], s[4 * j + 2 * i + 1]));
    }
    // New running max (scaled); α = 2^(m_old − m_new), exactly 1 where m stays; nm = −m (0 while all masked).
    float al[2], nm[2];
    bool moved = false;
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
    // P = 2^(s·scale − m), rounded to bf16 as the A fragment of P·V: k-step kk (keys 16 kk ..) takes accumulators
    // 8kk .. 8kk + 7 — {row_a, keys 2t4, +1}, {row_b, same}, {row_a, keys 8 + 2t4, +1}, {row_b, same}, the
    // m64nNk16 A register layout (= mma.m16n8k16's A layout per warp).
    float sum[2] = {0.f, 0.f};
    std::uint32_t pa[4][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) s[4 * j + c] = ex2(fmaf(s[4 * j + c], sc, nm[c >> 1]));
      sum[0] += s[4 * j] + s[4 * j + 1];
      sum[1] += s[4 * j + 2] + s[4 * j + 3];
      pa[j >> 1][2 * (j & 1)] = pack_bf16(s[4 * j], s[4 * j + 1]);
      pa[j >> 1][2 * (j & 1) + 1] = pack_bf16(s[4 * j + 2], s[4 * j + 3]);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = l[i] * al[i] + sum[i];
    if (__any_sync(0xffffffffu, moved)) {  // warp-uniform; α = 1 elsewhere, so skipping it is exact
#pragma unroll
      for (int j = 0; j < kO / 4; ++j) {
        o[4 * j] *= al[0];
        o[4 * j + 1] *= al[0];
        o[4 * j + 2] *= al[1];
        o[4 * j + 3] *= al[1];
      }
    }

    // O += P V: 4 k-steps of 16 keys; V descriptor 16 rows (2048 bytes) further each step.
#pragma unroll
    for (int i = 0; i < kO; ++i) reg_fence(o[i]);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) reg_fence(pa[kk][i]);
    wg_fence();
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      const std::uint32_t v_kk = s_v(buf) + kk * 16 * 128;
      if constexpr (kSplitPV && D == 128) {
        wgmma_pv_half<0>(o, pa[kk], desc_sw128(v_kk, kBc * 128, 1024));
        wgmma_pv_half<32>(o, pa[kk], desc_sw128(v_kk + kBc * 128, kBc * 128, 1024));
      } else {
        wgmma_pv(o, pa[kk], desc_sw128(v_kk, kBc * 128, 1024));
      }
    }
    wg_commit();
    wg_wait0();
#pragma unroll
    for (int i = 0; i < kO; ++i) reg_fence(o[i]);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
      for (int i = 0; i < 4; ++i) reg_fence(pa[kk][i]);
  }
  cp_async_wait<0>();  // a block with no key tile still has its Q copy in flight

  TO* out = static_cast<TO*>(p.out) + std::int64_t(r0) * q_stride + std::int64_t(h) * D;
  store_o_rows<kO>(out, q_stride, row_a, t4, nr, l, o);
#else
  // Not the sm_90a image: never launched (flash4_supported). The static shared word is the marker the host reads
  // through cudaFuncGetAttributes (sharedSizeBytes != 0: the driver loaded this image, v4 cannot run).
  __shared__ int not_sm90a[1];
  asm volatile("st.shared.u32 [%0], 0;\n" ::"r"(std::uint32_t(__cvta_generic_to_shared(not_sm90a))));
#endif
}

template <int D, class TO, bool kSplitPV>
Status launch_typed(const AttentionLaunch& a, cudaStream_t s) {
  const FlashParams p = make_params(a, kBr);
  constexpr std::size_t smem = smem_bytes<D>();
  auto kernel = flash4_fwd_kernel<D, TO, kSplitPV>;
  // Once per device and instantiation (kernels.cuh); cudaFuncSetAttribute is not a stream operation.
  PIXTRAL_RETURN_IF_ERROR(allow_dynamic_smem(kernel, smem, "flash attention v4"));
  const dim3 grid(unsigned(a.n_heads), unsigned(p.n_qblocks));
  kernel<<<grid, kThreads, smem, s>>>(p);
  PIXTRAL_CUDA_LAUNCH_CHECK(flash4_fwd_kernel);
  return {};
}

// Whether the current device runs this file's sm_90a image: compute capability 9.0 and the loaded image of the
// kernel has no static shared memory (the non-sm_90a images carry a marker word). Once per device (up to 64).
bool device_runs_sm90a() {
#if defined(PIXTRAL_CUDA_SM90A)
  static std::atomic<signed char> known[64];
  return device_runs_sm90a_image(reinterpret_cast<const void*>(flash4_fwd_kernel<64, bf16, false>), known,
                                 [](const cudaFuncAttributes&) { return true; });
#else
  return false;
#endif
}

}  // namespace

bool flash4_supported(const AttentionLaunch& a) {
  constexpr std::size_t kReservedPerBlock = 1024;  // the runtime's shared memory per block
  const std::size_t smem = a.head_dim == 64 ? smem_bytes<64>() : smem_bytes<128>();
  const std::uintptr_t out = reinterpret_cast<std::uintptr_t>(a.out);
  return flash_attention_supported(a) && scale_folds(a) && smem <= std::size_t(a.max_smem) &&
         smem + kReservedPerBlock <= std::size_t(a.smem_per_sm) && (out & 7) == 0 &&
         ceil_div(a.n_q, kBr) <= 65535 && device_runs_sm90a();
}

// config: '\0' the default; 's' P·V split into two 64-column wgmmas at head_dim 128 (same at head_dim 64).
// (Warp-specialized configurations — a producer warpgroup filling an mbarrier ring with cp.async, intra-warpgroup
// overlap, ping-pong — were measured slower than this kernel on an H200 and removed; commit 1fd1084,
// PERF_NOTES_v1-v7.md, v6.)
Status launch_flash4(const AttentionLaunch& a, char config, cudaStream_t s) {
  if (a.head_dim == 64)
    return a.out_t == DType::f32 ? launch_typed<64, float, false>(a, s) : launch_typed<64, bf16, false>(a, s);
  if (config == 's')
    return a.out_t == DType::f32 ? launch_typed<128, float, true>(a, s) : launch_typed<128, bf16, true>(a, s);
  return a.out_t == DType::f32 ? launch_typed<128, float, false>(a, s) : launch_typed<128, bf16, false>(a, s);
}

}  // namespace pixtral::cuda::flash
