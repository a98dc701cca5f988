// SPDX-License-Identifier: Apache-2.0
// CudaBackend, quantized weights to and from the host (issue 6, the quantized-weights cache file;
// docs/quant-cache.md): download_weight copies a quantized weight's packed values and fp32 scales to the host;
// upload_weight_prequantized allocates the same device layout as upload_weight_stacked_quantized
// (kernels_quant.cuh: values padded to 256 bytes, then the scales) and copies the host bytes in unchanged — no
// quantization, so a weight read back from the cache is bit-identical to the one that was quantized on the GPU.
// Plain (pageable) copies on the backend's stream, synchronised: loading is bound by reading the file.
#include <string>

#include "cuda/cuda_backend.h"
#include "cuda/kernels_quant.cuh"

namespace pixtral::cuda {

Status CudaBackend::download_weight(const ops::Weight& w, void* data, float* scales) {
  if (!w.quantized()) return Status(ErrorCode::unsupported, "cuda download_weight: '" + w.name + "' is dense");
  if (!w.data || !w.scales)
    return Status(ErrorCode::invalid_argument, "cuda download_weight: '" + w.name + "' has no data");
  const std::size_t qbytes = std::size_t(w.rows * quant::row_bytes(w.format, w.cols));
  const std::size_t sbytes = std::size_t(w.rows * quant::scales_per_row(w.format, w.cols)) * sizeof(float);
  if (qbytes) PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(data, w.data, qbytes, cudaMemcpyDeviceToHost, stream_));
  if (sbytes) PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(scales, w.scales, sbytes, cudaMemcpyDeviceToHost, stream_));
  PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return {};
}

Result<ops::Weight> CudaBackend::upload_weight_prequantized(const void* data, const float* scales,
                                                            std::int64_t rows, std::int64_t cols,
                                                            ops::WeightFormat f, DType dtype,
                                                            const std::string& name) {
  if (f == ops::WeightFormat::dense)
    return Status(ErrorCode::invalid_argument, "cuda upload " + name + ": prequantized weights must be int8/int4");
  PIXTRAL_RETURN_IF_ERROR(quant::check_shape(f, rows, cols, name));
  const std::size_t total = quantized_alloc_bytes(f, rows, cols);
  auto mem = device_alloc(total, name);
  if (!mem.ok()) return mem.status();
  auto* q = static_cast<std::uint8_t*>(*mem);
  auto* dev_scales = reinterpret_cast<float*>(q + quantized_values_bytes(f, rows, cols));
  const std::size_t qbytes = std::size_t(rows * quant::row_bytes(f, cols));
  const std::size_t sbytes = std::size_t(rows * quant::scales_per_row(f, cols)) * sizeof(float);
  auto run = [&]() -> Status {
    PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(q, data, qbytes, cudaMemcpyHostToDevice, stream_));
    PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(dev_scales, scales, sbytes, cudaMemcpyHostToDevice, stream_));
    PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host bytes may be unmapped after return
    return {};
  };
  if (Status st = run(); !st.ok()) {
    device_free(q, total);
    return st;
  }
  return quantized_weight(q, dev_scales, dtype, rows, cols, name, f);
}

}  // namespace pixtral::cuda
