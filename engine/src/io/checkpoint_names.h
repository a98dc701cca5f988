// SPDX-License-Identifier: Apache-2.0
// Canonical (Mistral-native) tensor names: the list a config expects, with shapes, and the mapping from the
// Hugging Face names (old `language_model.model.…` and new `model.language_model.…` prefixes). Internal to io/.
// ref: spec §1.4 (tensor table), §1.5 (name mapping); transformers convert_pixtral_weights_to_hf.py
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/checkpoint.h"

namespace pixtral::io {

struct ExpectedTensor {
  std::string name;                  ///< canonical name, e.g. "layers.3.attention.wq.weight"
  std::vector<std::int64_t> shape;   ///< as stored: [out, in] for linear weights
};

/// Every tensor the model needs for `config`, in a stable order (decoder, then vision encoder, then adapter).
/// Pixtral-12B: 585 tensors.
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

/// HF on-disk name → canonical name; nullopt for names that are not part of the model.
std::optional<std::string> hf_to_canonical(std::string_view hf_name);

/// Canonical name → HF name with the old (transformers < 4.52) prefixes; empty when it has none.
std::string canonical_to_hf(std::string_view canonical);

/// "[4096,5120]"
std::string shape_to_string(const std::vector<std::int64_t>& shape);

}  // namespace pixtral::io
