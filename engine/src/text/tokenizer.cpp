// SPDX-License-Identifier: Apache-2.0
// Tekken tokenizer (spec §2): tekken.json loading with the checks mistral-common makes, PCRE2 pre-tokenisation
// with findall semantics (every leftmost match, left to right; text between matches — there is none for the
// tekken pattern — is dropped), byte-level BPE by rank, decoding per run of normal ids with U+FFFD replacement.
// ref: mistral-common src/mistral_common/tokens/tokenizers/tekken.py (Tekkenizer.from_file, __init__,
//      _reload_mergeable_ranks, decode); tiktoken src/lib.rs (CoreBPE::encode_ordinary).
#include "pixtral/tokenizer.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_set>

#include "text/bpe.h"
#include "text/tekken_json.h"
#include "text/utf8.h"

#ifdef PIXTRAL_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

namespace pixtral {

namespace {

// Names of ids 0..19 (spec §2.5, mistral-common SpecialTokens); the rest are <SPECIAL_n>.
constexpr const char* kDefaultSpecialNames[] = {
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]",
    "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]"};

int base64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/// Strict standard base64 with padding (what Python's base64.b64encode writes). False on any other input.
bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.size() % 4 != 0) return false;
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const unsigned char c = static_cast<unsigned char>(in[i + k]);
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return false;  // data after padding
      v[k] = base64_value(c);
      if (v[k] < 0) return false;
    }
    const std::uint32_t bits = (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) |
                               (std::uint32_t(v[2]) << 6) | std::uint32_t(v[3]);
    out.push_back(static_cast<char>((bits >> 16) & 0xFF));
    if (pad < 2) out.push_back(static_cast<char>((bits >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(bits & 0xFF));
  }
  return true;
}

Status format_error(const std::string& origin, const std::string& what) {
  return Status(ErrorCode::format, origin + ": " + what);
}

/// An integer field of a JSON object, or an error naming it.
Status get_int(const nlohmann::json& obj, const char* key, const std::string& where, const std::string& origin,
               int* out, bool required = true) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    return required ? format_error(origin, where + "." + key + " is missing") : Status::success();
  }
  if (!it->is_number_integer()) return format_error(origin, where + "." + key + " must be an integer");
  const auto v = it->get<std::int64_t>();
  if (v < 0 || v > (1 << 30)) return format_error(origin, where + "." + key + " is out of range");
  *out = static_cast<int>(v);
  return Status::success();
}

}  // namespace

struct Tokenizer::Impl {
  std::string origin;
  std::string pattern;
  std::string version;
  int vocab_size = 0;   // default_vocab_size
  int num_special = 0;  // default_num_special_tokens
  int image_patch_size = 0, max_image_size = 0, spatial_merge_size = 1;
  SpecialIds special;
  std::vector<std::string> special_names;  // num_special entries
  text::RankTable ranks;                   // the kept vocab entries; rank r ↔ id r + num_special
#ifdef PIXTRAL_HAVE_PCRE2
  pcre2_code* code = nullptr;
  ~Impl() { pcre2_code_free(code); }
#endif

  Status parse(std::string_view json_text);
  Status compile_pattern();
};

Status Tokenizer::Impl::compile_pattern() {
#ifdef PIXTRAL_HAVE_PCRE2
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                       &err_offset, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    return format_error(origin, "config.pattern does not compile (PCRE2 error at offset " +
                                    std::to_string(err_offset) + ": " + reinterpret_cast<const char*>(buf) + ")");
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is used when JIT is absent
#endif
  return Status::success();
}

Status Tokenizer::Impl::parse(std::string_view json_text) {
  text::TekkenJson parsed;
  PIXTRAL_RETURN_IF_ERROR(text::parse_tekken_json(json_text, origin, &parsed));
  const nlohmann::json& doc = parsed.rest;
  if (!doc.is_object()) return format_error(origin, "top level is not a JSON object");

  // config
  auto cfg_it = doc.find("config");
  if (cfg_it == doc.end() || !cfg_it->is_object()) return format_error(origin, "\"config\" object is missing");
  const auto& cfg = *cfg_it;
  auto pat = cfg.find("pattern");
  if (pat == cfg.end() || !pat->is_string()) return format_error(origin, "config.pattern is missing");
  pattern = pat->get<std::string>();
  if (auto v = cfg.find("version"); v != cfg.end() && v->is_string()) version = v->get<std::string>();
  PIXTRAL_RETURN_IF_ERROR(get_int(cfg, "default_vocab_size", "config", origin, &vocab_size));
  PIXTRAL_RETURN_IF_ERROR(get_int(cfg, "default_num_special_tokens", "config", origin, &num_special));
  int num_vocab_tokens = -1;
  PIXTRAL_RETURN_IF_ERROR(get_int(cfg, "num_vocab_tokens", "config", origin, &num_vocab_tokens, false));

  // vocab: keep the first default_vocab_size - default_num_special_tokens entries (spec §2.1)
  if (!parsed.has_vocab) return format_error(origin, "\"vocab\" array is missing");
  const auto& vocab = parsed.vocab;
  if (num_vocab_tokens >= 0 && std::size_t(num_vocab_tokens) != vocab.size()) {
    return format_error(origin, "config.num_vocab_tokens is " + std::to_string(num_vocab_tokens) +
                                    " but \"vocab\" has " + std::to_string(vocab.size()) + " entries");
  }
  if (num_special < 20) {
    return format_error(origin, "config.default_num_special_tokens is " + std::to_string(num_special) +
                                    "; at least the 20 control tokens of the instruct format are needed");
  }
  const int inner = vocab_size - num_special;
  if (inner < 256) {
    return format_error(origin, "config.default_vocab_size (" + std::to_string(vocab_size) +
                                    ") leaves fewer than 256 vocab entries after the " +
                                    std::to_string(num_special) + " special tokens");
  }
  if (std::size_t(inner) > vocab.size()) {
    return format_error(origin, "config.default_vocab_size - default_num_special_tokens = " +
                                    std::to_string(inner) + " but \"vocab\" has only " +
                                    std::to_string(vocab.size()) + " entries");
  }
  std::string bytes;
  for (int r = 0; r < inner; ++r) {
    const text::TekkenVocabEntry& e = vocab[std::size_t(r)];
    const std::string where = "vocab entry " + std::to_string(r);
    if (!e.is_object) return format_error(origin, where + " is not an object");
    if (e.rank != r) return format_error(origin, where + ": \"rank\" must equal its index " + std::to_string(r));
    if (!e.has_bytes) return format_error(origin, where + ": \"token_bytes\" is missing");
    if (!base64_decode(parsed.b64(e), bytes)) {
      return format_error(origin, "vocab rank " + std::to_string(r) + ": token_bytes \"" +
                                      std::string(parsed.b64(e).substr(0, 40)) + "\" is not valid base64");
    }
    if (r < 256 && (bytes.size() != 1 || static_cast<unsigned char>(bytes[0]) != r)) {
      return format_error(origin, "vocab rank " + std::to_string(r) + " must be the single byte " +
                                      std::to_string(r) + " (ranks 0..255 are the bytes)");
    }
    if (const auto dup = ranks.add(bytes); dup != text::RankTable::kNone) {
      return format_error(origin, "vocab ranks " + std::to_string(dup) + " and " + std::to_string(r) +
                                      " have the same token_bytes");
    }
  }

  // special tokens (absent in some older files → defaults of spec §2.5)
  auto sp_it = doc.find("special_tokens");
  if (sp_it != doc.end() && !sp_it->is_null()) {
    if (!sp_it->is_array()) return format_error(origin, "\"special_tokens\" is not an array");
    std::unordered_set<std::string> seen;
    for (std::size_t i = 0; i < sp_it->size(); ++i) {
      const auto& e = (*sp_it)[i];
      const std::string where = "special_tokens entry " + std::to_string(i);
      if (!e.is_object()) return format_error(origin, where + " is not an object");
      auto rk = e.find("rank");
      if (rk == e.end() || !rk->is_number_integer() || rk->get<std::int64_t>() != std::int64_t(i)) {
        return format_error(origin, where + ": \"rank\" must equal its index " + std::to_string(i));
      }
      auto ts = e.find("token_str");
      if (ts == e.end() || !ts->is_string()) return format_error(origin, where + ": \"token_str\" is missing");
      if (!seen.insert(ts->get<std::string>()).second) {
        return format_error(origin, where + ": duplicate special token \"" + ts->get<std::string>() + "\"");
      }
      special_names.push_back(ts->get<std::string>());
    }
    if (special_names.size() > std::size_t(num_special)) {
      return format_error(origin, "\"special_tokens\" has " + std::to_string(special_names.size()) +
                                      " entries but config.default_num_special_tokens is " +
                                      std::to_string(num_special));
    }
  } else {
    for (const char* n : kDefaultSpecialNames) special_names.emplace_back(n);
  }
  for (std::size_t i = special_names.size(); i < std::size_t(num_special); ++i) {
    special_names.push_back("<SPECIAL_" + std::to_string(i) + ">");
  }
  auto id_of = [&](const char* name, int fallback) {
    for (std::size_t i = 0; i < special_names.size(); ++i) {
      if (special_names[i] == name) return static_cast<int>(i);
    }
    return fallback;
  };
  const SpecialIds d;
  special = {id_of("<unk>", d.unk),     id_of("<s>", d.bos),         id_of("</s>", d.eos),
             id_of("[INST]", d.inst),   id_of("[/INST]", d.inst_end), id_of("[IMG]", d.img),
             id_of("[IMG_BREAK]", d.img_break), id_of("[IMG_END]", d.img_end)};

  // image block: "multimodal" (2024 files) or "image" (2025)
  for (const char* key : {"multimodal", "image"}) {
    auto im = doc.find(key);
    if (im == doc.end() || im->is_null()) continue;
    if (!im->is_object()) return format_error(origin, std::string("\"") + key + "\" is not an object");
    const std::string where = key;
    PIXTRAL_RETURN_IF_ERROR(get_int(*im, "image_patch_size", where, origin, &image_patch_size));
    PIXTRAL_RETURN_IF_ERROR(get_int(*im, "max_image_size", where, origin, &max_image_size));
    PIXTRAL_RETURN_IF_ERROR(get_int(*im, "spatial_merge_size", where, origin, &spatial_merge_size, false));
    break;
  }
  return compile_pattern();
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Result<Tokenizer> Tokenizer::from_json(std::string_view json_text, const std::string& origin) {
  auto impl = std::make_unique<Impl>();
  impl->origin = origin;
  try {
    PIXTRAL_RETURN_IF_ERROR(impl->parse(json_text));
  } catch (const std::exception& e) {  // nlohmann type errors on odd files: never let them escape
    return format_error(origin, std::string("unexpected content: ") + e.what());
  }
  return Tokenizer(std::move(impl));
}

Result<Tokenizer> Tokenizer::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return Status(ErrorCode::not_found, path + ": cannot open the tokenizer file (tekken.json ships with the model, "
                                               "e.g. in the mistralai/Pixtral-12B-2409 download)");
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status(ErrorCode::io, path + ": read error");
  return from_json(ss.str(), path);
}

Result<std::vector<int>> Tokenizer::encode(std::string_view s) const {
  if (const std::size_t bad = text::utf8_first_invalid(s); bad != s.size()) {
    return Status(ErrorCode::invalid_argument, "text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  }
  std::vector<int> ids;
  if (s.empty()) return ids;
#ifdef PIXTRAL_HAVE_PCRE2
  const Impl& m = *impl_;
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
      pcre2_match_data_create_from_pattern(m.code, nullptr), pcre2_match_data_free);
  if (!md) return Status(ErrorCode::out_of_memory, "tokenizer: cannot allocate PCRE2 match data");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  std::vector<std::uint32_t> ranks;
  ranks.reserve(s.size() / 3 + 8);
  std::size_t offset = 0;
  while (offset < s.size()) {
    int rc = pcre2_match(m.code, subject, s.size(), offset, PCRE2_NO_UTF_CHECK, md.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {  // pathological input: the interpreter uses the heap instead
      rc = pcre2_match(m.code, subject, s.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md.get(), nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(rc, buf, sizeof buf);
      return Status(ErrorCode::internal, "tokenizer: pre-tokenizer match failed at byte " +
                                             std::to_string(offset) + ": " + reinterpret_cast<const char*>(buf));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    const std::size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match (not possible with the tekken pattern): step over one character
      offset = b + 1;
      while (offset < s.size() && (static_cast<unsigned char>(s[offset]) & 0xC0) == 0x80) ++offset;
      continue;
    }
    text::bpe_encode_piece(s.substr(b, e - b), m.ranks, ranks);
    offset = e;
  }
  ids.reserve(ranks.size());
  for (std::uint32_t r : ranks) ids.push_back(static_cast<int>(r) + m.num_special);
  return ids;
#else
  return Status(ErrorCode::unsupported,
                "tokenizer: this engine was built without PCRE2, so text cannot be tokenized "
                "(rebuild with libpcre2-dev installed, -DPIXTRAL_PCRE2=ON)");
#endif
}

std::string_view Tokenizer::token_bytes(int id) const {
  const Impl& m = *impl_;
  if (id < m.num_special || id >= m.vocab_size) return {};
  return m.ranks.bytes(static_cast<std::uint32_t>(id - m.num_special));
}

std::string Tokenizer::special_name(int id) const {
  if (id < 0 || id >= impl_->num_special) return {};
  return impl_->special_names[std::size_t(id)];
}

std::string Tokenizer::decode(std::span<const int> ids, bool keep_special) const {
  // Runs of normal ids are decoded one run at a time (mistral-common groups by is_special).
  std::string out, run;
  for (int id : ids) {
    if (id >= impl_->num_special && id < impl_->vocab_size) {
      run.append(token_bytes(id));
      continue;
    }
    text::utf8_decode_replace(run, out);
    run.clear();
    if (keep_special) out += special_name(id);
  }
  text::utf8_decode_replace(run, out);
  return out;
}

int Tokenizer::vocab_size() const { return impl_->vocab_size; }
int Tokenizer::num_special_tokens() const { return impl_->num_special; }
const SpecialIds& Tokenizer::special() const { return impl_->special; }
std::string_view Tokenizer::version() const { return impl_->version; }
int Tokenizer::image_patch_size() const { return impl_->image_patch_size; }
int Tokenizer::max_image_size() const { return impl_->max_image_size; }
int Tokenizer::spatial_merge_size() const { return impl_->spatial_merge_size; }

std::string Tokenizer::StreamDecoder::push(int id) {
  std::string out;
  const std::string_view b = tok_->token_bytes(id);
  if (b.empty()) {  // a special (or unknown) id ends the run: flush like decode() does
    return finish();
  }
  pending_.append(b);
  const std::size_t used = text::utf8_decode_replace(pending_, out, /*hold_incomplete_tail=*/true);
  pending_.erase(0, used);
  return out;
}

std::string Tokenizer::StreamDecoder::finish() {
  std::string out;
  text::utf8_decode_replace(pending_, out);
  pending_.clear();
  return out;
}

}  // namespace pixtral
