// The cluster and node tiers with real processes: root + edge cluster + 2 nodes; single-use
// tokens; root down (kill -9) while the cluster keeps serving its nodes; convergence; cluster
// OFFLINE after missed links and back; stable ids across restarts; command round trip through
// the in-process broker API; no secret in any log.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "store/cluster_store.h"
#include "store/store.h"
#include "support/daemons.h"
#include "support/in_process_root.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

// The broker's view: the root's store and master key opened in this process (SQLite allows
// several processes on one file), with the application layer's command queue.
struct BrokerSide {
  explicit BrokerSide(const std::string& root_data_dir) : db(root_data_dir) {}

  std::string NodeToken(const std::string& cluster_id) {
    auto done = db.Run(cluster_id, core::CommandType::kCreateNodeToken);
    EXPECT_EQ(done.state, core::ClusterCommandState::kSucceeded);
    EXPECT_TRUE(done.result.contains("token")) << done.result.dump();
    return done.result.value("token", "");
  }
  RootDb db;
};

Json GetCluster(const RootDaemon& root, const std::string& token, const std::string& id) {
  auto r = root.Call("GET", "/api/v1/clusters/" + id, "", token);
  return r.status == 200 ? r.json : Json();
}

bool ActiveWithOnlineNodes(const Json& c, size_t n) {
  if (!c.is_object() || c.value("state", "") != "ACTIVE" || !c["nodes"].is_array() ||
      c["nodes"].size() != n) {
    return false;
  }
  for (const auto& node : c["nodes"]) {
    if (node.value("state", "") != "online") return false;
  }
  return true;
}

TEST(ClusterPairing, EdgeClusterWithTwoNodesSurvivesRootAndClusterRestarts) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/root");
  root.Start();
  std::string admin = root.AdminToken();

  auto created = root.Call("POST", "/api/v1/cluster-tokens", R"({"name":"edge-1"})", admin);
  ASSERT_EQ(created.status, 201) << created.body;
  std::string cluster_token = created.json["token"];
  std::string cluster_id = created.json["cluster_id"];
  EXPECT_EQ(GetCluster(root, admin, cluster_id)["state"], "PAIRING");

  std::vector<std::string> fast = {"--link-interval", "1", "--heartbeat-interval", "1"};
  ClusterDaemon cluster(root.url(), tmp.str() + "/cluster", fast);
  cluster.Start(cluster_token);
  ASSERT_TRUE(WaitFor(
      [&] { return GetCluster(root, admin, cluster_id).value("state", "") == "ACTIVE"; }, 10s));
  // The pairing token is single-use.
  auto again = root.Call("POST", "/api/v1/clusters/pair",
                         DumpJson({{"token", cluster_token}, {"url", "http://127.0.0.1:1"}}));
  EXPECT_EQ(again.status, 401) << again.body;

  // Command round trip: the broker asks the cluster for node tokens over the link.
  BrokerSide broker(root.data_dir());
  auto ping = broker.db.commands().Enqueue(cluster_id, core::CommandType::kPing);
  ASSERT_OK(ping);
  auto pong = broker.db.commands().Wait(ping->id, 15s);
  ASSERT_OK(pong);
  EXPECT_EQ(pong->result["cluster_id"], cluster_id);
  std::string t1 = broker.NodeToken(cluster_id), t2 = broker.NodeToken(cluster_id);
  ASSERT_FALSE(t1.empty());
  ASSERT_FALSE(t2.empty());
  ASSERT_NE(t1, t2);

  NodeDaemon n1(cluster.url(), tmp.str() + "/node1"), n2(cluster.url(), tmp.str() + "/node2");
  n1.Start(t1);
  n2.Start(t2);
  ASSERT_TRUE(
      WaitFor([&] { return ActiveWithOnlineNodes(GetCluster(root, admin, cluster_id), 2); }, 10s))
      << GetCluster(root, admin, cluster_id).dump();
  Json c = GetCluster(root, admin, cluster_id);
  for (const auto& node : c["nodes"]) {
    EXPECT_GT(node["resources"]["memory_mib"].get<int64_t>(), 0);
    EXPECT_GT(node["resources"]["memory_available_mib"].get<int64_t>(), 0);
    EXPECT_GE(node["resources"]["cpu_millis"].get<int64_t>(), 1000);
    EXPECT_EQ(node["address"], "127.0.0.1");
  }
  EXPECT_EQ(c["resources"]["memory_mib"].get<int64_t>(),
            c["nodes"][0]["resources"]["memory_mib"].get<int64_t>() +
                c["nodes"][1]["resources"]["memory_mib"].get<int64_t>());
  std::string id1 = n1.NodeId();
  ASSERT_FALSE(id1.empty());
  // Node tokens are single-use too.
  auto reuse = CallApi(cluster.url(), "POST", "/cluster/v1/nodes/register",
                       DumpJson({{"token", t1}, {"hostname", "x"}}));
  EXPECT_EQ(reuse.status, 401) << reuse.body;

  // Root down: cluster and nodes keep running and the cluster keeps serving heartbeats.
  uint16_t root_port = root.port();
  root.KillHard();
  auto before = std::chrono::system_clock::now();
  std::this_thread::sleep_for(4s);
  EXPECT_TRUE(cluster.Running());
  EXPECT_TRUE(n1.Running());
  EXPECT_TRUE(n2.Running());
  EXPECT_EQ(CallApi(cluster.url(), "GET", "/healthz").status, 200);
  {
    auto cs = store::OpenClusterStore(tmp.str() + "/cluster/cluster.db");
    ASSERT_OK(cs);
    auto nodes = (*cs)->ListNodes();
    ASSERT_OK(nodes);
    ASSERT_EQ(nodes->size(), 2u);
    for (const auto& n : *nodes) EXPECT_GT(n.last_heartbeat, before) << n.id;
  }
  root.Start();  // on the same port: the cluster dials it there
  EXPECT_EQ(root.port(), root_port);
  admin = root.AdminToken();
  ASSERT_TRUE(
      WaitFor([&] { return ActiveWithOnlineNodes(GetCluster(root, admin, cluster_id), 2); }, 10s));

  // Cluster down for more than 3 link intervals: OFFLINE at the root; back: ACTIVE, same id.
  cluster.KillHard();
  ASSERT_TRUE(WaitFor(
      [&] { return GetCluster(root, admin, cluster_id).value("state", "") == "OFFLINE"; }, 8s));
  cluster.Start("");
  ASSERT_TRUE(
      WaitFor([&] { return ActiveWithOnlineNodes(GetCluster(root, admin, cluster_id), 2); }, 10s))
      << GetCluster(root, admin, cluster_id).dump();
  auto list = root.Call("GET", "/api/v1/clusters", "", admin);
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.json.size(), 1u);
  EXPECT_EQ(list.json[0]["id"], cluster_id);

  // A restarted node keeps its id (re-registers with its key, no token).
  n1.Stop();
  n1.Start("");
  ASSERT_TRUE(
      WaitFor([&] { return ActiveWithOnlineNodes(GetCluster(root, admin, cluster_id), 2); }, 10s));
  EXPECT_EQ(n1.NodeId(), id1);
  std::set<std::string> ids;
  Json after = GetCluster(root, admin, cluster_id);
  for (const auto& node : after["nodes"]) ids.insert(node["id"].get<std::string>());
  EXPECT_TRUE(ids.count(id1));

  // No token or key in any log.
  std::string cluster_key =
      ParseJsonObject(ReadFile(tmp.str() + "/cluster/identity.json"))->value("cluster_key", "");
  std::string node_key =
      ParseJsonObject(ReadFile(tmp.str() + "/node1/identity.json"))->value("node_key", "");
  ASSERT_FALSE(cluster_key.empty());
  ASSERT_FALSE(node_key.empty());
  for (const std::string& log :
       {root.log_path(), cluster.log_path(), n1.log_path(), n2.log_path()}) {
    std::string text = ReadFile(log);
    for (const std::string& secret : {cluster_token, cluster_key, t1, t2, node_key}) {
      EXPECT_EQ(text.find(secret), std::string::npos) << log;
    }
  }
}

TEST(ClusterPairing, BadTokensAndKeysAreRefused) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/root");
  root.Start();
  std::string admin = root.AdminToken();
  EXPECT_EQ(root.Call("POST", "/api/v1/clusters/pair",
                      R"({"token":"cct_nope","url":"http://127.0.0.1:9"})")
                .status,
            401);
  EXPECT_EQ(root.Call("POST", "/api/v1/clusters/pair", R"({"token":"x","url":"ftp://x"})").status,
            400);
  EXPECT_EQ(root.Call("POST", "/api/v1/cluster-tokens", R"({"name":"bad name"})", admin).status,
            400);
  auto created = root.Call("POST", "/api/v1/cluster-tokens", R"({"name":"e"})", admin);
  ASSERT_EQ(created.status, 201);
  EXPECT_EQ(root.Call("POST", "/api/v1/cluster-tokens", R"({"name":"e"})", admin).status, 409);
  std::string id = created.json["cluster_id"];
  auto link = CallApi(root.url(), "POST", "/api/v1/clusters/" + id + "/link", "{}", "ck_wrong");
  EXPECT_EQ(link.status, 401) << link.body;
  EXPECT_EQ(CallApi(root.url(), "POST", "/api/v1/clusters/" + id + "/link", "{}").status, 401);
  EXPECT_EQ(root.Call("GET", "/api/v1/clusters/cls-unknown", "", admin).status, 404);
  // A cluster without identity or token refuses to start.
  Process p({CanopydPath(), "cluster", "--root", root.url(), "--data-dir", tmp.str() + "/c"}, {},
            tmp.str() + "/c.log");
  EXPECT_NE(p.Wait(), 0);
}

}  // namespace
}  // namespace canopy::testing
