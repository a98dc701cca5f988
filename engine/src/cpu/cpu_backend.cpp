// SPDX-License-Identifier: Apache-2.0
// CpuBackend part 1: make_cpu_backend, embed, matmul, RMSNorm, elementwise ops (memory ops are inline in
// cpu_backend.h; RoPE, attention and patch_embed are in cpu_backend_ops.cpp).
#include <algorithm>
#include <cmath>
#include <new>
#include <thread>

#include <unistd.h>

#include "cpu/cpu_backend.h"
#include "cpu/cpu_simd.h"

namespace pixtral::cpu {

std::int64_t physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  static const std::int64_t bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? std::int64_t(pages) * page : std::int64_t(0);
  }();
  return bytes;
#else
  return 0;
#endif
}

// ---- embed, matmul ------------------------------------------------------------------------------------------

Status CpuBackend::embed(Tensor out, const Weight& table, std::span<const int> ids) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("embed", "out", out));
  if (out.rows != std::int64_t(ids.size()) || out.cols != table.cols)
    return bad("embed", "out " + shape(out) + " does not fit " + std::to_string(ids.size()) + " ids of table " +
                            shape(table));
  for (int id : ids)
    if (id < 0 || id >= table.rows)
      return bad("embed", "token id " + std::to_string(id) + " outside table " + shape(table));
  pool_.parallel_for(out.rows, std::max<std::int64_t>(1, kElemGrain / std::max<std::int64_t>(1, out.cols)),
                     [&](std::int64_t t0, std::int64_t t1, int) {
                       for (std::int64_t t = t0; t < t1; ++t)
                         cpu::convert_rows_f32(table.data, table.dtype, ids[std::size_t(t)], 1, table.cols,
                                               fp(out) + t * out.cols);
                     });
  return Status::success();
}

Status CpuBackend::matmul(Tensor out, const Tensor& x, const Weight& w, const Weight* bias) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("matmul", "out", out));
  PIXTRAL_RETURN_IF_ERROR(need_f32("matmul", "x", x));
  if (x.cols != w.cols) return bad("matmul", "x " + shape(x) + " does not match W " + shape(w) + " (x cols != W cols)");
  if (out.rows != x.rows || out.cols != w.rows)
    return bad("matmul", "out " + shape(out) + " should be [" + std::to_string(x.rows) + ", " +
                             std::to_string(w.rows) + "] for x " + shape(x) + " and W " + shape(w));
  if (bias && bias->rows * bias->cols != w.rows)
    return bad("matmul", "bias " + shape(*bias) + " does not match W " + shape(w));
  if (out.data && out.data == x.data) return bad("matmul", "out must not alias x");
  if (w.quantized()) return matmul_quantized(out, x, w, bias);
  cpu::MatmulArgs a{fp(out), fp(x), x.rows, x.cols, w.rows, w.data, w.dtype, bias ? bias->data : nullptr,
                    bias ? bias->dtype : DType::f32};
  return cpu::matmul(pool_, ws_, a);
}

// ---- norms, elementwise ---------------------------------------------------------------------------------------

Status CpuBackend::norm_weight(std::string_view op, const Weight& w, std::int64_t D) {
  if (w.rows * w.cols != D) return bad(op, "weight " + shape(w) + " does not have " + std::to_string(D) + " values");
  try {
    norm_w_.resize(std::size_t(D));
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::out_of_memory, "cpu: norm weight");
  }
  convert_to_f32(w.data, w.dtype, std::size_t(D), norm_w_.data());
  return Status::success();
}

// ref: mistral_inference/transformer_layers.py RMSNorm: x * rsqrt(mean(x²) + eps), then * weight.
void CpuBackend::rms_rows(float* out, const float* x, std::int64_t T, std::int64_t D, float eps) {
  const float* w = norm_w_.data();
  pool_.parallel_for(T, std::max<std::int64_t>(1, kElemGrain / std::max<std::int64_t>(1, D)),
                     [&](std::int64_t t0, std::int64_t t1, int) {
                       for (std::int64_t t = t0; t < t1; ++t) {
                         const float* xr = x + t * D;
                         float* o = out + t * D;
                         double ss = 0;  // the mean of squares in double: the reference's extra accuracy
                         for (std::int64_t d = 0; d < D; ++d) ss += double(xr[d]) * double(xr[d]);
                         const float r = float(1.0 / std::sqrt(ss / double(D) + double(eps)));
                         for (std::int64_t d = 0; d < D; ++d) o[d] = (xr[d] * r) * w[d];
                       }
                     });
}

Status CpuBackend::rms_norm(Tensor out, const Tensor& x, const Weight& w, float eps) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("rms_norm", "out", out));
  PIXTRAL_RETURN_IF_ERROR(need_f32("rms_norm", "x", x));
  PIXTRAL_RETURN_IF_ERROR(need_same("rms_norm", out, "out", x, "x"));
  PIXTRAL_RETURN_IF_ERROR(norm_weight("rms_norm", w, x.cols));
  rms_rows(fp(out), fp(x), x.rows, x.cols, eps);
  return Status::success();
}

Status CpuBackend::add_rms_norm(Tensor h, const Tensor& delta, Tensor out, const Weight& w, float eps) {
  if (out.data == h.data && h.rows * h.cols > 0) return bad("add_rms_norm", "out must not alias h");
  PIXTRAL_RETURN_IF_ERROR(add(h, delta));
  return rms_norm(out, h, w, eps);
}

Status CpuBackend::add(Tensor h, const Tensor& delta) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("add", "h", h));
  PIXTRAL_RETURN_IF_ERROR(need_f32("add", "delta", delta));
  PIXTRAL_RETURN_IF_ERROR(need_same("add", h, "h", delta, "delta"));
  float* hp = fp(h);
  const float* dp = fp(delta);
  pool_.parallel_for(h.rows * h.cols, kElemGrain, [&](std::int64_t i0, std::int64_t i1, int) {
    for (std::int64_t i = i0; i < i1; ++i) hp[i] += dp[i];
  });
  return Status::success();
}

// ref: torch.nn.functional.silu (x · sigmoid(x)) then ⊙ up — mistral_inference FeedForward w2(silu(w1 x) * w3 x).
Status CpuBackend::silu_mul(Tensor out, const Tensor& gate, const Tensor& up) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("silu_mul", "out", out));
  PIXTRAL_RETURN_IF_ERROR(need_f32("silu_mul", "gate", gate));
  PIXTRAL_RETURN_IF_ERROR(need_f32("silu_mul", "up", up));
  PIXTRAL_RETURN_IF_ERROR(need_same("silu_mul", gate, "gate", up, "up"));
  PIXTRAL_RETURN_IF_ERROR(need_same("silu_mul", out, "out", gate, "gate"));
  float* o = fp(out);
  const float *g = fp(gate), *u = fp(up);
  pool_.parallel_for(out.rows * out.cols, kElemGrain, [&](std::int64_t i0, std::int64_t i1, int) {
    for (std::int64_t i = i0; i < i1; ++i) o[i] = (g[i] / (1.0f + std::exp(-g[i]))) * u[i];
  });
  return Status::success();
}

// ref: torch.nn.GELU() (approximate="none"): 0.5 x (1 + erf(x / √2)); erf in double, rounded once to fp32.
Status CpuBackend::gelu(Tensor x) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("gelu", "x", x));
  float* p = fp(x);
  pool_.parallel_for(x.rows * x.cols, kElemGrain, [&](std::int64_t i0, std::int64_t i1, int) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const double v = p[i];
      p[i] = float(0.5 * v * (1.0 + std::erf(v * 0.70710678118654752440)));
    }
  });
  return Status::success();
}

Status CpuBackend::scatter_rows(Tensor dst, const Tensor& src, std::span<const int> rows) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("scatter_rows", "dst", dst));
  PIXTRAL_RETURN_IF_ERROR(need_f32("scatter_rows", "src", src));
  if (src.cols != dst.cols || src.rows != std::int64_t(rows.size()))
    return bad("scatter_rows", "src " + shape(src) + " with " + std::to_string(rows.size()) + " rows into dst " +
                                   shape(dst));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= dst.rows)
      return bad("scatter_rows", "row " + std::to_string(rows[i]) + " outside dst " + shape(dst));
    std::memcpy(fp(dst) + rows[i] * dst.cols, fp(src) + std::int64_t(i) * src.cols, std::size_t(src.cols) * 4);
  }
  return Status::success();
}

}  // namespace pixtral::cpu

namespace pixtral::ops {

std::unique_ptr<Backend> make_cpu_backend(int threads) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  return std::make_unique<cpu::CpuBackend>(threads);
}

}  // namespace pixtral::ops
