// SPDX-License-Identifier: Apache-2.0
// CudaBackend ops: shape validation (specific invalid_argument messages), staging of host spans, and dispatch to
// the launchers in kernels_*.cu or cuBLAS. Semantics are those of the CPU twin (engine/src/cpu); see
// ops/backend.h for each op's contract.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/bands.h"
#include "cuda/cuda_backend.h"
#include "cuda/env_switch.h"
#include "cuda/kernels_quant.cuh"

namespace pixtral::cuda {
namespace {

// Appended piece by piece: `"[" + std::to_string(...)` inlines into a known GCC 12 -Wrestrict false positive.
std::string shape(const ops::Tensor& t) {
  std::string s(1, '[');
  s += std::to_string(t.rows);
  s += ',';
  s += std::to_string(t.cols);
  s += "] ";
  s += dtype_name(t.dtype);
  return s;
}
Status bad(const std::string& op, const std::string& msg) {
  return Status(ErrorCode::invalid_argument, "cuda " + op + ": " + msg);
}
bool is_act(DType t) { return t == DType::f32 || t == DType::bf16; }
const bf16* wptr(const ops::Weight& w) { return static_cast<const bf16*>(w.data); }
// PIXTRAL_CUDA_ATTENTION=generic|flash|decode forces one attention kernel (tests, A/B timing); unset: automatic.
AttentionPath attention_path_override() {
  const char* e = std::getenv("PIXTRAL_CUDA_ATTENTION");
  if (!e) return AttentionPath::automatic;
  if (!std::strcmp(e, "generic")) return AttentionPath::generic;
  if (!std::strcmp(e, "flash")) return AttentionPath::flash;
  if (!std::strcmp(e, "decode")) return AttentionPath::decode;
  return AttentionPath::automatic;
}
Status too_many_rows(const std::string& op, std::int64_t rows) {
  return bad(op, "device-state mode serves at most " + std::to_string(kDecodeStateMaxRows) + " rows, got " +
                     std::to_string(rows));
}

}  // namespace

Status CudaBackend::gemm(void* out, DType out_t, const bf16* x, const bf16* w, std::int64_t T, std::int64_t N,
                         std::int64_t K, float beta) {
  // Column-major view: outᵀ[N, T] = W[N, K] (stored as col-major [K, N], transposed) · xᵀ[K, T].
  const float alpha = 1.f;
  PIXTRAL_CUBLAS_CHECK(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, int(N), int(T), int(K), &alpha, w,
                                    CUDA_R_16BF, int(K), x, CUDA_R_16BF, int(K), &beta, out,
                                    out_t == DType::f32 ? CUDA_R_32F : CUDA_R_16BF, int(N), CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
  return {};
}

Result<const bf16*> CudaBackend::as_bf16(const ops::Tensor& x, Scratch& s, std::string_view what) {
  if (x.dtype == DType::bf16) return static_cast<const bf16*>(x.data);
  PIXTRAL_RETURN_IF_ERROR(ensure(s, std::size_t(x.rows * x.cols) * 2, what));
  PIXTRAL_RETURN_IF_ERROR(launch_convert(s.ptr, DType::bf16, x.data, x.dtype, x.rows * x.cols, stream_));
  return static_cast<const bf16*>(s.ptr);
}

Status CudaBackend::embed(ops::Tensor out, const ops::Weight& table, std::span<const int> ids) {
  if (out.rows != std::int64_t(ids.size()) || out.cols != table.cols)
    return bad("embed", "out " + shape(out) + " for " + std::to_string(ids.size()) + " ids of a table with " +
                            std::to_string(table.cols) + " columns");
  if (device_state_mode_ && !ids.empty()) {  // token ids from the decode state (cuda_ext.h)
    if (out.rows > kDecodeStateMaxRows) return too_many_rows("embed", out.rows);
    return launch_embed(out.data, out.dtype, wptr(table), decode_state() + kDecodeStateTokens, out.rows, out.cols,
                        table.rows, stream_);
  }
  for (int id : ids)
    if (id < 0 || id >= table.rows)
      return bad("embed", "token id " + std::to_string(id) + " outside [0, " + std::to_string(table.rows) + ")");
  if (ids.empty()) return {};
  auto dev = stage(ids.data(), ids.size_bytes());
  if (!dev.ok()) return dev.status();
  return launch_embed(out.data, out.dtype, wptr(table), static_cast<const int*>(*dev), out.rows, out.cols,
                      table.rows, stream_);
}

Status CudaBackend::matmul(ops::Tensor out, const ops::Tensor& x, const ops::Weight& w, const ops::Weight* bias) {
  const std::int64_t T = x.rows, K = x.cols, N = w.rows;
  if (w.cols != K || out.rows != T || out.cols != N || !is_act(x.dtype) || !is_act(out.dtype))
    return bad("matmul", "x " + shape(x) + " · " + w.name + " [" + std::to_string(w.rows) + "," +
                             std::to_string(w.cols) + "]ᵀ -> out " + shape(out));
  if (bias && bias->rows * bias->cols != N)
    return bad("matmul", "bias " + bias->name + " has " + std::to_string(bias->rows * bias->cols) + " values, need " +
                             std::to_string(N));
  if (T == 0) return {};
  if (w.quantized()) return matmul_quantized(out, x, w, bias);
  const bf16* b = bias ? wptr(*bias) : nullptr;
  if (gemv_supported(T, K, x.data, x.dtype, w.data))
    return launch_gemv(out.data, out.dtype, x.data, x.dtype, wptr(w), b, T, N, K, stream_);
  auto xb = as_bf16(x, convert_, "matmul input conversion buffer");
  if (!xb.ok()) return xb.status();
  PIXTRAL_RETURN_IF_ERROR(gemm(out.data, out.dtype, *xb, wptr(w), T, N, K));
  if (b) return launch_bias_add(out.data, out.dtype, b, T, N, stream_);
  return {};
}

// Prefill: one GEMM with beta = 1 reads h and writes round(h + x·Wᵀ) — no product tensor written and read back, and
// the row norm after it reads h alone (add_rms_norm read h and the product and wrote h). Rows the one-row GEMVs
// serve (decode): the product rounded to h's dtype and added in the GEMV's epilogue (gemv_modes.cuh, residual mode:
// the bits of this op's default with tmp in h's dtype), so the norm after it is the decode step's only other kernel.
Status CudaBackend::matmul_add(ops::Tensor h, ops::Tensor tmp, const ops::Tensor& x, const ops::Weight& w) {
  const std::int64_t T = x.rows, K = x.cols, N = w.rows;
  if (w.cols != K || h.rows != T || h.cols != N || !is_act(x.dtype) || !is_act(h.dtype))
    return bad("matmul_add", "x " + shape(x) + " · " + w.name + " [" + std::to_string(w.rows) + "," +
                                 std::to_string(w.cols) + "]ᵀ -> h " + shape(h));
  if (T == 0) return {};
  if (w.quantized() && w.scales && qgemv_supported(T, K, x.data, x.dtype, w.data, w.format))
    return launch_qgemv_add(h.data, h.dtype, x.data, x.dtype, static_cast<const std::uint8_t*>(w.data), w.scales,
                            w.format, T, N, K, stream_);
  if (!w.quantized() && gemv_supported(T, K, x.data, x.dtype, w.data))
    return launch_gemv_add(h.data, h.dtype, x.data, x.dtype, wptr(w), T, N, K, stream_);
  if (w.quantized()) return matmul_quantized(h, x, w, nullptr, 1.f);
  auto xb = as_bf16(x, convert_, "matmul input conversion buffer");
  if (!xb.ok()) return xb.status();
  return gemm(h.data, h.dtype, *xb, wptr(w), T, N, K, 1.f);
}

Status CudaBackend::rms_norm(ops::Tensor out, const ops::Tensor& x, const ops::Weight& w, float eps) {
  if (out.rows != x.rows || out.cols != x.cols || w.rows * w.cols != x.cols || !is_act(x.dtype) ||
      !is_act(out.dtype) || (out.data == x.data && out.dtype != x.dtype))
    return bad("rms_norm", "x " + shape(x) + " out " + shape(out) + " weight " + w.name);
  return launch_rms_norm(out.data, out.dtype, x.data, x.dtype, wptr(w), x.rows, x.cols, eps, stream_);
}

Status CudaBackend::add_rms_norm(ops::Tensor h, const ops::Tensor& delta, ops::Tensor out, const ops::Weight& w,
                                 float eps) {
  if (delta.rows != h.rows || delta.cols != h.cols || out.rows != h.rows || out.cols != h.cols ||
      w.rows * w.cols != h.cols || out.data == h.data || !is_act(h.dtype) || !is_act(delta.dtype) ||
      !is_act(out.dtype))
    return bad("add_rms_norm", "h " + shape(h) + " delta " + shape(delta) + " out " + shape(out) + " weight " +
                                   w.name + (out.data == h.data ? " (out aliases h)" : ""));
  return launch_add_rms_norm(h.data, h.dtype, delta.data, delta.dtype, out.data, out.dtype, wptr(w), h.rows, h.cols,
                             eps, stream_);
}

Status CudaBackend::add(ops::Tensor h, const ops::Tensor& delta) {
  if (h.rows * h.cols != delta.rows * delta.cols || !is_act(h.dtype) || !is_act(delta.dtype))
    return bad("add", "h " + shape(h) + " delta " + shape(delta));
  return launch_add(h.data, h.dtype, delta.data, delta.dtype, h.rows * h.cols, stream_);
}

Result<const float*> CudaBackend::rope_freq(float theta, int head_dim, bool two_d) {
  for (const auto& t : rope_tables_)
    if (t.theta == theta && t.head_dim == head_dim && t.two_d == two_d) return static_cast<const float*>(t.dev);
  // Per-pair frequency, computed exactly as the CPU twin: f[k] = 1 / powf(theta, float(2k) / float(head_dim)).
  const int half = head_dim / 2;
  std::vector<float> f(half), pair(half);
  for (int k = 0; k < half; ++k) f[k] = 1.0f / std::pow(theta, float(2 * k) / float(head_dim));
  for (int m = 0; m < half; ++m) {
    if (!two_d) pair[m] = f[m];
    else pair[m] = m < head_dim / 4 ? f[2 * m] : f[2 * (m - head_dim / 4) + 1];
  }
  auto p = device_alloc(half * sizeof(float), "RoPE frequency table");
  if (!p.ok()) return p.status();
  PIXTRAL_CUDA_CHECK(cudaMemcpy(*p, pair.data(), half * sizeof(float), cudaMemcpyHostToDevice));
  rope_tables_.push_back({theta, head_dim, two_d, static_cast<float*>(*p)});
  return static_cast<const float*>(*p);
}

Status CudaBackend::rope(ops::Tensor x, int n_heads, int head_dim, std::span<const int> positions, float theta,
                         ops::RopePairs pairs) {
  if (head_dim <= 0 || head_dim % 2 || x.cols != std::int64_t(n_heads) * head_dim ||
      x.rows != std::int64_t(positions.size()) || !is_act(x.dtype))
    return bad("rope", "x " + shape(x) + " for " + std::to_string(n_heads) + " heads of " + std::to_string(head_dim) +
                           " and " + std::to_string(positions.size()) + " positions");
  if (x.rows == 0) return {};
  auto freq = rope_freq(theta, head_dim, false);
  if (!freq.ok()) return freq.status();
  if (device_state_mode_) {  // positions from the decode state (cuda_ext.h)
    if (x.rows > kDecodeStateMaxRows) return too_many_rows("rope", x.rows);
    const int* p = decode_state() + kDecodeStatePositions;
    return launch_rope(x.data, x.dtype, x.rows, n_heads, head_dim, p, p, *freq, head_dim / 2,
                       pairs == ops::RopePairs::halves, stream_);
  }
  auto pos = stage(positions.data(), positions.size_bytes());
  if (!pos.ok()) return pos.status();
  const int* p = static_cast<const int*>(*pos);
  return launch_rope(x.data, x.dtype, x.rows, n_heads, head_dim, p, p, *freq, head_dim / 2,
                     pairs == ops::RopePairs::halves, stream_);
}

Result<const int*> CudaBackend::append_position(const char* op, int position, const ops::Tensor& k_cache,
                                                const ops::Tensor& v_cache) {
  if (device_state_mode_) return decode_state() + kDecodeStatePositions;  // cuda_ext.h
  if (position < 0 || position >= k_cache.rows || position >= v_cache.rows)
    return bad(op, "position " + std::to_string(position) + " outside the cache (" + std::to_string(k_cache.rows) +
                       " rows)");
  auto pos = stage(&position, sizeof position);
  if (!pos.ok()) return pos.status();
  return static_cast<const int*>(*pos);
}

Status CudaBackend::rope_append_kv(ops::Tensor qkv, int n_heads, int n_kv_heads, int head_dim, int position,
                                   float theta, ops::RopePairs pairs, ops::Tensor k_cache, ops::Tensor v_cache) {
  const std::int64_t kvd = std::int64_t(n_kv_heads) * head_dim;
  if (head_dim <= 0 || head_dim % 2 || qkv.rows != 1 || qkv.cols != std::int64_t(n_heads) * head_dim + 2 * kvd ||
      k_cache.cols != kvd || v_cache.cols != kvd || k_cache.dtype != v_cache.dtype || !is_act(qkv.dtype) ||
      !is_act(k_cache.dtype))
    return bad("rope_append_kv", "qkv " + shape(qkv) + " caches " + shape(k_cache) + " / " + shape(v_cache) +
                                     " for " + std::to_string(n_heads) + "+" + std::to_string(n_kv_heads) +
                                     " heads of " + std::to_string(head_dim));
  auto freq = rope_freq(theta, head_dim, false);
  if (!freq.ok()) return freq.status();
  auto p = append_position("rope_append_kv", position, k_cache, v_cache);
  if (!p.ok()) return p.status();
  return launch_rope_append(qkv.data, qkv.dtype, k_cache.data, v_cache.data, k_cache.dtype, *p, n_heads, n_kv_heads,
                            head_dim, *freq, pairs == ops::RopePairs::halves, stream_);
}

Status CudaBackend::matmul_rope_append_kv(ops::Tensor qkv, const ops::Tensor& x, const ops::Weight& wqkv,
                                          int n_heads, int n_kv_heads, int head_dim, int position, float theta,
                                          ops::RopePairs pairs, ops::Tensor k_cache, ops::Tensor v_cache) {
  const std::int64_t K = x.cols, kvd = std::int64_t(n_kv_heads) * head_dim;
  decode_qkv_int4_ = qkv.rows == 1 && wqkv.format == quant::Format::int4_g128;
  const bool shapes = x.rows == 1 && qkv.rows == 1 && wqkv.cols == K && wqkv.rows == qkv.cols && head_dim > 0 &&
                      head_dim % 2 == 0 && qkv.cols == std::int64_t(n_heads) * head_dim + 2 * kvd &&
                      k_cache.cols == kvd && v_cache.cols == kvd && is_act(x.dtype) && is_act(qkv.dtype) &&
                      k_cache.dtype == qkv.dtype && v_cache.dtype == qkv.dtype;
  const auto* q8 = static_cast<const std::uint8_t*>(wqkv.data);
  // PIXTRAL_CUDA_FUSE_ROPE=0: the unfused path (A/B of the fusion with one binary).
  static const bool fuse = [] {
    return !env_zero("PIXTRAL_CUDA_FUSE_ROPE");
  }();
  const bool fusable =
      fuse && shapes && (wqkv.quantized() ? wqkv.scales && qgemv_supported(1, K, x.data, x.dtype, q8, wqkv.format)
                                  : gemv_supported(1, K, x.data, x.dtype, wqkv.data));
  if (!fusable)
    return ops::Backend::matmul_rope_append_kv(qkv, x, wqkv, n_heads, n_kv_heads, head_dim, position, theta, pairs,
                                               k_cache, v_cache);
  auto freq = rope_freq(theta, head_dim, false);
  if (!freq.ok()) return freq.status();
  auto p = append_position("matmul_rope_append_kv", position, k_cache, v_cache);
  if (!p.ok()) return p.status();
  const bool halves = pairs == ops::RopePairs::halves;
  if (wqkv.quantized())
    return launch_qgemv_rope(qkv.data, qkv.dtype, x.data, x.dtype, q8, wqkv.scales, wqkv.format, K, k_cache.data,
                             v_cache.data, k_cache.dtype, *p, n_heads, n_kv_heads, head_dim, *freq, halves, stream_);
  return launch_gemv_rope(qkv.data, qkv.dtype, x.data, x.dtype, wptr(wqkv), K, k_cache.data, v_cache.data,
                          k_cache.dtype, *p, n_heads, n_kv_heads, head_dim, *freq, halves, stream_);
}

Status CudaBackend::rope_2d(ops::Tensor x, int n_heads, int head_dim, std::span<const int> rows,
                            std::span<const int> cols, float theta, ops::RopePairs pairs) {
  if (head_dim <= 0 || head_dim % 4 || x.cols != std::int64_t(n_heads) * head_dim ||
      x.rows != std::int64_t(rows.size()) || rows.size() != cols.size() || !is_act(x.dtype))
    return bad("rope_2d", "x " + shape(x) + " for " + std::to_string(n_heads) + " heads of " +
                              std::to_string(head_dim) + " and " + std::to_string(rows.size()) + "/" +
                              std::to_string(cols.size()) + " positions");
  if (x.rows == 0) return {};
  auto freq = rope_freq(theta, head_dim, true);
  if (!freq.ok()) return freq.status();
  host_ints_.assign(rows.begin(), rows.end());
  host_ints_.insert(host_ints_.end(), cols.begin(), cols.end());
  auto pos = stage(host_ints_.data(), host_ints_.size() * sizeof(int));
  if (!pos.ok()) return pos.status();
  const int* p = static_cast<const int*>(*pos);
  return launch_rope(x.data, x.dtype, x.rows, n_heads, head_dim, p, p + rows.size(), *freq, head_dim / 4,
                     pairs == ops::RopePairs::halves, stream_);
}

Status CudaBackend::attention(ops::Tensor out, const ops::Tensor& q, const ops::Tensor& k, const ops::Tensor& v,
                              const ops::AttentionParams& p) {
  const std::int64_t qd = std::int64_t(p.n_heads) * p.head_dim, kd = std::int64_t(p.n_kv_heads) * p.head_dim;
  if (p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 || p.n_heads % p.n_kv_heads != 0 || q.cols != qd ||
      k.cols != kd || v.cols != kd || k.rows != v.rows || out.rows != q.rows || out.cols != qd || !is_act(out.dtype))
    return bad("attention", "q " + shape(q) + " k " + shape(k) + " v " + shape(v) + " out " + shape(out) + " for " +
                                std::to_string(p.n_heads) + "/" + std::to_string(p.n_kv_heads) + " heads of " +
                                std::to_string(p.head_dim));
  if (p.causal && !p.segments.empty()) return bad("attention", "causal and segments cannot be combined");
  if (out.data == q.data && q.rows > 0) return bad("attention", "out must not alias q");
  if (device_state_mode_) return attention_device_state(out, q, k, v, p);
  if (p.causal && (p.q_offset < 0 || p.q_offset + q.rows > k.rows))
    return bad("attention", "causal queries at " + std::to_string(p.q_offset) + ".." +
                                std::to_string(p.q_offset + q.rows) + " need that many keys, k has " +
                                std::to_string(k.rows));
  if (k.rows == 0 && q.rows > 0) return bad("attention", "no keys");
  for (int len : p.segments)
    if (len <= 0) return bad("attention", "segment lengths must be positive");
  const std::int64_t n_q = q.rows, n_kv = k.rows;
  // Key range per query row: [lo, hi).
  host_ints_.resize(std::size_t(2 * n_q));
  if (!p.segments.empty()) {
    std::int64_t total = 0;
    for (int s : p.segments) total += s;
    if (total != n_q || n_q != n_kv)
      return bad("attention", "segments sum to " + std::to_string(total) + " but there are " + std::to_string(n_q) +
                                  " queries and " + std::to_string(n_kv) + " keys");
    std::int64_t r = 0;
    for (int s : p.segments)
      for (int i = 0; i < s; ++i, ++r) {
        host_ints_[2 * r] = int(r - i);
        host_ints_[2 * r + 1] = int(r - i + s);
      }
  } else {
    for (std::int64_t i = 0; i < n_q; ++i) {
      host_ints_[2 * i] = 0;
      host_ints_[2 * i + 1] = p.causal ? int(std::min<std::int64_t>(n_kv, p.q_offset + i + 1)) : int(n_kv);
    }
  }
  if (n_q == 0) return {};
  int lo_min = int(n_kv), hi_max = 0;
  for (std::int64_t i = 0; i < n_q; ++i) {
    lo_min = std::min(lo_min, host_ints_[2 * i]);
    hi_max = std::max(hi_max, host_ints_[2 * i + 1]);
  }
  auto rng = stage(host_ints_.data(), host_ints_.size() * sizeof(int));
  if (!rng.ok()) return rng.status();
  AttentionLaunch a;
  a.out = out.data;
  a.out_t = out.dtype;
  a.q = q.data;
  a.k = k.data;
  a.v = v.data;
  a.q_t = q.dtype;
  a.k_t = k.dtype;
  a.v_t = v.dtype;
  a.n_q = n_q;
  a.n_kv = n_kv;
  a.n_heads = p.n_heads;
  a.n_kv_heads = p.n_kv_heads;
  a.head_dim = p.head_dim;
  a.scale = p.scale;
  a.key_range = static_cast<const int2*>(*rng);
  a.key_lo_min = std::min(lo_min, hi_max);
  a.key_hi_max = hi_max;
  return run_attention(a);
}

Status CudaBackend::attention_device_state(ops::Tensor out, const ops::Tensor& q, const ops::Tensor& k,
                                           const ops::Tensor& v, const ops::AttentionParams& p) {
  // Decode under a CUDA graph: query row i sees keys [0, state.position + i + 1); k/v rows bound the grid.
  if (!p.causal || !p.segments.empty())
    return bad("attention", "device-state mode serves the causal decoder only");
  if (q.rows > kDecodeStateMaxRows) return too_many_rows("attention", q.rows);
  if (q.rows == 0) return {};
  if (k.rows == 0) return bad("attention", "no keys");
  AttentionLaunch a;
  a.out = out.data;
  a.out_t = out.dtype;
  a.q = q.data;
  a.k = k.data;
  a.v = v.data;
  a.q_t = q.dtype;
  a.k_t = k.dtype;
  a.v_t = v.dtype;
  a.n_q = q.rows;
  a.n_kv = k.rows;
  a.n_heads = p.n_heads;
  a.n_kv_heads = p.n_kv_heads;
  a.head_dim = p.head_dim;
  a.scale = p.scale;
  a.dev_state = decode_state();
  a.key_lo_min = 0;
  a.key_hi_max = int(k.rows);
  return run_attention(a);
}

Status CudaBackend::run_attention(AttentionLaunch& a) {
  a.max_smem = max_smem_;
  a.smem_per_sm = smem_per_sm_;
  a.n_sms = n_sms_;
  a.narrow_wave = decode_qkv_int4_;
  a.path = attention_path_override();
  const std::int64_t ws = attention_workspace_floats(a);
  if (ws > 0) {
    PIXTRAL_RETURN_IF_ERROR(ensure(attn_ws_, std::size_t(ws) * 4, "attention split-KV workspace"));
    a.partial = static_cast<float*>(attn_ws_.ptr);
    a.partial_floats = std::int64_t(attn_ws_.cap / 4);
  }
  return launch_attention(a, stream_);
}

Status CudaBackend::silu_mul(ops::Tensor out, const ops::Tensor& gate, const ops::Tensor& up) {
  const std::int64_t n = gate.rows * gate.cols;
  if (up.rows * up.cols != n || out.rows * out.cols != n || !is_act(out.dtype) ||
      (out.data == gate.data && out.dtype != gate.dtype))
    return bad("silu_mul", "gate " + shape(gate) + " up " + shape(up) + " out " + shape(out));
  return launch_silu_mul(out.data, out.dtype, gate.data, gate.dtype, up.data, up.dtype, n, stream_);
}

Status CudaBackend::matmul_silu(ops::Tensor out, ops::Tensor gu, const ops::Tensor& x, const ops::Weight& w13) {
  const std::int64_t T = x.rows, K = x.cols, F = out.cols;
  if (w13.rows != 2 * F || w13.cols != K || out.rows != T || gu.rows != T || gu.cols != 2 * F || !is_act(x.dtype) ||
      !is_act(out.dtype))
    return bad("matmul_silu", "x " + shape(x) + " · " + w13.name + " [" + std::to_string(w13.rows) + "," +
                                  std::to_string(w13.cols) + "]ᵀ -> out " + shape(out));
  // Fused only where the unfused path would round g and u to the same dtype (gu's = out's).
  if (T >= 1 && out.dtype == gu.dtype) {
    if (!w13.quantized() && gemv_supported(T, K, x.data, x.dtype, w13.data))
      return launch_gemv_silu(out.data, out.dtype, x.data, x.dtype, wptr(w13), T, F, K, stream_);
    const auto* q = static_cast<const std::uint8_t*>(w13.data);
    if (w13.quantized() && w13.scales && qgemv_supported(T, K, x.data, x.dtype, q, w13.format))
      return launch_qgemv_silu(out.data, out.dtype, x.data, x.dtype, q, w13.scales, w13.format, T, F, K, stream_);
  }
  return ops::Backend::matmul_silu(out, gu, x, w13);
}

// The decode norm folded into the int4 GEMV after it (launch_q4tma_normed: every block normalizes h itself, with
// the norm kernel's bits, and block 0 writes xn): one kernel instead of two where it runs, else the norm and the op.
namespace {
// PIXTRAL_CUDA_FOLD_NORM=require: a norm that cannot be folded is an error (tst_quant_cuda: the fold is what it
// compares with the unfolded ops).
Status fold_refused(const char* op) {
  if (!env_is("PIXTRAL_CUDA_FOLD_NORM", "require")) return {};
  return Status(ErrorCode::unsupported, std::string(op) + " (PIXTRAL_CUDA_FOLD_NORM=require): the norm cannot be "
                                                          "folded into the GEMV here");
}
bool foldable_norm(const ops::Tensor& xn, const ops::Tensor& h, const ops::Weight& norm) {
  return h.rows == 1 && xn.rows == 1 && xn.cols == h.cols && h.dtype == DType::bf16 && xn.dtype == DType::bf16 &&
         !norm.quantized() && norm.dtype == DType::bf16 && norm.rows * norm.cols == h.cols && xn.data != h.data;
}
}  // namespace

Status CudaBackend::rms_norm_matmul_rope_append_kv(ops::Tensor qkv, ops::Tensor xn, const ops::Tensor& h,
                                                   const ops::Weight& norm, float eps, const ops::Weight& wqkv,
                                                   int n_heads, int n_kv_heads, int head_dim, int position,
                                                   float theta, ops::RopePairs pairs, ops::Tensor k_cache,
                                                   ops::Tensor v_cache) {
  const std::int64_t K = h.cols, kvd = std::int64_t(n_kv_heads) * head_dim;
  decode_qkv_int4_ = qkv.rows == 1 && wqkv.format == quant::Format::int4_g128;
  if (foldable_norm(xn, h, norm) && wqkv.format == quant::Format::int4_g128 && wqkv.scales && qkv.rows == 1 &&
      wqkv.cols == K && wqkv.rows == qkv.cols && head_dim > 0 && head_dim % 2 == 0 &&
      qkv.cols == std::int64_t(n_heads) * head_dim + 2 * kvd && k_cache.cols == kvd && v_cache.cols == kvd &&
      qkv.dtype == DType::bf16 && k_cache.dtype == DType::bf16 && v_cache.dtype == DType::bf16) {
    auto freq = rope_freq(theta, head_dim, false);
    if (!freq.ok()) return freq.status();
    auto p = append_position("rms_norm_matmul_rope_append_kv", position, k_cache, v_cache);
    if (!p.ok()) return p.status();
    const RopeAppendArgs ra{k_cache.data, v_cache.data, *p, *freq, n_heads, n_kv_heads, head_dim,
                            pairs == ops::RopePairs::halves};
    if (env_one("PIXTRAL_CUDA_KV_L2_SIDE"))  // opt-in (PERF_NOTES v39 10.): the layer's keys asked into L2 beside QKV
      PIXTRAL_RETURN_IF_ERROR(prefetch_kv_side(k_cache.data, v_cache.data, kvd * 2, k_cache.rows, *p));
    bool launched = false;
    PIXTRAL_RETURN_IF_ERROR(launch_q4tma_normed(static_cast<bf16*>(qkv.data), static_cast<const bf16*>(h.data),
                                                wptr(norm), static_cast<bf16*>(xn.data), eps,
                                                static_cast<const std::uint8_t*>(wqkv.data), wqkv.scales,
                                                int(qkv.cols), gemv_items(GemvMode::rope, int(qkv.cols), ra), int(K),
                                                GemvMode::rope, ra, stream_, &launched));
    if (launched) return {};
  }
  PIXTRAL_RETURN_IF_ERROR(fold_refused("rms_norm_matmul_rope_append_kv"));
  return ops::Backend::rms_norm_matmul_rope_append_kv(qkv, xn, h, norm, eps, wqkv, n_heads, n_kv_heads, head_dim,
                                                      position, theta, pairs, k_cache, v_cache);
}

Status CudaBackend::rms_norm_matmul_silu(ops::Tensor out, ops::Tensor gu, ops::Tensor xn, const ops::Tensor& h,
                                         const ops::Weight& norm, float eps, const ops::Weight& w13) {
  const std::int64_t K = h.cols, F = out.cols;
  if (foldable_norm(xn, h, norm) && w13.format == quant::Format::int4_g128 && w13.scales && w13.rows == 2 * F &&
      w13.cols == K && out.rows == 1 && gu.rows == 1 && gu.cols == 2 * F && out.dtype == DType::bf16 &&
      gu.dtype == DType::bf16) {
    bool launched = false;
    PIXTRAL_RETURN_IF_ERROR(launch_q4tma_normed(static_cast<bf16*>(out.data), static_cast<const bf16*>(h.data),
                                                wptr(norm), static_cast<bf16*>(xn.data), eps,
                                                static_cast<const std::uint8_t*>(w13.data), w13.scales, int(F),
                                                int(F), int(K), GemvMode::silu, {}, stream_, &launched));
    if (launched) return {};
  }
  PIXTRAL_RETURN_IF_ERROR(fold_refused("rms_norm_matmul_silu"));
  return ops::Backend::rms_norm_matmul_silu(out, gu, xn, h, norm, eps, w13);
}

Status CudaBackend::gelu(ops::Tensor x) { return launch_gelu(x.data, x.dtype, x.rows * x.cols, stream_); }

Status CudaBackend::scatter_rows(ops::Tensor dst, const ops::Tensor& src, std::span<const int> rows) {
  if (src.cols != dst.cols || src.rows != std::int64_t(rows.size()))
    return bad("scatter_rows", "src " + shape(src) + " dst " + shape(dst) + " with " + std::to_string(rows.size()) +
                                   " row indices");
  if (device_state_mode_ && !rows.empty()) {  // rows = the step's positions (KV append; cuda_ext.h)
    if (src.rows > kDecodeStateMaxRows) return too_many_rows("scatter_rows", src.rows);
    return launch_scatter_rows(dst.data, dst.dtype, src.data, src.dtype, decode_state() + kDecodeStatePositions,
                               src.rows, src.cols, stream_);
  }
  for (int r : rows)
    if (r < 0 || r >= dst.rows)
      return bad("scatter_rows", "row " + std::to_string(r) + " outside [0, " + std::to_string(dst.rows) + ")");
  if (rows.empty()) return {};
  auto dev = stage(rows.data(), rows.size_bytes());
  if (!dev.ok()) return dev.status();
  return launch_scatter_rows(dst.data, dst.dtype, src.data, src.dtype, static_cast<const int*>(*dev),
                             std::int64_t(rows.size()), src.cols, stream_);
}

Status CudaBackend::upload_pixels_bf16(const float* pixels, std::size_t n) {
  if (n > std::size_t(INT_MAX))  // for_bands counts in int; such an image takes the fp32 path
    return Status(ErrorCode::unsupported, "cuda patch_embed: too many pixels for the bf16 upload");
  if (pixels_copy_pending_) {  // the previous image's copy out of pixels_host_ must be done before it is rewritten
    PIXTRAL_CUDA_CHECK(cudaEventSynchronize(pixels_copied_));
    pixels_copy_pending_ = false;
  }
  if (!pixels_copied_) PIXTRAL_CUDA_CHECK(cudaEventCreateWithFlags(&pixels_copied_, cudaEventDisableTiming));
  if (pixels_host_n_ < n) {
    if (pixels_host_) cudaFreeHost(pixels_host_);
    pixels_host_ = nullptr;
    pixels_host_n_ = 0;
    void* h = nullptr;
    if (cudaMallocHost(&h, n * 2) != cudaSuccess) {
      (void)cudaGetLastError();  // not this op's error: the caller falls back to pageable fp32
      return Status(ErrorCode::unsupported, "cuda patch_embed: no pinned host memory for the pixels");
    }
    pixels_host_ = static_cast<std::uint16_t*>(h);
    pixels_host_n_ = n;
  }
  PIXTRAL_RETURN_IF_ERROR(ensure(pixels_, n * 2, "image pixels"));
  // Round to nearest even on host threads (f32_to_bf16: the device's __float2bfloat16_rn for finite values); a
  // 1024×1024 image is 3 M values.
  for_bands(int(n), band_threads(n), [&](int i0, int i1) {
    for (int i = i0; i < i1; ++i) pixels_host_[i] = f32_to_bf16(pixels[i]);
  });
  PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(pixels_.ptr, pixels_host_, n * 2, cudaMemcpyHostToDevice, stream_));
  PIXTRAL_CUDA_CHECK(cudaEventRecord(pixels_copied_, stream_));
  pixels_copy_pending_ = true;
  return {};
}

Status CudaBackend::patch_embed(ops::Tensor out, const float* pixels_chw, int channels, int height, int width,
                                int patch, const ops::Weight& conv) {
  if (patch <= 0 || height % patch || width % patch)
    return bad("patch_embed", "image " + std::to_string(height) + "x" + std::to_string(width) +
                                  " is not a multiple of the patch size " + std::to_string(patch));
  const std::int64_t n_patches = std::int64_t(height / patch) * (width / patch);
  const std::int64_t K = std::int64_t(channels) * patch * patch;
  if (conv.cols != K || out.rows != n_patches || out.cols != conv.rows || !is_act(out.dtype))
    return bad("patch_embed", "conv " + conv.name + " [" + std::to_string(conv.rows) + "," +
                                  std::to_string(conv.cols) + "] for " + std::to_string(K) +
                                  " values a patch, out " + shape(out) + " for " + std::to_string(n_patches) +
                                  " patches");
  if (n_patches == 0) return {};
  const std::size_t n_pix = std::size_t(channels) * height * width;
  PIXTRAL_RETURN_IF_ERROR(ensure(im2col_, std::size_t(n_patches * K) * 2, "patch matrix (im2col)"));
  auto* cols = static_cast<bf16*>(im2col_.ptr);
  // The pixels cross the bus as the bf16 values im2col rounds them to anyway (half the bytes, from pinned memory,
  // asynchronously); where pinned memory is refused (unsupported), as fp32 from the caller's memory.
  DType pixels_t = DType::bf16;
  const Status up = capturing_ ? Status(ErrorCode::unsupported, "capturing") : upload_pixels_bf16(pixels_chw, n_pix);
  if (!up.ok() && up.code() != ErrorCode::unsupported) return up;  // out of device memory: fp32 would need twice
  if (!up.ok()) {
    pixels_t = DType::f32;
    PIXTRAL_RETURN_IF_ERROR(ensure(pixels_, n_pix * 4, "image pixels"));
    PIXTRAL_CUDA_CHECK(cudaMemcpyAsync(pixels_.ptr, pixels_chw, n_pix * 4, cudaMemcpyHostToDevice, stream_));
  }
  PIXTRAL_RETURN_IF_ERROR(launch_im2col(cols, pixels_.ptr, pixels_t, channels, height, width, patch, stream_));
  if (gemv_supported(n_patches, K, cols, DType::bf16, conv.data))
    return launch_gemv(out.data, out.dtype, cols, DType::bf16, wptr(conv), nullptr, n_patches, conv.rows, K, stream_);
  return gemm(out.data, out.dtype, cols, wptr(conv), n_patches, conv.rows, K);
}

}  // namespace pixtral::cuda
