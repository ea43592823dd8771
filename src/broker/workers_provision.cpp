// workers.provision (add, restart, recreate): instances -> running -> install -> register
// (src/broker/README.md).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <map>
#include <mutex>

#include "broker/detail/common.h"
#include "control/operation_kinds.h"
#include "providers/wire.h"
#include "store/row_mutations.h"

namespace canopy::broker {
namespace {

using namespace std::chrono_literals;
using namespace detail;
using ops::StepContext;
using ops::StepResult;

class WorkersProvisionKind final : public ops::OperationKind {
 public:
  // Per try: the cluster, the BOOTING workers this operation still owns, the cloud on first use.
  struct Run {
    StepContext& ctx;
    core::Cluster c;
    std::vector<core::Worker> workers;
    std::string action;  // "add", "restart" or "recreate"
    std::optional<Cloud> cloud;
  };
  using Table = std::vector<StepDef<WorkersProvisionKind, Run>>;

  WorkersProvisionKind(BrokerDeps deps, BrokerOptions opts)
      : deps_(std::move(deps)), opts_(std::move(opts)) {}

  std::string Name() const override { return control::kOpWorkersProvision; }
  std::vector<std::string> Steps() const override { return StepNames(StepTable()); }
  Result<std::vector<std::string>> StepsFor(const Json& data) const override {
    CANOPY_TRY(GetString(data, "cluster_id", 64));
    CANOPY_ASSIGN_OR_RETURN(std::string action, GetString(data, "action", 16));
    if (action != control::kProvisionAdd && action != "restart" && action != "recreate") {
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
    Run run{
        ctx, std::move(c), {}, ctx.op.data.value("action", control::kProvisionAdd), std::nullopt};
    for (const auto& wid : ctx.op.data["worker_ids"]) {
      auto w = ctx.store.workers().Get(wid.get<std::string>());
      if (!w) {
        if (w.error().code == ErrorCode::kNotFound) continue;
        return w.error();
      }
      if (w->state == core::WorkerState::kBooting && w->operation_id == ctx.op.id) {
        run.workers.push_back(std::move(w).value());
      }
    }
    if (run.workers.empty()) return StepResult::Succeed();
    return RunTableStep(*this, StepTable(), step, run);
  }

  void OnFailed(StepContext& ctx) override {
    std::string message = ErrorText(ctx.op, "provisioning failed");
    if (!ctx.op.data.contains("worker_ids")) return;
    for (const auto& wid : ctx.op.data["worker_ids"]) {
      (void)store::MutateWorker(ctx.store, ctx.clock, wid.get<std::string>(), [&](core::Worker& w) {
        if (w.state == core::WorkerState::kBooting && w.operation_id == ctx.op.id) {
          w.state = core::WorkerState::kFailed;  // the VM is kept: terminate/recreate/delete end it
          w.last_error = message;
        }
        return OkStatus();
      });
    }
  }

 private:
  static const Table& StepTable() {
    static const Table table = {
        {"instances", &WorkersProvisionKind::Instances},
        {"running", &WorkersProvisionKind::Running},
        {"install", &WorkersProvisionKind::Install},
        {"register", &WorkersProvisionKind::Register},
    };
    return table;
  }

  Result<Cloud*> CloudOf(Run& run) { return OpenOnce(run.cloud, *deps_.clouds, run.c); }

  // Restart starts the stopped instance; recreate terminates the previous one first; otherwise
  // look up by tag, create only when none exists, and save the handle at once.
  Result<StepResult> Instances(Run& run) {
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    auto& p = cloud->provider();
    const core::Cluster& c = run.c;
    const Json old = run.ctx.op.data.value("old_handles", Json::object());
    CANOPY_TRY(ForEachParallel(run.workers.size(), opts_.parallelism, [&](size_t i) -> Status {
      core::Worker& w = run.workers[i];
      if (run.action == "restart") {
        CANOPY_ASSIGN_OR_RETURN(providers::ProviderHandle h, HandleOf(w.handle));
        return p.StartInstance(cloud->ctx, h);
      }
      if (old.contains(w.id)) {
        CANOPY_ASSIGN_OR_RETURN(providers::ProviderHandle h, HandleOf(old[w.id]));
        CANOPY_TRY(p.TerminateInstance(cloud->ctx, h));
      }
      if (!w.handle.is_null()) return OkStatus();
      CANOPY_ASSIGN_OR_RETURN(auto found, p.FindInstancesByTag(cloud->ctx, providers::kCanopyIdTag,
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
        spec.key_pair = c.cloud.key_pair.empty() ? KeyPairName(c) : c.cloud.key_pair;
        if (!c.cloud.ssh_firewall.empty()) spec.firewalls = {c.cloud.ssh_firewall};
        spec.tags[providers::kClusterTag] = c.id;
        spec.tags["canopy-worker"] = w.id;
        CANOPY_ASSIGN_OR_RETURN(inst, p.CreateInstance(cloud->ctx, spec));
      }
      SPDLOG_INFO("Worker instance worker={} instance={} found={}", w.id, inst.provider_id,
                  !found.empty());
      auto saved = store::MutateWorker(run.ctx.store, run.ctx.clock, w.id, [&](core::Worker& row) {
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

  // Each instance running with an address; SSH logins kept in op.data.ssh by worker id.
  Result<StepResult> Running(Run& run) {
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    auto& p = cloud->provider();
    std::atomic<size_t> pending{0};
    std::mutex mu;
    Json ssh = run.ctx.op.data.value("ssh", Json::object());
    CANOPY_TRY(ForEachParallel(run.workers.size(), opts_.parallelism, [&](size_t i) -> Status {
      core::Worker& w = run.workers[i];
      {
        std::lock_guard lock(mu);
        if (ssh.contains(w.id)) return OkStatus();
      }
      CANOPY_ASSIGN_OR_RETURN(providers::ProviderHandle h, HandleOf(w.handle));
      auto inst = p.WaitUntilRunning(cloud->ctx, h, 2s);
      if (!inst) {
        if (inst.error().code != ErrorCode::kDeadlineExceeded) return inst.error();
        ++pending;
        return OkStatus();
      }
      CANOPY_TRY(store::MutateWorker(run.ctx.store, run.ctx.clock, w.id, [&](core::Worker& row) {
        row.address = inst->address;
        return OkStatus();
      }));
      std::lock_guard lock(mu);
      ssh[w.id] = LoginToJson(LoginOf(*inst));
      return OkStatus();
    }));
    run.ctx.op.data["ssh"] = ssh;
    if (pending > 0) {
      if (InStep(run.ctx) > opts_.boot_timeout) {
        return Error::Provider(fmt::format("{} instance(s) did not boot within {} s",
                                           pending.load(), opts_.boot_timeout.count()));
      }
      return StepResult::Wait(500ms);
    }
    return StepResult::Next();
  }

  // Per worker: a node token from the cluster (over its link), the instance must reach the
  // cluster (probe), then `canopyd node`; 8 at a time. The key pair is fetched once.
  Result<StepResult> Install(Run& run) {
    const core::Cluster& c = run.c;
    if (c.cluster_url.empty())
      return Error::Unavailable("the cluster has not reported its URL yet");
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    CANOPY_ASSIGN_OR_RETURN(providers::KeyPair kp,
                            cloud->provider().CreateKeyPair(cloud->ctx, KeyPairName(c)));
    const Json ssh = run.ctx.op.data.value("ssh", Json::object());
    // Nodes advertise their instance type's size (on the local provider every namespace sees
    // the host's CPUs and memory); unknown types keep what the node reads from /proc.
    std::map<std::string, providers::InstanceType> types;
    if (auto offers = cloud->provider().ListOffers(cloud->ctx)) {
      for (const auto& t : offers->instance_types) types[t.name] = t;
    }
    CANOPY_TRY(ForEachParallel(run.workers.size(), opts_.parallelism, [&](size_t i) -> Status {
      const core::Worker& w = run.workers[i];
      CANOPY_ASSIGN_OR_RETURN(install::SshTarget target,
                              TargetOf(LoginFromJson(ssh.value(w.id, Json())), kp.private_key));
      // A node that kept its identity ignores the token.
      CANOPY_ASSIGN_OR_RETURN(core::ClusterCommand cmd,
                              deps_.commands->Enqueue(c.id, core::CommandType::kCreateNodeToken,
                                                      Json{{"ttl_seconds", 3600}}));
      CANOPY_ASSIGN_OR_RETURN(cmd, deps_.commands->Wait(cmd.id, 30s));
      if (cmd.state != core::ClusterCommandState::kSucceeded || !cmd.result.contains("token")) {
        return Error::Unavailable(
            fmt::format("the cluster did not issue a node token: {}", cmd.error_message));
      }
      install::ComponentSpec spec;
      spec.name = "node";
      spec.binary_path = opts_.canopyd_binary;
      spec.argv = {"node", "--cluster", c.cluster_url, "--data-dir", "node-data"};
      if (auto t = types.find(w.instance_type);
          t != types.end() && t->second.vcpus > 0 && t->second.memory_mib > 0) {
        spec.argv.insert(spec.argv.end(), {"--cpu-millis", std::to_string(t->second.vcpus * 1000),
                                           "--memory-mib", std::to_string(t->second.memory_mib)});
      }
      if (deps_.tier->ca() != nullptr && c.cluster_url.starts_with("https://")) {
        spec.argv.insert(spec.argv.end(), {"--ca-fingerprint", deps_.tier->ca()->fingerprint()});
      }
      // In a 0600 file the node removes once registered.
      spec.config = SecretString(cmd.result["token"].get<std::string>());
      spec.argv.insert(spec.argv.end(), {"--token-file", "{config}"});
      spec.preflight = PreflightArgs(c.cluster_url, opts_.preflight_timeout);
      auto report = deps_.installer->Install(target, spec);
      if (!report && report.error().reason == "install_preflight") {
        return Error::FailedPrecondition(
                   fmt::format("the worker's instance at {} cannot reach its cluster at {} ({})",
                               target.host, c.cluster_url, report.error().message))
            .WithReason("cluster_unreachable");
      }
      if (!report) {
        SPDLOG_WARN("Node install failed worker={} reason={} error={}", w.id, report.error().reason,
                    report.error().message);
        return report.error();
      }
      SPDLOG_INFO(
          "Node installed worker={} connect_ms={} upload_ms={} start_ms={} skipped_upload={}", w.id,
          report->timings.connect_ms, report->timings.upload_ms, report->timings.start_ms,
          report->upload_skipped);
      return OkStatus();
    }));
    return StepResult::Next();
  }

  // Until the cluster reports an online node at each worker's address.
  Result<StepResult> Register(Run& run) {
    const core::Cluster& c = run.c;
    size_t waiting = 0;
    for (auto& w : run.workers) {
      const core::ClusterNodeInfo* node = nullptr;
      for (const auto& n : c.nodes) {
        if (n.address == w.address && n.state == core::NodeState::kOnline) node = &n;
      }
      if (node == nullptr) {
        ++waiting;
        continue;
      }
      std::string node_id = node->id;
      CANOPY_TRY(store::MutateWorker(run.ctx.store, run.ctx.clock, w.id, [&](core::Worker& row) {
        if (row.state == core::WorkerState::kBooting) {
          row.state = core::WorkerState::kActive;
          row.node_id = node_id;
        }
        return OkStatus();
      }));
      SPDLOG_INFO("Worker active worker={} node={} address={}", w.id, node_id, w.address);
    }
    if (waiting == 0) return StepResult::Next();
    if (InStep(run.ctx) > opts_.register_timeout) {
      return Error::Provider(fmt::format("{} node(s) did not register with the cluster within {} s",
                                         waiting, opts_.register_timeout.count()));
    }
    // Nodes reach the root in the cluster's link reports. A command ends the cluster's parked
    // long-poll at once, and its next link call (with the ack) carries a fresh report, so a ping
    // gets the new nodes here in milliseconds instead of one link interval later. One at a time.
    std::string last = run.ctx.op.data.value("ping", "");
    bool pending = false;
    if (!last.empty()) {
      auto cmd = deps_.commands->Get(last);
      pending = cmd && cmd->state == core::ClusterCommandState::kPending;
    }
    if (!pending) {
      auto cmd = deps_.commands->Enqueue(c.id, core::CommandType::kPing);
      if (cmd) run.ctx.op.data["ping"] = cmd->id;
    }
    return StepResult::Wait(100ms);
  }

  BrokerDeps deps_;
  BrokerOptions opts_;
};

}  // namespace

ops::OperationKindPtr NewWorkersProvisionKind(const BrokerDeps& deps, const BrokerOptions& opts) {
  return std::make_unique<WorkersProvisionKind>(deps, opts);
}

}  // namespace canopy::broker
