// SPDX-License-Identifier: Apache-2.0
// The quantized-weights cache file (issue 6; the format is documented in docs/quant-cache.md). After a load that
// quantized the decoder's weights, their packed values and scales are written to one file so the next load with
// the same precision is a straight read (mmap → Backend::upload_weight_prequantized), with no quantization.
//
// Trust: a cache is used only when its key — the model's canonical path, layout, precision and formats, the
// engine's quantization format version, and the size and mtime (ns) of every source file (*.safetensors,
// params.json, config.json) — equals the key of the load, byte for byte. Every offset and size is bounds-checked
// against the file and the expected shape; the header, key and index carry an XXH64 hash, each tensor's payload
// another, checked before the tensor is used. Anything else is logged and ignored (the weight is quantized from
// the source as usual) and the cache is rewritten.
// Where: next to the model ("quire-quant-<precision>.qcache"), else — when the model folder is not writable —
// $XDG_CACHE_HOME/quire (default ~/.cache/quire) as "<hash of the model path>-<precision>.qcache"; or only the
// folder LoadOptions::quant_cache_dir names. Writes go to a temporary file in the same folder, fsync, rename;
// a failed write (disk full, permissions) is logged and never fails the load.
// ref: the GGUF file layout (fixed header, key/value block, tensor index, aligned tensor data) and XXH64
//      (github.com/Cyan4973/xxHash, doc/xxhash_spec.md).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/mapped_file.h"
#include "model/weights.h"
#include "pixtral/model.h"

namespace pixtral::qcache {

inline constexpr char kMagic[8] = {'Q', 'U', 'I', 'R', 'E', 'Q', 'C', '\0'};
inline constexpr std::uint32_t kFileVersion = 1;
/// Version of the quantized bytes (core/quant.h: int8 per channel, int4 g128 nibble order, rounding). Bump it
/// whenever core/quant.h changes what quantize_rows produces: every existing cache then becomes stale.
inline constexpr std::uint32_t kQuantFormatVersion = 2;  // 2: int4 scale = m / −8 (core/quant.h)
inline constexpr std::uint64_t kHeaderBytes = 64;
inline constexpr std::uint64_t kPayloadAlign = 4096;
inline constexpr std::uint64_t kEntryFixedBytes = 64;  ///< an index entry before its name

/// XXH64 (seed 0), streaming. ref: xxHash doc/xxhash_spec.md.
class Xxh64 {
 public:
  void update(const void* data, std::size_t n);
  std::uint64_t digest() const;
  static std::uint64_t of(const void* data, std::size_t n);

 private:
  std::uint64_t v_[4] = {0x9E3779B185EBCA87ull + 0xC2B2AE3D27D4EB4Full, 0xC2B2AE3D27D4EB4Full, 0,
                         0 - 0x9E3779B185EBCA87ull};
  std::uint8_t buf_[32] = {};
  std::size_t buffered_ = 0;
  std::uint64_t total_ = 0;
};

struct SourceFile {
  std::string name;  ///< file name inside the model folder
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
};

/// Everything a cache must match to be used. text() is what the file stores and what is compared.
struct Key {
  std::string model_path;  ///< canonical absolute path of the model folder
  std::string layout;      ///< "mistral" | "hf"
  std::string precision;   ///< "int8" | "int4"
  std::string linear_format, output_format;  ///< quant::format_name of WeightOptions::linear / ::output
  std::uint32_t quant_format_version = kQuantFormatVersion;
  std::vector<SourceFile> sources;  ///< sorted by name
  std::string text() const;
};
/// The key of loading `model_dir` with `options` (stats the source files; io error when none can be read).
Result<Key> make_key(const std::string& model_dir, const std::string& layout, const WeightOptions& options);
/// "int8" / "int4" for quantized options ("" for all-dense options: nothing to cache).
std::string precision_tag(const WeightOptions& options);

/// Candidate cache files, in the order they are read; writes go to the first whose folder accepts a file.
/// With override_dir: only override_dir/quire-quant-<precision>.qcache. Else the model folder's file, then the
/// user cache folder's ($XDG_CACHE_HOME/quire or $HOME/.cache/quire; left out when neither is set).
std::vector<std::string> candidate_paths(const std::string& model_path, const std::string& precision,
                                         const std::string& override_dir);

/// One tensor of a cache file.
struct Entry {
  std::string name;
  quant::Format format = quant::Format::dense;
  DType dtype = DType::bf16;  ///< the dtype it was quantized from
  std::int64_t rows = 0, cols = 0;
  std::uint64_t values_offset = 0, values_bytes = 0, scales_offset = 0, scales_bytes = 0;
  std::uint64_t hash = 0;  ///< XXH64 of the values bytes followed by the scales bytes
};

/// An open cache file whose header, key and index were validated (offsets, sizes, alignment, hashes).
class CacheFile {
 public:
  /// not_found: no file. format: "damaged quantized cache …" (truncated, bad magic, hash, offsets or sizes) or
  /// "stale quantized cache …" (another key or version) — the message says what differs.
  static Result<CacheFile> open(const std::string& path, const Key& expected);
  const Entry* find(const std::string& name) const;
  const std::uint8_t* values(const Entry& e) const { return file_.data() + e.values_offset; }
  const float* scales(const Entry& e) const {
    return reinterpret_cast<const float*>(file_.data() + e.scales_offset);
  }
  /// Whether the payload's hash matches the index (reads the whole payload).
  bool verify(const Entry& e) const;
  const std::string& path() const { return file_.path(); }
  std::size_t size() const { return entries_.size(); }

 private:
  io::MappedFile file_;
  std::vector<Entry> entries_;
  std::map<std::string, std::size_t, std::less<>> by_name_;
};

/// Write `weights` (quantized, on `backend`) to `path` atomically: a temporary file in the same folder, fsync,
/// rename. Returns io errors; on failure nothing is left behind. `created` (optional) is set once the temporary
/// file exists (false: the folder refused the file — the caller may try another folder).
Status write_cache(const std::string& path, const Key& key, ops::Backend& backend,
                   std::span<const ops::Weight> weights, bool* created = nullptr);

/// Fault injection for tests (CI runs as root, where chmod cannot make a folder unwritable).
struct TestHooks {
  /// Paths whose folder is treated as refusing new files (prefix match on the cache file path).
  std::string unwritable_prefix;
  /// ≥ 0: the write reports ENOSPC once this many payload+header bytes have been written.
  std::int64_t fail_write_after_bytes = -1;
};
TestHooks& test_hooks();

/// The QuantizedWeightStore Model::load uses: reads the first valid candidate file, serves its tensors, records
/// the load's quantized weights, and writes the cache afterwards when anything had to be quantized.
class Store final : public QuantizedWeightStore {
 public:
  Store(Key key, std::vector<std::string> candidates);
  std::optional<ops::Weight> find(ops::Backend& backend, const std::string& name, std::int64_t rows,
                                  std::int64_t cols, ops::WeightFormat format, DType dtype) override;
  void add(const ops::Weight& w) override;
  /// After every weight is uploaded: "hit" (all came from the cache), else write the cache and return "written"
  /// (there was none), "stale" (one was rejected or incomplete) or "unwritten" (the write failed; logged).
  std::string finish(ops::Backend& backend);
  /// Whether finish() will write (something was quantized rather than read).
  bool will_write() const { return !(file_ && n_quantized_ == 0 && !weights_.empty()); }
  /// The file read ("hit") or written; "" when none.
  const std::string& path() const { return path_; }

 private:
  Key key_;
  std::vector<std::string> candidates_;
  std::unique_ptr<CacheFile> file_;
  bool rejected_ = false;  // a cache file existed but was stale, damaged or incomplete
  std::vector<ops::Weight> weights_;
  std::vector<const void*> hits_;
  std::size_t n_quantized_ = 0;
  std::string path_;
};

/// Model::load's hook: the store for this load, or null (dense precision, QuantCache::off, or no key: logged).
std::unique_ptr<Store> open_store(const std::string& model_dir, const std::string& layout,
                                  const LoadOptions& options, const WeightOptions& weights);
/// Model::load's hook after the upload: fills info.quant_cache / quant_cache_path (writing the cache if needed).
void finish_store(Store* store, ops::Backend& backend, const WeightOptions& weights, ModelInfo& info);

}  // namespace pixtral::qcache
