// SPDX-License-Identifier: Apache-2.0
// Kernel lab (not a test): batch-1 GEMV (kernels_gemv.cu) vs cuBLAS on Pixtral-12B decoder shapes, and the
// attention kernels (tensor-core prefill, split-KV decode, vs the generic kernel) on the page-QA shapes, next to
// the card's measured copy bandwidth and bf16 GEMM rate. Validates first (NMSE vs a reference on the same random
// bf16 data, never zeros), then times: warm-up, CUDA events, median of `reps`, inputs rotated across copies
// totalling ≥ 4× L2 where the floor is bandwidth, so no run reads from cache.
// Usage: pixtral_cuda_lab [reps=50] [gemv|attention|quant]   (gemv and attention when no section is named;
//        quant: int8/int4 GEMV vs their byte floor, whole-matrix dequantization, prefill GEMM T=4096)
//        PIXTRAL_CUDA_PREFETCH=0 pixtral_cuda_lab ...     (same without the GEMV / decode-attention L2 prefetch)
//        PIXTRAL_CUDA_PDL=0 pixtral_cuda_lab ...          (GEMV without programmatic dependent launch)
//        (attention: the prefill shapes print flash-v1, v3's configurations flash-v3, -v3e, -v3m, flash-v4, -v4s
//        (wgmma; v3 where it cannot run) and flash-v5, -v5p, -v5n (TMA + warp specialization; v4 where it cannot
//        run), PIXTRAL_CUDA_FLASH forced, then the automatic choice "flash",
//        each timed and checked against the generic kernel)
// ref: llm.c dev/cuda/*.cu (validate-then-benchmark mains).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/kernels.cuh"
#include "cuda/kernels_quant.cuh"
#include "lab_common.h"

using namespace pixtral;
using namespace pixtral::cuda;

#define LAB_CUBLAS(expr)                                                                        \
  do {                                                                                          \
    cublasStatus_t s_ = (expr);                                                                 \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                          \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cublas_status_name(s_)); \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)

__global__ void fill_random(bf16* p, std::size_t n, unsigned seed, float scale) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n; i += std::size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ (seed * 0x9E3779B9u) ^ unsigned(i >> 32);
    h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15; h *= 0x846ca68bu; h ^= h >> 16;
    float u = (float(h & 0xffffff) / float(1 << 24)) * 2.f - 1.f;
    if (fabsf(u) < 1.f / 64) u = u < 0 ? -1.f / 64 : 1.f / 64;  // never zero
    p[i] = __float2bfloat16_rn(u * scale);
  }
}

double nmse_bf16(const bf16* a_dev, const bf16* b_dev, std::size_t n, cudaStream_t s) {
  std::vector<std::uint16_t> a(n), b(n);
  LAB_CHECK(cudaMemcpyAsync(a.data(), a_dev, n * 2, cudaMemcpyDeviceToHost, s));
  LAB_CHECK(cudaMemcpyAsync(b.data(), b_dev, n * 2, cudaMemcpyDeviceToHost, s));
  LAB_CHECK(cudaStreamSynchronize(s));
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double fa = bf16_to_f32(a[i]), fb = bf16_to_f32(b[i]);
    if (!std::isfinite(fa)) return 1e9;
    num += (fa - fb) * (fa - fb);
    den += fb * fb;
  }
  return den > 0 ? num / den : 1e9;
}

// ---- attention -------------------------------------------------------------------------------------------------
// One attention problem on device buffers: `copies` independent K/V caches (as the 40 layers have), q and out.
struct AttnProblem {
  const char* name;
  int n_q, n_kv, H, Hkv, D;
  bool causal;  // else one segment (all keys)
  int q_offset;
  int layers;   // how many such layers the model runs (totals)
};

void attention_lab(const AttnProblem& pb, int reps, double copy_bw, double gemm_rate, cudaStream_t s,
                   std::size_t l2, int max_smem, int n_sms) {
  const std::size_t qn = std::size_t(pb.n_q) * pb.H * pb.D, kvn = std::size_t(pb.n_kv) * pb.Hkv * pb.D;
  const std::size_t kv_bytes = 2 * kvn * 2;  // K and V, bf16
  const bool decode = pb.n_q <= kDecodeAttentionMaxRows;
  const int copies = decode ? int(std::min<std::size_t>(pb.layers, std::max<std::size_t>(2, (4 * l2 + kv_bytes - 1) /
                                                                                                   kv_bytes)))
                            : 1;
  bf16 *q, *o_fast, *o_ref;
  LAB_CHECK(cudaMalloc(&q, qn * 2));
  LAB_CHECK(cudaMalloc(&o_fast, qn * 2));
  LAB_CHECK(cudaMalloc(&o_ref, qn * 2));
  std::vector<bf16*> kv(copies);
  for (int i = 0; i < copies; ++i) {
    LAB_CHECK(cudaMalloc(&kv[i], 2 * kvn * 2));
    fill_random<<<1024, 256, 0, s>>>(kv[i], 2 * kvn, 100 + i, 1.f);
  }
  fill_random<<<1024, 256, 0, s>>>(q, qn, 7, 1.f);
  std::vector<int2> rng(pb.n_q);
  double pairs = 0;  // (query, key) pairs computed, for the FLOP count
  for (int i = 0; i < pb.n_q; ++i) {
    rng[i] = pb.causal ? int2{0, pb.q_offset + i + 1} : int2{0, pb.n_kv};
    pairs += rng[i].y - rng[i].x;
  }
  int2* rng_dev;
  LAB_CHECK(cudaMalloc(&rng_dev, pb.n_q * sizeof(int2)));
  LAB_CHECK(cudaMemcpy(rng_dev, rng.data(), pb.n_q * sizeof(int2), cudaMemcpyHostToDevice));
  AttentionLaunch a;
  a.q = q;
  a.n_q = pb.n_q;
  a.n_kv = pb.n_kv;
  a.n_heads = pb.H;
  a.n_kv_heads = pb.Hkv;
  a.head_dim = pb.D;
  a.scale = 1.f / std::sqrt(float(pb.D));
  a.key_range = rng_dev;
  a.key_lo_min = 0;
  a.key_hi_max = pb.causal ? pb.q_offset + pb.n_q : pb.n_kv;
  a.max_smem = max_smem;
  LAB_CHECK(cudaDeviceGetAttribute(&a.smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, 0));
  a.n_sms = n_sms;
  AttentionLaunch g = a;
  g.path = AttentionPath::generic;
  a.path = decode ? AttentionPath::decode : AttentionPath::flash;
  const std::int64_t ws = std::max(attention_workspace_floats(a), attention_workspace_floats(g));
  float* partial = nullptr;
  if (ws > 0) LAB_CHECK(cudaMalloc(&partial, ws * 4));
  a.partial = g.partial = partial;
  a.partial_floats = g.partial_floats = ws;
  auto run = [&](AttentionLaunch l, bf16* out, int i) {
    l.out = out;
    l.k = kv[i % copies];
    l.v = kv[i % copies] + kvn;
    LAB_STATUS(launch_attention(l, s));
  };
  run(g, o_ref, 0);
  const float t_gen = median_ms(s, decode ? reps : 3, [&](int i) { run(g, o_ref, i); });
  run(g, o_ref, 0);  // the timing loop left another cache's result there
  const double flops = 4.0 * pairs * pb.H * pb.D;
  const double bytes = double(kv_bytes) + 2.0 * qn * 2;
  const double floor_ms = std::max(flops / gemm_rate, bytes / copy_bw) * 1e3;
  // Prefill: each flash variant (PIXTRAL_CUDA_FLASH, read per launch; v3 falls back to v1, v4 to v3 and v5 to v4
  // where they cannot run; the configurations in kernels_flash3.cu / 4.cu / 5.cu), then the automatic choice, which
  // the decode graph below and the totals use.
  const char* variants[] = {"1", "3", "3e", "3m", "4", "4s", "5", "5p", "5n", nullptr};
  float t_fast = 0;
  for (const char* var : variants) {
    if (decode && var) continue;
    if (var) setenv("PIXTRAL_CUDA_FLASH", var, 1);
    run(a, o_fast, 0);
    const double err = nmse_bf16(o_fast, o_ref, qn, s);
    const float t = median_ms(s, reps, [&](int i) { run(a, o_fast, i); });
    unsetenv("PIXTRAL_CUDA_FLASH");
    const std::string kname = decode ? "decode" : var ? std::string("flash-v") + var : "flash";
    std::printf("%-30s %-9s %9.1f us %7.1f TFLOP/s %6.0f GB/s  floor %7.1f us  x%.2f | generic %9.1f us  x%.1f | "
                "NMSE %.1e%s\n",
                pb.name, kname.c_str(), t * 1e3, flops / (t * 1e-3) / 1e12, bytes / (t * 1e-3) / 1e9, floor_ms * 1e3,
                t / floor_ms, t_gen * 1e3, t_gen / t, err, err > 1e-4 ? "  <-- MISMATCH" : "");
    if (!var) t_fast = t;
  }
  std::printf("%-30s %d layers: %.2f ms (floor %.2f ms)\n", "", pb.layers, t_fast * pb.layers,
              floor_ms * pb.layers);
  if (decode) {  // all layers' attention in one CUDA graph: what the decode step will see (launch gaps included)
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    LAB_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < pb.layers; ++i) run(a, o_fast, i);
    LAB_CHECK(cudaStreamEndCapture(s, &graph));
    LAB_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    const float t_graph = median_ms(s, reps, [&](int) { LAB_CHECK(cudaGraphLaunch(exec, s)); });
    std::printf("%-30s %d layers in one graph (%d caches rotated): %.3f ms = %.1f us/layer, %.0f GB/s "
                "(%.0f%% of copy)\n",
                "", pb.layers, copies, t_graph, t_graph * 1e3 / pb.layers, bytes * pb.layers / (t_graph * 1e-3) / 1e9,
                100.0 * bytes * pb.layers / (t_graph * 1e-3) / copy_bw);
    LAB_CHECK(cudaGraphExecDestroy(exec));
    LAB_CHECK(cudaGraphDestroy(graph));
    // The same through the device decode state (what the replayed decode step uses: the grid sized by the cache
    // capacity, the live range read on the device; with PDL the first tiles are prefetched before the wait).
    int state[kDecodeStateInts] = {};
    state[kDecodeStatePosition] = pb.q_offset;
    state[kDecodeStateNKv] = pb.q_offset + pb.n_q;
    int* state_dev;
    LAB_CHECK(cudaMalloc(&state_dev, sizeof state));
    LAB_CHECK(cudaMemcpy(state_dev, state, sizeof state, cudaMemcpyHostToDevice));
    AttentionLaunch d = a;
    d.key_range = nullptr;
    d.dev_state = state_dev;
    d.key_lo_min = 0;
    d.key_hi_max = pb.n_kv;
    if (attention_workspace_floats(d) <= ws) {
      run(d, o_fast, 0);
      run(g, o_ref, 0);  // the timing loop left another cache's result there
      const double err_d = nmse_bf16(o_fast, o_ref, qn, s);
      LAB_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      for (int i = 0; i < pb.layers; ++i) run(d, o_fast, i);
      LAB_CHECK(cudaStreamEndCapture(s, &graph));
      LAB_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      const float t_dev = median_ms(s, reps, [&](int) { LAB_CHECK(cudaGraphLaunch(exec, s)); });
      std::printf("%-30s same, device decode state: %.3f ms = %.1f us/layer (%.0f%% of copy), NMSE %.1e%s\n", "",
                  t_dev, t_dev * 1e3 / pb.layers, 100.0 * bytes * pb.layers / (t_dev * 1e-3) / copy_bw, err_d,
                  err_d > 1e-4 ? "  <-- MISMATCH" : "");
      LAB_CHECK(cudaGraphExecDestroy(exec));
      LAB_CHECK(cudaGraphDestroy(graph));
    }
    LAB_CHECK(cudaFree(state_dev));
  }
  for (auto* p : kv) LAB_CHECK(cudaFree(p));
  LAB_CHECK(cudaFree(q));
  LAB_CHECK(cudaFree(o_fast));
  LAB_CHECK(cudaFree(o_ref));
  LAB_CHECK(cudaFree(rng_dev));
  if (partial) LAB_CHECK(cudaFree(partial));
  LAB_CHECK(cudaGetLastError());
}

// int8 / int4 (kernels_quant.cu): batch-1 GEMV against the bytes it must read (packed values + scales), the
// whole-matrix dequantization (bytes read + bf16 written), and the prefill path's cuBLAS GEMM on T = 4096 rows.
void quant_lab(int reps, double copy_bw, double gemm_rate, cudaStream_t s, cublasHandle_t h, int l2_bytes) {
  struct Shape { const char* name; int K, N; };
  const Shape shapes[] = {
      {"wq+wk+wv", 5120, 6144}, {"wo", 4096, 5120}, {"w1+w3", 5120, 2 * 14336}, {"w2", 14336, 5120},
      {"lm_head", 5120, 131072},
  };
  std::printf("\nquantized (floor = bytes / copy BW; dequant bytes = packed + scales read + bf16 written; GEMM "
              "T=4096 on the dequantized bf16 vs FLOPs / GEMM rate)\n");
  std::printf("%-10s %5s %8s %9s %7s %9s %7s %11s %7s %11s %7s\n", "shape", "fmt", "MB", "gemv us", "%copy",
              "graph us", "%copy", "dequant us", "%copy", "gemm us", "%rate");
  // PIXTRAL_LAB_SHAPE / PIXTRAL_LAB_FORMAT (int8|int4) restrict the table (one kernel under a profiler).
  const char* only_shape = std::getenv("PIXTRAL_LAB_SHAPE");
  const char* only_format = std::getenv("PIXTRAL_LAB_FORMAT");
  for (const auto& sh : shapes)
    for (quant::Format f : {quant::Format::int8_channel, quant::Format::int4_g128}) {
      if (only_shape && std::strcmp(only_shape, sh.name) != 0) continue;
      if (only_format && std::strcmp(only_format, f == quant::Format::int8_channel ? "int8" : "int4") != 0) continue;
      const std::size_t qbytes = quantized_alloc_bytes(f, sh.N, sh.K);
      const int copies = int(std::max<std::size_t>(2, (std::size_t(4) * l2_bytes + qbytes - 1) / qbytes));
      bf16* W;
      LAB_CHECK(cudaMalloc(&W, std::size_t(sh.K) * sh.N * 2));
      fill_random<<<1024, 256, 0, s>>>(W, std::size_t(sh.K) * sh.N, 21, 1.f / 64);
      std::vector<std::uint8_t*> Q(copies);
      for (int i = 0; i < copies; ++i) {
        LAB_CHECK(cudaMalloc(&Q[i], qbytes));
        LAB_STATUS(launch_quantize(Q[i], reinterpret_cast<float*>(Q[i] + quantized_values_bytes(f, sh.N, sh.K)), W,
                                   sh.N, sh.K, f, s));
      }
      auto scales = [&](int i) {
        return reinterpret_cast<const float*>(Q[i % copies] + quantized_values_bytes(f, sh.N, sh.K));
      };
      bf16 *x, *y, *X;
      LAB_CHECK(cudaMalloc(&x, sh.K * 2));
      LAB_CHECK(cudaMalloc(&y, std::size_t(sh.N) * 4096 * 2));
      LAB_CHECK(cudaMalloc(&X, std::size_t(sh.K) * 4096 * 2));
      fill_random<<<64, 256, 0, s>>>(x, sh.K, 3, 1.f);
      fill_random<<<1024, 256, 0, s>>>(X, std::size_t(sh.K) * 4096, 4, 1.f);
      const float t_gemv = median_ms(s, reps, [&](int i) {
        LAB_STATUS(launch_qgemv(y, DType::bf16, x, DType::bf16, Q[i % copies], scales(i), f, nullptr, 1, sh.N, sh.K,
                                s));
      });
      // 40 launches in one CUDA graph, per launch (as the decode step replays them: no launch gaps).
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      LAB_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      for (int i = 0; i < 40; ++i)
        LAB_STATUS(launch_qgemv(y, DType::bf16, x, DType::bf16, Q[i % copies], scales(i), f, nullptr, 1, sh.N, sh.K,
                                s));
      LAB_CHECK(cudaStreamEndCapture(s, &graph));
      LAB_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      const float t_graph =
          median_ms(s, std::max(3, reps / 5), [&](int) { LAB_CHECK(cudaGraphLaunch(exec, s)); }) / 40;
      LAB_CHECK(cudaGraphExecDestroy(exec));
      LAB_CHECK(cudaGraphDestroy(graph));
      const float t_deq = median_ms(s, std::max(3, reps / 5), [&](int i) {
        LAB_STATUS(launch_dequantize(W, Q[i % copies], scales(i), sh.N, sh.K, f, s));
      });
      const float alpha = 1.f, beta = 0.f;
      const float t_gemm = median_ms(s, std::max(3, reps / 5), [&](int) {
        LAB_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, sh.N, 4096, sh.K, &alpha, W, CUDA_R_16BF, sh.K, X,
                                CUDA_R_16BF, sh.K, &beta, y, CUDA_R_16BF, sh.N, CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
      });
      const double deq_bytes = double(qbytes) + double(sh.K) * sh.N * 2;
      std::printf("%-10s %5s %8.1f %9.1f %6.1f%% %9.1f %6.1f%% %11.1f %6.1f%% %11.1f %6.1f%%\n", sh.name,
                  f == quant::Format::int8_channel ? "int8" : "int4", qbytes / 1e6, t_gemv * 1e3,
                  100 * (qbytes / (t_gemv * 1e-3)) / copy_bw, t_graph * 1e3,
                  100 * (qbytes / (t_graph * 1e-3)) / copy_bw, t_deq * 1e3,
                  100 * (deq_bytes / (t_deq * 1e-3)) / copy_bw, t_gemm * 1e3,
                  100 * (2.0 * sh.N * sh.K * 4096 / (t_gemm * 1e-3)) / gemm_rate);
      for (auto* q : Q) LAB_CHECK(cudaFree(q));
      LAB_CHECK(cudaFree(W));
      LAB_CHECK(cudaFree(x));
      LAB_CHECK(cudaFree(y));
      LAB_CHECK(cudaFree(X));
    }
  LAB_CHECK(cudaGetLastError());
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(3, std::atoi(argv[1])) : 50;
  const char* section = argc > 2 ? argv[2] : "";
  const bool do_gemv = !*section || !std::strcmp(section, "gemv");
  const bool do_attn = !*section || !std::strcmp(section, "attention");
  const bool do_quant = !std::strcmp(section, "quant");
  double gemm_rate = 0;
  cudaDeviceProp prop{};
  LAB_CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t s;
  LAB_CHECK(cudaStreamCreate(&s));
  cublasHandle_t h;
  LAB_CUBLAS(cublasCreate(&h));
  LAB_CUBLAS(cublasSetStream(h, s));
  std::printf("device: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);

  // Ceiling 1: device-to-device copy of 2 GiB, bytes read + written.
  const std::size_t copy_bytes = std::size_t(2) << 30;
  void *c0, *c1;
  LAB_CHECK(cudaMalloc(&c0, copy_bytes));
  LAB_CHECK(cudaMalloc(&c1, copy_bytes));
  fill_random<<<1024, 256, 0, s>>>(static_cast<bf16*>(c0), copy_bytes / 2, 1, 1.f);
  const float copy_ms = median_ms(s, 10, [&](int) {
    LAB_CHECK(cudaMemcpyAsync(c1, c0, copy_bytes, cudaMemcpyDeviceToDevice, s));
  });
  const double copy_bw = 2.0 * copy_bytes / (copy_ms * 1e-3);
  std::printf("copy bandwidth: %.0f GB/s (read + write, 2 GiB, median of 10)\n", copy_bw / 1e9);
  LAB_CHECK(cudaFree(c1));

  // Ceiling 2: 8192^3 bf16 GEMM through cuBLAS on random data (reuses the copy buffer).
  {
    const int n = 8192;
    bf16* A = static_cast<bf16*>(c0);
    bf16* B = A + std::size_t(n) * n;
    bf16* C = B + std::size_t(n) * n;
    fill_random<<<1024, 256, 0, s>>>(A, std::size_t(3) * n * n, 2, 1.f);
    const float alpha = 1.f, beta = 0.f;
    const float ms = median_ms(s, 10, [&](int) {
      LAB_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, A, CUDA_R_16BF, n, B, CUDA_R_16BF, n,
                              &beta, C, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    });
    gemm_rate = 2.0 * n * n * double(n) / (ms * 1e-3);
    std::printf("bf16 GEMM 8192^3 (cuBLAS): %.0f TFLOP/s\n", gemm_rate / 1e12);
  }
  LAB_CHECK(cudaFree(c0));

  const char* pf_env = std::getenv("PIXTRAL_CUDA_PREFETCH");
  const bool prefetch_on = !(pf_env && pf_env[0] == '0');
  const char* pdl_env = std::getenv("PIXTRAL_CUDA_PDL");
  const bool pdl_on = !(pdl_env && pdl_env[0] == '0');
  if (do_attn) {
    int max_smem = 0;
    LAB_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    std::printf("\nattention (bf16; floor = max(FLOPs / GEMM rate, bytes / copy BW); xN = time / floor; decode L2 "
                "prefetch %s)\n", prefetch_on ? "on" : "off");
    const AttnProblem problems[] = {
        {"decoder prefill 4193 causal", 4193, 4193, 32, 8, 128, true, 0, 40},
        {"vision 4096 patches", 4096, 4096, 16, 16, 64, false, 0, 24},
        {"decoder follow-up 30 @4193", 30, 4223, 32, 8, 128, true, 4193, 40},
        {"decode 1 row @4193", 1, 4194, 32, 8, 128, true, 4193, 40},
        {"decode 1 row @16384", 1, 16384, 32, 8, 128, true, 16383, 40},
        {"decode 1 row @32768", 1, 32768, 32, 8, 128, true, 32767, 40},
        {"decode 4 rows @4193", 4, 4197, 32, 8, 128, true, 4193, 40},
    };
    for (const auto& pb : problems) attention_lab(pb, reps, copy_bw, gemm_rate, s, prop.l2CacheSize, max_smem,
                                                  prop.multiProcessorCount);
  }
  if (do_quant) quant_lab(reps, copy_bw, gemm_rate, s, h, prop.l2CacheSize);
  if (!do_gemv) {
    cublasDestroy(h);
    return 0;
  }
  struct Shape { const char* name; int K, N; };
  const Shape shapes[] = {
      {"wq+wk+wv (fused QKV)", 5120, 4096 + 2048}, {"wq", 5120, 4096},      {"wo", 4096, 5120},
      {"w1+w3 (fused gate+up)", 5120, 2 * 14336},  {"w2", 14336, 5120},     {"output (lm_head)", 5120, 131072},
  };
  std::printf("\nGEMV: single launches timed with events; 'graph' = 40 launches (copies rotated) in one CUDA graph, per "
              "launch, as the decode step replays them. L2 prefetch %s (PIXTRAL_CUDA_PREFETCH=0 turns it off), "
              "programmatic dependent launch %s (PIXTRAL_CUDA_PDL=0)\n",
              prefetch_on ? "on" : "off", pdl_on ? "on" : "off");
  std::printf("%-24s %8s %10s %8s %7s %10s %8s %7s %10s %7s %10s %7s\n", "GEMV T=1 bf16", "MB", "ours us", "GB/s",
              "%copy", "cuBLAS us", "GB/s", "%copy", "NMSE", "graph", "ours us", "%copy");
  for (const auto& sh : shapes) {
    const std::size_t wbytes = std::size_t(sh.K) * sh.N * 2;
    const int copies = int(std::max<std::size_t>(2, (std::size_t(4) * prop.l2CacheSize + wbytes - 1) / wbytes));
    std::vector<bf16*> W(copies);
    for (int i = 0; i < copies; ++i) {
      LAB_CHECK(cudaMalloc(&W[i], wbytes));
      fill_random<<<1024, 256, 0, s>>>(W[i], wbytes / 2, 10 + i, 1.f / 64);
    }
    bf16 *x, *y0, *y1;
    LAB_CHECK(cudaMalloc(&x, sh.K * 2));
    LAB_CHECK(cudaMalloc(&y0, sh.N * 2));
    LAB_CHECK(cudaMalloc(&y1, sh.N * 2));
    fill_random<<<64, 256, 0, s>>>(x, sh.K, 3, 1.f);
    const float alpha = 1.f, beta = 0.f;
    auto ours = [&](int i) {
      LAB_STATUS(launch_gemv(y0, DType::bf16, x, DType::bf16, W[i % copies], nullptr, 1, sh.N, sh.K, s));
    };
    auto ref = [&](int i) {
      LAB_CUBLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, sh.N, 1, sh.K, &alpha, W[i % copies], CUDA_R_16BF, sh.K,
                              x, CUDA_R_16BF, sh.K, &beta, y1, CUDA_R_16BF, sh.N, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
    };
    // validate on copy 0
    ours(0);
    ref(0);
    std::vector<std::uint16_t> a(sh.N), b(sh.N);
    LAB_CHECK(cudaMemcpyAsync(a.data(), y0, sh.N * 2, cudaMemcpyDeviceToHost, s));
    LAB_CHECK(cudaMemcpyAsync(b.data(), y1, sh.N * 2, cudaMemcpyDeviceToHost, s));
    LAB_CHECK(cudaStreamSynchronize(s));
    double num = 0, den = 0;
    for (int i = 0; i < sh.N; ++i) {
      const double fa = bf16_to_f32(a[i]), fb = bf16_to_f32(b[i]);
      num += (fa - fb) * (fa - fb);
      den += fb * fb;
    }
    const double nmse = den > 0 ? num / den : 1e9;
    const float t_ours = median_ms(s, reps, ours), t_ref = median_ms(s, reps, ref);
    const double bytes = double(wbytes) + sh.K * 2 + sh.N * 2;
    const double bw_o = bytes / (t_ours * 1e-3), bw_r = bytes / (t_ref * 1e-3);
    // 40 back-to-back launches in one graph (no event or launch overhead between them), copies rotated.
    constexpr int kGraphLaunches = 40;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    LAB_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < kGraphLaunches; ++i) ours(i);
    LAB_CHECK(cudaStreamEndCapture(s, &graph));
    LAB_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    const float t_graph = median_ms(s, std::max(3, reps / 5), [&](int) { LAB_CHECK(cudaGraphLaunch(exec, s)); }) /
                          kGraphLaunches;
    LAB_CHECK(cudaGraphExecDestroy(exec));
    LAB_CHECK(cudaGraphDestroy(graph));
    const double bw_g = bytes / (t_graph * 1e-3);
    std::printf("%-24s %8.1f %10.1f %8.0f %6.1f%% %10.1f %8.0f %6.1f%% %10.2e %7s %10.1f %6.1f%%%s\n", sh.name,
                bytes / 1e6, t_ours * 1e3, bw_o / 1e9, 100 * bw_o / copy_bw, t_ref * 1e3, bw_r / 1e9,
                100 * bw_r / copy_bw, nmse, "", t_graph * 1e3, 100 * bw_g / copy_bw,
                nmse > 1e-4 ? "  <-- MISMATCH" : "");
    for (auto* p : W) LAB_CHECK(cudaFree(p));
    LAB_CHECK(cudaFree(x));
    LAB_CHECK(cudaFree(y0));
    LAB_CHECK(cudaFree(y1));
  }
  LAB_CHECK(cudaGetLastError());
  cublasDestroy(h);
  return 0;
}
