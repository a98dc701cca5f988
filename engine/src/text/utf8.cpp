// SPDX-License-Identifier: Apache-2.0
// UTF-8 validation and replacement decoding (see utf8.h). One classifier drives both: at each position it
// reports a complete sequence, an ill-formed maximal subpart, or a sequence cut short by the end of the input.
// ref: Unicode Standard Table 3-7; CPython bytes.decode("utf-8", "replace").
#include "text/utf8.h"

#include <cstdint>

namespace pixtral::text {
namespace {

enum class Seq { complete, ill_formed, truncated };

/// Classify the sequence starting at p[0] (n ≥ 1 bytes available); *len = bytes of the sequence or of the
/// maximal subpart (≥ 1).
Seq classify(const std::uint8_t* p, std::size_t n, std::size_t* len) {
  const std::uint8_t b0 = p[0];
  *len = 1;
  if (b0 < 0x80) return Seq::complete;
  int need = 0;
  std::uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Table 3-7)
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 == 0xE0) {
    need = 2, lo = 0xA0;
  } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
    need = 2;
  } else if (b0 == 0xED) {
    need = 2, hi = 0x9F;  // no surrogates
  } else if (b0 == 0xF0) {
    need = 3, lo = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    need = 3;
  } else if (b0 == 0xF4) {
    need = 3, hi = 0x8F;  // ≤ U+10FFFF
  } else {
    return Seq::ill_formed;  // 0x80..0xC1, 0xF5..0xFF never start a sequence
  }
  std::size_t i = 1;
  for (int k = 0; k < need; ++k, ++i) {
    if (i >= n) {
      *len = i;
      return Seq::truncated;
    }
    const std::uint8_t c = p[i];
    const bool ok = k == 0 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    if (!ok) {
      *len = i;
      return Seq::ill_formed;
    }
  }
  *len = i;
  return Seq::complete;
}

}  // namespace

std::size_t utf8_first_invalid(std::string_view s) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  std::size_t i = 0;
  while (i < s.size()) {
    if (p[i] < 0x80) {  // ASCII fast path
      ++i;
      continue;
    }
    std::size_t len = 0;
    if (classify(p + i, s.size() - i, &len) != Seq::complete) return i;
    i += len;
  }
  return s.size();
}

std::size_t utf8_decode_replace(std::string_view bytes, std::string& out, bool hold_incomplete_tail) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD
  const auto* p = reinterpret_cast<const std::uint8_t*>(bytes.data());
  std::size_t i = 0;
  out.reserve(out.size() + bytes.size());
  while (i < bytes.size()) {
    std::size_t len = 0;
    switch (classify(p + i, bytes.size() - i, &len)) {
      case Seq::complete:
        out.append(bytes.data() + i, len);
        break;
      case Seq::ill_formed:
        out.append(kReplacement);
        break;
      case Seq::truncated:  // only possible at the very end
        if (hold_incomplete_tail) return i;
        out.append(kReplacement);
        break;
    }
    i += len;
  }
  return i;
}

}  // namespace pixtral::text
