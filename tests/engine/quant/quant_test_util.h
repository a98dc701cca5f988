// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the quantization tests that run a whole tiny model (tst_quant_model, tst_quant_cache,
// tst_quant_cache_cuda): a tiny model whose linear dimensions are multiples of the int4 group (128), the raw
// logits a few greedy generations produce, and a bit-for-bit comparison of them.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <span>
#include <vector>

#include "pixtral/model.h"
#include "tiny_model.h"

namespace pixtral::quant_test {

/// dim 128, hidden 256, 2 layers, 4 / 2 heads of 32, bf16 weights: every decoder matrix quantizes to int4 groups.
inline tiny::TinyModelSpec spec128(std::uint64_t seed) {
  tiny::TinyModelSpec s;
  s.dim = 128;
  s.n_layers = 2;
  s.n_heads = 4;
  s.n_kv_heads = 2;
  s.head_dim = 32;
  s.hidden_dim = 256;
  s.bf16 = true;
  s.seed = seed;
  return s;
}

/// The raw logits of every generated token, prompt after prompt (greedy, at most @p max_tokens each).
inline std::vector<std::vector<float>> logits_of(const Model& m, std::initializer_list<const char*> prompts,
                                                 int max_tokens) {
  std::vector<std::vector<float>> out;
  for (const char* text : prompts) {
    auto s = m.create_session({256, 64});
    EXPECT_TRUE(s.ok());
    if (!s.ok()) return {};
    GenerateParams gp;
    gp.temperature = 0;
    gp.max_tokens = max_tokens;
    std::vector<Message> msgs{Message::user_text(text)};
    auto g = (*s)->generate(msgs, gp, {}, [&](std::span<const float> v) { out.emplace_back(v.begin(), v.end()); });
    EXPECT_TRUE(g.ok()) << g.status().message();
  }
  return out;
}

/// Same rows, same bits (and not empty).
inline bool bit_identical(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b) {
  if (a.size() != b.size() || a.empty()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), a[i].size() * 4) != 0) return false;
  return true;
}

}  // namespace pixtral::quant_test
