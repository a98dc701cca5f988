// SPDX-License-Identifier: Apache-2.0
// Sampler semantics: greedy ties → lowest id, seeded determinism, top-k / top-p truncation, and that draws follow
// the softmax(logits / T) distribution.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/sampler.h"

using namespace pixtral;

TEST(Sampler, GreedyTiesGoToLowestId) {
  Sampler s(5);
  std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f, 1.0f};
  GenerateParams p;
  p.temperature = 0;
  EXPECT_EQ(s.sample(l, p, 0), 1);
  EXPECT_EQ(argmax(l), 1);
}

TEST(Sampler, SameSeedSameDraws) {
  Sampler s(100);
  std::vector<float> l(100);
  for (int i = 0; i < 100; ++i) l[i] = std::sin(float(i)) * 2.0f;
  GenerateParams p;
  p.temperature = 1.0f;
  p.top_p = 1.0f;
  p.seed = 42;
  std::vector<int> a, b, c;
  for (int i = 0; i < 50; ++i) a.push_back(s.sample(l, p, i));
  for (int i = 0; i < 50; ++i) b.push_back(s.sample(l, p, i));
  p.seed = 43;
  for (int i = 0; i < 50; ++i) c.push_back(s.sample(l, p, i));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  Sampler s(8);
  std::vector<float> l = {0.5f, 0.1f, 0.45f, 0.0f, -3.0f, 0.2f, 0.3f, 0.49f};
  GenerateParams p;
  p.temperature = 1.0f;
  p.top_k = 1;
  p.top_p = 1.0f;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(l, p, i), 0);
  p.top_k = 0;
  p.top_p = 0.01f;  // the first token alone exceeds the mass → only it remains
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(l, p, i), 0);
}

TEST(Sampler, TopKRestrictsCandidates) {
  Sampler s(6);
  std::vector<float> l = {1.0f, 3.0f, 2.9f, 0.0f, 2.8f, -1.0f};
  GenerateParams p;
  p.temperature = 5.0f;  // flat distribution: without top-k all ids would appear
  p.top_p = 1.0f;
  p.top_k = 3;
  for (int i = 0; i < 300; ++i) {
    const int t = s.sample(l, p, i);
    EXPECT_TRUE(t == 1 || t == 2 || t == 4) << t;
  }
}

TEST(Sampler, NucleusKeepsTokensWhoseMassBeforeIsWithinTopP) {
  // probs ≈ [0.5, 0.3, 0.2] (T = 1): with top_p 0.6 the cumulative mass before token 2 is 0.8 > 0.6 → dropped,
  // token 1 (mass before 0.5 ≤ 0.6) kept.
  Sampler s(3);
  std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  GenerateParams p;
  p.temperature = 1.0f;
  p.top_p = 0.6f;
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < 4000; ++i) ++counts[s.sample(l, p, i)];
  EXPECT_EQ(counts[2], 0);
  EXPECT_NEAR(counts[0] / 4000.0, 0.625, 0.03);  // renormalised 0.5 / 0.8
}

TEST(Sampler, FollowsTemperatureScaledSoftmax) {
  Sampler s(2);
  std::vector<float> l = {0.0f, 1.0f};
  GenerateParams p;
  p.temperature = 2.0f;
  p.top_p = 1.0f;
  int ones = 0;
  const int n = 8000;
  for (int i = 0; i < n; ++i) ones += s.sample(l, p, i) == 1;
  const double expect = 1.0 / (1.0 + std::exp(-0.5));
  EXPECT_NEAR(ones / double(n), expect, 0.02);
}

TEST(CounterRng, UniformInUnitInterval) {
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    const float u = counter_uniform(7, std::uint64_t(i));
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.01);
}
