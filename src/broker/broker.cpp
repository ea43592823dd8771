#include "broker/broker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "api/clusters.h"
#include "api/provider_access.h"
#include "common/ids.h"
#include "providers/wire.h"

namespace canopy::broker {
namespace {

using namespace std::chrono_literals;
using ops::StepContext;
using ops::StepResult;
using providers::CallContext;
using providers::ProviderHandle;

using api::MutateCluster;
using api::MutateWorker;

// How long the current step has been running (since its first try).
std::chrono::milliseconds InStep(const StepContext& ctx) {
  const auto& step = ctx.op.steps[static_cast<size_t>(ctx.op.step)];
  if (!step.started_at) return 0ms;
  return std::chrono::duration_cast<std::chrono::milliseconds>(ctx.clock.Now() - *step.started_at);
}

std::string KeyPairName(const core::Cluster& c) { return "canopy-" + c.credential_id.value_or(""); }
std::string SshFirewallId(const core::Cluster& c) { return "ssh-" + c.credential_id.value_or(""); }
std::string ApiFirewallId(const core::Cluster& c) { return c.id + "-api"; }

struct Cloud {
  api::OpenedProvider opened;
  CallContext ctx;
};

Result<Cloud> OpenCloud(const api::ApiDeps& deps, const core::Cluster& c) {
  if (!c.credential_id) return Error::FailedPrecondition("cluster has no credential");
  auto opened = api::OpenProviderForCredential(deps, *c.credential_id);
  if (!opened) {
    // No live adapter right now (restarting, heartbeats late): wait for it rather than fail.
    if (opened.error().code == ErrorCode::kFailedPrecondition) {
      return Error::Unavailable(opened.error().message);
    }
    return std::move(opened).error();
  }
  Cloud cloud{std::move(opened).value(), {}};
  cloud.ctx = cloud.opened.Context(c.region.value_or(""));
  return cloud;
}

Result<ProviderHandle> HandleOf(const Json& j) {
  if (j.is_null()) return Error::FailedPrecondition("no instance handle saved");
  return providers::wire::HandleFromJson(j);
}

// A TCP connect to addr:port succeeds within `timeout` (IPv4 or IPv6 literal addresses).
bool TcpAnswers(const std::string& addr, int port, std::chrono::milliseconds timeout) {
  if (port <= 0 || port > 65535) return false;
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, addr.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, addr.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof(sockaddr_in6);
  } else {
    return false;
  }
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = false;
  int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  if (rc == 0) {
    ok = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
      int err = 0;
      socklen_t elen = sizeof err;
      ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 && err == 0;
    }
  }
  ::close(fd);
  return ok;
}

// Runs fn(i) for i in [0, n) on up to `parallel` threads; returns the first error (all run).
Status ForEachParallel(size_t n, size_t parallel, const std::function<Status(size_t)>& fn) {
  if (n == 0) return OkStatus();
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::optional<Error> first;
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      auto st = fn(i);
      if (!st) {
        std::lock_guard lock(mu);
        if (!first) first = st.error();
      }
    }
  };
  size_t threads = std::min(n, std::max<size_t>(1, parallel));
  std::vector<std::jthread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  pool.clear();
  if (first) return *first;
  return OkStatus();
}

// The SSH login of an instance as saved by a `running` step.
Json SshJson(const providers::Instance& inst) {
  return {{"user", inst.ssh_user},
          {"port", inst.ssh_port},
          {"host_key", inst.host_key_sha256},
          {"address", inst.address}};
}

Result<install::SshTarget> TargetFrom(const Json& ssh, const SecretString& key) {
  if (!ssh.is_object() || !ssh.contains("address")) {
    return Error::FailedPrecondition("no SSH login saved for the instance");
  }
  if (ssh.value("host_key", "").empty()) {
    return Error::FailedPrecondition(fmt::format(
        "cannot install: the provider reported no SSH host key for the instance at {}, and Canopy "
        "never connects to a host it cannot verify",
        ssh.value("address", "")));
  }
  install::SshTarget t;
  t.host = ssh.value("address", "");
  t.port = ssh.value("port", uint16_t{22});
  t.user = ssh.value("user", "");
  t.private_key = key;
  t.host_key_sha256 = ssh.value("host_key", "");
  return t;
}

std::string ErrorText(const core::Operation& op, const std::string& fallback) {
  return op.last_error_message.empty() ? fallback : op.last_error_message;
}

// ---- cluster.create -----------------------------------------------------------------------

class ClusterCreateKind final : public ops::OperationKind {
 public:
  ClusterCreateKind(api::ApiDeps deps, BrokerOptions opts)
      : deps_(std::move(deps)), opts_(std::move(opts)) {}

  std::string Name() const override { return api::kOpClusterCreate; }
  std::vector<std::string> Steps() const override {
    return {"key_pair", "firewalls", "identity", "instance", "running", "install", "pair", "workers"};
  }
  Result<std::vector<std::string>> StepsFor(const Json& data) const override {
    CANOPY_TRY(GetString(data, "cluster_id", 64));
    return Steps();
  }

  Result<StepResult> RunStep(size_t step, StepContext& ctx) override {
    CANOPY_ASSIGN_OR_RETURN(std::string id, GetString(ctx.op.data, "cluster_id", 64));
    CANOPY_ASSIGN_OR_RETURN(core::Cluster c, ctx.store.clusters().Get(id));
    if (step == 7) return Workers(ctx, c);
    if (step == 6) return Pair(ctx, c);
    CANOPY_ASSIGN_OR_RETURN(Cloud cloud, OpenCloud(deps_, c));
    auto& p = *cloud.opened.provider;
    auto save = [&](const std::function<void(Json&)>& f) -> Status {
      auto r = MutateCluster(ctx.store, ctx.clock, id, [&](core::Cluster& row) -> Status {
        f(row.cloud);
        return OkStatus();
      });
      if (!r) return r.error();
      c = std::move(r).value();
      return OkStatus();
    };
    switch (step) {
      case 0: {  // key_pair: one per credential and region, made once and kept by the provider
        CANOPY_TRY(p.CreateKeyPair(cloud.ctx, KeyPairName(c)));
        CANOPY_TRY(save([&](Json& j) { j["key_pair"] = KeyPairName(c); }));
        return StepResult::Next();
      }
      case 1: {  // firewalls: SSH (per credential and region, shared) and the cluster's API port
        providers::FirewallSpec ssh;
        ssh.canopy_id = SshFirewallId(c);
        ssh.name = "canopy-ssh";
        ssh.rules = {providers::FirewallRule{22, "tcp", {}}};
        CANOPY_ASSIGN_OR_RETURN(providers::Firewall ssh_fw, p.CreateFirewall(cloud.ctx, ssh));
        providers::FirewallSpec apis;
        apis.canopy_id = ApiFirewallId(c);
        apis.name = "canopy-" + c.name + "-api";
        apis.rules = {providers::FirewallRule{opts_.cluster_port, "tcp", {}}};
        apis.tags[providers::kClusterTag] = c.id;
        CANOPY_ASSIGN_OR_RETURN(providers::Firewall api_fw, p.CreateFirewall(cloud.ctx, apis));
        CANOPY_TRY(save([&](Json& j) {
          j["firewalls"] = {{"ssh", ssh_fw.id}, {"api", api_fw.id}};
        }));
        return StepResult::Next();
      }
      case 2: {  // identity: the cluster's limited credential (its own firewalls only)
        if (c.cloud.contains("identity_id")) return StepResult::Next();
        auto ident = p.CreateClusterIdentity(cloud.ctx, c.id);
        if (!ident) {
          if (ident.error().code == ErrorCode::kFailedPrecondition) {
            SPDLOG_INFO("Provider has no cluster identities cluster={}", c.id);
            CANOPY_TRY(save([&](Json& j) { j["identity_id"] = nullptr; }));
            return StepResult::Next();
          }
          return ident.error();
        }
        CANOPY_ASSIGN_OR_RETURN(
            std::string sealed,
            deps_.secrets->Seal(SecretString(DumpJson(ident->credential.Reveal())), c.id + "/identity"));
        CANOPY_TRY(save([&](Json& j) {
          j["identity_id"] = ident->id;
          j["identity_sealed"] = Base64Encode(sealed);
        }));
        return StepResult::Next();
      }
      case 3: {  // instance: look up by tag first, create only when none exists
        if (c.cloud.contains("handle") && !c.cloud["handle"].is_null()) return StepResult::Next();
        CANOPY_ASSIGN_OR_RETURN(auto found,
                                p.FindInstancesByTag(cloud.ctx, providers::kCanopyIdTag, c.id));
        providers::Instance inst;
        if (!found.empty()) {
          inst = found.front();
          SPDLOG_INFO("Cluster instance found by tag cluster={} instance={}", c.id, inst.provider_id);
        } else {
          providers::InstanceSpec spec;
          spec.canopy_id = c.id;
          spec.idempotency_key = c.id;
          spec.name = "canopy-" + c.name;
          spec.instance_type = c.instance_type.value_or("");
          spec.image = c.image.value_or("");
          spec.disk_gb = static_cast<int>(c.disk_gb.value_or(10));
          spec.key_pair = c.cloud.value("key_pair", KeyPairName(c));
          spec.firewalls = {c.cloud["firewalls"].value("ssh", ""), c.cloud["firewalls"].value("api", "")};
          spec.tags[providers::kClusterTag] = c.id;
          CANOPY_ASSIGN_OR_RETURN(inst, p.CreateInstance(cloud.ctx, spec));
          SPDLOG_INFO("Cluster instance created cluster={} instance={}", c.id, inst.provider_id);
        }
        CANOPY_TRY(save([&](Json& j) {
          j["handle"] = providers::wire::ToJson(inst.handle);
          j["provider_id"] = inst.provider_id;
        }));
        return StepResult::Next();
      }
      case 4: {  // running
        CANOPY_ASSIGN_OR_RETURN(ProviderHandle h, HandleOf(c.cloud.value("handle", Json())));
        auto inst = p.WaitUntilRunning(cloud.ctx, h, 2s);
        if (!inst) {
          if (inst.error().code != ErrorCode::kDeadlineExceeded) return inst.error();
          if (InStep(ctx) > opts_.boot_timeout) {
            return Error::Provider(fmt::format("instance did not boot within {} s",
                                               opts_.boot_timeout.count()));
          }
          return StepResult::Wait(500ms);
        }
        CANOPY_TRY(save([&](Json& j) {
          j["ssh"] = SshJson(*inst);
          j["address"] = inst->address;
        }));
        return StepResult::Next();
      }
      case 5:
        return Install(ctx, c, cloud);
      default:
        return Error::Internal("unknown step");
    }
  }

  void OnFailed(StepContext& ctx) override {
    auto id = ctx.op.data.value("cluster_id", "");
    auto r = MutateCluster(ctx.store, ctx.clock, id, [&](core::Cluster& c) -> Status {
      if (c.state == core::ClusterState::kActive || c.state == core::ClusterState::kOffline) {
        return OkStatus();  // a worker failure does not fail the cluster
      }
      c.state = core::ClusterState::kFailed;
      return OkStatus();
    });
    if (!r) SPDLOG_WARN("Cannot mark cluster failed cluster={} error={}", id, r.error().message);
  }

 private:
  Result<StepResult> Install(StepContext& ctx, core::Cluster& c, Cloud& cloud) {
    CANOPY_ASSIGN_OR_RETURN(c, MutateCluster(ctx.store, ctx.clock, c.id, [](core::Cluster& row) {
      if (row.state == core::ClusterState::kProvisioning) row.state = core::ClusterState::kInstalling;
      return OkStatus();
    }));
    CANOPY_ASSIGN_OR_RETURN(providers::KeyPair kp,
                            cloud.opened.provider->CreateKeyPair(cloud.ctx, KeyPairName(c)));
    CANOPY_ASSIGN_OR_RETURN(install::SshTarget target,
                            TargetFrom(c.cloud.value("ssh", Json()), kp.private_key));
    CANOPY_ASSIGN_OR_RETURN(api::ClusterTokenGrant grant,
                            api::CreateClusterToken(deps_, c.id, std::chrono::seconds(3600), "broker"));
    install::ComponentSpec spec;
    spec.name = "cluster";
    spec.binary_path = opts_.canopyd_binary;
    spec.argv = {"cluster",
                 "--root",
                 opts_.cluster_root_url,
                 "--data-dir",
                 "cluster-data",
                 "--listen",
                 fmt::format("0.0.0.0:{}", opts_.cluster_port),
                 "--advertise-url",
                 fmt::format("http://{}:{}", target.host, opts_.cluster_port),
                 "--link-interval",
                 std::to_string(opts_.link_interval_seconds),
                 "--heartbeat-interval",
                 std::to_string(opts_.node_heartbeat_seconds)};
    spec.argv.insert(spec.argv.end(), opts_.cluster_extra_args.begin(), opts_.cluster_extra_args.end());
    spec.env = {{"CANOPY_CLUSTER_TOKEN", grant.token}};
    spec.preflight = {"probe", "--url", opts_.cluster_root_url + "/healthz", "--timeout", "10"};
    auto report = install::Installer(opts_.install).Install(target, spec);
    if (!report && report.error().reason == "install_preflight") {
      // Not retried: the root's URL for clusters does not work from the instance.
      SPDLOG_WARN("Cluster cannot reach the root cluster={} url={} error={}", c.id,
                  opts_.cluster_root_url, report.error().message);
      Error e = Error::FailedPrecondition(fmt::format(
          "the cluster's instance at {} cannot reach the root at {} ({}); give the root an "
          "address instances can reach: canopyd root --cluster-listen HOST:PORT or --cluster-url URL",
          target.host, opts_.cluster_root_url, report.error().message));
      e.reason = "root_unreachable";
      return e;
    }
    if (!report) {
      SPDLOG_WARN("Cluster install failed cluster={} reason={} error={}", c.id, report.error().reason,
                  report.error().message);
      return report.error();
    }
    SPDLOG_INFO("Cluster installed cluster={} connect_ms={} upload_ms={} start_ms={} skipped_upload={}",
                c.id, report->timings.connect_ms, report->timings.upload_ms,
                report->timings.start_ms, report->upload_skipped);
    CANOPY_TRY(MutateCluster(ctx.store, ctx.clock, c.id, [](core::Cluster& row) {
      if (row.state == core::ClusterState::kInstalling) row.state = core::ClusterState::kPairing;
      return OkStatus();
    }));
    return StepResult::Next();
  }

  Result<StepResult> Pair(StepContext& ctx, const core::Cluster& c) {
    if (c.state == core::ClusterState::kActive || c.state == core::ClusterState::kOffline) {
      return StepResult::Next();
    }
    if (InStep(ctx) > opts_.pair_timeout) {
      return Error::Provider(
          fmt::format("the cluster did not pair within {} s", opts_.pair_timeout.count()));
    }
    return StepResult::Wait(300ms);
  }

  Result<StepResult> Workers(StepContext& ctx, const core::Cluster& c) {
    const Json& want = ctx.op.data.contains("workers") ? ctx.op.data["workers"] : Json();
    if (!want.is_object() || want.value("count", 0) <= 0) return StepResult::Next();
    // The child operation, found by its parent id so a re-run never enqueues a second batch.
    CANOPY_ASSIGN_OR_RETURN(auto ops, ctx.store.operations().ListByTarget(c.id));
    const core::Operation* child = nullptr;
    for (const auto& o : ops) {
      if (o.kind == api::kOpWorkersProvision && o.data.value("parent", "") == ctx.op.id) child = &o;
    }
    if (child == nullptr) {
      api::WorkerBatch batch;
      CANOPY_TRY(ctx.store.Transaction([&](store::Store& tx) -> Status {
        CANOPY_ASSIGN_OR_RETURN(
            batch, api::EnqueueWorkers(deps_, tx, c, want.value("count", int64_t{0}),
                                       want.value("instance_type", ""), want.value("image", ""),
                                       want.value("disk_gb", int64_t{10}), ctx.op.id));
        return OkStatus();
      }));
      deps_.engine->Wake();
      ctx.op.data["workers_operation_id"] = batch.operation.id;
      return StepResult::Wait(500ms);
    }
    if (child->state == core::OperationState::kSucceeded) return StepResult::Next();
    if (child->state == core::OperationState::kFailed) {
      return Error::Provider(fmt::format("workers failed (operation {}): {}", child->id,
                                         ErrorText(*child, "failed")));
    }
    return StepResult::Wait(500ms);
  }

  api::ApiDeps deps_;
  BrokerOptions opts_;
};

// ---- cluster.delete -----------------------------------------------------------------------

class ClusterDeleteKind final : public ops::OperationKind {
 public:
  explicit ClusterDeleteKind(api::ApiDeps deps) : deps_(std::move(deps)) {}
  std::string Name() const override { return api::kOpClusterDelete; }
  std::vector<std::string> Steps() const override {
    return {"instance", "firewalls", "identity", "rows"};
  }

  Result<StepResult> RunStep(size_t step, StepContext& ctx) override {
    CANOPY_ASSIGN_OR_RETURN(std::string id, GetString(ctx.op.data, "cluster_id", 64));
    auto got = ctx.store.clusters().Get(id);
    if (!got && got.error().code == ErrorCode::kNotFound) return StepResult::Succeed();
    CANOPY_ASSIGN_OR_RETURN(core::Cluster c, std::move(got));
    if (step == 3) {
      CANOPY_ASSIGN_OR_RETURN(auto workers, ctx.store.workers().ListByCluster(c.id));
      CANOPY_TRY(ctx.store.Transaction([&](store::Store& tx) -> Status {
        for (const auto& w : workers) {
          if (core::IsBilled(w.state)) {
            return Error::FailedPrecondition("a billed worker appeared during the delete");
          }
          CANOPY_TRY(tx.workers().Delete(w.id));
        }
        return tx.clusters().Delete(c.id);
      }));
      SPDLOG_INFO("Cluster deleted cluster={} name={}", c.id, c.name);
      return StepResult::Next();
    }
    if (c.kind != core::ClusterKind::kCloud) return StepResult::Next();
    CANOPY_ASSIGN_OR_RETURN(Cloud cloud, OpenCloud(deps_, c));
    auto& p = *cloud.opened.provider;
    switch (step) {
      case 0: {  // the saved handle, and anything tagged with the cluster's id
        if (c.cloud.contains("handle") && !c.cloud["handle"].is_null()) {
          CANOPY_ASSIGN_OR_RETURN(ProviderHandle h, HandleOf(c.cloud["handle"]));
          CANOPY_TRY(p.TerminateInstance(cloud.ctx, h));
        }
        CANOPY_ASSIGN_OR_RETURN(auto found,
                                p.FindInstancesByTag(cloud.ctx, providers::kCanopyIdTag, c.id));
        for (const auto& inst : found) CANOPY_TRY(p.TerminateInstance(cloud.ctx, inst.handle));
        return StepResult::Next();
      }
      case 1: {  // the cluster's own firewall (the SSH one is shared per credential and region)
        if (c.cloud.contains("firewalls")) {
          std::string api_fw = c.cloud["firewalls"].value("api", "");
          if (!api_fw.empty()) CANOPY_TRY(p.DeleteFirewall(cloud.ctx, api_fw));
        }
        // Per-service firewalls the firewall sync made (src/scheduler/firewall_sync.h).
        const Json service_fws = c.cloud.value("service_firewalls", Json::object());
        for (const auto& [sid, fw] : service_fws.items()) {
          if (fw.is_string()) CANOPY_TRY(p.DeleteFirewall(cloud.ctx, fw.get<std::string>()));
        }
        return StepResult::Next();
      }
      case 2: {
        if (c.cloud.contains("identity_id") && c.cloud["identity_id"].is_string()) {
          CANOPY_TRY(p.DeleteClusterIdentity(cloud.ctx, c.cloud["identity_id"].get<std::string>()));
        }
        return StepResult::Next();
      }
      default:
        return Error::Internal("unknown step");
    }
  }

  void OnFailed(StepContext& ctx) override {
    auto id = ctx.op.data.value("cluster_id", "");
    (void)MutateCluster(ctx.store, ctx.clock, id, [](core::Cluster& c) {
      c.state = core::ClusterState::kFailed;
      return OkStatus();
    });
  }

 private:
  api::ApiDeps deps_;
};

// ---- workers.provision (add, restart, recreate) --------------------------------------------

class WorkersProvisionKind final : public ops::OperationKind {
 public:
  WorkersProvisionKind(api::ApiDeps deps, BrokerOptions opts)
      : deps_(std::move(deps)), opts_(std::move(opts)) {}

  std::string Name() const override { return api::kOpWorkersProvision; }
  std::vector<std::string> Steps() const override {
    return {"instances", "running", "install", "register"};
  }
  Result<std::vector<std::string>> StepsFor(const Json& data) const override {
    CANOPY_TRY(GetString(data, "cluster_id", 64));
    CANOPY_ASSIGN_OR_RETURN(std::string action, GetString(data, "action", 16));
    if (action != "add" && action != "restart" && action != "recreate") {
      return Error::InvalidArgument("unknown provision action");
    }
    if (!data.contains("worker_ids") || !data["worker_ids"].is_array()) {
      return Error::InvalidArgument("worker_ids must be an array");
    }
    return Steps();
  }

  Result<StepResult> RunStep(size_t step, StepContext& ctx) override {
    CANOPY_ASSIGN_OR_RETURN(std::string cluster_id, GetString(ctx.op.data, "cluster_id", 64));
    CANOPY_ASSIGN_OR_RETURN(core::Cluster c, ctx.store.clusters().Get(cluster_id));
    std::vector<core::Worker> workers;
    for (const auto& wid : ctx.op.data["worker_ids"]) {
      auto w = ctx.store.workers().Get(wid.get<std::string>());
      if (!w) {
        if (w.error().code == ErrorCode::kNotFound) continue;
        return w.error();
      }
      if (w->state == core::WorkerState::kBooting && w->operation_id == ctx.op.id) {
        workers.push_back(std::move(w).value());
      }
    }
    if (workers.empty()) return StepResult::Succeed();
    if (step == 3) return Register(ctx, c, workers);
    CANOPY_ASSIGN_OR_RETURN(Cloud cloud, OpenCloud(deps_, c));
    switch (step) {
      case 0: return Instances(ctx, c, cloud, workers);
      case 1: return Running(ctx, cloud, workers);
      case 2: return Install(ctx, c, cloud, workers);
      default: return Error::Internal("unknown step");
    }
  }

  void OnFailed(StepContext& ctx) override {
    std::string message = ErrorText(ctx.op, "provisioning failed");
    if (!ctx.op.data.contains("worker_ids")) return;
    for (const auto& wid : ctx.op.data["worker_ids"]) {
      (void)MutateWorker(ctx.store, ctx.clock, wid.get<std::string>(), [&](core::Worker& w) {
        if (w.state == core::WorkerState::kBooting && w.operation_id == ctx.op.id) {
          w.state = core::WorkerState::kFailed;  // the VM is kept: terminate/recreate/delete end it
          w.last_error = message;
        }
        return OkStatus();
      });
    }
  }

 private:
  Result<StepResult> Instances(StepContext& ctx, const core::Cluster& c, Cloud& cloud,
                               std::vector<core::Worker>& workers) {
    auto& p = *cloud.opened.provider;
    const std::string action = ctx.op.data.value("action", "add");
    const Json old = ctx.op.data.value("old_handles", Json::object());
    CANOPY_TRY(ForEachParallel(workers.size(), opts_.parallelism, [&](size_t i) -> Status {
      core::Worker& w = workers[i];
      if (action == "restart") {
        CANOPY_ASSIGN_OR_RETURN(ProviderHandle h, HandleOf(w.handle));
        return p.StartInstance(cloud.ctx, h);
      }
      if (old.contains(w.id)) {  // recreate: the previous instance goes first
        CANOPY_ASSIGN_OR_RETURN(ProviderHandle h, HandleOf(old[w.id]));
        CANOPY_TRY(p.TerminateInstance(cloud.ctx, h));
      }
      if (!w.handle.is_null()) return OkStatus();
      CANOPY_ASSIGN_OR_RETURN(auto found, p.FindInstancesByTag(cloud.ctx, providers::kCanopyIdTag,
                                                               w.InstanceCanopyId()));
      providers::Instance inst;
      if (!found.empty()) {
        inst = found.front();
      } else {
        providers::InstanceSpec spec;
        spec.canopy_id = w.InstanceCanopyId();
        spec.idempotency_key = w.InstanceCanopyId();
        spec.name = w.name;
        spec.instance_type = w.instance_type;
        spec.image = w.image;
        spec.disk_gb = static_cast<int>(w.disk_gb);
        spec.key_pair = c.cloud.value("key_pair", KeyPairName(c));
        if (c.cloud.contains("firewalls")) spec.firewalls = {c.cloud["firewalls"].value("ssh", "")};
        spec.tags[providers::kClusterTag] = c.id;
        spec.tags["canopy-worker"] = w.id;
        CANOPY_ASSIGN_OR_RETURN(inst, p.CreateInstance(cloud.ctx, spec));
      }
      SPDLOG_INFO("Worker instance worker={} instance={} found={}", w.id, inst.provider_id,
                  !found.empty());
      auto saved = MutateWorker(ctx.store, ctx.clock, w.id, [&](core::Worker& row) {
        row.handle = providers::wire::ToJson(inst.handle);
        row.provider_id = inst.provider_id;
        return OkStatus();
      });
      if (!saved) return saved.error();
      w = std::move(saved).value();
      return OkStatus();
    }));
    return StepResult::Next();
  }

  Result<StepResult> Running(StepContext& ctx, Cloud& cloud, std::vector<core::Worker>& workers) {
    auto& p = *cloud.opened.provider;
    std::atomic<size_t> pending{0};
    std::mutex mu;
    Json ssh = ctx.op.data.value("ssh", Json::object());
    CANOPY_TRY(ForEachParallel(workers.size(), opts_.parallelism, [&](size_t i) -> Status {
      core::Worker& w = workers[i];
      {
        std::lock_guard lock(mu);
        if (ssh.contains(w.id)) return OkStatus();
      }
      CANOPY_ASSIGN_OR_RETURN(ProviderHandle h, HandleOf(w.handle));
      auto inst = p.WaitUntilRunning(cloud.ctx, h, 2s);
      if (!inst) {
        if (inst.error().code != ErrorCode::kDeadlineExceeded) return inst.error();
        ++pending;
        return OkStatus();
      }
      CANOPY_TRY(MutateWorker(ctx.store, ctx.clock, w.id, [&](core::Worker& row) {
        row.address = inst->address;
        return OkStatus();
      }));
      std::lock_guard lock(mu);
      ssh[w.id] = SshJson(*inst);
      return OkStatus();
    }));
    ctx.op.data["ssh"] = ssh;
    if (pending > 0) {
      if (InStep(ctx) > opts_.boot_timeout) {
        return Error::Provider(fmt::format("{} instance(s) did not boot within {} s", pending.load(),
                                           opts_.boot_timeout.count()));
      }
      return StepResult::Wait(500ms);
    }
    return StepResult::Next();
  }

  Result<StepResult> Install(StepContext& ctx, const core::Cluster& c, Cloud& cloud,
                             std::vector<core::Worker>& workers) {
    if (c.cluster_url.empty()) return Error::Unavailable("the cluster has not reported its URL yet");
    CANOPY_ASSIGN_OR_RETURN(providers::KeyPair kp,
                            cloud.opened.provider->CreateKeyPair(cloud.ctx, KeyPairName(c)));
    const Json ssh = ctx.op.data.value("ssh", Json::object());
    // Nodes advertise their instance type's size (on the local provider every namespace sees
    // the host's CPUs and memory); unknown types keep what the node reads from /proc.
    std::map<std::string, providers::InstanceType> types;
    if (auto offers = cloud.opened.provider->ListOffers(cloud.ctx)) {
      for (const auto& t : offers->instance_types) types[t.name] = t;
    }
    CANOPY_TRY(ForEachParallel(workers.size(), opts_.parallelism, [&](size_t i) -> Status {
      const core::Worker& w = workers[i];
      CANOPY_ASSIGN_OR_RETURN(install::SshTarget target,
                              TargetFrom(ssh.value(w.id, Json()), kp.private_key));
      // A node token from the cluster (over its link); a node that kept its identity ignores it.
      CANOPY_ASSIGN_OR_RETURN(core::ClusterCommand cmd,
                              api::EnqueueClusterCommand(deps_, c.id, api::kCommandCreateNodeToken,
                                                         Json{{"ttl_seconds", 3600}}));
      CANOPY_ASSIGN_OR_RETURN(cmd, api::WaitClusterCommand(deps_, cmd.id, 30s));
      if (cmd.state != core::ClusterCommandState::kSucceeded || !cmd.result.contains("token")) {
        return Error::Unavailable(fmt::format("the cluster did not issue a node token: {}",
                                              cmd.error_message));
      }
      install::ComponentSpec spec;
      spec.name = "node";
      spec.binary_path = opts_.canopyd_binary;
      spec.argv = {"node", "--cluster", c.cluster_url, "--data-dir", "node-data"};
      if (auto t = types.find(w.instance_type); t != types.end() && t->second.vcpus > 0 &&
                                                 t->second.memory_mib > 0) {
        spec.argv.insert(spec.argv.end(), {"--cpu-millis", std::to_string(t->second.vcpus * 1000),
                                           "--memory-mib", std::to_string(t->second.memory_mib)});
      }
      spec.env = {{"CANOPY_NODE_TOKEN", cmd.result["token"].get<std::string>()}};
      spec.preflight = {"probe", "--url", c.cluster_url + "/healthz", "--timeout", "10"};
      auto report = install::Installer(opts_.install).Install(target, spec);
      if (!report && report.error().reason == "install_preflight") {
        Error e = Error::FailedPrecondition(fmt::format(
            "the worker's instance at {} cannot reach its cluster at {} ({})", target.host,
            c.cluster_url, report.error().message));
        e.reason = "cluster_unreachable";
        return e;
      }
      if (!report) {
        SPDLOG_WARN("Node install failed worker={} reason={} error={}", w.id, report.error().reason,
                    report.error().message);
        return report.error();
      }
      SPDLOG_INFO("Node installed worker={} connect_ms={} upload_ms={} start_ms={} skipped_upload={}",
                  w.id, report->timings.connect_ms, report->timings.upload_ms,
                  report->timings.start_ms, report->upload_skipped);
      return OkStatus();
    }));
    return StepResult::Next();
  }

  Result<StepResult> Register(StepContext& ctx, const core::Cluster& c,
                              std::vector<core::Worker>& workers) {
    size_t waiting = 0;
    for (auto& w : workers) {
      const core::ClusterNodeInfo* node = nullptr;
      for (const auto& n : c.nodes) {
        if (n.address == w.address && n.state == "online") node = &n;
      }
      if (node == nullptr) {
        ++waiting;
        continue;
      }
      std::string node_id = node->id;
      CANOPY_TRY(MutateWorker(ctx.store, ctx.clock, w.id, [&](core::Worker& row) {
        if (row.state == core::WorkerState::kBooting) {
          row.state = core::WorkerState::kActive;
          row.node_id = node_id;
        }
        return OkStatus();
      }));
      SPDLOG_INFO("Worker active worker={} node={} address={}", w.id, node_id, w.address);
    }
    if (waiting == 0) return StepResult::Next();
    if (InStep(ctx) > opts_.register_timeout) {
      return Error::Provider(fmt::format("{} node(s) did not register with the cluster within {} s",
                                         waiting, opts_.register_timeout.count()));
    }
    // Nodes reach the root in the cluster's link reports. A command ends the cluster's parked
    // long-poll at once, and its next link call (with the ack) carries a fresh report, so a ping
    // gets the new nodes here in milliseconds instead of one link interval later. One at a time.
    std::string last = ctx.op.data.value("ping", "");
    bool pending = false;
    if (!last.empty()) {
      auto cmd = api::GetClusterCommand(deps_, last);
      pending = cmd && cmd->state == core::ClusterCommandState::kPending;
    }
    if (!pending) {
      auto cmd = api::EnqueueClusterCommand(deps_, c.id, api::kCommandPing);
      if (cmd) ctx.op.data["ping"] = cmd->id;
    }
    return StepResult::Wait(100ms);
  }

  api::ApiDeps deps_;
  BrokerOptions opts_;
};

// ---- worker.shutdown (stop, terminate, delete) --------------------------------------------

class WorkerShutdownKind final : public ops::OperationKind {
 public:
  WorkerShutdownKind(api::ApiDeps deps, BrokerOptions opts) : deps_(std::move(deps)), opts_(std::move(opts)) {}
  std::string Name() const override { return api::kOpWorkerShutdown; }
  std::vector<std::string> Steps() const override { return {"drain", "shutdown", "finish"}; }
  Result<std::vector<std::string>> StepsFor(const Json& data) const override {
    CANOPY_ASSIGN_OR_RETURN(std::string action, GetString(data, "action", 16));
    if (action != "stop" && action != "terminate" && action != "delete") {
      return Error::InvalidArgument("unknown shutdown action");
    }
    CANOPY_TRY(GetString(data, "worker_id", 64));
    return Steps();
  }

  Result<StepResult> RunStep(size_t step, StepContext& ctx) override {
    const std::string action = ctx.op.data.value("action", "");
    CANOPY_ASSIGN_OR_RETURN(std::string wid, GetString(ctx.op.data, "worker_id", 64));
    auto got = ctx.store.workers().Get(wid);
    if (!got && got.error().code == ErrorCode::kNotFound) return StepResult::Succeed();
    CANOPY_ASSIGN_OR_RETURN(core::Worker w, std::move(got));
    if (w.operation_id != ctx.op.id) return StepResult::Succeed();  // a newer action took over
    switch (step) {
      case 0:
        return Drain(ctx, w);
      case 1: {
        CANOPY_ASSIGN_OR_RETURN(core::Cluster c, ctx.store.clusters().Get(w.cluster_id));
        CANOPY_ASSIGN_OR_RETURN(Cloud cloud, OpenCloud(deps_, c));
        auto& p = *cloud.opened.provider;
        if (action == "stop") {
          CANOPY_ASSIGN_OR_RETURN(ProviderHandle h, HandleOf(w.handle));
          CANOPY_TRY(p.StopInstance(cloud.ctx, h));
          return StepResult::Next();
        }
        if (!w.handle.is_null()) {
          CANOPY_ASSIGN_OR_RETURN(ProviderHandle h, HandleOf(w.handle));
          CANOPY_TRY(p.TerminateInstance(cloud.ctx, h));
        }
        // Anything made under this worker's canopy id whose handle was never saved.
        CANOPY_ASSIGN_OR_RETURN(auto found, p.FindInstancesByTag(cloud.ctx, providers::kCanopyIdTag,
                                                                 w.InstanceCanopyId()));
        for (const auto& inst : found) CANOPY_TRY(p.TerminateInstance(cloud.ctx, inst.handle));
        return StepResult::Next();
      }
      case 2: {
        if (action == "delete") {
          CANOPY_TRY(ctx.store.workers().Delete(w.id));
          SPDLOG_INFO("Worker deleted worker={} name={}", w.id, w.name);
          return StepResult::Next();
        }
        CANOPY_TRY(MutateWorker(ctx.store, ctx.clock, w.id, [&](core::Worker& row) {
          if (action == "stop") {
            row.state = core::WorkerState::kStopped;
          } else {
            row.state = core::WorkerState::kTerminated;
            row.handle = nullptr;
            row.address.clear();
            row.node_id.clear();
          }
          return OkStatus();
        }));
        SPDLOG_INFO("Worker {} worker={}", action == "stop" ? "stopped" : "terminated", w.id);
        return StepResult::Next();
      }
      default:
        return Error::Internal("unknown step");
    }
  }

  // drain: the cluster marks the node draining (no new jobs) and moves its jobs to other nodes,
  // or gives them back to the root when none has room (the scheduler places them in another
  // cluster or keeps them pending); then wait until each runs elsewhere, at most drain_timeout.
  // The outcome is logged; a timeout is also left in the worker's last_error. Progress lives in
  // op.data.drain, so a restarted root goes on where it was.
  Result<StepResult> Drain(StepContext& ctx, const core::Worker& w) {
    if (w.node_id.empty()) return StepResult::Next();
    Json drain = ctx.op.data.value("drain", Json::object());
    const int64_t now_ms = UnixMillis(ctx.clock.Now());
    if (!drain.contains("command_id")) {
      auto cmd = api::EnqueueClusterCommand(deps_, w.cluster_id, "drain_node", {{"node_id", w.node_id}});
      if (!cmd) {
        if (cmd.error().code == ErrorCode::kNotFound) return StepResult::Next();
        return cmd.error();
      }
      drain = {{"command_id", cmd->id}, {"started_ms", now_ms}};
      ctx.op.data["drain"] = drain;
      SPDLOG_INFO("Draining worker worker={} node={} command={}", w.id, w.node_id, cmd->id);
      return StepResult::Wait(200ms);
    }
    const int64_t elapsed_ms = now_ms - drain.value("started_ms", now_ms);
    const bool late = elapsed_ms > std::chrono::duration_cast<std::chrono::milliseconds>(opts_.drain_timeout).count();
    auto finish = [&](const std::string& outcome, bool problem) -> Result<StepResult> {
      ctx.op.data["drain"]["outcome"] = outcome;
      if (problem) {
        SPDLOG_WARN("Drain of worker incomplete worker={} outcome={}", w.id, outcome);
        (void)MutateWorker(ctx.store, ctx.clock, w.id, [&](core::Worker& row) {
          row.last_error = "drain: " + outcome;
          return OkStatus();
        });
      } else {
        SPDLOG_INFO("Worker drained worker={} outcome={}", w.id, outcome);
      }
      return StepResult::Next();
    };
    if (!drain.contains("jobs")) {
      auto cmd = api::GetClusterCommand(deps_, drain["command_id"].get<std::string>());
      if (!cmd) {
        if (cmd.error().code == ErrorCode::kNotFound) return finish("the drain command is gone", true);
        return cmd.error();
      }
      if (cmd->state == core::ClusterCommandState::kPending) {
        if (late) {
          return finish(fmt::format("timed out after {} s: the cluster did not answer", opts_.drain_timeout.count()), true);
        }
        return StepResult::Wait(250ms);
      }
      if (cmd->state == core::ClusterCommandState::kFailed) {
        return finish("the cluster could not drain the node: " + cmd->error_message, true);
      }
      Json jobs = Json::array();
      for (const char* list : {"moved", "returned"}) {
        for (const auto& j : cmd->result.value(list, Json::array())) {
          if (j.is_object() && j.contains("job_id") && j["job_id"].is_string()) jobs.push_back(j["job_id"]);
        }
      }
      ctx.op.data["drain"]["jobs"] = jobs;
      ctx.op.data["drain"]["moved"] = cmd->result.value("moved", Json::array()).size();
      ctx.op.data["drain"]["returned"] = cmd->result.value("returned", Json::array()).size();
      drain = ctx.op.data["drain"];
    }
    // Done when every job runs on another node (or its service no longer wants it) and, for a
    // service with TCP ports open to anyone, answers a TCP connect there (process listening and
    // the new worker's firewall open).
    CANOPY_ASSIGN_OR_RETURN(auto instances, ctx.store.services().ListInstances(""));
    CANOPY_ASSIGN_OR_RETURN(auto services, ctx.store.services().List());
    std::vector<std::string> waiting;
    for (const auto& j : drain["jobs"]) {
      std::string job = j.get<std::string>();
      auto it = std::find_if(instances.begin(), instances.end(),
                             [&](const core::ServiceInstance& i) { return i.job_id == job; });
      if (it == instances.end() || it->state == "removing") continue;
      bool ready = it->state == "running" && !it->node_id.empty() && it->node_id != w.node_id;
      if (ready) {
        auto svc = std::find_if(services.begin(), services.end(),
                                [&](const core::Service& s) { return s.id == it->service_id; });
        if (svc != services.end()) {
          for (const auto& port : svc->spec.value("ports", Json::array())) {
            if (port.value("protocol", "tcp") != "tcp" || !port.value("source_cidrs", Json::array()).empty()) continue;
            if (!TcpAnswers(it->address, static_cast<int>(port.value("port", 0)), 300ms)) ready = false;
            break;
          }
        }
      }
      if (!ready) waiting.push_back(job);
    }
    if (waiting.empty()) {
      return finish(fmt::format("{} job(s) running elsewhere ({} moved in the cluster, {} given back to root)",
                                drain["jobs"].size(), drain.value("moved", 0), drain.value("returned", 0)),
                    false);
    }
    if (late) {
      return finish(fmt::format("timed out after {} s: {} job(s) not running elsewhere yet ({}); shutting down anyway",
                                opts_.drain_timeout.count(), waiting.size(), fmt::join(waiting, ", ")),
                    true);
    }
    return StepResult::Wait(300ms);
  }

  void OnFailed(StepContext& ctx) override {
    std::string message = ErrorText(ctx.op, "shutdown failed");
    (void)MutateWorker(ctx.store, ctx.clock, ctx.op.data.value("worker_id", ""), [&](core::Worker& w) {
      if (w.operation_id == ctx.op.id) {
        w.state = core::WorkerState::kFailed;
        w.last_error = message;
      }
      return OkStatus();
    });
  }

 private:
  api::ApiDeps deps_;
  BrokerOptions opts_;
};

}  // namespace

Status RegisterBrokerKinds(ops::Engine& engine, const api::ApiDeps& deps, const BrokerOptions& opts) {
  CANOPY_TRY(engine.Register(std::make_unique<ClusterCreateKind>(deps, opts)));
  CANOPY_TRY(engine.Register(std::make_unique<ClusterDeleteKind>(deps)));
  CANOPY_TRY(engine.Register(std::make_unique<WorkersProvisionKind>(deps, opts)));
  CANOPY_TRY(engine.Register(std::make_unique<WorkerShutdownKind>(deps, opts)));
  return OkStatus();
}

}  // namespace canopy::broker
