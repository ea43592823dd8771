// Structured logging over spdlog: one logger per daemon, "key=value" fields after the message.
// Messages start with a capital letter and have no trailing period. Thread-safe.
// The one macro family everywhere: spdlog's SPDLOG_INFO / SPDLOG_WARN / SPDLOG_ERROR /
// SPDLOG_DEBUG (they record file and line, and skip formatting below the active level).
// Secrets must be wrapped in Secret<T>, whose formatter prints "<redacted>".
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace canopy::log {

// Sets up the process logger: to stderr, and to `file` too when non-empty. level: trace..off.
void Init(const std::string& daemon, const std::string& level, const std::string& file = "");

}  // namespace canopy::log
