// SPDX-License-Identifier: Apache-2.0
// A tiny random Pixtral model written to a temporary folder (Mistral-native layout: params.json,
// consolidated.safetensors, tekken.json from tests/fixtures/tokenizer), for runtime behaviour tests that need no
// reference outputs: decode == recompute, KV reuse == fresh session, cancellation, context limits.
#pragma once

#include <cstdint>
#include <string>

namespace pixtral::tiny {

struct TinyModelSpec {
  int dim = 64, n_layers = 2, n_heads = 4, n_kv_heads = 2, head_dim = 24, hidden_dim = 96;
  int vision_dim = 32, vision_layers = 1, vision_heads = 2, vision_hidden = 48;
  bool bf16 = false;
  std::uint64_t seed = 1234;
};

/// Write the model into a fresh temporary folder and return its path (empty on failure).
std::string write_tiny_model(const TinyModelSpec& spec = {});

}  // namespace pixtral::tiny
