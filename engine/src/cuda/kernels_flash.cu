// SPDX-License-Identifier: Apache-2.0
// Prefill attention on the tensor cores (FlashAttention-2 forward): bf16 q/k/v, head_dim 64 or 128, fp32
// accumulation and an fp32 online softmax. One block = 64 query rows of one query head (4 warps × 16 rows);
// it walks 64-key tiles of the head's KV head (GQA: kv head = h / (H / Hkv)) between the smallest and largest
// key its rows may see. Masks come as a key range [lo, hi) per query row (causal with q_offset, block-diagonal
// segments, or all keys), or from the device decode state (graph replay); a tile is masked element by element
// only when some row's range cuts it. Q·Kᵀ and P·V are mma.sync m16n8k16 (bf16 in, fp32 out) with operands from
// XOR-swizzled shared memory through ldmatrix; K/V tiles are double-buffered with cp.async (keys past the
// block's range are zero-filled, so no out-of-bounds row is read). Deterministic: no atomics, fixed order.
// ref: FlashAttention-2 (Dao 2023) Alg. 1; flash-attention csrc/flash_attn/src/flash_fwd_kernel.h (fragment
// layouts, P kept in registers as the A operand of P·V); PTX ISA §9.7.14.5.8 (m16n8k16 fragment layout).
// This file: v1 and the dispatch between v1, v3 (kernels_flash3.cu: 128 rows a block, two m16 tiles a warp, a lean
// softmax), v4 (kernels_flash4.cu: wgmma on sm_90a) and v5 (kernels_flash5.cu: wgmma with TMA loads and warp
// specialization; the automatic choice on sm_90).
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "cuda/kernels_flash.cuh"

namespace pixtral::cuda {
namespace {

using namespace flash;

constexpr int kBr = 64;       // query rows per block
constexpr int kBc = 64;       // keys per tile
constexpr int kWarps = 4;     // 16 query rows each
constexpr int kThreads = 32 * kWarps;
template <int D, class TO>
__global__ void __launch_bounds__(kThreads, 2) flash_fwd_kernel(const FlashParams p) {
  constexpr int kTileBytes = kBc * D * 2;
  constexpr int kKSteps = D / 16;  // k-steps of Q·Kᵀ
  constexpr int kDTiles = D / 8;   // n-tiles of the output
  extern __shared__ __align__(128) unsigned char smem[];
  // [Q][K0][V0][K1][V1], then the query rows' key ranges
  const std::uint32_t s_base = std::uint32_t(__cvta_generic_to_shared(smem));
  const std::uint32_t s_q = s_base;
  auto s_k = [&](int b) { return s_base + kTileBytes * (1 + 2 * b); };
  auto s_v = [&](int b) { return s_base + kTileBytes * (2 + 2 * b); };
  int2* s_rng = reinterpret_cast<int2*>(smem + 5 * kTileBytes);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int qb = p.n_qblocks - 1 - int(blockIdx.x);  // heaviest (causal) blocks first
  const int h = blockIdx.y;
  const auto [kvh, r0, nr, q_stride, kv_stride, qg, kg, vg] = block_rows<D, kBr>(p, h, qb);

  // Key ranges of the block's rows; padding rows get an empty range that widens nothing.
  if (tid < kBr) s_rng[tid] = tid < nr ? row_range(p, r0 + tid) : make_int2(INT_MAX, INT_MIN);
  load_tile<D, kBc, kThreads>(s_q, qg, q_stride, 0, nr, tid);
  __syncthreads();
  int blk_lo = INT_MAX, blk_hi = INT_MIN, max_lo = INT_MIN, min_hi = INT_MAX;
  for (int i = 0; i < nr; ++i) {
    const int2 rr = s_rng[i];
    blk_lo = min(blk_lo, rr.x);
    blk_hi = max(blk_hi, rr.y);
    max_lo = max(max_lo, rr.x);
    min_hi = min(min_hi, rr.y);
  }
  const int row_a = warp * 16 + g, row_b = row_a + 8;  // this thread's two rows (block-local)
  const int2 rng_a = s_rng[row_a], rng_b = s_rng[row_b];
  const int n_tiles = blk_hi > blk_lo ? (blk_hi - blk_lo + kBc - 1) / kBc : 0;

  if (n_tiles > 0) {
    load_tile<D, kBc, kThreads>(s_k(0), kg, kv_stride, blk_lo, blk_hi, tid);
    load_tile<D, kBc, kThreads>(s_v(0), vg, kv_stride, blk_lo, blk_hi, tid);
  }
  cp_async_commit();  // group 0: Q, K0, V0

  std::uint32_t qf[kKSteps][4];
  float o[kDTiles][4];
#pragma unroll
  for (int j = 0; j < kDTiles; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.f, l_b = 0.f;  // l: this thread's partial row sums

  for (int it = 0; it < n_tiles; ++it) {
    const int kt = blk_lo + it * kBc;
    const int buf = it & 1;
    if (it + 1 < n_tiles) {
      load_tile<D, kBc, kThreads>(s_k(buf ^ 1), kg, kv_stride, kt + kBc, blk_hi, tid);
      load_tile<D, kBc, kThreads>(s_v(buf ^ 1), vg, kv_stride, kt + kBc, blk_hi, tid);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (it == 0) {
#pragma unroll
      for (int kk = 0; kk < kKSteps; ++kk)
        ldmatrix_x4(s_q + swz<D>(warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, kk * 2 + (lane >> 4)), qf[kk]);
    }

    // S = Q Kᵀ for this warp's 16 rows × 64 keys: 8 n-tiles of 8 keys.
    float s[kBc / 8][4];
#pragma unroll
    for (int j = 0; j < kBc / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
#pragma unroll
      for (int np = 0; np < kBc / 16; ++np) {
        std::uint32_t b[4];
        ldmatrix_x4(s_k(buf) + swz<D>(np * 16 + (lane & 7) + ((lane >> 4) & 1) * 8, kk * 2 + ((lane >> 3) & 1)), b);
        mma_bf16(s[2 * np], qf[kk], b[0], b[1]);
        mma_bf16(s[2 * np + 1], qf[kk], b[2], b[3]);
      }
    }

    // Scale (base 2), mask where a row's range cuts this tile, online softmax.
    const bool need_mask = kt < max_lo || kt + kBc > min_hi;
    float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
    for (int j = 0; j < kBc / 8; ++j) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float x = s[j][c] * p.scale_log2;
        if (need_mask) {
          const int key = kt + j * 8 + 2 * t4 + (c & 1);
          const int2 rr = c < 2 ? rng_a : rng_b;
          if (key < rr.x || key >= rr.y) x = -INFINITY;
        }
        s[j][c] = x;
      }
      mx_a = fmaxf(mx_a, fmaxf(s[j][0], s[j][1]));
      mx_b = fmaxf(mx_b, fmaxf(s[j][2], s[j][3]));
    }
#pragma unroll
    for (int o_ = 1; o_ <= 2; o_ <<= 1) {
      mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, o_));
      mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, o_));
    }
    const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
    const float mu_a = mn_a == -INFINITY ? 0.f : mn_a, mu_b = mn_b == -INFINITY ? 0.f : mn_b;
    const float al_a = exp2f(m_a - mu_a), al_b = exp2f(m_b - mu_b);  // exp2(-inf) = 0 on the first tile
    m_a = mn_a;
    m_b = mn_b;
    float sum_a = 0.f, sum_b = 0.f;
#pragma unroll
    for (int j = 0; j < kBc / 8; ++j) {
      s[j][0] = exp2f(s[j][0] - mu_a);
      s[j][1] = exp2f(s[j][1] - mu_a);
      s[j][2] = exp2f(s[j][2] - mu_b);
      s[j][3] = exp2f(s[j][3] - mu_b);
      sum_a += s[j][0] + s[j][1];
      sum_b += s[j][2] + s[j][3];
    }
    l_a = l_a * al_a + sum_a;
    l_b = l_b * al_b + sum_b;
#pragma unroll
    for (int j = 0; j < kDTiles; ++j) {
      o[j][0] *= al_a;
      o[j][1] *= al_a;
      o[j][2] *= al_b;
      o[j][3] *= al_b;
    }

    // O += P V: P (bf16) from the S accumulators as the A operand, V through ldmatrix.trans.
#pragma unroll
    for (int kk = 0; kk < kBc / 16; ++kk) {
      const std::uint32_t a[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                  pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                  pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        std::uint32_t b[4];
        ldmatrix_x4_trans(s_v(buf) + swz<D>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dp * 2 + (lane >> 4)), b);
        mma_bf16(o[2 * dp], a, b[0], b[1]);
        mma_bf16(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // the next iteration's loads overwrite the other buffer: all warps must be done with it
  }
  cp_async_wait<0>();  // a block with no key tile still has its Q copy in flight

#pragma unroll
  for (int o_ = 1; o_ <= 2; o_ <<= 1) {
    l_a += __shfl_xor_sync(0xffffffffu, l_a, o_);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, o_);
  }
  const float inv_a = l_a > 0.f ? 1.f / l_a : 0.f, inv_b = l_b > 0.f ? 1.f / l_b : 0.f;
  TO* out = static_cast<TO*>(p.out) + std::int64_t(r0) * q_stride + std::int64_t(h) * D;
#pragma unroll
  for (int j = 0; j < kDTiles; ++j) {
    const int col = j * 8 + 2 * t4;
    if (row_a < nr) {
      TO* dst = out + std::int64_t(row_a) * q_stride + col;
      dst[0] = from_f32<TO>(o[j][0] * inv_a);
      dst[1] = from_f32<TO>(o[j][1] * inv_a);
    }
    if (row_b < nr) {
      TO* dst = out + std::int64_t(row_b) * q_stride + col;
      dst[0] = from_f32<TO>(o[j][2] * inv_b);
      dst[1] = from_f32<TO>(o[j][3] * inv_b);
    }
  }
}

template <int D, class TO>
Status launch_flash_typed(const AttentionLaunch& a, cudaStream_t s) {
  const FlashParams p = make_params(a, kBr);
  const std::size_t smem = flash_attention_smem_bytes(D);
  auto kernel = flash_fwd_kernel<D, TO>;
  // Once per device and instantiation (kernels.cuh); cudaFuncSetAttribute is not a stream operation.
  PIXTRAL_RETURN_IF_ERROR(allow_dynamic_smem(kernel, smem, "flash attention v1"));
  const dim3 grid(unsigned(p.n_qblocks), unsigned(a.n_heads));
  kernel<<<grid, kThreads, smem, s>>>(p);
  PIXTRAL_CUDA_LAUNCH_CHECK(flash_fwd_kernel);
  return {};
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15) == 0; }

// v5 in its ping-pong configuration (kernels_flash5.cu: TMA loads by a producer warpgroup, 2 consumer warpgroups on
// wgmma, setmaxnreg) wherever it can run (sm_90 with the sm_90a image, per-row key ranges, the driver's tensor-map
// encoder), at any row count; else v4 (kernels_flash4.cu: wgmma) or v3 (kernels_flash3.cu: 128-row blocks, two m16
// tiles a warp) where the launch fills their 128-row blocks, else v1 (below 128 rows v3/v4 warps would idle where v1
// spreads the rows over 4 warps). H200 lab (same run): decoder 4193 causal hd128 v5p 261 µs (551 TFLOP/s), v5 314,
// v5n 326, v4 428, v3 520, v1 763; vision 4096 patches hd64 v5p 176 µs, v5 199, v4 273, v3 279, v1 366; 30-row
// follow-up at 4193 keys v5 47 µs, v5p 49, v4 126, v1 131. PIXTRAL_CUDA_FLASH, read per launch, forces a variant
// (A/B timing, tests): "1" v1, "3" / "3e" / "3m" v3 and its configurations, "4" / "4s" v4, "5" / "5p" / "5n" v5;
// v3 falls back to v1 where it cannot run, v4 to v3, v5 to v4 then v3 (v4's and v5's fallbacks said once on
// stderr). Returns 1, 3, 4 or 5; *config = the character after the digit.
constexpr std::int64_t kFlashBigMinRows = 128;
int pick_flash(const AttentionLaunch& a, char* config) {
  const char* e = std::getenv("PIXTRAL_CUDA_FLASH");
  *config = '\0';
  if (e && e[0] == '1') return 1;
  if (e && e[0] == '4') {
    *config = e[1];
    if (flash4_supported(a)) return 4;
    static bool said = false;
    if (!said) {
      said = true;
      std::fprintf(stderr, "pixtral cuda: PIXTRAL_CUDA_FLASH=4 cannot run here (needs an sm_90 GPU and a build with "
                           "90 in CMAKE_CUDA_ARCHITECTURES); flash v3 instead\n");
    }
    *config = '\0';
    return flash3_supported(a) ? 3 : 1;
  }
  if (e && e[0] == '5') {
    *config = e[1];
    if (flash5_supported(a)) return 5;
    static bool said = false;
    if (!said) {
      said = true;
      std::fprintf(stderr, "pixtral cuda: PIXTRAL_CUDA_FLASH=5 cannot run here (needs an sm_90 GPU, a build with 90 "
                           "in CMAKE_CUDA_ARCHITECTURES, per-row key ranges and cuTensorMapEncodeTiled from the "
                           "driver); flash v4 instead, or v3 where v4 cannot run\n");
    }
    *config = '\0';
    return flash4_supported(a) ? 4 : flash3_supported(a) ? 3 : 1;
  }
  if (e && e[0] == '3') {
    *config = e[1];
    return flash3_supported(a) ? 3 : 1;
  }
  if (flash5_supported(a)) {
    *config = 'p';
    return 5;
  }
  if (a.n_q < kFlashBigMinRows) return 1;
  return flash4_supported(a) ? 4 : flash3_supported(a) ? 3 : 1;
}

}  // namespace

// v1's block (the smallest): flash_attention_supported is true wherever v1 can run; v3 and v4 are taken only where
// their own blocks fit too (flash3_supported, flash4_supported).
std::size_t flash_attention_smem_bytes(int head_dim) {
  return std::size_t(5) * kBc * head_dim * 2 + std::size_t(kBr) * sizeof(int2);
}

bool flash_attention_supported(const AttentionLaunch& a) {
  return (a.head_dim == 64 || a.head_dim == 128) && a.q_t == DType::bf16 && a.k_t == DType::bf16 &&
         a.v_t == DType::bf16 && (a.out_t == DType::bf16 || a.out_t == DType::f32) && aligned16(a.q) &&
         aligned16(a.k) && aligned16(a.v) && (a.key_range || a.dev_state) &&
         flash_attention_smem_bytes(a.head_dim) <= std::size_t(a.max_smem) && a.n_heads % a.n_kv_heads == 0;
}

Status launch_flash_attention(const AttentionLaunch& a, cudaStream_t s) {
  if (!flash_attention_supported(a))
    return Status(ErrorCode::internal, "cuda flash attention: unsupported launch (head_dim " +
                                           std::to_string(a.head_dim) + ", dtypes or alignment)");
  if (a.n_q == 0) return {};
  char config;
  switch (pick_flash(a, &config)) {
    case 3: return launch_flash3(a, config, s);
    case 4: return launch_flash4(a, config, s);
    case 5: {
      Status st = launch_flash5(a, config, s);
      if (st.code() != ErrorCode::unsupported) return st;  // unsupported: its tensor maps could not be made
      static bool said = false;
      if (!said) {
        said = true;
        std::fprintf(stderr, "pixtral cuda: flash attention v5 unavailable (%s); v4 or v3 instead\n",
                     st.message().c_str());
      }
      if (flash4_supported(a)) return launch_flash4(a, '\0', s);
      if (flash3_supported(a)) return launch_flash3(a, '\0', s);
      break;
    }
    default: break;
  }
  if (a.head_dim == 64)
    return a.out_t == DType::f32 ? launch_flash_typed<64, float>(a, s) : launch_flash_typed<64, bf16>(a, s);
  return a.out_t == DType::f32 ? launch_flash_typed<128, float>(a, s) : launch_flash_typed<128, bf16>(a, s);
}

}  // namespace pixtral::cuda
