// SPDX-License-Identifier: Apache-2.0
// The host's bookkeeping for the int4 TMA GEMV's launches (kernels_q4tma.cu; q4tma_plan.cu): which q4tma GEMV
// followed which weight's last time (the next GEMV's first tiles asked into L2 once a launch's producers are done,
// PERF_NOTES v18 6.; opt-in since v27 3.), and the counter slots of the tiles handed out at run time (each stream its
// own range of g_q4t_dyn's slots, PERF_NOTES v20 5.). forget_q4tma_stream and forget_q4tma_successors
// (kernels_quant.cuh) end them.
#pragma once

#include <cuda_runtime.h>

#include "cuda/gemv_modes.cuh"

namespace pixtral::cuda::q4tplan {

// The q4tma GEMV that followed this weight's GEMV the last time (note_launch): the producer, once it has issued
// its own last stage, asks L2 for that GEMV's first tiles (tile j for j < n_first: its blocks' first tiles), so
// DRAM works on them while this kernel drains and the next one's blocks wait to start. n_first = 0: nothing.
struct Q4tNext {
  const unsigned char* q = nullptr;
  const unsigned char* sc = nullptr;
  int row_bytes = 0, scale_row_bytes = 0, rows = 0;  // K / 2, n_groups · 4, the weight's rows
  GemvMode mode = GemvMode::plain;
  int N = 0, nh = 0, nkv = 0, hd = 0, halves = 0;  // tile_plan's inputs
  int n_first = 0;
};

// The dynamic tiles' counters (g_q4t_dyn in kernels_q4tma.cu): kDynStreams ranges of kDynPerStream slots, 32 ints
// (128 bytes) a slot.
inline constexpr int kDynStreams = 8, kDynPerStream = 512, kDynSlots = kDynStreams * kDynPerStream;

/// The launch's counter slot for tiles handed out at run time, -1 for static tiles (see q4tma_plan.cu).
int dyn_tiles(GemvMode mode, int n_tiles, int grid, cudaStream_t s);
/// PIXTRAL_CUDA_Q4TMA_DYN=require: a launch that would take static tiles is an error (tests).
bool dyn_required();
/// Records `self` as the successor of the stream's previous launch's weight and returns the successor of weight `q`,
/// its first tiles cut to the L2 byte budget (n_first = 0: none known, or no budget).
Q4tNext note_launch(cudaStream_t stream, const void* q, const Q4tNext& self);

}  // namespace pixtral::cuda::q4tplan
