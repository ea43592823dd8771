// The broker end to end on the local provider (issue 4 acceptance): a cloud cluster with two
// workers is created through the REST API, each worker action moves through the contract's
// states with real namespaces and processes, invalid transitions are 409, and deleting
// everything leaves no instance behind. Root only.
#include <gtest/gtest.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "support/broker_env.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

std::string Ns(const Json& worker) { return "canopy-" + worker.value("provider_id", ""); }

bool HasNs(const std::string& ns) {
  auto all = BrokerEnv::Namespaces();
  return std::find(all.begin(), all.end(), ns) != all.end();
}

Json WorkerById(BrokerEnv& env, const std::string& cluster, const std::string& id) {
  for (const auto& w : env.Workers(cluster)) {
    if (w.value("id", "") == id) return w;
  }
  return Json();
}

// An online node of the cluster at `address`, as the cluster reported over its link.
bool NodeOnline(BrokerEnv& env, const std::string& cluster, const std::string& address) {
  for (const auto& n : env.Cluster(cluster).value("nodes", Json::array())) {
    if (n.value("address", "") == address && n.value("state", "") == "online") return true;
  }
  return false;
}

class BrokerE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
    env_ = std::make_unique<BrokerEnv>();
    env_->Start();
  }
  void TearDown() override { env_.reset(); }

  // Starts `action` on a worker and waits for its operation; returns the operation.
  Json Act(const std::string& cluster, const std::string& wid, const std::string& action) {
    std::string path = "/api/v1/clusters/" + cluster + "/workers/" + wid;
    auto r =
        action == "delete" ? env_->Call("DELETE", path) : env_->Call("POST", path + "/" + action);
    EXPECT_EQ(r.status, 202) << action << ": " << r.body;
    if (r.status != 202) return Json();
    return env_->WaitOperation(r.json["operation_id"].get<std::string>(), 120s);
  }

  std::unique_ptr<BrokerEnv> env_;
};

TEST_F(BrokerE2E, ClusterWithTwoWorkersThenEveryWorkerActionThenDelete) {
  auto created = env_->CreateCluster("demo", 2);
  ASSERT_TRUE(created.contains("operation_id")) << created.dump();
  const std::string cluster = created["cluster"]["id"];
  EXPECT_EQ(created["cluster"]["state"], "PROVISIONING");
  auto op = env_->WaitOperation(created["operation_id"], 180s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump() << "\n"
                                                << ReadFile(env_->root().log_path());
  EXPECT_EQ(op["steps"].size(), 8u);

  auto c = env_->Cluster(cluster);
  EXPECT_EQ(c["state"], "ACTIVE") << c.dump();
  EXPECT_EQ(c["kind"], "cloud");
  auto workers = env_->Workers(cluster);
  ASSERT_EQ(workers.size(), 2u) << workers.dump();
  for (const auto& w : workers) {
    EXPECT_EQ(w["state"], "ACTIVE") << w.dump();
    EXPECT_TRUE(w["node_id"].is_string()) << w.dump();
    EXPECT_TRUE(HasNs(Ns(w))) << Ns(w);
    EXPECT_FALSE(BrokerEnv::PidsIn(Ns(w)).empty()) << "no node agent in " << Ns(w);
    EXPECT_TRUE(NodeOnline(*env_, cluster, w["address"])) << c.dump();
    // What the node reported about its machine (local instances share this host's kernel).
    ASSERT_TRUE(w["system"].is_object()) << w.dump();
    utsname u{};
    ASSERT_EQ(::uname(&u), 0);
    EXPECT_EQ(w["system"].value("kernel", ""), u.release) << w.dump();
    EXPECT_EQ(w["system"].value("arch", ""), u.machine) << w.dump();
    EXPECT_TRUE(w["system"].value("os", "").starts_with("Debian GNU/Linux")) << w.dump();
    EXPECT_GT(w["system"].value("cpus", 0), 0) << w.dump();
    EXPECT_GT(w["system"].value("memory_mib", 0), 0) << w.dump();
  }
  EXPECT_EQ(env_->InstancesOf(cluster), 3);
  const std::string w1 = workers[0]["id"], w2 = workers[1]["id"];

  // Invalid transitions are 409 with the current state.
  auto bad = env_->Call("POST", "/api/v1/clusters/" + cluster + "/workers/" + w1 + "/restart");
  EXPECT_EQ(bad.status, 409) << bad.body;
  EXPECT_NE(bad.body.find("ACTIVE"), std::string::npos) << bad.body;
  EXPECT_EQ(
      env_->Call("POST", "/api/v1/clusters/" + cluster + "/workers/" + w1 + "/recreate").status,
      409);
  // A cluster with billed workers cannot be deleted.
  EXPECT_EQ(env_->Call("DELETE", "/api/v1/clusters/" + cluster).status, 409);

  // stop: the namespace stays, without processes.
  std::string ns1 = Ns(workers[0]);
  auto stop = Act(cluster, w1, "stop");
  ASSERT_EQ(stop.value("state", ""), "succeeded") << stop.dump();
  EXPECT_EQ(WorkerById(*env_, cluster, w1)["state"], "STOPPED");
  EXPECT_TRUE(HasNs(ns1));
  EXPECT_TRUE(BrokerEnv::PidsIn(ns1).empty());
  EXPECT_EQ(env_->Call("POST", "/api/v1/clusters/" + cluster + "/workers/" + w1 + "/stop").status,
            409);

  // restart: the node comes back registered (at its possibly new address).
  auto restart = Act(cluster, w1, "restart");
  ASSERT_EQ(restart.value("state", ""), "succeeded") << restart.dump();
  auto after = WorkerById(*env_, cluster, w1);
  EXPECT_EQ(after["state"], "ACTIVE") << after.dump();
  EXPECT_EQ(after["node_id"], workers[0]["node_id"]) << "the node keeps its identity";
  EXPECT_TRUE(NodeOnline(*env_, cluster, after["address"]));

  // terminate: the namespace goes.
  std::string ns2 = Ns(workers[1]);
  auto term = Act(cluster, w2, "terminate");
  ASSERT_EQ(term.value("state", ""), "succeeded") << term.dump();
  EXPECT_EQ(WorkerById(*env_, cluster, w2)["state"], "TERMINATED");
  EXPECT_FALSE(HasNs(ns2));
  EXPECT_EQ(env_->InstancesOf(cluster), 2);

  // recreate: a new instance.
  auto rec = Act(cluster, w2, "recreate");
  ASSERT_EQ(rec.value("state", ""), "succeeded") << rec.dump() << ReadFile(env_->root().log_path());
  auto w2now = WorkerById(*env_, cluster, w2);
  EXPECT_EQ(w2now["state"], "ACTIVE") << w2now.dump();
  EXPECT_NE(w2now["provider_id"], workers[1]["provider_id"]);
  EXPECT_TRUE(HasNs(Ns(w2now)));
  EXPECT_EQ(env_->InstancesOf(cluster), 3);

  // delete: the row goes (and its instance).
  for (const auto& wid : {w1, w2}) {
    auto del = Act(cluster, wid, "delete");
    ASSERT_EQ(del.value("state", ""), "succeeded") << del.dump();
    EXPECT_TRUE(WorkerById(*env_, cluster, wid).is_null());
  }
  EXPECT_FALSE(HasNs(Ns(after)));
  EXPECT_EQ(env_->InstancesOf(cluster), 1);

  // The credential is in use while the cluster exists.
  auto cred_del = env_->Call("DELETE", "/api/v1/credentials/" + env_->credential_id());
  EXPECT_EQ(cred_del.status, 409) << cred_del.body;

  // delete the cluster: its instance goes, then the row.
  auto del = env_->Call("DELETE", "/api/v1/clusters/" + cluster);
  ASSERT_EQ(del.status, 202) << del.body;
  auto delop = env_->WaitOperation(del.json["operation_id"], 60s);
  ASSERT_EQ(delop.value("state", ""), "succeeded") << delop.dump();
  EXPECT_EQ(env_->Call("GET", "/api/v1/clusters/" + cluster).status, 404);
  EXPECT_EQ(env_->InstancesOf(cluster), 0);
  EXPECT_EQ(env_->Call("DELETE", "/api/v1/credentials/" + env_->credential_id()).status, 204);
}

// A root whose URL for clusters does not work from the instances (here: its loopback address,
// which inside an instance's namespace is the instance itself) fails the create at the install
// step with that reason, at once, instead of waiting out the pairing timeout.
TEST(BrokerE2EReachability, UnreachableRootFailsTheCreateFastWithTheReason) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "needs root";
  BrokerEnv env({"--cluster-url", "http://127.0.0.1:9"});
  env.Start();
  if (::testing::Test::HasFatalFailure()) return;
  auto started = std::chrono::steady_clock::now();
  Json created = env.CreateCluster("unreachable", 1);
  Json op = env.WaitOperation(created.value("operation_id", ""), 120s);
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(op["state"], "failed") << op.dump();
  EXPECT_EQ(op["step"], "install") << op.dump();
  std::string message = op["error"].value("message", "");
  EXPECT_NE(message.find("cannot reach the root at http://127.0.0.1:9"), std::string::npos)
      << message;
  EXPECT_NE(message.find("--cluster-listen"), std::string::npos) << message;
  EXPECT_LT(took, 60s) << "the create should not wait for the 180 s pairing timeout";
  EXPECT_EQ(env.Cluster(created["cluster"]["id"])["state"], "FAILED");
}

TEST_F(BrokerE2E, BadCreateRequestsAreRefusedBeforeAnythingIsMade) {
  // A valid request but for the one field each case breaks (the host image is always offered).
  auto base = Json{{"name", "x1"},         {"credential_id", env_->credential_id()},
                   {"region", "local"},    {"instance_type", "local.small"},
                   {"image", "debian-12"}, {"disk_gb", 1}};
  auto with = [&](const char* k, Json v) {
    Json b = base;
    b[k] = std::move(v);
    return env_->Call("POST", "/api/v1/clusters", DumpJson(b));
  };
  EXPECT_EQ(with("instance_type", "local.huge").status, 400);
  EXPECT_EQ(with("image", "windows").status, 400);
  EXPECT_EQ(with("region", "mars-1").status, 400);
  EXPECT_EQ(with("credential_id", "crd_nope").status, 404);
  EXPECT_EQ(with("name", "bad name!").status, 400);
  EXPECT_EQ(with("disk_gb", "ten").status, 400);
  EXPECT_EQ(with("workers", Json{{"count", -1}}).status, 400);
  EXPECT_EQ(env_->Call("GET", "/api/v1/clusters").json.size(), 0u);
  EXPECT_EQ(env_->Call("POST", "/api/v1/clusters/cls_nope/workers", R"({"count":1})").status, 404);
  EXPECT_EQ(env_->Call("POST", "/api/v1/clusters/cls_nope/workers/wrk_x/stop").status, 404);
}

// The root away for 60 s: the cluster and its nodes keep running on their own; when the root
// returns, the cluster links again and root and cluster agree (ACTIVE, node online, worker ACTIVE).
TEST(RootAway, ClusterAndNodesKeepRunningAndStatesConverge) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  BrokerEnv env;
  env.Start();
  auto created = env.CreateCluster("away", 1);
  const std::string cluster = created["cluster"]["id"];
  ASSERT_EQ(env.WaitOperation(created["operation_id"], 120s).value("state", ""), "succeeded");
  auto before = env.Workers(cluster)[0];
  const std::string cluster_ns = "canopy-" + env.Cluster(cluster).value("provider_id", "");
  const std::string cluster_url = env.Cluster(cluster).value("url", "");

  env.root().Stop();
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    // The cluster keeps serving its nodes (its API answers from the host) and nothing exits.
    ASSERT_EQ(CallApi(cluster_url, "GET", "/healthz").status, 200);
    ASSERT_FALSE(BrokerEnv::PidsIn(cluster_ns).empty());
    ASSERT_FALSE(BrokerEnv::PidsIn(Ns(before)).empty());
    std::this_thread::sleep_for(5s);
  }
  env.RestartRoot();
  EXPECT_TRUE(WaitFor(
      [&] {
        auto c = env.Cluster(cluster);
        return c.value("state", "") == "ACTIVE" && NodeOnline(env, cluster, before["address"]);
      },
      30s))
      << env.Cluster(cluster).dump();
  auto after = env.Workers(cluster)[0];
  EXPECT_EQ(after["state"], "ACTIVE");
  EXPECT_EQ(after["node_id"], before["node_id"]);
  EXPECT_EQ(env.InstancesOf(cluster), 2);
}

// An instance tagged with a cluster but owned by no row (as a crash outside any operation could
// leave) is found by the sweeper and terminated; the cluster's own instance is left alone.
TEST(Sweeper, TerminatesTaggedInstancesNoRowOwns) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  BrokerEnv env({"--sweep-interval", "1", "--sweep-delete"});
  env.Start();
  auto created = env.CreateCluster("swept", 0);
  const std::string cluster = created["cluster"]["id"];
  ASSERT_EQ(env.WaitOperation(created["operation_id"], 120s).value("state", ""), "succeeded");
  auto remote = env.Adapter();
  ASSERT_NE(remote, nullptr);
  providers::InstanceSpec spec;
  spec.canopy_id = "wrk_gone-g1";
  spec.idempotency_key = spec.canopy_id;
  spec.instance_type = "local.small";
  spec.image = kBlankTestImage;
  spec.key_pair = "canopy-" + env.credential_id();
  spec.tags[providers::kClusterTag] = cluster;
  auto orphan = remote->CreateInstance(BrokerEnv::LocalContext(), spec);
  ASSERT_TRUE(orphan.has_value()) << orphan.error().message;
  EXPECT_TRUE(WaitFor([&] { return env.InstancesOf(cluster) == 1; }, 30s))
      << ReadFile(env.root().log_path());
  EXPECT_NE(ReadFile(env.root().log_path()).find("Orphan instance"), std::string::npos);
  EXPECT_EQ(env.Cluster(cluster).value("state", ""), "ACTIVE");
  std::this_thread::sleep_for(2s);  // more sweeps: the owned instance stays
  EXPECT_EQ(env.InstancesOf(cluster), 1);
}

// Blank images (scripts/local-images.sh, run by scripts/setup.sh): the cluster and its workers
// get their own root filesystem from the image, so the pushed agent runs with none of this host's
// libraries, and the nodes report the image's OS, not the host's.
struct BlankImageCase {
  const char* image;
  const char* os;  // the PRETTY_NAME its nodes must report
};

class BrokerE2EBlankImage : public ::testing::TestWithParam<BlankImageCase> {};

TEST_P(BrokerE2EBlankImage, ClusterAndWorkersReportTheImagesOsAndSurviveStopRestart) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  const std::string os = GetParam().os;
  BrokerEnv env;
  env.Start();
  auto created = env.CreateCluster("blank", 2, GetParam().image);
  ASSERT_TRUE(created.contains("operation_id")) << created.dump();
  const std::string cluster = created["cluster"]["id"];
  auto op = env.WaitOperation(created["operation_id"], 180s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump() << "\n"
                                                << ReadFile(env.root().log_path());
  auto workers = env.Workers(cluster);
  ASSERT_EQ(workers.size(), 2u) << workers.dump();
  for (const auto& w : workers) {
    EXPECT_EQ(w["state"], "ACTIVE") << w.dump();
    ASSERT_TRUE(w["system"].is_object()) << w.dump();
    EXPECT_EQ(w["system"].value("os", ""), os) << w.dump();
  }
  // The instance's filesystem is its own: the host's root is not the image.
  EXPECT_EQ(ReadFile("/etc/canopy-image"), "");
  // Stop keeps the disk (the overlay's upper layer); restart mounts it again and the node comes
  // back on the same image.
  const std::string path =
      "/api/v1/clusters/" + cluster + "/workers/" + workers[1]["id"].get<std::string>();
  for (const char* action : {"stop", "restart"}) {
    auto r = env.Call("POST", path + "/" + action);
    ASSERT_EQ(r.status, 202) << action << ": " << r.body;
    auto done = env.WaitOperation(r.json["operation_id"].get<std::string>(), 120s);
    ASSERT_EQ(done.value("state", ""), "succeeded") << action << ": " << done.dump();
  }
  auto again = env.Call("GET", path).json;
  EXPECT_EQ(again["state"], "ACTIVE") << again.dump();
  EXPECT_EQ(again["system"].value("os", ""), os) << again.dump();
  auto del = env.Call(
      "DELETE", "/api/v1/clusters/" + cluster + "/workers/" + workers[0]["id"].get<std::string>());
  EXPECT_EQ(del.status, 202) << del.body;
}

INSTANTIATE_TEST_SUITE_P(
    Images, BrokerE2EBlankImage,
    ::testing::Values(BlankImageCase{"debian-11-minbase", "Debian GNU/Linux 11 (bullseye)"},
                      BlankImageCase{"debian-12-minbase", "Debian GNU/Linux 12 (bookworm)"}),
    [](const ::testing::TestParamInfo<BlankImageCase>& i) {
      std::string name = i.param.image;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

}  // namespace
}  // namespace canopy::testing
