// SPDX-License-Identifier: Apache-2.0
// Test helpers: a tiny safetensors writer, a temp folder, and a tiny Pixtral checkpoint written in either layout.
// Every test input is generated at test time from these; nothing large is committed.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tensor.h"
#include "io/checkpoint.h"
#include "pixtral/log.h"

namespace pixtral::testing {

namespace fs = std::filesystem;
using nlohmann::json;

/// One tensor to write: dtype string as in safetensors ("BF16", "F32", "I32", ...) and its raw bytes.
struct StTensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> bytes;
};

inline std::size_t st_elem_size(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  return 1;
}

inline std::int64_t st_numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

/// Write raw file bytes: u64 header length, header text (space-padded to 8), then `data`.
inline void write_raw_safetensors(const fs::path& path, std::string header, const std::vector<std::uint8_t>& data,
                                  bool pad = true) {
  while (pad && header.size() % 8 != 0) header.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(char((n >> (8 * i)) & 0xff));
  out.write(header.data(), std::streamsize(header.size()));
  out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}

/// Header JSON for tensors laid out contiguously in the given order.
inline json st_header(const std::vector<StTensor>& tensors, const std::map<std::string, std::string>& metadata = {}) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::uint64_t off = 0;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  return h;
}

inline void write_safetensors(const fs::path& path, const std::vector<StTensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  std::vector<std::uint8_t> data;
  for (const auto& t : tensors) data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  write_raw_safetensors(path, st_header(tensors, metadata).dump(), data);
}

/// Random values in [-1, 1) encoded as `dtype` (BF16/F16/F32; other dtypes get random bytes).
inline StTensor random_tensor(const std::string& name, const std::string& dtype, std::vector<std::int64_t> shape,
                              std::mt19937& rng) {
  StTensor t{name, dtype, std::move(shape), {}};
  const std::int64_t n = st_numel(t.shape);
  t.bytes.resize(std::size_t(n) * st_elem_size(dtype));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  for (std::int64_t i = 0; i < n; ++i) {
    const float f = u(rng);
    if (dtype == "F32") {
      std::memcpy(&t.bytes[std::size_t(i) * 4], &f, 4);
    } else if (dtype == "BF16" || dtype == "F16") {
      const std::uint16_t h = dtype == "BF16" ? f32_to_bf16(f) : f32_to_f16(f);
      std::memcpy(&t.bytes[std::size_t(i) * 2], &h, 2);
    } else {
      for (std::size_t b = 0; b < st_elem_size(dtype); ++b)
        t.bytes[std::size_t(i) * st_elem_size(dtype) + b] = std::uint8_t(rng());
    }
  }
  return t;
}

/// A fresh temporary folder, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pixtral_io_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

/// Captures warnings sent to pixtral::log while alive.
class LogCapture {
 public:
  LogCapture() {
    set_log_sink([this](LogLevel level, std::string_view msg) {
      if (level >= LogLevel::warning) messages.emplace_back(msg);
    });
  }
  ~LogCapture() { set_log_sink(nullptr); }
  bool contains(const std::string& needle) const {
    for (const auto& m : messages)
      if (m.find(needle) != std::string::npos) return true;
    return false;
  }
  std::string all() const {
    std::string s;
    for (const auto& m : messages) s += m + "\n";
    return s;
  }
  std::vector<std::string> messages;
};

}  // namespace pixtral::testing
