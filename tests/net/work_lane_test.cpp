#include "net/work_lane.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace canopy::net {
namespace {

using namespace std::chrono_literals;

TEST(WorkLane, RunsTasksOnItsThreadsAndRefusesBeyondItsQueue) {
  WorkLane lane("test", 1, 2);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> started{0}, done{0};
  auto blocker = [&] {
    ++started;
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, 10s, [&] { return release; });
    ++done;
  };
  ASSERT_TRUE(lane.TrySubmit(blocker));
  for (int i = 0; i < 100 && started.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(started.load(), 1);  // the only thread is busy
  EXPECT_TRUE(lane.TrySubmit([&] { ++done; }));
  EXPECT_TRUE(lane.TrySubmit([&] { ++done; }));
  EXPECT_EQ(lane.queued(), 2u);
  EXPECT_FALSE(lane.TrySubmit([&] { ++done; }));  // the queue is full: refused, not run
  {
    std::lock_guard<std::mutex> l(mu);
    release = true;
  }
  cv.notify_all();
  for (int i = 0; i < 200 && done.load() < 3; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(done.load(), 3);
  EXPECT_TRUE(lane.TrySubmit([&] { ++done; }));
}

TEST(WorkLane, ShutdownDropsQueuedTasksAndRefusesNewOnes) {
  auto lane = std::make_unique<WorkLane>("test", 1, 8);
  std::atomic<bool> go{false}, started{false};
  std::atomic<int> ran{0};
  ASSERT_TRUE(lane->TrySubmit([&] {
    started = true;
    while (!go.load()) std::this_thread::sleep_for(1ms);
    ++ran;
  }));
  for (int i = 0; i < 200 && !started.load(); ++i) std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(started.load());
  auto dropped = std::make_shared<int>(0);
  std::weak_ptr<int> watch = dropped;
  ASSERT_TRUE(lane->TrySubmit([&, dropped] { ++ran; }));
  dropped.reset();
  std::thread releaser([&] {
    std::this_thread::sleep_for(50ms);
    go = true;
  });
  lane->Shutdown();
  releaser.join();
  EXPECT_EQ(ran.load(), 1);      // the running task finished, the queued one never ran
  EXPECT_TRUE(watch.expired());  // and its captures were freed
  EXPECT_FALSE(lane->TrySubmit([&] { ++ran; }));
  lane.reset();  // a second shutdown is harmless
}

TEST(WorkLane, AThrowingTaskDoesNotStopTheLane) {
  WorkLane lane("test", 1, 4);
  std::atomic<int> ran{0};
  ASSERT_TRUE(lane.TrySubmit([] { throw std::runtime_error("boom"); }));
  ASSERT_TRUE(lane.TrySubmit([&] { ++ran; }));
  for (int i = 0; i < 200 && ran.load() == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(ran.load(), 1);
}

}  // namespace
}  // namespace canopy::net
