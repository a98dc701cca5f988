// SPDX-License-Identifier: Apache-2.0
// Counting for `pixtral bench`: FLOPs and bytes of the page-QA workload from the model's config, the way
// ../shared/docs/performance.md counts them (2 FLOPs per multiply-add; attention = QKᵀ + PV; causal attention
// counts only the keys each query sees; the LM head runs on the last row only; decode reads every decoder weight
// except the embedding table, of which it reads one row, plus the KV cache).
#pragma once

#include <cstdint>

#include "io/checkpoint.h"

namespace pixtral::bench {

/// Vision encoder + adapter FLOPs for one image of `patches` patches (block-diagonal attention = full within it).
inline double vision_flops(const ModelConfig& c, std::int64_t patches) {
  const VisionConfig& v = c.vision;
  const double n = double(patches), h = v.hidden_size, i = v.intermediate_size;
  const double conv = 2.0 * n * h * double(v.num_channels) * v.patch_size * v.patch_size;
  const double linear = 2.0 * n * (4.0 * h * h + 3.0 * h * i) * v.num_hidden_layers;
  const double attention = 4.0 * n * n * h * v.num_hidden_layers;
  const double adapter = 2.0 * n * (h * c.dim + double(c.dim) * c.dim);
  return conv + linear + attention + adapter;
}

/// Parameters of one decoder layer's matrices (norms excluded).
inline double decoder_layer_params(const ModelConfig& c) {
  const double q = double(c.n_heads) * c.head_dim, kv = double(c.n_kv_heads) * c.head_dim;
  return c.dim * (q + 2 * kv) + q * c.dim + 3.0 * c.dim * c.hidden_dim;
}

/// Decoder FLOPs for `rows` new rows at absolute positions [pos0, pos0 + rows), logits for the last row only.
inline double decoder_flops(const ModelConfig& c, std::int64_t pos0, std::int64_t rows) {
  const double linear = 2.0 * double(rows) * decoder_layer_params(c) * c.n_layers;
  // Σ over new rows of the keys each sees: (pos0 + 1) + … + (pos0 + rows).
  const double keys = double(rows) * double(pos0) + double(rows) * double(rows + 1) / 2.0;
  const double attention = 4.0 * keys * double(c.n_heads) * c.head_dim * c.n_layers;
  const double lm_head = 2.0 * double(c.vocab_size) * c.dim;
  return linear + attention + lm_head;
}

/// Bytes one decode step must read (bf16): every decoder matrix and norm, the LM head, one embedding row.
inline double decode_weight_bytes(const ModelConfig& c) {
  const double per_layer = decoder_layer_params(c) + 2.0 * c.dim;
  return 2.0 * (per_layer * c.n_layers + double(c.dim) + double(c.vocab_size) * c.dim + double(c.dim));
}

/// KV-cache bytes per token of context (bf16 K and V, every layer).
inline double kv_bytes_per_token(const ModelConfig& c) {
  return 2.0 * 2.0 * double(c.n_layers) * c.n_kv_heads * c.head_dim;
}

}  // namespace pixtral::bench
