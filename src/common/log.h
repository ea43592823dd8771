// Structured logging over spdlog: one logger per daemon, "key=value" fields after the message.
// Messages start with a capital letter and have no trailing period. Thread-safe.
// Secrets must be wrapped in Secret<T>, whose formatter prints "<redacted>".
#pragma once

#include <spdlog/spdlog.h>

#include <string>

namespace canopy::log {

// Sets up the process logger: to stderr, and to `file` too when non-empty. level: trace..off.
void Init(const std::string& daemon, const std::string& level, const std::string& file = "");

}  // namespace canopy::log

#define CANOPY_LOG_INFO(...) SPDLOG_INFO(__VA_ARGS__)
#define CANOPY_LOG_WARN(...) SPDLOG_WARN(__VA_ARGS__)
#define CANOPY_LOG_ERROR(...) SPDLOG_ERROR(__VA_ARGS__)
#define CANOPY_LOG_DEBUG(...) SPDLOG_DEBUG(__VA_ARGS__)
