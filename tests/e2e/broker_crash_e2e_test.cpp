// Crash tests of the broker (issue 4): each test names the step it kills at. The root is killed
// with SIGKILL right after that step returns and before the engine records it (the worst moment:
// the cloud call happened, nothing says so yet; `canopyd root --test-kill-after-step`), then
// restarted; the adapter and the cluster daemon are killed while a named step is in progress
// (a 3 s boot delay makes the `running` steps last). Every operation must then complete with
// exactly one instance per worker plus one for the cluster. Root only.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "support/broker_env.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

std::string KillMarker(BrokerEnv& env) {
  return ReadFile(env.root().data_dir() + "/test-kill-done");
}

// Waits for the root to die at its kill point, restarts it, and returns true when it had died.
bool RestartAfterKill(BrokerEnv& env, const std::string& point) {
  bool died = WaitFor([&] { return !env.root().Running(); }, 120s);
  EXPECT_TRUE(died) << "the root never reached " << point;
  EXPECT_NE(KillMarker(env).find(point), std::string::npos) << KillMarker(env);
  env.RestartRoot();
  return died;
}

void ExpectConverged(BrokerEnv& env, const std::string& cluster, size_t workers) {
  auto c = env.Cluster(cluster);
  EXPECT_EQ(c.value("state", ""), "ACTIVE") << c.dump();
  auto ws = env.Workers(cluster);
  EXPECT_EQ(ws.size(), workers) << ws.dump();
  for (const auto& w : ws) EXPECT_EQ(w.value("state", ""), "ACTIVE") << w.dump();
  EXPECT_EQ(env.InstancesOf(cluster), static_cast<int>(workers) + 1)
      << "instances must equal workers + 1 (no leak, no duplicate)";
}

// "cluster.create/key_pair" -> "cluster_create_key_pair" (gtest names are alphanumeric).
std::string TestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param;
  for (auto& ch : n) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return n;
}

// ---- root killed after each step of cluster create (with one initial worker: worker add) ----

class RootKilledDuringCreate : public ::testing::TestWithParam<std::string> {};

TEST_P(RootKilledDuringCreate, CompletesWithoutLeakOrDuplicate) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  const std::string point = GetParam();
  BrokerEnv env({"--test-kill-after-step", point, "--op-lease-ms", "3000"});
  env.Start();
  auto created = env.CreateCluster("crash", 1);
  ASSERT_TRUE(created.contains("operation_id")) << created.dump();
  const std::string cluster = created["cluster"]["id"];
  ASSERT_TRUE(RestartAfterKill(env, point)) << ReadFile(env.root().log_path());
  auto op = env.WaitOperation(created["operation_id"], 180s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump() << "\n"
                                                << ReadFile(env.root().log_path());
  ExpectConverged(env, cluster, 1);
}

INSTANTIATE_TEST_SUITE_P(Steps, RootKilledDuringCreate,
                         ::testing::Values("cluster.create/key_pair", "cluster.create/firewalls",
                                           "cluster.create/identity", "cluster.create/instance",
                                           "cluster.create/running", "cluster.create/install",
                                           "cluster.create/pair", "cluster.create/workers",
                                           "workers.provision/instances@add",
                                           "workers.provision/running@add",
                                           "workers.provision/install@add",
                                           "workers.provision/register@add"),
                         TestName);

// ---- root killed after each step of a worker restart and a worker recreate ----

class RootKilledDuringWorkerAction : public ::testing::TestWithParam<std::string> {};

TEST_P(RootKilledDuringWorkerAction, CompletesWithoutLeakOrDuplicate) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  const std::string point = GetParam();
  const std::string action = point.substr(point.find('@') + 1);
  BrokerEnv env({"--test-kill-after-step", point, "--op-lease-ms", "3000"});
  env.Start();
  auto created = env.CreateCluster("crash", 1);
  auto op = env.WaitOperation(created["operation_id"], 180s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump();
  const std::string cluster = created["cluster"]["id"];
  const std::string wid = env.Workers(cluster)[0]["id"];
  const std::string base = "/api/v1/clusters/" + cluster + "/workers/" + wid;
  // Bring the worker into the state the action starts from.
  auto pre = env.Call("POST", base + (action == "restart" ? "/stop" : "/terminate"));
  ASSERT_EQ(pre.status, 202) << pre.body;
  ASSERT_EQ(env.WaitOperation(pre.json["operation_id"], 60s).value("state", ""), "succeeded");

  auto act = env.Call("POST", base + "/" + action);
  ASSERT_EQ(act.status, 202) << act.body;
  ASSERT_TRUE(RestartAfterKill(env, point)) << ReadFile(env.root().log_path());
  auto done = env.WaitOperation(act.json["operation_id"], 180s);
  ASSERT_EQ(done.value("state", ""), "succeeded") << done.dump() << "\n"
                                                  << ReadFile(env.root().log_path());
  ExpectConverged(env, cluster, 1);
}

INSTANTIATE_TEST_SUITE_P(
    Steps, RootKilledDuringWorkerAction,
    ::testing::Values("workers.provision/instances@restart", "workers.provision/running@restart",
                      "workers.provision/install@restart", "workers.provision/register@restart",
                      "workers.provision/instances@recreate", "workers.provision/running@recreate",
                      "workers.provision/install@recreate", "workers.provision/register@recreate"),
    TestName);

// ---- the adapter killed right after handling a named call, before answering it ----
// "METHOD[#N]@PHASE": the N-th METHOD call (the root's view: the cloud did it, no answer came)
// during the cluster create (with one worker), a worker restart or a worker recreate.

// Waits for the operation, starting the adapter again whenever it died; true if it had died.
bool WaitRestartingAdapter(BrokerEnv& env, const std::string& op_id, Json* op) {
  bool died = false;
  WaitFor(
      [&] {
        if (!env.adapter().Running()) {
          died = true;
          env.RestartAdapter();
        }
        auto r = env.Call("GET", "/api/v1/operations/" + op_id);
        *op = r.json;
        std::string st = r.json.value("state", "");
        return st == "succeeded" || st == "failed";
      },
      180s);
  return died;
}

class AdapterKilledAfterCall : public ::testing::TestWithParam<std::string> {};

TEST_P(AdapterKilledAfterCall, CompletesWithoutLeakOrDuplicate) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  const std::string point = GetParam();
  const std::string call = point.substr(0, point.find('@'));
  const std::string phase = point.substr(point.find('@') + 1);
  BrokerEnv env({"--op-lease-ms", "3000"}, {"--test-kill-after-call", call});
  env.Start();
  auto created = env.CreateCluster("crash", 1);
  const std::string cluster = created["cluster"]["id"];
  Json op;
  bool died = WaitRestartingAdapter(env, created["operation_id"], &op);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump() << "\n"
                                                << ReadFile(env.root().log_path());
  if (phase != "create") {
    ASSERT_FALSE(died) << "killed before the phase under test";
    const std::string wid = env.Workers(cluster)[0]["id"];
    const std::string base = "/api/v1/clusters/" + cluster + "/workers/" + wid;
    auto pre = env.Call("POST", base + (phase == "restart" ? "/stop" : "/terminate"));
    ASSERT_EQ(pre.status, 202) << pre.body;
    ASSERT_EQ(env.WaitOperation(pre.json["operation_id"], 60s).value("state", ""), "succeeded");
    auto act = env.Call("POST", base + "/" + phase);
    ASSERT_EQ(act.status, 202) << act.body;
    died = WaitRestartingAdapter(env, act.json["operation_id"], &op);
    ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump() << "\n"
                                                  << ReadFile(env.root().log_path());
  }
  EXPECT_TRUE(died) << "the adapter never reached " << call;
  ExpectConverged(env, cluster, 1);
}

INSTANTIATE_TEST_SUITE_P(Calls, AdapterKilledAfterCall,
                         ::testing::Values("create_key_pair@create", "create_firewall@create",
                                           "create_cluster_identity@create",
                                           "create_instance@create", "wait_until_running@create",
                                           "create_key_pair#2@create", "create_instance#2@create",
                                           "create_key_pair#3@create", "start_instance@restart",
                                           "create_instance#3@recreate"),
                         TestName);

// ---- the adapter killed while the cluster instance boots (step `running`) ----

TEST(AdapterKilled, DuringClusterCreateRunningStep) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  BrokerEnv env({}, {"--boot-delay", "3000"});
  env.Start();
  auto created = env.CreateCluster("crash", 1);
  const std::string op_id = created["operation_id"];
  ASSERT_TRUE(env.WaitStep(op_id, "running", 60s));
  env.adapter().KillHard();
  std::this_thread::sleep_for(1500ms);  // the root's calls fail meanwhile; it must retry
  env.RestartAdapter();
  auto op = env.WaitOperation(op_id, 180s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump() << "\n"
                                                << ReadFile(env.root().log_path());
  ExpectConverged(env, created["cluster"]["id"], 1);
}

// ---- the cluster daemon killed while its workers boot (workers.provision step `running`) ----

TEST(ClusterDaemonKilled, DuringWorkerAddRunningStep) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  BrokerEnv env({}, {"--boot-delay", "3000"});
  env.Start();
  auto created = env.CreateCluster("crash", 0);
  const std::string cluster = created["cluster"]["id"];
  ASSERT_EQ(env.WaitOperation(created["operation_id"], 120s).value("state", ""), "succeeded");
  const std::string ns = "canopy-" + env.Cluster(cluster).value("provider_id", "");
  auto add = env.Call("POST", "/api/v1/clusters/" + cluster + "/workers", R"({"count":2})");
  ASSERT_EQ(add.status, 202) << add.body;
  const std::string op_id = add.json["operation_id"];
  ASSERT_TRUE(env.WaitStep(op_id, "running", 60s));
  // Kill -9 every canopyd process of the cluster's instance; its supervisor starts it again.
  int killed = 0;
  for (const auto& pid : BrokerEnv::PidsIn(ns)) {
    std::string cmd = ReadFile("/proc/" + pid + "/cmdline");
    if (cmd.find("canopyd") != std::string::npos &&
        cmd.find("--advertise-url") != std::string::npos) {
      if (::kill(std::stoi(pid), SIGKILL) == 0) ++killed;
    }
  }
  ASSERT_GE(killed, 1) << "no cluster daemon found to kill";
  auto op = env.WaitOperation(op_id, 180s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump() << "\n"
                                                << ReadFile(env.root().log_path());
  ExpectConverged(env, cluster, 2);
}

}  // namespace
}  // namespace canopy::testing
