// SPDX-License-Identifier: Apache-2.0
// Status helpers, the log sink and small image utilities shared by every module.
#include <cstdio>
#include <mutex>

#include "pixtral/image.h"
#include "pixtral/log.h"
#include "pixtral/status.h"

namespace pixtral {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::ok: return "ok";
    case ErrorCode::invalid_argument: return "invalid_argument";
    case ErrorCode::not_found: return "not_found";
    case ErrorCode::io: return "io";
    case ErrorCode::format: return "format";
    case ErrorCode::unsupported: return "unsupported";
    case ErrorCode::out_of_memory: return "out_of_memory";
    case ErrorCode::context_overflow: return "context_overflow";
    case ErrorCode::cancelled: return "cancelled";
    case ErrorCode::device: return "device";
    case ErrorCode::internal: return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(error_code_name(code_)) + ": " + message_;
}

Status Status::with_context(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_);
}

namespace {
std::mutex g_log_mutex;
LogSink g_sink;
LogLevel g_level = LogLevel::info;
}  // namespace

void set_log_sink(LogSink sink) {
  std::lock_guard lock(g_log_mutex);
  g_sink = std::move(sink);
}

void set_log_level(LogLevel level) {
  std::lock_guard lock(g_log_mutex);
  g_level = level;
}

void log(LogLevel level, std::string_view message) {
  std::lock_guard lock(g_log_mutex);
  if (level < g_level) return;
  if (g_sink) {
    g_sink(level, message);
    return;
  }
  static const char* names[] = {"debug", "info", "warning", "error"};
  std::fprintf(stderr, "pixtral %s: %.*s\n", names[int(level)], int(message.size()), message.data());
}

int bytes_per_pixel(PixelFormat f) {
  switch (f) {
    case PixelFormat::rgb8: return 3;
    case PixelFormat::rgba8: return 4;
    case PixelFormat::gray8: return 1;
    case PixelFormat::gray_alpha8: return 2;
  }
  return 0;
}

Image Image::copy_of(const ImageView& v) {
  Image img;
  img.width = v.width;
  img.height = v.height;
  img.format = v.format;
  const std::size_t row = std::size_t(v.width) * bytes_per_pixel(v.format);
  img.pixels.resize(row * std::size_t(v.height));
  for (int y = 0; y < v.height; ++y)
    std::copy_n(v.data + std::size_t(y) * v.row_bytes(), row, img.pixels.data() + std::size_t(y) * row);
  return img;
}

}  // namespace pixtral
