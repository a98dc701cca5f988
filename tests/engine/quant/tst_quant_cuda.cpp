// SPDX-License-Identifier: Apache-2.0
// CUDA vs the CPU reference for quantized weights (label engine;gpu; every case skips with the loader's reason
// without a GPU): the GPU quantizer's bytes and scales equal the reference's, the batch-1 quantized GEMV
// (T ≤ 4, f32 and bf16 activations/outputs; int4 with bf16 activations on the tensor cores, and up to 64 rows there
// as passes of ≤ 8) and the dequantize-tile + cuBLAS path (more rows) match the CPU's dequantize-on-the-fly matmul
// within NMSE budgets, stacked quantized uploads equal separate ones, row views work, and the GEMV is deterministic
// (an int4 row has the bits of a one-row launch however many rows run with it); the GEMVs' residual mode
// (matmul_add) equals matmul + add bit for bit; the one-row GEMVs fed by the TMA equal the kernels they stand in for
// bit for bit in every mode, and so does the decode norm folded into the int4 one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/quant.h"
#include "cuda/cuda_ext.h"
#include "cuda_test_util.h"
#include "ops/backend.h"

namespace pixtral {
namespace {

using cuda_test::download;
using cuda_test::expect_close;
using quant::Format;

struct Host {
  std::vector<std::uint16_t> bits;
  WeightView view;
};

Host make_weight(std::int64_t N, std::int64_t K, std::uint64_t seed, const std::string& name) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.f, 0.05f);
  Host h;
  h.bits.resize(std::size_t(N * K));
  for (auto& b : h.bits) b = f32_to_bf16(nd(g));
  h.view = WeightView{name, h.bits.data(), DType::bf16, {N, K}};
  return h;
}

// Raw device bytes of a quantized weight, read through a f32 tensor view (download of f32 is a plain copy).
std::vector<std::uint8_t> raw(ops::Backend* b, const void* p, std::size_t bytes) {
  EXPECT_EQ(bytes % 4, 0u);
  ops::Tensor t{const_cast<void*>(p), 1, std::int64_t(bytes / 4), DType::f32};
  const auto f = download(b, t);
  std::vector<std::uint8_t> out(bytes);
  std::memcpy(out.data(), f.data(), bytes);
  return out;
}

struct Shape {
  std::int64_t N, K;
};

class QuantCuda : public ::testing::TestWithParam<Format> {
 protected:
  void SetUp() override { cpu_ = ops::make_cpu_backend(2); }
  std::unique_ptr<ops::Backend> cpu_;
};

TEST_P(QuantCuda, GpuQuantizerMatchesReferenceBytes) {
  PIXTRAL_REQUIRE_GPU();
  const Format f = GetParam();
  for (Shape s : {Shape{64, 256}, Shape{300, 1024}, Shape{7, 5120}}) {
    Host h = make_weight(s.N, s.K, 100 + s.N, "w");
    auto ref = quant::quantize(h.bits.data(), DType::bf16, s.N, s.K, f, "w");
    ASSERT_TRUE(ref.ok());
    auto g = G->upload_weight_quantized(h.view, f);
    ASSERT_TRUE(g.ok()) << g.status().message();
    EXPECT_EQ(g->format, f);
    const auto q = raw(G, g->data, ref->q.size());
    const auto sc = raw(G, g->scales, ref->scales.size() * 4);
    std::size_t bad_q = 0, bad_s = 0;
    for (std::size_t i = 0; i < q.size(); ++i) bad_q += q[i] != ref->q[i];
    for (std::size_t i = 0; i < ref->scales.size(); ++i) {
      float v;
      std::memcpy(&v, sc.data() + 4 * i, 4);
      bad_s += v != ref->scales[i];
    }
    EXPECT_EQ(bad_q, 0u) << quant::format_name(f) << " [" << s.N << "," << s.K << "] value bytes differ";
    EXPECT_EQ(bad_s, 0u) << quant::format_name(f) << " [" << s.N << "," << s.K << "] scales differ";
    G->free_weight(*g);
  }
}

TEST_P(QuantCuda, MatmulMatchesCpuReference) {
  PIXTRAL_REQUIRE_GPU();
  const Format f = GetParam();
  std::mt19937 rng(7);
  for (Shape s : {Shape{256, 512}, Shape{1000, 1280}, Shape{96, 5120}}) {
    Host h = make_weight(s.N, s.K, 200 + s.N, "w");
    auto c = cpu_->upload_weight_quantized(h.view, f);
    auto g = G->upload_weight_quantized(h.view, f);
    ASSERT_TRUE(c.ok() && g.ok());
    for (std::int64_t T : {1, 2, 3, 4, 5, 17, 64}) {
      for (DType gdt : {DType::f32, DType::bf16}) {
        const auto xv = cuda_test::random_values(rng, std::size_t(T * s.K));  // bf16-exact
        auto x = cuda_test::make_pair(cpu_.get(), G, T, s.K, xv.data(), gdt);
        auto o = cuda_test::make_pair(cpu_.get(), G, T, s.N, nullptr, gdt);
        ASSERT_TRUE(cpu_->matmul(o->c, x->c, *c).ok());
        const Status st = G->matmul(o->g, x->g, *g);
        ASSERT_TRUE(st.ok()) << st.message();
        // GEMV: the same dequantized values, another summation order (+ bf16 output rounding); T > 4: W rounded
        // to bf16 after dequantization, then cuBLAS.
        const double budget = T <= 4 ? (gdt == DType::f32 ? 1e-8 : 2e-5) : 5e-5;
        expect_close(download(cpu_.get(), o->c), download(G, o->g), budget,
                     std::string(quant::format_name(f)) + " [" + std::to_string(s.N) + "," + std::to_string(s.K) +
                         "] T=" + std::to_string(T) + " " + dtype_name(gdt));
        // h += x · Wᵀ (prefill: the dequantized tiles' GEMMs with beta = 1), h random
        const auto hv = cuda_test::random_values(rng, std::size_t(T * s.N));
        auto hp = cuda_test::make_pair(cpu_.get(), G, T, s.N, hv.data(), gdt);
        ASSERT_TRUE(cpu_->matmul_add(hp->c, o->c, x->c, *c).ok());
        const Status st2 = G->matmul_add(hp->g, o->g, x->g, *g);
        ASSERT_TRUE(st2.ok()) << st2.message();
        expect_close(download(cpu_.get(), hp->c), download(G, hp->g), budget,
                     std::string("matmul_add ") + quant::format_name(f) + " [" + std::to_string(s.N) + "," +
                         std::to_string(s.K) + "] T=" + std::to_string(T) + " " + dtype_name(gdt));
      }
    }
    cpu_->free_weight(*c);
    G->free_weight(*g);
  }
}

TEST_P(QuantCuda, StackedUploadAndRowViews) {
  PIXTRAL_REQUIRE_GPU();
  const Format f = GetParam();
  const std::int64_t K = 1024;
  Host a = make_weight(128, K, 1, "wq"), b = make_weight(32, K, 2, "wk"), c = make_weight(32, K, 3, "wv");
  const WeightView* parts[3] = {&a.view, &b.view, &c.view};
  auto st = G->upload_weight_stacked_quantized(parts, "wqkv", f);
  ASSERT_TRUE(st.ok()) << st.status().message();
  EXPECT_EQ(st->rows, 192);
  auto sep = G->upload_weight_quantized(b.view, f);
  ASSERT_TRUE(sep.ok());
  const ops::Weight view = st->rows_view(128, 32, "wk");
  std::mt19937 rng(3);
  for (std::int64_t T : {1, 9}) {
    const auto xv = cuda_test::random_values(rng, std::size_t(T * K));
    auto x = cuda_test::make_pair(cpu_.get(), G, T, K, xv.data(), DType::bf16);
    auto o1 = cuda_test::make_pair(cpu_.get(), G, T, 32, nullptr, DType::f32);
    auto o2 = cuda_test::make_pair(cpu_.get(), G, T, 32, nullptr, DType::f32);
    ASSERT_TRUE(G->matmul(o1->g, x->g, view).ok());
    ASSERT_TRUE(G->matmul(o2->g, x->g, *sep).ok());
    cuda_test::expect_same_bits(download(G, o1->g), download(G, o2->g), "row view of stacked vs separate");
  }
  G->free_weight(*st);
  G->free_weight(*sep);
}

TEST_P(QuantCuda, GemvIsDeterministicAndHandlesBias) {
  PIXTRAL_REQUIRE_GPU();
  const Format f = GetParam();
  const std::int64_t N = 384, K = 2048;
  Host h = make_weight(N, K, 9, "w");
  std::vector<std::uint16_t> bias_bits(static_cast<std::size_t>(N));
  for (std::int64_t n = 0; n < N; ++n) bias_bits[std::size_t(n)] = f32_to_bf16(0.01f * float(n % 17) - 0.08f);
  WeightView bv{"b", bias_bits.data(), DType::bf16, {N}};
  auto c = cpu_->upload_weight_quantized(h.view, f);
  auto g = G->upload_weight_quantized(h.view, f);
  auto cb = cpu_->upload_weight(bv);
  auto gb = G->upload_weight(bv);
  ASSERT_TRUE(c.ok() && g.ok() && cb.ok() && gb.ok());
  std::mt19937 rng(4);
  for (std::int64_t T : {1, 4, 12}) {
    const auto xv = cuda_test::random_values(rng, std::size_t(T * K));
    auto x = cuda_test::make_pair(cpu_.get(), G, T, K, xv.data(), DType::f32);
    auto o = cuda_test::make_pair(cpu_.get(), G, T, N, nullptr, DType::f32);
    ASSERT_TRUE(cpu_->matmul(o->c, x->c, *c, &*cb).ok());
    ASSERT_TRUE(G->matmul(o->g, x->g, *g, &*gb).ok());
    const auto first = download(G, o->g);
    expect_close(download(cpu_.get(), o->c), first, T <= 4 ? 1e-8 : 5e-5, "bias T=" + std::to_string(T));
    cuda_test::reset_gpu(*o, nullptr);
    ASSERT_TRUE(G->matmul(o->g, x->g, *g, &*gb).ok());
    cuda_test::expect_same_bits(first, download(G, o->g), "rerun T=" + std::to_string(T));
  }
  cpu_->free_weight(*c);
  G->free_weight(*g);
  G->free_weight(*gb);
}

// int4 weights with bf16 activations and T ≤ 4 run the tensor-core GEMV (16 output rows a block;
// PIXTRAL_CUDA_INT4_MMA=0 sends them to the scalar kernel instead): item counts that leave a partial last block
// (N = 16k + 5, and N < 16), K of one group (one warp with work) to 112 groups, T = 1..4, bf16 and f32 outputs, with
// and without bias — within the GEMV budgets of the CPU reference (NaN/Inf fail), bit-identical on a rerun, a row's
// value independent of T (row t of a T = 4 launch equals a T = 1 launch on x row t) and of its place in the 16-row
// tile (a row view starting 3 rows in): what the fused silu / rope modes' bit-identity with the unfused ops rests on.
TEST(QuantCudaInt4Mma, OddShapesMatchCpuDeterministicAndPositionFree) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(2);
  std::mt19937 rng(21);
  // 107 groups (uneven warp ranges) and 112 (w2's K): more groups a warp than the ring holds, so slots are refilled.
  for (std::int64_t K : {128, 384, 5120, 128 * 107, 14336}) {
    for (std::int64_t N : {5, 16 * 3 + 5, 16 * 20 + 5}) {
      Host h = make_weight(N, K, 1000 + std::uint64_t(N + K), "w");
      std::vector<std::uint16_t> bias_bits(static_cast<std::size_t>(N));
      for (std::int64_t n = 0; n < N; ++n) bias_bits[std::size_t(n)] = f32_to_bf16(0.01f * float(n % 13) - 0.06f);
      WeightView bv{"b", bias_bits.data(), DType::bf16, {N}};
      auto c = cpu->upload_weight_quantized(h.view, Format::int4_g128);
      auto g = G->upload_weight_quantized(h.view, Format::int4_g128);
      auto cb = cpu->upload_weight(bv);
      auto gb = G->upload_weight(bv);
      ASSERT_TRUE(c.ok() && g.ok() && cb.ok() && gb.ok());
      // 5..8: one prefill pass; 9 and 20: passes of 8 and a remainder (launch_q4mma_rows).
      for (std::int64_t T : {1, 2, 3, 4, 5, 8, 9, 20}) {
        for (DType odt : {DType::bf16, DType::f32}) {
          const bool with_bias = (T + N) % 2 == 1;
          const std::string what = "int4 mma N=" + std::to_string(N) + " K=" + std::to_string(K) + " T=" +
                                   std::to_string(T) + " out " + dtype_name(odt) + (with_bias ? " +bias" : "");
          SCOPED_TRACE(what);
          const auto xv = cuda_test::random_values(rng, std::size_t(T * K));
          auto x = cuda_test::make_pair(cpu.get(), G, T, K, xv.data(), DType::bf16);
          auto o = cuda_test::make_pair(cpu.get(), G, T, N, nullptr, odt);
          ASSERT_TRUE(cpu->matmul(o->c, x->c, *c, with_bias ? &*cb : nullptr).ok());
          Status st = G->matmul(o->g, x->g, *g, with_bias ? &*gb : nullptr);
          ASSERT_TRUE(st.ok()) << st.to_string();
          const auto first = download(G, o->g);
          expect_close(download(cpu.get(), o->c), first, odt == DType::f32 ? 1e-8 : 2e-5, what);
          cuda_test::reset_gpu(*o, nullptr);
          ASSERT_TRUE(G->matmul(o->g, x->g, *g, with_bias ? &*gb : nullptr).ok());
          cuda_test::expect_same_bits(first, download(G, o->g), "rerun " + what);
          if (with_bias) continue;
          // Row t alone (T = 1): the same bits as row t of the T-row launch.
          auto o1 = cuda_test::make_pair(cpu.get(), G, 1, N, nullptr, odt);
          for (std::int64_t t = 0; t < T; ++t) {
            ASSERT_TRUE(G->matmul(o1->g, x->g.slice_rows(t, 1), *g).ok());
            cuda_test::expect_same_bits(std::vector<float>(first.begin() + t * N, first.begin() + (t + 1) * N),
                                        download(G, o1->g), "x row " + std::to_string(t) + " alone, " + what);
          }
          // Rows 3.. of W as a view: every row sits 3 places earlier in its tile, the same bits.
          if (N > 3) {
            const ops::Weight view = g->rows_view(3, N - 3, "w[3:]");
            auto ov = cuda_test::make_pair(cpu.get(), G, T, N - 3, nullptr, odt);
            ASSERT_TRUE(G->matmul(ov->g, x->g, view).ok());
            const auto got = download(G, ov->g);
            std::vector<float> want;
            for (std::int64_t t = 0; t < T; ++t)
              want.insert(want.end(), first.begin() + t * N + 3, first.begin() + (t + 1) * N);
            cuda_test::expect_same_bits(want, got, "row view w[3:], " + what);
          }
        }
      }
      cpu->free_weight(*c);
      G->free_weight(*g);
      G->free_weight(*gb);
    }
  }
}

// matmul_silu (decode FFN: [w1; w3] in one pass, SiLU·mul in the GEMV's epilogue) for bf16, int8 and int4
// weights, T = 1..4, f32 and bf16 activations: bit-identical to the unfused default (matmul into [g | u], then
// silu_mul) run one row at a time on the GPU, and within budget of the CPU reference.
TEST(QuantCudaSilu, FusedEqualsUnfusedAndCpu) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(2);
  std::mt19937 rng(11);
  for (Format f : {Format::dense, Format::int8_channel, Format::int4_g128}) {
    for (Shape s : {Shape{256, 512}, Shape{96, 5120}, Shape{40, 1024}}) {
      Host w1 = make_weight(s.N, s.K, 300 + s.N, "w1"), w3 = make_weight(s.N, s.K, 400 + s.N, "w3");
      const WeightView* parts[2] = {&w1.view, &w3.view};
      // The CPU keeps separate weights (no stacking there): g = x·w1ᵀ, u = x·w3ᵀ, silu_mul.
      auto c1 = cpu->upload_weight_quantized(w1.view, f), c3 = cpu->upload_weight_quantized(w3.view, f);
      auto g = G->upload_weight_stacked_quantized(parts, "w13", f);
      ASSERT_TRUE(c1.ok() && c3.ok() && g.ok()) << g.status().to_string();
      for (std::int64_t T : {1, 2, 3, 4}) {
        for (DType gdt : {DType::bf16, DType::f32}) {
          const std::string what = std::string(quant::format_name(f)) + " F=" + std::to_string(s.N) + " K=" +
                                   std::to_string(s.K) + " T=" + std::to_string(T) + " " + dtype_name(gdt);
          SCOPED_TRACE(what);
          const auto xv = cuda_test::random_values(rng, std::size_t(T * s.K));
          auto x = cuda_test::make_pair(cpu.get(), G, T, s.K, xv.data(), gdt);
          auto o = cuda_test::make_pair(cpu.get(), G, T, s.N, nullptr, gdt);
          auto ref = cuda_test::make_pair(cpu.get(), G, T, s.N, nullptr, gdt);
          auto gu = cuda_test::make_pair(cpu.get(), G, 1, 2 * s.N, nullptr, gdt);
          auto cg = cuda_test::make_pair(cpu.get(), G, T, s.N, nullptr, gdt);
          auto cu = cuda_test::make_pair(cpu.get(), G, T, s.N, nullptr, gdt);
          auto gu_all = cuda_test::make_pair(cpu.get(), G, T, 2 * s.N, nullptr, gdt);
          Status st = G->matmul_silu(o->g, gu_all->g, x->g, *g);
          ASSERT_TRUE(st.ok()) << st.to_string();
          for (std::int64_t t = 0; t < T; ++t) {
            st = G->ops::Backend::matmul_silu(ref->g.slice_rows(t, 1), gu->g, x->g.slice_rows(t, 1), *g);
            ASSERT_TRUE(st.ok()) << st.to_string();
          }
          ASSERT_TRUE(cpu->matmul(cg->c, x->c, *c1).ok());
          ASSERT_TRUE(cpu->matmul(cu->c, x->c, *c3).ok());
          ASSERT_TRUE(cpu->silu_mul(ref->c, cg->c, cu->c).ok());
          const auto got = download(G, o->g);
          cuda_test::expect_same_bits(download(G, ref->g), got, "fused vs unfused " + what);
          expect_close(download(cpu.get(), ref->c), got, gdt == DType::f32 ? 1e-8 : 5e-5, "vs CPU " + what);
        }
      }
      cpu->free_weight(*c1);
      cpu->free_weight(*c3);
      G->free_weight(*g);
    }
  }
}

// matmul_rope_append_kv (decode: [wq; wk; wv] GEMV with RoPE of q | k and the KV append in its epilogue) for bf16,
// int8 and int4 weights, both pair layouts, bf16 and f32 activations, the position from the host and from the
// device decode state: q, the k cache and the v cache bit-identical to the unfused default (matmul into qkv, then
// rope_append_kv) on the GPU. Both halves are compared with the CPU in their own tests (Matmul*, RopeAppendKv*).
TEST(QuantCudaRope, FusedEqualsUnfused) {
  PIXTRAL_REQUIRE_GPU();
  auto* ext = ops::cuda_extension(*G);
  ASSERT_NE(ext, nullptr);
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(12);
  struct Case { int H, Hkv, D; std::int64_t K; };
  for (Format f : {Format::dense, Format::int8_channel, Format::int4_g128}) {
    for (const Case c : {Case{32, 8, 128, 1024}, Case{8, 2, 64, 512}, Case{4, 4, 8, 256}}) {
      const std::int64_t kd = std::int64_t(c.Hkv) * c.D, cols = std::int64_t(c.H) * c.D + 2 * kd, cap = 200;
      Host wq = make_weight(c.H * c.D, c.K, 500 + c.D, "wq"), wk = make_weight(kd, c.K, 600 + c.D, "wk"),
           wv = make_weight(kd, c.K, 700 + c.D, "wv");
      const WeightView* parts[3] = {&wq.view, &wk.view, &wv.view};
      auto w = G->upload_weight_stacked_quantized(parts, "wqkv", f);
      ASSERT_TRUE(w.ok()) << w.status().to_string();
      for (auto pairs : {ops::RopePairs::interleaved, ops::RopePairs::halves}) {
        for (DType dt : {DType::bf16, DType::f32}) {
          const std::string what = std::string(quant::format_name(f)) + " H=" + std::to_string(c.H) + "/" +
                                   std::to_string(c.Hkv) + " D=" + std::to_string(c.D) + " " + dtype_name(dt) +
                                   (pairs == ops::RopePairs::halves ? " halves" : " interleaved");
          SCOPED_TRACE(what);
          const int pos = int(rng() % cap);
          const auto xv = cuda_test::random_values(rng, std::size_t(c.K));
          const auto kh = cuda_test::random_values(rng, std::size_t(cap * kd));
          const auto vh = cuda_test::random_values(rng, std::size_t(cap * kd));
          auto x = cuda_test::make_pair(cpu.get(), G, 1, c.K, xv.data(), dt);
          auto qkv = cuda_test::make_pair(cpu.get(), G, 1, cols, nullptr, dt);
          auto kc = cuda_test::make_pair(cpu.get(), G, cap, kd, kh.data(), dt);
          auto vc = cuda_test::make_pair(cpu.get(), G, cap, kd, vh.data(), dt);
          Status st = G->ops::Backend::matmul_rope_append_kv(qkv->g, x->g, *w, c.H, c.Hkv, c.D, pos, 1e6f, pairs,
                                                             kc->g, vc->g);
          ASSERT_TRUE(st.ok()) << st.to_string();
          const auto ref_q = download(G, qkv->g), ref_k = download(G, kc->g), ref_v = download(G, vc->g);
          const std::vector<float> ref_qh(ref_q.begin(), ref_q.begin() + c.H * c.D);
          for (bool device_state : {false, true}) {
            cuda_test::reset_gpu(*qkv, nullptr);
            cuda_test::reset_gpu(*kc, kh.data());
            cuda_test::reset_gpu(*vc, vh.data());
            if (device_state) {
              ASSERT_TRUE(ext->set_decode_state(pos, 1).ok());
              ext->set_device_state_mode(true);
            }
            st = G->matmul_rope_append_kv(qkv->g, x->g, *w, c.H, c.Hkv, c.D, device_state ? -1 : pos, 1e6f, pairs,
                                          kc->g, vc->g);
            ext->set_device_state_mode(false);
            ASSERT_TRUE(st.ok()) << st.to_string();
            const std::string how = device_state ? " (device state)" : "";
            const auto got_q = download(G, qkv->g);
            cuda_test::expect_same_bits(ref_qh, std::vector<float>(got_q.begin(), got_q.begin() + c.H * c.D),
                                        "q" + how + " " + what);
            cuda_test::expect_same_bits(ref_k, download(G, kc->g), "k cache" + how + " " + what);
            cuda_test::expect_same_bits(ref_v, download(G, vc->g), "v cache" + how + " " + what);
          }
        }
      }
      G->free_weight(*w);
    }
  }
  // A position outside the cache is refused with the op's name.
  Host w1 = make_weight(8 * 3, 256, 1, "wqkv");
  auto w = G->upload_weight(w1.view);
  ASSERT_TRUE(w.ok());
  auto x = cuda_test::make_pair(cpu.get(), G, 1, 256, nullptr);
  auto qkv = cuda_test::make_pair(cpu.get(), G, 1, 8 * 3, nullptr);
  auto kc = cuda_test::make_pair(cpu.get(), G, 4, 8, nullptr);
  auto vc = cuda_test::make_pair(cpu.get(), G, 4, 8, nullptr);
  const Status bad = G->matmul_rope_append_kv(qkv->g, x->g, *w, 1, 1, 8, 4, 1e6f, ops::RopePairs::halves, kc->g, vc->g);
  EXPECT_EQ(bad.code(), ErrorCode::invalid_argument) << bad.to_string();
  EXPECT_NE(bad.message().find("matmul_rope_append_kv"), std::string::npos) << bad.message();
  G->free_weight(*w);
}

// matmul_add in the decode GEMVs (residual mode: the product rounded to h's dtype, then added in the epilogue) for
// bf16, int8 and int4 weights, T = 1..4 (int4 with bf16 h also 5..13: the prefill passes), bf16 and f32 h:
// bit-identical to the default (matmul into a tmp of h's dtype, then add) on the GPU; h starts random, so a product
// written over h instead of added to it fails.
TEST(QuantCudaResidual, MatmulAddEqualsMatmulThenAdd) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(13);
  for (Format f : {Format::dense, Format::int8_channel, Format::int4_g128}) {
    for (Shape s : {Shape{257, 5120}, Shape{64, 1024}, Shape{8, 256}}) {
      Host hw = make_weight(s.N, s.K, 800 + s.N, "wo");
      auto w = f == Format::dense ? G->upload_weight(hw.view) : G->upload_weight_quantized(hw.view, f);
      ASSERT_TRUE(w.ok()) << w.status().to_string();
      // int4 with bf16 rows: also the prefill passes of ≤ 8 rows (5, 8, and 13 = 8 + 5).
      for (std::int64_t T : {1, 2, 3, 4, 5, 8, 13}) {
        for (DType dt : {DType::bf16, DType::f32}) {
          if (T > 4 && (f != Format::int4_g128 || dt != DType::bf16)) continue;  // cuBLAS with beta 1: one rounding
          const std::string what = std::string(quant::format_name(f)) + " N=" + std::to_string(s.N) + " K=" +
                                   std::to_string(s.K) + " T=" + std::to_string(T) + " " + dtype_name(dt);
          SCOPED_TRACE(what);
          const auto xv = cuda_test::random_values(rng, std::size_t(T * s.K));
          const auto hv = cuda_test::random_values(rng, std::size_t(T * s.N));
          auto x = cuda_test::make_pair(cpu.get(), G, T, s.K, xv.data(), dt);
          auto h = cuda_test::make_pair(cpu.get(), G, T, s.N, hv.data(), dt);
          auto tmp = cuda_test::make_pair(cpu.get(), G, T, s.N, nullptr, dt);
          Status st = G->ops::Backend::matmul_add(h->g, tmp->g, x->g, *w);
          ASSERT_TRUE(st.ok()) << st.to_string();
          const auto ref = download(G, h->g);
          for (int run = 0; run < 2; ++run) {
            cuda_test::reset_gpu(*h, hv.data());
            cuda_test::reset_gpu(*tmp, nullptr);
            st = G->matmul_add(h->g, tmp->g, x->g, *w);
            ASSERT_TRUE(st.ok()) << st.to_string();
            cuda_test::expect_same_bits(ref, download(G, h->g), "run " + std::to_string(run) + " " + what);
          }
        }
      }
      G->free_weight(*w);
    }
  }
}

// PIXTRAL_CUDA_Q4TMA set for one scope (the backend reads it at every launch), restored after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

// The one-row quantized GEMVs streamed by the TMA (kernels_q4tma.cu, kernels_q8tma.cu: the decode's kernels on
// sm_90) against the kernels they stand in for, in every mode, bit for bit: int4 against q4mma (PIXTRAL_CUDA_Q4TMA=0), int8 against the
// scalar kernel (PIXTRAL_CUDA_Q8TMA=0) — so everything those kernels' tests prove (parity with the CPU, fused =
// unfused, a row's bits independent of T and of its place) holds for them too. <switch>=require turns "the TMA
// kernel cannot run here" into an error, so the comparison is never a kernel against itself. bf16 activations (what
// the TMA GEMVs take; plain also writes f32). Shapes: partial last tiles (1000, 37, 1040, 336 rows), K from one
// stage (1024: 8 groups, one a warp) to w2's 14336, rope heads of 128 (Pixtral) and 32 dims (16 pairs: the smallest
// int4 halves tile), both pair layouts.
TEST(QuantCudaTma, EveryModeEqualsTheOtherKernelBitForBit) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(31);
  for (Format f : {Format::int4_g128, Format::int8_channel}) {
    const char* sw_name = f == Format::int4_g128 ? "PIXTRAL_CUDA_Q4TMA" : "PIXTRAL_CUDA_Q8TMA";
    // run() under the TMA kernel (required), then under the other; read() after each; the two reads' bits compared.
    const auto both = [&](const std::string& what0, const auto& run, const auto& read) {
      const std::string what = std::string(quant::format_name(f)) + " " + what0;
      std::vector<std::vector<float>> got;
      for (const char* sw : {"require", "0"}) {
        ScopedEnv env(sw_name, sw);
        const Status st = run();
        ASSERT_TRUE(st.ok()) << what << " (" << sw_name << "=" << sw << "): " << st.to_string();
        got.push_back(read());
      }
      cuda_test::expect_same_bits(got[1], got[0], what);
    };
    for (Shape sh : {Shape{1000, 5120}, Shape{6144, 5120}, Shape{37, 1024}}) {
      Host hw = make_weight(sh.N, sh.K, 900 + sh.N, "w");
      std::vector<std::uint16_t> bias_bits(static_cast<std::size_t>(sh.N));
      for (std::int64_t n = 0; n < sh.N; ++n) bias_bits[std::size_t(n)] = f32_to_bf16(0.02f * float(n % 7) - 0.05f);
      WeightView bv{"b", bias_bits.data(), DType::bf16, {sh.N}};
      auto w = G->upload_weight_quantized(hw.view, f);
      auto b = G->upload_weight(bv);
      ASSERT_TRUE(w.ok() && b.ok());
      for (DType odt : {DType::bf16, DType::f32}) {
        for (bool with_bias : {false, true}) {
          const std::string what = "plain N=" + std::to_string(sh.N) + " K=" + std::to_string(sh.K) + " out " +
                                   dtype_name(odt) + (with_bias ? " +bias" : "");
          const auto xv = cuda_test::random_values(rng, std::size_t(sh.K));
          auto x = cuda_test::make_pair(cpu.get(), G, 1, sh.K, xv.data(), DType::bf16);
          auto o = cuda_test::make_pair(cpu.get(), G, 1, sh.N, nullptr, odt);
          both(
              what, [&] { return G->matmul(o->g, x->g, *w, with_bias ? &*b : nullptr); },
              [&] { return download(G, o->g); });
        }
      }
      G->free_weight(*w);
      G->free_weight(*b);
    }
    for (Shape sh : {Shape{1040, 14336}, Shape{5120, 4096}}) {
      Host hw = make_weight(sh.N, sh.K, 950 + sh.N, "wo");
      auto w = G->upload_weight_quantized(hw.view, f);
      ASSERT_TRUE(w.ok());
      {  // bf16 activations: the tensor-core GEMVs' input (f32 x runs the scalar kernel)
        const DType dt = DType::bf16;
        const std::string what =
            "residual N=" + std::to_string(sh.N) + " K=" + std::to_string(sh.K) + " " + dtype_name(dt);
        const auto xv = cuda_test::random_values(rng, std::size_t(sh.K));
        const auto hv = cuda_test::random_values(rng, std::size_t(sh.N));
        auto x = cuda_test::make_pair(cpu.get(), G, 1, sh.K, xv.data(), dt);
        auto h = cuda_test::make_pair(cpu.get(), G, 1, sh.N, hv.data(), dt);
        auto tmp = cuda_test::make_pair(cpu.get(), G, 1, sh.N, nullptr, dt);
        both(
            what,
            [&] {
              cuda_test::reset_gpu(*h, hv.data());
              return G->matmul_add(h->g, tmp->g, x->g, *w);
            },
            [&] { return download(G, h->g); });
      }
      G->free_weight(*w);
    }
    for (std::int64_t F : {336, 1024}) {
      const std::int64_t K = 5120;
      Host w1 = make_weight(F, K, 960 + F, "w1"), w3 = make_weight(F, K, 970 + F, "w3");
      const WeightView* parts[2] = {&w1.view, &w3.view};
      auto w = G->upload_weight_stacked_quantized(parts, "w13", f);
      ASSERT_TRUE(w.ok()) << w.status().to_string();
      {
        const DType dt = DType::bf16;
        const std::string what = "silu F=" + std::to_string(F) + " K=5120 " + dtype_name(dt);
        const auto xv = cuda_test::random_values(rng, std::size_t(K));
        auto x = cuda_test::make_pair(cpu.get(), G, 1, K, xv.data(), dt);
        auto o = cuda_test::make_pair(cpu.get(), G, 1, F, nullptr, dt);
        auto gu = cuda_test::make_pair(cpu.get(), G, 1, 2 * F, nullptr, dt);
        both(
            what, [&] { return G->matmul_silu(o->g, gu->g, x->g, *w); }, [&] { return download(G, o->g); });
      }
      G->free_weight(*w);
    }
    struct Case {
      int H, Hkv, D;
      std::int64_t K;
    };
    for (const Case c : {Case{32, 8, 128, 5120}, Case{4, 2, 32, 1024}}) {
      const std::int64_t kd = std::int64_t(c.Hkv) * c.D, cols = std::int64_t(c.H) * c.D + 2 * kd, cap = 64;
      Host wq = make_weight(c.H * c.D, c.K, 980 + c.D, "wq"), wk = make_weight(kd, c.K, 990 + c.D, "wk"),
           wv = make_weight(kd, c.K, 995 + c.D, "wv");
      const WeightView* parts[3] = {&wq.view, &wk.view, &wv.view};
      auto w = G->upload_weight_stacked_quantized(parts, "wqkv", f);
      ASSERT_TRUE(w.ok()) << w.status().to_string();
      for (auto pairs : {ops::RopePairs::interleaved, ops::RopePairs::halves}) {
        {
          const DType dt = DType::bf16;
          const std::string what = "rope H=" + std::to_string(c.H) + "/" + std::to_string(c.Hkv) +
                                   " D=" + std::to_string(c.D) + " " + dtype_name(dt) +
                                   (pairs == ops::RopePairs::halves ? " halves" : " interleaved");
          const int pos = int(rng() % cap);
          const auto xv = cuda_test::random_values(rng, std::size_t(c.K));
          const auto kh = cuda_test::random_values(rng, std::size_t(cap * kd));
          const auto vh = cuda_test::random_values(rng, std::size_t(cap * kd));
          auto x = cuda_test::make_pair(cpu.get(), G, 1, c.K, xv.data(), dt);
          auto qkv = cuda_test::make_pair(cpu.get(), G, 1, cols, nullptr, dt);
          auto kc = cuda_test::make_pair(cpu.get(), G, cap, kd, kh.data(), dt);
          auto vc = cuda_test::make_pair(cpu.get(), G, cap, kd, vh.data(), dt);
          both(
              what,
              [&] {
                cuda_test::reset_gpu(*qkv, nullptr);
                cuda_test::reset_gpu(*kc, kh.data());
                cuda_test::reset_gpu(*vc, vh.data());
                return G->matmul_rope_append_kv(qkv->g, x->g, *w, c.H, c.Hkv, c.D, pos, 1e6f, pairs, kc->g, vc->g);
              },
              [&] {
                auto q = download(G, qkv->g);
                q.resize(std::size_t(c.H * c.D));  // qkv's k and v parts are not written by the fused op
                const auto k = download(G, kc->g), v = download(G, vc->g);
                q.insert(q.end(), k.begin(), k.end());
                q.insert(q.end(), v.begin(), v.end());
                return q;
              });
        }
      }
      G->free_weight(*w);
    }
  }  // formats
}

// Dynamic tiles (kernels_q4tma.cu: the silu and plain modes with more tiles than blocks take their tiles from a
// counter) against static tiles (PIXTRAL_CUDA_Q4TMA_DYN=0), bit for bit. PIXTRAL_CUDA_Q4TMA_DYN=require makes a launch
// that would take static tiles an error, so the first pass is the dynamic path. Four launches on the same weight
// are queued back to back (x1, x2, x1, x2; every tensor made first: an upload waits for the stream), so they overlap
// under programmatic dependent launch, and PIXTRAL_CUDA_Q4TMA_DYN_SLOTS=3 makes the fourth reuse the first one's
// counter, which the first must have zeroed. (A launch starts only once every block of the one before has started;
// these grids are two blocks an SM and their registers let at most three run on an SM, so a launch never overlaps
// the third after it.) 1024 tiles in each mode: more than three blocks an SM on any GPU of up to 341 SMs.
TEST(QuantCudaTma, DynamicTilesEqualStaticTilesBackToBack) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(43);
  ScopedEnv req("PIXTRAL_CUDA_Q4TMA", "require");
  ScopedEnv slots("PIXTRAL_CUDA_Q4TMA_DYN_SLOTS", "3");
  const std::int64_t K = 1024, F = 16384, N = 16384;
  Host w1 = make_weight(F, K, 1201, "w1"), w3 = make_weight(F, K, 1202, "w3"), wp = make_weight(N, K, 1203, "w");
  const WeightView* parts[2] = {&w1.view, &w3.view};
  auto w13 = G->upload_weight_stacked_quantized(parts, "w13", Format::int4_g128);
  auto w = G->upload_weight_quantized(wp.view, Format::int4_g128);
  ASSERT_TRUE(w13.ok() && w.ok());
  const auto x1v = cuda_test::random_values(rng, std::size_t(K)), x2v = cuda_test::random_values(rng, std::size_t(K));
  auto x1 = cuda_test::make_pair(cpu.get(), G, 1, K, x1v.data(), DType::bf16);
  auto x2 = cuda_test::make_pair(cpu.get(), G, 1, K, x2v.data(), DType::bf16);
  for (const bool silu : {true, false}) {
    const std::int64_t n_out = silu ? F : N;
    const std::string what = silu ? "silu F=16384 K=1024" : "plain N=16384 K=1024";
    std::vector<std::vector<float>> got[2];  // [dynamic, static][launch]
    for (int pass = 0; pass < 2; ++pass) {
      ScopedEnv dyn("PIXTRAL_CUDA_Q4TMA_DYN", pass == 0 ? "require" : "0");
      auto gu = cuda_test::make_pair(cpu.get(), G, 1, 2 * F, nullptr, DType::bf16);
      std::vector<std::unique_ptr<cuda_test::Pair>> outs;
      for (int i = 0; i < 4; ++i) outs.push_back(cuda_test::make_pair(cpu.get(), G, 1, n_out, nullptr, DType::bf16));
      for (int i = 0; i < 4; ++i) {
        const ops::Tensor& x = (i % 2 ? x2 : x1)->g;
        const Status st = silu ? G->matmul_silu(outs[std::size_t(i)]->g, gu->g, x, *w13)
                               : G->matmul(outs[std::size_t(i)]->g, x, *w, nullptr);
        ASSERT_TRUE(st.ok()) << what << (pass == 0 ? " dynamic" : " static") << ": " << st.to_string();
      }
      for (const auto& o : outs) got[pass].push_back(download(G, o->g));
    }
    for (int i = 0; i < 4; ++i)
      cuda_test::expect_same_bits(got[1][std::size_t(i)], got[0][std::size_t(i)],
                                  what + " launch " + std::to_string(i) + ", dynamic vs static");
    cuda_test::expect_same_bits(got[0][0], got[0][2], what + ": launches 0 and 2 (the same x)");
    cuda_test::expect_same_bits(got[0][1], got[0][3], what + ": launches 1 and 3 (the same x; 3 reuses 0's counter)");
    EXPECT_NE(got[0][0], got[0][1]) << what << ": x1 and x2 gave the same output";
  }
  G->free_weight(*w13);
  G->free_weight(*w);
}

// The decode norm folded into the int4 GEMV after it (rms_norm_matmul_rope_append_kv, rms_norm_matmul_silu: every
// block of the TMA GEMV normalizes h itself) against the ops' defaults (the norm kernel, then the GEMV) on the GPU:
// q, the cache rows, the SiLU output and xn bit for bit. PIXTRAL_CUDA_FOLD_NORM=require makes an unfolded call an
// error; =0 gives the reference. Shapes: Pixtral's (K = 5120: 640 pieces of 8, 20 of the norm kernel's warps) and
// K = 1024 (4 warps), rope heads of 128 and 32, both pair layouts.
TEST(QuantCudaTma, FoldedNormEqualsNormThenOpBitForBit) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(41);
  const float eps = 1e-5f;
  // run() folded (required), then unfolded; read() after each; the bits compared.
  const auto both = [&](const std::string& what, const auto& run, const auto& read) {
    std::vector<std::vector<float>> got;
    for (const char* sw : {"require", "0"}) {
      ScopedEnv env("PIXTRAL_CUDA_FOLD_NORM", sw);
      const Status st = run();
      ASSERT_TRUE(st.ok()) << what << " (PIXTRAL_CUDA_FOLD_NORM=" << sw << "): " << st.to_string();
      got.push_back(read());
    }
    cuda_test::expect_same_bits(got[1], got[0], what);
  };
  const auto norm_weight = [&](std::int64_t K, std::vector<std::uint16_t>& bits) {
    bits.resize(std::size_t(K));
    std::normal_distribution<float> nd(1.f, 0.2f);
    for (auto& b : bits) b = f32_to_bf16(nd(rng));
    return WeightView{"norm", bits.data(), DType::bf16, {K}};
  };
  struct Case {
    int H, Hkv, D;
    std::int64_t K;
  };
  for (const Case c : {Case{32, 8, 128, 5120}, Case{4, 2, 32, 1024}}) {
    const std::int64_t kd = std::int64_t(c.Hkv) * c.D, cols = std::int64_t(c.H) * c.D + 2 * kd, cap = 64;
    Host wq = make_weight(c.H * c.D, c.K, 1100 + c.D, "wq"), wk = make_weight(kd, c.K, 1110 + c.D, "wk"),
         wv = make_weight(kd, c.K, 1120 + c.D, "wv");
    const WeightView* parts[3] = {&wq.view, &wk.view, &wv.view};
    auto w = G->upload_weight_stacked_quantized(parts, "wqkv", Format::int4_g128);
    std::vector<std::uint16_t> nb;
    auto nw = G->upload_weight(norm_weight(c.K, nb));
    ASSERT_TRUE(w.ok() && nw.ok()) << w.status().to_string();
    for (auto pairs : {ops::RopePairs::interleaved, ops::RopePairs::halves}) {
      const std::string what = "rope H=" + std::to_string(c.H) + "/" + std::to_string(c.Hkv) +
                               " D=" + std::to_string(c.D) + " K=" + std::to_string(c.K) +
                               (pairs == ops::RopePairs::halves ? " halves" : " interleaved");
      const int pos = int(rng() % cap);
      const auto hv = cuda_test::random_values(rng, std::size_t(c.K));
      const auto kh = cuda_test::random_values(rng, std::size_t(cap * kd));
      const auto vh = cuda_test::random_values(rng, std::size_t(cap * kd));
      auto h = cuda_test::make_pair(cpu.get(), G, 1, c.K, hv.data(), DType::bf16);
      auto xn = cuda_test::make_pair(cpu.get(), G, 1, c.K, nullptr, DType::bf16);
      auto qkv = cuda_test::make_pair(cpu.get(), G, 1, cols, nullptr, DType::bf16);
      auto kc = cuda_test::make_pair(cpu.get(), G, cap, kd, kh.data(), DType::bf16);
      auto vc = cuda_test::make_pair(cpu.get(), G, cap, kd, vh.data(), DType::bf16);
      both(
          what,
          [&] {
            cuda_test::reset_gpu(*xn, nullptr);
            cuda_test::reset_gpu(*qkv, nullptr);
            cuda_test::reset_gpu(*kc, kh.data());
            cuda_test::reset_gpu(*vc, vh.data());
            return G->rms_norm_matmul_rope_append_kv(qkv->g, xn->g, h->g, *nw, eps, *w, c.H, c.Hkv, c.D, pos, 1e6f,
                                                     pairs, kc->g, vc->g);
          },
          [&] {
            auto q = download(G, qkv->g);
            q.resize(std::size_t(c.H * c.D));  // qkv's k and v parts are not written by the fused op
            for (const auto& part : {download(G, kc->g), download(G, vc->g), download(G, xn->g)})
              q.insert(q.end(), part.begin(), part.end());
            return q;
          });
    }
    G->free_weight(*w);
    G->free_weight(*nw);
  }
  for (std::int64_t F : {336, 1024}) {
    const std::int64_t K = F == 336 ? 1024 : 5120;
    Host w1 = make_weight(F, K, 1130 + F, "w1"), w3 = make_weight(F, K, 1140 + F, "w3");
    const WeightView* parts[2] = {&w1.view, &w3.view};
    auto w = G->upload_weight_stacked_quantized(parts, "w13", Format::int4_g128);
    std::vector<std::uint16_t> nb;
    auto nw = G->upload_weight(norm_weight(K, nb));
    ASSERT_TRUE(w.ok() && nw.ok()) << w.status().to_string();
    const std::string what = "silu F=" + std::to_string(F) + " K=" + std::to_string(K);
    const auto hv = cuda_test::random_values(rng, std::size_t(K));
    auto h = cuda_test::make_pair(cpu.get(), G, 1, K, hv.data(), DType::bf16);
    auto xn = cuda_test::make_pair(cpu.get(), G, 1, K, nullptr, DType::bf16);
    auto o = cuda_test::make_pair(cpu.get(), G, 1, F, nullptr, DType::bf16);
    auto gu = cuda_test::make_pair(cpu.get(), G, 1, 2 * F, nullptr, DType::bf16);
    both(
        what,
        [&] {
          cuda_test::reset_gpu(*xn, nullptr);
          return G->rms_norm_matmul_silu(o->g, gu->g, xn->g, h->g, *nw, eps, *w);
        },
        [&] {
          auto out = download(G, o->g);
          const auto x = download(G, xn->g);
          out.insert(out.end(), x.begin(), x.end());
          return out;
        });
    G->free_weight(*w);
    G->free_weight(*nw);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantCuda, ::testing::Values(Format::int8_channel, Format::int4_g128),
                         [](const auto& i) { return std::string(i.param == Format::int8_channel ? "int8" : "int4"); });

TEST(QuantCudaErrors, Int4RefusesKNotMultipleOf128NamingTheTensor) {
  PIXTRAL_REQUIRE_GPU();
  Host h = make_weight(16, 200, 1, "layers.7.attention.wo.weight");
  auto g = G->upload_weight_quantized(h.view, Format::int4_g128);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), ErrorCode::unsupported);
  EXPECT_NE(g.status().message().find("layers.7.attention.wo.weight"), std::string::npos);
}

}  // namespace
}  // namespace pixtral
