// SPDX-License-Identifier: Apache-2.0
// CpuBackend: the reference definition of every ops::Backend op (fp32 activations, fp32 accumulation, weights
// read in place from the mmap in their stored dtype). Shapes are validated with specific messages; the heavy
// kernels live in cpu_matmul.cpp, cpu_attention.cpp and cpu_rope.cpp. A backend object is used by one thread at a
// time (its scratch is shared between calls); its worker threads are private.
// Numerics chosen for the reference: RMSNorm's mean of squares is accumulated in double; GELU's erf and RoPE's
// cos/sin are evaluated in double and rounded to fp32; attention's softmax normaliser is summed in double;
// everything else is fp32 (see each op).
#pragma once

#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "cpu/cpu_kernels.h"
#include "ops/backend.h"

namespace pixtral::cpu {

using ops::AttentionParams;
using ops::Backend;
using ops::RopePairs;
using ops::Tensor;
using ops::Weight;

// ---- validation helpers (messages name the op and the shapes) ----
inline constexpr std::align_val_t kAlign{64};
inline constexpr std::int64_t kElemGrain = 16384;  // elementwise ops: elements per worker at least

inline Status bad(std::string_view op, const std::string& what) {
  return Status(ErrorCode::invalid_argument, "cpu " + std::string(op) + ": " + what);
}
inline std::string shape(const Tensor& t) {
  return "[" + std::to_string(t.rows) + ", " + std::to_string(t.cols) + "] " + dtype_name(t.dtype);
}
inline std::string shape(const Weight& w) {
  return "'" + w.name + "' [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "] " + dtype_name(w.dtype);
}
inline Status need_f32(std::string_view op, std::string_view name, const Tensor& t) {
  if (t.dtype != DType::f32) return bad(op, std::string(name) + " must be f32, got " + shape(t));
  if (!t.data && t.rows * t.cols > 0) return bad(op, std::string(name) + " has no data");
  return Status::success();
}
inline Status need_same(std::string_view op, const Tensor& a, std::string_view an, const Tensor& b, std::string_view bn) {
  if (a.rows != b.rows || a.cols != b.cols)
    return bad(op, std::string(an) + " " + shape(a) + " and " + std::string(bn) + " " + shape(b) + " differ");
  return Status::success();
}
/// Installed physical memory in bytes (0 if unknown). A single tensor larger than this is refused up front.
std::int64_t physical_memory_bytes();

inline float* fp(const Tensor& t) { return static_cast<float*>(t.data); }

class CpuBackend final : public Backend {
 public:
  using Status = pixtral::Status;
  explicit CpuBackend(int threads) : pool_(threads), blas_(blas_init()) {}

  std::string name() const override { return "cpu"; }
  std::string device_name() const override { return "CPU (" + std::to_string(pool_.size()) + " threads)"; }
  DType activation_dtype() const override { return DType::f32; }

  // ---- memory ---------------------------------------------------------------------------------------------
  Result<Tensor> alloc(std::int64_t rows, std::int64_t cols, DType dtype, std::string_view what) override {
    if (rows < 0 || cols < 0) return bad("alloc", std::string(what) + ": negative shape");
    if (dtype != DType::f32)
      return Status(ErrorCode::unsupported, "cpu alloc: " + std::string(what) + ": the CPU backend keeps "
                                            "activations in f32, not " + dtype_name(dtype));
    std::int64_t n = 0, bytes = 0;
    if (__builtin_mul_overflow(rows, cols, &n) || __builtin_mul_overflow(n, std::int64_t(4), &bytes))
      return Status(ErrorCode::out_of_memory, "cpu: cannot allocate " + std::string(what) + " [" +
                                                  std::to_string(rows) + ", " + std::to_string(cols) + "]: too large");
    Tensor t{nullptr, rows, cols, dtype};
    if (bytes == 0) return t;
    if (const std::int64_t ram = physical_memory_bytes(); ram > 0 && bytes > ram)
      return Status(ErrorCode::out_of_memory, "cpu: " + std::string(what) + " [" + std::to_string(rows) + ", " +
                                                  std::to_string(cols) + "] f32 needs " + std::to_string(bytes >> 20) +
                                                  " MiB, more than this machine's " + std::to_string(ram >> 20) +
                                                  " MiB of memory");
    // Not zeroed: a KV cache of several GB is only touched (committed) as it fills.
    t.data = ::operator new(std::size_t(bytes), kAlign, std::nothrow);
    if (!t.data)
      return Status(ErrorCode::out_of_memory, "cpu: cannot allocate " + std::to_string(bytes) + " bytes for " +
                                                  std::string(what) + " [" + std::to_string(rows) + ", " +
                                                  std::to_string(cols) + "] f32");
    return t;
  }
  void free(Tensor& t) override {
    if (t.data) ::operator delete(t.data, kAlign);
    t = Tensor{};
  }
  Result<Weight> upload_weight(const WeightView& w) override {
    if (!w.data && w.numel() > 0) return bad("upload_weight", "'" + w.name + "' has no data");
    return Weight{w.data, w.dtype, w.rows(), w.cols(), w.name};  // a view of the mmap: no copy
  }
  /// Quantized weights are owned copies (one aligned block: values then scales); see cpu_quant.cpp.
  Result<Weight> upload_weight_quantized(const WeightView& w, ops::WeightFormat format) override;
  /// The quantized-weights cache (cpu_quant.cpp): a plain copy out of / into the same owned block layout.
  Status download_weight(const Weight& w, void* data, float* scales) override;
  Result<Weight> upload_weight_prequantized(const void* data, const float* scales, std::int64_t rows,
                                            std::int64_t cols, ops::WeightFormat format, DType dtype,
                                            const std::string& name) override;
  void free_weight(Weight& w) override {
    if (w.quantized() && w.data) ::operator delete(const_cast<void*>(w.data), kAlign);
    w = Weight{};
  }

  Status upload(Tensor dst, const float* host) override {
    const std::size_t n = std::size_t(dst.rows * dst.cols);
    if (dst.dtype == DType::f32) {
      if (n) std::memcpy(dst.data, host, n * 4);
      return Status::success();
    }
    auto* p = static_cast<unsigned char*>(dst.data);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint16_t h = dst.dtype == DType::bf16 ? f32_to_bf16(host[i]) : f32_to_f16(host[i]);
      std::memcpy(p + 2 * i, &h, 2);
    }
    return Status::success();
  }
  Status download(const Tensor& src, float* host) override {
    if (src.rows * src.cols > 0) convert_to_f32(src.data, src.dtype, std::size_t(src.rows * src.cols), host);
    return Status::success();
  }
  Status copy(Tensor dst, const Tensor& src) override {
    if (dst.rows * dst.cols != src.rows * src.cols)
      return bad("copy", "dst " + shape(dst) + " and src " + shape(src) + " differ in size");
    if (dst.dtype == src.dtype) {
      if (src.bytes()) std::memmove(dst.data, src.data, src.bytes());
      return Status::success();
    }
    if (src.dtype == DType::f32) return upload(dst, fp(src));
    if (dst.dtype == DType::f32) return download(src, fp(dst));
    std::vector<float> tmp(std::size_t(src.rows * src.cols));
    PIXTRAL_RETURN_IF_ERROR(download(src, tmp.data()));
    return upload(dst, tmp.data());
  }
  Status synchronize() override { return Status::success(); }

  // ---- ops --------------------------------------------------------------------------------------------------
  Status embed(Tensor out, const Weight& table, std::span<const int> ids) override;
  Status matmul(Tensor out, const Tensor& x, const Weight& w, const Weight* bias) override;
  Status rms_norm(Tensor out, const Tensor& x, const Weight& w, float eps) override;
  Status add_rms_norm(Tensor h, const Tensor& delta, Tensor out, const Weight& w, float eps) override;
  Status add(Tensor h, const Tensor& delta) override;
  Status rope(Tensor x, int n_heads, int head_dim, std::span<const int> positions, float theta,
              RopePairs pairs) override;
  Status rope_2d(Tensor x, int n_heads, int head_dim, std::span<const int> rows, std::span<const int> cols,
                 float theta, RopePairs pairs) override;
  Status attention(Tensor out, const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) override;
  Status silu_mul(Tensor out, const Tensor& gate, const Tensor& up) override;
  Status gelu(Tensor x) override;
  Status scatter_rows(Tensor dst, const Tensor& src, std::span<const int> rows) override;
  Status patch_embed(Tensor out, const float* pixels_chw, int channels, int height, int width, int patch,
                     const Weight& conv) override;

 private:
  Status norm_weight(std::string_view op, const Weight& w, std::int64_t D);
  /// matmul with a quantized W: each W row dequantized to fp32 (quant::dequantize_row), then fp32 dot products.
  Status matmul_quantized(Tensor out, const Tensor& x, const Weight& w, const Weight* bias);
  void rms_rows(float* out, const float* x, std::int64_t T, std::int64_t D, float eps);
  Status reserve_angles(std::int64_t n);

  ThreadPool pool_;
  std::string blas_;
  Workspace ws_;
  std::vector<float> norm_w_;  // [D] the current norm weight in fp32
  std::vector<float> angles_;  // [T, head_dim / 2] RoPE angles
};

}  // namespace pixtral::cpu
