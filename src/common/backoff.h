// Retry delays of the operations engine and the AWS client: capped exponential backoff with full
// jitter (AWS "Exponential Backoff And Jitter"). Pure functions; Backoff() uses a thread-local
// generator and is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>

namespace canopy {

// The largest delay after a failed try number `attempt` (0-based): base * 2^attempt, capped at
// `max` (and never negative).
std::chrono::milliseconds BackoffCeiling(int64_t attempt, std::chrono::milliseconds base,
                                         std::chrono::milliseconds max);

// A delay drawn uniformly from [0, BackoffCeiling(attempt, base, max)].
std::chrono::milliseconds Backoff(int64_t attempt, std::chrono::milliseconds base,
                                  std::chrono::milliseconds max);

}  // namespace canopy
