// SPDX-License-Identifier: Apache-2.0
// MappedFile: POSIX open + fstat + mmap(PROT_READ, MAP_PRIVATE). The descriptor is closed right after mapping
// (the mapping keeps the file alive).
#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

namespace pixtral::io {

namespace {
std::string errno_text(int err) { return std::strerror(err); }
}  // namespace

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      path_(std::move(other.path_)) {
  other.path_.clear();
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

void MappedFile::release() noexcept {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

Result<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Status(err == ENOENT ? ErrorCode::not_found : ErrorCode::io,
                  "cannot open " + path + ": " + errno_text(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status(ErrorCode::io, "cannot stat " + path + ": " + errno_text(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status(ErrorCode::io, "cannot map " + path + ": not a regular file");
  }
  if (st.st_size < 0 || std::uint64_t(st.st_size) > std::numeric_limits<std::size_t>::max()) {
    ::close(fd);
    return Status(ErrorCode::io, "cannot map " + path + ": file too large for this address space");
  }
  MappedFile f;
  f.path_ = path;
  f.size_ = std::size_t(st.st_size);
  if (f.size_ > 0) {
    void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      f.size_ = 0;
      return Status(err == ENOMEM ? ErrorCode::out_of_memory : ErrorCode::io,
                    "cannot mmap " + path + ": " + errno_text(err));
    }
    f.data_ = static_cast<std::uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

}  // namespace pixtral::io
