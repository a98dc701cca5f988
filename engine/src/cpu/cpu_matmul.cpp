// SPDX-License-Identifier: Apache-2.0
// matmul: out[T, N] = x[T, K] · W[N, K]ᵀ (+ bias), fp32 accumulation, W read from the mmap in its stored dtype.
// Decode (T ≤ kSmallT): W streamed once, 4 rows at a time, bf16 → fp32 in registers (memory bound).
// Prefill: work items = (tile of nb W rows) × (chunk of kChunkT x rows); each worker converts its W tile to fp32
// once into its scratch and multiplies with OpenBLAS sgemm called single-threaded, or with the blocked fallback.
// Tile and chunk boundaries depend only on (T, K, N), never on the thread count, so results are bit-identical
// for any number of threads. ref: PyTorch nn.Linear (x @ W.T + b); llm.c matmul_forward.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

#include "cpu/cpu_kernels.h"
#include "cpu/cpu_simd.h"

#if defined(PIXTRAL_HAVE_BLAS)
#include <cblas.h>
#endif

namespace pixtral::cpu {

namespace {

constexpr std::int64_t kRowBlock = 16;    // GEMV: W rows per work item (a multiple of 4)
constexpr std::int64_t kChunkT = 256;     // prefill: x rows per work item
constexpr std::int64_t kTileFloats = std::int64_t(1) << 20;  // prefill: ≈ 4 MiB fp32 W tile per worker

#if defined(PIXTRAL_HAVE_BLAS)
std::atomic<bool> g_use_blas{true};
#else
std::atomic<bool> g_use_blas{false};
#endif

// ---- W row loaders: load(n, k) gives W[n, k..k+8) as fp32, at(n, k) one element ------------------------------
struct Bf16Rows {
  const unsigned char* base;
  std::int64_t K;
  PIXTRAL_INLINE v8f load(std::int64_t n, std::int64_t k) const { return load8_bf16(base + 2 * (n * K + k)); }
  PIXTRAL_INLINE float at(std::int64_t n, std::int64_t k) const {
    std::uint16_t h;
    std::memcpy(&h, base + 2 * (n * K + k), 2);
    return bf16_to_f32(h);
  }
};
struct F32Rows {  // rows n_base.. of an fp32 matrix (any alignment)
  const unsigned char* base;
  std::int64_t K;
  std::int64_t n_base;
  PIXTRAL_INLINE v8f load(std::int64_t n, std::int64_t k) const {
    v8f v;
    std::memcpy(&v, base + 4 * ((n - n_base) * K + k), sizeof v);
    return v;
  }
  PIXTRAL_INLINE float at(std::int64_t n, std::int64_t k) const {
    float f;
    std::memcpy(&f, base + 4 * ((n - n_base) * K + k), 4);
    return f;
  }
};

// ---- GEMV: W rows [n0, n1) against every row of x ------------------------------------------------------------
template <class W>
PIXTRAL_INLINE void gemv_rows(const W& w, const MatmulArgs& a, const float* bias, std::int64_t n0, std::int64_t n1) {
  const std::int64_t K = a.K, N = a.N, K8 = K & ~std::int64_t(7);
  std::int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    for (std::int64_t t = 0; t < a.T; ++t) {
      const float* xt = a.x + t * K;  // (K)
      v8f c0 = {}, c1 = {}, c2 = {}, c3 = {};
      for (std::int64_t k = 0; k < K8; k += 8) {
        const v8f xv = load8(xt + k);
        c0 += xv * w.load(n, k);
        c1 += xv * w.load(n + 1, k);
        c2 += xv * w.load(n + 2, k);
        c3 += xv * w.load(n + 3, k);
      }
      float s[4] = {hsum8(c0), hsum8(c1), hsum8(c2), hsum8(c3)};
      for (int r = 0; r < 4; ++r) {
        for (std::int64_t k = K8; k < K; ++k) s[r] += xt[k] * w.at(n + r, k);
        a.out[t * N + n + r] = bias ? s[r] + bias[n + r] : s[r];
      }
    }
  }
  for (; n < n1; ++n) {
    for (std::int64_t t = 0; t < a.T; ++t) {
      const float* xt = a.x + t * K;
      v8f c = {};
      for (std::int64_t k = 0; k < K8; k += 8) c += load8(xt + k) * w.load(n, k);
      float s = hsum8(c);
      for (std::int64_t k = K8; k < K; ++k) s += xt[k] * w.at(n, k);
      a.out[t * N + n] = bias ? s + bias[n] : s;
    }
  }
}

PIXTRAL_INLINE void gemv_range_body(const MatmulArgs& a, const float* bias, std::int64_t b0, std::int64_t b1,
                                    float* scratch) {
  for (std::int64_t b = b0; b < b1; ++b) {
    const std::int64_t n0 = b * kRowBlock, n1 = std::min(a.N, n0 + kRowBlock);
    const auto* base = static_cast<const unsigned char*>(a.w);
    switch (a.w_dtype) {
      case DType::bf16: gemv_rows(Bf16Rows{base, a.K}, a, bias, n0, n1); break;
      case DType::f32: gemv_rows(F32Rows{base, a.K, 0}, a, bias, n0, n1); break;
      case DType::f16:
        convert_rows_f32(a.w, DType::f16, n0, n1 - n0, a.K, scratch);
        gemv_rows(F32Rows{reinterpret_cast<const unsigned char*>(scratch), a.K, n0}, a, bias, n0, n1);
        break;
    }
  }
}
void gemv_range_generic(const MatmulArgs& a, const float* bias, std::int64_t b0, std::int64_t b1, float* s) {
  gemv_range_body(a, bias, b0, b1, s);
}
#if PIXTRAL_X86_DISPATCH
PIXTRAL_TARGET_AVX2 void gemv_range_avx2(const MatmulArgs& a, const float* bias, std::int64_t b0, std::int64_t b1,
                                         float* s) {
  gemv_range_body(a, bias, b0, b1, s);
}
#endif

// ---- blocked fallback: out[tt, nn] (row stride N) = x[tt, K] · wt[nn, K]ᵀ, 2×4 register blocks ---------------
// Lane sums → the canonical tail and bias. (A free always-inline function, not a lambda: a lambda would be an
// out-of-line call at -O0 and pass a 32-byte vector across differently targeted functions.)
PIXTRAL_INLINE void dot_finish(const v8f& c, const float* xr, const float* wr, std::int64_t K8, std::int64_t K,
                               const float* bias, std::int64_t j, float* o) {
  float s = hsum8(c);
  for (std::int64_t k = K8; k < K; ++k) s += xr[k] * wr[k];
  *o = bias ? s + bias[j] : s;
}

PIXTRAL_INLINE void gemm_tile_body(const float* x, std::int64_t tt, const float* wt, std::int64_t nn, std::int64_t K,
                                   float* out, std::int64_t N, const float* bias) {
  const std::int64_t K8 = K & ~std::int64_t(7);
  std::int64_t t = 0;
  for (; t + 2 <= tt; t += 2) {
    const float* x0 = x + t * K;
    const float* x1 = x0 + K;
    std::int64_t j = 0;
    for (; j + 4 <= nn; j += 4) {
      const float* w0 = wt + j * K;
      v8f c00 = {}, c01 = {}, c02 = {}, c03 = {}, c10 = {}, c11 = {}, c12 = {}, c13 = {};
      for (std::int64_t k = 0; k < K8; k += 8) {
        const v8f a0 = load8(x0 + k), a1 = load8(x1 + k);
        v8f b = load8(w0 + k);
        c00 += a0 * b;
        c10 += a1 * b;
        b = load8(w0 + K + k);
        c01 += a0 * b;
        c11 += a1 * b;
        b = load8(w0 + 2 * K + k);
        c02 += a0 * b;
        c12 += a1 * b;
        b = load8(w0 + 3 * K + k);
        c03 += a0 * b;
        c13 += a1 * b;
      }
      float* o0 = out + t * N + j;
      float* o1 = o0 + N;
      dot_finish(c00, x0, w0, K8, K, bias, j, o0);
      dot_finish(c01, x0, w0 + K, K8, K, bias, j + 1, o0 + 1);
      dot_finish(c02, x0, w0 + 2 * K, K8, K, bias, j + 2, o0 + 2);
      dot_finish(c03, x0, w0 + 3 * K, K8, K, bias, j + 3, o0 + 3);
      dot_finish(c10, x1, w0, K8, K, bias, j, o1);
      dot_finish(c11, x1, w0 + K, K8, K, bias, j + 1, o1 + 1);
      dot_finish(c12, x1, w0 + 2 * K, K8, K, bias, j + 2, o1 + 2);
      dot_finish(c13, x1, w0 + 3 * K, K8, K, bias, j + 3, o1 + 3);
    }
    for (; j < nn; ++j) {
      const float* wr = wt + j * K;
      v8f c0 = {}, c1 = {};
      for (std::int64_t k = 0; k < K8; k += 8) {
        const v8f b = load8(wr + k);
        c0 += load8(x0 + k) * b;
        c1 += load8(x1 + k) * b;
      }
      dot_finish(c0, x0, wr, K8, K, bias, j, out + t * N + j);
      dot_finish(c1, x1, wr, K8, K, bias, j, out + (t + 1) * N + j);
    }
  }
  for (; t < tt; ++t) {
    const float* x0 = x + t * K;
    for (std::int64_t j = 0; j < nn; ++j) {
      const float* wr = wt + j * K;
      v8f c = {};
      for (std::int64_t k = 0; k < K8; k += 8) c += load8(x0 + k) * load8(wr + k);
      dot_finish(c, x0, wr, K8, K, bias, j, out + t * N + j);
    }
  }
}

void gemm_tile_generic(const float* x, std::int64_t tt, const float* wt, std::int64_t nn, std::int64_t K, float* out,
                       std::int64_t N, const float* bias) {
  gemm_tile_body(x, tt, wt, nn, K, out, N, bias);
}
#if PIXTRAL_X86_DISPATCH
PIXTRAL_TARGET_AVX2 void gemm_tile_avx2(const float* x, std::int64_t tt, const float* wt, std::int64_t nn,
                                        std::int64_t K, float* out, std::int64_t N, const float* bias) {
  gemm_tile_body(x, tt, wt, nn, K, out, N, bias);
}
#endif

// W rows per prefill tile: a multiple of 16, about kTileFloats / K, in [16, 256]. Depends on K only.
std::int64_t tile_rows(std::int64_t K) {
  const std::int64_t nb = (kTileFloats / std::max<std::int64_t>(1, K)) / 16 * 16;
  return std::clamp<std::int64_t>(nb, 16, 256);
}

Status matmul_tiled(ThreadPool& pool, Workspace& ws, const MatmulArgs& a, const float* bias) {
  const std::int64_t nb = tile_rows(a.K);
  const std::int64_t n_tiles = (a.N + nb - 1) / nb;
  const std::int64_t n_chunks = (a.T + kChunkT - 1) / kChunkT;
  // f32 weights that are 4-byte aligned are used in place; everything else is converted tile by tile.
  const bool in_place = a.w_dtype == DType::f32 && reinterpret_cast<std::uintptr_t>(a.w) % 4 == 0;
  if (!in_place) PIXTRAL_RETURN_IF_ERROR(ws.reserve(pool.size(), std::size_t(nb * a.K), "matmul weight tile"));
  ws.tag.assign(std::size_t(pool.size()), -1);
  const bool avx2 = have_avx2(), use_blas = g_use_blas.load(std::memory_order_relaxed);
  (void)use_blas;
  pool.parallel_for(n_tiles * n_chunks, 1, [&](std::int64_t i0, std::int64_t i1, int worker) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t tile = i / n_chunks, chunk = i % n_chunks;
      const std::int64_t n0 = tile * nb, nn = std::min(nb, a.N - n0);
      const std::int64_t t0 = chunk * kChunkT, tt = std::min(kChunkT, a.T - t0);
      const float* wt;  // [nn, K] fp32
      if (in_place) {
        wt = static_cast<const float*>(a.w) + n0 * a.K;
      } else {
        float* buf = ws.per_worker[std::size_t(worker)].data();
        if (ws.tag[std::size_t(worker)] != tile) {
          convert_rows_f32(a.w, a.w_dtype, n0, nn, a.K, buf);
          ws.tag[std::size_t(worker)] = tile;
        }
        wt = buf;
      }
      float* out = a.out + t0 * a.N + n0;
      const float* x = a.x + t0 * a.K;
#if defined(PIXTRAL_HAVE_BLAS)
      if (use_blas) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tt), int(nn), int(a.K), 1.0f, x, int(a.K), wt,
                    int(a.K), 0.0f, out, int(a.N));
        if (bias)
          for (std::int64_t t = 0; t < tt; ++t)
            for (std::int64_t j = 0; j < nn; ++j) out[t * a.N + j] += bias[n0 + j];
        continue;
      }
#endif
#if PIXTRAL_X86_DISPATCH
      if (avx2) {
        gemm_tile_avx2(x, tt, wt, nn, a.K, out, a.N, bias ? bias + n0 : nullptr);
        continue;
      }
#endif
      gemm_tile_generic(x, tt, wt, nn, a.K, out, a.N, bias ? bias + n0 : nullptr);
    }
  });
  return Status::success();
}

}  // namespace

Status Workspace::reserve(int n_workers, std::size_t floats, std::string_view what) {
  try {
    if (per_worker.size() < std::size_t(n_workers)) per_worker.resize(std::size_t(n_workers));
    for (auto& v : per_worker)
      if (v.size() < floats) v.resize(floats);
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::out_of_memory, "cpu: cannot allocate " + std::to_string(floats * 4 * n_workers) +
                                                " bytes of scratch for " + std::string(what));
  } catch (const std::length_error&) {
    return Status(ErrorCode::out_of_memory, "cpu: scratch for " + std::string(what) + " is too large");
  }
  return Status::success();
}

Status matmul(ThreadPool& pool, Workspace& ws, const MatmulArgs& a) {
  if (a.T == 0 || a.N == 0) return Status::success();
  const float* bias = nullptr;
  if (a.bias) {
    try {
      ws.bias.resize(std::size_t(a.N));
    } catch (const std::bad_alloc&) {
      return Status(ErrorCode::out_of_memory, "cpu: matmul bias");
    }
    convert_to_f32(a.bias, a.bias_dtype, std::size_t(a.N), ws.bias.data());
    bias = ws.bias.data();
  }
  if (a.K == 0) {
    for (std::int64_t t = 0; t < a.T; ++t)
      for (std::int64_t n = 0; n < a.N; ++n) a.out[t * a.N + n] = bias ? bias[n] : 0.0f;
    return Status::success();
  }
  if (a.T > kSmallT) return matmul_tiled(pool, ws, a, bias);

  const std::int64_t n_blocks = (a.N + kRowBlock - 1) / kRowBlock;
  if (a.w_dtype == DType::f16)
    PIXTRAL_RETURN_IF_ERROR(ws.reserve(pool.size(), std::size_t(kRowBlock * a.K), "matmul f16 rows"));
  // Below ~64k multiply-adds per worker, waking threads costs more than it saves.
  const std::int64_t grain = std::max<std::int64_t>(1, 65536 / (kRowBlock * a.K * a.T));
  const bool avx2 = have_avx2();
  pool.parallel_for(n_blocks, grain, [&](std::int64_t b0, std::int64_t b1, int worker) {
    float* scratch = a.w_dtype == DType::f16 ? ws.per_worker[std::size_t(worker)].data() : nullptr;
#if PIXTRAL_X86_DISPATCH
    if (avx2) return gemv_range_avx2(a, bias, b0, b1, scratch);
#endif
    (void)avx2;
    gemv_range_generic(a, bias, b0, b1, scratch);
  });
  return Status::success();
}

bool blas_enabled() { return g_use_blas.load(std::memory_order_relaxed); }

bool set_blas_enabled(bool on) {
#if defined(PIXTRAL_HAVE_BLAS)
  g_use_blas = on;
  return true;
#else
  return !on;
#endif
}

std::string blas_init() {
#if defined(PIXTRAL_HAVE_BLAS)
  if (const char* e = std::getenv("PIXTRAL_CPU_NO_BLAS"); e && *e && *e != '0') {
    g_use_blas = false;
    return "no BLAS (PIXTRAL_CPU_NO_BLAS)";
  }
  // We call sgemm from our own workers, one tile each: OpenBLAS must not start threads of its own (that would
  // oversubscribe the cores, and its split of the sum would depend on its thread count).
  openblas_set_num_threads(1);
  return std::string("OpenBLAS ") + openblas_get_config();
#else
  return "no BLAS";
#endif
}

}  // namespace pixtral::cpu
