// SPDX-License-Identifier: Apache-2.0
// Instruct v3 prompt builder: every structure rule of spec §3.1–3.3 and §5, checked against the tokenizer's own
// encode() of the pieces (the §3.3 table rows with 2×2-patch images, multi-turn, system glue, merging, the
// image-first rule, exact assistant ids, trailing-space strip) and the errors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <initializer_list>

#include "pixtral/tokenizer.h"
#include "text/prompt.h"

using namespace pixtral;

namespace {

const Tokenizer& tok() {
  static Tokenizer t = [] {
    auto r = Tokenizer::load(std::string(QUIRE_FIXTURES_DIR) + "/tokenizer/tekken.json");
    if (!r.ok()) {
      ADD_FAILURE() << r.status().to_string();
      std::abort();
    }
    return std::move(r).value();
  }();
  return t;
}

#define REQUIRE_ENCODE() \
  if (!tok().encode("a").ok()) GTEST_SKIP() << "engine built without PCRE2: encode() is unsupported"

using Ids = std::vector<int>;

Ids enc(std::string_view s) {
  auto r = tok().encode(s);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : Ids{};
}

/// Concatenate id lists.
Ids cat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const Ids& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

/// An image whose patch grid (16-pixel patches) is (w/16, h/16).
std::shared_ptr<const Image> image(int w, int h) {
  auto img = std::make_shared<Image>();
  img->width = w, img->height = h, img->format = PixelFormat::rgb8;
  img->pixels.assign(std::size_t(w) * h * 3, 128);
  return img;
}

const ImageGridFn kGrid = [](const Image& im) -> Result<std::pair<int, int>> {
  return std::pair<int, int>{im.width / 16, im.height / 16};
};

/// Spec §5 run for a Wp × Hp grid.
Ids IMG(int wp = 2, int hp = 2) {
  Ids run;
  for (int r = 0; r < hp; ++r) {
    run.insert(run.end(), std::size_t(wp), 10);
    run.push_back(12);
  }
  run.back() = 13;
  return run;
}

ContentPart T(std::string s) { return ContentPart::from_text(std::move(s)); }
ContentPart I(int w = 32, int h = 32) { return ContentPart::from_image(image(w, h)); }
Message user(std::vector<ContentPart> parts) { return {Role::user, std::move(parts), {}}; }
Message U(std::string s) { return Message::user_text(std::move(s)); }
Message A(std::string s) { return Message::assistant_text(std::move(s)); }
Message S(std::string s) { return Message::system_text(std::move(s)); }

Prompt build(const std::vector<Message>& msgs) {
  auto r = build_prompt_v3(tok(), msgs, kGrid);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : Prompt{};
}

Status build_error(const std::vector<Message>& msgs, const ImageGridFn& grid = kGrid) {
  auto r = build_prompt_v3(tok(), msgs, grid);
  EXPECT_FALSE(r.ok());
  return r.status();
}

/// Every recorded run sits where its tokens are, and the runs cover every [IMG] of the prompt.
void check_runs(const Prompt& p) {
  std::size_t img_tokens = 0;
  for (int id : p.tokens) img_tokens += id == 10;
  std::size_t covered = 0;
  for (const ImageRun& run : p.images) {
    ASSERT_LE(run.start + run.length(), p.tokens.size());
    const Ids want = IMG(run.width_patches, run.height_patches);
    EXPECT_EQ(Ids(p.tokens.begin() + std::ptrdiff_t(run.start),
                  p.tokens.begin() + std::ptrdiff_t(run.start + run.length())),
              want);
    covered += std::size_t(run.width_patches) * run.height_patches;
  }
  EXPECT_EQ(covered, img_tokens);
}

}  // namespace

// ---- spec §3.3 table rows (2×2-patch images) ----

TEST(PromptV3, TextThenImageMovesImageFirst) {
  REQUIRE_ENCODE();
  const Prompt p = build({user({T("a"), I()})});
  EXPECT_EQ(p.tokens, cat({{1, 3}, IMG(), enc("a"), {4}}));
  ASSERT_EQ(p.images.size(), 1u);
  EXPECT_EQ(p.images[0].start, 2u);
  EXPECT_EQ(p.images[0].width_patches, 2);
  EXPECT_EQ(p.images[0].height_patches, 2);
  check_runs(p);
}

TEST(PromptV3, SystemGluedBeforeImageEitherOrder) {
  REQUIRE_ENCODE();
  const Ids want = cat({{1, 3}, enc("A B\n\n"), IMG(), enc("C"), {4}});
  EXPECT_EQ(build({S("A B"), user({T("C"), I()})}).tokens, want);
  EXPECT_EQ(build({S("A B"), user({I(), T("C")})}).tokens, want);
  const Prompt p = build({S("A B"), user({I(), T("C")})});
  ASSERT_EQ(p.images.size(), 1u);
  EXPECT_EQ(p.images[0].start, 2 + enc("A B\n\n").size());
}

TEST(PromptV3, SystemImagesAndEarlierAnswer) {
  REQUIRE_ENCODE();
  const Prompt p = build({S("A B"), user({I(), I(), T("C")}), A("D"), user({I(), T("E"), I()})});
  EXPECT_EQ(p.tokens, cat({{1, 3}, IMG(), IMG(), enc("C"), {4}, enc("D"), {2, 3}, enc("A B\n\n"), IMG(), enc("E"),
                           IMG(), {4}}));
  EXPECT_EQ(p.images.size(), 4u);
  check_runs(p);
}

TEST(PromptV3, InterleavedChunksAdjacentTextsJoined) {
  REQUIRE_ENCODE();
  const Prompt p = build({user({T("A"), I(), T("B"), T("C"), I(), T("D"), T("E")})});
  EXPECT_EQ(p.tokens, cat({{1, 3}, enc("A"), IMG(), enc("B\n\nC"), IMG(), enc("D\n\nE"), {4}}));
  check_runs(p);
}

TEST(PromptV3, TextOnlyWithSystemInTheMiddle) {
  REQUIRE_ENCODE();
  const Prompt p = build({U("a"), A("b"), S("SYSTEM"), U("c")});
  EXPECT_EQ(p.tokens, cat({{1, 3}, enc("a"), {4}, enc("b"), {2, 3}, enc("SYSTEM\n\n"), enc("c"), {4}}));
  EXPECT_TRUE(p.images.empty());
}

// ---- §3.3 structure examples ----

TEST(PromptV3, MultiTurnAndSystemTwoTurns) {
  REQUIRE_ENCODE();
  EXPECT_EQ(build({U("u1"), A("a1"), U("u2")}).tokens,
            cat({{1, 3}, enc("u1"), {4}, enc("a1"), {2, 3}, enc("u2"), {4}}));
  const std::string sys = "You are a helpful assistant.";
  EXPECT_EQ(build({S(sys), U("What is 2+2?"), A("4."), U("And 3+3?")}).tokens,
            cat({{1, 3}, enc("What is 2+2?"), {4}, enc("4."), {2, 3}, enc(sys + "\n\n"), enc("And 3+3?"), {4}}));
  // The system text and the first user text are separate BPE calls.
  EXPECT_EQ(build({S("S"), U("\nx")}).tokens, cat({{1, 3}, enc("S\n\n"), enc("\nx"), {4}}));
}

TEST(PromptV3, SystemMessagesJoinedAndMovedToLastUser) {
  REQUIRE_ENCODE();
  EXPECT_EQ(build({S("s1"), U("u1"), A("a1"), S("s2"), U("u2")}).tokens,
            cat({{1, 3}, enc("u1"), {4}, enc("a1"), {2, 3}, enc("s1\n\ns2\n\n"), enc("u2"), {4}}));
  // An empty system prompt adds nothing.
  EXPECT_EQ(build({S(""), U("u")}).tokens, cat({{1, 3}, enc("u"), {4}}));
}

TEST(PromptV3, SameRoleMessagesMerged) {
  REQUIRE_ENCODE();
  EXPECT_EQ(build({U("a"), U("b")}).tokens, cat({{1, 3}, enc("a\n\nb"), {4}}));
  EXPECT_EQ(build({U("a"), A("b"), A("c"), U("d")}).tokens,
            cat({{1, 3}, enc("a"), {4}, enc("b\n\nc"), {2, 3}, enc("d"), {4}}));
  // A system message between two user messages does not split them.
  EXPECT_EQ(build({U("a"), S("s"), U("b")}).tokens, cat({{1, 3}, enc("s\n\n"), enc("a\n\nb"), {4}}));
  // Text of one message then an image of the next: merged into [text, image] → image first.
  EXPECT_EQ(build({U("x"), user({I()})}).tokens, cat({{1, 3}, IMG(), enc("x"), {4}}));
}

TEST(PromptV3, LeadingEmptyUserTurn) {
  REQUIRE_ENCODE();
  EXPECT_EQ(build({A("x"), U("y")}).tokens, cat({{1, 3, 4}, enc("x"), {2, 3}, enc("y"), {4}}));
  EXPECT_EQ(build({S("S"), A("x"), U("y")}).tokens,
            cat({{1, 3, 4}, enc("x"), {2, 3}, enc("S\n\n"), enc("y"), {4}}));
}

// ---- image-first rule variants (current mistral-common) ----

TEST(PromptV3, ImageFirstRuleVariants) {
  REQUIRE_ENCODE();
  // Two texts then an image: the texts are joined, the image moves to the front.
  EXPECT_EQ(build({user({T("t1"), T("t2"), I()})}).tokens, cat({{1, 3}, IMG(), enc("t1\n\nt2"), {4}}));
  // Image in the middle: order kept.
  EXPECT_EQ(build({user({T("t1"), I(), T("t2")})}).tokens, cat({{1, 3}, enc("t1"), IMG(), enc("t2"), {4}}));
  // [image, text, image]: the last chunk is an image but an earlier one is too → order kept.
  EXPECT_EQ(build({user({I(32, 16), T("t"), I(16, 32)})}).tokens,
            cat({{1, 3}, IMG(2, 1), enc("t"), IMG(1, 2), {4}}));
  // Two images only: order kept (distinct grids show it).
  const Prompt p = build({user({I(48, 16), I(16, 32)})});
  EXPECT_EQ(p.tokens, cat({{1, 3}, IMG(3, 1), IMG(1, 2), {4}}));
  ASSERT_EQ(p.images.size(), 2u);
  EXPECT_EQ(p.images[0].width_patches, 3);
  EXPECT_EQ(p.images[1].height_patches, 2);
  EXPECT_EQ(p.images[1].start, p.images[0].start + IMG(3, 1).size());
  // An image alone; an image with an empty text after it (the empty text is dropped).
  EXPECT_EQ(build({user({I()})}).tokens, cat({{1, 3}, IMG(), {4}}));
  EXPECT_EQ(build({user({I(), T("")})}).tokens, cat({{1, 3}, IMG(), {4}}));
  // Only the last user turn gets the system prompt; earlier turns keep their own image-first rule.
  EXPECT_EQ(build({S("s"), user({T("q"), I(16, 16)}), A("r"), user({T("q2"), I(32, 16)})}).tokens,
            cat({{1, 3}, IMG(1, 1), enc("q"), {4}, enc("r"), {2, 3}, enc("s\n\n"), IMG(2, 1), enc("q2"), {4}}));
}

TEST(PromptV3, ManyImagesRecordedInPromptOrder) {
  REQUIRE_ENCODE();
  const Prompt p = build({user({I(64, 32), T("first"), I(16, 48)}), A("ok"),
                          user({T("then"), I(32, 32), I(80, 16), T("end")})});
  ASSERT_EQ(p.images.size(), 4u);
  const int want_grid[4][2] = {{4, 2}, {1, 3}, {2, 2}, {5, 1}};
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(p.images[std::size_t(k)].width_patches, want_grid[k][0]) << k;
    EXPECT_EQ(p.images[std::size_t(k)].height_patches, want_grid[k][1]) << k;
    if (k) {
      EXPECT_GT(p.images[std::size_t(k)].start, p.images[std::size_t(k - 1)].start);
    }
  }
  check_runs(p);
  EXPECT_EQ(p.tokens, cat({{1, 3}, IMG(4, 2), enc("first"), IMG(1, 3), {4}, enc("ok"), {2, 3}, enc("then"),
                           IMG(2, 2), IMG(5, 1), enc("end"), {4}}));
}

// ---- assistant turns ----

TEST(PromptV3, AssistantExactIdsReused) {
  REQUIRE_ENCODE();
  Message a = A("text that is not these ids");
  a.tokens = {1500, 1600, 1700};
  EXPECT_EQ(build({U("q"), a, U("q2")}).tokens, cat({{1, 3}, enc("q"), {4, 1500, 1600, 1700, 2, 3}, enc("q2"), {4}}));
  a.tokens = {1500, 2};  // already ends with </s>: not doubled
  EXPECT_EQ(build({U("q"), a, U("q2")}).tokens, cat({{1, 3}, enc("q"), {4, 1500, 2, 3}, enc("q2"), {4}}));
}

TEST(PromptV3, AssistantTrailingSpacesStripped) {
  REQUIRE_ENCODE();
  EXPECT_EQ(build({U("q"), A("hello   "), U("r")}).tokens, build({U("q"), A("hello"), U("r")}).tokens);
  EXPECT_NE(enc("hello   "), enc("hello"));  // the strip is observable
  // Only spaces are stripped (not newlines or tabs), and user text is never trimmed.
  EXPECT_EQ(build({U("q"), A("x\n "), U("r ")}).tokens, cat({{1, 3}, enc("q"), {4}, enc("x\n"), {2, 3}, enc("r "), {4}}));
  EXPECT_EQ(build({U("q"), A("x\t"), U("r")}).tokens, cat({{1, 3}, enc("q"), {4}, enc("x\t"), {2, 3}, enc("r"), {4}}));
}

// ---- errors ----

TEST(PromptV3, Errors) {
  EXPECT_EQ(build_error({}).code(), ErrorCode::invalid_argument);
  REQUIRE_ENCODE();
  Status s = build_error({U("q"), A("a")});
  EXPECT_EQ(s.code(), ErrorCode::invalid_argument);
  EXPECT_NE(s.message().find("end with a user"), std::string::npos) << s.message();
  EXPECT_EQ(build_error({S("only a system prompt")}).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(build_error({A("only an answer")}).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(build_error({user({ContentPart::from_image(nullptr)})}).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(build_error({Message{Role::system, {I()}, {}}, U("q")}).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(build_error({U("bad \xFF utf-8")}).code(), ErrorCode::invalid_argument);
  EXPECT_EQ(build_error({S("bad \xC0"), U("q")}).code(), ErrorCode::invalid_argument);
  // The grid function's error propagates; an empty grid is rejected.
  const ImageGridFn failing = [](const Image&) -> Result<std::pair<int, int>> {
    return Status(ErrorCode::unsupported, "grid says no");
  };
  s = build_error({user({I(), T("q")})}, failing);
  EXPECT_EQ(s.message(), "grid says no");
  EXPECT_EQ(build_error({user({I(8, 8), T("q")})}).code(), ErrorCode::invalid_argument);  // 0×0 patches
  EXPECT_EQ(build_error({user({I(), T("q")})}, ImageGridFn{}).code(), ErrorCode::invalid_argument);
}

// ---- opt-in: the real tekken_240911.json (spec §2.7, §3.3 vectors from mistral-common's own tests) ----

TEST(PromptV3, RealTekkenVectors) {
  const char* path = std::getenv("QUIRE_REAL_TEKKEN");
  if (!path) GTEST_SKIP() << "set QUIRE_REAL_TEKKEN=/path/to/Pixtral-12B-2409/tekken.json to check the real file";
  auto loaded = Tokenizer::load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().to_string();
  const Tokenizer& real = *loaded;
  if (!real.encode("a").ok()) GTEST_SKIP() << "engine built without PCRE2";
  auto e = [&](std::string_view s) { return *real.encode(s); };
  // spec §2.7
  EXPECT_EQ(e("a"), Ids({1097}));
  EXPECT_EQ(e("A B"), Ids({1065, 1398}));
  EXPECT_EQ(e("\n\n"), Ids({1267}));
  EXPECT_EQ(e("SYSTEM"), Ids({101289, 58343}));
  EXPECT_EQ(real.vocab_size(), 131072);
  // spec §3.3 table (test image of 2×2 patches)
  auto b = [&](const std::vector<Message>& m) {
    auto r = build_prompt_v3(real, m, [](const Image&) -> Result<std::pair<int, int>> { return std::pair{2, 2}; });
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? r->tokens : Ids{};
  };
  EXPECT_EQ(b({user({T("a"), I()})}), cat({{1, 3}, IMG(), {1097, 4}}));
  EXPECT_EQ(b({S("A B"), user({T("C"), I()})}), cat({{1, 3, 1065, 1398, 1267}, IMG(), {1067, 4}}));
  EXPECT_EQ(b({S("A B"), user({I(), T("C")})}), cat({{1, 3, 1065, 1398, 1267}, IMG(), {1067, 4}}));
  EXPECT_EQ(b({S("A B"), user({I(), I(), T("C")}), A("D"), user({I(), T("E"), I()})}),
            cat({{1, 3}, IMG(), IMG(), {1067, 4, 1068, 2, 3, 1065, 1398, 1267}, IMG(), {1069}, IMG(), {4}}));
  EXPECT_EQ(b({user({T("A"), I(), T("B"), T("C"), I(), T("D"), T("E")})}),
            cat({{1, 3, 1065}, IMG(), {1066, 1267, 1067}, IMG(), {1068, 1267, 1069, 4}}));
  EXPECT_EQ(b({U("a"), A("b"), S("SYSTEM"), U("c")}), Ids({1, 3, 1097, 4, 1098, 2, 3, 101289, 58343, 1267, 1099, 4}));
}
