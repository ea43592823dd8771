// The GCP provider through the root, against the Compute Engine double (scripts/sim/gcp-sim:
// every request validated against Google's discovery documents, tokens by signed JWT, a machine
// behind each instance, on the test's own network):
// GcpE2E.ClusterWithTwoWorkers...: credential, offers for a zone's region with catalog prices, a
// cluster with two workers to ACTIVE on Debian 12, a service answering from the host through the
// service's firewall rule, every worker action, delete leaving nothing in the double.
// GcpE2E.AdapterKilledRightAfterInsert...: the adapter killed right after instances.insert; the
// retry finds the instance (labels), so there is exactly one.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "common/ids.h"
#include "providers/gcp/gcp_factory.h"
#include "providers/gcp/gcp_provider.h"
#include "support/cloud_env.h"
#include "support/daemons.h"
#include "support/gce_sim.h"
#include "support/local_env.h"
#include "support/test_util.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

class GcpEnv : public CloudEnv {
 public:
  explicit GcpEnv(std::vector<std::string> adapter_flags = {})
      : CloudEnv("gcp", std::move(adapter_flags)) {}
  ~GcpEnv() override {
    StopDaemons();
    sim_.reset();  // terminates every machine
    net_.reset();
  }

  // False (with the reason in `why`) when the double's machines cannot run here (not root).
  bool Start(std::string* why) {
    if (!LocalTestNet::Available()) {
      *why = "the GCP double's machines need root";
      return false;
    }
    net_ = std::make_unique<LocalTestNet>();
    sim_ = std::make_unique<GceSim>();
    Status st = sim_->Start(*net_);
    if (!st) {
      *why = st.error().message;
      ADD_FAILURE() << *why;
      return false;
    }
    config_ = sim_->info()["adapter_config"];
    config_["operation_poll_ms"] = 50;
    config_["max_attempts"] = 3;
    config_["retry_base_ms"] = 20;
    std::string catalog = SourceDir() + "/../shared/reference/catalog/gcp-vms.csv";
    if (std::filesystem::exists(catalog)) config_["price_catalog"] = catalog;
    StartDaemons(config_, {"--cluster-listen", net_->gateway() + ":0"});
    return true;
  }

  // The owner's key, and direct reads of the double with it.
  const Json& owner() const { return sim_->info()["credential"]; }
  providers::CallContext Ctx() const {
    return providers::CallContext{providers::CredentialSecret(owner()), "us-central1"};
  }
  std::unique_ptr<providers::gcp::GcpProvider> Direct() const {
    auto o = providers::gcp::ParseGcpOptions(config_);
    EXPECT_TRUE(o.has_value());
    return std::make_unique<providers::gcp::GcpProvider>(*o);
  }
  // GET `path` of the double's API (e.g. "/compute/v1/projects/P/global/firewalls").
  Json Read(const std::string& path) const {
    auto token = AccessToken(owner());
    EXPECT_TRUE(token.has_value()) << token.error().message;
    if (!token) return Json();
    auto r = GceCall(sim_->url(), "GET", path, *token);
    EXPECT_TRUE(r.has_value());
    return r ? r->body : Json();
  }
  std::string project() const { return sim_->info().value("project", ""); }

  GceSim& sim() { return *sim_; }

 private:
  std::unique_ptr<LocalTestNet> net_;
  std::unique_ptr<GceSim> sim_;
  Json config_;
};

std::string DebianImage(const Json& offers) {
  for (const auto& i : offers["images"]) {
    if (i.value("id", "").find("debian-12") != std::string::npos) return i["id"];
  }
  return "";
}

TEST(GcpE2E, ClusterWithTwoWorkersReachesActiveServesSurvivesEveryWorkerActionAndLeavesNothing) {
  GcpEnv env;
  std::string why;
  if (!env.Start(&why)) GTEST_SKIP() << why;
  ASSERT_TRUE(ExpectBlankImageBuilt("debian-12-minbase"));
  const std::string private_key = env.owner()["private_key"];

  // A key the double did not issue is an auth failure (422); the owner's key is accepted.
  Json wrong = env.owner();
  wrong["private_key_id"] = "0000000000000000000000000000000000000000";
  auto bad = env.AddCredential(wrong);
  EXPECT_EQ(bad.status, 422) << bad.body;
  auto cred = env.AddCredential(env.owner());
  ASSERT_EQ(cred.status, 201) << cred.body;
  const std::string cred_id = cred.json["id"];
  EXPECT_EQ(cred.body.find("PRIVATE KEY"), std::string::npos);

  // Offers for us-central1: e2- and n2- machine types priced from the catalog, Debian images.
  auto offers = env.Call(
      "GET", "/api/v1/offers?provider=gcp&credential_id=" + cred_id + "&region=us-central1");
  ASSERT_EQ(offers.status, 200) << offers.body;
  const Json& o = offers.json;
  EXPECT_NE(std::find(o["regions"].begin(), o["regions"].end(), "europe-west1"),
            o["regions"].end());
  bool saw_e2 = false, saw_n2 = false;
  for (const auto& t : o["instance_types"]) {
    const std::string name = t["name"];
    if (name.starts_with("e2-") || name.starts_with("n2-")) {
      EXPECT_TRUE(t["price_hour"].is_number()) << t.dump();
      EXPECT_GT(t["vcpus"].get<int>(), 0);
    }
    if (name == "e2-small") {
      saw_e2 = true;
      EXPECT_EQ(t["vcpus"], 2);
      EXPECT_EQ(t["memory_mib"], 2048);
    }
    saw_n2 = saw_n2 || name.starts_with("n2-");
  }
  EXPECT_TRUE(saw_e2) << o["instance_types"].dump();
  EXPECT_TRUE(saw_n2) << o["instance_types"].dump();
  const std::string image = DebianImage(o);
  ASSERT_FALSE(image.empty()) << o["images"].dump();

  // A cluster with two workers reaches ACTIVE, installed over SSH as `admin` with the host key
  // pinned from the guest attributes.
  Json body{{"name", "gcp-demo"},          {"credential_id", cred_id}, {"region", "us-central1"},
            {"instance_type", "e2-small"}, {"image", image},           {"disk_gb", 10},
            {"workers", {{"count", 2}}}};
  auto c = env.Call("POST", "/api/v1/clusters", DumpJson(body));
  ASSERT_EQ(c.status, 202) << c.body;
  const std::string cluster = c.json["cluster"]["id"];
  auto op = env.WaitOperation(c.json["operation_id"], 240s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump() << "\n"
                                                << ReadFile(env.root().log_path()) << "\n"
                                                << ReadFile(env.adapter().log_path()) << "\n"
                                                << env.sim().Log();
  EXPECT_EQ(env.Call("GET", "/api/v1/clusters/" + cluster).json.value("state", ""), "ACTIVE");
  auto workers = env.Call("GET", "/api/v1/clusters/" + cluster + "/workers").json;
  ASSERT_EQ(workers.size(), 2u) << workers.dump();
  for (const auto& w : workers) {
    EXPECT_EQ(w["state"], "ACTIVE") << w.dump();
    ASSERT_TRUE(w["system"].is_object()) << w.dump();
    EXPECT_EQ(w["system"].value("os", ""), "Debian GNU/Linux 12 (bookworm)") << w.dump();
  }
  auto provider = env.Direct();
  auto found = provider->FindInstancesByTag(env.Ctx(), providers::kClusterTag, cluster);
  ASSERT_OK(found);
  EXPECT_EQ(found->size(), 3u);
  // The cluster's identity: a service account of its own.
  const std::string account = "canopy-c-" + Sha256Hex(cluster).substr(0, 10) + "@" + env.project() +
                              ".iam.gserviceaccount.com";
  const std::string account_path = "/v1/projects/" + env.project() + "/serviceAccounts/" + account;
  EXPECT_EQ(env.Read(account_path).value("email", ""), account);

  // A service answers from the host on the worker it runs on: its port opened by the service's
  // firewall rule (a VPC rule targeting a tag the worker gets), which the machine follows.
  constexpr int kPort = 8080;
  const std::string sid = env.DeployHello(cluster, kPort);
  ASSERT_FALSE(sid.empty());
  std::string address = env.WaitServing(sid, kPort, env.sim().Log());
  ASSERT_FALSE(address.empty());
  std::cout << "service answers at " << address << ":" << kPort << "\n";

  // Every worker action: stop, restart, terminate, recreate (a new instance), delete.
  const std::string w1 = workers[0]["id"];
  const std::string old_instance = workers[0]["provider_id"];
  for (const char* action : {"stop", "restart", "terminate", "recreate"}) {
    auto done = env.WorkerAction(cluster, w1, action);
    ASSERT_EQ(done.value("state", ""), "succeeded") << action << ": " << done.dump();
  }
  auto renewed = env.Worker(cluster, w1);
  EXPECT_EQ(renewed["state"], "ACTIVE") << renewed.dump();
  EXPECT_NE(renewed["provider_id"], old_instance) << renewed.dump();
  EXPECT_EQ(env.sim().MachineState(old_instance), "");
  EXPECT_EQ(env.sim().MachineState(renewed["provider_id"]), "running");
  ASSERT_FALSE((address = env.WaitServing(sid, kPort, env.sim().Log())).empty());

  // Delete everything.
  env.UndeployAndDelete(sid, address, kPort);
  for (const auto& w : env.Call("GET", "/api/v1/clusters/" + cluster + "/workers").json) {
    auto done = env.WorkerAction(cluster, w["id"], "delete");
    ASSERT_EQ(done.value("state", ""), "succeeded") << done.dump();
  }
  auto d = env.Call("DELETE", "/api/v1/clusters/" + cluster);
  ASSERT_EQ(d.status, 202) << d.body;
  auto deleted = env.WaitOperation(d.json["operation_id"], 120s);
  ASSERT_EQ(deleted.value("state", ""), "succeeded") << deleted.dump();

  // Nothing left in the double: no instance, no firewall rule of the cluster (the credential's
  // shared SSH rule stays for its next cluster, as on AWS), no service account of the cluster; no
  // machine on the host.
  const std::string p = env.project();
  EXPECT_TRUE(WaitFor([&] { return env.sim().MachineCount() == 0; }, 15s)) << env.sim().Log();
  for (const char* zone : {"us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"}) {
    Json l = env.Read("/compute/v1/projects/" + p + "/zones/" + zone + "/instances");
    EXPECT_TRUE(l.value("items", Json::array()).empty()) << zone << ": " << l.dump();
  }
  Json rules = env.Read("/compute/v1/projects/" + p + "/global/firewalls");
  for (const auto& r : rules.value("items", Json::array())) {
    EXPECT_EQ(r.value("description", "").find(cluster), std::string::npos) << r.dump();
    EXPECT_TRUE(r.value("description", "").starts_with("canopy-id=ssh-" + cred_id)) << r.dump();
  }
  Json gone = env.Read(account_path);
  EXPECT_EQ(gone["error"].value("code", 0), 404) << gone.dump();

  // Neither the adapter nor the root logged the private key.
  const std::string key_body = private_key.substr(40, 40);
  for (const std::string& log :
       {ReadFile(env.adapter().log_path()), ReadFile(env.root().log_path())}) {
    EXPECT_EQ(log.find("PRIVATE KEY"), std::string::npos);
    EXPECT_EQ(log.find(key_body), std::string::npos);
  }
}

TEST(GcpE2E, AdapterKilledRightAfterInsertLeavesExactlyOneInstance) {
  GcpEnv env({"--test-kill-after-call", "create_instance"});
  std::string why;
  if (!env.Start(&why)) GTEST_SKIP() << why;
  auto cred = env.AddCredential(env.owner());
  ASSERT_EQ(cred.status, 201) << cred.body;
  auto offers = env.Call("GET", "/api/v1/offers?provider=gcp&credential_id=" +
                                    cred.json["id"].get<std::string>() + "&region=us-central1");
  ASSERT_EQ(offers.status, 200) << offers.body;
  Json body{
      {"name", "gcp-crash"},         {"credential_id", cred.json["id"]},  {"region", "us-central1"},
      {"instance_type", "e2-small"}, {"image", DebianImage(offers.json)}, {"disk_gb", 10}};
  auto c = env.Call("POST", "/api/v1/clusters", DumpJson(body));
  ASSERT_EQ(c.status, 202) << c.body;
  const std::string id = c.json["cluster"]["id"];
  auto op = env.WaitOperation(c.json["operation_id"], 240s, /*restart_adapter=*/true);
  EXPECT_TRUE(env.adapter_died()) << "the adapter never reached create_instance";
  EXPECT_EQ(op.value("state", ""), "succeeded") << op.dump();
  auto provider = env.Direct();
  auto found = provider->FindInstancesByTag(env.Ctx(), providers::kCanopyIdTag, id);
  ASSERT_OK(found);
  EXPECT_EQ(found->size(), 1u);
  auto d = env.Call("DELETE", "/api/v1/clusters/" + id);
  ASSERT_EQ(d.status, 202) << d.body;
  ASSERT_EQ(env.WaitOperation(d.json["operation_id"], 120s).value("state", ""), "succeeded");
  found = provider->FindInstancesByTag(env.Ctx(), providers::kCanopyIdTag, id);
  ASSERT_OK(found);
  EXPECT_TRUE(found->empty());
  EXPECT_TRUE(WaitFor([&] { return env.sim().MachineCount() == 0; }, 15s));
}

}  // namespace
}  // namespace canopy::testing
