// SPDX-License-Identifier: Apache-2.0
// Expected tensor list and HF ↔ Mistral name mapping.
// ref: spec §1.4, §1.5; transformers models/pixtral/convert_pixtral_weights_to_hf.py (the mapping it applies);
//      transformers modeling_llava.py (_checkpoint_conversion_mapping: the new `model.` prefixes)
#include "io/checkpoint_names.h"

#include <cctype>
#include <utility>

namespace pixtral::io {

namespace {

using Pair = std::pair<std::string_view, std::string_view>;  // {HF suffix, canonical suffix}

// Inside a decoder layer: `language_model.model.layers.{i}.<hf>` ↔ `layers.{i}.<canonical>`.
constexpr Pair kDecoderLayer[] = {
    {"input_layernorm.weight", "attention_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.q_proj.weight", "attention.wq.weight"},
    {"self_attn.k_proj.weight", "attention.wk.weight"},
    {"self_attn.v_proj.weight", "attention.wv.weight"},
    {"self_attn.o_proj.weight", "attention.wo.weight"},
    {"mlp.gate_proj.weight", "feed_forward.w1.weight"},
    {"mlp.down_proj.weight", "feed_forward.w2.weight"},
    {"mlp.up_proj.weight", "feed_forward.w3.weight"},
};
// Inside a vision layer: `vision_tower.transformer.layers.{j}.<hf>` ↔ `vision_encoder.transformer.layers.{j}.<c>`.
constexpr Pair kVisionLayer[] = {
    {"attention_norm.weight", "attention_norm.weight"},
    {"ffn_norm.weight", "ffn_norm.weight"},
    {"attention.q_proj.weight", "attention.wq.weight"},
    {"attention.k_proj.weight", "attention.wk.weight"},
    {"attention.v_proj.weight", "attention.wv.weight"},
    {"attention.o_proj.weight", "attention.wo.weight"},
    {"feed_forward.gate_proj.weight", "feed_forward.w1.weight"},
    {"feed_forward.down_proj.weight", "feed_forward.w2.weight"},
    {"feed_forward.up_proj.weight", "feed_forward.w3.weight"},
};
constexpr Pair kTextTop[] = {{"embed_tokens.weight", "tok_embeddings.weight"}, {"norm.weight", "norm.weight"}};
constexpr Pair kVisionTop[] = {{"patch_conv.weight", "patch_conv.weight"}, {"ln_pre.weight", "ln_pre.weight"}};
constexpr Pair kProjector[] = {
    {"linear_1.weight", "w_in.weight"},
    {"linear_1.bias", "w_in.bias"},
    {"linear_2.weight", "w_out.weight"},
    {"linear_2.bias", "w_out.bias"},
};

bool strip_prefix(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

template <std::size_t N>
std::optional<std::string_view> lookup(const Pair (&table)[N], std::string_view key, bool forward) {
  for (const auto& [hf, canon] : table)
    if ((forward ? hf : canon) == key) return forward ? canon : hf;
  return std::nullopt;
}

// "<digits>.<rest>" → {digits, rest}; digits without leading zeros (layer "03" is not layer 3).
std::optional<std::pair<std::string_view, std::string_view>> split_index(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0 || i >= s.size() || s[i] != '.' || (i > 1 && s[0] == '0')) return std::nullopt;
  return std::pair{s.substr(0, i), s.substr(i + 1)};
}

// Layered names: "<layers prefix><i>.<suffix>" mapped through a per-layer table.
template <std::size_t N>
std::optional<std::string> map_layered(std::string_view rest, std::string_view from_layers, std::string_view to_layers,
                                       const Pair (&table)[N], bool forward) {
  if (!strip_prefix(rest, from_layers)) return std::nullopt;
  auto idx = split_index(rest);
  if (!idx) return std::nullopt;
  auto suffix = lookup(table, idx->second, forward);
  if (!suffix) return std::nullopt;
  return std::string(to_layers) + std::string(idx->first) + "." + std::string(*suffix);
}

}  // namespace

std::string shape_to_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  using V = std::vector<std::int64_t>;
  std::vector<ExpectedTensor> out;
  const std::int64_t dim = c.dim, q = std::int64_t(c.n_heads) * c.head_dim, kv = std::int64_t(c.n_kv_heads) * c.head_dim;
  out.push_back({"tok_embeddings.weight", V{c.vocab_size, dim}});
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    out.push_back({p + "attention_norm.weight", V{dim}});
    out.push_back({p + "attention.wq.weight", V{q, dim}});
    out.push_back({p + "attention.wk.weight", V{kv, dim}});
    out.push_back({p + "attention.wv.weight", V{kv, dim}});
    out.push_back({p + "attention.wo.weight", V{dim, q}});
    out.push_back({p + "ffn_norm.weight", V{dim}});
    out.push_back({p + "feed_forward.w1.weight", V{c.hidden_dim, dim}});
    out.push_back({p + "feed_forward.w2.weight", V{dim, c.hidden_dim}});
    out.push_back({p + "feed_forward.w3.weight", V{c.hidden_dim, dim}});
  }
  out.push_back({"norm.weight", V{dim}});
  out.push_back({"output.weight", V{c.vocab_size, dim}});
  if (!c.has_vision) return out;

  const VisionConfig& v = c.vision;
  const std::int64_t h = v.hidden_size, vq = std::int64_t(v.num_attention_heads) * v.head_dim;
  out.push_back({"vision_encoder.patch_conv.weight", V{h, v.num_channels, v.patch_size, v.patch_size}});
  out.push_back({"vision_encoder.ln_pre.weight", V{h}});
  for (int j = 0; j < v.num_hidden_layers; ++j) {
    const std::string p = "vision_encoder.transformer.layers." + std::to_string(j) + ".";
    out.push_back({p + "attention_norm.weight", V{h}});
    out.push_back({p + "attention.wq.weight", V{vq, h}});
    out.push_back({p + "attention.wk.weight", V{vq, h}});
    out.push_back({p + "attention.wv.weight", V{vq, h}});
    out.push_back({p + "attention.wo.weight", V{h, vq}});
    out.push_back({p + "ffn_norm.weight", V{h}});
    out.push_back({p + "feed_forward.w1.weight", V{v.intermediate_size, h}});
    out.push_back({p + "feed_forward.w2.weight", V{h, v.intermediate_size}});
    out.push_back({p + "feed_forward.w3.weight", V{v.intermediate_size, h}});
  }
  out.push_back({"vision_language_adapter.w_in.weight", V{dim, h}});
  if (v.adapter_bias) out.push_back({"vision_language_adapter.w_in.bias", V{dim}});
  out.push_back({"vision_language_adapter.w_out.weight", V{dim, dim}});
  if (v.adapter_bias) out.push_back({"vision_language_adapter.w_out.bias", V{dim}});
  return out;
}

std::optional<std::string> hf_to_canonical(std::string_view name) {
  if (name == "language_model.lm_head.weight" || name == "lm_head.weight") return std::string("output.weight");
  std::string_view rest = name;
  if (strip_prefix(rest, "language_model.model.") || strip_prefix(rest, "model.language_model.")) {
    if (auto top = lookup(kTextTop, rest, true)) return std::string(*top);
    return map_layered(rest, "layers.", "layers.", kDecoderLayer, true);
  }
  if (strip_prefix(rest, "vision_tower.") || strip_prefix(rest, "model.vision_tower.")) {
    if (auto top = lookup(kVisionTop, rest, true)) return "vision_encoder." + std::string(*top);
    return map_layered(rest, "transformer.layers.", "vision_encoder.transformer.layers.", kVisionLayer, true);
  }
  if (strip_prefix(rest, "multi_modal_projector.") || strip_prefix(rest, "model.multi_modal_projector.")) {
    if (auto p = lookup(kProjector, rest, true)) return "vision_language_adapter." + std::string(*p);
  }
  return std::nullopt;
}

std::string canonical_to_hf(std::string_view name) {
  if (name == "output.weight") return "language_model.lm_head.weight";
  std::string_view rest = name;
  if (strip_prefix(rest, "vision_encoder.")) {
    if (auto top = lookup(kVisionTop, rest, false)) return "vision_tower." + std::string(*top);
    return map_layered(rest, "transformer.layers.", "vision_tower.transformer.layers.", kVisionLayer, false)
        .value_or("");
  }
  if (strip_prefix(rest, "vision_language_adapter.")) {
    if (auto p = lookup(kProjector, rest, false)) return "multi_modal_projector." + std::string(*p);
    return "";
  }
  if (auto top = lookup(kTextTop, rest, false)) return "language_model.model." + std::string(*top);
  return map_layered(rest, "layers.", "language_model.model.layers.", kDecoderLayer, false).value_or("");
}

}  // namespace pixtral::io
