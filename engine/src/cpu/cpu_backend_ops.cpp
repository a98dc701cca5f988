// SPDX-License-Identifier: Apache-2.0
// CpuBackend part 2: RoPE (1-D, 2-D), attention and patch embedding — validation and the fp32 angle tables; the
// kernels are in cpu_rope.cpp and cpu_attention.cpp.
#include <algorithm>

#include "cpu/cpu_backend.h"

namespace pixtral::cpu {

namespace {
Status check_heads(std::string_view op, const Tensor& x, int n_heads, int head_dim, int multiple) {
  if (n_heads <= 0 || head_dim <= 0 || head_dim % multiple != 0)
    return bad(op, "head_dim " + std::to_string(head_dim) + " must be a positive multiple of " +
                       std::to_string(multiple) + " and n_heads positive");
  if (x.cols != std::int64_t(n_heads) * head_dim)
    return bad(op, "x " + shape(x) + " is not [T, " + std::to_string(n_heads) + " × " + std::to_string(head_dim) +
                       "]");
  return Status::success();
}
}  // namespace

Status CpuBackend::reserve_angles(std::int64_t n) {
  try {
    if (angles_.size() < std::size_t(n)) angles_.resize(std::size_t(n));
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::out_of_memory, "cpu: RoPE angle table");
  }
  return Status::success();
}

// ref: mistral_inference/rope.py precompute_freqs_cis (torch.outer(t, freqs).float() → fp32 products),
// transformers MistralRotaryEmbedding (inv_freq @ position_ids in fp32).
Status CpuBackend::rope(Tensor x, int n_heads, int head_dim, std::span<const int> positions, float theta,
                        RopePairs pairs) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("rope", "x", x));
  PIXTRAL_RETURN_IF_ERROR(check_heads("rope", x, n_heads, head_dim, 2));
  if (std::int64_t(positions.size()) != x.rows)
    return bad("rope", std::to_string(positions.size()) + " positions for x " + shape(x));
  const int half = head_dim / 2;
  PIXTRAL_RETURN_IF_ERROR(reserve_angles(x.rows * half + half));
  float* inv_freq = angles_.data() + x.rows * half;  // [D/2]
  rope_inv_freq(theta, head_dim, inv_freq);
  for (std::int64_t t = 0; t < x.rows; ++t)
    for (int m = 0; m < half; ++m) angles_[std::size_t(t * half + m)] = float(positions[std::size_t(t)]) * inv_freq[m];
  rope_apply(pool_, fp(x), x.rows, n_heads, head_dim, pairs == RopePairs::halves, angles_.data());
  return Status::success();
}

// ref: mistral_inference/rope.py precompute_freqs_cis_2d: rows use freqs[0::2], columns freqs[1::2] (spec §6.3).
Status CpuBackend::rope_2d(Tensor x, int n_heads, int head_dim, std::span<const int> rows, std::span<const int> cols,
                           float theta, RopePairs pairs) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("rope_2d", "x", x));
  PIXTRAL_RETURN_IF_ERROR(check_heads("rope_2d", x, n_heads, head_dim, 4));
  if (std::int64_t(rows.size()) != x.rows || std::int64_t(cols.size()) != x.rows)
    return bad("rope_2d", std::to_string(rows.size()) + " rows / " + std::to_string(cols.size()) +
                              " cols for x " + shape(x));
  const int half = head_dim / 2, quarter = head_dim / 4;
  PIXTRAL_RETURN_IF_ERROR(reserve_angles(x.rows * half + half));
  float* freq = angles_.data() + x.rows * half;  // [D/2]
  rope_inv_freq(theta, head_dim, freq);
  for (std::int64_t n = 0; n < x.rows; ++n) {
    float* ang = angles_.data() + n * half;
    for (int m = 0; m < quarter; ++m) {
      ang[m] = float(rows[std::size_t(n)]) * freq[2 * m];
      ang[quarter + m] = float(cols[std::size_t(n)]) * freq[2 * m + 1];
    }
  }
  rope_apply(pool_, fp(x), x.rows, n_heads, head_dim, pairs == RopePairs::halves, angles_.data());
  return Status::success();
}

Status CpuBackend::attention(Tensor out, const Tensor& q, const Tensor& k, const Tensor& v,
                             const AttentionParams& p) {
  for (auto [t, name] : {std::pair<const Tensor*, const char*>{&out, "out"}, {&q, "q"}, {&k, "k"}, {&v, "v"}})
    PIXTRAL_RETURN_IF_ERROR(need_f32("attention", name, *t));
  if (p.n_heads <= 0 || p.n_kv_heads <= 0 || p.head_dim <= 0 || p.n_heads % p.n_kv_heads != 0)
    return bad("attention", "n_heads " + std::to_string(p.n_heads) + " must be a positive multiple of n_kv_heads " +
                                std::to_string(p.n_kv_heads) + ", head_dim positive");
  const std::int64_t qc = std::int64_t(p.n_heads) * p.head_dim, kc = std::int64_t(p.n_kv_heads) * p.head_dim;
  if (q.cols != qc || out.cols != qc || out.rows != q.rows)
    return bad("attention", "q " + shape(q) + " and out " + shape(out) + " must both be [Tq, " + std::to_string(qc) +
                                "]");
  if (k.cols != kc || v.cols != kc || k.rows != v.rows)
    return bad("attention", "k " + shape(k) + " and v " + shape(v) + " must both be [Tk, " + std::to_string(kc) +
                                "]");
  if (out.data == q.data && q.rows > 0) return bad("attention", "out must not alias q");
  if (p.causal && !p.segments.empty()) return bad("attention", "causal and segments cannot be combined");
  if (p.causal && (p.q_offset < 0 || p.q_offset + q.rows > k.rows))
    return bad("attention", "causal queries at " + std::to_string(p.q_offset) + ".." +
                                std::to_string(p.q_offset + q.rows) + " need that many keys, k has " +
                                std::to_string(k.rows));
  if (!p.segments.empty()) {
    std::int64_t total = 0;
    for (int len : p.segments) {
      if (len <= 0) return bad("attention", "segment lengths must be positive");
      total += len;
    }
    if (total != q.rows || total != k.rows)
      return bad("attention", "segments cover " + std::to_string(total) + " rows, q has " + std::to_string(q.rows) +
                                  " and k " + std::to_string(k.rows));
  }
  if (k.rows == 0 && q.rows > 0) return bad("attention", "no keys");
  AttentionArgs a{fp(out), fp(q), fp(k), fp(v), q.rows, k.rows, p.n_heads, p.n_kv_heads, p.head_dim, p.scale,
                  p.causal, p.q_offset, p.segments};
  return cpu::attention(pool_, ws_, a);
}

// ref: mistral_inference/vision_encoder.py VisionTransformer.forward (patch_conv(images.to(dtype)), flatten);
// Conv2d with stride = kernel = P is a matmul of each patch's (ch, ky, kx) vector with the kernel viewed [dim, C·P·P].
Status CpuBackend::patch_embed(Tensor out, const float* pixels_chw, int channels, int height, int width, int patch,
                               const Weight& conv) {
  PIXTRAL_RETURN_IF_ERROR(need_f32("patch_embed", "out", out));
  if (channels <= 0 || patch <= 0 || height <= 0 || width <= 0 || height % patch || width % patch)
    return bad("patch_embed", "image " + std::to_string(channels) + "×" + std::to_string(height) + "×" +
                                  std::to_string(width) + " is not a positive multiple of patch " +
                                  std::to_string(patch));
  const std::int64_t hp = height / patch, wp = width / patch, pv = std::int64_t(channels) * patch * patch;
  if (conv.cols != pv)
    return bad("patch_embed", "conv " + shape(conv) + " does not take " + std::to_string(channels) + "×" +
                                  std::to_string(patch) + "×" + std::to_string(patch) + " patches");
  if (out.rows != hp * wp || out.cols != conv.rows)
    return bad("patch_embed", "out " + shape(out) + " should be [" + std::to_string(hp * wp) + ", " +
                                  std::to_string(conv.rows) + "]");
  std::vector<float> cols;  // [hp*wp, C*P*P] im2col, pixels rounded to the conv weight's dtype
  try {
    cols.resize(std::size_t(hp * wp * pv));
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::out_of_memory, "cpu: patch_embed im2col of " + std::to_string(hp * wp) + " patches");
  }
  pool_.parallel_for(hp * wp, 16, [&](std::int64_t p0, std::int64_t p1, int) {
    for (std::int64_t pi = p0; pi < p1; ++pi) {
      const std::int64_t r = pi / wp, c = pi % wp;
      float* dst = cols.data() + pi * pv;
      for (int ch = 0; ch < channels; ++ch)
        for (int ky = 0; ky < patch; ++ky) {
          const float* src = pixels_chw + (std::int64_t(ch) * height + r * patch + ky) * width + c * patch;
          for (int kx = 0; kx < patch; ++kx) *dst++ = round_to_dtype(src[kx], conv.dtype);
        }
    }
  });
  MatmulArgs a{fp(out), cols.data(), hp * wp, pv, conv.rows, conv.data, conv.dtype, nullptr, DType::f32};
  return cpu::matmul(pool_, ws_, a);
}

}  // namespace pixtral::cpu
