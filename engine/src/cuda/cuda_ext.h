// SPDX-License-Identifier: Apache-2.0
// CudaExtension: what the model/runtime needs from the CUDA backend beyond ops::Backend, without CUDA types.
// Obtain it with ops::cuda_extension(backend) (declared here, defined in core/cuda_loader.cpp); it is null for
// any backend that is not the loaded CUDA one.
// Graph capture contract (decode step): call begin_capture(), run the step's ops, end_capture(); then replay()
// re-runs exactly the captured kernels with the same pointers and sizes. Ops that take host spans (ids,
// positions, rows, segments) copy them to the device when called, so a replayed graph sees the values of capture
// time: the runtime must put per-step values (token id, position, KV length) in device buffers it updates
// before replay. The device decode state below is that buffer.
//
// ---- Device decode state (API added for CUDA-graph replay of the decode step) ----------------------------------
// The backend owns one device int buffer of kDecodeStateInts ints:
//   [kDecodeStatePosition]           position of the step's first query row (= KV rows before this step)
//   [kDecodeStateNKv]                KV rows after this step's rows are appended (position + rows)
//   [kDecodeStatePositions + t]      position + t, t < kDecodeStateMaxRows (read by rope and scatter_rows)
//   [kDecodeStateTokens + t]         token id of row t (read by embed)
//   [kDecodeStateDraw], +1           the sampler's next draw number (uint64, low word first; sample_to_state)
// Host side:
//   int* decode_state()                       the device pointer (fixed for the backend's life; a GPU sampler
//                                             may write the next token straight to decode_state() + kDecodeStateTokens)
//   Status set_decode_state(position, n_rows) queues, on stream(), a copy from pinned host memory of position,
//                                             n_kv = position + n_rows and the positions slots; call it before
//                                             replay() (or before the eager ops); refused while capturing
//   Status set_decode_tokens(ids)             same for the token slots (≤ kDecodeStateMaxRows ids)
//   void set_device_state_mode(bool on)       while on, the following ops take their per-step values from the
//                                             decode state instead of their host spans (the spans' sizes still
//                                             give the row counts, their values are ignored; ≤ 4 rows each):
//       embed(out, table, ids)             ids    = tokens[0 .. out.rows)
//       rope(x, ..., positions, ...)       positions = positions[0 .. x.rows)
//       scatter_rows(dst, src, rows)       rows   = positions[0 .. src.rows)   (KV append: dst = the layer's
//                                                   whole cache, src = this step's k or v rows)
//       attention(out, q, k, v, p)         p.causal required, p.q_offset ignored: query row i sees keys
//                                             [0, position + i + 1); k and v may (and should) be views of the
//                                             whole cache capacity the graph will serve: their row count only
//                                             sizes the grid (blocks past the live keys exit at once)
//                                          rope_2d, patch_embed and the rest are unaffected.
//   bool device_state_mode() const
// Typical decode loop: run one step eagerly in device-state mode (scratch grows outside capture), then
// begin_capture(); the step's ops; end_capture(); and per token: set_decode_state(pos, 1);
// set_decode_tokens({tok}) unless the sampler wrote it; replay(). Results are identical to the host-span path.
//
// ---- The sampler inside the decode graph (no host copy between tokens) ---------------------------------------
//   Status sample_to_state(logits, p)        queues ops::Backend::sample's kernels (same semantics, same bits)
//                                             with the draw number read from the decode state; the token goes
//                                             into token slot 0 and the state advances by one row (position,
//                                             n_kv and positions[0] + 1, the draw + 1), so the next replay of a
//                                             one-row step consumes it with no copy from the host. Capturable:
//                                             captured after the step's ops, every replay samples once.
//   Status set_decode_draw(draw)             sets the draw slot (a copy, like set_decode_state; refused while
//                                             capturing) and forgets sampled tokens not taken (a new run)
//   Status take_sampled_token(&token)        waits for the oldest sampling not yet taken (an eager
//                                             sample_to_state, or a replay of a graph that samples) and returns
//                                             its token; samplings queued after it keep running. Token -1: the
//                                             device left the draw to the host (ops::Backend::sample); the
//                                             logits are those of that step only if nothing was queued after
//                                             it, and the host must set_decode_tokens before the next replay
//                                             (the token slot then holds 0).
// So a greedy decode loop may queue the step that consumes token n + 1 before reading token n + 1 (the host's
// round trip off the GPU's path): at most kMaxSampledInFlight samplings are queued and not taken.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ops/backend.h"

namespace pixtral::ops {

inline constexpr int kDecodeStatePosition = 0;
inline constexpr int kDecodeStateNKv = 1;
inline constexpr int kDecodeStatePositions = 2;
inline constexpr int kDecodeStateTokens = 6;
inline constexpr int kDecodeStateMaxRows = 4;
inline constexpr int kDecodeStateDraw = 10;  // two ints: a uint64, 8-byte aligned
inline constexpr int kDecodeStateInts = 16;
inline constexpr int kMaxSampledInFlight = 8;

class CudaExtension {
 public:
  virtual ~CudaExtension() = default;
  /// The cudaStream_t every op is queued on (as void*, so this header stays CUDA-free).
  virtual void* stream() = 0;
  /// Device memory now free and total, in bytes.
  virtual Status memory_info(std::size_t* free_bytes, std::size_t* total_bytes) = 0;
  /// Bytes currently allocated through alloc/upload_weight, and the peak since creation.
  virtual std::size_t allocated_bytes() const = 0;
  virtual std::size_t peak_allocated_bytes() const = 0;
  /// Start capturing the ops queued from this thread into a CUDA graph (replaces any earlier graph).
  virtual Status begin_capture() = 0;
  /// Stop capturing and instantiate the graph.
  virtual Status end_capture() = 0;
  /// Launch the instantiated graph on the backend's stream.
  virtual Status replay() = 0;
  /// Test hook: make the n-th device allocation from now fail with out_of_memory (n = 1: the next one);
  /// 0 disables. Lets a test inject a failure at every allocation site.
  virtual void fail_allocation_after(int n) = 0;
  /// Device allocations tried since the backend was created (the sites fail_allocation_after can reach; with
  /// PIXTRAL_CUDA_FAIL_ALLOCATION=n in the environment the backend starts with fail_allocation_after(n)).
  virtual long allocation_attempts() const = 0;
  /// Test hook: queue a kernel that traps, leaving the context in the sticky error state a lost or reset GPU
  /// leaves behind (every later CUDA call fails). Irreversible for the process: use it in a test binary of its own.
  virtual Status inject_device_fault() = 0;

  // ---- device decode state (see the top of this file) ----------------------------------------------------
  virtual int* decode_state() = 0;
  virtual Status set_decode_state(int position, int n_rows) = 0;
  virtual Status set_decode_tokens(std::span<const int> ids) = 0;
  virtual void set_device_state_mode(bool on) = 0;
  virtual bool device_state_mode() const = 0;

  // ---- the sampler inside the decode graph (see the top of this file) ------------------------------------
  virtual Status sample_to_state(const Tensor& logits, const SampleParams& p) = 0;
  virtual Status set_decode_draw(std::uint64_t draw) = 0;
  virtual Status take_sampled_token(int* token) = 0;
};

/// The CUDA extension of `backend`, or nullptr when `backend` is not the loaded CUDA backend.
CudaExtension* cuda_extension(Backend& backend);

}  // namespace pixtral::ops
