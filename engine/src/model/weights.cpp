// SPDX-License-Identifier: Apache-2.0
// Binds checkpoint tensors (canonical Mistral names) to backend weights, in the order the model uses them.
#include "model/weights.h"

#include <optional>
#include <string>

namespace pixtral {
namespace {

struct Uploader {
  ops::Backend& backend;
  const Checkpoint& ckpt;
  const UploadProgress& progress;
  QuantizedWeightStore* store = nullptr;
  std::size_t done = 0;
  std::size_t total = 0;
  std::vector<ops::Weight*> created;

  Status bind(ops::Weight& dst, const std::string& name, ops::WeightFormat format = ops::WeightFormat::dense,
              bool host = false) {
    if (!ckpt.has_tensor(name)) return {ErrorCode::not_found, "missing tensor " + name};
    const WeightView& v = ckpt.tensor(name);
    std::optional<ops::Weight> cached = find(name, v.rows(), v.cols(), format, v.dtype);
    auto w = cached                                  ? Result<ops::Weight>(std::move(*cached))
             : format != ops::WeightFormat::dense ? backend.upload_weight_quantized(v, format)
             : host                               ? backend.upload_weight_host(v)
                                                  : backend.upload_weight(v);
    if (!w.ok()) return w.status().with_context("uploading " + name);
    dst = std::move(w.value());
    dst.name = name;
    created.push_back(&dst);
    if (store && dst.quantized()) store->add(dst);
    ++done;
    if (progress && !progress(done, total, name)) return {ErrorCode::cancelled, "loading cancelled"};
    return {};
  }


  /// The already-quantized weight from the store, if any (never for dense weights or a shape the format refuses).
  std::optional<ops::Weight> find(const std::string& name, std::int64_t rows, std::int64_t cols,
                                  ops::WeightFormat format, DType dtype) {
    if (!store || format == ops::WeightFormat::dense || !quant::check_shape(format, rows, cols, name).ok())
      return std::nullopt;
    return store->find(backend, name, rows, cols, format, dtype);
  }

  /// Try the stacked upload of parts; on `unsupported` leave `stacked` empty (the caller binds them one by one).
  Status bind_stacked(ops::Weight& stacked, const std::vector<std::string>& names, const std::string& name,
                      std::vector<ops::Weight*> views, ops::WeightFormat format) {
    std::vector<const WeightView*> parts;
    for (const auto& n : names) {
      if (!ckpt.has_tensor(n)) return {ErrorCode::not_found, "missing tensor " + n};
      parts.push_back(&ckpt.tensor(n));
    }
    for (const WeightView* p : parts)  // a shape the format cannot hold is refused here, naming the tensor
      PIXTRAL_RETURN_IF_ERROR(quant::check_shape(format, p->rows(), p->cols(), p->name));
    std::int64_t rows = 0;
    for (const WeightView* p : parts) rows += p->rows();
    // A stacked weight from the store is used even by a backend that would not stack itself (the CPU): row
    // views of it behave as separate weights.
    std::optional<ops::Weight> cached = find(name, rows, parts[0]->cols(), format, parts[0]->dtype);
    auto w = cached                                  ? Result<ops::Weight>(std::move(*cached))
             : format == ops::WeightFormat::dense ? backend.upload_weight_stacked(parts, name)
                                                  : backend.upload_weight_stacked_quantized(parts, name, format);
    if (!w.ok()) return w.status().code() == ErrorCode::unsupported ? Status() : w.status();
    stacked = std::move(w.value());
    stacked.name = name;
    created.push_back(&stacked);
    if (store && stacked.quantized()) store->add(stacked);
    std::int64_t r0 = 0;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      *views[i] = stacked.rows_view(r0, parts[i]->rows(), names[i]);
      r0 += parts[i]->rows();
    }
    done += parts.size();
    if (progress && !progress(done, total, name)) return {ErrorCode::cancelled, "loading cancelled"};
    return {};
  }

  Status bind_block(BlockWeights& b, const std::string& p, bool try_stacked,
                    ops::WeightFormat f = ops::WeightFormat::dense) {
    if (try_stacked) {
      PIXTRAL_RETURN_IF_ERROR(bind_stacked(b.wqkv,
                                           {p + "attention.wq.weight", p + "attention.wk.weight",
                                            p + "attention.wv.weight"},
                                           p + "attention.wqkv", {&b.wq, &b.wk, &b.wv}, f));
      PIXTRAL_RETURN_IF_ERROR(bind_stacked(b.w13, {p + "feed_forward.w1.weight", p + "feed_forward.w3.weight"},
                                           p + "feed_forward.w13", {&b.w1, &b.w3}, f));
    }
    PIXTRAL_RETURN_IF_ERROR(bind(b.attention_norm, p + "attention_norm.weight"));
    if (!b.stacked()) {
      PIXTRAL_RETURN_IF_ERROR(bind(b.wq, p + "attention.wq.weight", f));
      PIXTRAL_RETURN_IF_ERROR(bind(b.wk, p + "attention.wk.weight", f));
      PIXTRAL_RETURN_IF_ERROR(bind(b.wv, p + "attention.wv.weight", f));
    }
    PIXTRAL_RETURN_IF_ERROR(bind(b.wo, p + "attention.wo.weight", f));
    PIXTRAL_RETURN_IF_ERROR(bind(b.ffn_norm, p + "ffn_norm.weight"));
    if (!b.w13.data) {
      PIXTRAL_RETURN_IF_ERROR(bind(b.w1, p + "feed_forward.w1.weight", f));
      PIXTRAL_RETURN_IF_ERROR(bind(b.w3, p + "feed_forward.w3.weight", f));
    }
    PIXTRAL_RETURN_IF_ERROR(bind(b.w2, p + "feed_forward.w2.weight", f));
    return {};
  }
};

}  // namespace

WeightOptions weight_options(Precision p) {
  WeightOptions o;
  switch (p) {
    case Precision::automatic:  // resolved by the memory planner (runtime/memory_plan) before loading; else bf16
    case Precision::bf16: break;
    case Precision::int8:
      o.linear = ops::WeightFormat::int8_channel;
      o.output = ops::WeightFormat::int8_channel;
      o.embedding_on_host = true;  // the small-GPU precisions: 1.25 GiB of Pixtral-12B's device memory back
      break;
    case Precision::int4:
      o.linear = ops::WeightFormat::int4_g128;
      o.output = ops::WeightFormat::int8_channel;  // the head in int8: see pixtral::Precision
      o.embedding_on_host = true;
      break;
  }
  return o;
}

Result<ModelWeights> upload_weights(ops::Backend& backend, const Checkpoint& ckpt, const UploadProgress& progress,
                                    const WeightOptions& options, QuantizedWeightStore* store) {
  const ModelConfig& cfg = ckpt.config();
  ModelWeights w;
  Uploader up{backend, ckpt, progress, store, 0, 0, {}};
  up.total = 3 + std::size_t(cfg.n_layers) * 9;
  if (cfg.has_vision) up.total += 2 + std::size_t(cfg.vision.num_hidden_layers) * 9 + (cfg.vision.adapter_bias ? 4 : 2);

  auto run = [&]() -> Status {
    // Decoder first: the large part, and what text-only use needs.
    PIXTRAL_RETURN_IF_ERROR(up.bind(w.decoder.tok_embeddings, "tok_embeddings.weight", ops::WeightFormat::dense,
                                    options.embedding_on_host));
    w.decoder.layers.resize(std::size_t(cfg.n_layers));
    for (int il = 0; il < cfg.n_layers; ++il)
      PIXTRAL_RETURN_IF_ERROR(
          up.bind_block(w.decoder.layers[il], "layers." + std::to_string(il) + ".", true, options.linear));
    PIXTRAL_RETURN_IF_ERROR(up.bind(w.decoder.norm, "norm.weight"));
    PIXTRAL_RETURN_IF_ERROR(up.bind(w.decoder.output, "output.weight", options.output));
    if (!cfg.has_vision) return {};
    VisionWeights& v = w.vision;
    PIXTRAL_RETURN_IF_ERROR(up.bind(v.patch_conv, "vision_encoder.patch_conv.weight"));
    PIXTRAL_RETURN_IF_ERROR(up.bind(v.ln_pre, "vision_encoder.ln_pre.weight"));
    v.layers.resize(std::size_t(cfg.vision.num_hidden_layers));
    for (int j = 0; j < cfg.vision.num_hidden_layers; ++j)
      PIXTRAL_RETURN_IF_ERROR(
          up.bind_block(v.layers[j], "vision_encoder.transformer.layers." + std::to_string(j) + ".", false));
    v.has_bias = cfg.vision.adapter_bias;
    PIXTRAL_RETURN_IF_ERROR(up.bind(v.w_in, "vision_language_adapter.w_in.weight"));
    PIXTRAL_RETURN_IF_ERROR(up.bind(v.w_out, "vision_language_adapter.w_out.weight"));
    if (v.has_bias) {
      PIXTRAL_RETURN_IF_ERROR(up.bind(v.w_in_bias, "vision_language_adapter.w_in.bias"));
      PIXTRAL_RETURN_IF_ERROR(up.bind(v.w_out_bias, "vision_language_adapter.w_out.bias"));
    }
    return {};
  };
  Status st = run();
  if (!st.ok()) {
    for (ops::Weight* p : up.created) backend.free_weight(*p);
    return st;
  }
  return w;
}

void free_weights(ops::Backend& backend, ModelWeights& w) {
  auto block = [&](BlockWeights& b) {
    // Row views into stacked weights are not allocations of their own.
    if (b.wqkv.data) b.wq.data = b.wk.data = b.wv.data = nullptr;
    if (b.w13.data) b.w1.data = b.w3.data = nullptr;
    for (ops::Weight* p : {&b.attention_norm, &b.wq, &b.wk, &b.wv, &b.wo, &b.ffn_norm, &b.w1, &b.w2, &b.w3,
                           &b.wqkv, &b.w13})
      if (p->data) backend.free_weight(*p);
  };
  for (auto& b : w.decoder.layers) block(b);
  for (auto& b : w.vision.layers) block(b);
  for (ops::Weight* p : {&w.decoder.tok_embeddings, &w.decoder.norm, &w.decoder.output, &w.vision.patch_conv,
                         &w.vision.ln_pre, &w.vision.w_in, &w.vision.w_in_bias, &w.vision.w_out,
                         &w.vision.w_out_bias})
    if (p->data) backend.free_weight(*p);
  w = {};
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::automatic: return "auto";
    case Precision::bf16: return "bf16";
    case Precision::int8: return "int8";
    case Precision::int4: return "int4";
  }
  return "?";
}

bool parse_precision(std::string_view s, Precision* out) {
  for (Precision p : {Precision::automatic, Precision::bf16, Precision::int8, Precision::int4})
    if (s == precision_name(p)) {
      *out = p;
      return true;
    }
  return false;
}

}  // namespace pixtral
