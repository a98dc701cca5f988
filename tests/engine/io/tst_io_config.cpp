// SPDX-License-Identifier: Apache-2.0
// params.json and config.json parsing: defaults, required fields, every unsupported key, unknown-key warnings.
#include <gtest/gtest.h>

#include "io/checkpoint_config.h"
#include "tiny_model.h"

namespace pixtral::testing {
namespace {

using io::parse_hf_config_json;
using io::parse_params_json;

void expect_error(const Result<ModelConfig>& r, ErrorCode code, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "expected an error containing: " << needle;
  EXPECT_EQ(r.status().code(), code) << r.status().to_string();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

// Pixtral-12B-2409's params.json (spec §1.3).
json pixtral_params() {
  return json::parse(R"({
    "dim": 5120, "n_layers": 40, "head_dim": 128, "hidden_dim": 14336, "n_heads": 32, "n_kv_heads": 8,
    "rope_theta": 1000000000.0, "norm_eps": 1e-05, "vocab_size": 131072,
    "vision_encoder": {"hidden_size": 1024, "num_channels": 3, "image_size": 1024, "patch_size": 16,
      "rope_theta": 10000.0, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
      "image_token_id": 10}})");
}

TEST(ParamsJson, Pixtral12B) {
  auto r = parse_params_json(pixtral_params().dump(), "params.json");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->dim, 5120);
  EXPECT_EQ(r->n_layers, 40);
  EXPECT_EQ(r->head_dim, 128);
  EXPECT_EQ(r->hidden_dim, 14336);
  EXPECT_EQ(r->n_heads, 32);
  EXPECT_EQ(r->n_kv_heads, 8);
  EXPECT_EQ(r->rope_theta, 1e9f);
  EXPECT_EQ(r->norm_eps, 1e-5f);
  EXPECT_EQ(r->vocab_size, 131072);
  EXPECT_EQ(r->max_context, 131072);
  ASSERT_TRUE(r->has_vision);
  EXPECT_EQ(r->vision.hidden_size, 1024);
  EXPECT_EQ(r->vision.head_dim, 64);
  EXPECT_EQ(r->vision.image_size, 1024);
  EXPECT_EQ(r->vision.patch_size, 16);
  EXPECT_EQ(r->vision.intermediate_size, 4096);
  EXPECT_EQ(r->vision.num_hidden_layers, 24);
  EXPECT_EQ(r->vision.num_attention_heads, 16);
  EXPECT_EQ(r->vision.rope_theta, 10000.0f);
  EXPECT_EQ(r->vision.image_token_id, 10);
  EXPECT_TRUE(r->vision.adapter_bias);
}

TEST(ParamsJson, Defaults) {
  json p = pixtral_params();
  p.erase("head_dim");
  p.erase("rope_theta");
  p["dim"] = 4096;
  p["vision_encoder"].erase("rope_theta");
  p["vision_encoder"].erase("image_token_id");
  p["vision_encoder"]["adapter_bias"] = false;
  auto r = parse_params_json(p.dump(), "params.json");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->head_dim, 4096 / 32);
  EXPECT_EQ(r->rope_theta, 1.0e6f);  // mistral-inference: `rope_theta or 1000000.0`
  EXPECT_EQ(r->vision.rope_theta, 10000.0f);
  EXPECT_EQ(r->vision.image_token_id, 10);
  EXPECT_FALSE(r->vision.adapter_bias);
}

TEST(ParamsJson, MaxContextFromFileAndCapped) {
  json p = pixtral_params();
  p["max_seq_len"] = 32768;
  EXPECT_EQ(parse_params_json(p.dump(), "params.json")->max_context, 32768);
  p.erase("max_seq_len");
  p["max_position_embeddings"] = 1024000;
  EXPECT_EQ(parse_params_json(p.dump(), "params.json")->max_context, 131072);
}

TEST(ParamsJson, TextOnlyAndMultimodalBlock) {
  json p = pixtral_params();
  json v = p["vision_encoder"];
  p.erase("vision_encoder");
  auto text_only = parse_params_json(p.dump(), "params.json");
  ASSERT_TRUE(text_only.ok()) << text_only.status().to_string();
  EXPECT_FALSE(text_only->has_vision);
  p["multimodal"] = {{"vision_encoder_args", v}};
  auto mm = parse_params_json(p.dump(), "params.json");
  ASSERT_TRUE(mm.ok()) << mm.status().to_string();
  EXPECT_TRUE(mm->has_vision);
  EXPECT_EQ(mm->vision.patch_size, 16);
}

TEST(ParamsJson, MissingRequiredFieldIsNamed) {
  for (const char* key : {"dim", "n_layers", "hidden_dim", "n_heads", "n_kv_heads", "norm_eps", "vocab_size"}) {
    json p = pixtral_params();
    p.erase(key);
    expect_error(parse_params_json(p.dump(), "params.json"), ErrorCode::format,
                 std::string("params.json: missing required field '") + key + "'");
  }
  for (const char* key : {"hidden_size", "num_channels", "image_size", "patch_size", "intermediate_size",
                          "num_hidden_layers", "num_attention_heads"}) {
    json p = pixtral_params();
    p["vision_encoder"].erase(key);
    expect_error(parse_params_json(p.dump(), "params.json"), ErrorCode::format,
                 std::string("missing required field 'vision_encoder.") + key + "'");
  }
}

TEST(ParamsJson, BadValues) {
  json p = pixtral_params();
  p["dim"] = "5120";
  expect_error(parse_params_json(p.dump(), "params.json"), ErrorCode::format, "'dim' must be an integer");
  p = pixtral_params();
  p["n_layers"] = 0;
  expect_error(parse_params_json(p.dump(), "params.json"), ErrorCode::format, "'n_layers' must be a positive integer");
  p = pixtral_params();
  p["n_kv_heads"] = 5;
  expect_error(parse_params_json(p.dump(), "params.json"), ErrorCode::format, "multiple of key/value heads");
  p = pixtral_params();
  p["vision_encoder"]["patch_size"] = 15;
  expect_error(parse_params_json(p.dump(), "params.json"), ErrorCode::format, "not a multiple of patch_size");
  expect_error(parse_params_json("{nope", "params.json"), ErrorCode::format, "params.json: not valid JSON");
  expect_error(parse_params_json("[]", "params.json"), ErrorCode::format, "not a JSON object");
}

TEST(ParamsJson, UnsupportedKeysAreNamed) {
  struct Case { const char* key; json value; bool vision; };
  const Case cases[] = {
      {"moe", json{{"num_experts", 8}}, false},
      {"yarn", json{{"factor", 4}}, false},
      {"rope_scaling", json{{"type", "linear"}}, false},
      {"sliding_window", 4096, false},
      {"quantization", json{{"qformat_weight", "fp8_e4m3"}}, false},
      {"quantization_config", json{{"quant_method", "fp8"}}, false},
      {"tied_embeddings", true, false},
      {"lora", json{{"rank", 16}}, false},
      {"llama_4_scaling", json{{"beta", 0.1}}, false},
      {"spatial_merge_size", 2, true},
      {"mm_projector_id", "patch_merge", true},
      {"add_pre_mm_projector_layer_norm", true, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key);
    json p = pixtral_params();
    (c.vision ? p["vision_encoder"] : p)[c.key] = c.value;
    expect_error(parse_params_json(p.dump(), "params.json"), ErrorCode::unsupported, std::string("'") +
                 (c.vision ? "vision_encoder." : "") + c.key + "'");
  }
  // Null / default values of the same keys are fine.
  json p = pixtral_params();
  p["sliding_window"] = nullptr;
  p["moe"] = nullptr;
  p["tied_embeddings"] = false;
  p["vision_encoder"]["spatial_merge_size"] = 1;
  p["vision_encoder"]["mm_projector_id"] = "";
  p["vision_encoder"]["add_pre_mm_projector_layer_norm"] = false;
  EXPECT_TRUE(parse_params_json(p.dump(), "params.json").ok());
}

TEST(ParamsJson, UnknownKeysWarn) {
  json p = pixtral_params();
  p["frobnicate"] = 1;
  p["vision_encoder"]["sparkle"] = true;
  p["vision_encoder"]["image_break_token_id"] = 12;  // known, ignored silently
  LogCapture logs;
  ASSERT_TRUE(parse_params_json(p.dump(), "params.json").ok());
  EXPECT_TRUE(logs.contains("unknown key 'frobnicate'")) << logs.all();
  EXPECT_TRUE(logs.contains("unknown key 'vision_encoder.sparkle'")) << logs.all();
  EXPECT_FALSE(logs.contains("image_break_token_id")) << logs.all();
}

// config.json as mistral-community/pixtral-12b ships it: keys at class defaults omitted.
json pixtral_hf_config() {
  return json::parse(R"({
    "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_seq_length": 1,
    "image_token_index": 10, "model_type": "llava", "projector_hidden_act": "gelu",
    "text_config": {"hidden_size": 5120, "head_dim": 128, "intermediate_size": 14336, "is_composition": true,
      "max_position_embeddings": 1024000, "model_type": "mistral", "num_hidden_layers": 40,
      "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000000.0, "sliding_window": null,
      "vocab_size": 131072},
    "torch_dtype": "bfloat16", "transformers_version": "4.45.0.dev0",
    "vision_config": {"head_dim": 64, "hidden_act": "silu", "image_size": 1024, "is_composition": true,
      "model_type": "pixtral", "patch_size": 16, "rope_theta": 10000.0, "tie_word_embeddings": false},
    "vision_feature_layer": -1, "vision_feature_select_strategy": "full"})");
}

TEST(HfConfigJson, Pixtral12BWithClassDefaults) {
  LogCapture logs;
  auto r = parse_hf_config_json(pixtral_hf_config().dump(), "config.json");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto native = parse_params_json(pixtral_params().dump(), "params.json");
  ASSERT_TRUE(native.ok());
  EXPECT_EQ(r->dim, native->dim);
  EXPECT_EQ(r->n_layers, native->n_layers);
  EXPECT_EQ(r->head_dim, native->head_dim);
  EXPECT_EQ(r->hidden_dim, native->hidden_dim);
  EXPECT_EQ(r->n_heads, native->n_heads);  // absent: MistralConfig default 32
  EXPECT_EQ(r->n_kv_heads, native->n_kv_heads);
  EXPECT_EQ(r->rope_theta, native->rope_theta);
  EXPECT_EQ(r->norm_eps, native->norm_eps);
  EXPECT_EQ(r->vocab_size, native->vocab_size);
  EXPECT_EQ(r->max_context, 131072);
  EXPECT_EQ(r->vision.hidden_size, native->vision.hidden_size);  // absent: PixtralVisionConfig defaults
  EXPECT_EQ(r->vision.intermediate_size, native->vision.intermediate_size);
  EXPECT_EQ(r->vision.num_hidden_layers, native->vision.num_hidden_layers);
  EXPECT_EQ(r->vision.num_attention_heads, native->vision.num_attention_heads);
  EXPECT_EQ(r->vision.head_dim, native->vision.head_dim);
  EXPECT_EQ(r->vision.image_token_id, 10);
  EXPECT_TRUE(r->vision.adapter_bias);
  EXPECT_TRUE(logs.messages.empty()) << logs.all();
}

TEST(HfConfigJson, NewRopeParametersAndImageTokenId) {
  json c = pixtral_hf_config();
  c["text_config"].erase("rope_theta");
  c["text_config"]["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1000000000.0}};
  c["vision_config"].erase("rope_theta");
  c["vision_config"]["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 20000.0}};
  c.erase("image_token_index");
  c["image_token_id"] = 11;
  auto r = parse_hf_config_json(c.dump(), "config.json");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->rope_theta, 1e9f);
  EXPECT_EQ(r->vision.rope_theta, 20000.0f);
  EXPECT_EQ(r->vision.image_token_id, 11);
  c["vision_config"]["rope_parameters"]["rope_type"] = "axial";  // transformers 5 for Pixtral's 2-D RoPE
  ASSERT_TRUE(parse_hf_config_json(c.dump(), "config.json").ok());
  c["text_config"]["rope_parameters"]["rope_type"] = "axial";  // but not for the decoder
  expect_error(parse_hf_config_json(c.dump(), "config.json"), ErrorCode::unsupported,
               "'text_config.rope_parameters.rope_type'");
  c["text_config"]["rope_parameters"]["rope_type"] = "yarn";
  expect_error(parse_hf_config_json(c.dump(), "config.json"), ErrorCode::unsupported,
               "'text_config.rope_parameters.rope_type'");
}

TEST(HfConfigJson, AbsentKeysTakeClassDefaults) {
  json c = pixtral_hf_config();
  for (const char* k : {"rms_norm_eps", "rope_theta", "vocab_size", "num_key_value_heads", "head_dim"})
    c["text_config"].erase(k);
  auto r = parse_hf_config_json(c.dump(), "config.json");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->norm_eps, 1e-6f);
  EXPECT_EQ(r->rope_theta, 10000.0f);
  EXPECT_EQ(r->vocab_size, 32000);
  EXPECT_EQ(r->n_kv_heads, 8);
  EXPECT_EQ(r->head_dim, 5120 / 32);
  c["text_config"]["num_key_value_heads"] = nullptr;  // explicit null: as many KV heads as query heads
  auto mha = parse_hf_config_json(c.dump(), "config.json");
  ASSERT_TRUE(mha.ok()) << mha.status().to_string();
  EXPECT_EQ(mha->n_kv_heads, 32);
}

TEST(HfConfigJson, VisionActivationWarnsButStaysSilu) {
  json c = pixtral_hf_config();
  c["vision_config"]["hidden_act"] = "gelu";
  LogCapture logs;
  ASSERT_TRUE(parse_hf_config_json(c.dump(), "config.json").ok());
  EXPECT_TRUE(logs.contains("vision_config.hidden_act is 'gelu'")) << logs.all();
  c["vision_config"].erase("hidden_act");
  LogCapture logs2;
  ASSERT_TRUE(parse_hf_config_json(c.dump(), "config.json").ok());
  EXPECT_TRUE(logs2.contains("class default")) << logs2.all();
}

TEST(HfConfigJson, UnsupportedKeysAreNamed) {
  struct Case { const char* where; const char* key; json value; const char* needle; };
  const Case cases[] = {
      {"", "quantization_config", json{{"quant_method", "bitsandbytes"}}, "'quantization_config'"},
      {"", "projector_hidden_act", "relu", "'projector_hidden_act'"},
      {"", "vision_feature_layer", -2, "'vision_feature_layer'"},
      {"", "vision_feature_layer", json::array({-1, -2}), "'vision_feature_layer'"},
      {"", "vision_feature_select_strategy", "default", "'vision_feature_select_strategy'"},
      {"", "model_type", "mistral3", "'model_type'"},
      {"", "tie_word_embeddings", true, "'tie_word_embeddings'"},
      {"text_config", "sliding_window", 4096, "'text_config.sliding_window'"},
      {"text_config", "model_type", "llama", "'text_config.model_type'"},
      {"text_config", "rope_scaling", json{{"type", "linear"}}, "'text_config.rope_scaling'"},
      {"text_config", "hidden_act", "gelu", "'text_config.hidden_act'"},
      {"vision_config", "model_type", "clip_vision_model", "'vision_config.model_type'"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.needle);
    json c = pixtral_hf_config();
    (std::string(k.where).empty() ? c : c[k.where])[k.key] = k.value;
    expect_error(parse_hf_config_json(c.dump(), "config.json"), ErrorCode::unsupported, k.needle);
  }
}

TEST(HfConfigJson, AbsentKeysWhoseClassDefaultIsUnsupported) {
  // MistralConfig defaults sliding_window to 4096; LlavaConfig defaults vision_feature_layer to -2 and the
  // strategy to "default" (drops a patch); a vision_config without model_type becomes CLIP.
  for (const char* path : {"text_config.sliding_window", "vision_feature_layer", "vision_feature_select_strategy",
                           "vision_config.model_type", "text_config.model_type"}) {
    SCOPED_TRACE(path);
    json c = pixtral_hf_config();
    std::string p = path;
    auto dot = p.find('.');
    if (dot == std::string::npos) c.erase(p);
    else c[p.substr(0, dot)].erase(p.substr(dot + 1));
    expect_error(parse_hf_config_json(c.dump(), "config.json"), ErrorCode::unsupported, std::string("'") + path + "'");
  }
}

TEST(HfConfigJson, UnknownKeysWarn) {
  json c = pixtral_hf_config();
  c["text_config"]["wibble"] = 3;
  LogCapture logs;
  ASSERT_TRUE(parse_hf_config_json(c.dump(), "config.json").ok());
  EXPECT_TRUE(logs.contains("unknown key 'text_config.wibble'")) << logs.all();
}

}  // namespace
}  // namespace pixtral::testing
