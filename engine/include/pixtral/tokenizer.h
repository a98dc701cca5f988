// SPDX-License-Identifier: Apache-2.0
// Tekken tokenizer (tekken.json, spec §2): PCRE2 pre-tokenizer with the file's own pattern, byte-level BPE by
// rank over the first default_vocab_size - default_num_special_tokens entries, ids offset by the number of
// special tokens. Special tokens are never produced from text. Immutable after load; thread-safe to share.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pixtral/status.h"

namespace pixtral {

/// Well-known control ids of the v3 instruct format (spec §2.5).
struct SpecialIds {
  int unk = 0, bos = 1, eos = 2, inst = 3, inst_end = 4, img = 10, img_break = 12, img_end = 13;
};

class Tokenizer {
 public:
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  /// Load tekken.json. Errors: missing file, broken JSON, a pattern PCRE2 rejects, a vocab entry that is not
  /// base64, inconsistent sizes.
  static Result<Tokenizer> load(const std::string& tekken_json_path);
  /// Parse from the file's text (path is only used in messages).
  static Result<Tokenizer> from_json(std::string_view json_text, const std::string& origin = "tekken.json");

  /// Ids of `text` alone (no <s>); special-token strings are ordinary text. Invalid UTF-8 is an error.
  Result<std::vector<int>> encode(std::string_view text) const;
  /// Bytes of the ids joined, decoded as UTF-8 with U+FFFD for invalid sequences; special ids contribute
  /// nothing unless keep_special (then their names).
  std::string decode(std::span<const int> ids, bool keep_special = false) const;
  /// Raw bytes of one id (empty for specials).
  std::string_view token_bytes(int id) const;
  /// Name of a special id ("<s>", "[IMG]", "<SPECIAL_42>"), empty for normal ids.
  std::string special_name(int id) const;

  int vocab_size() const;          ///< default_vocab_size: the model's id space
  int num_special_tokens() const;  ///< default_num_special_tokens (1000 for Pixtral)
  const SpecialIds& special() const;
  std::string_view version() const;  ///< "v3", "v7", ...
  int image_patch_size() const;      ///< from the "multimodal"/"image" block, 0 when absent
  int max_image_size() const;        ///< idem
  int spatial_merge_size() const;    ///< idem, 1 when absent

  /// Incremental decoder for streaming: feed ids one at a time, get the text that is complete so far.
  /// Holds back bytes of a partial UTF-8 sequence until it completes; finish() flushes (U+FFFD if invalid).
  class StreamDecoder {
   public:
    explicit StreamDecoder(const Tokenizer& tok) : tok_(&tok) {}
    std::string push(int id);
    std::string finish();

   private:
    const Tokenizer* tok_;
    std::string pending_;
  };

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pixtral
