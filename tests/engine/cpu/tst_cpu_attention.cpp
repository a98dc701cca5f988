// SPDX-License-Identifier: Apache-2.0
// CPU attention and RoPE against naive double-precision references: GQA groups 1/2/4, causal with q_offset,
// block-diagonal segments, head_dim 8..128; 1 vs 4 threads bit-identical; RoPE halves ≡ interleaved under the
// q/k permutation of spec §1.6; rope_2d pair angles of spec §6.3.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "cpu/cpu_kernels.h"
#include "cpu_test_util.h"

namespace pixtral::test {
namespace {

using ops::AttentionParams;
using ops::RopePairs;

// ---- attention ----------------------------------------------------------------------------------------------------

struct AttnCase {
  std::int64_t Tq, Tk;
  int H, Hkv, D;
  bool causal;
  int q_offset;
  std::vector<int> segments;
};

void PrintTo(const AttnCase& c, std::ostream* os) {
  *os << "Tq=" << c.Tq << " Tk=" << c.Tk << " H=" << c.H << " Hkv=" << c.Hkv << " D=" << c.D
      << (c.causal ? " causal q_offset=" + std::to_string(c.q_offset) : "") << " segments=" << c.segments.size();
}

std::vector<double> attention_ref(const std::vector<float>& q, const std::vector<float>& k,
                                  const std::vector<float>& v, const AttnCase& c, double scale) {
  std::vector<double> out(std::size_t(c.Tq * c.H * c.D));
  std::vector<std::int64_t> seg_start(std::size_t(c.Tk)), seg_end(std::size_t(c.Tk));
  for (std::int64_t s = 0, i = 0; s < std::int64_t(c.segments.size()); i += c.segments[std::size_t(s)], ++s)
    for (std::int64_t j = i; j < i + c.segments[std::size_t(s)]; ++j)
      seg_start[std::size_t(j)] = i, seg_end[std::size_t(j)] = i + c.segments[std::size_t(s)];
  for (int h = 0; h < c.H; ++h) {
    const int kvh = h / (c.H / c.Hkv);
    for (std::int64_t i = 0; i < c.Tq; ++i) {
      std::int64_t jb = 0, je = c.Tk;
      if (c.causal) je = c.q_offset + i + 1;
      if (!c.segments.empty()) jb = seg_start[std::size_t(i)], je = seg_end[std::size_t(i)];
      std::vector<double> s(std::size_t(je - jb));
      double mx = -INFINITY, sum = 0;
      for (std::int64_t j = jb; j < je; ++j) {
        double d = 0;
        for (int e = 0; e < c.D; ++e)
          d += double(q[std::size_t((i * c.H + h) * c.D + e)]) * k[std::size_t((j * c.Hkv + kvh) * c.D + e)];
        s[std::size_t(j - jb)] = d * scale;
        mx = std::max(mx, d * scale);
      }
      for (auto& x : s) sum += (x = std::exp(x - mx));
      for (int e = 0; e < c.D; ++e) {
        double o = 0;
        for (std::int64_t j = jb; j < je; ++j) o += s[std::size_t(j - jb)] * v[std::size_t((j * c.Hkv + kvh) * c.D + e)];
        out[std::size_t((i * c.H + h) * c.D + e)] = o / sum;
      }
    }
  }
  return out;
}

struct AttnRun {
  std::vector<float> out;
  std::vector<double> ref;
};

AttnRun run_attention(ops::Backend& be, const AttnCase& c, std::uint64_t seed) {
  Rng rng(seed);
  const auto q = rng.uniform(std::size_t(c.Tq * c.H * c.D), 2.0f);
  const auto k = rng.uniform(std::size_t(c.Tk * c.Hkv * c.D), 2.0f);
  const auto v = rng.uniform(std::size_t(c.Tk * c.Hkv * c.D));
  DeviceTensor tq(be, c.Tq, c.H * c.D, &q), tk(be, c.Tk, c.Hkv * c.D, &k), tv(be, c.Tk, c.Hkv * c.D, &v),
      out(be, c.Tq, c.H * c.D);
  AttentionParams p;
  p.n_heads = c.H, p.n_kv_heads = c.Hkv, p.head_dim = c.D, p.scale = 1.0f / std::sqrt(float(c.D));
  p.causal = c.causal, p.q_offset = c.q_offset, p.segments = c.segments;
  const Status st = be.attention(out.t, tq.t, tk.t, tv.t, p);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return {out.get(), attention_ref(q, k, v, c, double(p.scale))};
}

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, MatchesDoubleReference) {
  auto be = ops::make_cpu_backend(3);
  for (bool blas : {true, false}) {  // sgemm products (when built with OpenBLAS) and the in-house kernel
    if (!cpu::set_blas_enabled(blas)) continue;
    const AttnRun r = run_attention(*be, GetParam(), 42);
    // fp32 dots over D and fp32 softmax/accumulation over ≤ 300 keys.
    EXPECT_LT(nmse(r.out, r.ref), 1e-11) << (blas ? "blas" : "in-house kernel");
  }
  cpu::set_blas_enabled(true);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(AttnCase{1, 1, 1, 1, 8, false, 0, {}},             // one key
                      AttnCase{7, 7, 4, 4, 16, true, 0, {}},             // causal prefill, MHA
                      AttnCase{5, 12, 8, 4, 64, true, 7, {}},            // causal chunk after 7 cached rows, GQA 2
                      AttnCase{3, 20, 8, 2, 128, true, 17, {}},          // GQA 4
                      AttnCase{1, 300, 4, 1, 128, true, 299, {}},        // decode step, GQA 4
                      AttnCase{9, 9, 2, 1, 8, false, 0, {3, 5, 1}},      // block-diagonal segments
                      AttnCase{37, 37, 3, 3, 12, false, 0, {20, 17}},    // head_dim not a multiple of 8
                      AttnCase{40, 61, 2, 2, 64, false, 0, {}}),         // full cross attention
    [](const auto& info) { return "case" + std::to_string(info.index); });

TEST(AttentionDeterminism, OneAndFourThreadsBitIdentical) {
  auto be1 = ops::make_cpu_backend(1), be4 = ops::make_cpu_backend(4);
  for (bool blas : {true, false}) {
    if (!cpu::set_blas_enabled(blas)) continue;
    for (const AttnCase& c : {AttnCase{100, 130, 8, 2, 64, true, 30, {}}, AttnCase{90, 90, 4, 4, 32, false, 0, {40, 50}}}) {
      const auto a = run_attention(*be1, c, 5).out, b = run_attention(*be4, c, 5).out;
      ASSERT_EQ(a.size(), b.size());
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4)) << (blas ? "blas" : "in-house kernel");
    }
  }
  cpu::set_blas_enabled(true);
}

TEST(Attention, RejectsBadShapes) {
  auto be = ops::make_cpu_backend(1);
  DeviceTensor q(*be, 4, 32), k(*be, 3, 16), v(*be, 3, 16), out(*be, 4, 32);
  AttentionParams p;
  p.n_heads = 4, p.n_kv_heads = 2, p.head_dim = 8, p.scale = 0.3f, p.causal = true, p.q_offset = 0;
  EXPECT_EQ(be->attention(out.t, q.t, k.t, v.t, p).code(), ErrorCode::invalid_argument);  // 4 queries, 3 keys
  p.n_kv_heads = 3;
  EXPECT_EQ(be->attention(out.t, q.t, k.t, v.t, p).code(), ErrorCode::invalid_argument);  // 4 % 3 != 0
}

// ---- RoPE -------------------------------------------------------------------------------------------------------

// Torch's fp32 inverse frequencies (spec §7.3): 1 / theta^(2m / D), each step rounded to fp32.
std::vector<float> inv_freq(float theta, int D) {
  std::vector<float> f(std::size_t(D / 2));
  for (int m = 0; m < D / 2; ++m) f[std::size_t(m)] = 1.0f / std::pow(theta, float(2 * m) / float(D));
  return f;
}

// Rotate pair (a, b) of every head by angle(t, m) (an fp32 angle), in double.
template <class AngleFn>
std::vector<double> rope_ref(const std::vector<float>& x, std::int64_t T, int H, int D, bool halves, AngleFn angle) {
  std::vector<double> out = to_double(x);
  for (std::int64_t t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int m = 0; m < D / 2; ++m) {
        const std::size_t base = std::size_t((t * H + h) * D);
        const std::size_t ia = base + std::size_t(halves ? m : 2 * m), ib = base + std::size_t(halves ? m + D / 2 : 2 * m + 1);
        const double th = double(angle(t, m)), a = x[ia], b = x[ib];
        out[ia] = a * std::cos(th) - b * std::sin(th);
        out[ib] = a * std::sin(th) + b * std::cos(th);
      }
  return out;
}

TEST(Rope, MatchesReferenceIncludingLongPositions) {
  Rng rng(21);
  auto be = ops::make_cpu_backend(2);
  for (int D : {8, 16, 64, 128})
    for (float theta : {10000.0f, 1e9f})
      for (bool halves : {false, true}) {
        const std::int64_t T = 7;
        const int H = 3;
        const std::vector<int> pos = {0, 1, 2, 17, 4299, 4301, 131071};
        const auto xh = rng.uniform(std::size_t(T * H * D));
        DeviceTensor x(*be, T, H * D, &xh);
        ASSERT_TRUE(be->rope(x.t, H, D, pos, theta, halves ? RopePairs::halves : RopePairs::interleaved).ok());
        const auto f = inv_freq(theta, D);
        const auto ref = rope_ref(xh, T, H, D, halves, [&](std::int64_t t, int m) {
          return float(pos[std::size_t(t)]) * f[std::size_t(m)];  // the fp32 angle, as torch
        });
        EXPECT_LT(nmse(x.get(), ref), 1e-13) << "D=" << D << " theta=" << theta << " halves=" << halves;
      }
}

// Spec §1.6: HF row h*D + c*(D/2) + m == Mistral row h*D + 2m + c. Rotating halves on permuted data must equal
// permuting the interleaved result, bit for bit.
std::vector<float> to_hf(const std::vector<float>& x, std::int64_t T, int H, int D) {
  std::vector<float> y(x.size());
  for (std::int64_t t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int c = 0; c < 2; ++c)
        for (int m = 0; m < D / 2; ++m)
          y[std::size_t((t * H + h) * D + c * (D / 2) + m)] = x[std::size_t((t * H + h) * D + 2 * m + c)];
  return y;
}

TEST(Rope, HalvesEqualsInterleavedUnderPermutation) {
  Rng rng(23);
  auto be = ops::make_cpu_backend(2);
  const std::int64_t T = 9;
  const int H = 4, D = 64;
  std::vector<int> pos(T), rows(T), cols(T);
  for (std::int64_t t = 0; t < T; ++t)
    pos[std::size_t(t)] = rng.integer(0, 9000), rows[std::size_t(t)] = rng.integer(0, 63), cols[std::size_t(t)] = rng.integer(0, 63);
  const auto xm = rng.uniform(std::size_t(T * H * D));
  const auto xh = to_hf(xm, T, H, D);
  for (bool two_d : {false, true}) {
    DeviceTensor a(*be, T, H * D, &xm), b(*be, T, H * D, &xh);
    if (two_d) {
      ASSERT_TRUE(be->rope_2d(a.t, H, D, rows, cols, 10000.0f, RopePairs::interleaved).ok());
      ASSERT_TRUE(be->rope_2d(b.t, H, D, rows, cols, 10000.0f, RopePairs::halves).ok());
    } else {
      ASSERT_TRUE(be->rope(a.t, H, D, pos, 1e9f, RopePairs::interleaved).ok());
      ASSERT_TRUE(be->rope(b.t, H, D, pos, 1e9f, RopePairs::halves).ok());
    }
    EXPECT_EQ(to_hf(a.get(), T, H, D), b.get()) << (two_d ? "rope_2d" : "rope");
  }
}

TEST(Rope2d, MatchesSpecAngles) {
  Rng rng(29);
  auto be = ops::make_cpu_backend(3);
  for (int D : {8, 16, 64})
    for (bool halves : {false, true}) {
      const std::int64_t N = 12;
      const int H = 2;
      std::vector<int> rows(N), cols(N);
      for (std::int64_t n = 0; n < N; ++n) rows[std::size_t(n)] = int(n / 4), cols[std::size_t(n)] = int(n % 4) * 20;
      const auto xh = rng.uniform(std::size_t(N * H * D));
      DeviceTensor x(*be, N, H * D, &xh);
      ASSERT_TRUE(be->rope_2d(x.t, H, D, rows, cols, 10000.0f, halves ? RopePairs::halves : RopePairs::interleaved).ok());
      const auto f = inv_freq(10000.0f, D);
      const auto ref = rope_ref(xh, N, H, D, halves, [&](std::int64_t n, int m) {
        // spec §6.3: pairs m < D/4 use row · f[2m], the rest col · f[2(m − D/4) + 1]
        return m < D / 4 ? float(rows[std::size_t(n)]) * f[std::size_t(2 * m)]
                         : float(cols[std::size_t(n)]) * f[std::size_t(2 * (m - D / 4) + 1)];
      });
      EXPECT_LT(nmse(x.get(), ref), 1e-13) << "D=" << D << " halves=" << halves;
    }
}

// head_dim 4: pair 0 turns by row · f[0] = row radians, pair 1 by col · f[1] = col / sqrt(theta) radians.
TEST(Rope2d, SinglePairKnownAngles) {
  auto be = ops::make_cpu_backend(1);
  const std::vector<float> xh = {1, 0, 1, 0};
  DeviceTensor x(*be, 1, 4, &xh);
  const std::vector<int> rows = {3}, cols = {5};
  ASSERT_TRUE(be->rope_2d(x.t, 1, 4, rows, cols, 10000.0f, RopePairs::interleaved).ok());
  const auto y = x.get();
  const double col_angle = 5.0 / std::sqrt(10000.0);
  EXPECT_NEAR(y[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(y[1], std::sin(3.0), 1e-6);
  EXPECT_NEAR(y[2], std::cos(col_angle), 1e-6);
  EXPECT_NEAR(y[3], std::sin(col_angle), 1e-6);
}

}  // namespace
}  // namespace pixtral::test
