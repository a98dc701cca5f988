// SPDX-License-Identifier: Apache-2.0
// GEMM lab (not a test): the prefill matrix products of Pixtral-12B (decoder and vision encoder shapes) through
// cublasGemmEx as CudaBackend::gemm calls it, next to the best of cuBLASLt's heuristic algorithms for the same
// problem, at the prefill chunk sizes the session uses (2 × 2112 rows for the 4193-token page-QA prompt) and at
// one 4193-row chunk. Prints TFLOP/s per shape and the per-layer / 40-layer totals, so a prefill's GEMM time
// can be read against the card's bf16 rate (the largest square GEMM here) without profiling the whole run.
// Usage: pixtral_gemm_lab [reps=20]
// ref: cuBLAS docs, cublasLtMatmulAlgoGetHeuristic / cublasLtMatmul (heuristic search, workspace).
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "lab_common.h"

#define GL_BLAS(expr)                                                                               \
  do {                                                                                              \
    int s_ = int(expr);                                                                             \
    if (s_ != 0) {                                                                                  \
      std::fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #expr, s_);         \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)

namespace {

__global__ void fill(__nv_bfloat16* p, std::size_t n, unsigned seed) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ (seed * 0x9E3779B9u);
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    const float u = float(h & 0xffff) / 65536.f - 0.5f;
    p[i] = __float2bfloat16_rn(u == 0.f ? 0.25f : u);
  }
}

struct Shape {
  const char* name;
  int N, K;
  int per_layer;  // how many times a layer runs it
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(3, std::atoi(argv[1])) : 20;
  cudaStream_t s;
  LAB_CHECK(cudaStreamCreate(&s));
  cublasHandle_t blas;
  GL_BLAS(cublasCreate(&blas));
  GL_BLAS(cublasSetStream(blas, s));
  cublasLtHandle_t lt;
  GL_BLAS(cublasLtCreate(&lt));
  const std::size_t ws_bytes = 32u << 20;  // CudaBackend's cuBLAS workspace
  void* ws;
  LAB_CHECK(cudaMalloc(&ws, ws_bytes));
  GL_BLAS(cublasSetWorkspace(blas, ws, ws_bytes));
  cudaDeviceProp prop;
  LAB_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("GEMM lab — %s, %d SMs\n", prop.name, prop.multiProcessorCount);

  const std::size_t max_elems = std::size_t(28672) * 14336;
  __nv_bfloat16 *w, *x, *y;
  LAB_CHECK(cudaMalloc(&w, max_elems * 2));
  LAB_CHECK(cudaMalloc(&x, std::size_t(8192) * 14336 * 2));
  LAB_CHECK(cudaMalloc(&y, std::size_t(8192) * 28672 * 2));
  fill<<<2048, 256, 0, s>>>(w, max_elems, 1);
  fill<<<2048, 256, 0, s>>>(x, std::size_t(8192) * 14336, 2);
  LAB_CHECK(cudaStreamSynchronize(s));

  const float alpha = 1.f, beta = 0.f;
  // out[T, N] = x[T, K] · W[N, K]ᵀ, column-major view as CudaBackend::gemm: outᵀ (N × T) = Wᵀᵀ · xᵀ.
  auto gemm_ex = [&](int T, int N, int K) {
    GL_BLAS(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &alpha, w, CUDA_R_16BF, K, x, CUDA_R_16BF, K,
                         &beta, y, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  // The best of cuBLASLt's heuristic candidates for the same problem (timed here, as a session could at load).
  auto lt_best = [&](int T, int N, int K, int* n_algos) {
    cublasLtMatmulDesc_t op;
    GL_BLAS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    GL_BLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    GL_BLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    GL_BLAS(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K));
    GL_BLAS(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, T, K));
    GL_BLAS(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, T, N));
    cublasLtMatmulPreference_t pref;
    GL_BLAS(cublasLtMatmulPreferenceCreate(&pref));
    GL_BLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                 sizeof ws_bytes));
    cublasLtMatmulHeuristicResult_t res[16];
    int found = 0;
    GL_BLAS(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, lc, pref, 16, res, &found));
    *n_algos = found;
    float best = 1e30f;
    for (int i = 0; i < found; ++i) {
      if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
      const float t = median_ms(s, reps, [&] {
        GL_BLAS(cublasLtMatmul(lt, op, &alpha, w, la, x, lb, &beta, y, lc, y, lc, &res[i].algo, ws, ws_bytes, s));
      });
      best = std::min(best, t);
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    return best;
  };

  {
    const int n = 8192;
    const float t = median_ms(s, reps, [&] { gemm_ex(n, n, n); });
    std::printf("rate: %d^3 GemmEx %.3f ms = %.0f TFLOP/s\n", n, t, 2.0 * n * n * double(n) / (t * 1e-3) / 1e12);
  }
  const Shape dec[] = {{"wq", 4096, 5120, 1},     {"wk|wv", 1024, 5120, 2}, {"wqkv (fused)", 6144, 5120, 0},
                       {"wo", 5120, 4096, 1},     {"w1|w3", 14336, 5120, 2}, {"w13 (fused)", 28672, 5120, 0},
                       {"w2", 5120, 14336, 1}};
  const Shape vis[] = {{"v.wq|wk|wv", 1024, 1024, 3}, {"v.wqkv (fused)", 3072, 1024, 0}, {"v.wo", 1024, 1024, 1},
                       {"v.w1|w3", 4096, 1024, 2},    {"v.w13 (fused)", 8192, 1024, 0}, {"v.w2", 1024, 4096, 1}};
  struct Run {
    const char* what;
    const Shape* shapes;
    int n_shapes, T, chunks, layers;
  };
  const Run runs[] = {{"decoder, 2 chunks of 2112 rows", dec, 7, 2112, 2, 40},
                      {"decoder, 1 chunk of 4193 rows", dec, 7, 4193, 1, 40},
                      {"vision, 4096 patches", vis, 6, 4096, 1, 24}};
  for (const Run& r : runs) {
    std::printf("\n%s (%d layers)\n%-16s %6s %6s %6s  %9s %8s  %9s %8s %5s\n", r.what, r.layers, "shape", "T", "N",
                "K", "GemmEx us", "TFLOP/s", "Lt best", "TFLOP/s", "algos");
    double layer_ex = 0, layer_lt = 0;
    for (int i = 0; i < r.n_shapes; ++i) {
      const Shape& sh = r.shapes[i];
      const double flops = 2.0 * r.T * double(sh.N) * sh.K;
      const float t_ex = median_ms(s, reps, [&] { gemm_ex(r.T, sh.N, sh.K); });
      int n_algos = 0;
      const float t_lt = lt_best(r.T, sh.N, sh.K, &n_algos);
      std::printf("%-16s %6d %6d %6d  %9.1f %8.0f  %9.1f %8.0f %5d\n", sh.name, r.T, sh.N, sh.K, t_ex * 1e3,
                  flops / (t_ex * 1e-3) / 1e12, t_lt * 1e3, flops / (t_lt * 1e-3) / 1e12, n_algos);
      layer_ex += sh.per_layer * t_ex;
      layer_lt += sh.per_layer * std::min(t_lt, t_ex);
    }
    std::printf("per layer (unfused shapes): GemmEx %.3f ms, best %.3f ms; whole prefill: %.1f ms vs %.1f ms\n",
                layer_ex, layer_lt, layer_ex * r.chunks * r.layers, layer_lt * r.chunks * r.layers);
  }
  LAB_CHECK(cudaFree(w));
  LAB_CHECK(cudaFree(x));
  LAB_CHECK(cudaFree(y));
  LAB_CHECK(cudaFree(ws));
  cublasLtDestroy(lt);
  cublasDestroy(blas);
  return 0;
}
