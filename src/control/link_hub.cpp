#include "control/link_hub.h"

#include <algorithm>

namespace canopy::control {

LinkHub::~LinkHub() { Stop(); }

void LinkHub::Start() {
  std::lock_guard<std::mutex> l(mu_);
  if (started_ || stop_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void LinkHub::Stop() {
  std::vector<Fire> fire;
  std::thread t;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    t = std::move(thread_);
  }
  cv_.notify_all();
  if (t.joinable()) t.join();
  {
    std::lock_guard<std::mutex> l(mu_);
    fire = std::move(ready_);
    ready_.clear();
    for (auto& [id, w] : waiters_) fire.push_back(std::move(w.fire));
    waiters_.clear();
  }
  for (auto& f : fire) f();
}

uint64_t LinkHub::Seq(const std::string& cluster) {
  std::lock_guard<std::mutex> l(mu_);
  return seq_[cluster];
}

void LinkHub::Park(const std::string& cluster, uint64_t seen, SteadyTime deadline, Fire fire) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!stop_) {
      auto it = waiters_.find(cluster);
      if (it != waiters_.end()) {
        ready_.push_back(std::move(it->second.fire));  // the older call answers now
        waiters_.erase(it);
      }
      bool due = seq_[cluster] != seen;
      waiters_[cluster] = Waiter{deadline, std::move(fire), due};
      rescan_ = true;  // the loop may be sleeping until a later deadline
      fire = nullptr;
    }
  }
  if (fire) {
    fire();  // stopped: answer at once
    return;
  }
  cv_.notify_all();
}

void LinkHub::Notify(const std::string& cluster) {
  {
    std::lock_guard<std::mutex> l(mu_);
    ++seq_[cluster];
    auto it = waiters_.find(cluster);
    if (it != waiters_.end()) it->second.due = true;
  }
  cv_.notify_all();
}

void LinkHub::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    rescan_ = false;
    auto now = std::chrono::steady_clock::now();
    std::vector<Fire> fire = std::move(ready_);
    ready_.clear();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.due || it->second.deadline <= now) {
        fire.push_back(std::move(it->second.fire));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
    if (!fire.empty()) {
      l.unlock();
      for (auto& f : fire) f();
      l.lock();
      continue;
    }
    SteadyTime wake = now + std::chrono::hours(1);
    for (const auto& [id, w] : waiters_) wake = std::min(wake, w.deadline);
    cv_.wait_until(l, wake, [&] {
      if (stop_ || rescan_ || !ready_.empty()) return true;
      for (const auto& [id, w] : waiters_) {
        if (w.due) return true;
      }
      return false;
    });
  }
}

}  // namespace canopy::control
