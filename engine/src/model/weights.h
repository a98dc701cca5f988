// SPDX-License-Identifier: Apache-2.0
// The model's weights as the backend sees them, under the checkpoint's own names (spec §1.4).
// ref: mistral_inference/transformer_layers.py (TransformerBlock), vision_encoder.py (VisionTransformer)
#pragma once

#include <optional>
#include <string>
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
  bool embedding_on_host = false;  ///< tok_embeddings through Backend::upload_weight_host (int8/int4)
};
/// The formats a precision stands for (automatic → bf16 until the memory planner exists; int4 keeps the output
/// head in int8 — see pixtral::Precision).
WeightOptions weight_options(Precision p);

/// Already-quantized weights kept elsewhere (the quantized-weights cache file, runtime/quant_cache.h) and the
/// record of the weights a load quantized. upload_weights asks `find` before quantizing a weight (a stacked one
/// under its stacked name, e.g. "layers.3.attention.wqkv"); a miss quantizes as usual. Every quantized weight
/// the load ends up with — found or quantized — is then reported to `add`, in upload order.
class QuantizedWeightStore {
 public:
  virtual ~QuantizedWeightStore() = default;
  /// The weight `name` of [rows, cols] in `format`, quantized from `dtype`, uploaded to `backend`; nullopt when
  /// there is none (or it cannot be trusted — the implementation logs why).
  virtual std::optional<ops::Weight> find(ops::Backend& backend, const std::string& name, std::int64_t rows,
                                          std::int64_t cols, ops::WeightFormat format, DType dtype) = 0;
  virtual void add(const ops::Weight& w) = 0;
};

/// Upload every tensor the model uses to the backend (CPU: views of the mmap; quantized weights: owned copies).
/// `store` (optional): where already-quantized weights may come from (see QuantizedWeightStore).
Result<ModelWeights> upload_weights(ops::Backend& backend, const Checkpoint& ckpt, const UploadProgress& progress,
                                    const WeightOptions& options = {}, QuantizedWeightStore* store = nullptr);
/// Release everything upload_weights created.
void free_weights(ops::Backend& backend, ModelWeights& w);

}  // namespace pixtral
