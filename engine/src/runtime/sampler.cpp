// SPDX-License-Identifier: Apache-2.0
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace pixtral {

float counter_uniform(std::uint64_t seed, std::uint64_t counter) {
  std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) * (1.0f / 16777216.0f);
}

double softmax_term(float logit, float max_logit, float temperature) {
  return std::exp((double(logit) - double(max_logit)) / double(temperature));
}

int argmax(std::span<const float> logits) {
  int best = 0;
  for (int i = 1; i < int(logits.size()); ++i)
    if (logits[i] > logits[best]) best = i;
  return best;
}

Sampler::Sampler(int vocab_size) : order_(std::size_t(vocab_size)), probs_(std::size_t(vocab_size)) {}

int Sampler::sample(std::span<const float> logits, const GenerateParams& p, std::uint64_t draw) {
  const int n = int(logits.size());
  if (p.temperature <= 0.0f || p.top_k == 1) return argmax(logits);
  order_.resize(std::size_t(n));
  probs_.resize(std::size_t(n));
  std::iota(order_.begin(), order_.end(), 0);
  // Candidates sorted by logit, descending; equal logits keep the lower id first (deterministic).
  auto by_logit = [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  const int limit = p.top_k > 0 ? std::min(p.top_k, n) : n;
  // softmax(logits / T) normaliser over the candidates, terms in double (softmax_term), max subtracted.
  const float mx = logits[argmax(logits)];
  double total = 0;
  int m = limit;
  if (limit < n) {  // top-k: the normaliser runs over the k candidates
    std::partial_sort(order_.begin(), order_.begin() + m, order_.end(), by_logit);
    for (int i = 0; i < m; ++i) total += softmax_term(logits[order_[i]], mx, p.temperature);
  } else {
    for (int i = 0; i < n; ++i) total += softmax_term(logits[i], mx, p.temperature);
    // Sort only as many candidates as the nucleus can need: once the top m hold more than top_p of the mass,
    // the cut lies inside them (the mass before a token is a prefix sum of the sorted order).
    m = std::min(n, 64);
    for (;;) {
      std::partial_sort(order_.begin(), order_.begin() + m, order_.end(), by_logit);
      double mass = 0;
      for (int i = 0; i < m; ++i) mass += softmax_term(logits[order_[i]], mx, p.temperature) / total;
      if (m == n || (p.top_p < 1.0f && mass > p.top_p)) break;
      m = std::min(n, m * 4);
    }
  }
  int keep = m;
  for (int i = 0; i < keep; ++i) probs_[i] = float(softmax_term(logits[order_[i]], mx, p.temperature) / total);
  // Nucleus: keep a token while the mass before it is ≤ top_p (the first token is always kept).
  if (p.top_p < 1.0f) {
    double before = 0;
    int cut = keep;
    for (int i = 0; i < keep; ++i) {
      if (before > p.top_p) {
        cut = i;
        break;
      }
      before += probs_[i];
    }
    keep = std::max(cut, 1);
  }
  double mass = 0;
  for (int i = 0; i < keep; ++i) mass += probs_[i];
  const double u = double(counter_uniform(p.seed, draw)) * mass;
  double acc = 0;
  for (int i = 0; i < keep; ++i) {
    acc += probs_[i];
    if (u < acc) return order_[i];
  }
  return order_[keep - 1];
}

}  // namespace pixtral
