// SPDX-License-Identifier: Apache-2.0
// params.json / config.json / preprocessor_config.json → ModelConfig. Every error names the file and the key.
// ref: spec §1.3 (params.json), §1.5 (config.json); mistral_inference/args.py (TransformerArgs, VisionEncoderArgs);
//      mistral_inference/transformer.py (rope_theta default 1e6); transformers MistralConfig / PixtralVisionConfig /
//      LlavaConfig constructors (defaults of absent keys)
#include "io/checkpoint_config.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "pixtral/log.h"

namespace pixtral::io {

using nlohmann::json;

namespace {

// A JSON object being read: remembers which keys were consumed so the rest can be reported as unknown.
class Obj {
 public:
  Obj(const json& j, std::string label, std::string prefix)
      : j_(j), label_(std::move(label)), prefix_(std::move(prefix)) {}

  std::string key_name(const std::string& key) const { return prefix_ + key; }

  /// Present and not null. Marks the key as known.
  bool has(const std::string& key) {
    used_.insert(key);
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
  }
  const json& at(const std::string& key) {
    used_.insert(key);
    return j_.at(key);
  }
  void known(std::initializer_list<const char*> keys) {
    for (const char* k : keys) used_.insert(k);
  }

  Status missing(const std::string& key) const {
    return Status(ErrorCode::format, label_ + ": missing required field '" + key_name(key) + "'");
  }
  Status bad(const std::string& key, const std::string& what) const {
    return Status(ErrorCode::format, label_ + ": field '" + key_name(key) + "' " + what + ", got " +
                                         j_.at(key).dump());
  }
  Status unsupported(const std::string& key, const std::string& why) const {
    std::string value = j_.contains(key) ? " = " + j_.at(key).dump() : " (absent: class default)";
    if (value.size() > 80) value = value.substr(0, 77) + "...";
    return Status(ErrorCode::unsupported, label_ + ": '" + key_name(key) + "'" + value + ": " + why);
  }

  /// Positive (or, with allow_zero, non-negative) int; `def` used when absent (nullopt: required).
  Status get_int(const std::string& key, int& out, std::optional<int> def, bool allow_negative = false) {
    if (!has(key)) {
      if (!def) return missing(key);
      out = *def;
      return Status::success();
    }
    const json& v = j_.at(key);
    if (!v.is_number_integer()) return bad(key, "must be an integer");
    const std::int64_t x = v.is_number_unsigned() ? std::int64_t(std::min<std::uint64_t>(v.get<std::uint64_t>(),
                                                                                          std::uint64_t(INT64_MAX)))
                                                  : v.get<std::int64_t>();
    if (x > INT_MAX || x < INT_MIN) return bad(key, "is out of range");
    if (!allow_negative && x <= 0) return bad(key, "must be a positive integer");
    out = int(x);
    return Status::success();
  }
  Status get_float(const std::string& key, float& out, std::optional<float> def) {
    if (!has(key)) {
      if (!def) return missing(key);
      out = *def;
      return Status::success();
    }
    const json& v = j_.at(key);
    if (!v.is_number()) return bad(key, "must be a number");
    const double d = v.get<double>();
    if (!std::isfinite(d) || d <= 0) return bad(key, "must be a positive number");
    out = float(d);
    return Status::success();
  }
  Status get_bool(const std::string& key, bool& out, bool def) {
    if (!has(key)) {
      out = def;
      return Status::success();
    }
    if (!j_.at(key).is_boolean()) return bad(key, "must be true or false");
    out = j_.at(key).get<bool>();
    return Status::success();
  }
  Status get_string(const std::string& key, std::string& out, const std::string& def) {
    if (!has(key)) {
      out = def;
      return Status::success();
    }
    if (!j_.at(key).is_string()) return bad(key, "must be a string");
    out = j_.at(key).get<std::string>();
    return Status::success();
  }

  /// Warn about keys nobody asked for.
  void warn_unknown() const {
    for (const auto& [k, v] : j_.items())
      if (!used_.count(k)) log(LogLevel::warning, label_ + ": unknown key '" + key_name(k) + "' ignored");
  }

 private:
  const json& j_;
  std::string label_;
  std::string prefix_;
  std::set<std::string> used_;
};

Status parse_object(const std::string& text, const std::string& label, json& out) {
  try {
    out = json::parse(text);
  } catch (const json::exception& e) {
    return Status(ErrorCode::format, label + ": not valid JSON (" + e.what() + ")");
  }
  if (!out.is_object()) return Status(ErrorCode::format, label + ": not a JSON object");
  return Status::success();
}

// Checks shared by both layouts once the numbers are in.
Status check_consistency(const ModelConfig& c, const std::string& label) {
  auto fail = [&](const std::string& m) { return Status(ErrorCode::format, label + ": " + m); };
  if (c.n_heads % c.n_kv_heads != 0)
    return fail("query heads (" + std::to_string(c.n_heads) + ") must be a multiple of key/value heads (" +
                std::to_string(c.n_kv_heads) + ")");
  if (c.head_dim % 2 != 0) return fail("head_dim " + std::to_string(c.head_dim) + " must be even (RoPE pairs)");
  if (!c.has_vision) return Status::success();
  const VisionConfig& v = c.vision;
  if (v.image_size % v.patch_size != 0)
    return fail("vision image_size " + std::to_string(v.image_size) + " is not a multiple of patch_size " +
                std::to_string(v.patch_size));
  if (v.head_dim % 4 != 0)
    return fail("vision head_dim " + std::to_string(v.head_dim) + " must be a multiple of 4 (2-D RoPE)");
  if (v.image_token_id < 0 || v.image_token_id >= c.vocab_size)
    return fail("image token id " + std::to_string(v.image_token_id) + " is outside the vocabulary (" +
                std::to_string(c.vocab_size) + ")");
  return Status::success();
}

// The vision block of params.json ("vision_encoder" or "multimodal.vision_encoder_args").
// ref: mistral_inference/vision_encoder.py VisionEncoderArgs (defaults for the optional keys)
Status parse_vision_encoder(const json& j, const std::string& label, const std::string& prefix, VisionConfig& v) {
  if (!j.is_object()) return Status(ErrorCode::format, label + ": '" + prefix + "' is not a JSON object");
  Obj o(j, label, prefix + ".");
  PIXTRAL_RETURN_IF_ERROR(o.get_int("hidden_size", v.hidden_size, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("num_channels", v.num_channels, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("image_size", v.image_size, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("patch_size", v.patch_size, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("intermediate_size", v.intermediate_size, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("num_hidden_layers", v.num_hidden_layers, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("num_attention_heads", v.num_attention_heads, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_float("rope_theta", v.rope_theta, 10000.0f));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("image_token_id", v.image_token_id, 10, /*allow_negative=*/true));
  PIXTRAL_RETURN_IF_ERROR(o.get_bool("adapter_bias", v.adapter_bias, true));
  if (!o.has("head_dim") && v.hidden_size % v.num_attention_heads != 0)
    return Status(ErrorCode::format, label + ": " + prefix + ".hidden_size " + std::to_string(v.hidden_size) +
                                         " is not divisible by num_attention_heads " +
                                         std::to_string(v.num_attention_heads));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("head_dim", v.head_dim, v.hidden_size / v.num_attention_heads));

  int merge = 1;
  PIXTRAL_RETURN_IF_ERROR(o.get_int("spatial_merge_size", merge, 1));
  if (merge != 1) return o.unsupported("spatial_merge_size", "spatial patch merging is not supported yet");
  bool pre_norm = false;
  PIXTRAL_RETURN_IF_ERROR(o.get_bool("add_pre_mm_projector_layer_norm", pre_norm, false));
  if (pre_norm) return o.unsupported("add_pre_mm_projector_layer_norm", "the pre-projector norm is not supported yet");
  std::string projector;
  PIXTRAL_RETURN_IF_ERROR(o.get_string("mm_projector_id", projector, ""));
  if (!projector.empty()) return o.unsupported("mm_projector_id", "multimodal projectors are not supported yet");
  // Read by later models, not used by the math here (mistral-inference and vLLM take the ids from the tokenizer).
  o.known({"image_break_token_id", "image_end_token_id", "max_image_size"});
  o.warn_unknown();
  return Status::success();
}

}  // namespace

Result<ModelConfig> parse_params_json(const std::string& text, const std::string& label) {
  json j;
  PIXTRAL_RETURN_IF_ERROR(parse_object(text, label, j));
  Obj o(j, label, "");
  ModelConfig c;
  // Math-changing keys first, so a file of an unsupported model says so before anything else.
  if (o.has("moe")) return o.unsupported("moe", "mixture-of-experts models are not supported");
  if (o.has("yarn")) return o.unsupported("yarn", "YaRN RoPE scaling is not supported yet");
  if (o.has("rope_scaling")) return o.unsupported("rope_scaling", "RoPE scaling is not supported yet");
  if (o.has("llama_4_scaling")) return o.unsupported("llama_4_scaling", "query scaling is not supported yet");
  if (o.has("sliding_window")) return o.unsupported("sliding_window", "sliding-window attention is not supported");
  if (o.has("quantization")) return o.unsupported("quantization", "quantized checkpoints are not supported yet");
  if (o.has("quantization_config"))
    return o.unsupported("quantization_config", "quantized checkpoints are not supported yet");
  if (o.has("lora")) return o.unsupported("lora", "LoRA adapters are not supported");
  bool tied = false;
  PIXTRAL_RETURN_IF_ERROR(o.get_bool("tied_embeddings", tied, false));
  if (tied) return o.unsupported("tied_embeddings", "tied input/output embeddings are not supported yet");
  std::string model_type;
  PIXTRAL_RETURN_IF_ERROR(o.get_string("model_type", model_type, "transformer"));
  if (model_type != "transformer") return o.unsupported("model_type", "only 'transformer' models are supported");

  PIXTRAL_RETURN_IF_ERROR(o.get_int("dim", c.dim, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("n_layers", c.n_layers, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("hidden_dim", c.hidden_dim, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("n_heads", c.n_heads, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("n_kv_heads", c.n_kv_heads, std::nullopt));
  if (!o.has("head_dim") && c.dim % c.n_heads != 0)
    return Status(ErrorCode::format, label + ": head_dim is absent and dim " + std::to_string(c.dim) +
                                         " is not divisible by n_heads " + std::to_string(c.n_heads));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("head_dim", c.head_dim, c.dim / c.n_heads));
  // ref: mistral_inference/transformer.py freqs_cis: `theta = self.args.rope_theta or 1000000.0`
  PIXTRAL_RETURN_IF_ERROR(o.get_float("rope_theta", c.rope_theta, 1.0e6f));
  PIXTRAL_RETURN_IF_ERROR(o.get_float("norm_eps", c.norm_eps, std::nullopt));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("vocab_size", c.vocab_size, std::nullopt));
  int ctx = kMaxContext;
  if (o.has("max_seq_len")) {
    PIXTRAL_RETURN_IF_ERROR(o.get_int("max_seq_len", ctx, kMaxContext));
  } else {
    PIXTRAL_RETURN_IF_ERROR(o.get_int("max_position_embeddings", ctx, kMaxContext));
  }
  o.known({"max_seq_len", "max_position_embeddings", "max_batch_size"});
  c.max_context = std::min(ctx, kMaxContext);

  c.has_vision = false;
  if (o.has("vision_encoder")) {
    PIXTRAL_RETURN_IF_ERROR(parse_vision_encoder(o.at("vision_encoder"), label, "vision_encoder", c.vision));
    c.has_vision = true;
  } else if (o.has("multimodal")) {
    const json& mm = o.at("multimodal");
    if (!mm.is_object()) return Status(ErrorCode::format, label + ": 'multimodal' is not a JSON object");
    Obj m(mm, label, "multimodal.");
    if (m.has("vision_encoder_args")) {
      PIXTRAL_RETURN_IF_ERROR(parse_vision_encoder(m.at("vision_encoder_args"), label,
                                                   "multimodal.vision_encoder_args", c.vision));
      c.has_vision = true;
    }
    m.warn_unknown();
  }
  o.warn_unknown();
  PIXTRAL_RETURN_IF_ERROR(check_consistency(c, label));
  return c;
}

namespace {

// Keys every transformers PretrainedConfig may serialise; none of them changes the forward math here.
const std::set<std::string>& generic_hf_keys() {
  static const std::set<std::string> k = {
      "_name_or_path", "transformers_version", "torch_dtype", "dtype", "is_composition", "architectures",
      "return_dict", "output_hidden_states", "output_attentions", "torchscript", "use_bfloat16", "tf_legacy_loss",
      "pruned_heads", "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder", "cross_attention_hidden_size",
      "add_cross_attention", "tie_encoder_decoder", "max_length", "min_length", "do_sample", "early_stopping",
      "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
      "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
      "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
      "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
      "begin_suppress_tokens", "finetuning_task", "id2label", "label2id", "tokenizer_class", "prefix",
      "bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id",
      "task_specific_params", "problem_type", "initializer_range", "attention_dropout", "use_cache",
      "output_router_logits", "ignore_index", "image_seq_length", "gradient_checkpointing", "_attn_implementation",
      "_attn_implementation_autoset", "attn_implementation"};
  return k;
}

// rope_theta (old key) or rope_parameters.rope_theta (transformers ≥ 5), with rope_type "default" only.
Status read_rope(Obj& o, const std::string& label, const std::string& prefix, float& theta) {
  if (o.has("rope_scaling")) return o.unsupported("rope_scaling", "RoPE scaling is not supported yet");
  if (o.has("rope_parameters")) {
    const json& rp = o.at("rope_parameters");
    if (!rp.is_object()) return Status(ErrorCode::format, label + ": '" + prefix + "rope_parameters' is not an object");
    Obj r(rp, label, prefix + "rope_parameters.");
    std::string type;
    PIXTRAL_RETURN_IF_ERROR(r.get_string("rope_type", type, "default"));
    // transformers ≥ 5 writes rope_type "axial" for Pixtral's 2-D vision RoPE (the same math as the default).
    const bool vision = prefix.rfind("vision_config", 0) == 0;
    if (type != "default" && !(vision && type == "axial"))
      return r.unsupported("rope_type", "only the default RoPE is supported");
    r.known({"type"});
    if (r.has("rope_theta")) {
      PIXTRAL_RETURN_IF_ERROR(r.get_float("rope_theta", theta, std::nullopt));
      o.known({"rope_theta"});  // the old key, if also present, is superseded
      r.warn_unknown();
      return Status::success();
    }
    r.warn_unknown();
  }
  return o.get_float("rope_theta", theta, 10000.0f);
}

// text_config: MistralConfig. ref: transformers configuration_mistral.py (defaults below are its constructor's)
Status parse_hf_text(const json& j, const std::string& label, ModelConfig& c) {
  Obj o(j, label, "text_config.");
  std::string type;
  PIXTRAL_RETURN_IF_ERROR(o.get_string("model_type", type, "llama"));
  if (type != "mistral") return o.unsupported("model_type", "the text model must be 'mistral'");
  if (o.has("quantization_config"))
    return o.unsupported("quantization_config", "quantized checkpoints are not supported yet");
  PIXTRAL_RETURN_IF_ERROR(o.get_int("hidden_size", c.dim, 4096));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("intermediate_size", c.hidden_dim, 14336));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("num_hidden_layers", c.n_layers, 32));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("num_attention_heads", c.n_heads, 32));
  // Absent: the class default 8; an explicit null means "same as num_attention_heads" (MistralConfig.__post_init__).
  const bool kv_null = j.contains("num_key_value_heads") && j.at("num_key_value_heads").is_null();
  PIXTRAL_RETURN_IF_ERROR(o.get_int("num_key_value_heads", c.n_kv_heads, kv_null ? c.n_heads : 8));
  if (!o.has("head_dim") && c.dim % c.n_heads != 0)
    return Status(ErrorCode::format, label + ": text_config.head_dim is absent and hidden_size " +
                                         std::to_string(c.dim) + " is not divisible by num_attention_heads " +
                                         std::to_string(c.n_heads));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("head_dim", c.head_dim, c.dim / c.n_heads));
  PIXTRAL_RETURN_IF_ERROR(o.get_float("rms_norm_eps", c.norm_eps, 1e-6f));
  PIXTRAL_RETURN_IF_ERROR(read_rope(o, label, "text_config.", c.rope_theta));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("vocab_size", c.vocab_size, 32000));
  // MistralConfig's default sliding_window is 4096, so an absent key means a 4096-token window.
  if (!j.contains("sliding_window") || !j.at("sliding_window").is_null())
    return o.unsupported("sliding_window", "sliding-window attention is not supported (must be null)");
  o.known({"sliding_window"});
  std::string act;
  PIXTRAL_RETURN_IF_ERROR(o.get_string("hidden_act", act, "silu"));
  if (act != "silu") return o.unsupported("hidden_act", "the decoder FFN must be 'silu'");
  bool tied = false;
  PIXTRAL_RETURN_IF_ERROR(o.get_bool("tie_word_embeddings", tied, false));
  if (tied) return o.unsupported("tie_word_embeddings", "tied input/output embeddings are not supported yet");
  // The 2024 converter writes 1,024,000 here; the trained context is 128k (spec §11 item 8): cap.
  int ctx = kMaxContext;
  PIXTRAL_RETURN_IF_ERROR(o.get_int("max_position_embeddings", ctx, 4096 * 32));
  c.max_context = std::min(ctx, kMaxContext);
  for (const auto& [k, v] : j.items())
    if (generic_hf_keys().count(k)) o.known({k.c_str()});
  o.warn_unknown();
  return Status::success();
}

// vision_config: PixtralVisionConfig. ref: transformers configuration_pixtral.py
Status parse_hf_vision(const json& j, const std::string& label, VisionConfig& v) {
  Obj o(j, label, "vision_config.");
  std::string type;
  // LlavaConfig turns a vision_config without model_type into a CLIP vision config.
  PIXTRAL_RETURN_IF_ERROR(o.get_string("model_type", type, "clip_vision_model"));
  if (type != "pixtral") return o.unsupported("model_type", "the vision tower must be 'pixtral'");
  PIXTRAL_RETURN_IF_ERROR(o.get_int("hidden_size", v.hidden_size, 1024));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("intermediate_size", v.intermediate_size, 4096));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("num_hidden_layers", v.num_hidden_layers, 24));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("num_attention_heads", v.num_attention_heads, 16));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("num_channels", v.num_channels, 3));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("image_size", v.image_size, 1024));
  PIXTRAL_RETURN_IF_ERROR(o.get_int("patch_size", v.patch_size, 16));
  PIXTRAL_RETURN_IF_ERROR(read_rope(o, label, "vision_config.", v.rope_theta));
  if (!o.has("head_dim") && v.hidden_size % v.num_attention_heads != 0)
    return Status(ErrorCode::format, label + ": vision_config.hidden_size is not divisible by num_attention_heads");
  PIXTRAL_RETURN_IF_ERROR(o.get_int("head_dim", v.head_dim, v.hidden_size / v.num_attention_heads));
  // Spec §1.5 warning: the real encoder uses SiLU whatever the config says (the 2024 converter leaves the
  // PixtralVisionConfig default "gelu").
  std::string act;
  PIXTRAL_RETURN_IF_ERROR(o.get_string("hidden_act", act, "gelu"));
  if (act != "silu")
    log(LogLevel::warning, label + ": vision_config.hidden_act is '" + act +
                               (j.contains("hidden_act") ? "'" : "' (class default; key absent)") +
                               "; using SiLU as Pixtral's reference implementations do");
  for (const auto& [k, val] : j.items())
    if (generic_hf_keys().count(k) || k == "tie_word_embeddings") o.known({k.c_str()});
  o.warn_unknown();
  return Status::success();
}

}  // namespace

Result<ModelConfig> parse_hf_config_json(const std::string& text, const std::string& label) {
  json j;
  PIXTRAL_RETURN_IF_ERROR(parse_object(text, label, j));
  Obj o(j, label, "");
  ModelConfig c;
  c.has_vision = true;
  std::string type;
  PIXTRAL_RETURN_IF_ERROR(o.get_string("model_type", type, "llava"));
  if (type != "llava")
    return o.unsupported("model_type", "only LlavaForConditionalGeneration (Pixtral) checkpoints are supported");
  if (o.has("quantization_config"))
    return o.unsupported("quantization_config", "quantized checkpoints are not supported yet");
  if (o.has("architectures")) {
    const json& a = o.at("architectures");
    if (!a.is_array() || std::find(a.begin(), a.end(), json("LlavaForConditionalGeneration")) == a.end())
      return o.unsupported("architectures", "only LlavaForConditionalGeneration is supported");
  }
  bool tied = false;
  PIXTRAL_RETURN_IF_ERROR(o.get_bool("tie_word_embeddings", tied, false));
  if (tied) return o.unsupported("tie_word_embeddings", "tied input/output embeddings are not supported yet");

  if (!o.has("text_config")) return o.unsupported("text_config", "absent (LlavaConfig would default to Llama)");
  if (!o.at("text_config").is_object()) return o.bad("text_config", "must be an object");
  PIXTRAL_RETURN_IF_ERROR(parse_hf_text(o.at("text_config"), label, c));
  if (!o.has("vision_config")) return o.unsupported("vision_config", "absent (LlavaConfig would default to CLIP)");
  if (!o.at("vision_config").is_object()) return o.bad("vision_config", "must be an object");
  PIXTRAL_RETURN_IF_ERROR(parse_hf_vision(o.at("vision_config"), label, c.vision));

  // image_token_index (transformers < 5) or image_token_id; Pixtral's is 10.
  const char* tok_key = o.has("image_token_id") ? "image_token_id" : "image_token_index";
  PIXTRAL_RETURN_IF_ERROR(o.get_int(tok_key, c.vision.image_token_id, 10, /*allow_negative=*/true));
  o.known({"image_token_id", "image_token_index"});
  std::string act;
  PIXTRAL_RETURN_IF_ERROR(o.get_string("projector_hidden_act", act, "gelu"));
  if (act != "gelu") return o.unsupported("projector_hidden_act", "the adapter activation must be 'gelu' (erf)");
  int layer = -2;  // LlavaConfig default
  if (o.has("vision_feature_layer") && !o.at("vision_feature_layer").is_number_integer())
    return o.unsupported("vision_feature_layer", "only the last layer (-1) is supported");
  PIXTRAL_RETURN_IF_ERROR(o.get_int("vision_feature_layer", layer, -2, /*allow_negative=*/true));
  if (layer != -1) return o.unsupported("vision_feature_layer", "only the last layer (-1) is supported");
  std::string strategy;
  PIXTRAL_RETURN_IF_ERROR(o.get_string("vision_feature_select_strategy", strategy, "default"));
  if (strategy != "full")
    return o.unsupported("vision_feature_select_strategy", "Pixtral keeps every patch: must be 'full'");
  PIXTRAL_RETURN_IF_ERROR(o.get_bool("multimodal_projector_bias", c.vision.adapter_bias, true));
  for (const auto& [k, v] : j.items())
    if (generic_hf_keys().count(k)) o.known({k.c_str()});
  o.warn_unknown();
  PIXTRAL_RETURN_IF_ERROR(check_consistency(c, label));
  return c;
}

Status check_preprocessor_config(const std::string& text, const std::string& label, const ModelConfig& config) {
  json j;
  PIXTRAL_RETURN_IF_ERROR(parse_object(text, label, j));
  auto mismatch = [&](const std::string& what, std::int64_t got, const std::string& model_key, int want) {
    return Status(ErrorCode::format, label + ": " + what + " is " + std::to_string(got) + " but the model's " +
                                         model_key + " is " + std::to_string(want));
  };
  if (auto it = j.find("patch_size"); it != j.end() && !it->is_null()) {
    const json& p = *it;
    for (const char* side : {"height", "width"}) {
      const json* v = p.is_object() ? (p.contains(side) ? &p.at(side) : nullptr) : &p;
      if (v == nullptr) continue;
      if (!v->is_number_integer()) return Status(ErrorCode::format, label + ": patch_size is not an integer");
      if (v->get<std::int64_t>() != config.vision.patch_size)
        return mismatch(std::string("patch_size") + (p.is_object() ? std::string(".") + side : ""),
                        v->get<std::int64_t>(), "vision patch_size", config.vision.patch_size);
    }
  }
  if (auto it = j.find("size"); it != j.end() && it->is_object() && it->contains("longest_edge")) {
    const json& e = it->at("longest_edge");
    if (!e.is_number_integer()) return Status(ErrorCode::format, label + ": size.longest_edge is not an integer");
    if (e.get<std::int64_t>() != config.vision.image_size)
      return mismatch("size.longest_edge", e.get<std::int64_t>(), "vision image_size", config.vision.image_size);
  }
  return Status::success();
}

}  // namespace pixtral::io
