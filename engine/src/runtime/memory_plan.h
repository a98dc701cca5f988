// SPDX-License-Identifier: Apache-2.0
// The memory planner (issue 6), internal side: a pure function from a model's config and tensor table, the
// precision, the context and the target device's free memory to a MemoryPlan (pixtral/model.h), the automatic
// precision choice, and the two runtime hooks (Model::load plans before uploading; Model::create_session refuses a
// context that cannot fit before allocating). Every byte count comes from the code that allocates it:
// decoder_state_allocs / vision_allocs (model/forward.h) for activations and the KV cache, weight_options
// (model/weights.h) for which tensors are quantized, core/quant.h for the quantized sizes; the CUDA backend's
// fixed workspaces are mirrored here with a ref: to where they are allocated.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io/checkpoint.h"
#include "ops/backend.h"
#include "pixtral/model.h"

namespace pixtral {

/// The device a plan is for.
/// The default rows of one prefill chunk (SessionOptions::prefill_chunk = 0). CUDA: 6144, so a page-QA prompt (one
/// 1024×1024 image = 4160 image rows + the question) runs as ONE chunk — measured on an H200, 4193 rows in one
/// chunk took 177 ms against 191 ms as 2 × 2112 (larger GEMMs, half the launches, one attention pass); the
/// decoder scratch grows by ~0.2 GB over 4096 rows, and the planner halves the chunk where memory is short.
/// CPU: 256 (cancellation stays prompt).
inline constexpr int kCudaPrefillRows = 6144;
inline constexpr int kCpuPrefillRows = 256;

struct PlanTarget {
  bool cuda = true;              ///< CUDA: weights on the device in bf16/quantized, bf16 activations; CPU: f32
  int prefill_rows = kCudaPrefillRows;  ///< rows of a prefill chunk (the session default, kCudaPrefillRows)
  std::uint64_t free_bytes = 0;  ///< device memory free (CUDA) or available RAM (CPU); 0: unknown (fits)
  bool context_reserve = true;   ///< free_bytes was measured before a CUDA context existed: reserve one
};

/// Contexts the automatic choice asks of each precision (issue 6: bf16 with 16k, else int8 — the 16 GB
/// target is int8 with 8k — else int4 with at least one page-sized prompt).
inline constexpr int kAutoContextBf16 = 16384;
inline constexpr int kAutoContextInt8 = 8192;
inline constexpr int kAutoContextInt4 = 4096;
/// CUDA context + driver reserve when free memory was measured without a context (typical 300–500 MiB on
/// H100-class cards with lazy module loading).
inline constexpr std::uint64_t kCudaContextReserve = 512ull << 20;

/// One tensor to plan: canonical name, [rows, cols] as stored, dtype as stored.
struct PlanTensor {
  std::string name;
  std::int64_t rows = 0, cols = 0;
  DType dtype = DType::bf16;
};
/// The tensors a config expects (io::expected_tensors), stored as `dtype`.
std::vector<PlanTensor> plan_tensors(const ModelConfig& cfg, DType dtype = DType::bf16);
/// The tensors of an opened checkpoint (its own table).
std::vector<PlanTensor> plan_tensors(const Checkpoint& ckpt);

/// Bytes the backend allocates for one weight stored as `format` (CUDA: bf16 when dense, quantized values padded
/// to 256 bytes; CPU: as stored when dense — a view of the mmap).
std::uint64_t weight_alloc_bytes(const PlanTensor& t, ops::WeightFormat format, bool cuda);
/// Backend workspaces and margin that do not scale with the context (see memory_plan.cpp).
std::uint64_t reserve_bytes(const ModelConfig& cfg, std::span<const PlanTensor> tensors, Precision p,
                            const PlanTarget& t);
/// Bytes a session of `context` tokens allocates: KV cache + decoder scratch (+ one largest image's vision
/// activations and features when the model has vision).
std::uint64_t session_bytes(const ModelConfig& cfg, DType act, int context, int prefill_rows);

/// The plan for `p` (bf16, int8 or int4; automatic is treated as bf16) at `context` tokens. On CUDA, when it does
/// not fit with t.prefill_rows, smaller prefill chunks (half, quarter, ≥ 1024 rows) are tried; plan.prefill_rows
/// is the chunk planned (Model::create_session uses it as the default chunk).
MemoryPlan plan_for(const ModelConfig& cfg, std::span<const PlanTensor> tensors, Precision p, int context,
                    const PlanTarget& t);
/// `p` resolved (automatic: bf16 if it fits with kAutoContextBf16, else int8 with kAutoContextInt8, else int4
/// with kAutoContextInt4 — int4 skipped when a decoder matrix is not a multiple of 128 wide; the CPU: bf16), then
/// planned at `context`. automatic with nothing fitting → out_of_memory naming what is needed, what is free and
/// what to try.
Result<MemoryPlan> choose_plan(const ModelConfig& cfg, std::span<const PlanTensor> tensors, Precision p, int context,
                               const PlanTarget& t);

/// MemAvailable from /proc/meminfo (0 when unknown).
std::uint64_t available_ram_bytes();

/// Model::load: the plan for `requested` on the created backend (CUDA: against its free memory now; the CPU:
/// automatic = bf16, never refused). CUDA refuses a precision whose weights leave no room for even a 16-token
/// context, and automatic when nothing fits.
Result<MemoryPlan> plan_for_load(ops::Backend& be, const Checkpoint& ckpt, Precision requested);
/// Model::create_session: refuse (out_of_memory, with the numbers and the longest context that fits now) a
/// session whose KV cache + scratch + one image's activations exceed the backend's free memory.
Status check_session_fits(ops::Backend& be, const ModelConfig& cfg, int context, int prefill_rows);

/// "12.3 GiB"
std::string format_gib(std::uint64_t bytes);

}  // namespace pixtral
