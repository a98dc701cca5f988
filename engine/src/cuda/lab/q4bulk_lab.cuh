// SPDX-License-Identifier: Apache-2.0
// Kernel-lab section `q4bulk` (included by kernel_lab.cu after its helpers): the bulk-copy int4 GEMV
// (kernels_q4bulk.cu) against q4mma (kernels_q4mma.cu), which it must match bit for bit.
//   1. Validation: random bf16 W quantized with launch_quantize, random x and bias; odd N, K = 128 .. 16384,
//      T = 1..4, bias on/off, bf16 and f32 outputs, plain and silu modes, rope (halves and interleaved, k/v caches),
//      every ring configuration; prints per case equal / total elements, max |diff| and whether two q4bulk runs
//      gave the same bits; a summary line "q4bulk validation: PASS|FAIL".
//   2. Timing on the decoder shapes (T = 1, bf16 out, QKV plain, w1+w3 silu): 40 launches in one CUDA graph, weights
//      rotated over copies ≥ 4× L2, per launch and as % of copy bandwidth (bytes = packed values + scales).
// Usage: pixtral_cuda_lab 20 q4bulk
#pragma once

#include "cuda/kernels_q4bulk.cuh"

namespace q4bulk_lab_detail {

struct Compare {
  std::size_t equal = 0, total = 0;
  double max_abs = 0;
};

// Element-wise comparison of two device arrays of `n` values of type `t` (bf16 or f32).
inline Compare compare_dev(const void* a_dev, const void* b_dev, std::size_t n, DType t, cudaStream_t s) {
  const std::size_t es = t == DType::f32 ? 4 : 2;
  std::vector<unsigned char> a(n * es), b(n * es);
  LAB_CHECK(cudaMemcpyAsync(a.data(), a_dev, n * es, cudaMemcpyDeviceToHost, s));
  LAB_CHECK(cudaMemcpyAsync(b.data(), b_dev, n * es, cudaMemcpyDeviceToHost, s));
  LAB_CHECK(cudaStreamSynchronize(s));
  Compare c;
  c.total = n;
  for (std::size_t i = 0; i < n; ++i) {
    double fa, fb;
    if (es == 4) {
      float x, y;
      std::memcpy(&x, &a[4 * i], 4);
      std::memcpy(&y, &b[4 * i], 4);
      fa = x, fb = y;
    } else {
      std::uint16_t x, y;
      std::memcpy(&x, &a[2 * i], 2);
      std::memcpy(&y, &b[2 * i], 2);
      fa = bf16_to_f32(x), fb = bf16_to_f32(y);
    }
    if (std::memcmp(&a[es * i], &b[es * i], es) == 0) ++c.equal;
    const double d = std::fabs(fa - fb);
    c.max_abs = std::max(c.max_abs, std::isfinite(d) ? d : 1e30);
  }
  return c;
}

// A quantized [rows, K] int4 weight from random bf16 values (one allocation: values, then scales).
struct QWeight {
  std::uint8_t* q = nullptr;
  const float* scales = nullptr;
  std::size_t bytes = 0;
};
inline QWeight make_qweight(int rows, int K, unsigned seed, cudaStream_t s) {
  const quant::Format f = quant::Format::int4_g128;
  QWeight w;
  w.bytes = quantized_alloc_bytes(f, rows, K);
  bf16* W;
  LAB_CHECK(cudaMalloc(&W, std::size_t(rows) * K * 2));
  fill_random<<<1024, 256, 0, s>>>(W, std::size_t(rows) * K, seed, 1.f / 64);
  LAB_CHECK(cudaMalloc(&w.q, w.bytes));
  auto* sc = reinterpret_cast<float*>(w.q + quantized_values_bytes(f, rows, K));
  LAB_STATUS(launch_quantize(w.q, sc, W, rows, K, f, s));
  w.scales = sc;
  LAB_CHECK(cudaStreamSynchronize(s));
  LAB_CHECK(cudaFree(W));
  return w;
}

}  // namespace q4bulk_lab_detail

inline void q4bulk_lab(int reps, double copy_bw, cudaStream_t s, int l2_bytes) {
  using namespace q4bulk_lab_detail;
  std::printf("\nq4bulk: int4 GEMV with W by bulk async copies vs q4mma (bit-equality, then graph timing)\n");
  bool all_ok = true;
  int n_cases = 0, n_skipped = 0;
  // ---- 1. validation: plain and silu ----
  struct Case { int N, K; };
  const Case cases[] = {{37, 128}, {129, 384}, {301, 1152}, {515, 5120}, {77, 13696}, {1001, 14336}, {48, 16384},
                        {6144, 5120}};
  for (const auto& cs : cases)
    for (GemvMode mode : {GemvMode::plain, GemvMode::silu}) {
      const int rows = mode == GemvMode::silu ? 2 * cs.N : cs.N;
      QWeight w = make_qweight(rows, cs.K, 100 + cs.N + cs.K, s);
      bf16 *x, *bias;
      LAB_CHECK(cudaMalloc(&x, std::size_t(4) * cs.K * 2));
      LAB_CHECK(cudaMalloc(&bias, std::size_t(cs.N) * 2));
      fill_random<<<64, 256, 0, s>>>(x, std::size_t(4) * cs.K, 7 + cs.K, 1.f);
      fill_random<<<64, 256, 0, s>>>(bias, cs.N, 9 + cs.N, 1.f / 4);
      void *ref, *got, *again;
      const std::size_t out_bytes = std::size_t(4) * cs.N * 4;
      LAB_CHECK(cudaMalloc(&ref, out_bytes));
      LAB_CHECK(cudaMalloc(&got, out_bytes));
      LAB_CHECK(cudaMalloc(&again, out_bytes));
      for (DType ot : {DType::bf16, DType::f32})
        for (int T = 1; T <= 4; ++T)
          for (int with_bias = 0; with_bias < (mode == GemvMode::plain ? 2 : 1); ++with_bias)
            for (int cfg = 0; cfg < (ot == DType::bf16 ? kQ4BulkConfigs : 1); ++cfg) {
              const bf16* b = with_bias ? bias : nullptr;
              const RopeAppendArgs ra{};
              LAB_CHECK(cudaMemsetAsync(ref, 0xff, out_bytes, s));  // NaN bits: an unwritten element shows
              LAB_CHECK(cudaMemsetAsync(got, 0x7f, out_bytes, s));
              LAB_CHECK(cudaMemsetAsync(again, 0x3c, out_bytes, s));
              bool l_ref = false, l_got = false, l_again = false;
              LAB_STATUS(launch_q4mma(ref, ot, x, w.q, w.scales, b, T, cs.N, cs.N, cs.K, mode, ra, s, &l_ref));
              LAB_STATUS(launch_q4bulk_config(cfg, got, ot, x, w.q, w.scales, b, T, cs.N, cs.N, cs.K, mode, ra, s,
                                              &l_got));
              LAB_STATUS(launch_q4bulk_config(cfg, again, ot, x, w.q, w.scales, b, T, cs.N, cs.N, cs.K, mode, ra, s,
                                              &l_again));
              LAB_CHECK(cudaStreamSynchronize(s));
              LAB_CHECK(cudaGetLastError());
              if (!l_ref || !l_got) {
                ++n_skipped;
                if (T == 1 && !with_bias && cfg == 0)
                  std::printf("  %-5s N=%5d K=%5d %s: not launched (q4mma %d, q4bulk %d)\n",
                              mode == GemvMode::plain ? "plain" : "silu", cs.N, cs.K, dtype_name(ot), int(l_ref),
                              int(l_got));
                continue;
              }
              ++n_cases;
              const std::size_t n = std::size_t(T) * cs.N;
              const Compare c = compare_dev(ref, got, n, ot, s);
              const Compare d = compare_dev(got, again, n, ot, s);
              const bool ok = c.equal == c.total && d.equal == d.total;
              all_ok = all_ok && ok;
              if (!ok || (T == 1 && !with_bias && cfg == 0))
                std::printf("  %-5s N=%5d K=%5d T=%d %s bias=%d cfg=%s: equal %zu/%zu, max|diff| %.3g, rerun %s%s\n",
                            mode == GemvMode::plain ? "plain" : "silu", cs.N, cs.K, T, dtype_name(ot), with_bias,
                            q4bulk_config_name(cfg, mode), c.equal, c.total, c.max_abs,
                            d.equal == d.total ? "same bits" : "DIFFERS", ok ? "" : "  <-- FAIL");
            }
      LAB_CHECK(cudaFree(ref));
      LAB_CHECK(cudaFree(got));
      LAB_CHECK(cudaFree(again));
      LAB_CHECK(cudaFree(x));
      LAB_CHECK(cudaFree(bias));
      LAB_CHECK(cudaFree(w.q));
    }
  // ---- rope: q part of qkv, k and v cache rows ----
  for (int halves = 0; halves < 2; ++halves)
    for (DType ot : {DType::bf16, DType::f32}) {
      const int nh = 4, nkv = 2, hd = 128, K = 5120, cap = 8, N = (nh + 2 * nkv) * hd;
      const std::size_t es = ot == DType::f32 ? 4 : 2, kvd = std::size_t(nkv) * hd;
      QWeight w = make_qweight(N, K, 300 + halves, s);
      bf16* x;
      LAB_CHECK(cudaMalloc(&x, std::size_t(K) * 2));
      fill_random<<<64, 256, 0, s>>>(x, K, 11, 1.f);
      std::vector<float> freq_h(hd / 2);
      for (int m = 0; m < hd / 2; ++m) freq_h[m] = float(std::pow(1e6, -2.0 * m / hd));
      float* freq;
      int* pos;
      const int pos_h = 5;
      LAB_CHECK(cudaMalloc(&freq, freq_h.size() * 4));
      LAB_CHECK(cudaMalloc(&pos, sizeof(int)));
      LAB_CHECK(cudaMemcpy(freq, freq_h.data(), freq_h.size() * 4, cudaMemcpyHostToDevice));
      LAB_CHECK(cudaMemcpy(pos, &pos_h, sizeof(int), cudaMemcpyHostToDevice));
      void* buf[2][3];  // [ref, got][qkv, k cache, v cache]
      for (auto& bb : buf) {
        LAB_CHECK(cudaMalloc(&bb[0], N * es));
        LAB_CHECK(cudaMalloc(&bb[1], cap * kvd * es));
        LAB_CHECK(cudaMalloc(&bb[2], cap * kvd * es));
        for (int i = 0; i < 3; ++i) LAB_CHECK(cudaMemsetAsync(bb[i], 0, i ? cap * kvd * es : N * es, s));
      }
      bool launched_all = true, ok = true;
      for (int cfg = 0; cfg < (ot == DType::bf16 ? kQ4BulkConfigs : 1); ++cfg) {
        RopeAppendArgs ra[2];
        for (int v = 0; v < 2; ++v) {
          ra[v].k_cache = buf[v][1];
          ra[v].v_cache = buf[v][2];
          ra[v].pos = pos;
          ra[v].freq = freq;
          ra[v].nh = nh;
          ra[v].nkv = nkv;
          ra[v].hd = hd;
          ra[v].halves = halves != 0;
        }
        const int items = gemv_items(GemvMode::rope, N, ra[0]);
        bool l0 = false, l1 = false;
        LAB_STATUS(launch_q4mma(buf[0][0], ot, x, w.q, w.scales, nullptr, 1, N, items, K, GemvMode::rope, ra[0], s,
                                &l0));
        LAB_STATUS(launch_q4bulk_config(cfg, buf[1][0], ot, x, w.q, w.scales, nullptr, 1, N, items, K,
                                        GemvMode::rope, ra[1], s, &l1));
        LAB_CHECK(cudaStreamSynchronize(s));
        LAB_CHECK(cudaGetLastError());
        if (!l0 || !l1) {
          launched_all = false;
          continue;
        }
        ++n_cases;
        const Compare cq = compare_dev(buf[0][0], buf[1][0], std::size_t(nh) * hd, ot, s);
        const Compare ck = compare_dev(buf[0][1], buf[1][1], cap * kvd, ot, s);
        const Compare cv = compare_dev(buf[0][2], buf[1][2], cap * kvd, ot, s);
        const bool c_ok = cq.equal == cq.total && ck.equal == ck.total && cv.equal == cv.total;
        ok = ok && c_ok;
        std::printf("  rope  halves=%d %s cfg=%s: q %zu/%zu, k cache %zu/%zu, v cache %zu/%zu equal, max|diff| "
                    "%.3g%s\n",
                    halves, dtype_name(ot), q4bulk_config_name(cfg, GemvMode::rope), cq.equal, cq.total, ck.equal,
                    ck.total, cv.equal, cv.total, std::max({cq.max_abs, ck.max_abs, cv.max_abs}),
                    c_ok ? "" : "  <-- FAIL");
      }
      if (!launched_all) {
        ++n_skipped;
        std::printf("  rope  halves=%d %s: not launched\n", halves, dtype_name(ot));
      }
      all_ok = all_ok && ok;
      for (auto& bb : buf)
        for (void* p : bb) LAB_CHECK(cudaFree(p));
      LAB_CHECK(cudaFree(freq));
      LAB_CHECK(cudaFree(pos));
      LAB_CHECK(cudaFree(x));
      LAB_CHECK(cudaFree(w.q));
    }
  std::printf("q4bulk validation: %s (%d cases compared, %d not launched)\n", all_ok && n_cases > 0 ? "PASS" : "FAIL",
              n_cases, n_skipped);

  // ---- 2. timing ----
  struct Shape { const char* name; int K, N; GemvMode mode; };
  const Shape shapes[] = {
      {"wq+wk+wv", 5120, 6144, GemvMode::plain}, {"wo", 4096, 5120, GemvMode::plain},
      {"w1+w3", 5120, 14336, GemvMode::silu},    {"w2", 14336, 5120, GemvMode::plain},
      {"lm_head", 5120, 131072, GemvMode::plain},
  };
  std::printf("%-10s %5s %8s %12s %7s", "shape", "mode", "MB", "q4mma us", "%copy");
  for (int cfg = 0; cfg < kQ4BulkConfigs; ++cfg) std::printf("   bulk cfg%d us %7s", cfg, "%copy");
  std::printf("\n");
  for (const auto& sh : shapes) {
    const int rows = sh.mode == GemvMode::silu ? 2 * sh.N : sh.N;
    const std::size_t qbytes = quantized_alloc_bytes(quant::Format::int4_g128, rows, sh.K);
    const int copies = int(std::max<std::size_t>(2, (std::size_t(4) * l2_bytes + qbytes - 1) / qbytes));
    std::vector<QWeight> Q(copies);
    for (int i = 0; i < copies; ++i) Q[i] = make_qweight(rows, sh.K, 21 + i, s);
    bf16 *x, *y;
    LAB_CHECK(cudaMalloc(&x, std::size_t(sh.K) * 2));
    LAB_CHECK(cudaMalloc(&y, std::size_t(sh.N) * 2));
    fill_random<<<64, 256, 0, s>>>(x, sh.K, 3, 1.f);
    // kernel: -1 = q4mma, else the q4bulk configuration; returns -1 ms when not launched.
    auto time_graph = [&](int kernel) -> float {
      const RopeAppendArgs ra{};
      bool launched = false;
      if (kernel < 0)
        LAB_STATUS(launch_q4mma(y, DType::bf16, x, Q[0].q, Q[0].scales, nullptr, 1, sh.N, sh.N, sh.K, sh.mode, ra, s,
                                &launched));
      else
        LAB_STATUS(launch_q4bulk_config(kernel, y, DType::bf16, x, Q[0].q, Q[0].scales, nullptr, 1, sh.N, sh.N, sh.K,
                                        sh.mode, ra, s, &launched));
      LAB_CHECK(cudaStreamSynchronize(s));
      if (!launched) return -1.f;
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      LAB_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      for (int i = 0; i < 40; ++i) {
        const QWeight& w = Q[i % copies];
        if (kernel < 0)
          LAB_STATUS(launch_q4mma(y, DType::bf16, x, w.q, w.scales, nullptr, 1, sh.N, sh.N, sh.K, sh.mode, ra, s,
                                  &launched));
        else
          LAB_STATUS(launch_q4bulk_config(kernel, y, DType::bf16, x, w.q, w.scales, nullptr, 1, sh.N, sh.N, sh.K,
                                          sh.mode, ra, s, &launched));
      }
      LAB_CHECK(cudaStreamEndCapture(s, &graph));
      LAB_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      const float t = median_ms(s, std::max(3, reps), [&](int) { LAB_CHECK(cudaGraphLaunch(exec, s)); }) / 40;
      LAB_CHECK(cudaGraphExecDestroy(exec));
      LAB_CHECK(cudaGraphDestroy(graph));
      return t;
    };
    auto pct = [&](float ms) { return ms > 0 ? 100 * (qbytes / (ms * 1e-3)) / copy_bw : 0.0; };
    const float t_ref = time_graph(-1);
    std::printf("%-10s %5s %8.1f %12.1f %6.1f%%", sh.name, sh.mode == GemvMode::plain ? "plain" : "silu",
                qbytes / 1e6, t_ref * 1e3, pct(t_ref));
    for (int cfg = 0; cfg < kQ4BulkConfigs; ++cfg) {
      const float t = time_graph(cfg);
      if (t < 0)
        std::printf("   %12s %7s", "n/l", "");
      else
        std::printf("   %8.1f %-3s %6.1f%%", t * 1e3, q4bulk_config_name(cfg, sh.mode), pct(t));
    }
    std::printf("\n");
    for (auto& w : Q) LAB_CHECK(cudaFree(w.q));
    LAB_CHECK(cudaFree(x));
    LAB_CHECK(cudaFree(y));
  }
  LAB_CHECK(cudaGetLastError());
}
