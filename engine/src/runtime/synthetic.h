// SPDX-License-Identifier: Apache-2.0
// Synthetic models for benchmarks and tests: a Model of a given ModelConfig (by default Pixtral-12B's full sizes,
// spec §1.3/§1.4) whose weights are random (never zeros) and whose tokenizer is a generated tekken.json, so the
// benchmark needs no 25 GB checkpoint. Not for answering questions: the weights are noise.
#pragma once

#include <cstdint>
#include <memory>

#include "io/checkpoint.h"
#include "pixtral/model.h"

namespace pixtral {

/// Pixtral-12B-2409's hyper-parameters (spec §1.3).
ModelConfig pixtral_12b_config();

struct SyntheticOptions {
  ModelConfig config = pixtral_12b_config();
  Device device = Device::cuda;  ///< automatic behaves like Model::load (CUDA when usable, else CPU)
  int threads = 0;               ///< CPU backend threads
  std::uint64_t seed = 1;
  /// Decoder weight storage, quantized on upload through the backend's upload_weight_quantized /
  /// upload_weight_stacked_quantized exactly as Model::load does; automatic is resolved by the memory planner
  /// (CUDA: against the device's free memory; the CPU: bf16).
  Precision precision = Precision::bf16;
  ProgressCallback on_progress;
};

struct SyntheticStats {
  double fill_ms = 0;     ///< generating the random host pool
  double upload_ms = 0;   ///< upload_weights (the same path Model::load takes), synchronized
  std::uint64_t weight_bytes = 0;  ///< bytes of all tensors as stored (bf16)
};

/// Build a Model with random weights for `o.config`. Weights (bf16, uniform with std 0.02 for matrices, ≈1 for
/// norm scales) are drawn into one host pool and uploaded through the normal upload_weights path, each tensor
/// viewing the pool at its own offset. The tokenizer has the 1000 control tokens and a vocabulary whose multi-byte
/// entries use only bytes ≥ 0x80, so ASCII text encodes one token per character. The eos row of the LM head is
/// scaled down so greedy decoding does not stop early. On the CPU backend (weights viewed in place) the pool
/// lives until the process exits.
Result<std::shared_ptr<Model>> make_synthetic_model(const SyntheticOptions& o, SyntheticStats* stats = nullptr);

/// The same random weights written as a real model folder `dir` (created if needed): params.json, tekken.json and
/// a dense consolidated.safetensors of o.config (≈ 25 GB for Pixtral-12B) that Model::load opens like a user's
/// checkpoint — to time loading and quantizing from files (pixtral bench --write-model). Errors name the file.
Status write_synthetic_checkpoint(const std::string& dir, const SyntheticOptions& o);

}  // namespace pixtral
