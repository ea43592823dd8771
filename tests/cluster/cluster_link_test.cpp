// The root's cluster endpoints in process (real HTTP server, fake clock) and the cluster daemon's
// service in process: pairing, long-poll wake-up on enqueue, acks, OFFLINE and back, re-pairing,
// validation, and the create_node_token round trip ending in a node registration.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "api/render.h"
#include "cluster/cluster_service.h"
#include "net/error_mapping.h"
#include "store/store.h"
#include "support/daemons.h"
#include "support/in_process_root.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

class ClusterLink : public ::testing::Test {
 protected:
  void SetUp() override {
    InProcessRootOptions o;
    o.clock = clock_;
    o.core.tier.link_interval = 2s;
    o.core.offline_check_every = std::chrono::hours(1);  // the test marks OFFLINE itself
    root_ = std::make_unique<InProcessRoot>(dir_.str(), std::move(o));
    url_ = root_->url();
    ASSERT_FALSE(url_.empty());
  }
  void TearDown() override { root_.reset(); }

  store::Store* store() { return &root_->store(); }
  control::ClusterCommands& commands() { return root_->core().commands(); }
  control::ClusterTier& tier() { return root_->core().tier(); }

  std::string NewEdgeCluster(const std::string& name) {
    core::Cluster c;
    c.id = root_->core().ids()->NewId("cls");
    c.name = name;
    c.created_at = c.updated_at = clock_->Now();
    EXPECT_OK(store()->clusters().Create(c));
    return c.id;
  }
  ApiReply Pair(const std::string& token) {
    return CallApi(
        url_, "POST", "/api/v1/clusters/pair",
        DumpJson({{"token", token}, {"url", "http://127.0.0.1:7000"}, {"version", "t"}}));
  }
  std::string PairNew(const std::string& name, std::string* id) {
    *id = NewEdgeCluster(name);
    auto grant = tier().CreateToken(*id);
    EXPECT_OK(grant);
    auto r = Pair(grant->token);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.json["cluster_id"], *id);
    return r.json.value("cluster_key", "");
  }
  ApiReply Link(const std::string& id, const std::string& key, const Json& body, int wait) {
    return CallApi(url_, "POST", "/api/v1/clusters/" + id + "/link?wait=" + std::to_string(wait),
                   DumpJson(body), key);
  }

  TempDir dir_;
  std::shared_ptr<FakeClock> clock_ = std::make_shared<FakeClock>();
  std::unique_ptr<InProcessRoot> root_;
  std::string url_;
};

TEST_F(ClusterLink, PairingMakesTheClusterActiveAndTheTokenIsSingleUse) {
  std::string id = NewEdgeCluster("edge");
  auto grant = tier().CreateToken(id);
  ASSERT_OK(grant);
  EXPECT_EQ(store()->clusters().Get(id)->state, core::ClusterState::kPairing);
  auto r = Pair(grant->token);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json["link_interval_seconds"], 2);
  auto c = store()->clusters().Get(id);
  EXPECT_EQ(c->state, core::ClusterState::kActive);
  EXPECT_EQ(c->cluster_url, "http://127.0.0.1:7000");
  // The key is stored sealed, never in clear.
  EXPECT_EQ(c->key_ciphertext.find(r.json["cluster_key"].get<std::string>()), std::string::npos);
  EXPECT_EQ(Pair(grant->token).status, 401);
  // A fresh token for a cluster that already paired (re-installed, data dir lost) replaces the
  // key: the old one no longer links.
  auto again = tier().CreateToken(id);
  ASSERT_OK(again);
  auto r2 = Pair(again->token);
  ASSERT_EQ(r2.status, 200);
  EXPECT_NE(r2.json["cluster_key"], r.json["cluster_key"]);
  EXPECT_EQ(Link(id, r.json["cluster_key"], Json::object(), 0).status, 401);
  EXPECT_EQ(Link(id, r2.json["cluster_key"], Json::object(), 0).status, 200);
  EXPECT_EQ(tier().CreateToken("cls-none").error().code, ErrorCode::kNotFound);
}

TEST_F(ClusterLink, LongPollWakesWhenACommandIsQueuedAndAcksCompleteIt) {
  std::string id;
  std::string key = PairNew("edge", &id);
  auto start = std::chrono::steady_clock::now();
  auto pending = std::async(std::launch::async, [&] { return Link(id, key, Json::object(), 20); });
  std::this_thread::sleep_for(300ms);
  auto cmd = commands().Enqueue(id, core::CommandType::kPing);
  ASSERT_OK(cmd);
  ApiReply reply = pending.get();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  ASSERT_EQ(reply.status, 200) << reply.body;
  ASSERT_EQ(reply.json["commands"].size(), 1u);
  EXPECT_EQ(reply.json["commands"][0]["id"], cmd->id);
  EXPECT_EQ(reply.json["commands"][0]["type"], "ping");
  // Not acknowledged yet: delivered again (at least once).
  auto again = Link(id, key, Json::object(), 0);
  ASSERT_EQ(again.json["commands"].size(), 1u);
  auto acked =
      Link(id, key, {{"acks", {{{"id", cmd->id}, {"ok", true}, {"result", {{"pong", true}}}}}}}, 0);
  ASSERT_EQ(acked.status, 200) << acked.body;
  EXPECT_EQ(acked.json["acked"], Json::array({cmd->id}));
  EXPECT_TRUE(acked.json["commands"].empty());
  auto done = commands().Get(cmd->id);
  EXPECT_EQ(done->state, core::ClusterCommandState::kSucceeded);
  EXPECT_EQ(done->result["pong"], true);
  EXPECT_GE(done->deliveries, 2);
  // A failed command keeps its error.
  auto bad = commands().EnqueueNamed(id, "frobnicate");
  ASSERT_OK(bad);
  Link(id, key,
       {{"acks",
         {{{"id", bad->id},
           {"ok", false},
           {"error", {{"code", "invalid_argument"}, {"message", "unknown"}}}}}}},
       0);
  EXPECT_EQ(commands().Get(bad->id)->state, core::ClusterCommandState::kFailed);
  EXPECT_EQ(commands().Get(bad->id)->error_code, "invalid_argument");
  EXPECT_EQ(commands().EnqueueNamed(id, "Bad Type").error().code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(commands().Enqueue("cls-none", core::CommandType::kPing).error().code,
            ErrorCode::kNotFound);
}

TEST_F(ClusterLink, EmptyLongPollAnswersAfterTheWait) {
  std::string id;
  std::string key = PairNew("edge", &id);
  auto start = std::chrono::steady_clock::now();
  auto r = Link(id, key, Json::object(), 1);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.json["commands"].empty());
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 3s);
}

TEST_F(ClusterLink, MissedLinksMakeItOfflineAndTheNextLinkActive) {
  std::string id;
  std::string key = PairNew("edge", &id);
  Json report = {
      {"link_interval_seconds", 1},
      {"nodes",
       {{{"id", "nod-1"},
         {"address", "10.0.0.2"},
         {"state", "online"},
         {"resources", {{"cpu_millis", 2000}, {"memory_mib", 4096}, {"memory_available_mib", 100}}},
         {"last_seen", "2027-01-15T08:00:00.250Z"}}}},
      {"resources", {{"cpu_millis", 2000}, {"memory_mib", 4096}, {"memory_available_mib", 100}}}};
  ASSERT_EQ(Link(id, key, report, 0).status, 200);
  auto c = store()->clusters().Get(id);
  ASSERT_EQ(c->nodes.size(), 1u);
  ASSERT_TRUE(c->nodes[0].last_seen.has_value());
  EXPECT_EQ(FormatRfc3339(*c->nodes[0].last_seen), "2027-01-15T08:00:00.250Z");
  clock_->Advance(3000ms);
  auto none = tier().MarkOffline();
  ASSERT_OK(none);
  EXPECT_TRUE(none->empty());
  clock_->Advance(1ms);
  auto ids = tier().MarkOffline();
  ASSERT_OK(ids);
  EXPECT_EQ(*ids, std::vector<std::string>{id});
  EXPECT_EQ(api::ClusterToJson(*store()->clusters().Get(id))["state"], "OFFLINE");
  ASSERT_EQ(Link(id, key, report, 0).status, 200);
  Json j = api::ClusterToJson(*store()->clusters().Get(id));
  EXPECT_EQ(j["state"], "ACTIVE");
  EXPECT_EQ(j["nodes"][0]["resources"]["memory_mib"], 4096);
  EXPECT_EQ(j["resources"]["cpu_millis"], 2000);
  EXPECT_FALSE(j.contains("key_ciphertext"));
}

TEST_F(ClusterLink, BadInputIsAClear4xx) {
  std::string id;
  std::string key = PairNew("edge", &id);
  EXPECT_EQ(Link(id, "wrong", Json::object(), 0).status, 401);
  EXPECT_EQ(Link("cls-none", key, Json::object(), 0).status, 404);
  EXPECT_EQ(CallApi(url_, "POST", "/api/v1/clusters/" + id + "/link?wait=-1", "{}", key).status,
            400);
  EXPECT_EQ(CallApi(url_, "POST", "/api/v1/clusters/" + id + "/link?wait=x", "{}", key).status,
            400);
  EXPECT_EQ(Link(id, key, {{"nodes", "x"}}, 0).status, 400);
  EXPECT_EQ(Link(id, key, {{"nodes", {{{"address", "a"}}}}}, 0).status, 400);
  EXPECT_EQ(
      Link(id, key, {{"nodes", {{{"id", "n"}, {"resources", {{"cpu_millis", -1}}}}}}}, 0).status,
      400);
  EXPECT_EQ(Link(id, key, {{"nodes", {{{"id", "n"}, {"last_seen", "yesterday"}}}}}, 0).status, 400);
  EXPECT_EQ(Link(id, key, {{"url", "javascript:x"}}, 0).status, 400);
  EXPECT_EQ(Link(id, key, {{"acks", {{{"ok", true}}}}}, 0).status, 400);
  EXPECT_EQ(CallApi(url_, "POST", "/api/v1/clusters/" + id + "/link", "[", key).status, 400);
  EXPECT_EQ(CallApi(url_, "POST", "/api/v1/clusters/pair", R"({"token":"t"})").status, 400);
  EXPECT_EQ(
      CallApi(url_, "POST", "/api/v1/clusters/pair", R"({"token":"t","url":"http://x"})").status,
      401);
}

TEST_F(ClusterLink, ClusterServiceRunsCreateNodeTokenAndServesTheNode) {
  std::string id = NewEdgeCluster("edge");
  auto grant = tier().CreateToken(id);
  ASSERT_OK(grant);
  cluster::ClusterOptions co;
  co.root_url = url_;
  co.token = grant->token;
  co.data_dir = dir_.str() + "/cluster";
  co.link_interval = 1s;
  co.heartbeat_interval = 1s;
  cluster::ClusterService svc(co);
  ASSERT_OK(svc.Start());
  EXPECT_EQ(svc.cluster_id(), id);
  std::thread runner([&] { svc.Run(); });
  auto cmd = commands().Enqueue(id, core::CommandType::kCreateNodeToken);
  ASSERT_OK(cmd);
  auto done = commands().Wait(cmd->id, 10s);
  ASSERT_OK(done);
  ASSERT_EQ(done->state, core::ClusterCommandState::kSucceeded);
  std::string token = done->result.value("token", "");
  ASSERT_EQ(token.rfind("cnt_", 0), 0u) << done->result.dump();
  // Stored only sealed at the root.
  auto raw = store()->cluster_commands().Get(cmd->id);
  EXPECT_FALSE(raw->result.contains("token"));
  EXPECT_TRUE(raw->result.contains("token_sealed"));

  std::string cluster_url = "http://127.0.0.1:" + std::to_string(svc.port());
  auto reg = CallApi(
      cluster_url, "POST", "/cluster/v1/nodes/register",
      DumpJson({{"token", token},
                {"hostname", "n1"},
                {"resources",
                 {{"cpu_millis", 1000}, {"memory_mib", 512}, {"memory_available_mib", 256}}}}));
  ASSERT_EQ(reg.status, 201) << reg.body;
  std::string node_id = reg.json["node_id"], node_key = reg.json["node_key"];
  EXPECT_EQ(CallApi(cluster_url, "POST", "/cluster/v1/nodes/register", DumpJson({{"token", token}}))
                .status,
            401);
  auto re = CallApi(cluster_url, "POST", "/cluster/v1/nodes/register",
                    DumpJson({{"node_id", node_id}, {"address", "10.1.2.3"}}), node_key);
  ASSERT_EQ(re.status, 200) << re.body;
  EXPECT_EQ(re.json["node_id"], node_id);
  EXPECT_FALSE(re.json.contains("node_key"));
  EXPECT_EQ(
      CallApi(cluster_url, "POST", "/cluster/v1/nodes/" + node_id + "/heartbeat", "{}", "nk_wrong")
          .status,
      401);
  EXPECT_EQ(
      CallApi(cluster_url, "POST", "/cluster/v1/nodes/nod-x/heartbeat", "{}", node_key).status,
      404);
  EXPECT_EQ(CallApi(cluster_url, "POST", "/cluster/v1/nodes/" + node_id + "/heartbeat",
                    R"({"resources":{"memory_mib":-5}})", node_key)
                .status,
            400);
  ASSERT_EQ(
      CallApi(
          cluster_url, "POST", "/cluster/v1/nodes/" + node_id + "/heartbeat",
          R"({"address":"10.1.2.3","resources":{"cpu_millis":1000,"memory_mib":512,"memory_available_mib":200,"load1":0.5}})",
          node_key)
          .status,
      200);
  EXPECT_TRUE(WaitFor(
      [&] {
        auto c = store()->clusters().Get(id);
        return c && c->nodes.size() == 1 && c->nodes[0].id == node_id &&
               c->nodes[0].address == "10.1.2.3" && c->nodes[0].memory_available_mib == 200 &&
               c->resources.value("memory_mib", 0) == 512;
      },
      5s));
  svc.Stop();
  runner.join();
}

}  // namespace
}  // namespace canopy::testing
