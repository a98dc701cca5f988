// SPDX-License-Identifier: Apache-2.0
// The CUDA sampler (Backend::sample, engine/src/cuda/cuda_sample.cu) against the host sampler that defines the
// semantics (runtime/sampler.cpp): for many logit shapes, vocabulary sizes, settings and draws, every token the
// device decides equals the host's token, the device decides every greedy draw and the default-settings draws on
// LLM-like logits, and it hands back (−1) exactly the cases documented as the host's (no truncation at all).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_ext.h"
#include "cuda_test_util.h"
#include "runtime/sampler.h"

namespace pixtral {
namespace {

enum class Shape { llm, peaked, flat, ties };

const char* shape_name(Shape s) {
  switch (s) {
    case Shape::llm: return "llm";
    case Shape::peaked: return "peaked";
    case Shape::flat: return "flat";
    case Shape::ties: return "ties";
  }
  return "?";
}

/// Logits of a given character. llm: N(0, 3) with a few strong tokens on top (the usual next-token shape);
/// peaked: one token far ahead; flat: N(0, 0.05); ties: small integers (many exact ties).
std::vector<float> make_logits(std::mt19937& rng, int n, Shape shape) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, n - 1);
  switch (shape) {
    case Shape::llm:
      for (auto& x : v) x = 3.0f * normal(rng);
      for (int k = 0; k < 5; ++k) v[std::size_t(pick(rng))] = 16.0f + 2.0f * normal(rng);
      break;
    case Shape::peaked:
      for (auto& x : v) x = normal(rng);
      v[std::size_t(pick(rng))] = 30.0f;
      break;
    case Shape::flat:
      for (auto& x : v) x = 0.05f * normal(rng);
      break;
    case Shape::ties:
      for (auto& x : v) x = float(int(std::lround(2.0f * normal(rng))));
      for (int k = 0; k < 3; ++k) v[std::size_t(pick(rng))] = 12.0f;  // a three-way tie at the top
      break;
  }
  return v;
}

struct Setting {
  float temperature, top_p;
  int top_k;
};

struct Tally {
  int decided = 0, handed_back = 0;
};

/// Sample `draws` draws on both sides; every device decision must equal the host's.
Tally compare(ops::Backend* G, const std::vector<float>& logits, const Setting& s, int draws, const std::string& what) {
  Tally t;
  const int n = int(logits.size());
  auto dev = G->alloc(1, n, DType::f32, "logits (test)");
  EXPECT_TRUE(dev.ok()) << dev.status().to_string();
  if (!dev.ok()) return t;
  EXPECT_TRUE(G->upload(*dev, logits.data()).ok());
  Sampler host(n);
  GenerateParams gp;
  gp.temperature = s.temperature;
  gp.top_p = s.top_p;
  gp.top_k = s.top_k;
  gp.seed = 1234;
  const ops::SampleParams sp{s.temperature, s.top_p, s.top_k, gp.seed};
  for (int d = 0; d < draws; ++d) {
    int tok = -2;
    const Status st = G->sample(*dev, sp, std::uint64_t(d), &tok);
    EXPECT_TRUE(st.ok()) << st.to_string();
    const int want = host.sample(logits, gp, std::uint64_t(d));
    if (tok == -1) {
      ++t.handed_back;
      continue;
    }
    ++t.decided;
    EXPECT_EQ(tok, want) << what << " draw " << d;
    if (tok != want) break;  // one report per case is enough
  }
  G->free(*dev);
  return t;
}

TEST(CudaSampler, EqualsTheHostSamplerWheneverItDecides) {
  PIXTRAL_REQUIRE_GPU();
  std::mt19937 rng(7);
  const Setting settings[] = {
      {0.0f, 1.0f, 0},    // greedy
      {0.35f, 0.8f, 0},   // the engine's defaults
      {0.7f, 0.95f, 0},   //
      {1.0f, 0.9f, 40},   // top-k and top-p
      {0.5f, 1.0f, 20},   // top-k only
      {0.8f, 0.5f, 1},    // top_k 1 = greedy
      {1.0f, 1.0f, 0},    // no truncation: the host's
  };
  for (int n : {7, 1000, 131072})
    for (Shape shape : {Shape::llm, Shape::peaked, Shape::flat, Shape::ties}) {
      const auto logits = make_logits(rng, n, shape);
      for (const Setting& s : settings) {
        const std::string what = std::string(shape_name(shape)) + " n=" + std::to_string(n) +
                                 " T=" + std::to_string(s.temperature) + " top_p=" + std::to_string(s.top_p) +
                                 " top_k=" + std::to_string(s.top_k);
        const Tally t = compare(G, logits, s, 24, what);
        const bool greedy = s.temperature <= 0.0f || s.top_k == 1;
        const bool truncates = (s.top_k > 0 && s.top_k < n) || s.top_p < 1.0f;
        if (greedy) {
          EXPECT_EQ(t.handed_back, 0) << what << ": greedy must always be decided on the device";
        }
        if (!truncates && !greedy) {
          EXPECT_EQ(t.decided, 0) << what << ": without truncation the host sorts the vocabulary";
        }
        if (shape != Shape::flat && s.temperature == 0.35f) {
          EXPECT_EQ(t.handed_back, 0) << what << ": the default settings on a peaked distribution stay on the device";
        }
        // (peaked + top-k: the k-th token's term is below 2^-63 of the top one's — documented as the host's)
        if (n <= 1000 && truncates && !(shape == Shape::peaked && s.top_k > 1)) {
          EXPECT_EQ(t.handed_back, 0) << what << ": a small vocabulary fits the candidate list";
        }
        if (shape == Shape::llm && s.top_k == 40) {
          EXPECT_EQ(t.handed_back, 0) << what << ": top-k 40 fits the candidate list";
        }
      }
    }
}

TEST(CudaSampler, DrawsFollowTheSeedAndCounter) {
  PIXTRAL_REQUIRE_GPU();
  std::mt19937 rng(11);
  const auto logits = make_logits(rng, 1000, Shape::flat);  // many tokens in the nucleus: draws vary
  auto dev = G->alloc(1, 1000, DType::f32, "logits (test)");
  ASSERT_TRUE(dev.ok());
  ASSERT_TRUE(G->upload(*dev, logits.data()).ok());
  const ops::SampleParams p{1.0f, 0.5f, 0, 99};
  std::vector<int> first, again;
  for (int d = 0; d < 32; ++d) {
    int a = -2, b = -2;
    ASSERT_TRUE(G->sample(*dev, p, std::uint64_t(d), &a).ok());
    ASSERT_TRUE(G->sample(*dev, p, std::uint64_t(d), &b).ok());
    ASSERT_GE(a, 0) << "a 1000-token vocabulary fits the device's candidate list";
    first.push_back(a);
    again.push_back(b);
  }
  EXPECT_EQ(first, again) << "same (seed, draw) must give the same token";
  int distinct = 0;
  for (std::size_t i = 1; i < first.size(); ++i) distinct += first[i] != first[0];
  EXPECT_GT(distinct, 0) << "different draws must be able to pick different tokens";
  G->free(*dev);
}

/// The decode state as the device holds it (its bytes downloaded as an f32 row: a copy, bits unchanged).
std::vector<int> device_state(ops::Backend* G, ops::CudaExtension* ext) {
  std::vector<float> f(ops::kDecodeStateInts);
  const ops::Tensor t{ext->decode_state(), 1, ops::kDecodeStateInts, DType::f32};
  EXPECT_TRUE(G->download(t, f.data()).ok());
  std::vector<int> v(f.size());
  std::memcpy(v.data(), f.data(), f.size() * sizeof(int));
  return v;
}

std::uint64_t state_draw(const std::vector<int>& v) {
  std::uint64_t d = 0;
  std::memcpy(&d, &v[ops::kDecodeStateDraw], sizeof d);
  return d;
}

// sample_to_state (the sampler inside the decode graph): the token of sample() for the draw in the decode state,
// written into the state's token slot with the state advanced by one row and one draw; eager and captured, every
// replay sampling the next draw; tokens taken oldest first; at most kMaxSampledInFlight queued.
TEST(CudaSampler, SampleToStateEqualsSampleAndAdvancesTheState) {
  PIXTRAL_REQUIRE_GPU();
  ops::CudaExtension* ext = ops::cuda_extension(*G);
  ASSERT_NE(ext, nullptr);
  std::mt19937 rng(5);
  const auto logits = make_logits(rng, 1000, Shape::flat);  // sampled draws vary with the draw number
  auto dev = G->alloc(1, 1000, DType::f32, "logits (test)");
  ASSERT_TRUE(dev.ok());
  ASSERT_TRUE(G->upload(*dev, logits.data()).ok());
  int tok = -2;
  EXPECT_EQ(ext->take_sampled_token(&tok).code(), ErrorCode::invalid_argument) << "nothing was sampled";
  for (const ops::SampleParams p : {ops::SampleParams{0.0f, 1.0f, 0, 3}, ops::SampleParams{1.0f, 0.5f, 0, 99}}) {
    const std::string what = p.temperature > 0 ? "sampled" : "greedy";
    const std::uint64_t d0 = 40;
    std::vector<int> want;
    for (std::uint64_t d = d0; d < d0 + 4; ++d) {
      int t = -2;
      ASSERT_TRUE(G->sample(*dev, p, d, &t).ok());
      ASSERT_GE(t, 0) << what << ": a 1000-token vocabulary fits the device's candidate list";
      want.push_back(t);
    }
    if (p.temperature > 0) {
      EXPECT_NE(want, std::vector<int>(4, want[0])) << "the draws must differ";
    }
    // Eager: one sampling now.
    ASSERT_TRUE(ext->set_decode_state(100, 1).ok());
    ASSERT_TRUE(ext->set_decode_tokens(std::vector<int>{5}).ok());
    ASSERT_TRUE(ext->set_decode_draw(d0).ok());
    ASSERT_TRUE(ext->sample_to_state(*dev, p).ok());
    ASSERT_TRUE(ext->take_sampled_token(&tok).ok());
    EXPECT_EQ(tok, want[0]) << what;
    std::vector<int> st = device_state(G, ext);
    EXPECT_EQ(st[ops::kDecodeStatePosition], 101) << what;
    EXPECT_EQ(st[ops::kDecodeStateNKv], 102) << what;
    EXPECT_EQ(st[ops::kDecodeStatePositions], 101) << what;
    EXPECT_EQ(st[ops::kDecodeStateTokens], want[0]) << what;
    EXPECT_EQ(state_draw(st), d0 + 1) << what;
    // Captured: every replay samples the next draw; taken oldest first while later ones run.
    ASSERT_TRUE(ext->begin_capture().ok());
    ASSERT_TRUE(ext->sample_to_state(*dev, p).ok());
    ASSERT_TRUE(ext->end_capture().ok());
    for (int r = 0; r < 3; ++r) ASSERT_TRUE(ext->replay().ok());
    for (int r = 1; r < 4; ++r) {
      ASSERT_TRUE(ext->take_sampled_token(&tok).ok());
      EXPECT_EQ(tok, want[std::size_t(r)]) << what << " replay " << r;
    }
    st = device_state(G, ext);
    EXPECT_EQ(st[ops::kDecodeStatePosition], 104) << what;
    EXPECT_EQ(st[ops::kDecodeStateNKv], 105) << what;
    EXPECT_EQ(st[ops::kDecodeStateTokens], want[3]) << what;
    EXPECT_EQ(state_draw(st), d0 + 4) << what;
    EXPECT_EQ(ext->take_sampled_token(&tok).code(), ErrorCode::invalid_argument) << what << ": all were taken";
    // At most kMaxSampledInFlight queued and not taken; a new run (set_decode_draw) forgets them.
    for (int r = 0; r < ops::kMaxSampledInFlight; ++r) ASSERT_TRUE(ext->replay().ok());
    EXPECT_EQ(ext->replay().code(), ErrorCode::invalid_argument) << what;
    ASSERT_TRUE(ext->set_decode_draw(d0).ok());
    EXPECT_EQ(ext->take_sampled_token(&tok).code(), ErrorCode::invalid_argument) << what;
  }
  G->free(*dev);
}

TEST(CudaSampler, RefusesLogitsThatAreNotOneF32Row) {
  PIXTRAL_REQUIRE_GPU();
  auto dev = G->alloc(2, 64, DType::f32, "logits (test)");
  ASSERT_TRUE(dev.ok());
  int tok = 0;
  const Status st = G->sample(*dev, ops::SampleParams{}, 0, &tok);
  EXPECT_EQ(st.code(), ErrorCode::invalid_argument) << st.to_string();
  EXPECT_EQ(tok, -1);
  G->free(*dev);
}

}  // namespace
}  // namespace pixtral
