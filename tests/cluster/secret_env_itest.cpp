// Secret service environment values (issue 14, part 5): given at service creation, sealed in the
// root's database and in the stored deploy_job command, never returned by the API (names only),
// opened only when the command goes out on the cluster's link, and present in the job's
// environment on the node.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <thread>

#include "scheduler/service_plan.h"
#include "store/store.h"
#include "support/daemons.h"
#include "support/in_process_root.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kValue = "s3cret-v4lue-91f2";

TEST(SecretEnv, SealedAtRestNeverReturnedAndGivenToTheJob) {
  TempDir tmp;
  // The job user reaches its work dir under the node's data dir (0711) through this one too.
  ASSERT_EQ(::chmod(tmp.str().c_str(), 0711), 0);
  RootDaemon root(tmp.str() + "/root");
  root.Start();
  std::string admin = root.AdminToken();

  Json body = {
      {"name", "sec"},
      {"command", {"/bin/sh", "-c", "printf %s \"$SECRET_X\" > \"$HOME/out\"; exec sleep 1000"}},
      {"env", {{"PLAIN", "1"}}},
      {"secret_env", {{"SECRET_X", kValue}}},
      {"cpu_millis", 100},
      {"memory_mib", 16}};
  auto made = root.Call("POST", "/api/v1/services", DumpJson(body), admin);
  ASSERT_EQ(made.status, 201) << made.body;
  EXPECT_EQ(made.body.find(kValue), std::string::npos) << made.body;
  EXPECT_EQ(made.json["secret_env"], Json::array({"SECRET_X"}));
  std::string id = made.json["id"];
  auto got = root.Call("GET", "/api/v1/services/" + id, "", admin);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body.find(kValue), std::string::npos) << got.body;
  auto list = root.Call("GET", "/api/v1/services", "", admin);
  EXPECT_EQ(list.body.find(kValue), std::string::npos);
  // A key in both is refused.
  Json both = body;
  both["name"] = "both";
  both["env"] = {{"SECRET_X", "x"}};
  EXPECT_EQ(root.Call("POST", "/api/v1/services", DumpJson(both), admin).status, 400);

  // At rest: the row holds it sealed.
  RootDb db(root.data_dir());
  auto row = db.store().services().Get(id);
  ASSERT_OK(row);
  EXPECT_EQ(DumpJson(row->spec).find(kValue), std::string::npos) << DumpJson(row->spec);
  EXPECT_TRUE(row->spec.contains("secret_env_sealed"));

  // A cluster and a node; the scheduler's deploy_job for it.
  auto created = root.Call("POST", "/api/v1/cluster-tokens", R"({"name":"edge-sec"})", admin);
  ASSERT_EQ(created.status, 201) << created.body;
  std::string cluster_id = created.json["cluster_id"];
  ClusterDaemon cluster(root.url(), tmp.str() + "/cluster",
                        {"--link-interval", "1", "--heartbeat-interval", "1"});
  cluster.Start(created.json["token"].get<std::string>());
  auto tok = db.Run(cluster_id, core::CommandType::kCreateNodeToken, Json::object());
  ASSERT_EQ(tok.state, core::ClusterCommandState::kSucceeded);
  NodeDaemon node(cluster.url(), tmp.str() + "/node");
  node.Start(tok.result.value("token", ""));
  ASSERT_TRUE(WaitFor(
      [&] {
        auto c = root.Call("GET", "/api/v1/clusters/" + cluster_id, "", admin);
        return c.status == 200 && c.json["nodes"].size() == 1 &&
               c.json["nodes"][0].value("state", "") == "online";
      },
      15s));
  core::ServiceInstance inst;
  inst.job_id = "manual-secret";  // not a scheduler job id: the root's scheduler leaves it alone
  inst.service_id = id;
  Json args = scheduler::DeployArgs(*row, inst);
  EXPECT_EQ(DumpJson(args).find(kValue), std::string::npos);
  auto dep = db.Run(cluster_id, core::CommandType::kDeployJob, args);
  ASSERT_EQ(dep.state, core::ClusterCommandState::kSucceeded) << dep.error_message;
  auto stored = db.store().cluster_commands().Get(dep.id);
  ASSERT_OK(stored);
  EXPECT_EQ(DumpJson(stored->args).find(kValue), std::string::npos) << DumpJson(stored->args);

  // The job got it in its environment.
  std::string out = tmp.str() + "/node/work/" + inst.job_id + "/out";
  ASSERT_TRUE(WaitFor([&] { return ReadFile(out) == kValue; }, 15s)) << ReadFile(out) << "\n"
                                                                     << ReadFile(node.log_path());
  (void)db.Run(cluster_id, core::CommandType::kUndeployJob, {{"job_id", inst.job_id}});
}

}  // namespace
}  // namespace canopy::testing
