#include "control/login_throttle.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

namespace canopy::control {

LoginThrottle::LoginThrottle(ClockPtr clock, LoginThrottleOptions options)
    : clock_(std::move(clock)), opts_(options) {}

double LoginThrottle::Level(const Bucket& b, double burst, std::chrono::milliseconds refill,
                            TimePoint now) {
  if (now <= b.at) return b.tokens;
  double elapsed = std::chrono::duration<double, std::milli>(now - b.at).count();
  return std::min(burst, b.tokens + elapsed / static_cast<double>(refill.count()));
}

int64_t LoginThrottle::WaitSeconds(const Table& t, const std::string& key, double burst,
                                   std::chrono::milliseconds refill, TimePoint now) {
  auto it = t.find(key);
  if (it == t.end()) return 0;
  double level = Level(it->second, burst, refill, now);
  if (level >= 1) return 0;
  double ms = (1 - level) * static_cast<double>(refill.count());
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(ms / 1000)));
}

void LoginThrottle::Take(Table& t, const std::string& key, double burst,
                         std::chrono::milliseconds refill, TimePoint now) {
  auto it = t.find(key);
  if (it == t.end()) {
    if (t.size() >= opts_.max_tracked) {
      // Forget the buckets that have refilled (they behave as absent ones); if none has, the
      // table is under attack by many keys: drop an arbitrary half rather than grow.
      std::erase_if(t,
                    [&](const auto& kv) { return Level(kv.second, burst, refill, now) >= burst; });
      while (t.size() >= opts_.max_tracked) t.erase(t.begin());
    }
    it = t.emplace(key, Bucket{burst, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = std::max(0.0, Level(b, burst, refill, now) - 1);
  b.at = now;
}

Status LoginThrottle::Admit(const std::string& username, const std::string& address,
                            int64_t* retry_after_s) {
  TimePoint now = clock_->Now();
  std::lock_guard<std::mutex> lock(mu_);
  int64_t user_wait = WaitSeconds(users_, username, opts_.user_burst, opts_.user_refill, now);
  int64_t addr_wait = address.empty() ? 0
                                      : WaitSeconds(addresses_, address, opts_.address_burst,
                                                    opts_.address_refill, now);
  if (user_wait == 0 && addr_wait == 0) return OkStatus();
  int64_t wait = std::max(user_wait, addr_wait);
  if (retry_after_s != nullptr) *retry_after_s = wait;
  SPDLOG_WARN("Login throttled by={} wait_s={}", user_wait >= addr_wait ? "username" : "address",
              wait);
  return Error{ErrorCode::kResourceExhausted,
               fmt::format("too many failed logins {}; retry in {} s",
                           user_wait >= addr_wait ? "for this user" : "from this address", wait),
               "login_throttled"};
}

void LoginThrottle::Failed(const std::string& username, const std::string& address) {
  TimePoint now = clock_->Now();
  std::lock_guard<std::mutex> lock(mu_);
  Take(users_, username, opts_.user_burst, opts_.user_refill, now);
  if (!address.empty()) Take(addresses_, address, opts_.address_burst, opts_.address_refill, now);
}

}  // namespace canopy::control
