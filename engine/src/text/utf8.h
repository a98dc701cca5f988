// SPDX-License-Identifier: Apache-2.0
// UTF-8 helpers of the tokenizer: strict validation (no overlongs, no surrogates, nothing above U+10FFFF) and
// decoding with U+FFFD replacement by Python's bytes.decode("utf-8", "replace") rule — one U+FFFD per maximal
// subpart of an ill-formed sequence (Unicode §3.9 "U+FFFD substitution of maximal subparts").
// ref: CPython Objects/stringlib/codecs.h utf8_decode; Unicode Standard Table 3-7 (well-formed byte sequences).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pixtral::text {

/// Offset of the first byte that does not start (or continue) a well-formed sequence; s.size() when valid.
std::size_t utf8_first_invalid(std::string_view s);

/// Append `bytes` decoded with replacement to `out`. When hold_incomplete_tail is true, a trailing sequence
/// that is well-formed so far but cut short is not decoded. Returns the number of bytes consumed
/// (bytes.size() minus the held-back tail).
std::size_t utf8_decode_replace(std::string_view bytes, std::string& out, bool hold_incomplete_tail = false);

}  // namespace pixtral::text
