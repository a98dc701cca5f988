// SPDX-License-Identifier: Apache-2.0
// Session::generate: prompt → longest common prefix with the cached record → image features (cached by content
// hash) → chunked prefill → sample/decode loop with streaming, stop and cancellation.
#include <algorithm>
#include <chrono>

#include "cuda/cuda_ext.h"
#include "runtime/impl.h"
#include "runtime/quant_cache.h"
#include "text/prompt.h"
#include "vision/preprocess.h"

namespace pixtral {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

/// The image parts of a conversation in prompt order: the prompt builder's image-first rule only ever moves a
/// message's single image, so the order of images is their order in the user messages.
std::vector<const Image*> prompt_images(std::span<const Message> messages) {
  std::vector<const Image*> out;
  for (const Message& m : messages)
    if (m.role == Role::user)
      for (const ContentPart& p : m.parts)
        if (p.kind == ContentPart::Kind::image) out.push_back(p.image.get());
  return out;
}

}  // namespace

std::uint64_t image_hash(const Image& img) {
  // XXH64: 8 bytes a step (FNV-1a's one dependent multiply per byte took ~4 ms of a 1024×1024 page's TTFT).
  qcache::Xxh64 h;
  const std::int32_t head[3] = {img.width, img.height, std::int32_t(img.format)};
  h.update(head, sizeof head);
  h.update(img.pixels.data(), img.pixels.size());
  return h.digest();
}

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop: return "stop";
    case FinishReason::length: return "length";
    case FinishReason::cancelled: return "cancelled";
  }
  return "?";
}

ops::CudaExtension* Session::Impl::graph_extension() const {
  ops::Backend& be = *m->backend;
  if (!m->graphs_enabled || be.tracing() || !m->weights.decoder.layers[0].stacked()) return nullptr;
  return ops::cuda_extension(be);
}

namespace {
bool same_sampling(const ops::SampleParams& a, const ops::SampleParams& b) {
  return a.temperature == b.temperature && a.top_p == b.top_p && a.top_k == b.top_k && a.seed == b.seed;
}
}  // namespace

/// Sets the device state for (tok, pos), then replays the session's graph when it is the one wanted (with the
/// device sampler and these parameters, or without), else runs the step eagerly in device-state mode (scratch
/// settles outside the capture) and records the same step as the graph.
static Status graph_step(Session::Impl& s, ops::CudaExtension& ext, int tok, int pos, const ops::SampleParams* sp,
                         std::uint64_t draw) {
  const Model::Impl& m = *s.m;
  ops::Backend& be = *m.backend;
  const ModelConfig& cfg = m.ckpt.config();
  const int one[1] = {tok};
  PIXTRAL_RETURN_IF_ERROR(ext.set_decode_state(pos, 1));
  PIXTRAL_RETURN_IF_ERROR(ext.set_decode_tokens(one));
  if (sp) PIXTRAL_RETURN_IF_ERROR(ext.set_decode_draw(draw));
  if (m.graph_owner == &s && m.graph_samples == (sp != nullptr) && (!sp || same_sampling(*sp, m.graph_sample_params)))
    return ext.replay();
  m.graph_owner = nullptr;
  const auto step = [&]() -> Status {
    PIXTRAL_RETURN_IF_ERROR(decoder_forward(be, cfg, m.weights.decoder, m.ckpt.rope_pairs(), one, pos, {}, s.kv,
                                            s.scratch, true, true));
    return sp ? ext.sample_to_state(s.scratch.logits, *sp) : Status{};
  };
  ext.set_device_state_mode(true);
  Status st = step();
  if (st.ok()) st = ext.begin_capture();
  if (st.ok()) {
    st = step();
    const Status end = ext.end_capture();
    if (st.ok()) st = end;
  }
  ext.set_device_state_mode(false);
  if (st.ok()) {
    m.graph_owner = &s;
    m.graph_samples = sp != nullptr;
    if (sp) m.graph_sample_params = *sp;
  }
  return st;
}

Status Session::Impl::decode_step(int tok, int pos) {
  ops::CudaExtension* ext = graph_extension();
  if (!ext) {
    const int one[1] = {tok};
    return decoder_forward(*m->backend, m->ckpt.config(), m->weights.decoder, m->ckpt.rope_pairs(), one, pos, {}, kv,
                           scratch, true);
  }
  return graph_step(*this, *ext, tok, pos, nullptr, 0);
}

Status Session::Impl::decode_step_sampling(int tok, int pos, const ops::SampleParams& sp, std::uint64_t draw) {
  ops::CudaExtension* ext = graph_extension();
  if (!ext) return Status(ErrorCode::internal, "decode_step_sampling without a CUDA graph");
  return graph_step(*this, *ext, tok, pos, &sp, draw);
}

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

void Session::request_stop() { impl_->stop.store(true, std::memory_order_relaxed); }
const std::vector<int>& Session::cached_tokens() const { return impl_->cached; }
int Session::context_length() const { return impl_->options.context_length; }

void Session::truncate(std::size_t n) {
  Impl& s = *impl_;
  if (n >= s.cached.size()) return;
  s.cached.resize(n);
  // A run cut in the middle stays recorded: its cached rows are still checked against the image's hash.
  std::erase_if(s.cached_runs, [&](const CachedImageRun& r) { return r.start >= n; });
}

Result<Prompt> Session::build_prompt(std::span<const Message> messages) const {
  const VisionConfig& vc = impl_->m->ckpt.config().vision;
  ImageGridFn grid = [&](const Image& img) -> Result<std::pair<int, int>> {
    auto g = vision::patch_grid(img.width, img.height, vc.patch_size, vc.image_size);
    if (!g.ok()) return g.status();
    return std::make_pair(g->width, g->height);
  };
  return build_prompt_v3(*impl_->m->tokenizer, messages, grid);
}

Result<Generation> Session::generate(std::span<const Message> messages, const GenerateParams& params,
                                     const PieceCallback& on_piece, const LogitsCallback& on_logits) {
  auto r = run(messages, params, on_piece, on_logits);
  if (!r.ok() && r.status().code() == ErrorCode::out_of_memory)  // the cached record stays valid: nothing is lost
    return with_oom_hint(r.status(), "try a shorter conversation or a smaller image, or close other programs that "
                                     "use the GPU");
  if (!r.ok() && r.status().code() == ErrorCode::device) {
    // The GPU failed mid-turn (a kernel fault, a reset, a lost device): what the cache holds is unknown, so it is
    // forgotten, and the error says what to do. Every later call fails the same way, without waiting on the GPU.
    impl_->cached.clear();
    impl_->cached_runs.clear();
    impl_->features.clear();
    return Status(ErrorCode::device, r.status().message() +
                                         " — the GPU reported an error (it may have been reset or lost); reload "
                                         "the model, and if it keeps failing restart the app or check the driver");
  }
  return r;
}

Result<Generation> Session::run(std::span<const Message> messages, const GenerateParams& params,
                                const PieceCallback& on_piece, const LogitsCallback& on_logits) {
  Impl& s = *impl_;
  const Model::Impl& m = *s.m;
  const ModelConfig& cfg = m.ckpt.config();
  ops::Backend& be = *m.backend;
  const auto t_start = Clock::now();
  s.stop.store(false, std::memory_order_relaxed);
  Generation gen;
  Timings& tm = gen.timings;

  auto prompt = build_prompt(messages);
  if (!prompt.ok()) return prompt.status();
  const std::vector<int>& ids = prompt->tokens;
  gen.prompt_tokens = ids;
  tm.prompt_tokens = int(ids.size());
  if (params.max_tokens < 1) return Status(ErrorCode::invalid_argument, "max_tokens must be at least 1");
  if (int(ids.size()) + 1 > s.options.context_length)
    return Status(ErrorCode::context_overflow,
                  "the prompt needs " + std::to_string(ids.size()) + " tokens but the context holds " +
                      std::to_string(s.options.context_length) +
                      "; remove an image or earlier messages, or use a longer context");

  // Image identity per run.
  std::vector<const Image*> images = prompt_images(messages);
  if (images.size() != prompt->images.size())
    return Status(ErrorCode::internal, "image runs and image parts disagree");
  std::vector<std::uint64_t> hashes;
  for (const Image* img : images) hashes.push_back(image_hash(*img));

  // Longest common prefix with the cached record; an image run only matches with the same content.
  std::size_t lcp = 0;
  while (lcp < s.cached.size() && lcp < ids.size() && s.cached[lcp] == ids[lcp]) ++lcp;
  for (const CachedImageRun& r : s.cached_runs) {
    if (r.start >= lcp) continue;
    bool same = false;
    for (std::size_t i = 0; i < prompt->images.size(); ++i)
      if (prompt->images[i].start == r.start && prompt->images[i].length() == r.length && hashes[i] == r.hash)
        same = true;
    if (!same) lcp = std::min(lcp, r.start);
  }
  if (lcp == ids.size()) --lcp;  // the last prompt row must run to produce logits
  truncate(lcp);
  tm.reused_tokens = int(lcp);

  // Image features for runs that reach past the reused prefix; encode the missing ones in one batch.
  const auto t_pre = Clock::now();
  std::vector<vision::Pixels>& pixels = m.pixel_buffers;  // reused across turns and sessions
  std::size_t n_pixels = 0;
  std::vector<std::uint64_t> to_encode;
  for (std::size_t i = 0; i < images.size(); ++i) {
    const ImageRun& run = prompt->images[i];
    if (run.start + run.length() <= lcp || s.features.count(hashes[i])) continue;  // cached rows or features
    if (std::find(to_encode.begin(), to_encode.end(), hashes[i]) != to_encode.end()) continue;
    if (pixels.size() <= n_pixels) pixels.emplace_back();
    Status st = vision::preprocess_into(images[i]->view(), cfg.vision.patch_size, cfg.vision.image_size,
                                        pixels[n_pixels]);
    if (!st.ok()) return st.with_context("image " + std::to_string(i + 1));
    ++n_pixels;
    to_encode.push_back(hashes[i]);
  }
  tm.preprocess_ms = ms_since(t_pre);
  if (n_pixels > 0) {
    const auto t_vis = Clock::now();
    std::vector<VisionImage> vin;
    for (std::size_t i = 0; i < n_pixels; ++i) vin.push_back({pixels[i].chw.data(), pixels[i].height, pixels[i].width});
    auto owner = std::make_shared<TensorSet>(be);
    std::vector<ops::Tensor> out;
    Status st = encode_images(be, cfg, m.weights.vision, m.ckpt.rope_pairs(), vin, *owner, out);
    if (!st.ok()) {
      if (st.code() == ErrorCode::out_of_memory)
        return Status(ErrorCode::out_of_memory, st.message() + " while encoding images — try a smaller image");
      return st;
    }
    for (std::size_t i = 0; i < to_encode.size(); ++i) s.features[to_encode[i]] = Impl::Features{owner, out[i]};
    PIXTRAL_RETURN_IF_ERROR(be.synchronize());
    tm.vision_ms = ms_since(t_vis);
  }

  // Prefill [lcp, ids.size()) in chunks; [IMG] rows receive their image's features in order.
  const auto t_prefill = Clock::now();
  // Equal chunks of at most prefill_chunk rows (multiples of 64): 4193 rows run as 2 × 2112, not 4096 + 97 — a
  // 97-row chunk is bound by reading every weight once (~5.5 ms for Pixtral-12B on an H200), an equal share is
  // not.
  const std::size_t rows_left = ids.size() - lcp;
  const std::size_t max_chunk = std::size_t(s.options.prefill_chunk);
  const std::size_t n_chunks = (rows_left + max_chunk - 1) / max_chunk;
  const std::size_t chunk =
      n_chunks <= 1 ? max_chunk : std::min(max_chunk, ((rows_left + n_chunks - 1) / n_chunks + 63) / 64 * 64);
  std::vector<ChunkImageRows> chunk_images;
  for (std::size_t c0 = lcp; c0 < ids.size(); c0 += chunk) {
    if (s.stop.load(std::memory_order_relaxed)) {
      gen.finish = FinishReason::cancelled;
      tm.prefill_ms = ms_since(t_prefill);
      return gen;
    }
    const std::size_t c1 = std::min(ids.size(), c0 + chunk);
    chunk_images.clear();
    for (std::size_t i = 0; i < prompt->images.size(); ++i) {
      const ImageRun& run = prompt->images[i];
      if (run.start >= c1 || run.start + run.length() <= c0) continue;
      ChunkImageRows rows;
      rows.features = s.features.at(hashes[i]).rows;
      rows.src_row0 = -1;
      for (int r = 0; r < run.height_patches; ++r)
        for (int c = 0; c < run.width_patches; ++c) {
          const std::size_t pos = run.start + std::size_t(r) * (run.width_patches + 1) + c;
          if (pos < c0 || pos >= c1) continue;
          if (rows.src_row0 < 0) rows.src_row0 = r * run.width_patches + c;
          rows.local_rows.push_back(int(pos - c0));
        }
      if (!rows.local_rows.empty()) chunk_images.push_back(std::move(rows));
    }
    std::span<const int> tokens(ids.data() + c0, c1 - c0);
    PIXTRAL_RETURN_IF_ERROR(decoder_forward(be, cfg, m.weights.decoder, m.ckpt.rope_pairs(), tokens, int(c0),
                                            chunk_images, s.kv, s.scratch, c1 == ids.size()));
    s.cached.insert(s.cached.end(), tokens.begin(), tokens.end());
    for (std::size_t i = 0; i < prompt->images.size(); ++i)
      if (prompt->images[i].start >= c0 && prompt->images[i].start < c1)
        s.cached_runs.push_back({prompt->images[i].start, prompt->images[i].length(), hashes[i]});
  }
  // Keep only the features of images this conversation still shows.
  std::erase_if(s.features,
                [&](const auto& kv) { return std::find(hashes.begin(), hashes.end(), kv.first) == hashes.end(); });

  // Sample / decode loop.
  Tokenizer::StreamDecoder stream(*m.tokenizer);
  const int eos = m.tokenizer->special().eos;
  auto t_decode = Clock::now();
  const ops::SampleParams sample_params{params.temperature, params.top_p, params.top_k, params.seed};
  // With a decode graph, the device sampler runs inside it: the step writes the next token into the device state
  // for the next replay (no copy from the host between tokens) and into host memory for us. Greedy runs queue
  // the steps that consume the next `ahead` tokens before reading them, so the host's round trip is off the GPU's
  // path (as many steps too many are computed when the turn ends by a stop token or a cancellation: their KV rows
  // lie past the cached record and are never used). Non-greedy runs are not queued ahead: a draw the device
  // leaves to the host needs that step's logits.
  ops::CudaExtension* const gext =
      !on_logits && m.device_sampling && m.decode_pipeline > 0 ? s.graph_extension() : nullptr;
  const bool greedy = params.temperature <= 0.0f || params.top_k == 1;
  const int ahead = gext && greedy ? std::max(0, m.decode_pipeline - 1) : 0;
  int issued = 0;  // decode steps queued in this run: step k consumes token k
  const int vocab = int(s.host_logits.size());
  for (int step = 0;; ++step) {
    // The device samples when it can (4 bytes cross instead of the logits); the host sampler decides otherwise
    // and whenever the caller wants the logits themselves.
    int tok = -1;
    bool host_drawn = false;
    if (gext && step > 0) {
      PIXTRAL_RETURN_IF_ERROR(gext->take_sampled_token(&tok));
    } else if (!on_logits && m.device_sampling) {
      PIXTRAL_RETURN_IF_ERROR(be.sample(s.scratch.logits, sample_params, std::uint64_t(step), &tok));
    }
    if (tok < 0) {  // (nothing is queued ahead here: a pipelined run is greedy, which the device always decides)
      PIXTRAL_RETURN_IF_ERROR(be.download(s.scratch.logits, s.host_logits.data()));
      if (on_logits) on_logits(s.host_logits);
      tok = s.sampler.sample(s.host_logits, params, std::uint64_t(step));
      host_drawn = true;
    }
    if (tok < 0 || tok >= vocab)
      return Status(ErrorCode::internal, "sampled token id " + std::to_string(tok) + " is outside the vocabulary");
    gen.tokens.push_back(tok);
    if (step == 0) {
      tm.prefill_ms = ms_since(t_prefill);
      tm.ttft_ms = ms_since(t_start);
      t_decode = Clock::now();
    }
    if (tok == eos) {
      gen.finish = FinishReason::stop;
      break;
    }
    const std::string piece = stream.push(tok);
    if (on_piece && !on_piece(piece, tok)) {
      gen.finish = FinishReason::cancelled;
      break;
    }
    if (s.stop.load(std::memory_order_relaxed)) {
      gen.finish = FinishReason::cancelled;
      break;
    }
    if (int(gen.tokens.size()) >= params.max_tokens) {
      gen.finish = FinishReason::length;
      break;
    }
    const int pos = int(s.cached.size());
    if (pos + 1 >= s.options.context_length) {
      gen.finish = FinishReason::length;
      break;
    }
    if (!gext) {
      PIXTRAL_RETURN_IF_ERROR(s.decode_step(tok, pos));
    } else if (step == 0) {
      PIXTRAL_RETURN_IF_ERROR(s.decode_step_sampling(tok, pos, sample_params, 1));
      issued = 1;
    } else if (issued == step) {  // the device state already holds pos and the draw; the token unless the host drew it
      if (host_drawn) PIXTRAL_RETURN_IF_ERROR(gext->set_decode_tokens(std::span<const int>(&tok, 1)));
      PIXTRAL_RETURN_IF_ERROR(gext->replay());
      ++issued;
    }
    s.cached.push_back(tok);
    // Later steps, queued before their tokens are read: only those that will run (step k runs unless the turn ends
    // by length first: k + 1 < max_tokens, and its position pos + k - step stays inside the context).
    while (gext && issued <= step + ahead && issued + 1 < params.max_tokens &&
           pos + (issued - step) + 1 < s.options.context_length) {
      PIXTRAL_RETURN_IF_ERROR(gext->replay());
      ++issued;
    }
  }
  const std::string tail = stream.finish();
  if (!tail.empty() && on_piece) on_piece(tail, -1);
  tm.generated_tokens = int(gen.tokens.size());
  if (gen.tokens.size() > 1) tm.decode_ms_per_token = ms_since(t_decode) / double(gen.tokens.size() - 1);
  gen.text = m.tokenizer->decode(gen.tokens);
  return gen;
}

}  // namespace pixtral
