// SPDX-License-Identifier: Apache-2.0
// ops::Backend — the op interface the model is written against, once. The CPU backend (cpu/) defines what each
// op means in plain fp32 loops; the CUDA backend (cuda/) must match it within a per-op error budget.
// Tensors here are 2-D row-major activations [rows, cols] living on the backend's device; views of a sub-range of
// rows (e.g. a KV-cache slice) are plain pointer offsets. Weights are uploaded once and referenced by Weight.
// Conventions: matmul(out, x, W) = x · Wᵀ (+ bias), W is [out_features, in_features] as stored.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/quant.h"
#include "core/tensor.h"
#include "pixtral/status.h"

namespace pixtral::ops {

/// An activation buffer or a view into one: [rows, cols], contiguous rows, on the backend's device.
struct Tensor {
  void* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  DType dtype = DType::f32;

  std::size_t bytes() const { return std::size_t(rows * cols) * dtype_size(dtype); }
  /// Rows [r0, r0 + n) as a view.
  Tensor slice_rows(std::int64_t r0, std::int64_t n) const {
    return {static_cast<char*>(data) + std::size_t(r0 * cols) * dtype_size(dtype), n, cols, dtype};
  }
  /// The same memory seen as [rows', cols'] (rows' * cols' must equal rows * cols).
  Tensor reshaped(std::int64_t r, std::int64_t c) const { return {data, r, c, dtype}; }
};

/// Sampling settings as the backend sees them (pixtral::GenerateParams minus the stopping rules).
struct SampleParams {
  float temperature = 0.0f;  ///< ≤ 0: greedy, ties → lowest id
  float top_p = 1.0f;
  int top_k = 0;
  std::uint64_t seed = 0;
};

/// How a weight is stored (issue 6; formats defined in core/quant.h): dense in `dtype`, or weight-only int8 with
/// per-output-channel scales, or int4 in groups of 128 along the input dimension.
using WeightFormat = quant::Format;

/// A weight on the backend's device: [rows, cols] (a conv kernel [out, C, kh, kw] is viewed [out, C*kh*kw]).
/// Dense: `data` holds rows × cols values of `dtype`. Quantized (format != dense): `data` holds the packed values
/// (rows × quant::row_bytes(format, cols) bytes) and `scales` the fp32 scales (rows × quant::scales_per_row);
/// `dtype` is then the dtype the weight was quantized from (informational).
struct Weight {
  const void* data = nullptr;
  DType dtype = DType::bf16;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::string name;
  WeightFormat format = WeightFormat::dense;
  const float* scales = nullptr;  ///< quantized only: [rows, scales_per_row] fp32, on the backend's device
  int group_size = 0;             ///< quantized only: inputs per scale (int8: cols; int4: 128)

  bool quantized() const { return format != WeightFormat::dense; }
  /// Bytes of one stored row of `data`.
  std::size_t row_bytes() const {
    return quantized() ? std::size_t(quant::row_bytes(format, cols)) : std::size_t(cols) * dtype_size(dtype);
  }
  /// Rows [r0, r0 + n) as a view (no allocation of its own; `name` given to the view).
  Weight rows_view(std::int64_t r0, std::int64_t n, std::string view_name) const {
    Weight v = *this;
    v.data = static_cast<const char*>(data) + std::size_t(r0) * row_bytes();
    if (quantized()) v.scales = scales + r0 * quant::scales_per_row(format, cols);
    v.rows = n;
    v.name = std::move(view_name);
    return v;
  }
};

/// How RoPE pairs the dims of a head: Mistral-native rotates adjacent pairs (2m, 2m+1); Hugging Face rotates
/// halves (m, m + D/2). The angle of pair m is the same in both (spec §1.6), so each checkpoint keeps its own
/// q/k row order and the backend rotates accordingly — no weight permutation copy at load.
enum class RopePairs { interleaved, halves };

/// Attention shape. Rows of q are queries, rows of k/v are keys (for the decoder: the KV cache rows 0..n_kv).
struct AttentionParams {
  int n_heads = 0;     ///< query heads; q is [n_q, n_heads * head_dim]
  int n_kv_heads = 0;  ///< key/value heads (GQA: query head h uses kv head h / (n_heads / n_kv_heads))
  int head_dim = 0;
  float scale = 0;     ///< usually 1/sqrt(head_dim)
  bool causal = false; ///< query i (absolute position q_offset + i) sees keys 0..q_offset + i
  int q_offset = 0;
  /// Block-diagonal (vision): lengths of consecutive segments; query and key rows attend only within their
  /// own segment. Empty = one segment. Not combined with causal.
  std::span<const int> segments;
};

using TraceFn = std::function<void(std::string_view name, std::span<const float> values, std::int64_t rows,
                                   std::int64_t cols)>;


class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;         ///< "cpu", "cuda"
  virtual std::string device_name() const = 0;  ///< human-readable
  /// Activation dtype this backend computes in (cpu: f32; cuda: bf16).
  virtual DType activation_dtype() const = 0;

  // ---- memory ---------------------------------------------------------------------------------------------
  /// Allocate [rows, cols] of dtype; out_of_memory names `what`.
  virtual Result<Tensor> alloc(std::int64_t rows, std::int64_t cols, DType dtype, std::string_view what) = 0;
  virtual void free(Tensor& t) = 0;
  /// Make a weight usable by this backend (CPU: view the mmap in place; CUDA: upload, converting to bf16).
  virtual Result<Weight> upload_weight(const WeightView& w) = 0;
  virtual void free_weight(Weight& w) = 0;
  /// A weight only gathered from (the embedding table), which the backend may keep in host memory it can read
  /// directly (CUDA: pinned, mapped; one row crosses the bus per decoded token). Default: upload_weight.
  virtual Result<Weight> upload_weight_host(const WeightView& w) { return upload_weight(w); }
  /// Upload several weights with the same column count stacked by rows into one ([Σ rows, cols]) — used for
  /// fused projections (wq|wk|wv, w1|w3) so a batch-1 step reads them in one pass. Backends that gain nothing
  /// (the CPU views the mmap in place) return `unsupported` and the model keeps separate products.
  virtual Result<Weight> upload_weight_stacked(std::span<const WeightView* const> parts, const std::string& name) {
    return Status(ErrorCode::unsupported, "stacked weights are not used by the " + this->name() + " backend");
  }
  /// Quantize a weight while making it usable (issue 6): the result has `format` (see core/quant.h). Refuses
  /// shapes the format cannot hold (int4: cols % 128 != 0) with `unsupported` naming the tensor. Backends
  /// without quantized kernels return `unsupported`.
  virtual Result<Weight> upload_weight_quantized(const WeightView& w, WeightFormat format) {
    return Status(ErrorCode::unsupported, "quantized weights are not supported by the " + this->name() + " backend");
  }
  /// upload_weight_stacked, quantized (each row keeps its own scales, so stacking commutes with quantizing).
  virtual Result<Weight> upload_weight_stacked_quantized(std::span<const WeightView* const> parts,
                                                         const std::string& name, WeightFormat format) {
    return Status(ErrorCode::unsupported, "stacked quantized weights are not used by the " + this->name() +
                                              " backend");
  }
  /// Host copy of a quantized weight (the quantized-weights cache file, docs/quant-cache.md): `data` receives
  /// rows × quant::row_bytes(format, cols) bytes and `scales` rows × quant::scales_per_row fp32 values, exactly
  /// as stored on the device. Synchronises. Dense weights and backends without quantized weights: `unsupported`.
  virtual Status download_weight(const Weight& w, void* data, float* scales) {
    return Status(ErrorCode::unsupported, "download_weight is not supported by the " + this->name() + " backend");
  }
  /// A quantized weight from already-quantized host bytes (the layout download_weight produces): a straight
  /// copy, no quantization. `dtype` is the dtype the weight was quantized from (informational, as in Weight).
  virtual Result<Weight> upload_weight_prequantized(const void* data, const float* scales, std::int64_t rows,
                                                    std::int64_t cols, WeightFormat format, DType dtype,
                                                    const std::string& name) {
    return Status(ErrorCode::unsupported, "prequantized weights are not supported by the " + this->name() +
                                              " backend");
  }
  /// Host fp32 ↔ device tensor (converting to/from the tensor's dtype).
  virtual Status upload(Tensor dst, const float* host) = 0;
  virtual Status download(const Tensor& src, float* host) = 0;
  /// dst = src (same shape; dtypes may differ).
  virtual Status copy(Tensor dst, const Tensor& src) = 0;
  /// Wait for queued work (no-op on CPU).
  virtual Status synchronize() = 0;

  // ---- sampling ---------------------------------------------------------------------------------------------
  /// Choose the next token from logits [1, V] (f32) on the device, with exactly the semantics of
  /// runtime/sampler.h (temperature, top-k, top-p, draw `draw` of the counter-based RNG seeded with p.seed), so
  /// only 4 bytes cross to the host instead of the logits. *token = -1 when the backend leaves this draw to the
  /// host sampler (the default; also a device sampler's way out for distributions beyond its candidate
  /// capacity) — the caller then downloads the logits and samples them there. Synchronises.
  virtual Status sample(const Tensor& logits, const SampleParams& p, std::uint64_t draw, int* token) {
    *token = -1;
    return {};
  }

  // ---- ops (shapes in comments; T = rows) -----------------------------------------------------------------
  /// out[T, D] = table[ids[t], :]
  virtual Status embed(Tensor out, const Weight& table, std::span<const int> ids) = 0;
  /// out[T, N] = x[T, K] · W[N, K]ᵀ (+ bias[N]); fp32 accumulation.
  virtual Status matmul(Tensor out, const Tensor& x, const Weight& w, const Weight* bias = nullptr) = 0;
  /// out[T, D] = w ⊙ x / sqrt(mean(x²) + eps), statistics in fp32. out may alias x.
  virtual Status rms_norm(Tensor out, const Tensor& x, const Weight& w, float eps) = 0;
  /// h += delta; out = rms_norm(h) (the fused residual step). out may not alias h.
  virtual Status add_rms_norm(Tensor h, const Tensor& delta, Tensor out, const Weight& w, float eps) = 0;
  /// h += delta
  virtual Status add(Tensor h, const Tensor& delta) = 0;
  /// h[T, N] += x[T, K] · W[N, K]ᵀ (fp32 accumulation): the residual step of a block's last matmul. tmp [T, N] is
  /// scratch for this default (matmul into tmp, then add); a backend may accumulate into h directly (the product
  /// is then added to h before it is rounded to h's dtype: one rounding instead of two).
  virtual Status matmul_add(Tensor h, Tensor tmp, const Tensor& x, const Weight& w) {
    PIXTRAL_RETURN_IF_ERROR(matmul(tmp, x, w));
    return add(h, tmp);
  }
  /// 1-D RoPE in place on x[T, n_heads * head_dim]: pair m of the head at row t rotates by
  /// positions[t] · inv_freq[m], inv_freq[m] = 1 / theta^(2m / head_dim) (fp32, torch's formula).
  virtual Status rope(Tensor x, int n_heads, int head_dim, std::span<const int> positions, float theta,
                      RopePairs pairs) = 0;
  /// The batch-1 decode step's RoPE + KV append: qkv [1, (nh + 2·nkv)·hd] holds [q | k | v]; q is rotated in
  /// place, k rotated and v are written to row `position` of k_cache / v_cache ([context, nkv·hd]); qkv's k and v
  /// may be left changed or not. Bit-identical to rope(q|k) + scatter_rows(k) + scatter_rows(v), which is what
  /// this default does; a backend may fuse it into one launch. `position` is ignored in device-state mode.
  virtual Status rope_append_kv(Tensor qkv, int n_heads, int n_kv_heads, int head_dim, int position, float theta,
                                RopePairs pairs, Tensor k_cache, Tensor v_cache) {
    const std::int64_t qd = std::int64_t(n_heads) * head_dim, kvd = std::int64_t(n_kv_heads) * head_dim;
    if (qkv.rows != 1 || qkv.cols != qd + 2 * kvd || k_cache.cols != kvd || v_cache.cols != kvd)
      return Status(ErrorCode::invalid_argument, "rope_append_kv: qkv must be one row of [q | k | v] and the caches "
                                                 "n_kv_heads · head_dim wide");
    const int pos[1] = {position};
    const std::size_t es = dtype_size(qkv.dtype);
    char* base = static_cast<char*>(qkv.data);
    PIXTRAL_RETURN_IF_ERROR(rope(Tensor{base, 1, qd + kvd, qkv.dtype}, n_heads + n_kv_heads, head_dim, pos, theta,
                                 pairs));
    PIXTRAL_RETURN_IF_ERROR(scatter_rows(k_cache, Tensor{base + std::size_t(qd) * es, 1, kvd, qkv.dtype}, pos));
    return scatter_rows(v_cache, Tensor{base + std::size_t(qd + kvd) * es, 1, kvd, qkv.dtype}, pos);
  }
  /// One decode row: qkv = x · wqkvᵀ (wqkv = [wq; wk; wv] stacked), then rope_append_kv. A backend may fuse both
  /// (the decode GEMV rotating each pair as it finishes it) with the same bits; it then need not write qkv's k and
  /// v parts (only q is read afterwards, the cache rows hold k and v).
  virtual Status matmul_rope_append_kv(Tensor qkv, const Tensor& x, const Weight& wqkv, int n_heads, int n_kv_heads,
                                       int head_dim, int position, float theta, RopePairs pairs, Tensor k_cache,
                                       Tensor v_cache) {
    PIXTRAL_RETURN_IF_ERROR(matmul(qkv, x, wqkv));
    return rope_append_kv(qkv, n_heads, n_kv_heads, head_dim, position, theta, pairs, k_cache, v_cache);
  }
  /// 2-D RoPE in place on x[N, n_heads * head_dim] (spec §6.3): pairs m < D/4 rotate by row[n] · f[2m],
  /// pairs m ≥ D/4 by col[n] · f[2(m − D/4) + 1], f[k] = 1 / theta^(2k / head_dim).
  virtual Status rope_2d(Tensor x, int n_heads, int head_dim, std::span<const int> rows, std::span<const int> cols,
                         float theta, RopePairs pairs) = 0;
  /// out[Tq, H*D] = softmax(q kᵀ · scale + mask) v, per head, softmax in fp32.
  virtual Status attention(Tensor out, const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionParams& p) = 0;
  /// out[T, F] = silu(gate) ⊙ up. out may alias gate.
  virtual Status silu_mul(Tensor out, const Tensor& gate, const Tensor& up) = 0;
  /// out[T, F] = silu(x · w1ᵀ) ⊙ (x · w3ᵀ) for w13 = [w1; w3] stacked (2F rows): by default matmul into
  /// gu[T, 2F] (scratch) then silu_mul of its halves; a backend may fuse both (decode GEMV) and leave gu unused,
  /// with the same bits (g and u rounded to gu's dtype before silu_mul's math).
  virtual Status matmul_silu(Tensor out, Tensor gu, const Tensor& x, const Weight& w13) {
    const std::int64_t T = x.rows, F = out.cols;
    if (w13.rows != 2 * F || out.rows != T || gu.rows != T || gu.cols != 2 * F)
      return Status(ErrorCode::invalid_argument, "matmul_silu: w13 must stack w1 and w3 (2F rows) for out [T, F] "
                                                 "and gu [T, 2F]");
    if (T != 1)  // the halves of gu are [T, F] blocks only for one row
      return Status(ErrorCode::invalid_argument, "matmul_silu: the unfused path takes one row");
    PIXTRAL_RETURN_IF_ERROR(matmul(gu, x, w13));
    const std::size_t es = dtype_size(gu.dtype);
    char* base = static_cast<char*>(gu.data);
    return silu_mul(out, Tensor{base, 1, F, gu.dtype}, Tensor{base + std::size_t(F) * es, 1, F, gu.dtype});
  }
  /// Batch-1 decode, the norm folded into the GEMV after it: xn = rms_norm(h), then matmul_rope_append_kv on xn. A
  /// backend may fuse them (the GEMV normalizing h itself) with the same bits; xn is written either way.
  virtual Status rms_norm_matmul_rope_append_kv(Tensor qkv, Tensor xn, const Tensor& h, const Weight& norm, float eps,
                                                const Weight& wqkv, int n_heads, int n_kv_heads, int head_dim,
                                                int position, float theta, RopePairs pairs, Tensor k_cache,
                                                Tensor v_cache) {
    PIXTRAL_RETURN_IF_ERROR(rms_norm(xn, h, norm, eps));
    return matmul_rope_append_kv(qkv, xn, wqkv, n_heads, n_kv_heads, head_dim, position, theta, pairs, k_cache,
                                 v_cache);
  }
  /// xn = rms_norm(h), then matmul_silu on xn (the decode FFN's norm folded in, as above).
  virtual Status rms_norm_matmul_silu(Tensor out, Tensor gu, Tensor xn, const Tensor& h, const Weight& norm, float eps,
                                      const Weight& w13) {
    PIXTRAL_RETURN_IF_ERROR(rms_norm(xn, h, norm, eps));
    return matmul_silu(out, gu, xn, w13);
  }
  /// x = 0.5 x (1 + erf(x / √2)) in place.
  virtual Status gelu(Tensor x) = 0;
  /// dst[rows[i], :] = src[i, :]
  virtual Status scatter_rows(Tensor dst, const Tensor& src, std::span<const int> rows) = 0;
  /// Patch embedding (conv stride = kernel = P, no bias): pixels are one image, fp32 CHW [C, H, W] on the host,
  /// H and W multiples of P. Each pixel is first rounded to conv's dtype (as the references cast to the weight
  /// dtype). out[(H/P)*(W/P), dim] row-major over patches (r, c); patch vector order ch*P*P + ky*P + kx.
  virtual Status patch_embed(Tensor out, const float* pixels_chw, int channels, int height, int width, int patch,
                             const Weight& conv) = 0;

  // ---- tracing ----------------------------------------------------------------------------------------------
  /// When set, the model reports named activations (downloaded to fp32) through this hook. Slow; tests only.
  void set_trace(TraceFn fn) { trace_ = std::move(fn); }
  bool tracing() const { return static_cast<bool>(trace_); }
  /// Called by the model after creating an activation.
  void trace(std::string_view name, const Tensor& t);

 protected:
  TraceFn trace_;
};

/// The CPU reference backend (threads = 0: all hardware threads).
std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

/// The CUDA backend, loaded at run time from libpixtral_cuda.so (next to the executable, or on the library
/// path). Fails with a specific reason (library missing, no driver, no device) — callers fall back to the CPU.
Result<std::unique_ptr<Backend>> load_cuda_backend(int device_index = 0);

}  // namespace pixtral::ops
