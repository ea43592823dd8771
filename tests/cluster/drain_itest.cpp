// drain_node with real processes: the root's API in process + `canopyd cluster` + two
// `canopyd node`s offering the capacity given by --cpu-millis / --memory-mib; a drain moves a
// running job to the other node (the old process ends, a new one runs there) and a restart of the
// drained node clears the flag. And the crash-test hook: `canopyd cluster --test-kill-after-command
// drain_node` exits with 137 after storing the outcome and before the ack; the restarted cluster
// acks the stored outcome.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <thread>

#include "net/error_mapping.h"
#include "store/cluster_store.h"
#include "store/store.h"
#include "support/daemons.h"
#include "support/in_process_root.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

// The root's API in process (no service scheduler: it would undeploy the jobs these tests place
// with raw commands) on a real HTTP server; the cluster and nodes are real processes.
class Root {
 public:
  explicit Root(const std::string& dir) {
    InProcessRootOptions o;
    o.core.tier.link_interval = 1s;
    in_ = std::make_unique<InProcessRoot>(dir, std::move(o));
  }
  const std::string& url() const { return in_->url(); }

  // A new edge cluster and its pairing token.
  std::pair<std::string, std::string> NewCluster(const std::string& name) {
    return in_->NewEdgeCluster(name);
  }
  core::ClusterCommand Run(const std::string& cluster_id, core::CommandType type,
                           const Json& args) {
    return in_->Run(cluster_id, type, args);
  }
  std::string NodeToken(const std::string& cluster_id) {
    auto tok = Run(cluster_id, core::CommandType::kCreateNodeToken, Json::object());
    EXPECT_EQ(tok.state, core::ClusterCommandState::kSucceeded);
    return tok.result.value("token", "");
  }
  // The nodes of the cluster as last reported on the link.
  std::vector<core::ClusterNodeInfo> Nodes(const std::string& cluster_id) {
    auto c = in_->store().clusters().Get(cluster_id);
    return c ? c->nodes : std::vector<core::ClusterNodeInfo>{};
  }
  control::ClusterCommands& commands() { return in_->core().commands(); }

 private:
  std::unique_ptr<InProcessRoot> in_;
};

bool Alive(int pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

bool Draining(store::ClusterStore& s, const std::string& node_id) {
  auto d = s.ListDrainingNodes();
  return d && std::find(d->begin(), d->end(), node_id) != d->end();
}

TEST(ClusterDrainDaemons, DrainMovesARunningJobToTheOtherNode) {
  TempDir tmp;
  Root root(tmp.str() + "/root");
  auto [cluster_id, token] = root.NewCluster("edge-drain");
  ClusterDaemon cluster(root.url(), tmp.str() + "/cluster",
                        {"--link-interval", "1", "--heartbeat-interval", "1"});
  cluster.Start(token);
  NodeDaemon big(cluster.url(), tmp.str() + "/big",
                 {"--cpu-millis", "2000", "--memory-mib", "1000"});
  big.Start(root.NodeToken(cluster_id));
  NodeDaemon small(cluster.url(), tmp.str() + "/small",
                   {"--cpu-millis", "1000", "--memory-mib", "600"});
  small.Start(root.NodeToken(cluster_id));
  ASSERT_TRUE(WaitFor([&] { return !big.NodeId().empty() && !small.NodeId().empty(); }, 15s));
  std::string big_id = big.NodeId(), small_id = small.NodeId();
  // The root sees the given capacity, not the host's.
  auto nodes_are = [&](bool big_draining) {
    auto nodes = root.Nodes(cluster_id);
    if (nodes.size() != 2) return false;
    for (const auto& n : nodes) {
      int64_t cpu = n.id == big_id ? 2000 : 1000, mem = n.id == big_id ? 1000 : 600;
      if (n.state != core::NodeState::kOnline || n.cpu_millis != cpu || n.memory_mib != mem ||
          n.memory_available_mib > mem || n.draining != (big_draining && n.id == big_id)) {
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(WaitFor([&] { return nodes_are(false); }, 15s)) << ReadFile(cluster.log_path());

  Json args = {{"job_id", "mover"},
               {"service_id", "svc-1"},
               {"command", {"/bin/sh", "-c", "exec sleep 1000"}},
               {"cpu_millis", 100},
               {"memory_mib", 200}};
  auto dep = root.Run(cluster_id, core::CommandType::kDeployJob, args);
  ASSERT_EQ(dep.state, core::ClusterCommandState::kSucceeded) << dep.error_message;
  ASSERT_EQ(dep.result["node_id"], big_id);
  auto cstore = store::OpenClusterStore(tmp.str() + "/cluster/cluster.db");
  ASSERT_OK(cstore);
  store::ClusterStore& cs = **cstore;
  auto running_on = [&](const std::string& node_id, int* pid) {
    auto j = cs.GetJob("mover");
    if (!j || j->node_id != node_id || j->status.value("state", "") != "running") return false;
    *pid = j->status.value("pid", 0);
    return *pid > 0;
  };
  int pid1 = 0;
  ASSERT_TRUE(WaitFor([&] { return running_on(big_id, &pid1); }, 15s)) << ReadFile(big.log_path());

  auto drain = root.Run(cluster_id, core::CommandType::kDrainNode, {{"node_id", big_id}});
  ASSERT_EQ(drain.state, core::ClusterCommandState::kSucceeded) << drain.error_message;
  EXPECT_EQ(drain.result["node_id"], big_id);
  ASSERT_EQ(drain.result["moved"].size(), 1u) << drain.result.dump();
  EXPECT_EQ(drain.result["moved"][0]["job_id"], "mover");
  EXPECT_EQ(drain.result["moved"][0]["service_id"], "svc-1");
  EXPECT_EQ(drain.result["moved"][0]["node_id"], small_id);
  EXPECT_TRUE(drain.result["moved"][0]["address"].is_string());
  EXPECT_TRUE(drain.result["returned"].empty());
  EXPECT_TRUE(Draining(cs, big_id));
  EXPECT_TRUE(WaitFor([&] { return nodes_are(true); }, 10s));

  // The new node runs it, the old one stops it.
  int pid2 = 0;
  ASSERT_TRUE(WaitFor([&] { return running_on(small_id, &pid2); }, 15s))
      << ReadFile(small.log_path());
  EXPECT_NE(pid2, pid1);
  EXPECT_TRUE(WaitFor([&] { return !Alive(pid1); }, 15s)) << ReadFile(big.log_path());
  EXPECT_TRUE(Alive(pid2));

  // Nothing is placed on the drained node; a restart of it (re-registration) clears the flag.
  Json two = args;
  two["job_id"] = "second";
  two["memory_mib"] = 500;
  auto no = root.Run(cluster_id, core::CommandType::kDeployJob, two);
  EXPECT_EQ(no.state, core::ClusterCommandState::kFailed);
  EXPECT_EQ(no.error_code, "resource_exhausted");
  big.Stop();
  big.Start("");
  EXPECT_TRUE(WaitFor([&] { return !Draining(cs, big_id); }, 15s)) << ReadFile(big.log_path());
  EXPECT_TRUE(WaitFor([&] { return nodes_are(false); }, 15s));
  auto yes = root.Run(cluster_id, core::CommandType::kDeployJob, two);
  EXPECT_EQ(yes.state, core::ClusterCommandState::kSucceeded) << yes.error_message;
  EXPECT_EQ(yes.result["node_id"], big_id);

  root.Run(cluster_id, core::CommandType::kUndeployJob, {{"job_id", "mover"}});
  root.Run(cluster_id, core::CommandType::kUndeployJob, {{"job_id", "second"}});
  EXPECT_TRUE(WaitFor([&] { return !Alive(pid2); }, 15s));
  big.Stop();
  small.Stop();
  cluster.Stop();
  for (int p : {pid1, pid2}) {
    if (Alive(p)) ::kill(p, SIGKILL);
  }
}

TEST(ClusterDrainDaemons, TestKillAfterCommandExitsBeforeTheAckAndTheRestartAcksTheStoredOutcome) {
  TempDir tmp;
  Root root(tmp.str() + "/root");
  auto [cluster_id, token] = root.NewCluster("edge-kill");
  std::string data = tmp.str() + "/cluster", log = tmp.str() + "/cluster.log";
  uint16_t port = 0;  // the first start binds port 0; the restart keeps the port (nodes know it)
  std::string url;
  auto start = [&](const std::string& tok) {
    std::vector<std::string> argv = {CanopydPath(),
                                     "cluster",
                                     "--root",
                                     root.url(),
                                     "--listen",
                                     "127.0.0.1:" + std::to_string(port),
                                     "--data-dir",
                                     data,
                                     "--link-interval",
                                     "1",
                                     "--test-kill-after-command",
                                     "drain_node"};
    if (!tok.empty()) argv.insert(argv.end(), {"--token", tok});
    std::filesystem::remove(data + "/cluster.url");
    auto p = std::make_unique<Process>(argv, std::vector<std::string>{}, log);
    port = WaitForUrlFilePort(
        data + "/cluster.url", [&] { return p->Running(); }, 20s);
    EXPECT_NE(port, 0) << ReadFile(log);
    url = "http://127.0.0.1:" + std::to_string(port);
    EXPECT_TRUE(WaitFor([&] { return CallApi(url, "GET", "/healthz").status == 200; }, 20s))
        << ReadFile(log);
    return p;
  };
  auto proc = start(token);
  // Two nodes registered by hand (heartbeat interval 5 s: online for 15 s).
  std::vector<std::pair<std::string, std::string>> nodes;
  for (int mem : {4000, 2000}) {
    auto reg = CallApi(url, "POST", "/cluster/v1/nodes/register",
                       DumpJson({{"token", root.NodeToken(cluster_id)},
                                 {"hostname", "h"},
                                 {"resources", {{"cpu_millis", 2000}, {"memory_mib", mem}}}}));
    ASSERT_EQ(reg.status, 201) << reg.body;
    nodes.emplace_back(reg.json["node_id"].get<std::string>(),
                       reg.json["node_key"].get<std::string>());
  }
  // Another command type does not trigger it.
  auto dep = root.Run(cluster_id, core::CommandType::kDeployJob,
                      {{"job_id", "j1"},
                       {"service_id", "svc-1"},
                       {"command", {"/bin/true"}},
                       {"cpu_millis", 100},
                       {"memory_mib", 100}});
  ASSERT_EQ(dep.state, core::ClusterCommandState::kSucceeded) << dep.error_message;
  ASSERT_EQ(dep.result["node_id"], nodes[0].first);

  auto cmd = root.commands().Enqueue(cluster_id, core::CommandType::kDrainNode,
                                     {{"node_id", nodes[0].first}});
  ASSERT_OK(cmd);
  auto exited = std::async(std::launch::async, [&] { return proc->Wait(); });
  if (exited.wait_for(20s) != std::future_status::ready) {
    proc->Kill(SIGKILL);
    exited.wait();
    FAIL() << "the cluster did not exit; log:\n" << ReadFile(log);
  }
  EXPECT_EQ(exited.get(), 137);
  EXPECT_NE(ReadFile(log).find("Test kill after command"), std::string::npos);
  // The effect and the outcome are stored; the root has not heard of it.
  EXPECT_EQ(root.commands().Get(cmd->id)->state, core::ClusterCommandState::kPending);
  {
    auto cs = store::OpenClusterStore(data + "/cluster.db");
    ASSERT_OK(cs);
    auto j = (*cs)->GetJob("j1");
    ASSERT_OK(j);
    EXPECT_EQ(j->node_id, nodes[1].first);
    EXPECT_TRUE(Draining(**cs, nodes[0].first));
    auto o = (*cs)->GetOutcome(cmd->id);
    ASSERT_OK(o);
    EXPECT_TRUE(o->ok);
    EXPECT_FALSE(o->acknowledged);
  }

  // Restarted (same flag): the re-delivered command is answered from the stored outcome, not run
  // again, so the process stays up.
  proc = start("");
  auto done = root.commands().Wait(cmd->id, 15s);
  ASSERT_OK(done);
  ASSERT_EQ(done->state, core::ClusterCommandState::kSucceeded) << done->error_message;
  ASSERT_EQ(done->result["moved"].size(), 1u) << done->result.dump();
  EXPECT_EQ(done->result["moved"][0]["job_id"], "j1");
  EXPECT_EQ(done->result["moved"][0]["node_id"], nodes[1].first);
  EXPECT_TRUE(proc->Running());
  proc->Kill(SIGTERM);
  proc->Wait();
}

}  // namespace
}  // namespace canopy::testing
