// SPDX-License-Identifier: Apache-2.0
// One-pass SAX reader of tekken.json: the "vocab" array (150k entries in real files) goes straight into flat
// arrays (rank, base64 text in one arena) instead of a DOM of 150k objects; everything else becomes a small
// nlohmann::json document. Validation of the content is the caller's (tokenizer.cpp).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "pixtral/status.h"

namespace pixtral::text {

struct TekkenVocabEntry {
  std::int64_t rank = -1;  ///< -1: missing or not an integer
  std::uint32_t b64_begin = 0, b64_end = 0;
  bool is_object = false;
  bool has_bytes = false;  ///< "token_bytes" present and a string
};

struct TekkenJson {
  nlohmann::json rest;  ///< the document without "vocab"
  bool has_vocab = false;
  std::vector<TekkenVocabEntry> vocab;
  std::string b64_arena;  ///< token_bytes strings, back to back

  std::string_view b64(const TekkenVocabEntry& e) const {
    return std::string_view(b64_arena).substr(e.b64_begin, e.b64_end - e.b64_begin);
  }
};

/// Parse; errors are format errors with nlohmann's position, prefixed with `origin`.
Status parse_tekken_json(std::string_view text, const std::string& origin, TekkenJson* out);

}  // namespace pixtral::text
