// SPDX-License-Identifier: Apache-2.0
// Batch-1 (up to kGemvMaxRows rows) matrix-vector product for decode: out[T, N] = x[T, K] · W[N, K]ᵀ (+ bias).
// Decode is bound by streaming the weights once, so each warp owns one output feature and walks its W row with
// 16-byte streaming loads (8 bf16, evict-first: the weights are not reused within a step), four loads in flight
// per lane before any math, and the next 4 KB of the row prefetched into L2 (v3: the register file caps a
// one-wave GEMV at ~2 KB of loads per warp, ~90 KB per SM; the prefetch triples the bytes in flight without
// registers); x (T rows of K, ≤ 40 KiB) stays hot in L1/L2. Launched with programmatic dependent launch: the
// first 6 KB of each row are prefetched before waiting on the previous kernel (hides the GEMV's ramp-up). fp32
// accumulation, one fixed shuffle tree per row: deterministic. Falls back to cuBLAS when K % 8 != 0 or pointers
// are not 16-byte aligned.
// ref: llama.cpp ggml-cuda/mmv.cu (one warp per row), calm src/infer.cu (matmul_warppar).
#include <cstdlib>

#include "cuda/kernels.cuh"

namespace pixtral::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kUnroll = 4;
constexpr int kBatchBytes = 32 * kUnroll * 16;  // one warp's loads per iteration: 2 KB = 16 lines
constexpr int kPrefetchBatches = 2;

// Asks L2 for one 128-byte line; unlike a load it ties up no register, so a warp can keep more of its row in
// flight than its registers hold (the register file, not the grid, bounds the loads in flight of a one-wave GEMV).
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// Programmatic dependent launch: the kernel may start while the previous kernel on the stream still runs; it
// must not read data that kernel writes (x) nor write anything before this returns. No-op without PDL.
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void unpack8(const uint4& u, float f[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

// 8 consecutive x values starting at element 8*c.
template <class TX>
__device__ __forceinline__ void load_x8(const TX* x, std::int64_t c, float f[8]);
template <>
__device__ __forceinline__ void load_x8<bf16>(const bf16* x, std::int64_t c, float f[8]) {
  unpack8(__ldg(reinterpret_cast<const uint4*>(x) + c), f);
}
template <>
__device__ __forceinline__ void load_x8<float>(const float* x, std::int64_t c, float f[8]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(x) + 2 * c);
  const float4 b = __ldg(reinterpret_cast<const float4*>(x) + 2 * c + 1);
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w;
  f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}

template <int T, class TX, class TO>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
gemv_kernel(TO* __restrict__ out, const TX* __restrict__ x, const bf16* __restrict__ w,
            const bf16* __restrict__ bias, int N, int K, bool l2_prefetch) {
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  if (n >= N) return;
  const uint4* wrow = reinterpret_cast<const uint4*>(w + std::int64_t(n) * K);
  const int n_chunks = K / 8;
  float acc[T];
#pragma unroll
  for (int t = 0; t < T; ++t) acc[t] = 0.f;

  // L2 prefetch kPrefetchBatches batches (2 KB each) ahead of the loads: batches 0..2 now (W does not depend on
  // the previous kernel, so this runs before the PDL wait), then batch b + 3 while loading batch b (lanes 0..15).
  const char* wbytes = reinterpret_cast<const char*>(wrow);
  const std::int64_t row_bytes = l2_prefetch ? std::int64_t(K) * 2 : 0;
  if (128 * lane < row_bytes) prefetch_l2(wbytes + 128 * lane);
  if (lane < kBatchBytes / 128 && 2 * kBatchBytes + 128 * lane < row_bytes)
    prefetch_l2(wbytes + 2 * kBatchBytes + 128 * lane);
  wait_for_previous_grid();  // x (and out) belong to the previous kernels
  std::int64_t pf = kBatchBytes * (1 + kPrefetchBatches) + 128 * lane;
  int c = lane;
  for (; c + 32 * (kUnroll - 1) < n_chunks; c += 32 * kUnroll, pf += kBatchBytes) {
    if (lane < kBatchBytes / 128 && pf < row_bytes) prefetch_l2(wbytes + pf);
    uint4 wv[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wv[u] = load_stream(wrow + c + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      float wf[8];
      unpack8(wv[u], wf);
#pragma unroll
      for (int t = 0; t < T; ++t) {
        float xf[8];
        load_x8(x + std::int64_t(t) * K, c + 32 * u, xf);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[t] = fmaf(wf[i], xf[i], acc[t]);
      }
    }
  }
  for (; c < n_chunks; c += 32) {
    float wf[8];
    unpack8(load_stream(wrow + c), wf);
#pragma unroll
    for (int t = 0; t < T; ++t) {
      float xf[8];
      load_x8(x + std::int64_t(t) * K, c, xf);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[t] = fmaf(wf[i], xf[i], acc[t]);
    }
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
    const float r = warp_sum(acc[t]);
    if (lane == 0) {
      const float b = bias ? __bfloat162float(bias[n]) : 0.f;
      out[std::int64_t(t) * N + n] = from_f32<TO>(r + b);
    }
  }
}


template <int T>
Status launch_rows(void* out, DType out_t, const void* x, DType x_t, const bf16* w, const bf16* bias, int N, int K,
                   cudaStream_t s) {
  return dispatch_act(out_t, [&](auto to) {
    return dispatch_act(x_t, [&](auto tx) {
      using TO = typename decltype(to)::type;
      using TX = typename decltype(tx)::type;
      const int blocks = ceil_div(N, kWarpsPerBlock);
      TO* o = static_cast<TO*>(out);
      const TX* xx = static_cast<const TX*>(x);
      const bool pf = l2_prefetch_enabled();
      if (pdl_enabled()) {
        // Launched as a programmatic dependent of the previous kernel: its blocks start (and stream W into L2)
        // while that kernel drains; gemv_kernel waits for it before reading x.
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(unsigned(blocks));
        cfg.blockDim = dim3(kWarpsPerBlock * 32);
        cfg.stream = s;
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        if (cudaLaunchKernelEx(&cfg, gemv_kernel<T, TX, TO>, o, xx, w, bias, N, K, pf) == cudaSuccess)
          return Status{};
        (void)cudaGetLastError();  // not supported here: plain launch
      }
      gemv_kernel<T, TX, TO><<<blocks, kWarpsPerBlock * 32, 0, s>>>(o, xx, w, bias, N, K, pf);
      PIXTRAL_CUDA_LAUNCH_CHECK(gemv_kernel);
      return Status{};
    });
  });
}

}  // namespace

bool gemv_supported(std::int64_t T, std::int64_t K, const void* x, DType x_t, const void* w) {
  if (T < 1 || T > kGemvMaxRows || K % 8 != 0 || K > (std::int64_t(1) << 30)) return false;
  if (x_t != DType::f32 && x_t != DType::bf16) return false;
  return reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && reinterpret_cast<std::uintptr_t>(w) % 16 == 0;
}

Status launch_gemv(void* out, DType out_t, const void* x, DType x_t, const bf16* w, const bf16* bias,
                   std::int64_t T, std::int64_t N, std::int64_t K, cudaStream_t s) {
  if (!gemv_supported(T, K, x, x_t, w))
    return Status(ErrorCode::internal, "launch_gemv: unsupported shape/alignment (caller must check)");
  switch (T) {
    case 1: return launch_rows<1>(out, out_t, x, x_t, w, bias, int(N), int(K), s);
    case 2: return launch_rows<2>(out, out_t, x, x_t, w, bias, int(N), int(K), s);
    case 3: return launch_rows<3>(out, out_t, x, x_t, w, bias, int(N), int(K), s);
    default: return launch_rows<4>(out, out_t, x, x_t, w, bias, int(N), int(K), s);
  }
}

// PIXTRAL_CUDA_PREFETCH=1 turns the L2 prefetch on, PIXTRAL_CUDA_PDL=0 the programmatic dependent launch (A/B in
// the kernel lab); read once.
static bool env_enabled(const char* name) {
  const char* e = std::getenv(name);
  return !(e && e[0] == '0');
}
bool l2_prefetch_enabled() {
  // Opt-in (PIXTRAL_CUDA_PREFETCH=1): measured on an H200 (2026-11-27, page-QA decode) it cost 0.94 ms/token
  // (8.21 vs 7.27 ms), the extra L2 traffic outweighing the deeper queue.
  static const char* e = std::getenv("PIXTRAL_CUDA_PREFETCH");
  static const bool on = e && e[0] == '1';
  return on;
}
bool pdl_enabled() {
  static const bool on = env_enabled("PIXTRAL_CUDA_PDL");
  return on;
}

}  // namespace pixtral::cuda
