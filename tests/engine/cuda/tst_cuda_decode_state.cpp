// SPDX-License-Identifier: Apache-2.0
// The device decode state with several query rows (cuda_ext.h: up to kDecodeStateMaxRows rows a step): embed,
// rope, the KV append (scatter_rows) and attention read the rows' positions and tokens from the device, in a
// captured CUDA graph replayed at later positions — row i at position p + i sees keys [0, p + i + 1). Compared with
// the CPU running the same step with host values, for the split-KV decode kernel (two stages and one), the
// tensor-core prefill kernels (v1, v3) and the generic kernel. The single-row case is in tst_cuda_ops.cpp
// (DecodeStepGraphReplayReadsDeviceState).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <numeric>

#include "cuda/cuda_ext.h"
#include "cuda_test_util.h"

namespace pixtral {
namespace {

using cuda_test::download;
using cuda_test::expect_close;
using cuda_test::make_pair;
using cuda_test::make_weight;
using cuda_test::random_values;
using cuda_test::reset;

constexpr double kElem = 1e-5;  // one bf16 rounding
constexpr double kDot = 3e-5;   // rounded operands inside long dot products (as tst_cuda_ops)
constexpr double kExact = 0.0;

class CudaDecodeState : public ::testing::Test {
 protected:
  void SetUp() override { cpu_ = ops::make_cpu_backend(2); }
  void TearDown() override {
    unsetenv("PIXTRAL_CUDA_ATTN_STAGES");
    unsetenv("PIXTRAL_CUDA_ATTENTION");
    unsetenv("PIXTRAL_CUDA_FLASH");
  }
  std::unique_ptr<ops::Backend> cpu_;
  std::mt19937 rng_{777};
};

TEST_F(CudaDecodeState, SeveralRowsReplayReadDeviceState) {
  PIXTRAL_REQUIRE_GPU();
  auto* ext = ops::cuda_extension(*G);
  ASSERT_NE(ext, nullptr);
  struct Case { int rows, H, Hkv, D; std::int64_t cap; std::vector<int> positions; const char* attention = nullptr;
                const char* flash = nullptr; bool one_stage = false; };
  const std::vector<Case> cases = {
      {2, 32, 8, 128, 1500, {1000, 257, 1497}},                      // decode kernel, G = 4
      {3, 32, 8, 128, 8192, {4192, 7990}},                           // several stages, rows past a stage edge
      {4, 8, 2, 64, 1500, {1000, 1, 1495}},                          // four rows, head_dim 64
      {3, 32, 8, 128, 8192, {4192, 7990}, nullptr, nullptr, true},   // the one-stage decode kernel
      {4, 32, 8, 128, 1500, {1000, 1495}, "flash", "1"},             // tensor-core prefill kernel v1
      {3, 8, 2, 64, 1500, {999, 1496}, "flash", "3"},                // v3
      {2, 6, 3, 24, 1500, {1000, 1497}, "generic"},                  // generic kernel
  };
  for (const Case& c : cases) {
    TearDown();  // the previous case's switches
    const std::string what = std::to_string(c.rows) + " rows, H=" + std::to_string(c.H) + "/" +
                             std::to_string(c.Hkv) + " D=" + std::to_string(c.D) + " cap " + std::to_string(c.cap) +
                             (c.attention ? std::string(" ") + c.attention : "") +
                             (c.flash ? std::string(" v") + c.flash : "") + (c.one_stage ? " one stage" : "");
    SCOPED_TRACE(what);
    const std::int64_t cap = c.cap, T = c.rows, qd = std::int64_t(c.H) * c.D, kd = std::int64_t(c.Hkv) * c.D;
    const int vocab = 13;
    auto kc_h = random_values(rng_, std::size_t(cap * kd));
    auto vc_h = random_values(rng_, std::size_t(cap * kd));
    auto kc = make_pair(cpu_.get(), G, cap, kd, kc_h.data());
    auto vc = make_pair(cpu_.get(), G, cap, kd, vc_h.data());
    auto q = make_pair(cpu_.get(), G, T, qd, nullptr);
    auto kr = make_pair(cpu_.get(), G, T, kd, nullptr);
    auto vr = make_pair(cpu_.get(), G, T, kd, nullptr);
    auto out = make_pair(cpu_.get(), G, T, qd, nullptr);
    auto emb = make_pair(cpu_.get(), G, T, 40, nullptr);
    auto table = make_weight(cpu_.get(), G, rng_, vocab, 40, "tok_embeddings");
    ops::AttentionParams p;
    p.n_heads = c.H;
    p.n_kv_heads = c.Hkv;
    p.head_dim = c.D;
    p.scale = 1.0f / std::sqrt(float(c.D)) * 2.0f;
    p.causal = true;
    const float theta = 1e6f;
    const auto pairs = ops::RopePairs::interleaved;
    cuda_test::DecodeStepTensors tg{q->g, kr->g, vr->g, kc->g, vc->g, out->g, emb->g, &table->g};
    cuda_test::DecodeStepTensors tc{q->c, kr->c, vr->c, kc->c, vc->c, out->c, emb->c, &table->c};
    if (c.one_stage) setenv("PIXTRAL_CUDA_ATTN_STAGES", "1", 1);  // read at launch: the graph keeps that kernel
    if (c.attention) setenv("PIXTRAL_CUDA_ATTENTION", c.attention, 1);
    if (c.flash) setenv("PIXTRAL_CUDA_FLASH", c.flash, 1);
    const std::vector<int> dummy(std::size_t(T), 0);  // sizes only: values come from the device state
    std::vector<int> warm_ids(static_cast<std::size_t>(T));
    std::iota(warm_ids.begin(), warm_ids.end(), 1);
    ASSERT_TRUE(ext->set_decode_state(900, c.rows).ok());
    ASSERT_TRUE(ext->set_decode_tokens(warm_ids).ok());
    ext->set_device_state_mode(true);
    Status st = cuda_test::decode_step(G, tg, p, theta, pairs, dummy, dummy, cap);  // eager warm-up
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(G->synchronize().ok());
    ASSERT_TRUE(ext->begin_capture().ok());
    st = cuda_test::decode_step(G, tg, p, theta, pairs, dummy, dummy, cap);
    const Status end = ext->end_capture();
    ext->set_device_state_mode(false);
    ASSERT_TRUE(st.ok()) << st.to_string();
    ASSERT_TRUE(end.ok()) << end.to_string();
    // The warm-up wrote rows 900.. of the GPU cache: start both caches from the same values again.
    reset(*kc, kc_h.data());
    reset(*vc, vc_h.data());
    for (int pos : c.positions) {
      ASSERT_LE(pos + c.rows, cap);
      const std::string w2 = what + " at position " + std::to_string(pos);
      SCOPED_TRACE(w2);
      auto qh = random_values(rng_, std::size_t(T * qd));
      auto kh = random_values(rng_, std::size_t(T * kd));
      auto vh = random_values(rng_, std::size_t(T * kd));
      reset(*q, qh.data());
      reset(*kr, kh.data());
      reset(*vr, vh.data());
      reset(*out, nullptr);
      reset(*emb, nullptr);
      std::vector<int> pos_v(static_cast<std::size_t>(T)), ids(static_cast<std::size_t>(T));
      for (std::int64_t i = 0; i < T; ++i) {
        pos_v[std::size_t(i)] = pos + int(i);
        ids[std::size_t(i)] = int(rng_() % vocab);
      }
      st = cuda_test::decode_step(cpu_.get(), tc, p, theta, pairs, pos_v, ids, pos + T);
      ASSERT_TRUE(st.ok()) << st.to_string();
      ASSERT_TRUE(ext->set_decode_state(pos, c.rows).ok());
      ASSERT_TRUE(ext->set_decode_tokens(ids).ok());
      ASSERT_TRUE(ext->replay().ok());
      ASSERT_TRUE(G->synchronize().ok());
      expect_close(download(cpu_.get(), out->c), download(G, out->g), kDot, "attention " + w2);
      expect_close(download(cpu_.get(), q->c), download(G, q->g), kElem, "rope q " + w2);
      expect_close(download(cpu_.get(), kc->c), download(G, kc->g), kElem, "k cache " + w2);
      expect_close(download(cpu_.get(), vc->c), download(G, vc->g), kExact, "v cache " + w2);
      expect_close(download(cpu_.get(), emb->c), download(G, emb->g), kExact, "embed " + w2);
    }
  }
}

}  // namespace
}  // namespace pixtral
