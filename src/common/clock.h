// Clock: injected time source (never read the system clock directly in logic that tests fake).
// SystemClock is thread-safe; FakeClock (tests/support) is thread-safe too.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace canopy {

using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};
using ClockPtr = std::shared_ptr<Clock>;

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
};

// Unix seconds / milliseconds of a time point.
int64_t UnixSeconds(TimePoint t);
int64_t UnixMillis(TimePoint t);
TimePoint FromUnixMillis(int64_t ms);
// RFC 3339 UTC with milliseconds: "2026-11-28T12:00:00.123Z".
std::string FormatRfc3339(TimePoint t);
// The one RFC 3339 parser: "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" (T/Z in either
// case; fractions beyond milliseconds are cut). nullopt for anything else.
std::optional<TimePoint> ParseRfc3339(std::string_view s);

}  // namespace canopy
