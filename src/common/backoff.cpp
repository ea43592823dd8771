#include "common/backoff.h"

#include <algorithm>
#include <random>

namespace canopy {

std::chrono::milliseconds BackoffCeiling(int64_t attempt, std::chrono::milliseconds base,
                                         std::chrono::milliseconds max) {
  int64_t b = std::max<int64_t>(base.count(), 0);
  int64_t cap = std::max<int64_t>(max.count(), 0);
  int64_t ceiling = b;
  // Doubling stops at the cap, so the product never overflows.
  for (int64_t i = 0; i < attempt && ceiling < cap; ++i) {
    ceiling *= 2;
    if (ceiling == 0) {
      break;
    }
  }
  return std::chrono::milliseconds(std::min(ceiling, cap));
}

std::chrono::milliseconds Backoff(int64_t attempt, std::chrono::milliseconds base,
                                  std::chrono::milliseconds max) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  int64_t ceiling = BackoffCeiling(attempt, base, max).count();
  std::uniform_int_distribution<int64_t> dist(0, ceiling);
  return std::chrono::milliseconds(dist(rng));
}

}  // namespace canopy
