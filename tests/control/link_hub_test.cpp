#include "control/link_hub.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace canopy::control {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

bool WaitFor(const std::atomic<int>& v, int want, std::chrono::milliseconds t) {
  auto end = Steady::now() + t;
  while (Steady::now() < end) {
    if (v.load() == want) return true;
    std::this_thread::sleep_for(5ms);
  }
  return v.load() == want;
}

TEST(LinkHub, AParkedCallAnswersAtItsDeadline) {
  LinkHub hub;
  hub.Start();
  std::this_thread::sleep_for(50ms);  // the hub's thread sleeps with nothing parked
  std::atomic<int> fired{0};
  auto start = Steady::now();
  hub.Park("c1", hub.Seq("c1"), Steady::now() + 200ms, [&] { ++fired; });
  ASSERT_TRUE(WaitFor(fired, 1, 2s));
  EXPECT_GE(Steady::now() - start, 190ms);
}

TEST(LinkHub, NotifyAnswersAtOnceAndANotifyBeforeParkIsNotLost) {
  LinkHub hub;
  hub.Start();
  std::atomic<int> fired{0};
  hub.Park("c1", hub.Seq("c1"), Steady::now() + 10s, [&] { ++fired; });
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(fired.load(), 0);
  hub.Notify("c1");
  ASSERT_TRUE(WaitFor(fired, 1, 2s));
  uint64_t seen = hub.Seq("c2");
  hub.Notify("c2");  // between reading the queue and parking
  hub.Park("c2", seen, Steady::now() + 10s, [&] { ++fired; });
  ASSERT_TRUE(WaitFor(fired, 2, 2s));
}

TEST(LinkHub, ANewerCallOfTheSameClusterAnswersTheOlderAndStopAnswersAll) {
  LinkHub hub;
  hub.Start();
  std::atomic<int> older{0}, newer{0}, other{0};
  hub.Park("c1", hub.Seq("c1"), Steady::now() + 10s, [&] { ++older; });
  hub.Park("c1", hub.Seq("c1"), Steady::now() + 10s, [&] { ++newer; });
  hub.Park("c9", hub.Seq("c9"), Steady::now() + 10s, [&] { ++other; });
  ASSERT_TRUE(WaitFor(older, 1, 2s));
  EXPECT_EQ(newer.load(), 0);
  hub.Stop();
  EXPECT_EQ(newer.load(), 1);
  EXPECT_EQ(other.load(), 1);
  hub.Park("c1", 0, Steady::now() + 10s, [&] { ++newer; });  // stopped: at once
  EXPECT_EQ(newer.load(), 2);
}

}  // namespace
}  // namespace canopy::control
