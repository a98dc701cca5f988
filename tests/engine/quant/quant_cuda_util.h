// SPDX-License-Identifier: Apache-2.0
// What the CUDA quantized-weight tests (tst_quant_cuda, tst_quant_tma_cuda) share: a random bf16 weight held on the
// host with its view, and a weight shape.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace pixtral::quant_test {

struct Host {
  std::vector<std::uint16_t> bits;
  WeightView view;
};

inline Host make_weight(std::int64_t N, std::int64_t K, std::uint64_t seed, const std::string& name) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.f, 0.05f);
  Host h;
  h.bits.resize(std::size_t(N * K));
  for (auto& b : h.bits) b = f32_to_bf16(nd(g));
  h.view = WeightView{name, h.bits.data(), DType::bf16, {N, K}};
  return h;
}

struct Shape {
  std::int64_t N, K;
};

}  // namespace pixtral::quant_test
