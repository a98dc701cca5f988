// SPDX-License-Identifier: Apache-2.0
// safetensors reader: mmap the file, validate the header strictly, expose each tensor as a pointer into the
// mapping. Layout (spec §1.1): u64 LE header length N | N bytes of JSON | byte buffer (offsets relative to it).
// ref: huggingface/safetensors safetensors/src/tensor.rs (Metadata::validate); spec pixtral-model.md §1.1
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "io/mapped_file.h"
#include "pixtral/status.h"

namespace pixtral::io {

/// Largest header accepted (the reference implementation's limit is 100 MB as well).
inline constexpr std::uint64_t kMaxSafetensorsHeader = 100'000'000;

/// One tensor entry of a safetensors header, validated against the file.
struct SafetensorsTensor {
  std::string name;
  std::string dtype;                  ///< as written in the header ("BF16", "F8_E4M3", ...)
  std::optional<DType> model_dtype;   ///< set for the dtypes the engine computes with: BF16, F16, F32
  std::vector<std::int64_t> shape;    ///< [] = scalar
  std::uint64_t begin = 0;            ///< byte offsets relative to the data buffer (after the header)
  std::uint64_t end = 0;
  const void* data = nullptr;         ///< begin inside the mapping (unaligned); nullptr for empty tensors

  std::uint64_t bytes() const { return end - begin; }
};

/// Element size in bits of a safetensors dtype string, or 0 when the string is not a known dtype.
int safetensors_dtype_bits(std::string_view dtype);
/// BF16 / F16 / F32 → the engine's DType; anything else → nullopt.
std::optional<DType> safetensors_model_dtype(std::string_view dtype);

class SafetensorsFile {
 public:
  SafetensorsFile() = default;
  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;

  /// Map and validate a file. Errors: not_found / io (cannot open), format (bad header, with the file name and,
  /// where one is involved, the tensor name; a file shorter than its header promises says "truncated" and how
  /// many bytes are missing).
  static Result<SafetensorsFile> open(const std::string& path);
  /// Validate an in-memory file image; `label` names it in errors. `data` must outlive the result.
  static Result<SafetensorsFile> parse(const std::uint8_t* data, std::size_t size, const std::string& label);

  const std::string& path() const { return label_; }
  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::uint64_t header_length() const { return header_length_; }
  /// Size of the byte buffer after the header.
  std::uint64_t buffer_size() const { return buffer_size_; }

 private:
  static Status parse_into(SafetensorsFile& out, const std::uint8_t* data, std::size_t size);

  MappedFile file_;  ///< empty when parsed from a caller's buffer
  std::string label_;
  std::map<std::string, SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::uint64_t header_length_ = 0;
  std::uint64_t buffer_size_ = 0;
};

}  // namespace pixtral::io
