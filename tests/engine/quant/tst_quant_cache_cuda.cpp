// SPDX-License-Identifier: Apache-2.0
// The quantized-weights cache on CUDA (label engine;gpu; every case skips with the loader's reason without a
// GPU): download_weight of a GPU-quantized stacked weight equals the CPU reference quantizer's bytes, and
// upload_weight_prequantized of those bytes gives back the same bytes and bit-identical products (T = 1 and 8);
// through Model::load on a tiny model: written then hit with bit-identical logits; a CPU-written cache (separate
// wq/wk/wv) is rebuilt by CUDA (stacked wqkv/w13) and the CUDA-written one is then read by the CPU with the
// CPU's own prefill logits.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "core/quant.h"
#include "cuda_test_util.h"
#include "ops/backend.h"
#include "pixtral/model.h"
#include "quant_test_util.h"
#include "tiny_model.h"

namespace pixtral {
namespace {

namespace fs = std::filesystem;
using cuda_test::download;
using quant::Format;

TEST(QuantCacheCuda, DownloadAndPrequantizedUploadAreExact) {
  PIXTRAL_REQUIRE_GPU();
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 0.05f);
  for (Format f : {Format::int8_channel, Format::int4_g128}) {
    SCOPED_TRACE(quant::format_name(f));
    const std::int64_t N1 = 96, N2 = 160, K = 512, N = N1 + N2;
    std::vector<std::uint16_t> bits(std::size_t(N * K));
    for (auto& b : bits) b = f32_to_bf16(nd(rng));
    WeightView p1{"a", bits.data(), DType::bf16, {N1, K}}, p2{"b", bits.data() + N1 * K, DType::bf16, {N2, K}};
    const WeightView* parts[2] = {&p1, &p2};
    auto w = G->upload_weight_stacked_quantized(parts, "ab", f);
    ASSERT_TRUE(w.ok()) << w.status().message();
    auto ref = quant::quantize(bits.data(), DType::bf16, N, K, f, "ab");
    ASSERT_TRUE(ref.ok());
    std::vector<std::uint8_t> q(ref->q.size());
    std::vector<float> s(ref->scales.size());
    ASSERT_TRUE(G->download_weight(*w, q.data(), s.data()).ok());
    EXPECT_EQ(q, ref->q);
    EXPECT_EQ(0, std::memcmp(s.data(), ref->scales.data(), s.size() * 4));
    auto back = G->upload_weight_prequantized(q.data(), s.data(), N, K, f, DType::bf16, "ab2");
    ASSERT_TRUE(back.ok()) << back.status().message();
    std::vector<std::uint8_t> q2(q.size());
    std::vector<float> s2(s.size());
    ASSERT_TRUE(G->download_weight(*back, q2.data(), s2.data()).ok());
    EXPECT_EQ(q2, q);
    EXPECT_EQ(0, std::memcmp(s2.data(), s.data(), s.size() * 4));
    // A row view (as the model's wk inside wqkv) downloads its rows only.
    std::vector<std::uint8_t> part(std::size_t(N2 * quant::row_bytes(f, K)));
    std::vector<float> part_s(std::size_t(N2 * quant::scales_per_row(f, K)));
    ASSERT_TRUE(G->download_weight(back->rows_view(N1, N2, "b"), part.data(), part_s.data()).ok());
    EXPECT_EQ(0, std::memcmp(part.data(), q.data() + N1 * quant::row_bytes(f, K), part.size()));
    for (std::int64_t T : {1, 8}) {  // the GEMV and the dequantize-tile paths
      std::vector<float> x(std::size_t(T * K));
      for (auto& v : x) v = bf16_to_f32(f32_to_bf16(nd(rng) * 20));
      auto xt = G->alloc(T, K, DType::bf16, "x");
      auto o1 = G->alloc(T, N, DType::f32, "o1");
      auto o2 = G->alloc(T, N, DType::f32, "o2");
      ASSERT_TRUE(xt.ok() && o1.ok() && o2.ok());
      ASSERT_TRUE(G->upload(*xt, x.data()).ok());
      ASSERT_TRUE(G->matmul(*o1, *xt, *w).ok());
      ASSERT_TRUE(G->matmul(*o2, *xt, *back).ok());
      cuda_test::expect_same_bits(download(G, *o1), download(G, *o2), "T=" + std::to_string(T));
      G->free(*xt);
      G->free(*o1);
      G->free(*o2);
    }
    G->free_weight(*w);
    G->free_weight(*back);
  }
}

Result<std::shared_ptr<Model>> load(const std::string& dir, Device d) {
  LoadOptions lo;
  lo.device = d;
  lo.threads = 2;
  lo.precision = Precision::int4;
  return Model::load(dir, lo);
}

std::vector<std::vector<float>> logits_of(const Model& m, int max_tokens) {
  return quant_test::logits_of(m, {"Hello there", "1 2 3 4"}, max_tokens);
}
using quant_test::bit_identical;

TEST(QuantCacheCuda, ModelLoadsHitAcrossBackends) {
  PIXTRAL_REQUIRE_GPU();
  const std::string dir = tiny::write_tiny_model(quant_test::spec128(92));
  ASSERT_FALSE(dir.empty());
  {
    // CPU first: separate wq/wk/wv entries.
    auto c1 = load(dir, Device::cpu);
    ASSERT_TRUE(c1.ok()) << c1.status().message();
    EXPECT_EQ((*c1)->info().quant_cache, "written");
    const auto cpu_prefill = logits_of(**c1, 1);
    c1->reset();
    // CUDA needs stacked wqkv/w13: rebuilt ("stale"), then a hit with identical logits.
    auto g1 = load(dir, Device::cuda);
    ASSERT_TRUE(g1.ok()) << g1.status().message();
    EXPECT_EQ((*g1)->info().quant_cache, "stale");
    const auto gl = logits_of(**g1, 4);
    g1->reset();
    auto g2 = load(dir, Device::cuda);
    ASSERT_TRUE(g2.ok());
    EXPECT_EQ((*g2)->info().quant_cache, "hit");
    EXPECT_TRUE(bit_identical(gl, logits_of(**g2, 4))) << "CUDA logits differ after reading the cache";
    g2->reset();
    // The CPU reads the CUDA-written (stacked) cache: the GPU's quantized bytes equal the CPU's, so the prefill
    // logits are the CPU's own.
    auto c2 = load(dir, Device::cpu);
    ASSERT_TRUE(c2.ok());
    EXPECT_EQ((*c2)->info().quant_cache, "hit");
    EXPECT_TRUE(bit_identical(cpu_prefill, logits_of(**c2, 1)));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace pixtral
