// SPDX-License-Identifier: Apache-2.0
// Private state behind pixtral::Model and pixtral::Session.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>

#include "cuda/cuda_ext.h"
#include "io/checkpoint.h"
#include "model/forward.h"
#include "model/weights.h"
#include "pixtral/model.h"
#include "runtime/sampler.h"
#include "vision/preprocess.h"

namespace pixtral {

struct Model::Impl {
  Checkpoint ckpt;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ops::Backend> backend;
  ModelWeights weights;
  ModelInfo info;
  /// The session whose decode step the backend's CUDA graph holds (one graph per backend), and whether the graph
  /// ends with the device sampler (then with these parameters).
  mutable const void* graph_owner = nullptr;
  mutable bool graph_samples = false;
  mutable ops::SampleParams graph_sample_params;
  /// Preprocessing output buffers, reused by every session's turns (a model is used from one thread at a time):
  /// a 1024×1024 page does not fault in 12 MB of fresh pages per question.
  mutable std::vector<vision::Pixels> pixel_buffers;
  bool graphs_enabled = true;   ///< PIXTRAL_NO_GRAPHS=1: every decode step runs its ops
  bool device_sampling = true;  ///< Backend::sample first (PIXTRAL_HOST_SAMPLER=1: always the host sampler)
  /// With a decode graph and device sampling: N ≥ 1 the sampler inside the graph and greedy steps queued N − 1
  /// ahead of the token the host reads (default 2: one ahead); 0 neither (PIXTRAL_DECODE_PIPELINE=0..7, A/B).
  int decode_pipeline = 2;

  ~Impl() {
    if (backend) free_weights(*backend, weights);
  }
};

/// An image run of the cached token record and the content it was computed from.
struct CachedImageRun {
  std::size_t start = 0;
  std::size_t length = 0;
  std::uint64_t hash = 0;
};

struct Session::Impl {
  const Model* model = nullptr;
  const Model::Impl* m = nullptr;
  SessionOptions options;
  TensorSet state;  // KV cache + decoder scratch
  KvCache kv;
  DecoderScratch scratch;
  std::vector<int> cached;                  // token ids whose K/V rows are in the cache
  std::vector<CachedImageRun> cached_runs;  // image runs inside `cached`
  Sampler sampler;
  std::vector<float> host_logits;
  std::atomic<bool> stop{false};

  // Image features by content hash (adapter outputs, on the backend), kept while the conversation uses them.
  struct Features {
    std::shared_ptr<TensorSet> owner;  // shared by the images encoded in one batch
    ops::Tensor rows;                  // (Hp * Wp, dim)
  };
  std::map<std::uint64_t, Features> features;

  Impl(const Model& model_, const SessionOptions& o)
      : model(&model_), m(&model_.impl()), options(o), state(*model_.impl().backend),
        sampler(model_.impl().info.vocab_size) {}
  ~Impl() {
    if (m->graph_owner == this) m->graph_owner = nullptr;
  }
  /// One batch-1 decoder step for token `tok` at position `pos` (logits into scratch.logits): replays the
  /// session's CUDA graph when the backend has one, else runs the ops.
  Status decode_step(int tok, int pos);
  /// The CUDA extension when decode steps run as a graph (CUDA backend, graphs on, not tracing), else null.
  ops::CudaExtension* graph_extension() const;
  /// decode_step with the device sampler in the graph (graph_extension() must be non-null): sets the decode state
  /// to (tok, pos, draw) and queues the step, which samples draw `draw` into the device state: the next token,
  /// taken with take_sampled_token, is consumed by the next replay without a copy.
  Status decode_step_sampling(int tok, int pos, const ops::SampleParams& sp, std::uint64_t draw);
};

/// Fill impl.info from the checkpoint, the backend and the load choices (shared by Model::load and the synthetic
/// benchmark model).
void fill_model_info(Model::Impl& impl, const std::string& path, const std::string& fallback,
                     const std::string& precision);

/// `st` with " — " + `hint` appended when it is an out-of-memory error that does not yet say what to try.
Status with_oom_hint(const Status& st, const std::string& hint);

/// The environment's A/B switches (PIXTRAL_NO_GRAPHS, PIXTRAL_HOST_SAMPLER, PIXTRAL_DECODE_PIPELINE) into impl.
void read_env_switches(Model::Impl& impl);

/// XXH64 over an image's size, format and pixels: the identity of its features.
std::uint64_t image_hash(const Image& img);

}  // namespace pixtral
