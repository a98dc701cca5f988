// SPDX-License-Identifier: Apache-2.0
// The host side of the developer timeline (timeline.cuh): with the library built with PIXTRAL_CUDA_TIMELINE and the
// environment variable PIXTRAL_CUDA_TIMELINE=<file.csv>, replays FROM .. FROM + STEPS - 1 of the decode graph
// (PIXTRAL_CUDA_TIMELINE_FROM, default 100; PIXTRAL_CUDA_TIMELINE_STEPS, default 4) record their kernels' blocks,
// written to the file after the last one. Errors are printed to stderr and end the recording (a developer tool: it
// never changes what the backend returns).
#include "cuda/timeline.cuh"

#ifdef PIXTRAL_CUDA_TIMELINE
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/env_switch.h"
#endif

namespace pixtral::cuda {

#ifdef PIXTRAL_CUDA_TIMELINE
namespace {

std::vector<TlSetter>& setters() {
  static std::vector<TlSetter> s;
  return s;
}

struct Window {
  const char* path = std::getenv("PIXTRAL_CUDA_TIMELINE");
  long from = env_long("PIXTRAL_CUDA_TIMELINE_FROM", 100);
  long steps = env_long("PIXTRAL_CUDA_TIMELINE_STEPS", 4);
  unsigned capacity = 4u << 20;
  TlRecord* records = nullptr;
  unsigned* count = nullptr;
  bool done = false;
};

Window& window() {
  static Window w;
  return w;
}

void point_all(TlRecord* r, unsigned* c, unsigned cap) {
  for (TlSetter s : setters()) s(r, c, cap);
}

}  // namespace

void tl_register(TlSetter set) { setters().push_back(set); }

void tl_before_replay(long replay, cudaStream_t s) {
  Window& w = window();
  if (!w.path || w.done || replay != w.from) return;
  if (cudaMalloc(&w.records, sizeof(TlRecord) * w.capacity) != cudaSuccess ||
      cudaMalloc(&w.count, sizeof(unsigned)) != cudaSuccess ||
      cudaMemset(w.count, 0, sizeof(unsigned)) != cudaSuccess) {
    std::fprintf(stderr, "timeline: no device memory for the records\n");
    (void)cudaGetLastError();
    w.done = true;
    return;
  }
  (void)cudaStreamSynchronize(s);
  point_all(w.records, w.count, w.capacity);
}

void tl_after_replay(long replay, cudaStream_t s) {
  Window& w = window();
  if (!w.path || w.done || !w.records || replay != w.from + w.steps - 1) return;
  w.done = true;
  (void)cudaStreamSynchronize(s);
  point_all(nullptr, nullptr, 0);
  unsigned n = 0;
  (void)cudaMemcpy(&n, w.count, sizeof n, cudaMemcpyDeviceToHost);
  if (n > w.capacity) n = w.capacity;
  std::vector<TlRecord> h(n);
  (void)cudaMemcpy(h.data(), w.records, sizeof(TlRecord) * n, cudaMemcpyDeviceToHost);
  cudaFree(w.records);
  cudaFree(w.count);
  w.records = nullptr;
  FILE* f = std::fopen(w.path, "w");
  if (!f) {
    std::fprintf(stderr, "timeline: cannot write %s\n", w.path);
    return;
  }
  std::fprintf(f, "tag,grid,block,sm,t0,t1,tw,tm,te\n");
  for (const TlRecord& r : h)
    std::fprintf(f, "%u,%u,%u,%u,%llu,%llu,%llu,%llu,%llu\n", r.tag, r.grid, r.block, r.sm, r.t0, r.t1, r.tw, r.tm,
                 r.te);
  std::fclose(f);
  std::fprintf(stderr, "timeline: %u blocks of replays %ld..%ld written to %s\n", n, w.from, w.from + w.steps - 1,
               w.path);
}
#else
void tl_before_replay(long, cudaStream_t) {}
void tl_after_replay(long, cudaStream_t) {}
#endif

}  // namespace pixtral::cuda
