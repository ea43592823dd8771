// NodeAgent against a fake cluster (real HTTP): heartbeat replies with `jobs` are reconciled,
// statuses go back in every heartbeat, and a reply without `jobs` leaves the jobs alone; the
// capacity options replace the /proc figures in registration and heartbeats.
#include "node/node_agent.h"

#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "net/error_mapping.h"
#include "net/http.h"
#include "support/daemons.h"

namespace canopy::node {
namespace {

using namespace std::chrono_literals;
using canopy::testing::TempDir;
using canopy::testing::WaitFor;

struct FakeCluster {
  std::mutex mu;
  std::optional<Json> reply_jobs;  // nullopt: the reply has no `jobs`
  std::vector<Json> registrations;
  std::vector<Json> heartbeats;
  std::unique_ptr<net::HttpServer> server;

  void Start() {
    auto router = std::make_shared<net::Router>();
    router->Add("POST", "/cluster/v1/nodes/register", [this](const net::Request& req) {
      std::lock_guard<std::mutex> l(mu);
      auto body = ParseJsonObject(req.body);
      registrations.push_back(body ? *body : Json());
      return net::Response::FromJson(
          201, {{"node_id", "nod-1"}, {"node_key", "nk_test"}, {"heartbeat_interval_seconds", 1}});
    });
    router->Add("POST", "/cluster/v1/nodes/{id}/heartbeat", [this](const net::Request& req) {
      std::lock_guard<std::mutex> l(mu);
      auto body = ParseJsonObject(req.body);
      heartbeats.push_back(body ? *body : Json());
      Json out = {{"status", "ok"}, {"heartbeat_interval_seconds", 1}};
      if (reply_jobs) out["jobs"] = *reply_jobs;
      return net::Response::FromJson(200, out);
    });
    auto s = net::HttpServer::Start(net::ServerOptions{}, router, net::ErrorResponse, nullptr);
    ASSERT_TRUE(s.has_value());
    server = std::move(*s);
  }
  size_t Count() {
    std::lock_guard<std::mutex> l(mu);
    return heartbeats.size();
  }
  Json Last() {
    std::lock_guard<std::mutex> l(mu);
    return heartbeats.empty() ? Json() : heartbeats.back();
  }
  Json FirstRegistration() {
    std::lock_guard<std::mutex> l(mu);
    return registrations.empty() ? Json() : registrations.front();
  }
  void Reply(std::optional<Json> jobs) {
    std::lock_guard<std::mutex> l(mu);
    reply_jobs = std::move(jobs);
  }
};

TEST(NodeAgentJobs, ReconcilesToTheHeartbeatReplyAndReportsStatuses) {
  TempDir dir;
  FakeCluster cluster;
  cluster.Start();
  Json spec = {{"id", "sleeper"},     {"command", {"/bin/sh", "-c", "exec sleep 30"}},
               {"cpu_millis", 100},   {"memory_mib", 16},
               {"restart", "always"}, {"ports", Json::array()}};
  cluster.Reply(Json::array({spec}));
  NodeOptions o;
  o.cluster_url = "http://127.0.0.1:" + std::to_string(cluster.server->port());
  o.token = "cnt_x";
  o.data_dir = dir.str() + "/node";
  o.cgroup_root = "";
  o.job_stop_grace = 1000ms;
  NodeAgent agent(o);
  ASSERT_TRUE(agent.Start().has_value());
  std::thread runner([&] { agent.Run(); });

  // Started from the reply; the next heartbeats carry its status.
  ASSERT_TRUE(WaitFor(
      [&] {
        Json last = cluster.Last();
        return last.is_object() && last.contains("jobs") && last["jobs"].size() == 1 &&
               last["jobs"][0].value("state", "") == "running" &&
               last["jobs"][0].value("pid", 0) > 0;
      },
      10s))
      << cluster.Last().dump();
  EXPECT_EQ(cluster.Last()["jobs"][0]["id"], "sleeper");
  int pid = agent.JobStatuses().at(0).pid;

  // A reply without `jobs` (an older cluster) leaves the job running.
  cluster.Reply(std::nullopt);
  size_t seen = cluster.Count();
  ASSERT_TRUE(WaitFor([&] { return cluster.Count() >= seen + 2; }, 10s));
  ASSERT_EQ(agent.JobStatuses().size(), 1u);
  EXPECT_EQ(agent.JobStatuses()[0].pid, pid);

  // An empty list stops it; a malformed spec is skipped.
  cluster.Reply(Json::array({Json{{"id", "bad id"}, {"command", {"x"}}}}));
  ASSERT_TRUE(WaitFor([&] { return agent.JobStatuses().empty(); }, 10s));
  ASSERT_TRUE(WaitFor(
      [&] {
        Json last = cluster.Last();
        return last.is_object() && last.contains("jobs") && last["jobs"].empty();
      },
      10s));

  agent.Stop();
  runner.join();
  cluster.server->Stop();
}

TEST(NodeAgentCapacity, GivenCapacityIsReportedInsteadOfProc) {
  TempDir dir;
  FakeCluster cluster;
  cluster.Start();
  cluster.Reply(Json::array());
  NodeOptions o;
  o.cluster_url = "http://127.0.0.1:" + std::to_string(cluster.server->port());
  o.token = "cnt_x";
  o.data_dir = dir.str() + "/node";
  o.cgroup_root = "";
  o.cpu_millis = 1500;
  o.memory_mib = 1;  // below what this machine has available
  NodeAgent agent(o);
  ASSERT_TRUE(agent.Start().has_value());
  Json reg = cluster.FirstRegistration();
  ASSERT_TRUE(reg.is_object()) << reg.dump();
  EXPECT_EQ(reg["resources"]["cpu_millis"], 1500);
  EXPECT_EQ(reg["resources"]["memory_mib"], 1);
  EXPECT_EQ(reg["resources"]["memory_available_mib"], 1);
  std::thread runner([&] { agent.Run(); });
  ASSERT_TRUE(WaitFor([&] { return cluster.Count() >= 1; }, 10s));
  Json hb = cluster.Last();
  EXPECT_EQ(hb["resources"]["cpu_millis"], 1500);
  EXPECT_EQ(hb["resources"]["memory_mib"], 1);
  EXPECT_EQ(hb["resources"]["memory_available_mib"], 1);
  agent.Stop();
  runner.join();

  // Without them: the /proc figures.
  TempDir dir2;
  FakeCluster plain;
  plain.Start();
  NodeOptions p = o;
  p.cluster_url = "http://127.0.0.1:" + std::to_string(plain.server->port());
  p.data_dir = dir2.str() + "/node";
  p.cpu_millis = 0;
  p.memory_mib = 0;
  NodeAgent real(p);
  ASSERT_TRUE(real.Start().has_value());
  NodeResources proc = ReadResources();
  Json r = plain.FirstRegistration()["resources"];
  EXPECT_EQ(r["cpu_millis"], proc.cpu_millis);
  EXPECT_EQ(r["memory_mib"], proc.memory_mib);
  EXPECT_GT(r["memory_available_mib"].get<int64_t>(), 1);

  // Negative figures are refused.
  NodeOptions bad = p;
  bad.cpu_millis = -1;
  EXPECT_EQ(NodeAgent(bad).Start().error().code, ErrorCode::kInvalidArgument);
  cluster.server->Stop();
  plain.server->Stop();
}

}  // namespace
}  // namespace canopy::node
