// SPDX-License-Identifier: Apache-2.0
// CudaBackend::sample: the next token chosen on the GPU, so a decode step sends 4 bytes to the host instead of
// the 512 KB of Pixtral's fp32 logits (and the host does not scan 131072 values per token).
//
// Semantics are those of runtime/sampler.cpp (the definition): temperature ≤ 0 or top_k = 1 → argmax, ties to the
// lowest id; else softmax terms exp((l − max)/T) in double (softmax_term), candidates in descending logit order
// with ties to the lower id, top-k, then the nucleus (keep a token while the mass before it is ≤ top_p), then one
// draw u = counter_uniform(seed, draw) · kept mass. The device evaluates the same expressions; only the order of
// the double-precision sum over the whole vocabulary differs (≈ 1e-16 relative).
//
// Greedy is one kernel, sample_greedy (kBlocks blocks: each block's max logit and its lowest index; the block that
// finishes last takes the argmax of those). Sampling is four kernels, fixed launch shapes (results never depend on
// the card's SM count):
//   1. sample_max      kBlocks blocks: each block's max logit and its lowest index.
//   2. sample_hist     kBlocks blocks: global max from the partials; the block's sum of terms
//                      (fixed-order tree, so run-to-run identical) and a histogram of the terms by binary exponent
//                      (bucket b holds terms in (2^-(b+1), 2^-b]): token counts and fixed-point masses, integer
//                      atomics only, so it is deterministic too.
//   3. sample_collect  kBlocks blocks: the smallest bucket depth whose tokens cover the top-k, or hold more than
//                      top_p of the mass (the nucleus lies inside); tokens down to that depth are appended to a
//                      candidate list — a prefix of the sorted vocabulary (the order of appends varies, the set
//                      does not).
//   4. sample_select   one block: the candidates are bitonic-sorted in shared memory, their terms computed by all
//                      threads, and thread 0 runs the host sampler's top-k / nucleus / draw sums over them in its
//                      order, after checking exactly (in double) that the nucleus lies inside them.
// sample_to_state queues the same kernels inside the decode graph (cuda_ext.h): the kernel that picks the token
// (sample_greedy's last block, sample_select) reads the draw from the decode state and, besides w->token, writes
// the token into the state's token slot, advances the state by one row and one draw, and puts the token into a
// mapped host ring — no copy either way between tokens.
// The device hands the draw back (token −1, the host samples instead) when more than kCandidates tokens are
// needed, when top-k reaches terms below 2^-63 of the top token's, or when neither top-k nor top-p truncates (the
// host sorts the whole vocabulary). Pixtral's next-token distributions at the defaults need a handful of tokens.
#include <cfloat>
#include <climits>

#include "cuda/cuda_backend.h"

namespace pixtral::cuda {
namespace {

constexpr int kBlocks = 128;
constexpr int kThreads = 256;
constexpr int kCandidates = 2048;  // shared-memory sort capacity (2048 × 8 bytes)
constexpr int kBuckets = 64;       // term exponent buckets 0..63; smaller terms (and 0) are never candidates
constexpr double kMassScale = 1099511627776.0;  // 2^40: fixed-point mass per token ≤ 2^40, Σ over 2^17 tokens < 2^64

/// Device workspace layout (one allocation).
struct SampleWork {
  float block_max[kBlocks];
  int block_arg[kBlocks];
  double block_sum[kBlocks];
  unsigned long long bucket_count[kBuckets];
  unsigned long long bucket_mass[kBuckets];  // fixed point, kMassScale
  unsigned long long total_mass;             // fixed point, every token
  unsigned int greedy_done;  // sample_greedy's blocks finished (the last one resets it to 0)
  int count;  // candidates appended (≤ kCandidates)
  int depth;  // deepest bucket collected, −1: the device cannot decide
  int token;
  float cand_logit[kCandidates];
  int cand_id[kCandidates];
};

// ref: runtime/sampler.cpp counter_uniform — the same 64-bit arithmetic, so draw i of seed s is the same float.
__device__ float device_counter_uniform(unsigned long long seed, unsigned long long counter) {
  unsigned long long z = seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return float(z >> 40) * (1.0f / 16777216.0f);
}

// ref: runtime/sampler.cpp softmax_term.
__device__ __forceinline__ double device_term(float logit, float mx, float temperature) {
  return exp((double(logit) - double(mx)) / double(temperature));
}

/// (value, index) order of the sampler: larger value first, equal values → lower index first.
__device__ __forceinline__ bool before(float va, int ia, float vb, int ib) {
  return va > vb || (va == vb && ia < ib);
}

__device__ void block_argmax(float& v, int& i) {
  __shared__ float sv[32];
  __shared__ int si[32];
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_down_sync(0xffffffffu, v, o);
    const int oi = __shfl_down_sync(0xffffffffu, i, o);
    if (before(ov, oi, v, i)) v = ov, i = oi;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) sv[warp] = v, si[warp] = i;
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    v = lane < nw ? sv[lane] : -INFINITY;
    i = lane < nw ? si[lane] : INT_MAX;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_down_sync(0xffffffffu, v, o);
      const int oi = __shfl_down_sync(0xffffffffu, i, o);
      if (before(ov, oi, v, i)) v = ov, i = oi;
    }
  }
}

/// This block's max logit and its lowest index over its slice of the vocabulary, into w (written by thread 0).
/// Contains __syncthreads: every thread of the block calls it.
__device__ void block_winner(const float* __restrict__ logits, int n, SampleWork* w) {
  const int per = (n + kBlocks - 1) / kBlocks;
  const int lo = blockIdx.x * per, hi = min(n, lo + per);
  float v = -INFINITY;
  int idx = INT_MAX;
  for (int j = lo + threadIdx.x; j < hi; j += blockDim.x) {
    const float x = logits[j];
    if (before(x, j, v, idx)) v = x, idx = j;
  }
  block_argmax(v, idx);
  if (threadIdx.x == 0) {
    w->block_max[blockIdx.x] = v;
    w->block_arg[blockIdx.x] = idx;
  }
}

__global__ void sample_max(const float* __restrict__ logits, int n, SampleWork* w) {
  PIXTRAL_TIMELINE(kTlSampleMax);
  block_winner(logits, n, w);
  if (blockIdx.x == 0) {
    for (int b = threadIdx.x; b < kBuckets; b += blockDim.x) w->bucket_count[b] = 0, w->bucket_mass[b] = 0;
    if (threadIdx.x == 0) w->total_mass = 0, w->count = 0;
  }
}

/// Bucket of a term in (0, 1]: b with term in (2^-(b+1), 2^-b]; kBuckets for smaller terms and 0.
__device__ __forceinline__ int term_bucket(double t) {
  if (!(t > 0.0)) return kBuckets;
  const int e = ilogb(t);             // t in [2^e, 2^(e+1))
  const int b = t == ldexp(1.0, e) ? -e : -e - 1;  // (2^-(b+1), 2^-b]
  return b < 0 ? 0 : min(b, kBuckets);
}

/// The vocabulary's largest logit from the blocks' partials, reduced by the whole block and returned to every
/// thread (fmaxf is exact and order-free, so this is the value a serial walk finds; the partials are never NaN).
/// Contains __syncthreads: every thread of the block calls it.
__device__ float global_max(const SampleWork* w) {
  __shared__ float s_warp[32];
  float mx = -INFINITY;
  for (int b = threadIdx.x; b < kBlocks; b += blockDim.x) mx = fmaxf(mx, w->block_max[b]);
  mx = warp_max(mx);
  if ((threadIdx.x & 31) == 0) s_warp[threadIdx.x >> 5] = mx;
  __syncthreads();
  mx = -INFINITY;
  for (int k = 0; k < int(blockDim.x >> 5); ++k) mx = fmaxf(mx, s_warp[k]);
  return mx;
}

__global__ void sample_hist(const float* __restrict__ logits, int n, float temperature, SampleWork* w) {
  __shared__ double s_part[kThreads / 32];
  __shared__ unsigned long long s_count[kBuckets], s_mass[kBuckets], s_total;
  for (int b = threadIdx.x; b < kBuckets; b += blockDim.x) s_count[b] = 0, s_mass[b] = 0;
  if (threadIdx.x == 0) s_total = 0;
  const float mx = global_max(w);  // its barrier also publishes the zeroed counters
  const int per = (n + kBlocks - 1) / kBlocks;
  const int lo = blockIdx.x * per, hi = min(n, lo + per);
  double sum = 0;
  unsigned long long fixed_sum = 0;
  for (int j = lo + threadIdx.x; j < hi; j += blockDim.x) {
    const double t = device_term(logits[j], mx, temperature);
    sum += t;
    const unsigned long long f = (unsigned long long)(t * kMassScale);
    fixed_sum += f;
    const int b = term_bucket(t);
    if (b < kBuckets) {
      atomicAdd(&s_count[b], 1ull);
      atomicAdd(&s_mass[b], f);
    }
  }
  atomicAdd(&s_total, fixed_sum);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_down_sync(0xffffffffu, sum, o);
  if ((threadIdx.x & 31) == 0) s_part[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    for (int k = 0; k < kThreads / 32; ++k) total += s_part[k];
    w->block_sum[blockIdx.x] = total;
    atomicAdd(&w->total_mass, s_total);
  }
  for (int b = threadIdx.x; b < kBuckets; b += blockDim.x)
    if (s_count[b]) atomicAdd(&w->bucket_count[b], s_count[b]), atomicAdd(&w->bucket_mass[b], s_mass[b]);
}

__global__ void sample_collect(const float* __restrict__ logits, int n, float temperature, float top_p, int top_k,
                               SampleWork* w) {
  __shared__ int s_depth;
  __shared__ unsigned long long s_count[kBuckets], s_mass[kBuckets];
  for (int b = threadIdx.x; b < kBuckets; b += blockDim.x) s_count[b] = w->bucket_count[b], s_mass[b] = w->bucket_mass[b];
  const float mx = global_max(w);  // its barrier also publishes the buckets' copies
  if (threadIdx.x == 0) {
    // The shallowest depth that certainly holds what the host sampler will look at: the top-k tokens, or (no
    // top-k) more than top_p of the mass — with a margin for the fixed-point rounding (1 unit per token).
    const int limit = top_k > 0 ? min(top_k, n) : n;
    const double need = double(top_p) * double(w->total_mass) + double(n);
    unsigned long long count = 0, mass = 0;
    int depth = -1;
    if (limit < n || top_p < 1.0f)
      for (int b = 0; b < kBuckets; ++b) {
        count += s_count[b];
        mass += s_mass[b];
        if (limit < n ? count >= (unsigned long long)limit : double(mass) > need) {
          depth = count <= (unsigned long long)kCandidates ? b : -1;
          break;
        }
      }
    s_depth = depth;
    if (blockIdx.x == 0) w->depth = depth;
  }
  __syncthreads();
  const int depth = s_depth;
  if (depth < 0) return;
  const int per = (n + kBlocks - 1) / kBlocks;
  const int lo = blockIdx.x * per, hi = min(n, lo + per);
  for (int j = lo + threadIdx.x; j < hi; j += blockDim.x) {
    const float x = logits[j];
    if (term_bucket(device_term(x, mx, temperature)) <= depth) {
      const int slot = atomicAdd(&w->count, 1);
      if (slot < kCandidates) {  // always true: the depth was chosen so (kept as a guard)
        w->cand_logit[slot] = x;
        w->cand_id[slot] = j;
      }
    }
  }
}

/// Where the kernel that picks the token (sample_greedy's last block, sample_select; thread 0, once) puts it besides
/// w->token: for sample_to_state, into the decode state (token slot 0, then the state advanced by one row and one
/// draw) and into the mapped host ring at draw % ring_n.
struct SampleSink {
  int* state = nullptr;  // the decode state (cuda_ext.h), or null: sample()
  int* ring = nullptr;
  int ring_n = 1;
};

__device__ unsigned long long state_draw(const int* state) {
  return *reinterpret_cast<const unsigned long long*>(state + kDecodeStateDraw);
}

__device__ void sink_token(SampleWork* w, const SampleSink& out, int token) {
  w->token = token;
  if (!out.state) return;
  int* st = out.state;
  const unsigned long long draw = state_draw(st);
  st[kDecodeStateTokens] = token < 0 ? 0 : token;  // -1: the host sets the token before the next replay
  st[kDecodeStatePosition] += 1;
  st[kDecodeStateNKv] += 1;
  st[kDecodeStatePositions] += 1;
  *reinterpret_cast<unsigned long long*>(st + kDecodeStateDraw) = draw + 1;
  out.ring[draw % (unsigned long long)out.ring_n] = token;
  __threadfence_system();  // the host reads the ring once it sees this kernel complete
}

/// Greedy in one kernel (sample_max, then the argmax of the blocks' winners by the block that finishes last: no
/// second launch on the decode loop's path). `before` is a total order on (value, id) and NaN never wins, so the
/// token is the one sample_max + sample_select (and the host's serial argmax) pick, whichever block is last.
/// Launched as a dependent launch: it waits for the logits' kernel before reading them.
__global__ void sample_greedy(const float* __restrict__ logits, int n, SampleWork* w, SampleSink out) {
  PIXTRAL_TIMELINE(kTlSampleGreedy);
  wait_for_previous_grid();
  __shared__ bool s_last;
  block_winner(logits, n, w);
  if (threadIdx.x == 0) {
    __threadfence();  // the winner is visible before the count says so
    s_last = atomicAdd(&w->greedy_done, 1u) == kBlocks - 1;
  }
  __syncthreads();  // also: block_argmax's shared memory is free again
  if (!s_last) return;
  __threadfence();
  float v = -INFINITY;
  int idx = INT_MAX;
  for (int b = threadIdx.x; b < kBlocks; b += blockDim.x) {
    const float bv = __ldcg(&w->block_max[b]);  // from L2: other blocks wrote them
    const int bi = __ldcg(&w->block_arg[b]);
    if (before(bv, bi, v, idx)) v = bv, idx = bi;
  }
  block_argmax(v, idx);
  if (threadIdx.x == 0) {
    w->greedy_done = 0;
    sink_token(w, out, idx == INT_MAX ? 0 : idx);  // all −inf/NaN: token 0, as the host's argmax
  }
}

__global__ void sample_select(int n, float temperature, float top_p, int top_k,
                              unsigned long long seed, unsigned long long draw_arg, SampleWork* w, SampleSink out) {
  PIXTRAL_TIMELINE(kTlSampleSelect);
  __shared__ float sv[kCandidates];
  __shared__ int si[kCandidates];
  __shared__ double s_term[kCandidates];  // the sorted candidates' terms, then their shares of the total
  __shared__ double s_block_sum[kBlocks];
  __shared__ double s_total;
  __shared__ int s_count;
  if (threadIdx.x == 0) s_count = w->depth < 0 ? -1 : w->count;
  __syncthreads();
  const int count = s_count;
  const bool nucleus = top_p < 1.0f;
  const int limit = top_k > 0 ? min(top_k, n) : n;
  if (count < 0 || count > kCandidates || (limit < n && count < limit) || (limit == n && !nucleus)) {
    if (threadIdx.x == 0) sink_token(w, out, -1);
    return;
  }
  int size = 1;
  while (size < count) size <<= 1;
  for (int k = threadIdx.x; k < size; k += blockDim.x) {
    sv[k] = k < count ? w->cand_logit[k] : -INFINITY;
    si[k] = k < count ? w->cand_id[k] : INT_MAX;
  }
  __syncthreads();
  // Bitonic sort into the sampler's order (descending value, ascending id).
  for (int len = 2; len <= size; len <<= 1) {
    for (int stride = len >> 1; stride > 0; stride >>= 1) {
      for (int k = threadIdx.x; k < size; k += blockDim.x) {
        const int partner = k ^ stride;
        if (partner > k) {
          const bool up = (k & len) == 0;  // this run sorts in the sampler's order
          const bool swap = up ? before(sv[partner], si[partner], sv[k], si[k])
                               : before(sv[k], si[k], sv[partner], si[partner]);
          if (swap) {
            const float tv = sv[k];
            sv[k] = sv[partner];
            sv[partner] = tv;
            const int ti = si[k];
            si[k] = si[partner];
            si[partner] = ti;
          }
        }
      }
      __syncthreads();
    }
  }
  // ref: runtime/sampler.cpp Sampler::sample, over the sorted candidates. The terms (a double exp each) and their
  // shares of the total are computed by all threads; thread 0 then runs the sampler's sums over them in the
  // sampler's order, so every value and every sum is the one the serial code computed.
  const float mx = sv[0];
  for (int k = threadIdx.x; k < count; k += blockDim.x) s_term[k] = device_term(sv[k], mx, temperature);
  for (int b = threadIdx.x; b < kBlocks; b += blockDim.x) s_block_sum[b] = w->block_sum[b];
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    if (limit < n) {
      for (int i = 0; i < limit; ++i) total += s_term[i];
    } else {
      for (int b = 0; b < kBlocks; ++b) total += s_block_sum[b];
    }
    s_total = total;
  }
  __syncthreads();
  const int m = limit < n ? limit : count;
  for (int k = threadIdx.x; k < m; k += blockDim.x) s_term[k] /= s_total;  // term / total, as the sampler divides
  __syncthreads();
  if (threadIdx.x != 0) return;
  if (limit == n) {
    double mass = 0;
    for (int i = 0; i < m; ++i) mass += s_term[i];
    if (!(mass > top_p)) {  // the nucleus may reach past the candidates: the host decides
      sink_token(w, out, -1);
      return;
    }
  }
  int keep = m;
  if (nucleus) {
    double before_mass = 0;
    int cut = keep;
    for (int i = 0; i < keep; ++i) {
      if (before_mass > top_p) {
        cut = i;
        break;
      }
      before_mass += float(s_term[i]);
    }
    keep = max(cut, 1);
  }
  double mass = 0;
  for (int i = 0; i < keep; ++i) mass += float(s_term[i]);
  const unsigned long long draw = out.state ? state_draw(out.state) : draw_arg;
  const double u = double(device_counter_uniform(seed, draw)) * mass;
  double acc = 0;
  int pick = si[keep - 1];
  for (int i = 0; i < keep; ++i) {
    acc += float(s_term[i]);
    if (u < acc) {
      pick = si[i];
      break;
    }
  }
  sink_token(w, out, pick);
}

}  // namespace

Status CudaBackend::queue_sampler(const ops::Tensor& logits, const ops::SampleParams& p, std::uint64_t draw,
                                  int* state) {
  if (logits.dtype != DType::f32 || logits.rows != 1 || logits.cols < 1 || logits.cols > INT_MAX / 2)
    return Status(ErrorCode::invalid_argument, "cuda sample: logits must be one f32 row");
  if (sample_ws_.cap < sizeof(SampleWork)) {  // new: sample_greedy's count starts at 0 (its last block resets it)
    PIXTRAL_RETURN_IF_ERROR(ensure(sample_ws_, sizeof(SampleWork), "sampler workspace"));
    PIXTRAL_CUDA_CHECK(cudaMemsetAsync(sample_ws_.ptr, 0, sample_ws_.cap, stream_));
  }
  auto* w = static_cast<SampleWork*>(sample_ws_.ptr);
  const int n = int(logits.cols);
  const auto* x = static_cast<const float*>(logits.data);
  SampleSink out;
  if (state) out = SampleSink{state, sampled_dev_, kSampledRing};
  if (p.temperature <= 0.0f || p.top_k == 1) {  // greedy
    launch_dependent(sample_greedy, dim3(kBlocks), dim3(kThreads), stream_, x, n, w, out);
    PIXTRAL_CUDA_LAUNCH_CHECK("sample_greedy");
    return {};
  }
  sample_max<<<kBlocks, kThreads, 0, stream_>>>(x, n, w);
  PIXTRAL_CUDA_LAUNCH_CHECK("sample_max");
  sample_hist<<<kBlocks, kThreads, 0, stream_>>>(x, n, p.temperature, w);
  PIXTRAL_CUDA_LAUNCH_CHECK("sample_hist");
  sample_collect<<<kBlocks, kThreads, 0, stream_>>>(x, n, p.temperature, p.top_p, p.top_k, w);
  PIXTRAL_CUDA_LAUNCH_CHECK("sample_collect");
  sample_select<<<1, 1024, 0, stream_>>>(n, p.temperature, p.top_p, p.top_k, p.seed, draw, w, out);
  PIXTRAL_CUDA_LAUNCH_CHECK("sample_select");
  return {};
}

Status CudaBackend::sample(const ops::Tensor& logits, const ops::SampleParams& p, std::uint64_t draw, int* token) {
  *token = -1;
  if (!sample_host_) PIXTRAL_CUDA_CHECK(cudaMallocHost(&sample_host_, sizeof(int)));
  PIXTRAL_RETURN_IF_ERROR(queue_sampler(logits, p, draw, nullptr));
  auto* w = static_cast<SampleWork*>(sample_ws_.ptr);
  PIXTRAL_CUDA_CHECK(
      cudaMemcpyAsync(sample_host_, &w->token, sizeof(int), cudaMemcpyDeviceToHost, stream_));
  PIXTRAL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  *token = *sample_host_;
  if (*token >= int(logits.cols)) return Status(ErrorCode::internal, "cuda sample: token id out of range");
  return {};
}

Status CudaBackend::sample_to_state(const ops::Tensor& logits, const ops::SampleParams& p) {
  PIXTRAL_RETURN_IF_ERROR(queue_sampler(logits, p, 0, decode_state()));
  if (capturing_) {
    capture_samples_ = true;
    return {};
  }
  return push_sampled();
}

}  // namespace pixtral::cuda
