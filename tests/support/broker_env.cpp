#include "support/broker_env.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "providers/local/local_exec.h"
#include "providers/provider.h"
#include "providers/remote/remote_provider.h"

namespace canopy::testing {

using namespace std::chrono_literals;

BrokerEnv::BrokerEnv(std::vector<std::string> root_flags, std::vector<std::string> adapter_flags)
    : root_flags_(std::move(root_flags)), adapter_flags_(std::move(adapter_flags)) {}

BrokerEnv::~BrokerEnv() {
  // Daemons first (the root's engine stops calling the adapter), then every instance.
  root_.reset();
  adapter_.reset();
  net_.Cleanup();
}

void BrokerEnv::Start() {
  // As `canopy up` does it: the API on loopback, the tiers' listener on the test bridge's gateway
  // (port 0, kept across root restarts), which installed clusters dial.
  std::vector<std::string> flags = {"--heartbeat-interval", "1"};
  if (std::find(root_flags_.begin(), root_flags_.end(), "--cluster-url") == root_flags_.end()) {
    flags.insert(flags.end(), {"--cluster-listen", net_.gateway() + ":0"});
  }
  // Least exposure, as `canopy up` sets it: SSH only from this host, the cluster API only from
  // the test network.
  flags.insert(flags.end(),
               {"--ssh-source", net_.gateway() + "/32", "--cluster-api-source", net_.subnet()});
  flags.insert(flags.end(), root_flags_.begin(), root_flags_.end());
  root_ = std::make_unique<RootDaemon>((dir_.path() / "root").string(), flags);
  root_->Start();
  admin_ = root_->AdminToken();
  auto tok = root_->Call("POST", "/api/v1/provider-tokens", "{}", admin_);
  ASSERT_EQ(tok.status, 201) << tok.body;
  std::vector<std::string> aflags = {"--config", DumpJson(net_.Config())};
  aflags.insert(aflags.end(), adapter_flags_.begin(), adapter_flags_.end());
  adapter_ = std::make_unique<AdapterDaemon>("local", root_->url(),
                                             (dir_.path() / "adapter").string(), aflags);
  adapter_->Start(tok.json["token"].get<std::string>());
  // The adapter answers /healthz before its registration with the root is through; a credential
  // needs a live adapter of its type, so retry while the root still says there is none.
  ApiReply cred;
  WaitFor(
      [&] {
        cred = Call("POST", "/api/v1/credentials",
                    R"({"name":"local","provider":"local","secret":{"type":"local"}})");
        return cred.status != 409;
      },
      30s);
  ASSERT_EQ(cred.status, 201) << cred.body;
  credential_id_ = cred.json["id"].get<std::string>();
}

void BrokerEnv::RestartAdapter() { adapter_->Start(""); }

void BrokerEnv::RestartRoot() {
  if (root_->Running()) root_->KillHard();
  root_->Start();
  admin_ = root_->AdminToken();
}

ApiReply BrokerEnv::Call(const std::string& method, const std::string& path,
                         const std::string& body) {
  return root_->Call(method, path, body, admin_);
}

Json BrokerEnv::CreateCluster(const std::string& name, int workers, const std::string& image) {
  if (image.find("-minbase") != std::string::npos) ExpectBlankImageBuilt(image);
  Json body{{"name", name},      {"credential_id", credential_id_},
            {"region", "local"}, {"instance_type", "local.small"},
            {"image", image},    {"disk_gb", 1}};
  if (workers > 0) body["workers"] = {{"count", workers}};
  auto r = Call("POST", "/api/v1/clusters", DumpJson(body));
  EXPECT_EQ(r.status, 202) << r.body;
  return r.json;
}

Json BrokerEnv::WaitOperation(const std::string& op_id, std::chrono::seconds timeout) {
  Json op;
  WaitFor(
      [&] {
        auto r = Call("GET", "/api/v1/operations/" + op_id);
        if (r.status != 200) return false;
        op = r.json;
        std::string state = op.value("state", "");
        return state == "succeeded" || state == "failed";
      },
      timeout);
  return op;
}

bool BrokerEnv::WaitStep(const std::string& op_id, const std::string& step,
                         std::chrono::seconds timeout) {
  return WaitFor(
      [&] {
        auto r = Call("GET", "/api/v1/operations/" + op_id);
        return r.status == 200 && r.json.value("step", Json()).is_string() &&
               r.json["step"].get<std::string>() == step;
      },
      timeout);
}

Json BrokerEnv::Cluster(const std::string& id) {
  return Call("GET", "/api/v1/clusters/" + id).json;
}

Json BrokerEnv::Workers(const std::string& cluster_id) {
  return Call("GET", "/api/v1/clusters/" + cluster_id + "/workers").json;
}

std::unique_ptr<providers::Provider> BrokerEnv::Adapter() {
  auto id = ParseJsonObject(ReadFile((dir_.path() / "adapter" / "identity.json").string()));
  EXPECT_TRUE(id.has_value());
  if (!id) return nullptr;
  // The adapter serves the root only: the test calls it as the root.
  return std::make_unique<providers::remote::RemoteProvider>(
      adapter_->url(), SecretString((*id)["adapter_key"].get<std::string>()),
      providers::ProviderInfo{"local", "", {}, {}},
      root_->TlsAsRoot("adapter:" + (*id)["id"].get<std::string>()));
}

providers::CallContext BrokerEnv::LocalContext() {
  return providers::CallContext{providers::CredentialSecret(Json{{"type", "local"}}), "local"};
}

int BrokerEnv::InstancesOf(const std::string& cluster_id) {
  auto remote = Adapter();
  if (!remote) return -1;
  auto found = remote->FindInstancesByTag(LocalContext(), providers::kClusterTag, cluster_id);
  EXPECT_TRUE(found.has_value()) << found.error().message;
  return found ? static_cast<int>(found->size()) : -1;
}

std::vector<std::string> BrokerEnv::Namespaces() {
  std::vector<std::string> out;
  auto r = providers::local::RunCommand({"/usr/sbin/ip", "netns", "list"});
  if (!r) return out;
  std::istringstream in(r->out);
  std::string line;
  while (std::getline(in, line)) {
    auto name = line.substr(0, line.find(' '));
    if (name.rfind("canopy-", 0) == 0) out.push_back(name);
  }
  return out;
}

std::vector<std::string> BrokerEnv::PidsIn(const std::string& ns) {
  std::vector<std::string> out;
  auto r = providers::local::RunCommand({"/usr/sbin/ip", "netns", "pids", ns});
  if (!r) return out;
  std::istringstream in(r->out);
  std::string pid;
  while (in >> pid) {
    // Zombies (no reaper in some containers) are not running processes.
    std::string stat = ReadFile("/proc/" + pid + "/stat");
    auto close_paren = stat.rfind(')');
    if (stat.empty() || close_paren == std::string::npos || close_paren + 2 >= stat.size())
      continue;
    if (stat[close_paren + 2] == 'Z') continue;
    out.push_back(pid);
  }
  return out;
}

}  // namespace canopy::testing
