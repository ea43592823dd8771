// Login throttling: failed logins drain a token bucket per username and one per client address;
// an empty bucket refuses further attempts (429 with the wait) before any password work is done,
// so a guessing or flooding client costs the root almost nothing. Successful logins cost no
// token. Buckets refill over time; the table of buckets is bounded (full buckets are forgotten
// first). Thread-safe.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/clock.h"
#include "common/result.h"

namespace canopy::control {

struct LoginThrottleOptions {
  // Failures a username absorbs before it is throttled, and the time one more failure is
  // forgiven: 10 and 6 s allow 10 guesses at once, then one every 6 s (~14,400 a day).
  double user_burst = 10;
  std::chrono::milliseconds user_refill{6000};
  // The same per client address (one address trying many usernames).
  double address_burst = 30;
  std::chrono::milliseconds address_refill{2000};
  size_t max_tracked = 100'000;  // bucket entries kept, per kind
};

class LoginThrottle {
 public:
  LoginThrottle(ClockPtr clock, LoginThrottleOptions options = {});

  // kResourceExhausted ("too many failed logins ...; retry in N s", reason "login_throttled")
  // when the username or the address has no failure left, with N in `*retry_after_s`;
  // OkStatus otherwise.
  Status Admit(const std::string& username, const std::string& address,
               int64_t* retry_after_s = nullptr);
  // Takes one failure from the username's and the address's buckets.
  void Failed(const std::string& username, const std::string& address);

 private:
  struct Bucket {
    double tokens = 0;
    TimePoint at{};
  };
  using Table = std::unordered_map<std::string, Bucket>;
  // The bucket's tokens at `now` (refilled, capped at `burst`).
  static double Level(const Bucket& b, double burst, std::chrono::milliseconds refill,
                      TimePoint now);
  void Take(Table& t, const std::string& key, double burst, std::chrono::milliseconds refill,
            TimePoint now);
  // Seconds until the bucket holds one token (0 when it does).
  static int64_t WaitSeconds(const Table& t, const std::string& key, double burst,
                             std::chrono::milliseconds refill, TimePoint now);

  ClockPtr clock_;
  LoginThrottleOptions opts_;
  std::mutex mu_;
  Table users_;
  Table addresses_;
};

}  // namespace canopy::control
