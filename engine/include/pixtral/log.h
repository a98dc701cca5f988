// SPDX-License-Identifier: Apache-2.0
// Log sink: the engine reports warnings (unknown config keys, fallbacks) through one process-wide callback.
// Default: warnings and errors to stderr. The app installs its own sink at start-up.
#pragma once

#include <functional>
#include <string_view>

namespace pixtral {

enum class LogLevel { debug, info, warning, error };

using LogSink = std::function<void(LogLevel, std::string_view message)>;

/// Replace the sink (nullptr restores the default). Call before loading models; not synchronised with logging.
void set_log_sink(LogSink sink);
/// Minimum level that reaches the sink (default: info).
void set_log_level(LogLevel level);
/// Emit a message (thread-safe as long as the sink is).
void log(LogLevel level, std::string_view message);

}  // namespace pixtral
