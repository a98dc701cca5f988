// SPDX-License-Identifier: Apache-2.0
// Launchers of the weight-only quantization kernels (kernels_quant.cu; formats in core/quant.h). Pointers are
// device pointers; none synchronises.
#pragma once

#include <cstdint>

#include "core/quant.h"
#include "cuda/common.cuh"
#include "cuda/gemv_modes.cuh"
#include "ops/backend.h"

namespace pixtral::cuda {

/// Device bytes of a quantized [rows, cols] weight: the values (padded to 256 bytes), then the fp32 scales.
std::size_t quantized_values_bytes(quant::Format f, std::int64_t rows, std::int64_t cols);
std::size_t quantized_alloc_bytes(quant::Format f, std::int64_t rows, std::int64_t cols);

/// Quantize w[n, K] (bf16) into q (n · row_bytes) and scales (n · scales_per_row) — bit-identical to
/// quant::quantize_rows on the same bf16 values.
Status launch_quantize(std::uint8_t* q, float* scales, const bf16* w, std::int64_t n, std::int64_t K,
                       quant::Format f, cudaStream_t s);
/// out[n, K] (bf16) = dequantized rows (value q · scale rounded to bf16).
Status launch_dequantize(bf16* out, const std::uint8_t* q, const float* scales, std::int64_t n, std::int64_t K,
                         quant::Format f, cudaStream_t s);

/// Largest row count of the quantized GEMV (one pass over W for all rows).
inline constexpr int kQGemvMaxRows = 4;
/// Whether launch_qgemv can run this problem (16-byte aligned rows of q and x, K % 16 == 0 (int8) / % 128 (int4)).
bool qgemv_supported(std::int64_t T, std::int64_t K, const void* x, DType x_t, const void* q, quant::Format f);
/// out[T, N] = x[T, K] · dequant(W)[N, K]ᵀ (+ bias) reading int8/int4 with 16-byte loads, dequantizing in
/// registers, fp32 accumulation.
Status launch_qgemv(void* out, DType out_t, const void* x, DType x_t, const std::uint8_t* q, const float* scales,
                    quant::Format f, const bf16* bias, std::int64_t T, std::int64_t N, std::int64_t K,
                    cudaStream_t s);
/// launch_gemv_add (h += x · Wᵀ, the product rounded to h's dtype first) for a quantized W.
Status launch_qgemv_add(void* h, DType h_t, const void* x, DType x_t, const std::uint8_t* q, const float* scales,
                        quant::Format f, std::int64_t T, std::int64_t N, std::int64_t K, cudaStream_t s);
/// launch_gemv_rope for a quantized [wq; wk; wv].
Status launch_qgemv_rope(void* qkv, DType t, const void* x, DType x_t, const std::uint8_t* q, const float* scales,
                         quant::Format f, std::int64_t K, void* k_cache, void* v_cache, DType cache_t, const int* pos,
                         int nh, int nkv, int head_dim, const float* freq, bool halves, cudaStream_t s);
/// out[T, F] = silu(x · w1ᵀ) ⊙ (x · w3ᵀ) for a quantized w13 = [w1; w3] (2F rows), as launch_gemv_silu.
Status launch_qgemv_silu(void* out, DType out_t, const void* x, DType x_t, const std::uint8_t* q, const float* scales,
                         quant::Format f, std::int64_t T, std::int64_t F, std::int64_t K, cudaStream_t s);

/// Forgets which q4tma GEMV followed which (the next GEMV's L2 prefetch): called whenever a weight is freed.
void forget_q4tma_successors();
/// Gives back the q4tma counter slots (dynamic tiles) a stream took and forgets its last launch (the successor
/// hints): called before the stream is destroyed, once its work is done.
void forget_q4tma_stream(cudaStream_t s);

/// The int4 × bf16 GEMV on the tensor cores (kernels_q4mma.cu) for T ≤ 4 rows of x in @p mode (plain, silu, or rope
/// with T = 1, or residual; plain and residual take up to 8). Sets *launched; nothing is launched (and the caller runs
/// the scalar kernel) where it does not run: PIXTRAL_CUDA_INT4_MMA=0, or fewer than 2 of its blocks fit an SM (GPUs
/// with 100 KB of shared memory an SM).
Status launch_q4mma(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                    cudaStream_t s, bool* launched);
/// The int4 × bf16 GEMV for one x row through the Tensor Memory Accelerator (kernels_q4tma.cu: a persistent,
/// warp-specialized kernel with q4mma's arithmetic, the same bits), in every mode. Sets *launched; nothing is
/// launched (the caller goes on to q4mma) where it does not run: T ≠ 1, PIXTRAL_CUDA_Q4TMA=0, K / 128 not a multiple
/// of 8 or over 256, rope with halves pairs and head_dim / 2 not a multiple of 16, no sm_90 code or no tensor-map
/// encoder, or a map the driver refuses.
Status launch_q4tma(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                    cudaStream_t s, bool* launched);
/// launch_q4tma (one x row, rope or silu mode, bf16 out) with the decode RMSNorm folded in: x = rms_norm(h) with
/// norm_w, computed by every block with the norm kernel's bits (row_norm_kernel) and written to xn; nothing launched
/// where it does not run (launch_q4tma's conditions, K > 8192, PIXTRAL_CUDA_FOLD_NORM=0): the caller runs the norm
/// and the GEMV.
Status launch_q4tma_normed(bf16* out, const bf16* h, const bf16* norm_w, bf16* xn, float eps, const std::uint8_t* q,
                           const float* scales, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                           cudaStream_t s, bool* launched);
/// The int8 twin (kernels_q8tma.cu: the scalar kernel's arithmetic, the same bits; opt-in, PIXTRAL_CUDA_Q8TMA=1: slower
/// than the scalar kernel so far): one x row, every mode; nothing launched (the scalar kernel runs) where it does not:
/// T ≠ 1, not opted in, K < 1024 or not a multiple of 16, rope with halves pairs and head_dim / 2 not a multiple of
/// 8, no sm_90 code or no tensor-map encoder.
Status launch_q8tma(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    const bf16* bias, int T, int N, int items, int K, GemvMode mode, const RopeAppendArgs& ra,
                    cudaStream_t s, bool* launched);
/// The int8 one-row GEMV (plain or residual mode, bf16 or f32 out) with each row of K ≥ 8192 split between 2 warps,
/// two rows a warp (kernels_q8split.cu; PIXTRAL_CUDA_Q8_SPLIT, read at every launch: 1 = off, 2 | 4 | 2p | 4p): other
/// bits than the scalar kernel's, the same in both modes. Sets *launched; nothing launched (the scalar kernel runs)
/// where it does not apply.
Status launch_q8split(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                      const bf16* bias, int N, int K, GemvMode mode, cudaStream_t s, bool* launched);
/// Short prefills (a follow-up turn's few rows) with int4 weights: out[T, N] = x · Wᵀ (+ bias), or h += that
/// (residual: the product rounded to h's dtype first), as passes of ≤ 8 x rows through launch_q4mma — each pass
/// reads the int4 bytes once, where dequantizing to bf16 tiles for cuBLAS writes and reads 4× them. Every row has the
/// bits of a one-row launch. @p corr: device scratch of T × K / 128 floats for each row's group corrections,
/// computed once instead of by every warp of every pass (null: by every warp). Sets *launched (false: nothing
/// launched, take the other path).
Status launch_q4mma_rows(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                         const bf16* bias, std::int64_t T, int N, int K, bool residual, float* corr, cudaStream_t s,
                         bool* launched);
/// The most x rows launch_q4mma_rows is used for (above: dequantized tiles + cuBLAS, whose cost hardly depends on the
/// rows). Measured on an H200 at 34 rows (5 passes, Pixtral-12B's follow-up turn): 28.2 -> 26.9 ms to the first
/// token; a pass reads every int4 weight (6.5 GB, ≥ 1.4 ms at the read rate), more than that gain, so a sixth would
/// lose.
inline constexpr std::int64_t kQ4PassMaxRows = 40;

/// Short prefills on the tensor cores with each weight read once for all rows (kernels_qrows.cu): T x rows (bf16,
/// 16-byte aligned) for kQRowsMin(f) ≤ T ≤ kQRowsMaxRows, int8 or int4 W with K a multiple of 128; out[T, N] =
/// x · Wᵀ (+ bias) or, residual, h += that (the product rounded to h's dtype first: matmul_add's bits are matmul +
/// add's). Other bits than the GEMVs' and the passes' (each row's sums in 128-row blocks and K slices), the same on a
/// rerun and for every T that gives the same blocks an SM (H100 / H200: int8 from 49 rows one, else two), among the T
/// it takes (GPUs with 99 KB a block take int8 up to 32 rows, int4 up to 56: qrows_supported).
/// PIXTRAL_CUDA_QROWS=0: not supported (the passes, or dequantized tiles + cuBLAS; A/B).
inline constexpr std::int64_t kQRowsMaxRows = 64;
inline constexpr std::int64_t kQRowsMin(quant::Format f) {
  return f == quant::Format::int4_g128 ? 9 : kQGemvMaxRows + 1;  // int4 ≤ 8: one q4mma pass reads W once too
}
bool qrows_supported(std::int64_t T, std::int64_t N, std::int64_t K, const void* x, DType x_t, DType out_t,
                     quant::Format f);
/// Device bytes of launch_qrows's workspace for this shape: the K slices' partial sums.
std::size_t qrows_workspace_bytes(std::int64_t T, std::int64_t N, std::int64_t K, quant::Format f);
/// @p x: for int4, x as launch_q4_corrections's xb writes it (each 16-byte chunk as the MMAs' B registers); @p corr:
/// int4's group corrections ([T][K / 128], launch_q4_corrections), unused for int8; @p ws: ws_bytes of
/// device scratch, at least qrows_workspace_bytes (less: an internal error, nothing launched). Sets *launched; nothing
/// is launched (take another path) where the GPU gives a block too little shared memory for T's rows.
Status launch_qrows(void* out, DType out_t, const bf16* x, const std::uint8_t* q, const float* scales,
                    quant::Format f, const bf16* bias, const float* corr, std::int64_t T, std::int64_t N,
                    std::int64_t K, bool residual, void* ws, std::size_t ws_bytes, cudaStream_t s, bool* launched);
/// corr[T][K / 128] = −136 · Σ x over each group of 128 of each x row (bf16): the int4 MMA paths' corrections.
/// Non-null @p xb ([T][K] bf16): x with each 16-byte chunk as q4_b_fragments makes it (launch_qrows's int4 x).
Status launch_q4_corrections(const bf16* x, std::int64_t T, int K, float* corr, cudaStream_t s, bf16* xb = nullptr);
/// The ops::Weight of a quantized device allocation: q packed values, scales on the device.
inline ops::Weight quantized_weight(void* q, const float* scales, DType dtype, std::int64_t rows, std::int64_t cols,
                                    const std::string& name, quant::Format f) {
  ops::Weight w;
  w.data = q;
  w.dtype = dtype;
  w.rows = rows;
  w.cols = cols;
  w.name = name;
  w.format = f;
  w.scales = scales;
  w.group_size = f == quant::Format::int4_g128 ? quant::kInt4Group : int(cols);
  return w;
}

}  // namespace pixtral::cuda
