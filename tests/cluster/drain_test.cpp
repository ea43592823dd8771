// drain_node / undrain_node with an in-process ClusterService (no root: a saved identity, the link
// loop not running): jobs move with the placement rule or go back to the root, draining nodes are
// no placement candidates and offer no capacity in the report, the flag survives a restart and is
// cleared by a re-registration, and the command runs once per id.
#include <gtest/gtest.h>

#include "cluster/cluster_service.h"
#include "common/files.h"
#include "support/daemons.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

struct Node {
  std::string id, key, address;
};

class ClusterDrain : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.str() + "/cluster";
    std::filesystem::create_directories(data_);
    ASSERT_OK(
        WriteFileAtomic(data_ + "/identity.json", DumpJson({{"cluster_id", "cls-test"},
                                                            {"cluster_key", "ck_x"},
                                                            {"root_url", "http://127.0.0.1:1"},
                                                            {"link_interval_seconds", 10}})));
    StartService();
  }

  void StartService() {
    svc_.reset();
    cluster::ClusterOptions co;
    co.root_url = "http://127.0.0.1:1";
    co.data_dir = data_;
    co.heartbeat_interval = 5s;
    svc_ = std::make_unique<cluster::ClusterService>(co, clock_);
    ASSERT_OK(svc_->Start());
    url_ = "http://127.0.0.1:" + std::to_string(svc_->port());
  }

  static Json Resources(int64_t cpu, int64_t mem) {
    return {{"cpu_millis", cpu}, {"memory_mib", mem}, {"memory_available_mib", mem}};
  }
  Node AddNode(const std::string& address, int64_t cpu, int64_t mem) {
    auto tok = svc_->CreateNodeToken(3600s);
    EXPECT_OK(tok);
    auto reg = CallApi(url_, "POST", "/cluster/v1/nodes/register",
                       DumpJson({{"token", tok->first},
                                 {"hostname", "h"},
                                 {"address", address},
                                 {"resources", Resources(cpu, mem)}}));
    EXPECT_EQ(reg.status, 201) << reg.body;
    return {reg.json.value("node_id", ""), reg.json.value("node_key", ""), address};
  }
  ApiReply Heartbeat(const Node& n, Json body = Json::object()) {
    body["address"] = n.address;
    return CallApi(url_, "POST", "/cluster/v1/nodes/" + n.id + "/heartbeat", DumpJson(body), n.key);
  }
  ApiReply Reregister(const Node& n, int64_t cpu, int64_t mem) {
    return CallApi(url_, "POST", "/cluster/v1/nodes/register",
                   DumpJson({{"node_id", n.id},
                             {"hostname", "h"},
                             {"address", n.address},
                             {"resources", Resources(cpu, mem)}}),
                   n.key);
  }
  static Json Deploy(const std::string& id, int64_t cpu, int64_t mem) {
    return {{"job_id", id},
            {"service_id", "svc-" + id},
            {"command", {"/bin/sh", "-c", "exec sleep 100"}},
            {"cpu_millis", cpu},
            {"memory_mib", mem}};
  }
  std::string PlacedOn(const std::string& job_id) {
    auto r = svc_->DeployJob(Deploy(job_id, 1, 1));  // idempotent per job id: the placement
    EXPECT_OK(r);
    return r ? (*r)["node_id"].get<std::string>() : "";
  }
  Json ReportNode(const std::string& id) {
    auto report = svc_->BuildReport();
    EXPECT_OK(report);
    for (const auto& n : (*report)["nodes"]) {
      if (n["id"] == id) return n;
    }
    return Json();
  }
  std::vector<std::string> DesiredIds(const Node& n) {
    auto hb = Heartbeat(n);
    EXPECT_EQ(hb.status, 200) << hb.body;
    std::vector<std::string> ids;
    for (const auto& j : hb.json["jobs"]) ids.push_back(j["id"].get<std::string>());
    return ids;
  }

  TempDir dir_;
  std::string data_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::unique_ptr<cluster::ClusterService> svc_;
  std::string url_;
};

TEST_F(ClusterDrain, MovesJobsToNodesWithRoomAndReturnsWhatFitsNowhere) {
  Node a = AddNode("10.0.0.1", 4000, 8000);
  Node b = AddNode("10.0.0.2", 2000, 2000);
  Node c = AddNode("10.0.0.3", 2000, 1500);
  for (auto [id, mem] : {std::pair{"j1", 1500}, std::pair{"j2", 1500}, std::pair{"j3", 3000}}) {
    auto r = svc_->DeployJob(Deploy(id, 100, mem));
    ASSERT_OK(r);
    ASSERT_EQ((*r)["node_id"], a.id) << id;
  }
  ASSERT_EQ(Heartbeat(a, {{"jobs", {{{"id", "j1"}, {"state", "running"}, {"pid", 7}}}}}).status,
            200);
  auto report = svc_->BuildReport();
  ASSERT_OK(report);
  EXPECT_EQ((*report)["resources"]["memory_mib"], 11500);
  EXPECT_EQ((*report)["jobs"][0]["state"], "running");

  // Oldest first: j1 -> b (2000 free beats 1500), j2 -> c (b has 500 left), j3 fits nowhere.
  auto r = svc_->DrainNode({{"node_id", a.id}});
  ASSERT_OK(r);
  EXPECT_EQ((*r)["node_id"], a.id);
  Json moved = Json::array(
      {Json{{"job_id", "j1"}, {"service_id", "svc-j1"}, {"node_id", b.id}, {"address", "10.0.0.2"}},
       Json{{"job_id", "j2"},
            {"service_id", "svc-j2"},
            {"node_id", c.id},
            {"address", "10.0.0.3"}}});
  EXPECT_EQ((*r)["moved"], moved);
  EXPECT_EQ((*r)["returned"], Json::array({Json{{"job_id", "j3"}, {"service_id", "svc-j3"}}}));

  // The store: same ids and specs on the new nodes, status reset; the returned job is gone.
  EXPECT_EQ(PlacedOn("j1"), b.id);
  EXPECT_EQ(PlacedOn("j2"), c.id);
  EXPECT_EQ(DesiredIds(a), std::vector<std::string>{});  // the old node stops them
  EXPECT_EQ(DesiredIds(b), std::vector<std::string>{"j1"});
  EXPECT_EQ(DesiredIds(c), std::vector<std::string>{"j2"});
  auto hb = Heartbeat(b);
  EXPECT_EQ(hb.json["jobs"][0]["command"][2], "exec sleep 100");
  EXPECT_EQ(hb.json["jobs"][0]["memory_mib"], 1500);
  // A late status from the old node is ignored: pending until the new node reports.
  ASSERT_EQ(Heartbeat(a, {{"jobs", {{{"id", "j1"}, {"state", "running"}, {"pid", 7}}}}}).status,
            200);
  report = svc_->BuildReport();
  ASSERT_OK(report);
  ASSERT_EQ((*report)["jobs"].size(), 2u);
  EXPECT_EQ((*report)["jobs"][0]["job_id"], "j1");
  EXPECT_EQ((*report)["jobs"][0]["node_id"], b.id);
  EXPECT_EQ((*report)["jobs"][0]["address"], "10.0.0.2");
  EXPECT_EQ((*report)["jobs"][0]["state"], "pending");
  ASSERT_EQ(Heartbeat(b, {{"jobs", {{{"id", "j1"}, {"state", "running"}, {"pid", 8}}}}}).status,
            200);
  EXPECT_EQ((*svc_->BuildReport())["jobs"][0]["state"], "running");

  // Per node `draining`; the aggregate counts only nodes that offer capacity.
  report = svc_->BuildReport();
  for (const auto& n : (*report)["nodes"]) {
    EXPECT_EQ(n["draining"], n["id"] == a.id) << n.dump();
    EXPECT_EQ(n["state"], "online");
  }
  EXPECT_EQ((*report)["resources"]["cpu_millis"], 4000);
  EXPECT_EQ((*report)["resources"]["memory_mib"], 3500);
  EXPECT_EQ((*report)["resources"]["nodes_online"], 2);

  // Draining again re-runs the re-placement (nothing left on it).
  auto again = svc_->DrainNode({{"node_id", a.id}});
  ASSERT_OK(again);
  EXPECT_TRUE((*again)["moved"].empty());
  EXPECT_TRUE((*again)["returned"].empty());
}

TEST_F(ClusterDrain, OfflineNodesAreNoTargets) {
  Node a = AddNode("10.0.0.1", 2000, 4000);
  Node b = AddNode("10.0.0.2", 2000, 3000);
  ASSERT_OK(svc_->DeployJob(Deploy("j1", 100, 100)));
  ASSERT_EQ(PlacedOn("j1"), a.id);
  clock_->Advance(20s);  // both offline
  ASSERT_EQ(Heartbeat(a).status, 200);
  auto r = svc_->DrainNode({{"node_id", a.id}});
  ASSERT_OK(r);
  EXPECT_TRUE((*r)["moved"].empty());
  EXPECT_EQ((*r)["returned"].size(), 1u);
  EXPECT_EQ(svc_->UndeployJob({{"job_id", "j1"}})->at("removed"), false);
  EXPECT_EQ(ReportNode(b.id)["state"], "offline");
}

TEST_F(ClusterDrain, DrainingNodesAreNoPlacementCandidatesUntilUndrained) {
  Node a = AddNode("10.0.0.1", 2000, 1000);
  Node b = AddNode("10.0.0.2", 2000, 4000);
  auto r = svc_->DrainNode({{"node_id", b.id}});
  ASSERT_OK(r);
  EXPECT_TRUE((*r)["moved"].empty());
  EXPECT_TRUE((*r)["returned"].empty());
  auto d = svc_->DeployJob(Deploy("j1", 100, 100));
  ASSERT_OK(d);
  EXPECT_EQ((*d)["node_id"], a.id);  // b has more free memory but drains
  // 2000 MiB fits only on b: no capacity while it drains.
  auto big = svc_->DeployJob(Deploy("big", 100, 2000));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(big.error().reason, "no_worker_capacity");
  ASSERT_OK(svc_->DrainNode({{"node_id", a.id}}));  // j1 fits nowhere now
  EXPECT_FALSE(svc_->DeployJob(Deploy("j2", 1, 1)));

  auto u = svc_->UndrainNode({{"node_id", b.id}});
  ASSERT_OK(u);
  EXPECT_EQ(*u, Json({{"node_id", b.id}, {"was_draining", true}}));
  EXPECT_EQ((*svc_->UndrainNode({{"node_id", b.id}}))["was_draining"], false);
  EXPECT_EQ((*svc_->UndrainNode({{"node_id", "nod-none"}}))["was_draining"], false);
  EXPECT_EQ(ReportNode(b.id)["draining"], false);
  auto placed = svc_->DeployJob(Deploy("big", 100, 2000));
  ASSERT_OK(placed);
  EXPECT_EQ((*placed)["node_id"], b.id);
}

TEST_F(ClusterDrain, DrainingSurvivesARestartAndReRegistrationClearsIt) {
  Node a = AddNode("10.0.0.1", 2000, 4000);
  Node b = AddNode("10.0.0.2", 2000, 1000);
  ASSERT_OK(svc_->DrainNode({{"node_id", a.id}}));
  StartService();  // same data dir: the store keeps the flag
  EXPECT_EQ(ReportNode(a.id)["draining"], true);
  EXPECT_EQ(ReportNode(b.id)["draining"], false);
  auto d = svc_->DeployJob(Deploy("j1", 100, 100));
  ASSERT_OK(d);
  EXPECT_EQ((*d)["node_id"], b.id);
  // Heartbeats do not change it; a re-registration with the key (a restarted node) does.
  ASSERT_EQ(Heartbeat(a).status, 200);
  EXPECT_EQ(ReportNode(a.id)["draining"], true);
  auto re = Reregister(a, 2000, 4000);
  ASSERT_EQ(re.status, 200) << re.body;
  EXPECT_EQ(ReportNode(a.id)["draining"], false);
  auto d2 = svc_->DeployJob(Deploy("j2", 100, 100));
  ASSERT_OK(d2);
  EXPECT_EQ((*d2)["node_id"], a.id);
  // A re-registration with a wrong key changes nothing.
  ASSERT_OK(svc_->DrainNode({{"node_id", a.id}}));
  Node forged = a;
  forged.key = "nk_wrong";
  EXPECT_EQ(Reregister(forged, 2000, 4000).status, 401);
  EXPECT_EQ(ReportNode(a.id)["draining"], true);
}

TEST_F(ClusterDrain, UnknownNodeIsOkAndBadArgsFail) {
  auto r = svc_->DrainNode({{"node_id", "nod-gone"}});
  ASSERT_OK(r);
  EXPECT_EQ(*r,
            Json({{"node_id", "nod-gone"}, {"moved", Json::array()}, {"returned", Json::array()}}));
  EXPECT_EQ(svc_->DrainNode(Json::object()).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(svc_->DrainNode({{"node_id", 5}}).error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(svc_->UndrainNode(Json::object()).error().code, ErrorCode::kInvalidArgument);
  Json ack = svc_->ExecuteCommand(
      {{"id", "cmd-u"}, {"type", "drain_node"}, {"args", {{"node_id", "nod-gone"}}}});
  EXPECT_EQ(ack["ok"], true);
  EXPECT_TRUE(ack["result"]["moved"].empty());
  Json bad =
      svc_->ExecuteCommand({{"id", "cmd-b"}, {"type", "drain_node"}, {"args", Json::object()}});
  EXPECT_EQ(bad["ok"], false);
  EXPECT_EQ(bad["error"]["code"], "invalid_argument");
}

TEST_F(ClusterDrain, RunsOncePerCommandIdAcrossRestarts) {
  Node a = AddNode("10.0.0.1", 2000, 4000);
  Node b = AddNode("10.0.0.2", 2000, 3000);
  ASSERT_OK(svc_->DeployJob(Deploy("j1", 100, 100)));
  ASSERT_EQ(PlacedOn("j1"), a.id);
  Json cmd = {{"id", "cmd-drain-1"}, {"type", "drain_node"}, {"args", {{"node_id", a.id}}}};
  Json ack = svc_->ExecuteCommand(cmd);
  ASSERT_EQ(ack["ok"], true) << ack.dump();
  ASSERT_EQ(ack["result"]["moved"].size(), 1u);
  EXPECT_EQ(ack["result"]["moved"][0]["node_id"], b.id);
  EXPECT_EQ(PlacedOn("j1"), b.id);

  // The node comes back and gets a job; the same command id again changes nothing.
  ASSERT_EQ(Reregister(a, 2000, 4000).status, 200);
  ASSERT_OK(svc_->DeployJob(Deploy("j2", 100, 100)));
  ASSERT_EQ(PlacedOn("j2"), a.id);
  EXPECT_EQ(svc_->ExecuteCommand(cmd), ack);
  StartService();  // and after a restart (the outcome is stored)
  EXPECT_EQ(svc_->ExecuteCommand(cmd), ack);
  EXPECT_EQ(PlacedOn("j2"), a.id);
  EXPECT_EQ(ReportNode(a.id)["draining"], false);

  // A new command id runs again; undrain_node goes through the same path.
  Json ack2 = svc_->ExecuteCommand(
      {{"id", "cmd-drain-2"}, {"type", "drain_node"}, {"args", {{"node_id", a.id}}}});
  ASSERT_EQ(ack2["ok"], true);
  ASSERT_EQ(ack2["result"]["moved"].size(), 1u);
  EXPECT_EQ(ack2["result"]["moved"][0]["job_id"], "j2");
  Json un = svc_->ExecuteCommand(
      {{"id", "cmd-undrain"}, {"type", "undrain_node"}, {"args", {{"node_id", a.id}}}});
  EXPECT_EQ(un["ok"], true);
  EXPECT_EQ(un["result"], Json({{"node_id", a.id}, {"was_draining", true}}));
  EXPECT_EQ(ReportNode(a.id)["draining"], false);
}

}  // namespace
}  // namespace canopy::testing
