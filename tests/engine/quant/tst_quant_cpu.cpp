// SPDX-License-Identifier: Apache-2.0
// CPU reference backend with quantized weights: matmul with an int8/int4 W equals the dense fp32 matmul with the
// dequantized W (up to fp32 summation order), for decode-sized and prefill-sized T, with a bias; results do not
// depend on the thread count; an int4 weight with K % 128 != 0 is refused naming the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/quant.h"
#include "ops/backend.h"

namespace pixtral {
namespace {

using quant::Format;

struct Host {
  std::vector<std::uint16_t> bits;  // bf16 W, as in a checkpoint
  WeightView view;
};

Host make_weight(std::int64_t N, std::int64_t K, std::uint64_t seed, const std::string& name = "w") {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.f, 0.05f);
  Host h;
  h.bits.resize(std::size_t(N * K));
  for (auto& b : h.bits) b = f32_to_bf16(nd(g));
  h.view.name = name;
  h.view.data = h.bits.data();
  h.view.dtype = DType::bf16;
  h.view.shape = {N, K};
  return h;
}

std::vector<float> run(ops::Backend& be, const ops::Weight& w, const std::vector<float>& x, std::int64_t T,
                       const ops::Weight* bias = nullptr) {
  auto xt = be.alloc(T, w.cols, DType::f32, "x");
  auto ot = be.alloc(T, w.rows, DType::f32, "out");
  EXPECT_TRUE(xt.ok() && ot.ok());
  EXPECT_TRUE(be.upload(*xt, x.data()).ok());
  const Status st = be.matmul(*ot, *xt, w, bias);
  EXPECT_TRUE(st.ok()) << st.message();
  std::vector<float> out(std::size_t(T * w.rows));
  EXPECT_TRUE(be.download(*ot, out.data()).ok());
  be.free(*xt);
  be.free(*ot);
  return out;
}

class QuantCpu : public ::testing::TestWithParam<Format> {};

TEST_P(QuantCpu, MatmulEqualsDenseMatmulOfDequantizedWeight) {
  const Format f = GetParam();
  const std::int64_t N = 96, K = 384;
  auto be = ops::make_cpu_backend(3);
  Host h = make_weight(N, K, 11);
  auto qw = be->upload_weight_quantized(h.view, f);
  ASSERT_TRUE(qw.ok()) << qw.status().message();
  EXPECT_EQ(qw->format, f);
  EXPECT_EQ(qw->rows, N);
  EXPECT_EQ(qw->cols, K);
  EXPECT_EQ(qw->group_size, f == Format::int4_g128 ? 128 : int(K));

  // The dense reference: the dequantized W as an f32 weight through the ordinary matmul.
  auto ref_m = quant::quantize(h.bits.data(), DType::bf16, N, K, f, "w");
  ASSERT_TRUE(ref_m.ok());
  // The backend's stored bytes are the reference quantizer's.
  EXPECT_EQ(0, std::memcmp(qw->data, ref_m->q.data(), ref_m->q.size()));
  EXPECT_EQ(0, std::memcmp(qw->scales, ref_m->scales.data(), ref_m->scales.size() * 4));
  std::vector<float> dq = quant::dequantize(*ref_m);
  WeightView dv{"w_dq", dq.data(), DType::f32, {N, K}};
  auto dw = be->upload_weight(dv);
  ASSERT_TRUE(dw.ok());

  std::vector<float> bias_v(static_cast<std::size_t>(N));
  for (std::int64_t n = 0; n < N; ++n) bias_v[std::size_t(n)] = 0.01f * float(n % 13) - 0.05f;
  WeightView bv{"b", bias_v.data(), DType::f32, {N}};
  auto bw = be->upload_weight(bv);
  ASSERT_TRUE(bw.ok());

  std::mt19937_64 g(5);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (std::int64_t T : {1, 3, 8, 9, 40}) {
    std::vector<float> x(std::size_t(T * K));
    for (auto& v : x) v = u(g);
    for (const ops::Weight* b : {static_cast<const ops::Weight*>(nullptr), static_cast<const ops::Weight*>(&*bw)}) {
      const auto got = run(*be, *qw, x, T, b);
      const auto want = run(*be, *dw, x, T, b);
      for (std::size_t i = 0; i < got.size(); ++i) {
        // |Σ x·w| summed in a different order: bounded by K ulps of Σ|x·w|.
        double mag = 0;
        const std::int64_t t = std::int64_t(i) / N, n = std::int64_t(i) % N;
        for (std::int64_t k = 0; k < K; ++k) mag += std::fabs(double(x[std::size_t(t * K + k)]) * dq[std::size_t(n * K + k)]);
        ASSERT_NEAR(got[i], want[i], 1e-6 * mag + 1e-7) << quant::format_name(f) << " T=" << T << " i=" << i;
      }
    }
  }
  be->free_weight(*qw);
  EXPECT_EQ(qw->data, nullptr);
}

TEST_P(QuantCpu, ThreadCountDoesNotChangeResults) {
  const Format f = GetParam();
  const std::int64_t N = 130, K = 256, T = 5;
  Host h = make_weight(N, K, 12);
  std::vector<float> x(std::size_t(T * K));
  std::mt19937_64 g(6);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (auto& v : x) v = u(g);
  std::vector<float> first;
  for (int threads : {1, 2, 5}) {
    auto be = ops::make_cpu_backend(threads);
    auto qw = be->upload_weight_quantized(h.view, f);
    ASSERT_TRUE(qw.ok());
    const auto out = run(*be, *qw, x, T);
    if (first.empty())
      first = out;
    else
      EXPECT_EQ(0, std::memcmp(first.data(), out.data(), out.size() * 4)) << threads << " threads";
    be->free_weight(*qw);
  }
}

TEST_P(QuantCpu, RowViewsOfAQuantizedWeight) {
  // Stacked weights are used through row views (rows_view): a view must multiply like the rows it covers.
  const Format f = GetParam();
  const std::int64_t N = 48, K = 256, T = 2;
  auto be = ops::make_cpu_backend(2);
  Host h = make_weight(N, K, 13);
  auto qw = be->upload_weight_quantized(h.view, f);
  ASSERT_TRUE(qw.ok());
  const ops::Weight v = qw->rows_view(16, 20, "view");
  std::vector<float> x(std::size_t(T * K), 0.25f);
  x[3] = -1.f;
  const auto whole = run(*be, *qw, x, T);
  const auto part = run(*be, v, x, T);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t n = 0; n < 20; ++n)
      EXPECT_EQ(part[std::size_t(t * 20 + n)], whole[std::size_t(t * N + 16 + n)]);
  be->free_weight(*qw);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantCpu, ::testing::Values(Format::int8_channel, Format::int4_g128),
                         [](const auto& i) { return std::string(i.param == Format::int8_channel ? "int8" : "int4"); });

TEST(QuantCpuErrors, Int4WithKNotMultipleOf128IsRefusedNamingTheTensor) {
  auto be = ops::make_cpu_backend(1);
  Host h = make_weight(8, 96, 1, "layers.0.feed_forward.w2.weight");
  auto qw = be->upload_weight_quantized(h.view, Format::int4_g128);
  ASSERT_FALSE(qw.ok());
  EXPECT_EQ(qw.status().code(), ErrorCode::unsupported);
  EXPECT_NE(qw.status().message().find("layers.0.feed_forward.w2.weight"), std::string::npos);
  auto q8 = be->upload_weight_quantized(h.view, Format::int8_channel);
  EXPECT_TRUE(q8.ok());
  if (q8.ok()) be->free_weight(*q8);
}

}  // namespace
}  // namespace pixtral
