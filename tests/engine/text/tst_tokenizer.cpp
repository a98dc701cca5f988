// SPDX-License-Identifier: Apache-2.0
// Tekken tokenizer: ids identical to tiktoken on a varied corpus (reference.json, written by make_reference.py on
// a machine with tiktoken; skipped visibly while absent), truncation, special strings as text, decoding with
// Python's U+FFFD rule, streaming across split UTF-8, and a specific error for each malformed tekken.json.
// Fixture: tests/fixtures/tokenizer/tekken.json (make_tekken.py: real pattern, 1000 specials, truncation).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "pixtral/tokenizer.h"
#include "text/bpe.h"

using namespace pixtral;
using nlohmann::json;

namespace {

std::string fixture_path() { return std::string(QUIRE_FIXTURES_DIR) + "/tokenizer/tekken.json"; }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const json& fixture_json() {
  static const json j = json::parse(read_file(fixture_path()));
  return j;
}

const Tokenizer& tok() {
  static Tokenizer t = [] {
    auto r = Tokenizer::load(fixture_path());
    if (!r.ok()) {
      ADD_FAILURE() << r.status().to_string();
      std::abort();
    }
    return std::move(r).value();
  }();
  return t;
}

/// True when this build can encode (PCRE2 present); otherwise encode() must say why.
bool can_encode() {
  auto r = tok().encode("a");
  if (r.ok()) return true;
  EXPECT_EQ(r.status().code(), ErrorCode::unsupported);
  EXPECT_NE(r.status().message().find("PCRE2"), std::string::npos) << r.status().message();
  return false;
}

#define REQUIRE_ENCODE() \
  if (!can_encode()) GTEST_SKIP() << "engine built without PCRE2: encode() is unsupported"

std::vector<int> enc(const Tokenizer& t, std::string_view s) {
  auto r = t.encode(s);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : std::vector<int>{};
}

Result<Tokenizer> from(const json& j) { return Tokenizer::from_json(j.dump(), "test.json"); }

// Texts of every category the pre-tokenizer distinguishes.
const std::vector<std::string> kTexts = {
    "Hello, World! HTTPServerError getElementById",
    "def f(x):\n    return x * 2  # double\r\n",
    "1234567 3.14159 ٠١٢٣ १२३",
    "Café naïve Zürich Łódź e\xCC\x81",
    "我能吞下玻璃而不伤身体。こんにちは 안녕하세요",
    "مرحبا بالعالم! नमस्ते दुनिया!",
    "👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽 🇫🇷",
    "   spaces\t\ttabs\n\n\nnewlines   \r\n trailing   ",
    "[INST] <s> </s> [IMG] [/INST]",
};

}  // namespace

TEST(Tokenizer, LoadsConfigSpecialsAndImageBlock) {
  const json& j = fixture_json();
  const Tokenizer& t = tok();
  EXPECT_EQ(t.vocab_size(), j["config"]["default_vocab_size"].get<int>());
  EXPECT_EQ(t.num_special_tokens(), 1000);
  EXPECT_EQ(t.version(), "v3");
  EXPECT_EQ(t.image_patch_size(), j["multimodal"]["image_patch_size"].get<int>());
  EXPECT_EQ(t.max_image_size(), j["multimodal"]["max_image_size"].get<int>());
  EXPECT_EQ(t.spatial_merge_size(), 1);
  EXPECT_EQ(t.special().bos, 1);
  EXPECT_EQ(t.special().eos, 2);
  EXPECT_EQ(t.special().img_end, 13);
  for (int id = 0; id < 1000; ++id) {
    EXPECT_EQ(t.special_name(id), j["special_tokens"][id]["token_str"].get<std::string>());
    EXPECT_TRUE(t.token_bytes(id).empty());
  }
  EXPECT_EQ(t.special_name(1000), "");
  // ids 1000 + b are the single bytes (ranks 0..255).
  for (int b = 0; b < 256; ++b) EXPECT_EQ(t.token_bytes(1000 + b), std::string(1, char(b)));
  EXPECT_TRUE(t.token_bytes(t.vocab_size()).empty());  // beyond the kept entries
}

TEST(Tokenizer, MatchesTiktokenReference) {
  const char* env = std::getenv("QUIRE_TOKENIZER_REFERENCE");
  const std::string path = env ? env : std::string(QUIRE_FIXTURES_DIR) + "/tokenizer/reference.json";
  std::ifstream f(path);
  if (!f) {
    GTEST_SKIP() << path << " is absent: run `python3 tests/fixtures/tokenizer/make_reference.py` where tiktoken "
                 << "is installed (the GPU machine) and commit reference.json";
  }
  REQUIRE_ENCODE();
  const json ref = json::parse(read_file(path));
  // The reference must come from this tekken.json (regenerate both together).
  ASSERT_EQ(ref["tekken"]["default_vocab_size"].get<int>(), tok().vocab_size()) << "stale reference.json";
  std::string last_hex;
  for (unsigned char c : tok().token_bytes(tok().vocab_size() - 1)) {
    static const char* d = "0123456789abcdef";
    last_hex += d[c >> 4], last_hex += d[c & 15];
  }
  ASSERT_EQ(ref["tekken"]["last_kept_hex"].get<std::string>(), last_hex) << "stale reference.json";
  std::cout << "reference from " << ref.value("generator", "?") << "\n";
  std::size_t n = 0, ids_total = 0;
  for (const json& c : ref["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int> want = c["ids"].get<std::vector<int>>();
    EXPECT_EQ(enc(tok(), text), want) << "text: \"" << text.substr(0, 200) << "\"";
    ++n, ids_total += want.size();
  }
  EXPECT_GT(n, 100u);
  std::cout << n << " cases, " << ids_total << " ids compared\n";
}

TEST(Tokenizer, TruncatedEntriesAreNeverProduced) {
  REQUIRE_ENCODE();
  const json& j = fixture_json();
  const int inner = tok().vocab_size() - 1000;
  const auto& vocab = j["vocab"];
  ASSERT_GT(vocab.size(), std::size_t(inner)) << "the fixture must drop some entries";
  // The same file without truncation knows the dropped entries.
  json full = j;
  full["config"]["default_vocab_size"] = int(vocab.size()) + 1000;
  auto untrunc = from(full);
  ASSERT_TRUE(untrunc.ok()) << untrunc.status().to_string();
  int produced_when_kept = 0;
  for (std::size_t r = std::size_t(inner); r < vocab.size(); ++r) {
    const std::string_view bytes = untrunc->token_bytes(int(r) + 1000);
    auto ids = untrunc->encode(bytes);
    if (!ids.ok()) continue;  // a partial UTF-8 entry is not encodable text
    for (int id : *ids) produced_when_kept += id >= tok().vocab_size();
    for (int id : enc(tok(), bytes)) {
      EXPECT_LT(id, tok().vocab_size()) << "rank " << r;
      EXPECT_GE(id, 1000);
    }
    EXPECT_EQ(tok().decode(enc(tok(), bytes)), bytes);
  }
  EXPECT_GT(produced_when_kept, 0) << "the dropped entries should matter without truncation";
}

TEST(Tokenizer, SpecialStringsAreOrdinaryText) {
  REQUIRE_ENCODE();
  for (std::string s : {"[INST]", "[/INST]", "<s>", "</s>", "<unk>", "[IMG]", "[IMG_BREAK]", "<SPECIAL_42>",
                        "<s>[INST]hi[/INST]</s>"}) {
    const auto ids = enc(tok(), s);
    ASSERT_FALSE(ids.empty());
    for (int id : ids) EXPECT_GE(id, 1000) << s;
    EXPECT_EQ(tok().decode(ids), s);
  }
  EXPECT_TRUE(enc(tok(), "").empty());
}

TEST(Tokenizer, DecodeRoundTripAndSpecialPolicy) {
  REQUIRE_ENCODE();
  for (const std::string& s : kTexts) EXPECT_EQ(tok().decode(enc(tok(), s)), s);
  std::vector<int> ids = {1, 3};
  const auto hi = enc(tok(), "hi");
  ids.insert(ids.end(), hi.begin(), hi.end());
  ids.push_back(4);
  ids.push_back(2);
  EXPECT_EQ(tok().decode(ids), "hi");
  EXPECT_EQ(tok().decode(ids, /*keep_special=*/true), "<s>[INST]hi[/INST]</s>");
}

TEST(Tokenizer, DecodeReplacesMaximalSubparts) {
  auto bytes_ids = [](std::string_view b) {
    std::vector<int> ids;
    for (unsigned char c : b) ids.push_back(1000 + c);
    return ids;
  };
  // Unicode Standard Table 3-8 example: one U+FFFD per maximal subpart.
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(tok().decode(bytes_ids("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64")),
            "a" + fffd + fffd + fffd + "b" + fffd + "c" + fffd + fffd + "d");
  EXPECT_EQ(tok().decode(bytes_ids("\xED\xA0\x80")), fffd + fffd + fffd);            // surrogate
  EXPECT_EQ(tok().decode(bytes_ids("\xC0\xAF")), fffd + fffd);                       // overlong
  EXPECT_EQ(tok().decode(bytes_ids("\xF4\x90\x80\x80")), fffd + fffd + fffd + fffd);  // > U+10FFFF
  EXPECT_EQ(tok().decode(bytes_ids("x\xF0\x9F\x98")), "x" + fffd);                   // cut short at the end
  // A special id splits the runs: each side is decoded on its own.
  auto split = bytes_ids("\xE4\xB8");
  split.push_back(10);
  split.push_back(1000 + 0xAD);
  EXPECT_EQ(tok().decode(split), fffd + fffd);
}

TEST(Tokenizer, StreamDecoderHoldsBackSplitCharacters) {
  const std::string text = "a😀b中é\n";
  Tokenizer::StreamDecoder sd(tok());
  std::string got;
  std::vector<std::string> pieces;
  for (unsigned char c : text) pieces.push_back(sd.push(1000 + c));
  pieces.push_back(sd.finish());
  for (const auto& p : pieces) got += p;
  EXPECT_EQ(got, text);
  EXPECT_EQ(pieces[0], "a");
  EXPECT_EQ(pieces[1], "");  // first three bytes of the emoji are held back
  EXPECT_EQ(pieces[2], "");
  EXPECT_EQ(pieces[3], "");
  EXPECT_EQ(pieces[4], "😀");
  EXPECT_EQ(pieces.back(), "");

  // Streaming real token ids gives the full decode, piece by piece.
  if (can_encode()) {
    for (const std::string& s : kTexts) {
      Tokenizer::StreamDecoder d(tok());
      std::string all;
      for (int id : enc(tok(), s)) all += d.push(id);
      all += d.finish();
      EXPECT_EQ(all, s);
    }
  }
}

TEST(Tokenizer, StreamDecoderFlushesInvalidTailWithReplacement) {
  Tokenizer::StreamDecoder sd(tok());
  EXPECT_EQ(sd.push(1000 + 'x'), "x");
  EXPECT_EQ(sd.push(1000 + 0xF0), "");
  EXPECT_EQ(sd.push(1000 + 0x9F), "");
  EXPECT_EQ(sd.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(sd.finish(), "");
  // An invalid byte is replaced at once; a special id flushes a partial character like decode() does.
  EXPECT_EQ(sd.push(1000 + 0xFF), "\xEF\xBF\xBD");
  EXPECT_EQ(sd.push(1000 + 0xE4), "");
  EXPECT_EQ(sd.push(2), "\xEF\xBF\xBD");
}

TEST(Tokenizer, InvalidUtf8InputIsAnError) {
  for (std::string bad : {std::string("\xFF"), std::string("ok\xC0\xAFok"), std::string("\xED\xA0\x80"),
                          std::string("cut \xE4\xB8"), std::string("\x80")}) {
    auto r = tok().encode(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), ErrorCode::invalid_argument);
    EXPECT_NE(r.status().message().find("UTF-8"), std::string::npos) << r.status().message();
  }
}

TEST(Tokenizer, LongInputsEncodeFast) {
  REQUIRE_ENCODE();
  std::string doc;
  while (doc.size() < 200000) {
    for (const auto& s : kTexts) doc += s + " ";
  }
  doc += std::string(50000, ' ') + "x" + std::string(20000, 'a');  // long pieces: the heap merge path
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = enc(tok(), doc);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::cout << doc.size() << " bytes → " << ids.size() << " ids in " << ms << " ms\n";
  EXPECT_EQ(tok().decode(ids), doc);
  EXPECT_LT(ms, 5000.0);  // generous for sanitizer builds; typically tens of ms
}

TEST(Tokenizer, LinearAndHeapMergesAgree) {
  // Rebuild the rank table from the public token bytes and merge random pieces both ways.
  text::RankTable table;
  for (int id = 1000; id < tok().vocab_size(); ++id) table.add(tok().token_bytes(id));
  std::vector<std::string_view> atoms;
  for (int id = 1000; id < tok().vocab_size(); ++id) atoms.push_back(tok().token_bytes(id));
  std::mt19937 rng(7);
  int merged_somewhere = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string piece;
    const int n = 1 + int(rng() % 60);
    for (int k = 0; k < n; ++k) piece += atoms[rng() % atoms.size()];
    std::vector<std::uint32_t> a, b;
    text::bpe_encode_piece(piece, table, a, text::MergeAlgo::linear);
    text::bpe_encode_piece(piece, table, b, text::MergeAlgo::heap);
    ASSERT_EQ(a, b) << "trial " << trial;
    merged_somewhere += a.size() < piece.size();
  }
  EXPECT_GT(merged_somewhere, 200);
}

TEST(Tokenizer, ConcurrentEncodeIsConsistent) {
  REQUIRE_ENCODE();
  std::vector<std::vector<int>> want;
  for (const auto& s : kTexts) want.push_back(enc(tok(), s));
  std::vector<std::thread> th;
  std::atomic<int> mismatches{0};
  for (int k = 0; k < 4; ++k) {
    th.emplace_back([&] {
      for (int rep = 0; rep < 50; ++rep) {
        for (std::size_t i = 0; i < kTexts.size(); ++i) {
          auto r = tok().encode(kTexts[i]);
          if (!r.ok() || *r != want[i]) ++mismatches;
        }
      }
    });
  }
  for (auto& t : th) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// ---- malformed files: each a specific error ----

TEST(TokenizerErrors, MissingFile) {
  auto r = Tokenizer::load("/nonexistent/dir/tekken.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::not_found);
  EXPECT_NE(r.status().message().find("/nonexistent/dir/tekken.json"), std::string::npos);
}

TEST(TokenizerErrors, BrokenJson) {
  auto r = Tokenizer::from_json("{\"config\": {", "x.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::format);
  EXPECT_NE(r.status().message().find("x.json"), std::string::npos);
}

TEST(TokenizerErrors, BrokenPattern) {
  REQUIRE_ENCODE();
  json j = fixture_json();
  j["config"]["pattern"] = "[\\p{L}+|(?!x";
  auto r = from(j);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::format);
  EXPECT_NE(r.status().message().find("pattern"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("offset"), std::string::npos) << r.status().message();
  std::cout << r.status().message() << "\n";
}

TEST(TokenizerErrors, VocabEntryNotBase64) {
  json j = fixture_json();
  j["vocab"][300]["token_bytes"] = "not*base64!";
  auto r = from(j);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::format);
  EXPECT_NE(r.status().message().find("rank 300"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("base64"), std::string::npos) << r.status().message();
  j = fixture_json();
  j["vocab"][301]["token_bytes"] = "YWJ";  // wrong length (no padding)
  EXPECT_FALSE(from(j).ok());
}

TEST(TokenizerErrors, RanksAndSizes) {
  json j = fixture_json();
  j["vocab"][5]["rank"] = 6;
  auto r = from(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("vocab entry 5"), std::string::npos) << r.status().message();

  j = fixture_json();
  j["vocab"][65]["token_bytes"] = "Qg==";  // rank 65 must be "A", not "B"
  r = from(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("rank 65"), std::string::npos) << r.status().message();

  j = fixture_json();
  j["vocab"][400]["token_bytes"] = j["vocab"][300]["token_bytes"];
  r = from(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("same token_bytes"), std::string::npos) << r.status().message();

  j = fixture_json();
  j["config"]["default_vocab_size"] = int(j["vocab"].size()) + 1001;
  r = from(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("default_vocab_size"), std::string::npos) << r.status().message();

  j = fixture_json();
  j["config"]["num_vocab_tokens"] = 7;
  EXPECT_FALSE(from(j).ok());
  j = fixture_json();
  j["config"].erase("pattern");
  EXPECT_FALSE(from(j).ok());
  // Odd shapes of the streamed vocab array.
  j = fixture_json();
  j["vocab"][7] = 5;
  r = from(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("vocab entry 7 is not an object"), std::string::npos) << r.status().message();
  j = fixture_json();
  j["vocab"][8]["token_bytes"] = json::array({"CA=="});
  r = from(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("vocab entry 8"), std::string::npos) << r.status().message();
  j = fixture_json();
  j["vocab"][9]["extra"] = {{"rank", 12}, {"token_bytes", "QQ=="}};  // nested keys are not the entry's
  EXPECT_TRUE(from(j).ok());
  j = fixture_json();
  j["vocab"] = {{"rank", 0}};
  r = from(j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("\"vocab\" array is missing"), std::string::npos) << r.status().message();
  EXPECT_FALSE(Tokenizer::from_json("[1, 2]").ok());
  // An entry beyond the kept count may be anything: it is never read.
  j = fixture_json();
  j["vocab"][j["vocab"].size() - 1]["token_bytes"] = "@@";
  EXPECT_TRUE(from(j).ok());
}

TEST(TokenizerErrors, MissingSpecialTokensUseDefaults) {
  json j = fixture_json();
  j.erase("special_tokens");
  j.erase("multimodal");
  j["image"] = {{"image_patch_size", 14}, {"max_image_size", 1540}, {"spatial_merge_size", 2}};
  auto r = from(j);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->special_name(0), "<unk>");
  EXPECT_EQ(r->special_name(3), "[INST]");
  EXPECT_EQ(r->special_name(12), "[IMG_BREAK]");
  EXPECT_EQ(r->special_name(17), "[SYSTEM_PROMPT]");
  EXPECT_EQ(r->special_name(20), "<SPECIAL_20>");
  EXPECT_EQ(r->special_name(999), "<SPECIAL_999>");
  EXPECT_EQ(r->image_patch_size(), 14);
  EXPECT_EQ(r->max_image_size(), 1540);
  EXPECT_EQ(r->spatial_merge_size(), 2);

  // A short special list is padded with placeholders; the control ids follow the names.
  j = fixture_json();
  j["special_tokens"] = json(std::vector<json>(j["special_tokens"].begin(), j["special_tokens"].begin() + 17));
  r = from(j);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->special_name(16), "[SUFFIX]");
  EXPECT_EQ(r->special_name(17), "<SPECIAL_17>");
  EXPECT_EQ(r->special().img_break, 12);
  EXPECT_EQ(r->image_patch_size(), 16);
}
