// SPDX-License-Identifier: Apache-2.0
// safetensors header validation. Every check names the file and, where one is involved, the tensor.
// ref: huggingface/safetensors safetensors/src/tensor.rs (read_metadata, Metadata::validate); spec §1.1
#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

namespace pixtral::io {

using nlohmann::json;

namespace {

Status format_error(const std::string& label, const std::string& msg) {
  return Status(ErrorCode::format, label + ": " + msg);
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// Parse the JSON text; top-level duplicate keys are an error (nlohmann would silently keep the last one).
Status parse_json(const char* first, const char* last, const std::string& label, json& out) {
  std::set<std::string> seen;
  std::string dup;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second && dup.empty()) dup = parsed.get<std::string>();
    }
    return true;
  };
  try {
    out = json::parse(first, last, cb, /*allow_exceptions=*/true);
  } catch (const json::exception& e) {
    return format_error(label, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!dup.empty()) return format_error(label, "header names tensor '" + dup + "' twice");
  if (!out.is_object()) return format_error(label, "header is not a JSON object");
  return Status::success();
}

Status parse_metadata(const json& j, const std::string& label, std::map<std::string, std::string>& out) {
  if (!j.is_object()) return format_error(label, "__metadata__ is not an object of strings");
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) return format_error(label, "__metadata__ entry '" + k + "' is not a string");
    out[k] = v.get<std::string>();
  }
  return Status::success();
}

// One tensor entry: dtype, shape, data_offsets and their consistency (bounds against the buffer come later).
Status parse_entry(const std::string& name, const json& j, const std::string& label, SafetensorsTensor& t) {
  const std::string where = "tensor " + name;
  if (!j.is_object()) return format_error(label, where + ": entry is not a JSON object");
  auto dt = j.find("dtype");
  auto sh = j.find("shape");
  auto off = j.find("data_offsets");
  if (dt == j.end()) return format_error(label, where + ": missing 'dtype'");
  if (sh == j.end()) return format_error(label, where + ": missing 'shape'");
  if (off == j.end()) return format_error(label, where + ": missing 'data_offsets'");
  if (!dt->is_string()) return format_error(label, where + ": 'dtype' is not a string");
  t.name = name;
  t.dtype = dt->get<std::string>();
  const int bits = safetensors_dtype_bits(t.dtype);
  if (bits == 0) return format_error(label, where + ": unknown dtype '" + t.dtype + "'");
  t.model_dtype = safetensors_model_dtype(t.dtype);

  if (!sh->is_array()) return format_error(label, where + ": 'shape' is not an array");
  std::uint64_t numel = 1;
  bool overflow = false;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned() || d.get<std::uint64_t>() > std::uint64_t(INT64_MAX))
      return format_error(label, where + ": shape " + sh->dump() + " is not a list of non-negative integers");
    const std::uint64_t v = d.get<std::uint64_t>();
    t.shape.push_back(std::int64_t(v));
    overflow = overflow || __builtin_mul_overflow(numel, v, &numel);
  }
  std::uint64_t nbits = 0;
  if (overflow || __builtin_mul_overflow(numel, std::uint64_t(bits), &nbits))
    return format_error(label, where + ": shape " + shape_string(t.shape) + " is too large");
  if (nbits % 8 != 0)
    return format_error(label, where + ": shape " + shape_string(t.shape) + " of " + t.dtype +
                                   " does not fill whole bytes");

  if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    return format_error(label, where + ": 'data_offsets' is not a pair of non-negative integers");
  t.begin = (*off)[0].get<std::uint64_t>();
  t.end = (*off)[1].get<std::uint64_t>();
  if (t.end < t.begin)
    return format_error(label, where + ": data_offsets [" + std::to_string(t.begin) + "," + std::to_string(t.end) +
                                   "] end before begin");
  if (t.end - t.begin != nbits / 8)
    return format_error(label, where + ": size mismatch: shape " + shape_string(t.shape) + " " + t.dtype +
                                   " needs " + std::to_string(nbits / 8) + " bytes but data_offsets [" +
                                   std::to_string(t.begin) + "," + std::to_string(t.end) + "] span " +
                                   std::to_string(t.end - t.begin));
  return Status::success();
}

}  // namespace

int safetensors_dtype_bits(std::string_view d) {
  static const std::pair<std::string_view, int> kTable[] = {
      {"BOOL", 8},     {"U8", 8},       {"I8", 8},       {"F8_E5M2", 8},  {"F8_E4M3", 8},
      {"F8_E8M0", 8},  {"I16", 16},     {"U16", 16},     {"F16", 16},     {"BF16", 16},
      {"I32", 32},     {"U32", 32},     {"F32", 32},     {"F64", 64},     {"I64", 64},
      {"U64", 64},     {"C64", 64},     {"F4", 4},       {"F6_E2M3", 6},  {"F6_E3M2", 6},
  };
  for (const auto& [name, bits] : kTable)
    if (name == d) return bits;
  return 0;
}

std::optional<DType> safetensors_model_dtype(std::string_view d) {
  if (d == "BF16") return DType::bf16;
  if (d == "F16") return DType::f16;
  if (d == "F32") return DType::f32;
  return std::nullopt;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return mapped.status();
  SafetensorsFile f;
  f.file_ = std::move(mapped).value();
  f.label_ = path;
  PIXTRAL_RETURN_IF_ERROR(parse_into(f, f.file_.data(), f.file_.size()));
  return f;
}

Result<SafetensorsFile> SafetensorsFile::parse(const std::uint8_t* data, std::size_t size, const std::string& label) {
  SafetensorsFile f;
  f.label_ = label;
  PIXTRAL_RETURN_IF_ERROR(parse_into(f, data, size));
  return f;
}

Status SafetensorsFile::parse_into(SafetensorsFile& out, const std::uint8_t* data, std::size_t size) {
  const std::string& label = out.label_;
  if (size < 8)
    return format_error(label, "file is " + std::to_string(size) +
                                   " bytes, too short for a safetensors header (truncated or not safetensors)");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];  // little-endian u64
  if (n > kMaxSafetensorsHeader)
    return format_error(label, "header length " + std::to_string(n) + " exceeds the " +
                                   std::to_string(kMaxSafetensorsHeader) + "-byte limit (not a safetensors file?)");
  if (n > size - 8)
    return format_error(label, "header length " + std::to_string(n) + " exceeds the " + std::to_string(size - 8) +
                                   " bytes after the length field (truncated or not a safetensors file)");
  if (n == 0 || data[8] != '{') return format_error(label, "header does not start with '{' (not a safetensors file?)");
  out.header_length_ = n;
  out.buffer_size_ = size - 8 - n;

  json header;
  const char* text = reinterpret_cast<const char*>(data + 8);
  PIXTRAL_RETURN_IF_ERROR(parse_json(text, text + n, label, header));

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      PIXTRAL_RETURN_IF_ERROR(parse_metadata(entry, label, out.metadata_));
      continue;
    }
    SafetensorsTensor t;
    PIXTRAL_RETURN_IF_ERROR(parse_entry(name, entry, label, t));
    out.tensors_.emplace(name, std::move(t));
  }

  // Truncation: the largest end offset must lie inside the buffer.
  const SafetensorsTensor* last = nullptr;
  for (const auto& [name, t] : out.tensors_)
    if (last == nullptr || t.end > last->end) last = &t;
  if (last != nullptr && last->end > out.buffer_size_) {
    const std::uint64_t missing = last->end - out.buffer_size_;
    return format_error(label, "truncated: tensor " + last->name + " ends at byte " + std::to_string(last->end) +
                                   " of the data buffer but only " + std::to_string(out.buffer_size_) +
                                   " bytes follow the header (" + std::to_string(missing) +
                                   " bytes missing; re-download the file)");
  }

  // Overlap: sorted by begin, each non-empty tensor must start at or after the previous one's end.
  std::vector<const SafetensorsTensor*> order;
  for (const auto& [name, t] : out.tensors_)
    if (t.end > t.begin) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
  });
  for (std::size_t i = 1; i < order.size(); ++i) {
    if (order[i]->begin < order[i - 1]->end)
      return format_error(label, "tensors " + order[i - 1]->name + " [" + std::to_string(order[i - 1]->begin) +
                                     "," + std::to_string(order[i - 1]->end) + ") and " + order[i]->name + " [" +
                                     std::to_string(order[i]->begin) + "," + std::to_string(order[i]->end) +
                                     ") overlap");
  }

  const std::uint8_t* buffer = data + 8 + n;
  for (auto& [name, t] : out.tensors_) t.data = t.end > t.begin ? buffer + t.begin : nullptr;
  return Status::success();
}

}  // namespace pixtral::io
