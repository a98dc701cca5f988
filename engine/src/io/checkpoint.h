// SPDX-License-Identifier: Apache-2.0
// Checkpoint: a Pixtral model folder opened for reading. Detects the layout (Mistral native wins when both are
// present), parses hyper-parameters (params.json or config.json), maps every safetensors file, maps tensor names
// to the canonical Mistral-native names and validates each expected tensor's presence, dtype and shape.
// ref: spec §1 (pixtral-model.md); mistral_inference/args.py; transformers convert_pixtral_weights_to_hf.py
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/backend.h"
#include "pixtral/status.h"

namespace pixtral {

struct VisionConfig {
  int hidden_size = 1024;
  int num_channels = 3;
  int image_size = 1024;  ///< max image side in pixels
  int patch_size = 16;
  int intermediate_size = 4096;
  int num_hidden_layers = 24;
  int num_attention_heads = 16;
  int head_dim = 64;  ///< hidden_size / num_attention_heads
  float rope_theta = 10000.0f;
  int image_token_id = 10;
  bool adapter_bias = true;
  float norm_eps = 1e-5f;  ///< hard-coded in the references
};

struct ModelConfig {
  int dim = 0;
  int n_layers = 0;
  int head_dim = 0;
  int hidden_dim = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  float rope_theta = 0;
  float norm_eps = 1e-5f;
  int vocab_size = 0;
  int max_context = 131072;
  bool has_vision = true;
  VisionConfig vision;
};

enum class CheckpointLayout { mistral, hf };

class Checkpoint {
 public:
  Checkpoint();
  ~Checkpoint();
  Checkpoint(Checkpoint&&) noexcept;
  Checkpoint& operator=(Checkpoint&&) noexcept;

  /// Open a model folder: layout detection, config parsing, mmap, name mapping and validation of every expected
  /// tensor (errors name the tensor, the expected and the actual shape/dtype).
  static Result<Checkpoint> open(const std::string& dir);

  const ModelConfig& config() const;
  CheckpointLayout layout() const;
  /// How q/k rows are ordered for RoPE: interleaved (native) or halves (HF).
  ops::RopePairs rope_pairs() const;
  /// tekken.json path (required for both layouts for now).
  const std::string& tokenizer_path() const;
  /// The dtype shared by the weights (bf16, f16 or f32); patch_conv's dtype decides pixel rounding.
  DType weight_dtype() const;
  /// A tensor by canonical (Mistral-native) name, e.g. "layers.3.attention.wq.weight". Must exist (validated).
  const WeightView& tensor(const std::string& name) const;
  bool has_tensor(const std::string& name) const;
  /// All validated tensors by canonical name.
  const std::map<std::string, WeightView>& tensors() const;
  std::uint64_t total_bytes() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// The tokenizer and the model must agree on the image grid: tekken.json's image block (patch_size,
/// max_image_size) against the model's vision patch_size / image_size (params.json's vision block wins; a
/// disagreeing tokenizer is a format error naming both values). The runtime calls this after loading both.
Status check_tokenizer_agreement(const ModelConfig& config, int tekken_patch_size, int tekken_max_image_size);

}  // namespace pixtral
