// SPDX-License-Identifier: Apache-2.0
// CudaBackend: ops::Backend on one CUDA device (private to libpixtral_cuda.so; CUDA types allowed here).
// Activations are bf16 (f32 tensors are accepted everywhere, e.g. an fp32 residual stream); weights are bf16,
// converted once at upload. Every op is queued on one non-blocking stream; host spans (ids, positions, ranges)
// go through a pinned staging ring, so queuing an op never waits for the GPU. Scratch buffers grow on demand
// and are then reused: steady-state decode allocates nothing.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/cuda_ext.h"
#include "cuda/kernels.cuh"
#include "ops/backend.h"

namespace pixtral::cuda {

/// A device buffer that only grows.
struct Scratch {
  void* ptr = nullptr;
  std::size_t cap = 0;
};

class CudaBackend final : public ops::Backend, public ops::CudaExtension {
 public:
  ~CudaBackend() override;
  /// Create on `device` (cudaSetDevice, stream, cuBLAS handle, staging ring).
  static Result<CudaBackend*> create(int device);

  std::string name() const override { return "cuda"; }
  std::string device_name() const override { return device_name_; }
  DType activation_dtype() const override { return DType::bf16; }

  Result<ops::Tensor> alloc(std::int64_t rows, std::int64_t cols, DType dtype, std::string_view what) override;
  void free(ops::Tensor& t) override;
  Result<ops::Weight> upload_weight(const WeightView& w) override;
  void free_weight(ops::Weight& w) override;
  Result<ops::Weight> upload_weight_host(const WeightView& w) override;
  Result<ops::Weight> upload_weight_stacked(std::span<const WeightView* const> parts,
                                            const std::string& name) override;
  // Quantized weights (kernels_quant.cu): uploaded as bf16 row chunks, quantized on the device.
  Result<ops::Weight> upload_weight_quantized(const WeightView& w, ops::WeightFormat format) override;
  Result<ops::Weight> upload_weight_stacked_quantized(std::span<const WeightView* const> parts,
                                                      const std::string& name, ops::WeightFormat format) override;
  // The quantized-weights cache (cuda_weight_io.cu): straight copies of the packed values and the scales.
  Status download_weight(const ops::Weight& w, void* data, float* scales) override;
  Result<ops::Weight> upload_weight_prequantized(const void* data, const float* scales, std::int64_t rows,
                                                 std::int64_t cols, ops::WeightFormat format, DType dtype,
                                                 const std::string& name) override;
  Status upload(ops::Tensor dst, const float* host) override;
  Status download(const ops::Tensor& src, float* host) override;
  Status copy(ops::Tensor dst, const ops::Tensor& src) override;
  Status synchronize() override;

  Status embed(ops::Tensor out, const ops::Weight& table, std::span<const int> ids) override;
  Status matmul(ops::Tensor out, const ops::Tensor& x, const ops::Weight& w, const ops::Weight* bias) override;
  Status rms_norm(ops::Tensor out, const ops::Tensor& x, const ops::Weight& w, float eps) override;
  Status add_rms_norm(ops::Tensor h, const ops::Tensor& delta, ops::Tensor out, const ops::Weight& w,
                      float eps) override;
  Status add(ops::Tensor h, const ops::Tensor& delta) override;
  Status matmul_add(ops::Tensor h, ops::Tensor tmp, const ops::Tensor& x, const ops::Weight& w) override;
  Status rope(ops::Tensor x, int n_heads, int head_dim, std::span<const int> positions, float theta,
              ops::RopePairs pairs) override;
  Status rope_append_kv(ops::Tensor qkv, int n_heads, int n_kv_heads, int head_dim, int position, float theta,
                        ops::RopePairs pairs, ops::Tensor k_cache, ops::Tensor v_cache) override;
  Status rope_2d(ops::Tensor x, int n_heads, int head_dim, std::span<const int> rows, std::span<const int> cols,
                 float theta, ops::RopePairs pairs) override;
  Status attention(ops::Tensor out, const ops::Tensor& q, const ops::Tensor& k, const ops::Tensor& v,
                   const ops::AttentionParams& p) override;
  Status silu_mul(ops::Tensor out, const ops::Tensor& gate, const ops::Tensor& up) override;
  Status matmul_silu(ops::Tensor out, ops::Tensor gu, const ops::Tensor& x, const ops::Weight& w13) override;
  Status matmul_rope_append_kv(ops::Tensor qkv, const ops::Tensor& x, const ops::Weight& wqkv, int n_heads,
                               int n_kv_heads, int head_dim, int position, float theta, ops::RopePairs pairs,
                               ops::Tensor k_cache, ops::Tensor v_cache) override;
  Status rms_norm_matmul_rope_append_kv(ops::Tensor qkv, ops::Tensor xn, const ops::Tensor& h, const ops::Weight& norm,
                                        float eps, const ops::Weight& wqkv, int n_heads, int n_kv_heads, int head_dim,
                                        int position, float theta, ops::RopePairs pairs, ops::Tensor k_cache,
                                        ops::Tensor v_cache) override;
  Status rms_norm_matmul_silu(ops::Tensor out, ops::Tensor gu, ops::Tensor xn, const ops::Tensor& h,
                              const ops::Weight& norm, float eps, const ops::Weight& w13) override;
  Status gelu(ops::Tensor x) override;
  Status scatter_rows(ops::Tensor dst, const ops::Tensor& src, std::span<const int> rows) override;
  Status patch_embed(ops::Tensor out, const float* pixels_chw, int channels, int height, int width, int patch,
                     const ops::Weight& conv) override;
  // Sampling on the device (cuda_sample.cu).
  Status sample(const ops::Tensor& logits, const ops::SampleParams& p, std::uint64_t draw, int* token) override;

  // ops::CudaExtension
  void* stream() override { return stream_; }
  Status memory_info(std::size_t* free_bytes, std::size_t* total_bytes) override;
  std::size_t allocated_bytes() const override { return allocated_; }
  std::size_t peak_allocated_bytes() const override { return peak_; }
  Status begin_capture() override;
  Status end_capture() override;
  Status replay() override;
  void fail_allocation_after(int n) override { fail_after_ = n; }
  long allocation_attempts() const override { return allocation_attempts_; }
  Status inject_device_fault() override;  // cuda_fault.cu
  int* decode_state() override { return static_cast<int*>(decode_state_.ptr); }
  Status set_decode_state(int position, int n_rows) override;
  Status set_decode_tokens(std::span<const int> ids) override;
  void set_device_state_mode(bool on) override { device_state_mode_ = on; }
  bool device_state_mode() const override { return device_state_mode_; }
  Status sample_to_state(const ops::Tensor& logits, const ops::SampleParams& p) override;  // cuda_sample.cu
  Status set_decode_draw(std::uint64_t draw) override;
  Status take_sampled_token(int* token) override;

 private:
  CudaBackend() = default;
  Status init(int device);
  /// cudaMalloc with fault injection and an out_of_memory message naming `what` and the free memory.
  Result<void*> device_alloc(std::size_t bytes, std::string_view what);
  void device_free(void* p, std::size_t bytes);
  /// The injected allocation failure (fail_allocation_after), if this allocation is the one.
  Status injected_failure(std::size_t bytes, std::string_view what);
  Status out_of_memory(std::size_t bytes, std::string_view what);
  /// After an allocation failed: wait for the queued work, then hand the pool's unused memory back to the driver.
  Status trim_pool();
  /// Copy one host tensor into device bf16 at dst (f16/f32 converted on the device).
  Status upload_into(bf16* dst, const WeightView& w);
  /// Ensure `s` holds `bytes` (grows by 1.5× after a stream sync; contents are not kept).
  Status ensure(Scratch& s, std::size_t bytes, std::string_view what);
  /// Copy host bytes to device through the pinned staging ring; returns the device address (valid for ops
  /// queued until the ring wraps, i.e. for the op being queued).
  Result<void*> stage(const void* host, std::size_t bytes);
  /// patch_embed's pixels, rounded to bf16 on host threads into pinned memory and copied asynchronously into
  /// pixels_; unsupported (pinned memory refused, or too many pixels) leaves the caller to copy the fp32 pixels
  /// instead; any other error (out of device memory) is the op's.
  Status upload_pixels_bf16(const float* pixels, std::size_t n);
  /// Device table of per-pair frequencies for RoPE (cached per theta/head_dim/kind).
  Result<const float*> rope_freq(float theta, int head_dim, bool two_d);
  /// x as bf16 for cuBLAS (x itself when already bf16, else converted into scratch).
  Result<const bf16*> as_bf16(const ops::Tensor& x, Scratch& s, std::string_view what);
  /// out[T, N] = x · Wᵀ + beta · out (beta 0 or 1), cuBLAS with fp32 accumulation.
  Status gemm(void* out, DType out_t, const bf16* x, const bf16* w, std::int64_t T, std::int64_t N, std::int64_t K,
              float beta = 0.f);
  /// The KV-append row of a decode step on the device: the decode state's slot (device-state mode) or `position`
  /// staged after checking it is inside both caches (else invalid_argument naming `op`).
  Result<const int*> append_position(const char* op, int position, const ops::Tensor& k_cache,
                                     const ops::Tensor& v_cache);
  /// matmul with an int8/int4 weight (kernels_quant.cu): quantized GEMV for T ≤ 4, else dequantized tiles + cuBLAS.
  Status matmul_quantized(ops::Tensor out, const ops::Tensor& x, const ops::Weight& w, const ops::Weight* bias,
                          float beta = 0.f);
  /// attention() while in device-state mode (key ranges from the decode state).
  Status attention_device_state(ops::Tensor out, const ops::Tensor& q, const ops::Tensor& k, const ops::Tensor& v,
                                const ops::AttentionParams& p);
  /// Workspace, tuning fields and launch shared by both attention paths.
  Status run_attention(AttentionLaunch& a);
  /// Queue a copy of host ints [first, first + n) of the decode state through a pinned slot.
  Status write_decode_state(const int* values, int first, int n);

  int device_ = 0;
  std::string device_name_;
  int n_sms_ = 0;
  int max_smem_ = 48 * 1024;
  int smem_per_sm_ = 100 * 1024;
  // The last QKV GEMV (matmul_rope_append_kv and its folded form) was one row with int4 weights: the decode
  // attention after it sizes its splits for the int4 GEMVs around it (AttentionLaunch::narrow_wave).
  bool decode_qkv_int4_ = false;
  cudaStream_t stream_ = nullptr;
  // PIXTRAL_CUDA_KV_L2_SIDE=1 (opt-in, A/B; PERF_NOTES v39 10.): before the int4 decode's QKV GEMV, a one-block kernel
  // on a second stream asks L2 for the layer's K and V rows [0, pos), forked from stream_ after the kernel before the
  // GEMV; joined into stream_ only where a capture ends or begins (no kernel of the chain gets it as a predecessor).
  // side_pending_: work on side_ not yet joined.
  cudaStream_t side_ = nullptr;
  cudaEvent_t side_fork_ = nullptr, side_join_ = nullptr;
  bool side_pending_ = false;
  Status join_side();
  Status make_side();  // the stream and its two events, once (never while capturing)
  Status prefetch_kv_side(const void* k_cache, const void* v_cache, std::int64_t row_bytes, std::int64_t rows,
                          const int* pos);
  // Activations (alloc/free) come from a stream-ordered pool that keeps what is freed: a second image or prompt
  // reuses the first one's memory without cudaMalloc/cudaFree (cudaFree waits for the whole device). Null where
  // the device has no memory pools or PIXTRAL_CUDA_POOL=0 (A/B switch): plain cudaMalloc then.
  cudaMemPool_t pool_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  Scratch cublas_ws_, convert_, im2col_, pixels_, attn_ws_, staging_dev_;
  std::unordered_map<const void*, void*> host_weights_;  // upload_weight_host: device pointer -> pinned host block
  Scratch sample_ws_;             // device sampler workspace (cuda_sample.cu)
  int* sample_host_ = nullptr;    // pinned: the sampled token
  /// The samplers' kernels (sample() and sample_to_state()); state: the decode state to read the draw from and
  /// advance, null for sample(). Checks the launches.
  Status queue_sampler(const ops::Tensor& logits, const ops::SampleParams& p, std::uint64_t draw, int* state);
  Scratch dequant_, quant_src_;  // quantized weights: prefill dequantization tile, bf16 rows being quantized
  Scratch q4corr_;                // int4 prefill passes: each x row's group corrections (launch_q4mma_rows)
  Scratch qrows_ws_;              // short quantized prefills: the K slices' partial sums (launch_qrows)
  Scratch qrows_xb_;              // and int4's x as the MMAs' B registers (launch_q4_corrections)
  char* staging_host_ = nullptr;  // pinned, kStagingBytes, two halves
  std::uint16_t* pixels_host_ = nullptr;  // pinned: an image's pixels as bf16 (patch_embed), pixels_host_n_ values
  std::size_t pixels_host_n_ = 0;
  cudaEvent_t pixels_copied_ = nullptr;   // recorded after the last copy out of pixels_host_
  bool pixels_copy_pending_ = false;
  std::size_t staging_off_ = 0;  // absolute offset of the next copy in the ring
  int staging_half_ = 0;          // the half staging_off_ is in (explicit: an exactly full half is ambiguous)
  cudaEvent_t staging_done_[2] = {nullptr, nullptr};
  bool staging_pending_[2] = {false, false};
  // The last few staged copies, reused when an op stages the same bytes again (every layer's rope positions and
  // attention key ranges): each copy in the stream costs a few µs of idle GPU between kernels. An entry lives until
  // the ring re-enters its half (the device bytes are then rewritten); none is used or made during graph capture.
  struct StagedCopy {
    std::size_t off = 0, bytes = 0;
    int half = -1;  // -1: empty
  };
  StagedCopy staged_[4];
  int staged_next_ = 0;
  bool stage_reuse_ = true;  // PIXTRAL_CUDA_STAGE_REUSE=0: copy every time (A/B)
  struct RopeTable {
    float theta;
    int head_dim;
    bool two_d;
    float* dev;
  };
  std::vector<RopeTable> rope_tables_;
  std::vector<int> host_ints_;
  std::size_t allocated_ = 0, peak_ = 0;
  int fail_after_ = 0;
  long allocation_attempts_ = 0;  // device allocations tried (each passes injected_failure once)
  bool capturing_ = false;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t graph_exec_ = nullptr;
  long replays_ = 0;  // graph launches so far (the developer timeline's window, timeline.cuh)
  // Device decode state (cuda_ext.h) and the pinned slots its host copies come from (one event per slot, so a
  // slot is rewritten only after its previous copy ran).
  static constexpr int kDecodeSlots = 32;
  Scratch decode_state_;
  int* decode_host_ = nullptr;  // pinned, kDecodeSlots × kDecodeStateInts
  cudaEvent_t decode_done_[kDecodeSlots] = {};
  bool decode_pending_[kDecodeSlots] = {};
  int decode_slot_ = 0;
  // The sampler inside the graph (cuda_ext.h): each sampling writes its token into the mapped host ring at draw %
  // kSampledRing; the FIFO holds the samplings queued and not yet taken (their event and draw), oldest at
  // sampled_head_.
  static constexpr int kSampledRing = 2 * kMaxSampledInFlight;
  int* sampled_host_ = nullptr;    // pinned and mapped, kSampledRing ints
  int* sampled_dev_ = nullptr;     // its device address
  cudaEvent_t sampled_done_[kMaxSampledInFlight] = {};
  std::uint64_t sampled_draw_[kMaxSampledInFlight] = {};
  int sampled_head_ = 0, sampled_count_ = 0;
  std::uint64_t next_draw_ = 0;    // the draw the next sampling uses (set_decode_draw, + 1 a sampling)
  bool graph_samples_ = false;     // the captured graph ends with sample_to_state
  bool capture_samples_ = false;   // sample_to_state was called during the capture in progress
  /// Record the end of a sampling just queued (eager or replay) in the FIFO.
  Status push_sampled();
  bool device_state_mode_ = false;
};

}  // namespace pixtral::cuda
