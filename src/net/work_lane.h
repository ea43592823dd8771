// A bounded lane of work: `threads` threads run submitted tasks in order; at most `max_queued`
// wait. TrySubmit refuses (false) instead of queueing more, so a flood of one kind of request
// (logins: Argon2 costs ~20 ms and 19 MiB each) is answered 503 at once rather than piling up
// and starving other work. Thread-safe.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace canopy::net {

class WorkLane {
 public:
  WorkLane(std::string name, size_t threads, size_t max_queued);
  ~WorkLane();  // Shutdown()
  WorkLane(const WorkLane&) = delete;
  WorkLane& operator=(const WorkLane&) = delete;

  // Queues `task`; false (task not taken) when `max_queued` tasks already wait or the lane stops.
  bool TrySubmit(std::function<void()> task);
  // Stops: queued tasks that have not started are destroyed unrun, running ones finish, later
  // submissions are refused. Idempotent; not from a task of this lane.
  void Shutdown();
  const std::string& name() const { return name_; }
  size_t queued() const;

 private:
  void Run();

  std::string name_;
  size_t max_queued_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace canopy::net
