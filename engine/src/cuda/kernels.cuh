// SPDX-License-Identifier: Apache-2.0
// Host launchers of the CUDA backend's kernels (one family per .cu file). Pointers are device pointers; dtypes
// say how each buffer is stored (activations f32 or bf16, weights bf16); math is fp32 inside every kernel.
// Each launcher checks its launch and returns a Status; none synchronises.
#pragma once

#include <cstdint>
#include <mutex>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/cuda_ext.h"

namespace pixtral::cuda {

// ---- per-device launch settings -----------------------------------------------------------------------------
/// A host-side fact about (the current device, key, tag) computed once — the dynamic-shared-memory opt-in and the
/// occupancy checks that depend on it hold for one device only (cudaFuncSetAttribute applies to the current
/// device), so a process that uses a second GPU computes them again there. Thread-safe.
template <class F>
bool per_device_once(const void* key, long tag, F&& compute) {
  static std::mutex mu;  // one per F: each call site's own table
  static std::vector<std::tuple<int, const void*, long, bool>> memo;
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess) (void)cudaGetLastError();
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [d, k, t, v] : memo)
    if (d == dev && k == key && t == tag) return v;
  const bool v = compute();
  memo.emplace_back(dev, key, tag, v);
  return v;
}

/// Whether the current device has the Tensor Memory Accelerator (sm_90+; false where it cannot be read).
inline bool device_has_tma() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return major >= 9;
}

/// Whether `kernel`'s image on the current device is sm_90+ code compiled from sm_90+ source: a build for older
/// architectures only reaches a newer GPU through its PTX, JIT-compiled there into sm_90 code (binaryVersion 90) from
/// source whose TMA copies were compiled out (tma.cuh: a trap), so ptxVersion must say 90 too. Once per device and
/// kernel.
template <class K>
bool sm90_image(K* kernel) {
  return per_device_once(reinterpret_cast<const void*>(kernel), 0, [&] {
    cudaFuncAttributes fa{};
    if (cudaFuncGetAttributes(&fa, kernel) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return fa.binaryVersion >= 90 && fa.ptxVersion >= 90;
  });
}

/// Lets `kernel` use `bytes` of dynamic shared memory on the current device (once per device and kernel).
template <class K>
Status allow_dynamic_smem(K* kernel, std::size_t bytes, const char* what) {
  cudaError_t err = cudaSuccess;
  const bool ok = per_device_once(reinterpret_cast<const void*>(kernel), long(bytes), [&] {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
    if (err != cudaSuccess) (void)cudaGetLastError();
    return err == cudaSuccess;
  });
  if (ok) return {};
  return Status(ErrorCode::internal, std::string("cuda ") + what + ": this GPU refused " + std::to_string(bytes) +
                                         " bytes of shared memory per block" +
                                         (err != cudaSuccess ? std::string(" (") + cudaGetErrorString(err) + ")" : ""));
}

// ---- kernels_elementwise.cu ------------------------------------------------------------------------------
/// dst[n] = src[n] converted (src may be f32, bf16 or f16; dst f32 or bf16), rounding to nearest even.
Status launch_convert(void* dst, DType dst_t, const void* src, DType src_t, std::int64_t n, cudaStream_t s);
/// out[T, D] = table[ids[t], :]; ids outside [0, vocab) write NaN rows (the caller validated them on the host).
Status launch_embed(void* out, DType out_t, const bf16* table, const int* ids, std::int64_t T, std::int64_t D,
                    std::int64_t vocab, cudaStream_t s);
/// out[T, D] = w ⊙ x / sqrt(mean(x²) + eps). out may alias x.
Status launch_rms_norm(void* out, DType out_t, const void* x, DType x_t, const bf16* w, std::int64_t T,
                       std::int64_t D, float eps, cudaStream_t s);
/// h[T, D] += delta; out = rms_norm(h) computed from h as stored (rounded to h's dtype).
Status launch_add_rms_norm(void* h, DType h_t, const void* delta, DType delta_t, void* out, DType out_t,
                           const bf16* w, std::int64_t T, std::int64_t D, float eps, cudaStream_t s);
/// h[n] += delta[n]
Status launch_add(void* h, DType h_t, const void* delta, DType delta_t, std::int64_t n, cudaStream_t s);
/// out[n] = silu(gate[n]) · up[n]
Status launch_silu_mul(void* out, DType out_t, const void* gate, DType gate_t, const void* up, DType up_t,
                       std::int64_t n, cudaStream_t s);
/// x = 0.5 x (1 + erf(x / √2))
Status launch_gelu(void* x, DType t, std::int64_t n, cudaStream_t s);
/// dst[rows[i], :] = src[i, :] for i < n (cols each)
Status launch_scatter_rows(void* dst, DType dst_t, const void* src, DType src_t, const int* rows, std::int64_t n,
                           std::int64_t cols, cudaStream_t s);
/// out[T, N] += bias[N]
Status launch_bias_add(void* out, DType out_t, const bf16* bias, std::int64_t T, std::int64_t N, cudaStream_t s);
/// One block on stream s asks L2 (cp.async.bulk.prefetch.L2, 32 KB requests) for rows [0, min(*pos, rows)) of two
/// row-major caches of row_bytes a row, at most max_bytes of the two together: a hint, nothing waits for it; nothing
/// is launched (and nothing fails) without sm_90 code, with row_bytes not a positive multiple of 16 or a base not
/// 16-byte aligned. PIXTRAL_CUDA_KV_L2_SIDE (CudaBackend::prefetch_kv_side; kernels_kv_prefetch.cu).
Status launch_kv_l2_prefetch(const void* k, const void* v, std::int64_t row_bytes, std::int64_t rows,
                             std::int64_t max_bytes, const int* pos, cudaStream_t s);
/// RoPE in place on x[T, n_heads * head_dim]. Pair m (< head_dim/2) rotates by float(pos[t]) · freq[m] where pos is
/// pos_a for m < split and pos_b otherwise (1-D RoPE: split = head_dim/2). halves: pair m = dims (m, m + D/2);
/// else (interleaved) dims (2m, 2m + 1).
Status launch_rope(void* x, DType t, std::int64_t T, int n_heads, int head_dim, const int* pos_a, const int* pos_b,
                   const float* freq, int split, bool halves, cudaStream_t s);
/// One decode row's RoPE of q | k (q in place, k into row *pos of k_cache) and v copied to row *pos of v_cache.
Status launch_rope_append(void* qkv, DType t, void* k_cache, void* v_cache, DType cache_t, const int* pos, int nh,
                          int nkv, int head_dim, const float* freq, bool halves, cudaStream_t s);
/// out[(H/P)*(W/P), C*P*P] (bf16) = patches of the fp32 CHW image, each pixel rounded to bf16.
Status launch_im2col(bf16* out, const void* pixels, DType pixels_t, int C, int H, int W, int P, cudaStream_t s);

// ---- kernels_gemv.cu -------------------------------------------------------------------------------------
/// Largest row count the batch GEMV path handles (one pass over W for all rows).
inline constexpr int kGemvMaxRows = 4;
/// Whether launch_gemv can run this problem (K a multiple of 8, 16-byte aligned W rows and x).
bool gemv_supported(std::int64_t T, std::int64_t K, const void* x, DType x_t, const void* w);
/// out[T, N] = x[T, K] · W[N, K]ᵀ (+ bias[N]) for T ≤ kGemvMaxRows, streaming W once with 16-byte loads.
Status launch_gemv(void* out, DType out_t, const void* x, DType x_t, const bf16* w, const bf16* bias,
                   std::int64_t T, std::int64_t N, std::int64_t K, cudaStream_t s);
/// h[T, N] += x[T, K] · W[N, K]ᵀ with the product rounded to h's dtype first (gemv_modes.cuh, residual mode): the
/// bits of launch_gemv into a tmp of h's dtype followed by launch_add, in one kernel.
Status launch_gemv_add(void* h, DType h_t, const void* x, DType x_t, const bf16* w, std::int64_t T, std::int64_t N,
                       std::int64_t K, cudaStream_t s);
/// out[T, F] = silu(x · w1ᵀ) ⊙ (x · w3ᵀ), w13 = [w1; w3] (2F rows of K): each warp walks row f of w1 and of w3
/// (the bits of launch_gemv into [g | u] followed by launch_silu_mul).
Status launch_gemv_silu(void* out, DType out_t, const void* x, DType x_t, const bf16* w13, std::int64_t T,
                        std::int64_t F, std::int64_t K, cudaStream_t s);
/// One decode row: qkv = x · wqkvᵀ with RoPE of q | k and the KV append fused (gemv_modes.cuh, rope mode): q rotated
/// into qkv, k rotated and v copied into row *pos of the caches (cache_t must equal t); the bits of launch_gemv
/// followed by launch_rope_append. qkv's k and v parts are left unwritten.
Status launch_gemv_rope(void* qkv, DType t, const void* x, DType x_t, const bf16* wqkv, std::int64_t K, void* k_cache,
                        void* v_cache, DType cache_t, const int* pos, int nh, int nkv, int head_dim,
                        const float* freq, bool halves, cudaStream_t s);

// ---- kernels_attention.cu (dispatch + generic), kernels_flash.cu, kernels_decode_attention.cu ---------------
/// Layout of the device decode-state int buffer: see cuda_ext.h.
using ops::kDecodeStateDraw;
using ops::kDecodeStateInts;
using ops::kDecodeStateMaxRows;
using ops::kDecodeStateNKv;
using ops::kDecodeStatePosition;
using ops::kDecodeStatePositions;
using ops::kDecodeStateTokens;
using ops::kMaxSampledInFlight;
/// Which attention kernel runs: automatic picks decode (n_q ≤ kDecodeAttentionMaxRows), else flash (tensor
/// cores), else generic, each only where it supports the launch; the others force one (tests, kernel lab).
enum class AttentionPath { automatic, generic, flash, decode };
inline constexpr int kDecodeAttentionMaxRows = 4;
struct AttentionLaunch {
  void* out = nullptr;  // [n_q, n_heads * head_dim]
  DType out_t = DType::bf16;
  const void* q = nullptr;  // [n_q, n_heads * head_dim]
  const void* k = nullptr;  // [n_kv, n_kv_heads * head_dim]
  const void* v = nullptr;  // [n_kv, n_kv_heads * head_dim]
  DType q_t = DType::bf16, k_t = DType::bf16, v_t = DType::bf16;
  std::int64_t n_q = 0, n_kv = 0;
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  float scale = 0;
  const int2* key_range = nullptr;  // [n_q] device: query i sees keys [x, y)
  /// Instead of key_range (graph replay): query i sees keys [0, dev_state[kDecodeStatePosition] + i + 1); then
  /// key_lo_min = 0 and key_hi_max = the rows k/v may hold (capacity), which sizes the grid.
  const int* dev_state = nullptr;
  int key_lo_min = 0, key_hi_max = 0;  // over all queries (host-known), bounds the work
  AttentionPath path = AttentionPath::automatic;
  float* partial = nullptr;  // split-KV workspace (see attention_workspace_floats)
  std::int64_t partial_floats = 0;
  int max_smem = 48 * 1024;  // opt-in shared memory per block on this device
  int smem_per_sm = 100 * 1024;  // shared memory per SM on this device
  int n_sms = 132;
  /// The decode kernel's splits sized for 2.5 blocks an SM instead of 3 (41 splits instead of 49 at 8 KV heads on
  /// 132 SMs): set for the int4 decode, whose GEMVs' blocks (74-110 KB of shared memory) share the SMs with the
  /// attention's under programmatic dependent launch. H200, page-QA decode at 4193 keys, same run: 49 splits 2.691
  /// ms/token, 41 splits 2.672 (and 2.692 → 2.670 for caps of 40 and 36 in another run); int8 was 2-4 % slower
  /// with fewer splits (PERF_NOTES v19 6., v20 4.).
  bool narrow_wave = false;
};
/// The kernel launch_attention runs for `a` (never automatic; generic when the requested one cannot run it).
AttentionPath attention_path(const AttentionLaunch& a);
/// Floats of split-KV workspace the launch will need (0 when it needs none).
std::int64_t attention_workspace_floats(const AttentionLaunch& a);
Status launch_attention(const AttentionLaunch& a, cudaStream_t s);
/// Tensor-core prefill (kernels_flash.cu): bf16 q/k/v, head_dim 64/128, 16-byte aligned.
bool flash_attention_supported(const AttentionLaunch& a);
std::size_t flash_attention_smem_bytes(int head_dim);
Status launch_flash_attention(const AttentionLaunch& a, cudaStream_t s);
/// Split-KV decode (kernels_decode_attention.cu): n_q ≤ kDecodeAttentionMaxRows, bf16, head_dim 64/128, G ≤ 4.
bool decode_attention_supported(const AttentionLaunch& a);
std::int64_t decode_attention_workspace_floats(const AttentionLaunch& a);
Status launch_decode_attention(const AttentionLaunch& a, cudaStream_t s);

/// Launch switches read once from the environment (defined in kernels_gemv.cu): PIXTRAL_CUDA_PREFETCH=1 turns the
/// L2 prefetch of the GEMV kernels on (off by default), PIXTRAL_CUDA_PDL=0 turns programmatic dependent launch off.
bool l2_prefetch_enabled();
bool pdl_enabled();

/// Launches `kernel` as a programmatic dependent of the previous kernel on `s` (the kernel calls
/// wait_for_previous_grid before touching that kernel's outputs) with `smem` bytes of dynamic shared memory; a
/// plain launch where PDL is off or refused.
template <class... KArgs, class... Args>
void launch_dependent_smem(void (*kernel)(KArgs...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t s,
                           Args&&... args) {
  if (pdl_enabled()) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    if (cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...) == cudaSuccess) return;
    (void)cudaGetLastError();  // not supported here: plain launch
  }
  kernel<<<grid, block, smem, s>>>(std::forward<Args>(args)...);
}

/// launch_dependent_smem without dynamic shared memory.
template <class... KArgs, class... Args>
void launch_dependent(void (*kernel)(KArgs...), dim3 grid, dim3 block, cudaStream_t s, Args&&... args) {
  launch_dependent_smem(kernel, grid, block, 0, s, std::forward<Args>(args)...);
}

}  // namespace pixtral::cuda
