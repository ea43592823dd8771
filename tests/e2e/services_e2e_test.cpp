// Services end to end on the local provider (issue 5 acceptance): a service deployed on a cloud
// cluster answers on its worker's address, the worker's firewall opens exactly the ports of the
// services on it (checked with real listeners inside the other namespaces), ports shared by two
// services or two replicas close only with their last user, stopping a worker moves its replica
// first, a cluster daemon killed right after a deploy converges, and a service too big for every
// node stays pending with no_worker_capacity until a bigger worker joins. Root only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "support/broker_env.h"

namespace canopy::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kPort = 18080;

// An HTTP GET to addr:port answered with "HTTP/" within `timeout` (a firewall drop times out).
bool Answers(const std::string& addr, int port, std::chrono::milliseconds timeout = 800ms) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) {
    ::close(fd);
    return false;
  }
  bool ok = false;
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  pollfd p{fd, POLLOUT, 0};
  if ((rc == 0 || errno == EINPROGRESS) && ::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0) {
      std::string req = "GET / HTTP/1.0\r\n\r\n";
      (void)!::write(fd, req.data(), req.size());
      p = {fd, POLLIN, 0};
      char buf[16] = {};
      if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1 && ::read(fd, buf, 5) == 5) {
        ok = std::string(buf, 5) == "HTTP/";
      }
    }
  }
  ::close(fd);
  return ok;
}

// Runs on the workers' blank image (no python3 there): the perl hello server.
Json HttpService(const std::string& name, int64_t memory, int64_t replicas = 1) {
  return {{"name", name},
          {"command", HelloServiceArgv(kPort)},
          {"ports", {{{"port", kPort}, {"protocol", "tcp"}}}},
          {"cpu_millis", 100},
          {"memory_mib", memory},
          {"replicas", replicas}};
}

class ServicesE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
    env_ = std::make_unique<BrokerEnv>();
    env_->Start();
  }
  void TearDown() override {
    for (auto& l : listeners_) {
      l->Kill(SIGKILL);
      l->Wait();
    }
    listeners_.clear();
    env_.reset();
  }

  // A cluster of `workers` local.small workers (1 vCPU, 512 MiB each), ACTIVE.
  std::string Cluster(int workers) {
    auto created = env_->CreateCluster("apps", workers);
    auto op = env_->WaitOperation(created["operation_id"], 180s);
    EXPECT_EQ(op.value("state", ""), "succeeded") << op.dump() << ReadFile(env_->root().log_path());
    return created["cluster"]["id"];
  }
  std::string Create(const Json& body) {
    auto r = env_->Call("POST", "/api/v1/services", DumpJson(body));
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json.value("id", "");
  }
  Json Service(const std::string& id) { return env_->Call("GET", "/api/v1/services/" + id).json; }
  void Post(const std::string& id, const std::string& action, const Json& body = Json::object()) {
    auto r = env_->Call("POST", "/api/v1/services/" + id + "/" + action, DumpJson(body));
    EXPECT_EQ(r.status, 202) << action << ": " << r.body;
  }
  // Waits until every instance is running (and there are `n`); returns the service.
  Json WaitRunning(const std::string& id, size_t n, std::chrono::seconds timeout = 60s) {
    Json s;
    bool ok = WaitFor(
        [&] {
          s = Service(id);
          if (s.value("instances", Json::array()).size() != n) return false;
          for (const auto& i : s["instances"]) {
            if (i.value("state", "") != "running" || !i["address"].is_string()) return false;
          }
          return true;
        },
        timeout);
    EXPECT_TRUE(ok) << s.dump() << "\n" << ReadFile(env_->root().log_path());
    return s;
  }
  // A listener on kPort inside worker `w`'s namespace: reachable only if its firewall allows it.
  // It runs on this host's filesystem (the host's python3), in the worker's network namespace.
  void Listen(const Json& w) {
    listeners_.push_back(std::make_unique<Process>(
        std::vector<std::string>{"/usr/sbin/ip", "netns", "exec",
                                 "canopy-" + w.value("provider_id", ""), "/usr/bin/python3", "-m",
                                 "http.server", std::to_string(kPort), "--bind", "0.0.0.0"},
        std::vector<std::string>{}, "/dev/null"));
  }
  bool EventuallyAnswers(const std::string& addr, bool want, std::chrono::seconds timeout = 20s) {
    return WaitFor([&] { return Answers(addr, kPort) == want; }, timeout);
  }
  Json WorkerOnNode(const std::string& cluster, const std::string& node) {
    for (const auto& w : env_->Workers(cluster)) {
      if (w.value("node_id", Json("")).is_string() && w.value("node_id", "") == node) return w;
    }
    return Json();
  }
  Json OtherWorker(const std::string& cluster, const std::string& wid) {
    for (const auto& w : env_->Workers(cluster)) {
      if (w.value("id", "") != wid) return w;
    }
    return Json();
  }

  std::unique_ptr<BrokerEnv> env_;
  std::vector<std::unique_ptr<Process>> listeners_;
};

TEST_F(ServicesE2E, PortsOpenWhereServicesRunAndCloseWithTheirLastUser) {
  const std::string cluster = Cluster(2);
  // A: 300 MiB, on node X. Its port answers on X; Y's listener on the same port is dropped.
  std::string a = Create(HttpService("web", 300));
  Post(a, "deploy");
  Json sa = WaitRunning(a, 1);
  ASSERT_EQ(sa["instances"].size(), 1u);
  const std::string x_addr = sa["instances"][0]["address"];
  Json x = WorkerOnNode(cluster, sa["instances"][0]["node_id"]);
  ASSERT_TRUE(x.is_object()) << env_->Workers(cluster).dump();
  EXPECT_EQ(sa["instances"][0]["worker_id"], x["id"]);
  Json y = OtherWorker(cluster, x["id"]);
  const std::string y_addr = y["address"];
  EXPECT_TRUE(EventuallyAnswers(x_addr, true)) << "service A not reachable on " << x_addr;
  Listen(y);
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(Answers(y_addr, kPort, 1500ms)) << "port open on the worker without the service";

  // B: the same port, two replicas of 100 MiB: both land on Y (most free memory). Y opens.
  Json b_body = HttpService("sidecar", 100, 2);
  b_body["command"] = {"/bin/sleep", "100000"};
  std::string b = Create(b_body);
  Post(b, "deploy");
  Json sb = WaitRunning(b, 2);
  for (const auto& i : sb["instances"]) EXPECT_EQ(i["address"], y_addr) << sb.dump();
  EXPECT_TRUE(EventuallyAnswers(y_addr, true)) << "B's firewall did not open " << y_addr;

  // One replica of B left on Y: still open. None: closed on Y, while A keeps X open.
  Post(b, "scale", {{"replicas", 1}});
  WaitRunning(b, 1);
  std::this_thread::sleep_for(3s);
  EXPECT_TRUE(Answers(y_addr, kPort, 1500ms)) << "closed while a replica still uses the port";
  Post(b, "undeploy");
  EXPECT_TRUE(WaitFor([&] { return Service(b)["instances"].empty(); }, 30s)) << Service(b).dump();
  EXPECT_TRUE(EventuallyAnswers(y_addr, false, 10s)) << "port still open on Y after B left";
  EXPECT_TRUE(Answers(x_addr, kPort)) << "A's port closed by B's undeploy";

  // Undeploy A: with a listener of ours on X, the port is dropped within a few seconds.
  Post(a, "undeploy");
  EXPECT_TRUE(WaitFor([&] { return Service(a)["instances"].empty(); }, 30s)) << Service(a).dump();
  Listen(x);
  EXPECT_TRUE(EventuallyAnswers(x_addr, false, 10s)) << "port still open on X after undeploy";
  EXPECT_EQ(Service(a)["state"], "undeployed");
  EXPECT_EQ(env_->Call("DELETE", "/api/v1/services/" + a).status, 204);
}

TEST_F(ServicesE2E, StoppingAWorkerMovesItsReplicaBeforeTheInstanceStops) {
  const std::string cluster = Cluster(2);
  std::string a = Create(HttpService("web", 300));
  Post(a, "deploy");
  Json sa = WaitRunning(a, 1);
  ASSERT_EQ(sa["instances"].size(), 1u);
  Json x = WorkerOnNode(cluster, sa["instances"][0]["node_id"]);
  Json y = OtherWorker(cluster, x["id"]);
  const std::string y_addr = y["address"];
  ASSERT_TRUE(EventuallyAnswers(sa["instances"][0]["address"], true));

  auto r = env_->Call(
      "POST", "/api/v1/clusters/" + cluster + "/workers/" + x["id"].get<std::string>() + "/stop");
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string op_id = r.json["operation_id"];
  const std::string x_ns = "canopy-" + x.value("provider_id", "");
  auto op = env_->WaitOperation(op_id, 120s);
  EXPECT_TRUE(BrokerEnv::PidsIn(x_ns).empty()) << "the stopped worker still runs processes";
  // The drain step finished only after the root saw the replica running on another node AND
  // answering a TCP connect there (process listening, firewall open); only then did the
  // shutdown step stop the instance. The root's log keeps that order.
  std::string log = ReadFile(env_->root().log_path());
  auto drained = log.find("Worker drained worker=" + x["id"].get<std::string>());
  auto stopped = log.find("Worker stopped worker=" + x["id"].get<std::string>());
  ASSERT_NE(drained, std::string::npos) << log;
  ASSERT_NE(stopped, std::string::npos) << log;
  EXPECT_LT(drained, stopped);
  EXPECT_NE(log.find("1 job(s) running elsewhere", drained), std::string::npos)
      << log.substr(drained, 300);
  EXPECT_TRUE(Answers(y_addr, kPort)) << "the replica does not answer on the other worker";
  EXPECT_EQ(op.value("state", ""), "succeeded") << op.dump();
  Json moved = Service(a);
  EXPECT_EQ(moved["instances"][0]["address"], y_addr) << moved.dump();
  EXPECT_EQ(moved["instances"][0]["worker_id"], y["id"]) << moved.dump();
  EXPECT_EQ(moved["state"], "running");
}

// The cluster daemon dies (like kill -9) right after it placed the job and stored the outcome,
// before the root heard of it, i.e. before any firewall was attached. Its supervisor restarts it;
// the re-delivered command is answered from the stored outcome, the job runs, and the firewall
// sync opens the port on that worker only.
TEST(ServicesCrashE2E, ClusterDaemonKilledBetweenDeployAndFirewallAttach) {
  if (!LocalTestNet::Available()) GTEST_SKIP() << "the local provider needs root";
  BrokerEnv env({"--test-cluster-kill-after-command", "deploy_job"});
  env.Start();
  auto created = env.CreateCluster("apps", 2);
  auto op = env.WaitOperation(created["operation_id"], 180s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump();
  const std::string cluster = created["cluster"]["id"];
  auto r = env.Call("POST", "/api/v1/services", DumpJson(HttpService("web", 300)));
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.json["id"];
  ASSERT_EQ(env.Call("POST", "/api/v1/services/" + id + "/deploy", "{}").status, 202);
  Json s;
  bool running = WaitFor(
      [&] {
        s = env.Call("GET", "/api/v1/services/" + id).json;
        return s.value("state", "") == "running" && s["instances"][0]["address"].is_string();
      },
      120s);
  ASSERT_TRUE(running) << s.dump() << "\n" << ReadFile(env.root().log_path());
  EXPECT_NE(ReadFile(env.root().log_path()).find("Instance placed"), std::string::npos);
  // The cluster did die at that point (its log on the instance's disk says so).
  bool killed = false;
  for (const auto& f : std::filesystem::recursive_directory_iterator(
           env.net().state_dir(), std::filesystem::directory_options::skip_permission_denied)) {
    if (f.is_regular_file() && f.path().filename() == "cluster.log" &&
        ReadFile(f.path().string()).find("Test kill after command") != std::string::npos) {
      killed = true;
    }
  }
  EXPECT_TRUE(killed) << "the cluster daemon was not killed after deploy_job";
  const std::string addr = s["instances"][0]["address"];
  EXPECT_TRUE(WaitFor([&] { return Answers(addr, kPort); }, 30s))
      << "port not opened after the restart";
  // Exactly one instance of the job, and the other worker's port stays closed.
  Json other;
  for (const auto& w : env.Workers(cluster)) {
    if (w.value("address", "") != addr) other = w;
  }
  ASSERT_TRUE(other.is_object());
  Process listener(
      {"/usr/sbin/ip", "netns", "exec", "canopy-" + other.value("provider_id", ""),
       "/usr/bin/python3", "-m", "http.server", std::to_string(kPort), "--bind", "0.0.0.0"},
      {}, "/dev/null");
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(Answers(other["address"], kPort, 1500ms))
      << "port open on the worker without the job";
  listener.Kill(SIGKILL);
  listener.Wait();
}

TEST_F(ServicesE2E, TooBigForEveryNodeIsPendingUntilABiggerWorkerJoins) {
  const std::string cluster = Cluster(1);
  std::string big = Create(HttpService("big", 1500));
  Post(big, "deploy");
  Json s;
  ASSERT_TRUE(WaitFor(
      [&] {
        s = Service(big);
        return s.value("state", "") == "pending" && s["reason"].is_string();
      },
      30s))
      << s.dump();
  EXPECT_EQ(s["reason"].get<std::string>().rfind("no_worker_capacity", 0), 0u) << s.dump();
  EXPECT_EQ(s["instances"][0]["state"], "pending");

  Json more{
      {"count", 1}, {"instance_type", "local.medium"}, {"image", kBlankTestImage}, {"disk_gb", 1}};
  auto add = env_->Call("POST", "/api/v1/clusters/" + cluster + "/workers", DumpJson(more));
  ASSERT_EQ(add.status, 202) << add.body;
  auto op = env_->WaitOperation(add.json["operation_id"], 180s);
  ASSERT_EQ(op.value("state", ""), "succeeded") << op.dump();
  Json running = WaitRunning(big, 1, 60s);
  Json w = WorkerOnNode(cluster, running["instances"][0]["node_id"]);
  EXPECT_EQ(w.value("instance_type", ""), "local.medium") << w.dump();
  EXPECT_TRUE(EventuallyAnswers(running["instances"][0]["address"], true));
}

}  // namespace
}  // namespace canopy::testing
