// SPDX-License-Identifier: Apache-2.0
// The forward pass. Each block reads like its reference; every activation is named through the trace hook.
// ref: mistral_inference/vision_encoder.py VisionTransformer.forward, VisionLanguageAdapter;
//      mistral_inference/transformer_layers.py TransformerBlock.forward; spec §6, §7.
#include "model/forward.h"

#include <cmath>
#include <string>

namespace pixtral {
namespace {

#define PX_TRY(expr) PIXTRAL_RETURN_IF_ERROR(expr)

std::string lname(const char* prefix, int il, const char* what) {
  return std::string(prefix) + std::to_string(il) + "." + what;
}

}  // namespace

Status encode_images(ops::Backend& be, const ModelConfig& cfg, const VisionWeights& w, ops::RopePairs pairs,
                     std::span<const VisionImage> images, TensorSet& owner, std::vector<ops::Tensor>& out) {
  const VisionConfig& vc = cfg.vision;
  const int P = vc.patch_size, hd = vc.head_dim, nh = vc.num_attention_heads;
  const DType act = be.activation_dtype();

  // Patch bookkeeping: positions (row, col) restart at (0, 0) for every image (spec §6.3).
  std::vector<int> seg, prow, pcol;
  int n = 0;
  for (const VisionImage& im : images) {
    const int hp = im.height / P, wp = im.width / P;
    seg.push_back(hp * wp);
    for (int r = 0; r < hp; ++r)
      for (int c = 0; c < wp; ++c) {
        prow.push_back(r);
        pcol.push_back(c);
      }
    n += hp * wp;
  }
  if (n == 0) return {ErrorCode::invalid_argument, "no image patches to encode"};

  TensorSet tmp(be);
  VisionActivations t;
  for (const PlannedAlloc& pa : vision_allocs(cfg, act, n, &t))
    if (pa.dst) PX_TRY(tmp.alloc(*pa.dst, pa.rows, pa.cols, pa.dtype, pa.what));
  ops::Tensor &h = t.h, &y = t.y, &q = t.q, &k = t.k, &v = t.v, &a = t.a, &o = t.o, &g = t.g, &u = t.u, &z = t.z;

  // patch_conv: each image's patches → rows of y; ln_pre → h
  int row = 0;
  for (const VisionImage& im : images) {
    const int np = (im.height / P) * (im.width / P);
    PX_TRY(be.patch_embed(y.slice_rows(row, np), im.chw, vc.num_channels, im.height, im.width, P, w.patch_conv));
    row += np;
  }
  be.trace("vision.patch_conv", y);
  PX_TRY(be.rms_norm(h, y, w.ln_pre, vc.norm_eps));
  be.trace("vision.ln_pre", h);

  ops::AttentionParams ap;
  ap.n_heads = nh;
  ap.n_kv_heads = nh;
  ap.head_dim = hd;
  ap.scale = 1.0f / std::sqrt(float(hd));
  ap.causal = false;
  ap.segments = seg;
  const int n_layers = vc.num_hidden_layers;
  if (n_layers > 0) PX_TRY(be.rms_norm(y, h, w.layers[0].attention_norm, vc.norm_eps));
  for (int il = 0; il < n_layers; ++il) {
    const BlockWeights& b = w.layers[il];
    PX_TRY(be.matmul(q, y, b.wq));
    PX_TRY(be.matmul(k, y, b.wk));
    PX_TRY(be.matmul(v, y, b.wv));
    PX_TRY(be.rope_2d(q, nh, hd, prow, pcol, vc.rope_theta, pairs));
    PX_TRY(be.rope_2d(k, nh, hd, prow, pcol, vc.rope_theta, pairs));
    PX_TRY(be.attention(a, q, k, v, ap));
    PX_TRY(be.matmul_add(h, o, a, b.wo));  // h += attn · woᵀ
    PX_TRY(be.rms_norm(y, h, b.ffn_norm, vc.norm_eps));
    PX_TRY(be.matmul(g, y, b.w1));
    PX_TRY(be.matmul(u, y, b.w3));
    PX_TRY(be.silu_mul(g, g, u));
    PX_TRY(be.matmul_add(h, o, g, b.w2));  // h += mlp out
    if (il + 1 < n_layers) PX_TRY(be.rms_norm(y, h, w.layers[il + 1].attention_norm, vc.norm_eps));
    if (be.tracing()) be.trace(lname("vision.layers.", il, "out"), h);
  }

  // Adapter: gelu(h · w_inᵀ + b_in) · w_outᵀ + b_out (spec §6.5)
  PX_TRY(be.matmul(z, h, w.w_in, w.has_bias ? &w.w_in_bias : nullptr));
  PX_TRY(be.gelu(z));
  out.clear();
  row = 0;
  for (int s : seg) {
    ops::Tensor f;
    PX_TRY(owner.alloc(f, s, cfg.dim, act, "image features"));  // (Hp * Wp, dim)
    PX_TRY(be.matmul(f, z.slice_rows(row, s), w.w_out, w.has_bias ? &w.w_out_bias : nullptr));
    be.trace("adapter.out", f);
    out.push_back(f);
    row += s;
  }
  return {};
}

std::uint64_t total_bytes(std::span<const PlannedAlloc> allocs) {
  std::uint64_t b = 0;
  for (const PlannedAlloc& a : allocs) b += a.bytes();
  return b;
}

std::vector<PlannedAlloc> vision_allocs(const ModelConfig& cfg, DType act, std::int64_t n, VisionActivations* t) {
  const VisionConfig& vc = cfg.vision;
  const std::int64_t vd = vc.hidden_size, vi = vc.intermediate_size;
  auto p = [&](ops::Tensor VisionActivations::*m) { return t ? &(t->*m) : nullptr; };
  const char* enc = "vision encoder activations";
  return {
      {p(&VisionActivations::h), n, vd, act, enc},  // (n_patches, hidden)
      {p(&VisionActivations::y), n, vd, act, enc},
      {p(&VisionActivations::q), n, vd, act, enc},
      {p(&VisionActivations::k), n, vd, act, enc},
      {p(&VisionActivations::v), n, vd, act, enc},
      {p(&VisionActivations::a), n, vd, act, enc},
      {p(&VisionActivations::o), n, vd, act, enc},
      {p(&VisionActivations::g), n, vi, act, enc},  // (n_patches, intermediate)
      {p(&VisionActivations::u), n, vi, act, enc},
      {p(&VisionActivations::z), n, cfg.dim, act, "vision adapter activations"},  // (n_patches, dim)
      {nullptr, n, cfg.dim, act, "image features"},  // kept by the session, allocated per image below
  };
}

std::vector<PlannedAlloc> decoder_state_allocs(const ModelConfig& cfg, DType act, int context, int max_rows,
                                               KvCache* kv, DecoderScratch* s) {
  const int kvd = cfg.n_kv_heads * cfg.head_dim, qd = cfg.n_heads * cfg.head_dim;
  std::vector<PlannedAlloc> out;
  for (int il = 0; il < cfg.n_layers; ++il) {
    out.push_back({kv ? &kv->k[std::size_t(il)] : nullptr, context, kvd, act, kKvCacheWhat});
    out.push_back({kv ? &kv->v[std::size_t(il)] : nullptr, context, kvd, act, kKvCacheWhat});
  }
  auto p = [&](ops::Tensor DecoderScratch::*m) { return s ? &(s->*m) : nullptr; };
  const char* dec = "decoder activations";
  out.push_back({p(&DecoderScratch::h), max_rows, cfg.dim, act, dec});
  out.push_back({p(&DecoderScratch::xn), max_rows, cfg.dim, act, dec});
  out.push_back({p(&DecoderScratch::q), max_rows, qd, act, dec});
  out.push_back({p(&DecoderScratch::attn), max_rows, qd, act, dec});
  out.push_back({p(&DecoderScratch::o), max_rows, cfg.dim, act, dec});
  out.push_back({p(&DecoderScratch::gate), max_rows, cfg.hidden_dim, act, dec});
  out.push_back({p(&DecoderScratch::up), max_rows, cfg.hidden_dim, act, dec});
  out.push_back({p(&DecoderScratch::logits), 1, cfg.vocab_size, DType::f32, "logits"});
  out.push_back({p(&DecoderScratch::qkv), 1, qd + 2 * kvd, act, dec});
  out.push_back({p(&DecoderScratch::gu), 1, 2 * cfg.hidden_dim, act, dec});
  return out;
}

Status alloc_decoder_state(ops::Backend& be, const ModelConfig& cfg, int context, int max_rows, TensorSet& owner,
                           KvCache& kv, DecoderScratch& s) {
  kv.k.assign(std::size_t(cfg.n_layers), {});
  kv.v.assign(std::size_t(cfg.n_layers), {});
  kv.context = context;
  s.max_rows = max_rows;
  for (const PlannedAlloc& a : decoder_state_allocs(cfg, be.activation_dtype(), context, max_rows, &kv, &s))
    PX_TRY(owner.alloc(*a.dst, a.rows, a.cols, a.dtype, a.what));
  s.positions.reserve(std::size_t(max_rows));
  return {};
}

Status decoder_forward(ops::Backend& be, const ModelConfig& cfg, const DecoderWeights& w, ops::RopePairs pairs,
                       std::span<const int> tokens, int pos0, std::span<const ChunkImageRows> images, KvCache& kv,
                       DecoderScratch& s, bool want_logits, bool device_state) {
  const int T = int(tokens.size());
  if (T == 0 || T > s.max_rows) return {ErrorCode::internal, "decoder chunk of " + std::to_string(T) + " rows"};
  if (device_state && (T != 1 || !w.layers[0].stacked() || !images.empty()))
    return {ErrorCode::internal, "device-state decoding needs one row, stacked weights and no images"};
  if (pos0 + T > kv.context) return {ErrorCode::context_overflow, "KV cache full"};
  const int nh = cfg.n_heads, nkv = cfg.n_kv_heads, hd = cfg.head_dim;
  ops::Tensor h = s.h.slice_rows(0, T), xn = s.xn.slice_rows(0, T), q = s.q.slice_rows(0, T),
              attn = s.attn.slice_rows(0, T), o = s.o.slice_rows(0, T), gate = s.gate.slice_rows(0, T),
              up = s.up.slice_rows(0, T);
  s.positions.resize(std::size_t(T));
  for (int t = 0; t < T; ++t) s.positions[t] = pos0 + t;

  // Embeddings; [IMG] rows overwritten by the adapter outputs (spec §7.1).
  PX_TRY(be.embed(h, w.tok_embeddings, tokens));
  for (const ChunkImageRows& im : images)
    PX_TRY(be.scatter_rows(h, im.features.slice_rows(im.src_row0, std::int64_t(im.local_rows.size())),
                           im.local_rows));
  be.trace("tok_embeddings", h);

  ops::AttentionParams ap;
  ap.n_heads = nh;
  ap.n_kv_heads = nkv;
  ap.head_dim = hd;
  ap.scale = 1.0f / std::sqrt(float(hd));
  ap.causal = true;
  ap.q_offset = pos0;

  // Batch-1 decode folds each norm before a stacked GEMV into that GEMV's op (one kernel where the backend can).
  const auto fold_qkv_norm = [&](int il) { return T == 1 && w.layers[il].stacked(); };
  if (cfg.n_layers > 0 && !fold_qkv_norm(0)) PX_TRY(be.rms_norm(xn, h, w.layers[0].attention_norm, cfg.norm_eps));
  for (int il = 0; il < cfg.n_layers; ++il) {
    const BlockWeights& b = w.layers[il];
    ops::Tensor k_new = kv.k[il].slice_rows(pos0, T), v_new = kv.v[il].slice_rows(pos0, T);  // (T, nkv*hd)
    if (fold_qkv_norm(il)) {
      // Batch-1 decode: xn = attention_norm(h), one pass over [wq; wk; wv], RoPE of q and k and the KV append
      // (cache row = position); one kernel where the backend fuses them.
      PX_TRY(be.rms_norm_matmul_rope_append_kv(s.qkv.slice_rows(0, 1), xn, h, b.attention_norm, cfg.norm_eps, b.wqkv,
                                               nh, nkv, hd, pos0, cfg.rope_theta, pairs, kv.k[il], kv.v[il]));
      q = ops::Tensor{s.qkv.data, 1, nh * hd, s.qkv.dtype};
    } else {
      PX_TRY(be.matmul(q, xn, b.wq));
      PX_TRY(be.matmul(k_new, xn, b.wk));
      PX_TRY(be.matmul(v_new, xn, b.wv));
      PX_TRY(be.rope(q, nh, hd, s.positions, cfg.rope_theta, pairs));
      PX_TRY(be.rope(k_new, nkv, hd, s.positions, cfg.rope_theta, pairs));
    }
    const int n_keys = device_state ? kv.context : pos0 + T;  // device state: live length read on the device
    PX_TRY(be.attention(attn, q, kv.k[il].slice_rows(0, n_keys), kv.v[il].slice_rows(0, n_keys), ap));
    // h += attn out, accumulated into h by the product where the backend can (the GEMM's beta, the decode GEMV's
    // epilogue); xn = ffn_norm(h).
    PX_TRY(be.matmul_add(h, o, attn, b.wo));
    if (T == 1 && b.w13.data) {  // xn = ffn_norm(h), [w1; w3] in one pass, SiLU·mul: fused where the backend can
      PX_TRY(be.rms_norm_matmul_silu(gate, s.gu, xn, h, b.ffn_norm, cfg.norm_eps, b.w13));
    } else {
      PX_TRY(be.rms_norm(xn, h, b.ffn_norm, cfg.norm_eps));
      PX_TRY(be.matmul(gate, xn, b.w1));
      PX_TRY(be.matmul(up, xn, b.w3));
      PX_TRY(be.silu_mul(gate, gate, up));
    }
    const ops::Weight& next_norm = il + 1 < cfg.n_layers ? w.layers[il + 1].attention_norm : w.norm;
    PX_TRY(be.matmul_add(h, o, gate, b.w2));  // h += ffn out; xn = next norm(h) (the next layer's op folds it)
    if (il + 1 == cfg.n_layers || !fold_qkv_norm(il + 1)) PX_TRY(be.rms_norm(xn, h, next_norm, cfg.norm_eps));
    if (be.tracing()) be.trace(lname("layers.", il, "out"), h);
  }
  be.trace("norm", xn);
  if (want_logits) {
    PX_TRY(be.matmul(s.logits, xn.slice_rows(T - 1, 1), w.output));
    be.trace("logits", s.logits);
  }
  return {};
}

}  // namespace pixtral
