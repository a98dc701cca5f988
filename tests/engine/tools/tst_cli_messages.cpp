// SPDX-License-Identifier: Apache-2.0
// The CLI's OpenAI-style messages parser and the `pixtral` binary's argument and error handling.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli_messages.h"
#include "png_io.h"

using namespace pixtral;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/pixtral-cli-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string write_png_file(const fs::path& p, int w, int h) {
  Image img;
  img.width = w;
  img.height = h;
  img.format = PixelFormat::rgb8;
  img.pixels.assign(std::size_t(w) * h * 3, 77);
  EXPECT_TRUE(write_png(p.string(), img.view()).ok());
  return p.string();
}

}  // namespace

TEST(CliMessages, ParsesStringsPartsAndRelativeImages) {
  TempDir d;
  write_png_file(d.path / "a.png", 5, 3);
  const std::string json = R"({"messages": [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                 {"type": "image_url", "image_url": {"url": "a.png"}}]},
    {"role": "assistant", "content": "A square."},
    {"role": "user", "content": [{"type": "image_url", "image_url": "file://)" + (d.path / "a.png").string() + R"("}]}
  ]})";
  auto r = cli::parse_messages(json, d.path.string());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].role, Role::system);
  ASSERT_EQ((*r)[1].parts.size(), 2u);
  EXPECT_EQ((*r)[1].parts[0].text, "What is this?");
  ASSERT_TRUE((*r)[1].parts[1].image);
  EXPECT_EQ((*r)[1].parts[1].image->width, 5);
  EXPECT_EQ((*r)[2].parts[0].text, "A square.");
  EXPECT_EQ((*r)[3].parts[0].image->height, 3);
}

TEST(CliMessages, BareArrayAndDataUrl) {
  TempDir d;
  const std::string png = write_png_file(d.path / "b.png", 2, 2);
  std::ifstream f(png, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string b64;
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    unsigned v = (unsigned char)bytes[i] << 16;
    if (i + 1 < bytes.size()) v |= (unsigned char)bytes[i + 1] << 8;
    if (i + 2 < bytes.size()) v |= (unsigned char)bytes[i + 2];
    b64 += tbl[(v >> 18) & 63];
    b64 += tbl[(v >> 12) & 63];
    b64 += i + 1 < bytes.size() ? tbl[(v >> 6) & 63] : '=';
    b64 += i + 2 < bytes.size() ? tbl[v & 63] : '=';
  }
  auto r = cli::parse_messages(R"([{"role": "user", "content": [{"type": "image_url", "image_url": {"url":
      "data:image/png;base64,)" + b64 + R"("}}]}])", "");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ((*r)[0].parts[0].image->width, 2);
}

TEST(CliMessages, Base64RoundTripAndErrors) {
  auto ok = cli::base64_decode("aGVsbG8=");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "hello");
  EXPECT_FALSE(cli::base64_decode("aGV$bG8=").ok());
  EXPECT_FALSE(cli::base64_decode("aGVs=G8").ok());
}

struct BadCase {
  const char* name;
  const char* json;
  ErrorCode code;
  const char* says;
};

class CliMessagesBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(CliMessagesBad, SpecificError) {
  const BadCase& c = GetParam();
  auto r = cli::parse_messages(c.json, "/nonexistent-dir");
  ASSERT_FALSE(r.ok()) << c.name;
  EXPECT_EQ(r.status().code(), c.code) << r.status().to_string();
  EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CliMessagesBad,
    ::testing::Values(
        BadCase{"not_json", "{not json", ErrorCode::format, "not valid JSON"},
        BadCase{"not_array", R"({"x": 1})", ErrorCode::format, "array"},
        BadCase{"empty", "[]", ErrorCode::format, "no messages"},
        BadCase{"no_role", R"([{"content": "hi"}])", ErrorCode::format, "role"},
        BadCase{"bad_role", R"([{"role": "tool", "content": "hi"}])", ErrorCode::format, "unknown role"},
        BadCase{"missing_image", R"([{"role": "user", "content": [{"type": "image_url", "image_url": {"url":
            "nope.png"}}]}])", ErrorCode::not_found, "does not exist"},
        BadCase{"http_image", R"([{"role": "user", "content": [{"type": "image_url", "image_url": {"url":
            "https://example.com/a.png"}}]}])", ErrorCode::invalid_argument, "not fetched"},
        BadCase{"jpeg_data_url", R"([{"role": "user", "content": [{"type": "image_url", "image_url": {"url":
            "data:image/jpeg;base64,AAAA"}}]}])", ErrorCode::unsupported, "PNG"},
        BadCase{"final_assistant", R"([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])",
                ErrorCode::invalid_argument, "last message is an assistant"},
        BadCase{"unknown_part", R"([{"role": "user", "content": [{"type": "audio"}]}])", ErrorCode::format,
                "unsupported content part"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(CliMessages, MissingFileIsNotFound) {
  auto r = cli::load_messages_file("/nonexistent/messages.json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::not_found);
}
