// SPDX-License-Identifier: Apache-2.0
// Sampler: logits → temperature → top-k → top-p → one draw from a counter-based RNG, so draw i of seed s is the
// same number on every backend and in every run. Temperature 0 is greedy with ties going to the lowest id.
// ref: mistral_inference/generate.py sample / sample_top_p (nucleus: keep tokens whose preceding mass ≤ top_p)
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "pixtral/session.h"

namespace pixtral {

/// Uniform float in [0, 1) from (seed, counter): 24 random bits of a splitmix64-style hash.
float counter_uniform(std::uint64_t seed, std::uint64_t counter);

class Sampler {
 public:
  /// Reserve working memory for a vocabulary (no allocation while sampling afterwards).
  explicit Sampler(int vocab_size);
  /// Choose a token. `draw` is the index of this draw (the generated-token index).
  int sample(std::span<const float> logits, const GenerateParams& p, std::uint64_t draw);

 private:
  std::vector<int> order_;
  std::vector<float> probs_;
};

/// One unnormalised softmax term, exp((logit − max) / T), computed in double from the fp32 inputs. The CUDA
/// sampler (engine/src/cuda/cuda_sample.cu) evaluates the same expression, so both backends see the same bits.
double softmax_term(float logit, float max_logit, float temperature);

/// argmax with ties → lowest id.
int argmax(std::span<const float> logits);

}  // namespace pixtral
