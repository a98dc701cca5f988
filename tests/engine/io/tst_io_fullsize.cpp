// SPDX-License-Identifier: Apache-2.0
// Synthetic full-size Pixtral-12B: the real params.json (spec §1.3) and a SPARSE consolidated.safetensors of full
// length whose header declares all 585 tensors with their real shapes (bf16, contiguous). Checkpoint::open then
// validates names, shapes, dtypes and offsets at real size without 25 GB of data (the data pages are never read).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/checkpoint.h"
#include "tiny_model.h"

namespace pixtral::testing {
namespace {

TinySpec pixtral_12b() {
  TinySpec s;
  s.dim = 5120, s.n_layers = 40, s.head_dim = 128, s.hidden_dim = 14336, s.n_heads = 32, s.n_kv_heads = 8;
  s.vocab = 131072;
  s.v_hidden = 1024, s.v_channels = 3, s.v_image = 1024, s.v_patch = 16, s.v_inter = 4096, s.v_layers = 24;
  s.v_heads = 16;
  s.adapter_bias = true;
  return s;
}

// The header of a bf16 file holding `shapes` back to back; returns the data-buffer size through `buffer`.
json sparse_header(const std::vector<NamedShape>& shapes, std::uint64_t& buffer) {
  json h = json::object();
  std::uint64_t off = 0;
  for (const auto& t : shapes) {
    const std::uint64_t bytes = std::uint64_t(st_numel(t.shape)) * 2;
    h[t.name] = {{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {off, off + bytes}}};
    off += bytes;
  }
  buffer = off;
  return h;
}

// Writes the 8-byte length and the header, then extends the file to its full length without writing data.
// Returns false (with errno) if the filesystem cannot hold such a sparse file.
bool write_sparse(const fs::path& path, std::string header, std::uint64_t buffer, std::int64_t shorten = 0) {
  while (header.size() % 8) header.push_back(' ');
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
    out << header;
  }
  const off_t total = off_t(8 + header.size() + buffer) - off_t(shorten);
  return ::truncate(path.c_str(), total) == 0;
}

class FullSizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = pixtral_12b();
    json params = tiny_params_json(spec_);  // same keys and values as spec §1.3 for these sizes
    write_text(dir_ / "params.json", params.dump(2));
    write_text(dir_ / "tekken.json", "{}");
    shapes_ = model_shapes(spec_);
  }
  TinySpec spec_;
  TempDir dir_;
  std::vector<NamedShape> shapes_;
};

TEST_F(FullSizeTest, Pixtral12BHeaderValidatesAtRealSize) {
  ASSERT_EQ(shapes_.size(), 585u);
  std::uint64_t buffer = 0;
  const json header = sparse_header(shapes_, buffer);
  ASSERT_EQ(buffer, 25'365'479'424ull);  // spec §1.4: 12,682,739,712 params × 2 bytes
  if (!write_sparse(dir_ / "consolidated.safetensors", header.dump(), buffer))
    GTEST_SKIP() << "filesystem cannot hold a 25 GB sparse file: " << std::strerror(errno);

  auto ck = Checkpoint::open(dir_.str());
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  EXPECT_EQ(ck->tensors().size(), 585u);
  EXPECT_EQ(ck->total_bytes(), 25'365'479'424ull);
  EXPECT_EQ(ck->weight_dtype(), DType::bf16);
  const ModelConfig& c = ck->config();
  EXPECT_EQ(c.dim, 5120);
  EXPECT_EQ(c.n_heads * c.head_dim, 4096);
  EXPECT_EQ(c.vision.head_dim, 64);
  EXPECT_EQ(ck->tensor("layers.39.attention.wq.weight").shape, (std::vector<std::int64_t>{4096, 5120}));
  EXPECT_EQ(ck->tensor("output.weight").shape, (std::vector<std::int64_t>{131072, 5120}));
  EXPECT_EQ(ck->tensor("vision_encoder.patch_conv.weight").shape, (std::vector<std::int64_t>{1024, 3, 16, 16}));
  // Data pointers sit at the declared offsets inside one mapping.
  const auto* base = static_cast<const std::uint8_t*>(ck->tensor("tok_embeddings.weight").data);
  for (const auto& t : shapes_) {
    const std::uint64_t begin = header.at(t.name).at("data_offsets")[0].get<std::uint64_t>();
    ASSERT_EQ(static_cast<const std::uint8_t*>(ck->tensor(t.name).data) - base, std::ptrdiff_t(begin)) << t.name;
  }
}

TEST_F(FullSizeTest, TruncatedByOneByteAtRealSize) {
  std::uint64_t buffer = 0;
  const json header = sparse_header(shapes_, buffer);
  if (!write_sparse(dir_ / "consolidated.safetensors", header.dump(), buffer, /*shorten=*/1))
    GTEST_SKIP() << "filesystem cannot hold a 25 GB sparse file: " << std::strerror(errno);
  auto r = Checkpoint::open(dir_.str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::format);
  EXPECT_NE(r.status().message().find("(1 bytes missing"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("vision_language_adapter.w_out.bias"), std::string::npos) << r.status().message();
}

TEST_F(FullSizeTest, OneWrongShapeAmong585) {
  for (auto& t : shapes_)
    if (t.name == "layers.17.feed_forward.w2.weight") t.shape = {14336, 5120};  // transposed
  std::uint64_t buffer = 0;
  const json header = sparse_header(shapes_, buffer);
  if (!write_sparse(dir_ / "consolidated.safetensors", header.dump(), buffer))
    GTEST_SKIP() << "filesystem cannot hold a 25 GB sparse file: " << std::strerror(errno);
  auto r = Checkpoint::open(dir_.str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "tensor layers.17.feed_forward.w2.weight: expected [5120,14336] bf16, got "
                                  "[14336,5120] bf16 (in consolidated.safetensors)");
}

}  // namespace
}  // namespace pixtral::testing
