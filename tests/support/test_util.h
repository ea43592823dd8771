// Test helpers: ASSERT_OK/EXPECT_OK that print the Error, FakeClock, TempDir, closed ports, the
// build's and the source tree's folders, and a child-process helper for integration tests that
// start real daemons.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

#define ASSERT_OK(expr)                                                 \
  do {                                                                  \
    auto&& canopy_r_ = (expr);                                          \
    ASSERT_TRUE(canopy_r_.has_value()) << canopy_r_.error().ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                                 \
  do {                                                                  \
    auto&& canopy_r_ = (expr);                                          \
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

// A TCP port on 127.0.0.1 that refuses connections for as long as this object lives: it is bound
// (so no other process can take it) but never listens. For "nobody answers there" tests.
class ClosedPort {
 public:
  ClosedPort();
  ~ClosedPort();
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A port for a third-party daemon that cannot listen on port 0 and report it (sshd, moto): the
// kernel's pick of a moment ago. Callers start the daemon and retry with another when it fails
// to bind (see StartWithFreshPorts). Canopy's own daemons listen on port 0 instead.
uint16_t PickUnusedPort();

// Runs `start(port)` with fresh ports until it returns true (at most `attempts` times).
template <class Start>
bool StartWithFreshPorts(Start start, int attempts = 5) {
  for (int i = 0; i < attempts; ++i) {
    if (start(PickUnusedPort())) return true;
  }
  return false;
}

// Folder of the built binaries (canopy, canopyd, canopyd-dist) and the source tree's root. Set
// once in a generated file (tests/support/paths.cpp.in), so no other object carries a path of
// this checkout and a fresh clone elsewhere still hits the compiler cache.
const std::string& BinDir();
const std::string& SourceDir();

// Reads a URL file a daemon writes once it is bound (root.url, provider.url, cluster.url) and
// returns its port; waits up to `timeout` while `running()` holds. 0 when it never appeared.
uint16_t WaitForUrlFilePort(const std::string& path, const std::function<bool()>& running,
                            std::chrono::milliseconds timeout);

// A child process (fork/exec) with stdout+stderr to `log_path`. Killed (SIGKILL) on destruction.
class Process {
 public:
  Process(std::vector<std::string> argv, std::vector<std::string> extra_env, std::string log_path);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  int pid() const { return pid_; }
  bool Running();
  void Kill(int sig);  // sends sig
  int Wait();          // waits, returns exit status (or 128+signal)

 private:
  int pid_ = -1;
  bool reaped_ = false;
};

std::string ReadFile(const std::string& path);

}  // namespace canopy::testing
