// SPDX-License-Identifier: Apache-2.0
// q4stream lab (not a test; PERF_NOTES v17): can a differently built int4 decode GEMV stream the weights of a
// decoder layer closer to the copy rate than q4mma (kernels_q4mma.cu)?
//
// q4mma: every thread streams its own 16-byte pieces through a cp.async ring; a block = 16 rows × all of K; grids
// of 192–896 blocks, three an SM. v14 7.: each kernel ~6–11 µs over its bytes.
// q4s (q4stream_kernels.cuh): one persistent block an SM (or two), warp-specialized. A producer warp copies stages of
// 16 rows × 16 groups (16 KB of W + 1 KB of scales) with cp.async.bulk (one bulk copy a row and lane) into a ring
// of mbarrier-guarded stages, starting before the programmatic-dependent-launch wait (weights are immutable);
// eight consumer warps stage x and the groups' bias corrections in shared memory once per block, then multiply
// each stage on the tensor cores with q4mma's arithmetic (each warp two groups a stage) and meet a tile's sums in
// shared memory. Tiles are handed out statically (tile = block + j · grid) or from a device counter.
// With ~100 KB of shared memory a block, the next GEMV's block fits on the SM beside this one and fills its ring
// while this one drains: DRAM never waits for a kernel boundary.
//
// Measured: a chain of the decoder's four int4 GEMVs (QKV 6144×5120, wo 5120×4096, [w1; w3] 28672×5120,
// w2 5120×14336), 40 layers of distinct weights in one CUDA graph, each GEMV reading the previous one's output;
// µs a layer against the bytes a layer at the copy rate; then each shape alone (40 launches in a graph).
// Validated first: every shape's q4s output against q4mma's on the same x (max |diff| / max |ref|).
// "splitK" (PERF_NOTES v19 7.): "map3 8st g1 fix" with each tile of at least 8 stages (w2) run as two half-K units
// met through a counter a tile — what spreading w2's 320 tiles over twice as many units would give.
// Last, the persistent chain (q4chain_kernel.cuh, PERF_NOTES v18): the 160 GEMVs in one cooperative kernel, its
// final output compared bit for bit with the per-kernel chain's, then timed the same way. "launch_qgemv" is the
// engine's one-row GEMV: q4tma on sm_90 (three blocks an SM where the tiles fit; PIXTRAL_CUDA_Q4TMA_3=0 gives the
// chain's two, like for like), q4mma with PIXTRAL_CUDA_Q4TMA=0. Run it under `timeout`: nothing in the chain
// kernel gives up waiting.
// Usage: pixtral_q4stream_lab [reps=20]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <cuda.h>  // CUtensorMap (types only; the encoder comes through the runtime)

#include "cuda/kernels.cuh"
#include "cuda/kernels_quant.cuh"
#include "cuda/tma.cuh"
#include "lab_common.h"
#include "q4chain_kernel.cuh"
#include "q4stream_kernels.cuh"

using namespace pixtral;
using namespace pixtral::cuda;


namespace {

using namespace pixtral::cuda::q4stream_lab;

__global__ void fill_random(bf16* p, std::size_t n, unsigned seed, float scale) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x) {
    unsigned h = unsigned(i) * 2654435761u ^ (seed * 0x9E3779B9u) ^ unsigned(i >> 32);
    h ^= h >> 16; h *= 0x7feb352du; h ^= h >> 15; h *= 0x846ca68bu; h ^= h >> 16;
    float u = (float(h & 0xffffff) / float(1 << 24)) * 2.f - 1.f;
    p[i] = __float2bfloat16_rn(u * scale);
  }
}

struct Shape { const char* name; int N, K; };
constexpr Shape kShapes[4] = {{"wq+wk+wv", 6144, 5120}, {"wo", 5120, 4096}, {"w1+w3", 28672, 5120},
                              {"w2", 5120, 14336}};

struct Variant {
  const char* name; int stages; int per_sm; bool dynamic; int gpw; bool nomath; bool contig; bool cls = false;
  bool tmap = false; bool fix = false; bool map3 = false; int tgpw = 2; bool split = false;
};
using TKernelFn = void (*)(bf16*, const bf16*, int, int, int*, unsigned long long*, const CUtensorMap,
                           const CUtensorMap, int*, float*);
TKernelFn tkernel_of(const Variant& v) {
  if (v.map3 && v.tgpw == 1)
    return v.split ? q4t_kernel<8, false, true, true, 1, true> : q4t_kernel<8, false, true, true, 1>;
  if (v.map3) return v.nomath ? q4t_kernel<4, true, true, true> : q4t_kernel<4, false, true, true>;
  if (v.nomath) return q4t_kernel<4, true, true>;
  if (v.stages == 6) return v.fix ? q4t_kernel<6, false, true> : q4t_kernel<6, false, false>;
  return v.fix ? q4t_kernel<4, false, true> : q4t_kernel<4, false, false>;
}
using EncodeTiledFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
EncodeTiledFn encode_fn() {
  void* f = nullptr;
  cudaDriverEntryPointQueryResult q;
  LAB_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
  if (q != cudaDriverEntryPointSuccess) std::exit(1);
  return reinterpret_cast<EncodeTiledFn>(f);
}
// A 3-D map over a row-major int4 [rows, K / 2 bytes] matrix: (16 uint32 of a group, rows, groups), boxes of
// 16 × 16 rows × 16 groups (group-major in shared memory). false where the driver refuses it.
bool encode3(CUtensorMap* m, const void* base, int K, int rows, int box_groups = 16) {
  static const EncodeTiledFn fn = encode_fn();
  const cuuint64_t dims[3] = {16, cuuint64_t(rows), cuuint64_t(K / 128)};
  const cuuint64_t strides[2] = {cuuint64_t(K / 2), 64};
  const cuuint32_t box[3] = {16, 16, cuuint32_t(box_groups)};
  const cuuint32_t es[3] = {1, 1, 1};
  const CUresult r = fn(m, CU_TENSOR_MAP_DATA_TYPE_UINT32, 3, const_cast<void*>(base), dims, strides, box, es,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) std::fprintf(stderr, "cuTensorMapEncodeTiled (3-D): %d\n", int(r));
  return r == CUDA_SUCCESS;
}
// A 2-D map over a row-major [rows, cols] matrix of 4-byte elements, boxes of box_cols × 16 rows.
CUtensorMap encode(const void* base, int cols, int rows, int box_cols, CUtensorMapDataType dt) {
  static const EncodeTiledFn fn = encode_fn();
  CUtensorMap m;
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(cols) * 4};
  const cuuint32_t box[2] = {cuuint32_t(box_cols), 16};
  const cuuint32_t es[2] = {1, 1};
  const CUresult r = fn(&m, dt, 2, const_cast<void*>(base), dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                        CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "cuTensorMapEncodeTiled: %d\n", int(r));
    std::exit(1);
  }
  return m;
}
using KernelFn = void (*)(bf16*, const bf16*, const std::uint8_t*, const float*, int, int, int*,
                          unsigned long long*);
KernelFn kernel_of(const Variant& v) {
  if (v.contig) {
    if (v.nomath) return q4s_kernel<4, 2, true, true>;
    if (v.gpw == 4) return v.cls ? q4s_kernel<2, 4, false, true, true> : q4s_kernel<2, 4, false, true>;
    return v.cls ? q4s_kernel<4, 2, false, true, true> : q4s_kernel<4, 2, false, true>;
  }
  if (v.nomath) return v.gpw == 2 ? q4s_kernel<4, 2, true> : q4s_kernel<3, 4, true>;
  if (v.gpw == 4) return q4s_kernel<3, 4, false>;
  return v.stages == 3 ? q4s_kernel<3, 2, false> : v.stages == 4 ? q4s_kernel<4, 2, false> : q4s_kernel<6, 2, false>;
}

float bf16_to_f(std::uint16_t b) {
  std::uint32_t u = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(3, std::atoi(argv[1])) : 20;
  constexpr int kLayers = 40;
  cudaDeviceProp prop{};
  LAB_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  cudaStream_t s;
  LAB_CHECK(cudaStreamCreate(&s));
  std::printf("device: %s, %d SMs\n", prop.name, sms);

  const std::size_t copy_bytes = std::size_t(2) << 30;
  void *c0, *c1;
  LAB_CHECK(cudaMalloc(&c0, copy_bytes));
  LAB_CHECK(cudaMalloc(&c1, copy_bytes));
  const float copy_ms = median_ms(s, 10, [&] {
    LAB_CHECK(cudaMemcpyAsync(c1, c0, copy_bytes, cudaMemcpyDeviceToDevice, s));
  });
  const double copy_bw = 2.0 * copy_bytes / (copy_ms * 1e-3);
  LAB_CHECK(cudaFree(c0));
  LAB_CHECK(cudaFree(c1));
  std::printf("copy bandwidth: %.0f GB/s (read + write)\n", copy_bw / 1e9);

  // Weights: 40 layers × 4 int4 matrices from random bf16 (one source a shape, seeds differ by layer).
  const auto f = quant::Format::int4_g128;
  std::vector<std::uint8_t*> Q(kLayers * 4);
  double layer_bytes = 0;
  bf16* src;
  LAB_CHECK(cudaMalloc(&src, std::size_t(28672) * 5120 * 2));
  for (int k = 0; k < 4; ++k) {
    const Shape& sh = kShapes[k];
    layer_bytes += double(quantized_alloc_bytes(f, sh.N, sh.K));
    for (int l = 0; l < kLayers; ++l) {
      fill_random<<<1024, 256, 0, s>>>(src, std::size_t(sh.N) * sh.K, 100 * k + l, 2.f / std::sqrt(float(sh.K)));
      LAB_CHECK(cudaMalloc(&Q[l * 4 + k], quantized_alloc_bytes(f, sh.N, sh.K)));
      LAB_STATUS(launch_quantize(Q[l * 4 + k],
                                 reinterpret_cast<float*>(Q[l * 4 + k] + quantized_values_bytes(f, sh.N, sh.K)), src,
                                 sh.N, sh.K, f, s));
    }
  }
  LAB_CHECK(cudaFree(src));
  const auto scales_of = [&](int i, const Shape& sh) {
    return reinterpret_cast<const float*>(Q[i] + quantized_values_bytes(f, sh.N, sh.K));
  };
  bf16 *a, *b, *ref;
  LAB_CHECK(cudaMalloc(&a, 32768 * 2));
  LAB_CHECK(cudaMalloc(&b, 32768 * 2));
  LAB_CHECK(cudaMalloc(&ref, 32768 * 2));
  fill_random<<<64, 256, 0, s>>>(a, 32768, 3, 1.f);
  fill_random<<<64, 256, 0, s>>>(b, 32768, 4, 1.f);
  int* counters;
  LAB_CHECK(cudaMalloc(&counters, kLayers * 4 * sizeof(int)));
  LAB_CHECK(cudaMemsetAsync(counters, 0, kLayers * 4 * sizeof(int), s));
  // Split K: a counter and two 16-float halves a tile (≤ 1792 tiles a weight), each weight its own.
  constexpr int kMaxTiles = 28672 / 16;
  int* tile_cnt;
  float* part;
  LAB_CHECK(cudaMalloc(&tile_cnt, std::size_t(kLayers) * 4 * kMaxTiles * sizeof(int)));
  LAB_CHECK(cudaMemsetAsync(tile_cnt, 0, std::size_t(kLayers) * 4 * kMaxTiles * sizeof(int), s));
  LAB_CHECK(cudaMalloc(&part, std::size_t(kLayers) * 4 * kMaxTiles * 32 * sizeof(float)));

  const Variant variants[] = {{"q4s 3st 2/SM static", 3, 2, false, 2, false, false},
                              {"contig 4st 2/SM nomath", 4, 2, false, 2, true, true},
                              {"contig 4st 2/SM math", 4, 2, false, 2, false, true},
                              {"map3 8st g1 fix", 8, 2, false, 2, false, false, false, true, true, true, 1},
                              {"map3 8st g1 fix dyn", 8, 2, true, 2, false, false, false, true, true, true, 1},
                              {"map3 8st g1 fix splitK", 8, 2, false, 2, false, false, false, true, true, true, 1,
                               true},
                              {"map3 4st nomath", 4, 2, false, 2, true, false, false, true, true, true},
                              {"map3 4st fix", 4, 2, false, 2, false, false, false, true, true, true},
                              {"map3 4st fix dyn", 4, 2, true, 2, false, false, false, true, true, true}};
  for (const Variant& v : variants) {
    if (v.tmap) {
      LAB_CHECK(cudaFuncSetAttribute(tkernel_of(v), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     int(q4t_smem(v.stages, 14336, v.tgpw))));
      continue;
    }
    const std::size_t smem = q4s_smem(v.stages, v.gpw, 14336);
    LAB_CHECK(cudaFuncSetAttribute(kernel_of(v), cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  }
  std::vector<CUtensorMap> maps_w(Q.size()), maps_s(Q.size()), maps_w3(Q.size()), maps_w31(Q.size()),
      maps_s1(Q.size());
  bool have3 = true;
  for (std::size_t i = 0; i < Q.size(); ++i) {
    const Shape& sh = kShapes[i % 4];
    maps_w[i] = encode(Q[i], sh.K / 8, sh.N, 256, CU_TENSOR_MAP_DATA_TYPE_UINT32);
    have3 = have3 && encode3(&maps_w3[i], Q[i], sh.K, sh.N) && encode3(&maps_w31[i], Q[i], sh.K, sh.N, 8);
    maps_s1[i] = encode(scales_of(int(i), sh), sh.K / 128, sh.N, 8, CU_TENSOR_MAP_DATA_TYPE_FLOAT32);
    maps_s[i] = encode(scales_of(int(i), sh), sh.K / 128, sh.N, 16, CU_TENSOR_MAP_DATA_TYPE_FLOAT32);
  }
  // Probes: launches probe_at[0..1] (weight indices) of the next graph record their stamps.
  unsigned long long* probe_buf;
  LAB_CHECK(cudaMalloc(&probe_buf, 2 * 2 * sms * 8 * sizeof(unsigned long long)));
  int probe_at[2] = {-1, -1};
  const auto probe_for = [&](int i) -> unsigned long long* {
    for (int k = 0; k < 2; ++k)
      if (probe_at[k] == i) return probe_buf + std::size_t(k) * 2 * sms * 8;
    return nullptr;
  };
  // One GEMV: -1 = launch_qgemv (the engine's: q4tma on sm_90), else a q4s variant; counter slot i.
  const auto gemv = [&](int var, int i, const Shape& sh, bf16* out, const bf16* x) {
    if (var < 0) {
      LAB_STATUS(launch_qgemv(out, DType::bf16, x, DType::bf16, Q[i], scales_of(i, sh), f, nullptr, 1, sh.N, sh.K, s));
      return;
    }
    const Variant& v = variants[var];
    if (v.tmap) {
      launch_dependent_smem(tkernel_of(v), dim3(sms * v.per_sm), dim3(kThreads), q4t_smem(v.stages, sh.K, v.tgpw), s,
                            out, x, sh.N, sh.K, v.dynamic ? counters + i : static_cast<int*>(nullptr), probe_for(i),
                            v.map3 ? (v.tgpw == 1 ? maps_w31[i] : maps_w3[i]) : maps_w[i],
                            v.tgpw == 1 ? maps_s1[i] : maps_s[i], tile_cnt + std::size_t(i) * kMaxTiles,
                            part + std::size_t(i) * kMaxTiles * 32);
      return;
    }
    launch_dependent_smem(kernel_of(v), dim3(sms * v.per_sm), dim3(kThreads), q4s_smem(v.stages, v.gpw, sh.K), s,
                          out, x,
                          static_cast<const std::uint8_t*>(Q[i]), scales_of(i, sh), sh.N, sh.K,
                          v.dynamic ? counters + i : static_cast<int*>(nullptr), probe_for(i));
  };
  const int n_var = int(sizeof(variants) / sizeof(variants[0]));

  // pixtral_q4stream_lab reps ncu VARIANT SHAPE: five eager launches of one variant (-1 = launch_qgemv) on one
  // shape, for a profiler (ncu --launch-skip 2 --launch-count 1), then exit.
  if (argc > 4 && !std::strcmp(argv[2], "ncu")) {
    const int var = std::atoi(argv[3]), k = std::atoi(argv[4]);
    for (int r = 0; r < 5; ++r) {
      LAB_CHECK(cudaMemsetAsync(counters, 0, kLayers * 4 * sizeof(int), s));
      gemv(var, (r % kLayers) * 4 + k, kShapes[k], b, a);
    }
    LAB_CHECK(cudaStreamSynchronize(s));
    return 0;
  }
  // Validation: each shape (layer 0's weights), q4s against q4mma on the same x.
  std::printf("\nvalidation (max |q4s - q4mma| / max |q4mma|, layer 0's weights):\n");
  for (int var = 0; var < n_var; ++var) {
    if (variants[var].map3 && !have3) continue;
    std::printf("  %-24s", variants[var].name);
    for (int k = 0; k < 4; ++k) {
      const Shape& sh = kShapes[k];
      gemv(-1, k, sh, ref, a);
      LAB_CHECK(cudaMemsetAsync(counters, 0, kLayers * 4 * sizeof(int), s));
      gemv(var, k, sh, b, a);
      std::vector<std::uint16_t> hr(sh.N), hb(sh.N);
      LAB_CHECK(cudaMemcpyAsync(hr.data(), ref, sh.N * 2, cudaMemcpyDeviceToHost, s));
      LAB_CHECK(cudaMemcpyAsync(hb.data(), b, sh.N * 2, cudaMemcpyDeviceToHost, s));
      LAB_CHECK(cudaStreamSynchronize(s));
      double md = 0, mr = 0;
      for (int n = 0; n < sh.N; ++n) {
        md = std::max(md, double(std::fabs(bf16_to_f(hr[n]) - bf16_to_f(hb[n]))));
        mr = std::max(mr, double(std::fabs(bf16_to_f(hr[n]))));
      }
      std::printf("  %s %.2e", sh.name, md / mr);
    }
    std::printf("\n");
  }
  LAB_CHECK(cudaGetLastError());

  // The chain: QKV(a) -> b, wo(b) -> a, w13(a) -> b, w2(b) -> a, 40 layers in one graph.
  const auto time_graph = [&](auto&& enqueue) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    LAB_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    LAB_CHECK(cudaMemsetAsync(counters, 0, kLayers * 4 * sizeof(int), s));
    enqueue();
    LAB_CHECK(cudaStreamEndCapture(s, &graph));
    LAB_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    const float ms = median_ms(s, reps, [&] { LAB_CHECK(cudaGraphLaunch(exec, s)); });
    LAB_CHECK(cudaGraphExecDestroy(exec));
    LAB_CHECK(cudaGraphDestroy(graph));
    return ms;
  };
  const double floor_us = layer_bytes / copy_bw * 1e6;
  std::printf("\nchain of 40 layers (QKV, wo, w1+w3, w2): %.1f MB a layer, floor %.2f us a layer at the copy rate\n",
              layer_bytes / 1e6, floor_us);
  std::printf("%-24s %10s %8s", "kernel", "us/layer", "xfloor");
  for (const Shape& sh : kShapes) std::printf(" %12s", sh.name);
  std::printf("   (each shape alone: us a launch, 40 in a graph; xfloor)\n");
  for (int var = -1; var < n_var; ++var) {
    if (var >= 0 && variants[var].map3 && !have3) continue;
    const float ms = time_graph([&] {
      for (int l = 0; l < kLayers; ++l) {
        gemv(var, l * 4 + 0, kShapes[0], b, a);
        gemv(var, l * 4 + 1, kShapes[1], a, b);
        gemv(var, l * 4 + 2, kShapes[2], b, a);
        gemv(var, l * 4 + 3, kShapes[3], a, b);
      }
    });
    std::printf("%-24s %10.2f %8.3f", var < 0 ? "launch_qgemv" : variants[var].name, ms * 1e3 / kLayers,
                ms * 1e3 / kLayers / floor_us);
    for (int k = 0; k < 4; ++k) {
      const Shape& sh = kShapes[k];
      const float ms1 = time_graph([&] {
        for (int l = 0; l < kLayers; ++l) gemv(var, l * 4 + k, sh, l % 2 ? a : b, l % 2 ? b : a);
      });
      const double fl = double(quantized_alloc_bytes(f, sh.N, sh.K)) / copy_bw * 1e6;
      std::printf(" %6.2f %5.2f", ms1 * 1e3 / kLayers, ms1 * 1e3 / kLayers / fl);
    }
    std::printf("\n");
  }
  LAB_CHECK(cudaGetLastError());

  // The persistent chain: the same 160 GEMVs (a -> b -> a ...) in one cooperative kernel.
  namespace qc = pixtral::cuda::q4chain_lab;
  [&] {
    std::vector<qc::ChainGemv> gs(Q.size());
    std::vector<CUtensorMap> cmw(Q.size()), cms(Q.size());
    bool maps_ok = true;
    for (std::size_t i = 0; i < Q.size(); ++i) {
      const int k = int(i % 4);
      const Shape& sh = kShapes[k];
      gs[i] = {sh.N, sh.K, k % 2, 1 - k % 2};  // QKV and w1+w3 read a (buffer 0), wo and w2 read b
      if (sh.K > qc::kMaxK || (sh.K / 128) % qc::kWarps != 0 || sh.K / 128 / qc::kWarps > 14) {
        std::printf("persistent chain: K = %d outside the kernel's shapes\n", sh.K);
        return;
      }
      const cuuint64_t n = cuuint64_t(sh.K / 128), w = cuuint64_t(qc::kWarps), rows = cuuint64_t(sh.N);
      maps_ok = maps_ok &&
                qtma::encode_map(&cmw[i], qtma::make_map(Q[i], CU_TENSOR_MAP_DATA_TYPE_UINT32, {16, rows, w, n / w},
                                                         {cuuint64_t(sh.K / 2), 64, 64 * w}, {16, 16, 8, 1})) &&
                qtma::encode_map(&cms[i], qtma::make_map(scales_of(int(i), sh), CU_TENSOR_MAP_DATA_TYPE_FLOAT32,
                                                         {n, rows}, {n * 4}, {cuuint32_t(n), 16}));
    }
    int per_sm = 0;
    for (auto* kern : {qc::q4chain_kernel<false>, qc::q4chain_kernel<true>})
      LAB_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, qc::kSmem));
    LAB_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, qc::q4chain_kernel<false>, qc::kThreads, qc::kSmem));
    if (!maps_ok || per_sm < 1) {
      std::printf("\npersistent chain: not run (maps %s, %d blocks an SM)\n", maps_ok ? "ok" : "refused", per_sm);
      return;
    }
    LAB_CHECK(cudaMemcpyToSymbol(qc::c_gemv, gs.data(), gs.size() * sizeof(qc::ChainGemv)));
    LAB_CHECK(cudaMemcpyToSymbol(qc::c_mw, cmw.data(), cmw.size() * sizeof(CUtensorMap)));
    LAB_CHECK(cudaMemcpyToSymbol(qc::c_ms, cms.data(), cms.size() * sizeof(CUtensorMap)));
    int* done;
    const std::size_t done_bytes = Q.size() * qc::kCounterStride * sizeof(int);
    LAB_CHECK(cudaMalloc(&done, done_bytes));
    const int grid = std::min(per_sm, 2) * sms, n_gemv = int(Q.size());
    bool producer_waits = false;
    const auto chain = [&] {
      LAB_CHECK(cudaMemsetAsync(done, 0, done_bytes, s));
      void* args[] = {&a, &b, const_cast<int*>(&n_gemv), &done};
      const void* kern = producer_waits ? reinterpret_cast<const void*>(qc::q4chain_kernel<true>)
                                        : reinterpret_cast<const void*>(qc::q4chain_kernel<false>);
      LAB_CHECK(cudaLaunchCooperativeKernel(kern, dim3(grid), dim3(qc::kThreads), args, std::size_t(qc::kSmem), s));
    };
    // Validation: the final w2 output (5120 values in a) after 40 layers, per-kernel chain against this one.
    std::vector<std::uint16_t> h_ref(5120), h_got(5120);
    fill_random<<<64, 256, 0, s>>>(a, 32768, 3, 1.f);
    for (int l = 0; l < kLayers; ++l)
      for (int k = 0; k < 4; ++k) gemv(-1, l * 4 + k, kShapes[k], k % 2 ? a : b, k % 2 ? b : a);
    LAB_CHECK(cudaMemcpyAsync(h_ref.data(), a, 5120 * 2, cudaMemcpyDeviceToHost, s));
    std::printf("\npersistent chain, one cooperative kernel of %d blocks (%d an SM):\n", grid, grid / sms);
    for (const bool pw : {false, true}) {
      producer_waits = pw;
      fill_random<<<64, 256, 0, s>>>(a, 32768, 3, 1.f);
      chain();
      LAB_CHECK(cudaMemcpyAsync(h_got.data(), a, 5120 * 2, cudaMemcpyDeviceToHost, s));
      LAB_CHECK(cudaStreamSynchronize(s));
      int differ = 0;
      for (int n = 0; n < 5120; ++n) differ += h_ref[n] != h_got[n];
      const float ms = median_ms(s, reps, chain);
      std::printf("  %-34s %8.2f us a layer %6.3f x floor; final output %s the per-kernel chain's (%d of 5120 "
                  "differ)\n",
                  pw ? "producer waits for the GEMV before" : "producer streams across GEMVs", ms * 1e3 / kLayers,
                  ms * 1e3 / kLayers / floor_us, differ == 0 ? "bit-identical to" : "DIFFERENT from", differ);
    }
    LAB_CHECK(cudaFree(done));
  }();

  // Timing study: launches 19 and 20 of a 40-launch chain of one shape, µs from launch 19's first block entry.
  std::printf("\nstamps (us from launch 19's first entry; median / max over blocks): entry, after wait, after "
              "prologue, first stage, done | producer: first ring issued, last issued\n");
  for (int var = 0; var < n_var; ++var) {
    const Variant& v = variants[var];
    if (!v.tmap || (v.map3 && !have3)) continue;
    for (int k : {1, 2}) {
      const Shape& sh = kShapes[k];
      probe_at[0] = 19 * 4 + k;
      probe_at[1] = 20 * 4 + k;
      LAB_CHECK(cudaMemsetAsync(probe_buf, 0, 2 * 2 * sms * 8 * sizeof(unsigned long long), s));
      time_graph([&] {
        for (int l = 0; l < kLayers; ++l) gemv(var, l * 4 + k, sh, l % 2 ? a : b, l % 2 ? b : a);
      });
      probe_at[0] = probe_at[1] = -1;
      const int nb = sms * v.per_sm;
      std::vector<unsigned long long> h(std::size_t(2) * 2 * sms * 8);
      LAB_CHECK(cudaMemcpy(h.data(), probe_buf, h.size() * 8, cudaMemcpyDeviceToHost));
      unsigned long long t0 = ~0ull;
      for (int b2 = 0; b2 < nb; ++b2) t0 = std::min(t0, h[b2 * 8 + 0]);
      std::printf("%-24s %-9s", v.name, sh.name);
      for (int L = 0; L < 2; ++L) {
        std::printf(" |");
        for (int st : {0, 1, 2, 3, 4, 6, 7}) {
          std::vector<double> xs2;
          for (int b2 = 0; b2 < nb; ++b2) xs2.push_back((double(h[(L * 2 * sms + b2) * 8 + st]) - double(t0)) / 1e3);
          std::sort(xs2.begin(), xs2.end());
          std::printf(" %.1f/%.1f", xs2[xs2.size() / 2], xs2.back());
        }
      }
      std::printf("\n");
    }
  }
  return 0;
}
