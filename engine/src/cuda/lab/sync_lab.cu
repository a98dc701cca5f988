// SPDX-License-Identifier: Apache-2.0
// Sync lab (not a test): what one dependency across the whole GPU costs, the number that decides whether a
// persistent decode-layer kernel (PERF_NOTES v12) can beat the present chain of kernels. Five ways of ordering R
// phases, each phase a block-wide read of what another block wrote in the phase before (so the ordering is real):
//   chain+pdl   R kernels in a CUDA graph, each a programmatic dependent of the one before (griddepcontrol: the
//               decode step's way);
//   chain       the same R kernels without PDL;
//   barrier     one persistent kernel (cooperative launch: all blocks resident) with a grid barrier between
//               phases: arrive with an atomicAdd, the last block bumps a generation word, the others spin on it
//               (ld.acquire.gpu);
//   cg          the same with cooperative_groups' grid.sync();
//   flags       a persistent kernel where each block waits only for the one block whose words it reads: that
//               block's flag (st.release of the phase number after its writes, ld.acquire spin before reading) —
//               the cost of a fine-grained dependency, against the whole-grid ones above.
// For grids of 1, 2 and 3 blocks of 256 threads per SM, prints µs per phase (median of 7 replays of R = 400).
// Then the decode attention's candidate merge without a combine kernel (PERF_NOTES v20 9.): thread block clusters of
// C blocks (8; 16, non-portable) that each hold a split's partial in shared memory, the cluster synchronized, rank 0
// adding the peers' partials through distributed shared memory. Printed: how many such clusters fit the GPU at once
// (cudaOccupancyMaxActiveClusters; the attention needs 8, one a KV head) with 64 and 160 KB of shared memory a
// block, and µs per phase of a PDL chain of cluster kernels (64 clusters of 128 threads) with and without the merge
// — the merge's own cost, to set against the combine kernel's 3.5–5.4 µs a layer.
// Usage: pixtral_sync_lab [R=400]
// ref: CUDA programming guide, "Programmatic Dependent Launch" and "Grid Synchronization"; the PTX memory model
//      (ld.acquire / st.release at gpu scope).
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "lab_common.h"

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release(unsigned* p, unsigned v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// One phase: every thread reads a word the next block wrote in the phase before and writes its own.
__device__ __forceinline__ void phase(float* buf, int r) {
  const int b = blockIdx.x, n = gridDim.x;
  const float* src = buf + std::size_t((b + 1) % n) * kThreads;
  float* dst = buf + std::size_t(n) * kThreads * (r & 1) + std::size_t(b) * kThreads;
  const float v = __ldcg(src + std::size_t(n) * kThreads * ((r + 1) & 1) + threadIdx.x);
  dst[threadIdx.x] = v + 1.f;
}

__global__ void chain_kernel(float* buf, int r) {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  phase(buf, r);
}

__global__ void barrier_kernel(float* buf, unsigned* count, unsigned* gen, int R) {
  for (int r = 0; r < R; ++r) {
    phase(buf, r);
    __syncthreads();
    if (threadIdx.x == 0) {
      const unsigned g = ld_acquire(gen);
      __threadfence();
      if (atomicAdd(count, 1u) == gridDim.x - 1) {
        *count = 0;
        st_release(gen, g + 1);
      } else {
        while (ld_acquire(gen) == g) {
        }
      }
    }
    __syncthreads();
  }
}

// flags[b] = the last phase block b finished (0 before the first launch; `base` = R × the launches before, so
// the words need no reset between launches).
__global__ void flag_kernel(float* buf, unsigned* flags, unsigned base, int R) {
  const int b = blockIdx.x, n = gridDim.x;
  for (int r = 0; r < R; ++r) {
    if (r > 0) {  // phase r reads what block b + 1 wrote in phase r - 1
      if (threadIdx.x == 0)
        while (ld_acquire(flags + (b + 1) % n) < base + unsigned(r)) {
        }
      __syncthreads();
    }
    phase(buf, r);
    __syncthreads();
    if (threadIdx.x == 0) {
      __threadfence();
      st_release(flags + b, base + unsigned(r) + 1);
    }
  }
}

// One phase in clusters: every block reads and writes as phase() does; with `merge`, each block also puts its
// value in shared memory, the cluster synchronizes, rank 0 adds the C blocks' values in rank order (distributed
// shared memory) and writes the sum, and a second sync keeps the peers' shared memory alive until it has read.
__global__ void cluster_kernel(float* buf, float* merged, int r, int merge) {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
  extern __shared__ float sm[];
  const int b = blockIdx.x, n = gridDim.x;
  const float* src = buf + std::size_t((b + 1) % n) * 128;
  const float v = __ldcg(src + std::size_t(n) * 128 * ((r + 1) & 1) + threadIdx.x);
  buf[std::size_t(n) * 128 * (r & 1) + std::size_t(b) * 128 + threadIdx.x] = v + 1.f;
  if (merge) {
    cooperative_groups::cluster_group cl = cooperative_groups::this_cluster();
    sm[threadIdx.x] = v;
    cl.sync();
    if (cl.block_rank() == 0) {
      float sum = 0.f;
      for (unsigned k = 0; k < cl.num_blocks(); ++k) sum += cl.map_shared_rank(sm, k)[threadIdx.x];
      merged[std::size_t(b) * 128 + threadIdx.x] = sum;
    }
    cl.sync();
  }
#endif
}

__global__ void cg_kernel(float* buf, int R) {
  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  for (int r = 0; r < R; ++r) {
    phase(buf, r);
    grid.sync();
  }
}

// µs per phase of `run` (R phases): median of 7 timed runs.
template <class Run>
float time_per_phase(int R, cudaStream_t s, Run run) {
  return median_ms(s, 7, run) * 1000.f / float(R);
}

// µs per phase of a CUDA graph of R launches, launch(r) queuing phase r on s.
template <class Launch>
float time_graph(int R, cudaStream_t s, Launch launch) {
  cudaGraph_t g;
  LAB_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int r = 0; r < R; ++r) launch(r);
  LAB_CHECK(cudaStreamEndCapture(s, &g));
  cudaGraphExec_t ge;
  LAB_CHECK(cudaGraphInstantiate(&ge, g, 0));
  const float us = time_per_phase(R, s, [&] { LAB_CHECK(cudaGraphLaunch(ge, s)); });
  LAB_CHECK(cudaGraphExecDestroy(ge));
  LAB_CHECK(cudaGraphDestroy(g));
  return us;
}

// A chain of R launches captured in a CUDA graph (each a programmatic dependent of the one before when `pdl`).
float time_chain(int grid, int R, bool pdl, float* buf, cudaStream_t s) {
  return time_graph(R, s, [&](int r) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(unsigned(grid));
    cfg.blockDim = dim3(kThreads);
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    LAB_CHECK(cudaLaunchKernelEx(&cfg, chain_kernel, buf, r));
  });
}

// A launch configuration of cluster_kernel: grid blocks of 128 threads in clusters of C, smem bytes of dynamic
// shared memory, a programmatic dependent of the launch before.
struct ClusterCfg {
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[2];
  ClusterCfg(int grid, int C, int smem, cudaStream_t s) {
    cfg.gridDim = dim3(unsigned(grid));
    cfg.blockDim = dim3(128);
    cfg.dynamicSmemBytes = std::size_t(smem);
    cfg.stream = s;
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = unsigned(C);
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = 1;
    attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 2;
  }
};

// µs per phase of a graph of R cluster_kernel launches (64 clusters of C blocks), with or without the merge.
float time_cluster_chain(int C, int R, bool merge, float* buf, float* merged, cudaStream_t s) {
  return time_graph(R, s, [&](int r) {
    ClusterCfg c(64 * C, C, 4096, s);
    LAB_CHECK(cudaLaunchKernelEx(&c.cfg, cluster_kernel, buf, merged, r, merge ? 1 : 0));
  });
}

void cluster_section(int R, cudaStream_t s) {
  if (cudaFuncSetAttribute(cluster_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess ||
      cudaFuncSetAttribute(cluster_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 160 * 1024) != cudaSuccess) {
    (void)cudaGetLastError();
    std::printf("clusters: not available here\n");
    return;
  }
  std::printf("\nclusters (128 threads a block): how many fit at once; µs per phase of a PDL chain of 64 clusters\n");
  std::printf("%-6s %14s %15s %12s %12s\n", "C", "fit @64 KB", "fit @160 KB", "no merge", "merge");
  const int max_c = 16;
  float* buf = nullptr;
  float* merged = nullptr;
  LAB_CHECK(cudaMalloc(&buf, std::size_t(2) * 64 * max_c * 128 * sizeof(float)));
  LAB_CHECK(cudaMemset(buf, 0, std::size_t(2) * 64 * max_c * 128 * sizeof(float)));
  LAB_CHECK(cudaMalloc(&merged, std::size_t(64) * max_c * 128 * sizeof(float)));
  for (const int C : {2, 4, 8, 16}) {
    int fit[2] = {-1, -1};
    for (int i = 0; i < 2; ++i) {
      ClusterCfg c(8 * C, C, i == 0 ? 64 * 1024 : 160 * 1024, s);
      if (cudaOccupancyMaxActiveClusters(&fit[i], cluster_kernel, &c.cfg) != cudaSuccess) {
        (void)cudaGetLastError();
        fit[i] = -1;
      }
    }
    if (fit[0] <= 0) {  // no cluster of C fits: nothing to time
      std::printf("%-6d %14d %15d %12s %12s\n", C, fit[0], fit[1], "-", "-");
      continue;
    }
    const float plain = time_cluster_chain(C, R, false, buf, merged, s);
    const float merge = time_cluster_chain(C, R, true, buf, merged, s);
    std::printf("%-6d %14d %15d %12.2f %12.2f\n", C, fit[0], fit[1], plain, merge);
  }
  LAB_CHECK(cudaFree(buf));
  LAB_CHECK(cudaFree(merged));
}

}  // namespace

int main(int argc, char** argv) {
  int R = argc > 1 ? std::atoi(argv[1]) : 400;
  if (R < 2) R = 2;
  cudaDeviceProp prop{};
  LAB_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  int fit_barrier = 0, fit_cg = 0;
  LAB_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit_barrier, barrier_kernel, kThreads, 0));
  LAB_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit_cg, cg_kernel, kThreads, 0));
  cudaStream_t s;
  LAB_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  float* buf = nullptr;
  unsigned* words = nullptr;
  LAB_CHECK(cudaMalloc(&buf, std::size_t(2) * 3 * sms * kThreads * sizeof(float)));
  LAB_CHECK(cudaMemset(buf, 0, std::size_t(2) * 3 * sms * kThreads * sizeof(float)));
  LAB_CHECK(cudaMalloc(&words, 2 * sizeof(unsigned)));
  LAB_CHECK(cudaMemset(words, 0, 2 * sizeof(unsigned)));
  std::printf("%s, %d SMs; R = %d phases; µs per phase (median of 7)\n", prop.name, sms, R);
  unsigned* flags = nullptr;
  LAB_CHECK(cudaMalloc(&flags, std::size_t(3) * sms * sizeof(unsigned)));
  int fit_flags = 0;
  LAB_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit_flags, flag_kernel, kThreads, 0));
  std::printf("%-14s %10s %10s %10s %10s %10s\n", "blocks/SM", "chain+pdl", "chain", "barrier", "cg", "flags");
  for (int per_sm = 1; per_sm <= 3; ++per_sm) {
    const int grid = per_sm * sms;
    const float pdl = time_chain(grid, R, true, buf, s);
    const float plain = time_chain(grid, R, false, buf, s);
    float bar = -1.f, cg = -1.f;
    if (per_sm <= fit_barrier) {
      bar = time_per_phase(R, s, [&] {
        unsigned* count = words;
        unsigned* gen = words + 1;
        void* args[] = {&buf, &count, &gen, &R};
        LAB_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(barrier_kernel), dim3(unsigned(grid)),
                                             dim3(kThreads), args, 0, s));
      });
    }
    if (per_sm <= fit_cg) {
      cg = time_per_phase(R, s, [&] {
        void* args[] = {&buf, &R};
        LAB_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(cg_kernel), dim3(unsigned(grid)),
                                             dim3(kThreads), args, 0, s));
      });
    }
    float fl = -1.f;
    if (per_sm <= fit_flags) {
      LAB_CHECK(cudaMemsetAsync(flags, 0, std::size_t(3) * sms * sizeof(unsigned), s));
      unsigned base = 0;
      fl = time_per_phase(R, s, [&] {
        void* args[] = {&buf, &flags, &base, &R};
        LAB_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<void*>(flag_kernel), dim3(unsigned(grid)),
                                              dim3(kThreads), args, 0, s));
        base += unsigned(R);
      });
    }
    std::printf("%-14d %10.2f %10.2f %10.2f %10.2f %10.2f\n", per_sm, pdl, plain, bar, cg, fl);
  }
  cluster_section(R, s);
  LAB_CHECK(cudaGetLastError());
  LAB_CHECK(cudaFree(buf));
  LAB_CHECK(cudaFree(words));
  LAB_CHECK(cudaFree(flags));
  LAB_CHECK(cudaStreamDestroy(s));
  return 0;
}
