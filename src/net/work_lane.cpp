#include "net/work_lane.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>

namespace canopy::net {

WorkLane::WorkLane(std::string name, size_t threads, size_t max_queued)
    : name_(std::move(name)), max_queued_(max_queued) {
  threads = std::max<size_t>(threads, 1);
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkLane::~WorkLane() { Shutdown(); }

void WorkLane::Shutdown() {
  std::deque<std::function<void()>> dropped;
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    dropped.swap(queue_);
    threads.swap(threads_);
  }
  cv_.notify_all();
  for (auto& t : threads) t.join();
  // `dropped` is destroyed here, outside the lock (a task's captures may do work when freed).
}

bool WorkLane::TrySubmit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_ || queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

size_t WorkLane::queued() const {
  std::lock_guard<std::mutex> l(mu_);
  return queue_.size();
}

void WorkLane::Run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      SPDLOG_ERROR("Work lane task threw lane={} error={}", name_, e.what());
    } catch (...) {
      SPDLOG_ERROR("Work lane task threw lane={}", name_);
    }
  }
}

}  // namespace canopy::net
