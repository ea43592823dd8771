// WaitForOperation's progress when several steps pass between two polls: every step gets a line,
// in order, on a terminal and off it, before the operation's last line. A fake fetcher replays a
// script of operation states; the sleep only moves a fake clock.
#include "cli/wait.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <vector>

#include "support/test_util.h"

namespace canopy::cli {
namespace {

using canopy::testing::FakeClock;
using namespace std::chrono_literals;

constexpr int64_t kT0 = 1'800'000'000'000;  // when the first step started (unix ms)

std::string At(int64_t ms) { return FormatRfc3339(FromUnixMillis(kT0 + ms)); }

// One entry of "steps": started and finished `start_ms` / `end_ms` after kT0 (negative: null).
Json Step(const std::string& name, const std::string& state, int64_t start_ms = -1,
          int64_t end_ms = -1) {
  return Json{{"name", name},
              {"state", state},
              {"started_at", start_ms < 0 ? Json() : Json(At(start_ms))},
              {"finished_at", end_ms < 0 ? Json() : Json(At(end_ms))}};
}

// The eight steps of a cluster.create: each of steps [0, current) took durations[i] ms, one after
// the other; step `current` started after them and is in `current_state` (the rest pending).
Json ClusterCreate(const std::string& state, size_t current, const std::string& current_state,
                   const std::vector<int64_t>& durations) {
  const std::vector<std::string> names = {"key_pair", "firewalls", "identity", "instance",
                                          "install",  "token",     "pair",     "workers"};
  Json steps = Json::array();
  int64_t t = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i < current) {
      int64_t d = i < durations.size() ? durations[i] : 1000;
      steps.push_back(Step(names[i], "succeeded", t, t + d));
      t += d;
    } else if (i == current) {
      steps.push_back(
          Step(names[i], current_state, t, current_state == "failed" ? t + 500 : int64_t{-1}));
    } else {
      steps.push_back(Step(names[i], "pending"));
    }
  }
  Json op{{"id", "op_1"},
          {"kind", "cluster.create"},
          {"state", state},
          {"step", current < names.size() && state != "pending" ? Json(names[current]) : Json()},
          {"step_index", static_cast<int64_t>(current)},
          {"steps", steps}};
  if (state == "failed") {
    op["error"] = Json{{"code", "provider_error"}, {"message", "sshd refused"}};
  }
  return op;
}

Json Running(size_t current, const std::vector<int64_t>& durations = {}) {
  return ClusterCreate("running", current, "running", durations);
}
Json Succeeded(const std::vector<int64_t>& durations = {}) {
  return ClusterCreate("succeeded", 8, "", durations);
}

class WaitProgressTest : public ::testing::Test {
 protected:
  // Waits on `script` (one operation per poll, the last one repeated).
  Result<Json> Wait(std::vector<Json> script, bool terminal) {
    size_t next = 0;
    auto fetch = [&](const std::string&) -> Result<Json> {
      Json op = script[std::min(next, script.size() - 1)];
      ++next;
      return op;
    };
    auto sleep = [this](std::chrono::milliseconds d) { clock_.Advance(d); };
    return WaitForOperation("op_1", fetch, clock_, sleep, err_, terminal);
  }

  // The lines of stderr (split at '\n'; a '\r' inside one line stays).
  std::vector<std::string> Lines() const {
    std::vector<std::string> out;
    std::istringstream in(err_.str());
    for (std::string l; std::getline(in, l);) {
      out.push_back(l);
    }
    return out;
  }

  FakeClock clock_;
  std::ostringstream err_;
};

TEST_F(WaitProgressTest, AJumpOverSeveralStepsPrintsEachStepPassedInOrder) {
  auto op = Wait({Running(0), Running(6, {300, 1200, 12'000, 65'000, 4000, 100}), Succeeded()},
                 /*terminal=*/false);
  ASSERT_OK(op);
  EXPECT_EQ(err_.str(),
            "cluster.create: step 1/8 key_pair (0s)\n"
            // Step 1 already has its line; 2..6 passed unseen between the two polls.
            "cluster.create: step 2/8 firewalls done in 1.2s\n"
            "cluster.create: step 3/8 identity done in 12s\n"
            "cluster.create: step 4/8 instance done in 1m05s\n"
            "cluster.create: step 5/8 install done in 4.0s\n"
            "cluster.create: step 6/8 token done in 0.1s\n"
            "cluster.create: step 7/8 pair (0s)\n"
            "cluster.create: step 8/8 workers done in 1.0s\n"
            "cluster.create: succeeded (1s)\n");
}

TEST_F(WaitProgressTest, AJumpStraightToSucceededPrintsEveryRemainingStepFirst) {
  auto op = Wait({Running(0), Succeeded({800})}, /*terminal=*/false);
  ASSERT_OK(op);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 9u) << err_.str();
  EXPECT_EQ(lines[0], "cluster.create: step 1/8 key_pair (0s)");
  for (size_t i = 1; i < 8; ++i) {
    EXPECT_NE(lines[i].find(fmt::format("cluster.create: step {}/8 ", i + 1)), std::string::npos)
        << lines[i];
    EXPECT_NE(lines[i].find(" done in 1.0s"), std::string::npos) << lines[i];
  }
  EXPECT_EQ(lines[8], "cluster.create: succeeded (0s)");
}

TEST_F(WaitProgressTest, AFirstPollPastSeveralStepsPrintsThemBeforeTheCurrentOne) {
  ASSERT_OK(Wait({Running(2), Succeeded()}, /*terminal=*/false));
  std::vector<std::string> lines = Lines();
  ASSERT_GE(lines.size(), 3u) << err_.str();
  EXPECT_EQ(lines[0], "cluster.create: step 1/8 key_pair done in 1.0s");
  EXPECT_EQ(lines[1], "cluster.create: step 2/8 firewalls done in 1.0s");
  EXPECT_EQ(lines[2], "cluster.create: step 3/8 identity (0s)");
}

TEST_F(WaitProgressTest, OnATerminalPassedStepsStayAndOnlyTheCurrentLineIsRewritten) {
  auto op = Wait({ClusterCreate("pending", 0, "pending", {}), Running(0),
                  Running(3, {2500, 700, 30'000}), Running(3), Succeeded({2500, 700, 30'000})},
                 /*terminal=*/true);
  ASSERT_OK(op);
  std::string e = err_.str();
  EXPECT_EQ(e,
            "\rcluster.create: pending (0s)"
            "\rcluster.create: step 1/8 key_pair (0s)"
            // The step over: its line stays, with how long it took.
            "\rcluster.create: step 1/8 key_pair done in 2.5s\n"
            "\rcluster.create: step 2/8 firewalls done in 0.7s\n"
            "\rcluster.create: step 3/8 identity done in 30s\n"
            "\rcluster.create: step 4/8 instance (1s)"
            "\rcluster.create: step 4/8 instance (1s)"
            "\rcluster.create: step 4/8 instance done in 1.0s\n"
            "\rcluster.create: step 5/8 install done in 1.0s\n"
            "\rcluster.create: step 6/8 token done in 1.0s\n"
            "\rcluster.create: step 7/8 pair done in 1.0s\n"
            "\rcluster.create: step 8/8 workers done in 1.0s\n"
            "\rcluster.create: succeeded (2s)\n");
}

TEST_F(WaitProgressTest, OnATerminalAShorterPermanentLineBlanksOutTheRewrittenOne) {
  Json retrying = Running(0);
  retrying["last_error"] = Json{{"code", "unavailable"}, {"message", "cloud is busy, try later"}};
  ASSERT_OK(Wait({retrying, Succeeded()}, /*terminal=*/true));
  std::string first =
      "cluster.create: step 1/8 key_pair (0s) - retrying after: cloud is busy, try later";
  std::string done = "cluster.create: step 1/8 key_pair done in 1.0s";
  ASSERT_LT(done.size(), first.size());
  EXPECT_EQ(err_.str().substr(0, 2 + first.size() + first.size() + 1),
            "\r" + first + "\r" + done + std::string(first.size() - done.size(), ' ') + "\n");
}

TEST_F(WaitProgressTest, AFailureRightAfterAJumpPrintsThePassedStepsFirst) {
  for (bool terminal : {false, true}) {
    SCOPED_TRACE(terminal ? "terminal" : "not a terminal");
    err_.str("");
    auto op = Wait({Running(0), ClusterCreate("failed", 4, "failed", {1000, 2000, 3000, 4000})},
                   terminal);
    ASSERT_FALSE(op.has_value());
    EXPECT_EQ(op.error().message, "operation op_1 failed at step install: sshd refused");
    // Off a terminal step 1's own line stays as it was; on one it becomes the step's final line.
    std::vector<std::string> lines = Lines();
    ASSERT_EQ(lines.size(), 5u) << err_.str();
    EXPECT_EQ(lines[0], terminal ? "\rcluster.create: step 1/8 key_pair (0s)"
                                   "\rcluster.create: step 1/8 key_pair done in 1.0s"
                                 : "cluster.create: step 1/8 key_pair (0s)");
    auto strip = [](std::string l) {
      l.erase(0, l.find_last_of('\r') + 1);
      l.erase(l.find_last_not_of(' ') + 1);
      return l;
    };
    EXPECT_EQ(strip(lines[1]), "cluster.create: step 2/8 firewalls done in 2.0s");
    EXPECT_EQ(strip(lines[2]), "cluster.create: step 3/8 identity done in 3.0s");
    EXPECT_EQ(strip(lines[3]), "cluster.create: step 4/8 instance done in 4.0s");
    EXPECT_EQ(strip(lines[4]), "cluster.create: failed at step 5/8 install (0s)");
  }
}

TEST_F(WaitProgressTest, StepsAnEarlyFinishNeverRanAreShownAsSkipped) {
  Json early = Succeeded({400, 900});
  // Like the engine's early success: the steps after the one that finished it never started.
  for (size_t i = 2; i < 8; ++i) {
    early["steps"][i] = Step(early["steps"][i]["name"].get<std::string>(), "succeeded");
  }
  ASSERT_OK(Wait({Running(0), early}, /*terminal=*/false));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 9u) << err_.str();
  EXPECT_EQ(lines[1], "cluster.create: step 2/8 firewalls done in 0.9s");
  EXPECT_EQ(lines[2], "cluster.create: step 3/8 identity skipped");
  EXPECT_EQ(lines[7], "cluster.create: step 8/8 workers skipped");
}

TEST_F(WaitProgressTest, StepsWithoutTimesOrIndexStillGetALine) {
  // An older root: no timestamps, no step_index (the position comes from the step's name).
  Json first = Running(0);
  Json later = Running(3);
  for (Json* op : {&first, &later}) {
    op->erase("step_index");
    for (Json& s : (*op)["steps"]) {
      s.erase("started_at");
      s.erase("finished_at");
    }
  }
  ASSERT_OK(Wait({first, later, Succeeded()}, /*terminal=*/false));
  std::vector<std::string> lines = Lines();
  ASSERT_GE(lines.size(), 5u) << err_.str();
  EXPECT_EQ(lines[1], "cluster.create: step 2/8 firewalls done");
  EXPECT_EQ(lines[2], "cluster.create: step 3/8 identity done");
  EXPECT_EQ(lines[3], "cluster.create: step 4/8 instance (0s)");
}

TEST_F(WaitProgressTest, AnOperationWithoutStepsPrintsNoStepLines) {
  ASSERT_OK(
      Wait({Json{{"kind", "x"}, {"state", "running"}}, Json{{"kind", "x"}, {"state", "succeeded"}}},
           /*terminal=*/false));
  EXPECT_EQ(err_.str(), "x: running (0s)\nx: succeeded (0s)\n");
}

}  // namespace
}  // namespace canopy::cli
