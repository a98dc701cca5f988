// SPDX-License-Identifier: Apache-2.0
// SAX reader of tekken.json (see tekken_json.h): a DOM builder for every value except the elements of the
// top-level "vocab" array, which are reduced to (rank, token_bytes) as they stream by.
// ref: nlohmann/json detail/input/json_sax.hpp json_sax_dom_parser (the DOM-building half).
#include "text/tekken_json.h"

namespace pixtral::text {
namespace {

using json = nlohmann::json;

class TekkenSax final : public nlohmann::json_sax<json> {
 public:
  explicit TekkenSax(TekkenJson* out) : out_(out) {}
  std::string error;

  bool null() override { return scalar(nullptr); }
  bool boolean(bool v) override { return scalar(v); }
  bool number_integer(number_integer_t v) override {
    if (in_vocab_ && vocab_depth_ == 1 && field_ == "rank") cur().rank = v;
    return scalar(v);
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (in_vocab_ && vocab_depth_ == 1 && field_ == "rank") {
      cur().rank = v > std::uint64_t(INT64_MAX) ? -1 : std::int64_t(v);
    }
    return scalar(v);
  }
  bool number_float(number_float_t v, const string_t&) override { return scalar(v); }
  bool string(string_t& v) override {
    if (in_vocab_ && vocab_depth_ == 1 && field_ == "token_bytes") {
      TekkenVocabEntry& e = cur();
      e.b64_begin = static_cast<std::uint32_t>(out_->b64_arena.size());
      out_->b64_arena += v;
      e.b64_end = static_cast<std::uint32_t>(out_->b64_arena.size());
      e.has_bytes = true;
    }
    return scalar(std::move(v));
  }
  bool binary(binary_t&) override { return true; }

  bool start_object(std::size_t) override {
    if (in_vocab_) {
      if (vocab_depth_++ == 0) {
        out_->vocab.emplace_back();
        out_->vocab.back().is_object = true;
        field_.clear();
      }
      return true;
    }
    return open(json::object());
  }
  bool key(string_t& k) override {
    if (in_vocab_) {
      if (vocab_depth_ == 1) field_ = k;
      return true;
    }
    key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (in_vocab_) {
      --vocab_depth_;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    if (in_vocab_) {
      if (vocab_depth_++ == 0) out_->vocab.emplace_back();  // an element that is not an object
      return true;
    }
    if (stack_.size() == 1 && stack_.back()->is_object() && key_ == "vocab") {
      in_vocab_ = true;
      vocab_depth_ = 0;
      out_->has_vocab = true;
      return true;
    }
    return open(json::array());
  }
  bool end_array() override {
    if (in_vocab_) {
      if (vocab_depth_ == 0) {
        in_vocab_ = false;
      } else {
        --vocab_depth_;
      }
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    error = ex.what();
    return false;
  }

 private:
  TekkenVocabEntry& cur() { return out_->vocab.back(); }

  /// Place a value where the DOM builder stands; returns a pointer to it.
  json* place(json&& v) {
    if (stack_.empty()) {
      out_->rest = std::move(v);
      return &out_->rest;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  template <class T>
  bool scalar(T&& v) {
    if (in_vocab_) {
      if (vocab_depth_ == 0) out_->vocab.emplace_back();  // a scalar element: not an object
      return true;
    }
    place(json(std::forward<T>(v)));
    return true;
  }
  bool open(json&& container) {
    stack_.push_back(place(std::move(container)));
    return true;
  }

  TekkenJson* out_;
  std::vector<json*> stack_;  // containers being filled (children are finished before a parent grows)
  std::string key_, field_;
  bool in_vocab_ = false;
  int vocab_depth_ = 0;
};

}  // namespace

Status parse_tekken_json(std::string_view text, const std::string& origin, TekkenJson* out) {
  TekkenSax sax(out);
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &sax);
  } catch (const std::exception& e) {
    return Status(ErrorCode::format, origin + ": not valid JSON: " + e.what());
  }
  if (!ok) return Status(ErrorCode::format, origin + ": not valid JSON: " + sax.error);
  return Status::success();
}

}  // namespace pixtral::text
