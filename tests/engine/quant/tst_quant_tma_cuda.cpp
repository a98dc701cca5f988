// SPDX-License-Identifier: Apache-2.0
// The one-row quantized GEMVs fed by the Tensor Memory Accelerator (kernels_q4tma.cu, kernels_q8tma.cu; label
// engine;gpu, every case skipping with the loader's reason without a GPU) against the kernels they stand in for, bit
// for bit, in every mode; the decode norm folded into the int4 one against the norm and then the op; the int4
// kernel's tiles handed out at run time against its static tiles; and the int8 GEMV with long rows split between
// warps (opt-in) against the CPU and itself; the int4 kernel's integer path (opt-in) against its bf16 path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/quant.h"
#include "cuda_test_util.h"
#include "ops/backend.h"
#include "quant_cuda_util.h"

namespace pixtral {
namespace {

using cuda_test::download;
using quant::Format;
using quant_test::Host;
using quant_test::make_qkv;
using quant_test::make_weight;
using quant_test::QkvCase;
using quant_test::QkvHost;
using quant_test::ScopedEnv;
using quant_test::Shape;

// The one-row quantized GEMVs streamed by the TMA (kernels_q4tma.cu, kernels_q8tma.cu: the decode's kernels on sm_90)
// against the kernels they stand in for, in every mode, bit for bit: int4 against q4mma (PIXTRAL_CUDA_Q4TMA=0), int8
// against the scalar kernel (PIXTRAL_CUDA_Q8TMA=0) — so everything those kernels' tests prove (parity with the CPU,
// fused = unfused, a row's bits independent of T and of its place) holds for them too. <switch>=require turns "the TMA
// kernel cannot run here" into an error, so the comparison is never a kernel against itself. bf16 activations (what the
// TMA GEMVs take; plain also writes f32). Shapes: partial last tiles (1000, 37, 1036, 336 rows), K from one stage
// (1024: 8 groups, one a warp) to w2's 14336, rope heads of 128 (Pixtral) and 32 dims (16 pairs: the smallest int4
// halves tile), both pair layouts.
TEST(QuantCudaTma, EveryModeEqualsTheOtherKernelBitForBit) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(31);
  // int4 twice: q4tma as it is (the silu mode keeps x's B registers and the groups' corrections from a block's
  // first tile for its later ones: kPreX) and without that (PIXTRAL_CUDA_Q4TMA_PREX=0).
  struct Case {
    Format f;
    const char* prex;
  };
  for (const Case cs : {Case{Format::int4_g128, "1"}, Case{Format::int4_g128, "0"}, Case{Format::int8_channel, "1"}}) {
    const Format f = cs.f;
    ScopedEnv prex("PIXTRAL_CUDA_Q4TMA_PREX", cs.prex);
    const char* sw_name = f == Format::int4_g128 ? "PIXTRAL_CUDA_Q4TMA" : "PIXTRAL_CUDA_Q8TMA";
    // q8tma's twin is the scalar kernel: w2's long rows would otherwise go to the split kernel (kernels_q8split.cu),
    // whose sums differ in the last bits (hidden by a bf16 output's rounding in most rows, not all).
    ScopedEnv scalar_rows("PIXTRAL_CUDA_Q8_SPLIT", "1");
    // run() under the TMA kernel (required), then under the other; read() after each; the two reads' bits compared.
    const auto both = [&](const std::string& what0, const auto& run, const auto& read) {
      const std::string what =
          std::string(quant::format_name(f)) + (cs.prex[0] == '0' ? " (PREX=0)" : "") + " " + what0;
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
    for (Shape sh : {Shape{1036, 14336}, Shape{5120, 4096}}) {
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
            [&] {  // twice, back to back: the second launch's bits (nothing a launch leaves behind may change them)
              for (int rep = 0; rep < 2; ++rep) {
                cuda_test::reset_gpu(*h, hv.data());
                const Status st = G->matmul_add(h->g, tmp->g, x->g, *w);
                if (!st.ok()) return st;
              }
              return Status{};
            },
            [&] { return download(G, h->g); });
      }
      G->free_weight(*w);
    }
    // F = 16384: 1024 tiles, several a block on any GPU of up to 511 SMs (the tiles after a block's first read the
    // x registers and corrections that its first kept: kPreX), and K = 2048: two stages a tile (two groups a warp).
    for (std::int64_t F : {336, 1024, 16384}) {
      const std::int64_t K = F == 16384 ? 2048 : 5120;
      Host w1 = make_weight(F, K, 960 + F, "w1"), w3 = make_weight(F, K, 970 + F, "w3");
      const WeightView* parts[2] = {&w1.view, &w3.view};
      auto w = G->upload_weight_stacked_quantized(parts, "w13", f);
      ASSERT_TRUE(w.ok()) << w.status().to_string();
      {
        const DType dt = DType::bf16;
        const std::string what = "silu F=" + std::to_string(F) + " K=" + std::to_string(K) + " " + dtype_name(dt);
        const auto xv = cuda_test::random_values(rng, std::size_t(K));
        auto x = cuda_test::make_pair(cpu.get(), G, 1, K, xv.data(), dt);
        auto o = cuda_test::make_pair(cpu.get(), G, 1, F, nullptr, dt);
        auto gu = cuda_test::make_pair(cpu.get(), G, 1, 2 * F, nullptr, dt);
        both(
            what, [&] { return G->matmul_silu(o->g, gu->g, x->g, *w); }, [&] { return download(G, o->g); });
      }
      G->free_weight(*w);
    }
    for (const QkvCase c : {QkvCase{32, 8, 128, 5120}, QkvCase{4, 2, 32, 1024}}) {
      const std::int64_t kd = c.kv_dim(), cols = c.cols(), cap = 64;
      const QkvHost hw = make_qkv(c, 980, 990, 995);
      auto w = G->upload_weight_stacked_quantized(hw.parts(), "wqkv", f);
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

// The folded-norm shapes, each step run and read through both(what, run, read): Pixtral's (K = 5120: 640 pieces of 8,
// 20 of the norm kernel's warps) and K = 1024 (4 warps), rope heads of 128 and 32, both pair layouts, and a silu
// GEMV of 1024 tiles at K = 2048 (several tiles a block: the folded kernel's kept x registers, kPreX, against x made
// in every tile). read() gives q, the cache rows and xn (rope), or the SiLU output and xn (silu).
template <class Both>
void folded_norm_cases(ops::Backend* G, ops::Backend* cpu, std::mt19937& rng, const Both& both) {
  const float eps = 1e-5f;
  const auto norm_weight = [&](std::int64_t K, std::vector<std::uint16_t>& bits) {
    bits.resize(std::size_t(K));
    std::normal_distribution<float> nd(1.f, 0.2f);
    for (auto& b : bits) b = f32_to_bf16(nd(rng));
    return WeightView{"norm", bits.data(), DType::bf16, {K}};
  };
  for (const QkvCase c : {QkvCase{32, 8, 128, 5120}, QkvCase{4, 2, 32, 1024}}) {
    const std::int64_t kd = c.kv_dim(), cols = c.cols(), cap = 64;
    const QkvHost hw = make_qkv(c, 1100, 1110, 1120);
    auto w = G->upload_weight_stacked_quantized(hw.parts(), "wqkv", Format::int4_g128);
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
      auto h = cuda_test::make_pair(cpu, G, 1, c.K, hv.data(), DType::bf16);
      auto xn = cuda_test::make_pair(cpu, G, 1, c.K, nullptr, DType::bf16);
      auto qkv = cuda_test::make_pair(cpu, G, 1, cols, nullptr, DType::bf16);
      auto kc = cuda_test::make_pair(cpu, G, cap, kd, kh.data(), DType::bf16);
      auto vc = cuda_test::make_pair(cpu, G, cap, kd, vh.data(), DType::bf16);
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
  for (std::int64_t F : {336, 1024, 16384}) {  // 16384: 1024 tiles, several a block (see the test above)
    const std::int64_t K = F == 336 ? 1024 : F == 1024 ? 5120 : 2048;
    Host w1 = make_weight(F, K, 1130 + F, "w1"), w3 = make_weight(F, K, 1140 + F, "w3");
    const WeightView* parts[2] = {&w1.view, &w3.view};
    auto w = G->upload_weight_stacked_quantized(parts, "w13", Format::int4_g128);
    std::vector<std::uint16_t> nb;
    auto nw = G->upload_weight(norm_weight(K, nb));
    ASSERT_TRUE(w.ok() && nw.ok()) << w.status().to_string();
    const std::string what = "silu F=" + std::to_string(F) + " K=" + std::to_string(K);
    const auto hv = cuda_test::random_values(rng, std::size_t(K));
    auto h = cuda_test::make_pair(cpu, G, 1, K, hv.data(), DType::bf16);
    auto xn = cuda_test::make_pair(cpu, G, 1, K, nullptr, DType::bf16);
    auto o = cuda_test::make_pair(cpu, G, 1, F, nullptr, DType::bf16);
    auto gu = cuda_test::make_pair(cpu, G, 1, 2 * F, nullptr, DType::bf16);
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

// The decode norm folded into the int4 GEMV after it (rms_norm_matmul_rope_append_kv, rms_norm_matmul_silu: every
// block of the TMA GEMV normalizes h itself) against the ops' defaults (the norm kernel, then the GEMV) on the GPU,
// bit for bit, on folded_norm_cases' shapes. PIXTRAL_CUDA_FOLD_NORM=require makes an unfolded call an error; =0
// gives the reference. Both on the bf16 path (PIXTRAL_CUDA_Q4TMA_IMMA=0).
TEST(QuantCudaTma, FoldedNormEqualsNormThenOpBitForBit) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(41);
  // run() folded (required), then unfolded; read() after each; the bits compared. The unfolded run also without
  // kPreX (PIXTRAL_CUDA_Q4TMA_PREX=0), so a silu shape of several tiles a block compares the folded kernel's kept
  // x registers with x made in every tile.
  const auto both = [&](const std::string& what, const auto& run, const auto& read) {
    std::vector<std::vector<float>> got;
    for (const char* sw : {"require", "0"}) {
      ScopedEnv env("PIXTRAL_CUDA_FOLD_NORM", sw);
      ScopedEnv prex("PIXTRAL_CUDA_Q4TMA_PREX", sw[0] == 'r' ? "1" : "0");
      ScopedEnv bf16_path("PIXTRAL_CUDA_Q4TMA_IMMA", "0");  // the folded silu's default integer path: the next test
      const Status st = run();
      ASSERT_TRUE(st.ok()) << what << " (PIXTRAL_CUDA_FOLD_NORM=" << sw << "): " << st.to_string();
      got.push_back(read());
    }
    cuda_test::expect_same_bits(got[1], got[0], what);
  };
  folded_norm_cases(G, cpu.get(), rng, both);
}

// PIXTRAL_CUDA_KV_L2_SIDE=1 (opt-in: before the folded QKV GEMV, a kernel on a second stream asks L2 for the
// layer's K and V rows): a hint, so every folded-norm shape gives the same bits with it as without it (this fails
// only if the second stream's kernel writes or faults), and synchronize(), which joins the second stream, reports no
// error. Eager launches only: tst_cuda_model with the switch set covers capture and replay.
TEST(QuantCudaTma, KvL2SidePrefetchChangesNoBits) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(41);
  const auto both = [&](const std::string& what, const auto& run, const auto& read) {
    std::vector<std::vector<float>> got;
    for (const char* sw : {"1", "0"}) {
      ScopedEnv side("PIXTRAL_CUDA_KV_L2_SIDE", sw);
      ScopedEnv fold("PIXTRAL_CUDA_FOLD_NORM", "require");
      const Status st = run();
      ASSERT_TRUE(st.ok()) << what << " (PIXTRAL_CUDA_KV_L2_SIDE=" << sw << "): " << st.to_string();
      got.push_back(read());
    }
    cuda_test::expect_same_bits(got[1], got[0], what + ", the side prefetch against none");
  };
  folded_norm_cases(G, cpu.get(), rng, both);
  const Status st = G->synchronize();
  EXPECT_TRUE(st.ok()) << st.to_string();
}

// The int4 GEMV's integer path (q4_imma.cuh; PIXTRAL_CUDA_Q4TMA_IMMA=1: both folded-norm launches; the silu one's by
// default) against the bf16 path (=0) on the same shapes: x (xn) bit for bit; every output within one bf16 step of
// itself plus one of the output's largest value (both round fp32 sums ~1e-6 apart to bf16, rope's first before its
// rotation: a flip there moves an output by a step of its pair's larger value), the whole output's NMSE below 1e-5 (a
// wrong digit, plane, exponent or correction is off by far more); at least one output different in each kind of
// launch, rope and silu (each took the integer path: its sums are not the bf16 path's bits); groups at the digits'
// exponent edges; and NaN in, NaN out.
TEST(QuantCudaTma, IntegerPathWithinRoundingOfTheBf16Path) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(1);
  std::mt19937 rng(43);
  ScopedEnv fold("PIXTRAL_CUDA_FOLD_NORM", "require");
  std::size_t differ_rope = 0, differ_silu = 0, total_rope = 0, total_silu = 0;  // each launch took the path
  const auto both = [&](const std::string& what, const auto& run, const auto& read) {
    std::vector<std::vector<float>> got;
    for (const char* sw : {"1", "0"}) {
      ScopedEnv env("PIXTRAL_CUDA_Q4TMA_IMMA", sw);
      const Status st = run();
      ASSERT_TRUE(st.ok()) << what << " (PIXTRAL_CUDA_Q4TMA_IMMA=" << sw << "): " << st.to_string();
      got.push_back(read());
    }
    const std::vector<float>&a = got[0], &b = got[1];
    ASSERT_EQ(a.size(), b.size()) << what;
    const auto step = [](double m) { return m > 0 ? std::ldexp(1.0, std::ilogb(m) - 7) : 0.0; };  // bf16's at m
    double top = 0;
    for (float v : b) top = std::max(top, double(std::fabs(v)));
    std::size_t bad = 0, first = 0, differ = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const double m = std::max(std::fabs(a[i]), std::fabs(b[i]));
      if (!(std::fabs(double(a[i]) - double(b[i])) <= step(m) + step(top)) && bad++ == 0) first = i;
      differ += a[i] != b[i];
    }
    const bool rope = what.rfind("rope", 0) == 0;
    (rope ? differ_rope : differ_silu) += differ;
    (rope ? total_rope : total_silu) += a.size();
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " outputs off, first at " << first << " (integer " << a[first]
                       << ", bf16 " << b[first] << ")";
    cuda_test::expect_close(b, a, 1e-5, what + " (NMSE against the bf16 path)");
  };
  folded_norm_cases(G, cpu.get(), rng, both);
  EXPECT_GT(differ_rope, 0u) << "no rope output of " << total_rope
                             << " differs from the bf16 path's: did the rope launch take the integer path?";
  EXPECT_GT(differ_silu, 0u) << "no silu output of " << total_silu
                             << " differs from the bf16 path's: did the silu launch take the integer path?";
  // Groups at the exponent's edges, by the norm weight: x up to ~3e7 (a group max ≥ 2^22: e < 0), ~1e-30 (e at its
  // clamp of 119), 0 (an all-zero group) and ~1e-39 (bf16 subnormals), the other groups as usual.
  {
    const std::int64_t F = 336, K = 1024;
    Host w1 = make_weight(F, K, 1170, "w1"), w3 = make_weight(F, K, 1180, "w3");
    const WeightView* parts[2] = {&w1.view, &w3.view};
    auto w = G->upload_weight_stacked_quantized(parts, "w13", Format::int4_g128);
    std::vector<std::uint16_t> nb(static_cast<std::size_t>(K));
    std::normal_distribution<float> nd(1.f, 0.2f);
    for (std::int64_t k = 0; k < K; ++k)
      nb[std::size_t(k)] = f32_to_bf16(k < 128 ? 1e7f : k < 256 ? 1e-30f : k < 384 ? 0.f : k < 512 ? 1e-39f : nd(rng));
    auto nw = G->upload_weight(WeightView{"norm", nb.data(), DType::bf16, {K}});
    ASSERT_TRUE(w.ok() && nw.ok()) << w.status().to_string();
    const auto hv = cuda_test::random_values(rng, std::size_t(K));
    auto h = cuda_test::make_pair(cpu.get(), G, 1, K, hv.data(), DType::bf16);
    auto xn = cuda_test::make_pair(cpu.get(), G, 1, K, nullptr, DType::bf16);
    auto o = cuda_test::make_pair(cpu.get(), G, 1, F, nullptr, DType::bf16);
    auto gu = cuda_test::make_pair(cpu.get(), G, 1, 2 * F, nullptr, DType::bf16);
    both(
        "silu F=336 K=1024, groups of ~3e7, ~1e-30, 0 and ~1e-39",
        [&] { return G->rms_norm_matmul_silu(o->g, gu->g, xn->g, h->g, *nw, 1e-5f, *w); },
        [&] { return download(G, o->g); });
    G->free_weight(*w);
    G->free_weight(*nw);
  }
  // A NaN in h: the norm makes every x NaN, and every output must be NaN as on the bf16 path (fmaxf alone would drop
  // the NaNs from a group's maximum, and the digits of a NaN are garbage: q4_imma.cuh flags the group).
  const std::int64_t F = 336, K = 1024;
  Host w1 = make_weight(F, K, 1150, "w1"), w3 = make_weight(F, K, 1160, "w3");
  const WeightView* parts[2] = {&w1.view, &w3.view};
  auto w = G->upload_weight_stacked_quantized(parts, "w13", Format::int4_g128);
  std::vector<std::uint16_t> nb(std::size_t(K), f32_to_bf16(1.f));
  auto nw = G->upload_weight(WeightView{"norm", nb.data(), DType::bf16, {K}});
  ASSERT_TRUE(w.ok() && nw.ok()) << w.status().to_string();
  auto hv = cuda_test::random_values(rng, std::size_t(K));
  hv[700] = std::nanf("");
  auto h = cuda_test::make_pair(cpu.get(), G, 1, K, hv.data(), DType::bf16);
  auto xn = cuda_test::make_pair(cpu.get(), G, 1, K, nullptr, DType::bf16);
  auto o = cuda_test::make_pair(cpu.get(), G, 1, F, nullptr, DType::bf16);
  auto gu = cuda_test::make_pair(cpu.get(), G, 1, 2 * F, nullptr, DType::bf16);
  ScopedEnv imma("PIXTRAL_CUDA_Q4TMA_IMMA", "1");
  const Status st = G->rms_norm_matmul_silu(o->g, gu->g, xn->g, h->g, *nw, 1e-5f, *w);
  ASSERT_TRUE(st.ok()) << st.to_string();
  std::size_t finite = 0;
  for (float v : download(G, o->g)) finite += !std::isnan(v);
  EXPECT_EQ(finite, 0u) << "outputs not NaN from an h with a NaN";
  // An infinity in one group's x (from the norm weight; h finite): on the bf16 path every [w1; w3] sum takes ±inf (or
  // NaN where the weight is 0), so every output is ±inf or NaN; the integer path, whose digits of an infinity are
  // garbage, flags the group and must give no finite output either.
  std::vector<std::uint16_t> nbi(std::size_t(K), f32_to_bf16(1.f));
  nbi[700] = 0x7f80;  // +inf
  auto nwi = G->upload_weight(WeightView{"norm", nbi.data(), DType::bf16, {K}});
  ASSERT_TRUE(nwi.ok()) << nwi.status().to_string();
  hv[700] = 0.5f;
  auto hf = cuda_test::make_pair(cpu.get(), G, 1, K, hv.data(), DType::bf16);
  for (const char* sw : {"1", "0"}) {
    ScopedEnv path("PIXTRAL_CUDA_Q4TMA_IMMA", sw);
    const Status sti = G->rms_norm_matmul_silu(o->g, gu->g, xn->g, hf->g, *nwi, 1e-5f, *w);
    ASSERT_TRUE(sti.ok()) << sti.to_string();
    std::size_t fin = 0;
    for (float v : download(G, o->g)) fin += std::isfinite(v);
    EXPECT_EQ(fin, 0u) << "finite outputs from an x with an infinity (PIXTRAL_CUDA_Q4TMA_IMMA=" << sw << ")";
  }
  G->free_weight(*nwi);
  G->free_weight(*w);
  G->free_weight(*nw);
}

// The int8 one-row GEMV with rows of K ≥ 8192 split between 2 or 4 warps (kernels_q8split.cu: w2's GEMV by default,
// PIXTRAL_CUDA_Q8_SPLIT read at every launch). A split row is summed in another association than the scalar kernel's,
// so: within the CPU reference's budget (the GEMV's budget of MatmulMatchesCpuReference), bit-identical on a rerun,
// matmul_add equal to matmul + add bit for bit (the residual mode splits as the plain one does), some f32 row
// different from the unsplit kernel's (the split provably ran), and two rows a warp ("2p", "4p") equal to one row a
// warp bit for bit (a row's arithmetic does not depend on its warp's other row). Every output is NaN-filled first,
// so a row the kernel skips fails. Shapes: w2's K with a partial last block and pair (37 rows), and K with pieces of
// 0, 1, 2 and 3 chunks a lane after the 4-chunk batches (8192, 10240 and 14336 at S = 2 and 4).
TEST(QuantCudaSplit, LongRowsSplitBetweenWarpsMatchCpuAndTheirOwnResidualMode) {
  PIXTRAL_REQUIRE_GPU();
  auto cpu = ops::make_cpu_backend(2);
  std::mt19937 rng(53);
  ScopedEnv scalar_twin("PIXTRAL_CUDA_Q8TMA", "0");  // q8tma would take both runs and hide the split
  for (Shape sh : {Shape{37, 14336}, Shape{200, 8192}, Shape{64, 10240}}) {
    Host hw = make_weight(sh.N, sh.K, 1300 + std::uint64_t(sh.N + sh.K), "w2");
    auto w = G->upload_weight_quantized(hw.view, Format::int8_channel);
    auto c = cpu->upload_weight_quantized(hw.view, Format::int8_channel);
    ASSERT_TRUE(w.ok() && c.ok());
    const auto xv = cuda_test::random_values(rng, std::size_t(sh.K));
    const auto hv = cuda_test::random_values(rng, std::size_t(sh.N));
    auto x = cuda_test::make_pair(cpu.get(), G, 1, sh.K, xv.data(), DType::bf16);
    auto o = cuda_test::make_pair(cpu.get(), G, 1, sh.N, nullptr, DType::f32);
    auto h = cuda_test::make_pair(cpu.get(), G, 1, sh.N, hv.data(), DType::bf16);
    auto tmp = cuda_test::make_pair(cpu.get(), G, 1, sh.N, nullptr, DType::bf16);
    ASSERT_TRUE(cpu->matmul(o->c, x->c, *c).ok());
    ASSERT_TRUE(cpu->matmul_add(h->c, tmp->c, x->c, *c).ok());
    const auto plain = [&] {
      cuda_test::reset_gpu(*o, nullptr);
      EXPECT_TRUE(G->matmul(o->g, x->g, *w).ok());
      return download(G, o->g);
    };
    const auto residual = [&](bool fused) {
      cuda_test::reset_gpu(*h, hv.data());
      cuda_test::reset_gpu(*tmp, nullptr);
      const Status st = fused ? G->matmul_add(h->g, tmp->g, x->g, *w)
                              : G->ops::Backend::matmul_add(h->g, tmp->g, x->g, *w);  // matmul, then add
      EXPECT_TRUE(st.ok()) << st.to_string();
      return download(G, h->g);
    };
    std::vector<float> unsplit;
    {
      ScopedEnv env("PIXTRAL_CUDA_Q8_SPLIT", "1");
      unsplit = plain();
    }
    std::vector<float> one_row[2];  // "2" and "4": what "2p" and "4p" must equal
    for (const char* S : {"2", "4", "2p", "4p"}) {
      const std::string what = std::string("split ") + S + " N=" + std::to_string(sh.N) + " K=" +
                               std::to_string(sh.K);
      SCOPED_TRACE(what);
      ScopedEnv env("PIXTRAL_CUDA_Q8_SPLIT", S);
      const auto a = plain(), b = plain();
      cuda_test::expect_same_bits(a, b, what + " rerun");
      cuda_test::expect_close(download(cpu.get(), o->c), a, 1e-8, what + " plain against the CPU");
      EXPECT_NE(0, std::memcmp(a.data(), unsplit.data(), a.size() * sizeof(float)))
          << what << ": every row has the unsplit kernel's bits — did the split path run?";
      std::vector<float>& same = one_row[S[0] == '2' ? 0 : 1];
      if (S[1] == 'p')
        cuda_test::expect_same_bits(same, a, what + " against one row a warp");
      else
        same = a;
      const auto fused = residual(true);
      cuda_test::expect_same_bits(residual(false), fused, what + " matmul_add against matmul + add");
      cuda_test::expect_close(download(cpu.get(), h->c), fused, 2e-5, what + " matmul_add against the CPU");
    }
    cpu->free_weight(*c);
    G->free_weight(*w);
  }
}
}  // namespace
}  // namespace pixtral
