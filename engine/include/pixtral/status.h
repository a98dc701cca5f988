// SPDX-License-Identifier: Apache-2.0
// Status / Result<T>: how every engine function reports failure. No exception crosses the engine boundary;
// messages are specific and actionable ("tensor layers.3.attention.wq.weight: expected [4096,5120] bf16, got
// [4096,4096] bf16").
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace pixtral {

/// What kind of failure a Status carries; callers branch on this, users read the message.
enum class ErrorCode {
  ok = 0,
  invalid_argument,  ///< bad parameter or request from the caller
  not_found,         ///< a file or tensor that should exist does not
  io,                ///< reading or writing failed
  format,            ///< a file exists but its content is malformed
  unsupported,       ///< valid input using a feature the engine does not implement
  out_of_memory,     ///< host or device allocation failed
  context_overflow,  ///< the prompt does not fit the session's context
  cancelled,         ///< stopped on request
  device,            ///< GPU / driver error
  internal,          ///< a bug: an invariant did not hold
};

/// Short lower-case name of an error code ("format", "out_of_memory", ...).
const char* error_code_name(ErrorCode code);

/// A success flag plus, on failure, a code and a human-readable message.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status success() { return {}; }

  bool ok() const { return code_ == ErrorCode::ok; }
  explicit operator bool() const { return ok(); }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  /// "format: tekken.json: ..." — code name and message, for logs.
  std::string to_string() const;
  /// Prefix the message with context: Status(format,"x").with_context("tekken.json") → "tekken.json: x".
  Status with_context(const std::string& context) const;

 private:
  ErrorCode code_ = ErrorCode::ok;
  std::string message_;
};

/// A value or the Status explaining why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                      // NOLINT(implicit)
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT
  Result(ErrorCode code, std::string message) : v_(Status(code, std::move(message))) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace pixtral

/// Return the Status of an expression if it failed.
#define PIXTRAL_RETURN_IF_ERROR(expr)            \
  do {                                           \
    ::pixtral::Status _pixtral_st = (expr);      \
    if (!_pixtral_st.ok()) return _pixtral_st;   \
  } while (0)
