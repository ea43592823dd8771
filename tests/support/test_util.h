// Test helpers: ASSERT_OK/EXPECT_OK that print the Error, FakeClock, TempDir, free ports,
// and a child-process helper for integration tests that start real daemons.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

#define ASSERT_OK(expr)                                              \
  do {                                                               \
    auto&& canopy_r_ = (expr);                                       \
    ASSERT_TRUE(canopy_r_.has_value()) << canopy_r_.error().ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                              \
  do {                                                               \
    auto&& canopy_r_ = (expr);                                       \
    EXPECT_TRUE(canopy_r_.has_value()) << canopy_r_.error().ToString(); \
  } while (0)

namespace canopy::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start = FromUnixMillis(1'800'000'000'000)) : now_(start) {}
  TimePoint Now() const override {
    std::lock_guard<std::mutex> l(mu_);
    return now_;
  }
  void Advance(std::chrono::milliseconds d) {
    std::lock_guard<std::mutex> l(mu_);
    now_ += d;
  }
  void Set(TimePoint t) {
    std::lock_guard<std::mutex> l(mu_);
    now_ = t;
  }

 private:
  mutable std::mutex mu_;
  TimePoint now_;
};

// A fresh directory under /tmp removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t FreePort();

// A child process (fork/exec) with stdout+stderr to `log_path`. Killed (SIGKILL) on destruction.
class Process {
 public:
  Process(std::vector<std::string> argv, std::vector<std::string> extra_env, std::string log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  int pid() const { return pid_; }
  bool Running();
  void Kill(int sig);   // sends sig
  int Wait();           // waits, returns exit status (or 128+signal)

 private:
  int pid_ = -1;
  bool reaped_ = false;
};

std::string ReadFile(const std::string& path);

}  // namespace canopy::testing
