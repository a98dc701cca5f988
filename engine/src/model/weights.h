// SPDX-License-Identifier: Apache-2.0
// The model's weights as the backend sees them, under the checkpoint's own names (spec §1.4).
// ref: mistral_inference/transformer_layers.py (TransformerBlock), vision_encoder.py (VisionTransformer)
#pragma once

#include <vector>

#include "io/checkpoint.h"
#include "pixtral/model.h"
#include "ops/backend.h"

namespace pixtral {

struct BlockWeights {
  ops::Weight attention_norm;  // (dim)
  ops::Weight wq;              // (n_heads * head_dim, dim)
  ops::Weight wk;              // (n_kv_heads * head_dim, dim)
  ops::Weight wv;              // (n_kv_heads * head_dim, dim)
  ops::Weight wo;              // (dim, n_heads * head_dim)
  ops::Weight ffn_norm;        // (dim)
  ops::Weight w1;              // (hidden_dim, dim) gate
  ops::Weight w2;              // (dim, hidden_dim) down
  ops::Weight w3;              // (hidden_dim, dim) up
  // Stacked copies for batch-1 decoding, when the backend supports them (CUDA). Then wq/wk/wv and w1/w3 above
  // are row views into these (not separate allocations).
  ops::Weight wqkv;  // (n_heads*head_dim + 2*n_kv_heads*head_dim, dim) = [wq; wk; wv]
  ops::Weight w13;   // (2 * hidden_dim, dim) = [w1; w3]
  bool stacked() const { return wqkv.data != nullptr; }
};

struct VisionWeights {
  ops::Weight patch_conv;  // (hidden, C * P * P) — stored (hidden, C, P, P)
  ops::Weight ln_pre;      // (hidden)
  std::vector<BlockWeights> layers;
  ops::Weight w_in, w_in_bias;    // (dim, hidden), (dim)
  ops::Weight w_out, w_out_bias;  // (dim, dim), (dim)
  bool has_bias = true;
};

struct DecoderWeights {
  ops::Weight tok_embeddings;  // (vocab, dim)
  std::vector<BlockWeights> layers;
  ops::Weight norm;    // (dim)
  ops::Weight output;  // (vocab, dim)
};

struct ModelWeights {
  VisionWeights vision;
  DecoderWeights decoder;
};

/// Progress per uploaded tensor; return false to cancel.
using UploadProgress = std::function<bool(std::size_t done, std::size_t total, const std::string& name)>;

/// How the decoder's linear weights are stored (issue 6). Dense (the default) keeps every existing behaviour.
struct WeightOptions {
  ops::WeightFormat linear = ops::WeightFormat::dense;  ///< wq wk wv wo w1 w2 w3 of every decoder layer
  ops::WeightFormat output = ops::WeightFormat::dense;  ///< the output head (lm_head)
};
/// The formats a precision stands for (automatic → bf16 until the memory planner exists; int4 keeps the output
/// head in int8 — see pixtral::Precision).
WeightOptions weight_options(Precision p);

/// Upload every tensor the model uses to the backend (CPU: views of the mmap; quantized weights: owned copies).
Result<ModelWeights> upload_weights(ops::Backend& backend, const Checkpoint& ckpt, const UploadProgress& progress,
                                    const WeightOptions& options = {});
/// Release everything upload_weights created.
void free_weights(ops::Backend& backend, ModelWeights& w);

}  // namespace pixtral
