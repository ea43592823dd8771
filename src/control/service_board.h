// ServiceBoard: the latest job list each cluster reported on its link (src/cluster/README.md
// "jobs"), with a per-cluster sequence number, and the bell that wakes the service scheduler
// (deploy, undeploy, scale, reports). In memory: every link call carries the full list again.
// One per root. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "common/json.h"

namespace canopy::control {

class ServiceBoard {
 public:
  struct Report {
    Json jobs = Json::array();  // [{job_id, service_id?, node_id?, address?, state?}]
    uint64_t seq = 0;
    TimePoint at{};
  };
  void RecordJobs(const std::string& cluster_id, Json jobs, TimePoint at);
  std::map<std::string, Report> Reports() const;
  void Wake();
  // Returns when woken (since the last call) or after `timeout`.
  void WaitForWake(std::chrono::milliseconds timeout);

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Report> reports_;
  bool woken_ = false;
};

}  // namespace canopy::control
