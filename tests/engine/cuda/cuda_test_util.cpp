// SPDX-License-Identifier: Apache-2.0
// Helpers of the CUDA parity tests (see cuda_test_util.h).
#include "cuda_test_util.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace pixtral::cuda_test {

ops::Backend* gpu(std::string* why) {
  static std::unique_ptr<ops::Backend> backend;
  static std::string reason;
  static bool tried = false;
  if (!tried) {
    tried = true;
    auto r = ops::load_cuda_backend(0);
    if (r.ok()) backend = std::move(r.value());
    else reason = r.status().to_string();
  }
  if (why) *why = reason;
  return backend.get();
}

std::vector<float> random_values(std::mt19937& rng, std::size_t n, float scale) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) {
    do x = round_to_dtype(u(rng), DType::bf16);
    while (std::fabs(x) < scale / 64);
  }
  return v;
}

Pair::~Pair() {
  if (c.data) cpu->free(c);
  if (g.data) gpu->free(g);
}

void reset(Pair& p, const float* host) {
  const std::size_t n = std::size_t(p.c.rows * p.c.cols);
  std::vector<float> nan;
  if (!host) {
    nan.assign(n, std::numeric_limits<float>::quiet_NaN());
    host = nan.data();
  }
  ASSERT_TRUE(p.cpu->upload(p.c, host).ok());
  ASSERT_TRUE(p.gpu->upload(p.g, host).ok());
}

void reset_gpu(Pair& p, const float* host) {
  const std::size_t n = std::size_t(p.g.rows * p.g.cols);
  std::vector<float> nan;
  if (!host) {
    nan.assign(n, std::numeric_limits<float>::quiet_NaN());
    host = nan.data();
  }
  ASSERT_TRUE(p.gpu->upload(p.g, host).ok());
}

std::unique_ptr<Pair> make_pair(ops::Backend* cpu, ops::Backend* gpu, std::int64_t rows, std::int64_t cols,
                                const float* host, DType gdt) {
  auto p = std::make_unique<Pair>();
  p->cpu = cpu;
  p->gpu = gpu;
  auto c = cpu->alloc(rows, cols, DType::f32, "test cpu tensor");
  auto g = gpu->alloc(rows, cols, gdt, "test gpu tensor");
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  if (!c.ok() || !g.ok()) return p;
  p->c = *c;
  p->g = *g;
  reset(*p, host);
  return p;
}

WeightPair::~WeightPair() {
  if (c.data) cpu->free_weight(c);
  if (g.data) gpu->free_weight(g);
}

std::unique_ptr<WeightPair> make_weight(ops::Backend* cpu, ops::Backend* gpu, std::mt19937& rng, std::int64_t rows,
                                        std::int64_t cols, const std::string& name, float scale) {
  auto w = std::make_unique<WeightPair>();
  w->cpu = cpu;
  w->gpu = gpu;
  auto vals = random_values(rng, std::size_t(rows * cols), scale);
  w->bits.resize(vals.size());
  for (std::size_t i = 0; i < vals.size(); ++i) w->bits[i] = f32_to_bf16(vals[i]);
  WeightView view{name, w->bits.data(), DType::bf16, {rows, cols}};
  auto c = cpu->upload_weight(view);
  auto g = gpu->upload_weight(view);
  EXPECT_TRUE(c.ok() && g.ok());
  if (c.ok()) w->c = *c;
  if (g.ok()) w->g = *g;
  return w;
}

std::vector<float> download(ops::Backend* b, const ops::Tensor& t) {
  std::vector<float> v(std::size_t(t.rows * t.cols));
  Status st = b->download(t, v.data());
  EXPECT_TRUE(st.ok()) << st.to_string();
  return v;
}

double expect_close(const std::vector<float>& cpu, const std::vector<float>& gpu, double budget,
                    const std::string& what) {
  EXPECT_EQ(cpu.size(), gpu.size()) << what;
  if (cpu.size() != gpu.size()) return INFINITY;
  double num = 0, den = 0;
  std::size_t bad = 0, first_bad = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    if (!std::isfinite(gpu[i]) || !std::isfinite(cpu[i])) {
      if (bad++ == 0) first_bad = i;
      continue;
    }
    const double d = double(gpu[i]) - double(cpu[i]);
    num += d * d;
    den += double(cpu[i]) * double(cpu[i]);
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " non-finite values, first at " << first_bad << " (cpu "
                     << cpu[first_bad] << ", gpu " << gpu[first_bad] << ")";
  const double nmse = den > 0 ? num / den : num;
  EXPECT_LE(nmse, budget) << what << ": NMSE " << nmse << " over budget " << budget;
  return nmse;
}

Status decode_step(ops::Backend* b, DecodeStepTensors& t, const ops::AttentionParams& p, float theta,
                   ops::RopePairs pairs, std::span<const int> pos, std::span<const int> ids, std::int64_t n_keys) {
  PIXTRAL_RETURN_IF_ERROR(b->embed(t.emb, *t.table, ids));
  PIXTRAL_RETURN_IF_ERROR(b->rope(t.q, p.n_heads, p.head_dim, pos, theta, pairs));
  PIXTRAL_RETURN_IF_ERROR(b->rope(t.k, p.n_kv_heads, p.head_dim, pos, theta, pairs));
  PIXTRAL_RETURN_IF_ERROR(b->scatter_rows(t.k_cache, t.k, pos));
  PIXTRAL_RETURN_IF_ERROR(b->scatter_rows(t.v_cache, t.v, pos));
  ops::AttentionParams pp = p;
  pp.q_offset = pos[0];
  return b->attention(t.out, t.q, t.k_cache.slice_rows(0, n_keys), t.v_cache.slice_rows(0, n_keys), pp);
}

void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what << ": run twice, bits differ";
}

}  // namespace pixtral::cuda_test
