// SPDX-License-Identifier: Apache-2.0
// Prefill attention on the tensor cores, v3: 128 query rows a block, 4 warps × two m16 tiles (each K/V fragment
// from ldmatrix feeds two MMAs), 64-key K/V tiles double-buffered with cp.async, Q from shared memory at head_dim
// 128 — the tiling of the removed v2 (commit 4a1e058) — with fewer instructions between the MMAs, which is where v2
// spent its time (232 TFLOP/s at hd128 on an H200: about a third
// of what its shared-memory and tensor-core traffic would allow):
//   - softmax in base 2 with the scale folded in: p = ex2.approx.ftz(fma(s, scale·log2e, -m)) — one FFMA and one
//     MUFU an element, where v2's s·scale, s − m and exp2f (ex2.approx.f32 without ftz, which ptxas wraps in a
//     range test and two fix-up multiplies) took five or six;
//   - lazy rescaling (FlashAttention-4's conditional rescale): a row's running max m moves only when a step's max
//     exceeds it by more than kSlack (8, log2 units), so P ≤ 2^8; in most steps past the first few no row of a
//     warp moves and the warp skips the O multiplies (128 a thread at hd128; a warp vote — α = 1 there, so the
//     skip is exact). Same softmax (O and l share m), rounded differently;
//   - softmax steps of kSub keys (64 or 32) inside a 64-key tile: at 32, S takes 32 registers instead of 64 —
//     what lets head_dim 64 run 3 blocks an SM (168 registers; Q from shared memory there), and at head_dim 128
//     leaves the compiler registers to run ldmatrix ahead of the MMAs; the warp's skip test is per step.
//   - mma.sync without `volatile` (a pure function of its registers; ptxas registers came out the same).
// The automatic choice for ≥ 128 query rows (kernels_flash.cu). PIXTRAL_CUDA_FLASH=3 forces the default
// configuration; suffixes select others for A/B (launch_flash3): "3e" eager rescaling (m = running max as v2),
// "3m" head_dim 64 at 3 blocks an SM with 32-key steps.
// Everything else as v2: key ranges per row or the device decode state, zero-filled keys past the block's range,
// fully masked rows give 0 (no NaN), deterministic (no atomics, fixed order), v2's two barriers a tile (one
// barrier a tile, issuing tile t + 1 after it, spilled at head_dim 128).
// K and V stay in one cp.async group: with two buffers tile t + 1's copy has all of tile t's compute to land (FA2
// splits the K and V groups because its K and V are single-buffered).
// ref: flash-attention csrc/flash_attn/src/flash_fwd_kernel.h (compute_attn_1rowblock), softmax.h
// (scale_apply_exp2: exp2f(x · scale − max · scale) as one FFMA); FlashAttention-4 (conditional rescaling);
// PTX ISA §9.7.14.5.8 (m16n8k16 fragments), ex2.approx.ftz.f32.
#include <climits>
#include <cstdint>

#include "cuda/kernels_flash.cuh"

namespace pixtral::cuda::flash {
namespace {

constexpr int kBr = 128;  // query rows per block
constexpr int kWarps = 4;  // 32 query rows (two m16 tiles) each
constexpr int kThreads = 32 * kWarps;
constexpr int kBc = 64;  // keys per tile
constexpr float kSlack = 8.f;  // lazy rescaling: P ≤ 2^kSlack

template <int D>
constexpr std::size_t smem_bytes() {
  // [Q: kBr × D][K0][V0][K1][V1: kBc × D] bf16, the rows' key ranges, 4 warps' range summaries
  return std::size_t(kBr) * D * 2 + std::size_t(4) * kBc * D * 2 + kBr * sizeof(int2) + kWarps * sizeof(int4);
}

// 2^x, flushing denormal results to 0 (one MUFU.EX2); ex2(-inf) = 0.
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
// c += a · b (m16n8k16, bf16 in, fp32 accumulators); not volatile: no side effects, free to schedule.
__device__ __forceinline__ void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <int D, class TO, int kMinBlocks, bool kLazy, int kSub>
__global__ void __launch_bounds__(kThreads, kMinBlocks) flash3_fwd_kernel(const FlashParams p) {
  constexpr int kKSteps = D / 16;   // k-steps of Q·Kᵀ
  constexpr int kDTiles = D / 8;    // n-tiles of the output
  constexpr int kNTiles = kSub / 8;  // n-tiles of S (one softmax step)
  // Q in registers at head_dim 64 except 3 blocks an SM with 32-key steps (168 registers: Q from smem there)
  constexpr bool kQInRegs = D <= 64 && (kMinBlocks <= 2 || kSub <= 16);
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
  const auto [kvh, r0, nr, q_stride, kv_stride, qg, kg, vg] = block_rows<D, kBr>(p, h, qb);
  const float sc = p.scale_log2;

  // Key ranges: thread tid owns block row tid; per warp the union [w_lo, w_hi) and the intersection
  // [w_maxlo, w_minhi) of its 32 rows' ranges; per block the union (the tiles to load).
  block_row_ranges(p, r0, nr, tid, s_rng, s_wrng);
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
  float m[4], l[4];  // running max (scaled, base 2) and this thread's partial row sums
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
  }
  auto q_addr = [&](int mt, int kk) {
    return s_q + swz<D>(warp * 32 + mt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, kk * 2 + (lane >> 4));
  };

  for (int it = 0; it < n_tiles; ++it) {
    const int kt = blk_lo + it * kBc;
    const int buf = it & 1;
    // v2's pipeline: once every warp is done with tile it − 1 (first barrier), issue tile it + 1 into its buffer,
    // wait for tile it, barrier.
    if (it > 0) __syncthreads();
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

#pragma unroll
    for (int sb = 0; sb < kBc / kSub; ++sb) {  // softmax steps of kSub keys (rows sb · kSub .. of the tile)
      const int ks = kt + sb * kSub;
      // Warp-uniform: a step none of this warp's rows can see changes nothing (α = 1, P = 0): skipped.
      if (!(ks < wrng.y && ks + kSub > wrng.x)) continue;

      // S = Q Kᵀ (raw, unscaled) for the warp's 32 rows × kSub keys; each K fragment feeds both m16 tiles.
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
        for (int np = 0; np < kSub / 16; ++np) {
          std::uint32_t b[4];
          ldmatrix_x4(s_k(buf) + swz<D>(sb * kSub + np * 16 + (lane & 7) + ((lane >> 4) & 1) * 8,
                                        kk * 2 + ((lane >> 3) & 1)),
                      b);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma(s[mt][2 * np], qa[mt], b[0], b[1]);
            mma(s[mt][2 * np + 1], qa[mt], b[2], b[3]);
          }
        }
      }

      // Mask (raw scores to -inf) where a row's range cuts these keys; the rows' raw maxima (scale > 0).
      const bool need_mask = ks < wrng.z || ks + kSub > wrng.w;
      float mx[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {  // row i of this thread: m16 tile i >> 1, fragment half i & 1
        const int mt = i >> 1, c0 = (i & 1) * 2;
        mx[i] = -INFINITY;
        if (need_mask) {
          const int2 rr = s_rng[warp * 32 + mt * 16 + (i & 1) * 8 + g];
#pragma unroll
          for (int j = 0; j < kNTiles; ++j)
#pragma unroll
            for (int c = c0; c < c0 + 2; ++c) {
              const int key = ks + j * 8 + 2 * t4 + (c & 1);
              if (key < rr.x || key >= rr.y) s[mt][j][c] = -INFINITY;
            }
        }
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) mx[i] = fmaxf(mx[i], fmaxf(s[mt][j][c0], s[mt][j][c0 + 1]));
      }
      // New running max (scaled); α = 2^(m_old − m_new), exactly 1 where m stays; nm = −m (0 while all masked).
      float al[4], nm[4];
      bool moved = false;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int o_ = 1; o_ <= 2; o_ <<= 1) mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], o_));
        const float ms = mx[i] * sc;  // -inf stays -inf
        const float mn = kLazy ? (ms > m[i] + kSlack ? ms : m[i]) : fmaxf(m[i], ms);
        const bool up = mn != m[i];
        al[i] = up ? ex2(m[i] - mn) : 1.f;  // ex2(-inf) = 0 on the first step a row sees
        moved |= up;
        m[i] = mn;
        nm[i] = mn == -INFINITY ? 0.f : -mn;
      }
      float sum[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) {
#pragma unroll
          for (int c = 0; c < 4; ++c) s[mt][j][c] = ex2(fmaf(s[mt][j][c], sc, nm[2 * mt + (c >> 1)]));
          sum[2 * mt] += s[mt][j][0] + s[mt][j][1];
          sum[2 * mt + 1] += s[mt][j][2] + s[mt][j][3];
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) l[i] = l[i] * al[i] + sum[i];
      if (__any_sync(0xffffffffu, moved)) {  // warp-uniform; α = 1 elsewhere, so skipping it is exact
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
      }

      // O += P V: P (bf16) from the S accumulators as the A operand; each V fragment feeds both m16 tiles.
#pragma unroll
      for (int kk = 0; kk < kSub / 16; ++kk) {
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
          ldmatrix_x4_trans(
              s_v(buf) + swz<D>(sb * kSub + kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dp * 2 + (lane >> 4)), b);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma(o[mt][2 * dp], a[mt], b[0], b[1]);
            mma(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
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

template <int D, class TO, int kMinBlocks, bool kLazy, int kSub>
Status launch_typed(const AttentionLaunch& a, cudaStream_t s) {
  const FlashParams p = make_params(a, kBr);
  constexpr std::size_t smem = smem_bytes<D>();
  auto kernel = flash3_fwd_kernel<D, TO, kMinBlocks, kLazy, kSub>;
  // Once per device and instantiation (kernels.cuh); cudaFuncSetAttribute is not a stream operation.
  PIXTRAL_RETURN_IF_ERROR(allow_dynamic_smem(kernel, smem, "flash attention v3"));
  const dim3 grid(unsigned(a.n_heads), unsigned(p.n_qblocks));
  kernel<<<grid, kThreads, smem, s>>>(p);
  PIXTRAL_CUDA_LAUNCH_CHECK(flash3_fwd_kernel);
  return {};
}

template <int D, int kMinBlocks, bool kLazy, int kSub>
Status launch_out(const AttentionLaunch& a, cudaStream_t s) {
  return a.out_t == DType::f32 ? launch_typed<D, float, kMinBlocks, kLazy, kSub>(a, s)
                               : launch_typed<D, bf16, kMinBlocks, kLazy, kSub>(a, s);
}

}  // namespace

bool flash3_supported(const AttentionLaunch& a) {
  constexpr std::size_t kReservedPerBlock = 1024;  // the runtime's shared memory per block
  const std::size_t smem = a.head_dim <= 64 ? smem_bytes<64>() : smem_bytes<128>();
  const std::uintptr_t out = reinterpret_cast<std::uintptr_t>(a.out);
  return flash_attention_supported(a) && scale_folds(a) && smem <= std::size_t(a.max_smem) &&
         smem + kReservedPerBlock <= std::size_t(a.smem_per_sm) && (out & 7) == 0 &&
         ceil_div(a.n_q, kBr) <= 65535;  // grid.y
}

// Configurations (blocks an SM, lazy rescaling, keys a softmax step), head_dim 128 | 64:
//   default  2, lazy, 64 | 2, lazy, 64
//   'e'      2, eager, 64 | 2, eager, 64 (v2's rescaling, for A/B)
//   'm'      as default   | 3, lazy, 32 (S in 32 registers: 168 registers, Q from shared memory)
// Measured on an H200 (lab, 2026-11-28): decoder 4193 causal hd128 default 520.7 µs = 276.6 TFLOP/s (v2 626.3,
// eager 538.4, 32-key steps 559.0); vision 4096 patches hd64 default 279.5 µs = 245.8 TFLOP/s (v2 361.7;
// 3 blocks with 32-key steps 324.5, with 16-key steps and Q in registers 382.4, 2 blocks with 32-key steps 316.5).
// (4 blocks an SM at head_dim 64 — one wave for the 4096-patch image — spills at 128 registers even with 16-key
// steps and Q from smem.)
Status launch_flash3(const AttentionLaunch& a, char config, cudaStream_t s) {
  if (a.head_dim == 64) {
    switch (config) {
      case 'e': return launch_out<64, 2, false, 64>(a, s);
      case 'm': return launch_out<64, 3, true, 32>(a, s);
      default: return launch_out<64, 2, true, 64>(a, s);
    }
  }
  if (config == 'e') return launch_out<128, 2, false, 64>(a, s);
  return launch_out<128, 2, true, 64>(a, s);
}

}  // namespace pixtral::cuda::flash
