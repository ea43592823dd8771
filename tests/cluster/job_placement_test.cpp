// The cluster's job placement (deploy_job / undeploy_job) and the job part of the node protocol,
// with an in-process ClusterService (no root: a saved identity, the link loop not running).
#include <gtest/gtest.h>

#include "cluster/cluster_service.h"
#include "common/files.h"
#include "support/daemons.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

class JobPlacementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string data = dir_.str() + "/cluster";
    std::filesystem::create_directories(data);
    ASSERT_OK(WriteFileAtomic(data + "/identity.json", DumpJson({{"cluster_id", "cls-test"},
                                                                 {"cluster_key", "ck_x"},
                                                                 {"root_url", "http://127.0.0.1:1"},
                                                                 {"link_interval_seconds", 10}})));
    cluster::ClusterOptions co;
    co.root_url = "http://127.0.0.1:1";
    co.data_dir = data;
    co.heartbeat_interval = 5s;
    svc_ = std::make_unique<cluster::ClusterService>(co, clock_);
    ASSERT_OK(svc_->Start());
    url_ = "http://127.0.0.1:" + std::to_string(svc_->port());
  }

  // Registers a node with the given figures; returns {id, key}.
  std::pair<std::string, std::string> AddNode(const std::string& address, int64_t cpu,
                                              int64_t mem) {
    auto tok = svc_->CreateNodeToken(3600s);
    EXPECT_OK(tok);
    auto reg = CallApi(
        url_, "POST", "/cluster/v1/nodes/register",
        DumpJson({{"token", tok->first},
                  {"hostname", "h"},
                  {"address", address},
                  {"resources",
                   {{"cpu_millis", cpu}, {"memory_mib", mem}, {"memory_available_mib", mem}}}}));
    EXPECT_EQ(reg.status, 201) << reg.body;
    addresses_[reg.json.value("node_id", "")] = address;
    return {reg.json.value("node_id", ""), reg.json.value("node_key", "")};
  }
  // Keeps the node's advertised address (else the cluster records 127.0.0.1).
  ApiReply Heartbeat(const std::pair<std::string, std::string>& node, Json body) {
    if (body.is_object()) body["address"] = addresses_[node.first];
    return CallApi(url_, "POST", "/cluster/v1/nodes/" + node.first + "/heartbeat", DumpJson(body),
                   node.second);
  }
  static Json Deploy(const std::string& id, int64_t cpu, int64_t mem) {
    return {{"job_id", id},
            {"service_id", "svc-1"},
            {"command", {"/bin/sh", "-c", "exec sleep 100"}},
            {"ports", {{{"port", 8080}, {"protocol", "tcp"}}}},
            {"cpu_millis", cpu},
            {"memory_mib", mem}};
  }

  TempDir dir_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::unique_ptr<cluster::ClusterService> svc_;
  std::string url_;
  std::map<std::string, std::string> addresses_;
};

TEST_F(JobPlacementTest, PlacesOnTheNodeWithMostFreeMemoryAndCountsReservations) {
  auto a = AddNode("10.0.0.1", 2000, 4000);
  auto b = AddNode("10.0.0.2", 2000, 3000);
  auto r1 = svc_->DeployJob(Deploy("j1", 500, 1500));
  ASSERT_OK(r1);
  EXPECT_EQ((*r1)["node_id"], a.first);
  EXPECT_EQ((*r1)["address"], "10.0.0.1");
  // a has 2500 MiB left, b 3000: b wins.
  auto r2 = svc_->DeployJob(Deploy("j2", 500, 1000));
  ASSERT_OK(r2);
  EXPECT_EQ((*r2)["node_id"], b.first);
  // Idempotent per job id.
  auto again = svc_->DeployJob(Deploy("j1", 500, 1500));
  ASSERT_OK(again);
  EXPECT_EQ((*again)["node_id"], a.first);
  // cpu: a has 1500 left, b 1500; 1600 fits nowhere.
  auto big = svc_->DeployJob(Deploy("j3", 1600, 10));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ErrorCode::kResourceExhausted);
  EXPECT_EQ(big.error().reason, "no_worker_capacity");
  // Offline nodes are not candidates.
  clock_->Advance(20s);
  auto off = svc_->DeployJob(Deploy("j4", 1, 1));
  ASSERT_FALSE(off);
  EXPECT_EQ(off.error().code, ErrorCode::kResourceExhausted);
  ASSERT_EQ(Heartbeat(b, Json::object()).status, 200);
  auto on = svc_->DeployJob(Deploy("j4", 1, 1));
  ASSERT_OK(on);
  EXPECT_EQ((*on)["node_id"], b.first);
  // Bad input.
  EXPECT_EQ(svc_->DeployJob({{"job_id", "x"}}).error().code, ErrorCode::kInvalidArgument);
  Json bad = Deploy("../x", 1, 1);
  EXPECT_EQ(svc_->DeployJob(bad).error().code, ErrorCode::kInvalidArgument);
  bad = Deploy("y", 1, 1);
  bad["restart"] = "sometimes";
  EXPECT_EQ(svc_->DeployJob(bad).error().code, ErrorCode::kInvalidArgument);
}

TEST_F(JobPlacementTest, HeartbeatCarriesDesiredJobsAndStatusesReachTheReport) {
  auto a = AddNode("10.0.0.1", 2000, 4000);
  // No job yet: an empty desired list.
  auto hb = Heartbeat(a, Json::object());
  ASSERT_EQ(hb.status, 200) << hb.body;
  ASSERT_TRUE(hb.json["jobs"].is_array());
  EXPECT_TRUE(hb.json["jobs"].empty());
  ASSERT_OK(svc_->DeployJob(Deploy("web", 100, 100)));
  hb = Heartbeat(a, Json::object());
  ASSERT_EQ(hb.json["jobs"].size(), 1u);
  EXPECT_EQ(hb.json["jobs"][0]["id"], "web");
  EXPECT_EQ(hb.json["jobs"][0]["command"][2], "exec sleep 100");
  EXPECT_EQ(hb.json["jobs"][0]["restart"], "on-failure");
  auto report = svc_->BuildReport();
  ASSERT_OK(report);
  ASSERT_EQ((*report)["jobs"].size(), 1u);
  EXPECT_EQ((*report)["jobs"][0]["state"], "pending");
  // The node reports its statuses (unknown ids are ignored).
  hb = Heartbeat(a, {{"jobs",
                      {{{"id", "web"}, {"state", "running"}, {"pid", 42}, {"restarts", 0}},
                       {{"id", "other"}, {"state", "running"}}}}});
  ASSERT_EQ(hb.status, 200) << hb.body;
  report = svc_->BuildReport();
  ASSERT_OK(report);
  Json j = (*report)["jobs"][0];
  EXPECT_EQ(j["job_id"], "web");
  EXPECT_EQ(j["service_id"], "svc-1");
  EXPECT_EQ(j["node_id"], a.first);
  EXPECT_EQ(j["address"], "10.0.0.1");
  EXPECT_EQ(j["state"], "running");
  EXPECT_EQ(Heartbeat(a, {{"jobs", "x"}}).status, 400);
  // Undeploy: gone from the desired list and the report; unknown ids are fine.
  auto u = svc_->UndeployJob({{"job_id", "web"}});
  ASSERT_OK(u);
  EXPECT_EQ((*u)["removed"], true);
  EXPECT_EQ((*svc_->UndeployJob({{"job_id", "web"}}))["removed"], false);
  hb = Heartbeat(a, Json::object());
  EXPECT_TRUE(hb.json["jobs"].empty());
  EXPECT_TRUE((*svc_->BuildReport())["jobs"].empty());
}

}  // namespace
}  // namespace canopy::testing
