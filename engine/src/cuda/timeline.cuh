// SPDX-License-Identifier: Apache-2.0
// Developer build option PIXTRAL_CUDA_TIMELINE (CMake, OFF by default; nothing of this is compiled otherwise): the
// decode-step kernels record, per block, when thread 0 started, returned from its last programmatic-dependent-launch
// wait (0: it did not wait), passed the kernel's mark (PIXTRAL_TIMELINE_MARK: a point the kernel names, e.g. "its
// loads have returned"; 0: none) and its early mark (PIXTRAL_TIMELINE_EARLY_MARK: a point before that, e.g. "the
// folded norm's sum is in"; 0: none) and finished (%globaltimer, ns) with the kernel's tag,
// grid size, block index and SM, for a window of replayed decode graphs (cuda_timeline.cu writes them to the CSV file
// named by PIXTRAL_CUDA_TIMELINE). A timeline of the graph as it runs, programmatic-dependent-launch overlap included,
// which ncu (kernels serialized) cannot give and nsys is not installed for. tests/bench/timeline.py reads the file.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace pixtral::cuda {

// Kernel tags (the CSV's tag column): family × 100 + GEMV mode (0 plain, 1 silu, 2 rope, 3 residual).
enum TimelineTag : unsigned {
  kTlGemv = 100,     // bf16 GEMV (kernels_gemv.cu)
  kTlQ8tma = 150,    // int8 GEMV fed by the TMA (kernels_q8tma.cu)
  kTlQgemv8 = 200,   // int8 scalar GEMV (kernels_quant.cu)
  kTlQgemv4 = 250,   // int4 scalar GEMV
  kTlQ4mma = 300,    // int4 tensor-core GEMV (kernels_q4mma.cu)
  kTlQ4tma = 350,    // int4 tensor-core GEMV fed by the TMA (kernels_q4tma.cu)
  kTlAttention = 400,
  kTlCombine = 401,
  kTlRowNorm = 500,
  kTlEmbed = 501,
  kTlSampleMax = 600,     // the device sampler (cuda_sample.cu): the decode graph's last kernels, or after it
  kTlSampleSelect = 601,
  kTlSampleGreedy = 602,
};

#ifdef PIXTRAL_CUDA_TIMELINE
struct TlRecord {
  unsigned long long t0, t1, tw, tm, te;
  unsigned tag, grid, block, sm;
};
// Per translation unit (the kernels are not compiled as relocatable device code): every unit that includes this
// header registers a setter (below) and cuda_timeline.cu points all of them at one buffer and one counter.
static __device__ TlRecord* g_tl_records = nullptr;
static __device__ unsigned* g_tl_count = nullptr;
static __device__ unsigned g_tl_capacity = 0;

__device__ __forceinline__ unsigned long long tl_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// When thread 0 last returned from wait_for_previous_grid (common.cuh), a block's own word: 0 until it waits.
__device__ __forceinline__ unsigned long long& tl_wait_slot() {
  __shared__ unsigned long long t;
  return t;
}

// When thread 0 last passed PIXTRAL_TIMELINE_MARK, a block's own word: 0 until it does.
__device__ __forceinline__ unsigned long long& tl_mark_slot() {
  __shared__ unsigned long long t;
  return t;
}

// When thread 0 last passed PIXTRAL_TIMELINE_EARLY_MARK, a block's own word: 0 until it does.
__device__ __forceinline__ unsigned long long& tl_early_slot() {
  __shared__ unsigned long long t;
  return t;
}

// A shared word the mark stores `dep` to: the store needs dep, and a warp issues in order, so the clock is read
// once dep is there (as long as ptxas keeps the volatile store before the volatile clock read; not checked in SASS).
__device__ __forceinline__ volatile float& tl_mark_sink() {
  __shared__ float v;
  return v;
}

// Thread 0's clock into `slot`, read after `dep` is computed: the mark and the early mark.
__device__ __forceinline__ void tl_stamp(unsigned long long& slot, float dep) {
  if (threadIdx.x != 0) return;
  tl_mark_sink() = dep;
  slot = tl_now();
}
__device__ __forceinline__ void tl_mark(float dep) { tl_stamp(tl_mark_slot(), dep); }
__device__ __forceinline__ void tl_early_mark(float dep) { tl_stamp(tl_early_slot(), dep); }

struct TlScope {
  unsigned long long t0;
  unsigned tag;
  unsigned slot = ~0u;
  // The record's slot is taken at the start, so the atomic's L2 round trip (~1 µs under a weight stream) overlaps the
  // block's work; taken at the end it delayed every block's exit, and so every kernel boundary: a recorded decode
  // step ran ~7 % slower than an unrecorded one (PERF_NOTES v28 7.).
  __device__ explicit TlScope(unsigned tag_) : t0(tl_now()), tag(tag_) {
    if (threadIdx.x != 0) return;
    tl_wait_slot() = tl_mark_slot() = tl_early_slot() = 0;
    if (g_tl_records) slot = atomicAdd(g_tl_count, 1u);
  }
  __device__ ~TlScope() {
    if (threadIdx.x != 0 || slot >= g_tl_capacity) return;
    const unsigned long long t1 = tl_now();
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    g_tl_records[slot] = TlRecord{t0, t1, tl_wait_slot(), tl_mark_slot(), tl_early_slot(), tag,
                                  gridDim.x * gridDim.y * gridDim.z,
                                  blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z), sm};
  }
};

using TlSetter = void (*)(TlRecord* records, unsigned* count, unsigned capacity);
void tl_register(TlSetter set);  // cuda_timeline.cu
static void tl_set_this_unit(TlRecord* records, unsigned* count, unsigned capacity) {
  (void)cudaMemcpyToSymbol(g_tl_records, &records, sizeof records);
  (void)cudaMemcpyToSymbol(g_tl_count, &count, sizeof count);
  (void)cudaMemcpyToSymbol(g_tl_capacity, &capacity, sizeof capacity);
}
static const bool g_tl_registered = (tl_register(&tl_set_this_unit), true);

#define PIXTRAL_TIMELINE(tag) const ::pixtral::cuda::TlScope pixtral_tl_scope_(tag)
#define PIXTRAL_TIMELINE_MARK(dep) ::pixtral::cuda::tl_mark(dep)
#define PIXTRAL_TIMELINE_EARLY_MARK(dep) ::pixtral::cuda::tl_early_mark(dep)
#else
#define PIXTRAL_TIMELINE(tag) (void)0
#define PIXTRAL_TIMELINE_MARK(dep) (void)0
#define PIXTRAL_TIMELINE_EARLY_MARK(dep) (void)0
#endif

/// Called by CudaBackend::replay around each graph launch: the window of replays to record (no-op unless built with
/// PIXTRAL_CUDA_TIMELINE and PIXTRAL_CUDA_TIMELINE names the output file).
void tl_before_replay(long replay, cudaStream_t s);
void tl_after_replay(long replay, cudaStream_t s);

}  // namespace pixtral::cuda
