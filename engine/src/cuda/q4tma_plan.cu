// SPDX-License-Identifier: Apache-2.0
// The host's bookkeeping for the int4 TMA GEMV's launches (q4tma_plan.h): the successor hints and the dynamic tiles'
// counter slots. Moved out of kernels_q4tma.cu unchanged.
#include "cuda/q4tma_plan.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "cuda/env_switch.h"
#include "cuda/kernels_quant.cuh"

namespace pixtral::cuda {
namespace q4tplan {
namespace {

// The next GEMV's first tiles asked into L2 (PIXTRAL_CUDA_Q4TMA_L2PF=MB, opt-in): 8 MB paid 0.6 % when it came in
// (PERF_NOTES v18 6.); since the late triggers of v25 it costs as much (H200 int4 decode, same run, 5 rounds: 8 MB
// 2.553, none 2.542, 2 MB 2.539 ms/token; PERF_NOTES v27 3.), so none by default.
constexpr int kDefaultL2PrefetchMB = 0;

// Which q4tma GEMV followed which (keyed by the weight's bytes): a decode step runs the same sequence every time,
// so the GEMV launched after weight w in the last step (or the warm-up step before a capture) is the one that will
// follow it now. Only a hint for L2: a wrong entry costs bytes, never results. Forgotten whenever a weight is freed
// (forget_q4tma_successors), so no entry points at freed memory. The launch before is a stream's own (two backends'
// streams interleave their launches; forget_q4tma_stream drops a stream's).
struct Successors {
  std::mutex mu;
  std::unordered_map<cudaStream_t, const void*> last;
  std::unordered_map<const void*, Q4tNext> next;
};
Successors& successors() {
  static Successors s;
  return s;
}

// PIXTRAL_CUDA_Q4TMA_L2PF=MB: how many bytes of the next GEMV's first tiles a launch asks into L2 (0: none).
std::int64_t l2_prefetch_bytes() {
  return std::int64_t(env_long("PIXTRAL_CUDA_Q4TMA_L2PF", kDefaultL2PrefetchMB)) << 20;
}

// The counter slots of each stream that launches q4tma: kDynStreams ranges of kDynPerStream slots, a range taken by
// a stream at its first dynamic launch and given back by forget_q4tma_stream (the backend's destructor).
struct DynRanges {
  std::mutex mu;
  cudaStream_t stream[kDynStreams] = {};
  bool used[kDynStreams] = {};
  unsigned next[kDynStreams] = {};
};
DynRanges& dyn_ranges() {
  static DynRanges d;
  return d;
}

}  // namespace

// PIXTRAL_CUDA_Q4TMA_DYN=0: static tiles everywhere (A/B); =require: a launch that would take static tiles is an
// error instead (tests: proves the dynamic path ran). Else a launch with more tiles than blocks in a mode that
// compiles the dynamic hand-out gets its stream's next counter slot, round robin over the stream's range. Launches
// of one stream are ordered (eager ones and graph replays alike; a captured graph keeps its slots), so a slot comes
// back to a stream only after kDynPerStream of its launches, far more than programmatic dependent launch lets run
// at once (two or three), and each launch leaves its slot zeroed; other streams (other backends) have their own
// ranges. More streams than ranges: static tiles. PIXTRAL_CUDA_Q4TMA_DYN_SLOTS=N (2..kDynPerStream): the round
// robin over N slots only (tests: a slot reused N launches later). -1: static tiles.
int dyn_tiles(GemvMode mode, int n_tiles, int grid, cudaStream_t s) {
  if (env_zero("PIXTRAL_CUDA_Q4TMA_DYN") || n_tiles <= grid || (mode != GemvMode::silu && mode != GemvMode::plain))
    return -1;
  const unsigned per =
      unsigned(std::clamp(env_long("PIXTRAL_CUDA_Q4TMA_DYN_SLOTS", kDynPerStream), 2L, long(kDynPerStream)));
  DynRanges& d = dyn_ranges();
  const std::lock_guard<std::mutex> lock(d.mu);
  int range = -1;
  for (int i = 0; i < kDynStreams && range < 0; ++i)
    if (d.used[i] && d.stream[i] == s) range = i;
  for (int i = 0; i < kDynStreams && range < 0; ++i)
    if (!d.used[i]) {
      range = i;
      d.used[i] = true;
      d.stream[i] = s;
      d.next[i] = 0;
    }
  if (range < 0) return -1;
  return range * kDynPerStream + int(d.next[range]++ % per);
}
bool dyn_required() {
  return env_is("PIXTRAL_CUDA_Q4TMA_DYN", "require");
}

// Records `self` as the successor of the previous launch's weight and returns this weight's successor, its first
// tiles cut to the byte budget (n_first = 0: none known, or no budget).
Q4tNext note_launch(cudaStream_t stream, const void* q, const Q4tNext& self) {
  Successors& s = successors();
  const std::lock_guard<std::mutex> lock(s.mu);
  const void*& last = s.last[stream];
  if (last) s.next[last] = self;
  last = q;
  const auto it = s.next.find(q);
  if (it == s.next.end()) return {};
  Q4tNext nx = it->second;
  const int rows_a_tile = nx.mode == GemvMode::plain || nx.mode == GemvMode::residual ? 16 : 32;
  const std::int64_t tile = std::int64_t(rows_a_tile) * (nx.row_bytes + nx.scale_row_bytes);
  nx.n_first = int(std::min<std::int64_t>(nx.n_first, l2_prefetch_bytes() / tile));
  return nx;
}

}  // namespace q4tplan

using namespace q4tplan;

void forget_q4tma_stream(cudaStream_t s) {
  {
    DynRanges& d = dyn_ranges();
    const std::lock_guard<std::mutex> lock(d.mu);
    for (int i = 0; i < kDynStreams; ++i)
      if (d.used[i] && d.stream[i] == s) d.used[i] = false;
  }
  Successors& su = successors();
  const std::lock_guard<std::mutex> lock(su.mu);
  su.last.erase(s);
}

void forget_q4tma_successors() {
  Successors& s = successors();
  const std::lock_guard<std::mutex> lock(s.mu);
  s.next.clear();
  s.last.clear();
}

}  // namespace pixtral::cuda
