// SPDX-License-Identifier: Apache-2.0
// Session: one conversation. Owns its KV cache, which survives across turns: generate() reuses the cache up to
// the longest common prefix of the new prompt and the cached token record, and recomputes only the rest. The
// conversation's record is its token ids: an assistant turn is exactly the ids it generated plus </s>, never its
// re-encoded text. Image features are cached by content hash. Not thread-safe except request_stop().
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pixtral/image.h"
#include "pixtral/status.h"

namespace pixtral {

enum class Role { system, user, assistant };

/// One chunk of a message: text or an image (shared, immutable pixels).
struct ContentPart {
  enum class Kind { text, image };
  Kind kind = Kind::text;
  std::string text;
  std::shared_ptr<const Image> image;

  static ContentPart from_text(std::string t) { return {Kind::text, std::move(t), nullptr}; }
  static ContentPart from_image(std::shared_ptr<const Image> img) { return {Kind::image, {}, std::move(img)}; }
};

struct Message {
  Role role = Role::user;
  std::vector<ContentPart> parts;
  /// Assistant turns: the exact ids the model generated (including the final </s> if it stopped there; a
  /// trailing </s> is added when missing). Empty: the text is encoded (imported conversations).
  std::vector<int> tokens;

  static Message user_text(std::string t) { return {Role::user, {ContentPart::from_text(std::move(t))}, {}}; }
  static Message system_text(std::string t) { return {Role::system, {ContentPart::from_text(std::move(t))}, {}}; }
  static Message assistant_text(std::string t) {
    return {Role::assistant, {ContentPart::from_text(std::move(t))}, {}};
  }
};

/// Sampling and stopping. Defaults mirror mistral-inference (spec §8).
struct GenerateParams {
  float temperature = 0.35f;  ///< 0 = greedy (ties → lowest id)
  float top_p = 0.8f;         ///< nucleus mass, 1 = off
  int top_k = 0;              ///< 0 = off
  int max_tokens = 1024;
  std::uint64_t seed = 0;     ///< counter-based RNG: draw i uses (seed, i); identical on every backend
};

enum class FinishReason { stop, length, cancelled };
const char* finish_reason_name(FinishReason r);  ///< "stop", "length", "cancelled"

struct Timings {
  double preprocess_ms = 0;  ///< image conversion, resize, normalise
  double vision_ms = 0;      ///< vision encoder + adapter (0 when cached)
  double prefill_ms = 0;     ///< decoder over the new prompt rows
  double ttft_ms = 0;        ///< generate() entry to the first sampled token
  double decode_ms_per_token = 0;
  int prompt_tokens = 0;
  int reused_tokens = 0;  ///< prompt rows served from the kept KV cache
  int generated_tokens = 0;
};

/// Where an image's token run sits in a prompt.
struct ImageRun {
  std::size_t start = 0;  ///< index of the run's first token
  int width_patches = 0;  ///< Wp: [IMG] per row
  int height_patches = 0; ///< Hp: rows
  std::size_t length() const { return std::size_t(width_patches + 1) * height_patches; }
};

struct Prompt {
  std::vector<int> tokens;     ///< starts with <s>, ends with [/INST]
  std::vector<ImageRun> images;  ///< in prompt order, one per image part
};

struct Generation {
  std::vector<int> prompt_tokens;
  std::vector<int> tokens;  ///< generated ids, including the final </s> when it stopped there
  std::string text;         ///< decoded answer, special tokens dropped
  FinishReason finish = FinishReason::stop;
  Timings timings;
};

/// Streaming callback: a piece of complete UTF-8 text (may be empty for a held-back partial character) and the
/// id that produced it. Return false to stop (finish reason "cancelled").
using PieceCallback = std::function<bool(std::string_view piece, int token)>;
/// Receives the raw logits (before temperature/top-k/top-p) of each generated token's distribution.
using LogitsCallback = std::function<void(std::span<const float> logits)>;

struct SessionOptions {
  int context_length = 16384;  ///< tokens; at most the model's maximum (131072); sizes the KV cache
  /// Rows per prefill step; cancellation is checked between chunks. 0 = the backend's choice: 6144 on CUDA (a
  /// one-image page prompt in one chunk: ~180 ms for Pixtral-12B on an H200; the memory plan may halve it), 256 on
  /// the CPU.
  int prefill_chunk = 0;
};

class Session {
 public:
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Encode a conversation (v3 instruct format) without running the model; for token costs and tests.
  Result<Prompt> build_prompt(std::span<const Message> messages) const;
  /// Run the conversation (ending with a user turn) and generate the assistant's answer.
  /// Errors: a prompt longer than the context (before any work), bad images, device errors.
  Result<Generation> generate(std::span<const Message> messages, const GenerateParams& params,
                              const PieceCallback& on_piece = {}, const LogitsCallback& on_logits = {});
  /// Ask a running generate() to stop: within one token while decoding, one chunk while prefilling.
  /// Thread-safe; the flag is cleared when the next generate() starts.
  void request_stop();
  /// Forget cached KV rows from position n on (regenerate / edit).
  void truncate(std::size_t n);
  /// The token ids whose KV rows are cached, in order.
  const std::vector<int>& cached_tokens() const;
  int context_length() const;

  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);
  Impl& impl() { return *impl_; }

 private:
  Result<Generation> run(std::span<const Message> messages, const GenerateParams& params,
                         const PieceCallback& on_piece, const LogitsCallback& on_logits);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pixtral
