// LinkHub: parks the clusters' long-poll link calls until a command for them arrives (Notify),
// their deadline passes, or a newer call of the same cluster replaces them. One per root, shared
// by the cluster tier (which parks) and ClusterCommands (which notifies). Owns one thread, which
// the daemon's wiring starts and stops; parked calls are answered on it. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace canopy::control {

class LinkHub {
 public:
  using Fire = std::function<void()>;
  using SteadyTime = std::chrono::steady_clock::time_point;

  LinkHub() = default;
  LinkHub(const LinkHub&) = delete;
  LinkHub& operator=(const LinkHub&) = delete;
  ~LinkHub();  // Stop()

  // Starts the thread that answers parked calls (idempotent).
  void Start();
  // Answers every parked call now and joins the thread; later Park calls fire at once.
  void Stop();

  // The cluster's notification count, to pass to Park.
  uint64_t Seq(const std::string& cluster);
  // Parks `fire` until Notify(cluster), `deadline`, or a newer Park for the same cluster (which
  // answers the older one at once). If a Notify happened since Seq() returned `seen`, it fires at
  // once. `fire` runs on the hub's thread.
  void Park(const std::string& cluster, uint64_t seen, SteadyTime deadline, Fire fire);
  void Notify(const std::string& cluster);

 private:
  struct Waiter {
    SteadyTime deadline;
    Fire fire;
    bool due = false;
  };
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, uint64_t> seq_;
  std::map<std::string, Waiter> waiters_;
  std::vector<Fire> ready_;
  bool rescan_ = false;  // a waiter was added since the loop computed its wake-up time
  bool started_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace canopy::control
