// SPDX-License-Identifier: Apache-2.0
// Reading the model reference fixtures (tests/fixtures/models/<model>/{native,hf,cases/<case>}) written by
// tests/fixtures/models/make_fixtures.py: case.json, the OpenAI-style messages (parsed here, independently of the
// CLI's parser), the PNG inputs, the cv2 pixel references and the float64-reference logits.
// ref: tests/fixtures/models/make_fixtures.py (file layout and meaning of every field)
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pixtral/model.h"
#include "pixtral/session.h"

namespace fixture {

namespace fs = std::filesystem;

struct ImageRef {
  std::string png;     ///< file name in the case folder
  std::string pixels;  ///< float32 CHW reference (cv2 path, before dtype rounding)
  int grid_w = 0, grid_h = 0;
  std::size_t start = 0;  ///< index of the run's first token in prompt_tokens
  std::vector<int> pixel_shape;  ///< [3, H, W]
};

struct Case {
  fs::path dir;           ///< .../<model>/cases/<case>
  fs::path model_dir;     ///< .../<model>
  std::string model, name, dtype;
  nlohmann::json json;
  std::vector<int> prompt_tokens, greedy_tokens;
  std::string finish_reason;
  std::vector<ImageRef> images;
  int logits_rows = 0, vocab = 0;
  std::vector<float> logits;  ///< logits_rows × vocab
  std::string followup, system_variant;

  std::span<const float> logits_row(int i) const {
    return {logits.data() + std::size_t(i) * vocab, std::size_t(vocab)};
  }
  std::string id() const { return model + "/" + name; }
};

/// The fixtures folder (QUIRE_FIXTURES_DIR/models).
fs::path models_dir();
/// Every case found (sorted); empty when the fixtures were not generated. Malformed fixtures → test failure.
const std::vector<Case>& cases();
/// Message to print when skipping.
std::string missing_fixtures_hint();

/// OpenAI-style messages → engine messages; image paths relative to `base`, loaded with read_png.
pixtral::Result<std::vector<pixtral::Message>> parse_messages(const nlohmann::json& msgs, const fs::path& base);

/// Raw little-endian float32 file.
std::vector<float> read_f32(const fs::path& path);
/// ‖a − b‖₂ / ‖b‖₂ in double.
double rel_l2(std::span<const float> a, std::span<const float> b);
/// A loaded model (cached per folder for the whole test binary); nullptr after reporting a failure.
std::shared_ptr<pixtral::Model> load_model(const fs::path& dir);

/// A greedy generation with every logits row captured.
struct Run {
  pixtral::Generation gen;
  std::vector<std::vector<float>> logits;
};
pixtral::Result<Run> run_greedy(pixtral::Session& session, std::span<const pixtral::Message> messages,
                                int max_tokens);

}  // namespace fixture
