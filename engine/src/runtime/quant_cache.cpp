// SPDX-License-Identifier: Apache-2.0
// The quantized-weights cache file: key, XXH64, validated reading, atomic writing, and the store Model::load
// uses (see quant_cache.h; the byte layout is docs/quant-cache.md, which this file must keep matching).
#include "runtime/quant_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "pixtral/log.h"

namespace pixtral::qcache {
namespace fs = std::filesystem;

// ---- XXH64 --------------------------------------------------------------------------------------------------
namespace {

constexpr std::uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full, P3 = 0x165667B19E3779F9ull,
                        P4 = 0x85EBCA77C2B2AE63ull, P5 = 0x27D4EB2F165667C5ull;

inline std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline std::uint64_t rd64(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);  // little-endian hosts only (x86-64, aarch64)
  return v;
}
inline std::uint32_t rd32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline std::uint64_t round64(std::uint64_t acc, std::uint64_t in) { return rotl(acc + in * P2, 31) * P1; }
inline std::uint64_t merge64(std::uint64_t acc, std::uint64_t v) { return (acc ^ round64(0, v)) * P1 + P4; }

}  // namespace

void Xxh64::update(const void* data, std::size_t n) {
  auto* p = static_cast<const std::uint8_t*>(data);
  total_ += n;
  auto stripe = [this](const std::uint8_t* s) {
    for (int i = 0; i < 4; ++i) v_[i] = round64(v_[i], rd64(s + 8 * i));
  };
  if (buffered_ + n < 32) {
    if (n) std::memcpy(buf_ + buffered_, p, n);
    buffered_ += n;
    return;
  }
  if (buffered_) {
    const std::size_t fill = 32 - buffered_;
    std::memcpy(buf_ + buffered_, p, fill);
    stripe(buf_);
    p += fill;
    n -= fill;
    buffered_ = 0;
  }
  for (; n >= 32; p += 32, n -= 32) stripe(p);
  if (n) std::memcpy(buf_, p, n);
  buffered_ = n;
}

std::uint64_t Xxh64::digest() const {
  std::uint64_t h;
  if (total_ >= 32) {
    h = rotl(v_[0], 1) + rotl(v_[1], 7) + rotl(v_[2], 12) + rotl(v_[3], 18);
    for (int i = 0; i < 4; ++i) h = merge64(h, v_[i]);
  } else {
    h = P5;  // seed 0
  }
  h += total_;
  const std::uint8_t* p = buf_;
  std::size_t n = buffered_;
  for (; n >= 8; p += 8, n -= 8) h = rotl(h ^ round64(0, rd64(p)), 27) * P1 + P4;
  if (n >= 4) {
    h = rotl(h ^ (std::uint64_t(rd32(p)) * P1), 23) * P2 + P3;
    p += 4;
    n -= 4;
  }
  for (; n; ++p, --n) h = rotl(h ^ (std::uint64_t(*p) * P5), 11) * P1;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

std::uint64_t Xxh64::of(const void* data, std::size_t n) {
  Xxh64 x;
  x.update(data, n);
  return x.digest();
}

// ---- key and places -----------------------------------------------------------------------------------------

std::string Key::text() const {
  std::string t = "quire-quant-cache-key 1\n";
  t += "model_path " + model_path + "\n";
  t += "layout " + layout + "\n";
  t += "precision " + precision + "\n";
  t += "linear_format " + linear_format + "\n";
  t += "output_format " + output_format + "\n";
  t += "quant_format_version " + std::to_string(quant_format_version) + "\n";
  for (const SourceFile& s : sources)
    t += "source " + std::to_string(s.size) + " " + std::to_string(s.mtime_ns) + " " + s.name + "\n";
  return t;
}

std::string precision_tag(const WeightOptions& o) {
  if (o.linear == quant::Format::int8_channel) return "int8";
  if (o.linear == quant::Format::int4_g128) return "int4";
  if (o.output != quant::Format::dense) return std::string("head-") + quant::format_name(o.output);
  return "";
}

Result<Key> make_key(const std::string& model_dir, const std::string& layout, const WeightOptions& options) {
  Key k;
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(fs::absolute(model_dir, ec), ec);
  if (ec) return Status(ErrorCode::io, "cannot resolve " + model_dir + ": " + ec.message());
  k.model_path = dir.string();
  k.layout = layout;
  k.precision = precision_tag(options);
  k.linear_format = quant::format_name(options.linear);
  k.output_format = quant::format_name(options.output);
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool weights = name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0;
    if (!weights && name != "params.json" && name != "config.json") continue;
    struct stat st {};
    if (::stat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    k.sources.push_back({name, std::uint64_t(st.st_size),
                         std::int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec});
  }
  if (ec) return Status(ErrorCode::io, "cannot list " + k.model_path + ": " + ec.message());
  if (k.sources.empty()) return Status(ErrorCode::io, "no weight files found in " + k.model_path);
  std::sort(k.sources.begin(), k.sources.end(), [](const SourceFile& a, const SourceFile& b) { return a.name < b.name; });
  return k;
}

std::vector<std::string> candidate_paths(const std::string& model_path, const std::string& precision,
                                         const std::string& override_dir) {
  const std::string file = "quire-quant-" + precision + ".qcache";
  if (!override_dir.empty()) return {(fs::path(override_dir) / file).string()};
  std::vector<std::string> out{(fs::path(model_path) / file).string()};
  fs::path user;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x == '/')
    user = fs::path(x) / "quire";
  else if (const char* h = std::getenv("HOME"); h && *h)
    user = fs::path(h) / ".cache" / "quire";
  if (!user.empty()) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx",
                  static_cast<unsigned long long>(Xxh64::of(model_path.data(), model_path.size())));
    out.push_back((user / (std::string(hex) + "-" + precision + ".qcache")).string());
  }
  return out;
}

TestHooks& test_hooks() {
  static TestHooks h;
  return h;
}

// ---- layout helpers -----------------------------------------------------------------------------------------
namespace {

// Header field offsets (docs/quant-cache.md).
constexpr std::size_t kOffVersion = 8, kOffQuantVersion = 12, kOffFileBytes = 16, kOffKeyBytes = 24,
                      kOffIndexBytes = 32, kOffTensors = 40, kOffMetaHash = 48;
constexpr std::uint64_t kMaxKeyBytes = 1u << 20, kMaxNameBytes = 4096;

inline std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }
inline std::uint64_t get64(const std::uint8_t* p) { return rd64(p); }
inline void put64(std::uint8_t* p, std::uint64_t v) { std::memcpy(p, &v, 8); }
inline void put32(std::uint8_t* p, std::uint32_t v) { std::memcpy(p, &v, 4); }

int format_code(quant::Format f) { return f == quant::Format::int8_channel ? 1 : f == quant::Format::int4_g128 ? 2 : 0; }
int dtype_code(DType d) { return d == DType::f32 ? 0 : d == DType::bf16 ? 1 : 2; }

/// Hash of [0, end) of the metadata with the meta-hash field read as zero.
std::uint64_t meta_hash(const std::uint8_t* p, std::uint64_t end) {
  std::uint8_t head[kHeaderBytes];
  std::memcpy(head, p, kHeaderBytes);
  put64(head + kOffMetaHash, 0);
  Xxh64 h;
  h.update(head, kHeaderBytes);
  h.update(p + kHeaderBytes, std::size_t(end - kHeaderBytes));
  return h.digest();
}

Status damaged(const std::string& path, const std::string& why) {
  return Status(ErrorCode::format, "damaged quantized cache " + path + ": " + why);
}
Status stale(const std::string& path, const std::string& why) {
  return Status(ErrorCode::format, "stale quantized cache " + path + ": " + why);
}

/// The first line where two keys differ, for the log.
std::string first_difference(const std::string& a, const std::string& b) {
  std::size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  auto line = [&](const std::string& s) {
    const std::size_t st = s.rfind('\n', i == 0 ? 0 : i - 1);
    const std::size_t b0 = st == std::string::npos || i == 0 ? 0 : st + 1;
    const std::size_t e = s.find('\n', b0);
    return s.substr(b0, e == std::string::npos ? std::string::npos : e - b0);
  };
  return "cache has '" + line(a) + "', the model has '" + line(b) + "'";
}

}  // namespace

// ---- reading ------------------------------------------------------------------------------------------------

Result<CacheFile> CacheFile::open(const std::string& path, const Key& expected) {
  auto mf = io::MappedFile::open(path);
  if (!mf.ok()) return mf.status();
  CacheFile cf;
  cf.file_ = std::move(mf.value());
  const std::uint8_t* p = cf.file_.data();
  const std::uint64_t size = cf.file_.size();
  if (size < kHeaderBytes) return damaged(path, "truncated (" + std::to_string(size) + " bytes, no header)");
  if (std::memcmp(p, kMagic, sizeof kMagic) != 0) return damaged(path, "not a quantized cache (bad magic)");
  const std::uint32_t version = rd32(p + kOffVersion), qversion = rd32(p + kOffQuantVersion);
  const std::uint64_t file_bytes = get64(p + kOffFileBytes), key_bytes = get64(p + kOffKeyBytes),
                      index_bytes = get64(p + kOffIndexBytes);
  const std::uint32_t n = rd32(p + kOffTensors);
  if (file_bytes != size)
    return damaged(path, "size " + std::to_string(size) + " bytes, the header says " + std::to_string(file_bytes) +
                             " (truncated or extended)");
  if (key_bytes > kMaxKeyBytes || kHeaderBytes + key_bytes > size) return damaged(path, "key out of bounds");
  const std::uint64_t index_off = align_up(kHeaderBytes + key_bytes, 8);
  if (index_off > size || index_bytes > size - index_off) return damaged(path, "index out of bounds");
  if (std::uint64_t(n) > index_bytes / kEntryFixedBytes) return damaged(path, "tensor count exceeds the index");
  const std::uint64_t index_end = index_off + index_bytes;
  if (meta_hash(p, index_end) != get64(p + kOffMetaHash))
    return damaged(path, "header/key/index hash mismatch");
  // The metadata is intact from here: differences are staleness, not damage.
  if (version != kFileVersion)
    return stale(path, "file version " + std::to_string(version) + ", this engine writes " +
                           std::to_string(kFileVersion));
  if (qversion != kQuantFormatVersion)
    return stale(path, "quantization format version " + std::to_string(qversion) + ", this engine's is " +
                           std::to_string(kQuantFormatVersion));
  const std::string key(reinterpret_cast<const char*>(p + kHeaderBytes), std::size_t(key_bytes));
  const std::string want = expected.text();
  if (key != want) return stale(path, first_difference(key, want));

  std::uint64_t at = index_off;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;  // payload [offset, end) for the overlap check
  for (std::uint32_t i = 0; i < n; ++i) {
    if (index_end - at < kEntryFixedBytes) return damaged(path, "index entry " + std::to_string(i) + " truncated");
    const std::uint8_t* e = p + at;
    Entry en;
    const std::uint32_t name_bytes = rd32(e);
    const int fmt = e[4], dt = e[5];
    en.rows = std::int64_t(get64(e + 8));
    en.cols = std::int64_t(get64(e + 16));
    en.values_offset = get64(e + 24);
    en.values_bytes = get64(e + 32);
    en.scales_offset = get64(e + 40);
    en.scales_bytes = get64(e + 48);
    en.hash = get64(e + 56);
    const std::string which = "index entry " + std::to_string(i);
    if (name_bytes == 0 || name_bytes > kMaxNameBytes || align_up(name_bytes, 8) > index_end - at - kEntryFixedBytes)
      return damaged(path, which + ": bad name length");
    en.name.assign(reinterpret_cast<const char*>(e + kEntryFixedBytes), name_bytes);
    at += kEntryFixedBytes + align_up(name_bytes, 8);
    if (fmt != 1 && fmt != 2) return damaged(path, which + " ('" + en.name + "'): bad format code");
    if (dt > 2) return damaged(path, which + " ('" + en.name + "'): bad dtype code");
    en.format = fmt == 1 ? quant::Format::int8_channel : quant::Format::int4_g128;
    en.dtype = dt == 0 ? DType::f32 : dt == 1 ? DType::bf16 : DType::f16;
    if (en.rows <= 0 || en.cols <= 0 || en.rows > (std::int64_t(1) << 31) || en.cols > (std::int64_t(1) << 31) ||
        !quant::check_shape(en.format, en.rows, en.cols, en.name).ok())
      return damaged(path, which + " ('" + en.name + "'): bad shape");
    const std::uint64_t vb = std::uint64_t(en.rows) * std::uint64_t(quant::row_bytes(en.format, en.cols));
    const std::uint64_t sb = std::uint64_t(en.rows) * std::uint64_t(quant::scales_per_row(en.format, en.cols)) * 4;
    if (en.values_bytes != vb || en.scales_bytes != sb)
      return damaged(path, "'" + en.name + "': payload sizes do not match its shape");
    for (auto [off, bytes] : {std::pair{en.values_offset, vb}, std::pair{en.scales_offset, sb}}) {
      if (off % kPayloadAlign != 0 || off < index_end || off > size || bytes > size - off)
        return damaged(path, "'" + en.name + "': payload out of bounds");
      spans.emplace_back(off, off + bytes);
    }
    if (!cf.by_name_.emplace(en.name, cf.entries_.size()).second)
      return damaged(path, "'" + en.name + "' appears twice");
    cf.entries_.push_back(std::move(en));
  }
  if (at != index_end) return damaged(path, "index size does not match its entries");
  std::sort(spans.begin(), spans.end());
  for (std::size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second) return damaged(path, "payloads overlap");
  return cf;
}

const Entry* CacheFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

bool CacheFile::verify(const Entry& e) const {
  Xxh64 h;
  h.update(values(e), std::size_t(e.values_bytes));
  h.update(file_.data() + e.scales_offset, std::size_t(e.scales_bytes));
  return h.digest() == e.hash;
}

// ---- writing ------------------------------------------------------------------------------------------------
namespace {

/// An open temporary file: pwrite with fault injection; removed unless committed.
struct TempFile {
  int fd = -1;
  std::string path;
  std::int64_t written = 0;
  ~TempFile() {
    if (fd >= 0) ::close(fd);
    if (!path.empty()) ::unlink(path.c_str());
  }
  Status write_at(const void* data, std::size_t n, std::uint64_t off) {
    auto* p = static_cast<const char*>(data);
    while (n > 0) {
      std::size_t chunk = std::min<std::size_t>(n, 1u << 30);
      const std::int64_t limit = test_hooks().fail_write_after_bytes;
      if (limit >= 0 && written + std::int64_t(chunk) > limit) {
        if (written >= limit) return Status(ErrorCode::io, "cannot write " + path + ": " + std::strerror(ENOSPC));
        chunk = std::size_t(limit - written);
      }
      const ssize_t w = ::pwrite(fd, p, chunk, off_t(off));
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status(ErrorCode::io, "cannot write " + path + ": " + std::strerror(errno));
      }
      p += w;
      n -= std::size_t(w);
      off += std::uint64_t(w);
      written += w;
    }
    return {};
  }
};

}  // namespace

Status write_cache(const std::string& path, const Key& key, ops::Backend& backend,
                   std::span<const ops::Weight> weights, bool* created) {
  if (created) *created = false;
  const fs::path target(path);
  const std::string& hook = test_hooks().unwritable_prefix;
  if (!hook.empty() && path.compare(0, hook.size(), hook) == 0)
    return Status(ErrorCode::io, "cannot create a file in " + target.parent_path().string() + ": not writable "
                                 "(test hook)");
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);  // the user cache folder may not exist yet
  TempFile tmp;
  tmp.path = path + ".tmp-" + std::to_string(::getpid());
  tmp.fd = ::open(tmp.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (tmp.fd < 0) {
    const int err = errno;
    tmp.path.clear();
    return Status(ErrorCode::io, "cannot create " + path + ".tmp-*: " + std::strerror(err));
  }
  if (created) *created = true;

  // Layout: header, key, index (8-aligned), then each tensor's values and scales at 4 KiB boundaries.
  const std::string key_text = key.text();
  std::uint64_t index_bytes = 0;
  for (const ops::Weight& w : weights) index_bytes += kEntryFixedBytes + align_up(w.name.size(), 8);
  const std::uint64_t index_off = align_up(kHeaderBytes + key_text.size(), 8);
  const std::uint64_t index_end = index_off + index_bytes;
  std::vector<std::uint8_t> meta(std::size_t(index_end), 0);
  std::uint64_t cur = align_up(index_end, kPayloadAlign), file_bytes = index_end;
  std::uint8_t* e = meta.data() + index_off;
  for (const ops::Weight& w : weights) {
    if (!w.quantized() || w.name.empty() || w.name.size() > kMaxNameBytes)
      return Status(ErrorCode::invalid_argument, "quantized cache: cannot store '" + w.name + "'");
    const std::int64_t rb = quant::row_bytes(w.format, w.cols), spr = quant::scales_per_row(w.format, w.cols);
    const std::uint64_t vb = std::uint64_t(w.rows * rb), sb = std::uint64_t(w.rows * spr) * 4;
    const std::uint64_t voff = cur, soff = align_up(voff + vb, kPayloadAlign);
    cur = align_up(soff + sb, kPayloadAlign);
    file_bytes = soff + sb;
    // Payloads in row chunks of ~64 MiB through host buffers; the hash streams values, then scales.
    const std::int64_t chunk = std::max<std::int64_t>(1, (std::int64_t(64) << 20) / std::max<std::int64_t>(rb, 1));
    std::vector<std::uint8_t> vbuf(std::size_t(std::min(chunk, w.rows) * rb));
    std::vector<float> sall(std::size_t(w.rows * spr));
    Xxh64 h;
    for (std::int64_t r0 = 0; r0 < w.rows; r0 += chunk) {
      const std::int64_t nr = std::min(chunk, w.rows - r0);
      PIXTRAL_RETURN_IF_ERROR(
          backend.download_weight(w.rows_view(r0, nr, w.name), vbuf.data(), sall.data() + r0 * spr));
      h.update(vbuf.data(), std::size_t(nr * rb));
      PIXTRAL_RETURN_IF_ERROR(tmp.write_at(vbuf.data(), std::size_t(nr * rb), voff + std::uint64_t(r0 * rb)));
    }
    h.update(sall.data(), std::size_t(sb));
    PIXTRAL_RETURN_IF_ERROR(tmp.write_at(sall.data(), std::size_t(sb), soff));
    put32(e, std::uint32_t(w.name.size()));
    e[4] = std::uint8_t(format_code(w.format));
    e[5] = std::uint8_t(dtype_code(w.dtype));
    put64(e + 8, std::uint64_t(w.rows));
    put64(e + 16, std::uint64_t(w.cols));
    put64(e + 24, voff);
    put64(e + 32, vb);
    put64(e + 40, soff);
    put64(e + 48, sb);
    put64(e + 56, h.digest());
    std::memcpy(e + kEntryFixedBytes, w.name.data(), w.name.size());
    e += kEntryFixedBytes + align_up(w.name.size(), 8);
  }
  std::memcpy(meta.data(), kMagic, sizeof kMagic);
  put32(meta.data() + kOffVersion, kFileVersion);
  put32(meta.data() + kOffQuantVersion, kQuantFormatVersion);
  put64(meta.data() + kOffFileBytes, file_bytes);
  put64(meta.data() + kOffKeyBytes, key_text.size());
  put64(meta.data() + kOffIndexBytes, index_bytes);
  put32(meta.data() + kOffTensors, std::uint32_t(weights.size()));
  std::memcpy(meta.data() + kHeaderBytes, key_text.data(), key_text.size());
  put64(meta.data() + kOffMetaHash, meta_hash(meta.data(), index_end));
  PIXTRAL_RETURN_IF_ERROR(tmp.write_at(meta.data(), meta.size(), 0));
  if (::ftruncate(tmp.fd, off_t(file_bytes)) != 0 || ::fsync(tmp.fd) != 0)
    return Status(ErrorCode::io, "cannot write " + tmp.path + ": " + std::strerror(errno));
  if (::close(tmp.fd) != 0) {
    tmp.fd = -1;
    return Status(ErrorCode::io, "cannot write " + tmp.path + ": " + std::strerror(errno));
  }
  tmp.fd = -1;
  if (::rename(tmp.path.c_str(), path.c_str()) != 0)
    return Status(ErrorCode::io, "cannot rename " + tmp.path + " to " + path + ": " + std::strerror(errno));
  tmp.path.clear();  // committed
  if (int dfd = ::open(target.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // make the rename durable
    ::close(dfd);
  }
  return {};
}

// ---- the store ----------------------------------------------------------------------------------------------

Store::Store(Key key, std::vector<std::string> candidates)
    : key_(std::move(key)), candidates_(std::move(candidates)) {
  for (const std::string& c : candidates_) {
    auto f = CacheFile::open(c, key_);
    if (f.ok()) {
      file_ = std::make_unique<CacheFile>(std::move(f.value()));
      log(LogLevel::info, "reading quantized weights from " + c);
      return;
    }
    if (f.status().code() == ErrorCode::not_found) continue;
    rejected_ = true;
    log(LogLevel::info, "ignoring " + f.status().message() + " (it will be rewritten)");
  }
}

std::optional<ops::Weight> Store::find(ops::Backend& backend, const std::string& name, std::int64_t rows,
                                       std::int64_t cols, ops::WeightFormat format, DType dtype) {
  if (!file_) return std::nullopt;
  const Entry* e = file_->find(name);
  if (!e) return std::nullopt;  // e.g. stacked by another backend: decided in finish()
  if (e->rows != rows || e->cols != cols || e->format != format || e->dtype != dtype) {
    rejected_ = true;
    log(LogLevel::warning, "quantized cache " + file_->path() + ": '" + name + "' has the wrong shape or format; "
                           "quantizing it from the checkpoint");
    return std::nullopt;
  }
  if (!file_->verify(*e)) {
    rejected_ = true;
    log(LogLevel::warning, "quantized cache " + file_->path() + ": '" + name + "' is damaged (hash mismatch); "
                           "quantizing it from the checkpoint");
    return std::nullopt;
  }
  auto w = backend.upload_weight_prequantized(file_->values(*e), file_->scales(*e), rows, cols, format, dtype, name);
  if (!w.ok()) {
    log(LogLevel::warning, "quantized cache: " + w.status().message() + "; quantizing '" + name + "' instead");
    return std::nullopt;
  }
  hits_.push_back(w->data);
  return std::move(w.value());
}

void Store::add(const ops::Weight& w) {
  weights_.push_back(w);
  if (std::find(hits_.begin(), hits_.end(), w.data) == hits_.end()) ++n_quantized_;
}

std::string Store::finish(ops::Backend& backend) {
  if (file_ && n_quantized_ == 0 && !weights_.empty()) {
    path_ = file_->path();
    file_.reset();
    return "hit";
  }
  const bool replacing = rejected_ || file_;
  if (file_)
    log(LogLevel::info, "quantized cache " + file_->path() + " lacks " + std::to_string(n_quantized_) +
                            " of this load's weights (written by another backend?); rewriting it");
  file_.reset();  // unmapped before it is replaced
  for (const std::string& c : candidates_) {
    bool created = false;
    Status st = write_cache(c, key_, backend, weights_, &created);
    if (st.ok()) {
      path_ = c;
      log(LogLevel::info, "wrote the quantized weights to " + c);
      return replacing ? "stale" : "written";
    }
    log(LogLevel::warning, "could not write the quantized cache: " + st.message());
    if (created) break;  // the folder took the file but the write failed (disk full…): not another folder
  }
  return "unwritten";
}

std::unique_ptr<Store> open_store(const std::string& model_dir, const std::string& layout,
                                  const LoadOptions& options, const WeightOptions& weights) {
  if (options.quant_cache == QuantCache::off) return nullptr;
  const std::string tag = precision_tag(weights);
  if (tag.empty()) return nullptr;
  auto key = make_key(model_dir, layout, weights);
  if (!key.ok()) {
    log(LogLevel::warning, "quantized cache disabled: " + key.status().message());
    return nullptr;
  }
  auto candidates = candidate_paths(key->model_path, tag, options.quant_cache_dir);
  return std::make_unique<Store>(std::move(key.value()), std::move(candidates));
}

void finish_store(Store* store, ops::Backend& backend, const WeightOptions& weights, ModelInfo& info) {
  info.quant_cache.clear();
  info.quant_cache_path.clear();
  if (precision_tag(weights).empty()) return;
  if (!store) {
    info.quant_cache = "off";
    return;
  }
  info.quant_cache = store->finish(backend);
  info.quant_cache_path = store->path();
}

}  // namespace pixtral::qcache
