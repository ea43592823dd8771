#include "control/service_board.h"

namespace canopy::control {

void ServiceBoard::RecordJobs(const std::string& cluster_id, Json jobs, TimePoint at) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto& r = reports_[cluster_id];
    r.jobs = std::move(jobs);
    r.seq++;
    r.at = at;
    woken_ = true;
  }
  cv_.notify_all();
}

std::map<std::string, ServiceBoard::Report> ServiceBoard::Reports() const {
  std::lock_guard<std::mutex> l(mu_);
  return reports_;
}

void ServiceBoard::Wake() {
  {
    std::lock_guard<std::mutex> l(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void ServiceBoard::WaitForWake(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait_for(l, timeout, [this] { return woken_; });
  woken_ = false;
}

}  // namespace canopy::control
