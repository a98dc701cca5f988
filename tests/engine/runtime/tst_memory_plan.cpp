// SPDX-License-Identifier: Apache-2.0
// The memory planner (issue 6): its arithmetic on Pixtral-12B's full-size config against byte counts recomputed
// here from the config alone (not from the planner's tensor list), the issue's targets (int4 + 16k context in a
// 12 GiB card, int8 + 8k in 16 GiB), the automatic choice per card size, the longest context, and — on the CPU
// backend with a tiny model whose dims are multiples of 128 — that the planned bytes are at least what the
// backend actually allocates (weights in each precision, KV cache + scratch, vision activations).
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <random>

#include "io/checkpoint.h"
#include "model/forward.h"
#include "model/weights.h"
#include "pixtral/model.h"
#include "runtime/memory_plan.h"
#include "runtime/synthetic.h"
#include "tiny_model.h"

using namespace pixtral;

namespace {

constexpr std::uint64_t GiB = 1ull << 30;

// ---- independent counts from the config (Pixtral-12B layout, spec §1.4) ----------------------------------------

struct Mat {
  std::uint64_t rows, cols;
};

std::vector<Mat> decoder_linears(const ModelConfig& c) {
  const std::uint64_t d = c.dim, q = std::uint64_t(c.n_heads) * c.head_dim, kv = std::uint64_t(c.n_kv_heads) * c.head_dim,
                      h = c.hidden_dim;
  std::vector<Mat> out;
  for (int l = 0; l < c.n_layers; ++l)
    for (Mat m : {Mat{q, d}, Mat{kv, d}, Mat{kv, d}, Mat{d, q}, Mat{h, d}, Mat{d, h}, Mat{h, d}}) out.push_back(m);
  return out;
}

std::uint64_t int8_bytes(Mat m) { return (m.rows * m.cols + 255) / 256 * 256 + m.rows * 4; }  // CUDA pads to 256
std::uint64_t int4_bytes(Mat m) { return (m.rows * m.cols / 2 + 255) / 256 * 256 + m.rows * (m.cols / 128) * 4; }

std::uint64_t vision_params(const ModelConfig& c) {
  const VisionConfig& v = c.vision;
  const std::uint64_t h = v.hidden_size, i = v.intermediate_size;
  std::uint64_t n = h * v.num_channels * v.patch_size * v.patch_size + h;  // patch_conv, ln_pre
  n += std::uint64_t(v.num_hidden_layers) * (4 * h * h + 3 * h * i + 2 * h);
  n += std::uint64_t(c.dim) * h + std::uint64_t(c.dim) * c.dim + (v.adapter_bias ? 2ull * c.dim : 0);
  return n;
}

PlanTarget card(std::uint64_t bytes) {
  PlanTarget t;
  t.cuda = true;
  t.prefill_rows = 4096;
  t.free_bytes = bytes;
  t.context_reserve = true;
  return t;
}

TEST(MemoryPlan, FullSizeBytesMatchTheConfig) {
  const ModelConfig c = pixtral_12b_config();
  const auto tensors = plan_tensors(c);
  const std::uint64_t V = c.vocab_size, D = c.dim;
  for (Precision p : {Precision::bf16, Precision::int8, Precision::int4}) {
    SCOPED_TRACE(precision_name(p));
    const MemoryPlan m = plan_for(c, tensors, p, 16384, card(80 * GiB));
    std::uint64_t linear = 0;
    for (Mat x : decoder_linears(c))
      linear += p == Precision::bf16 ? 2 * x.rows * x.cols : p == Precision::int8 ? int8_bytes(x) : int4_bytes(x);
    EXPECT_EQ(m.linear_bytes, linear);
    // The head: bf16, or int8 for both int8 and int4 (pixtral::Precision).
    EXPECT_EQ(m.output_bytes, p == Precision::bf16 ? 2 * V * D : int8_bytes({V, D}));
    // The embedding table: on the device in bf16; int8/int4 keep it in pinned host memory (not in the device total).
    EXPECT_EQ(m.embedding_bytes, p == Precision::bf16 ? 2 * V * D : 0);
    EXPECT_EQ(m.host_bytes, p == Precision::bf16 ? 0 : 2 * V * D);
    EXPECT_EQ(m.vision_bytes, 2 * vision_params(c));
    EXPECT_EQ(m.norm_bytes, 2 * (2 * D * c.n_layers + D));
    // KV cache: every layer's K and V, n_kv_heads × head_dim per token, bf16 on CUDA.
    const std::uint64_t kv_tok = std::uint64_t(c.n_layers) * 2 * c.n_kv_heads * c.head_dim * 2;
    EXPECT_EQ(m.kv_bytes_per_token, kv_tok);
    EXPECT_EQ(m.kv_bytes, kv_tok * 16384);
    // Decoder scratch for a 4096-row chunk: h xn o (dim), q attn (q dim), gate up (hidden), + batch-1 qkv, gu, and
    // the f32 logits row.
    const std::uint64_t R = 4096, qd = std::uint64_t(c.n_heads) * c.head_dim,
                        kvd = std::uint64_t(c.n_kv_heads) * c.head_dim;
    EXPECT_EQ(m.scratch_bytes,
              2 * R * (3 * D + 2 * qd + 2 * std::uint64_t(c.hidden_dim)) + 2 * (qd + 2 * kvd + 2 * c.hidden_dim) + 4 * V);
    // Vision: 7 (n, hidden) + 2 (n, intermediate) + adapter and features (n, dim) for the largest image.
    const std::uint64_t n = std::uint64_t(c.vision.image_size / c.vision.patch_size) * (c.vision.image_size / c.vision.patch_size);
    EXPECT_EQ(m.vision_activation_bytes,
              2 * n * (7 * std::uint64_t(c.vision.hidden_size) + 2 * std::uint64_t(c.vision.intermediate_size) + 2 * D));
    EXPECT_EQ(m.weight_bytes, m.linear_bytes + m.output_bytes + m.embedding_bytes + m.vision_bytes + m.norm_bytes);
    EXPECT_EQ(m.total_bytes, m.weight_bytes + m.kv_bytes + m.scratch_bytes + m.vision_activation_bytes + m.reserve_bytes);
  }
  // bf16 weights of the 12B model: ≈ 24–25 GB (12.7 B parameters × 2 bytes).
  const MemoryPlan bf16 = plan_for(c, tensors, Precision::bf16, 16384, card(80 * GiB));
  EXPECT_GT(double(bf16.weight_bytes), 24e9);
  EXPECT_LT(double(bf16.weight_bytes), 26e9);
  // int8 linear layers are half of bf16, int4 a little over a quarter (scales).
  const MemoryPlan i8 = plan_for(c, tensors, Precision::int8, 16384, card(80 * GiB));
  const MemoryPlan i4 = plan_for(c, tensors, Precision::int4, 16384, card(80 * GiB));
  EXPECT_NEAR(double(i8.linear_bytes) / double(bf16.linear_bytes), 0.5, 0.001);
  EXPECT_NEAR(double(i4.linear_bytes) / double(bf16.linear_bytes), 0.25 + 4.0 / 128 / 2, 0.001);
}

TEST(MemoryPlan, IssueTargetsFit) {
  const ModelConfig c = pixtral_12b_config();
  const auto tensors = plan_tensors(c);
  const MemoryPlan int4_12 = plan_for(c, tensors, Precision::int4, 16384, card(12 * GiB));
  EXPECT_TRUE(int4_12.fits) << int4_12.summary();
  EXPECT_GE(int4_12.max_context, 16384);
  const MemoryPlan int8_16 = plan_for(c, tensors, Precision::int8, 8192, card(16 * GiB));
  EXPECT_TRUE(int8_16.fits) << int8_16.summary();
  EXPECT_GE(int8_16.max_context, 8192);
  // Also with "12 GB" and "16 GB" read as decimal gigabytes (12e9, 16e9 bytes).
  EXPECT_TRUE(plan_for(c, tensors, Precision::int4, 16384, card(12'000'000'000ull)).fits);
  EXPECT_TRUE(plan_for(c, tensors, Precision::int8, 8192, card(16'000'000'000ull)).fits);
  // bf16 does not fit a 24 GiB card at all; int8 with 32k does not fit 16 GiB (with 16k it does since the
  // embedding table moved to host memory: 15.5 GiB with the context reserve).
  const MemoryPlan bf16_24 = plan_for(c, tensors, Precision::bf16, 4096, card(24 * GiB));
  EXPECT_FALSE(bf16_24.fits);
  EXPECT_EQ(bf16_24.max_context, 0);
  EXPECT_FALSE(plan_for(c, tensors, Precision::int8, 32768, card(16 * GiB)).fits);
}

TEST(MemoryPlan, AutomaticChoicePerCard) {
  const ModelConfig c = pixtral_12b_config();
  const auto tensors = plan_tensors(c);
  struct Case {
    std::uint64_t bytes;
    Precision expect;
  } cases[] = {{80 * GiB, Precision::bf16}, {40 * GiB, Precision::bf16}, {24 * GiB, Precision::int8},
               {16 * GiB, Precision::int8}, {12 * GiB, Precision::int4}};
  for (const Case& k : cases) {
    auto p = choose_plan(c, tensors, Precision::automatic, 16384, card(k.bytes));
    ASSERT_TRUE(p.ok()) << k.bytes / GiB << " GiB: " << p.status().message();
    EXPECT_EQ(p->precision, k.expect) << k.bytes / GiB << " GiB: " << p->summary();
  }
  // 8 GiB: nothing fits; the message says what is needed against what is free and what to try.
  auto none = choose_plan(c, tensors, Precision::automatic, 16384, card(8 * GiB));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), ErrorCode::out_of_memory);
  EXPECT_NE(none.status().message().find("8.0 GiB free"), std::string::npos) << none.status().message();
  EXPECT_NE(none.status().message().find("int4"), std::string::npos) << none.status().message();
  EXPECT_NE(none.status().message().find("--device cpu"), std::string::npos) << none.status().message();
  // An explicit precision is planned as asked, even when it does not fit.
  auto asked = choose_plan(c, tensors, Precision::bf16, 16384, card(12 * GiB));
  ASSERT_TRUE(asked.ok());
  EXPECT_EQ(asked->precision, Precision::bf16);
  EXPECT_FALSE(asked->fits);
  // On the CPU, automatic is bf16.
  PlanTarget cpu;
  cpu.cuda = false;
  cpu.prefill_rows = 256;
  cpu.free_bytes = 8 * GiB;
  auto on_cpu = choose_plan(c, tensors, Precision::automatic, 16384, cpu);
  ASSERT_TRUE(on_cpu.ok());
  EXPECT_EQ(on_cpu->precision, Precision::bf16);
}

TEST(MemoryPlan, LongestContextIsTheEdge) {
  const ModelConfig c = pixtral_12b_config();
  const auto tensors = plan_tensors(c);
  int last = 0;
  for (std::uint64_t gib : {10, 12, 14, 16, 20}) {
    const MemoryPlan m = plan_for(c, tensors, Precision::int4, 4096, card(gib * GiB));
    ASSERT_GT(m.max_context, 0) << gib;
    ASSERT_LT(m.max_context, c.max_context) << gib;
    EXPECT_GT(m.max_context, last) << gib;  // more memory, longer context
    last = m.max_context;
    // The edge, at the plan's prefill chunk: the longest context fits, one more token does not.
    const std::uint64_t fixed = m.weight_bytes + m.reserve_bytes, free = gib * GiB;
    EXPECT_LE(fixed + session_bytes(c, DType::bf16, m.max_context, m.prefill_rows), free) << gib;
    EXPECT_GT(fixed + session_bytes(c, DType::bf16, m.max_context + 1, m.prefill_rows), free) << gib;
    PlanTarget t = card(free);
    t.prefill_rows = m.prefill_rows;
    EXPECT_TRUE(plan_for(c, tensors, Precision::int4, m.max_context, t).fits) << gib;
  }
  // Unknown free memory: everything fits up to the model's maximum.
  const MemoryPlan unknown = plan_for(c, tensors, Precision::bf16, 16384, card(0));
  EXPECT_TRUE(unknown.fits);
  EXPECT_EQ(unknown.max_context, c.max_context);
}

TEST(MemoryPlan, AutomaticSkipsInt4WhenDimsAreNot128Multiples) {
  ModelConfig c = pixtral_12b_config();
  c.dim = 5120 + 64;  // K = dim is not a multiple of 128 for wq/wk/wv/w1/w3
  const auto tensors = plan_tensors(c);
  const MemoryPlan i8 = plan_for(c, tensors, Precision::int8, 8192, card(80 * GiB));
  // A card where int8 at 8k does not fit but int4 would: automatic must not pick int4.
  auto p = choose_plan(c, tensors, Precision::automatic, 8192, card(i8.total_bytes - GiB));
  EXPECT_TRUE(plan_for(c, tensors, Precision::int8, 8192, card(i8.total_bytes - GiB)).fits == false);
  EXPECT_FALSE(p.ok());
}

// ---- the CPU backend: planned ≥ allocated -----------------------------------------------------------------------

/// Forwards every op to the CPU backend and counts what it allocates (activations live/peak; weights by the format
/// the backend actually stored them in — dense weights are views of the mmap, counted as stored).
class CountingBackend final : public ops::Backend {
 public:
  explicit CountingBackend(std::unique_ptr<ops::Backend> inner) : in_(std::move(inner)) {}
  std::uint64_t live = 0, peak = 0, weight_bytes = 0;

  std::string name() const override { return in_->name(); }
  std::string device_name() const override { return in_->device_name(); }
  DType activation_dtype() const override { return in_->activation_dtype(); }
  Result<ops::Tensor> alloc(std::int64_t r, std::int64_t c, DType d, std::string_view what) override {
    auto t = in_->alloc(r, c, d, what);
    if (t.ok()) peak = std::max(peak, live += t->bytes());
    return t;
  }
  void free(ops::Tensor& t) override {
    live -= t.bytes();
    in_->free(t);
  }
  Result<ops::Weight> upload_weight(const WeightView& w) override { return count(in_->upload_weight(w)); }
  void free_weight(ops::Weight& w) override { in_->free_weight(w); }
  Result<ops::Weight> upload_weight_stacked(std::span<const WeightView* const> p, const std::string& n) override {
    return count(in_->upload_weight_stacked(p, n));
  }
  Result<ops::Weight> upload_weight_quantized(const WeightView& w, ops::WeightFormat f) override {
    return count(in_->upload_weight_quantized(w, f));
  }
  Result<ops::Weight> upload_weight_stacked_quantized(std::span<const WeightView* const> p, const std::string& n,
                                                      ops::WeightFormat f) override {
    return count(in_->upload_weight_stacked_quantized(p, n, f));
  }
  Status upload(ops::Tensor dst, const float* h) override { return in_->upload(dst, h); }
  Status download(const ops::Tensor& s, float* h) override { return in_->download(s, h); }
  Status copy(ops::Tensor d, const ops::Tensor& s) override { return in_->copy(d, s); }
  Status synchronize() override { return in_->synchronize(); }
  Status embed(ops::Tensor o, const ops::Weight& t, std::span<const int> ids) override { return in_->embed(o, t, ids); }
  Status matmul(ops::Tensor o, const ops::Tensor& x, const ops::Weight& w, const ops::Weight* b) override {
    return in_->matmul(o, x, w, b);
  }
  Status rms_norm(ops::Tensor o, const ops::Tensor& x, const ops::Weight& w, float e) override {
    return in_->rms_norm(o, x, w, e);
  }
  Status add_rms_norm(ops::Tensor h, const ops::Tensor& d, ops::Tensor o, const ops::Weight& w, float e) override {
    return in_->add_rms_norm(h, d, o, w, e);
  }
  Status add(ops::Tensor h, const ops::Tensor& d) override { return in_->add(h, d); }
  Status rope(ops::Tensor x, int nh, int hd, std::span<const int> pos, float th, ops::RopePairs p) override {
    return in_->rope(x, nh, hd, pos, th, p);
  }
  Status rope_2d(ops::Tensor x, int nh, int hd, std::span<const int> r, std::span<const int> c, float th,
                 ops::RopePairs p) override {
    return in_->rope_2d(x, nh, hd, r, c, th, p);
  }
  Status attention(ops::Tensor o, const ops::Tensor& q, const ops::Tensor& k, const ops::Tensor& v,
                   const ops::AttentionParams& p) override {
    return in_->attention(o, q, k, v, p);
  }
  Status silu_mul(ops::Tensor o, const ops::Tensor& g, const ops::Tensor& u) override { return in_->silu_mul(o, g, u); }
  Status gelu(ops::Tensor x) override { return in_->gelu(x); }
  Status scatter_rows(ops::Tensor d, const ops::Tensor& s, std::span<const int> r) override {
    return in_->scatter_rows(d, s, r);
  }
  Status patch_embed(ops::Tensor o, const float* px, int c, int h, int w, int p, const ops::Weight& conv) override {
    return in_->patch_embed(o, px, c, h, w, p, conv);
  }

 private:
  Result<ops::Weight> count(Result<ops::Weight> w) {
    if (!w.ok()) return w;
    const ops::Weight& x = *w;
    weight_bytes += x.quantized() ? std::uint64_t(x.rows) * (x.row_bytes() +
                                                             quant::scales_per_row(x.format, x.cols) * sizeof(float))
                                  : std::uint64_t(x.rows) * x.row_bytes();
    return w;
  }
  std::unique_ptr<ops::Backend> in_;
};

tiny::TinyModelSpec spec128() {
  tiny::TinyModelSpec s;
  s.dim = 128, s.n_layers = 2, s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 32, s.hidden_dim = 256;
  s.bf16 = true;
  s.seed = 5;
  return s;
}

TEST(MemoryPlan, CpuPlanCoversWhatTheBackendAllocates) {
  const std::string dir = tiny::write_tiny_model(spec128());
  ASSERT_FALSE(dir.empty());
  auto ckpt = Checkpoint::open(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().message();
  const ModelConfig& cfg = ckpt->config();
  const int context = 1000, rows = 256;
  PlanTarget cpu;
  cpu.cuda = false;
  cpu.prefill_rows = rows;
  cpu.free_bytes = 64 * GiB;
  for (Precision p : {Precision::bf16, Precision::int8, Precision::int4}) {
    SCOPED_TRACE(precision_name(p));
    CountingBackend be(ops::make_cpu_backend(2));
    auto w = upload_weights(be, *ckpt, {}, weight_options(p));
    ASSERT_TRUE(w.ok()) << w.status().message();
    const MemoryPlan plan = plan_for(cfg, plan_tensors(*ckpt), p, context, cpu);
    EXPECT_GE(plan.weight_bytes, be.weight_bytes);
    EXPECT_GT(be.weight_bytes, 0u);
    // Decoder state: KV cache + scratch.
    {
      TensorSet owner(be);
      KvCache kv;
      DecoderScratch s;
      ASSERT_TRUE(alloc_decoder_state(be, cfg, context, rows, owner, kv, s).ok());
      EXPECT_GE(plan.kv_bytes + plan.scratch_bytes, be.live);
      EXPECT_GT(be.live, 0u);
    }
    EXPECT_EQ(be.live, 0u);
    // Vision encoder on one largest image: peak of its activations + the features it keeps.
    {
      const int side = cfg.vision.image_size;
      std::vector<float> px(std::size_t(3) * side * side);
      std::mt19937 rng(1);
      std::uniform_real_distribution<float> u(-1.f, 1.f);
      for (float& x : px) x = u(rng);
      VisionImage im{px.data(), side, side};
      TensorSet owner(be);
      std::vector<ops::Tensor> feats;
      be.peak = 0;
      ASSERT_TRUE(encode_images(be, cfg, w->vision, ckpt->rope_pairs(), {&im, 1}, owner, feats).ok());
      EXPECT_GE(plan.vision_activation_bytes, be.peak);
      EXPECT_GT(be.peak, 0u);
    }
    free_weights(be, *w);
  }
}

TEST(MemoryPlan, ModelLoadRecordsThePlanAndPlanMemoryAgrees) {
  const std::string dir = tiny::write_tiny_model(spec128());
  ASSERT_FALSE(dir.empty());
  LoadOptions lo;
  lo.device = Device::cpu;
  lo.threads = 2;
  lo.precision = Precision::automatic;  // the CPU: bf16
  auto m = Model::load(dir, lo);
  ASSERT_TRUE(m.ok()) << m.status().message();
  const ModelInfo& info = (*m)->info();
  EXPECT_EQ(info.precision, "bf16");
  EXPECT_EQ(info.plan.precision, Precision::bf16);
  EXPECT_EQ(info.plan.backend, "cpu");
  EXPECT_GT(info.plan.weight_bytes, 0u);
  EXPECT_EQ(info.plan.prefill_rows, 256);
  PlanOptions po;
  po.device = Device::cpu;
  po.precision = Precision::int4;
  po.context_length = 4096;
  auto p = plan_memory(dir, po);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->precision, Precision::int4);
  EXPECT_EQ(p->context, 4096);
  EXPECT_LT(p->linear_bytes, info.plan.linear_bytes / 3);  // int4 vs bf16
  EXPECT_FALSE(p->summary().empty());
}

TEST(MemoryPlan, SessionThatCannotFitIsRefusedBeforeAllocating) {
  // The full-size config on the CPU backend (f32 KV: 160 KiB a token): the model's longest context needs ~43 GB.
  const ModelConfig c = pixtral_12b_config();
  const std::uint64_t need = session_bytes(c, DType::f32, c.max_context, 256);
  const std::uint64_t avail = available_ram_bytes();
  if (avail == 0 || avail >= need) GTEST_SKIP() << "this machine has " << avail << " bytes available, enough for " << need;
  CountingBackend be(ops::make_cpu_backend(1));
  const Status st = check_session_fits(be, c, c.max_context, 256);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), ErrorCode::out_of_memory);
  EXPECT_NE(st.message().find(std::to_string(c.max_context) + " tokens"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("longest context that fits now is"), std::string::npos) << st.message();
  EXPECT_EQ(be.peak, 0u);  // nothing was allocated
  EXPECT_TRUE(check_session_fits(be, c, 1024, 256).ok());
}

}  // namespace
