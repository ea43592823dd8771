#include "support/broker_harness.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "common/ids.h"
#include "control/operation_kinds.h"

namespace canopy::testing {

using namespace std::chrono_literals;

namespace {

// The value after `flag` in argv ("" when absent).
std::string ArgAfter(const std::vector<std::string>& argv, const std::string& flag) {
  auto it = std::find(argv.begin(), argv.end(), flag);
  return it != argv.end() && it + 1 != argv.end() ? *(it + 1) : "";
}

std::string EnvOf(const install::ComponentSpec& spec, const std::string& name) {
  for (const auto& [k, v] : spec.env) {
    if (k == name) return v;
  }
  return "";
}

// The token the broker delivers: in the 0600 file given by --token-file (the spec's config),
// else in the environment.
std::string TokenOf(const install::ComponentSpec& spec, const std::string& env_name) {
  if (ArgAfter(spec.argv, "--token-file") == "{config}") return spec.config.Reveal();
  return EnvOf(spec, env_name);
}

}  // namespace

Result<std::shared_ptr<providers::Provider>> SharedProviderOpener::ForAdapter(
    const std::string& type, const std::string& /*adapter_id*/) {
  if (type != type_) {
    return Error::FailedPrecondition("no live provider adapter of type '" + type + "'")
        .WithReason(std::string(control::kReasonNoLiveAdapter));
  }
  return p_;
}

// ---- FakeClusters ----

struct FakeClusters::Cluster {
  std::string id;
  std::string key;
  std::map<std::string, std::string> nodes;  // node id -> address
  std::vector<Json> acks;
  std::atomic<bool> stop{false};
  std::thread thread;
};

FakeClusters::FakeClusters(control::ClusterTier& tier) : tier_(tier) {}

FakeClusters::~FakeClusters() {
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [url, c] : by_url_) c->stop = true;
  }
  // Joined without the lock: a link loop may be waiting for it.
  for (auto& [url, c] : by_url_) {
    if (c->thread.joinable()) c->thread.join();
  }
}

Status FakeClusters::StartCluster(const std::string& host, const install::ComponentSpec& spec) {
  std::string url = ArgAfter(spec.argv, "--advertise-url");
  if (url.empty()) return Error::InvalidArgument("no --advertise-url for the cluster at " + host);
  std::lock_guard<std::mutex> l(mu_);
  if (by_url_.count(url)) return OkStatus();  // already installed and running
  CANOPY_ASSIGN_OR_RETURN(auto paired,
                          tier_.Pair(TokenOf(spec, "CANOPY_CLUSTER_TOKEN"), url, "test"));
  auto c = std::make_unique<Cluster>();
  c->id = paired.cluster_id;
  c->key = paired.cluster_key;
  Cluster* raw = c.get();
  by_url_[url] = std::move(c);
  raw->thread = std::thread([this, raw] { LinkLoop(raw); });
  return OkStatus();
}

Status FakeClusters::StartNode(const std::string& host, const install::ComponentSpec& spec) {
  std::string url = ArgAfter(spec.argv, "--cluster");
  std::lock_guard<std::mutex> l(mu_);
  auto it = by_url_.find(url);
  if (it == by_url_.end()) return Error::Unavailable("no cluster answers at " + url);
  if (TokenOf(spec, "CANOPY_NODE_TOKEN").rfind("cnt_", 0) != 0) {
    return Error::Unauthenticated("the node has no node token");
  }
  it->second->nodes["nod-" + Sha256Hex(host).substr(0, 12)] = host;
  return OkStatus();
}

int FakeClusters::node_count() {
  std::lock_guard<std::mutex> l(mu_);
  int n = 0;
  for (auto& [url, c] : by_url_) n += static_cast<int>(c->nodes.size());
  return n;
}

void FakeClusters::LinkLoop(Cluster* c) {
  while (!c->stop) {
    auto cluster = tier_.Authenticate(c->id, c->key);
    if (!cluster) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    control::LinkReport report;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [id, addr] : c->nodes) {
        core::ClusterNodeInfo n;
        n.id = id;
        n.address = addr;
        n.cpu_millis = 1000;
        n.memory_mib = 1024;
        n.memory_available_mib = 1024;
        report.nodes.push_back(n);
      }
      report.acks = Json(c->acks);
      c->acks.clear();
    }
    std::vector<core::ClusterCommand> commands;
    tier_.Link(*cluster, std::move(report), 0s, [&](Result<control::LinkReply> r) {
      if (r) commands = std::move(r->commands);
    });
    for (const auto& cmd : commands) {
      Json ack = {{"id", cmd.id}, {"ok", true}};
      auto type = core::ParseCommandType(cmd.type);
      if (type == core::CommandType::kPing) {
        ack["result"] = {{"pong", true}, {"cluster_id", c->id}};
      } else if (type == core::CommandType::kCreateNodeToken) {
        ack["result"] = {{"token", "cnt_" + RandomToken(16)}};
      } else if (type == core::CommandType::kDrainNode) {
        ack["result"] = {{"moved", Json::array()}, {"returned", Json::array()}};
      } else {
        ack["ok"] = false;
        ack["error"] = {{"code", "invalid_argument"},
                        {"message", "the fake cluster does not run jobs"}};
      }
      std::lock_guard<std::mutex> l(mu_);
      c->acks.push_back(std::move(ack));
    }
    std::this_thread::sleep_for(20ms);
  }
}

// ---- FakeInstaller ----

Result<install::InstallReport> FakeInstaller::Install(const install::SshTarget& target,
                                                      const install::ComponentSpec& spec) const {
  {
    std::lock_guard<std::mutex> l(mu_);
    ++installs_[spec.name];
    if (!spec.preflight.empty() && fail_preflight_.erase(spec.name) > 0) {
      return Error::FailedPrecondition("cannot reach " + ArgAfter(spec.preflight, "--url") +
                                       " from this machine: Connection refused")
          .WithReason("install_preflight");
    }
  }
  if (target.host_key_sha256.empty()) return Error::FailedPrecondition("no pinned host key");
  Status st = spec.name == "cluster" ? clusters_.StartCluster(target.host, spec)
              : spec.name == "node"  ? clusters_.StartNode(target.host, spec)
                                     : Status(Error::InvalidArgument("unknown component"));
  if (!st) return st.error();
  return install::InstallReport{};
}

void FakeInstaller::FailPreflightOf(const std::string& name) {
  std::lock_guard<std::mutex> l(mu_);
  fail_preflight_.insert(name);
}

int FakeInstaller::installs(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = installs_.find(name);
  return it == installs_.end() ? 0 : it->second;
}

// ---- BrokerHarness ----

BrokerHarness::BrokerHarness(std::function<void(broker::BrokerOptions&)> tweak)
    : cloud_(std::make_shared<providers::fake::FakeProvider>()) {
  // Only the broker's own tag lookups may prevent duplicates.
  cloud_->SetIdempotentCreate(false);
  InProcessRootOptions o;
  o.serve = false;
  o.opener = std::make_unique<SharedProviderOpener>("fake", cloud_);
  o.engine.workers = 2;
  o.engine.lease = 600ms;
  o.engine.poll_interval = 50ms;
  o.engine.backoff_base = 50ms;
  o.engine.backoff_max = 500ms;
  o.engine.after_step_hook = [this](const core::Operation& op, const std::string& step) {
    std::lock_guard<std::mutex> l(crash_mu_);
    if (crashed_ || crash_kind_.empty() || op.kind != crash_kind_ || step != crash_step_)
      return false;
    if (!crash_action_.empty() && op.data.value("action", "") != crash_action_) return false;
    crashed_ = true;
    return true;
  };
  root_ = std::make_unique<InProcessRoot>(dir_.str(), std::move(o));
  fake_clusters_ = std::make_unique<FakeClusters>(root_->core().tier());
  installer_ = std::make_unique<FakeInstaller>(*fake_clusters_);
  broker::BrokerDeps deps;
  deps.clouds = &root_->core().clouds();
  deps.commands = &root_->core().commands();
  deps.tier = &root_->core().tier();
  deps.queue = &root_->engine();
  deps.ids = root_->core().ids();
  deps.installer = installer_.get();
  deps.tcp = [](const std::string&, int) { return true; };
  broker::BrokerOptions bo;
  bo.cluster_root_url = "http://root.test:8080";
  bo.canopyd_binary = "/bin/true";
  bo.pair_timeout = 20s;
  bo.register_timeout = 20s;
  bo.drain_timeout = 10s;
  if (tweak) tweak(bo);
  EXPECT_TRUE(broker::RegisterBrokerKinds(root_->engine(), deps, bo).has_value());
  root_->engine().Start();
  auto cred = root_->core().credentials().Add(
      "fake", "fake", providers::CredentialSecret(Json{{"api_key", "k"}}), "usr-test");
  EXPECT_TRUE(cred.has_value()) << (cred ? "" : cred.error().ToString());
  if (cred) credential_id_ = cred->id;
}

BrokerHarness::~BrokerHarness() {
  root_->engine().Stop();
  fake_clusters_.reset();
  root_.reset();
}

void BrokerHarness::CrashOnce(const std::string& kind, const std::string& step,
                              const std::string& action) {
  std::lock_guard<std::mutex> l(crash_mu_);
  crash_kind_ = kind;
  crash_step_ = step;
  crash_action_ = action;
  crashed_ = false;
}

control::ClusterStarted BrokerHarness::CreateCluster(const std::string& name, int workers) {
  control::ClusterRequest r;
  r.name = name;
  r.credential = credential_id_;
  r.region = "fake-east";
  r.machine = {"fake.small", "fake-debian-12", 10};
  r.worker_count = workers;
  r.worker_machine = r.machine;
  auto started = clusters().Create(r, "usr-test");
  EXPECT_TRUE(started.has_value()) << (started ? "" : started.error().ToString());
  return started ? *started : control::ClusterStarted{};
}

core::Operation BrokerHarness::Wait(const std::string& op_id, std::chrono::seconds timeout) {
  core::Operation op;
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    auto got = root_->store().operations().Get(op_id);
    if (got) {
      op = *got;
      if (op.state == core::OperationState::kSucceeded || op.state == core::OperationState::kFailed)
        break;
    }
    std::this_thread::sleep_for(20ms);
  }
  return op;
}

core::Cluster BrokerHarness::Cluster(const std::string& id) {
  auto c = root_->store().clusters().Get(id);
  return c ? *c : core::Cluster{};
}

std::vector<core::Worker> BrokerHarness::Workers(const std::string& cluster_id) {
  auto w = root_->store().workers().ListByCluster(cluster_id);
  return w ? *w : std::vector<core::Worker>{};
}

int BrokerHarness::InstancesTagged(const std::string& canopy_id) {
  auto found = cloud_->FindInstancesByTag(
      providers::CallContext{providers::CredentialSecret(Json{{"api_key", "k"}}), ""},
      providers::kCanopyIdTag, canopy_id);
  return found ? static_cast<int>(found->size()) : -1;
}

}  // namespace canopy::testing
