// SPDX-License-Identifier: Apache-2.0
// Prefill attention on the tensor cores, v2 (the FlashAttention-2 forward as FA2 runs it on sm80/sm90 with
// mma.sync): one block = 128 query rows of one query head, 4 warps × 32 rows = two m16 tiles a warp, so every K
// and V fragment loaded by ldmatrix feeds two MMAs (half the shared-memory reads of v1 per MMA, two independent
// accumulator chains). Bc-key tiles (Bc = 64) of K and V double-buffered with cp.async into XOR-swizzled shared
// memory; Q stays in shared memory and is re-read per k-step at head_dim 128 (O alone takes 128 fp32 registers a
// thread), in registers at head_dim 64. Same semantics as v1 (kernels_flash.cu): key range [lo, hi) per query row
// (or from the device decode state), keys past a block's range zero-filled, fully masked rows give 0, the online
// softmax in base 2 with P rounded to bf16 as the A operand of P·V, deterministic (no atomics, fixed order).
// Differences in scheduling only: the grid is (heads, query blocks) with the heaviest query block first across all
// heads (the heads sharing a KV head run together), and a warp skips the MMAs of a key tile none of its 32 rows
// can see (the diagonal tiles of causal blocks, segment edges) — exactly what masking it whole would give.
// ref: flash-attention csrc/flash_attn/src/flash_fwd_kernel.h (compute_attn_1rowblock), kernel_traits.h
// (Flash_fwd_kernel_traits<128, 128, 64, 4>: kBlockM 128, kBlockN 64, 4 warps, Q from smem); PTX ISA
// §9.7.14.5.8 (m16n8k16 fragments).
#include <climits>
#include <cstdint>

#include "cuda/kernels_flash.cuh"

namespace pixtral::cuda::flash {
namespace {

constexpr int kBr = 128;  // query rows per block
constexpr int kWarps = 4;  // 32 query rows (two m16 tiles) each
constexpr int kThreads = 32 * kWarps;
constexpr int kBc = 64;  // keys per tile

template <int D>
constexpr std::size_t smem_bytes() {
  // [Q: kBr × D][K0][V0][K1][V1: kBc × D] bf16, the rows' key ranges, 4 warps' range summaries
  return std::size_t(kBr) * D * 2 + std::size_t(4) * kBc * D * 2 + kBr * sizeof(int2) + kWarps * sizeof(int4);
}

// Registers: hd128 holds O (2 × 16 × 4 fp32) and S (2 × 8 × 4) and reads Q per k-step: 2 blocks (8 warps) an SM.
// hd64 keeps Q in registers (2 × 4 × 4).
template <int D, class TO>
__global__ void __launch_bounds__(kThreads, 2) flash2_fwd_kernel(const FlashParams p) {
  constexpr int kKSteps = D / 16;   // k-steps of Q·Kᵀ
  constexpr int kDTiles = D / 8;    // n-tiles of the output
  constexpr int kNTiles = kBc / 8;  // n-tiles of S
  constexpr bool kQInRegs = D <= 64;
  constexpr std::uint32_t kQBytes = kBr * D * 2, kTileBytes = kBc * D * 2;
  extern __shared__ __align__(128) unsigned char smem[];
  const std::uint32_t s_base = std::uint32_t(__cvta_generic_to_shared(smem));
  const std::uint32_t s_q = s_base;
  auto s_k = [&](int b) { return s_base + kQBytes + kTileBytes * (2 * b); };
  auto s_v = [&](int b) { return s_base + kQBytes + kTileBytes * (2 * b + 1); };
  int2* s_rng = reinterpret_cast<int2*>(smem + kQBytes + 4 * kTileBytes);
  int4* s_wrng = reinterpret_cast<int4*>(s_rng + kBr);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;
  const int h = blockIdx.x;
  const int qb = p.n_qblocks - 1 - int(blockIdx.y);  // heaviest (causal) query blocks first, all heads
  const int kvh = h / (p.H / p.Hkv);
  const int r0 = qb * kBr;
  const int nr = min(kBr, p.n_q - r0);
  const std::int64_t q_stride = std::int64_t(p.H) * D, kv_stride = std::int64_t(p.Hkv) * D;
  const bf16* qg = p.q + std::int64_t(r0) * q_stride + std::int64_t(h) * D;
  const bf16* kg = p.k + std::int64_t(kvh) * D;
  const bf16* vg = p.v + std::int64_t(kvh) * D;

  // Thread tid owns the key range of block row tid (warp w: rows 32w .. 32w + 31, the rows it computes).
  // Padding rows widen nothing. Per warp: the union [w_lo, w_hi) and the intersection [w_maxlo, w_minhi) of its
  // rows' ranges (skip / mask decisions); per block: the union (the tiles to load).
  {
    const bool valid = tid < nr;
    const int2 rr = valid ? row_range(p, r0 + tid) : make_int2(INT_MAX, INT_MIN);
    s_rng[tid] = rr;
    int lo = valid ? rr.x : INT_MAX, hi = valid ? rr.y : INT_MIN;
    int maxlo = valid ? rr.x : INT_MIN, minhi = valid ? rr.y : INT_MAX;
#pragma unroll
    for (int o_ = 16; o_ > 0; o_ >>= 1) {
      lo = min(lo, __shfl_xor_sync(0xffffffffu, lo, o_));
      hi = max(hi, __shfl_xor_sync(0xffffffffu, hi, o_));
      maxlo = max(maxlo, __shfl_xor_sync(0xffffffffu, maxlo, o_));
      minhi = min(minhi, __shfl_xor_sync(0xffffffffu, minhi, o_));
    }
    if (lane == 0) s_wrng[warp] = make_int4(lo, hi, maxlo, minhi);
  }
  load_tile<D, kBr, kThreads>(s_q, qg, q_stride, 0, nr, tid);
  __syncthreads();
  int blk_lo = INT_MAX, blk_hi = INT_MIN;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    const int4 wr = s_wrng[w];
    blk_lo = min(blk_lo, wr.x);
    blk_hi = max(blk_hi, wr.y);
  }
  const int4 wrng = s_wrng[warp];
  const int n_tiles = blk_hi > blk_lo ? (blk_hi - blk_lo + kBc - 1) / kBc : 0;

  if (n_tiles > 0) {
    load_tile<D, kBc, kThreads>(s_k(0), kg, kv_stride, blk_lo, blk_hi, tid);
    load_tile<D, kBc, kThreads>(s_v(0), vg, kv_stride, blk_lo, blk_hi, tid);
  }
  cp_async_commit();  // group 0: Q, K0, V0

  // This thread's 4 rows: mt * 16 + g (+ 8), mt = the warp's m16 tile; index i = 2 mt + (c >> 1) of a fragment.
  std::uint32_t qf[kQInRegs ? kKSteps : 1][2][4];
  float o[2][kDTiles][4];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int j = 0; j < kDTiles; ++j) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.f;
  float m[4], l[4];  // running max (base 2) and this thread's partial row sums
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
  }
  // ldmatrix x4 address of the A fragment (rows mt·16 .. +15 of this warp, k-step kk) in the swizzled Q tile
  auto q_addr = [&](int mt, int kk) {
    return s_q + swz<D>(warp * 32 + mt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, kk * 2 + (lane >> 4));
  };

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
    if constexpr (kQInRegs) {
      if (it == 0) {
#pragma unroll
        for (int kk = 0; kk < kKSteps; ++kk)
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) ldmatrix_x4(q_addr(mt, kk), qf[kk][mt]);
      }
    }

    // Warp-uniform: a tile none of this warp's rows can see changes nothing (masked whole it would give α = 1,
    // P = 0), so its MMAs are skipped.
    if (kt < wrng.y && kt + kBc > wrng.x) {
      // S = Q Kᵀ for the warp's 32 rows × kBc keys; each K fragment feeds both m16 tiles.
      float s[2][kNTiles][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < kKSteps; ++kk) {
        std::uint32_t qa[2][4];
        if constexpr (kQInRegs) {
#pragma unroll
          for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int i = 0; i < 4; ++i) qa[mt][i] = qf[kk][mt][i];
        } else {
          ldmatrix_x4(q_addr(0, kk), qa[0]);
          ldmatrix_x4(q_addr(1, kk), qa[1]);
        }
#pragma unroll
        for (int np = 0; np < kBc / 16; ++np) {
          std::uint32_t b[4];
          ldmatrix_x4(s_k(buf) + swz<D>(np * 16 + (lane & 7) + ((lane >> 4) & 1) * 8, kk * 2 + ((lane >> 3) & 1)),
                      b);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma_bf16(s[mt][2 * np], qa[mt], b[0], b[1]);
            mma_bf16(s[mt][2 * np + 1], qa[mt], b[2], b[3]);
          }
        }
      }

      // Scale (base 2), mask where a row's range cuts this tile, online softmax (as v1, four rows a thread).
      const bool need_mask = kt < wrng.z || kt + kBc > wrng.w;
      float mx[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {  // row i of this thread: m16 tile i >> 1, fragment half i & 1
        const int mt = i >> 1, c0 = (i & 1) * 2;
        const int2 rr = need_mask ? s_rng[warp * 32 + mt * 16 + (i & 1) * 8 + g] : make_int2(0, 0);
        mx[i] = -INFINITY;
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) {
#pragma unroll
          for (int c = c0; c < c0 + 2; ++c) {
            float x = s[mt][j][c] * p.scale_log2;
            if (need_mask) {
              const int key = kt + j * 8 + 2 * t4 + (c & 1);
              if (key < rr.x || key >= rr.y) x = -INFINITY;
            }
            s[mt][j][c] = x;
            mx[i] = fmaxf(mx[i], x);
          }
        }
      }
      float al[4], mu[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int o_ = 1; o_ <= 2; o_ <<= 1) mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], o_));
        const float mn = fmaxf(m[i], mx[i]);
        mu[i] = mn == -INFINITY ? 0.f : mn;
        al[i] = exp2f(m[i] - mu[i]);  // exp2(-inf) = 0 on the first tile
        m[i] = mn;
      }
      float sum[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) {
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const int i = 2 * mt + (c >> 1);
            s[mt][j][c] = exp2f(s[mt][j][c] - mu[i]);
          }
          sum[2 * mt] += s[mt][j][0] + s[mt][j][1];
          sum[2 * mt + 1] += s[mt][j][2] + s[mt][j][3];
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) l[i] = l[i] * al[i] + sum[i];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int j = 0; j < kDTiles; ++j) {
          o[mt][j][0] *= al[2 * mt];
          o[mt][j][1] *= al[2 * mt];
          o[mt][j][2] *= al[2 * mt + 1];
          o[mt][j][3] *= al[2 * mt + 1];
        }
      }

      // O += P V: P (bf16) from the S accumulators as the A operand; each V fragment feeds both m16 tiles.
#pragma unroll
      for (int kk = 0; kk < kBc / 16; ++kk) {
        std::uint32_t a[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          a[mt][0] = pack_bf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          a[mt][1] = pack_bf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          a[mt][2] = pack_bf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          a[mt][3] = pack_bf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          std::uint32_t b[4];
          ldmatrix_x4_trans(s_v(buf) + swz<D>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dp * 2 + (lane >> 4)),
                            b);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma_bf16(o[mt][2 * dp], a[mt], b[0], b[1]);
            mma_bf16(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // the next iteration's loads overwrite the other buffer: all warps must be done with it
  }
  cp_async_wait<0>();  // a block with no key tile still has its Q copy in flight

  TO* out = static_cast<TO*>(p.out) + std::int64_t(r0) * q_stride + std::int64_t(h) * D;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int o_ = 1; o_ <= 2; o_ <<= 1) l[i] += __shfl_xor_sync(0xffffffffu, l[i], o_);
    const float inv = l[i] > 0.f ? 1.f / l[i] : 0.f;
    const int row = warp * 32 + (i >> 1) * 16 + (i & 1) * 8 + g;
    if (row < nr) {
      TO* dst = out + std::int64_t(row) * q_stride + 2 * t4;
      const int mt = i >> 1, c0 = (i & 1) * 2;
#pragma unroll
      for (int j = 0; j < kDTiles; ++j) store2(dst + j * 8, o[mt][j][c0] * inv, o[mt][j][c0 + 1] * inv);
    }
  }
}

template <int D, class TO>
Status launch_typed(const AttentionLaunch& a, cudaStream_t s) {
  const FlashParams p = make_params(a, kBr);
  constexpr std::size_t smem = smem_bytes<D>();
  auto kernel = flash2_fwd_kernel<D, TO>;
  // Once per device and instantiation (kernels.cuh); cudaFuncSetAttribute is not a stream operation.
  PIXTRAL_RETURN_IF_ERROR(allow_dynamic_smem(kernel, smem, "flash attention v2"));
  const dim3 grid(unsigned(a.n_heads), unsigned(p.n_qblocks));
  kernel<<<grid, kThreads, smem, s>>>(p);
  PIXTRAL_CUDA_LAUNCH_CHECK(flash2_fwd_kernel);
  return {};
}

}  // namespace

std::size_t flash2_smem_bytes(int head_dim) { return head_dim <= 64 ? smem_bytes<64>() : smem_bytes<128>(); }

bool flash2_supported(const AttentionLaunch& a) {
  constexpr std::size_t kReservedPerBlock = 1024;  // the runtime's shared memory per block
  const std::size_t smem = flash2_smem_bytes(a.head_dim);
  const std::uintptr_t out = reinterpret_cast<std::uintptr_t>(a.out);
  return flash_attention_supported(a) && smem <= std::size_t(a.max_smem) &&
         smem + kReservedPerBlock <= std::size_t(a.smem_per_sm) && (out & 7) == 0 &&
         ceil_div(a.n_q, kBr) <= 65535;  // grid.y
}

Status launch_flash2(const AttentionLaunch& a, cudaStream_t s) {
  if (a.head_dim == 64)
    return a.out_t == DType::f32 ? launch_typed<64, float>(a, s) : launch_typed<64, bf16>(a, s);
  return a.out_t == DType::f32 ? launch_typed<128, float>(a, s) : launch_typed<128, bf16>(a, s);
}

}  // namespace pixtral::cuda::flash
