// SPDX-License-Identifier: Apache-2.0
// CUDA vs the CPU reference for quantized weights (label engine;gpu; every case skips with the loader's reason
// without a GPU): the GPU quantizer's bytes and scales equal the reference's, the batch-1 quantized GEMV
// (T ≤ 4, f32 and bf16 activations/outputs; int4 with bf16 activations on the tensor cores, one pass up to 8 rows),
// the short prefills with bf16 activations (kernels_qrows.cu: int8 5..64 rows, int4 9..64, whole or in K slices) and
// the dequantize-tile + cuBLAS path (more rows, or f32 activations) match the CPU's dequantize-on-the-fly matmul
// within NMSE budgets, stacked quantized uploads equal separate ones, row views work, and the kernels are
// deterministic (an int4 row of ≤ 8 has the bits of a one-row launch; a short prefill's row those of another T's);
// the residual modes (matmul_add) equal matmul + add bit for bit. The one-row GEMVs fed by the TMA:
// tst_quant_tma_cuda.cpp.
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
#include "quant_cuda_util.h"

namespace pixtral {
namespace {

using cuda_test::download;
using cuda_test::expect_close;
using quant::Format;
using quant_test::Host;
using quant_test::make_qkv;
using quant_test::make_weight;
using quant_test::QkvCase;
using quant_test::QkvHost;
using quant_test::ScopedEnv;
using quant_test::Shape;

// Raw device bytes of a quantized weight, read through a f32 tensor view (download of f32 is a plain copy).
std::vector<std::uint8_t> raw(ops::Backend* b, const void* p, std::size_t bytes) {
  EXPECT_EQ(bytes % 4, 0u);
  ops::Tensor t{const_cast<void*>(p), 1, std::int64_t(bytes / 4), DType::f32};
  const auto f = download(b, t);
  std::vector<std::uint8_t> out(bytes);
  std::memcpy(out.data(), f.data(), bytes);
  return out;
}

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
    for (std::int64_t T : {1, 2, 3, 4, 5, 9, 17, 34, 64, 65}) {
      for (DType gdt : {DType::f32, DType::bf16}) {
        const auto xv = cuda_test::random_values(rng, std::size_t(T * s.K));  // bf16-exact
        auto x = cuda_test::make_pair(cpu_.get(), G, T, s.K, xv.data(), gdt);
        auto o = cuda_test::make_pair(cpu_.get(), G, T, s.N, nullptr, gdt);
        ASSERT_TRUE(cpu_->matmul(o->c, x->c, *c).ok());
        const Status st = G->matmul(o->g, x->g, *g);
        ASSERT_TRUE(st.ok()) << st.message();
        // GEMV: the same dequantized values, another summation order (+ bf16 output rounding); T > 4: the short
        // prefills (bf16 x, ≤ 64 rows: exact products, fp32 sums) or W rounded to bf16 after dequantization, then
        // cuBLAS (f32 x, or 65 rows).
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
// T = 9 and 20 run the short prefill kernel: its rows independent of T (the first 9 rows equal a 9-row launch's).
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
      // 5..8: one prefill pass; 9 and 20: the short prefill kernel (kernels_qrows.cu).
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
          // Row t alone (T = 1; for the short prefill's T > 8, the first 9 rows as a 9-row launch): the same bits as
          // row t of the T-row launch.
          const std::int64_t alone = T <= 8 ? 1 : 9;
          auto o1 = cuda_test::make_pair(cpu.get(), G, alone, N, nullptr, odt);
          for (std::int64_t t = 0; t < T; t += alone) {
            const std::int64_t n = std::min(alone, T - t);
            if (n < alone) break;  // T = 20: rows 0..17
            ASSERT_TRUE(G->matmul(o1->g, x->g.slice_rows(t, alone), *g).ok());
            cuda_test::expect_same_bits(
                std::vector<float>(first.begin() + t * N, first.begin() + (t + alone) * N), download(G, o1->g),
                "x rows " + std::to_string(t) + ".. as a " + std::to_string(alone) + "-row launch, " + what);
          }
          // Rows 3.. of W as a view: every row sits 3 places earlier in its tile, the same bits (T ≤ 8; the short
          // prefill's blocks of 128 rows each start at their own group, so a row that changes block changes its
          // order of sums: within the budget there).
          if (N > 3) {
            const ops::Weight view = g->rows_view(3, N - 3, "w[3:]");
            auto ov = cuda_test::make_pair(cpu.get(), G, T, N - 3, nullptr, odt);
            ASSERT_TRUE(G->matmul(ov->g, x->g, view).ok());
            const auto got = download(G, ov->g);
            std::vector<float> want;
            for (std::int64_t t = 0; t < T; ++t)
              want.insert(want.end(), first.begin() + t * N + 3, first.begin() + (t + 1) * N);
            if (T <= 8)
              cuda_test::expect_same_bits(want, got, "row view w[3:], " + what);
            else
              expect_close(want, got, odt == DType::f32 ? 1e-8 : 2e-5, "row view w[3:], " + what);
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
  for (Format f : {Format::dense, Format::int8_channel, Format::int4_g128}) {
    for (const QkvCase c : {QkvCase{32, 8, 128, 1024}, QkvCase{8, 2, 64, 512}, QkvCase{4, 4, 8, 256}}) {
      const std::int64_t kd = c.kv_dim(), cols = c.cols(), cap = 200;
      const QkvHost hw = make_qkv(c, 500, 600, 700);
      auto w = G->upload_weight_stacked_quantized(hw.parts(), "wqkv", f);
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
// bf16, int8 and int4 weights, T = 1..4 (with bf16 h also 5, 8, 13 and 34: int4's prefill pass up to 8, then the
// short prefill kernel, whole or in K slices), bf16 and f32 h:
// bit-identical to the default (matmul into a tmp of h's dtype, then add) on the GPU; h starts random, so a product
// written over h instead of added to it fails.
TEST(QuantCudaResidual, MatmulAddEqualsMatmulThenAdd) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(13);
  for (Format f : {Format::dense, Format::int8_channel, Format::int4_g128}) {
    // {129, 4096}: int8 rows of ≤ 4096 bytes run two a warp (kernels_quant.cu q8_pairs), the last warp one.
    for (Shape s : {Shape{257, 5120}, Shape{64, 1024}, Shape{8, 256}, Shape{129, 4096}}) {
      Host hw = make_weight(s.N, s.K, 800 + s.N, "wo");
      auto w = f == Format::dense ? G->upload_weight(hw.view) : G->upload_weight_quantized(hw.view, f);
      ASSERT_TRUE(w.ok()) << w.status().to_string();
      for (std::int64_t T : {1, 2, 3, 4, 5, 8, 13, 34}) {
        for (DType dt : {DType::bf16, DType::f32}) {
          if (T > 4 && (f == Format::dense || dt != DType::bf16)) continue;  // cuBLAS with beta 1: one rounding
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

// The short prefill kernel (kernels_qrows.cu) in both formats: row counts that fill 1..8 MMA column tiles partly
// and wholly (5 and 9 the first of each format, 57 and 64 the most tiles), W row counts with a partial last block of
// 128 and below 16, K of one group to w2's 112; bf16 and f32 outputs, with and without bias. Its K slices (forced by
// PIXTRAL_CUDA_QROWS_SLICES: 1, 3 and 7, and the default; each block of a slice starting at its own group) each
// within the CPU reference's budget and bit-identical on a rerun (into a zeroed output: a value not stored fails).
// The GPU's form (the TMA's on sm_90+; run with PIXTRAL_CUDA_QROWS_TMA=require to make that an error where it is
// not) and the cp.async form (PIXTRAL_CUDA_QROWS_TMA=0, what sm_80 / 86 / 89 run) give the same bits: the same
// values into the same MMAs, only the copies and the shared-memory places differ.
TEST(QuantCudaRows, MatchCpuInEverySliceCountAndRerun) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(2);
  std::mt19937 rng(31);
  for (Format f : {Format::int8_channel, Format::int4_g128}) {
    for (Shape s : {Shape{5, 128}, Shape{16 * 20 + 5, 5120}, Shape{1000, 14336}}) {
      Host h = make_weight(s.N, s.K, 3000 + std::uint64_t(s.N), "w");
      std::vector<std::uint16_t> bias_bits(static_cast<std::size_t>(s.N));
      for (std::int64_t n = 0; n < s.N; ++n) bias_bits[std::size_t(n)] = f32_to_bf16(0.02f * float(n % 7) - 0.05f);
      WeightView bv{"b", bias_bits.data(), DType::bf16, {s.N}};
      auto c = cpu->upload_weight_quantized(h.view, f);
      auto g = G->upload_weight_quantized(h.view, f);
      auto cb = cpu->upload_weight(bv);
      auto gb = G->upload_weight(bv);
      ASSERT_TRUE(c.ok() && g.ok() && cb.ok() && gb.ok());
      for (std::int64_t T : {5, 9, 34, 57, 64}) {  // int4's 5: one pass of q4mma (its slices: not used)
        for (DType odt : {DType::bf16, DType::f32}) {
          const bool with_bias = (T + s.N) % 2 == 1;
          const auto xv = cuda_test::random_values(rng, std::size_t(T * s.K));
          auto x = cuda_test::make_pair(cpu.get(), G, T, s.K, xv.data(), DType::bf16);
          auto o = cuda_test::make_pair(cpu.get(), G, T, s.N, nullptr, odt);
          ASSERT_TRUE(cpu->matmul(o->c, x->c, *c, with_bias ? &*cb : nullptr).ok());
          const auto want = download(cpu.get(), o->c);
          for (const char* slices : {"", "1", "3", "7"}) {
            const std::string what = std::string(quant::format_name(f)) + " N=" + std::to_string(s.N) + " K=" +
                                     std::to_string(s.K) + " T=" + std::to_string(T) + " out " + dtype_name(odt) +
                                     (with_bias ? " +bias" : "") + " slices " + (*slices ? slices : "default");
            SCOPED_TRACE(what);
            ScopedEnv env("PIXTRAL_CUDA_QROWS_SLICES", *slices ? slices : "0");
            cuda_test::reset_gpu(*o, nullptr);
            Status st = G->matmul(o->g, x->g, *g, with_bias ? &*gb : nullptr);
            ASSERT_TRUE(st.ok()) << st.to_string();
            const auto first = download(G, o->g);
            expect_close(want, first, odt == DType::f32 ? 1e-8 : 2e-5, what);
            cuda_test::reset_gpu(*o, nullptr);
            ASSERT_TRUE(G->matmul(o->g, x->g, *g, with_bias ? &*gb : nullptr).ok());
            cuda_test::expect_same_bits(first, download(G, o->g), "rerun " + what);
            ScopedEnv form("PIXTRAL_CUDA_QROWS_TMA", "0");
            cuda_test::reset_gpu(*o, nullptr);
            ASSERT_TRUE(G->matmul(o->g, x->g, *g, with_bias ? &*gb : nullptr).ok());
            cuda_test::expect_same_bits(first, download(G, o->g), "cp.async form " + what);
          }
        }
      }
      cpu->free_weight(*c);
      G->free_weight(*g);
      G->free_weight(*gb);
    }
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
