// cluster.delete: instance -> firewalls -> identity -> rows (src/broker/README.md).
#include <spdlog/spdlog.h>

#include "broker/detail/common.h"
#include "control/operation_kinds.h"
#include "store/row_mutations.h"

namespace canopy::broker {
namespace {

using namespace detail;
using ops::StepContext;
using ops::StepResult;

class ClusterDeleteKind final : public ops::OperationKind {
 public:
  struct Run {
    StepContext& ctx;
    core::Cluster c;
    std::optional<Cloud> cloud;
  };
  using Table = std::vector<StepDef<ClusterDeleteKind, Run>>;

  explicit ClusterDeleteKind(BrokerDeps deps) : deps_(std::move(deps)) {}
  std::string Name() const override { return control::kOpClusterDelete; }
  std::vector<std::string> Steps() const override { return StepNames(StepTable()); }

  Result<StepResult> RunStep(size_t step, StepContext& ctx) override {
    CANOPY_ASSIGN_OR_RETURN(std::string id, GetString(ctx.op.data, "cluster_id", 64));
    auto got = ctx.store.clusters().Get(id);
    if (!got && got.error().code == ErrorCode::kNotFound) return StepResult::Succeed();
    CANOPY_ASSIGN_OR_RETURN(core::Cluster c, std::move(got));
    Run run{ctx, std::move(c), std::nullopt};
    return RunTableStep(*this, StepTable(), step, run);
  }

  void OnFailed(StepContext& ctx) override {
    auto id = ctx.op.data.value("cluster_id", "");
    (void)store::MutateCluster(ctx.store, ctx.clock, id, [](core::Cluster& c) {
      c.state = core::ClusterState::kFailed;
      return OkStatus();
    });
  }

 private:
  static const Table& StepTable() {
    static const Table table = {
        {"instance", &ClusterDeleteKind::Instance},
        {"firewalls", &ClusterDeleteKind::Firewalls},
        {"identity", &ClusterDeleteKind::Identity},
        {"rows", &ClusterDeleteKind::Rows},
    };
    return table;
  }

  // Edge clusters made nothing in a cloud: only their rows go.
  Result<Cloud*> CloudOf(Run& run) { return OpenOnce(run.cloud, *deps_.clouds, run.c); }
  static bool InCloud(const Run& run) { return run.c.kind == core::ClusterKind::kCloud; }

  // The saved handle, and anything tagged with the cluster's id.
  Result<StepResult> Instance(Run& run) {
    if (!InCloud(run)) return StepResult::Next();
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    auto& p = cloud->provider();
    if (run.c.cloud.HasInstance()) {
      CANOPY_ASSIGN_OR_RETURN(providers::ProviderHandle h, HandleOf(run.c.cloud.handle));
      CANOPY_TRY(p.TerminateInstance(cloud->ctx, h));
    }
    CANOPY_ASSIGN_OR_RETURN(auto found,
                            p.FindInstancesByTag(cloud->ctx, providers::kCanopyIdTag, run.c.id));
    for (const auto& inst : found) CANOPY_TRY(p.TerminateInstance(cloud->ctx, inst.handle));
    return StepResult::Next();
  }

  // The cluster's own firewall (the SSH one is shared per credential and region) and the
  // per-service firewalls the firewall sync made (src/scheduler/firewall_sync.h).
  Result<StepResult> Firewalls(Run& run) {
    if (!InCloud(run)) return StepResult::Next();
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    auto& p = cloud->provider();
    if (!run.c.cloud.api_firewall.empty())
      CANOPY_TRY(p.DeleteFirewall(cloud->ctx, run.c.cloud.api_firewall));
    for (const auto& [sid, fw] : run.c.cloud.service_firewalls)
      CANOPY_TRY(p.DeleteFirewall(cloud->ctx, fw));
    return StepResult::Next();
  }

  Result<StepResult> Identity(Run& run) {
    if (!InCloud(run) || run.c.cloud.identity != core::IdentityState::kMade)
      return StepResult::Next();
    CANOPY_ASSIGN_OR_RETURN(Cloud * cloud, CloudOf(run));
    CANOPY_TRY(cloud->provider().DeleteClusterIdentity(cloud->ctx, run.c.cloud.identity_id));
    return StepResult::Next();
  }

  Result<StepResult> Rows(Run& run) {
    const core::Cluster& c = run.c;
    CANOPY_ASSIGN_OR_RETURN(auto workers, run.ctx.store.workers().ListByCluster(c.id));
    CANOPY_TRY(run.ctx.store.Transaction([&](store::Store& tx) -> Status {
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

  BrokerDeps deps_;
};

}  // namespace

ops::OperationKindPtr NewClusterDeleteKind(const BrokerDeps& deps) {
  return std::make_unique<ClusterDeleteKind>(deps);
}

}  // namespace canopy::broker
