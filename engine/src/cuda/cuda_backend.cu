// SPDX-License-Identifier: Apache-2.0
// CudaBackend: device set-up, memory (allocation with named out-of-memory errors, growing scratch, pinned
// staging ring), weight upload with conversion to bf16, host<->device transfers, CUDA graph capture, and the
// C entry points the loader (core/cuda_loader.cpp) finds with dlsym. The ops themselves are in cuda_ops.cu.
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <iterator>

#include "cuda/cuda_abi.h"
#include "cuda/cuda_backend.h"
#include "cuda/env_switch.h"
#include "cuda/kernels_quant.cuh"

namespace pixtral::cuda {
namespace {

constexpr std::size_t kStagingBytes = 2u << 20;        // pinned ring, two halves of 1 MiB
constexpr std::size_t kUploadChunk = 64u << 20;        // weight conversion chunk
constexpr std::size_t kCublasWorkspace = 32u << 20;    // fixed so graph capture never allocates

std::string mib(std::size_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(b) / (1 << 20));
  return buf;
}

}  // namespace

CudaBackend::~CudaBackend() {
  if (side_) cudaStreamSynchronize(side_);  // its prefetches read the staging buffer freed below
  if (stream_) cudaStreamSynchronize(stream_);
  forget_q4tma_successors();
  forget_q4tma_stream(stream_);
  if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
  if (graph_) cudaGraphDestroy(graph_);
  for (auto& t : rope_tables_) cudaFree(t.dev);
  for (Scratch* s : {&cublas_ws_, &convert_, &im2col_, &pixels_, &attn_ws_, &staging_dev_, &decode_state_, &dequant_,
                     &quant_src_, &sample_ws_, &q4corr_, &qrows_ws_, &qrows_xb_})
    if (s->ptr) cudaFree(s->ptr);
  if (staging_host_) cudaFreeHost(staging_host_);
  if (pixels_host_) cudaFreeHost(pixels_host_);
  if (pixels_copied_) cudaEventDestroy(pixels_copied_);
  for (auto& [dev, host] : host_weights_) cudaFreeHost(host);
  if (decode_host_) cudaFreeHost(decode_host_);
  if (sample_host_) cudaFreeHost(sample_host_);
  if (sampled_host_) cudaFreeHost(sampled_host_);
  for (auto& e : decode_done_)
    if (e) cudaEventDestroy(e);
  for (auto& e : sampled_done_)
    if (e) cudaEventDestroy(e);
  for (auto& e : staging_done_)
    if (e) cudaEventDestroy(e);
  if (cublas_) cublasDestroy(cublas_);
  if (side_fork_) cudaEventDestroy(side_fork_);
  if (side_join_) cudaEventDestroy(side_join_);
  if (side_) cudaStreamDestroy(side_);
  if (stream_) cudaStreamDestroy(stream_);
  if (pool_) cudaMemPoolDestroy(pool_);  // tensors still out are released with their last free
}

Result<CudaBackend*> CudaBackend::create(int device) {
  auto* b = new CudaBackend();
  Status st = b->init(device);
  if (!st.ok()) {
    delete b;
    return st;
  }
  return b;
}

Status CudaBackend::init(int device) {
  device_ = device;
  PIXTRAL_CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  PIXTRAL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  device_name_ = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
                 ", " + std::to_string(prop.multiProcessorCount) + " SMs, " + mib(prop.totalGlobalMem) + ")";
  n_sms_ = prop.multiProcessorCount;
  PIXTRAL_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem_, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  PIXTRAL_CUDA_CHECK(cudaDeviceGetAttribute(&smem_per_sm_, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
  PIXTRAL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  stage_reuse_ = !env_zero("PIXTRAL_CUDA_STAGE_REUSE");
  // Test hook: fail_allocation_after(n) from the backend's first allocation on (a failure at every allocation
  // site of Model::load, which creates the backend; tst_cuda_model).
  if (std::getenv("PIXTRAL_CUDA_FAIL_ALLOCATION"))
    fail_after_ = int(std::max(0L, env_long("PIXTRAL_CUDA_FAIL_ALLOCATION", 0)));
  int pools = 0;
  PIXTRAL_CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device));
  if (pools && !env_zero("PIXTRAL_CUDA_POOL")) {
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    PIXTRAL_CUDA_CHECK(cudaMemPoolCreate(&pool_, &props));
    std::uint64_t keep = UINT64_MAX;  // never hand freed memory back on its own (trimmed only when cudaMalloc fails)
    PIXTRAL_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  PIXTRAL_CUBLAS_CHECK(cublasCreate(&cublas_));
  PIXTRAL_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  // Reductions inside cuBLAS stay in fp32 even with bf16 outputs (split-K), and no atomics: deterministic.
  PIXTRAL_CUBLAS_CHECK(cublasSetMathMode(
      cublas_, cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
  PIXTRAL_CUBLAS_CHECK(cublasSetAtomicsMode(cublas_, CUBLAS_ATOMICS_NOT_ALLOWED));
  PIXTRAL_RETURN_IF_ERROR(ensure(cublas_ws_, kCublasWorkspace, "cuBLAS workspace"));
  PIXTRAL_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_ws_.ptr, cublas_ws_.cap));
  PIXTRAL_CUDA_CHECK(cudaMallocHost(&staging_host_, kStagingBytes));
  PIXTRAL_RETURN_IF_ERROR(ensure(staging_dev_, kStagingBytes, "staging buffer"));
  for (auto& e : staging_done_) PIXTRAL_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  PIXTRAL_RETURN_IF_ERROR(ensure(decode_state_, kDecodeStateInts * sizeof(int), "decode state"));
  PIXTRAL_CUDA_CHECK(cudaMemsetAsync(decode_state_.ptr, 0, kDecodeStateInts * sizeof(int), stream_));
  PIXTRAL_CUDA_CHECK(cudaMallocHost(&decode_host_, sizeof(int) * kDecodeSlots * kDecodeStateInts));
  for (auto& e : decode_done_) PIXTRAL_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  PIXTRAL_CUDA_CHECK(cudaHostAlloc(&sampled_host_, sizeof(int) * kSampledRing, cudaHostAllocMapped));
  PIXTRAL_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&sampled_dev_), sampled_host_, 0));
  for (auto& e : sampled_done_) PIXTRAL_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return {};
}

// ---- device decode state -------------------------------------------------------------------------------------

Status CudaBackend::write_decode_state(const int* values, int first, int n) {
  if (capturing_)
    return Status(ErrorCode::invalid_argument,
                  "cuda: the decode state is set before replay, not inside a captured graph");
  const int slot = decode_slot_;
  decode_slot_ = (decode_slot_ + 1) % kDecodeSlots;
  if (decode_pending_[slot]) {
    PIXTRAL_CUDA_CHECK(cudaEventSynchronize(decode_done_[slot]));  // normally long done: 32 steps ago
    decode_pending_[slot] = false;
  }
  int* host = decode_host_ + slot * kDecodeStateInts;
  std::memcpy(host + first, values, sizeof(int) * std::size_t(n));
  PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(static_cast<int*>(decode_state_.ptr) + first, host + first,
                                     sizeof(int) * std::size_t(n), cudaMemcpyHostToDevice, stream_));
  PIXTRAL_CUDA_CHECK(cudaEventRecord(decode_done_[slot], stream_));
  decode_pending_[slot] = true;
  return {};
}

Status CudaBackend::set_decode_state(int position, int n_rows) {
  if (position < 0 || n_rows < 1 || n_rows > kDecodeStateMaxRows)
    return Status(ErrorCode::invalid_argument, "cuda set_decode_state: position " + std::to_string(position) +
                                                   " with " + std::to_string(n_rows) + " rows (1.." +
                                                   std::to_string(kDecodeStateMaxRows) + ")");
  int v[kDecodeStatePositions + kDecodeStateMaxRows];
  v[kDecodeStatePosition] = position;
  v[kDecodeStateNKv] = position + n_rows;
  for (int t = 0; t < kDecodeStateMaxRows; ++t) v[kDecodeStatePositions + t] = position + t;
  return write_decode_state(v, 0, kDecodeStatePositions + kDecodeStateMaxRows);
}

Status CudaBackend::set_decode_tokens(std::span<const int> ids) {
  if (ids.empty() || ids.size() > std::size_t(kDecodeStateMaxRows))
    return Status(ErrorCode::invalid_argument, "cuda set_decode_tokens: " + std::to_string(ids.size()) +
                                                   " ids (1.." + std::to_string(kDecodeStateMaxRows) + ")");
  return write_decode_state(ids.data(), kDecodeStateTokens, int(ids.size()));
}

Status CudaBackend::set_decode_draw(std::uint64_t draw) {
  int v[2];
  static_assert(sizeof v == sizeof draw);
  std::memcpy(v, &draw, sizeof v);  // little-endian: the low word first, as the kernels read it
  PIXTRAL_RETURN_IF_ERROR(write_decode_state(v, kDecodeStateDraw, 2));
  next_draw_ = draw;
  sampled_count_ = 0;  // a new run: tokens of an earlier one not taken are forgotten
  return {};
}

Status CudaBackend::push_sampled() {
  if (sampled_count_ == kMaxSampledInFlight)
    return Status(ErrorCode::invalid_argument, "cuda: more than " + std::to_string(kMaxSampledInFlight) +
                                                   " sampled tokens queued and not taken");
  const int slot = (sampled_head_ + sampled_count_) % kMaxSampledInFlight;
  PIXTRAL_CUDA_CHECK(cudaEventRecord(sampled_done_[slot], stream_));
  sampled_draw_[slot] = next_draw_++;
  ++sampled_count_;
  return {};
}

Status CudaBackend::take_sampled_token(int* token) {
  *token = -1;
  if (sampled_count_ == 0) return Status(ErrorCode::invalid_argument, "cuda: no sampled token to take");
  const int slot = sampled_head_;
  sampled_head_ = (sampled_head_ + 1) % kMaxSampledInFlight;
  --sampled_count_;
  PIXTRAL_CUDA_CHECK(cudaEventSynchronize(sampled_done_[slot]));
  // The kernel's write to mapped memory is visible once its completion is observed (it ends with a system fence).
  *token = static_cast<volatile int*>(sampled_host_)[sampled_draw_[slot] % kSampledRing];
  return {};
}

// ---- memory ------------------------------------------------------------------------------------------------

Status CudaBackend::injected_failure(std::size_t bytes, std::string_view what) {
  ++allocation_attempts_;
  if (fail_after_ > 0 && --fail_after_ == 0)
    return Status(ErrorCode::out_of_memory, "out of GPU memory allocating " + std::string(what) + " (" +
                                                mib(bytes) + "; injected failure)");
  return {};
}

Status CudaBackend::out_of_memory(std::size_t bytes, std::string_view what) {
  (void)cudaGetLastError();  // clear the (non-sticky) allocation error
  std::size_t free_b = 0, total_b = 0;
  (void)memory_info(&free_b, &total_b);  // best effort: the message still names what did not fit
  return Status(ErrorCode::out_of_memory, "out of GPU memory allocating " + std::string(what) + " (" + mib(bytes) +
                                              " requested, " + mib(free_b) + " free of " + mib(total_b) + ")");
}

Status CudaBackend::trim_pool() {
  (void)cudaGetLastError();  // the failed allocation's (non-sticky) error
  if (!capturing_) PIXTRAL_RETURN_IF_ERROR(join_side());  // no prefetch of KV_L2_SIDE still reads what is trimmed
  PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // frees queued on the stream have happened
  PIXTRAL_CUDA_CHECK(cudaMemPoolTrimTo(pool_, 0));
  return {};
}

Result<void*> CudaBackend::device_alloc(std::size_t bytes, std::string_view what) {
  PIXTRAL_RETURN_IF_ERROR(injected_failure(bytes, what));
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, std::max<std::size_t>(bytes, 16));
  if (e == cudaErrorMemoryAllocation && pool_) {  // the pool may hold freed activations: give them back, retry
    PIXTRAL_RETURN_IF_ERROR(trim_pool());
    e = cudaMalloc(&p, std::max<std::size_t>(bytes, 16));
  }
  if (e == cudaErrorMemoryAllocation) return out_of_memory(bytes, what);
  if (e != cudaSuccess) return cuda_error(e, "cudaMalloc", __FILE__, __LINE__);
  allocated_ += bytes;
  peak_ = std::max(peak_, allocated_);
  return p;
}

void CudaBackend::device_free(void* p, std::size_t bytes) {
  if (!p) return;
  cudaFree(p);
  allocated_ -= std::min(allocated_, bytes);
}

Status CudaBackend::ensure(Scratch& s, std::size_t bytes, std::string_view what) {
  if (bytes <= s.cap) return {};
  if (capturing_)
    return Status(ErrorCode::internal, "cuda: scratch '" + std::string(what) +
                                           "' must grow during graph capture; run the step once before capturing");
  PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // queued work may still use the old buffer
  const std::size_t want = std::max(bytes, s.cap + s.cap / 2);
  device_free(s.ptr, s.cap);
  s = {};
  auto p = device_alloc(want, what);
  if (!p.ok()) return p.status();
  s.ptr = *p;
  s.cap = want;
  return {};
}

Result<void*> CudaBackend::stage(const void* host, std::size_t bytes) {
  const std::size_t half = kStagingBytes / 2;
  const std::size_t padded = (bytes + 15) / 16 * 16;  // keep every copy 16-byte aligned
  if (padded > half)
    return Status(ErrorCode::invalid_argument,
                  "cuda: " + mib(bytes) + " of host indices in one op exceeds the staging buffer (" + mib(half) + ")");
  if (stage_reuse_ && !capturing_)
    for (const StagedCopy& e : staged_)
      if (e.half >= 0 && e.bytes == bytes && std::memcmp(staging_host_ + e.off, host, bytes) == 0)
        return static_cast<void*>(static_cast<char*>(staging_dev_.ptr) + e.off);
  int h = staging_half_;
  if (staging_off_ + padded > std::size_t(h + 1) * half) {  // move to the other half
    if (!capturing_) {
      PIXTRAL_CUDA_CHECK(cudaEventRecord(staging_done_[h], stream_));
      staging_pending_[h] = true;
    }
    h ^= 1;
    staging_half_ = h;
    staging_off_ = std::size_t(h) * half;
    for (StagedCopy& e : staged_)
      if (e.half == h) e.half = -1;  // about to be overwritten
    if (staging_pending_[h]) {  // the previous lap's copies from this half must have run
      PIXTRAL_CUDA_CHECK(cudaEventSynchronize(staging_done_[h]));
      staging_pending_[h] = false;
    }
  }
  std::memcpy(staging_host_ + staging_off_, host, bytes);  // exactly `bytes`: never read past the caller's data
  void* dev = static_cast<char*>(staging_dev_.ptr) + staging_off_;
  PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(dev, staging_host_ + staging_off_, bytes, cudaMemcpyHostToDevice, stream_));
  if (stage_reuse_ && !capturing_) {
    staged_[staged_next_] = {staging_off_, bytes, h};
    staged_next_ = (staged_next_ + 1) % int(std::size(staged_));
  }
  bytes = padded;
  staging_off_ += bytes;
  return dev;
}

Result<ops::Tensor> CudaBackend::alloc(std::int64_t rows, std::int64_t cols, DType dtype, std::string_view what) {
  if (rows < 0 || cols < 0) return Status(ErrorCode::invalid_argument, "cuda alloc: negative shape");
  if (dtype != DType::f32 && dtype != DType::bf16)
    return Status(ErrorCode::unsupported, std::string("cuda alloc ") + std::string(what) + ": dtype " +
                                              dtype_name(dtype) + " (activations are f32 or bf16)");
  ops::Tensor t{nullptr, rows, cols, dtype};
  if (!pool_) {
    auto p = device_alloc(t.bytes(), what);
    if (!p.ok()) return p.status();
    t.data = *p;
    return t;
  }
  // Stream-ordered: the memory is usable by work queued on stream_ after this call (every op runs there).
  if (capturing_)
    return Status(ErrorCode::internal, "cuda alloc " + std::string(what) + " inside a captured graph");
  const std::size_t bytes = std::max<std::size_t>(t.bytes(), 16);
  PIXTRAL_RETURN_IF_ERROR(injected_failure(bytes, what));
  cudaError_t e = cudaMallocFromPoolAsync(&t.data, bytes, pool_, stream_);
  if (e == cudaErrorMemoryAllocation) {  // its own free blocks may be too small: return them whole, retry once
    PIXTRAL_RETURN_IF_ERROR(trim_pool());
    e = cudaMallocFromPoolAsync(&t.data, bytes, pool_, stream_);
  }
  if (e == cudaErrorMemoryAllocation) return out_of_memory(bytes, what);
  if (e != cudaSuccess) return cuda_error(e, "cudaMallocFromPoolAsync", __FILE__, __LINE__);
  allocated_ += t.bytes();
  peak_ = std::max(peak_, allocated_);
  return t;
}

void CudaBackend::free(ops::Tensor& t) {
  if (side_pending_ && !capturing_) (void)join_side();  // the free after KV_L2_SIDE's prefetches (a failure: sticky)
  if (pool_ && t.data) {
    cudaFreeAsync(t.data, stream_);  // after the work queued so far; no wait
    allocated_ -= std::min(allocated_, std::size_t(t.bytes()));
  } else {
    device_free(t.data, t.bytes());
  }
  t.data = nullptr;
}

// Copy one host tensor into device bf16 at dst (converting f16/f32 on the device, chunk by chunk).
Status CudaBackend::upload_into(bf16* dst, const WeightView& w) {
  if (w.dtype != DType::f32 && w.dtype != DType::bf16 && w.dtype != DType::f16)
    return Status(ErrorCode::unsupported, "cuda upload " + w.name + ": dtype " + dtype_name(w.dtype));
  const std::size_t n = std::size_t(w.numel());
  if (w.dtype == DType::bf16) {
    PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(dst, w.data, n * 2, cudaMemcpyHostToDevice, stream_));
  } else {
    const std::size_t esz = dtype_size(w.dtype);
    const std::size_t chunk = kUploadChunk / esz;
    PIXTRAL_RETURN_IF_ERROR(ensure(convert_, std::min(n, chunk) * esz, "weight conversion buffer"));
    for (std::size_t i = 0; i < n; i += chunk) {
      const std::size_t m = std::min(chunk, n - i);
      PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(convert_.ptr, static_cast<const char*>(w.data) + i * esz, m * esz,
                                         cudaMemcpyHostToDevice, stream_));
      PIXTRAL_RETURN_IF_ERROR(launch_convert(dst + i, DType::bf16, convert_.ptr, w.dtype, std::int64_t(m), stream_));
    }
  }
  PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return {};
}

Result<ops::Weight> CudaBackend::upload_weight(const WeightView& w) {
  const WeightView* one[1] = {&w};
  return upload_weight_stacked(one, w.name);
}

Result<ops::Weight> CudaBackend::upload_weight_stacked(std::span<const WeightView* const> parts,
                                                       const std::string& name) {
  if (parts.empty()) return Status(ErrorCode::invalid_argument, "cuda upload " + name + ": no parts");
  const std::int64_t cols = parts[0]->cols();
  std::int64_t rows = 0;
  for (const WeightView* p : parts) {
    if (p->cols() != cols)
      return Status(ErrorCode::invalid_argument, "cuda upload " + name + ": parts have different column counts");
    rows += p->rows();
  }
  const std::size_t n = std::size_t(rows * cols);
  auto mem = device_alloc(n * 2, name);
  if (!mem.ok()) return mem.status();
  auto* dst = static_cast<bf16*>(*mem);
  std::size_t offset = 0;
  for (const WeightView* p : parts) {
    Status st = upload_into(dst + offset, *p);
    if (!st.ok()) {
      device_free(dst, n * 2);
      return st;
    }
    offset += std::size_t(p->numel());
  }
  ops::Weight out;
  out.data = dst;
  out.dtype = DType::bf16;
  out.rows = rows;
  out.cols = cols;
  out.name = name;
  return out;
}

Result<ops::Weight> CudaBackend::upload_weight_host(const WeightView& w) {
  // Pinned, mapped host memory the kernels read directly (the embedding gather: one row per decoded token crosses
  // the bus; a prefill chunk's rows in one pass). Where the host cannot pin that much: on the device as usual
  // (the load's device-memory check then counts it; the memory plan had assumed host memory).
  const std::size_t n = std::size_t(w.numel());
  if (n == 0) return upload_weight(w);
  void* host = nullptr;
  if (cudaHostAlloc(&host, n * 2, cudaHostAllocMapped) != cudaSuccess) {
    (void)cudaGetLastError();
    return upload_weight(w);
  }
  auto* dst = static_cast<std::uint16_t*>(host);
  if (w.dtype == DType::bf16) {
    std::memcpy(dst, w.data, n * 2);
  } else {  // f16/f32 checkpoints: rounded to bf16 as upload_weight does on the device
    for (std::size_t i = 0; i < n; ++i) {
      const float v = w.dtype == DType::f32 ? static_cast<const float*>(w.data)[i]
                                            : f16_to_f32(static_cast<const std::uint16_t*>(w.data)[i]);
      dst[i] = f32_to_bf16(v);
    }
  }
  void* dev = nullptr;
  if (const cudaError_t e = cudaHostGetDevicePointer(&dev, host, 0); e != cudaSuccess) {
    cudaFreeHost(host);
    return cuda_error(e, "cudaHostGetDevicePointer", __FILE__, __LINE__);
  }
  host_weights_[dev] = host;
  ops::Weight out;
  out.data = dev;
  out.dtype = DType::bf16;
  out.rows = w.rows();
  out.cols = w.cols();
  out.name = w.name;
  return out;
}

void CudaBackend::free_weight(ops::Weight& w) {
  forget_q4tma_successors();  // none of its L2 prefetch hints may outlive a weight
  if (auto it = host_weights_.find(w.data); it != host_weights_.end()) {
    cudaFreeHost(it->second);
    host_weights_.erase(it);
    w.data = nullptr;
    return;
  }
  device_free(const_cast<void*>(w.data), w.quantized() ? quantized_alloc_bytes(w.format, w.rows, w.cols)
                                                       : std::size_t(w.rows * w.cols) * 2);
  w.data = nullptr;
}

Status CudaBackend::upload(ops::Tensor dst, const float* host) {
  const std::size_t n = std::size_t(dst.rows * dst.cols);
  if (dst.dtype == DType::f32) {
    PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(dst.data, host, n * 4, cudaMemcpyHostToDevice, stream_));
  } else if (dst.dtype == DType::bf16) {
    std::vector<std::uint16_t> tmp(n);
    for (std::size_t i = 0; i < n; ++i) tmp[i] = f32_to_bf16(host[i]);
    PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(dst.data, tmp.data(), n * 2, cudaMemcpyHostToDevice, stream_));
    PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));  // tmp dies here
  } else {
    return Status(ErrorCode::unsupported, "cuda upload: tensor dtype must be f32 or bf16");
  }
  PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return {};
}

Status CudaBackend::download(const ops::Tensor& src, float* host) {
  const std::size_t n = std::size_t(src.rows * src.cols);
  if (src.dtype == DType::f32) {
    PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(host, src.data, n * 4, cudaMemcpyDeviceToHost, stream_));
    PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  } else if (src.dtype == DType::bf16) {
    std::vector<std::uint16_t> tmp(n);
    PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(tmp.data(), src.data, n * 2, cudaMemcpyDeviceToHost, stream_));
    PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (std::size_t i = 0; i < n; ++i) host[i] = bf16_to_f32(tmp[i]);
  } else {
    return Status(ErrorCode::unsupported, "cuda download: tensor dtype must be f32 or bf16");
  }
  return {};
}

Status CudaBackend::copy(ops::Tensor dst, const ops::Tensor& src) {
  if (dst.rows * dst.cols != src.rows * src.cols)
    return Status(ErrorCode::invalid_argument, "cuda copy: shapes differ");
  if (dst.dtype == src.dtype) {
    PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, src.bytes(), cudaMemcpyDeviceToDevice, stream_));
    return {};
  }
  return launch_convert(dst.data, dst.dtype, src.data, src.dtype, src.rows * src.cols, stream_);
}

Status CudaBackend::synchronize() {
  if (!capturing_) PIXTRAL_RETURN_IF_ERROR(join_side());  // KV_L2_SIDE's prefetches too
  PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  PIXTRAL_CUDA_CHECK(cudaGetLastError());
  return {};
}

// ---- extension ---------------------------------------------------------------------------------------------

Status CudaBackend::memory_info(std::size_t* free_bytes, std::size_t* total_bytes) {
  PIXTRAL_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
  if (pool_) {  // what the pool keeps but no tensor uses is free to us: a cudaMalloc that needs it trims the pool
    std::uint64_t reserved = 0, used = 0;
    PIXTRAL_CUDA_CHECK(cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemCurrent, &reserved));
    PIXTRAL_CUDA_CHECK(cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrUsedMemCurrent, &used));
    if (reserved > used) *free_bytes += std::size_t(reserved - used);
  }
  return {};
}

Status CudaBackend::begin_capture() {
  if (capturing_) return Status(ErrorCode::invalid_argument, "cuda: already capturing");
  PIXTRAL_RETURN_IF_ERROR(join_side());  // a capture may not wait for an event recorded before it began
  if (env_one("PIXTRAL_CUDA_KV_L2_SIDE")) PIXTRAL_RETURN_IF_ERROR(make_side());  // not created while capturing
  PIXTRAL_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
  capture_samples_ = false;
  return {};
}

Status CudaBackend::end_capture() {
  if (!capturing_) return Status(ErrorCode::invalid_argument, "cuda: end_capture without begin_capture");
  const Status joined = join_side();  // a capture ends with every forked stream joined
  capturing_ = false;
  cudaGraph_t g = nullptr;
  PIXTRAL_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
  if (!joined.ok()) {
    if (g) cudaGraphDestroy(g);
    return joined;
  }
  if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
  if (graph_) cudaGraphDestroy(graph_);
  graph_ = g;
  graph_exec_ = nullptr;
  graph_samples_ = capture_samples_;
  PIXTRAL_CUDA_CHECK(cudaGraphInstantiate(&graph_exec_, graph_, 0));
  return {};
}

Status CudaBackend::replay() {
  if (!graph_exec_) return Status(ErrorCode::invalid_argument, "cuda: replay without a captured graph");
  tl_before_replay(replays_, stream_);
  PIXTRAL_CUDA_CHECK(cudaGraphLaunch(graph_exec_, stream_));
  tl_after_replay(replays_++, stream_);
  if (graph_samples_) return push_sampled();
  return {};
}

Status CudaBackend::join_side() {
  if (!side_pending_) return {};
  side_pending_ = false;
  PIXTRAL_CUDA_CHECK(cudaStreamWaitEvent(stream_, side_join_, 0));
  return {};
}

Status CudaBackend::make_side() {
  if (!side_fork_) PIXTRAL_CUDA_CHECK(cudaEventCreateWithFlags(&side_fork_, cudaEventDisableTiming));
  if (!side_join_) PIXTRAL_CUDA_CHECK(cudaEventCreateWithFlags(&side_join_, cudaEventDisableTiming));
  if (!side_) PIXTRAL_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));  // last: side_ = ready
  return {};
}

Status CudaBackend::prefetch_kv_side(const void* k_cache, const void* v_cache, std::int64_t row_bytes,
                                     std::int64_t rows, const int* pos) {
  if (!side_ && capturing_) return {};  // the switch was set after the capture began: nothing to fork onto
  PIXTRAL_RETURN_IF_ERROR(make_side());
  // No join here: a join would give the next kernel of the chain a second predecessor. side_ runs its prefetches
  // in order, each after the kernel before its fork; the capture's end (or the next capture's start) joins them.
  PIXTRAL_CUDA_CHECK(cudaEventRecord(side_fork_, stream_));
  PIXTRAL_CUDA_CHECK(cudaStreamWaitEvent(side_, side_fork_, 0));
  side_pending_ = true;  // side_ is in the capture from here: joined even if what follows fails
  const std::int64_t cap = env_long("PIXTRAL_CUDA_KV_L2_SIDE_MB", 32) << 20;  // K and V bytes a layer at most
  PIXTRAL_RETURN_IF_ERROR(launch_kv_l2_prefetch(k_cache, v_cache, row_bytes, rows, cap, pos, side_));
  PIXTRAL_CUDA_CHECK(cudaEventRecord(side_join_, side_));
  return {};
}

}  // namespace pixtral::cuda

// ---- C entry points ------------------------------------------------------------------------------------------

namespace {

int fail(char* err, std::size_t errlen, pixtral::ErrorCode code, const std::string& msg) {
  if (err && errlen) std::snprintf(err, errlen, "%s", msg.c_str());
  return int(code);
}

std::string cuda_version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

}  // namespace

extern "C" __attribute__((visibility("default"))) int pixtral_cuda_abi() { return pixtral::cuda::kCudaAbiVersion; }

extern "C" __attribute__((visibility("default"))) int pixtral_cuda_create(int device, void** out, char* err,
                                                                          std::size_t errlen) {
  using pixtral::ErrorCode;
  *out = nullptr;
  // Name the driver problem precisely before cudart turns it into a generic error.
  if (!dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL)) {
    const char* e = dlerror();
    return fail(err, errlen, ErrorCode::device,
                std::string("no NVIDIA driver: libcuda.so.1 could not be loaded (") + (e ? e : "?") + ")");
  }
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  if (drv == 0) return fail(err, errlen, ErrorCode::device, "no NVIDIA driver is installed");
  if (drv < rt)
    return fail(err, errlen, ErrorCode::device,
                "NVIDIA driver too old: it supports CUDA " + cuda_version(drv) + ", this backend was built with CUDA " +
                    cuda_version(rt) + "; update the driver");
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0))
    return fail(err, errlen, ErrorCode::device, "no CUDA device found (driver CUDA " + cuda_version(drv) + ")");
  if (e == cudaErrorInsufficientDriver)
    return fail(err, errlen, ErrorCode::device,
                "NVIDIA driver insufficient for CUDA " + cuda_version(rt) + " (driver supports " + cuda_version(drv) +
                    ")");
  if (e != cudaSuccess)
    return fail(err, errlen, ErrorCode::device,
                std::string("cudaGetDeviceCount failed: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  if (device < 0 || device >= count)
    return fail(err, errlen, ErrorCode::invalid_argument,
                "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(count) + " found)");
  auto r = pixtral::cuda::CudaBackend::create(device);
  if (!r.ok()) return fail(err, errlen, r.status().code(), r.status().message());
  *out = static_cast<pixtral::ops::Backend*>(*r);
  return 0;
}

extern "C" __attribute__((visibility("default"))) void* pixtral_cuda_extension(void* backend) {
  auto* b = static_cast<pixtral::ops::Backend*>(backend);
  if (!b || b->name() != "cuda") return nullptr;
  return static_cast<pixtral::ops::CudaExtension*>(static_cast<pixtral::cuda::CudaBackend*>(b));
}
