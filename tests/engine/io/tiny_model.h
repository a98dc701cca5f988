// SPDX-License-Identifier: Apache-2.0
// A tiny Pixtral-shaped checkpoint (random weights) written in the Mistral-native or the HF layout, for the
// loader tests. Shapes follow spec §1.4 with small sizes; head_dim ≠ dim / n_heads on purpose.
#pragma once

#include <string>
#include <vector>

#include "st_writer.h"

namespace pixtral::testing {

struct TinySpec {
  int dim = 16, n_layers = 2, head_dim = 8, hidden_dim = 24, n_heads = 4, n_kv_heads = 2, vocab = 32;
  int v_hidden = 8, v_channels = 3, v_image = 32, v_patch = 4, v_inter = 12, v_layers = 2, v_heads = 2;
  bool adapter_bias = true;
  std::string dtype = "BF16";
};

inline json tiny_params_json(const TinySpec& s) {
  return json{{"dim", s.dim},
              {"n_layers", s.n_layers},
              {"head_dim", s.head_dim},
              {"hidden_dim", s.hidden_dim},
              {"n_heads", s.n_heads},
              {"n_kv_heads", s.n_kv_heads},
              {"rope_theta", 1000000000.0},
              {"norm_eps", 1e-05},
              {"vocab_size", s.vocab},
              {"vision_encoder",
               {{"hidden_size", s.v_hidden},
                {"num_channels", s.v_channels},
                {"image_size", s.v_image},
                {"patch_size", s.v_patch},
                {"rope_theta", 10000.0},
                {"intermediate_size", s.v_inter},
                {"num_hidden_layers", s.v_layers},
                {"num_attention_heads", s.v_heads},
                {"image_token_id", 10},
                {"adapter_bias", s.adapter_bias}}}};
}

/// config.json as the 2024 converter writes it (keys at MistralConfig/PixtralVisionConfig defaults omitted).
inline json tiny_hf_config_json(const TinySpec& s) {
  return json{{"architectures", {"LlavaForConditionalGeneration"}},
              {"model_type", "llava"},
              {"image_token_index", 10},
              {"projector_hidden_act", "gelu"},
              {"vision_feature_layer", -1},
              {"vision_feature_select_strategy", "full"},
              {"image_seq_length", 1},
              {"multimodal_projector_bias", s.adapter_bias},
              {"text_config",
               {{"model_type", "mistral"},
                {"hidden_size", s.dim},
                {"intermediate_size", s.hidden_dim},
                {"num_hidden_layers", s.n_layers},
                {"num_attention_heads", s.n_heads},
                {"num_key_value_heads", s.n_kv_heads},
                {"head_dim", s.head_dim},
                {"rms_norm_eps", 1e-05},
                {"rope_theta", 1000000000.0},
                {"vocab_size", s.vocab},
                {"sliding_window", nullptr},
                {"max_position_embeddings", 1024000}}},
              {"vision_config",
               {{"model_type", "pixtral"},
                {"hidden_size", s.v_hidden},
                {"intermediate_size", s.v_inter},
                {"num_hidden_layers", s.v_layers},
                {"num_attention_heads", s.v_heads},
                {"num_channels", s.v_channels},
                {"image_size", s.v_image},
                {"patch_size", s.v_patch},
                {"rope_theta", 10000.0},
                {"head_dim", s.v_hidden / s.v_heads},
                {"hidden_act", "silu"}}}};
}

struct NamedShape {
  std::string name;
  std::vector<std::int64_t> shape;
};

/// Every tensor of the model under its Mistral-native name with its shape, in the spec §1.4 order
/// (written out here independently of the library's list).
inline std::vector<NamedShape> model_shapes(const TinySpec& s) {
  std::vector<NamedShape> t;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape) { t.push_back({name, std::move(shape)}); };
  const std::int64_t q = std::int64_t(s.n_heads) * s.head_dim, kv = std::int64_t(s.n_kv_heads) * s.head_dim;
  add("tok_embeddings.weight", {s.vocab, s.dim});
  for (int i = 0; i < s.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    add(p + "attention_norm.weight", {s.dim});
    add(p + "attention.wq.weight", {q, s.dim});
    add(p + "attention.wk.weight", {kv, s.dim});
    add(p + "attention.wv.weight", {kv, s.dim});
    add(p + "attention.wo.weight", {s.dim, q});
    add(p + "ffn_norm.weight", {s.dim});
    add(p + "feed_forward.w1.weight", {s.hidden_dim, s.dim});
    add(p + "feed_forward.w2.weight", {s.dim, s.hidden_dim});
    add(p + "feed_forward.w3.weight", {s.hidden_dim, s.dim});
  }
  add("norm.weight", {s.dim});
  add("output.weight", {s.vocab, s.dim});
  add("vision_encoder.patch_conv.weight", {s.v_hidden, s.v_channels, s.v_patch, s.v_patch});
  add("vision_encoder.ln_pre.weight", {s.v_hidden});
  for (int j = 0; j < s.v_layers; ++j) {
    const std::string p = "vision_encoder.transformer.layers." + std::to_string(j) + ".";
    add(p + "attention_norm.weight", {s.v_hidden});
    for (const char* w : {"wq", "wk", "wv", "wo"}) add(p + "attention." + w + ".weight", {s.v_hidden, s.v_hidden});
    add(p + "ffn_norm.weight", {s.v_hidden});
    add(p + "feed_forward.w1.weight", {s.v_inter, s.v_hidden});
    add(p + "feed_forward.w2.weight", {s.v_hidden, s.v_inter});
    add(p + "feed_forward.w3.weight", {s.v_inter, s.v_hidden});
  }
  add("vision_language_adapter.w_in.weight", {s.dim, s.v_hidden});
  if (s.adapter_bias) add("vision_language_adapter.w_in.bias", {s.dim});
  add("vision_language_adapter.w_out.weight", {s.dim, s.dim});
  if (s.adapter_bias) add("vision_language_adapter.w_out.bias", {s.dim});
  return t;
}

/// Every tensor of the tiny model with random values in `s.dtype`.
inline std::vector<StTensor> tiny_tensors(const TinySpec& s, unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::vector<StTensor> t;
  for (auto& ns : model_shapes(s)) t.push_back(random_tensor(ns.name, s.dtype, ns.shape, rng));
  return t;
}

inline bool replace_prefix(std::string& s, const std::string& from, const std::string& to) {
  if (s.rfind(from, 0) != 0) return false;
  s = to + s.substr(from.size());
  return true;
}
inline void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

/// The HF on-disk name of a native name (spec §1.5 table), written out independently of the library's mapping.
inline std::string hf_name(std::string n, bool new_prefix) {
  const std::string lm = new_prefix ? "model.language_model." : "language_model.model.";
  const std::string vt = new_prefix ? "model.vision_tower." : "vision_tower.";
  const std::string mp = new_prefix ? "model.multi_modal_projector." : "multi_modal_projector.";
  if (n == "output.weight") return new_prefix ? "lm_head.weight" : "language_model.lm_head.weight";
  if (n == "tok_embeddings.weight") return lm + "embed_tokens.weight";
  if (n == "norm.weight") return lm + "norm.weight";
  if (replace_prefix(n, "vision_language_adapter.", mp)) {
    replace_all(n, "w_in.", "linear_1.");
    replace_all(n, "w_out.", "linear_2.");
    return n;
  }
  const bool vision = replace_prefix(n, "vision_encoder.", vt);
  if (!vision) {
    replace_prefix(n, "layers.", lm + "layers.");
    replace_all(n, ".attention_norm.", ".input_layernorm.");
    replace_all(n, ".ffn_norm.", ".post_attention_layernorm.");
    replace_all(n, ".attention.w", ".self_attn.w");
    replace_all(n, ".feed_forward.", ".mlp.");
  }
  for (const char* c : {"q", "k", "v", "o"}) replace_all(n, std::string("attn.w") + c + ".", std::string("attn.") + c + "_proj.");
  for (const char* c : {"q", "k", "v", "o"})
    replace_all(n, std::string("attention.w") + c + ".", std::string("attention.") + c + "_proj.");
  replace_all(n, ".w1.", ".gate_proj.");
  replace_all(n, ".w2.", ".down_proj.");
  replace_all(n, ".w3.", ".up_proj.");
  return n;
}

inline std::vector<StTensor> renamed_hf(std::vector<StTensor> t, bool new_prefix) {
  for (auto& x : t) x.name = hf_name(x.name, new_prefix);
  return t;
}

/// Mistral-native folder: params.json, consolidated.safetensors, tekken.json (content irrelevant to the loader).
inline void write_native(const fs::path& dir, const TinySpec& s, const std::vector<StTensor>& tensors) {
  write_text(dir / "params.json", tiny_params_json(s).dump(2));
  write_safetensors(dir / "consolidated.safetensors", tensors);
  write_text(dir / "tekken.json", "{}");
}

/// HF folder: config.json, model.safetensors (or `shards` shards + index), tekken.json.
inline void write_hf(const fs::path& dir, const TinySpec& s, const std::vector<StTensor>& tensors, bool new_prefix,
                     int shards = 1) {
  write_text(dir / "config.json", tiny_hf_config_json(s).dump(2));
  write_text(dir / "tekken.json", "{}");
  auto hf = renamed_hf(tensors, new_prefix);
  if (shards == 1) {
    write_safetensors(dir / "model.safetensors", hf);
    return;
  }
  json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
  const std::size_t per = (hf.size() + shards - 1) / shards;
  for (int k = 0; k < shards; ++k) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, shards);
    std::vector<StTensor> part(hf.begin() + std::min(hf.size(), k * per), hf.begin() + std::min(hf.size(), (k + 1) * per));
    for (const auto& t : part) index["weight_map"][t.name] = name;
    write_safetensors(dir / name, part);
  }
  write_text(dir / "model.safetensors.index.json", index.dump(2));
}

}  // namespace pixtral::testing
