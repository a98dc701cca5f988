// SPDX-License-Identifier: Apache-2.0
// The Pixtral forward pass, written once against ops::Backend: vision encoder + adapter (spec §6) and the
// Mistral-Nemo decoder (spec §7) over a chunk of rows with a KV cache.
// ref: mistral_inference/vision_encoder.py, transformer.py, transformer_layers.py; vllm pixtral.py
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/tensors.h"
#include "model/weights.h"

namespace pixtral {

/// Normalised pixels of one image (CHW fp32, height and width multiples of the patch size).
struct VisionImage {
  const float* chw = nullptr;
  int height = 0;
  int width = 0;
};

/// Vision encoder + adapter over several images at once (block-diagonal attention: each image attends only to
/// itself). out[i] receives image i's features (Hp_i * Wp_i, dim), allocated in `owner`.
Status encode_images(ops::Backend& be, const ModelConfig& cfg, const VisionWeights& w, ops::RopePairs pairs,
                     std::span<const VisionImage> images, TensorSet& owner, std::vector<ops::Tensor>& out);

/// Per-layer KV cache: k[il], v[il] are (context, n_kv_heads * head_dim).
struct KvCache {
  std::vector<ops::Tensor> k, v;
  int context = 0;
};

/// Decoder scratch for chunks of up to max_rows rows, allocated once per session.
struct DecoderScratch {
  int max_rows = 0;
  ops::Tensor h;       // (max_rows, dim) residual stream
  ops::Tensor xn;      // (max_rows, dim) normalised input of the current sub-block
  ops::Tensor q;       // (max_rows, n_heads * head_dim)
  ops::Tensor attn;    // (max_rows, n_heads * head_dim)
  ops::Tensor o;       // (max_rows, dim) sub-block output
  ops::Tensor gate;    // (max_rows, hidden_dim)
  ops::Tensor up;      // (max_rows, hidden_dim)
  ops::Tensor logits;  // (1, vocab_size)
  ops::Tensor qkv;     // (1, n_heads*head_dim + 2*n_kv_heads*head_dim) batch-1 fused projection
  ops::Tensor gu;      // (1, 2 * hidden_dim) batch-1 fused gate|up
  std::vector<int> positions;  // host, reserved to max_rows (no allocation per token)
};

/// One allocation the forward pass makes: [rows, cols] of dtype, stored into *dst (null when only sizing).
struct PlannedAlloc {
  ops::Tensor* dst = nullptr;
  std::int64_t rows = 0, cols = 0;
  DType dtype = DType::f32;
  const char* what = "";
  std::uint64_t bytes() const { return std::uint64_t(rows) * std::uint64_t(cols) * dtype_size(dtype); }
};
std::uint64_t total_bytes(std::span<const PlannedAlloc> allocs);

/// Every allocation alloc_decoder_state makes, in order: the KV cache (what == kKvCacheWhat) then the scratch.
/// kv/s null: sizes only (the memory planner sums these, so the plan and the allocation cannot drift).
inline constexpr const char* kKvCacheWhat = "KV cache";
std::vector<PlannedAlloc> decoder_state_allocs(const ModelConfig& cfg, DType act, int context, int max_rows,
                                               KvCache* kv = nullptr, DecoderScratch* s = nullptr);

Status alloc_decoder_state(ops::Backend& be, const ModelConfig& cfg, int context, int max_rows, TensorSet& owner,
                           KvCache& kv, DecoderScratch& s);

/// The vision encoder's temporary activations for n patches (all images of one encode_images call together).
struct VisionActivations {
  ops::Tensor h, y, q, k, v, a, o;  // (n, hidden)
  ops::Tensor g, u;                 // (n, intermediate)
  ops::Tensor z;                    // (n, dim) adapter
};
/// Every temporary allocation encode_images makes for n patches (t null: sizes only), plus, last, the image
/// features it leaves in `owner` (dst null: encode_images allocates them per image, same total).
std::vector<PlannedAlloc> vision_allocs(const ModelConfig& cfg, DType act, std::int64_t n_patches,
                                        VisionActivations* t = nullptr);

/// Image features to place into the chunk: rows `local_rows` of the chunk get rows [src_row0, src_row0 + n) of
/// `features`.
struct ChunkImageRows {
  ops::Tensor features;
  int src_row0 = 0;
  std::vector<int> local_rows;
};

/// Run the decoder over tokens at positions [pos0, pos0 + tokens.size()), writing their K/V rows into the cache,
/// and compute the logits of the chunk's last row into s.logits when want_logits.
/// device_state: a batch-1 step whose token, position and KV length the backend reads from its device decode
/// state (CUDA graph capture/replay, see cuda/cuda_ext.h): K/V rows are appended with scatter_rows and attention
/// spans the whole cache capacity, so the recorded kernels serve every later position.
Status decoder_forward(ops::Backend& be, const ModelConfig& cfg, const DecoderWeights& w, ops::RopePairs pairs,
                       std::span<const int> tokens, int pos0, std::span<const ChunkImageRows> images, KvCache& kv,
                       DecoderScratch& s, bool want_logits, bool device_state = false);

}  // namespace pixtral
