// SPDX-License-Identifier: Apache-2.0
// MappedFile and the safetensors reader: round trips and every malformed-header case, each with a specific error.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>

#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "st_writer.h"

namespace pixtral::testing {
namespace {

using io::MappedFile;
using io::SafetensorsFile;

std::vector<std::uint8_t> zeros(std::size_t n) { return std::vector<std::uint8_t>(n, 0); }

// A one-tensor header with explicit fields, for the malformed cases.
std::string one_entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"t":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
}

class SafetensorsTest : public ::testing::Test {
 protected:
  Result<SafetensorsFile> open_raw(const std::string& header, std::size_t data_bytes, bool pad = true) {
    write_raw_safetensors(dir_ / "x.safetensors", header, zeros(data_bytes), pad);
    return SafetensorsFile::open((dir_ / "x.safetensors").string());
  }
  void expect_error(const Result<SafetensorsFile>& r, ErrorCode code, const std::string& needle) {
    ASSERT_FALSE(r.ok()) << "expected an error containing: " << needle;
    EXPECT_EQ(r.status().code(), code) << r.status().to_string();
    EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("x.safetensors"), std::string::npos) << "error must name the file";
  }
  TempDir dir_;
};

TEST_F(SafetensorsTest, MappedFileMapsBytesAndMoves) {
  write_text(dir_ / "a.bin", "hello");
  auto f = MappedFile::open((dir_ / "a.bin").string());
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  ASSERT_EQ(f->size(), 5u);
  EXPECT_EQ(std::memcmp(f->data(), "hello", 5), 0);
  MappedFile moved = std::move(f).value();
  EXPECT_EQ(moved.size(), 5u);
  EXPECT_EQ(std::memcmp(moved.data(), "hello", 5), 0);
  MappedFile other;
  other = std::move(moved);
  EXPECT_EQ(moved.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(other.size(), 5u);
}

TEST_F(SafetensorsTest, MappedFileEmptyAndMissing) {
  write_text(dir_ / "empty", "");
  auto e = MappedFile::open((dir_ / "empty").string());
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->size(), 0u);
  EXPECT_EQ(e->data(), nullptr);
  auto m = MappedFile::open((dir_ / "nope.bin").string());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), ErrorCode::not_found);
  EXPECT_NE(m.status().message().find("nope.bin"), std::string::npos);
  EXPECT_NE(m.status().message().find(std::strerror(ENOENT)), std::string::npos) << m.status().message();
  auto d = MappedFile::open(dir_.str());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), ErrorCode::io);
}

TEST_F(SafetensorsTest, RoundTripBf16F16F32) {
  std::mt19937 rng(7);
  std::vector<StTensor> ts = {random_tensor("a.bf16", "BF16", {3, 5}, rng), random_tensor("b.f16", "F16", {7}, rng),
                              random_tensor("c.f32", "F32", {2, 2, 3}, rng), random_tensor("d.i8", "I8", {3}, rng)};
  write_safetensors(dir_ / "rt.safetensors", ts, {{"format", "pt"}});
  auto f = SafetensorsFile::open((dir_ / "rt.safetensors").string());
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  ASSERT_EQ(f->tensors().size(), ts.size());
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const DType want[] = {DType::bf16, DType::f16, DType::f32};
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const auto* t = f->find(ts[i].name);
    ASSERT_NE(t, nullptr) << ts[i].name;
    EXPECT_EQ(t->dtype, ts[i].dtype);
    EXPECT_EQ(t->shape, ts[i].shape);
    ASSERT_EQ(t->bytes(), ts[i].bytes.size());
    EXPECT_EQ(std::memcmp(t->data, ts[i].bytes.data(), ts[i].bytes.size()), 0) << ts[i].name;
    if (i < 3) {
      ASSERT_TRUE(t->model_dtype.has_value());
      EXPECT_EQ(*t->model_dtype, want[i]);
      // Values decode to what was encoded (through the engine's own converters).
      std::vector<float> got(std::size_t(st_numel(t->shape)));
      convert_to_f32(t->data, *t->model_dtype, got.size(), got.data());
      std::vector<float> ref(got.size());
      convert_to_f32(ts[i].bytes.data(), want[i], ref.size(), ref.data());
      EXPECT_EQ(got, ref);
      for (float v : got) EXPECT_TRUE(std::isfinite(v) && std::fabs(v) <= 1.0f);
    } else {
      EXPECT_FALSE(t->model_dtype.has_value()) << "I8 is not a compute dtype";
    }
  }
}

TEST_F(SafetensorsTest, ScalarAndEmptyTensorsAndUnpaddedHeader) {
  auto r = open_raw(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                    R"("e":{"dtype":"BF16","shape":[0,5],"data_offsets":[4,4]}})",
                    4, /*pad=*/false);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->find("s")->bytes(), 4u);
  EXPECT_TRUE(r->find("s")->shape.empty());
  EXPECT_EQ(r->find("e")->bytes(), 0u);
  EXPECT_EQ(r->find("e")->data, nullptr);
}

TEST_F(SafetensorsTest, FileShorterThanLengthField) {
  write_text(dir_ / "x.safetensors", "abc");
  expect_error(SafetensorsFile::open((dir_ / "x.safetensors").string()), ErrorCode::format, "too short");
}

TEST_F(SafetensorsTest, HeaderLengthBeyondFile) {
  // Claims a 1000-byte header in a file of 8 + 16 bytes.
  std::vector<std::uint8_t> bytes(24, ' ');
  const std::uint64_t n = 1000;
  for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = std::uint8_t(n >> (8 * i));
  std::ofstream(dir_ / "x.safetensors", std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), 24);
  expect_error(SafetensorsFile::open((dir_ / "x.safetensors").string()), ErrorCode::format,
               "header length 1000 exceeds the 16 bytes");
}

TEST_F(SafetensorsTest, HeaderLengthOverLimit) {
  std::vector<std::uint8_t> bytes(16, ' ');
  const std::uint64_t n = io::kMaxSafetensorsHeader + 1;
  for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = std::uint8_t(n >> (8 * i));
  std::ofstream(dir_ / "x.safetensors", std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), 16);
  expect_error(SafetensorsFile::open((dir_ / "x.safetensors").string()), ErrorCode::format, "limit");
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  expect_error(open_raw(R"({"t": {"dtype": "F32", )", 0), ErrorCode::format, "not valid JSON");
  expect_error(open_raw("[1,2,3]", 0), ErrorCode::format, "does not start with '{'");
  expect_error(open_raw(R"({"a":1} trailing)", 0), ErrorCode::format, "not valid JSON");
}

TEST_F(SafetensorsTest, DuplicateTensorName) {
  expect_error(open_raw(R"({"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                        R"("t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                        2),
               ErrorCode::format, "'t' twice");
}

TEST_F(SafetensorsTest, MetadataMustBeStrings) {
  expect_error(open_raw(R"({"__metadata__":{"format":1}})", 0), ErrorCode::format, "__metadata__");
  expect_error(open_raw(R"({"__metadata__":[]})", 0), ErrorCode::format, "__metadata__");
}

TEST_F(SafetensorsTest, EntryFieldsValidated) {
  expect_error(open_raw(R"({"t":{"shape":[1],"data_offsets":[0,1]}})", 1), ErrorCode::format, "tensor t: missing 'dtype'");
  expect_error(open_raw(R"({"t":{"dtype":"U8","data_offsets":[0,1]}})", 1), ErrorCode::format, "missing 'shape'");
  expect_error(open_raw(R"({"t":{"dtype":"U8","shape":[1]}})", 1), ErrorCode::format, "missing 'data_offsets'");
  expect_error(open_raw(R"({"t":5})", 0), ErrorCode::format, "tensor t: entry is not a JSON object");
}

TEST_F(SafetensorsTest, UnknownDtype) {
  expect_error(open_raw(one_entry("BF17", "[2]", "[0,4]"), 4), ErrorCode::format, "tensor t: unknown dtype 'BF17'");
}

TEST_F(SafetensorsTest, BadShape) {
  expect_error(open_raw(one_entry("F32", "[-1,2]", "[0,8]"), 8), ErrorCode::format, "non-negative integers");
  expect_error(open_raw(one_entry("F32", "[1.5]", "[0,8]"), 8), ErrorCode::format, "non-negative integers");
  expect_error(open_raw(one_entry("F32", "3", "[0,12]"), 12), ErrorCode::format, "'shape' is not an array");
  expect_error(open_raw(one_entry("F32", "[4294967296,4294967296]", "[0,8]"), 8), ErrorCode::format, "too large");
}

TEST_F(SafetensorsTest, SizeMismatch) {
  expect_error(open_raw(one_entry("F32", "[2,3]", "[0,20]"), 24), ErrorCode::format, "size mismatch");
  expect_error(open_raw(one_entry("F32", "[2,3]", "[0,20]"), 24), ErrorCode::format, "needs 24 bytes");
}

TEST_F(SafetensorsTest, BadOffsets) {
  expect_error(open_raw(one_entry("U8", "[0]", "[5,4]"), 8), ErrorCode::format, "end before begin");
  expect_error(open_raw(one_entry("U8", "[1]", "[0]"), 8), ErrorCode::format, "pair of non-negative integers");
  expect_error(open_raw(one_entry("U8", "[1]", "[-1,0]"), 8), ErrorCode::format, "pair of non-negative integers");
}

TEST_F(SafetensorsTest, OffsetsOverlap) {
  expect_error(open_raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        12),
               ErrorCode::format, "tensors a [0,8) and b [4,12) overlap");
}

TEST_F(SafetensorsTest, OffsetsPastTheEnd) {
  auto r = open_raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                    10);
  expect_error(r, ErrorCode::format, "truncated");
  expect_error(r, ErrorCode::format, "tensor b ends at byte 24");
  expect_error(r, ErrorCode::format, "14 bytes missing");
}

TEST_F(SafetensorsTest, TruncatedFileSaysHowManyBytesAreMissing) {
  std::mt19937 rng(3);
  write_safetensors(dir_ / "x.safetensors",
                    {random_tensor("w", "BF16", {4, 8}, rng), random_tensor("b", "F32", {8}, rng)});
  const auto full = std::filesystem::file_size(dir_ / "x.safetensors");
  std::filesystem::resize_file(dir_ / "x.safetensors", full - 5);
  auto r = SafetensorsFile::open((dir_ / "x.safetensors").string());
  expect_error(r, ErrorCode::format, "truncated");
  expect_error(r, ErrorCode::format, "(5 bytes missing");
}

TEST_F(SafetensorsTest, ParseFromBufferNeverReadsOutside) {
  // Every prefix of a valid file must fail cleanly (ASan checks we never read past `size`).
  std::mt19937 rng(5);
  write_safetensors(dir_ / "x.safetensors", {random_tensor("w", "F16", {3, 3}, rng)});
  auto f = MappedFile::open((dir_ / "x.safetensors").string());
  ASSERT_TRUE(f.ok());
  for (std::size_t n = 0; n < f->size(); ++n) {
    std::vector<std::uint8_t> prefix(f->data(), f->data() + n);  // exact-size heap copy: overreads are caught
    auto r = SafetensorsFile::parse(prefix.data(), prefix.size(), "prefix");
    EXPECT_FALSE(r.ok()) << "prefix of " << n << " bytes parsed";
  }
  auto whole = SafetensorsFile::parse(f->data(), f->size(), "whole");
  EXPECT_TRUE(whole.ok()) << whole.status().to_string();
}

}  // namespace
}  // namespace pixtral::testing
