// SPDX-License-Identifier: Apache-2.0
// Attention, one kernel for prefill and decode: out = softmax(q kᵀ · scale + mask) v per head, in fp32.
// Masks are given as a key range [lo, hi) per query row (causal, block-diagonal segments, or all keys), so one
// code path covers the decoder (causal, q_offset), the vision encoder (varlen segments) and decode.
// A block takes `rows_per_block` query rows × the G = n_heads / n_kv_heads query heads that share one KV head
// (GQA: K/V tiles are read once for the whole group), walks 32-key tiles with an online softmax (running max M,
// sum L, rescaled accumulators) and writes the normalised output. When that gives too few blocks to fill the
// GPU (decode: 1 row × 8 KV heads), the key range is split across blocks (split-KV); each split writes its
// unnormalised (acc, M, L) and a combine kernel merges the splits in a fixed order: deterministic, no atomics.
// ref: FlashAttention-2 (Dao 2023) §3.1 online softmax; FlashDecoding split-KV (Dao et al. 2023).
// This generic kernel runs on the FP32 pipes and is the fallback for any head_dim that is a multiple of 8 up to
// 256 (and f32 activations); launch_attention sends bf16 head_dim 64/128 work to the split-KV decode kernel
// (kernels_decode_attention.cu, ≤ 4 query rows) or the tensor-core prefill kernel (kernels_flash.cu).
#include <algorithm>
#include <cmath>

#include "cuda/kernels.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kTile = 32;  // keys per tile (one per lane in the softmax step)
constexpr int kThreads = 256;

struct Geometry {
  int G = 1;               // query heads per KV head
  int rows_per_block = 1;  // query rows per block
  int q_blocks = 1;
  int n_splits = 1;
  int split_len = 0;  // keys per split (multiple of kTile)
  std::size_t smem = 0;
};

std::size_t smem_bytes(int rpb, int G, int D) {
  const std::size_t R = std::size_t(rpb) * G;
  return 4 * (2 * R * D + std::size_t(kTile) * (D + 1) + std::size_t(kTile) * D + R * kTile + 3 * R) + 8 * rpb;
}

Geometry plan(const AttentionLaunch& a) {
  Geometry g;
  g.G = a.n_heads / a.n_kv_heads;
  int rpb = std::max(1, 64 / g.G);
  rpb = int(std::min<std::int64_t>(rpb, std::max<std::int64_t>(a.n_q, 1)));
  while (rpb > 1 && smem_bytes(rpb, g.G, a.head_dim) > std::size_t(a.max_smem)) rpb /= 2;
  g.rows_per_block = rpb;
  g.smem = smem_bytes(rpb, g.G, a.head_dim);
  g.q_blocks = ceil_div(a.n_q, rpb);
  const std::int64_t base = std::int64_t(g.q_blocks) * a.n_kv_heads;
  const std::int64_t span = std::max(0, a.key_hi_max - a.key_lo_min);
  g.split_len = int(std::max<std::int64_t>(span, 1));
  if (base < a.n_sms && span > 2 * kTile) {
    const std::int64_t want = (2 * a.n_sms + base - 1) / base;
    const std::int64_t by_len = (span + 2 * kTile - 1) / (2 * kTile);  // at least 64 keys a split
    const std::int64_t n = std::clamp<std::int64_t>(std::min(want, by_len), 1, 128);
    g.split_len = int(((span + n - 1) / n + kTile - 1) / kTile * kTile);
    g.n_splits = int((span + g.split_len - 1) / g.split_len);
  }
  return g;
}

template <class TI, class TO>
__global__ void __launch_bounds__(kThreads)
attention_kernel(TO* __restrict__ out, float* __restrict__ partial, const TI* __restrict__ q,
                 const TI* __restrict__ k, const TI* __restrict__ v, const int2* __restrict__ key_range,
                 const int* __restrict__ dev_state, int n_q,
                 int H, int Hkv, int D, float scale, int rows_per_block, int key_lo_min, int key_hi_max,
                 int split_len, int n_splits) {
  extern __shared__ __align__(16) float smem[];
  const int G = H / Hkv;
  const int r0 = blockIdx.x * rows_per_block;
  const int kvh = blockIdx.y;
  const int split = blockIdx.z;
  const int nr = min(rows_per_block, n_q - r0);
  const int R = nr * G;  // query vectors in this block: qv = r * G + hh
  const int Rmax = rows_per_block * G;
  int2* rng = reinterpret_cast<int2*>(smem);  // [rows_per_block] first: int2 needs 8-byte alignment
  float* Qs = smem + 2 * rows_per_block;   // [R][D]
  float* Acc = Qs + Rmax * D;              // [R][D]
  float* Ks = Acc + Rmax * D;              // [kTile][D + 1] (padded: lanes read different keys)
  float* Vs = Ks + kTile * (D + 1);        // [kTile][D]
  float* S = Vs + kTile * D;               // [R][kTile] scores, then probabilities
  float* M = S + Rmax * kTile;             // [R] running max
  float* L = M + Rmax;                     // [R] running sum
  float* Alpha = L + Rmax;                 // [R] rescale of this tile

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, n_warps = blockDim.x >> 5;
  const std::int64_t q_stride = std::int64_t(H) * D, kv_stride = std::int64_t(Hkv) * D;
  for (int i = tid; i < nr; i += blockDim.x)
    rng[i] = dev_state ? make_int2(0, dev_state[kDecodeStatePosition] + r0 + i + 1) : key_range[r0 + i];
  for (int i = tid; i < R * D; i += blockDim.x) {
    const int qv = i / D, d = i % D;
    const int r = qv / G, h = kvh * G + qv % G;
    Qs[i] = to_f32(q[(r0 + r) * q_stride + std::int64_t(h) * D + d]);
    Acc[i] = 0.f;
  }
  for (int i = tid; i < R; i += blockDim.x) {
    M[i] = -INFINITY;
    L[i] = 0.f;
  }
  __syncthreads();
  int lo = key_hi_max, hi = key_lo_min;
  for (int i = 0; i < nr; ++i) {
    lo = min(lo, rng[i].x);
    hi = max(hi, rng[i].y);
  }
  const int s_lo = key_lo_min + split * split_len;
  lo = max(lo, s_lo);
  hi = min(hi, min(s_lo + split_len, key_hi_max));

  for (int kt = lo; kt < hi; kt += kTile) {
    const int nk = min(kTile, hi - kt);
    for (int i = tid; i < kTile * D; i += blockDim.x) {
      const int j = i / D, d = i % D;
      float kk = 0.f, vv = 0.f;
      if (j < nk) {
        const std::int64_t off = std::int64_t(kt + j) * kv_stride + std::int64_t(kvh) * D + d;
        kk = to_f32(k[off]);
        vv = to_f32(v[off]);
      }
      Ks[j * (D + 1) + d] = kk;
      Vs[j * D + d] = vv;
    }
    __syncthreads();
    for (int i = tid; i < R * kTile; i += blockDim.x) {
      const int qv = i / kTile, j = i % kTile;
      const int key = kt + j;
      const int2 rr = rng[qv / G];
      float sc = -INFINITY;
      if (j < nk && key >= rr.x && key < rr.y) {
        const float* qr = Qs + qv * D;
        const float* kr = Ks + j * (D + 1);
        float dot = 0.f;
        for (int d = 0; d < D; ++d) dot = fmaf(qr[d], kr[d], dot);
        sc = dot * scale;
      }
      S[i] = sc;
    }
    __syncthreads();
    for (int qv = warp; qv < R; qv += n_warps) {
      const float sc = S[qv * kTile + lane];
      const float m_old = M[qv];
      const float m_new = fmaxf(m_old, warp_max(sc));
      const float p = sc == -INFINITY ? 0.f : expf(sc - m_new);
      const float alpha = m_old == -INFINITY ? 0.f : expf(m_old - m_new);
      const float sum = warp_sum(p);
      S[qv * kTile + lane] = p;
      __syncwarp();
      if (lane == 0) {
        M[qv] = m_new;
        L[qv] = L[qv] * alpha + sum;
        Alpha[qv] = alpha;
      }
    }
    __syncthreads();
    for (int i = tid; i < R * D; i += blockDim.x) {
      const int qv = i / D, d = i % D;
      const float* p = S + qv * kTile;
      float acc = Acc[i] * Alpha[qv];
      for (int j = 0; j < nk; ++j) acc = fmaf(p[j], Vs[j * D + d], acc);
      Acc[i] = acc;
    }
    __syncthreads();
  }

  if (n_splits == 1) {
    for (int i = tid; i < R * D; i += blockDim.x) {
      const int qv = i / D, d = i % D;
      const int r = qv / G, h = kvh * G + qv % G;
      const float l = L[qv];
      out[(r0 + r) * q_stride + std::int64_t(h) * D + d] = from_f32<TO>(l > 0.f ? Acc[i] / l : 0.f);
    }
  } else {
    // partial layout: O [n_splits][n_q][H][D], then M and L [n_splits][n_q][H]
    const std::int64_t n_vec = std::int64_t(n_q) * H;
    float* Op = partial + std::int64_t(split) * n_vec * D;
    float* Mp = partial + std::int64_t(n_splits) * n_vec * D + std::int64_t(split) * n_vec;
    float* Lp = Mp + std::int64_t(n_splits) * n_vec;
    for (int i = tid; i < R * D; i += blockDim.x) {
      const int qv = i / D, d = i % D;
      const int r = qv / G, h = kvh * G + qv % G;
      Op[(std::int64_t(r0 + r) * H + h) * D + d] = Acc[i];
    }
    for (int qv = tid; qv < R; qv += blockDim.x) {
      const int r = qv / G, h = kvh * G + qv % G;
      Mp[std::int64_t(r0 + r) * H + h] = M[qv];
      Lp[std::int64_t(r0 + r) * H + h] = L[qv];
    }
  }
}

// One block per (query row, head); splits merged in index order.
template <class TO>
__global__ void attention_combine_kernel(TO* __restrict__ out, const float* __restrict__ partial, int n_q, int H,
                                         int D, int n_splits) {
  const std::int64_t vec = blockIdx.x;  // row * H + h
  const std::int64_t n_vec = std::int64_t(n_q) * H;
  const float* Mp = partial + std::int64_t(n_splits) * n_vec * D;
  const float* Lp = Mp + std::int64_t(n_splits) * n_vec;
  float m = -INFINITY;
  for (int s = 0; s < n_splits; ++s) m = fmaxf(m, Mp[s * n_vec + vec]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float l = 0.f, acc = 0.f;
    for (int s = 0; s < n_splits; ++s) {
      const float ms = Mp[s * n_vec + vec];
      const float w = ms == -INFINITY ? 0.f : expf(ms - m);
      l = fmaf(Lp[s * n_vec + vec], w, l);
      acc = fmaf(partial[(s * n_vec + vec) * D + d], w, acc);
    }
    out[vec * D + d] = from_f32<TO>(l > 0.f ? acc / l : 0.f);
  }
}

}  // namespace

AttentionPath attention_path(const AttentionLaunch& a) {
  const bool decode_ok = decode_attention_supported(a), flash_ok = flash_attention_supported(a);
  switch (a.path) {
    case AttentionPath::decode: return decode_ok ? AttentionPath::decode : AttentionPath::generic;
    case AttentionPath::flash: return flash_ok ? AttentionPath::flash : AttentionPath::generic;
    case AttentionPath::generic: return AttentionPath::generic;
    case AttentionPath::automatic: break;
  }
  if (decode_ok) return AttentionPath::decode;
  if (flash_ok) return AttentionPath::flash;
  return AttentionPath::generic;
}

std::int64_t attention_workspace_floats(const AttentionLaunch& a) {
  const AttentionPath path = attention_path(a);
  if (path == AttentionPath::decode) return decode_attention_workspace_floats(a);
  if (path == AttentionPath::flash) return 0;
  const Geometry g = plan(a);
  if (g.n_splits == 1) return 0;
  return std::int64_t(g.n_splits) * a.n_q * a.n_heads * (a.head_dim + 2);
}

Status launch_attention(const AttentionLaunch& a, cudaStream_t s) {
  if (a.n_q == 0) return {};
  if (a.n_heads <= 0 || a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0 || a.head_dim <= 0 ||
      a.head_dim > 256 || a.head_dim % 8 != 0)
    return Status(ErrorCode::invalid_argument, "cuda attention: need n_heads % n_kv_heads == 0 and head_dim a "
                                               "multiple of 8 up to 256, got heads " + std::to_string(a.n_heads) +
                                               "/" + std::to_string(a.n_kv_heads) + " head_dim " +
                                               std::to_string(a.head_dim));
  if (a.q_t != a.k_t || a.q_t != a.v_t)
    return Status(ErrorCode::unsupported, "cuda attention: q, k and v must share one dtype");
  if (!a.key_range && !a.dev_state) return Status(ErrorCode::internal, "cuda attention: no key ranges");
  switch (attention_path(a)) {
    case AttentionPath::decode: return launch_decode_attention(a, s);
    case AttentionPath::flash: return launch_flash_attention(a, s);
    default: break;
  }
  const Geometry g = plan(a);
  if (g.smem > std::size_t(a.max_smem))
    return Status(ErrorCode::unsupported, "cuda attention: head_dim " + std::to_string(a.head_dim) + " with " +
                                              std::to_string(g.G) + " query heads per KV head needs " +
                                              std::to_string(g.smem) + " bytes of shared memory per block");
  if (g.n_splits > 1 && a.partial_floats < attention_workspace_floats(a))
    return Status(ErrorCode::internal, "cuda attention: split-KV workspace too small");
  return dispatch_act(a.q_t, [&](auto ti) {
    return dispatch_act(a.out_t, [&](auto to) {
      using TI = typename decltype(ti)::type;
      using TO = typename decltype(to)::type;
      auto kernel = attention_kernel<TI, TO>;
      if (g.smem > 48 * 1024)
        PIXTRAL_RETURN_IF_ERROR(allow_dynamic_smem(kernel, std::size_t(a.max_smem), "attention"));
      const dim3 grid(unsigned(g.q_blocks), unsigned(a.n_kv_heads), unsigned(g.n_splits));
      kernel<<<grid, kThreads, g.smem, s>>>(static_cast<TO*>(a.out), a.partial, static_cast<const TI*>(a.q),
                                            static_cast<const TI*>(a.k), static_cast<const TI*>(a.v), a.key_range,
                                            a.dev_state,
                                            int(a.n_q), a.n_heads, a.n_kv_heads, a.head_dim, a.scale,
                                            g.rows_per_block, a.key_lo_min, a.key_hi_max, g.split_len, g.n_splits);
      PIXTRAL_CUDA_LAUNCH_CHECK(attention_kernel);
      if (g.n_splits > 1) {
        const int threads = std::min(256, (a.head_dim + 31) / 32 * 32);
        attention_combine_kernel<TO><<<unsigned(a.n_q * a.n_heads), threads, 0, s>>>(
            static_cast<TO*>(a.out), a.partial, int(a.n_q), a.n_heads, a.head_dim, g.n_splits);
        PIXTRAL_CUDA_LAUNCH_CHECK(attention_combine_kernel);
      }
      return Status{};
    });
  });
}

}  // namespace pixtral::cuda
