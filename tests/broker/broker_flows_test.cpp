// The broker's flows in one process, no root privileges: an in-memory cloud (FakeProvider without
// idempotent creates, so only the broker's tag lookups prevent duplicates), fake installs and
// fake cluster/node tiers that pair, link and answer commands through the root's application
// layer (support/broker_harness.h). Covers create, add workers, every worker action and delete,
// and the crash matrix: the root dropping each operation of each kind right after each step.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "control/operation_kinds.h"
#include "support/broker_harness.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;
using core::WorkerAction;
using core::WorkerState;

void ExpectSucceeded(const core::Operation& op) {
  EXPECT_EQ(op.state, core::OperationState::kSucceeded)
      << op.kind << " " << op.id << " at step " << op.step << ": " << op.last_error_message;
}

// A cluster with `workers` ACTIVE workers; returns its id.
std::string ReadyCluster(BrokerHarness& h, const std::string& name, int workers) {
  auto started = h.CreateCluster(name, workers);
  ExpectSucceeded(h.Wait(started.operation.id));
  EXPECT_EQ(h.Cluster(started.cluster.id).state, core::ClusterState::kActive);
  return started.cluster.id;
}

core::Operation Act(BrokerHarness& h, const std::string& cluster, const std::string& worker,
                    WorkerAction a) {
  auto started = h.clusters().Act(cluster, worker, a, "usr-test");
  EXPECT_TRUE(started.has_value()) << (started ? "" : started.error().ToString());
  if (!started) return {};
  return h.Wait(started->operation.id);
}

core::Worker WorkerRow(BrokerHarness& h, const std::string& cluster, const std::string& id) {
  auto w = h.clusters().GetWorker(cluster, id);
  EXPECT_TRUE(w.has_value());
  return w ? *w : core::Worker{};
}

TEST(BrokerFlows, CreateAddEveryWorkerActionAndDelete) {
  BrokerHarness h;
  std::string cls = ReadyCluster(h, "demo", 2);
  auto c = h.Cluster(cls);
  EXPECT_EQ(c.cloud.identity, core::IdentityState::kMade);
  EXPECT_FALSE(c.cloud.api_firewall.empty());
  auto workers = h.Workers(cls);
  ASSERT_EQ(workers.size(), 2u);
  for (const auto& w : workers) {
    EXPECT_EQ(w.state, WorkerState::kActive) << w.last_error;
    EXPECT_FALSE(w.node_id.empty());
    EXPECT_EQ(h.InstancesTagged(w.InstanceCanopyId()), 1);
  }
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 3);
  EXPECT_EQ(h.InstancesTagged(cls), 1);
  EXPECT_EQ(h.installer().installs("cluster"), 1);
  EXPECT_EQ(h.fake_clusters().node_count(), 2);

  // Add one.
  auto added = h.clusters().AddWorkers(cls, 1, control::MachineSpec{}, "usr-test");
  ASSERT_TRUE(added.has_value()) << added.error().ToString();
  ExpectSucceeded(h.Wait(added->operation.id));
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 4);
  std::string w1 = workers[0].id, w2 = workers[1].id, w3 = added->workers[0].id;
  EXPECT_EQ(WorkerRow(h, cls, w3).state, WorkerState::kActive);

  // stop -> STOPPED, restart -> ACTIVE (no new instance).
  ExpectSucceeded(Act(h, cls, w1, WorkerAction::kStop));
  EXPECT_EQ(WorkerRow(h, cls, w1).state, WorkerState::kStopped);
  EXPECT_EQ(h.clusters().Act(cls, w1, WorkerAction::kStop, "u").error().code, ErrorCode::kConflict);
  ExpectSucceeded(Act(h, cls, w1, WorkerAction::kRestart));
  EXPECT_EQ(WorkerRow(h, cls, w1).state, WorkerState::kActive);
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 4);
  EXPECT_EQ(h.clusters().Act(cls, w1, WorkerAction::kRestart, "u").error().code,
            ErrorCode::kConflict);

  // terminate -> TERMINATED (instance gone), recreate -> ACTIVE under a new generation.
  std::string old_canopy_id = WorkerRow(h, cls, w2).InstanceCanopyId();
  ExpectSucceeded(Act(h, cls, w2, WorkerAction::kTerminate));
  EXPECT_EQ(WorkerRow(h, cls, w2).state, WorkerState::kTerminated);
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 3);
  ExpectSucceeded(Act(h, cls, w2, WorkerAction::kRecreate));
  auto recreated = WorkerRow(h, cls, w2);
  EXPECT_EQ(recreated.state, WorkerState::kActive);
  EXPECT_EQ(recreated.generation, 2);
  EXPECT_EQ(h.InstancesTagged(old_canopy_id), 0);
  EXPECT_EQ(h.InstancesTagged(recreated.InstanceCanopyId()), 1);
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 4);

  // delete -> row and instance gone.
  ExpectSucceeded(Act(h, cls, w3, WorkerAction::kDelete));
  EXPECT_EQ(h.clusters().GetWorker(cls, w3).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 3);

  // The cluster goes only once no billed worker is left.
  EXPECT_EQ(h.clusters().Delete(cls, "usr-test").error().code, ErrorCode::kConflict);
  ExpectSucceeded(Act(h, cls, w1, WorkerAction::kDelete));
  ExpectSucceeded(Act(h, cls, w2, WorkerAction::kDelete));
  auto deleted = h.clusters().Delete(cls, "usr-test");
  ASSERT_TRUE(deleted.has_value()) << deleted.error().ToString();
  ExpectSucceeded(h.Wait(deleted->operation.id));
  EXPECT_EQ(h.root().store().clusters().Get(cls).error().code, ErrorCode::kNotFound);
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 0);
  providers::CallContext ctx{providers::CredentialSecret(Json{{"api_key", "k"}}), ""};
  EXPECT_FALSE(*h.cloud().FirewallExists(ctx, c.cloud.api_firewall));
}

TEST(BrokerFlows, SshAndTheClusterApiAreOpenOnlyToTheConfiguredSources) {
  BrokerHarness h([](broker::BrokerOptions& o) {
    o.ssh_sources = {"203.0.113.7/32"};
    o.cluster_api_sources = {"10.0.0.0/16", "203.0.113.7/32"};
  });
  std::string cls = ReadyCluster(h, "tight", 0);
  auto c = h.Cluster(cls);
  auto ssh = h.cloud().FirewallById(c.cloud.ssh_firewall);
  ASSERT_TRUE(ssh.has_value());
  ASSERT_EQ(ssh->rules.size(), 1u);
  EXPECT_EQ(ssh->rules[0].port, 22);
  EXPECT_EQ(ssh->rules[0].source_cidrs, (std::vector<std::string>{"203.0.113.7/32"}));
  auto api = h.cloud().FirewallById(c.cloud.api_firewall);
  ASSERT_TRUE(api.has_value());
  ASSERT_EQ(api->rules.size(), 1u);
  EXPECT_EQ(api->rules[0].source_cidrs,
            (std::vector<std::string>{"10.0.0.0/16", "203.0.113.7/32"}));
}

TEST(BrokerFlows, AClusterThatCannotReachTheRootFailsAtInstallWithTheReason) {
  BrokerHarness h;
  h.installer().FailPreflightOf("cluster");
  auto started = h.CreateCluster("cut-off", 1);
  auto op = h.Wait(started.operation.id);
  EXPECT_EQ(op.state, core::OperationState::kFailed);
  EXPECT_EQ(op.steps[static_cast<size_t>(op.step)].name, "install");
  EXPECT_NE(op.last_error_message.find("cannot reach the root at http://root.test:8080"),
            std::string::npos)
      << op.last_error_message;
  EXPECT_EQ(h.installer().installs("cluster"), 1);  // not retried
  EXPECT_EQ(h.Cluster(started.cluster.id).state, core::ClusterState::kFailed);
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 1);  // kept for inspection until DELETE
}

TEST(BrokerFlows, AWorkerThatCannotReachItsClusterFailsWithTheReason) {
  BrokerHarness h;
  std::string cls = ReadyCluster(h, "edge", 0);
  h.installer().FailPreflightOf("node");
  auto added = h.clusters().AddWorkers(cls, 1, control::MachineSpec{}, "usr-test");
  ASSERT_TRUE(added.has_value());
  auto op = h.Wait(added->operation.id);
  EXPECT_EQ(op.state, core::OperationState::kFailed);
  auto w = WorkerRow(h, cls, added->workers[0].id);
  EXPECT_EQ(w.state, WorkerState::kFailed);
  EXPECT_NE(w.last_error.find("cannot reach its cluster"), std::string::npos) << w.last_error;
}

// The adapter dying right after the cloud made an instance, before it answered: the retried step
// finds the instance by its tag (the fake cloud here makes a new one on every create call).
TEST(BrokerFlows, LostCreateAnswersNeverDuplicateAnInstance) {
  BrokerHarness h;
  h.cloud().LoseNextAnswer("CreateInstance");  // the cluster's VM
  std::string cls = ReadyCluster(h, "lossy", 1);
  EXPECT_EQ(h.InstancesTagged(cls), 1);
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 2);
  h.cloud().LoseNextAnswer("CreateInstance");  // a new worker's
  auto added = h.clusters().AddWorkers(cls, 1, control::MachineSpec{}, "usr-test");
  ASSERT_TRUE(added.has_value());
  ExpectSucceeded(h.Wait(added->operation.id));
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 3);
  std::string wid = added->workers[0].id;
  ExpectSucceeded(Act(h, cls, wid, WorkerAction::kTerminate));
  h.cloud().LoseNextAnswer("CreateInstance");  // the recreated one's
  ExpectSucceeded(Act(h, cls, wid, WorkerAction::kRecreate));
  EXPECT_EQ(h.InstancesTagged(WorkerRow(h, cls, wid).InstanceCanopyId()), 1);
  EXPECT_EQ(h.cloud().LiveInstanceCount(), 3);
}

// ---- the crash matrix: every step of every kind ----

struct CrashPoint {
  std::string kind;
  std::string step;
  std::string action;  // data.action for workers.provision / worker.shutdown
};

// How gtest (and so ctest's test names) print a point: "kind/step@action".
void PrintTo(const CrashPoint& p, std::ostream* os) {
  *os << p.kind << "/" << p.step << (p.action.empty() ? "" : "@" + p.action);
}

std::string Name(const ::testing::TestParamInfo<CrashPoint>& info) {
  std::string n = info.param.kind + "_" + info.param.step +
                  (info.param.action.empty() ? "" : "_" + info.param.action);
  for (char& ch : n) {
    if (ch == '.') ch = '_';
  }
  return n;
}

class BrokerCrash : public ::testing::TestWithParam<CrashPoint> {};

TEST_P(BrokerCrash, TheRootDroppingTheOperationAfterTheStepNeitherLeaksNorDuplicates) {
  const CrashPoint& p = GetParam();
  BrokerHarness h;
  using namespace control;
  if (p.kind == kOpClusterCreate) {
    h.CrashOnce(p.kind, p.step);
    std::string cls = ReadyCluster(h, "crash", 1);
    ASSERT_TRUE(h.crashed());
    auto workers = h.Workers(cls);
    ASSERT_EQ(workers.size(), 1u);
    EXPECT_EQ(workers[0].state, WorkerState::kActive) << workers[0].last_error;
    EXPECT_EQ(h.InstancesTagged(cls), 1);
    EXPECT_EQ(h.InstancesTagged(workers[0].InstanceCanopyId()), 1);
    EXPECT_EQ(h.cloud().LiveInstanceCount(), 2);
    EXPECT_EQ(h.fake_clusters().node_count(), 1);
    return;
  }
  if (p.kind == kOpClusterDelete) {
    std::string cls = ReadyCluster(h, "crash", 0);
    h.CrashOnce(p.kind, p.step);
    auto deleted = h.clusters().Delete(cls, "usr-test");
    ASSERT_TRUE(deleted.has_value());
    ExpectSucceeded(h.Wait(deleted->operation.id));
    ASSERT_TRUE(h.crashed());
    EXPECT_EQ(h.root().store().clusters().Get(cls).error().code, ErrorCode::kNotFound);
    EXPECT_EQ(h.cloud().LiveInstanceCount(), 0);
    return;
  }
  std::string cls = ReadyCluster(h, "crash", p.action == kProvisionAdd ? 0 : 1);
  std::string wid;
  if (p.action == kProvisionAdd) {
    h.CrashOnce(p.kind, p.step, p.action);
    auto added = h.clusters().AddWorkers(cls, 1, control::MachineSpec{}, "usr-test");
    ASSERT_TRUE(added.has_value());
    ExpectSucceeded(h.Wait(added->operation.id));
    wid = added->workers[0].id;
  } else {
    wid = h.Workers(cls)[0].id;
    auto action = *core::ParseWorkerAction(p.action);
    if (action == WorkerAction::kRestart) ExpectSucceeded(Act(h, cls, wid, WorkerAction::kStop));
    if (action == WorkerAction::kRecreate)
      ExpectSucceeded(Act(h, cls, wid, WorkerAction::kTerminate));
    h.CrashOnce(p.kind, p.step, p.action);
    ExpectSucceeded(Act(h, cls, wid, action));
  }
  ASSERT_TRUE(h.crashed());
  if (p.action == "delete") {
    EXPECT_EQ(h.clusters().GetWorker(cls, wid).error().code, ErrorCode::kNotFound);
    EXPECT_EQ(h.cloud().LiveInstanceCount(), 1);
    return;
  }
  auto w = WorkerRow(h, cls, wid);
  WorkerState want = p.action == "stop"        ? WorkerState::kStopped
                     : p.action == "terminate" ? WorkerState::kTerminated
                                               : WorkerState::kActive;
  EXPECT_EQ(w.state, want) << w.last_error;
  int live = p.action == "terminate" ? 1 : 2;
  EXPECT_EQ(h.cloud().LiveInstanceCount(), live);
  if (want != WorkerState::kTerminated) {
    EXPECT_EQ(h.InstancesTagged(w.InstanceCanopyId()), 1);
  }
  if (p.action == "recreate") {
    EXPECT_EQ(h.InstancesTagged(wid + "-g1"), 0);
  }
}

std::vector<CrashPoint> AllCrashPoints() {
  using namespace control;
  std::vector<CrashPoint> out;
  for (const char* s :
       {"key_pair", "firewalls", "identity", "instance", "running", "install", "pair", "workers"}) {
    out.push_back({kOpClusterCreate, s, ""});
  }
  for (const char* a : {"add", "restart", "recreate"}) {
    for (const char* s : {"instances", "running", "install", "register"})
      out.push_back({kOpWorkersProvision, s, a});
  }
  for (const char* a : {"stop", "terminate", "delete"}) {
    for (const char* s : {"drain", "shutdown", "finish"}) out.push_back({kOpWorkerShutdown, s, a});
  }
  for (const char* s : {"instance", "firewalls", "identity", "rows"})
    out.push_back({kOpClusterDelete, s, ""});
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryStep, BrokerCrash, ::testing::ValuesIn(AllCrashPoints()), Name);

}  // namespace
}  // namespace canopy::testing
