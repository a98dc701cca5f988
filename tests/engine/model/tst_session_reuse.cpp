// SPDX-License-Identifier: Apache-2.0
// Session consistency on the reference fixtures: decode == recompute (row-by-row prefill equals chunked prefill,
// and K/V rows written while decoding serve a follow-up turn exactly like a fresh prefill of the same token
// record), the record is the generated ids (never re-encoded text), and a changed system prompt reuses the cached
// image features while still equalling a fresh session.
// ref: issue 3 "Runtime" and "Fidelity"; spec pixtral-model.md §3.2 (system prompt glued to the last user turn)
#include <gtest/gtest.h>

#include <algorithm>

#include "fixture_cases.h"

using fixture::Case;
using fixture::cases;

namespace {

constexpr double kSelfTol = 1e-5;  // engine vs itself along different schedules

#define REQUIRE_FIXTURES() \
  if (cases().empty()) GTEST_SKIP() << fixture::missing_fixtures_hint()

std::vector<pixtral::Message> messages_of(const Case& c) {
  auto m = fixture::parse_messages(c.json.at("messages"), c.dir);
  EXPECT_TRUE(m.ok()) << c.id() << ": " << m.status().to_string();
  return m.ok() ? std::move(m.value()) : std::vector<pixtral::Message>{};
}

void expect_same_run(const fixture::Run& a, const fixture::Run& b, const std::string& what) {
  EXPECT_EQ(a.gen.tokens, b.gen.tokens) << what;
  for (std::size_t i = 0; i < std::min(a.logits.size(), b.logits.size()); ++i)
    EXPECT_LT(fixture::rel_l2(a.logits[i], b.logits[i]), kSelfTol) << what << ": logits row " << i;
}

std::unique_ptr<pixtral::Session> new_session(const pixtral::Model& m, int chunk = 512) {
  pixtral::SessionOptions o;
  o.prefill_chunk = chunk;
  auto s = m.create_session(o);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  return s.ok() ? std::move(s.value()) : nullptr;
}

}  // namespace

// Decode == recompute, part 1: a prompt fed one row at a time (each row a decode-style step over the growing KV
// cache) gives the logits of the same prompt prefilled in one chunk, and then the same 32 greedy steps.
TEST(ModelFixtures, RowByRowPrefillEqualsChunkedPrefill) {
  REQUIRE_FIXTURES();
  int checked = 0;
  for (const Case& c : cases()) {
    if (c.prompt_tokens.size() > 600) continue;  // the long case: row-by-row costs too much for CI
    if (c.model != "tiny-f32" && c.model != "tiny-bf16") continue;
    SCOPED_TRACE(c.id());
    auto model = fixture::load_model(c.model_dir / "native");
    if (!model) continue;  // load_model reported the failure
    const auto msgs = messages_of(c);
    auto s1 = new_session(*model, 1), s7 = new_session(*model, 7), sb = new_session(*model, 4096);
    ASSERT_TRUE(s1 && s7 && sb);
    auto r1 = fixture::run_greedy(*s1, msgs, 32);
    auto r7 = fixture::run_greedy(*s7, msgs, 32);
    auto rb = fixture::run_greedy(*sb, msgs, 32);
    ASSERT_TRUE(r1.ok() && r7.ok() && rb.ok());
    expect_same_run(*r1, *rb, "chunk 1 vs one chunk");
    expect_same_run(*r7, *rb, "chunk 7 vs one chunk");
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

// Decode == recompute, part 2, and the token record: a follow-up turn on the session that generated the answer
// reuses the K/V rows written while decoding; a fresh session prefills the identical record from scratch.
TEST(ModelFixtures, FollowUpOnKeptCacheEqualsFreshSession) {
  REQUIRE_FIXTURES();
  int checked = 0;
  for (const Case& c : cases()) {
    if (c.followup.empty()) continue;
    SCOPED_TRACE(c.id());
    auto model = fixture::load_model(c.model_dir / "native");
    if (!model) continue;  // load_model reported the failure
    auto msgs = messages_of(c);
    auto kept = new_session(*model);
    ASSERT_TRUE(kept);
    auto first = fixture::run_greedy(*kept, msgs, 32);
    ASSERT_TRUE(first.ok()) << first.status().to_string();
    const std::vector<int> answer = first->gen.tokens;
    EXPECT_EQ(answer, c.greedy_tokens);

    pixtral::Message reply{pixtral::Role::assistant, {pixtral::ContentPart::from_text(first->gen.text)}, answer};
    msgs.push_back(reply);
    msgs.push_back(pixtral::Message::user_text(c.followup));

    // The record: exactly the generated ids (+ </s> when it stopped on the budget), then [INST] of the new turn.
    auto prompt2 = kept->build_prompt(msgs);
    ASSERT_TRUE(prompt2.ok()) << prompt2.status().to_string();
    std::vector<int> turn = answer;
    if (turn.empty() || turn.back() != 2) turn.push_back(2);
    turn.push_back(3);
    EXPECT_NE(std::search(prompt2->tokens.begin(), prompt2->tokens.end(), turn.begin(), turn.end()),
              prompt2->tokens.end())
        << "follow-up prompt does not hold the generated ids + </s> + [INST]";
    // Without a system prompt the old prompt and the answer are a prefix of the new prompt (with one, v3 moves the
    // system text to the new last user turn, so only the part before the old last turn is shared).
    const bool has_system = std::any_of(msgs.begin(), msgs.end(),
                                        [](const pixtral::Message& m) { return m.role == pixtral::Role::system; });
    std::vector<int> record = c.prompt_tokens;
    record.insert(record.end(), turn.begin(), turn.end());
    if (!has_system) {
      EXPECT_TRUE(prompt2->tokens.size() > record.size() &&
                  std::equal(record.begin(), record.end(), prompt2->tokens.begin()))
          << "follow-up prompt does not start with prompt + generated ids + </s> + [INST]";
    }
    const auto lcp = std::size_t(std::mismatch(record.begin(), record.end(), prompt2->tokens.begin(),
                                               prompt2->tokens.end()).first - record.begin());

    auto again = fixture::run_greedy(*kept, msgs, 8);
    ASSERT_TRUE(again.ok()) << again.status().to_string();
    EXPECT_EQ(again->gen.prompt_tokens, prompt2->tokens);
    // Every row written before (prompt rows and the rows of all but possibly the last generated id) is reused.
    const std::size_t written = c.prompt_tokens.size() + answer.size() - 1;
    EXPECT_GE(std::size_t(again->gen.timings.reused_tokens), std::min(lcp, written))
        << "the kept KV cache was not reused (common prefix " << lcp << ")";

    auto fresh_s = new_session(*model);
    ASSERT_TRUE(fresh_s);
    auto fresh = fixture::run_greedy(*fresh_s, msgs, 8);
    ASSERT_TRUE(fresh.ok()) << fresh.status().to_string();
    EXPECT_EQ(fresh->gen.timings.reused_tokens, 0);
    expect_same_run(*again, *fresh, "follow-up on kept cache vs fresh session");
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

// A changed system prompt (glued to the last user turn) invalidates the KV rows from that turn on, but the
// images' features come from the content-hash cache: no vision encoder run, same result as a fresh session.
TEST(ModelFixtures, ChangedSystemPromptReusesImageFeatures) {
  REQUIRE_FIXTURES();
  int checked = 0;
  for (const Case& c : cases()) {
    if (c.system_variant.empty() || c.images.empty()) continue;
    SCOPED_TRACE(c.id());
    auto model = fixture::load_model(c.model_dir / "native");
    if (!model) continue;  // load_model reported the failure
    auto msgs = messages_of(c);
    auto kept = new_session(*model);
    ASSERT_TRUE(kept);
    auto first = fixture::run_greedy(*kept, msgs, 4);
    ASSERT_TRUE(first.ok()) << first.status().to_string();
    EXPECT_GT(first->gen.timings.vision_ms, 0.0) << "first run must encode the images";

    bool replaced = false;
    for (auto& m : msgs) {
      if (m.role != pixtral::Role::system) continue;
      m.parts = {pixtral::ContentPart::from_text(c.system_variant)};
      replaced = true;
    }
    ASSERT_TRUE(replaced) << "case has a system_variant but no system message";

    auto changed = fixture::run_greedy(*kept, msgs, 32);
    ASSERT_TRUE(changed.ok()) << changed.status().to_string();
    EXPECT_EQ(changed->gen.timings.vision_ms, 0.0) << "image features were recomputed";
    EXPECT_GT(changed->gen.timings.reused_tokens, 0) << "the unchanged earlier turns were not reused";
    EXPECT_LT(changed->gen.timings.reused_tokens, int(changed->gen.prompt_tokens.size()));

    auto fresh_s = new_session(*model);
    ASSERT_TRUE(fresh_s);
    auto fresh = fixture::run_greedy(*fresh_s, msgs, 32);
    ASSERT_TRUE(fresh.ok()) << fresh.status().to_string();
    EXPECT_GT(fresh->gen.timings.vision_ms, 0.0);
    EXPECT_EQ(changed->gen.prompt_tokens, fresh->gen.prompt_tokens);
    expect_same_run(*changed, *fresh, "changed system prompt on kept session vs fresh session");
    ++checked;
  }
  EXPECT_GT(checked, 0);
}
