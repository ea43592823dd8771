#include "control/cloud_clusters.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "control/cluster_tier.h"
#include "control/operation_kinds.h"

namespace canopy::control {

Result<WorkerBatch> EnqueueWorkers(store::Store& tx, IdGenerator& ids, const Clock& clock,
                                   const ops::OperationQueue& queue, const core::Cluster& c,
                                   int64_t count, const MachineSpec& m, const std::string& parent) {
  CANOPY_ASSIGN_OR_RETURN(auto existing, tx.workers().ListByCluster(c.id));
  std::set<std::string> names;
  for (const auto& w : existing) names.insert(w.name);
  WorkerBatch batch;
  TimePoint now = clock.Now();
  Json ids_json = Json::array();
  int64_t k = 1;
  for (int64_t i = 0; i < count; ++i) {
    core::Worker w;
    w.id = ids.NewId("wrk");
    while (names.count(fmt::format("{}-w{}", c.name, k)) != 0) ++k;
    w.name = fmt::format("{}-w{}", c.name, k);
    names.insert(w.name);
    w.cluster_id = c.id;
    w.state = core::WorkerState::kBooting;
    w.instance_type = m.instance_type;
    w.image = m.image;
    w.disk_gb = m.disk_gb;
    w.created_at = w.updated_at = now;
    ids_json.push_back(w.id);
    batch.workers.push_back(std::move(w));
  }
  Json data{{"cluster_id", c.id}, {"worker_ids", ids_json}, {"action", kProvisionAdd}};
  if (!parent.empty()) data["parent"] = parent;
  CANOPY_ASSIGN_OR_RETURN(batch.operation,
                          queue.Enqueue(tx, kOpWorkersProvision, c.id, std::move(data)));
  for (auto& w : batch.workers) {
    w.operation_id = batch.operation.id;
    CANOPY_TRY(tx.workers().Create(w));
  }
  return batch;
}

CloudClusters::CloudClusters(store::Store& store, ClockPtr clock, IdGeneratorPtr ids,
                             CloudAccess& clouds, ops::OperationQueue& queue)
    : store_(store),
      clock_(std::move(clock)),
      ids_(std::move(ids)),
      clouds_(clouds),
      queue_(queue) {}

Result<core::Cluster> CloudClusters::LoadCluster(const std::string& id) {
  auto c = store_.clusters().Get(id);
  if (!c && c.error().code == ErrorCode::kNotFound) return Error::NotFound("cluster not found");
  return c;
}

Status CloudClusters::CheckOffers(const OpenedProvider& opened, const std::string& region,
                                  const std::vector<MachineSpec>& specs) {
  auto offers = opened.provider->ListOffers(opened.Context(region));
  if (!offers) return ProviderCallError(opened.credential.provider, offers.error());
  if (!offers->regions.empty() &&
      std::find(offers->regions.begin(), offers->regions.end(), region) == offers->regions.end()) {
    return Error::InvalidArgument(fmt::format("region '{}' is not offered by provider '{}'", region,
                                              opened.credential.provider));
  }
  for (const auto& s : specs) {
    bool type_ok = std::any_of(offers->instance_types.begin(), offers->instance_types.end(),
                               [&](const auto& t) { return t.name == s.instance_type; });
    if (!type_ok) {
      return Error::InvalidArgument(
          fmt::format("instance type '{}' is not offered in region '{}'", s.instance_type, region));
    }
    bool image_ok = std::any_of(offers->images.begin(), offers->images.end(),
                                [&](const auto& i) { return i.id == s.image; });
    if (!image_ok) {
      return Error::InvalidArgument(
          fmt::format("image '{}' is not offered in region '{}'", s.image, region));
    }
  }
  return OkStatus();
}

Result<ClusterStarted> CloudClusters::Create(const ClusterRequest& r, const std::string& user_id) {
  CANOPY_ASSIGN_OR_RETURN(core::Credential cred, clouds_.FindCredential(r.credential));
  if (r.provider && *r.provider != cred.provider) {
    return Error::InvalidArgument(fmt::format("credential '{}' belongs to provider '{}', not '{}'",
                                              cred.name, cred.provider, *r.provider));
  }
  if (auto existing = store_.clusters().GetByName(r.name); existing) {
    return Error::AlreadyExists(fmt::format("cluster '{}' already exists", r.name));
  }
  CANOPY_ASSIGN_OR_RETURN(OpenedProvider opened, clouds_.Open(cred.id));
  std::vector<MachineSpec> specs{r.machine};
  if (r.worker_count > 0) specs.push_back(r.worker_machine);
  CANOPY_TRY(CheckOffers(opened, r.region, specs));

  core::Cluster c = NewClusterRow(*ids_, *clock_, r.name, core::ClusterKind::kCloud,
                                  core::ClusterState::kProvisioning, user_id);
  c.credential_id = cred.id;
  c.provider = cred.provider;
  c.region = r.region;
  c.instance_type = r.machine.instance_type;
  c.image = r.machine.image;
  c.disk_gb = r.machine.disk_gb;
  // Credential and region stay in the operation, so the sweeper can still look for this
  // cluster's instances after its row is gone.
  Json data{{"cluster_id", c.id}, {"credential_id", cred.id}, {"region", r.region}};
  if (r.worker_count > 0) {
    data["workers"] = {{"count", r.worker_count},
                       {"instance_type", r.worker_machine.instance_type},
                       {"image", r.worker_machine.image},
                       {"disk_gb", r.worker_machine.disk_gb}};
  }
  core::Operation op;
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(op, queue_.Enqueue(tx, kOpClusterCreate, c.id, data));
    c.cloud.operation_id = op.id;
    return tx.clusters().Create(c);
  }));
  queue_.Wake();
  SPDLOG_INFO(
      "Creating cloud cluster cluster={} name={} provider={} region={} workers={} op={} by={}",
      c.id, c.name, cred.provider, r.region, r.worker_count, op.id, user_id);
  return ClusterStarted{std::move(c), std::move(op)};
}

Result<ClusterStarted> CloudClusters::Delete(const std::string& cluster_id,
                                             const std::string& user_id) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(cluster_id));
  core::Operation op;
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(c, tx.clusters().Get(c.id));
    if (c.state == core::ClusterState::kDeleting) {
      return Error::Conflict(fmt::format("cluster '{}' is already being deleted", c.name));
    }
    if (c.kind == core::ClusterKind::kCloud &&
        (c.state == core::ClusterState::kProvisioning ||
         c.state == core::ClusterState::kInstalling || c.state == core::ClusterState::kPairing)) {
      return Error::Conflict(fmt::format("cluster '{}' is {}; wait until its creation ends", c.name,
                                         core::ClusterStateName(c.state)));
    }
    CANOPY_ASSIGN_OR_RETURN(auto workers, tx.workers().ListByCluster(c.id));
    int64_t billed = 0;
    for (const auto& w : workers) billed += core::IsBilled(w.state) ? 1 : 0;
    if (billed > 0) {
      return Error::Conflict(fmt::format(
          "cluster '{}' has {} billed worker(s); terminate or delete them first", c.name, billed));
    }
    CANOPY_ASSIGN_OR_RETURN(op,
                            queue_.Enqueue(tx, kOpClusterDelete, c.id, Json{{"cluster_id", c.id}}));
    c.state = core::ClusterState::kDeleting;
    c.cloud.operation_id = op.id;
    c.updated_at = clock_->Now();
    CANOPY_TRY(tx.clusters().Update(c));
    ++c.version;
    return OkStatus();
  }));
  queue_.Wake();
  SPDLOG_INFO("Deleting cluster cluster={} op={} by={}", c.id, op.id, user_id);
  return ClusterStarted{std::move(c), std::move(op)};
}

Result<WorkerBatch> CloudClusters::AddWorkers(const std::string& cluster_id, int64_t count,
                                              MachineSpec m, const std::string& user_id) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(cluster_id));
  if (c.kind != core::ClusterKind::kCloud) {
    return Error::Conflict("workers are added to cloud clusters; edge nodes join with node tokens");
  }
  if (c.state != core::ClusterState::kActive) {
    return Error::Conflict(fmt::format("cluster '{}' is {}; workers are added to ACTIVE clusters",
                                       c.name, core::ClusterStateName(c.state)));
  }
  if (m.instance_type.empty()) m.instance_type = c.instance_type.value_or("");
  if (m.image.empty()) m.image = c.image.value_or("");
  if (m.instance_type.empty()) return Error::InvalidArgument("field 'instance_type' is required");
  if (m.image.empty()) return Error::InvalidArgument("field 'image' is required");
  CANOPY_ASSIGN_OR_RETURN(OpenedProvider opened, clouds_.Open(c.credential_id.value_or("")));
  CANOPY_TRY(CheckOffers(opened, c.region.value_or(""), {m}));
  WorkerBatch batch;
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(batch, EnqueueWorkers(tx, *ids_, *clock_, queue_, c, count, m, ""));
    return OkStatus();
  }));
  queue_.Wake();
  SPDLOG_INFO("Adding workers cluster={} count={} op={} by={}", c.id, count, batch.operation.id,
              user_id);
  return batch;
}

Result<std::vector<core::Worker>> CloudClusters::ListWorkers(const std::string& cluster_id) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(cluster_id));
  return store_.workers().ListByCluster(c.id);
}

Result<std::map<std::string, core::NodeSystem>> CloudClusters::NodeSystems(
    const std::string& cluster_id) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(cluster_id));
  std::map<std::string, core::NodeSystem> out;
  for (const auto& n : c.nodes) out[n.id] = n.system;
  return out;
}

Result<core::Worker> CloudClusters::GetWorker(const std::string& cluster_id,
                                              const std::string& worker_id) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(cluster_id));
  auto w = store_.workers().Get(worker_id);
  if (!w) {
    if (w.error().code == ErrorCode::kNotFound) return Error::NotFound("worker not found");
    return std::move(w).error();
  }
  if (w->cluster_id != c.id) return Error::NotFound("worker not found");
  return w;
}

Result<WorkerStarted> CloudClusters::Act(const std::string& cluster_id,
                                         const std::string& worker_id, core::WorkerAction action,
                                         const std::string& user_id) {
  CANOPY_ASSIGN_OR_RETURN(core::Cluster c, LoadCluster(cluster_id));
  CANOPY_ASSIGN_OR_RETURN(core::Worker current, GetWorker(c.id, worker_id));
  const std::string name(core::WorkerActionName(action));
  if (core::BootsInstance(action) && c.state == core::ClusterState::kDeleting) {
    return Error::Conflict(fmt::format("cluster '{}' is being deleted", c.name));
  }
  core::Worker w;
  core::Operation op;
  CANOPY_TRY(store_.Transaction([&](store::Store& tx) -> Status {
    CANOPY_ASSIGN_OR_RETURN(w, tx.workers().Get(current.id));
    auto through = core::WorkerActionThrough(action, w.state);
    if (!through) {
      return Error::Conflict(fmt::format("cannot {} worker '{}': it is {}", name, w.name,
                                         core::WorkerStateName(w.state)));
    }
    Json data{{"cluster_id", c.id},
              {"worker_ids", Json::array({w.id})},
              {"worker_id", w.id},
              {"action", name}};
    if (action == core::WorkerAction::kRecreate) {
      // A new instance under a new canopy id; the old one (a FAILED worker keeps its VM) is
      // terminated by the operation before the new one is made.
      if (!w.handle.is_null()) data["old_handles"] = Json{{w.id, w.handle}};
      w.handle = nullptr;
      w.provider_id.clear();
      w.address.clear();
      w.node_id.clear();
      ++w.generation;
    }
    const char* kind = core::BootsInstance(action) ? kOpWorkersProvision : kOpWorkerShutdown;
    CANOPY_ASSIGN_OR_RETURN(op, queue_.Enqueue(tx, kind, w.id, std::move(data)));
    w.state = *through;
    w.last_error.clear();
    w.operation_id = op.id;
    w.updated_at = clock_->Now();
    CANOPY_TRY(tx.workers().Update(w));
    ++w.version;
    return OkStatus();
  }));
  queue_.Wake();
  SPDLOG_INFO("Worker action worker={} action={} op={} by={}", w.id, name, op.id, user_id);
  return WorkerStarted{std::move(w), std::move(op)};
}

}  // namespace canopy::control
