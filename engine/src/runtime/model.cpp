// SPDX-License-Identifier: Apache-2.0
// Model::load: checkpoint → tokenizer → backend (CUDA when usable, else the CPU with the reason) → weights.
#include <cstdlib>
#include <thread>

#include "pixtral/log.h"
#include "runtime/impl.h"
#include "runtime/memory_plan.h"
#include "runtime/quant_cache.h"
#include "vision/preprocess.h"

namespace pixtral {

const char* device_name(Device d) {
  switch (d) {
    case Device::automatic: return "auto";
    case Device::cpu: return "cpu";
    case Device::cuda: return "cuda";
  }
  return "?";
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

const ModelInfo& Model::info() const { return impl_->info; }
const Tokenizer& Model::tokenizer() const { return *impl_->tokenizer; }

int Model::image_token_count(int width, int height) const {
  const VisionConfig& vc = impl_->ckpt.config().vision;
  auto g = vision::patch_grid(width, height, vc.patch_size, vc.image_size);
  if (!g.ok()) return 0;
  return (g->width + 1) * g->height;
}

namespace {

Status check_agreement(const ModelConfig& cfg, const Tokenizer& tok) {
  if (tok.vocab_size() != cfg.vocab_size)
    return {ErrorCode::format, "tekken.json default_vocab_size " + std::to_string(tok.vocab_size()) +
                                   " does not match the model's vocab_size " + std::to_string(cfg.vocab_size)};
  if (cfg.has_vision) {
    if (tok.image_patch_size() != 0 && tok.image_patch_size() != cfg.vision.patch_size)
      return {ErrorCode::format, "tekken.json image_patch_size " + std::to_string(tok.image_patch_size()) +
                                     " disagrees with the vision encoder's patch_size " +
                                     std::to_string(cfg.vision.patch_size)};
    if (tok.max_image_size() != 0 && tok.max_image_size() != cfg.vision.image_size)
      return {ErrorCode::format, "tekken.json max_image_size " + std::to_string(tok.max_image_size()) +
                                     " disagrees with the vision encoder's image_size " +
                                     std::to_string(cfg.vision.image_size)};
    if (tok.spatial_merge_size() > 1)
      return {ErrorCode::unsupported, "tekken.json spatial_merge_size " + std::to_string(tok.spatial_merge_size()) +
                                          " (patch merging) is not supported yet"};
  }
  return {};
}

Result<std::unique_ptr<ops::Backend>> make_backend(const LoadOptions& o, std::string& fallback_reason) {
  if (o.device == Device::cpu) return ops::make_cpu_backend(o.threads);
  auto cuda = ops::load_cuda_backend(0);
  if (cuda.ok()) return std::move(cuda.value());
  if (o.device == Device::cuda) return cuda.status().with_context("CUDA backend unavailable");
  fallback_reason = cuda.status().message();
  log(LogLevel::info, "using the CPU backend: " + fallback_reason);
  return ops::make_cpu_backend(o.threads);
}

}  // namespace

Status with_oom_hint(const Status& st, const std::string& hint) {
  if (st.code() != ErrorCode::out_of_memory || st.message().find(" — ") != std::string::npos) return st;
  return Status(ErrorCode::out_of_memory, st.message() + " — " + hint);
}

void read_env_switches(Model::Impl& impl) {
  const auto on = [](const char* name) {
    const char* v = std::getenv(name);
    return v && *v && *v != '0';
  };
  if (on("PIXTRAL_NO_GRAPHS")) impl.graphs_enabled = false;
  if (on("PIXTRAL_HOST_SAMPLER")) impl.device_sampling = false;
  if (const char* p = std::getenv("PIXTRAL_DECODE_PIPELINE"); p && *p >= '0' && *p <= '7' && !p[1])
    impl.decode_pipeline = *p - '0';
}

void fill_model_info(Model::Impl& impl, const std::string& path, const std::string& fallback,
                     const std::string& precision) {
  const ModelConfig& cfg = impl.ckpt.config();
  ModelInfo& info = impl.info;
  info.path = path;
  info.layout = impl.ckpt.layout() == CheckpointLayout::mistral ? "mistral" : "hf";
  info.weight_dtype = dtype_name(impl.ckpt.weight_dtype());
  info.precision = precision;
  info.backend = impl.backend->name();
  info.device_name = impl.backend->device_name();
  info.fallback_reason = fallback;
  info.dim = cfg.dim;
  info.n_layers = cfg.n_layers;
  info.n_heads = cfg.n_heads;
  info.n_kv_heads = cfg.n_kv_heads;
  info.head_dim = cfg.head_dim;
  info.hidden_dim = cfg.hidden_dim;
  info.vocab_size = cfg.vocab_size;
  info.vision_dim = cfg.vision.hidden_size;
  info.vision_layers = cfg.vision.num_hidden_layers;
  info.patch_size = cfg.vision.patch_size;
  info.max_image_size = cfg.vision.image_size;
  info.max_context = cfg.max_context;
  info.weight_bytes = impl.ckpt.total_bytes();
  info.parameters = 0;
  for (const auto& [name, t] : impl.ckpt.tensors()) info.parameters += std::uint64_t(t.numel());
}

Result<std::shared_ptr<Model>> Model::load(const std::string& dir, const LoadOptions& options) {
  auto impl = std::make_unique<Impl>();
  if (options.on_progress && !options.on_progress(0.0, "reading checkpoint"))
    return Status(ErrorCode::cancelled, "loading cancelled");
  auto ckpt = Checkpoint::open(dir);
  if (!ckpt.ok()) return ckpt.status();
  impl->ckpt = std::move(ckpt.value());
  const ModelConfig& cfg = impl->ckpt.config();

  auto tok = Tokenizer::load(impl->ckpt.tokenizer_path());
  if (!tok.ok()) return tok.status();
  impl->tokenizer = std::make_unique<Tokenizer>(std::move(tok.value()));
  PIXTRAL_RETURN_IF_ERROR(check_agreement(cfg, *impl->tokenizer));

  std::string fallback;
  auto be = make_backend(options, fallback);
  if (!be.ok()) return with_oom_hint(be.status(), "close other programs that use the GPU, or load on the CPU");
  impl->backend = std::move(be.value());

  UploadProgress progress;
  if (options.on_progress)
    progress = [&](std::size_t done, std::size_t total, const std::string& name) {
      return options.on_progress(0.02 + 0.98 * double(done) / double(total), name);
    };
  // The memory plan before any weight is uploaded: resolves automatic, refuses what cannot fit (runtime/memory_plan).
  auto plan = plan_for_load(*impl->backend, impl->ckpt, options.precision);
  if (!plan.ok()) return plan.status();
  const WeightOptions wopt = weight_options(plan->precision);
  // The quantized-weights cache (runtime/quant_cache.h): null for bf16 or QuantCache::off.
  auto qcache = qcache::open_store(dir, impl->ckpt.layout() == CheckpointLayout::mistral ? "mistral" : "hf", options,
                                   wopt);
  auto w = upload_weights(*impl->backend, impl->ckpt, progress, wopt, qcache.get());
  if (!w.ok())
    return with_oom_hint(w.status(), wopt.linear == ops::WeightFormat::int4_g128
                                         ? "the weights do not fit in the GPU's free memory now: close other programs "
                                           "that use the GPU"
                                         : "the weights do not fit in the GPU's free memory now: close other programs "
                                           "that use the GPU, or choose a lower precision (int8 or int4)");
  impl->weights = std::move(w.value());

  read_env_switches(*impl);
  fill_model_info(*impl, dir, fallback,
                  wopt.linear == ops::WeightFormat::int8_channel ? "int8"
                  : wopt.linear == ops::WeightFormat::int4_g128  ? "int4"
                                                                  : "bf16");
  if (qcache && qcache->will_write() && options.on_progress)
    options.on_progress(1.0, "writing the quantized-weights cache");
  qcache::finish_store(qcache.get(), *impl->backend, wopt, impl->info);
  impl->info.plan = *plan;
  if (options.on_progress) options.on_progress(1.0, "ready");
  return std::make_shared<Model>(std::move(impl));
}

Result<std::unique_ptr<Session>> Model::create_session(const SessionOptions& options) const {
  SessionOptions o = options;
  if (o.context_length < 16 || o.context_length > impl_->info.max_context)
    return Status(ErrorCode::invalid_argument, "context length " + std::to_string(o.context_length) +
                                                   " is outside 16.." + std::to_string(impl_->info.max_context));
  if (o.prefill_chunk < 1) o.prefill_chunk = impl_->backend->name() == "cuda" ? kCudaPrefillRows : kCpuPrefillRows;
  if (options.prefill_chunk < 1 && impl_->info.plan.prefill_rows > 0)  // the memory plan's chunk (may be smaller)
    o.prefill_chunk = impl_->info.plan.prefill_rows;
  o.prefill_chunk = std::min(o.prefill_chunk, o.context_length);
  PIXTRAL_RETURN_IF_ERROR(check_session_fits(*impl_->backend, impl_->ckpt.config(), o.context_length, o.prefill_chunk));
  auto s = std::make_unique<Session::Impl>(*this, o);
  Status st = alloc_decoder_state(*impl_->backend, impl_->ckpt.config(), o.context_length, o.prefill_chunk, s->state,
                                  s->kv, s->scratch);
  if (!st.ok())
    return with_oom_hint(st, "a context of " + std::to_string(o.context_length) +
                                 " tokens does not fit; try a shorter context");
  s->host_logits.resize(std::size_t(impl_->info.vocab_size));
  return std::make_unique<Session>(std::move(s));
}

}  // namespace pixtral
