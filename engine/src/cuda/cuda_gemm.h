// SPDX-License-Identifier: Apache-2.0
// Prefill GEMMs (private to libpixtral_cuda.so; CUDA types allowed here): out[T, N] = x[T, K] · W[N, K]ᵀ with bf16
// operands, fp32 accumulation and a bf16 or f32 output, as CudaBackend::gemm asks for it.
//  - gemm_ex: cublasGemmEx (the cuBLAS handle's own heuristic), the path below kGemmTuneMinRows rows.
//  - gemm_tuned: from kGemmTuneMinRows rows, a cuBLASLt algorithm timed once per (device, N, K, output type,
//    T bucket = the next power of two ≥ T, pointer alignment): on the first call of a bucket, up to 8 heuristic
//    candidates that are deterministic (no split-K, or split-K reduced in fp32 in a separate step) and GemmEx are
//    timed on the caller's own buffers (1 warm + 2 timed runs each, min), the winner is cached for the life of the
//    process and the real product runs after, with it. A later T of the same bucket runs the cached algorithm after
//    cublasLtMatmulAlgoCheck for that exact T (cached; GemmEx where the check fails). Never tunes while the stream
//    is being captured (GemmEx then, until a bucket has its choice).
// Choice stability: the first candidate in preference order (GemmEx, then cuBLASLt's heuristic order) whose time is
// within 3 % of the fastest wins, so near-ties keep the same answer from run to run; two processes can still pick
// different algorithms where timings differ by about 3 % (so bits can differ between processes, never within one).
// Environment (read once per process): PIXTRAL_CUDA_GEMM_TUNE=0 disables tuning (GemmEx everywhere, for A/B),
// =lt tunes without GemmEx among the candidates (tests, A/B); PIXTRAL_CUDA_GEMM_LOG=1 prints each bucket's timings
// and choice to stderr.
// ref: cuBLAS docs, cublasLtMatmulAlgoGetHeuristic / cublasLtMatmulAlgoCheck / cublasLtMatmul;
//      engine/src/cuda/lab/gemm_lab.cu (the measurements behind this).
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/common.cuh"

namespace pixtral::cuda {

/// From this many rows the prefill GEMM goes through gemm_tuned. Below it the products are short (≤ a few tens of
/// µs) and cuBLAS's own choice is within noise of the best (gemm_lab.cu); tuning each small T would cost more.
inline constexpr std::int64_t kGemmTuneMinRows = 512;

/// What the GEMMs run on: the backend's handle (stream and workspace already set), its stream and workspace.
struct GemmContext {
  cublasHandle_t blas = nullptr;
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;
  int device = 0;
};

enum class GemmTuneMode { off, on, lt_only };
/// PIXTRAL_CUDA_GEMM_TUNE, read on the first call.
GemmTuneMode gemm_tune_mode();

/// out[T, N] (bf16 or f32) = x[T, K] · w[N, K]ᵀ through cublasGemmEx.
Status gemm_ex(const GemmContext& ctx, void* out, DType out_t, const bf16* x, const bf16* w, std::int64_t T,
               std::int64_t N, std::int64_t K);
/// The same product through the tuned cuBLASLt algorithm of its bucket (see the file comment); GemmEx where
/// tuning is off, the stream is capturing before the bucket was tuned, or no candidate qualifies.
Status gemm_tuned(const GemmContext& ctx, void* out, DType out_t, const bf16* x, const bf16* w, std::int64_t T,
                  std::int64_t N, std::int64_t K);

}  // namespace pixtral::cuda
