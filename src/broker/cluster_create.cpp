// cluster.create: key_pair -> firewalls -> identity -> instance -> running -> install -> pair ->
// workers (src/broker/README.md).
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "broker/detail/common.h"
#include "control/cloud_clusters.h"
#include "control/operation_kinds.h"
#include "providers/wire.h"
#include "store/row_mutations.h"

namespace canopy::broker {
namespace {

using namespace std::chrono_literals;
using namespace detail;
using ops::StepContext;
using ops::StepResult;

class ClusterCreateKind final : public ops::OperationKind {
 public:
  // Per try: the cluster row and, opened on first use, its cloud and key pair.
  struct Run {
    StepContext& ctx;
    core::Cluster c;
    std::optional<Cloud> cloud;
  };
  using Table = std::vector<StepDef<ClusterCreateKind, Run>>;

  ClusterCreateKind(BrokerDeps deps, BrokerOptions opts)
      : deps_(std::move(deps)), opts_(std::move(opts)) {}

  std::string Name() const override { return control::kOpClusterCreate; }
  std::vector<std::string> Steps() const override { return StepNames(StepTable()); }
  Result<std::vector<std::string>> StepsFor(const Json& data) const override {
    CANOPY_TRY(GetString(data, "cluster_id", 64));
    return Steps();
  }

  Result<StepResult> RunStep(size_t step, StepContext& ctx) override {
    CANOPY_ASSIGN_OR_RETURN(std::string id, GetString(ctx.op.data, "cluster_id", 64));
    CANOPY_ASSIGN_OR_RETURN(core::Cluster c, ctx.store.clusters().Get(id));
    Run run{ctx, std::move(c), std::nullopt};
    return RunTableStep(*this, StepTable(), step, run);
  }

  void OnFailed(StepContext& ctx) override {
    auto id = ctx.op.data.value("cluster_id", "");
    auto r = store::MutateCluster(ctx.store, ctx.clock, id, [&](core::Cluster& c) -> Status {
      if (c.state == core::ClusterState::kActive || c.state == core::ClusterState::kOffline) {
        return OkStatus();  // a worker failure does not fail the cluster
      }
      c.state = core::ClusterState::kFailed;
      return OkStatus();
    });
    if (!r) SPDLOG_WARN("Cannot mark cluster failed cluster={} error={}", id, r.error().message);
  }

 private:
  static const Table& StepTable() {
    static const Table table = {
        {"key_pair", &ClusterCreateKind::KeyPair},  {"firewalls", &ClusterCreateKind::Firewalls},
        {"identity", &ClusterCreateKind::Identity}, {"instance", &ClusterCreateKind::Instance},
        {"running", &ClusterCreateKind::Running},   {"install", &ClusterCreateKind::Install},
        {"pair", &ClusterCreateKind::Pair},         {"workers", &ClusterCreateKind::Workers},
    };
    return table;
  }

  Result<Cloud*> CloudOf(Run& run) { return OpenOnce(run.cloud, *deps_.clouds, run.c); }

  // Writes the cloud state with compare-and-swap; the row in `run` follows.
  Status Save(Run& run, const std::function<void(core::ClusterCloud&)>& f) {
    auto r = store::MutateCluster(run.ctx.store, run.ctx.clock, run.c.id, [&](core::Cluster& row) {
      f(row.cloud);
      return OkStatus();
    });
    if (!r) return r.error();
    run.c = std::move(r).value();
    return OkStatus();
  }

  // One per credential and region, made once and kept by the provider.
  Result<StepResult> KeyPair(Run& run) {
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    CANOPY_TRY(cloud->provider().CreateKeyPair(cloud->ctx, KeyPairName(run.c)));
    CANOPY_TRY(Save(run, [&](core::ClusterCloud& cc) { cc.key_pair = KeyPairName(run.c); }));
    return StepResult::Next();
  }

  // SSH (per credential and region, shared) and the cluster's API port.
  Result<StepResult> Firewalls(Run& run) {
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    providers::FirewallSpec ssh;
    ssh.canopy_id = SshFirewallId(run.c);
    ssh.name = "canopy-ssh";
    ssh.rules = {providers::FirewallRule{22, "tcp", opts_.ssh_sources}};
    CANOPY_ASSIGN_OR_RETURN(providers::Firewall ssh_fw,
                            cloud->provider().CreateFirewall(cloud->ctx, ssh));
    providers::FirewallSpec apis;
    apis.canopy_id = ApiFirewallId(run.c);
    apis.name = "canopy-" + run.c.name + "-api";
    apis.rules = {providers::FirewallRule{opts_.cluster_port, "tcp", opts_.cluster_api_sources}};
    apis.tags[providers::kClusterTag] = run.c.id;
    CANOPY_ASSIGN_OR_RETURN(providers::Firewall api_fw,
                            cloud->provider().CreateFirewall(cloud->ctx, apis));
    CANOPY_TRY(Save(run, [&](core::ClusterCloud& cc) {
      cc.ssh_firewall = ssh_fw.id;
      cc.api_firewall = api_fw.id;
    }));
    return StepResult::Next();
  }

  // The cluster's limited credential (its own firewalls only), sealed; skipped by providers that
  // do not offer identities (kNotSupported).
  Result<StepResult> Identity(Run& run) {
    if (run.c.cloud.identity != core::IdentityState::kUnknown) return StepResult::Next();
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    auto ident = cloud->provider().CreateClusterIdentity(cloud->ctx, run.c.id);
    if (!ident) {
      if (ident.error().code == ErrorCode::kNotSupported) {
        SPDLOG_INFO("Provider has no cluster identities cluster={}", run.c.id);
        CANOPY_TRY(
            Save(run, [](core::ClusterCloud& cc) { cc.identity = core::IdentityState::kNone; }));
        return StepResult::Next();
      }
      return ident.error();
    }
    CANOPY_ASSIGN_OR_RETURN(std::string sealed,
                            deps_.clouds->SealIdentity(run.c.id, ident->credential));
    CANOPY_TRY(Save(run, [&](core::ClusterCloud& cc) {
      cc.identity = core::IdentityState::kMade;
      cc.identity_id = ident->id;
      cc.identity_sealed = sealed;
    }));
    return StepResult::Next();
  }

  // Looked up by tag first; created only when none exists; the handle saved at once.
  Result<StepResult> Instance(Run& run) {
    const core::Cluster& c = run.c;
    if (c.cloud.HasInstance()) return StepResult::Next();
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    auto& p = cloud->provider();
    CANOPY_ASSIGN_OR_RETURN(auto found,
                            p.FindInstancesByTag(cloud->ctx, providers::kCanopyIdTag, c.id));
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
      spec.key_pair = c.cloud.key_pair.empty() ? KeyPairName(c) : c.cloud.key_pair;
      spec.firewalls = {c.cloud.ssh_firewall, c.cloud.api_firewall};
      spec.tags[providers::kClusterTag] = c.id;
      CANOPY_ASSIGN_OR_RETURN(inst, p.CreateInstance(cloud->ctx, spec));
      SPDLOG_INFO("Cluster instance created cluster={} instance={}", c.id, inst.provider_id);
    }
    CANOPY_TRY(Save(run, [&](core::ClusterCloud& cc) {
      cc.handle = providers::wire::ToJson(inst.handle);
      cc.provider_id = inst.provider_id;
    }));
    return StepResult::Next();
  }

  Result<StepResult> Running(Run& run) {
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    CANOPY_ASSIGN_OR_RETURN(providers::ProviderHandle h, HandleOf(run.c.cloud.handle));
    auto inst = cloud->provider().WaitUntilRunning(cloud->ctx, h, 2s);
    if (!inst) {
      if (inst.error().code != ErrorCode::kDeadlineExceeded) return inst.error();
      if (InStep(run.ctx) > opts_.boot_timeout) {
        return Error::Provider(
            fmt::format("instance did not boot within {} s", opts_.boot_timeout.count()));
      }
      return StepResult::Wait(500ms);
    }
    CANOPY_TRY(Save(run, [&](core::ClusterCloud& cc) {
      cc.ssh = LoginOf(*inst);
      cc.address = inst->address;
    }));
    return StepResult::Next();
  }

  // A fresh single-use cluster token; canopyd uploaded (skipped when the digest matches); the
  // instance must reach the root (probe) before `canopyd cluster` starts there.
  Result<StepResult> Install(Run& run) {
    CANOPY_ASSIGN_OR_RETURN(
        run.c, store::MutateCluster(run.ctx.store, run.ctx.clock, run.c.id, [](core::Cluster& row) {
          if (row.state == core::ClusterState::kProvisioning)
            row.state = core::ClusterState::kInstalling;
          return OkStatus();
        }));
    const core::Cluster& c = run.c;
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    CANOPY_ASSIGN_OR_RETURN(providers::KeyPair kp,
                            cloud->provider().CreateKeyPair(cloud->ctx, KeyPairName(c)));
    CANOPY_ASSIGN_OR_RETURN(install::SshTarget target, TargetOf(c.cloud.ssh, kp.private_key));
    CANOPY_ASSIGN_OR_RETURN(control::ClusterTokenGrant grant,
                            deps_.tier->CreateToken(c.id, std::chrono::seconds(3600), "broker"));
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
    if (deps_.tier->ca() != nullptr && opts_.cluster_root_url.starts_with("https://")) {
      // The cluster pins the root's CA at first contact.
      spec.argv.insert(spec.argv.end(), {"--ca-fingerprint", deps_.tier->ca()->fingerprint()});
    }
    spec.argv.insert(spec.argv.end(), opts_.cluster_extra_args.begin(),
                     opts_.cluster_extra_args.end());
    // The token travels in a 0600 file the cluster removes once paired (not in its environment,
    // where every later child would inherit it).
    spec.config = SecretString(grant.token);
    spec.argv.insert(spec.argv.end(), {"--token-file", "{config}"});
    spec.preflight = PreflightArgs(opts_.cluster_root_url, opts_.preflight_timeout);
    auto report = deps_.installer->Install(target, spec);
    if (!report && report.error().reason == "install_preflight") {
      // Not retried: the root's URL for clusters does not work from the instance.
      SPDLOG_WARN("Cluster cannot reach the root cluster={} url={} error={}", c.id,
                  opts_.cluster_root_url, report.error().message);
      return Error::FailedPrecondition(
                 fmt::format("the cluster's instance at {} cannot reach the root at {} ({}); give "
                             "the root an address instances can reach: canopyd root "
                             "--cluster-listen HOST:PORT or --cluster-url URL",
                             target.host, opts_.cluster_root_url, report.error().message))
          .WithReason("root_unreachable");
    }
    if (!report) {
      SPDLOG_WARN("Cluster install failed cluster={} reason={} error={}", c.id,
                  report.error().reason, report.error().message);
      return report.error();
    }
    SPDLOG_INFO(
        "Cluster installed cluster={} connect_ms={} upload_ms={} start_ms={} skipped_upload={}",
        c.id, report->timings.connect_ms, report->timings.upload_ms, report->timings.start_ms,
        report->upload_skipped);
    CANOPY_TRY(store::MutateCluster(run.ctx.store, run.ctx.clock, c.id, [](core::Cluster& row) {
      if (row.state == core::ClusterState::kInstalling) row.state = core::ClusterState::kPairing;
      return OkStatus();
    }));
    return StepResult::Next();
  }

  // Until the cluster's pairing made the row ACTIVE.
  Result<StepResult> Pair(Run& run) {
    if (run.c.state == core::ClusterState::kActive || run.c.state == core::ClusterState::kOffline) {
      return StepResult::Next();
    }
    if (InStep(run.ctx) > opts_.pair_timeout) {
      return Error::Provider(
          fmt::format("the cluster did not pair within {} s", opts_.pair_timeout.count()));
    }
    return StepResult::Wait(300ms);
  }

  // One workers.provision (found again by its parent id after a crash, so never twice), then
  // wait for it; a worker failure fails this operation but not the cluster.
  Result<StepResult> Workers(Run& run) {
    StepContext& ctx = run.ctx;
    const Json& want = ctx.op.data.contains("workers") ? ctx.op.data["workers"] : Json();
    if (!want.is_object() || want.value("count", 0) <= 0) return StepResult::Next();
    CANOPY_ASSIGN_OR_RETURN(auto ops, ctx.store.operations().ListByTarget(run.c.id));
    const core::Operation* child = nullptr;
    for (const auto& o : ops) {
      if (o.kind == control::kOpWorkersProvision && o.data.value("parent", "") == ctx.op.id) {
        child = &o;
      }
    }
    if (child == nullptr) {
      control::WorkerBatch batch;
      control::MachineSpec m{want.value("instance_type", ""), want.value("image", ""),
                             want.value("disk_gb", int64_t{10})};
      CANOPY_TRY(ctx.store.Transaction([&](store::Store& tx) -> Status {
        CANOPY_ASSIGN_OR_RETURN(
            batch, control::EnqueueWorkers(tx, *deps_.ids, ctx.clock, *deps_.queue, run.c,
                                           want.value("count", int64_t{0}), m, ctx.op.id));
        return OkStatus();
      }));
      deps_.queue->Wake();
      ctx.op.data["workers_operation_id"] = batch.operation.id;
      return StepResult::Wait(500ms);
    }
    if (child->state == core::OperationState::kSucceeded) return StepResult::Next();
    if (child->state == core::OperationState::kFailed) {
      return Error::Provider(
          fmt::format("workers failed (operation {}): {}", child->id, ErrorText(*child, "failed")));
    }
    return StepResult::Wait(500ms);
  }

  BrokerDeps deps_;
  BrokerOptions opts_;
};

}  // namespace

ops::OperationKindPtr NewClusterCreateKind(const BrokerDeps& deps, const BrokerOptions& opts) {
  return std::make_unique<ClusterCreateKind>(deps, opts);
}

}  // namespace canopy::broker
