// SPDX-License-Identifier: GPL-3.0-or-later
// CPU time estimate (see time_estimate.h).
#include "inference/time_estimate.h"

#include <QCoreApplication>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>
#include <vector>

namespace quire {

namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// One thread's multiply-add rate: C(n×n) += A(n×n)·B(n×n) repeated for ~budget seconds, i-k-j order so the inner
// loop vectorises. Returns FLOP/s.
double matmulRate(double budget) {
  constexpr int n = 96;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n, 0.0f);  // (n, n) each
  double flops = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  do {
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < n; ++k) {
        const float aik = a[i * n + k];
        float* ci = &c[i * n];
        const float* bk = &b[k * n];
        for (int j = 0; j < n; ++j) ci[j] += aik * bk[j];
      }
    flops += 2.0 * n * n * n;
    elapsed = seconds(t0, Clock::now());
  } while (elapsed < budget);
  volatile float sink = c[0];  // keep the work
  (void)sink;
  return flops / elapsed;
}

// One thread's streaming read rate over its own slice. Returns bytes/s.
double readRate(const std::vector<float>& buf, std::size_t begin, std::size_t end, double budget) {
  double bytes = 0;
  float acc = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  do {
    for (std::size_t i = begin; i < end; ++i) acc += buf[i];
    bytes += double(end - begin) * sizeof(float);
    elapsed = seconds(t0, Clock::now());
  } while (elapsed < budget);
  volatile float sink = acc;
  (void)sink;
  return bytes / elapsed;
}

}  // namespace

Throughput probeThroughput(int threads) {
  const int n = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  Throughput t;
  std::vector<double> rates(n);
  {
    std::vector<std::thread> pool;
    for (int i = 0; i < n; ++i) pool.emplace_back([&rates, i] { rates[i] = matmulRate(0.08); });
    for (auto& th : pool) th.join();
  }
  for (double r : rates) t.flopsPerSecond += r;
  const std::size_t floats = std::size_t(32) << 20 >> 2;  // 32 MiB, larger than any cache
  std::vector<float> buf(floats, 1.0f);
  {
    std::vector<std::thread> pool;
    const std::size_t slice = floats / n;
    for (int i = 0; i < n; ++i)
      pool.emplace_back([&, i] { rates[i] = readRate(buf, slice * i, slice * (i + 1), 0.08); });
    for (auto& th : pool) th.join();
  }
  for (int i = 0; i < n; ++i) t.bytesPerSecond += rates[i];
  return t;
}

QuestionCost questionCost(const pixtral::ModelInfo& m, int promptTokens, int imagePatches) {
  QuestionCost c;
  c.promptTokens = promptTokens;
  // Decoder, per row: wq, wo (dim × n_heads·head_dim), wk, wv (dim × n_kv_heads·head_dim), w1, w2, w3
  // (dim × hidden_dim); 2 FLOPs per multiply-add. Attention: QKᵀ and PV over on average half the prompt.
  const double qd = double(m.n_heads) * m.head_dim, kvd = double(m.n_kv_heads) * m.head_dim;
  const double perRow = 2.0 * m.n_layers * (2.0 * m.dim * qd + 2.0 * m.dim * kvd + 3.0 * m.dim * m.hidden_dim);
  const double attn = 2.0 * 2.0 * m.n_layers * qd * (promptTokens / 2.0);
  c.prefillFlops = double(promptTokens) * (perRow + attn) + 2.0 * m.dim * m.vocab_size;
  // Vision encoder, per patch: wq wk wv wo (vd²) and a gated MLP of 4·vd (Pixtral: 1024 → 4096), plus the
  // patch convolution and the 2-layer adapter into the decoder.
  const double vd = m.vision_dim;
  const double perPatch = 2.0 * m.vision_layers * (4.0 * vd * vd + 3.0 * vd * 4.0 * vd) +
                          2.0 * 3.0 * m.patch_size * m.patch_size * vd + 2.0 * (vd * m.dim + double(m.dim) * m.dim);
  const double vattn = 2.0 * 2.0 * m.vision_layers * vd * (imagePatches / 2.0);
  c.visionFlops = double(imagePatches) * (perPatch + vattn);
  c.decodeBytesPerToken = double(m.weight_bytes);
  return c;
}

QString formatAbout(double s) {
  if (s < 1.5) return QCoreApplication::translate("quire", "about 1 s");
  if (s < 90) return QCoreApplication::translate("quire", "about %1 s").arg(qRound(s));
  if (s < 90 * 60) return QCoreApplication::translate("quire", "about %1 min").arg(qRound(s / 60));
  return QCoreApplication::translate("quire", "about %1 h").arg(s / 3600, 0, 'f', 1);
}

TimeEstimate estimateTime(const QuestionCost& cost, const Throughput& rate, int answerTokens) {
  TimeEstimate e;
  if (rate.flopsPerSecond <= 0 || rate.bytesPerSecond <= 0) return e;
  e.valid = true;
  e.promptTokens = cost.promptTokens;
  e.secondsToFirstToken = (cost.visionFlops + cost.prefillFlops) / rate.flopsPerSecond;
  e.secondsPerToken = cost.decodeBytesPerToken / rate.bytesPerSecond;
  e.answerTokens = answerTokens;
  e.secondsTotal = e.secondsToFirstToken + answerTokens * e.secondsPerToken;
  e.text = formatAbout(e.secondsTotal);
  return e;
}

void calibrate(Throughput* rate, const QuestionCost& cost, const pixtral::Timings& t) {
  // Only prefills long enough to time well (≥ 50 ms) replace the probe; short ones are noise.
  const double computeMs = t.vision_ms + t.prefill_ms;
  const double flops = (t.vision_ms > 0 ? cost.visionFlops : 0.0) +
                       cost.prefillFlops * (1.0 - double(t.reused_tokens) / std::max(1, t.prompt_tokens));
  if (computeMs >= 50 && flops > 0) rate->flopsPerSecond = flops / (computeMs / 1000.0);
  if (t.generated_tokens >= 4 && t.decode_ms_per_token > 0)
    rate->bytesPerSecond = cost.decodeBytesPerToken / (t.decode_ms_per_token / 1000.0);
  rate->measured = true;
}

}  // namespace quire
