// SPDX-License-Identifier: Apache-2.0
// Session behaviour on a tiny random model (CPU): incremental decoding equals full recompute, a follow-up turn on
// the kept KV cache equals a fresh session, image features are reused by content, context limits and
// cancellation.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>

#include "model/forward.h"
#include "pixtral/model.h"
#include "runtime/impl.h"
#include "tiny_model.h"

using namespace pixtral;

namespace {

std::shared_ptr<Model> load_tiny(const tiny::TinyModelSpec& spec = {}) {
  const std::string dir = tiny::write_tiny_model(spec);
  if (dir.empty()) return nullptr;
  LoadOptions lo;
  lo.device = Device::cpu;
  lo.threads = 2;
  auto m = Model::load(dir, lo);
  std::filesystem::remove_all(dir);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  return m.ok() ? m.value() : nullptr;
}

std::shared_ptr<const Image> make_image(int w, int h, int salt) {
  auto img = std::make_shared<Image>();
  img->width = w;
  img->height = h;
  img->format = PixelFormat::rgb8;
  img->pixels.resize(std::size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        img->pixels[(std::size_t(y) * w + x) * 3 + c] = std::uint8_t((x * 7 + y * 13 + c * 50 + salt * 31) % 256);
  return img;
}

double rel_err(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += double(a[i] - b[i]) * (a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

GenerateParams greedy(int n) {
  GenerateParams p;
  p.temperature = 0;
  p.max_tokens = n;
  return p;
}

/// Logits of the last row of a full prefill over `ids` in a fresh decoder state (no KV reuse, one chunk).
std::vector<float> recompute_logits(const Model& model, std::span<const int> ids,
                                    std::span<const ChunkImageRows> images = {}) {
  const Model::Impl& m = model.impl();
  TensorSet owner(*m.backend);
  KvCache kv;
  DecoderScratch s;
  EXPECT_TRUE(alloc_decoder_state(*m.backend, m.ckpt.config(), int(ids.size()) + 1, int(ids.size()), owner, kv, s).ok());
  EXPECT_TRUE(decoder_forward(*m.backend, m.ckpt.config(), m.weights.decoder, m.ckpt.rope_pairs(), ids, 0, images, kv,
                              s, true)
                  .ok());
  std::vector<float> out(std::size_t(m.info.vocab_size));
  EXPECT_TRUE(m.backend->download(s.logits, out.data()).ok());
  return out;
}

}  // namespace

class TinySession : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = load_tiny();
    if (!model_) GTEST_SKIP() << "tiny model could not be built (tests/fixtures/tokenizer/tekken.json missing?)";
  }
  std::unique_ptr<Session> session(int context = 1024, int chunk = 512) {
    SessionOptions o;
    o.context_length = context;
    o.prefill_chunk = chunk;
    auto s = model_->create_session(o);
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    return s.ok() ? std::move(s.value()) : nullptr;
  }
  std::shared_ptr<Model> model_;
};

TEST_F(TinySession, DecodeEqualsRecompute) {
  auto s = session();
  std::vector<Message> chat = {Message::user_text("Describe the weather in Paris, briefly.")};
  std::vector<std::vector<float>> rows;
  auto g = s->generate(chat, greedy(8), {}, [&](std::span<const float> l) { rows.emplace_back(l.begin(), l.end()); });
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  ASSERT_EQ(rows.size(), g->tokens.size());
  std::vector<int> ids = g->prompt_tokens;
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const auto full = recompute_logits(*model_, ids);
    EXPECT_LT(rel_err(rows[k], full), 1e-5) << "step " << k;
    ids.push_back(g->tokens[k]);
  }
}

TEST_F(TinySession, ChunkedPrefillEqualsOneChunk) {
  std::vector<Message> chat = {Message::user_text(std::string(300, 'a') + " and some more words to tokenize.")};
  std::vector<float> a, b;
  auto s1 = session(1024, 512), s2 = session(1024, 7);
  auto g1 = s1->generate(chat, greedy(1), {}, [&](std::span<const float> l) { a.assign(l.begin(), l.end()); });
  auto g2 = s2->generate(chat, greedy(1), {}, [&](std::span<const float> l) { b.assign(l.begin(), l.end()); });
  ASSERT_TRUE(g1.ok() && g2.ok());
  EXPECT_LT(rel_err(a, b), 1e-5);
}

TEST_F(TinySession, FollowUpOnKeptCacheEqualsFreshSession) {
  auto img = make_image(48, 32, 1);
  Message u1{Role::user, {ContentPart::from_image(img), ContentPart::from_text("What is in the picture?")}, {}};
  auto kept = session();
  auto g1 = kept->generate(std::vector<Message>{u1}, greedy(6));
  ASSERT_TRUE(g1.ok()) << g1.status().to_string();
  Message a1{Role::assistant, {ContentPart::from_text(g1->text)}, g1->tokens};
  std::vector<Message> chat2 = {u1, a1, Message::user_text("And the colours?")};

  std::vector<std::vector<float>> kept_rows, fresh_rows;
  auto g2 = kept->generate(chat2, greedy(6), {}, [&](auto l) { kept_rows.emplace_back(l.begin(), l.end()); });
  auto fresh = session();
  auto g3 = fresh->generate(chat2, greedy(6), {}, [&](auto l) { fresh_rows.emplace_back(l.begin(), l.end()); });
  ASSERT_TRUE(g2.ok() && g3.ok());
  EXPECT_EQ(g2->prompt_tokens, g3->prompt_tokens);
  EXPECT_EQ(g2->tokens, g3->tokens);
  EXPECT_GT(g2->timings.reused_tokens, int(g1->prompt_tokens.size()) - 1);
  EXPECT_EQ(g2->timings.vision_ms, 0.0);  // nothing to encode: the image rows are in the cache
  for (std::size_t k = 0; k < std::min(kept_rows.size(), fresh_rows.size()); ++k)
    EXPECT_LT(rel_err(kept_rows[k], fresh_rows[k]), 1e-5) << "step " << k;
}

TEST_F(TinySession, ChangedSystemPromptReusesImageFeatures) {
  auto img = make_image(40, 56, 2);
  Message u{Role::user, {ContentPart::from_image(img), ContentPart::from_text("Read it.")}, {}};
  auto s = session();
  auto g1 = s->generate(std::vector<Message>{Message::system_text("Be terse."), u}, greedy(4));
  ASSERT_TRUE(g1.ok()) << g1.status().to_string();
  EXPECT_GT(g1->timings.vision_ms, 0.0);
  std::vector<Message> chat2 = {Message::system_text("Answer in French."), u};
  std::vector<float> a, b;
  auto g2 = s->generate(chat2, greedy(4), {}, [&](auto l) { if (a.empty()) a.assign(l.begin(), l.end()); });
  ASSERT_TRUE(g2.ok());
  EXPECT_EQ(g2->timings.vision_ms, 0.0) << "image features should come from the cache";
  EXPECT_LT(g2->timings.reused_tokens, int(g2->prompt_tokens.size()) - 10);  // the system text comes first
  auto fresh = session();
  auto g3 = fresh->generate(chat2, greedy(4), {}, [&](auto l) { if (b.empty()) b.assign(l.begin(), l.end()); });
  ASSERT_TRUE(g3.ok());
  EXPECT_EQ(g2->tokens, g3->tokens);
  EXPECT_LT(rel_err(a, b), 1e-5);
}

TEST_F(TinySession, SameSizeDifferentImageIsNotReused) {
  auto s = session();
  auto make = [&](int salt) {
    return std::vector<Message>{
        Message{Role::user, {ContentPart::from_image(make_image(32, 32, salt)), ContentPart::from_text("?")}, {}}};
  };
  std::vector<float> a, b;
  ASSERT_TRUE(s->generate(make(1), greedy(1)).ok());
  auto g = s->generate(make(2), greedy(1), {}, [&](auto l) { a.assign(l.begin(), l.end()); });
  ASSERT_TRUE(g.ok());
  EXPECT_LE(g->timings.reused_tokens, 2);  // <s> [INST] only: the image rows differ in content
  EXPECT_GT(g->timings.vision_ms, 0.0);
  auto fresh = session();
  ASSERT_TRUE(fresh->generate(make(2), greedy(1), {}, [&](auto l) { b.assign(l.begin(), l.end()); }).ok());
  EXPECT_LT(rel_err(a, b), 1e-5);
}

TEST_F(TinySession, PromptLongerThanContextIsRefusedBeforeWork) {
  auto s = session(64);
  auto g = s->generate(std::vector<Message>{Message::user_text(std::string(400, 'x'))}, greedy(4));
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), ErrorCode::context_overflow);
  EXPECT_NE(g.status().message().find("context"), std::string::npos);
  EXPECT_TRUE(s->cached_tokens().empty());
}

TEST_F(TinySession, CallbackFalseStopsWithCancelled) {
  auto s = session();
  int pieces = 0;
  auto g = s->generate(std::vector<Message>{Message::user_text("Count to ten.")}, greedy(50),
                       [&](std::string_view, int) { return ++pieces < 3; });
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->finish, FinishReason::cancelled);
  EXPECT_LE(g->tokens.size(), 3u);
}

TEST_F(TinySession, RequestStopFromAnotherThreadWithinOneToken) {
  auto s = session();
  std::atomic<int> seen{0};
  std::atomic<int> at_stop{-1};
  std::thread stopper([&] {
    while (seen.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    s->request_stop();
    at_stop = seen.load();  // read after the request: a pause between the two can only raise the bound
  });
  GenerateParams p = greedy(400);
  auto g = s->generate(std::vector<Message>{Message::user_text("Go on forever.")}, p, [&](std::string_view, int) {
    ++seen;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return true;
  });
  stopper.join();
  ASSERT_TRUE(g.ok());
  if (g->finish == FinishReason::stop) GTEST_SKIP() << "the model emitted </s> before the stop request";
  EXPECT_EQ(g->finish, FinishReason::cancelled);
  EXPECT_LE(int(g->tokens.size()), at_stop.load() + 2);
}

TEST_F(TinySession, MaxTokensGivesLength) {
  auto s = session();
  auto g = s->generate(std::vector<Message>{Message::user_text("Tell me a story.")}, greedy(3));
  ASSERT_TRUE(g.ok());
  if (g->finish == FinishReason::stop) GTEST_SKIP() << "the model emitted </s> within 3 tokens";
  EXPECT_EQ(g->finish, FinishReason::length);
  EXPECT_EQ(g->tokens.size(), 3u);
}

TEST_F(TinySession, TruncateForgetsRows) {
  auto s = session();
  ASSERT_TRUE(s->generate(std::vector<Message>{Message::user_text("Hello there.")}, greedy(3)).ok());
  const std::size_t n = s->cached_tokens().size();
  ASSERT_GT(n, 5u);
  s->truncate(4);
  EXPECT_EQ(s->cached_tokens().size(), 4u);
  auto g = s->generate(std::vector<Message>{Message::user_text("Hello there.")}, greedy(3));
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->timings.reused_tokens, 4);
}

TEST(TinyModel, Bf16WeightsLoadAndRun) {
  tiny::TinyModelSpec spec;
  spec.bf16 = true;
  auto m = load_tiny(spec);
  if (!m) GTEST_SKIP() << "tiny model could not be built";
  EXPECT_EQ(m->info().weight_dtype, "bf16");
  auto s = m->create_session({});
  ASSERT_TRUE(s.ok());
  auto g = (*s)->generate(std::vector<Message>{Message::user_text("hi")}, greedy(2));
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_FALSE(g->tokens.empty());
}

TEST_F(TinySession, RequestStopDuringPrefillStopsWithinOneChunk) {
  auto s = session(4096, 1);  // one row per chunk: the stop flag is checked before every row
  std::string text;
  for (int i = 0; i < 300; ++i) text += "word" + std::to_string(i) + " ";
  std::atomic<bool> started{false};
  std::thread stopper([&] {
    while (!started.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    s->request_stop();
  });
  started = true;
  auto g = s->generate(std::vector<Message>{Message::user_text(text)}, greedy(4));
  stopper.join();
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  if (g->finish != FinishReason::cancelled) GTEST_SKIP() << "prefill finished before the stop request arrived";
  if (s->cached_tokens().size() >= g->prompt_tokens.size())  // the whole prompt is cached: it landed in decoding
    GTEST_SKIP() << "the stop request came after the prefill (a slow machine)";
  EXPECT_TRUE(g->tokens.empty());
  EXPECT_LT(s->cached_tokens().size(), g->prompt_tokens.size());
  // The rows computed before the stop stay usable: the next turn reuses them.
  auto again = s->generate(std::vector<Message>{Message::user_text(text)}, greedy(1));
  ASSERT_TRUE(again.ok());
  EXPECT_GT(again->timings.reused_tokens, 0);
}
