// SPDX-License-Identifier: Apache-2.0
// MappedFile: a whole file mapped read-only into memory (RAII, move-only). Checkpoint tensors are views into
// these mappings, so a mapping must outlive every WeightView taken from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "pixtral/status.h"

namespace pixtral::io {

class MappedFile {
 public:
  MappedFile() = default;
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  /// Map `path` read-only. Errors (not_found / io) name the file and the system's reason (errno text).
  /// An empty file maps to data() == nullptr, size() == 0.
  static Result<MappedFile> open(const std::string& path);

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool is_open() const { return data_ != nullptr || !path_.empty(); }

 private:
  void release() noexcept;

  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

}  // namespace pixtral::io
