// SPDX-License-Identifier: Apache-2.0
// Hyper-parameter parsing for both checkpoint layouts (internal to io/, exposed for tests):
// params.json (Mistral native) and config.json + preprocessor_config.json (HF LlavaForConditionalGeneration).
// ref: spec §1.3, §1.5; mistral_inference/args.py + transformer.py; vLLM config adapter (vision_encoder_args);
//      transformers configuration_llava.py / configuration_mistral.py / configuration_pixtral.py (class defaults)
#pragma once

#include <string>

#include "io/checkpoint.h"
#include "pixtral/status.h"

namespace pixtral::io {

/// The largest context any supported checkpoint was trained for; configs asking for more are capped.
inline constexpr int kMaxContext = 131072;

/// Parse params.json text. Missing required field → format error naming it; a key that changes the math and is
/// not supported (moe, yarn, rope_scaling, sliding_window, quantization, tied_embeddings, lora, spatial merge,
/// mm projector, pre-projector norm) → unsupported error naming it; unknown keys → warning through pixtral::log.
Result<ModelConfig> parse_params_json(const std::string& text, const std::string& label);

/// Parse an HF config.json (LlavaForConditionalGeneration with a Pixtral vision tower and a Mistral text model).
/// Absent keys take the transformers class defaults (MistralConfig / PixtralVisionConfig / LlavaConfig).
Result<ModelConfig> parse_hf_config_json(const std::string& text, const std::string& label);

/// preprocessor_config.json (HF): patch_size and size.longest_edge must agree with the vision config.
Status check_preprocessor_config(const std::string& text, const std::string& label, const ModelConfig& config);

}  // namespace pixtral::io
