// The root's service scheduler, one pass at a time (RunOnce, no thread, no daemons) over a real
// SQLite store and a fake clock. The tests play the cluster: they complete the scheduler's
// deploy_job / undeploy_job commands through the store's command repo (as the link handler's
// ApplyAcks does) and record job reports on the ServiceBoard (as the link handler does).
#include "scheduler/service_scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "auth/secret_box.h"
#include "control/cluster_commands.h"
#include "control/link_hub.h"
#include "control/service_board.h"
#include "store/store.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

constexpr std::chrono::milliseconds kPendingRetry = 2000ms;
constexpr std::chrono::seconds kOrphanRetry = 10s;

core::ClusterNodeInfo Node(const std::string& id, int64_t cpu, int64_t mem,
                           const std::string& address = "10.0.0.1") {
  core::ClusterNodeInfo n;
  n.id = id;
  n.address = address;
  n.state = core::NodeState::kOnline;
  n.cpu_millis = cpu;
  n.memory_mib = mem;
  n.memory_available_mib = mem;
  return n;
}

std::string State(core::InstanceState s) { return std::string(core::InstanceStateName(s)); }

Json Job(const std::string& job_id, const std::string& service_id, const std::string& node,
         const std::string& address, const std::string& state) {
  return {{"job_id", job_id},
          {"service_id", service_id},
          {"node_id", node},
          {"address", address},
          {"state", state}};
}

class ServiceSchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::OpenStore("sqlite:" + dir_.str() + "/canopy.db");
    ASSERT_OK(s);
    store_ = std::move(*s);
    auto b = auth::SecretBox::FromKey(SecretString(std::string(32, 'k')));
    ASSERT_OK(b);
    secrets_ = std::move(*b);
    commands_ = std::make_unique<control::ClusterCommands>(*store_, clock_, ids_, *secrets_, hub_);
    scheduler::SchedulerOptions opts;
    opts.plan.pending_retry = kPendingRetry;
    opts.plan.orphan_retry = kOrphanRetry;
    opts.plan.missing_reports_for_lost = 2;
    sched_ = std::make_unique<scheduler::ServiceScheduler>(*store_, clock_, *commands_, board_,
                                                           opts, nullptr, [this] { ++changes_; });
  }

  void Pass() {
    auto st = sched_->RunOnce();
    ASSERT_TRUE(st.has_value()) << st.error().ToString();
  }

  std::string NewCluster(const std::string& name, std::vector<core::ClusterNodeInfo> nodes,
                         core::ClusterState state = core::ClusterState::kActive) {
    core::Cluster c;
    c.id = ids_->NewId("cls");
    c.name = name;
    c.state = state;
    c.nodes = std::move(nodes);
    c.link_interval_seconds = 10;
    c.last_seen = clock_->Now();
    c.created_at = c.updated_at = clock_->Now();
    EXPECT_OK(store_->clusters().Create(c));
    return c.id;
  }
  void SetNodes(const std::string& cluster_id, std::vector<core::ClusterNodeInfo> nodes) {
    auto c = store_->clusters().Get(cluster_id);
    ASSERT_OK(c);
    c->nodes = std::move(nodes);
    c->updated_at = clock_->Now();
    ASSERT_OK(store_->clusters().Update(*c));
  }

  std::string NewService(const std::string& name, int64_t replicas, int64_t cpu, int64_t mem,
                         bool deployed = true) {
    core::Service s;
    s.id = ids_->NewId("svc");
    s.name = name;
    s.spec = {{"command", {"python3", "-m", "http.server", "8080"}},
              {"env", {{"MODE", "prod"}}},
              {"ports", {{{"port", 8080}, {"protocol", "tcp"}, {"source_cidrs", {"0.0.0.0/0"}}}}},
              {"cpu_millis", cpu},
              {"memory_mib", mem},
              {"restart", "always"},
              {"cluster_id", nullptr}};
    s.replicas = replicas;
    s.deployed = deployed;
    s.created_by = "usr-test";
    s.created_at = s.updated_at = clock_->Now();
    EXPECT_OK(store_->services().Create(s));
    return s.id;
  }
  void UpdateService(const std::string& id, std::optional<int64_t> replicas,
                     std::optional<bool> deployed) {
    auto s = store_->services().Get(id);
    ASSERT_OK(s);
    if (replicas) s->replicas = *replicas;
    if (deployed) s->deployed = *deployed;
    s->updated_at = clock_->Now();
    ASSERT_OK(store_->services().Update(*s));
  }

  std::vector<core::ServiceInstance> Instances(const std::string& service_id = "") {
    auto r = store_->services().ListInstances(service_id);
    EXPECT_OK(r);
    return r ? *r : std::vector<core::ServiceInstance>{};
  }
  std::optional<core::ServiceInstance> Instance(const std::string& job_id) {
    for (auto& i : Instances()) {
      if (i.job_id == job_id) return i;
    }
    return std::nullopt;
  }
  std::vector<core::ClusterCommand> PendingCommands(const std::string& cluster_id) {
    auto r = store_->cluster_commands().ListPending(cluster_id, 1000);
    EXPECT_OK(r);
    return r ? *r : std::vector<core::ClusterCommand>{};
  }
  // Pending commands of `cluster_id` of `type` for `job_id`.
  std::vector<core::ClusterCommand> CommandsFor(const std::string& cluster_id,
                                                const std::string& type,
                                                const std::string& job_id) {
    std::vector<core::ClusterCommand> out;
    for (auto& c : PendingCommands(cluster_id)) {
      if (c.type == type && c.args.value("job_id", "") == job_id) out.push_back(c);
    }
    return out;
  }
  void Succeed(const std::string& cluster_id, const std::string& command_id, const Json& result) {
    ASSERT_OK(store_->cluster_commands().Complete(command_id, cluster_id,
                                                  core::ClusterCommandState::kSucceeded, result,
                                                  nullptr, clock_->Now()));
  }
  void Fail(const std::string& cluster_id, const std::string& command_id, const std::string& code,
            const std::string& message, const std::string& reason = "") {
    Error e{ParseErrorCode(code), message, reason};
    ASSERT_OK(store_->cluster_commands().Complete(command_id, cluster_id,
                                                  core::ClusterCommandState::kFailed,
                                                  Json::object(), &e, clock_->Now()));
  }
  void Report(const std::string& cluster_id, Json jobs) {
    board_.RecordJobs(cluster_id, std::move(jobs), clock_->Now());
  }

  // Deploys `service_id` (replicas already set) into `cluster_id` and brings every replica to
  // running on `node` as the cluster would: deploy acks, then a report.
  void DeployRunning(const std::string& service_id, const std::string& cluster_id,
                     const std::string& node, const std::string& address) {
    Pass();
    Json jobs = Json::array();
    for (const auto& i : Instances(service_id)) {
      ASSERT_EQ(State(i.state), "scheduled") << i.job_id << " " << i.reason;
      ASSERT_EQ(i.cluster_id, cluster_id);
      ASSERT_FALSE(i.command_id.empty());
      Succeed(cluster_id, i.command_id,
              {{"job_id", i.job_id}, {"node_id", node}, {"address", address}});
      jobs.push_back(Job(i.job_id, service_id, node, address, "running"));
    }
    Pass();
    Report(cluster_id, jobs);
    Pass();
    for (const auto& i : Instances(service_id)) {
      ASSERT_EQ(State(i.state), "running") << i.job_id;
      ASSERT_EQ(i.node_id, node);
    }
  }

  TempDir dir_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  store::StorePtr store_;
  std::shared_ptr<RandomIdGenerator> ids_ = std::make_shared<RandomIdGenerator>();
  std::unique_ptr<auth::SecretBox> secrets_;
  control::LinkHub hub_;
  control::ServiceBoard board_;
  std::unique_ptr<control::ClusterCommands> commands_;
  std::unique_ptr<scheduler::ServiceScheduler> sched_;
  int changes_ = 0;
};

// 1. Two replicas: two rows, two deploy_job commands (scheduled), acks -> starting on the node the
// cluster chose, a report -> running.
TEST_F(ServiceSchedulerTest, DeployCreatesRowsSendsDeployJobsAndFollowsAcksAndReports) {
  std::string cls = NewCluster("edge", {Node("n1", 4000, 8192, "10.0.0.1")});
  std::string svc = NewService("web", 2, 250, 128);
  Pass();
  auto rows = Instances(svc);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_GT(changes_, 0);
  std::map<std::string, std::string> cmd_of;  // job -> command id
  for (int r = 0; r < 2; ++r) {
    const auto& i = rows[r];
    EXPECT_EQ(i.job_id, svc + "-r" + std::to_string(r));
    EXPECT_EQ(i.replica, r);
    EXPECT_EQ(i.service_id, svc);
    EXPECT_EQ(State(i.state), "scheduled");
    EXPECT_EQ(i.cluster_id, cls);
    EXPECT_EQ(i.node_id, "");
    EXPECT_EQ(i.reason, "");
    EXPECT_FALSE(i.command_id.empty());
    cmd_of[i.job_id] = i.command_id;
  }
  auto cmds = PendingCommands(cls);
  ASSERT_EQ(cmds.size(), 2u);
  for (const auto& c : cmds) {
    EXPECT_EQ(c.type, "deploy_job");
    std::string job = c.args.value("job_id", "");
    ASSERT_TRUE(cmd_of.count(job)) << job;
    EXPECT_EQ(cmd_of[job], c.id);
    EXPECT_EQ(c.args["service_id"], svc);
    EXPECT_EQ(c.args["command"], Json({"python3", "-m", "http.server", "8080"}));
    EXPECT_EQ(c.args["env"], Json({{"MODE", "prod"}}));
    EXPECT_EQ(c.args["ports"], Json::parse(R"([{"port": 8080, "protocol": "tcp"}])"));
    EXPECT_EQ(c.args["cpu_millis"], 250);
    EXPECT_EQ(c.args["memory_mib"], 128);
    EXPECT_EQ(c.args["restart"], "always");
  }

  // Nothing answered yet: a pass sends nothing new and keeps the rows scheduled.
  Pass();
  EXPECT_EQ(PendingCommands(cls).size(), 2u);
  for (const auto& i : Instances(svc)) EXPECT_EQ(State(i.state), "scheduled");

  // The cluster places both (on different nodes) and answers.
  Succeed(cls, cmd_of[svc + "-r0"],
          {{"job_id", svc + "-r0"}, {"node_id", "n1"}, {"address", "10.0.0.1"}});
  Succeed(cls, cmd_of[svc + "-r1"],
          {{"job_id", svc + "-r1"}, {"node_id", "n2"}, {"address", "10.0.0.2"}});
  Pass();
  rows = Instances(svc);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(State(rows[0].state), "starting");
  EXPECT_EQ(rows[0].node_id, "n1");
  EXPECT_EQ(rows[0].address, "10.0.0.1");
  EXPECT_EQ(rows[0].command_id, "");
  EXPECT_EQ(State(rows[1].state), "starting");
  EXPECT_EQ(rows[1].node_id, "n2");
  EXPECT_EQ(rows[1].address, "10.0.0.2");
  EXPECT_EQ(rows[1].cluster_id, cls);
  EXPECT_TRUE(PendingCommands(cls).empty());

  Report(cls, {Job(svc + "-r0", svc, "n1", "10.0.0.1", "running"),
               Job(svc + "-r1", svc, "n2", "10.0.0.2", "running")});
  Pass();
  rows = Instances(svc);
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& i : rows) {
    EXPECT_EQ(State(i.state), "running") << i.job_id;
    EXPECT_EQ(i.cluster_id, cls);
  }
  // A drained job shows up on its new node.
  Report(cls, {Job(svc + "-r0", svc, "n1", "10.0.0.1", "running"),
               Job(svc + "-r1", svc, "n3", "10.0.0.3", "starting")});
  Pass();
  auto r1 = Instance(svc + "-r1");
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->node_id, "n3");
  EXPECT_EQ(r1->address, "10.0.0.3");
  EXPECT_EQ(State(r1->state), "starting");
  // Steady state: no commands.
  EXPECT_TRUE(PendingCommands(cls).empty());
}

// 2. No ACTIVE cluster, or none with room -> pending "no_worker_capacity: …"; a node with room
// (and the retry interval) gets it scheduled.
TEST_F(ServiceSchedulerTest, NoCapacityStaysPendingUntilANodeWithRoomAppears) {
  std::string svc = NewService("big", 1, 500, 1024);
  Pass();
  auto i = Instance(svc + "-r0");
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_EQ(i->cluster_id, "");
  EXPECT_EQ(i->reason_code, "no_worker_capacity");
  EXPECT_EQ(i->reason, "no ACTIVE cluster's node has 500 cpu_millis and 1024 MiB free");

  // An ACTIVE cluster whose node is too small, and a big cluster that is not ACTIVE.
  std::string small = NewCluster("small", {Node("s1", 4000, 512)});
  std::string offline =
      NewCluster("offline", {Node("o1", 8000, 16384)}, core::ClusterState::kOffline);
  clock_->Advance(kPendingRetry + 1ms);
  Pass();
  i = Instance(svc + "-r0");
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_EQ(i->reason_code, "no_worker_capacity") << i->reason;
  EXPECT_TRUE(PendingCommands(small).empty());
  EXPECT_TRUE(PendingCommands(offline).empty());

  // A node with room appears in the ACTIVE cluster: not before the retry interval...
  SetNodes(small, {Node("s1", 4000, 512), Node("s2", 1000, 2048, "10.0.0.2")});
  Pass();
  i = Instance(svc + "-r0");
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_TRUE(PendingCommands(small).empty());
  // ...but on the next try.
  clock_->Advance(kPendingRetry + 1ms);
  Pass();
  i = Instance(svc + "-r0");
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "scheduled");
  EXPECT_EQ(i->cluster_id, small);
  EXPECT_EQ(i->reason, "");
  auto cmds = CommandsFor(small, "deploy_job", svc + "-r0");
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0].id, i->command_id);
  EXPECT_EQ(cmds[0].args["memory_mib"], 1024);
  EXPECT_TRUE(PendingCommands(offline).empty());
}

// 3. The cluster refuses the deploy (resource_exhausted) -> pending with its message; retried.
TEST_F(ServiceSchedulerTest, ResourceExhaustedGoesBackToPendingWithTheClustersMessage) {
  std::string cls = NewCluster("edge", {Node("n1", 4000, 8192)});
  std::string svc = NewService("web", 1, 100, 64);
  std::string job = svc + "-r0";
  Pass();
  auto i = Instance(job);
  ASSERT_TRUE(i);
  ASSERT_EQ(State(i->state), "scheduled");
  std::string first = i->command_id;
  const std::string msg = "no online node has 100 cpu_millis and 64 MiB free";
  Fail(cls, first, "resource_exhausted", msg, "no_worker_capacity");
  Pass();
  i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_EQ(i->reason_code, "no_worker_capacity");
  EXPECT_EQ(i->reason, msg);
  EXPECT_EQ(i->cluster_id, "");
  EXPECT_EQ(i->node_id, "");
  EXPECT_EQ(i->command_id, "");
  EXPECT_TRUE(PendingCommands(cls).empty());  // not retried at once

  clock_->Advance(kPendingRetry + 1ms);
  Pass();
  i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "scheduled");
  EXPECT_EQ(i->cluster_id, cls);
  EXPECT_NE(i->command_id, first);
  auto cmds = CommandsFor(cls, "deploy_job", job);
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0].id, i->command_id);

  // Any other failure: pending with a reason naming the cluster.
  Fail(cls, i->command_id, "internal", "disk full");
  Pass();
  i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_EQ(i->reason, "deploy failed in cluster " + cls + ": disk full");
}

// 4. Scale down and undeploy: undeploy_job, `removing`, the row goes when the command completes.
TEST_F(ServiceSchedulerTest, ScaleDownAndUndeployRemoveInstancesThroughUndeployJob) {
  std::string cls = NewCluster("edge", {Node("n1", 4000, 8192)});
  std::string svc = NewService("web", 2, 100, 64);
  ASSERT_NO_FATAL_FAILURE(DeployRunning(svc, cls, "n1", "10.0.0.1"));
  std::string r0 = svc + "-r0", r1 = svc + "-r1";

  UpdateService(svc, 1, std::nullopt);
  Pass();
  auto i1 = Instance(r1);
  ASSERT_TRUE(i1);
  EXPECT_EQ(State(i1->state), "removing");
  EXPECT_EQ(i1->cluster_id, cls);
  auto undeploy = CommandsFor(cls, "undeploy_job", r1);
  ASSERT_EQ(undeploy.size(), 1u);
  EXPECT_EQ(undeploy[0].id, i1->command_id);
  EXPECT_EQ(undeploy[0].args, Json({{"job_id", r1}}));
  EXPECT_EQ(PendingCommands(cls).size(), 1u);  // nothing for r0
  EXPECT_EQ(State(Instance(r0)->state), "running");

  // Not answered: still removing, nothing sent again.
  Pass();
  EXPECT_EQ(State(Instance(r1)->state), "removing");
  EXPECT_EQ(PendingCommands(cls).size(), 1u);

  Succeed(cls, undeploy[0].id, {{"job_id", r1}, {"removed", true}});
  Report(cls, {Job(r0, svc, "n1", "10.0.0.1", "running")});
  Pass();
  EXPECT_FALSE(Instance(r1));
  auto rows = Instances(svc);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].job_id, r0);
  EXPECT_EQ(State(rows[0].state), "running");
  EXPECT_TRUE(PendingCommands(cls).empty());

  // Undeploy the service: the last instance goes the same way.
  UpdateService(svc, std::nullopt, false);
  Pass();
  auto i0 = Instance(r0);
  ASSERT_TRUE(i0);
  EXPECT_EQ(State(i0->state), "removing");
  undeploy = CommandsFor(cls, "undeploy_job", r0);
  ASSERT_EQ(undeploy.size(), 1u);
  EXPECT_EQ(undeploy[0].id, i0->command_id);
  EXPECT_EQ(store_->services().Delete(svc).error().code, ErrorCode::kFailedPrecondition);
  Succeed(cls, undeploy[0].id, {{"job_id", r0}, {"removed", true}});
  Report(cls, Json::array());
  Pass();
  EXPECT_TRUE(Instances(svc).empty());
  EXPECT_TRUE(PendingCommands(cls).empty());
  EXPECT_OK(store_->services().Delete(svc));
}

// Scaling back up while a replica is still being removed re-creates it only once it is gone.
TEST_F(ServiceSchedulerTest, ScaleUpWhileRemovingWaitsForTheRemoval) {
  std::string cls = NewCluster("edge", {Node("n1", 4000, 8192)});
  std::string svc = NewService("web", 2, 100, 64);
  ASSERT_NO_FATAL_FAILURE(DeployRunning(svc, cls, "n1", "10.0.0.1"));
  std::string r1 = svc + "-r1";
  UpdateService(svc, 1, std::nullopt);
  Pass();
  auto undeploy = CommandsFor(cls, "undeploy_job", r1);
  ASSERT_EQ(undeploy.size(), 1u);
  UpdateService(svc, 2, std::nullopt);
  Pass();
  EXPECT_EQ(State(Instance(r1)->state), "removing");
  EXPECT_TRUE(CommandsFor(cls, "deploy_job", r1).empty());
  Succeed(cls, undeploy[0].id, {{"job_id", r1}, {"removed", true}});
  Report(cls, {Job(svc + "-r0", svc, "n1", "10.0.0.1", "running")});
  Pass();
  auto i1 = Instance(r1);
  ASSERT_TRUE(i1);
  EXPECT_EQ(State(i1->state), "scheduled");
  auto deploy = CommandsFor(cls, "deploy_job", r1);
  ASSERT_EQ(deploy.size(), 1u);
  EXPECT_EQ(deploy[0].id, i1->command_id);
}

// 5. A pending row whose job a cluster already runs is adopted, no deploy_job is sent.
TEST_F(ServiceSchedulerTest, PendingRowReportedByAClusterIsAdopted) {
  std::string cls = NewCluster("edge", {Node("n1", 4000, 8192)});
  std::string svc = NewService("web", 1, 100, 64);
  std::string job = svc + "-r0";
  core::ServiceInstance row;
  row.job_id = job;
  row.service_id = svc;
  row.replica = 0;
  row.state = core::InstanceState::kPending;
  row.reason_code = "no_worker_capacity";
  row.reason = "earlier";
  row.created_at = row.updated_at = clock_->Now();
  ASSERT_OK(store_->services().PutInstance(row));
  Report(cls, {Job(job, svc, "n7", "10.0.0.7", "running")});
  Pass();
  auto i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(i->cluster_id, cls);
  EXPECT_EQ(i->node_id, "n7");
  EXPECT_EQ(i->address, "10.0.0.7");
  EXPECT_EQ(State(i->state), "running");
  EXPECT_EQ(i->reason, "");
  EXPECT_EQ(i->command_id, "");
  EXPECT_TRUE(PendingCommands(cls).empty());  // neither deploy nor orphan undeploy
  EXPECT_EQ(Instances(svc).size(), 1u);
  // And it stays so.
  clock_->Advance(kOrphanRetry + kPendingRetry);
  Pass();
  EXPECT_EQ(State(Instance(job)->state), "running");
  EXPECT_TRUE(PendingCommands(cls).empty());
}

// Root killed after writing the `scheduled` row but before saving the command id (the command
// went out): the job the cluster reports is adopted, not deployed again nor undeployed.
TEST_F(ServiceSchedulerTest, ScheduledRowWithLostCommandIsAdoptedFromTheReport) {
  std::string cls = NewCluster("edge", {Node("n1", 4000, 8192)});
  std::string svc = NewService("web", 1, 100, 64);
  std::string job = svc + "-r0";
  core::ServiceInstance row;
  row.job_id = job;
  row.service_id = svc;
  row.replica = 0;
  row.cluster_id = cls;
  row.state = core::InstanceState::kScheduled;
  row.created_at = row.updated_at = clock_->Now();
  ASSERT_OK(store_->services().PutInstance(row));
  Report(cls, {Job(job, svc, "n1", "10.0.0.1", "running")});
  Pass();
  Pass();
  auto i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(i->cluster_id, cls);
  EXPECT_EQ(i->node_id, "n1");
  EXPECT_EQ(State(i->state), "running");
  EXPECT_TRUE(PendingCommands(cls).empty());
}

// 6. A running instance missing from two newer reports of its cluster goes back to pending and
// is scheduled again; one missing report alone does nothing.
TEST_F(ServiceSchedulerTest, InstanceMissingFromTwoReportsIsLostAndRescheduled) {
  std::string cls = NewCluster("edge", {Node("n1", 4000, 8192)});
  std::string svc = NewService("web", 1, 100, 64);
  std::string job = svc + "-r0";
  ASSERT_NO_FATAL_FAILURE(DeployRunning(svc, cls, "n1", "10.0.0.1"));

  // One report without it, then it is back: not lost.
  Report(cls, Json::array());
  Pass();
  Pass();  // the same report counts once
  EXPECT_EQ(State(Instance(job)->state), "running");
  Report(cls, {Job(job, svc, "n1", "10.0.0.1", "running")});
  Pass();
  Report(cls, Json::array());
  Pass();
  auto i = Instance(job);
  EXPECT_EQ(State(i->state), "running");
  EXPECT_EQ(i->cluster_id, cls);

  // The second report in a row without it: lost.
  Report(cls, Json::array());
  Pass();
  i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_EQ(i->cluster_id, "");
  EXPECT_EQ(i->node_id, "");
  EXPECT_EQ(i->reason, "rescheduling: cluster " + cls + " no longer runs it");

  clock_->Advance(kPendingRetry + 1ms);
  Pass();
  i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "scheduled");
  EXPECT_EQ(i->cluster_id, cls);
  auto cmds = CommandsFor(cls, "deploy_job", job);
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0].id, i->command_id);
  EXPECT_EQ(PendingCommands(cls).size(), 1u);
  // The redeployed instance is followed again (and not lost because of the old reports).
  Succeed(cls, cmds[0].id, {{"job_id", job}, {"node_id", "n1"}, {"address", "10.0.0.1"}});
  Pass();
  EXPECT_EQ(State(Instance(job)->state), "starting");
  Report(cls, {Job(job, svc, "n1", "10.0.0.1", "running")});
  Pass();
  EXPECT_EQ(State(Instance(job)->state), "running");
}

// 7. Orphans: a scheduler job no row places in the cluster is undeployed there (not again within
// orphan_retry); other jobs are left alone.
TEST_F(ServiceSchedulerTest, OrphanJobsAreUndeployedOthersAreLeftAlone) {
  std::string cls = NewCluster("edge", {Node("n1", 4000, 8192)});
  Report(cls, {Job("svc-x-r0", "svc-x", "n1", "10.0.0.1", "running"),
               Job("sleeper", "", "n1", "10.0.0.1", "running"),
               Job("svc-tool-runner", "", "n1", "10.0.0.1", "running"),
               Job("svc-x-r", "", "n1", "10.0.0.1", "running"),
               Job("svc-x-r1b", "", "n1", "10.0.0.1", "running")});
  Report("cls-unknown", {Job("svc-y-r0", "svc-y", "n1", "10.0.0.1", "running")});
  Pass();
  auto cmds = PendingCommands(cls);
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0].type, "undeploy_job");
  EXPECT_EQ(cmds[0].args, Json({{"job_id", "svc-x-r0"}}));
  EXPECT_TRUE(Instances().empty());

  clock_->Advance(kOrphanRetry - 1s);
  Pass();
  EXPECT_EQ(PendingCommands(cls).size(), 1u);

  clock_->Advance(2s);
  Pass();
  cmds = PendingCommands(cls);
  ASSERT_EQ(cmds.size(), 2u);
  for (const auto& c : cmds) {
    EXPECT_EQ(c.type, "undeploy_job");
    EXPECT_EQ(c.args, Json({{"job_id", "svc-x-r0"}}));
  }
}

// A job of a row placed in another cluster is an orphan where it is not placed.
TEST_F(ServiceSchedulerTest, JobRunningInTheWrongClusterIsUndeployedThere) {
  std::string a = NewCluster("a", {Node("a1", 4000, 8192)});
  std::string svc = NewService("web", 1, 100, 64);
  std::string job = svc + "-r0";
  ASSERT_NO_FATAL_FAILURE(DeployRunning(svc, a, "a1", "10.0.1.1"));
  std::string b = NewCluster("b", {Node("b1", 1000, 1024)});
  Report(b, {Job(job, svc, "b1", "10.0.2.1", "running")});
  Pass();
  auto cmds = PendingCommands(b);
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0].type, "undeploy_job");
  EXPECT_EQ(cmds[0].args, Json({{"job_id", job}}));
  EXPECT_TRUE(PendingCommands(a).empty());
  EXPECT_EQ(Instance(job)->cluster_id, a);
}

// 8. The instance's cluster row is deleted -> pending, then placed elsewhere; the deleted
// cluster's last report (still on the board) must not bring it back there.
TEST_F(ServiceSchedulerTest, InstanceOfADeletedClusterGoesBackToPending) {
  std::string a = NewCluster("a", {Node("a1", 4000, 8192)});
  std::string b = NewCluster("b", {Node("b1", 2000, 1024)});
  std::string svc = NewService("web", 1, 100, 64);
  std::string job = svc + "-r0";
  ASSERT_NO_FATAL_FAILURE(DeployRunning(svc, a, "a1", "10.0.1.1"));
  Report(b, Json::array());

  ASSERT_OK(store_->clusters().Delete(a));
  Pass();
  auto i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_EQ(i->cluster_id, "");
  EXPECT_EQ(i->node_id, "");
  EXPECT_EQ(i->reason, "rescheduling: cluster " + a + " is gone");
  Pass();
  i = Instance(job);
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_NE(i->cluster_id, a);

  clock_->Advance(kPendingRetry + 1ms);
  Pass();
  i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "scheduled");
  EXPECT_EQ(i->cluster_id, b);
  auto cmds = CommandsFor(b, "deploy_job", job);
  ASSERT_EQ(cmds.size(), 1u);
  EXPECT_EQ(cmds[0].id, i->command_id);
  EXPECT_EQ(PendingCommands(b).size(), 1u);
}

// A scheduled row (deploy_job not answered) whose cluster is deleted: pending too.
TEST_F(ServiceSchedulerTest, ScheduledInstanceOfADeletedClusterGoesBackToPending) {
  std::string a = NewCluster("a", {Node("a1", 4000, 8192)});
  std::string svc = NewService("web", 1, 100, 64);
  std::string job = svc + "-r0";
  Pass();
  ASSERT_EQ(State(Instance(job)->state), "scheduled");
  ASSERT_OK(store_->clusters().Delete(a));
  Pass();
  auto i = Instance(job);
  ASSERT_TRUE(i);
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_EQ(i->cluster_id, "");
  EXPECT_EQ(i->command_id, "");
  clock_->Advance(kPendingRetry + 1ms);
  Pass();
  i = Instance(job);
  EXPECT_EQ(State(i->state), "pending");
  EXPECT_EQ(i->reason_code, "no_worker_capacity") << i->reason;
}

}  // namespace
}  // namespace canopy::testing
