// Jobs end to end with real processes: root + `canopyd cluster` + `canopyd node`; deploy_job over
// the link runs the process on the node, its status reaches the cluster's store (what the link
// report is built from), undeploy_job ends it, and a job too big fails with no_worker_capacity.
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "store/cluster_store.h"
#include "store/store.h"
#include "support/daemons.h"
#include "support/in_process_root.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

// The root's store and master key opened in this process, with its command queue.
struct Broker {
  explicit Broker(const std::string& root_data_dir) : db(root_data_dir) {}
  core::ClusterCommand Run(const std::string& cluster_id, core::CommandType type,
                           const Json& args) {
    return db.Run(cluster_id, type, args);
  }
  RootDb db;
};

bool Alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  // A zombie still answers kill(0): look at its state.
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

TEST(ClusterJobs, DeployRunsTheProcessOnTheNodeAndUndeployEndsIt) {
  TempDir tmp;
  RootDaemon root(tmp.str() + "/root");
  root.Start();
  std::string admin = root.AdminToken();
  auto created = root.Call("POST", "/api/v1/cluster-tokens", R"({"name":"edge-jobs"})", admin);
  ASSERT_EQ(created.status, 201) << created.body;
  std::string cluster_id = created.json["cluster_id"];
  ClusterDaemon cluster(root.url(), tmp.str() + "/cluster",
                        {"--link-interval", "1", "--heartbeat-interval", "1"});
  cluster.Start(created.json["token"].get<std::string>());
  Broker broker(root.data_dir());
  auto tok = broker.Run(cluster_id, core::CommandType::kCreateNodeToken, Json::object());
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
  std::string node_id = node.NodeId();

  Json args = {{"job_id", "sleeper"},
               {"service_id", "svc-1"},
               {"command", {"/bin/sh", "-c", "exec sleep 1000"}},
               {"cpu_millis", 100},
               {"memory_mib", 16}};
  auto dep = broker.Run(cluster_id, core::CommandType::kDeployJob, args);
  ASSERT_EQ(dep.state, core::ClusterCommandState::kSucceeded)
      << dep.error_code << " " << dep.error_message;
  EXPECT_EQ(dep.result["job_id"], "sleeper");
  EXPECT_EQ(dep.result["node_id"], node_id);
  EXPECT_TRUE(dep.result["address"].is_string());

  // The node runs it and reports it running; the cluster's store (the report's source) has it.
  auto cstore = store::OpenClusterStore(tmp.str() + "/cluster/cluster.db");
  ASSERT_OK(cstore);
  int pid = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto j = (*cstore)->GetJob("sleeper");
        if (!j || j->status.value("state", "") != "running") return false;
        pid = j->status.value("pid", 0);
        return pid > 0;
      },
      15s))
      << ReadFile(node.log_path());
  EXPECT_TRUE(Alive(pid));
  EXPECT_NE(ReadFile("/proc/" + std::to_string(pid) + "/cmdline").find("sleep"), std::string::npos);

  // Deploying again answers the same placement.
  auto again = broker.Run(cluster_id, core::CommandType::kDeployJob, args);
  ASSERT_EQ(again.state, core::ClusterCommandState::kSucceeded);
  EXPECT_EQ(again.result["node_id"], node_id);

  // Too big for any node.
  Json big = args;
  big["job_id"] = "huge";
  big["memory_mib"] = int64_t{1} << 38;
  auto no = broker.Run(cluster_id, core::CommandType::kDeployJob, big);
  EXPECT_EQ(no.state, core::ClusterCommandState::kFailed);
  EXPECT_EQ(no.error_code, "resource_exhausted");
  EXPECT_EQ(no.error_reason, "no_worker_capacity")
      << no.error_message;  // carried by the ack, kept by the root

  auto un = broker.Run(cluster_id, core::CommandType::kUndeployJob, {{"job_id", "sleeper"}});
  ASSERT_EQ(un.state, core::ClusterCommandState::kSucceeded);
  EXPECT_EQ(un.result["removed"], true);
  EXPECT_TRUE(WaitFor([&] { return !Alive(pid); }, 15s)) << ReadFile(node.log_path());
  EXPECT_FALSE((*cstore)->GetJob("sleeper"));
  auto un2 = broker.Run(cluster_id, core::CommandType::kUndeployJob, {{"job_id", "sleeper"}});
  EXPECT_EQ(un2.state, core::ClusterCommandState::kSucceeded);

  // A node killed hard takes its jobs with it (no orphan left to be duplicated at its restart).
  Json second = args;
  second["job_id"] = "sleeper2";
  auto dep2 = broker.Run(cluster_id, core::CommandType::kDeployJob, second);
  ASSERT_EQ(dep2.state, core::ClusterCommandState::kSucceeded) << dep2.error_message;
  int pid2 = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto j = (*cstore)->GetJob("sleeper2");
        pid2 = j ? j->status.value("pid", 0) : 0;
        return j && j->status.value("state", "") == "running" && pid2 > 0;
      },
      15s))
      << ReadFile(node.log_path());
  EXPECT_TRUE(Alive(pid2));
  node.KillHard();
  EXPECT_TRUE(WaitFor([&] { return !Alive(pid2); }, 5s));

  cluster.Stop();
  for (int p : {pid, pid2}) {
    if (Alive(p)) ::kill(p, SIGKILL);
  }
}

}  // namespace
}  // namespace canopy::testing
