// SPDX-License-Identifier: Apache-2.0
// Model: a loaded Pixtral checkpoint (Mistral native or Hugging Face layout) bound to a backend. Loaded once,
// immutable afterwards; create one Session per conversation. Call from one thread at a time (the app's worker).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "pixtral/session.h"
#include "pixtral/status.h"
#include "pixtral/tokenizer.h"

namespace pixtral {

enum class Device { automatic, cpu, cuda };
const char* device_name(Device d);  ///< "auto", "cpu", "cuda"

/// Storage of the decoder's linear weights (issue 6), chosen at load: weights are quantized while loading.
/// bf16: as the checkpoint (bf16/f16/f32 → the backend's dtype). int8: per-output-channel symmetric int8 for
/// wq wk wv wo w1 w2 w3 and the output head. int4: symmetric int4 in groups of 128 along the input dimension for
/// wq..w3, the output head in int8 (the head is the most sensitive layer; int8 keeps it near-lossless). The
/// vision encoder, the adapter, the norms and the embedding table always stay in the checkpoint's precision; with
/// int8 and int4 the CUDA backend keeps the embedding table in pinned host memory (one row read over the bus per
/// token, 1.25 GiB of device memory saved for Pixtral-12B).
/// automatic: on CUDA the memory planner (plan_memory) picks bf16 when it fits with a 16k-token context, else int8
/// when it fits with 8k, else int4 when it fits with 4k, else the load is refused saying what is needed and free;
/// on the CPU backend automatic is bf16.
enum class Precision { automatic, bf16, int8, int4 };
const char* precision_name(Precision p);  ///< "auto", "bf16", "int8", "int4"
/// Parse "auto" | "bf16" | "int8" | "int4"; false when unknown.
bool parse_precision(std::string_view s, Precision* out);

/// The quantized-weights cache file (issue 6; format in docs/quant-cache.md). automatic: with precision int8/int4
/// a load first looks for a cache file of that precision whose key (the source files' sizes and mtimes, the model
/// path, the precision, the engine's quantization format version) matches, and reads the quantized weights from
/// it instead of quantizing; otherwise it quantizes and then writes the cache (next to the model, or in
/// $XDG_CACHE_HOME/quire — ~/.cache/quire — when the model folder is not writable). A stale or damaged cache is
/// ignored (logged) and rewritten; a failed write is logged and never fails the load. off: neither read nor write.
enum class QuantCache { automatic, off };

/// Progress in [0,1] with a stage name ("mapping weights", "uploading layer 12/40"); return false to cancel.
using ProgressCallback = std::function<bool(double fraction, std::string_view stage)>;

struct LoadOptions {
  Device device = Device::automatic;  ///< automatic: CUDA when usable, else CPU (logged with the reason)
  int threads = 0;                    ///< CPU threads; 0 = all hardware threads
  Precision precision = Precision::automatic;  ///< decoder weight storage (see Precision)
  QuantCache quant_cache = QuantCache::automatic;  ///< the quantized-weights cache file (see QuantCache)
  std::string quant_cache_dir;  ///< non-empty: the only folder the cache file is read from and written to
  ProgressCallback on_progress;
};

/// Device memory a model needs (issue 6), computed from the checkpoint's config and tensor table (no weights read),
/// the precision and the context length. Bytes are what the backend allocates: CUDA keeps every weight on the
/// device (bf16, or the quantized format + fp32 scales; with int8/int4 the embedding table in pinned host memory,
/// counted in host_bytes, not in total_bytes) and bf16 activations; the CPU backend maps dense weights
/// in place (counted as stored: they occupy RAM while used) and keeps f32 activations.
struct MemoryPlan {
  Precision precision = Precision::bf16;  ///< the precision planned (automatic resolved)
  std::string backend;                    ///< "cuda" or "cpu": the device the bytes are for
  int context = 0;                        ///< KV-cache tokens planned
  int prefill_rows = 0;                   ///< rows of one prefill chunk (decoder scratch)
  std::uint64_t linear_bytes = 0;         ///< decoder wq..w3 of every layer in the format (values + scales)
  std::uint64_t output_bytes = 0;         ///< the LM head (int8 for int8 and int4)
  std::uint64_t embedding_bytes = 0;      ///< tok_embeddings on the device (0 when kept in host memory)
  std::uint64_t host_bytes = 0;           ///< weights kept in pinned host memory (CUDA int8/int4: tok_embeddings)
  std::uint64_t vision_bytes = 0;         ///< vision encoder + adapter (+ patch conv)
  std::uint64_t norm_bytes = 0;           ///< every norm scale
  std::uint64_t weight_bytes = 0;         ///< the five above
  std::uint64_t kv_bytes_per_token = 0;   ///< K and V of every layer for one token
  std::uint64_t kv_bytes = 0;             ///< the KV cache of `context` tokens
  std::uint64_t scratch_bytes = 0;        ///< decoder activations for one prefill chunk + logits
  std::uint64_t vision_activation_bytes = 0;  ///< encoder activations + features of one largest image
  std::uint64_t reserve_bytes = 0;        ///< backend workspaces (cuBLAS, dequantization tile, …) + margin
  std::uint64_t total_bytes = 0;          ///< everything above
  std::uint64_t free_bytes = 0;           ///< device memory (CUDA) or available RAM (CPU) it was planned for; 0: unknown
  bool fits = false;                      ///< total_bytes ≤ free_bytes
  int max_context = 0;                    ///< the longest context that fits (≤ the model's maximum; 0: none)
  /// One line: "int8 on cuda: weights 12.8 GiB + KV 1.2 GiB (8192 tokens) + working 1.6 GiB = 15.6 GiB of 16.0 GiB
  /// free; fits, longest context 11264 tokens".
  std::string summary() const;
};

/// What to plan for. free_bytes 0: measured (CUDA: the device's free memory through a backend created for the
/// purpose; CPU: MemAvailable); a given free_bytes is taken as memory before any CUDA context exists (a context
/// reserve is added).
struct PlanOptions {
  Precision precision = Precision::automatic;
  int context_length = 16384;          ///< tokens (capped at the model's maximum)
  Device device = Device::automatic;   ///< automatic: CUDA when usable, else the CPU
  std::uint64_t free_bytes = 0;
};

struct ModelInfo {
  std::string path;
  std::string layout;        ///< "mistral" or "hf"
  std::string weight_dtype;  ///< "bf16", "f16", "f32"
  std::string precision;     ///< decoder linear weights as loaded: "bf16" (as stored), "int8", "int4"
  /// The quantized-weights cache at this load: "" (bf16: nothing to cache), "off", "hit" (every quantized weight
  /// read from the cache file), "written" (none usable: quantized, then written), "stale" (one was rejected —
  /// stale key or damaged — and rewritten), "unwritten" (quantized; writing the cache failed, logged).
  std::string quant_cache;
  std::string quant_cache_path;  ///< the cache file read or written ("" when none)
  std::string backend;       ///< "cpu" or "cuda"
  std::string device_name;   ///< "CPU (16 threads)", "NVIDIA H100 80GB HBM3"
  std::string fallback_reason;  ///< why automatic chose the CPU, when it did
  int dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, hidden_dim = 0, vocab_size = 0;
  int vision_dim = 0, vision_layers = 0, patch_size = 0, max_image_size = 0;
  int max_context = 0;  ///< longest context the model supports
  std::uint64_t weight_bytes = 0;
  std::uint64_t parameters = 0;
  MemoryPlan plan;  ///< the memory plan of this load (CUDA: measured against free device memory at load)
};

class Model {
 public:
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  /// Load a model folder. Native layout (consolidated*.safetensors + params.json + tekken.json) wins when both
  /// are present. Every expected tensor is checked for presence, dtype and shape.
  static Result<std::shared_ptr<Model>> load(const std::string& dir, const LoadOptions& options = {});

  const ModelInfo& info() const;
  const Tokenizer& tokenizer() const;
  /// Decoder tokens an image of w×h pixels costs after the model's resize: (Wp + 1) · Hp.
  int image_token_count(int width, int height) const;
  /// A new conversation; its KV cache is sized from options.context_length.
  Result<std::unique_ptr<Session>> create_session(const SessionOptions& options = {}) const;

  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// The memory plan for loading `dir` (issue 6): whether it fits and the longest context that does; automatic is
/// resolved as Model::load would. Errors: the folder cannot be opened, or (automatic) nothing fits — the message
/// gives what is needed against what is free and what to try.
Result<MemoryPlan> plan_memory(const std::string& dir, const PlanOptions& options = {});

}  // namespace pixtral
