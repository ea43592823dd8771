// Kill -9 of the root in the middle of an operation: after a restart the operation resumes and
// completes, every step having run (at least once) in order.
#include <gtest/gtest.h>

#include <sstream>
#include <thread>

#include "support/daemons.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

struct Marker {
  std::string op;
  int step = -1;
  int attempt = -1;
};

std::vector<Marker> ReadMarkers(const std::string& path) {
  std::vector<Marker> out;
  std::istringstream in(ReadFile(path));
  Marker m;
  while (in >> m.op >> m.step >> m.attempt) out.push_back(m);
  return out;
}

TEST(OperationCrash, RootKilledDuringStepTwoResumesAndCompletes) {
  TempDir tmp;
  std::string dir = tmp.str() + "/data";
  RootDaemon root(dir, {"--enable-test-ops", "--op-lease-ms", "1000"});
  root.Start();
  std::string admin = root.AdminToken();
  auto created =
      root.Call("POST", "/api/v1/test/operations", R"({"steps":5,"step_ms":800})", admin);
  ASSERT_EQ(created.status, 202) << created.body;
  std::string op = created.json["operation_id"];

  // Kill at step index 2 (the third step): it has started but not finished.
  std::string markers = dir + "/test-ops.log";
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& m : ReadMarkers(markers))
          if (m.op == op && m.step == 2) return true;
        return false;
      },
      20s));
  auto mid = root.Call("GET", "/api/v1/operations/" + op, "", admin);
  EXPECT_EQ(mid.json["state"], "running");
  EXPECT_EQ(mid.json["step"], "step-3");
  root.KillHard();
  root.Start();

  ASSERT_TRUE(WaitFor(
      [&] {
        auto r = root.Call("GET", "/api/v1/operations/" + op, "", admin);
        return r.json.value("state", "") == "succeeded" || r.json.value("state", "") == "failed";
      },
      40s));
  auto done = root.Call("GET", "/api/v1/operations/" + op, "", admin);
  EXPECT_EQ(done.json["state"], "succeeded") << done.body;
  ASSERT_EQ(done.json["steps"].size(), 5u);
  for (const auto& s : done.json["steps"]) EXPECT_EQ(s["state"], "succeeded") << done.body;

  // Every step ran, in order; step 2 ran again after the crash; steps before it did not.
  auto ms = ReadMarkers(markers);
  std::vector<int> runs(5, 0);
  int last = -1;
  for (const auto& m : ms) {
    ASSERT_EQ(m.op, op);
    ASSERT_GE(m.step, last) << "steps ran out of order";
    last = m.step;
    runs[static_cast<size_t>(m.step)]++;
  }
  EXPECT_EQ(runs[0], 1);
  EXPECT_EQ(runs[1], 1);
  EXPECT_EQ(runs[2], 2);
  EXPECT_EQ(runs[3], 1);
  EXPECT_EQ(runs[4], 1);

  auto by_target =
      root.Call("GET", "/api/v1/operations?target=" + created.json["target_id"].get<std::string>(),
                "", admin);
  ASSERT_EQ(by_target.status, 200);
  EXPECT_EQ(by_target.json.size(), 1u);
}

TEST(OperationCrash, TerminalStepErrorFailsWithReason) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/data", {"--enable-test-ops"});
  root.Start();
  std::string admin = root.AdminToken();
  auto created = root.Call("POST", "/api/v1/test/operations", R"({"steps":3,"fail_at":1})", admin);
  ASSERT_EQ(created.status, 202);
  std::string op = created.json["operation_id"];
  ASSERT_TRUE(WaitFor(
      [&] {
        return root.Call("GET", "/api/v1/operations/" + op, "", admin).json.value("state", "") ==
               "failed";
      },
      20s));
  auto r = root.Call("GET", "/api/v1/operations/" + op, "", admin);
  EXPECT_TRUE(r.json.contains("error"));
  EXPECT_EQ(r.json["steps"][0]["state"], "succeeded");
  EXPECT_EQ(r.json["steps"][1]["state"], "failed");
  EXPECT_EQ(r.json["steps"][2]["state"], "pending");
}

}  // namespace
}  // namespace canopy::testing
