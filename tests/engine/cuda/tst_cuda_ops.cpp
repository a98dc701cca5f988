// SPDX-License-Identifier: Apache-2.0
// Ops parity, CPU reference backend vs CUDA backend: every op of ops::Backend on random inputs (bf16-exact, never
// zero) over many shapes including odd sizes, each with its own NMSE budget; NaN/Inf always fail; outputs are
// NaN-poisoned before each run so an unwritten element fails; each GPU op is run twice and must give identical
// bits. Skips (with the loader's reason) where no CUDA backend can be loaded.
// Budgets: the GPU stores activations in bf16 (unit roundoff 2^-9, so rounding alone gives NMSE ≈ 1.3e-6); the
// CPU computes in fp32. 1e-5 allows that rounding plus fp32 reordering; ops whose inputs are also rounded inside
// (matmul with an f32 x, attention's bf16 q/k/v products) get 3e-5. Pure data movement must be exact.
// ref: llama.cpp tests/test-backend-ops.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "cuda/cuda_ext.h"
#include "cuda_test_util.h"

namespace pixtral {
namespace {

using cuda_test::download;
using cuda_test::expect_close;
using cuda_test::expect_same_bits;
using cuda_test::make_pair;
using cuda_test::make_weight;
using cuda_test::random_values;
using cuda_test::reset;

constexpr double kElem = 1e-5;   // one bf16 rounding of the output
constexpr double kDot = 3e-5;    // rounded operands inside long dot products
constexpr double kExact = 0.0;   // data movement

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override { cpu_ = ops::make_cpu_backend(2); }
  std::unique_ptr<ops::Backend> cpu_;
  std::mt19937 rng_{1234};
};

// Runs `op(tensor_side)` on the GPU twice (restoring inputs with `restore` before each) and returns the first
// download, after checking both are bit-identical.
template <class Op, class Restore>
std::vector<float> run_twice(ops::Backend* G, const ops::Tensor& out, Op op, Restore restore, const std::string& what) {
  restore();
  Status st = op();
  EXPECT_TRUE(st.ok()) << what << ": " << st.to_string();
  auto a = download(G, out);
  restore();
  st = op();
  EXPECT_TRUE(st.ok()) << what << ": " << st.to_string();
  auto b = download(G, out);
  expect_same_bits(a, b, what);
  return a;
}

TEST_F(CudaOps, Matmul) {
  PIXTRAL_REQUIRE_GPU();
  struct Case { std::int64_t T, K, N; bool bias; DType x_t, out_t; };
  const Case cases[] = {
      {1, 64, 96, false, DType::bf16, DType::bf16},   {1, 5120, 257, true, DType::bf16, DType::bf16},
      {2, 136, 7, false, DType::bf16, DType::f32},    {3, 520, 33, true, DType::f32, DType::bf16},
      {4, 1000, 129, false, DType::bf16, DType::bf16}, {5, 64, 96, true, DType::bf16, DType::bf16},
      {17, 40, 1, false, DType::f32, DType::f32},     {64, 1024, 300, true, DType::bf16, DType::bf16},
      {130, 200, 72, false, DType::bf16, DType::f32}, {1, 1001, 65, true, DType::bf16, DType::bf16},
      {9, 13, 31, false, DType::bf16, DType::bf16},
      // GEMV rows long enough for the L2 prefetch to run ahead (14 batches of 2 KB; 4 batches + a 1-chunk tail)
      {1, 14336, 40, false, DType::bf16, DType::bf16}, {2, 4104, 50, true, DType::f32, DType::bf16},
  };
  for (const auto& c : cases) {
    const std::string what = "matmul T=" + std::to_string(c.T) + " K=" + std::to_string(c.K) + " N=" +
                             std::to_string(c.N) + (c.bias ? " +bias" : "") + " x " + dtype_name(c.x_t) + " out " +
                             dtype_name(c.out_t);
    SCOPED_TRACE(what);
    auto xh = random_values(rng_, std::size_t(c.T * c.K));
    auto x = make_pair(cpu_.get(), G, c.T, c.K, xh.data(), c.x_t);
    auto out = make_pair(cpu_.get(), G, c.T, c.N, nullptr, c.out_t);
    auto w = make_weight(cpu_.get(), G, rng_, c.N, c.K, "w", 1.0f / std::sqrt(float(c.K)));
    auto b = make_weight(cpu_.get(), G, rng_, c.N, 1, "bias");
    ASSERT_TRUE(cpu_->matmul(out->c, x->c, w->c, c.bias ? &b->c : nullptr).ok());
    auto ref = download(cpu_.get(), out->c);
    auto got = run_twice(G, out->g, [&] { return G->matmul(out->g, x->g, w->g, c.bias ? &b->g : nullptr); },
                         [&] { reset_gpu(*out, nullptr); }, what);
    expect_close(ref, got, kDot, what);
  }
}

// h += x · Wᵀ: prefill rows accumulate into h in the GEMM (beta = 1: h + product rounded once), one-row GEMV rows
// add the rounded product in the GEMV's epilogue (residual mode; bit-identical to matmul + add in
// QuantCudaResidual). Both against the CPU's matmul + add; h starts random (never 0).
TEST_F(CudaOps, MatmulAdd) {
  PIXTRAL_REQUIRE_GPU();
  struct Case { std::int64_t T, K, N; DType x_t, h_t; };
  const Case cases[] = {
      {1, 5120, 257, DType::bf16, DType::bf16}, {2, 136, 7, DType::bf16, DType::f32},
      {64, 1024, 300, DType::bf16, DType::bf16}, {130, 200, 72, DType::f32, DType::f32},
      {300, 512, 1024, DType::bf16, DType::bf16}, {9, 13, 31, DType::bf16, DType::bf16},
  };
  for (const auto& c : cases) {
    const std::string what = "matmul_add T=" + std::to_string(c.T) + " K=" + std::to_string(c.K) + " N=" +
                             std::to_string(c.N) + " x " + dtype_name(c.x_t) + " h " + dtype_name(c.h_t);
    SCOPED_TRACE(what);
    auto xh = random_values(rng_, std::size_t(c.T * c.K));
    auto hh = random_values(rng_, std::size_t(c.T * c.N));
    auto x = make_pair(cpu_.get(), G, c.T, c.K, xh.data(), c.x_t);
    auto h = make_pair(cpu_.get(), G, c.T, c.N, hh.data(), c.h_t);
    auto tmp = make_pair(cpu_.get(), G, c.T, c.N, nullptr, c.h_t);
    auto w = make_weight(cpu_.get(), G, rng_, c.N, c.K, "w", 1.0f / std::sqrt(float(c.K)));
    ASSERT_TRUE(cpu_->matmul_add(h->c, tmp->c, x->c, w->c).ok());
    auto ref = download(cpu_.get(), h->c);
    auto got = run_twice(G, h->g, [&] { return G->matmul_add(h->g, tmp->g, x->g, w->g); },
                         [&] { reset_gpu(*h, hh.data()); }, what);
    expect_close(ref, got, kDot, what);
  }
}

TEST_F(CudaOps, EmbedAndWeightConversion) {
  PIXTRAL_REQUIRE_GPU();
  for (std::int64_t D : {8, 100, 5120}) {
    const std::string what = "embed D=" + std::to_string(D);
    SCOPED_TRACE(what);
    auto table = make_weight(cpu_.get(), G, rng_, 50, D, "tok_embeddings");
    std::vector<int> ids = {3, 0, 49, 17, 17, 8, 1};
    auto out = make_pair(cpu_.get(), G, std::int64_t(ids.size()), D, nullptr);
    ASSERT_TRUE(cpu_->embed(out->c, table->c, ids).ok());
    auto got = run_twice(G, out->g, [&] { return G->embed(out->g, table->g, ids); }, [&] { reset_gpu(*out, nullptr); },
                         what);
    expect_close(download(cpu_.get(), out->c), got, kExact, what);
  }
  // f32 and f16 checkpoints are converted to bf16 at upload (round to nearest even).
  for (DType dt : {DType::f32, DType::f16}) {
    const std::int64_t V = 7, D = 33;
    auto vals = random_values(rng_, std::size_t(V * D), 3.0f);
    for (auto& v : vals) v *= 1.0f + 1.0f / 1024;  // off the bf16 grid
    std::vector<std::uint8_t> bytes(vals.size() * dtype_size(dt));
    for (std::size_t i = 0; i < vals.size(); ++i) {
      if (dt == DType::f32) std::memcpy(&bytes[4 * i], &vals[i], 4);
      else {
        const std::uint16_t h = f32_to_f16(vals[i]);
        std::memcpy(&bytes[2 * i], &h, 2);
      }
    }
    auto w = G->upload_weight(WeightView{"w", bytes.data(), dt, {V, D}});
    ASSERT_TRUE(w.ok()) << w.status().to_string();
    std::vector<int> ids(V);
    std::iota(ids.begin(), ids.end(), 0);
    auto out = G->alloc(V, D, DType::f32, "embed out");
    ASSERT_TRUE(out.ok());
    ASSERT_TRUE(G->embed(*out, *w, ids).ok());
    auto got = download(G, *out);
    std::vector<float> want(vals.size());
    for (std::size_t i = 0; i < vals.size(); ++i) {
      const float src = dt == DType::f32 ? vals[i] : f16_to_f32(f32_to_f16(vals[i]));
      want[i] = round_to_dtype(src, DType::bf16);
    }
    expect_close(want, got, kExact, std::string("upload ") + dtype_name(dt) + " -> bf16");
    G->free(*out);
    G->free_weight(*w);
  }
}

// upload_weight_host (int8/int4 loads keep the embedding table in pinned host memory): the gather reads it over the
// bus with the same values as a device table, from host ids and from the decode state (graph replay), and the
// table takes no device memory.
TEST_F(CudaOps, EmbedFromHostMemory) {
  PIXTRAL_REQUIRE_GPU();
  auto* ext = ops::cuda_extension(*G);
  ASSERT_NE(ext, nullptr);
  const std::int64_t V = 300, D = 5120;
  std::vector<std::uint16_t> bits(std::size_t(V * D));
  const auto vals = random_values(rng_, bits.size(), 2.0f);
  for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = f32_to_bf16(vals[i]);
  const WeightView view{"tok_embeddings.weight", bits.data(), DType::bf16, {V, D}};
  const std::size_t before = ext->allocated_bytes();
  auto host = G->upload_weight_host(view);
  ASSERT_TRUE(host.ok()) << host.status().to_string();
  EXPECT_LT(ext->allocated_bytes() - before, std::size_t(V * D * 2) / 8) << "the table went to the device";
  auto dev = G->upload_weight(view);
  ASSERT_TRUE(dev.ok());
  const std::vector<int> ids = {299, 0, 17, 17, 150};
  auto a = G->alloc(std::int64_t(ids.size()), D, DType::bf16, "embed a");
  auto b = G->alloc(std::int64_t(ids.size()), D, DType::bf16, "embed b");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(G->embed(*a, *host, ids).ok());
  ASSERT_TRUE(G->embed(*b, *dev, ids).ok());
  expect_same_bits(download(G, *b), download(G, *a), "embed from host memory");
  std::vector<float> want(ids.size() * std::size_t(D));
  for (std::size_t t = 0; t < ids.size(); ++t)
    for (std::int64_t d = 0; d < D; ++d) want[t * D + d] = bf16_to_f32(bits[std::size_t(ids[t] * D + d)]);
  expect_close(want, download(G, *a), kExact, "embed from host memory vs table");
  // Token from the decode state, as the replayed decode step reads it.
  const int tok[1] = {42};
  ASSERT_TRUE(ext->set_decode_tokens(tok).ok());
  ext->set_device_state_mode(true);
  const Status st = G->embed(a->slice_rows(0, 1), *host, tok);
  ext->set_device_state_mode(false);
  ASSERT_TRUE(st.ok()) << st.to_string();
  const auto row = download(G, a->slice_rows(0, 1));
  for (std::int64_t d = 0; d < D; ++d)
    ASSERT_EQ(row[std::size_t(d)], bf16_to_f32(bits[std::size_t(42 * D + d)])) << "device-state token, dim " << d;
  G->free(*a);
  G->free(*b);
  G->free_weight(*dev);
  G->free_weight(*host);
  EXPECT_EQ(host->data, nullptr);
}

TEST_F(CudaOps, RmsNormAndFusedResidual) {
  PIXTRAL_REQUIRE_GPU();
  for (std::int64_t T : {1, 3, 33}) {
    for (std::int64_t D : {8, 100, 1024, 5120}) {
      for (DType ht : {DType::bf16, DType::f32}) {
        const std::string what = "T=" + std::to_string(T) + " D=" + std::to_string(D) + " h " + dtype_name(ht);
        SCOPED_TRACE(what);
        auto xh = random_values(rng_, std::size_t(T * D), 2.0f);
        auto dh = random_values(rng_, std::size_t(T * D), 0.5f);
        auto w = make_weight(cpu_.get(), G, rng_, D, 1, "norm");
        auto x = make_pair(cpu_.get(), G, T, D, xh.data(), ht);
        auto delta = make_pair(cpu_.get(), G, T, D, dh.data());
        auto out = make_pair(cpu_.get(), G, T, D, nullptr);
        // rms_norm
        ASSERT_TRUE(cpu_->rms_norm(out->c, x->c, w->c, 1e-5f).ok());
        auto got = run_twice(G, out->g, [&] { return G->rms_norm(out->g, x->g, w->g, 1e-5f); },
                             [&] { reset_gpu(*out, nullptr); }, "rms_norm " + what);
        expect_close(download(cpu_.get(), out->c), got, kElem, "rms_norm " + what);
        // add_rms_norm: both h and out compared
        ASSERT_TRUE(cpu_->add_rms_norm(x->c, delta->c, out->c, w->c, 1e-5f).ok());
        auto got_out = run_twice(G, out->g, [&] { return G->add_rms_norm(x->g, delta->g, out->g, w->g, 1e-5f); },
                                 [&] { reset_gpu(*out, nullptr); reset_gpu(*x, xh.data()); }, "add_rms_norm " + what);
        // A bf16 residual h is rounded after the add (as the references keep it): per-element relative error up
        // to 2^-9, NMSE ≈ 1.3e-6 on average but up to ~1e-5 on the 24-value cases; the CPU keeps h in fp32.
        const double h_budget = ht == DType::bf16 ? 4e-5 : kElem;
        expect_close(download(cpu_.get(), out->c), got_out, h_budget, "add_rms_norm out " + what);
        expect_close(download(cpu_.get(), x->c), download(G, x->g), h_budget, "add_rms_norm h " + what);
        // add
        reset(*x, xh.data());
        ASSERT_TRUE(cpu_->add(x->c, delta->c).ok());
        auto got_add = run_twice(G, x->g, [&] { return G->add(x->g, delta->g); }, [&] { reset_gpu(*x, xh.data()); },
                                 "add " + what);
        expect_close(download(cpu_.get(), x->c), got_add, kElem, "add " + what);
        // rms_norm in place (out aliases x)
        reset(*x, xh.data());
        ASSERT_TRUE(cpu_->rms_norm(x->c, x->c, w->c, 1e-6f).ok());
        auto got_ip = run_twice(G, x->g, [&] { return G->rms_norm(x->g, x->g, w->g, 1e-6f); },
                                [&] { reset_gpu(*x, xh.data()); }, "rms_norm in place " + what);
        expect_close(download(cpu_.get(), x->c), got_ip, kElem, "rms_norm in place " + what);
      }
    }
  }
}

TEST_F(CudaOps, Rope1d) {
  PIXTRAL_REQUIRE_GPU();
  struct Case { std::int64_t T; int heads, D; float theta; };
  for (const Case c : {Case{1, 32, 128, 1e6f}, Case{7, 3, 8, 10000.f}, Case{33, 2, 64, 1e6f}, Case{5, 8, 24, 10000.f},
                       Case{600, 32, 128, 1e6f}, Case{9, 12, 64, 1e6f}, Case{4, 1, 8, 10000.f}, Case{3, 2, 6, 10000.f}}) {
    for (auto pairs : {ops::RopePairs::interleaved, ops::RopePairs::halves}) {
      const std::string what = "rope T=" + std::to_string(c.T) + " heads=" + std::to_string(c.heads) + " D=" +
                               std::to_string(c.D) + (pairs == ops::RopePairs::halves ? " halves" : " interleaved");
      SCOPED_TRACE(what);
      auto xh = random_values(rng_, std::size_t(c.T * c.heads * c.D));
      std::vector<int> pos(std::size_t(c.T));
      for (auto& p : pos) p = int(rng_() % 5000);
      auto x = make_pair(cpu_.get(), G, c.T, c.heads * c.D, xh.data());
      ASSERT_TRUE(cpu_->rope(x->c, c.heads, c.D, pos, c.theta, pairs).ok());
      auto got = run_twice(G, x->g, [&] { return G->rope(x->g, c.heads, c.D, pos, c.theta, pairs); },
                           [&] { reset_gpu(*x, xh.data()); }, what);
      expect_close(download(cpu_.get(), x->c), got, kElem, what);
    }
  }
}

TEST_F(CudaOps, Rope2d) {
  PIXTRAL_REQUIRE_GPU();
  struct Case { std::int64_t N; int heads, D; };
  for (const Case c : {Case{12, 16, 64}, Case{5, 1, 8}, Case{40, 2, 24}, Case{300, 16, 64}, Case{7, 11, 16}}) {
    for (auto pairs : {ops::RopePairs::interleaved, ops::RopePairs::halves}) {
      const std::string what = "rope_2d N=" + std::to_string(c.N) + " D=" + std::to_string(c.D);
      SCOPED_TRACE(what);
      auto xh = random_values(rng_, std::size_t(c.N * c.heads * c.D));
      std::vector<int> rows(std::size_t(c.N)), cols(std::size_t(c.N));
      for (std::size_t i = 0; i < rows.size(); ++i) {
        rows[i] = int(rng_() % 64);
        cols[i] = int(rng_() % 64);
      }
      auto x = make_pair(cpu_.get(), G, c.N, c.heads * c.D, xh.data());
      ASSERT_TRUE(cpu_->rope_2d(x->c, c.heads, c.D, rows, cols, 10000.f, pairs).ok());
      auto got = run_twice(G, x->g, [&] { return G->rope_2d(x->g, c.heads, c.D, rows, cols, 10000.f, pairs); },
                           [&] { reset_gpu(*x, xh.data()); }, what);
      expect_close(download(cpu_.get(), x->c), got, kElem, what);
    }
  }
}

// Every attention case runs through each kernel that can take it: automatic dispatch (decode kernel for ≤ 4
// rows, tensor-core flash kernel for bf16 head_dim 64/128, else generic), and each path forced through
// PIXTRAL_CUDA_ATTENTION (a forced path that cannot run the case falls back to generic), the flash kernel once
// per variant (PIXTRAL_CUDA_FLASH=1|3|4|5, and the configurations 3e|3m|4s|5p|5n).
TEST_F(CudaOps, Attention) {
  PIXTRAL_REQUIRE_GPU();
  struct Case { std::int64_t n_q, n_kv; int H, Hkv, D; bool causal; int q_offset; std::vector<int> segments;
                DType out_t = DType::bf16; };
  const std::vector<Case> cases = {
      {37, 37, 4, 2, 16, true, 0, {}},           // prefill, GQA
      {5, 70, 8, 2, 64, true, 65, {}},            // chunked prefill after a cached prefix
      {1, 300, 8, 2, 128, true, 299, {}},         // decode: split-KV
      {1, 4193, 32, 8, 128, true, 4192, {}},      // decode at the page-QA context, Pixtral's heads
      {65, 65, 4, 4, 64, false, 0, {40, 24, 1}},  // vision: block-diagonal segments
      {9, 33, 2, 1, 256, false, 0, {}},           // largest head_dim
      {9, 33, 6, 3, 8, false, 0, {}},             // smallest head_dim
      {20, 20, 3, 1, 24, true, 0, {}},            // head_dim not a power of two
      {300, 300, 4, 1, 128, true, 0, {}},         // many tiles
      {2, 129, 4, 2, 64, true, 127, {}},          // two decode rows
      // tensor-core prefill (flash) shapes
      {200, 200, 8, 2, 128, true, 0, {}},                     // causal, GQA 4, partial last q block
      {100, 1100, 32, 8, 128, true, 1000, {}},                // chunked prefill: q_offset not tile-aligned
      {1100, 1100, 16, 16, 64, false, 0, {576, 500, 24}},     // vision segments, boundaries inside tiles
      {77, 77, 4, 4, 64, false, 0, {}, DType::f32},           // full attention, f32 output
      {130, 130, 4, 2, 128, true, 0, {}, DType::f32},         // causal, f32 output
      {64, 64, 2, 2, 64, true, 0, {}},                        // exactly one tile
      // flash v2 (128-row blocks, two m16 tiles a warp) edges
      {129, 129, 4, 2, 128, true, 0, {}},                     // one row past a 128-row block
      {255, 255, 4, 4, 64, false, 0, {}},                     // last block one row short, head_dim 64
      {383, 383, 8, 2, 128, true, 0, {}, DType::f32},         // three blocks, the last one row short, f32
      {300, 1337, 8, 2, 128, true, 1037, {}},                 // chunked prefill: q_offset not tile-aligned, 3 blocks
      {200, 263, 4, 4, 64, true, 63, {}, DType::f32},         // same at head_dim 64, f32
      {600, 600, 4, 4, 64, false, 0, {100, 150, 200, 150}},   // segment edges inside 128-row blocks and warps
      {400, 400, 4, 2, 128, false, 0, {70, 200, 130}, DType::f32},  // same at head_dim 128, f32
      {260, 260, 2, 2, 64, false, 0, {5, 3, 120, 1, 131}},    // segments shorter than a warp's 32 rows
      {150, 700, 8, 2, 128, true, 300, {}},                   // keys past the last row's range (a cache): v5's
                                                              // tensor maps end at the largest key a row sees
      // flash v5 (128-key tiles, a warpgroup computes only the tiles its 64 rows meet, ping-pong turns)
      {1288, 1288, 8, 2, 128, false, 0, {1088, 200}},         // a warpgroup skips 8 tiles before its run
      {4160, 4160, 2, 2, 64, false, 0, {4032, 128}},          // a Pixtral-size image next to a small one
      {30, 4193, 32, 8, 128, true, 4163, {}},                 // the follow-up turn's shape
      {30, 4193, 32, 8, 128, true, 4163, {}, DType::f32},     // same, f32 output
      {150, 1000, 8, 2, 128, false, 0, {}},                   // non-causal, n_q ≠ n_kv, partial last key tile
      {1024, 1024, 8, 2, 128, true, 0, {}},                   // causal, full last block
      // split-KV decode shapes
      {3, 600, 8, 2, 64, true, 597, {}},           // three rows, G = 4, head_dim 64
      {4, 1000, 4, 4, 128, true, 996, {}},         // four rows, G = 1
      {1, 257, 2, 1, 64, true, 256, {}},           // G = 2, last chunk holds one key
      {1, 100, 32, 8, 128, true, 99, {}},          // two splits (64 + 36 keys)
      {1, 60, 32, 8, 128, true, 59, {}},           // one split: written directly, no combine
      {1, 20000, 32, 8, 128, true, 19999, {}},     // long splits: many tiles per warp, online softmax across tiles
      {2, 9000, 8, 8, 64, true, 8998, {}},         // G = 1, head_dim 64, two rows of long splits
      {3, 2000, 16, 8, 128, true, 1997, {}, DType::f32},  // G = 2, three rows, f32 output
      {1, 5000, 32, 8, 128, true, 4999, {}, DType::f32},  // f32 output
      {1, 20000, 4, 1, 128, true, 19999, {}},      // one KV head: the most splits (256), the combine's later batches
      {1, 9000, 2, 2, 64, true, 8999, {}},         // two KV heads, head_dim 64: > 128 splits, a partial last batch
  };
  // "decode-1stage": the decode kernel with one shared-memory stage, what GPUs with 100 KB an SM run.
  // "flash-v1" / "flash-v3*" / "flash-v4*": the tensor-core kernel with PIXTRAL_CUDA_FLASH forcing its variant
  // (v1: 64-row blocks; v3: 128-row blocks with two m16 tiles a warp and lazy rescaling, "3e" eager, "3m" 3 blocks
  // an SM at head_dim 64, kernels_flash3.cu; v4: wgmma, kernels_flash4.cu, "4s" its P·V in 64-column halves, v3 on
  // GPUs other than sm_90; v5: TMA + warp specialization, kernels_flash5.cu, 128-key tiles, "5p" with ping-pong,
  // "5n" 64-key tiles, v4 where it cannot run). run_twice checks each for identical bits on a second run.
  // "decode" runs the two-stage decode kernel's TMA form where the GPU has one (PIXTRAL_CUDA_ATTN_TMA=1, unless set:
  // =require makes its absence an error), "decode-cpasync" its copies by cp.async (=0): the same bits.
  const char* paths[] = {nullptr,    "generic",  "flash-v1",  "flash-v3",  "flash-v3e",     "flash-v3m",
                         "flash-v4", "flash-v4s", "flash-v5", "flash-v5p", "flash-v5n",     "decode",
                         "decode-1stage", "decode-cpasync"};
  // Under compute-sanitizer (racecheck is ~100× slower) run_gpu_checks.sh sets this to keep the small cases only.
  const bool quick = std::getenv("PIXTRAL_CUDA_TEST_QUICK") != nullptr;
  for (const auto& c : cases) {
    if (quick && double(c.n_q) * double(c.n_kv) * c.H > 3e6) continue;
    const std::string what = "attention n_q=" + std::to_string(c.n_q) + " n_kv=" + std::to_string(c.n_kv) + " H=" +
                             std::to_string(c.H) + "/" + std::to_string(c.Hkv) + " D=" + std::to_string(c.D) +
                             (c.causal ? " causal" : "") + (c.segments.empty() ? "" : " segments") + " out " +
                             dtype_name(c.out_t);
    SCOPED_TRACE(what);
    auto qh = random_values(rng_, std::size_t(c.n_q * c.H * c.D));
    auto kh = random_values(rng_, std::size_t(c.n_kv * c.Hkv * c.D));
    auto vh = random_values(rng_, std::size_t(c.n_kv * c.Hkv * c.D));
    auto q = make_pair(cpu_.get(), G, c.n_q, c.H * c.D, qh.data());
    auto k = make_pair(cpu_.get(), G, c.n_kv, c.Hkv * c.D, kh.data());
    auto v = make_pair(cpu_.get(), G, c.n_kv, c.Hkv * c.D, vh.data());
    auto out = make_pair(cpu_.get(), G, c.n_q, c.H * c.D, nullptr, c.out_t);
    ops::AttentionParams p;
    p.n_heads = c.H;
    p.n_kv_heads = c.Hkv;
    p.head_dim = c.D;
    p.scale = 1.0f / std::sqrt(float(c.D)) * 2.0f;  // sharper than usual: exercises the running max
    p.causal = c.causal;
    p.q_offset = c.q_offset;
    p.segments = c.segments;
    ASSERT_TRUE(cpu_->attention(out->c, q->c, k->c, v->c, p).ok());
    const auto ref = download(cpu_.get(), out->c);
    std::vector<float> decode_bits;  // "decode"'s result, for "decode-cpasync"
    const char* tma_env = std::getenv("PIXTRAL_CUDA_ATTN_TMA");
    const std::string tma_was = tma_env ? tma_env : "";
    for (const char* path : paths) {
      const std::string w2 = what + " path=" + (path ? path : "auto");
      const std::string ps = path ? path : "";
      const bool one_stage = ps == "decode-1stage", cpasync = ps == "decode-cpasync";
      const bool flash_variant = ps.rfind("flash-v", 0) == 0;
      if (path) setenv("PIXTRAL_CUDA_ATTENTION", one_stage || cpasync ? "decode" : flash_variant ? "flash" : path, 1);
      if (one_stage) setenv("PIXTRAL_CUDA_ATTN_STAGES", "1", 1);
      if (cpasync) setenv("PIXTRAL_CUDA_ATTN_TMA", "0", 1);
      if (ps == "decode" && !tma_env) setenv("PIXTRAL_CUDA_ATTN_TMA", "1", 1);
      if (flash_variant) setenv("PIXTRAL_CUDA_FLASH", ps.c_str() + 7, 1);
      auto got = run_twice(G, out->g, [&] { return G->attention(out->g, q->g, k->g, v->g, p); },
                           [&] { reset_gpu(*out, nullptr); }, w2);
      unsetenv("PIXTRAL_CUDA_ATTENTION");
      unsetenv("PIXTRAL_CUDA_ATTN_STAGES");
      unsetenv("PIXTRAL_CUDA_FLASH");
      if (cpasync || ps == "decode") {
        if (tma_env)
          setenv("PIXTRAL_CUDA_ATTN_TMA", tma_was.c_str(), 1);
        else
          unsetenv("PIXTRAL_CUDA_ATTN_TMA");
      }
      expect_close(ref, got, kDot, w2);
      if (ps == "decode") decode_bits = got;
      if (cpasync && !decode_bits.empty()) expect_same_bits(decode_bits, got, w2 + " against decode");
    }
  }
}

// The fused decode-row RoPE + KV append (one launch on CUDA) equals, bit for bit, the GPU's own rope + two
// scatter_rows (the Backend default) — with the position given, and read from the device decode state — and the
// CPU reference within the element budget.
TEST_F(CudaOps, RopeAppendKvEqualsRopeAndScatters) {
  PIXTRAL_REQUIRE_GPU();
  auto* ext = ops::cuda_extension(*G);
  ASSERT_NE(ext, nullptr);
  struct Case { int H, Hkv, D; };
  for (const Case c : {Case{32, 8, 128}, Case{6, 3, 24}, Case{4, 4, 8}, Case{8, 2, 64}}) {
    for (auto pairs : {ops::RopePairs::interleaved, ops::RopePairs::halves}) {
      const std::string what = "rope_append_kv H=" + std::to_string(c.H) + "/" + std::to_string(c.Hkv) + " D=" +
                               std::to_string(c.D) + (pairs == ops::RopePairs::halves ? " halves" : " interleaved");
      SCOPED_TRACE(what);
      const std::int64_t cap = 300, kd = std::int64_t(c.Hkv) * c.D, cols = std::int64_t(c.H) * c.D + 2 * kd;
      const int pos = int(rng_() % cap);
      auto xh = random_values(rng_, std::size_t(cols));
      auto kh = random_values(rng_, std::size_t(cap * kd));
      auto vh = random_values(rng_, std::size_t(cap * kd));
      auto x = make_pair(cpu_.get(), G, 1, cols, xh.data());
      auto kc = make_pair(cpu_.get(), G, cap, kd, kh.data());
      auto vc = make_pair(cpu_.get(), G, cap, kd, vh.data());
      // reference on the GPU: the unfused default
      ASSERT_TRUE(G->ops::Backend::rope_append_kv(x->g, c.H, c.Hkv, c.D, pos, 1e6f, pairs, kc->g, vc->g).ok());
      const auto ref_q = download(G, x->g), ref_k = download(G, kc->g), ref_v = download(G, vc->g);
      // fused, position from the host
      reset_gpu(*x, xh.data());
      reset_gpu(*kc, kh.data());
      reset_gpu(*vc, vh.data());
      ASSERT_TRUE(G->rope_append_kv(x->g, c.H, c.Hkv, c.D, pos, 1e6f, pairs, kc->g, vc->g).ok());
      const auto got_q = download(G, x->g);
      expect_same_bits(std::vector<float>(ref_q.begin(), ref_q.begin() + c.H * c.D),
                       std::vector<float>(got_q.begin(), got_q.begin() + c.H * c.D), "q " + what);
      expect_same_bits(ref_k, download(G, kc->g), "k cache " + what);
      expect_same_bits(ref_v, download(G, vc->g), "v cache " + what);
      // fused, position from the device decode state
      reset_gpu(*x, xh.data());
      reset_gpu(*kc, kh.data());
      reset_gpu(*vc, vh.data());
      ASSERT_TRUE(ext->set_decode_state(pos, 1).ok());
      ext->set_device_state_mode(true);
      const Status st = G->rope_append_kv(x->g, c.H, c.Hkv, c.D, -1, 1e6f, pairs, kc->g, vc->g);
      ext->set_device_state_mode(false);
      ASSERT_TRUE(st.ok()) << st.to_string();
      expect_same_bits(ref_k, download(G, kc->g), "k cache (device state) " + what);
      expect_same_bits(ref_v, download(G, vc->g), "v cache (device state) " + what);
      // the CPU reference
      ASSERT_TRUE(cpu_->rope_append_kv(x->c, c.H, c.Hkv, c.D, pos, 1e6f, pairs, kc->c, vc->c).ok());
      expect_close(download(cpu_.get(), kc->c), ref_k, kElem, "k cache vs CPU " + what);
      expect_close(download(cpu_.get(), vc->c), ref_v, kExact, "v cache vs CPU " + what);
      const auto cq = download(cpu_.get(), x->c);
      expect_close(std::vector<float>(cq.begin(), cq.begin() + c.H * c.D),
                   std::vector<float>(ref_q.begin(), ref_q.begin() + c.H * c.D), kElem, "q vs CPU " + what);
    }
  }
  // A position outside the cache is refused with the op's name.
  auto x = make_pair(cpu_.get(), G, 1, 8 * 3, nullptr);
  auto kc = make_pair(cpu_.get(), G, 4, 8, nullptr);
  auto vc = make_pair(cpu_.get(), G, 4, 8, nullptr);
  const Status bad = G->rope_append_kv(x->g, 1, 1, 8, 4, 1e6f, ops::RopePairs::halves, kc->g, vc->g);
  EXPECT_EQ(bad.code(), ErrorCode::invalid_argument) << bad.to_string();
}

// The decode step under a CUDA graph: rope(q), rope(k), KV append (scatter_rows), attention and embed read the
// position and token from the device decode state, so one captured graph replays correctly at later positions.
// Compared with the CPU running the same step with host values; the cache holds random rows past the live keys
// (capacity view), which must never be read.
TEST_F(CudaOps, DecodeStepGraphReplayReadsDeviceState) {
  PIXTRAL_REQUIRE_GPU();
  auto* ext = ops::cuda_extension(*G);
  ASSERT_NE(ext, nullptr);
  // cap 8192 at positions 4192 and 8000: splits of 96 and 176 keys, so the rows this step appends (copied after
  // the dependent-launch wait, the "late" copies) fall in a second stage, and in a refilled one with one stage.
  // flash: "1" / "3" / "4" forces the tensor-core prefill kernel's variant (PIXTRAL_CUDA_FLASH) instead of decode.
  struct Case { int H, Hkv, D; std::int64_t cap; std::vector<int> positions; bool one_stage = false;
                const char* flash = nullptr; };
  const std::vector<int> short_positions = {1000, 1001, 257, 1499}, long_positions = {4192, 8000};
  const std::vector<Case> cases = {{32, 8, 128, 1500, short_positions},       // decode kernel
                                   {32, 8, 128, 8192, long_positions},        // decode kernel, several stages
                                   {32, 8, 128, 8192, long_positions, true},  // the one-stage decode kernel
                                   {8, 2, 64, 1500, short_positions},         // decode kernel, head_dim 64
                                   {32, 8, 128, 1500, short_positions, false, "1"},  // flash v1, device state
                                   {8, 2, 64, 1500, short_positions, false, "1"},    // same, head_dim 64
                                   {32, 8, 128, 1500, short_positions, false, "3"},  // flash v3, device state
                                   {8, 2, 64, 1500, short_positions, false, "3"},    // same, head_dim 64
                                   {32, 8, 128, 1500, short_positions, false, "4"},  // flash v4 (wgmma), device state
                                   {8, 2, 64, 1500, short_positions, false, "4"},    // same, head_dim 64
                                   {6, 3, 24, 1500, short_positions}};        // generic kernel
  for (const Case& c : cases) {
    unsetenv("PIXTRAL_CUDA_ATTN_STAGES");  // a failed case before may have left them set
    unsetenv("PIXTRAL_CUDA_ATTENTION");
    unsetenv("PIXTRAL_CUDA_FLASH");
    const std::string what = "decode graph H=" + std::to_string(c.H) + "/" + std::to_string(c.Hkv) + " D=" +
                             std::to_string(c.D) + " cap " + std::to_string(c.cap) +
                             (c.one_stage ? " one stage" : "") + (c.flash ? std::string(" flash v") + c.flash : "");
    SCOPED_TRACE(what);
    const std::int64_t cap = c.cap, qd = std::int64_t(c.H) * c.D, kd = std::int64_t(c.Hkv) * c.D;
    const int vocab = 11;
    auto kc_h = random_values(rng_, std::size_t(cap * kd));
    auto vc_h = random_values(rng_, std::size_t(cap * kd));
    auto kc = make_pair(cpu_.get(), G, cap, kd, kc_h.data());
    auto vc = make_pair(cpu_.get(), G, cap, kd, vc_h.data());
    auto q = make_pair(cpu_.get(), G, 1, qd, nullptr);
    auto kr = make_pair(cpu_.get(), G, 1, kd, nullptr);
    auto vr = make_pair(cpu_.get(), G, 1, kd, nullptr);
    auto out = make_pair(cpu_.get(), G, 1, qd, nullptr);
    auto emb = make_pair(cpu_.get(), G, 1, 40, nullptr);
    auto table = make_weight(cpu_.get(), G, rng_, vocab, 40, "tok_embeddings");
    ops::AttentionParams p;
    p.n_heads = c.H;
    p.n_kv_heads = c.Hkv;
    p.head_dim = c.D;
    p.scale = 1.0f / std::sqrt(float(c.D)) * 2.0f;
    p.causal = true;
    const float theta = 1e6f;
    const auto pairs = ops::RopePairs::halves;
    const std::vector<int> dummy_pos = {0}, dummy_ids = {0};  // sizes only: values come from the device state
    cuda_test::DecodeStepTensors tg{q->g, kr->g, vr->g, kc->g, vc->g, out->g, emb->g, &table->g};
    cuda_test::DecodeStepTensors tc{q->c, kr->c, vr->c, kc->c, vc->c, out->c, emb->c, &table->c};
    // Warm up eagerly in device-state mode (scratch grows outside capture), then capture once.
    if (c.one_stage) setenv("PIXTRAL_CUDA_ATTN_STAGES", "1", 1);  // read at launch: the graph keeps that kernel
    if (c.flash) {
      setenv("PIXTRAL_CUDA_ATTENTION", "flash", 1);
      setenv("PIXTRAL_CUDA_FLASH", c.flash, 1);
    }
    ASSERT_TRUE(ext->set_decode_state(999, 1).ok());
    ASSERT_TRUE(ext->set_decode_tokens(std::vector<int>{1}).ok());
    ext->set_device_state_mode(true);
    Status st = cuda_test::decode_step(G, tg, p, theta, pairs, dummy_pos, dummy_ids, cap);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(G->synchronize().ok());
    ASSERT_TRUE(ext->begin_capture().ok());
    st = cuda_test::decode_step(G, tg, p, theta, pairs, dummy_pos, dummy_ids, cap);
    const Status end = ext->end_capture();
    ext->set_device_state_mode(false);
    unsetenv("PIXTRAL_CUDA_ATTN_STAGES");
    unsetenv("PIXTRAL_CUDA_ATTENTION");
    unsetenv("PIXTRAL_CUDA_FLASH");
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(end.ok()) << end.to_string();
    // The warm-up wrote row 999 of the GPU cache: put the same row into the CPU cache.
    reset(*kc, kc_h.data());
    reset(*vc, vc_h.data());
    for (int pos : c.positions) {
      const std::string w2 = what + " position " + std::to_string(pos);
      SCOPED_TRACE(w2);
      auto qh = random_values(rng_, std::size_t(qd));
      auto kh = random_values(rng_, std::size_t(kd));
      auto vh = random_values(rng_, std::size_t(kd));
      const int tok = int(rng_() % vocab);
      for (auto* t : {&*q, &*kr, &*vr}) reset(*t, t == &*q ? qh.data() : t == &*kr ? kh.data() : vh.data());
      reset(*out, nullptr);
      reset(*emb, nullptr);
      const std::vector<int> pos_v = {pos}, ids = {tok};
      st = cuda_test::decode_step(cpu_.get(), tc, p, theta, pairs, pos_v, ids, pos + 1);
      ASSERT_TRUE(st.ok()) << st.to_string();
      ASSERT_TRUE(ext->set_decode_state(pos, 1).ok());
      ASSERT_TRUE(ext->set_decode_tokens(ids).ok());
      ASSERT_TRUE(ext->replay().ok());
      ASSERT_TRUE(G->synchronize().ok());
      expect_close(download(cpu_.get(), out->c), download(G, out->g), kDot, "attention " + w2);
      expect_close(download(cpu_.get(), q->c), download(G, q->g), kElem, "rope q " + w2);
      expect_close(download(cpu_.get(), kc->c), download(G, kc->g), kElem, "k cache " + w2);
      expect_close(download(cpu_.get(), emb->c), download(G, emb->g), kExact, "embed " + w2);
    }
  }
}

TEST_F(CudaOps, Activations) {
  PIXTRAL_REQUIRE_GPU();
  for (std::int64_t n : {1, 7, 1000, 14336 * 3 + 5, 14336 * 4}) {  // multiples of 8: the 16-byte kernel
    const std::string what = "n=" + std::to_string(n);
    SCOPED_TRACE(what);
    auto gh = random_values(rng_, std::size_t(n), 6.0f);
    auto uh = random_values(rng_, std::size_t(n), 2.0f);
    auto gate = make_pair(cpu_.get(), G, 1, n, gh.data());
    auto up = make_pair(cpu_.get(), G, 1, n, uh.data());
    auto out = make_pair(cpu_.get(), G, 1, n, nullptr);
    ASSERT_TRUE(cpu_->silu_mul(out->c, gate->c, up->c).ok());
    auto got = run_twice(G, out->g, [&] { return G->silu_mul(out->g, gate->g, up->g); }, [&] { reset_gpu(*out, nullptr); },
                         "silu_mul " + what);
    expect_close(download(cpu_.get(), out->c), got, kElem, "silu_mul " + what);
    // out aliases gate
    ASSERT_TRUE(cpu_->silu_mul(gate->c, gate->c, up->c).ok());
    auto got_alias = run_twice(G, gate->g, [&] { return G->silu_mul(gate->g, gate->g, up->g); },
                               [&] { reset_gpu(*gate, gh.data()); }, "silu_mul in place " + what);
    expect_close(download(cpu_.get(), gate->c), got_alias, kElem, "silu_mul in place " + what);
    // gelu in place
    reset(*gate, gh.data());
    ASSERT_TRUE(cpu_->gelu(gate->c).ok());
    auto got_gelu = run_twice(G, gate->g, [&] { return G->gelu(gate->g); }, [&] { reset_gpu(*gate, gh.data()); },
                              "gelu " + what);
    expect_close(download(cpu_.get(), gate->c), got_gelu, kElem, "gelu " + what);
  }
}

TEST_F(CudaOps, ScatterRowsAndCopy) {
  PIXTRAL_REQUIRE_GPU();
  const std::int64_t R = 20, C = 37;
  auto dh = random_values(rng_, std::size_t(R * C));
  auto sh = random_values(rng_, std::size_t(5 * C));
  std::vector<int> rows = {19, 0, 7, 8, 3};
  auto dst = make_pair(cpu_.get(), G, R, C, dh.data());
  auto src = make_pair(cpu_.get(), G, 5, C, sh.data());
  ASSERT_TRUE(cpu_->scatter_rows(dst->c, src->c, rows).ok());
  auto got = run_twice(G, dst->g, [&] { return G->scatter_rows(dst->g, src->g, rows); },
                       [&] { reset_gpu(*dst, dh.data()); }, "scatter_rows");
  expect_close(download(cpu_.get(), dst->c), got, kExact, "scatter_rows");

  // copy between dtypes: f32 -> bf16 rounds to nearest even, bf16 -> f32 is exact.
  auto vals = random_values(rng_, 999);
  for (auto& v : vals) v *= 1.0f + 1.0f / 512;
  auto a = G->alloc(1, 999, DType::f32, "a");
  auto b = G->alloc(1, 999, DType::bf16, "b");
  auto c = G->alloc(1, 999, DType::f32, "c");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  ASSERT_TRUE(G->upload(*a, vals.data()).ok());
  ASSERT_TRUE(G->copy(*b, *a).ok());
  ASSERT_TRUE(G->copy(*c, *b).ok());
  std::vector<float> want(vals.size());
  for (std::size_t i = 0; i < vals.size(); ++i) want[i] = round_to_dtype(vals[i], DType::bf16);
  expect_close(want, download(G, *c), kExact, "copy f32->bf16->f32");
  expect_close(vals, download(G, *a), kExact, "upload/download f32");
  for (auto* t : {&*a, &*b, &*c}) G->free(*t);
}

TEST_F(CudaOps, PatchEmbed) {
  PIXTRAL_REQUIRE_GPU();
  struct Case { int C, H, W, P, dim; };
  for (const Case c : {Case{3, 16, 16, 4, 40}, Case{3, 48, 32, 16, 64}, Case{1, 8, 24, 8, 3}}) {
    const std::string what = "patch_embed " + std::to_string(c.H) + "x" + std::to_string(c.W) + " P=" +
                             std::to_string(c.P);
    SCOPED_TRACE(what);
    std::uniform_real_distribution<float> u(-1.8f, 2.2f);  // normalised pixels, not on the bf16 grid
    std::vector<float> pix(std::size_t(c.C) * c.H * c.W);
    for (auto& p : pix) p = u(rng_);
    const std::int64_t n = std::int64_t(c.H / c.P) * (c.W / c.P);
    auto conv = make_weight(cpu_.get(), G, rng_, c.dim, std::int64_t(c.C) * c.P * c.P, "patch_conv", 0.1f);
    auto out = make_pair(cpu_.get(), G, n, c.dim, nullptr);
    ASSERT_TRUE(cpu_->patch_embed(out->c, pix.data(), c.C, c.H, c.W, c.P, conv->c).ok());
    auto got = run_twice(G, out->g, [&] { return G->patch_embed(out->g, pix.data(), c.C, c.H, c.W, c.P, conv->g); },
                         [&] { reset_gpu(*out, nullptr); }, what);
    expect_close(download(cpu_.get(), out->c), got, kDot, what);
  }
}

}  // namespace
}  // namespace pixtral
