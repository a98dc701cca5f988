// SPDX-License-Identifier: Apache-2.0
// CpuBackend, quantized weights (issue 6): upload_weight_quantized quantizes the mmapped weight into an owned
// block with the reference quantizer (core/quant.cpp), and matmul_quantized is the reference definition of a
// product with a quantized W: every W row is dequantized to fp32 exactly as quant::dequantize_row defines, then
// multiplied in fp32. Slow on purpose (no tiling, no BLAS): the CUDA kernels are checked against it.
// Determinism: output element (t, n) is one worker's fixed-order sum (8 strided partial sums, then a fixed tree).
#include <algorithm>
#include <cstring>
#include <new>
#include <vector>

#include "core/quant.h"
#include "cpu/cpu_backend.h"

namespace pixtral::cpu {

namespace {

/// One aligned block for a quantized [N, K] weight: the values (padded to 64 bytes), then the fp32 scales.
Result<Weight> alloc_quantized(std::int64_t N, std::int64_t K, ops::WeightFormat format, DType dtype,
                               const std::string& name) {
  const std::size_t qbytes = std::size_t(N * quant::row_bytes(format, K));
  const std::size_t qpad = (qbytes + 63) / 64 * 64;
  const std::size_t sbytes = std::size_t(N * quant::scales_per_row(format, K)) * sizeof(float);
  void* block = ::operator new(qpad + sbytes, kAlign, std::nothrow);
  if (!block)
    return Status(ErrorCode::out_of_memory, "cpu: cannot allocate " + std::to_string(qpad + sbytes) +
                                                " bytes for quantized '" + name + "'");
  Weight out{block, dtype, N, K, name};
  out.format = format;
  out.scales = reinterpret_cast<const float*>(static_cast<std::uint8_t*>(block) + qpad);
  out.group_size = format == ops::WeightFormat::int4_g128 ? quant::kInt4Group : int(K);
  return out;
}

}  // namespace

Result<Weight> CpuBackend::upload_weight_quantized(const WeightView& w, ops::WeightFormat format) {
  if (format == ops::WeightFormat::dense) return upload_weight(w);
  if (!w.data && w.numel() > 0) return bad("upload_weight_quantized", "'" + w.name + "' has no data");
  const std::int64_t N = w.rows(), K = w.cols();
  PIXTRAL_RETURN_IF_ERROR(quant::check_shape(format, N, K, w.name));
  auto out = alloc_quantized(N, K, format, w.dtype, w.name);
  if (!out.ok()) return out.status();
  auto* q = static_cast<std::uint8_t*>(const_cast<void*>(out->data));
  auto* scales = const_cast<float*>(out->scales);
  // Rows in parallel: each row's bytes depend only on that row.
  pool_.parallel_for(N, 64, [&](std::int64_t n0, std::int64_t n1, int) {
    quant::quantize_rows(w.data, w.dtype, n0, n1 - n0, K, format, q + n0 * quant::row_bytes(format, K),
                         scales + n0 * quant::scales_per_row(format, K));
  });
  return out;
}

Status CpuBackend::download_weight(const Weight& w, void* data, float* scales) {
  if (!w.quantized()) return Status(ErrorCode::unsupported, "cpu download_weight: '" + w.name + "' is dense");
  if (!w.data || !w.scales) return bad("download_weight", "quantized " + shape(w) + " has no data");
  const std::size_t qbytes = std::size_t(w.rows * quant::row_bytes(w.format, w.cols));
  const std::size_t ns = std::size_t(w.rows * quant::scales_per_row(w.format, w.cols));
  if (qbytes) std::memcpy(data, w.data, qbytes);
  if (ns) std::memcpy(scales, w.scales, ns * sizeof(float));
  return Status::success();
}

Result<Weight> CpuBackend::upload_weight_prequantized(const void* data, const float* scales, std::int64_t rows,
                                                      std::int64_t cols, ops::WeightFormat format, DType dtype,
                                                      const std::string& name) {
  if (format == ops::WeightFormat::dense)
    return bad("upload_weight_prequantized", "'" + name + "': the format must be int8 or int4");
  if (rows < 0 || cols < 0) return bad("upload_weight_prequantized", "'" + name + "': negative shape");
  PIXTRAL_RETURN_IF_ERROR(quant::check_shape(format, rows, cols, name));
  auto out = alloc_quantized(rows, cols, format, dtype, name);
  if (!out.ok()) return out.status();
  const std::size_t qbytes = std::size_t(rows * quant::row_bytes(format, cols));
  const std::size_t ns = std::size_t(rows * quant::scales_per_row(format, cols));
  if (qbytes) std::memcpy(const_cast<void*>(out->data), data, qbytes);
  if (ns) std::memcpy(const_cast<float*>(out->scales), scales, ns * sizeof(float));
  return out;
}

Status CpuBackend::matmul_quantized(Tensor out, const Tensor& x, const Weight& w, const Weight* bias) {
  const std::int64_t T = x.rows, K = x.cols, N = w.rows;
  if (!w.data || !w.scales) return bad("matmul", "quantized W " + shape(w) + " has no data");
  if (w.format == ops::WeightFormat::int4_g128 && K % quant::kInt4Group != 0)
    return bad("matmul", "int4 W " + shape(w) + ": cols not a multiple of 128");
  std::vector<float> b;
  if (bias) {
    b.resize(std::size_t(N));
    convert_to_f32(bias->data, bias->dtype, std::size_t(N), b.data());
  }
  std::vector<std::vector<float>> rows;
  try {
    rows.assign(std::size_t(pool_.size()), std::vector<float>(std::size_t(K)));
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::out_of_memory, "cpu: quantized matmul row buffers");
  }
  const std::int64_t rb = quant::row_bytes(w.format, K), spr = quant::scales_per_row(w.format, K);
  const auto* q = static_cast<const std::uint8_t*>(w.data);
  const float* xp = fp(x);
  float* op = fp(out);
  pool_.parallel_for(N, 16, [&](std::int64_t n0, std::int64_t n1, int worker) {
    float* wr = rows[std::size_t(worker)].data();  // (K) W row n in fp32
    for (std::int64_t n = n0; n < n1; ++n) {
      quant::dequantize_row(q + n * rb, w.scales + n * spr, K, w.format, wr);
      for (std::int64_t t = 0; t < T; ++t) {
        const float* xt = xp + t * K;
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::int64_t k = 0;
        for (; k + 8 <= K; k += 8)
          for (int j = 0; j < 8; ++j) acc[j] += xt[k + j] * wr[k + j];
        for (; k < K; ++k) acc[0] += xt[k] * wr[k];
        float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        if (bias) s += b[std::size_t(n)];
        op[t * N + n] = s;
      }
    }
  });
  return Status::success();
}

}  // namespace pixtral::cpu
