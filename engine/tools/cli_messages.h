// SPDX-License-Identifier: Apache-2.0
// Chat requests for the CLI: an OpenAI-style messages file (vLLM's chat API / the Pixtral model card) → engine
// Messages. Accepts a bare array or {"messages": [...]}; content is a string or a list of {"type":"text"} and
// {"type":"image_url"} parts; image URLs are paths (relative to the file's folder), file:// URLs or
// data:image/png;base64 URLs. http(s) URLs and a final assistant message are errors.
#pragma once

#include <string>
#include <vector>

#include "pixtral/session.h"

namespace pixtral::cli {

/// Parse a messages JSON text; `base_dir` resolves relative image paths.
Result<std::vector<Message>> parse_messages(const std::string& json_text, const std::string& base_dir);
/// Read and parse a messages file.
Result<std::vector<Message>> load_messages_file(const std::string& path);
/// Load an image for the engine: PNG file path (the CLI reads PNG only).
Result<std::shared_ptr<const Image>> load_image_file(const std::string& path);
/// Standard base64 (padding optional); error on any other character.
Result<std::string> base64_decode(const std::string& text);

}  // namespace pixtral::cli
