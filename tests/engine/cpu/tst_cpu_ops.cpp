// SPDX-License-Identifier: Apache-2.0
// CPU backend ops (matmul, embed, norms, elementwise, scatter, patch_embed, memory) against naive double-precision
// references on random inputs; NMSE budgets per op; 1 vs 4 threads bit-identical. Attention/RoPE:
// tst_cpu_attention.cpp.
#include <gtest/gtest.h>

#include <cmath>

#include "cpu/cpu_kernels.h"
#include "cpu_test_util.h"

namespace pixtral::test {
namespace {

using ops::Backend;

std::unique_ptr<Backend> backend(int threads = 2) { return ops::make_cpu_backend(threads); }

// ---- matmul ---------------------------------------------------------------------------------------------------

struct MatmulCase {
  std::int64_t T, K, N;
  DType dtype;
  bool bias;
};

std::string case_name(const MatmulCase& c) {
  return "T" + std::to_string(c.T) + "_K" + std::to_string(c.K) + "_N" + std::to_string(c.N) + "_" +
         dtype_name(c.dtype) + (c.bias ? "_bias" : "");
}

// out[t, n] = Σ_k x[t, k] W[n, k] (+ b[n]) in double.
std::vector<double> matmul_ref(const std::vector<float>& x, const StoredWeight& w, const StoredWeight* b,
                               std::int64_t T) {
  std::vector<double> out(std::size_t(T * w.rows));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t n = 0; n < w.rows; ++n) {
      double s = b ? b->values[std::size_t(n)] : 0.0;
      for (std::int64_t k = 0; k < w.cols; ++k) s += double(x[std::size_t(t * w.cols + k)]) * w.values[std::size_t(n * w.cols + k)];
      out[std::size_t(t * w.rows + n)] = s;
    }
  return out;
}

class MatmulTest : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(MatmulTest, MatchesDoubleReference) {
  const MatmulCase c = GetParam();
  Rng rng(1000 + c.T * 7 + c.K * 13 + c.N);
  auto be = backend(3);
  const auto xh = rng.uniform(std::size_t(c.T * c.K));
  const StoredWeight w(rng.uniform(std::size_t(c.N * c.K), 0.5f), c.dtype, c.N, c.K);
  const StoredWeight b(rng.uniform(std::size_t(c.N)), c.dtype, 1, c.N);
  DeviceTensor x(*be, c.T, c.K, &xh), out(*be, c.T, c.N);
  const ops::Weight wd = w.upload(*be), bd = b.upload(*be, "b");
  const auto ref = matmul_ref(xh, w, c.bias ? &b : nullptr, c.T);
  for (bool blas : {true, false}) {  // prefill tiles through OpenBLAS (when built with it) and the fallback
    if (!cpu::set_blas_enabled(blas)) continue;
    ASSERT_TRUE(be->matmul(out.t, x.t, wd, c.bias ? &bd : nullptr).ok());
    // fp32 accumulation over K terms: relative error ~ sqrt(K)·2⁻²⁴ per element.
    EXPECT_LT(nmse(out.get(), ref), 1e-11) << case_name(c) << (blas ? " blas" : " fallback");
  }
  cpu::set_blas_enabled(true);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, MatmulTest,
    ::testing::Values(MatmulCase{1, 1, 1, DType::f32, false}, MatmulCase{1, 3, 5, DType::bf16, true},
                      MatmulCase{1, 257, 33, DType::bf16, false}, MatmulCase{1, 64, 17, DType::f16, true},
                      MatmulCase{7, 257, 33, DType::f32, true}, MatmulCase{7, 3, 19, DType::f16, false},
                      MatmulCase{8, 128, 64, DType::bf16, false}, MatmulCase{9, 257, 33, DType::bf16, true},
                      MatmulCase{9, 1, 7, DType::f32, false}, MatmulCase{37, 100, 300, DType::f16, true},
                      MatmulCase{300, 515, 70, DType::bf16, false}, MatmulCase{260, 33, 290, DType::f32, true}),
    [](const auto& info) { return case_name(info.param); });

// 1 and 4 threads must agree bit for bit, on both the GEMV and the tiled path.
TEST(MatmulDeterminism, OneAndFourThreadsBitIdentical) {
  Rng rng(7);
  auto be1 = backend(1), be4 = backend(4);
  for (bool blas : {true, false})
  for (std::int64_t T : {1, 5, 300}) {
    if (!cpu::set_blas_enabled(blas)) continue;
    const std::int64_t K = 515, N = 1000;  // several W tiles and, for T = 300, two x chunks
    const auto xh = rng.uniform(std::size_t(T * K));
    const StoredWeight w(rng.uniform(std::size_t(N * K)), DType::bf16, N, K);
    DeviceTensor x1(*be1, T, K, &xh), o1(*be1, T, N), x4(*be4, T, K, &xh), o4(*be4, T, N);
    ASSERT_TRUE(be1->matmul(o1.t, x1.t, w.upload(*be1)).ok());
    ASSERT_TRUE(be4->matmul(o4.t, x4.t, w.upload(*be4)).ok());
    const auto a = o1.get(), b = o4.get();
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << "T=" << T << (blas ? " blas" : " fallback");
  }
  cpu::set_blas_enabled(true);
}

// 4-byte aligned f32 weights are multiplied in place (no tile copy); misaligned ones are copied first.
TEST(Matmul, AlignedF32WeightsInPlace) {
  Rng rng(31);
  auto be = backend(2);
  for (std::int64_t T : {1, 40}) {
    const std::int64_t K = 70, N = 50;
    const auto xh = rng.uniform(std::size_t(T * K));
    const auto wv = rng.uniform(std::size_t(N * K));
    const StoredWeight ref_w(wv, DType::f32, N, K);
    const WeightView view{"aligned", wv.data(), DType::f32, {N, K}};
    DeviceTensor x(*be, T, K, &xh), out(*be, T, N);
    ASSERT_TRUE(be->matmul(out.t, x.t, be->upload_weight(view).value()).ok());
    EXPECT_LT(nmse(out.get(), matmul_ref(xh, ref_w, nullptr, T)), 1e-11);
  }
}

TEST(Matmul, RejectsMismatchedShapes) {
  auto be = backend();
  const StoredWeight w(std::vector<float>(12, 1.0f), DType::bf16, 3, 4);
  DeviceTensor x(*be, 2, 5), out(*be, 2, 3);
  const Status st = be->matmul(out.t, x.t, w.upload(*be, "layers.0.wq"));
  EXPECT_EQ(st.code(), ErrorCode::invalid_argument);
  EXPECT_NE(st.message().find("layers.0.wq"), std::string::npos) << st.message();
}

// ---- embed, norms, elementwise ----------------------------------------------------------------------------------

TEST(Embed, CopiesRowsOfEveryDtype) {
  Rng rng(3);
  auto be = backend();
  for (DType t : {DType::f32, DType::bf16, DType::f16}) {
    const std::int64_t V = 50, D = 37;
    const StoredWeight table(rng.uniform(std::size_t(V * D)), t, V, D);
    const std::vector<int> ids = {0, 49, 7, 7, 23};
    DeviceTensor out(*be, std::int64_t(ids.size()), D);
    ASSERT_TRUE(be->embed(out.t, table.upload(*be), ids).ok());
    const auto o = out.get();
    for (std::size_t i = 0; i < ids.size(); ++i)
      for (std::int64_t d = 0; d < D; ++d)
        ASSERT_EQ(double(o[i * D + std::size_t(d)]), table.values[std::size_t(ids[i] * D + d)]) << dtype_name(t);
    const std::vector<int> bad = {50};
    DeviceTensor one(*be, 1, D);
    EXPECT_EQ(be->embed(one.t, table.upload(*be), bad).code(), ErrorCode::invalid_argument);
  }
}

std::vector<double> rms_ref(const std::vector<double>& x, const StoredWeight& w, std::int64_t T, float eps) {
  const std::int64_t D = w.cols;
  std::vector<double> out(x.size());
  for (std::int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (std::int64_t d = 0; d < D; ++d) ss += x[std::size_t(t * D + d)] * x[std::size_t(t * D + d)];
    const double r = 1.0 / std::sqrt(ss / double(D) + eps);
    for (std::int64_t d = 0; d < D; ++d)
      out[std::size_t(t * D + d)] = x[std::size_t(t * D + d)] * r * w.values[std::size_t(d)];
  }
  return out;
}

TEST(RmsNorm, MatchesReferenceInPlaceAndFused) {
  Rng rng(5);
  auto be = backend(4);
  for (auto [T, D] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {7, 3}, {5, 257}, {64, 1024}}) {
    for (DType t : {DType::f32, DType::bf16, DType::f16}) {
      const auto xh = rng.uniform(std::size_t(T * D), 3.0f);
      const StoredWeight w(rng.uniform(std::size_t(D)), t, 1, D);
      const ops::Weight wd = w.upload(*be);
      // out-of-place and in place (out aliases x)
      DeviceTensor x(*be, T, D, &xh), out(*be, T, D);
      ASSERT_TRUE(be->rms_norm(out.t, x.t, wd, 1e-5f).ok());
      const auto ref = rms_ref(to_double(xh), w, T, 1e-5f);
      EXPECT_LT(nmse(out.get(), ref), 1e-12) << T << "x" << D;
      ASSERT_TRUE(be->rms_norm(x.t, x.t, wd, 1e-5f).ok());
      EXPECT_LT(nmse(x.get(), ref), 1e-12);
      // fused: h += delta; out = rms_norm(h)
      const auto dh = rng.uniform(std::size_t(T * D));
      DeviceTensor h(*be, T, D, &xh), delta(*be, T, D, &dh);
      ASSERT_TRUE(be->add_rms_norm(h.t, delta.t, out.t, wd, 1e-6f).ok());
      std::vector<float> sum(xh.size());
      for (std::size_t i = 0; i < sum.size(); ++i) sum[i] = xh[i] + dh[i];
      EXPECT_EQ(h.get(), sum);
      EXPECT_LT(nmse(out.get(), rms_ref(to_double(sum), w, T, 1e-6f)), 1e-12);
      EXPECT_EQ(be->add_rms_norm(h.t, delta.t, h.t, wd, 1e-6f).code(), ErrorCode::invalid_argument);
    }
  }
}

TEST(Elementwise, AddSiluMulGelu) {
  Rng rng(9);
  auto be = backend(4);
  for (std::int64_t n : {1, 7, 40000}) {
    const auto a = rng.uniform(std::size_t(n), 6.0f), b = rng.uniform(std::size_t(n), 2.0f);
    DeviceTensor ta(*be, 1, n, &a), tb(*be, 1, n, &b), out(*be, 1, n);
    std::vector<double> silu(a.size()), gelu(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      const double g = a[i];
      silu[i] = g / (1.0 + std::exp(-g)) * b[i];
      gelu[i] = 0.5 * g * (1.0 + std::erf(g / std::sqrt(2.0)));
    }
    ASSERT_TRUE(be->silu_mul(out.t, ta.t, tb.t).ok());
    EXPECT_LT(nmse(out.get(), silu), 1e-12);
    ASSERT_TRUE(be->silu_mul(ta.t, ta.t, tb.t).ok());  // out aliases gate
    EXPECT_LT(nmse(ta.get(), silu), 1e-12);
    ASSERT_TRUE(be->upload(ta.t, a.data()).ok());
    ASSERT_TRUE(be->gelu(ta.t).ok());
    EXPECT_LT(nmse(ta.get(), gelu), 1e-13);
    ASSERT_TRUE(be->upload(ta.t, a.data()).ok());
    ASSERT_TRUE(be->add(ta.t, tb.t).ok());
    const auto s = ta.get();
    for (std::size_t i = 0; i < s.size(); ++i) ASSERT_EQ(s[i], a[i] + b[i]);
  }
}

TEST(ScatterRows, WritesListedRowsOnly) {
  Rng rng(11);
  auto be = backend();
  const auto dst0 = rng.uniform(6 * 5), src0 = rng.uniform(2 * 5);
  DeviceTensor dst(*be, 6, 5, &dst0), src(*be, 2, 5, &src0);
  const std::vector<int> rows = {4, 1};
  ASSERT_TRUE(be->scatter_rows(dst.t, src.t, rows).ok());
  auto expect = dst0;
  std::copy_n(src0.begin(), 5, expect.begin() + 20);
  std::copy_n(src0.begin() + 5, 5, expect.begin() + 5);
  EXPECT_EQ(dst.get(), expect);
  const std::vector<int> bad = {6, 0};
  EXPECT_EQ(be->scatter_rows(dst.t, src.t, bad).code(), ErrorCode::invalid_argument);
}

// ---- patch_embed: the conv, computed naively ----------------------------------------------------------------------

TEST(PatchEmbed, EqualsNaiveConvolutionOnRoundedPixels) {
  Rng rng(13);
  auto be = backend(3);
  for (DType t : {DType::bf16, DType::f32, DType::f16}) {
    const int C = 3, P = 4, H = 12, W = 8, dim = 10;
    const auto px = rng.uniform(std::size_t(C * H * W), 2.0f);
    const StoredWeight conv(rng.uniform(std::size_t(dim * C * P * P)), t, dim, C * P * P);
    const int hp = H / P, wp = W / P;
    DeviceTensor out(*be, hp * wp, dim);
    ASSERT_TRUE(be->patch_embed(out.t, px.data(), C, H, W, P, conv.upload(*be)).ok());
    std::vector<double> ref(std::size_t(hp * wp * dim));
    for (int r = 0; r < hp; ++r)
      for (int c = 0; c < wp; ++c)
        for (int o = 0; o < dim; ++o) {
          double s = 0;
          for (int ch = 0; ch < C; ++ch)
            for (int ky = 0; ky < P; ++ky)
              for (int kx = 0; kx < P; ++kx) {
                const double pix = round_to_dtype(px[std::size_t((ch * H + r * P + ky) * W + c * P + kx)], t);
                s += pix * conv.values[std::size_t(((o * C + ch) * P + ky) * P + kx)];
              }
          ref[std::size_t((r * wp + c) * dim + o)] = s;
        }
    EXPECT_LT(nmse(out.get(), ref), 1e-12) << dtype_name(t);
  }
}

// ---- memory -------------------------------------------------------------------------------------------------------

TEST(Memory, AbsurdAllocIsOutOfMemoryNamingWhat) {
  auto be = backend();
  auto r = be->alloc(std::int64_t(1) << 40, std::int64_t(1) << 20, DType::f32, "kv cache");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::out_of_memory);
  EXPECT_NE(r.status().message().find("kv cache"), std::string::npos) << r.status().message();
  auto o = be->alloc(std::int64_t(1) << 62, 16, DType::f32, "overflowing");
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), ErrorCode::out_of_memory);
  EXPECT_EQ(be->alloc(2, 2, DType::bf16, "bf16 act").status().code(), ErrorCode::unsupported);
}

TEST(Memory, UploadDownloadCopyAndNames) {
  auto be = backend(2);
  EXPECT_EQ(be->name(), "cpu");
  EXPECT_EQ(be->device_name(), "CPU (2 threads)");
  EXPECT_EQ(be->activation_dtype(), DType::f32);
  Rng rng(17);
  const auto h = rng.uniform(21);
  DeviceTensor a(*be, 3, 7, &h), b(*be, 7, 3);
  EXPECT_EQ(a.get(), h);
  ASSERT_TRUE(be->copy(b.t, a.t).ok());
  EXPECT_EQ(b.get(), h);
  ASSERT_TRUE(be->synchronize().ok());
  // upload_weight is a view of the caller's bytes
  const StoredWeight w(h, DType::bf16, 3, 7);
  auto wd = be->upload_weight(w.view("x"));
  ASSERT_TRUE(wd.ok());
  EXPECT_EQ(wd->data, w.view().data);
  EXPECT_EQ(wd->rows, 3);
  EXPECT_EQ(wd->cols, 7);
}

}  // namespace
}  // namespace pixtral::test
