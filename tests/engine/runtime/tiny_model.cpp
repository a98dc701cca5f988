// SPDX-License-Identifier: Apache-2.0
#include "tiny_model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "core/tensor.h"

namespace pixtral::tiny {
namespace fs = std::filesystem;

std::string write_tiny_model(const TinyModelSpec& s) {
  const std::string tekken = std::string(QUIRE_FIXTURES_DIR) + "/tokenizer/tekken.json";
  std::ifstream tf(tekken);
  if (!tf) return {};
  const nlohmann::json tj = nlohmann::json::parse(tf);
  const int vocab = tj["config"]["default_vocab_size"];

  char tmpl[] = "/tmp/pixtral-tiny-XXXXXX";
  if (!mkdtemp(tmpl)) return {};
  const fs::path dir(tmpl);
  fs::copy_file(tekken, dir / "tekken.json");

  nlohmann::json params = {{"dim", s.dim},
                           {"n_layers", s.n_layers},
                           {"head_dim", s.head_dim},
                           {"hidden_dim", s.hidden_dim},
                           {"n_heads", s.n_heads},
                           {"n_kv_heads", s.n_kv_heads},
                           {"rope_theta", 1000000000.0},
                           {"norm_eps", 1e-05},
                           {"vocab_size", vocab},
                           {"vision_encoder",
                            {{"hidden_size", s.vision_dim},
                             {"num_channels", 3},
                             {"image_size", 1024},
                             {"patch_size", 16},
                             {"rope_theta", 10000.0},
                             {"intermediate_size", s.vision_hidden},
                             {"num_hidden_layers", s.vision_layers},
                             {"num_attention_heads", s.vision_heads},
                             {"image_token_id", 10}}}};
  std::ofstream(dir / "params.json") << params.dump(2);

  // name → (shape, scale, offset): values = offset + scale * N(0, 1)
  struct Spec {
    std::vector<std::int64_t> shape;
    float scale, offset;
  };
  std::map<std::string, Spec> tensors;
  const int qd = s.n_heads * s.head_dim, kvd = s.n_kv_heads * s.head_dim;
  auto block = [&](const std::string& p, int d, int q, int kv, int h) {
    const float ws = 1.0f / std::sqrt(float(d));
    tensors[p + "attention_norm.weight"] = {{d}, 0.1f, 1.0f};
    tensors[p + "ffn_norm.weight"] = {{d}, 0.1f, 1.0f};
    tensors[p + "attention.wq.weight"] = {{q, d}, ws, 0};
    tensors[p + "attention.wk.weight"] = {{kv, d}, ws, 0};
    tensors[p + "attention.wv.weight"] = {{kv, d}, ws, 0};
    tensors[p + "attention.wo.weight"] = {{d, q}, 1.0f / std::sqrt(float(q)), 0};
    tensors[p + "feed_forward.w1.weight"] = {{h, d}, ws, 0};
    tensors[p + "feed_forward.w3.weight"] = {{h, d}, ws, 0};
    tensors[p + "feed_forward.w2.weight"] = {{d, h}, 1.0f / std::sqrt(float(h)), 0};
  };
  tensors["tok_embeddings.weight"] = {{vocab, s.dim}, 1.0f, 0};
  for (int il = 0; il < s.n_layers; ++il) block("layers." + std::to_string(il) + ".", s.dim, qd, kvd, s.hidden_dim);
  tensors["norm.weight"] = {{s.dim}, 0.1f, 1.0f};
  tensors["output.weight"] = {{vocab, s.dim}, 4.0f / std::sqrt(float(s.dim)), 0};
  tensors["vision_encoder.patch_conv.weight"] = {{s.vision_dim, 3, 16, 16}, 0.05f, 0};
  tensors["vision_encoder.ln_pre.weight"] = {{s.vision_dim}, 0.1f, 1.0f};
  for (int j = 0; j < s.vision_layers; ++j)
    block("vision_encoder.transformer.layers." + std::to_string(j) + ".", s.vision_dim, s.vision_dim, s.vision_dim,
          s.vision_hidden);
  tensors["vision_language_adapter.w_in.weight"] = {{s.dim, s.vision_dim}, 1.0f / std::sqrt(float(s.vision_dim)), 0};
  tensors["vision_language_adapter.w_in.bias"] = {{s.dim}, 0.1f, 0};
  tensors["vision_language_adapter.w_out.weight"] = {{s.dim, s.dim}, 1.0f / std::sqrt(float(s.dim)), 0};
  tensors["vision_language_adapter.w_out.bias"] = {{s.dim}, 0.1f, 0};

  std::mt19937_64 rng(s.seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& [name, t] : tensors) {
    std::int64_t n = 1;
    for (auto d : t.shape) n *= d;
    const std::size_t begin = data.size();
    for (std::int64_t i = 0; i < n; ++i) {
      const float v = t.offset + t.scale * nd(rng);
      if (s.bf16) {
        const std::uint16_t h = f32_to_bf16(v);
        data.append(reinterpret_cast<const char*>(&h), 2);
      } else {
        data.append(reinterpret_cast<const char*>(&v), 4);
      }
    }
    header[name] = {{"dtype", s.bf16 ? "BF16" : "F32"}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string hs = header.dump();
  while (hs.size() % 8) hs.push_back(' ');
  std::ofstream f(dir / "consolidated.safetensors", std::ios::binary);
  const std::uint64_t n = hs.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << hs << data;
  return f ? dir.string() : std::string();
}

}  // namespace pixtral::tiny
